//! `lingma-gw login`: pick the instance (asking when several run and we are interactive), attach
//! to it or start it, say who is logged in if someone is, else log in: interactively (URL, browser,
//! pasted callback), with `--callback-url`, headless through Chromium, or in a visible Chromium.
//!
//! On a terminal a spinner shows while the instance starts and while headless Chromium works;
//! while waiting for a pasted callback URL there is none (it would redraw the line being typed).
//! A failed login says what to run next with the flags that reach the same instance, and offers
//! `--callback-url` only when the instance will still be there (a running `serve` owns it): a
//! temporary instance stops with this command, and its login with it.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::accounts::{Account, parse_accounts};
use crate::cli::InstanceArg;
use crate::cli::login::LoginArgs;
use crate::lingma::AuthStatus;
use crate::lingma::attach::LocalInstance;
use crate::lingma::discovery::live_instances;
use crate::lingma::workdir::default_instance_name;
use crate::login::headless::{self, BrowserOptions, Credentials, Profile, Target, Timeouts};
use crate::login::{Secret, apply_dedicated_domain, interactive, secret_from_reader};
use crate::settings::{LingmaSettings, LoginBrowserSettings, Sources, dedicated_domain_url, table};

use super::progress::Ui;
use super::{UsageError, open_instance, suggest};

pub async fn run(
    args: LoginArgs,
    sources: &Sources<'_>,
    quiet: bool,
    ui: &Ui,
) -> anyhow::Result<ExitCode> {
    let settings = LingmaSettings::resolve(&args.lingma, &Default::default(), sources)?;
    let interactive_tty = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let name = choose_instance(
        &args.instance,
        &settings.work_dir,
        interactive_tty && !quiet,
    )?;
    let dedicated = dedicated_domain_url(args.dedicated_domain_url.as_deref(), sources)?;
    let browser_settings = LoginBrowserSettings::resolve(
        args.browser.as_deref(),
        args.persistent_profile,
        &settings.work_dir,
        sources,
    )?;
    let timeout = match args.timeout {
        Some(t) if t.is_finite() && t > 0.0 => Duration::from_secs_f64(t),
        Some(_) => {
            return Err(UsageError("--timeout must be a positive number of seconds".into()).into());
        }
        None if args.headless || args.visible => browser_settings.timeout,
        None => Duration::from_secs(300),
    };
    // Read secrets before starting anything, so a missing one fails fast.
    let creds = if args.headless {
        Some(headless_credentials(
            &args,
            &name,
            sources,
            interactive_tty,
        )?)
    } else {
        None
    };
    let spinner = ui.spinner("opening Lingma…");
    let inst = open_instance(
        &args.lingma,
        &InstanceArg {
            instance: Some(name.clone()),
        },
        sources,
        &spinner,
    )
    .await?;
    spinner.finish();
    let result = login(
        &inst,
        &args,
        creds.as_ref(),
        dedicated.as_deref(),
        &browser_settings,
        timeout,
        quiet,
        ui,
    )
    .await;
    let attached = inst.attached();
    inst.close().await;
    let (status, newly) = result.map_err(|e| with_next_step(e, &args, &name, attached))?;
    let who = if status.name.is_empty() {
        "an account".to_string()
    } else {
        status.name.clone()
    };
    if newly && !quiet {
        eprintln!("Logged in as {who} (instance {name}).");
    }
    Ok(ExitCode::SUCCESS)
}

/// A failed interactive login, with the command to run next: the same setup, and the callback URL
/// only when the instance the login was started on is still running after this command.
fn with_next_step(e: anyhow::Error, args: &LoginArgs, name: &str, attached: bool) -> anyhow::Error {
    let again = suggest("login", &args.lingma, Some(name), &[]);
    match e.downcast_ref::<interactive::InteractiveError>() {
        Some(interactive::InteractiveError::Timeout(_)) if attached => {
            let finish = suggest(
                "login",
                &args.lingma,
                Some(name),
                &["--callback-url", "URL"],
            );
            e.context(format!(
                "run `{again}` again; or, if your browser ended on an http://127.0.0.1:PORT/auth/callback?... \
                 page, finish this login with `{finish}` (the URL of that page)"
            ))
        }
        Some(interactive::InteractiveError::Timeout(_)) => e.context(format!(
            "run `{again}` again (the instance this login was started on has stopped, so its \
             callback URL cannot finish it: paste the URL while the command waits)"
        )),
        Some(interactive::InteractiveError::CallbackRejected(_)) => {
            e.context(format!("start a new login with `{again}`"))
        }
        _ => e,
    }
}

