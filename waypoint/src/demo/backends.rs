//! The Kiali Travel Demo services, served in-process on loopback addresses.
//!
//! Each backend plays one service of the demo (travels, flights, hotels, cars, insurances,
//! discounts and the voyages/viaggi/vacaciones portals) closely enough that the JSON has the
//! real service's shape, with deterministic made-up data: the demo is about what the waypoint
//! does to the traffic, so the payloads only need to look right and stay stable between runs.
//! Every response names the namespace, service, pod and version that produced it in
//! `x-demo-*` headers, which is how the traffic generator shows traffic splits.
//!
//! A pod may also misbehave as its annotations ask ([`Misbehaviour`]: a share of 503s, a
//! latency), and every backend counts the requests it receives ([`Served`]), which is how the
//! summary shows retries and ejections the client cannot see.
//!
//! The answer to a request is decided by the pure [`Behaviour::respond`]; the server around it
//! only does I/O.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::misbehaviour::{Misbehaviour, FAIL_PERCENT};
use super::served::{PodId, Served};

const X_DEMO_SERVICE: HeaderName = HeaderName::from_static("x-demo-service");
const X_DEMO_POD: HeaderName = HeaderName::from_static("x-demo-pod");
const X_DEMO_VERSION: HeaderName = HeaderName::from_static("x-demo-version");

/// One demo backend to start: where it listens and which pod of which service it plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoBackendSpec {
    /// The pod's address (a loopback `podIP:containerPort`).
    pub addr: SocketAddr,
    /// The pod's namespace.
    pub namespace: String,
    /// One of the demo's services: `travels`, `flights`, `hotels`, `cars`, `insurances`,
    /// `discounts`, `voyages`, `viaggi`, `vacaciones`.
    pub service: String,
    /// The pod's name, sent back in `x-demo-pod`.
    pub pod: String,
    /// `v2` of a service adds a field to its answers so that a traffic split is visible in the
    /// payload as well as in the `x-demo-version` header.
    pub version: String,
    /// The 503s and latency the pod's annotations ask for.
    pub misbehaviour: Misbehaviour,
}

/// The running backends. Dropping this (or calling [`DemoBackends::shutdown`]) stops them all.
#[derive(Debug)]
pub struct DemoBackends {
    servers: Vec<RunningBackend>,
    served: Served,
}

#[derive(Debug)]
struct RunningBackend {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl DemoBackends {
    /// The bound addresses, in spec order; with port 0 in a spec, this is where to find it.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|s| s.addr).collect()
    }

    /// The request counters of every pod, in spec order; they keep counting while the
    /// backends run.
    pub fn served(&self) -> Served {
        self.served.clone()
    }

    /// Stops accepting and closes every connection; equivalent to dropping.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for DemoBackends {
    fn drop(&mut self) {
        // Each accept task owns its listener and its connections' JoinSet, so aborting it closes
        // the port and every connection on it.
        for server in &self.servers {
            server.task.abort();
        }
    }
}

/// Binds every spec's address and serves HTTP/1.1 and h2c on it. Fails, stopping whatever was
/// already started, if a service is not part of the demo or an address cannot be bound.
pub async fn spawn_backends(specs: Vec<DemoBackendSpec>) -> anyhow::Result<DemoBackends> {
    let (served, counters) = Served::new(specs.iter().map(|spec| PodId {
        service: format!("{}/{}", spec.namespace, spec.service),
        pod: spec.pod.clone(),
    }));
    let mut backends = DemoBackends {
        servers: Vec::with_capacity(specs.len()),
        served,
    };
    for (spec, counter) in specs.into_iter().zip(counters) {
        let behaviour = Arc::new(Behaviour::for_spec(&spec)?.counting(counter));
        let listener = TcpListener::bind(spec.addr).await.with_context(|| {
            format!(
                "cannot bind demo backend {}/{} ({}) to {}; is the address in use, or (on macOS) \
                 is it missing as a loopback alias (`sudo ifconfig lo0 alias {}`)?",
                spec.namespace,
                spec.service,
                spec.pod,
                spec.addr,
                spec.addr.ip()
            )
        })?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, behaviour));
        backends.servers.push(RunningBackend { addr, task });
    }
    Ok(backends)
}

