//! VirtualService spec types (Istio `networking.istio.io/v1`): every field a waypoint acts on
//! or reports; unknown fields are reported by the config layer.

pub use resilience::destination_rule::PortSelector;
use resilience::{HttpFaultInjection, HttpRetry, Percent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `spec` of a VirtualService.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    /// The hosts the rules apply to (short names resolve in the VirtualService's namespace).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Gateways and sidecars the rules apply to; empty or `mesh` means mesh traffic, which a
    /// waypoint serves.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// HTTP rules, in order: the first that matches wins.
    #[serde(default)]
    pub http: Vec<VsHttpRoute>,
    /// TLS rules (not applied by a waypoint's HTTP path; reported).
    #[serde(default)]
    pub tls: Vec<serde_json::Value>,
    /// TCP rules (not applied yet; reported).
    #[serde(default)]
    pub tcp: Vec<serde_json::Value>,
    /// Namespaces the VirtualService is visible to (`.` its own, `*` all).
    #[serde(default)]
    pub export_to: Vec<String>,
}

/// One `http[]` rule.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VsHttpRoute {
    /// The rule's name (route name in logs).
    pub name: Option<String>,
    /// Match conditions: any one matching selects the rule; none matches everything.
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<HttpRouteDestination>,
    /// Redirect instead of forwarding.
    pub redirect: Option<HttpRedirect>,
    /// Answer directly instead of forwarding.
    pub direct_response: Option<HttpDirectResponse>,
    /// Delegation to another VirtualService (not supported at a waypoint; reported).
    pub delegate: Option<serde_json::Value>,
    /// URI and authority rewrite.
    pub rewrite: Option<HttpRewrite>,
    /// Timeout for the whole request, all retries included (Istio duration).
    pub timeout: Option<String>,
    /// Retry policy.
    pub retries: Option<HttpRetry>,
    /// Fault injection.
    pub fault: Option<HttpFaultInjection>,
    /// Single mirror destination (older form).
    pub mirror: Option<VsDestination>,
    /// Share of requests mirrored to `mirror`.
    pub mirror_percentage: Option<Percent>,
    /// Mirror destinations, each with its own share.
    #[serde(default)]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// CORS policy.
    pub cors_policy: Option<CorsPolicy>,
    /// Header edits for every destination of the rule.
    pub headers: Option<Headers>,
}

/// A string condition: exactly one of the three.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StringMatch {
    /// Equal to.
    pub exact: Option<String>,
    /// Starts with.
    pub prefix: Option<String>,
    /// RE2-style regular expression matching the whole value.
    pub regex: Option<String>,
}

/// One `match[]` entry: every condition set must hold.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatchRequest {
    /// Name, appended to the route name.
    pub name: Option<String>,
    /// The path.
    pub uri: Option<StringMatch>,
    /// `http` or `https`.
    pub scheme: Option<StringMatch>,
    /// The method.
    pub method: Option<StringMatch>,
    /// The Host / :authority.
    pub authority: Option<StringMatch>,
    /// Header conditions (names lower case); an empty match object tests presence.
    #[serde(default)]
    pub headers: BTreeMap<String, StringMatch>,
    /// The service port the request arrived on.
    pub port: Option<u32>,
    /// Source workload labels (sidecar only: not applied at a waypoint; reported).
    #[serde(default)]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways the condition applies to.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Query parameter conditions.
    #[serde(default)]
    pub query_params: BTreeMap<String, StringMatch>,
    /// Case-insensitive `uri` matching.
    pub ignore_uri_case: Option<bool>,
    /// Headers that must not match.
    #[serde(default)]
    pub without_headers: BTreeMap<String, StringMatch>,
    /// The client's namespace.
    pub source_namespace: Option<String>,
    /// Stats prefix (read, not acted on).
    pub stat_prefix: Option<String>,
}

/// Where a rule sends traffic.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VsDestination {
    /// A service host (short names resolve in the VirtualService's namespace).
    #[serde(default)]
    pub host: String,
    /// A DestinationRule subset of that host.
    pub subset: Option<String>,
    /// The service port; may be left out when the service has one port.
    pub port: Option<PortSelector>,
}

/// One weighted destination of a rule.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteDestination {
    /// Where.
    #[serde(default)]
    pub destination: VsDestination,
    /// Relative weight; left out on a single destination means all traffic.
    pub weight: Option<i32>,
    /// Header edits for this destination.
    pub headers: Option<Headers>,
}

/// Request and response header edits.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Headers {
    /// Edits on the request sent upstream.
    pub request: Option<HeaderOperations>,
    /// Edits on the response sent downstream.
    pub response: Option<HeaderOperations>,
}

/// `set`, `add`, `remove`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct HeaderOperations {
    /// Overwrite.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Append.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `redirect`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRedirect {
    /// Replaces the path.
    pub uri: Option<String>,
    /// Replaces the authority.
    pub authority: Option<String>,
    /// Replaces the port.
    pub port: Option<u32>,
    /// `FROM_PROTOCOL_DEFAULT` or `FROM_REQUEST_PORT`.
    pub derive_port: Option<String>,
    /// Replaces the scheme.
    pub scheme: Option<String>,
    /// Status (default 301).
    pub redirect_code: Option<u32>,
}

/// `directResponse`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct HttpDirectResponse {
    /// The status.
    #[serde(default)]
    pub status: u32,
    /// The body.
    pub body: Option<HttpBody>,
}

/// A direct response body.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct HttpBody {
    /// Text.
    pub string: Option<String>,
    /// Base64 bytes.
    pub bytes: Option<String>,
}

/// `rewrite`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRewrite {
    /// Replaces the matched prefix (or the whole path for exact/regex matches).
    pub uri: Option<String>,
    /// Replaces the authority.
    pub authority: Option<String>,
    /// Regex rewrite of the path.
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// `uriRegexRewrite`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct RegexRewrite {
    /// The pattern.
    #[serde(default, rename = "match")]
    pub pattern: String,
    /// The replacement (`\1` style groups).
    #[serde(default)]
    pub rewrite: String,
}

/// `mirrors[]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct HttpMirrorPolicy {
    /// Where copies go.
    #[serde(default)]
    pub destination: VsDestination,
    /// Share of requests copied (100 % when left out).
    pub percentage: Option<Percent>,
}

/// `corsPolicy`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CorsPolicy {
    /// Allowed origins.
    #[serde(default)]
    pub allow_origins: Vec<StringMatch>,
    /// Allowed methods.
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Allowed request headers.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Headers the browser may read.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Preflight cache time (Istio duration).
    pub max_age: Option<String>,
    /// Whether credentials are allowed.
    pub allow_credentials: Option<bool>,
    /// `FORWARD` or `IGNORE` for preflights that do not match.
    pub unmatched_preflights: Option<String>,
}
