//! What a service port carries, decided once per port when the snapshot is built, following
//! Istio's protocol selection (istio.io, "Protocol Selection"): `appProtocol` first, else the
//! port name's `<protocol>[-<suffix>]` prefix, case-insensitively.

use serde::Serialize;

/// What the bytes to a port (or inside a tunnel) are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Protocol {
    /// HTTP/1.1; a client may still send HTTP/2 with prior knowledge.
    Http,
    /// Cleartext HTTP/2 with prior knowledge (h2c): http2, grpc, grpc-web.
    Http2,
    /// Opaque bytes: tcp, and what a waypoint cannot look into (TLS, databases).
    Tcp,
    /// Not declared: the first bytes tell (Istio's automatic protocol selection).
    Sniff,
}

impl Protocol {
    /// The protocol a Service port (`appProtocol`, `name`) or a ServiceEntry port (`protocol`,
    /// `name`) declares.
    pub fn of_port(name: &str, app_protocol: Option<&str>) -> Protocol {
        if let Some(declared) = app_protocol {
            // Kubernetes' own appProtocol values (KEP-3726); they never appear in port names.
            match declared.to_ascii_lowercase().as_str() {
                "kubernetes.io/h2c" => return Protocol::Http2,
                "kubernetes.io/ws" => return Protocol::Http,
                "kubernetes.io/wss" => return Protocol::Tcp,
                other => return Protocol::named(other),
            }
        }
        let name = name.to_ascii_lowercase();
        // The one protocol with a '-' of its own, so it goes before the prefix split.
        if name.starts_with("grpc-web") {
            return Protocol::Http2;
        }
        Protocol::named(name.split('-').next().unwrap_or_default())
    }

    /// Istio's protocol names. https and tls are TLS a waypoint does not terminate; mongo,
    /// mysql and redis are opaque TCP unless Istio's experimental filters are on; udp is not
    /// proxied at all. h2c is not in Istio's list but says exactly what it means.
    fn named(protocol: &str) -> Protocol {
        match protocol {
            "http" => Protocol::Http,
            "http2" | "grpc" | "grpc-web" | "h2c" => Protocol::Http2,
            "tcp" | "tls" | "https" | "mongo" | "mysql" | "redis" | "udp" => Protocol::Tcp,
            _ => Protocol::Sniff,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Protocol::{self, *};

    #[test]
    fn istio_protocol_selection() {
        let cases: [(&str, Option<&str>, Protocol); 24] = [
            ("http", None, Http),
            ("http-web", None, Http),
            ("HTTP", None, Http),
            ("http2", None, Http2),
            ("grpc", None, Http2),
            ("grpc-api", None, Http2),
            ("grpc-web", None, Http2),
            ("grpc-web-ui", None, Http2),
            ("h2c", None, Http2),
            ("https", None, Tcp),
            ("tls-passthrough", None, Tcp),
            ("tcp-db", None, Tcp),
            ("mongo", None, Tcp),
            ("mysql", None, Tcp),
            ("redis", None, Tcp),
            ("web", None, Sniff),
            ("httpx", None, Sniff),
            ("", None, Sniff),
            // appProtocol wins over the name.
            ("web", Some("kubernetes.io/h2c"), Http2),
            ("web", Some("kubernetes.io/ws"), Http),
            ("web", Some("kubernetes.io/wss"), Tcp),
            ("http", Some("tcp"), Tcp),
            ("grpc-web", Some("http"), Http),
            ("http", Some("example.com/custom"), Sniff),
        ];
        for (name, app_protocol, want) in cases {
            assert_eq!(
                Protocol::of_port(name, app_protocol),
                want,
                "{name} {app_protocol:?}"
            );
        }
        // A ServiceEntry writes its protocol in capitals; grpc-web as appProtocol is HTTP/2 too.
        assert_eq!(Protocol::of_port("api", Some("GRPC-WEB")), Http2);
    }
}
