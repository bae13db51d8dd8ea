//! The pool of Lingma instances the gateway serves from: its configuration, starting every
//! instance under its supervisor, the operator's controls (restart, drain, refresh), snapshots,
//! and shutdown. `instance` holds one instance's state machine and status, `select` picks an
//! instance for a chat and leases its connections, `supervisor` runs each spawned instance's
//! process, `attached` keeps an attached runtime (one an IDE runs) connected without ever
//! touching its process.
//!
//! The request path never makes an extra RPC: auth status and the model registry are cached here
//! and refreshed by each supervisor's health check.

mod attached;
mod instance;
mod select;
mod supervisor;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bundle::Seed;
use crate::lingma::discovery::{LingmaBinary, live_instance};
use crate::lingma::ide::{AttachSpec, SearchRoots};
use crate::lingma::ports::{PortAllocator, Ports};
use crate::lingma::{ClientOptions, ModelRegistry, WorkDir};
use crate::util::{lock, unix_secs};

use attached::AttachedSupervisor;
use instance::{Control, Instance};
use supervisor::Supervisor;

pub use instance::{InstanceSnapshot, InstanceState};
pub use select::{Lease, Selection};
pub use supervisor::Backoff;

#[derive(Debug, Error, Clone)]
pub enum PoolError {
    #[error("no Lingma instance is ready")]
    NoInstanceReady,
    #[error("instance {instance} is not logged in")]
    NotLoggedIn { instance: String },
    #[error("there is no instance named {0:?}")]
    UnknownInstance(String),
    #[error("instance {name} is {state}")]
    NotReady { name: String, state: InstanceState },
    #[error("timed out waiting for a free connection to instance {0}")]
    Busy(String),
    #[error("cannot connect to instance {instance}: {reason}")]
    Connect { instance: String, reason: String },
    #[error("work dir {work_dir} is already used by lingma-gw process {pid}")]
    InUse { work_dir: PathBuf, pid: u32 },
}

#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub name: String,
    /// Where the work dir's login comes from when it is not logged in.
    pub seed: Option<Seed>,
    pub account: Option<String>,
}

/// A runtime to attach to as a pool member (`--attach`).
#[derive(Debug, Clone)]
pub struct AttachConfig {
    /// The instance's name in the pool (its work dir holds only the workspace folder it names).
    pub name: String,
    pub spec: AttachSpec,
    /// Where `auto` looks.
    pub roots: SearchRoots,
}

/// The name an attached runtime has in the pool.
pub const ATTACHED_NAME: &str = "ide";

#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// What spawned instances run; `None` when every instance is attached.
    pub binary: Option<LingmaBinary>,
    pub work_root: PathBuf,
    /// The instances the pool spawns.
    pub instances: Vec<InstanceSpec>,
    /// A runtime the pool attaches to, beside them.
    pub attach: Option<AttachConfig>,
    /// First socket port to try (`LINGMA_SOCKET_PORT`); HTTP ports are socket + 500.
    pub socket_port: Option<u16>,
    pub startup_timeout: Duration,
    pub connections_per_instance: usize,
    pub health_interval: Duration,
    /// Consecutive failed health checks before a restart.
    pub health_failures: u32,
    pub client: ClientOptions,
    pub stop_grace: Duration,
    pub backoff: Backoff,
}

pub struct Pool {
    instances: Vec<Arc<Instance>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    client_opts: ClientOptions,
    started: Instant,
    started_unix: u64,
}

impl Pool {
    /// Starts every instance concurrently and returns at once; see [`Pool::wait_settled`].
    pub fn start(cfg: PoolConfig) -> Result<Arc<Pool>, PoolError> {
        let cfg = Arc::new(cfg);
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let ports = Arc::new(PortAllocator::new(cfg.socket_port));
        let work_dir = |spec: &InstanceSpec| WorkDir::of_instance(&cfg.work_root, &spec.name);
        // Check every work dir before starting anything, so a refusal leaves nothing running.
        for spec in &cfg.instances {
            let dir = work_dir(spec);
            if let Some(f) = live_instance(&dir)
                && f.owner_pid != std::process::id()
            {
                return Err(PoolError::InUse {
                    work_dir: dir.root().to_path_buf(),
                    pid: f.owner_pid,
                });
            }
        }
        let mut instances = Vec::new();
        if let Some(a) = &cfg.attach {
            let (control_tx, control_rx) = mpsc::unbounded_channel();
            let spec = InstanceSpec {
                name: a.name.clone(),
                seed: None,
                account: None,
            };
            let inst = Arc::new(Instance::new(
                spec.clone(),
                true,
                work_dir(&spec),
                cfg.connections_per_instance,
                control_tx,
            ));
            let sup = AttachedSupervisor::new(
                inst.clone(),
                cfg.clone(),
                a.clone(),
                cancel.child_token(),
                control_rx,
            );
            tracker.spawn(sup.run());
            instances.push(inst);
        }
        for spec in &cfg.instances {
            let (control_tx, control_rx) = mpsc::unbounded_channel();
            let inst = Arc::new(Instance::new(
                spec.clone(),
                false,
                work_dir(spec),
                cfg.connections_per_instance,
                control_tx,
            ));
            let sup = Supervisor::new(
                inst.clone(),
                cfg.clone(),
                ports.clone(),
                cancel.child_token(),
                control_rx,
            );
            tracker.spawn(sup.run());
            instances.push(inst);
        }
        tracker.close();
        Ok(Arc::new(Pool {
            instances,
            cancel,
            tracker,
            client_opts: cfg.client.clone(),
            started: Instant::now(),
            started_unix: unix_secs(),
        }))
    }

