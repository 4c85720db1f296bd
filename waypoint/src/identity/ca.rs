//! The Istio CA client: asks istiod's `IstioCertificateService` to sign a fresh key for the
//! waypoint's own SPIFFE identity, checks that what comes back really is that identity on
//! that key, and keeps the certificate renewed in the background.

mod proto;
mod renewal;
#[cfg(test)]
mod tests;

pub use renewal::spawn_renewal;

use super::WorkloadCert;
use authz::Identity;
use proto::{IstioCertificateRequest, IstioCertificateResponse};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic_prost::ProstCodec;

/// The cluster ID istio-agent sends when none is configured; istiod uses it to pick the
/// cluster whose API server validates the token.
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";

/// Istio's default workload certificate lifetime.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

const CREATE_CERTIFICATE_PATH: &str = "/istio.v1.auth.IstioCertificateService/CreateCertificate";

/// Bounds a request so that a hung istiod shows up as a retried error, not a silent stall
/// while the current certificate runs out. Not the HBONE connect timeout: istiod is one
/// well-known control-plane endpoint, worth a longer wait than a pod.
const CA_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the Istio CA is and who we ask it to certify.
#[derive(Debug, Clone)]
pub struct CaClientConfig {
    /// `--ca-address`: `https://istiod.istio-system.svc:15012`, or `http://127.0.0.1:PORT`
    /// in tests.
    pub address: String,
    /// The trust anchor for istiod's TLS certificate, read from `--ca-root-cert`; required for
    /// `https`.
    pub ca_root_pem: Option<String>,
    /// `--token-path`: the projected service-account token (audience `istio-ca`); re-read on
    /// every request because the kubelet rotates it.
    pub token_path: PathBuf,
    /// The identity to request (`--trust-domain`, `--namespace`, `--service-account`); istiod
    /// only signs the pod's own service account.
    pub identity: Identity,
    /// `--cluster-id` (default [`DEFAULT_CLUSTER_ID`]), sent as `clusterid` metadata, as
    /// istio-agent does.
    pub cluster_id: String,
    /// The certificate lifetime to ask for; [`DEFAULT_TTL`], no flag.
    pub requested_ttl: Duration,
}

impl CaClientConfig {
    /// A configuration with Istio's defaults: cluster [`DEFAULT_CLUSTER_ID`], [`DEFAULT_TTL`].
    pub fn new(
        address: impl Into<String>,
        ca_root_pem: Option<String>,
        token_path: impl Into<PathBuf>,
        identity: Identity,
    ) -> Self {
        CaClientConfig {
            address: address.into(),
            ca_root_pem,
            token_path: token_path.into(),
            identity,
            cluster_id: DEFAULT_CLUSTER_ID.to_string(),
            requested_ttl: DEFAULT_TTL,
        }
    }
}

/// Why a certificate could not be obtained from the Istio CA. Each message ends with what to
/// check; at start-up the error stops the waypoint, during renewal the request is retried.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The client settings cannot work (address not a URI or of another scheme, https without a
    /// root certificate, a cluster ID that cannot be sent): fix the `--ca-*` flags.
    #[error("invalid Istio CA client settings: {reason}")]
    Config {
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The service-account token file cannot be read.
    #[error(
        "cannot read the service-account token {}: {source}; check that the istio-token projected volume is mounted",
        path.display()
    )]
    TokenUnreadable {
        /// The token file (`--token-path`).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The token file is empty or holds characters a gRPC header cannot carry.
    #[error(
        "the service-account token {} is unusable: {reason}; check the istio-token projected volume",
        path.display()
    )]
    TokenInvalid {
        /// The token file (`--token-path`).
        path: PathBuf,
        /// What is wrong with its content.
        reason: String,
    },
    /// No key or CSR could be generated (e.g. an identity with non-ASCII characters).
    #[error("cannot create a key and certificate signing request for {identity}: {reason}")]
    Csr {
        /// The SPIFFE identity the CSR was for.
        identity: String,
        /// The key or CSR generation error.
        reason: String,
    },
    /// No connection to istiod: it is down, unreachable, or its TLS certificate does not chain
    /// to the configured root.
    #[error(
        "cannot connect to the Istio CA at {address}: {reason}; check that istiod is running and reachable from this pod on port 15012, and that the configured CA root certificate is the one istiod's certificate chains to"
    )]
    Connect {
        /// The CA address.
        address: String,
        /// The transport error with its causes.
        reason: String,
    },
    /// istiod answered the request with a gRPC error; the message hints at the cause per code.
    #[error(
        "the Istio CA at {address} refused the certificate request with {code:?}: {message}; {}",
        status_hint(code)
    )]
    Status {
        /// The CA address.
        address: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// istiod's message.
        message: String,
    },
    /// istiod signed something unusable: a chain without root, another identity, a key
    /// mismatch or an already expired leaf.
    #[error(
        "the Istio CA at {address} returned an unusable certificate: {reason}; check istiod's CA configuration (trust domain, plugged-in CA certificates)"
    )]
    BadResponse {
        /// The CA address.
        address: String,
        /// What is wrong with the answer.
        reason: String,
    },
}

