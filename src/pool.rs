//! The pool of Lingma instances: each instance's supervisor (start, health, restart with backoff,
//! stop), its explicit state machine, its set of WebSocket connections, and selection for the
//! gateway (least loaded, rendezvous affinity, by name).
//!
//! Each instance has one supervisor task. The request path never makes an extra RPC: auth status
//! and the model registry are cached here and refreshed by the supervisor's health check.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::lingma::discovery::{InstanceFile, LingmaBinary, live_instance};
use crate::lingma::process::{LingmaProcess, Ports, free_port, port_is_free};
use crate::lingma::rpc::RpcError;
use crate::lingma::{AuthStatus, ClientOptions, LingmaClient, LingmaError, ModelRegistry};

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

/// The states of an instance. Transitions are logged; the gateway exports them as metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    Starting,
    Ready,
    NotLoggedIn,
    Unhealthy,
    Restarting,
    /// Crash loop: restarts continue at the backoff ceiling.
    Failed,
    /// Takes no new chats until restarted.
    Draining,
    Stopping,
    Stopped,
}

impl InstanceState {
    pub const ALL: [InstanceState; 9] = [
        Self::Starting,
        Self::Ready,
        Self::NotLoggedIn,
        Self::Unhealthy,
        Self::Restarting,
        Self::Failed,
        Self::Draining,
        Self::Stopping,
        Self::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::NotLoggedIn => "not_logged_in",
            Self::Unhealthy => "unhealthy",
            Self::Restarting => "restarting",
            Self::Failed => "failed",
            Self::Draining => "draining",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        }
    }

    /// States in which start-up is over, one way or the other.
    fn settled(self) -> bool {
        matches!(
            self,
            Self::Ready | Self::NotLoggedIn | Self::Failed | Self::Stopped
        )
    }
}

impl std::fmt::Display for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Restart pacing.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// This many exits within `window` is a crash loop.
    pub crash_limit: usize,
    pub window: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
            crash_limit: 3,
            window: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// Delay before restart number `attempt` (1-based), with ±25% jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(16)));
        let capped = exp.min(self.max);
        let jitter = rand::rng().random_range(0.75..1.25);
        capped.mul_f64(jitter).min(self.max)
    }
}

#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub name: String,
    /// A directory copied, or a session bundle file installed, into the work dir when it is not
    /// logged in (a session seed).
    pub seed_dir: Option<PathBuf>,
    pub account: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub binary: LingmaBinary,
    pub work_root: PathBuf,
    pub instances: Vec<InstanceSpec>,
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

/// How the gateway picks an instance.
#[derive(Debug, Clone)]
pub enum Selection {
    /// The least loaded ready instance.
    Any,
    /// The same instance for the same key while it is ready (rendezvous hashing). `strict`: wait
    /// for that instance even when it is busy (it holds the conversation's upstream session).
    Affinity {
        key: String,
        strict: bool,
    },
    Named(String),
    /// The least loaded ready instance other than this one (failing over); this one when it is
    /// the only one ready.
    Other(String),
}

/// A point-in-time view of one instance.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceSnapshot {
    pub name: String,
    pub state: InstanceState,
    pub pid: Option<u32>,
    pub socket_port: Option<u16>,
    pub http_port: Option<u16>,
    pub in_flight: usize,
    pub capacity: usize,
    pub restarts: u64,
    pub epoch: u64,
    pub account: Option<String>,
    pub user: Option<String>,
    pub models: usize,
    pub last_error: Option<String>,
    pub work_dir: PathBuf,
}

struct Status {
    state: InstanceState,
    pid: Option<u32>,
    ports: Option<Ports>,
    auth: Option<AuthStatus>,
    models: Arc<ModelRegistry>,
    last_error: Option<String>,
    restarts: u64,
    /// Incremented on every (re)start: connections of an older epoch are never reused.
    epoch: u64,
}

enum Control {
    Restart,
    Drain,
    Refresh,
}

struct Instance {
    spec: InstanceSpec,
    work_dir: PathBuf,
    status: Mutex<Status>,
    state_tx: watch::Sender<InstanceState>,
    idle: Mutex<Vec<(u64, LingmaClient)>>,
    slots: Arc<Semaphore>,
    capacity: usize,
    in_flight: AtomicUsize,
    control: mpsc::UnboundedSender<Control>,
}

