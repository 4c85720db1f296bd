//! The backends behind the proxy under test: tiny HTTP/1.1 servers on their own loopback
//! address (one per pod), each a normal echo that names the pod that answered, and that the
//! request itself can ask to misbehave, so one server serves every scenario:
//!
//! - `?hold=50ms`: hold the response (headers included) that long — a slow backend;
//! - `?trickle=100ms`: send the headers at once, then one body byte that often, 30 times;
//! - `?fail-first=N[&fail-status=S]`: the first N sightings of this request's id (the
//!   `x-test-id` header), counted across every pod sharing the [`Ledger`], answer S (503);
//!   `fail-mode=reset` closes the connection instead of answering, `fail-mode=hold` holds
//!   those sightings for `hold` (and answers the others at once);
//! - [`Backend::set_failing`]: answer 503 to everything from now on (a pod going bad mid-load);
//!   [`Backend::stop`]: refuse connections (a pod gone).
//!
//! Every answer carries `x-pod` (who answered), `x-seen-path` and `x-seen-host` (what arrived,
//! for rewrites) and `x-body-len` (the request body length received, for replays).
//! The server counts requests in flight and remembers the most ever seen at once.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The header naming a request across its attempts (and in both proxies' access logs).
pub const TEST_ID: &str = "x-test-id";

/// Which pods saw each request id, in order, across every pod of a test: the retry checks
/// read which endpoint each attempt reached.
#[derive(Clone, Default)]
pub struct Ledger(Arc<Mutex<HashMap<String, Vec<String>>>>);

impl Ledger {
    /// Records that `pod` saw `id`; returns how many sightings came before this one.
    fn record(&self, id: &str, pod: &str) -> usize {
        let mut seen = self.0.lock().expect("ledger lock");
        let pods = seen.entry(id.to_owned()).or_default();
        pods.push(pod.to_owned());
        pods.len() - 1
    }

    /// The pods that saw `id`, one per attempt, in order.
    pub fn attempts(&self, id: &str) -> Vec<String> {
        let seen = self.0.lock().expect("ledger lock");
        seen.get(id).cloned().unwrap_or_default()
    }
}

struct State {
    pod: String,
    start: Instant,
    ledger: Ledger,
    failing: AtomicBool,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// When each request arrived, from the test's start.
    hits: Mutex<Vec<Duration>>,
}

/// A running backend; dropping it stops accepting connections.
pub struct Backend {
    /// The pod name it answers as.
    pub pod: String,
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// A backend answering as `pod` on `ip` (any free port), recording sightings in `ledger`
    /// and hit times from `start`.
    pub async fn spawn(pod: &str, ip: IpAddr, ledger: &Ledger, start: Instant) -> Backend {
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .unwrap_or_else(|e| panic!("bind backend {pod} on {ip}: {e}"));
        let addr = listener.local_addr().expect("backend address");
        let state = Arc::new(State {
            pod: pod.to_owned(),
            start,
            ledger: ledger.clone(),
            failing: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            hits: Mutex::default(),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                let service = service_fn(move |req| answer(state.clone(), req));
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend {
            pod: pod.to_owned(),
            addr,
            state,
            task,
        }
    }

    /// Stops listening: new connections are refused, as to a pod that went away.
    pub fn stop(&self) {
        self.task.abort();
    }

    /// From now on every request gets 503 (`false`: back to normal).
    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    /// When each request so far arrived, from the test's start.
    pub fn hits(&self) -> Vec<Duration> {
        self.state.hits.lock().expect("hits lock").clone()
    }

    /// The most requests ever in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Reply = http::Response<BoxBody<Bytes, Infallible>>;

async fn answer(
    state: Arc<State>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<Reply, std::io::Error> {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    // The whole body first, as a real service would before answering: a proxy's replay (or
    // not) of it is what the retry checks look at.
    let body_len = body.collect().await.map_or(0, |b| b.to_bytes().len());
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let id = header(TEST_ID);
    let sighting = state.ledger.record(&id, &state.pod);
    state
        .hits
        .lock()
        .expect("hits lock")
        .push(state.start.elapsed());
    let params: HashMap<&str, &str> = parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let param = |name: &str| params.get(name).copied();
    let duration = |name: &str| param(name).and_then(conformance::echo::parse_go_duration);
    let fail_first: usize = param("fail-first")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let fail_now = sighting < fail_first;
    let mode = param("fail-mode").unwrap_or("status");
    let status = if state.failing.load(Ordering::SeqCst) {
        503
    } else if fail_now && mode == "status" {
        param("fail-status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(503)
    } else {
        200
    };
    if fail_now && mode == "reset" {
        // hyper closes the connection without an answer when the service fails.
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        return Err(std::io::Error::other("asked to reset"));
    }
    if let Some(hold) = duration("hold").filter(|_| mode != "hold" || fail_now) {
        tokio::time::sleep(hold).await;
    }
    let body = match duration("trickle") {
        Some(every) => Trickle::new(every, 30).boxed(),
        None => Full::new(Bytes::from(format!("{}\n", state.pod))).boxed(),
    };
    let mut resp = http::Response::new(body);
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    let seen_path = parts.uri.path_and_query().map_or("", |p| p.as_str());
    for (name, value) in [
        ("x-pod", state.pod.as_str()),
        ("x-seen-path", seen_path),
        ("x-seen-host", &header("host")),
        ("x-body-len", &body_len.to_string()),
    ] {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            resp.headers_mut().insert(name, value);
        }
    }
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    Ok(resp)
}

/// A body that sends one byte every `every`, `left` times: a backend that answers at once and
/// then trickles.
struct Trickle {
    every: Duration,
    left: u32,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Trickle {
    fn new(every: Duration, left: u32) -> Self {
        Trickle {
            every,
            left,
            sleep: Box::pin(tokio::time::sleep(every)),
        }
    }
}

impl Body for Trickle {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.left -= 1;
        let next = tokio::time::Instant::now() + self.every;
        self.sleep.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b".")))))
    }
}
