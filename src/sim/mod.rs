//! The built-in Lingma simulator: a real WebSocket + HTTP server speaking the Lingma wire protocol
//! (what it implements is docs/simulator.md), so that the gateway, its tests and its benchmark run
//! without the real binary, and every known quirk and fault of the real one can be reproduced.
//!
//! Entry points: [`Simulator::start`] (embedded: returns once both ports listen),
//! [`run_until_signal`] (what `lingma-gw sim start` runs), [`status`] (`sim status`) and
//! [`VERSION`]. Module map: `config` (knobs), `directives` (`[[sim:...]]` per-request faults),
//! `server` (WebSocket and Unix socket, framing, JSON-RPC methods, the dialect gate), `conn` (one
//! connection's writer and acks), `chat` (`chat/ask` and the answer streams of both dialects,
//! faults), `acp` (`session/*`, the ACP dialect), `agent` (scripted tool calls for agent clients),
//! `http` (callback and login page), `state` (shared state), `store` (files in the work dir),
//! `models` (catalogue), `log` (lingma.log and the request log). A simulator can also publish
//! the discovery file an IDE's runtime leaves (`--info-file`), so it can play "the Lingma an IDE
//! already runs" for `--attach`.

mod acp;
pub mod agent;
mod chat;
pub mod config;
mod conn;
pub mod directives;
mod http;
mod log;
mod models;
mod server;
mod state;
mod store;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{
    ACP_VERSION, Account, CRASH_EXIT_CODE, CrashAction, Faults, LoginChallenge, PromptReply,
    SimConfig, SimDialect, ThinkStyle, VERSION,
};
pub use log::format_ms;

use crate::lingma::WorkDir;
use crate::util::unix_millis;
use log::{LingmaLog, RequestLog};
use state::{LoginState, Nonces, Shared};
use store::{SessionStore, SimFiles, UserInfo};

/// The line clients wait for in `logs/lingma.log`: the real binary writes it once both ports listen.
pub const READY_PREFIX: &str = "Communication servers ready - WebSocket: ";

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{what} port {port} is already in use")]
    PortInUse { what: &'static str, port: u16 },
    #[error("cannot listen on {what} port {port}: {source}")]
    Bind {
        what: &'static str,
        port: u16,
        source: io::Error,
    },
    #[error("WebSocket and HTTP ports must differ (both {0})")]
    SamePort(u16),
    #[error("cannot listen on the Unix socket {path}: {source}")]
    Ipc { path: PathBuf, source: io::Error },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> SimError {
    let context = context.into();
    move |source| SimError::Io { context, source }
}

/// How a simulator run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimExit {
    /// Stopped by a signal or [`Simulator::shutdown`]: exit code 0.
    Clean,
    /// A simulated crash of an embedded simulator (the binary exits with 101 at once instead).
    Crashed,
}

/// `sim status -o json`: the login state of a work dir, read without starting a server.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatusReport {
    pub logged_in: bool,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
}

pub fn status(work_dir: &Path) -> StatusReport {
    let user = WorkDir::new(work_dir)
        .read_user()
        .filter(|u| !u.is_expired(unix_millis()));
    StatusReport {
        logged_in: user.is_some(),
        version: VERSION.to_string(),
        username: user.as_ref().map(|u| u.name.clone()),
        user_type: user.map(|u| u.user_type),
    }
}

/// A running simulator.
pub struct Simulator {
    shared: Arc<Shared>,
    ws_addr: SocketAddr,
    http_addr: SocketAddr,
    ws_task: JoinHandle<()>,
    http_task: JoinHandle<()>,
    ipc_task: Option<JoinHandle<()>>,
}

async fn bind(what: &'static str, port: u16) -> Result<TcpListener, SimError> {
    TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|source| {
            if source.kind() == io::ErrorKind::AddrInUse {
                SimError::PortInUse { what, port }
            } else {
                SimError::Bind { what, port, source }
            }
        })
}

