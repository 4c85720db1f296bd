//! VirtualServices, attached as Istio attaches them to the services a waypoint serves: `hosts`
//! name the service (short names resolve in the VirtualService's namespace, `*` wildcards
//! match as Istio's do), `gateways` is empty or holds `mesh`, and `exportTo` lets the
//! waypoint's namespace see it. Per service the most specific host wins, then the oldest
//! VirtualService, then the name; an HTTPRoute on the service wins over every VirtualService.

use super::{of_kind, Builder};
use crate::config::{Document, Resource};
use crate::snapshot::{PolicyInForce, Protocol, ServiceInfo, State, StatusIssue, CLUSTER_DOMAIN};
use routing::istio::{
    compile_virtual_service, destination_port, DestinationLookup, VirtualServiceSpec,
};
use routing::{CompiledRoute, RouteId, RouteTable, ServiceKey, Severity};
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How closely a VirtualService host names a service: an exact name beats any wildcard, a
/// longer wildcard beats a shorter one.
type Specificity = (bool, usize);

/// One VirtualService, compiled, and where it may apply.
struct Candidate<'d> {
    doc: &'d Document,
    route: Arc<CompiledRoute>,
    issues: Vec<StatusIssue>,
    /// Why it applies nowhere, whatever the services; None when it may apply.
    excluded: Option<String>,
    /// What it says about each service (index) whose name one of its hosts matches.
    outcomes: BTreeMap<usize, PolicyInForce>,
}

impl<'a> Builder<'a> {
    /// Compiles every VirtualService, hangs the one in force for each served service on that
    /// service's HTTP ports, records every contender on the service, and reports each.
    pub(super) fn attach_virtual_services(
        &mut self,
        docs: &[&'a Document],
        services: &mut [ServiceInfo],
        waypoint_namespace: &str,
    ) {
        let objects = of_kind(docs, |r| match r {
            Resource::VirtualService(vs) => Some(&**vs),
            _ => None,
        });
        let lookup = VsLookup { services };
        let mut candidates: Vec<Candidate<'a>> = objects
            .into_iter()
            .map(|(doc, vs)| {
                let created = vs
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_nanosecond());
                compile(doc, &vs.spec, created, &lookup, waypoint_namespace)
            })
            .collect();
        for (s, service) in services.iter_mut().enumerate() {
            choose_for_service(s, service, &mut candidates);
        }
        for c in candidates {
            self.report(c);
        }
    }

    fn report(&mut self, c: Candidate<'_>) {
        let Candidate {
            doc,
            mut issues,
            excluded,
            outcomes,
            ..
        } = c;
        let in_force: Vec<&PolicyInForce> = outcomes.values().filter(|o| o.in_force).collect();
        // Where it lost, say so, whatever else is said about it.
        issues.extend(
            outcomes
                .values()
                .filter(|o| !o.in_force)
                .map(|o| StatusIssue {
                    severity: Severity::Warning,
                    reason: None,
                    field: "spec.hosts".into(),
                    message: format!("not in force for {}", o.reason),
                }),
        );
        let state = if let Some(why) = excluded {
            State::Ignored(why)
        } else if in_force.is_empty() && outcomes.is_empty() {
            State::Ignored("no host names a service this waypoint serves".into())
        } else if in_force.is_empty() {
            let why: Vec<&str> = outcomes.values().map(|o| o.reason.as_str()).collect();
            State::Ignored(why.join("; "))
        } else {
            State::Accepted
        };
        self.status(doc, state, issues);
    }
}

fn compile<'d>(
    doc: &'d Document,
    spec: &VirtualServiceSpec,
    created: Option<i128>,
    lookup: &VsLookup<'_>,
    waypoint_namespace: &str,
) -> Candidate<'d> {
    let id = RouteId::from_metadata(Some(&doc.object.namespace), Some(&doc.object.name));
    let (route, issues) = compile_virtual_service(id, created, spec, lookup);
    let excluded = if !spec.gateways.is_empty() && !spec.gateways.iter().any(|g| g == "mesh") {
        Some(format!(
            "spec.gateways names {} and not mesh; a waypoint serves mesh traffic",
            spec.gateways.join(", ")
        ))
    } else if !exported_to(&spec.export_to, &doc.object.namespace, waypoint_namespace) {
        Some(format!(
            "spec.exportTo [{}] does not include the waypoint's namespace {waypoint_namespace}",
            spec.export_to.join(", ")
        ))
    } else if spec.http.is_empty() {
        Some("it has no http rules, the only ones this waypoint applies".into())
    } else {
        None
    };
    Candidate {
        doc,
        route: Arc::new(route),
        issues: issues.into_iter().map(StatusIssue::from).collect(),
        excluded,
        outcomes: BTreeMap::new(),
    }
}

/// Istio's exportTo: empty or `*` is everywhere, `.` the own namespace, `~` nowhere.
fn exported_to(export_to: &[String], own: &str, to: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || e == to || (e == "." && own == to))
}

