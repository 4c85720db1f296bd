//! Which Services a route attaches to (GAMMA parentRefs).

use gateway_api::experimental::httproutes::{HttpRoute, HttpRouteParentRefs};
use gateway_api::experimental::tcproutes::{TcpRoute, TcpRouteParentRefs};

use crate::compile::RouteId;
use crate::gateway::ParentKind;
use crate::issue::{Issue, IssueReason};

/// A Kubernetes Service (or ServiceEntry host) that routes attach to or forward to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ServiceKey {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Where a route attaches: a Service (GAMMA), optionally one of its ports.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ParentService {
    /// The Service.
    pub service: ServiceKey,
    /// `None` attaches the route to every port of the Service.
    pub port: Option<u16>,
}

/// The group Gateway API gives to parentRefs that leave `group` out.
const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// The services an HTTPRoute attaches to: parentRefs with group ""/"core" and kind "Service";
/// the namespace defaults to the route's.
///
/// Gateway parents are left to [`gateway_parents`]. Every other parentRef is reported and left
/// out, so the route never attaches somewhere the user did not mean: other kinds are `Invalid`. A `sectionName` on a Service parent is `Unsupported` and that parent is
/// left out too, because ignoring it would attach the route to more ports than the user asked for.
pub fn parent_services(route: &HttpRoute) -> (Vec<ParentService>, Vec<Issue>) {
    let refs: Vec<ParentRefView<'_>> = route
        .spec
        .parent_refs
        .iter()
        .flatten()
        .map(ParentRefView::from)
        .collect();
    services_of(&refs, RouteId::of(route).namespace)
}

/// The services a TCPRoute attaches to; the same rules as for an HTTPRoute.
pub fn tcp_parent_services(route: &TcpRoute) -> (Vec<ParentService>, Vec<Issue>) {
    let refs: Vec<ParentRefView<'_>> = route
        .spec
        .parent_refs
        .iter()
        .flatten()
        .map(ParentRefView::from)
        .collect();
    let namespace = RouteId::from_metadata(route.metadata.namespace.as_deref(), None).namespace;
    services_of(&refs, namespace)
}

/// The fields of a parentRef, whichever route kind's generated type it came from.
struct ParentRefView<'a> {
    group: Option<&'a str>,
    kind: Option<&'a str>,
    name: &'a str,
    namespace: Option<&'a str>,
    port: Option<i32>,
    section_name: Option<&'a str>,
}

macro_rules! parent_ref_view_from {
    ($t:ty) => {
        impl<'a> From<&'a $t> for ParentRefView<'a> {
            fn from(p: &'a $t) -> Self {
                ParentRefView {
                    group: p.group.as_deref(),
                    kind: p.kind.as_deref(),
                    name: &p.name,
                    namespace: p.namespace.as_deref(),
                    port: p.port,
                    section_name: p.section_name.as_deref(),
                }
            }
        }
    };
}

parent_ref_view_from!(HttpRouteParentRefs);
parent_ref_view_from!(TcpRouteParentRefs);

