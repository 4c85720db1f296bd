//! The waypoint under test, as a child process: found (or built), started with a config
//! folder, and known to be up once it logs its `waypoint started` line.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const START_TIMEOUT: Duration = Duration::from_secs(20);
const STDERR_TAIL: usize = 40;

/// Builds the waypoint binary with cargo (so the runner always tests the current source) and
/// returns the executable cargo reports.
pub fn build_waypoint(workspace: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "-p",
            "waypoint",
            "--bin",
            "waypoint",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run cargo to build the waypoint: {e}"))?;
    if !output.status.success() {
        anyhow::bail!("`cargo build -p waypoint` failed; fix the build or pass --waypoint PATH");
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m.get("reason").and_then(|r| r.as_str()) == Some("compiler-artifact"))
        .filter(|m| m.pointer("/target/name").and_then(|n| n.as_str()) == Some("waypoint"))
        .find_map(|m| m.get("executable")?.as_str().map(PathBuf::from))
        .ok_or_else(|| anyhow::anyhow!("cargo built no `waypoint` executable"))
}

/// A running waypoint; killed when dropped.
#[derive(Debug)]
pub struct WaypointProcess {
    child: Child,
    /// The key=value pairs of the start line (`http`, `hbone`, `admin`, `ready`, ...).
    pub started: BTreeMap<String, String>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl WaypointProcess {
    pub async fn start(bin: &Path, args: &[String]) -> Result<WaypointProcess, String> {
        let mut child = Command::new(bin)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("WAYPOINT_LOG").unwrap_or_else(|_| "info".into()),
            )
            // A start-up error should read as its message, not as a stack trace.
            .env("RUST_LIB_BACKTRACE", "0")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stderr = child.stderr.take().ok_or("waypoint stderr not captured")?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        {
            let tail = tail.clone();
            tokio::spawn(async move {
                let mut started_tx = Some(started_tx);
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains("waypoint started") {
                        if let Some(tx) = started_tx.take() {
                            let _ = tx.send(key_values(&line));
                        }
                    }
                    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                    if t.len() == STDERR_TAIL {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            });
        }
        let mut proc = WaypointProcess {
            child,
            started: BTreeMap::new(),
            tail,
        };
        match tokio::time::timeout(START_TIMEOUT, started_rx).await {
            Ok(Ok(started)) => {
                proc.started = started;
                Ok(proc)
            }
            Ok(Err(_)) => {
                // stderr closed without the start line: the process exited. Give the reader
                // a moment to store the last lines, which say why.
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(format!(
                    "waypoint exited before starting: {}",
                    proc.stderr_tail()
                ))
            }
            Err(_) => Err(format!(
                "waypoint did not log `waypoint started` within {START_TIMEOUT:?}: {}",
                proc.stderr_tail()
            )),
        }
    }

    pub fn addr(&self, key: &str) -> Option<SocketAddr> {
        self.started.get(key)?.parse().ok()
    }

    /// The last lines the waypoint logged, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let t = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let lines: Vec<&str> = t.iter().rev().take(6).map(String::as_str).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `key=value` tokens of a log line (quotes around values removed).
fn key_values(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|tok| tok.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

/// Waits until `addr` accepts TCP connections (a listener is up), for at most `within`.
pub async fn wait_for_port(addr: SocketAddr, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `waypoint check DIR --gateway-class waypoint --status`: the status JSON on stdout.
pub async fn check_status(bin: &Path, dir: &Path, class: &str) -> Result<String, String> {
    let output = Command::new(bin)
        .arg("check")
        .arg(dir)
        .args(["--gateway-class", class, "--status"])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run `waypoint check`: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // One line per failure in the report.
        let short: String = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" | ")
            .chars()
            .take(600)
            .collect();
        return Err(format!(
            "`waypoint check --status` exited with {}: {short}",
            output.status
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_line_fields() {
        let line = "2025-01-01T00:00:00Z  INFO waypoint::app: waypoint started gateway=ns/wp version=1 served=3 http=off hbone=127.0.0.1:40001 admin=127.0.0.1:40002 ready=127.0.0.1:40003";
        let kv = key_values(line);
        assert_eq!(kv.get("hbone").map(String::as_str), Some("127.0.0.1:40001"));
        assert_eq!(kv.get("http").map(String::as_str), Some("off"));
        assert_eq!(kv.get("gateway").map(String::as_str), Some("ns/wp"));
    }
}
