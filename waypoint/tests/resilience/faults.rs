//! Scenario 3: fault injection and timeouts. A 30 % abort holds within ±3 % over 5 000
//! requests and aborted requests never reach a backend (flag FI); a 200 ms delay fires within
//! 50 ms of its setting (DI); a VirtualService `timeout` and HTTPRoute `timeouts.request` /
//! `backendRequest` answer 504 UT within 50 ms of theirs; a backend that answers at once but
//! trickles its body is cut at the request timeout (the client sees a truncated 200, flag UT).

use super::client::{Client, Outcome, Probe};
use super::istio_envoy::{
    bootstrap, cluster, cluster_name, fault, prefix, retry_policy, route, virtual_host,
};
use super::mesh::Mesh;
use super::proxies::{Proxy, Side};
use super::verdict::Verdict;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const YAML: &str = "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web.shop.svc.cluster.local]
  http:
  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 30}}}
    route: [{destination: {host: web.shop.svc.cluster.local}}]
  - match: [{uri: {prefix: /delay}}]
    fault: {delay: {fixedDelay: 200ms, percentage: {value: 100}}}
    route: [{destination: {host: web.shop.svc.cluster.local}}]
  - match: [{uri: {prefix: /slow}}]
    timeout: 300ms
    route: [{destination: {host: web.shop.svc.cluster.local}}]
  - match: [{uri: {prefix: /trickle}}]
    timeout: 500ms
    route: [{destination: {host: web.shop.svc.cluster.local}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: shop}
spec:
  parentRefs: [{group: '', kind: Service, name: api, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /request}}]
    timeouts: {request: 300ms}
    backendRefs: [{name: api, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /backend}}]
    timeouts: {request: 1s, backendRequest: 200ms}
    backendRefs: [{name: api, port: 80}]
";

const ABORTS: usize = 5_000;
const ABORT_SHARE: f64 = 0.30;
/// Timed probes per setting; the median is compared with the setting.
const TIMED: usize = 5;
const SLACK: Duration = Duration::from_millis(50);

/// One timed check: what was expected and what came back.
#[derive(Debug)]
pub struct Timed {
    /// What is checked, for messages.
    pub what: &'static str,
    /// The configured delay or timeout.
    pub setting: Duration,
    /// The status every probe must get.
    pub status: u16,
    /// The outcomes and their flags.
    pub outcomes: Vec<(Outcome, String)>,
}

/// What one run observed.
#[derive(Debug)]
pub struct Report {
    /// Statuses of the abort run and the flags of its 500s.
    pub aborted: usize,
    pub passed: usize,
    pub abort_flags: Vec<String>,
    /// Abort-rule requests that reached the backend.
    pub abort_hits: usize,
    pub timed: Vec<Timed>,
}

fn envoy_config(mesh: &Mesh) -> Value {
    let web = cluster_name("web", "");
    let api = cluster_name("api", "");
    let mut abort = route(prefix("/abort"), &web);
    abort["typed_per_filter_config"] = fault(Some((500, 30.0)), None);
    let mut delay = route(prefix("/delay"), &web);
    delay["typed_per_filter_config"] = fault(None, Some(("0.200s", 100.0)));
    let mut slow = route(prefix("/slow"), &web);
    slow["route"]["timeout"] = json!("0.300s");
    let mut trickle = route(prefix("/trickle"), &web);
    trickle["route"]["timeout"] = json!("0.500s");
    // HTTPRoute: `request` is the route timeout, `backendRequest` each attempt's.
    let mut request = route(prefix("/request"), &api);
    request["route"]["timeout"] = json!("0.300s");
    let mut backend = route(prefix("/backend"), &api);
    backend["route"]["timeout"] = json!("1s");
    backend["route"]["retry_policy"] = retry_policy(None);
    backend["route"]["retry_policy"]["per_try_timeout"] = json!("0.200s");
    bootstrap(
        vec![
            virtual_host("web", vec![abort, delay, slow, trickle]),
            virtual_host("api", vec![request, backend]),
        ],
        vec![
            cluster(&web, &mesh.endpoints("web", None)),
            cluster(&api, &mesh.endpoints("api", None)),
        ],
    )
}

/// Runs the scenario on `side`.
pub async fn run(side: Side) -> Report {
    let mut mesh = Mesh::new();
    mesh.service("web", &[("web-0", "v1")]).await;
    mesh.alias("api", "web");
    let proxy = side.start(&mesh, YAML, envoy_config);
    let client = Client::new();
    let outcomes = client
        .many(proxy.addr(), ABORTS, 16, Duration::ZERO, |i| {
            Probe::get("web.shop", format!("/abort/{i}"))
        })
        .await;
    let abort_flags = proxy.flags_of_status(&outcomes, 500).await;
    let abort_hits = mesh.pod("web-0").hits().len();
    let mut timed = Vec::new();
    for (what, host, path, setting, status) in [
        ("fault delay 200ms", "web.shop", "/delay", 200, 200),
        (
            "VirtualService timeout 300ms",
            "web.shop",
            "/slow?hold=2s",
            300,
            504,
        ),
        (
            "VirtualService timeout 500ms, trickling body",
            "web.shop",
            "/trickle?trickle=50ms",
            500,
            200,
        ),
        (
            "HTTPRoute timeouts.request 300ms",
            "api.shop",
            "/request?hold=2s",
            300,
            504,
        ),
        (
            "HTTPRoute timeouts.backendRequest 200ms",
            "api.shop",
            "/backend?hold=2s",
            200,
            504,
        ),
    ] {
        timed.push(Timed {
            what,
            setting: Duration::from_millis(setting),
            status,
            outcomes: timed_probes(&client, &proxy, host, path).await,
        });
    }
    Report {
        aborted: abort_flags.len(),
        passed: outcomes.iter().filter(|o| o.status == 200).count(),
        abort_flags,
        abort_hits,
        timed,
    }
}

