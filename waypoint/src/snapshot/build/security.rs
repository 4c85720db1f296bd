//! Security policies, attached as Istio attaches them at a waypoint (issue 12): the MeshConfig
//! (trust domains, ext_authz providers), RequestAuthentications and AuthorizationPolicies by
//! `targetRefs` (`security/targets.rs`), and the PeerAuthentications that govern the plain
//! listener (`security/peer.rs`).
//!
//! A policy in error never rejects the folder: it is compiled fail closed by `authz`, its state
//! is [`State::FailClosed`], and `check`, the log and `/config_dump` show its issues.

use super::gateway_selection::ServedGateway;
use super::{of_kind, Builder};
use crate::config::{Document, Resource};
use crate::snapshot::{Binding, Security, SecurityPolicies, ServiceInfo, State, StatusIssue};
use authz::ext_authz::ExtAuthzProvider;
use authz::jwt::Authenticator;
use authz::policy::{AuthorizationPolicy, PolicyAction, PolicySet};
use authz::spec::Severity as PolicySeverity;
use authz::{PolicyIssue, PolicyRef, TrustDomains};
use routing::{ServiceKey, Severity};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

mod mesh;
mod peer;
mod targets;

use targets::{Resolution, Scope, Targets};

/// The annotation that makes an AuthorizationPolicy shadow only (evaluated and logged).
const DRY_RUN: &str = "istio.io/dry-run";

/// One RequestAuthentication or AuthorizationPolicy, where it attaches and what it says.
struct Attached<'d, T> {
    doc: &'d Document,
    source: PolicyRef,
    targets: Targets,
    policy: T,
}

/// What a policy without `spec` means: the empty spec (for an AuthorizationPolicy, ALLOW
/// with no rules), as the API server would default it.
static EMPTY_SPEC: LazyLock<serde_json::Value> =
    LazyLock::new(|| serde_json::Value::Object(serde_json::Map::new()));

/// A policy's spec as written, the empty one when it has none.
fn spec_of(spec: &serde_json::Value) -> &serde_json::Value {
    if spec.is_null() {
        &EMPTY_SPEC
    } else {
        spec
    }
}

/// The ext_authz providers by name, as the MeshConfig declares them.
type Providers = HashMap<String, Arc<ExtAuthzProvider>>;

