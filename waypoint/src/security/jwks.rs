//! JWKS for `jwksUri`s: fetched over HTTP(S), cached, refreshed periodically and on an unknown
//! `kid`, with a clear state when a URI fails.
//!
//! istiod fetches a rule's `jwksUri` itself (every 20 minutes by default) and hands Envoy the
//! keys inline; while it never managed to, Envoy gets a placeholder that refuses every token.
//! This cache plays istiod's part: [`JwksCache::ensure`] at snapshot publish starts a refresher
//! per URI, requests read the last good keys ([`JwksSource`]), and a token whose `kid` the
//! cached set lacks triggers one refetch (at most one per second per URI) so that a key
//! rotation is picked up without waiting for the next refresh.

mod fetch;

use authz::jwt::{Authenticator, Jwks, JwksSource};
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Mutex as AsyncMutex;

pub use fetch::FetchError;

/// Istio's default JWKS refresh interval (`PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(20 * 60);

/// Istio's default `timeout` of a rule's JWKS fetch.
const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A failing URI is retried at least this often even without requests asking.
const FAILING_RETRY: Duration = Duration::from_secs(30);

/// At most one request-triggered fetch per URI per this interval.
const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The state of one URI, for the log and `/config_dump`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UriState {
    /// Not fetched yet.
    Pending,
    /// The last fetch succeeded.
    Ok,
    /// The last fetch failed; the last good keys (if any) are still used.
    Failing,
}

/// One URI's state as `/config_dump` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JwksStatus {
    /// The `jwksUri`.
    pub uri: String,
    /// Ok, failing or pending.
    pub state: UriState,
    /// Since when (seconds since the epoch) the state holds.
    pub since_unix: u64,
    /// The last error, while failing.
    pub last_error: Option<String>,
    /// The `kid`s of the keys in use (the last good set).
    pub kids: Vec<String>,
    /// Whether tokens can be verified at all (a good set was fetched once).
    pub has_keys: bool,
}

struct Entry {
    keys: Option<Arc<Jwks>>,
    /// The text the keys were parsed from, to tell a rotation from a refresh.
    text: String,
    timeout: Duration,
    state: UriState,
    since: SystemTime,
    last_error: Option<String>,
    /// Serializes fetches of this URI; requests waiting on it see the result.
    fetching: Arc<AsyncMutex<Option<Instant>>>,
    /// Bumped on every successful fetch that changed the keys.
    generation: u64,
    refresher: Option<tokio::task::AbortHandle>,
}

impl Entry {
    fn new(timeout: Duration) -> Entry {
        Entry {
            keys: None,
            text: String::new(),
            timeout,
            state: UriState::Pending,
            since: SystemTime::now(),
            last_error: None,
            fetching: Arc::new(AsyncMutex::new(None)),
            generation: 0,
            refresher: None,
        }
    }
}

/// The JWKS of every `jwksUri` in force, shared by all requests.
pub struct JwksCache {
    /// Itself, for the refresher tasks it spawns (empty for a `Default` cache, which then
    /// fetches on demand only).
    me: Weak<JwksCache>,
    refresh: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
    uris: RwLock<HashMap<String, Entry>>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("refresh", &self.refresh)
            .field("status", &self.status())
            .finish()
    }
}

impl Default for JwksCache {
    fn default() -> Self {
        JwksCache::build(Weak::new(), DEFAULT_REFRESH, &[])
    }
}

impl JwksSource for JwksCache {
    fn jwks(&self, uri: &str) -> Option<Arc<Jwks>> {
        let uris = self.uris.read().unwrap_or_else(|p| p.into_inner());
        uris.get(uri).and_then(|e| e.keys.clone())
    }
}

impl JwksCache {
    /// An empty cache refreshing every 20 minutes (Istio's default); fetching starts when a
    /// snapshot needs a URI.
    pub fn new() -> Arc<Self> {
        JwksCache::with_options(DEFAULT_REFRESH, &[])
    }

