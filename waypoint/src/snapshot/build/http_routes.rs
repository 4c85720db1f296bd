//! HTTPRoutes and GRPCRoutes: compiled once, hung on the ports of the bound services they
//! name (GAMMA, producer and consumer routes), and attached to Gateway listeners.

use super::gateway_selection::ServedGateway;
use super::parents::{resolve_parents, route_state, Lookup, ParentTarget};
use super::Builder;
use crate::config::{Document, Resource};
use crate::snapshot::{
    BuildOptions, GatewayPort, GatewayStatus, RouteStatus, ServiceInfo, State, StatusIssue,
};
use gateway_api::experimental::httproutes::HttpRoute;
use routing::gateway::{ConditionType, RouteKind, RouteParentStatus};
use routing::{CompiledRoute, IssueReason, RouteTable, ServiceKey, Severity};
use std::collections::HashMap;
use std::sync::Arc;

/// One HTTPRoute or GRPCRoute, compiled, with what its status still needs.
pub(super) struct CompiledHttpRoute<'d> {
    pub(super) doc: &'d Document,
    pub(super) kind: RouteKind,
    pub(super) route: Arc<CompiledRoute>,
    pub(super) issues: Vec<StatusIssue>,
    pub(super) hostnames: Vec<String>,
    pub(super) gateway_parents: Vec<routing::ParentGateway>,
    service_parents: usize,
    on_service: bool,
    not_ours: Vec<String>,
}

/// Where routes hang: (service index, port, consumer namespace); `None` for producer routes.
type AttachKey = (usize, u16, Option<String>);

