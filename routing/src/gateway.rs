//! The Gateway role: which routes attach to which listeners of a Gateway, the hostnames they
//! serve there, and the Gateway API status of both (the conditions a controller would write).
//!
//! Attachment follows the Gateway API spec: a parentRef selects the listeners its
//! `sectionName` and `port` name (all when both are unset); of those, the ones whose
//! `allowedRoutes` admit the route's namespace and kind; of those, the ones whose hostname
//! intersects the route's hostnames. Each step that leaves nothing gives the route's
//! `Accepted=False` reason: NoMatchingParent, NotAllowedByListeners, NoMatchingListenerHostname.

use std::collections::BTreeMap;

use gateway_api::experimental::gateways::{Gateway, GatewayListeners};
use gateway_api::experimental::listenersets::ListenerSet;
use serde::Serialize;

use crate::hostname;
use crate::parent::{ParentGateway, ServiceKey};

mod kinds;
mod listener;
mod listener_sets;
mod selector;
pub use kinds::{ConditionType, ParentKind, RouteKind};
pub use selector::{labels_match, SelectorRequirement};

use listener::gateway_state;
use listener_sets::listener_set_states;
use selector::admits_namespace;

/// The group of every Gateway API kind.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// The controller name our status entries carry.
pub const CONTROLLER_NAME: &str = "waypoint.dev/gateway-controller";

/// One Gateway API status condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// The condition's type.
    #[serde(rename = "type")]
    pub kind: ConditionType,
    /// "True" or "False".
    pub status: &'static str,
    /// A CamelCase reason from the Gateway API spec (`NoMatchingParent`, say).
    pub reason: String,
    /// What happened, for a human.
    pub message: String,
}

impl Condition {
    /// A condition of type `kind`, true when `ok`.
    pub fn new(
        kind: ConditionType,
        ok: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Condition {
            kind,
            status: if ok { "True" } else { "False" },
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// Whether the status is "True".
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// What the attachment needs to know of a route.
pub struct RouteInput<'a> {
    /// Matched against the listeners' allowedRoutes kinds.
    pub kind: RouteKind,
    /// The route's namespace, matched against allowedRoutes.namespaces.
    pub namespace: &'a str,
    /// spec.hostnames; empty means any.
    pub hostnames: &'a [String],
    /// Its parentRefs naming Gateways and ListenerSets.
    pub parents: &'a [ParentGateway],
    /// The route's ResolvedRefs condition (backend refs), the same for every parent.
    pub resolved_refs: Condition,
}

/// A route attached to a listener, with the hostnames it serves there (empty = any).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttachedRoute {
    /// Index into the routes given to [`attach`].
    pub route: usize,
    /// The hostnames it serves on that listener (empty = any).
    pub hostnames: Vec<String>,
}

/// One listener's status and the routes attached to it.
#[derive(Clone, Debug, Serialize)]
pub struct ListenerState {
    /// The listener's name.
    pub name: String,
    /// Its port (0 when out of range).
    pub port: u16,
    /// Its protocol as written (HTTP, HTTPS, TLS, TCP, …).
    pub protocol: String,
    /// Its hostname; `None` takes any host.
    pub hostname: Option<String>,
    /// Route kinds (group gateway.networking.k8s.io) this listener takes.
    pub supported_kinds: Vec<RouteKind>,
    /// Accepted, ResolvedRefs, Programmed and Conflicted.
    pub conditions: Vec<Condition>,
    /// The routes attached to it.
    pub routes: Vec<AttachedRoute>,
    /// Whether this proxy serves traffic on it (an HTTP listener without errors).
    pub served: bool,
}

/// One Gateway's status.
#[derive(Clone, Debug, Serialize)]
pub struct GatewayState {
    /// Its namespace and name.
    pub gateway: ServiceKey,
    /// The Gateway's `metadata.generation`, which every condition observed.
    pub generation: i64,
    /// Accepted and Programmed.
    pub conditions: Vec<Condition>,
    /// Its own listeners.
    pub listeners: Vec<ListenerState>,
    /// ListenerSets the Gateway accepted.
    pub attached_listener_sets: usize,
}

/// A ListenerSet: more listeners for a Gateway, served on the Gateway's address.
#[derive(Clone, Debug)]
pub struct ListenerSetInput {
    /// Its namespace and name.
    pub key: ServiceKey,
    /// The Gateway it extends (parentRef; namespace defaults to the ListenerSet's).
    pub gateway: ServiceKey,
    /// Its listeners, in the Gateway's listener type (the fields are the same).
    pub listeners: Vec<GatewayListeners>,
    /// creationTimestamp in nanoseconds; older ListenerSets win listener conflicts.
    pub created_at_nanos: Option<i128>,
    /// Its `metadata.generation`, which its conditions observe.
    pub generation: i64,
}

impl ListenerSetInput {
    /// Reads a ListenerSet named `namespace/name` at `generation`.
    pub fn new(
        ls: &ListenerSet,
        namespace: &str,
        name: &str,
        generation: i64,
    ) -> Result<Self, String> {
        let listeners = serde_json::to_value(&ls.spec.listeners)
            .and_then(serde_json::from_value)
            .map_err(|e| format!("spec.listeners: {e}"))?;
        Ok(ListenerSetInput {
            key: ServiceKey {
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
            gateway: ServiceKey {
                namespace: ls
                    .spec
                    .parent_ref
                    .namespace
                    .clone()
                    .unwrap_or_else(|| namespace.to_string()),
                name: ls.spec.parent_ref.name.clone(),
            },
            listeners,
            created_at_nanos: ls
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_nanosecond()),
            generation,
        })
    }
}

/// One ListenerSet's status.
#[derive(Clone, Debug, Serialize)]
pub struct ListenerSetState {
    /// Its namespace and name.
    pub key: ServiceKey,
    /// The ListenerSet's `metadata.generation`, which its conditions observe.
    pub generation: i64,
    /// The Gateway it extends.
    pub gateway: ServiceKey,
    /// Accepted and Programmed.
    pub conditions: Vec<Condition>,
    /// Its listeners.
    pub listeners: Vec<ListenerState>,
    /// Accepted by its Gateway: its listeners are served on the Gateway's address.
    pub accepted: bool,
}

/// Everything [`attach`] works out.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Attachment {
    /// The Gateways given, in order.
    pub gateways: Vec<GatewayState>,
    /// The ListenerSets of those Gateways.
    pub listener_sets: Vec<ListenerSetState>,
    /// In the order of the routes given; one entry per parentRef naming one of ours.
    pub routes: Vec<Vec<RouteParentStatus>>,
}

