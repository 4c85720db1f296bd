//! Test inputs shared by the unit tests: YAML routes, a fake Service registry, requests.

use std::collections::BTreeMap;

use gateway_api::experimental::httproutes::HttpRoute;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::{BackendLookup, RequestView, ServiceKey};

pub fn route(yaml: &str) -> HttpRoute {
    serde_yaml_ng::from_str(yaml).expect("test fixture is a valid HTTPRoute")
}

/// Services of the travel-agency demo: flights:8080,9090 and hotels:8080 in travel-agency.
pub struct FakeLookup {
    services: BTreeMap<(String, String), Vec<u16>>,
}

impl Default for FakeLookup {
    fn default() -> Self {
        let mut services = BTreeMap::new();
        for (name, ports) in [("flights", vec![8080, 9090]), ("hotels", vec![8080])] {
            services.insert(("travel-agency".to_owned(), name.to_owned()), ports);
        }
        services.insert(("granted".to_owned(), "cars".to_owned()), vec![8080]);
        Self { services }
    }
}

impl BackendLookup for FakeLookup {
    fn check_service(&self, service: &ServiceKey, port: u16) -> Result<(), String> {
        let key = (service.namespace.clone(), service.name.clone());
        match self.services.get(&key) {
            None => Err(format!("service {service} not found")),
            Some(ports) if !ports.contains(&port) => {
                Err(format!("service {service} has no port {port}"))
            }
            Some(_) => Ok(()),
        }
    }

    /// Namespace "granted" has a ReferenceGrant open to every route; no other does.
    fn reference_permitted(&self, _from_namespace: &str, to: &ServiceKey) -> bool {
        to.namespace == "granted"
    }
}

/// An owned request that lends out a [`RequestView`].
pub struct TestRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
}

impl TestRequest {
    /// `target` is a path with an optional "?query"; headers are (name, value) pairs, repeated
    /// names appended.
    pub fn new(method: &str, target: &str, headers: &[(&str, &str)]) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
            None => (target.to_owned(), None),
        };
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
                HeaderValue::from_str(value).expect("test header value"),
            );
        }
        Self {
            method: method.to_owned(),
            path,
            query,
            headers: map,
        }
    }

    pub fn get(target: &str) -> Self {
        Self::new("GET", target, &[])
    }

    pub fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
            context: Default::default(),
        }
    }
}