/// The VirtualServices naming service `s`: the winner hangs on its HTTP ports; every
/// contender is recorded on the service and on the candidate.
fn choose_for_service(s: usize, service: &mut ServiceInfo, candidates: &mut [Candidate<'_>]) {
    if service.binding != crate::snapshot::Binding::Bound {
        return;
    }
    let mut named: Vec<(usize, Specificity, String)> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.excluded.is_none())
        .filter_map(|(i, c)| {
            best_host(c.doc, &c.route, service).map(|(spec, host)| (i, spec, host))
        })
        .collect();
    let excluded = excluded_naming(service, candidates);
    if named.is_empty() {
        service.virtual_services.extend(excluded);
        return;
    }
    named.sort_by_key(|(i, spec, _)| {
        let c = &candidates[*i];
        (
            Reverse(*spec),
            c.route.created_at_nanos.is_none(),
            c.route.created_at_nanos,
            c.doc.object.name.clone(),
            c.doc.object.namespace.clone(),
        )
    });
    let http_routes = http_routes_on(service);
    let winner = candidates[named[0].0].route.id.to_string();
    for (rank, (i, _, host)) in named.iter().enumerate() {
        let c = &mut candidates[*i];
        let (in_force, reason) = match (&http_routes, rank) {
            (Some(routes), _) => (
                false,
                format!(
                    "service {}: HTTPRoute {routes} is attached, and at a waypoint an HTTPRoute \
                     takes precedence over a VirtualService",
                    service.key
                ),
            ),
            (None, 0) => (
                true,
                format!("service {}: host {host} names it", service.key),
            ),
            (None, _) => (
                false,
                format!(
                    "service {}: VirtualService {winner} is in force (a more specific host, \
                     else the oldest, else the first by name wins)",
                    service.key
                ),
            ),
        };
        let outcome = PolicyInForce {
            resource: c.route.id.to_string(),
            in_force,
            reason,
        };
        service.virtual_services.push(outcome.clone());
        c.outcomes.insert(s, outcome);
        if in_force {
            hang(service, &c.route);
        }
    }
    service.virtual_services.extend(excluded);
}

/// The VirtualServices naming `service` that apply nowhere (gateways, exportTo, no http
/// rules), so the service lists them with the reason.
fn excluded_naming(service: &ServiceInfo, candidates: &[Candidate<'_>]) -> Vec<PolicyInForce> {
    candidates
        .iter()
        .filter_map(|c| {
            let why = c.excluded.as_ref()?;
            best_host(c.doc, &c.route, service)?;
            Some(PolicyInForce {
                resource: c.route.id.to_string(),
                in_force: false,
                reason: format!("service {}: {why}", service.key),
            })
        })
        .collect()
}

/// The HTTPRoutes attached to any port of `service`, if any.
fn http_routes_on(service: &ServiceInfo) -> Option<String> {
    let names: Vec<&str> = service
        .ports
        .iter()
        .filter(|p| p.routes.is_some() || !p.consumer_routes.is_empty())
        .flat_map(|p| p.route_names.iter().map(String::as_str))
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

/// Puts the VirtualService's rules, in written order, on every HTTP port of `service`.
fn hang(service: &mut ServiceInfo, route: &Arc<CompiledRoute>) {
    for port in &mut service.ports {
        if port.protocol == Protocol::Tcp || port.tcp_route.is_some() {
            continue;
        }
        port.routes = Some(RouteTable::in_written_order(vec![route.clone()]));
    }
}

/// The most specific of `route`'s hosts naming `service`, if any does.
fn best_host(
    doc: &Document,
    route: &CompiledRoute,
    service: &ServiceInfo,
) -> Option<(Specificity, String)> {
    let Resource::VirtualService(vs) = &doc.resource else {
        return None;
    };
    vs.spec
        .hosts
        .iter()
        .filter_map(|host| {
            let resolved = resolve_host(host, &route.id.namespace);
            names(&resolved, service).map(|spec| (spec, host.clone()))
        })
        .max_by_key(|(spec, _)| *spec)
}

/// A VirtualService host as Istio reads it: a name without dots is short for a Service in
/// `namespace`; anything else (an FQDN, a ServiceEntry host, a wildcard) is taken as written.
fn resolve_host(host: &str, namespace: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.contains('.') || host.starts_with('*') {
        host
    } else {
        format!("{host}.{namespace}.svc.{CLUSTER_DOMAIN}")
    }
}

/// Whether `host` (resolved) names one of `service`'s hostnames, and how specifically.
fn names(host: &str, service: &ServiceInfo) -> Option<Specificity> {
    if host == "*" {
        return Some((false, 0));
    }
    if let Some(suffix) = host.strip_prefix('*') {
        // `*.example.com` matches `a.example.com` and `a.b.example.com`, never the bare domain.
        return service
            .hostnames
            .iter()
            .any(|h| h.len() > suffix.len() && h.ends_with(suffix))
            .then_some((false, suffix.len()));
    }
    service
        .hostnames
        .iter()
        .any(|h| h == host)
        .then_some((true, host.len()))
}

/// Resolves VirtualService destinations against the snapshot's services.
struct VsLookup<'s> {
    services: &'s [ServiceInfo],
}

impl DestinationLookup for VsLookup<'_> {
    fn resolve(
        &self,
        host: &str,
        namespace: &str,
        port: Option<u16>,
    ) -> Result<(ServiceKey, u16), String> {
        if host.contains('*') {
            return Err(format!(
                "destination host {host:?} is a wildcard; name one service"
            ));
        }
        let resolved = resolve_host(host, namespace);
        let mut found = self
            .services
            .iter()
            .filter(|s| s.hostnames.contains(&resolved));
        let first = found.next();
        // A host several namespaces' ServiceEntries declare: prefer the VirtualService's own.
        let service = found
            .chain(first)
            .find(|s| s.key.namespace == namespace)
            .or(first)
            .ok_or_else(|| {
                format!("no Service or ServiceEntry is named {resolved} (destination host {host})")
            })?;
        let ports: Vec<u16> = service.ports.iter().map(|p| p.port).collect();
        let port = destination_port(&service.key, &ports, port)?;
        Ok((service.key.clone(), port))
    }
}

#[cfg(test)]
mod tests;
