//! JSON-RPC 2.0 over one Lingma connection (a WebSocket or a Unix socket, `transport.rs`).
//!
//! Owns the connection: a reader task decodes Content-Length frames, completes pending calls by
//! id, acknowledges every request the server sends (`true` for `chat/answer` and `chat/finish`,
//! `null` otherwise, as the plugin contract expects) and hands server requests and notifications
//! on. When the connection closes, every pending call fails at once with [`RpcError::Closed`] and
//! every channel below ends.
//!
//! Where a server message goes: to the [`Route`] registered under its key, when there is one (the
//! ACP dialect runs several prompts at once on one connection, each routed by its request id,
//! `_meta["ai-coding/request-id"]`, or `requestId`, or its `sessionId`), else to the one
//! connection-wide subscriber (a legacy chat, whose dialect allows one ask per connection, or the
//! pushes watched beside control calls).
//!
//! Every channel is bounded, so a consumer that stops reading (a chat whose HTTP client stopped
//! reading) never makes the gateway buffer an answer without limit. A [`Delivery::Wait`]
//! subscriber (a legacy chat stream) pushes back: the reader waits for room, and Lingma's socket
//! with it. A [`Delivery::Lossy`] subscriber (pushes watched beside control calls, such as
//! `auth/report`) loses what does not fit instead, because its owner may be waiting for a reply
//! that the reader could then never deliver. A [`Delivery::WaitUpTo`] route pushes back too, but
//! when others share the connection (another route, the subscriber, or a call that is not the
//! route's own) only for so long: a consumer that stays behind longer is cut off
//! ([`Route::lagged`]) and the others go on. Alone on its connection it waits like a legacy chat.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::FutureExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use super::frame::{FrameDecoder, FrameError, encode_str};
use super::transport::{self, Endpoint, Incoming, Reader, Writer};
use crate::util::lock;

#[derive(Debug, Error, Clone)]
pub enum RpcError {
    #[error("cannot connect to Lingma at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("the Lingma connection is closed")]
    Closed,
    #[error("Lingma did not answer {method} within {}s", timeout.as_secs_f32())]
    Timeout { method: String, timeout: Duration },
    #[error("Lingma rejected {method}: {message} (code {code})")]
    Remote {
        method: String,
        code: i64,
        message: String,
        data: Option<Box<Value>>,
    },
    #[error("Lingma sent a malformed frame: {0}")]
    Frame(#[from] FrameError),
    #[error("Lingma sent a malformed message: {0}")]
    BadMessage(String),
    /// A route's consumer left its channel full for longer than its [`Delivery::WaitUpTo`] bound.
    #[error(
        "the answer was not read for {}s while other answers shared its connection; it was cut off",
        after.as_secs_f32()
    )]
    Lagged { after: Duration },
}

/// A message the server sent on its own initiative.
#[derive(Debug, Clone)]
pub struct ServerMessage {
    pub method: String,
    /// The params as they came (`null` when absent), valid JSON: their reader parses them, as a
    /// [`Value`] or into a type of its own (most messages of an answer are read by a typed,
    /// borrowing parse, which costs far less than building a `Value`).
    params: Box<RawValue>,
    /// Present when the server sent a request (already acknowledged by the reader).
    pub id: Option<Value>,
}

impl ServerMessage {
    /// The params as a [`Value`].
    pub fn params(&self) -> Value {
        serde_json::from_str(self.params.get()).unwrap_or(Value::Null)
    }

    /// The params parsed as `T`, borrowing from the message where `T` does; `None` when they do
    /// not have that shape.
    pub fn params_as<'a, T: Deserialize<'a>>(&'a self) -> Option<T> {
        serde_json::from_str(self.params.get()).ok()
    }
}

fn null_params() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("null is JSON")
}

/// A call waiting for its result: its method, where the result goes, and the route it belongs to
/// (a prompt's own reply does not count as someone else held up by that prompt's consumer).
struct Waiting {
    method: String,
    tx: oneshot::Sender<Result<Value, RpcError>>,
    owner: Option<u64>,
}

type Pending = HashMap<i64, Waiting>;

