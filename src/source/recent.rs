//! The last keys seen, up to a bound: deliveries come at least once (Firehose retries a
//! request, FilterLogEvents pages overlap at their edges), and a repeat follows its first
//! delivery closely, so the newest keys are enough and memory stays bounded whatever the rate.

use std::borrow::Borrow;
use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

#[derive(Debug)]
pub struct Recent<K> {
    capacity: usize,
    order: VecDeque<K>,
    keys: HashSet<K>,
}

impl<K: Hash + Eq + Clone> Recent<K> {
    /// Remembers up to `capacity` keys (at least one).
    pub fn new(capacity: usize) -> Recent<K> {
        Recent {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            keys: HashSet::new(),
        }
    }

    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.keys.contains(key)
    }

    /// False when `key` is among the recent keys; otherwise remembers it, forgetting the
    /// oldest once full.
    pub fn insert(&mut self, key: K) -> bool {
        if self.keys.contains(&key) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.keys.remove(&oldest);
        }
        self.order.push_back(key.clone());
        self.keys.insert(key);
        true
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_caught_and_the_oldest_forgotten() {
        let mut recent = Recent::new(3);
        assert!(recent.insert("a"));
        assert!(!recent.insert("a"));
        for k in ["b", "c", "d"] {
            assert!(recent.insert(k));
        }
        assert_eq!(recent.len(), 3);
        assert!(!recent.contains("a"), "the oldest is forgotten");
        assert!(recent.insert("a"));
        assert!(!recent.insert("d"));
        assert_eq!(recent.order.len(), 3);
    }
}
