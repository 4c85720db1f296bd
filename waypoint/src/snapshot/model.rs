//! What a snapshot holds: the services this waypoint may be asked for, their ports and
//! endpoints, the pods it may reach by address, and what a CONNECT names.

use super::Protocol;
use crate::endpoint::cluster::PortTraffic;
use routing::{CompiledTcpRoute, RouteTable, ServiceKey};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// `namespace/name` of a Gateway.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct GatewayRef {
    /// The Gateway's namespace.
    pub namespace: String,
    /// The Gateway's name.
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

/// A destination endpoint.
#[derive(Clone, Debug, Serialize)]
pub struct Endpoint {
    /// Where to connect: the pod's (or the static endpoint's) address and target port.
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
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's service account (`default` when it names none).
    pub service_account: String,
}

impl WorkloadIdentity {
    /// The SPIFFE identity in `trust_domain`.
    pub fn in_trust_domain(&self, trust_domain: &str) -> authz::Identity {
        authz::Identity::new(trust_domain, &self.namespace, &self.service_account)
    }
}

/// A pod this waypoint may be asked to reach by its own address.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadInfo {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// Its `status.podIP`.
    pub ip: IpAddr,
    /// The identity it presents over HBONE.
    pub identity: WorkloadIdentity,
    /// In the ambient mesh (`istio.io/dataplane-mode: ambient` on it or its namespace).
    pub ambient: bool,
    /// Whether this waypoint takes traffic addressed to the pod, and why not.
    pub binding: Binding,
}

/// What a CONNECT `:authority` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A service port: the request is routed by the service's routes.
    Service {
        /// The Service or ServiceEntry.
        service: ServiceKey,
        /// One of its ports.
        port: u16,
    },
    /// A pod addressed directly (a waypoint for workloads): the request goes to that address.
    Workload {
        /// The pod's address and the port asked for.
        addr: SocketAddr,
        /// The pod's identity when it is in the ambient mesh (reached over HBONE).
        hbone: Option<WorkloadIdentity>,
    },
}

/// One port of a service: its protocol, endpoints and the routes attached to it.
#[derive(Debug, Serialize)]
pub struct ServicePort {
    /// The service port number (what clients connect to).
    pub port: u16,
    /// The port's name (`""` when unnamed).
    pub name: String,
    /// A Service port's `appProtocol`, or a ServiceEntry port's `protocol`.
    pub app_protocol: Option<String>,
    /// What the port carries: declared by `app_protocol` or the name, or `Tcp` when a
    /// TCPRoute is attached. Decided once at build, never per request.
    pub protocol: Protocol,
    /// HTTP to this port goes upstream as cleartext HTTP/2 (prior knowledge): its declared
    /// protocol is [`Protocol::Http2`].
    pub h2c: bool,
    /// The ready endpoints behind the port.
    pub endpoints: Vec<Endpoint>,
    /// Routes attached to this port, in precedence order; `None` when no route attaches and
    /// traffic goes to the service's own endpoints.
    #[serde(skip)]
    pub routes: Option<RouteTable>,
    /// `namespace/name` of every HTTPRoute attached (producer and consumer), sorted.
    pub route_names: Vec<String>,
    /// GAMMA consumer routes: routes in another namespace than the service's, which apply
    /// (instead of `routes`) only to clients in that namespace.
    #[serde(skip)]
    pub consumer_routes: HashMap<String, RouteTable>,
    /// A TCPRoute attached to this port makes it a TCP port with weighted backends.
    #[serde(skip)]
    pub tcp_route: Option<Arc<CompiledTcpRoute>>,
    /// `namespace/name` of that TCPRoute.
    pub tcp_route_name: Option<String>,
    /// The port's clusters (its own, and one per DestinationRule subset): policy, members,
    /// balancer, breaker and outlier state.
    pub traffic: PortTraffic,
}

/// The kind of object a service comes from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum ServiceSource {
    /// A Kubernetes Service.
    Service,
    /// An Istio ServiceEntry.
    ServiceEntry,
}

/// A destination this waypoint may be asked for.
#[derive(Debug, Serialize)]
pub struct ServiceInfo {
    /// Namespace and name of the Service or ServiceEntry.
    pub key: ServiceKey,
    /// Which kind it is.
    pub source: ServiceSource,
    /// The names clients reach it by (lower case): a Service's cluster DNS names, a
    /// ServiceEntry's hosts.
    pub hostnames: Vec<String>,
    /// Its virtual IPs (clusterIPs, a ServiceEntry's addresses).
    pub vips: Vec<IpAddr>,
    /// Its ports.
    pub ports: Vec<ServicePort>,
    /// Why this waypoint does or does not serve the service.
    pub binding: Binding,
    /// Every DestinationRule whose host names the service: the one in force, and why the
    /// others are not (`waypoint check`, `/config_dump`).
    pub destination_rules: Vec<PolicyInForce>,
    /// Every VirtualService whose hosts name the service: the one in force, and why the
    /// others are not (`waypoint check`, `/config_dump`).
    pub virtual_services: Vec<PolicyInForce>,
}

/// One Istio policy resource (VirtualService, DestinationRule) that names a service, and
/// whether it is the one in force there.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyInForce {
    /// `namespace/name` of the resource.
    pub resource: String,
    /// Whether it applies to the service.
    pub in_force: bool,
    /// Why: which host named the service, or what is in force instead.
    pub reason: String,
}

/// Whether this waypoint serves an object (Istio's `istio.io/use-waypoint` binding).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Binding {
    /// It does.
    Bound,
    /// It does not; the reason says why, for the client's error and `check`.
    NotBound(String),
}

impl ServiceInfo {
    /// The port numbered `port`.
    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }
}
