//! The demo's traffic generator: plays the travel portals and travel-control clients against
//! the waypoint and prints what comes back.
//!
//! Requests are HTTP/1.1 GETs over a fixed set of keep-alive connections, paced at a total rate
//! and spread over the flows by weight. A connection is either plain TCP to the waypoint's HTTP
//! listener, or an HBONE tunnel through the waypoint to the flow's service address, as a mesh
//! client's ztunnel would open it. Flows are spread with a smooth weighted round-robin, so that a 9:1 split
//! is visible within a second. Every second a table of the last second (rate, latency, version
//! split from `x-demo-version`) is written next to cumulative status, response flag and retry
//! counts; at the end a cumulative table is written and returned as a [`Report`], whose verdict
//! is the demo's. When the plan knows the pods' request counters ([`Served`]), each label also
//! shows what only the pods see: the waypoint's retries, and pods ejected from the traffic.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use telemetry::ResponseFlag;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{interval_at, sleep_until, timeout, Instant, MissedTickBehavior};

use super::report::{
    classify, flag_of, write_final, write_second, LabelReport, Outcome, Report, Sample,
};
use super::security::FlowSecurity;
use super::served::{PodTally, Served};
use super::waypoint_dialer::{DialError, WaypointDialer};
use requests::{compile_requests, CompiledRequest};

/// Longest a request may take before it counts as a transport error. Generous, because a demo
/// may inject delays, but bounded so that a stuck connection cannot silence a worker for good.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One kind of client traffic: requests for `host`, cycling through `paths`, with the
/// requests its security policies must refuse mixed in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flow {
    /// Destination shown in the summary, e.g. `travels.travel-agency`. Flows may share a label;
    /// their traffic is then summed in one row.
    pub label: String,
    /// Host header to send; this is what the waypoint routes on.
    pub host: String,
    /// The address the client dials, a service `VIP:port`: the CONNECT `:authority` of the
    /// flow's tunnels over HBONE, where it is required. Plain traffic ignores it.
    pub authority: Option<SocketAddr>,
    /// Request paths, used in turn. An empty list means `/`.
    pub paths: Vec<String>,
    /// Share of the total rate, relative to the other flows; 0 disables the flow.
    pub weight: u32,
    /// `namespace/service` of the pods that answer the flow, as [`Served`] names them (the
    /// pods' `app` label): their request counts give the label's retries and ejections.
    pub service: Option<String>,
    /// The token every request of `paths` carries, and the requests to mix in (one after each
    /// round of `paths`) that the destination's policies must refuse.
    pub security: FlowSecurity,
}

/// How requests reach the waypoint.
#[derive(Debug, Clone)]
pub enum Transport {
    /// HTTP/1.1 over TCP to this address: the waypoint's plain HTTP listener (or, in tests, a
    /// backend directly). A worker sends every flow on one connection; the Host header tells
    /// the services apart.
    Plain(SocketAddr),
    /// HTTP/1.1 inside HBONE tunnels opened by this dialer, one per worker and flow authority:
    /// a tunnel reaches one service address, as a client's connection does in a mesh.
    Hbone(Arc<WaypointDialer>),
}

/// What to send, where, and for how long.
#[derive(Debug, Clone)]
pub struct TrafficPlan {
    /// How requests reach the waypoint.
    pub transport: Transport,
    /// What to send.
    pub flows: Vec<Flow>,
    /// Total requests per second over all flows.
    pub rate_per_sec: u32,
    /// Workers, each with its own keep-alive connections (over HBONE, one tunnel per flow
    /// authority), to spread the requests over.
    pub connections: usize,
    /// How long to send (a stop signal may end it earlier).
    pub duration: Duration,
    /// The pods' request counters, if the backends are the demo's own.
    pub served: Option<Served>,
}