/// Server messages a subscriber's channel holds before the policy of its [`Delivery`] applies.
pub const SUBSCRIBER_CAPACITY: usize = 64;

/// What the reader does when a subscriber's channel is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Wait for room (backpressure to Lingma). For consumers that read until they are dropped.
    Wait,
    /// Drop the message. For consumers that also make calls on the same connection.
    Lossy,
    /// Wait for room this long at most, then cut the consumer off. For consumers that share the
    /// connection with others, which must not wait on them for ever.
    WaitUpTo(Duration),
}

#[derive(Clone)]
struct Subscriber {
    tx: mpsc::Sender<ServerMessage>,
    delivery: Delivery,
}

/// One registered route, shared by every key it is registered under.
struct RouteEntry {
    id: u64,
    tx: mpsc::Sender<ServerMessage>,
    delivery: Delivery,
    lagged: Arc<AtomicBool>,
}

struct Shared {
    sink: tokio::sync::Mutex<Writer>,
    pending: Mutex<Pending>,
    subscriber: Mutex<Option<Subscriber>>,
    routes: Mutex<HashMap<String, Arc<RouteEntry>>>,
    closed: AtomicBool,
    next_id: AtomicI64,
    next_route: AtomicU64,
}

/// One JSON-RPC connection. Cheap to clone; the socket closes when the last clone is dropped
/// (or on [`RpcConnection::close`]).
#[derive(Clone)]
pub struct RpcConnection {
    shared: Arc<Shared>,
    _reader: Arc<ReaderGuard>,
    peer_pid: Option<u32>,
}

