//! Headless login: the system Chromium driven over the DevTools protocol (chromiumoxide), following
//! protocol §11.
//!
//! The driver opens the instance's login URL, finds the login frame (the `#alibaba-login-box`
//! iframe and friends, else the top page), leaves the QR-code default for the password tab, types
//! the account and password with real key events, submits, and then watches: the first request to
//! `http://127.0.0.1:<httpPort>/auth/callback` whose `state` matches is success (the browser itself
//! delivers it to the instance; the values are also submitted with `login/auth_callback` should the
//! instance not turn logged in), a slider captcha is [`HeadlessError::CaptchaRequired`], an identity
//! check is [`HeadlessError::VerificationRequired`], staying on the form is
//! [`HeadlessError::BadCredentials`], and anything else past the deadline is
//! [`HeadlessError::Timeout`]. Each failure saves a screenshot and the text of every frame into the
//! work dir's `login-diagnostics/`. Nothing here retries: the gateway's auto-login decides that, and
//! never after a captcha or a verification.
//!
//! Every locator is a setting ([`Locators`]); the defaults are §11's. Frames are reached through an
//! isolated world per frame (`Page.createIsolatedWorld`), so page scripts cannot interfere and
//! nested frames work the same way as the top page. Chromium is started with site isolation off so
//! that a cross-origin login iframe stays in the page's process and is reachable the same way.
//!
//! The browser process is always closed and waited for (`Browser::close`, then `wait`, then a kill
//! as the last resort), whatever happened; a fresh profile lives in a temporary directory removed
//! afterwards, a persistent one in the directory given.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use chromiumoxide::cdp::browser_protocol::network::EventRequestWillBeSent;
use chromiumoxide::types::{Command, Method, MethodId};
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures_util::StreamExt;
use rand::Rng;
use serde_json::{Value, json};
use thiserror::Error;
use tokio::sync::watch;

use super::{CallbackParams, Secret, expected_state, state_matches, wait_logged_in};
use crate::lingma::{AuthStatus, LingmaClient, LingmaError};

/// Where Debian's `chromium` package puts the browser.
pub const DEFAULT_BROWSER: &str = "/usr/bin/chromium";

/// Where to look for the page elements (protocol §11); every list is tried in order.
///
/// A selector is CSS, or `text=EXACT` (an element whose text is exactly that), or `CSS >> nth=N`
/// (the N-th match, from 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locators {
    /// The login iframe.
    pub frame: Vec<String>,
    /// Hosts whose frames count as the login frame when their path has `login`.
    pub frame_hosts: Vec<String>,
    /// Unambiguous password-login tabs: clicked as soon as the account field is not visible.
    pub password_tab: Vec<String>,
    /// Positional fallbacks: clicked only when the field is still not visible after
    /// [`Timeouts::tab_wait`].
    pub password_tab_fallback: Vec<String>,
    /// Text of the RAM-user interstitial, and the element that leaves it.
    pub ram_text: Vec<String>,
    pub main_account: Vec<String>,
    pub username: Vec<String>,
    pub password: Vec<String>,
    pub submit: Vec<String>,
    /// Slider-captcha elements, checked in every frame.
    pub captcha: Vec<String>,
    pub captcha_text: Vec<String>,
    /// Identity verification: URL fragments and page texts.
    pub verification_url: Vec<String>,
    pub verification_text: Vec<String>,
    /// A visible login error message (no confirmed selector exists; these are guesses that make a
    /// refused password fail fast instead of at the callback deadline).
    pub error: Vec<String>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Default for Locators {
    fn default() -> Self {
        Self {
            frame: strings(&[
                "#alibaba-login-iframe iframe",
                "iframe#alibaba-login-box",
                "iframe[name=alibaba-login-box]",
            ]),
            frame_hosts: strings(&["passport.aliyun.com", "passport.alibabacloud.com"]),
            password_tab: strings(&["text=账密登录", "text=密码登录"]),
            password_tab_fallback: strings(&["div.tabs-item >> nth=1", "#J_Quick2Static"]),
            ram_text: strings(&["RAM 用户登录"]),
            main_account: strings(&["text=主账号登录"]),
            username: strings(&[
                "#fm-login-id",
                "input[name=fm-login-id]",
                "input[name=loginId]",
            ]),
            password: strings(&[
                "#fm-login-password",
                "input[name=fm-login-password]",
                "input[type=password]",
            ]),
            submit: strings(&[
                "#fm-login-submit",
                "button.fm-submit",
                ".fm-btn button",
                "button.password-login",
                "button[type=submit]",
            ]),
            captcha: strings(&[
                "#nc_1_n1z",
                "#nc_1_wrapper",
                ".nc-container",
                "#nocaptcha",
                "iframe#baxia-dialog-content",
                ".baxia-dialog",
            ]),
            captcha_text: strings(&["unusual traffic", "请按住滑块", "拖动滑块"]),
            verification_url: strings(&["/iv/", "havana_iv_token"]),
            verification_text: strings(&[
                "安全验证",
                "身份验证",
                "短信验证码",
                "验证安全邮箱",
                "Security Verification",
            ]),
            error: strings(&[
                "#login-error",
                ".login-error",
                ".fm-error",
                ".login-error-msg",
            ]),
        }
    }
}

