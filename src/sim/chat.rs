//! `chat/ask` (docs/simulator.md, "chat/ask"): parameter checks, the deterministic reply generator,
//! and the per-turn stream task that sends the answer in Lingma's order and injects the faults.
//! The stream serves both dialects: `acp.rs` (`session/prompt`) plans its turns with [`prepare`]
//! and runs them here too, so faults, delays, agent scripts and the session store behave the same.
//!
//! Legacy stream order: `process_step_callback step_start` -> first-token delay -> thinking
//! (`chat/think` callbacks for reasoning models in callback style) -> `session/title/update`
//! (first turn) -> `chat/answer` deltas (inline think block first, empty deltas included) ->
//! `process_step_callback step_end` -> `chat/finish`. Every callback is a request with a
//! server-assigned integer id; with `--strict-acks` the stream waits for each ack.
//!
//! ACP stream order (§12.2): the same legacy `step_start`, `session/title/update` and `step_end`
//! callbacks (real runtimes send them during ACP turns too), but the thinking as
//! `agent_thought_chunk` and the answer as `agent_message_chunk` `session/update` notifications
//! (no empty ones), then `snapshot/syncAll`, a `context_usage` notification, the `chat_finish`
//! notification (whose `fullAnswer` is empty, as seen) and, late, the prompt's `null` reply.
//! `overwrite`, `retry` and `off-by-one` are legacy quirks and do nothing here.
//!
//! The turn is recorded, and the connection freed for the next ask, *before* the final
//! `chat/finish` is sent, so a client that asks again (or reads the session) as soon as it sees
//! the finish never races the simulator.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::config::{DEFAULT_FAULT_AFTER, Faults, PromptReply, ThinkStyle};
use super::conn::{Conn, Wire};
use super::models::{self, DEFAULT_MODEL};
use super::server::{INVALID_PARAMS, Reply};
use super::state::{RunningChat, Shared};
use super::store::ChatRecord;
use super::{agent, directives};
use crate::lingma::Dialect;
use crate::lingma::acp::REQUEST_ID_KEY;
use crate::util::lock;
use crate::util::unix_millis;

/// Frames per WebSocket message under the `batch` fault.
const BATCH: usize = 3;
const THINK_MS: u64 = 1200;
/// The context window an ACP runtime reports in `context_usage`.
const ACP_CONTEXT_LIMIT: u64 = 131_072;
pub const QUOTA_REASON: &str =
    "quota exceeded: the free quota of this account is used up, please upgrade or try again later";

const REPLY_MARK: &str = "Reply with exactly:";

/// The reply to a question (directives already removed): the rest of the line after the last
/// `Reply with exactly:` (trimmed), else `echo: ` + the question.
pub fn generate_reply(question: &str) -> String {
    if let Some(pos) = question.rfind(REPLY_MARK) {
        let rest = &question[pos + REPLY_MARK.len()..];
        return rest.split('\n').next().unwrap_or("").trim().to_string();
    }
    format!("echo: {question}")
}

/// `w1 w2 ... wN`: answers of a known length for the `len` directive.
pub fn words(n: usize) -> String {
    let mut s = String::with_capacity(n * 6);
    for i in 1..=n {
        if i > 1 {
            s.push(' ');
        }
        s.push('w');
        s.push_str(&i.to_string());
    }
    s
}

/// Splits into pieces of `size` characters (never inside a character); 0 means one piece.
pub fn chunk_text(text: &str, size: usize) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    if size == 0 {
        return vec![text.to_string()];
    }
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

fn title_of(question: &str) -> String {
    let first = question.trim().lines().next().unwrap_or("").trim();
    let t: String = first.chars().take(30).collect();
    if t.is_empty() {
        "New Chat".to_string()
    } else {
        t
    }
}

pub fn think_block(thinking: &str) -> String {
    format!("````think::{THINK_MS}\n{thinking}\n````\n")
}

