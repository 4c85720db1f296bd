//! The two proxies a scenario runs against, behind one interface: Envoy configured as istiod
//! would (the reference, which checks the test itself) and the waypoint binary with the YAML.
//! Both log one access record per request; [`Proxy::flags`] reads the response flags from it,
//! keyed by the request's `x-test-id` (Envoy) or path (the waypoint: its probes' paths are
//! their ids).

use crate::support::child::Waypoint;
use crate::support::envoy::Envoy;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::client::Outcome;
use super::istio_envoy::LISTENER;
use super::mesh::Mesh;

/// Which proxy a scenario runs against.
#[derive(Clone, Copy, Debug)]
pub enum Side {
    /// The reference: Envoy as istiod configures it.
    Envoy,
    /// The waypoint under test.
    Waypoint,
}

impl Side {
    /// Starts this side's proxy for `mesh`: the waypoint reads the mesh's objects plus
    /// `istio_yaml` (DestinationRules, VirtualServices, HTTPRoutes); Envoy runs what
    /// `envoy_config` makes of the same.
    pub fn start(
        self,
        mesh: &Mesh,
        istio_yaml: &str,
        envoy_config: impl FnOnce(&Mesh) -> serde_json::Value,
    ) -> Proxy {
        match self {
            Side::Envoy => Proxy::envoy(&envoy_config(mesh)),
            Side::Waypoint => Proxy::waypoint(&format!("{}{istio_yaml}", mesh.yaml())),
        }
    }
}

/// How long a proxy gets to write a finished request's access record; once it missed one,
/// the short wait, so a proxy that does not log (or logs differently) fails fast.
const LOG_PATIENCE: Duration = Duration::from_secs(5);
const LOG_PATIENCE_AFTER_A_MISS: Duration = Duration::from_millis(200);

/// One proxy under test.
pub struct Proxy {
    running: Running,
    /// Cleared once a request was not logged in time.
    patient: AtomicBool,
}

enum Running {
    /// Envoy with a static Istio-shaped bootstrap.
    Envoy(Envoy),
    /// `waypoint run --config DIR --http-listen ADDR`; the folder lives as long as it.
    Waypoint {
        /// The child process.
        waypoint: Waypoint,
        /// Its config folder, removed when the proxy is dropped.
        _config: tempfile::TempDir,
    },
}

impl Proxy {
    /// Envoy running `bootstrap`.
    pub fn envoy(bootstrap: &serde_json::Value) -> Proxy {
        // Envoy's start blocks (it polls the admin API); the backends keep serving meanwhile.
        let envoy = tokio::task::block_in_place(|| Envoy::start(bootstrap, LISTENER));
        Proxy::new(Running::Envoy(envoy))
    }

    /// The waypoint binary reading `yaml` from a fresh config folder, access log on.
    pub fn waypoint(yaml: &str) -> Proxy {
        let dir = tempfile::tempdir().expect("config tempdir");
        std::fs::write(dir.path().join("config.yaml"), yaml).expect("write config");
        let waypoint = tokio::task::block_in_place(|| {
            Waypoint::start(
                dir.path(),
                &["--http-listen", "127.0.0.1:0"],
                "info,access=debug",
            )
        });
        Proxy::new(Running::Waypoint {
            waypoint,
            _config: dir,
        })
    }

    fn new(running: Running) -> Proxy {
        Proxy {
            running,
            patient: AtomicBool::new(true),
        }
    }

    /// Where clients send plain HTTP.
    pub fn addr(&self) -> SocketAddr {
        match &self.running {
            Running::Envoy(envoy) => envoy.listener,
            Running::Waypoint { waypoint, .. } => waypoint.addr("http"),
        }
    }

    /// The response flags of the requests `ids`, in order (`-` for none), once all are logged;
    /// `?` for a request the proxy did not log within a few seconds.
    pub async fn flags(&self, ids: &[&str]) -> Vec<String> {
        let patience = if self.patient.load(Ordering::Relaxed) {
            LOG_PATIENCE
        } else {
            LOG_PATIENCE_AFTER_A_MISS
        };
        let deadline = Instant::now() + patience;
        loop {
            let logged = self.logged_flags();
            let all = ids.iter().all(|id| logged.contains_key(*id));
            if !all && Instant::now() > deadline {
                self.patient.store(false, Ordering::Relaxed);
            }
            if all || Instant::now() > deadline {
                return ids
                    .iter()
                    .map(|id| logged.get(*id).cloned().unwrap_or_else(|| "?".into()))
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The flags of the `outcomes` answered with `status`, in order.
    pub async fn flags_of_status(&self, outcomes: &[Outcome], status: u16) -> Vec<String> {
        let ids: Vec<&str> = outcomes
            .iter()
            .filter(|o| o.status == status)
            .map(|o| o.id.as_str())
            .collect();
        self.flags(&ids).await
    }

    /// The flags of the one request `id`.
    pub async fn flag(&self, id: &str) -> String {
        self.flags(&[id]).await.remove(0)
    }

    /// Every logged request's flags by id.
    fn logged_flags(&self) -> HashMap<String, String> {
        match &self.running {
            Running::Envoy(envoy) => envoy
                .access_log_entries()
                .iter()
                .filter_map(|e| {
                    let id = e["id"].as_str()?.to_owned();
                    Some((id, e["flags"].as_str().unwrap_or("?").to_owned()))
                })
                .collect(),
            Running::Waypoint { waypoint, .. } => waypoint
                .log_lines()
                .iter()
                .filter_map(|line| waypoint_access_record(line))
                .collect(),
        }
    }
}

/// `(path, flag)` of one waypoint access log line (`... access: method=GET path=/x status=503
/// ... flag="UO" ...`); `-` when the line has no flag.
fn waypoint_access_record(line: &str) -> Option<(String, String)> {
    let (_, fields) = line.split_once(" access: ")?;
    let field = |name: &str| {
        fields
            .split(' ')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_owned())
    };
    Some((field("path")?, field("flag").unwrap_or_else(|| "-".into())))
}