/// §11's timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub navigation: Duration,
    /// Finding the login frame and the account field.
    pub field: Duration,
    /// How long the QR default may stay before the positional tab fallbacks are clicked.
    pub tab_wait: Duration,
    /// From submit to the callback.
    pub callback: Duration,
    /// The whole browser flow.
    pub total: Duration,
    /// From the callback to `auth/status` 2.
    pub auth_status: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            navigation: Duration::from_secs(30),
            field: Duration::from_secs(20),
            tab_wait: Duration::from_secs(5),
            callback: Duration::from_secs(60),
            total: Duration::from_secs(180),
            auth_status: Duration::from_secs(30),
        }
    }
}

impl Timeouts {
    /// The defaults, with every stage capped by a whole-flow limit.
    pub fn with_total(total: Duration) -> Self {
        let d = Self::default();
        Self {
            navigation: d.navigation.min(total),
            field: d.field.min(total),
            tab_wait: d.tab_wait.min(total),
            callback: d.callback.min(total),
            total,
            auth_status: d.auth_status,
        }
    }
}

/// The browser profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// A new temporary profile, removed afterwards.
    Fresh,
    /// A profile kept in this directory (per account: fewer verification prompts).
    Persistent(PathBuf),
}

#[derive(Debug, Clone)]
pub struct BrowserOptions {
    pub executable: PathBuf,
    pub profile: Profile,
    pub locators: Locators,
    pub timeouts: Timeouts,
    /// Show the browser and only wait for the callback (the person logs in).
    pub visible: bool,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        Self {
            executable: PathBuf::from(DEFAULT_BROWSER),
            profile: Profile::Fresh,
            locators: Locators::default(),
            timeouts: Timeouts::default(),
            visible: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// What to log in.
pub struct Target<'a> {
    pub client: &'a LingmaClient,
    pub instance: &'a str,
    pub http_port: u16,
    /// Screenshots and page texts of failures go to `<work_dir>/login-diagnostics/`.
    pub work_dir: &'a Path,
    /// Stops the flow early (gateway shutdown); the browser is still closed and waited for.
    pub cancel: Option<&'a tokio_util::sync::CancellationToken>,
}

/// Files saved for diagnosis.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics {
    pub screenshot: Option<PathBuf>,
    pub text: Option<PathBuf>,
}

impl std::fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(p) = &self.screenshot {
            parts.push(format!("screenshot {}", p.display()));
        }
        if let Some(p) = &self.text {
            parts.push(format!("page text {}", p.display()));
        }
        if !parts.is_empty() {
            write!(f, " [saved for diagnosis: {}]", parts.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Debug, Error)]
pub enum HeadlessError {
    #[error(
        "Chromium was not found at {0}: install it (Debian/Ubuntu: `apt-get install chromium`) or \
         point --browser, CHROME or AUTO_LOGIN_BROWSER at it"
    )]
    BrowserMissing(PathBuf),
    #[error("cannot start Chromium ({path}): {reason}")]
    Launch { path: PathBuf, reason: String },
    #[error(
        "--visible needs a display (DISPLAY or WAYLAND_DISPLAY); on a machine without one run \
         `lingma-gw login --no-browser` and open the URL on another machine"
    )]
    NoDisplay,
    #[error(
        "CaptchaRequired: the login page asks for a slider captcha (risk control). Automated login \
         stops here and is not retried, because retries make the checks stricter. Log in once by \
         hand: `lingma-gw login --instance {instance}` and open the URL in a browser (or add \
         --visible), then keep the session or export it with `lingma-gw session export`{diagnostics}"
    )]
    CaptchaRequired {
        instance: String,
        diagnostics: Diagnostics,
    },
    #[error(
        "VerificationRequired: the account must pass an identity check (SMS or e-mail code). \
         Automated login stops here and is not retried. Log in once by hand with \
         `lingma-gw login --instance {instance} --visible --persistent-profile` (the profile then \
         remembers this device) or `lingma-gw login --instance {instance}` and open the URL in a \
         browser{diagnostics}"
    )]
    VerificationRequired {
        instance: String,
        diagnostics: Diagnostics,
    },
    #[error(
        "BadCredentials: still on the login form after submitting, so the user name or password \
         was refused. Check the user name (--username, AUTO_LOGIN_USERNAME or the accounts file) and \
         the password (--password-stdin, the account's password_env or AUTO_LOGIN_PASSWORD). Not \
         retried, so the account is not locked{diagnostics}"
    )]
    BadCredentials {
        instance: String,
        diagnostics: Diagnostics,
    },
    #[error(
        "Timeout: {stage} did not happen within {}s. Check that this machine reaches the login \
         page, then try again (AUTO_LOGIN_TIMEOUT sets the limit){diagnostics}", after.as_secs()
    )]
    Timeout {
        stage: String,
        after: Duration,
        diagnostics: Diagnostics,
    },
    #[error("browser automation failed: {message}{diagnostics}")]
    Browser {
        message: String,
        diagnostics: Diagnostics,
    },
    #[error(transparent)]
    Lingma(#[from] LingmaError),
}

