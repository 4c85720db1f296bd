//! The test client: one request (a [`Probe`]) and what came back (an [`Outcome`]), with its
//! timing, and many of them at once over a shared connection pool.

use super::backends::TEST_ID;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// No request of these tests legitimately takes longer.
const REQUEST_DEADLINE: Duration = Duration::from_secs(15);

/// One request: the Host a mesh client would send, a path, and an optional body. The path
/// (without query) doubles as the request's id (`x-test-id`), so each probe should have its
/// own.
#[derive(Clone, Debug)]
pub struct Probe {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The Host header (`web.shop`).
    pub host: String,
    /// Path and query.
    pub path: String,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// The request body (empty for none).
    pub body: Bytes,
}

impl Probe {
    /// A GET of `path` on `host`.
    pub fn get(host: &str, path: impl Into<String>) -> Probe {
        Probe {
            method: "GET",
            host: host.to_owned(),
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A POST of `body` to `path` on `host`.
    pub fn post(host: &str, path: impl Into<String>, body: Bytes) -> Probe {
        Probe {
            method: "POST",
            body,
            ..Probe::get(host, path)
        }
    }

    /// The probe with one more request header.
    pub fn header(mut self, name: &str, value: &str) -> Probe {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The id both proxies log and the backends record: the path without its query.
    pub fn id(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }
}

/// What came back for one probe.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The probe's id.
    pub id: String,
    /// The status; 0 when no response head arrived at all.
    pub status: u16,
    /// The response headers.
    pub headers: http::HeaderMap,
    /// The body, or why it could not be read to its end.
    pub body: Result<Bytes, String>,
    /// From sending to the response head.
    pub head_after: Duration,
    /// From sending to the end of the body (or its failure).
    pub done_after: Duration,
    /// From sending to the last body bytes received.
    pub last_data_after: Duration,
    /// How many body bytes came (also when the body was cut).
    pub received: usize,
}

impl Outcome {
    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The pod that answered (the backends' `x-pod`), empty when no backend did.
    pub fn pod(&self) -> &str {
        self.header("x-pod").unwrap_or_default()
    }
}

/// A pooled HTTP/1.1 client (one connection per request in flight, kept alive).
#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A new pool.
    pub fn new() -> Client {
        Client {
            inner: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends `probe` to the proxy at `addr`.
    pub async fn send(&self, addr: SocketAddr, probe: &Probe) -> Outcome {
        let started = Instant::now();
        let mut outcome = Outcome {
            id: probe.id().to_owned(),
            status: 0,
            headers: http::HeaderMap::new(),
            body: Err("no response".into()),
            head_after: Duration::ZERO,
            done_after: Duration::ZERO,
            last_data_after: Duration::ZERO,
            received: 0,
        };
        let mut req = http::Request::builder()
            .method(probe.method)
            .uri(format!("http://{addr}{}", probe.path))
            .header(http::header::HOST, &probe.host)
            .header(TEST_ID, probe.id());
        for (name, value) in &probe.headers {
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(probe.body.clone()))
            .expect("probe request");
        let resp = tokio::time::timeout(REQUEST_DEADLINE, self.inner.request(req)).await;
        outcome.head_after = started.elapsed();
        let resp = match resp {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                outcome.body = Err(format!("request failed: {e:?}"));
                outcome.done_after = started.elapsed();
                return outcome;
            }
            Err(_) => {
                outcome.body = Err("no response head within the deadline".into());
                outcome.done_after = started.elapsed();
                return outcome;
            }
        };
        outcome.status = resp.status().as_u16();
        outcome.headers = resp.headers().clone();
        let mut body = resp.into_body();
        let mut received = Vec::new();
        // Frame by frame, to know when the last bytes came: a proxy that cuts a response may
        // close the connection only later (Envoy waits up to its delayed_close_timeout).
        outcome.body = loop {
            match tokio::time::timeout_at(
                tokio::time::Instant::from_std(started) + REQUEST_DEADLINE,
                body.frame(),
            )
            .await
            {
                Ok(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        received.extend_from_slice(data);
                        outcome.received = received.len();
                        outcome.last_data_after = started.elapsed();
                    }
                }
                Ok(None) => break Ok(Bytes::from(received)),
                Ok(Some(Err(e))) => {
                    break Err(format!("body cut after {} bytes: {e}", received.len()))
                }
                Err(_) => break Err("body not done within the deadline".into()),
            }
        };
        outcome.done_after = started.elapsed();
        outcome
    }

    /// Sends `count` probes made by `probe(i)` from `clients` concurrent tasks (each one
    /// request at a time, pausing `pause` after each, as `clients` independent callers would);
    /// the outcomes in probe order.
    pub async fn many(
        &self,
        addr: SocketAddr,
        count: usize,
        clients: usize,
        pause: Duration,
        probe: impl Fn(usize) -> Probe + Send + Sync + 'static,
    ) -> Vec<Outcome> {
        let next = Arc::new(AtomicUsize::new(0));
        let probe = Arc::new(probe);
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (client, next, probe) = (self.clone(), next.clone(), probe.clone());
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return mine;
                    }
                    mine.push((i, client.send(addr, &probe(i)).await));
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
            }));
        }
        let mut all = Vec::with_capacity(count);
        for task in tasks {
            all.extend(task.await.expect("client task"));
        }
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, outcome)| outcome).collect()
    }
}