/// What an operator should look at for each way istiod says no.
fn status_hint(code: &tonic::Code) -> &'static str {
    match code {
        tonic::Code::Unauthenticated => {
            "check that the service-account token is current and has audience istio-ca, and that the cluster ID matches a cluster istiod knows"
        }
        tonic::Code::PermissionDenied => {
            "istiod will only sign the pod's own identity: check the requested namespace, service account and trust domain"
        }
        tonic::Code::InvalidArgument => {
            "check the requested certificate lifetime against istiod's MAX_WORKLOAD_CERT_TTL"
        }
        tonic::Code::Unimplemented => {
            "the address does not serve Istio's certificate service: point it at istiod's port 15012"
        }
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::ResourceExhausted => {
            "istiod is unreachable or overloaded; the request is retried"
        }
        _ => "see istiod's logs",
    }
}

/// A certificate the Istio CA issued, in the PEM form [`WorkloadCert::from_pem`] takes.
#[derive(Clone)]
pub struct IssuedCert {
    /// The leaf first, then any intermediates; the root is in `root_pem`.
    pub chain_pem: String,
    /// The private key generated for the request; it never left this process.
    pub key_pem: String,
    /// The mesh root, the last entry of the CA's chain.
    pub root_pem: String,
    /// The leaf's expiry.
    pub not_after: SystemTime,
}

impl fmt::Debug for IssuedCert {
    // The private key stays out of logs and panic messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("chain_pem", &self.chain_pem)
            .field("key_pem", &"<redacted>")
            .field("root_pem", &self.root_pem)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// Generates a key, has the Istio CA sign it for `cfg.identity`, and checks the result.
pub async fn request_certificate(cfg: &CaClientConfig) -> Result<IssuedCert, CaError> {
    let token = read_token(&cfg.token_path)?;
    let mut authorization =
        AsciiMetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
            CaError::TokenInvalid {
                path: cfg.token_path.clone(),
                reason: "it contains characters that cannot travel in a gRPC header".to_string(),
            }
        })?;
    authorization.set_sensitive(true);
    let cluster_id =
        AsciiMetadataValue::try_from(cfg.cluster_id.as_str()).map_err(|_| CaError::Config {
            reason: format!(
                "cluster ID '{}' cannot travel in a gRPC header",
                cfg.cluster_id
            ),
        })?;
    let (key_pem, csr) = generate_csr(&cfg.identity)?;

    let channel = connect(cfg).await?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| CaError::Connect {
        address: cfg.address.clone(),
        reason: error_chain(&e),
    })?;
    let mut request = tonic::Request::new(IstioCertificateRequest {
        csr,
        validity_duration: i64::try_from(cfg.requested_ttl.as_secs()).unwrap_or(i64::MAX),
    });
    request
        .metadata_mut()
        .insert("authorization", authorization);
    request.metadata_mut().insert("clusterid", cluster_id);
    let response = grpc
        .unary(
            request,
            PathAndQuery::from_static(CREATE_CERTIFICATE_PATH),
            ProstCodec::<IstioCertificateRequest, IstioCertificateResponse>::default(),
        )
        .await
        .map_err(|status| CaError::Status {
            address: cfg.address.clone(),
            code: status.code(),
            message: status.message().to_string(),
        })?;
    issued_cert(
        &cfg.identity,
        response.into_inner().cert_chain,
        key_pem,
        SystemTime::now(),
    )
    .map_err(|reason| CaError::BadResponse {
        address: cfg.address.clone(),
        reason,
    })
}

