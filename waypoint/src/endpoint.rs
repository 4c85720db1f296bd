//! Which endpoint of a service port gets the next request or tunnel.
//!
//! The HTTP pipeline, request mirroring and the TCP path all choose here, so load balancing
//! (round robin today) and, when the resilience issue adds them, outlier detection and
//! circuit-breaker admission plug into one function instead of three.

use crate::snapshot::{Endpoint, ServicePort, Snapshot};
use routing::ServiceKey;
use std::fmt;
use std::net::SocketAddr;

/// The endpoint chosen for one request or tunnel, with the service port it belongs to (whose
/// protocol says how to speak to it).
#[derive(Debug, Clone, Copy)]
pub struct Chosen<'s> {
    /// The backend service port.
    pub port: &'s ServicePort,
    /// The endpoint of that port that gets the traffic.
    pub endpoint: &'s Endpoint,
}

/// Why no endpoint could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoEndpoint {
    /// The service, or that port of it, is not in the configuration.
    UnknownPort {
        /// The backend service.
        service: ServiceKey,
        /// The port asked for.
        port: u16,
    },
    /// The port exists but has no ready endpoint.
    NoneReady {
        /// The backend service.
        service: ServiceKey,
        /// The port asked for.
        port: u16,
    },
}

impl fmt::Display for NoEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoEndpoint::UnknownPort { service, port } => write!(
                f,
                "backend {}/{} port {port} does not exist",
                service.namespace, service.name
            ),
            NoEndpoint::NoneReady { service, port } => write!(
                f,
                "no healthy upstream: service {}/{} port {port} has no ready endpoints",
                service.namespace, service.name
            ),
        }
    }
}

/// What one request (attempt) or tunnel asks of the endpoint choice.
#[derive(Debug, Clone, Copy)]
pub struct Pick<'a> {
    /// The backend service.
    pub service: &'a ServiceKey,
    /// Its port.
    pub port: u16,
    /// A DestinationRule subset the endpoint must belong to.
    pub subset: Option<&'a str>,
    /// Endpoints this request already tried: a retry goes to another one when another exists
    /// (Envoy's `previous_hosts` predicate, which Istio sets on every retry policy).
    pub avoid: &'a [SocketAddr],
}

impl<'a> Pick<'a> {
    /// Any endpoint of `service`:`port`.
    pub fn any(service: &'a ServiceKey, port: u16) -> Self {
        Pick {
            service,
            port,
            subset: None,
            avoid: &[],
        }
    }
}

/// One ready endpoint for `pick`, round robin over the port's endpoints, skipping those the
/// request already tried while another is left.
pub fn choose<'s>(snapshot: &'s Snapshot, pick: &Pick<'_>) -> Result<Chosen<'s>, NoEndpoint> {
    let (service, port) = (pick.service, pick.port);
    let backend = snapshot
        .service(service)
        .and_then(|s| s.port(port))
        .ok_or_else(|| NoEndpoint::UnknownPort {
            service: service.clone(),
            port,
        })?;
    let none_ready = || NoEndpoint::NoneReady {
        service: service.clone(),
        port,
    };
    let len = backend.endpoints.len();
    let mut idx = backend.balancer.pick(len).ok_or_else(none_ready)?;
    for _ in 1..len {
        if !pick.avoid.contains(&backend.endpoints[idx].addr) {
            break;
        }
        idx = backend.balancer.pick(len).ok_or_else(none_ready)?;
    }
    Ok(Chosen {
        port: backend,
        endpoint: &backend.endpoints[idx],
    })
}
