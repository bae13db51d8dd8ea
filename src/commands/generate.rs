//! `lingma-gw completions SHELL` and `lingma-gw man`: generated from the one clap tree
//! (`cli::command()`, which carries the settings table's help).
//!
//! Man pages: `lingma-gw.1` (options, the subcommands, EXIT STATUS, ENVIRONMENT from the settings
//! table, FILES, EXAMPLES) and one page per subcommand (`lingma-gw-serve.1`,
//! `lingma-gw-session-export.1`, …), so every `lingma-gw-NAME(1)` the pages cite exists.
//!
//! Completions: clap_complete's scripts, with the bash script repaired (see [`fix_bash`]).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

use crate::cli::ManArgs;
use crate::lingma::workdir;
use crate::settings::docs;

use super::UsageError;

const BIN: &str = "lingma-gw";

/// The completion script for `shell`.
pub fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = crate::cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN, &mut out);
    match shell {
        clap_complete::Shell::Bash => fix_bash(&String::from_utf8_lossy(&out), BIN).into_bytes(),
        clap_complete::Shell::Fish => {
            let mut s = fix_fish(&String::from_utf8_lossy(&out));
            s.push_str(&fish_positional_values(&cmd));
            s.into_bytes()
        }
        _ => out,
    }
}

/// clap_complete (up to at least 4.6.11; clap-rs/clap#6421, still open) spells the state of a
/// subcommand two ways when the binary name has a hyphen: the loop that walks the words builds
/// `lingma__gw__subcmd__serve`, the `case` arms that complete are labelled
/// `lingma__subcmd__gw__subcmd__serve`. No arm ever matches, so nothing after a subcommand
/// completes (no flags, and file names instead of flag values). The loop's spelling is the one
/// the function name also uses, so the arms are relabelled to it. Once clap_complete is fixed
/// the broken spelling no longer occurs and this changes nothing; `tests/completions.rs` runs the
/// script in a real bash either way.
pub fn fix_bash(script: &str, bin: &str) -> String {
    const SEP: &str = "__subcmd__";
    let loop_spelling = bin.replace('-', "__");
    let arm_spelling = bin.replace('-', SEP);
    if loop_spelling == arm_spelling {
        return script.to_string();
    }
    script
        .lines()
        .map(|line| {
            let t = line.trim_start();
            // Only the case arms' labels: `        lingma__subcmd__gw__subcmd__serve)`.
            if t.starts_with(&format!("{arm_spelling}{SEP}")) && t.ends_with(')') {
                line.replacen(&arm_spelling, &loop_spelling, 1)
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if script.ends_with('\n') { "\n" } else { "" }
}

/// clap_complete's fish script decides "no subcommand yet" by running `argparse` over the words
/// before the cursor, and treats a failure as "not at the top level". While the value of a
/// top-level option is being completed (`lingma-gw --log-format <TAB>`) that option has no value
/// yet, so argparse fails and the option's values (`text json`) are never offered: fish falls
/// back to file names. A failed parse is taken as "no subcommand yet" instead.
pub fn fix_fish(script: &str) -> String {
    const PARSE: &str = "2>/dev/null\n    or return\n";
    script.replacen(
        PARSE,
        "2>/dev/null\n    # lingma-gw: a top-level option still waiting for its value is no subcommand\n    or return 0\n",
        1,
    )
}

/// clap_complete's fish script completes no positional argument's values
/// (`lingma-gw completions <TAB>` would offer file names): one line per subcommand argument with
/// a fixed set of values (`completions SHELL`) adds them.
fn fish_positional_values(root: &clap::Command) -> String {
    let mut out = String::new();
    for sub in root.get_subcommands() {
        for arg in sub.get_positionals() {
            let values: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_string())
                .collect();
            if values.is_empty() {
                continue;
            }
            out.push_str(&format!(
                "complete -c {BIN} -n \"__fish_{fn_name}_using_subcommand {sub}\" -f -a \"{values}\"\n",
                fn_name = BIN.replace('-', "_"),
                sub = sub.get_name(),
                values = values.join(" "),
            ));
        }
    }
    out
}

/// One man page: its file name (`lingma-gw-serve.1`) and its roff.
pub struct Page {
    pub file_name: String,
    pub roff: Vec<u8>,
}

/// The tree the pages are made from: built (global flags on every subcommand, display names
/// `lingma-gw-serve`), without clap's `help` pseudo-subcommand, which has no page.
fn man_tree() -> clap::Command {
    let mut cmd = crate::cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

fn source() -> String {
    format!("{BIN} {}", env!("CARGO_PKG_VERSION"))
}

/// Every page: the main one, then one per subcommand (depth first).
pub fn man_pages() -> std::io::Result<Vec<Page>> {
    let root = man_tree();
    let mut pages = vec![main_page(&root)?];
    for sub in visible_subcommands(&root) {
        sub_pages(sub, &[], &mut pages)?;
    }
    Ok(pages)
}

fn visible_subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set())
}

fn sub_pages(cmd: &clap::Command, parents: &[&str], pages: &mut Vec<Page>) -> std::io::Result<()> {
    let mut path: Vec<&str> = parents.to_vec();
    path.push(cmd.get_name());
    pages.push(sub_page(cmd, &path)?);
    for sub in visible_subcommands(cmd) {
        sub_pages(sub, &path, pages)?;
    }
    Ok(())
}

/// The page of the command at `path` (empty: the main page).
pub fn man_page_for(path: &[String]) -> anyhow::Result<Page> {
    let root = man_tree();
    if path.is_empty() {
        return Ok(main_page(&root)?);
    }
    let mut cmd = &root;
    for name in path {
        cmd = visible_subcommands(cmd)
            .find(|c| c.get_name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = visible_subcommands(cmd).map(|c| c.get_name()).collect();
                UsageError(format!(
                    "no man page for {:?}; pages exist for: {}",
                    path.join(" "),
                    known.join(", ")
                ))
            })?;
    }
    let names: Vec<&str> = path.iter().map(String::as_str).collect();
    Ok(sub_page(cmd, &names)?)
}

