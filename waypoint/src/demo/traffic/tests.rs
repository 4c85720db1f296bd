use super::*;
use crate::demo::backends::{spawn_backends, DemoBackendSpec, DemoBackends};
use crate::demo::security::Denial;
use anyhow::Result;

fn flow(label: &str, paths: &[&str], weight: u32) -> Flow {
    Flow {
        label: label.into(),
        host: label.into(),
        authority: None,
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        weight,
        service: None,
        security: Default::default(),
    }
}

#[test]
fn picker_follows_weights_smoothly_and_skips_zero() {
    let mut picker = Picker::new(vec![3, 0, 1]);
    let picks: Vec<usize> = (0..8).map(|_| picker.next().0).collect();
    assert_eq!(picks, [0, 0, 2, 0, 0, 0, 2, 0]);
}

#[test]
fn paths_cycle_per_flow() -> Result<()> {
    let plan = TrafficPlan {
        transport: Transport::Plain(SocketAddr::from(([127, 0, 0, 1], 1))),
        flows: vec![flow("a", &["/1", "/2"], 1), flow("b", &[], 1)],
        rate_per_sec: 1,
        connections: 1,
        duration: Duration::from_secs(1),
        served: None,
    };
    let compiled = CompiledPlan::new(&plan)?;
    let sent: Vec<(usize, String)> = (0..6)
        .map(|_| {
            let (flow, request) = compiled.next_request();
            (flow, request.path.clone())
        })
        .collect();
    let expected = [
        (0, "/1"),
        (1, "/"),
        (0, "/2"),
        (1, "/"),
        (0, "/1"),
        (1, "/"),
    ];
    assert_eq!(sent, expected.map(|(f, p)| (f, p.to_owned())));
    Ok(())
}

#[test]
fn unusable_plans_are_rejected() {
    let base = TrafficPlan {
        transport: Transport::Plain(SocketAddr::from(([127, 0, 0, 1], 1))),
        flows: vec![flow("a", &["/"], 1)],
        rate_per_sec: 10,
        connections: 1,
        duration: Duration::from_secs(1),
        served: None,
    };
    let broken = [
        TrafficPlan {
            rate_per_sec: 0,
            ..base.clone()
        },
        TrafficPlan {
            connections: 0,
            ..base.clone()
        },
        TrafficPlan {
            flows: vec![flow("a", &["/"], 0)],
            ..base.clone()
        },
        TrafficPlan {
            flows: vec![],
            ..base.clone()
        },
        TrafficPlan {
            flows: vec![flow("bad\nhost", &["/"], 1)],
            ..base.clone()
        },
    ];
    for plan in broken {
        assert!(CompiledPlan::new(&plan).is_err(), "{plan:?}");
    }
    assert!(CompiledPlan::new(&base).is_ok());
}

/// A travels v1 backend on a free loopback port.
async fn one_travels_backend() -> Result<DemoBackends> {
    spawn_backends(vec![DemoBackendSpec {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        namespace: "travel-agency".into(),
        service: "travels".into(),
        pod: "travels-v1-0".into(),
        version: "v1".into(),
        misbehaviour: Default::default(),
    }])
    .await
}

#[tokio::test]
async fn drives_a_backend_and_summarises_it() -> Result<()> {
    let backends = one_travels_backend().await?;
    let plan = TrafficPlan {
        transport: Transport::Plain(backends.addrs()[0]),
        flows: vec![
            Flow {
                service: Some("travel-agency/travels".into()),
                ..flow("travels.travel-agency", &["/travels", "/travels/Rome"], 3)
            },
            flow("missing.travel-agency", &["/no/such/path"], 1),
        ],
        rate_per_sec: 100,
        connections: 4,
        duration: Duration::from_millis(1500),
        served: Some(backends.served()),
    };
    let (_stop_tx, stop) = watch::channel(false);
    let mut out = Vec::new();
    let report = run(plan, stop, &mut out).await?;
    let text = String::from_utf8(out)?;

    assert!(
        report.total() > 50,
        "only {} requests\n{text}",
        report.total()
    );
    let [travels, missing] = report.per_label() else {
        panic!("expected two labels: {:?}", report.per_label());
    };
    // The unknown path's 404s are the only answers without a 2xx.
    assert_eq!(report.failures(), missing.total(), "{text}");
    assert_eq!(travels.statuses.success, travels.total());
    assert_eq!(travels.versions.get("v1"), Some(&travels.total()));
    assert_eq!(missing.statuses.client_error, missing.total());
    assert!(travels.total() > 2 * missing.total(), "{text}");
    assert!(travels.p99() > Duration::ZERO);
    // The one pod saw every request of both labels (the plan sends them all to it), and the
    // label that names its service counts them: attempts beyond its own requests, which with
    // no waypoint in between are the other label's, not retries.
    assert_eq!(
        travels.pods,
        [("travels-v1-0".to_owned(), report.total())],
        "{text}"
    );
    assert_eq!(travels.retries(), Some(missing.total()), "{text}");
    assert_eq!(travels.sent, travels.total());
    assert_eq!((missing.pods.len(), missing.retries()), (0, None));
    assert!(text.contains("retries"), "{text}");
    assert!(text.contains("verdict: FAIL"), "{text}");
    assert!(text.contains("t=1s"), "{text}");
    assert!(text.contains("travels.travel-agency"), "{text}");
    assert!(text.contains("v1 100%"), "{text}");
    assert!(text.contains("total after"), "{text}");
    Ok(())
}

