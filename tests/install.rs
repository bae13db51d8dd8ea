//! `install.sh --prefix TMP`: binary, completions and man page in place, idempotent, undone by
//! `--uninstall`.

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
    let stdout = String::from_utf8_lossy(&install(&prefix, &["--uninstall"]).stdout).into_owned();
    assert!(stdout.contains("removed"), "{stdout}");
    assert!(!bin.exists());
    for f in files {
        assert!(!prefix.join(f).exists(), "{f} left behind");
    }
    let bad = install(&prefix, &["--frobnicate"]);
    assert_eq!(bad.status.code(), Some(2));
}
