//! Destinations: Services (endpoints from EndpointSlices, else from the Pods their selector
//! picks) and ServiceEntries (static endpoints).

use super::gateway_selection::ServedGateway;
use super::{issue_err, object_key, of_kind, Builder, EMPTY_LABELS};
use crate::config::{Document, Resolution, Resource, ServiceEntry};
use crate::snapshot::{
    Endpoint, Protocol, ServiceInfo, ServicePort, ServiceSource, State, StatusIssue, CLUSTER_DOMAIN,
};
use k8s_openapi::api::core::v1::{Pod, Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use routing::Severity;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// The Kubernetes label tying an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

impl<'a> Builder<'a> {
    /// Every Service and ServiceEntry as a destination, each given its status.
    pub(super) fn services(
        &mut self,
        docs: &[&'a Document],
        served: &ServedGateway,
    ) -> Vec<ServiceInfo> {
        let pods = of_kind(docs, |r| match r {
            Resource::Pod(p) => Some(&**p),
            _ => None,
        });
        let slices = of_kind(docs, |r| match r {
            Resource::EndpointSlice(s) => Some(&**s),
            _ => None,
        });
        let mut services = Vec::new();
        for d in docs {
            let (info, issues) = match &d.resource {
                Resource::Service(svc) => self.service_info(d, svc, &slices, &pods, served),
                Resource::ServiceEntry(se) => self.service_entry_info(d, se, served),
                _ => continue,
            };
            self.status(d, State::Accepted, issues);
            services.push(info);
        }
        services
    }

    fn service_info(
        &self,
        doc: &Document,
        svc: &Service,
        slices: &[(&Document, &EndpointSlice)],
        pods: &[(&Document, &Pod)],
        served: &ServedGateway,
    ) -> (ServiceInfo, Vec<StatusIssue>) {
        let ns = doc.object.namespace.as_str();
        let name = doc.object.name.as_str();
        let spec = svc.spec.clone().unwrap_or_default();
        let (vips, mut issues) = cluster_ips(&spec);
        let own_slices: Vec<&EndpointSlice> = slices
            .iter()
            .filter(|(d, s)| d.object.namespace == ns && slice_service(s) == Some(name))
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
        for (i, p) in spec.ports.iter().flatten().enumerate() {
            let Some(port) = port_number(p.port, || format!("spec.ports[{i}].port"), &mut issues)
            else {
                continue;
            };
            let port_name = p.name.clone().unwrap_or_default();
            let endpoints = if !own_slices.is_empty() {
                slice_endpoints(&own_slices, &port_name)
            } else {
                pod_endpoints(&selected_pods, p.target_port.as_ref(), port)
            };
            ports.push(service_port(
                port,
                port_name,
                p.app_protocol.clone(),
                endpoints,
            ));
        }
        let labels = svc.metadata.labels.as_ref().unwrap_or(EMPTY_LABELS);
        let info = ServiceInfo {
            key: object_key(doc),
            source: ServiceSource::Service,
            hostnames: vec![
                format!("{name}.{ns}.svc.{CLUSTER_DOMAIN}"),
                format!("{name}.{ns}.svc"),
                format!("{name}.{ns}"),
            ],
            vips,
            ports,
            binding: self.binding(labels, ns, served),
            destination_rules: Vec::new(),
            virtual_services: Vec::new(),
        };
        (info, issues)
    }

    fn service_entry_info(
        &self,
        doc: &Document,
        se: &ServiceEntry,
        served: &ServedGateway,
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
        let resolution = spec.resolution.unwrap_or_default();
        if resolution != Resolution::Static && !spec.endpoints.is_empty() {
            issues.push(StatusIssue {
                severity: Severity::Warning,
                reason: None,
                field: "spec.resolution".into(),
                message: format!(
                    "resolution {} with endpoints: endpoints are used as static addresses",
                    resolution.as_str()
                ),
            });
        }
        let mut ports = Vec::new();
        for (i, p) in spec.ports.iter().enumerate() {
            let field = || format!("spec.ports[{i}].number");
            let Some(port) = port_number(p.number, field, &mut issues) else {
                continue;
            };
            let endpoints = entry_endpoints(se, p, &mut issues);
            ports.push(service_port(
                port,
                p.name.clone(),
                p.protocol.clone(),
                endpoints,
            ));
        }
        let labels = se.metadata.labels.as_ref().unwrap_or(EMPTY_LABELS);
        let info = ServiceInfo {
            key: object_key(doc),
            source: ServiceSource::ServiceEntry,
            hostnames: spec.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            vips,
            ports,
            binding: self.binding(labels, ns, served),
            destination_rules: Vec::new(),
            virtual_services: Vec::new(),
        };
        (info, issues)
    }
}

/// A port with its endpoints and nothing attached yet.
fn service_port(
    port: u16,
    name: String,
    app_protocol: Option<String>,
    endpoints: Vec<Endpoint>,
) -> ServicePort {
    let protocol = Protocol::of_port(&name, app_protocol.as_deref());
    ServicePort {
        port,
        protocol,
        h2c: protocol == Protocol::Http2,
        name,
        app_protocol,
        endpoints,
        routes: None,
        route_names: Vec::new(),
        consumer_routes: HashMap::new(),
        tcp_route: None,
        tcp_route_name: None,
        traffic: Default::default(),
    }
}

/// `value` as a port number; otherwise an error on the field `field` names.
fn port_number<T>(
    value: T,
    field: impl FnOnce() -> String,
    issues: &mut Vec<StatusIssue>,
) -> Option<u16>
where
    T: Copy + std::fmt::Display,
    u16: TryFrom<T>,
{
    let port = u16::try_from(value).ok();
    if port.is_none() {
        issues.push(issue_err(field(), format!("{value} is not a port number")));
    }
    port
}

/// The service's VIPs (`clusterIP`, then `clusterIPs`); a headless service has none.
fn cluster_ips(spec: &ServiceSpec) -> (Vec<IpAddr>, Vec<StatusIssue>) {
    let mut vips = Vec::new();
    let mut issues = Vec::new();
    let ips = spec.cluster_ips.iter().flatten();
    for (i, ip) in spec.cluster_ip.iter().chain(ips).enumerate() {
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
    (vips, issues)
}

/// The ServiceEntry's endpoints for one of its ports: the endpoint's port of that name, else
/// the port's targetPort, else its number.
fn entry_endpoints(
    se: &ServiceEntry,
    p: &crate::config::ServiceEntryPort,
    issues: &mut Vec<StatusIssue>,
) -> Vec<Endpoint> {
    let mut endpoints = Vec::new();
    for (j, e) in se.spec.endpoints.iter().enumerate() {
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
        if let Some(t) = port_number(target, || format!("spec.endpoints[{j}].ports"), issues) {
            endpoints.push(Endpoint {
                addr: SocketAddr::new(ip, t),
                pod: None,
                hbone: None,
            });
        }
    }
    endpoints
}

/// The Service an EndpointSlice belongs to, by its `kubernetes.io/service-name` label.
fn slice_service(slice: &EndpointSlice) -> Option<&str> {
    slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .map(String::as_str)
}

/// A slice without its Service's label is read but used by no Service: warn.
pub(super) fn check_slice(slice: &EndpointSlice) -> Vec<StatusIssue> {
    match slice_service(slice) {
        Some(_) => Vec::new(),
        None => vec![StatusIssue {
            severity: Severity::Warning,
            reason: None,
            field: format!("metadata.labels[{SERVICE_NAME_LABEL}]"),
            message: "missing: this slice belongs to no Service and is not used".into(),
        }],
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
