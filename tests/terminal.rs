//! The terminal commands on a real terminal (tmux): what they draw while they wait, that it is
//! gone when they are done, that nothing is drawn over what the user types, and that nothing is
//! drawn at all on a pipe or with `-q`. Every wait is on what the pane shows or the command wrote.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::tmux::Tmux;
use common::{BIN, callback_url_for, fast_sim_env, processes_matching, signal, wait_until};

const LONG: Duration = Duration::from_secs(60);

/// The spinner glyphs indicatif draws.
const SPINNER_GLYPHS: &[char] = &['⠁', '⠂', '⠄', '⡀', '⢀', '⠠', '⠐', '⠈', '⠋', '⠙', '⠹', '⠸'];

fn env_with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut env = fast_sim_env();
    env.extend_from_slice(extra);
    env
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The lines of the screen that are not blank.
fn lines(screen: &str) -> Vec<&str> {
    screen.lines().filter(|l| !l.trim().is_empty()).collect()
}

fn no_sim_left(work_dir: &Path) {
    let needle = format!("--workDir={}", work_dir.display());
    assert!(
        wait_until(Duration::from_secs(10), || processes_matching(&needle)
            .is_empty()),
        "a temporary instance was left running"
    );
}

#[test]
fn chat_says_what_it_waits_for_and_clears_it_before_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tmux::start(
        &[
            BIN,
            "chat",
            "--sim",
            "--work-dir",
            path(dir.path()),
            "[[sim:slow=500]] Reply with exactly: terminal answer",
        ],
        &env_with(&[("LINGMA_SIM_STARTUP_DELAY_MS", "300")]),
    );
    assert_eq!(t.wait_exit(LONG), 0, "{}", t.screen());
    let raw = t.raw();
    for stage in [
        "starting a temporary Lingma instance inst-0",
        "waiting for the first token",
    ] {
        assert!(raw.contains(stage), "never drawn: {stage:?} in {raw:?}");
    }
    // What stays on the screen is the answer alone: the spinner is gone.
    let screen = t.screen();
    assert_eq!(lines(&screen), ["terminal answer"], "{screen}");
    no_sim_left(dir.path());
}

#[test]
fn chat_draws_nothing_with_q_or_on_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tmux::start(
        &[
            BIN,
            "chat",
            "-q",
            "--sim",
            "--work-dir",
            path(dir.path()),
            "Reply with exactly: quiet",
        ],
        &fast_sim_env(),
    );
    assert_eq!(t.wait_exit(LONG), 0, "{}", t.screen());
    let raw = t.raw();
    assert!(!raw.contains("starting a temporary"), "{raw:?}");
    assert!(!raw.contains(SPINNER_GLYPHS), "{raw:?}");
    assert_eq!(lines(&t.screen()), ["quiet"]);
    // On a pipe: stderr stays empty.
    let out = Command::new(BIN)
        .args([
            "chat",
            "--sim",
            "--work-dir",
            path(dir.path()),
            "Reply with exactly: piped",
        ])
        .envs(fast_sim_env())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped\n");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn probe_on_a_terminal_spins_on_the_running_step_and_leaves_the_checklist() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tmux::start(
        &[BIN, "probe", "--sim", "--work-dir", path(dir.path())],
        &env_with(&[("LINGMA_SIM_FIRST_TOKEN_DELAY_MS", "300")]),
    );
    assert_eq!(t.wait_exit(LONG), 0, "{}", t.screen());
    let raw = t.raw();
    assert!(raw.contains("chat: asking"), "{raw:?}");
    assert!(raw.contains("instance: opening instance inst-0"), "{raw:?}");
    let screen = t.screen();
    let lines = lines(&screen);
    let names = [
        "binary",
        "work dir",
        "instance",
        "initialize",
        "dialect",
        "login",
        "models",
        "chat",
    ];
    assert_eq!(lines.len(), names.len(), "{screen}");
    for (line, name) in lines.iter().zip(names) {
        assert!(line.starts_with("ok") && line.contains(name), "{line:?}");
        assert!(
            !line.contains(SPINNER_GLYPHS) && !line.contains('…'),
            "{line:?}"
        );
    }
}

