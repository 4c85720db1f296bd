//! VirtualService `http[].match[]` → [`RequestMatch`]: Istio's StringMatch conditions on the
//! path, method, authority, scheme, headers and query, and the conditions only a mesh has
//! (port, client namespace).

use super::virtual_service::{HttpMatchRequest, StringMatch};
use crate::issue::{Issue, IssueReason, Severity};
use crate::request_match::{
    full_match_bytes_regex, full_match_regex, invalid_regex, ExtraConditions, HeaderMatch,
    HeaderValueMatch, PathMatch, QueryParamMatch, QueryValueMatch, RequestMatch, TextMatch,
};
use http::HeaderName;
use std::collections::BTreeMap;

/// Which one of a StringMatch's fields is set.
enum Condition<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    Regex(&'a str),
    /// None set: any value (for headers and query parameters, the name must be present).
    Any,
}

/// The match Istio generates for a rule without `match`: Envoy's `prefix: /`, which also
/// decides what `rewrite.uri` replaces (the leading `/`).
pub(super) fn catch_all() -> RequestMatch {
    RequestMatch {
        path: PathMatch::StringPrefix {
            prefix: "/".to_owned(),
            ignore_case: false,
        },
        ..RequestMatch::any()
    }
}

/// Compiles the match at `field` (`spec.http[0].match[1]`). `None` when it cannot apply at a
/// waypoint or is invalid (reported): the rule is then not selected through it, which fails
/// closed instead of widening it.
pub(super) fn compile_match(
    m: &HttpMatchRequest,
    field: &str,
    issues: &mut Vec<Issue>,
) -> Option<RequestMatch> {
    if !m.source_labels.is_empty() {
        issues.push(Issue::warning(
            IssueReason::Unsupported,
            format!("{field}.sourceLabels"),
            "sourceLabels select the client's sidecar by its labels, which a waypoint cannot \
             see; this match never applies here (use sourceNamespace, or an \
             AuthorizationPolicy for per-client rules)",
        ));
        return None;
    }
    if !m.gateways.is_empty() && !m.gateways.iter().any(|g| g == "mesh") {
        issues.push(Issue::warning(
            IssueReason::Unsupported,
            format!("{field}.gateways"),
            "this match names only gateways, not `mesh`, so it never applies at a waypoint",
        ));
        return None;
    }
    let before = issues.len();
    let path = compile_path(
        m.uri.as_ref(),
        m.ignore_uri_case.unwrap_or(false),
        field,
        issues,
    );
    let text = |sm: &Option<StringMatch>, key: &str, issues: &mut Vec<Issue>| {
        sm.as_ref()
            .and_then(|sm| text_match(sm, &format!("{field}.{key}"), issues))
    };
    let extra = ExtraConditions {
        method: text(&m.method, "method", issues),
        authority: text(&m.authority, "authority", issues),
        scheme: text(&m.scheme, "scheme", issues),
        without_headers: headers(
            &m.without_headers,
            &format!("{field}.withoutHeaders"),
            issues,
        ),
        port: m
            .port
            .and_then(|p| port(p, &format!("{field}.port"), issues)),
        source_namespace: m.source_namespace.clone(),
    };
    let compiled = RequestMatch {
        path: path.unwrap_or_else(|| catch_all().path),
        method: None,
        headers: headers(&m.headers, &format!("{field}.headers"), issues),
        query_params: query_params(&m.query_params, &format!("{field}.queryParams"), issues),
        extra: Some(Box::new(extra)),
    };
    let failed = issues[before..]
        .iter()
        .any(|i| i.severity == Severity::Error);
    (!failed).then_some(compiled)
}

/// The one condition `sm` sets; more than one is an error (Istio's StringMatch is a oneof).
fn condition<'a>(
    sm: &'a StringMatch,
    field: &str,
    issues: &mut Vec<Issue>,
) -> Option<Condition<'a>> {
    let set = [
        sm.exact.as_deref().map(Condition::Exact),
        sm.prefix.as_deref().map(Condition::Prefix),
        sm.regex.as_deref().map(Condition::Regex),
    ];
    let mut set = set.into_iter().flatten();
    let first = set.next();
    if set.next().is_some() {
        issues.push(Issue::error(
            IssueReason::Invalid,
            field.to_owned(),
            "set only one of exact, prefix and regex",
        ));
        return None;
    }
    Some(first.unwrap_or(Condition::Any))
}

