//! Scenario 4: retries. On service `web` (two endpoints, Istio's default load balancer) a
//! request whose first attempt gets 503 is retried on the other endpoint; a request body over
//! the retry buffer limit is not retried (and one under it is replayed whole); exhausted
//! retries answer the backend's 503 with flag URX. On service `plain` (three endpoints, round
//! robin, no VirtualService, no HTTPRoute) Istio's default policy applies: two retries of a 503,
//! each on an endpoint not tried yet, and no retry of a 500.

use super::client::{Client, Outcome, Probe};
use super::istio_envoy::{
    bootstrap, cluster, cluster_name, prefix, retry_policy, route, virtual_host,
};
use super::mesh::Mesh;
use super::proxies::{Proxy, Side};
use bytes::Bytes;
use serde_json::Value;

const YAML: &str = "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web]
  http:
  - match: [{uri: {prefix: /once}}]
    retries: {attempts: 3, retryOn: 5xx}
    route: [{destination: {host: web}}]
  - match: [{uri: {prefix: /upload}}]
    retries: {attempts: 2, retryOn: '503'}
    route: [{destination: {host: web}}]
  - match: [{uri: {prefix: /always}}]
    retries: {attempts: 2, retryOn: 5xx}
    route: [{destination: {host: web}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: plain, namespace: shop}
spec:
  host: plain.shop.svc.cluster.local
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
";

/// Requests whose first attempt fails; with Istio's LEAST_REQUEST (random among idle hosts)
/// and 5 host reselections, Envoy itself retries on the same host with probability 1/64, so
/// up to two of them may.
const ONCE: usize = 20;
const SAME_HOST_ALLOWED: usize = 2;
/// Over any buffer limit in use (Envoy's default 1 MiB, pingora's 64 KiB).
const BIG_BODY: usize = 2 * 1024 * 1024;
const SMALL_BODY: usize = 4 * 1024;

/// One probe: its outcome, flags and the pods its attempts reached, in order.
#[derive(Debug)]
pub struct Traced {
    /// What it checks.
    pub what: &'static str,
    pub outcome: Outcome,
    pub flag: String,
    pub attempts: Vec<String>,
}

/// What one run observed.
#[derive(Debug)]
pub struct Report {
    /// The `/once` probes.
    pub once: Vec<Traced>,
    /// Single probes, named.
    pub singles: Vec<Traced>,
}

fn envoy_config(mesh: &Mesh) -> Value {
    let web = cluster_name("web", "");
    let plain = cluster_name("plain", "");
    let mut once = route(prefix("/once"), &web);
    once["route"]["retry_policy"] = retry_policy(Some((3, "5xx")));
    let mut upload = route(prefix("/upload"), &web);
    upload["route"]["retry_policy"] = retry_policy(Some((2, "503")));
    let mut always = route(prefix("/always"), &web);
    always["route"]["retry_policy"] = retry_policy(Some((2, "5xx")));
    let mut plain_cluster = cluster(&plain, &mesh.endpoints("plain", None));
    plain_cluster["lb_policy"] = "ROUND_ROBIN".into();
    bootstrap(
        vec![
            virtual_host("web", vec![once, upload, always]),
            virtual_host("plain", vec![route(prefix("/"), &plain)]),
        ],
        vec![cluster(&web, &mesh.endpoints("web", None)), plain_cluster],
    )
}

/// Runs the scenario on `side`.
pub async fn run(side: Side) -> Report {
    let mut mesh = Mesh::new();
    mesh.service("web", &[("web-0", "v1"), ("web-1", "v1")])
        .await;
    mesh.service(
        "plain",
        &[("plain-0", "v1"), ("plain-1", "v1"), ("plain-2", "v1")],
    )
    .await;
    let proxy = side.start(&mesh, YAML, envoy_config);
    let client = Client::new();
    let mut once = Vec::new();
    for n in 0..ONCE {
        let probe = Probe::get("web.shop", format!("/once/{n}?fail-first=1"));
        once.push(trace(&client, &proxy, &mesh, "first attempt 503", probe).await);
    }
    let big = Bytes::from(vec![b'x'; BIG_BODY]);
    let small = Bytes::from(vec![b'x'; SMALL_BODY]);
    let singles = [
        (
            "body over the buffer limit",
            Probe::post("web.shop", "/upload/big?fail-first=1", big),
        ),
        (
            "body under the buffer limit",
            Probe::post("web.shop", "/upload/small?fail-first=1", small),
        ),
        (
            "always 503",
            Probe::get("web.shop", "/always/1?fail-first=100"),
        ),
        (
            "default policy: two 503s",
            Probe::get("plain.shop", "/plain/twice?fail-first=2"),
        ),
        (
            "default policy: three 503s",
            Probe::get("plain.shop", "/plain/thrice?fail-first=3"),
        ),
        (
            "default policy: a 500",
            Probe::get("plain.shop", "/plain/500?fail-first=1&fail-status=500"),
        ),
    ];
    let mut traced = Vec::new();
    for (what, probe) in singles {
        traced.push(trace(&client, &proxy, &mesh, what, probe).await);
    }
    Report {
        once,
        singles: traced,
    }
}

async fn trace(
    client: &Client,
    proxy: &Proxy,
    mesh: &Mesh,
    what: &'static str,
    probe: Probe,
) -> Traced {
    let outcome = client.send(proxy.addr(), &probe).await;
    Traced {
        what,
        flag: proxy.flag(probe.id()).await,
        attempts: mesh.ledger.attempts(probe.id()),
        outcome,
    }
}

impl Report {
    fn single(&self, what: &str) -> &Traced {
        self.singles
            .iter()
            .find(|t| t.what == what)
            .unwrap_or_else(|| panic!("no probe {what}"))
    }
}

/// Istio's documented behaviour for this configuration.
pub fn check(who: &str, r: &Report) {
    for t in r.once.iter().chain(&r.singles) {
        eprintln!(
            "{who}: {}: {} {} flag {} attempts {:?} body-len {:?}",
            t.what,
            t.outcome.id,
            t.outcome.status,
            t.flag,
            t.attempts,
            t.outcome.header("x-body-len")
        );
    }
    for t in &r.once {
        assert_eq!(t.outcome.status, 200, "{who}: {t:?}");
        assert_eq!(t.attempts.len(), 2, "{who}: one retry: {t:?}");
    }
    let same_host = r
        .once
        .iter()
        .filter(|t| t.attempts[0] == t.attempts[1])
        .count();
    assert!(
        same_host <= SAME_HOST_ALLOWED,
        "{who}: {same_host} of {ONCE} retries went back to the endpoint that failed"
    );
    let expect = |what: &str, status: u16, flag: &str, attempts: usize| {
        let t = r.single(what);
        assert_eq!(
            (t.outcome.status, t.flag.as_str(), t.attempts.len()),
            (status, flag, attempts),
            "{who}: {what}: (status, flag, attempts) {t:?}"
        );
        t
    };
    expect("body over the buffer limit", 503, "-", 1);
    let small = expect("body under the buffer limit", 200, "-", 2);
    assert_eq!(
        small.outcome.header("x-body-len"),
        Some(SMALL_BODY.to_string().as_str()),
        "{who}: the retry replays the whole body"
    );
    expect("always 503", 503, "URX", 3);
    let twice = expect("default policy: two 503s", 200, "-", 3);
    let mut distinct = twice.attempts.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        3,
        "{who}: each retry on an endpoint not tried yet: {twice:?}"
    );
    expect("default policy: three 503s", 503, "URX", 3);
    expect("default policy: a 500", 500, "-", 1);
}

/// The same statuses, flags and attempt counts on both sides.
pub fn compare(envoy: &Report, waypoint: &Report) {
    let shape = |r: &Report| {
        r.singles
            .iter()
            .map(|t| (t.what, t.outcome.status, t.flag.clone(), t.attempts.len()))
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(envoy), shape(waypoint));
}
