//! The JSON-RPC side: accepting connections (WebSocket at `/` and `/ws` with the optional
//! `Cosy-MachineToken` check, and the optional Unix socket that carries the same frames as a byte
//! stream), the per-connection read loop with strict Content-Length framing, JSON-RPC
//! classification, the dialect gate (`--dialect`), and every method except `chat/ask`
//! (`chat.rs`) and `session/new|set_model|prompt` (`acp.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::{Message, protocol::WebSocketConfig};

use super::conn::{self, Conn, OUT_QUEUE, Wire};
use super::models;
use super::state::Shared;
use super::store::SimFiles;
use super::store::UserInfo;
use super::{acp, chat};
use crate::lingma::frame::FrameDecoder;
use crate::util::lock;

pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
pub const PARSE_ERROR: i64 = -32700;
pub const NOT_INITIALIZED: i64 = -32002;

/// What a method handler produced.
pub enum Reply {
    Ok(Value),
    /// A result followed by one more frame (a notification that must come after the response).
    OkThen(Value, String),
    Err(i64, String),
    /// The handler answered itself (it had to send more than one message in order).
    Sent,
}

fn err(code: i64, msg: impl Into<String>) -> Reply {
    Reply::Err(code, msg.into())
}

pub async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                let shared2 = shared.clone();
                shared
                    .tasks
                    .spawn(async move { connection(shared2, tcp).await });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                shared.log.warn(&format!("accept failed: {e}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn reject(status: StatusCode, text: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(text.to_string()));
    *r.status_mut() = status;
    r
}

async fn connection(shared: Arc<Shared>, tcp: TcpStream) {
    let token = shared.cfg.machine_token.clone();
    // The error type is tungstenite's handshake callback contract, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let check = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let path = req.uri().path();
        if path != "/" && path != "/ws" && !path.is_empty() {
            return Err(reject(StatusCode::NOT_FOUND, "not found"));
        }
        if let Some(expected) = &token {
            let got = req
                .headers()
                .get("Cosy-MachineToken")
                .and_then(|v| v.to_str().ok());
            if got != Some(expected.as_str()) {
                return Err(reject(
                    StatusCode::UNAUTHORIZED,
                    "missing or wrong Cosy-MachineToken",
                ));
            }
        }
        Ok(resp)
    };
    // Lingma messages are small: an 8 KiB read buffer instead of the default 128 KiB keeps a
    // thousand open connections (the benchmark's) at a fraction of the memory.
    let mut ws_cfg = WebSocketConfig::default().read_buffer_size(8 * 1024);
    ws_cfg.max_message_size = Some(64 << 20);
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(tcp, check, Some(ws_cfg));
    let ws = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        r = tokio::time::timeout(Duration::from_secs(10), handshake) => match r {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                shared.log.debug(&format!("websocket handshake failed: {e}"));
                return;
            }
            Err(_) => return,
        },
    };

    let (sink, stream) = ws.split();
    let (tx, rx) = mpsc::channel(OUT_QUEUE);
    let faults = &shared.cfg.faults;
    let wire = Wire::from_faults(faults.split.unwrap_or(false), faults.batch.unwrap_or(false));
    let conn = Arc::new(Conn::new(shared.next_conn_id(), tx, wire));
    let writer = shared.tasks.spawn(conn::writer(
        sink,
        rx,
        conn.closed.clone(),
        shared.kill.clone(),
    ));
    serve(shared, conn, Input::Ws(stream), writer, "websocket").await;
}

