//! Scenario 5: VirtualService routing basics. Subsets of `web` by pod label `version`, a header
//! match sending `end-user: jason` to v2, a prefix rewrite with an authority rewrite, an 80/20
//! weight split; and on service `api` a VirtualService (aborting everything) that is ignored
//! because an HTTPRoute attaches to the same service (Istio's precedence for waypoints).

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
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web.shop.svc.cluster.local]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: web, subset: v2}}]
  - match: [{uri: {prefix: /old}}]
    rewrite: {uri: /new, authority: rewritten.shop}
    route: [{destination: {host: web, subset: v1}}]
  - route:
    - destination: {host: web, subset: v1}
      weight: 80
    - destination: {host: web, subset: v2}
      weight: 20
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: shop}
spec:
  hosts: [api]
  http:
  - fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: api}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: shop}
spec:
  parentRefs: [{group: '', kind: Service, name: api, port: 80}]
  rules:
  - backendRefs: [{name: api, port: 80}]
";

const SPLIT: usize = 2_000;
const V2_SHARE: f64 = 0.20;

/// What one run observed.
#[derive(Debug)]
pub struct Report {
    /// `end-user: jason` probes.
    pub jason: Vec<Outcome>,
    /// The rewritten probe.
    pub rewritten: Outcome,
    /// How many of the split probes each version answered, and the statuses seen.
    pub v1: usize,
    pub v2: usize,
    pub split_statuses: BTreeSet<u16>,
    /// Probes to `api`.
    pub api: Vec<Outcome>,
}

fn envoy_config(mesh: &Mesh) -> Value {
    let v1 = cluster_name("web", "v1");
    let v2 = cluster_name("web", "v2");
    let api = cluster_name("api", "");
    let jason = route(
        json!({ "prefix": "/", "headers": [{ "name": "end-user", "string_match": { "exact": "jason" } }] }),
        &v2,
    );
    let mut rewrite = route(prefix("/old"), &v1);
    rewrite["route"]["prefix_rewrite"] = json!("/new");
    rewrite["route"]["host_rewrite_literal"] = json!("rewritten.shop");
    let mut split = route(prefix("/"), &v1);
    let action = split["route"].as_object_mut().expect("route action");
    action.remove("cluster");
    action.insert(
        "weighted_clusters".into(),
        json!({ "clusters": [{ "name": v1, "weight": 80 }, { "name": v2, "weight": 20 }] }),
    );
    // The HTTPRoute wins for `api`: its plain route, no fault.
    bootstrap(
        vec![
            virtual_host("web", vec![jason, rewrite, split]),
            virtual_host("api", vec![route(prefix("/"), &api)]),
        ],
        vec![
            cluster(&v1, &mesh.endpoints("web", Some("v1"))),
            cluster(&v2, &mesh.endpoints("web", Some("v2"))),
            cluster(&api, &mesh.endpoints("api", None)),
        ],
    )
}

/// Runs the scenario on `side`.
pub async fn run(side: Side) -> Report {
    let mut mesh = Mesh::new();
    mesh.service("web", &[("web-v1", "v1"), ("web-v2", "v2")])
        .await;
    mesh.service("api", &[("api-0", "v1")]).await;
    let proxy = side.start(&mesh, YAML, envoy_config);
    let client = Client::new();
    let addr = proxy.addr();
    let mut jason = Vec::new();
    for n in 0..10 {
        let probe = Probe::get("web.shop", format!("/jason/{n}")).header("end-user", "jason");
        jason.push(client.send(addr, &probe).await);
    }
    let rewritten = client
        .send(addr, &Probe::get("web.shop", "/old/page?q=1"))
        .await;
    let split = client
        .many(addr, SPLIT, 8, Duration::ZERO, |i| {
            Probe::get("web.shop", format!("/split/{i}"))
        })
        .await;
    let mut api = Vec::new();
    for n in 0..5 {
        api.push(
            client
                .send(addr, &Probe::get("api.shop", format!("/api/{n}")))
                .await,
        );
    }
    Report {
        jason,
        rewritten,
        v1: split.iter().filter(|o| o.pod() == "web-v1").count(),
        v2: split.iter().filter(|o| o.pod() == "web-v2").count(),
        split_statuses: split.iter().map(|o| o.status).collect(),
        api,
    }
}

/// Istio's documented behaviour for this configuration.
pub fn check(v: &mut Verdict, r: &Report) {
    let share = r.v2 as f64 / SPLIT as f64;
    let answers = |outcomes: &[Outcome]| {
        outcomes
            .iter()
            .map(|o| (o.status, o.pod().to_owned()))
            .collect::<Vec<_>>()
    };
    let o = &r.rewritten;
    let rewritten = (
        o.status,
        o.pod(),
        o.header("x-seen-path"),
        o.header("x-seen-host"),
    );
    eprintln!(
        "{}: jason → {:?}; rewrite → {rewritten:?}; split v1 {} v2 {} ({share:.3}); api → {:?}",
        v.who(),
        answers(&r.jason),
        r.v1,
        r.v2,
        answers(&r.api),
    );
    v.equal(
        answers(&r.jason),
        vec![(200, "web-v2".to_owned()); r.jason.len()],
        "header match end-user: jason → subset v2",
    );
    v.equal(
        rewritten,
        (200, "web-v1", Some("/new/page?q=1"), Some("rewritten.shop")),
        "rewrite uri /old → /new and authority, to subset v1: (status, pod, path, host)",
    );
    v.equal(
        r.split_statuses.clone(),
        BTreeSet::from([200]),
        "split statuses",
    );
    v.check(
        (share - V2_SHARE).abs() <= 0.03,
        format!(
            "weights 80/20: v2 got {share:.3} ({} v1, {} v2)",
            r.v1, r.v2
        ),
    );
    v.equal(
        answers(&r.api),
        vec![(200, "api-0".to_owned()); r.api.len()],
        "the HTTPRoute wins over the VirtualService (no 418 abort)",
    );
}

/// The same answers on both sides (the split within its binomial spread).
pub fn compare(v: &mut Verdict, envoy: &Report, waypoint: &Report) {
    let shape = |r: &Report| {
        (
            r.jason
                .iter()
                .map(|o| (o.status, o.pod().to_owned()))
                .collect::<Vec<_>>(),
            (
                r.rewritten.status,
                r.rewritten.header("x-seen-path").map(str::to_owned),
            ),
            r.split_statuses.clone(),
            r.api.iter().map(|o| o.status).collect::<Vec<_>>(),
        )
    };
    v.equal(shape(waypoint), shape(envoy), "answers as with Envoy");
    let diff = envoy.v2.abs_diff(waypoint.v2) as f64 / SPLIT as f64;
    v.check(diff <= 0.04, format!("v2 shares differ by {diff:.3}"));
}
