//! Resolved settings. Every setting is looked up in one fixed order, written out here for each one:
//! command-line flag, then environment variable, then config file, then the built-in default.
//!
//! The environment is passed in as a lookup function and the config file as a parsed struct, so
//! the whole precedence is unit-testable without touching the process environment.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::cli::{
    AskModeArg, AttachArgs, DialectArg, GlobalArgs, LingmaArgs, LogFormat, ServeArgs, ToolSyntaxArg,
};
use crate::lingma::discovery::BinaryChoice;
use crate::lingma::ide::{AttachSpec, SearchRoots};
use crate::lingma::{AskMode, ClientOptions, DialectChoice};
use crate::turn::CallSyntax;
use crate::turn::model_map::ModelMap;

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    BadEnv {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot read config file {path}: {reason}")]
    ConfigRead { path: PathBuf, reason: String },
    #[error("config file {path} is invalid: {reason}")]
    ConfigParse { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// The config file (TOML). Keys are the long flag names with `_` for `-`.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    pub lingma_bin: Option<PathBuf>,
    pub sim: Option<bool>,
    pub work_dir: Option<PathBuf>,
    pub socket_port: Option<u16>,
    pub startup_timeout: Option<f64>,
    pub rpc_timeout: Option<f64>,
    pub first_token_timeout: Option<f64>,
    pub idle_finish: Option<f64>,
    pub off_by_one_workaround: Option<bool>,
    pub lingma_dialect: Option<String>,
    pub attach: Option<String>,
    pub attach_search_dirs: Option<Vec<PathBuf>>,
    pub connections_per_instance: Option<usize>,
    pub health_interval: Option<f64>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub instances: Option<usize>,
    pub api_keys: Option<Vec<String>>,
    pub admin_token: Option<String>,
    pub metrics_token: Option<String>,
    pub metrics_public: Option<bool>,
    pub max_in_flight: Option<usize>,
    pub queue_timeout: Option<f64>,
    pub session_reuse: Option<bool>,
    pub session_cache_max_entries: Option<usize>,
    pub session_cache_ttl: Option<f64>,
    pub default_model: Option<String>,
    pub ask_mode: Option<String>,
    pub accounts: Option<String>,
    pub session_bundle: Option<PathBuf>,
    pub shutdown_grace: Option<f64>,
    pub body_limit: Option<usize>,
    pub max_queue: Option<usize>,
    pub queue_memory: Option<u64>,
    pub header_timeout: Option<f64>,
    pub body_timeout: Option<f64>,
    pub idle_timeout: Option<f64>,
    pub stream_stall_timeout: Option<f64>,
    pub keepalive: Option<f64>,
    pub tool_syntax: Option<String>,
    pub tool_description_limit: Option<usize>,
    pub model_map: Option<Vec<String>>,
    pub response_store_entries: Option<usize>,
    pub response_store_ttl: Option<f64>,
    pub replica_id: Option<String>,
    // Login and session bundles (see `LoginBrowserSettings`, `AutoLoginSettings`).
    pub auto_login_enabled: Option<bool>,
    pub auto_login_timeout: Option<f64>,
    pub auto_login_max_retry: Option<u32>,
    pub auto_login_username: Option<String>,
    pub auto_login_browser: Option<PathBuf>,
    pub auto_login_persistent_profile: Option<bool>,
    pub auto_login_profile_dir: Option<PathBuf>,
    pub auto_login_frame_selectors: Option<Vec<String>>,
    pub auto_login_password_tab_selectors: Option<Vec<String>>,
    pub auto_login_username_selectors: Option<Vec<String>>,
    pub auto_login_password_selectors: Option<Vec<String>>,
    pub auto_login_submit_selectors: Option<Vec<String>>,
    pub auto_login_captcha_selectors: Option<Vec<String>>,
    pub auto_login_error_selectors: Option<Vec<String>>,
    pub dedicated_domain_url: Option<String>,
    pub bundle_max_bytes: Option<u64>,
}

impl ConfigFile {
    /// Loads `explicit` (which must exist), else the default location if it exists, else nothing.
    pub fn load(
        explicit: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let explicit = explicit
            .map(Path::to_path_buf)
            .or_else(|| env("LINGMA_GW_CONFIG").map(PathBuf::from));
        let (path, required) = match explicit {
            Some(p) => (p, true),
            None => match default_config_path() {
                Some(p) => (p, false),
                None => return Ok(Self::default()),
            },
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(e) => {
                return Err(SettingsError::ConfigRead {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        toml::from_str(&text).map_err(|e| SettingsError::ConfigParse {
            path,
            reason: e.to_string(),
        })
    }
}

pub fn default_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "lingma-gw").map(|d| d.config_dir().join("config.toml"))
}

pub fn default_work_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "lingma-gw")
        .map(|d| d.data_dir().join("instances"))
        .unwrap_or_else(|| PathBuf::from(".lingma-gw/instances"))
}

/// Where a value comes from; one per lookup.
pub struct Sources<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub file: &'a ConfigFile,
}

impl Sources<'_> {
    /// The environment variable `name`, parsed; empty counts as unset.
    fn env<T: FromStr>(&self, name: &'static str) -> Result<Option<T>, SettingsError>
    where
        T::Err: std::fmt::Display,
    {
        match (self.env)(name).filter(|v| !v.trim().is_empty()) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|e: T::Err| SettingsError::BadEnv {
                    name,
                    value: v,
                    reason: e.to_string(),
                }),
        }
    }

    fn env_bool(&self, name: &'static str) -> Result<Option<bool>, SettingsError> {
        match (self.env)(name).filter(|v| !v.trim().is_empty()) {
            None => Ok(None),
            Some(v) => parse_bool(&v).map(Some).ok_or(SettingsError::BadEnv {
                name,
                value: v,
                reason: "expected true/false, 1/0, yes/no or on/off".into(),
            }),
        }
    }

    fn env_secs(&self, name: &'static str) -> Result<Option<f64>, SettingsError> {
        let v: Option<f64> = self.env(name)?;
        match v {
            Some(s) if !(s.is_finite() && s >= 0.0) => Err(SettingsError::BadEnv {
                name,
                value: s.to_string(),
                reason: "expected a non-negative number of seconds".into(),
            }),
            other => Ok(other),
        }
    }
}

pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn secs(v: f64) -> Result<Duration, SettingsError> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| SettingsError::Invalid(format!("{v} is not a valid number of seconds")))
}

