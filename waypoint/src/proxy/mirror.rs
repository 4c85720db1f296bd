//! RequestMirror: which endpoints get a copy of a request (decided with the route), and
//! sending the copies without ever affecting the request itself.

use super::decide::{backend_port, host_without_port, request_authority};
use crate::endpoint;
use crate::snapshot::Snapshot;
use bytes::Bytes;
use pingora_http::RequestHeader;
use routing::{BackendTarget, HeaderModifier, Rule};
use std::net::SocketAddr;
use std::time::Duration;

/// How long a mirrored request may run before it is dropped, so slow mirror backends cannot
/// pile up tasks.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoints that get a copy of this request: each mirror of the rule samples it with its
/// own share. A mirror with an invalid backend, no ready endpoint or an endpoint reachable only
/// over HBONE (copies go out in plain HTTP) is skipped, as a mirror must never affect the
/// request itself. `request_port` is the port the request arrived on (see
/// [`backend_port`]).
pub fn endpoints(
    snapshot: &Snapshot,
    rule: &Rule,
    random: u32,
    request_port: u16,
) -> Vec<SocketAddr> {
    let mut endpoints = Vec::new();
    for (i, mirror) in rule.mirrors.iter().enumerate() {
        // Each mirror samples from its own draw, unrelated to the backend choice.
        let draw = mix(random, u32::try_from(i).unwrap_or(u32::MAX));
        if !mirror.samples(draw) {
            continue;
        }
        let BackendTarget::Service {
            service,
            port,
            subset,
        } = &mirror.target
        else {
            continue;
        };
        let pick = endpoint::Pick {
            subset: subset.as_deref(),
            ..endpoint::Pick::any(service, backend_port(*port, request_port))
        };
        match endpoint::choose(snapshot, &pick) {
            Ok(chosen) if chosen.endpoint.hbone.is_none() => endpoints.push(chosen.endpoint.addr),
            Ok(chosen) => tracing::debug!(
                "not mirroring to {}: the endpoint is only reachable over HBONE",
                chosen.endpoint.addr
            ),
            Err(why) => tracing::debug!("not mirroring: {why}"),
        }
    }
    endpoints
}

/// A new uniformly distributed u32 from `random` and `salt` (a murmur3-style finaliser).
fn mix(random: u32, salt: u32) -> u32 {
    let mut x = random ^ salt.wrapping_add(1).wrapping_mul(0x9e37_79b9);
    x ^= x >> 16;
    x = x.wrapping_mul(0x85eb_ca6b);
    x ^= x >> 13;
    x = x.wrapping_mul(0xc2b2_ae35);
    x ^ (x >> 16)
}

/// Fires a copy of the request's headers at every mirror endpoint and forgets it. The copy has
/// the rule's header changes applied and, as Envoy and Istio do, a Host suffixed "-shadow" so
/// the mirror backend can tell it apart. Only headers are mirrored: a body is not buffered for
/// the mirror, so a request with one is mirrored without it.
pub fn send(req: &RequestHeader, mirrors: &[SocketAddr], modifiers: &[HeaderModifier]) {
    if mirrors.is_empty() {
        return;
    }
    let mut headers = req.headers.clone();
    for m in modifiers {
        m.apply(&mut headers);
    }
    for hop in [
        http::header::CONNECTION,
        http::header::TRANSFER_ENCODING,
        http::header::CONTENT_LENGTH,
        http::header::UPGRADE,
        http::header::TE,
    ] {
        headers.remove(hop);
    }
    let shadow = shadow_host(request_authority(req).unwrap_or_default());
    let Ok(host) = http::HeaderValue::from_str(&shadow) else {
        return;
    };
    headers.insert(http::header::HOST, host);
    let target = req
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    for addr in mirrors {
        let mirror = MirrorRequest {
            addr: *addr,
            method: req.method.clone(),
            target: target.clone(),
            headers: headers.clone(),
        };
        tokio::spawn(async move {
            let addr = mirror.addr;
            match tokio::time::timeout(MIRROR_TIMEOUT, mirror.send()).await {
                Ok(Ok(status)) => tracing::debug!("mirrored to {addr}: {status}"),
                Ok(Err(e)) => tracing::debug!("mirroring to {addr} failed: {e}"),
                Err(_) => tracing::debug!("mirroring to {addr} timed out"),
            }
        });
    }
}

/// `host[:port]` with "-shadow" after the host, before any port.
pub fn shadow_host(authority: &str) -> String {
    let host = host_without_port(authority);
    format!("{host}-shadow{}", &authority[host.len()..])
}

struct MirrorRequest {
    addr: SocketAddr,
    method: http::Method,
    target: String,
    headers: http::HeaderMap,
}

impl MirrorRequest {
    async fn send(self) -> Result<http::StatusCode, Box<dyn std::error::Error + Send + Sync>> {
        use http_body_util::BodyExt;
        let stream = tokio::net::TcpStream::connect(self.addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut request = http::Request::builder()
            .method(self.method)
            .uri(self.target)
            .body(http_body_util::Empty::<Bytes>::new())?;
        *request.headers_mut() = self.headers;
        let response = sender.send_request(request).await?;
        let status = response.status();
        // Read the answer to the end so the backend sees a normal exchange; it is discarded.
        response.into_body().collect().await?;
        Ok(status)
    }
}
