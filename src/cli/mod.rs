//! The clap tree: the single source of `--help`, the man page and the shell completions.
//! Definitions only; what each command does lives in `commands/`, and how a flag combines with its
//! environment variable and the config file lives in `settings.rs`. Flags are therefore optional
//! here (no clap defaults, no clap `env`): a missing flag means "not given on the command line".

pub mod login;
pub mod session;
pub mod sim;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "lingma-gw",
    version,
    about = "OpenAI-compatible gateway and terminal tool for Tongyi Lingma",
    long_about = "lingma-gw runs an OpenAI-compatible HTTP gateway in front of a pool of local Lingma \
                  (Tongyi Lingma) processes, and talks to Lingma from a terminal. `lingma-gw serve --sim` \
                  runs everything on the built-in Lingma simulator.",
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Config file (TOML); default: lingma-gw/config.toml in the user's config dir [env: LINGMA_GW_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More log output (-v debug, -vv trace); overrides LOG_LEVEL
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr, no progress output
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log format on stderr [env: LOG_FORMAT] [default: text]
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the OpenAI-compatible HTTP gateway in front of a pool of Lingma processes
    Serve(ServeArgs),
    /// List the models Lingma offers
    #[command(mut_arg("json", |a| a.help("Print JSON instead of a table")))]
    Models(InstanceQueryArgs),
    /// Ask Lingma one question and stream the answer to stdout
    Chat(ChatArgs),
    /// Diagnose the setup step by step (binary, work dir, start, login, models, a chat)
    #[command(mut_arg("json", |a| a.help("Print JSON instead of a checklist")))]
    Probe(InstanceQueryArgs),
    /// Log a Lingma instance in (browser, pasted callback URL, or headless Chromium)
    Login(login::LoginArgs),
    /// Move a logged-in session between machines: export and import bundles
    Session {
        #[command(subcommand)]
        command: session::SessionCommand,
    },
    /// Print a shell completion script
    Completions(CompletionsArgs),
    /// Print the man page (roff)
    Man,
    /// The built-in Lingma simulator (same command line as the Lingma binary)
    Sim {
        #[command(subcommand)]
        command: sim::SimCommand,
    },
}

