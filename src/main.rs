//! The `lingma-gw` binary: parse the command line, run it, turn the outcome into an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = lingma_gw::cli::parse();
    lingma_gw::commands::run(cli)
}
