//! Turns a test's manifests into what a cluster would have made of them: a folder of
//! Kubernetes objects the waypoint reads, plus the plan of echo backends and Gateway
//! addresses the runner must provide (section 1 of the case file).
//!
//! Everything is derived from the objects themselves (echo Deployments by image, Services by
//! selector, Gateways by class), never from test names, so any upstream test replays.

use serde_yaml_ng::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// The GatewayClass every templated Gateway gets.
pub const GATEWAY_CLASS: &str = "waypoint";
/// Images that are upstream's HTTP echo servers (echo-advanced is the mesh suite's).
const ECHO_IMAGES: [&str; 2] = ["echo-basic", "echo-advanced"];
/// echo-basic's default ports: HTTP and h2c prior knowledge.
const DEFAULT_HTTP_PORT: u16 = 3000;
const DEFAULT_H2C_PORT: u16 = 3001;
const H2C_APP_PROTOCOL: &str = "kubernetes.io/h2c";
/// The mesh waypoint Gateway the runner adds, as Istio users create it.
pub const MESH_WAYPOINT_NAME: &str = "waypoint";
pub const MESH_WAYPOINT_CLASS: &str = "istio-waypoint";
const USE_WAYPOINT: &str = "istio.io/use-waypoint";
const USE_WAYPOINT_NAMESPACE: &str = "istio.io/use-waypoint-namespace";

/// Reads the manifests in order, with `{GATEWAY_CLASS_NAME}` templated, one Value per document.
pub fn load(root: &Path, files: &[String]) -> anyhow::Result<Vec<Value>> {
    let mut docs = Vec::new();
    for file in files {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read manifest {}: {e}", path.display()))?;
        let text = text.replace("{GATEWAY_CLASS_NAME}", GATEWAY_CLASS);
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = <Value as serde::Deserialize>::deserialize(doc)
                .map_err(|e| anyhow::anyhow!("manifest {} is not YAML: {e}", path.display()))?;
            if value.is_mapping() {
                docs.push(value);
            }
        }
    }
    Ok(docs)
}

/// `metadata.namespace` ("default" when unset) and `metadata.name`.
pub fn key(doc: &Value) -> (String, String) {
    (
        str_at(doc, &["metadata", "namespace"])
            .unwrap_or("default")
            .to_owned(),
        str_at(doc, &["metadata", "name"]).unwrap_or("").to_owned(),
    )
}

pub fn kind(doc: &Value) -> &str {
    str_at(doc, &["kind"]).unwrap_or("")
}

fn at<'v>(doc: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(doc, |v, k| v.get(*k))
}

fn str_at<'v>(doc: &'v Value, path: &[&str]) -> Option<&'v str> {
    at(doc, path).and_then(Value::as_str)
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), scalar(v)?)))
                .collect()
        })
        .unwrap_or_default()
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn port_of(v: &Value) -> Option<u16> {
    v.as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// One echo backend to start: a Deployment's single replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoPlan {
    pub namespace: String,
    pub deployment: String,
    pub pod: String,
    pub ip: Ipv4Addr,
    pub labels: BTreeMap<String, String>,
    /// Ports serving HTTP/1.1 (and h2c, whichever the client speaks).
    pub http_ports: BTreeSet<u16>,
    /// Ports serving h2c prior knowledge only.
    pub h2c_ports: BTreeSet<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    /// The target port by number (None when named or absent: then it is `port` or a name).
    pub target: Option<u16>,
    pub app_protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePlan {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: Option<IpAddr>,
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
}

/// A waypoint Gateway the runner serves, with the address it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayPlan {
    pub namespace: String,
    pub name: String,
    pub ip: Ipv4Addr,
    pub listener_ports: BTreeSet<u16>,
}

/// The objects to write and what the runner must start for them.
#[derive(Debug, Clone)]
pub struct Plan {
    pub docs: Vec<Value>,
    pub echoes: Vec<EchoPlan>,
    pub services: Vec<ServicePlan>,
    pub gateways: Vec<GatewayPlan>,
    /// The namespace of the added mesh waypoint (driver=mesh).
    pub mesh_waypoint_namespace: Option<String>,
}

