//! The completion scripts `lingma-gw completions SHELL` prints, loaded into the real shells:
//! bash (the function `complete -p lingma-gw` names, called with COMP_WORDS/COMP_CWORD as bash
//! calls it, reading COMPREPLY), zsh (compinit in an interactive zsh on a pseudo-terminal driven
//! through zpty; a Tab press, with `compadd` recording what it is given) and fish
//! (`complete -C`). Each must complete subcommands, flags and flag values. The shells come from
//! scripts/setup-test-deps.sh; a missing shell fails the test.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, output_within};

/// A shell's script in a directory of its own (zsh wants a directory on `$fpath`).
struct Script {
    dir: tempfile::TempDir,
    file: PathBuf,
}

fn script(shell: &str, file_name: &str) -> Script {
    let out = Command::new(BIN)
        .args(["completions", shell])
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(file_name);
    std::fs::write(&file, &out.stdout).unwrap();
    Script { dir, file }
}

fn run_shell(mut cmd: Command, what: &str) -> String {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what} ({e}): run scripts/setup-test-deps.sh"));
    let out = output_within(child, Duration::from_secs(90));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The words a user has typed (the last one being completed, possibly empty) -> what bash offers.
fn bash(script: &Script, words: &[&str]) -> BTreeSet<String> {
    let words: Vec<String> = words.iter().map(|w| shell_quote(w)).collect();
    let program = format!(
        r#"source {file}
spec=$(complete -p lingma-gw) || exit 3
fn=$(printf '%s\n' "$spec" | sed -E 's/.*-F ([^ ]+).*/\1/')
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
COMPREPLY=()
"$fn" lingma-gw "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        file = shell_quote(script.file.to_str().unwrap()),
        words = words.join(" "),
    );
    let mut cmd = Command::new("bash");
    cmd.args(["--norc", "--noprofile", "-c", &program])
        .current_dir(script.dir.path());
    lines(&run_shell(cmd, "bash"))
}

/// The line typed before Tab -> what zsh's completion adds. One interactive zsh per line, on a
/// pseudo-terminal (zpty); `compadd` is wrapped to print every match it is given, and a hook that
/// runs after each completion prints COMPDONE, which is what the driver waits for.
fn zsh(script: &Script, line: &str) -> BTreeSet<String> {
    let home = script.dir.path();
    let zshrc = format!(
        r#"PS1='READY%% '
fpath=({dir} $fpath)
autoload -Uz compinit && compinit -u -d {dump}
compadd() {{
  if (( ${{@[(I)-[OAD]*]}} )); then builtin compadd "$@"; return; fi
  local -a __m
  builtin compadd -O __m "$@"
  (( $#__m )) && print -r -- ${{(@)__m/#/$'\nCAND:'}} >&2
  builtin compadd "$@"
}}
_lingma_gw_test_done() {{ print -r -- $'\nCOMPDONE' >&2 }}
comppostfuncs=(_lingma_gw_test_done)
"#,
        dir = shell_quote(script.dir.path().to_str().unwrap()),
        dump = shell_quote(home.join(".zcompdump").to_str().unwrap()),
    );
    std::fs::write(home.join(".zshrc"), zshrc).unwrap();
    let driver = format!(
        r#"zmodload zsh/zpty
zpty -b c env TERM=xterm HOME={home} ZDOTDIR={home} zsh -i
zpty -r c out '*READY% '
zpty -n -w c {line}$'\t'
zpty -r c out '*COMPDONE*'
print -r -- "$out"
zpty -d c
"#,
        home = shell_quote(home.to_str().unwrap()),
        line = shell_quote(line),
    );
    let mut cmd = Command::new("zsh");
    cmd.args(["-f", "-c", &driver]).current_dir(home);
    let out = run_shell(cmd, "zsh");
    out.lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("CAND:"))
        .map(|c| c.trim().to_string())
        .collect()
}

/// The line typed before Tab -> what fish offers (`complete -C`).
fn fish(script: &Script, line: &str) -> BTreeSet<String> {
    let program = format!(
        "source {}; complete -C {}",
        shell_quote(script.file.to_str().unwrap()),
        shell_quote(line)
    );
    let home = script.dir.path();
    let mut cmd = Command::new("fish");
    cmd.args(["--no-config", "-c", &program])
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("XDG_DATA_HOME", home)
        .current_dir(home);
    lines(&run_shell(cmd, "fish"))
        .into_iter()
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .collect()
}

fn lines(s: &str) -> BTreeSet<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn has_all(got: &BTreeSet<String>, want: &[&str], what: &str) {
    for w in want {
        assert!(got.contains(*w), "{what}: {w} missing from {got:?}");
    }
}

/// What every shell must do, as (typed line, must offer, exactly these?).
const CASES: &[(&str, &[&str], bool)] = &[
    ("lingma-gw sess", &["session"], true),
    (
        "lingma-gw ",
        &["serve", "chat", "session", "export", "man"],
        false,
    ),
    (
        "lingma-gw serve --",
        &[
            "--port",
            "--log-format",
            "--session-reuse",
            "--socket-port",
            "--sim",
        ],
        false,
    ),
    ("lingma-gw serve --log-format ", &["text", "json"], true),
    ("lingma-gw --log-format ", &["text", "json"], true),
    ("lingma-gw serve --ask-mode ", &["chat", "agent"], true),
    (
        "lingma-gw session export --",
        &["--output", "--base64", "--instance"],
        false,
    ),
    ("lingma-gw session ", &["export", "import"], false),
    ("lingma-gw completions ", &["bash", "zsh", "fish"], false),
];

fn check(shell: &str, complete: impl Fn(&str) -> BTreeSet<String>) {
    for (line, want, exact) in CASES {
        let got = complete(line);
        let what = format!("{shell}: {line:?}<Tab>");
        if *exact {
            assert_eq!(got, set(want), "{what}");
        } else {
            has_all(&got, want, &what);
        }
    }
}

#[test]
fn bash_completes_subcommands_flags_and_values() {
    let s = script("bash", "lingma-gw");
    check("bash", |line| {
        let mut words: Vec<&str> = line.split(' ').collect();
        if line.ends_with(' ') {
            words.pop();
            words.push("");
        }
        bash(&s, &words)
    });
}

#[test]
fn zsh_completes_subcommands_flags_and_values() {
    let s = script("zsh", "_lingma-gw");
    check("zsh", |line| zsh(&s, line));
}

#[test]
fn fish_completes_subcommands_flags_and_values() {
    let s = script("fish", "lingma-gw.fish");
    check("fish", |line| fish(&s, line));
}
