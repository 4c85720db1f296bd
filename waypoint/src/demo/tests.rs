//! The whole demo in-process on a small topology of its own. The travel example's addresses
//! (127.0.40.x:8000, :15008) are not used here: other tests bind them, and tests run in
//! parallel. Each test below has its own loopback /24.

use super::*;
use anyhow::Result;
use tokio::sync::watch;

/// travel-agency in the ambient mesh behind its waypoint, with one service (`travels`, VIP
/// 10.96.60.11:80) and two pods on `127.0.<net>.1` (v1) and `.2` (v2), port 8000.
fn topology(net: u8) -> String {
    let pod = |name: &str, version: &str, host: u8| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: travel-agency
  labels:
    app: travels
    version: {version}
spec:
  serviceAccountName: travels
  containers:
  - name: travels
    image: travels
    ports:
    - containerPort: 8000
status:
  podIP: 127.0.{net}.{host}
"#
        )
    };
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: travel-agency
  labels:
    istio.io/dataplane-mode: ambient
    istio.io/use-waypoint: waypoint
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: waypoint
  namespace: travel-agency
  labels:
    istio.io/waypoint-for: service
spec:
  gatewayClassName: istio-waypoint
  listeners:
  - name: mesh
    port: 15008
    protocol: HBONE
---
apiVersion: v1
kind: Service
metadata:
  name: travels
  namespace: travel-agency
spec:
  clusterIP: 10.96.60.11
  selector:
    app: travels
  ports:
  - name: http
    port: 80
    targetPort: 8000
    appProtocol: http
---
{}---
{}"#,
        pod("travels-v1-0", "v1", 1),
        pod("travels-v2-0", "v2", 2),
    )
}

async fn run_demo(net: u8, mode: Mode) -> Result<(Demo, report::Report, String)> {
    let config = tempfile::tempdir()?;
    std::fs::write(config.path().join("travel.yaml"), topology(net))?;
    let demo = Demo::start(config.path(), mode, POD_HBONE_PORT).await?;
    let plan = TrafficPlan {
        transport: demo.transport(),
        flows: demo.flows.clone(),
        rate_per_sec: 60,
        connections: 2,
        duration: Duration::from_millis(1200),
        served: Some(demo.backends.served()),
    };
    let (_stop_tx, stop) = watch::channel(false);
    let mut out = Vec::new();
    let report = traffic::run(plan, stop, &mut out).await?;
    Ok((demo, report, String::from_utf8(out)?))
}

#[tokio::test]
async fn hbone_end_to_end_through_the_waypoint() -> Result<()> {
    let (demo, report, text) = run_demo(60, Mode::Hbone).await?;
    let path = demo.path();
    let cert_dir = demo
        .mesh
        .as_ref()
        .map(|m| m.cert_dir.path().to_path_buf())
        .expect("an HBONE demo has a mesh");
    let tunnels = demo.pod_tunnels();
    demo.shutdown().await;

    assert!(report.total() > 20, "{text}");
    assert_eq!(report.verdict(), Ok(()), "{text}");
    let labels: Vec<&str> = report
        .per_label()
        .iter()
        .map(|l| l.label.as_str())
        .collect();
    assert_eq!(labels, ["travels.travel-agency"]);
    assert!(
        path.starts_with(
            "traffic: travel-portal/voyages --HBONE(mTLS)--> waypoint travel-agency/waypoint --HBONE(mTLS)--> HBONE endpoints of 2 ambient pods"
        ),
        "{path}"
    );
    // The waypoint re-encapsulated: each pod saw tunnels from the waypoint's identity to its
    // own address, never the client's.
    assert_eq!(tunnels.len(), 2, "{tunnels:?}");
    for (endpoint, accepted) in &tunnels {
        assert_eq!(endpoint.port(), POD_HBONE_PORT);
        assert!(!accepted.is_empty(), "no tunnel reached {endpoint}");
        for a in accepted {
            assert_eq!(
                a.source, "spiffe://cluster.local/ns/travel-agency/sa/waypoint",
                "{a:?}"
            );
            assert_eq!(a.authority, format!("{}:8000", endpoint.ip()), "{a:?}");
        }
    }
    assert!(
        !cert_dir.exists(),
        "{} outlived the demo",
        cert_dir.display()
    );
    Ok(())
}

#[tokio::test]
async fn plain_mode_needs_no_mesh() -> Result<()> {
    let (demo, report, text) = run_demo(61, Mode::Plain).await?;
    let path = demo.path();
    let tunnels = demo.pod_tunnels();
    assert!(demo.waypoint.hbone_addr.is_none());
    demo.shutdown().await;

    assert!(report.total() > 20, "{text}");
    assert_eq!(report.verdict(), Ok(()), "{text}");
    assert!(
        path.starts_with("traffic: plain HTTP --> waypoint"),
        "{path}"
    );
    assert!(tunnels.is_empty());
    Ok(())
}

#[test]
fn flows_address_the_service_vips() -> Result<()> {
    let config = tempfile::tempdir()?;
    std::fs::write(config.path().join("travel.yaml"), topology(62))?;
    let loaded = load_dir(config.path())?;
    let snapshot = plan(&loaded.documents).expect("the topology has a waypoint");
    let flows = travel_flows(&snapshot);
    assert_eq!(flows.len(), 1, "{flows:?}");
    assert_eq!(flows[0].host, "travels.travel-agency");
    assert_eq!(
        flows[0].authority,
        Some(SocketAddr::from(([10, 96, 60, 11], 80)))
    );
    Ok(())
}
