//! The settings table: every setting of `lingma-gw` declared once, with its flag, environment
//! variable(s), config key, default, value kind, one-line doc and the commands it belongs to.
//!
//! Everything else reads this list: resolution (`Sources::get`/`value` in `settings/mod.rs`), the
//! config file's keys and types, the clap tree's help for each flag (`annotate`, so `--help`, the
//! man pages and the completions show `[env: …] [default: …]` from here), the man pages'
//! ENVIRONMENT sections and the README's configuration table (`settings/docs.rs`).
//!
//! # How to add a setting
//!
//! 1. Add one entry to the `settings!` list below: `NAME { … }` with `doc`, `env` (the first name
//!    is the one documented first; older names follow and keep working), `key` (the flag name with
//!    `_`, or `None` for a secret that must only come from the environment), `flag` (or `None`),
//!    `default`, `kind`, `scope`.
//! 2. If it has a flag, declare the field in the command's clap struct (`src/cli/`) *without* a doc
//!    comment: its help comes from the entry.
//! 3. Read it where it is resolved: `src.value(&table::NAME, args.name)?` (flag > env > config >
//!    default), or `src.get(..)?` when the default is computed in code.
//! 4. Run `scripts/gen-docs.sh`: the man pages, completions and the README table follow;
//!    `tests/generated.rs` fails until they do.

use clap::Arg;

/// What a setting's value is: how an environment variable's text is read, what a config file
/// value must be, and what the docs say about its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `true/false`, `1/0`, `yes/no`, `on/off` in the environment; a TOML boolean.
    Bool,
    /// A whole number.
    Int,
    /// A non-negative number of seconds (fractions allowed).
    Secs,
    /// Free text.
    Text,
    /// A file or directory.
    Path,
    /// Several values: comma-separated in the environment, a TOML array of strings in the file;
    /// the flag is repeated.
    List,
    /// CSS selectors: a JSON list or `;`-separated in the environment (selectors contain commas).
    Selectors,
    /// Directories: `:`-separated in the environment (as `PATH`), a TOML array in the file.
    Paths,
    /// One of the listed words.
    Choice(&'static [&'static str]),
}

impl Kind {
    /// How the value is written, for the docs.
    pub fn format(self) -> String {
        match self {
            Kind::Bool => "true/false".into(),
            Kind::Int => "N".into(),
            Kind::Secs => "SECS".into(),
            Kind::Text => "TEXT".into(),
            Kind::Path => "PATH".into(),
            Kind::List => "A,B,…".into(),
            Kind::Selectors => "JSON list or `;`-separated".into(),
            Kind::Paths => "DIR:DIR…".into(),
            Kind::Choice(values) => values.join("|"),
        }
    }
}

/// A setting's default, as resolution uses it and the docs show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    /// A value read exactly like an environment variable's text (the tests parse every one).
    Is(&'static str),
    /// Computed in code (from other settings or the machine); the text says how.
    Computed(&'static str),
    /// Unset.
    None,
}

/// The commands a setting applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every command.
    Global,
    /// Every command that talks to Lingma.
    Lingma,
    /// These commands (paths as typed: `serve`, `session export`).
    Commands(&'static [&'static str]),
}

/// Commands that talk to Lingma, as their paths are typed.
pub const LINGMA_COMMANDS: &[&str] = &[
    "serve",
    "models",
    "chat",
    "probe",
    "login",
    "session export",
    "session import",
    "export",
    "import",
];

impl Scope {
    pub fn includes(self, command: &str) -> bool {
        match self {
            Scope::Global => true,
            Scope::Lingma => LINGMA_COMMANDS.contains(&command),
            Scope::Commands(list) => list.contains(&command),
        }
    }

