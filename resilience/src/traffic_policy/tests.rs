use super::*;
use crate::destination_rule::DestinationRuleSpec;
use crate::lb::{Algorithm, HashKey};

/// A spec written as JSON (YAML's subset the config folder also accepts).
fn spec(json: &str) -> DestinationRuleSpec {
    serde_json::from_str(json).expect("valid spec")
}

fn compile(json: &str) -> (DestinationPolicy, Findings) {
    let mut findings = Findings::default();
    let p = DestinationPolicy::compile(&spec(json), &mut findings);
    (p, findings)
}

fn fields(issues: &[PolicyIssue]) -> Vec<&str> {
    issues.iter().map(|i| i.field.as_str()).collect()
}

#[test]
fn no_rule_gets_istios_defaults() {
    let p = ClusterPolicy::default();
    assert_eq!(p.lb.algorithm, Algorithm::LeastRequest);
    assert_eq!(p.pool.max_connections, u32::MAX);
    assert_eq!(p.pool.max_pending_requests, u32::MAX);
    assert_eq!(p.pool.max_requests, u32::MAX);
    assert_eq!(p.pool.max_retries, u32::MAX);
    assert_eq!(p.pool.connect_timeout, None);
    assert!(p.outlier.is_none());
}

#[test]
fn the_circuit_breaking_task_compiles_to_its_limits() {
    let (p, f) = compile(
        r#"{"host": "httpbin", "trafficPolicy": {
            "connectionPool": {"tcp": {"maxConnections": 1},
                               "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1}},
            "outlierDetection": {"consecutive5xxErrors": 1, "interval": "1s",
                                 "baseEjectionTime": "3m", "maxEjectionPercent": 100}}}"#,
    );
    assert_eq!(f, Findings::default());
    let c = p.for_cluster(8000, None);
    assert_eq!(c.pool.max_connections, 1);
    assert_eq!(c.pool.max_pending_requests, 1);
    assert_eq!(c.pool.max_requests_per_connection, Some(1));
    assert_eq!(c.pool.max_requests, u32::MAX);
    let o = c.outlier.expect("outlier detection");
    assert_eq!(o.consecutive_5xx, 1);
    assert_eq!(o.interval, Duration::from_secs(1));
    assert_eq!(o.base_ejection, Duration::from_secs(180));
    assert_eq!(o.max_ejection_percent, 100);
    assert_eq!(o.min_health_percent, 0);
}

#[test]
fn port_level_settings_replace_the_top_level_wholesale() {
    let (p, _) = compile(
        r#"{"host": "r", "trafficPolicy": {
            "loadBalancer": {"simple": "ROUND_ROBIN"},
            "connectionPool": {"tcp": {"maxConnections": 7}},
            "portLevelSettings": [{"port": {"number": 9080},
                                   "loadBalancer": {"simple": "RANDOM"}}]}}"#,
    );
    let other = p.for_cluster(80, None);
    assert_eq!(other.lb.algorithm, Algorithm::RoundRobin);
    assert_eq!(other.pool.max_connections, 7);
    let port = p.for_cluster(9080, None);
    assert_eq!(port.lb.algorithm, Algorithm::Random);
    // Not inherited from the top level: istiod's "port level policies do not inherit".
    assert_eq!(port.pool.max_connections, u32::MAX);
}

#[test]
fn a_subset_overrides_the_components_it_sets() {
    let (p, _) = compile(
        r#"{"host": "r", "trafficPolicy": {
              "loadBalancer": {"simple": "ROUND_ROBIN"},
              "connectionPool": {"tcp": {"maxConnections": 7}}},
            "subsets": [
              {"name": "v1", "labels": {"version": "v1"},
               "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}},
              {"name": "v2", "labels": {"version": "v2"},
               "trafficPolicy": {"portLevelSettings": [{"port": {"number": 80},
                  "outlierDetection": {"consecutive5xxErrors": 2}}]}},
              {"name": "v3", "labels": {"version": "v3"}}]}"#,
    );
    let v1 = p.for_cluster(80, Some("v1"));
    assert_eq!(v1.lb.algorithm, Algorithm::Random);
    assert_eq!(v1.pool.max_connections, 7);
    let v2 = p.for_cluster(80, Some("v2"));
    assert_eq!(
        v2.lb.algorithm,
        Algorithm::LeastRequest,
        "port level: wholesale"
    );
    assert_eq!(v2.pool.max_connections, u32::MAX);
    assert_eq!(v2.outlier.map(|o| o.consecutive_5xx), Some(2));
    let v2_other_port = p.for_cluster(81, Some("v2"));
    assert_eq!(v2_other_port.lb.algorithm, Algorithm::RoundRobin);
    assert_eq!(p.for_cluster(80, Some("v3")), p.for_cluster(80, None));
}