fn read_token(path: &Path) -> Result<String, CaError> {
    let raw = std::fs::read_to_string(path).map_err(|source| CaError::TokenUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let token = raw.trim();
    if token.is_empty() {
        return Err(CaError::TokenInvalid {
            path: path.to_path_buf(),
            reason: "the file is empty".to_string(),
        });
    }
    Ok(token.to_string())
}

/// A fresh P-256 key and a CSR whose only name is the SPIFFE URI: Istio identifies workloads
/// by that SAN alone, so the subject stays empty as in istio-agent's requests.
fn generate_csr(identity: &Identity) -> Result<(String, String), CaError> {
    let csr_error = |e: &dyn fmt::Display| CaError::Csr {
        identity: identity.to_string(),
        reason: e.to_string(),
    };
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| csr_error(&e))?;
    let uri =
        rcgen::string::Ia5String::try_from(identity.to_string()).map_err(|e| csr_error(&e))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| csr_error(&e))?;
    Ok((key.serialize_pem(), csr))
}

async fn connect(cfg: &CaClientConfig) -> Result<Channel, CaError> {
    let endpoint = Endpoint::from_shared(cfg.address.clone())
        .map_err(|e| CaError::Config {
            reason: format!("CA address '{}' is not a URI: {e}", cfg.address),
        })?
        .connect_timeout(CA_CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT);
    let endpoint = match endpoint.uri().scheme_str() {
        Some("https") => {
            let root = cfg.ca_root_pem.as_deref().ok_or_else(|| CaError::Config {
                reason: format!(
                    "CA address {} uses https but no CA root certificate is configured to verify istiod; provide the mesh root (root-cert.pem from the istio-ca-root-cert ConfigMap)",
                    cfg.address
                ),
            })?;
            endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(root)))
                .map_err(|e| CaError::Config {
                    reason: format!("cannot set up TLS to {}: {}", cfg.address, error_chain(&e)),
                })?
        }
        Some("http") => endpoint,
        _ => {
            return Err(CaError::Config {
                reason: format!(
                    "CA address '{}' must start with https:// (or http:// for a local test CA)",
                    cfg.address
                ),
            })
        }
    };
    endpoint.connect().await.map_err(|e| CaError::Connect {
        address: cfg.address.clone(),
        reason: error_chain(&e),
    })
}

/// Checks the CA's answer and splits it into chain and root. Istio puts the root last; a
/// chain without one would leave peers nothing to verify against.
fn issued_cert(
    expected: &Identity,
    cert_chain: Vec<String>,
    key_pem: String,
    now: SystemTime,
) -> Result<IssuedCert, String> {
    let (root, chain) = match cert_chain.split_last() {
        Some((root, chain)) if !chain.is_empty() => (root, chain),
        _ => {
            return Err(format!(
                "the certificate chain has {} entries, expected the leaf, any intermediates and the root",
                cert_chain.len()
            ))
        }
    };
    let chain_pem: String = chain.iter().map(|pem| with_newline(pem)).collect();
    let root_pem = with_newline(root);
    // from_pem parses the chain, reads the leaf's SPIFFE identity and checks that our key
    // belongs to the leaf.
    let cert = WorkloadCert::from_pem("the Istio CA's response", &chain_pem, &key_pem, &root_pem)
        .map_err(|e| e.to_string())?;
    if cert.identity != *expected {
        return Err(format!(
            "the leaf certificate is for {} but {} was requested",
            cert.identity, expected
        ));
    }
    if cert.not_after <= now {
        return Err("the leaf certificate has already expired; check istiod's clock".to_string());
    }
    Ok(IssuedCert {
        chain_pem,
        key_pem,
        root_pem,
        not_after: cert.not_after,
    })
}

/// Istio's PEM strings may or may not end in a newline; concatenated blocks need one.
fn with_newline(pem: &str) -> String {
    let mut pem = pem.trim().to_string();
    pem.push('\n');
    pem
}

/// tonic's transport errors say only "transport error" at the top; the cause is below.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
