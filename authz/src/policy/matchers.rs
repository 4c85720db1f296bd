//! The value matchers an AuthorizationPolicy compiles to, each with Envoy's semantics for the
//! matcher istiod generates: strings (exact, `prefix*`, `*suffix`, `*`), CIDRs, path templates
//! and the principal-shaped matchers (namespaces, service accounts, request principals).

use std::fmt;
use std::net::IpAddr;

/// A string pattern as istiod writes it: `*` alone, a leading or trailing `*`, else exact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StrMatch {
    /// The whole value.
    Exact(String),
    /// `abc*`.
    Prefix(String),
    /// `*abc`.
    Suffix(String),
    /// `*`: istiod's `.+` regex (any non-empty value) or, for headers, "present".
    Any,
}

impl StrMatch {
    /// Reads istiod's wildcard convention (`*` is only special at either end).
    pub(crate) fn parse(v: &str) -> StrMatch {
        if v == "*" {
            StrMatch::Any
        } else if let Some(rest) = v.strip_prefix('*') {
            StrMatch::Suffix(rest.to_string())
        } else if let Some(rest) = v.strip_suffix('*') {
            StrMatch::Prefix(rest.to_string())
        } else {
            StrMatch::Exact(v.to_string())
        }
    }

    /// Case-sensitive match; `Any` needs a non-empty value (istiod's `.+`).
    pub(crate) fn matches(&self, v: &str) -> bool {
        match self {
            StrMatch::Exact(e) => v == e,
            StrMatch::Prefix(p) => v.starts_with(p.as_str()),
            StrMatch::Suffix(s) => v.ends_with(s.as_str()),
            StrMatch::Any => !v.is_empty(),
        }
    }

    /// Envoy's header matcher: `Any` is "present" (even empty); a missing header matches
    /// nothing else either.
    pub(crate) fn matches_header(&self, v: Option<&str>) -> bool {
        match (self, v) {
            (_, None) => false,
            (StrMatch::Any, Some(_)) => true,
            (m, Some(v)) => m.matches(v),
        }
    }

    /// istiod's `request.headers` matcher: the value (every occurrence of the header joined
    /// with `,`) matches when it, or one of its comma-separated elements, fits (the regex
    /// `^v$|^v,.*|.*,v,.*|.*,v$`); `*` is "present".
    pub(crate) fn matches_header_list(&self, v: Option<&str>) -> bool {
        let Some(v) = v else {
            return false;
        };
        match self {
            StrMatch::Any => true,
            StrMatch::Exact(e) => {
                v == e
                    || v.strip_prefix(e.as_str())
                        .is_some_and(|r| r.starts_with(','))
                    || v.strip_suffix(e.as_str()).is_some_and(|l| l.ends_with(','))
                    || v.contains(&format!(",{e},"))
            }
            StrMatch::Prefix(p) => v.starts_with(p.as_str()) || v.contains(&format!(",{p}")),
            StrMatch::Suffix(s) => v.ends_with(s.as_str()) || v.contains(&format!("{s},")),
        }
    }

    /// ASCII case-insensitive match (istiod's host matcher ignores case).
    pub(crate) fn matches_ignore_case(&self, v: &str) -> bool {
        let (vb, len) = (v.as_bytes(), v.len());
        match self {
            StrMatch::Exact(e) => v.eq_ignore_ascii_case(e),
            StrMatch::Prefix(p) => {
                len >= p.len() && vb[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            }
            StrMatch::Suffix(s) => {
                len >= s.len() && vb[len - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
            StrMatch::Any => true,
        }
    }
}

impl fmt::Display for StrMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrMatch::Exact(e) => write!(f, "\"{e}\""),
            StrMatch::Prefix(p) => write!(f, "\"{p}*\""),
            StrMatch::Suffix(s) => write!(f, "\"*{s}\""),
            StrMatch::Any => write!(f, "\"*\""),
        }
    }
}