fn main_page(root: &clap::Command) -> std::io::Result<Page> {
    let man = Man::new(root.clone()).source(source());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    out.extend_from_slice(exit_status(true).as_bytes());
    if let Some(env) = docs::man_environment(None) {
        out.extend_from_slice(env.as_bytes());
    }
    out.extend_from_slice(files().as_bytes());
    out.extend_from_slice(examples().as_bytes());
    out.extend_from_slice(see_also(None).as_bytes());
    man.render_version_section(&mut out)?;
    Ok(Page {
        file_name: man.get_filename(),
        roff: out,
    })
}

fn sub_page(cmd: &clap::Command, path: &[&str]) -> std::io::Result<Page> {
    let man = Man::new(cmd.clone()).source(source());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if visible_subcommands(cmd).next().is_some() {
        man.render_subcommands_section(&mut out)?;
    }
    let joined = path.join(" ");
    if visible_subcommands(cmd).next().is_none() {
        out.extend_from_slice(exit_status(joined == "chat").as_bytes());
        if let Some(env) = docs::man_environment(Some(&joined)) {
            out.extend_from_slice(env.as_bytes());
        }
    }
    let parent = (path.len() > 1).then(|| format!("{BIN}-{}", path[..path.len() - 1].join("-")));
    out.extend_from_slice(see_also(parent.as_deref()).as_bytes());
    man.render_version_section(&mut out)?;
    Ok(Page {
        file_name: man.get_filename(),
        roff: out,
    })
}

/// The exit codes; `interrupt`: the page also lists chat's 130.
fn exit_status(interrupt: bool) -> String {
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    let mut item = |code: &str, text: &str| {
        roff.control("TP", []);
        roff.text([bold(code)]);
        roff.text([roman(text)]);
    };
    item("0", "Success.");
    item(
        "1",
        "The operation failed: Lingma answered with an error or did not answer, the instance is \
         not logged in, a probe step failed.",
    );
    item(
        "2",
        "Usage or configuration error: a bad flag, environment variable or config file value, a \
         Lingma binary that is not there.",
    );
    if interrupt {
        item(
            "130",
            "chat was interrupted with Ctrl-C (Lingma was told to stop).",
        );
    }
    roff.to_roff()
}