    /// For the docs: which commands.
    pub fn describe(self) -> String {
        match self {
            Scope::Global => "all commands".into(),
            Scope::Lingma => "every command that talks to Lingma".into(),
            Scope::Commands(list) => list.join(", "),
        }
    }
}

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// One line, no final period.
    pub doc: &'static str,
    /// The long flag without `--`, if the command line can set it.
    pub flag: Option<&'static str>,
    /// Environment variables, in precedence order; the earlier Python gateway's names included.
    pub env: &'static [&'static str],
    /// The config file key (the flag name with `_`); `None` for secrets that only come from the
    /// environment.
    pub key: Option<&'static str>,
    /// Older config keys that are still accepted.
    pub key_aliases: &'static [&'static str],
    pub default: Default,
    pub kind: Kind,
    pub scope: Scope,
}

impl Setting {
    const BLANK: Setting = Setting {
        doc: "",
        flag: None,
        env: &[],
        key: None,
        key_aliases: &[],
        default: Default::None,
        kind: Kind::Text,
        scope: Scope::Global,
    };

    /// The name used in error messages: the config key, else the first environment variable.
    pub fn name(&self) -> &'static str {
        self.key.or(self.env.first().copied()).unwrap_or("?")
    }

    /// The default as the docs show it; `None` when there is none.
    pub fn default_text(&self) -> Option<&'static str> {
        match self.default {
            Default::Is(v) | Default::Computed(v) => Some(v),
            Default::None => None,
        }
    }

    /// What `--help` says for the setting's flag: the doc, its environment variables, its default.
    pub fn help(&self) -> String {
        let mut s = self.doc.to_string();
        if !self.env.is_empty() {
            s.push_str(&format!(" [env: {}", self.env.join(", ")));
            if self.kind == Kind::List {
                s.push_str(", comma-separated");
            }
            s.push(']');
        }
        if let Some(d) = self.default_text() {
            s.push_str(&format!(" [default: {d}]"));
        }
        s
    }

    /// Whether config key `k` names this setting (its key or an older spelling).
    pub fn has_key(&self, k: &str) -> bool {
        self.key == Some(k) || self.key_aliases.contains(&k)
    }
}

use self::Default::{Computed, Is};
use self::Kind::*;

const SERVE: Scope = Scope::Commands(&["serve"]);
/// `login --headless` and the gateway's auto-login share how Chromium is driven.
const LOGIN_AND_SERVE: Scope = Scope::Commands(&["login", "serve"]);
const BUNDLES: Scope = Scope::Commands(&[
    "serve",
    "session export",
    "session import",
    "export",
    "import",
]);
/// The commands that can use a Lingma that is already running (`--attach`, `--lingma-dialect`).
const ATTACHING: Scope = Scope::Commands(&["serve", "models", "chat", "probe"]);
const CHROMIUM_SELECTORS: Default = Computed("built in (docs/login.md)");

/// Declares each setting as a `pub static` and lists them all in [`SETTINGS`], in doc order.
macro_rules! settings {
    ($($name:ident { $($field:ident: $value:expr),* $(,)? })*) => {
        $(
            // Entries may spell out every field; the rest come from BLANK.
            #[allow(clippy::needless_update)]
            pub static $name: Setting = Setting { $($field: $value,)* ..Setting::BLANK };
        )*
        /// Every setting, in the order the docs list them.
        pub static SETTINGS: &[&Setting] = &[$(&$name),*];
    };
}

