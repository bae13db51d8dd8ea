//! `AppState`: everything a handler needs, as a `Clone` struct of `Arc`s, plus the cancellation
//! token and task tracker used for graceful shutdown. No global state anywhere else.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::lingma::AskMode;
use crate::login::auto::AutoLogin;
use crate::pool::Pool;

use super::admission::Admission;
use super::auth::AuthConfig;
use super::metrics::Metrics;
use super::session_cache::SessionCache;

/// Gateway behaviour that is not about a component.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub default_model: Option<String>,
    pub ask_mode: AskMode,
    pub session_reuse: bool,
    pub body_limit: usize,
    pub queue_timeout: Duration,
    pub instance_wait: Duration,
}

#[derive(Clone)]
pub struct AppState {
    pub pool: Arc<Pool>,
    pub auth: Arc<AuthConfig>,
    pub admission: Arc<Admission>,
    pub sessions: Arc<SessionCache>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<GatewayConfig>,
    /// Logs logged-out instances in (`AUTO_LOGIN_*`); inert when disabled.
    pub auto_login: Arc<AutoLogin>,
    /// Cancelled when shutdown begins: new chats are refused, streams still running may finish.
    pub shutdown: CancellationToken,
    /// Cancelled when the shutdown grace period is over: answers still running end at once.
    pub hard_stop: CancellationToken,
    pub tracker: TaskTracker,
}