struct ReaderGuard(tokio::task::JoinHandle<()>);

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RpcConnection {
    /// Opens a connection to `endpoint`. `machine_token` adds the `Cosy-MachineToken` header that
    /// Qoder CN's WebSocket sidecar requires.
    pub async fn connect(
        endpoint: &Endpoint,
        machine_token: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, RpcError> {
        let opened = transport::open(endpoint, machine_token, timeout)
            .await
            .map_err(|reason| RpcError::Connect {
                url: endpoint.to_string(),
                reason,
            })?;
        let (writer, reader) = (opened.writer, opened.reader);
        let shared = Arc::new(Shared {
            sink: tokio::sync::Mutex::new(writer),
            pending: Mutex::new(HashMap::new()),
            subscriber: Mutex::new(None),
            routes: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            next_id: AtomicI64::new(1),
            next_route: AtomicU64::new(1),
        });
        let reader = tokio::spawn(read_loop(reader, Arc::downgrade(&shared)));
        Ok(Self {
            shared,
            _reader: Arc::new(ReaderGuard(reader)),
            peer_pid: opened.peer_pid,
        })
    }

    /// The process at the other end, when the transport tells (a Unix socket does).
    pub fn peer_pid(&self) -> Option<u32> {
        self.peer_pid
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Routes server requests and notifications to a new bounded channel, replacing the previous
    /// subscriber (whose channel then ends). Messages that arrive with no subscriber are logged.
    pub fn subscribe(&self, delivery: Delivery) -> mpsc::Receiver<ServerMessage> {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_CAPACITY);
        if self.is_closed() {
            return rx;
        }
        *lock(&self.shared.subscriber) = Some(Subscriber { tx, delivery });
        rx
    }

    pub fn unsubscribe(&self) {
        lock(&self.shared.subscriber).take();
    }

    /// Routes the server messages that carry any of `keys` (a request id or a session id, see the
    /// module docs) to a new bounded channel, until the [`Route`] is dropped. A key registered
    /// again moves to the newer route.
    pub fn route(&self, keys: &[&str], delivery: Delivery) -> Route {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_CAPACITY);
        let id = self.shared.next_route.fetch_add(1, Ordering::Relaxed);
        let lagged = Arc::new(AtomicBool::new(false));
        let keys: Vec<String> = keys
            .iter()
            .filter(|k| !k.is_empty())
            .map(|k| k.to_string())
            .collect();
        if !self.is_closed() {
            let entry = Arc::new(RouteEntry {
                id,
                tx,
                delivery,
                lagged: lagged.clone(),
            });
            let mut routes = lock(&self.shared.routes);
            for k in &keys {
                routes.insert(k.clone(), entry.clone());
            }
        }
        Route {
            rx,
            id,
            keys,
            lagged,
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Calls `method` and waits for its result.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, RpcError> {
        let mut pending = self.send_call(method, params).await?;
        match tokio::time::timeout(timeout, pending.result()).await {
            Ok(result) => result,
            Err(_) => Err(RpcError::Timeout {
                method: method.to_string(),
                timeout,
            }),
        }
    }

    /// Sends a call and returns at once; its result arrives through [`PendingCall::result`]
    /// whenever Lingma sends it (an ACP runtime answers `session/prompt` late, or never).
    pub async fn send_call(&self, method: &str, params: Value) -> Result<PendingCall, RpcError> {
        self.send_call_owned(method, params, None).await
    }

    /// [`RpcConnection::send_call`] for the consumer of `route` (an ACP prompt's own call).
    pub async fn send_call_for(
        &self,
        route: &Route,
        method: &str,
        params: Value,
    ) -> Result<PendingCall, RpcError> {
        self.send_call_owned(method, params, Some(route.id)).await
    }

    async fn send_call_owned(
        &self,
        method: &str,
        params: Value,
        owner: Option<u64>,
    ) -> Result<PendingCall, RpcError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let waiting = Waiting {
            method: method.to_string(),
            tx,
            owner,
        };
        lock(&self.shared.pending).insert(id, waiting);
        let pending = PendingCall {
            id,
            rx,
            shared: Arc::downgrade(&self.shared),
        };
        // The reader may have closed between the check and the insert; re-check so the call
        // cannot wait for a reply that no one will deliver.
        if self.is_closed() {
            return Err(RpcError::Closed);
        }
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        send(&self.shared, &msg).await?;
        Ok(pending)
    }

    pub async fn close(&self) {
        let mut sink = self.shared.sink.lock().await;
        sink.close().await;
    }
}

/// A call whose result has not been taken yet. Dropping it forgets the call: a result that comes
/// later is logged and dropped.
pub struct PendingCall {
    id: i64,
    rx: oneshot::Receiver<Result<Value, RpcError>>,
    shared: Weak<Shared>,
}

impl PendingCall {
    /// The call's result. Cancel-safe: it can be raced against other events and awaited again.
    pub async fn result(&mut self) -> Result<Value, RpcError> {
        match (&mut self.rx).await {
            Ok(result) => result,
            Err(_) => Err(RpcError::Closed),
        }
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            lock(&shared.pending).remove(&self.id);
        }
    }
}

/// The server messages routed to one consumer (see [`RpcConnection::route`]). Dropping it
/// unregisters its keys.
pub struct Route {
    rx: mpsc::Receiver<ServerMessage>,
    id: u64,
    keys: Vec<String>,
    lagged: Arc<AtomicBool>,
    shared: Weak<Shared>,
}

impl Route {
    /// The next message; `None` when the connection closed or this route was cut off for lagging
    /// (see [`Route::lagged`]). Cancel-safe.
    pub async fn recv(&mut self) -> Option<ServerMessage> {
        self.rx.recv().await
    }

    /// The next message if one is already waiting; `None` when the channel is empty or closed
    /// ([`Route::recv`] tells those apart).
    pub fn try_recv(&mut self) -> Option<ServerMessage> {
        self.rx.try_recv().ok()
    }

    /// Whether the reader cut this route off because its consumer stayed behind too long.
    pub fn lagged(&self) -> bool {
        self.lagged.load(Ordering::Acquire)
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            let mut routes = lock(&shared.routes);
            for k in &self.keys {
                if routes.get(k).is_some_and(|e| e.id == self.id) {
                    routes.remove(k);
                }
            }
        }
    }
}

async fn send(shared: &Shared, msg: &Value) -> Result<(), RpcError> {
    if shared.closed.load(Ordering::Acquire) {
        return Err(RpcError::Closed);
    }
    let frame = encode_str(&msg.to_string());
    let mut sink = shared.sink.lock().await;
    sink.send(frame).await.map_err(|_| RpcError::Closed)
}

