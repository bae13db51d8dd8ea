//! Conversation reuse: which upstream Lingma session already holds a conversation's history.
//!
//! OpenAI clients resend the whole conversation every turn; Lingma keeps history in a session
//! (protocol §5.3). After the gateway answers messages `M` with answer `A` on instance `I` in
//! upstream session `S`, it [`insert`](SessionCache::insert)s `M + assistant(A)` → `(I, S)`. When
//! the next request arrives with `M' = M + assistant(A) + new turn(s)`,
//! [`take`](SessionCache::take) finds that entry and the gateway sends only the new turn(s) to `S`
//! on `I`.
//!
//! * Entries are keyed by SHA-256 over an unambiguous, length-prefixed encoding of the scope and
//!   each message: its role, its text (an assistant's trimmed: clients drop the whitespace around
//!   the text before a call), its tool calls (id, name, and the arguments as canonical JSON with
//!   sorted keys: clients echo calls as parsed objects or re-serialised strings, never the bytes
//!   the model wrote) and a tool result's call id and error flag, then the number of messages.
//!   Only digests are stored, never conversation text.
//! * The digest runs message by message ([`ConversationDigest`]): a request's history is hashed
//!   once. [`lookup`](SessionCache::lookup) hashes up to the candidate prefix, looks it up, goes on
//!   over the new messages and hands the state to the turn, which adds its answer and
//!   [`insert_digest`](SessionCache::insert_digest)s it; the turn keeps no copy of the
//!   conversation.
//! * `scope` separates what must not share a session: the engine makes it from the client's
//!   identity (different API keys never share one) and a digest of the offered tools (a session
//!   whose instructions named other tools is not continued).
//! * A hit is **consumed** (removed). The gateway re-inserts the extended conversation only after a
//!   successful turn, so a failed or cancelled turn leaves nothing behind and a retry replays the
//!   whole conversation in a fresh session.
//! * Bounded: LRU eviction beyond `max_entries` (0 disables the cache), TTL from insertion
//!   (expired entries are dropped lazily on access and by [`purge_expired`](SessionCache::purge_expired)).
//! * [`invalidate_instance`](SessionCache::invalidate_instance) drops a restarted instance's
//!   entries; entries also carry the instance epoch for the caller to compare on a hit.
//! * Thread-safe behind a `std::sync::Mutex` that is held only for map operations, never across an
//!   `.await`; hashing happens outside the lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{Message, Role, ToolCall};

type Key = [u8; 32];

/// Where a conversation's history lives upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry {
    pub instance: String,
    pub session_id: String,
    /// The instance's restart counter when the session was created; a different current epoch
    /// means the session is gone.
    pub instance_epoch: u64,
}

/// A cache hit: the session holding `messages[..k]`, and the messages after it to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit<'m> {
    pub entry: SessionEntry,
    pub new_messages: &'m [Message],
}

/// Counters since creation, plus the current size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    /// Lookups of a continuation (a request with assistant history) that found nothing usable.
    /// First turns (no assistant message yet) are not lookups and are not counted.
    pub misses: u64,
    /// Entries dropped to stay within `max_entries` (least recently inserted first).
    pub evictions: u64,
    /// Entries dropped because their TTL passed.
    pub expirations: u64,
    /// Entries dropped by [`SessionCache::invalidate_instance`].
    pub invalidations: u64,
    pub entries: usize,
}

#[derive(Debug)]
struct Slot {
    entry: SessionEntry,
    inserted: Instant,
    tick: u64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Key, Slot>,
    /// Insertion tick -> key, oldest first. Ticks grow with time, and a TTL counts from
    /// insertion, so expired entries are always at the front.
    order: BTreeMap<u64, Key>,
    next_tick: u64,
    stats: CacheStats,
}

impl Inner {
    fn remove(&mut self, key: &Key) -> Option<Slot> {
        let slot = self.map.remove(key)?;
        self.order.remove(&slot.tick);
        Some(slot)
    }

