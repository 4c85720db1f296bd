//! VirtualService → [`CompiledRoute`]: each `http[]` rule becomes a [`Rule`] of the same shape
//! HTTPRoute rules compile into, so one matcher and one proxy pipeline serve both. Rules keep
//! their written order (see [`crate::RouteTable::in_written_order`]): Istio's first match wins.

use super::matches::{catch_all, compile_match, port};
use super::virtual_service::{
    HeaderOperations, Headers, HttpDirectResponse, HttpRedirect, HttpRewrite, HttpRouteDestination,
    VirtualServiceSpec, VsDestination, VsHttpRoute,
};
use crate::backend::{BackendTarget, WeightedBackend};
use crate::compile::{CompiledRoute, DirectResponse, RouteId, RouteSource, Rule};
use crate::header_modifier::HeaderModifier;
use crate::issue::{Issue, IssueReason};
use crate::mirror::Mirror;
use crate::parent::ServiceKey;
use crate::path_modifier::{PathModifier, PathRegex};
use crate::redirect::{Redirect, RedirectPort, UrlRewrite};
use resilience::{Percent, RoutePolicy};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Istio's redirect status when `redirectCode` is left out.
pub const DEFAULT_VS_REDIRECT_STATUS: u16 = 301;

/// What compiling a VirtualService asks of the config layer (so this crate stays pure).
pub trait DestinationLookup {
    /// The service a destination `host` names, written in a VirtualService of `namespace`
    /// (short names resolve there), and its port: `port` when given (it must exist), else the
    /// service's only port, else 0, which means "the port the request arrived on" (Istio's
    /// choice for a multi-port service). Err says why, e.g. "no service is named reviews.x".
    fn resolve(
        &self,
        host: &str,
        namespace: &str,
        port: Option<u16>,
    ) -> Result<(ServiceKey, u16), String>;
}

/// The port a destination of `service` (whose ports are `ports`) goes to: `requested` when
/// the service has it; else its only port; else 0, the port the request arrived on, which is
/// where Istio sends a destination without a port on a multi-port service.
pub fn destination_port(
    service: &ServiceKey,
    ports: &[u16],
    requested: Option<u16>,
) -> Result<u16, String> {
    match (requested, ports) {
        (Some(p), _) if ports.contains(&p) => Ok(p),
        (Some(p), _) => Err(format!("service {service} has no port {p}")),
        (None, [only]) => Ok(*only),
        (None, _) => Ok(0),
    }
}

/// Compiles a VirtualService's `http[]` rules, never failing: invalid parts are reported and
/// fail closed (a match that never matches, a destination answered with 500).
pub fn compile_virtual_service(
    id: RouteId,
    created_at_nanos: Option<i128>,
    spec: &VirtualServiceSpec,
    lookup: &dyn DestinationLookup,
) -> (CompiledRoute, Vec<Issue>) {
    let mut issues = Vec::new();
    for (key, present) in [("tcp", !spec.tcp.is_empty()), ("tls", !spec.tls.is_empty())] {
        if present {
            issues.push(Issue::warning(
                IssueReason::Unsupported,
                format!("spec.{key}"),
                format!("{key} rules are not applied by this waypoint; only http rules are"),
            ));
        }
    }
    let rules = spec
        .http
        .iter()
        .enumerate()
        .map(|(i, rule)| compile_rule(i, rule, &id.namespace, lookup, &mut issues))
        .collect();
    let route = CompiledRoute {
        id,
        created_at_nanos,
        rules,
        source: RouteSource::VirtualService,
    };
    (route, issues)
}

fn compile_rule(
    index: usize,
    rule: &VsHttpRoute,
    namespace: &str,
    lookup: &dyn DestinationLookup,
    issues: &mut Vec<Issue>,
) -> Rule {
    let field = format!("spec.http[{index}]");
    let matches = if rule.matches.is_empty() {
        vec![catch_all()]
    } else {
        rule.matches
            .iter()
            .enumerate()
            .filter_map(|(m, spec)| compile_match(spec, &format!("{field}.match[{m}]"), issues))
            .collect()
    };
    let mut policy_issues = Vec::new();
    let policy = RoutePolicy::from_istio(
        rule.timeout.as_deref(),
        rule.retries.as_ref(),
        rule.fault.as_ref(),
        &field,
        &mut policy_issues,
    );
    issues.extend(policy_issues.into_iter().map(Issue::from));
    let dest = Destinations { namespace, lookup };
    let (request_header_modifier, response_header_modifier) =
        header_modifiers(rule.headers.as_ref(), &format!("{field}.headers"), issues);
    let mut compiled = Rule {
        index,
        name: rule.name.clone(),
        matches,
        request_header_modifier,
        response_header_modifier,
        redirect: rule
            .redirect
            .as_ref()
            .map(|r| compile_redirect(r, &format!("{field}.redirect"), issues)),
        direct_response: rule
            .direct_response
            .as_ref()
            .map(|d| compile_direct_response(d, &format!("{field}.directResponse"), issues)),
        rewrite: rule
            .rewrite
            .as_ref()
            .and_then(|r| compile_rewrite(r, &format!("{field}.rewrite"), issues)),
        mirrors: dest.mirrors(rule, &field, issues),
        cors: rule.cors_policy.as_ref().map(|c| {
            Arc::new(super::cors::compile(
                c,
                &format!("{field}.corsPolicy"),
                issues,
            ))
        }),
        policy: Arc::new(policy),
        unsupported_filter: None,
        backends: dest.weighted(&rule.route, &format!("{field}.route"), issues),
    };
    check_actions(rule, &field, &mut compiled, issues);
    compiled
}

