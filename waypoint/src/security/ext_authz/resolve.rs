//! Where a provider's `service` is: a Service or ServiceEntry of the folder (its endpoints on
//! the provider's port), else an IP literal or a DNS name, as the issue asks. istiod looks the
//! hostname up in its service registry (optionally as `namespace/hostname`); a name known
//! there in several namespaces must say which.

use crate::snapshot::Snapshot;
use authz::ext_authz::ExtAuthzProvider;
use std::net::{IpAddr, SocketAddr};

/// Where to send a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The ready endpoints of a Service or ServiceEntry port, and the authority istiod gives
    /// gRPC calls to it (its cluster name with `|` replaced, which gRPC servers accept).
    Endpoints {
        /// The endpoints, in the snapshot's order.
        addrs: Vec<SocketAddr>,
        /// `outbound_.PORT_._.HOST`.
        authority: String,
    },
    /// Not in the folder: resolved with the system resolver at check time.
    Dns {
        /// The hostname.
        host: String,
        /// The provider's port.
        port: u16,
    },
    /// An IP literal.
    Addr(SocketAddr),
}

/// Resolves `provider.service` in `snapshot`; an error says why no server can be reached.
pub fn resolve(snapshot: &Snapshot, provider: &ExtAuthzProvider) -> Result<Target, String> {
    let (namespace, host) = provider.service_parts();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let matches: Vec<_> = snapshot
        .services
        .iter()
        .filter(|s| namespace.is_none_or(|ns| s.key.namespace == ns))
        .filter(|s| s.hostnames.contains(&host))
        .collect();
    match matches.as_slice() {
        [] => {}
        [service] => {
            let port = service.port(provider.port).ok_or_else(|| {
                format!(
                    "{} has no port {} (the provider's port)",
                    service.key, provider.port
                )
            })?;
            let addrs: Vec<SocketAddr> = port.endpoints.iter().map(|e| e.addr).collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{} port {} has no ready endpoint",
                    service.key, provider.port
                ));
            }
            let fqdn = service.hostnames.first().unwrap_or(&host);
            return Ok(Target::Endpoints {
                addrs,
                authority: format!("outbound_.{}_._.{fqdn}", provider.port),
            });
        }
        several => {
            let names: Vec<String> = several.iter().map(|s| s.key.to_string()).collect();
            return Err(format!(
                "'{host}' names {}: write the provider's service as <namespace>/<hostname>",
                names.join(", ")
            ));
        }
    }
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(Target::Addr(SocketAddr::new(ip, provider.port)));
    }
    Ok(Target::Dns {
        host,
        port: provider.port,
    })
}
