//! The engine: runs one turn for any front door.
//!
//! admission -> reuse lookup -> pool (affinity) -> model -> question (tools, history) -> `chat/ask`
//! -> events: answer text through the tool scanner and the output limits, reasoning as it comes,
//! calls as soon as each is parsed and checked -> one corrective re-ask in the same Lingma session
//! when a call is invalid or a required call is missing -> finish, usage, metrics, and the
//! conversation recorded for reuse.
//!
//! The [`Turn`] is polled by the front door's response body directly: no task or queue sits
//! between the Lingma stream and the client. Dropping it (the client went away) drops the Lingma
//! stream, which sends `chat/stop`, and releases the connection and the admission slot.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::GatewayError;
use crate::lingma::rpc::RpcError;
use crate::lingma::{AskMode, ChatError, ChatEvent, ChatFinish, ChatRequest, ChatStream, EndedBy};
use crate::login::auto::{AutoLogin, Trigger};
use crate::metrics::{InFlightGuard, Metrics};
use crate::pool::{Lease, Pool, PoolError, Selection};

use super::admission::{Admission, AdmissionPermit, BodyReservation};
use super::limits::{Limit, OutputLimiter};
use super::model_map::ModelMap;
use super::prompt::{self, HistoryStyle};
use super::reuse::{ConversationDigest, SessionCache, SessionEntry, canonical_json};
use super::tools::decode::{self, Problem};
use super::tools::parser::{Block, Scanner, Segment};
use super::tools::render::{self, RenderOptions};
use super::tools::{CallSyntax, ToolChoice, ToolKind, ToolSet};
use super::usage::{estimate_prompt_tokens, estimate_tokens};
use super::{FinishReason, Message, Role, ToolCall, TurnEvent, TurnOutput, TurnRequest, Usage};

/// Turn behaviour that is not about a component.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub default_model: Option<String>,
    pub ask_mode: AskMode,
    pub session_reuse: bool,
    /// How long a turn waits for an instance (one that is restarting, or a free connection).
    pub instance_wait: Duration,
    /// The syntax the model is asked to write tool calls in.
    pub tool_syntax: CallSyntax,
    /// Characters of a tool's description in the question.
    pub tool_description_limit: usize,
    /// A [`TurnEvent::KeepAlive`] after this long without an event (zero: never).
    pub keepalive: Duration,
    /// Model names clients send, mapped to Lingma models.
    pub model_map: ModelMap,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            default_model: None,
            ask_mode: AskMode::Chat,
            session_reuse: true,
            instance_wait: Duration::from_secs(30),
            tool_syntax: CallSyntax::Hermes,
            tool_description_limit: 512,
            keepalive: Duration::from_secs(15),
            model_map: ModelMap::default(),
        }
    }
}

/// Everything a turn needs, shared by every front door.
pub struct Engine {
    pub pool: Arc<Pool>,
    pub admission: Arc<Admission>,
    pub sessions: Arc<SessionCache>,
    pub metrics: Arc<Metrics>,
    /// Logs logged-out instances in (`AUTO_LOGIN_*`); inert when disabled.
    pub auto_login: Arc<AutoLogin>,
    pub config: EngineConfig,
    /// Cancelled when shutdown begins: new turns are refused, running ones may finish.
    pub shutdown: CancellationToken,
    /// Cancelled when the shutdown grace period is over: running answers end at once.
    pub hard_stop: CancellationToken,
}

impl Engine {
    /// The one mapping of pool failures to API errors, for turns and admin endpoints alike.
    pub fn pool_error(&self, e: PoolError) -> GatewayError {
        match e {
            PoolError::NoInstanceReady | PoolError::NotReady { .. } => {
                GatewayError::NoInstanceReady
            }
            PoolError::UnknownInstance(name) => {
                GatewayError::ResourceNotFound(format!("no instance named {name:?}"))
            }
            PoolError::NotLoggedIn { instance } => {
                // Auto-login (when enabled) starts here; the client retries after `Retry-After`.
                match self.auto_login.on_not_logged_in(&instance) {
                    Trigger::Started | Trigger::AlreadyRunning => {
                        GatewayError::LoginInProgress { instance }
                    }
                    _ => GatewayError::NotLoggedIn { instance },
                }
            }
            PoolError::Busy(_) => GatewayError::RateLimited {
                retry_after_secs: self.admission.retry_after_secs(),
            },
            PoolError::Connect { instance, reason } => {
                GatewayError::UpstreamUnavailable(format!("instance {instance}: {reason}"))
            }
            PoolError::InUse { .. } => GatewayError::Internal(e.to_string()),
        }
    }

