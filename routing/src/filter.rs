//! Route filters: which ones this proxy applies, and reporting for the ones it does not.
//!
//! Rule-level and backendRef-level filters are distinct generated types with the same shape;
//! both are read through [`FilterView`] so the header modifiers follow one set of rules. The
//! filters that change where a request goes (redirect, rewrite, mirror, CORS) are applied per
//! rule only; on a backendRef they are reported, as the spec leaves them optional there.

use gateway_api::experimental::httproutes::{
    HttpRouteRulesBackendRefsFilters, HttpRouteRulesBackendRefsFiltersType, HttpRouteRulesFilters,
    HttpRouteRulesFiltersRequestRedirect, HttpRouteRulesFiltersRequestRedirectPathType,
    HttpRouteRulesFiltersRequestRedirectScheme, HttpRouteRulesFiltersType,
    HttpRouteRulesFiltersUrlRewrite, HttpRouteRulesFiltersUrlRewritePathType,
};

use crate::backend::BackendLookup;
use crate::cors::Cors;
use crate::header_modifier::HeaderModifier;
use crate::issue::{Issue, IssueReason};
use crate::mirror::Mirror;
use crate::path_modifier::PathModifier;
use crate::redirect::{Redirect, RedirectPort, UrlRewrite, DEFAULT_REDIRECT_STATUS};
use crate::request_match::RequestMatch;

/// What a list of filters compiles to.
#[derive(Default)]
pub(crate) struct CompiledFilters {
    pub request_header_modifier: Option<HeaderModifier>,
    pub response_header_modifier: Option<HeaderModifier>,
    pub redirect: Option<Redirect>,
    pub rewrite: Option<UrlRewrite>,
    pub mirrors: Vec<Mirror>,
    pub cors: Option<Cors>,
    /// Why matched requests must fail: a filter that cannot be skipped is not supported.
    pub unsupported: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FilterKind {
    RequestHeaderModifier,
    ResponseHeaderModifier,
    /// Applied per rule by [`compile_rule_filters`]; not supported on a backendRef.
    RuleOnly(&'static str),
    /// Filters that must not be skipped (the spec wants matched requests to fail instead),
    /// with what the user can do about it.
    Unsupported(&'static str, &'static str),
}

struct ModifierView<'a> {
    set: Vec<(&'a str, &'a str)>,
    add: Vec<(&'a str, &'a str)>,
    remove: &'a [String],
}

struct FilterView<'a> {
    kind: FilterKind,
    request_header_modifier: Option<ModifierView<'a>>,
    response_header_modifier: Option<ModifierView<'a>>,
}

/// What rule-level filters need beyond the filters themselves.
pub(crate) struct RuleContext<'a> {
    /// The rule's matches: ReplacePrefixMatch requires PathPrefix ones.
    pub matches: &'a [RequestMatch],
    pub route_namespace: &'a str,
    pub lookup: &'a dyn BackendLookup,
}

/// Compiles rule `filters` found at `field` (e.g. "spec.rules[0].filters").
pub(crate) fn compile_rule_filters(
    filters: &[HttpRouteRulesFilters],
    field: &str,
    rule: &RuleContext<'_>,
    issues: &mut Vec<Issue>,
) -> CompiledFilters {
    let mut compiled = compile(filters.iter().map(FilterView::from), field, true, issues);
    for (k, filter) in filters.iter().enumerate() {
        let field = format!("{field}[{k}]");
        match filter.r#type {
            HttpRouteRulesFiltersType::RequestRedirect => {
                let Some(spec) =
                    needed(&filter.request_redirect, &field, "requestRedirect", issues)
                else {
                    continue;
                };
                let redirect =
                    compile_redirect(spec, &format!("{field}.requestRedirect"), rule, issues);
                set_once(
                    &mut compiled.redirect,
                    redirect,
                    &field,
                    "RequestRedirect",
                    issues,
                );
            }
            HttpRouteRulesFiltersType::UrlRewrite => {
                let Some(spec) = needed(&filter.url_rewrite, &field, "urlRewrite", issues) else {
                    continue;
                };
                let rewrite = compile_rewrite(spec, &format!("{field}.urlRewrite"), rule, issues);
                set_once(&mut compiled.rewrite, rewrite, &field, "URLRewrite", issues);
            }
            HttpRouteRulesFiltersType::RequestMirror => {
                let Some(spec) = needed(&filter.request_mirror, &field, "requestMirror", issues)
                else {
                    continue;
                };
                compiled.mirrors.push(Mirror::compile(
                    spec,
                    &format!("{field}.requestMirror"),
                    rule.route_namespace,
                    rule.lookup,
                    issues,
                ));
            }
            HttpRouteRulesFiltersType::Cors => {
                let Some(spec) = needed(&filter.cors, &field, "cors", issues) else {
                    continue;
                };
                let cors = Cors::compile(spec, &format!("{field}.cors"), issues);
                set_once(&mut compiled.cors, cors, &field, "CORS", issues);
            }
            _ => {}
        }
    }
    if compiled.redirect.is_some() && compiled.rewrite.take().is_some() {
        issues.push(Issue::error(
            IssueReason::Invalid,
            field.to_owned(),
            "a rule may have RequestRedirect or URLRewrite, not both; the redirect is applied",
        ));
    }
    compiled
}

