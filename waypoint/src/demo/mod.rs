//! The `waypoint demo` command: the Kiali Travel Demo on loopback. It reads the example
//! folder, starts a demo backend on every Pod address in it, starts a real waypoint on
//! ephemeral ports, and plays the travel portals' traffic through it, printing live figures.
//!
//! By default the traffic runs over HBONE end to end, as in an ambient mesh: the client (a
//! travel portal's identity) tunnels to the waypoint, and the waypoint tunnels to an HBONE
//! endpoint standing where ztunnel would, in front of each ambient pod, all with certificates
//! from a CA generated for the run. `--plain` sends plain HTTP to the waypoint instead.
pub mod backends;
pub mod ca;
pub mod hbone_endpoint;
pub mod misbehaviour;
pub mod report;
pub mod security;
pub mod served;
pub mod traffic;
pub mod waypoint_dialer;

use crate::config::{load_dir, Document, Resource};
use crate::identity::CertStore;
use crate::snapshot::{BuildOptions, GatewayRef, Snapshot, WorkloadIdentity};
use anyhow::Context;
use authz::Identity;
use backends::DemoBackendSpec;
use hbone_endpoint::HboneEndpoint;
use misbehaviour::Misbehaviour;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use traffic::{Flow, TrafficPlan, Transport};
use waypoint_dialer::WaypointDialer;

/// The options of `waypoint demo`.
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
    /// Concurrent clients the traffic generator plays, each with its own keep-alive
    /// connections (over HBONE, one tunnel per destination service).
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Send plain HTTP to the waypoint's HTTP listener and let it reach the pods over plain
    /// TCP, with no HBONE and no certificates anywhere: the old way, for comparison.
    #[arg(long)]
    pub plain: bool,
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

/// Runs `waypoint demo`: starts everything, plays the traffic, prints the tables, and fails
/// unless every request got a 2xx ([`report::Report::verdict`]).
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let duration = Duration::try_from_secs_f64(args.duration)
        .context("--duration must be a non-negative number of seconds")?;
    let mode = if args.plain { Mode::Plain } else { Mode::Hbone };
    let demo = Demo::start(&args.config, mode, POD_HBONE_PORT).await?;
    let http = demo.http_addr;
    println!(
        "waypoint demo: {} backends from {}, waypoint {} serving on http://{http}{} (admin http://{}/config_dump)",
        demo.backends.addrs().len(),
        args.config.display(),
        demo.gateway,
        demo.waypoint
            .hbone_addr
            .map(|a| format!(" and HBONE {a}"))
            .unwrap_or_default(),
        demo.waypoint.admin_addr
    );
    println!(
        "try: curl -H 'Host: travels.{}' http://{http}/travels",
        demo.gateway.namespace
    );
    println!("{}", demo.path());

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(true);
        }
    });
    let plan = TrafficPlan {
        transport: demo.transport(),
        flows: demo.flows.clone(),
        rate_per_sec: args.rate,
        connections: args.connections,
        duration,
        served: Some(demo.backends.served()),
    };
    let mut stdout = std::io::stdout();
    let report = traffic::run(plan, stop_rx, &mut stdout).await;
    demo.shutdown().await;
    report?.verdict()?;
    Ok(())
}

/// Where ambient pods take HBONE, as ztunnel does on every node.
const POD_HBONE_PORT: u16 = 15008;

/// The demo client's workload: a travel portal, as the portals call travel-agency in the
/// real demo.
const CLIENT_NAMESPACE: &str = "travel-portal";
const CLIENT_SERVICE_ACCOUNT: &str = "voyages";

/// How the demo's traffic travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Client → HBONE → waypoint → HBONE → an HBONE endpoint in front of each ambient pod,
    /// with every identity issued by a CA generated for the run.
    Hbone,
    /// Client → the waypoint's plain HTTP listener → pods over plain TCP; no identities.
    Plain,
}

/// The mesh half of an HBONE demo: the CA's files, the client's dialer and the pods' HBONE
/// endpoints.
struct Mesh {
    /// Holds the waypoint's certificate files; removed when the demo ends.
    cert_dir: ca::TempDir,
    dialer: Arc<WaypointDialer>,
    endpoints: Vec<HboneEndpoint>,
    /// The port the endpoints listen on, on their pods' addresses.
    pod_port: u16,
}

/// Everything `waypoint demo` runs besides the traffic: demo backends, the waypoint and, over
/// HBONE, the mesh around them.
pub struct Demo {
    /// The waypoint's Gateway.
    pub gateway: GatewayRef,
    /// The waypoint's plain HTTP listener (there in both modes, for curl).
    pub http_addr: SocketAddr,
    /// One flow per travel-agency service the waypoint serves.
    pub flows: Vec<Flow>,
    /// The waypoint, in-process.
    pub waypoint: crate::app::Running,
    /// The services' pods.
    pub backends: backends::DemoBackends,
    mesh: Option<Mesh>,
}

