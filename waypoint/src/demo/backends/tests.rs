use super::*;
use crate::demo::misbehaviour::Misbehaviour;
use anyhow::Result;
use tokio::net::TcpStream;

fn spec(service: &str, version: &str) -> DemoBackendSpec {
    DemoBackendSpec {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        namespace: "travel-agency".into(),
        service: service.into(),
        pod: format!("{service}-{version}-0"),
        version: version.into(),
        misbehaviour: Misbehaviour::default(),
    }
}

fn behaviour(service: &str, version: &str) -> Behaviour {
    Behaviour::for_spec(&spec(service, version)).expect("valid spec")
}

fn get(service: &str, version: &str, path: &str) -> (StatusCode, Value) {
    behaviour(service, version).answer(&Method::GET, path)
}

#[test]
fn every_service_answers_its_own_path_with_its_shape() {
    let cases: &[(&str, &str, &str)] = &[
        ("travels", "/travels", "/0/city"),
        ("travels", "/travels/Paris", "/hotels/0/hotel"),
        ("travels", "/travels/paris", "/insurances/2/company"),
        ("flights", "/flights/Rome", "/0/airline"),
        ("hotels", "/hotels/Rome", "/3/hotel"),
        ("cars", "/cars/Rome", "/1/carModel"),
        ("insurances", "/insurances/Rome", "/2/company"),
        ("discounts", "/discounts/alice", "/discount"),
        ("voyages", "/", "/portal"),
        ("viaggi", "/", "/language"),
        ("vacaciones", "/", "/country"),
    ];
    for (service, path, pointer) in cases {
        let (status, body) = get(service, "v1", path);
        assert_eq!(status, StatusCode::OK, "{service} {path}");
        assert!(body.pointer(pointer).is_some(), "{service} {path}: {body}");
    }
}

