//! `hbone-load`: the benchmarks' HBONE client. It speaks to a waypoint as ztunnel does (mTLS
//! HTTP/2 CONNECT, plain HTTP/1.1 inside the streams), which oha cannot (its CONNECT mode puts
//! TLS inside the tunnel), and writes the PKI both proxies under test share.

mod pki;
mod tunnel;

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tunnel::Tunnel;

/// The identity of the proxies under test: `certs` issues it to OUT/waypoint, and `load` and
/// `hold` accept no other peer.
const WAYPOINT_ID: &str = "spiffe://cluster.local/ns/shop/sa/waypoint";

/// How long `hold` waits for each CONNECT's answer.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Parser)]
#[command(
    name = "hbone-load",
    about = "HBONE load client for the waypoint benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a root CA and Istio-style cert folders: OUT/waypoint (the proxy's identity) and
    /// OUT/client (the load client's), each with cert-chain.pem, key.pem and root-cert.pem.
    Certs {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = WAYPOINT_ID)]
        waypoint_id: String,
        #[arg(long, default_value = "spiffe://cluster.local/ns/client/sa/load")]
        client_id: String,
    },
    /// Send HTTP/1.1 requests through CONNECT tunnels for a while; print a JSON summary.
    Load(LoadArgs),
    /// Open N CONNECT streams and keep them open (for memory measurements): prints one JSON
    /// line once they are open, then holds them until stdin closes or --seconds pass.
    Hold(HoldArgs),
}

#[derive(clap::Args)]
struct Target {
    /// The proxy's HBONE listener.
    #[arg(long)]
    target: SocketAddr,
    /// The CONNECT `:authority`: the destination service's VIP and port (never dialled).
    #[arg(long, default_value = "10.0.0.10:80")]
    authority: String,
    /// The client's Istio cert folder (from `certs`).
    #[arg(long)]
    certs: PathBuf,
    /// The SPIFFE identity the proxy must present (`certs --waypoint-id`).
    #[arg(long, default_value = WAYPOINT_ID)]
    peer_id: authz::Identity,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Long-lived tunnels: each worker keeps one stream and sends requests on it (keep-alive).
    Tunnel,
    /// A new CONNECT stream per request, as ztunnel opens one per application connection.
    ConnectPerRequest,
}

#[derive(clap::Args)]
struct LoadArgs {
    #[command(flatten)]
    target: Target,
    /// The inner request's Host header.
    #[arg(long, default_value = "web.shop.svc.cluster.local")]
    host: String,
    /// The inner request's path.
    #[arg(long, default_value = "/")]
    path: String,
    /// An extra header of the inner request, `Name: value` (repeatable): S3's JWT.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Concurrent streams (workers) per connection.
    #[arg(long, default_value_t = 8)]
    streams: usize,
    #[arg(long, value_enum, default_value_t = Mode::Tunnel)]
    mode: Mode,
    /// Measured time, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured time first, in seconds (connections, caches and the proxy's pools warm up).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

#[derive(clap::Args)]
struct HoldArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long)]
    streams: usize,
    /// Streams per HTTP/2 connection (ztunnel pools about 100).
    #[arg(long, default_value_t = 100)]
    per_connection: usize,
    /// Give up holding after this many seconds even if stdin stays open.
    #[arg(long, default_value_t = 120.0)]
    seconds: f64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Certs {
            out,
            waypoint_id,
            client_id,
        } => pki::write_cert_dirs(&out, &[("waypoint", waypoint_id), ("client", client_id)]),
        Command::Load(args) => runtime()?.block_on(load(args)),
        Command::Hold(args) => {
            let runtime = runtime()?;
            let result = runtime.block_on(hold(args));
            // The stdin reader may still be blocked in read(); don't wait for it.
            runtime.shutdown_background();
            result
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

/// What one worker saw in the measured window.
#[derive(Default)]
struct Tally {
    ok: u64,
    non_200: u64,
    errors: u64,
    first_error: Option<String>,
    /// Latency of each complete 200, in microseconds.
    latencies_us: Vec<u32>,
}

impl Tally {
    fn error(&mut self, e: anyhow::Error) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{e:#}"));
        }
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.non_200 += other.non_200;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies_us.extend(other.latencies_us);
    }
}

