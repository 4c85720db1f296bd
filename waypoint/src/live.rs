//! The configuration in force: the current snapshot, published with `ArcSwap`, and the record
//! of the last reload. A reload that finds any error keeps the last good snapshot.

use crate::config::{load_dir, Generations};
use crate::snapshot::{BuildOptions, GatewayRef, Report, Snapshot};
use arc_swap::ArcSwap;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why a folder could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The folder itself could not be read.
    #[error("cannot read config folder {}: {source}", dir.display())]
    Folder {
        /// The folder.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The folder has errors; one line each.
    #[error("config folder {} has {} error(s):\n  {}", dir.display(), lines.len(), lines.join("\n  "))]
    Invalid {
        /// The folder.
        dir: PathBuf,
        /// Each error, naming file, document, object and field.
        lines: Vec<String>,
    },
}

/// Reads `dir` and builds a snapshot with its report. The snapshot is `None` when no Gateway
/// could be selected.
pub fn build_from_dir(
    dir: &Path,
    gateway: Option<&GatewayRef>,
    version: u64,
) -> Result<(Option<Snapshot>, Report), ConfigError> {
    build_from_dir_for_class(
        dir,
        gateway,
        version,
        crate::snapshot::GATEWAY_CLASS,
        crate::snapshot::CLUSTER_DOMAIN,
    )
}

/// [`build_from_dir`], reporting the status of the Gateways of `gateway_class`, in
/// `trust_domain` unless the folder's MeshConfig sets one.
pub fn build_from_dir_for_class(
    dir: &Path,
    gateway: Option<&GatewayRef>,
    version: u64,
    gateway_class: &str,
    trust_domain: &str,
) -> Result<(Option<Snapshot>, Report), ConfigError> {
    let mut generations = Generations::default();
    build_counting_generations(
        dir,
        gateway,
        version,
        (gateway_class, trust_domain),
        &mut generations,
    )
}

/// Reads `dir` and builds, giving objects the generations `generations` counts across loads.
/// `class_and_trust`: the GatewayClass reported on, and the trust domain unless the MeshConfig
/// sets one.
fn build_counting_generations(
    dir: &Path,
    gateway: Option<&GatewayRef>,
    version: u64,
    (gateway_class, trust_domain): (&str, &str),
    generations: &mut Generations,
) -> Result<(Option<Snapshot>, Report), ConfigError> {
    let started = std::time::Instant::now();
    let mut loaded = load_dir(dir).map_err(|source| ConfigError::Folder {
        dir: dir.to_path_buf(),
        source,
    })?;
    generations.stamp(&mut loaded.documents);
    let parsed = std::time::Instant::now();
    let opts = BuildOptions {
        gateway_class: gateway_class.to_string(),
        version,
        gateway: gateway.cloned(),
        trust_domain: trust_domain.to_string(),
    };
    let (snapshot, mut report) = Snapshot::build(&loaded.documents, loaded.errors, &opts);
    report.load_ms = (parsed - started).as_secs_f64() * 1000.0;
    report.compile_ms = parsed.elapsed().as_secs_f64() * 1000.0;
    Ok((snapshot, report))
}

/// What the last reload attempt did, for `/config_dump` and tests.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReloadRecord {
    /// Reloads tried.
    pub attempts: u64,
    /// Reloads refused for errors.
    pub rejected: u64,
    /// Errors of the last attempt; empty when it was applied.
    pub last_errors: Vec<String>,
}

/// The configuration in force and how it got there; shared by every listener.
pub struct LiveConfig {
    dir: PathBuf,
    gateway: Option<GatewayRef>,
    /// `--trust-domain`, used when the MeshConfig sets none.
    trust_domain: String,
    snapshot: ArcSwap<Snapshot>,
    /// The report of the snapshot in force.
    report: ArcSwap<Report>,
    record: ArcSwap<ReloadRecord>,
    next_version: AtomicU64,
    /// Every object's generation, counted across reloads for the status it reports.
    generations: Mutex<Generations>,
    /// The version in force, for whoever must act on a change (the Gateway role's listeners).
    applied: tokio::sync::watch::Sender<u64>,
}

