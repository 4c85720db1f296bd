//! RequestRedirect and URLRewrite: the filters that change where a request goes by rewriting
//! its URL, either for the client (a redirect) or for the backend (a rewrite).

use crate::path_modifier::PathModifier;
use crate::request_match::PathMatch;

/// A compiled RequestRedirect filter: the waypoint answers the request itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// "http" or "https"; None keeps the request's scheme.
    pub scheme: Option<&'static str>,
    /// None keeps the request's host.
    pub hostname: Option<String>,
    /// How the Location's path is derived from the request's; None keeps the request's path.
    pub path: Option<PathModifier>,
    /// None picks the scheme's well-known port or the listener port; see [`Redirect::response`].
    pub port: Option<u16>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
    /// Where the port comes from when `port` is None.
    pub port_from: RedirectPort,
}

/// How a redirect without a port of its own picks the Location's port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RedirectPort {
    /// Gateway API: the well-known port of the filter's scheme if it names one, else the
    /// listener port.
    #[default]
    GatewayApi,
    /// Envoy's default, which a VirtualService redirect without `port` gets (Istio's
    /// `derivePort: FROM_PROTOCOL_DEFAULT`, the default): the port of the request's authority,
    /// dropped when the scheme changes and it was the old scheme's default, or when the
    /// redirect names a host (Envoy's `host_redirect` carries no port).
    RequestAuthority,
    /// VirtualService `derivePort: FROM_REQUEST_PORT`: the port the request arrived on.
    Listener,
}

/// What a redirect needs to know about the request it answers.
#[derive(Clone, Copy, Debug)]
pub struct RedirectInput<'a> {
    /// "http" or "https": how the request reached the waypoint.
    pub scheme: &'a str,
    /// The request's host, without a port.
    pub host: &'a str,
    /// The Gateway listener port or the Service port the request arrived on.
    pub listener_port: u16,
    /// The port in the request's authority, if it named one.
    pub request_port: Option<u16>,
    /// The request path, without the query.
    pub path: &'a str,
    /// The raw query without '?'.
    pub query: Option<&'a str>,
    /// The path match that selected the rule, for ReplacePrefixMatch.
    pub matched: &'a PathMatch,
}

/// The status code Gateway API uses when a redirect names none.
pub const DEFAULT_REDIRECT_STATUS: u16 = 302;

impl Redirect {
    /// The status code and absolute `Location` for `req`.
    ///
    /// For a Gateway API redirect the port follows the spec: the filter's port if set; else the
    /// well-known port of the filter's scheme if it names one; else the listener port. It is
    /// left out of the Location when it is the default for the scheme, so `https://host/`
    /// rather than `https://host:443/`. A VirtualService redirect picks it as [`RedirectPort`]
    /// says.
    pub fn response(&self, req: &RedirectInput<'_>) -> (u16, String) {
        let scheme = self.scheme.unwrap_or(req.scheme);
        let port = match (self.port, self.port_from, self.scheme) {
            (Some(port), _, _) => Some(port),
            (None, RedirectPort::GatewayApi, Some(scheme)) => {
                Some(well_known_port(scheme).unwrap_or(req.listener_port))
            }
            (None, RedirectPort::GatewayApi | RedirectPort::Listener, _) => Some(req.listener_port),
            (None, RedirectPort::RequestAuthority, _) if self.hostname.is_some() => None,
            (None, RedirectPort::RequestAuthority, _) => req
                .request_port
                .filter(|&p| scheme == req.scheme || well_known_port(req.scheme) != Some(p)),
        };
        let host = self.hostname.as_deref().unwrap_or(req.host);
        let path = match &self.path {
            Some(modifier) => modifier.apply(req.path, req.matched),
            None => req.path.to_owned(),
        };
        let mut location = format!("{scheme}://{host}");
        // Envoy keeps the request's authority as written, a default port included.
        let as_written = self.port.is_none() && self.port_from == RedirectPort::RequestAuthority;
        if let Some(port) = port.filter(|&p| as_written || well_known_port(scheme) != Some(p)) {
            location.push_str(&format!(":{port}"));
        }
        location.push_str(&path);
        // A replacement path that carries its own query replaces the request's, as Envoy's
        // path_redirect does.
        if let Some(query) = req.query.filter(|_| !path.contains('?')) {
            location.push('?');
            location.push_str(query);
        }
        (self.status, location)
    }
}

fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// A compiled URLRewrite filter: the request is forwarded with a new host and/or path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlRewrite {
    /// Replaces the Host header (`:authority` for HTTP/2) sent to the backend; None keeps it.
    pub hostname: Option<String>,
    /// The new path sent to the backend; None forwards the request's path unchanged.
    pub path: Option<PathModifier>,
}

impl UrlRewrite {
    /// The path to forward instead of `path` (without the query, which the proxy keeps), or
    /// None when this rewrite leaves the path alone.
    pub fn rewrite_path(&self, path: &str, matched: &PathMatch) -> Option<String> {
        self.path.as_ref().map(|m| m.apply(path, matched))
    }
}

#[cfg(test)]
mod tests;
