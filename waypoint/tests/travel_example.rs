//! The shipped `examples/travel` folder, served by a real in-process waypoint in front of real
//! echo backends listening on the example's pod addresses.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use support::{examples_travel, local_options, HttpClient};

/// The example's pod addresses are fixed: one test at a time binds them.
static EXAMPLE_PODS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts an echo backend on every travel-agency pod address of the example.
async fn agency_backends() -> Vec<conformance::EchoServer> {
    let pods = [
        ("travels-v1-0", "travels", "127.0.40.1"),
        ("travels-v2-0", "travels", "127.0.40.2"),
        ("flights-v1-0", "flights", "127.0.40.3"),
        ("flights-v2-0", "flights", "127.0.40.4"),
        ("hotels-v1-0", "hotels", "127.0.40.5"),
        ("cars-v1-0", "cars", "127.0.40.6"),
        ("insurances-v1-0", "insurances", "127.0.40.7"),
        ("discounts-v1-0", "discounts", "127.0.40.8"),
        ("discounts-v1-1", "discounts", "127.0.40.9"),
    ];
    let mut out = Vec::new();
    for (pod, service, ip) in pods {
        let addr: SocketAddr = format!("{ip}:8000").parse().expect("addr");
        let id = conformance::EchoIdentity {
            namespace: "travel-agency".into(),
            service: service.into(),
            pod: pod.into(),
        };
        out.push(
            spawn_when_free(addr, id)
                .await
                .unwrap_or_else(|e| panic!("echo backend {pod} on {addr}: {e}")),
        );
    }
    out
}

/// The example's pods have fixed addresses, so the tests take turns (`EXAMPLE_PODS`); the
/// previous test's backends are aborted when its runtime shuts down, which can be just after
/// it released the turn, so a bind waits a little for the address to be free.
async fn spawn_when_free(
    addr: SocketAddr,
    id: conformance::EchoIdentity,
) -> std::io::Result<conformance::EchoServer> {
    let mut tries = 0;
    loop {
        match conformance::spawn_echo(addr, id.clone()).await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 50 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn travel_example_routes_splits_and_reports_misses() {
    let _pods = EXAMPLE_PODS.lock().await;
    let _backends = agency_backends().await;
    let wp = waypoint::app::start(local_options(&examples_travel()))
        .await
        .expect("waypoint starts");
    let addr = wp.http_addr.expect("http listener");
    let client = HttpClient::new();

    // The acceptance request: Host names the service as a mesh client would.
    let r = client
        .get(addr, "travels.travel-agency", "/travels", &[])
        .await
        .expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echo()["path"], "/travels");
    assert_eq!(r.echo()["host"], "travels.travel-agency");

    // The canary split: 80/20 within ±5 points over 1000 requests.
    let mut by_pod: HashMap<String, u32> = HashMap::new();
    for _ in 0..1000 {
        let r = client
            .get(addr, "travels.travel-agency", "/travels", &[])
            .await
            .expect("request");
        assert_eq!(r.status, 200, "{}", r.body);
        *by_pod.entry(r.pod()).or_default() += 1;
    }
    let v1 = by_pod.get("travels-v1-0").copied().unwrap_or(0);
    let v2 = by_pod.get("travels-v2-0").copied().unwrap_or(0);
    println!("travels split over 1000 requests: v1={v1} v2={v2}");
    assert_eq!(v1 + v2, 1000, "{by_pod:?}");
    assert!(
        (750..=850).contains(&v1),
        "v1 got {v1} of 1000, want 800 ± 50"
    );

    // Header match outranks the plain prefix, and its RequestHeaderModifier is applied.
    let r = client
        .get(
            addr,
            "flights.travel-agency.svc.cluster.local",
            "/flights/paris",
            &[("x-travel-class", "business")],
        )
        .await
        .expect("request");
    assert_eq!(r.pod(), "flights-v2-0");
    assert_eq!(
        r.echo()["headers"]["X-Route"][0],
        "flights-business",
        "{}",
        r.body
    );
    let r = client
        .get(addr, "flights.travel-agency", "/flights/paris", &[])
        .await
        .expect("request");
    assert_eq!(r.pod(), "flights-v1-0");
    assert!(r.echo()["headers"].get("X-Route").is_none(), "{}", r.body);

    // A path no rule of the service's routes matches.
    let r = client
        .get(addr, "flights.travel-agency", "/hotels", &[])
        .await
        .expect("request");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no rule"), "{}", r.body);

    // Endpoints from a hand-written EndpointSlice; a service without routes goes to itself.
    let r = client
        .get(addr, "discounts.travel-agency:80", "/discounts/u1", &[])
        .await
        .expect("request");
    // Either replica: the example's second one (flaky in the demo) is an echo backend here.
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.pod().starts_with("discounts-v1-"), "{}", r.body);
    // By VIP:port, as an ambient client's original destination.
    let r = client
        .get(addr, "10.96.40.13:80", "/hotels/rome", &[])
        .await
        .expect("request");
    assert_eq!(r.pod(), "hotels-v1-0", "{}", r.body);
    // Short name: resolved in the waypoint's namespace.
    let r = client
        .get(addr, "cars", "/cars/rome", &[])
        .await
        .expect("request");
    assert_eq!(r.pod(), "cars-v1-0", "{}", r.body);
    // h2c prior knowledge, authority in :authority.
    let r = client
        .get_h2(addr, "insurances.travel-agency", "/insurances/rome")
        .await
        .expect("h2 request");
    assert_eq!(
        (r.status, r.pod()),
        (200, "insurances-v1-0".to_string()),
        "{}",
        r.body
    );

    // Misses: one-line reasons.
    let r = client
        .get(addr, "nosuch.travel-agency", "/", &[])
        .await
        .expect("request");
    assert_eq!(r.status, 404);
    assert!(
        r.body
            .contains("no service is known as 'nosuch.travel-agency'"),
        "{}",
        r.body
    );
    let r = client
        .get(addr, "voyages.travel-portal", "/", &[])
        .await
        .expect("request");
    assert_eq!(r.status, 404);
    assert!(
        r.body
            .contains("not served by waypoint travel-agency/waypoint"),
        "{}",
        r.body
    );
    let r = client
        .get(addr, "travels.travel-agency:8080", "/", &[])
        .await
        .expect("request");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("has no port 8080"), "{}", r.body);

    wp.shutdown().await;
}

