//! Every knob of the simulator in one typed struct, with the defaults written out.
//!
//! The clap flags (and their `LINGMA_SIM_*` environment variables) live in `cli/sim.rs`; they are
//! resolved into a [`SimConfig`] by the command glue. Fault modes are a [`Faults`] value: the
//! process-wide one comes from flags/env, a per-request one from `[[sim:...]]` directives
//! (`directives.rs`), and the two are merged per ask with the request winning.

use std::path::PathBuf;
use std::time::Duration;

/// The Lingma core version the simulator claims to be (`version`, `initialize`'s serverInfo).
pub const VERSION: &str = "2.11.1";
/// What `initialize` reports when the simulator speaks only the ACP dialect: the version line of
/// the desktop IDE's bundled runtime (§12.1).
pub const ACP_VERSION: &str = "0.7.1";

pub const DEFAULT_SOCKET_PORT: u16 = 37010;
pub const DEFAULT_HTTP_PORT: u16 = 37510;
pub const DEFAULT_STARTUP_DELAY_MS: u64 = 1000;
pub const DEFAULT_FIRST_TOKEN_DELAY_MS: u64 = 150;
pub const DEFAULT_CHUNK_SIZE: usize = 8;
pub const DEFAULT_CHUNK_DELAY_MS: u64 = 20;
/// Number of answer deltas sent before a mid-stream fault (crash, close, overwrite, retry) fires.
pub const DEFAULT_FAULT_AFTER: usize = 2;
pub const DEFAULT_ACCOUNT: &str = "demo@example.com:demo-password";
/// Exit code of a simulated crash: what a panicking Rust or Go program returns is 101 / 2; 101 is
/// distinctive and never used for anything else here.
pub const CRASH_EXIT_CODE: i32 = 101;

/// How the reasoning ("thinking") part of a reasoning model's answer is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ThinkStyle {
    /// A fenced ````think::1200 block at the start of the answer stream, as real Lingma sends it.
    #[default]
    Inline,
    /// `chat/think` callbacks with `step:"start"` ... `step:"done"`.
    Callback,
}

/// Which dialects the simulator speaks (§12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SimDialect {
    /// Only `chat/ask`: `session/*` is "method not found", as on the plugin runtime that
    /// `Lingma start` launches.
    Legacy,
    /// Only `session/*`: `chat/ask` is "method not found", as on the desktop IDE's runtime
    /// (whether a real one still answers `chat/ask` is not known).
    Acp,
    /// Both, on every connection.
    #[default]
    Both,
}

impl SimDialect {
    pub fn legacy(self) -> bool {
        self != SimDialect::Acp
    }

    pub fn acp(self) -> bool {
        self != SimDialect::Legacy
    }
}

/// When the ACP runtime answers `session/prompt` (§12.2: the reply may carry nothing and may
/// come late; clients do not wait for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PromptReply {
    /// `null`, after the turn's `chat_finish`.
    #[default]
    Late,
    /// `{}` at once, before the first update.
    Early,
    /// Never.
    None,
}

impl PromptReply {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "late" => Some(PromptReply::Late),
            "early" => Some(PromptReply::Early),
            "none" | "never" => Some(PromptReply::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PromptReply::Late => "late",
            PromptReply::Early => "early",
            PromptReply::None => "none",
        }
    }
}

/// What the test login page does after a submit with the right password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LoginChallenge {
    /// Redirect to `/auth/callback` at once.
    #[default]
    None,
    /// Show a slider captcha and never redirect.
    Captcha,
    /// Navigate to an identity-verification page (`/iv/...`, 安全验证).
    Verification,
}

/// What a simulated crash does. The binary exits the process; an embedded simulator (in a test or
/// a benchmark harness) cannot, so it drops every connection without a close frame and stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrashAction {
    #[default]
    ExitProcess,
    StopServer,
}

/// One account of the test login page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub username: String,
    pub password: String,
    /// Overrides the process-wide login challenge for this account only.
    pub challenge: Option<LoginChallenge>,
}

/// A parsed `--accounts` list (a newtype so that clap takes it as one value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts(pub Vec<Account>);

/// Parses `user:password[:challenge]` entries separated by commas (or newlines).
pub fn parse_accounts_list(spec: &str) -> Result<Accounts, String> {
    parse_accounts(spec).map(Accounts)
}

/// Parses `user:password[:challenge]` entries separated by commas (or newlines).
pub fn parse_accounts(spec: &str) -> Result<Vec<Account>, String> {
    let mut out = Vec::new();
    for entry in spec
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let mut parts = entry.splitn(3, ':');
        let username = parts.next().unwrap_or_default().trim();
        let Some(password) = parts.next() else {
            return Err(format!(
                "account {entry:?} is not USER:PASSWORD[:CHALLENGE]"
            ));
        };
        if username.is_empty() {
            return Err(format!("account {entry:?} has an empty user name"));
        }
        let challenge = match parts.next().map(str::trim) {
            None | Some("") => None,
            Some(c) => Some(
                <LoginChallenge as clap::ValueEnum>::from_str(c, true)
                    .map_err(|_| format!("unknown login challenge {c:?} in account {entry:?}"))?,
            ),
        };
        out.push(Account {
            username: username.to_string(),
            password: password.to_string(),
            challenge,
        });
    }
    if out.is_empty() {
        return Err("no account given".to_string());
    }
    Ok(out)
}

