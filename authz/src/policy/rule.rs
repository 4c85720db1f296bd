//! The compiled form of an AuthorizationPolicy's rules: what each field compares and the values
//! it accepts or excludes, as istiod lays a rule out for Envoy's RBAC filter.

use super::matchers::{Cidr, PathTemplate, RequestPrincipal, StrMatch};

/// The request or connection attribute a field reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Attr {
    /// The peer's principal (`principals`, `source.principal`).
    SourcePrincipal,
    /// The peer principal's `/ns/<ns>/` segment (`namespaces`, `source.namespace`).
    SourceNamespace,
    /// The peer principal's namespace and service account (`serviceAccounts`).
    SourceServiceAccount,
    /// The JWT's `<iss>/<sub>` (`requestPrincipals`, `request.auth.principal`).
    RequestPrincipal,
    /// The connection's peer address (`ipBlocks`, `source.ip`).
    SourceIp,
    /// X-Forwarded-For's original client (`remoteIpBlocks`, `remote.ip`).
    RemoteIp,
    /// `destination.ip`.
    DestinationIp,
    /// `ports`, `destination.port`.
    DestinationPort,
    /// `hosts` (`:authority`, ignoring case).
    Host,
    /// `methods`.
    Method,
    /// `paths` (normalized, without the query).
    Path,
    /// `request.headers[name]` (lower-cased name).
    Header(String),
    /// `request.auth.claims[a][b]…`.
    Claim(Vec<String>),
    /// `request.auth.audiences`.
    Audiences,
    /// `request.auth.presenter`.
    Presenter,
    /// `connection.sni`.
    Sni,
}

impl Attr {
    /// Fields that only exist for HTTP: on TCP traffic istiod drops them from DENY, AUDIT
    /// and CUSTOM rules (which then match more) and skips ALLOW rules that use them.
    pub(crate) fn http_only(&self) -> bool {
        matches!(
            self,
            Attr::RequestPrincipal
                | Attr::Host
                | Attr::Method
                | Attr::Path
                | Attr::Header(_)
                | Attr::Claim(_)
                | Attr::Audiences
                | Attr::Presenter
        )
    }
}

/// One accepted (or excluded) value, compiled for its attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// A string pattern.
    Str(StrMatch),
    /// An address range.
    Cidr(Cidr),
    /// A port number.
    Port(u16),
    /// A `{*}`/`{**}` path template.
    Template(PathTemplate),
    /// A `requestPrincipals` value.
    RequestPrincipal(RequestPrincipal),
    /// A `serviceAccounts` value, namespace filled in.
    ServiceAccount {
        /// The namespace.
        ns: String,
        /// The service account.
        sa: String,
    },
    /// A `namespaces` value (`*` is a wildcard anywhere).
    Namespace(String),
}

/// One field of a rule: the attribute, the values that must match (any of) and the values
/// that must not (none of).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    /// What it reads.
    pub(crate) attr: Attr,
    /// Where `values` was written, e.g. `rules[0].to[0].operation.paths`.
    pub(crate) label: String,
    /// Where `not_values` was written, e.g. `rules[0].to[0].operation.notPaths`.
    pub(crate) not_label: String,
    /// Any of them must match (when not empty).
    pub(crate) values: Vec<Value>,
    /// None of them may match.
    pub(crate) not_values: Vec<Value>,
}

/// One rule: any `from` entry, any `to` entry and every `when` condition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rule {
    /// `from[]`: each entry's fields ANDed, entries ORed; empty matches any source.
    pub(crate) from: Vec<Vec<Field>>,
    /// `to[]`: the same for operations.
    pub(crate) to: Vec<Vec<Field>>,
    /// `when[]`: all must hold.
    pub(crate) when: Vec<Field>,
    /// Something in it cannot be evaluated: it never matches in ALLOW, always in DENY.
    pub(crate) broken: bool,
    /// Some field only exists for HTTP (decided once, read on every TCP connection).
    pub(crate) uses_http: bool,
}

impl Rule {
    /// Every field, wherever written.
    pub(crate) fn fields(&self) -> impl Iterator<Item = &Field> + Clone {
        self.from
            .iter()
            .chain(self.to.iter())
            .flatten()
            .chain(self.when.iter())
    }
}

/// What a policy's `rules` compiled to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Rules {
    /// The rules as written (none: the policy matches nothing).
    List(Vec<Rule>),
    /// The spec could not be read at all: the policy fails closed as a whole.
    Unreadable,
}
