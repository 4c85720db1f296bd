//! The I/O side of the security decisions in `authz`: fetching JWKS (`jwks`), authenticating a
//! request's JWT (`jwt`), calling ext_authz servers (`ext_authz`), and the one sequence the
//! pipeline, the TCP path and `waypoint explain` all run (this file, [`check_request`]).
//!
//! The sequence is Istio's filter order at its Envoy waypoint: `jwt_authn`
//! (RequestAuthentication), then the CUSTOM action's `ext_authz`, then RBAC's DENY and ALLOW
//! policies (AUDIT and dry-run policies only logged).

pub mod ext_authz;
pub mod jwks;
pub mod jwt;

use crate::hbone::context::TunnelContext;
use crate::snapshot::{Destination, SecurityPolicies, Snapshot};
use authz::ext_authz::ExtAuthzProtocol;
use authz::policy::Decision;
use authz::{ConnectionAttrs, HeaderEdit, HttpAttrs, LocalReply, RequestAttrs, RequestAuth};
use ext_authz::{CustomOutcome, ExtAuthzClient};
use jwks::JwksCache;
use pingora_http::RequestHeader;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;
use telemetry::ResponseFlag;

/// Envoy's body for an RBAC denial (DENY matched, or no ALLOW matched).
pub const RBAC_DENIED: &str = "RBAC: access denied";

/// The security clients every request shares: the JWKS cache (`jwksUri` rules) and the
/// ext_authz connections (CUSTOM). `waypoint explain` has no ext_authz client: it asks no
/// server and reports which one would be asked.
#[derive(Debug, Clone)]
pub struct Clients {
    /// Keys of the `jwksUri`s in force.
    pub jwks: Arc<JwksCache>,
    /// Connections to ext_authz servers; `None` in `waypoint explain`.
    pub ext_authz: Option<Arc<ExtAuthzClient>>,
}

impl Clients {
    /// The clients of a running proxy: an empty JWKS cache and an ext_authz client.
    pub fn new() -> Self {
        Clients {
            jwks: JwksCache::new(),
            ext_authz: Some(ExtAuthzClient::new()),
        }
    }
}

impl Default for Clients {
    fn default() -> Self {
        Clients::new()
    }
}

/// What is being checked: an HTTP request (its path already normalized), or a TCP connection
/// (the tunnel's CONNECT, which only a gRPC ext_authz provider reads).
#[derive(Debug, Clone, Copy)]
pub enum Traffic<'a> {
    /// An HTTP request.
    Http(&'a RequestHeader),
    /// A TCP connection, opened by this CONNECT.
    Tcp(&'a RequestHeader),
}

/// The result of [`check_request`]: the outcome and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// Allowed (with the edits to make), or denied (with the answer).
    pub outcome: Outcome,
    /// Every step in order, one line each: authentication, CUSTOM, then each policy
    /// evaluated, for `waypoint explain` and the debug log.
    pub trace: Vec<String>,
    /// The DENY/ALLOW policy, rule and field that decided, if one did.
    pub decided_by: Option<Decision>,
    /// `waypoint explain` only: the ext_authz provider a CUSTOM policy would have asked; the
    /// outcome is then what the DENY and ALLOW policies say should the provider allow.
    pub would_ask: Option<String>,
}

/// Whether the request may go on.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Forward it, changed as the security steps ask.
    Allow(Granted),
    /// Refuse it.
    Deny(Denial),
}

/// What the security steps ask of an allowed request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Granted {
    /// Header edits to the request sent upstream, in order (token removal, claims to
    /// headers, then the ext_authz server's headers).
    pub edits: Vec<HeaderEdit>,
    /// The verified JWT, if the request carried one.
    pub auth: Option<RequestAuth>,
    /// A new path and query for the upstream request (an ext_authz gRPC server's query
    /// changes).
    pub path: Option<String>,
    /// Headers added to the response to the client (ext_authz's headers on allow).
    pub response_headers: Vec<(String, String)>,
}

/// A refusal by a security step.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// The answer to the client.
    pub reply: LocalReply,
    /// `UAEX` for ext_authz; none for RBAC and JWT (Envoy reports `-`).
    pub flag: Option<ResponseFlag>,
    /// Envoy's response code details for the access log, e.g.
    /// `rbac_access_denied_matched_policy[ns[foo]-policy[deny-admin]-rule[0]]`.
    pub details: String,
}

