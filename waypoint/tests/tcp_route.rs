//! Plain TCP through a TCPRoute, via HBONE, through the real binary: weighted backends, the
//! bytes both ways with half-close, and the source principal in the waypoint's log.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::child::Waypoint;
use support::hbone_client::connect;
use support::pki::TestCa;
use support::write;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP backend that reads until the client half-closes, then answers `<name>:<what it read>`
/// and closes: it only answers correctly if the half-close reached it and its reply can still
/// travel back.
async fn tcp_backend(name: &'static str) -> SocketAddr {
    support::tcp_server(move |mut s| async move {
        let mut got = Vec::new();
        if s.read_to_end(&mut got).await.is_ok() {
            let _ = s.write_all(format!("{name}:").as_bytes()).await;
            let _ = s.write_all(&got).await;
            let _ = s.shutdown().await;
        }
    })
    .await
}

fn config(a: SocketAddr, b: SocketAddr) -> String {
    let backend = |name: &str, ip: u8, addr: SocketAddr| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  clusterIP: 10.0.0.{ip}\n  ports: [{{name: tcp, port: 5432}}]\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: shop\n  labels: {{kubernetes.io/service-name: {name}}}\n\
             addressType: IPv4\nports: [{{name: tcp, port: {port}}}]\nendpoints: [{{addresses: [\"127.0.0.1\"]}}]\n",
            port = addr.port()
        )
    };
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {{istio.io/use-waypoint: waypoint}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: waypoint, namespace: shop}}\nspec:\n  gatewayClassName: istio-waypoint\n  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: db, namespace: shop}}\nspec:\n  clusterIP: 10.0.0.30\n  ports: [{{name: postgres, port: 5432}}]\n\
         {}{}---\n\
         apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {{name: db-split, namespace: shop}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: db, port: 5432}}]\n  rules:\n  - backendRefs:\n    - {{name: db-a, port: 5432, weight: 3}}\n    - {{name: db-b, port: 5432, weight: 1}}\n",
        backend("db-a", 31, a),
        backend("db-b", 32, b)
    )
}

/// The waypoint binary serving [`config`] (edited by `edit`) in front of backends A and B,
/// with HBONE on; returns it with the CA that issued its identity.
async fn start(edit: impl Fn(String) -> String) -> (Waypoint, TestCa, [tempfile::TempDir; 2]) {
    let a = tcp_backend("A").await;
    let b = tcp_backend("B").await;
    let ca = TestCa::new("cluster.local");
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "mesh.yaml", &edit(config(a, b)));
    ca.write_cert_dir(certs.path(), &ca.issue("shop", "waypoint"));
    let certs_arg = certs.path().to_string_lossy().into_owned();
    let wp = Waypoint::start(
        dir.path(),
        &["--cert-dir", &certs_arg, "--hbone-listen", "127.0.0.1:0"],
        "info,access=debug",
    );
    (wp, ca, [dir, certs])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_route_splits_connections_and_carries_bytes_both_ways() {
    let (wp, ca, _dirs) = start(|yaml| yaml).await;
    let conn = connect(
        wp.addr("hbone"),
        Some(&ca.issue("frontend", "psql")),
        &ca.root_pem(),
    )
    .await
    .expect("HBONE connection");

    let (mut to_a, mut to_b) = (0, 0);
    for i in 0..200 {
        let (status, tunnel) = conn
            .open(http::Method::CONNECT, "10.0.0.30:5432", &[])
            .await
            .expect("CONNECT");
        assert_eq!(status, 200);
        let mut tunnel = tunnel.expect("tunnel");
        let msg = format!("query {i}");
        tunnel.write_all(msg.as_bytes()).await.expect("write");
        tunnel.shutdown().await.expect("half-close");
        let mut reply = String::new();
        tokio::time::timeout(Duration::from_secs(5), tunnel.read_to_string(&mut reply))
            .await
            .expect("reply in time")
            .expect("read");
        match reply.split_once(':') {
            Some(("A", rest)) if rest == msg => to_a += 1,
            Some(("B", rest)) if rest == msg => to_b += 1,
            _ => panic!("unexpected reply {reply:?} to {msg:?}"),
        }
    }
    println!("TCPRoute 3:1 split over 200 connections: A={to_a} B={to_b}");
    assert!(
        (125..=175).contains(&to_a),
        "A got {to_a} of 200, want 150 ± 25"
    );

    // The waypoint's access log names the source principal of the tunnel.
    assert!(
        wp.wait_for_log(
            &[
                "TCP tunnel done",
                "spiffe://cluster.local/ns/frontend/sa/psql",
                "sent=7"
            ],
            Duration::from_secs(5)
        )
        .await,
        "no access log line with the source principal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_as_hbone_client_reaches_a_tcp_route_backend() {
    // All traffic to db-a: db-b's weight is 0.
    let (wp, ca, _dirs) = start(|yaml| {
        yaml.replace(
            "{name: db-b, port: 5432, weight: 1}",
            "{name: db-b, port: 5432, weight: 0}",
        )
    })
    .await;
    let (envoy, listener) = support::envoy::Envoy::hbone_client_expecting(
        wp.addr("hbone"),
        "10.0.0.30:5432",
        &ca.issue("frontend", "psql"),
        &ca.root_pem(),
        &[],
        Some("spiffe://cluster.local/ns/shop/sa/waypoint"),
    );
    let mut tcp = tokio::net::TcpStream::connect(listener)
        .await
        .expect("connect to envoy");
    tcp.write_all(b"select 1").await.expect("write");
    tcp.shutdown().await.expect("half-close");
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut reply))
        .await
        .expect("reply in time")
        .expect("read");
    assert_eq!(reply, "A:select 1", "envoy: {}", envoy.access_log());
    assert!(
        wp.wait_for_log(
            &[
                "TCP tunnel done",
                "spiffe://cluster.local/ns/frontend/sa/psql",
                "sent=8"
            ],
            Duration::from_secs(5)
        )
        .await,
        "no access log line with the source principal"
    );
}