/// Parses the `credit/usage` knob: any JSON object.
pub fn parse_credit_usage(spec: &str) -> Result<serde_json::Value, String> {
    let v: serde_json::Value =
        serde_json::from_str(spec).map_err(|e| format!("not valid JSON: {e}"))?;
    if !v.is_object() {
        return Err("must be a JSON object".to_string());
    }
    Ok(v)
}

/// The default `credit/usage` result. No public capture exists for Lingma (only Qoder CN is known
/// to answer it), so this shape is the simulator's own and documented in docs/simulator.md.
pub fn default_credit_usage() -> serde_json::Value {
    serde_json::json!({
        "success": true,
        "errorCode": "",
        "errorMessage": "",
        "quota": {"used": 0, "limit": 1000, "remaining": 1000, "unit": "credit", "resetTime": 0}
    })
}

/// Fault modes. Every field is optional so that a per-request value can override a process-wide
/// one in either direction (`[[sim:crash=off]]` switches a process-wide crash off for one ask).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    pub crash: Option<bool>,
    pub close: Option<bool>,
    pub no_finish: Option<bool>,
    /// `Some(0)` or `Some(200)` means "no error" (an explicit override of a process-wide error).
    pub error: Option<u16>,
    pub quota: Option<bool>,
    pub slow: Option<Duration>,
    pub delay: Option<Duration>,
    pub overwrite: Option<bool>,
    pub retry: Option<bool>,
    pub off_by_one: Option<bool>,
    pub expired: Option<bool>,
    pub split: Option<bool>,
    pub batch: Option<bool>,
    pub think: Option<ThinkStyle>,
    pub hang: Option<bool>,
    /// `step_end` before the answer deltas, the order once captured from Lingma 2.11.
    pub step_end_first: Option<bool>,
    /// Reply with `w1 w2 ... wN` instead of the generated answer.
    pub len: Option<usize>,
    /// Deltas sent before crash/close/overwrite/retry fire.
    pub after: Option<usize>,
    /// Chunk size (characters) for this ask.
    pub chunk: Option<usize>,
    /// When an ACP prompt gets its reply.
    pub prompt_reply: Option<PromptReply>,
}

impl Faults {
    /// `self` (the more specific layer) wins over `base` field by field.
    pub fn over(&self, base: &Faults) -> Faults {
        Faults {
            crash: self.crash.or(base.crash),
            close: self.close.or(base.close),
            no_finish: self.no_finish.or(base.no_finish),
            error: self.error.or(base.error),
            quota: self.quota.or(base.quota),
            slow: self.slow.or(base.slow),
            delay: self.delay.or(base.delay),
            overwrite: self.overwrite.or(base.overwrite),
            retry: self.retry.or(base.retry),
            off_by_one: self.off_by_one.or(base.off_by_one),
            expired: self.expired.or(base.expired),
            split: self.split.or(base.split),
            batch: self.batch.or(base.batch),
            think: self.think.or(base.think),
            hang: self.hang.or(base.hang),
            step_end_first: self.step_end_first.or(base.step_end_first),
            len: self.len.or(base.len),
            after: self.after.or(base.after),
            chunk: self.chunk.or(base.chunk),
            prompt_reply: self.prompt_reply.or(base.prompt_reply),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Faults::default()
    }
}

/// Directive syntax (`crash, after=3, slow=500`), for the log.
impl std::fmt::Display for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut items: Vec<String> = Vec::new();
        let flags = [
            ("crash", self.crash),
            ("close", self.close),
            ("no-finish", self.no_finish),
            ("quota", self.quota),
            ("overwrite", self.overwrite),
            ("retry", self.retry),
            ("off-by-one", self.off_by_one),
            ("expired", self.expired),
            ("split", self.split),
            ("batch", self.batch),
            ("hang", self.hang),
            ("step-end-first", self.step_end_first),
        ];
        for (name, v) in flags {
            match v {
                Some(true) => items.push(name.to_string()),
                Some(false) => items.push(format!("{name}=off")),
                None => {}
            }
        }
        if let Some(c) = self.error {
            items.push(format!("error={c}"));
        }
        for (name, d) in [("slow", self.slow), ("delay", self.delay)] {
            if let Some(d) = d {
                items.push(format!("{name}={}", d.as_millis()));
            }
        }
        if let Some(t) = self.think {
            items.push(format!(
                "think={}",
                if t == ThinkStyle::Callback {
                    "callback"
                } else {
                    "inline"
                }
            ));
        }
        if let Some(r) = self.prompt_reply {
            items.push(format!("prompt-reply={}", r.as_str()));
        }
        for (name, n) in [
            ("len", self.len),
            ("after", self.after),
            ("chunk", self.chunk),
        ] {
            if let Some(n) = n {
                items.push(format!("{name}={n}"));
            }
        }
        f.write_str(&items.join(", "))
    }
}