/// Whether a reload replaced the snapshot.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new snapshot is in force.
    Applied {
        /// The version now in force.
        version: u64,
    },
    /// The folder has errors; the last good snapshot stays.
    Rejected {
        /// How many errors the folder has.
        errors: usize,
    },
}

impl LiveConfig {
    /// Loads the folder for the first time; any error is fatal here, since there is no earlier
    /// configuration to fall back on.
    pub fn load(dir: &Path, gateway: Option<GatewayRef>) -> Result<Arc<Self>, ConfigError> {
        Self::load_in(dir, gateway, crate::snapshot::CLUSTER_DOMAIN)
    }

    /// [`LiveConfig::load`] with `trust_domain` (`--trust-domain`) for when the folder's
    /// MeshConfig sets none.
    pub fn load_in(
        dir: &Path,
        gateway: Option<GatewayRef>,
        trust_domain: &str,
    ) -> Result<Arc<Self>, ConfigError> {
        let mut generations = Generations::default();
        let (snapshot, report) = build_counting_generations(
            dir,
            gateway.as_ref(),
            1,
            (crate::snapshot::GATEWAY_CLASS, trust_domain),
            &mut generations,
        )?;
        let snapshot = match snapshot {
            Some(s) if report.blocking_error_count() == 0 => s,
            _ => {
                return Err(ConfigError::Invalid {
                    dir: dir.to_path_buf(),
                    lines: report.error_lines(),
                })
            }
        };
        log_report(&report);
        Ok(Arc::new(LiveConfig {
            dir: dir.to_path_buf(),
            gateway,
            trust_domain: trust_domain.to_string(),
            snapshot: ArcSwap::from_pointee(snapshot),
            report: ArcSwap::from_pointee(report),
            record: ArcSwap::from_pointee(ReloadRecord::default()),
            next_version: AtomicU64::new(2),
            generations: Mutex::new(generations),
            applied: tokio::sync::watch::Sender::new(1),
        }))
    }

    /// The folder the configuration is read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The snapshot a new request should use for its whole life.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The report of the snapshot in force.
    pub fn report(&self) -> Arc<Report> {
        self.report.load_full()
    }

    /// Wakes on every applied reload with the new version.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// What the last reload attempt did.
    pub fn reload_record(&self) -> Arc<ReloadRecord> {
        self.record.load_full()
    }

    /// Re-reads the folder; publishes the new snapshot only if it has no error.
    pub fn reload(&self) -> ReloadOutcome {
        let version = self.next_version.fetch_add(1, Ordering::Relaxed);
        let built = {
            // A poisoned lock only means an earlier reload panicked; the counts are still good.
            let mut generations = self
                .generations
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            build_counting_generations(
                &self.dir,
                self.gateway.as_ref(),
                version,
                (crate::snapshot::GATEWAY_CLASS, &self.trust_domain),
                &mut generations,
            )
        };
        let mut record = (*self.record.load_full()).clone();
        record.attempts += 1;
        let outcome = match built {
            Ok((Some(snapshot), report)) if report.blocking_error_count() == 0 => {
                log_report(&report);
                tracing::info!(
                    version,
                    services = snapshot.services.len(),
                    "configuration reloaded"
                );
                self.snapshot.store(Arc::new(snapshot));
                self.report.store(Arc::new(report));
                record.last_errors.clear();
                self.applied.send_replace(version);
                ReloadOutcome::Applied { version }
            }
            Ok((_, report)) => {
                let lines = report.error_lines();
                for line in &lines {
                    tracing::error!("config rejected: {line}");
                }
                tracing::error!(
                    errors = lines.len(),
                    kept_version = self.snapshot.load().version,
                    "configuration change rejected; keeping the last good configuration"
                );
                record.rejected += 1;
                record.last_errors = lines;
                ReloadOutcome::Rejected {
                    errors: record.last_errors.len(),
                }
            }
            Err(e) => {
                tracing::error!("config rejected: {e}; keeping the last good configuration");
                record.rejected += 1;
                record.last_errors = vec![e.to_string()];
                ReloadOutcome::Rejected { errors: 1 }
            }
        };
        self.record.store(Arc::new(record));
        outcome
    }
}

