//! The benchmark's mesh PKI, written in Istio's file layout so the waypoint (`--cert-dir`),
//! Envoy and this client all read the same files. The certificates come from the waypoint's
//! own demo CA (Istio-shaped: ECDSA P-256, one SPIFFE URI SAN, serverAuth + clientAuth), so the
//! benchmark exercises exactly the certificates the proxy is built and tested with.

use anyhow::Context;
use std::path::Path;
use waypoint::demo::ca::DemoCa;

/// Writes `<out>/<name>/{cert-chain.pem,key.pem,root-cert.pem}` for each `(name, spiffe id)`,
/// all signed by one fresh root of the ids' (single) trust domain.
pub fn write_cert_dirs(out: &Path, identities: &[(&str, String)]) -> anyhow::Result<()> {
    let parsed = identities
        .iter()
        .map(|(name, spiffe)| {
            let id: authz::Identity = spiffe
                .parse()
                .map_err(|e| anyhow::anyhow!("{spiffe} is not a SPIFFE id: {e}"))?;
            Ok((*name, id))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let trust_domain = parsed
        .first()
        .map(|(_, id)| id.trust_domain.clone())
        .unwrap_or_else(|| "cluster.local".to_string());
    if let Some((_, other)) = parsed
        .iter()
        .find(|(_, id)| id.trust_domain != trust_domain)
    {
        anyhow::bail!("{other} is not in trust domain {trust_domain}: one root serves one mesh");
    }
    let ca = DemoCa::generate(&trust_domain)?;
    for (name, id) in &parsed {
        let dir = out.join(name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        ca.write_cert_dir(&dir, id)?;
    }
    Ok(())
}
