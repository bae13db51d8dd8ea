//! One prompt in the ACP-style dialect (§12.2, §3.10): the session calls (`session/new`,
//! `session/set_model`, stopping through `chat/deleteSessionById`) and the turn's state machine
//! ([`AcpStream`]), which turns the `session/update` notifications routed to this prompt into the
//! same [`ChatEvent`]s a legacy ask gives.
//!
//! What the state machine copes with, from the peers' notes: the `session/prompt` reply may carry
//! nothing and may come late or never, so it is not waited for (only an error in it counts); the
//! turn ends with a `notification` of type `chat_finish`, whose `fullAnswer` was seen empty, so the
//! answer is built from the `agent_message_chunk`s; `agent_thought_chunk`s are reasoning;
//! `context_usage` notifications report the context window; legacy callbacks
//! (`chat/process_step_callback`, `session/title/update`, `snapshot/syncAll`) arrive as well and
//! are only signs of life, except that a `step_end` followed by silence ends the turn as on the
//! legacy socket. Several prompts share a connection, each on its own route (`rpc.rs`), keyed by
//! its request id and its session.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;
use std::task::Poll;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use super::chat_stream::{
    AskMode, ChatError, ChatEvent, ChatFinish, ChatRequest, ContextUsage, EndedBy, new_request_id,
};
use super::client::{ClientOptions, str_field, success};
use super::dialect::is_method_not_found;
use super::rpc::{Delivery, PendingCall, Route, RpcConnection, RpcError, ServerMessage};
use super::think::{Piece, ThinkSplitter};
use crate::util::{lock, unix_millis};

/// The `_meta` key that ties a prompt to its updates; a plain `requestId` is refused by the
/// runtime ("requestId is empty").
pub const REQUEST_ID_KEY: &str = "ai-coding/request-id";

/// `session/new`: a fresh session in `workspace`; its id (`sessionId`, or `id` in some builds).
pub async fn new_session(
    rpc: &RpcConnection,
    workspace: &Path,
    timeout: Duration,
) -> Result<String, RpcError> {
    let cwd = std::path::absolute(workspace).unwrap_or_else(|_| workspace.to_path_buf());
    let result = rpc
        .call(
            "session/new",
            json!({
                "cwd": cwd.to_string_lossy(),
                "mcpServers": [],
                "_meta": {},
                "timestamp": unix_millis(),
            }),
            timeout,
        )
        .await?;
    str_field(&result, "sessionId")
        .or_else(|| str_field(&result, "id"))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            RpcError::BadMessage(format!(
                "session/new answered without a session id: {result}"
            ))
        })
}

/// Deletes a session, which is also how a running prompt is stopped (no `session/cancel` was
/// seen in Lingma). Some builds want `{id}` instead of `{sessionId}`: that is tried when the
/// first form is refused.
pub async fn delete_session(
    rpc: &RpcConnection,
    session_id: &str,
    timeout: Duration,
) -> Result<(), RpcError> {
    let first = rpc
        .call(
            "chat/deleteSessionById",
            json!({"sessionId": session_id}),
            timeout,
        )
        .await;
    match first {
        Ok(_) => Ok(()),
        Err(RpcError::Remote { .. }) => rpc
            .call("chat/deleteSessionById", json!({"id": session_id}), timeout)
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    }
}

fn mode_name(mode: AskMode) -> &'static str {
    match mode {
        AskMode::Chat => "chat",
        AskMode::Agent => "agent",
    }
}

/// The `session/prompt` params: the question as one text block, the request id and the mode and
/// model in `_meta` (`contextParams` has no effect on the runtime, so it is not sent).
pub fn prompt_params(req: &ChatRequest, request_id: &str, session_id: &str) -> Value {
    json!({
        "sessionId": session_id,
        "prompt": [{"type": "text", "text": req.question}],
        "_meta": {
            REQUEST_ID_KEY: request_id,
            "ai-coding/mode": mode_name(req.mode),
            "ai-coding/model": req.model.clone().unwrap_or_default(),
            "ai-coding/shell-type": "",
            "ai-coding/enabled-mcp-servers": [],
        },
        "timestamp": unix_millis(),
    })
}

