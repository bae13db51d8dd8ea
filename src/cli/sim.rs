//! `lingma-gw sim`: the simulator's command line. `start`, `status` and `version` take the same
//! arguments as the real Lingma binary (camelCase long flags, `--flag value` or `--flag=value`), so
//! the pool spawns the simulator exactly as it spawns Lingma. Simulator knobs and fault modes are
//! extra flags, each with a `LINGMA_SIM_*` environment variable so that the simulators a gateway
//! spawns inherit them. Definitions only; `commands/sim.rs` does the work.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Args, Subcommand, ValueEnum};

use crate::sim::config::{
    Accounts, DEFAULT_CHUNK_DELAY_MS, DEFAULT_CHUNK_SIZE, DEFAULT_FIRST_TOKEN_DELAY_MS,
    DEFAULT_HTTP_PORT, DEFAULT_SOCKET_PORT, DEFAULT_STARTUP_DELAY_MS, Faults, LoginChallenge,
    SimDialect, ThinkStyle, parse_accounts_list, parse_credit_usage,
};
use crate::sim::directives::parse_list;

// Parsed once per process; boxing would only obscure the clap definitions.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Subcommand)]
pub enum SimCommand {
    /// Start a simulated Lingma (same flags as `Lingma start`, plus simulator knobs).
    Start(SimStartArgs),
    /// Print the login state of a work dir without starting a server.
    Status(SimStatusArgs),
    /// Print the simulated Lingma version.
    Version,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum StatusFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct SimStatusArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = StatusFormat::Text)]
    pub output: StatusFormat,
    /// The Lingma work dir to inspect.
    #[arg(long = "workDir", value_name = "DIR")]
    pub work_dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct SimStartArgs {
    /// Work dir (logs/, cache/ with the login files, session store).
    #[arg(long = "workDir", value_name = "DIR")]
    pub work_dir: PathBuf,
    /// WebSocket port on 127.0.0.1 (0 picks a free one and logs it).
    #[arg(long = "socketPort", value_name = "PORT", default_value_t = DEFAULT_SOCKET_PORT)]
    pub socket_port: u16,
    /// HTTP port on 127.0.0.1 (login callback and test login page; 0 picks a free one).
    #[arg(long = "httpPort", value_name = "PORT", default_value_t = DEFAULT_HTTP_PORT)]
    pub http_port: u16,
    /// Remote API base (logged and returned by config/getEndpoint; not persisted).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Accepted for compatibility and logged; has no effect.
    #[arg(long = "transportType", value_name = "TYPE")]
    pub transport_type: Option<String>,
    /// Copy this directory into the work dir first, except cache/user (the real binary's quirk).
    #[arg(long = "copyDataDir", value_name = "DIR")]
    pub copy_data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub knobs: SimKnobs,
    #[command(flatten)]
    pub faults: SimFaultArgs,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Simulator knobs")]
pub struct SimKnobs {
    /// Set every delay (startup, first token, between chunks) to 0; fault delays still apply.
    #[arg(long, value_parser = BoolishValueParser::new(), env = "LINGMA_SIM_NO_DELAY")]
    pub no_delay: bool,
    /// Delay before listening.
    #[arg(long, value_name = "MS", env = "LINGMA_SIM_STARTUP_DELAY_MS",
          default_value_t = DEFAULT_STARTUP_DELAY_MS)]
    pub startup_delay_ms: u64,
    /// Delay between step_start and the first token.
    #[arg(long, value_name = "MS", env = "LINGMA_SIM_FIRST_TOKEN_DELAY_MS",
          default_value_t = DEFAULT_FIRST_TOKEN_DELAY_MS)]
    pub first_token_delay_ms: u64,
    /// Characters per chat/answer delta (0: the whole answer in one delta).
    #[arg(long, value_name = "CHARS", env = "LINGMA_SIM_CHUNK_SIZE",
          default_value_t = DEFAULT_CHUNK_SIZE)]
    pub chunk_size: usize,
    /// Delay between deltas.
    #[arg(long, value_name = "MS", env = "LINGMA_SIM_CHUNK_DELAY_MS",
          default_value_t = DEFAULT_CHUNK_DELAY_MS)]
    pub chunk_delay_ms: u64,
    /// Stall every stream until the client acks each callback.
    #[arg(long, value_parser = BoolishValueParser::new(), env = "LINGMA_SIM_STRICT_ACKS")]
    pub strict_acks: bool,
    /// Require this `Cosy-MachineToken` header on the WebSocket handshake (else 401).
    #[arg(long, value_name = "TOKEN", env = "LINGMA_SIM_MACHINE_TOKEN")]
    pub machine_token: Option<String>,
    /// Do not log a fresh work dir in as the demo account.
    #[arg(long, value_parser = BoolishValueParser::new(), env = "LINGMA_SIM_LOGGED_OUT")]
    pub logged_out: bool,
    /// What the test login page does after a correct password.
    #[arg(long, value_enum, value_name = "MODE", env = "LINGMA_SIM_LOGIN_CHALLENGE",
          default_value_t = LoginChallenge::None)]
    pub login_challenge: LoginChallenge,
    /// Accounts of the test login page: USER:PASSWORD[:CHALLENGE],...
    #[arg(long, value_name = "LIST", env = "LINGMA_SIM_ACCOUNTS", value_parser = parse_accounts_list,
          default_value = crate::sim::config::DEFAULT_ACCOUNT)]
    pub accounts: Accounts,
    /// JSON object returned by credit/usage.
    #[arg(long, value_name = "JSON", env = "LINGMA_SIM_CREDIT_USAGE", value_parser = parse_credit_usage)]
    pub credit_usage: Option<serde_json::Value>,
    /// How reasoning models deliver their thinking.
    #[arg(long, value_enum, value_name = "STYLE", env = "LINGMA_SIM_THINK",
          default_value_t = ThinkStyle::Inline)]
    pub think: ThinkStyle,
    /// Do not write logs/sim-requests.jsonl.
    #[arg(long, value_parser = BoolishValueParser::new(), env = "LINGMA_SIM_NO_REQUEST_LOG")]
    pub no_request_log: bool,
    /// Which dialects to speak: legacy `chat/ask` (the plugin runtime), ACP `session/*` (the
    /// desktop IDE's runtime), or both.
    #[arg(long, value_enum, value_name = "DIALECT", env = "LINGMA_SIM_DIALECT",
          default_value_t = SimDialect::Both)]
    pub dialect: SimDialect,
    /// Publish a discovery file here once listening, as an IDE's runtime does (`.info.json`:
    /// JSON; any other name: the legacy three lines); removed on a clean exit.
    #[arg(long, value_name = "PATH", env = "LINGMA_SIM_INFO_FILE")]
    pub info_file: Option<PathBuf>,
    /// Also take connections on this Unix socket (Content-Length frames as a byte stream).
    #[arg(long, value_name = "PATH", env = "LINGMA_SIM_IPC_SOCKET")]
    pub ipc_socket: Option<PathBuf>,
    /// chat/deleteSessionById accepts only {id}, not {sessionId} (as some builds).
    #[arg(long, value_parser = BoolishValueParser::new(), env = "LINGMA_SIM_DELETE_NEEDS_ID")]
    pub delete_needs_id: bool,
}