#[test]
fn outlier_detection_defaults_as_istiod_and_envoy() {
    let (p, _) = compile(r#"{"host": "r", "trafficPolicy": {"outlierDetection": {}}}"#);
    let o = p.for_cluster(80, None).outlier.expect("present");
    assert_eq!(o, OutlierPolicy::default());
    assert_eq!(o.consecutive_5xx, 5);
    assert_eq!(o.consecutive_gateway, 0);
    assert_eq!(o.interval, Duration::from_secs(10));
    assert_eq!(o.base_ejection, Duration::from_secs(30));
    assert_eq!(o.max_ejection_percent, 10);
    let (p, _) = compile(
        r#"{"host": "r", "trafficPolicy": {"outlierDetection": {
            "consecutive5xxErrors": 0, "consecutiveGatewayErrors": 3,
            "splitExternalLocalOriginErrors": true, "minHealthPercent": 50}}}"#,
    );
    let o = p.for_cluster(80, None).outlier.expect("present");
    assert_eq!(
        (
            o.consecutive_5xx,
            o.consecutive_gateway,
            o.consecutive_local_origin
        ),
        (0, 3, 5)
    );
    assert!(o.split_local_origin);
    assert_eq!(o.min_health_percent, 50);
}

#[test]
fn consistent_hash_keys_and_tables() {
    let cases = [
        (
            r#"{"httpHeaderName": "X-User"}"#,
            Algorithm::RingHash(1024),
            HashKey::Header("x-user".into()),
        ),
        (
            r#"{"useSourceIp": true, "maglev": {"tableSize": 1009}}"#,
            Algorithm::Maglev(1009),
            HashKey::SourceIp,
        ),
        (
            r#"{"httpQueryParameterName": "u", "ringHash": {"minimumRingSize": 64}}"#,
            Algorithm::RingHash(64),
            HashKey::QueryParameter("u".into()),
        ),
        (
            r#"{"httpQueryParameterName": "u", "minimumRingSize": 32}"#,
            Algorithm::RingHash(32),
            HashKey::QueryParameter("u".into()),
        ),
    ];
    for (ch, algorithm, key) in cases {
        let json = format!(
            r#"{{"host": "r", "trafficPolicy": {{"loadBalancer": {{"consistentHash": {ch}}}}}}}"#
        );
        let (p, f) = compile(&json);
        assert_eq!(f, Findings::default(), "{ch}");
        let lb = p.for_cluster(80, None).lb;
        assert_eq!((lb.algorithm, lb.hash_key), (algorithm, Some(key)), "{ch}");
    }
}

#[test]
fn a_cookie_key_keeps_name_path_and_ttl() {
    let (p, _) = compile(
        r#"{"host": "r", "trafficPolicy": {"loadBalancer": {"consistentHash":
            {"httpCookie": {"name": "user", "path": "/", "ttl": "60s"}}}}}"#,
    );
    match p.for_cluster(80, None).lb.hash_key {
        Some(HashKey::Cookie(c)) => {
            assert_eq!((c.name.as_str(), c.path.as_deref()), ("user", Some("/")));
            assert_eq!(c.ttl, Some(Duration::from_secs(60)));
        }
        other => panic!("cookie key expected, got {other:?}"),
    }
}

#[test]
fn warmup_applies_to_round_robin_and_least_request() {
    let (p, f) = compile(
        r#"{"host": "r", "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN",
            "warmup": {"duration": "60s", "minimumPercent": 20, "aggression": 2}}}}"#,
    );
    assert_eq!(f, Findings::default());
    let w = p.for_cluster(80, None).lb.warmup.expect("warmup");
    assert_eq!(
        (w.window, w.min_percent, w.aggression),
        (Duration::from_secs(60), 20.0, 2.0)
    );
    let (p, _) = compile(
        r#"{"host": "r", "trafficPolicy": {"loadBalancer": {"warmupDurationSecs": "30s"}}}"#,
    );
    let w = p.for_cluster(80, None).lb.warmup.expect("warmup");
    assert_eq!(
        (w.window, w.min_percent, w.aggression),
        (Duration::from_secs(30), 10.0, 1.0)
    );
    let (p, f) = compile(
        r#"{"host": "r", "trafficPolicy": {"loadBalancer": {"simple": "RANDOM",
            "warmupDurationSecs": "30s"}}}"#,
    );
    assert!(p.for_cluster(80, None).lb.warmup.is_none());
    assert_eq!(
        fields(&f.warnings),
        ["spec.trafficPolicy.loadBalancer.warmup"]
    );
}