fn error_reason(code: u16) -> String {
    let text = match code {
        400 => "bad request",
        401 | 403 => "unauthorized",
        408 => "request timeout",
        429 => "too many requests",
        500 => "internal server error",
        502..=504 => "service unavailable",
        _ => "error",
    };
    format!("error: {text} (statusCode {code})")
}

/// Everything decided when the ask is accepted.
pub struct Plan {
    dialect: Dialect,
    /// The id of the `session/prompt` call, answered after the finish (ACP, `late` reply).
    late_reply: Option<Value>,
    request_id: String,
    session_id: String,
    session_type: String,
    question: String,
    chat_task: String,
    chat_context: Value,
    model_key: String,
    model_known: bool,
    stream: bool,
    first_turn: bool,
    title: String,
    /// The text streamed as `chat/answer` deltas (inline think block included; under off-by-one
    /// the previous ask's text).
    emitted: String,
    /// Thinking for `chat/think` callbacks (callback style only).
    think_callbacks: Option<String>,
    faults: Faults,
    first_token_delay: Duration,
    chunk_delay: Duration,
    chunk_size: usize,
    after: usize,
    wire: Wire,
    strict: bool,
    started: i64,
}

fn invalid(msg: &str) -> Reply {
    Reply::Err(INVALID_PARAMS, format!("invalid params: {msg}"))
}

pub async fn ask(shared: &Arc<Shared>, conn: &Arc<Conn>, id: Value, params: Value) -> Reply {
    let Some(p) = params.as_object() else {
        return invalid("expected an object");
    };
    let request_id = match p.get("requestId") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return invalid("requestId is required"),
    };
    let question = match p.get("questionText") {
        Some(Value::String(s)) => s.clone(),
        _ => return invalid("questionText is required"),
    };
    let text_param = |k: &str| p.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let session_in = text_param("sessionId").unwrap_or("").to_string();
    let session_type = text_param("sessionType").unwrap_or("chat").to_string();
    let chat_task = text_param("chatTask").unwrap_or("FREE_INPUT").to_string();
    let stream = p.get("stream").and_then(Value::as_bool).unwrap_or(true);
    let model_key = p
        .get("extra")
        .and_then(|e| e.get("modelConfig"))
        .and_then(|m| m.get("key"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_MODEL)
        .to_string();

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
            .warn(&format!("chat rejected, {msg}: requestId {request_id}"));
        return Reply::Ok(json!({"success": false, "errorCode": "NOT_LOGIN", "errorMessage": msg}));
    }
    {
        let mut running = lock(&conn.chat);
        if running.is_some() {
            return Reply::Err(INVALID_PARAMS, "Another chat is in progress".to_string());
        }
        *running = Some(request_id.clone());
    }
    let session_id = if session_in.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        session_in
    };
    *lock(&conn.last_session) = Some(session_id.clone());
    let stop = CancellationToken::new();
    let plan = prepare(
        shared,
        Turn {
            dialect: Dialect::Legacy,
            request_id,
            session_id,
            session_type,
            question,
            clean: d.text,
            chat_task,
            chat_context: p.get("chatContext").cloned().unwrap_or(Value::Null),
            model_key,
            stream,
            faults,
        },
        stop.clone(),
    );
    shared.log.debug(&format!(
        "doAsk requestId: {}, sessionId: {}, model: {}, params.SessionType: {}",
        plan.request_id, plan.session_id, plan.model_key, plan.session_type
    ));
    conn.respond(
        id,
        json!({"success": true, "errorCode": "", "errorMessage": ""}),
    )
    .await;
    spawn_stream(shared, conn, plan, stop);
    Reply::Sent
}

/// What a turn is asked, in either dialect, once its request is checked.
pub struct Turn {
    pub dialect: Dialect,
    pub request_id: String,
    pub session_id: String,
    pub session_type: String,
    /// As received, directives included (recorded so).
    pub question: String,
    /// Without directives (what the reply is generated from).
    pub clean: String,
    pub chat_task: String,
    pub chat_context: Value,
    pub model_key: String,
    pub stream: bool,
    pub faults: Faults,
}

