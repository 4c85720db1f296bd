use super::*;
use anyhow::Result;
use tokio::net::TcpStream;

fn spec(service: &str, version: &str) -> DemoBackendSpec {
    DemoBackendSpec {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        namespace: "travel-agency".into(),
        service: service.into(),
        pod: format!("{service}-{version}-0"),
        version: version.into(),
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
