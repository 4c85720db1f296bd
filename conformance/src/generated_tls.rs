//! The suite-generated TLS Secrets (case file section 1, "Generated TLS material"): upstream
//! creates them at suite start, the manifests only reference them, and this runner does not
//! create them. A status check that asserts the state of a listener serving such a Secret
//! therefore cannot hold here, and is skipped instead of failed.
//!
//! Which Secrets are generated is read from the case file itself: the names the header lists,
//! plus every Secret the cases use as TLS material (`tls.trust`, `tls.clientCertificate`,
//! `{secretCert:NS/NAME}`). A Secret a manifest references on purpose without creating it
//! (`does-not-exist`) is in neither, so checks expecting it to be unresolved still run.

use crate::cases::TestSpec;
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;
use std::collections::BTreeSet;

/// The header line that opens the list, and the placeholder prefix cases use for a Secret's
/// certificate.
const SECTION_TITLE: &str = "Generated TLS material.";
const SECRET_CERT_PLACEHOLDER: &str = "{secretCert:";

/// Secrets (namespace, name) the suite generates rather than ships in manifests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeneratedSecrets(BTreeSet<(String, String)>);

impl GeneratedSecrets {
    /// Everything the case file says is generated: the header's list and the cases' TLS refs.
    pub fn from_case_file(text: &str, tests: &[TestSpec]) -> GeneratedSecrets {
        let mut set = listed_in_header(text);
        for test in tests {
            for case in &test.cases {
                if let Some(tls) = &case.tls {
                    for key in ["trust", "clientCertificate"] {
                        if let Some(r) = tls.get(key).and_then(Yaml::as_str) {
                            set.insert(split_ref(r));
                        }
                    }
                }
                let r = &case.request;
                let e = case.expected_request.as_ref();
                let texts = [
                    r.client_cert.as_deref(),
                    e.and_then(|e| e.client_cert.as_deref()),
                ];
                for t in texts.into_iter().flatten() {
                    set.extend(secret_cert_placeholders(t));
                }
            }
        }
        GeneratedSecrets(set)
    }

    pub fn contains(&self, namespace: &str, name: &str) -> bool {
        self.0.contains(&(namespace.to_owned(), name.to_owned()))
    }

    /// The generated Secret, absent from `docs`, that a listener whose state `check` asserts
    /// serves. Only checks that read listener (or, through them, Gateway) conditions count:
    /// a route's own conditions do not depend on its parent's certificate.
    pub fn missing_for_check(&self, check: &Json, docs: &[Yaml]) -> Option<(String, String)> {
        let s = |v: &Json, key: &str| v.get(key).and_then(Json::as_str).map(str::to_owned);
        let parent = |key: &str| {
            let p = check.get(key)?;
            Some((
                s(p, "kind").unwrap_or_else(|| "Gateway".into()),
                s(p, "ref")?,
            ))
        };
        let (kind, reference, listeners): (String, String, Option<Vec<String>>) =
            match check.get("check").and_then(Json::as_str)? {
                "routesAccepted" => {
                    let (k, r) = parent("parent")?;
                    (k, r, None)
                }
                "listenerConditions" => {
                    let (k, r) = parent("parent")?;
                    (k, r, Some(vec![s(check, "listener")?]))
                }
                "listenerStatus" => {
                    let (k, r) = parent("parent")?;
                    let names = check
                        .get("listeners")
                        .and_then(Json::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|l| s(l, "name"))
                        .collect();
                    (k, r, Some(names))
                }
                "gatewayCondition" => ("Gateway".into(), s(check, "gateway")?, None),
                "statusSequence" => {
                    return check
                        .get("steps")
                        .and_then(Json::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|step| step.get("expect").and_then(Json::as_array))
                        .flatten()
                        .find_map(|c| self.missing_for_check(c, docs));
                }
                _ => return None,
            };
        let (ns, name) = split_ref(&reference);
        let parent = docs.iter().find(|d| {
            crate::manifests::kind(d) == kind
                && crate::manifests::key(d) == (ns.clone(), name.clone())
        })?;
        certificate_refs(parent, listeners.as_deref())
            .into_iter()
            .find(|secret| self.0.contains(secret) && !has_secret(docs, secret))
    }
}

/// `ns/name` (namespace "default" when it has none) as a pair.
fn split_ref(reference: &str) -> (String, String) {
    let (ns, name) = reference.split_once('/').unwrap_or(("default", reference));
    (ns.to_owned(), name.to_owned())
}

/// The Secrets of every `{secretCert:NS/NAME}` in `text`.
fn secret_cert_placeholders(text: &str) -> Vec<(String, String)> {
    text.split(SECRET_CERT_PLACEHOLDER)
        .skip(1)
        .filter_map(|rest| rest.split_once('}'))
        .map(|(reference, _)| split_ref(reference))
        .collect()
}

fn has_secret(docs: &[Yaml], secret: &(String, String)) -> bool {
    docs.iter()
        .any(|d| crate::manifests::kind(d) == "Secret" && crate::manifests::key(d) == *secret)
}

