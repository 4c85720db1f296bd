//! HTTPRoute → [`CompiledRoute`]: validate once at snapshot build, so matching never fails.

use gateway_api::experimental::httproutes::{HttpRoute, HttpRouteRules};

use crate::backend::{compile_backend_ref, pick, BackendLookup, WeightedBackend};
use crate::cors::Cors;
use crate::filter::{compile_rule_filters, RuleContext};
use crate::header_modifier::HeaderModifier;
use crate::issue::{Issue, IssueReason};
use crate::mirror::Mirror;
use crate::redirect::{Redirect, UrlRewrite};
use crate::request_match::RequestMatch;
use resilience::RoutePolicy;
use std::sync::Arc;

/// Which route a decision came from, for logs, metrics and status.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RouteId {
    /// metadata.namespace; "default" when the resource left it out.
    pub namespace: String,
    /// metadata.name; empty when the resource left it out (an HTTPRoute reports that).
    pub name: String,
}

impl RouteId {
    /// The id of `route`. A route without a namespace (a local YAML file that left it out) is
    /// in "default", as kubectl would place it.
    pub fn of(route: &HttpRoute) -> Self {
        Self::from_metadata(
            route.metadata.namespace.as_deref(),
            route.metadata.name.as_deref(),
        )
    }

    /// The id of any route kind, from its metadata.
    pub fn from_metadata(namespace: Option<&str>, name: Option<&str>) -> Self {
        Self {
            namespace: namespace.unwrap_or("default").to_owned(),
            name: name.unwrap_or_default().to_owned(),
        }
    }
}

impl std::fmt::Display for RouteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An HTTPRoute (or a GRPCRoute converted to one) after validation: every rule ready to
/// match and forward, whatever problems were reported while compiling it.
#[derive(Debug, Clone)]
pub struct CompiledRoute {
    /// The route's namespace and name.
    pub id: RouteId,
    /// metadata.creationTimestamp in nanoseconds since the Unix epoch; older routes win
    /// precedence ties, and a route without one (not yet stored by an API server) sorts last.
    pub created_at_nanos: Option<i128>,
    /// The rules in spec.rules order; a route with none gets the single catch-all rule the
    /// Gateway API defines.
    pub rules: Vec<Rule>,
    /// The kind of resource the route was compiled from: where the two APIs disagree on what
    /// the proxy does (an unusable backend), the proxy follows the route's own.
    pub source: RouteSource,
}

/// Which API a [`CompiledRoute`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteSource {
    /// An HTTPRoute or GRPCRoute: an unusable backend's share is answered with 500.
    GatewayApi,
    /// An Istio VirtualService: a destination Envoy has no cluster for is answered with 503 NC.
    VirtualService,
}

/// One compiled rule of a route: when it applies, what it does to the request, and where the
/// request goes.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Position in spec.rules; the last tie-breaker of route precedence.
    pub index: usize,
    /// The rule's optional `name` (a section name other resources can target).
    pub name: Option<String>,
    /// ORed. Empty when every match the user wrote was invalid: the rule then never matches.
    pub matches: Vec<RequestMatch>,
    /// The rule's RequestHeaderModifier, applied to every request it forwards.
    pub request_header_modifier: Option<HeaderModifier>,
    /// The rule's ResponseHeaderModifier, applied to every response it passes back.
    pub response_header_modifier: Option<HeaderModifier>,
    /// Set: the waypoint answers with a redirect and forwards nothing.
    pub redirect: Option<Redirect>,
    /// Set: the waypoint answers with this status and body and forwards nothing
    /// (VirtualService `directResponse`).
    pub direct_response: Option<DirectResponse>,
    /// The rule's URLRewrite: the host and path the backend sees instead of the client's.
    pub rewrite: Option<UrlRewrite>,
    /// RequestMirror filters, each sampling requests on its own.
    pub mirrors: Vec<Mirror>,
    /// The CORS filter: the waypoint answers preflights itself and adds `Access-Control-*`
    /// headers to responses for allowed origins.
    pub cors: Option<Arc<Cors>>,
    /// Timeouts and retry, compiled by `resilience`; carried for the proxy, never read here.
    /// Shared, so a request takes it without copying the retry codes.
    pub policy: Arc<RoutePolicy>,
    /// A filter the spec forbids skipping (ExtensionRef, ExternalAuth) is not supported:
    /// matched requests are answered with 500, and this says why.
    pub unsupported_filter: Option<String>,
    /// The backendRefs in spec order, invalid ones included so they keep their share.
    pub backends: Vec<WeightedBackend>,
}

/// A local answer instead of forwarding (VirtualService `directResponse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectResponse {
    /// The status sent.
    pub status: u16,
    /// The body sent, byte for byte; empty for none. `Bytes`, so each answer shares it.
    pub body: bytes::Bytes,
}

