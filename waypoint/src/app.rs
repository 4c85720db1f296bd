//! Starting and stopping a whole waypoint: config, watcher, proxy listeners, admin, readiness.
//! `waypoint run`, the demo and the integration tests all go through [`start`](crate::app::start).

use crate::admin::{self, AdminState};
use crate::hbone::client::HboneClient;
use crate::hbone::context::TunnelRegistry;
use crate::hbone::server::HboneServer;
use crate::hbone::tcp::{TcpForwarder, DEFAULT_IDLE_TIMEOUT};
use crate::identity::{CertError, CertStore, WorkloadCert};
use crate::listener::{self, Proxy};
use crate::live::{ConfigError, LiveConfig};
use crate::proxy::WaypointProxy;
use crate::security::Clients;
use crate::snapshot::GatewayRef;
use arc_swap::ArcSwap;
use pingora_core::apps::{HttpServerApp, HttpServerOptions};
use pingora_core::server::configuration::ServerConf;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

mod gateway_listeners;

use gateway_listeners::GatewayListeners;

/// What `waypoint run` is told on its command line; [`Options::local`] gives test defaults.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--config`: the folder of Kubernetes objects, watched for changes.
    pub config_dir: PathBuf,
    /// `--gateway NS/NAME`: the Gateway to serve; none means the only `istio-waypoint` one.
    pub gateway: Option<GatewayRef>,
    /// `--gateway-address` (default 0.0.0.0): where the Gateway role's listeners bind.
    pub gateway_address: std::net::IpAddr,
    /// `--gateway-port-offset` (default 0): added to each Gateway listener port when binding.
    pub gateway_port_offset: u16,
    /// `--http-listen`: a plain HTTP/1.1 and h2c listener for local use; off by default.
    pub http_listen: Option<SocketAddr>,
    /// `--admin-listen` (default 127.0.0.1:15000): the admin listener.
    pub admin_listen: SocketAddr,
    /// `--ready-listen` (default 0.0.0.0:15021): the readiness probe listener.
    pub ready_listen: SocketAddr,
    /// `--drain-timeout` (default 5 s): how long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// `--cert-dir`: Istio's certificate folder, reloaded on change; without it or `ca`, no HBONE.
    pub cert_dir: Option<PathBuf>,
    /// `--hbone-listen` (default 0.0.0.0:15008): the HBONE listener, served with an identity.
    pub hbone_listen: SocketAddr,
    /// `--hbone-upstream-port` (default 15008): the port ambient pods take HBONE on.
    pub hbone_upstream_port: u16,
    /// `--ca-address` and related flags: get the identity from the Istio CA, kept renewed.
    pub ca: Option<crate::identity::ca::CaClientConfig>,
    /// `--trust-domain` (default cluster.local): the mesh's trust domain unless the MeshConfig
    /// sets one; HBONE peers must be in it or in an alias.
    pub trust_domain: String,
}

impl Options {
    /// Defaults for a local waypoint on the given config folder: no listener but admin and
    /// readiness on ephemeral loopback ports, no identity.
    pub fn local(config_dir: PathBuf) -> Options {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Options {
            config_dir,
            gateway: None,
            gateway_address: any.ip(),
            gateway_port_offset: 0,
            http_listen: None,
            admin_listen: any,
            ready_listen: any,
            drain_timeout: Duration::from_secs(5),
            cert_dir: None,
            hbone_listen: any,
            hbone_upstream_port: 15008,
            ca: None,
            trust_domain: crate::snapshot::CLUSTER_DOMAIN.to_string(),
        }
    }
}