/// Writes a message into the connection's buffer without flushing it (see `read_loop`).
async fn feed(shared: &Shared, msg: &Value) -> Result<(), RpcError> {
    if shared.closed.load(Ordering::Acquire) {
        return Err(RpcError::Closed);
    }
    let frame = encode_str(&msg.to_string());
    let mut sink = shared.sink.lock().await;
    sink.feed(frame).await.map_err(|_| RpcError::Closed)
}

async fn flush(shared: &Shared) -> Result<(), RpcError> {
    let mut sink = shared.sink.lock().await;
    sink.flush().await.map_err(|_| RpcError::Closed)
}

/// The reply Lingma's plugin contract gives to a server request.
fn ack_result(method: &str) -> Value {
    match method {
        "chat/answer" | "chat/finish" => Value::Bool(true),
        _ => Value::Null,
    }
}

/// Acks buffered by the reader before it flushes even though more input is waiting.
const MAX_UNFLUSHED_ACKS: usize = 32;

async fn read_loop(mut reader: Reader, shared: Weak<Shared>) {
    let mut decoder = FrameDecoder::default();
    let mut failure = RpcError::Closed;
    // Acks are written to the connection's buffer (not flushed) while further messages are
    // already waiting, and flushed before the reader would wait: a burst of callbacks costs one
    // write, not one per callback, and no ack is ever held while the server waits for it.
    let mut unflushed = 0usize;
    'outer: loop {
        let next = if unflushed == 0 {
            reader.next().await
        } else {
            match reader.next().now_or_never() {
                Some(next) if unflushed < MAX_UNFLUSHED_ACKS => next,
                ready => {
                    let Some(shared) = shared.upgrade() else {
                        return;
                    };
                    if flush(&shared).await.is_err() {
                        break;
                    }
                    unflushed = 0;
                    match ready {
                        Some(next) => next,
                        None => reader.next().await,
                    }
                }
            }
        };
        let data = match next {
            Incoming::Data(d) => d,
            Incoming::Skip => continue,
            Incoming::Closed => break,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        decoder.push(data.as_bytes());
        loop {
            match decoder.next_frame() {
                Ok(Some(body)) => match dispatch(&shared, &body).await {
                    Ok(Dispatched::Done) => {}
                    Ok(Dispatched::Deliver { msg, acked }) => {
                        if acked {
                            unflushed += 1;
                        }
                        if deliver(&shared, msg, &mut unflushed).await.is_err() {
                            break 'outer;
                        }
                    }
                    // The connection closed while we acknowledged a callback: we are going away.
                    Err(RpcError::Closed) => break 'outer,
                    Err(e) => tracing::warn!(error = %e, "ignoring malformed message from Lingma"),
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "Lingma framing error; closing the connection");
                    failure = RpcError::Frame(e);
                    break 'outer;
                }
            }
        }
    }
    if let Some(shared) = shared.upgrade() {
        shared.closed.store(true, Ordering::Release);
        let pending: Vec<_> = lock(&shared.pending).drain().collect();
        for (_, w) in pending {
            let _ = w.tx.send(Err(failure.clone()));
        }
        lock(&shared.subscriber).take();
        lock(&shared.routes).clear();
        let mut sink = shared.sink.lock().await;
        sink.close().await;
    }
}

/// What [`dispatch`] did with a message.
enum Dispatched {
    /// A server message for the subscriber; `acked`: a server request whose ack is in the
    /// socket's buffer, which the reader must flush.
    Deliver {
        msg: ServerMessage,
        acked: bool,
    },
    Done,
}

/// The keys a server message can be routed by, in the order they are tried.
#[derive(Deserialize, Default)]
struct RouteKeys<'a> {
    #[serde(rename = "_meta", borrow, default)]
    meta: Option<MetaKeys<'a>>,
    #[serde(rename = "requestId", borrow, default)]
    request_id: Option<Cow<'a, str>>,
    #[serde(rename = "sessionId", borrow, default)]
    session_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct MetaKeys<'a> {
    #[serde(rename = "ai-coding/request-id", borrow, default)]
    request_id: Option<Cow<'a, str>>,
}