impl<'a> Builder<'a> {
    /// Compiles every security resource and attaches it to the waypoint or to the served
    /// services it targets; reports each. Runs whether or not a Gateway is served, so every
    /// object gets a status.
    pub(super) fn security(
        &mut self,
        docs: &[&'a Document],
        services: &[ServiceInfo],
        served: &ServedGateway,
        trust_domain: &str,
    ) -> Security {
        let (mesh, ext_authz) = self.mesh_config(docs);
        let trust = TrustDomains {
            domain: mesh
                .trust_domain
                .clone()
                .unwrap_or_else(|| trust_domain.to_string()),
            aliases: mesh.trust_domain_aliases.clone(),
        };
        let scope = Scope::new(served, services, &mesh.root_namespace);
        let authz = self.authorization_policies(docs, &scope, &trust, &ext_authz);
        let authn = request_authentications(docs, &scope);
        let mut sets = PolicySets::new(&authn, &authz);
        let waypoint = sets.build(None);
        let by_service = services
            .iter()
            .filter(|s| s.binding == Binding::Bound)
            .map(|s| (s.key.clone(), sets.build(Some(&s.key))))
            .collect();
        self.report_request_authentications(&authn, sets.issues);
        let peer = self.peer_authentications(docs, &served.gateway, &mesh.root_namespace);
        Security {
            mesh: Arc::new(mesh),
            trust,
            ext_authz,
            by_service,
            waypoint,
            peer,
        }
    }

    /// Compiles every AuthorizationPolicy once (its `Arc` is shared by every target) and
    /// reports it.
    fn authorization_policies(
        &mut self,
        docs: &[&'a Document],
        scope: &Scope<'_>,
        trust: &TrustDomains,
        providers: &Providers,
    ) -> Vec<Attached<'a, Arc<AuthorizationPolicy>>> {
        let objects = of_kind(docs, |r| match r {
            Resource::AuthorizationPolicy(p) => Some(&**p),
            _ => None,
        });
        let mut out = Vec::new();
        for (doc, object) in sorted(objects) {
            let source = policy_ref(doc);
            let spec = spec_of(&object.spec);
            let resolution = scope.resolve(&doc.object.namespace, spec);
            let (dry_run, dry_run_issue) = dry_run(object.metadata.annotations.as_ref());
            let policy = Arc::new(AuthorizationPolicy::compile(
                source.clone(),
                spec,
                dry_run,
                trust,
            ));
            let mut issues: Vec<StatusIssue> = policy.issues.iter().map(status_issue).collect();
            issues.extend(dry_run_issue);
            if let PolicyAction::Custom { provider } = &policy.action {
                if !providers.contains_key(provider) {
                    issues.push(StatusIssue {
                        severity: Severity::Error,
                        reason: None,
                        field: "spec.provider.name".into(),
                        message: format!(
                            "no ext_authz provider '{provider}' in the MeshConfig's extensionProviders \
                             (ConfigMap istio-system/istio, data.mesh): requests its rules match are \
                             denied; declare the provider or fix the name"
                        ),
                    });
                }
            }
            self.report_policy(doc, resolution.clone(), issues);
            out.push(Attached {
                doc,
                source,
                targets: resolution.targets,
                policy,
            });
        }
        out
    }

    /// Reports each RequestAuthentication with its attachment issues and the issues its
    /// rules got, alone or merged with the others of a target.
    fn report_request_authentications(
        &mut self,
        authn: &[Attached<'a, RequestAuthentication<'a>>],
        mut compiled: BTreeMap<PolicyRef, Vec<PolicyIssue>>,
    ) {
        for a in authn {
            let mut issues = a.policy.resolution.issues.clone();
            let mut own = compiled.remove(&a.source).unwrap_or_default();
            own.dedup();
            issues.extend(own.iter().map(status_issue));
            self.report_policy(a.doc, a.policy.resolution.clone(), issues);
        }
    }

    /// The status of a security policy: in error → fail closed; attached nowhere → ignored
    /// with why; else accepted.
    fn report_policy(&mut self, doc: &Document, resolution: Resolution, issues: Vec<StatusIssue>) {
        let mut all = resolution.issues;
        all.extend(issues);
        let state = if all.iter().any(|i| i.severity == Severity::Error) {
            State::FailClosed
        } else if resolution.targets.is_empty() {
            State::Ignored(resolution.unapplied.join("; "))
        } else {
            State::Accepted
        };
        all.dedup_by(|a, b| a.field == b.field && a.message == b.message);
        self.status(doc, state, all);
    }
}

/// A RequestAuthentication's spec and where it attaches; compiled per target, merged.
struct RequestAuthentication<'d> {
    spec: &'d serde_json::Value,
    resolution: Resolution,
}

fn request_authentications<'a>(
    docs: &[&'a Document],
    scope: &Scope<'_>,
) -> Vec<Attached<'a, RequestAuthentication<'a>>> {
    let objects = of_kind(docs, |r| match r {
        Resource::RequestAuthentication(p) => Some(&**p),
        _ => None,
    });
    sorted(objects)
        .into_iter()
        .map(|(doc, object)| {
            let spec = spec_of(&object.spec);
            let resolution = scope.resolve(&doc.object.namespace, spec);
            Attached {
                doc,
                source: policy_ref(doc),
                targets: resolution.targets.clone(),
                policy: RequestAuthentication { spec, resolution },
            }
        })
        .collect()
}

/// What applies to the waypoint itself and to each served service, compiled once per distinct
/// set of policies (most services share the waypoint's); also every RequestAuthentication's
/// compile issues, for its status.
struct PolicySets<'p, 'd> {
    authn: &'p [Attached<'d, RequestAuthentication<'d>>],
    authz: &'p [Attached<'d, Arc<AuthorizationPolicy>>],
    built: HashMap<(Vec<usize>, Vec<usize>), Arc<SecurityPolicies>>,
    issues: BTreeMap<PolicyRef, Vec<PolicyIssue>>,
}

