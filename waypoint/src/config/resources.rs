//! The Kubernetes and Istio kinds the waypoint reads, and the typed parse of one object.
//!
//! Kubernetes kinds use `k8s-openapi`, Gateway API kinds the `gateway-api` crate (experimental
//! channel types, which keep every field the standard ones do plus `retry` and friends), and
//! Istio kinds our own serde types below.

use super::ObjectRef;
use gateway_api::experimental::gateways::Gateway;
use gateway_api::experimental::grpcroutes::GrpcRoute;
use gateway_api::experimental::httproutes::HttpRoute;
use gateway_api::experimental::listenersets::ListenerSet;
use gateway_api::experimental::referencegrants::ReferenceGrant;
use gateway_api::experimental::tcproutes::TcpRoute;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A typed object from the configuration.
#[derive(Debug)]
pub enum Resource {
    /// A Namespace (its labels bind services and pods to waypoints).
    Namespace(Box<Namespace>),
    /// A Service.
    Service(Box<Service>),
    /// An EndpointSlice.
    EndpointSlice(Box<EndpointSlice>),
    /// A Pod.
    Pod(Box<Pod>),
    /// An Istio ServiceEntry.
    ServiceEntry(Box<ServiceEntry>),
    /// A Gateway.
    Gateway(Box<Gateway>),
    /// An HTTPRoute.
    HttpRoute(Box<HttpRoute>),
    /// A TCPRoute.
    TcpRoute(Box<TcpRoute>),
    /// A GRPCRoute.
    GrpcRoute(Box<GrpcRoute>),
    /// A ListenerSet.
    ListenerSet(Box<ListenerSet>),
    /// A ReferenceGrant.
    ReferenceGrant(Box<ReferenceGrant>),
    /// An Istio VirtualService.
    VirtualService(Box<IstioObject<routing::istio::VirtualServiceSpec>>),
    /// An Istio DestinationRule.
    DestinationRule(Box<IstioObject<resilience::destination_rule::DestinationRuleSpec>>),
    /// An Istio RequestAuthentication. Security specs stay JSON here: `authz` compiles them,
    /// so that an invalid one is loaded fail closed and reported rather than rejecting the
    /// folder (Istio's behaviour for security policies).
    RequestAuthentication(Box<IstioObject<serde_json::Value>>),
    /// An Istio AuthorizationPolicy (spec compiled by `authz::policy`).
    AuthorizationPolicy(Box<IstioObject<serde_json::Value>>),
    /// An Istio PeerAuthentication (spec compiled by `authz::peer`).
    PeerAuthentication(Box<IstioObject<serde_json::Value>>),
    /// A ConfigMap: `istio-system/istio` carries the MeshConfig (`data.mesh`); others are
    /// read and not acted on.
    ConfigMap(Box<ConfigMap>),
    /// A kind this version does not act on. Kept so that it is reported, never silently lost.
    Unsupported {
        /// The apiVersion it was written with.
        api_version: String,
    },
}

/// An Istio object whose spec type lives in the pure crate that compiles it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct IstioObject<S> {
    /// The object's metadata.
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    /// Its spec.
    #[serde(default)]
    pub spec: S,
}

/// Istio `ServiceEntry` (networking.istio.io), the fields a waypoint acts on.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ServiceEntry {
    /// The object's metadata.
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    /// What the ServiceEntry declares.
    #[serde(default)]
    pub spec: ServiceEntrySpec,
}

/// `spec` of a ServiceEntry.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    /// The hostnames clients use.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Its virtual IPs (single addresses; CIDR ranges are not supported).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Its ports.
    #[serde(default)]
    pub ports: Vec<ServiceEntryPort>,
    /// MESH_EXTERNAL or MESH_INTERNAL (read, not acted on).
    pub location: Option<String>,
    /// Parsed once here: an unknown value is an error naming the object and this field.
    pub resolution: Option<Resolution>,
    /// Its static endpoints.
    #[serde(default)]
    pub endpoints: Vec<ServiceEntryEndpoint>,
    /// Namespaces it is visible to (read, not acted on).
    #[serde(default)]
    pub export_to: Vec<String>,
    /// Names its endpoints' certificates must carry (read, not acted on).
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
}

