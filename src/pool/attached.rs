//! An attached instance's supervisor: the runtime belongs to someone else (the user's IDE, most
//! often; §12.3), so this task only finds it (`lingma::ide`), connects, learns its dialect, keeps
//! warm connections and checks health, and never starts, stops, restarts, logs in or logs out
//! anything. When the runtime's process ends, or it can no longer be reached, the instance is
//! `gone`; the task then looks again every health interval and attaches to whatever live runtime
//! discovery names next (a restarted IDE writes a new info file).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::instance::{Control, Instance, InstanceState};
use super::supervisor::{next_push, refresh};
use super::{AttachConfig, PoolConfig};
use crate::lingma::discovery::pid_alive;
use crate::lingma::ide::{self, Runtime};
use crate::lingma::{LingmaClient, LingmaError};
use crate::util::lock;

/// How one attachment ended.
enum Detach {
    /// The pool is shutting down.
    Cancelled,
    /// The runtime went away (or was never found): why.
    Gone(String),
    /// An operator asked for a restart: find the runtime again and reconnect.
    Reattach,
}

pub(super) struct AttachedSupervisor {
    inst: Arc<Instance>,
    cfg: Arc<PoolConfig>,
    attach: AttachConfig,
    cancel: CancellationToken,
    control: mpsc::UnboundedReceiver<Control>,
}

impl AttachedSupervisor {
    pub(super) fn new(
        inst: Arc<Instance>,
        cfg: Arc<PoolConfig>,
        attach: AttachConfig,
        cancel: CancellationToken,
        control: mpsc::UnboundedReceiver<Control>,
    ) -> Self {
        Self {
            inst,
            cfg,
            attach,
            cancel,
            control,
        }
    }