/// A rule does one thing: forward (`route`), redirect, answer directly or delegate. Istio's
/// validation refuses the combinations; here the first of redirect, directResponse wins and
/// the conflict is an error.
fn check_actions(spec: &VsHttpRoute, field: &str, rule: &mut Rule, issues: &mut Vec<Issue>) {
    let mut error = |key: &str, message: &str| {
        issues.push(Issue::error(
            IssueReason::Invalid,
            format!("{field}.{key}"),
            message,
        ));
    };
    if spec.delegate.is_some() {
        let why = "delegate is not supported by this waypoint; matched requests are answered \
                   with 500 (inline the delegate VirtualService's rules into this one)";
        issues.push(Issue::error(
            IssueReason::Unsupported,
            format!("{field}.delegate"),
            why,
        ));
        rule.unsupported_filter = Some(format!("{field}.delegate is not supported"));
        return;
    }
    if rule.redirect.is_some() && rule.direct_response.take().is_some() {
        error(
            "directResponse",
            "a rule may have redirect or directResponse, not both; the redirect is applied",
        );
    }
    let answers_locally = rule.redirect.is_some() || rule.direct_response.is_some();
    if answers_locally && !spec.route.is_empty() {
        error(
            "route",
            "a rule that redirects or answers directly cannot also route; route is ignored",
        );
        rule.backends.clear();
    }
    if rule.redirect.is_some() && rule.rewrite.take().is_some() {
        error(
            "rewrite",
            "a rule may have redirect or rewrite, not both; the redirect is applied",
        );
    }
    if !answers_locally && spec.route.is_empty() {
        error(
            "route",
            "a rule needs route, redirect, directResponse or delegate; matched requests are \
             answered with 500",
        );
    }
}

/// Rule- or destination-level `headers` at `field`: (request, response) modifiers.
fn header_modifiers(
    headers: Option<&Headers>,
    field: &str,
    issues: &mut Vec<Issue>,
) -> (Option<HeaderModifier>, Option<HeaderModifier>) {
    let Some(headers) = headers else {
        return (None, None);
    };
    let mut modifier = |ops: &Option<HeaderOperations>, key: &str| {
        ops.as_ref().map(|ops| {
            HeaderModifier::compile(
                pairs(&ops.set),
                pairs(&ops.add),
                &ops.remove,
                &format!("{field}.{key}"),
                issues,
            )
        })
    };
    let request = modifier(&headers.request, "request");
    let response = modifier(&headers.response, "response");
    (request, response)
}

fn pairs(map: &BTreeMap<String, String>) -> impl Iterator<Item = (&str, &str)> {
    map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

/// Resolves destinations for one VirtualService.
struct Destinations<'a> {
    namespace: &'a str,
    lookup: &'a dyn DestinationLookup,
}

