//! AuthorizationPolicy enforced by the real binary through HBONE with real client
//! certificates: DENY and ALLOW by principal and (normalized) path, L4 policies on a TCP
//! port at connection time, PeerAuthentication STRICT on the plain listener — and
//! `waypoint explain`'s verdict equal to the proxy's answer on every request.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use support::child::Waypoint;
use support::hbone_client::{connect, HboneConn};
use support::pki::TestCa;
use support::{any_port, echo, shop_folders, write};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// DENY `/admin*` on `web`, ALLOW only the `frontend` namespace's principals on it; on `db`
/// (TCP), ALLOW only `frontend/psql`.
const POLICIES: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: web}]
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-frontend, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: web}]
  action: ALLOW
  rules: [{from: [{source: {principals: ["cluster.local/ns/frontend/sa/*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db-psql-only, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: db}]
  action: ALLOW
  rules: [{from: [{source: {principals: ["cluster.local/ns/frontend/sa/psql"]}}]}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: 10.0.0.30
  ports: [{name: tcp, port: 5432, appProtocol: tcp}]
"#;

fn db_endpoints(addr: SocketAddr) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: db-1\n  namespace: shop\n  labels: {{kubernetes.io/service-name: db}}\naddressType: IPv4\nports: [{{name: tcp, port: {}}}]\nendpoints: [{{addresses: [\"127.0.0.1\"]}}]\n",
        addr.port()
    )
}

/// A TCP backend that answers `pong` to anything.
async fn pong_backend() -> SocketAddr {
    support::tcp_server(|mut s| async move {
        let mut buf = [0u8; 64];
        if s.read(&mut buf).await.is_ok() {
            let _ = s.write_all(b"pong").await;
        }
    })
    .await
}

/// One HTTP/1.1 request in a fresh tunnel to `web`, with `headers`; the status and body.
async fn get(conn: &HboneConn, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, _, body) = exchange(conn, path, headers).await;
    (status, body)
}

/// [`get`], with the response head too.
async fn exchange(conn: &HboneConn, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let (status, tunnel) = conn
        .open(http::Method::CONNECT, "10.0.0.10:80", &[])
        .await
        .expect("CONNECT");
    assert_eq!(status, 200, "CONNECT to web");
    let mut tunnel = tunnel.expect("tunnel");
    let mut head = format!("GET {path} HTTP/1.1\r\nhost: web.shop\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tunnel.write_all(head.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tunnel.read_to_end(&mut raw))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// `waypoint explain` for the same request: its verdict line and exit code.
fn explain(config: &Path, from: &str, path: &str) -> (String, i32) {
    explain_with(config, &["--from", from, "--path", path])
}

/// `waypoint explain --config CONFIG --to web.shop <args>`: its verdict line and exit code.
fn explain_with(config: &Path, args: &[&str]) -> (String, i32) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_waypoint"))
        .args(["explain", "--config"])
        .arg(config)
        .args(["--to", "web.shop"])
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run explain");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let verdict = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("verdict: "))
        .unwrap_or_else(|| panic!("no verdict line in {text}"))
        .to_string();
    (verdict, out.status.code().unwrap_or(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_decide_http_and_tcp_and_explain_agrees() {
    let ca = TestCa::new("cluster.local");
    let server = echo("web-a", any_port()).await;
    let (config, certs) = shop_folders(&ca, &[("a", server.local_addr)]);
    write(config.path(), "policies.yaml", POLICIES);
    write(
        config.path(),
        "db.yaml",
        &db_endpoints(pong_backend().await),
    );
    let certs_arg = certs.path().to_string_lossy().into_owned();
    let wp = Waypoint::start(
        config.path(),
        &["--cert-dir", &certs_arg, "--hbone-listen", "127.0.0.1:0"],
        "info,access=debug,authz=debug",
    );
    let root = ca.root_pem();
    let frontend = ("frontend", "web");
    let evil = ("other", "evil");
    let cases = [
        (frontend, "/hello", 200),
        (frontend, "/admin/users", 403),
        // Normalized before the policies see it: `/x/../admin` is `/admin`.
        (frontend, "/x/../admin/users", 403),
        (frontend, "/x/%2E%2E/admin", 403),
        (evil, "/hello", 403),
    ];
    for ((ns, sa), path, want) in cases {
        let conn = connect(wp.addr("hbone"), Some(&ca.issue(ns, sa)), &root)
            .await
            .expect("HBONE connection");
        let (status, body) = get(&conn, path, &[]).await;
        assert_eq!(status, want, "{ns}/{sa} GET {path}: {body}");
        if want == 403 {
            assert_eq!(body, "RBAC: access denied", "{ns}/{sa} GET {path}");
        }
        let (verdict, exit) = explain(config.path(), &ca.spiffe_id(ns, sa), path);
        assert!(
            verdict.starts_with(&want.to_string())
                || (want == 200 && verdict.starts_with("allowed")),
            "explain says '{verdict}' for {ns}/{sa} GET {path}, the proxy answered {status}"
        );
        assert_eq!(exit, if want == 200 { 0 } else { 1 }, "{verdict}");
    }

    // TCP: the allowed identity's bytes reach the backend; a denied one's tunnel is closed
    // after its CONNECT 200 without a byte from the backend.
    for ((ns, sa), allowed) in [(("frontend", "psql"), true), (("frontend", "web"), false)] {
        let conn = connect(wp.addr("hbone"), Some(&ca.issue(ns, sa)), &root)
            .await
            .expect("HBONE connection");
        let (status, tunnel) = conn
            .open(http::Method::CONNECT, "10.0.0.30:5432", &[])
            .await
            .expect("CONNECT");
        assert_eq!(status, 200);
        let mut tunnel = tunnel.expect("tunnel");
        let _ = tunnel.write_all(b"ping").await;
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tunnel.read_to_end(&mut reply))
            .await
            .expect("tunnel ends in time");
        let want: &[u8] = if allowed { b"pong" } else { b"" };
        assert_eq!(reply, want, "{ns}/{sa} over TCP");
    }
    assert!(
        wp.wait_for_log(
            &[
                "TCP tunnel closed: denied",
                "rbac_access_denied_matched_policy[none]"
            ],
            Duration::from_secs(5)
        )
        .await,
        "no log line for the denied TCP tunnel"
    );
}

const STRICT: &str = r#"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
"#;

/// Reads what the plain listener answers a plaintext GET: empty when it closed unanswered.
async fn plaintext_answer(addr: SocketAddr) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = tcp
        .write_all(b"GET / HTTP/1.1\r\nhost: web.shop\r\nconnection: close\r\n\r\n")
        .await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw)).await;
    String::from_utf8_lossy(&raw).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_peer_authentication_closes_plaintext() {
    let ca = TestCa::new("cluster.local");
    let server = echo("web-a", any_port()).await;
    let (config, _certs) = shop_folders(&ca, &[("a", server.local_addr)]);
    let wp = Waypoint::start(config.path(), &["--http-listen", "127.0.0.1:0"], "info");
    let answer = plaintext_answer(wp.addr("http")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "PERMISSIVE: {answer}");

    write(config.path(), "peer.yaml", STRICT);
    // The folder is watched: once the reload is in, plaintext is closed unanswered.
    let mut answer = String::new();
    for _ in 0..50 {
        answer = plaintext_answer(wp.addr("http")).await;
        if answer.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer, "", "STRICT must close plaintext unanswered");
}

/// Istio's sample JWKS and tokens (`authz/tests/data/jwt`, from istio/istio).
fn sample(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../authz/tests/data/jwt")
        .join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_authentication_and_explain_agree() {
    let ca = TestCa::new("cluster.local");
    let server = echo("web-a", any_port()).await;
    let (config, certs) = shop_folders(&ca, &[("a", server.local_addr)]);
    let jwks = std::fs::read_to_string(sample("jwks.json")).expect("jwks");
    let policy = format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: jwt, namespace: shop}}\nspec:\n  targetRefs: [{{kind: Service, group: \"\", name: web}}]\n  jwtRules:\n  - issuer: testing@secure.istio.io\n    jwks: '{}'\n",
        jwks.trim()
    );
    write(config.path(), "jwt.yaml", &policy);
    let certs_arg = certs.path().to_string_lossy().into_owned();
    let wp = Waypoint::start(
        config.path(),
        &["--cert-dir", &certs_arg, "--hbone-listen", "127.0.0.1:0"],
        "info,access=debug",
    );
    let conn = connect(
        wp.addr("hbone"),
        Some(&ca.issue("frontend", "web")),
        &ca.root_pem(),
    )
    .await
    .expect("HBONE connection");
    let from = ca.spiffe_id("frontend", "web");
    let token = |name: &str| std::fs::read_to_string(sample(name)).expect("token");

    // A valid token passes; the backend does not receive it (forwardOriginalToken: false).
    let bearer = format!("Bearer {}", token("demo.jwt").trim());
    let (status, _, body) = exchange(&conn, "/hello", &[("authorization", &bearer)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.to_ascii_lowercase().contains("authorization"),
        "{body}"
    );
    let demo = sample("demo.jwt").to_string_lossy().into_owned();
    let (verdict, exit) = explain_with(config.path(), &["--from", &from, "--jwt", &demo]);
    assert!(verdict.starts_with("allowed"), "{verdict}");
    assert_eq!(exit, 0);

    // An expired one is refused as Envoy's jwt_authn refuses it.
    let bearer = format!("Bearer {}", token("expired.jwt").trim());
    let (status, head, body) = exchange(&conn, "/hello", &[("authorization", &bearer)]).await;
    assert_eq!((status, body.as_str()), (401, "Jwt is expired"));
    assert!(head.contains("www-authenticate: bearer realm="), "{head}");
    let expired = sample("expired.jwt").to_string_lossy().into_owned();
    let (verdict, exit) = explain_with(config.path(), &["--from", &from, "--jwt", &expired]);
    assert_eq!((verdict.as_str(), exit), ("401 Jwt is expired", 1));

    // No token at all passes authentication (every rule "or allow missing").
    assert_eq!(get(&conn, "/hello", &[]).await.0, 200);
}
