//! THE way a security test sends a request: through the waypoint (HBONE with a client
//! certificate from a chosen source address, or the plain listener), its answer checked against
//! what Istio's Envoy waypoint answers, and the same request run through `waypoint explain`,
//! whose verdict must equal the proxy's and, for a denial, name what decided. Every request of
//! these tests goes through [`World::check`] or [`World::check_on`], so none forgets explain.

use super::mesh::{Svc, World, GATEWAY};
use crate::support::hbone_client::{connect_from, dial, HboneConn};
use crate::support::Reply;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Envoy's RBAC denial body.
pub const RBAC_DENIED: &str = "RBAC: access denied";

/// Where a request comes from.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// `Some((namespace, service account))`: HBONE with that workload certificate; `None`:
    /// the plain listener (no peer identity).
    pub identity: Option<(&'static str, &'static str)>,
    /// The trust domain of the peer's SPIFFE id.
    pub trust_domain: &'static str,
    /// The client socket's source address (bound before connecting).
    pub ip: Ipv4Addr,
}

impl Peer {
    /// An HBONE client with identity `spiffe://cluster.local/ns/<ns>/sa/<sa>` from `ip`.
    pub const fn hbone(ns: &'static str, sa: &'static str, ip: [u8; 4]) -> Peer {
        Peer::hbone_in("cluster.local", ns, sa, ip)
    }

    /// An HBONE client whose SPIFFE id is in `trust_domain` (its certificate still signed by
    /// the mesh's root, as during a trust-domain migration).
    pub const fn hbone_in(
        trust_domain: &'static str,
        ns: &'static str,
        sa: &'static str,
        ip: [u8; 4],
    ) -> Peer {
        Peer {
            identity: Some((ns, sa)),
            trust_domain,
            ip: Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]),
        }
    }

    /// A plaintext client of the `--http-listen` listener from `ip`.
    pub const fn plain(ip: [u8; 4]) -> Peer {
        Peer {
            identity: None,
            trust_domain: "cluster.local",
            ip: Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]),
        }
    }

    /// The SPIFFE id the waypoint sees, if any.
    pub fn spiffe(&self) -> Option<String> {
        self.identity
            .map(|(ns, sa)| format!("spiffe://{}/ns/{ns}/sa/{sa}", self.trust_domain))
    }
}

/// One HTTP request.
#[derive(Clone, Debug)]
pub struct Req {
    pub to: Svc,
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// A token sent as `Authorization: Bearer <jwt>` (and given to explain with `--jwt`).
    pub jwt: Option<String>,
}

impl Req {
    /// `GET path` to `to`.
    pub fn get(to: Svc, path: &str) -> Req {
        Req::new(to, "GET", path)
    }

    /// `method path` to `to`.
    pub fn new(to: Svc, method: &'static str, path: &str) -> Req {
        Req {
            to,
            method,
            path: path.to_string(),
            headers: Vec::new(),
            jwt: None,
        }
    }

    /// With one more request header.
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// With a bearer token.
    pub fn jwt(mut self, token: &str) -> Req {
        self.jwt = Some(token.to_string());
        self
    }
}

