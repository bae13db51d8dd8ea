//! `POST /v1/chat/completions`: the data path of design.md, in one task per request.
//!
//! auth -> validate -> admission -> session-cache lookup -> pool selection -> `chat/ask` -> events
//! -> one JSON body, or SSE written straight from the Lingma stream (the body stream polls the
//! Lingma stream itself: no extra task or queue between them). Dropping the body (client gone)
//! drops the Lingma stream, which sends `chat/stop`, and releases the connection and the slot.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::lingma::rpc::RpcError;
use crate::lingma::{ChatError, ChatEvent, ChatRequest, ChatStream, EndedBy};
use crate::pool::{Lease, PoolError, Selection};
use crate::prompt::{self, Message, Role};

use super::admission::AdmissionPermit;
use super::auth::ClientIdentity;
use super::error::GatewayError;
use super::extract::{ApiJson, Caller};
use super::limits::OutputLimiter;
use super::metrics::InFlightGuard;
use super::router::ChatLog;
use super::schema::{
    self, ChatCompletion, ChatCompletionRequest, ChunkBuilder, FinishReason, Usage, ValidChat,
};
use super::session_cache::SessionEntry;
use super::state::AppState;
use super::usage::{estimate_prompt_tokens, estimate_tokens};

pub async fn chat_completions(
    State(st): State<AppState>,
    Caller(identity): Caller,
    headers: HeaderMap,
    body: ApiJson<ChatCompletionRequest>,
) -> Response {
    // The request's log line names the instance and model, for failures as well.
    let mut log = ChatLog::default();
    let mut resp = match answer(st, identity, headers, body, &mut log).await {
        Ok(resp) => resp,
        Err(e) => {
            log.error = e.code().map(str::to_string);
            e.into_response()
        }
    };
    resp.extensions_mut().insert(log);
    resp
}

