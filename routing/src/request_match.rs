//! One HTTPRouteMatch, compiled: what must hold of a request for a rule to apply.
//!
//! Repeated request headers are compared as one value joined the way RFC 9110 §5.3 allows a
//! recipient to combine them: with "," between values (no space, as Envoy's header matchers do, so
//! a route behaves the same here as on Istio's Envoy waypoint), and with "; " for `cookie`, which
//! HTTP/2 splits into several fields that RFC 9113 §8.2.3 says to rejoin that way. A single-valued
//! header, the common case, is compared in place; only a regular expression against a repeated
//! header needs the joined copy.

use gateway_api::experimental::httproutes::{
    HttpRouteRulesMatches, HttpRouteRulesMatchesHeaders, HttpRouteRulesMatchesHeadersType,
    HttpRouteRulesMatchesMethod, HttpRouteRulesMatchesPathType, HttpRouteRulesMatchesQueryParams,
    HttpRouteRulesMatchesQueryParamsType,
};
use http::header::{HeaderName, COOKIE};

use crate::issue::{Issue, IssueReason};

/// What matching needs from a request. `path` excludes the query; `query` is the raw query
/// string without '?'.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    /// The method as sent, e.g. "GET"; compared case-sensitively, as HTTP methods are.
    pub method: &'a str,
    /// The path as the client sent it (matching does no normalising), without the query.
    pub path: &'a str,
    /// The raw query string without '?', or None when the URI has none.
    pub query: Option<&'a str>,
    /// The request headers; repeated ones are matched as described in the module docs.
    pub headers: &'a http::HeaderMap,
    /// What only VirtualService matches ask about (scheme, authority, port, client namespace).
    pub context: RequestContext<'a>,
}

/// The parts of a request only VirtualService matches read; HTTPRoute matches ignore them, so
/// callers that only serve HTTPRoutes may leave them at their defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestContext<'a> {
    /// "http" or "https": how the request reached the waypoint.
    pub scheme: &'a str,
    /// The Host header or `:authority`, as sent (with its port, if any).
    pub authority: &'a str,
    /// The service or listener port the request arrived on.
    pub port: u16,
    /// The client's namespace, when the request came through a tunnel that names it.
    pub source_namespace: Option<&'a str>,
}

/// A compiled HTTPRouteMatch: path AND method AND every header AND every query parameter.
#[derive(Clone, Debug)]
pub struct RequestMatch {
    /// The path condition; `PathPrefix /` (every path) when the match gave none.
    pub path: PathMatch,
    /// The required method; None accepts any.
    pub method: Option<http::Method>,
    /// Header conditions, at most one per header name (later duplicates are dropped).
    pub headers: Vec<HeaderMatch>,
    /// Query parameter conditions, at most one per name (later duplicates are dropped).
    pub query_params: Vec<QueryParamMatch>,
    /// Conditions only a VirtualService can set; None for HTTPRoute matches. Boxed, so the
    /// common case stays small.
    pub extra: Option<Box<ExtraConditions>>,
}

/// VirtualService match conditions beyond what HTTPRoute matches can say.
#[derive(Clone, Debug, Default)]
pub struct ExtraConditions {
    /// The method, by exact, prefix or regex (HTTPRoute's method is exact only).
    pub method: Option<TextMatch>,
    /// The Host header or `:authority`, port included when the client sent one.
    pub authority: Option<TextMatch>,
    /// "http" or "https".
    pub scheme: Option<TextMatch>,
    /// Headers that must not match (a missing header does not match, so it satisfies these).
    pub without_headers: Vec<HeaderMatch>,
    /// The port the request arrived on.
    pub port: Option<u16>,
    /// The client's namespace.
    pub source_namespace: Option<String>,
}

/// A string condition on a request attribute (Istio's StringMatch).
#[derive(Clone, Debug)]
pub enum TextMatch {
    /// Equal to.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Full match (anchored at compile time).
    RegularExpression(regex::Regex),
}