/// Accepts connections on the Unix socket (`--ipc-socket`) until shutdown.
pub async fn ipc_accept_loop(shared: Arc<Shared>, listener: UnixListener) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let shared2 = shared.clone();
                shared
                    .tasks
                    .spawn(async move { ipc_connection(shared2, stream).await });
            }
            Err(e) => {
                shared.log.warn(&format!("ipc accept failed: {e}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One Unix socket connection: no handshake, the same frames as a plain byte stream.
async fn ipc_connection(shared: Arc<Shared>, stream: UnixStream) {
    let (read, write) = stream.into_split();
    let (tx, rx) = mpsc::channel(OUT_QUEUE);
    // Split and batch lay frames into WebSocket messages; a byte stream has no messages.
    let conn = Arc::new(Conn::new(shared.next_conn_id(), tx, Wire::Plain));
    let writer = shared.tasks.spawn(conn::byte_writer(
        write,
        rx,
        conn.closed.clone(),
        shared.kill.clone(),
    ));
    serve(shared, conn, Input::Unix(read), writer, "ipc").await;
}

/// The reading half of a connection.
enum Input {
    Ws(futures_util::stream::SplitStream<tokio_tungstenite::WebSocketStream<TcpStream>>),
    Unix(OwnedReadHalf),
}

impl Input {
    /// The next bytes; `Some(empty)` for a message that carries none, `None` once closed.
    async fn next(&mut self) -> Option<Vec<u8>> {
        match self {
            Input::Ws(stream) => match stream.next().await {
                Some(Ok(Message::Text(t))) => Some(t.as_bytes().to_vec()),
                Some(Ok(Message::Binary(b))) => Some(b.to_vec()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => None,
                Some(Ok(_)) => Some(Vec::new()),
            },
            Input::Unix(r) => {
                let mut buf = vec![0u8; 8 * 1024];
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some(buf)
                    }
                }
            }
        }
    }
}

/// Serves one connection until it closes or the simulator stops.
async fn serve(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    mut input: Input,
    writer: tokio::task::JoinHandle<()>,
    kind: &str,
) {
    lock(&shared.conns).insert(conn.id, conn.clone());
    shared
        .log
        .debug(&format!("{kind} connection {} opened", conn.id));

    let mut decoder = FrameDecoder::default();
    let mut graceful = false;
    loop {
        let data = tokio::select! {
            biased;
            _ = shared.kill.cancelled() => break,
            _ = shared.shutdown.cancelled() => { graceful = true; break }
            _ = conn.closed.cancelled() => break,
            m = input.next() => match m {
                Some(d) => d,
                None => break,
            },
        };
        if data.is_empty() {
            continue;
        }
        decoder.push(&data);
        loop {
            match decoder.next_frame() {
                Ok(Some(body)) => on_frame(&shared, &conn, body).await,
                Ok(None) => break,
                Err(e) => {
                    // Like Lingma: log and drop the bytes, keep the connection.
                    shared.log.warn(&format!("{e}"));
                    if let Some(r) = &shared.reqlog {
                        r.record_raw(conn.id, "unknown_header", &data);
                    }
                    decoder.reset();
                    break;
                }
            }
        }
    }

    lock(&shared.conns).remove(&conn.id);
    if graceful && !shared.kill.is_cancelled() {
        conn.close(1001, "server shutting down").await;
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    }
    conn.closed.cancel();
    shared.log.debug(&format!(
        "{kind} connection {} closed ({} callbacks never acked)",
        conn.id,
        conn.unacked()
    ));
}

async fn on_frame(shared: &Arc<Shared>, conn: &Arc<Conn>, body: Vec<u8>) {
    let msg: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            if let Some(r) = &shared.reqlog {
                r.record_raw(conn.id, "invalid", &body);
            }
            shared.log.warn(&format!("invalid JSON message: {e}"));
            conn.respond_error(Value::Null, PARSE_ERROR, "Parse error")
                .await;
            return;
        }
    };
    let Some(obj) = msg.as_object() else {
        if let Some(r) = &shared.reqlog {
            r.record_raw(conn.id, "invalid", &body);
        }
        conn.respond_error(Value::Null, INVALID_REQUEST, "Invalid Request")
            .await;
        return;
    };
    let id = obj.get("id").cloned();
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        match id {
            Some(id) if obj.contains_key("result") || obj.contains_key("error") => {
                if let Some(r) = &shared.reqlog {
                    r.record(conn.id, "response", &body);
                }
                if !conn.ack(&id) {
                    shared
                        .log
                        .debug(&format!("response to unknown server request id {id}"));
                }
            }
            _ => {
                if let Some(r) = &shared.reqlog {
                    r.record(conn.id, "invalid", &body);
                }
                conn.respond_error(
                    id.unwrap_or(Value::Null),
                    INVALID_REQUEST,
                    "Invalid Request",
                )
                .await;
            }
        }
        return;
    };
    if let Some(r) = &shared.reqlog {
        r.record(
            conn.id,
            if id.is_some() {
                "request"
            } else {
                "notification"
            },
            &body,
        );
    }
    let params = obj.get("params").cloned().unwrap_or(Value::Null);
    // `initialized` is not implemented by Lingma (it logs `unknown method`); the simulator follows
    // the brief and ignores it silently, with or without an id.
    if method == "initialized" {
        return;
    }
    let Some(id) = id else {
        shared.log.debug(&format!("notification ignored: {method}"));
        return;
    };
    if method != "initialize" && !conn.initialized.load(Ordering::Relaxed) {
        conn.respond_error(id, NOT_INITIALIZED, "server not initialized")
            .await;
        return;
    }
    let dialect = shared.cfg.dialect;
    let reply = match method {
        "initialize" => initialize(shared, conn, id.clone()).await,
        "chat/ask" if dialect.legacy() => chat::ask(shared, conn, id.clone(), params).await,
        "session/prompt" if dialect.acp() => acp::prompt(shared, conn, id.clone(), params).await,
        _ => dispatch(shared, conn, method, &params),
    };
    match reply {
        Reply::Ok(v) => {
            conn.respond(id, v).await;
        }
        Reply::OkThen(v, then) => {
            let body = json!({"jsonrpc": "2.0", "id": id, "result": v}).to_string();
            conn.send(vec![body, then], conn.wire).await;
        }
        Reply::Err(code, m) => {
            conn.respond_error(id, code, &m).await;
        }
        Reply::Sent => {}
    }
}

