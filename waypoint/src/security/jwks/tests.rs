//! The JWKS cache against a tiny HTTP server on 127.0.0.1: first fetch, rotation picked up on
//! an unknown `kid`, and a server that is down.

use super::*;
use crate::security::jwt::authenticate;
use crate::security::jwt::tests::sample;
use authz::jwt::AuthnOutcome;
use pingora_http::RequestHeader;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `body` (changeable) on every request, or 503 when it is empty.
struct JwksServer {
    uri: String,
    body: Arc<std::sync::Mutex<String>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(body: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let uri = format!("http://{}/keys", listener.local_addr().expect("addr"));
        let body = Arc::new(std::sync::Mutex::new(body));
        let hits = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (body.clone(), hits.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut buf = vec![0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let text = served.lock().expect("body").clone();
                let status = if text.is_empty() {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            }
        });
        JwksServer {
            uri,
            body,
            hits,
            task,
        }
    }

    fn serve(&self, body: String) {
        *self.body.lock().expect("body") = body;
    }
}

fn authenticator(uri: &str) -> Authenticator {
    let spec = json!({"jwtRules": [{"issuer": "test-issuer-1@istio.io", "jwksUri": uri, "timeout": "1s"}]});
    let (authn, issues) = Authenticator::compile(&[(authz::PolicyRef::default(), &spec)]);
    assert!(issues.is_empty(), "{issues:?}");
    authn
}

fn request(token: &str) -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/get", None).expect("request");
    req.insert_header("host", "httpbin.ns1").expect("host");
    req.insert_header("authorization", format!("Bearer {token}"))
        .expect("auth");
    req
}

async fn body_of(authn: &Authenticator, cache: &JwksCache) -> String {
    match authenticate(
        authn,
        &request(&sample("issuer1.jwt")),
        cache,
        SystemTime::now(),
    )
    .await
    {
        AuthnOutcome::Authenticated { auth, .. } => format!("ok {}", auth.principal),
        AuthnOutcome::Rejected(reply) => format!("{} {}", reply.status, reply.body),
        AuthnOutcome::Anonymous => "anonymous".to_string(),
    }
}

/// A server with `body`, a rule on its URI, and a cache that follows it.
async fn setup(body: String) -> (JwksServer, Authenticator, Arc<JwksCache>) {
    let server = JwksServer::start(body).await;
    let authn = authenticator(&server.uri);
    let cache = JwksCache::with_options(DEFAULT_REFRESH, &[]);
    cache.ensure([&authn]);
    (server, authn, cache)
}

#[tokio::test]
async fn rotation_is_picked_up_on_an_unknown_kid() {
    // The server first has only the other sample key: issuer1.jwt's kid is not in it.
    let (server, authn, cache) = setup(sample("jwks.json")).await;
    assert_eq!(
        body_of(&authn, &cache).await,
        "401 Jwks doesn't have key to match kid or alg from Jwt"
    );
    assert_eq!(cache.status()[0].state, UriState::Ok);
    // The issuer rotates to the key that signed issuer1.jwt.
    server.serve(sample("istio-test-jwks.json"));
    tokio::time::sleep(REFETCH_MIN_INTERVAL + Duration::from_millis(100)).await;
    assert_eq!(
        body_of(&authn, &cache).await,
        "ok test-issuer-1@istio.io/sub-1"
    );
    let status = &cache.status()[0];
    assert_eq!(
        status.kids,
        vec!["tT_w9LRNrY7wJalGsTYSt7rutZi86Gvyc0EKR4CaQAw"]
    );
    // Known kid now: no further fetch.
    let hits = server.hits.load(Ordering::SeqCst);
    assert_eq!(
        body_of(&authn, &cache).await,
        "ok test-issuer-1@istio.io/sub-1"
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), hits);
    server.task.abort();
}

#[tokio::test]
async fn refetches_on_unknown_kids_are_rate_limited() {
    let server = JwksServer::start(sample("jwks.json")).await;
    let authn = authenticator(&server.uri);
    let cache = JwksCache::with_options(DEFAULT_REFRESH, &[]);
    for _ in 0..5 {
        body_of(&authn, &cache).await;
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    server.task.abort();
}

#[tokio::test]
async fn a_server_that_is_down_fails_tokens_and_says_so() {
    let (server, authn, cache) = setup(String::new()).await;
    assert_eq!(
        body_of(&authn, &cache).await,
        "401 Jwks doesn't have key to match kid or alg from Jwt"
    );
    let status = &cache.status()[0];
    assert_eq!(status.state, UriState::Failing);
    assert!(!status.has_keys);
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("503")),
        "{status:?}"
    );

    // Up, then down again: the last good keys keep verifying, the state says failing.
    server.serve(sample("istio-test-jwks.json"));
    tokio::time::sleep(REFETCH_MIN_INTERVAL + Duration::from_millis(100)).await;
    assert_eq!(
        body_of(&authn, &cache).await,
        "ok test-issuer-1@istio.io/sub-1"
    );
    server.task.abort();
    let _ = server.task.await;
    assert!(!cache.fetch_now(&server.uri, Duration::ZERO).await);
    let status = &cache.status()[0];
    assert_eq!(
        (status.state.clone(), status.has_keys),
        (UriState::Failing, true)
    );
    assert_eq!(
        body_of(&authn, &cache).await,
        "ok test-issuer-1@istio.io/sub-1"
    );
}

#[tokio::test]
async fn ensure_follows_the_snapshot() {
    let cache = JwksCache::with_options(DEFAULT_REFRESH, &[]);
    let a = authenticator("http://127.0.0.1:9/a");
    let b = authenticator("http://127.0.0.1:9/b");
    cache.ensure([&a, &b]);
    assert_eq!(cache.status().len(), 2);
    cache.ensure([&b]);
    let uris: Vec<String> = cache.status().into_iter().map(|s| s.uri).collect();
    assert_eq!(uris, vec!["http://127.0.0.1:9/b"]);
}

#[tokio::test]
async fn an_issuer_without_keys_is_discovered() {
    let server = JwksServer::start(String::new()).await;
    let base = server.uri.trim_end_matches("/keys").to_string();
    // The tiny server answers every path with one body: the discovery document first.
    server.serve(json!({"issuer": base, "jwks_uri": server.uri}).to_string());
    let discovery = format!("{base}{}", authz::jwt::OPENID_DISCOVERY_SUFFIX);
    assert_eq!(
        fetch::fetch_jwks(&discovery, Duration::from_secs(1), None)
            .await
            .ok(),
        Some(json!({"issuer": base, "jwks_uri": server.uri}).to_string())
    );
    server.task.abort();
}

/// Serves `body` once over TLS with a self-signed certificate for 127.0.0.1.
async fn tls_server(body: String) -> (String, CertificateDer<'static>) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("certificate");
    let der = cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![der.clone()], key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let uri = format!("https://{}/keys", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(mut stream) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut buf = vec![0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    (uri, der)
}

#[tokio::test]
async fn https_uses_the_given_roots() {
    let (uri, root) = tls_server(sample("jwks.json")).await;
    let trusted = fetch::tls_config(&[root]);
    let text = fetch::fetch_jwks(&uri, Duration::from_secs(2), trusted.as_ref()).await;
    assert_eq!(text.ok(), Some(sample("jwks.json")));
    // Without the root, the self-signed server is refused.
    let system_only = fetch::tls_config(&[]);
    let refused = fetch::fetch_jwks(&uri, Duration::from_secs(2), system_only.as_ref()).await;
    assert!(
        matches!(refused, Err(FetchError::Tls { .. })),
        "{refused:?}"
    );
}
