//! The client against a real in-process gRPC CA on loopback that signs CSRs with an rcgen
//! root, plus table tests for the renewal schedule and the backoff.

use super::proto::{IstioCertificateRequest, IstioCertificateResponse};
use super::renewal::{renewal_delay, spawn_renewal_with, Backoff, BackoffPolicy};
use super::*;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::watch;
use tonic::codegen::BoxFuture;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Server, ServerTlsConfig};
use tonic::Status;

const TOKEN: &str = "good-token";

/// Istio's backoff shape in tens of milliseconds instead of seconds, to keep tests fast.
const FAST_BACKOFF: BackoffPolicy = BackoffPolicy {
    initial: Duration::from_millis(20),
    max: Duration::from_millis(50),
};

fn identity() -> Identity {
    Identity::new("cluster.local", "istio-system", "waypoint")
}

/// A test mesh root that also signs.
struct Root {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Root {
    fn new() -> Root {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("root key");
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test mesh root");
        let pem = params.self_signed(&key).expect("root certificate").pem();
        Root {
            pem,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A serving certificate for istiod on 127.0.0.1, as (chain PEM, key PEM).
    fn server_cert(&self) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("server key");
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("server params");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A leaf for `spiffe_id`, valid for `ttl` from now, on `key`.
    fn leaf(&self, spiffe_id: &str, key: &rcgen::KeyPair, ttl: Duration) -> String {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from(spiffe_id.to_string()).expect("ia5 uri"),
        )];
        let now = SystemTime::now();
        params.not_before = now.into();
        params.not_after = (now + ttl).into();
        params.signed_by(key, &self.issuer).expect("leaf").pem()
    }
}

/// What the test CA does, and what it saw.
struct CaState {
    root: Root,
    /// Calls to fail with `Unavailable` before signing, as a restarting istiod would.
    failures_left: AtomicUsize,
    calls: AtomicUsize,
    cluster_ids: Mutex<Vec<String>>,
    /// How far before now certificates start, as a CA with a skewed clock would issue them.
    backdate: Duration,
}

#[derive(Clone)]
struct TestCa(Arc<CaState>);

impl TestCa {
    fn new(failures: usize) -> TestCa {
        TestCa::with_backdate(failures, Duration::ZERO)
    }

    fn with_backdate(failures: usize, backdate: Duration) -> TestCa {
        TestCa(Arc::new(CaState {
            root: Root::new(),
            failures_left: AtomicUsize::new(failures),
            calls: AtomicUsize::new(0),
            cluster_ids: Mutex::new(Vec::new()),
            backdate,
        }))
    }

    fn calls(&self) -> usize {
        self.0.calls.load(Ordering::SeqCst)
    }

    fn sign(
        &self,
        request: tonic::Request<IstioCertificateRequest>,
    ) -> Result<IstioCertificateResponse, Status> {
        let state = &self.0;
        state.calls.fetch_add(1, Ordering::SeqCst);
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if authorization != Some(format!("Bearer {TOKEN}").as_str()) {
            return Err(Status::unauthenticated("authentication failure"));
        }
        let cluster_id = request
            .metadata()
            .get("clusterid")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::invalid_argument("no clusterid"))?;
        state
            .cluster_ids
            .lock()
            .expect("lock")
            .push(cluster_id.to_string());
        let failing = state
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(Status::unavailable("CA is starting"));
        }
        let request = request.into_inner();
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(&request.csr)
            .map_err(|e| Status::invalid_argument(format!("bad CSR: {e}")))?;
        let ttl = u64::try_from(request.validity_duration)
            .map_err(|_| Status::invalid_argument("negative validity"))?;
        let start = SystemTime::now() - state.backdate;
        csr.params.not_before = start.into();
        csr.params.not_after = (start + Duration::from_secs(ttl)).into();
        let leaf = csr
            .signed_by(&state.root.issuer)
            .map_err(|e| Status::internal(format!("cannot sign: {e}")))?;
        Ok(IstioCertificateResponse {
            cert_chain: vec![leaf.pem(), state.root.pem.clone()],
        })
    }

    /// Serves the CA on 127.0.0.1:0, over TLS with a certificate from its root if asked.
    async fn serve(&self, tls: bool) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let mut server = Server::builder();
        if tls {
            let (cert, key) = self.0.root.server_cert();
            server = server
                .tls_config(
                    ServerTlsConfig::new()
                        .identity(tonic::transport::Identity::from_pem(cert, key)),
                )
                .expect("server TLS");
        }
        tokio::spawn(server.serve_with_incoming(self.clone(), TcpIncoming::from(listener)));
        addr
    }
}

