//! Judging one response against a case: sections 4.2 (gateway) and 5 (mesh) of the case file.
//! Pure functions of the case and what came back, so each rule has a table test.

use crate::cases::{Case, ExpectedRequest};
use bytes::Bytes;
use serde::Deserialize;
use std::collections::BTreeMap;

/// One HTTP response as the client saw it.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub status: u16,
    /// "HTTP/1.1", "HTTP/2.0", as Go's `resp.Proto` spells it.
    pub protocol: String,
    /// Header name (lower case) and value, in arrival order; a repeated name has several entries.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Observed {
    /// Every value of a header (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn header_joined(&self, name: &str) -> Option<String> {
        let values = self.header_values(name);
        (!values.is_empty()).then(|| values.join(","))
    }

    /// The echo backend's report, or an empty one (method = the method sent) when the body is
    /// not the echo's JSON: that is what a proxy-generated answer looks like (4.2 b).
    pub fn echo(&self, sent_method: &str) -> Result<EchoData, String> {
        if self.header_values("content-type").first() == Some(&"application/json") {
            serde_json::from_slice(&self.body).map_err(|e| {
                format!(
                    "response claims application/json but is not echo JSON ({e}): {}",
                    String::from_utf8_lossy(&self.body)
                )
            })
        } else {
            Ok(EchoData {
                method: sent_method.to_owned(),
                ..EchoData::default()
            })
        }
    }
}

/// What the echo backend reports (upstream echo-basic's JSON).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EchoData {
    pub path: String,
    pub host: String,
    pub method: String,
    pub proto: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub namespace: String,
    pub pod: String,
    #[serde(rename = "httpPort")]
    pub http_port: String,
    pub tls: Option<EchoTls>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EchoTls {
    #[serde(rename = "serverName")]
    pub server_name: String,
    #[serde(rename = "peerCertificates")]
    pub peer_certificates: Vec<String>,
}

impl EchoData {
    fn header_joined(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.join(","))
    }
}

/// The expected request of a case: `expectedRequest`, or the request itself when absent
/// (section 3).
pub fn expected_request(case: &Case) -> ExpectedRequest {
    match &case.expected_request {
        Some(e) => e.clone(),
        None => {
            let r = &case.request;
            ExpectedRequest {
                host: r.host.clone(),
                method: r.method.clone(),
                path: r.path.clone(),
                headers: r.headers.clone(),
                absent_headers: Vec::new(),
                http_port: None,
                sni: r.sni.clone(),
                client_cert: r.client_cert.clone(),
            }
        }
    }
}

pub fn is_redirect(status: u16) -> bool {
    matches!(status, 300..=305 | 307 | 308)
}

/// 4.2 a: the status (408 and 504 stand in for each other) and the protocol.
fn judge_status(case: &Case, resp: &Observed) -> Result<(), String> {
    let codes = &case.response.status_codes;
    let timeout_like = |c: u16| c == 408 || c == 504;
    let ok = codes.contains(&resp.status)
        || (timeout_like(resp.status) && codes.iter().any(|c| timeout_like(*c)));
    if !ok {
        return Err(format!(
            "status {} not in expected {:?}{}",
            resp.status,
            codes,
            body_hint(resp)
        ));
    }
    if let Some(protocol) = &case.response.protocol {
        if &resp.protocol != protocol {
            return Err(format!("protocol {} != expected {protocol}", resp.protocol));
        }
    }
    Ok(())
}

fn body_hint(resp: &Observed) -> String {
    if resp.body.is_empty() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&resp.body);
    let short: String = text.chars().take(200).collect();
    format!(" (body: {short})")
}

/// Section 4.2: judges one final response of a driver=gateway case. `scheme` is the scheme
/// the request was sent with; `method` the method sent.
pub fn judge_gateway(case: &Case, scheme: &str, resp: &Observed) -> Result<(), String> {
    judge_status(case, resp)?;
    let expected = expected_request(case);
    if resp.status == 200 || resp.status == 204 {
        let sent_method = case.request.method.as_deref().unwrap_or("GET");
        let echo = resp.echo(sent_method)?;
        judge_echo(case, &expected, &echo, resp)?;
    } else if is_redirect(resp.status) {
        if let Some(redirect) = &case.redirect {
            let location = resp
                .header_values("location")
                .first()
                .copied()
                .ok_or_else(|| format!("redirect {} without a Location header", resp.status))?;
            let actual = Location::parse(location)
                .ok_or_else(|| format!("unparseable Location {location:?}"))?;
            let request_path = case.request.path.as_deref().unwrap_or("/");
            judge_redirect(redirect, scheme, request_path, &actual)?;
        }
    }
    Ok(())
}