/// The resolved configuration of one simulator process.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub work_dir: PathBuf,
    /// 0 picks a free port (logged).
    pub socket_port: u16,
    pub http_port: u16,
    pub endpoint: Option<String>,
    /// Accepted and logged; its values are undocumented for the real binary.
    pub transport_type: Option<String>,
    pub copy_data_dir: Option<PathBuf>,
    pub startup_delay: Duration,
    pub first_token_delay: Duration,
    pub chunk_size: usize,
    pub chunk_delay: Duration,
    pub strict_acks: bool,
    pub machine_token: Option<String>,
    /// A fresh work dir starts logged out instead of logged in as the demo account.
    pub logged_out: bool,
    pub login_challenge: LoginChallenge,
    pub accounts: Vec<Account>,
    pub credit_usage: serde_json::Value,
    pub think: ThinkStyle,
    /// Append every inbound message to `logs/sim-requests.jsonl`.
    pub request_log: bool,
    pub faults: Faults,
    pub on_crash: CrashAction,
    pub dialect: SimDialect,
    /// Where to publish the discovery file an IDE's runtime leaves (§12.3): `.info.json` form,
    /// or the legacy three-line form when the name does not end in `.json`.
    pub info_file: Option<PathBuf>,
    /// Also take connections on this Unix socket (the same frames as a byte stream).
    pub ipc_socket: Option<PathBuf>,
    /// `chat/deleteSessionById` accepts only `{id}` (some builds; clients retry with it).
    pub delete_needs_id: bool,
}

impl SimConfig {
    /// A configuration with every default, as `sim start --workDir D --socketPort P --httpPort H`.
    pub fn new(work_dir: impl Into<PathBuf>, socket_port: u16, http_port: u16) -> Self {
        SimConfig {
            work_dir: work_dir.into(),
            socket_port,
            http_port,
            endpoint: None,
            transport_type: None,
            copy_data_dir: None,
            startup_delay: Duration::from_millis(DEFAULT_STARTUP_DELAY_MS),
            first_token_delay: Duration::from_millis(DEFAULT_FIRST_TOKEN_DELAY_MS),
            chunk_size: DEFAULT_CHUNK_SIZE,
            chunk_delay: Duration::from_millis(DEFAULT_CHUNK_DELAY_MS),
            strict_acks: false,
            machine_token: None,
            logged_out: false,
            login_challenge: LoginChallenge::None,
            accounts: parse_accounts(DEFAULT_ACCOUNT).unwrap_or_default(),
            credit_usage: default_credit_usage(),
            think: ThinkStyle::Inline,
            request_log: true,
            faults: Faults::default(),
            on_crash: CrashAction::ExitProcess,
            dialect: SimDialect::Both,
            info_file: None,
            ipc_socket: None,
            delete_needs_id: false,
        }
    }

    /// Every delay (startup, first token, between chunks) becomes zero. Explicit fault delays
    /// (`slow`, `delay`) still apply: a test asks for them on purpose.
    pub fn with_no_delay(mut self) -> Self {
        self.startup_delay = Duration::ZERO;
        self.first_token_delay = Duration::ZERO;
        self.chunk_delay = Duration::ZERO;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_parse() {
        let a = parse_accounts("a@x.com:pw, b:p:verification").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].password, "pw");
        assert_eq!(a[1].username, "b");
        assert_eq!(a[1].challenge, Some(LoginChallenge::Verification));
        // The third field is the challenge; a colon inside the password is not supported past it.
        assert!(parse_accounts("b:p:w").is_err());
        let c = parse_accounts("u:p:captcha").unwrap();
        assert_eq!(c[0].challenge, Some(LoginChallenge::Captcha));
        assert!(parse_accounts("nopassword").is_err());
        assert!(parse_accounts("").is_err());
    }

    #[test]
    fn request_faults_override_process_faults() {
        let process = Faults {
            crash: Some(true),
            slow: Some(Duration::from_millis(5)),
            ..Faults::default()
        };
        let request = Faults {
            crash: Some(false),
            ..Faults::default()
        };
        let f = request.over(&process);
        assert_eq!(f.crash, Some(false));
        assert_eq!(f.slow, Some(Duration::from_millis(5)));
    }

    #[test]
    fn credit_usage_must_be_object() {
        assert!(parse_credit_usage("[1]").is_err());
        assert!(parse_credit_usage("{\"a\":1}").is_ok());
    }
}
