//! The gateway's auto-login service (`AUTO_LOGIN_*`).
//!
//! A chat that hits a logged-out instance calls [`AutoLogin::on_not_logged_in`]; the operator can
//! start a run with `POST /internal/auto-login/start` ([`AutoLogin::start`]). A run is one task per
//! instance, never two at once: it switches the endpoint first when `DEDICATED_DOMAIN_URL` is set,
//! then runs the headless login up to `1 + AUTO_LOGIN_MAX_RETRY` times, each attempt bounded by
//! `AUTO_LOGIN_TIMEOUT`. A captcha, an identity verification or a refused password ends the run at
//! once and blocks automatic runs for that instance until an operator starts one (each retry
//! makes the login page's risk control stricter). After a run that failed otherwise, automatic runs wait
//! [`AutoLoginConfig::cooldown`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::headless::{self, BrowserOptions, Credentials, HeadlessError, Profile, Target};
use super::{Secret, apply_dedicated_domain};
use crate::lingma::{ClientOptions, LingmaClient};
use crate::pool::{InstanceState, Pool};
use crate::util::{lock, unix_secs};

/// One instance's login account.
#[derive(Debug, Clone)]
pub struct AccountLogin {
    pub username: String,
    /// `None`: no password configured (the run fails with a clear message).
    pub password: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct AutoLoginConfig {
    /// `AUTO_LOGIN_ENABLED`: chats trigger runs and `/internal/auto-login/start` works.
    pub enabled: bool,
    /// `AUTO_LOGIN_TIMEOUT`: one attempt.
    pub timeout: Duration,
    /// `AUTO_LOGIN_MAX_RETRY`: attempts after the first one, for retryable failures.
    pub max_retry: u32,
    pub retry_delay: Duration,
    /// Automatic runs after a failed run wait this long.
    pub cooldown: Duration,
    pub dedicated_domain_url: Option<String>,
    pub browser: BrowserOptions,
    /// Root of persistent per-account profiles, when enabled.
    pub profile_root: Option<PathBuf>,
    /// Per instance (the accounts file), else `default_account`.
    pub accounts: HashMap<String, AccountLogin>,
    pub default_account: Option<AccountLogin>,
    pub client: ClientOptions,
}

/// Where an instance's auto-login stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Idle,
    Running,
    Succeeded,
    Failed,
    CaptchaRequired,
    VerificationRequired,
    BadCredentials,
}

