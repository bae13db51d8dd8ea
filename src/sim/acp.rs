//! The ACP-style dialect's methods (§12.2; docs/simulator.md, "The ACP dialect"): `session/new`,
//! `session/set_model` and `session/prompt`. A prompt is checked here and planned and streamed by
//! `chat.rs`, like a legacy ask, so both dialects share the reply generator, the agent scripts,
//! the faults and the session store.
//!
//! Unlike the legacy socket, one connection runs several prompts at once, one per session; a
//! second prompt in a session that is still answering is refused. Stopping is deleting the
//! session (`chat/deleteSessionById`, in `server.rs`), which ends the running prompt with a
//! `cancelled` finish.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::chat::{self, Turn};
use super::config::PromptReply;
use super::conn::Conn;
use super::directives;
use super::models::DEFAULT_MODEL;
use super::server::{INVALID_PARAMS, Reply};
use super::state::Shared;
use crate::lingma::Dialect;
use crate::lingma::acp::REQUEST_ID_KEY;
use crate::util::lock;

/// A JSON-RPC error code for a refused prompt (an application error, as `-32000..-32099` are).
pub const PROMPT_REFUSED: i64 = -32000;

fn invalid(msg: &str) -> Reply {
    Reply::Err(INVALID_PARAMS, format!("invalid params: {msg}"))
}

/// `session/new {cwd, mcpServers, _meta, timestamp}` -> `{sessionId}`, then an
/// `available_commands_update` for the new session, as the desktop runtime sends.
pub fn new_session(shared: &Arc<Shared>, conn: &Arc<Conn>, params: &Value) -> Reply {
    let Some(p) = params.as_object() else {
        return invalid("expected an object");
    };
    if !p.get("cwd").is_some_and(Value::is_string) {
        return invalid("cwd is required");
    }
    let session_id = uuid::Uuid::new_v4().to_string();
    lock(&shared.sessions).session_mut(&session_id, "assistant");
    *lock(&conn.last_session) = Some(session_id.clone());
    shared.log.debug(&format!(
        "session/new: {session_id} on connection {}",
        conn.id
    ));
    let commands = Conn::notification(
        "session/update",
        json!({
            "sessionId": session_id,
            "update": {"sessionUpdate": "available_commands_update", "availableCommands": []},
        }),
    );
    Reply::OkThen(json!({"sessionId": session_id}), commands)
}

/// `session/set_model {sessionId, modelId}`: the model of the session's next prompts.
pub fn set_model(shared: &Arc<Shared>, params: &Value) -> Reply {
    let sid = params
        .get("sessionId")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(model) = params.get("modelId").and_then(Value::as_str) else {
        return invalid("modelId is required");
    };
    let mut store = lock(&shared.sessions);
    if store.get(sid).is_none() {
        return invalid("unknown sessionId");
    }
    store.session_mut(sid, "assistant").model = Some(model.to_string());
    Reply::Ok(Value::Null)
}

/// `session/prompt {sessionId, prompt: [...], _meta}`. The reply comes as the prompt's
/// `prompt-reply` fault says (late by default); the answer streams as `session/update`s.
pub async fn prompt(shared: &Arc<Shared>, conn: &Arc<Conn>, id: Value, params: Value) -> Reply {
    let Some(p) = params.as_object() else {
        return invalid("params must be an object");
    };
    let meta = p.get("_meta").cloned().unwrap_or(Value::Null);
    let request_id = match meta.get(REQUEST_ID_KEY).and_then(Value::as_str) {
        Some(r) if !r.is_empty() => r.to_string(),
        // What the runtime says when the id is missing (a plain `requestId` key does not count).
        _ => return invalid("requestId is empty"),
    };
    let Some(session_id) = p.get("sessionId").and_then(Value::as_str) else {
        return invalid("sessionId is required");
    };
    let session_id = session_id.to_string();
    let question: String = match p.get("prompt") {
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => return invalid("prompt must be a list of content blocks"),
    };
    let session_model = {
        let store = lock(&shared.sessions);
        match store.get(&session_id) {
            Some(s) => s.model.clone(),
            None => return invalid(&format!("session {session_id} not found")),
        }
    };
    let model_key = meta
        .get("ai-coding/model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .or(session_model)
        .unwrap_or_else(|| DEFAULT_MODEL.to_string());
    let mode = meta
        .get("ai-coding/mode")
        .and_then(Value::as_str)
        .unwrap_or("agent");

    let d = directives::parse(&question);
    for u in &d.unknown {
        shared
            .log
            .warn(&format!("ignored directive in {request_id}: {u}"));
    }
    let faults = d.faults.over(&shared.cfg.faults);
    if d.faults.expired == Some(true) {
        shared.set_expired();
    }
    if !shared.logged_in() {
        let expired = lock(&shared.login).expired;
        let msg = if expired {
            "login expired, please login again"
        } else {
            "not logged in, please login first"
        };
        shared
            .log
            .warn(&format!("prompt rejected, {msg}: requestId {request_id}"));
        // No public capture of this exists; an error reply whose data carries the legacy code
        // is this simulator's choice (docs/simulator.md).
        conn.send(
            vec![
                json!({"jsonrpc": "2.0", "id": id, "error": {
                    "code": PROMPT_REFUSED, "message": msg, "data": {"errorCode": "NOT_LOGIN"},
                }})
                .to_string(),
            ],
            conn.wire,
        )
        .await;
        return Reply::Sent;
    }
    {
        let chats = lock(&shared.chats);
        if chats.values().any(|c| c.session_id == session_id) {
            return Reply::Err(
                INVALID_PARAMS,
                format!("session {session_id} is busy: a prompt is in progress"),
            );
        }
    }
    *lock(&conn.last_session) = Some(session_id.clone());
    let stop = CancellationToken::new();
    let mut plan = chat::prepare(
        shared,
        Turn {
            dialect: Dialect::Acp,
            request_id,
            session_id,
            session_type: if mode == "agent" { "assistant" } else { "chat" }.to_string(),
            question,
            clean: d.text,
            chat_task: "FREE_INPUT".into(),
            chat_context: Value::Null,
            model_key,
            stream: true,
            faults,
        },
        stop.clone(),
    );
    match plan.prompt_reply() {
        PromptReply::Early => {
            conn.respond(id, json!({})).await;
        }
        PromptReply::Late => plan.reply_late(id),
        PromptReply::None => {}
    }
    chat::spawn_stream(shared, conn, plan, stop);
    Reply::Sent
}
