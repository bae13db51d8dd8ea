//! One instance as the pool holds it: its explicit state machine, the status its supervisor keeps
//! up to date (pid, ports or endpoint, dialect, auth, models, restarts, epoch), its idle
//! connections and its slots, and the point-in-time view the gateway reports. An instance is
//! either spawned (its supervisor owns the process) or attached (a runtime something else runs,
//! which the pool only connects to).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, watch};

use super::InstanceSpec;
use crate::lingma::ports::Ports;
use crate::lingma::{AuthStatus, Dialect, Endpoint, LingmaClient, ModelRegistry, WorkDir};
use crate::util::lock;

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
    /// An attached runtime went away (its process ended, or it cannot be reached); it is
    /// attached again once discovery finds a live one.
    Gone,
}

impl InstanceState {
    pub const ALL: [InstanceState; 10] = [
        Self::Starting,
        Self::Ready,
        Self::NotLoggedIn,
        Self::Unhealthy,
        Self::Restarting,
        Self::Failed,
        Self::Draining,
        Self::Stopping,
        Self::Stopped,
        Self::Gone,
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
            Self::Gone => "gone",
        }
    }

    /// States in which start-up is over, one way or the other.
    pub fn settled(self) -> bool {
        matches!(
            self,
            Self::Ready | Self::NotLoggedIn | Self::Failed | Self::Stopped | Self::Gone
        )
    }
}

impl std::fmt::Display for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point-in-time view of one instance.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceSnapshot {
    pub name: String,
    pub state: InstanceState,
    /// A runtime lingma-gw attached to and never starts, stops or logs in or out.
    pub attached: bool,
    /// The dialect it speaks, once known.
    pub dialect: Option<Dialect>,
    /// Where it takes connections (`ws://…` or `unix:…`).
    pub endpoint: Option<String>,
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

pub(super) struct Status {
    pub(super) state: InstanceState,
    pub(super) pid: Option<u32>,
    pub(super) ports: Option<Ports>,
    /// Where new connections go (the spawned child's WebSocket, or the attached runtime).
    pub(super) endpoint: Option<Endpoint>,
    /// Found by the supervisor once per life: connections made later speak it without asking.
    pub(super) dialect: Option<Dialect>,
    pub(super) auth: Option<AuthStatus>,
    pub(super) models: Arc<ModelRegistry>,
    pub(super) last_error: Option<String>,
    pub(super) restarts: u64,
    /// Incremented on every (re)start: connections of an older epoch are never reused.
    pub(super) epoch: u64,
}

/// What the pool asks of an instance's supervisor.
pub(super) enum Control {
    Restart,
    Drain,
    Refresh,
}

pub(super) struct Instance {
    pub(super) spec: InstanceSpec,
    pub(super) attached: bool,
    pub(super) work_dir: WorkDir,
    pub(super) status: Mutex<Status>,
    pub(super) state_tx: watch::Sender<InstanceState>,
    pub(super) idle: Mutex<Vec<(u64, LingmaClient)>>,
    pub(super) slots: Arc<Semaphore>,
    pub(super) capacity: usize,
    pub(super) in_flight: AtomicUsize,
    pub(super) control: mpsc::UnboundedSender<Control>,
}

impl Instance {
    /// A starting instance with `capacity` connection slots, controlled through `control`.
    pub(super) fn new(
        spec: InstanceSpec,
        attached: bool,
        work_dir: WorkDir,
        capacity: usize,
        control: mpsc::UnboundedSender<Control>,
    ) -> Self {
        Self {
            spec,
            attached,
            work_dir,
            status: Mutex::new(Status {
                state: InstanceState::Starting,
                pid: None,
                ports: None,
                endpoint: None,
                dialect: None,
                auth: None,
                models: Arc::new(ModelRegistry::default()),
                last_error: None,
                restarts: 0,
                epoch: 0,
            }),
            state_tx: watch::channel(InstanceState::Starting).0,
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            in_flight: AtomicUsize::new(0),
            control,
        }
    }

    pub(super) fn state(&self) -> InstanceState {
        *self.state_tx.borrow()
    }

    pub(super) fn set_state(&self, state: InstanceState, error: Option<String>) {
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

    pub(super) fn snapshot(&self) -> InstanceSnapshot {
        let st = lock(&self.status);
        InstanceSnapshot {
            name: self.spec.name.clone(),
            state: st.state,
            attached: self.attached,
            dialect: st.dialect,
            endpoint: st.endpoint.as_ref().map(Endpoint::to_string),
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
            work_dir: self.work_dir.root().to_path_buf(),
        }
    }

    /// In-flight chats over slots: what least-loaded selection compares.
    pub(super) fn load(&self) -> f64 {
        self.in_flight.load(Ordering::Relaxed) as f64 / self.capacity.max(1) as f64
    }

    /// Drops the idle connections (they belong to a process that is going away).
    pub(super) fn clear_idle(&self) {
        lock(&self.idle).clear();
    }
}
