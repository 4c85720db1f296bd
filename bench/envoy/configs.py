"""Envoy 1.40 configurations doing the waypoint's work, for the side-by-side benchmarks.

The HBONE configuration follows the layout Istio documents and generates for its Envoy-based
waypoint:

  connect_terminate (TCP :15008)          mTLS, TLS 1.3 only, client cert required and chained to
    HCM, codec HTTP/2, allow_connect      the mesh root, URI SAN in our trust domain, ALPN h2
    route connect_matcher -> main_internal (CONNECT upgrade kept, the stream becomes a byte pipe)
    set_filter_state: the CONNECT :authority becomes the internal connection's local address
  main_internal (internal listener)
    original_dst listener filter          restores the destination (service VIP:port)
    one filter chain per service VIP:port -> HCM (codec AUTO: the tunnelled bytes are the app's
    plain HTTP/1.1) -> the service's routes -> cluster of the backend (STATIC, HTTP/1.1)

The plain HTTP configuration (scenario 1) is one HCM on a TCP listener with the same routes,
selected by Host as the waypoint's plain listener does.

Every function returns a dict; the benchmark writes it as JSON (Envoy reads JSON as YAML).
"""

import security as security_policies

# ztunnel's HTTP/2 windows: both proxies see the peer they see in a mesh.
STREAM_WINDOW = 4 * 1024 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
BACKEND_CLUSTER = "outbound|80||web-backend.shop.svc.cluster.local"

# Istio lifts Envoy's default circuit breakers (1024 connections, pending and active requests per
# cluster) to the maximum unless a DestinationRule sets them; without this, the 1025th open
# tunnel to main_internal would wait forever in the pending queue.
UNLIMITED = 4294967295
CIRCUIT_BREAKERS = {"thresholds": [{
    "max_connections": UNLIMITED, "max_pending_requests": UNLIMITED,
    "max_requests": UNLIMITED, "max_retries": UNLIMITED,
}]}


def _socket(host, port):
    return {"socket_address": {"address": host, "port_value": port}}


def _retry_policy(retry_on, codes):
    """A route's retry policy as istiod writes it: two retries, never the same host twice."""
    return {
        "retry_on": retry_on,
        "num_retries": 2,
        "retriable_status_codes": codes,
        "retry_host_predicate": [{
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"},
        }],
        "host_selection_retry_max_attempts": 5,
    }


# Istio's default policy, which istiod puts on every route that does not set its own.
DEFAULT_RETRY_POLICY = _retry_policy(
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", [503])
# S3's resilience as istiod translates bench/mesh.py's YAML: the HTTPRoute's retry
# {attempts: 2, codes: [503]} and the DestinationRule's outlierDetection.
RETRY_POLICY = _retry_policy("retriable-status-codes", [503])
OUTLIER_DETECTION = {
    "consecutive_5xx": 5,
    "interval": "10s",
    "base_ejection_time": "30s",
    "max_ejection_percent": 10,
    "enforcing_consecutive_5xx": 100,
    "enforcing_consecutive_gateway_failure": 0,
    "enforcing_success_rate": 0,
}


def _backend_cluster(backend_port, resilience=False):
    cluster = {
        "name": BACKEND_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "5s",
        "circuit_breakers": CIRCUIT_BREAKERS,
        "load_assignment": {
            "cluster_name": BACKEND_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket("127.0.0.1", backend_port)}}]}],
        },
    }
    if resilience:
        cluster["outlier_detection"] = OUTLIER_DETECTION
    return cluster


def routes(count, resilience=False):
    """`count` routes in evaluation order: count-1 that the benchmark request does not match
    (prefix "/" plus a header it does not send), then the catch-all it matches: the same rules
    as the waypoint's HTTPRoutes, where the catch-all is last in Gateway API precedence (fewer
    header matches). Istio sets no route timeout unless one is configured (timeout 0s) and its
    default retry policy unless the route has its own."""
    out = []
    for k in range(1, count):
        out.append({
            "name": f"variant-{k}",
            "match": {"prefix": "/", "headers": [{"name": "x-variant", "string_match": {"exact": f"v{k}"}}]},
            "route": {"cluster": BACKEND_CLUSTER, "timeout": "0s", "retry_policy": DEFAULT_RETRY_POLICY},
        })
    default = {"cluster": BACKEND_CLUSTER, "timeout": "0s",
               "retry_policy": RETRY_POLICY if resilience else DEFAULT_RETRY_POLICY}
    out.append({"name": "default", "match": {"prefix": "/"}, "route": default})
    return out


def _admin(admin_port):
    return {"address": _socket("127.0.0.1", admin_port)}


def plain_http(listen_port, admin_port, backend_port, route_count=1):
    """Scenario 1: plain HTTP/1.1 proxy, routed by Host like the waypoint's HTTP listener."""
    return {
        "admin": _admin(admin_port),
        "static_resources": {
            "listeners": [{
                "name": "http",
                "stat_prefix": "http",
                "address": _socket("127.0.0.1", listen_port),
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": HCM,
                        "stat_prefix": "http",
                        "codec_type": "AUTO",
                        "route_config": {"name": "web", "virtual_hosts": [{
                            "name": "web.shop.svc.cluster.local:80",
                            "domains": ["web.shop.svc.cluster.local", "web.shop.svc.cluster.local:80",
                                        "web.shop", "web.shop:80", "web", "web:80", "10.0.0.10", "10.0.0.10:80"],
                            "routes": routes(route_count),
                        }]},
                        "http_filters": [ROUTER],
                    },
                }]}],
            }],
            "clusters": [_backend_cluster(backend_port)],
        },
    }