    /// Attaches, stays attached while the runtime lives, and looks again while it is gone.
    pub(super) async fn run(mut self) {
        // The folder each connection names as its workspace (and `session/new` as its cwd).
        let _ = std::fs::create_dir_all(self.inst.work_dir.workspace());
        loop {
            if self.cancel.is_cancelled() {
                break;
            }
            match self.attach_once().await {
                Detach::Cancelled => break,
                Detach::Reattach => continue,
                Detach::Gone(why) => {
                    self.inst.clear_idle();
                    {
                        let mut st = lock(&self.inst.status);
                        st.pid = None;
                        st.auth = None;
                    }
                    self.inst.set_state(InstanceState::Gone, Some(why));
                }
            }
            // Looked for again at the health interval, or at once when an operator asks.
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tokio::time::sleep(self.cfg.health_interval) => {}
                Some(_) = self.control.recv() => {}
            }
        }
        self.inst.clear_idle();
        self.inst.set_state(InstanceState::Stopped, None);
    }

    /// One attachment: find, connect, serve until the runtime goes or the pool stops.
    async fn attach_once(&mut self) -> Detach {
        let runtime = match ide::resolve(&self.attach.spec, &self.attach.roots) {
            Ok(rt) if rt.is_gone() => {
                return Detach::Gone(format!(
                    "the runtime {} names (pid {}) is not running",
                    rt.source
                        .as_ref()
                        .map_or_else(|| rt.endpoint.to_string(), |p| p.display().to_string()),
                    rt.pid.unwrap_or_default()
                ));
            }
            Ok(rt) => rt,
            Err(e) => return Detach::Gone(e.to_string()),
        };
        let health = tokio::select! {
            c = self.connect(&runtime) => c,
            _ = self.cancel.cancelled() => return Detach::Cancelled,
        };
        let health = match health {
            Ok(c) => c,
            Err(e) => return Detach::Gone(format!("cannot connect to {}: {e}", runtime.endpoint)),
        };
        let pid = runtime.pid.or_else(|| health.peer_pid());
        let epoch = {
            let mut st = lock(&self.inst.status);
            st.epoch += 1;
            st.pid = pid;
            st.endpoint = Some(runtime.endpoint.clone());
            st.dialect = None;
            st.epoch
        };
        let name = self.inst.spec.name.clone();
        match health.detect_dialect().await {
            Ok(d) => lock(&self.inst.status).dialect = Some(d),
            Err(e) => return Detach::Gone(format!("the runtime does not answer: {e}")),
        }
        tracing::info!(
            instance = %name,
            endpoint = %runtime.endpoint,
            pid = pid.unwrap_or_default(),
            dialect = ?lock(&self.inst.status).dialect,
            "attached to a running Lingma"
        );
        let mut warm = Vec::new();
        for _ in 0..self.cfg.connections_per_instance {
            match self.connect(&runtime).await {
                Ok(c) => warm.push((epoch, c)),
                Err(e) => {
                    tracing::debug!(instance = %name, error = %e, "could not pre-open a connection");
                    break;
                }
            }
        }
        lock(&self.inst.idle).extend(warm);
        let end = self.serve(&runtime, health, pid).await;
        self.inst.clear_idle();
        end
    }

    /// Health checks and pushes until the runtime goes, an operator asks for a reattach, or the
    /// pool stops. Closing the connections is all a shutdown does here.
    async fn serve(&mut self, runtime: &Runtime, health: LingmaClient, pid: Option<u32>) -> Detach {
        let mut health = health;
        let mut events = Some(health.subscribe());
        let mut failures = 0u32;
        let mut drained = false;
        if let Err(e) = refresh(&self.inst, &health, drained).await {
            failures += 1;
            self.inst
                .set_state(InstanceState::Unhealthy, Some(e.to_string()));
        }
        let mut tick = tokio::time::interval(self.cfg.health_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();
        let end = loop {
            tokio::select! {
                _ = self.cancel.cancelled() => {
                    self.inst.set_state(InstanceState::Stopping, None);
                    break Detach::Cancelled;
                }
                ctl = self.control.recv() => match ctl {
                    Some(Control::Restart) => break Detach::Reattach,
                    Some(Control::Drain) => {
                        drained = true;
                        self.inst.set_state(InstanceState::Draining, None);
                    }
                    Some(Control::Refresh) => {
                        let _ = refresh(&self.inst, &health, drained).await;
                    }
                    None => {}
                },
                msg = next_push(&mut events) => match msg {
                    // The IDE logged in or out: look again now.
                    Some(m) if m.method.starts_with("auth/") => {
                        let _ = refresh(&self.inst, &health, drained).await;
                    }
                    Some(_) => {}
                    None => events = None,
                },
                _ = tick.tick() => {
                    if let Some(p) = pid.filter(|p| !pid_alive(*p)) {
                        break Detach::Gone(format!("the runtime's process {p} ended"));
                    }
                    if health.is_closed() {
                        match self.connect(runtime).await {
                            Ok(c) => {
                                health = c;
                                events = Some(health.subscribe());
                            }
                            Err(e) => break Detach::Gone(format!(
                                "the runtime at {} cannot be reached: {e}", runtime.endpoint
                            )),
                        }
                    }
                    let check_timeout = self.cfg.client.rpc_timeout.min(Duration::from_secs(10));
                    match tokio::time::timeout(check_timeout, refresh(&self.inst, &health, drained)).await {
                        Ok(Ok(())) => failures = 0,
                        outcome => {
                            let why = match outcome {
                                Ok(Err(e)) => e.to_string(),
                                _ => format!("no answer within {}s", check_timeout.as_secs_f32()),
                            };
                            failures += 1;
                            if failures >= self.cfg.health_failures {
                                break Detach::Gone(format!("the runtime stopped answering: {why}"));
                            }
                            self.inst.set_state(InstanceState::Unhealthy, Some(why));
                        }
                    }
                }
            }
        };
        health.close().await;
        end
    }

    async fn connect(&self, runtime: &Runtime) -> Result<LingmaClient, LingmaError> {
        let dialect = lock(&self.inst.status).dialect;
        LingmaClient::open(
            &runtime.endpoint,
            &self.inst.work_dir.workspace(),
            super::select::with_dialect(&self.cfg.client, dialect),
        )
        .await
    }
}
