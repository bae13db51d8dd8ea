//! The route table and the per-request middleware (request id, one log line, request metrics).

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::state::AppState;
use super::{admin, chat, error, health, login, models};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What a handler tells the log line about a chat (set as a response extension).
#[derive(Debug, Clone, Default)]
pub struct ChatLog {
    pub instance: String,
    pub model: String,
    pub reuse: bool,
    pub stream: bool,
}

pub fn build(state: AppState) -> Router {
    let limit = state.config.body_limit;
    Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{*id}", get(models::get_one))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
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
        .fallback(error::fallback)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Request id in and out, one log line per request, request counter by route and status.
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
    // A declared body over the limit is refused before any of it is read: a client announcing
    // a gigabyte and sending nothing must not hold the connection waiting for it.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = state.config.body_limit;
    let mut resp = match declared {
        Some(len) if len > limit as u64 => {
            error::GatewayError::PayloadTooLarge { limit }.into_response()
        }
        _ => next.run(req).await,
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    let status = resp.status().as_u16();
    state.metrics.observe_http(&route, method.as_str(), status);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match resp.extensions().get::<ChatLog>() {
        Some(c) => tracing::info!(
            request_id = %id, method = %method, path = %path, status, ms = format_args!("{ms:.1}"),
            instance = %c.instance, model = %c.model, reuse = c.reuse, stream = c.stream, "request"
        ),
        None => tracing::info!(
            request_id = %id, method = %method, path = %path, status, ms = format_args!("{ms:.1}"), "request"
        ),
    }
    resp
}
