//! Scenario 1: one of three endpoints starts answering 503 mid-load. With retries and outlier
//! detection (consecutive5xxErrors 3, interval 1s, baseEjectionTime 2s, maxEjectionPercent
//! 100) at least 99.9 % of 10 000 requests succeed, the bad endpoint is ejected within one
//! interval, and it gets traffic again once its ejection time is over (Envoy unejects on the
//! interval sweep after `baseEjectionTime` × ejections, so between 2 s and 3 s).

use super::client::{Client, Probe};
use super::istio_envoy::{
    bootstrap, cluster, cluster_name, prefix, retry_policy, route, virtual_host,
};
use super::mesh::Mesh;
use super::proxies::Side;
use super::verdict::Verdict;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const YAML: &str = "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec:
  host: web.shop.svc.cluster.local
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 3
      interval: 1s
      baseEjectionTime: 2s
      maxEjectionPercent: 100
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web]
  http:
  - route: [{destination: {host: web}}]
    retries: {attempts: 3, retryOn: 5xx}
";

/// At least this many requests, and load for at least `RUN_FOR`.
const REQUESTS: usize = 10_000;
const RUN_FOR: Duration = Duration::from_millis(6_500);
/// When `web-2` goes bad, from the start of the load.
const FLIP_AFTER: Duration = Duration::from_secs(1);
const CLIENTS: usize = 16;
const INTERVAL: Duration = Duration::from_secs(1);
const BASE_EJECTION: Duration = Duration::from_secs(2);

/// What one run observed.
#[derive(Debug)]
pub struct Report {
    /// Requests sent and answered 200.
    pub sent: usize,
    pub ok: usize,
    /// When the bad endpoint started failing, from the mesh's start.
    pub flip_at: Duration,
    /// When it received requests after that.
    pub bad_hits: Vec<Duration>,
}

impl Report {
    /// Hits on the bad endpoint per 500 ms since it started failing.
    fn timeline(&self) -> Vec<usize> {
        let mut buckets = Vec::new();
        for at in &self.bad_hits {
            let bucket = ((*at - self.flip_at).as_millis() / 500) as usize;
            if buckets.len() <= bucket {
                buckets.resize(bucket + 1, 0);
            }
            buckets[bucket] += 1;
        }
        buckets
    }

    /// The first ejection: (last hit before a silence of at least a second, first hit after).
    fn ejection(&self) -> Option<(Duration, Option<Duration>)> {
        let hits = &self.bad_hits;
        let gap = hits.windows(2).position(|w| w[1] - w[0] >= INTERVAL)?;
        Some((hits[gap], hits.get(gap + 1).copied()))
    }
}

fn envoy_config(mesh: &Mesh) -> Value {
    let name = cluster_name("web", "");
    let mut web = cluster(&name, &mesh.endpoints("web", None));
    // istiod: consecutive5xxErrors → consecutive_5xx enforced at 100 %, success rate off,
    // and minHealthPercent (unset: 0) as the panic threshold.
    web["outlier_detection"] = json!({
        "consecutive_5xx": 3,
        "enforcing_consecutive_5xx": 100,
        "enforcing_success_rate": 0,
        "interval": "1s",
        "base_ejection_time": "2s",
        "max_ejection_percent": 100,
    });
    web["common_lb_config"]["healthy_panic_threshold"] = json!({ "value": 0.0 });
    let mut all = route(prefix("/"), &name);
    all["route"]["retry_policy"] = retry_policy(Some((3, "5xx")));
    bootstrap(vec![virtual_host("web", vec![all])], vec![web])
}

/// Runs the scenario on `side`.
pub async fn run(side: Side) -> Report {
    let mut mesh = Mesh::new();
    mesh.service("web", &[("web-0", "v1"), ("web-1", "v1"), ("web-2", "v1")])
        .await;
    let proxy = side.start(&mesh, YAML, envoy_config);
    let addr = proxy.addr();
    let client = Client::new();
    let sent = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let load_start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CLIENTS {
        let (client, sent, ok) = (client.clone(), sent.clone(), ok.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = sent.fetch_add(1, Ordering::Relaxed);
                if i >= REQUESTS && load_start.elapsed() >= RUN_FOR {
                    sent.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                let outcome = client
                    .send(addr, &Probe::get("web.shop", format!("/load/{i}")))
                    .await;
                if outcome.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(FLIP_AFTER).await;
    let flip_at = mesh.start.elapsed();
    mesh.pod("web-2").set_failing(true);
    for worker in workers {
        worker.await.expect("load worker");
    }
    let mut bad_hits: Vec<Duration> = mesh
        .pod("web-2")
        .hits()
        .into_iter()
        .filter(|at| *at >= flip_at)
        .collect();
    bad_hits.sort();
    drop(proxy);
    Report {
        sent: sent.load(Ordering::Relaxed),
        ok: ok.load(Ordering::Relaxed),
        flip_at,
        bad_hits,
    }
}

/// Istio's documented behaviour for this configuration.
pub fn check(v: &mut Verdict, r: &Report) {
    let brief = format!(
        "sent {}, ok {}, bad endpoint hit {} times after failing at {:?} (per 500 ms from then: \
         {:?}), first ejection (last hit, next hit) {:?}",
        r.sent,
        r.ok,
        r.bad_hits.len(),
        r.flip_at,
        r.timeline(),
        r.ejection()
    );
    eprintln!("{}: {brief}", v.who());
    v.check(
        r.sent >= REQUESTS,
        format!("at least {REQUESTS} requests: {brief}"),
    );
    v.check(
        r.ok * 1000 >= r.sent * 999,
        format!("at least 99.9 % succeed: {brief}"),
    );
    let Some((ejected, back)) = r.ejection() else {
        v.check(false, format!("the failing endpoint is ejected: {brief}"));
        return;
    };
    v.check(
        ejected - r.flip_at <= INTERVAL,
        format!("ejected within one interval of failing: {brief}"),
    );
    let Some(back) = back else {
        v.check(
            false,
            format!("the ejected endpoint gets traffic again: {brief}"),
        );
        return;
    };
    let out_for = back - ejected;
    // Unejected on the first sweep after baseEjectionTime: at most one interval late (plus
    // slack for a loaded machine).
    v.check(
        out_for >= BASE_EJECTION - Duration::from_millis(50)
            && out_for <= BASE_EJECTION + INTERVAL + Duration::from_millis(500),
        format!(
            "out of rotation for baseEjectionTime (2s) up to one interval more, not {out_for:?}: \
             {brief}"
        ),
    );
}

/// The waypoint behaves as Envoy does: both eject the endpoint and return it.
pub fn compare(v: &mut Verdict, envoy: &Report, waypoint: &Report) {
    let shape = |r: &Report| r.ejection().map(|(_, back)| back.is_some());
    v.equal(
        shape(waypoint),
        shape(envoy),
        "ejected and returned (Some(true)) as with Envoy",
    );
}