/// Why [`start`] gave up; the waypoint does not serve at all then, and `main` exits with it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config folder is unreadable or has errors, listed by file and object.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener address is taken or not ours to bind.
    #[error("cannot listen on {addr} ({what}): {source}; pick another address with --{flag}")]
    Listen {
        /// Which listener.
        what: &'static str,
        /// The flag that sets its address.
        flag: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// `--gateway-port-offset` pushes a Gateway listener port past 65535.
    #[error("Gateway listener port {port} plus --gateway-port-offset {offset} is above 65535; use a smaller offset")]
    PortOffset {
        /// The Gateway listener's own port.
        port: u16,
        /// The offset added to it.
        offset: u16,
    },
    /// The certificate folder or a CA-issued certificate was unusable.
    #[error("workload certificate: {0}; check --cert-dir (Istio's cert-chain.pem, key.pem, root-cert.pem)")]
    Certs(#[from] CertError),
    /// The first certificate request to the Istio CA failed; the message says what to check.
    #[error("Istio CA: {0}")]
    Ca(#[from] crate::identity::ca::CaError),
    /// The HBONE listener's TLS config could not be built from the certificate.
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    /// A folder watch could not be set up (often `fs.inotify.max_user_watches` is used up).
    #[error("cannot watch {}: {source}", dir.display())]
    Watch {
        /// The config or certificate folder.
        dir: PathBuf,
        /// notify's error.
        #[source]
        source: notify::Error,
    },
}

/// A running waypoint. Dropping it does not stop it; call [`Running::shutdown`].
pub struct Running {
    /// The plain HTTP listener's bound address, if `--http-listen` asked for one.
    pub http_addr: Option<SocketAddr>,
    /// Gateway role: each listener port and its address, as bound at start (reloads may add).
    pub gateway_addrs: Vec<(u16, SocketAddr)>,
    /// The admin listener's bound address.
    pub admin_addr: SocketAddr,
    /// The readiness listener's bound address.
    pub ready_addr: SocketAddr,
    /// The HBONE listener's bound address; none without an identity.
    pub hbone_addr: Option<SocketAddr>,
    /// The configuration in force, for tests and the demo to read or reload.
    pub live: Arc<LiveConfig>,
    /// The open inbound tunnels, for tests to count.
    pub tunnels: Arc<TunnelRegistry>,
    proxy: Arc<Proxy>,
    proxy_h1: Arc<Proxy>,
    admin: Arc<AdminState>,
    shutdown: watch::Sender<bool>,
    tracker: TaskTracker,
    drain_timeout: Duration,
    _watchers: Vec<notify::RecommendedWatcher>,
}

async fn bind(
    addr: SocketAddr,
    what: &'static str,
    flag: &'static str,
) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen {
            what,
            flag,
            addr,
            source,
        })
}

fn local_addr(l: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    l.local_addr().unwrap_or(fallback)
}

/// Loads the config folder and starts every listener. Returns once all are accepting.
pub async fn start(opts: Options) -> Result<Running, StartError> {
    let live = load_config(&opts).await?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let tracker = TaskTracker::new();
    let tunnels = TunnelRegistry::new();
    let certs = load_identity(&opts, &shutdown_rx).await?;
    let hbone_client = certs
        .as_ref()
        .map(|c| HboneClient::new(c.clone(), opts.hbone_upstream_port));
    // Filled once the Gateway role's listeners are bound: which listener port a connection's
    // local address serves.
    let gateway_ports: Arc<ArcSwap<HashMap<SocketAddr, u16>>> = Arc::default();
    // One JWKS cache and one set of ext_authz connections for every listener and tunnel.
    let security = Clients::new();
    crate::security::follow_jwks(live.clone(), security.jwks.clone(), shutdown_rx.clone());
    let make_proxy = |h2c: bool| {
        let inner = WaypointProxy::new(
            live.clone(),
            tunnels.clone(),
            hbone_client.clone(),
            gateway_ports.clone(),
            security.clone(),
        );
        http_proxy(inner, h2c)
    };
    // One inner proxy, two front ends: the plain listener and h2 tunnels need h2c detection;
    // HTTP/1.1 tunnels must not be peeked at, since a tunnel cannot peek.
    let proxy = make_proxy(true);
    let proxy_h1 = make_proxy(false);
    let serving = Serving {
        live: &live,
        shutdown: &shutdown_rx,
        tracker: &tracker,
    };
    let http_addr = serving.plain_http(&opts, &proxy).await?;
    let gateway_addrs = serving.gateway(&opts, &proxy, gateway_ports).await?;
    let admin = serving.admin_and_ready(&opts, &security.jwks).await?;
    let mut watchers = vec![config_watcher(&opts, &live, &shutdown_rx)?];
    let hbone_addr = match &certs {
        Some(certs) => {
            let server = Arc::new(HboneServer {
                live: live.clone(),
                certs: certs.clone(),
                registry: tunnels.clone(),
                proxy_h1: proxy_h1.clone(),
                proxy_h2: proxy.clone(),
                tcp: Arc::new(TcpForwarder {
                    hbone: hbone_client.clone(),
                    idle_timeout: DEFAULT_IDLE_TIMEOUT,
                }),
                tls: mesh_tls(certs, &live)?,
                security: security.clone(),
            });
            Some(serving.hbone(&opts, server, certs, &mut watchers).await?)
        }
        None => None,
    };
    admin.state.ready.store(true, Ordering::Release);
    let running = Running {
        http_addr,
        gateway_addrs,
        admin_addr: admin.admin_addr,
        ready_addr: admin.ready_addr,
        hbone_addr,
        live,
        tunnels,
        proxy,
        proxy_h1,
        admin: admin.state,
        shutdown,
        tracker,
        drain_timeout: opts.drain_timeout,
        _watchers: watchers,
    };
    running.log_started();
    Ok(running)
}