/// A duration setting: flag, then environment variable, then config file, then `default` seconds.
fn secs_setting(
    flag: Option<f64>,
    src: &Sources,
    env: &'static str,
    file: Option<f64>,
    default: f64,
) -> Result<Duration, SettingsError> {
    let v = match flag {
        Some(v) => v,
        None => src.env_secs(env)?.or(file).unwrap_or(default),
    };
    secs(v)
}

fn ask_mode(v: &str) -> Result<AskMode, SettingsError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "chat" => Ok(AskMode::Chat),
        "agent" => Ok(AskMode::Agent),
        other => Err(SettingsError::Invalid(format!(
            "ask mode {other:?} is not one of chat, agent"
        ))),
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// A tracing filter directive (`info`, `debug`, `lingma_gw=trace`, ...).
    pub filter: String,
    pub format: LogFormat,
}

impl LogSettings {
    pub fn resolve(g: &GlobalArgs, src: &Sources) -> Result<Self, SettingsError> {
        // -v/-q beat LOG_LEVEL/RUST_LOG, which beat the file, which beats `info`.
        let filter = if g.quiet {
            "error".to_string()
        } else if g.verbose >= 2 {
            "trace".to_string()
        } else if g.verbose == 1 {
            "debug".to_string()
        } else {
            (src.env)("LOG_LEVEL")
                .or_else(|| (src.env)("RUST_LOG"))
                .filter(|s| !s.trim().is_empty())
                .or_else(|| src.file.log_level.clone())
                .unwrap_or_else(|| "info".into())
                .to_ascii_lowercase()
        };
        let format = match g.log_format {
            Some(f) => f,
            None => match (src.env)("LOG_FORMAT").or_else(|| src.file.log_format.clone()) {
                Some(f) if f.eq_ignore_ascii_case("json") => LogFormat::Json,
                Some(f) if f.eq_ignore_ascii_case("text") || f.is_empty() => LogFormat::Text,
                Some(f) => {
                    return Err(SettingsError::Invalid(format!(
                        "log format {f:?} is not one of text, json"
                    )));
                }
                None => LogFormat::Text,
            },
        };
        Ok(Self { filter, format })
    }
}

/// How every command reaches Lingma.
#[derive(Debug, Clone)]
pub struct LingmaSettings {
    pub binary: BinaryChoice,
    /// A running runtime to use (`--attach` > `LINGMA_ATTACH` > config); only the commands that
    /// take `--attach` resolve it ([`LingmaSettings::with_attach`]).
    pub attach: Option<AttachSpec>,
    /// Where `--attach auto` looks: `LINGMA_ATTACH_SEARCH_DIRS` (`:`-separated) > config
    /// `attach_search_dirs` > the user's config dir, `~/.qodercn{/vscode,}`, `~/.lingma{/vscode,}`.
    pub attach_roots: SearchRoots,
    pub work_dir: PathBuf,
    /// First port tried for instances' sockets (`LINGMA_SOCKET_PORT`); `None` = any free port.
    pub socket_port: Option<u16>,
    pub startup_timeout: Duration,
    pub connections_per_instance: usize,
    pub health_interval: Duration,
    pub client: ClientOptions,
}

