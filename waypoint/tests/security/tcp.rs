//! Scenario 5: a TCPRoute port with an L4 ALLOW by principal: the allowed identity's tunnel
//! carries bytes both ways, the other identity's is closed without reaching the backend.

use super::mesh::{policy, service_yaml, Svc, World, NS};
use super::probe::{explain_to, Peer};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const X: Peer = Peer::hbone("a", "x", [127, 0, 0, 11]);
const Y: Peer = Peer::hbone("b", "y", [127, 0, 0, 12]);
/// The TCP Service's VIP and port.
const DB: &str = "10.0.3.1:5432";
const DB_HOST: &str = "db.shop.svc.cluster.local:5432";

/// A TCP echo backend: copies what it reads back until the client half-closes.
async fn tcp_echo() -> SocketAddr {
    crate::support::tcp_server(|mut s| async move {
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    })
    .await
}

fn files(backend: SocketAddr, echo: SocketAddr) -> Vec<(&'static str, String)> {
    let route = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {{name: db, namespace: {NS}}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: db, port: 5432}}]\n  rules:\n  - backendRefs: [{{name: db-backend, port: 5432}}]\n"
    );
    let services = super::mesh::services_yaml(
        &[Svc {
            name: "unused",
            octet: 50,
        }],
        backend,
    ) + &service_yaml(NS, "db", "10.0.3.1", 5432, echo)
        .replace("name: http", "name: tcp")
        + &service_yaml(NS, "db-backend", "10.0.3.2", 5432, echo)
            .replace("name: http", "name: tcp");
    let ap = policy(
        "allow-x-tcp",
        "db",
        "  rules:\n  - from:\n    - source: {principals: [\"cluster.local/ns/a/sa/x\"]}\n",
    );
    vec![("mesh.yaml", services + &route), ("policies.yaml", ap)]
}

/// Opens a tunnel to the TCP service from `peer`, sends `msg`, half-closes, and returns what
/// came back (None when the CONNECT was refused or the tunnel closed with an error).
async fn exchange(w: &World, peer: &Peer, msg: &str) -> Option<String> {
    let conn = w.hbone(peer).await.expect("HBONE connection");
    let (status, tunnel) = conn.open(http::Method::CONNECT, DB, &[]).await.ok()?;
    let mut tunnel = tunnel.filter(|_| status == 200)?;
    tunnel.write_all(msg.as_bytes()).await.ok()?;
    tunnel.shutdown().await.ok()?;
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), tunnel.read_to_string(&mut reply))
        .await
        .expect("the tunnel ends within 5 s")
        .ok()?;
    Some(reply)
}

/// Sends `msg` from `peer`, checks whether it came back, and that explain agrees.
async fn check(w: &World, peer: &Peer, allowed: bool) {
    let got = exchange(w, peer, "ping").await;
    let echoed = got.as_deref() == Some("ping");
    if echoed != allowed {
        w.fail(format!(
            "TCP from {peer:?}: want allowed={allowed}, got {got:?}"
        ));
    }
    let more = ["--method", "GET", "--path", "/"].map(String::from);
    let e = explain_to(w.dir(), peer, DB_HOST, &more);
    let named = allowed || e.text.contains("allow-x-tcp");
    if (e.status() == Some(200)) != allowed || !named {
        w.fail(format!(
            "TCP from {peer:?}: explain's {:?} (naming allow-x-tcp: {named}) differs from allowed={allowed}:\n{}",
            e.verdict, e.text
        ));
    }
}

/// The whole scenario on one waypoint.
pub async fn run() {
    let echo = tcp_echo().await;
    let w = World::start(move |backend| files(backend, echo)).await;
    check(&w, &X, true).await;
    check(&w, &Y, false).await;
    w.finish();
}
