//! `lingma-gw session export|import`: clap definitions only (what they do lives in
//! `commands/session.rs`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{InstanceArg, LingmaArgs};

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Write a bundle of a logged-in instance's login files (tar.gz + manifest)
    Export(ExportArgs),
    /// Install a bundle into an instance's work dir (raw, base64 or encrypted)
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub lingma: LingmaArgs,
    #[command(flatten)]
    pub instance: InstanceArg,
    /// Where to write the bundle; `-` is stdout [default: -]
    #[arg(short, long, value_name = "FILE|-")]
    pub output: Option<PathBuf>,
    /// Write base64 on one line (for environment variables and CI secrets)
    #[arg(long)]
    pub base64: bool,
    /// Also include the chat history (cache/db/*)
    #[arg(long)]
    pub with_history: bool,
    /// Encrypt with a passphrase (age); the passphrase comes from --passphrase-stdin or
    /// LINGMA_BUNDLE_PASSPHRASE
    #[arg(long)]
    pub encrypt: bool,
    /// Read the passphrase from the first line of stdin
    #[arg(long)]
    pub passphrase_stdin: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub lingma: LingmaArgs,
    #[command(flatten)]
    pub instance: InstanceArg,
    /// The bundle; `-` or none reads stdin
    #[arg(value_name = "FILE|-")]
    pub file: Option<PathBuf>,
    /// Replace the login of a work dir that is already logged in
    #[arg(long)]
    pub force: bool,
    /// Read the passphrase of an encrypted bundle from the first line of stdin (the bundle must
    /// then come from a FILE); without it, LINGMA_BUNDLE_PASSPHRASE
    #[arg(long)]
    pub passphrase_stdin: bool,
    /// Do not restart the running instance (it keeps its old login until its next start)
    #[arg(long)]
    pub no_restart: bool,
}