impl Instance {
    fn state(&self) -> InstanceState {
        *self.state_tx.borrow()
    }

    fn set_state(&self, state: InstanceState, error: Option<String>) {
        let mut st = lock(&self.status);
        let old = st.state;
        st.state = state;
        if error.is_some() {
            st.last_error = error.clone();
        }
        drop(st);
        if old != state {
            match &error {
                Some(e) => {
                    tracing::warn!(instance = %self.spec.name, from = %old, to = %state, error = %e, "instance state")
                }
                None => {
                    tracing::info!(instance = %self.spec.name, from = %old, to = %state, "instance state")
                }
            }
        }
        self.state_tx.send_replace(state);
    }

    fn snapshot(&self) -> InstanceSnapshot {
        let st = lock(&self.status);
        InstanceSnapshot {
            name: self.spec.name.clone(),
            state: st.state,
            pid: st.pid,
            socket_port: st.ports.map(|p| p.socket),
            http_port: st.ports.map(|p| p.http),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            capacity: self.capacity,
            restarts: st.restarts,
            epoch: st.epoch,
            account: self.spec.account.clone(),
            user: st
                .auth
                .as_ref()
                .filter(|a| a.logged_in())
                .map(|a| a.name.clone()),
            models: st.models.models.len(),
            last_error: st.last_error.clone(),
            work_dir: self.work_dir.clone(),
        }
    }

