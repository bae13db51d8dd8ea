//! The committed completions and man page must match what the binary generates from its one
//! clap tree. On drift, run `scripts/gen-docs.sh` and commit the result.

mod common;

use std::process::Command;

fn generated(args: &[&str]) -> String {
    let out = Command::new(common::BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn committed(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/gen-docs.sh", p.display()))
}

#[test]
fn completions_and_man_page_are_up_to_date() {
    for (args, path) in [
        (&["completions", "bash"][..], "completions/lingma-gw.bash"),
        (&["completions", "zsh"][..], "completions/_lingma-gw"),
        (&["completions", "fish"][..], "completions/lingma-gw.fish"),
        (&["man"][..], "man/lingma-gw.1"),
    ] {
        assert!(
            generated(args) == committed(path),
            "{path} is out of date: run scripts/gen-docs.sh and commit the result"
        );
    }
}

#[test]
fn man_page_documents_every_subcommand_and_flag() {
    let man = generated(&["man"]);
    for needle in [
        "LINGMA-GW SERVE",
        "LINGMA-GW CHAT",
        "LINGMA-GW SIM START",
        "\\-\\-max\\-in\\-flight",
        "\\-\\-lingma\\-bin",
    ] {
        assert!(man.contains(needle), "man page lacks {needle}");
    }
    let bash = generated(&["completions", "bash"]);
    assert!(bash.contains("--session-reuse") && bash.contains("serve"));
}

#[test]
fn unknown_shell_is_a_usage_error() {
    let out = Command::new(common::BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
