//! Folder watches: the config folder (an edit takes effect within a second) and the
//! certificate folder (a rotation reaches new handshakes). Both debounce a burst of file
//! events into one reload, done off the proxy's threads.

use crate::identity::{CertStore, WorkloadCert};
use crate::live::LiveConfig;
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Editors write a file in several steps (truncate, write, rename) within a few milliseconds;
/// waiting this long after the last event lets one reload see the finished file. A single save
/// takes two settles (its own events arrive during the first), so this bounds how fast a change
/// propagates: keep it well under the 100 ms a route change should take end to end.
const SETTLE: Duration = Duration::from_millis(25);

/// Runs `reload` (a blocking function) once per settled burst of changes under `dir`, until
/// `shutdown` turns true. The returned watcher must be kept alive.
fn watch_folder(
    dir: &Path,
    mut shutdown: watch::Receiver<bool>,
    reload: impl Fn() + Send + Sync + 'static,
) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(e) if matches!(e.kind, EventKind::Access(_)) => {}
            Ok(_) => {
                let _ = tx.send(());
            }
            Err(e) => tracing::warn!("folder watch error: {e}"),
        })?;
    // Recursive: config lives in subfolders too, and Kubernetes updates mounted secrets by
    // swapping a symlinked folder.
    watcher.watch(dir, RecursiveMode::Recursive)?;
    let reload = Arc::new(reload);
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
            let reload = reload.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || reload()).await {
                tracing::error!("reload task failed: {e}");
            }
        }
    });
    Ok(watcher)
}

/// Reloads the configuration when its folder changes.
pub fn spawn_watcher(
    live: Arc<LiveConfig>,
    shutdown: watch::Receiver<bool>,
) -> notify::Result<notify::RecommendedWatcher> {
    let dir = live.dir().to_path_buf();
    watch_folder(&dir, shutdown, move || {
        live.reload();
    })
}

/// Replaces the certificate when a complete, valid set of files appears; a half-written or
/// invalid set is logged and the current certificate kept.
pub fn spawn_cert_watcher(
    dir: PathBuf,
    store: Arc<CertStore>,
    shutdown: watch::Receiver<bool>,
) -> notify::Result<notify::RecommendedWatcher> {
    let folder = dir.clone();
    watch_folder(&folder, shutdown, move || {
        match WorkloadCert::load_dir(&dir) {
            Ok(cert) => {
                let not_after = cert.not_after;
                match store.replace(cert) {
                    Ok(()) => tracing::info!(?not_after, "workload certificate reloaded"),
                    Err(e) => {
                        tracing::error!("certificate reload rejected: {e}; keeping the current one")
                    }
                }
            }
            Err(e) => tracing::warn!("certificate reload failed: {e}; keeping the current one"),
        }
    })
}