async fn accept_loop(listener: TcpListener, behaviour: Arc<Behaviour>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let behaviour = behaviour.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |req| serve(req, behaviour.clone()));
                        let builder = auto::Builder::new(TokioExecutor::new());
                        if let Err(error) = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                        {
                            tracing::debug!(%peer, %error, "demo backend connection failed");
                        }
                    });
                }
                // A failed accept concerns one connection (peer reset, fd limit); the listener
                // is still fine, so keep serving.
                Err(error) => tracing::debug!(%error, "demo backend accept failed"),
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(
    req: Request<Incoming>,
    behaviour: Arc<Behaviour>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, mut body) = req.into_parts();
    // Drain the body so the connection stays reusable; no demo endpoint reads one.
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
    let n = behaviour.served.fetch_add(1, Ordering::Relaxed);
    let (delay, status, json) = behaviour.respond(&parts.method, parts.uri.path(), n);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::new(Full::new(Bytes::from(json.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    headers.insert(X_DEMO_SERVICE, behaviour.service_header.clone());
    headers.insert(X_DEMO_POD, behaviour.pod_header.clone());
    headers.insert(X_DEMO_VERSION, behaviour.version_header.clone());
    Ok(response)
}

/// Which demo service a backend plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Travels,
    Flights,
    Hotels,
    Cars,
    Insurances,
    Discounts,
    Portal(&'static Portal),
    /// The travel-control dashboard, which in the real demo sets the portals' request mix.
    Control,
}

#[derive(Debug, PartialEq, Eq)]
struct Portal {
    service: &'static str,
    site: &'static str,
    country: &'static str,
    language: &'static str,
}

const PORTALS: [Portal; 3] = [
    Portal {
        service: "voyages",
        site: "voyages.fr",
        country: "France",
        language: "fr",
    },
    Portal {
        service: "viaggi",
        site: "viaggi.it",
        country: "Italy",
        language: "it",
    },
    Portal {
        service: "vacaciones",
        site: "vacaciones.es",
        country: "Spain",
        language: "es",
    },
];

impl Kind {
    fn from_service(service: &str) -> Option<Self> {
        Some(match service {
            "travels" => Self::Travels,
            "flights" => Self::Flights,
            "hotels" => Self::Hotels,
            "cars" => Self::Cars,
            "insurances" => Self::Insurances,
            "discounts" => Self::Discounts,
            "control" => Self::Control,
            other => Self::Portal(PORTALS.iter().find(|p| p.service == other)?),
        })
    }
}

/// Everything a backend needs to answer, prepared once so the request path only formats JSON.
#[derive(Debug)]
struct Behaviour {
    kind: Kind,
    v2: bool,
    name: String,
    service_header: HeaderValue,
    pod_header: HeaderValue,
    version_header: HeaderValue,
    misbehaviour: Misbehaviour,
    /// Draws the pod's misbehaviour from its name, so two flaky pods fail different requests.
    seed: u64,
    /// Requests received so far; also numbers them for the misbehaviour's draws.
    served: Arc<AtomicU64>,
}

impl Behaviour {
    fn for_spec(spec: &DemoBackendSpec) -> anyhow::Result<Self> {
        let Some(kind) = Kind::from_service(&spec.service) else {
            bail!(
                "demo backend {}/{}: not a Travel Demo service; expected one of travels, \
                 flights, hotels, cars, insurances, discounts, voyages, viaggi, vacaciones, control",
                spec.namespace,
                spec.service
            );
        };
        let name = format!("{}/{}", spec.namespace, spec.service);
        let header = |what: &str, value: &str| {
            HeaderValue::from_str(value).with_context(|| {
                format!("demo backend {name}: {what} {value:?} is not a valid header value")
            })
        };
        Ok(Self {
            kind,
            v2: spec.version == "v2",
            service_header: header("namespace/service", &name)?,
            pod_header: header("pod", &spec.pod)?,
            version_header: header("version", &spec.version)?,
            misbehaviour: spec.misbehaviour,
            seed: fnv1a(&[&spec.namespace, &spec.pod]),
            served: Arc::new(AtomicU64::new(0)),
            name,
        })
    }

    /// The same behaviour, counting its requests in `served`.
    fn counting(self, served: Arc<AtomicU64>) -> Self {
        Self { served, ..self }
    }

    /// How to answer request number `n` (from 0): after how long, with which status and body.
    /// A failing request gets a 503 whatever it asked for, as from a replica in trouble.
    fn respond(&self, method: &Method, path: &str, n: u64) -> (Duration, StatusCode, Value) {
        let decision = self.misbehaviour.decide(self.seed, n);
        let (status, body) = if decision.fail {
            self.error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{} pod {} fails this request on purpose ({FAIL_PERCENT}: {})",
                    self.name,
                    self.pod_header.to_str().unwrap_or_default(),
                    self.misbehaviour.fail_percent
                ),
            )
        } else {
            self.answer(method, path)
        };
        (decision.delay, status, body)
    }

    /// The status and JSON body for `method path`.
    fn answer(&self, method: &Method, path: &str) -> (StatusCode, Value) {
        if method != Method::GET && method != Method::HEAD {
            return self.error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not supported by {}; use GET", self.name),
            );
        }
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let found = match (self.kind, segments.as_slice()) {
            (Kind::Travels, ["travels"]) => Some(self.destinations()),
            (Kind::Travels, ["travels", city]) => city_named(city).map(|c| self.quote(c)),
            (Kind::Flights, ["flights", city]) => city_named(city).map(|c| self.flights(c)),
            (Kind::Hotels, ["hotels", city]) => city_named(city).map(|c| self.hotels(c)),
            (Kind::Cars, ["cars", city]) => city_named(city).map(|c| self.cars(c)),
            (Kind::Insurances, ["insurances", city]) => {
                city_named(city).map(|c| self.insurances(c))
            }
            (Kind::Discounts, ["discounts", user]) => Some(self.discount(user)),
            (Kind::Portal(portal), []) => Some(self.portal_status(portal)),
            (Kind::Control, []) => Some(self.control_status()),
            _ => None,
        };
        match found {
            Some(body) => (StatusCode::OK, body),
            None => self.error(
                StatusCode::NOT_FOUND,
                format!("{} has nothing at {path}", self.name),
            ),
        }
    }

    fn error(&self, status: StatusCode, message: String) -> (StatusCode, Value) {
        (status, json!({ "error": message, "code": status.as_u16() }))
    }

    fn destinations(&self) -> Value {
        CITIES
            .iter()
            .map(|c| {
                json!({
                    "city": c.name,
                    "country": c.country,
                    "coordinates": { "lat": c.lat, "lng": c.lng },
                })
            })
            .collect()
    }

    /// The travels service's quote: what the real one assembles by calling the other four
    /// services, computed locally from the same deterministic tables.
    fn quote(&self, city: &City) -> Value {
        let mut quote = json!({
            "city": city.name,
            "country": city.country,
            "flights": self.flights(city),
            "hotels": self.hotels(city),
            "cars": self.cars(city),
            "insurances": self.insurances(city),
            "status": "Valid",
        });
        if self.v2 {
            quote["currency"] = json!(CURRENCY);
        }
        quote
    }

    fn flights(&self, city: &City) -> Value {
        self.priced(city, "airline", &AIRLINES, 120, 480)
    }

    fn hotels(&self, city: &City) -> Value {
        self.priced(city, "hotel", &HOTELS, 60, 340)
    }

    fn cars(&self, city: &City) -> Value {
        self.priced(city, "carModel", &CAR_MODELS, 25, 140)
    }

    fn insurances(&self, city: &City) -> Value {
        self.priced(city, "company", &INSURERS, 10, 70)
    }

    /// `[{<field>: name, price}]`, one per name, with a price in `base..base + spread` that
    /// depends only on the city and the name.
    fn priced(&self, city: &City, field: &str, names: &[&str], base: u64, spread: u64) -> Value {
        names
            .iter()
            .map(|name| {
                let cents = base * 100 + fnv1a(&[city.name, name]) % (spread * 100);
                let mut item = json!({ field: name, "price": cents as f64 / 100.0 });
                if self.v2 {
                    item["currency"] = json!(CURRENCY);
                }
                item
            })
            .collect()
    }

    fn discount(&self, user: &str) -> Value {
        // 0%, 5%, ..., 20%: a small, stable set so that a user's discount never changes.
        let discount = (fnv1a(&[user]) % 5) as f64 * 0.05;
        let mut body = json!({ "user": user, "discount": discount });
        if self.v2 {
            body["campaign"] = json!("spring-sale");
        }
        body
    }

    fn control_status(&self) -> Value {
        let portals: Vec<Value> = PORTALS
            .iter()
            .map(|p| json!({ "portal": p.site, "requestsPerSecond": 10 }))
            .collect();
        json!({ "dashboard": "travel-control", "portals": portals, "status": "ok" })
    }

    fn portal_status(&self, portal: &Portal) -> Value {
        let mut body = json!({
            "portal": portal.site,
            "country": portal.country,
            "language": portal.language,
            "status": "ok",
        });
        if self.v2 {
            body["theme"] = json!("dark");
        }
        body
    }
}