settings! {
    // ---- every command ----
    CONFIG {
        doc: "Config file (TOML; keys are the flag names with `_`)",
        flag: Some("config"), env: &["LINGMA_GW_CONFIG"],
        default: Computed("$XDG_CONFIG_HOME/lingma-gw/config.toml, if it exists"),
        kind: Path, scope: Scope::Global,
    }
    LOG_LEVEL {
        doc: "Log filter: error, warn, info, debug, trace, or tracing directives; -v and -q override it",
        env: &["LOG_LEVEL", "RUST_LOG"], key: Some("log_level"),
        default: Is("info"), kind: Text, scope: Scope::Global,
    }
    LOG_FORMAT {
        doc: "Log format on stderr",
        flag: Some("log-format"), env: &["LOG_FORMAT"], key: Some("log_format"),
        default: Is("text"), kind: Choice(&["text", "json"]), scope: Scope::Global,
    }

    // ---- how every command reaches Lingma ----
    LINGMA_BIN {
        doc: "The Lingma binary",
        flag: Some("lingma-bin"), env: &["LINGMA_BIN"], key: Some("lingma_bin"),
        default: Computed("newest ~/.lingma/bin/<version>/<platform>/Lingma"),
        kind: Path, scope: Scope::Lingma,
    }
    SIM {
        doc: "Use the built-in Lingma simulator instead of Lingma",
        flag: Some("sim"), env: &["LINGMA_SIM"], key: Some("sim"),
        default: Is("false"), kind: Bool, scope: Scope::Lingma,
    }
    WORK_DIR {
        doc: "Root of the instances' work dirs; an instance's is <work-dir>/<name>",
        flag: Some("work-dir"), env: &["LINGMA_WORK_DIR"], key: Some("work_dir"),
        default: Computed("$XDG_DATA_HOME/lingma-gw/instances"),
        kind: Path, scope: Scope::Lingma,
    }
    STARTUP_TIMEOUT {
        doc: "Seconds a Lingma instance has to start and answer `initialize`",
        flag: Some("startup-timeout"), env: &["LINGMA_STARTUP_TIMEOUT"], key: Some("startup_timeout"),
        default: Is("30"), kind: Secs, scope: Scope::Lingma,
    }
    FIRST_TOKEN_TIMEOUT {
        doc: "Seconds to wait for the first token of an answer, and between two tokens",
        flag: Some("first-token-timeout"), env: &["LINGMA_FIRST_TOKEN_TIMEOUT"],
        key: Some("first_token_timeout"),
        default: Is("120"), kind: Secs, scope: Scope::Lingma,
    }
    RPC_TIMEOUT {
        doc: "Seconds for Lingma to answer a control call (auth status, models, login)",
        env: &["LINGMA_RPC_TIMEOUT"], key: Some("rpc_timeout"),
        default: Is("30"), kind: Secs, scope: Scope::Lingma,
    }
    IDLE_FINISH {
        doc: "End a turn this many seconds after `step_end` when Lingma sends no `chat/finish`",
        env: &["LINGMA_IDLE_FINISH_SEC"], key: Some("idle_finish"),
        default: Is("3"), kind: Secs, scope: Scope::Lingma,
    }
    OFF_BY_ONE_WORKAROUND {
        doc: "The trigger-ask workaround for Lingma 2.11's off-by-one answer quirk",
        env: &["LINGMA_OFF_BY_ONE_WORKAROUND"], key: Some("off_by_one_workaround"),
        default: Is("false"), kind: Bool, scope: Scope::Lingma,
    }
    LINGMA_DIALECT {
        doc: "The dialect to speak: chat/ask (legacy, the plugin runtime) or session/* (acp, the desktop IDE's runtime); auto tries session/new once",
        flag: Some("lingma-dialect"), env: &["LINGMA_DIALECT"], key: Some("lingma_dialect"),
        default: Is("auto"), kind: Choice(&["auto", "legacy", "acp"]), scope: Scope::Lingma,
    }
    ATTACH {
        doc: "Use a Lingma that is already running (an IDE's) instead of starting one: `auto` finds it through its info file or socket; or an info file, a Unix socket, a ws:// URL. It is never started, stopped or logged in or out",
        flag: Some("attach"), env: &["LINGMA_ATTACH"], key: Some("attach"),
        kind: Text, scope: ATTACHING,
    }
    ATTACH_SEARCH_DIRS {
        doc: "Where --attach auto looks for a running Lingma's info file or socket",
        env: &["LINGMA_ATTACH_SEARCH_DIRS"], key: Some("attach_search_dirs"),
        default: Computed("the user's config dir, ~/.qodercn{/vscode,}, ~/.lingma{/vscode,}"),
        kind: Paths, scope: ATTACHING,
    }
    MACHINE_TOKEN {
        doc: "`Cosy-MachineToken` header for Lingma (Qoder CN sidecars)",
        env: &["LINGMA_MACHINE_TOKEN"], kind: Text, scope: Scope::Lingma,
    }

    // ---- serve: the pool ----
    INSTANCES {
        doc: "Number of Lingma instances to start, beside an --attach one",
        flag: Some("instances"), env: &["INSTANCE_COUNT"], key: Some("instances"),
        default: Computed("1, or 0 with --attach"), kind: Int, scope: SERVE,
    }
    ACCOUNTS {
        doc: "Accounts file (JSON list) or inline JSON assigning accounts to instances",
        flag: Some("accounts"), env: &["LINGMA_ACCOUNTS"], key: Some("accounts"),
        kind: Text, scope: LOGIN_AND_SERVE,
    }
    SESSION_BUNDLE {
        doc: "Session bundle (file, or base64 text) or seed directory for work dirs that are not logged in",
        flag: Some("session-bundle"), env: &["LINGMA_SESSION_BUNDLE"], key: Some("session_bundle"),
        kind: Path, scope: SERVE,
    }
    SOCKET_PORT {
        doc: "First socket port tried for the instances (their HTTP port is socket + 500)",
        flag: Some("socket-port"), env: &["LINGMA_SOCKET_PORT"], key: Some("socket_port"),
        default: Computed("any free port"), kind: Int, scope: SERVE,
    }
    CONNECTIONS_PER_INSTANCE {
        doc: "WebSocket connections, so concurrent chats, per instance",
        flag: Some("connections-per-instance"), env: &["LINGMA_CONNECTIONS_PER_INSTANCE"],
        key: Some("connections_per_instance"),
        default: Is("4"), kind: Int, scope: SERVE,
    }
    HEALTH_INTERVAL {
        doc: "Seconds between two health checks of an instance",
        flag: Some("health-interval"), env: &["LINGMA_HEALTH_INTERVAL"], key: Some("health_interval"),
        default: Is("5"), kind: Secs, scope: SERVE,
    }

    // ---- serve: HTTP ----
    HOST {
        doc: "Address to bind",
        flag: Some("host"), env: &["GATEWAY_HOST"], key: Some("host"),
        default: Is("127.0.0.1"), kind: Text, scope: SERVE,
    }
    PORT {
        doc: "Port to bind; 0 picks a free one",
        flag: Some("port"), env: &["GATEWAY_PORT"], key: Some("port"),
        default: Is("8000"), kind: Int, scope: SERVE,
    }
    API_KEY {
        doc: "Client API key for /v1 (repeat for several)",
        flag: Some("api-key"), env: &["API_KEYS"], key: Some("api_key"), key_aliases: &["api_keys"],
        kind: List, scope: SERVE,
    }
    ADMIN_TOKEN {
        doc: "Token for the /internal admin endpoints",
        flag: Some("admin-token"), env: &["ADMIN_TOKEN"], key: Some("admin_token"),
        default: Computed("the API keys"), kind: Text, scope: SERVE,
    }
    METRICS_TOKEN {
        doc: "Token for /metrics",
        flag: Some("metrics-token"), env: &["METRICS_TOKEN"], key: Some("metrics_token"),
        kind: Text, scope: SERVE,
    }
    METRICS_PUBLIC {
        doc: "Serve /metrics without credentials",
        flag: Some("metrics-public"), env: &["METRICS_PUBLIC"], key: Some("metrics_public"),
        default: Is("false"), kind: Bool, scope: SERVE,
    }
    MAX_IN_FLIGHT {
        doc: "Chats answered at once; more wait in the queue",
        flag: Some("max-in-flight"), env: &["GATEWAY_MAX_IN_FLIGHT"], key: Some("max_in_flight"),
        default: Computed("connections per instance × instances (an --attach runtime counts as one)"),
        kind: Int, scope: SERVE,
    }
    QUEUE_TIMEOUT {
        doc: "Seconds a chat may wait for a slot before 429",
        flag: Some("queue-timeout"), env: &["GATEWAY_QUEUE_TIMEOUT_SEC"], key: Some("queue_timeout"),
        default: Is("30"), kind: Secs, scope: SERVE,
    }
    MAX_QUEUE {
        doc: "Requests waiting for a slot; beyond that 429 at once",
        flag: Some("max-queue"), env: &["GATEWAY_MAX_QUEUE"], key: Some("max_queue"),
        default: Computed("4 × max-in-flight"), kind: Int, scope: SERVE,
    }
    QUEUE_MEMORY {
        doc: "MiB of request bodies that may be read or wait for a slot at once; beyond that 429",
        flag: Some("queue-memory"), env: &["GATEWAY_QUEUE_MEMORY_MB"], key: Some("queue_memory"),
        default: Is("64"), kind: Int, scope: SERVE,
    }
    BODY_LIMIT {
        doc: "Largest request body in bytes",
        flag: Some("body-limit"), env: &["GATEWAY_BODY_LIMIT"], key: Some("body_limit"),
        default: Is("10485760"), kind: Int, scope: SERVE,
    }
    HEADER_TIMEOUT {
        doc: "Seconds from the first byte of a request's headers to their end",
        flag: Some("header-timeout"), env: &["GATEWAY_HEADER_TIMEOUT_SEC"], key: Some("header_timeout"),
        default: Is("10"), kind: Secs, scope: SERVE,
    }
    BODY_TIMEOUT {
        doc: "Seconds to receive a whole request body (else 408)",
        flag: Some("body-timeout"), env: &["GATEWAY_BODY_TIMEOUT_SEC"], key: Some("body_timeout"),
        default: Is("30"), kind: Secs, scope: SERVE,
    }
    IDLE_TIMEOUT {
        doc: "Seconds an idle keep-alive connection stays open",
        flag: Some("idle-timeout"), env: &["GATEWAY_IDLE_TIMEOUT_SEC"], key: Some("idle_timeout"),
        default: Is("60"), kind: Secs, scope: SERVE,
    }
    STREAM_STALL_TIMEOUT {
        doc: "Seconds a client may stop reading an answer before it is ended and Lingma stopped",
        flag: Some("stream-stall-timeout"), env: &["GATEWAY_STREAM_STALL_TIMEOUT_SEC"],
        key: Some("stream_stall_timeout"),
        default: Is("60"), kind: Secs, scope: SERVE,
    }
    KEEPALIVE {
        doc: "Seconds of silence after which a stream gets a keep-alive (SSE comment, Anthropic ping); 0 turns them off",
        flag: Some("keepalive"), env: &["GATEWAY_SSE_KEEPALIVE_SEC"], key: Some("keepalive"),
        default: Is("15"), kind: Secs, scope: SERVE,
    }
    SHUTDOWN_GRACE {
        doc: "Seconds to let running answers finish on shutdown",
        flag: Some("shutdown-grace"), env: &["GATEWAY_SHUTDOWN_GRACE_SEC"], key: Some("shutdown_grace"),
        default: Is("10"), kind: Secs, scope: SERVE,
    }

    // ---- serve: answers ----
    DEFAULT_MODEL {
        doc: "Model used when a request names none or an unknown one",
        flag: Some("default-model"), env: &["DEFAULT_MODEL"], key: Some("default_model"),
        default: Computed("Lingma's default"), kind: Text, scope: SERVE,
    }
    ASK_MODE {
        doc: "How questions are asked",
        flag: Some("ask-mode"), env: &["DEFAULT_ASK_MODE"], key: Some("ask_mode"),
        default: Is("chat"), kind: Choice(&["chat", "agent"]), scope: SERVE,
    }
    SESSION_REUSE {
        doc: "Continue the upstream session when a conversation's history matches (--no-session-reuse: replay every time)",
        flag: Some("session-reuse"), env: &["SESSION_REUSE_ENABLED"], key: Some("session_reuse"),
        default: Is("true"), kind: Bool, scope: SERVE,
    }
    SESSION_CACHE_MAX_ENTRIES {
        doc: "Conversations remembered for reuse",
        flag: Some("session-cache-max-entries"), env: &["SESSION_CACHE_MAX_ENTRIES"],
        key: Some("session_cache_max_entries"),
        default: Is("10000"), kind: Int, scope: SERVE,
    }
    SESSION_CACHE_TTL {
        doc: "Seconds a conversation is remembered for reuse",
        flag: Some("session-cache-ttl"), env: &["SESSION_CACHE_TTL_SEC"], key: Some("session_cache_ttl"),
        default: Is("3600"), kind: Secs, scope: SERVE,
    }
    TOOL_SYNTAX {
        doc: "The syntax the model is asked to write tool calls in; every syntax is understood",
        flag: Some("tool-syntax"), env: &["TOOL_CALL_SYNTAX"], key: Some("tool_syntax"),
        default: Is("hermes"), kind: Choice(&["hermes", "qwen3-coder", "json"]), scope: SERVE,
    }
    TOOL_DESCRIPTION_LIMIT {
        doc: "Characters of a tool's description put in the question",
        flag: Some("tool-description-limit"), env: &["TOOL_DESCRIPTION_LIMIT"],
        key: Some("tool_description_limit"),
        default: Is("512"), kind: Int, scope: SERVE,
    }
    MODEL_MAP {
        doc: "Lingma model for client model names matching a glob, e.g. 'claude-*=dashscope_qwen3_coder' (repeat; first match wins)",
        flag: Some("model-map"), env: &["MODEL_MAP"], key: Some("model_map"),
        kind: List, scope: SERVE,
    }
    RESPONSE_STORE_ENTRIES {
        doc: "Responses kept for previous_response_id (store: true); 0 keeps none",
        flag: Some("response-store-entries"), env: &["RESPONSE_STORE_MAX_ENTRIES"],
        key: Some("response_store_entries"),
        default: Is("1000"), kind: Int, scope: SERVE,
    }
    RESPONSE_STORE_TTL {
        doc: "Seconds a stored response is kept",
        flag: Some("response-store-ttl"), env: &["RESPONSE_STORE_TTL_SEC"], key: Some("response_store_ttl"),
        default: Is("3600"), kind: Secs, scope: SERVE,
    }
    REPLICA_ID {
        doc: "This replica's name, in every response's x-lingma-gw-replica header, /healthz and the request log",
        flag: Some("replica-id"), env: &["LINGMA_GW_REPLICA_ID"], key: Some("replica_id"),
        default: Computed("the host name"), kind: Text, scope: SERVE,
    }

    // ---- logins ----
    AUTO_LOGIN {
        doc: "Let the gateway log logged-out instances in by itself through headless Chromium (docs/login.md)",
        flag: Some("auto-login"), env: &["AUTO_LOGIN_ENABLED"], key: Some("auto_login"),
        key_aliases: &["auto_login_enabled"],
        default: Is("false"), kind: Bool, scope: SERVE,
    }
    AUTO_LOGIN_TIMEOUT {
        doc: "Seconds one headless login attempt may take",
        env: &["AUTO_LOGIN_TIMEOUT"], key: Some("auto_login_timeout"),
        default: Is("180"), kind: Secs, scope: LOGIN_AND_SERVE,
    }
    AUTO_LOGIN_MAX_RETRY {
        doc: "Auto-login attempts after the first, for retryable failures (at most 10)",
        env: &["AUTO_LOGIN_MAX_RETRY"], key: Some("auto_login_max_retry"),
        default: Is("1"), kind: Int, scope: SERVE,
    }
    USERNAME {
        doc: "Account for --headless and the gateway's auto-login, when the accounts file names none",
        flag: Some("username"), env: &["AUTO_LOGIN_USERNAME"], key: Some("username"),
        key_aliases: &["auto_login_username"],
        kind: Text, scope: LOGIN_AND_SERVE,
    }
    AUTO_LOGIN_PASSWORD {
        doc: "Password for that account",
        env: &["AUTO_LOGIN_PASSWORD"], kind: Text, scope: LOGIN_AND_SERVE,
    }
    BROWSER {
        doc: "Chromium to drive",
        flag: Some("browser"), env: &["CHROME", "AUTO_LOGIN_BROWSER"], key: Some("browser"),
        key_aliases: &["auto_login_browser"],
        default: Is("/usr/bin/chromium"), kind: Path, scope: LOGIN_AND_SERVE,
    }
    PERSISTENT_PROFILE {
        doc: "Keep a browser profile per account (fewer verification prompts) instead of a fresh one",
        flag: Some("persistent-profile"), env: &["AUTO_LOGIN_PERSISTENT_PROFILE"],
        key: Some("persistent_profile"), key_aliases: &["auto_login_persistent_profile"],
        default: Is("false"), kind: Bool, scope: LOGIN_AND_SERVE,
    }
    AUTO_LOGIN_PROFILE_DIR {
        doc: "Root of the per-account browser profiles",
        env: &["AUTO_LOGIN_PROFILE_DIR"], key: Some("auto_login_profile_dir"),
        default: Computed("<work-dir>/.browser-profiles"), kind: Path, scope: LOGIN_AND_SERVE,
    }
    AUTO_LOGIN_FRAME_SELECTORS {
        doc: "Selectors of the login page's frame",
        env: &["AUTO_LOGIN_FRAME_SELECTORS"], key: Some("auto_login_frame_selectors"),
        default: CHROMIUM_SELECTORS, kind: Selectors, scope: LOGIN_AND_SERVE,
    }
    AUTO_LOGIN_PASSWORD_TAB_SELECTORS {
        doc: "Selectors of the password-login tab",
        env: &["AUTO_LOGIN_PASSWORD_TAB_SELECTORS"], key: Some("auto_login_password_tab_selectors"),
        default: CHROMIUM_SELECTORS, kind: Selectors, scope: LOGIN_AND_SERVE,
    }
    AUTO_LOGIN_USERNAME_SELECTORS {
        doc: "Selectors of the account field",
        env: &["AUTO_LOGIN_USERNAME_SELECTORS"], key: Some("auto_login_username_selectors"),
        default: CHROMIUM_SELECTORS, kind: Selectors, scope: LOGIN_AND_SERVE,
    }
    AUTO_LOGIN_PASSWORD_SELECTORS {
        doc: "Selectors of the password field",
        env: &["AUTO_LOGIN_PASSWORD_SELECTORS"], key: Some("auto_login_password_selectors"),
        default: CHROMIUM_SELECTORS, kind: Selectors, scope: LOGIN_AND_SERVE,
    }
    AUTO_LOGIN_SUBMIT_SELECTORS {
        doc: "Selectors of the submit button",
        env: &["AUTO_LOGIN_SUBMIT_SELECTORS"], key: Some("auto_login_submit_selectors"),
        default: CHROMIUM_SELECTORS, kind: Selectors, scope: LOGIN_AND_SERVE,
    }
    AUTO_LOGIN_CAPTCHA_SELECTORS {
        doc: "Selectors that mean a captcha is shown",
        env: &["AUTO_LOGIN_CAPTCHA_SELECTORS"], key: Some("auto_login_captcha_selectors"),
        default: CHROMIUM_SELECTORS, kind: Selectors, scope: LOGIN_AND_SERVE,
    }
    AUTO_LOGIN_ERROR_SELECTORS {
        doc: "Selectors of the login page's error message",
        env: &["AUTO_LOGIN_ERROR_SELECTORS"], key: Some("auto_login_error_selectors"),
        default: CHROMIUM_SELECTORS, kind: Selectors, scope: LOGIN_AND_SERVE,
    }
    DEDICATED_DOMAIN_URL {
        doc: "Switch Lingma to this dedicated (enterprise) domain before logging in",
        flag: Some("dedicated-domain-url"), env: &["DEDICATED_DOMAIN_URL"],
        key: Some("dedicated_domain_url"),
        kind: Text, scope: LOGIN_AND_SERVE,
    }

    // ---- session bundles ----
    BUNDLE_MAX_BYTES {
        doc: "Largest session bundle read, in bytes",
        env: &["LINGMA_BUNDLE_MAX_BYTES"], key: Some("bundle_max_bytes"),
        default: Is("67108864"), kind: Int, scope: BUNDLES,
    }
    BUNDLE_PASSPHRASE {
        doc: "Passphrase of encrypted bundles (or --passphrase-stdin)",
        env: &["LINGMA_BUNDLE_PASSPHRASE"], kind: Text, scope: BUNDLES,
    }
}