    /// Checks a request without running it: what can be refused before a slot is taken.
    fn prepare(&self, req: &mut TurnRequest) -> Result<ToolSet, GatewayError> {
        if req.messages.is_empty() {
            return Err(GatewayError::invalid_param(
                "`messages` must contain at least one message",
                "messages",
            ));
        }
        let tools = ToolSet::new(std::mem::take(&mut req.tools))
            .map_err(|e| GatewayError::invalid_param(e.to_string(), "tools"))?;
        if let ToolChoice::Named(name) = &req.tool_choice
            && tools.get(name).is_none()
        {
            return Err(GatewayError::invalid_param(
                format!("`tool_choice` names the tool `{name}`, which is not in `tools`"),
                "tool_choice",
            ));
        }
        if matches!(req.tool_choice, ToolChoice::Required | ToolChoice::Named(_))
            && tools.is_empty()
        {
            return Err(GatewayError::invalid_param(
                "`tool_choice` requires a tool call but no tools were given",
                "tool_choice",
            ));
        }
        name_tool_results(&mut req.messages);
        Ok(tools)
    }

    /// Starts a turn: admission, instance, question, ask. Errors before anything was sent to the
    /// client are returned here (the front door answers them with an error status).
    /// `body`, the request body's reservation in the queue's memory budget, is given back once
    /// the turn is admitted.
    pub async fn start(
        self: &Arc<Self>,
        mut req: TurnRequest,
        body: Option<BodyReservation>,
    ) -> Result<Turn, GatewayError> {
        let started = Instant::now();
        let tools = self.prepare(&mut req)?;
        if self.shutdown.is_cancelled() {
            return Err(GatewayError::ShuttingDown);
        }
        let permit = self.admission.acquire().await?;
        drop(body);
        let in_flight = self.metrics.chat_in_flight();
        let wait = self.config.instance_wait.saturating_sub(permit.waited());
        let offered = !tools.is_empty() && req.tool_choice != ToolChoice::None;
        let scope = format!("{}\n{}", req.identity, tools_digest(&tools, offered));
        let (hit, digest) = if self.config.session_reuse {
            self.sessions.lookup(&scope, &req.messages)
        } else {
            (None, None)
        };
        let affinity = Selection::Affinity {
            key: req
                .affinity
                .clone()
                .unwrap_or_else(|| conversation_key(&req.messages)),
            strict: false,
        };
        let (mut lease, mut reuse) = match hit {
            Some(h) => {
                let prefix = req.messages.len() - h.new_messages.len();
                match self
                    .pool
                    .acquire(&Selection::Named(h.entry.instance.clone()), wait)
                    .await
                {
                    Ok(l) if l.epoch() == h.entry.instance_epoch => (l, Some((h.entry, prefix))),
                    // The instance restarted: its sessions are gone, replay the conversation there.
                    Ok(l) => (l, None),
                    Err(_) => (self.acquire(&affinity, wait).await?, None),
                }
            }
            None => (self.acquire(&affinity, wait).await?, None),
        };
        let wanted = req
            .model
            .as_deref()
            .map(|m| self.config.model_map.map(m).unwrap_or(m));
        let resolution = lease
            .models()
            .resolve(wanted, self.config.default_model.as_deref());
        let model_key = resolution.key().map(str::to_string);
        let model = model_key
            .clone()
            .or_else(|| wanted.map(str::to_string))
            .unwrap_or_else(|| "lingma".into());
        let syntax = self.config.tool_syntax;
        let instructions = self.instructions(&tools, &req);
        let prompt_tokens = estimate_prompt_tokens(&req.messages)
            .saturating_add(instructions.as_deref().map_or(0, estimate_tokens));
        self.metrics
            .observe_gateway_overhead(started.elapsed().saturating_sub(permit.waited()));
        let style = HistoryStyle {
            syntax,
            tools: Some(&tools),
        };
        let mut retried = false;
        let (stream, question_bytes) = loop {
            let (question, session_id) = match &reuse {
                Some((entry, prefix)) => {
                    let mut q = prompt::build_follow_up(&req.messages[*prefix..], style);
                    if offered && let Some(r) = choice_reminder(&req.tool_choice) {
                        q.push_str("\n\n");
                        q.push_str(&r);
                    }
                    (q, Some(entry.session_id.clone()))
                }
                None => (
                    prompt::build_question(&req.messages, instructions.as_deref(), style),
                    None,
                ),
            };
            let question_bytes = question.len();
            let request = ChatRequest {
                question,
                session_id,
                model: model_key.clone(),
                mode: self.config.ask_mode,
            };
            // Until the answer ends cleanly the connection is not trusted again: if this future is
            // dropped mid-ask (the client went away), the lease is discarded, not returned busy.
            lease.discard();
            match lease.client().chat(request).await {
                Ok(s) => break (s, question_bytes),
                // The connection is still busy with an abandoned answer, or the instance went away
                // (a crash its supervisor has not seen yet). Nothing has reached the client and
                // Lingma did not take the question, so ask once more on a fresh connection.
                Err(e) if !retried && ask_never_reached_lingma(&e) => {
                    retried = true;
                    let prev = lease.instance().to_string();
                    tracing::warn!(instance = %prev, error = %e, "asking again on a fresh connection");
                    let busy = matches!(e, ChatError::Busy);
                    if !busy {
                        let _ = self.pool.refresh(&prev);
                    }
                    // Give back the old connection and its slot before taking another.
                    drop(lease);
                    let sel = if busy {
                        Selection::Named(prev)
                    } else {
                        Selection::Other(prev)
                    };
                    lease = match self.acquire(&sel, wait).await {
                        Ok(l) => l,
                        Err(_) if busy => self.acquire(&affinity, wait).await?,
                        Err(e) => return Err(e),
                    };
                    // An upstream session lives on one instance within one epoch; elsewhere, replay.
                    if reuse.as_ref().is_some_and(|(entry, _)| {
                        entry.instance != lease.instance() || entry.instance_epoch != lease.epoch()
                    }) {
                        reuse = None;
                    }
                }
                Err(e) => return Err(chat_error(&e, lease.instance())),
            }
        };
        self.metrics
            .question_bytes
            .with_label_values(&[if reuse.is_some() { "true" } else { "false" }])
            .inc_by(question_bytes as u64);
        let scanner = offered.then(Scanner::default);
        Ok(Turn {
            engine: self.clone(),
            digest,
            tools,
            choice: req.tool_choice,
            parallel: req.parallel_tool_calls,
            call_id_prefix: req.call_id_prefix,
            limiter: OutputLimiter::new(req.stop.clone(), req.max_tokens),
            stop: req.stop,
            max_tokens: req.max_tokens,
            streaming: req.stream,
            model,
            model_key,
            reused: reuse.is_some(),
            question_bytes,
            stream,
            lease,
            _permit: permit,
            _in_flight: in_flight,
            started,
            first_token: None,
            last_event: Instant::now(),
            prompt_tokens,
            text: String::new(),
            reasoning: String::new(),
            calls: Vec::new(),
            held_space: String::new(),
            scanner,
            problems: Vec::new(),
            reasking: false,
            reasked: false,
            pending: VecDeque::new(),
            cacheable: true,
            fast_streak: 0,
            finished: false,
        })
    }

