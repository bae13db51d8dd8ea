//! `lingma-gw login` against the simulator: pasting the callback URL, `--callback-url` against the
//! instance a gateway runs, headless login through the real Chromium (Debian's `chromium`)
//! including the captcha, verification and wrong-password stops, and the gateway's auto-login
//! when a chat hits a logged-out instance.
//!
//! The Chromium tests fail (never skip) when Chromium is missing: `.ci/run` installs it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{
    BIN, Gateway, callback_url_for, fast_sim_env, output_within, processes_matching, read_requests,
    wait_for_async, wait_until, wait_until_async,
};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";

fn require_chromium() {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "Chromium is required for the headless login tests: install Debian's `chromium` package \
         (apt-get install -y chromium), as .ci/run does"
    );
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .envs(fast_sim_env())
        .envs(env.iter().copied())
        .env_remove("AUTO_LOGIN_PASSWORD")
        .env_remove("AUTO_LOGIN_USERNAME")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs to completion (killed after 150 s) with `stdin` written and closed.
fn cli(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut child = command(args, env).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    output_within(child, Duration::from_secs(150))
}

fn sim_status(work_dir: &Path) -> Value {
    let o = cli(
        &["sim", "status", "-o", "json", "--workDir", path(work_dir)],
        &[],
        b"",
    );
    assert!(o.status.success());
    serde_json::from_slice(&o.stdout).unwrap()
}

fn lingma_log(work_dir: &Path) -> String {
    std::fs::read_to_string(work_dir.join("logs/lingma.log")).unwrap_or_default()
}

/// A running `login --no-browser` and the URL it printed.
struct Pending {
    child: Child,
    url: String,
}

fn start_interactive(args: &[&str], env: &[(&str, &str)]) -> Pending {
    let mut child = command(args, env).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let url = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(u) => u,
        Err(_) => {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("login printed no URL; stderr:\n{err}");
        }
    };
    Pending { child, url }
}

#[test]
fn interactive_login_by_pasting_the_callback_url() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    let mut p = start_interactive(
        &[
            "login",
            "--sim",
            "--work-dir",
            path(&root),
            "--no-browser",
            "--timeout",
            "90",
        ],
        &[("LINGMA_SIM_LOGGED_OUT", "1")],
    );
    assert!(p.url.contains("/lingma/login?"), "{}", p.url);
    assert!(p.url.contains("state="), "{}", p.url);
    let callback = callback_url_for(&p.url, "demo@example.com", "demo-password");
    assert!(callback.contains("/auth/callback?state="), "{callback}");
    {
        let mut stdin = p.child.stdin.take().unwrap();
        // A stray line first: reported, and the command keeps waiting.
        writeln!(stdin, "not a url").unwrap();
        writeln!(stdin, "{callback}").unwrap();
        stdin.flush().unwrap();
        let out = output_within(p.child, Duration::from_secs(60));
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("that is not a callback URL"),
            "{}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("Logged in as demo (instance inst-0)"),
            "{}",
            stderr(&out)
        );
    }
    // The login landed in the work dir: the next start is logged in.
    assert_eq!(sim_status(&root.join("inst-0"))["logged_in"], true);
    let out = cli(
        &["login", "--sim", "--work-dir", path(&root)],
        &[("LINGMA_SIM_LOGGED_OUT", "1")],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already logged in as demo"),
        "{}",
        stderr(&out)
    );
    // The browser never reached the instance: the callback went over login/auth_callback.
    assert!(lingma_log(&root.join("inst-0")).contains("login success (auth callback)"));
}

