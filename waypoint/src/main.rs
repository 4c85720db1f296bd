//! The `waypoint` command line: `run`, `check`, `explain` and `demo`.

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
    Run(Box<RunArgs>),
    /// Validate a config folder as `run` would; exits non-zero on any error.
    Check {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[arg(long, value_name = "NS/NAME")]
        gateway: Option<GatewayRef>,
        /// Print the Gateway API status (JSON) of the Gateways of --gateway-class and of the
        /// routes naming them, instead of the table; exits 0 whenever the folder was read.
        #[arg(long)]
        status: bool,
        /// The GatewayClass served in the Gateway role.
        #[arg(long, value_name = "NAME", default_value = waypoint::snapshot::GATEWAY_CLASS)]
        gateway_class: String,
        /// The mesh's trust domain unless the MeshConfig (istio-system/istio) sets one.
        #[arg(long, default_value = "cluster.local", env = "TRUST_DOMAIN")]
        trust_domain: String,
    },
    /// Explain what the waypoint would do with one request: the route, each security policy
    /// evaluated and the verdict (last line `verdict: ...`). Exit 0 allowed, 1 refused,
    /// 2 bad input, 3 an ext_authz provider decides.
    Explain(Box<ExplainArgs>),
    /// Run the Kiali Travel Demo on loopback: backends, the waypoint and a traffic generator.
    #[cfg(feature = "demo")]
    Demo(waypoint::demo::DemoArgs),
    /// Not in this build (production builds leave the demo out); run the Kiali Travel Demo
    /// with `cargo run --release -p waypoint --features demo -- demo`.
    #[cfg(not(feature = "demo"))]
    Demo {
        /// Whatever was meant for the demo; it still parses, so the answer can say how to
        /// get a build that has it instead of "unrecognized subcommand".
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
}

/// How to get a waypoint with the demo (the README's first command).
#[cfg(not(feature = "demo"))]
const DEMO_COMMAND: &str = "cargo run --release -p waypoint --features demo -- demo";

#[derive(clap::Args)]
struct ExplainArgs {
    /// The config folder, read as `run` reads it.
    #[arg(long, value_name = "DIR")]
    config: PathBuf,
    /// The Gateway served, as for `run`.
    #[arg(long, value_name = "NS/NAME")]
    gateway: Option<GatewayRef>,
    /// The destination as a mesh client dials it: a service name or address (port 80 by
    /// default); in the Gateway role, the Host and listener port.
    #[arg(long, value_name = "SERVICE[:PORT]")]
    to: String,
    /// The HBONE peer's SPIFFE ID; without it, plaintext on the plain listener.
    #[arg(long, value_name = "SPIFFE-ID")]
    from: Option<String>,
    /// `source.ip` (default 127.0.0.1).
    #[arg(long, value_name = "IP")]
    source_ip: Option<std::net::IpAddr>,
    #[arg(long, default_value = "GET")]
    method: String,
    #[arg(long, default_value = "/")]
    path: String,
    /// A request header, NAME=VALUE; repeatable.
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// A file holding a JWT, sent as `authorization: Bearer <token>`.
    #[arg(long, value_name = "FILE")]
    jwt: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Folder of Kubernetes objects (Service, EndpointSlice, Pod, Namespace, ServiceEntry,
    /// Gateway, HTTPRoute), read recursively.
    #[arg(long, value_name = "DIR")]
    config: PathBuf,
    /// The Gateway to serve, NAMESPACE/NAME (default: the only istio-waypoint Gateway). A
    /// Gateway of another class is served in the Gateway role: its HTTP listeners.
    #[arg(long, value_name = "NS/NAME")]
    gateway: Option<GatewayRef>,
    /// The address the Gateway role's listeners bind.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    gateway_address: std::net::IpAddr,
    /// Added to every Gateway listener port when binding (listener port 80 with offset 20000
    /// binds 20080), so tests and unprivileged runs need no low ports. Routing, redirects and
    /// status still use the listener's own port.
    #[arg(long, value_name = "N", default_value_t = 0)]
    gateway_port_offset: u16,
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
    /// The waypoint's identity in Istio's file layout (cert-chain.pem, key.pem,
    /// root-cert.pem), reloaded on change. Without it (or --ca-address) HBONE is off.
    #[arg(long, value_name = "DIR", conflicts_with = "ca_address")]
    cert_dir: Option<PathBuf>,
    /// Get the identity from the Istio CA (istiod), e.g. https://istiod.istio-system.svc:15012,
    /// and renew it at half its lifetime.
    #[arg(long, value_name = "URL")]
    ca_address: Option<String>,
    /// The root certificate to verify the CA's TLS with (the istio-ca-root-cert ConfigMap).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/var/run/secrets/istio/root-cert.pem"
    )]
    ca_root_cert: PathBuf,
    /// The Kubernetes service-account token sent to the CA (audience istio-ca).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/var/run/secrets/tokens/istio-token"
    )]
    token_path: PathBuf,
    #[arg(long, default_value = "cluster.local", env = "TRUST_DOMAIN")]
    trust_domain: String,
    /// The waypoint pod's namespace and service account: its SPIFFE identity.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    namespace: String,
    #[arg(long, env = "SERVICE_ACCOUNT", default_value = "default")]
    service_account: String,
    #[arg(long, env = "CLUSTER_ID", default_value = "Kubernetes")]
    cluster_id: String,
    /// The HBONE (mTLS HTTP/2 CONNECT) listener.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:15008")]
    hbone_listen: SocketAddr,
    /// The port ambient pods accept HBONE on.
    #[arg(long, value_name = "PORT", default_value_t = 15008)]
    hbone_upstream_port: u16,
}