const CURRENCY: &str = "EUR";
const AIRLINES: [&str; 4] = [
    "Red Airlines",
    "Blue Airlines",
    "Green Airlines",
    "White Airlines",
];
const HOTELS: [&str; 4] = [
    "Grand Hotel",
    "Little Hotel",
    "Central Suites",
    "Budget Inn",
];
const CAR_MODELS: [&str; 4] = ["Sport Car", "Economy Car", "Family Car", "Electric Car"];
const INSURERS: [&str; 3] = ["Yellow Insurances", "Blue Insurances", "Green Insurances"];

#[derive(Debug)]
struct City {
    name: &'static str,
    country: &'static str,
    lat: f64,
    lng: f64,
}

const CITIES: [City; 10] = [
    City {
        name: "Amsterdam",
        country: "Netherlands",
        lat: 52.37,
        lng: 4.90,
    },
    City {
        name: "Athens",
        country: "Greece",
        lat: 37.98,
        lng: 23.73,
    },
    City {
        name: "Berlin",
        country: "Germany",
        lat: 52.52,
        lng: 13.40,
    },
    City {
        name: "Dublin",
        country: "Ireland",
        lat: 53.35,
        lng: -6.26,
    },
    City {
        name: "Lisbon",
        country: "Portugal",
        lat: 38.72,
        lng: -9.14,
    },
    City {
        name: "London",
        country: "United Kingdom",
        lat: 51.51,
        lng: -0.13,
    },
    City {
        name: "Madrid",
        country: "Spain",
        lat: 40.42,
        lng: -3.70,
    },
    City {
        name: "Paris",
        country: "France",
        lat: 48.86,
        lng: 2.35,
    },
    City {
        name: "Rome",
        country: "Italy",
        lat: 41.90,
        lng: 12.50,
    },
    City {
        name: "Stockholm",
        country: "Sweden",
        lat: 59.33,
        lng: 18.07,
    },
];

/// Case-insensitive, so that `/travels/paris` and `/travels/Paris` both work from a shell.
fn city_named(name: &str) -> Option<&'static City> {
    CITIES.iter().find(|c| c.name.eq_ignore_ascii_case(name))
}

/// FNV-1a over the parts (with a separator), chosen over `DefaultHasher` because its output is
/// fixed forever, which keeps the demo data identical across Rust versions.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests;