/// How a request path is matched (HTTPPathMatch).
#[derive(Clone, Debug)]
pub enum PathMatch {
    /// Byte-exact.
    Exact(String),
    /// Element-wise prefix on '/' boundaries.
    Prefix {
        /// The prefix without its trailing '/', so "/foo" and "/foo/" behave alike;
        /// empty for "/", which matches every path.
        trimmed: String,
        /// Characters the user wrote, which is what route precedence counts.
        written_chars: usize,
    },
    /// Full match (anchored at compile time).
    RegularExpression(regex::Regex),
    /// Istio `uri.prefix`: a plain string prefix, as Envoy's prefix match (so `/foo` also
    /// matches `/foobar`), ASCII case-insensitive when `ignore_case` (`ignoreUriCase`).
    StringPrefix {
        /// The prefix as written.
        prefix: String,
        /// Compare ignoring ASCII case.
        ignore_case: bool,
    },
    /// Istio `uri.exact` with `ignoreUriCase`: equal ignoring ASCII case.
    ExactIgnoreCase(String),
}

/// One HTTPHeaderMatch: the named header must be present and its value must match.
#[derive(Clone, Debug)]
pub struct HeaderMatch {
    /// Compared case-insensitively, as HTTP header names are.
    pub name: HeaderName,
    /// The condition on the header's (possibly joined) value.
    pub value: HeaderValueMatch,
}

/// How a header value is matched.
#[derive(Clone, Debug)]
pub enum HeaderValueMatch {
    /// Byte-exact and case-sensitive.
    Exact(Vec<u8>),
    /// Full match (anchored at compile time), on bytes because header values may carry
    /// obs-text that is not UTF-8.
    RegularExpression(regex::bytes::Regex),
    /// Starts with these bytes (VirtualService `prefix`).
    Prefix(Vec<u8>),
    /// Any value, the header need only be present (a VirtualService's empty match).
    Present,
}

/// One HTTPQueryParamMatch: the named parameter must be present and its first value must match.
#[derive(Clone, Debug)]
pub struct QueryParamMatch {
    /// Compared case-sensitively and without percent-decoding, as the spec asks.
    pub name: String,
    /// The condition on the parameter's raw (not percent-decoded) value.
    pub value: QueryValueMatch,
}

/// How a query parameter value is matched.
#[derive(Clone, Debug)]
pub enum QueryValueMatch {
    /// Equal to this string, byte for byte.
    Exact(String),
    /// Full match (anchored at compile time).
    RegularExpression(regex::Regex),
    /// Starts with (VirtualService `prefix`).
    Prefix(String),
    /// Any value, the parameter need only be present (a VirtualService's empty match).
    Present,
}

