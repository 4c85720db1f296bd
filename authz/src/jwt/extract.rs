//! Token extraction as Envoy's `jwt_authn` extractor does it: locations merged across the
//! providers asked (each remembering which issuers named it), headers before query parameters
//! before cookies, each group in name order.

use super::rules::{Location, Provider};
use std::collections::{BTreeMap, BTreeSet};

/// The parts of a request tokens are read from.
#[derive(Clone, Copy, Debug)]
pub struct JwtRequest<'a> {
    /// `<scheme>://<host><path?query>`, as Envoy rebuilds the original URI for the
    /// `www-authenticate` realm (`x-forwarded-proto`, the host, the full path with its query).
    pub original_uri: &'a str,
    /// The path with its query string (query parameters are read from it).
    pub path_and_query: &'a str,
    /// The request headers.
    pub headers: &'a http::HeaderMap,
}

/// One token found, with where it came from.
#[derive(Clone, Debug)]
pub(crate) struct Extracted<'p> {
    /// The token text.
    pub token: String,
    /// The header to remove when the token is not forwarded (query and cookie tokens stay, as
    /// in Envoy).
    pub header: Option<String>,
    /// The issuers whose rules name this location; `""` stands for a rule without issuer.
    pub issuers: BTreeSet<&'p str>,
}

impl Extracted<'_> {
    /// Envoy's "is the issuer specified for this location".
    pub(crate) fn allows(&self, iss: &str) -> bool {
        self.issuers.contains(iss) || self.issuers.contains("")
    }
}

/// The tokens at the locations of `providers`, in Envoy's order.
pub(crate) fn extract<'p>(
    providers: impl IntoIterator<Item = &'p Provider>,
    req: &JwtRequest<'_>,
) -> Vec<Extracted<'p>> {
    let mut locations: BTreeMap<&'p Location, BTreeSet<&'p str>> = BTreeMap::new();
    for p in providers {
        for loc in &p.locations {
            locations.entry(loc).or_default().insert(p.issuer.as_str());
        }
    }
    let mut out = Vec::new();
    for (loc, issuers) in locations {
        let found = |token: String, header: Option<String>| Extracted {
            token,
            header,
            issuers: issuers.clone(),
        };
        match loc {
            Location::Header { name, prefix } => {
                // Envoy joins repeated headers with "," and reads one token per location.
                let values: Vec<&str> = req
                    .headers
                    .get_all(name.as_str())
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                if values.is_empty() {
                    continue;
                }
                let joined = values.join(",");
                if let Some(token) = after_prefix(&joined, prefix) {
                    out.push(found(token.to_string(), Some(name.clone())));
                }
            }
            Location::Param(name) => {
                if let Some(token) = query_param(req.path_and_query, name) {
                    out.push(found(token, None));
                }
            }
            Location::Cookie(name) => {
                if let Some(token) = cookie(req.headers, name) {
                    out.push(found(token, None));
                }
            }
        }
    }
    out
}

/// Envoy finds the prefix anywhere in the value and takes the run of token characters
/// (base64url and `.`) that follows it; with no such run it keeps the whole value.
fn after_prefix<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    if prefix.is_empty() {
        return Some(value);
    }
    let rest = &value[value.find(prefix)? + prefix.len()..];
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let Some(start) = rest.find(is_token_char) else {
        return Some(value);
    };
    let rest = &rest[start..];
    let end = rest.find(|c| !is_token_char(c)).unwrap_or(rest.len());
    Some(&rest[..end])
}

fn query_param(path_and_query: &str, name: &str) -> Option<String> {
    let (_, query) = path_and_query.split_once('?')?;
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

fn cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| {
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                value.to_string()
            })
        })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