impl RunState {
    /// States that need a person before automatic runs resume.
    fn blocks_automatic(self) -> bool {
        matches!(
            self,
            Self::CaptchaRequired | Self::VerificationRequired | Self::BadCredentials
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatus {
    pub instance: String,
    pub state: RunState,
    /// Attempts of the current or last run.
    pub attempts: u32,
    pub max_attempts: u32,
    /// Unix seconds.
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub user: Option<String>,
    pub error_kind: Option<String>,
    pub last_error: Option<String>,
    pub screenshot: Option<PathBuf>,
    pub page_text: Option<PathBuf>,
    pub runs: u64,
}

impl InstanceStatus {
    fn new(instance: &str, max_attempts: u32) -> Self {
        Self {
            instance: instance.to_string(),
            state: RunState::Idle,
            attempts: 0,
            max_attempts,
            started_at: None,
            finished_at: None,
            user: None,
            error_kind: None,
            last_error: None,
            screenshot: None,
            page_text: None,
            runs: 0,
        }
    }
}

/// What a trigger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Started,
    AlreadyRunning,
    Disabled,
    /// A captcha, verification or refused password blocks automatic runs.
    Blocked,
    /// The last run failed less than the cooldown ago.
    CoolingDown,
    AlreadyLoggedIn,
    UnknownInstance,
}

pub struct AutoLogin {
    cfg: AutoLoginConfig,
    pool: Arc<Pool>,
    status: Mutex<HashMap<String, InstanceStatus>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl AutoLogin {
    pub fn new(cfg: AutoLoginConfig, pool: Arc<Pool>) -> Arc<Self> {
        let max = cfg.max_retry.saturating_add(1);
        // Attached runtimes are logged in and out by their IDE, never from here.
        let status = pool
            .spawned_names()
            .into_iter()
            .map(|n| (n.clone(), InstanceStatus::new(&n, max)))
            .collect();
        Arc::new(Self {
            cfg,
            pool,
            status: Mutex::new(status),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    pub fn statuses(&self) -> Vec<InstanceStatus> {
        let mut v: Vec<_> = lock(&self.status).values().cloned().collect();
        v.sort_by(|a, b| a.instance.cmp(&b.instance));
        v
    }

    pub fn status_of(&self, instance: &str) -> Option<InstanceStatus> {
        lock(&self.status).get(instance).cloned()
    }

    /// Called when a chat finds `instance` logged out. `Started`/`AlreadyRunning` mean a login is
    /// under way (the chat answers 503 "login in progress").
    pub fn on_not_logged_in(self: &Arc<Self>, instance: &str) -> Trigger {
        if !self.cfg.enabled {
            return Trigger::Disabled;
        }
        {
            let st = lock(&self.status);
            let Some(s) = st.get(instance) else {
                return Trigger::UnknownInstance;
            };
            if s.state == RunState::Running {
                return Trigger::AlreadyRunning;
            }
            if s.state.blocks_automatic() {
                return Trigger::Blocked;
            }
            // Just logged in: the pool's next refresh (already asked for) turns the instance ready.
            if s.state == RunState::Succeeded
                && s.finished_at
                    .is_some_and(|t| unix_secs().saturating_sub(t) < 10)
            {
                return Trigger::AlreadyRunning;
            }
            if s.state == RunState::Failed
                && s.finished_at
                    .is_some_and(|t| unix_secs().saturating_sub(t) < self.cfg.cooldown.as_secs())
            {
                return Trigger::CoolingDown;
            }
        }
        self.begin(instance)
    }

    /// An operator's start: ignores the cooldown and the blocks.
    pub fn start(self: &Arc<Self>, instance: &str) -> Trigger {
        if !self.cfg.enabled {
            return Trigger::Disabled;
        }
        if !lock(&self.status).contains_key(instance) {
            return Trigger::UnknownInstance;
        }
        let logged_in = self
            .pool
            .snapshots()
            .into_iter()
            .any(|s| s.name == instance && s.user.is_some() && s.state == InstanceState::Ready);
        if logged_in {
            return Trigger::AlreadyLoggedIn;
        }
        self.begin(instance)
    }

    fn begin(self: &Arc<Self>, instance: &str) -> Trigger {
        {
            let mut st = lock(&self.status);
            let Some(s) = st.get_mut(instance) else {
                return Trigger::UnknownInstance;
            };
            if s.state == RunState::Running {
                return Trigger::AlreadyRunning;
            }
            s.state = RunState::Running;
            s.attempts = 0;
            s.started_at = Some(unix_secs());
            s.finished_at = None;
            s.error_kind = None;
            s.last_error = None;
            s.screenshot = None;
            s.page_text = None;
            s.runs += 1;
        }
        tracing::info!(instance, "auto-login started");
        let this = self.clone();
        let name = instance.to_string();
        // Not raced against the cancel token here: the token reaches the browser flow, which
        // stops and still closes and waits for its browser.
        self.tracker.spawn(async move { this.run(&name).await });
        Trigger::Started
    }

    fn credentials(&self, instance: &str) -> Option<&AccountLogin> {
        self.cfg
            .accounts
            .get(instance)
            .or(self.cfg.default_account.as_ref())
    }

    async fn run(&self, instance: &str) {
        let Some(account) = self.credentials(instance).cloned() else {
            self.finish(
                instance,
                RunState::Failed,
                None,
                Some((
                    "no_credentials",
                    "no account for auto-login: set AUTO_LOGIN_USERNAME and AUTO_LOGIN_PASSWORD, \
                     or username and password_env in the accounts file"
                        .into(),
                )),
                None,
            );
            return;
        };
        let Some(password) = account.password.clone().filter(|p| !p.is_empty()) else {
            self.finish(
                instance,
                RunState::Failed,
                None,
                Some((
                    "no_password",
                    format!(
                        "no password for {}: set AUTO_LOGIN_PASSWORD or the account's password_env",
                        account.username
                    ),
                )),
                None,
            );
            return;
        };
        let creds = Credentials {
            username: account.username.clone(),
            password,
        };
        let max = self.cfg.max_retry.saturating_add(1);
        let mut last: Option<HeadlessError> = None;
        for attempt in 1..=max {
            if let Some(s) = lock(&self.status).get_mut(instance) {
                s.attempts = attempt;
            }
            // The browser flow has its own AUTO_LOGIN_TIMEOUT (and closes its browser when it
            // fires); this outer bound also covers connecting and the status wait afterwards.
            let bound = self.cfg.timeout + Duration::from_secs(60);
            let result = tokio::time::timeout(bound, self.attempt(instance, &creds)).await;
            let result = match result {
                Ok(r) => r,
                Err(_) => Err(AttemptError::Headless(HeadlessError::Timeout {
                    stage: "the auto-login attempt".into(),
                    after: bound,
                    diagnostics: Default::default(),
                })),
            };
            if self.cancel.is_cancelled() {
                self.finish(
                    instance,
                    RunState::Failed,
                    None,
                    Some(("cancelled", "the gateway is shutting down".into())),
                    None,
                );
                return;
            }
            match result {
                Ok(user) => {
                    tracing::info!(instance, user = %user, attempt, "auto-login succeeded");
                    let _ = self.pool.refresh(instance);
                    self.finish(instance, RunState::Succeeded, Some(user), None, None);
                    return;
                }
                Err(AttemptError::Setup(msg)) => {
                    tracing::warn!(instance, attempt, error = %msg, "auto-login attempt failed");
                    self.finish(instance, RunState::Failed, None, Some(("setup", msg)), None);
                    return;
                }
                Err(AttemptError::Headless(e)) => {
                    tracing::warn!(instance, attempt, kind = e.kind(), error = %e, "auto-login attempt failed");
                    if !e.retryable() {
                        let state = match &e {
                            HeadlessError::CaptchaRequired { .. } => RunState::CaptchaRequired,
                            HeadlessError::VerificationRequired { .. } => {
                                RunState::VerificationRequired
                            }
                            HeadlessError::BadCredentials { .. } => RunState::BadCredentials,
                            _ => RunState::Failed,
                        };
                        let diag = e.diagnostics().cloned();
                        self.finish(instance, state, None, Some((e.kind(), e.to_string())), diag);
                        return;
                    }
                    last = Some(e);
                }
            }
            if attempt < max {
                tokio::select! {
                    _ = tokio::time::sleep(self.cfg.retry_delay * attempt) => {}
                    _ = self.cancel.cancelled() => {}
                }
            }
        }
        let (kind, msg, diag) = match &last {
            Some(e) => (e.kind(), e.to_string(), e.diagnostics().cloned()),
            None => ("failed", "auto-login failed".to_string(), None),
        };
        self.finish(instance, RunState::Failed, None, Some((kind, msg)), diag);
    }

    /// One attempt: connect, switch the endpoint if asked, log in through the browser.
    async fn attempt(&self, instance: &str, creds: &Credentials) -> Result<String, AttemptError> {
        let work_dir = self
            .pool
            .work_dir(instance)
            .map_err(|e| AttemptError::Setup(e.to_string()))?;
        let ports = self
            .pool
            .ports(instance)
            .map_err(|e| AttemptError::Setup(e.to_string()))?
            .ok_or_else(|| {
                AttemptError::Headless(HeadlessError::Browser {
                    message: format!("instance {instance} has not started yet"),
                    diagnostics: Default::default(),
                })
            })?;
        let client = LingmaClient::connect(
            &ports.ws_url(),
            &work_dir.workspace(),
            self.cfg.client.clone(),
        )
        .await
        .map_err(|e| AttemptError::Headless(e.into()))?;
        let result = async {
            let status = client.auth_status().await?;
            if status.logged_in() {
                return Ok(status);
            }
            if let Some(url) = &self.cfg.dedicated_domain_url {
                apply_dedicated_domain(&client, url).await?;
            }
            let mut browser = self.cfg.browser.clone();
            if let Some(root) = &self.cfg.profile_root {
                browser.profile = Profile::Persistent(root.join(profile_name(&creds.username)));
            }
            let target = Target {
                client: &client,
                instance,
                http_port: ports.http,
                work_dir: work_dir.root(),
                cancel: Some(&self.cancel),
            };
            headless::login(&target, Some(creds), &browser).await
        }
        .await;
        client.close().await;
        result.map(|s| s.name).map_err(AttemptError::Headless)
    }

    fn finish(
        &self,
        instance: &str,
        state: RunState,
        user: Option<String>,
        error: Option<(&str, String)>,
        diag: Option<headless::Diagnostics>,
    ) {
        if let Some(s) = lock(&self.status).get_mut(instance) {
            s.state = state;
            s.finished_at = Some(unix_secs());
            s.user = user;
            if let Some((kind, msg)) = error {
                s.error_kind = Some(kind.to_string());
                s.last_error = Some(msg);
            }
            if let Some(d) = diag {
                s.screenshot = d.screenshot;
                s.page_text = d.text;
            }
        }
    }

    /// Stops running logins (their browsers are closed on the way) and waits for them.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

enum AttemptError {
    /// Not worth retrying: the instance is unknown.
    Setup(String),
    Headless(HeadlessError),
}

/// A directory name for an account's persistent profile.
pub fn profile_name(username: &str) -> String {
    let clean: String = username
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if clean.is_empty() || clean.starts_with('.') {
        use sha2::Digest;
        format!(
            "account-{}",
            hex::encode(&sha2::Sha256::digest(username.as_bytes())[..6])
        )
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_are_safe() {
        assert_eq!(profile_name("demo@example.com"), "demo@example.com");
        assert_eq!(profile_name("a/../b"), "a_.._b");
        assert!(profile_name("..").starts_with("account-"));
        assert!(profile_name("").starts_with("account-"));
    }

    #[test]
    fn blocking_states() {
        assert!(RunState::CaptchaRequired.blocks_automatic());
        assert!(RunState::VerificationRequired.blocks_automatic());
        assert!(RunState::BadCredentials.blocks_automatic());
        assert!(!RunState::Failed.blocks_automatic());
    }
}