    /// The estimated prompt tokens of a request, as its usage would report them, without asking
    /// Lingma anything.
    pub fn count_tokens(&self, mut req: TurnRequest) -> Result<u32, GatewayError> {
        let tools = self.prepare(&mut req)?;
        let instructions = self.instructions(&tools, &req);
        Ok(estimate_prompt_tokens(&req.messages)
            .saturating_add(instructions.as_deref().map_or(0, estimate_tokens)))
    }

    /// The tool instructions of a request, when it offers tools.
    fn instructions(&self, tools: &ToolSet, req: &TurnRequest) -> Option<String> {
        let offered = !tools.is_empty() && req.tool_choice != ToolChoice::None;
        offered.then(|| {
            render::instructions(
                tools,
                &req.tool_choice,
                req.parallel_tool_calls,
                RenderOptions {
                    syntax: self.config.tool_syntax,
                    description_limit: self.config.tool_description_limit,
                },
            )
        })
    }

    /// A lease from the pool; when connecting to the chosen instance fails, one other instance is
    /// tried before giving up.
    async fn acquire(&self, sel: &Selection, wait: Duration) -> Result<Lease, GatewayError> {
        match self.pool.acquire(sel, wait).await {
            Err(PoolError::Connect { instance, reason }) => {
                tracing::warn!(%instance, %reason, "cannot connect; trying another instance");
                self.pool
                    .acquire(&Selection::Other(instance), wait)
                    .await
                    .map_err(|e| self.pool_error(e))
            }
            other => other.map_err(|e| self.pool_error(e)),
        }
    }
}