#[tokio::test]
async fn callback_url_flag_finishes_a_login_of_the_gateway_instance() {
    let g = Gateway::start(&[], &[("LINGMA_SIM_LOGGED_OUT", "1")]);
    let root = g.work_dir.clone();
    assert!(
        wait_until_async(Duration::from_secs(20), || async {
            root.join("inst-0/lingma-gw.instance.json").exists()
        })
        .await
    );
    let r = root.clone();
    let (first, callback) = tokio::task::spawn_blocking(move || {
        let p = start_interactive(
            &["login", "--sim", "--work-dir", path(&r), "--no-browser"],
            &[],
        );
        let cb = callback_url_for(&p.url, "demo@example.com", "demo-password");
        (p, cb)
    })
    .await
    .unwrap();
    let r = root.clone();
    let out = tokio::task::spawn_blocking(move || {
        cli(
            &[
                "login",
                "--sim",
                "--work-dir",
                path(&r),
                "--callback-url",
                &callback,
            ],
            &[],
            b"",
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Logged in as demo"),
        "{}",
        stderr(&out)
    );
    // The first command (still waiting) sees the login too.
    let out = tokio::task::spawn_blocking(move || {
        let mut child = first.child;
        drop(child.stdin.take());
        output_within(child, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // And the gateway's instance is ready without a restart.
    let v = wait_for_async(Duration::from_secs(20), || async {
        let v: Value = reqwest::get(g.url("/internal/instances"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["instances"][0]["state"] == "ready" {
            Ok(v)
        } else {
            Err(v)
        }
    })
    .await
    .unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(v["instances"][0]["user"], "demo");
    assert_eq!(v["instances"][0]["restarts"], 0);
}

fn diagnostics(work_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(work_dir.join("login-diagnostics"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The temporary directory a test's browsers get (`TMPDIR`): their fresh profiles live there,
/// so their command lines name it and other tests' browsers do not count.
fn browser_tmp(root: &Path) -> PathBuf {
    let t = root.parent().unwrap().join("tmp");
    std::fs::create_dir_all(&t).unwrap();
    t
}

fn no_chromium_left(tmp: &Path) {
    let needle = format!("{}/lingma-gw-chromium-", tmp.display());
    assert!(
        wait_until(Duration::from_secs(10), || processes_matching(&needle)
            .is_empty()),
        "Chromium processes left behind: {:?}",
        processes_matching(&needle)
    );
    // The fresh profile was removed with the browser.
    let left: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn headless(root: &Path, env: &[(&str, &str)], password: &str) -> Output {
    let tmp = browser_tmp(root);
    let mut env = env.to_vec();
    env.push(("TMPDIR", path(&tmp)));
    cli(
        &[
            "login",
            "--sim",
            "--work-dir",
            path(root),
            "--headless",
            "--username",
            "demo@example.com",
            "--password-stdin",
            "--browser",
            CHROMIUM,
        ],
        &env,
        format!("{password}\n").as_bytes(),
    )
}

#[test]
fn headless_login_through_chromium() {
    require_chromium();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    let out = headless(&root, &[("LINGMA_SIM_LOGGED_OUT", "1")], "demo-password");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Logged in as demo (instance inst-0)"),
        "{}",
        stderr(&out)
    );
    let wd = root.join("inst-0");
    assert_eq!(sim_status(&wd)["username"], "demo");
    let log = lingma_log(&wd);
    assert!(log.contains("login success (auth callback)"), "{log}");
    assert_eq!(
        log.matches("login page:").count(),
        0,
        "no failed attempt: {log}"
    );
    // The browser delivered the callback itself, so login/auth_callback was not needed.
    let methods: Vec<String> = read_requests(&wd)
        .iter()
        .filter_map(|r| r["method"].as_str().map(String::from))
        .collect();
    assert!(
        methods.iter().any(|m| m == "login/generateUrl"),
        "{methods:?}"
    );
    assert!(
        !methods.iter().any(|m| m == "login/auth_callback"),
        "{methods:?}"
    );
    assert!(diagnostics(&wd).is_empty());
    no_chromium_left(&browser_tmp(&root));
}

fn assert_stopped(root: &Path, out: &Output, kind: &str, sim_line: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    let err = stderr(out);
    assert!(err.contains(&format!("error: {kind}:")), "{err}");
    assert!(err.contains("not retried"), "{err}");
    assert!(
        err.contains("lingma-gw login --instance inst-0"),
        "says what to do next: {err}"
    );
    let wd = root.join("inst-0");
    // One attempt reached the login page; nothing was retried.
    let log = lingma_log(&wd);
    assert_eq!(log.matches(sim_line).count(), 1, "{log}");
    assert_eq!(log.matches("login page:").count(), 1, "{log}");
    assert_eq!(sim_status(&wd)["logged_in"], false);
    // A screenshot and the frame text were saved, and the message names them.
    let files = diagnostics(&wd);
    let png = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "png"))
        .expect("a screenshot");
    let txt = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "txt"))
        .expect("the page text");
    assert!(std::fs::read(png).unwrap().starts_with(b"\x89PNG"));
    assert!(
        std::fs::read_to_string(txt)
            .unwrap()
            .contains("=== frame http://127.0.0.1:")
    );
    assert!(err.contains(&png.display().to_string()), "{err}");
    no_chromium_left(&browser_tmp(root));
}

#[test]
fn headless_captcha_ends_in_captcha_required() {
    require_chromium();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    let env = [
        ("LINGMA_SIM_LOGGED_OUT", "1"),
        ("LINGMA_SIM_LOGIN_CHALLENGE", "captcha"),
    ];
    let out = headless(&root, &env, "demo-password");
    assert_stopped(
        &root,
        &out,
        "CaptchaRequired",
        "login page: slider captcha shown",
    );
}

#[test]
fn headless_verification_ends_in_verification_required() {
    require_chromium();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    let env = [
        ("LINGMA_SIM_LOGGED_OUT", "1"),
        ("LINGMA_SIM_LOGIN_CHALLENGE", "verification"),
    ];
    let out = headless(&root, &env, "demo-password");
    assert_stopped(
        &root,
        &out,
        "VerificationRequired",
        "login page: identity verification required",
    );
}

#[test]
fn headless_wrong_password_ends_in_bad_credentials() {
    require_chromium();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    let out = headless(&root, &[("LINGMA_SIM_LOGGED_OUT", "1")], "not-the-password");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("error: BadCredentials:"), "{err}");
    let log = lingma_log(&root.join("inst-0"));
    assert_eq!(
        log.matches("login page: wrong password").count(),
        1,
        "{log}"
    );
    no_chromium_left(&browser_tmp(&root));
}

async fn get(g: &Gateway, p: &str) -> Value {
    reqwest::get(g.url(p)).await.unwrap().json().await.unwrap()
}

async fn chat(g: &Gateway) -> (u16, Value, Option<String>) {
    let r = reqwest::Client::new()
        .post(g.url("/v1/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": "Reply with exactly: pong"}]}))
        .send()
        .await
        .unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (
        r.status().as_u16(),
        r.json().await.unwrap_or(Value::Null),
        retry,
    )
}

/// Polls `/internal/auto-login/status` until inst-0's run is no longer running.
async fn settled_run(g: &Gateway) -> Value {
    wait_for_async(Duration::from_secs(120), || async {
        let v = get(g, "/internal/auto-login/status?instance=inst-0").await;
        let s = v["instances"][0].clone();
        if s["state"] != "running" {
            Ok(s)
        } else {
            Err(v)
        }
    })
    .await
    .unwrap_or_else(|v| panic!("{v}"))
}

#[tokio::test]
async fn gateway_auto_login_when_a_chat_hits_a_logged_out_instance() {
    require_chromium();
    let endpoint = "https://lingma-dedicated.example.test";
    let dir = tempfile::tempdir().unwrap();
    let tmp = browser_tmp(&dir.path().join("gw"));
    let g = Gateway::start(
        &[],
        &[
            ("TMPDIR", path(&tmp)),
            ("LINGMA_SIM_LOGGED_OUT", "1"),
            ("AUTO_LOGIN_ENABLED", "true"),
            ("AUTO_LOGIN_USERNAME", "demo@example.com"),
            ("AUTO_LOGIN_PASSWORD", "demo-password"),
            ("AUTO_LOGIN_BROWSER", CHROMIUM),
            ("DEDICATED_DOMAIN_URL", endpoint),
        ],
    );
    let v = get(&g, "/internal/auto-login/status").await;
    assert_eq!(v["enabled"], true);
    assert_eq!(v["instances"][0]["state"], "idle");
    // The chat answers 503 at once, saying a login is under way and when to come back.
    let (status, body, retry) = chat(&g).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "login_in_progress", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("auto-login is logging it in")
    );
    assert_eq!(retry.as_deref(), Some("5"));
    // A second chat meanwhile does not start a second run.
    let (status, body, _) = chat(&g).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "login_in_progress");
    let run = settled_run(&g).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["user"], "demo");
    assert_eq!(run["attempts"], 1);
    assert_eq!(run["runs"], 1);
    // A later chat succeeds.
    let body = wait_for_async(Duration::from_secs(20), || async {
        match chat(&g).await {
            (200, body, _) => Ok(body),
            (status, body, _) => Err(format!("{status} {body}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["choices"][0]["message"]["content"], "pong");
    // DEDICATED_DOMAIN_URL was applied before the login started.
    let wd = g.instance_dir("inst-0");
    let methods: Vec<String> = read_requests(&wd)
        .iter()
        .filter_map(|r| r["method"].as_str().map(String::from))
        .collect();
    let update = methods
        .iter()
        .position(|m| m == "config/updateEndpoint")
        .expect("config/updateEndpoint sent");
    let login = methods
        .iter()
        .position(|m| m == "login/generateUrl")
        .expect("login/generateUrl sent");
    assert!(update < login, "{methods:?}");
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(wd.join("extension/server/config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["endpoint"], endpoint);
    no_chromium_left(&tmp);
}

#[tokio::test]
async fn gateway_auto_login_stops_at_a_captcha_without_retrying() {
    require_chromium();
    let dir = tempfile::tempdir().unwrap();
    let tmp = browser_tmp(&dir.path().join("gw"));
    let g = Gateway::start(
        &[],
        &[
            ("TMPDIR", path(&tmp)),
            ("LINGMA_SIM_LOGGED_OUT", "1"),
            ("LINGMA_SIM_LOGIN_CHALLENGE", "captcha"),
            ("AUTO_LOGIN_ENABLED", "1"),
            ("AUTO_LOGIN_MAX_RETRY", "3"),
            ("AUTO_LOGIN_USERNAME", "demo@example.com"),
            ("AUTO_LOGIN_PASSWORD", "demo-password"),
            ("AUTO_LOGIN_BROWSER", CHROMIUM),
        ],
    );
    let (status, body, _) = chat(&g).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "login_in_progress", "{body}");
    let run = settled_run(&g).await;
    assert_eq!(run["state"], "captcha_required", "{run}");
    assert_eq!(run["attempts"], 1, "never retried: {run}");
    assert!(
        run["last_error"]
            .as_str()
            .unwrap()
            .starts_with("CaptchaRequired"),
        "{run}"
    );
    assert!(
        Path::new(run["screenshot"].as_str().unwrap()).is_file(),
        "{run}"
    );
    // Later chats do not start new runs: a person has to log in.
    let (status, body, _) = chat(&g).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "not_logged_in", "{body}");
    // `not_logged_in` rather than `login_in_progress` is the gateway saying that it started no
    // run: a run is counted in the same call that starts it, before the answer, so nothing needs
    // to settle before the count is read.
    let run = settled_run(&g).await;
    assert_eq!(run["runs"], 1, "{run}");
    let log = lingma_log(&g.instance_dir("inst-0"));
    assert_eq!(
        log.matches("login page: slider captcha shown").count(),
        1,
        "{log}"
    );
    // An operator may start one by hand.
    let r = reqwest::Client::new()
        .post(g.url("/internal/auto-login/start"))
        .json(&json!({"instance": "inst-0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["results"][0]["result"], "started", "{v}");
    let run = settled_run(&g).await;
    assert_eq!(run["runs"], 2, "{run}");
    assert_eq!(run["state"], "captcha_required", "{run}");
    no_chromium_left(&tmp);
}

#[tokio::test]
async fn auto_login_endpoints_when_disabled() {
    let g = Gateway::start(&[], &[("LINGMA_SIM_LOGGED_OUT", "1")]);
    let v = get(&g, "/internal/auto-login/status").await;
    assert_eq!(v["enabled"], false);
    let r = reqwest::Client::new()
        .post(g.url("/internal/auto-login/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("AUTO_LOGIN_ENABLED"),
        "{v}"
    );
    assert!(
        wait_until_async(Duration::from_secs(20), || async {
            g.instance_dir("inst-0")
                .join("lingma-gw.instance.json")
                .exists()
        })
        .await
    );
    let (status, body, _) = chat(&g).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "not_logged_in", "{body}");
}

#[tokio::test]
async fn several_running_instances_need_instance_when_not_interactive() {
    let g = Gateway::start(&["--instances", "2"], &[("LINGMA_SIM_LOGGED_OUT", "1")]);
    let root = g.work_dir.clone();
    assert!(
        wait_until_async(Duration::from_secs(20), || async {
            ["inst-0", "inst-1"]
                .iter()
                .all(|n| root.join(n).join("lingma-gw.instance.json").exists())
        })
        .await
    );
    let r = root.clone();
    let out = tokio::task::spawn_blocking(move || {
        cli(
            &["login", "--sim", "--work-dir", path(&r), "--no-browser"],
            &[],
            b"",
        )
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("several instances are running (inst-0, inst-1): pass --instance NAME"),
        "{}",
        stderr(&out)
    );
}

/// A login that times out on a temporary instance suggests running it again, with the setup's
/// flags, and not `--callback-url`: that instance is gone, and its login with it.
#[test]
fn a_timed_out_login_on_a_temporary_instance_does_not_offer_the_callback_url() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    let out = cli(
        &[
            "login",
            "--sim",
            "--work-dir",
            path(&root),
            "--no-browser",
            "--timeout",
            "1",
        ],
        &[("LINGMA_SIM_LOGGED_OUT", "1")],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("did not finish within 1s"), "{err}");
    assert!(
        err.contains(&format!(
            "run `lingma-gw login --sim --work-dir {} --instance inst-0` again",
            root.display()
        )),
        "{err}"
    );
    assert!(!err.contains("--callback-url"), "{err}");
}

/// On the instance a gateway runs, the login outlives the command: the hint offers finishing it
/// with the callback URL, and that command, pasted with the URL, does.
#[tokio::test]
async fn a_timed_out_login_on_the_gateway_instance_offers_a_callback_url_that_works() {
    let g = Gateway::start(&[], &[("LINGMA_SIM_LOGGED_OUT", "1")]);
    let root = g.work_dir.clone();
    assert!(
        wait_until_async(Duration::from_secs(20), || async {
            root.join("inst-0/lingma-gw.instance.json").exists()
        })
        .await
    );
    let r = root.clone();
    let out = tokio::task::spawn_blocking(move || {
        cli(
            &[
                "login",
                "--sim",
                "--work-dir",
                path(&r),
                "--no-browser",
                "--timeout",
                "1",
            ],
            &[],
            b"",
        )
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let finish = format!(
        "lingma-gw login --sim --work-dir {} --instance inst-0 --callback-url URL",
        root.display()
    );
    assert!(err.contains(&finish), "{err}");
    let login_url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let pasted = tokio::task::spawn_blocking(move || {
        let callback = callback_url_for(&login_url, "demo@example.com", "demo-password");
        let command = finish.replace("URL", &format!("'{callback}'"));
        let bin_dir = Path::new(BIN).parent().unwrap().to_path_buf();
        Command::new("bash")
            .arg("-c")
            .arg(command)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin_dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(pasted.status.success(), "{}", stderr(&pasted));
    assert!(
        stderr(&pasted).contains("Logged in as demo"),
        "{}",
        stderr(&pasted)
    );
}
