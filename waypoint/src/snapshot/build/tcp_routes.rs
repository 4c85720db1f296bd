//! TCPRoutes on service ports (GAMMA): one route per port, weighted TCP backends.

use super::parents::{resolve_parents, route_state, Lookup, ParentTarget};
use super::{issue_err, of_kind, Builder};
use crate::config::{Document, Resource};
use crate::snapshot::{Protocol, ServiceInfo, StatusIssue};
use gateway_api::experimental::tcproutes::TcpRoute;
use routing::gateway::{ParentKind, RouteKind};
use routing::{CompiledTcpRoute, ServiceKey, Severity};
use std::collections::HashMap;
use std::sync::Arc;

impl<'a> Builder<'a> {
    /// Compiles every TCPRoute and hangs it on the ports it names. One TCPRoute per port: when
    /// several claim a port, the oldest wins (then the first by namespace/name), as Gateway API
    /// resolves conflicts, and the others are told so.
    pub(super) fn attach_tcp_routes(
        &mut self,
        docs: &[&'a Document],
        services: &mut [ServiceInfo],
        by_key: &HashMap<ServiceKey, usize>,
    ) {
        for (d, route) in oldest_first(docs) {
            let (parents, mut issues) = routing::tcp_parent_services(route);
            let lookup = Lookup {
                services,
                by_key,
                grants: &self.grants,
                from_kind: RouteKind::Tcp,
                parents: parents.iter().map(|p| p.service.clone()).collect(),
            };
            let (compiled, compile_issues) = routing::compile_tcp_route(route, &lookup);
            issues.extend(compile_issues);
            let compiled = Arc::new(compiled);
            let mut issues: Vec<StatusIssue> = issues.into_iter().map(StatusIssue::from).collect();
            let (targets, mut not_ours) = resolve_parents(&parents, services, by_key, &mut issues);
            let mut served = 0;
            for target in targets {
                served += hang_on_ports(&compiled, &target, services, &mut issues);
            }
            let gateway_parents = route
                .spec
                .parent_refs
                .iter()
                .flatten()
                .filter(|p| {
                    ParentKind::parse(p.kind.as_deref().unwrap_or("Gateway"))
                        == Some(ParentKind::Gateway)
                })
                .count();
            if gateway_parents > 0 {
                not_ours.push("TCPRoutes on Gateway listeners are not served yet".into());
            }
            let has_parents = !parents.is_empty() || gateway_parents > 0;
            let state = route_state(served > 0, has_parents, &issues, &not_ours);
            self.status(d, state, issues);
        }
    }
}

/// The TCPRoutes by age, oldest first (then by namespace/name): the order Gateway API settles
/// conflicts in.
fn oldest_first<'d>(docs: &[&'d Document]) -> Vec<(&'d Document, &'d TcpRoute)> {
    let mut routes = of_kind(docs, |r| match r {
        Resource::TcpRoute(r) => Some(&**r),
        _ => None,
    });
    routes.sort_by(|(a, ra), (b, rb)| {
        let ta = ra.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let tb = rb.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (ta.is_none(), ta, &a.object.namespace, &a.object.name).cmp(&(
            tb.is_none(),
            tb,
            &b.object.namespace,
            &b.object.name,
        ))
    });
    routes
}

/// Puts the route on the target's ports that have no TCPRoute (an older one wins) and no
/// HTTPRoute (a port is one or the other); returns on how many ports it landed.
fn hang_on_ports(
    compiled: &Arc<CompiledTcpRoute>,
    target: &ParentTarget,
    services: &mut [ServiceInfo],
    issues: &mut Vec<StatusIssue>,
) -> usize {
    let field = format!("spec.parentRefs[{}]", target.parent);
    let svc = &mut services[target.service];
    let svc_key = svc.key.to_string();
    let mut served = 0;
    for p in &target.ports {
        // resolve_parents only returns ports the service has.
        let Some(sp) = svc.ports.iter_mut().find(|sp| sp.port == *p) else {
            continue;
        };
        if let Some(winner) = &sp.tcp_route_name {
            issues.push(StatusIssue {
                severity: Severity::Warning,
                reason: None,
                field: field.clone(),
                message: format!("port {p} of {svc_key} already has TCPRoute {winner}, which is older; this one is not used there"),
            });
            continue;
        }
        if !sp.route_names.is_empty() {
            issues.push(issue_err(
                field.clone(),
                format!("port {p} of {svc_key} also has HTTPRoutes ({}); a port is HTTP or TCP, not both", sp.route_names.join(", ")),
            ));
            continue;
        }
        sp.protocol = Protocol::Tcp;
        sp.tcp_route = Some(compiled.clone());
        sp.tcp_route_name = Some(compiled.id.to_string());
        served += 1;
    }
    served
}