impl LingmaSettings {
    pub fn resolve(a: &LingmaArgs, src: &Sources) -> Result<Self, SettingsError> {
        let f = src.file;
        let binary = if a.sim {
            BinaryChoice::Sim
        } else if let Some(p) = &a.lingma_bin {
            BinaryChoice::Path(p.clone())
        } else if src.env_bool("LINGMA_SIM")? == Some(true) {
            BinaryChoice::Sim
        } else if let Some(p) = (src.env)("LINGMA_BIN").filter(|s| !s.is_empty()) {
            BinaryChoice::Path(PathBuf::from(p))
        } else if f.sim == Some(true) {
            BinaryChoice::Sim
        } else if let Some(p) = &f.lingma_bin {
            BinaryChoice::Path(p.clone())
        } else {
            BinaryChoice::Discover
        };
        let work_dir = a
            .work_dir
            .clone()
            .or_else(|| {
                (src.env)("LINGMA_WORK_DIR")
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| f.work_dir.clone())
            .unwrap_or_else(default_work_dir);
        let socket_port = src.env("LINGMA_SOCKET_PORT")?.or(f.socket_port);
        let startup = src
            .env_secs("LINGMA_STARTUP_TIMEOUT")?
            .or(f.startup_timeout)
            .unwrap_or(30.0);
        let rpc = src
            .env_secs("LINGMA_RPC_TIMEOUT")?
            .or(f.rpc_timeout)
            .unwrap_or(30.0);
        let first_token = src
            .env_secs("LINGMA_FIRST_TOKEN_TIMEOUT")?
            .or(f.first_token_timeout)
            .unwrap_or(120.0);
        let idle = src
            .env_secs("LINGMA_IDLE_FINISH_SEC")?
            .or(f.idle_finish)
            .unwrap_or(3.0);
        let off_by_one = src
            .env_bool("LINGMA_OFF_BY_ONE_WORKAROUND")?
            .or(f.off_by_one_workaround)
            .unwrap_or(false);
        let connections = src
            .env("LINGMA_CONNECTIONS_PER_INSTANCE")?
            .or(f.connections_per_instance)
            .unwrap_or(4);
        if connections == 0 {
            return Err(SettingsError::Invalid(
                "connections per instance must be at least 1".into(),
            ));
        }
        let health = src
            .env_secs("LINGMA_HEALTH_INTERVAL")?
            .or(f.health_interval)
            .unwrap_or(5.0);
        let dialect = match (src.env)("LINGMA_DIALECT")
            .filter(|s| !s.trim().is_empty())
            .or_else(|| f.lingma_dialect.clone())
        {
            Some(v) => DialectChoice::parse(&v).ok_or_else(|| {
                SettingsError::Invalid(format!(
                    "Lingma dialect {v:?} is not one of auto, legacy, acp"
                ))
            })?,
            None => DialectChoice::Auto,
        };
        let attach_roots =
            match (src.env)("LINGMA_ATTACH_SEARCH_DIRS").filter(|s| !s.trim().is_empty()) {
                Some(list) => SearchRoots(std::env::split_paths(&list).collect()),
                None => match &f.attach_search_dirs {
                    Some(dirs) if !dirs.is_empty() => SearchRoots(dirs.clone()),
                    _ => SearchRoots::default_roots(),
                },
            };
        Ok(Self {
            binary,
            attach: None,
            attach_roots,
            work_dir,
            socket_port,
            startup_timeout: secs(startup)?,
            connections_per_instance: connections,
            health_interval: secs(health.max(0.05))?,
            client: ClientOptions {
                connect_timeout: Duration::from_secs(10),
                rpc_timeout: secs(rpc)?,
                first_token_timeout: secs(first_token)?,
                stall_timeout: secs(first_token)?,
                idle_finish: secs(idle)?,
                off_by_one_workaround: off_by_one,
                machine_token: (src.env)("LINGMA_MACHINE_TOKEN").filter(|s| !s.is_empty()),
                dialect,
                ..ClientOptions::default()
            },
        })
    }

    /// Adds what `--attach` and `--lingma-dialect` say (flag > env > config).
    pub fn with_attach(mut self, a: &AttachArgs, src: &Sources) -> Result<Self, SettingsError> {
        if let Some(d) = a.lingma_dialect {
            self.client.dialect = match d {
                DialectArg::Auto => DialectChoice::Auto,
                DialectArg::Legacy => DialectChoice::Fixed(crate::lingma::Dialect::Legacy),
                DialectArg::Acp => DialectChoice::Fixed(crate::lingma::Dialect::Acp),
            };
        }
        let attach = a
            .attach
            .clone()
            .or_else(|| (src.env)("LINGMA_ATTACH").filter(|s| !s.trim().is_empty()))
            .or_else(|| src.file.attach.clone());
        self.attach = match attach {
            Some(v) => Some(
                AttachSpec::parse(&v)
                    .map_err(|e| SettingsError::Invalid(format!("--attach/LINGMA_ATTACH: {e}")))?,
            ),
            None => None,
        };
        Ok(self)
    }
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub lingma: LingmaSettings,
    pub host: String,
    pub port: u16,
    pub instances: usize,
    pub api_keys: Vec<String>,
    pub admin_token: Option<String>,
    pub metrics_token: Option<String>,
    pub metrics_public: bool,
    pub allow_unauthenticated: bool,
    pub max_in_flight: usize,
    pub queue_timeout: Duration,
    pub session_reuse: bool,
    pub session_cache_max_entries: usize,
    pub session_cache_ttl: Duration,
    pub default_model: Option<String>,
    pub ask_mode: AskMode,
    pub accounts: Option<String>,
    pub session_bundle: Option<PathBuf>,
    pub shutdown_grace: Duration,
    pub body_limit: usize,
    /// Requests that may wait for an admission slot.
    pub max_queue: usize,
    /// Bytes of request bodies not yet admitted (being read or waiting).
    pub queue_memory: u64,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub stream_stall_timeout: Duration,
    /// Zero: no keep-alives.
    pub keepalive: Duration,
    pub tool_syntax: CallSyntax,
    pub tool_description_limit: usize,
    pub model_map: ModelMap,
    pub response_store_entries: usize,
    pub response_store_ttl: Duration,
    /// Names this replica in a response header, `/healthz` and the request log.
    pub replica_id: String,
}

impl ServeSettings {
    pub fn resolve(a: &ServeArgs, src: &Sources) -> Result<Self, SettingsError> {
        let f = src.file;
        let lingma = LingmaSettings::resolve(&a.lingma, src)?.with_attach(&a.attach, src)?;
        let host = a
            .host
            .clone()
            .or_else(|| (src.env)("GATEWAY_HOST").filter(|s| !s.is_empty()))
            .or_else(|| f.host.clone())
            .unwrap_or_else(|| "127.0.0.1".into());
        let port = match a.port {
            Some(p) => p,
            None => src.env("GATEWAY_PORT")?.or(f.port).unwrap_or(8000),
        };
        // An attached runtime may be the whole pool: then nothing is started unless asked.
        let attached = usize::from(lingma.attach.is_some());
        let instances = match a.instances {
            Some(n) => n,
            None => src
                .env("INSTANCE_COUNT")?
                .or(f.instances)
                .unwrap_or(1 - attached),
        };
        if instances + attached == 0 {
            return Err(SettingsError::Invalid(
                "--instances must be at least 1 (or give --attach)".into(),
            ));
        }
        let api_keys: Vec<String> = if !a.api_keys.is_empty() {
            a.api_keys.clone()
        } else if let Some(list) = (src.env)("API_KEYS").filter(|s| !s.trim().is_empty()) {
            list.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect()
        } else {
            f.api_keys.clone().unwrap_or_default()
        };
        let pick_str = |flag: &Option<String>, env: &str, file: &Option<String>| {
            flag.clone()
                .or_else(|| (src.env)(env).filter(|s| !s.is_empty()))
                .or_else(|| file.clone())
        };
        let admin_token = pick_str(&a.admin_token, "ADMIN_TOKEN", &f.admin_token);
        let metrics_token = pick_str(&a.metrics_token, "METRICS_TOKEN", &f.metrics_token);
        let metrics_public = if a.metrics_public {
            true
        } else {
            src.env_bool("METRICS_PUBLIC")?
                .or(f.metrics_public)
                .unwrap_or(false)
        };
        let max_in_flight = match a.max_in_flight {
            Some(n) => n,
            None => src
                .env("GATEWAY_MAX_IN_FLIGHT")?
                .or(f.max_in_flight)
                .unwrap_or((instances + attached) * lingma.connections_per_instance),
        };
        if max_in_flight == 0 {
            return Err(SettingsError::Invalid(
                "--max-in-flight must be at least 1".into(),
            ));
        }
        let queue_timeout = match a.queue_timeout {
            Some(s) => s,
            None => src
                .env_secs("GATEWAY_QUEUE_TIMEOUT_SEC")?
                .or(f.queue_timeout)
                .unwrap_or(30.0),
        };
        let session_reuse = if a.no_session_reuse {
            false
        } else if a.session_reuse {
            true
        } else {
            src.env_bool("SESSION_REUSE_ENABLED")?
                .or(f.session_reuse)
                .unwrap_or(true)
        };
        let cache_max = src
            .env("SESSION_CACHE_MAX_ENTRIES")?
            .or(f.session_cache_max_entries)
            .unwrap_or(10_000);
        let cache_ttl = src
            .env_secs("SESSION_CACHE_TTL_SEC")?
            .or(f.session_cache_ttl)
            .unwrap_or(3600.0);
        let default_model = pick_str(&a.default_model, "DEFAULT_MODEL", &f.default_model);
        let mode = match a.ask_mode {
            Some(AskModeArg::Chat) => AskMode::Chat,
            Some(AskModeArg::Agent) => AskMode::Agent,
            None => match (src.env)("DEFAULT_ASK_MODE")
                .filter(|s| !s.is_empty())
                .or_else(|| f.ask_mode.clone())
            {
                Some(m) => ask_mode(&m)?,
                None => AskMode::Chat,
            },
        };
        let accounts = pick_str(&a.accounts, "LINGMA_ACCOUNTS", &f.accounts);
        let session_bundle = a
            .session_bundle
            .clone()
            .or_else(|| {
                (src.env)("LINGMA_SESSION_BUNDLE")
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| f.session_bundle.clone());
        let grace = match a.shutdown_grace {
            Some(s) => s,
            None => src
                .env_secs("GATEWAY_SHUTDOWN_GRACE_SEC")?
                .or(f.shutdown_grace)
                .unwrap_or(10.0),
        };
        let body_limit = match a.body_limit {
            Some(n) => n,
            None => src
                .env("GATEWAY_BODY_LIMIT")?
                .or(f.body_limit)
                .unwrap_or(10 * 1024 * 1024),
        };
        if body_limit == 0 {
            return Err(SettingsError::Invalid(
                "--body-limit must be at least 1 byte".into(),
            ));
        }
        let max_queue = match a.max_queue {
            Some(n) => n,
            None => src
                .env("GATEWAY_MAX_QUEUE")?
                .or(f.max_queue)
                .unwrap_or(max_in_flight.saturating_mul(4)),
        };
        let queue_memory_mib = match a.queue_memory {
            Some(n) => n,
            None => src
                .env("GATEWAY_QUEUE_MEMORY_MB")?
                .or(f.queue_memory)
                .unwrap_or(64),
        };
        let queue_memory = queue_memory_mib.saturating_mul(1024 * 1024);
        if queue_memory < body_limit as u64 {
            return Err(SettingsError::Invalid(format!(
                "--queue-memory ({queue_memory_mib} MiB) must hold at least one request of \
                 --body-limit ({body_limit} bytes)"
            )));
        }
        let header_timeout = secs_setting(
            a.header_timeout,
            src,
            "GATEWAY_HEADER_TIMEOUT_SEC",
            f.header_timeout,
            10.0,
        )?;
        let body_timeout = secs_setting(
            a.body_timeout,
            src,
            "GATEWAY_BODY_TIMEOUT_SEC",
            f.body_timeout,
            30.0,
        )?;
        let idle_timeout = secs_setting(
            a.idle_timeout,
            src,
            "GATEWAY_IDLE_TIMEOUT_SEC",
            f.idle_timeout,
            60.0,
        )?;
        let stream_stall_timeout = secs_setting(
            a.stream_stall_timeout,
            src,
            "GATEWAY_STREAM_STALL_TIMEOUT_SEC",
            f.stream_stall_timeout,
            60.0,
        )?;
        let keepalive = secs_setting(
            a.keepalive,
            src,
            "GATEWAY_SSE_KEEPALIVE_SEC",
            f.keepalive,
            15.0,
        )?;
        let tool_syntax = match a.tool_syntax {
            Some(ToolSyntaxArg::Hermes) => CallSyntax::Hermes,
            Some(ToolSyntaxArg::Qwen3Coder) => CallSyntax::Qwen3Coder,
            Some(ToolSyntaxArg::Json) => CallSyntax::FencedJson,
            None => match (src.env)("TOOL_CALL_SYNTAX")
                .filter(|s| !s.trim().is_empty())
                .or_else(|| f.tool_syntax.clone())
            {
                Some(v) => CallSyntax::parse(&v).ok_or_else(|| {
                    SettingsError::Invalid(format!(
                        "tool syntax {v:?} is not one of hermes, qwen3-coder, json"
                    ))
                })?,
                None => CallSyntax::Hermes,
            },
        };
        let tool_description_limit = match a.tool_description_limit {
            Some(n) => n,
            None => src
                .env("TOOL_DESCRIPTION_LIMIT")?
                .or(f.tool_description_limit)
                .unwrap_or(512),
        };
        let model_map_rules: Vec<String> = if !a.model_map.is_empty() {
            a.model_map.clone()
        } else if let Some(list) = (src.env)("MODEL_MAP").filter(|s| !s.trim().is_empty()) {
            list.split(',').map(str::to_string).collect()
        } else {
            f.model_map.clone().unwrap_or_default()
        };
        let model_map = ModelMap::parse(model_map_rules.iter().map(String::as_str))
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        let response_store_entries = match a.response_store_entries {
            Some(n) => n,
            None => src
                .env("RESPONSE_STORE_MAX_ENTRIES")?
                .or(f.response_store_entries)
                .unwrap_or(1000),
        };
        let response_store_ttl = secs_setting(
            a.response_store_ttl,
            src,
            "RESPONSE_STORE_TTL_SEC",
            f.response_store_ttl,
            3600.0,
        )?;
        let replica_id = replica_id(
            pick_str(&a.replica_id, "LINGMA_GW_REPLICA_ID", &f.replica_id),
            default_replica_id,
        )?;
        for (flag, d) in [
            ("--header-timeout", header_timeout),
            ("--body-timeout", body_timeout),
            ("--idle-timeout", idle_timeout),
            ("--stream-stall-timeout", stream_stall_timeout),
        ] {
            if d.is_zero() {
                return Err(SettingsError::Invalid(format!(
                    "{flag} must be more than 0 seconds"
                )));
            }
        }
        let settings = Self {
            lingma,
            host,
            port,
            instances,
            api_keys,
            admin_token,
            metrics_token,
            metrics_public,
            allow_unauthenticated: a.allow_unauthenticated,
            max_in_flight,
            queue_timeout: secs(queue_timeout)?,
            session_reuse,
            session_cache_max_entries: cache_max.max(1),
            session_cache_ttl: secs(cache_ttl)?,
            default_model,
            ask_mode: mode,
            accounts,
            session_bundle,
            shutdown_grace: secs(grace)?,
            body_limit,
            max_queue,
            queue_memory,
            header_timeout,
            body_timeout,
            idle_timeout,
            stream_stall_timeout,
            keepalive,
            tool_syntax,
            tool_description_limit,
            model_map,
            response_store_entries,
            response_store_ttl,
            replica_id,
        };
        settings.check_exposure()?;
        Ok(settings)
    }

    /// Binding beyond loopback with no API keys exposes Lingma accounts to the network.
    fn check_exposure(&self) -> Result<(), SettingsError> {
        let loopback = match self.host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => self.host == "localhost",
        };
        if !loopback && self.api_keys.is_empty() && !self.allow_unauthenticated {
            return Err(SettingsError::Invalid(format!(
                "refusing to listen on {} without API keys: set --api-key/API_KEYS, or pass \
                 --allow-unauthenticated if this is really what you want",
                self.host
            )));
        }
        Ok(())
    }
}

/// The longest replica id: a DNS name's length, which a host name default never exceeds.
const REPLICA_ID_MAX: usize = 253;

/// `--replica-id`, else the host name (a StatefulSet pod's name, a container's id), else
/// `lingma-gw`. It goes into a response header and log lines, so it must be visible ASCII.
fn replica_id(
    given: Option<String>,
    host_name: fn() -> Option<String>,
) -> Result<String, SettingsError> {
    let valid = |v: &str| {
        !v.is_empty() && v.len() <= REPLICA_ID_MAX && v.bytes().all(|b| b.is_ascii_graphic())
    };
    match given.map(|v| v.trim().to_string()) {
        Some(v) if valid(&v) => Ok(v),
        Some(v) => Err(SettingsError::Invalid(format!(
            "replica id {v:?} must be 1 to {REPLICA_ID_MAX} visible ASCII characters (no spaces)"
        ))),
        None => Ok(host_name()
            .filter(|h| valid(h))
            .unwrap_or_else(|| "lingma-gw".to_string())),
    }
}

fn default_replica_id() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
}