async fn initialize(shared: &Arc<Shared>, conn: &Arc<Conn>, id: Value) -> Reply {
    conn.initialized.store(true, Ordering::Relaxed);
    let log = Conn::notification(
        "window/logMessage",
        json!({"type": 3, "message": format!("Lingma {} initialized", super::VERSION)}),
    );
    // The desktop runtime that speaks only ACP reports its own version line (§12.1).
    let version = if shared.cfg.dialect.legacy() {
        super::VERSION
    } else {
        super::config::ACP_VERSION
    };
    let mut info = json!({
        "capabilities": {},
        "serverInfo": {"name": "lingma", "version": version},
    });
    // Only the ACP-only runtime answers in ACP's shape; `both` keeps the legacy result exact.
    if !shared.cfg.dialect.legacy() {
        info["protocolVersion"] = json!(1);
        info["agentCapabilities"] = json!({"loadSession": false});
    }
    let result = json!({"jsonrpc": "2.0", "id": id, "result": info});
    shared
        .log
        .debug(&format!("connection {} initialized", conn.id));
    conn.send(vec![log, result.to_string()], conn.wire).await;
    Reply::Sent
}

fn str_param<'a>(params: &'a Value, key: &str) -> Option<&'a str> {
    params.get(key).and_then(Value::as_str)
}

