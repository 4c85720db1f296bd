//! Scenario 4: retries. On service `web` (two endpoints, Istio's default load balancer) a
//! request whose first attempt gets 503 is retried on the other endpoint; a request body over
//! the retry buffer limit is not retried (and one under it is replayed whole); exhausted
//! retries answer the backend's 503 with flag URX; a reset and a per-try timeout are retried
//! under `retryOn: 5xx`. On service `plain` (three endpoints, round robin, an HTTPRoute rule
//! with no `retry`) Istio's default policy applies: two retries of a 503, each on an endpoint
//! not tried yet, and no retry of a 500 or of a reset. Service `bare` has no route at all: a
//! waypoint then uses istiod's inbound default route, which retries only requests reset before
//! they were sent (a refused connection), not a 503 nor a reset after the request went out.

use super::client::{Client, Outcome, Probe};
use super::istio_envoy::{
    bootstrap, cluster, cluster_name, inbound_default_route, prefix, retry_policy, route,
    virtual_host,
};
use super::mesh::Mesh;
use super::proxies::{Proxy, Side};
use super::verdict::Verdict;
use bytes::Bytes;
use serde_json::Value;
use std::time::Duration;

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
  - match: [{uri: {prefix: /pertry}}]
    retries: {attempts: 2, perTryTimeout: 100ms, retryOn: 5xx}
    route: [{destination: {host: web}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: plain, namespace: shop}
spec:
  host: plain.shop.svc.cluster.local
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: plain, namespace: shop}
spec:
  parentRefs: [{group: '', kind: Service, name: plain, port: 80}]
  rules:
  - backendRefs: [{name: plain, port: 80}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: bare, namespace: shop}
spec:
  host: bare
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