/// How a ServiceEntry's endpoints are found (`spec.resolution`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    /// The address the client connected to is used as is (Istio's default).
    #[default]
    None,
    /// The endpoints listed in the ServiceEntry.
    Static,
    /// The hosts (or endpoints) resolved by DNS, every address used.
    Dns,
    /// The hosts resolved by DNS, the first address used.
    DnsRoundRobin,
}

impl Resolution {
    /// The value as the ServiceEntry writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::None => "NONE",
            Resolution::Static => "STATIC",
            Resolution::Dns => "DNS",
            Resolution::DnsRoundRobin => "DNS_ROUND_ROBIN",
        }
    }
}

/// One port of a ServiceEntry.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntryPort {
    /// The port clients connect to.
    pub number: u32,
    /// HTTP, HTTP2, GRPC, TCP, TLS, …: the port's protocol (Istio's protocol selection).
    pub protocol: Option<String>,
    /// Its name; endpoints' `ports` map it to their own port.
    #[serde(default)]
    pub name: String,
    /// The endpoints' port when they do not map the name.
    pub target_port: Option<u32>,
}

/// One endpoint of a ServiceEntry.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntryEndpoint {
    /// An IP address (DNS names are not supported yet).
    #[serde(default)]
    pub address: String,
    /// Port name to the endpoint's port.
    #[serde(default)]
    pub ports: BTreeMap<String, u32>,
    /// Its labels (read, not acted on).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its service account (read, not acted on).
    pub service_account: Option<String>,
    /// Its load-balancing weight (read, not acted on).
    pub weight: Option<u32>,
    /// Its network (read, not acted on).
    pub network: Option<String>,
    /// Its locality (read, not acted on).
    pub locality: Option<String>,
}

pub(super) struct Parsed {
    pub object: ObjectRef,
    pub resource: Resource,
    pub unknown_fields: Vec<String>,
}

#[derive(Debug)]
pub(super) struct ParseError {
    pub object: Option<ObjectRef>,
    pub field: Option<String>,
    pub reason: String,
}

impl ParseError {
    fn at(object: Option<ObjectRef>, field: &str, reason: impl Into<String>) -> Self {
        ParseError {
            object,
            field: Some(field.to_string()),
            reason: reason.into(),
        }
    }
}

fn str_at<'a>(v: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// Parses one document's value into a typed resource.
pub(super) fn parse_object(mut value: serde_json::Value) -> Result<Parsed, ParseError> {
    if !value.is_object() {
        return Err(ParseError {
            object: None,
            field: None,
            reason: "a document must be a Kubernetes object (a mapping with apiVersion, kind and metadata)".into(),
        });
    }
    let kind = str_at(&value, &["kind"])
        .ok_or_else(|| ParseError::at(None, "kind", "missing: every object needs a kind"))?
        .to_string();
    let api_version = str_at(&value, &["apiVersion"])
        .ok_or_else(|| {
            ParseError::at(
                None,
                "apiVersion",
                "missing: every object needs an apiVersion",
            )
        })?
        .to_string();
    let cluster_scoped = kind == "Namespace";
    let name = str_at(&value, &["metadata", "name"])
        .unwrap_or_default()
        .to_string();
    let namespace = if cluster_scoped {
        String::new()
    } else {
        // Objects without a namespace land in `default`, as `kubectl apply` would put them.
        str_at(&value, &["metadata", "namespace"])
            .unwrap_or("default")
            .to_string()
    };
    let object = ObjectRef {
        kind: kind.clone(),
        namespace,
        name: name.clone(),
    };
    if name.is_empty() {
        return Err(ParseError::at(
            Some(object),
            "metadata.name",
            "missing: every object needs a name",
        ));
    }
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let version = api_version
        .rsplit_once('/')
        .map_or(api_version.as_str(), |(_, v)| v);
    let Some(supported_versions) = supported_versions(group, &kind) else {
        return Ok(Parsed {
            object,
            resource: Resource::Unsupported { api_version },
            unknown_fields: Vec::new(),
        });
    };
    if !supported_versions.contains(&version) {
        return Err(wrong_version(
            object,
            &api_version,
            group,
            supported_versions,
        ));
    }
    // apiVersion and kind were checked above; the typed structs either ignore them or insist on
    // one exact version, so they are taken out before the typed parse.
    if let Some(map) = value.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    let mut unknown_fields = Vec::new();
    let resource = typed_resource(value, &object, &mut unknown_fields)?
        .unwrap_or(Resource::Unsupported { api_version });
    Ok(Parsed {
        object,
        resource,
        unknown_fields,
    })
}

