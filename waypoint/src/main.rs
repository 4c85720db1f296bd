//! The `waypoint` command line: `run`, `check` and `demo`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use waypoint::snapshot::GatewayRef;

#[derive(Parser)]
#[command(
    name = "waypoint",
    version,
    about = "An L7 waypoint proxy for Istio ambient mesh"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configuration in a folder of Kubernetes YAML/JSON, reloading it on change.
    Run {
        /// Folder of Kubernetes objects (Service, EndpointSlice, Pod, Namespace, ServiceEntry,
        /// Gateway, HTTPRoute), read recursively.
        #[arg(long, value_name = "DIR")]
        config: PathBuf,
        /// The waypoint Gateway to serve, NAMESPACE/NAME (default: the only istio-waypoint Gateway).
        #[arg(long, value_name = "NS/NAME")]
        gateway: Option<GatewayRef>,
        /// Plain HTTP listener (HTTP/1.1 and h2c) for local use and load tests; off by default.
        #[arg(long, value_name = "ADDR")]
        http_listen: Option<SocketAddr>,
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:15000")]
        admin_listen: SocketAddr,
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:15021")]
        ready_listen: SocketAddr,
        /// How long SIGTERM waits for in-flight requests, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
        drain_timeout: f64,
    },
    /// Validate a config folder as `run` would; exits non-zero on any error.
    Check {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[arg(long, value_name = "NS/NAME")]
        gateway: Option<GatewayRef>,
    },
    /// Run the Kiali Travel Demo on loopback: backends, the waypoint and a traffic generator.
    Demo(waypoint::demo::DemoArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal; logs collected by kubelet or a test stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Check { dir, gateway } => {
            let (text, ok) = waypoint::check::check(&dir, gateway.as_ref())?;
            print!("{text}");
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Run {
            config,
            gateway,
            http_listen,
            admin_listen,
            ready_listen,
            drain_timeout,
        } => {
            let opts = waypoint::app::Options {
                config_dir: config,
                gateway,
                http_listen,
                admin_listen,
                ready_listen,
                drain_timeout: Duration::try_from_secs_f64(drain_timeout)
                    .context("--drain-timeout must be a non-negative number of seconds")?,
            };
            runtime()?.block_on(async move {
                let running = waypoint::app::start(opts).await?;
                wait_for_signal().await?;
                tracing::info!("signal received; draining");
                running.shutdown().await;
                Ok(())
            })
        }
        Command::Demo(args) => runtime()?.block_on(waypoint::demo::run(args)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r.context("cannot install Ctrl-C handler")?,
    }
    Ok(())
}
