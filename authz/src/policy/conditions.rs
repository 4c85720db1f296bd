//! `when[].key`: the attributes a condition may name, as istiod accepts them. A key istiod
//! does not know, or one the waypoint cannot evaluate, is an error (the rule fails closed).

use super::rule::Attr;

/// The attribute `key` names, or what is wrong with it.
pub(crate) fn condition_attr(key: &str) -> Result<Attr, String> {
    Ok(match key {
        "source.ip" => Attr::SourceIp,
        "remote.ip" => Attr::RemoteIp,
        "source.namespace" => Attr::SourceNamespace,
        "source.principal" => Attr::SourcePrincipal,
        "source.serviceAccount" => Attr::SourceServiceAccount,
        "request.auth.principal" => Attr::RequestPrincipal,
        "request.auth.audiences" => Attr::Audiences,
        "request.auth.presenter" => Attr::Presenter,
        "destination.ip" => Attr::DestinationIp,
        "destination.port" => Attr::DestinationPort,
        "connection.sni" => Attr::Sni,
        _ => return bracketed(key),
    })
}

fn bracketed(key: &str) -> Result<Attr, String> {
    if let Some(rest) = key
        .strip_prefix("request.headers")
        .or_else(|| key.strip_prefix("request.experimental.inline.headers"))
    {
        let names = bracket_names(key, rest)?;
        return match names.as_slice() {
            [name] if http::HeaderName::from_bytes(name.as_bytes()).is_ok() => {
                Ok(Attr::Header(name.to_ascii_lowercase()))
            }
            _ => Err(format!("`{key}`: expected request.headers[<header name>]")),
        };
    }
    if let Some(rest) = key.strip_prefix("request.auth.claims") {
        return Ok(Attr::Claim(bracket_names(key, rest)?));
    }
    if key.starts_with("experimental.envoy.filters.") {
        return Err(format!(
            "`{key}` reads Envoy filter metadata, which this waypoint does not have; remove the \
             condition"
        ));
    }
    let hint = match key {
        "destination.namespace" => "use the policy's namespace and targetRefs instead",
        "destination.name" | "destination.user" => "it was only supported in v1alpha1",
        k if k.starts_with("destination.labels") => "use targetRefs instead",
        _ => {
            "supported keys: request.headers[], source.ip, remote.ip, source.namespace, \
             source.principal, source.serviceAccount, request.auth.principal, \
             request.auth.audiences, request.auth.presenter, request.auth.claims[], \
             destination.ip, destination.port, connection.sni"
        }
    };
    Err(format!("unknown condition key `{key}`: {hint}"))
}

/// `[a]` or `[a][b]…` after the attribute name: every name non-empty, nothing else around.
fn bracket_names(key: &str, mut rest: &str) -> Result<Vec<String>, String> {
    let bad = || format!("bad key `{key}`: expected the form attribute[name] or attribute[a][b]");
    let mut names = Vec::new();
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[').ok_or_else(bad)?;
        let end = inner.find(']').ok_or_else(bad)?;
        let name = &inner[..end];
        if name.is_empty() || name.contains('[') {
            return Err(bad());
        }
        names.push(name.to_string());
        rest = &inner[end + 1..];
    }
    if names.is_empty() {
        return Err(bad());
    }
    Ok(names)
}