/// Decides a turn: its answer (generated, scripted by the agent directives, or `len` words), its
/// thinking, its title, its pacing and faults; registers it as running (`chat/stop` and
/// `chat/deleteSessionById` cancel `stop`) and creates its session in the store when new.
pub fn prepare(shared: &Arc<Shared>, t: Turn, stop: CancellationToken) -> Plan {
    let cfg = &shared.cfg;
    let faults = t.faults;
    let session_id = t.session_id;
    let question = t.question;
    let model = models::find(&t.model_key);
    let clean = if t.clean.len() == question.len() {
        t.clean
    } else {
        t.clean.trim().to_string()
    };
    // An agent's turn (tool instructions and a script of calls), read from the session's
    // questions so far and this one.
    let agent_answer = {
        let store = lock(&shared.sessions);
        let (earlier, correcting): (Vec<String>, bool) = match store.get(&session_id) {
            Some(s) => (
                s.chat_records.iter().map(|r| r.question.clone()).collect(),
                s.agent_broken,
            ),
            None => (Vec::new(), false),
        };
        let earlier: Vec<&str> = earlier.iter().map(String::as_str).collect();
        agent::answer(&earlier, &question, correcting)
    };
    let agent_broken = agent_answer.as_ref().is_some_and(|a| a.broken);
    let answer = match (faults.len, agent_answer) {
        (Some(n), _) => words(n),
        (None, Some(a)) => a.text,
        (None, None) => generate_reply(&clean),
    };
    let title = title_of(&clean);
    let acp = t.dialect == Dialect::Acp;
    // ACP runtimes send thinking as its own updates; the legacy socket as the knob says.
    let think_style = if acp {
        ThinkStyle::Callback
    } else {
        faults.think.unwrap_or(cfg.think)
    };
    let thinking = model
        .filter(|m| m.is_reasoning)
        .map(|_| format!("The user asks: {title}. I will answer exactly what was asked."));
    let (full, think_callbacks) = match (&thinking, think_style) {
        (Some(t), ThinkStyle::Inline) => (format!("{}{answer}", think_block(t)), None),
        (Some(t), ThinkStyle::Callback) => (answer, Some(t.clone())),
        (None, _) => (answer, None),
    };

    let (first_turn, emitted) = {
        let mut store = lock(&shared.sessions);
        let s = store.session_mut(&session_id, &t.session_type);
        let first_turn = !s.started && s.chat_records.is_empty();
        s.started = true;
        if first_turn {
            s.session_title = title.clone();
        }
        if let Some(u) = &lock(&shared.login).user {
            s.user_id = u.uid.clone();
            s.user_name = u.name.clone();
        }
        if faults.off_by_one == Some(true) && !acp {
            s.off_by_one = true;
        }
        s.agent_broken = agent_broken;
        let emitted = if s.off_by_one && faults.off_by_one != Some(false) && !acp {
            s.pending_answer.replace(full).unwrap_or_default()
        } else {
            full
        };
        (first_turn, emitted)
    };

    lock(&shared.chats).insert(
        t.request_id.clone(),
        RunningChat {
            session_id: session_id.clone(),
            stop,
        },
    );
    Plan {
        dialect: t.dialect,
        late_reply: None,
        request_id: t.request_id,
        session_id,
        session_type: t.session_type,
        question,
        chat_task: t.chat_task,
        chat_context: t.chat_context,
        model_known: model.is_some(),
        model_key: t.model_key,
        stream: t.stream,
        first_turn,
        title,
        emitted,
        think_callbacks,
        first_token_delay: faults.slow.unwrap_or(cfg.first_token_delay),
        chunk_delay: faults.delay.unwrap_or(cfg.chunk_delay),
        chunk_size: faults.chunk.unwrap_or(cfg.chunk_size),
        after: faults.after.unwrap_or(DEFAULT_FAULT_AFTER),
        wire: Wire::from_faults(faults.split.unwrap_or(false), faults.batch.unwrap_or(false)),
        faults,
        strict: cfg.strict_acks,
        started: unix_millis(),
    }
}