#[tokio::test]
async fn drives_a_backend_over_hbone_with_a_tunnel_per_authority() -> Result<()> {
    use crate::demo::ca::{DemoCa, TRUST_DOMAIN};
    use crate::demo::hbone_endpoint;

    let backends = one_travels_backend().await?;
    let ca = DemoCa::generate(TRUST_DOMAIN)?;
    let pod = ca.identity("travel-agency", "travels");
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    let endpoint =
        hbone_endpoint::spawn(SocketAddr::new(loopback, 0), ca.cert_store(&pod)?, loopback).await?;
    let client = ca.cert_store(&ca.identity("travel-portal", "voyages"))?;
    let dialer = WaypointDialer::new(client, endpoint.local_addr, pod)?;
    let to = |label: &str, authority: SocketAddr, weight: u32| Flow {
        authority: Some(authority),
        ..flow(label, &["/travels"], weight)
    };
    let backend = backends.addrs()[0];
    // The endpoint refuses tunnels to any address but its pod's.
    let refused = SocketAddr::from(([127, 0, 0, 2], backend.port()));
    let plan = TrafficPlan {
        transport: Transport::Hbone(dialer),
        flows: vec![
            to("travels.travel-agency", backend, 3),
            to("elsewhere", refused, 1),
        ],
        rate_per_sec: 80,
        connections: 2,
        duration: Duration::from_millis(1200),
        served: None,
    };
    let no_authority = TrafficPlan {
        flows: vec![flow("a", &["/"], 1)],
        ..plan.clone()
    };
    assert!(CompiledPlan::new(&no_authority).is_err());

    let (_stop_tx, stop) = watch::channel(false);
    let mut out = Vec::new();
    let report = run(plan, stop, &mut out).await?;
    let text = String::from_utf8(out)?;
    let [travels, elsewhere] = report.per_label() else {
        panic!("expected two labels: {:?}", report.per_label());
    };
    assert!(travels.total() > 30, "{text}");
    assert_eq!(travels.statuses.success, travels.total(), "{text}");
    assert_eq!(travels.versions.get("v1"), Some(&travels.total()));
    assert!(elsewhere.total() > 0, "{text}");
    assert_eq!(elsewhere.statuses.transport_error, elsewhere.total());
    assert!(text.contains("answered 400 Bad Request"), "{text}");
    // Keep-alive inside the tunnels: one per worker for the reachable authority.
    let accepted = endpoint.accepted();
    let tunnels = accepted
        .iter()
        .filter(|a| a.authority == backend.to_string())
        .count();
    assert_eq!(tunnels, 2, "{accepted:?}");
    Ok(())
}

#[tokio::test]
async fn stop_ends_early_and_transport_errors_are_counted() -> Result<()> {
    // Bind then drop a listener to get a port where nothing listens.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await?
        .local_addr()?;
    let plan = TrafficPlan {
        transport: Transport::Plain(closed),
        flows: vec![flow("nowhere", &["/"], 1)],
        rate_per_sec: 50,
        connections: 2,
        duration: Duration::from_secs(30),
        served: None,
    };
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = stop_tx.send(true);
    });
    let mut out = Vec::new();
    let report = run(plan, stop, &mut out).await?;
    assert!(report.elapsed() < Duration::from_secs(5));
    assert!(report.total() > 0);
    assert_eq!(report.failures(), report.total());
    let text = String::from_utf8(out)?;
    assert!(
        text.contains("last error for nowhere: cannot connect"),
        "{text}"
    );
    Ok(())
}

