//! `AppState`: everything a handler needs, as a `Clone` struct of `Arc`s, plus the cancellation
//! token and task tracker used for graceful shutdown. No global state anywhere else.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::lingma::AskMode;
use crate::login::auto::{AutoLogin, Trigger};
use crate::pool::{Pool, PoolError};

use super::admission::Admission;
use super::auth::AuthConfig;
use super::error::GatewayError;
use super::metrics::Metrics;
use super::session_cache::SessionCache;

/// Gateway behaviour that is not about a component.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub default_model: Option<String>,
    pub ask_mode: AskMode,
    pub session_reuse: bool,
    pub body_limit: usize,
    /// A request body must arrive within this.
    pub body_timeout: Duration,
    /// How long a chat waits for an instance (one that is restarting, or a free connection).
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

impl AppState {
    /// The one mapping of pool failures to HTTP errors, for chats and admin endpoints alike.
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
}
