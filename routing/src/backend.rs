//! backendRefs: where a matched rule forwards, and the weighted choice between them.

use gateway_api::experimental::httproutes::{
    HttpRouteRulesBackendRefs, HttpRouteRulesFiltersRequestMirrorBackendRef as MirrorBackendRef,
};
use gateway_api::experimental::tcproutes::TcpRouteRulesBackendRefs;

use crate::filter::compile_backend_filters;
use crate::header_modifier::HeaderModifier;
use crate::issue::{Issue, IssueReason};
use crate::parent::ServiceKey;

/// What the compiler asks the config layer (so this crate stays pure).
pub trait BackendLookup {
    /// Ok(()) when namespace/name is a known Service and `port` is one of its ports; Err(reason) otherwise,
    /// e.g. "service travel-agency/flightz not found" or "service travel-agency/flights has no port 8080".
    fn check_service(&self, service: &ServiceKey, port: u16) -> Result<(), String>;

    /// Whether a route in `from_namespace` may forward to `to` in another namespace: a
    /// ReferenceGrant in `to`'s namespace admits the route's kind from `from_namespace` to that
    /// Service (or to every Service there). The implementor knows which route kind asks.
    fn reference_permitted(&self, from_namespace: &str, to: &ServiceKey) -> bool;
}

/// One compiled backendRef of a rule: where its share of the traffic goes, and the header
/// filters that apply only to requests sent there.
#[derive(Debug, Clone)]
pub struct WeightedBackend {
    /// The Service and port to forward to, or why that cannot be done.
    pub target: BackendTarget,
    /// This backend's share relative to the rule's other backends (Gateway API default 1,
    /// clamped to 0-1 000 000); 0 means it is never picked.
    pub weight: u32,
    /// The backendRef's own RequestHeaderModifier; the proxy applies it after the rule's.
    pub request_header_modifier: Option<HeaderModifier>,
    /// The backendRef's own ResponseHeaderModifier; the proxy applies it after the rule's.
    pub response_header_modifier: Option<HeaderModifier>,
}

/// Where a backendRef sends traffic.
#[derive(Debug, Clone, PartialEq)]
pub enum BackendTarget {
    /// A Service the config layer confirmed exists and exposes `port`.
    Service {
        /// The Service, namespaced (the route's namespace unless the backendRef named another).
        service: ServiceKey,
        /// The Service port (not the target port) requests are sent to.
        port: u16,
        /// A DestinationRule subset (VirtualService `route[].destination.subset`): only the
        /// endpoints whose pod labels match it serve. None for Gateway API backendRefs.
        subset: Option<String>,
    },
    /// A backendRef that cannot be honoured. It keeps its share of the traffic, which the proxy
    /// answers with 500, as the Gateway API spec requires, instead of shifting it elsewhere.
    Invalid {
        /// What is wrong: the message of the route's [`Issue`], repeated for the proxy's logs.
        reason: String,
    },
}

/// The largest weight Gateway API allows.
const MAX_WEIGHT: i32 = 1_000_000;

/// Compiles the backendRef at `field` (e.g. "spec.rules[0].backendRefs[1]") of a route in
/// `route_namespace`. Any problem makes the target [`BackendTarget::Invalid`], never drops it.
pub(crate) fn compile_backend_ref(
    backend: &HttpRouteRulesBackendRefs,
    field: &str,
    route_namespace: &str,
    lookup: &dyn BackendLookup,
    issues: &mut Vec<Issue>,
) -> WeightedBackend {
    let (target, weight) = target_and_weight(
        &BackendRefView::from(backend),
        field,
        route_namespace,
        lookup,
        issues,
    );
    let filters = compile_backend_filters(
        backend.filters.as_deref().unwrap_or_default(),
        &format!("{field}.filters"),
        issues,
    );
    WeightedBackend {
        target,
        weight,
        request_header_modifier: filters.request_header_modifier,
        response_header_modifier: filters.response_header_modifier,
    }
}

/// A TCPRoute backendRef: the same resolution and weights, no filters (TCP has none).
pub(crate) fn compile_tcp_backend_ref(
    backend: &TcpRouteRulesBackendRefs,
    field: &str,
    route_namespace: &str,
    lookup: &dyn BackendLookup,
    issues: &mut Vec<Issue>,
) -> WeightedBackend {
    let (target, weight) = target_and_weight(
        &BackendRefView::from(backend),
        field,
        route_namespace,
        lookup,
        issues,
    );
    WeightedBackend {
        target,
        weight,
        request_header_modifier: None,
        response_header_modifier: None,
    }
}

/// The fields of a backendRef, whichever route kind's generated type it came from.
struct BackendRefView<'a> {
    group: Option<&'a str>,
    kind: Option<&'a str>,
    name: &'a str,
    namespace: Option<&'a str>,
    port: Option<i32>,
    weight: Option<i32>,
}

macro_rules! backend_ref_view_from {
    ($t:ty) => {
        impl<'a> From<&'a $t> for BackendRefView<'a> {
            fn from(b: &'a $t) -> Self {
                BackendRefView {
                    group: b.group.as_deref(),
                    kind: b.kind.as_deref(),
                    name: &b.name,
                    namespace: b.namespace.as_deref(),
                    port: b.port,
                    weight: b.weight,
                }
            }
        }
    };
}

