//! Resolved settings. Every setting is declared once in the settings table ([`table`]: flag,
//! environment variables, config key, default, kind, doc) and looked up in one fixed order:
//! command-line flag, then environment variable, then config file, then the table's default.
//! What a value means for the program (validations, values computed from others) is written out
//! here, one `resolve` per group of settings; how to add a setting is in [`table`]'s docs.
//!
//! The environment is passed in as a lookup function and the config file as a parsed table, so
//! the whole precedence is unit-testable without touching the process environment.

pub mod docs;
pub mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::cli::{
    AskModeArg, AttachArgs, DialectArg, GlobalArgs, LingmaArgs, LogFormat, PoolArgs, ServeArgs,
    ToolSyntaxArg,
};
use crate::lingma::discovery::BinaryChoice;
use crate::lingma::ide::{AttachSpec, SearchRoots};
use crate::lingma::{AskMode, ClientOptions, DialectChoice};
use crate::turn::CallSyntax;
use crate::turn::model_map::ModelMap;
use table::{Kind, Setting};

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
    #[error("config file key {key} is invalid: {reason}")]
    ConfigValue { key: &'static str, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// The config file (TOML): keys are the settings' keys (the long flag names with `_`; older
/// spellings are accepted), checked against the settings table when the file is read.
#[derive(Debug, Default, Clone)]
pub struct ConfigFile {
    /// By the setting's key (an older spelling is stored under the key).
    values: BTreeMap<&'static str, toml::Value>,
}

impl ConfigFile {
    /// Loads `explicit` (which must exist), else the default location if it exists, else nothing.
    pub fn load(
        explicit: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let explicit = explicit.map(Path::to_path_buf).or_else(|| {
            table::CONFIG
                .env
                .iter()
                .find_map(|n| env(n).filter(|v| !v.trim().is_empty()))
                .map(PathBuf::from)
        });
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
        Self::parse(&text).map_err(|reason| SettingsError::ConfigParse { path, reason })
    }

    /// Parses and checks a config file's text: every key names a setting (once), every value has
    /// the setting's type.
    pub fn parse(text: &str) -> Result<Self, String> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut values = BTreeMap::new();
        let mut seen: BTreeMap<&'static str, String> = BTreeMap::new();
        for (k, v) in doc {
            let Some(s) = table::by_key(&k).filter(|s| s.key.is_some()) else {
                return Err(unknown_key(&k));
            };
            let key = s.key.unwrap_or_default();
            if let Some(first) = seen.insert(key, k.clone()) {
                return Err(format!("{first} and {k} set the same setting; keep one"));
            }
            let v = file_value(s.kind, v).map_err(|reason| format!("key {k}: {reason}"))?;
            values.insert(key, v);
        }
        Ok(Self { values })
    }

    fn get(&self, s: &Setting) -> Option<&toml::Value> {
        s.key.and_then(|k| self.values.get(k))
    }
}

fn unknown_key(k: &str) -> String {
    let closest = table::SETTINGS
        .iter()
        .filter_map(|s| s.key)
        .map(|key| (edit_distance(k, key), key))
        .min();
    match closest {
        Some((d, key)) if d <= 3 => format!("unknown key {k} (did you mean {key}?)"),
        _ => format!(
            "unknown key {k} (the keys are the long flag names with _; see `man lingma-gw`)"
        ),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// A config file value checked (and normalised) against the setting's kind.
fn file_value(kind: Kind, v: toml::Value) -> Result<toml::Value, String> {
    use toml::Value as V;
    let wrong = |want: &str, v: &V| Err(format!("expected {want}, found {}", v.type_str()));
    match (kind, v) {
        (Kind::Bool, v @ V::Boolean(_)) => Ok(v),
        (Kind::Int, v @ V::Integer(_)) => Ok(v),
        (Kind::Secs, V::Integer(i)) if i >= 0 => Ok(V::Float(i as f64)),
        (Kind::Secs, V::Float(f)) if f.is_finite() && f >= 0.0 => Ok(V::Float(f)),
        (Kind::Secs, V::Integer(_) | V::Float(_)) => {
            Err("expected a non-negative number of seconds".into())
        }
        (Kind::Text | Kind::Path | Kind::Choice(_), v @ V::String(_)) => Ok(v),
        (Kind::List | Kind::Selectors | Kind::Paths, V::Array(items)) => {
            if items.iter().all(V::is_str) {
                Ok(V::Array(items))
            } else {
                Err("expected a list of strings".into())
            }
        }
        (Kind::Bool, v) => wrong("true or false", &v),
        (Kind::Int, v) => wrong("a whole number", &v),
        (Kind::Secs, v) => wrong("a number of seconds", &v),
        (Kind::Text | Kind::Path | Kind::Choice(_), v) => wrong("a string", &v),
        (Kind::List | Kind::Selectors | Kind::Paths, v) => wrong("a list of strings", &v),
    }
}

/// An environment variable's (or a default's) text as a value of the setting's kind.
pub(crate) fn env_text_value(kind: Kind, text: &str) -> Result<toml::Value, String> {
    use toml::Value as V;
    let t = text.trim();
    match kind {
        Kind::Bool => parse_bool(t)
            .map(V::Boolean)
            .ok_or_else(|| "expected true/false, 1/0, yes/no or on/off".into()),
        Kind::Int => t.parse::<i64>().map(V::Integer).map_err(|e| e.to_string()),
        Kind::Secs => match t.parse::<f64>() {
            Ok(f) if f.is_finite() && f >= 0.0 => Ok(V::Float(f)),
            _ => Err("expected a non-negative number of seconds".into()),
        },
        Kind::Text | Kind::Path | Kind::Choice(_) => Ok(V::String(text.to_string())),
        Kind::List => Ok(V::Array(
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| V::String(s.into()))
                .collect(),
        )),
        Kind::Paths => Ok(V::Array(
            std::env::split_paths(t)
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| V::String(p.to_string_lossy().into_owned()))
                .collect(),
        )),
        Kind::Selectors => {
            let list: Vec<String> = if t.starts_with('[') {
                serde_json::from_str(t).map_err(|e| format!("not a JSON list of strings: {e}"))?
            } else {
                t.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            };
            if list.is_empty() {
                return Err("the list is empty".into());
            }
            Ok(V::Array(list.into_iter().map(V::String).collect()))
        }
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
    /// The first of the setting's environment variables that is set (empty counts as unset).
    fn env_text(&self, s: &Setting) -> Option<(&'static str, String)> {
        s.env.iter().find_map(|n| {
            (self.env)(n)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (*n, v))
        })
    }

    /// The setting from the environment.
    pub fn from_env<T: DeserializeOwned>(&self, s: &Setting) -> Result<Option<T>, SettingsError> {
        let Some((name, text)) = self.env_text(s) else {
            return Ok(None);
        };
        let bad = |reason: String| SettingsError::BadEnv {
            name,
            value: text.clone(),
            reason,
        };
        let value = env_text_value(s.kind, &text).map_err(bad)?;
        T::deserialize(value)
            .map(Some)
            .map_err(|e| bad(e.message().to_string()))
    }

    /// The setting from the config file.
    pub fn from_file<T: DeserializeOwned>(&self, s: &Setting) -> Result<Option<T>, SettingsError> {
        let Some(v) = self.file.get(s) else {
            return Ok(None);
        };
        T::deserialize(v.clone())
            .map(Some)
            .map_err(|e| SettingsError::ConfigValue {
                key: s.name(),
                reason: e.message().to_string(),
            })
    }

    /// Flag, else environment, else config file; `None` when none sets it.
    pub fn get<T: DeserializeOwned>(
        &self,
        s: &Setting,
        flag: Option<T>,
    ) -> Result<Option<T>, SettingsError> {
        if flag.is_some() {
            return Ok(flag);
        }
        if let Some(v) = self.from_env(s)? {
            return Ok(Some(v));
        }
        self.from_file(s)
    }

    /// [`Sources::get`], else the table's default (`Default::Is`).
    pub fn value<T: DeserializeOwned>(
        &self,
        s: &Setting,
        flag: Option<T>,
    ) -> Result<T, SettingsError> {
        if let Some(v) = self.get(s, flag)? {
            return Ok(v);
        }
        let table::Default::Is(text) = s.default else {
            return Err(SettingsError::Invalid(format!(
                "{} has no default value (a bug: resolve it with `get`)",
                s.name()
            )));
        };
        env_text_value(s.kind, text)
            .and_then(|v| T::deserialize(v).map_err(|e| e.message().to_string()))
            .map_err(|e| SettingsError::Invalid(format!("default of {}: {e}", s.name())))
    }

    /// A duration setting, flag > env > file > default.
    pub fn secs(&self, s: &Setting, flag: Option<f64>) -> Result<Duration, SettingsError> {
        secs(self.value(s, flag)?)
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

fn dialect_choice(v: &str) -> Result<DialectChoice, SettingsError> {
    DialectChoice::parse(v).ok_or_else(|| {
        SettingsError::Invalid(format!(
            "Lingma dialect {v:?} is not one of auto, legacy, acp"
        ))
    })
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
            src.value::<String>(&table::LOG_LEVEL, None)?
                .to_ascii_lowercase()
        };
        let format = match g.log_format {
            Some(f) => f,
            None => match src.value::<String>(&table::LOG_FORMAT, None)? {
                f if f.trim().eq_ignore_ascii_case("json") => LogFormat::Json,
                f if f.trim().eq_ignore_ascii_case("text") => LogFormat::Text,
                f => {
                    return Err(SettingsError::Invalid(format!(
                        "log format {f:?} is not one of text, json"
                    )));
                }
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
    /// `pool` carries `serve`'s pool flags; other commands pass `PoolArgs::default()`.
    pub fn resolve(a: &LingmaArgs, pool: &PoolArgs, src: &Sources) -> Result<Self, SettingsError> {
        use table::{LINGMA_BIN, SIM};
        // --sim and --lingma-bin are one choice: each layer decides before the next is read.
        let binary = if a.sim {
            BinaryChoice::Sim
        } else if let Some(p) = &a.lingma_bin {
            BinaryChoice::Path(p.clone())
        } else if src.from_env::<bool>(&SIM)? == Some(true) {
            BinaryChoice::Sim
        } else if let Some(p) = src.from_env::<PathBuf>(&LINGMA_BIN)? {
            BinaryChoice::Path(p)
        } else if src.from_file::<bool>(&SIM)? == Some(true) {
            BinaryChoice::Sim
        } else if let Some(p) = src.from_file::<PathBuf>(&LINGMA_BIN)? {
            BinaryChoice::Path(p)
        } else {
            BinaryChoice::Discover
        };
        let work_dir = src
            .get(&table::WORK_DIR, a.work_dir.clone())?
            .unwrap_or_else(default_work_dir);
        let socket_port = src.get(&table::SOCKET_PORT, pool.socket_port)?;
        let first_token = src.secs(&table::FIRST_TOKEN_TIMEOUT, a.first_token_timeout)?;
        let connections: usize = src.value(
            &table::CONNECTIONS_PER_INSTANCE,
            pool.connections_per_instance,
        )?;
        if connections == 0 {
            return Err(SettingsError::Invalid(
                "connections per instance must be at least 1".into(),
            ));
        }
        let health: f64 = src.value(&table::HEALTH_INTERVAL, pool.health_interval)?;
        let dialect = dialect_choice(&src.value::<String>(&table::LINGMA_DIALECT, None)?)?;
        let attach_roots = match src.get::<Vec<PathBuf>>(&table::ATTACH_SEARCH_DIRS, None)? {
            Some(dirs) if !dirs.is_empty() => SearchRoots(dirs),
            _ => SearchRoots::default_roots(),
        };
        Ok(Self {
            binary,
            attach: None,
            attach_roots,
            work_dir,
            socket_port,
            startup_timeout: src.secs(&table::STARTUP_TIMEOUT, a.startup_timeout)?,
            connections_per_instance: connections,
            health_interval: secs(health.max(0.05))?,
            client: ClientOptions {
                connect_timeout: Duration::from_secs(10),
                rpc_timeout: src.secs(&table::RPC_TIMEOUT, None)?,
                first_token_timeout: first_token,
                stall_timeout: first_token,
                idle_finish: src.secs(&table::IDLE_FINISH, None)?,
                off_by_one_workaround: src.value(&table::OFF_BY_ONE_WORKAROUND, None)?,
                machine_token: src.from_env(&table::MACHINE_TOKEN)?,
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
        self.attach = match src.get::<String>(&table::ATTACH, a.attach.clone())? {
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

/// A repeatable flag: given when it was given at least once.
fn repeated(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

impl ServeSettings {
    pub fn resolve(a: &ServeArgs, src: &Sources) -> Result<Self, SettingsError> {
        use table::*;
        let lingma =
            LingmaSettings::resolve(&a.lingma, &a.pool, src)?.with_attach(&a.attach, src)?;
        let host: String = src.value(&HOST, a.host.clone())?;
        let port: u16 = src.value(&PORT, a.port)?;
        // An attached runtime may be the whole pool: then nothing is started unless asked.
        let attached = usize::from(lingma.attach.is_some());
        let instances: usize = src.get(&INSTANCES, a.instances)?.unwrap_or(1 - attached);
        if instances + attached == 0 {
            return Err(SettingsError::Invalid(
                "--instances must be at least 1 (or give --attach)".into(),
            ));
        }
        let api_keys: Vec<String> = src
            .get(&API_KEY, repeated(&a.api_keys))?
            .unwrap_or_default();
        let admin_token = src.get(&ADMIN_TOKEN, a.admin_token.clone())?;
        let metrics_token = src.get(&METRICS_TOKEN, a.metrics_token.clone())?;
        let metrics_public = src.value(&METRICS_PUBLIC, a.metrics_public.then_some(true))?;
        let max_in_flight = src
            .get(&MAX_IN_FLIGHT, a.max_in_flight)?
            .unwrap_or((instances + attached) * lingma.connections_per_instance);
        if max_in_flight == 0 {
            return Err(SettingsError::Invalid(
                "--max-in-flight must be at least 1".into(),
            ));
        }
        let reuse_flag = if a.no_session_reuse {
            Some(false)
        } else {
            a.session_reuse.then_some(true)
        };
        let session_reuse = src.value(&SESSION_REUSE, reuse_flag)?;
        let cache_max: usize =
            src.value(&SESSION_CACHE_MAX_ENTRIES, a.session_cache_max_entries)?;
        let default_model = src.get(&DEFAULT_MODEL, a.default_model.clone())?;
        let mode = match a.ask_mode {
            Some(AskModeArg::Chat) => AskMode::Chat,
            Some(AskModeArg::Agent) => AskMode::Agent,
            None => ask_mode(&src.value::<String>(&ASK_MODE, None)?)?,
        };
        let accounts = src.get(&ACCOUNTS, a.accounts.clone())?;
        let session_bundle = src.get(&SESSION_BUNDLE, a.session_bundle.clone())?;
        let body_limit: usize = src.value(&BODY_LIMIT, a.body_limit)?;
        if body_limit == 0 {
            return Err(SettingsError::Invalid(
                "--body-limit must be at least 1 byte".into(),
            ));
        }
        let max_queue = src
            .get(&MAX_QUEUE, a.max_queue)?
            .unwrap_or(max_in_flight.saturating_mul(4));
        let queue_memory_mib: u64 = src.value(&QUEUE_MEMORY, a.queue_memory)?;
        let queue_memory = queue_memory_mib.saturating_mul(1024 * 1024);
        if queue_memory < body_limit as u64 {
            return Err(SettingsError::Invalid(format!(
                "--queue-memory ({queue_memory_mib} MiB) must hold at least one request of \
                 --body-limit ({body_limit} bytes)"
            )));
        }
        let header_timeout = src.secs(&HEADER_TIMEOUT, a.header_timeout)?;
        let body_timeout = src.secs(&BODY_TIMEOUT, a.body_timeout)?;
        let idle_timeout = src.secs(&IDLE_TIMEOUT, a.idle_timeout)?;
        let stream_stall_timeout = src.secs(&STREAM_STALL_TIMEOUT, a.stream_stall_timeout)?;
        let tool_syntax = match a.tool_syntax {
            Some(ToolSyntaxArg::Hermes) => CallSyntax::Hermes,
            Some(ToolSyntaxArg::Qwen3Coder) => CallSyntax::Qwen3Coder,
            Some(ToolSyntaxArg::Json) => CallSyntax::FencedJson,
            None => {
                let v: String = src.value(&TOOL_SYNTAX, None)?;
                CallSyntax::parse(&v).ok_or_else(|| {
                    SettingsError::Invalid(format!(
                        "tool syntax {v:?} is not one of hermes, qwen3-coder, json"
                    ))
                })?
            }
        };
        let model_map_rules: Vec<String> = src
            .get(&MODEL_MAP, repeated(&a.model_map))?
            .unwrap_or_default();
        let model_map = ModelMap::parse(model_map_rules.iter().map(String::as_str))
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        let replica_id = replica_id(
            src.get(&REPLICA_ID, a.replica_id.clone())?,
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
            queue_timeout: src.secs(&QUEUE_TIMEOUT, a.queue_timeout)?,
            session_reuse,
            session_cache_max_entries: cache_max.max(1),
            session_cache_ttl: src.secs(&SESSION_CACHE_TTL, a.session_cache_ttl)?,
            default_model,
            ask_mode: mode,
            accounts,
            session_bundle,
            shutdown_grace: src.secs(&SHUTDOWN_GRACE, a.shutdown_grace)?,
            body_limit,
            max_queue,
            queue_memory,
            header_timeout,
            body_timeout,
            idle_timeout,
            stream_stall_timeout,
            keepalive: src.secs(&KEEPALIVE, a.keepalive)?,
            tool_syntax,
            tool_description_limit: src.value(&TOOL_DESCRIPTION_LIMIT, a.tool_description_limit)?,
            model_map,
            response_store_entries: src.value(&RESPONSE_STORE_ENTRIES, a.response_store_entries)?,
            response_store_ttl: src.secs(&RESPONSE_STORE_TTL, a.response_store_ttl)?,
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
        use table::*;
        let executable = src.value(&BROWSER, browser_flag.map(Path::to_path_buf))?;
        let mut locators = crate::login::headless::Locators::default();
        let lists: [(&Setting, &mut Vec<String>); 7] = [
            (&AUTO_LOGIN_FRAME_SELECTORS, &mut locators.frame),
            (
                &AUTO_LOGIN_PASSWORD_TAB_SELECTORS,
                &mut locators.password_tab,
            ),
            (&AUTO_LOGIN_USERNAME_SELECTORS, &mut locators.username),
            (&AUTO_LOGIN_PASSWORD_SELECTORS, &mut locators.password),
            (&AUTO_LOGIN_SUBMIT_SELECTORS, &mut locators.submit),
            (&AUTO_LOGIN_CAPTCHA_SELECTORS, &mut locators.captcha),
            (&AUTO_LOGIN_ERROR_SELECTORS, &mut locators.error),
        ];
        for (setting, slot) in lists {
            // An empty list in the file keeps the built-in selectors.
            if let Some(v) = src
                .get::<Vec<String>>(setting, None)?
                .filter(|l| !l.is_empty())
            {
                *slot = v;
            }
        }
        let persistent_profile = src.value(&PERSISTENT_PROFILE, persistent_flag.then_some(true))?;
        let profile_root = src
            .get(&AUTO_LOGIN_PROFILE_DIR, None)?
            .unwrap_or_else(|| work_root.join(".browser-profiles"));
        let timeout: f64 = src.value(&AUTO_LOGIN_TIMEOUT, None)?;
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
    let v = src
        .get::<String>(&table::DEDICATED_DOMAIN_URL, flag.map(str::to_string))?
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
    /// `--auto-login` > `AUTO_LOGIN_ENABLED` > config > off.
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
    pub fn resolve(
        enabled_flag: bool,
        work_root: &Path,
        src: &Sources,
    ) -> Result<Self, SettingsError> {
        use table::*;
        let enabled = src.value(&AUTO_LOGIN, enabled_flag.then_some(true))?;
        let max_retry: u32 = src.value(&AUTO_LOGIN_MAX_RETRY, None)?;
        if max_retry > 10 {
            return Err(SettingsError::Invalid(
                "AUTO_LOGIN_MAX_RETRY above 10 only makes risk control stricter".into(),
            ));
        }
        Ok(Self {
            enabled,
            max_retry,
            username: src.get(&USERNAME, None)?,
            password: src
                .from_env::<String>(&AUTO_LOGIN_PASSWORD)?
                .map(crate::login::Secret::new),
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
        let max: u64 = src.value(&table::BUNDLE_MAX_BYTES, None)?;
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
            passphrase: src
                .from_env::<String>(&table::BUNDLE_PASSPHRASE)?
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
            AutoLoginSettings::resolve(false, root, src)
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

        let file = ConfigFile::parse(
            r##"
            auto_login_enabled = false
            auto_login_timeout = 60
            auto_login_username = "file@x"
            auto_login_submit_selectors = ["#go"]
            dedicated_domain_url = "https://file.example"
            "##,
        )
        .unwrap();
        let env = [
            ("AUTO_LOGIN_ENABLED", "true"),
            ("AUTO_LOGIN_MAX_RETRY", "3"),
            ("AUTO_LOGIN_PASSWORD", "pw"),
            ("AUTO_LOGIN_USERNAME_SELECTORS", "#a; input[name=b]"),
            ("AUTO_LOGIN_FRAME_SELECTORS", r#"["iframe#x, iframe#y"]"#),
            ("CHROME", "/opt/chrome"),
            ("AUTO_LOGIN_BROWSER", "/opt/other"),
        ];
        let s = with_env(&env, file, |src| {
            AutoLoginSettings::resolve(false, root, src)
        })
        .unwrap();
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
                    AutoLoginSettings::resolve(false, root, src)
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
    use crate::cli::Command;
    use std::collections::HashMap;

    fn serve(
        argv: &[&str],
        env: &[(&str, &str)],
        file: ConfigFile,
    ) -> Result<ServeSettings, SettingsError> {
        let mut full = vec!["lingma-gw", "serve"];
        full.extend_from_slice(argv);
        let cli = crate::cli::try_parse_from(full).unwrap();
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
        let file = ConfigFile::parse(
            "attach = \"/file/.info.json\"\nlingma_dialect = \"legacy\"\nattach_search_dirs = [\"/file-root\"]\n",
        )
        .unwrap();
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
        let file = ConfigFile::parse(
            "port = 7000\ninstances = 3\ndefault_model = \"file-model\"\nqueue_timeout = 5\n",
        )
        .unwrap();
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
        let file = ConfigFile::parse("replica_id = \"from-file\"").unwrap();
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
        let f = ConfigFile::parse("port = 1234\napi_keys = [\"x\"]\nsim = true\n").unwrap();
        let s = serve(&[], &[], f).unwrap();
        assert_eq!(s.port, 1234);
        assert_eq!(s.api_keys, vec!["x"]);
        assert_eq!(s.lingma.binary, BinaryChoice::Sim);
        let err = ConfigFile::parse("prot = 1").unwrap_err();
        assert!(
            err.contains("unknown key prot (did you mean port?)"),
            "{err}"
        );
    }

    #[test]
    fn config_keys_are_the_flag_names_and_old_spellings_still_work() {
        let f = ConfigFile::parse("api_key = [\"k1\", \"k2\"]\nauto_login = true\n").unwrap();
        assert_eq!(serve(&[], &[], f).unwrap().api_keys, vec!["k1", "k2"]);
        for old in [
            "api_keys = [\"k\"]",
            "auto_login_enabled = true",
            "auto_login_username = \"u\"",
            "auto_login_browser = \"/b\"",
            "auto_login_persistent_profile = true",
        ] {
            ConfigFile::parse(old).unwrap_or_else(|e| panic!("{old}: {e}"));
        }
        let err = ConfigFile::parse("api_key = [\"a\"]\napi_keys = [\"b\"]").unwrap_err();
        assert!(err.contains("set the same setting"), "{err}");
        // Every setting with a key can be set in the file with a value of its kind.
        for s in table::SETTINGS {
            let Some(key) = s.key else { continue };
            let value = match s.kind {
                Kind::Bool => "true".to_string(),
                Kind::Int => "1".to_string(),
                Kind::Secs => "1.5".to_string(),
                Kind::List | Kind::Selectors | Kind::Paths => "[\"a\"]".to_string(),
                Kind::Text | Kind::Path | Kind::Choice(_) => "\"a\"".to_string(),
            };
            ConfigFile::parse(&format!("{key} = {value}")).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }

    #[test]
    fn config_values_are_checked_against_their_kind() {
        for (text, want) in [
            ("port = \"x\"", "expected a whole number"),
            ("sim = 1", "expected true or false"),
            ("queue_timeout = -1", "non-negative"),
            ("api_key = \"one\"", "a list of strings"),
            ("host = 1", "expected a string"),
            ("startup_timeout = \"x\"", "number of seconds"),
        ] {
            let err = ConfigFile::parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        // Secrets come from the environment only.
        assert!(ConfigFile::parse("auto_login_password = \"x\"").is_err());
        assert!(ConfigFile::parse("bundle_passphrase = \"x\"").is_err());
        // Out of range for the setting's type: an error naming the key.
        let f = ConfigFile::parse("port = 70000").unwrap();
        assert!(matches!(
            serve(&[], &[], f),
            Err(SettingsError::ConfigValue { key: "port", .. })
        ));
    }

    #[test]
    fn new_flags_beat_their_environment_variables() {
        let env = [
            ("LINGMA_SOCKET_PORT", "37000"),
            ("LINGMA_CONNECTIONS_PER_INSTANCE", "2"),
            ("LINGMA_HEALTH_INTERVAL", "9"),
            ("LINGMA_STARTUP_TIMEOUT", "9"),
            ("LINGMA_FIRST_TOKEN_TIMEOUT", "9"),
            ("SESSION_CACHE_MAX_ENTRIES", "9"),
            ("SESSION_CACHE_TTL_SEC", "9"),
        ];
        let s = serve(&[], &env, ConfigFile::default()).unwrap();
        assert_eq!(s.lingma.socket_port, Some(37000));
        assert_eq!(s.lingma.connections_per_instance, 2);
        assert_eq!(s.max_in_flight, 2);
        assert_eq!(s.lingma.health_interval, Duration::from_secs(9));
        assert_eq!(s.session_cache_max_entries, 9);
        let s = serve(
            &[
                "--socket-port",
                "38000",
                "--connections-per-instance",
                "3",
                "--health-interval",
                "1",
                "--startup-timeout",
                "2",
                "--first-token-timeout",
                "3",
                "--session-cache-max-entries",
                "4",
                "--session-cache-ttl",
                "5",
            ],
            &env,
            ConfigFile::default(),
        )
        .unwrap();
        assert_eq!(s.lingma.socket_port, Some(38000));
        assert_eq!(s.lingma.connections_per_instance, 3);
        assert_eq!(s.lingma.health_interval, Duration::from_secs(1));
        assert_eq!(s.lingma.startup_timeout, Duration::from_secs(2));
        assert_eq!(s.lingma.client.first_token_timeout, Duration::from_secs(3));
        assert_eq!(s.session_cache_max_entries, 4);
        assert_eq!(s.session_cache_ttl, Duration::from_secs(5));
    }

    #[test]
    fn every_default_resolves() {
        let none = |_: &str| None;
        let file = ConfigFile::default();
        let src = Sources {
            env: &none,
            file: &file,
        };
        let s = serve(&[], &[], ConfigFile::default()).unwrap();
        assert_eq!(s.lingma.startup_timeout, Duration::from_secs(30));
        assert_eq!(s.lingma.client.rpc_timeout, Duration::from_secs(30));
        assert_eq!(
            s.lingma.client.first_token_timeout,
            Duration::from_secs(120)
        );
        assert_eq!(s.lingma.client.idle_finish, Duration::from_secs(3));
        assert!(!s.lingma.client.off_by_one_workaround);
        assert_eq!(s.lingma.connections_per_instance, 4);
        assert_eq!(s.lingma.health_interval, Duration::from_secs(5));
        assert_eq!(s.session_cache_max_entries, 10_000);
        assert_eq!(s.session_cache_ttl, Duration::from_secs(3600));
        assert_eq!(s.shutdown_grace, Duration::from_secs(10));
        assert_eq!(s.body_limit, 10 * 1024 * 1024);
        assert_eq!(s.max_queue, 16);
        assert_eq!(s.queue_memory, 64 * 1024 * 1024);
        assert_eq!(s.header_timeout, Duration::from_secs(10));
        assert_eq!(s.body_timeout, Duration::from_secs(30));
        assert_eq!(s.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.stream_stall_timeout, Duration::from_secs(60));
        assert_eq!(s.keepalive, Duration::from_secs(15));
        assert_eq!(s.tool_syntax, CallSyntax::Hermes);
        assert_eq!(s.tool_description_limit, 512);
        assert!(s.model_map.is_empty());
        assert_eq!(s.response_store_entries, 1000);
        assert_eq!(s.response_store_ttl, Duration::from_secs(3600));
        assert!(s.api_keys.is_empty() && s.admin_token.is_none() && !s.metrics_public);
        let g = GlobalArgs {
            config: None,
            verbose: 0,
            quiet: false,
            log_format: None,
        };
        let log = LogSettings::resolve(&g, &src).unwrap();
        assert_eq!((log.filter.as_str(), log.format), ("info", LogFormat::Text));
    }

    #[test]
    fn log_settings_precedence() {
        let g = |v: u8, q: bool| GlobalArgs {
            config: None,
            verbose: v,
            quiet: q,
            log_format: None,
        };
        let file = ConfigFile::parse("log_level = \"warn\"").unwrap();
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
