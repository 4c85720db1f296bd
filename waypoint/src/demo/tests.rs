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
    run_config(&topology(net), mode, Duration::from_millis(1200)).await
}

async fn run_config(
    yaml: &str,
    mode: Mode,
    duration: Duration,
) -> Result<(Demo, report::Report, String)> {
    let config = tempfile::tempdir()?;
    std::fs::write(config.path().join("travel.yaml"), yaml)?;
    run_dir(config.path(), mode, duration).await
}

async fn run_dir(
    config: &Path,
    mode: Mode,
    duration: Duration,
) -> Result<(Demo, report::Report, String)> {
    let demo = Demo::start(config, mode, POD_HBONE_PORT).await?;
    let plan = TrafficPlan {
        transport: demo.transport(),
        flows: demo.flows.clone(),
        rate_per_sec: 60,
        connections: 2,
        duration,
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

/// The shipped example's resilience lab, read through the same types the waypoint compiles, so
/// that a typo in the YAML (an unknown field, a duration Istio would refuse) fails here.
#[test]
fn the_example_declares_the_resilience_lab() -> Result<()> {
    use resilience::parse_istio_duration;
    use routing::istio::VirtualServiceSpec;

    let loaded = load_dir(&default_config())?;
    for d in &loaded.documents {
        assert!(
            d.unknown_fields.is_empty(),
            "{} {:?}",
            d.origin,
            d.unknown_fields
        );
    }
    let specs = backend_specs(&loaded.documents)?;
    let pod = |name: &str| specs.iter().find(|s| s.pod == name).expect("a demo pod");
    let flaky = pod("discounts-v1-1");
    assert_eq!(flaky.addr, SocketAddr::from(([127, 0, 40, 9], 8000)));
    assert_eq!(flaky.service, "discounts");
    assert_eq!(flaky.misbehaviour.fail_percent, 50);
    assert!(pod("discounts-v1-0").misbehaviour.is_healthy());
    assert_eq!(pod("hotels-v1-0").misbehaviour.latency_ms, Some((1, 20)));

    let virtual_service = |name: &str| -> &VirtualServiceSpec {
        loaded
            .documents
            .iter()
            .find_map(|d| match &d.resource {
                Resource::VirtualService(vs) if d.object.name == name => Some(&vs.spec),
                _ => None,
            })
            .expect("a VirtualService")
    };
    let destination_rule = |name: &str| {
        loaded
            .documents
            .iter()
            .find_map(|d| match &d.resource {
                Resource::DestinationRule(dr) if d.object.name == name => {
                    dr.spec.traffic_policy.clone()
                }
                _ => None,
            })
            .expect("a DestinationRule with a traffic policy")
    };
    let duration = |d: &Option<String>| parse_istio_duration(d.as_deref().unwrap_or_default());

    let discounts = virtual_service("discounts");
    assert_eq!(discounts.hosts, ["discounts"]);
    let rule = &discounts.http[0];
    let retries = rule.retries.as_ref().expect("retries");
    assert_eq!(retries.attempts, Some(3));
    assert_eq!(retries.retry_on.as_deref(), Some("5xx"));
    assert_eq!(
        duration(&retries.per_try_timeout),
        Ok(Duration::from_millis(500))
    );
    assert_eq!(duration(&rule.timeout), Ok(Duration::from_secs(2)));

    let outlier = destination_rule("discounts")
        .outlier_detection
        .expect("outlier detection");
    assert_eq!(outlier.consecutive_5xx_errors, Some(3));
    assert_eq!(outlier.max_ejection_percent, Some(50));
    assert_eq!(duration(&outlier.interval), Ok(Duration::from_secs(1)));
    assert_eq!(
        duration(&outlier.base_ejection_time),
        Ok(Duration::from_secs(5))
    );

    let chaos = &virtual_service("insurances-chaos").http[0];
    let prefix = chaos.matches[0]
        .uri
        .as_ref()
        .and_then(|u| u.prefix.as_deref());
    assert_eq!(prefix, Some("/insurances/paris"));
    let fault = chaos.fault.as_ref().expect("a fault");
    let abort = fault.abort.as_ref().expect("an abort");
    assert_eq!(abort.http_status, Some(503));
    assert_eq!(abort.percentage.as_ref().map(|p| p.value), Some(10.0));
    let delay = fault.delay.as_ref().expect("a delay");
    assert_eq!(duration(&delay.fixed_delay), Ok(Duration::from_millis(100)));

    let pool = destination_rule("hotels-breaker")
        .connection_pool
        .and_then(|p| p.http)
        .expect("an HTTP connection pool");
    assert_eq!(pool.http2_max_requests, Some(1));

    // Only services without an HTTPRoute get a VirtualService: on a service with one, Istio's
    // waypoint ignores the VirtualService, and so would the demo's point.
    let routed: Vec<&str> = loaded
        .documents
        .iter()
        .filter_map(|d| match &d.resource {
            Resource::HttpRoute(route) => route.spec.parent_refs.as_ref(),
            _ => None,
        })
        .flatten()
        .map(|parent| parent.name.as_str())
        .collect();
    assert_eq!(routed, ["travels", "flights"]);
    for name in ["discounts", "insurances-chaos"] {
        for host in &virtual_service(name).hosts {
            assert!(!routed.contains(&host.as_str()), "{name} targets {host}");
        }
    }
    Ok(())
}

/// [`topology`] with travels v2 failing half its requests, and `policy` (Istio YAML for the
/// `travels` service, which has no HTTPRoute) beside it.
fn flaky_topology(net: u8, policy: &str) -> String {
    let flaky = topology(net).replace(
        "  name: travels-v2-0\n  namespace: travel-agency\n",
        "  name: travels-v2-0\n  namespace: travel-agency\n  annotations:\n    demo.waypoint.dev/fail-percent: \"50\"\n",
    );
    assert!(flaky.contains("fail-percent"), "the pod template changed");
    format!("{flaky}---\n{policy}")
}

/// A VirtualService for `travels` whose one rule routes to it with `settings` (YAML lines of
/// the rule, indented by four spaces).
fn travels_route(settings: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: travels
  namespace: travel-agency
spec:
  hosts: [travels]
  http:
  - route:
    - destination: {{host: travels}}
{settings}"#
    )
}

#[tokio::test]
async fn a_flaky_pods_503s_fail_the_run_when_nothing_retries() -> Result<()> {
    // attempts: 0 turns off even Istio's default retries, so the 503s reach the client with
    // this branch's waypoint and with one that applies VirtualServices alike.
    let no_retries = travels_route("    retries: {attempts: 0}\n");
    let yaml = flaky_topology(64, &no_retries);
    let (demo, report, text) = run_config(&yaml, Mode::Plain, Duration::from_millis(1200)).await?;
    demo.shutdown().await;

    let Err(report::Failure::NotAll2xx { kinds, .. }) = report.verdict() else {
        panic!("the flaky pod's 503s must fail the run\n{text}");
    };
    assert!(kinds.ends_with(" 5xx"), "{kinds}\n{text}");
    let [travels] = report.per_label() else {
        panic!("one label expected\n{text}");
    };
    assert_eq!(travels.statuses.intended, 0, "{text}");
    assert_eq!(travels.retries(), Some(0), "{text}");
    let pods: Vec<&str> = travels.pods.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(pods, ["travels-v1-0", "travels-v2-0"], "{text}");
    assert_eq!(travels.attempts(), Some(travels.total()), "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap_or_default()
            .starts_with("verdict: FAIL: "),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn retries_and_outlier_detection_hide_a_flaky_pod() -> Result<()> {
    let route = travels_route(
        "    timeout: 2s\n    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: 5xx}\n",
    );
    let outlier = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: travels
  namespace: travel-agency
spec:
  host: travels
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 3
      interval: 1s
      baseEjectionTime: 5s
      maxEjectionPercent: 50
"#;
    let yaml = flaky_topology(65, &format!("{route}---\n{outlier}"));
    let (demo, report, text) = run_config(&yaml, Mode::Hbone, Duration::from_millis(3200)).await?;
    demo.shutdown().await;

    assert_eq!(report.verdict(), Ok(()), "{text}");
    let [travels] = report.per_label() else {
        panic!("one label expected\n{text}");
    };
    assert!(travels.retries().unwrap_or(0) > 0, "{text}");
    // Ejected within a second of its first failures and out for 5 s: a whole second without
    // traffic is seen before the run ends.
    assert!(travels.ejections >= 1, "{text}");
    assert!(
        text.contains("verdict: PASS: every request got a 2xx"),
        "{text}"
    );
    Ok(())
}

/// [`topology`] with the shipped example's security policies on `travels` (its
/// 70-security.yaml, edited by `edit`) and the demo's signing key beside them.
fn secured_config(net: u8, edit: impl Fn(String) -> String) -> Result<tempfile::TempDir> {
    let example = default_config();
    let policies = std::fs::read_to_string(example.join("70-security.yaml"))?;
    let config = tempfile::tempdir()?;
    let yaml = format!("{}---\n{}", topology(net), edit(policies));
    std::fs::write(config.path().join("travel.yaml"), yaml)?;
    std::fs::create_dir(config.path().join("jwt"))?;
    std::fs::copy(
        example.join(security::SIGNING_KEY),
        config.path().join(security::SIGNING_KEY),
    )?;
    Ok(config)
}

#[tokio::test]
async fn jwt_and_a_deny_policy_refuse_bad_tokens_and_the_admin_path() -> Result<()> {
    let config = secured_config(66, |policies| policies)?;
    let (demo, report, text) =
        run_dir(config.path(), Mode::Hbone, Duration::from_millis(1500)).await?;
    demo.shutdown().await;

    assert_eq!(report.verdict(), Ok(()), "{text}");
    let [travels] = report.per_label() else {
        panic!("one label expected\n{text}");
    };
    // Two of every three refusals are bad tokens, one the admin path.
    assert!(travels.denials.unauthenticated >= 2, "{text}");
    assert!(travels.denials.forbidden >= 1, "{text}");
    assert_eq!(travels.statuses.client_error, 0, "{text}");
    // Refused requests never reach a pod, so they are not taken for retries.
    assert_eq!(travels.retries(), Some(0), "{text}");
    assert!(text.contains("401s to bad tokens"), "{text}");
    Ok(())
}

#[tokio::test]
async fn a_jwks_that_does_not_match_the_portals_key_fails_the_run() -> Result<()> {
    // Another modulus under the same kid: the portals' valid tokens fail verification.
    let config = secured_config(67, |policies| {
        let edited = policies.replacen("\"n\":\"tms26", "\"n\":\"tms27", 1);
        assert_ne!(edited, policies, "the example's JWKS changed");
        edited
    })?;
    let (demo, report, text) =
        run_dir(config.path(), Mode::Plain, Duration::from_millis(1500)).await?;
    demo.shutdown().await;

    let Err(report::Failure::NotAll2xx { kinds, .. }) = report.verdict() else {
        panic!("valid tokens refused must fail the run\n{text}");
    };
    assert!(kinds.contains(" 4xx"), "{kinds}\n{text}");
    Ok(())
}
