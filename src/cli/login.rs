//! `lingma-gw login`: clap definitions only (what it does lives in `commands/login.rs`). Flags that
//! are settings get their help from the settings table.

use std::path::PathBuf;

use clap::Args;

use super::{InstanceArg, LingmaArgs};

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub lingma: LingmaArgs,
    #[command(flatten)]
    pub instance: InstanceArg,
    /// Print the login URL but do not open a browser
    #[arg(long)]
    pub no_browser: bool,
    /// Finish a login with the callback URL a browser was sent to (http://127.0.0.1:PORT/auth/callback?...)
    #[arg(long, value_name = "URL", conflicts_with_all = ["headless", "visible"])]
    pub callback_url: Option<String>,
    /// Log in through a headless Chromium with --username and a password (from --password-stdin,
    /// the accounts file's password_env or AUTO_LOGIN_PASSWORD)
    #[arg(long, conflicts_with = "visible")]
    pub headless: bool,
    /// Show Chromium at the login page and wait until you have logged in there
    #[arg(long)]
    pub visible: bool,
    #[arg(long, value_name = "USER")]
    pub username: Option<String>,
    /// Read the password for --headless from the first line of stdin
    #[arg(long)]
    pub password_stdin: bool,
    #[arg(long, value_name = "PATH")]
    pub browser: Option<PathBuf>,
    #[arg(long)]
    pub persistent_profile: bool,
    #[arg(long, value_name = "URL")]
    pub dedicated_domain_url: Option<String>,
    /// Seconds to wait for the login [default: 300; with --headless AUTO_LOGIN_TIMEOUT or 180]
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
}
