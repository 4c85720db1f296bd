//! Matching one compiled rule against a request, as Envoy's RBAC filter evaluates what istiod
//! generated. One walk serves both the hot path (a silent recorder, no strings built) and
//! `explain` (every field compared, written down).

use super::matchers::{namespace_matches, service_account_matches};
use super::rule::{Attr, Field, Rule, Value};
use crate::attrs::RequestAttrs;
use std::borrow::Cow;

/// Where a rule's walk writes what it compared; the silent one costs nothing.
pub(crate) trait Recorder {
    /// Whether notes are kept (callers build strings only then).
    const ON: bool;
    /// Keeps one note.
    fn note(&mut self, line: String);
}

/// The hot path's recorder.
pub(crate) struct Silent;

impl Recorder for Silent {
    const ON: bool = false;
    fn note(&mut self, _: String) {}
}

impl Recorder for Vec<String> {
    const ON: bool = true;
    fn note(&mut self, line: String) {
        self.push(line);
    }
}

/// How a rule that cannot be (fully) evaluated resolves: ALLOW rules never match, the others
/// (DENY, AUDIT, CUSTOM) match more, as istiod generates them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaning {
    /// ALLOW.
    Narrow,
    /// DENY, AUDIT, CUSTOM.
    Wide,
}

impl Rule {
    /// Whether the rule matches; with a recording `rec`, why.
    pub(crate) fn matches<R: Recorder>(
        &self,
        a: &RequestAttrs<'_>,
        lean: Leaning,
        rec: &mut R,
    ) -> bool {
        if self.broken {
            if R::ON {
                rec.note("the rule has errors and is in force fail closed".to_string());
            }
            return lean == Leaning::Wide;
        }
        let tcp = a.http.is_none();
        if tcp && lean == Leaning::Narrow && self.uses_http {
            if R::ON {
                if let Some(f) = self.fields().find(|f| f.attr.http_only()) {
                    rec.note(format!("{} is HTTP-only and the traffic is TCP", f.label));
                }
            }
            return false;
        }
        self.when.iter().all(|f| f.check(a, rec))
            && any_entry(&self.from, a, rec, "from")
            && any_entry(&self.to, a, rec, "to")
    }
}

fn any_entry<R: Recorder>(
    entries: &[Vec<Field>],
    a: &RequestAttrs<'_>,
    rec: &mut R,
    name: &str,
) -> bool {
    if entries.is_empty() {
        return true;
    }
    let mut misses = Vec::new();
    for entry in entries {
        let mut notes = Vec::new();
        let hit = if R::ON {
            entry.iter().all(|f| f.check(a, &mut notes))
        } else {
            entry.iter().all(|f| f.check(a, &mut Silent))
        };
        if hit {
            for n in notes {
                rec.note(n);
            }
            return true;
        }
        misses.extend(notes);
    }
    if R::ON {
        let why = misses.join("; ");
        rec.note(if entries.len() > 1 {
            format!("no {name} entry matched ({why})")
        } else {
            why
        });
    }
    false
}

impl Field {
    /// Any value matches (if any is listed) and no excluded value does; on TCP a field that
    /// only exists for HTTP is dropped (the caller skipped ALLOW rules that have one).
    fn check<R: Recorder>(&self, a: &RequestAttrs<'_>, rec: &mut R) -> bool {
        if a.http.is_none() && self.attr.http_only() {
            if R::ON {
                rec.note(format!(
                    "{} ignored: HTTP-only and the traffic is TCP",
                    self.label
                ));
            }
            return true;
        }
        let hit = self.values.iter().position(|v| self.one(v, a));
        let excluded = self.not_values.iter().position(|v| self.one(v, a));
        let ok = (self.values.is_empty() || hit.is_some()) && excluded.is_none();
        if R::ON {
            rec.note(self.describe(a, hit, excluded));
        }
        ok
    }

    fn describe(
        &self,
        a: &RequestAttrs<'_>,
        hit: Option<usize>,
        excluded: Option<usize>,
    ) -> String {
        let actual = actual(&self.attr, a);
        if let Some(i) = excluded {
            return format!(
                "{} {} matched {actual} (excluded)",
                self.not_label,
                show(&self.not_values[i])
            );
        }
        match hit {
            Some(i) => format!("{} {} matched {actual}", self.label, show(&self.values[i])),
            None if self.values.is_empty() => {
                format!(
                    "{} none of {} matched {actual}",
                    self.not_label,
                    list(&self.not_values)
                )
            }
            None => format!(
                "{} {} did not match {actual}",
                self.label,
                list(&self.values)
            ),
        }
    }