#[test]
fn unknown_paths_cities_and_methods_are_json_errors() {
    let cases: &[(&str, Method, &str, StatusCode)] = &[
        ("travels", Method::GET, "/nowhere", StatusCode::NOT_FOUND),
        (
            "travels",
            Method::GET,
            "/travels/Atlantis",
            StatusCode::NOT_FOUND,
        ),
        (
            "flights",
            Method::GET,
            "/hotels/Rome",
            StatusCode::NOT_FOUND,
        ),
        ("flights", Method::GET, "/flights", StatusCode::NOT_FOUND),
        ("voyages", Method::GET, "/travels", StatusCode::NOT_FOUND),
        (
            "cars",
            Method::POST,
            "/cars/Rome",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (service, method, path, expected) in cases {
        let (status, body) = behaviour(service, "v1").answer(method, path);
        assert_eq!(status, *expected, "{service} {method} {path}");
        assert_eq!(body["code"], expected.as_u16());
        assert!(body["error"].is_string());
    }
}

#[test]
fn data_is_deterministic_and_v2_adds_fields() {
    assert_eq!(
        get("flights", "v1", "/flights/Rome"),
        get("flights", "v1", "/flights/Rome")
    );
    assert_ne!(
        get("flights", "v1", "/flights/Rome"),
        get("flights", "v1", "/flights/Paris")
    );

    let (_, v1) = get("travels", "v1", "/travels/Rome");
    let (_, v2) = get("travels", "v2", "/travels/Rome");
    assert!(v1.get("currency").is_none());
    assert_eq!(v2["currency"], "EUR");
    assert_eq!(
        get("discounts", "v2", "/discounts/bob").1["campaign"],
        "spring-sale"
    );
    assert_eq!(get("voyages", "v2", "/").1["theme"], "dark");
}

#[test]
fn unknown_service_is_rejected_with_its_name() {
    let error = Behaviour::for_spec(&spec("weather", "v1")).expect_err("not a demo service");
    assert!(
        error.to_string().contains("travel-agency/weather"),
        "{error}"
    );
}

#[tokio::test]
async fn bind_failure_names_address_and_service() -> Result<()> {
    let taken = TcpListener::bind("127.0.0.1:0").await?;
    let mut busy = spec("hotels", "v1");
    busy.addr = taken.local_addr()?;
    let error = spawn_backends(vec![spec("cars", "v1"), busy])
        .await
        .expect_err("address is taken");
    let message = format!("{error:#}");
    assert!(
        message.contains(&taken.local_addr()?.to_string()),
        "{message}"
    );
    assert!(message.contains("travel-agency/hotels"), "{message}");
    Ok(())
}

#[tokio::test]
async fn serves_http1_and_h2c_with_identity_headers() -> Result<()> {
    let backends = spawn_backends(vec![spec("travels", "v2"), spec("flights", "v1")]).await?;
    let addrs = backends.addrs();
    assert_eq!(addrs.len(), 2);

    let stream = TcpStream::connect(addrs[0]).await?;
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get("/travels/Lisbon")
        .header("host", "travels.travel-agency")
        .body(Full::new(Bytes::new()))?;
    let response = h1.send_request(req).await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["x-demo-service"],
        "travel-agency/travels"
    );
    assert_eq!(response.headers()["x-demo-pod"], "travels-v2-0");
    assert_eq!(response.headers()["x-demo-version"], "v2");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
    assert_eq!(body["city"], "Lisbon");
    assert_eq!(body["currency"], "EUR");

    let stream = TcpStream::connect(addrs[1]).await?;
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    for (path, status) in [
        ("/flights/Athens", StatusCode::OK),
        ("/nope", StatusCode::NOT_FOUND),
    ] {
        let req = Request::get(format!("http://flights.travel-agency{path}"))
            .body(Full::new(Bytes::new()))?;
        let response = h2.send_request(req).await?;
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(response.headers()["x-demo-version"], "v1");
    }

    backends.shutdown();
    Ok(())
}

fn misbehaving(service: &str, misbehaviour: Misbehaviour) -> DemoBackendSpec {
    DemoBackendSpec {
        misbehaviour,
        ..spec(service, "v1")
    }
}

#[test]
fn a_flaky_pod_fails_its_share_with_a_503_naming_itself() {
    let always = Behaviour::for_spec(&misbehaving(
        "discounts",
        Misbehaviour {
            fail_percent: 100,
            latency_ms: None,
        },
    ))
    .expect("valid spec");
    let (delay, status, body) = always.respond(&Method::GET, "/discounts/alice", 0);
    assert_eq!(
        (delay, status),
        (Duration::ZERO, StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(body["code"], 503);
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains("discounts-v1-0"), "{message}");
    assert!(message.contains(FAIL_PERCENT), "{message}");

    // A healthy pod answers as before, at once.
    let healthy = behaviour("discounts", "v1");
    let (delay, status, body) = healthy.respond(&Method::GET, "/discounts/alice", 0);
    assert_eq!(delay, Duration::ZERO);
    assert_eq!(
        (status, body),
        healthy.answer(&Method::GET, "/discounts/alice")
    );

    let slow = Behaviour::for_spec(&misbehaving(
        "hotels",
        Misbehaviour {
            fail_percent: 0,
            latency_ms: Some((5, 40)),
        },
    ))
    .expect("valid spec");
    for n in 0..100 {
        let (delay, status, _) = slow.respond(&Method::GET, "/hotels/Rome", n);
        assert_eq!(status, StatusCode::OK);
        assert!((5..=40).contains(&delay.as_millis()), "{delay:?}");
    }
}

#[tokio::test]
async fn backends_count_every_request_and_the_flaky_one_fails_half() -> Result<()> {
    let flaky = Misbehaviour {
        fail_percent: 50,
        latency_ms: None,
    };
    let mut second = misbehaving("discounts", flaky);
    second.pod = "discounts-v1-1".into();
    let backends = spawn_backends(vec![spec("discounts", "v1"), second]).await?;
    let served = backends.served();
    let ids: Vec<(&str, &str)> = served
        .pods()
        .map(|id| (id.service.as_str(), id.pod.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("travel-agency/discounts", "discounts-v1-0"),
            ("travel-agency/discounts", "discounts-v1-1"),
        ]
    );
    assert_eq!(served.counts(), [0, 0]);

    let addrs = backends.addrs();
    let stream = TcpStream::connect(addrs[1]).await?;
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut failed = 0;
    for _ in 0..200 {
        let req = Request::get("/discounts/bob")
            .header("host", "discounts.travel-agency")
            .body(Full::new(Bytes::new()))?;
        let response = h1.send_request(req).await?;
        let status = response.status();
        // The failure still names the pod, as every answer does.
        assert_eq!(response.headers()["x-demo-pod"], "discounts-v1-1");
        response.into_body().collect().await?;
        match status {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => failed += 1,
            other => panic!("unexpected {other}"),
        }
    }
    // Binomial(200, 0.5): ±30 is more than four standard deviations.
    assert!((70..=130).contains(&failed), "{failed} of 200 failed");
    assert_eq!(served.counts(), [0, 200]);
    backends.shutdown();
    Ok(())
}