/// The versions of a kind this waypoint reads; `None` for a kind it does not act on.
fn supported_versions(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    let versions: &[&str] = match (group, kind) {
        ("", "Namespace" | "Service" | "Pod" | "ConfigMap") => &["v1"],
        (
            "security.istio.io",
            "RequestAuthentication" | "AuthorizationPolicy" | "PeerAuthentication",
        ) => &["v1", "v1beta1"],
        ("discovery.k8s.io", "EndpointSlice") => &["v1"],
        ("networking.istio.io", "ServiceEntry" | "VirtualService" | "DestinationRule") => {
            &["v1", "v1beta1", "v1alpha3"]
        }
        ("gateway.networking.k8s.io", "Gateway" | "HTTPRoute") => &["v1", "v1beta1"],
        // TCPRoute went GA in Gateway API v1.6; the experimental v1alpha2 types read both.
        ("gateway.networking.k8s.io", "TCPRoute") => &["v1", "v1alpha2"],
        ("gateway.networking.k8s.io", "GRPCRoute") => &["v1"],
        ("gateway.networking.k8s.io", "ListenerSet") => &["v1"],
        ("gateway.networking.k8s.io", "ReferenceGrant") => &["v1", "v1beta1", "v1alpha2"],
        _ => return None,
    };
    Some(versions)
}

