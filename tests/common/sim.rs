//! `lingma-gw sim start` as a child process. It binds port 0 for both of its servers and the
//! harness reads the ports it got from its readiness line, `Communication servers ready -
//! WebSocket: <ws>, HTTP: <http>, IPC: none` (written to `<workDir>/logs/lingma.log` and, through
//! the log, to stderr, where the harness reads it): no port is picked by the test and handed over,
//! so no other process can take it in between. Also the simulator's request record
//! (`logs/sim-requests.jsonl`), for simulators the harness started and for those a gateway did.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::oneshot;

use super::BIN;
use super::ws::Client;

/// The start of the readiness line (protocol §1.3), the ports follow.
pub const READY: &str = "Communication servers ready - WebSocket: ";

/// How long a simulator may take to start or to exit.
const WAIT: Duration = Duration::from_secs(15);

/// `lingma-gw sim start` in `dir` on these ports (0: any free one), with `extra` arguments. The
/// environment's `LINGMA_SIM_*` knobs are removed (each test decides its own), the log level is
/// `info` (the readiness line is an info line) and stderr is piped.
pub fn sim_command(dir: &Path, ws: u16, http: u16, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("sim")
        .arg("start")
        .arg(format!("--workDir={}", dir.display()))
        .arg("--socketPort")
        .arg(ws.to_string())
        .arg(format!("--httpPort={http}"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("LINGMA_SIM_") {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("LOG_LEVEL").env("RUST_LOG", "info");
    cmd
}

/// The (WebSocket, HTTP) ports of a readiness line, wherever it is in `line`.
pub fn parse_ready(line: &str) -> Option<(u16, u16)> {
    let rest = &line[line.find(READY)? + READY.len()..];
    let (ws, rest) = rest.split_once(", HTTP: ")?;
    let http: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((ws.trim().parse().ok()?, http.parse().ok()?))
}

/// How to start a simulator: its work dir (default: a fresh temp dir, removed with the [`Sim`]),
/// its arguments after the ports, and environment variables.
#[derive(Default)]
pub struct SimBuilder {
    dir: Option<PathBuf>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl SimBuilder {
    pub fn dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn envs(mut self, vars: &[(&str, &str)]) -> Self {
        self.env
            .extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Starts it and waits for its readiness line; panics (with its stderr) when it does not come.
    pub async fn start(self) -> Sim {
        match self.try_start().await {
            Ok(sim) => sim,
            Err(e) => panic!("simulator did not start: {e}"),
        }
    }

    /// Starts it and waits for its readiness line (15 s at most); on failure the simulator is
    /// stopped and the error says how it ended, with its stderr.
    pub async fn try_start(self) -> Result<Sim, String> {
        let (tmp, dir) = match self.dir {
            Some(d) => (None, d),
            None => {
                let t = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut cmd = sim_command(&dir, 0, 0, &args);
        cmd.envs(self.env);
        let mut child = cmd.spawn().map_err(|e| format!("spawn {BIN}: {e}"))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = oneshot::channel();
        let pipe = child.stderr.take().expect("stderr is piped");
        let reader = tokio::spawn(read_stderr(pipe, stderr.clone(), ready_tx));
        let failure = tokio::select! {
            biased;
            ready = ready_rx => ready.map_err(|_| {
                "closed its stderr without a readiness line".to_string()
            }),
            status = child.wait() => Err(format!("exited ({status:?}) before its readiness line")),
            _ = tokio::time::sleep(WAIT) => Err(format!("no readiness line within {WAIT:?}")),
        };
        let failure = match failure {
            Ok((ws_port, http_port)) => {
                return Ok(Sim {
                    child,
                    dir,
                    ws_port,
                    http_port,
                    stderr,
                    _tmp: tmp,
                });
            }
            Err(e) => e,
        };
        let _ = child.start_kill();
        let status = tokio::time::timeout(WAIT, child.wait()).await;
        // Its stderr ends with it: read to the end for the message.
        let _ = tokio::time::timeout(WAIT, reader).await;
        let text = stderr.lock().unwrap().clone();
        Err(format!("{failure} (exit: {status:?}); stderr:\n{text}"))
    }
}

/// Copies the simulator's stderr into `buf` line by line and reports the ports of the first
/// readiness line.
async fn read_stderr(
    pipe: ChildStderr,
    buf: Arc<Mutex<String>>,
    ready: oneshot::Sender<(u16, u16)>,
) {
    let mut ready = Some(ready);
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        buf.lock().unwrap().push_str(&text);
        if let Some(ports) = parse_ready(&text)
            && let Some(tx) = ready.take()
        {
            let _ = tx.send(ports);
        }
    }
}

/// A running `lingma-gw sim start`, killed (and reaped by the runtime) when dropped.
pub struct Sim {
    pub child: Child,
    pub dir: PathBuf,
    pub ws_port: u16,
    pub http_port: u16,
    stderr: Arc<Mutex<String>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Sim {
    /// Everything configurable; see [`SimBuilder`].
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }

    /// A simulator in a fresh temp dir (logged in as demo unless `--logged-out`), no delays.
    pub async fn start(extra: &[&str]) -> Sim {
        Sim::builder()
            .args(&["--no-delay"])
            .args(extra)
            .start()
            .await
    }

    /// A simulator in `dir` with exactly `extra`.
    pub async fn start_in(dir: &Path, extra: &[&str]) -> Sim {
        Sim::builder().dir(dir).args(extra).start().await
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.ws_port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("simulator still running")
    }

    pub async fn connect(&self) -> Client {
        Client::connect(self.ws_port).await
    }

    /// A connected client that has done `initialize`.
    pub async fn client(&self) -> Client {
        let mut c = self.connect().await;
        c.initialize().await;
        c
    }

    /// What the simulator wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/lingma.log")).unwrap_or_default()
    }

    /// Every client message the simulator received, in order.
    pub fn requests(&self) -> Vec<Value> {
        read_requests(&self.dir)
    }

    pub fn requests_for(&self, method: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["method"] == method)
            .collect()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, sig).expect("send signal");
    }

    /// Its exit status once it has exited (15 s at most, else the test fails).
    pub async fn wait_exit(&mut self) -> ExitStatus {
        self.wait_exit_within(WAIT)
            .await
            .expect("simulator did not exit in time")
    }

    /// Its exit status once it has exited, or `None` after `limit`.
    pub async fn wait_exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .map(|r| r.expect("wait for simulator"))
    }

    /// SIGTERM and wait: a clean stop (files flushed) before a restart in the same dir.
    pub async fn stop(mut self) -> ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit().await
    }

    /// Keeps the temp dir alive past this simulator (for restarts).
    pub fn take_dir(&mut self) -> Option<tempfile::TempDir> {
        self._tmp.take()
    }
}

/// Every client message the simulator in `work_dir` received, in order. A line still being
/// written (no newline yet) is left for the next read; every complete one must be JSON.
pub fn read_requests(work_dir: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(work_dir.join("logs/sim-requests.jsonl")) else {
        return Vec::new();
    };
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("request log line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// The questions the simulator in `work_dir` was asked, in order, in either dialect: `chat/ask`
/// params as sent, and each `session/prompt` in the same shape (`questionText`, `sessionId`,
/// `requestId`, and the model as `extra.modelConfig.key`), so a test reads them the same way.
pub fn asks(work_dir: &Path) -> Vec<Value> {
    read_requests(work_dir)
        .into_iter()
        .filter_map(|r| match r["method"].as_str() {
            Some("chat/ask") => Some(r["params"].clone()),
            Some("session/prompt") => {
                let p = &r["params"];
                let text: Vec<&str> = p["prompt"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|b| b["text"].as_str())
                    .collect();
                Some(serde_json::json!({
                    "questionText": text.join("\n"),
                    "sessionId": p["sessionId"],
                    "requestId": p["_meta"]["ai-coding/request-id"],
                    "extra": {"modelConfig": {"key": p["_meta"]["ai-coding/model"]}},
                }))
            }
            _ => None,
        })
        .collect()
}

/// The requests that stopped an answer, in either dialect: `chat/stop`, and
/// `chat/deleteSessionById` of a session that had a prompt (deleting the throwaway session of the
/// dialect probe stops nothing).
pub fn stop_requests(work_dir: &Path) -> Vec<Value> {
    let all = read_requests(work_dir);
    let prompted: std::collections::HashSet<String> = all
        .iter()
        .filter(|r| r["method"] == "session/prompt")
        .filter_map(|r| r["params"]["sessionId"].as_str().map(str::to_string))
        .collect();
    all.into_iter()
        .filter(|r| match r["method"].as_str() {
            Some("chat/stop") => true,
            Some("chat/deleteSessionById") => {
                let p = &r["params"];
                p["sessionId"]
                    .as_str()
                    .or(p["id"].as_str())
                    .is_some_and(|s| prompted.contains(s))
            }
            _ => false,
        })
        .collect()
}

/// What a browser does on the simulator's login page for `login_url`: submit the account, get the
/// redirect to the instance's `/auth/callback` (the URL a remote browser ends on, which a user
/// pastes into `lingma-gw login`).
pub fn callback_url_for(login_url: &str, user: &str, password: &str) -> String {
    let u = url::Url::parse(login_url).unwrap();
    let state = u
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let submit = format!("http://127.0.0.1:{}/lingma/login/submit", u.port().unwrap());
    let body =
        serde_json::json!({"state": state, "loginId": user, "password": password}).to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let v: Value = rt.block_on(async {
        reqwest::Client::new()
            .post(submit)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(v["result"], "ok", "{v}");
    v["redirect"].as_str().unwrap().to_string()
}