/// Sends the plan's traffic until its duration elapses or `stop` turns true, writing a summary
/// table to `out` every second and a cumulative one at the end.
///
/// Fails on an unusable plan (no weighted flow, zero rate or connections, a host that is not a
/// valid header) or when `out` cannot be written; failed requests are counted, not returned.
pub async fn run(
    plan: TrafficPlan,
    mut stop: watch::Receiver<bool>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Report> {
    let compiled = Arc::new(CompiledPlan::new(&plan)?);
    let mut pods = PodTally::new(plan.served.clone(), &compiled.label_services);
    let mut cumulative: Vec<LabelReport> = compiled
        .labels
        .iter()
        .cloned()
        .map(LabelReport::new)
        .collect();
    let mut window = cumulative.clone();

    // Fewer workers than connections when the rate is tiny: an idle connection would only
    // skew the pacing, since each worker sends at rate / workers.
    let workers = plan.connections.min(plan.rate_per_sec as usize);
    let period = Duration::from_secs_f64(workers as f64 / f64::from(plan.rate_per_sec));
    let start = Instant::now();
    let deadline = start + plan.duration;

    let (finish_tx, finish) = watch::channel(false);
    let (samples_tx, mut samples) = mpsc::unbounded_channel();
    let mut tasks = spawn_workers(compiled.clone(), workers, start, period, samples_tx, finish);

    let mut summary = interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    summary.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut window_start = start;
    let mut stop_open = true;
    let until_deadline = sleep_until(deadline);
    tokio::pin!(until_deadline);
    if *stop.borrow_and_update() {
        tasks.abort_all();
    } else {
        loop {
            tokio::select! {
                () = &mut until_deadline => break,
                changed = stop.changed(), if stop_open => match changed {
                    Ok(()) if *stop.borrow_and_update() => break,
                    Ok(()) => {}
                    // Nobody can stop us any more; run for the planned duration.
                    Err(_) => stop_open = false,
                },
                now = summary.tick() => {
                    let heading = format!("t={:.0}s", now.duration_since(start).as_secs_f64());
                    let seconds = now.duration_since(window_start);
                    compiled.note_sent(&mut cumulative);
                    pods.second(&mut window, &mut cumulative);
                    write_second(out, &heading, &window, &cumulative, seconds)?;
                    window.iter_mut().for_each(LabelReport::reset);
                    window_start = now;
                }
                Some(sample) = samples.recv() => {
                    cumulative[sample.label].record(&sample);
                    window[sample.label].record(&sample);
                }
            }
        }
    }
    let elapsed = start.elapsed();
    let _ = finish_tx.send(true);
    wind_down(tasks, samples, &mut cumulative).await;
    compiled.note_sent(&mut cumulative);
    pods.total(&mut cumulative);
    let report = Report::new(cumulative, elapsed);
    write_final(out, &report)?;
    Ok(report)
}

/// Ends a run whose workers were told to finish: each completes the request it has in flight
/// (cutting it off would show up at the waypoint as a client that hung up mid-request), and the
/// responses that completed before the workers stopped still count.
async fn wind_down(
    mut tasks: JoinSet<()>,
    mut samples: mpsc::UnboundedReceiver<Sample>,
    cumulative: &mut [LabelReport],
) {
    let _ = timeout(REQUEST_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    while let Ok(sample) = samples.try_recv() {
        cumulative[sample.label].record(&sample);
    }
}

/// Starts `workers` workers sending at one request per `period` each, from `start` on.
fn spawn_workers(
    plan: Arc<CompiledPlan>,
    workers: usize,
    start: Instant,
    period: Duration,
    samples: mpsc::UnboundedSender<Sample>,
    finish: watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for i in 0..workers {
        // Stagger the workers across one period so the total rate is smooth, not bursts of
        // `workers` requests at once.
        let first = start + period.mul_f64(i as f64 / workers as f64);
        tasks.spawn(worker(
            plan.clone(),
            first,
            period,
            samples.clone(),
            finish.clone(),
        ));
    }
    tasks
}

/// The plan, checked and turned into what workers need per request.
struct CompiledPlan {
    transport: Transport,
    /// Distinct labels, in order of first appearance.
    labels: Vec<String>,
    /// Per label, the service of its first flow that names one.
    label_services: Vec<Option<String>>,
    /// Per label, requests the workers have started.
    sent: Vec<AtomicU64>,
    /// Connections a worker keeps: one for plain traffic, one per distinct authority over
    /// HBONE.
    connections_per_worker: usize,
    flows: Vec<CompiledFlow>,
    picker: Mutex<Picker>,
}

struct CompiledFlow {
    label: usize,
    host: HeaderValue,
    /// The requests to cycle through.
    requests: Vec<CompiledRequest>,
    /// Which of a worker's connections the flow's requests go on.
    connection: usize,
    /// Where that connection goes: the TCP address for plain traffic, the tunnel's CONNECT
    /// `:authority` over HBONE.
    destination: SocketAddr,
}

impl CompiledPlan {
    fn new(plan: &TrafficPlan) -> anyhow::Result<Self> {
        if plan.rate_per_sec == 0 {
            bail!("traffic rate is 0 requests per second; nothing would be sent");
        }
        if plan.connections == 0 {
            bail!("traffic needs at least one connection");
        }
        if plan.flows.iter().all(|f| f.weight == 0) {
            bail!("no traffic flow has a weight above 0; nothing would be sent");
        }
        let mut labels: Vec<String> = Vec::new();
        let mut label_services: Vec<Option<String>> = Vec::new();
        let mut authorities: Vec<SocketAddr> = Vec::new();
        let mut flows = Vec::with_capacity(plan.flows.len());
        for flow in &plan.flows {
            let label = match labels.iter().position(|l| *l == flow.label) {
                Some(i) => i,
                None => {
                    labels.push(flow.label.clone());
                    label_services.push(None);
                    labels.len() - 1
                }
            };
            if label_services[label].is_none() {
                label_services[label].clone_from(&flow.service);
            }
            let host = HeaderValue::from_str(&flow.host).with_context(|| {
                format!(
                    "flow {:?}: host {:?} is not a valid Host header",
                    flow.label, flow.host
                )
            })?;
            let requests =
                compile_requests(flow).with_context(|| format!("flow {:?}", flow.label))?;
            let (connection, destination) = match &plan.transport {
                Transport::Plain(target) => (0, *target),
                Transport::Hbone(_) => {
                    let authority = flow.authority.with_context(|| {
                        format!(
                            "flow {:?} has no address to open an HBONE tunnel to",
                            flow.label
                        )
                    })?;
                    let connection = match authorities.iter().position(|a| *a == authority) {
                        Some(i) => i,
                        None => {
                            authorities.push(authority);
                            authorities.len() - 1
                        }
                    };
                    (connection, authority)
                }
            };
            flows.push(CompiledFlow {
                label,
                host,
                requests,
                connection,
                destination,
            });
        }
        let weights = plan.flows.iter().map(|f| f.weight).collect();
        Ok(Self {
            transport: plan.transport.clone(),
            connections_per_worker: authorities.len().max(1),
            sent: labels.iter().map(|_| AtomicU64::new(0)).collect(),
            labels,
            label_services,
            flows,
            picker: Mutex::new(Picker::new(weights)),
        })
    }

    /// Sets each cumulative report's [`LabelReport::sent`].
    fn note_sent(&self, cumulative: &mut [LabelReport]) {
        for (report, sent) in cumulative.iter_mut().zip(&self.sent) {
            report.sent = sent.load(Ordering::Relaxed);
        }
    }

    /// The next request to send: (flow index, request).
    fn next_request(&self) -> (usize, &CompiledRequest) {
        // The lock only guards a few integer updates, never an await; a poisoned lock still
        // holds valid counters, so keep using it.
        let (flow, turn) = self
            .picker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next();
        let requests = &self.flows[flow].requests;
        (flow, &requests[turn % requests.len()])
    }
}

/// Smooth weighted round-robin (as in nginx): with weights 3:1 the order is a a b a, never
/// a a a b, so even a short window shows the configured split.
#[derive(Debug)]
struct Picker {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
    /// How many times each flow was picked, to cycle through its paths.
    turns: Vec<usize>,
}

impl Picker {
    fn new(weights: Vec<u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        Self {
            total: weights.iter().sum(),
            current: vec![0; weights.len()],
            turns: vec![0; weights.len()],
            weights,
        }
    }

    /// (flow index, how many times that flow was picked before). At least one weight must be
    /// positive, which [`CompiledPlan::new`] checks.
    fn next(&mut self) -> (usize, usize) {
        let mut best = 0;
        for i in 0..self.weights.len() {
            self.current[i] += self.weights[i];
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= self.total;
        let turn = self.turns[best];
        self.turns[best] += 1;
        (best, turn)
    }
}

#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: SocketAddr,
        source: std::io::Error,
    },
    #[error("HBONE: {0}")]
    Tunnel(#[from] DialError),
    #[error("HTTP exchange failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("{0:?} is not a valid request path")]
    InvalidPath(String),
    #[error("no complete response within {REQUEST_TIMEOUT:?}")]
    Timeout,
}

/// One client sending at a fixed pace over its keep-alive connections until `finish` turns true (or the
/// collector is gone).
async fn worker(
    plan: Arc<CompiledPlan>,
    first: Instant,
    period: Duration,
    samples: mpsc::UnboundedSender<Sample>,
    mut finish: watch::Receiver<bool>,
) {
    let mut ticker = interval_at(first, period);
    // If a slow response makes us miss ticks, skip them instead of bursting to catch up: the
    // point is a steady offered rate, and a burst would distort the latency we measure.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut connections: Vec<Option<SendRequest<Empty<Bytes>>>> =
        (0..plan.connections_per_worker).map(|_| None).collect();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = finish.wait_for(|f| *f) => return,
        }
        let (flow_index, request) = plan.next_request();
        let flow = &plan.flows[flow_index];
        plan.sent[flow.label].fetch_add(1, Ordering::Relaxed);
        let began = Instant::now();
        let connection = &mut connections[flow.connection];
        let result = timeout(
            REQUEST_TIMEOUT,
            exchange(connection, &plan.transport, flow, request),
        )
        .await
        .unwrap_or(Err(ExchangeError::Timeout));
        let latency = began.elapsed();
        let (outcome, version) = match result {
            Ok(answer) => (
                classify(request.denial, answer.status, answer.flag, &answer.body),
                answer.version,
            ),
            Err(error) => {
                tracing::debug!(%error, path = request.path, "demo traffic request failed");
                // The connection may be mid-response; never reuse it.
                *connection = None;
                (Outcome::Transport(error.to_string()), None)
            }
        };
        let sample = Sample {
            label: flow.label,
            outcome,
            latency,
            version,
        };
        if samples.send(sample).is_err() {
            return;
        }
    }
}