impl HeadlessError {
    /// A stable name for status endpoints and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BrowserMissing(_) => "browser_missing",
            Self::Launch { .. } => "browser_launch_failed",
            Self::NoDisplay => "no_display",
            Self::CaptchaRequired { .. } => "captcha_required",
            Self::VerificationRequired { .. } => "verification_required",
            Self::BadCredentials { .. } => "bad_credentials",
            Self::Timeout { .. } => "timeout",
            Self::Browser { .. } => "browser_error",
            Self::Lingma(_) => "lingma_error",
        }
    }

    /// Whether trying again can help. Never after a captcha, a verification or a refused
    /// password (protocol §11), nor when the setup is wrong.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. } | Self::Browser { .. } | Self::Lingma(_) | Self::Launch { .. }
        )
    }

    pub fn diagnostics(&self) -> Option<&Diagnostics> {
        match self {
            Self::CaptchaRequired { diagnostics, .. }
            | Self::VerificationRequired { diagnostics, .. }
            | Self::BadCredentials { diagnostics, .. }
            | Self::Timeout { diagnostics, .. }
            | Self::Browser { diagnostics, .. } => Some(diagnostics),
            _ => None,
        }
    }
}

/// Why the browser flow stopped (before diagnostics are attached).
#[derive(Debug)]
enum Stop {
    Captcha,
    Verification,
    BadCredentials,
    Timeout(String, Duration),
    Cdp(String),
}

impl Stop {
    fn label(&self) -> &'static str {
        match self {
            Stop::Captcha => "captcha",
            Stop::Verification => "verification",
            Stop::BadCredentials => "bad-credentials",
            Stop::Timeout(..) => "timeout",
            Stop::Cdp(_) => "browser-error",
        }
    }

    fn into_error(self, instance: &str, diagnostics: Diagnostics) -> HeadlessError {
        let instance = instance.to_string();
        match self {
            Stop::Captcha => HeadlessError::CaptchaRequired {
                instance,
                diagnostics,
            },
            Stop::Verification => HeadlessError::VerificationRequired {
                instance,
                diagnostics,
            },
            Stop::BadCredentials => HeadlessError::BadCredentials {
                instance,
                diagnostics,
            },
            Stop::Timeout(stage, after) => HeadlessError::Timeout {
                stage,
                after,
                diagnostics,
            },
            Stop::Cdp(message) => HeadlessError::Browser {
                message,
                diagnostics,
            },
        }
    }
}

fn cdp(e: impl std::fmt::Display) -> Stop {
    Stop::Cdp(e.to_string())
}

/// Whether a visible browser can be shown here.
pub fn has_display() -> bool {
    if cfg!(target_os = "macos") || cfg!(windows) {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

/// Logs the target instance in through the browser: fills the form with `creds`, or with
/// `opts.visible` shows the page and waits for the person to finish. Returns the new auth status.
pub async fn login(
    target: &Target<'_>,
    creds: Option<&Credentials>,
    opts: &BrowserOptions,
) -> Result<AuthStatus, HeadlessError> {
    if !opts.executable.is_file() {
        return Err(HeadlessError::BrowserMissing(opts.executable.clone()));
    }
    if opts.visible && !has_display() {
        return Err(HeadlessError::NoDisplay);
    }
    let fill = if opts.visible { None } else { creds };
    if !opts.visible && creds.is_none() {
        return Err(HeadlessError::BadCredentials {
            instance: target.instance.to_string(),
            diagnostics: Diagnostics::default(),
        });
    }
    let login = target.client.login_url().await?;
    let expected = expected_state(&login).unwrap_or_default();
    let session = Session::launch(opts).await?;
    let flow = async {
        session.start_watching(target.http_port, &expected).await?;
        match fill {
            Some(c) => drive(&session, &login.url, c, opts).await,
            None => session.wait_visible(&login.url, opts.timeouts.total).await,
        }
    };
    let cancelled = async {
        match target.cancel {
            Some(c) => c.cancelled().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        r = tokio::time::timeout(opts.timeouts.total, flow) => match r {
            Ok(r) => r,
            Err(_) => Err(Stop::Timeout("the login".into(), opts.timeouts.total)),
        },
        _ = cancelled => Err(Stop::Cdp("cancelled: the gateway is shutting down".into())),
    };
    let outcome = match outcome {
        Ok(cb) => Ok(cb),
        Err(stop) => {
            let diag = session.diagnose(target.work_dir, stop.label()).await;
            Err(stop.into_error(target.instance, diag))
        }
    };
    session.close().await;
    let callback = outcome?;
    finish(target, &callback, opts.timeouts.auth_status).await
}

/// After the callback: the instance should turn logged in by itself (the browser delivered the
/// callback); if it does not soon, submit the values over RPC.
async fn finish(
    target: &Target<'_>,
    callback: &CallbackParams,
    limit: Duration,
) -> Result<AuthStatus, HeadlessError> {
    let poll = Duration::from_millis(250);
    let first = limit.min(Duration::from_secs(5));
    if let Some(s) = wait_logged_in(target.client, first, poll).await? {
        return Ok(s);
    }
    if let Err(e) = target
        .client
        .auth_callback(callback.nonce(), &callback.auth, &callback.token)
        .await
    {
        tracing::debug!(error = %e, "login/auth_callback after the browser callback failed");
    }
    match wait_logged_in(target.client, limit.saturating_sub(first), poll).await? {
        Some(s) => Ok(s),
        None => Err(HeadlessError::Timeout {
            stage: "auth/status turning logged in after the login callback".into(),
            after: limit,
            diagnostics: Diagnostics::default(),
        }),
    }
}

/// The form-filling flow; returns the matching callback.
async fn drive(
    s: &Session,
    url: &str,
    creds: &Credentials,
    opts: &BrowserOptions,
) -> Result<CallbackParams, Stop> {
    let loc = &opts.locators;
    let t = opts.timeouts;
    s.navigate(url, t.navigation).await?;
    let frame = s.find_form(url, loc, t).await?;
    if let Some(cb) = s.callback() {
        return Ok(cb);
    }
    s.fill(&frame, &loc.username, &creds.username).await?;
    s.fill(&frame, &loc.password, creds.password.expose())
        .await?;
    match s.element(&frame, &loc.submit).await? {
        Some(button) => s.click(&button).await?,
        None => s.press_enter().await?,
    }
    tracing::debug!("login form submitted");
    s.watch_after_submit(&frame, loc, t.callback).await
}

/// A raw DevTools command: keeps this driver independent of the generated builders.
#[derive(Debug)]
struct Raw {
    method: &'static str,
    params: Value,
}

impl serde::Serialize for Raw {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.params.serialize(s)
    }
}

impl Method for Raw {
    fn identifier(&self) -> MethodId {
        Cow::Borrowed(self.method)
    }
}

impl Command for Raw {
    type Response = Value;
}

/// Helpers injected into every evaluation (an isolated world, so the page cannot see them).
const PRELUDE: &str = r#"
const __vis = (el) => {
  if (!el || !el.isConnected) return false;
  const r = el.getBoundingClientRect();
  if (r.width <= 0 || r.height <= 0) return false;
  const s = getComputedStyle(el);
  return s.visibility !== 'hidden' && s.display !== 'none' && s.opacity !== '0';
};
const __byText = (t) => {
  const out = [];
  for (const el of document.querySelectorAll('a,button,div,span,li,label,p,input[type=button],input[type=submit]')) {
    const txt = el.tagName === 'INPUT' ? (el.value || '') : (el.textContent || '');
    if (txt.trim() === t) out.push(el);
  }
  return out;
};
const __find = (sel) => {
  try {
    const m = sel.match(/^(.*?)\s*>>\s*nth=(\d+)$/);
    if (m) return document.querySelectorAll(m[1])[Number(m[2])] || null;
    if (sel.startsWith('text=')) {
      const els = __byText(sel.slice(5));
      return els.filter(__vis).pop() || null;
    }
    return document.querySelector(sel);
  } catch (e) { return null; }
};
const __first = (sels) => {
  for (const s of sels) { const el = __find(s); if (el && __vis(el)) return el; }
  return null;
};
"#;

fn js(body: &str) -> String {
    format!("(() => {{ {PRELUDE}\n{body} }})()")
}

fn js_str(v: &str) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into())
}

