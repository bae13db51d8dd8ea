//! Real clients against a gateway: the Python SDK scripts of `tests/python/` and the coding-agent
//! CLIs that `scripts/setup-test-deps.sh` installs from npm into `.agent-clients/`. A missing
//! package fails the test with what to run: a skipped client test is not a passing one.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::gateway::Gateway;

const REQUIREMENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/requirements.txt");
const PYTHON_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python");
/// Where the setup script installs the agent CLIs.
pub const AGENT_CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.agent-clients");

/// Runs a command to completion with a deadline; on timeout the child is killed and reaped.
/// Returns the output and whether it timed out.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> (Output, bool) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
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
    let (status, timed_out) = match super::wait_child(&mut child, timeout) {
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

/// Fails (never skips) when python3 cannot import `modules`.
pub fn require_python(modules: &[&str]) {
    let code = modules
        .iter()
        .map(|m| format!("import {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    let out = Command::new("python3")
        .args(["-c", &code])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); install Python 3"));
    assert!(
        out.status.success(),
        "python3 cannot import {modules:?}: install the test dependencies with \
         `python3 -m pip install -r {REQUIREMENTS}`\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `tests/python/<script>` against `gw` (`--base-url`, `--api-key`, `--work-dir`) and asserts
/// that it reported every one of its checks passed. Returns its stdout.
pub fn run_python_checks(script: &str, gw: &Gateway, api_key: &str, timeout: Duration) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg(Path::new(PYTHON_DIR).join(script))
        .arg("--base-url")
        .arg(&gw.base)
        .args(["--api-key", api_key])
        .arg("--work-dir")
        .arg(&gw.work_dir)
        .env("PYTHONUNBUFFERED", "1");
    for var in [
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    let (out, timed_out) = run_with_timeout(cmd, timeout);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        !(out.status.code() == Some(2) && stderr.contains("cannot import")),
        "{script}: a Python package is missing: `python3 -m pip install -r {REQUIREMENTS}`\n{stderr}"
    );
    assert!(
        !timed_out && out.status.success(),
        "{script} {} ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- gateway stderr ---\n{}",
        if timed_out { "timed out" } else { "failed" },
        out.status,
        gw.stderr()
    );
    // `N/M checks passed`, alone or as `name: N/M checks passed; verdict` (openai_client.py).
    let summary = stdout
        .lines()
        .rev()
        .find_map(|l| {
            let (head, _) = l.split_once(" checks passed")?;
            head.rsplit(' ').next().map(str::to_string)
        })
        .unwrap_or_default();
    let counts: Vec<&str> = summary.split('/').collect();
    assert!(
        counts.len() == 2 && counts[0] == counts[1] && counts[0] != "0",
        "{script} exited 0 without reporting all checks passed:\n{stdout}"
    );
    stdout
}

/// The path of an agent CLI installed by the setup script (`claude`, `codex`, `qwen`).
pub fn agent_cli(name: &str) -> PathBuf {
    let path = Path::new(AGENT_CLIENTS)
        .join("node_modules/.bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is not installed: run scripts/setup-test-deps.sh (it installs the agent CLIs from npm \
         into {AGENT_CLIENTS})",
        path.display()
    );
    path
}

/// A scratch home and project for one agent run, under the target dir (Codex refuses a
/// `CODEX_HOME` under /tmp).
pub struct AgentSandbox {
    _dir: tempfile::TempDir,
    pub home: PathBuf,
    pub project: PathBuf,
}

impl AgentSandbox {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("agent-{name}-"))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let home = dir.path().join("home");
        let project = dir.path().join("project");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&project).unwrap();
        Self {
            _dir: dir,
            home,
            project,
        }
    }

    /// A command for `program` with nothing of this process's environment but `PATH`, a `HOME`
    /// of its own, and the project as its working directory.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("TERM", "dumb")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .current_dir(&self.project);
        cmd
    }
}

/// The questions (bytes) of the conversation whose first question contains `marker`, in the
/// order the simulator received them, with their session id.
pub fn conversation_questions(gw: &Gateway, marker: &str) -> (String, Vec<String>) {
    let asks = super::asks(&gw.instance_dir("inst-0"));
    let first = asks
        .iter()
        .find(|a| {
            a["questionText"]
                .as_str()
                .is_some_and(|q| q.contains(marker))
        })
        .unwrap_or_else(|| panic!("no question contains {marker:?}"));
    let session = first["sessionId"].as_str().unwrap_or_default().to_string();
    let questions = asks
        .iter()
        .filter(|a| a["sessionId"] == session.as_str())
        .filter_map(|a| a["questionText"].as_str().map(str::to_string))
        .collect();
    (session, questions)
}