/// Something explain's output must say about a denial.
#[derive(Clone, Debug)]
pub enum By {
    /// Literal text, e.g. a policy name or a field (`paths`).
    Text(&'static str),
    /// The rule index that decided: `rules[N]` or `rule N`.
    Rule(usize),
}

/// What Istio's waypoint answers.
#[derive(Clone, Debug)]
pub enum Expect {
    /// Forwarded: the echo backend's 200.
    Allowed,
    /// A local reply with this status and body; explain's output names each `By`.
    Denied {
        status: u16,
        body: String,
        by: Vec<By>,
    },
    /// A local reply with this status whose body Istio does not pin down (e.g. a JWKS that
    /// could not be fetched); explain must still give the proxy's status and body.
    Refused { status: u16 },
    /// Decided by an ext_authz provider: this status; explain cannot ask the provider offline,
    /// so its output must name the provider it would ask instead of matching the status.
    Custom { status: u16, provider: &'static str },
}

/// `403 RBAC: access denied`, decided by `policy`, rule `rule` (if one matched) and `field`.
pub fn rbac(policy: &'static str, rule: Option<usize>, field: Option<&'static str>) -> Expect {
    let mut by = vec![By::Text(policy)];
    by.extend(rule.map(By::Rule));
    by.extend(field.map(By::Text));
    Expect::Denied {
        status: 403,
        body: RBAC_DENIED.to_string(),
        by,
    }
}

/// Decided by ext_authz provider `provider`, answering `status`.
pub fn by_provider(provider: &'static str, status: u16) -> Expect {
    Expect::Custom { status, provider }
}

/// A local reply from JWT authentication (Envoy's jwt_authn body).
pub fn jwt_denied(status: u16, body: &str) -> Expect {
    Expect::Denied {
        status,
        body: body.to_string(),
        by: Vec::new(),
    }
}

/// An HTTP/1.1 connection to a service through the waypoint: a CONNECT tunnel, or a TCP
/// connection to the plain listener. Several requests may use it in turn.
pub struct Tunnel {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    // The HBONE connection the tunnel's stream belongs to, kept open with it.
    _conn: Option<HboneConn>,
}

impl Tunnel {
    /// Sends `req` (Host = the service's host) and reads the whole answer.
    pub async fn send(&mut self, req: &Req) -> anyhow::Result<Reply> {
        let mut b = http::Request::builder()
            .method(req.method)
            .uri(req.path.as_str())
            .header(http::header::HOST, req.to.host());
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        if let Some(token) = &req.jwt {
            b = b.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.sender.ready().await?;
        let resp = tokio::time::timeout(
            Duration::from_secs(10),
            self.sender.send_request(b.body(Full::new(Bytes::new()))?),
        )
        .await??;
        crate::support::read(resp).await
    }
}

async fn http1<T>(io: T) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

impl World {
    /// An HBONE connection from `peer` (which must have an identity), from its source address.
    pub async fn hbone(&self, peer: &Peer) -> anyhow::Result<HboneConn> {
        let id = peer
            .spiffe()
            .ok_or_else(|| anyhow::anyhow!("{peer:?} is not an HBONE peer"))?;
        let hour = Duration::from_secs(3600);
        let now = std::time::SystemTime::now();
        let leaf = self.ca.issue_with(&id, now - hour, now + 24 * hour);
        let source = Some(IpAddr::V4(peer.ip));
        connect_from(
            self.wp.addr("hbone"),
            source,
            Some(&leaf),
            &self.ca.root_pem(),
        )
        .await
    }

    /// A connection from `peer` to `to`: an HBONE CONNECT to the service's VIP with the peer's
    /// certificate, or a TCP connection to the plain listener.
    pub async fn tunnel(&self, peer: &Peer, to: Svc) -> anyhow::Result<Tunnel> {
        let source = Some(IpAddr::V4(peer.ip));
        if peer.identity.is_none() {
            let tcp = dial(self.wp.addr("http"), source).await?;
            return Ok(Tunnel {
                sender: http1(tcp).await?,
                _conn: None,
            });
        }
        let conn = self.hbone(peer).await?;
        let (status, tunnel) = conn
            .open(http::Method::CONNECT, &to.authority(), &[])
            .await?;
        let tunnel = tunnel
            .ok_or_else(|| anyhow::anyhow!("CONNECT {} answered {status}", to.authority()))?;
        Ok(Tunnel {
            sender: http1(tunnel).await?,
            _conn: Some(conn),
        })
    }

    /// Sends `req` from `peer` on a fresh connection, checks the answer against `expect` and
    /// explain's verdict against both; returns the answer for further checks.
    pub async fn check(&self, peer: &Peer, req: Req, expect: Expect) -> Reply {
        match self.tunnel(peer, req.to).await {
            Ok(mut tunnel) => self.check_on(&mut tunnel, peer, req, expect).await,
            Err(e) => self.no_reply(format!("connect {peer:?} to {}: {e:#}", req.to.name)),
        }
    }

    /// Records that a request got no answer; the reply the scenario then reads says why.
    fn no_reply(&self, problem: String) -> Reply {
        self.fail(problem.clone());
        Reply {
            status: 0,
            headers: http::HeaderMap::new(),
            body: problem,
        }
    }

