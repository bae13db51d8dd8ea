//! One client connection (WebSocket or Unix socket): the outbound queue and its writer task,
//! server-assigned request ids and the acks the client owes for them, and how frames are laid
//! into WebSocket messages (one per message, split in two, or batched; a socket just gets the
//! bytes).
//!
//! All writes go through one bounded queue drained by one writer task, so the reader loop and
//! any number of stream tasks never contend for the socket and a slow client pushes back on the
//! producer instead of growing memory without bound.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use futures_util::{Sink, SinkExt};
use serde_json::{Value, json};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{self, Message, protocol::CloseFrame};
use tokio_util::sync::CancellationToken;

use crate::lingma::frame;
use crate::util::lock;

/// Outbound queue depth per connection.
pub const OUT_QUEUE: usize = 1024;

pub enum Out {
    /// One WebSocket text message (already framed).
    Msg(String),
    /// Send a close frame and stop writing.
    Close(u16, &'static str),
    /// Flush everything queued before this, then signal.
    Flush(oneshot::Sender<()>),
}

/// How frames are laid into WebSocket messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// One frame per message (what real Lingma does).
    Plain,
    /// Each frame as two messages (fault `split`).
    Split,
    /// All frames of one send in one message (fault `batch`).
    Batch,
}

impl Wire {
    pub fn from_faults(split: bool, batch: bool) -> Wire {
        if split {
            Wire::Split
        } else if batch {
            Wire::Batch
        } else {
            Wire::Plain
        }
    }
}

pub struct Conn {
    pub id: u64,
    out: mpsc::Sender<Out>,
    next_id: AtomicI64,
    /// Server requests not yet answered; `Some` when a stream waits for that ack.
    pending: Mutex<HashMap<i64, Option<oneshot::Sender<()>>>>,
    /// Cancelled when the connection ends for any reason.
    pub closed: CancellationToken,
    pub initialized: AtomicBool,
    /// The requestId of the chat running on this connection (Lingma runs one at a time per
    /// connection).
    pub chat: Mutex<Option<String>>,
    /// The session this connection last chatted in (`session/getCurrent`).
    pub last_session: Mutex<Option<String>>,
    /// The process-wide wire mode, used for everything that is not part of a chat stream.
    pub wire: Wire,
}

impl Conn {
    pub fn new(id: u64, out: mpsc::Sender<Out>, wire: Wire) -> Self {
        Conn {
            id,
            out,
            next_id: AtomicI64::new(1),
            pending: Mutex::new(HashMap::new()),
            closed: CancellationToken::new(),
            initialized: AtomicBool::new(false),
            chat: Mutex::new(None),
            last_session: Mutex::new(None),
            wire,
        }
    }

    /// Builds a server-to-client request with a fresh integer id and registers it as owed an
    /// ack. With `wait`, the returned receiver fires when the client answers it.
    pub fn server_request(
        &self,
        method: &str,
        params: Value,
        wait: bool,
    ) -> (String, Option<oneshot::Receiver<()>>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let (tx, rx) = if wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        lock(&self.pending).insert(id, tx);
        (body.to_string(), rx)
    }

    /// A response from the client arrived. Returns false for an id this server never sent.
    pub fn ack(&self, id: &Value) -> bool {
        let Some(id) = id.as_i64() else {
            return false;
        };
        match lock(&self.pending).remove(&id) {
            Some(waiter) => {
                if let Some(tx) = waiter {
                    let _ = tx.send(());
                }
                true
            }
            None => false,
        }
    }

    pub fn unacked(&self) -> usize {
        lock(&self.pending).len()
    }

    /// Queues frame bodies laid out as `wire` says. False when the connection is gone.
    pub async fn send(&self, bodies: Vec<String>, wire: Wire) -> bool {
        let msgs: Vec<String> = match wire {
            Wire::Plain => bodies.iter().map(|b| frame::encode_str(b)).collect(),
            Wire::Batch => vec![bodies.iter().map(|b| frame::encode_str(b)).collect()],
            Wire::Split => bodies
                .iter()
                .flat_map(|b| {
                    let f = frame::encode_str(b);
                    let mut cut = f.len() / 2;
                    while !f.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    let (a, b) = f.split_at(cut);
                    [a.to_string(), b.to_string()]
                })
                .collect(),
        };
        for m in msgs {
            if m.is_empty() {
                continue;
            }
            if self.out.send(Out::Msg(m)).await.is_err() {
                return false;
            }
        }
        true
    }

    pub async fn respond(&self, id: Value, result: Value) -> bool {
        let body = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
        self.send(vec![body], self.wire).await
    }

    pub async fn respond_error(&self, id: Value, code: i64, message: &str) -> bool {
        let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            .to_string();
        self.send(vec![body], self.wire).await
    }

    pub fn notification(method: &str, params: Value) -> String {
        json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string()
    }

    /// Waits until everything queued so far has been handed to the socket.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.out.send(Out::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    pub async fn close(&self, code: u16, reason: &'static str) {
        let _ = self.out.send(Out::Close(code, reason)).await;
    }
}

/// Drains the outbound queue into the socket. Messages that are already queued are fed together
/// and flushed once, which keeps syscalls per frame low under load without delaying anything.
pub async fn writer<S>(
    mut sink: S,
    mut rx: mpsc::Receiver<Out>,
    closed: CancellationToken,
    kill: CancellationToken,
) where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    'outer: loop {
        let first = tokio::select! {
            biased;
            _ = kill.cancelled() => break 'outer,
            m = rx.recv() => m,
            _ = closed.cancelled() => None,
        };
        let Some(mut item) = first else {
            break;
        };
        let mut fed = 0;
        loop {
            match item {
                Out::Msg(s) => {
                    if sink.feed(Message::text(s)).await.is_err() {
                        break 'outer;
                    }
                    fed += 1;
                }
                Out::Flush(done) => {
                    let _ = sink.flush().await;
                    let _ = done.send(());
                }
                Out::Close(code, reason) => {
                    let frame = CloseFrame {
                        code: code.into(),
                        reason: reason.into(),
                    };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    break 'outer;
                }
            }
            if fed >= 64 {
                break;
            }
            match rx.try_recv() {
                Ok(next) => item = next,
                Err(_) => break,
            }
        }
        if sink.flush().await.is_err() {
            break;
        }
    }
    closed.cancel();
}

/// [`writer`] for a byte stream (the Unix socket): frames are written back to back, `Close`
/// shuts the write side down.
pub async fn byte_writer<W>(
    w: W,
    mut rx: mpsc::Receiver<Out>,
    closed: CancellationToken,
    kill: CancellationToken,
) where
    W: AsyncWrite + Unpin,
{
    let mut w = tokio::io::BufWriter::new(w);
    'outer: loop {
        let item = tokio::select! {
            biased;
            _ = kill.cancelled() => break 'outer,
            m = rx.recv() => m,
            _ = closed.cancelled() => None,
        };
        let Some(mut item) = item else {
            break;
        };
        loop {
            match item {
                Out::Msg(s) => {
                    if w.write_all(s.as_bytes()).await.is_err() {
                        break 'outer;
                    }
                }
                Out::Flush(done) => {
                    let _ = w.flush().await;
                    let _ = done.send(());
                }
                Out::Close(..) => {
                    let _ = w.flush().await;
                    let _ = w.shutdown().await;
                    break 'outer;
                }
            }
            match rx.try_recv() {
                Ok(next) => item = next,
                Err(_) => break,
            }
        }
        if w.flush().await.is_err() {
            break;
        }
    }
    closed.cancel();
}
