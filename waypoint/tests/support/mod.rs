//! Shared pieces of the waypoint integration tests: an HTTP client that sets the Host header a
//! mesh client would, echo backends, and config folders written on the fly.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod child;
pub mod envoy;
pub mod hbone_client;
pub mod pki;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The echo backend's JSON answer.
    pub fn echo(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The pod of the echo backend that answered.
    pub fn pod(&self) -> String {
        self.echo()["pod"].as_str().unwrap_or("").to_string()
    }
}

pub struct HttpClient {
    inner: Client<HttpConnector, Empty<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    pub fn new() -> Self {
        HttpClient {
            inner: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn get(
        &self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        self.send_method(addr, "GET", host, path, headers).await
    }

    /// The same request over h2c with prior knowledge; the host goes in `:authority`.
    pub async fn get_h2(&self, addr: SocketAddr, host: &str, path: &str) -> anyhow::Result<Reply> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await?;
        tokio::spawn(conn);
        let req = http::Request::builder()
            .uri(format!("http://{host}{path}"))
            .body(Empty::<Bytes>::new())?;
        let resp =
            tokio::time::timeout(Duration::from_secs(10), sender.send_request(req)).await??;
        read(resp).await
    }

    /// A request with any method and no body.
    pub async fn send_method(
        &self,
        addr: SocketAddr,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header(http::header::HOST, host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = tokio::time::timeout(
            Duration::from_secs(10),
            self.inner.request(req.body(Empty::new())?),
        )
        .await??;
        read(resp).await
    }
}

pub async fn read(resp: http::Response<hyper::body::Incoming>) -> anyhow::Result<Reply> {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

pub fn examples_travel() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/travel")
}

pub fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).expect("write config file");
}

/// Options for an in-process waypoint on ephemeral loopback ports.
pub fn local_options(config_dir: &Path) -> waypoint::app::Options {
    waypoint::app::Options {
        http_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        drain_timeout: Duration::from_secs(2),
        ..waypoint::app::Options::local(config_dir.to_path_buf())
    }
}

/// A namespace using waypoint `waypoint`, the Gateway, and Service `web` (port 80) whose
/// EndpointSlices point at the given backends, one Service per backend as `web-<suffix>`.
pub fn mesh_config(backends: &[(&str, SocketAddr)]) -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {istio.io/use-waypoint: waypoint}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint, namespace: shop}\n\
         spec:\n  gatewayClassName: istio-waypoint\n  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  clusterIP: 10.0.0.10\n  ports: [{name: http, port: 80}]\n",
    );
    for (i, (suffix, addr)) in backends.iter().enumerate() {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: web-{suffix}, namespace: shop}}\nspec:\n  clusterIP: 10.0.0.{ip}\n  ports: [{{name: http, port: 80}}]\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-{suffix}-1\n  namespace: shop\n  labels: {{kubernetes.io/service-name: web-{suffix}}}\n\
             addressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints: [{{addresses: [\"{host}\"]}}]\n",
            ip = 20 + i,
            port = addr.port(),
            host = addr.ip(),
        ));
    }
    out
}

/// The config folder of [`mesh_config`] plus a route from `web` to the first backend, and a
/// certificate folder giving the waypoint identity spiffe://<td>/ns/shop/sa/waypoint.
pub fn shop_folders(
    ca: &pki::TestCa,
    backends: &[(&str, SocketAddr)],
) -> (tempfile::TempDir, tempfile::TempDir) {
    let config = tempfile::tempdir().expect("tempdir");
    let certs = tempfile::tempdir().expect("tempdir");
    write(config.path(), "mesh.yaml", &mesh_config(backends));
    if let Some((suffix, _)) = backends.first() {
        write(config.path(), "route.yaml", &route_to(suffix));
    }
    ca.write_cert_dir(certs.path(), &ca.issue("shop", "waypoint"));
    (config, certs)
}

/// An HTTPRoute sending all of `web`'s traffic to `web-<suffix>`.
pub fn route_to(suffix: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: web, namespace: shop}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: web, port: 80}}]\n  rules:\n  - backendRefs: [{{name: web-{suffix}, port: 80}}]\n"
    )
}

pub async fn echo(pod: &str, addr: SocketAddr) -> conformance::echo::EchoServer {
    conformance::echo::spawn_echo(
        addr,
        conformance::echo::EchoIdentity {
            namespace: "shop".into(),
            service: pod.split('-').next().unwrap_or(pod).into(),
            pod: pod.into(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("echo backend {pod} on {addr}: {e}"))
}

pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A TCP server on a free loopback port that runs `handle` on each accepted connection, for
/// the TCP-path tests' backends (each decides what its connections answer).
pub async fn tcp_server<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(handle(s));
        }
    });
    addr
}