/// What came back for one request.
struct Answer {
    status: StatusCode,
    flag: Option<ResponseFlag>,
    /// The `x-demo-version` it carried.
    version: Option<String>,
    body: Bytes,
}

/// GETs the request's path on the flow's connection, (re)connecting as needed, and reads the
/// whole body.
async fn exchange(
    connection: &mut Option<SendRequest<Empty<Bytes>>>,
    transport: &Transport,
    flow: &CompiledFlow,
    request: &CompiledRequest,
) -> Result<Answer, ExchangeError> {
    let reused = matches!(connection, Some(sender) if !sender.is_closed());
    let mut sender = match connection.take() {
        Some(sender) if reused => sender,
        _ => connect(transport, flow).await?,
    };
    if let Err(error) = sender.ready().await {
        // A kept-alive connection the server closed between two requests is normal keep-alive
        // behaviour, not a failure to report; a fresh connection failing is.
        if !reused {
            return Err(error.into());
        }
        sender = connect(transport, flow).await?;
        sender.ready().await?;
    }
    let mut builder = Request::get(&request.path).header(HOST, &flow.host);
    if let Some(authorization) = &request.authorization {
        builder = builder.header(AUTHORIZATION, authorization);
    }
    let http_request = builder
        .body(Empty::new())
        .map_err(|_| ExchangeError::InvalidPath(request.path.clone()))?;
    let (response, body) = sender.send_request(http_request).await?.into_parts();
    let version = response
        .headers
        .get("x-demo-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = body.collect().await?.to_bytes();
    let flag = flag_of(response.status, &response.headers, &body);
    *connection = Some(sender);
    Ok(Answer {
        status: response.status,
        flag,
        version,
        body,
    })
}

async fn connect(
    transport: &Transport,
    flow: &CompiledFlow,
) -> Result<SendRequest<Empty<Bytes>>, ExchangeError> {
    match transport {
        Transport::Hbone(dialer) => handshake(dialer.open(flow.destination).await?).await,
        Transport::Plain(_) => {
            let target = flow.destination;
            let stream = TcpStream::connect(target)
                .await
                .map_err(|source| ExchangeError::Connect { target, source })?;
            // Small requests on a kept-alive connection: Nagle would add tens of ms to each.
            stream
                .set_nodelay(true)
                .map_err(|source| ExchangeError::Connect { target, source })?;
            handshake(stream).await
        }
    }
}

/// HTTP/1.1 over `io`, whose connection task runs until the sender is dropped.
async fn handshake(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
) -> Result<SendRequest<Empty<Bytes>>, ExchangeError> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(error) = conn.await {
            tracing::debug!(%error, "demo traffic connection ended");
        }
    });
    Ok(sender)
}

mod requests;
#[cfg(test)]
mod tests;