/// The filter's own field, reported when missing (a local file skips the CRD's validation).
fn needed<'a, T>(
    spec: &'a Option<T>,
    field: &str,
    key: &str,
    issues: &mut Vec<Issue>,
) -> Option<&'a T> {
    if spec.is_none() {
        issues.push(Issue::error(
            IssueReason::Invalid,
            format!("{field}.{key}"),
            format!("this filter type needs its {key} field; the filter is ignored"),
        ));
    }
    spec.as_ref()
}

/// The spec allows these filters once per rule; a second one would have to guess which wins.
fn set_once<T>(slot: &mut Option<T>, value: T, field: &str, name: &str, issues: &mut Vec<Issue>) {
    if slot.is_some() {
        issues.push(Issue::error(
            IssueReason::Invalid,
            format!("{field}.type"),
            format!("filter {name} may appear only once per rule; this one is ignored"),
        ));
    } else {
        *slot = Some(value);
    }
}

fn compile_redirect(
    spec: &HttpRouteRulesFiltersRequestRedirect,
    field: &str,
    rule: &RuleContext<'_>,
    issues: &mut Vec<Issue>,
) -> Redirect {
    let status = match spec.status_code {
        None => DEFAULT_REDIRECT_STATUS,
        Some(code @ (301 | 302 | 303 | 307 | 308)) => u16::try_from(code).unwrap_or(302),
        Some(code) => {
            issues.push(Issue::error(
                IssueReason::Invalid,
                format!("{field}.statusCode"),
                format!(
                    "statusCode {code} is not a redirect status (301, 302, 303, 307, 308); \
                     using {DEFAULT_REDIRECT_STATUS}"
                ),
            ));
            DEFAULT_REDIRECT_STATUS
        }
    };
    let port = spec.port.and_then(|port| match u16::try_from(port) {
        Ok(port) if port != 0 => Some(port),
        _ => {
            issues.push(Issue::error(
                IssueReason::Invalid,
                format!("{field}.port"),
                format!("port {port} is out of range 1-65535; it is ignored"),
            ));
            None
        }
    });
    let path = spec.path.as_ref().and_then(|p| {
        let prefix = p.r#type == HttpRouteRulesFiltersRequestRedirectPathType::ReplacePrefixMatch;
        let value = if prefix {
            p.replace_prefix_match.as_deref()
        } else {
            p.replace_full_path.as_deref()
        };
        PathModifier::compile(
            prefix,
            value,
            rule.matches,
            &format!("{field}.path"),
            issues,
        )
    });
    Redirect {
        scheme: spec.scheme.as_ref().map(|s| match s {
            HttpRouteRulesFiltersRequestRedirectScheme::Http => "http",
            HttpRouteRulesFiltersRequestRedirectScheme::Https => "https",
        }),
        hostname: hostname(
            spec.hostname.as_deref(),
            &format!("{field}.hostname"),
            issues,
        ),
        path,
        port,
        status,
        port_from: RedirectPort::GatewayApi,
    }
}

fn compile_rewrite(
    spec: &HttpRouteRulesFiltersUrlRewrite,
    field: &str,
    rule: &RuleContext<'_>,
    issues: &mut Vec<Issue>,
) -> UrlRewrite {
    let path = spec.path.as_ref().and_then(|p| {
        let prefix = p.r#type == HttpRouteRulesFiltersUrlRewritePathType::ReplacePrefixMatch;
        let value = if prefix {
            p.replace_prefix_match.as_deref()
        } else {
            p.replace_full_path.as_deref()
        };
        PathModifier::compile(
            prefix,
            value,
            rule.matches,
            &format!("{field}.path"),
            issues,
        )
    });
    UrlRewrite {
        hostname: hostname(
            spec.hostname.as_deref(),
            &format!("{field}.hostname"),
            issues,
        ),
        path,
    }
}

/// A redirect or rewrite hostname: a bare host, which must also be a valid header value.
fn hostname(value: Option<&str>, field: &str, issues: &mut Vec<Issue>) -> Option<String> {
    let value = value?;
    let valid = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid {
        issues.push(Issue::error(
            IssueReason::Invalid,
            field.to_owned(),
            format!(
                "hostname {value:?} is not a DNS name (letters, digits, '-', '.'); it is ignored"
            ),
        ));
        return None;
    }
    Some(value.to_ascii_lowercase())
}

/// Compiles backendRef `filters` found at `field` (e.g. "spec.rules[0].backendRefs[1].filters").
pub(crate) fn compile_backend_filters(
    filters: &[HttpRouteRulesBackendRefsFilters],
    field: &str,
    issues: &mut Vec<Issue>,
) -> CompiledFilters {
    compile(filters.iter().map(FilterView::from), field, false, issues)
}

