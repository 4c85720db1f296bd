//! Route filters: which ones this proxy applies, and reporting for the ones it does not.
//!
//! Rule-level and backendRef-level filters are distinct generated types with the same shape;
//! both are read through [`FilterView`] so they follow one set of rules.

use gateway_api::experimental::httproutes::{
    HttpRouteRulesBackendRefsFilters, HttpRouteRulesBackendRefsFiltersType, HttpRouteRulesFilters,
    HttpRouteRulesFiltersType,
};

use crate::header_modifier::HeaderModifier;
use crate::issue::{Issue, IssueReason};

/// The header modifiers a list of filters compiles to.
#[derive(Default)]
pub(crate) struct CompiledFilters {
    pub request_header_modifier: Option<HeaderModifier>,
    pub response_header_modifier: Option<HeaderModifier>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FilterKind {
    RequestHeaderModifier,
    ResponseHeaderModifier,
    /// Valid Gateway API filters this proxy does not apply yet, by their YAML type name.
    Unsupported(&'static str),
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

/// Compiles `filters` found at `field` (e.g. "spec.rules[0].filters").
pub(crate) fn compile_rule_filters(
    filters: &[HttpRouteRulesFilters],
    field: &str,
    issues: &mut Vec<Issue>,
) -> CompiledFilters {
    compile(filters.iter().map(FilterView::from), field, issues)
}

/// Compiles backendRef `filters` found at `field` (e.g. "spec.rules[0].backendRefs[1].filters").
pub(crate) fn compile_backend_filters(
    filters: &[HttpRouteRulesBackendRefsFilters],
    field: &str,
    issues: &mut Vec<Issue>,
) -> CompiledFilters {
    compile(filters.iter().map(FilterView::from), field, issues)
}

fn compile<'a>(
    filters: impl Iterator<Item = FilterView<'a>>,
    field: &str,
    issues: &mut Vec<Issue>,
) -> CompiledFilters {
    let mut compiled = CompiledFilters::default();
    for (k, filter) in filters.enumerate() {
        let field = format!("{field}[{k}]");
        let (slot, view, key) = match filter.kind {
            FilterKind::Unsupported(name) => {
                issues.push(Issue::error(
                    IssueReason::Unsupported,
                    format!("{field}.type"),
                    format!("filter {name} is not supported yet"),
                ));
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
        FilterKind::Unsupported(name) => name,
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
                    T::RequestMirror => FilterKind::Unsupported("RequestMirror"),
                    T::RequestRedirect => FilterKind::Unsupported("RequestRedirect"),
                    T::UrlRewrite => FilterKind::Unsupported("URLRewrite"),
                    T::ExtensionRef => FilterKind::Unsupported("ExtensionRef"),
                    T::Cors => FilterKind::Unsupported("CORS"),
                    T::ExternalAuth => FilterKind::Unsupported("ExternalAuth"),
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