impl Rule {
    /// Weighted choice. `random` is any uniformly random u32 supplied by the caller (keeps this crate pure).
    /// Backends with weight 0 are never picked; None when there are no backends or all weights are 0
    /// (the proxy answers 500 then, per spec). Invalid backends take part in the weighting (their share gets 500).
    pub fn pick_backend(&self, random: u32) -> Option<&WeightedBackend> {
        pick(&self.backends, random)
    }
}

/// Compiles one route. Never panics on any input. Issues with Severity::Error mean the user's
/// intent cannot be honoured exactly; the returned CompiledRoute is still usable (invalid
/// backends become BackendTarget::Invalid, which the proxy answers with 500 per the Gateway API
/// spec, and invalid matches never match).
///
/// Attachment is a separate question, answered (with its own issues) by
/// [`crate::parent_services`].
pub fn compile_http_route(
    route: &HttpRoute,
    lookup: &dyn BackendLookup,
) -> (CompiledRoute, Vec<Issue>) {
    let mut issues = Vec::new();
    let id = RouteId::of(route);
    if id.name.is_empty() {
        issues.push(Issue::error(
            IssueReason::Invalid,
            "metadata.name",
            "route has no name",
        ));
    }
    if route.spec.hostnames.as_ref().is_some_and(|h| !h.is_empty()) {
        issues.push(Issue::warning(
            IssueReason::Unsupported,
            "spec.hostnames",
            "hostnames are ignored for Service parentRefs (GAMMA)",
        ));
    }
    if route.spec.use_default_gateways.is_some() {
        issues.push(Issue::warning(
            IssueReason::Unsupported,
            "spec.useDefaultGateways",
            "useDefaultGateways is ignored for Service parentRefs (GAMMA)",
        ));
    }
    let rules = match route.spec.rules.as_deref() {
        // The Gateway API default for a route without rules: one rule matching every request,
        // with no backends, so matched requests get 500.
        None | Some([]) => vec![Rule {
            index: 0,
            name: None,
            matches: vec![RequestMatch::any()],
            request_header_modifier: None,
            response_header_modifier: None,
            redirect: None,
            direct_response: None,
            rewrite: None,
            mirrors: Vec::new(),
            cors: None,
            policy: Arc::default(),
            unsupported_filter: None,
            backends: Vec::new(),
        }],
        Some(rules) => rules
            .iter()
            .enumerate()
            .map(|(i, rule)| compile_rule(i, rule, &id.namespace, lookup, &mut issues))
            .collect(),
    };
    let route = CompiledRoute {
        id,
        created_at_nanos: route
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_nanosecond()),
        rules,
        source: RouteSource::GatewayApi,
    };
    (route, issues)
}

fn compile_rule(
    index: usize,
    rule: &HttpRouteRules,
    route_namespace: &str,
    lookup: &dyn BackendLookup,
    issues: &mut Vec<Issue>,
) -> Rule {
    let field = format!("spec.rules[{index}]");
    let matches = match rule.matches.as_deref() {
        None | Some([]) => vec![RequestMatch::any()],
        Some(matches) => matches
            .iter()
            .enumerate()
            .filter_map(|(m, spec)| {
                RequestMatch::compile(spec, &format!("{field}.matches[{m}]"), issues)
            })
            .collect(),
    };
    if rule.session_persistence.is_some() {
        issues.push(Issue::error(
            IssueReason::Unsupported,
            format!("{field}.sessionPersistence"),
            "sessionPersistence is not supported yet; requests are balanced without affinity",
        ));
    }
    let mut policy_issues = Vec::new();
    let policy = RoutePolicy::from_gateway_rule(
        rule.timeouts.as_ref(),
        rule.retry.as_ref(),
        &field,
        &mut policy_issues,
    );
    issues.extend(policy_issues.into_iter().map(Issue::from));
    let filters = compile_rule_filters(
        rule.filters.as_deref().unwrap_or_default(),
        &format!("{field}.filters"),
        &RuleContext {
            matches: &matches,
            route_namespace,
            lookup,
        },
        issues,
    );
    let backends = rule
        .backend_refs
        .iter()
        .flatten()
        .enumerate()
        .map(|(j, backend)| {
            compile_backend_ref(
                backend,
                &format!("{field}.backendRefs[{j}]"),
                route_namespace,
                lookup,
                issues,
            )
        })
        .collect();
    Rule {
        index,
        name: rule.name.clone(),
        matches,
        request_header_modifier: filters.request_header_modifier,
        response_header_modifier: filters.response_header_modifier,
        redirect: filters.redirect,
        direct_response: None,
        rewrite: filters.rewrite,
        mirrors: filters.mirrors,
        cors: filters.cors.map(Arc::new),
        policy: Arc::new(policy),
        unsupported_filter: filters.unsupported,
        backends,
    }
}

#[cfg(test)]
mod tests;
