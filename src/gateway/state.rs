//! `AppState`: everything a handler needs, as a `Clone` struct of `Arc`s. No global state
//! anywhere else. The turn engine (with the pool, admission, reuse cache, metrics and the
//! shutdown tokens) is shared by every front door; the rest is about HTTP.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;

use crate::turn::Engine;

use super::auth::AuthConfig;
use super::responses::store::ResponseStore;

/// How request bodies are read, and how this replica names itself.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub body_limit: usize,
    /// A request body must arrive within this.
    pub body_timeout: Duration,
    /// `--replica-id`: in the `x-lingma-gw-replica` header of every response, `/healthz` and the
    /// request log, so that behind a load balancer one can tell which replica answered.
    pub replica_id: Arc<str>,
    /// The same, ready to be a header value (checked visible ASCII by the settings).
    pub replica_header: HeaderValue,
}

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub auth: Arc<AuthConfig>,
    pub config: Arc<HttpConfig>,
    /// Stored `/v1/responses` objects (`previous_response_id`).
    pub responses: Arc<ResponseStore>,
}