/// Why a path value is refused; these mirror the validation the Gateway API CRD applies, which
/// a route read from a local folder has not been through.
#[derive(Debug, thiserror::Error)]
enum PathValueError {
    #[error("path must start with '/'")]
    NoLeadingSlash,
    #[error("path must not contain {0:?}")]
    Contains(&'static str),
    #[error("path must not end with {0:?}")]
    EndsWith(&'static str),
}

impl RequestMatch {
    /// The match Gateway API uses when a rule lists none: `PathPrefix /`.
    pub fn any() -> Self {
        Self {
            path: PathMatch::Prefix {
                trimmed: String::new(),
                written_chars: 1,
            },
            method: None,
            headers: Vec::new(),
            query_params: Vec::new(),
            extra: None,
        }
    }

    /// Compiles `m` found at `field`. Returns `None`, with an Error issue, when any part of it
    /// is invalid: the match then never matches, which fails closed instead of widening it.
    pub(crate) fn compile(
        m: &HttpRouteRulesMatches,
        field: &str,
        issues: &mut Vec<Issue>,
    ) -> Option<Self> {
        let before = issues.len();
        let path = match &m.path {
            None => Some(Self::any().path),
            Some(p) => compile_path(
                p.r#type.as_ref(),
                p.value.as_deref(),
                &format!("{field}.path"),
                issues,
            ),
        };
        let method = m.method.as_ref().map(method_of);
        let headers = compile_headers(m.headers.as_deref().unwrap_or_default(), field, issues);
        let query_params =
            compile_query_params(m.query_params.as_deref().unwrap_or_default(), field, issues);
        let failed = issues[before..]
            .iter()
            .any(|i| i.severity == crate::Severity::Error);
        match (path, failed) {
            (Some(path), false) => Some(Self {
                path,
                method,
                headers,
                query_params,
                extra: None,
            }),
            _ => None,
        }
    }

    /// The path part of route precedence: Exact (0), then RegularExpression (1), then
    /// PathPrefix (2) with the most characters; smaller sorts first.
    pub(crate) fn path_rank(&self) -> (u8, std::cmp::Reverse<usize>) {
        match &self.path {
            PathMatch::Exact(_) | PathMatch::ExactIgnoreCase(_) => (0, std::cmp::Reverse(0)),
            PathMatch::RegularExpression(_) => (1, std::cmp::Reverse(0)),
            PathMatch::Prefix { written_chars, .. } => (2, std::cmp::Reverse(*written_chars)),
            PathMatch::StringPrefix { prefix, .. } => (2, std::cmp::Reverse(prefix.len())),
        }
    }

    /// Whether `req` satisfies every condition of this match.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        self.path.matches(req.path)
            && self
                .method
                .as_ref()
                .is_none_or(|m| m.as_str() == req.method)
            && self.headers.iter().all(|h| h.matches(req.headers))
            && self.query_params.iter().all(|q| q.matches(req.query))
            && self.extra.as_deref().is_none_or(|e| e.matches(req))
    }
}

impl ExtraConditions {
    fn matches(&self, req: &RequestView<'_>) -> bool {
        let ctx = &req.context;
        self.method.as_ref().is_none_or(|m| m.matches(req.method))
            && self
                .authority
                .as_ref()
                .is_none_or(|m| m.matches(ctx.authority))
            && self.scheme.as_ref().is_none_or(|m| m.matches(ctx.scheme))
            && self.port.is_none_or(|p| p == ctx.port)
            && self
                .source_namespace
                .as_deref()
                .is_none_or(|ns| ctx.source_namespace == Some(ns))
            && !self.without_headers.iter().any(|h| h.matches(req.headers))
    }
}

impl TextMatch {
    /// Whether `value` satisfies this condition.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            TextMatch::Exact(v) => value == v,
            TextMatch::Prefix(p) => value.starts_with(p.as_str()),
            TextMatch::RegularExpression(re) => re.is_match(value),
        }
    }
}

impl PathMatch {
    /// Whether `path` (without the query) satisfies this path condition.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(value) => path == value,
            PathMatch::Prefix { trimmed, .. } => match path.strip_prefix(trimmed.as_str()) {
                Some(rest) => trimmed.is_empty() || rest.is_empty() || rest.starts_with('/'),
                None => false,
            },
            PathMatch::RegularExpression(re) => re.is_match(path),
            PathMatch::StringPrefix {
                prefix,
                ignore_case: false,
            } => path.starts_with(prefix.as_str()),
            PathMatch::StringPrefix { prefix, .. } => path
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix)),
            PathMatch::ExactIgnoreCase(value) => path.eq_ignore_ascii_case(value),
        }
    }
}

