//! The container recipe (`Dockerfile`, `.dockerignore`, `deploy/docker/`). No Docker engine runs
//! on the machines these tests run on (only the client), so what is tested here is everything
//! that can run without one:
//!
//! - the Dockerfile read instruction by instruction: two stages, a slim runtime, a numeric
//!   non-root user, the volumes, `STOPSIGNAL`, the `HEALTHCHECK`, the environment;
//! - the build stage's inputs: exactly the files its `COPY`s take, through `.dockerignore`, are
//!   copied into an empty directory and cargo resolves the workspace there with `--locked`
//!   (what `cargo build --release --locked` would do first; the compile itself is the one every
//!   other test already does);
//! - the image's `ENTRYPOINT` as the image runs it (`tini -- docker-entrypoint`, with the
//!   Dockerfile's `ENV`) on the built binary: it refuses 0.0.0.0 without keys, reads keys from a
//!   secret file, checks the work dir, hands SIGTERM to lingma-gw, and the `HEALTHCHECK` command
//!   asks `/readyz`.
//!
//! `docker build` and `docker run` themselves are in `docker_build_run_and_stop`, ignored with
//! the reason: it needs a Docker engine (`cargo nextest run --run-ignored only --test
//! deploy_docker` where one runs). It does not pass here; it does not run here.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::clients::run_with_timeout;
use common::{BIN, Gateway, fast_sim_env, processes_matching, signal, wait_until};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One instruction of a Dockerfile: its keyword (upper case) and the rest, continuations joined.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

fn dockerfile() -> Vec<Instruction> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                let (k, rest) = current.split_once(char::is_whitespace).unwrap();
                out.push(Instruction {
                    keyword: k.to_ascii_uppercase(),
                    args: rest.trim().to_string(),
                });
                current.clear();
            }
        }
    }
    out
}

/// The stages, each a list of its instructions (the `FROM` first).
fn stages() -> Vec<Vec<Instruction>> {
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for i in dockerfile() {
        if i.keyword == "FROM" {
            stages.push(Vec::new());
        }
        if let Some(s) = stages.last_mut() {
            s.push(i);
        }
    }
    stages
}

fn args_of<'a>(stage: &'a [Instruction], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|i| i.keyword == keyword)
        .map(|i| i.args.as_str())
        .collect()
}

/// A JSON-array (exec form) argument.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not exec form: {args}: {e}"))
}

/// The runtime stage's `ENV`.
fn image_env() -> BTreeMap<String, String> {
    let stages = stages();
    let runtime = stages.last().unwrap();
    let mut env = BTreeMap::new();
    for args in args_of(runtime, "ENV") {
        for pair in args.split_whitespace() {
            let (k, v) = pair.split_once('=').expect("ENV KEY=VALUE");
            env.insert(k.to_string(), v.to_string());
        }
    }
    env
}

