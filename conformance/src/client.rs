//! The test client: one request on a fresh connection (no keep-alive, as upstream's client is
//! configured), HTTP/1.1 or h2c with prior knowledge, over TCP or any byte stream (an HBONE
//! tunnel), bounded by the 10 s per-request timeout.

use crate::judge::Observed;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Echo replies are small; anything larger is a bug worth reporting, not buffering.
const MAX_BODY: usize = 1 << 20;

/// One request as it goes on the wire.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub method: String,
    /// Path and query, sent verbatim.
    pub path: String,
    /// The Host header (the `:authority` for h2c).
    pub host: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub h2c: bool,
}

/// Sends `req` on a new TCP connection to `addr`.
pub async fn send_tcp(addr: SocketAddr, req: &HttpRequest) -> Result<Observed, String> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        send_on(stream, req).await
    };
    tokio::time::timeout(REQUEST_TIMEOUT, attempt)
        .await
        .map_err(|_| format!("no response from {addr} within {REQUEST_TIMEOUT:?}"))?
}

/// Sends `req` over an already open byte stream, which is used for this request only.
pub async fn send_on<IO>(io: IO, req: &HttpRequest) -> Result<Observed, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request = build(req)?;
    let io = TokioIo::new(io);
    let response = if req.h2c {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2c handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        sender
            .send_request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        sender
            .send_request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?
    };
    let (parts, body) = response.into_parts();
    let body = http_body_util::Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("reading the response body: {e}"))?
        .to_bytes();
    Ok(Observed {
        status: parts.status.as_u16(),
        protocol: match parts.version {
            Version::HTTP_2 => "HTTP/2.0".into(),
            Version::HTTP_10 => "HTTP/1.0".into(),
            _ => "HTTP/1.1".into(),
        },
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    })
}

fn build(req: &HttpRequest) -> Result<Request<Full<Bytes>>, String> {
    let method = Method::from_bytes(req.method.as_bytes())
        .map_err(|_| format!("invalid method {:?}", req.method))?;
    let path = if req.path.is_empty() {
        "/"
    } else {
        req.path.as_str()
    };
    let mut builder = Request::builder().method(method);
    builder = if req.h2c {
        // HTTP/2 carries the host as :authority, which hyper takes from an absolute URI.
        builder
            .version(Version::HTTP_2)
            .uri(format!("http://{}{path}", req.host))
    } else {
        builder.uri(path)
    };
    let body = req.body.clone().unwrap_or_default();
    let mut request = builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("cannot build request {:?}: {e}", req.path))?;
    let headers = request.headers_mut();
    if !req.h2c {
        let host =
            HeaderValue::from_str(&req.host).map_err(|_| format!("invalid Host {:?}", req.host))?;
        headers.insert(http::header::HOST, host);
    }
    for (name, value) in &req.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| format!("invalid header value {value:?}"))?;
        headers.append(name, value);
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo::{spawn_echo, EchoIdentity, EchoMode};

    fn id() -> EchoIdentity {
        EchoIdentity {
            namespace: "ns".into(),
            service: String::new(),
            pod: "be-v1-7d9f8c6b5-x2x4q".into(),
        }
    }

    fn get(path: &str, h2c: bool) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            path: path.into(),
            host: "example.com".into(),
            headers: vec![("X-Echo-Set-Header".into(), "X-A:1,X-A:2".into())],
            body: None,
            h2c,
        }
    }

    #[tokio::test]
    async fn echo_reports_the_request_and_sets_headers() {
        let echo = spawn_echo("127.0.0.1:0".parse().expect("addr"), id())
            .await
            .expect("echo");
        let resp = send_tcp(echo.local_addr, &get("/a?b=c", false))
            .await
            .expect("sent");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header_values("x-a"), ["1,2"]);
        assert_eq!(resp.header_values("x-content-type-options"), ["nosniff"]);
        let data = resp.echo("GET").expect("echo json");
        assert_eq!(data.path, "/a?b=c");
        assert_eq!(data.host, "example.com");
        assert_eq!(data.http_port, echo.local_addr.port().to_string());
        assert_eq!(echo.log.count("/a?b=c"), 1);
    }

    #[tokio::test]
    async fn h2c_only_port_refuses_http1() {
        let echo = spawn_echo("127.0.0.1:0".parse().expect("addr"), id())
            .await
            .expect("echo");
        let h2c = echo
            .spawn_sibling("127.0.0.1:0".parse().expect("addr"), EchoMode::H2cOnly)
            .await
            .expect("h2c");
        let resp = send_tcp(h2c.local_addr, &get("/", false))
            .await
            .expect("sent");
        assert_eq!(resp.status, 400);
        assert_eq!(&resp.body[..], b"Expected h2c request");
        let resp = send_tcp(h2c.local_addr, &get("/", true))
            .await
            .expect("sent");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.protocol, "HTTP/2.0");
        assert_eq!(resp.echo("GET").expect("json").proto, "HTTP/2.0");
        assert_eq!(echo.log.count("/"), 2, "siblings share one log");
    }

    #[tokio::test]
    async fn status_and_retry_handlers() {
        let echo = spawn_echo("127.0.0.1:0".parse().expect("addr"), id())
            .await
            .expect("echo");
        let resp = send_tcp(echo.local_addr, &get("/status/418", false))
            .await
            .expect("sent");
        assert_eq!(resp.status, 418);
        let coded = "/retry/?responseCode=503&succeedAfter=1&uuid=u1";
        assert_eq!(
            send_tcp(echo.local_addr, &get(coded, false))
                .await
                .map(|r| r.status),
            Ok(503)
        );
        assert_eq!(
            send_tcp(echo.local_addr, &get(coded, false))
                .await
                .map(|r| r.status),
            Ok(200)
        );
        let reset = "/retry/?succeedAfter=1&uuid=u2";
        assert!(send_tcp(echo.local_addr, &get(reset, false)).await.is_err());
        assert_eq!(
            send_tcp(echo.local_addr, &get(reset, false))
                .await
                .map(|r| r.status),
            Ok(200)
        );
    }
}
