//! Attaching to a Lingma that something else started (§12.3), as with an IDE's runtime: a
//! simulator started on its own by the test writes the discovery file (`--info-file`) or listens
//! on a Unix socket (`--ipc-socket`), and `chat`, `probe` and `serve` find it with `--attach`,
//! use it, and leave it running. An attached runtime whose process ends is `gone` and is picked
//! up again when the info file names a live one; bad and stale info files give errors that say
//! where discovery looked and why it refused each file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{BIN, Gateway, Sim, asks, fast_sim_env, output_within, wait_until_async};
use serde_json::{Value, json};

/// Where an IDE's Lingma leaves its info file under a search root.
fn info_path(root: &Path, name: &str) -> PathBuf {
    root.join("Lingma").join("SharedClientCache").join(name)
}

/// "The IDE's Lingma": a simulator started on its own, publishing its info file at `info`.
async fn ide_runtime(dialect: &str, info: &Path, extra: &[&str]) -> Sim {
    Sim::builder()
        .args(&["--no-delay", "--dialect", dialect])
        .args(&["--info-file", info.to_str().unwrap()])
        .args(extra)
        .start()
        .await
}

/// A terminal command of this binary, attaching through the search root `root`.
fn command(work_dir: &Path, root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .arg("--work-dir")
        .arg(work_dir)
        .envs(fast_sim_env())
        .env("LINGMA_ATTACH_SEARCH_DIRS", root)
        .env_remove("LINGMA_ATTACH")
        .env_remove("LINGMA_DIALECT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(work_dir: &Path, root: &Path, args: &[&str]) -> Output {
    output_within(
        command(work_dir, root, args).spawn().unwrap(),
        Duration::from_secs(30),
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn still_running(sim: &mut Sim) -> bool {
    matches!(sim.child.try_wait(), Ok(None))
}

#[tokio::test]
async fn chat_attach_auto_answers_through_a_runtime_found_by_its_info_file_and_leaves_it_running() {
    let root = tempfile::tempdir().unwrap();
    let info = info_path(root.path(), ".info.json");
    let mut sim = ide_runtime("acp", &info, &[]).await;
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&info).unwrap()).unwrap();
    assert_eq!(written["websocketPort"], sim.ws_port);
    assert_eq!(written["pid"], sim.pid());

    let work = tempfile::tempdir().unwrap();
    let out = run(
        work.path(),
        root.path(),
        &[
            "chat",
            "--attach",
            "auto",
            "--json",
            "Reply with exactly: from the IDE",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["text"], "from the IDE");
    assert_eq!(v["dialect"], "acp");
    assert!(v["context"]["limit_tokens"].as_u64().is_some(), "{v}");
    // The question reached the runtime the info file named, as a prompt.
    let a = asks(&sim.dir);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["questionText"], "Reply with exactly: from the IDE");
    // It was neither stopped nor logged out, and nothing was spawned in its place.
    assert!(
        still_running(&mut sim),
        "the attached runtime must keep running"
    );
    assert!(sim.requests_for("auth/logout").is_empty());
    assert!(!work.path().join("ide/lingma-gw.instance.json").exists());
    assert!(!work.path().join("inst-0").exists(), "nothing was started");
    // And it still answers.
    let mut c = sim.client().await;
    assert_eq!(c.call("ping", json!({})).await["result"]["success"], true);
}

#[tokio::test]
async fn probe_names_the_dialect_of_a_runtime_found_through_a_legacy_info_file() {
    let root = tempfile::tempdir().unwrap();
    let info = info_path(root.path(), ".info");
    let mut sim = ide_runtime("legacy", &info, &[]).await;
    let lines = std::fs::read_to_string(&info).unwrap();
    assert!(
        lines.starts_with(&format!("{}\n{}\n", sim.ws_port, sim.pid())),
        "{lines}"
    );

    let work = tempfile::tempdir().unwrap();
    let out = run(
        work.path(),
        root.path(),
        &["probe", "--attach", "auto", "--json"],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dialect"], "legacy");
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["attach", "initialize", "dialect", "login", "models", "chat"]
    );
    let attach = v["steps"][0]["detail"].as_str().unwrap();
    assert!(attach.contains(&info.display().to_string()), "{attach}");
    assert!(still_running(&mut sim));

    // The checklist says it in words too; forcing the dialect says so.
    let out = run(
        work.path(),
        root.path(),
        &["probe", "--attach", "auto", "--lingma-dialect", "legacy"],
    );
    let checklist = text(&out.stdout);
    assert!(
        checklist.contains("dialect") && checklist.contains("as --lingma-dialect says"),
        "{checklist}"
    );
}

#[tokio::test]
async fn serve_attaches_through_a_unix_socket_and_leaves_the_runtime_running_after_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("SharedClientCache").join("lingma.sock");
    let mut sim = Sim::builder()
        .args(&["--no-delay", "--dialect", "acp"])
        .args(&["--ipc-socket", sock.to_str().unwrap()])
        .start()
        .await;
    let mut g = Gateway::start(
        &["--attach", sock.to_str().unwrap(), "--admin-token", "a"],
        &[],
    );
    let http = reqwest::Client::new();
    let r = http
        .post(g.url("/v1/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": "Reply with exactly: via socket"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "via socket");
    let inst: Value = http
        .get(g.url("/internal/instances"))
        .bearer_auth("a")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ide = &inst["instances"][0];
    assert_eq!(inst["instances"].as_array().unwrap().len(), 1, "{inst}");
    assert_eq!(ide["name"], "ide");
    assert_eq!(ide["attached"], true);
    assert_eq!(ide["dialect"], "acp");
    assert_eq!(ide["state"], "ready");
    // The socket's peer is the runtime: its pid is known without an info file.
    assert_eq!(ide["pid"], sim.pid());
    assert_eq!(ide["endpoint"], format!("unix:{}", sock.display()));

    common::signal(g.child.id(), "TERM");
    let status = g.wait_exit(Duration::from_secs(15)).expect("serve exits");
    assert!(status.success(), "{}", g.stderr());
    assert!(
        still_running(&mut sim),
        "serve must not stop an attached runtime"
    );
    assert!(sock.exists());
    assert!(sim.requests_for("auth/logout").is_empty());
}

#[tokio::test]
async fn serve_mixes_an_attached_runtime_with_spawned_instances() {
    let root = tempfile::tempdir().unwrap();
    let info = info_path(root.path(), ".info.json");
    let _sim = ide_runtime("both", &info, &[]).await;
    let g = Gateway::start(
        &["--attach", "auto", "--instances", "1", "--admin-token", "a"],
        &[("LINGMA_ATTACH_SEARCH_DIRS", root.path().to_str().unwrap())],
    );
    let http = reqwest::Client::new();
    let instances = || async {
        http.get(g.url("/internal/instances"))
            .bearer_auth("a")
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let all_ready = wait_until_async(Duration::from_secs(20), || async {
        instances().await["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["state"] == "ready")
    })
    .await;
    let v = instances().await;
    assert!(all_ready, "{v}");
    let by_name = |n: &str| {
        v["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no {n}: {v}"))
    };
    assert_eq!(by_name("ide")["attached"], true);
    assert_eq!(by_name("ide")["dialect"], "acp");
    assert_eq!(by_name("inst-0")["attached"], false);
    assert_eq!(
        by_name("inst-0")["dialect"],
        common::test_dialect().replace("both", "acp")
    );
    // Answers come from both.
    for i in 0..4 {
        let r = http
            .post(g.url("/v1/chat/completions"))
            .json(&json!({"messages": [{"role": "user", "content": format!("Reply with exactly: m{i}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test]
async fn a_runtime_whose_process_ends_is_gone_and_is_picked_up_again() {
    let root = tempfile::tempdir().unwrap();
    let info = info_path(root.path(), ".info.json");
    let mut first = ide_runtime("acp", &info, &[]).await;
    let first_pid = first.pid();
    let g = Gateway::start(
        &["--attach", "auto", "--admin-token", "a"],
        &[("LINGMA_ATTACH_SEARCH_DIRS", root.path().to_str().unwrap())],
    );
    let http = reqwest::Client::new();
    let health = || async {
        http.get(g.url("/healthz"))
            .bearer_auth("a")
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let chat = |q: &'static str| {
        let http = http.clone();
        let url = g.url("/v1/chat/completions");
        async move {
            http.post(url)
                .json(&json!({"messages": [{"role": "user", "content": q}]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(chat("Reply with exactly: one").await, 200);

    // The IDE quits hard: its info file stays behind, naming a dead pid.
    first.signal(nix::sys::signal::Signal::SIGKILL);
    first.wait_exit().await;
    assert!(info.exists());
    let gone = wait_until_async(Duration::from_secs(10), || async {
        health().await["instances"][0]["state"] == "gone"
    })
    .await;
    let h = health().await;
    assert!(gone, "{h}");
    assert_eq!(h["status"], "unavailable");
    assert_eq!(chat("Reply with exactly: nobody").await, 503);

    // The IDE comes back and writes its info file again: attached again, new pid.
    let _second = ide_runtime("acp", &info, &[]).await;
    let back = wait_until_async(Duration::from_secs(10), || async {
        health().await["instances"][0]["state"] == "ready"
    })
    .await;
    assert!(back, "{}", health().await);
    assert_eq!(chat("Reply with exactly: two").await, 200);
    let inst: Value = http
        .get(g.url("/internal/instances"))
        .bearer_auth("a")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(inst["instances"][0]["pid"], first_pid);
    assert!(
        inst["instances"][0]["restarts"] == 0,
        "never restarted: {inst}"
    );
}

#[test]
fn bad_and_stale_info_files_and_nothing_found_are_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    // Nothing there: the error lists where it looked.
    let out = run(
        work.path(),
        root.path(),
        &["chat", "--attach", "auto", "hi"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("no running Lingma found"), "{err}");
    assert!(
        err.contains(
            &root
                .path()
                .join("Lingma/SharedClientCache")
                .display()
                .to_string()
        ),
        "{err}"
    );
    // A broken JSON file and a stale legacy one: both named, with the reason.
    let qoder = root.path().join("QoderCN/SharedClientCache/.info.json");
    std::fs::create_dir_all(qoder.parent().unwrap()).unwrap();
    std::fs::write(&qoder, "{\"websocketPort\": ").unwrap();
    let stale = info_path(root.path(), ".info");
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, format!("36510\n{}\n", u32::MAX - 1)).unwrap();
    let out = run(
        work.path(),
        root.path(),
        &["chat", "--attach", "auto", "hi"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&qoder.display().to_string()) && err.contains("not valid JSON"),
        "{err}"
    );
    assert!(
        err.contains(&stale.display().to_string()) && err.contains("stale"),
        "{err}"
    );
    // An explicit file that is not there, and one that names no endpoint.
    let out = run(
        work.path(),
        root.path(),
        &["probe", "--attach", "/no/such/.info.json"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("/no/such/.info.json"));
    let empty = root.path().join("empty.info.json");
    std::fs::write(&empty, "{\"pid\": 1}").unwrap();
    let out = run(
        work.path(),
        root.path(),
        &["chat", "--attach", empty.to_str().unwrap(), "hi"],
    );
    assert!(text(&out.stderr).contains("neither a websocketPort nor an ipcServerPath"));
    // Not an attach target at all: a usage error.
    let out = run(
        work.path(),
        root.path(),
        &["chat", "--attach", "http://127.0.0.1:1", "hi"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