#[test]
fn dockerfile_is_two_stages_non_root_with_volumes_health_and_a_clean_stop() {
    let stages = stages();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (build, runtime) = (&stages[0], &stages[1]);
    assert!(build[0].args.contains(" AS build"), "{:?}", build[0]);
    let cargo = args_of(build, "RUN").join(" ");
    assert!(
        cargo.contains("cargo build --release --locked --bin lingma-gw"),
        "{cargo}"
    );
    // A small runtime: a slim Debian, the binary copied from the build stage, nothing else built.
    assert!(runtime[0].args.contains("-slim"), "{:?}", runtime[0]);
    assert!(
        args_of(runtime, "COPY")
            .iter()
            .any(|c| c.starts_with("--from=build ") && c.ends_with("/usr/local/bin/lingma-gw"))
    );
    assert!(
        args_of(runtime, "RUN")
            .join(" ")
            .contains("rm -rf /var/lib/apt/lists/*")
    );

    let user = args_of(runtime, "USER");
    assert_eq!(user.len(), 1);
    let uid: u32 = user[0]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric USER");
    assert_ne!(uid, 0, "the image runs as root");

    let env = image_env();
    assert_eq!(env["GATEWAY_HOST"], "0.0.0.0");
    assert_eq!(args_of(runtime, "EXPOSE"), [env["GATEWAY_PORT"].as_str()]);
    // The Lingma binary's directory and the work dirs' volume.
    let volumes: Vec<String> = args_of(runtime, "VOLUME")
        .into_iter()
        .flat_map(exec_form)
        .collect();
    let bin_dir = Path::new(&env["LINGMA_BIN"]).parent().unwrap();
    assert!(
        volumes.iter().any(|v| Path::new(v) == bin_dir),
        "{volumes:?}"
    );
    assert!(
        volumes
            .iter()
            .any(|v| Path::new(&env["LINGMA_WORK_DIR"]).starts_with(v)),
        "{volumes:?}"
    );

    assert_eq!(args_of(runtime, "STOPSIGNAL"), ["SIGTERM"]);
    let health = args_of(runtime, "HEALTHCHECK");
    assert_eq!(health.len(), 1);
    let cmd = health[0]
        .split(" CMD ")
        .nth(1)
        .expect("HEALTHCHECK ... CMD [...]");
    assert_eq!(exec_form(cmd), ["docker-entrypoint", "healthcheck"]);
    assert_eq!(
        exec_form(args_of(runtime, "ENTRYPOINT")[0]),
        ["tini", "--", "docker-entrypoint"]
    );
    assert_eq!(exec_form(args_of(runtime, "CMD")[0]), ["serve"]);

    // Docker's default stop timeout (10 s) is shorter than the grace plus stopping Lingma; the
    // recipe's compose file and the documented `docker run` give more.
    let grace: f64 = env["GATEWAY_SHUTDOWN_GRACE_SEC"].parse().unwrap();
    let compose =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/docker/compose.yaml")).unwrap();
    let stop: f64 = compose
        .lines()
        .find_map(|l| l.trim().strip_prefix("stop_grace_period: "))
        .and_then(|v| v.trim_end_matches('s').parse().ok())
        .expect("compose.yaml sets stop_grace_period");
    assert!(stop > grace + 5.0, "stop_grace_period {stop}s");
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let documented: f64 = dockerfile
        .split("--stop-timeout ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("the Dockerfile's usage gives --stop-timeout");
    assert!(documented > grace + 5.0);
}

/// `.dockerignore` is an allow list: is `path` in the build context?
fn in_context(path: &str) -> bool {
    let ignore = std::fs::read_to_string(Path::new(ROOT).join(".dockerignore")).unwrap();
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        rules.first(),
        Some(&"*"),
        ".dockerignore starts with * (an allow list)"
    );
    let path = path.trim_end_matches('/');
    rules
        .iter()
        .filter_map(|r| r.strip_prefix('!'))
        .any(|allowed| {
            let allowed = allowed.trim_end_matches('/');
            path == allowed || path.starts_with(&format!("{allowed}/"))
        })
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}

#[test]
fn the_build_stage_has_every_file_it_needs_and_a_locked_workspace() {
    let stages = stages();
    let build = &stages[0];
    let context = tempfile::tempdir().unwrap();
    let mut copied = 0;
    for copy in args_of(build, "COPY") {
        let parts: Vec<&str> = copy.split_whitespace().collect();
        let (dest, sources) = parts.split_last().unwrap();
        for src in sources {
            assert!(
                Path::new(ROOT).join(src).exists(),
                "COPY {src}: no such file"
            );
            assert!(in_context(src), "COPY {src}: excluded by .dockerignore");
            let target = if dest.ends_with('/') && !src.ends_with('/') {
                context
                    .path()
                    .join(dest)
                    .join(Path::new(src).file_name().unwrap())
            } else {
                context.path().join(dest)
            };
            copy_tree(&Path::new(ROOT).join(src), &target);
            copied += 1;
        }
    }
    assert!(copied >= 3);
    // The runtime stage copies the entrypoint from the context too.
    for copy in args_of(stages.last().unwrap(), "COPY") {
        if !copy.starts_with("--from=") {
            let src = copy.split_whitespace().next().unwrap();
            assert!(
                Path::new(ROOT).join(src).exists() && in_context(src),
                "COPY {src}"
            );
        }
    }
    // What `cargo build --locked` does before compiling: load the workspace and resolve it
    // against Cargo.lock, which must not need a change. Offline, for the platform it builds on
    // (the registry cache holds what this machine's builds needed).
    let rustc = Command::new("rustc").arg("-vV").output().unwrap();
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .unwrap();
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .args(["--filter-platform", &host])
        .arg("--manifest-path")
        .arg(context.path().join("Cargo.toml"))
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the build stage's context does not resolve:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PATH with `lingma-gw` (the built binary) and `docker-entrypoint` (the script) as the image
/// installs them, then the system's.
fn image_path(dir: &Path) -> String {
    let bin = dir.join("bin");
    if !bin.exists() {
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(BIN, bin.join("lingma-gw")).unwrap();
        std::os::unix::fs::symlink(
            Path::new(ROOT).join("deploy/docker/entrypoint.sh"),
            bin.join("docker-entrypoint"),
        )
        .unwrap();
    }
    format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display())
}

