//! The `waypoint demo` command: the Kiali Travel Demo on loopback. It reads the example
//! folder, starts a demo backend on every Pod address in it, starts a real waypoint on an
//! ephemeral port, and plays the travel portals' traffic through it, printing live figures.
pub mod backends;
pub mod hbone_endpoint;
pub mod traffic;

use crate::config::{load_dir, Document, Resource};
use anyhow::Context;
use backends::DemoBackendSpec;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use traffic::{Flow, TrafficPlan};

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// The topology to run (a config folder whose Pods carry loopback podIPs).
    #[arg(long, value_name = "DIR", default_value_os_t = default_config())]
    pub config: PathBuf,
    /// How long to send traffic, in seconds (Ctrl-C stops earlier).
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0)]
    pub duration: f64,
    /// Total requests per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Keep-alive connections the traffic generator uses.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
}

/// The example shipped in the repository, found from the source tree so `cargo run` works
/// from any directory.
fn default_config() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/travel");
    dir.canonicalize().unwrap_or(dir)
}

/// What the portals and the control dashboard ask of travel-agency: (service, paths, weight).
const TRAVEL_FLOWS: &[(&str, &[&str], u32)] = &[
    (
        "travels",
        &[
            "/travels",
            "/travels/paris",
            "/travels/rome",
            "/travels/madrid",
        ],
        4,
    ),
    (
        "flights",
        &["/flights/paris", "/flights/rome", "/flights/madrid"],
        2,
    ),
    ("hotels", &["/hotels/paris", "/hotels/rome"], 2),
    ("cars", &["/cars/paris", "/cars/rome"], 1),
    ("insurances", &["/insurances/paris", "/insurances/rome"], 1),
    ("discounts", &["/discounts/alice", "/discounts/bob"], 1),
];

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let duration = Duration::try_from_secs_f64(args.duration)
        .context("--duration must be a non-negative number of seconds")?;
    let dir = args.config.clone();
    let loaded = tokio::task::spawn_blocking(move || load_dir(&dir))
        .await?
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let specs = backend_specs(&loaded.documents);
    anyhow::ensure!(
        !specs.is_empty(),
        "{} has no Pod with a loopback status.podIP and a containerPort to start a demo backend on",
        args.config.display()
    );
    let backends = backends::spawn_backends(specs.clone()).await?;

    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let running = crate::app::start(crate::app::Options {
        http_listen: Some(any),
        drain_timeout: Duration::from_secs(2),
        ..crate::app::Options::local(args.config.clone())
    })
    .await?;
    let http = running
        .http_addr
        .context("the demo waypoint has no HTTP listener")?;
    let snapshot = running.live.snapshot();
    let flows: Vec<Flow> = TRAVEL_FLOWS
        .iter()
        .map(|(service, paths, weight)| Flow {
            label: format!("{service}.{}", snapshot.gateway.namespace),
            host: format!("{service}.{}", snapshot.gateway.namespace),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            weight: *weight,
        })
        .filter(|f| snapshot.resolve_authority(&f.host).is_ok())
        .collect();
    anyhow::ensure!(
        !flows.is_empty(),
        "no travel-agency service is served by waypoint {} in {}",
        snapshot.gateway,
        args.config.display()
    );
    println!(
        "waypoint demo: {} backends from {}, waypoint {} serving on http://{http} (admin http://{}/config_dump)",
        specs.len(),
        args.config.display(),
        snapshot.gateway,
        running.admin_addr
    );
    println!(
        "try: curl -H 'Host: travels.{}' http://{http}/travels",
        snapshot.gateway.namespace
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(true);
        }
    });
    let plan = TrafficPlan {
        target: http,
        flows,
        rate_per_sec: args.rate,
        connections: args.connections,
        duration,
    };
    let mut stdout = std::io::stdout();
    let report = traffic::run(plan, stop_rx, &mut stdout).await;
    running.shutdown().await;
    backends.shutdown();
    let report = report?;
    anyhow::ensure!(report.total() > 0, "the demo sent no request");
    anyhow::ensure!(
        report.errors() == 0,
        "{} of {} requests failed (5xx or no response)",
        report.errors(),
        report.total()
    );
    Ok(())
}

/// A demo backend for every Pod with a loopback IP: it plays the service named by the pod's
/// `app` label, at the version of its `version` label.
pub fn backend_specs(documents: &[Document]) -> Vec<DemoBackendSpec> {
    let mut specs = Vec::new();
    for d in documents {
        let Resource::Pod(pod) = &d.resource else {
            continue;
        };
        let Some(ip) = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .filter(IpAddr::is_loopback)
        else {
            continue;
        };
        let Some(port) = pod
            .spec
            .as_ref()
            .and_then(|s| {
                s.containers
                    .iter()
                    .flat_map(|c| c.ports.iter().flatten())
                    .next()
            })
            .and_then(|p| u16::try_from(p.container_port).ok())
        else {
            continue;
        };
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        specs.push(DemoBackendSpec {
            addr: SocketAddr::new(ip, port),
            namespace: d.object.namespace.clone(),
            service: labels
                .get("app")
                .cloned()
                .unwrap_or_else(|| d.object.name.clone()),
            pod: d.object.name.clone(),
            version: labels
                .get("version")
                .cloned()
                .unwrap_or_else(|| "v1".into()),
        });
    }
    specs
}
