//! The clap tree: the single source of `--help`, the man pages and the shell completions.
//! Definitions only; what each command does lives in `commands/`, and how a flag combines with its
//! environment variable and the config file lives in `settings/`. Flags are therefore optional
//! here (no clap defaults, no clap `env`): a missing flag means "not given on the command line".
//!
//! A flag that is a setting has no doc comment here: its help (doc, `[env: …]`, `[default: …]`)
//! comes from the settings table (`settings/table.rs`), put on the tree by [`command`]. Use
//! [`command`] and [`parse`], never `Cli::command()`/`Cli::parse()`, which lack that help.

pub mod login;
pub mod session;
pub mod sim;

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// The clap tree with every setting's help from the settings table: what `--help`, the man pages
/// and the completions show.
pub fn command() -> clap::Command {
    crate::settings::table::annotate(Cli::command())
}

/// Parses the process's arguments against [`command`]; exits with clap's message on an error.
pub fn parse() -> Cli {
    let mut cmd = command();
    let matches = cmd.get_matches_mut();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit())
}

/// [`parse`] for given arguments (tests).
pub fn try_parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = command().try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

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
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More log output (-v debug, -vv trace); overrides LOG_LEVEL
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr, no progress output
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
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
    /// Write a bundle of a logged-in instance's login files (`session export`)
    Export(session::ExportArgs),
    /// Install a bundle into an instance's work dir (`session import`)
    Import(session::ImportArgs),
    /// Print a shell completion script
    Completions(CompletionsArgs),
    /// Print the man page (roff) or a subcommand's, or write them all with --out-dir
    Man(ManArgs),
    /// The built-in Lingma simulator (same command line as the Lingma binary)
    Sim {
        #[command(subcommand)]
        command: sim::SimCommand,
    },
}

/// How to reach Lingma; shared by every command that needs it.
#[derive(Debug, Clone, Args, Default)]
pub struct LingmaArgs {
    #[arg(long, value_name = "PATH", conflicts_with = "sim")]
    pub lingma_bin: Option<PathBuf>,
    #[arg(long)]
    pub sim: bool,
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    #[arg(long, value_name = "SECS")]
    pub startup_timeout: Option<f64>,
    #[arg(long, value_name = "SECS")]
    pub first_token_timeout: Option<f64>,
}

/// The pool's own flags (`serve` only): how its instances are started and watched.
#[derive(Debug, Clone, Args, Default)]
pub struct PoolArgs {
    #[arg(long, value_name = "PORT")]
    pub socket_port: Option<u16>,
    #[arg(long, value_name = "N")]
    pub connections_per_instance: Option<usize>,
    #[arg(long, value_name = "SECS")]
    pub health_interval: Option<f64>,
}

