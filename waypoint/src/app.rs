//! Starting and stopping a whole waypoint: config, watcher, proxy listeners, admin, readiness.
//! `waypoint run`, the demo and the integration tests all go through [`start`].

use crate::admin::{self, AdminState};
use crate::listener::{self, Proxy};
use crate::live::{ConfigError, LiveConfig};
use crate::proxy::WaypointProxy;
use crate::snapshot::GatewayRef;
use pingora_core::apps::HttpServerOptions;
use pingora_core::server::configuration::ServerConf;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

#[derive(Clone, Debug)]
pub struct Options {
    pub config_dir: PathBuf,
    pub gateway: Option<GatewayRef>,
    pub http_listen: Option<SocketAddr>,
    pub admin_listen: SocketAddr,
    pub ready_listen: SocketAddr,
    pub drain_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr} ({what}): {source}; pick another address with --{flag}")]
    Listen {
        what: &'static str,
        flag: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch config folder {}: {source}", dir.display())]
    Watch {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
}

/// A running waypoint. Dropping it does not stop it; call [`Running::shutdown`].
pub struct Running {
    pub http_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub ready_addr: SocketAddr,
    pub live: Arc<LiveConfig>,
    proxy: Arc<Proxy>,
    admin: Arc<AdminState>,
    shutdown: watch::Sender<bool>,
    tracker: TaskTracker,
    drain_timeout: Duration,
    _watcher: notify::RecommendedWatcher,
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
    let dir = opts.config_dir.clone();
    let gateway = opts.gateway.clone();
    let live = tokio::task::spawn_blocking(move || LiveConfig::load(&dir, gateway))
        .await
        .map_err(|e| {
            StartError::Config(ConfigError::Invalid {
                dir: opts.config_dir.clone(),
                lines: vec![format!("config load task failed: {e}")],
            })
        })??;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let tracker = TaskTracker::new();

    // pingora counts every try, the first included, against max_retries. Retries are decided
    // per route later; until then each request is tried once.
    let conf = ServerConf {
        max_retries: 1,
        ..ServerConf::default()
    };
    let mut proxy = pingora_proxy::http_proxy(&Arc::new(conf), WaypointProxy::new(live.clone()));
    let mut server_options = HttpServerOptions::default();
    server_options.h2c = true;
    proxy.server_options = Some(server_options);
    let proxy = Arc::new(proxy);

    let http_addr = match opts.http_listen {
        Some(addr) => {
            let l = bind(addr, "plain HTTP listener", "http-listen").await?;
            let bound = local_addr(&l, addr);
            tokio::spawn(listener::serve_http(
                l,
                proxy.clone(),
                shutdown_rx.clone(),
                tracker.clone(),
            ));
            Some(bound)
        }
        None => None,
    };
    let admin_state = Arc::new(AdminState {
        live: live.clone(),
        ready: false.into(),
    });
    let admin_l = bind(opts.admin_listen, "admin listener", "admin-listen").await?;
    let admin_addr = local_addr(&admin_l, opts.admin_listen);
    tokio::spawn(admin::serve(
        admin_l,
        admin_state.clone(),
        admin::admin_routes,
        shutdown_rx.clone(),
    ));
    let ready_l = bind(opts.ready_listen, "readiness listener", "ready-listen").await?;
    let ready_addr = local_addr(&ready_l, opts.ready_listen);
    tokio::spawn(admin::serve(
        ready_l,
        admin_state.clone(),
        admin::ready_routes,
        shutdown_rx.clone(),
    ));

    let watcher =
        crate::watch::spawn_watcher(live.clone(), shutdown_rx.clone()).map_err(|source| {
            StartError::Watch {
                dir: opts.config_dir.clone(),
                source,
            }
        })?;
    admin_state.ready.store(true, Ordering::Release);
    let snapshot = live.snapshot();
    tracing::info!(
        gateway = %snapshot.gateway,
        version = snapshot.version,
        served = snapshot.services.iter().filter(|s| s.binding == crate::snapshot::Binding::Bound).count(),
        http = %http_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
        admin = %admin_addr,
        ready = %ready_addr,
        "waypoint started"
    );
    Ok(Running {
        http_addr,
        admin_addr,
        ready_addr,
        live,
        proxy,
        admin: admin_state,
        shutdown,
        tracker,
        drain_timeout: opts.drain_timeout,
        _watcher: watcher,
    })
}

impl Running {
    /// Graceful drain: report not-ready, stop accepting, let in-flight requests finish
    /// (up to the drain timeout), then return.
    pub async fn shutdown(self) {
        self.admin.ready.store(false, Ordering::Release);
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
