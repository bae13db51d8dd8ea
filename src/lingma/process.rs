//! One Lingma child process: spawn with its work dir and ports, drain its output into tracing,
//! wait until it answers `initialize`, and stop it (SIGTERM, grace, SIGKILL, always waited for).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::client::{ClientOptions, LingmaClient, LingmaError};
use super::discovery::LingmaBinary;
use super::ports::Ports;
use super::workdir::WorkDir;

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("cannot start {program}: {reason}")]
    Spawn { program: PathBuf, reason: String },
    #[error("cannot prepare work dir {path}: {reason}")]
    WorkDir { path: PathBuf, reason: String },
    #[error(
        "Lingma exited during start-up ({status}){}{}",
        if output.is_empty() { String::new() } else { format!(": {output}") },
        log.as_ref().map(|l| format!("; see {}", l.display())).unwrap_or_default()
    )]
    ExitedEarly {
        status: String,
        /// Its last lines on stdout and stderr, joined.
        output: String,
        /// Its log, when it wrote one.
        log: Option<PathBuf>,
    },
    #[error("Lingma did not become ready within {}s (last error: {last})", timeout.as_secs_f32())]
    NotReady { timeout: Duration, last: String },
    #[error("port {port} is served by another process, not the Lingma just started")]
    PortTaken { port: u16 },
}

pub struct LingmaProcess {
    child: Child,
    pid: u32,
    pub ports: Ports,
    pub work_dir: WorkDir,
    label: String,
    /// The last lines the child wrote (stdout and stderr), for a start-up failure's message.
    recent: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
    /// The tasks draining its output; they end when the child closes its pipes.
    drains: Vec<tokio::task::JoinHandle<()>>,
}

/// Lines of output kept for the error of a process that exits during start-up.
const RECENT_LINES: usize = 5;

