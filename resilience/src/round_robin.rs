//! Round-robin endpoint choice shared by every request of one snapshot.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Hands out endpoint indexes in turn. Lock-free, so concurrent requests never wait on each
/// other; a relaxed counter is enough because fairness, not ordering, is the goal.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// A rotation starting at the first endpoint.
    pub fn new() -> Self {
        Self::default()
    }

    /// The index of the endpoint for the next request among `len` endpoints, or `None` when
    /// there are none.
    pub fn pick(&self, len: usize) -> Option<usize> {
        if len == 0 {
            return None;
        }
        Some(self.next.fetch_add(1, Ordering::Relaxed) % len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_through_every_endpoint_evenly() {
        let rr = RoundRobin::new();
        let mut counts = [0usize; 3];
        for _ in 0..300 {
            counts[rr.pick(3).expect("non-empty")] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn no_endpoints_no_pick() {
        assert_eq!(RoundRobin::new().pick(0), None);
    }

    #[test]
    fn a_shrinking_endpoint_list_stays_in_bounds() {
        let rr = RoundRobin::new();
        for _ in 0..10 {
            rr.pick(5);
        }
        for len in (1..5).rev() {
            assert!(rr.pick(len).expect("non-empty") < len);
        }
    }
}
