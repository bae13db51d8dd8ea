//! One file per subcommand: the glue between the CLI, the settings and the library. This file
//! owns what every command shares: logging set-up, the runtime, mapping errors to exit codes
//! (0 ok, 1 the operation failed, 2 usage or configuration error), opening an instance (with a
//! spinner on a terminal), and the commands that hints tell the user to run, spelled so that
//! pasting one reaches the same setup.

pub mod chat;
pub mod generate;
pub mod login;
pub mod models;
pub mod probe;
pub mod progress;
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

/// The instance is not logged in (exit 1, with the command that logs it in).
#[derive(Debug, thiserror::Error)]
#[error("Lingma is not logged in (instance {instance}): run `{login}`")]
pub struct NotLoggedIn {
    pub instance: String,
    pub login: String,
}

/// The runtime `--attach` found is not logged in: only its IDE logs it in (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("the Lingma at {0} is not logged in: log in through the IDE that runs it")]
pub struct AttachedNotLoggedIn(pub String);

/// The error a command gives when `inst` is not logged in, with what to do about it (the login
/// command for the setup `lingma` chose).
pub fn not_logged_in(inst: &LocalInstance, lingma: &LingmaArgs) -> anyhow::Error {
    if inst.runtime.is_some() {
        AttachedNotLoggedIn(inst.endpoint.to_string()).into()
    } else {
        NotLoggedIn::new(lingma, &inst.name).into()
    }
}

impl NotLoggedIn {
    pub fn new(lingma: &LingmaArgs, instance: &str) -> Self {
        Self {
            instance: instance.to_string(),
            login: suggest("login", lingma, Some(instance), &[]),
        }
    }
}

/// `lingma-gw SUB` with the flags that chose the setup as the user gave them (`--sim`,
/// `--lingma-bin`, `--work-dir`) and the instance, quoted for a POSIX shell: a hint's command
/// reaches the same instance when pasted. Settings that came from the environment or the config
/// file are still there when it is pasted, so they are not repeated.
pub fn suggest(sub: &str, lingma: &LingmaArgs, instance: Option<&str>, extra: &[&str]) -> String {
    let mut words: Vec<String> = vec!["lingma-gw".into()];
    words.extend(sub.split(' ').map(String::from));
    if lingma.sim {
        words.push("--sim".into());
    }
    if let Some(b) = &lingma.lingma_bin {
        words.push("--lingma-bin".into());
        words.push(b.display().to_string());
    }
    if let Some(d) = &lingma.work_dir {
        words.push("--work-dir".into());
        words.push(d.display().to_string());
    }
    if let Some(i) = instance {
        words.push("--instance".into());
        words.push(i.to_string());
    }
    words.extend(extra.iter().map(|s| s.to_string()));
    words
        .iter()
        .map(|w| shell_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A word as a POSIX shell reads it back: as is when safe, else in single quotes.
pub fn shell_word(w: &str) -> String {
    let safe = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c));
    if safe {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// Attach to the instance `serve` runs, or start a temporary one; `spinner` says which, while it
/// happens.
pub async fn open_instance(
    lingma: &LingmaArgs,
    instance: &InstanceArg,
    sources: &Sources<'_>,
    spinner: &progress::Spinner,
) -> anyhow::Result<LocalInstance> {
    let settings = LingmaSettings::resolve(lingma, &PoolArgs::default(), sources)?;
    open_with(&settings, instance, spinner).await
}

/// [`open_instance`] for the commands that take `--attach`: the runtime it names when given.
pub async fn open_attachable(
    lingma: &LingmaArgs,
    attach: &AttachArgs,
    instance: &InstanceArg,
    sources: &Sources<'_>,
    spinner: &progress::Spinner,
) -> anyhow::Result<LocalInstance> {
    let settings = LingmaSettings::resolve(lingma, &PoolArgs::default(), sources)?
        .with_attach(attach, sources)?;
    open_with(&settings, instance, spinner).await
}

async fn open_with(
    settings: &LingmaSettings,
    instance: &InstanceArg,
    spinner: &progress::Spinner,
) -> anyhow::Result<LocalInstance> {
    if let Some(spec) = &settings.attach {
        spinner.set_message(format!("connecting to the running Lingma ({spec})…"));
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
    let work_dir = crate::lingma::WorkDir::of_instance(&settings.work_dir, &name);
    if crate::lingma::discovery::live_instance(&work_dir).is_some() {
        spinner.set_message(format!("connecting to the running instance {name}…"));
    } else {
        spinner.set_message(format!(
            "starting a temporary Lingma instance {name} (up to {} s)…",
            settings.startup_timeout.as_secs()
        ));
    }
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
    let sink = crate::logging::init(&log);
    let ui = progress::Ui::new(cli.global.quiet, Some(sink.clone()));
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
    let result = runtime.block_on(dispatch(cli, &sources, &ui));
    // Children and background tasks get a moment to finish their own cleanup.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    // The last log lines go out before the process ends (or before the error below).
    sink.flush(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            report_error(&format!("error: {e:#}"));
            ExitCode::from(exit_code_for(&e))
        }
    }
}

async fn dispatch(cli: Cli, sources: &Sources<'_>, ui: &progress::Ui) -> anyhow::Result<ExitCode> {
    let verbose = cli.global.verbose > 0;
    let quiet = cli.global.quiet;
    match cli.command {
        Command::Serve(args) => serve::run(args, sources, ui).await,
        Command::Models(args) => models::run(args, sources, ui).await,
        Command::Chat(args) => chat::run(args, sources, verbose, ui).await,
        Command::Probe(args) => probe::run(args, sources, ui).await,
        Command::Login(args) => login::run(args, sources, quiet, ui).await,
        Command::Session { command } => session::run(command, sources, quiet, ui).await,
        Command::Export(args) => {
            session::run(SessionCommand::Export(args), sources, quiet, ui).await
        }
        Command::Import(args) => {
            session::run(SessionCommand::Import(args), sources, quiet, ui).await
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggested_commands_carry_the_setup_as_given() {
        let lingma = LingmaArgs {
            sim: true,
            work_dir: Some("/tmp/my dir".into()),
            ..Default::default()
        };
        assert_eq!(
            suggest("login", &lingma, Some("inst-0"), &[]),
            "lingma-gw login --sim --work-dir '/tmp/my dir' --instance inst-0"
        );
        let lingma = LingmaArgs {
            lingma_bin: Some("/opt/it's/Lingma".into()),
            ..Default::default()
        };
        assert_eq!(
            suggest("probe", &lingma, None, &["-v"]),
            r"lingma-gw probe --lingma-bin '/opt/it'\''s/Lingma' -v"
        );
        assert_eq!(
            NotLoggedIn::new(&LingmaArgs::default(), "alice").to_string(),
            "Lingma is not logged in (instance alice): run `lingma-gw login --instance alice`"
        );
    }
}