    fn one(&self, v: &Value, a: &RequestAttrs<'_>) -> bool {
        let conn = a.conn;
        let http = a.http.as_ref();
        let auth = http.and_then(|h| h.auth);
        let principal = conn.source_principal.as_deref();
        match (&self.attr, v) {
            (Attr::SourcePrincipal, Value::Str(m)) => principal.is_some_and(|p| m.matches(p)),
            (Attr::SourceNamespace, Value::Namespace(n)) => {
                principal.is_some_and(|p| namespace_matches(n, p))
            }
            (Attr::SourceServiceAccount, Value::ServiceAccount { ns, sa }) => {
                principal.is_some_and(|p| service_account_matches(ns, sa, p))
            }
            (Attr::RequestPrincipal, Value::RequestPrincipal(m)) => {
                auth.is_some_and(|t| m.matches(&t.issuer, &t.subject))
            }
            (Attr::SourceIp, Value::Cidr(c)) => conn.source_ip.is_some_and(|ip| c.contains(ip)),
            (Attr::RemoteIp, Value::Cidr(c)) => match http {
                Some(h) => h.remote_ip.is_some_and(|ip| c.contains(ip)),
                None => conn.source_ip.is_some_and(|ip| c.contains(ip)),
            },
            (Attr::DestinationIp, Value::Cidr(c)) => {
                conn.destination_ip.is_some_and(|ip| c.contains(ip))
            }
            (Attr::DestinationPort, Value::Port(p)) => conn.destination_port == *p,
            (Attr::Host, Value::Str(m)) => http.is_some_and(|h| m.matches_ignore_case(h.host)),
            (Attr::Method, Value::Str(m)) => http.is_some_and(|h| m.matches_header(Some(h.method))),
            (Attr::Path, Value::Str(m)) => http.is_some_and(|h| m.matches(h.path)),
            (Attr::Path, Value::Template(t)) => http.is_some_and(|h| t.matches(h.path)),
            (Attr::Header(name), Value::Str(m)) => {
                http.is_some_and(|h| m.matches_header_list(header(h.headers, name).as_deref()))
            }
            (Attr::Claim(path), Value::Str(m)) => auth.is_some_and(|t| {
                claim(&t.claims, path).is_some_and(|c| match c {
                    serde_json::Value::String(s) => m.matches(s),
                    serde_json::Value::Array(items) => items
                        .iter()
                        .any(|i| i.as_str().is_some_and(|s| m.matches(s))),
                    _ => false,
                })
            }),
            (Attr::Audiences, Value::Str(m)) => {
                auth.is_some_and(|t| t.audiences.iter().any(|x| m.matches(x)))
            }
            (Attr::Presenter, Value::Str(m)) => {
                auth.is_some_and(|t| t.presenter.as_deref().is_some_and(|p| m.matches(p)))
            }
            (Attr::Sni, Value::Str(m)) => m.matches(conn.sni.as_deref().unwrap_or_default()),
            // The compiler never pairs an attribute with another kind of value.
            _ => false,
        }
    }
}

/// Every value of header `name` joined with `,`, as Envoy matches a repeated header.
fn header<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<Cow<'h, str>> {
    let mut values = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    let first = values.next()?;
    let rest: Vec<Cow<'_, str>> = values.collect();
    if rest.is_empty() {
        return Some(first);
    }
    let mut joined = first.into_owned();
    for v in rest {
        joined.push(',');
        joined.push_str(&v);
    }
    Some(Cow::Owned(joined))
}

/// `claims[a][b]…`: nested objects, the last one's value.
fn claim<'c>(
    claims: &'c serde_json::Map<String, serde_json::Value>,
    path: &[String],
) -> Option<&'c serde_json::Value> {
    let (first, rest) = path.split_first()?;
    rest.iter().try_fold(claims.get(first)?, |v, k| v.get(k))
}

fn show(v: &Value) -> String {
    match v {
        Value::Str(m) => m.to_string(),
        Value::Cidr(c) => c.to_string(),
        Value::Port(p) => format!("\"{p}\""),
        Value::Template(t) => t.to_string(),
        Value::RequestPrincipal(r) => r.to_string(),
        Value::ServiceAccount { ns, sa } => format!("\"{ns}/{sa}\""),
        Value::Namespace(n) => format!("\"{n}\""),
    }
}

fn list(vs: &[Value]) -> String {
    let shown: Vec<String> = vs.iter().map(show).collect();
    format!("[{}]", shown.join(", "))
}

/// The request's value of `attr`, quoted, for explanations.
fn actual(attr: &Attr, a: &RequestAttrs<'_>) -> String {
    let q = |s: &str| format!("\"{s}\"");
    let opt_ip = |ip: Option<std::net::IpAddr>| {
        ip.map_or("(no address)".to_string(), |ip| q(&ip.to_string()))
    };
    let http = a.http.as_ref();
    let auth = http.and_then(|h| h.auth);
    let no_jwt = || "(no verified JWT)".to_string();
    match attr {
        Attr::SourcePrincipal | Attr::SourceNamespace | Attr::SourceServiceAccount => a
            .conn
            .source_principal
            .as_deref()
            .map_or("(no peer identity: plaintext)".to_string(), q),
        Attr::RequestPrincipal => auth.map_or_else(no_jwt, |t| q(&t.principal)),
        Attr::SourceIp => opt_ip(a.conn.source_ip),
        Attr::RemoteIp => opt_ip(http.map_or(a.conn.source_ip, |h| h.remote_ip)),
        Attr::DestinationIp => opt_ip(a.conn.destination_ip),
        Attr::DestinationPort => q(&a.conn.destination_port.to_string()),
        Attr::Host => http.map_or_else(String::new, |h| q(h.host)),
        Attr::Method => http.map_or_else(String::new, |h| q(h.method)),
        Attr::Path => http.map_or_else(String::new, |h| q(h.path)),
        Attr::Header(name) => http
            .and_then(|h| header(h.headers, name))
            .map_or("(header absent)".to_string(), |v| q(&v)),
        Attr::Claim(path) => auth.map_or_else(no_jwt, |t| {
            claim(&t.claims, path).map_or("(claim absent)".to_string(), |c| c.to_string())
        }),
        Attr::Audiences => auth.map_or_else(no_jwt, |t| format!("{:?}", t.audiences)),
        Attr::Presenter => auth.map_or_else(no_jwt, |t| {
            t.presenter.as_deref().map_or("(no azp)".to_string(), q)
        }),
        Attr::Sni => a.conn.sni.as_deref().map_or("(no SNI)".to_string(), q),
    }
}