    /// [`World::check`] on an existing connection.
    pub async fn check_on(
        &self,
        tunnel: &mut Tunnel,
        peer: &Peer,
        req: Req,
        expect: Expect,
    ) -> Reply {
        let what = format!(
            "{} {} {} from {:?}@{}",
            req.method,
            req.to.host(),
            req.path,
            peer.spiffe(),
            peer.ip
        );
        let reply = match tunnel.send(&req).await {
            Ok(reply) => reply,
            Err(e) => {
                return self.no_reply(format!("{what}: no answer: {e:#}"));
            }
        };
        let mut problems = reply_problems(&reply, &expect);
        let explained = explain(self.dir(), peer, &req);
        let explain_wrong = explain_problems(&explained, &reply, &expect);
        if !explain_wrong.is_empty() {
            problems.extend(explain_wrong);
            problems.push(format!("explain printed:\n{}", explained.text));
        }
        if !problems.is_empty() {
            self.fail(format!("{what}: {}", problems.join("; ")));
        }
        reply
    }
}

/// How the proxy's answer differs from what Istio's waypoint gives.
fn reply_problems(reply: &Reply, expect: &Expect) -> Vec<String> {
    let got = (reply.status, reply.body.as_str());
    let problem = match expect {
        Expect::Allowed if reply.status != 200 || reply.pod() != "web-0" => {
            format!("want the echo backend's 200, got {got:?}")
        }
        Expect::Denied { status, body, .. } if got != (*status, body.as_str()) => {
            format!("want {status} {body:?}, got {got:?}")
        }
        Expect::Custom { status, .. } | Expect::Refused { status } if reply.status != *status => {
            format!("want status {status}, got {got:?}")
        }
        _ => return Vec::new(),
    };
    vec![problem]
}

/// What `waypoint explain` printed: its whole output and the final verdict line.
pub struct Explained {
    pub text: String,
    pub verdict: String,
}

impl Explained {
    /// The verdict's status: 200 for `allowed`, else the number the line starts with.
    pub fn status(&self) -> Option<u16> {
        let rest = self.verdict.trim_start_matches("verdict:").trim();
        if rest.starts_with("allowed") {
            return Some(200);
        }
        rest.split_whitespace().next()?.parse().ok()
    }
}

/// Runs `waypoint explain` with the request's inputs.
pub fn explain(dir: &std::path::Path, peer: &Peer, req: &Req) -> Explained {
    let mut args = vec![
        "--method".to_string(),
        req.method.to_string(),
        "--path".to_string(),
        req.path.clone(),
    ];
    for (k, v) in &req.headers {
        args.push("--header".to_string());
        args.push(format!("{k}={v}"));
    }
    let token_file = req.jwt.as_ref().map(|t| {
        let f = tempfile::NamedTempFile::new().expect("token file");
        std::fs::write(f.path(), t).expect("write token");
        f
    });
    if let Some(f) = &token_file {
        args.push("--jwt".to_string());
        args.push(f.path().to_string_lossy().into_owned());
    }
    // `--to` is also the request's Host: the service's host as the client sent it (port 80
    // is the default), so that `hosts` in a policy sees the same value in both.
    explain_to(dir, peer, &req.to.host(), &args)
}

/// Runs `waypoint explain --to <to>` from `peer` with more arguments.
pub fn explain_to(dir: &std::path::Path, peer: &Peer, to: &str, more: &[String]) -> Explained {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_waypoint"));
    cmd.arg("explain")
        .arg("--config")
        .arg(dir)
        .args(["--gateway", GATEWAY, "--to", to])
        .args(["--source-ip", &peer.ip.to_string()])
        .args(more);
    if let Some(id) = peer.spiffe() {
        cmd.args(["--from", &id]);
    }
    let out = cmd.output().expect("run waypoint explain");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("verdict:"))
        .unwrap_or("(no verdict line)")
        .trim()
        .to_string();
    Explained { text, verdict }
}

/// The body of a local reply; empty for the backend's answer (explain names the backend
/// instead).
fn local_body(reply: &Reply) -> String {
    if reply.pod() == "web-0" {
        String::new()
    } else {
        reply.body.clone()
    }
}

/// How explain's verdict differs from the proxy's answer, or fails to name what decided.
fn explain_problems(explained: &Explained, reply: &Reply, expect: &Expect) -> Vec<String> {
    let (text, verdict) = (&explained.text, &explained.verdict);
    let mut problems = Vec::new();
    let mut want_text = |needle: String, what: &str| {
        if !text.contains(&needle) {
            problems.push(format!("explain does not name {what} {needle:?}"));
        }
    };
    match expect {
        Expect::Custom { provider, .. } => {
            want_text(provider.to_string(), "the ext_authz provider");
            return problems;
        }
        Expect::Denied { by, .. } => {
            for b in by {
                match b {
                    By::Text(t) => want_text(t.to_string(), "the deciding policy/field"),
                    By::Rule(n) if text.contains(&format!("rule {n}")) => {}
                    By::Rule(n) => want_text(format!("rules[{n}]"), "the deciding rule"),
                }
            }
        }
        Expect::Allowed | Expect::Refused { .. } => {}
    }
    if explained.status() != Some(reply.status) || !verdict.contains(&local_body(reply)) {
        problems.push(format!(
            "explain's {verdict:?} differs from the proxy's {} {:?}",
            reply.status,
            local_body(reply)
        ));
    }
    problems
}
