//! The CORS filter: which cross-origin requests a rule admits, and the `Access-Control-*`
//! headers that tell a browser so. Follows the Gateway API HTTPCORSFilter: when credentials
//! are allowed no `*` is ever sent back (the request's origin, method or headers are echoed
//! instead), as browsers reject a credentialed response carrying a wildcard.

use gateway_api::experimental::httproutes::HttpRouteRulesFiltersCors;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
};
use http::{HeaderName, HeaderValue};

use crate::issue::{Issue, IssueReason};
use crate::request_match::TextMatch;

/// A compiled CORS filter.
#[derive(Clone, Debug, PartialEq)]
pub struct Cors {
    origins: Vec<OriginPattern>,
    methods: Listed,
    headers: Listed,
    expose_headers: Listed,
    /// None sends no `Access-Control-Max-Age` (a VirtualService without `maxAge`, as Envoy).
    max_age: Option<HeaderValue>,
    allow_credentials: bool,
    /// A preflight from an origin that is not allowed goes to the backend instead of being
    /// refused (Istio's `unmatchedPreflights: FORWARD`, its default).
    forward_unmatched_preflights: bool,
}

/// The Gateway API default for `maxAge`, in seconds.
const DEFAULT_MAX_AGE: i32 = 5;

/// One entry of allowOrigins.
#[derive(Clone, Debug, PartialEq)]
enum OriginPattern {
    /// `*`: every origin.
    Any,
    Origin {
        scheme: String,
        host: HostPattern,
        port: u16,
    },
    /// A VirtualService `allowOrigins` prefix or regex, tested on the origin as sent.
    Text(OriginText),
}

/// A [`TextMatch`] on the whole origin, compared by what was written.
#[derive(Clone, Debug)]
struct OriginText(TextMatch);

impl PartialEq for OriginText {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (TextMatch::Exact(a), TextMatch::Exact(b))
            | (TextMatch::Prefix(a), TextMatch::Prefix(b)) => a == b,
            (TextMatch::RegularExpression(a), TextMatch::RegularExpression(b)) => {
                a.as_str() == b.as_str()
            }
            _ => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum HostPattern {
    Exact(String),
    /// `*` by itself: any host.
    Any,
    /// `*.example.com`, stored as ".example.com": any host ending so, whatever number of
    /// labels the `*` stands for.
    Suffix(String),
}

/// allowMethods, allowHeaders or exposeHeaders: the names joined once for the response header,
/// and whether `*` was among them.
#[derive(Clone, Debug, Default, PartialEq)]
struct Listed {
    wildcard: bool,
    names: Vec<String>,
    joined: Option<HeaderValue>,
}

type Headers = Vec<(HeaderName, HeaderValue)>;

impl Cors {
    /// Whether a preflight from an origin that is not allowed is forwarded to the backend
    /// rather than refused by the waypoint.
    pub fn forwards_unmatched_preflights(&self) -> bool {
        self.forward_unmatched_preflights
    }

    /// The headers answering a preflight request (OPTIONS with `Access-Control-Request-Method`)
    /// from `origin`, or None when the origin is not allowed: the proxy then answers the
    /// preflight without CORS headers, which makes the browser refuse the real request.
    /// `requested_method` and `requested_headers` are the request's
    /// `Access-Control-Request-Method` and `Access-Control-Request-Headers`.
    pub fn preflight_response(
        &self,
        origin: &str,
        requested_method: Option<&str>,
        requested_headers: Option<&str>,
    ) -> Option<Headers> {
        let mut out = self.response_headers(origin);
        if out.is_empty() {
            return None;
        }
        if let Some(methods) = self
            .methods
            .answer(requested_method, self.allow_credentials)
        {
            out.push((ACCESS_CONTROL_ALLOW_METHODS, methods));
        }
        if let Some(headers) = self
            .headers
            .answer(requested_headers, self.allow_credentials)
        {
            out.push((ACCESS_CONTROL_ALLOW_HEADERS, headers));
        }
        if let Some(max_age) = &self.max_age {
            out.push((ACCESS_CONTROL_MAX_AGE, max_age.clone()));
        }
        Some(out)
    }

