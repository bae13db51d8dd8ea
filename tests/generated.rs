//! What is generated from the clap tree and the settings table must match what is committed: the
//! completions, every man page (no page missing, none left over) and the README's settings table.
//! On drift, run `scripts/gen-docs.sh` and commit the result.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use lingma_gw::settings::table::SETTINGS;

fn generated(args: &[&str]) -> String {
    let out = Command::new(common::BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn committed(path: &str) -> String {
    let p = root().join(path);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/gen-docs.sh", p.display()))
}

fn pages_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".1"))
        .collect()
}

#[test]
fn completions_and_man_pages_are_up_to_date() {
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
    let dir = tempfile::tempdir().unwrap();
    generated(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    let fresh = pages_in(dir.path());
    let kept = pages_in(&root().join("man"));
    assert_eq!(
        fresh, kept,
        "man/ has other pages than the binary writes: run scripts/gen-docs.sh"
    );
    for page in &fresh {
        let want = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(
            want == committed(&format!("man/{page}")),
            "man/{page} is out of date: run scripts/gen-docs.sh and commit the result"
        );
    }
    // `man serve` prints the page --out-dir writes.
    assert_eq!(
        generated(&["man", "session", "export"]),
        committed("man/lingma-gw-session-export.1")
    );
}

#[test]
fn the_readme_settings_table_is_the_settings_table() {
    let table = generated(&["man", "--readme-table"]);
    let readme = committed("README.md");
    let begin = table.lines().next().unwrap();
    let end = table.lines().last().unwrap();
    let start = readme
        .find(begin)
        .expect("README.md has the settings-table begin marker");
    let stop = readme[start..]
        .find(end)
        .map(|i| start + i + end.len() + 1)
        .expect("README.md has the settings-table end marker");
    assert!(
        readme[start..stop] == table,
        "the README's settings table is out of date: run scripts/gen-docs.sh"
    );
}

/// "Every setting appears in --help or the man page's ENVIRONMENT section, and in the README."
#[test]
fn every_setting_is_documented_where_users_look() {
    let readme = committed("README.md");
    let man = generated(&["man"]).replace("\\-", "-");
    let environment = &man[man.find(".SH ENVIRONMENT").expect("an ENVIRONMENT section")..];
    for s in SETTINGS {
        for env in s.env {
            assert!(readme.contains(&format!("`{env}`")), "README lacks {env}");
            assert!(environment.contains(env), "ENVIRONMENT lacks {env}");
        }
        if let Some(flag) = s.flag {
            let help = [
                &["serve", "--help"][..],
                &["login", "--help"],
                &["chat", "--help"],
            ]
            .iter()
            .map(|args| generated(args))
            .collect::<Vec<_>>()
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
            assert!(
                help.contains(&format!("--{flag}")),
                "--{flag} not in --help"
            );
            assert!(
                help.contains(&format!("[env: {}", s.env[0])),
                "--help does not name {}",
                s.env[0]
            );
        }
    }
    for section in [
        ".SH \"EXIT STATUS\"",
        ".SH FILES",
        ".SH EXAMPLES",
        ".SH SUBCOMMANDS",
    ] {
        assert!(man.contains(section), "the main page lacks {section}");
    }
    assert!(man.contains("lingma-gw.instance.json") && man.contains("config.toml"));
}

#[test]
fn man_pages_document_every_subcommand_and_flag() {
    let serve = generated(&["man", "serve"]);
    for needle in [
        "\\-\\-max\\-in\\-flight",
        "\\-\\-lingma\\-bin",
        "GATEWAY_PORT",
    ] {
        assert!(serve.contains(needle), "lingma-gw-serve(1) lacks {needle}");
    }
    let main = generated(&["man"]);
    for sub in ["serve", "chat", "export", "session", "sim"] {
        assert!(
            main.contains(&format!("lingma\\-gw\\-{sub}(1)")),
            "the main page lists no lingma-gw-{sub}(1)"
        );
    }
    let bad = Command::new(common::BIN)
        .args(["man", "frobnicate"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("pages exist for"));
}

#[test]
fn unknown_shell_is_a_usage_error() {
    let out = Command::new(common::BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
