//! Shared test harness: spawn the real binary as a simulator or a gateway, find its ports, read the
//! simulator's request record, and always kill and reap what was spawned.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_lingma-gw");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Environment for fast simulators: no start-up delay, small but non-zero streaming delays.
pub fn fast_sim_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("LINGMA_SIM_STARTUP_DELAY_MS", "0"),
        ("LINGMA_SIM_FIRST_TOKEN_DELAY_MS", "5"),
        ("LINGMA_SIM_CHUNK_DELAY_MS", "1"),
    ]
}

/// A `lingma-gw sim start` process.
pub struct Sim {
    child: Child,
    pub work_dir: PathBuf,
    pub socket: u16,
    pub http: u16,
    _dir: Option<tempfile::TempDir>,
}

impl Sim {
    pub fn start(extra: &[&str]) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let wd = dir.path().join("wd");
        let mut sim = Sim::start_in(&wd, extra, &[]);
        sim._dir = Some(dir);
        sim
    }

    pub fn start_in(work_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Sim {
        for _attempt in 0..5 {
            let socket = free_port();
            let http = free_port();
            let mut cmd = Command::new(BIN);
            cmd.args(["sim", "start"])
                .arg(format!("--workDir={}", work_dir.display()))
                .arg(format!("--socketPort={socket}"))
                .arg(format!("--httpPort={http}"))
                .args(extra)
                .envs(fast_sim_env())
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = cmd.spawn().unwrap();
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port race: try other ports
                }
                if std::net::TcpStream::connect(("127.0.0.1", socket)).is_ok() {
                    return Sim {
                        child,
                        work_dir: work_dir.to_path_buf(),
                        socket,
                        http,
                        _dir: None,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("simulator did not start listening");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("simulator could not start on free ports");
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.socket)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every client message the simulator received, in order.
    pub fn requests(&self) -> Vec<Value> {
        read_requests(&self.work_dir)
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    pub fn terminate(&mut self) {
        signal(self.child.id(), "TERM");
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn read_requests(work_dir: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(work_dir.join("logs/sim-requests.jsonl")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The `chat/ask` params the simulator received, in order.
pub fn asks(work_dir: &Path) -> Vec<Value> {
    read_requests(work_dir)
        .into_iter()
        .filter(|r| r["method"] == "chat/ask")
        .map(|r| r["params"].clone())
        .collect()
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// A `lingma-gw serve --sim --port 0` process (or any command that prints `listening on`).
pub struct Gateway {
    pub child: Child,
    pub base: String,
    pub work_dir: PathBuf,
    pub stderr: Arc<Mutex<String>>,
    _dir: Option<tempfile::TempDir>,
}

impl Gateway {
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let wd = dir.path().join("instances");
        let mut g = Gateway::start_in(&wd, args, env);
        g._dir = Some(dir);
        g
    }

    pub fn start_in(work_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--sim", "--port", "0", "--work-dir"])
            .arg(work_dir)
            .args(args)
            .envs(fast_sim_env())
            .env("LINGMA_HEALTH_INTERVAL", "0.2")
            .envs(env.iter().copied())
            .env_remove("API_KEYS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "gateway did not print its address; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        Gateway {
            child,
            base,
            work_dir: work_dir.to_path_buf(),
            stderr,
            _dir: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn instance_dir(&self, name: &str) -> PathBuf {
        self.work_dir.join(name)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        wait_child(&mut self.child, timeout)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), "TERM");
            if self.wait_exit(Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// Pids of live processes whose command line contains `needle` (from /proc, not our bookkeeping).
pub fn processes_matching(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let zombie = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        if cmd.contains(needle) && !zombie {
            out.push(pid);
        }
    }
    out
}

/// The child's exit status once it has exited, or `None` after `timeout`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The child's output once it exits; killed (and the test failed with its stderr) after `limit`.
pub fn output_within(mut child: Child, limit: Duration) -> std::process::Output {
    if wait_child(&mut child, limit).is_none() {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "did not finish within {limit:?}; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    child.wait_with_output().unwrap()
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Open file descriptors of a process (its sockets included), from /proc.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The sum of every sample of the Prometheus family `name` in a `/metrics` text (all label sets),
/// or `None` when the family has no sample.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue; // another family with a longer name
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Polls the async `f` until it returns true or `timeout` passes, without blocking the runtime.
pub async fn wait_until_async<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// TCP connections that process `pid` holds to `127.0.0.1:port` (any state), matched through the
/// socket inodes of its file descriptors and `/proc/net/tcp`.
pub fn tcp_connections_to(pid: u32, port: u16) -> usize {
    let inodes = socket_inodes(pid);
    let port_hex = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 9 && f[2].ends_with(&port_hex) && inodes.contains(f[9])
        })
        .count()
}

/// Connections that clients hold to process `pid`'s listening `port` (sockets of `pid` whose local
/// port is `port`, the listener itself excluded).
pub fn client_connections(pid: u32, port: u16) -> usize {
    let inodes = socket_inodes(pid);
    let port_hex = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Field 3 is the state: 0A is LISTEN.
            f.len() > 9 && f[1].ends_with(&port_hex) && f[3] != "0A" && inodes.contains(f[9])
        })
        .count()
}

/// Open descriptors of `pid` other than its clients' connections to `port`: what a test compares
/// before and after, without counting keep-alive connections its own HTTP client happens to hold.
pub fn fds_without_clients(pid: u32, port: u16) -> usize {
    open_fds(pid).saturating_sub(client_connections(pid, port))
}

fn socket_inodes(pid: u32) -> std::collections::HashSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A field of `/proc/<pid>/status` in kB (`VmRSS`, `VmHWM`, ...).
pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(str::to_string))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

impl Gateway {
    /// The port the gateway listens on.
    pub fn port(&self) -> u16 {
        self.base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the gateway's address has a port")
    }

    /// `host:port`, for raw sockets.
    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }
}
