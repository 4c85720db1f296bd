//! The two messages of Istio's `IstioCertificateService` (`security/proto/istioca.proto`),
//! written out by hand because the build has no `protoc`; the tags must match Istio's.

/// `istio.v1.auth.IstioCertificateRequest`. Field 4 (`metadata`, a `google.protobuf.Struct`)
/// is left out: istiod treats it as optional and only uses it for impersonation, which a
/// waypoint never asks for.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateRequest {
    /// The PEM-encoded certificate signing request.
    #[prost(string, tag = "1")]
    pub csr: String,
    /// The requested lifetime in seconds; istiod caps it at its `MAX_WORKLOAD_CERT_TTL`.
    #[prost(int64, tag = "3")]
    pub validity_duration: i64,
}

/// `istio.v1.auth.IstioCertificateResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateResponse {
    /// PEM certificates: the leaf first, then any intermediates, the root last.
    #[prost(string, repeated, tag = "1")]
    pub cert_chain: Vec<String>,
}
