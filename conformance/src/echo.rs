//! An in-process twin of the Gateway API conformance `echo-basic` backend.
//!
//! Every request is answered with a JSON description of what arrived (path, host, method,
//! protocol, headers) plus the identity of the backend that answered, which is how a conformance
//! case tells which `backendRef` a route sent it to and what the proxy did to the request on the
//! way. HTTP/1.1 and h2c (prior knowledge) share one port, as the mesh may speak either to a pod.
//!
//! Like upstream, request knobs exist because conformance cases depend on them:
//! `X-Echo-Set-Header: Name:value,Other:value` copies those headers into the response (response
//! header modifiers are checked this way), a `delay` query parameter (`?delay=1s`) holds the
//! response back (request timeouts), `/status/NNN` answers NNN (error handling), and
//! `/retry/?uuid=U&succeedAfter=N[&responseCode=C]` fails the first N requests for U (retries),
//! and `/ws` is a WebSocket echo that sends every text or binary message back (upgrade
//! pass-through).
//! Every request-URI is remembered in a [`RequestLog`], which is how mirror checks see that a
//! backend received a copy. [`EchoMode::H2cOnly`] is upstream's second port (3001): HTTP/2 with
//! prior knowledge only, so a proxy that speaks HTTP/1.1 to an h2c backend is caught.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

/// Who the echo backend claims to be; reported in every response so a test can tell which
/// backend served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoIdentity {
    pub namespace: String,
    pub service: String,
    pub pod: String,
}

/// Which protocols a listener takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EchoMode {
    /// HTTP/1.1 and h2c prior knowledge, whichever the client speaks.
    #[default]
    Any,
    /// h2c prior knowledge only; an HTTP/1.1 request gets 400 "Expected h2c request".
    H2cOnly,
}

/// The request-URIs a backend received, in arrival order, shared by all its listeners.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<String>>>);

impl RequestLog {
    fn record(&self, uri: &str) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(uri.to_owned());
    }

    /// How many requests arrived for exactly this request-URI (path and query).
    pub fn count(&self, uri: &str) -> usize {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter(|u| *u == uri)
            .count()
    }
}

/// Per-backend state of the `/retry/` handler: requests seen per uuid. Shared by all
/// listeners of a backend, as upstream keeps it per process.
#[derive(Debug, Clone, Default)]
struct RetryCounts(Arc<Mutex<HashMap<String, u64>>>);

/// Everything one backend's listeners share.
#[derive(Debug)]
struct Backend {
    id: EchoIdentity,
    log: RequestLog,
    retries: RetryCounts,
}

/// A running echo backend. Dropping it (or calling [`EchoServer::shutdown`]) stops accepting
/// and closes every connection it was serving.
#[derive(Debug)]
pub struct EchoServer {
    pub local_addr: SocketAddr,
    /// What this listener (and any listener spawned with [`EchoServer::spawn_sibling`]) received.
    pub log: RequestLog,
    backend: Arc<Backend>,
    task: JoinHandle<()>,
}

impl EchoServer {
    /// Another listener of the same backend (same identity, log and retry state), as a pod
    /// has several ports.
    pub async fn spawn_sibling(
        &self,
        addr: SocketAddr,
        mode: EchoMode,
    ) -> std::io::Result<EchoServer> {
        spawn_listener(addr, self.backend.clone(), mode).await
    }

    /// Stops the server; equivalent to dropping it, spelled out for readability at call sites.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        // The accept task owns the listener and a JoinSet of connection tasks; aborting it drops
        // both, which closes the socket and aborts every connection.
        self.task.abort();
    }
}

/// Binds `addr` (port 0 picks a free port, see [`EchoServer::local_addr`]) and serves echo
/// responses on it until the returned server is dropped.
pub async fn spawn_echo(addr: SocketAddr, id: EchoIdentity) -> std::io::Result<EchoServer> {
    spawn_echo_with_mode(addr, id, EchoMode::Any).await
}

/// [`spawn_echo`] whose first listener takes only `mode`'s protocols.
pub async fn spawn_echo_with_mode(
    addr: SocketAddr,
    id: EchoIdentity,
    mode: EchoMode,
) -> std::io::Result<EchoServer> {
    let backend = Arc::new(Backend {
        id,
        log: RequestLog::default(),
        retries: RetryCounts::default(),
    });
    spawn_listener(addr, backend, mode).await
}

async fn spawn_listener(
    addr: SocketAddr,
    backend: Arc<Backend>,
    mode: EchoMode,
) -> std::io::Result<EchoServer> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let task = tokio::spawn(accept_loop(listener, backend.clone(), mode));
    Ok(EchoServer {
        local_addr,
        log: backend.log.clone(),
        backend,
        task,
    })
}