/// How to reach Lingma; shared by every command that needs it.
#[derive(Debug, Clone, Args, Default)]
pub struct LingmaArgs {
    /// The Lingma binary [env: LINGMA_BIN] [default: newest ~/.lingma/bin/<version>/<platform>/Lingma]
    #[arg(long, value_name = "PATH", conflicts_with = "sim")]
    pub lingma_bin: Option<PathBuf>,
    /// Use the built-in Lingma simulator instead of Lingma
    #[arg(long)]
    pub sim: bool,
    /// Root of the instances' work dirs; an instance's is <work-dir>/<name> [env: LINGMA_WORK_DIR] [default: the user's data dir]
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

/// Where the Lingma runtime comes from when it is already running, and the dialect to speak to it;
/// for the commands that only talk to Lingma (`serve`, `models`, `chat`, `probe`).
#[derive(Debug, Clone, Args, Default)]
pub struct AttachArgs {
    /// Use a Lingma that is already running (an IDE's) instead of starting one: `auto` finds it
    /// through its info file or socket; or an info file, a Unix socket, a ws:// URL. It is never
    /// started, stopped or logged in or out [env: LINGMA_ATTACH]
    #[arg(long, value_name = "auto|PATH|ws://HOST:PORT")]
    pub attach: Option<String>,
    /// The dialect to speak: chat/ask (legacy, the plugin runtime) or session/* (acp, the desktop
    /// IDE's runtime); auto tries session/new once [env: LINGMA_DIALECT] [default: auto]
    #[arg(long, value_enum, value_name = "DIALECT")]
    pub lingma_dialect: Option<DialectArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DialectArg {
    Auto,
    Legacy,
    Acp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AskModeArg {
    Chat,
    Agent,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub lingma: LingmaArgs,
    #[command(flatten)]
    pub attach: AttachArgs,
    /// Address to bind [env: GATEWAY_HOST] [default: 127.0.0.1]
    #[arg(long)]
    pub host: Option<String>,
    /// Port to bind; 0 picks a free one [env: GATEWAY_PORT] [default: 8000]
    #[arg(long)]
    pub port: Option<u16>,
    /// Number of Lingma instances to start, beside an --attach one [env: INSTANCE_COUNT] [default: 1, or 0 with --attach]
    #[arg(long, value_name = "N")]
    pub instances: Option<usize>,
    /// Client API key for /v1 (repeat for several) [env: API_KEYS, comma-separated]
    #[arg(long = "api-key", value_name = "KEY")]
    pub api_keys: Vec<String>,
    /// Token for /internal admin endpoints [env: ADMIN_TOKEN] [default: the API keys]
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<String>,
    /// Token for /metrics [env: METRICS_TOKEN]
    #[arg(long, value_name = "TOKEN")]
    pub metrics_token: Option<String>,
    /// Serve /metrics without credentials [env: METRICS_PUBLIC]
    #[arg(long)]
    pub metrics_public: bool,
    /// Allow binding a non-loopback address with no API keys
    #[arg(long)]
    pub allow_unauthenticated: bool,
    /// Chats answered at once; more wait in the queue [env: GATEWAY_MAX_IN_FLIGHT] [default: 4 per instance]
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// Seconds a chat may wait for a slot before 429 [env: GATEWAY_QUEUE_TIMEOUT_SEC] [default: 30]
    #[arg(long, value_name = "SECS")]
    pub queue_timeout: Option<f64>,
    /// Continue the upstream session when a conversation's history matches [env: SESSION_REUSE_ENABLED] [default: on]
    #[arg(long, overrides_with = "no_session_reuse")]
    pub session_reuse: bool,
    /// Replay the whole conversation in a new session every time
    #[arg(long, overrides_with = "session_reuse")]
    pub no_session_reuse: bool,
    /// Model used when a request names none or an unknown one [env: DEFAULT_MODEL] [default: Lingma's default]
    #[arg(long, value_name = "MODEL")]
    pub default_model: Option<String>,
    /// How questions are asked [env: DEFAULT_ASK_MODE] [default: chat]
    #[arg(long, value_enum)]
    pub ask_mode: Option<AskModeArg>,
    /// Accounts file (JSON list) or inline JSON assigning accounts to instances [env: LINGMA_ACCOUNTS]
    #[arg(long, value_name = "FILE|JSON")]
    pub accounts: Option<String>,
    /// Session bundle (file, or base64 text) or seed directory for work dirs that are not logged
    /// in [env: LINGMA_SESSION_BUNDLE]
    #[arg(long, value_name = "FILE|DIR")]
    pub session_bundle: Option<PathBuf>,
    /// Seconds to let running answers finish on shutdown [env: GATEWAY_SHUTDOWN_GRACE_SEC] [default: 10]
    #[arg(long, value_name = "SECS")]
    pub shutdown_grace: Option<f64>,
    /// Requests waiting for a slot; beyond that 429 at once [env: GATEWAY_MAX_QUEUE] [default: 4 x max-in-flight]
    #[arg(long, value_name = "N")]
    pub max_queue: Option<usize>,
    /// MiB of request bodies that may be read or wait for a slot at once; beyond that 429 [env: GATEWAY_QUEUE_MEMORY_MB] [default: 64]
    #[arg(long, value_name = "MIB")]
    pub queue_memory: Option<u64>,
    /// Largest request body in bytes [env: GATEWAY_BODY_LIMIT] [default: 10485760]
    #[arg(long, value_name = "BYTES")]
    pub body_limit: Option<usize>,
    /// Seconds from the first byte of a request's headers to their end [env: GATEWAY_HEADER_TIMEOUT_SEC] [default: 10]
    #[arg(long, value_name = "SECS")]
    pub header_timeout: Option<f64>,
    /// Seconds to receive a whole request body [env: GATEWAY_BODY_TIMEOUT_SEC] [default: 30]
    #[arg(long, value_name = "SECS")]
    pub body_timeout: Option<f64>,
    /// Seconds an idle keep-alive connection stays open [env: GATEWAY_IDLE_TIMEOUT_SEC] [default: 60]
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<f64>,
    /// Seconds a client may stop reading an answer before it is ended and Lingma stopped [env: GATEWAY_STREAM_STALL_TIMEOUT_SEC] [default: 60]
    #[arg(long, value_name = "SECS")]
    pub stream_stall_timeout: Option<f64>,
    /// Seconds of silence after which a stream gets a keep-alive (SSE comment, Anthropic ping); 0 turns them off [env: GATEWAY_SSE_KEEPALIVE_SEC] [default: 15]
    #[arg(long, value_name = "SECS")]
    pub keepalive: Option<f64>,
    /// The syntax the model is asked to write tool calls in; every syntax is understood [env: TOOL_CALL_SYNTAX] [default: hermes]
    #[arg(long, value_enum)]
    pub tool_syntax: Option<ToolSyntaxArg>,
    /// Characters of a tool's description put in the question [env: TOOL_DESCRIPTION_LIMIT] [default: 512]
    #[arg(long, value_name = "CHARS")]
    pub tool_description_limit: Option<usize>,
    /// Lingma model for client model names matching a glob, e.g. 'claude-*=dashscope_qwen3_coder' (repeat; first match wins) [env: MODEL_MAP, comma-separated]
    #[arg(long = "model-map", value_name = "PATTERN=MODEL")]
    pub model_map: Vec<String>,
    /// Responses kept for previous_response_id (store: true); 0 keeps none [env: RESPONSE_STORE_MAX_ENTRIES] [default: 1000]
    #[arg(long, value_name = "N")]
    pub response_store_entries: Option<usize>,
    /// Seconds a stored response is kept [env: RESPONSE_STORE_TTL_SEC] [default: 3600]
    #[arg(long, value_name = "SECS")]
    pub response_store_ttl: Option<f64>,
    /// This replica's name, in every response's x-lingma-gw-replica header, /healthz and the
    /// request log [env: LINGMA_GW_REPLICA_ID] [default: the host name]
    #[arg(long, value_name = "ID")]
    pub replica_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ToolSyntaxArg {
    /// `<tool_call>{"name": …, "arguments": {…}}</tool_call>`
    Hermes,
    /// `<tool_call><function=NAME><parameter=K>v</parameter></function></tool_call>`
    #[value(name = "qwen3-coder")]
    Qwen3Coder,
    /// A fenced ```json block with name and arguments
    Json,
}

#[derive(Debug, Args)]
pub struct InstanceArg {
    /// Instance name (inst-0, inst-1, ... or the accounts file's names) [default: inst-0]
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
}

/// A command that asks one instance something and prints the answer (`models`, `probe`).
#[derive(Debug, Args)]
pub struct InstanceQueryArgs {
    #[command(flatten)]
    pub lingma: LingmaArgs,
    #[command(flatten)]
    pub attach: AttachArgs,
    #[command(flatten)]
    pub instance: InstanceArg,
    /// Print JSON (each command says instead of what)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub lingma: LingmaArgs,
    #[command(flatten)]
    pub attach: AttachArgs,
    #[command(flatten)]
    pub instance: InstanceArg,
    /// The question; `-` or none reads it from stdin
    #[arg(value_name = "PROMPT|-")]
    pub prompt: Option<String>,
    /// Model key or display name [default: Lingma's default]
    #[arg(long, short)]
    pub model: Option<String>,
    /// A system message sent before the question
    #[arg(long, short)]
    pub system: Option<String>,
    /// Print one JSON object (text, model, session id, latency, usage) instead of streaming
    #[arg(long)]
    pub json: bool,
    /// Show the model's reasoning on stderr (also with -v)
    #[arg(long)]
    pub show_reasoning: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn tree_is_consistent() {
        Cli::command().debug_assert();
    }
}