impl<'a> Builder<'a> {
    /// Compiles every HTTPRoute, hangs it on the ports of the bound services it names
    /// (waypoint) and attaches it to the listeners of the Gateways of our class (status, and
    /// the served Gateway's listeners, which are returned).
    pub(super) fn attach_routes(
        &mut self,
        docs: &[&'a Document],
        services: &mut [ServiceInfo],
        by_key: &HashMap<ServiceKey, usize>,
        opts: &BuildOptions,
        served: &ServedGateway,
    ) -> Vec<GatewayPort> {
        let mut attached: HashMap<AttachKey, Vec<Arc<CompiledRoute>>> = HashMap::new();
        let mut compiled = Vec::new();
        for d in docs {
            if let Some((route, targets)) = self.compile_http_route(d, services, by_key) {
                for t in &targets {
                    let service_ns = &services[t.service].key.namespace;
                    let consumer =
                        (d.object.namespace != *service_ns).then(|| d.object.namespace.clone());
                    for p in &t.ports {
                        attached
                            .entry((t.service, *p, consumer.clone()))
                            .or_default()
                            .push(route.route.clone());
                    }
                }
                compiled.push(route);
            }
        }
        hang_on_ports(services, attached);
        let attachment = self.attach_to_gateways(docs, &compiled, opts, served);
        let listeners = super::gateway_listeners::served_listeners(&attachment, &compiled, served);
        let routes = self.report_http_routes(compiled, &attachment.routes, &opts.gateway_class);
        self.gateway_status = GatewayStatus {
            gateways: attachment.gateways,
            listener_sets: attachment.listener_sets,
            routes,
        };
        listeners
    }

    /// Compiles one HTTPRoute (or GRPCRoute, as the HTTPRoute it amounts to) and resolves its
    /// Service parents; `None` for other kinds and for a GRPCRoute that cannot be converted.
    fn compile_http_route(
        &mut self,
        d: &'a Document,
        services: &[ServiceInfo],
        by_key: &HashMap<ServiceKey, usize>,
    ) -> Option<(CompiledHttpRoute<'a>, Vec<ParentTarget>)> {
        let converted;
        let (kind, route): (_, &HttpRoute) = match &d.resource {
            Resource::HttpRoute(route) => (RouteKind::Http, route),
            Resource::GrpcRoute(route) => match routing::grpc_to_http(route) {
                Ok(http) => {
                    converted = http;
                    (RouteKind::Grpc, &converted)
                }
                Err(issue) => {
                    self.status(d, State::Error, vec![issue.into()]);
                    return None;
                }
            },
            _ => return None,
        };
        let (parents, mut issues) = routing::parent_services(route);
        let gateway_parents = routing::gateway_parents(route);
        let lookup = Lookup {
            services,
            by_key,
            grants: &self.grants,
            from_kind: kind,
            parents: parents.iter().map(|p| p.service.clone()).collect(),
        };
        let (compiled, compile_issues) = routing::compile_http_route(route, &lookup);
        // Hostnames do matter on Gateway listeners; the compiler's GAMMA warning only
        // applies when the route has a Service parent.
        issues.extend(compile_issues.into_iter().filter(|i| {
            !(parents.is_empty() && !gateway_parents.is_empty() && i.field == "spec.hostnames")
        }));
        let mut issues: Vec<StatusIssue> = issues.into_iter().map(StatusIssue::from).collect();
        let (targets, not_ours) = resolve_parents(&parents, services, by_key, &mut issues);
        let route = CompiledHttpRoute {
            doc: d,
            kind,
            route: Arc::new(compiled),
            issues,
            hostnames: route.spec.hostnames.clone().unwrap_or_default(),
            gateway_parents,
            service_parents: parents.len(),
            on_service: !targets.is_empty(),
            not_ours,
        };
        Some((route, targets))
    }

    /// Gives every route its status: served when on a bound service port or accepted by a
    /// Gateway of ours; the Gateway API status of those that name Gateways of ours.
    fn report_http_routes(
        &mut self,
        compiled: Vec<CompiledHttpRoute<'_>>,
        parent_statuses: &[Vec<RouteParentStatus>],
        gateway_class: &str,
    ) -> Vec<RouteStatus> {
        let mut route_statuses = Vec::new();
        for (c, parents) in compiled.into_iter().zip(parent_statuses) {
            let CompiledHttpRoute {
                doc,
                kind,
                mut issues,
                on_service,
                mut not_ours,
                service_parents,
                gateway_parents,
                ..
            } = c;
            let on_gateway = gateway_acceptance(parents, &mut issues);
            for g in &gateway_parents {
                if !parents.iter().any(|p| p.parent.gateway == g.gateway) {
                    not_ours.push(format!(
                        "Gateway {} is not of class {gateway_class} or not in the folder",
                        g.gateway
                    ));
                }
            }
            let has_parents = service_parents > 0 || !gateway_parents.is_empty();
            let state = route_state(on_service || on_gateway, has_parents, &issues, &not_ours);
            self.status(doc, state, issues);
            if !parents.is_empty() {
                route_statuses.push(RouteStatus {
                    kind,
                    namespace: doc.object.namespace.clone(),
                    name: doc.object.name.clone(),
                    generation: doc.generation,
                    parents: parents.clone(),
                });
            }
        }
        route_statuses
    }
}

/// Builds each port's producer and consumer route tables from the routes hung on it.
fn hang_on_ports(
    services: &mut [ServiceInfo],
    attached: HashMap<AttachKey, Vec<Arc<CompiledRoute>>>,
) {
    for ((idx, port, consumer), routes) in attached {
        if let Some(sp) = services[idx].ports.iter_mut().find(|p| p.port == port) {
            sp.route_names
                .extend(routes.iter().map(|r| r.id.to_string()));
            sp.route_names.sort();
            match consumer {
                None => sp.routes = Some(RouteTable::new(routes)),
                Some(ns) => {
                    sp.consumer_routes.insert(ns, RouteTable::new(routes));
                }
            }
        }
    }
}

/// Whether a Gateway of ours accepted the route; each refusal becomes an issue on the route.
fn gateway_acceptance(parents: &[RouteParentStatus], issues: &mut Vec<StatusIssue>) -> bool {
    let mut on_gateway = false;
    for p in parents {
        match p
            .conditions
            .iter()
            .find(|c| c.kind == ConditionType::Accepted)
        {
            Some(a) if a.is_true() => on_gateway = true,
            Some(a) => issues.push(StatusIssue {
                severity: Severity::Error,
                reason: Some(IssueReason::NoMatchingParent),
                field: format!("spec.parentRefs[{}]", p.parent.index),
                message: format!(
                    "not accepted by Gateway {} ({}): {}",
                    p.parent.gateway, a.reason, a.message
                ),
            }),
            None => {}
        }
    }
    on_gateway
}
