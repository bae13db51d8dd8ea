//! The OpenAI Responses front door: `POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`.
//!
//! The request becomes a neutral turn (`request.rs`), the engine runs it, and the events build
//! the response (`stream.rs`): streamed as Codex reads it (every event with a `sequence_number`,
//! text as it comes, each call as its own output item whose arguments stream as soon as the call
//! is parsed, reasoning as reasoning summaries, `response.completed` with the whole output and
//! usage; a failure after the start as `response.failed`), or as one response object. With
//! `store` (the API's default) the response is kept (`store.rs`) for `previous_response_id`,
//! which continues the same Lingma session; Codex sends `store: false` and its history, which
//! the engine's reuse check recognises just the same.
//!
//! Errors before the response exists are HTTP statuses with OpenAI's body (a 429 says "try again
//! in N s", which Codex parses). Hosted tools Lingma cannot run (`web_search`, ...) are left out
//! of the question and named in the `x-lingma-gw-ignored-tools` header.

pub mod request;
pub mod store;
pub mod stream;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{GatewayError, OpenAiShape};
use crate::gateway::event_stream;
use crate::turn::{Message, Turn, TurnEvent};

use super::anthropic::LINGMA_MODEL_HEADER;
use super::extract::{ApiJson, ApiPath, Caller};
use super::openai::{AFFINITY_HEADERS, affinity_header};
use super::router::ChatLog;
use super::state::AppState;
use request::ResponsesRequest;
use stream::Builder;

/// Codex's conversation headers, then the generic ones.
const CODEX_AFFINITY_HEADERS: [&str; 4] = [
    "session-id",
    "thread-id",
    AFFINITY_HEADERS[0],
    AFFINITY_HEADERS[1],
];

/// The header naming the hosted tools that were left out.
pub const IGNORED_TOOLS_HEADER: &str = "x-lingma-gw-ignored-tools";

pub async fn create(
    State(st): State<AppState>,
    Caller(identity): Caller,
    headers: HeaderMap,
    body: ApiJson<ResponsesRequest>,
) -> Response {
    let mut log = ChatLog::default();
    let result = answer(&st, identity.as_str(), &headers, body, &mut log).await;
    log.respond::<OpenAiShape>(result, &headers)
}

/// What a finished response leaves behind for `previous_response_id`.
struct Keep {
    store: std::sync::Arc<store::ResponseStore>,
    conversation: Vec<Message>,
}

async fn answer(
    st: &AppState,
    identity: &str,
    headers: &HeaderMap,
    body: ApiJson<ResponsesRequest>,
    log: &mut ChatLog,
) -> Result<Response, GatewayError> {
    let ApiJson { value, reservation } = body;
    let history = match value.previous_response_id.as_deref() {
        Some(id) => {
            st.responses
                .get(id)
                .ok_or_else(|| {
                    GatewayError::ResourceNotFound(format!(
                        "Previous response with id '{id}' not found."
                    ))
                })?
                .1
        }
        None => Vec::new(),
    };
    let mut req = request::to_turn(value, history)?;
    log.stream = req.stream;
    req.turn.identity = identity.to_string();
    if let Some(key) = affinity_header(headers, &CODEX_AFFINITY_HEADERS) {
        req.turn.affinity = Some(key);
    }
    let keep = req.store.then(|| Keep {
        store: st.responses.clone(),
        conversation: req.turn.messages[req.conversation_from..].to_vec(),
    });
    let turn = st.engine.start(req.turn, Some(reservation)).await?;
    log.started(&turn);
    let lingma_model = HeaderValue::from_str(turn.model()).ok();
    let builder = Builder::new(
        req.model,
        req.echo,
        req.store,
        req.summaries,
        req.custom_tools,
    );
    let mut resp = if req.stream {
        event_stream::response(Sse {
            turn,
            builder,
            keep,
            started: false,
            over: false,
        })
    } else {
        let mut builder = builder;
        let mut turn = turn;
        let mut sink = Vec::new();
        while let Some(ev) = turn.next().await {
            builder.apply(&mut sink, ev?);
            sink.clear();
        }
        if let Some(k) = keep {
            store_response(&builder, k);
        }
        Json(builder.response()).into_response()
    };
    let h = resp.headers_mut();
    if let Some(v) = lingma_model {
        h.insert(LINGMA_MODEL_HEADER, v);
    }
    if !req.ignored_tools.is_empty()
        && let Ok(v) = HeaderValue::from_str(&req.ignored_tools.join(","))
    {
        h.insert(IGNORED_TOOLS_HEADER, v);
    }
    Ok(resp)
}

fn store_response(builder: &Builder, keep: Keep) {
    let mut conversation = keep.conversation;
    conversation.push(builder.assistant_message());
    keep.store
        .insert(&builder.id, builder.response(), conversation);
}

impl event_stream::EventSource for Sse {
    fn next_bytes(&mut self) -> impl Future<Output = Option<Bytes>> + Send {
        self.advance()
    }
}

struct Sse {
    turn: Turn,
    builder: Builder,
    keep: Option<Keep>,
    started: bool,
    over: bool,
}

impl Sse {
    async fn advance(&mut self) -> Option<Bytes> {
        if self.over {
            return None;
        }
        let mut out = Vec::with_capacity(512);
        if !self.started {
            self.started = true;
            self.builder.start(&mut out);
            return Some(Bytes::from(out));
        }
        match self.turn.next().await {
            None => {
                self.over = true;
                return None;
            }
            Some(Ok(TurnEvent::KeepAlive)) => out.extend_from_slice(b": keep-alive\n\n"),
            Some(Ok(ev)) => {
                let finish = matches!(ev, TurnEvent::Finish { .. });
                self.builder.apply(&mut out, ev);
                if finish {
                    self.over = true;
                    if let Some(k) = self.keep.take() {
                        store_response(&self.builder, k);
                    }
                }
            }
            Some(Err(e)) => {
                tracing::warn!(instance = %self.turn.instance(), error = %e, "stream failed mid-answer");
                self.builder.fail(&mut out, &e);
                self.over = true;
            }
        }
        Some(Bytes::from(out))
    }
}

/// `GET /v1/responses/{id}`: a stored response.
pub async fn get(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, GatewayError> {
    match st.responses.get(&id) {
        Some((r, _)) => Ok(Json(r).into_response()),
        None => Err(not_found(&id)),
    }
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, GatewayError> {
    if st.responses.delete(&id) {
        Ok(Json(json!({"id": id, "object": "response.deleted", "deleted": true})).into_response())
    } else {
        Err(not_found(&id))
    }
}

fn not_found(id: &str) -> GatewayError {
    GatewayError::ResourceNotFound(format!("No response found with id '{id}'."))
}
