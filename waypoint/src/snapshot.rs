//! One immutable view of the configuration — the services this waypoint serves, their
//! endpoints and compiled routes — built from a folder's objects and swapped in atomically.
//!
//! Building never fails half-way: every object gets a [`ResourceStatus`], and the caller
//! decides from [`Report::error_count`] whether the new snapshot may replace the old one.

use crate::config::{Document, LoadError, ObjectRef, Origin, Resource, ServiceEntry};
use gateway_api::experimental::gateways::Gateway;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use resilience::RoundRobin;
use routing::{
    BackendLookup, CompiledRoute, CompiledTcpRoute, Issue, IssueReason, RouteTable, ServiceKey,
    Severity,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

mod gateway;
pub use gateway::{GatewayPort, GatewayStatus, Grants, ListenerRoutes, RouteStatus};

/// The gateway class of Istio waypoints.
pub const WAYPOINT_CLASS: &str = "istio-waypoint";
/// The GatewayClass this proxy serves in the Gateway role (and reports status for) by default.
pub const GATEWAY_CLASS: &str = "waypoint";
/// Label on a Service, ServiceEntry, Pod or Namespace naming the waypoint that serves it.
pub const USE_WAYPOINT: &str = "istio.io/use-waypoint";
/// Label naming the waypoint's namespace when it differs from the object's.
pub const USE_WAYPOINT_NAMESPACE: &str = "istio.io/use-waypoint-namespace";
/// Gateway label: which traffic a waypoint takes (`service`, `workload`, `all`, `none`).
pub const WAYPOINT_FOR: &str = "istio.io/waypoint-for";
/// Namespace or Pod label putting workloads in the ambient mesh (`ambient`; `none` opts out).
pub const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
/// Kubernetes' DNS suffix for services; Istio's default trust domain cluster.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// `namespace/name` of a Gateway.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct GatewayRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for GatewayRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl std::str::FromStr for GatewayRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(GatewayRef {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!("'{s}' is not NAMESPACE/NAME")),
        }
    }
}

/// How one object fared when the snapshot was built.
#[derive(Clone, Debug, Serialize)]
pub struct ResourceStatus {
    pub origin: Origin,
    pub object: ObjectRef,
    pub state: State,
    pub issues: Vec<StatusIssue>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum State {
    Accepted,
    /// Read but not acted on; the reason says why (a kind not supported yet, another waypoint's).
    Ignored(String),
    Error,
}

#[derive(Clone, Debug, Serialize)]
pub struct StatusIssue {
    pub severity: Severity,
    /// Set for route problems whose runtime behaviour Gateway API defines (a backend that
    /// cannot be used gets 500s, an unattached parent gets no traffic): the rest of the
    /// configuration still loads. Every other error keeps the last good configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<IssueReason>,
    pub field: String,
    pub message: String,
}

impl StatusIssue {
    /// Whether Gateway API says what happens at run time (see [`StatusIssue::reason`]).
    pub fn runtime_defined(&self) -> bool {
        matches!(
            self.reason,
            Some(
                IssueReason::BackendNotFound
                    | IssueReason::RefNotPermitted
                    | IssueReason::InvalidKind
                    | IssueReason::NoMatchingParent
            )
        )
    }
}

impl From<Issue> for StatusIssue {
    fn from(i: Issue) -> Self {
        StatusIssue {
            severity: i.severity,
            reason: Some(i.reason),
            field: i.field,
            message: i.message,
        }
    }
}

/// Everything `check`, the startup log and `/config_dump` say about one build.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub file_errors: Vec<LoadError>,
    pub statuses: Vec<ResourceStatus>,
    /// Problems of the whole folder, not of one object (no Gateway to serve, say).
    pub global_errors: Vec<String>,
    /// Gateway API status of the Gateways of our class and their routes.
    pub gateway_status: GatewayStatus,
    /// How long reading and parsing the folder took, and building the snapshot from the parsed
    /// resources (validation, route attachment, compiled route tables), each in milliseconds.
    pub load_ms: f64,
    pub compile_ms: f64,
}

impl Report {
    /// Errors that stop a folder from loading: all but the route problems Gateway API gives a
    /// runtime meaning (see [`StatusIssue::reason`]).
    pub fn blocking_error_count(&self) -> usize {
        self.file_errors.len()
            + self.global_errors.len()
            + self
                .statuses
                .iter()
                .filter(|s| {
                    s.state == State::Error
                        && s.issues
                            .iter()
                            .any(|i| i.severity == Severity::Error && !i.runtime_defined())
                })
                .count()
    }

    pub fn error_count(&self) -> usize {
        self.file_errors.len()
            + self.global_errors.len()
            + self
                .statuses
                .iter()
                .filter(|s| s.state == State::Error)
                .count()
    }

    /// One line per error, each naming file, document, object, field and reason.
    pub fn error_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.global_errors.clone();
        lines.extend(self.file_errors.iter().map(|e| e.to_string()));
        lines.extend(self.issue_lines(Severity::Error));
        lines
    }

    pub fn warning_lines(&self) -> Vec<String> {
        self.issue_lines(Severity::Warning).collect()
    }

    fn issue_lines(&self, severity: Severity) -> impl Iterator<Item = String> + '_ {
        self.statuses.iter().flat_map(move |s| {
            s.issues
                .iter()
                .filter(move |i| i.severity == severity)
                .map(move |i| {
                    format!(
                        "{} document {}: {}: field {}: {}",
                        s.origin.file.display(),
                        s.origin.document,
                        s.object,
                        i.field,
                        one_line(&i.message)
                    )
                })
        })
    }

    /// Kinds read but not acted on yet, for the startup log.
    pub fn unsupported(&self) -> Vec<&ResourceStatus> {
        self.statuses
            .iter()
            .filter(|s| matches!(&s.state, State::Ignored(r) if r.starts_with("kind")))
            .collect()
    }
}

/// A destination endpoint.
#[derive(Clone, Debug, Serialize)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The pod behind it, when known (EndpointSlice targetRef or Pod selection).
    pub pod: Option<String>,
    /// Set when the pod is in the ambient mesh: it is reached over HBONE and must present
    /// this workload identity.
    pub hbone: Option<WorkloadIdentity>,
}

/// Namespace and service account of a pod: its SPIFFE identity, given the trust domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct WorkloadIdentity {
    pub namespace: String,
    pub service_account: String,
}

impl WorkloadIdentity {
    pub fn in_trust_domain(&self, trust_domain: &str) -> authz::Identity {
        authz::Identity::new(trust_domain, &self.namespace, &self.service_account)
    }
}

/// A pod this waypoint may be asked to reach by its own address.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadInfo {
    pub namespace: String,
    pub name: String,
    pub ip: IpAddr,
    pub identity: WorkloadIdentity,
    pub ambient: bool,
    pub binding: Binding,
}

/// What a CONNECT `:authority` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A service port: the request is routed by the service's routes.
    Service { service: ServiceKey, port: u16 },
    /// A pod addressed directly (a waypoint for workloads): the request goes to that address.
    Workload {
        addr: SocketAddr,
        hbone: Option<WorkloadIdentity>,
    },
}