impl<'p, 'd> PolicySets<'p, 'd> {
    fn new(
        authn: &'p [Attached<'d, RequestAuthentication<'d>>],
        authz: &'p [Attached<'d, Arc<AuthorizationPolicy>>],
    ) -> Self {
        let mut sets = PolicySets {
            authn,
            authz,
            built: HashMap::new(),
            issues: BTreeMap::new(),
        };
        // Every RequestAuthentication is compiled alone too, so that one attached nowhere
        // still gets its issues reported.
        for i in 0..authn.len() {
            sets.authenticator(&[i]);
        }
        sets
    }

    /// The policies for `service` (with the waypoint's), or the waypoint's alone.
    fn build(&mut self, service: Option<&ServiceKey>) -> Arc<SecurityPolicies> {
        let applies = |t: &Targets| t.waypoint || service.is_some_and(|k| t.services.contains(k));
        let authn: Vec<usize> = indexes(self.authn, |a| applies(&a.targets));
        let authz: Vec<usize> = indexes(self.authz, |a| applies(&a.targets));
        if let Some(found) = self.built.get(&(authn.clone(), authz.clone())) {
            return found.clone();
        }
        let policies = Arc::new(SecurityPolicies {
            authn: self.authenticator(&authn),
            authz: Arc::new(PolicySet::new(
                authz
                    .iter()
                    .map(|&i| self.authz[i].policy.clone())
                    .collect(),
            )),
        });
        self.built.insert((authn, authz), policies.clone());
        policies
    }

    /// The merged JWT rules of the RequestAuthentications at `indexes`; their issues are kept
    /// per policy for the report.
    fn authenticator(&mut self, indexes: &[usize]) -> Arc<Authenticator> {
        let specs: Vec<(PolicyRef, &serde_json::Value)> = indexes
            .iter()
            .map(|&i| (self.authn[i].source.clone(), self.authn[i].policy.spec))
            .collect();
        let (authenticator, issues) = Authenticator::compile(&specs);
        for (source, issue) in issues {
            let known = self.issues.entry(source).or_default();
            if !known.contains(&issue) {
                known.push(issue);
            }
        }
        Arc::new(authenticator)
    }
}

/// The `istio.io/dry-run` annotation read as istiod reads it (Go's `strconv.ParseBool`); a
/// value that is not a boolean enforces the policy, with a warning.
fn dry_run(annotations: Option<&BTreeMap<String, String>>) -> (bool, Option<StatusIssue>) {
    match annotations.and_then(|a| a.get(DRY_RUN)).map(String::as_str) {
        None | Some("0" | "f" | "F" | "false" | "FALSE" | "False") => (false, None),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => (true, None),
        Some(other) => (
            false,
            Some(StatusIssue {
                severity: Severity::Warning,
                reason: None,
                field: format!("metadata.annotations[\"{DRY_RUN}\"]"),
                message: format!(
                    "'{other}' is not a boolean: the policy is enforced; write \"true\" to only log it"
                ),
            }),
        ),
    }
}

fn indexes<T>(items: &[T], keep: impl Fn(&T) -> bool) -> Vec<usize> {
    items
        .iter()
        .enumerate()
        .filter(|(_, t)| keep(t))
        .map(|(i, _)| i)
        .collect()
}

/// Policies in a stable order (namespace, name), whatever the files' order.
fn sorted<'d, T>(mut objects: Vec<(&'d Document, &'d T)>) -> Vec<(&'d Document, &'d T)> {
    objects.sort_by(|(a, _), (b, _)| {
        (&a.object.namespace, &a.object.name).cmp(&(&b.object.namespace, &b.object.name))
    });
    objects
}

fn policy_ref(doc: &Document) -> PolicyRef {
    PolicyRef {
        kind: doc.object.kind.clone(),
        namespace: doc.object.namespace.clone(),
        name: doc.object.name.clone(),
    }
}

fn status_issue(i: &PolicyIssue) -> StatusIssue {
    StatusIssue {
        severity: match i.severity {
            PolicySeverity::Error => Severity::Error,
            PolicySeverity::Warning => Severity::Warning,
        },
        reason: None,
        field: i.field.clone(),
        message: i.message.clone(),
    }
}
