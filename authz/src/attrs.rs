//! The facts of one request (or TCP connection) that security policies match on. The waypoint
//! fills them in from the HBONE tunnel, the socket and the request; the decisions in this crate
//! read nothing else.

use std::net::IpAddr;

/// The mesh's trust domain and its aliases (MeshConfig `trustDomain`, `trustDomainAliases`):
/// a principal written with any of them names the same workload (Istio's trust-domain
/// migration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustDomains {
    /// The trust domain, `cluster.local` unless the MeshConfig says otherwise.
    pub domain: String,
    /// Other trust domains treated as this one.
    pub aliases: Vec<String>,
}

impl Default for TrustDomains {
    fn default() -> Self {
        TrustDomains {
            domain: "cluster.local".to_string(),
            aliases: Vec::new(),
        }
    }
}

/// What is known of the connection a request arrived on (all of a TCP connection's facts).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionAttrs {
    /// The peer's principal, `<trust-domain>/ns/<ns>/sa/<sa>` (the HBONE client certificate's
    /// SPIFFE ID without `spiffe://`); `None` for plaintext (no principal ever matches).
    pub source_principal: Option<String>,
    /// `source.ip`: the peer address of the HBONE connection, or the TCP peer of the plain
    /// listener.
    pub source_ip: Option<IpAddr>,
    /// `destination.ip`: the address the client addressed (the CONNECT target's IP, or the
    /// plain listener's local address).
    pub destination_ip: Option<IpAddr>,
    /// `destination.port`: the port the client addressed (the service port).
    pub destination_port: u16,
    /// `connection.sni`: the TLS server name the client sent, if any.
    pub sni: Option<String>,
}

/// The HTTP request's facts; absent for TCP traffic.
#[derive(Clone, Copy, Debug)]
pub struct HttpAttrs<'a> {
    /// The `:authority`/Host, as sent.
    pub host: &'a str,
    /// The method.
    pub method: &'a str,
    /// The path after Istio's normalization ([`crate::policy::normalize_path`]), without the
    /// query string (Envoy's RBAC matches `url_path`).
    pub path: &'a str,
    /// Every request header.
    pub headers: &'a http::HeaderMap,
    /// `remote.ip`: the original client as X-Forwarded-For says ([`crate::policy::remote_ip`]).
    pub remote_ip: Option<IpAddr>,
    /// The verified JWT, if the request carried one.
    pub auth: Option<&'a RequestAuth>,
}

/// One request (or connection) as the policies see it.
#[derive(Clone, Copy, Debug)]
pub struct RequestAttrs<'a> {
    /// The connection's facts.
    pub conn: &'a ConnectionAttrs,
    /// The request's facts; `None` for TCP traffic (Istio's L4 rules).
    pub http: Option<HttpAttrs<'a>>,
}

/// A verified JWT: what `request.auth.*` and `requestPrincipals` match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestAuth {
    /// `request.auth.principal`: `<iss>/<sub>`. When several tokens verify, Istio takes the
    /// one whose issuer sorts first.
    pub principal: String,
    /// The `iss` claim.
    pub issuer: String,
    /// The `sub` claim.
    pub subject: String,
    /// `request.auth.audiences`: the `aud` claim (a string or a list).
    pub audiences: Vec<String>,
    /// `request.auth.presenter`: the `azp` claim.
    pub presenter: Option<String>,
    /// Every claim, for `request.auth.claims[...]`. The claims Istio names space-delimited
    /// (`scope`, `permission`, plus the rule's `spaceDelimitedClaims`) are split on spaces into
    /// lists when the token has them as strings (`"scope": "read write"` becomes
    /// `["read", "write"]`), so that `request.auth.claims[scope]` matches one scope.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// A change to the request sent upstream that a security step asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Remove the header (e.g. the token's, when `forwardOriginalToken` is false).
    Remove(String),
    /// Set the header, replacing any value.
    Set(String, String),
}

/// A local answer a security step gives instead of forwarding the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply {
    /// 401, 403, or the ext_authz server's status.
    pub status: u16,
    /// The body, as Envoy writes it (`RBAC: access denied`, `Jwt is expired`, …).
    pub body: String,
    /// Extra response headers (`www-authenticate`, ext_authz's headers to the client).
    pub headers: Vec<(String, String)>,
}
