//! A Lingma client written for the tests, independent of the crate's own `LingmaClient`: raw
//! Content-Length frames over a WebSocket, JSON-RPC ids, acks of server requests, and the
//! counts of WebSocket messages and frames that the split/batch checks need. Plus builders and
//! readers of `chat/ask` streams.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lingma_gw::lingma::frame::{FrameDecoder, encode_str};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    pub ws: Ws,
    dec: FrameDecoder,
    queue: VecDeque<Value>,
    next_id: i64,
    /// Ack every server request that passes through `call`/`chat` automatically.
    pub auto_ack: bool,
    /// Number of WebSocket messages received and frames decoded (for split/batch checks).
    pub ws_messages: usize,
    pub frames: usize,
}

pub fn frame(v: &Value) -> String {
    encode_str(&v.to_string())
}

impl Client {
    pub async fn connect(port: u16) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/"))
            .await
            .expect("websocket connect");
        Client::from_ws(ws)
    }

    pub fn from_ws(ws: Ws) -> Client {
        Client {
            ws,
            dec: FrameDecoder::default(),
            queue: VecDeque::new(),
            next_id: 0,
            auto_ack: true,
            ws_messages: 0,
            frames: 0,
        }
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_string()))
            .await
            .expect("send");
    }

    pub async fn send(&mut self, v: &Value) {
        self.send_raw(&frame(v)).await;
    }

    pub async fn request(&mut self, method: &str, params: Value) -> i64 {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        id
    }

    /// The next message, or None if none arrives within `d` (or the socket closed).
    pub async fn recv_within(&mut self, d: Duration) -> Option<Value> {
        if let Some(v) = self.queue.pop_front() {
            return Some(v);
        }
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match self.dec.next_frame() {
                Ok(Some(body)) => {
                    self.frames += 1;
                    return Some(serde_json::from_slice(&body).expect("server sent valid JSON"));
                }
                Ok(None) => {}
                Err(e) => panic!("server sent a bad frame: {e}"),
            }
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match msg.ok()? {
                Message::Text(t) => {
                    self.ws_messages += 1;
                    self.dec.push(t.as_bytes());
                }
                Message::Binary(b) => {
                    self.ws_messages += 1;
                    self.dec.push(&b);
                }
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    pub async fn recv(&mut self) -> Value {
        self.recv_within(Duration::from_secs(10))
            .await
            .expect("expected a message from the simulator")
    }

    /// Waits for the socket to close; false if a message or a timeout came first.
    pub async fn closed_within(&mut self, d: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    pub async fn ack(&mut self, msg: &Value) {
        let result = match msg["method"].as_str() {
            Some("chat/answer") | Some("chat/finish") => json!(true),
            _ => Value::Null,
        };
        // The peer may be gone already (crash and close faults): an ack that cannot be sent is
        // not the test's concern.
        let body = frame(&json!({"jsonrpc": "2.0", "id": msg["id"], "result": result}));
        let _ = self.ws.send(Message::text(body)).await;
    }

    /// Sends a request and returns its response; other messages are queued (server requests
    /// acked first when `auto_ack`).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params).await;
        self.response_to(json!(id)).await
    }

    pub async fn response_to(&mut self, id: Value) -> Value {
        let mut others = Vec::new();
        loop {
            let m = self.recv().await;
            if m.get("method").is_none() && m["id"] == id {
                for o in others.into_iter().rev() {
                    self.queue.push_front(o);
                }
                return m;
            }
            if self.auto_ack && m.get("method").is_some() && m.get("id").is_some() {
                self.ack(&m).await;
            }
            others.push(m);
        }
    }

    pub async fn initialize(&mut self) -> Value {
        let r = self
            .call(
                "initialize",
                json!({"processId": null, "clientInfo": {"name": "sim-test", "version": "1"},
                       "rootUri": "file:///tmp", "capabilities": {},
                       "workspaceFolders": [{"uri": "file:///tmp", "name": "tmp"}]}),
            )
            .await;
        assert!(r.get("result").is_some(), "initialize failed: {r}");
        // Drop the window/logMessage notification that initialize emits.
        self.queue.retain(|m| m["method"] != "window/logMessage");
        r
    }

    /// Sends chat/ask and returns (sync response, every message of the stream up to and
    /// including chat/finish for this requestId), acking every server request.
    pub async fn chat(&mut self, params: Value) -> (Value, Vec<Value>) {
        let rid = params["requestId"].clone();
        let resp = self.call("chat/ask", params).await;
        let mut stream = Vec::new();
        if resp["result"]["success"] != true {
            return (resp, stream);
        }
        loop {
            let m = self.recv().await;
            if m.get("id").is_some() && m.get("method").is_some() {
                self.ack(&m).await;
            }
            let done = m["method"] == "chat/finish" && m["params"]["requestId"] == rid;
            stream.push(m);
            if done {
                return (resp, stream);
            }
        }
    }

    /// Collects the stream of one ask until `until` matches or nothing arrives for `idle`.
    pub async fn collect(&mut self, idle: Duration, until: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(m) = self.recv_within(idle).await {
            if m.get("id").is_some() && m.get("method").is_some() {
                self.ack(&m).await;
            }
            let stop = until(&m);
            out.push(m);
            if stop {
                break;
            }
        }
        out
    }
}

pub fn ask_params(request_id: &str, session_id: &str, question: &str) -> Value {
    json!({
        "requestId": request_id,
        "chatTask": "FREE_INPUT",
        "chatContext": null,
        "sessionId": session_id,
        "codeLanguage": "",
        "isReply": false,
        "source": 1,
        "questionText": question,
        "stream": true,
        "taskDefinitionType": "",
        "extra": null,
        "sessionType": "chat",
        "targetAgent": "",
        "pluginPayloadConfig": null,
        "mode": "normal",
        "shellType": "",
        "customModel": null,
    })
}

pub fn with_model(mut p: Value, key: &str) -> Value {
    p["extra"] = json!({"modelConfig": {"key": key}});
    p
}

pub fn methods(stream: &[Value]) -> Vec<String> {
    stream
        .iter()
        .map(|m| m["method"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Final answer text, honouring overwrite.
pub fn answer_text(stream: &[Value]) -> String {
    let mut s = String::new();
    for m in stream.iter().filter(|m| m["method"] == "chat/answer") {
        if m["params"]["overwrite"] == true {
            s.clear();
        }
        s.push_str(m["params"]["text"].as_str().unwrap());
    }
    s
}

/// Concatenation that ignores overwrite (what a naive client would show).
pub fn naive_text(stream: &[Value]) -> String {
    stream
        .iter()
        .filter(|m| m["method"] == "chat/answer")
        .map(|m| m["params"]["text"].as_str().unwrap().to_string())
        .collect()
}

pub fn finish_of(stream: &[Value]) -> &Value {
    &stream
        .iter()
        .find(|m| m["method"] == "chat/finish")
        .expect("stream has a chat/finish")["params"]
}