impl Plan {
    /// Answer the `session/prompt` call `id` after the turn's finish.
    pub fn reply_late(&mut self, id: Value) {
        self.late_reply = Some(id);
    }

    pub fn prompt_reply(&self) -> PromptReply {
        self.faults.prompt_reply.unwrap_or_default()
    }
}

/// Runs a planned turn's stream on `conn`.
pub fn spawn_stream(shared: &Arc<Shared>, conn: &Arc<Conn>, plan: Plan, stop: CancellationToken) {
    let s = Stream {
        shared: shared.clone(),
        conn: conn.clone(),
        stop,
        group: Vec::new(),
        waits: Vec::new(),
        visible: String::new(),
        finalized: false,
    };
    shared.tasks.spawn(s.run(plan));
}

/// Why a stream stopped early.
enum Abort {
    /// `chat/stop`: finish with reason `cancelled`.
    Stopped,
    /// The connection is gone (or the simulator crashed / is stopping): send nothing more.
    Gone,
}

/// How a stream that ran to its end finishes.
enum End {
    Finish {
        reason: String,
        code: u16,
    },
    /// Fault `no-finish`: step_end, then silence.
    Silent,
}

struct Stream {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    stop: CancellationToken,
    /// Frames not yet handed to the connection (more than one only under `batch`).
    group: Vec<String>,
    waits: Vec<oneshot::Receiver<()>>,
    /// What a client honouring `overwrite` holds now.
    visible: String,
    finalized: bool,
}

impl Stream {
    fn params(&self, plan: &Plan, extra: Value) -> Value {
        let mut m = Map::new();
        m.insert("requestId".into(), Value::String(plan.request_id.clone()));
        m.insert("sessionId".into(), Value::String(plan.session_id.clone()));
        if let Value::Object(e) = extra {
            m.extend(e);
        }
        Value::Object(m)
    }

    async fn emit(&mut self, plan: &Plan, method: &str, params: Value) -> Result<(), Abort> {
        if self.stop.is_cancelled() {
            return Err(Abort::Stopped);
        }
        let (body, rx) = self.conn.server_request(method, params, plan.strict);
        self.group.push(body);
        self.waits.extend(rx);
        if plan.wire != Wire::Batch || self.group.len() >= BATCH {
            self.flush(plan).await?;
        }
        Ok(())
    }

    /// A notification (ACP updates are not requests: nothing to ack).
    async fn notify(&mut self, plan: &Plan, method: &str, params: Value) -> Result<(), Abort> {
        if self.stop.is_cancelled() {
            return Err(Abort::Stopped);
        }
        self.group.push(Conn::notification(method, params));
        if plan.wire != Wire::Batch || self.group.len() >= BATCH {
            self.flush(plan).await?;
        }
        Ok(())
    }

    /// The `session/update` params of one ACP update of this prompt.
    fn update(&self, plan: &Plan, update: Value) -> Value {
        json!({
            "sessionId": plan.session_id,
            "update": update,
            "_meta": {REQUEST_ID_KEY: plan.request_id},
        })
    }

    async fn flush(&mut self, plan: &Plan) -> Result<(), Abort> {
        if self.group.is_empty() {
            return Ok(());
        }
        let bodies = std::mem::take(&mut self.group);
        if !self.conn.send(bodies, plan.wire).await {
            return Err(Abort::Gone);
        }
        for rx in std::mem::take(&mut self.waits) {
            tokio::select! {
                biased;
                _ = self.conn.closed.cancelled() => return Err(Abort::Gone),
                _ = self.stop.cancelled() => return Err(Abort::Stopped),
                r = rx => if r.is_err() { return Err(Abort::Gone) },
            }
        }
        Ok(())
    }

