//! Clusters — Istio's unit of policy: a service port, or one DestinationRule subset of it —
//! with their compiled policy, their members, and the state that outlives a snapshot.
//!
//! The state (circuit-breaker counts, outlier-detection counters, requests in flight per
//! endpoint) is per process: it is kept in a registry keyed by cluster and, within a cluster,
//! by endpoint address, so a reload that keeps an endpoint keeps its ejection and its load, and
//! requests admitted under the old snapshot still count against the new one's limits. The
//! registry's lock is taken only while a snapshot is built, never by a request.

use resilience::{
    Balancer, CircuitBreaker, ClusterPolicy, EndpointHealth, OutlierDetector, Transition,
};
use routing::ServiceKey;
use serde::{Serialize, Serializer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// The clusters of one service port: its own (every endpoint) first, then one per subset.
#[derive(Debug, Default, Serialize)]
pub struct PortTraffic {
    /// `namespace/name` of the DestinationRule in force for the port's service, if any.
    pub destination_rule: Option<String>,
    /// The clusters.
    pub clusters: Vec<Cluster>,
}

impl PortTraffic {
    /// The cluster for `subset` (`None`: the port's own).
    pub fn cluster(&self, subset: Option<&str>) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.subset.as_deref() == subset)
    }
}

/// One cluster of a service port.
#[derive(Debug, Serialize)]
pub struct Cluster {
    /// The DestinationRule subset; `None` for the port's own cluster.
    pub subset: Option<String>,
    /// What the DestinationRule in force (or Istio's defaults) asks of it.
    pub policy: ClusterPolicy,
    /// Indexes of its endpoints in the port's endpoint list.
    pub members: Vec<usize>,
    /// Chooses among the members.
    #[serde(skip)]
    pub balancer: Balancer,
    /// Breaker and detector, shared with the other snapshots that have this cluster.
    #[serde(skip)]
    pub state: Arc<ClusterState>,
    /// Each member's state, in `members` order; the ejected ones are shown.
    #[serde(rename = "ejected", serialize_with = "ejected_members")]
    pub endpoints: Vec<Arc<EndpointState>>,
}

/// The process-wide state of one cluster.
#[derive(Debug, Default)]
pub struct ClusterState {
    /// In-flight counts against the circuit-breaker limits.
    pub breaker: CircuitBreaker,
    /// How many members are ejected.
    pub outlier: OutlierDetector,
    /// Wakes a request waiting for a connection slot when one is given back.
    pub slot_freed: tokio::sync::Notify,
    endpoints: Mutex<HashMap<SocketAddr, Weak<EndpointState>>>,
    /// Set once a snapshot gave the cluster its members: later ones are new (slow start).
    built: AtomicBool,
}

/// The process-wide state of one endpoint in one cluster.
#[derive(Debug)]
pub struct EndpointState {
    /// Its address.
    pub addr: SocketAddr,
    /// Outlier-detection counters and ejection.
    pub health: EndpointHealth,
    /// Requests in flight to it (LEAST_REQUEST).
    pub active: AtomicU32,
    /// When the cluster first had it, on [`now`]'s clock (slow start).
    pub since: Duration,
}

/// Identifies a cluster across snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClusterKey {
    service: ServiceKey,
    port: u16,
    subset: Option<String>,
}

type Registry = Mutex<HashMap<ClusterKey, Weak<ClusterState>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

/// The clock outlier detection and slow start read: time since the process's first look.
pub fn now() -> Duration {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed()
}

impl ClusterState {
    /// The state of `service`:`port` (`subset`), shared with every snapshot that has it.
    pub fn shared(service: &ServiceKey, port: u16, subset: Option<&str>) -> Arc<ClusterState> {
        let key = ClusterKey {
            service: service.clone(),
            port,
            subset: subset.map(str::to_owned),
        };
        let mut map = registry().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = map.get(&key).and_then(Weak::upgrade) {
            return state;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let state = Arc::new(ClusterState::default());
        map.insert(key, Arc::downgrade(&state));
        state
    }

    /// The states of `addrs`, the cluster's members from now on: a member it had keeps its
    /// state; one it no longer has leaves the ejection count.
    pub fn members(&self, addrs: &[SocketAddr]) -> Vec<Arc<EndpointState>> {
        let mut map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let first_build = !self.built.swap(true, Ordering::AcqRel);
        let at = now();
        let states: Vec<Arc<EndpointState>> = addrs
            .iter()
            .map(|addr| {
                map.get(addr).and_then(Weak::upgrade).unwrap_or_else(|| {
                    Arc::new(EndpointState {
                        addr: *addr,
                        health: EndpointHealth::new(),
                        active: AtomicU32::new(0),
                        // Endpoints the cluster starts with have nothing to ramp up from.
                        since: if first_build { Duration::ZERO } else { at },
                    })
                })
            })
            .collect();
        for (addr, old) in map.iter() {
            if let Some(old) = old.upgrade().filter(|_| !addrs.contains(addr)) {
                self.outlier.forget(&old.health);
            }
        }
        *map = states.iter().map(|s| (s.addr, Arc::downgrade(s))).collect();
        states
    }
}

impl Cluster {
    /// Whether member `i` is in the pool now, logging its return from an ejection once.
    pub fn available(&self, i: usize, at: Duration) -> bool {
        let Some(ep) = self.endpoints.get(i) else {
            return false;
        };
        let (available, transition) = self.state.outlier.available(&ep.health, at);
        if let Some(Transition::Returned) = transition {
            tracing::info!(
                endpoint = %ep.addr,
                subset = self.subset.as_deref().unwrap_or(""),
                "outlier detection: endpoint returned to the load-balancing pool"
            );
        }
        available
    }
}

/// The ejected members, with when they return, for `/config_dump`.
fn ejected_members<S: Serializer>(eps: &[Arc<EndpointState>], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Ejected {
        endpoint: SocketAddr,
        returns_in_ms: u128,
        ejections: u32,
    }
    let at = now();
    let list: Vec<Ejected> = eps
        .iter()
        .filter_map(|e| {
            let until = e.health.ejected_until().filter(|u| *u > at)?;
            Some(Ejected {
                endpoint: e.addr,
                returns_in_ms: (until - at).as_millis(),
                ejections: e.health.ejections(),
            })
        })
        .collect();
    list.serialize(s)
}
