//! The Gateway role: which routes attach to which listeners of a Gateway, the hostnames they
//! serve there, and the Gateway API status of both (the conditions a controller would write).
//!
//! Attachment follows the Gateway API spec: a parentRef selects the listeners its
//! `sectionName` and `port` name (all when both are unset); of those, the ones whose
//! `allowedRoutes` admit the route's namespace and kind; of those, the ones whose hostname
//! intersects the route's hostnames. Each step that leaves nothing gives the route's
//! `Accepted=False` reason: NoMatchingParent, NotAllowedByListeners, NoMatchingListenerHostname.

use std::collections::BTreeMap;

use gateway_api::experimental::gateways::{
    Gateway, GatewayAllowedListenersNamespacesFrom, GatewayListeners,
    GatewayListenersAllowedRoutesNamespacesFrom, GatewayListenersAllowedRoutesNamespacesSelector,
};
use gateway_api::experimental::listenersets::ListenerSet;
use serde::Serialize;

use crate::hostname;
use crate::parent::{ParentGateway, ServiceKey};

mod kinds;
pub use kinds::{ConditionType, ParentKind, RouteKind};

/// The group of every Gateway API kind.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// The controller name our status entries carry.
pub const CONTROLLER_NAME: &str = "waypoint.dev/gateway-controller";

/// The label Kubernetes puts on every Namespace (since 1.22); selectors commonly use it.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

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

/// Accepts (or not) each ListenerSet of one of `gateways` and checks its listeners against the
/// Gateway's and older ListenerSets' (the earlier listener wins a conflict).
fn listener_set_states(
    gateways: &[GatewayInput<'_>],
    states: &mut [GatewayState],
    listener_sets: &[ListenerSetInput],
    namespace_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> Vec<ListenerSetState> {
    let mut order: Vec<usize> = (0..listener_sets.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&listener_sets[a], &listener_sets[b]);
        (a.created_at_nanos.is_none(), a.created_at_nanos, &a.key).cmp(&(
            b.created_at_nanos.is_none(),
            b.created_at_nanos,
            &b.key,
        ))
    });
    // Listeners already claimed per Gateway: (port, hostname, protocol).
    let mut claimed: Vec<Vec<(i32, Option<String>, String)>> = gateways
        .iter()
        .map(|g| {
            g.spec
                .spec
                .listeners
                .iter()
                .map(|l| (l.port, l.hostname.clone(), l.protocol.clone()))
                .collect()
        })
        .collect();
    let mut out: Vec<ListenerSetState> = Vec::new();
    for i in order {
        let ls = &listener_sets[i];
        let Some(g) = gateways.iter().position(|g| g.gateway == ls.gateway) else {
            continue;
        };
        let mut listeners: Vec<ListenerState> = ls
            .listeners
            .iter()
            .map(|l| listener_state(l, &ls.listeners))
            .collect();
        let labels = namespace_labels(&ls.key.namespace).unwrap_or_default();
        let allowed = admits_listener_set(gateways[g].spec, &ls.key.namespace, &labels);
        if !allowed {
            for l in &mut listeners {
                l.served = false;
            }
            out.push(ListenerSetState {
                key: ls.key.clone(),
                generation: ls.generation,
                gateway: ls.gateway.clone(),
                conditions: vec![
                    Condition::new(ConditionType::Accepted,
                        false,
                        "NotAllowed",
                        format!(
                            "Gateway {} does not allow ListenerSets from namespace {} (spec.allowedListeners)",
                            ls.gateway, ls.key.namespace
                        ),
                    ),
                    Condition::new(ConditionType::Programmed, false, "NotAllowed", "not accepted"),
                ],
                listeners,
                accepted: false,
            });
            continue;
        }
        for (l, spec) in listeners.iter_mut().zip(&ls.listeners) {
            let same_port = claimed[g].iter().filter(|(port, ..)| *port == spec.port);
            let mut reason = None;
            for (_, hostname, protocol) in same_port {
                if *protocol != spec.protocol {
                    reason = Some("ProtocolConflict");
                    break;
                }
                if *hostname == spec.hostname {
                    reason = Some("HostnameConflict");
                }
            }
            if let Some(reason) = reason {
                mark_conflicted(l, spec.port, reason);
            }
        }
        claimed[g].extend(
            ls.listeners
                .iter()
                .map(|l| (l.port, l.hostname.clone(), l.protocol.clone())),
        );
        states[g].attached_listener_sets += 1;
        let valid = listeners.iter().any(|l| l.served);
        out.push(ListenerSetState {
            key: ls.key.clone(),
            generation: ls.generation,
            gateway: ls.gateway.clone(),
            conditions: vec![
                Condition::new(
                    ConditionType::Accepted,
                    true,
                    "Accepted",
                    "accepted by its Gateway",
                ),
                if valid {
                    Condition::new(ConditionType::Programmed, true, "Programmed", "programmed")
                } else {
                    Condition::new(
                        ConditionType::Programmed,
                        false,
                        "Invalid",
                        "no listener can be served",
                    )
                },
            ],
            listeners,
            accepted: true,
        });
    }
    out
}

