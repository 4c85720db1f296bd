//! Which headers cross the ext_authz boundary, as Envoy's HTTP `ext_authz` service does with
//! the matchers istiod generates: what the check request carries, and which of the server's
//! headers reach the upstream request or the client.

use super::ExtAuthzProvider;
use crate::attrs::{HeaderEdit, LocalReply};
use http::HeaderMap;
use serde_json::Value;

/// The header an HTTP ext_authz server lists, comma-separated, the request headers to remove
/// before the request goes upstream (Envoy's `x-envoy-auth-headers-to-remove`).
pub const HTTP_HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// The header telling the server whether the body it got was cut at `maxRequestBytes`
/// (Envoy's `x-envoy-auth-partial-body`), sent when `includeRequestBodyInCheck` is set.
pub const PARTIAL_BODY_HEADER: &str = "x-envoy-auth-partial-body";

/// Headers that describe one hop, never copied between the client, the server and upstream.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

/// One entry of a MeshConfig header list, matched case-insensitively as istiod writes it:
/// `x-*` a prefix, `*-id` a suffix, anything else the exact name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderPattern {
    /// The whole name.
    Exact(String),
    /// The name starts with this (the entry ended with `*`).
    Prefix(String),
    /// The name ends with this (the entry started with `*`).
    Suffix(String),
}

/// A MeshConfig header list (`headersToUpstreamOnAllow`, …); empty when not written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderPatterns(pub Vec<HeaderPattern>);

impl HeaderPattern {
    /// Reads one entry; a lone `*` is refused as istiod refuses it.
    pub fn parse(entry: &str) -> Result<HeaderPattern, String> {
        let e = entry.trim().to_ascii_lowercase();
        if e == "*" {
            return Err(
                "a single \"*\" is not supported: use a prefix (\"x-*\") or a suffix (\"*-id\")"
                    .into(),
            );
        }
        Ok(if let Some(suffix) = e.strip_prefix('*') {
            HeaderPattern::Suffix(suffix.to_string())
        } else if let Some(prefix) = e.strip_suffix('*') {
            HeaderPattern::Prefix(prefix.to_string())
        } else {
            HeaderPattern::Exact(e)
        })
    }

    /// Whether the header `name` (lower case, as `http` stores it) matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            HeaderPattern::Exact(e) => name.eq_ignore_ascii_case(e),
            HeaderPattern::Prefix(p) => name
                .get(..p.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(p)),
            HeaderPattern::Suffix(s) => name
                .len()
                .checked_sub(s.len())
                .and_then(|start| name.get(start..))
                .is_some_and(|t| t.eq_ignore_ascii_case(s)),
        }
    }
}

impl HeaderPatterns {
    /// Reads a list field; the error carries the entry's index (`[2]`, or `""` when the field
    /// is not a list) and what is wrong.
    pub fn parse(v: Option<&Value>) -> Result<HeaderPatterns, (String, String)> {
        let Some(v) = v else {
            return Ok(HeaderPatterns::default());
        };
        let items = v.as_array().ok_or_else(|| {
            (
                String::new(),
                "must be a list of header names or patterns".to_string(),
            )
        })?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let text = item
                .as_str()
                .ok_or_else(|| (format!("[{i}]"), "must be a header name".to_string()))?;
            out.push(HeaderPattern::parse(text).map_err(|e| (format!("[{i}]"), e))?);
        }
        Ok(HeaderPatterns(out))
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any entry matches the header `name`.
    pub fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|p| p.matches(name))
    }
}

/// The HTTP check request: the client's method, the prefixed path, and the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    /// The client request's method (Envoy copies it).
    pub method: String,
    /// `pathPrefix` + the client's path with its query.
    pub path: String,
    /// Every header, `host` and `content-length: 0` first.
    pub headers: Vec<(String, String)>,
}

/// The part of the client's body a check carries (`includeRequestBodyInCheck`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckBody<'b> {
    /// The bytes sent.
    pub bytes: &'b [u8],
    /// Whether they were cut at `maxRequestBytes`.
    pub partial: bool,
    /// `packAsBytes`: a gRPC check sends them as `raw_body`, not as the UTF-8 `body`.
    pub as_bytes: bool,
}

/// What an allowing server asks of the request and its response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowed {
    /// Edits to the request sent upstream, in order (sets first, then removals).
    pub upstream: Vec<HeaderEdit>,
    /// The request's new path and query, when the server changed query parameters (gRPC).
    pub path: Option<String>,
    /// Headers added to the response sent to the client.
    pub downstream: Vec<(String, String)>,
}

impl ExtAuthzProvider {
    /// The HTTP check request for a client request, as Envoy's HTTP ext_authz service builds
    /// it: Host, method, path (after `pathPrefix`) and `Authorization` always; the headers
    /// `includeRequestHeadersInCheck` matches (a repeated header's values joined by `,`);
    /// `content-length` of the body sent (0 without `includeRequestBodyInCheck`) and
    /// [`PARTIAL_BODY_HEADER`] with one; `includeAdditionalHeadersInCheck`, replacing any
    /// client header of the same name; `x-envoy-internal` and `x-envoy-expected-rq-timeout-ms`
    /// last, as Envoy 1.40 sends them.
    pub fn http_check(
        &self,
        method: &str,
        authority: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Option<CheckBody<'_>>,
    ) -> HttpCheck {
        let length = body.map_or(0, |b| b.bytes.len());
        let mut out = vec![
            ("host".to_string(), authority.to_string()),
            ("content-length".to_string(), length.to_string()),
        ];
        for name in headers.keys() {
            let n = name.as_str();
            let wanted = n == "authorization" || self.include_request_headers.matches(n);
            if !wanted || n == "host" || n == "content-length" || HOP_BY_HOP.contains(&n) {
                continue;
            }
            out.push((n.to_string(), joined(headers, n)));
        }
        if let Some(b) = body {
            out.push((PARTIAL_BODY_HEADER.to_string(), b.partial.to_string()));
        }
        let lookup = |name: &str| match name {
            ":method" => method.to_string(),
            ":path" => path_and_query.to_string(),
            ":authority" | "host" => authority.to_string(),
            other => joined(headers, other),
        };
        for (name, template) in &self.additional_headers {
            let value = expand_request_operators(template, &lookup);
            out.retain(|(n, _)| n != name);
            out.push((name.clone(), value));
        }
        // What Envoy's async client adds to every call it makes to a cluster.
        for (name, value) in [
            ("x-envoy-internal", "true".to_string()),
            (
                "x-envoy-expected-rq-timeout-ms",
                self.timeout.as_millis().to_string(),
            ),
        ] {
            if !out.iter().any(|(n, _)| n == name) {
                out.push((name.to_string(), value));
            }
        }
        HttpCheck {
            method: method.to_string(),
            path: format!("{}{}", self.path_prefix, path_and_query),
            headers: out,
        }
    }

