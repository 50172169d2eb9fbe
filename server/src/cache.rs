//! A bounded least-recently-used cache, by entry count and by total weight (bytes).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Entries by key, least recently used evicted first when a limit is reached.
#[derive(Debug)]
pub struct BoundedCache<V> {
    inner: Mutex<Inner<V>>,
    max_entries: usize,
    max_weight: usize,
}

#[derive(Debug)]
struct Inner<V> {
    map: HashMap<String, (Arc<V>, usize)>,
    order: VecDeque<String>,
    weight: usize,
}

impl<V> BoundedCache<V> {
    /// An empty cache holding at most `max_entries` entries of total weight `max_weight`.
    pub fn new(max_entries: usize, max_weight: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                weight: 0,
            }),
            max_entries: max_entries.max(1),
            max_weight,
        }
    }

    /// Looks an entry up, marking it recently used.
    pub fn get(&self, key: &str) -> Option<Arc<V>> {
        let mut inner = self.inner.lock().ok()?;
        let value = inner.map.get(key)?.0.clone();
        if let Some(pos) = inner.order.iter().position(|k| k == key) {
            inner.order.remove(pos);
        }
        inner.order.push_back(key.to_string());
        Some(value)
    }

    /// Inserts an entry (or returns the one already there), evicting the least recently used
    /// until the limits hold. Returns the evicted keys too, for logging.
    pub fn insert(&self, key: String, value: V, weight: usize) -> (Arc<V>, Vec<String>) {
        let value = Arc::new(value);
        let Ok(mut inner) = self.inner.lock() else {
            return (value, Vec::new());
        };
        if let Some((existing, _)) = inner.map.get(&key) {
            return (existing.clone(), Vec::new());
        }
        let mut evicted = Vec::new();
        while inner.map.len() >= self.max_entries || inner.weight + weight > self.max_weight {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some((_, w)) = inner.map.remove(&old) {
                inner.weight -= w;
                evicted.push(old);
            }
        }
        inner.weight += weight;
        inner.order.push_back(key.clone());
        inner.map.insert(key, (value.clone(), weight));
        (value, evicted)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.map.len()).unwrap_or(0)
    }

    /// Total weight of the entries.
    pub fn weight(&self) -> usize {
        self.inner.lock().map(|i| i.weight).unwrap_or(0)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_by_count_and_weight() {
        let c = BoundedCache::new(2, 100);
        c.insert("a".into(), 1, 10);
        c.insert("b".into(), 2, 10);
        assert!(c.get("a").is_some()); // b is now the oldest
        let (_, ev) = c.insert("c".into(), 3, 10);
        assert_eq!(ev, vec!["b".to_string()]);
        let (_, ev) = c.insert("d".into(), 4, 95);
        assert_eq!(ev.len(), 2);
        assert_eq!(c.len(), 1);
        assert_eq!(*c.get("d").unwrap(), 4);
    }
}