fn tini() -> PathBuf {
    let p = PathBuf::from("/usr/bin/tini");
    assert!(
        p.is_file(),
        "tini is missing: run scripts/setup-test-deps.sh (Debian package tini, the image's PID 1)"
    );
    p
}

/// The image's ENTRYPOINT with the image's ENV, on this machine: only the paths that only exist
/// in the image (HOME, the work dir) point into `dir`, and `overrides` are applied.
fn entrypoint(dir: &Path, args: &[&str], overrides: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(tini());
    cmd.args(["--", "docker-entrypoint"]).args(args);
    cmd.env_clear()
        .envs(image_env())
        .env("PATH", image_path(dir))
        .env("HOME", dir)
        .env("LINGMA_WORK_DIR", dir.join("work/instances"))
        // tini is not PID 1 here: as a subreaper it still reaps what it should, without a warning.
        .env("TINI_SUBREAPER", "1")
        .envs(fast_sim_env())
        .envs(overrides.iter().copied());
    cmd
}

#[test]
fn entrypoint_refuses_to_listen_on_all_addresses_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    // As `docker run IMAGE --sim` would: bare flags go to `serve`.
    let cmd = entrypoint(dir.path(), &["--sim"], &[("GATEWAY_PORT", "0")]);
    let (out, timed_out) = run_with_timeout(cmd, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!timed_out, "it started: {stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0 without API keys"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "it listened"
    );
}

#[test]
fn entrypoint_checks_secrets_and_the_work_dir_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("api_keys");
    std::fs::write(&keys, "sk-a\n").unwrap();
    let keys = keys.to_str().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "").unwrap();
    let work = not_a_dir.join("instances");
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[("API_KEYS", "sk-b"), ("API_KEYS_FILE", keys)],
            "both API_KEYS and API_KEYS_FILE are set",
        ),
        (&[("API_KEYS_FILE", "/nonexistent/keys")], "cannot be read"),
        (
            &[
                ("API_KEYS_FILE", keys),
                ("LINGMA_WORK_DIR", work.to_str().unwrap()),
            ],
            "is not writable",
        ),
    ];
    for (env, message) in cases {
        let cmd = entrypoint(dir.path(), &["serve", "--sim"], env);
        let (out, _) = run_with_timeout(cmd, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(message), "{env:?}: {stderr}");
    }
}

/// `docker-entrypoint healthcheck`, as the HEALTHCHECK runs it, against `port`.
fn healthcheck(dir: &Path, port: u16) -> std::process::Output {
    let mut cmd = Command::new("docker-entrypoint");
    cmd.arg("healthcheck")
        .env_clear()
        .envs(image_env())
        .env("PATH", format!("{}/bin:/usr/bin:/bin", dir.display()))
        .env("GATEWAY_PORT", port.to_string());
    run_with_timeout(cmd, Duration::from_secs(30)).0
}