/// Where the Lingma runtime comes from when it is already running, and the dialect to speak to it;
/// for the commands that only talk to Lingma (`serve`, `models`, `chat`, `probe`).
#[derive(Debug, Clone, Args, Default)]
pub struct AttachArgs {
    #[arg(long, value_name = "auto|PATH|ws://HOST:PORT")]
    pub attach: Option<String>,
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
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long)]
    pub port: Option<u16>,
    #[arg(long, value_name = "N")]
    pub instances: Option<usize>,
    #[command(flatten)]
    pub pool: PoolArgs,
    #[arg(long = "api-key", value_name = "KEY")]
    pub api_keys: Vec<String>,
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<String>,
    #[arg(long, value_name = "TOKEN")]
    pub metrics_token: Option<String>,
    #[arg(long)]
    pub metrics_public: bool,
    /// Allow binding a non-loopback address with no API keys
    #[arg(long)]
    pub allow_unauthenticated: bool,
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<usize>,
    #[arg(long, value_name = "SECS")]
    pub queue_timeout: Option<f64>,
    #[arg(long, overrides_with = "no_session_reuse")]
    pub session_reuse: bool,
    /// Replay the whole conversation in a new session every time
    #[arg(long, overrides_with = "session_reuse")]
    pub no_session_reuse: bool,
    #[arg(long, value_name = "N")]
    pub session_cache_max_entries: Option<usize>,
    #[arg(long, value_name = "SECS")]
    pub session_cache_ttl: Option<f64>,
    #[arg(long, value_name = "MODEL")]
    pub default_model: Option<String>,
    #[arg(long, value_enum)]
    pub ask_mode: Option<AskModeArg>,
    #[arg(long, value_name = "FILE|JSON")]
    pub accounts: Option<String>,
    #[arg(long, value_name = "FILE|DIR")]
    pub session_bundle: Option<PathBuf>,
    #[arg(long)]
    pub auto_login: bool,
    #[arg(long, value_name = "SECS")]
    pub shutdown_grace: Option<f64>,
    #[arg(long, value_name = "N")]
    pub max_queue: Option<usize>,
    #[arg(long, value_name = "MIB")]
    pub queue_memory: Option<u64>,
    #[arg(long, value_name = "BYTES")]
    pub body_limit: Option<usize>,
    #[arg(long, value_name = "SECS")]
    pub header_timeout: Option<f64>,
    #[arg(long, value_name = "SECS")]
    pub body_timeout: Option<f64>,
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<f64>,
    #[arg(long, value_name = "SECS")]
    pub stream_stall_timeout: Option<f64>,
    #[arg(long, value_name = "SECS")]
    pub keepalive: Option<f64>,
    #[arg(long, value_enum)]
    pub tool_syntax: Option<ToolSyntaxArg>,
    #[arg(long, value_name = "CHARS")]
    pub tool_description_limit: Option<usize>,
    #[arg(long = "model-map", value_name = "PATTERN=MODEL")]
    pub model_map: Vec<String>,
    #[arg(long, value_name = "N")]
    pub response_store_entries: Option<usize>,
    #[arg(long, value_name = "SECS")]
    pub response_store_ttl: Option<f64>,
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
pub struct ManArgs {
    /// The subcommand whose page to print (`serve`, `session export`); none: the main page
    #[arg(value_name = "COMMAND", conflicts_with = "out_dir")]
    pub command: Vec<String>,
    /// Write every page (lingma-gw.1, lingma-gw-serve.1, ...) into DIR instead of printing one
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Print the README's settings table (Markdown) instead; for scripts/gen-docs.sh
    #[arg(long, hide = true, conflicts_with_all = ["command", "out_dir"])]
    pub readme_table: bool,
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

    #[test]
    fn tree_is_consistent() {
        command().debug_assert();
    }

    /// Every command below the top level, with its path as typed (`session export`).
    fn commands(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands() {
            let p = if path.is_empty() {
                sub.get_name().to_string()
            } else {
                format!("{path} {}", sub.get_name())
            };
            out.push((p.clone(), sub.clone()));
            commands(sub, &p, out);
        }
    }

    #[test]
    fn flags_that_are_settings_take_their_help_from_the_table() {
        use crate::settings::table::{self, SETTINGS};
        let mut root = command();
        root.build();
        let mut all = vec![(String::new(), root.clone())];
        commands(&root, "", &mut all);
        let mut flags_seen = std::collections::HashSet::new();
        for (path, cmd) in &all {
            if path == "sim" || path.starts_with("sim ") || path.starts_with("help") {
                continue; // the simulator mimics Lingma's own command line
            }
            for arg in cmd.get_arguments() {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(!help.is_empty(), "{path} {:?} has no help", arg.get_id());
                let Some(long) = arg.get_long() else { continue };
                match table::by_flag(path, long) {
                    Some(s) => {
                        assert_eq!(help, s.help(), "`{path} --{long}`");
                        flags_seen.insert(long.to_string());
                    }
                    None => {
                        assert!(
                            !help.contains("[env:"),
                            "`{path} --{long}` writes its environment variable by hand: make it \
                             a setting in settings/table.rs"
                        );
                        assert!(
                            !SETTINGS.iter().any(|s| s.flag == Some(long)),
                            "`{path} --{long}` is a setting's flag but {path} is not in its scope"
                        );
                    }
                }
            }
        }
        for s in SETTINGS {
            if let Some(f) = s.flag {
                assert!(
                    flags_seen.contains(f),
                    "--{f} ({}) is on no command",
                    s.name()
                );
            }
            if let table::Scope::Commands(list) = s.scope {
                for c in list {
                    assert!(
                        all.iter().any(|(p, _)| p == c),
                        "{}: no command {c}",
                        s.name()
                    );
                }
            }
        }
        for c in table::LINGMA_COMMANDS {
            assert!(all.iter().any(|(p, _)| p == c), "no command {c}");
        }
    }
}
