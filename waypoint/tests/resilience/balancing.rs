//! Scenario 6: consistent-hash load balancing. Service `sticky` hashes on the `x-user`
//! header: every request of one user reaches one pod, and users spread over the pods. Service
//! `cookie` hashes on cookie `session` (path `/`, ttl 60s): a request without it gets the
//! cookie set, and requests carrying it stay on one pod.

use super::client::{Client, Outcome, Probe};
use super::istio_envoy::{bootstrap, cluster, cluster_name, prefix, route, virtual_host};
use super::mesh::Mesh;
use super::proxies::Side;
use super::verdict::Verdict;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const YAML: &str = "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: sticky, namespace: shop}
spec:
  host: sticky
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cookie, namespace: shop}
spec:
  host: cookie.shop.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: session, path: /, ttl: 60s}
";

const USERS: usize = 12;
const EACH: usize = 5;

/// What one run observed.
#[derive(Debug)]
pub struct Report {
    /// Per user, the pods that answered its requests.
    pub users: Vec<BTreeSet<String>>,
    /// The first cookie-service answer (no cookie sent).
    pub first: Outcome,
    /// The answers to requests carrying the cookie that answer set.
    pub with_cookie: Vec<Outcome>,
}

fn envoy_config(mesh: &Mesh) -> Value {
    let sticky = cluster_name("sticky", "");
    let cookie = cluster_name("cookie", "");
    // istiod: consistentHash → RING_HASH (minimum ring 1024), the hash policy on the route,
    // and the retry policy without the previous_hosts predicate (retries stay on the hash).
    let hashed = |name: &str, service: &str, hash: Value| {
        let mut c = cluster(name, &mesh.endpoints(service, None));
        c["lb_policy"] = json!("RING_HASH");
        c["ring_hash_lb_config"] = json!({ "minimum_ring_size": 1024 });
        let mut r = route(prefix("/"), name);
        r["route"]["hash_policy"] = json!([hash]);
        let retry = r["route"]["retry_policy"]
            .as_object_mut()
            .expect("retry policy");
        retry.remove("retry_host_predicate");
        (c, r)
    };
    let (sticky_cluster, sticky_route) = hashed(
        &sticky,
        "sticky",
        json!({ "header": { "header_name": "x-user" } }),
    );
    let (cookie_cluster, cookie_route) = hashed(
        &cookie,
        "cookie",
        json!({ "cookie": { "name": "session", "path": "/", "ttl": "60s" } }),
    );
    bootstrap(
        vec![
            virtual_host("sticky", vec![sticky_route]),
            virtual_host("cookie", vec![cookie_route]),
        ],
        vec![sticky_cluster, cookie_cluster],
    )
}

/// Runs the scenario on `side`.
pub async fn run(side: Side) -> Report {
    let mut mesh = Mesh::new();
    mesh.service(
        "sticky",
        &[("sticky-0", "v1"), ("sticky-1", "v1"), ("sticky-2", "v1")],
    )
    .await;
    mesh.service(
        "cookie",
        &[("cookie-0", "v1"), ("cookie-1", "v1"), ("cookie-2", "v1")],
    )
    .await;
    let proxy = side.start(&mesh, YAML, envoy_config);
    let (client, addr) = (Client::new(), proxy.addr());
    let mut users = Vec::new();
    for user in 0..USERS {
        let mut pods = BTreeSet::new();
        for n in 0..EACH {
            let probe = Probe::get("sticky.shop", format!("/user/{user}/{n}"))
                .header("x-user", &format!("user-{user}"));
            pods.insert(client.send(addr, &probe).await.pod().to_owned());
        }
        users.push(pods);
    }
    let first = client
        .send(addr, &Probe::get("cookie.shop", "/first"))
        .await;
    let cookie = first
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_owned();
    let mut with_cookie = Vec::new();
    for n in 0..EACH * 2 {
        let probe = Probe::get("cookie.shop", format!("/again/{n}")).header("cookie", &cookie);
        with_cookie.push(client.send(addr, &probe).await);
    }
    Report {
        users,
        first,
        with_cookie,
    }
}

/// The attributes of the first answer's Set-Cookie, lower-cased: name, then `path=/` and the
/// like.
fn cookie_attributes(r: &Report) -> Vec<String> {
    let header = r.first.header("set-cookie").unwrap_or_default();
    let mut parts = header.split(';').map(|p| p.trim().to_ascii_lowercase());
    let name = parts
        .next()
        .and_then(|p| p.split_once('=').map(|(n, _)| n.to_owned()))
        .unwrap_or_default();
    let mut attributes: Vec<String> = parts.collect();
    attributes.sort();
    attributes.insert(0, name);
    attributes
}

/// Istio's documented behaviour for this configuration.
pub fn check(v: &mut Verdict, r: &Report) {
    let cookie_pods: BTreeSet<&str> = r.with_cookie.iter().map(Outcome::pod).collect();
    eprintln!(
        "{}: users → {:?}; first cookie answer {} set-cookie {:?}; with it → {cookie_pods:?}",
        v.who(),
        r.users,
        r.first.status,
        r.first.header("set-cookie"),
    );
    let spread: BTreeSet<&String> = r.users.iter().flatten().collect();
    v.check(
        r.users.iter().all(|pods| pods.len() == 1),
        format!("each user's requests reach one pod: {:?}", r.users),
    );
    v.check(
        spread.len() >= 2,
        format!("users spread over the pods: {spread:?}"),
    );
    let attributes = cookie_attributes(r);
    v.check(
        r.first.status == 200
            && attributes.first().map(String::as_str) == Some("session")
            && attributes.iter().any(|a| a == "path=/")
            && attributes.iter().any(|a| a == "max-age=60"),
        format!("a request without the cookie gets it set (session, Path=/, Max-Age=60): {attributes:?}"),
    );
    v.check(
        cookie_pods.len() == 1 && !cookie_pods.contains(""),
        format!("requests with the cookie reach one pod: {cookie_pods:?}"),
    );
}

/// The same stickiness and the same cookie attributes on both sides.
pub fn compare(v: &mut Verdict, envoy: &Report, waypoint: &Report) {
    let sizes = |r: &Report| r.users.iter().map(BTreeSet::len).collect::<Vec<_>>();
    v.equal(sizes(waypoint), sizes(envoy), "pods per user as with Envoy");
    v.equal(
        cookie_attributes(waypoint),
        cookie_attributes(envoy),
        "Set-Cookie name and attributes as with Envoy",
    );
}
