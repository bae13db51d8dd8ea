//! The processes the benchmark runs and watches: the simulator started directly, the gateway
//! (`lingma-gw serve --sim`), and their memory read from `/proc`.
//!
//! Every child is owned by a [`Child`] guard that sends SIGTERM, waits a grace period, then
//! SIGKILLs and reaps it, so an interrupted or failed run leaves no process behind.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Environment shared by both simulators, so that the direct and the gateway runs drive the same
/// simulator configuration: every delay 0, no per-message request log.
pub const SIM_ENV: [(&str, &str); 2] = [
    ("LINGMA_SIM_NO_DELAY", "1"),
    ("LINGMA_SIM_NO_REQUEST_LOG", "1"),
];

/// The `lingma-gw` binary built next to this one (`target/release/lingma-gw`).
pub fn lingma_gw_binary() -> Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find the bench executable's path")?;
    let dir = me
        .parent()
        .context("the bench executable has no parent directory")?;
    let bin = dir.join("lingma-gw");
    if !bin.is_file() {
        bail!(
            "{} is missing: the benchmark drives the release binary. Build it first with \
             `cargo build --release` (then run `cargo run --release -p lingma-gw-bench`).",
            bin.display()
        );
    }
    // `cargo run -p lingma-gw-bench` rebuilds the library and this binary, not lingma-gw: a
    // lingma-gw older than the product's sources would measure code that has changed since. (The
    // library's own build is no guide: the bench builds it with other dependency features, so it
    // is always newer than the binary `cargo build --release` made.)
    let bench_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let product = bench_dir.parent().unwrap_or(bench_dir);
    if let (Some(gw), Some(src)) = (modified(&bin), newest_source(product))
        && gw < src
    {
        eprintln!(
            "bench: warning: {} is older than the sources in {}; run `cargo build --release` \
             first (then `cargo run --release -p lingma-gw-bench`)",
            bin.display(),
            product.join("src").display()
        );
    }
    Ok(bin)
}

fn modified(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// When a source file of the `lingma-gw` binary (anything under `src/`) was last changed.
fn newest_source(product: &Path) -> Option<std::time::SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<std::time::SystemTime>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, newest);
            } else if let Some(t) = modified(&path) {
                *newest = (*newest).max(Some(t));
            }
        }
    }
    let mut newest = None;
    walk(&product.join("src"), &mut newest);
    newest
}

/// Raises the open-files soft limit to the hard limit: 1,000 open streams need ~3,000 sockets
/// between the bench, the gateway and the simulator. Children inherit the raised limit.
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

pub fn open_files_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(0)
}