fn services_of(
    refs: &[ParentRefView<'_>],
    route_namespace: String,
) -> (Vec<ParentService>, Vec<Issue>) {
    let mut parents = Vec::new();
    let mut issues = Vec::new();
    if refs.is_empty() {
        issues.push(Issue::error(
            IssueReason::Invalid,
            "spec.parentRefs",
            "route has no parentRefs; attach it to a Service (GAMMA)",
        ));
        return (parents, issues);
    }
    for (i, parent) in refs.iter().enumerate() {
        let field = format!("spec.parentRefs[{i}]");
        let candidate = match service_parent(parent, &field, &route_namespace) {
            Ok(Some(candidate)) => candidate,
            Ok(None) => continue,
            Err(issue) => {
                issues.push(issue);
                continue;
            }
        };
        // The same parent listed twice is still one attachment.
        if !parents.contains(&candidate) {
            parents.push(candidate);
        }
    }
    (parents, issues)
}

/// The Service one parentRef names: `None` for a Gateway-role parent (see
/// [`gateway_parents`]), an issue on `field` for anything else that is not a usable Service.
fn service_parent(
    parent: &ParentRefView<'_>,
    field: &str,
    route_namespace: &str,
) -> Result<Option<ParentService>, Issue> {
    // Gateway API defaults a parentRef to group gateway.networking.k8s.io, kind Gateway.
    let group = parent.group.unwrap_or(GATEWAY_GROUP);
    let kind = parent.kind.unwrap_or("Gateway");
    let invalid = |at: &str, message: String| {
        Issue::error(IssueReason::Invalid, format!("{field}.{at}"), message)
    };
    if ParentKind::parse(kind).is_some() && group == GATEWAY_GROUP {
        return Ok(None);
    }
    if kind != "Service" {
        return Err(invalid(
            "kind",
            format!(
                "parentRef kind {kind} (group {group:?}) is not supported; \
                 attach the route to a Service (GAMMA)"
            ),
        ));
    }
    if !(group.is_empty() || group == "core") {
        return Err(invalid(
            "group",
            format!("parentRef group {group:?} is wrong for kind Service; use \"\" (core)"),
        ));
    }
    if parent.name.is_empty() {
        return Err(invalid("name", "parentRef name is empty".into()));
    }
    if parent.section_name.is_some() {
        return Err(Issue::error(
            IssueReason::Unsupported,
            format!("{field}.sectionName"),
            "sectionName is not supported for Service parentRefs; use port",
        ));
    }
    let port = match parent.port {
        None => None,
        Some(port) => match u16::try_from(port) {
            Ok(port) if port != 0 => Some(port),
            _ => {
                return Err(invalid(
                    "port",
                    format!("port {port} is out of range 1-65535"),
                ))
            }
        },
    };
    Ok(Some(ParentService {
        service: ServiceKey {
            namespace: parent.namespace.unwrap_or(route_namespace).to_owned(),
            name: parent.name.to_owned(),
        },
        port,
    }))
}

#[cfg(test)]
mod tests;

/// A parentRef naming a Gateway (the Gateway role), as written: which listeners it selects is
/// decided against the Gateway in [`crate::gateway`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ParentGateway {
    /// Index in spec.parentRefs.
    pub index: usize,
    /// Gateway or ListenerSet.
    pub kind: ParentKind,
    /// The Gateway or ListenerSet named.
    pub gateway: ServiceKey,
    /// The listener it names, if any.
    pub section_name: Option<String>,
    /// The listener port it names, if any (0 when out of range: it selects nothing).
    pub port: Option<u16>,
}

/// The Gateways (and ListenerSets) an HTTPRoute names as parents (group
/// gateway.networking.k8s.io and kind Gateway are the defaults); the namespace defaults to the
/// route's. A port outside 1-65535 selects
/// no listener, so it is kept as 0 and the route is reported NoMatchingParent there.
pub fn gateway_parents(route: &HttpRoute) -> Vec<ParentGateway> {
    let namespace = RouteId::of(route).namespace;
    route
        .spec
        .parent_refs
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(index, p)| {
            if p.group.as_deref().unwrap_or(GATEWAY_GROUP) != GATEWAY_GROUP {
                return None;
            }
            let kind = ParentKind::parse(p.kind.as_deref().unwrap_or("Gateway"))?;
            Some((index, kind, p))
        })
        .map(|(index, kind, p)| ParentGateway {
            index,
            kind,
            gateway: ServiceKey {
                namespace: p.namespace.clone().unwrap_or_else(|| namespace.clone()),
                name: p.name.clone(),
            },
            section_name: p.section_name.clone(),
            port: p.port.map(|port| u16::try_from(port).unwrap_or(0)),
        })
        .collect()
}
