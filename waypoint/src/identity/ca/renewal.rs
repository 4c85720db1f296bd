//! Keeping the workload certificate fresh: when to renew, how long to wait after a failure,
//! and the background task that does both.

use super::{request_certificate, CaClientConfig, IssuedCert};
use crate::identity::WorkloadCert;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How retries after a failed request space out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BackoffPolicy {
    pub(super) initial: Duration,
    pub(super) max: Duration,
}

impl BackoffPolicy {
    /// 1 s doubling to 60 s: quick recovery from a blip, yet a down istiod sees at most one
    /// request a minute from each waypoint.
    pub(super) const ISTIO: BackoffPolicy = BackoffPolicy {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };
}

/// Exponential backoff with jitter.
#[derive(Debug)]
pub(super) struct Backoff {
    policy: BackoffPolicy,
    next: Duration,
}

impl Backoff {
    pub(super) fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            next: policy.initial,
        }
    }

    /// The wait before the next attempt. `unit`, in `[0, 1]`, picks the jitter (random in
    /// production, fixed in tests): ±20 % so that waypoints restarted together do not come
    /// back to istiod in lockstep.
    pub(super) fn next_delay(&mut self, unit: f64) -> Duration {
        let base = self.next;
        self.next = base.saturating_mul(2).min(self.policy.max);
        base.mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0))
            .min(self.policy.max)
    }

    pub(super) fn reset(&mut self) {
        self.next = self.policy.initial;
    }
}

/// When to renew a certificate valid from `not_before` to `not_after`: at half its lifetime,
/// as istio-agent does, which leaves the other half for retries if istiod is down.
pub(super) fn renewal_delay(
    not_before: SystemTime,
    not_after: SystemTime,
    now: SystemTime,
) -> Duration {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    let renew_at = not_before + lifetime / 2;
    renew_at.duration_since(now).unwrap_or(Duration::ZERO)
}

fn renewal_delay_for(cert: &IssuedCert, now: SystemTime) -> Duration {
    // IssuedCert carries only the expiry; the start is in the leaf. Should it not parse,
    // renewing at half the remaining time is still safe.
    let not_before = WorkloadCert::from_pem(
        "certificate to renew",
        &cert.chain_pem,
        &cert.key_pem,
        &cert.root_pem,
    )
    .map(|c| c.not_before)
    .unwrap_or(now);
    renewal_delay(not_before, cert.not_after, now)
}

/// Keeps a certificate fresh: renews at half of the current certificate's lifetime (Istio's
/// default), retries failures with exponential backoff (1 s doubling to 60 s, with jitter),
/// and hands each new certificate to `on_cert`. With `first`, the first renewal is scheduled
/// from it; without, a certificate is requested at once. Uses tokio time only. Stops when
/// `shutdown` turns true; if its sender is dropped the task keeps renewing, because a
/// certificate that silently stops renewing is worse than a task that outlives its owner.
pub fn spawn_renewal(
    cfg: CaClientConfig,
    first: Option<IssuedCert>,
    on_cert: impl Fn(IssuedCert) + Send + Sync + 'static,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    spawn_renewal_with(cfg, first, on_cert, shutdown, BackoffPolicy::ISTIO)
}

pub(super) fn spawn_renewal_with(
    cfg: CaClientConfig,
    first: Option<IssuedCert>,
    on_cert: impl Fn(IssuedCert) + Send + Sync + 'static,
    mut shutdown: watch::Receiver<bool>,
    policy: BackoffPolicy,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut wait = first.as_ref().map_or(Duration::ZERO, |cert| {
            renewal_delay_for(cert, SystemTime::now())
        });
        let mut backoff = Backoff::new(policy);
        loop {
            tokio::select! {
                biased;
                () = shutdown_requested(&mut shutdown) => return,
                () = tokio::time::sleep(wait) => {}
            }
            let result = tokio::select! {
                biased;
                () = shutdown_requested(&mut shutdown) => return,
                result = request_certificate(&cfg) => result,
            };
            match result {
                Ok(cert) => {
                    wait = renewal_delay_for(&cert, SystemTime::now());
                    if wait < policy.initial {
                        // Already past half-life when issued: renewing at once would hammer
                        // istiod in a tight loop, so space the attempts out like failures.
                        wait = backoff.next_delay(rand::random());
                        tracing::warn!(
                            identity = %cfg.identity,
                            retry_in_ms = millis(wait),
                            "the Istio CA issued a certificate already past half its lifetime; check clock skew between this node and istiod, and the requested TTL"
                        );
                    } else {
                        backoff.reset();
                        tracing::info!(
                            identity = %cfg.identity,
                            renew_in_secs = wait.as_secs(),
                            "obtained a workload certificate from the Istio CA"
                        );
                    }
                    on_cert(cert);
                }
                Err(error) => {
                    wait = backoff.next_delay(rand::random());
                    tracing::warn!(
                        identity = %cfg.identity,
                        %error,
                        retry_in_ms = millis(wait),
                        "workload certificate request failed"
                    );
                }
            }
        }
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}
