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
#[path = "resilience/breaker.rs"]
mod breaker;
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

use proxies::Side;

/// One scenario at a time in this binary (tokio's mutex: held across awaits, any runtime).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outlier_detection_ejects_a_failing_endpoint_and_returns_it() {
    let _one_at_a_time = SERIAL.lock().await;
    let envoy = outlier::run(Side::Envoy).await;
    outlier::check("envoy", &envoy);
    let waypoint = outlier::run(Side::Waypoint).await;
    outlier::check("waypoint", &waypoint);
    outlier::compare(&envoy, &waypoint);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn circuit_breaker_task_config_overflows_with_503_uo() {
    let _one_at_a_time = SERIAL.lock().await;
    let envoy = breaker::run(Side::Envoy).await;
    breaker::check("envoy", &envoy);
    let waypoint = breaker::run(Side::Waypoint).await;
    breaker::check("waypoint", &waypoint);
    breaker::compare(&envoy, &waypoint);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_injection_and_timeouts_fire_on_time() {
    let _one_at_a_time = SERIAL.lock().await;
    let envoy = faults::run(Side::Envoy).await;
    faults::check("envoy", &envoy);
    let waypoint = faults::run(Side::Waypoint).await;
    faults::check("waypoint", &waypoint);
    faults::compare(&envoy, &waypoint);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_go_elsewhere_respect_the_buffer_limit_and_default_as_istio() {
    let _one_at_a_time = SERIAL.lock().await;
    let envoy = retries::run(Side::Envoy).await;
    retries::check("envoy", &envoy);
    let waypoint = retries::run(Side::Waypoint).await;
    retries::check("waypoint", &waypoint);
    retries::compare(&envoy, &waypoint);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn virtual_service_routing_matches_envoy() {
    let _one_at_a_time = SERIAL.lock().await;
    let envoy = routing_vs::run(Side::Envoy).await;
    routing_vs::check("envoy", &envoy);
    let waypoint = routing_vs::run(Side::Waypoint).await;
    routing_vs::check("waypoint", &waypoint);
    routing_vs::compare(&envoy, &waypoint);
}
