//! Which Gateway this proxy serves, in which role, and the status of every Gateway.

use super::{issue_err, of_kind, Builder};
use crate::config::{Document, Resource};
use crate::snapshot::{GatewayRef, Role, State, StatusIssue, WAYPOINT_CLASS, WAYPOINT_FOR};
use gateway_api::experimental::gateways::{
    Gateway, GatewayListenersAllowedRoutesNamespacesFrom as AllowedFrom,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use std::collections::BTreeMap;

/// The Gateway a build serves and what its spec and labels say about the traffic it takes.
pub(super) struct ServedGateway {
    pub(super) gateway: GatewayRef,
    /// Namespaces whose services and pods may bind to the waypoint.
    pub(super) allowed: AllowedNamespaces,
    /// Istio's `istio.io/waypoint-for`: which traffic the waypoint takes.
    pub(super) waypoint_for: WaypointFor,
    /// `None` when no Gateway could be selected: the build then yields statuses only.
    pub(super) role: Option<Role>,
}

impl ServedGateway {
    fn none() -> Self {
        ServedGateway {
            gateway: GatewayRef {
                namespace: String::new(),
                name: String::new(),
            },
            allowed: AllowedNamespaces::Same,
            waypoint_for: WaypointFor::Service,
            role: None,
        }
    }
}

impl<'a> Builder<'a> {
    /// Picks the Gateway this proxy serves and reports every Gateway's status: the one
    /// `--gateway` names (any class; a class other than istio-waypoint is the Gateway role),
    /// else the only istio-waypoint Gateway.
    pub(super) fn select_gateway(
        &mut self,
        docs: &[&'a Document],
        wanted: Option<&GatewayRef>,
        gateway_class: &str,
    ) -> ServedGateway {
        let gateways = of_kind(docs, |r| match r {
            Resource::Gateway(g) => Some(&**g),
            _ => None,
        });
        let chosen = self.choose_gateway(&gateways, wanted);
        let mut result = ServedGateway::none();
        for (d, g) in &gateways {
            let is_chosen = chosen.is_some_and(|c| std::ptr::eq(c, *d));
            if let Some(served) = self.report_gateway(d, g, is_chosen, gateway_class) {
                result = served;
            }
        }
        result
    }

    /// The Gateway `--gateway` names, or else the only istio-waypoint one; when there is none
    /// (or several), a global error says what to do.
    fn choose_gateway(
        &mut self,
        gateways: &[(&'a Document, &'a Gateway)],
        wanted: Option<&GatewayRef>,
    ) -> Option<&'a Document> {
        let name = |d: &Document| format!("{}/{}", d.object.namespace, d.object.name);
        if let Some(w) = wanted {
            let found = gateways
                .iter()
                .find(|(d, _)| d.object.namespace == w.namespace && d.object.name == w.name);
            if found.is_none() {
                self.global_errors.push(format!(
                    "--gateway {w}: no Gateway with that namespace/name in the folder (found: {})",
                    list_or_none(gateways.iter().map(|(d, _)| name(d)))
                ));
            }
            return found.map(|(d, _)| *d);
        }
        let waypoints: Vec<&Document> = gateways
            .iter()
            .filter(|(_, g)| g.spec.gateway_class_name == WAYPOINT_CLASS)
            .map(|(d, _)| *d)
            .collect();
        match waypoints.as_slice() {
            [d] => Some(*d),
            [] => {
                self.global_errors.push(format!(
                    "no Gateway of class {WAYPOINT_CLASS} in the folder: add one (listener mesh, port 15008, protocol HBONE), \
                     or serve a Gateway of another class with --gateway NAMESPACE/NAME"
                ));
                None
            }
            many => {
                self.global_errors.push(format!(
                    "{} Gateways of class {WAYPOINT_CLASS} ({}): pick one with --gateway NAMESPACE/NAME",
                    many.len(),
                    many.iter().map(|d| name(d)).collect::<Vec<_>>().join(", ")
                ));
                None
            }
        }
    }

    /// Gives one Gateway its status; returns what the build serves when it is the chosen one.
    fn report_gateway(
        &mut self,
        d: &Document,
        g: &Gateway,
        is_chosen: bool,
        gateway_class: &str,
    ) -> Option<ServedGateway> {
        let gateway = GatewayRef {
            namespace: d.object.namespace.clone(),
            name: d.object.name.clone(),
        };
        let class = g.spec.gateway_class_name.as_str();
        if class != WAYPOINT_CLASS {
            let state = if is_chosen {
                State::Accepted
            } else if class == gateway_class {
                State::Ignored("another Gateway of this class (served with --gateway)".into())
            } else {
                State::Ignored(format!(
                    "gatewayClassName {class} is neither {WAYPOINT_CLASS} nor {gateway_class}"
                ))
            };
            self.status(d, state, Vec::new());
            return is_chosen.then_some(ServedGateway {
                gateway,
                allowed: AllowedNamespaces::Same,
                waypoint_for: WaypointFor::Service,
                role: Some(Role::Gateway),
            });
        }
        if !is_chosen {
            let state = State::Ignored("another waypoint's Gateway".into());
            self.status(d, state, Vec::new());
            return None;
        }
        let (allowed, issues) = check_waypoint_gateway(g);
        self.status(d, State::Accepted, issues);
        let label = g.metadata.labels.as_ref().and_then(|l| l.get(WAYPOINT_FOR));
        let waypoint_for = WaypointFor::parse(label.map(String::as_str));
        Some(ServedGateway {
            gateway,
            allowed,
            waypoint_for,
            role: Some(Role::Waypoint),
        })
    }
}

/// Istio's `istio.io/waypoint-for` label on a waypoint Gateway: which traffic it takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum WaypointFor {
    /// Traffic to services (the default).
    Service,
    /// Traffic addressed to pods.
    Workload,
    /// Both.
    All,
    /// Neither.
    None,
    /// A value Istio does not define: pods are not served, and the message quotes it.
    Other(String),
}