    fn load(&self) -> f64 {
        self.in_flight.load(Ordering::Relaxed) as f64 / self.capacity.max(1) as f64
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Critical sections here only assign fields; a poisoned lock holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A checked-out connection to one instance. Dropping it returns the connection, unless
/// [`Lease::discard`] was called (the chat did not end cleanly, so the connection may still be busy).
pub struct Lease {
    instance: Arc<Instance>,
    client: LingmaClient,
    epoch: u64,
    models: Arc<ModelRegistry>,
    discard: bool,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    pub fn client(&self) -> &LingmaClient {
        &self.client
    }

    pub fn instance(&self) -> &str {
        &self.instance.spec.name
    }

    /// The instance's start number; an upstream session is valid only within one epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn models(&self) -> &ModelRegistry {
        &self.models
    }

    /// The connection is not returned to the pool when this lease drops.
    pub fn discard(&mut self) {
        self.discard = true;
    }

    /// Undoes [`Lease::discard`]: the connection is known to be idle again.
    pub fn keep(&mut self) {
        self.discard = false;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.instance.in_flight.fetch_sub(1, Ordering::Relaxed);
        let current = lock(&self.instance.status).epoch;
        if self.discard || self.client.is_closed() || self.epoch != current {
            return;
        }
        lock(&self.instance.idle).push((self.epoch, self.client.clone()));
    }
}

pub struct Pool {
    instances: Vec<Arc<Instance>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    client_opts: ClientOptions,
    started: Instant,
    started_unix: u64,
}

struct Supervisor {
    inst: Arc<Instance>,
    cfg: Arc<PoolConfig>,
    ports: Arc<Mutex<HashSet<u16>>>,
    cancel: CancellationToken,
    control: mpsc::UnboundedReceiver<Control>,
}

impl Pool {
    /// Starts every instance concurrently and returns at once; see [`Pool::wait_settled`].
    pub fn start(cfg: PoolConfig) -> Result<Arc<Pool>, PoolError> {
        let cfg = Arc::new(cfg);
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let ports = Arc::new(Mutex::new(HashSet::new()));
        let mut instances = Vec::new();
        // Check every work dir before starting anything, so a refusal leaves nothing running.
        for spec in &cfg.instances {
            let work_dir = cfg.work_root.join(&spec.name);
            if let Some(f) = live_instance(&work_dir)
                && f.owner_pid != std::process::id()
            {
                return Err(PoolError::InUse {
                    work_dir,
                    pid: f.owner_pid,
                });
            }
        }
        for spec in &cfg.instances {
            let work_dir = cfg.work_root.join(&spec.name);
            let (control_tx, control_rx) = mpsc::unbounded_channel();
            let inst = Arc::new(Instance {
                spec: spec.clone(),
                work_dir,
                status: Mutex::new(Status {
                    state: InstanceState::Starting,
                    pid: None,
                    ports: None,
                    auth: None,
                    models: Arc::new(ModelRegistry::default()),
                    last_error: None,
                    restarts: 0,
                    epoch: 0,
                }),
                state_tx: watch::channel(InstanceState::Starting).0,
                idle: Mutex::new(Vec::new()),
                slots: Arc::new(Semaphore::new(cfg.connections_per_instance)),
                capacity: cfg.connections_per_instance,
                in_flight: AtomicUsize::new(0),
                control: control_tx,
            });
            let sup = Supervisor {
                inst: inst.clone(),
                cfg: cfg.clone(),
                ports: ports.clone(),
                cancel: cancel.child_token(),
                control: control_rx,
            };
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
            started_unix: now_secs(),
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

    /// Restarts one instance (admin endpoint).
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

    pub fn work_dir(&self, name: &str) -> Result<PathBuf, PoolError> {
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

    /// Checks out a connection. Waits at most `wait` for a free one, and, when no instance is
    /// ready but some are starting or restarting, for one of them to become ready.
    pub async fn acquire(&self, sel: &Selection, wait: Duration) -> Result<Lease, PoolError> {
        let started = tokio::time::Instant::now();
        if !matches!(sel, Selection::Named(_)) {
            self.wait_for_ready(started + wait).await?;
        }
        let wait = wait.saturating_sub(started.elapsed());
        let ready: Vec<&Arc<Instance>> = self
            .instances
            .iter()
            .filter(|i| i.state() == InstanceState::Ready)
            .collect();
        let (target, strict) = match sel {
            Selection::Named(name) => {
                let inst = self.find(name)?;
                match inst.state() {
                    InstanceState::Ready => (inst, true),
                    InstanceState::NotLoggedIn => {
                        return Err(PoolError::NotLoggedIn {
                            instance: name.clone(),
                        });
                    }
                    state => {
                        return Err(PoolError::NotReady {
                            name: name.clone(),
                            state,
                        });
                    }
                }
            }
            _ if ready.is_empty() => return Err(self.nothing_ready()),
            Selection::Affinity { key, strict } => (rendezvous(key, &ready), *strict),
            Selection::Any => (least_loaded(&ready), false),
            Selection::Other(name) => {
                let others: Vec<&Arc<Instance>> = ready
                    .iter()
                    .filter(|i| i.spec.name != *name)
                    .copied()
                    .collect();
                if others.is_empty() {
                    (least_loaded(&ready), false)
                } else {
                    (least_loaded(&others), false)
                }
            }
        };
        let permit = match target.slots.clone().try_acquire_owned() {
            Ok(p) => Some((target, p)),
            Err(_) if !strict => {
                // Least loaded first; only the permit that is kept is ever taken.
                let mut others: Vec<&Arc<Instance>> = ready
                    .iter()
                    .filter(|i| !Arc::ptr_eq(i, target))
                    .copied()
                    .collect();
                others.sort_by(|a, b| a.load().total_cmp(&b.load()));
                others
                    .into_iter()
                    .find_map(|i| i.slots.clone().try_acquire_owned().ok().map(|p| (i, p)))
            }
            Err(_) => None,
        };
        let (inst, permit) = match permit {
            Some(found) => found,
            None => {
                let p = tokio::time::timeout(wait, target.slots.clone().acquire_owned())
                    .await
                    .map_err(|_| PoolError::Busy(target.spec.name.clone()))?
                    .map_err(|_| PoolError::Busy(target.spec.name.clone()))?;
                (target, p)
            }
        };
        self.lease(inst.clone(), permit).await
    }

    /// Returns once an instance is ready; waits (until `deadline`) only while some instance is in
    /// a state that ends by itself (starting, restarting, unhealthy); otherwise fails at once.
    async fn wait_for_ready(&self, deadline: tokio::time::Instant) -> Result<(), PoolError> {
        loop {
            // Subscribe before looking, so a change right after the look is not missed.
            let mut watches: Vec<_> = self
                .instances
                .iter()
                .map(|i| i.state_tx.subscribe())
                .collect();
            let states: Vec<InstanceState> = watches
                .iter_mut()
                .map(|rx| *rx.borrow_and_update())
                .collect();
            if states.contains(&InstanceState::Ready) {
                return Ok(());
            }
            let coming = states.iter().any(|s| {
                matches!(
                    s,
                    InstanceState::Starting | InstanceState::Restarting | InstanceState::Unhealthy
                )
            });
            if !coming {
                return Err(self.nothing_ready());
            }
            let changed = futures_util::future::select_all(
                watches.iter_mut().map(|rx| Box::pin(rx.changed())),
            );
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(self.nothing_ready());
            }
        }
    }

    fn nothing_ready(&self) -> PoolError {
        match self
            .instances
            .iter()
            .find(|i| i.state() == InstanceState::NotLoggedIn)
        {
            Some(i) => PoolError::NotLoggedIn {
                instance: i.spec.name.clone(),
            },
            None => PoolError::NoInstanceReady,
        }
    }

    async fn lease(
        &self,
        inst: Arc<Instance>,
        permit: OwnedSemaphorePermit,
    ) -> Result<Lease, PoolError> {
        let (epoch, ports, models) = {
            let st = lock(&inst.status);
            (st.epoch, st.ports, st.models.clone())
        };
        let reused = {
            let mut idle = lock(&inst.idle);
            let mut found = None;
            while let Some((e, c)) = idle.pop() {
                if e == epoch && !c.is_closed() {
                    found = Some(c);
                    break;
                }
            }
            found
        };
        let client = match reused {
            Some(c) => c,
            None => {
                let ports = ports.ok_or_else(|| PoolError::Connect {
                    instance: inst.spec.name.clone(),
                    reason: "instance has no ports yet".into(),
                })?;
                LingmaClient::connect(
                    &ports.ws_url(),
                    &workspace(&inst.work_dir),
                    self.client_opts.clone(),
                )
                .await
                .map_err(|e| {
                    // Let the supervisor look now rather than at its next health check.
                    let _ = inst.control.send(Control::Refresh);
                    PoolError::Connect {
                        instance: inst.spec.name.clone(),
                        reason: e.to_string(),
                    }
                })?
            }
        };
        inst.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(Lease {
            instance: inst,
            client,
            epoch,
            models,
            discard: false,
            _permit: permit,
        })
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

fn least_loaded<'a>(ready: &[&'a Arc<Instance>]) -> &'a Arc<Instance> {
    ready
        .iter()
        .min_by(|a, b| a.load().total_cmp(&b.load()))
        .copied()
        .unwrap_or(ready[0])
}

/// Highest random weight: each key goes to the instance with the largest hash(key, name), so
/// when an instance leaves only its keys move.
fn rendezvous<'a>(key: &str, ready: &[&'a Arc<Instance>]) -> &'a Arc<Instance> {
    ready
        .iter()
        .max_by_key(|i| rendezvous_score(key, &i.spec.name))
        .copied()
        .unwrap_or(ready[0])
}

