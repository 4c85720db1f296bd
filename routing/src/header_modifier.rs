//! RequestHeaderModifier / ResponseHeaderModifier filters, validated once at compile time so
//! applying one per request cannot fail.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::issue::{Issue, IssueReason};

/// Compiled RequestHeaderModifier / ResponseHeaderModifier: names already validated and lowercased.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderModifier {
    /// Headers whose every existing value is replaced by this one.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Values appended to whatever the header already carries.
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Headers removed entirely, each listed once.
    pub remove: Vec<HeaderName>,
}

impl HeaderModifier {
    /// `set` replaces every value of a header, `add` appends one, `remove` deletes all values;
    /// applied in that order, as in the Gateway API examples.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }

    /// Whether applying this changes nothing, e.g. when every entry the user wrote was invalid.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Compiles the filter at `field` (e.g. "spec.rules[0].filters[1].requestHeaderModifier").
    /// Bad entries are reported and left out; the rest still apply.
    pub(crate) fn compile<'a>(
        set: impl IntoIterator<Item = (&'a str, &'a str)>,
        add: impl IntoIterator<Item = (&'a str, &'a str)>,
        remove: &[String],
        field: &str,
        issues: &mut Vec<Issue>,
    ) -> Self {
        let mut modifier = Self::default();
        for (n, (name, value)) in set.into_iter().enumerate() {
            let entry = format!("{field}.set[{n}]");
            if let Some(pair) = modifier.compile_pair(name, value, &entry, issues) {
                modifier.set.push(pair);
            }
        }
        for (n, (name, value)) in add.into_iter().enumerate() {
            let entry = format!("{field}.add[{n}]");
            if let Some(pair) = modifier.compile_pair(name, value, &entry, issues) {
                modifier.add.push(pair);
            }
        }
        for (n, name) in remove.iter().enumerate() {
            match HeaderName::from_bytes(name.as_bytes()) {
                Ok(name) if !modifier.remove.contains(&name) => modifier.remove.push(name),
                // Removing a header twice is the same as removing it once.
                Ok(_) => {}
                Err(_) => issues.push(invalid_name(format!("{field}.remove[{n}]"), name)),
            }
        }
        modifier
    }

    fn compile_pair(
        &self,
        name: &str,
        value: &str,
        field: &str,
        issues: &mut Vec<Issue>,
    ) -> Option<(HeaderName, HeaderValue)> {
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            issues.push(invalid_name(format!("{field}.name"), name));
            return None;
        };
        // The spec keys set and add by name; two entries for one header leave the intended
        // result ambiguous, so the later one is refused rather than guessed at.
        if self.set.iter().chain(&self.add).any(|(n, _)| *n == header) {
            issues.push(Issue::error(
                IssueReason::Invalid,
                format!("{field}.name"),
                format!("header {header} is already modified by an earlier set or add entry"),
            ));
            return None;
        }
        let Ok(value) = HeaderValue::from_str(value) else {
            issues.push(Issue::error(
                IssueReason::Invalid,
                format!("{field}.value"),
                format!("invalid value for header {header}: control characters are not allowed"),
            ));
            return None;
        };
        Some((header, value))
    }
}

fn invalid_name(field: String, name: &str) -> Issue {
    Issue::error(
        IssueReason::Invalid,
        field,
        format!("invalid header name {name:?}"),
    )
}

#[cfg(test)]
mod tests;