/// Process-wide fault modes; per-request `[[sim:NAME]]` directives override them.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Fault modes (every ask)")]
pub struct SimFaultArgs {
    /// Faults in directive syntax, e.g. "crash,after=3" or "off-by-one slow=500".
    #[arg(long, value_name = "LIST", env = "LINGMA_SIM_FAULTS", value_parser = parse_list)]
    pub faults: Option<Faults>,
    /// Exit the process (code 101) mid-stream.
    #[arg(long, value_parser = BoolishValueParser::new(), env = "LINGMA_SIM_CRASH")]
    pub crash: bool,
    /// Close the WebSocket mid-stream.
    #[arg(long, value_parser = BoolishValueParser::new(), env = "LINGMA_SIM_CLOSE")]
    pub close: bool,
    /// Send step_end, then nothing (no chat/finish).
    #[arg(long, value_parser = BoolishValueParser::new(), env = "LINGMA_SIM_NO_FINISH")]
    pub no_finish: bool,
    /// Finish every chat with this statusCode (e.g. 408, 500).
    #[arg(long, value_name = "CODE", env = "LINGMA_SIM_ERROR")]
    pub error: Option<u16>,
    /// Finish every chat as quota exhausted.
    #[arg(long, value_parser = BoolishValueParser::new(), env = "LINGMA_SIM_QUOTA")]
    pub quota: bool,
    /// First-token delay (overrides --no-delay).
    #[arg(long, value_name = "MS", env = "LINGMA_SIM_SLOW")]
    pub slow: Option<u64>,
    /// Delay between deltas (overrides --no-delay).
    #[arg(long, value_name = "MS", env = "LINGMA_SIM_DELAY")]
    pub delay: Option<u64>,
    /// Send an overwrite:true delta mid-stream.
    #[arg(long, value_parser = BoolishValueParser::new(), env = "LINGMA_SIM_OVERWRITE")]
    pub overwrite: bool,
    /// Simulate a remote EOF retry: duplicated partial deltas, then an overwrite.
    #[arg(long, value_parser = BoolishValueParser::new(), env = "LINGMA_SIM_RETRY")]
    pub retry: bool,
    /// Emit each answer under the next ask's requestId (per session).
    #[arg(long, value_parser = BoolishValueParser::new(), env = "LINGMA_SIM_OFF_BY_ONE")]
    pub off_by_one: bool,
    /// Start with an expired token (auth/status 3, asks rejected).
    #[arg(long, value_parser = BoolishValueParser::new(), env = "LINGMA_SIM_EXPIRED")]
    pub expired: bool,
    /// Send each frame as two WebSocket messages.
    #[arg(long, value_parser = BoolishValueParser::new(), env = "LINGMA_SIM_SPLIT")]
    pub split: bool,
    /// Send several frames per WebSocket message.
    #[arg(long, value_parser = BoolishValueParser::new(), env = "LINGMA_SIM_BATCH")]
    pub batch: bool,
    /// Accept asks and send nothing at all.
    #[arg(long, value_parser = BoolishValueParser::new(), env = "LINGMA_SIM_HANG")]
    pub hang: bool,
    /// Send step_end before the answer deltas (the order captured from Lingma 2.11).
    #[arg(long, value_parser = BoolishValueParser::new(), env = "LINGMA_SIM_STEP_END_FIRST")]
    pub step_end_first: bool,
    /// Answer deltas sent before crash/close/overwrite/retry fire.
    #[arg(long, value_name = "N", env = "LINGMA_SIM_FAULT_AFTER")]
    pub fault_after: Option<usize>,
}
