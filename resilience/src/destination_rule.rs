//! DestinationRule spec types (Istio `networking.istio.io/v1`), as users write them: the
//! traffic policy (load balancer, connection pool, outlier detection) for a host, per port and
//! per subset. Compiled into this crate's policies; unknown fields are reported by the config
//! layer.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `spec` of a DestinationRule.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    /// The service it applies to (short names resolve in the rule's namespace; `*.` wildcards).
    #[serde(default)]
    pub host: String,
    /// The policy for every port and subset, unless overridden.
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named groups of endpoints by pod labels, each optionally with its own policy.
    #[serde(default)]
    pub subsets: Vec<Subset>,
    /// Namespaces the rule is visible to (`.` its own, `*` all).
    #[serde(default)]
    pub export_to: Vec<String>,
    /// Sidecar workloads it applies to; such rules do not apply to waypoints.
    pub workload_selector: Option<WorkloadSelector>,
}

/// `workloadSelector`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    /// Pod labels.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// `trafficPolicy` (also a subset's).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// Load balancing.
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Circuit-breaking limits.
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Passive health checking.
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS to the upstream (ambient uses HBONE: read and reported).
    pub tls: Option<serde_json::Value>,
    /// Overrides for individual ports.
    #[serde(default)]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// Tunnel settings (read and reported).
    pub tunnel: Option<serde_json::Value>,
    /// PROXY protocol (read and reported).
    pub proxy_protocol: Option<serde_json::Value>,
}

/// `portLevelSettings[]`: replaces the top-level policy's settings for one port.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PortTrafficPolicy {
    /// The port.
    pub port: Option<PortSelector>,
    /// Load balancing.
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Circuit-breaking limits.
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Passive health checking.
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS (read and reported).
    pub tls: Option<serde_json::Value>,
}

/// `port: {number: N}`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct PortSelector {
    /// The port number.
    #[serde(default)]
    pub number: u32,
}

/// `subsets[]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Subset {
    /// The name routes refer to.
    #[serde(default)]
    pub name: String,
    /// Pod labels an endpoint must carry.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Overrides the rule's policy for this subset.
    pub traffic_policy: Option<TrafficPolicy>,
}

/// `loadBalancer`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSettings {
    /// `UNSPECIFIED`, `RANDOM`, `PASSTHROUGH`, `ROUND_ROBIN`, `LEAST_REQUEST`, `LEAST_CONN`.
    pub simple: Option<String>,
    /// Session affinity by a hash of the request.
    pub consistent_hash: Option<ConsistentHashLb>,
    /// Locality settings (no localities here: read and reported).
    pub locality_lb_setting: Option<serde_json::Value>,
    /// Slow start window (deprecated form, Istio duration).
    pub warmup_duration_secs: Option<String>,
    /// Slow start.
    pub warmup: Option<WarmupConfiguration>,
}

/// `warmup`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WarmupConfiguration {
    /// Slow start window (Istio duration).
    pub duration: Option<String>,
    /// The share of traffic a new endpoint starts with (percent, default 10).
    pub minimum_percent: Option<f64>,
    /// How fast traffic ramps up (default 1.0: linear).
    pub aggression: Option<f64>,
}

/// `consistentHash`: exactly one hash key.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHashLb {
    /// Hash of a request header.
    pub http_header_name: Option<String>,
    /// Hash of a cookie, set by the proxy when absent.
    pub http_cookie: Option<HttpCookie>,
    /// Hash of the client's address.
    pub use_source_ip: Option<bool>,
    /// Hash of a query parameter.
    pub http_query_parameter_name: Option<String>,
    /// Ring hash (Ketama).
    pub ring_hash: Option<RingHash>,
    /// Maglev.
    pub maglev: Option<Maglev>,
    /// Deprecated ring size for the ring hash.
    pub minimum_ring_size: Option<u64>,
}

/// `httpCookie`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct HttpCookie {
    /// Cookie name.
    #[serde(default)]
    pub name: String,
    /// Cookie path.
    pub path: Option<String>,
    /// Lifetime of a generated cookie (Istio duration).
    pub ttl: Option<String>,
}

/// `ringHash`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RingHash {
    /// Minimum ring entries (Envoy's default 1024).
    pub minimum_ring_size: Option<u64>,
}

/// `maglev`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Maglev {
    /// Lookup table size, a prime (Envoy's default 65537).
    pub table_size: Option<u64>,
}

/// `connectionPool`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ConnectionPoolSettings {
    /// TCP settings (HTTP and TCP traffic).
    pub tcp: Option<TcpSettings>,
    /// HTTP settings.
    pub http: Option<HttpSettings>,
}

/// `connectionPool.tcp`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TcpSettings {
    /// Most connections to the service at once.
    pub max_connections: Option<i32>,
    /// Connect timeout (Istio duration, default 10s).
    pub connect_timeout: Option<String>,
    /// TCP keepalive.
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Longest lifetime of a connection (Istio duration).
    pub max_connection_duration: Option<String>,
    /// Idle timeout of a TCP connection (Istio duration).
    pub idle_timeout: Option<String>,
}

/// `tcpKeepalive`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct TcpKeepalive {
    /// Unanswered probes before the connection is dead.
    pub probes: Option<u32>,
    /// Idle time before probes start (Istio duration).
    pub time: Option<String>,
    /// Time between probes (Istio duration).
    pub interval: Option<String>,
}

/// `connectionPool.http`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpSettings {
    /// Requests waiting for a connection at once.
    pub http1_max_pending_requests: Option<i32>,
    /// Requests in flight at once.
    pub http2_max_requests: Option<i32>,
    /// Requests per connection before it is closed (0 or unset: unlimited).
    pub max_requests_per_connection: Option<i32>,
    /// Retries in flight at once across the service.
    pub max_retries: Option<i32>,
    /// Idle timeout of an upstream connection (Istio duration).
    pub idle_timeout: Option<String>,
    /// `DEFAULT`, `DO_NOT_UPGRADE`, `UPGRADE`.
    pub h2_upgrade_policy: Option<String>,
    /// Speak the client's protocol upstream.
    pub use_client_protocol: Option<bool>,
    /// Concurrent streams per HTTP/2 connection.
    pub max_concurrent_streams: Option<i32>,
}

/// `outlierDetection`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Tell local-origin failures (connect, timeout) from the upstream's own errors.
    pub split_external_local_origin_errors: Option<bool>,
    /// Local-origin failures in a row before ejection (when split).
    pub consecutive_local_origin_failures: Option<u32>,
    /// 502/503/504 in a row before ejection (0 disables).
    pub consecutive_gateway_errors: Option<u32>,
    /// 5xx in a row before ejection (default 5, 0 disables).
    #[serde(rename = "consecutive5xxErrors")]
    pub consecutive_5xx_errors: Option<u32>,
    /// Deprecated form of `consecutiveGatewayErrors`.
    pub consecutive_errors: Option<i32>,
    /// Time between ejection sweeps (Istio duration, default 10s).
    pub interval: Option<String>,
    /// Minimum ejection time, times the number of ejections (Istio duration, default 30s).
    pub base_ejection_time: Option<String>,
    /// Most endpoints ejected at once, percent (default 10; at least one is always allowed).
    pub max_ejection_percent: Option<i32>,
    /// Below this healthy share, ejection is ignored (panic mode), percent (default 0).
    pub min_health_percent: Option<i32>,
}
