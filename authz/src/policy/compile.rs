//! AuthorizationPolicy spec (JSON as written) → compiled rules, with istiod's validation
//! turned into issues: what Istio's webhook would reject is loaded fail closed instead.

use super::conditions::condition_attr;
use super::matchers::{Cidr, PathTemplate, RequestPrincipal, StrMatch};
use super::rule::{Attr, Field, Rule, Rules, Value};
use super::PolicyAction;
use crate::attrs::TrustDomains;
use crate::spec::PolicyIssue;
use serde::Deserialize;

/// `spec` as written; unknown fields are refused like the CRD's schema refuses them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SpecDoc {
    #[serde(default)]
    selector: Option<serde_json::Value>,
    #[serde(default)]
    target_ref: Option<serde_json::Value>,
    #[serde(default)]
    target_refs: Option<serde_json::Value>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    provider: Option<ProviderDoc>,
    #[serde(default)]
    rules: Option<Vec<Option<RuleDoc>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderDoc {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RuleDoc {
    #[serde(default)]
    from: Option<Vec<Option<FromDoc>>>,
    #[serde(default)]
    to: Option<Vec<Option<ToDoc>>>,
    #[serde(default)]
    when: Option<Vec<Option<ConditionDoc>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FromDoc {
    #[serde(default)]
    source: Option<JsonMap>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToDoc {
    #[serde(default)]
    operation: Option<JsonMap>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConditionDoc {
    key: String,
    #[serde(default)]
    values: Option<Vec<String>>,
    #[serde(default)]
    not_values: Option<Vec<String>>,
}

/// `source` fields: (values key, notValues key, attribute), in istiod's order.
const SOURCE_FIELDS: [(&str, &str, Attr); 6] = [
    ("principals", "notPrincipals", Attr::SourcePrincipal),
    (
        "requestPrincipals",
        "notRequestPrincipals",
        Attr::RequestPrincipal,
    ),
    ("namespaces", "notNamespaces", Attr::SourceNamespace),
    (
        "serviceAccounts",
        "notServiceAccounts",
        Attr::SourceServiceAccount,
    ),
    ("ipBlocks", "notIpBlocks", Attr::SourceIp),
    ("remoteIpBlocks", "notRemoteIpBlocks", Attr::RemoteIp),
];

/// `operation` fields.
const OPERATION_FIELDS: [(&str, &str, Attr); 4] = [
    ("hosts", "notHosts", Attr::Host),
    ("ports", "notPorts", Attr::DestinationPort),
    ("methods", "notMethods", Attr::Method),
    ("paths", "notPaths", Attr::Path),
];

/// What compiling a spec gives.
pub(crate) struct Compiled {
    pub(crate) action: PolicyAction,
    pub(crate) rules: Rules,
    pub(crate) issues: Vec<PolicyIssue>,
}

/// Compiles `spec`; `namespace` is the policy's (the default of `serviceAccounts`).
pub(crate) fn compile(spec: &serde_json::Value, namespace: &str, trust: &TrustDomains) -> Compiled {
    // A policy without a spec is the empty spec `{}` (ALLOW nothing).
    let empty = serde_json::Value::Object(JsonMap::new());
    let spec = if spec.is_null() { &empty } else { spec };
    let doc: SpecDoc = match serde_path_to_error::deserialize(spec) {
        Ok(doc) => doc,
        Err(e) => return unreadable(spec, format!("spec.{}", e.path()), e.inner().to_string()),
    };
    let _ = (&doc.selector, &doc.target_ref, &doc.target_refs);
    let mut issues = Vec::new();
    let action = match action_of(&doc, &mut issues) {
        Some(action) => action,
        None => {
            return Compiled {
                action: PolicyAction::Deny,
                rules: Rules::Unreadable,
                issues,
            }
        }
    };
    // A provider on a non-CUSTOM policy: what the author meant is unknown.
    if doc.provider.is_some() && !matches!(action, PolicyAction::Custom { .. }) {
        return Compiled {
            action,
            rules: Rules::Unreadable,
            issues,
        };
    }
    let mut cx = Context {
        namespace,
        trust,
        issues,
        unreadable: false,
    };
    let rules = doc.rules.unwrap_or_default();
    let rules = rules
        .iter()
        .enumerate()
        .map(|(i, r)| cx.rule(i, r.as_ref()))
        .collect();
    let rules = if cx.unreadable {
        Rules::Unreadable
    } else {
        Rules::List(rules)
    };
    Compiled {
        action,
        rules,
        issues: cx.issues,
    }
}

/// A spec of the wrong shape: its action, if readable, decides how it fails closed.
fn unreadable(spec: &serde_json::Value, field: String, error: String) -> Compiled {
    let action = match spec.get("action").and_then(|a| a.as_str()) {
        Some("ALLOW") | None => PolicyAction::Allow,
        Some("CUSTOM") => PolicyAction::Custom {
            provider: spec
                .pointer("/provider/name")
                .and_then(|n| n.as_str())
                .unwrap_or_default()
                .to_string(),
        },
        Some("AUDIT") => PolicyAction::Audit,
        Some(_) => PolicyAction::Deny,
    };
    let issue = PolicyIssue::error(
        field,
        format!(
            "{error}; the policy cannot be read and is in force fail closed ({}): fix the field \
             as the AuthorizationPolicy reference describes",
            fail_closed_effect(&action)
        ),
    );
    Compiled {
        action,
        rules: Rules::Unreadable,
        issues: vec![issue],
    }
}

fn fail_closed_effect(action: &PolicyAction) -> &'static str {
    match action {
        PolicyAction::Allow => "it allows nothing",
        PolicyAction::Deny => "it denies every request",
        PolicyAction::Audit => "it audits every request",
        PolicyAction::Custom { .. } => "it denies every request",
    }
}

/// `action` and `provider`, or `None` (with an issue) when the action is unknown.
fn action_of(doc: &SpecDoc, issues: &mut Vec<PolicyIssue>) -> Option<PolicyAction> {
    let provider = doc.provider.as_ref().and_then(|p| p.name.clone());
    let action = match doc.action.as_deref() {
        None | Some("ALLOW") => PolicyAction::Allow,
        Some("DENY") => PolicyAction::Deny,
        Some("AUDIT") => PolicyAction::Audit,
        Some("CUSTOM") => {
            if provider.as_deref().unwrap_or_default().is_empty() {
                issues.push(PolicyIssue::error(
                    "spec.provider.name",
                    "a CUSTOM policy needs provider.name (an extensionProviders entry of the \
                     MeshConfig); until set it denies every request its rules match",
                ));
            }
            return Some(PolicyAction::Custom {
                provider: provider.unwrap_or_default(),
            });
        }
        Some(other) => {
            issues.push(PolicyIssue::error(
                "spec.action",
                format!(
                    "unknown action \"{other}\" (ALLOW, DENY, AUDIT or CUSTOM); the policy denies \
                     every request until fixed"
                ),
            ));
            return None;
        }
    };
    if doc.provider.is_some() {
        issues.push(PolicyIssue::error(
            "spec.provider",
            format!(
                "provider is only for action CUSTOM; remove it or set action: CUSTOM ({} until \
                 fixed)",
                fail_closed_effect(&action)
            ),
        ));
    }
    Some(action)
}

struct Context<'a> {
    namespace: &'a str,
    trust: &'a TrustDomains,
    issues: Vec<PolicyIssue>,
    /// A field of the wrong type or an unknown one: the schema would refuse the whole
    /// policy, so it fails closed as a whole.
    unreadable: bool,
}

impl Context<'_> {
    fn unreadable(&mut self, field: String, message: String) {
        self.unreadable = true;
        self.issues.push(PolicyIssue::error(
            format!("spec.{field}"),
            format!(
                "{message}; the policy cannot be read and is in force fail closed (ALLOW allows \
                 nothing, DENY and CUSTOM deny every request) until fixed"
            ),
        ));
    }

    fn error(&mut self, rule: &mut Rule, field: String, message: String) {
        rule.broken = true;
        self.issues.push(PolicyIssue::error(
            format!("spec.{field}"),
            format!(
                "{message}; this rule is in force fail closed (never matches in ALLOW, always in \
                 DENY) until fixed"
            ),
        ));
    }

    fn rule(&mut self, i: usize, doc: Option<&RuleDoc>) -> Rule {
        let mut rule = Rule::default();
        let at = format!("rules[{i}]");
        let Some(doc) = doc else {
            self.error(
                &mut rule,
                at,
                "a rule must not be null (use {} to match every request)".into(),
            );
            return rule;
        };
        if let Some(from) = &doc.from {
            let from = inner_maps(from, |f: &FromDoc| f.source.as_ref());
            self.entries_of(&mut rule, &at, "from", "source", &from, true);
        }
        if let Some(to) = &doc.to {
            let to = inner_maps(to, |t: &ToDoc| t.operation.as_ref());
            self.entries_of(&mut rule, &at, "to", "operation", &to, false);
        }
        for (j, cond) in doc.when.iter().flatten().enumerate() {
            let path = format!("{at}.when[{j}]");
            match cond {
                Some(c) => self.condition(&mut rule, &path, c),
                None => self.error(&mut rule, path, "a condition must not be null".into()),
            }
        }
        let uses_http = rule.fields().any(|f| f.attr.http_only());
        rule.uses_http = uses_http;
        rule
    }

    /// `from[]`/`to[]`: each entry must name at least one field (istiod's validation).
    fn entries_of(
        &mut self,
        rule: &mut Rule,
        at: &str,
        list: &str,
        inner: &str,
        entries: &[Option<&JsonMap>],
        source: bool,
    ) {
        if entries.is_empty() {
            self.error(
                rule,
                format!("{at}.{list}"),
                format!("`{list}` must not be empty; omit it to match any"),
            );
        }
        for (j, entry) in entries.iter().enumerate() {
            let path = format!("{at}.{list}[{j}].{inner}");
            match entry {
                Some(map) => {
                    let fields = self.fields(rule, &path, map, source);
                    // Only empty lists (`principals: []`) are as empty as `{}`.
                    if fields.is_empty() {
                        self.error(rule, path, format!("`{inner}` must not be empty"));
                    } else if source {
                        rule.from.push(fields);
                    } else {
                        rule.to.push(fields);
                    }
                }
                None => self.error(rule, path, format!("`{inner}` must not be empty")),
            }
        }
    }

    fn fields(&mut self, rule: &mut Rule, at: &str, map: &JsonMap, source: bool) -> Vec<Field> {
        let table: &[(&str, &str, Attr)] = if source {
            &SOURCE_FIELDS
        } else {
            &OPERATION_FIELDS
        };
        for key in map.keys() {
            if !table.iter().any(|(v, n, _)| v == key || n == key) {
                self.unreadable(format!("{at}.{key}"), format!("unknown field `{key}`"));
            }
        }
        if source
            && has_any(map, &["principals", "notPrincipals"])
            && has_any(map, &["serviceAccounts", "notServiceAccounts"])
        {
            self.error(
                rule,
                format!("{at}.serviceAccounts"),
                "serviceAccounts cannot be combined with principals in one source; use one of them"
                    .into(),
            );
        }
        let mut fields = Vec::new();
        for (key, not_key, attr) in table {
            let values = self.strings(&format!("{at}.{key}"), map.get(*key));
            let not_values = self.strings(&format!("{at}.{not_key}"), map.get(*not_key));
            if values.is_empty() && not_values.is_empty() {
                continue;
            }
            let label = format!("{at}.{key}");
            let not_label = format!("{at}.{not_key}");
            fields.push(self.field(rule, attr.clone(), label, not_label, &values, &not_values));
        }
        fields
    }

    /// A list of strings, or an issue naming the field.
    fn strings(&mut self, at: &str, v: Option<&serde_json::Value>) -> Vec<String> {
        match v {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(v) => match Vec::<String>::deserialize(v) {
                Ok(list) => list,
                Err(e) => {
                    self.unreadable(at.to_string(), format!("expected a list of strings: {e}"));
                    Vec::new()
                }
            },
        }
    }

    fn condition(&mut self, rule: &mut Rule, at: &str, c: &ConditionDoc) {
        let values = c.values.clone().unwrap_or_default();
        let not_values = c.not_values.clone().unwrap_or_default();
        if values.is_empty() && not_values.is_empty() {
            return self.error(
                rule,
                at.to_string(),
                format!("condition `{}` needs values or notValues", c.key),
            );
        }
        match condition_attr(&c.key) {
            Ok(attr) => {
                let label = format!("{at}({}).values", c.key);
                let not_label = format!("{at}({}).notValues", c.key);
                let field = self.field(rule, attr, label, not_label, &values, &not_values);
                rule.when.push(field);
            }
            Err(message) => self.error(rule, format!("{at}.key"), message),
        }
    }

    fn field(
        &mut self,
        rule: &mut Rule,
        attr: Attr,
        label: String,
        not_label: String,
        values: &[String],
        not_values: &[String],
    ) -> Field {
        let values = self.values(rule, &attr, &label, values);
        let not_values = self.values(rule, &attr, &not_label, not_values);
        Field {
            attr,
            label,
            not_label,
            values,
            not_values,
        }
    }

    fn values(&mut self, rule: &mut Rule, attr: &Attr, at: &str, raw: &[String]) -> Vec<Value> {
        let mut out = Vec::new();
        for (k, v) in raw.iter().enumerate() {
            if *attr == Attr::SourcePrincipal && v.starts_with("spiffe://") {
                self.issues.push(PolicyIssue::warning(
                    format!("spec.{at}[{k}]"),
                    format!("\"{v}\" never matches: principals are written without spiffe://"),
                ));
            }
            let compiled = if v.is_empty() {
                Err("empty value not allowed".to_string())
            } else {
                compile_value(attr, v, self.namespace, self.trust)
            };
            match compiled {
                Ok(vs) => out.extend(vs),
                Err(message) => self.error(rule, format!("{at}[{k}]"), message),
            }
        }
        out
    }
}

type JsonMap = serde_json::Map<String, serde_json::Value>;

/// `from[].source` / `to[].operation`: the maps inside a list's entries.
fn inner_maps<T>(
    list: &[Option<T>],
    inner: impl Fn(&T) -> Option<&JsonMap>,
) -> Vec<Option<&JsonMap>> {
    list.iter().map(|e| e.as_ref().and_then(&inner)).collect()
}

fn has_any(map: &JsonMap, keys: &[&str]) -> bool {
    keys.iter()
        .any(|k| map.get(*k).is_some_and(|v| !v.is_null()))
}

/// One written value → its matcher(s); a principal becomes one per trust domain alias.
fn compile_value(
    attr: &Attr,
    v: &str,
    namespace: &str,
    trust: &TrustDomains,
) -> Result<Vec<Value>, String> {
    Ok(match attr {
        Attr::SourcePrincipal => with_aliases(v, trust)
            .into_iter()
            .map(|p| Value::Str(StrMatch::parse(&p)))
            .collect(),
        Attr::SourceNamespace => vec![Value::Namespace(v.to_string())],
        Attr::SourceServiceAccount => vec![service_account(v, namespace)?],
        Attr::RequestPrincipal => vec![Value::RequestPrincipal(RequestPrincipal::parse(v))],
        Attr::SourceIp | Attr::RemoteIp | Attr::DestinationIp => vec![Value::Cidr(Cidr::parse(v)?)],
        Attr::DestinationPort => {
            vec![Value::Port(v.parse::<u16>().map_err(|_| {
                format!("\"{v}\" is not a port number (0 to 65535)")
            })?)]
        }
        Attr::Path if PathTemplate::is_template(v) => {
            vec![Value::Template(PathTemplate::parse(v)?)]
        }
        _ => vec![Value::Str(StrMatch::parse(v))],
    })
}

fn service_account(v: &str, namespace: &str) -> Result<Value, String> {
    if v.contains('*') {
        return Err(format!(
            "\"{v}\": wildcards are not allowed in serviceAccounts"
        ));
    }
    let (ns, sa) = v.split_once('/').unwrap_or((namespace, v));
    if ns.is_empty() || sa.is_empty() || sa.contains('/') {
        return Err(format!(
            "\"{v}\" is not `serviceAccount` or `namespace/serviceAccount`"
        ));
    }
    Ok(Value::ServiceAccount {
        ns: ns.to_string(),
        sa: sa.to_string(),
    })
}

/// Istio's trust-domain migration: a principal `<td>/ns/…/sa/…` whose trust domain is the
/// mesh's, one of its aliases, or `cluster.local` (a pointer to the local one) stands for the
/// same workload in every one of them.
fn with_aliases(principal: &str, trust: &TrustDomains) -> Vec<String> {
    let parts: Vec<&str> = principal.split('/').collect();
    let enforced = parts.len() == 5 && !parts[0].starts_with('*');
    let td = parts[0];
    let known =
        td == trust.domain || td == "cluster.local" || trust.aliases.iter().any(|a| a == td);
    if !enforced || !known {
        return vec![principal.to_string()];
    }
    let rest = &principal[td.len()..];
    let mut out: Vec<String> = Vec::new();
    for domain in std::iter::once(&trust.domain).chain(trust.aliases.iter()) {
        let p = format!("{domain}{rest}");
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}