/// The error for a known kind in an apiVersion this waypoint does not read, naming the ones
/// it does.
fn wrong_version(
    object: ObjectRef,
    api_version: &str,
    group: &str,
    supported: &[&str],
) -> ParseError {
    let kind = object.kind.clone();
    ParseError::at(
        Some(object),
        "apiVersion",
        format!(
            "{api_version} is not a version of {kind} this waypoint reads; use {}",
            supported
                .iter()
                .map(|v| if group.is_empty() {
                    v.to_string()
                } else {
                    format!("{group}/{v}")
                })
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    )
}

/// The typed object of a kind this waypoint reads; `None` for any other kind.
fn typed_resource(
    value: serde_json::Value,
    object: &ObjectRef,
    unknown_fields: &mut Vec<String>,
) -> Result<Option<Resource>, ParseError> {
    let resource = match object.kind.as_str() {
        "Namespace" => Resource::Namespace(typed(value, object, unknown_fields)?),
        "Service" => Resource::Service(typed(value, object, unknown_fields)?),
        "Pod" => Resource::Pod(typed(value, object, unknown_fields)?),
        "EndpointSlice" => Resource::EndpointSlice(typed(value, object, unknown_fields)?),
        "ServiceEntry" => Resource::ServiceEntry(typed(value, object, unknown_fields)?),
        "VirtualService" => Resource::VirtualService(typed(value, object, unknown_fields)?),
        "DestinationRule" => Resource::DestinationRule(typed(value, object, unknown_fields)?),
        "ConfigMap" => Resource::ConfigMap(typed(value, object, unknown_fields)?),
        "RequestAuthentication" => {
            Resource::RequestAuthentication(typed(value, object, unknown_fields)?)
        }
        "AuthorizationPolicy" => {
            Resource::AuthorizationPolicy(typed(value, object, unknown_fields)?)
        }
        "PeerAuthentication" => Resource::PeerAuthentication(typed(value, object, unknown_fields)?),
        "Gateway" => Resource::Gateway(typed(value, object, unknown_fields)?),
        "HTTPRoute" => Resource::HttpRoute(typed(value, object, unknown_fields)?),
        "TCPRoute" => Resource::TcpRoute(typed(value, object, unknown_fields)?),
        "GRPCRoute" => Resource::GrpcRoute(typed(value, object, unknown_fields)?),
        "ListenerSet" => Resource::ListenerSet(typed(value, object, unknown_fields)?),
        "ReferenceGrant" => Resource::ReferenceGrant(typed(value, object, unknown_fields)?),
        _ => return Ok(None),
    };
    Ok(Some(resource))
}

/// Deserializes with the failing field's path in the error, collecting fields the type does not
/// know (the status block is written by controllers and is not a user setting, so it is skipped).
fn typed<T: DeserializeOwned>(
    value: serde_json::Value,
    object: &ObjectRef,
    unknown: &mut Vec<String>,
) -> Result<Box<T>, ParseError> {
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(value, &mut track);
    let result: Result<T, _> = serde_ignored::deserialize(de, |path| {
        let p = field_path(&path);
        if !p.starts_with("status") {
            unknown.push(p);
        }
    });
    result.map(Box::new).map_err(|e| {
        let path = track.path().to_string();
        ParseError {
            object: Some(object.clone()),
            field: if path == "." || path.is_empty() {
                None
            } else {
                Some(path)
            },
            reason: e.to_string(),
        }
    })
}

/// Renders an ignored field's path as `spec.ports[0].name`, the form every other error uses
/// (serde_ignored's own rendering shows `?` for each optional layer).
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => {
            let p = field_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Parsed, ParseError> {
        let v: serde_json::Value = serde_yaml_ng::from_str(yaml).expect("test yaml");
        parse_object(v)
    }

    #[test]
    fn unknown_kinds_are_kept_as_unsupported() {
        let p = parse("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: a, namespace: n}\n")
            .expect("parses");
        assert!(matches!(p.resource, Resource::Unsupported { .. }));
        assert_eq!(p.object.to_string(), "Telemetry n/a");
    }

    #[test]
    fn unknown_fields_are_reported() {
        let p = parse("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  clusterIP: 10.0.0.1\n  colour: blue\n  ports: [{port: 80, nmae: http}]\n")
            .expect("parses");
        assert_eq!(
            p.unknown_fields,
            vec!["spec.colour".to_string(), "spec.ports[0].nmae".to_string()]
        );
        assert_eq!(p.object.namespace, "default");
    }

    #[test]
    fn wrong_api_version_names_the_right_one() {
        let e = parse(
            "apiVersion: gateway.networking.k8s.io/v9\nkind: HTTPRoute\nmetadata: {name: r}\n",
        )
        .err()
        .expect("fails");
        assert_eq!(e.field.as_deref(), Some("apiVersion"));
        assert!(
            e.reason.contains("gateway.networking.k8s.io/v1"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn missing_name_is_an_error() {
        let e = parse("apiVersion: v1\nkind: Service\nmetadata: {}\n")
            .err()
            .expect("fails");
        assert_eq!(e.field.as_deref(), Some("metadata.name"));
    }

    #[test]
    fn service_entries_parse() {
        let p = parse(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext, namespace: n}\nspec:\n  hosts: [api.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  endpoints: [{address: 127.0.0.5, ports: {http: 8080}}]\n",
        )
        .expect("parses");
        let Resource::ServiceEntry(se) = p.resource else {
            panic!("not a ServiceEntry")
        };
        assert_eq!(se.spec.endpoints[0].ports.get("http"), Some(&8080));
    }

    #[test]
    fn service_entry_resolution_is_parsed_once() {
        let entry = |resolution: &str| {
            parse(&format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: ext, namespace: n}}\nspec:\n  hosts: [api.example.com]\n  resolution: {resolution}\n"))
        };
        for (value, want) in [
            ("NONE", Resolution::None),
            ("STATIC", Resolution::Static),
            ("DNS", Resolution::Dns),
            ("DNS_ROUND_ROBIN", Resolution::DnsRoundRobin),
        ] {
            let Ok(Parsed {
                resource: Resource::ServiceEntry(se),
                ..
            }) = entry(value)
            else {
                panic!("{value} does not parse")
            };
            assert_eq!(se.spec.resolution, Some(want));
            assert_eq!(want.as_str(), value);
        }
        let e = entry("STATICALLY").err().expect("unknown resolution");
        assert_eq!(e.field.as_deref(), Some("spec.resolution"));
        assert_eq!(
            e.object.map(|o| o.to_string()).as_deref(),
            Some("ServiceEntry n/ext")
        );
        assert!(e.reason.contains("STATIC"), "{}", e.reason);
    }
}