/// A child process that is always terminated and reaped.
pub struct Child {
    inner: std::process::Child,
    name: &'static str,
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// SIGTERM, up to `grace` for a clean exit, then SIGKILL. Returns whether it exited cleanly.
    pub fn stop(&mut self, grace: Duration) -> bool {
        if let Ok(Some(status)) = self.inner.try_wait() {
            return status.success();
        }
        let _ = kill(Pid::from_raw(self.inner.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.inner.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "bench: {} did not stop within {grace:?}; killing it",
            self.name
        );
        let _ = self.inner.kill();
        let _ = self.inner.wait();
        false
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// A simulator started directly (`lingma-gw sim start`), for the direct measurements.
pub struct Sim {
    pub child: Child,
    pub socket: u16,
}

impl Sim {
    /// Starts it in the fresh `work_dir` on port 0 for both servers, and reads the WebSocket port
    /// it got from its readiness line in `logs/lingma.log`.
    pub fn start(bin: &Path, work_dir: &Path) -> Result<Sim> {
        let log = std::fs::File::create(work_dir.with_extension("log"))?;
        let inner = Command::new(bin)
            .args(["sim", "start"])
            .arg(format!("--workDir={}", work_dir.display()))
            .args(["--socketPort=0", "--httpPort=0"])
            .envs(SIM_ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut child = Child {
            inner,
            name: "simulator",
        };
        let lingma_log = lingma_gw::lingma::WorkDir::new(work_dir).lingma_log();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(socket) = std::fs::read_to_string(&lingma_log)
                .ok()
                .and_then(|t| ready_socket_port(&t))
            {
                return Ok(Sim { child, socket });
            }
            if let Ok(Some(status)) = child.inner.try_wait() {
                bail!(
                    "the simulator exited ({status}) before it was ready; see {}",
                    work_dir.with_extension("log").display()
                );
            }
            if Instant::now() > deadline {
                bail!("the simulator was not ready within 20 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.socket)
    }
}

/// The WebSocket port of the readiness line (`... ready - WebSocket: <port>, HTTP: ...`).
fn ready_socket_port(log: &str) -> Option<u16> {
    let prefix = lingma_gw::sim::READY_PREFIX;
    let rest = &log[log.find(prefix)? + prefix.len()..];
    rest.split(',').next()?.trim().parse().ok()
}

/// `lingma-gw serve --sim --port 0` with one instance of `connections` WebSocket connections and
/// as many admission slots.
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Gateway {
    pub fn start(bin: &Path, work_dir: &Path, connections: usize) -> Result<Gateway> {
        Self::start_with(bin, work_dir, connections, &[])
    }

    /// As [`Gateway::start`], with more `serve` arguments.
    pub fn start_with(
        bin: &Path,
        work_dir: &Path,
        connections: usize,
        extra: &[&str],
    ) -> Result<Gateway> {
        let log = work_dir.with_extension("log");
        let stderr = std::fs::File::create(&log)?;
        let conns = connections.to_string();
        let mut inner = Command::new(bin)
            .args(["serve", "--sim", "--port", "0", "--instances", "1"])
            .arg("--work-dir")
            .arg(work_dir)
            .args(["--max-in-flight", &conns, "--metrics-public"])
            .args(extra)
            .envs(SIM_ENV)
            .env("LINGMA_CONNECTIONS_PER_INSTANCE", &conns)
            .env("LINGMA_SIM_STARTUP_DELAY_MS", "0")
            // Loopback with no keys is allowed; make sure the caller's environment adds none.
            .env_remove("API_KEYS")
            .env_remove("ADMIN_TOKEN")
            .env_remove("METRICS_TOKEN")
            .env_remove("INSTANCE_COUNT")
            .env_remove("GATEWAY_MAX_IN_FLIGHT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = inner.stdout.take().context("no stdout pipe")?;
        let child = Child {
            inner,
            name: "gateway",
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keep reading to the end so the gateway never blocks on a full stdout pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .map_err(|_| {
                anyhow::anyhow!(
                    "the gateway did not print `listening on` within 120 s; see {}",
                    log.display()
                )
            })?
            .parse()
            .context("the gateway printed an unparsable address")?;
        Ok(Gateway { child, addr, log })
    }
}

/// Resident memory of one process, from `/proc/PID/status`, in kB.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kb: u64,
    /// `VmHWM`: the peak resident set since the process started.
    pub hwm_kb: u64,
}

impl std::ops::Add for Memory {
    type Output = Memory;
    fn add(self, o: Memory) -> Memory {
        Memory {
            rss_kb: self.rss_kb + o.rss_kb,
            hwm_kb: self.hwm_kb + o.hwm_kb,
        }
    }
}

pub fn memory(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(Memory {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
    })
}

/// Live children of `pid` (the gateway's simulator processes), from `/proc/*/stat`.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| {
                    // "PID (comm) STATE PPID ...": comm may hold spaces, so split after ')'.
                    let rest = s.rsplit_once(')')?.1;
                    let mut fields = rest.split_whitespace();
                    let state = fields.next()?;
                    let ppid = fields.next()?.parse::<u32>().ok()?;
                    Some(ppid == pid && state != "Z")
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Open file descriptors of a process (sockets included).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// User and system CPU time this process has used so far.
pub struct OwnCpu {
    pub user: Duration,
    pub system: Duration,
}

pub fn own_cpu() -> Result<OwnCpu> {
    use nix::sys::resource::{UsageWho, getrusage};
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::new(t.tv_sec().max(0) as u64, (t.tv_usec().max(0) as u32) * 1000)
    };
    let u = getrusage(UsageWho::RUSAGE_SELF).context("getrusage failed")?;
    Ok(OwnCpu {
        user: tv(u.user_time()),
        system: tv(u.system_time()),
    })
}

/// CPU time a process has used so far (all its live threads), in nanoseconds, from
/// `/proc/PID/task/*/schedstat`. Unlike wall time this does not grow when a shared machine is busy.
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}
