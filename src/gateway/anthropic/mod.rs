//! The Anthropic Messages front door: `POST /v1/messages` (any query string: Claude Code sends
//! `?beta=true`) and `POST /v1/messages/count_tokens`.
//!
//! The request becomes a neutral turn (`request.rs`), the engine runs it, and the events go out
//! in Anthropic's exact order (`stream.rs`): `message_start`, then per content block
//! `content_block_start` / deltas / `content_block_stop` (text, thinking for reasoning models when
//! the client asked for thinking, and each tool call as a `tool_use` block whose input arrives as
//! `input_json_delta` as soon as the call is parsed), `message_delta` with the stop reason and
//! usage, `message_stop`; `ping` while the model is silent. Errors are Anthropic's
//! (`error.rs`): before the stream a status and `{"type":"error",…}`, after it an `error` event.
//!
//! The response echoes the model name the client sent (Claude Code compares it); the
//! `x-lingma-model` header says which Lingma model answered (the model map picks it).

pub mod error;
pub mod request;
pub mod stream;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{ErrorShape, GatewayError};

use super::extract::{ApiJson, Caller};
use super::openai::{AFFINITY_HEADERS, affinity_header};
use super::router::{ChatLog, request_id};
use super::state::AppState;
pub use error::AnthropicShape;
use request::MessagesRequest;

/// Claude Code's conversation header, then the generic ones.
const CLAUDE_AFFINITY_HEADERS: [&str; 3] = [
    "x-claude-code-session-id",
    AFFINITY_HEADERS[0],
    AFFINITY_HEADERS[1],
];

/// The response header naming the Lingma model that answered.
pub const LINGMA_MODEL_HEADER: &str = "x-lingma-model";

pub async fn messages(
    State(st): State<AppState>,
    Caller(identity): Caller,
    headers: HeaderMap,
    body: Result<ApiJson<MessagesRequest>, GatewayError>,
) -> Response {
    let mut log = ChatLog::default();
    let result = answer(&st, identity.as_str(), &headers, body, &mut log).await;
    log.respond::<AnthropicShape>(result, &headers)
}

async fn answer(
    st: &AppState,
    identity: &str,
    headers: &HeaderMap,
    body: Result<ApiJson<MessagesRequest>, GatewayError>,
    log: &mut ChatLog,
) -> Result<Response, GatewayError> {
    let ApiJson { value, reservation } = body?;
    let mut req = request::to_turn(value)?;
    log.stream = req.stream;
    req.turn.identity = identity.to_string();
    if let Some(key) = affinity_header(headers, &CLAUDE_AFFINITY_HEADERS) {
        req.turn.affinity = Some(key);
    }
    let turn = st.engine.start(req.turn, Some(reservation)).await?;
    log.started(&turn);
    let lingma_model = HeaderValue::from_str(turn.model()).ok();
    let mut resp = if req.stream {
        stream::response(turn, req.model, req.thinking)
    } else {
        let out = turn.collect().await?;
        Json(stream::message(&req.model, out, req.thinking)).into_response()
    };
    if let Some(v) = lingma_model {
        resp.headers_mut().insert(LINGMA_MODEL_HEADER, v);
    }
    Ok(resp)
}

/// `{"input_tokens": N}` from the same estimator as usage; Lingma is not asked.
pub async fn count_tokens(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<ApiJson<MessagesRequest>, GatewayError>,
) -> Response {
    let counted = body.and_then(|b| {
        // count_tokens bodies need no max_tokens.
        let mut value = b.value;
        value.max_tokens.get_or_insert(1);
        let req = request::to_turn(value)?;
        st.engine.count_tokens(req.turn)
    });
    match counted {
        Ok(n) => Json(json!({"input_tokens": n})).into_response(),
        Err(e) => AnthropicShape::render(e, request_id(&headers)),
    }
}