def _service_chain(vip, port, route_list, name, filters=()):
    """One filter chain of main_internal: the HCM Istio builds for a service VIP:port, with
    `filters` (S3's jwt_authn and RBAC) before the router."""
    return {
        "name": name,
        "filter_chain_match": {"prefix_ranges": [{"address_prefix": vip, "prefix_len": 32}], "destination_port": port},
        "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": HCM,
                "stat_prefix": name,
                "codec_type": "AUTO",
                "route_config": {"name": name, "virtual_hosts": [{
                    "name": name, "domains": ["*"], "routes": route_list,
                }]},
                "http_filters": [*filters, ROUTER],
            },
        }],
    }


def hbone_waypoint(listen_port, admin_port, backend_port, cert_dir, services, resilience=False,
                   security=False):
    """Scenarios 2-5: Istio's waypoint layout. `services` is a list of (vip, port, routes);
    `resilience` gives the backend cluster S3's outlier detector; `security` gives every service
    S3's JWT and 20-rule ALLOW policy (bench/security.py) and connect_terminate the peer
    identity's filter state they need."""
    tls_params = {"tls_minimum_protocol_version": "TLSv1_3", "tls_maximum_protocol_version": "TLSv1_3"}
    common_tls = {
        "tls_params": tls_params,
        "alpn_protocols": ["h2"],
        "tls_certificates": [{
            "certificate_chain": {"filename": f"{cert_dir}/cert-chain.pem"},
            "private_key": {"filename": f"{cert_dir}/key.pem"},
        }],
        "validation_context": {
            "trusted_ca": {"filename": f"{cert_dir}/root-cert.pem"},
            # Istio's waypoint accepts any workload of its trust domain; authorization is L7.
            "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"prefix": "spiffe://cluster.local/"}}],
        },
    }
    text = lambda s: {"text_format_source": {"inline_string": s}}  # noqa: E731
    set_filter_state = {
        "name": "envoy.filters.http.set_filter_state",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config",
            "on_request_headers": [
                # The CONNECT target becomes the local address of the internal connection, so
                # main_internal picks the service's filter chain by VIP:port, as Istio does.
                {"object_key": "envoy.filters.listener.original_dst.local_ip",
                 "format_string": text("%REQ(:AUTHORITY)%"), "shared_with_upstream": "ONCE"},
                {"object_key": "envoy.filters.listener.original_dst.remote_ip",
                 "format_string": text("%DOWNSTREAM_REMOTE_ADDRESS%"), "shared_with_upstream": "ONCE"},
            ] + ([security_policies.peer_principal_state()] if security else []),
        },
    }
    connect_terminate = {
        "name": "connect_terminate",
        "stat_prefix": "connect_terminate",
        "address": _socket("127.0.0.1", listen_port),
        "filter_chains": [{
            "transport_socket": {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "require_client_certificate": True,
                    "common_tls_context": common_tls,
                },
            },
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": HCM,
                    "stat_prefix": "connect_terminate",
                    "codec_type": "HTTP2",
                    "http2_protocol_options": {
                        "allow_connect": True,
                        "initial_stream_window_size": STREAM_WINDOW,
                        "initial_connection_window_size": CONNECTION_WINDOW,
                    },
                    "upgrade_configs": [{"upgrade_type": "CONNECT"}],
                    "route_config": {"name": "connect_terminate", "virtual_hosts": [{
                        "name": "connect_terminate",
                        "domains": ["*"],
                        "routes": [{
                            "match": {"connect_matcher": {}},
                            "route": {
                                "cluster": "main_internal",
                                # A tunnel lives as long as its peers keep it.
                                "timeout": "0s",
                                "upgrade_configs": [{"upgrade_type": "CONNECT", "connect_config": {}}],
                            },
                        }],
                    }]},
                    "http_filters": [set_filter_state, ROUTER],
                },
            }],
        }],
    }
    main_internal = {
        "name": "main_internal",
        "internal_listener": {},
        "listener_filters": [{
            "name": "envoy.filters.listener.original_dst",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"},
        }],
        "filter_chains": [
            _service_chain(vip, port, route_list, f"inbound-vip|{port}|http|{vip}",
                           security_policies.envoy_filters() if security else ())
            for vip, port, route_list in services
        ],
    }
    main_internal_cluster = {
        "name": "main_internal",
        "type": "STATIC",
        "connect_timeout": "5s",
        "circuit_breakers": CIRCUIT_BREAKERS,
        "load_assignment": {
            "cluster_name": "main_internal",
            "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"envoy_internal_address": {"server_listener_name": "main_internal"}},
            }}]}],
        },
        "transport_socket": {
            "name": "envoy.transport_sockets.internal_upstream",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport",
                "transport_socket": {
                    "name": "envoy.transport_sockets.raw_buffer",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"},
                },
            },
        },
    }
    return {
        "admin": _admin(admin_port),
        "bootstrap_extensions": [{
            "name": "envoy.bootstrap.internal_listener",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"},
        }],
        "static_resources": {
            "listeners": [connect_terminate, main_internal],
            "clusters": [main_internal_cluster, _backend_cluster(backend_port, resilience)],
        },
    }