/// A reply or error that says the prompt was refused, as a [`ChatError`].
fn refusal(code: String, message: String) -> ChatError {
    let m = message.to_ascii_lowercase();
    if code.eq_ignore_ascii_case("NOT_LOGIN") || m.contains("not logged in") || m.contains("login")
    {
        ChatError::NotLoggedIn
    } else if m.contains("in progress") || m.contains("busy") {
        ChatError::Busy
    } else {
        ChatError::Rejected { code, message }
    }
}

/// The updates of one prompt, as events. Dropping an unfinished stream deletes its session (the
/// only stop the runtime knows).
pub struct AcpStream {
    rpc: RpcConnection,
    opts: ClientOptions,
    /// `None` once the turn is over: its keys are free for the next prompt.
    route: Option<Route>,
    /// The `session/prompt` call until its reply (if any) has come.
    reply: Option<PendingCall>,
    request_id: String,
    session_id: String,
    queue: VecDeque<ChatEvent>,
    splitter: ThinkSplitter,
    answer: String,
    reasoning: String,
    context: Option<ContextUsage>,
    got_delta: bool,
    saw_step_end: bool,
    /// When [`AcpStream::stop`] deleted the session: the turn ends with the runtime's
    /// `chat_finish`, or a little later without it.
    stopped_at: Mutex<Option<Instant>>,
    done: bool,
    /// The runtime ended the turn itself, or the connection is gone: no stop is owed.
    server_done: bool,
    started: Instant,
    last_message: Instant,
}

