//! What every route kind shares: the bound service ports its parents name, the backends it
//! may refer to, and the state and ResolvedRefs condition its issues give it.

use super::issue_err;
use crate::snapshot::{Binding, Grants, ServiceInfo, ServiceSource, State, StatusIssue};
use routing::gateway::{Condition, ConditionType, RouteKind};
use routing::{BackendLookup, IssueReason, ServiceKey, Severity};
use std::collections::HashMap;

/// A route's ResolvedRefs condition: the first backend problem, or all resolved.
pub(super) fn resolved_refs(issues: &[StatusIssue]) -> Condition {
    let problem = issues.iter().find_map(|i| match i.reason {
        Some(
            r @ (IssueReason::BackendNotFound
            | IssueReason::RefNotPermitted
            | IssueReason::InvalidKind),
        ) if i.severity == Severity::Error => Some((r, &i.message)),
        _ => None,
    });
    match problem {
        Some((reason, message)) => Condition::new(
            ConditionType::ResolvedRefs,
            false,
            format!("{reason:?}"),
            message.clone(),
        ),
        None => Condition::new(
            ConditionType::ResolvedRefs,
            true,
            "ResolvedRefs",
            "all references resolved",
        ),
    }
}

/// A bound service port set one of a route's parentRefs names.
pub(super) struct ParentTarget {
    /// Index in the route's parentRefs, for field paths.
    pub(super) parent: usize,
    /// Index in the snapshot's services.
    pub(super) service: usize,
    pub(super) ports: Vec<u16>,
}

/// The bound services and ports a route's parents name. Unknown services and ports become
/// errors in `issues`; services this waypoint does not serve are returned as notes (the route
/// is another waypoint's business).
pub(super) fn resolve_parents(
    parents: &[routing::ParentService],
    services: &[ServiceInfo],
    by_key: &HashMap<ServiceKey, usize>,
    issues: &mut Vec<StatusIssue>,
) -> (Vec<ParentTarget>, Vec<String>) {
    let mut targets = Vec::new();
    let mut not_ours = Vec::new();
    for (i, parent) in parents.iter().enumerate() {
        let field = format!("spec.parentRefs[{i}]");
        let Some(&idx) = by_key.get(&parent.service) else {
            issues.push(issue_err(
                field,
                format!("parent Service {} not found", parent.service),
            ));
            continue;
        };
        let svc = &services[idx];
        let ports: Vec<u16> = match parent.port {
            Some(p) if svc.port(p).is_none() => {
                issues.push(issue_err(
                    format!("{field}.port"),
                    format!("service {} has no port {p}", svc.key),
                ));
                continue;
            }
            Some(p) => vec![p],
            None => svc.ports.iter().map(|p| p.port).collect(),
        };
        if let Binding::NotBound(why) = &svc.binding {
            not_ours.push(format!("{}: {why}", svc.key));
            continue;
        }
        targets.push(ParentTarget {
            parent: i,
            service: idx,
            ports,
        });
    }
    (targets, not_ours)
}

/// A route that attached nowhere, without an error of its own, belongs to other waypoints.
pub(super) fn route_state(
    served: bool,
    has_parents: bool,
    issues: &[StatusIssue],
    not_ours: &[String],
) -> State {
    let route_error = issues.iter().any(|i| i.severity == Severity::Error);
    if !served && !route_error && has_parents {
        State::Ignored(format!(
            "no parent is served by this waypoint ({})",
            not_ours.join("; ")
        ))
    } else {
        State::Accepted
    }
}

/// The backends a route may forward to, as the route compilers ask for them.
pub(super) struct Lookup<'s> {
    pub(super) services: &'s [ServiceInfo],
    pub(super) by_key: &'s HashMap<ServiceKey, usize>,
    pub(super) grants: &'s Grants,
    /// The route kind asking, for ReferenceGrants.
    pub(super) from_kind: RouteKind,
    /// The route's Service parents: a (GAMMA consumer) route may always forward to the
    /// service it is attached to, whatever its namespace.
    pub(super) parents: Vec<ServiceKey>,
}

impl BackendLookup for Lookup<'_> {
    fn check_service(&self, service: &ServiceKey, port: u16) -> Result<(), String> {
        let Some(&i) = self.by_key.get(service) else {
            return Err(format!("service {} not found", service));
        };
        let s = &self.services[i];
        if s.source != ServiceSource::Service {
            return Err(format!(
                "{} is a ServiceEntry; backendRefs of kind ServiceEntry are not supported yet",
                service
            ));
        }
        if s.port(port).is_none() {
            return Err(format!("service {} has no port {port}", service));
        }
        Ok(())
    }

    fn reference_permitted(&self, from_namespace: &str, to: &ServiceKey) -> bool {
        self.parents.contains(to) || self.grants.permits(self.from_kind, from_namespace, to)
    }
}
