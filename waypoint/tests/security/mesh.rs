//! One scenario's world: a config folder as a user writes it (the waypoint's Gateway, Services
//! bound with `istio.io/use-waypoint` whose endpoints are one echo backend on loopback, and the
//! scenario's policies), the mesh CA, and `waypoint run` serving it over HBONE and plain HTTP.

use crate::support::child::Waypoint;
use crate::support::pki::TestCa;
use crate::support::{any_port, echo, write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The namespace every served Service lives in, and the waypoint's Gateway.
pub const NS: &str = "shop";
/// `--gateway` for every scenario.
pub const GATEWAY: &str = "shop/waypoint";

/// A Service of the scenario: its name (host `<name>.shop.svc.cluster.local`) and the last
/// octet of its VIP `10.0.1.<octet>`, all on port 80.
#[derive(Clone, Copy, Debug)]
pub struct Svc {
    pub name: &'static str,
    pub octet: u8,
}

impl Svc {
    /// The Service's host as a mesh client writes it.
    pub fn host(&self) -> String {
        format!("{}.{NS}.svc.cluster.local", self.name)
    }

    /// The CONNECT authority ztunnel sends: the VIP and port.
    pub fn authority(&self) -> String {
        format!("10.0.1.{}:80", self.octet)
    }
}

/// The namespace, the waypoint Gateway, and each Service with an EndpointSlice pointing at
/// `backend`.
pub fn services_yaml(services: &[Svc], backend: SocketAddr) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n  labels: {{istio.io/use-waypoint: waypoint}}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: waypoint, namespace: {NS}}}\n\
         spec:\n  gatewayClassName: istio-waypoint\n  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]\n"
    );
    for s in services {
        out.push_str(&service_yaml(
            NS,
            s.name,
            &format!("10.0.1.{}", s.octet),
            80,
            backend,
        ));
    }
    out
}

/// A Service with one port and an EndpointSlice sending it to `backend`.
pub fn service_yaml(ns: &str, name: &str, vip: &str, port: u16, backend: SocketAddr) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  clusterIP: {vip}\n  ports: [{{name: http, port: {port}}}]\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {name}}}\n\
         addressType: IPv4\nports: [{{name: http, port: {bport}}}]\nendpoints: [{{addresses: [\"{ip}\"]}}]\n",
        bport = backend.port(),
        ip = backend.ip(),
    )
}

/// An AuthorizationPolicy attached to Service `target` of the scenario's namespace, with the
/// spec body given as YAML indented under `spec:` (two spaces).
pub fn policy(name: &str, target: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {NS}}}\n\
         spec:\n  targetRefs: [{{kind: Service, group: \"\", name: {target}}}]\n{spec}"
    )
}

/// A running scenario: the waypoint process, its folders, the CA and the echo backend.
pub struct World {
    pub wp: Waypoint,
    pub ca: TestCa,
    pub config: tempfile::TempDir,
    _certs: tempfile::TempDir,
    _echo: conformance::echo::EchoServer,
    /// Requests whose answer or explanation was wrong: collected so that one run reports
    /// every difference, not only the first; [`World::finish`] fails the test on them.
    failures: std::sync::Mutex<Vec<String>>,
}

impl World {
    /// Starts the echo backend, writes `files(backend)` into a fresh config folder and runs
    /// `waypoint run --config DIR --gateway shop/waypoint --cert-dir D --hbone-listen A
    /// --http-listen B`.
    pub async fn start(files: impl FnOnce(SocketAddr) -> Vec<(&'static str, String)>) -> World {
        let backend = echo("web-0", any_port()).await;
        let ca = TestCa::new("cluster.local");
        let config = tempfile::tempdir().expect("tempdir");
        let certs = tempfile::tempdir().expect("tempdir");
        for (name, text) in files(backend.local_addr) {
            write(config.path(), name, &text);
        }
        ca.write_cert_dir(certs.path(), &ca.issue(NS, "waypoint"));
        let certs_arg = certs.path().to_string_lossy().into_owned();
        let wp = Waypoint::start(
            config.path(),
            &[
                "--gateway",
                GATEWAY,
                "--cert-dir",
                &certs_arg,
                "--hbone-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ],
            "info,access=debug",
        );
        World {
            wp,
            ca,
            config,
            _certs: certs,
            _echo: backend,
            failures: std::sync::Mutex::default(),
        }
    }

    /// Records a wrong answer (printed at once, failed at [`World::finish`]).
    pub fn fail(&self, problem: String) {
        eprintln!("SECURITY TEST FAILURE: {problem}");
        self.failures.lock().expect("lock").push(problem);
    }

    /// Fails the test if any request was answered or explained wrongly.
    pub fn finish(self) {
        let failures = std::mem::take(&mut *self.failures.lock().expect("lock"));
        assert!(
            failures.is_empty(),
            "{} wrong answers:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    /// The config folder.
    pub fn dir(&self) -> &Path {
        self.config.path()
    }

    /// Rewrites one file of the folder and waits until the waypoint logs that it applied a
    /// new configuration.
    pub async fn rewrite(&self, name: &str, text: &str) {
        let reloaded = |wp: &Waypoint| {
            wp.log_lines()
                .iter()
                .filter(|l| l.contains("configuration reloaded"))
                .count()
        };
        let before = reloaded(&self.wp);
        write(self.dir(), name, text);
        let start = std::time::Instant::now();
        while reloaded(&self.wp) == before {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the waypoint did not reload after {name} changed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