/// A list setting from the environment: a JSON array, or `;`-separated (CSS selectors contain
/// commas, so commas cannot separate them).
fn env_list(src: &Sources, name: &'static str) -> Result<Option<Vec<String>>, SettingsError> {
    let Some(v) = (src.env)(name).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let list: Vec<String> = if v.trim_start().starts_with('[') {
        serde_json::from_str(&v).map_err(|e| SettingsError::BadEnv {
            name,
            value: v.clone(),
            reason: format!("not a JSON list of strings: {e}"),
        })?
    } else {
        v.split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    if list.is_empty() {
        return Err(SettingsError::BadEnv {
            name,
            value: v,
            reason: "the list is empty".into(),
        });
    }
    Ok(Some(list))
}

/// How `login --headless` and auto-login drive Chromium (docs/login.md).
#[derive(Debug, Clone)]
pub struct LoginBrowserSettings {
    /// `--browser` > `CHROME` > `AUTO_LOGIN_BROWSER` > config > `/usr/bin/chromium`.
    pub executable: PathBuf,
    pub locators: crate::login::headless::Locators,
    /// `--persistent-profile` > `AUTO_LOGIN_PERSISTENT_PROFILE` > config > off (a fresh profile).
    pub persistent_profile: bool,
    /// Root of the per-account profiles: `AUTO_LOGIN_PROFILE_DIR` > config >
    /// `<work-dir>/.browser-profiles`.
    pub profile_root: PathBuf,
    /// One login attempt: `AUTO_LOGIN_TIMEOUT` > config > 180 s.
    pub timeout: Duration,
}

impl LoginBrowserSettings {
    pub fn resolve(
        browser_flag: Option<&Path>,
        persistent_flag: bool,
        work_root: &Path,
        src: &Sources,
    ) -> Result<Self, SettingsError> {
        let f = src.file;
        let executable = browser_flag
            .map(Path::to_path_buf)
            .or_else(|| {
                (src.env)("CHROME")
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| {
                (src.env)("AUTO_LOGIN_BROWSER")
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| f.auto_login_browser.clone())
            .unwrap_or_else(|| PathBuf::from(crate::login::headless::DEFAULT_BROWSER));
        let mut locators = crate::login::headless::Locators::default();
        // (environment variable, config file value, the locator list it sets)
        type Slot<'a> = (&'static str, &'a Option<Vec<String>>, &'a mut Vec<String>);
        let lists: [Slot; 7] = [
            (
                "AUTO_LOGIN_FRAME_SELECTORS",
                &f.auto_login_frame_selectors,
                &mut locators.frame,
            ),
            (
                "AUTO_LOGIN_PASSWORD_TAB_SELECTORS",
                &f.auto_login_password_tab_selectors,
                &mut locators.password_tab,
            ),
            (
                "AUTO_LOGIN_USERNAME_SELECTORS",
                &f.auto_login_username_selectors,
                &mut locators.username,
            ),
            (
                "AUTO_LOGIN_PASSWORD_SELECTORS",
                &f.auto_login_password_selectors,
                &mut locators.password,
            ),
            (
                "AUTO_LOGIN_SUBMIT_SELECTORS",
                &f.auto_login_submit_selectors,
                &mut locators.submit,
            ),
            (
                "AUTO_LOGIN_CAPTCHA_SELECTORS",
                &f.auto_login_captcha_selectors,
                &mut locators.captcha,
            ),
            (
                "AUTO_LOGIN_ERROR_SELECTORS",
                &f.auto_login_error_selectors,
                &mut locators.error,
            ),
        ];
        for (env, file, slot) in lists {
            if let Some(v) = env_list(src, env)?.or_else(|| file.clone().filter(|l| !l.is_empty()))
            {
                *slot = v;
            }
        }
        let persistent_profile = persistent_flag
            || src
                .env_bool("AUTO_LOGIN_PERSISTENT_PROFILE")?
                .or(f.auto_login_persistent_profile)
                .unwrap_or(false);
        let profile_root = (src.env)("AUTO_LOGIN_PROFILE_DIR")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .or_else(|| f.auto_login_profile_dir.clone())
            .unwrap_or_else(|| work_root.join(".browser-profiles"));
        let timeout = src
            .env_secs("AUTO_LOGIN_TIMEOUT")?
            .or(f.auto_login_timeout)
            .unwrap_or(180.0);
        if timeout <= 0.0 {
            return Err(SettingsError::Invalid(
                "AUTO_LOGIN_TIMEOUT must be positive".into(),
            ));
        }
        Ok(Self {
            executable,
            locators,
            persistent_profile,
            profile_root,
            timeout: secs(timeout)?,
        })
    }
}

/// `DEDICATED_DOMAIN_URL`: flag > env > config; must be an http(s) URL.
pub fn dedicated_domain_url(
    flag: Option<&str>,
    src: &Sources,
) -> Result<Option<String>, SettingsError> {
    let v = flag
        .map(str::to_string)
        .or_else(|| (src.env)("DEDICATED_DOMAIN_URL").filter(|s| !s.trim().is_empty()))
        .or_else(|| src.file.dedicated_domain_url.clone())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    if let Some(u) = &v {
        let ok = url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https"));
        if !ok {
            return Err(SettingsError::Invalid(format!(
                "DEDICATED_DOMAIN_URL {u:?} is not an http(s) URL"
            )));
        }
    }
    Ok(v)
}

/// The gateway's auto-login (`AUTO_LOGIN_*`).
#[derive(Debug, Clone)]
pub struct AutoLoginSettings {
    /// `AUTO_LOGIN_ENABLED` > config > off.
    pub enabled: bool,
    /// `AUTO_LOGIN_MAX_RETRY` > config > 1: attempts after the first, for retryable failures.
    pub max_retry: u32,
    /// `AUTO_LOGIN_USERNAME` > config: for instances without an account of their own.
    pub username: Option<String>,
    /// `AUTO_LOGIN_PASSWORD` (environment only: never in a file or on the command line).
    pub password: Option<crate::login::Secret>,
    pub browser: LoginBrowserSettings,
    pub dedicated_domain_url: Option<String>,
}

impl AutoLoginSettings {
    pub fn resolve(work_root: &Path, src: &Sources) -> Result<Self, SettingsError> {
        let f = src.file;
        let enabled = src
            .env_bool("AUTO_LOGIN_ENABLED")?
            .or(f.auto_login_enabled)
            .unwrap_or(false);
        let max_retry = src
            .env("AUTO_LOGIN_MAX_RETRY")?
            .or(f.auto_login_max_retry)
            .unwrap_or(1);
        if max_retry > 10 {
            return Err(SettingsError::Invalid(
                "AUTO_LOGIN_MAX_RETRY above 10 only makes risk control stricter".into(),
            ));
        }
        let username = (src.env)("AUTO_LOGIN_USERNAME")
            .filter(|s| !s.trim().is_empty())
            .or_else(|| f.auto_login_username.clone());
        let password = (src.env)("AUTO_LOGIN_PASSWORD")
            .filter(|s| !s.is_empty())
            .map(crate::login::Secret::new);
        Ok(Self {
            enabled,
            max_retry,
            username,
            password,
            browser: LoginBrowserSettings::resolve(None, false, work_root, src)?,
            dedicated_domain_url: dedicated_domain_url(None, src)?,
        })
    }
}

/// Session bundles: `LINGMA_BUNDLE_MAX_BYTES` > config > 64 MiB; the passphrase comes from
/// `--passphrase-stdin` or `LINGMA_BUNDLE_PASSPHRASE` (never the command line or a file).
#[derive(Debug, Clone)]
pub struct BundleSettings {
    pub limits: crate::bundle::Limits,
    pub passphrase: Option<crate::login::Secret>,
}

impl BundleSettings {
    pub fn resolve(src: &Sources) -> Result<Self, SettingsError> {
        let max = src
            .env("LINGMA_BUNDLE_MAX_BYTES")?
            .or(src.file.bundle_max_bytes)
            .unwrap_or(crate::bundle::DEFAULT_MAX_BYTES);
        if max < 1024 {
            return Err(SettingsError::Invalid(
                "LINGMA_BUNDLE_MAX_BYTES must be at least 1024".into(),
            ));
        }
        Ok(Self {
            limits: crate::bundle::Limits {
                max_bytes: max,
                max_entries: crate::bundle::MAX_ENTRIES,
            },
            passphrase: (src.env)("LINGMA_BUNDLE_PASSPHRASE")
                .filter(|s| !s.is_empty())
                .map(crate::login::Secret::new),
        })
    }
}

#[cfg(test)]
mod login_settings_tests {
    use super::*;
    use std::collections::HashMap;

    fn with_env<T>(env: &[(&str, &str)], file: ConfigFile, f: impl FnOnce(&Sources) -> T) -> T {
        let map: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| map.get(k).cloned();
        f(&Sources {
            env: &lookup,
            file: &file,
        })
    }

    #[test]
    fn auto_login_defaults_and_precedence() {
        let root = Path::new("/w");
        let s = with_env(&[], ConfigFile::default(), |src| {
            AutoLoginSettings::resolve(root, src)
        })
        .unwrap();
        assert!(!s.enabled);
        assert_eq!(s.max_retry, 1);
        assert_eq!(s.browser.timeout, Duration::from_secs(180));
        assert_eq!(s.browser.executable, PathBuf::from("/usr/bin/chromium"));
        assert_eq!(
            s.browser.profile_root,
            PathBuf::from("/w/.browser-profiles")
        );
        assert_eq!(
            s.browser.locators,
            crate::login::headless::Locators::default()
        );
        assert!(s.password.is_none() && s.dedicated_domain_url.is_none());

        let file = ConfigFile {
            auto_login_enabled: Some(false),
            auto_login_timeout: Some(60.0),
            auto_login_username: Some("file@x".into()),
            auto_login_submit_selectors: Some(vec!["#go".into()]),
            dedicated_domain_url: Some("https://file.example".into()),
            ..Default::default()
        };
        let env = [
            ("AUTO_LOGIN_ENABLED", "true"),
            ("AUTO_LOGIN_MAX_RETRY", "3"),
            ("AUTO_LOGIN_PASSWORD", "pw"),
            ("AUTO_LOGIN_USERNAME_SELECTORS", "#a; input[name=b]"),
            ("AUTO_LOGIN_FRAME_SELECTORS", r#"["iframe#x, iframe#y"]"#),
            ("CHROME", "/opt/chrome"),
            ("AUTO_LOGIN_BROWSER", "/opt/other"),
        ];
        let s = with_env(&env, file, |src| AutoLoginSettings::resolve(root, src)).unwrap();
        assert!(s.enabled);
        assert_eq!(s.max_retry, 3);
        assert_eq!(s.username.as_deref(), Some("file@x"));
        assert_eq!(s.password.as_ref().map(|p| p.expose()), Some("pw"));
        assert_eq!(s.browser.timeout, Duration::from_secs(60));
        assert_eq!(s.browser.executable, PathBuf::from("/opt/chrome"));
        assert_eq!(s.browser.locators.username, vec!["#a", "input[name=b]"]);
        assert_eq!(s.browser.locators.frame, vec!["iframe#x, iframe#y"]);
        assert_eq!(s.browser.locators.submit, vec!["#go"]);
        assert_eq!(
            s.dedicated_domain_url.as_deref(),
            Some("https://file.example")
        );
    }

    #[test]
    fn browser_flag_wins_and_bad_values_fail() {
        let s = with_env(&[("CHROME", "/opt/chrome")], ConfigFile::default(), |src| {
            LoginBrowserSettings::resolve(
                Some(Path::new("/flag/chromium")),
                true,
                Path::new("/w"),
                src,
            )
        })
        .unwrap();
        assert_eq!(s.executable, PathBuf::from("/flag/chromium"));
        assert!(s.persistent_profile);
        let root = Path::new("/w");
        for env in [
            [("AUTO_LOGIN_ENABLED", "maybe")],
            [("AUTO_LOGIN_MAX_RETRY", "-1")],
            [("AUTO_LOGIN_TIMEOUT", "0")],
            [("DEDICATED_DOMAIN_URL", "not a url")],
            [("AUTO_LOGIN_SUBMIT_SELECTORS", "[1]")],
        ] {
            assert!(
                with_env(&env, ConfigFile::default(), |src| {
                    AutoLoginSettings::resolve(root, src)
                })
                .is_err(),
                "{env:?}"
            );
        }
    }

    #[test]
    fn bundle_settings() {
        let b = with_env(&[], ConfigFile::default(), BundleSettings::resolve).unwrap();
        assert_eq!(b.limits.max_bytes, crate::bundle::DEFAULT_MAX_BYTES);
        assert!(b.passphrase.is_none());
        let b = with_env(
            &[
                ("LINGMA_BUNDLE_MAX_BYTES", "4096"),
                ("LINGMA_BUNDLE_PASSPHRASE", "s3cret"),
            ],
            ConfigFile::default(),
            BundleSettings::resolve,
        )
        .unwrap();
        assert_eq!(b.limits.max_bytes, 4096);
        assert_eq!(b.passphrase.unwrap().expose(), "s3cret");
        assert!(
            with_env(
                &[("LINGMA_BUNDLE_MAX_BYTES", "10")],
                ConfigFile::default(),
                BundleSettings::resolve
            )
            .is_err()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use std::collections::HashMap;

    fn serve(
        argv: &[&str],
        env: &[(&str, &str)],
        file: ConfigFile,
    ) -> Result<ServeSettings, SettingsError> {
        let mut full = vec!["lingma-gw", "serve"];
        full.extend_from_slice(argv);
        let cli = Cli::try_parse_from(full).unwrap();
        let Command::Serve(args) = cli.command else {
            unreachable!()
        };
        let map: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| map.get(k).cloned();
        ServeSettings::resolve(
            &args,
            &Sources {
                env: &lookup,
                file: &file,
            },
        )
    }

    #[test]
    fn defaults() {
        let s = serve(&[], &[], ConfigFile::default()).unwrap();
        assert_eq!(s.host, "127.0.0.1");
        assert_eq!(s.port, 8000);
        assert_eq!(s.instances, 1);
        assert_eq!(s.max_in_flight, 4);
        assert!(s.session_reuse);
        assert_eq!(s.lingma.binary, BinaryChoice::Discover);
        assert_eq!(s.queue_timeout, Duration::from_secs(30));
        assert_eq!(s.ask_mode, AskMode::Chat);
    }

    #[test]
    fn attach_and_dialect_settings() {
        let s = serve(&[], &[], ConfigFile::default()).unwrap();
        assert_eq!(s.lingma.attach, None);
        assert_eq!(s.lingma.client.dialect, DialectChoice::Auto);
        // Attached alone: nothing is started unless asked, and the slots count it.
        let s = serve(&["--attach", "auto"], &[], ConfigFile::default()).unwrap();
        assert_eq!(s.lingma.attach, Some(AttachSpec::Auto));
        assert_eq!((s.instances, s.max_in_flight), (0, 4));
        let s = serve(
            &["--attach", "auto", "--instances", "2"],
            &[],
            ConfigFile::default(),
        )
        .unwrap();
        assert_eq!((s.instances, s.max_in_flight), (2, 12));
        // flag > env > file, for both.
        let file = ConfigFile {
            attach: Some("/file/.info.json".into()),
            lingma_dialect: Some("legacy".into()),
            attach_search_dirs: Some(vec!["/file-root".into()]),
            ..Default::default()
        };
        let s = serve(&[], &[], file.clone()).unwrap();
        assert_eq!(
            s.lingma.attach,
            Some(AttachSpec::Path("/file/.info.json".into()))
        );
        assert_eq!(
            s.lingma.client.dialect,
            DialectChoice::Fixed(crate::lingma::Dialect::Legacy)
        );
        assert_eq!(
            s.lingma.attach_roots,
            SearchRoots(vec!["/file-root".into()])
        );
        let env = [
            ("LINGMA_ATTACH", "ws://127.0.0.1:36510"),
            ("LINGMA_DIALECT", "acp"),
            ("LINGMA_ATTACH_SEARCH_DIRS", "/a:/b"),
        ];
        let s = serve(&[], &env, file.clone()).unwrap();
        assert_eq!(
            s.lingma.attach,
            Some(AttachSpec::Url("ws://127.0.0.1:36510/".into()))
        );
        assert_eq!(
            s.lingma.client.dialect,
            DialectChoice::Fixed(crate::lingma::Dialect::Acp)
        );
        assert_eq!(
            s.lingma.attach_roots,
            SearchRoots(vec!["/a".into(), "/b".into()])
        );
        let s = serve(
            &["--attach", "auto", "--lingma-dialect", "auto"],
            &env,
            file,
        )
        .unwrap();
        assert_eq!(s.lingma.attach, Some(AttachSpec::Auto));
        assert_eq!(s.lingma.client.dialect, DialectChoice::Auto);
        // Bad values are errors, not defaults.
        for env in [
            [("LINGMA_DIALECT", "both")],
            [("LINGMA_ATTACH", "http://x:1")],
        ] {
            assert!(serve(&[], &env, ConfigFile::default()).is_err(), "{env:?}");
        }
        assert!(serve(&["--instances", "0"], &[], ConfigFile::default()).is_err());
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let file = ConfigFile {
            port: Some(7000),
            instances: Some(3),
            default_model: Some("file-model".into()),
            queue_timeout: Some(5.0),
            ..Default::default()
        };
        let s = serve(
            &["--port", "9000"],
            &[("GATEWAY_PORT", "8500"), ("INSTANCE_COUNT", "2")],
            file.clone(),
        )
        .unwrap();
        assert_eq!(s.port, 9000);
        assert_eq!(s.instances, 2);
        assert_eq!(s.default_model.as_deref(), Some("file-model"));
        assert_eq!(s.queue_timeout, Duration::from_secs(5));
        assert_eq!(s.max_in_flight, 8);
        let s = serve(&[], &[("GATEWAY_PORT", "8500")], file.clone()).unwrap();
        assert_eq!(s.port, 8500);
        let s = serve(&[], &[], file).unwrap();
        assert_eq!(s.port, 7000);
    }

    #[test]
    fn legacy_env_names_work() {
        let s = serve(
            &[],
            &[
                ("API_KEYS", "a, b,,c"),
                ("ADMIN_TOKEN", "adm"),
                ("METRICS_PUBLIC", "true"),
                ("LINGMA_BIN", "/opt/Lingma"),
                ("LINGMA_WORK_DIR", "/w"),
                ("LINGMA_SOCKET_PORT", "37010"),
                ("GATEWAY_MAX_IN_FLIGHT", "7"),
                ("GATEWAY_QUEUE_TIMEOUT_SEC", "0.5"),
                ("SESSION_REUSE_ENABLED", "false"),
                ("SESSION_CACHE_MAX_ENTRIES", "5"),
                ("SESSION_CACHE_TTL_SEC", "60"),
                ("DEFAULT_MODEL", "auto"),
                ("DEFAULT_ASK_MODE", "agent"),
                ("LINGMA_STARTUP_TIMEOUT", "12"),
                ("LINGMA_RPC_TIMEOUT", "4"),
            ],
            ConfigFile::default(),
        )
        .unwrap();
        assert_eq!(s.api_keys, vec!["a", "b", "c"]);
        assert_eq!(s.admin_token.as_deref(), Some("adm"));
        assert!(s.metrics_public);
        assert_eq!(s.lingma.binary, BinaryChoice::Path("/opt/Lingma".into()));
        assert_eq!(s.lingma.work_dir, PathBuf::from("/w"));
        assert_eq!(s.lingma.socket_port, Some(37010));
        assert_eq!(s.max_in_flight, 7);
        assert_eq!(s.queue_timeout, Duration::from_millis(500));
        assert!(!s.session_reuse);
        assert_eq!(s.session_cache_max_entries, 5);
        assert_eq!(s.default_model.as_deref(), Some("auto"));
        assert_eq!(s.ask_mode, AskMode::Agent);
        assert_eq!(s.lingma.startup_timeout, Duration::from_secs(12));
        assert_eq!(s.lingma.client.rpc_timeout, Duration::from_secs(4));
    }

    #[test]
    fn sim_flag_beats_lingma_bin_env() {
        let s = serve(
            &["--sim"],
            &[("LINGMA_BIN", "/opt/Lingma")],
            ConfigFile::default(),
        )
        .unwrap();
        assert_eq!(s.lingma.binary, BinaryChoice::Sim);
    }

    #[test]
    fn session_reuse_flags() {
        let s = serve(
            &["--no-session-reuse"],
            &[("SESSION_REUSE_ENABLED", "1")],
            ConfigFile::default(),
        )
        .unwrap();
        assert!(!s.session_reuse);
        let s = serve(
            &["--session-reuse"],
            &[("SESSION_REUSE_ENABLED", "0")],
            ConfigFile::default(),
        )
        .unwrap();
        assert!(s.session_reuse);
    }

    #[test]
    fn bad_values_are_errors_not_defaults() {
        assert!(matches!(
            serve(&[], &[("GATEWAY_PORT", "eighty")], ConfigFile::default()),
            Err(SettingsError::BadEnv {
                name: "GATEWAY_PORT",
                ..
            })
        ));
        assert!(serve(&[], &[("METRICS_PUBLIC", "maybe")], ConfigFile::default()).is_err());
        assert!(
            serve(
                &[],
                &[("GATEWAY_QUEUE_TIMEOUT_SEC", "-1")],
                ConfigFile::default()
            )
            .is_err()
        );
        assert!(serve(&[], &[("DEFAULT_ASK_MODE", "yolo")], ConfigFile::default()).is_err());
        assert!(serve(&["--instances", "0"], &[], ConfigFile::default()).is_err());
    }

    #[test]
    fn non_loopback_without_keys_is_refused() {
        assert!(serve(&["--host", "0.0.0.0"], &[], ConfigFile::default()).is_err());
        assert!(
            serve(
                &["--host", "0.0.0.0", "--api-key", "k"],
                &[],
                ConfigFile::default()
            )
            .is_ok()
        );
        assert!(
            serve(
                &["--host", "0.0.0.0", "--allow-unauthenticated"],
                &[],
                ConfigFile::default()
            )
            .is_ok()
        );
        assert!(serve(&["--host", "::1"], &[], ConfigFile::default()).is_ok());
    }

    #[test]
    fn replica_id_precedence_default_and_validation() {
        let file = ConfigFile {
            replica_id: Some("from-file".into()),
            ..Default::default()
        };
        let env = [("LINGMA_GW_REPLICA_ID", "from-env")];
        let s = serve(&["--replica-id", "r7"], &env, file.clone()).unwrap();
        assert_eq!(s.replica_id, "r7");
        assert_eq!(
            serve(&[], &env, file.clone()).unwrap().replica_id,
            "from-env"
        );
        assert_eq!(serve(&[], &[], file).unwrap().replica_id, "from-file");
        let host = default_replica_id().unwrap_or_else(|| "lingma-gw".into());
        assert_eq!(
            serve(&[], &[], ConfigFile::default()).unwrap().replica_id,
            host
        );
        for bad in ["two words", "tab\there", "é", &"x".repeat(254)] {
            assert!(
                serve(&["--replica-id", bad], &[], ConfigFile::default()).is_err(),
                "{bad:?}"
            );
        }
        // A host name that cannot be a header value is replaced, not an error.
        assert_eq!(
            replica_id(None, || Some("bad host".into())).unwrap(),
            "lingma-gw"
        );
        assert_eq!(replica_id(None, || None).unwrap(), "lingma-gw");
    }

    #[test]
    fn config_file_parses_and_rejects_unknown_keys() {
        let f: ConfigFile =
            toml::from_str("port = 1234\napi_keys = [\"x\"]\nsim = true\n").unwrap();
        assert_eq!(f.port, Some(1234));
        assert!(toml::from_str::<ConfigFile>("prot = 1").is_err());
    }

    #[test]
    fn log_settings_precedence() {
        let g = |v: u8, q: bool| GlobalArgs {
            config: None,
            verbose: v,
            quiet: q,
            log_format: None,
        };
        let file = ConfigFile {
            log_level: Some("warn".into()),
            ..Default::default()
        };
        let env = |k: &str| (k == "LOG_LEVEL").then(|| "DEBUG".to_string());
        let none = |_: &str| None;
        let src = Sources {
            env: &env,
            file: &file,
        };
        assert_eq!(
            LogSettings::resolve(&g(0, false), &src).unwrap().filter,
            "debug"
        );
        assert_eq!(
            LogSettings::resolve(&g(2, false), &src).unwrap().filter,
            "trace"
        );
        assert_eq!(
            LogSettings::resolve(&g(0, true), &src).unwrap().filter,
            "error"
        );
        let src = Sources {
            env: &none,
            file: &file,
        };
        assert_eq!(
            LogSettings::resolve(&g(0, false), &src).unwrap().filter,
            "warn"
        );
    }
}