/// The facts, policies and configuration one check reads.
#[derive(Debug, Clone, Copy)]
pub struct CheckInput<'a> {
    /// The snapshot the request reads (ext_authz providers, service resolution).
    pub snapshot: &'a Snapshot,
    /// The policies for the request's destination.
    pub policies: &'a SecurityPolicies,
    /// The connection's facts.
    pub conn: &'a ConnectionAttrs,
    /// The request or connection.
    pub traffic: Traffic<'a>,
    /// Build the per-policy trace (`waypoint explain`, the `authz` debug log); evaluation
    /// without it costs less.
    pub trace: bool,
}

/// THE security sequence: RequestAuthentication (HTTP only), then CUSTOM, then DENY and ALLOW.
/// Authorization fails closed: a CUSTOM policy naming an unknown provider denies.
pub async fn check_request(input: &CheckInput<'_>, clients: &Clients, now: SystemTime) -> Checked {
    let mut checked = Checked {
        outcome: Outcome::Deny(rbac_denial(None)),
        trace: Vec::new(),
        decided_by: None,
        would_ask: None,
    };
    let (auth, edits) = match authenticate(input, clients, now, &mut checked.trace).await {
        Ok(authenticated) => authenticated,
        Err(denial) => {
            checked.outcome = Outcome::Deny(denial);
            return checked;
        }
    };
    let mut granted = Granted {
        edits,
        ..Granted::default()
    };
    let set = &input.policies.authz;
    if set.is_empty() {
        granted.auth = auth;
        checked.outcome = Outcome::Allow(granted);
        return checked;
    }
    let http = match input.traffic {
        Traffic::Http(req) => Some(http_attrs(req, input.conn, auth.as_ref())),
        Traffic::Tcp(_) => None,
    };
    let attrs = RequestAttrs {
        conn: input.conn,
        http,
    };
    if let Err(denial) = custom(input, &attrs, clients, &mut checked, &mut granted).await {
        checked.outcome = Outcome::Deny(denial);
        return checked;
    }
    let verdict = match input.trace {
        true => set.explain(&attrs),
        false => set.evaluate(&attrs),
    };
    for line in &verdict.shadow {
        tracing::info!(target: "authz", "shadow policy (AUDIT or dry-run): {line}");
    }
    checked.trace.extend(verdict.trace);
    checked.outcome = if verdict.allowed {
        granted.auth = auth;
        Outcome::Allow(granted)
    } else {
        Outcome::Deny(rbac_denial(verdict.decided_by.as_ref()))
    };
    checked.decided_by = verdict.decided_by;
    checked
}

/// RequestAuthentication: the verified token and its edits, or Envoy's `jwt_authn` refusal.
/// TCP traffic has no token; a target without rules skips it.
async fn authenticate(
    input: &CheckInput<'_>,
    clients: &Clients,
    now: SystemTime,
    trace: &mut Vec<String>,
) -> Result<(Option<RequestAuth>, Vec<HeaderEdit>), Denial> {
    use authz::jwt::AuthnOutcome;
    let authn = &input.policies.authn;
    let Traffic::Http(req) = input.traffic else {
        return Ok((None, Vec::new()));
    };
    if authn.is_empty() {
        return Ok((None, Vec::new()));
    }
    // The trace is for `waypoint explain` and the debug log: built only when asked, so an
    // authenticated request allocates no prose.
    let note = |trace: &mut Vec<String>, what: &dyn Fn() -> String| {
        if input.trace {
            trace.push(format!(
                "authentication ({}): {}",
                names(authn.sources.iter()),
                what()
            ));
        }
    };
    match jwt::authenticate(authn, req, &clients.jwks, now).await {
        AuthnOutcome::Anonymous => {
            note(trace, &|| {
                "no token, the request goes on without one".into()
            });
            // Envoy strips the output headers from every request it checks, so that a client
            // cannot forge the claims a verified token would have put there.
            Ok((None, authn.sanitize_edits()))
        }
        AuthnOutcome::Authenticated { auth, edits } => {
            note(trace, &|| format!("token of {} verified", auth.principal));
            Ok((Some(auth), edits))
        }
        AuthnOutcome::Rejected(reply) => {
            note(trace, &|| format!("{} {}", reply.status, reply.body));
            // Envoy's details name the failure with its spaces as underscores.
            let details = format!(
                "jwt_authn_access_denied{{{}}}",
                reply.body.replace(' ', "_")
            );
            Err(Denial {
                reply,
                flag: None,
                details,
            })
        }
    }
}