/// The demo's CA and the folder with the waypoint's certificate files, issued for `gateway`.
fn demo_pki(gateway: &GatewayRef) -> anyhow::Result<(ca::DemoCa, ca::TempDir)> {
    let ca = ca::DemoCa::generate(ca::TRUST_DOMAIN)?;
    let dir = ca::TempDir::create("waypoint-demo")?;
    let waypoint = ca.identity(&gateway.namespace, &gateway.name);
    ca.write_cert_dir(dir.path(), &waypoint)?;
    Ok((ca, dir))
}

impl Demo {
    /// Starts the demo on `config`: a backend on every loopback Pod address, and the waypoint;
    /// in [`Mode::Hbone`] also a CA, the waypoint's certificate folder, and an HBONE endpoint
    /// on `podIP:pod_hbone_port` in front of every ambient pod with a backend.
    pub async fn start(config: &Path, mode: Mode, pod_hbone_port: u16) -> anyhow::Result<Demo> {
        let dir = config.to_path_buf();
        let loaded = tokio::task::spawn_blocking(move || load_dir(&dir))
            .await?
            .with_context(|| format!("cannot read {}", config.display()))?;
        let specs = backend_specs(&loaded.documents)?;
        anyhow::ensure!(
            !specs.is_empty(),
            "{} has no Pod with a loopback status.podIP and a containerPort to start a demo backend on",
            config.display()
        );
        let planned = plan(&loaded.documents).with_context(|| {
            format!(
                "{} has no Gateway of class istio-waypoint to run",
                config.display()
            )
        })?;
        let backends = backends::spawn_backends(specs.clone()).await?;

        let pki = match mode {
            Mode::Plain => None,
            Mode::Hbone => Some(demo_pki(&planned.gateway)?),
        };
        let endpoints = match &pki {
            Some((ca, _)) => spawn_pod_endpoints(ca, &planned, &specs, pod_hbone_port).await?,
            None => Vec::new(),
        };

        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let waypoint = crate::app::start(crate::app::Options {
            http_listen: Some(any),
            drain_timeout: Duration::from_secs(2),
            cert_dir: pki.as_ref().map(|(_, dir)| dir.path().to_path_buf()),
            hbone_upstream_port: pod_hbone_port,
            ..crate::app::Options::local(config.to_path_buf())
        })
        .await?;
        let http_addr = waypoint
            .http_addr
            .context("the demo waypoint has no HTTP listener")?;
        let snapshot = waypoint.live.snapshot();
        let mut flows = travel_flows(&snapshot);
        arm_flows(&mut flows, config, &loaded.documents)?;
        anyhow::ensure!(
            !flows.is_empty(),
            "no travel-agency service is served by waypoint {} in {}",
            snapshot.gateway,
            config.display()
        );
        let mesh = match pki {
            Some((ca, cert_dir)) => {
                let hbone = waypoint
                    .hbone_addr
                    .context("the demo waypoint has no HBONE listener")?;
                let client =
                    ca.cert_store(&ca.identity(CLIENT_NAMESPACE, CLIENT_SERVICE_ACCOUNT))?;
                let peer = ca.identity(&snapshot.gateway.namespace, &snapshot.gateway.name);
                Some(Mesh {
                    cert_dir,
                    dialer: WaypointDialer::new(client, hbone, peer)?,
                    endpoints,
                    pod_port: pod_hbone_port,
                })
            }
            None => None,
        };
        Ok(Demo {
            gateway: snapshot.gateway.clone(),
            http_addr,
            flows,
            waypoint,
            backends,
            mesh,
        })
    }

    /// How the traffic generator reaches the waypoint.
    pub fn transport(&self) -> Transport {
        match &self.mesh {
            Some(mesh) => Transport::Hbone(mesh.dialer.clone()),
            None => Transport::Plain(self.http_addr),
        }
    }

    /// One line saying which way the traffic goes, and as whom.
    pub fn path(&self) -> String {
        match &self.mesh {
            Some(mesh) => format!(
                "traffic: {client} --HBONE(mTLS)--> waypoint {waypoint} --HBONE(mTLS)--> HBONE endpoints of {n} ambient pods on :{port} (CA in {dir})",
                client = principal(mesh.dialer.own_identity()),
                waypoint = principal(mesh.dialer.peer_identity()),
                n = mesh.endpoints.len(),
                port = mesh.pod_port,
                dir = mesh.cert_dir.path().display(),
            ),
            None => format!(
                "traffic: plain HTTP --> waypoint {} (http://{}) --> pods over plain TCP (no HBONE, no mTLS)",
                self.gateway, self.http_addr
            ),
        }
    }

    /// Tunnels each pod's HBONE endpoint accepted, by pod address (empty in plain mode).
    pub fn pod_tunnels(&self) -> Vec<(SocketAddr, Vec<hbone_endpoint::Accepted>)> {
        self.mesh
            .iter()
            .flat_map(|m| &m.endpoints)
            .map(|e| (e.local_addr, e.accepted()))
            .collect()
    }

