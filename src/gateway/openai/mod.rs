//! The OpenAI chat front door: `POST /v1/chat/completions` (and `/v1/models` in `models.rs`).
//!
//! The request is checked and turned into a neutral turn (`request.rs`), the engine runs it, and
//! the turn's events are rendered as OpenAI sends them (`response.rs`): one JSON body, or SSE
//! written straight from the turn (the body stream polls the turn itself: no extra task or queue),
//! with keep-alive comments while the model is silent, and an error event if the turn fails after
//! the headers went out.

pub mod models;
pub mod request;
pub mod response;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{GatewayError, OpenAiShape};
use crate::gateway::event_stream::{self, TextTemplate};
use crate::turn::{Turn, TurnEvent};

use super::extract::{ApiJson, Caller};
use super::router::ChatLog;
use super::state::AppState;
use request::ChatCompletionRequest;
use response::{ChatCompletion, ChunkBuilder, new_completion_id};

/// Headers that name a conversation, for any client (each front door adds its clients' own).
pub const AFFINITY_HEADERS: [&str; 2] = ["x-session-id", "x-session-affinity"];

/// The first of `names` present (and not blank) as an affinity key.
pub fn affinity_header(headers: &HeaderMap, names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| {
        headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| format!("h:{v}"))
    })
}

pub async fn chat_completions(
    State(st): State<AppState>,
    Caller(identity): Caller,
    headers: HeaderMap,
    body: ApiJson<ChatCompletionRequest>,
) -> Response {
    // The request's log line names the instance and model, for failures as well.
    let mut log = ChatLog::default();
    let result = answer(&st, identity.as_str(), &headers, body, &mut log).await;
    log.respond::<OpenAiShape>(result, &headers)
}

async fn answer(
    st: &AppState,
    identity: &str,
    headers: &HeaderMap,
    body: ApiJson<ChatCompletionRequest>,
    log: &mut ChatLog,
) -> Result<Response, GatewayError> {
    let ApiJson { value, reservation } = body;
    let mut chat = request::to_turn(value)?;
    log.stream = chat.stream;
    chat.turn.identity = identity.to_string();
    if let Some(key) = affinity_header(headers, &AFFINITY_HEADERS) {
        chat.turn.affinity = Some(key);
    }
    let turn = st.engine.start(chat.turn, Some(reservation)).await?;
    log.started(&turn);
    let mut chunks = ChunkBuilder::new(new_completion_id(), crate::util::unix_secs(), turn.model());
    chunks.legacy = chat.legacy_functions;
    if chat.stream {
        return Ok(event_stream::response(SseState {
            text: TextTemplate::new(|t| sse_vec(&chunks.content(t))),
            reasoning: TextTemplate::new(|t| sse_vec(&chunks.reasoning(t))),
            turn,
            chunks,
            include_usage: chat.include_usage,
            phase: Phase::Start,
        }));
    }
    let ChunkBuilder {
        id, created, model, ..
    } = chunks;
    let out = turn.collect().await?;
    Ok(Json(ChatCompletion::new(
        id,
        created,
        model,
        out,
        chat.legacy_functions,
    ))
    .into_response())
}

impl event_stream::EventSource for SseState {
    fn next_bytes(&mut self) -> impl Future<Output = Option<Bytes>> + Send {
        self.advance()
    }
}

enum Phase {
    Start,
    Running,
    Over,
}

/// The SSE body: role chunk first, then one event per turn event, then finish (+ usage) and
/// `[DONE]`; on failure an error event and no finish.
struct SseState {
    turn: Turn,
    chunks: ChunkBuilder,
    /// The text and reasoning chunks, rendered once (`None`: render each one whole).
    text: Option<TextTemplate>,
    reasoning: Option<TextTemplate>,
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
            Phase::Running => {
                let c = &self.chunks;
                match self.turn.next().await? {
                    Ok(TurnEvent::Text(t)) => Some(match &self.text {
                        Some(template) => template.fill(&t),
                        None => sse(&c.content(&t)),
                    }),
                    Ok(TurnEvent::Reasoning(t)) => Some(match &self.reasoning {
                        Some(template) => template.fill(&t),
                        None => sse(&c.reasoning(&t)),
                    }),
                    Ok(TurnEvent::ToolCallStart { index, id, name }) => {
                        Some(sse(&c.call_start(index, &id, &name)))
                    }
                    Ok(TurnEvent::ToolCallDelta { index, delta }) => {
                        Some(sse(&c.call_arguments(index, &delta)))
                    }
                    Ok(TurnEvent::ToolCallEnd { .. }) => Some(Bytes::new()),
                    Ok(TurnEvent::KeepAlive) => Some(Bytes::from_static(b": keep-alive\n\n")),
                    Ok(TurnEvent::Finish { reason, usage }) => {
                        self.phase = Phase::Over;
                        let mut out = sse_vec(&c.finish(&reason));
                        if self.include_usage {
                            out.extend_from_slice(&sse_vec(&c.usage(usage)));
                        }
                        out.extend_from_slice(b"data: [DONE]\n\n");
                        Some(Bytes::from(out))
                    }
                    Err(e) => {
                        self.phase = Phase::Over;
                        tracing::warn!(instance = %self.turn.instance(), error = %e, "stream failed mid-answer");
                        Some(sse(&e.to_body()))
                    }
                }
            }
        }
    }
}

fn sse<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(sse_vec(value))
}

fn sse_vec<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"data: ");
    if serde_json::to_writer(&mut out, value).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
    out
}