/// Warnings and not-yet-supported kinds go to the log on every applied load, so a user sees
/// what the waypoint will not act on.
fn log_report(report: &Report) {
    for s in report.unsupported() {
        if let crate::snapshot::State::Ignored(why) = &s.state {
            tracing::warn!("{}: {}: {why}", s.origin, s.object);
        }
    }
    for w in report.warning_lines() {
        tracing::warn!("{w}");
    }
    // Route errors Gateway API gives a runtime meaning are applied, not refused: say so.
    for e in report.error_lines() {
        tracing::warn!("applied with an error (its traffic gets 500 or no route): {e}");
    }
    // Security policies in error are in force fail closed (issue 12): as loud as an error.
    for e in report.fail_closed_lines() {
        tracing::error!("security policy in force fail closed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint, namespace: shop}\nspec:\n  gatewayClassName: istio-waypoint\n  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n";

    #[test]
    fn a_bad_reload_keeps_the_last_good_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("mesh.yaml"), GOOD).expect("write");
        let live = LiveConfig::load(dir.path(), None).expect("loads");
        assert_eq!(live.snapshot().version, 1);

        std::fs::write(dir.path().join("bad.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: shop}\nspec: {ports: [{port: eighty}]}\n")
            .expect("write");
        assert_eq!(live.reload(), ReloadOutcome::Rejected { errors: 1 });
        assert_eq!(live.snapshot().version, 1, "the last good snapshot stays");
        let record = live.reload_record();
        assert_eq!((record.attempts, record.rejected), (1, 1));
        assert!(
            record.last_errors[0].contains("spec.ports[0].port"),
            "{:?}",
            record.last_errors
        );

        std::fs::remove_file(dir.path().join("bad.yaml")).expect("remove");
        assert_eq!(live.reload(), ReloadOutcome::Applied { version: 3 });
        assert_eq!(live.snapshot().version, 3);
        assert!(live.reload_record().last_errors.is_empty());
    }

    #[test]
    fn status_reports_the_generation_reloads_counted() {
        let edge = |port: u16| {
            format!("---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: edge, namespace: shop}}\nspec:\n  gatewayClassName: waypoint\n  listeners: [{{name: http, port: {port}, protocol: HTTP}}]\n")
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |port| {
            std::fs::write(
                dir.path().join("mesh.yaml"),
                format!("{GOOD}{}", edge(port)),
            )
            .expect("write")
        };
        let generations = |live: &LiveConfig| -> Vec<(i64, i64)> {
            let json = live.report().gateway_status.to_k8s_json();
            let items = json["items"].as_array().cloned().unwrap_or_default();
            items
                .iter()
                .filter(|i| i["metadata"]["name"] == "edge")
                .map(|i| {
                    let observed = &i["status"]["conditions"][0]["observedGeneration"];
                    (
                        i["metadata"]["generation"].as_i64().unwrap_or(0),
                        observed.as_i64().unwrap_or(0),
                    )
                })
                .collect()
        };
        write(8080);
        let live = LiveConfig::load(dir.path(), None).expect("loads");
        assert_eq!(generations(&live), [(1, 1)]);
        assert!(matches!(live.reload(), ReloadOutcome::Applied { .. }));
        assert_eq!(generations(&live), [(1, 1)], "an unchanged reload keeps 1");
        write(8081);
        assert!(matches!(live.reload(), ReloadOutcome::Applied { .. }));
        assert_eq!(
            generations(&live),
            [(2, 2)],
            "a changed spec is generation 2"
        );
    }

    #[test]
    fn a_first_load_with_errors_is_refused_with_every_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("mesh.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        )
        .expect("write");
        let err = LiveConfig::load(dir.path(), None)
            .err()
            .expect("no gateway");
        assert!(
            err.to_string()
                .contains("no Gateway of class istio-waypoint"),
            "{err}"
        );
    }
}