/// The watch that reloads the config folder on change.
fn config_watcher(
    opts: &Options,
    live: &Arc<LiveConfig>,
    shutdown: &watch::Receiver<bool>,
) -> Result<notify::RecommendedWatcher, StartError> {
    crate::watch::spawn_watcher(live.clone(), shutdown.clone()).map_err(|source| {
        StartError::Watch {
            dir: opts.config_dir.clone(),
            source,
        }
    })
}

/// The HBONE listener's TLS: the workload certificate, and client certificates of the mesh's
/// trust domain or an alias as the snapshot in force says (read at each handshake, so a
/// reload that changes the aliases applies to the next connection).
fn mesh_tls(
    certs: &Arc<CertStore>,
    live: &Arc<LiveConfig>,
) -> Result<Arc<rustls::ServerConfig>, StartError> {
    let live = live.clone();
    let trusted = Arc::new(move |td: &str| live.snapshot().security.accepts_trust_domain(td));
    Ok(crate::hbone::tls::mesh_server_config(
        certs.clone(),
        trusted,
    )?)
}

/// Reads and compiles the config folder, off the async threads (it parses every file).
async fn load_config(opts: &Options) -> Result<Arc<LiveConfig>, StartError> {
    let dir = opts.config_dir.clone();
    let gateway = opts.gateway.clone();
    let trust_domain = opts.trust_domain.clone();
    let live =
        tokio::task::spawn_blocking(move || LiveConfig::load_in(&dir, gateway, &trust_domain))
            .await
            .map_err(|e| {
                StartError::Config(ConfigError::Invalid {
                    dir: opts.config_dir.clone(),
                    lines: vec![format!("config load task failed: {e}")],
                })
            })??;
    Ok(live)
}

