//! `lingma-gw session export|import`: the glue between the CLI, the settings and `bundle.rs`.
//!
//! Export attaches to (or starts) the instance to confirm it is logged in and learn its account
//! and Lingma version, then writes the bundle. Import writes the files without starting anything;
//! when `serve` runs the instance (its instance file is present and both pids live), the Lingma
//! process is sent SIGTERM: the pool's supervisor treats that like any exit and starts it again
//! within about a second, and the new process reads the imported login. This needs no gateway
//! address or admin token, only the same user as the work dir's owner. Import then waits for the
//! new process and checks that it is logged in.
//!
//! On a terminal (no `-q`) a spinner says which stage runs (starting the instance, packing,
//! encrypting, reading, verifying, restarting) and a byte count follows a bundle being read from
//! stdin or written out, so a large bundle shows it is moving.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bundle::{self, BundleError, ExportOptions, Seed};
use crate::cli::session::{ExportArgs, ImportArgs, SessionCommand};
use crate::lingma::attach::default_instance;
use crate::lingma::discovery::{InstanceFile, live_instance};
use crate::lingma::{LingmaClient, WorkDir};
use crate::login::{Secret, secret_from_reader};
use crate::pool::InstanceSpec;
use crate::settings::{BundleSettings, LingmaSettings, Sources};

use super::progress::{CountingReader, Ui};
use super::{NotLoggedIn, UsageError, open_instance};

pub async fn run(
    cmd: SessionCommand,
    sources: &Sources<'_>,
    quiet: bool,
    ui: &Ui,
) -> anyhow::Result<ExitCode> {
    match cmd {
        SessionCommand::Export(a) => export(a, sources, quiet, ui).await,
        SessionCommand::Import(a) => import(a, sources, quiet, ui).await,
    }
}

fn passphrase(from_stdin: bool, settings: &BundleSettings) -> anyhow::Result<Option<Secret>> {
    if from_stdin {
        let mut stdin = std::io::stdin().lock();
        let p = secret_from_reader(&mut stdin).context("cannot read the passphrase from stdin")?;
        if p.is_empty() {
            return Err(UsageError("the passphrase on stdin is empty".into()).into());
        }
        return Ok(Some(p));
    }
    Ok(settings.passphrase.clone())
}

