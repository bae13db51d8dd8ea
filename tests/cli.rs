//! The terminal commands (`models`, `chat`, `probe`) against the simulator, as a shell user runs
//! them: output, exit codes, stdin, Ctrl-C, broken pipes, and attaching to a running `serve`.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{BIN, Gateway, fast_sim_env, processes_matching, signal, wait_until};
use serde_json::Value;

fn cmd(work_dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .arg("--sim")
        .arg("--work-dir")
        .arg(work_dir)
        .envs(fast_sim_env())
        .stdin(Stdio::null());
    c
}

fn run(work_dir: &Path, args: &[&str]) -> Output {
    cmd(work_dir, args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn no_sim_left(work_dir: &Path) {
    let needle = format!("--workDir={}", work_dir.display());
    assert!(
        wait_until(Duration::from_secs(5), || processes_matching(&needle)
            .is_empty()),
        "a temporary instance was left running"
    );
}

#[test]
fn models_as_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["models"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let header = table.lines().next().unwrap();
    for col in ["KEY", "NAME", "SCENES", "REASONING", "VISION", "DEFAULT"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("dashscope_qwen3_coder") && l.contains("Qwen3-Coder"))
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("auto") && l.trim_end().ends_with("yes"))
    );
    let out = run(dir.path(), &["models", "--json"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let models = v.as_array().unwrap();
    assert!(
        models
            .iter()
            .any(|m| m["key"] == "dashscope_qwen_plus_20250428_thinking"
                && m["is_reasoning"] == true)
    );
    no_sim_left(dir.path());
}

#[test]
fn chat_streams_the_answer_and_reads_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["chat", "Reply with exactly: hello there"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello there\n");
    for args in [&["chat", "-"][..], &["chat"][..]] {
        let mut child = cmd(dir.path(), args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"Reply with exactly: from stdin")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert_eq!(text(&out.stdout), "from stdin\n");
    }
    let out = run(
        dir.path(),
        &["chat", "--system", "be terse", "--model", "Qwen-Max", "hi"],
    );
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "echo: [System]\nbe terse\n\n[User]\nhi\n"
    );
    let asks = common::asks(&dir.path().join("inst-0"));
    assert_eq!(
        asks.last().unwrap()["extra"]["modelConfig"]["key"],
        "dashscope_qwen_max_latest"
    );
    no_sim_left(dir.path());
}

#[test]
fn chat_json_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["chat", "--json", "Reply with exactly: 42"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["text"], "42");
    assert_eq!(v["model"], "auto");
    assert!(!v["session_id"].as_str().unwrap().is_empty());
    assert!(v["latency_ms"].as_u64().is_some());
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn chat_reasoning_goes_to_stderr_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "chat",
        "--model",
        "Qwen-Plus-Thinking",
        "Reply with exactly: ok",
    ];
    let out = run(dir.path(), &args);
    assert_eq!(text(&out.stdout), "ok\n");
    assert!(text(&out.stderr).trim().is_empty(), "{}", text(&out.stderr));
    let mut with = args.to_vec();
    with.insert(1, "--show-reasoning");
    let out = run(dir.path(), &with);
    assert_eq!(text(&out.stdout), "ok\n");
    assert!(!text(&out.stderr).trim().is_empty());
}

#[test]
fn usage_errors_exit_2_and_failures_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["chat", "--model", "no-such-model", "hi"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("dashscope_qwen3_coder"),
        "lists the models"
    );
    let out = run(dir.path(), &["chat", "   "]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(dir.path(), &["chat", "--instance", "../escape", "hi"]);
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["chat", "--lingma-bin", "/no/such/Lingma", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/no/such/Lingma"));
    let out = cmd(dir.path(), &["chat", "--instance", "fresh", "hi"])
        .env("LINGMA_SIM_LOGGED_OUT", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // The hint repeats the setup, so pasting it logs in this instance, not another one.
    let want = format!(
        "run `lingma-gw login --sim --work-dir {} --instance fresh`",
        dir.path().display()
    );
    assert!(text(&out.stderr).contains(&want), "{}", text(&out.stderr));
    let out = cmd(dir.path(), &["chat", "[[sim:error=500]] hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    no_sim_left(dir.path());
}

#[test]
fn ctrl_c_mid_answer_stops_upstream_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = cmd(dir.path(), &["chat", "[[sim:len=3000,delay=5]] long"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 8];
    stdout.read_exact(&mut first).unwrap();
    signal(child.id(), "INT");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        !common::stop_requests(&dir.path().join("inst-0")).is_empty(),
        "the stop was seen by the simulator"
    );
    no_sim_left(dir.path());
}

#[test]
fn a_closed_pipe_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "set -o pipefail; LINGMA_SIM_STARTUP_DELAY_MS=0 '{BIN}' chat --sim --work-dir '{}' '[[sim:len=4000,delay=1]] x' 2>err.txt | head -c 10 >/dev/null",
        dir.path().display()
    );
    let status = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "lingma-gw must exit 0 on a closed pipe");
    let err = std::fs::read_to_string(dir.path().join("err.txt")).unwrap();
    assert!(!err.to_lowercase().contains("error"), "{err}");
    no_sim_left(dir.path());
}