impl AcpStream {
    /// Sends `session/prompt` in `session_id` (after `session/set_model` when a model is named)
    /// and returns the stream of its updates without waiting for the reply.
    pub(super) async fn start(
        rpc: &RpcConnection,
        opts: &ClientOptions,
        req: ChatRequest,
        session_id: String,
    ) -> Result<Self, ChatError> {
        if let Some(model) = req.model.as_deref().filter(|m| !m.is_empty()) {
            let set = rpc
                .call(
                    "session/set_model",
                    json!({"sessionId": session_id, "modelId": model,
                           "timestamp": unix_millis(), "_meta": {}}),
                    opts.rpc_timeout,
                )
                .await;
            match set {
                Ok(_) => {}
                // The model also travels in the prompt's `_meta`.
                Err(e) if is_method_not_found(&e) => {
                    tracing::debug!("session/set_model is not supported; the model goes in _meta")
                }
                Err(RpcError::Remote { code, message, .. }) => {
                    return Err(refusal(code.to_string(), message));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let request_id = new_request_id();
        // Registered before the prompt leaves: its first update can come before the reply.
        let route = rpc.route(
            &[&request_id, &session_id],
            Delivery::WaitUpTo(opts.lag_limit),
        );
        let reply = rpc
            .send_call_for(
                &route,
                "session/prompt",
                prompt_params(&req, &request_id, &session_id),
            )
            .await?;
        let now = Instant::now();
        Ok(Self {
            rpc: rpc.clone(),
            opts: opts.clone(),
            route: Some(route),
            reply: Some(reply),
            request_id,
            session_id,
            queue: VecDeque::new(),
            splitter: ThinkSplitter::default(),
            answer: String::new(),
            reasoning: String::new(),
            context: None,
            got_delta: false,
            saw_step_end: false,
            stopped_at: Mutex::new(None),
            done: false,
            server_done: false,
            started: now,
            last_message: now,
        })
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the prompt by deleting its session; the stream then ends with a `cancelled` finish.
    pub async fn stop(&self) -> Result<(), RpcError> {
        delete_session(&self.rpc, &self.session_id, self.opts.rpc_timeout).await?;
        lock(&self.stopped_at).get_or_insert_with(Instant::now);
        Ok(())
    }

    /// The next event if it needs no waiting: one already queued, or one made from updates that
    /// the reader already delivered (so a burst of updates costs no timer per update).
    pub fn try_next(&mut self) -> Poll<Option<Result<ChatEvent, ChatError>>> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                if matches!(ev, ChatEvent::Finished(_)) {
                    self.done = true;
                    self.route = None;
                }
                return Poll::Ready(Some(Ok(ev)));
            }
            if self.done {
                return Poll::Ready(None);
            }
            // An empty or closed channel: `next` waits, or tells a lag from a lost connection.
            let Some(msg) = self.route.as_mut().and_then(Route::try_recv) else {
                return Poll::Pending;
            };
            if let Err(e) = self.handle(msg) {
                return Poll::Ready(Some(self.fail(e)));
            }
        }
    }

    pub async fn next(&mut self) -> Option<Result<ChatEvent, ChatError>> {
        loop {
            if let Poll::Ready(ev) = self.try_next() {
                return ev;
            }
            let stopped_at = *lock(&self.stopped_at);
            let (deadline, phase) = match stopped_at {
                // The session is gone; a runtime that says nothing more has still stopped.
                Some(t) => (t + self.opts.idle_finish, "after the stop"),
                None if !self.got_delta => (
                    self.last_message + self.opts.first_token_timeout,
                    "waiting for the first token",
                ),
                None if self.saw_step_end => {
                    (self.last_message + self.opts.idle_finish, "after step_end")
                }
                None => (self.last_message + self.opts.stall_timeout, "mid-answer"),
            };
            let route = self.route.as_mut()?;
            tokio::select! {
                msg = route.recv() => match msg {
                    Some(m) => {
                        if let Err(e) = self.handle(m) {
                            return Some(self.fail(e));
                        }
                    }
                    None => {
                        let lagged = route.lagged();
                        if !lagged {
                            self.server_done = true;
                        }
                        let e = if lagged {
                            ChatError::Rpc(RpcError::Lagged { after: self.opts.lag_limit })
                        } else {
                            ChatError::ConnectionLost
                        };
                        return Some(self.fail(e));
                    }
                },
                r = next_reply(&mut self.reply) => {
                    self.reply = None;
                    if let Err(e) = self.on_reply(r) {
                        return Some(self.fail(e));
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if stopped_at.is_some() {
                        self.server_done = true;
                        self.finish_with("cancelled".into(), 200, EndedBy::Finish);
                    } else if self.saw_step_end && self.got_delta {
                        self.finish_with("success".into(), 200, EndedBy::IdleGap);
                    } else {
                        let after = deadline.saturating_duration_since(self.last_message);
                        return Some(self.fail(ChatError::Timeout { phase, after }));
                    }
                }
            }
        }
    }

    fn fail(&mut self, e: ChatError) -> Result<ChatEvent, ChatError> {
        self.done = true;
        self.route = None;
        Err(e)
    }

    /// The `session/prompt` reply. Only a refusal matters; a reply that names a `stopReason`
    /// (standard ACP agents end a prompt that way) ends the turn too.
    fn on_reply(&mut self, r: Result<Value, RpcError>) -> Result<(), ChatError> {
        let v = match r {
            Ok(v) => v,
            Err(RpcError::Remote {
                code,
                message,
                data,
                ..
            }) => {
                let code = data
                    .as_deref()
                    .and_then(|d| str_field(d, "errorCode"))
                    .unwrap_or_else(|| code.to_string());
                self.server_done = true;
                return Err(refusal(code, message));
            }
            // The route reports a closed connection as well; let it say so.
            Err(RpcError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if v.get("success").is_some() || v.get("isSuccess").is_some() {
            if !success(&v) {
                self.server_done = true;
                return Err(refusal(
                    str_field(&v, "errorCode").unwrap_or_default(),
                    str_field(&v, "errorMessage")
                        .or_else(|| str_field(&v, "errorMsg"))
                        .unwrap_or_default(),
                ));
            }
            return Ok(());
        }
        if let Some(stop) = str_field(&v, "stopReason") {
            self.server_done = true;
            let reason = match stop.as_str() {
                "end_turn" => "success".to_string(),
                "cancelled" => "cancelled".to_string(),
                _ => stop,
            };
            self.finish_with(reason, 200, EndedBy::Finish);
        }
        Ok(())
    }

    fn handle(&mut self, msg: ServerMessage) -> Result<(), ChatError> {
        // Only messages routed here reach this stream: every one is a sign of life.
        self.last_message = Instant::now();
        // Most messages of an answer are its chunks: read those without building a `Value`.
        if msg.method == "session/update"
            && let Some(ChunkUpdate { update }) = msg.params_as()
        {
            match update.kind.as_ref() {
                "agent_message_chunk" => {
                    self.on_answer_chunk(update.text());
                    return Ok(());
                }
                "agent_thought_chunk" => {
                    self.on_thought_chunk(update.text());
                    return Ok(());
                }
                _ => {}
            }
        }
        let params = msg.params();
        let p = &params;
        match msg.method.as_str() {
            "session/update" => self.on_update(p),
            "error" | "fatal_error" => Err(ChatError::Upstream {
                status_code: 500,
                reason: str_field(p, "message")
                    .or_else(|| str_field(p, "error"))
                    .unwrap_or_else(|| msg.method.clone()),
            }),
            "chat/process_step_callback"
                if p.get("step").and_then(Value::as_str) == Some("step_end") =>
            {
                self.saw_step_end = true;
                Ok(())
            }
            // A legacy finish for this request ends the turn as well (its `fullAnswer` is not
            // used: the chunks are the answer).
            "chat/finish" => self.on_finish(p),
            _ => Ok(()),
        }
    }

    fn on_update(&mut self, p: &Value) -> Result<(), ChatError> {
        let Some(update) = p.get("update") else {
            return Ok(());
        };
        let kind = update
            .get("sessionUpdate")
            .and_then(Value::as_str)
            .unwrap_or("");
        match kind {
            "agent_message_chunk" => self.on_answer_chunk(content_text(update)),
            "agent_thought_chunk" => self.on_thought_chunk(content_text(update)),
            "notification" => {
                let kind = update
                    .get("type")
                    .or_else(|| update.pointer("/notification/type"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let data = update
                    .get("data")
                    .or_else(|| update.pointer("/notification/data"))
                    .cloned()
                    .unwrap_or(Value::Null);
                match kind {
                    "context_usage" => {
                        let n = |k: &str| data.get(k).and_then(Value::as_u64);
                        if let (Some(used), Some(limit)) = (n("usedTokens"), n("limitTokens")) {
                            self.context = Some(ContextUsage {
                                used_tokens: used,
                                limit_tokens: limit,
                            });
                        }
                    }
                    "chat_finish" => return self.on_finish(&data),
                    _ => {}
                }
            }
            other => tracing::trace!(kind = other, "session update not used"),
        }
        Ok(())
    }

    /// `chat_finish` (or a legacy `chat/finish`): the end of the turn.
    fn on_finish(&mut self, data: &Value) -> Result<(), ChatError> {
        self.server_done = true;
        let reason = str_field(data, "reason")
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "success".into());
        let status = data
            .get("statusCode")
            .and_then(Value::as_i64)
            .unwrap_or(200);
        if status != 200 && reason != "cancelled" {
            return Err(ChatError::Upstream {
                status_code: status,
                reason,
            });
        }
        self.finish_with(reason, status, EndedBy::Finish);
        Ok(())
    }

    fn on_answer_chunk(&mut self, text: String) {
        if !text.is_empty() {
            self.got_delta = true;
            let pieces = self.splitter.push(&text);
            self.push_pieces(pieces);
        }
    }

    fn on_thought_chunk(&mut self, text: String) {
        if !text.is_empty() {
            self.got_delta = true;
            self.reasoning.push_str(&text);
            self.queue.push_back(ChatEvent::Reasoning(text));
        }
    }

    fn push_pieces(&mut self, pieces: Vec<Piece>) {
        for piece in pieces {
            match piece {
                Piece::Answer(a) => {
                    self.answer.push_str(&a);
                    self.queue.push_back(ChatEvent::Answer(a));
                }
                Piece::Reasoning(r) => {
                    self.reasoning.push_str(&r);
                    self.queue.push_back(ChatEvent::Reasoning(r));
                }
            }
        }
    }

    fn finish_with(&mut self, reason: String, status_code: i64, ended_by: EndedBy) {
        let pieces = self.splitter.finish();
        self.push_pieces(pieces);
        self.queue.push_back(ChatEvent::Finished(ChatFinish {
            reason,
            status_code,
            session_id: self.session_id.clone(),
            request_id: self.request_id.clone(),
            answer: self.answer.clone(),
            reasoning: self.reasoning.clone(),
            ended_by,
            context: self.context,
        }));
        // `done` is set when the finish event is handed out.
    }
}

/// A `session/update` as its chunks come, parsed in place: `{"update": {"sessionUpdate": …,
/// "content": {"text": …}}}` (other members skipped). Content given as a list of blocks does not
/// fit and takes the `Value` path ([`content_text`]).
#[derive(Deserialize)]
struct ChunkUpdate<'a> {
    #[serde(borrow)]
    update: ChunkBody<'a>,
}

#[derive(Deserialize)]
struct ChunkBody<'a> {
    #[serde(rename = "sessionUpdate", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    content: Option<ChunkContent<'a>>,
}

#[derive(Deserialize)]
struct ChunkContent<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

impl ChunkBody<'_> {
    fn text(self) -> String {
        self.content
            .and_then(|c| c.text)
            .map(Cow::into_owned)
            .unwrap_or_default()
    }
}

/// The text of a chunk: `content.text`, or the text blocks of a `content` list.
fn content_text(update: &Value) -> String {
    match update.get("content") {
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect(),
        Some(c) => c
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        None => String::new(),
    }
}

/// The reply of the prompt call; never, once it came.
async fn next_reply(reply: &mut Option<PendingCall>) -> Result<Value, RpcError> {
    match reply {
        Some(r) => r.result().await,
        None => std::future::pending().await,
    }
}

impl Drop for AcpStream {
    fn drop(&mut self) {
        // Also after a timeout or an idle-gap end: the runtime may still be answering.
        if self.server_done || self.rpc.is_closed() || lock(&self.stopped_at).is_some() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let rpc = self.rpc.clone();
        let session = self.session_id.clone();
        let timeout = self.opts.rpc_timeout;
        handle.spawn(async move {
            if let Err(e) = delete_session(&rpc, &session, timeout).await {
                tracing::debug!(error = %e, "deleting the session of an abandoned prompt failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_params_carry_the_request_id_in_meta() {
        let req = ChatRequest {
            question: "q".into(),
            session_id: None,
            model: Some("m".into()),
            mode: AskMode::Agent,
        };
        let v = prompt_params(&req, "r1", "s1");
        assert_eq!(v["sessionId"], "s1");
        assert_eq!(v["prompt"][0], json!({"type": "text", "text": "q"}));
        assert_eq!(v["_meta"][REQUEST_ID_KEY], "r1");
        assert_eq!(v["_meta"]["ai-coding/mode"], "agent");
        assert_eq!(v["_meta"]["ai-coding/model"], "m");
        assert_eq!(v["_meta"]["ai-coding/enabled-mcp-servers"], json!([]));
        assert!(v.get("requestId").is_none() && v.get("contextParams").is_none());
    }

    #[test]
    fn chunks_are_read_in_place_and_other_shapes_take_the_value_path() {
        let typed = |s: &str| {
            serde_json::from_str::<ChunkUpdate>(s)
                .ok()
                .map(|c| (c.update.kind.to_string(), c.update.text()))
        };
        let chunk = r#"{"sessionId":"s","update":{"sessionUpdate":"agent_message_chunk",
            "content":{"type":"text","text":"a\"b\u00e9"}},"_meta":{"x":[1,{"y":null}]}}"#;
        assert_eq!(
            typed(chunk),
            Some(("agent_message_chunk".into(), "a\"b\u{e9}".into()))
        );
        // No content, as `content_text` reads it: an empty chunk.
        let empty = r#"{"update":{"sessionUpdate":"agent_thought_chunk","content":null}}"#;
        assert_eq!(
            typed(empty),
            Some(("agent_thought_chunk".into(), String::new()))
        );
        // Blocks, or a text that is not a string: not this shape.
        let blocks =
            r#"{"update":{"sessionUpdate":"agent_message_chunk","content":[{"text":"a"}]}}"#;
        assert_eq!(typed(blocks), None);
        assert_eq!(
            typed(r#"{"update":{"sessionUpdate":"x","content":{"text":5}}}"#),
            None
        );
    }

    #[test]
    fn chunk_text_in_both_shapes() {
        assert_eq!(
            content_text(&json!({"content": {"type": "text", "text": "ab"}})),
            "ab"
        );
        assert_eq!(
            content_text(&json!({"content": [{"type": "text", "text": "a"}, {"text": "b"}]})),
            "ab"
        );
        assert_eq!(content_text(&json!({})), "");
    }

    #[test]
    fn refusals_map_to_chat_errors() {
        assert!(matches!(
            refusal("NOT_LOGIN".into(), String::new()),
            ChatError::NotLoggedIn
        ));
        assert!(matches!(
            refusal("-32602".into(), "session is busy".into()),
            ChatError::Busy
        ));
        assert!(matches!(
            refusal("-32602".into(), "cwd missing".into()),
            ChatError::Rejected { .. }
        ));
    }
}
