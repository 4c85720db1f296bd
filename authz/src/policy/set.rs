//! Evaluating the policies in force for a target in Istio's order: CUSTOM (delegated), then
//! DENY, then ALLOW; AUDIT and dry-run policies only shadowed.

use super::eval::{Recorder, Silent};
use super::{AuthorizationPolicy, CustomMatch, Decision, Hit, PolicyAction, PolicySet, Verdict};
use crate::attrs::RequestAttrs;
use std::sync::Arc;

/// The role a policy plays in this set's evaluation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Delegated to its ext_authz provider.
    Custom,
    /// Denies what it matches (DENY, and CUSTOM policies that cannot reach a provider).
    Deny,
    /// Allows what it matches.
    Allow,
    /// Logged (AUDIT, and every dry-run policy).
    Shadow,
}

impl PolicySet {
    /// The set of `policies` (their order does not matter: evaluation orders them by
    /// namespace and name).
    pub fn new(mut policies: Vec<Arc<AuthorizationPolicy>>) -> PolicySet {
        policies.sort_by(|a, b| a.source.cmp(&b.source));
        PolicySet { policies }
    }

    /// True when no policy is in force: everything is allowed without evaluation.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Istio asks one ext_authz provider per workload: CUSTOM policies naming several make
    /// istiod deny what they match instead.
    fn providers_conflict(&self) -> bool {
        let mut first: Option<&str> = None;
        self.enforced_custom().any(|p| match (&p.action, first) {
            (PolicyAction::Custom { provider }, None) => {
                first = Some(provider);
                false
            }
            (PolicyAction::Custom { provider }, Some(f)) => provider != f,
            _ => false,
        })
    }

    fn enforced_custom(&self) -> impl Iterator<Item = &Arc<AuthorizationPolicy>> + Clone {
        self.policies.iter().filter(|p| {
            !p.dry_run && !p.custom_as_deny && matches!(p.action, PolicyAction::Custom { .. })
        })
    }

    fn role(&self, p: &AuthorizationPolicy, conflict: bool) -> Role {
        match &p.action {
            _ if p.dry_run => Role::Shadow,
            PolicyAction::Audit => Role::Shadow,
            PolicyAction::Custom { .. } if p.custom_as_deny || conflict => Role::Deny,
            PolicyAction::Custom { .. } => Role::Custom,
            PolicyAction::Deny => Role::Deny,
            PolicyAction::Allow => Role::Allow,
        }
    }

    /// The first enforced CUSTOM policy whose rules match `attrs`, if any.
    pub fn custom(&self, attrs: &RequestAttrs<'_>) -> Option<CustomMatch> {
        if self.providers_conflict() {
            return None;
        }
        self.enforced_custom().find_map(|p| {
            p.first_hit(attrs, &mut Silent)?;
            match &p.action {
                PolicyAction::Custom { provider } => Some(CustomMatch {
                    provider: provider.clone(),
                    policy: p.source.clone(),
                }),
                _ => None,
            }
        })
    }

    /// DENY, then ALLOW (AUDIT and dry-run policies shadowed) for `attrs`. Builds no trace.
    pub fn evaluate(&self, attrs: &RequestAttrs<'_>) -> Verdict {
        self.run(attrs, &mut Silent)
    }

    /// As [`PolicySet::evaluate`], with `trace` filled: one line per policy evaluated, in
    /// order (CUSTOM policies included, which `evaluate` leaves to [`PolicySet::custom`]).
    pub fn explain(&self, attrs: &RequestAttrs<'_>) -> Verdict {
        let mut trace = Vec::new();
        let mut verdict = self.run(attrs, &mut trace);
        verdict.trace = trace;
        verdict
    }

