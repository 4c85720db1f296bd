//! Istio's default path normalization (BASE: Envoy's `normalize_path: true`, `merge_slashes:
//! false`, escaped slashes kept) and `remote.ip` from X-Forwarded-For.

use std::net::IpAddr;

/// Why a request path cannot be normalized (Envoy answers 400, or 404 for a path that is not
/// relative: see [`BadPath::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPath(pub String);

/// How the message of a path that does not start with `/` begins.
const NOT_RELATIVE: &str = "not a relative path: ";

impl BadPath {
    /// The status Envoy answers with: 404 for a path that does not start with `/` (its
    /// connection manager's `absolute_path_rejected`), 400 for one it cannot canonicalize.
    pub fn status(&self) -> u16 {
        if self.0.starts_with(NOT_RELATIVE) {
            404
        } else {
            400
        }
    }
}

/// Istio's default path normalization (BASE): `\` to `/`, percent-decoded unreserved
/// characters, dot segments removed, `//` kept, `%2F` kept encoded. Takes a path with its
/// query and returns it normalized (query untouched, fragment dropped as Envoy does); the
/// backend receives the result.
///
/// Envoy canonicalizes with Chromium's URL library: `%00` (or a raw NUL) makes the path
/// invalid, a malformed escape (`%zz`) is kept as written, and characters that cannot appear
/// in a path are percent-encoded. A path that does not start with `/` is refused, except `*`
/// (the `OPTIONS *` request), which is returned as is.
pub fn normalize_path(path_and_query: &str) -> Result<String, BadPath> {
    let without_fragment = path_and_query
        .split_once('#')
        .map_or(path_and_query, |(p, _)| p);
    let (path, query) = match without_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (without_fragment, None),
    };
    if path == "*" && query.is_none() {
        return Ok(path.to_string());
    }
    if !path.starts_with('/') && !path.starts_with('\\') {
        return Err(BadPath(format!(
            "{NOT_RELATIVE}\"{path}\" does not start with '/'"
        )));
    }
    let decoded = canonical_chars(path)?;
    let mut out = remove_dot_segments(&decoded);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// True when [`normalize_path`] would return `path_and_query` unchanged, checked without
/// allocating: the common request (a plain `/a/b?q`) skips the normalization's copies.
/// Conservative: a path with any `%`, `\`, `#`, byte Chromium escapes, or dot segment is
/// left to `normalize_path`.
pub fn is_normalized(path_and_query: &str) -> bool {
    let path = path_and_query
        .split_once('?')
        .map_or(path_and_query, |(p, _)| p);
    path.starts_with('/')
        && !path_and_query.contains('#')
        && !path
            .bytes()
            .any(|b| b == b'%' || b == b'\\' || b == 0 || needs_escape(b))
        && !path[1..].split('/').any(|seg| seg == "." || seg == "..")
}

/// Chromium's per-character pass: `\` becomes `/`, escapes of unreserved characters are
/// decoded, other escapes kept as written, and bytes that may not appear raw are escaped.
fn canonical_chars(path: &str) -> Result<String, BadPath> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            if let Some(v) = decode_escape(bytes, i) {
                if v == 0 {
                    return Err(BadPath(
                        "the path contains an escaped NUL (%00)".to_string(),
                    ));
                }
                if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
                    out.push(char::from(v));
                } else {
                    out.push_str(&path[i..i + 3]);
                }
                i += 3;
                continue;
            }
            out.push('%');
        } else if b == 0 {
            return Err(BadPath("the path contains a NUL byte".to_string()));
        } else if b == b'\\' {
            out.push('/');
        } else if needs_escape(b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
        i += 1;
    }
    Ok(out)
}

fn decode_escape(bytes: &[u8], at: usize) -> Option<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let hi = hex(*bytes.get(at + 1)?)?;
    let lo = hex(*bytes.get(at + 2)?)?;
    u8::try_from(hi * 16 + lo).ok()
}

/// Bytes Chromium escapes in a path: controls, space, `"`, `<`, `>`, `` ` ``, `{`, `}`, DEL
/// and everything beyond ASCII.
fn needs_escape(b: u8) -> bool {
    b <= 0x20 || b >= 0x7f || b"\"<>`{}".contains(&b)
}

/// RFC 3986 section 5.2.4 on a path whose separators are all `/`: `.` and `..` segments
/// removed, empty segments (`//`) kept.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = String::with_capacity(path.len());
    for seg in &out {
        result.push('/');
        result.push_str(seg);
    }
    if trailing_slash || result.is_empty() {
        result.push('/');
    }
    result
}

/// `remote.ip` as Envoy computes it with `use_remote_address: false` and no trusted hops: the
/// rightmost X-Forwarded-For address, else the connection's source (also when that entry is
/// not a bare IP address, as Envoy falls back to the connection).
pub fn remote_ip(x_forwarded_for: Option<&str>, source_ip: Option<IpAddr>) -> Option<IpAddr> {
    x_forwarded_for
        .and_then(|xff| xff.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok())
        .or(source_ip)
}
