//! The route table and the per-request middleware (request id, one log line, request metrics).

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use super::anthropic::{self, AnthropicShape};
use super::state::AppState;
use super::{admin, auth, health, login, openai, responses};
use crate::error::{ErrorShape, GatewayError, OpenAiShape};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Names the replica that answered (`--replica-id`), on every response.
pub const REPLICA: HeaderName = HeaderName::from_static("x-lingma-gw-replica");

/// The request id [`observe`] gave the request (or the one the client sent).
pub fn request_id(headers: &HeaderMap) -> Option<&str> {
    headers.get(&REQUEST_ID).and_then(|v| v.to_str().ok())
}

/// What a handler tells the log line about a chat (set as a response extension).
#[derive(Debug, Clone, Default)]
pub struct ChatLog {
    pub instance: String,
    pub model: String,
    pub reuse: bool,
    pub stream: bool,
    /// Tools the client offered (their count only: never their arguments).
    pub tools: usize,
    /// The error code of a failed chat.
    pub error: Option<String>,
}

impl ChatLog {
    /// What the turn says about itself: the instance, the Lingma model, whether it was reused,
    /// how many tools were offered.
    pub fn started(&mut self, turn: &crate::turn::Turn) {
        self.instance = turn.instance().to_string();
        self.model = turn.model().to_string();
        self.reuse = turn.reused();
        self.tools = turn.tools_offered();
    }

    /// A chat handler's response with this log attached; an error is rendered in the shape `S`
    /// of the handler's API surface.
    pub fn respond<S: ErrorShape>(
        mut self,
        result: Result<Response, GatewayError>,
        headers: &HeaderMap,
    ) -> Response {
        let mut resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                self.error = e.code().map(str::to_string);
                S::render(e, request_id(headers))
            }
        };
        resp.extensions_mut().insert(self);
        resp
    }
}

pub fn build(state: AppState) -> Router {
    // Each group checks its credential in middleware, from the headers alone: a request that is
    // refused is refused before any byte of its body is read.
    let client = Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/responses", post(responses::create))
        .route(
            "/v1/responses/{id}",
            get(responses::get).delete(responses::delete),
        )
        .route("/v1/models", get(openai::models::list))
        .route("/v1/models/{*id}", get(openai::models::get_one))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::layer::client::<OpenAiShape>,
        ));
    let anthropic = Router::new()
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::layer::client::<AnthropicShape>,
        ));
    let admin = Router::new()
        .route("/internal/stats", get(admin::stats))
        .route("/internal/models/raw", get(admin::models_raw))
        .route("/internal/instances", get(admin::instances))
        .route("/internal/instances/{name}/restart", post(admin::restart))
        .route("/internal/instances/{name}/drain", post(admin::drain))
        .route(
            "/internal/session/export",
            get(login::export_get).post(login::export_post),
        )
        .route("/internal/auto-login/start", post(login::auto_login_start))
        .route("/internal/auto-login/status", get(login::auto_login_status))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::layer::admin,
        ));
    let metrics = Router::new()
        .route("/metrics", get(health::metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::layer::metrics,
        ));
    Router::new()
        .merge(client)
        .merge(anthropic)
        .merge(admin)
        .merge(metrics)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// An error about the request's path itself (unknown, or the wrong method), in the shape of the
/// API surface the path belongs to: Anthropic's under `/v1/messages`, OpenAI's elsewhere.
fn path_error(path: &str, e: GatewayError, headers: &HeaderMap) -> Response {
    let anthropic = path == "/v1/messages" || path.starts_with("/v1/messages/");
    if anthropic {
        AnthropicShape::render(e, request_id(headers))
    } else {
        OpenAiShape::render(e, request_id(headers))
    }
}

/// Unknown routes: 404. The query string is left out of the message (it may hold secrets).
async fn not_found(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let e = GatewayError::NotFound(format!("{method} {}", uri.path()));
    path_error(uri.path(), e, &headers)
}

/// A known path with the wrong method: 405.
async fn method_not_allowed(uri: Uri, headers: HeaderMap) -> Response {
    path_error(uri.path(), GatewayError::MethodNotAllowed, &headers)
}

/// Request id in and out, the replica header, one log line per request, request counter by route
/// and status.
async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| format!("req_{}", uuid::Uuid::new_v4().simple()));
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID, v);
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp.headers_mut()
        .insert(REPLICA, state.config.replica_header.clone());
    let replica = &*state.config.replica_id;
    let status = resp.status().as_u16();
    state
        .engine
        .metrics
        .observe_http(&route, method.as_str(), status);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match resp.extensions().get::<ChatLog>() {
        Some(c) => match &c.error {
            None => tracing::info!(
                request_id = %id, replica = %replica, method = %method, path = %path, status,
                ms = format_args!("{ms:.1}"), instance = %c.instance, model = %c.model,
                reuse = c.reuse, stream = c.stream, tools = c.tools, "request"
            ),
            Some(error) => tracing::info!(
                request_id = %id, replica = %replica, method = %method, path = %path, status,
                ms = format_args!("{ms:.1}"), instance = %c.instance, model = %c.model,
                reuse = c.reuse, stream = c.stream, tools = c.tools, error = %error, "request"
            ),
        },
        None => tracing::info!(
            request_id = %id, replica = %replica, method = %method, path = %path, status,
            ms = format_args!("{ms:.1}"), "request"
        ),
    }
    resp
}