#[test]
fn entrypoint_serves_with_keys_from_a_secret_file_and_stops_on_sigterm_through_tini() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("api_keys");
    std::fs::write(&keys, "sk-file\n").unwrap();
    let cmd = entrypoint(
        dir.path(),
        &[],
        &[
            ("API_KEYS_FILE", keys.to_str().unwrap()),
            // Tests listen on loopback only; the image's 0.0.0.0 is covered by the refusal test.
            ("GATEWAY_HOST", "127.0.0.1"),
            ("GATEWAY_PORT", "0"),
            ("LINGMA_SIM", "1"),
        ],
    );
    let mut g = Gateway::spawn(cmd, &dir.path().join("work/instances"));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let chat = |key: &'static str| {
        let body = serde_json::json!({
            "model": "auto",
            "messages": [{"role": "user", "content": "Reply with exactly: contained"}],
        });
        http.post(g.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let ok = rt.block_on(chat("sk-file")).unwrap();
    assert_eq!(ok.status(), 200);
    assert!(rt.block_on(ok.text()).unwrap().contains("contained"));
    // The newline that `echo key > file` leaves is not part of the key; the file is the only key.
    assert_eq!(rt.block_on(chat("sk-filex")).unwrap().status(), 401);

    // The HEALTHCHECK command: healthy while /readyz says so.
    let h = healthcheck(dir.path(), g.port());
    assert!(h.status.success(), "{}", String::from_utf8_lossy(&h.stderr));

    // tini is the process Docker signals; the script has exec'd, so its child is lingma-gw
    // itself, which gets the SIGTERM that tini forwards.
    let tini_pid = g.child.id();
    let children =
        std::fs::read_to_string(format!("/proc/{tini_pid}/task/{tini_pid}/children")).unwrap();
    let child: u32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let exe = std::fs::read_link(format!("/proc/{child}/exe")).unwrap();
    assert_eq!(
        exe,
        std::fs::canonicalize(BIN).unwrap(),
        "the entrypoint did not exec"
    );
    signal(tini_pid, "TERM");
    let status = g.wait_exit(Duration::from_secs(30)).expect("it stopped");
    assert_eq!(status.code(), Some(0), "{}", g.stderr());
    assert!(
        g.stderr().contains("shutting down"),
        "lingma-gw never saw the signal: {}",
        g.stderr()
    );
    let lingma = format!("--workDir={}", dir.path().join("work/instances").display());
    assert!(wait_until(Duration::from_secs(10), || processes_matching(
        &lingma
    )
    .is_empty()));
    let h = healthcheck(dir.path(), g.port());
    assert_eq!(h.status.code(), Some(1), "healthy with nothing listening");
}

#[test]
fn healthcheck_asks_readyz_and_only_200_is_healthy() {
    let dir = tempfile::tempdir().unwrap();
    image_path(dir.path());
    for (status, healthy) in [("200 OK", true), ("503 Service Unavailable", false)] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // The whole request, as a server reads it, before the answer.
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the request ended early: {request:?}");
                request.extend_from_slice(&buf[..n]);
            }
            let request = String::from_utf8_lossy(&request).into_owned();
            write!(s, "HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").unwrap();
            request
        });
        let out = healthcheck(dir.path(), port);
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /readyz HTTP/1."), "{request}");
        assert_eq!(
            out.status.success(),
            healthy,
            "{status}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `docker build` and `docker run` with a Docker engine. Not run where there is none: ignored,
/// and when asked for, it fails rather than pretend.
#[test]
#[ignore = "needs a Docker engine (none runs on this project's machines); run with --run-ignored where one does"]
fn docker_build_run_and_stop() {
    let docker = |args: &[&str]| {
        let out = Command::new("docker").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let info = Command::new("docker").arg("info").output();
    assert!(
        info.is_ok_and(|o| o.status.success()),
        "no Docker engine answers `docker info`: this test cannot run here"
    );
    let tag = "lingma-gw:deploy-test";
    docker(&["build", "-t", tag, ROOT]);
    let size: u64 = docker(&["image", "inspect", "-f", "{{.Size}}", tag])
        .parse()
        .unwrap();
    assert!(size < 200 * 1024 * 1024, "image of {size} bytes");
    assert_eq!(
        docker(&["image", "inspect", "-f", "{{.Config.User}}", tag]),
        "10001:10001"
    );
    let refused = Command::new("docker")
        .args(["run", "--rm", "-e", "LINGMA_SIM=1", tag])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let id = docker(&[
        "run",
        "-d",
        "--stop-timeout",
        "30",
        "-e",
        "API_KEYS=sk-d",
        "-e",
        "LINGMA_SIM=1",
        "-p",
        "127.0.0.1::8000",
        tag,
    ]);
    let healthy = wait_until(Duration::from_secs(120), || {
        docker(&["inspect", "-f", "{{.State.Health.Status}}", &id]) == "healthy"
    });
    let port = docker(&["port", &id, "8000/tcp"]);
    let status = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "authorization: Bearer sk-d",
        ])
        .arg(format!("http://{port}/v1/models"))
        .output()
        .unwrap();
    docker(&["stop", &id]);
    let exit = docker(&["inspect", "-f", "{{.State.ExitCode}}", &id]);
    docker(&["rm", &id]);
    assert!(healthy, "the container never became healthy");
    assert_eq!(String::from_utf8_lossy(&status.stdout), "200");
    assert_eq!(exit, "0");
}
