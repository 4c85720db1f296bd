//! `connectionPool` compiled: the circuit-breaker limits of one cluster and the options of its
//! upstream connections, with istiod's defaults for what is left out.

use serde::Serialize;
use std::time::Duration;

use crate::destination_rule::{ConnectionPoolSettings, HttpSettings, TcpSettings};
use crate::traffic_policy::{count_field, duration_field, Findings};

/// istiod's connect timeout when `tcp.connectTimeout` is unset (MeshConfig `connectTimeout`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One cluster's limits. istiod sets every circuit-breaker threshold to `u32::MAX` unless the
/// rule sets it (Envoy's own defaults of 1024 and 3 retries proved too low during pod churn),
/// so "unset" is effectively unlimited here too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolLimits {
    /// `tcp.maxConnections`: upstream connections at once (Envoy `max_connections`).
    pub max_connections: u32,
    /// `http.http1MaxPendingRequests`: requests waiting for a connection (`max_pending_requests`).
    pub max_pending_requests: u32,
    /// `http.http2MaxRequests`: requests in flight, whatever the protocol (`max_requests`).
    pub max_requests: u32,
    /// `http.maxRetries`: retries in flight across the cluster (`max_retries`).
    pub max_retries: u32,
    /// `http.maxRequestsPerConnection`: requests before a connection is closed; `None` unlimited.
    pub max_requests_per_connection: Option<u32>,
    /// `http.maxConcurrentStreams`: streams per HTTP/2 connection; `None` unlimited.
    pub max_concurrent_streams: Option<u32>,
    /// `tcp.connectTimeout`; `None` keeps the proxy's own (Istio's mesh default is
    /// [`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Option<Duration>,
    /// `tcp.tcpKeepalive`: set when the rule asks for keepalive probes.
    pub tcp_keepalive: Option<Keepalive>,
    /// `http.idleTimeout`: an idle upstream HTTP connection is closed after it.
    pub idle_timeout: Option<Duration>,
    /// `tcp.idleTimeout`: an idle TCP-proxied connection is closed after it.
    pub tcp_idle_timeout: Option<Duration>,
    /// `tcp.maxConnectionDuration`: a connection's longest life.
    pub max_connection_duration: Option<Duration>,
}

/// `tcp.tcpKeepalive`; a part left out keeps the operating system's default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub time: Option<Duration>,
    /// Time between probes.
    pub interval: Option<Duration>,
    /// Unanswered probes before the connection is dead.
    pub probes: Option<u32>,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            max_connections: u32::MAX,
            max_pending_requests: u32::MAX,
            max_requests: u32::MAX,
            max_retries: u32::MAX,
            max_requests_per_connection: None,
            max_concurrent_streams: None,
            connect_timeout: None,
            tcp_keepalive: None,
            idle_timeout: None,
            tcp_idle_timeout: None,
            max_connection_duration: None,
        }
    }
}

impl PoolLimits {
    /// Compiles `connectionPool` at `field`: a negative count or a bad duration is an error
    /// and leaves that limit at its default.
    pub fn compile(spec: &ConnectionPoolSettings, field: &str, issues: &mut Findings) -> Self {
        let mut limits = PoolLimits::default();
        if let Some(tcp) = &spec.tcp {
            limits.compile_tcp(tcp, &format!("{field}.tcp"), issues);
        }
        if let Some(http) = &spec.http {
            limits.compile_http(http, &format!("{field}.http"), issues);
        }
        limits
    }

    fn compile_tcp(&mut self, tcp: &TcpSettings, field: &str, issues: &mut Findings) {
        let f = |name: &str| format!("{field}.{name}");
        if let Some(n) = count_field(tcp.max_connections, &f("maxConnections"), issues) {
            self.max_connections = n;
        }
        match duration_field(tcp.connect_timeout.as_deref(), &f("connectTimeout"), issues) {
            Some(d) if d < Duration::from_millis(1) => {
                issues.error(f("connectTimeout"), "must be at least 1ms");
            }
            Some(d) => self.connect_timeout = Some(d),
            None => {}
        }
        let positive = |value: Option<&String>, name: &str, issues: &mut Findings| {
            duration_field(value.map(String::as_str), &f(name), issues).filter(|d| !d.is_zero())
        };
        self.tcp_idle_timeout = positive(tcp.idle_timeout.as_ref(), "idleTimeout", issues);
        self.max_connection_duration = positive(
            tcp.max_connection_duration.as_ref(),
            "maxConnectionDuration",
            issues,
        );
        self.tcp_keepalive = tcp.tcp_keepalive.as_ref().map(|k| Keepalive {
            time: duration_field(k.time.as_deref(), &f("tcpKeepalive.time"), issues),
            interval: duration_field(k.interval.as_deref(), &f("tcpKeepalive.interval"), issues),
            probes: k.probes.filter(|&p| p > 0),
        });
    }

    fn compile_http(&mut self, http: &HttpSettings, field: &str, issues: &mut Findings) {
        let f = |name: &str| format!("{field}.{name}");
        let count = |v, name: &str, issues: &mut Findings| count_field(v, &f(name), issues);
        let pending = http.http1_max_pending_requests;
        if let Some(n) = count(pending, "http1MaxPendingRequests", issues) {
            self.max_pending_requests = n;
        }
        if let Some(n) = count(http.http2_max_requests, "http2MaxRequests", issues) {
            self.max_requests = n;
        }
        if let Some(n) = count(http.max_retries, "maxRetries", issues) {
            self.max_retries = n;
        }
        let per_connection = http.max_requests_per_connection;
        self.max_requests_per_connection =
            count(per_connection, "maxRequestsPerConnection", issues);
        self.max_concurrent_streams =
            count(http.max_concurrent_streams, "maxConcurrentStreams", issues);
        self.idle_timeout = duration_field(http.idle_timeout.as_deref(), &f("idleTimeout"), issues)
            .filter(|d| !d.is_zero());
        let protocol_note = "not applied: the upstream protocol is the port's declared protocol";
        if http.h2_upgrade_policy.is_some() {
            issues.warn(f("h2UpgradePolicy"), protocol_note);
        }
        if http.use_client_protocol.is_some() {
            issues.warn(f("useClientProtocol"), protocol_note);
        }
    }

    /// How many requests may be on the wire to the cluster at once because a connection can
    /// carry them. pingora's HTTP/1.1 pool sends one request per connection at a time, so each
    /// in-flight HTTP/1.1 request *is* one of Envoy's `max_connections`; an HTTP/2 connection
    /// carries `maxConcurrentStreams` requests at once (unlimited by default).
    pub fn request_slots(&self, h2: bool) -> u32 {
        if h2 {
            self.max_connections
                .saturating_mul(self.max_concurrent_streams.unwrap_or(u32::MAX))
        } else {
            self.max_connections
        }
    }
}