fn files() -> String {
    let mut roff = Roff::new();
    roff.control("SH", ["FILES"]);
    let mut item = |tag: &str, text: &str| {
        roff.control("TP", []);
        roff.text([bold(tag)]);
        roff.text([roman(text)]);
    };
    item(
        "$XDG_CONFIG_HOME/lingma-gw/config.toml",
        "The config file (usually ~/.config/lingma-gw/config.toml), read when it exists; --config \
         FILE or LINGMA_GW_CONFIG name another one, which must exist. TOML; the keys are the long \
         flag names with _ (see ENVIRONMENT).",
    );
    item(
        "$XDG_DATA_HOME/lingma-gw/instances/",
        "The default work dir (usually ~/.local/share/lingma-gw/instances/; --work-dir, \
         LINGMA_WORK_DIR): one directory per instance, inst-0, inst-1, ... or the names the \
         accounts file gives.",
    );
    item(
        "WORK-DIR/NAME/",
        &format!(
            "An instance's Lingma work dir: {} and {} (the login, what session bundles carry), \
             {}/ (chat history), {}/lingma.log (Lingma's own log), workspace/.",
            workdir::MACHINE_ID_FILE,
            workdir::USER_FILE,
            workdir::HISTORY_DIR,
            workdir::LOGS_DIR
        ),
    );
    item(
        &format!("WORK-DIR/NAME/{}", workdir::INSTANCE_FILE),
        "Left by a running serve: the pids and ports of the instance, so that login, models, \
         chat, probe and session attach to it instead of starting a temporary instance. serve \
         removes it when it stops; a stale one (dead pids) is ignored and removed.",
    );
    item(
        "WORK-DIR/.session-bundles/",
        "Session bundles serve has verified (--session-bundle, the accounts' bundle), kept for \
         work dirs that are not logged in.",
    );
    item(
        "WORK-DIR/.browser-profiles/",
        "Per-account Chromium profiles of --persistent-profile (AUTO_LOGIN_PROFILE_DIR).",
    );
    roff.to_roff()
}

fn examples() -> String {
    let mut roff = Roff::new();
    roff.control("SH", ["EXAMPLES"]);
    let mut example = |what: &str, lines: &[&str]| {
        roff.control("PP", []);
        roff.text([roman(what)]);
        roff.control("RS", ["4"]);
        roff.control("nf", []);
        for l in lines {
            roff.text([roman(*l)]);
        }
        roff.control("fi", []);
        roff.control("RE", []);
    };
    example(
        "The gateway on the built-in simulator, then a request to it:",
        &[
            "lingma-gw serve --sim --api-key sk-local",
            "curl -H 'Authorization: Bearer sk-local' http://127.0.0.1:8000/v1/models",
        ],
    );
    example(
        "The gateway for a network, two Lingma processes, keys from the environment:",
        &["API_KEYS=sk-a,sk-b lingma-gw serve --host 0.0.0.0 --instances 2"],
    );
    example(
        "One question from the shell, or from a pipe:",
        &[
            "lingma-gw chat \"Reply with exactly: hello\"",
            "git diff | lingma-gw chat --system \"Review this diff\" -",
        ],
    );
    example(
        "Log in on a laptop, move the login to a server:",
        &[
            "lingma-gw login --no-browser",
            "lingma-gw export -o alice.bundle",
            "lingma-gw import alice.bundle        # on the server",
        ],
    );
    example(
        "Diagnose a setup, step by step:",
        &["lingma-gw probe", "lingma-gw probe --json > probe.json"],
    );
    example(
        "Completions and man pages for the current user (install.sh does both):",
        &[
            "lingma-gw completions bash > ~/.local/share/bash-completion/completions/lingma-gw",
            "lingma-gw man --out-dir ~/.local/share/man/man1",
        ],
    );
    roff.to_roff()
}