/// 70-security.yaml: JWT on travels (tokens minted with the example's key, as the demo does)
/// and the DENY on its admin paths, through the waypoint as the portals call it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn travel_example_checks_tokens_and_denies_the_admin_path() {
    use waypoint::demo::security::{for_service, Denial};

    let _pods = EXAMPLE_PODS.lock().await;
    let _backends = agency_backends().await;
    let dir = examples_travel();
    let loaded = waypoint::config::load_dir(&dir).expect("the example loads");
    let security = for_service(&dir, &loaded.documents, "travel-agency", "travels")
        .expect("the example's key is usable");
    let valid = format!("Bearer {}", security.bearer.expect("a token for travels"));
    let wp = waypoint::app::start(local_options(&dir))
        .await
        .expect("waypoint starts");
    let addr = wp.http_addr.expect("http listener");
    let client = HttpClient::new();
    let get = |path: &'static str, token: Option<String>| {
        let client = &client;
        async move {
            let headers: Vec<(&str, &str)> = token
                .as_deref()
                .map(|t| vec![("authorization", t)])
                .unwrap_or_default();
            client
                .get(addr, "travels.travel-agency", path, &headers)
                .await
                .expect("request")
        }
    };

    // A valid token, and no token at all (Istio's RequestAuthentication alone requires none).
    for token in [Some(valid.clone()), None] {
        let r = get("/travels/paris", token).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.pod().starts_with("travels-v"), "{}", r.body);
    }
    // Bad tokens: 401 with jwt_authn's body.
    let [expired, tampered] = [0, 1].map(|i| {
        let refusal = &security.refusals[i];
        assert_eq!(refusal.denial, Denial::Unauthenticated);
        format!("Bearer {}", refusal.bearer.clone().expect("a token"))
    });
    let r = get("/travels", Some(expired)).await;
    assert_eq!((r.status, r.body.as_str()), (401, "Jwt is expired"));
    let r = get("/travels", Some(tampered)).await;
    assert_eq!((r.status, r.body.as_str()), (401, "Jwt verification fails"));
    // The admin paths: 403 whatever the token.
    for token in [Some(valid), None] {
        for path in ["/travels/admin", "/travels/admin/reports"] {
            let r = get(path, token.clone()).await;
            assert_eq!((r.status, r.body.as_str()), (403, "RBAC: access denied"));
        }
    }
    wp.shutdown().await;
}
