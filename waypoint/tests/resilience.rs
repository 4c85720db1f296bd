//! Issue 11's acceptance scenarios, side by side: each runs once against Envoy 1.40 configured
//! as istiod configures a waypoint for the same YAML (the reference, which also proves the
//! test's own mechanics), then against `waypoint run --config DIR --http-listen ADDR` with the
//! DestinationRule / VirtualService / HTTPRoute YAML. Each side must show Istio's documented
//! behaviour, and the waypoint must give the same status codes and response flags as Envoy.
//!
//! Scenarios run one at a time: several measure latency to within 50 ms or load the machine.

mod support;

#[path = "resilience/backends.rs"]
mod backends;
#[path = "resilience/balancing.rs"]
mod balancing;
#[path = "resilience/breaker.rs"]
mod breaker;
#[path = "resilience/check.rs"]
mod check;
#[path = "resilience/client.rs"]
mod client;
#[path = "resilience/faults.rs"]
mod faults;
#[path = "resilience/istio_envoy.rs"]
mod istio_envoy;
#[path = "resilience/mesh.rs"]
mod mesh;
#[path = "resilience/outlier.rs"]
mod outlier;
#[path = "resilience/proxies.rs"]
mod proxies;
#[path = "resilience/retries.rs"]
mod retries;
#[path = "resilience/routing.rs"]
mod routing_vs;

#[path = "resilience/verdict.rs"]
mod verdict;

use proxies::Side;
use std::future::Future;
use verdict::Verdict;

/// One scenario at a time in this binary (tokio's mutex: held across awaits, any runtime).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs a scenario against Envoy, checks Envoy shows the documented behaviour (else the test
/// itself is wrong), then against the waypoint, checks the same and compares with Envoy.
async fn side_by_side<R, F: Future<Output = R>>(
    run: impl Fn(Side) -> F,
    check: fn(&mut Verdict, &R),
    compare: fn(&mut Verdict, &R, &R),
) {
    let _one_at_a_time = SERIAL.lock().await;
    let envoy = run(Side::Envoy).await;
    Verdict::judge("envoy", |v| check(v, &envoy));
    let waypoint = run(Side::Waypoint).await;
    Verdict::judge("waypoint", |v| {
        check(v, &waypoint);
        compare(v, &envoy, &waypoint);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outlier_detection_ejects_a_failing_endpoint_and_returns_it() {
    side_by_side(outlier::run, outlier::check, outlier::compare).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn circuit_breaker_task_config_overflows_with_503_uo() {
    side_by_side(breaker::run, breaker::check, breaker::compare).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_injection_and_timeouts_fire_on_time() {
    side_by_side(faults::run, faults::check, faults::compare).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_go_elsewhere_respect_the_buffer_limit_and_default_as_istio() {
    side_by_side(retries::run, retries::check, retries::compare).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn virtual_service_routing_matches_envoy() {
    side_by_side(routing_vs::run, routing_vs::check, routing_vs::compare).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consistent_hash_keeps_users_and_cookies_on_one_pod() {
    side_by_side(balancing::run, balancing::check, balancing::compare).await;
}

#[test]
fn waypoint_check_names_bad_resilience_values() {
    check::bad_values_are_named();
}

#[test]
fn waypoint_check_reports_a_virtual_service_an_http_route_overrides() {
    check::overridden_virtual_service_is_reported();
}