/// An IP address or CIDR range (`ipBlocks`, `source.ip`, …); a bare address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// Parses `a.b.c.d`, `a.b.c.d/n`, `v6` or `v6/n`; the host bits may be set (Envoy masks
    /// them).
    pub(crate) fn parse(v: &str) -> Result<Cidr, String> {
        let (ip, len) = match v.split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None => (v, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("\"{v}\" is not an IP address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max && !l.starts_with('+') => n,
                _ => return Err(format!("\"{v}\" has a bad prefix length (0 to {max})")),
            },
        };
        Ok(Cidr { addr, len })
    }

    /// Whether `ip` is in the range; an IPv4-mapped IPv6 address is compared as IPv4.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.len,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.len)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, len: u8) -> bool {
    len == 0 || (a ^ b) >> (128 - u32::from(len)) == 0
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}/{}\"", self.addr, self.len)
    }
}

/// One segment of a `{*}`/`{**}` path template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{*}`: exactly one non-empty segment.
    One,
    /// `{**}`: the rest of the path, any number of segments (must be last).
    Rest,
}

/// A path template (Envoy's `uri_template` matcher as istiod generates it for `{*}`/`{**}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PathTemplate {
    source: String,
    segments: Vec<Segment>,
}

/// Envoy's template literal characters: RFC 3986 pchar without `*`, and `/` for `{**}`.
fn is_literal_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b)
}

impl PathTemplate {
    /// True when `v` uses template syntax (then it must be a valid template).
    pub(crate) fn is_template(v: &str) -> bool {
        v.contains("{*}") || v.contains("{**}")
    }

    /// Compiles `v` with Istio's validation: templates are whole segments, `{**}` only last,
    /// other segments plain pchar literals.
    pub(crate) fn parse(v: &str) -> Result<PathTemplate, String> {
        let body = v
            .strip_prefix('/')
            .ok_or_else(|| format!("path template \"{v}\" must start with '/'"))?;
        let mut segments = Vec::new();
        for seg in body.split('/') {
            if matches!(segments.last(), Some(Segment::Rest)) {
                return Err(format!("\"{v}\": {{**}} must be the last segment"));
            }
            segments.push(match seg {
                "{*}" => Segment::One,
                "{**}" => Segment::Rest,
                lit if !lit.is_empty() && lit.bytes().all(is_literal_char) => {
                    Segment::Literal(lit.to_string())
                }
                _ => {
                    return Err(format!(
                        "\"{v}\": segment \"{seg}\" is neither {{*}}, {{**}} nor a plain literal \
                         (letters, digits, -._~%!$&'()+,;:@=)"
                    ))
                }
            });
        }
        Ok(PathTemplate {
            source: v.to_string(),
            segments,
        })
    }

    /// Whether the (normalized, query-less) `path` fits the template.
    pub(crate) fn matches(&self, path: &str) -> bool {
        let Some(mut rest) = path.strip_prefix('/') else {
            return false;
        };
        for (i, seg) in self.segments.iter().enumerate() {
            if i > 0 {
                match rest.strip_prefix('/') {
                    Some(r) => rest = r,
                    None => return false,
                }
            }
            let end = rest.find('/').unwrap_or(rest.len());
            match seg {
                Segment::Rest => return rest.bytes().all(|b| b == b'/' || is_literal_char(b)),
                Segment::One if end > 0 && rest[..end].bytes().all(is_literal_char) => {}
                Segment::Literal(l) if &rest[..end] == l => {}
                _ => return false,
            }
            rest = &rest[end..];
        }
        rest.is_empty()
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.source)
    }
}