/// mimalloc instead of glibc malloc: a proxied request allocates and frees dozens of small
/// buffers (header maps, pingora's per-request channel and tasks), and glibc's allocator was
/// ~9 % of the waypoint's CPU under load (bench/results/profile.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Command::Check {
            dir,
            status: true,
            gateway_class,
            ..
        } => {
            println!("{}", waypoint::check::status_json(&dir, &gateway_class)?);
            Ok(())
        }
        Command::Check {
            dir,
            gateway,
            trust_domain,
            ..
        } => {
            let (text, ok) = waypoint::check::check(&dir, gateway.as_ref(), &trust_domain)?;
            print!("{text}");
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Run(args) => serve(*args),
        Command::Explain(args) => {
            let explanation = match explain_request(*args) {
                Ok(request) => runtime()?.block_on(async {
                    waypoint::explain::explain(&request)
                        .await
                        .unwrap_or_else(|e| e.into_explanation())
                }),
                Err(e) => e.into_explanation(),
            };
            print!("{}", explanation.text);
            std::process::exit(explanation.exit);
        }
        #[cfg(feature = "demo")]
        Command::Demo(args) => runtime()?.block_on(waypoint::demo::run(args)),
        #[cfg(not(feature = "demo"))]
        Command::Demo { .. } => {
            // A usage error, not a failure of the proxy: clap's exit status, and no backtrace.
            eprintln!(
                "error: this waypoint was built without the demo (cargo feature `demo`); run `{DEMO_COMMAND}`"
            );
            std::process::exit(2);
        }
    }
}

/// The request `explain` describes, from its flags.
fn explain_request(
    args: ExplainArgs,
) -> Result<waypoint::explain::Request, waypoint::explain::ExplainError> {
    use waypoint::explain::ExplainError::Input;
    let headers = args
        .headers
        .iter()
        .map(|h| {
            h.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| Input(format!("--header {h}: want NAME=VALUE")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let jwt = match &args.jwt {
        None => None,
        Some(file) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| Input(format!("--jwt {}: {e}", file.display())))?,
        ),
    };
    Ok(waypoint::explain::Request {
        config: args.config,
        gateway: args.gateway,
        to: args.to,
        from: args.from,
        source_ip: args.source_ip,
        method: args.method,
        path: args.path,
        headers,
        jwt,
    })
}

/// `waypoint run`: serves until SIGTERM or Ctrl-C, then drains.
fn serve(args: RunArgs) -> anyhow::Result<()> {
    let ca = match args.ca_address {
        None => None,
        Some(address) => {
            let ca_root_pem = if address.starts_with("https://") {
                Some(
                    std::fs::read_to_string(&args.ca_root_cert).with_context(|| {
                        format!(
                            "--ca-root-cert {}: cannot read the CA's root certificate",
                            args.ca_root_cert.display()
                        )
                    })?,
                )
            } else {
                None
            };
            let mut cfg = waypoint::identity::ca::CaClientConfig::new(
                address,
                ca_root_pem,
                args.token_path,
                authz::Identity::new(&args.trust_domain, &args.namespace, &args.service_account),
            );
            cfg.cluster_id = args.cluster_id;
            Some(cfg)
        }
    };
    let opts = waypoint::app::Options {
        config_dir: args.config,
        gateway: args.gateway,
        gateway_address: args.gateway_address,
        gateway_port_offset: args.gateway_port_offset,
        http_listen: args.http_listen,
        admin_listen: args.admin_listen,
        ready_listen: args.ready_listen,
        drain_timeout: Duration::try_from_secs_f64(args.drain_timeout)
            .context("--drain-timeout must be a non-negative number of seconds")?,
        cert_dir: args.cert_dir,
        hbone_listen: args.hbone_listen,
        hbone_upstream_port: args.hbone_upstream_port,
        ca,
        trust_domain: args.trust_domain,
    };
    runtime()?.block_on(async move {
        let running = waypoint::app::start(opts).await?;
        wait_for_signal().await?;
        tracing::info!("signal received; draining");
        running.shutdown().await;
        Ok(())
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Given one core (a CPU limit of 1, or `taskset`), a multi-thread runtime still runs its
    // single worker beside the thread that drives IO, and every wake-up crosses threads; the
    // current-thread runtime polls sockets and tasks on one thread, as Envoy's and nginx's
    // single worker do (bench/results/profile.md has the comparison).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cores == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder
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
