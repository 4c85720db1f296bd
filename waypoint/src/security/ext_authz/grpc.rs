//! The gRPC ext_authz call, `envoy.service.auth.v3.Authorization/Check`: the CheckRequest as
//! Envoy's `ext_authz` filter fills its AttributeContext, one tonic channel per endpoint, and
//! what a CheckResponse means.

use authz::ext_authz::{Allowed, CheckBody, PARTIAL_BODY_HEADER};
use authz::{ConnectionAttrs, HeaderEdit, LocalReply, RequestAttrs};
use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address, Address, HeaderValueOption, SocketAddress,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Peer, Request, TlsSession,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::Timestamp;
use pingora_http::RequestHeader;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tonic::transport::{Channel, Endpoint};

/// gRPC's OK status code.
const GRPC_OK: i32 = 0;

/// One lazily connected tonic channel per (endpoint, authority), shared by all requests.
#[derive(Debug, Default)]
pub struct GrpcChecker {
    channels: Mutex<HashMap<(SocketAddr, String), Channel>>,
}

impl GrpcChecker {
    /// Calls Check on `addr` with `request`, giving the server `timeout` (grpc-timeout);
    /// `Err` is a failed check (unreachable server, an RPC error).
    pub async fn check(
        &self,
        addr: SocketAddr,
        authority: &str,
        request: CheckRequest,
        timeout: Duration,
    ) -> Result<CheckResponse, String> {
        let channel = self.channel(addr, authority)?;
        let mut call = tonic::Request::new(request);
        call.set_timeout(timeout);
        AuthorizationClient::new(channel)
            .check(call)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| {
                format!(
                    "gRPC check to {addr} failed: {:?}: {}",
                    s.code(),
                    s.message()
                )
            })
    }

    fn channel(&self, addr: SocketAddr, authority: &str) -> Result<Channel, String> {
        let key = (addr, authority.to_string());
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = channels.get(&key) {
            return Ok(c.clone());
        }
        let bad = |e: tonic::transport::Error| format!("bad gRPC endpoint {addr}: {e}");
        let mut endpoint = Endpoint::from_shared(format!("http://{addr}")).map_err(bad)?;
        if !authority.is_empty() {
            let origin = format!("http://{authority}")
                .parse()
                .map_err(|e| format!("bad gRPC authority {authority}: {e}"))?;
            endpoint = endpoint.origin(origin);
        }
        let channel = endpoint
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .connect_lazy();
        channels.insert(key, channel.clone());
        Ok(channel)
    }
}

/// The CheckRequest for a TCP connection (Envoy's network ext_authz): the peer and the
/// addressed destination only.
pub fn connection_request(conn: &ConnectionAttrs) -> CheckRequest {
    let source = Peer {
        address: conn.source_ip.map(|ip| socket(ip, 0)),
        principal: conn
            .source_principal
            .as_ref()
            .map(|p| format!("spiffe://{p}"))
            .unwrap_or_default(),
        ..Peer::default()
    };
    let destination = Peer {
        address: conn
            .destination_ip
            .map(|ip| socket(ip, conn.destination_port)),
        ..Peer::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(source),
            destination: Some(destination),
            tls_session: conn.sni.as_ref().map(|sni| TlsSession { sni: sni.clone() }),
            ..AttributeContext::default()
        }),
    }
}

/// The CheckRequest for `req`, as Envoy's ext_authz filter fills it at a waypoint: the
/// connection's facts ([`connection_request`]) and the request's method, path (with query),
/// host, scheme, protocol and every header (pseudo headers included, a repeated one joined by
/// `,`), and the body `includeRequestBodyInCheck` asks for (`raw_body` with `packAsBytes`).
pub fn check_request(
    req: &RequestHeader,
    authority: &str,
    attrs: &RequestAttrs<'_>,
    body: Option<CheckBody<'_>>,
) -> CheckRequest {
    let mut http = http_request(req, authority);
    if let Some(b) = body {
        http.headers
            .insert(PARTIAL_BODY_HEADER.to_string(), b.partial.to_string());
        if b.as_bytes {
            http.raw_body = b.bytes.to_vec();
        } else {
            http.body = String::from_utf8_lossy(b.bytes).into_owned();
        }
    }
    let mut request = connection_request(attrs.conn);
    if let Some(attributes) = request.attributes.as_mut() {
        attributes.request = Some(Request {
            time: Some(now()),
            http: Some(http),
        });
    }
    request
}

/// Whether a CheckResponse allows (status OK, or no status).
pub fn allows(response: &CheckResponse) -> bool {
    response.status.as_ref().map_or(GRPC_OK, |s| s.code) == GRPC_OK
}

