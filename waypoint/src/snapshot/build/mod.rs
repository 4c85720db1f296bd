//! Building a [`Snapshot`] from a folder's objects, as a short ordered list of steps; each
//! resource family has its own file beside this one.

use super::{
    BuildOptions, GatewayStatus, Grants, ResourceStatus, ServiceInfo, ServiceSource, Snapshot,
    State, StatusIssue, WorkloadInfo,
};
use crate::config::{Document, ObjectRef, Origin, Resource};
use routing::{ServiceKey, Severity};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

mod destination_rules;
mod gateway_listeners;
mod gateway_selection;
mod http_routes;
mod parents;
mod security;
mod services;
mod tcp_routes;
mod virtual_services;
mod waypoint_binding;

pub use services::pod_ip;

/// The objects of one build, indexed, and the statuses being collected.
pub(super) struct Builder<'a> {
    docs: &'a [Document],
    pub(super) statuses: Vec<ResourceStatus>,
    pub(super) global_errors: Vec<String>,
    pub(super) gateway_status: GatewayStatus,
    grants: Grants,
    namespaces: HashMap<&'a str, &'a BTreeMap<String, String>>,
}

const EMPTY_LABELS: &BTreeMap<String, String> = &BTreeMap::new();

impl<'a> Builder<'a> {
    pub(super) fn new(docs: &'a [Document]) -> Self {
        Builder {
            docs,
            statuses: Vec::new(),
            global_errors: Vec::new(),
            gateway_status: GatewayStatus::default(),
            grants: Grants::default(),
            namespaces: HashMap::new(),
        }
    }

    /// Records how `doc` fared; any error issue makes its state `Error`, except for an
    /// object loaded fail closed (security policies), whose errors do not block the load.
    fn status(&mut self, doc: &Document, state: State, issues: Vec<StatusIssue>) {
        let state =
            if state != State::FailClosed && issues.iter().any(|i| i.severity == Severity::Error) {
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

    /// The build, step by step. Every step reports on the objects it reads, so even a folder
    /// without a Gateway to serve (no snapshot) gets a status for each object.
    pub(super) fn run(&mut self, opts: &BuildOptions) -> Option<Snapshot> {
        let unique = self.without_duplicates();
        self.index_namespaces_and_grants(&unique);
        let served = self.select_gateway(&unique, opts.gateway.as_ref(), &opts.gateway_class);
        let mut services = self.services(&unique, &served);
        self.accept_plain_objects(&unique);
        let by_key = index_by_key(&services);
        let listeners = self.attach_routes(&unique, &mut services, &by_key, opts, &served);
        self.attach_tcp_routes(&unique, &mut services, &by_key);
        self.destination_rules(&unique, &mut services, &served.gateway.namespace);
        self.attach_virtual_services(&unique, &mut services, &served.gateway.namespace);
        let security = self.security(&unique, &services, &served, &opts.trust_domain);
        served.role?;
        let workloads = self.workloads(&unique, &served);
        mark_hbone_endpoints(&mut services, &workloads);
        let (by_host, by_vip) = index_by_address(&services);
        Some(Snapshot {
            version: opts.version,
            gateway: served.gateway,
            listeners,
            services,
            by_key,
            by_host,
            by_vip,
            workloads,
            security,
        })
    }

    /// The objects to build from: a second object with the same kind, namespace and name is
    /// an error, since it would silently replace the first.
    fn without_duplicates(&mut self) -> Vec<&'a Document> {
        let mut seen: HashMap<&ObjectRef, &Origin> = HashMap::new();
        let mut unique: Vec<&'a Document> = Vec::new();
        for d in self.docs {
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
        unique
    }

    fn index_namespaces_and_grants(&mut self, docs: &[&'a Document]) {
        for d in docs {
            if let Resource::Namespace(ns) = &d.resource {
                self.namespaces.insert(
                    d.object.name.as_str(),
                    ns.metadata.labels.as_ref().unwrap_or(EMPTY_LABELS),
                );
            }
        }
        self.grants = Grants::new(docs.iter().filter_map(|d| match &d.resource {
            Resource::ReferenceGrant(g) => Some((d.object.namespace.clone(), (**g).clone())),
            _ => None,
        }));
    }

    /// Objects read for what they say about others (namespaces, pods, grants, slices) are
    /// accepted as they are; kinds this version does not act on are reported as ignored.
    fn accept_plain_objects(&mut self, docs: &[&'a Document]) {
        for d in docs {
            match &d.resource {
                Resource::Namespace(_) | Resource::Pod(_) | Resource::ReferenceGrant(_) => {
                    self.status(d, State::Accepted, Vec::new());
                }
                Resource::EndpointSlice(s) => {
                    let issues = services::check_slice(s);
                    self.status(d, State::Accepted, issues);
                }
                Resource::Unsupported { api_version } => {
                    let reason = format!(
                        "kind {} ({api_version}) is not yet supported",
                        d.object.kind
                    );
                    self.status(d, State::Ignored(reason), Vec::new());
                }
                _ => {}
            }
        }
    }
}

/// The documents holding one kind of resource, picked by `pick`.
fn of_kind<'d, T: ?Sized>(
    docs: &[&'d Document],
    pick: impl Fn(&'d Resource) -> Option<&'d T>,
) -> Vec<(&'d Document, &'d T)> {
    docs.iter()
        .filter_map(|d| pick(&d.resource).map(|r| (*d, r)))
        .collect()
}

/// A namespaced object's namespace and name, as the key services and Gateways go by.
fn object_key(d: &Document) -> ServiceKey {
    ServiceKey {
        namespace: d.object.namespace.clone(),
        name: d.object.name.clone(),
    }
}

fn index_by_key(services: &[ServiceInfo]) -> HashMap<ServiceKey, usize> {
    services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.key.clone(), i))
        .collect()
}

/// The lookups a request's authority goes through: every hostname (and a Service's short
/// name) and every VIP.
fn index_by_address(
    services: &[ServiceInfo],
) -> (HashMap<String, Vec<usize>>, HashMap<IpAddr, usize>) {
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
    (by_host, by_vip)
}

/// An endpoint backed by an ambient pod of the service's namespace is reached over HBONE with
/// that pod's identity.
fn mark_hbone_endpoints(services: &mut [ServiceInfo], workloads: &HashMap<IpAddr, WorkloadInfo>) {
    for svc in services {
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
}

fn issue_err(field: impl Into<String>, message: impl Into<String>) -> StatusIssue {
    StatusIssue {
        severity: Severity::Error,
        reason: None,
        field: field.into(),
        message: message.into(),
    }
}
