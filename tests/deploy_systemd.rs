//! The systemd recipe (`deploy/systemd/`): both units pass `systemd-analyze verify` (any warning
//! fails the test, since verify exits 0 on unknown keys), their sandboxing is what
//! `systemd-analyze security` rates, and the values that make a stop clean hold. systemd does not
//! run as PID 1 here, so the unit cannot be started by systemd itself: the last test does what
//! systemd would do with it (the unit's environment, SIGTERM to the main process only, a deadline
//! of TimeoutStopSec) and checks what `KillMode=mixed` relies on: lingma-gw stops its Lingma
//! processes itself and exits 0, so systemd has nothing left to kill and `Restart=on-failure`
//! does not restart it.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Gateway, processes_matching, signal, wait_until};

const SYSTEM_UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/systemd/lingma-gw.service"
);
const USER_UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/systemd/user/lingma-gw.service"
);

/// A unit file's `[Service]` (and other) keys: section.key -> values in order.
fn read_unit(text: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value");
        out.entry(format!("{section}.{}", k.trim()))
            .or_default()
            .push(v.trim().to_string());
    }
    out
}

fn one<'a>(unit: &'a HashMap<String, Vec<String>>, key: &str) -> &'a str {
    match unit.get(key).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("{key}: expected one value, found {other:?}"),
    }
}

fn systemd_analyze() -> Command {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "systemd-analyze is missing: run scripts/setup-test-deps.sh (Debian package systemd)"
    );
    Command::new("systemd-analyze")
}

/// The unit as shipped, with only ExecStart's binary pointed at the one just built (verify
/// checks that the binary exists). Written as `lingma-gw.service` in `dir`.
fn unit_with_built_binary(unit: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(unit).unwrap();
    let mut replaced = 0;
    let out: String = text
        .lines()
        .map(|l| match l.strip_prefix("ExecStart=") {
            Some(cmd) => {
                replaced += 1;
                let (_, args) = cmd.split_once(' ').expect("ExecStart=BINARY ARGS");
                format!("ExecStart={BIN} {args}\n")
            }
            None => format!("{l}\n"),
        })
        .collect();
    assert_eq!(replaced, 1, "{unit}: one ExecStart");
    let path = dir.join("lingma-gw.service");
    std::fs::write(&path, out).unwrap();
    path
}