/// The waypoint's workload certificate, from `--cert-dir` or issued (and kept renewed) by the
/// Istio CA; none without either, which turns HBONE off.
async fn load_identity(
    opts: &Options,
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<Arc<CertStore>>, StartError> {
    match (&opts.cert_dir, &opts.ca) {
        (Some(dir), _) => {
            let dir = dir.clone();
            let cert = tokio::task::spawn_blocking(move || WorkloadCert::load_dir(&dir))
                .await
                .map_err(|e| CertError::Invalid {
                    what: "certificate load task".into(),
                    reason: e.to_string(),
                })??;
            tracing::info!(identity = %cert.identity, "workload certificate loaded");
            Ok(Some(CertStore::new(cert)?))
        }
        (None, Some(ca)) => Ok(Some(identity_from_ca(ca, shutdown).await?)),
        (None, None) => {
            tracing::warn!(
                "no --cert-dir or --ca-address: HBONE is off (no listener on 15008, ambient endpoints are dialled in plain TCP)"
            );
            Ok(None)
        }
    }
}

/// A certificate from the Istio CA, renewed in the background until shutdown.
async fn identity_from_ca(
    ca: &crate::identity::ca::CaClientConfig,
    shutdown: &watch::Receiver<bool>,
) -> Result<Arc<CertStore>, StartError> {
    const FROM_CA: &str = "the Istio CA's answer";
    let issued = crate::identity::ca::request_certificate(ca).await?;
    let cert = WorkloadCert::from_pem(
        FROM_CA,
        &issued.chain_pem,
        &issued.key_pem,
        &issued.root_pem,
    )?;
    tracing::info!(identity = %cert.identity, ca = %ca.address, "workload certificate issued");
    let store = CertStore::new(cert)?;
    let renewed = store.clone();
    crate::identity::ca::spawn_renewal(
        ca.clone(),
        Some(issued),
        move |c| {
            let installed = WorkloadCert::from_pem(FROM_CA, &c.chain_pem, &c.key_pem, &c.root_pem)
                .and_then(|cert| renewed.replace(cert));
            match installed {
                Ok(()) => tracing::info!(not_after = ?c.not_after, "workload certificate renewed"),
                Err(e) => {
                    tracing::error!("renewed certificate rejected: {e}; keeping the current one")
                }
            }
        },
        shutdown.clone(),
    );
    Ok(store)
}

/// The pingora HTTP proxy around `inner`; `h2c` turns on HTTP/2 prior-knowledge detection.
fn http_proxy(inner: WaypointProxy, h2c: bool) -> Arc<Proxy> {
    // pingora counts every try, the first included, against max_retries. Retries are decided
    // per route (HTTPRoute `retry`) by the proxy, which refuses every other retry.
    let conf = Arc::new(ServerConf {
        max_retries: resilience::MAX_TRIES,
        ..ServerConf::default()
    });
    let mut proxy = pingora_proxy::http_proxy(&conf, inner);
    let mut server_options = HttpServerOptions::default();
    server_options.h2c = h2c;
    proxy.server_options = Some(server_options);
    Arc::new(proxy)
}

/// What every listener being started shares.
struct Serving<'a> {
    live: &'a Arc<LiveConfig>,
    shutdown: &'a watch::Receiver<bool>,
    tracker: &'a TaskTracker,
}

/// The admin and readiness listeners, and the state they share.
struct AdminListeners {
    state: Arc<AdminState>,
    admin_addr: SocketAddr,
    ready_addr: SocketAddr,
}

