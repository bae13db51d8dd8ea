//! Interactive login (`lingma-gw login`): get the login URL (`login/generateUrl`, falling back to
//! `auth/login`), show it and open a browser when there is a display, then wait until
//! `auth/status` says logged in. For a browser on another machine, the callback URL it was sent to
//! (`http://127.0.0.1:PORT/auth/callback?...`) can be given with `--callback-url` or pasted at the
//! prompt (any line on stdin); it is submitted with `login/auth_callback`.
//!
//! What is printed: the URL alone on stdout (so scripts can pick it up), everything meant for the
//! person on stderr; a spinner only when the command asks for one (stderr a terminal, no `-q`,
//! and stdin not a terminal: a spinner redraws its line and would draw over a URL being typed or
//! pasted there). Errors say what happened; the command adds what to run next, since only it
//! knows the flags that reach the same instance.

use std::time::{Duration, Instant};

use std::io::BufRead;
use thiserror::Error;

use super::{CallbackParams, CallbackUrlError, expected_state, wait_logged_in};
use crate::lingma::{AuthStatus, LingmaClient, LingmaError};

#[derive(Debug, Error)]
pub enum InteractiveError {
    #[error("the login did not finish within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error(transparent)]
    BadCallbackUrl(#[from] CallbackUrlError),
    #[error(
        "Lingma refused the callback: {0}. A callback URL works once, and only for the login \
         started by the instance it is given to"
    )]
    CallbackRejected(String),
    #[error(transparent)]
    Lingma(#[from] LingmaError),
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Open the URL in the system browser.
    pub open_browser: bool,
    /// Show a spinner on stderr while waiting (never while someone may be typing on stdin).
    pub spinner: bool,
    /// Print hints on stderr.
    pub chatty: bool,
    /// Read pasted callback URLs from stdin.
    pub read_stdin: bool,
    /// Submit this callback URL instead of starting a login.
    pub callback_url: Option<String>,
    pub timeout: Duration,
    pub poll: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            open_browser: false,
            spinner: false,
            chatty: true,
            read_stdin: true,
            callback_url: None,
            timeout: Duration::from_secs(300),
            poll: Duration::from_secs(2),
        }
    }
}

/// Submits a callback URL and waits until the instance says logged in.
pub async fn submit_callback(
    client: &LingmaClient,
    url: &str,
    timeout: Duration,
) -> Result<AuthStatus, InteractiveError> {
    let cb = CallbackParams::parse(url)?;
    if let Err(e) = client.auth_callback(cb.nonce(), &cb.auth, &cb.token).await {
        // A browser that did reach the instance already used the nonce: that is a success.
        if let Ok(s) = client.auth_status().await
            && s.logged_in()
        {
            return Ok(s);
        }
        return Err(match e {
            LingmaError::Failed { code, message, .. } => {
                InteractiveError::CallbackRejected(format!("{code} {message}"))
            }
            other => InteractiveError::Lingma(other),
        });
    }
    wait_logged_in(client, timeout, Duration::from_millis(200))
        .await?
        .ok_or(InteractiveError::Timeout(timeout))
}

/// The whole interactive login. `print_url` receives the login URL (the command prints it).
pub async fn login(
    client: &LingmaClient,
    opts: &Options,
    print_url: &mut dyn FnMut(&str),
) -> Result<AuthStatus, InteractiveError> {
    if let Some(url) = &opts.callback_url {
        return submit_callback(client, url, opts.timeout).await;
    }
    let login = client.login_url().await?;
    if expected_state(&login).is_none() {
        tracing::debug!("the login URL carries no state; any callback will be tried");
    }
    print_url(&login.url);
    if opts.open_browser {
        match open::that_detached(&login.url) {
            Ok(()) => hint(opts, "Opened the login page in your browser."),
            Err(e) => hint(
                opts,
                &format!("Could not open a browser ({e}); open the URL above yourself."),
            ),
        }
    }
    hint(
        opts,
        "Log in in the browser. If the browser runs on another machine, it ends on a page at \
         http://127.0.0.1:PORT/auth/callback?... that cannot load: paste that URL here and press Enter.",
    );
    let spinner = opts.spinner.then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_message("waiting for the login to finish…");
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    });
    if spinner.is_none() {
        hint(
            opts,
            &format!(
                "Waiting up to {} s for the login to finish.",
                opts.timeout.as_secs()
            ),
        );
    }
    let result = wait(client, opts).await;
    if let Some(pb) = spinner {
        pb.finish_and_clear();
    }
    result
}

fn hint(opts: &Options, text: &str) {
    if opts.chatty {
        eprintln!("{text}");
    }
}

/// Polls `auth/status` (and wakes on `auth/report`) while reading pasted callback URLs.
async fn wait(client: &LingmaClient, opts: &Options) -> Result<AuthStatus, InteractiveError> {
    let deadline = Instant::now() + opts.timeout;
    let (tx, mut pasted) = tokio::sync::mpsc::unbounded_channel::<String>();
    if opts.read_stdin {
        // A plain thread, not tokio's stdin: a read blocked on a terminal must not hold up the
        // runtime's shutdown once the login is done (the process exit ends the thread).
        let spawned = std::thread::Builder::new()
            .name("login-stdin".into())
            .spawn(move || {
                for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                    if !line.trim().is_empty() && tx.send(line).is_err() {
                        break;
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "cannot read pasted callback URLs");
        }
    }
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(InteractiveError::Timeout(opts.timeout));
        }
        tokio::select! {
            status = wait_logged_in(client, left, opts.poll) => {
                return status?.ok_or(InteractiveError::Timeout(opts.timeout));
            }
            Some(line) = pasted.recv() => {
                match submit_callback(client, &line, left).await {
                    Ok(s) => return Ok(s),
                    // A stray line is not fatal: say why and keep waiting.
                    Err(InteractiveError::BadCallbackUrl(e)) => hint(opts, &format!("{e}")),
                    Err(e) => return Err(e),
                }
            }
        }
    }
}