/// `systemd-analyze [--user] verify` and `security --offline`: returns the exposure score.
fn verify(unit: &str, user: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = unit_with_built_binary(unit, dir.path());
    // A user manager needs a runtime dir; this one is private to the test.
    let runtime = dir.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    let run = |args: &[&str]| {
        let mut c = systemd_analyze();
        if user {
            c.arg("--user")
                .env("HOME", dir.path())
                .env("XDG_RUNTIME_DIR", &runtime);
        }
        c.args(args).arg(&path).output().unwrap()
    };
    let out = run(&["verify", "--man=no"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{unit}: systemd-analyze verify:\n{stderr}{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(&["security", "--offline=true", "--no-pager"]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.split("Overall exposure level for lingma-gw.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "{unit}: no exposure level:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

fn secs(v: &str) -> f64 {
    v.trim_end_matches('s').parse().unwrap()
}

/// What both units must say for a stop to be clean and the service contained.
fn check_common(unit: &HashMap<String, Vec<String>>) -> HashMap<String, String> {
    let env: HashMap<String, String> = unit["Service.Environment"]
        .iter()
        .map(|e| {
            let (k, v) = e.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    assert_eq!(one(unit, "Service.Restart"), "on-failure");
    assert_eq!(one(unit, "Service.KillMode"), "mixed");
    assert_eq!(one(unit, "Service.KillSignal"), "SIGTERM");
    // lingma-gw's grace, then the pool's own stop of Lingma (SIGTERM, 5 s, SIGKILL).
    let grace = secs(&env["GATEWAY_SHUTDOWN_GRACE_SEC"]);
    let timeout = secs(one(unit, "Service.TimeoutStopSec"));
    assert!(
        timeout > grace + 5.0,
        "TimeoutStopSec {timeout} must exceed the grace {grace} + 5 s"
    );
    assert!(one(unit, "Service.ExecStart").ends_with("/lingma-gw serve"));
    assert!(one(unit, "Service.EnvironmentFile").ends_with("lingma-gw/lingma-gw.env"));
    assert_eq!(one(unit, "Service.NoNewPrivileges"), "yes");
    assert_eq!(one(unit, "Service.ProtectSystem"), "strict");
    assert_eq!(one(unit, "Service.PrivateTmp"), "yes");
    // The work dir is the only writable place: the state directory, where LINGMA_WORK_DIR is.
    assert_eq!(one(unit, "Service.StateDirectory"), "lingma-gw");
    assert_eq!(env["LINGMA_WORK_DIR"], "%S/lingma-gw/instances");
    env
}

#[test]
fn system_unit_verifies_is_sandboxed_and_stops_cleanly() {
    let unit = read_unit(&std::fs::read_to_string(SYSTEM_UNIT).unwrap());
    check_common(&unit);
    assert_eq!(one(&unit, "Service.User"), "lingma-gw");
    assert_eq!(one(&unit, "Service.Group"), "lingma-gw");
    assert_eq!(one(&unit, "Service.ProtectHome"), "yes");
    assert!(one(&unit, "Service.EnvironmentFile").starts_with("-/etc/"));
    assert_eq!(one(&unit, "Install.WantedBy"), "multi-user.target");
    let exposure = verify(SYSTEM_UNIT, false);
    println!("system unit: systemd-analyze security exposure {exposure}");
    assert!(
        exposure <= 2.5,
        "exposure {exposure}: the sandboxing got weaker"
    );
}

#[test]
fn user_unit_verifies_and_stops_cleanly() {
    let unit = read_unit(&std::fs::read_to_string(USER_UNIT).unwrap());
    check_common(&unit);
    assert!(
        !unit.contains_key("Service.User"),
        "a user unit runs as its user"
    );
    // Home stays readable (Lingma's IDE-plugin binary lives there); the state dir is writable.
    assert_eq!(one(&unit, "Service.ProtectHome"), "read-only");
    assert_eq!(one(&unit, "Install.WantedBy"), "default.target");
    verify(USER_UNIT, true);
}

#[test]
fn a_stop_as_systemd_does_it_finishes_answers_stops_lingma_and_exits_zero_in_time() {
    let text = std::fs::read_to_string(SYSTEM_UNIT).unwrap();
    let unit = read_unit(&text);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // The unit's environment, with its specifier resolved to a temporary state directory.
    let env: Vec<(String, String)> = check_common(&unit)
        .into_iter()
        .map(|(k, v)| (k, v.replace("%S", &state.display().to_string())))
        .collect();
    let work_dir = PathBuf::from(&env.iter().find(|(k, _)| k == "LINGMA_WORK_DIR").unwrap().1);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // `--sim` stands in for the Lingma binary (LINGMA_BIN in the unit), `--port 0` for a port.
    let mut g = Gateway::start_in(&work_dir, &[], &env_refs);
    let timeout = Duration::from_secs_f64(secs(one(&unit, "Service.TimeoutStopSec")));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let body = serde_json::json!({
        "model": "auto", "stream": true,
        "messages": [{"role": "user", "content": "[[sim:slow=300]] Reply with exactly: finished"}],
    });
    let mut resp = rt
        .block_on(http.post(g.url("/v1/chat/completions")).json(&body).send())
        .unwrap();
    assert_eq!(resp.status(), 200);
    rt.block_on(resp.chunk()).unwrap().expect("the first event");
    // The simulator's command line names its work dir as Lingma's does.
    let lingma = format!("--workDir={}", work_dir.display());
    assert!(!processes_matching(&lingma).is_empty());

    // KillMode=mixed: SIGTERM to the main process alone.
    let stopped_at = Instant::now();
    signal(g.child.id(), "TERM");
    let rest = rt.block_on(resp.text()).unwrap();
    assert!(
        rest.contains("finished") && rest.contains("[DONE]"),
        "the running answer was cut: {rest}"
    );
    let status = g.wait_exit(timeout).unwrap_or_else(|| {
        panic!(
            "still running after TimeoutStopSec ({timeout:?}): systemd would SIGKILL it\n{}",
            g.stderr()
        )
    });
    assert_eq!(
        status.code(),
        Some(0),
        "Restart=on-failure would restart it"
    );
    // Nothing left in the service's cgroup for systemd's final SIGKILL.
    assert!(
        wait_until(timeout.saturating_sub(stopped_at.elapsed()), || {
            processes_matching(&lingma).is_empty()
        }),
        "Lingma processes outlived lingma-gw"
    );
    println!(
        "stopped in {:?} of TimeoutStopSec {timeout:?}",
        stopped_at.elapsed()
    );
}