/// [`spawn_echo`] on a free loopback port.
pub async fn spawn_echo_on_free_port(id: EchoIdentity) -> std::io::Result<EchoServer> {
    spawn_echo(SocketAddr::from(([127, 0, 0, 1], 0)), id).await
}

async fn accept_loop(listener: TcpListener, backend: Arc<Backend>, mode: EchoMode) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let backend = backend.clone();
                    connections.spawn(async move {
                        let service =
                            service_fn(move |req| echo(req, backend.clone(), mode, port));
                        let builder = auto::Builder::new(TokioExecutor::new());
                        // With upgrades, so that `/ws` can take the connection over after 101.
                        if let Err(error) = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await
                        {
                            tracing::debug!(%peer, %error, "echo connection ended with an error");
                        }
                    });
                }
                // Accept errors are per-connection (e.g. the peer reset before we accepted, or
                // the fd limit was hit); the listener itself is still good, so keep serving.
                Err(error) => tracing::debug!(%error, "echo accept failed"),
            },
            // Reap finished connections so the set does not grow with every request burst.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// The upstream echo-basic response body, field for field.
#[derive(Debug, Serialize)]
struct EchoResponse<'a> {
    path: String,
    host: String,
    method: &'a str,
    proto: &'static str,
    headers: BTreeMap<String, Vec<String>>,
    namespace: &'a str,
    ingress: &'static str,
    service: &'a str,
    pod: &'a str,
    #[serde(rename = "httpPort")]
    http_port: String,
}

/// Returned by the service to make hyper drop the connection without an answer, which is how
/// `/retry/` without a responseCode fails a request (upstream resets the TCP connection).
#[derive(Debug, thiserror::Error)]
#[error("dropping the connection as /retry/ asked")]
struct DropConnection;

async fn echo(
    mut req: Request<Incoming>,
    backend: Arc<Backend>,
    mode: EchoMode,
    port: u16,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let id = &backend.id;
    if req.uri().path() == WEBSOCKET_PATH {
        backend.log.record(
            req.uri()
                .path_and_query()
                .map_or(WEBSOCKET_PATH, |pq| pq.as_str()),
        );
        return Ok(websocket_upgrade(&mut req));
    }
    let (parts, mut body) = req.into_parts();
    // Drain the body so that a keep-alive connection stays usable and the client is not stuck
    // on flow control; the content itself is not part of the echo.
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }

    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    backend.log.record(&path);
    tracing::debug!(pod = %id.pod, "Echoing back request made to {path}");

    if mode == EchoMode::H2cOnly && parts.version != Version::HTTP_2 {
        return Ok(text_response(
            StatusCode::BAD_REQUEST,
            "Expected h2c request",
        ));
    }

    if let Some(delay) = query_param(parts.uri.query(), "delay") {
        match parse_go_duration(delay) {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let message =
                    format!("invalid delay '{delay}'; use a Go duration like 1s or 500ms");
                return Ok(json_response(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({ "error": message }).to_string(),
                ));
            }
        }
    }

    if let Some(code) = parts.uri.path().strip_prefix("/status/") {
        return Ok(
            match code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
            {
                Some(status) => text_response(status, ""),
                None => text_response(StatusCode::BAD_REQUEST, "invalid status code"),
            },
        );
    }

    if parts.uri.path().starts_with("/retry") {
        if let Some(failure) = retry_failure(&backend.retries, parts.uri.query())? {
            return Ok(failure);
        }
    }

    // Go's server prefers the request-target's authority (h2 `:authority`, h1 absolute-form)
    // and falls back to the Host header; mirror it so `host` means the same thing upstream.
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(HOST)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        })
        .unwrap_or_default();

    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        // Go moves Host out of the header map into `host`; do the same.
        if name == HOST {
            continue;
        }
        headers
            .entry(canonical_header_name(name.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }

    let body = EchoResponse {
        path,
        host,
        method: parts.method.as_str(),
        proto: proto_name(parts.version),
        headers,
        namespace: &id.namespace,
        ingress: "",
        service: &id.service,
        pod: &id.pod,
        http_port: port.to_string(),
    };
    // Serializing strings and string maps cannot fail; should it ever, answer with an empty
    // object rather than take the connection down.
    let json = serde_json::to_string(&body).unwrap_or_else(|_| "{}".to_owned());
    let mut response = json_response(StatusCode::OK, json);
    for value in parts.headers.get_all("x-echo-set-header") {
        for (name, value) in parse_set_header(value) {
            // Upstream appends ",value" to a name given twice rather than adding a second
            // header line.
            let merged = match response.headers().get(&name) {
                Some(existing) => {
                    let mut joined = existing.as_bytes().to_vec();
                    joined.push(b',');
                    joined.extend_from_slice(value.as_bytes());
                    HeaderValue::from_bytes(&joined).unwrap_or(value)
                }
                None => value,
            };
            response.headers_mut().insert(name, merged);
        }
    }
    Ok(response)
}

