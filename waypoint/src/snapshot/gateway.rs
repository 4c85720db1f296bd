//! The Gateway role of a snapshot: listeners of a Gateway (of a class other than
//! `istio-waypoint`) with the routes attached to them, the ReferenceGrants that let routes
//! reach across namespaces, and the Gateway API status `check --status` prints.

use std::sync::Arc;

use gateway_api::experimental::referencegrants::ReferenceGrant;
use routing::gateway::{
    Condition, GatewayState, ListenerSetState, ListenerState, RouteKind, RouteParentStatus,
};
use routing::{hostname, CompiledRoute, RequestView, RouteMatch, RouteTable, ServiceKey};
use serde::Serialize;

/// The ReferenceGrants of the folder: who may refer to what across namespaces.
#[derive(Default)]
pub struct Grants {
    grants: Vec<(String, ReferenceGrant)>,
}

impl Grants {
    /// The grants, each with its namespace.
    pub fn new(grants: impl Iterator<Item = (String, ReferenceGrant)>) -> Self {
        Grants {
            grants: grants.collect(),
        }
    }

    /// Whether a `from_kind` (group gateway.networking.k8s.io) in `from_namespace` may refer to
    /// Service `to`: a grant in `to`'s namespace lists that kind and namespace under `from`,
    /// and core Services (all, or this one by name) under `to`.
    pub fn permits(&self, from_kind: RouteKind, from_namespace: &str, to: &ServiceKey) -> bool {
        self.grants
            .iter()
            .filter(|(ns, _)| *ns == to.namespace)
            .any(|(_, g)| {
                let from_ok = g.spec.from.iter().any(|f| {
                    f.group == routing::gateway::GATEWAY_GROUP
                        && f.kind == from_kind.as_str()
                        && f.namespace == from_namespace
                });
                let to_ok = g.spec.to.iter().any(|t| {
                    (t.group.is_empty() || t.group == "core")
                        && t.kind == "Service"
                        && t.name.as_ref().is_none_or(|n| *n == to.name)
                });
                from_ok && to_ok
            })
    }
}

/// Routes on one hostname of a listener.
#[derive(Debug)]
pub struct HostRoutes {
    /// None: any host.
    pub hostname: Option<String>,
    pub routes: RouteTable,
}

/// One served listener of the Gateway and its routes, most specific hostname first.
#[derive(Debug, Serialize)]
pub struct ListenerRoutes {
    /// The listener's name.
    pub name: String,
    /// Its port.
    pub port: u16,
    /// Its hostname; `None` takes any host.
    pub hostname: Option<String>,
    /// The attached routes, grouped by hostname, most specific first.
    #[serde(skip)]
    pub hosts: Vec<HostRoutes>,
    /// `namespace/name` of every attached route, sorted.
    pub route_names: Vec<String>,
}

impl ListenerRoutes {
    /// Builds the listener's tables from its attached routes and their hostnames there.
    pub fn new(
        name: String,
        port: u16,
        hostname: Option<String>,
        attached: Vec<(Arc<CompiledRoute>, Vec<String>)>,
    ) -> Self {
        let mut by_host: Vec<(Option<String>, Vec<Arc<CompiledRoute>>)> = Vec::new();
        let mut route_names: Vec<String> = Vec::new();
        for (route, hostnames) in attached {
            route_names.push(route.id.to_string());
            let keys: Vec<Option<String>> = if hostnames.is_empty() {
                vec![None]
            } else {
                hostnames
                    .into_iter()
                    .map(|h| Some(h.to_ascii_lowercase()))
                    .collect()
            };
            for key in keys {
                match by_host.iter_mut().find(|(h, _)| *h == key) {
                    Some((_, routes)) => routes.push(route.clone()),
                    None => by_host.push((key, vec![route.clone()])),
                }
            }
        }
        by_host.sort_by_key(|(h, _)| hostname::specificity(h.as_deref()));
        route_names.sort();
        route_names.dedup();
        ListenerRoutes {
            name,
            port,
            hostname,
            hosts: by_host
                .into_iter()
                .map(|(hostname, routes)| HostRoutes {
                    hostname,
                    routes: RouteTable::new(routes),
                })
                .collect(),
            route_names,
        }
    }

    /// The rule for a request to `host`: hostnames are tried most specific first, and the
    /// first one whose routes have a matching rule wins.
    pub fn find<'a>(&'a self, host: &str, req: &RequestView<'_>) -> Option<RouteMatch<'a>> {
        self.hosts
            .iter()
            .filter(|h| {
                h.hostname
                    .as_deref()
                    .is_none_or(|p| hostname::matches(p, host))
            })
            .find_map(|h| h.routes.find(req))
    }
}

