//! The benchmark's mesh PKI: one root and Istio-shaped workload certificates (ECDSA P-256,
//! empty subject, one URI SAN `spiffe://<td>/ns/<ns>/sa/<sa>`, EKU serverAuth + clientAuth),
//! written in Istio's file layout so the waypoint (`--cert-dir`), Envoy and this client all
//! read the same files.

use anyhow::Context;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const CHAIN_FILE: &str = "cert-chain.pem";
pub const KEY_FILE: &str = "key.pem";
pub const ROOT_FILE: &str = "root-cert.pem";

/// Long enough for any benchmark session; backdated so a slightly slow clock still accepts it.
const LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
const BACKDATE: Duration = Duration::from_secs(3600);

/// Writes `<out>/<name>/{cert-chain.pem,key.pem,root-cert.pem}` for each `(name, spiffe id)`,
/// all signed by one fresh root.
pub fn write_cert_dirs(out: &Path, identities: &[(&str, String)]) -> anyhow::Result<()> {
    let root = root_ca()?;
    for (name, spiffe) in identities {
        let dir = out.join(name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let (chain, key) = leaf(&root, spiffe)?;
        for (file, text) in [
            (CHAIN_FILE, chain),
            (KEY_FILE, key),
            (ROOT_FILE, root.pem()),
        ] {
            let path = dir.join(file);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}

fn root_ca() -> anyhow::Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "cluster.local");
    name.push(DnType::CommonName, "waypoint bench root CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    Ok(CertifiedIssuer::self_signed(params, key)?)
}

fn leaf(
    root: &CertifiedIssuer<'static, KeyPair>,
    spiffe: &str,
) -> anyhow::Result<(String, String)> {
    let mut params = CertificateParams::default();
    // Istio's workload certificates have an empty subject: the URI SAN is the identity.
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(
        spiffe
            .try_into()
            .with_context(|| format!("{spiffe} cannot be a URI SAN"))?,
    )];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, root)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// rcgen wants `time::OffsetDateTime`; its epoch plus a std duration avoids depending on `time`.
fn set_validity(params: &mut CertificateParams) -> anyhow::Result<()> {
    let now = SystemTime::now();
    let since_epoch = |at: SystemTime| at.duration_since(UNIX_EPOCH).context("clock before 1970");
    params.not_before = date_time_ymd(1970, 1, 1) + since_epoch(now - BACKDATE)?;
    params.not_after = date_time_ymd(1970, 1, 1) + since_epoch(now + LIFETIME)?;
    Ok(())
}