    fn purge_expired(&mut self, now: Instant, ttl: Duration) -> usize {
        let mut purged = 0;
        while let Some((&tick, &key)) = self.order.first_key_value() {
            let expired = self
                .map
                .get(&key)
                .is_none_or(|slot| now.saturating_duration_since(slot.inserted) >= ttl);
            if !expired {
                break;
            }
            self.order.remove(&tick);
            self.map.remove(&key);
            purged += 1;
        }
        self.stats.expirations += purged as u64;
        purged
    }
}

#[derive(Debug)]
pub struct SessionCache {
    inner: Mutex<Inner>,
    max_entries: usize,
    ttl: Duration,
}

impl SessionCache {
    /// `max_entries == 0` disables the cache (inserts are dropped, every lookup misses).
    pub fn new(max_entries: usize, ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max_entries,
            ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that matters
        // (worst case an orphan order entry, which purging skips), so keep serving.
        crate::util::lock(&self.inner)
    }

    /// Records that `conversation` (the request's messages plus the assistant's answer) lives in
    /// `entry`'s session. Returns false (and stores nothing) when the cache is disabled or the
    /// conversation does not end with an assistant message (no later request could match it).
    pub fn insert(&self, scope: &str, conversation: &[Message], entry: SessionEntry) -> bool {
        self.insert_at(scope, conversation, entry, Instant::now())
    }

    fn insert_at(
        &self,
        scope: &str,
        conversation: &[Message],
        entry: SessionEntry,
        now: Instant,
    ) -> bool {
        let mut digest = ConversationDigest::new(scope);
        digest.extend(conversation);
        self.insert_digest_at(digest, entry, now)
    }

    /// Records that the conversation `digest` covers (a request's messages, then the answer:
    /// [`ConversationDigest::push_answer`]) lives in `entry`'s session; as [`insert`](Self::insert).
    pub fn insert_digest(&self, digest: ConversationDigest, entry: SessionEntry) -> bool {
        self.insert_digest_at(digest, entry, Instant::now())
    }

    fn insert_digest_at(
        &self,
        digest: ConversationDigest,
        entry: SessionEntry,
        now: Instant,
    ) -> bool {
        if self.max_entries == 0 || digest.last != Some(Role::Assistant) {
            return false;
        }
        let key = digest.key();
        let mut inner = self.lock();
        inner.remove(&key);
        inner.purge_expired(now, self.ttl);
        let tick = inner.next_tick;
        inner.next_tick += 1;
        inner.order.insert(tick, key);
        inner.map.insert(
            key,
            Slot {
                entry,
                inserted: now,
                tick,
            },
        );
        while inner.map.len() > self.max_entries {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if inner.map.remove(&oldest).is_some() {
                inner.stats.evictions += 1;
            }
        }
        true
    }