    /// An empty cache refreshing every `refresh`, trusting the system's roots and
    /// `extra_roots` for `https://` URIs.
    pub fn with_options(refresh: Duration, extra_roots: &[CertificateDer<'static>]) -> Arc<Self> {
        Arc::new_cyclic(|me| JwksCache::build(me.clone(), refresh, extra_roots))
    }

    fn build(
        me: Weak<JwksCache>,
        refresh: Duration,
        extra_roots: &[CertificateDer<'static>],
    ) -> JwksCache {
        JwksCache {
            me,
            refresh: refresh.max(Duration::from_secs(1)),
            tls: fetch::tls_config(extra_roots),
            uris: RwLock::new(HashMap::new()),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.uris.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the cache follow the `jwksUri`s of a snapshot's authenticators (all of them, in
    /// one call, at publish): new URIs start fetching (when called inside a tokio runtime;
    /// otherwise on the first request that needs them), URIs no longer named stop.
    pub fn ensure<'a>(&self, authenticators: impl IntoIterator<Item = &'a Authenticator>) {
        let mut wanted: HashMap<String, Duration> = HashMap::new();
        for authn in authenticators {
            for (uri, timeout) in authn.jwks_fetches() {
                let t = wanted.entry(uri).or_insert(timeout);
                *t = (*t).min(timeout);
            }
        }
        let mut uris = self.write();
        uris.retain(|uri, entry| {
            let keep = wanted.contains_key(uri);
            if let (false, Some(task)) = (keep, &entry.refresher) {
                task.abort();
            }
            keep
        });
        for (uri, timeout) in wanted {
            let entry = uris
                .entry(uri.clone())
                .or_insert_with(|| Entry::new(timeout));
            entry.timeout = timeout;
            if entry.refresher.is_none() {
                entry.refresher = self.spawn_refresher(uri);
            }
        }
    }

    fn spawn_refresher(&self, uri: String) -> Option<tokio::task::AbortHandle> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let cache = self.me.clone();
        let task = runtime.spawn(async move {
            loop {
                let Some(this) = cache.upgrade() else {
                    return;
                };
                // A request may just have fetched it (the refresher starts with its first
                // refetch): no second fetch right behind it.
                let ok = this.fetch_now(&uri, REFETCH_MIN_INTERVAL).await;
                let pause = if ok {
                    this.refresh
                } else {
                    this.refresh.min(FAILING_RETRY)
                };
                drop(this);
                tokio::time::sleep(pause).await;
            }
        });
        Some(task.abort_handle())
    }

    /// Fetches `uri` again because a token needed it (its `kid` is not in the cached set, or
    /// the URI never answered): waits for a fetch already running, fetches at most once per
    /// second per URI, and says whether the keys changed so the token is worth judging again.
    /// A URI [`JwksCache::ensure`] was not told about is fetched all the same (with Istio's
    /// default 5 s timeout), so that a missed `ensure` costs no more than its refresher.
    pub async fn refetch(&self, uri: &str) -> bool {
        let (lock, generation) = {
            let mut uris = self.write();
            let entry = uris
                .entry(uri.to_string())
                .or_insert_with(|| Entry::new(DEFAULT_FETCH_TIMEOUT));
            if entry.refresher.is_none() {
                entry.refresher = self.spawn_refresher(uri.to_string());
            }
            (entry.fetching.clone(), entry.generation)
        };
        let last = *lock.lock().await;
        if self.generation(uri) != Some(generation) {
            return true;
        }
        if last.is_some_and(|at| at.elapsed() < REFETCH_MIN_INTERVAL) {
            return false;
        }
        self.fetch_now(uri, Duration::ZERO).await;
        self.generation(uri) != Some(generation)
    }

    fn status_of(&self, uri: &str) -> Option<UriState> {
        let uris = self.uris.read().unwrap_or_else(|p| p.into_inner());
        uris.get(uri).map(|e| e.state.clone())
    }

    fn generation(&self, uri: &str) -> Option<u64> {
        let uris = self.uris.read().unwrap_or_else(|p| p.into_inner());
        uris.get(uri).map(|e| e.generation)
    }

    /// One fetch of `uri` under its lock, recorded in its state, unless another started less
    /// than `min_gap` ago; true when the URI's state is ok.
    async fn fetch_now(&self, uri: &str, min_gap: Duration) -> bool {
        let (lock, timeout) = {
            let uris = self.uris.read().unwrap_or_else(|p| p.into_inner());
            match uris.get(uri) {
                Some(e) => (e.fetching.clone(), e.timeout),
                None => return false,
            }
        };
        let mut last = lock.lock().await;
        if last.is_some_and(|at| at.elapsed() < min_gap) {
            return self.status_of(uri) == Some(UriState::Ok);
        }
        *last = Some(Instant::now());
        let result = fetch::fetch_jwks(uri, timeout, self.tls.as_ref())
            .await
            .map_err(|e| e.to_string())
            .and_then(|text| match Jwks::parse(&text) {
                Ok(jwks) => Ok((text, jwks)),
                Err(e) => Err(format!("{e} (from the body of {uri})")),
            });
        let ok = result.is_ok();
        self.record(uri, result);
        ok
    }

    fn record(&self, uri: &str, result: Result<(String, Jwks), String>) {
        let mut uris = self.write();
        let Some(entry) = uris.get_mut(uri) else {
            return;
        };
        let was = entry.state.clone();
        match result {
            Ok((text, jwks)) => {
                if entry.keys.is_none() || entry.text != text {
                    entry.generation += 1;
                }
                entry.text = text;
                entry.keys = Some(Arc::new(jwks));
                entry.state = UriState::Ok;
                entry.last_error = None;
                if was != UriState::Ok {
                    entry.since = SystemTime::now();
                    tracing::info!(uri, kids = ?entry.keys.as_ref().map(|k| k.kids()), "JWKS fetched");
                }
            }
            Err(error) => {
                if was != UriState::Failing {
                    entry.since = SystemTime::now();
                    tracing::warn!(
                        uri,
                        %error,
                        has_last_good_keys = entry.keys.is_some(),
                        "JWKS fetch failing: tokens of its issuer are refused until it succeeds (unless keys fetched earlier still verify them)"
                    );
                }
                entry.state = UriState::Failing;
                entry.last_error = Some(error);
            }
        }
    }

    /// Every URI's state, for `/config_dump`, sorted by URI.
    pub fn status(&self) -> Vec<JwksStatus> {
        let uris = self.uris.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<JwksStatus> = uris
            .iter()
            .map(|(uri, e)| JwksStatus {
                uri: uri.clone(),
                state: e.state.clone(),
                since_unix: e
                    .since
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                last_error: e.last_error.clone(),
                kids: e.keys.as_ref().map_or_else(Vec::new, |k| {
                    k.kids().into_iter().map(str::to_string).collect()
                }),
                has_keys: e.keys.is_some(),
            })
            .collect();
        out.sort_by(|a, b| a.uri.cmp(&b.uri));
        out
    }
}

impl Drop for JwksCache {
    fn drop(&mut self) {
        let uris = self.uris.get_mut().unwrap_or_else(|p| p.into_inner());
        for entry in uris.values() {
            if let Some(task) = &entry.refresher {
                task.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests;