/// The Secrets the listeners of a Gateway or ListenerSet (all, or only those named) reference
/// in `tls.certificateRefs`; a ref without a namespace is in the parent's.
fn certificate_refs(parent: &Yaml, only: Option<&[String]>) -> Vec<(String, String)> {
    let parent_ns = crate::manifests::key(parent).0;
    let text = |v: &Yaml, key: &str| v.get(key).and_then(Yaml::as_str).map(str::to_owned);
    parent
        .get("spec")
        .and_then(|s| s.get("listeners"))
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .filter(|l| only.is_none_or(|names| text(l, "name").is_some_and(|n| names.contains(&n))))
        .filter_map(|l| l.get("tls")?.get("certificateRefs")?.as_sequence())
        .flatten()
        .filter(|r| {
            text(r, "group").unwrap_or_default().is_empty()
                && text(r, "kind").as_deref().unwrap_or("Secret") == "Secret"
        })
        .filter_map(|r| {
            Some((
                text(r, "namespace").unwrap_or_else(|| parent_ns.clone()),
                text(r, "name")?,
            ))
        })
        .collect()
}

/// The Secrets the header's "Generated TLS material" bullets name. A bullet starts with the
/// object `NS/NAME` and its kind (`Secret`, `ConfigMap`); further Secrets in the same
/// namespace follow the words "Secret"/"Secrets" (several joined by "and" or ","), and a
/// parenthetical "in OTHER-NS" right after a name says the same Secret also exists there.
fn listed_in_header(text: &str) -> BTreeSet<(String, String)> {
    let mut bullets: Vec<String> = Vec::new();
    let mut in_section = false;
    for line in text.lines() {
        let Some(comment) = line.strip_prefix('#') else {
            break;
        };
        let content = comment.trim();
        if !in_section {
            in_section = content.starts_with(SECTION_TITLE);
            continue;
        }
        if content.is_empty() || content.starts_with('=') {
            break;
        }
        if let Some(bullet) = content.strip_prefix("* ") {
            bullets.push(bullet.to_owned());
        } else if let Some(last) = bullets.last_mut() {
            last.push(' ');
            last.push_str(content);
        }
    }
    let mut set = BTreeSet::new();
    for bullet in &bullets {
        let tokens = tokenize(bullet);
        let Some(Token::Word(lead)) = tokens.first() else {
            continue;
        };
        let Some((ns, name)) = lead.split_once('/') else {
            continue;
        };
        if matches!(tokens.get(1), Some(Token::Word(k)) if k == "Secret") {
            set.insert((ns.to_owned(), name.to_owned()));
        }
        let mut i = 2;
        while i < tokens.len() {
            if !matches!(&tokens[i], Token::Word(w) if w == "Secret" || w == "Secrets") {
                i += 1;
                continue;
            }
            i += 1;
            while let Some(Token::Word(secret)) = tokens.get(i).filter(|t| t.is_name()) {
                set.insert((ns.to_owned(), secret.clone()));
                i += 1;
                if let Some(Token::Group(words)) = tokens.get(i) {
                    for pair in words.windows(2) {
                        if pair[0] == "in" && is_name(&pair[1]) {
                            set.insert((pair[1].clone(), secret.clone()));
                        }
                    }
                    i += 1;
                }
                match tokens.get(i) {
                    Some(Token::Word(w)) if w == "and" => i += 1,
                    Some(Token::Punct(',')) => i += 1,
                    _ => break,
                }
            }
        }
    }
    set
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Punct(char),
    /// A parenthetical, as its words.
    Group(Vec<String>),
}

impl Token {
    fn is_name(&self) -> bool {
        matches!(self, Token::Word(w) if is_name(w))
    }
}

/// A Kubernetes object or namespace name (DNS subdomain): lowercase alphanumerics, '-', '.'.
fn is_name(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

const PUNCTUATION: &[char] = &[',', ';', ':', '=', '"', '[', ']'];

fn tokenize(text: &str) -> Vec<Token> {
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| c.is_whitespace() || PUNCTUATION.contains(&c))
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars();
    let flush = |word: &mut String, tokens: &mut Vec<Token>| {
        if !word.is_empty() {
            tokens.push(Token::Word(std::mem::take(word)));
        }
    };
    while let Some(c) = chars.next() {
        if c == '(' {
            flush(&mut word, &mut tokens);
            let mut depth = 1;
            let mut inner = String::new();
            for c in chars.by_ref() {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                if depth == 0 {
                    break;
                }
                inner.push(c);
            }
            tokens.push(Token::Group(words(&inner)));
        } else if c.is_whitespace() {
            flush(&mut word, &mut tokens);
        } else if PUNCTUATION.contains(&c) {
            flush(&mut word, &mut tokens);
            tokens.push(Token::Punct(c));
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut tokens);
    tokens
}

#[cfg(test)]
mod tests;