impl Serving<'_> {
    /// The plain HTTP listener, when `--http-listen` asks for one.
    async fn plain_http(
        &self,
        opts: &Options,
        proxy: &Arc<Proxy>,
    ) -> Result<Option<SocketAddr>, StartError> {
        let Some(addr) = opts.http_listen else {
            return Ok(None);
        };
        let l = bind(addr, "plain HTTP listener", "http-listen").await?;
        let bound = local_addr(&l, addr);
        self.tracker.spawn(listener::serve_http(
            l,
            proxy.clone(),
            self.shutdown.clone(),
            self.tracker.clone(),
            Some(self.live.clone()),
        ));
        Ok(Some(bound))
    }

    /// The Gateway role's listeners, one per listener port of the snapshot, kept in step with
    /// reloads.
    async fn gateway(
        &self,
        opts: &Options,
        proxy: &Arc<Proxy>,
        ports: Arc<ArcSwap<HashMap<SocketAddr, u16>>>,
    ) -> Result<Vec<(u16, SocketAddr)>, StartError> {
        let gateway = GatewayListeners {
            live: self.live.clone(),
            address: opts.gateway_address,
            offset: opts.gateway_port_offset,
            proxy: proxy.clone(),
            ports,
            tracker: self.tracker.clone(),
        };
        let mut bound = BTreeMap::new();
        for port in self.live.snapshot().listeners.iter().map(|p| p.port) {
            bound.insert(port, gateway.bind(port).await?);
        }
        gateway.publish(&bound);
        let addrs = bound.iter().map(|(port, l)| (*port, l.addr)).collect();
        self.tracker
            .spawn(gateway.reconcile(bound, self.shutdown.clone()));
        Ok(addrs)
    }

    /// The admin and readiness listeners; readiness stays false until [`start`] is done.
    async fn admin_and_ready(
        &self,
        opts: &Options,
        jwks: &Arc<crate::security::jwks::JwksCache>,
    ) -> Result<AdminListeners, StartError> {
        let state = Arc::new(AdminState {
            live: self.live.clone(),
            ready: false.into(),
            jwks: jwks.clone(),
        });
        let admin_addr = self
            .admin_listener(
                &state,
                opts.admin_listen,
                ("admin listener", "admin-listen"),
                admin::admin_routes,
            )
            .await?;
        let ready_addr = self
            .admin_listener(
                &state,
                opts.ready_listen,
                ("readiness listener", "ready-listen"),
                admin::ready_routes,
            )
            .await?;
        Ok(AdminListeners {
            state,
            admin_addr,
            ready_addr,
        })
    }

    /// Binds `addr` (`what` and its flag name the listener in an error) and serves `routes`.
    async fn admin_listener(
        &self,
        state: &Arc<AdminState>,
        addr: SocketAddr,
        (what, flag): (&'static str, &'static str),
        routes: admin::Handler,
    ) -> Result<SocketAddr, StartError> {
        let l = bind(addr, what, flag).await?;
        let bound = local_addr(&l, addr);
        self.tracker.spawn(admin::serve(
            l,
            state.clone(),
            routes,
            self.shutdown.clone(),
        ));
        Ok(bound)
    }

    /// The HBONE listener, and the watch on `--cert-dir` that rotates its certificate.
    async fn hbone(
        &self,
        opts: &Options,
        server: Arc<HboneServer>,
        certs: &Arc<CertStore>,
        watchers: &mut Vec<notify::RecommendedWatcher>,
    ) -> Result<SocketAddr, StartError> {
        let l = bind(opts.hbone_listen, "HBONE listener", "hbone-listen").await?;
        let bound = local_addr(&l, opts.hbone_listen);
        self.tracker.spawn(crate::hbone::server::serve(
            l,
            server,
            self.shutdown.clone(),
            self.tracker.clone(),
        ));
        if let Some(dir) = &opts.cert_dir {
            let watcher =
                crate::watch::spawn_cert_watcher(dir.clone(), certs.clone(), self.shutdown.clone())
                    .map_err(|source| StartError::Watch {
                        dir: dir.clone(),
                        source,
                    })?;
            watchers.push(watcher);
        }
        Ok(bound)
    }
}

impl Running {
    /// The one line that says the waypoint is up, with what it serves and where.
    fn log_started(&self) {
        let snapshot = self.live.snapshot();
        let report = self.live.report();
        let gateway_listen = self
            .gateway_addrs
            .iter()
            .map(|(port, addr)| format!("{port}@{addr}"))
            .collect::<Vec<_>>()
            .join(",");
        let off = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_string(), |a| a.to_string());
        tracing::info!(
            gateway = %snapshot.gateway,
            version = snapshot.version,
            config_load_ms = report.load_ms.round(),
            config_build_ms = report.compile_ms.round(),
            served = snapshot.services.iter().filter(|s| s.binding == crate::snapshot::Binding::Bound).count(),
            http = %off(self.http_addr),
            hbone = %off(self.hbone_addr),
            gateway_listeners = %gateway_listen,
            admin = %self.admin_addr,
            ready = %self.ready_addr,
            "waypoint started"
        );
    }

    /// Graceful drain: report not-ready, stop accepting, let in-flight requests finish
    /// (up to the drain timeout), then return.
    pub async fn shutdown(self) {
        self.admin.ready.store(false, Ordering::Release);
        self.proxy_h1.http_cleanup().await;
        let clean = listener::drain(
            &self.proxy,
            &self.shutdown,
            &self.tracker,
            self.drain_timeout,
        )
        .await;
        if clean {
            tracing::info!("drained");
        } else {
            tracing::warn!(timeout = ?self.drain_timeout, "drain timed out; closing remaining connections");
        }
    }
}
