//! `host[:port]` as a Host header, an `:authority` or an HBONE CONNECT target writes it
//! (RFC 3986 §3.2.2–3.2.3): the one parser every caller shares, so a bracketed IPv6 literal, a
//! bare IPv6 address and a bad port are read the same way everywhere.

use std::net::{IpAddr, SocketAddr};

/// An authority split into its host and its optional port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authority<'a> {
    /// The host: a name, an IPv4 address, or an IPv6 address without its brackets.
    pub host: &'a str,
    /// The port when one is written; `host:` (an empty port) counts as none, as RFC 3986 says.
    pub port: Option<u16>,
    /// The host as written, brackets included (`[fd00::1]`), for rebuilding an authority.
    pub host_as_written: &'a str,
}

/// Why a string is not a `host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    /// Nothing before the port.
    #[error("the host is empty")]
    EmptyHost,
    /// `[fd00::1` without its `]`.
    #[error("an IPv6 address opened with '[' is not closed with ']'")]
    UnclosedBracket,
    /// Something other than `:port` after `]`.
    #[error("only ':port' may follow ']'")]
    AfterBracket,
    /// The port is not a number from 0 to 65535.
    #[error("port '{0}' is not a number from 0 to 65535")]
    BadPort(String),
}

impl<'a> Authority<'a> {
    /// Splits `host[:port]`, `[v6]` or `[v6]:port`. More than one colon without brackets is a
    /// bare IPv6 address without a port (as clients write a CONNECT target or a VIP).
    pub fn parse(authority: &'a str) -> Result<Self, AuthorityError> {
        let (host, host_as_written, port) = if let Some(rest) = authority.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or(AuthorityError::UnclosedBracket)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p,
                None if after.is_empty() => "",
                None => return Err(AuthorityError::AfterBracket),
            };
            (host, &authority[..host.len() + 2], port)
        } else {
            match authority.split_once(':') {
                Some((host, port)) if !port.contains(':') => (host, host, port),
                _ => (authority, authority, ""),
            }
        };
        if host.is_empty() {
            return Err(AuthorityError::EmptyHost);
        }
        Ok(Authority {
            host,
            port: parse_port(port)?,
            host_as_written,
        })
    }

    /// The port, or `default` when none is written.
    pub fn port_or(&self, default: u16) -> u16 {
        self.port.unwrap_or(default)
    }

    /// The host when it is an IP address.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// `ip:port` when the host is an IP address and a port is written.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        Some(SocketAddr::new(self.ip()?, self.port?))
    }
}

/// Digits only (`u16::from_str` would also take `+80`); empty means no port.
fn parse_port(port: &str) -> Result<Option<u16>, AuthorityError> {
    if port.is_empty() {
        return Ok(None);
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthorityError::BadPort(port.to_string()));
    }
    port.parse()
        .map(Some)
        .map_err(|_| AuthorityError::BadPort(port.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_forms() {
        use AuthorityError::*;
        let ok = |host, port, written| {
            Ok(Authority {
                host,
                port,
                host_as_written: written,
            })
        };
        let cases: Vec<(&str, Result<Authority<'_>, AuthorityError>)> = vec![
            ("web", ok("web", None, "web")),
            ("web:8080", ok("web", Some(8080), "web")),
            ("web:", ok("web", None, "web")),
            (
                "web.shop.svc.cluster.local.:80",
                ok(
                    "web.shop.svc.cluster.local.",
                    Some(80),
                    "web.shop.svc.cluster.local.",
                ),
            ),
            ("10.0.0.1:443", ok("10.0.0.1", Some(443), "10.0.0.1")),
            ("[fd00::1]:8080", ok("fd00::1", Some(8080), "[fd00::1]")),
            ("[fd00::1]", ok("fd00::1", None, "[fd00::1]")),
            ("[fd00::1]:", ok("fd00::1", None, "[fd00::1]")),
            ("fd00::1", ok("fd00::1", None, "fd00::1")),
            ("web:0", ok("web", Some(0), "web")),
            ("web:65535", ok("web", Some(65535), "web")),
            ("web:http", Err(BadPort("http".into()))),
            ("web:+80", Err(BadPort("+80".into()))),
            ("web:99999", Err(BadPort("99999".into()))),
            ("[fd00::1]x", Err(AfterBracket)),
            ("[fd00::1", Err(UnclosedBracket)),
            ("[]:80", Err(EmptyHost)),
            (":80", Err(EmptyHost)),
            ("", Err(EmptyHost)),
        ];
        for (input, want) in cases {
            assert_eq!(Authority::parse(input), want, "{input}");
        }
    }

    #[test]
    fn addresses() {
        let a = |s| Authority::parse(s).expect("parses");
        assert_eq!(
            a("[fd00::1]:80").socket_addr(),
            Some("[fd00::1]:80".parse().expect("addr"))
        );
        assert_eq!(a("10.0.0.1").socket_addr(), None, "no port");
        assert_eq!(a("web:80").socket_addr(), None, "not an IP");
        assert_eq!(a("web").port_or(80), 80);
        assert_eq!(a("web:81").port_or(80), 81);
    }
}