impl Destinations<'_> {
    /// The service and port of `d` at `field`, or an invalid target (its share gets 500).
    fn target(&self, d: &VsDestination, field: &str, issues: &mut Vec<Issue>) -> BackendTarget {
        let invalid = |issue: Issue, issues: &mut Vec<Issue>| {
            let reason = issue.message.clone();
            issues.push(issue);
            BackendTarget::Invalid { reason }
        };
        if d.host.is_empty() {
            let issue = Issue::error(
                IssueReason::Invalid,
                format!("{field}.host"),
                "destination host is empty",
            );
            return invalid(issue, issues);
        }
        let port = match d.port {
            None => None,
            Some(p) => match port(p.number, &format!("{field}.port.number"), issues) {
                Some(p) => Some(p),
                None => {
                    let reason = format!("port {} is out of range", p.number);
                    return BackendTarget::Invalid { reason };
                }
            },
        };
        match self.lookup.resolve(&d.host, self.namespace, port) {
            Ok((service, port)) => BackendTarget::Service {
                service,
                port,
                subset: d.subset.clone(),
            },
            Err(reason) => invalid(
                Issue::error(
                    IssueReason::BackendNotFound,
                    format!("{field}.host"),
                    reason,
                ),
                issues,
            ),
        }
    }

    /// `route[]` at `field` with Istio's weights: a lone destination takes all traffic;
    /// several share it by their weights (left out = 0), which must not all be 0.
    fn weighted(
        &self,
        route: &[HttpRouteDestination],
        field: &str,
        issues: &mut Vec<Issue>,
    ) -> Vec<WeightedBackend> {
        let single = route.len() == 1;
        let mut total: u64 = 0;
        let backends: Vec<WeightedBackend> = route
            .iter()
            .enumerate()
            .map(|(j, r)| {
                let field = format!("{field}[{j}]");
                let weight = match r.weight {
                    _ if single => 100,
                    None => 0,
                    Some(w) => u32::try_from(w).unwrap_or_else(|_| {
                        issues.push(Issue::error(
                            IssueReason::Invalid,
                            format!("{field}.weight"),
                            format!("weight {w} is negative; using 0"),
                        ));
                        0
                    }),
                };
                total += u64::from(weight);
                let (request, response) =
                    header_modifiers(r.headers.as_ref(), &format!("{field}.headers"), issues);
                WeightedBackend {
                    target: self.target(&r.destination, &format!("{field}.destination"), issues),
                    weight,
                    request_header_modifier: request,
                    response_header_modifier: response,
                }
            })
            .collect();
        if !single && !route.is_empty() && total == 0 {
            issues.push(Issue::error(
                IssueReason::Invalid,
                field.to_owned(),
                "the weights of the destinations add up to 0 (a weight left out counts as 0 \
                 when there are several destinations); matched requests are answered with 500",
            ));
        } else if !single && total != 100 && total != 0 {
            issues.push(Issue::warning(
                IssueReason::Invalid,
                field.to_owned(),
                format!("the weights add up to {total}, not 100; shares are weight/{total}"),
            ));
        }
        backends
    }

    /// `mirror` (with `mirrorPercentage`) or `mirrors[]`.
    fn mirrors(&self, rule: &VsHttpRoute, field: &str, issues: &mut Vec<Issue>) -> Vec<Mirror> {
        if rule.mirror.is_some() && !rule.mirrors.is_empty() {
            issues.push(Issue::error(
                IssueReason::Invalid,
                format!("{field}.mirrors"),
                "set mirror or mirrors, not both; mirrors is applied",
            ));
        }
        let mut mirror = |d: &VsDestination, percent: Option<&Percent>, field: String| Mirror {
            target: self.target(d, &format!("{field}.destination"), issues),
            percent: share(percent, &field, issues),
        };
        if !rule.mirrors.is_empty() {
            return rule
                .mirrors
                .iter()
                .enumerate()
                .map(|(k, m)| {
                    mirror(
                        &m.destination,
                        m.percentage.as_ref(),
                        format!("{field}.mirrors[{k}]"),
                    )
                })
                .collect();
        }
        rule.mirror
            .iter()
            .map(|d| Mirror {
                target: self.target(d, &format!("{field}.mirror"), issues),
                percent: share(
                    rule.mirror_percentage.as_ref(),
                    &format!("{field}.mirrorPercentage"),
                    issues,
                ),
            })
            .collect()
    }
}

/// A mirror's share, 100 % when left out, clamped to 0-100.
fn share(percent: Option<&Percent>, field: &str, issues: &mut Vec<Issue>) -> f64 {
    let Some(p) = percent else { return 100.0 };
    if (0.0..=100.0).contains(&p.value) {
        return p.value;
    }
    let clamped = if p.value.is_nan() {
        0.0
    } else {
        p.value.clamp(0.0, 100.0)
    };
    issues.push(Issue::error(
        IssueReason::Invalid,
        format!("{field}.value"),
        format!(
            "percentage {} is out of range 0-100; using {clamped}",
            p.value
        ),
    ));
    clamped
}