    /// Waits until every instance is ready, logged out, failed or stopped, or `timeout` passes.
    pub async fn wait_settled(&self, timeout: Duration) {
        let waits = self.instances.iter().map(|inst| {
            let mut rx = inst.state_tx.subscribe();
            async move {
                let _ = rx.wait_for(|s| s.settled()).await;
            }
        });
        let _ = tokio::time::timeout(timeout, futures_util::future::join_all(waits)).await;
    }

    /// When the pool started, as Unix seconds (the `created` of model objects).
    pub fn started_unix(&self) -> u64 {
        self.started_unix
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn snapshots(&self) -> Vec<InstanceSnapshot> {
        self.instances.iter().map(|i| i.snapshot()).collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.instances.iter().map(|i| i.spec.name.clone()).collect()
    }

    /// The instances the pool runs itself (not attached ones: those are never logged in or out
    /// from here).
    pub fn spawned_names(&self) -> Vec<String> {
        self.instances
            .iter()
            .filter(|i| !i.attached)
            .map(|i| i.spec.name.clone())
            .collect()
    }

    /// Models of the first ready instance (all instances of one account list the same).
    pub fn models(&self) -> Option<Arc<ModelRegistry>> {
        self.instances
            .iter()
            .filter(|i| i.state() == InstanceState::Ready)
            .map(|i| lock(&i.status).models.clone())
            .find(|m| !m.is_empty())
    }

    pub fn any_ready(&self) -> bool {
        self.instances
            .iter()
            .any(|i| i.state() == InstanceState::Ready)
    }

    fn find(&self, name: &str) -> Result<&Arc<Instance>, PoolError> {
        self.instances
            .iter()
            .find(|i| i.spec.name == name)
            .ok_or_else(|| PoolError::UnknownInstance(name.to_string()))
    }

    /// Restarts one instance (admin endpoint); an attached one is only reconnected (found again,
    /// its connections reopened): its process is not the pool's to restart.
    pub fn restart(&self, name: &str) -> Result<(), PoolError> {
        let _ = self.find(name)?.control.send(Control::Restart);
        Ok(())
    }

    /// Stops giving one instance new chats; running ones finish. A restart undoes it.
    pub fn drain(&self, name: &str) -> Result<(), PoolError> {
        let _ = self.find(name)?.control.send(Control::Drain);
        Ok(())
    }

    /// Asks one instance to refresh its auth status and models now (after a login).
    pub fn refresh(&self, name: &str) -> Result<(), PoolError> {
        let _ = self.find(name)?.control.send(Control::Refresh);
        Ok(())
    }

    /// The ports of an instance, for commands that talk to it directly (login).
    pub fn ports(&self, name: &str) -> Result<Option<Ports>, PoolError> {
        Ok(lock(&self.find(name)?.status).ports)
    }

    pub fn work_dir(&self, name: &str) -> Result<WorkDir, PoolError> {
        Ok(self.find(name)?.work_dir.clone())
    }

    /// Waits until the named instance reaches a state accepted by `pred`, up to `timeout`.
    pub async fn wait_state(
        &self,
        name: &str,
        timeout: Duration,
        pred: impl Fn(InstanceState) -> bool,
    ) -> Result<InstanceState, PoolError> {
        let mut rx = self.find(name)?.state_tx.subscribe();
        let reached = match tokio::time::timeout(timeout, rx.wait_for(|s| pred(*s))).await {
            Ok(Ok(s)) => Some(*s),
            _ => None,
        };
        Ok(reached.unwrap_or_else(|| *rx.borrow()))
    }

    /// Stops every instance (SIGTERM, grace, SIGKILL) and waits for all of them.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.wait().await;
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Supervisors own their children with kill_on_drop; cancelling makes them stop in order
        // if the runtime keeps running.
        self.cancel.cancel();
    }
}