/// The route a server message belongs to: the first of its keys that is registered.
fn route_for(shared: &Shared, msg: &ServerMessage) -> Option<Arc<RouteEntry>> {
    let routes = lock(&shared.routes);
    if routes.is_empty() {
        return None;
    }
    let find = |keys: [Option<&str>; 3]| {
        keys.into_iter()
            .flatten()
            .find_map(|k| routes.get(k).cloned())
    };
    match msg.params_as::<RouteKeys>() {
        Some(k) => find([
            k.meta.as_ref().and_then(|m| m.request_id.as_deref()),
            k.request_id.as_deref(),
            k.session_id.as_deref(),
        ]),
        // A key that is not a string (or params that are not an object): what is a string counts.
        None => {
            let p = msg.params();
            find([
                p.pointer("/_meta/ai-coding~1request-id")
                    .and_then(Value::as_str),
                p.get("requestId").and_then(Value::as_str),
                p.get("sessionId").and_then(Value::as_str),
            ])
        }
    }
}

/// Whether anyone but route `id`'s consumer waits on this connection: another route, the
/// subscriber, or a call that is not that route's own.
fn shares_connection(shared: &Shared, id: u64) -> bool {
    lock(&shared.routes).values().any(|e| e.id != id)
        || lock(&shared.subscriber).is_some()
        || lock(&shared.pending).values().any(|w| w.owner != Some(id))
}

/// Hands a server message to its route, else to the subscriber, under the delivery policy of
/// either. Before waiting for room, the acks already written are flushed, so a strict server is
/// never left waiting for them while the consumer is slow.
async fn deliver(
    shared: &Shared,
    msg: ServerMessage,
    unflushed: &mut usize,
) -> Result<(), RpcError> {
    let (tx, delivery, route) = match route_for(shared, &msg) {
        Some(r) => (r.tx.clone(), r.delivery, Some(r)),
        None => match lock(&shared.subscriber).clone() {
            Some(sub) => (sub.tx, sub.delivery, None),
            None => {
                tracing::debug!(method = %msg.method, "server message with no subscriber");
                return Ok(());
            }
        },
    };
    let msg = match tx.try_send(msg) {
        Ok(()) => return Ok(()),
        Err(mpsc::error::TrySendError::Closed(m)) => {
            tracing::debug!(method = %m.method, "server message for a subscriber that is gone");
            return Ok(());
        }
        Err(mpsc::error::TrySendError::Full(m)) => m,
    };
    if delivery == Delivery::Lossy {
        tracing::debug!(method = %msg.method, "subscriber is full; dropping a server message");
        return Ok(());
    }
    if *unflushed > 0 {
        flush(shared).await?;
        *unflushed = 0;
    }
    match delivery {
        Delivery::WaitUpTo(limit) => {
            let Some(route) = route else {
                let _ = tx.send(msg).await;
                return Ok(());
            };
            loop {
                match tokio::time::timeout(limit, tx.reserve()).await {
                    Ok(Ok(permit)) => {
                        permit.send(msg);
                        break;
                    }
                    // The consumer went away meanwhile: the message has no reader.
                    Ok(Err(_)) => break,
                    // Alone on the connection, a slow consumer holds up only itself: it gets
                    // the same backpressure as a legacy chat.
                    Err(_) if !shares_connection(shared, route.id) => continue,
                    Err(_) => {
                        tracing::warn!(
                            waited_sec = limit.as_secs_f32(),
                            "a consumer sharing this connection stayed behind; cutting it off"
                        );
                        route.lagged.store(true, Ordering::Release);
                        // Its channel ends once no sender is left: this one, and the entries
                        // removed now.
                        lock(&shared.routes).retain(|_, e| e.id != route.id);
                        break;
                    }
                }
            }
        }
        // Fails only when the consumer went away meanwhile: then the message has no reader.
        _ => {
            let _ = tx.send(msg).await;
        }
    }
    Ok(())
}

