//! The CUSTOM action's providers: MeshConfig `extensionProviders` of type `envoyExtAuthzHttp`
//! and `envoyExtAuthzGrpc`, and the decisions around a check (which headers go to the server,
//! which of its headers go upstream or to the client, what an error means).
//!
//! CONTRACT (issue 12): the ext_authz helper replaces the placeholder bodies below; the waypoint
//! does the I/O (`waypoint/src/security/ext_authz/`).

/// One ext_authz provider, compiled from the MeshConfig.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtAuthzProvider {
    /// `extensionProviders[].name`, which CUSTOM policies name.
    pub name: String,
    /// The service to call: a hostname (resolved through the folder's Services and
    /// ServiceEntries, else as an IP or DNS name) and port.
    pub service: String,
    /// Its port.
    pub port: u16,
    /// HTTP or gRPC.
    pub protocol: ExtAuthzProtocol,
}

/// Which ext_authz API the provider speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtAuthzProtocol {
    /// `envoyExtAuthzHttp`.
    Http,
    /// `envoyExtAuthzGrpc`: `envoy.service.auth.v3.Authorization/Check`.
    Grpc,
}

impl ExtAuthzProvider {
    /// Reads one `extensionProviders[]` entry; `Ok(None)` when it is not an ext_authz provider
    /// (telemetry providers live in the same list).
    pub fn parse(entry: &serde_json::Value) -> Result<Option<ExtAuthzProvider>, String> {
        let _ = entry;
        Ok(None)
    }
}
