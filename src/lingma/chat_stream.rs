//! One question and its answer, in either dialect: the question ([`ChatRequest`]), the events of
//! its answer ([`ChatEvent`], [`ChatFinish`]) and the stream that hands them out ([`ChatStream`]),
//! which runs the legacy state machine below or the ACP one (`acp.rs`), as the connection's
//! dialect says. Callers never see which.
//!
//! The legacy state machine ([`LegacyStream`]: `chat/ask` and its callbacks) copes with what
//! Lingma really sends: `overwrite` deltas that replace the answer, an answer replayed from its
//! start after a remote retry (held back until told apart), a fenced think block split out as
//! reasoning, a turn that ends with `step_end` and silence instead of `chat/finish` (the idle
//! gap), and the off-by-one workaround (a trigger ask whose answer carries the real one).

use std::collections::VecDeque;
use std::task::Poll;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use thiserror::Error;
use tokio::sync::mpsc;

use super::acp::AcpStream;
use super::client::{ClientOptions, str_field, success};
use super::dialect::Dialect;
use super::rpc::{Delivery, RpcConnection, RpcError, ServerMessage};
use super::think::{Piece, ThinkSplitter};

/// How a chat ended badly.
#[derive(Debug, Error, Clone)]
pub enum ChatError {
    #[error("Lingma is not logged in")]
    NotLoggedIn,
    #[error("another chat is in progress on this connection")]
    Busy,
    #[error("Lingma refused the question: {code} {message}")]
    Rejected { code: String, message: String },
    #[error("Lingma finished with status {status_code}: {reason}")]
    Upstream { status_code: i64, reason: String },
    #[error("the Lingma connection was lost mid-answer")]
    ConnectionLost,
    #[error("Lingma sent nothing for {}s ({phase})", after.as_secs_f32())]
    Timeout {
        phase: &'static str,
        after: Duration,
    },
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AskMode {
    #[default]
    Chat,
    Agent,
}

/// One question to Lingma.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    pub question: String,
    /// An upstream session to continue; `None` starts a new conversation.
    pub session_id: Option<String>,
    pub model: Option<String>,
    pub mode: AskMode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    Reasoning(String),
    Answer(String),
    /// Lingma replaced the answer with text that does not extend what was already sent
    /// (`overwrite:true`); this is the whole new answer.
    Replace(String),
    Finished(ChatFinish),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    Finish,
    /// `step_end` followed by silence.
    IdleGap,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatFinish {
    pub reason: String,
    pub status_code: i64,
    pub session_id: String,
    pub request_id: String,
    pub answer: String,
    pub reasoning: String,
    pub ended_by: EndedBy,
    /// The context window's use as the runtime last reported it (ACP `context_usage`; the legacy
    /// dialect never reports it).
    pub context: Option<ContextUsage>,
}

/// Tokens of the session's context window in use, and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ContextUsage {
    pub used_tokens: u64,
    pub limit_tokens: u64,
}

pub(super) fn new_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn ask_params(req: &ChatRequest, request_id: &str, session_id: &str, is_reply: bool) -> Value {
    let (mode, session_type) = match req.mode {
        AskMode::Chat => ("normal", "chat"),
        AskMode::Agent => ("agent", "assistant"),
    };
    let extra = match &req.model {
        Some(key) => json!({"modelConfig": {"key": key}}),
        None => json!({}),
    };
    json!({
        "requestId": request_id,
        "chatTask": "FREE_INPUT",
        "chatContext": null,
        "sessionId": session_id,
        "codeLanguage": "",
        "isReply": is_reply,
        "source": 1,
        "questionText": req.question,
        "stream": true,
        "taskDefinitionType": "",
        "extra": extra,
        "sessionType": session_type,
        "targetAgent": "",
        "pluginPayloadConfig": null,
        "mode": mode,
        "shellType": "",
        "customModel": null,
    })
}

