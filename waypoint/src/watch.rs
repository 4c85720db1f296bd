//! Watches the config folder and reloads on change, so an edit takes effect within a second.

use crate::identity::{CertStore, WorkloadCert};
use crate::live::LiveConfig;
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Editors write a file in several steps (truncate, write, rename); waiting this long after
/// the last event lets one reload see the finished file.
const SETTLE: Duration = Duration::from_millis(100);

/// Starts watching `live`'s folder. The returned watcher must be kept alive.
pub fn spawn_watcher(
    live: Arc<LiveConfig>,
    mut shutdown: watch::Receiver<bool>,
) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(e) if matches!(e.kind, EventKind::Access(_)) => {}
            Ok(_) => {
                let _ = tx.send(());
            }
            Err(e) => tracing::warn!("config folder watch error: {e}"),
        })?;
    watcher.watch(live.dir(), RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                got = rx.recv() => if got.is_none() { break },
                _ = crate::listener::stopped(&mut shutdown) => break,
            }
            // Coalesce the burst of events one save produces.
            loop {
                tokio::time::sleep(SETTLE).await;
                if rx.try_recv().is_err() {
                    break;
                }
                while rx.try_recv().is_ok() {}
            }
            let live = live.clone();
            // Reading and compiling the folder is blocking work; keep it off the proxy's threads.
            if let Err(e) = tokio::task::spawn_blocking(move || live.reload()).await {
                tracing::error!("config reload task failed: {e}");
            }
        }
    });
    Ok(watcher)
}

/// Watches the certificate folder; a complete, valid set of files replaces the certificate
/// for new handshakes. A half-written or invalid set is logged and the current one kept.
pub fn spawn_cert_watcher(
    dir: PathBuf,
    store: Arc<CertStore>,
    mut shutdown: watch::Receiver<bool>,
) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if matches!(&event, Ok(e) if !matches!(e.kind, EventKind::Access(_))) {
            let _ = tx.send(());
        }
    })?;
    // Kubernetes updates mounted secrets by swapping a symlinked folder, so watch the folder.
    watcher.watch(&dir, RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                got = rx.recv() => if got.is_none() { break },
                _ = crate::listener::stopped(&mut shutdown) => break,
            }
            loop {
                tokio::time::sleep(SETTLE).await;
                if rx.try_recv().is_err() {
                    break;
                }
                while rx.try_recv().is_ok() {}
            }
            let d = dir.clone();
            match tokio::task::spawn_blocking(move || WorkloadCert::load_dir(&d)).await {
                Ok(Ok(cert)) => {
                    let not_after = cert.not_after;
                    match store.replace(cert) {
                        Ok(()) => tracing::info!(?not_after, "workload certificate reloaded"),
                        Err(e) => tracing::error!(
                            "certificate reload rejected: {e}; keeping the current one"
                        ),
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!("certificate reload failed: {e}; keeping the current one")
                }
                Err(e) => tracing::error!("certificate reload task failed: {e}"),
            }
        }
    });
    Ok(watcher)
}