backend_ref_view_from!(HttpRouteRulesBackendRefs);
backend_ref_view_from!(TcpRouteRulesBackendRefs);

fn target_and_weight(
    backend: &BackendRefView<'_>,
    field: &str,
    route_namespace: &str,
    lookup: &dyn BackendLookup,
    issues: &mut Vec<Issue>,
) -> (BackendTarget, u32) {
    let weight = match backend.weight.unwrap_or(1) {
        w @ 0..=MAX_WEIGHT => w,
        w => {
            // Clamped rather than dropped: the nearest weight the user could have meant keeps
            // the other backends' shares close to what was written.
            let clamped = w.clamp(0, MAX_WEIGHT);
            issues.push(Issue::error(
                IssueReason::Invalid,
                format!("{field}.weight"),
                format!("weight {w} is out of range 0-{MAX_WEIGHT}; using {clamped}"),
            ));
            clamped
        }
    };
    let target = match resolve_target(backend, field, route_namespace, lookup) {
        Ok((service, port)) => BackendTarget::Service {
            service,
            port,
            subset: None,
        },
        Err(issue) => {
            let reason = issue.message.clone();
            issues.push(issue);
            BackendTarget::Invalid { reason }
        }
    };
    (target, weight.unsigned_abs())
}

fn resolve_target(
    backend: &BackendRefView<'_>,
    field: &str,
    route_namespace: &str,
    lookup: &dyn BackendLookup,
) -> Result<(ServiceKey, u16), Issue> {
    let group = backend.group.unwrap_or_default();
    let kind = backend.kind.unwrap_or("Service");
    let core = group.is_empty() || group == "core";
    if !core || kind != "Service" {
        let (at, what) = if core {
            ("kind", format!("kind {kind}"))
        } else {
            ("group", format!("group {group} kind {kind}"))
        };
        return Err(Issue::error(
            IssueReason::InvalidKind,
            format!("{field}.{at}"),
            format!("backendRef {what} is not supported; forward to a core Service"),
        ));
    }
    if backend.name.is_empty() {
        return Err(Issue::error(
            IssueReason::Invalid,
            format!("{field}.name"),
            "backendRef name is empty",
        ));
    }
    let namespace = backend.namespace.unwrap_or(route_namespace);
    let service = ServiceKey {
        namespace: namespace.to_owned(),
        name: backend.name.to_owned(),
    };
    if namespace != route_namespace && !lookup.reference_permitted(route_namespace, &service) {
        return Err(Issue::error(
            IssueReason::RefNotPermitted,
            format!("{field}.namespace"),
            format!(
                "backendRef to Service {service} crosses namespaces and no ReferenceGrant in \
                 namespace {namespace} allows it; add one (from this route's kind and namespace \
                 {route_namespace}, to kind Service)"
            ),
        ));
    }
    let port = match backend.port {
        None => {
            return Err(Issue::error(
                IssueReason::Invalid,
                format!("{field}.port"),
                "port is required when the backendRef is a Service",
            ))
        }
        Some(port) => match u16::try_from(port) {
            Ok(port) if port != 0 => port,
            _ => {
                return Err(Issue::error(
                    IssueReason::Invalid,
                    format!("{field}.port"),
                    format!("port {port} is out of range 1-65535"),
                ))
            }
        },
    };
    match lookup.check_service(&service, port) {
        Ok(()) => Ok((service, port)),
        Err(reason) => Err(Issue::error(
            IssueReason::BackendNotFound,
            field.to_owned(),
            reason,
        )),
    }
}

/// Weighted choice among `backends`; see [`crate::Rule::pick_backend`].
pub(crate) fn pick(backends: &[WeightedBackend], random: u32) -> Option<&WeightedBackend> {
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    if total == 0 {
        return None;
    }
    // Multiply-shift scales `random` onto 0..total without the bias of `random % total`;
    // u128 because the product of a u32 and the sum of many weights can exceed u64.
    let point = (u128::from(random) * u128::from(total)) >> 32;
    let mut point = u64::try_from(point).unwrap_or(u64::MAX);
    for backend in backends {
        let weight = u64::from(backend.weight);
        if point < weight {
            return Some(backend);
        }
        point -= weight;
    }
    None
}

/// A RequestMirror backendRef has no weight; otherwise it reads like any backendRef.
impl<'a> From<&'a MirrorBackendRef> for BackendRefView<'a> {
    fn from(b: &'a MirrorBackendRef) -> Self {
        BackendRefView {
            group: b.group.as_deref(),
            kind: b.kind.as_deref(),
            name: &b.name,
            namespace: b.namespace.as_deref(),
            port: b.port,
            weight: None,
        }
    }
}

/// The target of a RequestMirror filter at `field` (e.g.
/// "spec.rules[0].filters[1].requestMirror.backendRef"), resolved exactly like a backendRef so
/// the same kinds, namespaces and lookups are accepted.
pub(crate) fn compile_mirror_backend_ref(
    backend: &MirrorBackendRef,
    field: &str,
    route_namespace: &str,
    lookup: &dyn BackendLookup,
    issues: &mut Vec<Issue>,
) -> BackendTarget {
    let (target, _weight) = target_and_weight(
        &BackendRefView::from(backend),
        field,
        route_namespace,
        lookup,
        issues,
    );
    target
}

#[cfg(test)]
mod tests;