/// One message as it arrives: the params stay text (see [`ServerMessage`]); a `null` member
/// counts as absent.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(default)]
    id: Option<Value>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

async fn dispatch(shared: &Shared, body: &[u8]) -> Result<Dispatched, RpcError> {
    let msg: Envelope =
        serde_json::from_slice(body).map_err(|e| RpcError::BadMessage(e.to_string()))?;
    let method = msg.method.as_deref();
    let id = msg.id.as_ref();
    match (method, id) {
        (None, Some(id)) => {
            let Some(id) = id.as_i64() else {
                return Err(RpcError::BadMessage(format!(
                    "response with unknown id {id}"
                )));
            };
            let Some(Waiting { method, tx, .. }) = lock(&shared.pending).remove(&id) else {
                tracing::debug!(id, "response for a call nobody waits for (timed out?)");
                return Ok(Dispatched::Done);
            };
            let result = if let Some(err) = &msg.error {
                Err(RpcError::Remote {
                    method,
                    code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                    message: err
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    data: err.get("data").cloned().map(Box::new),
                })
            } else {
                Ok(msg.result.unwrap_or(Value::Null))
            };
            let _ = tx.send(result);
            Ok(Dispatched::Done)
        }
        (Some(method), id) => {
            if let Some(id) = id {
                // Ack first: a strict server stalls its stream until each callback is
                // answered (the reader flushes it before it waits for more input).
                let reply = json!({"jsonrpc": "2.0", "id": id, "result": ack_result(method)});
                feed(shared, &reply).await?;
            }
            Ok(Dispatched::Deliver {
                msg: ServerMessage {
                    method: method.to_string(),
                    params: msg.params.map_or_else(null_params, RawValue::to_owned),
                    id: id.cloned(),
                },
                acked: id.is_some(),
            })
        }
        (None, None) => Err(RpcError::BadMessage(
            "message has neither method nor id".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_keep_params_as_text_and_a_null_member_is_absent() {
        let e: Envelope = serde_json::from_str(
            r#"{"jsonrpc":"2.0","id":null,"method":"m","params":{"b":1,"a":[2]}}"#,
        )
        .unwrap();
        assert_eq!(
            (e.method.as_deref(), e.id, e.params.map(RawValue::get)),
            (Some("m"), None, Some(r#"{"b":1,"a":[2]}"#))
        );
        let e: Envelope =
            serde_json::from_str(r#"{"id":3,"result":{"x":1},"error":null}"#).unwrap();
        assert_eq!(
            (e.id, e.result, e.error),
            (Some(json!(3)), Some(json!({"x": 1})), None)
        );
        assert!(serde_json::from_str::<Envelope>(r#"[{"id":1}]"#).is_err());
    }

    #[test]
    fn a_message_is_parsed_by_its_reader_and_routed_by_its_keys() {
        let msg = |params: &str| ServerMessage {
            method: "session/update".into(),
            params: RawValue::from_string(params.into()).unwrap(),
            id: None,
        };
        let m = msg(r#"{"requestId":"r","sessionId":"s","_meta":{"ai-coding/request-id":"m"}}"#);
        assert_eq!(m.params()["_meta"]["ai-coding/request-id"], "m");
        let k: RouteKeys = m.params_as().unwrap();
        assert_eq!(
            (
                k.meta.unwrap().request_id.as_deref(),
                k.request_id.as_deref(),
                k.session_id.as_deref()
            ),
            (Some("m"), Some("r"), Some("s"))
        );
        // A key that is not a string: no typed keys (route_for falls back to the Value).
        assert!(
            msg(r#"{"requestId":7,"sessionId":"s"}"#)
                .params_as::<RouteKeys>()
                .is_none()
        );
        assert_eq!(msg("null").params(), Value::Null);
    }

    #[test]
    fn acks_follow_the_plugin_contract() {
        assert_eq!(ack_result("chat/answer"), Value::Bool(true));
        assert_eq!(ack_result("chat/finish"), Value::Bool(true));
        assert_eq!(ack_result("chat/think"), Value::Null);
        assert_eq!(ack_result("auth/report"), Value::Null);
    }
}