const WEBSOCKET_PATH: &str = "/ws";

/// Answers a WebSocket handshake on `/ws` with 101 and echoes the messages that follow on the
/// upgraded connection; anything else there is a 400, as upstream's handler answers.
fn websocket_upgrade(req: &mut Request<Incoming>) -> Response<Full<Bytes>> {
    let headers = req.headers();
    let has_token = |name: http::header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let key = headers.get(http::header::SEC_WEBSOCKET_KEY);
    let (Some(key), true, true) = (
        key,
        has_token(http::header::CONNECTION, "upgrade"),
        has_token(http::header::UPGRADE, "websocket"),
    ) else {
        return text_response(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade");
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                echo_messages(ws).await;
            }
            Err(error) => tracing::debug!(%error, "WebSocket upgrade did not complete"),
        }
    });
    let mut response = text_response(StatusCode::SWITCHING_PROTOCOLS, "");
    let h = response.headers_mut();
    h.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        h.insert(http::header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// Sends every data message back until the peer closes; tungstenite answers pings and
/// completes the close handshake itself.
async fn echo_messages<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

/// The `/retry/` handler: counts requests per `uuid` and fails the first `succeedAfter` of
/// them, with `responseCode` when given and otherwise by dropping the connection. `None` means
/// the request should get the ordinary echo reply.
fn retry_failure(
    counts: &RetryCounts,
    query: Option<&str>,
) -> Result<Option<Response<Full<Bytes>>>, DropConnection> {
    let Some(uuid) = query_param(query, "uuid") else {
        return Ok(Some(text_response(StatusCode::BAD_REQUEST, "missing uuid")));
    };
    let succeed_after: u64 = query_param(query, "succeedAfter")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let seen = {
        let mut map = counts.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(uuid.to_owned()).or_default();
        *n += 1;
        *n
    };
    if seen > succeed_after {
        return Ok(None);
    }
    match query_param(query, "responseCode") {
        Some(code) => Ok(Some(
            match code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
            {
                Some(status) => text_response(status, ""),
                None => text_response(StatusCode::BAD_REQUEST, "invalid responseCode"),
            },
        )),
        None => Err(DropConnection),
    }
}

fn text_response(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

fn json_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn proto_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: `x-forwarded-for` → `X-Forwarded-For`.
fn canonical_header_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

/// `Name:value,Other:value` → header pairs; malformed entries are skipped, as upstream does.
fn parse_set_header(value: &HeaderValue) -> Vec<(HeaderName, HeaderValue)> {
    let Ok(value) = value.to_str() else {
        return Vec::new();
    };
    value
        .split(',')
        .filter_map(|entry| {
            let (name, value) = entry.split_once(':')?;
            let name = HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
            let value = HeaderValue::from_str(value.trim()).ok()?;
            Some((name, value))
        })
        .collect()
}

fn query_param<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(k, v)| (k == key).then_some(v))
}

/// A subset of Go's `time.ParseDuration`: one or more `<decimal><unit>` terms, e.g. `1s`,
/// `1.5s`, `1m30s`, `250ms`. Negative durations are rejected: there is nothing to wait for.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * seconds_per_unit).ok()?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_canonicalized_like_go() {
        assert_eq!(canonical_header_name("x-forwarded-for"), "X-Forwarded-For");
        assert_eq!(canonical_header_name("accept"), "Accept");
        assert_eq!(canonical_header_name("x-b3-traceid"), "X-B3-Traceid");
    }

    #[test]
    fn set_header_parses_pairs_and_skips_junk() {
        let pairs = parse_set_header(&HeaderValue::from_static("X-A: 1,bogus,X-B:two words"));
        let rendered: Vec<_> = pairs
            .iter()
            .map(|(n, v)| format!("{n}={}", v.to_str().unwrap_or("?")))
            .collect();
        assert_eq!(rendered, ["x-a=1", "x-b=two words"]);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("-1s"), None);
        assert_eq!(parse_go_duration("1fortnight"), None);
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("a=1&delay=2s"), "delay"), Some("2s"));
        assert_eq!(query_param(Some("a=1"), "delay"), None);
        assert_eq!(query_param(None, "delay"), None);
    }
}