    /// The headers added to the backend's response to a request from `origin`; empty when the
    /// origin is not allowed.
    pub fn response_headers(&self, origin: &str) -> Headers {
        let Some(allowed) = self.allowed_origin(origin) else {
            return Vec::new();
        };
        let mut out = vec![(ACCESS_CONTROL_ALLOW_ORIGIN, allowed)];
        if self.allow_credentials {
            out.push((
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        // A wildcard cannot name the headers of a response not yet seen, so with credentials
        // (where `*` is not allowed) only the headers listed by name are exposed.
        let expose = match (&self.expose_headers, self.allow_credentials) {
            (l, false) if l.wildcard => Some(HeaderValue::from_static("*")),
            (l, _) => l.joined.clone(),
        };
        if let Some(expose) = expose {
            out.push((ACCESS_CONTROL_EXPOSE_HEADERS, expose));
        }
        out
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, or None when it is not allowed.
    /// The origin is always echoed: that is correct for every pattern and mandatory with
    /// credentials.
    fn allowed_origin(&self, origin: &str) -> Option<HeaderValue> {
        let parsed = parse_origin(origin);
        let allowed = self.origins.iter().any(|p| match (p, &parsed) {
            (OriginPattern::Any, _) => true,
            (OriginPattern::Text(text), _) => text.0.matches(origin),
            (_, None) => false,
            (OriginPattern::Origin { scheme, host, port }, Some((o_scheme, o_host, o_port))) => {
                scheme == o_scheme && port == o_port && host.matches(o_host)
            }
        });
        allowed
            .then(|| HeaderValue::from_str(origin).ok())
            .flatten()
    }

    /// Compiles the `cors` field at `field` (e.g. "spec.rules[0].filters[1].cors").
    pub(crate) fn compile(
        spec: &HttpRouteRulesFiltersCors,
        field: &str,
        issues: &mut Vec<Issue>,
    ) -> Self {
        let mut origins = Vec::new();
        for (i, origin) in spec.allow_origins.iter().flatten().enumerate() {
            match compile_origin(origin) {
                Some(pattern) => origins.push(pattern),
                None => issues.push(Issue::error(
                    IssueReason::Invalid,
                    format!("{field}.allowOrigins[{i}]"),
                    format!(
                        "origin {origin:?} is not `*` or scheme://host[:port] with scheme http \
                         or https; it is ignored"
                    ),
                )),
            }
        }
        let max_age = match spec.max_age.unwrap_or(DEFAULT_MAX_AGE) {
            age if age >= 0 => age,
            age => {
                issues.push(Issue::error(
                    IssueReason::Invalid,
                    format!("{field}.maxAge"),
                    format!("maxAge {age} is negative; using {DEFAULT_MAX_AGE}"),
                ));
                DEFAULT_MAX_AGE
            }
        };
        Self {
            origins,
            methods: Listed::compile(
                spec.allow_methods.as_deref(),
                &format!("{field}.allowMethods"),
                issues,
            ),
            headers: Listed::compile(
                spec.allow_headers.as_deref(),
                &format!("{field}.allowHeaders"),
                issues,
            ),
            expose_headers: Listed::compile(
                spec.expose_headers.as_deref(),
                &format!("{field}.exposeHeaders"),
                issues,
            ),
            max_age: Some(HeaderValue::from(max_age)),
            allow_credentials: spec.allow_credentials.unwrap_or(false),
            forward_unmatched_preflights: false,
        }
    }
}

/// What a VirtualService `corsPolicy` says, in the shape [`Cors::compile_parts`] takes.
pub(crate) struct CorsParts<'a> {
    /// allowOrigins: `*`, `scheme://host[:port]` patterns, or whole-origin text matches.
    pub origins: Vec<(String, Result<&'a str, TextMatch>)>,
    pub methods: &'a [String],
    pub headers: &'a [String],
    pub expose_headers: &'a [String],
    pub max_age_seconds: Option<i32>,
    pub allow_credentials: bool,
    pub forward_unmatched_preflights: bool,
}

impl Cors {
    /// Compiles a VirtualService `corsPolicy` at `field`: an origin given as text is parsed
    /// like a Gateway API origin (`Ok`), a prefix or regex is tested on the whole origin.
    pub(crate) fn compile_parts(
        parts: CorsParts<'_>,
        field: &str,
        issues: &mut Vec<Issue>,
    ) -> Self {
        let mut origins = Vec::new();
        for (at, origin) in parts.origins {
            match origin {
                Err(text) => origins.push(OriginPattern::Text(OriginText(text))),
                Ok(origin) => match compile_origin(origin) {
                    Some(pattern) => origins.push(pattern),
                    None => issues.push(Issue::error(
                        IssueReason::Invalid,
                        format!("{field}.{at}"),
                        format!("origin {origin:?} is not `*` or scheme://host[:port]; ignored"),
                    )),
                },
            }
        }
        Self {
            origins,
            methods: Listed::compile(
                Some(parts.methods),
                &format!("{field}.allowMethods"),
                issues,
            ),
            headers: Listed::compile(
                Some(parts.headers),
                &format!("{field}.allowHeaders"),
                issues,
            ),
            expose_headers: Listed::compile(
                Some(parts.expose_headers),
                &format!("{field}.exposeHeaders"),
                issues,
            ),
            max_age: parts.max_age_seconds.map(|s| HeaderValue::from(s.max(0))),
            allow_credentials: parts.allow_credentials,
            forward_unmatched_preflights: parts.forward_unmatched_preflights,
        }
    }
}

impl Listed {
    fn compile(values: Option<&[String]>, field: &str, issues: &mut Vec<Issue>) -> Self {
        let mut listed = Listed::default();
        for (i, value) in values.unwrap_or_default().iter().enumerate() {
            if value == "*" {
                listed.wildcard = true;
            } else if value.is_empty() || HeaderName::from_bytes(value.as_bytes()).is_err() {
                // Methods and header names are both HTTP tokens, which is what a header name is.
                issues.push(Issue::error(
                    IssueReason::Invalid,
                    format!("{field}[{i}]"),
                    format!("{value:?} is not an HTTP token; it is ignored"),
                ));
            } else if !listed.names.contains(value) {
                listed.names.push(value.clone());
            }
        }
        if !listed.names.is_empty() {
            listed.joined = HeaderValue::from_str(&listed.names.join(", ")).ok();
        }
        listed
    }

    /// The allow-methods or allow-headers value for a preflight that asked for `requested`.
    /// A wildcard echoes what was asked (always valid, and required with credentials); with
    /// nothing asked it is `*` unless credentials forbid that, and then it is left out.
    fn answer(&self, requested: Option<&str>, credentials: bool) -> Option<HeaderValue> {
        if !self.wildcard {
            return self.joined.clone();
        }
        match requested.map(str::trim).filter(|r| !r.is_empty()) {
            Some(requested) => HeaderValue::from_str(requested).ok(),
            None if credentials => None,
            None => Some(HeaderValue::from_static("*")),
        }
    }
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(exact) => exact == host,
            HostPattern::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        }
    }
}

fn compile_origin(origin: &str) -> Option<OriginPattern> {
    if origin == "*" {
        return Some(OriginPattern::Any);
    }
    let (scheme, host, port) = parse_origin(origin)?;
    let host = if host == "*" {
        HostPattern::Any
    } else if let Some(suffix) = host.strip_prefix('*') {
        // Only a leading "*." is a wildcard; "*foo.com" or a '*' elsewhere is not an origin.
        if !suffix.starts_with('.') || suffix.contains('*') {
            return None;
        }
        HostPattern::Suffix(suffix.to_owned())
    } else if host.contains('*') {
        return None;
    } else {
        HostPattern::Exact(host)
    };
    Some(OriginPattern::Origin { scheme, host, port })
}

/// Splits `scheme://host[:port]` into lowercase scheme and host and the port, filling in the
/// default port of http and https, as origin matching compares them so.
fn parse_origin(origin: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    // An IPv6 literal keeps its colons inside brackets; only a colon after them starts a port.
    let port_colon = match rest.rfind(']') {
        Some(end) => rest[end..].find(':').map(|c| c + end),
        None => rest.rfind(':'),
    };
    let (host, port) = match port_colon {
        Some(c) => (&rest[..c], rest[c + 1..].parse::<u16>().ok()?),
        None => (rest, default_port),
    };
    if host.is_empty() || host.contains('/') {
        return None;
    }
    Some((scheme, host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests;
