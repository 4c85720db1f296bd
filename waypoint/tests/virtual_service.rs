//! A VirtualService through the real in-process waypoint, against echo backends: Istio's
//! first-match order, header matches, weights, rewrite, redirect, direct response, header
//! edits, 503 NC for a destination that names no service, and 404 NR when no rule matches.

mod support;

use support::{local_options, mesh_config, write, HttpClient};

const VIRTUAL_SERVICE: &str = "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: web-v2}}]
  - match: [{uri: {prefix: /direct}}]
    directResponse: {status: 503, body: {string: maintenance}}
    headers: {response: {set: {x-why: planned}}}
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, redirectCode: 302}
  - match: [{uri: {prefix: /api}}]
    rewrite: {uri: /v2}
    headers:
      request: {set: {x-from-vs: rule}}
      response: {add: {x-served-by: vs}}
    route:
    - destination: {host: web-v1}
      headers: {request: {set: {x-destination: v1}}}
  - match: [{uri: {prefix: /ghost}}]
    route: [{destination: {host: ghost}}]
  - match: [{uri: {prefix: /split}}]
    route:
    - {destination: {host: web-v1}, weight: 75}
    - {destination: {host: web-v2}, weight: 25}
";

/// The echo's view of a request header, whatever case it reports the name in.
fn echoed_header(echo: &serde_json::Value, name: &str) -> Option<String> {
    let headers = echo["headers"].as_object()?;
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v[0].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_service_rules_apply_end_to_end() {
    let mut backends = Vec::new();
    for version in ["v1", "v2"] {
        let echo = conformance::echo::spawn_echo_on_free_port(conformance::EchoIdentity {
            namespace: "shop".into(),
            service: format!("web-{version}"),
            pod: format!("web-{version}-0"),
        })
        .await
        .expect("echo");
        backends.push(echo);
    }
    let config = tempfile::tempdir().expect("tempdir");
    let mesh = mesh_config(&[
        ("v1", backends[0].local_addr),
        ("v2", backends[1].local_addr),
    ]);
    write(
        config.path(),
        "mesh.yaml",
        &format!("{mesh}{VIRTUAL_SERVICE}"),
    );
    let wp = waypoint::app::start(local_options(config.path()))
        .await
        .expect("waypoint starts");
    let addr = wp.http_addr.expect("http listener");
    let client = HttpClient::new();
    let host = "web.shop:80";

    // The header rule comes first, so it wins even for a path a later rule names.
    let r = client
        .get(addr, host, "/api/x", &[("end-user", "jason")])
        .await
        .expect("jason");
    assert_eq!(
        (r.status, r.pod()),
        (200, "web-v2-0".to_owned()),
        "{}",
        r.body
    );

    let r = client
        .get(addr, host, "/direct", &[])
        .await
        .expect("direct");
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "maintenance");
    assert_eq!(r.headers["x-why"], "planned");

    let r = client
        .get(addr, host, "/old/a?q=1", &[])
        .await
        .expect("redirect");
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(r.headers["location"], "http://web.shop:80/new?q=1");

    // Envoy's prefix_rewrite: the matched prefix is replaced, the rest follows.
    let r = client
        .get(addr, host, "/api/users?id=7", &[])
        .await
        .expect("rewrite");
    assert_eq!(r.status, 200, "{}", r.body);
    let echo = r.echo();
    assert_eq!(echo["path"], "/v2/users?id=7", "{}", r.body);
    assert_eq!(echoed_header(&echo, "x-from-vs").as_deref(), Some("rule"));
    assert_eq!(echoed_header(&echo, "x-destination").as_deref(), Some("v1"));
    assert_eq!(r.headers["x-served-by"], "vs");

    let mut to_v1 = 0;
    for _ in 0..400 {
        let r = client.get(addr, host, "/split", &[]).await.expect("split");
        assert_eq!(r.status, 200, "{}", r.body);
        if r.pod() == "web-v1-0" {
            to_v1 += 1;
        }
    }
    // 75 % of 400 is 300; ±4.5 standard deviations (σ ≈ 8.7).
    assert!((260..=340).contains(&to_v1), "{to_v1} of 400 went to v1");

    let r = client
        .get(addr, host, "/elsewhere", &[])
        .await
        .expect("no rule");
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.headers["x-waypoint-reason"], "NR");
}
