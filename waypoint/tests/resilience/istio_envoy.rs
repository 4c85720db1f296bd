//! Envoy configured the way istiod configures a waypoint for the same YAML, written by hand as
//! a static bootstrap: one plain HTTP listener whose connection manager runs the fault filter
//! and the router; one virtual host per service; routes with Istio's retry policy and timeout;
//! clusters `outbound|80|<subset>|<service>.shop.svc.cluster.local` with Istio's circuit-breaker
//! defaults, connect timeout and load balancer. The translation rules followed are istiod's
//! (`route/retry/retry.go`, `route/route.go`, `cluster_traffic_policy.go`); each scenario
//! applies the rest (outlier detection, thresholds, faults) with the helpers here.

use serde_json::{json, Value};
use std::net::SocketAddr;

use crate::support::envoy::{file_access_log, loopback, socket_address};

/// The listener's name (its address is read back from Envoy's admin API).
pub const LISTENER: &str = "waypoint";

/// What the access log records per request: the id the test sent, the status and the flags
/// (`-` for none), the last upstream host and how many attempts were made.
fn access_log_format() -> Value {
    json!({
        "id": "%REQ(X-TEST-ID)%",
        "code": "%RESPONSE_CODE%",
        "flags": "%RESPONSE_FLAGS%",
        "upstream": "%UPSTREAM_HOST%",
        "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
        "duration_ms": "%DURATION%",
    })
}

/// The whole bootstrap.
pub fn bootstrap(virtual_hosts: Vec<Value>, clusters: Vec<Value>) -> Value {
    json!({
        "static_resources": {
            "listeners": [{
                "name": LISTENER,
                "stat_prefix": LISTENER,
                "address": loopback(0),
                "filter_chains": [{
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": LISTENER,
                            "codec_type": "AUTO",
                            "access_log": [file_access_log(&access_log_format())],
                            "route_config": { "name": "80", "virtual_hosts": virtual_hosts },
                            // istiod puts the fault filter before the router on every HTTP
                            // chain, configured per route.
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.fault",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
                                    },
                                },
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                                    },
                                },
                            ],
                        },
                    }],
                }],
            }],
            "clusters": clusters,
        },
    })
}

/// The virtual host of `service` in namespace `shop`, under every name a client may use.
pub fn virtual_host(service: &str, routes: Vec<Value>) -> Value {
    let fqdn = format!("{service}.shop.svc.cluster.local");
    let mut domains = Vec::new();
    for name in [fqdn.as_str(), &format!("{service}.shop"), service] {
        domains.push(name.to_owned());
        domains.push(format!("{name}:80"));
    }
    json!({ "name": format!("{fqdn}:80"), "domains": domains, "routes": routes })
}

/// Istio's cluster name for `service` (and `subset`, empty for none).
pub fn cluster_name(service: &str, subset: &str) -> String {
    format!("outbound|80|{subset}|{service}.shop.svc.cluster.local")
}

/// A cluster as istiod builds it before any DestinationRule: mesh connect timeout (10 s),
/// LEAST_REQUEST, circuit breakers at their maximum with remaining counts tracked.
pub fn cluster(name: &str, endpoints: &[SocketAddr]) -> Value {
    let lb_endpoints: Vec<Value> = endpoints
        .iter()
        .map(|addr| json!({ "endpoint": { "address": socket_address(*addr) } }))
        .collect();
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "10s",
        "lb_policy": "LEAST_REQUEST",
        "circuit_breakers": { "thresholds": [{
            "max_connections": u32::MAX,
            "max_pending_requests": u32::MAX,
            "max_requests": u32::MAX,
            "max_retries": u32::MAX,
            "track_remaining": true,
        }]},
        "common_lb_config": {},
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": lb_endpoints }],
        },
    })
}

/// A route matching `matcher` to `cluster`, as istiod writes one with no timeout and no
/// retries set: timeout disabled (0s) and Istio's default retry policy.
pub fn route(matcher: Value, cluster: &str) -> Value {
    json!({
        "match": matcher,
        "route": {
            "cluster": cluster,
            "timeout": "0s",
            "retry_policy": retry_policy(None),
            "max_grpc_timeout": "0s",
        },
    })
}

/// The route istiod gives a waypoint for a service no VirtualService or HTTPRoute names (its
/// inbound default route): no timeout, and 2 retries of a request reset before it was sent
/// (ENABLE_INBOUND_RETRY_POLICY, on by default since Istio 1.24), nothing else.
pub fn inbound_default_route(cluster: &str) -> Value {
    json!({
        "match": prefix("/"),
        "route": {
            "cluster": cluster,
            "timeout": "0s",
            "retry_policy": { "retry_on": "reset-before-request", "num_retries": 2 },
        },
    })
}

/// A path prefix match.
pub fn prefix(path: &str) -> Value {
    json!({ "prefix": path })
}

/// The retry policy istiod generates for `retries` (`(attempts, retryOn)`), or its default
/// when none is written: 2 retries on connect-failure, refused-stream, unavailable,
/// cancelled and 503, on another host when one exists (previous_hosts, 5 selection attempts).
/// Integers in `retryOn` become retriable status codes, as istiod parses them.
pub fn retry_policy(retries: Option<(u32, &str)>) -> Value {
    let (attempts, retry_on) = retries.unwrap_or((
        2,
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes,503",
    ));
    let (codes, conditions): (Vec<&str>, Vec<&str>) = retry_on
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .partition(|p| p.parse::<u16>().is_ok());
    let mut retry_on = conditions.join(",");
    if !codes.is_empty() && !retry_on.contains("retriable-status-codes") {
        retry_on.push_str(",retriable-status-codes");
    }
    let codes: Vec<u16> = codes.iter().filter_map(|c| c.parse().ok()).collect();
    let mut policy = json!({
        "retry_on": retry_on,
        "num_retries": attempts,
        "retry_host_predicate": [{
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
            },
        }],
        "host_selection_retry_max_attempts": 5,
    });
    if !codes.is_empty() {
        policy["retriable_status_codes"] = json!(codes);
    }
    policy
}

/// The per-route fault filter config istiod writes for a VirtualService `fault`: `abort` as
/// `(httpStatus, percent)`, `delay` as `(fixedDelay, percent)`; percentages become parts per
/// million.
pub fn fault(abort: Option<(u16, f64)>, delay: Option<(&str, f64)>) -> Value {
    let per_million = |percent: f64| json!({ "numerator": (percent * 10_000.0).round() as u64, "denominator": "MILLION" });
    let mut fault = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
    });
    if let Some((status, percent)) = abort {
        fault["abort"] = json!({ "http_status": status, "percentage": per_million(percent) });
    }
    if let Some((fixed, percent)) = delay {
        fault["delay"] = json!({ "fixed_delay": fixed, "percentage": per_million(percent) });
    }
    json!({ "envoy.filters.http.fault": fault })
}