fn js_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// A frame found in the frame tree.
#[derive(Debug, Clone)]
struct Frame {
    id: String,
    url: String,
}

/// A JS object handle.
#[derive(Debug, Clone)]
struct Handle {
    object_id: String,
}

struct Session {
    browser: tokio::sync::Mutex<Browser>,
    handler: Mutex<Option<tokio::task::JoinHandle<()>>>,
    page: Page,
    callback_rx: watch::Receiver<Option<CallbackParams>>,
    callback_tx: watch::Sender<Option<CallbackParams>>,
    worlds: Mutex<HashMap<String, i64>>,
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Held for its drop: a fresh profile is removed after the browser is gone.
    _profile: Option<tempfile::TempDir>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps here are plain caches; a poisoned lock still holds usable data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Session {
    async fn launch(opts: &BrowserOptions) -> Result<Self, HeadlessError> {
        let launch_err = |reason: String| HeadlessError::Launch {
            path: opts.executable.clone(),
            reason,
        };
        let (profile_dir, temp) = match &opts.profile {
            Profile::Fresh => {
                let t = tempfile::Builder::new()
                    .prefix("lingma-gw-chromium-")
                    .tempdir()
                    .map_err(|e| launch_err(format!("cannot create a profile dir: {e}")))?;
                (t.path().to_path_buf(), Some(t))
            }
            Profile::Persistent(dir) => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| launch_err(format!("cannot create {}: {e}", dir.display())))?;
                (dir.clone(), None)
            }
        };
        let mut args: Vec<&str> = vec![
            "no-sandbox",
            "disable-setuid-sandbox",
            "disable-gpu",
            "disable-quic",
            "no-first-run",
            "no-default-browser-check",
            "disable-background-networking",
            "disable-component-update",
            "disable-sync",
            "disable-extensions",
            "disable-default-apps",
            "disable-breakpad",
            "disable-dev-shm-usage",
            "disable-site-isolation-trials",
            "mute-audio",
            "hide-scrollbars",
            "password-store=basic",
            "use-mock-keychain",
        ];
        if !opts.visible {
            args.push("headless");
        }
        let mut builder = BrowserConfig::builder()
            .chrome_executable(&opts.executable)
            .disable_default_args()
            .user_data_dir(&profile_dir)
            .launch_timeout(Duration::from_secs(30))
            .request_timeout(Duration::from_secs(30))
            .env("TZ", "Asia/Shanghai")
            .arg(("lang", "zh-CN"))
            .arg(("window-size", "1280,900"))
            .arg((
                "disable-features",
                "IsolateOrigins,site-per-process,Translate,OptimizationHints,MediaRouter",
            ));
        for a in args {
            builder = builder.arg(a);
        }
        if opts.visible {
            builder = builder.with_head();
        }
        let config = builder.build().map_err(launch_err)?;
        let (browser, mut handler) = Browser::launch(config)
            .await
            .map_err(|e| launch_err(e.to_string()))?;
        let handler = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if let Err(e) = event {
                    tracing::trace!(error = %e, "devtools handler");
                }
            }
        });
        let mut browser = browser;
        let page = match browser.new_page("about:blank").await {
            Ok(p) => p,
            Err(e) => {
                shutdown_browser(&mut browser, handler).await;
                return Err(launch_err(format!("cannot open a page: {e}")));
            }
        };
        let (callback_tx, callback_rx) = watch::channel(None);
        Ok(Session {
            browser: tokio::sync::Mutex::new(browser),
            handler: Mutex::new(Some(handler)),
            page,
            callback_rx,
            callback_tx,
            worlds: Mutex::new(HashMap::new()),
            watcher: Mutex::new(None),
            _profile: temp,
        })
    }

    /// Closes the browser and waits for it, whatever state it is in.
    async fn close(&self) {
        if let Some(w) = lock(&self.watcher).take() {
            w.abort();
        }
        let handler = lock(&self.handler).take();
        let mut browser = self.browser.lock().await;
        if let Some(h) = handler {
            shutdown_browser(&mut browser, h).await;
        }
    }

    async fn raw(&self, method: &'static str, params: Value) -> Result<Value, Stop> {
        self.page
            .execute(Raw { method, params })
            .await
            .map(|r| r.result)
            .map_err(|e| Stop::Cdp(format!("{method}: {e}")))
    }

    /// Watches the page's requests for the login callback (before anything is loaded).
    async fn start_watching(&self, http_port: u16, expected: &str) -> Result<(), Stop> {
        let mut events = self
            .page
            .event_listener::<EventRequestWillBeSent>()
            .await
            .map_err(cdp)?;
        let _ = self.raw("Network.enable", json!({})).await;
        let tx = self.callback_tx.clone();
        let expected = expected.to_string();
        let task = tokio::spawn(async move {
            while let Some(ev) = events.next().await {
                if let Some(cb) = match_callback(&ev.request.url, http_port, &expected) {
                    tracing::debug!("saw the login callback request");
                    let _ = tx.send(Some(cb));
                    break;
                }
            }
        });
        *lock(&self.watcher) = Some(task);
        Ok(())
    }

    fn callback(&self) -> Option<CallbackParams> {
        self.callback_rx.borrow().clone()
    }

    async fn navigate(&self, url: &str, limit: Duration) -> Result<(), Stop> {
        match tokio::time::timeout(limit, self.page.goto(url)).await {
            Ok(Ok(_)) => Ok(()),
            // A navigation that ends elsewhere (a redirect to the callback) is not an error here.
            Ok(Err(e)) if self.callback().is_some() => {
                tracing::debug!(error = %e, "navigation ended at the callback");
                Ok(())
            }
            Ok(Err(e)) => Err(Stop::Cdp(format!("cannot open the login page: {e}"))),
            Err(_) => Err(Stop::Timeout("loading the login page".into(), limit)),
        }
    }

    /// The visible mode: show the page, wait for the callback.
    async fn wait_visible(&self, url: &str, limit: Duration) -> Result<CallbackParams, Stop> {
        self.navigate(url, limit).await?;
        let mut rx = self.callback_rx.clone();
        match tokio::time::timeout(limit, rx.wait_for(|c| c.is_some())).await {
            Ok(Ok(c)) => c.clone().ok_or_else(|| Stop::Cdp("callback lost".into())),
            Ok(Err(_)) => Err(Stop::Cdp("the browser went away".into())),
            Err(_) => Err(Stop::Timeout(
                "the login in the browser window".into(),
                limit,
            )),
        }
    }

    async fn frames(&self) -> Result<Vec<Frame>, Stop> {
        let tree = self.raw("Page.getFrameTree", json!({})).await?;
        let mut out = Vec::new();
        fn walk(node: &Value, out: &mut Vec<Frame>) {
            if let Some(f) = node.get("frame") {
                out.push(Frame {
                    id: f["id"].as_str().unwrap_or_default().to_string(),
                    url: f["url"].as_str().unwrap_or_default().to_string(),
                });
            }
            if let Some(children) = node.get("childFrames").and_then(Value::as_array) {
                for c in children {
                    walk(c, out);
                }
            }
        }
        walk(&tree["frameTree"], &mut out);
        Ok(out)
    }

    async fn world(&self, frame: &Frame) -> Result<i64, Stop> {
        if let Some(id) = lock(&self.worlds).get(&frame.id) {
            return Ok(*id);
        }
        let r = self
            .raw(
                "Page.createIsolatedWorld",
                json!({"frameId": frame.id, "worldName": "lingma-gw", "grantUniveralAccess": true}),
            )
            .await?;
        let id = r["executionContextId"]
            .as_i64()
            .ok_or_else(|| Stop::Cdp("no execution context for a frame".into()))?;
        lock(&self.worlds).insert(frame.id.clone(), id);
        Ok(id)
    }

    /// Evaluates in a frame's isolated world; a world lost to a navigation is made again once.
    async fn eval(&self, frame: &Frame, expr: &str, by_value: bool) -> Result<Value, Stop> {
        for attempt in 0..2 {
            let ctx = self.world(frame).await?;
            let r = self
                .raw(
                    "Runtime.evaluate",
                    json!({"expression": expr, "contextId": ctx, "returnByValue": by_value}),
                )
                .await;
            match r {
                Ok(v) => {
                    if let Some(ex) = v.get("exceptionDetails") {
                        return Err(Stop::Cdp(format!("script error: {ex}")));
                    }
                    return Ok(v["result"].clone());
                }
                Err(e) if attempt == 0 => {
                    tracing::trace!(error = ?e, "re-creating a frame's world");
                    lock(&self.worlds).remove(&frame.id);
                }
                Err(e) => return Err(e),
            }
        }
        Err(Stop::Cdp("evaluation failed".into()))
    }

    async fn eval_value(&self, frame: &Frame, body: &str) -> Result<Value, Stop> {
        Ok(self.eval(frame, &js(body), true).await?["value"].clone())
    }

    async fn visible(&self, frame: &Frame, sels: &[String]) -> Result<bool, Stop> {
        let v = self
            .eval_value(frame, &format!("return !!__first({});", js_list(sels)))
            .await?;
        Ok(v.as_bool().unwrap_or(false))
    }

    async fn element(&self, frame: &Frame, sels: &[String]) -> Result<Option<Handle>, Stop> {
        let r = self
            .eval(
                frame,
                &js(&format!("return __first({});", js_list(sels))),
                false,
            )
            .await?;
        Ok(r["objectId"].as_str().map(|id| Handle {
            object_id: id.to_string(),
        }))
    }

    async fn text(&self, frame: &Frame) -> String {
        self.eval_value(
            frame,
            "return document.body ? document.body.innerText : '';",
        )
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
    }

    async fn call_on(&self, h: &Handle, function: &str) -> Result<Value, Stop> {
        let r = self
            .raw(
                "Runtime.callFunctionOn",
                json!({"objectId": h.object_id, "functionDeclaration": function, "returnByValue": true}),
            )
            .await?;
        Ok(r["result"]["value"].clone())
    }

    /// A real mouse click at the element's centre; a script click if it has no box.
    async fn click(&self, h: &Handle) -> Result<(), Stop> {
        let _ = self
            .raw(
                "DOM.scrollIntoViewIfNeeded",
                json!({"objectId": h.object_id}),
            )
            .await;
        let quads = self
            .raw("DOM.getContentQuads", json!({"objectId": h.object_id}))
            .await
            .ok()
            .and_then(|v| v["quads"].as_array().and_then(|q| q.first().cloned()));
        let point = quads.and_then(|q| {
            let q: Vec<f64> = q.as_array()?.iter().filter_map(Value::as_f64).collect();
            (q.len() == 8).then(|| {
                (
                    (q[0] + q[2] + q[4] + q[6]) / 4.0,
                    (q[1] + q[3] + q[5] + q[7]) / 4.0,
                )
            })
        });
        match point {
            Some((x, y)) => {
                for (kind, extra) in [
                    ("mouseMoved", json!({})),
                    ("mousePressed", json!({"button": "left", "clickCount": 1})),
                    ("mouseReleased", json!({"button": "left", "clickCount": 1})),
                ] {
                    let mut p = json!({"type": kind, "x": x, "y": y});
                    if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
                        p.extend(e.clone());
                    }
                    self.raw("Input.dispatchMouseEvent", p).await?;
                }
                Ok(())
            }
            None => self
                .call_on(
                    h,
                    "function() { if (this.focus) this.focus(); this.click(); }",
                )
                .await
                .map(|_| ()),
        }
    }

    /// Clicks the field, clears it, types `text` with real key events 50–100 ms apart, and
    /// falls back to setting the value if the page swallowed keys.
    async fn fill(&self, frame: &Frame, sels: &[String], text: &str) -> Result<(), Stop> {
        let field = self
            .element(frame, sels)
            .await?
            .ok_or_else(|| Stop::Cdp(format!("no visible field for {}", js_list(sels))))?;
        self.click(&field).await?;
        self.call_on(
            &field,
            "function() { if (document.activeElement !== this) this.focus(); \
             if (this.select) this.select(); this.value = ''; }",
        )
        .await?;
        for c in text.chars() {
            let s = c.to_string();
            self.raw(
                "Input.dispatchKeyEvent",
                json!({"type": "keyDown", "text": s, "unmodifiedText": s, "key": s}),
            )
            .await?;
            self.raw("Input.dispatchKeyEvent", json!({"type": "keyUp", "key": s}))
                .await?;
            let pause = rand::rng().random_range(50..=100);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        let typed = self
            .call_on(&field, "function() { return (this.value || '').length; }")
            .await?;
        if typed.as_u64() != Some(text.chars().count() as u64) {
            tracing::debug!("typed keys did not land in the field; setting its value");
            let set = format!(
                "function() {{ this.value = {}; this.dispatchEvent(new Event('input', {{bubbles: true}})); \
                 this.dispatchEvent(new Event('change', {{bubbles: true}})); }}",
                serde_json::to_string(text).unwrap_or_else(|_| "''".into())
            );
            self.call_on(&field, &set).await?;
        }
        Ok(())
    }

    async fn press_enter(&self) -> Result<(), Stop> {
        for kind in ["keyDown", "keyUp"] {
            let mut p = json!({"type": kind, "key": "Enter", "code": "Enter",
                               "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13});
            if kind == "keyDown" {
                p["text"] = json!("\r");
            }
            self.raw("Input.dispatchKeyEvent", p).await?;
        }
        Ok(())
    }

    /// Captcha or identity verification anywhere on the page (every frame, nested ones too).
    async fn blocked(&self, loc: &Locators) -> Result<Option<Stop>, Stop> {
        let frames = self.frames().await?;
        for f in &frames {
            if loc
                .verification_url
                .iter()
                .any(|m| f.url.contains(m.as_str()))
            {
                return Ok(Some(Stop::Verification));
            }
        }
        for f in &frames {
            if self.visible(f, &loc.captcha).await.unwrap_or(false) {
                return Ok(Some(Stop::Captcha));
            }
            let text = self.text(f).await;
            if loc.captcha_text.iter().any(|t| text.contains(t.as_str())) {
                return Ok(Some(Stop::Captcha));
            }
            if loc
                .verification_text
                .iter()
                .any(|t| text.contains(t.as_str()))
            {
                return Ok(Some(Stop::Verification));
            }
        }
        Ok(None)
    }

    /// The login frame by the frame locators, then by host, else the top page.
    async fn login_frame(&self, loc: &Locators) -> Result<Frame, Stop> {
        let frames = self.frames().await?;
        let top = frames
            .first()
            .cloned()
            .ok_or_else(|| Stop::Cdp("the page has no frame".into()))?;
        for sel in &loc.frame {
            let r = self
                .eval(
                    &top,
                    &js(&format!("return __find({});", js_str(sel))),
                    false,
                )
                .await?;
            let Some(obj) = r["objectId"].as_str() else {
                continue;
            };
            let node = self
                .raw("DOM.describeNode", json!({"objectId": obj}))
                .await?;
            if let Some(id) = node["node"]["frameId"].as_str()
                && let Some(f) = frames.iter().skip(1).find(|f| f.id == id)
            {
                return Ok(f.clone());
            }
            // Match the element against each frame's owner element.
            let backend = node["node"]["backendNodeId"].as_i64();
            for f in frames.iter().skip(1) {
                let owner = self
                    .raw("DOM.getFrameOwner", json!({"frameId": f.id}))
                    .await
                    .ok()
                    .and_then(|o| o["backendNodeId"].as_i64());
                if owner.is_some() && owner == backend {
                    return Ok(f.clone());
                }
            }
        }
        for f in &frames {
            if let Ok(u) = url::Url::parse(&f.url)
                && u.host_str()
                    .is_some_and(|h| loc.frame_hosts.iter().any(|x| x == h))
                && u.path().contains("login")
            {
                return Ok(f.clone());
            }
        }
        Ok(top)
    }

    /// Finds the frame with a visible account field, leaving the QR default and the RAM
    /// interstitial on the way.
    async fn find_form(&self, url: &str, loc: &Locators, t: Timeouts) -> Result<Frame, Stop> {
        let started = Instant::now();
        let mut left_ram = false;
        loop {
            if self.callback().is_some() {
                return self.login_frame(loc).await;
            }
            if let Some(stop) = self.blocked(loc).await? {
                return Err(stop);
            }
            let frame = self.login_frame(loc).await?;
            if self.visible(&frame, &loc.username).await? {
                return Ok(frame);
            }
            if !left_ram {
                let top = self.frames().await?.into_iter().next();
                if let Some(top) = top {
                    let text = self.text(&top).await;
                    if loc.ram_text.iter().any(|r| text.contains(r.as_str()))
                        && let Some(b) = self.element(&top, &loc.main_account).await?
                    {
                        tracing::debug!("leaving the RAM-user login page");
                        left_ram = true;
                        self.click(&b).await?;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        self.navigate(url, t.navigation).await?;
                        continue;
                    }
                }
            }
            if let Some(tab) = self.element(&frame, &loc.password_tab).await? {
                self.click(&tab).await?;
            } else if started.elapsed() >= t.tab_wait
                && let Some(tab) = self.element(&frame, &loc.password_tab_fallback).await?
            {
                self.click(&tab).await?;
            }
            if started.elapsed() >= t.field {
                return Err(Stop::Timeout(
                    "finding the login form's account field".into(),
                    t.field,
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn watch_after_submit(
        &self,
        frame: &Frame,
        loc: &Locators,
        limit: Duration,
    ) -> Result<CallbackParams, Stop> {
        let deadline = Instant::now() + limit;
        let mut error_seen = 0u32;
        loop {
            if let Some(cb) = self.callback() {
                return Ok(cb);
            }
            if let Some(stop) = self.blocked(loc).await? {
                // The callback may have raced the check.
                return match self.callback() {
                    Some(cb) => Ok(cb),
                    None => Err(stop),
                };
            }
            let on_form = self.visible(frame, &loc.username).await.unwrap_or(false);
            let error = on_form && self.visible(frame, &loc.error).await.unwrap_or(false);
            error_seen = if error { error_seen + 1 } else { 0 };
            // A refused password shows an error and stays on the form; wait a moment in case a
            // redirect is on its way.
            if error_seen >= 4 {
                return Err(Stop::BadCredentials);
            }
            if Instant::now() >= deadline {
                return Err(if on_form {
                    Stop::BadCredentials
                } else {
                    Stop::Timeout("the login callback after submitting".into(), limit)
                });
            }
            let mut rx = self.callback_rx.clone();
            let _ = tokio::time::timeout(Duration::from_millis(250), rx.wait_for(|c| c.is_some()))
                .await;
        }
    }

    /// A screenshot and every frame's URL and text, saved under `<work_dir>/login-diagnostics/`.
    async fn diagnose(&self, work_dir: &Path, label: &str) -> Diagnostics {
        let dir = work_dir.join("login-diagnostics");
        let mut d = Diagnostics::default();
        {
            use std::os::unix::fs::DirBuilderExt;
            if std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .is_err()
            {
                return d;
            }
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.as_millis())
            .unwrap_or(0);
        let base = dir.join(format!("{stamp}-{label}"));
        let shot = tokio::time::timeout(
            Duration::from_secs(10),
            self.raw("Page.captureScreenshot", json!({"format": "png"})),
        )
        .await;
        if let Ok(Ok(v)) = shot
            && let Some(data) = v["data"].as_str()
            && let Ok(png) = base64::engine::general_purpose::STANDARD.decode(data)
        {
            let p = base.with_extension("png");
            if write_private(&p, &png).is_ok() {
                d.screenshot = Some(p);
            }
        }
        let mut text = String::new();
        if let Ok(Ok(frames)) = tokio::time::timeout(Duration::from_secs(5), self.frames()).await {
            for f in &frames {
                let t = tokio::time::timeout(Duration::from_secs(5), self.text(f))
                    .await
                    .unwrap_or_default();
                text.push_str(&format!("=== frame {}\n{}\n\n", f.url, t));
            }
        }
        let p = base.with_extension("txt");
        if write_private(&p, text.as_bytes()).is_ok() {
            d.text = Some(p);
        }
        d
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// Close, wait (bounded), kill as the last resort; the handler task ends with the connection.
async fn shutdown_browser(browser: &mut Browser, handler: tokio::task::JoinHandle<()>) {
    let closed = tokio::time::timeout(Duration::from_secs(5), browser.close()).await;
    if !matches!(closed, Ok(Ok(_))) {
        tracing::debug!("Chromium did not close cleanly; killing it");
        let _ = browser.kill().await;
    }
    match tokio::time::timeout(Duration::from_secs(10), browser.wait()).await {
        Ok(_) => {}
        Err(_) => {
            tracing::warn!("Chromium did not exit; killing it");
            let _ = browser.kill().await;
            let _ = browser.wait().await;
        }
    }
    handler.abort();
    let _ = handler.await;
}

/// The callback's values when `url` is the instance's `/auth/callback` for this login.
fn match_callback(url: &str, http_port: u16, expected: &str) -> Option<CallbackParams> {
    let u = url::Url::parse(url).ok()?;
    let host_ok = matches!(u.host_str(), Some("127.0.0.1") | Some("localhost"));
    if u.scheme() != "http" || !host_ok || u.port_or_known_default() != Some(http_port) {
        return None;
    }
    if u.path() != "/auth/callback" {
        return None;
    }
    let cb = CallbackParams::parse(url).ok()?;
    state_matches(&cb.state, expected).then_some(cb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_matching() {
        let ok = "http://127.0.0.1:37510/auth/callback?state=abc&auth=a&token=t";
        assert!(match_callback(ok, 37510, "abc").is_some());
        assert!(
            match_callback(
                "http://localhost:37510/auth/callback?state=2-abc&auth=a&token=t",
                37510,
                "abc"
            )
            .is_some()
        );
        assert!(match_callback(ok, 37511, "abc").is_none());
        assert!(match_callback(ok, 37510, "abd").is_none());
        assert!(
            match_callback(
                "http://evil.example:37510/auth/callback?state=abc&auth=a&token=t",
                37510,
                "abc"
            )
            .is_none()
        );
        assert!(
            match_callback(
                "http://127.0.0.1:37510/other?state=abc&auth=a&token=t",
                37510,
                "abc"
            )
            .is_none()
        );
    }

    #[test]
    fn default_locators_follow_the_protocol() {
        let l = Locators::default();
        assert_eq!(l.frame[1], "iframe#alibaba-login-box");
        assert_eq!(l.username[0], "#fm-login-id");
        assert_eq!(l.password[0], "#fm-login-password");
        assert!(l.submit.contains(&"button.fm-submit".to_string()));
        assert!(l.captcha.contains(&"#nc_1_n1z".to_string()));
        let t = Timeouts::with_total(Duration::from_secs(10));
        assert_eq!(t.callback, Duration::from_secs(10));
        assert_eq!(t.field, Duration::from_secs(10));
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        let d = Diagnostics::default();
        let captcha = HeadlessError::CaptchaRequired {
            instance: "i".into(),
            diagnostics: d.clone(),
        };
        assert!(!captcha.retryable());
        assert!(captcha.to_string().starts_with("CaptchaRequired"));
        assert!(captcha.to_string().contains("lingma-gw login --instance i"));
        assert!(
            !HeadlessError::BadCredentials {
                instance: "i".into(),
                diagnostics: d.clone()
            }
            .retryable()
        );
        assert!(
            HeadlessError::Timeout {
                stage: "x".into(),
                after: Duration::from_secs(1),
                diagnostics: d
            }
            .retryable()
        );
    }
}