#[derive(Debug, Serialize)]
pub struct ServicePort {
    pub port: u16,
    pub name: String,
    pub app_protocol: Option<String>,
    /// The port speaks cleartext HTTP/2 (prior knowledge): decided once here, not per request.
    pub h2c: bool,
    pub endpoints: Vec<Endpoint>,
    /// Routes attached to this port, in precedence order; `None` when no route attaches and
    /// traffic goes to the service's own endpoints.
    #[serde(skip)]
    pub routes: Option<RouteTable>,
    pub route_names: Vec<String>,
    /// GAMMA consumer routes: routes in another namespace than the service's, which apply
    /// (instead of `routes`) only to clients in that namespace.
    #[serde(skip)]
    pub consumer_routes: HashMap<String, RouteTable>,
    /// A TCPRoute attached to this port makes it a TCP port with weighted backends.
    #[serde(skip)]
    pub tcp_route: Option<Arc<CompiledTcpRoute>>,
    pub tcp_route_name: Option<String>,
    #[serde(skip)]
    pub balancer: RoundRobin,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum ServiceSource {
    Service,
    ServiceEntry,
}

#[derive(Debug, Serialize)]
pub struct ServiceInfo {
    pub key: ServiceKey,
    pub source: ServiceSource,
    pub hostnames: Vec<String>,
    pub vips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    /// Why this waypoint does or does not serve the service.
    pub binding: Binding,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Binding {
    Bound,
    NotBound(String),
}

impl ServiceInfo {
    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }
}

/// Why a request's destination could not be found; the message is sent to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct NotFound(pub String);

/// The immutable configuration one request sees from start to end.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub version: u64,
    pub gateway: GatewayRef,
    /// The Gateway role: the served Gateway's HTTP listeners by port (empty for a waypoint).
    pub listeners: Vec<GatewayPort>,
    pub services: Vec<ServiceInfo>,
    #[serde(skip)]
    by_key: HashMap<ServiceKey, usize>,
    #[serde(skip)]
    by_host: HashMap<String, Vec<usize>>,
    #[serde(skip)]
    by_vip: HashMap<IpAddr, usize>,
    pub workloads: HashMap<IpAddr, WorkloadInfo>,
}

/// Which part this proxy plays for the served Gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Role {
    /// An istio-waypoint Gateway: mesh traffic to bound services, over HBONE.
    Waypoint,
    /// A Gateway of another class: its HTTP listeners, routed by Host.
    Gateway,
}

/// What the snapshot is built from besides the objects.
pub struct BuildOptions {
    pub version: u64,
    /// The GatewayClass whose Gateways get a status from this build (`check --status`).
    pub gateway_class: String,
    /// `--gateway NS/NAME`; `None` picks the only `istio-waypoint` Gateway.
    pub gateway: Option<GatewayRef>,
}

impl Snapshot {
    /// Builds a snapshot and the report of every object. The snapshot is `None` only when
    /// there is no Gateway to serve; otherwise it holds everything that could be compiled, and
    /// the caller consults the report before publishing it.
    pub fn build(
        documents: &[Document],
        file_errors: Vec<LoadError>,
        opts: &BuildOptions,
    ) -> (Option<Snapshot>, Report) {
        let mut builder = Builder::new(documents);
        let snapshot = builder.run(opts);
        let mut report = Report {
            file_errors,
            statuses: builder.statuses,
            global_errors: builder.global_errors,
            gateway_status: builder.gateway_status,
            load_ms: 0.0,
            compile_ms: 0.0,
        };
        report.statuses.sort_by(|a, b| {
            (&a.origin.file, a.origin.document).cmp(&(&b.origin.file, b.origin.document))
        });
        (snapshot, report)
    }

    /// The served Gateway's listeners on `port` (Gateway role).
    pub fn gateway_port(&self, port: u16) -> Option<&GatewayPort> {
        self.listeners.iter().find(|p| p.port == port)
    }

    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceInfo> {
        self.by_key.get(key).map(|&i| &self.services[i])
    }