/// The CUSTOM action: the first matching CUSTOM policy's provider decides. Its edits on
/// allow; its answer on deny. As istiod does, an HTTP provider does not apply to TCP traffic,
/// and a provider the MeshConfig does not declare denies (fail closed).
async fn custom(
    input: &CheckInput<'_>,
    attrs: &RequestAttrs<'_>,
    clients: &Clients,
    checked: &mut Checked,
    granted: &mut Granted,
) -> Result<(), Denial> {
    let Some(matched) = input.policies.authz.custom(attrs) else {
        return Ok(());
    };
    let name = &matched.provider;
    let Some(provider) = input.snapshot.security.ext_authz.get(name) else {
        checked.trace.push(format!(
            "CUSTOM {}: provider {name} is not in the MeshConfig's extensionProviders: denied (fail closed)",
            matched.policy
        ));
        return Err(rbac_denial_of(&matched.policy, None));
    };
    let req = match input.traffic {
        Traffic::Tcp(_) if provider.protocol == ExtAuthzProtocol::Http => {
            checked.trace.push(format!(
                "CUSTOM {}: HTTP provider {name} does not apply to TCP traffic",
                matched.policy
            ));
            return Ok(());
        }
        Traffic::Http(req) | Traffic::Tcp(req) => req,
    };
    let Some(client) = &clients.ext_authz else {
        checked.trace.push(format!(
            "CUSTOM {}: would ask provider {name}",
            matched.policy
        ));
        checked.would_ask = Some(name.clone());
        return Ok(());
    };
    match client.check(input.snapshot, provider, req, attrs).await {
        CustomOutcome::Allow {
            edits,
            path,
            response_headers,
        } => {
            checked.trace.push(format!(
                "CUSTOM {}: provider {name} allowed",
                matched.policy
            ));
            granted.edits.extend(edits);
            granted.path = path;
            granted.response_headers = response_headers;
            Ok(())
        }
        CustomOutcome::Deny(reply) => {
            checked.trace.push(format!(
                "CUSTOM {}: provider {name} denied with {}",
                matched.policy, reply.status
            ));
            Err(Denial {
                reply,
                flag: Some(ResponseFlag::UnauthorizedExternalService),
                details: "ext_authz_denied".to_string(),
            })
        }
    }
}

/// The request's HTTP facts; `req`'s path is already normalized.
fn http_attrs<'a>(
    req: &'a RequestHeader,
    conn: &ConnectionAttrs,
    auth: Option<&'a RequestAuth>,
) -> HttpAttrs<'a> {
    let mut xff = req
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    // Several X-Forwarded-For headers are one list, in order.
    let first = xff.next();
    let joined;
    let xff = match xff.next() {
        None => first,
        Some(second) => {
            let rest: Vec<&str> = first.into_iter().chain([second]).chain(xff).collect();
            joined = rest.join(",");
            Some(joined.as_str())
        }
    };
    HttpAttrs {
        host: crate::proxy::request_authority(req).unwrap_or_default(),
        method: req.method.as_str(),
        path: req.uri.path(),
        headers: &req.headers,
        remote_ip: authz::policy::remote_ip(xff, conn.source_ip),
        auth,
    }
}

/// An RBAC denial by `decided_by` (none: no ALLOW policy matched).
fn rbac_denial(decided_by: Option<&Decision>) -> Denial {
    match decided_by {
        Some(d) => rbac_denial_of(&d.policy, d.rule),
        None => rbac_denial_of_none(),
    }
}

/// Envoy names the policy that matched as istiod names its RBAC policies.
fn rbac_denial_of(policy: &authz::PolicyRef, rule: Option<usize>) -> Denial {
    let Some(rule) = rule else {
        return rbac_denial_of_none();
    };
    rbac_reply(format!(
        "rbac_access_denied_matched_policy[ns[{}]-policy[{}]-rule[{rule}]]",
        policy.namespace, policy.name
    ))
}

fn rbac_denial_of_none() -> Denial {
    rbac_reply("rbac_access_denied_matched_policy[none]".to_string())
}

fn rbac_reply(details: String) -> Denial {
    Denial {
        reply: LocalReply {
            status: 403,
            body: RBAC_DENIED.to_string(),
            headers: Vec::new(),
        },
        flag: None,
        details,
    }
}