fn judge_echo(
    case: &Case,
    expected: &ExpectedRequest,
    echo: &EchoData,
    resp: &Observed,
) -> Result<(), String> {
    if let Some(host) = expected.host.as_deref().filter(|h| !h.is_empty()) {
        if echo.host != host {
            return Err(format!(
                "backend saw host {:?}, expected {host:?}",
                echo.host
            ));
        }
    }
    let path = expected.path.as_deref().unwrap_or("");
    if echo.path != path {
        return Err(format!(
            "backend saw path {:?}, expected {path:?}",
            echo.path
        ));
    }
    let method = expected.method.as_deref().unwrap_or("GET");
    if echo.method != method {
        return Err(format!(
            "backend saw method {}, expected {method}",
            echo.method
        ));
    }
    let namespace = case.namespace.as_deref().unwrap_or("");
    if echo.namespace != namespace {
        return Err(format!(
            "answered from namespace {:?}, expected {namespace:?}",
            echo.namespace
        ));
    }
    judge_request_headers(expected, echo)?;
    if let Some(port) = &expected.http_port {
        if &echo.http_port != port {
            return Err(format!(
                "backend httpPort {:?}, expected {port:?}",
                echo.http_port
            ));
        }
    }
    judge_response_headers(case, resp, false)?;
    judge_backend(case, echo)?;
    if let Some(sni) = &expected.sni {
        let seen = echo.tls.as_ref().map(|t| t.server_name.as_str());
        if seen != Some(sni.as_str()) {
            return Err(format!("backend saw SNI {seen:?}, expected {sni:?}"));
        }
    }
    if let Some(cert) = &expected.client_cert {
        let seen = echo
            .tls
            .as_ref()
            .is_some_and(|t| t.peer_certificates.contains(cert));
        if !seen {
            return Err("backend did not see the expected client certificate".into());
        }
    }
    Ok(())
}

fn judge_request_headers(expected: &ExpectedRequest, echo: &EchoData) -> Result<(), String> {
    for (name, want) in &expected.headers {
        // Host is not a header in the echo's map (Go moves it to `host`); a case that sets it
        // in `headers` means the Host header, which `host` covers.
        if name.eq_ignore_ascii_case("host") {
            continue;
        }
        match echo.header_joined(name) {
            Some(got) if &got == want => {}
            Some(got) => {
                return Err(format!(
                    "backend saw header {name}: {got:?}, expected {want:?}"
                ))
            }
            None => {
                return Err(format!(
                    "backend did not see header {name} (expected {want:?})"
                ))
            }
        }
    }
    for name in &expected.absent_headers {
        if let Some(got) = echo.header_joined(name) {
            return Err(format!(
                "backend saw header {name}: {got:?}, expected it absent"
            ));
        }
    }
    Ok(())
}

/// `first_value_only`: the mesh driver compares only the first value (section 5).
fn judge_response_headers(
    case: &Case,
    resp: &Observed,
    first_value_only: bool,
) -> Result<(), String> {
    let squeeze = |s: &str| -> String {
        if case.response.ignore_whitespace {
            s.chars().filter(|c| *c != ' ').collect()
        } else {
            s.to_owned()
        }
    };
    let actual = |name: &str| -> Option<String> {
        if first_value_only {
            resp.header_values(name).first().map(|v| (*v).to_owned())
        } else {
            resp.header_joined(name)
        }
    };
    for (name, allowed) in &case.response.valid_header_values {
        let got = actual(name)
            .ok_or_else(|| format!("response lacks header {name} (allowed {allowed:?})"))?;
        if !allowed.iter().any(|a| squeeze(a) == squeeze(&got)) {
            return Err(format!(
                "response header {name}: {got:?} not one of {allowed:?}"
            ));
        }
    }
    for (name, want) in &case.response.headers {
        let got = actual(name)
            .ok_or_else(|| format!("response lacks header {name} (expected {want:?})"))?;
        if squeeze(&got) != squeeze(want) {
            return Err(format!(
                "response header {name}: {got:?}, expected {want:?}"
            ));
        }
    }
    for name in &case.response.absent_headers {
        if let Some(got) = resp.header_joined(name) {
            return Err(format!(
                "response has header {name}: {got:?}, expected it absent"
            ));
        }
    }
    Ok(())
}

