//! JSON-RPC 2.0 over one Lingma WebSocket.
//!
//! Owns the socket: a reader task decodes Content-Length frames, completes pending calls by id,
//! acknowledges every request the server sends (`true` for `chat/answer` and `chat/finish`, `null`
//! otherwise, as the plugin contract expects) and hands server requests and notifications to the
//! current subscriber. When the socket closes, every pending call fails at once with
//! [`RpcError::Closed`] and the subscriber's channel ends.
//!
//! A subscriber's channel is bounded, so a consumer that stops reading (a chat whose HTTP client
//! stopped reading) never makes the gateway buffer an answer without limit. A [`Delivery::Wait`]
//! subscriber (a chat stream) pushes back: the reader waits for room, and Lingma's socket with it.
//! A [`Delivery::Lossy`] subscriber (pushes watched beside control calls, such as `auth/report`)
//! loses what does not fit instead, because its owner may be waiting for a reply that the reader
//! could then never deliver.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{Value, json};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::frame::{FrameDecoder, FrameError, encode_str};
use crate::util::lock;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Initial read buffer of one WebSocket connection (see [`RpcConnection::connect`]).
const READ_BUFFER_SIZE: usize = 8 * 1024;

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
}

/// A message the server sent on its own initiative.
#[derive(Debug, Clone)]
pub struct ServerMessage {
    pub method: String,
    pub params: Value,
    /// Present when the server sent a request (already acknowledged by the reader).
    pub id: Option<Value>,
}

type Pending = HashMap<i64, (String, oneshot::Sender<Result<Value, RpcError>>)>;

/// Server messages a subscriber's channel holds before the policy of its [`Delivery`] applies.
pub const SUBSCRIBER_CAPACITY: usize = 64;

/// What the reader does when a subscriber's channel is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Wait for room (backpressure to Lingma). For consumers that read until they are dropped.
    Wait,
    /// Drop the message. For consumers that also make calls on the same connection.
    Lossy,
}

#[derive(Clone)]
struct Subscriber {
    tx: mpsc::Sender<ServerMessage>,
    delivery: Delivery,
}

struct Shared {
    sink: tokio::sync::Mutex<SplitSink<Ws, WsMessage>>,
    pending: Mutex<Pending>,
    subscriber: Mutex<Option<Subscriber>>,
    closed: AtomicBool,
    next_id: AtomicI64,
}

/// One JSON-RPC connection. Cheap to clone; the socket closes when the last clone is dropped
/// (or on [`RpcConnection::close`]).
#[derive(Clone)]
pub struct RpcConnection {
    shared: Arc<Shared>,
    _reader: Arc<ReaderGuard>,
}

struct ReaderGuard(tokio::task::JoinHandle<()>);

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RpcConnection {
    /// Opens the WebSocket. `machine_token` adds the `Cosy-MachineToken` header that Qoder CN
    /// sidecars require.
    pub async fn connect(
        url: &str,
        machine_token: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, RpcError> {
        let connect_err = |reason: String| RpcError::Connect {
            url: url.to_string(),
            reason,
        };
        let mut request = url
            .into_client_request()
            .map_err(|e| connect_err(e.to_string()))?;
        if let Some(token) = machine_token {
            let value = HeaderValue::from_str(token)
                .map_err(|_| connect_err("machine token is not a valid header value".into()))?;
            request.headers_mut().insert("Cosy-MachineToken", value);
        }
        // tungstenite's default 128 KiB read buffer is allocated (and touched) per connection: with
        // a thousand pooled connections that alone was ~130 MB. Lingma's messages are small and the
        // buffer still grows for a larger frame.
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_SIZE);
        let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        let (ws, _) = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| connect_err(format!("timed out after {}s", timeout.as_secs_f32())))?
            .map_err(|e| connect_err(e.to_string()))?;
        if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
            // Acks and asks must leave at once, without Nagle's delay: a strict Lingma sends its
            // next delta only once the previous one is acknowledged.
            let _ = tcp.set_nodelay(true);
        }
        let (sink, stream) = ws.split();
        let shared = Arc::new(Shared {
            sink: tokio::sync::Mutex::new(sink),
            pending: Mutex::new(HashMap::new()),
            subscriber: Mutex::new(None),
            closed: AtomicBool::new(false),
            next_id: AtomicI64::new(1),
        });
        let reader = tokio::spawn(read_loop(stream, Arc::downgrade(&shared)));
        Ok(Self {
            shared,
            _reader: Arc::new(ReaderGuard(reader)),
        })
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

    /// Calls `method` and waits for its result.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, RpcError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.pending).insert(id, (method.to_string(), tx));
        // The reader may have closed between the check and the insert; re-check so the call
        // cannot wait for a reply that no one will deliver.
        if self.is_closed() {
            lock(&self.shared.pending).remove(&id);
            return Err(RpcError::Closed);
        }
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        if let Err(e) = send(&self.shared, &msg).await {
            lock(&self.shared.pending).remove(&id);
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(RpcError::Closed),
            Err(_) => {
                lock(&self.shared.pending).remove(&id);
                Err(RpcError::Timeout {
                    method: method.to_string(),
                    timeout,
                })
            }
        }
    }

    pub async fn close(&self) {
        let mut sink = self.shared.sink.lock().await;
        let _ = sink.close().await;
    }
}

