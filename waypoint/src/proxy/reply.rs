//! Every answer the waypoint writes itself: redirects, CORS preflights, refusals and upstream
//! failures, through one writer, with the status and response flag Envoy (and so Istio's
//! waypoint) gives the same situation.

use super::decide::Action;
use authz::LocalReply;
use bytes::Bytes;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::{FailToProxy, Session};
use std::borrow::Cow;
use telemetry::{ResponseFlag, REASON_HEADER};

/// A request the waypoint refuses: the status, the flag and, for the body, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status sent.
    pub status: u16,
    /// The response flag, also sent in the reason header; none for the security denials
    /// Envoy reports without one (RBAC, JWT).
    pub flag: Option<ResponseFlag>,
    /// What an operator reads in the body: the service, route or rule and what is missing.
    /// Borrowed when it is fixed text, so a refusal that names nothing allocates nothing.
    pub detail: Cow<'static, str>,
    /// Set for a gRPC answer: the `grpc-status` sent (with the detail as `grpc-message`) in a
    /// bodiless `application/grpc` response.
    pub grpc_status: Option<u32>,
    /// Extra response headers (a security denial's `www-authenticate`, ext_authz's headers).
    pub headers: Vec<(String, String)>,
    /// The detail is sent byte for byte (a security denial's body, as Envoy writes it), not
    /// as a line of text.
    pub verbatim: bool,
}

impl Refusal {
    /// 404 NR: no service, listener or rule for the request.
    pub fn no_route(detail: impl Into<Cow<'static, str>>) -> Self {
        Refusal::new(404, ResponseFlag::NoRouteFound, detail)
    }

    /// 500: a matched rule that cannot be applied (an invalid backend, an unsupported filter),
    /// as the Gateway API asks.
    pub fn invalid_backend(detail: impl Into<Cow<'static, str>>) -> Self {
        Refusal::new(500, ResponseFlag::NoRouteFound, detail)
    }

    /// 503 NC: a VirtualService destination names no service (Envoy has no cluster for it).
    pub fn no_cluster(detail: impl Into<Cow<'static, str>>) -> Self {
        Refusal::new(503, ResponseFlag::NoClusterFound, detail)
    }

    /// 503 UH: the backend has no endpoint to send to.
    pub fn no_healthy_upstream(detail: impl Into<Cow<'static, str>>) -> Self {
        Refusal::new(503, ResponseFlag::NoHealthyUpstream, detail)
    }

    /// FI: fault injection aborted the request (Envoy's `fault filter abort`), with a gRPC
    /// status for a gRPC client.
    pub fn fault_abort(status: u16, grpc_status: Option<u32>) -> Self {
        Refusal {
            grpc_status,
            ..Refusal::new(status, ResponseFlag::FaultInjected, "fault filter abort")
        }
    }

    /// 400: a path Istio's normalization rejects (Envoy 1.40 answers `Bad Request`, no
    /// flag).
    pub fn bad_path() -> Self {
        Refusal {
            flag: None,
            verbatim: true,
            ..Refusal::new(400, ResponseFlag::DownstreamProtocolError, "Bad Request")
        }
    }

    /// A security step's answer (`reply`), with its flag. A gRPC client gets it as Envoy's
    /// local replies to gRPC: a 200 whose `grpc-status` maps the HTTP status (401 → 16
    /// UNAUTHENTICATED, 403 → 7 PERMISSION_DENIED) and whose `grpc-message` is the body.
    pub fn security(reply: &LocalReply, flag: Option<ResponseFlag>, grpc_request: bool) -> Self {
        Refusal {
            status: if grpc_request { 200 } else { reply.status },
            flag,
            detail: Cow::Owned(reply.body.clone()),
            grpc_status: grpc_request.then(|| grpc_status_of(reply.status)),
            headers: reply.headers.clone(),
            verbatim: true,
        }
    }

    fn new(status: u16, flag: ResponseFlag, detail: impl Into<Cow<'static, str>>) -> Self {
        Refusal {
            status,
            flag: Some(flag),
            detail: detail.into(),
            grpc_status: None,
            headers: Vec::new(),
            verbatim: false,
        }
    }
}