/// The status entry a route gets for one of its Gateway parents.
#[derive(Clone, Debug, Serialize)]
pub struct RouteParentStatus {
    /// The parentRef.
    pub parent: ParentGateway,
    /// Accepted and ResolvedRefs.
    pub conditions: Vec<Condition>,
}

/// The Gateways to attach to, each with its namespace and name.
pub struct GatewayInput<'a> {
    /// Its namespace and name.
    pub gateway: ServiceKey,
    /// The Gateway.
    pub spec: &'a Gateway,
    /// Its `metadata.generation`, which its conditions observe.
    pub generation: i64,
}

/// Attaches `routes` to the listeners of `gateways` (and of the ListenerSets they accept) and
/// computes the status of all of them. `namespace_labels` gives a namespace's labels (None when
/// the folder has no such Namespace). ListenerSets and parentRefs naming Gateways not in
/// `gateways` get no status: they are another controller's business.
pub fn attach(
    gateways: &[GatewayInput<'_>],
    listener_sets: &[ListenerSetInput],
    routes: &[RouteInput<'_>],
    namespace_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> Attachment {
    let mut states: Vec<GatewayState> = gateways.iter().map(gateway_state).collect();
    let mut sets = listener_set_states(gateways, &mut states, listener_sets, namespace_labels);
    let mut route_statuses = Vec::with_capacity(routes.len());
    for (r, route) in routes.iter().enumerate() {
        let mut statuses = Vec::new();
        for parent in route.parents {
            let accepted = if parent.kind == ParentKind::ListenerSet {
                let Some(i) = listener_sets.iter().position(|l| l.key == parent.gateway) else {
                    continue;
                };
                let Some(state) = sets.iter_mut().find(|s| s.key == parent.gateway) else {
                    continue;
                };
                if !state.accepted {
                    Condition::new(
                        ConditionType::Accepted,
                        false,
                        "NoMatchingParent",
                        format!("ListenerSet {} is not accepted by its Gateway", state.key),
                    )
                } else {
                    attach_one(
                        r,
                        route,
                        parent,
                        &listener_sets[i].listeners,
                        &state.key,
                        &mut state.listeners,
                        namespace_labels,
                    )
                }
            } else {
                let Some(g) = gateways.iter().position(|g| g.gateway == parent.gateway) else {
                    continue;
                };
                let state = &mut states[g];
                attach_one(
                    r,
                    route,
                    parent,
                    &gateways[g].spec.spec.listeners,
                    &state.gateway,
                    &mut state.listeners,
                    namespace_labels,
                )
            };
            statuses.push(RouteParentStatus {
                parent: parent.clone(),
                conditions: vec![accepted, route.resolved_refs.clone()],
            });
        }
        route_statuses.push(statuses);
    }
    // Keep only the ListenerSets of our Gateways.
    sets.retain(|s| gateways.iter().any(|g| g.gateway == s.gateway));
    Attachment {
        gateways: states,
        listener_sets: sets,
        routes: route_statuses,
    }
}

/// Attaches one route to the listeners `parent` selects; returns its Accepted condition.
fn attach_one(
    r: usize,
    route: &RouteInput<'_>,
    parent: &ParentGateway,
    specs: &[GatewayListeners],
    parent_key: &ServiceKey,
    listeners: &mut [ListenerState],
    namespace_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> Condition {
    let gateway_ns = &parent_key.namespace;
    let selected: Vec<usize> = specs
        .iter()
        .enumerate()
        .filter(|(_, l)| parent.section_name.as_ref().is_none_or(|s| *s == l.name))
        .filter(|(_, l)| parent.port.is_none_or(|p| i32::from(p) == l.port))
        .map(|(i, _)| i)
        .collect();
    if selected.is_empty() {
        return no_matching_parent(parent, parent_key);
    }
    let labels = namespace_labels(route.namespace).unwrap_or_default();
    let allowed: Vec<usize> = selected
        .into_iter()
        .filter(|&i| {
            admits_namespace(&specs[i], route.namespace, &labels, gateway_ns)
                && listeners[i].supported_kinds.contains(&route.kind)
        })
        .collect();
    if allowed.is_empty() {
        return Condition::new(
            ConditionType::Accepted,
            false,
            "NotAllowedByListeners",
            format!(
                "no selected listener of {} {parent_key} allows {} routes from namespace {}",
                parent.kind, route.kind, route.namespace
            ),
        );
    }
    let mut attached = false;
    for i in allowed {
        let listener_host = specs[i].hostname.as_deref();
        let Some(hostnames) = hostname::intersect(listener_host, route.hostnames) else {
            continue;
        };
        attached = true;
        let listener = &mut listeners[i];
        // The same route named twice (two parentRefs selecting one listener) attaches once.
        if !listener.routes.iter().any(|a| a.route == r) {
            listener.routes.push(AttachedRoute {
                route: r,
                hostnames,
            });
        }
    }
    if attached {
        Condition::new(
            ConditionType::Accepted,
            true,
            "Accepted",
            "route is attached",
        )
    } else {
        Condition::new(
            ConditionType::Accepted,
            false,
            "NoMatchingListenerHostname",
            format!(
                "none of the route's hostnames ({}) matches a selected listener's hostname",
                route.hostnames.join(", ")
            ),
        )
    }
}

/// Accepted=False for a parentRef whose sectionName and port select no listener.
fn no_matching_parent(parent: &ParentGateway, parent_key: &ServiceKey) -> Condition {
    let what = match (&parent.section_name, parent.port) {
        (Some(s), Some(p)) => format!("no listener named {s} on port {p}"),
        (Some(s), None) => format!("no listener named {s}"),
        (None, Some(p)) => format!("no listener on port {p}"),
        (None, None) => "it has no listeners".to_string(),
    };
    Condition::new(
        ConditionType::Accepted,
        false,
        "NoMatchingParent",
        format!("{} {parent_key}: {what}", parent.kind),
    )
}

#[cfg(test)]
mod tests;