fn http_request(req: &RequestHeader, authority: &str) -> HttpRequest {
    let path = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let scheme = req.uri.scheme_str().unwrap_or("http");
    let mut headers = HashMap::new();
    headers.insert(":authority".to_string(), authority.to_string());
    headers.insert(":method".to_string(), req.method.to_string());
    headers.insert(":path".to_string(), path.to_string());
    headers.insert(":scheme".to_string(), scheme.to_string());
    for name in req.headers.keys() {
        if name == http::header::HOST {
            continue;
        }
        if let Some(values) = joined(&req.headers, name.as_str()) {
            headers.insert(name.as_str().to_string(), values);
        }
    }
    let size = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(-1);
    HttpRequest {
        id: headers.get("x-request-id").cloned().unwrap_or_default(),
        method: req.method.to_string(),
        path: path.to_string(),
        host: authority.to_string(),
        scheme: scheme.to_string(),
        protocol: protocol(req.version).to_string(),
        size,
        headers,
        ..HttpRequest::default()
    }
}

/// A header's values joined by `,` (as Envoy's CheckRequest holds them); `None` when absent.
fn joined(headers: &http::HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

fn socket(ip: IpAddr, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            protocol: socket_address::Protocol::Tcp as i32,
            address: ip.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..SocketAddress::default()
        })),
    }
}

fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

/// What a CheckResponse means, as Envoy reads it: status OK allows, with the ok_response's
/// header edits, query changes and response headers; any other status denies with the
/// denied_response's status (403 when absent or 0), headers and body.
pub fn answer(response: CheckResponse, req: &RequestHeader) -> Result<Allowed, LocalReply> {
    if allows(&response) {
        let ok = match response.http_response {
            Some(HttpResponse::OkResponse(ok)) => ok,
            _ => OkHttpResponse::default(),
        };
        return Ok(allowed(ok, req));
    }
    let mut reply = LocalReply {
        status: 403,
        body: String::new(),
        headers: Vec::new(),
    };
    if let Some(HttpResponse::DeniedResponse(denied)) = response.http_response {
        if let Some(status) = denied.status.and_then(|s| u16::try_from(s.code).ok()) {
            if status > 0 {
                reply.status = status;
            }
        }
        reply.headers = pairs(&denied.headers);
        reply.body = denied.body;
    }
    Err(reply)
}

fn allowed(ok: OkHttpResponse, req: &RequestHeader) -> Allowed {
    let mut out = Allowed::default();
    for option in &ok.headers {
        let Some(h) = option.header.as_ref() else {
            continue;
        };
        let name = h.key.to_ascii_lowercase();
        // Appending is setting what is there (an earlier edit, else the request's values)
        // followed by this value, which keeps the upstream edits to "set" and "remove".
        let current = out
            .upstream
            .iter()
            .find_map(|e| match e {
                HeaderEdit::Set(n, v) if *n == name => Some(v.clone()),
                _ => None,
            })
            .or_else(|| joined(&req.headers, &name));
        let value = match current {
            Some(current) if appends(option) => format!("{current},{}", h.value),
            _ => h.value.clone(),
        };
        out.upstream
            .retain(|e| !matches!(e, HeaderEdit::Set(n, _) if *n == name));
        out.upstream.push(HeaderEdit::Set(name, value));
    }
    for name in &ok.headers_to_remove {
        if !name.starts_with(':') && !name.eq_ignore_ascii_case("host") {
            out.upstream
                .push(HeaderEdit::Remove(name.to_ascii_lowercase()));
        }
    }
    out.downstream = pairs(&ok.response_headers_to_add);
    if !ok.query_parameters_to_set.is_empty() || !ok.query_parameters_to_remove.is_empty() {
        let path = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        out.path = Some(edit_query(path, &ok));
    }
    out
}

/// The (lower-case name, value) of each header option, in order.
fn pairs(options: &[HeaderValueOption]) -> Vec<(String, String)> {
    options
        .iter()
        .filter_map(|o| o.header.as_ref())
        .map(|h| (h.key.to_ascii_lowercase(), h.value.clone()))
        .collect()
}

/// `append: true` appends; unset or false sets (the ok_response default, as Envoy documents).
#[allow(deprecated)]
fn appends(option: &HeaderValueOption) -> bool {
    option.append.as_ref().is_some_and(|b| b.value)
}

/// The path with the ok_response's query parameters removed, then set (replacing a parameter
/// of the same name, else added at the end).
fn edit_query(path_and_query: &str, ok: &OkHttpResponse) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .filter(|(k, _)| !ok.query_parameters_to_remove.contains(k))
        .collect();
    for q in &ok.query_parameters_to_set {
        match params.iter_mut().find(|(k, _)| *k == q.key) {
            Some(existing) => existing.1 = q.value.clone(),
            None => params.push((q.key.clone(), q.value.clone())),
        }
    }
    if params.is_empty() {
        return path.to_string();
    }
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{path}?{}", query.join("&"))
}
