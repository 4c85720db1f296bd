//! The Envoy HBONE peers of the test harness, checked without our waypoint: an Envoy HBONE
//! client (ztunnel's outbound) tunnels plain HTTP to an Envoy HBONE server (ztunnel's inbound),
//! which delivers it to an echo backend. If these fail, the waypoint tests built on them cannot
//! be trusted either.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use conformance::echo::{spawn_echo, EchoIdentity, EchoServer};
use support::envoy::Envoy;
use support::pki::TestCa;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BAGGAGE: &str = "k8s.namespace.name=shop,k8s.deployment.name=sleep,service.name=sleep";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn echo_backend() -> EchoServer {
    spawn_echo(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        EchoIdentity {
            namespace: "shop".into(),
            service: "web".into(),
            pod: "web-0".into(),
        },
    )
    .await
    .expect("echo backend starts")
}

/// Sends one HTTP/1.1 GET over a fresh connection and returns the raw response, or what arrived
/// before the connection closed.
async fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: web.shop.svc.cluster.local\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    // A refused tunnel shows up as a reset or a close; either way the answer is what arrived.
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("response within 10s");
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_client_tunnels_through_envoy_server_to_echo() {
    let backend = echo_backend().await;
    let ca = TestCa::new("cluster.local");
    let (server, hbone) = Envoy::hbone_server(&ca.issue("shop", "web"), &ca.root_pem());
    let target = backend.local_addr.to_string();
    let forwarded = "for=\"127.0.0.1:40000\"";
    let (client, outbound) = Envoy::hbone_client_expecting(
        hbone,
        &target,
        &ca.issue("shop", "sleep"),
        &ca.root_pem(),
        &[
            ("baggage", BAGGAGE),
            ("forwarded", forwarded),
            ("traceparent", TRACEPARENT),
        ],
        Some("spiffe://cluster.local/ns/shop/sa/web"),
    );

    let response = get(outbound, "/hello?x=1").await;
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "response: {response}\nclient stderr:\n{}\nserver stderr:\n{}",
        client.stderr(),
        server.stderr()
    );
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let echo: serde_json::Value = serde_json::from_str(body).expect("echo JSON body");
    assert_eq!(echo["path"], "/hello?x=1");
    assert_eq!(echo["host"], "web.shop.svc.cluster.local");
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["pod"], "web-0");

    let entries = server.wait_for_access_log(1, Duration::from_secs(10));
    let tunnel = &entries[0];
    assert_eq!(
        tunnel["peer_uri_san"],
        "spiffe://cluster.local/ns/shop/sa/sleep"
    );
    assert_eq!(tunnel["authority"], target);
    assert_eq!(tunnel["method"], "CONNECT");
    assert_eq!(tunnel["response_code"], 200);
    assert_eq!(tunnel["upstream_host"], target);
    assert_eq!(tunnel["baggage"], BAGGAGE);
    assert_eq!(tunnel["forwarded"], forwarded);
    assert_eq!(tunnel["traceparent"], TRACEPARENT);
    assert_eq!(tunnel["tls_version"], "TLSv1.3");
    assert!(
        tunnel["sni"].is_null(),
        "ztunnel sends no SNI, nor does the client: {tunnel}"
    );

    let entries = client.wait_for_access_log(1, Duration::from_secs(10));
    assert_eq!(
        entries[0]["upstream_peer_uri_san"],
        "spiffe://cluster.local/ns/shop/sa/web"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_refuses_a_client_from_another_mesh() {
    let backend = echo_backend().await;
    let ca = TestCa::new("cluster.local");
    let other = TestCa::new("other.mesh");
    let (server, hbone) = Envoy::hbone_server(&ca.issue("shop", "web"), &ca.root_pem());
    // The client trusts our root but presents a certificate from a root the server does not.
    let (client, outbound) = Envoy::hbone_client(
        hbone,
        &backend.local_addr.to_string(),
        &other.issue("shop", "sleep"),
        &ca.root_pem(),
        &[],
    );

    let response = get(outbound, "/").await;
    assert_eq!(response, "", "an untrusted client must not get through");
    assert!(server.access_log_entries().is_empty());
    let entries = client.wait_for_access_log(1, Duration::from_secs(10));
    assert!(
        entries[0]["response_flags"]
            .as_str()
            .is_some_and(|flags| flags.contains("UF")),
        "{}",
        entries[0]
    );
    assert_eq!(
        server.stat("listener.hbone.ssl.fail_verify_error"),
        Some(1),
        "{}",
        server.stats("ssl")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_refuses_a_server_with_the_wrong_identity_or_an_expired_cert() {
    let backend = echo_backend().await;
    let ca = TestCa::new("cluster.local");
    let now = SystemTime::now();
    let expired = ca.issue_with(
        "spiffe://cluster.local/ns/shop/sa/web",
        now - Duration::from_secs(48 * 3600),
        now - Duration::from_secs(24 * 3600),
    );
    let target = backend.local_addr.to_string();

    let (_impostor, impostor_hbone) =
        Envoy::hbone_server(&ca.issue("shop", "other"), &ca.root_pem());
    let (_stale, stale_hbone) = Envoy::hbone_server(&expired, &ca.root_pem());
    for hbone in [impostor_hbone, stale_hbone] {
        let (client, outbound) = Envoy::hbone_client_expecting(
            hbone,
            &target,
            &ca.issue("shop", "sleep"),
            &ca.root_pem(),
            &[],
            Some("spiffe://cluster.local/ns/shop/sa/web"),
        );
        let response = get(outbound, "/").await;
        assert_eq!(response, "", "the client must refuse the server at {hbone}");
        let entries = client.wait_for_access_log(1, Duration::from_secs(10));
        let failure = entries[0]["upstream_failure"].as_str().unwrap_or("");
        assert!(
            failure.contains("CERTIFICATE_VERIFY_FAILED"),
            "{}",
            entries[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_to_a_closed_port_is_answered_503() {
    let ca = TestCa::new("cluster.local");
    let (server, hbone) = Envoy::hbone_server(&ca.issue("shop", "web"), &ca.root_pem());
    let (client, outbound) = Envoy::hbone_client(
        hbone,
        "127.0.0.1:1",
        &ca.issue("shop", "sleep"),
        &ca.root_pem(),
        &[],
    );

    assert_eq!(get(outbound, "/").await, "");
    let entries = server.wait_for_access_log(1, Duration::from_secs(10));
    assert_eq!(entries[0]["response_code"], 503, "{}", entries[0]);
    assert_eq!(entries[0]["authority"], "127.0.0.1:1");
    // This is how a test sees the status a waypoint answered a CONNECT with.
    let entries = client.wait_for_access_log(1, Duration::from_secs(10));
    assert_eq!(
        entries[0]["upstream_failure"], "tunnel_response:503",
        "{}",
        entries[0]
    );
}
