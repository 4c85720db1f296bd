//! The circuit breaker of one cluster: exact counts of what is in flight, taken with a
//! compare-and-swap against the limit and given back by dropping a guard.
//!
//! Envoy's model, restated for our upstream pool (see [`PoolLimits::request_slots`]):
//! - a request first needs room under `max_requests` (requests in flight, any protocol);
//! - then a *slot*: one HTTP/1.1 connection busy with it (`max_connections`), or one stream of
//!   an HTTP/2 connection;
//! - without a free slot it may wait, holding a *pending* place (`max_pending_requests`),
//!   until a slot is given back;
//! - otherwise it overflows: the caller answers 503 with flag `UO` at once.
//!
//! Retries take a place under `max_retries` for as long as the retry runs.
//!
//! The counts live in a [`CircuitBreaker`] that the caller keeps across configuration reloads
//! (requests admitted under the old snapshot still count), while the limits come from the
//! snapshot in force. No lock: each count is one atomic, and a guard owns an `Arc` to it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::pool::PoolLimits;

/// The counts of one cluster; cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct CircuitBreaker {
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU32,
    slots: AtomicU32,
    pending: AtomicU32,
    retries: AtomicU32,
}

/// Which limit a guard holds a place under, or which one overflowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// `max_requests` (`http2MaxRequests`).
    Requests,
    /// `max_connections` (`tcp.maxConnections`): a connection, or an HTTP/2 stream.
    Slots,
    /// `max_pending_requests` (`http1MaxPendingRequests`).
    Pending,
    /// `max_retries` (`maxRetries`).
    Retries,
}

/// A place under one limit, given back on drop.
#[derive(Debug)]
pub struct BreakerGuard {
    counts: Arc<Counts>,
    resource: Resource,
}

impl BreakerGuard {
    /// The limit this guard holds a place under.
    pub fn resource(&self) -> Resource {
        self.resource
    }
}

impl Drop for BreakerGuard {
    fn drop(&mut self) {
        self.counts
            .counter(self.resource)
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// What [`CircuitBreaker::admit`] decided for a request.
#[derive(Debug)]
pub enum Admission {
    /// Go: the request holds its place under `max_requests` and a slot.
    Admitted(Admitted),
    /// No slot is free: wait, holding a pending place, and call
    /// [`CircuitBreaker::try_slot`] each time a slot may have been given back.
    Queued {
        /// The place under `max_requests`.
        request: BreakerGuard,
        /// The place in the pending queue, given back once a slot is taken.
        pending: BreakerGuard,
    },
    /// Over a limit: answer 503 `UO` now.
    Overflow(Resource),
}

/// The guards an admitted request holds until its exchange ends.
#[derive(Debug)]
pub struct Admitted {
    /// The place under `max_requests`.
    pub request: BreakerGuard,
    /// The connection or stream.
    pub slot: BreakerGuard,
}

impl Counts {
    fn counter(&self, resource: Resource) -> &AtomicU32 {
        match resource {
            Resource::Requests => &self.requests,
            Resource::Slots => &self.slots,
            Resource::Pending => &self.pending,
            Resource::Retries => &self.retries,
        }
    }
}

impl CircuitBreaker {
    /// A breaker with nothing in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// A place under `resource`'s `limit`, if one is free. Exact under concurrency: the count
    /// only grows through a compare-and-swap that sees it below the limit.
    pub fn try_acquire(&self, resource: Resource, limit: u32) -> Option<BreakerGuard> {
        self.counts
            .counter(resource)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| BreakerGuard {
                counts: self.counts.clone(),
                resource,
            })
    }

    /// Admission of one request (one attempt) to a cluster with `limits`; `h2` when the
    /// upstream connection is HTTP/2.
    pub fn admit(&self, limits: &PoolLimits, h2: bool) -> Admission {
        let Some(request) = self.try_acquire(Resource::Requests, limits.max_requests) else {
            return Admission::Overflow(Resource::Requests);
        };
        if let Some(slot) = self.try_slot(limits, h2) {
            return Admission::Admitted(Admitted { request, slot });
        }
        match self.try_acquire(Resource::Pending, limits.max_pending_requests) {
            Some(pending) => Admission::Queued { request, pending },
            None => Admission::Overflow(Resource::Pending),
        }
    }

    /// A slot (connection or stream) for a request, if one is free.
    pub fn try_slot(&self, limits: &PoolLimits, h2: bool) -> Option<BreakerGuard> {
        self.try_acquire(Resource::Slots, limits.request_slots(h2))
    }

    /// A place for one retry under `maxRetries` (the service-wide retry budget): hold the
    /// guard while the retry runs; `None` means the budget is spent and the request must not
    /// be retried (Envoy counts it as `upstream_rq_retry_overflow`).
    pub fn try_start_retry(&self, limits: &PoolLimits) -> Option<BreakerGuard> {
        self.try_acquire(Resource::Retries, limits.max_retries)
    }

    /// How many places under `resource` are taken now, for `/config_dump` and tests.
    pub fn in_use(&self, resource: Resource) -> u32 {
        self.counts.counter(resource).load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests;
