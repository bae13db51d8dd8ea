//! `install.sh --prefix TMP`: binary, completions and man pages in place, idempotent, undone by
//! `--uninstall`; every installed page renders with `man -l` and every page it cites is installed.

use std::path::Path;
use std::process::Command;

fn install(prefix: &Path, extra: &[&str]) -> std::process::Output {
    let root = env!("CARGO_MANIFEST_DIR");
    Command::new("bash")
        .arg(Path::new(root).join("install.sh"))
        .arg("--debug")
        .arg("--prefix")
        .arg(prefix)
        .args(extra)
        // Reuse the test build's artifacts instead of building from scratch.
        .env("CARGO_TARGET_DIR", Path::new(root).join("target"))
        .output()
        .unwrap()
}

#[test]
fn install_is_idempotent_and_uninstall_undoes_it() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("p");
    for _ in 0..2 {
        let out = install(&prefix, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bin = prefix.join("bin/lingma-gw");
    let v = Command::new(&bin).arg("--version").output().unwrap();
    assert!(v.status.success());
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("lingma-gw {}", env!("CARGO_PKG_VERSION"))
    );
    let files = [
        "share/bash-completion/completions/lingma-gw",
        "share/zsh/site-functions/_lingma-gw",
        "share/fish/vendor_completions.d/lingma-gw.fish",
        "share/man/man1/lingma-gw.1",
        "share/man/man1/lingma-gw-serve.1",
        "share/man/man1/lingma-gw-session-export.1",
        "share/man/man1/lingma-gw-export.1",
    ];
    for f in files {
        let p = prefix.join(f);
        assert!(
            std::fs::metadata(&p)
                .map(|m| m.len() > 100)
                .unwrap_or(false),
            "{f} missing or empty"
        );
    }
    let man_dir = prefix.join("share/man/man1");
    check_man_pages(&man_dir);
    // A page an older version installed and this one no longer has is removed on reinstall.
    std::fs::write(man_dir.join("lingma-gw-gone.1"), ".TH gone 1\n").unwrap();
    assert!(install(&prefix, &[]).status.success());
    assert!(!man_dir.join("lingma-gw-gone.1").exists());

    let stdout = String::from_utf8_lossy(&install(&prefix, &["--uninstall"]).stdout).into_owned();
    assert!(stdout.contains("removed"), "{stdout}");
    assert!(!bin.exists());
    for f in files {
        assert!(!prefix.join(f).exists(), "{f} left behind");
    }
    let left: Vec<_> = std::fs::read_dir(&man_dir).unwrap().collect();
    assert!(left.is_empty(), "man pages left behind: {left:?}");
    let bad = install(&prefix, &["--frobnicate"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// The shipped unit with only its ExecStart binary replaced by `bin`.
fn shipped_unit_with(unit: &str, bin: &Path) -> String {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(unit)).unwrap();
    shipped
        .lines()
        .map(|l| match l.strip_prefix("ExecStart=") {
            Some(cmd) => format!(
                "ExecStart={} {}\n",
                bin.display(),
                cmd.split_once(' ').unwrap().1
            ),
            None => format!("{l}\n"),
        })
        .collect()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn systemd_user_install_puts_the_unit_and_env_file_in_place_and_keeps_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let config = dir.path().join("config");
    let run = |extra: &[&str]| {
        let root = env!("CARGO_MANIFEST_DIR");
        let out = Command::new("bash")
            .arg(Path::new(root).join("install.sh"))
            .arg("--debug")
            .args(extra)
            .env("CARGO_TARGET_DIR", Path::new(root).join("target"))
            // cargo and rustup stay where they are; only the user's files move.
            .env("CARGO_HOME", home_of("CARGO_HOME", ".cargo"))
            .env("RUSTUP_HOME", home_of("RUSTUP_HOME", ".rustup"))
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["--systemd=user"]);
    let bin = home.join(".local/bin/lingma-gw");
    assert!(bin.is_file());
    let unit = config.join("systemd/user/lingma-gw.service");
    assert_eq!(
        std::fs::read_to_string(&unit).unwrap(),
        shipped_unit_with("deploy/systemd/user/lingma-gw.service", &bin)
    );
    let env_file = config.join("lingma-gw/lingma-gw.env");
    assert_eq!(mode(&env_file), 0o600, "the env file holds secrets");
    // A second install keeps the secrets someone wrote.
    std::fs::write(&env_file, "API_KEYS=sk-mine\n").unwrap();
    let out = run(&["--systemd=user"]);
    assert!(out.contains("kept"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&env_file).unwrap(),
        "API_KEYS=sk-mine\n"
    );
    let out = run(&["--uninstall", "--systemd=user"]);
    assert!(!unit.exists() && !bin.exists(), "{out}");
    assert!(env_file.exists(), "uninstall must not delete the secrets");
}

#[test]
fn systemd_system_install_stages_into_a_destdir() {
    let dir = tempfile::tempdir().unwrap();
    let destdir = dir.path().join("stage");
    let out = install(
        Path::new("/usr/local"),
        &["--systemd=system", "--destdir", destdir.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(destdir.join("usr/local/bin/lingma-gw").is_file());
    // Paths inside the unit are the target machine's, not the staging directory's.
    assert_eq!(
        std::fs::read_to_string(destdir.join("etc/systemd/system/lingma-gw.service")).unwrap(),
        shipped_unit_with(
            "deploy/systemd/lingma-gw.service",
            Path::new("/usr/local/bin/lingma-gw")
        )
    );
    assert_eq!(mode(&destdir.join("etc/lingma-gw/lingma-gw.env")), 0o600);
    // No user is added to this machine: the installer says what to run on the target.
    assert!(stdout.contains("useradd --system"), "{stdout}");
    let bad = install(&dir.path().join("p"), &["--systemd=both"]);
    assert_eq!(bad.status.code(), Some(2));
}

fn home_of(var: &str, default: &str) -> std::path::PathBuf {
    std::env::var_os(var)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(default)
        })
}

/// Each page renders with `man -l` without a groff warning, and every `lingma-gw-NAME(1)` a page
/// cites is installed beside it (the SUBCOMMANDS sections cite one per subcommand).
fn check_man_pages(dir: &Path) {
    let pages: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(pages.len() > 10, "{pages:?}");
    for page in &pages {
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(dir.join(page))
            .env("MANWIDTH", "100")
            .env_remove("MAN_KEEP_FORMATTING")
            .output()
            .expect("man is installed (scripts/setup-test-deps.sh)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "man -l {page} failed");
        assert!(
            out.stderr.is_empty(),
            "man -l {page}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS"),
            "{page}:\n{text}"
        );
        for word in text.split(|c: char| c.is_whitespace() || c == ',' || c == '.') {
            if let Some(name) = word.strip_suffix("(1)") {
                assert!(
                    pages.contains(&format!("{name}.1")),
                    "{page} cites {name}(1), which is not installed"
                );
            }
        }
    }
    let main = Command::new("man")
        .arg("-l")
        .arg(dir.join("lingma-gw.1"))
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    let main = String::from_utf8_lossy(&main.stdout);
    for section in [
        "ENVIRONMENT",
        "EXIT STATUS",
        "FILES",
        "EXAMPLES",
        "SUBCOMMANDS",
    ] {
        assert!(
            main.lines().any(|l| l == section),
            "lingma-gw(1) has no {section} section"
        );
    }
}