/// Listens on a Unix socket, replacing a socket file a crashed run left behind.
fn bind_ipc(path: &Path) -> Result<tokio::net::UnixListener, SimError> {
    use std::os::unix::fs::FileTypeExt;
    let ipc_err = |source| SimError::Ipc {
        path: path.to_path_buf(),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_socket()
    {
        let _ = std::fs::remove_file(path);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(ipc_err)?;
    }
    tokio::net::UnixListener::bind(path).map_err(ipc_err)
}

/// Creates the work-dir skeleton and decides the login state. Runs before the startup delay, like
/// the real binary, which writes its log from the first moment.
struct Prepared {
    dir: WorkDir,
    log: LingmaLog,
    machine_id: String,
    login: LoginState,
    endpoint: String,
}

fn prepare(cfg: &SimConfig) -> Result<Prepared, SimError> {
    let dir = WorkDir::new(&cfg.work_dir);
    std::fs::create_dir_all(dir.root())
        .map_err(io_err(format!("cannot create {}", dir.root().display())))?;
    if let Some(src) = &cfg.copy_data_dir {
        dir.copy_from(src)
            .map_err(io_err(format!("cannot copy data dir {}", src.display())))?;
    }
    for d in [dir.logs(), dir.cache(), dir.history()] {
        std::fs::create_dir_all(&d).map_err(io_err(format!("cannot create {}", d.display())))?;
    }
    let log_path = dir.lingma_log();
    let log = LingmaLog::open(&log_path)
        .map_err(io_err(format!("cannot open {}", log_path.display())))?;
    log.info(&format!(
        "Lingma {VERSION} (simulator) starting, workDir: {}, pid: {}",
        dir.root().display(),
        std::process::id()
    ));
    if let Some(t) = &cfg.transport_type {
        log.info(&format!("transport type: {t}"));
    }
    if let Some(src) = &cfg.copy_data_dir {
        log.info(&format!("copied data dir from {}", src.display()));
    }
    let (machine_id, fresh) = dir.ensure_machine_id().map_err(io_err(format!(
        "cannot write {}",
        dir.machine_id().display()
    )))?;
    log.info(&format!("using machine id from file: {machine_id}"));
    if fresh && !cfg.logged_out {
        let demo = UserInfo::demo();
        dir.write_user(&demo)
            .map_err(io_err(format!("cannot write {}", dir.user().display())))?;
        log.info("fresh work dir: logged in as the demo account");
    }
    let mut login = LoginState {
        user: dir.read_user(),
        expired: false,
    };
    match &login.user {
        None => log.info("No cached user info, please login."),
        Some(u) => {
            log.info(&format!("cached user info found: {} ({})", u.name, u.uid));
            if u.is_expired(unix_millis()) || cfg.faults.expired == Some(true) {
                login.expired = true;
                log.warn("token expired, login required");
            }
        }
    }
    let endpoint = cfg
        .endpoint
        .clone()
        .or_else(|| dir.read_endpoint())
        .unwrap_or_default();
    log.info(&format!(
        "endpoint config: {}",
        if endpoint.is_empty() {
            state::DEFAULT_ENDPOINT
        } else {
            &endpoint
        }
    ));
    if !cfg.faults.is_empty() {
        log.info(&format!("simulator faults: {}", cfg.faults));
    }
    Ok(Prepared {
        dir,
        log,
        machine_id,
        login,
        endpoint,
    })
}

impl Simulator {
    /// Prepares the work dir, waits the startup delay, binds both ports and starts serving.
    /// Returns once the readiness line is in `lingma.log`. On a bind error nothing is served.
    pub async fn start(cfg: SimConfig) -> Result<Simulator, SimError> {
        if cfg.socket_port != 0 && cfg.socket_port == cfg.http_port {
            return Err(SimError::SamePort(cfg.socket_port));
        }
        let prepared = prepare(&cfg)?;
        if !cfg.startup_delay.is_zero() {
            tokio::time::sleep(cfg.startup_delay).await;
        }
        let ws = bind("WebSocket", cfg.socket_port).await;
        let http = bind("HTTP", cfg.http_port).await;
        let (ws, http) = match (ws, http) {
            (Ok(w), Ok(h)) => (w, h),
            (Err(e), _) | (_, Err(e)) => {
                prepared.log.warn(&format!("start failed: {e}"));
                return Err(e);
            }
        };
        let ws_addr = ws
            .local_addr()
            .map_err(io_err("cannot read the WebSocket address"))?;
        let http_addr = http
            .local_addr()
            .map_err(io_err("cannot read the HTTP address"))?;
        let log = prepared.log;
        if cfg.socket_port == 0 {
            log.info(&format!("picked free WebSocket port {}", ws_addr.port()));
        }
        if cfg.http_port == 0 {
            log.info(&format!("picked free HTTP port {}", http_addr.port()));
        }
        log.info(&format!("Using http server: {}", http_addr.port()));
        let reqlog = if cfg.request_log {
            let p = prepared.dir.request_log();
            Some(RequestLog::open(&p).map_err(io_err(format!("cannot open {}", p.display())))?)
        } else {
            None
        };
        let sessions = SessionStore::open(&prepared.dir.history())
            .map_err(io_err("cannot open the session store"))?;
        let shared = Arc::new(Shared {
            dir: prepared.dir,
            http_port: http_addr.port(),
            machine_id: prepared.machine_id,
            log,
            reqlog,
            login: Mutex::new(prepared.login),
            endpoint: Mutex::new(prepared.endpoint),
            sessions: Mutex::new(sessions),
            nonces: Mutex::new(Nonces::default()),
            conns: Mutex::new(HashMap::new()),
            chats: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
            kill: CancellationToken::new(),
            tasks: TaskTracker::new(),
            cfg,
        });
        let ipc = match &shared.cfg.ipc_socket {
            Some(path) => Some(bind_ipc(path).inspect_err(|e| shared.log.warn(&e.to_string()))?),
            None => None,
        };
        let ws_task = tokio::spawn(server::accept_loop(shared.clone(), ws));
        let http_task = tokio::spawn(http::serve(shared.clone(), http));
        let ipc_task = ipc.map(|l| tokio::spawn(server::ipc_accept_loop(shared.clone(), l)));
        let ipc_name = shared
            .cfg
            .ipc_socket
            .as_ref()
            .map_or_else(|| "none".to_string(), |p| p.display().to_string());
        // The discovery file names ports that already listen, so a reader never finds a runtime
        // that is not there yet.
        if let Some(path) = &shared.cfg.info_file {
            let info = crate::lingma::ide::InfoFile {
                websocket_port: Some(ws_addr.port()),
                pid: Some(std::process::id()),
                ipc_server_path: shared
                    .cfg
                    .ipc_socket
                    .as_ref()
                    .map(|p| p.display().to_string()),
                is_dev: false,
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(io_err(format!("cannot create {}", dir.display())))?;
            }
            crate::util::write_private(path, info.render_for(path).as_bytes())
                .map_err(io_err(format!("cannot write {}", path.display())))?;
            shared
                .log
                .info(&format!("wrote the info file {}", path.display()));
        }
        shared.log.info(&format!(
            "{READY_PREFIX}{}, HTTP: {}, IPC: {ipc_name}",
            ws_addr.port(),
            http_addr.port()
        ));
        Ok(Simulator {
            shared,
            ws_addr,
            http_addr,
            ws_task,
            http_task,
            ipc_task,
        })
    }

    pub fn ws_port(&self) -> u16 {
        self.ws_addr.port()
    }

    pub fn http_port(&self) -> u16 {
        self.http_addr.port()
    }

    pub fn work_dir(&self) -> &Path {
        self.shared.dir.root()
    }

    /// The Unix socket it listens on, if asked to.
    pub fn ipc_socket(&self) -> Option<&Path> {
        self.shared.cfg.ipc_socket.as_deref()
    }

    /// A token that stops the simulator gracefully when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Waits until the simulator is told to stop, then closes every connection (with a close
    /// frame unless it crashed), lets the streams end and returns.
    pub async fn wait(self) -> SimExit {
        self.shared.shutdown.cancelled().await;
        let crashed = self.shared.kill.is_cancelled();
        if !crashed {
            self.shared.log.info("shutting down");
        }
        let _ = self.ws_task.await;
        if let Some(t) = self.ipc_task {
            let _ = t.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), self.http_task).await;
        // What a runtime leaves for its clients goes with it, unless it crashed (then a stale
        // info file names a dead pid, as after a real crash).
        if !crashed {
            if let Some(p) = &self.shared.cfg.info_file {
                let _ = std::fs::remove_file(p);
            }
            if let Some(p) = &self.shared.cfg.ipc_socket {
                let _ = std::fs::remove_file(p);
            }
        }
        self.shared.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(3), self.shared.tasks.wait()).await;
        if crashed {
            SimExit::Crashed
        } else {
            self.shared.log.info("shutdown complete");
            SimExit::Clean
        }
    }
}

/// Runs a simulator until SIGINT or SIGTERM (also during the startup delay), then stops it
/// cleanly. This is `lingma-gw sim start`.
pub async fn run_until_signal(cfg: SimConfig) -> Result<SimExit, SimError> {
    let signals = CancellationToken::new();
    let watcher = {
        let signals = signals.clone();
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(io_err("cannot install the SIGINT handler"))?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(io_err("cannot install the SIGTERM handler"))?;
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            signals.cancel();
        })
    };
    let sim = tokio::select! {
        s = Simulator::start(cfg) => s?,
        _ = signals.cancelled() => return Ok(SimExit::Clean),
    };
    let token = sim.shutdown_token();
    let stop_on_signal = {
        let signals = signals.clone();
        tokio::spawn(async move {
            signals.cancelled().await;
            token.cancel();
        })
    };
    let exit = sim.wait().await;
    stop_on_signal.abort();
    watcher.abort();
    Ok(exit)
}