impl WaypointFor {
    /// The label's value; no label means services.
    fn parse(label: Option<&str>) -> WaypointFor {
        match label {
            None | Some("service") => WaypointFor::Service,
            Some("workload") => WaypointFor::Workload,
            Some("all") => WaypointFor::All,
            Some("none") => WaypointFor::None,
            Some(other) => WaypointFor::Other(other.to_string()),
        }
    }

    /// The value as the label writes it.
    pub(super) fn as_str(&self) -> &str {
        match self {
            WaypointFor::Service => "service",
            WaypointFor::Workload => "workload",
            WaypointFor::All => "all",
            WaypointFor::None => "none",
            WaypointFor::Other(value) => value,
        }
    }

    /// Whether the waypoint takes traffic addressed to pods.
    pub(super) fn takes_workloads(&self) -> bool {
        matches!(self, WaypointFor::Workload | WaypointFor::All)
    }
}

/// Which namespaces' services the waypoint's `mesh` listener admits (`allowedRoutes`).
#[derive(Clone, Debug)]
pub(super) enum AllowedNamespaces {
    Same,
    All,
    Selector(LabelSelector),
}

impl AllowedNamespaces {
    pub(super) fn allows(
        &self,
        ns: &str,
        ns_labels: &BTreeMap<String, String>,
        gateway_ns: &str,
    ) -> bool {
        match self {
            AllowedNamespaces::Same => ns == gateway_ns,
            AllowedNamespaces::All => true,
            AllowedNamespaces::Selector(sel) => selector_matches(sel, ns_labels),
        }
    }
}

fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let exprs: Vec<routing::gateway::SelectorRequirement<'_>> = sel
        .match_expressions
        .iter()
        .flatten()
        .map(|e| routing::gateway::SelectorRequirement {
            key: &e.key,
            operator: &e.operator,
            values: e.values.as_deref().unwrap_or_default(),
        })
        .collect();
    routing::gateway::labels_match(sel.match_labels.as_ref(), &exprs, labels)
}

/// Checks the Gateway is shaped as Istio's waypoint expects and reads its `allowedRoutes`.
fn check_waypoint_gateway(g: &Gateway) -> (AllowedNamespaces, Vec<StatusIssue>) {
    let mut issues = Vec::new();
    let listener = g
        .spec
        .listeners
        .iter()
        .enumerate()
        .find(|(_, l)| l.protocol == "HBONE" && l.port == 15008);
    let Some((i, l)) = listener else {
        issues.push(issue_err(
            "spec.listeners",
            "a waypoint Gateway needs a listener with protocol HBONE on port 15008 (conventionally named mesh)",
        ));
        return (AllowedNamespaces::Same, issues);
    };
    let namespaces = l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    let allowed = match namespaces.and_then(|n| n.from.as_ref().map(|f| (n, f))) {
        None | Some((_, AllowedFrom::Same)) => AllowedNamespaces::Same,
        Some((_, AllowedFrom::All)) => AllowedNamespaces::All,
        Some((n, AllowedFrom::Selector)) => match &n.selector {
            Some(sel) => AllowedNamespaces::Selector(LabelSelector {
                match_labels: sel.match_labels.clone(),
                match_expressions: sel.match_expressions.as_ref().map(|v| {
                    v.iter()
                        .map(|e| LabelSelectorRequirement {
                            key: e.key.clone(),
                            operator: e.operator.clone(),
                            values: e.values.clone(),
                        })
                        .collect()
                }),
            }),
            None => {
                issues.push(issue_err(
                    format!("spec.listeners[{i}].allowedRoutes.namespaces.selector"),
                    "from: Selector needs a selector",
                ));
                AllowedNamespaces::Same
            }
        },
    };
    (allowed, issues)
}

fn list_or_none(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