#[test]
fn invalid_values_are_errors_naming_their_field() {
    let cases = [
        (
            r#"{"loadBalancer": {"simple": "ROUND_ROBIN", "consistentHash": {"useSourceIp": true}}}"#,
            "spec.trafficPolicy.loadBalancer",
        ),
        (
            r#"{"loadBalancer": {"simple": "PASSTHROUGH"}}"#,
            "spec.trafficPolicy.loadBalancer.simple",
        ),
        (
            r#"{"loadBalancer": {"simple": "FASTEST"}}"#,
            "spec.trafficPolicy.loadBalancer.simple",
        ),
        (
            r#"{"loadBalancer": {"consistentHash": {}}}"#,
            "spec.trafficPolicy.loadBalancer.consistentHash",
        ),
        (
            r#"{"loadBalancer": {"consistentHash": {"useSourceIp": true, "httpHeaderName": "x"}}}"#,
            "spec.trafficPolicy.loadBalancer.consistentHash",
        ),
        (
            r#"{"loadBalancer": {"consistentHash": {"useSourceIp": true, "maglev": {"tableSize": 1000}}}}"#,
            "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
        ),
        (
            r#"{"connectionPool": {"tcp": {"maxConnections": -1}}}"#,
            "spec.trafficPolicy.connectionPool.tcp.maxConnections",
        ),
        (
            r#"{"connectionPool": {"http": {"http1MaxPendingRequests": -5}}}"#,
            "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests",
        ),
        (
            r#"{"connectionPool": {"tcp": {"connectTimeout": "10 seconds"}}}"#,
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
        ),
        (
            r#"{"outlierDetection": {"interval": "soon"}}"#,
            "spec.trafficPolicy.outlierDetection.interval",
        ),
        (
            r#"{"outlierDetection": {"maxEjectionPercent": 120}}"#,
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
        ),
        (
            r#"{"outlierDetection": {"minHealthPercent": -1}}"#,
            "spec.trafficPolicy.outlierDetection.minHealthPercent",
        ),
        (
            r#"{"portLevelSettings": [{"connectionPool": {}}]}"#,
            "spec.trafficPolicy.portLevelSettings[0].port.number",
        ),
        (
            r#"{"portLevelSettings": [{"port": {"number": 80}, "connectionPool": {"tcp": {"maxConnections": -2}}}]}"#,
            "spec.trafficPolicy.portLevelSettings[0].connectionPool.tcp.maxConnections",
        ),
    ];
    for (policy, field) in cases {
        let (_, f) = compile(&format!(r#"{{"host": "r", "trafficPolicy": {policy}}}"#));
        assert_eq!(fields(&f.errors), [field], "{policy}");
    }
}

#[test]
fn subsets_need_unique_names_and_a_rule_needs_a_host() {
    let (_, f) = compile(
        r#"{"host": "", "subsets": [{"name": "a"}, {"name": "a"}, {"labels": {"v": "1"}},
            {"name": "b", "trafficPolicy": {"connectionPool": {"http": {"maxRetries": -1}}}}]}"#,
    );
    assert_eq!(
        fields(&f.errors),
        [
            "spec.host",
            "spec.subsets[1].name",
            "spec.subsets[2].name",
            "spec.subsets[3].trafficPolicy.connectionPool.http.maxRetries"
        ]
    );
}

#[test]
fn fields_a_waypoint_does_not_act_on_are_warnings() {
    let (_, f) = compile(
        r#"{"host": "r", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"},
            "loadBalancer": {"localityLbSetting": {"enabled": true}},
            "outlierDetection": {"consecutiveErrors": 3}}}"#,
    );
    assert!(f.errors.is_empty());
    assert_eq!(
        fields(&f.warnings),
        [
            "spec.trafficPolicy.loadBalancer.localityLbSetting",
            "spec.trafficPolicy.outlierDetection.consecutiveErrors",
            "spec.trafficPolicy.tls"
        ]
    );
}

#[test]
fn connection_options_compile_from_tcp_and_http() {
    let (p, f) = compile(
        r#"{"host": "r", "trafficPolicy": {"connectionPool": {
            "tcp": {"connectTimeout": "250ms", "idleTimeout": "1h", "maxConnectionDuration": "10m",
                    "tcpKeepalive": {"time": "60s", "interval": "5s", "probes": 3}},
            "http": {"idleTimeout": "30s", "maxConcurrentStreams": 100, "http2MaxRequests": 50,
                     "maxRetries": 4, "h2UpgradePolicy": "UPGRADE"}}}}"#,
    );
    assert!(f.errors.is_empty(), "{f:?}");
    assert_eq!(
        fields(&f.warnings),
        ["spec.trafficPolicy.connectionPool.http.h2UpgradePolicy"]
    );
    let pool = p.for_cluster(80, None).pool;
    assert_eq!(pool.connect_timeout, Some(Duration::from_millis(250)));
    assert_eq!(pool.idle_timeout, Some(Duration::from_secs(30)));
    assert_eq!(pool.tcp_idle_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(pool.max_connection_duration, Some(Duration::from_secs(600)));
    assert_eq!(
        (
            pool.max_concurrent_streams,
            pool.max_requests,
            pool.max_retries
        ),
        (Some(100), 50, 4)
    );
    let k = pool.tcp_keepalive.expect("keepalive");
    assert_eq!(
        (k.time, k.interval, k.probes),
        (
            Some(Duration::from_secs(60)),
            Some(Duration::from_secs(5)),
            Some(3)
        )
    );
}