#[allow(clippy::too_many_arguments)]
async fn login(
    inst: &LocalInstance,
    args: &LoginArgs,
    creds: Option<&Credentials>,
    dedicated: Option<&str>,
    browser: &LoginBrowserSettings,
    timeout: Duration,
    quiet: bool,
    ui: &Ui,
) -> anyhow::Result<(AuthStatus, bool)> {
    let status = inst.client.auth_status().await?;
    if status.logged_in() {
        if !quiet {
            eprintln!(
                "Instance {} is already logged in as {}; nothing to do (`lingma-gw session export` moves this login elsewhere).",
                inst.name, status.name
            );
        }
        return Ok((status, false));
    }
    if let Some(url) = dedicated {
        apply_dedicated_domain(&inst.client, url)
            .await
            .context("cannot switch to DEDICATED_DOMAIN_URL")?;
    }
    if args.headless || args.visible {
        let profile = if browser.persistent_profile {
            let account = creds
                .map(|c| c.username.as_str())
                .or(args.username.as_deref())
                .unwrap_or("default");
            Profile::Persistent(
                browser
                    .profile_root
                    .join(crate::login::auto::profile_name(account)),
            )
        } else {
            Profile::Fresh
        };
        let opts = BrowserOptions {
            executable: browser.executable.clone(),
            profile,
            locators: browser.locators.clone(),
            timeouts: Timeouts::with_total(timeout),
            visible: args.visible,
        };
        if args.visible && !quiet {
            eprintln!(
                "Opening Chromium at the login page; log in there (waiting up to {}s).",
                timeout.as_secs()
            );
        }
        let target = Target {
            client: &inst.client,
            instance: &inst.name,
            // Login never attaches to a runtime it did not find through a work dir.
            http_port: inst.ports.map_or(0, |p| p.http),
            work_dir: inst.work_dir.root(),
            cancel: None,
        };
        let spinner = (!args.visible).then(|| ui.spinner("logging in through headless Chromium…"));
        let status = headless::login(&target, creds, &opts).await;
        drop(spinner);
        return Ok((status?, true));
    }
    let opts = interactive::Options {
        open_browser: !args.no_browser && headless::has_display(),
        // Never while someone may be typing the callback URL on this terminal.
        spinner: ui.enabled() && !std::io::stdin().is_terminal(),
        chatty: !quiet,
        read_stdin: true,
        callback_url: args.callback_url.clone(),
        timeout,
        poll: Duration::from_secs(2),
    };
    let mut print_url = |url: &str| {
        if !quiet {
            eprintln!(
                "Open this URL in a browser to log in instance {}:",
                inst.name
            );
        }
        let _ = super::print_stdout(format!("{url}\n").as_bytes());
    };
    Ok((
        interactive::login(&inst.client, &opts, &mut print_url).await?,
        true,
    ))
}

/// `--instance`, else the only running instance, else ask (interactive) or refuse (scripts).
fn choose_instance(arg: &InstanceArg, work_root: &Path, can_ask: bool) -> anyhow::Result<String> {
    if let Some(n) = &arg.instance {
        if !crate::accounts::valid_name(n) {
            return Err(UsageError(format!("instance name {n:?} is invalid")).into());
        }
        return Ok(n.clone());
    }
    let mut live = live_instances(work_root);
    match live.len() {
        0 => Ok(default_instance_name()),
        1 => Ok(live.remove(0)),
        _ if can_ask => {
            let pick = dialoguer::Select::new()
                .with_prompt("Several instances are running; which one should log in?")
                .items(&live)
                .default(0)
                .interact()
                .context("no instance chosen")?;
            Ok(live.remove(pick))
        }
        _ => Err(UsageError(format!(
            "several instances are running ({}): pass --instance NAME",
            live.join(", ")
        ))
        .into()),
    }
}

