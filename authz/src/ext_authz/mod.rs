//! The CUSTOM action's providers: MeshConfig `extensionProviders` of type `envoyExtAuthzHttp`
//! and `envoyExtAuthzGrpc`, and the decisions around a check (which headers go to the server,
//! which of its headers go upstream or to the client, what an error means).
//!
//! The fields and their defaults are Istio's MeshConfig reference; what they do is what
//! istiod's translation into Envoy's `ext_authz` filter makes Envoy do. The waypoint does the
//! I/O (`waypoint/src/security/ext_authz/`); [`headers`] holds the header decisions.

mod headers;

pub use headers::{
    Allowed, CheckBody, HeaderPattern, HeaderPatterns, HttpCheck, HTTP_HEADERS_TO_REMOVE,
    PARTIAL_BODY_HEADER,
};

use crate::attrs::LocalReply;
use serde_json::{Map, Value};
use std::time::Duration;

/// Istio's default `timeout` (istiod writes 600 s when the field is absent).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Envoy's default `status_on_error`: 403 Forbidden.
pub const DEFAULT_STATUS_ON_ERROR: u16 = 403;

/// One ext_authz provider, compiled from the MeshConfig.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtAuthzProvider {
    /// `extensionProviders[].name`, which CUSTOM policies name.
    pub name: String,
    /// The service to call: a hostname (resolved through the folder's Services and
    /// ServiceEntries, else as an IP or DNS name) and port. Istio's `namespace/hostname` form
    /// is kept as written; [`ExtAuthzProvider::service_parts`] splits it.
    pub service: String,
    /// Its port.
    pub port: u16,
    /// HTTP or gRPC.
    pub protocol: ExtAuthzProtocol,
    /// `timeout`: how long a check may take before it counts as a failure.
    pub timeout: Duration,
    /// `pathPrefix` (HTTP): put before the request's path (and query) in the check request.
    pub path_prefix: String,
    /// `failOpen`: a failed check (unreachable server, timeout, 5xx) allows the request.
    pub fail_open: bool,
    /// `statusOnError`: the status of the answer to a failed check when not `failOpen`.
    pub status_on_error: u16,
    /// `includeRequestHeadersInCheck` (or the deprecated `includeHeadersInCheck`) (HTTP): the
    /// client's headers sent to the server besides those always sent.
    pub include_request_headers: HeaderPatterns,
    /// `includeAdditionalHeadersInCheck` (HTTP), sorted by name: fixed headers added to the
    /// check request, replacing the client's; a value may use `%REQ(header)%`.
    pub additional_headers: Vec<(String, String)>,
    /// `includeRequestBodyInCheck`: the body settings, as written.
    pub include_body: Option<BodyInCheck>,
    /// `headersToUpstreamOnAllow` (HTTP): the server's headers set on the request sent
    /// upstream when it allows.
    pub headers_to_upstream_on_allow: HeaderPatterns,
    /// `headersToDownstreamOnAllow` (HTTP): the server's headers added to the response to the
    /// client when it allows.
    pub headers_to_downstream_on_allow: HeaderPatterns,
    /// `headersToDownstreamOnDeny` (HTTP): the server's headers sent to the client when it
    /// denies; when empty, all of them but Host.
    pub headers_to_downstream_on_deny: HeaderPatterns,
}

/// Which ext_authz API the provider speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtAuthzProtocol {
    /// `envoyExtAuthzHttp`.
    Http,
    /// `envoyExtAuthzGrpc`: `envoy.service.auth.v3.Authorization/Check`.
    Grpc,
}

/// `includeRequestBodyInCheck`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyInCheck {
    /// `maxRequestBytes`: at most this many body bytes are buffered for the check.
    pub max_request_bytes: u32,
    /// `allowPartialMessage`: a longer body is cut (else the client gets 413).
    pub allow_partial_message: bool,
    /// `packAsBytes` (gRPC): the body goes in `raw_body` instead of `body`.
    pub pack_as_bytes: bool,
}

/// The HTTP statuses Envoy's `type.v3.StatusCode` defines, the only ones istiod accepts for
/// `statusOnError` (0, "Empty", is refused by Envoy's own validation).
const ENVOY_STATUS_CODES: &[u16] = &[
    100, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308,
    400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421,
    422, 423, 424, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
];

impl ExtAuthzProvider {
    /// A provider with Istio's defaults for everything but what names it.
    pub fn new(name: &str, service: &str, port: u16, protocol: ExtAuthzProtocol) -> Self {
        ExtAuthzProvider {
            name: name.to_string(),
            service: service.to_string(),
            port,
            protocol,
            timeout: DEFAULT_TIMEOUT,
            path_prefix: String::new(),
            fail_open: false,
            status_on_error: DEFAULT_STATUS_ON_ERROR,
            include_request_headers: HeaderPatterns::default(),
            additional_headers: Vec::new(),
            include_body: None,
            headers_to_upstream_on_allow: HeaderPatterns::default(),
            headers_to_downstream_on_allow: HeaderPatterns::default(),
            headers_to_downstream_on_deny: HeaderPatterns::default(),
        }
    }