/// Each step's line is out while later steps still run: here the chat step waits a minute for
/// its first token, and the lines before it are read long before that.
#[test]
fn probe_prints_each_step_as_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["probe", "--sim", "--work-dir", path(dir.path())])
        .envs(env_with(&[("LINGMA_SIM_FIRST_TOKEN_DELAY_MS", "60000")]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("models")) {
        match rx.recv_timeout(Duration::from_secs(40)) {
            Ok(l) => seen.push(l),
            Err(_) => panic!("no models line while the chat step runs; got {seen:?}"),
        }
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert!(seen.iter().all(|l| l.starts_with("ok")), "{seen:?}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the probe ended: its lines came at the end, not as each step ended"
    );
    signal(child.id(), "INT");
    let _ = child.wait();
    no_sim_left(dir.path());
}

#[test]
fn login_never_draws_over_the_callback_url_being_typed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    let t = Tmux::start(
        &[
            BIN,
            "login",
            "--sim",
            "--work-dir",
            path(&root),
            "--no-browser",
            "--timeout",
            "120",
        ],
        &env_with(&[("LINGMA_SIM_LOGGED_OUT", "1")]),
    );
    let screen = t.wait_for_screen("press Enter", LONG);
    let login_url = screen
        .lines()
        .find(|l| l.starts_with("http") && l.contains("/lingma/login?"))
        .unwrap_or_else(|| panic!("no login URL on the screen:\n{screen}"))
        .trim()
        .to_string();
    let callback = callback_url_for(&login_url, "demo@example.com", "demo-password");
    // Typed in two halves: while the first half sits on the line, the command waits.
    let (first, second) = callback.split_at(callback.len() / 2);
    t.type_text(first);
    t.wait_for_screen(first, LONG);
    t.type_text(second);
    t.send_keys(&["Enter"]);
    t.wait_for_screen("Logged in as demo (instance inst-0)", LONG);
    assert_eq!(t.wait_exit(LONG), 0, "{}", t.screen());
    // Nothing was drawn from the moment the command asked for the URL: no spinner, no line
    // cleared (the instance's start-up spinner before that is gone by then), and the URL stands
    // on the screen whole, as typed.
    let raw = t.raw();
    let asked = raw
        .find("press Enter")
        .expect("the prompt is in the output");
    let after = &raw[asked..];
    assert!(
        !after.contains(SPINNER_GLYPHS),
        "a spinner was drawn: {after:?}"
    );
    assert!(!after.contains("\x1b[2K"), "a line was cleared: {after:?}");
    assert!(!raw.contains("waiting for the login to finish"), "{raw:?}");
    let screen = t.screen();
    assert!(
        screen.lines().any(|l| l.trim() == callback),
        "the typed URL is not intact on the screen:\n{screen}"
    );
    assert!(
        screen.contains("Waiting up to 120 s for the login"),
        "{screen}"
    );
}

#[test]
fn serve_counts_instances_up_then_prints_where_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tmux::start(
        &[
            BIN,
            "serve",
            "--sim",
            "--port",
            "0",
            "--instances",
            "2",
            "--work-dir",
            path(dir.path()),
        ],
        &env_with(&[("LINGMA_SIM_STARTUP_DELAY_MS", "300")]),
    );
    let screen = t.wait_for_screen("listening on http://", LONG);
    let raw = t.raw();
    assert!(raw.contains("starting 2 Lingma instances"), "{raw:?}");
    let listening = screen
        .lines()
        .find(|l| l.contains("listening on http://"))
        .unwrap();
    assert!(
        listening.starts_with("listening on http://127.0.0.1:"),
        "{listening:?}"
    );
    // Log lines went above the spinner, whole: every line is a log line or the address.
    for l in lines(&screen) {
        assert!(
            l.starts_with("listening on") || l.contains(" INFO ") || l.contains(" WARN "),
            "a line drawn over: {l:?}\n{screen}"
        );
        assert!(!l.contains(SPINNER_GLYPHS), "{l:?}");
    }
    t.send_keys(&["C-c"]);
    assert_eq!(t.wait_exit(LONG), 0, "{}", t.screen());
}

#[test]
fn import_of_a_bundle_on_stdin_shows_the_bytes_read() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let bundle = dir.path().join("b.bundle");
    let out = Command::new(BIN)
        .args([
            "export",
            "--sim",
            "--work-dir",
            path(&src),
            "-o",
            path(&bundle),
            "--with-history",
        ])
        .envs(fast_sim_env())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dst = dir.path().join("dst");
    let t = Tmux::start(
        &[
            "sh",
            "-c",
            &format!(
                "exec {} import --sim --work-dir {} - < {}",
                common::tmux::sh_quote(BIN),
                common::tmux::sh_quote(path(&dst)),
                common::tmux::sh_quote(path(&bundle)),
            ),
        ],
        &fast_sim_env(),
    );
    assert_eq!(t.wait_exit(LONG), 0, "{}", t.screen());
    let raw = t.raw();
    assert!(raw.contains("reading the bundle from stdin"), "{raw:?}");
    assert!(raw.contains("verifying the bundle"), "{raw:?}");
    let screen = t.screen();
    assert_eq!(lines(&screen).len(), 1, "{screen}");
    assert!(screen.contains("Imported the session of demo"), "{screen}");
}