impl HeaderMatch {
    pub(crate) fn matches(&self, headers: &http::HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        let Some(first) = values.next() else {
            return false;
        };
        let separator: &[u8] = if self.name == COOKIE { b"; " } else { b"," };
        let single = values.next().is_none();
        match &self.value {
            HeaderValueMatch::Exact(expected) => {
                let mut rest = expected.as_slice();
                for (i, value) in headers.get_all(&self.name).iter().enumerate() {
                    if i > 0 {
                        match rest.strip_prefix(separator) {
                            Some(r) => rest = r,
                            None => return false,
                        }
                    }
                    match rest.strip_prefix(value.as_bytes()) {
                        Some(r) => rest = r,
                        None => return false,
                    }
                }
                rest.is_empty()
            }
            HeaderValueMatch::Present => true,
            HeaderValueMatch::Prefix(p) => first.as_bytes().starts_with(p),
            HeaderValueMatch::RegularExpression(re) if single => re.is_match(first.as_bytes()),
            HeaderValueMatch::RegularExpression(re) => {
                let joined = headers
                    .get_all(&self.name)
                    .iter()
                    .map(|v| v.as_bytes())
                    .collect::<Vec<_>>()
                    .join(separator);
                re.is_match(&joined)
            }
        }
    }
}

impl QueryParamMatch {
    fn matches(&self, query: Option<&str>) -> bool {
        // The spec lets implementations pick which of repeated parameters to match and asks
        // that they match the first one.
        let Some(value) = query.unwrap_or_default().split('&').find_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (name == self.name).then_some(value)
        }) else {
            return false;
        };
        match &self.value {
            QueryValueMatch::Exact(expected) => value == expected,
            QueryValueMatch::RegularExpression(re) => re.is_match(value),
            QueryValueMatch::Prefix(p) => value.starts_with(p.as_str()),
            QueryValueMatch::Present => true,
        }
    }
}

fn method_of(m: &HttpRouteRulesMatchesMethod) -> http::Method {
    match m {
        HttpRouteRulesMatchesMethod::Get => http::Method::GET,
        HttpRouteRulesMatchesMethod::Head => http::Method::HEAD,
        HttpRouteRulesMatchesMethod::Post => http::Method::POST,
        HttpRouteRulesMatchesMethod::Put => http::Method::PUT,
        HttpRouteRulesMatchesMethod::Delete => http::Method::DELETE,
        HttpRouteRulesMatchesMethod::Connect => http::Method::CONNECT,
        HttpRouteRulesMatchesMethod::Options => http::Method::OPTIONS,
        HttpRouteRulesMatchesMethod::Trace => http::Method::TRACE,
        HttpRouteRulesMatchesMethod::Patch => http::Method::PATCH,
    }
}

fn compile_path(
    kind: Option<&HttpRouteRulesMatchesPathType>,
    value: Option<&str>,
    field: &str,
    issues: &mut Vec<Issue>,
) -> Option<PathMatch> {
    let value = value.unwrap_or("/");
    let value_field = format!("{field}.value");
    let kind = kind.unwrap_or(&HttpRouteRulesMatchesPathType::PathPrefix);
    if *kind == HttpRouteRulesMatchesPathType::RegularExpression {
        return match full_match_regex(value) {
            Ok(re) => Some(PathMatch::RegularExpression(re)),
            Err(e) => {
                issues.push(invalid_regex(value_field, &e));
                None
            }
        };
    }
    if let Err(e) = check_path_value(value) {
        issues.push(Issue::error(
            IssueReason::Invalid,
            value_field,
            format!("{e} (got {value:?})"),
        ));
        return None;
    }
    Some(match kind {
        HttpRouteRulesMatchesPathType::Exact => PathMatch::Exact(value.to_owned()),
        _ => PathMatch::Prefix {
            trimmed: value.strip_suffix('/').unwrap_or(value).to_owned(),
            written_chars: value.chars().count(),
        },
    })
}

fn check_path_value(value: &str) -> Result<(), PathValueError> {
    if !value.starts_with('/') {
        return Err(PathValueError::NoLeadingSlash);
    }
    for bad in ["//", "/./", "/../", "%2f", "%2F", "#"] {
        if value.contains(bad) {
            return Err(PathValueError::Contains(bad));
        }
    }
    for bad in ["/..", "/."] {
        if value.ends_with(bad) {
            return Err(PathValueError::EndsWith(bad));
        }
    }
    Ok(())
}

