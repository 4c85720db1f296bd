//! What a snapshot holds: the services this waypoint may be asked for, their ports and
//! endpoints, the pods it may reach by address, and what a CONNECT names.

use super::Protocol;
use resilience::RoundRobin;
use routing::{CompiledTcpRoute, RouteTable, ServiceKey};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

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
    /// What the port carries: declared by `app_protocol` or the name, or `Tcp` when a
    /// TCPRoute is attached. Decided once at build, never per request.
    pub protocol: Protocol,
    /// HTTP to this port goes upstream as cleartext HTTP/2 (prior knowledge): its declared
    /// protocol is [`Protocol::Http2`].
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
