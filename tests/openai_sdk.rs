//! The official `openai` Python SDK, a client nobody here wrote, against a real `serve --sim`
//! gateway: models, a chat, a stream with usage, a wrong key, a 429 under backpressure and session
//! reuse (checked in the simulator's own record). The checks live in
//! `tests/python/openai_client.py`; this test owns the gateway's life and its clean shutdown.
//!
//! Needs `python3` with the packages of `tests/requirements.txt`. Their absence fails the test: a
//! skipped client test is not a passing one.

mod common;

use std::path::Path;
use std::time::Duration;

use common::Gateway;

const API_KEY: &str = "sk-test";
/// The script's own checks take a few seconds (one is a held 3 s stream); this only bounds a hang.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// Live (non-zombie) `lingma-gw sim` processes whose arguments name `work_dir`, from /proc.
fn sims_for(work_dir: &Path) -> Vec<(u32, String)> {
    let wd = work_dir.to_string_lossy().to_string();
    let mut out = Vec::new();
    for pid in common::processes_matching(&wd) {
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_sim = args.iter().skip(1).any(|a| a == "sim");
        if is_sim && args.iter().any(|a| a.contains(&wd)) {
            out.push((pid, args.join(" ")));
        }
    }
    out
}

#[test]
fn openai_python_sdk_against_the_gateway() {
    common::clients::require_python(&["openai"]);

    let mut gw = Gateway::start(
        &[
            "--api-key",
            API_KEY,
            "--max-in-flight",
            "1",
            "--queue-timeout",
            "0",
        ],
        &[],
    );
    let work_dir = gw.work_dir.clone();
    assert!(
        !sims_for(&work_dir).is_empty(),
        "no `lingma-gw sim` process for {} while the gateway runs (is the /proc scan right?)",
        work_dir.display()
    );

    let stdout =
        common::clients::run_python_checks("openai_client.py", &gw, API_KEY, SCRIPT_TIMEOUT);
    assert!(
        stdout.contains("6/6 checks passed"),
        "openai_client.py exited 0 without reporting all checks passed:\n{stdout}"
    );

    // A clean shutdown: SIGTERM -> exit 0, with the simulator it spawned gone too.
    common::signal(gw.child.id(), "TERM");
    let status = gw.wait_exit(Duration::from_secs(30));
    let Some(status) = status else {
        panic!(
            "the gateway did not exit within 30 s of SIGTERM; stderr:\n{}",
            gw.stderr()
        );
    };
    assert!(
        status.success(),
        "the gateway exited with {status} after SIGTERM, want 0; stderr:\n{}",
        gw.stderr()
    );
    let left = sims_for(&work_dir);
    for (pid, _) in &left {
        common::signal(*pid, "KILL");
    }
    assert!(
        left.is_empty(),
        "`lingma-gw sim` processes for {} outlived the gateway: {left:#?}",
        work_dir.display()
    );
}