async fn send_ask(rpc: &RpcConnection, ask: Value, timeout: Duration) -> Result<(), ChatError> {
    let result = match rpc.call("chat/ask", ask, timeout).await {
        Ok(v) => v,
        Err(RpcError::Remote {
            code: -32602,
            message,
            ..
        }) if message.to_ascii_lowercase().contains("in progress") => {
            rpc.unsubscribe();
            return Err(ChatError::Busy);
        }
        Err(e) => {
            rpc.unsubscribe();
            return Err(e.into());
        }
    };
    if success(&result) {
        return Ok(());
    }
    rpc.unsubscribe();
    let code = str_field(&result, "errorCode").unwrap_or_default();
    let message = str_field(&result, "errorMessage")
        .or_else(|| str_field(&result, "errorMsg"))
        .unwrap_or_default();
    if code.eq_ignore_ascii_case("NOT_LOGIN") {
        return Err(ChatError::NotLoggedIn);
    }
    Err(ChatError::Rejected { code, message })
}

/// The events of one answer, in the connection's dialect. Dropping an unfinished stream stops the
/// answer upstream (`chat/stop`, or deleting the ACP session).
pub struct ChatStream {
    inner: Inner,
}

enum Inner {
    Legacy(LegacyStream),
    Acp(AcpStream),
}

impl ChatStream {
    pub(super) fn legacy(s: LegacyStream) -> Self {
        Self {
            inner: Inner::Legacy(s),
        }
    }

