//! Stored responses, for `previous_response_id`, `GET /v1/responses/{id}` and `DELETE`: bounded in
//! entries (the oldest goes first) and in age. Each entry keeps the response object as it was
//! returned and the conversation it ends (its input and its output, as neutral messages), so a
//! continuation is that conversation plus the new input, which the turn engine's reuse check then
//! maps onto the same Lingma session.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::turn::Message;
use crate::util::lock;

struct Entry {
    response: Value,
    conversation: Vec<Message>,
    stored: Instant,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Entry>,
    /// Ids in insertion order (oldest first); may hold ids already deleted.
    order: VecDeque<String>,
}

pub struct ResponseStore {
    inner: Mutex<Inner>,
    max_entries: usize,
    ttl: Duration,
}

impl ResponseStore {
    /// `max_entries == 0` stores nothing.
    pub fn new(max_entries: usize, ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max_entries,
            ttl,
        }
    }

    pub fn insert(&self, id: &str, response: Value, conversation: Vec<Message>) {
        if self.max_entries == 0 {
            return;
        }
        let mut inner = lock(&self.inner);
        let now = Instant::now();
        inner.order.push_back(id.to_string());
        inner.map.insert(
            id.to_string(),
            Entry {
                response,
                conversation,
                stored: now,
            },
        );
        while inner.map.len() > self.max_entries {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.map.remove(&oldest);
        }
        // Keep the order queue from growing with deleted ids.
        if inner.order.len() > 2 * self.max_entries.max(16) {
            let Inner { map, order } = &mut *inner;
            order.retain(|id| map.contains_key(id));
        }
    }

    /// The stored response and its conversation, unless unknown or expired.
    pub fn get(&self, id: &str) -> Option<(Value, Vec<Message>)> {
        let mut inner = lock(&self.inner);
        let expired = inner
            .map
            .get(id)
            .is_some_and(|e| e.stored.elapsed() >= self.ttl);
        if expired {
            inner.map.remove(id);
            return None;
        }
        inner
            .map
            .get(id)
            .map(|e| (e.response.clone(), e.conversation.clone()))
    }

    /// Whether there was such a response.
    pub fn delete(&self, id: &str) -> bool {
        lock(&self.inner).map.remove(id).is_some()
    }

    pub fn len(&self) -> usize {
        lock(&self.inner).map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::Role;
    use serde_json::json;

    #[test]
    fn bounded_by_entries_and_age_and_deletable() {
        let s = ResponseStore::new(2, Duration::from_secs(60));
        for i in 0..3 {
            s.insert(
                &format!("r{i}"),
                json!({"id": i}),
                vec![Message::new(Role::User, "x")],
            );
        }
        assert_eq!(s.len(), 2);
        assert!(s.get("r0").is_none(), "the oldest went first");
        assert_eq!(s.get("r2").unwrap().0, json!({"id": 2}));
        assert!(s.delete("r2"));
        assert!(!s.delete("r2"));
        assert!(s.get("r2").is_none());
        let expired = ResponseStore::new(2, Duration::ZERO);
        expired.insert("a", json!({}), Vec::new());
        assert!(expired.get("a").is_none());
        let off = ResponseStore::new(0, Duration::from_secs(60));
        off.insert("a", json!({}), Vec::new());
        assert!(off.is_empty());
    }
}
