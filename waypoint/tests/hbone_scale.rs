//! 1000 concurrent HBONE tunnels over 10 client connections through the real binary, each
//! carrying an HTTP/1.1 request; the waypoint's resident memory is printed and bounded.

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::child::Waypoint;
use support::hbone_client::connect;
use support::pki::TestCa;
use support::{any_port, echo};

const CONNECTIONS: usize = 10;
const STREAMS: usize = 1000;
/// A generous ceiling: the point is "bounded", not a benchmark (those live in bench/).
const RSS_LIMIT_KIB: u64 = 256 * 1024;
/// For the whole run, not per stream: a wedged waypoint fails the test in minutes, not hours.
const DEADLINE: Duration = Duration::from_secs(120);

/// Holds every stream until all of them have opened their tunnel, like a barrier, except that
/// one failed CONNECT releases everyone with an error at once: a barrier would leave the other
/// 999 tasks waiting for a party that never comes.
#[derive(Clone)]
struct Gate(tokio::sync::watch::Sender<Arrivals>);

#[derive(Clone, Copy, Default)]
struct Arrivals {
    opened: usize,
    broken: bool,
}

impl Gate {
    fn new() -> Gate {
        Gate(tokio::sync::watch::Sender::new(Arrivals::default()))
    }

    fn arrive(&self) {
        self.0.send_modify(|a| a.opened += 1);
    }

    fn break_open(&self) {
        self.0.send_modify(|a| a.broken = true);
    }

    /// Waits until every stream has arrived; fails as soon as any stream broke the gate.
    async fn wait(&self) -> anyhow::Result<()> {
        let mut rx = self.0.subscribe();
        let seen = *rx
            .wait_for(|a| a.broken || a.opened == STREAMS)
            .await
            .map_err(|_| anyhow::anyhow!("gate dropped"))?;
        anyhow::ensure!(!seen.broken, "another stream failed to open its tunnel");
        Ok(())
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_tunnels_over_ten_connections() {
    let ca = TestCa::new("cluster.local");
    let backend = echo("web-a-0", any_port()).await;
    let (config, certs) = support::shop_folders(&ca, &[("a", backend.local_addr)]);
    let certs_arg = certs.path().to_string_lossy().into_owned();
    let wp = Waypoint::start(
        config.path(),
        &["--cert-dir", &certs_arg, "--hbone-listen", "127.0.0.1:0"],
        "warn,waypoint::app=info",
    );
    let hbone = wp.addr("hbone");
    let pid = wp.pid();
    let idle_rss = rss_kib(pid);

    let client = ca.issue("frontend", "load");
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        conns.push(Arc::new(
            connect(hbone, Some(&client), &ca.root_pem())
                .await
                .expect("connect"),
        ));
    }
    // Every tunnel is opened before any request completes: hold all of them open at once.
    let gate = Gate::new();
    let mut tasks = Vec::new();
    for i in 0..STREAMS {
        let conn = conns[i % CONNECTIONS].clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let opened = conn.open(http::Method::CONNECT, "10.0.0.10:80", &[]).await;
            let tunnel = match opened {
                Ok((200, Some(tunnel))) => tunnel,
                other => {
                    gate.break_open();
                    let what = match other {
                        Ok((status, _)) => format!("CONNECT answered {status} (or no tunnel)"),
                        Err(e) => format!("CONNECT failed: {e}"),
                    };
                    anyhow::bail!("stream {i}: {what}");
                }
            };
            gate.arrive();
            gate.wait().await?;
            let (status, body) =
                support::hbone_client::http1_get(tunnel, "web.shop", &format!("/s/{i}")).await?;
            anyhow::ensure!(
                status == 200 && body.contains(&format!("/s/{i}")),
                "stream {i}: {status} {body}"
            );
            Ok(())
        }));
    }
    let mut peak = idle_rss;
    let mut failures = Vec::new();
    let sampler = {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = 0;
            while !d.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        (done, handle)
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    for t in tasks {
        match tokio::time::timeout_at(deadline, t).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => failures.push(e.to_string()),
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(_) => failures.push("timed out".into()),
        }
    }
    sampler.0.store(true, std::sync::atomic::Ordering::Relaxed);
    peak = peak.max(sampler.1.join().unwrap_or(0));
    let after = rss_kib(pid);
    println!(
        "{STREAMS} concurrent HBONE streams over {CONNECTIONS} connections: {} failed; waypoint RSS idle {} MiB, peak {} MiB, after {} MiB",
        failures.len(),
        idle_rss / 1024,
        peak / 1024,
        after / 1024
    );
    drop(wp);
    // The stream that broke the gate says why; the others only say that it did.
    let cause = failures
        .iter()
        .find(|f| !f.contains("another stream"))
        .or(failures.first());
    assert!(
        failures.is_empty(),
        "{} failures, first cause: {cause:?}",
        failures.len(),
    );
    assert!(peak > 0, "could not read the waypoint's RSS");
    assert!(
        peak < RSS_LIMIT_KIB,
        "waypoint RSS peaked at {} MiB",
        peak / 1024
    );
}