/// Envoy's mapping of an HTTP status to the gRPC status of a local reply
/// (`Grpc::Utility::httpToGrpcStatus`).
pub fn grpc_status_of(http_status: u16) -> u32 {
    match http_status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

/// What answers a CORS preflight. The headers are empty when the origin is not allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightAnswer {
    /// 200, or 403 when refused outright.
    pub status: u16,
    /// The Access-Control-* headers.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// A response the waypoint writes itself.
pub(super) struct LocalResponse {
    pub(super) status: u16,
    pub(super) headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The body, sent as is; none for redirects and preflights.
    pub(super) body: Option<Bytes>,
    pub(super) flag: Option<ResponseFlag>,
}

/// Writes the answer a decision calls for; false when the request is to be forwarded.
pub async fn answer(session: &mut Session, action: &Action) -> Result<bool> {
    let response = match action {
        Action::Forward(_) => return Ok(false),
        Action::Redirect { status, location } => LocalResponse {
            status: *status,
            headers: vec![(http::header::LOCATION, header_value(location)?)],
            body: None,
            flag: None,
        },
        Action::Preflight(answer) => LocalResponse {
            status: answer.status,
            headers: answer.headers.clone(),
            body: None,
            flag: None,
        },
        Action::Refuse(refusal) => refusal_response(refusal)?,
        Action::Direct {
            status,
            body,
            modifiers,
        } => {
            let mut headers = http::HeaderMap::new();
            for m in modifiers {
                m.apply(&mut headers);
            }
            LocalResponse {
                status: *status,
                headers: headers
                    .iter()
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect(),
                body: (!body.is_empty()).then(|| body.clone()),
                flag: None,
            }
        }
    };
    write(session, response).await?;
    Ok(true)
}

pub(super) fn refusal_response(refusal: &Refusal) -> Result<LocalResponse> {
    let mut headers = Vec::with_capacity(refusal.headers.len() + 3);
    for (name, value) in &refusal.headers {
        let name = http::HeaderName::try_from(name.as_str()).map_err(|e| {
            Error::because(ErrorType::InternalError, "invalid local reply header", e)
        })?;
        headers.push((name, header_value(value)?));
    }
    let Some(code) = refusal.grpc_status else {
        // Envoy's local replies are `text/plain` (without a charset) unless the security step
        // (an ext_authz server) gave its own type.
        let typed = headers
            .iter()
            .any(|(name, _)| name == http::header::CONTENT_TYPE);
        if refusal.verbatim && !typed {
            headers.push((
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain"),
            ));
        }
        let body = match refusal.verbatim {
            true => (!refusal.detail.is_empty())
                .then(|| Bytes::copy_from_slice(refusal.detail.as_bytes())),
            false => Some(text_body(&refusal.detail)),
        };
        return Ok(LocalResponse {
            status: refusal.status,
            headers,
            body,
            flag: refusal.flag,
        });
    };
    // A gRPC Trailers-Only answer: the status travels in headers and there is no body.
    headers.extend([
        (
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        ),
        (
            http::HeaderName::from_static("grpc-status"),
            http::HeaderValue::from(code),
        ),
        (
            http::HeaderName::from_static("grpc-message"),
            header_value(&refusal.detail)?,
        ),
    ]);
    Ok(LocalResponse {
        status: refusal.status,
        headers,
        body: None,
        flag: refusal.flag,
    })
}

/// Answers a request whose upstream exchange failed, if anything can still be sent, and says
/// how pingora should end it. The flag is the one the telemetry records.
pub async fn upstream_failure(
    session: &mut Session,
    e: &Error,
    retried: bool,
) -> (FailToProxy, Option<ResponseFlag>) {
    let failure = classify_failure(e);
    // Once the response header went out, the only honest signal left is closing the stream.
    // pingora closes the client connection after an upstream failure; make the response say
    // `Connection: close`, or an HTTP/1.1 client races the close with its next request.
    session.set_keepalive(None);
    if failure.status > 0 && session.response_written().is_none() {
        let response = LocalResponse {
            status: failure.status,
            headers: super::admit::failure_headers(failure.flag),
            body: Some(text_body(&failure_text(failure.body, retried))),
            flag: failure.flag,
        };
        if let Err(err) = write(session, response).await {
            tracing::debug!("cannot send the error response downstream: {err}");
        }
    }
    let fail = FailToProxy {
        error_code: failure.status,
        can_reuse_downstream: false,
    };
    (fail, failure.flag)
}

/// Envoy's text for a failure, which says so when the request was retried before it.
fn failure_text(body: &str, retried: bool) -> String {
    const RESET: &str = "upstream connect error or disconnect/reset before headers.";
    match body.strip_prefix(RESET).map(|r| r.trim_start()) {
        Some(reason) if retried => {
            let reason = reason.strip_prefix("reset reason: ").unwrap_or(reason);
            format!("{RESET} retried and the latest reset reason: {reason}")
        }
        _ => body.to_owned(),
    }
}

/// A one-line text body, as Envoy ends its own messages.
fn text_body(text: &str) -> Bytes {
    Bytes::from(format!("{text}\n"))
}

/// The one writer: status, headers, the reason header when there is a flag, and the body.
async fn write(session: &mut Session, response: LocalResponse) -> Result<()> {
    let body = response.body;
    let mut resp = ResponseHeader::build(response.status, Some(response.headers.len() + 3))?;
    for (name, value) in response.headers {
        // Appended: an ext_authz denial may carry a header more than once (set-cookie).
        resp.append_header(name, value)?;
    }
    if body.is_some() && !resp.headers.contains_key(http::header::CONTENT_TYPE) {
        resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    }
    let length = body.as_ref().map_or(0, Bytes::len);
    resp.insert_header(http::header::CONTENT_LENGTH, length.to_string())?;
    if let Some(flag) = response.flag {
        resp.insert_header(REASON_HEADER, flag.as_str())?;
    }
    match body {
        None => session.write_response_header(Box::new(resp), true).await,
        Some(body) => {
            session.write_response_header(Box::new(resp), false).await?;
            session.write_response_body(Some(body), true).await
        }
    }
}

fn header_value(value: &str) -> Result<http::HeaderValue> {
    http::HeaderValue::from_str(value)
        .map_err(|e| Error::because(ErrorType::InternalError, "invalid local reply header", e))
}

/// How a failed exchange is reported to the client.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    /// 0 when the client is gone and nothing can be sent.
    pub status: u16,
    /// The response flag; none for a status the upstream gave or a malformed request.
    pub flag: Option<ResponseFlag>,
    /// Envoy's text for the same failure.
    pub body: &'static str,
}