    /// Drains the waypoint, then stops the endpoints and backends and removes the CA's files.
    pub async fn shutdown(self) {
        self.waypoint.shutdown().await;
        drop(self.mesh);
        self.backends.shutdown();
    }
}

/// The snapshot the waypoint will build from `documents`. The waypoint builds its own; this one
/// tells the demo whose certificates to issue and which pods are ambient before anything
/// listens.
fn plan(documents: &[Document]) -> Option<Snapshot> {
    let options = BuildOptions {
        gateway_class: crate::snapshot::GATEWAY_CLASS.to_string(),
        version: 0,
        gateway: None,
        trust_domain: crate::snapshot::CLUSTER_DOMAIN.to_string(),
    };
    Snapshot::build(documents, Vec::new(), &options).0
}

/// `namespace/service-account`, the short form of a workload identity.
fn principal(identity: &Identity) -> String {
    format!("{}/{}", identity.namespace, identity.service_account)
}

/// An HBONE endpoint on `podIP:port` for every ambient pod with a demo backend, with the pod's
/// own identity, as ztunnel is in front of every ambient pod on its node.
async fn spawn_pod_endpoints(
    ca: &ca::DemoCa,
    snapshot: &Snapshot,
    specs: &[DemoBackendSpec],
    port: u16,
) -> anyhow::Result<Vec<HboneEndpoint>> {
    let mut stores: HashMap<WorkloadIdentity, Arc<CertStore>> = HashMap::new();
    let mut endpoints = Vec::new();
    let mut started = HashSet::new();
    for spec in specs {
        let ip = spec.addr.ip();
        let Some(workload) = snapshot.workloads.get(&ip).filter(|w| w.ambient) else {
            continue;
        };
        if !started.insert(ip) {
            continue;
        }
        let store = match stores.get(&workload.identity) {
            Some(store) => store.clone(),
            None => {
                let identity = workload.identity.in_trust_domain(ca.trust_domain());
                let store = ca.cert_store(&identity)?;
                stores.insert(workload.identity.clone(), store.clone());
                store
            }
        };
        let endpoint = hbone_endpoint::spawn(SocketAddr::new(ip, port), store, ip)
            .await
            .with_context(|| {
                format!(
                    "cannot start the HBONE endpoint of pod {}/{} on {ip}:{port}; is another demo running?",
                    workload.namespace, workload.name
                )
            })?;
        endpoints.push(endpoint);
    }
    Ok(endpoints)
}

/// The portals' flows for the travel-agency services the waypoint serves, each addressed to
/// the service's first VIP and port as a client in the mesh would dial it.
fn travel_flows(snapshot: &Snapshot) -> Vec<Flow> {
    TRAVEL_FLOWS
        .iter()
        .filter_map(|(service, paths, weight)| {
            let host = format!("{service}.{}", snapshot.gateway.namespace);
            let (info, port) = snapshot.resolve_authority(&host).ok()?;
            Some(Flow {
                label: host.clone(),
                authority: info
                    .vips
                    .first()
                    .map(|vip| SocketAddr::new(*vip, port.port)),
                host,
                paths: paths.iter().map(|p| p.to_string()).collect(),
                weight: *weight,
                service: Some(format!("{}/{service}", snapshot.gateway.namespace)),
                security: Default::default(),
            })
        })
        .collect()
}

/// Gives each flow the tokens and the requests to refuse that its service's security policies
/// in `documents` call for ([`security::for_service`]).
fn arm_flows(flows: &mut [Flow], config: &Path, documents: &[Document]) -> anyhow::Result<()> {
    for flow in flows {
        let Some((namespace, service)) = flow.service.as_deref().and_then(|s| s.split_once('/'))
        else {
            continue;
        };
        flow.security = security::for_service(config, documents, namespace, service)?;
    }
    Ok(())
}

/// A demo backend for every Pod with a loopback IP: it plays the service named by the pod's
/// `app` label, at the version of its `version` label, misbehaving as its
/// `demo.waypoint.dev/*` annotations ask ([`misbehaviour`]). Fails on an annotation it cannot
/// read, naming the pod.
pub fn backend_specs(documents: &[Document]) -> anyhow::Result<Vec<DemoBackendSpec>> {
    let mut specs = Vec::new();
    for d in documents {
        let Resource::Pod(pod) = &d.resource else {
            continue;
        };
        let Some(ip) = crate::snapshot::pod_ip(pod).filter(IpAddr::is_loopback) else {
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
        let misbehaviour =
            Misbehaviour::from_annotations(&pod.metadata.annotations.clone().unwrap_or_default())
                .with_context(|| {
                format!(
                    "Pod {}/{} in {}",
                    d.object.namespace, d.object.name, d.origin
                )
            })?;
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
            misbehaviour,
        });
    }
    Ok(specs)
}

#[cfg(test)]
mod tests;