/// Accepts `"123"` and `123` for the millisecond fields of device_login / refreshToken.
fn ms_param(params: &Value, key: &str) -> Option<i64> {
    match params.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn dispatch(shared: &Arc<Shared>, conn: &Arc<Conn>, method: &str, params: &Value) -> Reply {
    let acp_on = shared.cfg.dialect.acp();
    match method {
        "session/new" if acp_on => acp::new_session(shared, conn, params),
        "session/set_model" if acp_on => acp::set_model(shared, params),
        "ping" => Reply::Ok(json!({"success": true})),
        "shutdown" => Reply::Ok(Value::Null),
        "auth/status" => Reply::Ok(shared.auth_status()),
        "config/queryModels" => Reply::Ok(if shared.logged_in() {
            models::catalogue()
        } else {
            json!({})
        }),
        "model/queryClasses" => Reply::Ok(models::classes()),
        "login/generateUrl" => {
            let (nonce, p, url) = shared.new_login();
            shared.log.info(&format!("login url generated: {url}"));
            Reply::Ok(json!({
                "success": true,
                "loginUrl": url,
                "nonce": nonce,
                "verifier": p.verifier,
                "challenge": p.challenge,
                "challengeMethod": "S256",
                "errorCode": "",
                "errorMsg": "",
            }))
        }
        "auth/login" => {
            let (_, _, url) = shared.new_login();
            shared.log.info(&format!("login url generated: {url}"));
            Reply::Ok(json!({"success": true, "url": url}))
        }
        "login/auth_callback" => {
            let nonce = str_param(params, "nonce").unwrap_or_default();
            let auth = str_param(params, "auth").unwrap_or_default();
            let token = str_param(params, "tokenString")
                .or_else(|| str_param(params, "token"))
                .unwrap_or_default();
            match shared.complete_callback(nonce, auth, token) {
                Ok(()) => Reply::Ok(json!({"success": true, "errorCode": "", "errorMsg": ""})),
                Err(e) => {
                    shared.log.warn(&format!("login callback rejected: {e}"));
                    Reply::Ok(
                        json!({"success": false, "errorCode": e.code(), "errorMsg": e.to_string()}),
                    )
                }
            }
        }
        "auth/device_login" => device_login(shared, params),
        "auth/refreshToken" => refresh_token(shared, params),
        "auth/logout" => match shared.logout() {
            Ok(()) => Reply::Ok(json!({"success": true})),
            Err(e) => err(INTERNAL_ERROR, format!("logout failed: {e}")),
        },
        "config/getEndpoint" => Reply::Ok(json!({"endpoint": lock(&shared.endpoint).clone()})),
        "config/updateEndpoint" => {
            let Some(ep) = str_param(params, "endpoint") else {
                return err(INVALID_PARAMS, "endpoint is required");
            };
            if let Err(e) = shared.dir.write_endpoint(ep) {
                return err(INTERNAL_ERROR, format!("cannot save endpoint: {e}"));
            }
            *lock(&shared.endpoint) = ep.to_string();
            shared.log.info(&format!(
                "endpoint config: {}",
                if ep.is_empty() {
                    super::state::DEFAULT_ENDPOINT
                } else {
                    ep
                }
            ));
            shared.broadcast("config/changeEndpoint", json!({"endpoint": ep}));
            Reply::Ok(json!({"success": true}))
        }
        "chat/stop" | "chat/stopSession" => {
            let rid = str_param(params, "requestId").unwrap_or_default();
            let sid = str_param(params, "sessionId").unwrap_or_default();
            if rid.is_empty() && sid.is_empty() {
                return err(INVALID_PARAMS, "requestId or sessionId is required");
            }
            let chats = lock(&shared.chats);
            for (id, c) in chats.iter() {
                if (!rid.is_empty() && id == rid) || (rid.is_empty() && c.session_id == sid) {
                    c.stop.cancel();
                }
            }
            Reply::Ok(json!({}))
        }
        "chat/listAllSessions" => {
            let store = lock(&shared.sessions);
            let list: Vec<Value> = store
                .list()
                .into_iter()
                .map(|s| {
                    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
                    v["chatRecords"] = json!([]);
                    v
                })
                .collect();
            Reply::Ok(Value::Array(list))
        }
        "chat/getSessionById" => {
            let sid = str_param(params, "sessionId")
                .or_else(|| str_param(params, "id"))
                .unwrap_or_default();
            let store = lock(&shared.sessions);
            Reply::Ok(
                store
                    .get(sid)
                    .and_then(|s| serde_json::to_value(s).ok())
                    .unwrap_or(Value::Null),
            )
        }
        "chat/deleteSessionById" => {
            let sid = if shared.cfg.delete_needs_id {
                // Some builds know only `{id}` (clients retry with it).
                str_param(params, "id")
            } else {
                str_param(params, "sessionId").or_else(|| str_param(params, "id"))
            };
            let Some(sid) = sid else {
                let key = if shared.cfg.delete_needs_id {
                    "id"
                } else {
                    "sessionId"
                };
                return err(INVALID_PARAMS, format!("{key} is required"));
            };
            // Deleting a session is how ACP clients stop its running prompt.
            for c in lock(&shared.chats).values() {
                if c.session_id == sid {
                    c.stop.cancel();
                }
            }
            lock(&shared.sessions).delete(sid);
            Reply::Ok(Value::Null)
        }
        "chat/clearAllSessions" => {
            lock(&shared.sessions).clear();
            Reply::Ok(Value::Null)
        }
        "chat/deleteChatById" => {
            let (Some(sid), Some(rid)) = (
                str_param(params, "sessionId"),
                str_param(params, "requestId"),
            ) else {
                return err(INVALID_PARAMS, "sessionId and requestId are required");
            };
            lock(&shared.sessions).delete_chat(sid, rid);
            Reply::Ok(Value::Null)
        }
        "session/getCurrent" => {
            let ids: Vec<String> = lock(&conn.last_session).iter().cloned().collect();
            Reply::Ok(json!({"currentSessionIds": ids, "errorCode": "", "errorMessage": ""}))
        }
        // Lingma 2.11.1 answered user/plan with an error.
        "user/plan" => err(INTERNAL_ERROR, "get user plan failed: not supported"),
        "credit/usage" => Reply::Ok(shared.cfg.credit_usage.clone()),
        _ => {
            shared.log.debug(&format!("unknown method: {method}"));
            err(METHOD_NOT_FOUND, format!("method not found: {method}"))
        }
    }
}

fn device_login(shared: &Arc<Shared>, params: &Value) -> Reply {
    let token = str_param(params, "token").unwrap_or_default();
    let user_id = str_param(params, "userId").unwrap_or_default();
    if token.is_empty() || user_id.is_empty() {
        return err(INVALID_PARAMS, "token and userId are required");
    }
    let name = str_param(params, "username").unwrap_or(user_id);
    let mut user = UserInfo::new(user_id, user_id, name);
    user.security_oauth_token = token.to_string();
    user.refresh_token = str_param(params, "refreshToken")
        .unwrap_or_default()
        .to_string();
    if let Some(exp) = ms_param(params, "expireTime").filter(|e| *e > 0) {
        user.expire_time = exp;
    }
    match shared.set_user(user, "device login") {
        Ok(()) => Reply::Ok(json!({"success": true})),
        Err(e) => err(INTERNAL_ERROR, format!("cannot save login: {e}")),
    }
}

fn refresh_token(shared: &Arc<Shared>, params: &Value) -> Reply {
    let current = lock(&shared.login).user.clone();
    let Some(mut user) = current else {
        return Reply::Ok(json!({
            "success": false, "errorCode": "NOT_LOGIN", "errorMessage": "not logged in",
            "uid": "", "name": "", "tokenExpireTime": 0,
        }));
    };
    // A caller that names a refresh token must name the current one.
    let named = str_param(params, "refreshToken").filter(|s| !s.is_empty());
    if named.is_some_and(|rt| rt != user.refresh_token) {
        return Reply::Ok(json!({
            "success": false, "errorCode": "INVALID_REFRESH_TOKEN",
            "errorMessage": "refresh token does not match", "uid": user.uid, "name": user.name,
            "tokenExpireTime": user.expire_time,
        }));
    }
    let fresh = UserInfo::new(&user.uid, &user.aid, &user.name);
    user.security_oauth_token = fresh.security_oauth_token;
    user.refresh_token = fresh.refresh_token;
    user.expire_time = fresh.expire_time;
    if let Err(e) = shared.dir.write_user(&user) {
        return err(INTERNAL_ERROR, format!("cannot save login: {e}"));
    }
    *lock(&shared.login) = super::state::LoginState {
        user: Some(user.clone()),
        expired: false,
    };
    shared
        .log
        .info(&format!("token refreshed for {}", user.uid));
    let note = Conn::notification(
        "auth/syncTokenUpdate",
        json!({
            "status": 0, "token": user.security_oauth_token, "refreshToken": user.refresh_token,
            "expireTime": user.expire_time, "id": user.uid,
        }),
    );
    Reply::OkThen(
        json!({
            "success": true, "errorCode": "", "errorMessage": "",
            "uid": user.uid, "name": user.name, "tokenExpireTime": user.expire_time,
        }),
        note,
    )
}
