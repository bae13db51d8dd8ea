//! The official `openai` Python SDK, a client nobody here wrote, against a real `serve --sim`
//! gateway: models, a chat, a stream with usage, a wrong key, a 429 under backpressure and session
//! reuse (checked in the simulator's own record). The checks live in
//! `tests/python/openai_client.py`; this test owns the gateway's life and its clean shutdown.
//!
//! Needs `python3` with the packages of `tests/requirements.txt`. Their absence fails the test: a
//! skipped client test is not a passing one.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::Gateway;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/openai_client.py");
const REQUIREMENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/requirements.txt");
const API_KEY: &str = "sk-test";
/// The script's own checks take a few seconds (one is a held 3 s stream); this only bounds a hang.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn install_hint() -> String {
    format!("install the Python test dependencies with `python3 -m pip install -r {REQUIREMENTS}`")
}

/// Fails (never skips) when python3 or the openai package is missing.
fn require_python_openai() {
    let out = Command::new("python3")
        .args(["-c", "import openai; print(openai.__version__)"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 ({e}): install Python 3, then {}",
                install_hint()
            )
        });
    assert!(
        out.status.success(),
        "the `openai` Python package is not importable by python3: {}\n{}",
        install_hint(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command to completion with a deadline; on timeout the child is killed and reaped.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> (Output, bool) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let (status, timed_out) = match common::wait_child(&mut child, timeout) {
        Some(status) => (status, false),
        None => {
            let _ = child.kill();
            (child.wait().unwrap(), true)
        }
    };
    let output = Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    };
    (output, timed_out)
}

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
    require_python_openai();

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

    let mut cmd = Command::new("python3");
    cmd.arg(SCRIPT)
        .arg("--base-url")
        .arg(&gw.base)
        .args(["--api-key", API_KEY])
        .arg("--work-dir")
        .arg(&work_dir)
        .env("PYTHONUNBUFFERED", "1")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_ORG_ID")
        .env_remove("OPENAI_PROJECT_ID");
    let (out, timed_out) = run_with_timeout(cmd, SCRIPT_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    if !stderr.is_empty() {
        eprintln!("{stderr}");
    }
    if out.status.code() == Some(2) && stderr.contains("cannot import") {
        panic!("{}", install_hint());
    }
    assert!(
        !timed_out && out.status.success(),
        "openai_client.py {} ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n\
         --- gateway stderr ---\n{}",
        if timed_out { "timed out" } else { "failed" },
        out.status,
        gw.stderr()
    );
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
