//! Where a RequestAuthentication or AuthorizationPolicy applies at this proxy, as Istio's
//! ambient docs define it for waypoints: `targetRefs` naming the served Gateway, the
//! `istio-waypoint` GatewayClass (from the root namespace only), or a Service or ServiceEntry
//! of the policy's namespace that this waypoint serves. A `selector`, or no target at all
//! (namespace-wide, mesh-wide in the root namespace), is for ztunnel and sidecars: it does not
//! apply at a waypoint.

use super::super::gateway_selection::ServedGateway;
use crate::snapshot::{
    Binding, GatewayRef, Role, ServiceInfo, ServiceSource, StatusIssue, WAYPOINT_CLASS,
};
use authz::spec::{Attachment, TargetRef};
use routing::{ServiceKey, Severity};
use std::collections::HashMap;

/// The API group of Gateway and GatewayClass.
const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// The API group of ServiceEntry.
const ISTIO_NETWORKING_GROUP: &str = "networking.istio.io";

/// What a policy attaches to here.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Targets {
    /// The waypoint itself (the served Gateway, or the `istio-waypoint` GatewayClass): every
    /// request through it.
    pub(super) waypoint: bool,
    /// Served services, for requests to them.
    pub(super) services: Vec<ServiceKey>,
}

impl Targets {
    /// Attached to nothing this proxy serves.
    pub(super) fn is_empty(&self) -> bool {
        !self.waypoint && self.services.is_empty()
    }
}

/// A policy's attachment, with what is wrong with it and why targets do not apply here.
#[derive(Clone, Debug, Default)]
pub(super) struct Resolution {
    pub(super) targets: Targets,
    pub(super) issues: Vec<StatusIssue>,
    /// One line per target (or the missing one) that has no effect here, for the status of
    /// a policy attached to nothing.
    pub(super) unapplied: Vec<String>,
}

/// What the targets of this build's policies can name.
pub(super) struct Scope<'s> {
    gateway: &'s GatewayRef,
    role: Option<Role>,
    root_namespace: &'s str,
    services: HashMap<(&'s str, &'s str, Kind), &'s Binding>,
}

/// A Service or a ServiceEntry: same-named ones are different targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Service,
    ServiceEntry,
}

impl<'s> Scope<'s> {
    pub(super) fn new(
        served: &'s ServedGateway,
        services: &'s [ServiceInfo],
        root_namespace: &'s str,
    ) -> Self {
        let services = services
            .iter()
            .map(|s| {
                let kind = match s.source {
                    ServiceSource::Service => Kind::Service,
                    ServiceSource::ServiceEntry => Kind::ServiceEntry,
                };
                let key = (s.key.namespace.as_str(), s.key.name.as_str(), kind);
                (key, &s.binding)
            })
            .collect();
        Scope {
            gateway: &served.gateway,
            role: served.role,
            root_namespace,
            services,
        }
    }

    /// Where the policy in `namespace` with `spec` attaches.
    pub(super) fn resolve(&self, namespace: &str, spec: &serde_json::Value) -> Resolution {
        let mut res = Resolution::default();
        let attachment = match Attachment::of(spec) {
            Ok(a) => a,
            Err(e) => {
                res.issues.push(issue(
                    Severity::Error,
                    "spec",
                    format!("cannot read selector, targetRef or targetRefs: {e}; the policy applies nowhere until fixed"),
                ));
                res.unapplied.push("its targets cannot be read".into());
                return res;
            }
        };
        if attachment.targets().next().is_none() {
            if self.role == Some(Role::Gateway) {
                self.by_workload_selection(namespace, &attachment, &mut res);
            } else {
                self.not_for_waypoints(namespace, &attachment, &mut res);
            }
            return res;
        }
        if attachment.target_ref.is_some() && !attachment.target_refs.is_empty() {
            res.issues.push(issue(
                Severity::Error,
                "spec.targetRef",
                "set targetRefs only (targetRef is its deprecated single form; Istio rejects both \
                 at once); both are used",
            ));
        }
        if attachment.selector.is_some() {
            res.issues.push(issue(
                Severity::Error,
                "spec.selector",
                "set either selector or targetRefs, not both (Istio rejects such a policy); the targetRefs are used",
            ));
        }
        let single = attachment
            .target_ref
            .iter()
            .map(|t| ("spec.targetRef".to_string(), t));
        let listed = (attachment.target_refs.iter().enumerate())
            .map(|(i, t)| (format!("spec.targetRefs[{i}]"), t));
        for (field, target) in single.chain(listed) {
            self.resolve_target(namespace, &field, target, &mut res);
        }
        res
    }

    /// The Gateway role is a workload like a sidecar for Istio: a policy without targets
    /// applies when its selector matches the Gateway's pods (in the Gateway's namespace), or,
    /// without one, from the Gateway's namespace or the root namespace.
    fn by_workload_selection(&self, namespace: &str, a: &Attachment, res: &mut Resolution) {
        let labels = a.selector.as_ref().map(|s| &s.match_labels);
        let applies = match labels.filter(|l| !l.is_empty()) {
            Some(labels) => {
                namespace == self.gateway.namespace && selects_gateway_pods(labels, self.gateway)
            }
            None => namespace == self.gateway.namespace || namespace == self.root_namespace,
        };
        if applies {
            res.targets.waypoint = true;
        } else {
            res.unapplied.push(format!(
                "selects other workloads than Gateway {}'s pods",
                self.gateway
            ));
        }
    }

