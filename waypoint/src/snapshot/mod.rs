//! One immutable view of the configuration — the services this waypoint serves, their
//! endpoints and compiled routes — built from a folder's objects and swapped in atomically.
//!
//! Building never fails half-way: every object gets a [`ResourceStatus`], and the caller
//! decides from [`Report::error_count`] whether the new snapshot may replace the old one.
//!
//! [`model`] holds what a snapshot is made of, [`report`] what a build says about each object,
//! and `build/` turns the folder's objects into both, one file per resource family.

use crate::config::{Document, LoadError};
use routing::{Authority, ServiceKey};
use serde::Serialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

mod build;
mod gateway;
mod model;
mod protocol;
mod report;
mod security;

pub use build::pod_ip;
pub use gateway::{GatewayPort, GatewayStatus, Grants, ListenerRoutes, RouteStatus};
pub use model::{
    Binding, Destination, Endpoint, GatewayRef, PolicyInForce, ServiceInfo, ServicePort,
    ServiceSource, WorkloadIdentity, WorkloadInfo,
};
pub use protocol::Protocol;
pub use report::{Report, ResourceStatus, State, StatusIssue};
pub use security::{PolicySummary, Security, SecurityPolicies, SecuritySummary};

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

/// Why a request's destination could not be found; the message is sent to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct NotFound(pub String);

/// The immutable configuration one request sees from start to end.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Counts builds: 1 at startup, one more per reload attempt.
    pub version: u64,
    /// The Gateway served.
    pub gateway: GatewayRef,
    /// The Gateway role: the served Gateway's HTTP listeners by port (empty for a waypoint).
    pub listeners: Vec<GatewayPort>,
    /// Every Service and ServiceEntry, bound to this waypoint or not.
    pub services: Vec<ServiceInfo>,
    #[serde(skip)]
    by_key: HashMap<ServiceKey, usize>,
    #[serde(skip)]
    by_host: HashMap<String, Vec<usize>>,
    #[serde(skip)]
    by_vip: HashMap<IpAddr, usize>,
    /// Every scheduled pod, by IP.
    pub workloads: HashMap<IpAddr, WorkloadInfo>,
    /// RequestAuthentication, AuthorizationPolicy, PeerAuthentication and the MeshConfig.
    #[serde(skip)]
    pub security: Security,
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
    /// The snapshot's [`Snapshot::version`].
    pub version: u64,
    /// The GatewayClass whose Gateways get a status from this build (`check --status`).
    pub gateway_class: String,
    /// `--gateway NS/NAME`; `None` picks the only `istio-waypoint` Gateway.
    pub gateway: Option<GatewayRef>,
    /// `--trust-domain`: the mesh's trust domain unless the MeshConfig sets `trustDomain`
    /// ([`CLUSTER_DOMAIN`] by default, as Istio's).
    pub trust_domain: String,
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
        let mut builder = build::Builder::new(documents);
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

    /// The Service or ServiceEntry named `key`.
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
                service.key, self.gateway
            )));
        }
        let sp = service.port(port).ok_or_else(|| {
            NotFound(format!(
                "service {} has no port {port} (ports: {})",
                service.key,
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
        // A CONNECT target always names its port (RFC 9110 §9.3.6).
        let (host, port) = match Authority::parse(authority) {
            Ok(Authority {
                host,
                port: Some(port),
                ..
            }) => (host, port),
            _ => {
                return Err(NotFound(format!(
                    "malformed CONNECT authority '{authority}': want ip:port"
                )))
            }
        };
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
                .map(|&i| self.services[i].key.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// Splits `host[:port]` / `[v6]:port`; the port defaults to 80 as for a plain-HTTP client.
/// A thin wrapper of [`Authority::parse`], kept for its callers.
pub fn split_authority(authority: &str) -> Option<(&str, u16)> {
    Authority::parse(authority)
        .ok()
        .map(|a| (a.host, a.port_or(80)))
}

#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod tests;