/// The handler for the one method, in the shape `tonic::server::Grpc::unary` drives.
struct CreateCertificate(TestCa);

impl tonic::server::UnaryService<IstioCertificateRequest> for CreateCertificate {
    type Response = IstioCertificateResponse;
    type Future = BoxFuture<tonic::Response<IstioCertificateResponse>, Status>;

    fn call(&mut self, request: tonic::Request<IstioCertificateRequest>) -> Self::Future {
        let result = self.0.sign(request).map(tonic::Response::new);
        Box::pin(async move { result })
    }
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for TestCa {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let ca = self.clone();
        Box::pin(async move {
            if request.uri().path() != CREATE_CERTIFICATE_PATH {
                return Ok(Status::unimplemented(request.uri().path().to_string()).into_http());
            }
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<
                IstioCertificateResponse,
                IstioCertificateRequest,
            >::default());
            Ok(grpc.unary(CreateCertificate(ca), request).await)
        })
    }
}

fn token_file(token: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("token file");
    std::fs::write(file.path(), format!("{token}\n")).expect("write token");
    file
}

fn config(address: String, token: &tempfile::NamedTempFile) -> CaClientConfig {
    CaClientConfig::new(address, None, token.path(), identity())
}

#[tokio::test]
async fn issues_a_certificate_for_our_identity_and_key() {
    let ca = TestCa::new(0);
    let addr = ca.serve(false).await;
    let token = token_file(TOKEN);
    let cfg = config(format!("http://{addr}"), &token);

    let issued = request_certificate(&cfg).await.expect("certificate");

    let cert = WorkloadCert::from_pem(
        "issued",
        &issued.chain_pem,
        &issued.key_pem,
        &issued.root_pem,
    )
    .expect("chain, key and root fit together");
    assert_eq!(cert.identity, identity());
    assert_eq!(cert.chain.len(), 1, "the root is not part of the chain");
    assert_eq!(
        issued.root_pem.trim(),
        ca.0.root.pem.trim(),
        "the root is the last element"
    );
    assert_eq!(cert.not_after, issued.not_after);
    let lifetime = issued
        .not_after
        .duration_since(SystemTime::now())
        .expect("not expired");
    assert!(lifetime > DEFAULT_TTL - Duration::from_secs(60) && lifetime <= DEFAULT_TTL);
    assert_eq!(
        *ca.0.cluster_ids.lock().expect("lock"),
        vec![DEFAULT_CLUSTER_ID.to_string()]
    );
}