/// `TIMED` probes of `path` (each its own id), one after the other, with their flags.
async fn timed_probes(
    client: &Client,
    proxy: &Proxy,
    host: &str,
    path: &str,
) -> Vec<(Outcome, String)> {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let mut out = Vec::new();
    for n in 0..TIMED {
        let probe = Probe::get(host, format!("{route}/{n}?{query}"));
        let outcome = client.send(proxy.addr(), &probe).await;
        let flag = proxy.flag(probe.id()).await;
        out.push((outcome, flag));
    }
    out
}

/// Istio's documented behaviour for this configuration.
pub fn check(v: &mut Verdict, r: &Report) {
    let share = r.aborted as f64 / ABORTS as f64;
    let flags: BTreeSet<&str> = r.abort_flags.iter().map(String::as_str).collect();
    let brief = format!(
        "{} aborted ({share:.3}), {} passed, {} reached the backend, abort flags {flags:?}",
        r.aborted, r.passed, r.abort_hits,
    );
    eprintln!("{}: {brief}", v.who());
    v.equal(
        r.aborted + r.passed,
        ABORTS,
        format!("only 500 or 200: {brief}"),
    );
    v.check(
        (share - ABORT_SHARE).abs() <= 0.03,
        format!("30 % ± 3 % aborted: {brief}"),
    );
    v.equal(
        flags,
        BTreeSet::from(["FI"]),
        format!("abort flags: {brief}"),
    );
    v.equal(
        r.abort_hits,
        r.passed,
        format!("only the requests not aborted reach the backend: {brief}"),
    );
    for t in &r.timed {
        check_timed(v, t);
    }
}

/// Every probe got the expected status and flag (and, for a trickle, a cut body) no earlier
/// than the setting, and the median within 50 ms of it. A cut body's time is when its last
/// bytes came (Envoy closes the connection up to its delayed_close_timeout, 1 s, later).
fn check_timed(v: &mut Verdict, t: &Timed) {
    let trickle = t.what.contains("trickling");
    let mut took: Vec<Duration> = t
        .outcomes
        .iter()
        .map(|(o, _)| {
            if trickle {
                o.last_data_after
            } else {
                o.done_after
            }
        })
        .collect();
    took.sort();
    let statuses: Vec<u16> = t.outcomes.iter().map(|(o, _)| o.status).collect();
    let flags: Vec<&str> = t.outcomes.iter().map(|(_, f)| f.as_str()).collect();
    let cut: Vec<bool> = t.outcomes.iter().map(|(o, _)| o.body.is_err()).collect();
    let brief = format!(
        "{}: statuses {statuses:?}, flags {flags:?}, bodies cut {cut:?}, took {took:?}",
        t.what
    );
    eprintln!("{}: {brief}", v.who());
    let flag = if t.status == 504 || trickle {
        "UT"
    } else {
        "DI"
    };
    v.equal(
        statuses,
        vec![t.status; TIMED],
        format!("statuses: {brief}"),
    );
    v.equal(flags, vec![flag; TIMED], format!("flags: {brief}"));
    v.equal(
        cut,
        vec![trickle; TIMED],
        format!("only a trickling body is cut: {brief}"),
    );
    if trickle {
        // One byte every 50 ms until the cut: the last came in the 100 ms before the timeout,
        // and about ten came in all (the backend would send thirty).
        v.check(
            took[0] >= t.setting - Duration::from_millis(100),
            format!("cut no earlier than the timeout: {brief}"),
        );
        let received: Vec<usize> = t.outcomes.iter().map(|(o, _)| o.received).collect();
        v.check(
            received.iter().all(|n| *n <= 11),
            format!("cut at the timeout, not later: {brief}: bytes received {received:?}"),
        );
    } else {
        v.check(
            took[0] >= t.setting - Duration::from_millis(5),
            format!("fires no earlier than its setting: {brief}"),
        );
    }
    v.check(
        took[TIMED / 2] <= t.setting + SLACK,
        format!("fires within {SLACK:?} of its setting (median): {brief}"),
    );
}

/// The same statuses and flags on both sides; the abort shares within the binomial spread of
/// each other.
pub fn compare(v: &mut Verdict, envoy: &Report, waypoint: &Report) {
    let shape = |r: &Report| {
        let timed: Vec<(&str, Vec<(u16, String)>)> = r
            .timed
            .iter()
            .map(|t| {
                let got = t.outcomes.iter().map(|(o, f)| (o.status, f.clone()));
                (t.what, got.collect())
            })
            .collect();
        let flags: BTreeSet<String> = r.abort_flags.iter().cloned().collect();
        (flags, timed)
    };
    v.equal(
        shape(waypoint),
        shape(envoy),
        "abort flags and timed probes as with Envoy",
    );
    let diff = envoy.aborted.abs_diff(waypoint.aborted) as f64 / ABORTS as f64;
    v.check(diff <= 0.04, format!("abort shares differ by {diff:.3}"));
}