/// A stand-in for a waypoint's local replies on loopback: `/uo` answers like an overflowing
/// circuit breaker (Envoy's header), `/fi` like a fault abort (the waypoint's reason header),
/// `/503` like a flaky pod no retry hid, `/admin` like an AuthorizationPolicy's denial, a
/// request with a token other than `good` like jwt_authn's refusal, anything else 200.
async fn local_replies() -> Result<SocketAddr> {
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioExecutor;
    use hyper_util::server::conn::auto;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                let mut response = http::Response::builder();
                let token = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
                let (status, body) = match (req.uri().path(), token) {
                    (_, Some(token)) if token != b"Bearer good" => (401, "Jwt is expired"),
                    ("/admin", _) => (403, "RBAC: access denied"),
                    _ => (0, ""),
                };
                if status != 0 {
                    return response.status(status).body(Full::new(Bytes::from(body)));
                }
                let status = match req.uri().path() {
                    "/uo" => {
                        response = response.header("x-envoy-overloaded", "true");
                        503
                    }
                    "/fi" => {
                        response = response.header(telemetry::REASON_HEADER, "FI");
                        503
                    }
                    "/503" => 503,
                    _ => 200,
                };
                response.status(status).body(Full::new(Bytes::new()))
            });
            tokio::spawn(async move {
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

#[tokio::test]
async fn flagged_answers_are_counted_and_only_unflagged_failures_fail() -> Result<()> {
    let addr = local_replies().await?;
    let plan = |flows: Vec<Flow>| TrafficPlan {
        transport: Transport::Plain(addr),
        flows,
        rate_per_sec: 90,
        connections: 2,
        duration: Duration::from_millis(400),
        served: None,
    };
    let intended = plan(vec![flow("policy", &["/ok", "/uo", "/fi"], 1)]);
    let (_stop_tx, stop) = watch::channel(false);
    let mut out = Vec::new();
    let report = run(intended, stop.clone(), &mut out).await?;
    let text = String::from_utf8(out)?;
    let [policy] = report.per_label() else {
        panic!("one label expected\n{text}");
    };
    assert!(
        policy.flags.overflow > 0 && policy.flags.fault > 0,
        "{text}"
    );
    assert_eq!(
        policy.statuses.intended,
        policy.flags.overflow + policy.flags.fault
    );
    assert_eq!(policy.statuses.server_error, 0, "{text}");
    assert_eq!(report.verdict(), Ok(()), "{text}");
    assert!(text.contains("verdict: PASS"), "{text}");

    let leaked = plan(vec![flow("flaky", &["/ok", "/503"], 1)]);
    let mut out = Vec::new();
    let report = run(leaked, stop, &mut out).await?;
    let text = String::from_utf8(out)?;
    assert!(
        matches!(
            report.verdict(),
            Err(crate::demo::report::Failure::NotAll2xx { .. })
        ),
        "{text}"
    );
    assert!(text.contains("verdict: FAIL"), "{text}");
    Ok(())
}

/// A flow with a token and, after each round of its paths, a request its policies must refuse.
fn secured(label: &str, paths: &[&str], refusals: &[(&str, &str, Denial)]) -> Flow {
    use crate::demo::security::Refusal;
    Flow {
        security: FlowSecurity {
            bearer: Some("good".into()),
            refusals: refusals
                .iter()
                .map(|(path, token, denial)| Refusal {
                    path: (*path).into(),
                    bearer: Some((*token).into()),
                    denial: *denial,
                })
                .collect(),
        },
        ..flow(label, paths, 1)
    }
}

#[test]
fn refusals_follow_each_round_of_paths() -> Result<()> {
    let flow = secured(
        "a",
        &["/1", "/2"],
        &[
            ("/1", "expired", Denial::Unauthenticated),
            ("/admin", "good", Denial::Forbidden),
        ],
    );
    let requests = compile_requests(&flow)?;
    let sent: Vec<(&str, Option<&str>, Option<Denial>)> = requests
        .iter()
        .map(|r| {
            let token = r.authorization.as_ref().and_then(|v| v.to_str().ok());
            (r.path.as_str(), token, r.denial)
        })
        .collect();
    let good = Some("Bearer good");
    assert_eq!(
        sent,
        [
            ("/1", good, None),
            ("/2", good, None),
            ("/1", Some("Bearer expired"), Some(Denial::Unauthenticated)),
            ("/1", good, None),
            ("/2", good, None),
            ("/admin", good, Some(Denial::Forbidden)),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn intended_refusals_pass_and_a_request_let_through_fails() -> Result<()> {
    let addr = local_replies().await?;
    let plan = |flow: Flow| TrafficPlan {
        transport: Transport::Plain(addr),
        flows: vec![flow],
        rate_per_sec: 90,
        connections: 2,
        duration: Duration::from_millis(400),
        served: None,
    };
    let refusals = [
        ("/ok", "expired", Denial::Unauthenticated),
        ("/admin", "good", Denial::Forbidden),
    ];
    let (_stop_tx, stop) = watch::channel(false);
    let mut out = Vec::new();
    let report = run(
        plan(secured("travels", &["/ok"], &refusals)),
        stop.clone(),
        &mut out,
    )
    .await?;
    let text = String::from_utf8(out)?;
    let [travels] = report.per_label() else {
        panic!("one label expected\n{text}");
    };
    assert!(travels.denials.unauthenticated > 0, "{text}");
    assert!(travels.denials.forbidden > 0, "{text}");
    // Every ordinary request carried the good token, or it would have had a 401.
    assert_eq!(travels.statuses.client_error, 0, "{text}");
    assert_eq!(report.verdict(), Ok(()), "{text}");

    let leaky = [("/open", "good", Denial::Forbidden)];
    let mut out = Vec::new();
    let report = run(plan(secured("travels", &["/ok"], &leaky)), stop, &mut out).await?;
    let text = String::from_utf8(out)?;
    assert!(report.per_label()[0].statuses.unenforced > 0, "{text}");
    assert!(
        text.contains("to requests its security policies should have refused"),
        "{text}"
    );
    assert!(text.contains("verdict: FAIL"), "{text}");
    Ok(())
}