fn compile_path(
    uri: Option<&StringMatch>,
    ignore_case: bool,
    field: &str,
    issues: &mut Vec<Issue>,
) -> Option<PathMatch> {
    let field = format!("{field}.uri");
    Some(match condition(uri?, &field, issues)? {
        Condition::Exact(v) if ignore_case => PathMatch::ExactIgnoreCase(v.to_owned()),
        Condition::Exact(v) => PathMatch::Exact(v.to_owned()),
        Condition::Prefix(p) => PathMatch::StringPrefix {
            prefix: p.to_owned(),
            ignore_case,
        },
        // Envoy ignores case for exact and prefix matches only, as Istio documents.
        Condition::Regex(re) => match full_match_regex(re) {
            Ok(re) => PathMatch::RegularExpression(re),
            Err(e) => {
                issues.push(invalid_regex(format!("{field}.regex"), &e));
                return None;
            }
        },
        Condition::Any => return None,
    })
}

fn text_match(sm: &StringMatch, field: &str, issues: &mut Vec<Issue>) -> Option<TextMatch> {
    match condition(sm, field, issues)? {
        Condition::Exact(v) => Some(TextMatch::Exact(v.to_owned())),
        Condition::Prefix(p) => Some(TextMatch::Prefix(p.to_owned())),
        Condition::Regex(re) => match full_match_regex(re) {
            Ok(re) => Some(TextMatch::RegularExpression(re)),
            Err(e) => {
                issues.push(invalid_regex(format!("{field}.regex"), &e));
                None
            }
        },
        Condition::Any => None,
    }
}

/// `headers` or `withoutHeaders` at `field`; an empty StringMatch tests presence.
fn headers(
    specs: &BTreeMap<String, StringMatch>,
    field: &str,
    issues: &mut Vec<Issue>,
) -> Vec<HeaderMatch> {
    let mut compiled = Vec::with_capacity(specs.len());
    for (name, sm) in specs {
        let field = format!("{field}.{name}");
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            issues.push(Issue::error(
                IssueReason::Invalid,
                field,
                format!("invalid header name {name:?}"),
            ));
            continue;
        };
        let value = match condition(sm, &field, issues) {
            None => continue,
            Some(Condition::Any) => HeaderValueMatch::Present,
            Some(Condition::Exact(v)) => HeaderValueMatch::Exact(v.as_bytes().to_vec()),
            Some(Condition::Prefix(p)) => HeaderValueMatch::Prefix(p.as_bytes().to_vec()),
            Some(Condition::Regex(re)) => match full_match_bytes_regex(re) {
                Ok(re) => HeaderValueMatch::RegularExpression(re),
                Err(e) => {
                    issues.push(invalid_regex(format!("{field}.regex"), &e));
                    continue;
                }
            },
        };
        compiled.push(HeaderMatch {
            name: header,
            value,
        });
    }
    compiled
}

fn query_params(
    specs: &BTreeMap<String, StringMatch>,
    field: &str,
    issues: &mut Vec<Issue>,
) -> Vec<QueryParamMatch> {
    let mut compiled = Vec::with_capacity(specs.len());
    for (name, sm) in specs {
        let field = format!("{field}.{name}");
        let value = match condition(sm, &field, issues) {
            None => continue,
            Some(Condition::Any) => QueryValueMatch::Present,
            Some(Condition::Exact(v)) => QueryValueMatch::Exact(v.to_owned()),
            Some(Condition::Prefix(p)) => QueryValueMatch::Prefix(p.to_owned()),
            Some(Condition::Regex(re)) => match full_match_regex(re) {
                Ok(re) => QueryValueMatch::RegularExpression(re),
                Err(e) => {
                    issues.push(invalid_regex(format!("{field}.regex"), &e));
                    continue;
                }
            },
        };
        compiled.push(QueryParamMatch {
            name: name.clone(),
            value,
        });
    }
    compiled
}

/// A port number 1-65535, else an error at `field`.
pub(super) fn port(number: u32, field: &str, issues: &mut Vec<Issue>) -> Option<u16> {
    match u16::try_from(number) {
        Ok(p) if p != 0 => Some(p),
        _ => {
            issues.push(Issue::error(
                IssueReason::Invalid,
                field.to_owned(),
                format!("port {number} is out of range 1-65535"),
            ));
            None
        }
    }
}
