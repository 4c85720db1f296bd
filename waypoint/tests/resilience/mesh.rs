//! The mesh a scenario runs in: namespace `shop` using waypoint `waypoint`, Services whose
//! endpoints are Pods (each a [`Backend`] on its own loopback address, labelled `app` and
//! `version` so DestinationRule subsets can pick them), and the same endpoints as Envoy
//! clusters for the side-by-side run.

use super::backends::{Backend, Ledger};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

/// One pod: its backend and `version` label.
pub struct Pod {
    /// The server answering as this pod.
    pub backend: Backend,
    /// The pod's `version` label.
    pub version: String,
    /// The pod's `app` label (its Service selects on it).
    pub app: String,
}

struct Service {
    name: String,
    /// The `app` label it selects.
    app: String,
}

/// The services and pods of one scenario.
pub struct Mesh {
    /// Time zero of the scenario: backends time their hits from it.
    pub start: Instant,
    /// Which pod saw which request id.
    pub ledger: Ledger,
    pods: Vec<Pod>,
    services: Vec<Service>,
}

impl Mesh {
    /// An empty mesh.
    pub fn new() -> Mesh {
        Mesh {
            start: Instant::now(),
            ledger: Ledger::default(),
            pods: Vec::new(),
            services: Vec::new(),
        }
    }

    /// Service `name` (port 80, `http`) and its pods, `(pod name, version label)`, each a
    /// backend on its own loopback address.
    pub async fn service(&mut self, name: &str, pods: &[(&str, &str)]) {
        for (pod, version) in pods {
            // 127.0.0.11, .12, ...: one address per pod, as in a cluster.
            let n = u8::try_from(11 + self.pods.len()).expect("fewer than 240 pods");
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, n));
            let backend = Backend::spawn(pod, ip, &self.ledger, self.start).await;
            self.pods.push(Pod {
                backend,
                version: (*version).to_owned(),
                app: name.to_owned(),
            });
        }
        self.alias(name, name);
    }

    /// Service `name` selecting the pods of service `app` (another name for the same pods).
    pub fn alias(&mut self, name: &str, app: &str) {
        self.services.push(Service {
            name: name.to_owned(),
            app: app.to_owned(),
        });
    }

    /// The pod called `name`.
    pub fn pod(&self, name: &str) -> &Backend {
        &self
            .pods
            .iter()
            .find(|p| p.backend.pod == name)
            .unwrap_or_else(|| panic!("no pod {name}"))
            .backend
    }

    /// The pods behind service `service`, only those of `version` when given.
    pub fn pods_of(&self, service: &str, version: Option<&str>) -> Vec<&Backend> {
        let app = self
            .services
            .iter()
            .find(|s| s.name == service)
            .map(|s| s.app.as_str())
            .unwrap_or_else(|| panic!("no service {service}"));
        self.pods
            .iter()
            .filter(|p| p.app == app && version.is_none_or(|v| p.version == v))
            .map(|p| &p.backend)
            .collect()
    }

    /// The endpoint addresses of [`Mesh::pods_of`].
    pub fn endpoints(&self, service: &str, version: Option<&str>) -> Vec<SocketAddr> {
        self.pods_of(service, version)
            .iter()
            .map(|b| b.addr)
            .collect()
    }

    /// The Kubernetes objects: the namespace, the waypoint Gateway, the Services and the
    /// Pods (their IP in `status.podIP`, their port as the container port `http`).
    pub fn yaml(&self) -> String {
        let mut out = String::from(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {istio.io/use-waypoint: waypoint}\n---\n\
             apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint, namespace: shop}\n\
             spec:\n  gatewayClassName: istio-waypoint\n  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n",
        );
        for (i, s) in self.services.iter().enumerate() {
            let _ = write!(
                out,
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\n\
                 spec:\n  clusterIP: 10.0.0.{ip}\n  selector: {{app: {app}}}\n  ports: [{{name: http, port: 80, targetPort: http}}]\n",
                name = s.name,
                app = s.app,
                ip = 10 + i,
            );
        }
        for p in &self.pods {
            let _ = write!(
                out,
                "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: shop\n  labels: {{app: {app}, version: {version}}}\n\
                 spec:\n  containers: [{{name: app, ports: [{{name: http, containerPort: {port}}}]}}]\n\
                 status: {{podIP: {ip}}}\n",
                pod = p.backend.pod,
                app = p.app,
                version = p.version,
                port = p.backend.addr.port(),
                ip = p.backend.addr.ip(),
            );
        }
        out
    }
}
