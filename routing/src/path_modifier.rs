//! The `path` of RequestRedirect and URLRewrite: how a request path becomes the path of a
//! Location header or of the forwarded request. Both filters share one rule set, as the
//! Gateway API's HTTPPathModifier does.

use crate::issue::{Issue, IssueReason};
use crate::request_match::{PathMatch, RequestMatch};

/// A compiled HTTPPathModifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathModifier {
    /// The whole path becomes this value.
    ReplaceFullPath(String),
    /// The part of the path the rule's PathPrefix matched becomes this value; the rest of the
    /// path (whole path elements) follows it. Stored without a trailing '/', so a replacement of
    /// "/" is the empty string and never produces "//".
    ReplacePrefixMatch(String),
    /// VirtualService `rewrite.uri` (Envoy's `prefix_rewrite`): the part of the path the
    /// match selected becomes this value — the prefix of a `uri.prefix` match, else the whole
    /// path. Applied literally, as Envoy does: `/v2` for prefix `/api` turns `/api/x` into
    /// `/v2/x` and `/apix` into `/v2x`.
    ReplaceMatched(String),
    /// VirtualService `rewrite.uriRegexRewrite` (Envoy's `regex_rewrite`): every match of the
    /// pattern in the path is replaced by the substitution.
    RegexReplace(PathRegex, String),
}

/// A compiled regular expression compared by its pattern, so rewrites stay comparable.
#[derive(Clone, Debug)]
pub struct PathRegex(pub regex::Regex);

impl PartialEq for PathRegex {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for PathRegex {}

impl PathModifier {
    /// The new path for `path` (without its query), given the match that selected the rule.
    ///
    /// ReplacePrefixMatch needs a PathPrefix match; compilation reports any other match type as
    /// an error, and for one that slips through the path is left unchanged rather than guessed.
    pub fn apply(&self, path: &str, matched: &PathMatch) -> String {
        match self {
            PathModifier::ReplaceFullPath(full) => full.clone(),
            PathModifier::ReplaceMatched(replacement) => match matched {
                PathMatch::StringPrefix { prefix, .. } => {
                    format!(
                        "{replacement}{}",
                        path.get(prefix.len()..).unwrap_or_default()
                    )
                }
                _ => replacement.clone(),
            },
            PathModifier::RegexReplace(re, substitution) => {
                re.0.replace_all(path, substitution.as_str()).into_owned()
            }
            PathModifier::ReplacePrefixMatch(replacement) => {
                let PathMatch::Prefix { trimmed, .. } = matched else {
                    return path.to_owned();
                };
                // PathPrefix matches on element boundaries, so what follows the prefix is empty
                // or starts with '/'; a path the prefix does not match is left alone.
                let Some(rest) = path
                    .strip_prefix(trimmed.as_str())
                    .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                else {
                    return path.to_owned();
                };
                // The root prefix "/" is the whole of the path "/": replacing it gives the
                // replacement itself, not the replacement plus a trailing slash.
                let rest = if trimmed.is_empty() && rest == "/" {
                    ""
                } else {
                    rest
                };
                let joined = format!("{replacement}{rest}");
                if joined.is_empty() {
                    "/".to_owned()
                } else {
                    joined
                }
            }
        }
    }

    /// Compiles a ReplacePrefixMatch path modifier when `prefix`, else a ReplaceFullPath, whose
    /// value is `value`, at `field` (e.g. "spec.rules[0].filters[0].urlRewrite.path").
    /// `matches` are the rule's matches, which ReplacePrefixMatch requires to be PathPrefix.
    pub(crate) fn compile(
        prefix: bool,
        value: Option<&str>,
        matches: &[RequestMatch],
        field: &str,
        issues: &mut Vec<Issue>,
    ) -> Option<Self> {
        let key = if prefix {
            "replacePrefixMatch"
        } else {
            "replaceFullPath"
        };
        let Some(value) = value else {
            issues.push(Issue::error(
                IssueReason::Invalid,
                format!("{field}.{key}"),
                format!("path type {} needs its {key} field", type_name(prefix)),
            ));
            return None;
        };
        if !value.starts_with('/') {
            issues.push(Issue::error(
                IssueReason::Invalid,
                format!("{field}.{key}"),
                format!("{key} must start with '/' (got {value:?})"),
            ));
            return None;
        }
        if !prefix {
            return Some(PathModifier::ReplaceFullPath(value.to_owned()));
        }
        if matches
            .iter()
            .any(|m| !matches!(m.path, PathMatch::Prefix { .. }))
        {
            issues.push(Issue::error(
                IssueReason::Invalid,
                format!("{field}.type"),
                "ReplacePrefixMatch needs every match of the rule to be a PathPrefix match; \
                 requests selected by another match type keep their path",
            ));
        }
        Some(PathModifier::ReplacePrefixMatch(
            value.trim_end_matches('/').to_owned(),
        ))
    }
}

fn type_name(prefix: bool) -> &'static str {
    if prefix {
        "ReplacePrefixMatch"
    } else {
        "ReplaceFullPath"
    }
}

#[cfg(test)]
mod tests;