/// Address blocks: echoes in 127.80/16, Gateways in 127.81/16, cluster IPs in 10.96/16.
/// `slot` (one per test) keeps a test's addresses apart from the previous test's.
pub fn plan(mut docs: Vec<Value>, mesh: bool, slot: u8) -> Plan {
    let third = slot.wrapping_add(1);
    let mut services = Vec::new();
    let mut next_vip: u32 = 1;
    for doc in docs.iter_mut().filter(|d| kind(d) == "Service") {
        let (namespace, name) = key(doc);
        let existing = str_at(doc, &["spec", "clusterIP"]).map(str::to_owned);
        let cluster_ip = match existing.as_deref() {
            Some("None") => None,
            Some(ip) if !ip.is_empty() => ip.parse().ok(),
            _ => {
                // An identifier only; the waypoint matches CONNECT authorities against it.
                let ip = Ipv4Addr::new(10, 96, (next_vip >> 8) as u8, (next_vip & 0xff) as u8);
                next_vip += 1;
                set(doc, &["spec", "clusterIP"], Value::String(ip.to_string()));
                Some(IpAddr::V4(ip))
            }
        };
        let ports = at(doc, &["spec", "ports"])
            .and_then(Value::as_sequence)
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| {
                        let port = port_of(p.get("port")?)?;
                        Some(ServicePort {
                            name: p
                                .get("name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_owned(),
                            port,
                            target: match p.get("targetPort") {
                                None => Some(port),
                                Some(t) => t.as_u64().and_then(|n| u16::try_from(n).ok()),
                            },
                            app_protocol: p
                                .get("appProtocol")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_owned(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        services.push(ServicePlan {
            namespace,
            name,
            cluster_ip,
            selector: string_map(at(doc, &["spec", "selector"])),
            ports,
        });
    }

    let mut echoes = Vec::new();
    let mut pods = Vec::new();
    for doc in docs.iter().filter(|d| kind(d) == "Deployment") {
        let containers = at(doc, &["spec", "template", "spec", "containers"])
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        let is_echo = containers.iter().any(|c| {
            c.get("image")
                .and_then(Value::as_str)
                .is_some_and(|image| ECHO_IMAGES.iter().any(|e| image.contains(e)))
        });
        // echo-basic with GRPC_ECHO_SERVER set is upstream's gRPC echo, not an HTTP one.
        let grpc = containers.iter().any(|c| {
            c.get("env")
                .and_then(Value::as_sequence)
                .is_some_and(|env| {
                    env.iter()
                        .any(|e| e.get("name").and_then(Value::as_str) == Some("GRPC_ECHO_SERVER"))
                })
        });
        if !is_echo || grpc {
            continue;
        }
        let (namespace, deployment) = key(doc);
        let labels = string_map(at(doc, &["spec", "template", "metadata", "labels"]));
        let index = echoes.len();
        let ip = Ipv4Addr::new(127, 80, third, (index + 1).min(254) as u8);
        let pod = pod_name(&namespace, &deployment);
        let (http_ports, h2c_ports) = echo_ports(&containers, &services, &namespace, &labels);
        pods.push(pod_object(&namespace, &pod, &labels, &containers, ip));
        echoes.push(EchoPlan {
            namespace,
            deployment,
            pod,
            ip,
            labels,
            http_ports,
            h2c_ports,
        });
    }
    docs.extend(pods);

    let mut gateways = Vec::new();
    let mut mesh_waypoint_namespace = None;
    if mesh {
        let ns = waypoint_home(&services);
        add_mesh_waypoint(&mut docs, &ns, &services);
        mesh_waypoint_namespace = Some(ns);
    } else {
        for doc in docs.iter().filter(|d| kind(d) == "Gateway") {
            if str_at(doc, &["spec", "gatewayClassName"]) != Some(GATEWAY_CLASS) {
                continue;
            }
            let (namespace, name) = key(doc);
            let listener_ports = at(doc, &["spec", "listeners"])
                .and_then(Value::as_sequence)
                .map(|ls| ls.iter().filter_map(|l| port_of(l.get("port")?)).collect())
                .unwrap_or_default();
            let ip = Ipv4Addr::new(127, 81, third, (gateways.len() + 1).min(254) as u8);
            gateways.push(GatewayPlan {
                namespace,
                name,
                ip,
                listener_ports,
            });
        }
    }
    Plan {
        docs,
        echoes,
        services,
        gateways,
        mesh_waypoint_namespace,
    }
}

/// "<deployment>-<10 hex>-<5 chars>", the shape of a ReplicaSet pod name, derived from the
/// Deployment so that a rerun names pods the same.
fn pod_name(namespace: &str, deployment: &str) -> String {
    // FNV-1a: stable across runs and platforms, unlike std's randomly seeded hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in namespace.bytes().chain([b'/']).chain(deployment.bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5)
        .map(|i| ALPHABET[((hash >> (i * 6)) % ALPHABET.len() as u64) as usize] as char)
        .collect();
    format!(
        "{deployment}-{:010x}-{suffix}",
        (hash >> 24) & 0xff_ffff_ffff
    )
}

/// The ports an echo serves: echo-basic's defaults (or its HTTP_PORT / H2C_PORT env), its
/// declared container ports, and every numeric target port of a Service selecting it.
/// h2c-only ports are the h2c default and targets of `appProtocol: kubernetes.io/h2c`.
fn echo_ports(
    containers: &[Value],
    services: &[ServicePlan],
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> (BTreeSet<u16>, BTreeSet<u16>) {
    let mut http = BTreeSet::new();
    let mut h2c = BTreeSet::new();
    let env = |name: &str| -> Option<u16> {
        containers.iter().find_map(|c| {
            c.get("env")?.as_sequence()?.iter().find_map(|e| {
                (e.get("name")?.as_str()? == name)
                    .then(|| e.get("value").and_then(port_of))
                    .flatten()
            })
        })
    };
    http.insert(env("HTTP_PORT").unwrap_or(DEFAULT_HTTP_PORT));
    h2c.insert(env("H2C_PORT").unwrap_or(DEFAULT_H2C_PORT));
    for c in containers {
        for p in c
            .get("ports")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            if let Some(port) = p.get("containerPort").and_then(port_of) {
                http.insert(port);
            }
        }
    }
    for svc in services.iter().filter(|s| {
        s.namespace == namespace
            && !s.selector.is_empty()
            && s.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }) {
        for p in &svc.ports {
            if let Some(target) = p.target {
                if p.app_protocol == H2C_APP_PROTOCOL {
                    h2c.insert(target);
                } else {
                    http.insert(target);
                }
            }
        }
    }
    let http = http.difference(&h2c).copied().collect();
    (http, h2c)
}

fn pod_object(
    namespace: &str,
    pod: &str,
    labels: &BTreeMap<String, String>,
    containers: &[Value],
    ip: Ipv4Addr,
) -> Value {
    let containers: Vec<serde_json::Value> = containers
        .iter()
        .map(|c| {
            let ports: Vec<serde_json::Value> = c
                .get("ports")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(|p| serde_json::to_value(p).ok())
                .collect();
            serde_json::json!({
                "name": c.get("name").and_then(Value::as_str).unwrap_or("echo"),
                "ports": ports,
            })
        })
        .collect();
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod, "namespace": namespace, "labels": labels},
        "spec": {"containers": containers},
        "status": {
            "phase": "Running",
            "podIP": ip.to_string(),
            "podIPs": [{"ip": ip.to_string()}],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    });
    serde_yaml_ng::to_value(pod).unwrap_or(Value::Null)
}

/// The mesh waypoint lives where most Services are (upstream's mesh namespace).
fn waypoint_home(services: &[ServicePlan]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in services {
        *counts.entry(s.namespace.as_str()).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map_or_else(|| "default".to_owned(), |(ns, _)| ns.to_owned())
}

/// As Istio users enrol a namespace: a `Gateway` of class istio-waypoint with the HBONE
/// listener, and `istio.io/use-waypoint` on every namespace that has Services.
fn add_mesh_waypoint(docs: &mut Vec<Value>, waypoint_ns: &str, services: &[ServicePlan]) {
    let service_namespaces: BTreeSet<&str> =
        services.iter().map(|s| s.namespace.as_str()).collect();
    for doc in docs.iter_mut().filter(|d| kind(d) == "Namespace") {
        let (_, name) = key(doc);
        if !service_namespaces.contains(name.as_str()) {
            continue;
        }
        set(
            doc,
            &["metadata", "labels", USE_WAYPOINT],
            Value::String(MESH_WAYPOINT_NAME.into()),
        );
        if name != waypoint_ns {
            set(
                doc,
                &["metadata", "labels", USE_WAYPOINT_NAMESPACE],
                Value::String(waypoint_ns.into()),
            );
        }
    }
    let gateway = serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": MESH_WAYPOINT_NAME, "namespace": waypoint_ns},
        "spec": {
            "gatewayClassName": MESH_WAYPOINT_CLASS,
            "listeners": [{
                "name": "mesh",
                "port": 15008,
                "protocol": "HBONE",
                "allowedRoutes": {"namespaces": {"from": "All"}},
            }],
        },
    });
    if let Ok(v) = serde_yaml_ng::to_value(gateway) {
        docs.push(v);
    }
}

/// Sets `path` in a mapping, creating intermediate mappings.
fn set(doc: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = doc;
    for k in parents {
        let Some(map) = cur.as_mapping_mut() else {
            return;
        };
        let entry = map
            .entry(Value::String((*k).into()))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if !entry.is_mapping() {
            *entry = Value::Mapping(Mapping::new());
        }
        cur = entry;
    }
    if let Some(map) = cur.as_mapping_mut() {
        map.insert(Value::String((*last).into()), value);
    }
}

/// The written config folder: one file per object, so an object can be deleted by removing
/// its file (the waypoint reloads the folder on change).
#[derive(Debug)]
pub struct ConfigDir {
    pub dir: PathBuf,
    files: Vec<(String, String, String, PathBuf)>,
}

impl ConfigDir {
    pub fn write(dir: &Path, docs: &[Value]) -> anyhow::Result<ConfigDir> {
        let mut files = Vec::new();
        for (i, doc) in docs.iter().enumerate() {
            let (ns, name) = key(doc);
            let kind = kind(doc).to_owned();
            let file_name = format!("{i:04}-{}-{ns}-{name}.yaml", kind.to_ascii_lowercase());
            let file_name: String = file_name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let path = dir.join(file_name);
            let text = serde_yaml_ng::to_string(doc)?;
            std::fs::write(&path, text)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            files.push((kind, ns, name, path));
        }
        Ok(ConfigDir {
            dir: dir.to_owned(),
            files,
        })
    }

    /// Deletes the object `kind` `ns/name`; false if no such object was written.
    pub fn delete(&mut self, kind: &str, reference: &str) -> anyhow::Result<bool> {
        let (ns, name) = reference.split_once('/').unwrap_or(("default", reference));
        let before = self.files.len();
        let mut removed = Vec::new();
        self.files.retain(|(k, n, m, path)| {
            let hit = k == kind && n == ns && m == name;
            if hit {
                removed.push(path.clone());
            }
            !hit
        });
        for path in removed {
            std::fs::remove_file(&path)
                .map_err(|e| anyhow::anyhow!("cannot delete {}: {e}", path.display()))?;
        }
        Ok(self.files.len() != before)
    }
}

impl Plan {
    /// The IP of the first echo pod in `namespace` whose labels match `selector`
    /// ("k=v,k2=v2"), for `{podIP:<ns>/<selector>}`.
    pub fn pod_ip(&self, namespace: &str, selector: &str) -> Option<Ipv4Addr> {
        let wanted: Vec<(&str, &str)> = selector
            .split(',')
            .filter(|s| !s.is_empty())
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        self.echoes
            .iter()
            .find(|e| {
                e.namespace == namespace
                    && wanted
                        .iter()
                        .all(|(k, v)| e.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|e| e.ip)
    }

    /// The echo pod with these labels in `namespace` (the mesh client workload).
    pub fn echo_by_labels(&self, namespace: &str, labels: &[(&str, &str)]) -> Option<&EchoPlan> {
        self.echoes.iter().find(|e| {
            e.namespace == namespace
                && labels
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .all(|(k, v)| e.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Resolves a mesh host like a Kubernetes Service name from `client_ns`: "echo",
    /// "echo:8080", "echo-v1.other-ns", "echo.ns.svc.cluster.local:80", or an IP.
    pub fn resolve_mesh_host(&self, host: &str, client_ns: &str) -> Result<MeshTarget, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(MeshTarget::Pod(std::net::SocketAddr::new(ip, 80)));
        }
        if let Ok(addr) = host.parse::<std::net::SocketAddr>() {
            return Ok(MeshTarget::Pod(addr));
        }
        let (name, port) = match host.rsplit_once(':') {
            Some((n, p)) => (
                n,
                p.parse::<u16>()
                    .map_err(|_| format!("host {host:?} has a bad port"))?,
            ),
            None => (host, 80),
        };
        let mut parts = name.split('.');
        let svc = parts.next().unwrap_or("");
        let ns = parts.next().unwrap_or(client_ns);
        let service = self
            .services
            .iter()
            .find(|s| s.name == svc && s.namespace == ns)
            .ok_or_else(|| format!("no Service {ns}/{svc} for host {host:?}"))?;
        let vip = service
            .cluster_ip
            .ok_or_else(|| format!("Service {ns}/{svc} has no cluster IP"))?;
        Ok(MeshTarget::Service(std::net::SocketAddr::new(vip, port)))
    }
}

/// Where a mesh request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshTarget {
    /// A Service VIP:port, reached through the waypoint as ztunnel would.
    Service(std::net::SocketAddr),
    /// A pod IP:port, dialled directly (no Service, so no waypoint).
    Pod(std::net::SocketAddr),
}

#[cfg(test)]
mod tests;