fn judge_backend(case: &Case, echo: &EchoData) -> Result<(), String> {
    let backend = case.backend.as_deref().unwrap_or("");
    if !echo.pod.starts_with(backend) {
        return Err(format!(
            "answered by pod {:?}, expected one of {backend:?}",
            echo.pod
        ));
    }
    Ok(())
}

/// Section 5: judges one response of a driver=mesh case.
pub fn judge_mesh(case: &Case, resp: &Observed) -> Result<(), String> {
    if !case.response.status_codes.contains(&resp.status) {
        return Err(format!(
            "status {} not in expected {:?}{}",
            resp.status,
            case.response.status_codes,
            body_hint(resp)
        ));
    }
    let expected = expected_request(case);
    let sent_method = case.request.method.as_deref().unwrap_or("GET");
    let echo = resp.echo(sent_method)?;
    judge_request_headers(&expected, &echo)?;
    judge_response_headers(case, resp, true)?;
    judge_backend(case, &echo)
}

/// A Location header split the way Go's `url.Parse` + `Hostname()`/`Port()` split it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub scheme: String,
    pub host: String,
    pub port: String,
    pub path: String,
    pub query: String,
}

impl Location {
    pub fn parse(text: &str) -> Option<Location> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let (scheme, rest) = match text.split_once("://") {
            Some((s, rest))
                if !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
            {
                (s.to_ascii_lowercase(), rest)
            }
            _ => (String::new(), text),
        };
        // The fragment never reaches a server; drop it before splitting path and query.
        let rest = rest.split('#').next().unwrap_or("");
        let (authority, path_query) = if scheme.is_empty() {
            if let Some(rest) = rest.strip_prefix("//") {
                split_authority(rest)
            } else {
                ("", rest)
            }
        } else {
            split_authority(rest)
        };
        let (host, port) = split_host_port(authority)?;
        let (path, query) = match path_query.split_once('?') {
            Some((p, q)) => (p, q),
            None => (path_query, ""),
        };
        Some(Location {
            scheme,
            host,
            port,
            path: path.to_owned(),
            query: query.to_owned(),
        })
    }
}

fn split_authority(rest: &str) -> (&str, &str) {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    (&rest[..end], &rest[end..])
}

/// `host[:port]` / `[v6][:port]` → (hostname without brackets, port or "").
fn split_host_port(authority: &str) -> Option<(String, String)> {
    let authority = authority.rsplit('@').next().unwrap_or("");
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        let port = rest.strip_prefix(':').unwrap_or("");
        return Some((host.to_owned(), port.to_owned()));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
            Some((host.to_owned(), port.to_owned()))
        }
        _ => Some((authority.to_owned(), String::new())),
    }
}

/// 4.2 c: the Location of a redirect against the expected parts.
pub fn judge_redirect(
    expected: &crate::cases::Redirect,
    request_scheme: &str,
    request_path: &str,
    actual: &Location,
) -> Result<(), String> {
    let scheme = if expected.scheme.is_empty() {
        request_scheme
    } else {
        expected.scheme.as_str()
    };
    let path = if expected.path.is_empty() {
        request_path.split('?').next().unwrap_or("")
    } else {
        expected.path.as_str()
    };
    if expected.port.is_empty() {
        let default = match actual.scheme.as_str() {
            "http" => "80",
            "https" => "443",
            _ => "",
        };
        if !actual.port.is_empty() && actual.port != default {
            return Err(format!(
                "redirect port {:?}, expected none or the {} default",
                actual.port, actual.scheme
            ));
        }
    } else if actual.port != expected.port {
        return Err(format!(
            "redirect port {:?}, expected {:?}",
            actual.port, expected.port
        ));
    }
    if actual.scheme != scheme {
        return Err(format!(
            "redirect scheme {:?}, expected {scheme:?}",
            actual.scheme
        ));
    }
    if !expected.host.is_empty() && actual.host != expected.host {
        return Err(format!(
            "redirect host {:?}, expected {:?}",
            actual.host, expected.host
        ));
    }
    if actual.path != path {
        return Err(format!(
            "redirect path {:?}, expected {path:?}",
            actual.path
        ));
    }
    Ok(())
}

/// 4.1: the Host header of a gateway request: `request.host`, else the URL authority, whose
/// port is left out when it is the scheme's default.
pub fn default_host(request_host: Option<&str>, scheme: &str, address: &str, port: u16) -> String {
    if let Some(host) = request_host.filter(|h| !h.is_empty()) {
        return host.to_owned();
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let address = if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]")
    } else {
        address.to_owned()
    };
    if port == default_port {
        address
    } else {
        format!("{address}:{port}")
    }
}

#[cfg(test)]
mod tests;