async fn export(
    args: ExportArgs,
    sources: &Sources<'_>,
    quiet: bool,
    ui: &Ui,
) -> anyhow::Result<ExitCode> {
    let bs = BundleSettings::resolve(sources)?;
    let pass = if args.encrypt {
        Some(passphrase(args.passphrase_stdin, &bs)?.ok_or_else(|| {
            UsageError(
                "--encrypt needs a passphrase: --passphrase-stdin or LINGMA_BUNDLE_PASSPHRASE"
                    .into(),
            )
        })?)
    } else {
        if args.passphrase_stdin {
            return Err(UsageError("--passphrase-stdin is for --encrypt".into()).into());
        }
        None
    };
    let spinner = ui.spinner("opening Lingma…");
    let inst = open_instance(&args.lingma, &args.instance, sources, &spinner).await?;
    let result = async {
        spinner.set_message(format!("asking instance {} who is logged in…", inst.name));
        let status = inst.client.auth_status().await?;
        if !status.logged_in() {
            return Err(
                anyhow::Error::new(NotLoggedIn::new(&args.lingma, &inst.name))
                    .context(format!("refusing to export instance {}", inst.name)),
            );
        }
        spinner.set_message(format!("packing the session of {}…", status.name));
        let opts = ExportOptions {
            with_history: args.with_history,
            account: Some(status.name.clone()),
            lingma_version: Some(inst.client.server_version().to_string()),
            instance: Some(inst.name.clone()),
        };
        Ok((
            bundle::export(inst.work_dir.root(), &opts)?,
            status.name,
            inst.name.clone(),
        ))
    }
    .await;
    inst.close().await;
    let (mut data, account, name) = result?;
    if let Some(p) = &pass {
        spinner.set_message(format!("encrypting {} bytes…", data.len()));
        data = bundle::encrypt(&data, p.expose())?;
    }
    if args.base64 {
        data = bundle::to_base64(&data);
    }
    spinner.finish();
    match args.output.as_deref() {
        None => write_stdout(&data, ui)?,
        Some(p) if p == Path::new("-") => write_stdout(&data, ui)?,
        Some(p) => {
            let bar = ui.bytes(Some(data.len() as u64), format!("writing {}", p.display()));
            write_private(p, &data)?;
            bar.inc(data.len() as u64);
        }
    }
    if !quiet {
        let dest = match args.output.as_deref() {
            Some(p) if p != Path::new("-") => p.display().to_string(),
            _ => "stdout".into(),
        };
        eprintln!(
            "Exported the session of {account} (instance {name}){}{} to {dest}.",
            if pass.is_some() { ", encrypted" } else { "" },
            if args.base64 { ", base64" } else { "" },
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Chunks of a bundle written to stdout, so a byte count can follow a large one.
const CHUNK: usize = 64 * 1024;

fn write_stdout(data: &[u8], ui: &Ui) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if std::io::IsTerminal::is_terminal(&out) && data.starts_with(&[0x1f, 0x8b]) {
        bail!(UsageError(
            "refusing to write a binary bundle to a terminal: use -o FILE or --base64".into()
        ));
    }
    let bar = ui.bytes(Some(data.len() as u64), "writing the bundle to stdout");
    for chunk in data.chunks(CHUNK) {
        out.write_all(chunk)?;
        bar.inc(chunk.len() as u64);
    }
    out.flush()?;
    Ok(())
}

/// Written atomically, readable by the owner only: a bundle is a login.
fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    crate::util::write_private(path, data)
        .with_context(|| format!("cannot write {}", path.display()))
}

async fn import(
    args: ImportArgs,
    sources: &Sources<'_>,
    quiet: bool,
    ui: &Ui,
) -> anyhow::Result<ExitCode> {
    let settings = LingmaSettings::resolve(&args.lingma, &Default::default(), sources)?;
    let bs = BundleSettings::resolve(sources)?;
    let from_stdin = args.file.is_none() || args.file.as_deref() == Some(Path::new("-"));
    if from_stdin && args.passphrase_stdin {
        return Err(UsageError(
            "--passphrase-stdin needs the bundle from a FILE (stdin carries the passphrase); \
             or set LINGMA_BUNDLE_PASSPHRASE"
                .into(),
        )
        .into());
    }
    let pass = passphrase(args.passphrase_stdin, &bs)?;
    let input = if from_stdin {
        let mut data = Vec::new();
        let bar = ui.bytes(None, "reading the bundle from stdin");
        CountingReader {
            inner: std::io::stdin().lock(),
            spinner: &bar,
        }
        .take(bs.limits.max_bytes + 1)
        .read_to_end(&mut data)
        .context("cannot read the bundle from stdin")?;
        drop(bar);
        if data.len() as u64 > bs.limits.max_bytes {
            return Err(BundleError::InputTooLarge {
                input: "the bundle on stdin".into(),
                limit: bs.limits.max_bytes,
            }
            .into());
        }
        data
    } else {
        let p = args.file.clone().unwrap_or_default();
        let _reading = ui.spinner(format!("reading {}…", p.display()));
        bundle::read_input(&p, bs.limits)?
    };
    let name = match &args.instance.instance {
        Some(n) if crate::accounts::valid_name(n) => n.clone(),
        Some(n) => return Err(UsageError(format!("instance name {n:?} is invalid")).into()),
        None => default_instance(&settings.work_dir),
    };
    let work_dir = WorkDir::of_instance(&settings.work_dir, &name);
    let running = live_instance(&work_dir);
    let spinner = ui.spinner(format!(
        "verifying the bundle ({} bytes) and installing it into {}…",
        input.len(),
        work_dir.root().display()
    ));
    let (b, installed) = bundle::import(
        &input,
        work_dir.root(),
        pass.as_ref().map(Secret::expose),
        args.force,
        bs.limits,
    )
    .map_err(|e| match e {
        BundleError::AlreadyLoggedIn(_) => anyhow::Error::new(UsageError(e.to_string())),
        other => anyhow::Error::new(other).context("cannot import the bundle"),
    })?;
    spinner.finish();
    if !quiet {
        let m = &b.manifest;
        eprintln!(
            "Imported the session of {} (Lingma {}, {} files) into {}{}.",
            m.account.as_deref().unwrap_or("an unnamed account"),
            m.lingma_version.as_deref().unwrap_or("?"),
            installed.files.len(),
            installed.work_dir.display(),
            if installed.replaced {
                ", replacing its login"
            } else {
                ""
            },
        );
    }
    match running {
        Some(file) if !args.no_restart => {
            let spinner = ui.spinner(format!("restarting the running instance {name}…"));
            let user = restart(&work_dir, &file, &settings).await?;
            spinner.finish();
            if !quiet {
                eprintln!("Restarted the running instance {name}: logged in as {user}.");
            }
        }
        Some(_) if !quiet => {
            eprintln!("The running instance {name} keeps its old login until it restarts.");
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether process `pid` was started with `--workDir` naming `work_dir` (relative paths are
/// resolved against the process's own working directory).
fn runs_work_dir(pid: u32, work_dir: &Path) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
    let want = std::fs::canonicalize(work_dir).unwrap_or_else(|_| work_dir.to_path_buf());
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    args.iter().enumerate().any(|(i, a)| {
        let value = match a.strip_prefix("--workDir") {
            Some(rest) if rest.starts_with('=') => Some(rest[1..].to_string()),
            Some("") => args.get(i + 1).cloned(),
            _ => None,
        };
        value.is_some_and(|v| {
            let p = cwd.join(v);
            std::fs::canonicalize(&p).unwrap_or(p) == want
        })
    })
}

/// Stops the Lingma process `serve` runs for `work_dir` so its supervisor starts it again on the
/// new login, then waits for the new process and returns who it is logged in as.
async fn restart(
    work_dir: &WorkDir,
    file: &InstanceFile,
    settings: &LingmaSettings,
) -> anyhow::Result<String> {
    // Never signal a recycled pid: the process must be the Lingma started for this work dir.
    if !runs_work_dir(file.lingma_pid, work_dir.root()) {
        bail!(
            "the instance file names pid {} but that process does not run {}; restart the gateway \
             (or POST /internal/instances/NAME/restart) to use the new login",
            file.lingma_pid,
            work_dir.root().display()
        );
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(file.lingma_pid).context("bad pid")?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
        .context("cannot signal the running Lingma")?;
    let deadline = Instant::now() + settings.startup_timeout + Duration::from_secs(15);
    loop {
        if let Some(f) = InstanceFile::read(work_dir)
            && f.lingma_pid != file.lingma_pid
            && f.is_live()
        {
            let url = format!("ws://127.0.0.1:{}/", f.socket_port);
            if let Ok(c) =
                LingmaClient::connect(&url, &work_dir.workspace(), settings.client.clone()).await
            {
                let status = c.auth_status().await;
                c.close().await;
                match status {
                    Ok(s) if s.logged_in() => return Ok(s.name),
                    Ok(_) => bail!(
                        "the instance restarted but is not logged in with the imported session \
                         (the login may be bound to the machine it was made on)"
                    ),
                    Err(_) => {}
                }
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "the running instance did not come back within {}s; check the gateway's log",
                (settings.startup_timeout + Duration::from_secs(15)).as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `serve`'s session seeds (`LINGMA_SESSION_BUNDLE`, the accounts' `bundle`): a directory stays a
/// plain seed; a bundle file or inline base64 is decoded (decrypted with
/// `LINGMA_BUNDLE_PASSPHRASE`) and verified once here, so a bad bundle stops `serve` at start
/// (exit 2) instead of failing every restart, and stored as a plain tar.gz (mode 0600) under
/// `<work-dir>/.session-bundles/` for the pool to install into work dirs that are not logged in.
pub fn prepare_seeds(
    mut specs: Vec<InstanceSpec>,
    work_root: &Path,
    sources: &Sources<'_>,
) -> anyhow::Result<Vec<InstanceSpec>> {
    use sha2::Digest;
    let bs = BundleSettings::resolve(sources)?;
    let mut done: std::collections::HashMap<Seed, Seed> = std::collections::HashMap::new();
    for spec in &mut specs {
        let Some(seed) = spec.seed.clone() else {
            continue;
        };
        let input = match &seed {
            Seed::Dir(_) => continue,
            _ if done.contains_key(&seed) => {
                spec.seed = done.get(&seed).cloned();
                continue;
            }
            Seed::Bundle(file) => bundle::read_input(file, bs.limits)
                .map_err(|e| UsageError(format!("session bundle {}: {e}", file.display())))?,
            // Short text is more likely a mistyped path than a bundle.
            Seed::Inline(text) if text.len() < 64 => {
                return Err(UsageError(format!(
                    "session bundle {text}: no such file or directory"
                ))
                .into());
            }
            Seed::Inline(text) => text.clone().into_bytes(),
        };
        let pass = bs.passphrase.as_ref().map(Secret::expose);
        let (targz, _) = bundle::decode(&input, pass, bs.limits)
            .map_err(|e| UsageError(format!("session bundle for instance {}: {e}", spec.name)))?;
        let b = bundle::read(&targz, bs.limits)
            .map_err(|e| UsageError(format!("session bundle for instance {}: {e}", spec.name)))?;
        let dir = work_root.join(".session-bundles");
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let name = hex::encode(&sha2::Sha256::digest(&targz)[..8]);
        let path = dir.join(format!("{name}.tar.gz"));
        write_private(&path, &targz)?;
        tracing::info!(
            instance = %spec.name,
            account = b.manifest.account.as_deref().unwrap_or(""),
            "session bundle ready for work dirs that are not logged in"
        );
        let prepared = Seed::Bundle(path);
        done.insert(seed, prepared.clone());
        spec.seed = Some(prepared);
    }
    Ok(specs)
}