/// Tool results that carry only a call id get the tool's name from the call in the history (the
/// model reads both).
fn name_tool_results(messages: &mut [Message]) {
    let mut names: Vec<(String, String)> = Vec::new();
    for m in messages.iter_mut() {
        for c in &m.tool_calls {
            names.push((c.id.clone(), c.name.clone()));
        }
        if m.role == Role::Tool
            && m.tool_name.is_none()
            && let Some(id) = &m.tool_call_id
        {
            m.tool_name = names
                .iter()
                .rev()
                .find(|(i, _)| i == id)
                .map(|(_, n)| n.clone());
        }
    }
}

/// A digest of what the model was told about tools: a session started with other tools (or
/// none) is not continued.
fn tools_digest(tools: &ToolSet, offered: bool) -> String {
    use sha2::Digest;
    if !offered {
        return "no-tools".into();
    }
    let mut h = sha2::Sha256::new();
    for t in tools.specs() {
        h.update(t.name.as_bytes());
        h.update([0]);
        h.update(t.description.as_bytes());
        h.update([0]);
        h.update(canonical_json(&t.parameters).as_bytes());
        h.update([u8::from(t.kind == ToolKind::Freeform)]);
    }
    hex::encode(&h.finalize()[..8])
}

/// The affinity key of a conversation that names none: its system (or first) message, hashed
/// with SHA-1 as the earlier Python gateway did, so a conversation maps to the same instance.
fn conversation_key(messages: &[Message]) -> String {
    use sha1::Digest;
    let first = messages
        .iter()
        .find(|m| m.role == Role::System)
        .or_else(|| messages.first())
        .map(|m| m.content.as_str())
        .unwrap_or("");
    format!("m:{}", hex::encode(sha1::Sha1::digest(first.as_bytes())))
}

/// What a follow-up repeats of `tool_choice` (the instructions are already in the session).
fn choice_reminder(choice: &ToolChoice) -> Option<String> {
    match choice {
        ToolChoice::Required => Some("(Answer with at least one tool call.)".into()),
        ToolChoice::Named(n) => Some(format!("(Answer by calling the tool `{n}`.)")),
        ToolChoice::Auto | ToolChoice::None => None,
    }
}

/// Errors after which the question certainly did not start an answer upstream, so asking again
/// elsewhere cannot run it twice. A timeout or a refusal is not one of them.
fn ask_never_reached_lingma(e: &ChatError) -> bool {
    matches!(
        e,
        ChatError::Busy
            | ChatError::ConnectionLost
            | ChatError::Rpc(RpcError::Closed | RpcError::Connect { .. })
    )
}

fn chat_error(e: &ChatError, instance: &str) -> GatewayError {
    match e {
        ChatError::NotLoggedIn => GatewayError::NotLoggedIn {
            instance: instance.to_string(),
        },
        ChatError::Upstream {
            status_code: 408,
            reason,
        } => GatewayError::UpstreamTimeout(format!("Lingma timed out: {reason}")),
        ChatError::Upstream {
            status_code,
            reason,
        } => GatewayError::Upstream {
            status: u16::try_from(*status_code).unwrap_or(500),
            reason: reason.clone(),
        },
        ChatError::Timeout { .. } | ChatError::Rpc(RpcError::Timeout { .. }) => {
            GatewayError::UpstreamTimeout(e.to_string())
        }
        ChatError::Rpc(RpcError::Remote { .. }) | ChatError::Rejected { .. } => {
            GatewayError::Upstream {
                status: 502,
                reason: e.to_string(),
            }
        }
        ChatError::Busy | ChatError::ConnectionLost | ChatError::Rpc(_) => {
            GatewayError::UpstreamUnavailable(e.to_string())
        }
    }
}

/// At most this many ready events in a row skip the keep-alive timer and the shutdown check.
const FAST_STREAK: u8 = 16;