/// The listeners of the served Gateway on one port, most specific hostname first.
#[derive(Debug, Serialize)]
pub struct GatewayPort {
    /// The port.
    pub port: u16,
    /// Its listeners.
    pub listeners: Vec<ListenerRoutes>,
}

impl GatewayPort {
    /// The listener a request to `host` belongs to: the most specific hostname that matches
    /// (listener isolation: a request never falls through to a less specific listener).
    pub fn listener(&self, host: &str) -> Option<&ListenerRoutes> {
        self.listeners.iter().find(|l| {
            l.hostname
                .as_deref()
                .is_none_or(|p| hostname::matches(p, host))
        })
    }
}

/// The Gateway API status of the Gateways of our class and of the routes that name them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GatewayStatus {
    /// The Gateways of our class (and the served one) with their listeners.
    pub gateways: Vec<GatewayState>,
    /// The ListenerSets of those Gateways.
    pub listener_sets: Vec<ListenerSetState>,
    /// Per route (kind, namespace, name): its status.parents entries for our Gateways.
    pub routes: Vec<RouteStatus>,
}

/// The Gateway API status of one route naming a Gateway of ours.
#[derive(Clone, Debug, Serialize)]
pub struct RouteStatus {
    /// HTTPRoute or GRPCRoute.
    pub kind: RouteKind,
    /// The route's namespace.
    pub namespace: String,
    /// The route's name.
    pub name: String,
    /// The route's `metadata.generation`, which its conditions observe.
    pub generation: i64,
    /// One entry per parentRef naming a Gateway (or ListenerSet) of ours.
    pub parents: Vec<RouteParentStatus>,
}

impl GatewayStatus {
    /// Kubernetes-style objects with Gateway API `status` blocks, as a controller would write
    /// them: `{"items": [{apiVersion, kind, metadata, status}]}`.
    pub fn to_k8s_json(&self) -> serde_json::Value {
        let gateways = self.gateways.iter().map(|g| {
            serde_json::json!({
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {"namespace": g.gateway.namespace, "name": g.gateway.name, "generation": g.generation},
                "status": {
                    "conditions": conditions_json(&g.conditions, g.generation),
                    "listeners": listeners_json(&g.listeners, g.generation),
                    "attachedListenerSets": g.attached_listener_sets,
                },
            })
        });
        let listener_sets = self.listener_sets.iter().map(|s| {
            serde_json::json!({
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "ListenerSet",
                "metadata": {"namespace": s.key.namespace, "name": s.key.name, "generation": s.generation},
                "status": {
                    "conditions": conditions_json(&s.conditions, s.generation),
                    "listeners": listeners_json(&s.listeners, s.generation),
                },
            })
        });
        let items: Vec<serde_json::Value> = gateways
            .chain(listener_sets)
            .chain(self.routes.iter().map(route_json))
            .collect();
        serde_json::json!({ "items": items })
    }
}

/// Conditions as Kubernetes writes them, each having observed `generation`.
fn conditions_json(conditions: &[Condition], generation: i64) -> Vec<serde_json::Value> {
    conditions
        .iter()
        .map(|c| {
            serde_json::json!({
                "type": c.kind,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
                "observedGeneration": generation,
            })
        })
        .collect()
}

/// A Gateway's or ListenerSet's `status.listeners`.
fn listeners_json(listeners: &[ListenerState], generation: i64) -> Vec<serde_json::Value> {
    listeners
        .iter()
        .map(|l| {
            serde_json::json!({
                "name": l.name,
                "supportedKinds": l.supported_kinds.iter().map(|k| serde_json::json!({
                    "group": routing::gateway::GATEWAY_GROUP, "kind": k,
                })).collect::<Vec<_>>(),
                "attachedRoutes": l.routes.len(),
                "conditions": conditions_json(&l.conditions, generation),
            })
        })
        .collect()
}

/// A route with its `status.parents`.
fn route_json(r: &RouteStatus) -> serde_json::Value {
    let parents: Vec<_> = r
        .parents
        .iter()
        .map(|p| {
            serde_json::json!({
                "parentRef": {
                    "group": routing::gateway::GATEWAY_GROUP,
                    "kind": p.parent.kind,
                    "namespace": p.parent.gateway.namespace,
                    "name": p.parent.gateway.name,
                    "sectionName": p.parent.section_name,
                    "port": p.parent.port,
                },
                "controllerName": routing::gateway::CONTROLLER_NAME,
                "conditions": conditions_json(&p.conditions, r.generation),
            })
        })
        .collect();
    serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": r.kind,
        "metadata": {"namespace": r.namespace, "name": r.name, "generation": r.generation},
        "status": {"parents": parents},
    })
}