    /// Reads one `extensionProviders[]` entry; `Ok(None)` when it is not an ext_authz provider
    /// (telemetry providers live in the same list). An error names the field (relative to the
    /// entry) and says what to write instead.
    pub fn parse(entry: &Value) -> Result<Option<ExtAuthzProvider>, String> {
        let Some(obj) = entry.as_object() else {
            return Err("an extension provider must be a map with a name and a provider".into());
        };
        let (kind, protocol) = if let Some(v) = field(obj, "envoyExtAuthzHttp") {
            (("envoyExtAuthzHttp", v), ExtAuthzProtocol::Http)
        } else if let Some(v) = field(obj, "envoyExtAuthzGrpc") {
            (("envoyExtAuthzGrpc", v), ExtAuthzProtocol::Grpc)
        } else {
            return Ok(None);
        };
        let name = match field(obj, "name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err("name: must be a non-empty string that CUSTOM policies name".into()),
        };
        let (label, spec) = kind;
        let spec = spec
            .as_object()
            .ok_or_else(|| format!("{label}: must be a map (service, port, …)"))?;
        let at = |f: &str| format!("{label}.{f}");
        let service = parse_service(spec).map_err(|e| format!("{}: {e}", at("service")))?;
        let port = parse_port(field(spec, "port")).map_err(|e| format!("{}: {e}", at("port")))?;
        let mut p = ExtAuthzProvider::new(&name, &service, port, protocol);
        p.read_common(spec)
            .map_err(|(f, e)| format!("{}: {e}", at(&f)))?;
        if p.protocol == ExtAuthzProtocol::Http {
            p.read_http(spec)
                .map_err(|(f, e)| format!("{}: {e}", at(&f)))?;
        }
        Ok(Some(p))
    }

    /// The fields both kinds share: timeout, failOpen, statusOnError, includeRequestBodyInCheck.
    fn read_common(&mut self, spec: &Map<String, Value>) -> Result<(), (String, String)> {
        if let Some(v) = field(spec, "timeout") {
            self.timeout = parse_timeout(v).map_err(|e| ("timeout".to_string(), e))?;
        }
        if let Some(v) = field(spec, "failOpen") {
            self.fail_open = v
                .as_bool()
                .ok_or_else(|| ("failOpen".to_string(), "must be true or false".to_string()))?;
        }
        if let Some(v) = field(spec, "statusOnError") {
            self.status_on_error =
                parse_status_on_error(v).map_err(|e| ("statusOnError".to_string(), e))?;
        }
        if let Some(v) = field(spec, "includeRequestBodyInCheck") {
            self.include_body = Some(
                parse_body(v).map_err(|(f, e)| (format!("includeRequestBodyInCheck.{f}"), e))?,
            );
        }
        Ok(())
    }

    /// The HTTP-only fields: pathPrefix and the header lists.
    fn read_http(&mut self, spec: &Map<String, Value>) -> Result<(), (String, String)> {
        if let Some(v) = field(spec, "pathPrefix") {
            self.path_prefix = parse_path_prefix(v).map_err(|e| ("pathPrefix".to_string(), e))?;
        }
        let list = |name: &str| -> Result<HeaderPatterns, (String, String)> {
            HeaderPatterns::parse(field(spec, name)).map_err(|(i, e)| (format!("{name}{i}"), e))
        };
        self.include_request_headers = list("includeRequestHeadersInCheck")?;
        if self.include_request_headers.is_empty() {
            // Istio reads the deprecated field only when the new one is not set.
            self.include_request_headers = list("includeHeadersInCheck")?;
        }
        self.headers_to_upstream_on_allow = list("headersToUpstreamOnAllow")?;
        self.headers_to_downstream_on_allow = list("headersToDownstreamOnAllow")?;
        self.headers_to_downstream_on_deny = list("headersToDownstreamOnDeny")?;
        if let Some(v) = field(spec, "includeAdditionalHeadersInCheck") {
            self.additional_headers = parse_additional_headers(v)?;
        }
        Ok(())
    }

    /// `service` split into Istio's optional namespace and the hostname:
    /// `ns/authz.ns.svc.cluster.local` → (`Some("ns")`, `authz.ns.svc.cluster.local`).
    pub fn service_parts(&self) -> (Option<&str>, &str) {
        match self.service.split_once('/') {
            Some((ns, host)) => (Some(ns), host),
            None => (None, &self.service),
        }
    }

    /// The answer when the check failed (server unreachable, timeout, a 5xx, a broken
    /// response): allowed untouched with `failOpen`, else `statusOnError` with no body.
    pub fn on_failure(&self) -> Result<Allowed, LocalReply> {
        if self.fail_open {
            Ok(Allowed::default())
        } else {
            Err(LocalReply {
                status: self.status_on_error,
                body: String::new(),
                headers: Vec::new(),
            })
        }
    }
}

/// A field by its JSON (camelCase) name or its proto (snake_case) name: Istio reads the
/// MeshConfig with protojson, which accepts both.
fn field<'a>(obj: &'a Map<String, Value>, camel: &str) -> Option<&'a Value> {
    obj.get(camel)
        .or_else(|| obj.get(&snake_case(camel)))
        .filter(|v| !v.is_null())
}

fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_service(spec: &Map<String, Value>) -> Result<String, String> {
    let Some(Value::String(s)) = field(spec, "service") else {
        return Err(
            "must name the server: a hostname such as authz.ns.svc.cluster.local (optionally \
             ns/hostname), an IP or a DNS name"
                .into(),
        );
    };
    let s = s.trim();
    let host = match s.split_once('/') {
        Some((ns, host)) if !ns.is_empty() && !host.contains('/') => host,
        Some(_) => return Err(format!("'{s}' is not <namespace>/<hostname>")),
        None => s,
    };
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']'));
    if !valid {
        return Err(format!("'{s}' is not a hostname or IP address"));
    }
    Ok(s.to_string())
}

fn parse_port(v: Option<&Value>) -> Result<u16, String> {
    let number = match v {
        Some(Value::Number(n)) => n.as_u64(),
        // protojson accepts a quoted integer; MeshConfig examples often quote the port.
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match number {
        Some(n @ 1..=65535) => Ok(n as u16),
        _ => Err(format!(
            "must be a port number in [1, 65535], found {}",
            v.map_or("nothing".to_string(), Value::to_string)
        )),
    }
}

fn parse_timeout(v: &Value) -> Result<Duration, String> {
    let text = v
        .as_str()
        .ok_or("must be a duration string such as \"0.5s\" or \"2s\"")?;
    let d = parse_duration(text)?;
    // A zero timeout would make every check fail; Envoy's async client reads it as "none",
    // and we never wait forever, so it means the default.
    Ok(if d.is_zero() { DEFAULT_TIMEOUT } else { d })
}

/// A protojson Duration (`"0.5s"`) or a Go duration (`"500ms"`, `"1m30s"`): Istio documents
/// the first and users write both.
fn parse_duration(text: &str) -> Result<Duration, String> {
    const UNITS: [(&str, f64); 7] = [
        ("ns", 1e-9),
        ("us", 1e-6),
        ("µs", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
    ];
    let bad = || format!("'{text}' is not a duration such as \"0.5s\", \"250ms\" or \"2s\"");
    let mut seconds = 0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(split);
        let number: f64 = number.parse().map_err(|_| bad())?;
        // Longest unit first, so that "ms" is not read as "m".
        let (unit, scale) = UNITS
            .iter()
            .filter(|(u, _)| tail.starts_with(u))
            .max_by_key(|(u, _)| u.len())
            .ok_or_else(bad)?;
        seconds += number * scale;
        rest = &tail[unit.len()..];
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

fn parse_status_on_error(v: &Value) -> Result<u16, String> {
    let text = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return Err("must be an HTTP status written as a string, e.g. \"500\"".into()),
    };
    match text.parse::<u16>() {
        Ok(code) if ENVOY_STATUS_CODES.contains(&code) => Ok(code),
        _ => Err(format!(
            "'{text}' is not an HTTP status Envoy supports (e.g. 403, 500, 503)"
        )),
    }
}

fn parse_path_prefix(v: &Value) -> Result<String, String> {
    let s = v.as_str().ok_or("must be a string starting with '/'")?;
    if !s.starts_with('/') {
        return Err(format!("must begin with '/', found '{s}'"));
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '#')
    {
        return Err(format!(
            "'{s}' is not a valid URL path (no spaces, control characters or '#')"
        ));
    }
    Ok(s.to_string())
}

fn parse_body(v: &Value) -> Result<BodyInCheck, (String, String)> {
    let obj = v.as_object().ok_or_else(|| {
        (
            String::new(),
            "must be a map (maxRequestBytes, allowPartialMessage, packAsBytes)".to_string(),
        )
    })?;
    let flag = |name: &str| -> Result<bool, (String, String)> {
        field(obj, name).map_or(Ok(false), |v| {
            v.as_bool()
                .ok_or_else(|| (name.to_string(), "must be true or false".to_string()))
        })
    };
    let max_request_bytes = match field(obj, "maxRequestBytes") {
        None => 0,
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                (
                    "maxRequestBytes".to_string(),
                    "must be a byte count".to_string(),
                )
            })?,
    };
    Ok(BodyInCheck {
        max_request_bytes,
        allow_partial_message: flag("allowPartialMessage")?,
        pack_as_bytes: flag("packAsBytes")?,
    })
}

fn parse_additional_headers(v: &Value) -> Result<Vec<(String, String)>, (String, String)> {
    let field_name = "includeAdditionalHeadersInCheck";
    let obj = v.as_object().ok_or_else(|| {
        (
            field_name.to_string(),
            "must be a map of header name to value".to_string(),
        )
    })?;
    let mut out = Vec::with_capacity(obj.len());
    for (name, value) in obj {
        let Some(value) = value.as_str() else {
            return Err((
                format!("{field_name}.{name}"),
                "must be a string value".to_string(),
            ));
        };
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err((
                format!("{field_name}.{name}"),
                "is not a valid header name".to_string(),
            ));
        }
        out.push((name.to_ascii_lowercase(), value.to_string()));
    }
    // istiod sorts them, which fixes the order the server sees.
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests;