/// istiod's `namespaces` matcher: the regex `.*/ns/<value>/.*` over the peer's SPIFFE ID
/// (`spiffe://` + principal), with `*` in the value meaning any characters. Allocation-free:
/// it runs per request.
pub(crate) fn namespace_matches(pattern: &str, principal: &str) -> bool {
    // "spiffe://" ends with '/', so a principal starting with "ns/" has a "/ns/" at its start.
    let at_start = principal.strip_prefix("ns/");
    let inside = principal
        .match_indices("/ns/")
        .map(|(i, _)| &principal[i + 4..]);
    at_start.into_iter().chain(inside).any(|rest| {
        rest.match_indices('/')
            .any(|(k, _)| glob_matches(pattern.as_bytes(), &rest.as_bytes()[..k]))
    })
}

/// A glob where `*` matches any run of bytes (including `/`); patterns have few stars.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_matches(rest, &text[i..])),
        Some((c, rest)) => text.first() == Some(c) && glob_matches(rest, &text[1..]),
    }
}

/// istiod's `serviceAccounts` matcher, `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?`, over the
/// principal. Allocation-free: it runs per request.
pub(crate) fn service_account_matches(ns: &str, sa: &str, principal: &str) -> bool {
    principal.match_indices("/ns/").any(|(i, _)| {
        if i == 0 {
            return false;
        }
        let after = &principal[i + 4..];
        let Some(rest) = after.strip_prefix(ns).and_then(|r| r.strip_prefix('/')) else {
            return false;
        };
        // `sa/<sa>` either starts `rest` or follows a '/' after a non-empty run.
        rest.match_indices("sa/").any(|(j, _)| {
            let boundary = j == 0 || (j >= 2 && rest.as_bytes()[j - 1] == b'/');
            let tail = rest[j + 3..].strip_prefix(sa);
            boundary && tail.is_some_and(|t| t.is_empty() || (t.starts_with('/') && t.len() > 1))
        })
    })
}

/// A `requestPrincipals` value split as istiod does (`<iss>/<sub>` at the last `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RequestPrincipal {
    source: String,
    iss: StrMatch,
    sub: StrMatch,
}

impl RequestPrincipal {
    /// istiod's translation: `*` is any issuer and subject; a leading `*` applies to the issuer
    /// (or, without `/`, the subject); a trailing `*` to the subject (or, without `/`, the
    /// issuer).
    pub(crate) fn parse(v: &str) -> RequestPrincipal {
        let (iss, sub, found) = match v.rfind('/') {
            Some(i) => (&v[..i], &v[i + 1..], true),
            None => (v, "", false),
        };
        let (iss_m, sub_m) = if v == "*" {
            (StrMatch::Any, StrMatch::Any)
        } else if let Some(rest) = v.strip_prefix('*') {
            match (found, iss) {
                (true, "*") => (StrMatch::Any, StrMatch::Exact(sub.to_string())),
                (true, _) => (
                    StrMatch::Suffix(iss[1..].to_string()),
                    StrMatch::Exact(sub.to_string()),
                ),
                (false, _) => (StrMatch::Any, StrMatch::Suffix(rest.to_string())),
            }
        } else if let Some(rest) = v.strip_suffix('*') {
            match (found, sub) {
                (true, "*") => (StrMatch::Exact(iss.to_string()), StrMatch::Any),
                (true, _) => (
                    StrMatch::Exact(iss.to_string()),
                    StrMatch::Prefix(sub[..sub.len() - 1].to_string()),
                ),
                (false, _) => (StrMatch::Prefix(rest.to_string()), StrMatch::Any),
            }
        } else {
            (
                StrMatch::Exact(iss.to_string()),
                StrMatch::Exact(sub.to_string()),
            )
        };
        RequestPrincipal {
            source: v.to_string(),
            iss: iss_m,
            sub: sub_m,
        }
    }

    /// Whether the verified token's issuer and subject fit.
    pub(crate) fn matches(&self, issuer: &str, subject: &str) -> bool {
        self.iss.matches(issuer) && self.sub.matches(subject)
    }
}

impl fmt::Display for RequestPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.source)
    }
}