pub fn rendezvous_score(key: &str, name: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    0xffu8.hash(&mut h);
    name.hash(&mut h);
    h.finish()
}

/// The folder given to Lingma as the workspace of every connection.
pub fn workspace(work_dir: &Path) -> PathBuf {
    work_dir.join("workspace")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

enum RunEnd {
    Cancelled,
    Restart { reason: String, crashed: bool },
}

impl Supervisor {
    async fn run(mut self) {
        let mut exits: Vec<Instant> = Vec::new();
        let mut attempt: u32 = 0;
        loop {
            if self.cancel.is_cancelled() {
                break;
            }
            let started = Instant::now();
            let end = self.run_once().await;
            let (reason, crashed) = match end {
                RunEnd::Cancelled => break,
                RunEnd::Restart { reason, crashed } => (reason, crashed),
            };
            lock(&self.inst.status).restarts += 1;
            if started.elapsed() > self.cfg.backoff.window {
                attempt = 0;
                exits.clear();
            }
            attempt += 1;
            let now = Instant::now();
            if crashed {
                exits.push(now);
            }
            exits.retain(|t| now.duration_since(*t) <= self.cfg.backoff.window);
            let crash_loop = exits.len() >= self.cfg.backoff.crash_limit;
            let delay = if crash_loop {
                self.cfg.backoff.max
            } else if crashed {
                self.cfg.backoff.delay(attempt)
            } else {
                Duration::ZERO
            };
            let state = if crash_loop {
                InstanceState::Failed
            } else {
                InstanceState::Restarting
            };
            self.inst.set_state(state, Some(reason));
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
                Some(Control::Restart) = self.control.recv() => {}
            }
        }
        self.inst.set_state(InstanceState::Stopped, None);
    }

    fn allocate_ports(&self) -> Result<Ports, String> {
        let mut taken = lock(&self.ports);
        let ok = |p: u16, taken: &HashSet<u16>| !taken.contains(&p) && port_is_free(p);
        if let Some(base) = self.cfg.socket_port {
            for socket in base..base.saturating_add(400) {
                let Some(http) = socket.checked_add(500) else {
                    break;
                };
                if ok(socket, &taken) && ok(http, &taken) {
                    taken.insert(socket);
                    taken.insert(http);
                    return Ok(Ports { socket, http });
                }
            }
            return Err(format!(
                "no free port pair in {base}..{}",
                base.saturating_add(400)
            ));
        }
        for _ in 0..50 {
            let socket = free_port().map_err(|e| e.to_string())?;
            let http = free_port().map_err(|e| e.to_string())?;
            if socket != http && !taken.contains(&socket) && !taken.contains(&http) {
                taken.insert(socket);
                taken.insert(http);
                return Ok(Ports { socket, http });
            }
        }
        Err("could not find two free ports".into())
    }

    fn release_ports(&self, ports: Ports) {
        let mut taken = lock(&self.ports);
        taken.remove(&ports.socket);
        taken.remove(&ports.http);
    }

    /// One life of the child: start, serve, end.
    async fn run_once(&mut self) -> RunEnd {
        let name = self.inst.spec.name.clone();
        let epoch = {
            let mut st = lock(&self.inst.status);
            st.epoch += 1;
            st.pid = None;
            st.auth = None;
            st.epoch
        };
        lock(&self.inst.idle).clear();
        if self.inst.state() != InstanceState::Failed {
            let s = if epoch == 1 {
                InstanceState::Starting
            } else {
                InstanceState::Restarting
            };
            self.inst.set_state(s, None);
        }
        if let Err(e) = seed_work_dir(&self.inst.work_dir, self.inst.spec.seed_dir.as_deref()) {
            return RunEnd::Restart {
                reason: format!("cannot seed work dir: {e}"),
                crashed: true,
            };
        }
        let ports = match self.allocate_ports() {
            Ok(p) => p,
            Err(e) => {
                return RunEnd::Restart {
                    reason: e,
                    crashed: true,
                };
            }
        };
        let end = self.run_with_ports(ports, epoch, &name).await;
        self.release_ports(ports);
        InstanceFile::remove_if_owned(&self.inst.work_dir, std::process::id());
        lock(&self.inst.status).pid = None;
        end
    }

    async fn run_with_ports(&mut self, ports: Ports, epoch: u64, name: &str) -> RunEnd {
        let workspace = workspace(&self.inst.work_dir);
        if let Err(e) = std::fs::create_dir_all(&workspace) {
            return RunEnd::Restart {
                reason: format!("cannot create {}: {e}", workspace.display()),
                crashed: true,
            };
        }
        let mut proc =
            match LingmaProcess::spawn(&self.cfg.binary, &self.inst.work_dir, ports, name) {
                Ok(p) => p,
                Err(e) => {
                    return RunEnd::Restart {
                        reason: e.to_string(),
                        crashed: true,
                    };
                }
            };
        {
            let mut st = lock(&self.inst.status);
            st.pid = Some(proc.pid());
            st.ports = Some(ports);
        }
        let ready = tokio::select! {
            r = proc.wait_ready(&workspace, &self.cfg.client, self.cfg.startup_timeout) => r,
            _ = self.cancel.cancelled() => {
                self.inst.set_state(InstanceState::Stopping, None);
                proc.stop(self.cfg.stop_grace).await;
                return RunEnd::Cancelled;
            }
        };
        let health = match ready {
            Ok(c) => c,
            Err(e) => {
                proc.stop(self.cfg.stop_grace).await;
                return RunEnd::Restart {
                    reason: e.to_string(),
                    crashed: true,
                };
            }
        };
        let file = InstanceFile {
            name: name.to_string(),
            owner_pid: std::process::id(),
            lingma_pid: proc.pid(),
            socket_port: ports.socket,
            http_port: ports.http,
            started_at: now_secs(),
        };
        if let Err(e) = file.write(&self.inst.work_dir) {
            tracing::warn!(instance = %name, error = %e, "cannot write the instance file; terminal commands will not attach");
        }
        // Open the chat connections now so the first chats do not pay for the handshake.
        let mut warm = Vec::new();
        for _ in 0..self.cfg.connections_per_instance {
            match LingmaClient::connect(&ports.ws_url(), &workspace, self.cfg.client.clone()).await
            {
                Ok(c) => warm.push((epoch, c)),
                Err(e) => {
                    tracing::debug!(instance = %name, error = %e, "could not pre-open a connection");
                    break;
                }
            }
        }
        lock(&self.inst.idle).extend(warm);
        let mut health = health;
        let mut events = Some(health.subscribe());
        let mut failures = 0u32;
        let mut drained = false;
        if let Err(e) = self.refresh(&health, drained).await {
            failures += 1;
            self.inst
                .set_state(InstanceState::Unhealthy, Some(e.to_string()));
        }
        let mut tick = tokio::time::interval(self.cfg.health_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => {
                    self.inst.set_state(InstanceState::Stopping, None);
                    lock(&self.inst.idle).clear();
                    health.close().await;
                    proc.stop(self.cfg.stop_grace).await;
                    return RunEnd::Cancelled;
                }
                status = proc.wait_exit() => {
                    lock(&self.inst.idle).clear();
                    return RunEnd::Restart { reason: format!("Lingma exited ({status})"), crashed: true };
                }
                ctl = self.control.recv() => match ctl {
                    Some(Control::Restart) => {
                        self.inst.set_state(InstanceState::Restarting, Some("restart requested".into()));
                        lock(&self.inst.idle).clear();
                        proc.stop(self.cfg.stop_grace).await;
                        return RunEnd::Restart { reason: "restart requested".into(), crashed: false };
                    }
                    Some(Control::Drain) => {
                        drained = true;
                        self.inst.set_state(InstanceState::Draining, None);
                    }
                    Some(Control::Refresh) => {
                        let _ = self.refresh(&health, drained).await;
                    }
                    None => {}
                },
                msg = next_push(&mut events) => {
                    match msg {
                        // A login finished (auth/report) or tokens changed: look again now.
                        Some(m) if m.method.starts_with("auth/") => {
                            let _ = self.refresh(&health, drained).await;
                        }
                        Some(_) => {}
                        None => {
                            // The health connection closed; the next tick reconnects.
                            events = None;
                        }
                    }
                }
                _ = tick.tick() => {
                    if health.is_closed() {
                        match LingmaClient::connect(&ports.ws_url(), &workspace, self.cfg.client.clone()).await {
                            Ok(c) => {
                                health = c;
                                events = Some(health.subscribe());
                            }
                            Err(e) => {
                                failures += 1;
                                self.inst.set_state(InstanceState::Unhealthy, Some(e.to_string()));
                                if failures >= self.cfg.health_failures {
                                    proc.kill().await;
                                    return RunEnd::Restart { reason: format!("stopped answering: {e}"), crashed: true };
                                }
                                continue;
                            }
                        }
                    }
                    // A hung Lingma must not hold up shutdown or the notice of its exit.
                    let check_timeout = self.cfg.client.rpc_timeout.min(Duration::from_secs(10));
                    let checked = tokio::select! {
                        r = tokio::time::timeout(check_timeout, self.refresh(&health, drained)) => {
                            r.unwrap_or_else(|_| Err(LingmaError::Rpc(RpcError::Timeout {
                                method: "health check".into(),
                                timeout: check_timeout,
                            })))
                        }
                        _ = self.cancel.cancelled() => {
                            self.inst.set_state(InstanceState::Stopping, None);
                            lock(&self.inst.idle).clear();
                            proc.stop(self.cfg.stop_grace).await;
                            return RunEnd::Cancelled;
                        }
                        status = proc.wait_exit() => {
                            lock(&self.inst.idle).clear();
                            return RunEnd::Restart { reason: format!("Lingma exited ({status})"), crashed: true };
                        }
                    };
                    match checked {
                        Ok(()) => failures = 0,
                        Err(e) => {
                            failures += 1;
                            self.inst.set_state(InstanceState::Unhealthy, Some(e.to_string()));
                            if failures >= self.cfg.health_failures {
                                proc.kill().await;
                                return RunEnd::Restart { reason: format!("stopped answering: {e}"), crashed: true };
                            }
                        }
                    }
                }
            }
        }
    }

    /// Reads auth status (and models when logged in) and sets the state from them.
    async fn refresh(&self, client: &LingmaClient, drained: bool) -> Result<(), LingmaError> {
        let auth = client.auth_status().await?;
        let models = if auth.logged_in() {
            Some(client.query_models().await?)
        } else {
            None
        };
        let logged_in = auth.logged_in();
        {
            let mut st = lock(&self.inst.status);
            st.auth = Some(auth);
            st.models = Arc::new(models.unwrap_or_default());
        }
        let state = if drained {
            InstanceState::Draining
        } else if logged_in {
            InstanceState::Ready
        } else {
            InstanceState::NotLoggedIn
        };
        self.inst.set_state(state, None);
        Ok(())
    }
}