    pub(super) fn acp(s: AcpStream) -> Self {
        Self {
            inner: Inner::Acp(s),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match &self.inner {
            Inner::Legacy(_) => Dialect::Legacy,
            Inner::Acp(_) => Dialect::Acp,
        }
    }

    pub fn request_id(&self) -> &str {
        match &self.inner {
            Inner::Legacy(s) => s.request_id(),
            Inner::Acp(s) => s.request_id(),
        }
    }

    /// The upstream session, as last reported by Lingma.
    pub fn session_id(&self) -> &str {
        match &self.inner {
            Inner::Legacy(s) => s.session_id(),
            Inner::Acp(s) => s.session_id(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        match &self.inner {
            Inner::Legacy(s) => s.elapsed(),
            Inner::Acp(s) => s.elapsed(),
        }
    }

    /// Asks Lingma to stop this answer; the stream then ends with a `cancelled` finish.
    pub async fn stop(&self) -> Result<(), RpcError> {
        match &self.inner {
            Inner::Legacy(s) => s.stop().await,
            Inner::Acp(s) => s.stop().await,
        }
    }

    /// The next event; `None` after the finish event or an error.
    pub async fn next(&mut self) -> Option<Result<ChatEvent, ChatError>> {
        match &mut self.inner {
            Inner::Legacy(s) => s.next().await,
            Inner::Acp(s) => s.next().await,
        }
    }

    /// The next event if it is ready without waiting (already received, or its message already
    /// read off the connection); `Poll::Pending` when [`ChatStream::next`] would have to wait.
    /// A consumer that reads a burst of events this way skips setting up its own timers per event.
    pub fn try_next(&mut self) -> Poll<Option<Result<ChatEvent, ChatError>>> {
        match &mut self.inner {
            Inner::Legacy(s) => s.try_next(),
            Inner::Acp(s) => s.try_next(),
        }
    }

    /// Reads the stream to its end and returns the finish (with the whole answer).
    pub async fn collect(mut self) -> Result<ChatFinish, ChatError> {
        while let Some(ev) = self.next().await {
            if let ChatEvent::Finished(f) = ev? {
                return Ok(f);
            }
        }
        Err(ChatError::ConnectionLost)
    }
}

/// The callbacks of one legacy ask, as events. Dropping an unfinished stream sends `chat/stop`.
pub(super) struct LegacyStream {
    rpc: RpcConnection,
    opts: ClientOptions,
    rx: mpsc::Receiver<ServerMessage>,
    /// The ask the caller made.
    request_id: String,
    /// Whose callbacks are read: the ask itself, or the trigger ask of the off-by-one workaround.
    active_id: String,
    session_id: String,
    model: Option<String>,
    mode: AskMode,
    queue: VecDeque<ChatEvent>,
    splitter: ThinkSplitter,
    /// The answer text as Lingma sent it (think block included).
    raw: String,
    /// The text that went through the splitter already.
    fed: String,
    /// Text held back as a suspected replay (see `on_answer`).
    held: String,
    answer: String,
    reasoning: String,
    saw_step_end: bool,
    got_delta: bool,
    trigger_pending: bool,
    /// No more events will be handed out.
    done: bool,
    /// Lingma ended this ask itself (`chat/finish`) or the connection is gone: no `chat/stop`
    /// is owed.
    server_done: bool,
    started: Instant,
    last_message: Instant,
}

impl LegacyStream {
    /// Sends `chat/ask` on `rpc` and returns the stream of its callbacks. The connection carries
    /// one chat at a time: Lingma refuses a second ask while one runs.
    pub(super) async fn start(
        rpc: &RpcConnection,
        opts: &ClientOptions,
        req: ChatRequest,
    ) -> Result<Self, ChatError> {
        let rx = rpc.subscribe(Delivery::Wait);
        let session_id = req
            .session_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let request_id = new_request_id();
        let ask = ask_params(&req, &request_id, &session_id, false);
        send_ask(rpc, ask, opts.rpc_timeout).await?;
        let now = Instant::now();
        Ok(Self {
            rpc: rpc.clone(),
            opts: opts.clone(),
            rx,
            request_id: request_id.clone(),
            active_id: request_id,
            session_id,
            model: req.model,
            mode: req.mode,
            queue: VecDeque::new(),
            splitter: ThinkSplitter::default(),
            raw: String::new(),
            fed: String::new(),
            held: String::new(),
            answer: String::new(),
            reasoning: String::new(),
            saw_step_end: false,
            got_delta: false,
            trigger_pending: false,
            done: false,
            server_done: false,
            started: now,
            last_message: now,
        })
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The upstream session, as last reported by Lingma.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Asks Lingma to stop this answer; the stream then ends with a `cancelled` finish.
    pub async fn stop(&self) -> Result<(), RpcError> {
        self.rpc
            .call(
                "chat/stop",
                json!({"requestId": self.active_id, "sessionId": self.session_id}),
                self.opts.rpc_timeout,
            )
            .await
            .map(|_| ())
    }

    /// An event already decided. Only the queue counts here: handling a waiting callback may need
    /// a call to Lingma (the trigger ask of the off-by-one workaround), which `next` makes.
    fn try_next(&mut self) -> Poll<Option<Result<ChatEvent, ChatError>>> {
        if let Some(ev) = self.queue.pop_front() {
            if matches!(ev, ChatEvent::Finished(_)) {
                self.done = true;
                self.rpc.unsubscribe();
            }
            return Poll::Ready(Some(Ok(ev)));
        }
        if self.done {
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    /// The next event; `None` after the finish event or an error.
    pub async fn next(&mut self) -> Option<Result<ChatEvent, ChatError>> {
        loop {
            if let Poll::Ready(ev) = self.try_next() {
                return ev;
            }
            // Lingma 2.11 was captured sending step_end *before* the answer deltas, so the idle
            // gap that ends a turn without chat/finish only counts once the answer has begun.
            let (wait, phase) = if self.trigger_pending {
                (self.opts.idle_finish, "before the trigger ask")
            } else if !self.got_delta {
                (self.opts.first_token_timeout, "waiting for the first token")
            } else if self.saw_step_end {
                (self.opts.idle_finish, "after step_end")
            } else {
                (self.opts.stall_timeout, "mid-answer")
            };
            let deadline = self.last_message + wait;
            let msg = match tokio::time::timeout_at(deadline.into(), self.rx.recv()).await {
                Ok(Some(msg)) => msg,
                Ok(None) => {
                    self.server_done = true;
                    return Some(self.fail(ChatError::ConnectionLost));
                }
                Err(_) if self.trigger_pending => {
                    if let Err(e) = self.send_trigger().await {
                        return Some(self.fail(e));
                    }
                    continue;
                }
                Err(_) if self.saw_step_end && self.got_delta => {
                    self.finish_with("success".into(), 200, EndedBy::IdleGap);
                    continue;
                }
                Err(_) => {
                    return Some(self.fail(ChatError::Timeout { phase, after: wait }));
                }
            };
            if let Err(e) = self.handle(msg).await {
                return Some(self.fail(e));
            }
        }
    }

    fn fail(&mut self, e: ChatError) -> Result<ChatEvent, ChatError> {
        self.done = true;
        self.rpc.unsubscribe();
        Err(e)
    }

    async fn handle(&mut self, msg: ServerMessage) -> Result<(), ChatError> {
        let params = msg.params();
        let p = &params;
        let request_id = p.get("requestId").and_then(Value::as_str);
        let for_us = |id: &str| request_id == Some(id);
        // Qoder CN reports failures as `error`/`fatal_error`, with our requestId or none (one ask
        // per connection, so an id-less error is ours).
        if matches!(msg.method.as_str(), "error" | "fatal_error")
            && request_id.is_none_or(|id| id == self.active_id || id == self.request_id)
        {
            let reason = str_field(p, "message")
                .or_else(|| str_field(p, "error"))
                .unwrap_or_else(|| msg.method.clone());
            return Err(ChatError::Upstream {
                status_code: 500,
                reason,
            });
        }
        // Only this ask's own messages count as signs of life for its timeouts.
        if for_us(&self.active_id) || for_us(&self.request_id) {
            self.last_message = Instant::now();
        }
        let workaround_waiting =
            self.opts.off_by_one_workaround && self.active_id == self.request_id;
        if workaround_waiting {
            // Lingma 2.11 was seen answering each ask with the previous question's answer:
            // everything said under the real ask's id is stale; only its end matters, to know
            // when to send the trigger.
            if for_us(&self.request_id) {
                if let Some(sid) = str_field(p, "sessionId").filter(|s| !s.is_empty()) {
                    self.session_id = sid;
                }
                match msg.method.as_str() {
                    "chat/process_step_callback"
                        if p.get("step").and_then(Value::as_str) == Some("step_end") =>
                    {
                        self.saw_step_end = true;
                        self.trigger_pending = true;
                    }
                    "chat/finish" => self.send_trigger().await?,
                    _ => {}
                }
            }
            return Ok(());
        }
        if !for_us(&self.active_id) {
            return Ok(());
        }
        if let Some(sid) = str_field(p, "sessionId").filter(|s| !s.is_empty()) {
            self.session_id = sid;
        }
        match msg.method.as_str() {
            "chat/answer" => {
                let text = str_field(p, "text").unwrap_or_default();
                let overwrite = p.get("overwrite").and_then(Value::as_bool).unwrap_or(false);
                self.on_answer(&text, overwrite);
            }
            "chat/think" => {
                let text = str_field(p, "text").unwrap_or_default();
                if !text.is_empty() {
                    self.got_delta = true;
                    self.reasoning.push_str(&text);
                    self.queue.push_back(ChatEvent::Reasoning(text));
                }
            }
            "chat/process_step_callback"
                if p.get("step").and_then(Value::as_str) == Some("step_end") =>
            {
                self.saw_step_end = true;
            }
            "chat/finish" => {
                let status = p.get("statusCode").and_then(Value::as_i64).unwrap_or(200);
                let reason = str_field(p, "reason").unwrap_or_else(|| "success".into());
                if let Some(full) = str_field(p, "fullAnswer")
                    && self.raw.is_empty()
                    && !full.is_empty()
                    && status == 200
                {
                    self.on_answer(&full, false);
                }
                self.server_done = true;
                if status != 200 && reason != "cancelled" {
                    return Err(ChatError::Upstream {
                        status_code: status,
                        reason,
                    });
                }
                self.finish_with(reason, status, EndedBy::Finish);
            }
            _ => {}
        }
        Ok(())
    }

    fn on_answer(&mut self, text: &str, overwrite: bool) {
        self.got_delta = true;
        if overwrite {
            // An overwrite states the whole buffer: it settles any suspected replay.
            self.held.clear();
            self.apply_text(text, true);
            return;
        }
        if text.is_empty() {
            return;
        }
        // When Lingma's upstream connection drops mid-answer, it retries and replays the answer
        // from its start before an overwrite corrects it. Text that repeats the start of what was already sent is held back
        // until it is told apart: an overwrite confirms the replay (held text dropped), anything
        // else releases it unchanged. Nothing is ever dropped without that confirmation.
        let suspect = !self.held.is_empty()
            || (self.raw.len() == self.fed.len() && self.fed.starts_with(text));
        if suspect {
            let mut candidate = std::mem::take(&mut self.held);
            candidate.push_str(text);
            if self.fed.starts_with(candidate.as_str()) {
                self.held = candidate;
                return;
            }
            self.apply_text(&candidate, false);
            return;
        }
        self.apply_text(text, false);
    }

    /// Releases held-back text at the end of the answer (it was not a replay after all).
    fn release_held(&mut self) {
        if !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            self.apply_text(&held, false);
        }
    }

    fn apply_text(&mut self, text: &str, overwrite: bool) {
        // Invariant: `raw` and `fed` are prefixes of one another, so equal lengths mean equal text.
        let was_in_sync = self.raw.len() == self.fed.len();
        if overwrite {
            self.raw.clear();
        }
        self.raw.push_str(text);
        let extends = (!overwrite && was_in_sync) || self.raw.starts_with(self.fed.as_str());
        if extends {
            if self.raw.len() > self.fed.len() {
                // `fed` is a prefix of `raw`, so its length is a char boundary of `raw`.
                let new = self.raw[self.fed.len()..].to_string();
                self.fed.push_str(&new);
                let pieces = self.splitter.push(&new);
                self.push_pieces(pieces);
            }
            return;
        }
        if self.fed.starts_with(self.raw.as_str()) {
            // A retried generation (after an upstream EOF) re-sends text we already have: only
            // what goes beyond it is new.
            return;
        }
        self.fed = self.raw.clone();
        let mut splitter = ThinkSplitter::default();
        let mut answer = String::new();
        let mut reasoning = String::new();
        for piece in splitter
            .push(&self.raw)
            .into_iter()
            .chain(splitter.finish())
        {
            match piece {
                Piece::Answer(a) => answer.push_str(&a),
                Piece::Reasoning(r) => reasoning.push_str(&r),
            }
        }
        // Later deltas extend the new text as a whole: keep splitting from its end.
        self.splitter = ThinkSplitter::after_text(&self.raw);
        self.answer = answer.clone();
        self.reasoning = reasoning;
        self.queue.push_back(ChatEvent::Replace(answer));
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
        self.release_held();
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
            context: None,
        }));
        // `done` is set when the finish event is handed out.
    }

    /// The off-by-one workaround: a throw-away follow-up whose answer carries the real one.
    async fn send_trigger(&mut self) -> Result<(), ChatError> {
        self.trigger_pending = false;
        self.saw_step_end = false;
        self.got_delta = false;
        let trigger_id = new_request_id();
        let req = ChatRequest {
            question: "OK".into(),
            session_id: Some(self.session_id.clone()),
            model: self.model.clone(),
            mode: self.mode,
        };
        let ask = ask_params(&req, &trigger_id, &self.session_id, true);
        self.active_id = trigger_id;
        self.last_message = Instant::now();
        // The subscription stays in place: send_ask only drops it on failure.
        send_ask(&self.rpc, ask, self.opts.rpc_timeout).await
    }
}

impl Drop for LegacyStream {
    fn drop(&mut self) {
        // Also after a timeout or an idle-gap end: Lingma may still be answering.
        if self.server_done || self.rpc.is_closed() {
            return;
        }
        if !self.done {
            // Once done, the subscription was already dropped; the connection may carry
            // another ask by now, whose subscription must stay.
            self.rpc.unsubscribe();
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let rpc = self.rpc.clone();
        let params = json!({"requestId": self.active_id, "sessionId": self.session_id});
        let timeout = self.opts.rpc_timeout;
        handle.spawn(async move {
            if let Err(e) = rpc.call("chat/stop", params, timeout).await {
                tracing::debug!(error = %e, "chat/stop after an abandoned answer failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ask_params_map_mode_and_model() {
        let req = ChatRequest {
            question: "q".into(),
            session_id: None,
            model: Some("m".into()),
            mode: AskMode::Agent,
        };
        let v = ask_params(&req, "r", "s", false);
        assert_eq!(v["mode"], "agent");
        assert_eq!(v["sessionType"], "assistant");
        assert_eq!(v["extra"]["modelConfig"]["key"], "m");
        assert_eq!(v["questionText"], "q");
        assert_eq!(v["sessionId"], "s");
        assert_eq!(v["stream"], true);
    }
}