fn compile_redirect(spec: &HttpRedirect, field: &str, issues: &mut Vec<Issue>) -> Redirect {
    let mut error = |key: &str, message: String| {
        issues.push(Issue::error(
            IssueReason::Invalid,
            format!("{field}.{key}"),
            message,
        ));
    };
    let status = match spec.redirect_code {
        None => DEFAULT_VS_REDIRECT_STATUS,
        Some(code @ (301 | 302 | 303 | 307 | 308)) => {
            u16::try_from(code).unwrap_or(DEFAULT_VS_REDIRECT_STATUS)
        }
        Some(code) => {
            error(
                "redirectCode",
                format!(
                    "{code} is not a redirect status (301, 302, 303, 307, 308); using \
                     {DEFAULT_VS_REDIRECT_STATUS}"
                ),
            );
            DEFAULT_VS_REDIRECT_STATUS
        }
    };
    let port_from = match spec.derive_port.as_deref() {
        None | Some("FROM_PROTOCOL_DEFAULT") => RedirectPort::RequestAuthority,
        Some("FROM_REQUEST_PORT") => RedirectPort::Listener,
        Some(other) => {
            error(
                "derivePort",
                format!("{other:?} is not FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT; ignored"),
            );
            RedirectPort::RequestAuthority
        }
    };
    if spec.port.is_some() && spec.derive_port.is_some() {
        error(
            "derivePort",
            "set port or derivePort, not both; port is applied".to_owned(),
        );
    }
    let scheme = spec
        .scheme
        .as_deref()
        .and_then(|s| match s.to_ascii_lowercase().as_str() {
            "http" => Some("http"),
            "https" => Some("https"),
            _ => {
                error(
                    "scheme",
                    format!("scheme {s:?} is not http or https; the request's is kept"),
                );
                None
            }
        });
    let path = spec.uri.as_deref().and_then(|uri| {
        if uri.starts_with('/') {
            Some(PathModifier::ReplaceFullPath(uri.to_owned()))
        } else {
            error("uri", format!("uri {uri:?} must start with '/'; ignored"));
            None
        }
    });
    Redirect {
        scheme,
        hostname: spec.authority.clone().filter(|a| !a.is_empty()),
        path,
        port: spec
            .port
            .and_then(|p| port(p, &format!("{field}.port"), issues)),
        status,
        port_from,
    }
}

fn compile_rewrite(spec: &HttpRewrite, field: &str, issues: &mut Vec<Issue>) -> Option<UrlRewrite> {
    let uri = spec
        .uri
        .as_ref()
        .map(|uri| PathModifier::ReplaceMatched(uri.clone()));
    let regex = spec.uri_regex_rewrite.as_ref().and_then(|r| {
        let field = format!("{field}.uriRegexRewrite");
        match regex::Regex::new(&r.pattern) {
            Ok(re) => Some(PathModifier::RegexReplace(
                PathRegex(re),
                substitution(&r.rewrite),
            )),
            Err(e) => {
                issues.push(crate::request_match::invalid_regex(
                    format!("{field}.match"),
                    &e,
                ));
                None
            }
        }
    });
    if uri.is_some() && spec.uri_regex_rewrite.is_some() {
        issues.push(Issue::error(
            IssueReason::Invalid,
            format!("{field}.uriRegexRewrite"),
            "set uri or uriRegexRewrite, not both; uri is applied",
        ));
    }
    let rewrite = UrlRewrite {
        hostname: spec.authority.clone().filter(|a| !a.is_empty()),
        path: uri.or(regex),
    };
    (rewrite.hostname.is_some() || rewrite.path.is_some()).then_some(rewrite)
}

/// RE2's `\1` group references (what Envoy's regex_rewrite takes) in the `regex` crate's
/// `${1}` syntax, with a literal `$` escaped.
fn substitution(rewrite: &str) -> String {
    let mut out = String::with_capacity(rewrite.len() + 4);
    let mut chars = rewrite.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    chars.next();
                    out.push_str(&format!("${{{d}}}"));
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

fn compile_direct_response(
    spec: &HttpDirectResponse,
    field: &str,
    issues: &mut Vec<Issue>,
) -> DirectResponse {
    let status = match u16::try_from(spec.status) {
        Ok(s @ 200..=599) => s,
        _ => {
            issues.push(Issue::error(
                IssueReason::Invalid,
                format!("{field}.status"),
                format!("status {} is not in 200-599; using 500", spec.status),
            ));
            500
        }
    };
    let body = match spec.body.as_ref() {
        None => Vec::new(),
        Some(b) => match (&b.string, &b.bytes) {
            (Some(text), _) => text.clone().into_bytes(),
            (None, Some(encoded)) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .unwrap_or_else(|e| {
                        issues.push(Issue::error(
                            IssueReason::Invalid,
                            format!("{field}.body.bytes"),
                            format!("not base64 ({e}); the body is left empty"),
                        ));
                        Vec::new()
                    })
            }
            (None, None) => Vec::new(),
        },
    };
    DirectResponse {
        status,
        body: body.into(),
    }
}
