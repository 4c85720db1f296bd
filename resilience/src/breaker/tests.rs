use super::*;
use std::sync::atomic::AtomicU32;
use std::sync::Barrier;
use std::thread;

fn limits(connections: u32, pending: u32, requests: u32) -> PoolLimits {
    PoolLimits {
        max_connections: connections,
        max_pending_requests: pending,
        max_requests: requests,
        ..PoolLimits::default()
    }
}

#[test]
fn the_circuit_breaking_task_admits_one_queues_one_refuses_the_rest() {
    let b = CircuitBreaker::new();
    let l = limits(1, 1, u32::MAX);
    let first = b.admit(&l, false);
    assert!(matches!(first, Admission::Admitted(_)));
    let second = b.admit(&l, false);
    assert!(matches!(second, Admission::Queued { .. }));
    for _ in 0..18 {
        assert!(matches!(
            b.admit(&l, false),
            Admission::Overflow(Resource::Pending)
        ));
    }
    assert_eq!(
        (b.in_use(Resource::Slots), b.in_use(Resource::Pending)),
        (1, 1)
    );
    assert_eq!(
        b.in_use(Resource::Requests),
        2,
        "refusals give their place back"
    );
    // The first finishes: the queued one takes its slot and leaves the queue.
    drop(first);
    let Admission::Queued { request, pending } = second else {
        panic!("queued");
    };
    let slot = b.try_slot(&l, false).expect("a slot was given back");
    drop(pending);
    assert_eq!(
        (b.in_use(Resource::Slots), b.in_use(Resource::Pending)),
        (1, 0)
    );
    drop((request, slot));
    assert_eq!(b.in_use(Resource::Requests), 0);
}

#[test]
fn http2_max_requests_caps_requests_in_flight() {
    let b = CircuitBreaker::new();
    let l = limits(u32::MAX, u32::MAX, 2);
    let held: Vec<_> = (0..2).map(|_| b.admit(&l, true)).collect();
    assert!(held.iter().all(|a| matches!(a, Admission::Admitted(_))));
    assert!(matches!(
        b.admit(&l, true),
        Admission::Overflow(Resource::Requests)
    ));
}

#[test]
fn an_http2_connection_carries_max_concurrent_streams() {
    let l = PoolLimits {
        max_connections: 2,
        max_concurrent_streams: Some(3),
        max_pending_requests: 0,
        ..PoolLimits::default()
    };
    assert_eq!(l.request_slots(true), 6);
    assert_eq!(l.request_slots(false), 2);
    let b = CircuitBreaker::new();
    let held: Vec<_> = (0..6).map(|_| b.admit(&l, true)).collect();
    assert!(held.iter().all(|a| matches!(a, Admission::Admitted(_))));
    assert!(matches!(
        b.admit(&l, true),
        Admission::Overflow(Resource::Pending)
    ));
}

#[test]
fn the_retry_budget_is_shared_by_the_cluster() {
    let b = CircuitBreaker::new();
    let l = PoolLimits {
        max_retries: 2,
        ..PoolLimits::default()
    };
    let a = b.try_start_retry(&l).expect("first");
    let c = b.clone().try_start_retry(&l).expect("second, from a clone");
    assert!(b.try_start_retry(&l).is_none());
    drop(a);
    assert!(b.try_start_retry(&l).is_some());
    drop(c);
}

#[test]
fn unset_limits_never_refuse() {
    let b = CircuitBreaker::new();
    let l = PoolLimits::default();
    let held: Vec<_> = (0..10_000).map(|_| b.admit(&l, false)).collect();
    assert!(held.iter().all(|a| matches!(a, Admission::Admitted(_))));
}

/// 20 threads hammer a breaker with maxConnections 3: never more than 3 slots taken at once,
/// and every place is given back.
#[test]
fn limits_are_exact_under_concurrency() {
    let b = CircuitBreaker::new();
    let l = limits(3, 0, u32::MAX);
    let in_flight = AtomicU32::new(0);
    let max_seen = AtomicU32::new(0);
    let admitted = AtomicU32::new(0);
    let start = Barrier::new(20);
    thread::scope(|s| {
        for _ in 0..20 {
            s.spawn(|| {
                start.wait();
                for _ in 0..2_000 {
                    if let Admission::Admitted(guards) = b.admit(&l, false) {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        max_seen.fetch_max(now, Ordering::SeqCst);
                        admitted.fetch_add(1, Ordering::Relaxed);
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        drop(guards);
                    }
                }
            });
        }
    });
    assert!(max_seen.load(Ordering::SeqCst) <= 3);
    assert!(admitted.load(Ordering::Relaxed) > 0);
    for r in [Resource::Requests, Resource::Slots, Resource::Pending] {
        assert_eq!(b.in_use(r), 0, "{r:?}");
    }
}