    /// Looks up the session holding all of `messages` up to its last assistant message, when
    /// that message is followed by one or more non-assistant messages, and consumes the entry.
    pub fn take<'m>(&self, scope: &str, messages: &'m [Message]) -> Option<Hit<'m>> {
        self.lookup(scope, messages).0
    }

    /// [`take`](Self::take), and the digest of all of `messages` (each hashed once), for the turn
    /// to extend with its answer and [`insert_digest`](Self::insert_digest); no digest when the
    /// cache is disabled (nothing would be stored).
    pub fn lookup<'m>(
        &self,
        scope: &str,
        messages: &'m [Message],
    ) -> (Option<Hit<'m>>, Option<ConversationDigest>) {
        self.lookup_at(scope, messages, Instant::now())
    }

    fn lookup_at<'m>(
        &self,
        scope: &str,
        messages: &'m [Message],
        now: Instant,
    ) -> (Option<Hit<'m>>, Option<ConversationDigest>) {
        // The cached prefix must end with an assistant message and the rest must not contain
        // one, so the only candidate prefix ends at the last assistant message.
        let candidate = messages
            .iter()
            .rposition(|m| m.role == Role::Assistant)
            .map(|last| last + 1)
            .filter(|&k| k < messages.len());
        if self.max_entries == 0 {
            if candidate.is_some() {
                self.lock().stats.misses += 1;
            }
            return (None, None);
        }
        let k = candidate.unwrap_or(messages.len());
        let mut digest = ConversationDigest::new(scope);
        digest.extend(&messages[..k]);
        let hit = candidate.and_then(|k| self.take_key(&digest.key(), &messages[k..], now));
        digest.extend(&messages[k..]);
        (hit, Some(digest))
    }

    fn take_key<'m>(&self, key: &Key, rest: &'m [Message], now: Instant) -> Option<Hit<'m>> {
        let mut inner = self.lock();
        let found = match inner.remove(key) {
            Some(slot) if now.saturating_duration_since(slot.inserted) >= self.ttl => {
                inner.stats.expirations += 1;
                None
            }
            other => other,
        };
        match found {
            Some(slot) => {
                inner.stats.hits += 1;
                Some(Hit {
                    entry: slot.entry,
                    new_messages: rest,
                })
            }
            None => {
                inner.stats.misses += 1;
                None
            }
        }
    }

    /// Drops every expired entry; returns how many.
    pub fn purge_expired(&self) -> usize {
        self.lock().purge_expired(Instant::now(), self.ttl)
    }

    /// Drops every entry of `instance` (after it restarted its sessions are gone); returns how
    /// many.
    pub fn invalidate_instance(&self, instance: &str) -> usize {
        let mut inner = self.lock();
        let stale: Vec<(Key, u64)> = inner
            .map
            .iter()
            .filter(|(_, slot)| slot.entry.instance == instance)
            .map(|(key, slot)| (*key, slot.tick))
            .collect();
        for (key, tick) in &stale {
            inner.map.remove(key);
            inner.order.remove(tick);
        }
        inner.stats.invalidations += stale.len() as u64;
        stale.len()
    }

    /// Drops everything (e.g. when session reuse is switched off at runtime).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.map.clear();
        inner.order.clear();
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn hits(&self) -> u64 {
        self.lock().stats.hits
    }

    pub fn misses(&self) -> u64 {
        self.lock().stats.misses
    }

    /// LRU evictions (capacity); see [`CacheStats`] for expirations and invalidations.
    pub fn evictions(&self) -> u64 {
        self.lock().stats.evictions
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            entries: inner.map.len(),
            ..inner.stats
        }
    }

    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

fn role_tag(role: Role) -> u8 {
    match role {
        Role::System => 1,
        Role::User => 2,
        Role::Assistant => 3,
        Role::Tool => 4,
    }
}

fn put_bytes(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// The running cache key of a conversation: SHA-256 over an unambiguous encoding of the scope and
/// the messages pushed so far (the scope and every variable-length field of a message are
/// length-prefixed and every message starts with fixed-size tags, so each message delimits
/// itself and two different (scope, conversation) pairs never encode to the same bytes; the
/// message count ends the key). Cloning it forks the hash state, so a prefix's key costs no
/// second pass.
#[derive(Clone)]
pub struct ConversationDigest {
    hasher: Sha256,
    messages: u64,
    last: Option<Role>,
}

impl std::fmt::Debug for ConversationDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConversationDigest")
            .field("messages", &self.messages)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl ConversationDigest {
    pub fn new(scope: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"lingma-gw/session-cache/v3\0");
        put_bytes(&mut hasher, scope.as_bytes());
        Self {
            hasher,
            messages: 0,
            last: None,
        }
    }

    pub fn push(&mut self, m: &Message) {
        self.put(
            m.role,
            m.tool_call_id.as_deref(),
            m.is_error,
            &m.content,
            &m.tool_calls,
        );
    }

    pub fn extend(&mut self, messages: &[Message]) {
        messages.iter().for_each(|m| self.push(m));
    }

    /// The assistant's answer as the next message (what [`push`](Self::push) of the message the
    /// client will send back hashes to), without building that message.
    pub fn push_answer(&mut self, text: &str, calls: &[ToolCall]) {
        self.put(Role::Assistant, None, false, text, calls);
    }

    fn put(
        &mut self,
        role: Role,
        tool_call_id: Option<&str>,
        is_error: bool,
        text: &str,
        calls: &[ToolCall],
    ) {
        let h = &mut self.hasher;
        h.update([role_tag(role)]);
        match tool_call_id {
            None => h.update([0]),
            Some(id) => {
                h.update([1]);
                put_bytes(h, id.as_bytes());
            }
        }
        h.update([u8::from(is_error)]);
        let text = match role {
            Role::Assistant => text.trim(),
            _ => text,
        };
        put_bytes(h, text.as_bytes());
        h.update((calls.len() as u64).to_le_bytes());
        for c in calls {
            put_bytes(h, c.id.as_bytes());
            put_bytes(h, c.name.as_bytes());
            put_bytes(h, canonical_json(&c.input).as_bytes());
        }
        self.messages += 1;
        self.last = Some(role);
    }

    fn key(&self) -> Key {
        let mut h = self.hasher.clone();
        h.update(self.messages.to_le_bytes());
        h.finalize().into()
    }
}

