//! `AppState`: everything a handler needs, as a `Clone` struct of `Arc`s. No global state
//! anywhere else. The turn engine (with the pool, admission, reuse cache, metrics and the
//! shutdown tokens) is shared by every front door; the rest is about HTTP.

use std::sync::Arc;
use std::time::Duration;

use crate::turn::Engine;

use super::auth::AuthConfig;
use super::responses::store::ResponseStore;

/// How request bodies are read.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub body_limit: usize,
    /// A request body must arrive within this.
    pub body_timeout: Duration,
}

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub auth: Arc<AuthConfig>,
    pub config: Arc<HttpConfig>,
    /// Stored `/v1/responses` objects (`previous_response_id`).
    pub responses: Arc<ResponseStore>,
}
