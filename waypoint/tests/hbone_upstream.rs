//! HBONE out: an ambient pod is reached through its HBONE endpoint (like ztunnel's inbound)
//! with the waypoint's identity, and must present its own.

mod support;

use std::net::{IpAddr, SocketAddr};
use support::pki::TestCa;
use support::{any_port, write, HttpClient};

/// Namespace `shop` in ambient with waypoint `waypoint`; Service `web` backed by pod
/// `web-0` (service account `pod_sa`) at `pod_ip:port`.
fn config(pod_ip: IpAddr, port: u16, pod_sa: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {{istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: waypoint, namespace: shop}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  clusterIP: 10.0.0.10
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: {port}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: web-0, namespace: shop, labels: {{app: web}}}}
spec:
  serviceAccountName: {pod_sa}
  containers: [{{name: web}}]
status: {{podIP: {pod_ip}}}
"#
    )
}

async fn run(
    pod_cert_sa: &str,
) -> (
    u16,
    String,
    Vec<waypoint::demo::hbone_endpoint::Accepted>,
    u16,
) {
    let ca = TestCa::new("cluster.local");
    let pod_ip: IpAddr = "127.0.50.1".parse().expect("ip");
    let backend = support::echo("web-0", SocketAddr::new(pod_ip, 0)).await;
    let endpoint = waypoint::demo::hbone_endpoint::spawn(
        SocketAddr::new(pod_ip, 0),
        ca.cert_store("shop", pod_cert_sa),
        pod_ip,
    )
    .await
    .expect("HBONE endpoint");
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "mesh.yaml",
        &config(pod_ip, backend.local_addr.port(), "web"),
    );
    ca.write_cert_dir(certs.path(), &ca.issue("shop", "waypoint"));
    let mut opts = support::local_options(dir.path());
    opts.cert_dir = Some(certs.path().to_path_buf());
    opts.hbone_listen = any_port();
    opts.hbone_upstream_port = endpoint.local_addr.port();
    let wp = waypoint::app::start(opts).await.expect("starts");
    let http = wp.http_addr.expect("http");
    let client = HttpClient::new();
    let mut last = (0, String::new());
    for i in 0..5 {
        let r = client
            .get(http, "web.shop", &format!("/over-hbone/{i}"), &[])
            .await
            .expect("request");
        last = (r.status, r.body);
    }
    let accepted = endpoint.accepted();
    wp.shutdown().await;
    (last.0, last.1, accepted, backend.local_addr.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambient_pods_are_reached_over_hbone_with_both_identities_checked() {
    let (status, body, accepted, port) = run("web").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("/over-hbone/4"), "{body}");
    let first = accepted
        .first()
        .expect("the pod's HBONE endpoint saw a tunnel");
    assert_eq!(first.source, "spiffe://cluster.local/ns/shop/sa/waypoint");
    assert_eq!(first.authority, format!("127.0.50.1:{port}"));
    // The mTLS HTTP/2 connection to the pod is pooled: every tunnel rides the first one.
    assert!(accepted.iter().all(|a| a.connection == 0), "{accepted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_presenting_another_identity_is_refused() {
    let (status, body, accepted, _) = run("impostor").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("connection failure"), "{body}");
    assert!(accepted.is_empty(), "{accepted:?}");
}