/// One answer in progress, with everything it holds: dropping it releases the slot and the
/// connection (discarded unless the answer ended cleanly) and stops the upstream answer.
pub struct Turn {
    engine: Arc<Engine>,
    /// The request's conversation, hashed for the session cache (`None` without session reuse);
    /// a successful turn adds its answer and stores it. The messages themselves are not kept.
    digest: Option<ConversationDigest>,
    tools: ToolSet,
    choice: ToolChoice,
    parallel: bool,
    call_id_prefix: &'static str,
    limiter: OutputLimiter,
    /// What the limiter was made from, to start it again when Lingma replaces the answer.
    stop: Vec<String>,
    max_tokens: Option<u32>,
    streaming: bool,
    model: String,
    /// The Lingma model key asked for (`None`: Lingma's default).
    model_key: Option<String>,
    reused: bool,
    question_bytes: usize,
    /// Declared before the lease: fields drop in order, and the stream (which may still send
    /// `chat/stop`) must let go of the connection before the lease hands it to another request.
    stream: ChatStream,
    lease: Lease,
    /// Held for its drop: the admission slot is released with the turn.
    _permit: AdmissionPermit,
    _in_flight: InFlightGuard,
    started: Instant,
    first_token: Option<Duration>,
    last_event: Instant,
    prompt_tokens: u32,
    /// The text handed out.
    text: String,
    reasoning: String,
    /// The calls handed out.
    calls: Vec<ToolCall>,
    /// Whitespace after a call, held until words follow.
    held_space: String,
    /// Present when the turn offers tools.
    scanner: Option<Scanner>,
    /// Blocks that were calls but unusable: the reason for a re-ask.
    problems: Vec<Problem>,
    /// The answer being read is the re-ask's: only its calls count.
    reasking: bool,
    reasked: bool,
    pending: VecDeque<TurnEvent>,
    /// False when what the client got differs from what Lingma's session holds.
    cacheable: bool,
    /// Events taken in a row without waiting (see `advance`).
    fast_streak: u8,
    /// The finish (or an error) was handed out.
    finished: bool,
}

impl Turn {
    /// The instance answering.
    pub fn instance(&self) -> &str {
        self.lease.instance()
    }

    /// The Lingma model answering (its key), or the requested name when none resolved.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Whether the turn continued an upstream session (only the new messages were sent).
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// How many tools the client offered.
    pub fn tools_offered(&self) -> usize {
        self.tools.len()
    }

    /// Bytes of the question sent to Lingma.
    pub fn question_bytes(&self) -> usize {
        self.question_bytes
    }

    /// The estimated prompt tokens (as the usage will report them).
    pub fn prompt_tokens(&self) -> u32 {
        self.prompt_tokens
    }