    /// The body a check carries: `None` without `includeRequestBodyInCheck`; a body longer than
    /// `maxRequestBytes` is cut with `allowPartialMessage`, else answered 413 as Envoy does.
    pub fn check_body<'b>(&self, body: &'b [u8]) -> Result<Option<CheckBody<'b>>, LocalReply> {
        let Some(settings) = &self.include_body else {
            return Ok(None);
        };
        let max = settings.max_request_bytes as usize;
        let carried = |bytes, partial| CheckBody {
            bytes,
            partial,
            as_bytes: settings.pack_as_bytes,
        };
        if max == 0 || body.len() <= max {
            return Ok(Some(carried(body, false)));
        }
        if settings.allow_partial_message {
            return Ok(Some(carried(&body[..max], true)));
        }
        Err(LocalReply {
            status: 413,
            body: "Payload Too Large".to_string(),
            headers: Vec::new(),
        })
    }

    /// What an HTTP server's answer means: `Ok(Ok(_))` allowed (status 200 only), `Ok(Err(_))`
    /// denied with the server's status, body and the headers `headersToDownstreamOnDeny`
    /// lets through, `Err(_)` a failed check (a 5xx, as Envoy reads it), for
    /// [`ExtAuthzProvider::on_failure`].
    pub fn http_answer(
        &self,
        status: u16,
        headers: &HeaderMap,
        body: String,
    ) -> Result<Result<Allowed, LocalReply>, String> {
        if (500..600).contains(&status) {
            return Err(format!("the server answered {status}"));
        }
        if status == 200 {
            return Ok(Ok(self.http_allowed(headers)));
        }
        let mut reply_headers = Vec::new();
        for name in headers.keys() {
            let n = name.as_str();
            if n == HTTP_HEADERS_TO_REMOVE
                || HOP_BY_HOP.contains(&n)
                || matches!(n, "content-length" | "date" | "server")
                || !self.to_client_on_deny(n)
            {
                continue;
            }
            for v in headers.get_all(name) {
                reply_headers.push((n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()));
            }
        }
        Ok(Err(LocalReply {
            status,
            body,
            headers: reply_headers,
        }))
    }

    /// An empty `headersToDownstreamOnDeny` lets every header but Host through; a list lets
    /// its matches through with Envoy's defaults (Location, WWW-Authenticate).
    fn to_client_on_deny(&self, name: &str) -> bool {
        if self.headers_to_downstream_on_deny.is_empty() {
            name != "host"
        } else {
            matches!(name, "location" | "www-authenticate")
                || self.headers_to_downstream_on_deny.matches(name)
        }
    }

    fn http_allowed(&self, headers: &HeaderMap) -> Allowed {
        let mut allowed = Allowed::default();
        for (name, value) in headers {
            let n = name.as_str();
            if n == HTTP_HEADERS_TO_REMOVE || HOP_BY_HOP.contains(&n) {
                continue;
            }
            let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
            if self.headers_to_upstream_on_allow.matches(n) {
                // Envoy sets each in turn: of a repeated header, the last value wins.
                allowed
                    .upstream
                    .retain(|e| !matches!(e, HeaderEdit::Set(x, _) if x == n));
                allowed
                    .upstream
                    .push(HeaderEdit::Set(n.to_string(), v.clone()));
            }
            if self.headers_to_downstream_on_allow.matches(n) {
                allowed.downstream.push((n.to_string(), v));
            }
        }
        for value in headers.get_all(HTTP_HEADERS_TO_REMOVE) {
            let list = String::from_utf8_lossy(value.as_bytes()).into_owned();
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if removable(name) {
                    allowed
                        .upstream
                        .push(HeaderEdit::Remove(name.to_ascii_lowercase()));
                }
            }
        }
        allowed
    }
}

/// Pseudo headers and Host may not be removed: the request would be malformed (Envoy).
pub(crate) fn removable(name: &str) -> bool {
    !name.starts_with(':') && !name.eq_ignore_ascii_case("host")
}

/// A header's values joined by `,`, as Envoy's CheckRequest map holds a repeated header.
fn joined(headers: &HeaderMap, name: &str) -> String {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    values.join(",")
}

/// Replaces each `%REQ(name)%` in an `includeAdditionalHeadersInCheck` value by the client's
/// header as `lookup` finds it (empty when absent); Envoy evaluates these command operators
/// there too. Other text, including other operators, is kept as written.
fn expand_request_operators(template: &str, lookup: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("%REQ(") {
        let after = &rest[start + 5..];
        let Some(end) = after.find(")%") else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str(&lookup(&after[..end].trim().to_ascii_lowercase()));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}