/// Copies a seed directory into a work dir that is not logged in (no `cache/user`). Files are
/// copied to temporary names and renamed, so a failure never leaves half a file.
/// The next push from a health connection; never, while there is none.
async fn next_push(
    events: &mut Option<mpsc::Receiver<crate::lingma::rpc::ServerMessage>>,
) -> Option<crate::lingma::rpc::ServerMessage> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

pub fn seed_work_dir(work_dir: &Path, seed: Option<&Path>) -> std::io::Result<()> {
    let Some(seed) = seed else {
        return Ok(());
    };
    if work_dir.join("cache/user").exists() {
        return Ok(());
    }
    tracing::info!(work_dir = %work_dir.display(), seed = %seed.display(), "seeding a logged-out work dir");
    if seed.is_file() {
        // A session bundle (`serve` verified and decrypted it at start): checked, atomic install.
        return crate::bundle::seed_from_file(seed, work_dir)
            .map(|_| ())
            .map_err(std::io::Error::other);
    }
    copy_tree(seed, work_dir)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "logs" || name == crate::lingma::discovery::INSTANCE_FILE {
            continue;
        }
        let kind = entry.file_type()?;
        let dest = to.join(&name);
        if kind.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else if kind.is_file() {
            let tmp = to.join(format!(".{}.seed-tmp", name.to_string_lossy()));
            std::fs::copy(entry.path(), &tmp)?;
            std::fs::rename(&tmp, &dest)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            crash_limit: 3,
            window: Duration::from_secs(10),
        };
        assert!(b.delay(1) <= Duration::from_millis(125));
        assert!(b.delay(3) >= Duration::from_millis(300));
        assert!(b.delay(30) <= Duration::from_secs(1));
    }

    #[test]
    fn rendezvous_moves_few_keys() {
        let names3 = ["inst-0", "inst-1", "inst-2"];
        let names2 = ["inst-0", "inst-1"];
        let pick = |key: &str, names: &[&str]| {
            names
                .iter()
                .max_by_key(|n| rendezvous_score(key, n))
                .map(|s| s.to_string())
                .unwrap()
        };
        let mut moved = 0;
        let mut counts = std::collections::HashMap::new();
        for i in 0..3000 {
            let key = format!("conversation-{i}");
            let a = pick(&key, &names3);
            *counts.entry(a.clone()).or_insert(0) += 1;
            let b = pick(&key, &names2);
            if a != "inst-2" {
                assert_eq!(a, b, "a key not on the removed instance must not move");
            } else {
                moved += 1;
            }
        }
        assert!(moved > 700 && moved < 1300, "about a third moves: {moved}");
        assert!(counts.values().all(|&c| c > 700), "balanced: {counts:?}");
    }

    #[test]
    fn seeding_skips_logged_in_dirs_and_logs() {
        let seed = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(seed.path().join("cache")).unwrap();
        std::fs::create_dir_all(seed.path().join("logs")).unwrap();
        std::fs::write(seed.path().join("cache/user"), b"u").unwrap();
        std::fs::write(seed.path().join("cache/id"), b"i").unwrap();
        std::fs::write(seed.path().join("logs/lingma.log"), b"l").unwrap();
        let wd = tempfile::tempdir().unwrap();
        seed_work_dir(wd.path(), Some(seed.path())).unwrap();
        assert_eq!(std::fs::read(wd.path().join("cache/user")).unwrap(), b"u");
        assert!(!wd.path().join("logs").exists());
        std::fs::write(wd.path().join("cache/user"), b"mine").unwrap();
        seed_work_dir(wd.path(), Some(seed.path())).unwrap();
        assert_eq!(
            std::fs::read(wd.path().join("cache/user")).unwrap(),
            b"mine"
        );
    }
}
