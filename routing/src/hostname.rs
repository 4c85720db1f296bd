//! Gateway API hostnames: a listener's and a route's intersected at attach time, and a request's
//! Host matched against them.
//!
//! A hostname is exact ("foo.example.com") or a wildcard ("*.example.com"), which matches one or
//! more labels in place of the "*" (so "a.b.example.com" too, but not "example.com").

use std::cmp::Reverse;

use crate::authority::Authority;

/// Whether `host` (lower case, no port) is matched by `pattern`.
pub fn matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        // ".example.com": the host must end with it and have at least one label before it.
        Some(suffix) => host.len() > suffix.len() && ends_with_ignore_case(host, suffix),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// The hostnames a route serves on a listener: `None` when they do not intersect (the route
/// does not attach there); `Some(vec![])` when both allow any host.
///
/// Per the spec: a listener without a hostname takes the route's; a route without hostnames
/// takes the listener's; otherwise each route hostname that matches the listener's (or is
/// matched by it, when the route's is the wildcard) contributes the more specific of the two.
pub fn intersect(listener: Option<&str>, route: &[String]) -> Option<Vec<String>> {
    let Some(listener) = listener else {
        return Some(route.to_vec());
    };
    if route.is_empty() {
        return Some(vec![listener.to_string()]);
    }
    let mut out: Vec<String> = Vec::new();
    for r in route {
        let narrower = if matches(listener, r) || listener.eq_ignore_ascii_case(r) {
            Some(r.as_str())
        } else if r.starts_with('*') && matches(r, listener.trim_start_matches("*.")) {
            // A "*.example.com" route on a "*.foo.example.com" or "bar.example.com" listener.
            Some(listener)
        } else {
            None
        };
        if let Some(h) = narrower {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(h)) {
                out.push(h.to_string());
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Sort key putting the most specific hostname first: exact names before wildcards, longer
/// before shorter, and "any" (None) last.
pub fn specificity(hostname: Option<&str>) -> (u8, Reverse<usize>) {
    match hostname {
        Some(h) if !h.starts_with('*') => (0, Reverse(h.len())),
        Some(h) => (1, Reverse(h.len())),
        None => (2, Reverse(0)),
    }
}

/// The host part of an authority ("example.com:8080" → "example.com", "[::1]:80" → "::1"),
/// without a trailing dot; an authority [`Authority::parse`] refuses is taken whole.
pub fn host_of(authority: &str) -> &str {
    let host = Authority::parse(authority).map_or(authority, |a| a.host);
    host.strip_suffix('.').unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matching() {
        let cases = [
            ("*.example.com", "foo.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "fooexample.com", false),
            ("foo.example.com", "FOO.example.com", true),
            ("foo.example.com", "bar.example.com", false),
        ];
        for (pattern, host, want) in cases {
            assert_eq!(matches(pattern, host), want, "{pattern} vs {host}");
        }
    }

    #[test]
    fn intersection() {
        let s = |v: &[&str]| v.iter().map(|h| h.to_string()).collect::<Vec<_>>();
        /// Listener hostname, route hostnames, expected intersection.
        type Case = (Option<&'static str>, Vec<String>, Option<Vec<String>>);
        let cases: Vec<Case> = vec![
            (None, vec![], Some(vec![])),
            (None, s(&["a.com"]), Some(s(&["a.com"]))),
            (Some("a.com"), vec![], Some(s(&["a.com"]))),
            (Some("a.com"), s(&["a.com", "b.com"]), Some(s(&["a.com"]))),
            (Some("a.com"), s(&["b.com"]), None),
            (
                Some("*.a.com"),
                s(&["x.a.com", "b.com"]),
                Some(s(&["x.a.com"])),
            ),
            (Some("x.a.com"), s(&["*.a.com"]), Some(s(&["x.a.com"]))),
            (Some("*.a.com"), s(&["*.a.com"]), Some(s(&["*.a.com"]))),
            (Some("*.x.a.com"), s(&["*.a.com"]), Some(s(&["*.x.a.com"]))),
            (Some("*.a.com"), s(&["*.x.a.com"]), Some(s(&["*.x.a.com"]))),
            (Some("*.a.com"), s(&["a.com"]), None),
        ];
        for (listener, route, want) in cases {
            assert_eq!(intersect(listener, &route), want, "{listener:?} {route:?}");
        }
    }

    #[test]
    fn host_of_strips_ports_and_brackets() {
        assert_eq!(host_of("example.com:8080"), "example.com");
        assert_eq!(host_of("example.com"), "example.com");
        assert_eq!(host_of("[::1]:80"), "::1");
        assert_eq!(host_of("example.com."), "example.com");
    }

    #[test]
    fn specific_first() {
        let mut v = vec![None, Some("*.a.com"), Some("x.a.com"), Some("*.x.a.com")];
        v.sort_by_key(|h| specificity(*h));
        assert_eq!(
            v,
            [Some("x.a.com"), Some("*.x.a.com"), Some("*.a.com"), None]
        );
    }
}
