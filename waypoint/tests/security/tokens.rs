//! JWTs for the tests: Istio's sample keys (`../shared/security/jwt/`) sign tokens minted here
//! with any claims, and a small JWKS HTTP server whose key set the test can swap (rotation) and
//! whose fetches it can count.

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The folder of Istio's sample JWT material.
pub fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/security/jwt")
}

/// A sample file's text (a token file's without its trailing newline).
pub fn sample(name: &str) -> String {
    let path = samples().join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// An RSA signing key and the kid its JWKS publishes.
pub struct Key {
    der: Vec<u8>,
    pub kid: String,
    /// The JWKS document holding its public half.
    pub jwks: String,
}

impl Key {
    /// `key.pem`, published by `jwks.json` (security/tools/jwt/samples).
    pub fn sample() -> Key {
        Key::load("key.pem", "jwks.json")
    }

    /// `istio-test-key.pem`, published by `istio-test-jwks.json` (tests/common/jwt).
    pub fn istio_test() -> Key {
        Key::load("istio-test-key.pem", "istio-test-jwks.json")
    }

    fn load(pem: &str, jwks: &str) -> Key {
        let pem = sample(pem);
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("PEM body is base64");
        let jwks = sample(jwks);
        let doc: serde_json::Value = serde_json::from_str(&jwks).expect("JWKS is JSON");
        let kid = doc["keys"][0]["kid"].as_str().expect("kid").to_string();
        Key { der, kid, jwks }
    }

    /// An RS256 token with these claims, signed by this key with its kid.
    pub fn mint(&self, claims: serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_der(&self.der),
        )
        .expect("sign a token")
    }
}

/// Seconds since the epoch, for `exp`/`nbf`.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The payload segment of a token, as Envoy forwards it with `outputPayloadToHeader`.
pub fn payload(token: &str) -> &str {
    token.split('.').nth(1).unwrap_or_default()
}

/// A JWKS endpoint on 127.0.0.1 (any path) serving the current key set.
#[derive(Clone)]
pub struct JwksServer {
    pub addr: SocketAddr,
    keys: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    /// Serves `jwks` until the test ends.
    pub async fn start(jwks: &str) -> JwksServer {
        let keys = Arc::new(Mutex::new(jwks.to_string()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (k, f) = (keys.clone(), fetches.clone());
        let svc = service_fn(move |_req: http::Request<hyper::body::Incoming>| {
            f.fetch_add(1, Ordering::SeqCst);
            let body = k.lock().expect("lock").clone();
            async move {
                http::Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
            }
        });
        JwksServer {
            addr: super::serve::serve(svc, false).await,
            keys,
            fetches,
        }
    }

    /// The `jwksUri` of this server.
    pub fn uri(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    /// Replaces the key set (a rotation).
    pub fn set(&self, jwks: &str) {
        *self.keys.lock().expect("lock") = jwks.to_string();
    }

    /// How many times the key set was fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// A loopback address nothing listens on (bound, then released).
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}