    async fn pause(&mut self, plan: &Plan, d: Duration) -> Result<(), Abort> {
        self.flush(plan).await?;
        if d.is_zero() {
            return if self.stop.is_cancelled() {
                Err(Abort::Stopped)
            } else {
                Ok(())
            };
        }
        tokio::select! {
            biased;
            _ = self.conn.closed.cancelled() => Err(Abort::Gone),
            _ = self.stop.cancelled() => Err(Abort::Stopped),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    async fn step(&mut self, plan: &Plan, step: &str) -> Result<(), Abort> {
        let p = self.params(
            plan,
            json!({"step": step, "description": "", "status": "done", "result": null, "message": ""}),
        );
        self.emit(plan, "chat/process_step_callback", p).await
    }

    async fn delta(&mut self, plan: &Plan, text: &str, overwrite: bool) -> Result<(), Abort> {
        if overwrite {
            self.visible.clear();
        }
        self.visible.push_str(text);
        if plan.dialect == Dialect::Acp {
            if text.is_empty() {
                return Ok(());
            }
            let p = self.update(
                plan,
                json!({"sessionUpdate": "agent_message_chunk",
                       "content": {"type": "text", "text": text}}),
            );
            return self.notify(plan, "session/update", p).await;
        }
        let p = self.params(
            plan,
            json!({
                "text": text, "overwrite": overwrite, "isFiltered": false,
                "timestamp": unix_millis(), "extra": {"sessionType": plan.session_type},
            }),
        );
        self.emit(plan, "chat/answer", p).await
    }

    /// Frees the connection and records the turn; exactly once, before any final `chat/finish`.
    fn finalize(&mut self, plan: &Plan, reason: &str, code: u16) {
        if self.finalized {
            return;
        }
        self.finalized = true;
        {
            let mut running = lock(&self.conn.chat);
            if running.as_deref() == Some(plan.request_id.as_str()) {
                *running = None;
            }
        }
        lock(&self.shared.chats).remove(&plan.request_id);
        let now = unix_millis();
        lock(&self.shared.sessions).record_turn(ChatRecord {
            request_id: plan.request_id.clone(),
            session_id: plan.session_id.clone(),
            chat_task: plan.chat_task.clone(),
            chat_context: plan.chat_context.clone(),
            question: plan.question.clone(),
            answer: self.visible.clone(),
            like_status: 0,
            gmt_create: plan.started,
            gmt_modified: now,
            reason: reason.to_string(),
            status_code: i64::from(code),
        });
    }

    async fn finish(&mut self, plan: &Plan, reason: &str, code: u16) {
        self.finalize(plan, reason, code);
        if plan.dialect == Dialect::Acp {
            self.finish_acp(plan, reason, code).await;
        } else {
            let p = self.params(
                plan,
                json!({
                    "reason": reason, "statusCode": code, "fullAnswer": self.visible,
                    "extra": {"sessionType": plan.session_type, "modelKey": plan.model_key},
                }),
            );
            // The chat is already over for the simulator; a stop now must not swallow the finish.
            let (body, rx) = self.conn.server_request("chat/finish", p, false);
            drop(rx);
            self.group.push(body);
            let bodies = std::mem::take(&mut self.group);
            self.waits.clear();
            self.conn.send(bodies, plan.wire).await;
        }
        self.shared.log.debug(&format!(
            "finish chat answer requestId: {} reason: {reason} statusCode: {code} cost: {}ms",
            plan.request_id,
            unix_millis() - plan.started
        ));
    }

    /// The end of an ACP turn: the context window's use, then `chat_finish` (with the empty
    /// `fullAnswer` real runtimes send), then the prompt's late `null` reply.
    async fn finish_acp(&mut self, plan: &Plan, reason: &str, code: u16) {
        let used = (plan.question.len() + self.visible.len()) / 4;
        let usage = self.update(
            plan,
            json!({"sessionUpdate": "notification", "type": "context_usage",
                   "data": {"usedTokens": used, "limitTokens": ACP_CONTEXT_LIMIT}}),
        );
        let mut data = json!({"reason": reason, "fullAnswer": "", "requestId": plan.request_id});
        if code != 200 {
            data["statusCode"] = json!(code);
        }
        let finish = self.update(
            plan,
            json!({"sessionUpdate": "notification", "type": "chat_finish", "data": data}),
        );
        self.group.push(Conn::notification("session/update", usage));
        self.group
            .push(Conn::notification("session/update", finish));
        if let Some(id) = &plan.late_reply {
            self.group
                .push(json!({"jsonrpc": "2.0", "id": id, "result": null}).to_string());
        }
        let bodies = std::mem::take(&mut self.group);
        self.waits.clear();
        self.conn.send(bodies, plan.wire).await;
    }

    async fn run(mut self, plan: Plan) {
        let outcome = self.body(&plan).await;
        match outcome {
            Ok(End::Finish { reason, code }) => self.finish(&plan, &reason, code).await,
            Ok(End::Silent) => {
                let _ = self.flush(&plan).await;
                self.finalize(&plan, "", 0);
            }
            Err(Abort::Stopped) => {
                self.shared
                    .log
                    .info(&format!("chat stopped: requestId {}", plan.request_id));
                self.finish(&plan, "cancelled", 200).await
            }
            Err(Abort::Gone) => self.finalize(&plan, "", 0),
        }
    }

    /// A fault that ends the stream mid-way: crash the process or close the socket.
    async fn mid_stream_fault(&mut self, plan: &Plan) -> Result<(), Abort> {
        if plan.faults.crash == Some(true) {
            self.flush(plan).await?;
            self.conn.flush().await;
            self.shared.crash();
            return Err(Abort::Gone);
        }
        if plan.faults.close == Some(true) {
            self.flush(plan).await?;
            self.shared.log.warn(&format!(
                "simulated close of connection {} during {}",
                self.conn.id, plan.request_id
            ));
            self.conn.close(1011, "simulated close").await;
            return Err(Abort::Gone);
        }
        Ok(())
    }

    async fn body(&mut self, plan: &Plan) -> Result<End, Abort> {
        let f = &plan.faults;
        if f.hang == Some(true) {
            tokio::select! {
                _ = self.conn.closed.cancelled() => return Err(Abort::Gone),
                _ = self.stop.cancelled() => return Err(Abort::Stopped),
            }
        }
        if plan.stream {
            self.step(plan, "step_start").await?;
        }
        self.pause(plan, plan.first_token_delay).await?;

        let failure = if !plan.model_known {
            Some((format!("model not found: {}", plan.model_key), 500))
        } else if let Some(code) = f.error.filter(|c| *c != 0 && *c != 200) {
            Some((error_reason(code), code))
        } else if f.quota == Some(true) {
            Some((QUOTA_REASON.to_string(), 500))
        } else {
            None
        };
        if let Some((reason, code)) = failure {
            if plan.stream {
                self.step(plan, "step_end").await?;
            }
            return Ok(End::Finish { reason, code });
        }
        if !plan.stream {
            // Servers that impersonate Lingma send only chat/finish when `stream` is false.
            self.visible = plan.emitted.clone();
            return Ok(End::Finish {
                reason: "success".into(),
                code: 200,
            });
        }

        if let Some(thinking) = &plan.think_callbacks
            && plan.dialect == Dialect::Acp
        {
            for (i, piece) in chunk_text(thinking, plan.chunk_size).iter().enumerate() {
                if i > 0 {
                    self.pause(plan, plan.chunk_delay).await?;
                }
                let mut p = self.update(
                    plan,
                    json!({"sessionUpdate": "agent_thought_chunk",
                           "content": {"type": "text", "text": piece}}),
                );
                p["_meta"]["ai-coding/thinking-duration-millis"] = json!(THINK_MS);
                self.notify(plan, "session/update", p).await?;
            }
        } else if let Some(thinking) = &plan.think_callbacks {
            for (i, piece) in chunk_text(thinking, plan.chunk_size).iter().enumerate() {
                if i > 0 {
                    self.pause(plan, plan.chunk_delay).await?;
                }
                let p = self.params(
                    plan,
                    json!({"text": piece, "step": "start", "timestamp": unix_millis(),
                           "extra": {"sessionType": plan.session_type}}),
                );
                self.emit(plan, "chat/think", p).await?;
            }
            let p = self.params(
                plan,
                json!({"text": "", "step": "done", "timestamp": unix_millis(),
                       "extra": {"sessionType": plan.session_type}}),
            );
            self.emit(plan, "chat/think", p).await?;
        }
        if plan.first_turn {
            let p = json!({"sessionId": plan.session_id, "sessionTitle": plan.title});
            self.emit(plan, "session/title/update", p).await?;
        }

        let step_end_first = f.step_end_first == Some(true);
        if step_end_first {
            self.step(plan, "step_end").await?;
        }
        let chunks = chunk_text(&plan.emitted, plan.chunk_size);
        let at = plan.after.min(chunks.len());
        if chunks.is_empty() {
            self.delta(plan, "", false).await?;
        }
        if at == 0 {
            self.mid_stream_fault(plan).await?;
        }
        let mut i = 0;
        while i < chunks.len() {
            if i > 0 {
                self.pause(plan, plan.chunk_delay).await?;
            }
            self.delta(plan, &chunks[i], false).await?;
            i += 1;
            // Real Lingma interleaves empty deltas ("pon", "", "g", "").
            if i == 1 || i == chunks.len() {
                self.delta(plan, "", false).await?;
            }
            if i != at {
                continue;
            }
            self.mid_stream_fault(plan).await?;
            let legacy = plan.dialect == Dialect::Legacy;
            if f.retry == Some(true) && legacy {
                // Remote EOF retry: the daemon re-sends what it had (appended, so a naive client
                // doubles it), then repairs the buffer with an overwrite.
                for c in &chunks[..i] {
                    self.pause(plan, plan.chunk_delay).await?;
                    self.delta(plan, c, false).await?;
                }
                let partial: String = chunks[..i].concat();
                self.delta(plan, &partial, true).await?;
            }
            if f.overwrite == Some(true) && legacy {
                let upto = (i + 1).min(chunks.len());
                let prefix: String = chunks[..upto].concat();
                self.pause(plan, plan.chunk_delay).await?;
                self.delta(plan, &prefix, true).await?;
                i = upto;
            }
        }
        if !step_end_first {
            self.step(plan, "step_end").await?;
        }
        if plan.dialect == Dialect::Acp {
            // Seen on the ACP socket beside the updates; clients must not mistake it for theirs.
            let p = json!({"sessionId": plan.session_id, "requestId": plan.request_id});
            self.emit(plan, "snapshot/syncAll", p).await?;
        }
        if f.no_finish == Some(true) {
            return Ok(End::Silent);
        }
        Ok(End::Finish {
            reason: "success".into(),
            code: 200,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_generator() {
        assert_eq!(generate_reply("Reply with exactly: pong"), "pong");
        assert_eq!(
            generate_reply("Reply with exactly: A\nignored\nReply with exactly:  B  \nmore"),
            "B"
        );
        assert_eq!(generate_reply("hi there"), "echo: hi there");
        assert_eq!(words(3), "w1 w2 w3");
        assert_eq!(words(0), "");
    }

    #[test]
    fn chunks_respect_characters() {
        assert_eq!(chunk_text("通义灵码abc", 3), vec!["通义灵", "码ab", "c"]);
        assert_eq!(chunk_text("abc", 0), vec!["abc"]);
        assert!(chunk_text("", 4).is_empty());
    }

    #[test]
    fn think_block_shape() {
        assert_eq!(think_block("t"), "````think::1200\nt\n````\n");
    }
}
