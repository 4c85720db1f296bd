//! AuthorizationPolicy: compiled rules, evaluated in Istio's order (CUSTOM, then DENY, then
//! ALLOW; AUDIT only logged; `istio.io/dry-run` only shadowed), failing closed. Also Istio's
//! path normalization and `remote.ip`.
//!
//! The semantics are istiod's translation to Envoy's RBAC filter for a waypoint, and Envoy's
//! evaluation of it:
//! - a policy matches when any rule does; a rule when any `from`, any `to` and every `when`
//!   match; a field when any of its values and none of its `not` values match;
//! - no rules: the policy matches nothing (so an ALLOW `{}` denies everything); `rules: [{}]`
//!   matches everything;
//! - what cannot be evaluated fails closed: such an ALLOW rule never matches, a DENY (AUDIT,
//!   CUSTOM) rule always does; on TCP, HTTP-only fields are dropped from DENY rules and make
//!   ALLOW rules never match.

mod compile;
mod conditions;
mod eval;
mod matchers;
mod normalize;
mod rule;
mod set;

pub use normalize::{is_normalized, normalize_path, remote_ip, BadPath};

use crate::attrs::{RequestAttrs, TrustDomains};
use crate::spec::{PolicyIssue, PolicyRef};
use eval::{Leaning, Recorder};
use rule::Rules;

/// `spec.action`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyAction {
    /// ALLOW (the default).
    Allow,
    /// DENY.
    Deny,
    /// AUDIT: logged, never changes the outcome.
    Audit,
    /// CUSTOM: delegated to the named ext_authz provider.
    Custom {
        /// `spec.provider.name`.
        provider: String,
    },
}

impl PolicyAction {
    fn name(&self) -> &'static str {
        match self {
            PolicyAction::Allow => "ALLOW",
            PolicyAction::Deny => "DENY",
            PolicyAction::Audit => "AUDIT",
            PolicyAction::Custom { .. } => "CUSTOM",
        }
    }
}

/// One compiled AuthorizationPolicy.
#[derive(Debug)]
pub struct AuthorizationPolicy {
    /// Which policy.
    pub source: PolicyRef,
    /// Its action.
    pub action: PolicyAction,
    /// `istio.io/dry-run: "true"`: evaluated and logged, never enforced.
    pub dry_run: bool,
    /// What is wrong with it; errors mean parts of it are in force fail closed.
    pub issues: Vec<PolicyIssue>,
    rules: Rules,
    /// A CUSTOM policy that cannot call its provider (none named, unreadable spec): istiod
    /// then denies what its rules match.
    custom_as_deny: bool,
}

/// Which part of a policy matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hit {
    /// That rule.
    Rule(usize),
    /// The whole policy, failing closed because its spec cannot be read.
    Unreadable,
}

impl AuthorizationPolicy {
    /// Compiles `spec` (the policy's `spec` as written). Never fails: what cannot be
    /// evaluated is compiled fail closed and reported in `issues`.
    pub fn compile(
        source: PolicyRef,
        spec: &serde_json::Value,
        dry_run: bool,
        trust: &TrustDomains,
    ) -> AuthorizationPolicy {
        let compiled = compile::compile(spec, &source.namespace, trust);
        let custom_as_deny = matches!(&compiled.action, PolicyAction::Custom { provider } if provider.is_empty())
            || (matches!(compiled.action, PolicyAction::Custom { .. })
                && compiled.rules == Rules::Unreadable);
        AuthorizationPolicy {
            source,
            action: compiled.action,
            dry_run,
            issues: compiled.issues,
            rules: compiled.rules,
            custom_as_deny,
        }
    }

    /// How many rules it has (0 for an unreadable spec).
    pub fn rule_count(&self) -> usize {
        match &self.rules {
            Rules::List(rules) => rules.len(),
            Rules::Unreadable => 0,
        }
    }

    fn leaning(&self) -> Leaning {
        match self.action {
            PolicyAction::Allow => Leaning::Narrow,
            _ => Leaning::Wide,
        }
    }