fn see_also(parent: Option<&str>) -> String {
    let mut roff = Roff::new();
    roff.control("SH", ["SEE ALSO"]);
    let mut refs = vec![bold(BIN), roman("(1)")];
    if let Some(p) = parent {
        refs.extend([roman(", "), bold(p), roman("(1)")]);
    }
    refs.extend([
        roman(". The README, "),
        italic("docs/login.md"),
        roman(" and "),
        italic("docs/simulator.md"),
        roman(" in the source tree."),
    ]);
    roff.text(refs);
    roff.to_roff()
}

pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    super::print_stdout(&completion_script(shell))
}

pub fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    if args.readme_table {
        return super::print_stdout(docs::readme_table().as_bytes());
    }
    if let Some(dir) = &args.out_dir {
        write_pages(dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    super::print_stdout(&man_page_for(&args.command)?.roff)
}

/// Writes every page into `dir` (created if missing), each atomically.
fn write_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for page in man_pages()? {
        let dest = dir.join(&page.file_name);
        let tmp = dir.join(format!(".{}.tmp", page.file_name));
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(&page.roff)?;
        f.flush()?;
        std::fs::rename(&tmp, &dest).with_context(|| format!("cannot write {}", dest.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_arms_are_relabelled_to_the_loops_spelling() {
        let broken = "    case \"${cmd},${i}\" in\n            lingma__gw,serve)\n                cmd=\"lingma__gw__subcmd__serve\"\n                ;;\n    esac\n    case \"${cmd}\" in\n        lingma__gw)\n            ;;\n        lingma__subcmd__gw__subcmd__serve)\n            ;;\n    esac\n";
        let fixed = fix_bash(broken, "lingma-gw");
        assert!(
            fixed.contains("        lingma__gw__subcmd__serve)\n"),
            "{fixed}"
        );
        assert!(!fixed.contains("lingma__subcmd__gw"));
        assert_eq!(fix_bash(&fixed, "lingma-gw"), fixed, "idempotent");
        assert_eq!(fix_bash(broken, "lingmagw"), broken);
    }

    #[test]
    fn fish_treats_a_failed_parse_as_the_top_level() {
        let script = String::from_utf8(completion_script(clap_complete::Shell::Fish)).unwrap();
        let f = script
            .split("function __fish_lingma_gw_needs_command")
            .nth(1)
            .expect("the function clap_complete writes");
        let body = &f[..f.find("\nend").unwrap()];
        assert!(body.contains("or return 0"), "{body}");
    }

    #[test]
    fn every_bash_arm_is_a_state_the_loop_reaches() {
        let script = String::from_utf8(completion_script(clap_complete::Shell::Bash)).unwrap();
        let (walk, arms) = script.split_once("    case \"${cmd}\" in").unwrap();
        let states: std::collections::HashSet<&str> = walk
            .lines()
            .filter_map(|l| l.trim().strip_prefix("cmd=\""))
            .map(|l| l.trim_end_matches('"'))
            .collect();
        let labels: Vec<&str> = arms
            .lines()
            .filter(|l| l.starts_with("        ") && !l.starts_with("         "))
            .filter_map(|l| l.trim().strip_suffix(')'))
            .collect();
        assert!(labels.len() > 10, "{labels:?}");
        for label in labels {
            assert!(states.contains(label), "arm {label} is never reached");
        }
    }

    #[test]
    fn every_page_a_page_cites_exists() {
        let pages = man_pages().unwrap();
        let names: std::collections::HashSet<String> =
            pages.iter().map(|p| p.file_name.clone()).collect();
        assert!(names.contains("lingma-gw.1") && names.contains("lingma-gw-serve.1"));
        assert!(
            names.contains("lingma-gw-session-export.1") && names.contains("lingma-gw-export.1")
        );
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        for p in &pages {
            let text = String::from_utf8_lossy(&p.roff).replace("\\-", "-");
            for cited in text
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter_map(|w| {
                    let w = w.trim_start_matches("\\fB").replace("\\fR", "");
                    w.strip_suffix("(1)").map(str::to_string)
                })
            {
                assert!(
                    names.contains(&format!("{cited}.1")),
                    "{} cites {cited}(1), which is not generated",
                    p.file_name
                );
            }
        }
    }
}
