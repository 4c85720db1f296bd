//! The Gateway role's listener ports: bound at start, then kept in step with reloads.

use super::{bind, local_addr, StartError};
use crate::listener::{self, Proxy};
use crate::live::LiveConfig;
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

/// One bound Gateway listener port and the switch that stops its accept loop.
pub(super) struct BoundListener {
    pub(super) addr: SocketAddr,
    pub(super) stop: watch::Sender<bool>,
}

/// The Gateway role's listener ports, kept in step with the configuration: a reload that adds
/// a listener port binds it, one that removes a port stops accepting there (connections in
/// flight finish).
pub(super) struct GatewayListeners {
    pub(super) live: Arc<LiveConfig>,
    pub(super) address: std::net::IpAddr,
    pub(super) offset: u16,
    pub(super) proxy: Arc<Proxy>,
    pub(super) ports: Arc<ArcSwap<HashMap<SocketAddr, u16>>>,
    pub(super) tracker: TaskTracker,
}

impl GatewayListeners {
    /// Binds listener `port` (plus the offset) and starts its accept loop.
    pub(super) async fn bind(&self, port: u16) -> Result<BoundListener, StartError> {
        let Some(bind_port) = port.checked_add(self.offset) else {
            return Err(StartError::PortOffset {
                port,
                offset: self.offset,
            });
        };
        let addr = SocketAddr::new(self.address, bind_port);
        let l = bind(addr, "Gateway listener", "gateway-address").await?;
        let addr = local_addr(&l, addr);
        let (stop, stopped) = watch::channel(false);
        self.tracker.spawn(listener::serve_http(
            l,
            self.proxy.clone(),
            stopped,
            self.tracker.clone(),
            None,
        ));
        Ok(BoundListener { addr, stop })
    }

    /// Tells the proxy which listener port each bound address serves.
    pub(super) fn publish(&self, bound: &BTreeMap<u16, BoundListener>) {
        self.ports
            .store(Arc::new(bound.iter().map(|(p, l)| (l.addr, *p)).collect()));
    }

    /// Until shutdown, binds the ports each reload adds and stops the ones it removes.
    pub(super) async fn reconcile(
        self,
        mut bound: BTreeMap<u16, BoundListener>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut changes = self.live.subscribe();
        loop {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                _ = listener::stopped(&mut shutdown) => break,
            }
            let wanted: Vec<u16> = self
                .live
                .snapshot()
                .listeners
                .iter()
                .map(|p| p.port)
                .collect();
            let added: Vec<u16> = wanted
                .iter()
                .copied()
                .filter(|p| !bound.contains_key(p))
                .collect();
            for port in &added {
                match self.bind(*port).await {
                    Ok(l) => {
                        tracing::info!(port, addr = %l.addr, "Gateway listener added");
                        bound.insert(*port, l);
                    }
                    Err(e) => tracing::error!("Gateway listener port {port} not served: {e}"),
                }
            }
            bound.retain(|port, l| {
                let keep = wanted.contains(port);
                if !keep {
                    tracing::info!(port, addr = %l.addr, "Gateway listener removed");
                    let _ = l.stop.send(true);
                }
                keep
            });
            self.publish(&bound);
        }
        // The drain stops every listener, including the ones added since start.
        for l in bound.values() {
            let _ = l.stop.send(true);
        }
    }
}