    fn run<R: Recorder>(&self, a: &RequestAttrs<'_>, rec: &mut R) -> Verdict {
        let conflict = self.providers_conflict();
        let mut verdict = Verdict {
            allowed: true,
            decided_by: None,
            trace: Vec::new(),
            shadow: self.shadow(a, conflict),
        };
        if R::ON {
            for p in self.with_role(Role::Custom, conflict) {
                let line = trace_line(p, a, "checked by ext_authz");
                rec.note(line);
            }
        }
        for p in self.with_role(Role::Deny, conflict) {
            if R::ON {
                rec.note(trace_line(p, a, "denied"));
            }
            if let Some(hit) = p.first_hit(a, &mut Silent) {
                verdict.allowed = false;
                verdict.decided_by = Some(decision(p, hit, a));
                return verdict;
            }
        }
        let mut allow = self.with_role(Role::Allow, conflict).peekable();
        let Some(first) = allow.peek().map(|p| Arc::clone(p)) else {
            if R::ON {
                rec.note("no ALLOW policy in force: allowed".to_string());
            }
            return verdict;
        };
        for p in allow {
            if R::ON {
                rec.note(trace_line(p, a, "allowed"));
            }
            if let Some(hit) = p.first_hit(a, &mut Silent) {
                verdict.decided_by = Some(decision(p, hit, a));
                return verdict;
            }
        }
        verdict.allowed = false;
        verdict.decided_by = Some(Decision {
            policy: first.source.clone(),
            action: PolicyAction::Allow,
            rule: None,
            detail: "ALLOW policies are in force and none of their rules matched".to_string(),
        });
        verdict
    }

    fn with_role(
        &self,
        role: Role,
        conflict: bool,
    ) -> impl Iterator<Item = &Arc<AuthorizationPolicy>> {
        self.policies
            .iter()
            .filter(move |p| self.role(p, conflict) == role)
    }

    /// What AUDIT and dry-run policies would do; empty (no strings built) without any.
    fn shadow(&self, a: &RequestAttrs<'_>, conflict: bool) -> Vec<String> {
        let mut out = Vec::new();
        let mut dry_allow: Option<bool> = None;
        for p in self.with_role(Role::Shadow, conflict) {
            let hit = p.first_hit(a, &mut Silent);
            let what = if p.dry_run { "dry-run " } else { "" };
            if let PolicyAction::Allow = p.action {
                dry_allow = Some(dry_allow.unwrap_or(false) || hit.is_some());
            }
            if let Some(hit) = hit {
                let effect = match &p.action {
                    PolicyAction::Allow => "would allow",
                    PolicyAction::Deny => "would deny",
                    PolicyAction::Audit => "audited",
                    PolicyAction::Custom { .. } => "would be checked by ext_authz",
                };
                out.push(format!(
                    "{what}{} {}: {effect} ({})",
                    p.action.name(),
                    name(p),
                    p.detail(hit, a)
                ));
            }
        }
        if dry_allow == Some(false) {
            out.push("dry-run ALLOW: would deny (no dry-run ALLOW policy matched)".to_string());
        }
        out
    }
}

fn name(p: &AuthorizationPolicy) -> String {
    format!("{}/{}", p.source.namespace, p.source.name)
}

fn decision(p: &AuthorizationPolicy, hit: Hit, a: &RequestAttrs<'_>) -> Decision {
    Decision {
        policy: p.source.clone(),
        action: p.action.clone(),
        rule: match hit {
            Hit::Rule(i) => Some(i),
            Hit::Unreadable => None,
        },
        detail: p.detail(hit, a),
    }
}

/// `DENY default/deny-admin: rule 0 did not match: …`, and what a match does.
fn trace_line(p: &AuthorizationPolicy, a: &RequestAttrs<'_>, effect: &str) -> String {
    let mut notes = Vec::new();
    let hit = p.first_hit(a, &mut notes);
    let provider = match &p.action {
        PolicyAction::Custom { provider } => format!(" (provider \"{provider}\")"),
        _ => String::new(),
    };
    let outcome = if hit.is_some() {
        format!(" → {effect}")
    } else {
        String::new()
    };
    format!(
        "{}{provider} {}: {}{outcome}",
        p.action.name(),
        name(p),
        notes.join("; ")
    )
}