/// JSON with object keys sorted at every level: the same value, however a client ordered or
/// spaced it, gives the same text.
pub fn canonical_json(v: &serde_json::Value) -> String {
    use serde_json::Value;
    // Into bytes, keys and leaves by serde_json's own writer: no string per key or leaf.
    fn write(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Object(m) => {
                let mut entries: Vec<(&String, &Value)> = m.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                out.push(b'{');
                for (i, (k, v)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    leaf(k, out);
                    out.push(b':');
                    write(v, out);
                }
                out.push(b'}');
            }
            Value::Array(a) => {
                out.push(b'[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(x, out);
                }
                out.push(b']');
            }
            other => leaf(other, out),
        }
    }
    fn leaf<T: serde::Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) {
        // Writing a string, number, bool or null into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, v);
    }
    let mut out = Vec::new();
    write(v, &mut out);
    // serde_json writes UTF-8 and so does everything above.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(600);

    fn u(t: &str) -> Message {
        Message::new(Role::User, t)
    }
    fn a(t: &str) -> Message {
        Message::new(Role::Assistant, t)
    }
    fn s(t: &str) -> Message {
        Message::new(Role::System, t)
    }
    fn entry(session: &str) -> SessionEntry {
        SessionEntry {
            instance: "inst-0".into(),
            session_id: session.into(),
            instance_epoch: 1,
        }
    }
    fn with(mut v: Vec<Message>, more: &[Message]) -> Vec<Message> {
        v.extend_from_slice(more);
        v
    }

    const SCOPE: &str = "abc123\nqwen";

    fn key(scope: &str, messages: &[Message]) -> Key {
        let mut d = ConversationDigest::new(scope);
        d.extend(messages);
        d.key()
    }

    #[test]
    fn hit_on_exact_history_returns_new_turn_and_is_consumed() {
        let c = SessionCache::new(10, TTL);
        let turn1 = vec![s("be terse"), u("2+2?"), a("4")];
        assert!(c.insert(SCOPE, &turn1, entry("S1")));
        let next = with(turn1.clone(), &[u("and 3+3?")]);
        let hit = c.take(SCOPE, &next).expect("hit");
        assert_eq!(hit.entry, entry("S1"));
        assert_eq!(hit.new_messages, &[u("and 3+3?")]);
        // Consumed: the same request again misses.
        assert!(c.take(SCOPE, &next).is_none());
        let st = c.stats();
        assert_eq!((st.hits, st.misses, st.entries), (1, 1, 0));
    }

    #[test]
    fn multi_message_suffix_is_allowed() {
        let c = SessionCache::new(10, TTL);
        let history = vec![u("q"), a("calling tool")];
        c.insert(SCOPE, &history, entry("S"));
        let tool = Message::tool_result("call_1", "42");
        let next = with(history, &[tool.clone(), u("go on")]);
        let hit = c.take(SCOPE, &next).unwrap();
        assert_eq!(hit.new_messages, &[tool, u("go on")]);
    }

    #[test]
    fn conversation_continues_over_several_turns() {
        let c = SessionCache::new(10, TTL);
        let mut conv = vec![u("one")];
        conv.push(a("1"));
        c.insert(SCOPE, &conv, entry("S"));
        conv.push(u("two"));
        let e = c.take(SCOPE, &conv).unwrap().entry;
        conv.push(a("2"));
        c.insert(SCOPE, &conv, e);
        conv.push(u("three"));
        let hit = c.take(SCOPE, &conv).unwrap();
        assert_eq!(hit.entry.session_id, "S");
        assert_eq!(hit.new_messages, &[u("three")]);
        assert_eq!(c.hits(), 2);
    }

    #[test]
    fn misses_on_edited_history_other_scope_or_answer() {
        let c = SessionCache::new(10, TTL);
        c.insert(SCOPE, &[u("hi"), a("hello")], entry("S"));
        // Edited user message.
        assert!(c.take(SCOPE, &[u("hi!"), a("hello"), u("x")]).is_none());
        // Edited answer (whitespace around it does not count: clients trim it).
        assert!(c.take(SCOPE, &[u("hi"), a("hello!"), u("x")]).is_none());
        // Different role for the same text.
        assert!(c.take(SCOPE, &[s("hi"), a("hello"), u("x")]).is_none());
        // Another scope (another client, or other tools).
        assert!(
            c.take("other\nqwen", &[u("hi"), a("hello"), u("x")])
                .is_none()
        );
        assert!(
            c.take("abc123\nother", &[u("hi"), a("hello"), u("x")])
                .is_none()
        );
        // Extra history in front.
        assert!(
            c.take(SCOPE, &[s("sys"), u("hi"), a("hello"), u("x")])
                .is_none()
        );
        assert_eq!(c.misses(), 6);
        // The original still hits.
        assert!(c.take(SCOPE, &[u("hi"), a("hello"), u("x")]).is_some());
    }

    #[test]
    fn tool_call_id_is_part_of_the_key() {
        let c = SessionCache::new(10, TTL);
        let tool = |id: Option<&str>| Message {
            role: Role::Tool,
            content: "r".into(),
            tool_call_id: id.map(str::to_owned),
            ..Message::default()
        };
        c.insert(SCOPE, &[tool(Some("c1")), a("ok")], entry("S"));
        assert!(c.take(SCOPE, &[tool(None), a("ok"), u("x")]).is_none());
        assert!(
            c.take(SCOPE, &[tool(Some("c2")), a("ok"), u("x")])
                .is_none()
        );
        assert!(
            c.take(SCOPE, &[tool(Some("c1")), a("ok"), u("x")])
                .is_some()
        );
    }

    #[test]
    fn tool_calls_match_by_id_name_and_parsed_arguments() {
        use crate::turn::ToolCall;
        let c = SessionCache::new(10, TTL);
        let with_call = |text: &str, args: serde_json::Value| {
            let mut m = a(text);
            m.tool_calls.push(ToolCall {
                id: "call_1".into(),
                name: "write".into(),
                input: args,
            });
            m
        };
        let stored = [
            u("go"),
            with_call("Writing.\n", serde_json::json!({"path": "a", "n": 1})),
        ];
        c.insert(SCOPE, &stored, entry("S"));
        let result = Message::tool_result("call_1", "ok");
        // Echoed with other key order, no trailing newline: the same turn.
        let echoed: serde_json::Value = serde_json::from_str(r#"{"n":1,"path":"a"}"#).unwrap();
        let next = [u("go"), with_call("Writing.", echoed), result.clone()];
        let hit = c.take(SCOPE, &next).expect("hit");
        assert_eq!(hit.new_messages, std::slice::from_ref(&result));
        // Other arguments: another turn.
        c.insert(SCOPE, &stored, entry("S"));
        let other = [
            u("go"),
            with_call("Writing.", serde_json::json!({"path": "b", "n": 1})),
            result,
        ];
        assert!(c.take(SCOPE, &other).is_none());
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b":{"y":1,"x":[{"q":1,"p":2}]},"a":"s"}"#).unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":"s","b":{"x":[{"p":2,"q":1}],"y":1}}"#
        );
    }

    /// The straightforward form (a string per key and leaf), as the oracle of the one in use.
    fn canonical_json_reference(v: &serde_json::Value) -> String {
        use serde_json::Value;
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let items: Vec<String> = keys
                    .into_iter()
                    .map(|k| {
                        format!(
                            "{}:{}",
                            Value::String(k.clone()),
                            canonical_json_reference(&m[k])
                        )
                    })
                    .collect();
                format!("{{{}}}", items.join(","))
            }
            Value::Array(a) => {
                let items: Vec<String> = a.iter().map(canonical_json_reference).collect();
                format!("[{}]", items.join(","))
            }
            other => other.to_string(),
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z\"\\\n\u{1}é😀]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 32, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
                proptest::collection::vec(("[a-z\"\\\u{1}é]{0,4}", inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn canonical_json_is_the_reference_form(v in json_value()) {
            let got = canonical_json(&v);
            proptest::prop_assert_eq!(&got, &canonical_json_reference(&v));
            // The same value (read back the way the plain text reads: serde_json parses floats
            // to the nearest value, not always to the one it printed).
            let back: serde_json::Value = serde_json::from_str(&got).unwrap();
            let plain: serde_json::Value = serde_json::from_str(&v.to_string()).unwrap();
            proptest::prop_assert_eq!(back, plain);
        }
    }

    #[test]
    fn first_turns_and_assistant_endings_are_not_lookups() {
        let c = SessionCache::new(10, TTL);
        c.insert(SCOPE, &[u("hi"), a("hello")], entry("S"));
        assert!(c.take(SCOPE, &[u("hi")]).is_none());
        assert!(c.take(SCOPE, &[u("hi"), a("hello")]).is_none());
        assert!(c.take(SCOPE, &[]).is_none());
        assert_eq!(c.misses(), 0);
        assert_eq!(c.len(), 1, "not consumed by a non-matching lookup");
    }

    #[test]
    fn insert_requires_an_assistant_ending() {
        let c = SessionCache::new(10, TTL);
        assert!(!c.insert(SCOPE, &[u("hi")], entry("S")));
        assert!(!c.insert(SCOPE, &[], entry("S")));
        assert!(c.is_empty());
    }

    #[test]
    fn keys_are_unambiguous() {
        let split1 = [u("ab"), a("c")];
        let split2 = [u("a"), a("bc")];
        assert_ne!(key(SCOPE, &split1), key(SCOPE, &split2));
        let joined = [u("ab"), u("c")];
        let joined2 = [u("a"), u("bc")];
        assert_ne!(key(SCOPE, &joined), key(SCOPE, &joined2));
        // Scope and content boundaries cannot be traded.
        assert_ne!(key("ab", &[u("c")]), key("a", &[u("bc")]));
        assert_ne!(key("", &[u(""), u("")]), key("", &[u("")]));
        // Same input, same key.
        assert_eq!(key(SCOPE, &split1), key(SCOPE, &[u("ab"), a("c")]));

        let c = SessionCache::new(10, TTL);
        c.insert(SCOPE, &[u("ab"), a("c")], entry("S"));
        assert!(c.take(SCOPE, &[u("a"), a("bc"), u("x")]).is_none());
        assert!(c.take(SCOPE, &[u("ab"), a("c"), u("x")]).is_some());
    }

    #[test]
    fn a_lookups_digest_extended_with_the_answer_is_what_the_next_request_finds() {
        let c = SessionCache::new(10, TTL);
        let call = ToolCall {
            id: "call_1".into(),
            name: "read".into(),
            input: serde_json::json!({"b": 1, "a": [true, null]}),
        };
        // First turn: no lookup candidate, the digest still covers the whole request.
        let first = vec![s("sys"), u("read it")];
        let (hit, d) = c.lookup(SCOPE, &first);
        assert!(hit.is_none());
        let mut d = d.expect("a digest while the cache is on");
        d.push_answer("  Reading.\n", std::slice::from_ref(&call));
        assert!(c.insert_digest(d, entry("S")));
        // The client sends the answer back as a message (trimmed, keys reordered) and a result.
        let mut echoed = Message::new(Role::Assistant, "Reading.");
        echoed.tool_calls = vec![ToolCall {
            input: serde_json::json!({"a": [true, null], "b": 1}),
            ..call.clone()
        }];
        let second = with(
            first.clone(),
            &[echoed.clone(), Message::tool_result("call_1", "42")],
        );
        let (hit, d) = c.lookup(SCOPE, &second);
        assert_eq!(hit.expect("hit").entry, entry("S"));
        let mut d = d.expect("a digest while the cache is on");
        // The digest went on over the new messages: the answer to them makes the next key.
        d.push_answer("It says 42.", &[]);
        assert!(c.insert_digest(d, entry("S")));
        let third = with(second.clone(), &[a("It says 42."), u("thanks")]);
        assert_eq!(
            c.take(SCOPE, &third).expect("hit").new_messages,
            &[u("thanks")]
        );
        // Forking the running hash gives the key of hashing the conversation from the start.
        let (_, d) = c.lookup(SCOPE, &third);
        assert_eq!(d.expect("digest").key(), key(SCOPE, &third));
        // A digest that does not end with an answer is not stored.
        let (_, d) = c.lookup(SCOPE, &[u("q")]);
        assert!(!c.insert_digest(d.expect("digest"), entry("S")));
    }

    #[test]
    fn expired_entries_miss_and_are_purged() {
        let c = SessionCache::new(10, Duration::from_secs(60));
        let t0 = Instant::now();
        c.insert_at(SCOPE, &[u("old"), a("1")], entry("old"), t0);
        c.insert_at(
            SCOPE,
            &[u("new"), a("2")],
            entry("new"),
            t0 + Duration::from_secs(30),
        );
        let later = t0 + Duration::from_secs(61);
        assert!(
            c.lookup_at(SCOPE, &[u("old"), a("1"), u("x")], later)
                .0
                .is_none()
        );
        let st = c.stats();
        assert_eq!((st.expirations, st.misses, st.entries), (1, 1, 1));
        // The newer one is still valid at t0+61 (inserted at t0+30).
        assert!(
            c.lookup_at(SCOPE, &[u("new"), a("2"), u("x")], later)
                .0
                .is_some()
        );

        c.insert_at(SCOPE, &[u("p"), a("1")], entry("p"), t0);
        c.insert_at(
            SCOPE,
            &[u("q"), a("1")],
            entry("q"),
            t0 + Duration::from_secs(50),
        );
        assert_eq!(c.lock().purge_expired(later, c.ttl()), 1);
        assert_eq!(c.len(), 1);
        assert_eq!(c.stats().expirations, 2);
        // Public purge with a real clock: nothing has expired yet.
        let fresh = SessionCache::new(10, TTL);
        fresh.insert(SCOPE, &[u("p"), a("1")], entry("p"));
        assert_eq!(fresh.purge_expired(), 0);
        // A zero TTL expires everything.
        let zero = SessionCache::new(10, Duration::ZERO);
        zero.insert(SCOPE, &[u("p"), a("1")], entry("p"));
        assert!(zero.take(SCOPE, &[u("p"), a("1"), u("x")]).is_none());
    }

    #[test]
    fn lru_evicts_the_oldest_insert() {
        let c = SessionCache::new(2, TTL);
        c.insert(SCOPE, &[u("1"), a("1")], entry("1"));
        c.insert(SCOPE, &[u("2"), a("2")], entry("2"));
        // Re-inserting 1 makes it the most recent.
        c.insert(SCOPE, &[u("1"), a("1")], entry("1b"));
        assert_eq!(c.len(), 2);
        c.insert(SCOPE, &[u("3"), a("3")], entry("3"));
        assert_eq!(c.len(), 2);
        assert_eq!(c.evictions(), 1);
        assert!(
            c.take(SCOPE, &[u("2"), a("2"), u("x")]).is_none(),
            "2 was evicted"
        );
        assert_eq!(
            c.take(SCOPE, &[u("1"), a("1"), u("x")]).unwrap().entry,
            entry("1b")
        );
        assert!(c.take(SCOPE, &[u("3"), a("3"), u("x")]).is_some());
    }

    #[test]
    fn disabled_cache_stores_nothing() {
        let c = SessionCache::new(0, TTL);
        assert!(!c.insert(SCOPE, &[u("1"), a("1")], entry("1")));
        assert!(c.take(SCOPE, &[u("1"), a("1"), u("x")]).is_none());
        assert_eq!(c.len(), 0);
        // Nothing to hash for: a lookup gives no digest, and a continuation still counts a miss.
        assert!(matches!(
            c.lookup(SCOPE, &[u("1"), a("1"), u("x")]),
            (None, None)
        ));
        assert!(matches!(c.lookup(SCOPE, &[u("first")]), (None, None)));
        assert_eq!(c.misses(), 2);
    }

    #[test]
    fn the_key_encoding_is_pinned() {
        // A change of the encoding must be deliberate (a new version tag in the header): this is
        // SHA-256 of the v3 bytes of a fixed conversation with a tool call and a tool result,
        // computed apart from this code (hashlib over the bytes the encoding describes).
        let mut call_msg = Message::new(Role::Assistant, " Reading. ");
        call_msg.tool_calls = vec![ToolCall {
            id: "call_1".into(),
            name: "read".into(),
            input: serde_json::json!({"path": "a.txt", "n": 1}),
        }];
        let conversation = [
            s("sys"),
            u("read a.txt"),
            call_msg,
            Message::tool_result("call_1", "hello"),
        ];
        assert_eq!(
            hex::encode(key("scope\ntools", &conversation)),
            "f677c2b7c32db3e35bb8db9a8fee998200b36b571482c8894d25795918d370d4"
        );
    }

    #[test]
    fn invalidate_instance_drops_only_its_entries() {
        let c = SessionCache::new(10, TTL);
        let on = |inst: &str, sid: &str| SessionEntry {
            instance: inst.into(),
            session_id: sid.into(),
            instance_epoch: 0,
        };
        c.insert(SCOPE, &[u("1"), a("1")], on("inst-0", "a"));
        c.insert(SCOPE, &[u("2"), a("2")], on("inst-1", "b"));
        c.insert(SCOPE, &[u("3"), a("3")], on("inst-0", "c"));
        assert_eq!(c.invalidate_instance("inst-0"), 2);
        assert_eq!(c.len(), 1);
        assert_eq!(c.stats().invalidations, 2);
        assert!(c.take(SCOPE, &[u("1"), a("1"), u("x")]).is_none());
        assert!(c.take(SCOPE, &[u("2"), a("2"), u("x")]).is_some());
        // Order bookkeeping stayed consistent: filling up evicts correctly.
        let small = SessionCache::new(1, TTL);
        small.insert(SCOPE, &[u("1"), a("1")], on("inst-0", "a"));
        small.invalidate_instance("inst-0");
        small.insert(SCOPE, &[u("2"), a("2")], on("inst-1", "b"));
        assert_eq!(small.evictions(), 0);
        assert_eq!(small.len(), 1);
    }

    #[test]
    fn clear_empties() {
        let c = SessionCache::new(10, TTL);
        c.insert(SCOPE, &[u("1"), a("1")], entry("1"));
        c.clear();
        assert!(c.is_empty());
        assert!(c.take(SCOPE, &[u("1"), a("1"), u("x")]).is_none());
    }

    #[test]
    fn concurrent_use_is_consistent() {
        let c = std::sync::Arc::new(SessionCache::new(1000, TTL));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let conv = [u(&format!("{t}-{i}")), a("ok")];
                        c.insert(SCOPE, &conv, entry("S"));
                        let next = [conv[0].clone(), conv[1].clone(), u("x")];
                        assert!(c.take(SCOPE, &next).is_some());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.hits(), 800);
        assert!(c.is_empty());
    }
}