    /// The next event; `None` after the finish (or an error).
    pub async fn next(&mut self) -> Option<Result<TurnEvent, GatewayError>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                self.last_event = Instant::now();
                if matches!(ev, TurnEvent::Finish { .. }) {
                    self.finished = true;
                }
                return Some(Ok(ev));
            }
            if self.finished {
                return None;
            }
            if let Err(e) = self.advance().await {
                self.finished = true;
                self.record_failure(&e);
                return Some(Err(e));
            }
        }
    }

    /// Reads the whole answer (non-streaming clients).
    pub async fn collect(mut self) -> Result<TurnOutput, GatewayError> {
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut calls: Vec<ToolCall> = Vec::new();
        let mut args: Vec<String> = Vec::new();
        while let Some(ev) = self.next().await {
            match ev? {
                TurnEvent::Text(t) => text.push_str(&t),
                TurnEvent::Reasoning(r) => reasoning.push_str(&r),
                TurnEvent::ToolCallStart { id, name, .. } => {
                    calls.push(ToolCall {
                        id,
                        name,
                        input: Value::Null,
                    });
                    args.push(String::new());
                }
                TurnEvent::ToolCallDelta { index, delta } => {
                    if let Some(a) = args.get_mut(index) {
                        a.push_str(&delta);
                    }
                }
                TurnEvent::ToolCallEnd { .. } | TurnEvent::KeepAlive => {}
                TurnEvent::Finish { reason, usage } => {
                    for (call, a) in calls.iter_mut().zip(&args) {
                        let free_form = self
                            .tools
                            .get(&call.name)
                            .is_some_and(|t| t.kind == ToolKind::Freeform);
                        call.input = if free_form {
                            Value::String(a.clone())
                        } else {
                            serde_json::from_str(a).unwrap_or(Value::String(a.clone()))
                        };
                    }
                    return Ok(TurnOutput {
                        text,
                        reasoning,
                        tool_calls: calls,
                        finish: reason,
                        usage,
                    });
                }
            }
        }
        Err(GatewayError::UpstreamUnavailable(
            "the answer ended without a finish".into(),
        ))
    }

    /// Reads one Lingma event (or times out into a keep-alive) and turns it into pending events.
    async fn advance(&mut self) -> Result<(), GatewayError> {
        // Events that are already there are taken without setting up a keep-alive timer and a
        // shutdown wait per event (a burst of deltas is the common case under load). Every
        // FAST_STREAK events the slow path runs anyway, so a shutdown is never missed for long.
        if self.fast_streak < FAST_STREAK
            && let Poll::Ready(next) = self.stream.try_next()
        {
            self.fast_streak += 1;
            return self.on_upstream_event(next).await;
        }
        self.fast_streak = 0;
        let keepalive = self.engine.config.keepalive;
        let quiet_until = self.last_event + keepalive;
        let next = tokio::select! {
            ev = self.stream.next() => ev,
            // The shutdown grace period is over: end the answer (chat/stop goes out on drop).
            _ = self.engine.hard_stop.cancelled() => return Err(GatewayError::ShuttingDown),
            _ = tokio::time::sleep_until(quiet_until.into()), if !keepalive.is_zero() => {
                self.pending.push_back(TurnEvent::KeepAlive);
                return Ok(());
            }
        };
        self.on_upstream_event(next).await
    }

    /// One item of the Lingma stream, turned into pending events.
    async fn on_upstream_event(
        &mut self,
        next: Option<Result<ChatEvent, ChatError>>,
    ) -> Result<(), GatewayError> {
        let ev = match next {
            Some(Ok(ev)) => ev,
            Some(Err(e)) => return Err(chat_error(&e, self.lease.instance())),
            None => {
                return Err(GatewayError::UpstreamUnavailable(
                    "the Lingma stream ended without a finish".into(),
                ));
            }
        };
        match ev {
            ChatEvent::Reasoning(t) => {
                self.mark_first_token();
                if !self.reasking {
                    self.reasoning.push_str(&t);
                    self.pending.push_back(TurnEvent::Reasoning(t));
                }
            }
            ChatEvent::Answer(t) => {
                self.mark_first_token();
                self.on_answer(&t).await;
            }
            ChatEvent::Replace(_) if !self.text.is_empty() || !self.calls.is_empty() => {
                // What was handed out cannot be taken back; the rest of the stream extends the new
                // text, so the client's copy now differs from Lingma's.
                tracing::warn!(instance = %self.lease.instance(), "Lingma replaced an answer mid-stream");
                self.cacheable = false;
            }
            ChatEvent::Replace(t) => {
                // Nothing of the old text has left yet: the replacement simply is the answer.
                self.limiter = OutputLimiter::new(self.stop.clone(), self.max_tokens);
                if self.scanner.is_some() {
                    self.scanner = Some(Scanner::default());
                }
                self.problems.clear();
                self.on_answer(&t).await;
            }
            ChatEvent::Finished(f) => self.on_upstream_end(f).await?,
        }
        Ok(())
    }

    async fn on_answer(&mut self, t: &str) {
        let segments = match &mut self.scanner {
            Some(s) => s.push(t),
            None => vec![Segment::Text(t.to_string())],
        };
        self.on_segments(segments).await;
    }

    async fn on_segments(&mut self, segments: Vec<Segment>) {
        for seg in segments {
            match seg {
                Segment::Text(t) => self.on_text(&t).await,
                Segment::Block(b) => self.on_block(b).await,
            }
        }
    }

    /// Answer text, through the output limits.
    async fn on_text(&mut self, t: &str) {
        if self.reasking || self.limiter.is_done() {
            // A re-ask's words are not the client's answer; only its calls are.
            return;
        }
        // Whitespace between or after calls waits for words; alone it is dropped at the end.
        if !self.calls.is_empty() && t.trim().is_empty() {
            self.held_space.push_str(t);
            return;
        }
        let joined;
        let t = if self.held_space.is_empty() {
            t
        } else {
            joined = std::mem::take(&mut self.held_space) + t;
            joined.as_str()
        };
        let step = self.limiter.push(t);
        if !step.emit.is_empty() {
            self.text.push_str(&step.emit);
            self.pending.push_back(TurnEvent::Text(step.emit));
        }
        if step.finished.is_some() {
            self.cacheable = false;
            self.stop_upstream().await;
            self.finish_now();
        }
    }

    /// A block the scanner cut out: a call, an unusable call, or text after all.
    async fn on_block(&mut self, block: Block) {
        if self.limiter.is_done() {
            return;
        }
        let metrics = self.engine.metrics.clone();
        match decode::decode(&block, &self.tools) {
            Ok(call) => {
                let outcome = match (self.reasking, call.repaired) {
                    (true, _) => "reasked",
                    (false, true) => "repaired",
                    (false, false) => "parsed",
                };
                metrics.tool_call(call.written.as_str(), outcome);
                if !self.parallel && !self.calls.is_empty() {
                    tracing::debug!(tool = %call.name, "a second call without parallel_tool_calls: dropped");
                    return;
                }
                // A re-ask may repeat a call that was fine the first time: hand it out once.
                let key = canonical_json(&call.input);
                if self
                    .calls
                    .iter()
                    .any(|c| c.name == call.name && canonical_json(&c.input) == key)
                {
                    return;
                }
                self.emit_call(call.name, call.input);
            }
            Err(Problem::NotACall) => {
                let raw = block.raw;
                self.on_text(&raw).await;
            }
            Err(problem) => {
                metrics.tool_call(block_syntax(&block).as_str(), "invalid");
                tracing::info!(
                    instance = %self.lease.instance(),
                    problem = %problem.describe(&self.tools),
                    "the model wrote an unusable tool call"
                );
                self.problems.push(problem);
            }
        }
    }

    fn emit_call(&mut self, name: String, input: Value) {
        let index = self.calls.len();
        let id = format!("{}{}", self.call_id_prefix, uuid::Uuid::new_v4().simple());
        let args = match &input {
            Value::String(raw)
                if self
                    .tools
                    .get(&name)
                    .is_some_and(|t| t.kind == ToolKind::Freeform) =>
            {
                raw.clone()
            }
            other => other.to_string(),
        };
        self.pending.push_back(TurnEvent::ToolCallStart {
            index,
            id: id.clone(),
            name: name.clone(),
        });
        self.pending
            .push_back(TurnEvent::ToolCallDelta { index, delta: args });
        self.pending.push_back(TurnEvent::ToolCallEnd { index });
        self.calls.push(ToolCall { id, name, input });
    }

    /// Lingma's answer ended: flush what was held, re-ask once if a call was unusable or a
    /// required call is missing, then finish.
    async fn on_upstream_end(&mut self, f: ChatFinish) -> Result<(), GatewayError> {
        if let Some(s) = &mut self.scanner {
            let rest = s.finish();
            self.on_segments(rest).await;
        }
        if self.finished_pending() {
            // A limit ended the answer while the last text was flushed.
            return Ok(());
        }
        let missing = match &self.choice {
            ToolChoice::Required => self.calls.is_empty(),
            ToolChoice::Named(n) => !self.calls.iter().any(|c| &c.name == n),
            ToolChoice::Auto | ToolChoice::None => false,
        };
        let clean = f.ended_by == EndedBy::Finish;
        if (missing || !self.problems.is_empty()) && !self.reasked && clean {
            return self.reask(&f.session_id, missing).await;
        }
        if !self.problems.is_empty() && self.calls.is_empty() || missing {
            for p in &self.problems {
                self.engine
                    .metrics
                    .tool_call("any", if self.reasked { "failed" } else { "invalid" });
                tracing::warn!(instance = %self.lease.instance(), problem = %p.describe(&self.tools), "no usable tool call");
            }
            let why = match self.problems.first() {
                Some(p) => p.describe(&self.tools),
                None => "the model did not call a tool although one was required".into(),
            };
            return Err(GatewayError::Upstream {
                status: 502,
                reason: format!("the model's tool call is unusable: {why}"),
            });
        }
        let rest = self.limiter.finish();
        if !rest.is_empty() {
            self.text.push_str(&rest);
            self.pending.push_back(TurnEvent::Text(rest));
        }
        if clean {
            self.lease.keep();
        }
        // Ended by silence after step_end, Lingma may still be talking on that connection: it
        // stays discarded (and chat/stop goes out on drop).
        self.finish_now();
        Ok(())
    }

    /// Asks again in the same Lingma session, saying what was wrong; the answer's calls are
    /// handed out, its words are not.
    async fn reask(&mut self, session_id: &str, missing: bool) -> Result<(), GatewayError> {
        let mut question = String::from("Your last answer could not be used:\n");
        for p in &self.problems {
            question.push_str("- ");
            question.push_str(&p.describe(&self.tools));
            question.push('\n');
        }
        if missing {
            match &self.choice {
                ToolChoice::Named(n) => {
                    question.push_str(&format!("- you must call the tool `{n}`\n"));
                }
                _ => question.push_str("- you must call at least one tool\n"),
            }
        }
        question.push_str(
            "Write only the corrected tool call(s) now, in the agreed format, and nothing else.",
        );
        self.problems.clear();
        self.reasked = true;
        self.reasking = true;
        self.scanner = Some(Scanner::default());
        let request = ChatRequest {
            question,
            session_id: Some(session_id.to_string()),
            model: self.model_key.clone(),
            mode: self.engine.config.ask_mode,
        };
        self.lease.discard();
        tracing::info!(instance = %self.lease.instance(), "re-asking for a usable tool call");
        self.stream = self
            .lease
            .client()
            .chat(request)
            .await
            .map_err(|e| chat_error(&e, self.lease.instance()))?;
        Ok(())
    }

    fn finished_pending(&self) -> bool {
        self.pending
            .iter()
            .any(|e| matches!(e, TurnEvent::Finish { .. }))
            || self.finished
    }

    /// Queues the finish: reason, usage, and the bookkeeping of a successful turn.
    fn finish_now(&mut self) {
        if self.finished_pending() {
            return;
        }
        let reason = match self.limiter.finished() {
            Some(Limit::Length) => FinishReason::Length,
            Some(Limit::Stop) => FinishReason::StopSequence(
                self.limiter.matched_stop().unwrap_or_default().to_string(),
            ),
            None if !self.calls.is_empty() => FinishReason::ToolCalls,
            None => FinishReason::Stop,
        };
        if reason == FinishReason::Length {
            self.cacheable = false;
        }
        let usage = self.usage();
        self.record_success(usage);
        self.pending.push_back(TurnEvent::Finish { reason, usage });
    }

    fn mark_first_token(&mut self) {
        if self.first_token.is_none() {
            let t = self.started.elapsed();
            self.first_token = Some(t);
            self.engine.metrics.observe_time_to_first_token(t);
        }
    }

    /// The client's limit was reached: stop Lingma and wait briefly for its cancelled finish, so
    /// the connection can be reused; otherwise it is discarded.
    async fn stop_upstream(&mut self) {
        // One short budget for the stop call and the drain: the client's last event waits on it.
        let drained = tokio::time::timeout(Duration::from_secs(2), async {
            if self.stream.stop().await.is_err() {
                return false;
            }
            while let Some(ev) = self.stream.next().await {
                match ev {
                    Ok(ChatEvent::Finished(_)) => return true,
                    Ok(_) => continue,
                    Err(_) => return false,
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if drained {
            self.lease.keep();
        }
    }

    fn usage(&self) -> Usage {
        let call_tokens = self.calls.iter().fold(0u32, |t, c| {
            t.saturating_add(estimate_tokens(&c.name))
                .saturating_add(estimate_tokens(&canonical_json(&c.input)))
        });
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: estimate_tokens(&self.text)
                .saturating_add(estimate_tokens(&self.reasoning))
                .saturating_add(call_tokens),
        }
    }

    /// Records a finished turn: metrics, admission timing, and the session for reuse.
    fn record_success(&mut self, usage: Usage) {
        let elapsed = self.started.elapsed();
        let e = &self.engine;
        e.admission.record_turn(elapsed);
        e.metrics.observe_chat(self.streaming, elapsed);
        e.metrics
            .add_tokens(usage.prompt_tokens, usage.completion_tokens);
        if self.cacheable
            && let Some(mut digest) = self.digest.take()
        {
            digest.push_answer(&self.text, &self.calls);
            e.sessions.insert_digest(
                digest,
                SessionEntry {
                    instance: self.lease.instance().to_string(),
                    session_id: self.stream.session_id().to_string(),
                    instance_epoch: self.lease.epoch(),
                },
            );
        }
    }

    fn record_failure(&mut self, e: &GatewayError) {
        self.lease.discard();
        self.engine
            .metrics
            .upstream_error(e.code().unwrap_or(e.error_type()));
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.finished && !self.finished_pending() {
            self.engine.metrics.stream_disconnects.inc();
        }
    }
}

/// The syntax a block was written in, for metrics of unusable calls.
fn block_syntax(b: &Block) -> CallSyntax {
    use super::tools::parser::Marker;
    match b.marker {
        Marker::ToolCallTag if b.body.trim_start().starts_with("<function=") => {
            CallSyntax::Qwen3Coder
        }
        Marker::ToolCallTag => CallSyntax::Hermes,
        Marker::FunctionTag => CallSyntax::Qwen3Coder,
        Marker::Fence => CallSyntax::FencedJson,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_results_get_their_tool_name_from_the_history() {
        let mut call = Message::new(Role::Assistant, "");
        call.tool_calls.push(ToolCall {
            id: "c1".into(),
            name: "read".into(),
            input: serde_json::json!({}),
        });
        let mut msgs = vec![
            Message::new(Role::User, "x"),
            call,
            Message::tool_result("c1", "data"),
            Message::tool_result("c9", "orphan"),
        ];
        name_tool_results(&mut msgs);
        assert_eq!(msgs[2].tool_name.as_deref(), Some("read"));
        assert_eq!(msgs[3].tool_name, None);
    }

    #[test]
    fn conversation_keys_are_sha1_of_the_system_or_first_message() {
        let k = conversation_key(&[Message::new(Role::User, "abc")]);
        assert_eq!(k, "m:a9993e364706816aba3e25717850c26c9cd0d89d");
        let k2 = conversation_key(&[
            Message::new(Role::User, "other"),
            Message::new(Role::System, "abc"),
        ]);
        assert_eq!(k, k2);
    }
}
