//! Drives the echo backend with real hyper clients over HTTP/1.1 and h2c.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use conformance::echo::{spawn_echo_on_free_port, EchoIdentity, EchoServer};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpStream;

fn identity() -> EchoIdentity {
    EchoIdentity {
        namespace: "gateway-conformance-infra".into(),
        service: "infra-backend-v1".into(),
        pod: "infra-backend-v1-abc".into(),
    }
}

async fn start() -> Result<EchoServer> {
    Ok(spawn_echo_on_free_port(identity()).await?)
}

async fn send_h1(
    server: &EchoServer,
    req: Request<Full<Bytes>>,
) -> Result<(http::response::Parts, Value)> {
    let stream = TcpStream::connect(server.local_addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let response = sender.send_request(req).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((
        parts,
        serde_json::from_slice(&body).context("echo body is JSON")?,
    ))
}

#[tokio::test]
async fn http1_request_is_echoed() -> Result<()> {
    let server = start().await?;
    let req = Request::post("/some/path?x=1&y=2")
        .header("host", "example.com")
        .header("x-custom", "a")
        .header("x-custom", "b")
        .header("x-echo-set-header", "X-Reply: yes")
        .body(Full::new(Bytes::from_static(b"ignored body")))?;
    let (parts, body) = send_h1(&server, req).await?;

    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["content-type"], "application/json");
    assert_eq!(parts.headers["x-reply"], "yes");
    assert_eq!(body["path"], "/some/path?x=1&y=2");
    assert_eq!(body["host"], "example.com");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["proto"], "HTTP/1.1");
    assert_eq!(body["headers"]["X-Custom"], json!(["a", "b"]));
    assert!(body["headers"].get("Host").is_none());
    assert_eq!(body["namespace"], "gateway-conformance-infra");
    assert_eq!(body["ingress"], "");
    assert_eq!(body["service"], "infra-backend-v1");
    assert_eq!(body["pod"], "infra-backend-v1-abc");
    Ok(())
}

#[tokio::test]
async fn h2c_request_is_echoed() -> Result<()> {
    let server = start().await?;
    let stream = TcpStream::connect(server.local_addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);

    // Two requests on one connection: the h2 session must stay up between them.
    for path in ["/first", "/second?q=v"] {
        let req = Request::get(format!("http://echo.example:8080{path}"))
            .header("x-request-id", "42")
            .body(Full::new(Bytes::new()))?;
        let response = sender.send_request(req).await?;
        assert_eq!(response.status(), 200);
        let body: Value =
            serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
        assert_eq!(body["path"], path);
        assert_eq!(body["host"], "echo.example:8080");
        assert_eq!(body["method"], "GET");
        assert_eq!(body["proto"], "HTTP/2.0");
        assert_eq!(body["headers"]["X-Request-Id"], json!(["42"]));
        assert_eq!(body["service"], "infra-backend-v1");
    }
    Ok(())
}

#[tokio::test]
async fn delay_query_holds_the_response() -> Result<()> {
    let server = start().await?;
    let started = Instant::now();
    let req = Request::get("/?delay=200ms")
        .header("host", "x")
        .body(Full::new(Bytes::new()))?;
    let (parts, _) = send_h1(&server, req).await?;
    assert_eq!(parts.status, 200);
    ensure!(
        started.elapsed() >= Duration::from_millis(200),
        "response was not delayed"
    );

    let req = Request::get("/?delay=soon")
        .header("host", "x")
        .body(Full::new(Bytes::new()))?;
    let (parts, _) = send_h1(&server, req).await?;
    assert_eq!(parts.status, 400);
    Ok(())
}

#[tokio::test]
async fn shutdown_stops_accepting() -> Result<()> {
    let server = start().await?;
    let addr = server.local_addr;
    server.shutdown();
    // The abort lands at the accept task's next poll; give the runtime a moment to run it.
    let deadline = Instant::now() + Duration::from_secs(2);
    while TcpStream::connect(addr).await.is_ok() {
        ensure!(Instant::now() < deadline, "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[tokio::test]
async fn ws_echoes_text_and_binary_frames() -> Result<()> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let server = start().await?;
    let url = format!("ws://{}/ws", server.local_addr);
    let stream = TcpStream::connect(server.local_addr).await?;
    let (mut ws, response) = tokio_tungstenite::client_async(url.as_str(), stream).await?;
    assert_eq!(response.status(), 101);
    for message in [
        Message::text("Websocket Support!"),
        Message::binary(vec![1u8, 2, 3, 4, 5, 6, 7]),
    ] {
        ws.send(message.clone()).await?;
        let echoed = ws.next().await.context("connection closed")??;
        assert_eq!(echoed, message);
    }
    ws.close(None).await?;
    Ok(())
}

#[tokio::test]
async fn ws_without_upgrade_is_refused() -> Result<()> {
    let server = start().await?;
    let stream = TcpStream::connect(server.local_addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let response = sender
        .send_request(Request::get("/ws").body(Full::new(Bytes::new()))?)
        .await?;
    assert_eq!(response.status(), 400);
    Ok(())
}