#[tokio::test]
async fn issues_over_tls_verified_with_the_root() {
    let ca = TestCa::new(0);
    let addr = ca.serve(true).await;
    let token = token_file(TOKEN);
    let mut cfg = config(format!("https://{addr}"), &token);
    cfg.ca_root_pem = Some(ca.0.root.pem.clone());

    let issued = request_certificate(&cfg)
        .await
        .expect("certificate over TLS");
    assert!(issued.chain_pem.contains("BEGIN CERTIFICATE"));

    cfg.ca_root_pem = Some(Root::new().pem);
    let err = request_certificate(&cfg)
        .await
        .expect_err("istiod's certificate is not from this root");
    assert!(matches!(err, CaError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn https_without_a_root_is_a_config_error() {
    let token = token_file(TOKEN);
    let cfg = config("https://istiod.istio-system.svc:15012".to_string(), &token);
    let err = request_certificate(&cfg)
        .await
        .expect_err("no trust anchor");
    assert!(matches!(err, CaError::Config { .. }), "{err}");
    assert!(err.to_string().contains("root"), "{err}");
}

#[tokio::test]
async fn wrong_token_is_unauthenticated() {
    let ca = TestCa::new(0);
    let addr = ca.serve(false).await;
    let token = token_file("stolen-token");
    let err = request_certificate(&config(format!("http://{addr}"), &token))
        .await
        .expect_err("wrong token");
    assert!(
        matches!(
            err,
            CaError::Status {
                code: tonic::Code::Unauthenticated,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("Unauthenticated"), "{err}");
    assert!(
        err.to_string().contains("token"),
        "the hint points at the token: {err}"
    );
}

#[tokio::test]
async fn missing_token_file_names_the_file() {
    let cfg = CaClientConfig::new(
        "http://127.0.0.1:1",
        None,
        "/nonexistent/istio-token",
        identity(),
    );
    let err = request_certificate(&cfg).await.expect_err("no token");
    assert!(matches!(err, CaError::TokenUnreadable { .. }), "{err}");
    assert!(
        err.to_string().contains("/nonexistent/istio-token"),
        "{err}"
    );
}

#[tokio::test]
async fn unreachable_ca_is_a_connect_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    let token = token_file(TOKEN);
    let err = request_certificate(&config(format!("http://{addr}"), &token))
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, CaError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[test]
fn response_must_be_our_identity_on_our_key_with_a_root() {
    let root = Root::new();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let other_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let ours = root.leaf(&identity().to_string(), &key, Duration::from_secs(3600));
    let theirs = root.leaf(
        "spiffe://cluster.local/ns/default/sa/other",
        &key,
        Duration::from_secs(3600),
    );
    let now = SystemTime::now();

    let cases: Vec<(&str, Vec<String>, &rcgen::KeyPair, Option<&str>)> = vec![
        ("good", vec![ours.clone(), root.pem.clone()], &key, None),
        ("empty chain", vec![], &key, Some("0 entries")),
        ("no root", vec![ours.clone()], &key, Some("1 entries")),
        (
            "other identity",
            vec![theirs, root.pem.clone()],
            &key,
            Some("spiffe://cluster.local/ns/default/sa/other"),
        ),
        (
            "other key",
            vec![ours.clone(), root.pem.clone()],
            &other_key,
            Some("does not match"),
        ),
        (
            "not PEM",
            vec!["garbage".to_string(), root.pem.clone()],
            &key,
            Some("certificate chain"),
        ),
    ];
    for (name, chain, key, want_error) in cases {
        let got = issued_cert(&identity(), chain, key.serialize_pem(), now);
        match (got, want_error) {
            (Ok(_), None) => {}
            (Err(e), Some(want)) => assert!(e.contains(want), "{name}: {e}"),
            (got, want) => panic!("{name}: got {got:?}, want error {want:?}"),
        }
    }
}

#[test]
fn renews_at_half_life() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let day = Duration::from_secs(86_400);
    let cases = [
        ("fresh", t0, t0 + day, t0, day / 2),
        ("a quarter through", t0, t0 + day, t0 + day / 4, day / 4),
        ("past half", t0, t0 + day, t0 + day * 3 / 4, Duration::ZERO),
        ("expired", t0, t0 + day, t0 + day * 2, Duration::ZERO),
        (
            "not yet valid (clock skew)",
            t0 + day,
            t0 + day * 3,
            t0,
            day * 2,
        ),
        ("inverted validity", t0 + day, t0, t0, day),
    ];
    for (name, not_before, not_after, now, want) in cases {
        assert_eq!(renewal_delay(not_before, not_after, now), want, "{name}");
    }
}

#[test]
fn backoff_doubles_to_the_cap_with_bounded_jitter() {
    let mut backoff = Backoff::new(BackoffPolicy::ISTIO);
    let unjittered: Vec<u64> = (0..8).map(|_| backoff.next_delay(0.5).as_secs()).collect();
    assert_eq!(unjittered, vec![1, 2, 4, 8, 16, 32, 60, 60]);

    backoff.reset();
    assert_eq!(backoff.next_delay(0.0), Duration::from_millis(800));
    assert_eq!(backoff.next_delay(1.0), Duration::from_millis(2400));
    backoff.reset();
    for _ in 0..10 {
        backoff.next_delay(1.0);
    }
    assert_eq!(
        backoff.next_delay(1.0),
        Duration::from_secs(60),
        "jitter never exceeds the cap"
    );
}

/// A certificate as `on_cert` received it, with how many requests the CA had seen by then.
type Delivery = (IssuedCert, usize);

/// Collects what `on_cert` receives, with the CA's call count at that moment, and wakes the
/// test on each. Counting at delivery, not when the test gets to look, keeps the count exact
/// however late a loaded machine schedules the test.
fn collector(
    ca: &TestCa,
) -> (
    impl Fn(IssuedCert) + Send + Sync + 'static,
    tokio::sync::mpsc::UnboundedReceiver<Delivery>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let ca = ca.clone();
    (move |cert| drop(tx.send((cert, ca.calls()))), rx)
}

/// Bounds a wait for something that takes milliseconds when healthy: only a hung renewal
/// task reaches it, never a slow machine (the tests assert order and counts, not speed).
const PATIENCE: Duration = Duration::from_secs(30);

async fn next_cert(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Delivery>) -> Delivery {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("a certificate in time")
        .expect("renewal task alive")
}

#[tokio::test]
async fn renews_again_around_half_life() {
    let ca = TestCa::new(0);
    let addr = ca.serve(false).await;
    let token = token_file(TOKEN);
    let mut cfg = config(format!("http://{addr}"), &token);
    // X.509 times have whole seconds, so a 2 s certificate is renewed 0-1 s after issue.
    cfg.requested_ttl = Duration::from_secs(2);
    let (on_cert, mut certs) = collector(&ca);
    let (_stop, shutdown) = watch::channel(false);

    let task = spawn_renewal_with(cfg, None, on_cert, shutdown, FAST_BACKOFF);
    let (first, _) = next_cert(&mut certs).await;
    let (second, calls) = next_cert(&mut certs).await;
    task.abort();

    assert_ne!(
        first.key_pem, second.key_pem,
        "each renewal uses a fresh key"
    );
    assert!(second.not_after >= first.not_after);
    assert_eq!(calls, 2, "no request before half-life");
}

#[tokio::test]
async fn schedules_from_the_first_certificate() {
    let ca = TestCa::new(0);
    let addr = ca.serve(false).await;
    let token = token_file(TOKEN);
    let cfg = config(format!("http://{addr}"), &token);
    let first = request_certificate(&cfg).await.expect("first certificate");
    let (on_cert, mut certs) = collector(&ca);
    let (stop, shutdown) = watch::channel(false);

    let task = spawn_renewal(cfg, Some(first), on_cert, shutdown);
    // Gives a wrong (immediate) renewal the chance to show; a slow machine only makes the
    // chance bigger, it cannot make a correct task fail.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        certs.try_recv().is_err(),
        "a 24 h certificate is not renewed at once"
    );
    assert_eq!(ca.calls(), 1);

    stop.send(true).expect("task listening");
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("stops on shutdown")
        .expect("no panic");
}

#[tokio::test]
async fn retries_with_backoff_until_the_ca_answers() {
    let ca = TestCa::new(3);
    let addr = ca.serve(false).await;
    let token = token_file(TOKEN);
    let cfg = config(format!("http://{addr}"), &token);
    let (on_cert, mut certs) = collector(&ca);
    let (_stop, shutdown) = watch::channel(false);

    let task = spawn_renewal_with(cfg, None, on_cert, shutdown, FAST_BACKOFF);
    let (cert, calls) = next_cert(&mut certs).await;
    task.abort();

    assert!(cert.chain_pem.contains("BEGIN CERTIFICATE"));
    assert_eq!(calls, 4, "three failures, then success");
}

#[tokio::test]
async fn does_not_hammer_a_ca_that_issues_certificates_past_half_life() {
    // Issued an hour ago for two hours: already due for renewal when it arrives.
    let ca = TestCa::with_backdate(0, Duration::from_secs(3600));
    let addr = ca.serve(false).await;
    let token = token_file(TOKEN);
    let mut cfg = config(format!("http://{addr}"), &token);
    cfg.requested_ttl = Duration::from_secs(7200);
    let (on_cert, _certs) = collector(&ca);
    let (_stop, shutdown) = watch::channel(false);

    let started = std::time::Instant::now();
    let task = spawn_renewal_with(cfg, None, on_cert, shutdown, FAST_BACKOFF);
    // Wait for a few renewals rather than for a fixed time: a loaded machine then only makes
    // the wait longer, and the bound below grows with the time it actually took.
    let deadline = started + PATIENCE;
    while ca.calls() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the task stopped renewing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let calls = ca.calls();
    let elapsed = started.elapsed();
    task.abort();

    // Every request after the first waits out a backoff of at least 16 ms (20 ms less 20 %
    // jitter, then longer); an immediate re-request loop would make hundreds in that time.
    let allowed = 2 + elapsed.as_millis() / 16;
    assert!(
        calls as u128 <= allowed,
        "{calls} requests in {elapsed:?}, at most {allowed} with backoff"
    );
}