/// A Gateway admits ListenerSets only as its spec.allowedListeners says (none by default).
fn admits_listener_set(g: &Gateway, ns: &str, labels: &BTreeMap<String, String>) -> bool {
    let gateway_ns = g.metadata.namespace.as_deref().unwrap_or("default");
    let namespaces = g
        .spec
        .allowed_listeners
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match namespaces.and_then(|n| n.from.as_ref()) {
        None | Some(GatewayAllowedListenersNamespacesFrom::None) => false,
        Some(GatewayAllowedListenersNamespacesFrom::Same) => ns == gateway_ns,
        Some(GatewayAllowedListenersNamespacesFrom::All) => true,
        Some(GatewayAllowedListenersNamespacesFrom::Selector) => {
            match namespaces.and_then(|n| n.selector.as_ref()) {
                Some(sel) => {
                    let sel: GatewayListenersAllowedRoutesNamespacesSelector =
                        match serde_json::to_value(sel).and_then(serde_json::from_value) {
                            Ok(s) => s,
                            Err(_) => return false,
                        };
                    selector_matches(&sel, ns, labels)
                }
                None => false,
            }
        }
    }
}

/// An earlier listener (the Gateway's own, or an older ListenerSet's) holds this one's port
/// with the same hostname (HostnameConflict) or another protocol (ProtocolConflict).
fn mark_conflicted(l: &mut ListenerState, port: i32, reason: &str) {
    l.served = false;
    let why =
        format!("an earlier listener on port {port} has the same hostname or another protocol");
    for c in &mut l.conditions {
        *c = match c.kind {
            ConditionType::Conflicted => Condition::new(c.kind, true, reason, why.clone()),
            ConditionType::Accepted => Condition::new(c.kind, false, reason, why.clone()),
            ConditionType::Programmed => Condition::new(c.kind, false, "Invalid", why.clone()),
            ConditionType::ResolvedRefs => continue,
        };
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
        let what = match (&parent.section_name, parent.port) {
            (Some(s), Some(p)) => format!("no listener named {s} on port {p}"),
            (Some(s), None) => format!("no listener named {s}"),
            (None, Some(p)) => format!("no listener on port {p}"),
            (None, None) => "it has no listeners".to_string(),
        };
        return Condition::new(
            ConditionType::Accepted,
            false,
            "NoMatchingParent",
            format!("{} {parent_key}: {what}", parent.kind),
        );
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

fn admits_namespace(
    l: &GatewayListeners,
    ns: &str,
    labels: &BTreeMap<String, String>,
    gateway_ns: &str,
) -> bool {
    let namespaces = l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match namespaces.and_then(|n| n.from.as_ref()) {
        None | Some(GatewayListenersAllowedRoutesNamespacesFrom::Same) => ns == gateway_ns,
        Some(GatewayListenersAllowedRoutesNamespacesFrom::All) => true,
        Some(GatewayListenersAllowedRoutesNamespacesFrom::Selector) => {
            match namespaces.and_then(|n| n.selector.as_ref()) {
                Some(sel) => selector_matches(sel, ns, labels),
                // The CRD requires a selector with Selector; without one nothing is admitted.
                None => false,
            }
        }
    }
}

/// A Kubernetes label selector against a namespace's labels (plus the name label Kubernetes
/// adds to every namespace).
fn selector_matches(
    sel: &GatewayListenersAllowedRoutesNamespacesSelector,
    ns: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let mut labels = labels.clone();
    labels
        .entry(NAMESPACE_NAME_LABEL.to_string())
        .or_insert_with(|| ns.to_string());
    let exprs: Vec<SelectorRequirement<'_>> = sel
        .match_expressions
        .iter()
        .flatten()
        .map(|e| SelectorRequirement {
            key: &e.key,
            operator: &e.operator,
            values: e.values.as_deref().unwrap_or_default(),
        })
        .collect();
    labels_match(sel.match_labels.as_ref(), &exprs, &labels)
}

/// One `matchExpressions` entry of a Kubernetes label selector.
pub struct SelectorRequirement<'a> {
    /// The label key.
    pub key: &'a str,
    /// In, NotIn, Exists or DoesNotExist.
    pub operator: &'a str,
    /// The values for In and NotIn.
    pub values: &'a [String],
}

/// Whether `labels` satisfy a Kubernetes label selector: every `matchLabels` pair and every
/// expression (In, NotIn, Exists, DoesNotExist).
pub fn labels_match(
    match_labels: Option<&BTreeMap<String, String>>,
    exprs: &[SelectorRequirement<'_>],
    labels: &BTreeMap<String, String>,
) -> bool {
    let labels_ok = match_labels
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = exprs.iter().all(|e| match e.operator {
        "In" => labels.get(e.key).is_some_and(|v| e.values.contains(v)),
        "NotIn" => labels.get(e.key).is_none_or(|v| !e.values.contains(v)),
        "Exists" => labels.contains_key(e.key),
        "DoesNotExist" => !labels.contains_key(e.key),
        // An operator we cannot read admits nothing rather than everything.
        _ => false,
    });
    labels_ok && exprs_ok
}

/// The Gateway's own conditions and each listener's, before any route attaches.
fn gateway_state(g: &GatewayInput<'_>) -> GatewayState {
    let listeners: Vec<ListenerState> = g
        .spec
        .spec
        .listeners
        .iter()
        .map(|l| listener_state(l, &g.spec.spec.listeners))
        .collect();
    let programmed = listeners.iter().any(|l| l.served);
    let conditions = vec![
        Condition::new(
            ConditionType::Accepted,
            true,
            "Accepted",
            "the Gateway is accepted",
        ),
        if programmed {
            Condition::new(
                ConditionType::Programmed,
                true,
                "Programmed",
                "the Gateway is programmed",
            )
        } else {
            Condition::new(
                ConditionType::Programmed,
                false,
                "Invalid",
                "no listener of the Gateway can be served",
            )
        },
    ];
    GatewayState {
        gateway: g.gateway.clone(),
        generation: g.generation,
        conditions,
        listeners,
        attached_listener_sets: 0,
    }
}

/// The route kinds a listener protocol carries.
fn kinds_for(protocol: &str) -> &'static [RouteKind] {
    match protocol {
        "HTTP" | "HTTPS" => &[RouteKind::Http, RouteKind::Grpc],
        "TLS" => &[RouteKind::Tls],
        "TCP" => &[RouteKind::Tcp],
        "UDP" => &[RouteKind::Udp],
        _ => &[],
    }
}

fn listener_state(l: &GatewayListeners, all: &[GatewayListeners]) -> ListenerState {
    let protocol_kinds = kinds_for(&l.protocol);
    let mut resolved = Condition::new(
        ConditionType::ResolvedRefs,
        true,
        "ResolvedRefs",
        "refs resolved",
    );
    let configured_kinds = l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref());
    let supported_kinds: Vec<RouteKind> = match configured_kinds {
        None => protocol_kinds.to_vec(),
        Some(kinds) => {
            let mut ok = Vec::new();
            for k in kinds {
                let group = k.group.as_deref().unwrap_or(GATEWAY_GROUP);
                let known = RouteKind::parse(&k.kind).filter(|k| protocol_kinds.contains(k));
                if let Some(kind) = known.filter(|_| group == GATEWAY_GROUP) {
                    ok.push(kind);
                } else {
                    resolved = Condition::new(
                        ConditionType::ResolvedRefs,
                        false,
                        "InvalidRouteKinds",
                        format!(
                            "route kind {group}/{} cannot attach to a {} listener",
                            k.kind, l.protocol
                        ),
                    );
                }
            }
            ok
        }
    };
    let mut accepted = Condition::new(
        ConditionType::Accepted,
        true,
        "Accepted",
        "listener accepted",
    );
    let mut programmed = Condition::new(
        ConditionType::Programmed,
        true,
        "Programmed",
        "listener programmed",
    );
    match l.protocol.as_str() {
        "HTTP" => {}
        "HTTPS" => {
            // Frontend TLS is not served yet; the certificate refs are still checked so the
            // status says what is wrong with them first.
            let refs = l
                .tls
                .as_ref()
                .and_then(|t| t.certificate_refs.as_ref())
                .map_or(0, Vec::len);
            if refs == 0 {
                resolved = Condition::new(
                    ConditionType::ResolvedRefs,
                    false,
                    "InvalidCertificateRef",
                    "an HTTPS listener needs tls.certificateRefs",
                );
            } else {
                resolved = Condition::new(
                    ConditionType::ResolvedRefs,
                    false,
                    "InvalidCertificateRef",
                    "certificate Secrets are not read by this proxy yet",
                );
            }
            programmed = Condition::new(
                ConditionType::Programmed,
                false,
                "Invalid",
                "HTTPS listeners are not served yet; use protocol HTTP",
            );
        }
        other => {
            accepted = Condition::new(
                ConditionType::Accepted,
                false,
                "UnsupportedProtocol",
                format!("protocol {other} is not supported; use HTTP"),
            );
            programmed = Condition::new(
                ConditionType::Programmed,
                false,
                "Invalid",
                format!("protocol {other} is not served"),
            );
        }
    }
    // Two listeners on one port with the same hostname cannot both get the traffic.
    let others = all
        .iter()
        .filter(|o| !std::ptr::eq(*o, l) && o.port == l.port);
    let mut clash = None;
    for o in others {
        if o.protocol != l.protocol {
            clash = Some("ProtocolConflict");
            break;
        }
        if o.hostname == l.hostname {
            clash = Some("HostnameConflict");
        }
    }
    let conflicted = if let Some(reason) = clash {
        programmed = Condition::new(
            ConditionType::Programmed,
            false,
            "Invalid",
            "the listener conflicts with another",
        );
        Condition::new(
            ConditionType::Conflicted,
            true,
            reason,
            format!(
                "another listener on port {} has the same hostname or another protocol",
                l.port
            ),
        )
    } else {
        Condition::new(
            ConditionType::Conflicted,
            false,
            "NoConflicts",
            "no conflicts",
        )
    };
    let served = accepted.is_true() && programmed.is_true() && l.protocol == "HTTP";
    ListenerState {
        name: l.name.clone(),
        port: u16::try_from(l.port).unwrap_or(0),
        protocol: l.protocol.clone(),
        hostname: l.hostname.clone(),
        supported_kinds,
        conditions: vec![accepted, resolved, programmed, conflicted],
        routes: Vec::new(),
        served,
    }
}

#[cfg(test)]
mod tests;