/// The account of the accounts file (`--accounts` is a serve flag; here LINGMA_ACCOUNTS or the
/// config file's `accounts`) that names this instance.
fn account_for(name: &str, sources: &Sources<'_>) -> anyhow::Result<Option<Account>> {
    let Some(spec) = sources.get::<String>(&table::ACCOUNTS, None)? else {
        return Ok(None);
    };
    let accounts = parse_accounts(&spec).map_err(|e| UsageError(e.to_string()))?;
    Ok(accounts
        .into_iter()
        .enumerate()
        .find(|(i, a)| a.instance_name(*i) == name)
        .map(|(_, a)| a))
}

fn headless_credentials(
    args: &LoginArgs,
    instance: &str,
    sources: &Sources<'_>,
    interactive_tty: bool,
) -> anyhow::Result<Credentials> {
    let account = account_for(instance, sources)?;
    let username = args
        .username
        .clone()
        .or_else(|| account.as_ref().and_then(|a| a.username.clone()))
        .or(sources.get::<String>(&table::USERNAME, None)?)
        .ok_or_else(|| {
            UsageError(
                "--headless needs an account: pass --username USER (or set AUTO_LOGIN_USERNAME)"
                    .into(),
            )
        })?;
    let password = if args.password_stdin {
        let mut stdin = std::io::stdin().lock();
        secret_from_reader(&mut stdin).context("cannot read the password from stdin")?
    } else if let Some(var) = account.as_ref().and_then(|a| a.password_env.clone()) {
        (sources.env)(&var)
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .ok_or_else(|| UsageError(format!("the account's password_env {var} is not set")))?
    } else if let Some(p) = sources.from_env::<String>(&table::AUTO_LOGIN_PASSWORD)? {
        Secret::new(p)
    } else if interactive_tty {
        Secret::new(
            dialoguer::Password::new()
                .with_prompt(format!("Password for {username}"))
                .interact()
                .context("no password given")?,
        )
    } else {
        return Err(UsageError(
            "--headless needs a password: --password-stdin, the accounts file's password_env, or AUTO_LOGIN_PASSWORD"
                .into(),
        )
        .into());
    };
    if password.is_empty() {
        return Err(UsageError("the password is empty".into()).into());
    }
    Ok(Credentials { username, password })
}

/// The auto-login service's configuration for `serve`: settings plus each account's user name and
/// password (from its `password_env`, else `AUTO_LOGIN_PASSWORD`).
pub fn auto_login_config(
    settings: &crate::settings::AutoLoginSettings,
    accounts: Option<&[Account]>,
    client: crate::lingma::ClientOptions,
    sources: &Sources<'_>,
) -> anyhow::Result<crate::login::auto::AutoLoginConfig> {
    use crate::login::auto::{AccountLogin, AutoLoginConfig};
    let mut per_instance = std::collections::HashMap::new();
    for (i, a) in accounts.unwrap_or_default().iter().enumerate() {
        let Some(username) = a.username.clone().filter(|u| !u.trim().is_empty()) else {
            continue;
        };
        let password = match &a.password_env {
            Some(var) => {
                let p = (sources.env)(var)
                    .filter(|s| !s.is_empty())
                    .map(Secret::new);
                if p.is_none() && settings.enabled {
                    tracing::warn!(account = %username, env = %var, "the account's password_env is not set; auto-login cannot log it in");
                }
                p
            }
            None => settings.password.clone(),
        };
        let name = a.instance_name(i);
        per_instance.insert(name, AccountLogin { username, password });
    }
    let default_account = settings.username.clone().map(|username| AccountLogin {
        username,
        password: settings.password.clone(),
    });
    let b = &settings.browser;
    Ok(AutoLoginConfig {
        enabled: settings.enabled,
        timeout: b.timeout,
        max_retry: settings.max_retry,
        retry_delay: Duration::from_secs(3),
        cooldown: Duration::from_secs(300),
        dedicated_domain_url: settings.dedicated_domain_url.clone(),
        browser: BrowserOptions {
            executable: b.executable.clone(),
            profile: Profile::Fresh,
            locators: b.locators.clone(),
            timeouts: Timeouts::with_total(b.timeout),
            visible: false,
        },
        profile_root: b.persistent_profile.then(|| b.profile_root.clone()),
        accounts: per_instance,
        default_account,
        client,
    })
}