/// A probe sent once, and what Istio's documented behaviour gives for it: (status, flag,
/// attempts reaching a backend).
struct Single {
    what: &'static str,
    probe: Probe,
    expect: (u16, &'static str, usize),
}

/// The single probes; `big` is the body over the buffer limit.
fn singles(big: Bytes) -> Vec<Single> {
    let small = Bytes::from(vec![b'x'; SMALL_BODY]);
    let single = |what, probe, expect| Single {
        what,
        probe,
        expect,
    };
    let web = |path| Probe::get("web.shop", path);
    let plain = |path| Probe::get("plain.shop", path);
    let bare = |path| Probe::get("bare.shop", path);
    vec![
        single(
            "body over the buffer limit",
            Probe::post("web.shop", "/upload/big?fail-first=1", big),
            (503, "-", 1),
        ),
        single(
            "body under the buffer limit",
            Probe::post("web.shop", "/upload/small?fail-first=1", small),
            (200, "-", 2),
        ),
        single(
            "always 503",
            web("/always/1?fail-first=100"),
            (503, "URX", 3),
        ),
        single(
            "reset, retryOn 5xx",
            web("/once/reset?fail-first=1&fail-mode=reset"),
            (200, "-", 2),
        ),
        single(
            "per-try timeout, retryOn 5xx",
            web("/pertry/1?fail-first=1&fail-mode=hold&hold=1s"),
            (200, "-", 2),
        ),
        single(
            "HTTPRoute default policy: two 503s",
            plain("/plain/twice?fail-first=2"),
            (200, "-", 3),
        ),
        single(
            "HTTPRoute default policy: three 503s",
            plain("/plain/thrice?fail-first=3"),
            (503, "URX", 3),
        ),
        single(
            "HTTPRoute default policy: a 500",
            plain("/plain/500?fail-first=1&fail-status=500"),
            (500, "-", 1),
        ),
        single(
            "HTTPRoute default policy: a reset",
            plain("/plain/reset?fail-first=1&fail-mode=reset"),
            (503, "UC", 1),
        ),
        // Round robin over a stopped pod and a live one: at least one of the two tries the
        // stopped one first; a refused connection is reset before the request was sent.
        single("no route: connect failure", bare("/bare/1"), (200, "-", 1)),
        single("no route: connect failure", bare("/bare/2"), (200, "-", 1)),
        single(
            "no route: a 503",
            bare("/bare/503?fail-first=1"),
            (503, "-", 1),
        ),
        // Reset after the request went out: not "before request", so not retried.
        single(
            "no route: a reset",
            bare("/bare/reset?fail-first=1&fail-mode=reset"),
            (503, "UC", 1),
        ),
    ]
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
    let mut pertry = route(prefix("/pertry"), &web);
    pertry["route"]["retry_policy"] = retry_policy(Some((2, "5xx")));
    pertry["route"]["retry_policy"]["per_try_timeout"] = "0.100s".into();
    let bare = cluster_name("bare", "");
    let round_robin = |name: &str, service: &str| {
        let mut c = cluster(name, &mesh.endpoints(service, None));
        c["lb_policy"] = "ROUND_ROBIN".into();
        c
    };
    bootstrap(
        vec![
            virtual_host("web", vec![once, upload, always, pertry]),
            virtual_host("plain", vec![route(prefix("/"), &plain)]),
            virtual_host("bare", vec![inbound_default_route(&bare)]),
        ],
        vec![
            cluster(&web, &mesh.endpoints("web", None)),
            round_robin(&plain, "plain"),
            round_robin(&bare, "bare"),
        ],
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
    mesh.service("bare", &[("bare-0", "v1"), ("bare-1", "v1")])
        .await;
    let proxy = side.start(&mesh, YAML, envoy_config);
    let client = Client::new();
    let mut once = Vec::new();
    for n in 0..ONCE {
        let probe = Probe::get("web.shop", format!("/once/{n}?fail-first=1"));
        once.push(trace(&client, &proxy, &mesh, "first attempt 503", probe).await);
    }
    mesh.pod("bare-0").stop();
    let mut traced = Vec::new();
    for single in singles(Bytes::from(vec![b'x'; BIG_BODY])) {
        traced.push(trace(&client, &proxy, &mesh, single.what, single.probe).await);
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
pub fn check(v: &mut Verdict, r: &Report) {
    for t in r.once.iter().chain(&r.singles) {
        eprintln!(
            "{}: {}: {} {} flag {} attempts {:?} body-len {:?} took {:?}",
            v.who(),
            t.what,
            t.outcome.id,
            t.outcome.status,
            t.flag,
            t.attempts,
            t.outcome.header("x-body-len"),
            t.outcome.done_after,
        );
    }
    let once: Vec<(u16, usize)> = r
        .once
        .iter()
        .map(|t| (t.outcome.status, t.attempts.len()))
        .collect();
    v.equal(
        once,
        vec![(200, 2); ONCE],
        "first attempt 503: (status, attempts)",
    );
    let same_host = r
        .once
        .iter()
        .filter(|t| t.attempts.len() == 2 && t.attempts[0] == t.attempts[1])
        .count();
    v.check(
        same_host <= SAME_HOST_ALLOWED,
        format!("{same_host} of {ONCE} retries went back to the endpoint that failed"),
    );
    for (single, t) in singles(Bytes::new()).iter().zip(&r.singles) {
        v.equal(
            (t.outcome.status, t.flag.as_str(), t.attempts.len()),
            single.expect,
            format!("{}: (status, flag, attempts reaching a backend)", t.what),
        );
    }
    let small = r.single("body under the buffer limit");
    v.equal(
        small.outcome.header("x-body-len"),
        Some(SMALL_BODY.to_string().as_str()),
        "the retry replays the whole body",
    );
    let twice = r.single("HTTPRoute default policy: two 503s");
    let mut distinct = twice.attempts.clone();
    distinct.sort();
    distinct.dedup();
    v.equal(
        distinct.len(),
        3,
        format!("HTTPRoute default policy: each retry on an endpoint not tried yet: {twice:?}"),
    );
    // perTryTimeout 100 ms, then a retry after Envoy's backoff (at most 25 ms the first time).
    let took = r.single("per-try timeout, retryOn 5xx").outcome.done_after;
    v.check(
        took >= Duration::from_millis(100) && took <= Duration::from_millis(175),
        format!("per-try timeout: answered after 100 ms + backoff, not {took:?}"),
    );
}

/// The same statuses, flags and attempt counts on both sides.
pub fn compare(v: &mut Verdict, envoy: &Report, waypoint: &Report) {
    let shape = |r: &Report| {
        r.singles
            .iter()
            .map(|t| (t.what, t.outcome.status, t.flag.clone(), t.attempts.len()))
            .collect::<Vec<_>>()
    };
    v.equal(
        shape(waypoint),
        shape(envoy),
        "(status, flag, attempts) as with Envoy",
    );
}