#[test]
fn probe_reports_each_step() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["probe"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let report = text(&out.stdout);
    for step in [
        "binary",
        "work dir",
        "instance",
        "initialize",
        "dialect",
        "login",
        "models",
        "chat",
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(step)),
            "{step} in\n{report}"
        );
    }
    let out = run(dir.path(), &["probe", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["steps"].as_array().unwrap().len(), 8);
    // The simulators here speak the test dialect; `both` is detected as ACP.
    let expected = common::test_dialect().replace("both", "acp");
    assert_eq!(v["dialect"], expected.as_str());
    // A logged-out instance fails the login step, with a hint, and exits 1.
    let out = cmd(dir.path(), &["probe", "--json", "--instance", "out"])
        .env("LINGMA_SIM_LOGGED_OUT", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let login = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "login")
        .unwrap();
    assert_eq!(login["ok"], false);
    let hint = login["hint"].as_str().unwrap();
    assert!(
        hint.contains("lingma-gw login --sim --work-dir") && hint.contains("--instance out`"),
        "{hint}"
    );
    // No binary at all.
    let out = Command::new(BIN)
        .args(["probe", "--lingma-bin", "/no/such/Lingma"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("FAIL"));
    no_sim_left(dir.path());
}

#[test]
fn commands_attach_to_a_running_serve() {
    let g = Gateway::start(&[], &[]);
    // Simulators get `--workDir=<dir>/<instance>`; serve itself has `--work-dir <dir>`.
    let needle = format!("--workDir={}", g.work_dir.display());
    assert_eq!(
        processes_matching(&needle).len(),
        1,
        "serve runs one simulator"
    );
    let mut child = Command::new(BIN)
        .args(["chat", "--sim", "--work-dir"])
        .arg(&g.work_dir)
        .arg("[[sim:len=300,delay=5]] attach")
        .envs(fast_sim_env())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 4];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(
        processes_matching(&needle).len(),
        1,
        "chat attached instead of starting a second Lingma"
    );
    assert!(child.wait().unwrap().success());
    let out = Command::new(BIN)
        .args(["probe", "--sim", "--work-dir"])
        .arg(&g.work_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("attached to the running instance inst-0"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(processes_matching(&needle).len(), 1);
}

#[test]
fn a_killed_command_or_gateway_leaves_no_lingma_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = cmd(dir.path(), &["chat", "[[sim:len=3000,delay=5]] long"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 8];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    signal(child.id(), "KILL");
    let _ = child.wait();
    no_sim_left(dir.path());

    let mut g = Gateway::start(&["--instances", "2"], &[]);
    let needle = format!("--workDir={}", g.work_dir.display());
    assert_eq!(processes_matching(&needle).len(), 2);
    signal(g.child.id(), "KILL");
    let _ = g.child.wait();
    assert!(
        wait_until(Duration::from_secs(5), || processes_matching(&needle)
            .is_empty()),
        "the kernel stops the children of a killed gateway"
    );
}

/// A hint's command, as printed between backticks after `run `.
fn hinted_command(hint: &str) -> String {
    let start = hint.find('`').expect("a command in backticks") + 1;
    let len = hint[start..].find('`').unwrap();
    hint[start..start + len].to_string()
}

/// Runs a pasted command in bash, with this build's lingma-gw first on PATH.
fn paste(command: &str) -> Command {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(command)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .envs(fast_sim_env())
        .stdin(Stdio::null());
    c
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} step in {report}"))
}

#[test]
fn probe_login_hint_pasted_logs_in_the_same_instance() {
    let dir = tempfile::tempdir().unwrap();
    let out = cmd(dir.path(), &["probe", "--json", "--instance", "out"])
        .env("LINGMA_SIM_LOGGED_OUT", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hint = step(&report, "login")["hint"].as_str().unwrap().to_string();
    let login = hinted_command(&hint);
    assert_eq!(
        login,
        format!(
            "lingma-gw login --sim --work-dir {} --instance out",
            dir.path().display()
        )
    );
    // Pasted as is (plus what a remote user adds), it logs in instance `out` of this work dir.
    let mut child = paste(&format!("{login} --no-browser --timeout 60"))
        .env("LINGMA_SIM_LOGGED_OUT", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut url,
    )
    .unwrap();
    let callback = common::callback_url_for(url.trim(), "demo@example.com", "demo-password");
    writeln!(child.stdin.take().unwrap(), "{callback}").unwrap();
    let done = common::output_within(child, Duration::from_secs(60));
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert!(text(&done.stderr).contains("Logged in as demo (instance out)"));
    let out = cmd(dir.path(), &["probe", "--json", "--instance", "out"])
        .env("LINGMA_SIM_LOGGED_OUT", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stdout));
    no_sim_left(dir.path());
}

#[test]
fn a_binary_that_fails_to_start_is_reported_with_its_output_not_a_missing_log() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("Lingma");
    std::fs::write(
        &fake,
        "#!/bin/sh\ncase \"$1\" in version) echo 2.11.1 ;; *) echo 'boom: libfoo.so.1 is missing' >&2; exit 3 ;; esac\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let work = dir.path().join("w");
    let out = Command::new(BIN)
        .args([
            "probe",
            "--json",
            "--lingma-bin",
            fake.to_str().unwrap(),
            "--work-dir",
        ])
        .arg(&work)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(step(&report, "binary")["ok"], true);
    let instance = step(&report, "instance");
    assert_eq!(instance["ok"], false);
    let detail = instance["detail"].as_str().unwrap();
    assert!(detail.contains("boom: libfoo.so.1 is missing"), "{detail}");
    assert!(!work.join("inst-0/logs/lingma.log").exists());
    let hint = instance["hint"].as_str().unwrap();
    assert!(
        !hint.contains("lingma.log") && !detail.contains("lingma.log"),
        "{hint}"
    );
    // The hint's command, pasted, shows Lingma's own output.
    let probe = hinted_command(hint);
    assert_eq!(
        probe,
        format!(
            "lingma-gw probe --lingma-bin {} --work-dir {} --instance inst-0 -v",
            fake.display(),
            work.display()
        )
    );
    let out = paste(&probe).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("FAIL  instance"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("boom: libfoo.so.1 is missing"),
        "{}",
        text(&out.stderr)
    );
}
