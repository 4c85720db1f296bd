//! Scenario 2: Istio's circuit-breaking task (its DestinationRule verbatim, but for the host)
//! under 20 concurrent clients. With one connection, one pending request and one request per
//! connection, the backend never has more than one request in flight; the overflow is
//! answered at once with 503, flag UO and `x-envoy-overloaded: true`, and is not retried (Envoy
//! never retries an overflow, even under Istio's default retry policy, which retries 503).

use super::client::{Client, Outcome, Probe};
use super::istio_envoy::{bootstrap, cluster, cluster_name, prefix, route, virtual_host};
use super::mesh::Mesh;
use super::proxies::Side;
use super::verdict::Verdict;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const YAML: &str = "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec:
  host: web
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
";

const CLIENTS: usize = 20;
/// Requests per client, one at a time with a pause after each, as a load generator paces them.
const EACH: usize = 10;
const PAUSE: Duration = Duration::from_millis(20);
/// How long the backend holds each request: long enough for the queue to fill.
const HOLD: &str = "40ms";
/// An overflow is answered locally, well within this.
const FAST: Duration = Duration::from_millis(50);

/// What one run observed.
#[derive(Debug)]
pub struct Report {
    /// Every outcome.
    pub outcomes: Vec<Outcome>,
    /// The response flags of the 503s.
    pub overflow_flags: Vec<String>,
    /// The most requests the backend ever had in flight.
    pub max_in_flight: usize,
}

impl Report {
    fn overflowed(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| o.status == 503).collect()
    }

    fn statuses(&self) -> BTreeSet<u16> {
        self.outcomes.iter().map(|o| o.status).collect()
    }
}

fn envoy_config(mesh: &Mesh) -> Value {
    let name = cluster_name("web", "");
    let mut web = cluster(&name, &mesh.endpoints("web", None));
    // istiod: maxConnections and http1MaxPendingRequests become the DEFAULT thresholds (the
    // rest stay at their maximum), maxRequestsPerConnection the upstream protocol option.
    web["circuit_breakers"]["thresholds"][0]["max_connections"] = json!(1);
    web["circuit_breakers"]["thresholds"][0]["max_pending_requests"] = json!(1);
    web["typed_extension_protocol_options"] = json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "common_http_protocol_options": { "max_requests_per_connection": 1 },
            "explicit_http_config": { "http_protocol_options": {} },
        },
    });
    web["outlier_detection"] = json!({
        "consecutive_5xx": 1,
        "enforcing_consecutive_5xx": 100,
        "enforcing_success_rate": 0,
        "interval": "1s",
        "base_ejection_time": "180s",
        "max_ejection_percent": 100,
    });
    web["common_lb_config"]["healthy_panic_threshold"] = json!({ "value": 0.0 });
    bootstrap(
        vec![virtual_host("web", vec![route(prefix("/"), &name)])],
        vec![web],
    )
}

/// Runs the scenario on `side`.
pub async fn run(side: Side) -> Report {
    let mut mesh = Mesh::new();
    mesh.service("web", &[("web-0", "v1")]).await;
    let proxy = side.start(&mesh, YAML, envoy_config);
    let outcomes = Client::new()
        .many(proxy.addr(), CLIENTS * EACH, CLIENTS, PAUSE, |i| {
            Probe::get("web.shop", format!("/cb/{i}?hold={HOLD}"))
        })
        .await;
    let overflow_flags = proxy.flags_of_status(&outcomes, 503).await;
    Report {
        max_in_flight: mesh.pod("web-0").max_in_flight(),
        outcomes,
        overflow_flags,
    }
}

/// Istio's documented behaviour for this configuration.
pub fn check(v: &mut Verdict, r: &Report) {
    let overflowed = r.overflowed();
    let mut latencies: Vec<Duration> = overflowed.iter().map(|o| o.done_after).collect();
    latencies.sort();
    let p95 = latencies
        .get(latencies.len() * 95 / 100)
        .copied()
        .unwrap_or_default();
    let flags: BTreeSet<&str> = r.overflow_flags.iter().map(String::as_str).collect();
    let brief = format!(
        "statuses {:?}, {} of {} overflowed (flags {flags:?}, p95 {p95:?}), backend max in flight {}",
        r.statuses(),
        overflowed.len(),
        r.outcomes.len(),
        r.max_in_flight
    );
    eprintln!("{}: {brief}", v.who());
    v.equal(
        r.max_in_flight,
        1,
        format!("backend requests in flight at most: {brief}"),
    );
    v.equal(
        r.statuses(),
        BTreeSet::from([200, 503]),
        format!("some pass, the rest overflow: {brief}"),
    );
    v.equal(
        flags,
        BTreeSet::from(["UO"]),
        format!("overflow flags: {brief}"),
    );
    let unmarked: Vec<&str> = overflowed
        .iter()
        .filter(|o| o.header("x-envoy-overloaded") != Some("true"))
        .map(|o| o.id.as_str())
        .collect();
    v.check(
        unmarked.is_empty(),
        format!("every overflow answer has x-envoy-overloaded: true; these lack it: {unmarked:?}"),
    );
    let from_backend = overflowed.iter().filter(|o| !o.pod().is_empty()).count();
    v.equal(from_backend, 0, "overflow 503s that came from the backend");
    // Local answers: immediate. The 95th percentile, so one scheduling hiccup on a loaded
    // 2-core runner does not fail the run; none may take more than five times as long.
    v.check(
        p95 < FAST,
        format!("overflow answered within {FAST:?} (p95): {brief}"),
    );
    v.check(
        latencies.iter().all(|l| *l < FAST * 5),
        format!(
            "every overflow answered within {:?}: {latencies:?}",
            FAST * 5
        ),
    );
}

/// The same pattern: the same statuses, and overflows flagged alike.
pub fn compare(v: &mut Verdict, envoy: &Report, waypoint: &Report) {
    v.equal(
        waypoint.statuses(),
        envoy.statuses(),
        "statuses as with Envoy",
    );
    let flags = |r: &Report| r.overflow_flags.iter().cloned().collect::<BTreeSet<_>>();
    v.equal(
        flags(waypoint),
        flags(envoy),
        "overflow flags as with Envoy",
    );
}