async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let tls = tunnel::client_config(&args.target.certs, &args.target.peer_id)?;
    for header in &args.headers {
        anyhow::ensure!(
            header.contains(':') && !header.contains(['\r', '\n']),
            "--header {header:?}: want one `Name: value` line"
        );
    }
    let extra: String = args.headers.iter().map(|h| format!("{h}\r\n")).collect();
    let request = Bytes::from(format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hbone-load\r\n{extra}\r\n",
        args.path, args.host
    ));
    let mut senders = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        senders.push(tunnel::connect(args.target.target, tls.clone()).await?);
    }
    let start = Instant::now();
    let measure_from = start + Duration::try_from_secs_f64(args.warmup).context("--warmup")?;
    let until = measure_from + Duration::try_from_secs_f64(args.duration).context("--duration")?;
    let mut workers = tokio::task::JoinSet::new();
    for sender in &senders {
        for _ in 0..args.streams {
            let sender = sender.clone();
            let authority = args.target.authority.clone();
            let request = request.clone();
            let mode = args.mode;
            workers.spawn(async move {
                worker(sender, authority, request, mode, measure_from, until).await
            });
        }
    }
    let mut total = Tally::default();
    while let Some(tally) = workers.join_next().await {
        total.merge(tally.context("worker panicked")?);
    }
    let seconds = args.duration;
    total.latencies_us.sort_unstable();
    let summary = json!({
        "mode": match args.mode { Mode::Tunnel => "tunnel", Mode::ConnectPerRequest => "connect-per-request" },
        "connections": args.connections,
        "streams_per_connection": args.streams,
        "seconds": seconds,
        "ok": total.ok,
        "non_200": total.non_200,
        "errors": total.errors,
        "first_error": total.first_error,
        "rps": total.ok as f64 / seconds,
        "p50_ms": percentile_ms(&total.latencies_us, 0.50),
        "p99_ms": percentile_ms(&total.latencies_us, 0.99),
        "max_ms": percentile_ms(&total.latencies_us, 1.0),
    });
    println!("{summary}");
    Ok(())
}

/// A closed loop: one request at a time, the next as soon as the previous completes. Only the
/// requests that start inside the measured window count.
async fn worker(
    sender: h2::client::SendRequest<Bytes>,
    authority: String,
    request: Bytes,
    mode: Mode,
    measure_from: Instant,
    until: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut open: Option<Tunnel> = None;
    loop {
        let started = Instant::now();
        if started >= until {
            break;
        }
        let measured = started >= measure_from;
        let result = async {
            let mut tunnel = match open.take() {
                Some(t) => t,
                None => Tunnel::open(&sender, &authority).await?,
            };
            let status = tunnel.exchange(&request).await?;
            match mode {
                Mode::Tunnel => open = Some(tunnel),
                Mode::ConnectPerRequest => tunnel.close(),
            }
            anyhow::Ok(status)
        }
        .await;
        if !measured {
            continue;
        }
        match result {
            Ok(200) => {
                tally.ok += 1;
                let us = started.elapsed().as_micros();
                tally
                    .latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Ok(_) => tally.non_200 += 1,
            Err(e) => {
                tally.error(e);
                // A broken tunnel or connection: back off a little rather than spin on errors.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    if let Some(t) = open {
        t.close();
    }
    tally
}

fn percentile_ms(sorted_us: &[u32], q: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    // Nearest rank: the smallest sample with at least q of the samples at or below it.
    let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    Some(f64::from(sorted_us[rank - 1]) / 1000.0)
}

async fn hold(args: HoldArgs) -> anyhow::Result<()> {
    let tls = tunnel::client_config(&args.target.certs, &args.target.peer_id)?;
    let per_connection = args.per_connection.max(1);
    let mut held = Vec::with_capacity(args.streams);
    let mut failed = 0usize;
    let mut first_error = None;
    let mut senders = Vec::new();
    let started = Instant::now();
    let mut remaining = args.streams;
    while remaining > 0 {
        let batch = remaining.min(per_connection);
        remaining -= batch;
        let sender = tunnel::connect(args.target.target, tls.clone()).await?;
        let mut opening = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let sender = sender.clone();
            let authority = args.target.authority.clone();
            opening.spawn(async move {
                // A proxy that queues the CONNECT instead of answering must not hang the run.
                tokio::time::timeout(OPEN_TIMEOUT, Tunnel::open(&sender, &authority))
                    .await
                    .unwrap_or_else(|_| {
                        Err(anyhow::anyhow!("no CONNECT answer in {OPEN_TIMEOUT:?}"))
                    })
            });
        }
        while let Some(result) = opening.join_next().await {
            match result.context("opener panicked")? {
                Ok(t) => held.push(t),
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
        senders.push(sender);
    }
    println!(
        "{}",
        json!({
            "open": held.len(),
            "failed": failed,
            "connections": senders.len(),
            "first_error": first_error,
            "open_seconds": started.elapsed().as_secs_f64(),
        })
    );
    let limit = Duration::try_from_secs_f64(args.seconds).context("--seconds")?;
    // Hold until the benchmark closes our stdin (it has measured), or the limit passes.
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    });
    let _ = tokio::time::timeout(limit, stdin_closed).await;
    drop(held);
    Ok(())
}
