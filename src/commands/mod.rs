//! One file per subcommand: the glue between the CLI, the settings and the library. This file
//! owns what every command shares: logging set-up, the runtime, and mapping errors to exit codes
//! (0 ok, 1 the operation failed, 2 usage or configuration error).

pub mod chat;
pub mod generate;
pub mod login;
pub mod models;
pub mod probe;
pub mod serve;
pub mod session;
pub mod sim;

use std::process::ExitCode;

use crate::cli::session::SessionCommand;
use crate::cli::{AttachArgs, Cli, Command, InstanceArg, LingmaArgs, PoolArgs};
use crate::lingma::attach::{LocalInstance, default_instance};
use crate::lingma::discovery::LingmaBinary;
use crate::settings::{ConfigFile, LingmaSettings, LogSettings, SettingsError, Sources};

/// An error that should exit with code 2 (bad usage or configuration).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The instance is not logged in (exit 1, with what to do).
#[derive(Debug, thiserror::Error)]
#[error("Lingma is not logged in{}: run `lingma-gw login{}`", if .0.is_empty() { String::new() } else { format!(" (instance {})", .0) }, if .0.is_empty() { String::new() } else { format!(" --instance {}", .0) })]
pub struct NotLoggedIn(pub String);

/// The runtime `--attach` found is not logged in: only its IDE logs it in (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("the Lingma at {0} is not logged in: log in through the IDE that runs it")]
pub struct AttachedNotLoggedIn(pub String);

/// The error a command gives when `inst` is not logged in, with what to do about it.
pub fn not_logged_in(inst: &LocalInstance) -> anyhow::Error {
    if inst.runtime.is_some() {
        AttachedNotLoggedIn(inst.endpoint.to_string()).into()
    } else {
        NotLoggedIn(String::new()).into()
    }
}

/// Attach to the instance `serve` runs, or start a temporary one.
pub async fn open_instance(
    lingma: &LingmaArgs,
    instance: &InstanceArg,
    sources: &Sources<'_>,
) -> anyhow::Result<LocalInstance> {
    let settings = LingmaSettings::resolve(lingma, &PoolArgs::default(), sources)?;
    open_with(&settings, instance).await
}

/// [`open_instance`] for the commands that take `--attach`: the runtime it names when given.
pub async fn open_attachable(
    lingma: &LingmaArgs,
    attach: &AttachArgs,
    instance: &InstanceArg,
    sources: &Sources<'_>,
) -> anyhow::Result<LocalInstance> {
    let settings = LingmaSettings::resolve(lingma, &PoolArgs::default(), sources)?
        .with_attach(attach, sources)?;
    open_with(&settings, instance).await
}

async fn open_with(
    settings: &LingmaSettings,
    instance: &InstanceArg,
) -> anyhow::Result<LocalInstance> {
    if let Some(spec) = &settings.attach {
        return Ok(LocalInstance::attach_to(
            spec,
            &settings.attach_roots,
            &settings.work_dir,
            crate::pool::ATTACHED_NAME,
            &settings.client,
        )
        .await?);
    }
    let binary = LingmaBinary::resolve(&settings.binary).map_err(|e| UsageError(e.to_string()))?;
    let name = match &instance.instance {
        Some(n) if crate::accounts::valid_name(n) => n.clone(),
        Some(n) => return Err(UsageError(format!("instance name {n:?} is invalid")).into()),
        None => default_instance(&settings.work_dir),
    };
    Ok(LocalInstance::open(
        &binary,
        &settings.work_dir,
        &name,
        &settings.client,
        settings.startup_timeout,
    )
    .await?)
}

/// Writes command output; a closed pipe (`| head`) is not an error.
pub fn print_stdout(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    }
}

/// Exit code for a failed command: 2 for usage and configuration errors, 1 otherwise.
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    let usage = err.chain().any(|e| {
        e.downcast_ref::<SettingsError>().is_some() || e.downcast_ref::<UsageError>().is_some()
    });
    if usage { 2 } else { 1 }
}

pub fn run(cli: Cli) -> ExitCode {
    let env = |k: &str| std::env::var(k).ok();
    let file = match ConfigFile::load(cli.global.config.as_deref(), &env) {
        Ok(f) => f,
        Err(e) => {
            report_error(&format!("error: {e}"));
            return ExitCode::from(2);
        }
    };
    let sources = Sources {
        env: &env,
        file: &file,
    };
    let log = match LogSettings::resolve(&cli.global, &sources) {
        Ok(l) => l,
        Err(e) => {
            report_error(&format!("error: {e}"));
            return ExitCode::from(2);
        }
    };
    crate::logging::init(&log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report_error(&format!("error: cannot start the async runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(dispatch(cli, &sources));
    // Children and background tasks get a moment to finish their own cleanup.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(e) => {
            report_error(&format!("error: {e:#}"));
            ExitCode::from(exit_code_for(&e))
        }
    }
}

async fn dispatch(cli: Cli, sources: &Sources<'_>) -> anyhow::Result<ExitCode> {
    let verbose = cli.global.verbose > 0;
    let quiet = cli.global.quiet;
    match cli.command {
        Command::Serve(args) => serve::run(args, sources).await,
        Command::Models(args) => models::run(args, sources).await,
        Command::Chat(args) => chat::run(args, sources, verbose).await,
        Command::Probe(args) => probe::run(args, sources).await,
        Command::Login(args) => login::run(args, sources, quiet).await,
        Command::Session { command } => session::run(command, sources, quiet).await,
        Command::Export(args) => session::run(SessionCommand::Export(args), sources, quiet).await,
        Command::Import(args) => session::run(SessionCommand::Import(args), sources, quiet).await,
        Command::Completions(args) => generate::completions(args.shell),
        Command::Man(args) => generate::man(args),
        Command::Sim { command } => sim::run(command).await,
    }
}

/// The last words of a failed command, on stderr; a closed stderr must not turn them into a panic.
fn report_error(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}