    /// The first part that matches `a`; with a recording `rec`, one note per rule tried.
    fn first_hit<R: Recorder>(&self, a: &RequestAttrs<'_>, rec: &mut R) -> Option<Hit> {
        let lean = self.leaning();
        let rules = match &self.rules {
            Rules::Unreadable => {
                if R::ON {
                    rec.note("the spec cannot be read: in force fail closed".to_string());
                }
                return (lean == Leaning::Wide).then_some(Hit::Unreadable);
            }
            Rules::List(rules) => rules,
        };
        if R::ON && rules.is_empty() {
            rec.note("no rules: matches nothing".to_string());
        }
        for (i, rule) in rules.iter().enumerate() {
            if R::ON {
                let mut notes = Vec::new();
                let hit = rule.matches(a, lean, &mut notes);
                let verb = if hit { "matched" } else { "did not match" };
                let why = match (hit, notes.is_empty()) {
                    (true, true) => "it has no conditions".to_string(),
                    (true, false) => notes.join(" and "),
                    (false, _) => notes.pop().unwrap_or_default(),
                };
                rec.note(format!("rule {i} {verb}: {why}"));
                if hit {
                    return Some(Hit::Rule(i));
                }
            } else if rule.matches(a, lean, &mut eval::Silent) {
                return Some(Hit::Rule(i));
            }
        }
        None
    }

    /// What decided, for a part that matched: the fields and values compared.
    fn detail(&self, hit: Hit, a: &RequestAttrs<'_>) -> String {
        match (hit, &self.rules) {
            (Hit::Rule(i), Rules::List(rules)) => {
                let mut notes = Vec::new();
                if let Some(rule) = rules.get(i) {
                    rule.matches(a, self.leaning(), &mut notes);
                }
                if notes.is_empty() {
                    format!("rules[{i}] has no conditions: it matches every request")
                } else {
                    notes.join(" and ")
                }
            }
            _ => "the spec cannot be read: the policy is in force fail closed (see its issues)"
                .to_string(),
        }
    }
}

/// The policies in force for one target (the waypoint's and the destination service's), ready
/// to evaluate.
#[derive(Debug, Default)]
pub struct PolicySet {
    /// Every policy, in a stable order (namespace, name).
    pub policies: Vec<std::sync::Arc<AuthorizationPolicy>>,
}

/// A CUSTOM policy whose rules matched: the request must be checked by `provider`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomMatch {
    /// The ext_authz provider's name.
    pub provider: String,
    /// The policy that matched (the first, if several use the same provider).
    pub policy: PolicyRef,
}

/// The outcome of DENY and ALLOW evaluation, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Whether the request may go on.
    pub allowed: bool,
    /// The policy, rule and field that decided; `None` when nothing was in force or no ALLOW
    /// policy exists.
    pub decided_by: Option<Decision>,
    /// Every policy evaluated, in order, one line each, for `waypoint explain` and the debug
    /// log (filled by [`PolicySet::explain`] only: the hot path builds no strings).
    pub trace: Vec<String>,
    /// What AUDIT and dry-run policies would have done, for the log.
    pub shadow: Vec<String>,
}

/// Which policy decided, and by what.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The policy.
    pub policy: PolicyRef,
    /// Its action.
    pub action: PolicyAction,
    /// The rule index that matched (DENY/ALLOW), or `None` when the verdict comes from no ALLOW
    /// rule matching (or from a policy whose spec cannot be read).
    pub rule: Option<usize>,
    /// The deciding field path and what it compared, e.g.
    /// `rules[0].to[0].operation.paths "/admin/*" matched "/admin/x"`.
    pub detail: String,
}

/// Reads the `istio.io/dry-run` annotation as istiod does (Go's `strconv.ParseBool`); a value
/// that is not a boolean is an issue and the policy is enforced, as istiod enforces it.
pub fn dry_run_annotation(value: Option<&str>) -> (bool, Option<PolicyIssue>) {
    match value {
        None => (false, None),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => (true, None),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => (false, None),
        Some(other) => (
            false,
            Some(PolicyIssue::warning(
                "metadata.annotations[istio.io/dry-run]",
                format!("\"{other}\" is not a boolean; the policy is enforced (use \"true\" or \"false\")"),
            )),
        ),
    }
}

#[cfg(test)]
mod tests;