async fn answer(
    st: AppState,
    identity: ClientIdentity,
    headers: HeaderMap,
    body: ApiJson<ChatCompletionRequest>,
    log: &mut ChatLog,
) -> Result<Response, GatewayError> {
    let started = Instant::now();
    log.stream = body.value.stream.unwrap_or(false);
    let ApiJson {
        value: req,
        reservation,
    } = body;
    let chat = schema::validate(&req)?;
    drop(req);
    if st.shutdown.is_cancelled() {
        return Err(GatewayError::ShuttingDown);
    }
    let permit = st.admission.acquire().await?;
    // Admitted: the body no longer counts against the queue's memory budget.
    drop(reservation);
    let in_flight = st.metrics.chat_in_flight();
    let wait = st.config.instance_wait.saturating_sub(permit.waited());
    let scope = identity.as_str().to_string();
    let hit = if st.config.session_reuse {
        st.sessions.take(&scope, &chat.messages)
    } else {
        None
    };
    let affinity = Selection::Affinity {
        key: affinity_key(&headers, &chat),
        strict: false,
    };
    let (mut lease, reuse) = match hit {
        Some(h) => match st
            .pool
            .acquire(&Selection::Named(h.entry.instance.clone()), wait)
            .await
        {
            Ok(l) if l.epoch() == h.entry.instance_epoch => {
                let prefix = chat.messages.len() - h.new_messages.len();
                (l, Some((h.entry, prefix)))
            }
            // The instance restarted: its sessions are gone, replay the conversation there.
            Ok(l) => (l, None),
            Err(_) => (acquire(&st, &affinity, wait).await?, None),
        },
        None => (acquire(&st, &affinity, wait).await?, None),
    };
    log.instance = lease.instance().to_string();
    let resolution = lease
        .models()
        .resolve(chat.model.as_deref(), st.config.default_model.as_deref());
    let model_key = resolution.key().map(str::to_string);
    let model_name = model_key
        .clone()
        .or_else(|| chat.model.clone())
        .unwrap_or_else(|| "lingma".into());
    log.model = model_name.clone();
    st.metrics
        .observe_gateway_overhead(started.elapsed().saturating_sub(permit.waited()));
    let mut reuse = reuse;
    let mut retried = false;
    let stream = loop {
        let (question, session_id) = match &reuse {
            Some((entry, prefix_len)) => (
                prompt::build_follow_up(&chat.messages[*prefix_len..]),
                Some(entry.session_id.clone()),
            ),
            None => (prompt::build_question(&chat.messages), None),
        };
        let request = ChatRequest {
            question,
            session_id,
            model: model_key.clone(),
            mode: st.config.ask_mode,
        };
        // Until the answer ends cleanly the connection is not trusted again: if this future is
        // dropped mid-ask (the client went away), the lease is discarded, not returned busy.
        lease.discard();
        match lease.client().chat(request).await {
            Ok(s) => break s,
            // The connection is still busy with an abandoned answer, or the instance went away
            // (a crash its supervisor has not seen yet). Nothing has reached the client and
            // Lingma did not take the question, so ask once more on a fresh connection.
            Err(e) if !retried && ask_never_reached_lingma(&e) => {
                retried = true;
                let prev = lease.instance().to_string();
                tracing::warn!(instance = %prev, error = %e, "asking again on a fresh connection");
                let busy = matches!(e, ChatError::Busy);
                if !busy {
                    let _ = st.pool.refresh(&prev);
                }
                // Give back the old connection and its slot before taking another.
                drop(lease);
                let sel = if busy {
                    Selection::Named(prev)
                } else {
                    Selection::Other(prev)
                };
                lease = match acquire(&st, &sel, wait).await {
                    Ok(l) => l,
                    Err(_) if busy => acquire(&st, &affinity, wait).await?,
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
    log.instance = lease.instance().to_string();
    log.reuse = reuse.is_some();
    let turn = Turn {
        st: st.clone(),
        scope,
        prompt_tokens: estimate_prompt_tokens(&chat.messages),
        messages: chat.messages,
        limiter: OutputLimiter::new(chat.stop.clone(), chat.max_tokens),
        stop: chat.stop,
        max_tokens: chat.max_tokens,
        streaming: chat.stream,
        model: model_name,
        stream,
        lease,
        _permit: permit,
        _in_flight: in_flight,
        started,
        first_token: None,
        content: String::new(),
        reasoning: String::new(),
        cacheable: true,
        done: false,
    };
    Ok(if chat.stream {
        stream_response(turn, chat.include_usage)
    } else {
        turn.complete().await?.into_response()
    })
}

/// A lease from the pool; when connecting to the chosen instance fails, one other instance is
/// tried before giving up.
async fn acquire(st: &AppState, sel: &Selection, wait: Duration) -> Result<Lease, GatewayError> {
    match st.pool.acquire(sel, wait).await {
        Err(PoolError::Connect { instance, reason }) => {
            tracing::warn!(%instance, %reason, "cannot connect; trying another instance");
            st.pool
                .acquire(&Selection::Other(instance), wait)
                .await
                .map_err(|e| st.pool_error(e))
        }
        other => other.map_err(|e| st.pool_error(e)),
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

/// The header, field or message that keeps a conversation on one instance.
fn affinity_key(headers: &HeaderMap, chat: &ValidChat) -> String {
    for name in ["x-session-id", "x-session-affinity"] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok())
            && !v.trim().is_empty()
        {
            return format!("h:{}", v.trim());
        }
    }
    if let Some(u) = chat.user.as_deref().filter(|u| !u.is_empty()) {
        return format!("u:{u}");
    }
    if let Some(k) = chat.prompt_cache_key.as_deref().filter(|k| !k.is_empty()) {
        return format!("k:{k}");
    }
    let first = chat
        .messages
        .iter()
        .find(|m| m.role == Role::System)
        .or_else(|| chat.messages.first())
        .map(|m| m.content.as_str())
        .unwrap_or("");
    format!("m:{}", blake_like(first))
}

/// A short stable digest (sha-256, first 16 hex) so keys do not carry prompt text.
fn blake_like(s: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(s.as_bytes())[..8])
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
        ChatError::Rpc(RpcError::Remote { .. }) => GatewayError::Upstream {
            status: 502,
            reason: e.to_string(),
        },
        ChatError::Busy | ChatError::ConnectionLost | ChatError::Rpc(_) => {
            GatewayError::UpstreamUnavailable(e.to_string())
        }
        ChatError::Rejected { .. } => GatewayError::Upstream {
            status: 502,
            reason: e.to_string(),
        },
    }
}

/// One answer in progress, with everything it holds: dropping it releases the slot and the
/// connection (discarded unless the answer ended cleanly) and stops the upstream answer.
struct Turn {
    st: AppState,
    scope: String,
    messages: Vec<Message>,
    prompt_tokens: u32,
    limiter: OutputLimiter,
    /// What the limiter was made from, to start it again when Lingma replaces the answer.
    stop: Vec<String>,
    max_tokens: Option<u32>,
    streaming: bool,
    model: String,
    /// Declared before the lease: fields drop in order, and the stream (which may still send
    /// `chat/stop`) must let go of the connection before the lease hands it to another request.
    stream: ChatStream,
    lease: Lease,
    /// Held for its drop: the admission slot is released with the turn.
    _permit: AdmissionPermit,
    _in_flight: InFlightGuard,
    started: Instant,
    first_token: Option<Duration>,
    content: String,
    reasoning: String,
    /// False when what the client got differs from what Lingma's session holds.
    cacheable: bool,
    done: bool,
}

/// What one Lingma event means for the client.
enum Step {
    Reasoning(String),
    Content(String),
    Nothing,
    /// The answer is over; the remaining text, then the finish reason.
    End(String, FinishReason),
}

impl Turn {
    async fn next_step(&mut self) -> Result<Step, GatewayError> {
        let next = tokio::select! {
            ev = self.stream.next() => ev,
            // The shutdown grace period is over: end the answer (chat/stop goes out on drop).
            _ = self.st.hard_stop.cancelled() => return Err(GatewayError::ShuttingDown),
        };
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
                self.reasoning.push_str(&t);
                Ok(Step::Reasoning(t))
            }
            ChatEvent::Answer(t) => self.answer(&t).await,
            ChatEvent::Replace(_) if self.streaming && !self.content.is_empty() => {
                // Text already sent cannot be taken back; the rest of the stream extends the
                // new text, so the client's copy now differs from Lingma's.
                tracing::warn!(instance = %self.lease.instance(), "Lingma replaced an answer mid-stream");
                self.cacheable = false;
                Ok(Step::Nothing)
            }
            ChatEvent::Replace(t) => {
                // Nothing of the old text has left yet: the replacement simply is the answer.
                self.limiter = OutputLimiter::new(self.stop.clone(), self.max_tokens);
                self.content.clear();
                self.answer(&t).await
            }
            ChatEvent::Finished(f) => {
                let rest = self.limiter.finish();
                self.content.push_str(&rest);
                self.done = true;
                if f.ended_by == EndedBy::Finish {
                    self.lease.keep();
                }
                // Ended by silence after step_end, Lingma may still be talking on that
                // connection: it stays discarded (and chat/stop goes out on drop).
                // The held-back tail can still hit the token budget.
                let reason = self.limiter.finished().unwrap_or(FinishReason::Stop);
                if reason == FinishReason::Length {
                    self.cacheable = false;
                }
                Ok(Step::End(rest, reason))
            }
        }
    }

    async fn answer(&mut self, t: &str) -> Result<Step, GatewayError> {
        self.mark_first_token();
        let step = self.limiter.push(t);
        self.content.push_str(&step.emit);
        match step.finished {
            Some(reason) => {
                self.cacheable = false;
                self.stop_upstream().await;
                Ok(Step::End(step.emit, reason))
            }
            None if step.emit.is_empty() => Ok(Step::Nothing),
            None => Ok(Step::Content(step.emit)),
        }
    }

    fn mark_first_token(&mut self) {
        if self.first_token.is_none() {
            let t = self.started.elapsed();
            self.first_token = Some(t);
            self.st.metrics.observe_time_to_first_token(t);
        }
    }

    /// The client's limit was reached: stop Lingma and wait briefly for its cancelled finish, so
    /// the connection can be reused; otherwise it is discarded.
    async fn stop_upstream(&mut self) {
        // One short budget for the stop call and the drain: the client's last chunk waits on it.
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
            self.done = true;
            self.lease.keep();
        }
    }

    fn usage(&self) -> Usage {
        let completion = estimate_tokens(&self.content) + estimate_tokens(&self.reasoning);
        Usage::new(self.prompt_tokens, completion)
    }

    /// Records a finished turn: metrics, admission timing, and the session for reuse.
    fn record_success(&mut self, stream: bool) {
        let elapsed = self.started.elapsed();
        self.st.admission.record_turn(elapsed);
        let usage = self.usage();
        self.st.metrics.observe_chat(stream, elapsed);
        self.st
            .metrics
            .add_tokens(usage.prompt_tokens, usage.completion_tokens);
        if self.cacheable && self.st.config.session_reuse {
            let mut conversation = self.messages.clone();
            conversation.push(Message::new(Role::Assistant, self.content.clone()));
            self.st.sessions.insert(
                &self.scope,
                &conversation,
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
        self.st
            .metrics
            .upstream_error(e.code().unwrap_or(e.error_type()));
    }

    async fn complete(mut self) -> Result<Json<ChatCompletion>, GatewayError> {
        loop {
            match self.next_step().await {
                Ok(Step::End(_, reason)) => {
                    self.record_success(false);
                    let usage = self.usage();
                    let reasoning =
                        (!self.reasoning.is_empty()).then(|| std::mem::take(&mut self.reasoning));
                    return Ok(Json(ChatCompletion::new(
                        schema::new_completion_id(),
                        schema::unix_time(),
                        self.model.clone(),
                        std::mem::take(&mut self.content),
                        reasoning,
                        reason,
                        usage,
                    )));
                }
                Ok(_) => continue,
                Err(e) => {
                    self.record_failure(&e);
                    return Err(e);
                }
            }
        }
    }
}

/// The SSE body: role chunk first, then one event per Lingma delta, then finish (+ usage) and
/// `[DONE]`; on failure an error event and no finish.
fn stream_response(turn: Turn, include_usage: bool) -> Response {
    let chunks = ChunkBuilder::start(turn.model.clone());
    let state = SseState {
        turn,
        chunks,
        include_usage,
        phase: Phase::Start,
    };
    let body = futures_util::stream::unfold(state, |mut s| async move {
        let bytes = s.advance().await?;
        Some((Ok::<Bytes, Infallible>(bytes), s))
    });
    let mut resp = (StatusCode::OK, Body::from_stream(body)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

enum Phase {
    Start,
    Running,
    Over,
}

struct SseState {
    turn: Turn,
    chunks: ChunkBuilder,
    include_usage: bool,
    phase: Phase,
}

impl SseState {
    async fn advance(&mut self) -> Option<Bytes> {
        match self.phase {
            Phase::Start => {
                self.phase = Phase::Running;
                Some(sse(&self.chunks.role()))
            }
            Phase::Over => None,
            Phase::Running => loop {
                match self.turn.next_step().await {
                    Ok(Step::Nothing) => continue,
                    Ok(Step::Content(t)) => return Some(sse(&self.chunks.content(&t))),
                    Ok(Step::Reasoning(t)) => return Some(sse(&self.chunks.reasoning(&t))),
                    Ok(Step::End(rest, reason)) => {
                        self.phase = Phase::Over;
                        self.turn.record_success(true);
                        let mut out = Vec::new();
                        if !rest.is_empty() {
                            out.extend_from_slice(&sse(&self.chunks.content(&rest)));
                        }
                        out.extend_from_slice(&sse(&self.chunks.finish(reason)));
                        if self.include_usage {
                            out.extend_from_slice(&sse(&self.chunks.usage(self.turn.usage())));
                        }
                        out.extend_from_slice(b"data: [DONE]\n\n");
                        return Some(Bytes::from(out));
                    }
                    Err(e) => {
                        self.phase = Phase::Over;
                        self.turn.record_failure(&e);
                        tracing::warn!(instance = %self.turn.lease.instance(), error = %e, "stream failed mid-answer");
                        return Some(sse(&e.to_body()));
                    }
                }
            },
        }
    }
}

impl Drop for SseState {
    fn drop(&mut self) {
        if !matches!(self.phase, Phase::Over) {
            self.turn.st.metrics.stream_disconnects.inc();
        }
    }
}

fn sse<T: Serialize>(value: &T) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"data: ");
    if serde_json::to_writer(&mut out, value).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}