/// The setting whose flag is `--long` in command `path` (`""` for the top level).
pub fn by_flag(path: &str, long: &str) -> Option<&'static Setting> {
    SETTINGS
        .iter()
        .copied()
        .find(|s| s.flag == Some(long) && s.scope.includes(path))
}

/// The setting a config key (or an older spelling of it) names.
pub fn by_key(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().copied().find(|s| s.has_key(key))
}

/// Gives every flag that is a setting its help from the table, in every command of the tree.
pub fn annotate(cmd: clap::Command) -> clap::Command {
    annotate_at(cmd, "")
}

fn annotate_at(cmd: clap::Command, path: &str) -> clap::Command {
    let cmd = cmd.mut_args(|a: Arg| {
        let setting = a.get_long().and_then(|long| by_flag(path, long));
        match setting {
            Some(s) => a.help(s.help()),
            None => a,
        }
    });
    cmd.mut_subcommands(|sub| {
        let sub_path = if path.is_empty() {
            sub.get_name().to_string()
        } else {
            format!("{path} {}", sub.get_name())
        };
        annotate_at(sub, &sub_path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_keys_follow_the_flags() {
        let mut keys = HashSet::new();
        let mut envs = HashSet::new();
        for s in SETTINGS {
            assert!(!s.doc.is_empty() && !s.doc.ends_with('.'), "{}", s.name());
            assert!(
                !s.env.is_empty(),
                "{} has no environment variable",
                s.name()
            );
            for e in s.env {
                assert!(envs.insert(*e), "{e} is declared twice");
            }
            for k in s.key.iter().chain(s.key_aliases) {
                assert!(keys.insert(*k), "config key {k} is declared twice");
            }
            if let (Some(flag), Some(key)) = (s.flag, s.key) {
                assert_eq!(
                    key,
                    flag.replace('-', "_"),
                    "config keys are the flag names"
                );
            }
            if s.key.is_none() && s.flag.is_some() {
                assert_eq!(s.flag, Some("config"), "a flag needs a config key");
            }
        }
    }

    #[test]
    fn every_default_value_parses() {
        for s in SETTINGS {
            if let Default::Is(v) = s.default {
                super::super::env_text_value(s.kind, v)
                    .unwrap_or_else(|e| panic!("default of {}: {e}", s.name()));
            }
        }
        assert_eq!(
            BROWSER.default,
            Is(crate::login::headless::DEFAULT_BROWSER),
            "the browser default is spelled once in the login module"
        );
        assert_eq!(
            BUNDLE_MAX_BYTES.default,
            Is("67108864"),
            "crate::bundle::DEFAULT_MAX_BYTES"
        );
        assert_eq!(crate::bundle::DEFAULT_MAX_BYTES, 67108864);
    }
}