/// The filters every level shares: header modifiers, and reports for the unsupported ones.
/// `rule_level` says whether the rule-only filters are handled by the caller.
fn compile<'a>(
    filters: impl Iterator<Item = FilterView<'a>>,
    field: &str,
    rule_level: bool,
    issues: &mut Vec<Issue>,
) -> CompiledFilters {
    let mut compiled = CompiledFilters::default();
    for (k, filter) in filters.enumerate() {
        let field = format!("{field}[{k}]");
        let (slot, view, key) = match filter.kind {
            FilterKind::RuleOnly(_) if rule_level => continue,
            FilterKind::RuleOnly(name) => {
                issues.push(Issue::error(
                    IssueReason::Unsupported,
                    format!("{field}.type"),
                    format!(
                        "filter {name} is not supported on a backendRef; move it to the \
                         rule's filters, where it applies to every backend of the rule"
                    ),
                ));
                continue;
            }
            FilterKind::Unsupported(name, hint) => {
                // The spec forbids skipping a filter that cannot be applied; at the rule
                // level the proxy answers 500 instead. A backendRef has no such switch yet.
                let effect = if rule_level {
                    "requests matching this rule are answered with 500"
                } else {
                    "the filter is skipped"
                };
                issues.push(Issue::error(
                    IssueReason::Unsupported,
                    format!("{field}.type"),
                    format!("filter {name} is not supported, so {effect}; {hint}"),
                ));
                compiled
                    .unsupported
                    .get_or_insert_with(|| format!("filter {name} at {field} is not supported"));
                continue;
            }
            FilterKind::RequestHeaderModifier => (
                &mut compiled.request_header_modifier,
                filter.request_header_modifier,
                "requestHeaderModifier",
            ),
            FilterKind::ResponseHeaderModifier => (
                &mut compiled.response_header_modifier,
                filter.response_header_modifier,
                "responseHeaderModifier",
            ),
        };
        let type_name = type_name(filter.kind);
        // The spec allows each header modifier once per rule (or backendRef); merging two
        // would have to guess which one wins.
        if slot.is_some() {
            issues.push(Issue::error(
                IssueReason::Invalid,
                format!("{field}.type"),
                format!("filter {type_name} may appear only once; this one is ignored"),
            ));
            continue;
        }
        let Some(view) = view else {
            issues.push(Issue::error(
                IssueReason::Invalid,
                format!("{field}.{key}"),
                format!("filter type {type_name} needs its {key} field"),
            ));
            continue;
        };
        *slot = Some(HeaderModifier::compile(
            view.set,
            view.add,
            view.remove,
            &format!("{field}.{key}"),
            issues,
        ));
    }
    compiled
}

fn type_name(kind: FilterKind) -> &'static str {
    match kind {
        FilterKind::RequestHeaderModifier => "RequestHeaderModifier",
        FilterKind::ResponseHeaderModifier => "ResponseHeaderModifier",
        FilterKind::RuleOnly(name) | FilterKind::Unsupported(name, _) => name,
    }
}

/// Builds a [`ModifierView`] from any generated header-modifier type (they differ only in name).
macro_rules! modifier_view {
    ($m:expr) => {
        $m.as_ref().map(|m| ModifierView {
            set: m
                .set
                .iter()
                .flatten()
                .map(|h| (h.name.as_str(), h.value.as_str()))
                .collect(),
            add: m
                .add
                .iter()
                .flatten()
                .map(|h| (h.name.as_str(), h.value.as_str()))
                .collect(),
            remove: m.remove.as_deref().unwrap_or_default(),
        })
    };
}

/// Rule filters and backendRef filters are separate generated types with the same shape; one
/// conversion serves both.
macro_rules! filter_view_from {
    ($filter:ty, $kind:ty) => {
        impl<'a> From<&'a $filter> for FilterView<'a> {
            fn from(f: &'a $filter) -> Self {
                type T = $kind;
                let kind = match f.r#type {
                    T::RequestHeaderModifier => FilterKind::RequestHeaderModifier,
                    T::ResponseHeaderModifier => FilterKind::ResponseHeaderModifier,
                    T::RequestMirror => FilterKind::RuleOnly("RequestMirror"),
                    T::RequestRedirect => FilterKind::RuleOnly("RequestRedirect"),
                    T::UrlRewrite => FilterKind::RuleOnly("URLRewrite"),
                    T::Cors => FilterKind::RuleOnly("CORS"),
                    T::ExtensionRef => FilterKind::Unsupported(
                        "ExtensionRef",
                        "this waypoint has no extension filters: remove the filter, or use a \
                         built-in one (header modifiers, redirect, rewrite, mirror, CORS)",
                    ),
                    T::ExternalAuth => FilterKind::Unsupported(
                        "ExternalAuth",
                        "remove the filter and enforce access with an Istio \
                         AuthorizationPolicy on the service instead",
                    ),
                };
                Self {
                    kind,
                    request_header_modifier: modifier_view!(f.request_header_modifier),
                    response_header_modifier: modifier_view!(f.response_header_modifier),
                }
            }
        }
    };
}

filter_view_from!(HttpRouteRulesFilters, HttpRouteRulesFiltersType);
filter_view_from!(
    HttpRouteRulesBackendRefsFilters,
    HttpRouteRulesBackendRefsFiltersType
);
