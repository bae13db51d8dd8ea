//! `lingma-gw completions SHELL` and `lingma-gw man`: generated from the one clap tree.

use std::io::Write;
use std::process::ExitCode;

/// The completion script for `shell`.
pub fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = crate::cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "lingma-gw", &mut out);
    out
}

/// The man page (roff): the top-level page, then a section per subcommand with its synopsis,
/// description and options, so `man lingma-gw` documents every flag.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let root = crate::cli::command();
    clap_mangen::Man::new(root.clone()).render(&mut out)?;
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
        render_sub_section(&mut out, root.get_name(), sub)?;
    }
    Ok(out)
}

fn render_sub_section(out: &mut Vec<u8>, parent: &str, sub: &clap::Command) -> std::io::Result<()> {
    let full = format!("{parent} {}", sub.get_name());
    writeln!(out, ".SH \"{}\"", full.to_uppercase())?;
    let page = clap_mangen::Man::new(sub.clone().bin_name(&full));
    let mut section = Vec::new();
    page.render_synopsis_section(&mut section)?;
    page.render_description_section(&mut section)?;
    if sub.get_arguments().any(|a| !a.is_hide_set()) {
        page.render_options_section(&mut section)?;
    }
    // Inside a subcommand's section its parts are subsections.
    for line in String::from_utf8_lossy(&section).lines() {
        match line.strip_prefix(".SH ") {
            Some(title) => writeln!(out, ".SS {title}")?,
            None => writeln!(out, "{line}")?,
        }
    }
    for nested in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
        render_sub_section(out, &full, nested)?;
    }
    Ok(())
}

pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    write_stdout(&completion_script(shell))
}

pub fn man() -> anyhow::Result<ExitCode> {
    write_stdout(&man_page()?)
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    super::print_stdout(bytes)
}
