//! Which endpoint of a service port gets the next request or tunnel.
//!
//! The HTTP pipeline, request mirroring and the TCP path all choose here, so the load balancer,
//! subsets and outlier detection of the port's cluster (see [`cluster`]) apply to all three
//! through one function.

pub mod cluster;

use crate::snapshot::{Endpoint, ServicePort, Snapshot};
use cluster::Cluster;
use resilience::{affinity_cookie_value, stable_hash, HashKey, PickInput};
use routing::ServiceKey;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;

/// The endpoint chosen for one request or tunnel, with the service port it belongs to (whose
/// protocol says how to speak to it).
#[derive(Debug, Clone, Copy)]
pub struct Chosen<'s> {
    /// The backend service port.
    pub port: &'s ServicePort,
    /// The endpoint of that port that gets the traffic.
    pub endpoint: &'s Endpoint,
    /// The cluster (the port's own, or a subset) it was chosen from.
    pub cluster: &'s Cluster,
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
    /// No DestinationRule in force defines the subset: Envoy has no such cluster (503 `NC`).
    UnknownSubset {
        /// The backend service.
        service: ServiceKey,
        /// The port asked for.
        port: u16,
        /// The subset asked for.
        subset: String,
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
            NoEndpoint::UnknownSubset {
                service,
                port,
                subset,
            } => write!(
                f,
                "no cluster for subset '{subset}' of service {}/{} port {port}: no \
                 DestinationRule in force for the service defines it",
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
    /// What a consistent-hash balancer hashes; `None` (TCP, mirrors) picks as if the request
    /// carried no key.
    pub affinity: Option<Affinity<'a>>,
}

/// The parts of a request a consistent hash may be computed from.
#[derive(Debug, Clone, Copy)]
pub struct Affinity<'a> {
    /// The request's headers (a header or a cookie).
    pub headers: &'a http::HeaderMap,
    /// Its query string.
    pub query: Option<&'a str>,
    /// The client's address.
    pub source_ip: Option<IpAddr>,
}

impl Affinity<'_> {
    /// The request's hash under `key`; `None` when the request lacks the key (Envoy then
    /// picks at random). A missing cookie the proxy will generate hashes as the generated value.
    pub fn hash(&self, key: &HashKey) -> Option<u64> {
        let hash = |v: &str| Some(stable_hash(v.as_bytes()));
        match key {
            HashKey::Header(name) => self
                .headers
                .get_all(name.as_str())
                .iter()
                .find_map(|v| v.to_str().ok())
                .and_then(hash),
            HashKey::Cookie(cookie) => match self.cookie(&cookie.name) {
                Some(value) => hash(value),
                None if cookie.ttl.is_some() => self.generated_cookie().as_deref().and_then(hash),
                None => None,
            },
            HashKey::SourceIp => self.source_ip.and_then(|ip| hash(&ip.to_string())),
            HashKey::QueryParameter(name) => self
                .query?
                .split('&')
                .find_map(|kv| kv.split_once('=').filter(|(k, _)| k == name))
                .and_then(|(_, v)| hash(v)),
        }
    }

    /// The value of cookie `name`, quotes removed.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name).then(|| v.trim_matches('"'))
            })
    }

    /// The value the proxy gives a cookie it generates for this client.
    pub fn generated_cookie(&self) -> Option<String> {
        self.source_ip
            .map(|ip| affinity_cookie_value(&ip.to_string()))
    }
}

impl<'a> Pick<'a> {
    /// Any endpoint of `service`:`port`.
    pub fn any(service: &'a ServiceKey, port: u16) -> Self {
        Pick {
            service,
            port,
            subset: None,
            avoid: &[],
            affinity: None,
        }
    }
}

/// One endpoint for `pick`: the cluster's balancer over its members that are not ejected
/// (all of them in panic), skipping those the request already tried while another is left.
pub fn choose<'s>(snapshot: &'s Snapshot, pick: &Pick<'_>) -> Result<Chosen<'s>, NoEndpoint> {
    let (service, port) = (pick.service, pick.port);
    let backend = snapshot
        .service(service)
        .and_then(|s| s.port(port))
        .ok_or_else(|| NoEndpoint::UnknownPort {
            service: service.clone(),
            port,
        })?;
    let cluster = backend
        .traffic
        .cluster(pick.subset)
        .ok_or_else(|| match pick.subset {
            Some(subset) => NoEndpoint::UnknownSubset {
                service: service.clone(),
                port,
                subset: subset.to_owned(),
            },
            None => NoEndpoint::NoneReady {
                service: service.clone(),
                port,
            },
        })?;
    let member = pick_member(backend, cluster, pick).ok_or_else(|| NoEndpoint::NoneReady {
        service: service.clone(),
        port,
    })?;
    Ok(Chosen {
        port: backend,
        endpoint: &backend.endpoints[cluster.members[member]],
        cluster,
    })
}

/// The index in `cluster.members` of the endpoint for `pick`.
fn pick_member(backend: &ServicePort, cluster: &Cluster, pick: &Pick<'_>) -> Option<usize> {
    let at = cluster::now();
    let len = cluster.members.len();
    let available: Vec<bool> = (0..len).map(|i| cluster.available(i, at)).collect();
    let healthy = available.iter().filter(|a| **a).count();
    let in_panic = cluster
        .policy
        .outlier
        .as_ref()
        .is_some_and(|o| cluster.state.outlier.panic(o, healthy, len));
    let addr = |i: usize| backend.endpoints.get(cluster.members[i]).map(|e| e.addr);
    let hash = match (&cluster.policy.lb.hash_key, &pick.affinity) {
        (Some(key), Some(affinity)) => affinity.hash(key),
        _ => None,
    };
    let usable = |i: usize| in_panic || available[i];
    // istiod leaves the previous-hosts predicate out of a consistent-hash route's retry
    // policy, so a retry stays on the session's endpoint.
    let fresh = |i: usize| {
        usable(i) && (hash.is_some() || addr(i).is_some_and(|a| !pick.avoid.contains(&a)))
    };
    let active = |i: usize| cluster.endpoints[i].active.load(Ordering::Relaxed);
    let warmup = cluster.policy.lb.warmup.as_ref();
    let weight = |i: usize| {
        warmup.map_or(1.0, |w| {
            w.weight(at.saturating_sub(cluster.endpoints[i].since))
        })
    };
    let random = rand::random::<u64>();
    let input = PickInput {
        eligible: &fresh,
        active: &active,
        weight: &weight,
        hash,
        random,
    };
    // A retry goes to an endpoint not tried yet when one is left (Envoy's previous_hosts).
    cluster.balancer.pick(len, &input).or_else(|| {
        let any = PickInput {
            eligible: &usable,
            ..input
        };
        cluster.balancer.pick(len, &any)
    })
}
