//! The lookup tables of the consistent-hash balancers: a Ketama ring and a Maglev table over
//! the endpoints' identity hashes, each entry an endpoint index.
//!
//! Envoy rebuilds both from the healthy endpoints when health changes. Here the table is built
//! once per snapshot from every endpoint, and a lookup landing on an ineligible endpoint walks
//! on to the next eligible entry: for the ring that is exactly where a ring without that
//! endpoint would land; for Maglev it keeps every request of the healthy endpoints in place
//! and spreads the ejected one's requests over the others.

use super::hash::{mix, stable_hash};

/// Entries: for the ring, sorted `(point, endpoint)`; for Maglev, one endpoint per slot.
#[derive(Debug)]
pub(crate) enum HashTable {
    Ring(Vec<(u64, u32)>),
    Maglev(Vec<u32>),
}

impl HashTable {
    /// A ring with at least `min_size` points, the same number per endpoint.
    pub(crate) fn ring(keys: &[u64], min_size: u64) -> Self {
        if keys.is_empty() {
            return HashTable::Ring(Vec::new());
        }
        let per_endpoint = min_size.div_ceil(keys.len() as u64).max(1);
        let mut ring = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else { break };
            for replica in 0..per_endpoint {
                let mut bytes = key.to_le_bytes().to_vec();
                bytes.extend_from_slice(&replica.to_le_bytes());
                ring.push((stable_hash(&bytes), i));
            }
        }
        ring.sort_unstable();
        HashTable::Ring(ring)
    }

    /// A Maglev table of `size` slots (a prime): each endpoint fills slots in the order of its
    /// own permutation, in turn, so each gets an equal share and a change moves few slots.
    pub(crate) fn maglev(keys: &[u64], size: u64) -> Self {
        let Ok(m) = usize::try_from(size) else {
            return HashTable::Maglev(Vec::new());
        };
        if keys.is_empty() || m == 0 {
            return HashTable::Maglev(Vec::new());
        }
        let perms: Vec<(u64, u64)> = keys
            .iter()
            .map(|k| (mix(*k) % size, mix(k ^ 0x5bd1_e995) % (size.max(2) - 1) + 1))
            .collect();
        let mut next = vec![0u64; keys.len()];
        let mut table = vec![u32::MAX; m];
        let mut filled = 0;
        'fill: loop {
            for (i, &(offset, skip)) in perms.iter().enumerate() {
                let mut slot = (offset + next[i] * skip) % size;
                while table[slot as usize] != u32::MAX {
                    next[i] += 1;
                    slot = (offset + next[i] * skip) % size;
                }
                table[slot as usize] = u32::try_from(i).unwrap_or(0);
                next[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
        HashTable::Maglev(table)
    }

    /// The endpoint for `hash`: its entry, or the next entry whose endpoint is eligible.
    pub(crate) fn lookup(&self, hash: u64, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let ok = |e: u32| usize::try_from(e).ok().filter(|&i| eligible(i));
        match self {
            HashTable::Ring(ring) if !ring.is_empty() => {
                let start = ring.partition_point(|(p, _)| *p < hash);
                (0..ring.len()).find_map(|k| ok(ring[(start + k) % ring.len()].1))
            }
            HashTable::Maglev(table) if !table.is_empty() => {
                let start = usize::try_from(hash % table.len() as u64).unwrap_or(0);
                (0..table.len()).find_map(|k| ok(table[(start + k) % table.len()]))
            }
            _ => None,
        }
    }
}

/// Whether `n` is prime (Maglev's table size must be).
pub(crate) fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}
