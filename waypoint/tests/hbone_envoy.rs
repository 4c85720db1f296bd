//! The waypoint between real Envoy HBONE peers (Istio's own data plane engine): Envoy as the
//! ztunnel-like client sending HTTP/1.1 and h2 into the waypoint, and Envoy as the ambient
//! pod's HBONE server the waypoint dials.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use support::envoy::Envoy;
use support::hbone_client::{http1_get, http2_get};
use support::pki::TestCa;
use support::{any_port, echo, write, HttpClient};

const WAYPOINT_ID: &str = "spiffe://cluster.local/ns/shop/sa/waypoint";

async fn start(
    config: &std::path::Path,
    certs: &std::path::Path,
    upstream_port: u16,
) -> waypoint::app::Running {
    let mut opts = support::local_options(config);
    opts.cert_dir = Some(certs.to_path_buf());
    opts.hbone_listen = any_port();
    opts.hbone_upstream_port = upstream_port;
    waypoint::app::start(opts).await.expect("waypoint starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_hbone_client_sends_http1_and_h2_through_the_waypoint() {
    let ca = TestCa::new("cluster.local");
    let backend = echo("web-a-0", any_port()).await;
    let (config, certs) = support::shop_folders(&ca, &[("a", backend.local_addr)]);
    let wp = start(config.path(), certs.path(), 15008).await;
    let hbone = wp.hbone_addr.expect("HBONE listener");

    // Envoy plays ztunnel: it checks the waypoint's SAN and sends ztunnel's CONNECT headers.
    let (envoy, listener) = Envoy::hbone_client_expecting(
        hbone,
        "10.0.0.10:80",
        &ca.issue("frontend", "sleep"),
        &ca.root_pem(),
        &[
            (
                "baggage",
                "k8s.namespace.name=frontend,k8s.deployment.name=sleep,service.name=sleep",
            ),
            ("forwarded", "for=\"10.244.0.7:51234\""),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ],
        Some(WAYPOINT_ID),
    );

    let tcp = tokio::net::TcpStream::connect(listener)
        .await
        .expect("connect to envoy");
    let (status, body) = http1_get(tcp, "web.shop.svc.cluster.local", "/via-envoy/h1")
        .await
        .expect("h1");
    assert_eq!(status, 200, "{body}\nenvoy: {}", envoy.access_log());
    let echo: serde_json::Value = serde_json::from_str(&body).expect("echo json");
    assert_eq!(echo["path"], "/via-envoy/h1");
    assert_eq!(echo["pod"], "web-a-0");
    assert_eq!(
        echo["headers"]["X-Forwarded-Client-Cert"][0],
        format!("By={WAYPOINT_ID};URI=spiffe://cluster.local/ns/frontend/sa/sleep")
    );

    let tcp = tokio::net::TcpStream::connect(listener)
        .await
        .expect("connect to envoy");
    let (status, body) = http2_get(tcp, "web.shop.svc.cluster.local", "/via-envoy/h2")
        .await
        .expect("h2");
    assert_eq!(status, 200, "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).expect("echo json");
    assert_eq!(echo["path"], "/via-envoy/h2");
    assert_eq!(
        echo["proto"], "HTTP/1.1",
        "the waypoint speaks HTTP/1.1 to a plain endpoint"
    );
    assert!(echo["headers"]["X-Forwarded-Client-Cert"][0]
        .as_str()
        .unwrap_or_default()
        .ends_with("sa/sleep"));

    // Both tunnels were accepted by the waypoint as Envoy reports them.
    let entries = envoy.wait_for_access_log(2, Duration::from_secs(5));
    assert!(entries.len() >= 2, "{entries:?}");
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_hbone_client_to_an_unknown_destination_is_refused_with_503() {
    let ca = TestCa::new("cluster.local");
    let (config, certs) = support::shop_folders(&ca, &[]);
    let wp = start(config.path(), certs.path(), 15008).await;
    let (envoy, listener) = Envoy::hbone_client(
        wp.hbone_addr.expect("HBONE"),
        "10.9.9.9:80",
        &ca.issue("frontend", "sleep"),
        &ca.root_pem(),
        &[],
    );
    let tcp = tokio::net::TcpStream::connect(listener)
        .await
        .expect("connect to envoy");
    assert!(
        http1_get(tcp, "x", "/").await.is_err(),
        "a refused tunnel carries no response"
    );
    let entries = envoy.wait_for_access_log(1, Duration::from_secs(5));
    assert!(
        entries
            .iter()
            .any(|e| e.to_string().contains("tunnel_response:503")),
        "{entries:?}"
    );
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waypoint_dials_an_envoy_hbone_server_for_an_ambient_pod() {
    let ca = TestCa::new("cluster.local");
    let pod_ip: IpAddr = "127.0.0.1".parse().expect("ip");
    let backend = echo("web-0", SocketAddr::new(pod_ip, 0)).await;
    // The pod's HBONE side, presenting the pod's identity.
    let (envoy, pod_hbone) = Envoy::hbone_server(&ca.issue("shop", "web"), &ca.root_pem());
    let config = tempfile::tempdir().expect("tempdir");
    let certs = tempfile::tempdir().expect("tempdir");
    write(
        config.path(),
        "mesh.yaml",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {{istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}}\n---\n\
             apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: waypoint, namespace: shop}}\nspec:\n  gatewayClassName: istio-waypoint\n  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\nspec:\n  clusterIP: 10.0.0.10\n  selector: {{app: web}}\n  ports: [{{name: http, port: 80, targetPort: {port}}}]\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata: {{name: web-0, namespace: shop, labels: {{app: web}}}}\nspec:\n  serviceAccountName: web\n  containers: [{{name: web}}]\nstatus: {{podIP: {pod_ip}}}\n",
            port = backend.local_addr.port()
        ),
    );
    ca.write_cert_dir(certs.path(), &ca.issue("shop", "waypoint"));
    let wp = start(config.path(), certs.path(), pod_hbone.port()).await;
    let client = HttpClient::new();
    let r = client
        .get(
            wp.http_addr.expect("http"),
            "web.shop",
            "/to-envoy-pod",
            &[],
        )
        .await
        .expect("request");
    assert_eq!(
        r.status,
        200,
        "{}\nenvoy: {}\n{}",
        r.body,
        envoy.access_log(),
        envoy.stderr()
    );
    assert_eq!(r.echo()["path"], "/to-envoy-pod");
    let entries = envoy.wait_for_access_log(1, Duration::from_secs(5));
    let entry = entries
        .first()
        .expect("the pod's Envoy logged the tunnel")
        .to_string();
    assert!(
        entry.contains(WAYPOINT_ID),
        "the pod saw the waypoint's identity: {entry}"
    );
    assert!(
        entry.contains(&format!("127.0.0.1:{}", backend.local_addr.port())),
        "CONNECT authority = podIP:targetPort: {entry}"
    );
    wp.shutdown().await;
}
