//! HBONE in: a real in-process waypoint with a workload certificate, driven by an HBONE
//! client shaped like ztunnel's, in front of echo backends.

mod support;

use std::path::Path;
use std::time::{Duration, SystemTime};
use support::hbone_client::{connect, handshake_verdict, http1_get, http2_get};
use support::pki::TestCa;
use support::{any_port, echo};

struct Mesh {
    ca: TestCa,
    wp: waypoint::app::Running,
    _backends: Vec<conformance::EchoServer>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// A waypoint for namespace `shop` (Service `web`, VIP 10.0.0.10:80, one echo backend) with
/// identity spiffe://cluster.local/ns/shop/sa/waypoint.
async fn mesh() -> Mesh {
    let ca = TestCa::new("cluster.local");
    let a = echo("web-a-0", any_port()).await;
    let (config, certs) = support::shop_folders(&ca, &[("a", a.local_addr)]);
    let wp = start(config.path(), certs.path()).await;
    Mesh {
        ca,
        wp,
        _backends: vec![a],
        _dirs: (config, certs),
    }
}

async fn start(config: &Path, certs: &Path) -> waypoint::app::Running {
    let mut opts = support::local_options(config);
    opts.cert_dir = Some(certs.to_path_buf());
    opts.hbone_listen = any_port();
    waypoint::app::start(opts).await.expect("waypoint starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_h2_in_tunnels_reach_the_service_with_the_source_principal() {
    let m = mesh().await;
    let hbone = m.wp.hbone_addr.expect("HBONE listener");
    let client = m.ca.issue("frontend", "shop-ui");
    let conn = connect(hbone, Some(&client), &m.ca.root_pem())
        .await
        .expect("mTLS + h2");

    // HTTP/1.1 inside a CONNECT to the service VIP, with ztunnel's metadata headers.
    let (status, body) = conn
        .get(
            "10.0.0.10:80",
            "web.shop.svc.cluster.local",
            "/hello",
            &[
                ("forwarded", "for=\"10.1.2.3:45678\""),
                (
                    "baggage",
                    "k8s.namespace.name=frontend,service.name=shop-ui",
                ),
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
            ],
        )
        .await
        .expect("h1 in tunnel");
    assert_eq!(status, 200, "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).expect("echo json");
    assert_eq!(echo["pod"], "web-a-0");
    assert_eq!(echo["path"], "/hello");
    let xfcc = echo["headers"]["X-Forwarded-Client-Cert"][0]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        xfcc,
        "By=spiffe://cluster.local/ns/shop/sa/waypoint;URI=spiffe://cluster.local/ns/frontend/sa/shop-ui",
        "{body}"
    );

    // HTTP/2 with prior knowledge in another stream of the same connection.
    let (status, tunnel) = conn
        .open(http::Method::CONNECT, "10.0.0.10:80", &[])
        .await
        .expect("CONNECT");
    assert_eq!(status, 200);
    let (status, body) = http2_get(tunnel.expect("tunnel"), "web.shop", "/h2")
        .await
        .expect("h2 in tunnel");
    assert_eq!(status, 200, "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).expect("echo json");
    assert_eq!(echo["path"], "/h2");
    assert!(echo["headers"]["X-Forwarded-Client-Cert"][0]
        .as_str()
        .unwrap_or_default()
        .contains("sa/shop-ui"));

    // A client-supplied XFCC is replaced, never trusted.
    let (status, tunnel) = conn
        .open(http::Method::CONNECT, "10.0.0.10:80", &[])
        .await
        .expect("CONNECT");
    assert_eq!(status, 200);
    let (mut sender, c) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(
        tunnel.expect("tunnel"),
    ))
    .await
    .expect("h1 handshake");
    tokio::spawn(c);
    let req = http::Request::builder()
        .uri("/spoof")
        .header("host", "web.shop")
        .header(
            "x-forwarded-client-cert",
            "URI=spiffe://cluster.local/ns/admin/sa/root",
        )
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    let echo: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let xfcc = &echo["headers"]["X-Forwarded-Client-Cert"];
    assert_eq!(xfcc.as_array().map(Vec::len), Some(1), "{echo}");
    assert!(
        !xfcc[0].as_str().unwrap_or_default().contains("ns/admin"),
        "{echo}"
    );

    // Every tunnel's context is registered for the proxy phases and must go when the tunnel
    // does, or a long-lived waypoint would leak one entry per tunnel.
    assert!(
        !m.wp.tunnels.is_empty(),
        "the open HTTP/1.1 tunnel is registered"
    );
    drop(sender);
    drop(conn);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !m.wp.tunnels.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} tunnel contexts left registered",
            m.wp.tunnels.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    m.wp.shutdown().await;
}

/// How the waypoint must refuse a bad stream.
#[derive(Debug)]
enum Refusal {
    /// It answers with this status.
    Status(u16),
    /// The authority is not even a URI: the client library refuses to build the request, so
    /// nothing reaches the waypoint (the connection must still be fine afterwards).
    Unsendable,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_streams_get_their_status_and_leave_the_connection_working() {
    let m = mesh().await;
    let hbone = m.wp.hbone_addr.expect("HBONE listener");
    let conn = connect(hbone, Some(&m.ca.issue("frontend", "ui")), &m.ca.root_pem())
        .await
        .expect("connect");
    // One tunnel stays open across the bad streams.
    let (status, open_tunnel) = conn
        .open(http::Method::CONNECT, "10.0.0.10:80", &[])
        .await
        .expect("CONNECT");
    assert_eq!(status, 200);

    let cases: &[(http::Method, &str, Refusal)] = &[
        (http::Method::GET, "10.0.0.10:80", Refusal::Status(400)),
        (http::Method::POST, "10.0.0.10:80", Refusal::Status(400)),
        (http::Method::CONNECT, "10.0.0.10", Refusal::Status(400)),
        (http::Method::CONNECT, "[fd00::1", Refusal::Unsendable),
        (
            http::Method::CONNECT,
            "10.0.0.10:http",
            Refusal::Status(400),
        ),
        (http::Method::CONNECT, "10.9.9.9:80", Refusal::Status(503)),
        (
            http::Method::CONNECT,
            "10.0.0.10:8080",
            Refusal::Status(503),
        ),
        (
            http::Method::CONNECT,
            "nosuch.shop.svc.cluster.local:80",
            Refusal::Status(503),
        ),
    ];
    for (method, authority, want) in cases {
        let got = conn.open(method.clone(), authority, &[]).await;
        match (want, got) {
            (Refusal::Status(want), Ok((status, _))) => {
                assert_eq!(status, *want, "{method} {authority}")
            }
            // Only a request the client library cannot even build may fail client-side; a
            // reset stream or a lost connection is not the refusal this test is about.
            (Refusal::Unsendable, Err(e)) => assert!(
                e.downcast_ref::<http::Error>().is_some(),
                "{method} {authority}: expected the request to be unbuildable, got {e:#}"
            ),
            (want, got) => panic!("{method} {authority}: expected {want:?}, got {got:?}"),
        }
    }
    // A hostname authority that names the service works too.
    let (status, body) = conn
        .get("web.shop.svc.cluster.local:80", "web.shop", "/by-name", &[])
        .await
        .expect("by name");
    assert_eq!(status, 200, "{body}");
    // The tunnel opened first still works.
    let (status, body) = http1_get(open_tunnel.expect("tunnel"), "web.shop", "/still-open")
        .await
        .expect("old tunnel");
    assert_eq!(status, 200, "{body}");
    m.wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_clients_fail_the_handshake() {
    let m = mesh().await;
    let hbone = m.wp.hbone_addr.expect("HBONE listener");
    let root = m.ca.root_pem();
    let other_ca = TestCa::new("cluster.local");
    let other_td = TestCa::new("example.org");
    let now = SystemTime::now();
    let expired = m.ca.issue_with(
        "spiffe://cluster.local/ns/frontend/sa/ui",
        now - Duration::from_secs(48 * 3600),
        now - Duration::from_secs(24 * 3600),
    );
    // Signed by our root but naming another trust domain.
    let wrong_td = m.ca.issue_with(
        "spiffe://example.org/ns/frontend/sa/ui",
        now - Duration::from_secs(3600),
        now + Duration::from_secs(3600),
    );
    let cases = [
        ("no client certificate", None),
        (
            "certificate from another CA",
            Some(other_ca.issue("frontend", "ui")),
        ),
        (
            "another trust domain's CA",
            Some(other_td.issue("frontend", "ui")),
        ),
        ("wrong trust domain", Some(wrong_td)),
        ("expired certificate", Some(expired)),
    ];
    for (what, leaf) in cases {
        // The refusal must be the TLS handshake's: the waypoint's alert, not a 403, a reset
        // stream or any other way of saying no after letting the client in.
        match handshake_verdict(hbone, leaf.as_ref(), &root).await {
            Err(why) if format!("{why:#}").contains("alert") => {}
            other => panic!("{what}: expected a TLS alert from the handshake, got {other:?}"),
        }
    }
    assert!(
        handshake_verdict(hbone, Some(&m.ca.issue("frontend", "ui")), &root)
            .await
            .is_ok(),
        "a client of the mesh is let in"
    );
    // The waypoint is unharmed.
    let good = connect(hbone, Some(&m.ca.issue("frontend", "ui")), &root)
        .await
        .expect("good client");
    let (status, _) = good
        .get("10.0.0.10:80", "web.shop", "/", &[])
        .await
        .expect("request");
    assert_eq!(status, 200);
    m.wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificates_reach_new_handshakes_and_spare_open_tunnels() {
    let m = mesh().await;
    let hbone = m.wp.hbone_addr.expect("HBONE listener");
    let root = m.ca.root_pem();
    let client = m.ca.issue("frontend", "ui");
    let old = connect(hbone, Some(&client), &root).await.expect("connect");
    let (status, tunnel) = old
        .open(http::Method::CONNECT, "10.0.0.10:80", &[])
        .await
        .expect("CONNECT");
    assert_eq!(status, 200);
    let first_cert = old.server_cert.clone();

    // Replace the files (same identity, new key and certificate), as the CA's renewal would.
    let dir = m._dirs.1.path();
    let renewed = m.ca.issue("shop", "waypoint");
    m.ca.write_cert_dir(dir, &renewed);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let fresh = connect(hbone, Some(&client), &root)
            .await
            .expect("connect after rotation");
        if fresh.server_cert != first_cert {
            let (status, _) = fresh
                .get("10.0.0.10:80", "web.shop", "/new", &[])
                .await
                .expect("new conn works");
            assert_eq!(status, 200);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new handshakes still get the old certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The tunnel from before the rotation still carries requests, as does its connection.
    let (status, body) = http1_get(tunnel.expect("tunnel"), "web.shop", "/old-tunnel")
        .await
        .expect("old tunnel");
    assert_eq!(status, 200, "{body}");
    let (status, _) = old
        .get("10.0.0.10:80", "web.shop", "/old-conn", &[])
        .await
        .expect("old connection");
    assert_eq!(status, 200);
    m.wp.shutdown().await;
}

/// A local answer written just before the waypoint closes the downstream stream (here the 503
/// for an endpoint that refuses connections) reaches the tunnelled client instead of a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_failure_is_answered_through_the_tunnel() {
    let ca = TestCa::new("cluster.local");
    // A port that was free a moment ago: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let (config, certs) = support::shop_folders(&ca, &[("a", dead)]);
    let wp = start(config.path(), certs.path()).await;
    let hbone = wp.hbone_addr.expect("HBONE listener");
    let client = ca.issue("frontend", "shop-ui");
    let conn = connect(hbone, Some(&client), &ca.root_pem())
        .await
        .expect("mTLS + h2");
    for _ in 0..3 {
        let (status, body) = conn
            .get("10.0.0.10:80", "web.shop.svc.cluster.local", "/", &[])
            .await
            .expect("an answer, not a broken tunnel");
        assert_eq!(status, 503, "{body}");
    }
    wp.shutdown().await;
}
