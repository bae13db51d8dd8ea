//! The `lingma-gw` binary: parse the command line, run it, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = lingma_gw::cli::Cli::parse();
    lingma_gw::commands::run(cli)
}