    /// A policy without targets: for the workloads' ztunnel or sidecars, not this waypoint.
    fn not_for_waypoints(&self, namespace: &str, a: &Attachment, res: &mut Resolution) {
        let (field, what) = if a.selector.is_some() {
            (
                "spec.selector",
                "selects workloads (spec.selector)".to_string(),
            )
        } else if namespace == self.root_namespace {
            (
                "spec",
                format!("is mesh-wide (root namespace {namespace}, no targetRefs)"),
            )
        } else {
            (
                "spec",
                format!("is namespace-wide ({namespace}, no targetRefs)"),
            )
        };
        let why = format!(
            "{what}: ztunnel enforces it (its L4 parts), a waypoint does not; to apply it here \
             use targetRefs naming the Gateway {} or a Service it serves",
            self.gateway
        );
        res.issues
            .push(issue(Severity::Warning, field, why.clone()));
        res.unapplied.push(why);
    }

    fn resolve_target(&self, namespace: &str, field: &str, t: &TargetRef, res: &mut Resolution) {
        if let Some(other) = t
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty() && *n != namespace)
        {
            res.issues.push(issue(
                Severity::Error,
                format!("{field}.namespace"),
                format!(
                    "targets namespace {other}, but Istio supports targets in the policy's own namespace \
                     ({namespace}) only; this target applies nowhere: move the policy to {other}"
                ),
            ));
            return;
        }
        match (t.group.as_str(), t.kind.as_str()) {
            (GATEWAY_GROUP, "Gateway") => self.gateway_target(namespace, t, res),
            (GATEWAY_GROUP, "GatewayClass") => self.class_target(namespace, field, t, res),
            ("" | "core", "Service") => self.service_target(namespace, field, t, Kind::Service, res),
            (ISTIO_NETWORKING_GROUP, "ServiceEntry") => {
                self.service_target(namespace, field, t, Kind::ServiceEntry, res)
            }
            (group, kind) => res.issues.push(issue(
                Severity::Error,
                format!("{field}.kind"),
                format!(
                    "kind {kind} of group '{group}' cannot be targeted at a waypoint; this target applies \
                     nowhere: use Gateway or GatewayClass (group {GATEWAY_GROUP}), Service (group \"\") \
                     or ServiceEntry (group {ISTIO_NETWORKING_GROUP})"
                ),
            )),
        }
    }

    fn gateway_target(&self, namespace: &str, t: &TargetRef, res: &mut Resolution) {
        if self.role.is_some() && namespace == self.gateway.namespace && t.name == self.gateway.name
        {
            res.targets.waypoint = true;
        } else {
            res.unapplied.push(format!(
                "targets Gateway {namespace}/{}, not the Gateway this proxy serves ({})",
                t.name, self.gateway
            ));
        }
    }

    fn class_target(&self, namespace: &str, field: &str, t: &TargetRef, res: &mut Resolution) {
        if t.name != WAYPOINT_CLASS {
            res.issues.push(issue(
                Severity::Warning,
                format!("{field}.name"),
                format!(
                    "only GatewayClass {WAYPOINT_CLASS} can be targeted; this target has no effect"
                ),
            ));
            res.unapplied
                .push(format!("targets GatewayClass {}", t.name));
        } else if namespace != self.root_namespace {
            res.issues.push(issue(
                Severity::Warning,
                field,
                format!(
                    "a GatewayClass target applies only to policies in the root namespace ({}); this \
                     target has no effect: move the policy there, or target the Gateway",
                    self.root_namespace
                ),
            ));
            res.unapplied.push(format!(
                "targets GatewayClass {WAYPOINT_CLASS} from outside the root namespace"
            ));
        } else if self.role == Some(Role::Waypoint) {
            res.targets.waypoint = true;
        } else {
            res.unapplied.push(format!(
                "targets GatewayClass {WAYPOINT_CLASS}, and this proxy is not a waypoint"
            ));
        }
    }

    fn service_target(
        &self,
        namespace: &str,
        field: &str,
        t: &TargetRef,
        kind: Kind,
        res: &mut Resolution,
    ) {
        let name = t.name.as_str();
        match self.services.get(&(namespace, name, kind)) {
            Some(Binding::Bound) => res.targets.services.push(ServiceKey {
                namespace: namespace.to_string(),
                name: name.to_string(),
            }),
            Some(Binding::NotBound(why)) => res.unapplied.push(format!(
                "targets {kind:?} {namespace}/{name}, which this waypoint does not serve ({why})"
            )),
            None => {
                let missing = format!("no {kind:?} {namespace}/{name} in the configuration");
                res.issues.push(issue(
                    Severity::Warning,
                    format!("{field}.name"),
                    format!("{missing}: this target has no effect until it exists"),
                ));
                res.unapplied.push(missing);
            }
        }
    }
}

/// The labels Istio puts on the pods of a Gateway it deploys (waypoints included), naming it.
const GATEWAY_NAME_LABELS: [&str; 2] = [
    "gateway.networking.k8s.io/gateway-name",
    "istio.io/gateway-name",
];

/// Whether `match_labels` (not empty) selects the pods Istio deploys for `gateway`.
pub(super) fn selects_gateway_pods(
    match_labels: &std::collections::BTreeMap<String, String>,
    gateway: &GatewayRef,
) -> bool {
    match_labels
        .iter()
        .all(|(k, v)| GATEWAY_NAME_LABELS.contains(&k.as_str()) && *v == gateway.name)
}

fn issue(severity: Severity, field: impl Into<String>, message: impl Into<String>) -> StatusIssue {
    StatusIssue {
        severity,
        reason: None,
        field: field.into(),
        message: message.into(),
    }
}