impl LingmaProcess {
    /// Starts `Lingma start --workDir D --socketPort P --httpPort H`. The child gets its own process
    /// group so that a terminal's Ctrl-C reaches us first and we stop it in order.
    pub fn spawn(
        binary: &LingmaBinary,
        work_dir: &WorkDir,
        ports: Ports,
        label: &str,
    ) -> Result<Self, ProcessError> {
        // The workspace folder too: every connection names it in `initialize`.
        let workspace = work_dir.workspace();
        std::fs::create_dir_all(&workspace).map_err(|e| ProcessError::WorkDir {
            path: workspace,
            reason: e.to_string(),
        })?;
        let mut cmd = Command::new(&binary.program);
        cmd.args(&binary.prefix_args)
            .envs(binary.env.iter().map(|(k, v)| (k, v)))
            .arg("start")
            .arg(format!("--workDir={}", work_dir.root().display()))
            .arg(format!("--socketPort={}", ports.socket))
            .arg(format!("--httpPort={}", ports.http))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        // If we die without stopping it (SIGKILL, a crash), the kernel stops the child for us:
        // no orphaned Lingma keeps a work dir and ports busy.
        #[cfg(target_os = "linux")]
        // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
        // which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn().map_err(|e| ProcessError::Spawn {
            program: binary.program.clone(),
            reason: e.to_string(),
        })?;
        let pid = child.id().unwrap_or(0);
        let recent = std::sync::Arc::new(std::sync::Mutex::new(
            std::collections::VecDeque::with_capacity(RECENT_LINES),
        ));
        let mut drains = Vec::new();
        for (name, pipe) in [
            (
                "stdout",
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            ),
            (
                "stderr",
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            ),
        ] {
            if let Some(pipe) = pipe {
                let label = label.to_string();
                let recent = recent.clone();
                drains.push(tokio::spawn(async move {
                    let mut lines = BufReader::new(pipe).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::debug!(instance = %label, stream = name, "{line}");
                        let mut recent = crate::util::lock(&recent);
                        if recent.len() == RECENT_LINES {
                            recent.pop_front();
                        }
                        recent.push_back(line);
                    }
                }));
            }
        }
        tracing::debug!(instance = %label, pid, socket = ports.socket, http = ports.http, "spawned Lingma");
        Ok(Self {
            child,
            pid,
            ports,
            work_dir: work_dir.clone(),
            label: label.to_string(),
            recent,
            drains,
        })
    }

    /// What the child said before it exited (its pipes are read to the end, briefly), and its
    /// log if it wrote one: what a user needs to see why a start failed.
    async fn exit_report(&mut self) -> (String, Option<PathBuf>) {
        let drains = std::mem::take(&mut self.drains);
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            futures_util::future::join_all(drains),
        )
        .await;
        let output = crate::util::lock(&self.recent)
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" / ");
        let log = self.work_dir.lingma_log();
        (output, log.is_file().then_some(log))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Polls until the WebSocket accepts a connection and `initialize` is answered, or the child
    /// exits, or `timeout` passes. Returns that first, initialized connection.
    pub async fn wait_ready(
        &mut self,
        opts: &ClientOptions,
        timeout: Duration,
    ) -> Result<LingmaClient, ProcessError> {
        let deadline = Instant::now() + timeout;
        let workspace = self.work_dir.workspace();
        let url = self.ports.ws_url();
        let mut last = String::from("no attempt yet");
        let mut delay = Duration::from_millis(25);
        loop {
            if let Some(status) = self.try_exit_status() {
                let (output, log) = self.exit_report().await;
                return Err(ProcessError::ExitedEarly {
                    status,
                    output,
                    log,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProcessError::NotReady { timeout, last });
            }
            let mut attempt = opts.clone();
            attempt.connect_timeout = left.min(Duration::from_secs(2));
            attempt.rpc_timeout = left.min(opts.rpc_timeout);
            match LingmaClient::connect(&url, &workspace, attempt).await {
                Ok(client) => {
                    // Two pools can pick the same free port at once; then our child fails to bind
                    // and we would be talking to the other pool's Lingma. Make sure the socket is
                    // our child's before calling the instance ready.
                    if listener_owner_is(self.pid, self.ports.socket) == Some(false) {
                        client.close().await;
                        return Err(ProcessError::PortTaken {
                            port: self.ports.socket,
                        });
                    }
                    // Later connections use the normal timeouts.
                    return Ok(client.with_options(opts.clone()));
                }
                Err(e) => last = short_error(&e),
            }
            tokio::time::sleep(delay.min(deadline.saturating_duration_since(Instant::now()))).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    /// `Some(description)` when the child has exited.
    pub fn try_exit_status(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    /// Resolves when the child exits.
    pub async fn wait_exit(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => format!("unknown ({e})"),
        }
    }

    /// SIGTERM, up to `grace` for a clean exit, then SIGKILL; the child is always reaped.
    pub async fn stop(mut self, grace: Duration) {
        if self.try_exit_status().is_some() {
            return;
        }
        send_signal(self.pid, nix::sys::signal::Signal::SIGTERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(_) => tracing::debug!(instance = %self.label, pid = self.pid, "Lingma stopped"),
            Err(_) => {
                tracing::warn!(instance = %self.label, pid = self.pid, "Lingma ignored SIGTERM; killing it");
                send_signal(self.pid, nix::sys::signal::Signal::SIGKILL);
                let _ = self.child.kill().await;
            }
        }
    }

    /// Kills the child at once (used when it stopped answering).
    pub async fn kill(mut self) {
        send_signal(self.pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill().await;
    }
}

/// Signals the child's whole process group (it leads its own), so whatever Lingma started goes
/// too; falls back to the process alone.
fn send_signal(pid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(raw) = i32::try_from(pid)
        && raw > 0
    {
        let pid = nix::unistd::Pid::from_raw(raw);
        if nix::sys::signal::killpg(pid, signal).is_err() {
            let _ = nix::sys::signal::kill(pid, signal);
        }
    }
}

fn short_error(e: &LingmaError) -> String {
    let s = e.to_string();
    if s.len() > 200 {
        format!("{}…", &s[..s.floor_char_boundary(200)])
    } else {
        s
    }
}

/// Whether the socket listening on 127.0.0.1:`port` belongs to process `pid` (Linux, through
/// /proc). `None` when that cannot be told (no /proc, no such listener yet, no permission).
pub fn listener_owner_is(pid: u32, port: u16) -> Option<bool> {
    let inodes = listening_inodes(port)?;
    if inodes.is_empty() {
        return None;
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    for fd in fds.flatten() {
        if let Ok(target) = std::fs::read_link(fd.path())
            && let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
            && inodes.iter().any(|i| i == inode)
        {
            return Some(true);
        }
    }
    Some(false)
}

/// Inodes of the sockets in LISTEN state on `port` (IPv4 and IPv6 tables).
fn listening_inodes(port: u16) -> Option<Vec<String>> {
    let mut found = Vec::new();
    let mut any_table = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        any_table = true;
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let Some(p) = local
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok())
            else {
                continue;
            };
            if p == port && *state == "0A" {
                found.push((*inode).to_string());
            }
        }
    }
    any_table.then_some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_our_listener_from_someone_elses() {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(listener_owner_is(std::process::id(), port), Some(true));
        // pid 1 is never this test.
        assert_ne!(listener_owner_is(1, port), Some(true));
        drop(l);
        assert_eq!(listener_owner_is(std::process::id(), port), None);
    }
}
