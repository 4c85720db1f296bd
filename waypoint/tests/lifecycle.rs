//! Readiness, `/config_dump` and graceful drain of an in-process waypoint.

mod support;

use std::time::Duration;
use support::{any_port, echo, local_options, mesh_config, route_to, write, HttpClient};

/// The request that is in flight when the drain starts.
const SLOW: &str = "/slow?delay=700ms";
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_config_dump_and_drain_with_a_request_in_flight() {
    let a = echo("web-a-0", any_port()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "mesh.yaml",
        &mesh_config(&[("a", a.local_addr)]),
    );
    write(dir.path(), "route.yaml", &route_to("a"));
    // A drain deadline far beyond the slow request: the drain must end because the request
    // finished, and a loaded machine's scheduling delays must not reach the deadline.
    let wp = waypoint::app::start(waypoint::app::Options {
        drain_timeout: DRAIN_TIMEOUT,
        ..local_options(dir.path())
    })
    .await
    .expect("starts");
    let client = HttpClient::new();
    let http = wp.http_addr.expect("http listener");

    let r = client
        .get(wp.ready_addr, "localhost", "/healthz/ready", &[])
        .await
        .expect("ready probe");
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));

    let r = client
        .get(wp.admin_addr, "localhost", "/config_dump", &[])
        .await
        .expect("config dump");
    assert_eq!(r.status, 200);
    let dump: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(dump["version"], 1);
    assert_eq!(dump["gateway"]["name"], "waypoint");
    let web = dump["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["key"]["name"] == "web"))
        .expect("web in dump");
    assert_eq!(web["binding"], "Bound");
    assert_eq!(web["ports"][0]["route_names"][0], "shop/web");
    assert!(
        dump["resources"]
            .as_array()
            .is_some_and(|r| r.iter().all(|r| r["state"] == "Accepted")),
        "{dump}"
    );

    // A slow request is in flight when the drain starts; it must complete. "In flight" means
    // the backend has it (it logs a request before the delay), not that some time has passed.
    let slow = {
        let client = HttpClient::new();
        tokio::spawn(async move { client.get(http, "web.shop", SLOW, &[]).await })
    };
    let seen = tokio::time::Instant::now() + Duration::from_secs(30);
    while a.log.count(SLOW) == 0 {
        assert!(
            tokio::time::Instant::now() < seen,
            "the backend never saw the slow request"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = std::time::Instant::now();
    wp.shutdown().await;
    let r = slow
        .await
        .expect("task")
        .expect("in-flight request completes");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.pod(), "web-a-0");
    assert!(
        started.elapsed() < DRAIN_TIMEOUT / 2,
        "drain waited {:?}: it ran into its deadline instead of ending with the request",
        started.elapsed()
    );

    // Stopped: no new connection is accepted.
    let refused =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(http)).await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "listener still accepting after drain"
    );
}