/// Whether `t` says no connection to the endpoint could be made (Envoy's UF, and the
/// `connect-failure` retry condition).
pub fn is_connect_failure(t: &ErrorType) -> bool {
    use ErrorType::*;
    matches!(
        t,
        ConnectTimedout
            | ConnectRefused
            | ConnectNoRoute
            | ConnectError
            | BindError
            | SocketError
            | ConnectProxyFailure
            | TLSHandshakeFailure
            | TLSHandshakeTimedout
            | InvalidCert
            | HandshakeError
    )
}

/// The status, flag and text Envoy uses for the failure `e`.
pub fn classify_failure(e: &Error) -> Failure {
    use ErrorType::*;
    let failure = |status, flag, body| Failure { status, flag, body };
    if let Some(overflow) = super::admit::overflow_failure(e) {
        return overflow;
    }
    if let HTTPStatus(code) = e.etype() {
        return failure(*code, None, "request failed");
    }
    match e.esource() {
        ErrorSource::Upstream => match e.etype() {
            t if is_connect_failure(t) => failure(
                503,
                Some(ResponseFlag::UpstreamConnectionFailure),
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            ),
            ReadTimedout | WriteTimedout => failure(
                504,
                Some(ResponseFlag::UpstreamRequestTimeout),
                "upstream request timeout",
            ),
            _ => failure(
                503,
                Some(ResponseFlag::UpstreamConnectionTermination),
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
            ),
        },
        ErrorSource::Downstream => match e.etype() {
            WriteError | ReadError | ConnectionClosed => {
                failure(0, Some(ResponseFlag::DownstreamConnectionTermination), "")
            }
            _ => failure(400, None, "bad request"),
        },
        ErrorSource::Internal | ErrorSource::Unset => {
            failure(500, None, "internal error in the waypoint")
        }
    }
}
