//! `lingma-gw serve --sim --port 0` as a child process: started in its own temp work dir, its
//! address read from the `listening on http://ADDR` line it prints once bound, its stderr kept for
//! failure messages, and SIGTERM (then SIGKILL) and a reap when the test is done with it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::procs::signal;
use super::wait::wait_child;
use super::{BIN, fast_sim_env};

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
            // Whatever the developer's shell says, a test attaches only when it asks to.
            .env_remove("LINGMA_ATTACH")
            .env_remove("LINGMA_ATTACH_SEARCH_DIRS")
            .env_remove("LINGMA_DIALECT")
            .envs(env.iter().copied())
            .env_remove("API_KEYS");
        Gateway::spawn(cmd, work_dir)
    }

    /// Runs `cmd` (something that ends up as `lingma-gw serve` and prints `listening on`, e.g. a
    /// wrapper script that execs it) with piped output, and waits for its address.
    pub fn spawn(mut cmd: Command, work_dir: &Path) -> Gateway {
        cmd.stdin(Stdio::null())
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
            // Read to the end, so that the gateway never blocks on a full stdout pipe.
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

    pub fn instance_dir(&self, name: &str) -> PathBuf {
        self.work_dir.join(name)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
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
