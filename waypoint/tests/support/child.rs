//! The real `waypoint` binary as a child process, with its log lines collected so a test can
//! find the addresses it bound and check what it logged.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Waypoint {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// The addresses the startup line reported (`http=`, `hbone=`, `admin=`, `ready=`).
    pub addrs: std::collections::HashMap<String, SocketAddr>,
}

impl Waypoint {
    /// Runs `waypoint run --config DIR <extra>` on ephemeral loopback ports.
    pub fn start(config: &std::path::Path, extra: &[&str], rust_log: &str) -> Waypoint {
        let mut child = Command::new(env!("CARGO_BIN_EXE_waypoint"))
            .args(["run", "--config"])
            .arg(config)
            .args([
                "--admin-listen",
                "127.0.0.1:0",
                "--ready-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("RUST_LOG", rust_log)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn waypoint");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("waypoint started") {
                    let _ = tx.send(line.clone());
                }
                eprintln!("waypoint| {line}");
                sink.lock().expect("log lock").push(line);
            }
        });
        let started = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("waypoint logs its start line");
        let addrs = started
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect();
        Waypoint { child, log, addrs }
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        *self
            .addrs
            .get(name)
            .unwrap_or_else(|| panic!("no {name}= address in the start line: {:?}", self.addrs))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every log line so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Whether one log line contains all of `needles`.
    pub fn log_contains(&self, needles: &[&str]) -> bool {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .any(|l| needles.iter().all(|n| l.contains(n)))
    }

    /// Waits up to `within` for such a line.
    pub async fn wait_for_log(&self, needles: &[&str], within: Duration) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < within {
            if self.log_contains(needles) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// Runs `waypoint check DIR`: its exit code and what it printed (stdout, then stderr).
pub fn check(dir: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_waypoint"))
        .arg("check")
        .arg(dir)
        .output()
        .expect("run waypoint check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

impl Drop for Waypoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