fn names<'a>(refs: impl Iterator<Item = &'a authz::PolicyRef>) -> String {
    refs.map(|r| format!("{}/{}", r.namespace, r.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A tunnel's connection facts: the peer's principal, the HBONE connection's peer address,
/// and the CONNECT target (`port` when the target is not an `ip:port`).
pub fn tunnel_attrs(tunnel: &TunnelContext, port: u16) -> ConnectionAttrs {
    let target = tunnel.authority.parse::<SocketAddr>().ok();
    ConnectionAttrs {
        source_principal: Some(tunnel.source.principal()),
        source_ip: Some(tunnel.peer_addr.ip()),
        destination_ip: target.map(|t| t.ip()),
        destination_port: target.map_or(port, |t| t.port()),
        sni: None,
    }
}

/// The policies for traffic to `destination` (the service's, or the waypoint's own for a pod
/// addressed directly).
pub fn policies_for_tunnel<'s>(
    snapshot: &'s Snapshot,
    destination: &Destination,
) -> &'s Arc<SecurityPolicies> {
    let service = match destination {
        Destination::Service { service, .. } => Some(service),
        Destination::Workload { .. } => None,
    };
    snapshot.security.policies_for(service)
}

/// Authorizes a TCP tunnel at connection time (the RBAC network filter of Istio's waypoint):
/// L4 facts only, CUSTOM only with a gRPC provider. False when it is denied; the caller closes
/// the tunnel, as Envoy closes the connection (the client has had its CONNECT 200).
pub async fn check_tunnel(snapshot: &Snapshot, tunnel: &TunnelContext, clients: &Clients) -> bool {
    let policies = policies_for_tunnel(snapshot, &tunnel.destination);
    if policies.authz.is_empty() {
        return true;
    }
    let port = match &tunnel.destination {
        Destination::Service { port, .. } => *port,
        Destination::Workload { addr, .. } => addr.port(),
    };
    let conn = tunnel_attrs(tunnel, port);
    let Ok(connect) = RequestHeader::build("CONNECT", tunnel.authority.as_bytes(), None) else {
        tracing::info!(authority = %tunnel.authority, "TCP tunnel closed: its CONNECT authority cannot be checked");
        return false;
    };
    let input = CheckInput {
        snapshot,
        policies,
        conn: &conn,
        traffic: Traffic::Tcp(&connect),
        trace: tracing::enabled!(target: "authz", tracing::Level::DEBUG),
    };
    let checked = check_request(&input, clients, SystemTime::now()).await;
    match checked.outcome {
        Outcome::Allow(_) => true,
        Outcome::Deny(denial) => {
            tracing::info!(
                source = %tunnel.source,
                authority = %tunnel.authority,
                reason = %denial.details,
                response_flag = denial.flag.map_or("-", |f| f.as_str()),
                trace = ?checked.trace,
                "TCP tunnel closed: denied by authorization policy"
            );
            false
        }
    }
}

/// Every RequestAuthentication authenticator in force in `snapshot` (the waypoint's own and
/// each served service's).
pub fn authenticators(snapshot: &Snapshot) -> impl Iterator<Item = &authz::jwt::Authenticator> {
    std::iter::once(&snapshot.security.waypoint)
        .chain(snapshot.security.by_service.values())
        .map(|p| &*p.authn)
}

/// Keeps `jwks` fetching the `jwksUri`s of the configuration in force: now, and after every
/// applied reload, until `shutdown` (istiod's part: it fetches the keys it hands Envoy).
pub fn follow_jwks(
    live: Arc<crate::live::LiveConfig>,
    jwks: Arc<JwksCache>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    jwks.ensure(authenticators(&live.snapshot()));
    let mut applied = live.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = applied.changed() => if changed.is_err() { return },
                _ = crate::listener::stopped(&mut shutdown) => return,
            }
            jwks.ensure(authenticators(&live.snapshot()));
        }
    });
}

/// PeerAuthentication on the plain listener: true when the mode in force on `port` is STRICT,
/// so plaintext is refused. A STRICT port closes a plaintext connection without any HTTP
/// answer (a real STRICT port expects a TLS handshake and gets none).
pub fn plaintext_refused(snapshot: &Snapshot, port: u16) -> bool {
    let peers: Vec<&authz::peer::PeerAuthentication> =
        snapshot.security.peer.iter().map(|p| p.as_ref()).collect();
    authz::peer::effective_mode(&peers, port) == authz::peer::MtlsMode::Strict
}