fn compile_headers(
    headers: &[HttpRouteRulesMatchesHeaders],
    field: &str,
    issues: &mut Vec<Issue>,
) -> Vec<HeaderMatch> {
    let mut compiled: Vec<HeaderMatch> = Vec::with_capacity(headers.len());
    for (h, header) in headers.iter().enumerate() {
        let field = format!("{field}.headers[{h}]");
        let Ok(name) = HeaderName::from_bytes(header.name.as_bytes()) else {
            issues.push(Issue::error(
                IssueReason::Invalid,
                format!("{field}.name"),
                format!("invalid header name {:?}", header.name),
            ));
            continue;
        };
        // The spec: only the first entry with an equivalent (case-insensitive) name counts.
        if compiled.iter().any(|c| c.name == name) {
            issues.push(Issue::warning(
                IssueReason::Invalid,
                format!("{field}.name"),
                format!("header {name} is matched by an earlier entry; this one is ignored"),
            ));
            continue;
        }
        let value = match header.r#type {
            Some(HttpRouteRulesMatchesHeadersType::RegularExpression) => {
                match full_match_bytes_regex(&header.value) {
                    Ok(re) => HeaderValueMatch::RegularExpression(re),
                    Err(e) => {
                        issues.push(invalid_regex(format!("{field}.value"), &e));
                        continue;
                    }
                }
            }
            _ => HeaderValueMatch::Exact(header.value.as_bytes().to_vec()),
        };
        compiled.push(HeaderMatch { name, value });
    }
    compiled
}

fn compile_query_params(
    params: &[HttpRouteRulesMatchesQueryParams],
    field: &str,
    issues: &mut Vec<Issue>,
) -> Vec<QueryParamMatch> {
    let mut compiled: Vec<QueryParamMatch> = Vec::with_capacity(params.len());
    for (q, param) in params.iter().enumerate() {
        let field = format!("{field}.queryParams[{q}]");
        if param.name.is_empty() {
            issues.push(Issue::error(
                IssueReason::Invalid,
                format!("{field}.name"),
                "query parameter name is empty",
            ));
            continue;
        }
        // As for headers, only the first entry with a given name counts.
        if compiled.iter().any(|c| c.name == param.name) {
            issues.push(Issue::warning(
                IssueReason::Invalid,
                format!("{field}.name"),
                format!(
                    "query parameter {} is matched by an earlier entry; this one is ignored",
                    param.name
                ),
            ));
            continue;
        }
        let value = match param.r#type {
            Some(HttpRouteRulesMatchesQueryParamsType::RegularExpression) => {
                match full_match_regex(&param.value) {
                    Ok(re) => QueryValueMatch::RegularExpression(re),
                    Err(e) => {
                        issues.push(invalid_regex(format!("{field}.value"), &e));
                        continue;
                    }
                }
            }
            _ => QueryValueMatch::Exact(param.value.clone()),
        };
        compiled.push(QueryParamMatch {
            name: param.name.clone(),
            value,
        });
    }
    compiled
}

/// Gateway API regular expressions must match the whole value, so the user's pattern is wrapped
/// in a group (keeping its alternations inside) and anchored at both ends. The pattern is first
/// compiled alone: that reports errors against what the user wrote, and proves its parentheses
/// balance, so the wrapper cannot be escaped by a pattern like `a)|(b`.
fn anchored(pattern: &str) -> Result<String, regex::Error> {
    regex::Regex::new(pattern)?;
    Ok(format!(r"\A(?:{pattern})\z"))
}

pub(crate) fn full_match_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&anchored(pattern)?)
}

pub(crate) fn full_match_bytes_regex(pattern: &str) -> Result<regex::bytes::Regex, regex::Error> {
    regex::bytes::Regex::new(&anchored(pattern)?)
}

pub(crate) fn invalid_regex(field: String, e: &regex::Error) -> Issue {
    Issue::error(
        IssueReason::Invalid,
        field,
        format!("invalid regular expression: {e}"),
    )
}

#[cfg(test)]
mod tests;