    /// Finds the destination a mesh client means by `authority` (a Host header or `:authority`):
    /// `name`, `name.ns`, `name.ns.svc`, `name.ns.svc.cluster.local`, a ServiceEntry host, or a
    /// service VIP, each with an optional `:port` (default 80).
    pub fn resolve_authority(
        &self,
        authority: &str,
    ) -> Result<(&ServiceInfo, &ServicePort), NotFound> {
        let (host, port) = split_authority(authority)
            .ok_or_else(|| NotFound(format!("malformed host '{authority}'")))?;
        let service = if let Ok(ip) = host.parse::<IpAddr>() {
            self.by_vip
                .get(&ip)
                .map(|&i| &self.services[i])
                .ok_or_else(|| NotFound(format!("no service has the address {ip}")))?
        } else {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            let candidates = self
                .by_host
                .get(&host)
                .ok_or_else(|| NotFound(format!("no service is known as '{host}'")))?;
            self.pick_candidate(&host, candidates)?
        };
        if let Binding::NotBound(why) = &service.binding {
            return Err(NotFound(format!(
                "service {} is not served by waypoint {}: {why}",
                key_str(&service.key),
                self.gateway
            )));
        }
        let sp = service.port(port).ok_or_else(|| {
            NotFound(format!(
                "service {} has no port {port} (ports: {})",
                key_str(&service.key),
                service
                    .ports
                    .iter()
                    .map(|p| p.port.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        Ok((service, sp))
    }

    /// Resolves an HBONE CONNECT `:authority` (`ip:port`, `[v6]:port` or `host:port`) to a
    /// service port bound to this waypoint or, for a waypoint of workloads, a bound pod.
    pub fn resolve_connect(&self, authority: &str) -> Result<Destination, NotFound> {
        let (host, port) = split_authority(authority)
            .filter(|_| authority.contains(':'))
            .ok_or_else(|| {
                NotFound(format!(
                    "malformed CONNECT authority '{authority}': want ip:port"
                ))
            })?;
        if let Ok(ip) = host.parse::<IpAddr>() {
            if !self.by_vip.contains_key(&ip) {
                let w = self
                    .workloads
                    .get(&ip)
                    .ok_or_else(|| NotFound(format!("no service or pod has the address {ip}")))?;
                if let Binding::NotBound(why) = &w.binding {
                    return Err(NotFound(format!(
                        "pod {}/{} is not served by waypoint {}: {why}",
                        w.namespace, w.name, self.gateway
                    )));
                }
                return Ok(Destination::Workload {
                    addr: SocketAddr::new(ip, port),
                    hbone: w.ambient.then(|| w.identity.clone()),
                });
            }
        }
        let (service, sp) = self.resolve_authority(authority)?;
        Ok(Destination::Service {
            service: service.key.clone(),
            port: sp.port,
        })
    }

    /// A short name may exist in several namespaces: like a client in the waypoint's own
    /// namespace, prefer that one; otherwise it must be unique.
    fn pick_candidate(&self, host: &str, candidates: &[usize]) -> Result<&ServiceInfo, NotFound> {
        if let [one] = candidates {
            return Ok(&self.services[*one]);
        }
        if let Some(&i) = candidates
            .iter()
            .find(|&&i| self.services[i].key.namespace == self.gateway.namespace)
        {
            return Ok(&self.services[i]);
        }
        Err(NotFound(format!(
            "'{host}' is ambiguous: it names {}; use name.namespace",
            candidates
                .iter()
                .map(|&i| key_str(&self.services[i].key))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

fn key_str(k: &ServiceKey) -> String {
    format!("{}/{}", k.namespace, k.name)
}

/// Splits `host[:port]` / `[v6]:port`; the port defaults to 80 as for a plain-HTTP client.
pub fn split_authority(authority: &str) -> Option<(&str, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 80,
            None => return None,
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        // More than one colon without brackets is a bare IPv6 address.
        Some((host, _)) if host.contains(':') => Some((authority, 80)),
        Some((host, port)) => Some((host, port.parse().ok()?)),
        None if authority.is_empty() => None,
        None => Some((authority, 80)),
    }
}

/// The objects of one build, indexed, and the statuses being collected.
struct Builder<'a> {
    docs: &'a [Document],
    statuses: Vec<ResourceStatus>,
    global_errors: Vec<String>,
    gateway_status: GatewayStatus,
    grants: Grants,
    namespaces: HashMap<&'a str, &'a BTreeMap<String, String>>,
}

const EMPTY_LABELS: &BTreeMap<String, String> = &BTreeMap::new();

impl<'a> Builder<'a> {
    fn new(docs: &'a [Document]) -> Self {
        Builder {
            docs,
            statuses: Vec::new(),
            global_errors: Vec::new(),
            gateway_status: GatewayStatus::default(),
            grants: Grants::default(),
            namespaces: HashMap::new(),
        }
    }

    fn status(&mut self, doc: &Document, state: State, issues: Vec<StatusIssue>) {
        let state = if issues.iter().any(|i| i.severity == Severity::Error) {
            State::Error
        } else {
            state
        };
        let mut issues = issues;
        issues.extend(doc.unknown_fields.iter().map(|f| StatusIssue {
            severity: Severity::Warning,
            reason: None,
            field: f.clone(),
            message: "unknown field, ignored".into(),
        }));
        self.statuses.push(ResourceStatus {
            origin: doc.origin.clone(),
            object: doc.object.clone(),
            state,
            issues,
        });
    }

    fn run(&mut self, opts: &BuildOptions) -> Option<Snapshot> {
        let docs = self.docs;
        // Duplicates: the later object would silently replace the earlier one.
        let mut seen: HashMap<&ObjectRef, &Origin> = HashMap::new();
        let mut unique: Vec<&'a Document> = Vec::new();
        for d in docs {
            if let Some(first) = seen.get(&d.object) {
                let msg = format!(
                    "{} is also defined in {first}; remove one of them",
                    d.object
                );
                self.status(d, State::Error, vec![issue_err("metadata.name", msg)]);
            } else {
                seen.insert(&d.object, &d.origin);
                unique.push(d);
            }
        }
        for d in &unique {
            if let Resource::Namespace(ns) = &d.resource {
                self.namespaces.insert(
                    d.object.name.as_str(),
                    ns.metadata.labels.as_ref().unwrap_or(EMPTY_LABELS),
                );
            }
        }
        self.grants = Grants::new(unique.iter().filter_map(|d| match &d.resource {
            Resource::ReferenceGrant(g) => Some((d.object.namespace.clone(), (**g).clone())),
            _ => None,
        }));
        let selected = self.select_gateway(&unique, opts.gateway.as_ref(), &opts.gateway_class);
        // Without a Gateway to serve there is no snapshot, but the objects still get their
        // statuses (and Gateways of our class theirs) so `check` can show them.
        let (gateway, allowed, waypoint_for, role) = match selected {
            Some((g, a, w, r)) => (g, a, w, Some(r)),
            None => (
                GatewayRef {
                    namespace: String::new(),
                    name: String::new(),
                },
                AllowedNamespaces::Same,
                "service".to_string(),
                None,
            ),
        };
        let pods: Vec<(&Document, &Pod)> = unique
            .iter()
            .filter_map(|d| match &d.resource {
                Resource::Pod(p) => Some((*d, &**p)),
                _ => None,
            })
            .collect();
        let slices: Vec<(&Document, &EndpointSlice)> = unique
            .iter()
            .filter_map(|d| match &d.resource {
                Resource::EndpointSlice(s) => Some((*d, &**s)),
                _ => None,
            })
            .collect();

        let mut services = Vec::new();
        for d in &unique {
            match &d.resource {
                Resource::Service(svc) => {
                    let (info, issues) =
                        self.service_info(d, svc, &slices, &pods, &gateway, &allowed);
                    self.status(d, State::Accepted, issues);
                    services.push(info);
                }
                Resource::ServiceEntry(se) => {
                    let (info, issues) = self.service_entry_info(d, se, &gateway, &allowed);
                    self.status(d, State::Accepted, issues);
                    services.push(info);
                }
                Resource::Namespace(_) | Resource::Pod(_) | Resource::ReferenceGrant(_) => {
                    self.status(d, State::Accepted, Vec::new());
                }
                Resource::EndpointSlice(s) => {
                    let issues = match s
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    {
                        Some(_) => Vec::new(),
                        None => vec![StatusIssue {
                            severity: Severity::Warning,
                            reason: None,
                            field: format!("metadata.labels[{SERVICE_NAME_LABEL}]"),
                            message: "missing: this slice belongs to no Service and is not used"
                                .into(),
                        }],
                    };
                    self.status(d, State::Accepted, issues);
                }
                Resource::Gateway(_)
                | Resource::ListenerSet(_)
                | Resource::HttpRoute(_)
                | Resource::GrpcRoute(_)
                | Resource::TcpRoute(_) => {}
                Resource::Unsupported { api_version } => {
                    let reason = format!(
                        "kind {} ({api_version}) is not yet supported",
                        d.object.kind
                    );
                    self.status(d, State::Ignored(reason), Vec::new());
                }
            }
        }

        let mut by_key = HashMap::new();
        for (i, s) in services.iter().enumerate() {
            by_key.insert(s.key.clone(), i);
        }
        let listeners = self.attach_routes(&unique, &mut services, &by_key, opts, role, &gateway);
        self.attach_tcp_routes(&unique, &mut services, &by_key);
        // Without a Gateway to serve, the statuses above are all this build yields.
        role?;

        let mut by_host: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_vip = HashMap::new();
        for (i, s) in services.iter().enumerate() {
            for h in &s.hostnames {
                by_host.entry(h.clone()).or_default().push(i);
            }
            if s.source == ServiceSource::Service {
                by_host.entry(s.key.name.clone()).or_default().push(i);
            }
            for vip in &s.vips {
                by_vip.insert(*vip, i);
            }
        }
        let workloads = self.workloads(&pods, &gateway, &allowed, waypoint_for.as_str());
        for svc in &mut services {
            for port in &mut svc.ports {
                for e in &mut port.endpoints {
                    e.hbone = e
                        .pod
                        .as_ref()
                        .and_then(|_| workloads.get(&e.addr.ip()))
                        .filter(|w| w.ambient && w.namespace == svc.key.namespace)
                        .map(|w| w.identity.clone());
                }
            }
        }
        Some(Snapshot {
            version: opts.version,
            gateway,
            listeners,
            services,
            by_key,
            by_host,
            by_vip,
            workloads,
        })
    }

    /// Picks the Gateway this proxy serves and reports every Gateway's status: the one
    /// `--gateway` names (any class; a class other than istio-waypoint is the Gateway role),
    /// else the only istio-waypoint Gateway.
    fn select_gateway(
        &mut self,
        docs: &[&'a Document],
        wanted: Option<&GatewayRef>,
        gateway_class: &str,
    ) -> Option<(GatewayRef, AllowedNamespaces, String, Role)> {
        let gateways: Vec<(&Document, &Gateway)> = docs
            .iter()
            .filter_map(|d| match &d.resource {
                Resource::Gateway(g) => Some((*d, &**g)),
                _ => None,
            })
            .collect();
        let waypoints: Vec<&(&Document, &Gateway)> = gateways
            .iter()
            .filter(|(_, g)| g.spec.gateway_class_name == WAYPOINT_CLASS)
            .collect();
        let chosen: Option<&Document> = match wanted {
            Some(w) => {
                let found = gateways
                    .iter()
                    .find(|(d, _)| d.object.namespace == w.namespace && d.object.name == w.name);
                if found.is_none() {
                    self.global_errors.push(format!(
                        "--gateway {w}: no Gateway with that namespace/name in the folder (found: {})",
                        list_or_none(gateways.iter().map(|(d, _)| format!("{}/{}", d.object.namespace, d.object.name)))
                    ));
                }
                found.map(|(d, _)| *d)
            }
            None => match waypoints.as_slice() {
                [(d, _)] => Some(*d),
                [] => {
                    self.global_errors.push(format!(
                        "no Gateway of class {WAYPOINT_CLASS} in the folder: add one (listener mesh, port 15008, protocol HBONE), \
                         or serve a Gateway of another class with --gateway NAMESPACE/NAME"
                    ));
                    None
                }
                many => {
                    self.global_errors.push(format!(
                        "{} Gateways of class {WAYPOINT_CLASS} ({}): pick one with --gateway NAMESPACE/NAME",
                        many.len(),
                        many.iter()
                            .map(|(d, _)| format!("{}/{}", d.object.namespace, d.object.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    None
                }
            },
        };
        let mut result = None;
        for (d, g) in &gateways {
            let is_chosen = chosen.is_some_and(|c| std::ptr::eq(c, *d));
            let gateway_ref = GatewayRef {
                namespace: d.object.namespace.clone(),
                name: d.object.name.clone(),
            };
            if g.spec.gateway_class_name != WAYPOINT_CLASS {
                if is_chosen {
                    self.status(d, State::Accepted, Vec::new());
                    result = Some((
                        gateway_ref,
                        AllowedNamespaces::Same,
                        "service".to_string(),
                        Role::Gateway,
                    ));
                } else if g.spec.gateway_class_name == gateway_class {
                    self.status(
                        d,
                        State::Ignored(
                            "another Gateway of this class (served with --gateway)".into(),
                        ),
                        Vec::new(),
                    );
                } else {
                    let why = format!(
                        "gatewayClassName {} is neither {WAYPOINT_CLASS} nor {gateway_class}",
                        g.spec.gateway_class_name
                    );
                    self.status(d, State::Ignored(why), Vec::new());
                }
                continue;
            }
            if !is_chosen {
                self.status(
                    d,
                    State::Ignored("another waypoint's Gateway".into()),
                    Vec::new(),
                );
                continue;
            }
            let (allowed, issues) = check_waypoint_gateway(g);
            self.status(d, State::Accepted, issues);
            // Istio: which traffic the waypoint takes; services by default.
            let waypoint_for = g
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(WAYPOINT_FOR))
                .cloned()
                .unwrap_or_else(|| "service".into());
            result = Some((gateway_ref, allowed, waypoint_for, Role::Waypoint));
        }
        result
    }

    /// Istio's binding: the object's own `istio.io/use-waypoint` label wins over its
    /// namespace's; the value `none` opts out; the waypoint's namespace defaults to the object's.
    fn binding(
        &self,
        labels: &BTreeMap<String, String>,
        namespace: &str,
        gateway: &GatewayRef,
        allowed: &AllowedNamespaces,
    ) -> Binding {
        let ns_labels = self
            .namespaces
            .get(namespace)
            .copied()
            .unwrap_or(EMPTY_LABELS);
        let (source, src_labels) = if labels.contains_key(USE_WAYPOINT) {
            ("the object's", labels)
        } else if ns_labels.contains_key(USE_WAYPOINT) {
            ("its namespace's", ns_labels)
        } else {
            return Binding::NotBound(format!(
                "no {USE_WAYPOINT} label on it or its namespace (set {USE_WAYPOINT}={} to use this waypoint)",
                gateway.name
            ));
        };
        let name = src_labels
            .get(USE_WAYPOINT)
            .map(String::as_str)
            .unwrap_or_default();
        if name == "none" {
            return Binding::NotBound(format!("{source} label {USE_WAYPOINT}=none opts it out"));
        }
        let wp_ns = src_labels
            .get(USE_WAYPOINT_NAMESPACE)
            .map(String::as_str)
            .unwrap_or(namespace);
        if name != gateway.name || wp_ns != gateway.namespace {
            return Binding::NotBound(format!("{source} labels name waypoint {wp_ns}/{name}"));
        }
        if !allowed.allows(namespace, ns_labels, &gateway.namespace) {
            return Binding::NotBound(format!(
                "namespace {namespace} is not allowed by the Gateway's listener allowedRoutes"
            ));
        }
        Binding::Bound
    }

    /// Every pod with an IP, its identity, whether it is in the ambient mesh, and whether
    /// this waypoint takes traffic addressed to it (only a waypoint for workloads does).
    fn workloads(
        &self,
        pods: &[(&Document, &Pod)],
        gateway: &GatewayRef,
        allowed: &AllowedNamespaces,
        waypoint_for: &str,
    ) -> HashMap<IpAddr, WorkloadInfo> {
        let mut out = HashMap::new();
        for (d, p) in pods {
            let Some(ip) = pod_ip(p) else {
                continue;
            };
            let ns = d.object.namespace.as_str();
            let labels = p.metadata.labels.as_ref().unwrap_or(EMPTY_LABELS);
            let ns_labels = self.namespaces.get(ns).copied().unwrap_or(EMPTY_LABELS);
            let ambient = match labels.get(DATAPLANE_MODE).map(String::as_str) {
                Some("none") => false,
                Some("ambient") => true,
                _ => ns_labels.get(DATAPLANE_MODE).map(String::as_str) == Some("ambient"),
            };
            let binding = if matches!(waypoint_for, "workload" | "all") {
                self.binding(labels, ns, gateway, allowed)
            } else {
                Binding::NotBound(format!(
                    "waypoint {gateway} takes {waypoint_for} traffic ({WAYPOINT_FOR}); pod addresses need workload or all"
                ))
            };
            let service_account = p
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into());
            out.insert(
                ip,
                WorkloadInfo {
                    namespace: ns.to_string(),
                    name: d.object.name.clone(),
                    ip,
                    identity: WorkloadIdentity {
                        namespace: ns.to_string(),
                        service_account,
                    },
                    ambient,
                    binding,
                },
            );
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn service_info(
        &self,
        doc: &Document,
        svc: &Service,
        slices: &[(&Document, &EndpointSlice)],
        pods: &[(&Document, &Pod)],
        gateway: &GatewayRef,
        allowed: &AllowedNamespaces,
    ) -> (ServiceInfo, Vec<StatusIssue>) {
        let ns = doc.object.namespace.as_str();
        let name = doc.object.name.as_str();
        let mut issues = Vec::new();
        let spec = svc.spec.clone().unwrap_or_default();
        let mut vips = Vec::new();
        let ips = spec.cluster_ips.clone().unwrap_or_default();
        for (i, ip) in spec.cluster_ip.iter().chain(ips.iter()).enumerate() {
            if ip.is_empty() || ip == "None" {
                continue;
            }
            match ip.parse::<IpAddr>() {
                Ok(a) if !vips.contains(&a) => vips.push(a),
                Ok(_) => {}
                Err(_) => issues.push(issue_err(
                    if i == 0 {
                        "spec.clusterIP".to_string()
                    } else {
                        format!("spec.clusterIPs[{}]", i - 1)
                    },
                    format!("'{ip}' is not an IP address"),
                )),
            }
        }
        let own_slices: Vec<&EndpointSlice> = slices
            .iter()
            .filter(|(d, s)| {
                d.object.namespace == ns
                    && s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(SERVICE_NAME_LABEL))
                        .map(String::as_str)
                        == Some(name)
            })
            .map(|(_, s)| *s)
            .collect();
        let selected_pods: Vec<&Pod> = match &spec.selector {
            Some(sel) if !sel.is_empty() && own_slices.is_empty() => pods
                .iter()
                .filter(|(d, p)| {
                    d.object.namespace == ns && {
                        let labels = p.metadata.labels.as_ref().unwrap_or(EMPTY_LABELS);
                        sel.iter().all(|(k, v)| labels.get(k) == Some(v))
                    }
                })
                .map(|(_, p)| *p)
                .collect(),
            _ => Vec::new(),
        };
        let mut ports = Vec::new();
        for (i, p) in spec.ports.clone().unwrap_or_default().iter().enumerate() {
            let Ok(port) = u16::try_from(p.port) else {
                issues.push(issue_err(
                    format!("spec.ports[{i}].port"),
                    format!("{} is not a port number", p.port),
                ));
                continue;
            };
            let port_name = p.name.clone().unwrap_or_default();
            let endpoints = if !own_slices.is_empty() {
                slice_endpoints(&own_slices, &port_name)
            } else {
                pod_endpoints(&selected_pods, p.target_port.as_ref(), port)
            };
            ports.push(ServicePort {
                port,
                h2c: speaks_h2c(p.app_protocol.as_deref(), &port_name),
                name: port_name,
                app_protocol: p.app_protocol.clone(),
                endpoints,
                routes: None,
                route_names: Vec::new(),
                consumer_routes: HashMap::new(),
                tcp_route: None,
                tcp_route_name: None,
                balancer: RoundRobin::new(),
            });
        }
        let labels = svc.metadata.labels.as_ref().unwrap_or(EMPTY_LABELS);
        let binding = self.binding(labels, ns, gateway, allowed);
        let info = ServiceInfo {
            key: ServiceKey {
                namespace: ns.to_string(),
                name: name.to_string(),
            },
            source: ServiceSource::Service,
            hostnames: vec![
                format!("{name}.{ns}.svc.{CLUSTER_DOMAIN}"),
                format!("{name}.{ns}.svc"),
                format!("{name}.{ns}"),
            ],
            vips,
            ports,
            binding,
        };
        (info, issues)
    }

    fn service_entry_info(
        &self,
        doc: &Document,
        se: &ServiceEntry,
        gateway: &GatewayRef,
        allowed: &AllowedNamespaces,
    ) -> (ServiceInfo, Vec<StatusIssue>) {
        let ns = doc.object.namespace.as_str();
        let mut issues = Vec::new();
        let spec = &se.spec;
        if spec.hosts.is_empty() {
            issues.push(issue_err("spec.hosts", "at least one host is required"));
        }
        let mut vips = Vec::new();
        for (i, a) in spec.addresses.iter().enumerate() {
            match a.parse::<IpAddr>() {
                Ok(ip) => vips.push(ip),
                Err(_) => issues.push(StatusIssue {
                    severity: Severity::Warning,
                    reason: None,
                    field: format!("spec.addresses[{i}]"),
                    message: format!("'{a}' is not a single IP address; CIDR ranges are not supported yet and are ignored"),
                }),
            }
        }
        let resolution = spec.resolution.as_deref().unwrap_or("NONE");
        if resolution != "STATIC" && !spec.endpoints.is_empty() {
            issues.push(StatusIssue {
                severity: Severity::Warning,
                reason: None,
                field: "spec.resolution".into(),
                message: format!("resolution {resolution} with endpoints: endpoints are used as static addresses"),
            });
        }
        let mut ports = Vec::new();
        for (i, p) in spec.ports.iter().enumerate() {
            let Ok(port) = u16::try_from(p.number) else {
                issues.push(issue_err(
                    format!("spec.ports[{i}].number"),
                    format!("{} is not a port number", p.number),
                ));
                continue;
            };
            let mut endpoints = Vec::new();
            for (j, e) in spec.endpoints.iter().enumerate() {
                let Ok(ip) = e.address.parse::<IpAddr>() else {
                    issues.push(issue_err(
                        format!("spec.endpoints[{j}].address"),
                        format!(
                            "'{}' is not an IP address; DNS endpoints are not supported yet",
                            e.address
                        ),
                    ));
                    continue;
                };
                let target = e
                    .ports
                    .get(&p.name)
                    .copied()
                    .or(p.target_port)
                    .unwrap_or(p.number);
                match u16::try_from(target) {
                    Ok(t) => endpoints.push(Endpoint {
                        addr: SocketAddr::new(ip, t),
                        pod: None,
                        hbone: None,
                    }),
                    Err(_) => issues.push(issue_err(
                        format!("spec.endpoints[{j}].ports"),
                        format!("{target} is not a port number"),
                    )),
                }
            }
            ports.push(ServicePort {
                port,
                name: p.name.clone(),
                app_protocol: p.protocol.clone(),
                h2c: speaks_h2c(p.protocol.as_deref(), &p.name),
                endpoints,
                routes: None,
                route_names: Vec::new(),
                consumer_routes: HashMap::new(),
                tcp_route: None,
                tcp_route_name: None,
                balancer: RoundRobin::new(),
            });
        }
        let labels = se.metadata.labels.as_ref().unwrap_or(EMPTY_LABELS);
        let binding = self.binding(labels, ns, gateway, allowed);
        let info = ServiceInfo {
            key: ServiceKey {
                namespace: ns.to_string(),
                name: doc.object.name.clone(),
            },
            source: ServiceSource::ServiceEntry,
            hostnames: spec.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            vips,
            ports,
            binding,
        };
        (info, issues)
    }

    /// Compiles every TCPRoute and hangs it on the ports it names. One TCPRoute per port: when
    /// several claim a port, the oldest wins (then the first by namespace/name), as Gateway API
    /// resolves conflicts, and the others are told so.
    fn attach_tcp_routes(
        &mut self,
        docs: &[&'a Document],
        services: &mut [ServiceInfo],
        by_key: &HashMap<ServiceKey, usize>,
    ) {
        let mut routes: Vec<(&Document, &gateway_api::experimental::tcproutes::TcpRoute)> = docs
            .iter()
            .filter_map(|d| match &d.resource {
                Resource::TcpRoute(r) => Some((*d, &**r)),
                _ => None,
            })
            .collect();
        routes.sort_by(|(a, ra), (b, rb)| {
            let ta = ra.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let tb = rb.metadata.creation_timestamp.as_ref().map(|t| t.0);
            (ta.is_none(), ta, &a.object.namespace, &a.object.name).cmp(&(
                tb.is_none(),
                tb,
                &b.object.namespace,
                &b.object.name,
            ))
        });
        for (d, route) in routes {
            let (parents, mut issues) = routing::tcp_parent_services(route);
            let lookup = Lookup {
                services,
                by_key,
                grants: &self.grants,
                from_kind: "TCPRoute",
                parents: parents.iter().map(|p| p.service.clone()).collect(),
            };
            let (compiled, compile_issues) = routing::compile_tcp_route(route, &lookup);
            issues.extend(compile_issues);
            let compiled = Arc::new(compiled);
            let mut issues: Vec<StatusIssue> = issues.into_iter().map(StatusIssue::from).collect();
            let (targets, not_ours) = resolve_parents(&parents, services, by_key, &mut issues);
            let mut served = 0;
            for ParentTarget {
                parent: i,
                service: idx,
                ports,
            } in targets
            {
                let field = format!("spec.parentRefs[{i}]");
                let svc_key = key_str(&services[idx].key);
                for p in ports {
                    // resolve_parents only returns ports the service has.
                    let Some(sp) = services[idx].ports.iter_mut().find(|sp| sp.port == p) else {
                        continue;
                    };
                    if let Some(winner) = &sp.tcp_route_name {
                        issues.push(StatusIssue {
                            severity: Severity::Warning,
                            reason: None,
                            field: field.clone(),
                            message: format!("port {p} of {svc_key} already has TCPRoute {winner}, which is older; this one is not used there"),
                        });
                        continue;
                    }
                    if !sp.route_names.is_empty() {
                        issues.push(issue_err(
                            field.clone(),
                            format!("port {p} of {svc_key} also has HTTPRoutes ({}); a port is HTTP or TCP, not both", sp.route_names.join(", ")),
                        ));
                        continue;
                    }
                    sp.tcp_route = Some(compiled.clone());
                    sp.tcp_route_name = Some(compiled.id.to_string());
                    served += 1;
                }
            }
            let mut not_ours = not_ours;
            let gateway_parents = route
                .spec
                .parent_refs
                .iter()
                .flatten()
                .filter(|p| p.kind.as_deref().unwrap_or("Gateway") == "Gateway")
                .count();
            if gateway_parents > 0 {
                not_ours.push("TCPRoutes on Gateway listeners are not served yet".into());
            }
            let has_parents = !parents.is_empty() || gateway_parents > 0;
            let state = route_state(served > 0, has_parents, &issues, &not_ours);
            self.status(d, state, issues);
        }
    }

    /// Compiles every HTTPRoute, hangs it on the ports of the bound services it names
    /// (waypoint) and attaches it to the listeners of the Gateways of our class (status, and
    /// the served Gateway's listeners, which are returned).
    fn attach_routes(
        &mut self,
        docs: &[&'a Document],
        services: &mut [ServiceInfo],
        by_key: &HashMap<ServiceKey, usize>,
        opts: &BuildOptions,
        role: Option<Role>,
        served_gateway: &GatewayRef,
    ) -> Vec<GatewayPort> {
        struct Compiled<'d> {
            doc: &'d Document,
            kind: &'static str,
            route: Arc<CompiledRoute>,
            issues: Vec<StatusIssue>,
            hostnames: Vec<String>,
            gateway_parents: Vec<routing::ParentGateway>,
            service_parents: usize,
            on_service: bool,
            not_ours: Vec<String>,
        }
        // Keyed by (service, port, consumer namespace); None for producer routes.
        type AttachKey = (usize, u16, Option<String>);
        let mut attached: HashMap<AttachKey, Vec<Arc<CompiledRoute>>> = HashMap::new();
        let mut compiled_routes: Vec<Compiled<'_>> = Vec::new();
        for d in docs {
            let converted;
            let (kind, route) = match &d.resource {
                Resource::HttpRoute(route) => ("HTTPRoute", &**route),
                Resource::GrpcRoute(route) => match routing::grpc_to_http(route) {
                    Ok(http) => {
                        converted = http;
                        ("GRPCRoute", &converted)
                    }
                    Err(issue) => {
                        self.status(d, State::Error, vec![issue.into()]);
                        continue;
                    }
                },
                _ => continue,
            };
            let (parents, mut issues) = routing::parent_services(route);
            let gateway_parents = routing::gateway_parents(route);
            let lookup = Lookup {
                services,
                by_key,
                grants: &self.grants,
                from_kind: kind,
                parents: parents.iter().map(|p| p.service.clone()).collect(),
            };
            let (compiled, compile_issues) = routing::compile_http_route(route, &lookup);
            // Hostnames do matter on Gateway listeners; the compiler's GAMMA warning only
            // applies when the route has a Service parent.
            issues.extend(compile_issues.into_iter().filter(|i| {
                !(parents.is_empty() && !gateway_parents.is_empty() && i.field == "spec.hostnames")
            }));
            let compiled = Arc::new(compiled);
            let mut issues: Vec<StatusIssue> = issues.into_iter().map(StatusIssue::from).collect();
            let (targets, not_ours) = resolve_parents(&parents, services, by_key, &mut issues);
            for t in &targets {
                let service_ns = &services[t.service].key.namespace;
                let consumer =
                    (d.object.namespace != *service_ns).then(|| d.object.namespace.clone());
                for p in &t.ports {
                    attached
                        .entry((t.service, *p, consumer.clone()))
                        .or_default()
                        .push(compiled.clone());
                }
            }
            compiled_routes.push(Compiled {
                doc: d,
                kind,
                route: compiled,
                issues,
                hostnames: route.spec.hostnames.clone().unwrap_or_default(),
                gateway_parents,
                service_parents: parents.len(),
                on_service: !targets.is_empty(),
                not_ours,
            });
        }
        for ((idx, port, consumer), routes) in attached {
            if let Some(sp) = services[idx].ports.iter_mut().find(|p| p.port == port) {
                sp.route_names
                    .extend(routes.iter().map(|r| r.id.to_string()));
                sp.route_names.sort();
                match consumer {
                    None => sp.routes = Some(RouteTable::new(routes)),
                    Some(ns) => {
                        sp.consumer_routes.insert(ns, RouteTable::new(routes));
                    }
                }
            }
        }

        // The Gateways that get a status: our class's, and the served one whatever its class.
        let gateway_docs: Vec<(ServiceKey, &Gateway)> = docs
            .iter()
            .filter_map(|d| match &d.resource {
                Resource::Gateway(g) => Some((d, &**g)),
                _ => None,
            })
            .filter(|(d, g)| {
                g.spec.gateway_class_name == opts.gateway_class
                    || (role == Some(Role::Gateway)
                        && d.object.namespace == served_gateway.namespace
                        && d.object.name == served_gateway.name)
            })
            .map(|(d, g)| {
                (
                    ServiceKey {
                        namespace: d.object.namespace.clone(),
                        name: d.object.name.clone(),
                    },
                    g,
                )
            })
            .collect();
        let inputs: Vec<routing::gateway::GatewayInput<'_>> = gateway_docs
            .iter()
            .map(|(key, g)| routing::gateway::GatewayInput {
                gateway: key.clone(),
                spec: g,
            })
            .collect();
        let route_inputs: Vec<routing::gateway::RouteInput<'_>> = compiled_routes
            .iter()
            .map(|c| routing::gateway::RouteInput {
                kind: c.kind,
                namespace: &c.doc.object.namespace,
                hostnames: &c.hostnames,
                parents: &c.gateway_parents,
                resolved_refs: resolved_refs(&c.issues),
            })
            .collect();
        let mut listener_sets = Vec::new();
        for d in docs {
            let Resource::ListenerSet(ls) = &d.resource else {
                continue;
            };
            match routing::gateway::ListenerSetInput::new(ls, &d.object.namespace, &d.object.name) {
                Ok(input) => listener_sets.push((d, input)),
                Err(e) => self.status(d, State::Error, vec![issue_err("spec.listeners", e)]),
            }
        }
        let set_inputs: Vec<routing::gateway::ListenerSetInput> =
            listener_sets.iter().map(|(_, i)| i.clone()).collect();
        let namespaces = &self.namespaces;
        let labels = |ns: &str| namespaces.get(ns).map(|l| (*l).clone());
        let attachment = routing::gateway::attach(&inputs, &set_inputs, &route_inputs, &labels);
        for (d, input) in &listener_sets {
            let state = match attachment.listener_sets.iter().find(|s| s.key == input.key) {
                Some(s) if s.accepted => State::Accepted,
                Some(_) => State::Ignored(format!(
                    "Gateway {} does not allow it (spec.allowedListeners)",
                    input.gateway
                )),
                None => State::Ignored(format!(
                    "its Gateway {} is not of class {} or not in the folder",
                    input.gateway, opts.gateway_class
                )),
            };
            self.status(d, state, Vec::new());
        }
        let states = attachment.gateways.clone();
        let parent_statuses = attachment.routes.clone();

        let mut listeners: Vec<GatewayPort> = Vec::new();
        if role == Some(Role::Gateway) {
            let is_served = |k: &ServiceKey| {
                k.namespace == served_gateway.namespace && k.name == served_gateway.name
            };
            let own = states
                .iter()
                .filter(|g| is_served(&g.gateway))
                .flat_map(|g| g.listeners.iter());
            let from_sets = attachment
                .listener_sets
                .iter()
                .filter(|s| s.accepted && is_served(&s.gateway))
                .flat_map(|s| s.listeners.iter());
            for l in own.chain(from_sets).filter(|l| l.served) {
                let routes = l
                    .routes
                    .iter()
                    .map(|a| (compiled_routes[a.route].route.clone(), a.hostnames.clone()))
                    .collect();
                let lr = ListenerRoutes::new(l.name.clone(), l.port, l.hostname.clone(), routes);
                match listeners.iter_mut().find(|p| p.port == l.port) {
                    Some(p) => p.listeners.push(lr),
                    None => listeners.push(GatewayPort {
                        port: l.port,
                        listeners: vec![lr],
                    }),
                }
            }
            for p in &mut listeners {
                p.listeners
                    .sort_by_key(|l| routing::hostname::specificity(l.hostname.as_deref()));
            }
            listeners.sort_by_key(|p| p.port);
        }

        let mut route_statuses = Vec::new();
        for (c, parents) in compiled_routes.into_iter().zip(parent_statuses) {
            let Compiled {
                doc,
                kind,
                mut issues,
                on_service,
                not_ours,
                service_parents,
                gateway_parents,
                ..
            } = c;
            let mut on_gateway = false;
            for p in &parents {
                match p.conditions.iter().find(|c| c.kind == "Accepted") {
                    Some(a) if a.is_true() => on_gateway = true,
                    Some(a) => issues.push(StatusIssue {
                        severity: Severity::Error,
                        reason: Some(IssueReason::NoMatchingParent),
                        field: format!("spec.parentRefs[{}]", p.parent.index),
                        message: format!(
                            "not accepted by Gateway {} ({}): {}",
                            p.parent.gateway, a.reason, a.message
                        ),
                    }),
                    None => {}
                }
            }
            let mut not_ours = not_ours;
            let ours: Vec<&ServiceKey> = parents.iter().map(|p| &p.parent.gateway).collect();
            for g in &gateway_parents {
                if !ours.contains(&&g.gateway) {
                    not_ours.push(format!(
                        "Gateway {} is not of class {} or not in the folder",
                        g.gateway, opts.gateway_class
                    ));
                }
            }
            let has_parents = service_parents > 0 || !gateway_parents.is_empty();
            let state = route_state(on_service || on_gateway, has_parents, &issues, &not_ours);
            self.status(doc, state, issues);
            if !parents.is_empty() {
                route_statuses.push(RouteStatus {
                    kind: kind.into(),
                    namespace: doc.object.namespace.clone(),
                    name: doc.object.name.clone(),
                    parents,
                });
            }
        }
        self.gateway_status = GatewayStatus {
            gateways: states,
            listener_sets: attachment.listener_sets,
            routes: route_statuses,
        };
        listeners
    }
}

/// A route's ResolvedRefs condition: the first backend problem, or all resolved.
fn resolved_refs(issues: &[StatusIssue]) -> routing::gateway::Condition {
    let problem = issues.iter().find_map(|i| match i.reason {
        Some(
            r @ (IssueReason::BackendNotFound
            | IssueReason::RefNotPermitted
            | IssueReason::InvalidKind),
        ) if i.severity == Severity::Error => Some((r, &i.message)),
        _ => None,
    });
    match problem {
        Some((reason, message)) => routing::gateway::Condition::new(
            "ResolvedRefs",
            false,
            format!("{reason:?}"),
            message.clone(),
        ),
        None => routing::gateway::Condition::new(
            "ResolvedRefs",
            true,
            "ResolvedRefs",
            "all references resolved",
        ),
    }
}

/// A bound service port set one of a route's parentRefs names.
struct ParentTarget {
    /// Index in the route's parentRefs, for field paths.
    parent: usize,
    /// Index in the snapshot's services.
    service: usize,
    ports: Vec<u16>,
}

/// The bound services and ports a route's parents name. Unknown services and ports become errors in `issues`; services this waypoint does
/// not serve are returned as notes (the route is another waypoint's business).
fn resolve_parents(
    parents: &[routing::ParentService],
    services: &[ServiceInfo],
    by_key: &HashMap<ServiceKey, usize>,
    issues: &mut Vec<StatusIssue>,
) -> (Vec<ParentTarget>, Vec<String>) {
    let mut targets = Vec::new();
    let mut not_ours = Vec::new();
    for (i, parent) in parents.iter().enumerate() {
        let field = format!("spec.parentRefs[{i}]");
        let Some(&idx) = by_key.get(&parent.service) else {
            issues.push(issue_err(
                field,
                format!("parent Service {} not found", key_str(&parent.service)),
            ));
            continue;
        };
        let svc = &services[idx];
        let ports: Vec<u16> = match parent.port {
            Some(p) if svc.port(p).is_none() => {
                issues.push(issue_err(
                    format!("{field}.port"),
                    format!("service {} has no port {p}", key_str(&svc.key)),
                ));
                continue;
            }
            Some(p) => vec![p],
            None => svc.ports.iter().map(|p| p.port).collect(),
        };
        if let Binding::NotBound(why) = &svc.binding {
            not_ours.push(format!("{}: {why}", key_str(&svc.key)));
            continue;
        }
        targets.push(ParentTarget {
            parent: i,
            service: idx,
            ports,
        });
    }
    (targets, not_ours)
}

/// A route that attached nowhere, without an error of its own, belongs to other waypoints.
fn route_state(
    served: bool,
    has_parents: bool,
    issues: &[StatusIssue],
    not_ours: &[String],
) -> State {
    let route_error = issues.iter().any(|i| i.severity == Severity::Error);
    if !served && !route_error && has_parents {
        State::Ignored(format!(
            "no parent is served by this waypoint ({})",
            not_ours.join("; ")
        ))
    } else {
        State::Accepted
    }
}

/// Whether a service port speaks HTTP/2 in cleartext, as Kubernetes (`appProtocol`) and Istio
/// (`appProtocol`, a ServiceEntry port's protocol, or the port name's protocol prefix) declare it.
fn speaks_h2c(app_protocol: Option<&str>, port_name: &str) -> bool {
    let declared = app_protocol.unwrap_or_else(|| port_name.split('-').next().unwrap_or_default());
    ["kubernetes.io/h2c", "h2c", "http2", "grpc"]
        .iter()
        .any(|p| p.eq_ignore_ascii_case(declared))
}

/// The Kubernetes label tying an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

struct Lookup<'s> {
    services: &'s [ServiceInfo],
    by_key: &'s HashMap<ServiceKey, usize>,
    grants: &'s Grants,
    /// The route kind asking, for ReferenceGrants.
    from_kind: &'static str,
    /// The route's Service parents: a (GAMMA consumer) route may always forward to the
    /// service it is attached to, whatever its namespace.
    parents: Vec<ServiceKey>,
}

impl BackendLookup for Lookup<'_> {
    fn check_service(&self, service: &ServiceKey, port: u16) -> Result<(), String> {
        let Some(&i) = self.by_key.get(service) else {
            return Err(format!("service {} not found", key_str(service)));
        };
        let s = &self.services[i];
        if s.source != ServiceSource::Service {
            return Err(format!(
                "{} is a ServiceEntry; backendRefs of kind ServiceEntry are not supported yet",
                key_str(service)
            ));
        }
        if s.port(port).is_none() {
            return Err(format!("service {} has no port {port}", key_str(service)));
        }
        Ok(())
    }

    fn reference_permitted(&self, from_namespace: &str, to: &ServiceKey) -> bool {
        self.parents.contains(to) || self.grants.permits(self.from_kind, from_namespace, to)
    }
}

/// Ready addresses of the slices' port named like the service port (Kubernetes pairs them by
/// name; an unnamed port matches the unnamed slice port).
fn slice_endpoints(slices: &[&EndpointSlice], port_name: &str) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for s in slices {
        let Some(sp) = s
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
        else {
            continue;
        };
        let Some(port) = sp.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for e in s.endpoints.iter().flatten() {
            // Kubernetes: a nil `ready` means ready.
            if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            let pod = e
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.clone());
            for a in &e.addresses {
                if let Ok(ip) = a.parse::<IpAddr>() {
                    out.push(Endpoint {
                        addr: SocketAddr::new(ip, port),
                        pod: pod.clone(),
                        hbone: None,
                    });
                }
            }
        }
    }
    out
}

/// A pod's IP from `status.podIP`; `None` for a pod not (yet) scheduled.
pub fn pod_ip(pod: &Pod) -> Option<IpAddr> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
}

/// Endpoints of the pods a selector picks, when no EndpointSlice is given (as the endpoint
/// controller would make them): pod IP and the target port, by number or container port name.
fn pod_endpoints(pods: &[&Pod], target: Option<&IntOrString>, service_port: u16) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for p in pods {
        let Some(ip) = pod_ip(p) else {
            continue;
        };
        let port = match target {
            None => Some(service_port),
            Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
            Some(IntOrString::String(name)) => p.spec.as_ref().and_then(|s| {
                s.containers
                    .iter()
                    .flat_map(|c| c.ports.iter().flatten())
                    .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                    .and_then(|cp| u16::try_from(cp.container_port).ok())
            }),
        };
        if let Some(port) = port {
            out.push(Endpoint {
                addr: SocketAddr::new(ip, port),
                pod: p.metadata.name.clone(),
                hbone: None,
            });
        }
    }
    out
}

/// Which namespaces' services the waypoint's `mesh` listener admits (`allowedRoutes`).
#[derive(Clone, Debug)]
enum AllowedNamespaces {
    Same,
    All,
    Selector(LabelSelector),
}

impl AllowedNamespaces {
    fn allows(&self, ns: &str, ns_labels: &BTreeMap<String, String>, gateway_ns: &str) -> bool {
        match self {
            AllowedNamespaces::Same => ns == gateway_ns,
            AllowedNamespaces::All => true,
            AllowedNamespaces::Selector(sel) => selector_matches(sel, ns_labels),
        }
    }
}

fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let exprs: Vec<routing::gateway::SelectorRequirement<'_>> = sel
        .match_expressions
        .iter()
        .flatten()
        .map(|e| routing::gateway::SelectorRequirement {
            key: &e.key,
            operator: &e.operator,
            values: e.values.as_deref().unwrap_or_default(),
        })
        .collect();
    routing::gateway::labels_match(sel.match_labels.as_ref(), &exprs, labels)
}

/// Checks the Gateway is shaped as Istio's waypoint expects and reads its `allowedRoutes`.
fn check_waypoint_gateway(g: &Gateway) -> (AllowedNamespaces, Vec<StatusIssue>) {
    let mut issues = Vec::new();
    let listener = g
        .spec
        .listeners
        .iter()
        .enumerate()
        .find(|(_, l)| l.protocol == "HBONE" && l.port == 15008);
    let Some((i, l)) = listener else {
        issues.push(issue_err(
            "spec.listeners",
            "a waypoint Gateway needs a listener with protocol HBONE on port 15008 (conventionally named mesh)",
        ));
        return (AllowedNamespaces::Same, issues);
    };
    let allowed = match l.allowed_routes.as_ref().and_then(|a| a.namespaces.as_ref()) {
        None => AllowedNamespaces::Same,
        Some(n) => match n.from.as_ref().map(|f| format!("{f:?}")).as_deref() {
            None | Some("Same") => AllowedNamespaces::Same,
            Some("All") => AllowedNamespaces::All,
            Some("Selector") => match &n.selector {
                Some(sel) => AllowedNamespaces::Selector(LabelSelector {
                    match_labels: sel.match_labels.clone(),
                    match_expressions: sel.match_expressions.as_ref().map(|v| {
                        v.iter()
                            .map(|e| k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                                key: e.key.clone(),
                                operator: e.operator.clone(),
                                values: e.values.clone(),
                            })
                            .collect()
                    }),
                }),
                None => {
                    issues.push(issue_err(
                        format!("spec.listeners[{i}].allowedRoutes.namespaces.selector"),
                        "from: Selector needs a selector",
                    ));
                    AllowedNamespaces::Same
                }
            },
            Some(other) => {
                issues.push(issue_err(
                    format!("spec.listeners[{i}].allowedRoutes.namespaces.from"),
                    format!("{other} is not All, Same or Selector"),
                ));
                AllowedNamespaces::Same
            }
        },
    };
    (allowed, issues)
}

fn issue_err(field: impl Into<String>, message: impl Into<String>) -> StatusIssue {
    StatusIssue {
        severity: Severity::Error,
        reason: None,
        field: field.into(),
        message: message.into(),
    }
}

/// Some messages (a regex parser's, say) span lines; a log line must not.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn list_or_none(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests;
