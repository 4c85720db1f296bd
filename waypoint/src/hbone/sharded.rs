//! A hash map split into independently locked shards, for the two maps every request reads
//! (the tunnel registry and the upstream pool's peers): two requests lock the same shard only
//! when their keys hash alike, so cores do not queue behind one global lock, and each lock is
//! held for a lookup, never across an await.
//!
//! Hand-written rather than `dashmap`: the needed surface is a handful of methods, and a
//! closure-based API cannot leak a guard across an await, which `dashmap`'s `Ref` guards can.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{PoisonError, RwLock};

/// Far more shards than cores, so two busy cores rarely meet on one; 64 empty shards cost
/// about 4 KiB.
const SHARDS: usize = 64;

/// One shard, alone on its cache line so that cores working on neighbouring shards do not
/// invalidate each other's line.
#[repr(align(64))]
#[derive(Debug)]
struct Shard<K, V>(RwLock<HashMap<K, V>>);

/// A concurrent map whose operations lock one shard, briefly.
#[derive(Debug)]
pub struct ShardedMap<K, V> {
    shards: Box<[Shard<K, V>]>,
    /// Picks the shard; each shard's map hashes again with its own keys, which costs a few
    /// nanoseconds and keeps the shard choice independent of the map's bucket choice.
    hasher: RandomState,
}

impl<K: Hash + Eq, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        ShardedMap {
            shards: (0..SHARDS)
                .map(|_| Shard(RwLock::new(HashMap::new())))
                .collect(),
            hasher: RandomState::new(),
        }
    }
}

impl<K: Hash + Eq, V> ShardedMap<K, V> {
    fn shard(&self, key: &K) -> &RwLock<HashMap<K, V>> {
        // The high bits: SipHash mixes all of them, and the low ones also pick the bucket.
        let i = (self.hasher.hash_one(key) >> 32) as usize % SHARDS;
        &self.shards[i].0
    }

    /// Calls `f` with the value under `key`, under the shard's read lock.
    pub fn read<R>(&self, key: &K, f: impl FnOnce(&V) -> R) -> Option<R> {
        let shard = self
            .shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(key).map(f)
    }

    /// Calls `f` with the value under `key`, made by `make` if there is none, under the
    /// shard's write lock.
    pub fn update<R>(&self, key: K, make: impl FnOnce() -> V, f: impl FnOnce(&mut V) -> R) -> R {
        let mut shard = self
            .shard(&key)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        f(shard.entry(key).or_insert_with(make))
    }

    /// Puts `value` under `key`, returning what was there.
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        let mut shard = self
            .shard(&key)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        shard.insert(key, value)
    }

    /// Takes the value under `key` out.
    pub fn remove(&self, key: &K) -> Option<V> {
        let mut shard = self
            .shard(key)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        shard.remove(key)
    }

    /// How many entries there are; shards are counted one after the other, so under
    /// concurrent changes this is a moment's estimate.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Whether there are no entries (an estimate under concurrent changes, like [`Self::len`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_spread_over_shards_and_round_trip() {
        let map = ShardedMap::default();
        for i in 0..1000usize {
            assert_eq!(map.insert(i, i * 2), None);
        }
        assert_eq!(map.len(), 1000);
        let used = map
            .shards
            .iter()
            .filter(|s| !s.0.read().expect("lock").is_empty())
            .count();
        assert!(used > SHARDS / 2, "1000 keys used only {used} shards");
        assert_eq!(map.read(&7, |v| *v), Some(14));
        assert_eq!(map.update(7, || 0, |v| std::mem::replace(v, 1)), 14);
        assert_eq!(map.update(2000, || 5, |v| *v), 5);
        assert_eq!(map.remove(&7), Some(1));
        assert_eq!(map.read(&7, |v| *v), None);
        assert_eq!(map.len(), 1000);
    }
}