async fn send(shared: &Shared, msg: &Value) -> Result<(), RpcError> {
    if shared.closed.load(Ordering::Acquire) {
        return Err(RpcError::Closed);
    }
    let text = encode_str(&msg.to_string());
    let mut sink = shared.sink.lock().await;
    sink.send(WsMessage::text(text))
        .await
        .map_err(|_| RpcError::Closed)
}

/// Writes a message into the socket's buffer without flushing it (see `read_loop`).
async fn feed(shared: &Shared, msg: &Value) -> Result<(), RpcError> {
    if shared.closed.load(Ordering::Acquire) {
        return Err(RpcError::Closed);
    }
    let text = encode_str(&msg.to_string());
    let mut sink = shared.sink.lock().await;
    sink.feed(WsMessage::text(text))
        .await
        .map_err(|_| RpcError::Closed)
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

async fn read_loop(mut stream: SplitStream<Ws>, shared: std::sync::Weak<Shared>) {
    let mut decoder = FrameDecoder::default();
    let mut failure = RpcError::Closed;
    // Acks are written to the socket's buffer (not flushed) while further messages are already
    // waiting, and flushed before the reader would wait: a burst of callbacks costs one write, not
    // one per callback, and no ack is ever held while the server waits for it.
    let mut unflushed = 0usize;
    'outer: loop {
        let next = if unflushed == 0 {
            stream.next().await
        } else {
            match stream.next().now_or_never() {
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
                        None => stream.next().await,
                    }
                }
            }
        };
        let Some(msg) = next else {
            break;
        };
        let data: &[u8] = match &msg {
            Ok(WsMessage::Text(t)) => t.as_bytes(),
            Ok(WsMessage::Binary(b)) => b,
            Ok(WsMessage::Close(_)) => break,
            Ok(_) => continue,
            Err(_) => break,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        decoder.push(data);
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
                    // The socket closed while we acknowledged a callback: we are going away.
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
        for (_, (_, tx)) in pending {
            let _ = tx.send(Err(failure.clone()));
        }
        lock(&shared.subscriber).take();
        let mut sink = shared.sink.lock().await;
        let _ = sink.close().await;
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

/// Hands a server message to the subscriber under its delivery policy. Before waiting for room,
/// the acks already written are flushed, so a strict server is never left waiting for them while
/// the consumer is slow.
async fn deliver(
    shared: &Shared,
    msg: ServerMessage,
    unflushed: &mut usize,
) -> Result<(), RpcError> {
    let Some(sub) = lock(&shared.subscriber).clone() else {
        tracing::debug!(method = %msg.method, "server message with no subscriber");
        return Ok(());
    };
    let msg = match sub.tx.try_send(msg) {
        Ok(()) => return Ok(()),
        Err(mpsc::error::TrySendError::Closed(m)) => {
            tracing::debug!(method = %m.method, "server message for a subscriber that is gone");
            return Ok(());
        }
        Err(mpsc::error::TrySendError::Full(m)) => m,
    };
    match sub.delivery {
        Delivery::Lossy => {
            tracing::debug!(method = %msg.method, "subscriber is full; dropping a server message");
            Ok(())
        }
        Delivery::Wait => {
            if *unflushed > 0 {
                flush(shared).await?;
                *unflushed = 0;
            }
            // Fails only when the consumer went away meanwhile: then the message has no reader.
            let _ = sub.tx.send(msg).await;
            Ok(())
        }
    }
}

async fn dispatch(shared: &Shared, body: &[u8]) -> Result<Dispatched, RpcError> {
    let mut msg: Value =
        serde_json::from_slice(body).map_err(|e| RpcError::BadMessage(e.to_string()))?;
    // Moved out, not cloned: a callback's params are handed over as they are.
    let params = msg
        .as_object_mut()
        .and_then(|m| m.remove("params"))
        .unwrap_or(Value::Null);
    let method = msg.get("method").and_then(Value::as_str);
    let id = msg.get("id").filter(|v| !v.is_null());
    match (method, id) {
        (None, Some(id)) => {
            let Some(id) = id.as_i64() else {
                return Err(RpcError::BadMessage(format!(
                    "response with unknown id {id}"
                )));
            };
            let Some((method, tx)) = lock(&shared.pending).remove(&id) else {
                tracing::debug!(id, "response for a call nobody waits for (timed out?)");
                return Ok(Dispatched::Done);
            };
            let result = if let Some(err) = msg.get("error") {
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
                let result = msg.as_object_mut().and_then(|m| m.remove("result"));
                Ok(result.unwrap_or(Value::Null))
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
                    params,
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
    fn acks_follow_the_plugin_contract() {
        assert_eq!(ack_result("chat/answer"), Value::Bool(true));
        assert_eq!(ack_result("chat/finish"), Value::Bool(true));
        assert_eq!(ack_result("chat/think"), Value::Null);
        assert_eq!(ack_result("auth/report"), Value::Null);
    }
}
