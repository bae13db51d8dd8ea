//! One spawned instance's supervisor: a task that seeds the work dir, starts Lingma on free ports,
//! waits until it answers, finds its dialect, writes the instance file, keeps warm connections,
//! checks health (auth status and models, also on every `auth/*` push), restarts with backoff
//! when Lingma exits or stops answering, and stops it (SIGTERM, grace, SIGKILL) when the pool
//! shuts down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::PoolConfig;
use super::instance::{Control, Instance, InstanceState};
use crate::bundle::seed_work_dir;
use crate::lingma::discovery::InstanceFile;
use crate::lingma::ports::{PortAllocator, Ports};
use crate::lingma::process::LingmaProcess;
use crate::lingma::rpc::{RpcError, ServerMessage};
use crate::lingma::{Endpoint, LingmaClient, LingmaError};
use crate::util::{lock, unix_secs};

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

/// How one life of the child ended.
enum RunEnd {
    Cancelled,
    Restart { reason: String, crashed: bool },
}

/// Why a running child is being left; [`Supervisor::stop`] carries it out.
enum Stop {
    /// The pool is shutting down.
    Cancelled,
    /// Lingma exited by itself (with this status).
    Exited(String),
    /// An operator asked for a restart.
    RestartRequested,
    /// Too many health checks in a row failed (the last with this error).
    Unresponsive(String),
}

pub(super) struct Supervisor {
    inst: Arc<Instance>,
    cfg: Arc<PoolConfig>,
    ports: Arc<PortAllocator>,
    cancel: CancellationToken,
    control: mpsc::UnboundedReceiver<Control>,
}

impl Supervisor {
    pub(super) fn new(
        inst: Arc<Instance>,
        cfg: Arc<PoolConfig>,
        ports: Arc<PortAllocator>,
        cancel: CancellationToken,
        control: mpsc::UnboundedReceiver<Control>,
    ) -> Self {
        Self {
            inst,
            cfg,
            ports,
            cancel,
            control,
        }
    }

    /// Runs the instance until the pool is cancelled: one life after another, paced by the
    /// backoff, a crash loop marked failed.
    pub(super) async fn run(mut self) {
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

    /// One life of the child: start, serve, end.
    async fn run_once(&mut self) -> RunEnd {
        let epoch = {
            let mut st = lock(&self.inst.status);
            st.epoch += 1;
            st.pid = None;
            st.auth = None;
            st.dialect = None;
            st.epoch
        };
        self.inst.clear_idle();
        if self.inst.state() != InstanceState::Failed {
            let s = if epoch == 1 {
                InstanceState::Starting
            } else {
                InstanceState::Restarting
            };
            self.inst.set_state(s, None);
        }
        if let Err(e) = seed_work_dir(&self.inst.work_dir, self.inst.spec.seed.as_ref()) {
            return RunEnd::Restart {
                reason: format!("cannot seed work dir: {e}"),
                crashed: true,
            };
        }
        let ports = match self.ports.allocate() {
            Ok(p) => p,
            Err(e) => {
                return RunEnd::Restart {
                    reason: e.to_string(),
                    crashed: true,
                };
            }
        };
        let end = self.run_with_ports(ports, epoch).await;
        self.ports.release(ports);
        InstanceFile::remove_if_owned(&self.inst.work_dir, std::process::id());
        lock(&self.inst.status).pid = None;
        end
    }

    async fn run_with_ports(&mut self, ports: Ports, epoch: u64) -> RunEnd {
        let name = self.inst.spec.name.clone();
        let Some(binary) = &self.cfg.binary else {
            return RunEnd::Restart {
                reason: "no Lingma binary is configured".into(),
                crashed: true,
            };
        };
        let mut proc = match LingmaProcess::spawn(binary, &self.inst.work_dir, ports, &name) {
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
            st.endpoint = Some(Endpoint::local_port(ports.socket));
        }
        let ready = tokio::select! {
            r = proc.wait_ready(&self.cfg.client, self.cfg.startup_timeout) => r,
            _ = self.cancel.cancelled() => return self.stop(proc, None, Stop::Cancelled).await,
        };
        let mut health = match ready {
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
            name: name.clone(),
            owner_pid: std::process::id(),
            lingma_pid: proc.pid(),
            socket_port: ports.socket,
            http_port: ports.http,
            started_at: unix_secs(),
        };
        if let Err(e) = file.write(&self.inst.work_dir) {
            tracing::warn!(instance = %name, error = %e, "cannot write the instance file; terminal commands will not attach");
        }
        // Once per life, so the chat connections speak it without asking.
        match health.detect_dialect().await {
            Ok(d) => {
                tracing::info!(instance = %name, dialect = %d, "Lingma dialect");
                lock(&self.inst.status).dialect = Some(d);
            }
            Err(e) => {
                tracing::warn!(instance = %name, error = %e, "cannot tell Lingma's dialect yet; each connection will find out")
            }
        }
        // Open the chat connections now so the first chats do not pay for the handshake.
        let mut warm = Vec::new();
        for _ in 0..self.cfg.connections_per_instance {
            match self.connect(ports).await {
                Ok(c) => warm.push((epoch, c)),
                Err(e) => {
                    tracing::debug!(instance = %name, error = %e, "could not pre-open a connection");
                    break;
                }
            }
        }
        lock(&self.inst.idle).extend(warm);
        let mut events = Some(health.subscribe());
        let mut failures = 0u32;
        let mut drained = false;
        if let Err(e) = self.refresh(&health, drained).await {
            // Counted, but not yet a reason to restart: the next checks decide.
            let _ = self.failed_check(&mut failures, e.to_string());
        }
        let mut tick = tokio::time::interval(self.cfg.health_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();
        let stop = loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break Stop::Cancelled,
                status = proc.wait_exit() => break Stop::Exited(status),
                ctl = self.control.recv() => match ctl {
                    Some(Control::Restart) => break Stop::RestartRequested,
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
                    let checked = self
                        .check_health(&mut proc, &mut health, &mut events, &mut failures, drained, ports)
                        .await;
                    if let Err(stop) = checked {
                        break stop;
                    }
                }
            }
        };
        self.stop(proc, Some(&health), stop).await
    }

    /// One health check on the health connection (reconnected first if it closed). `Err` when the
    /// child must be left: the pool is shutting down, Lingma exited meanwhile, or it failed too
    /// many checks in a row.
    async fn check_health(
        &self,
        proc: &mut LingmaProcess,
        health: &mut LingmaClient,
        events: &mut Option<mpsc::Receiver<ServerMessage>>,
        failures: &mut u32,
        drained: bool,
        ports: Ports,
    ) -> Result<(), Stop> {
        if health.is_closed() {
            match self.connect(ports).await {
                Ok(c) => {
                    *health = c;
                    *events = Some(health.subscribe());
                }
                Err(e) => return self.failed_check(failures, e.to_string()),
            }
        }
        // A hung Lingma must not hold up shutdown or the notice of its exit.
        let check_timeout = self.cfg.client.rpc_timeout.min(Duration::from_secs(10));
        let checked = tokio::select! {
            r = tokio::time::timeout(check_timeout, self.refresh(health, drained)) => {
                r.unwrap_or_else(|_| Err(LingmaError::Rpc(RpcError::Timeout {
                    method: "health check".into(),
                    timeout: check_timeout,
                })))
            }
            _ = self.cancel.cancelled() => return Err(Stop::Cancelled),
            status = proc.wait_exit() => return Err(Stop::Exited(status)),
        };
        match checked {
            Ok(()) => {
                *failures = 0;
                Ok(())
            }
            Err(e) => self.failed_check(failures, e.to_string()),
        }
    }

    /// Counts a failed health check; `Err` once `health_failures` failed in a row.
    fn failed_check(&self, failures: &mut u32, error: String) -> Result<(), Stop> {
        *failures += 1;
        self.inst
            .set_state(InstanceState::Unhealthy, Some(error.clone()));
        if *failures >= self.cfg.health_failures {
            return Err(Stop::Unresponsive(error));
        }
        Ok(())
    }

    /// Leaves a running child: drops its idle connections, then stops it in order (shutdown,
    /// restart), kills it (unresponsive) or only notes its exit, and says what comes next.
    async fn stop(&self, proc: LingmaProcess, health: Option<&LingmaClient>, why: Stop) -> RunEnd {
        match &why {
            Stop::Cancelled => self.inst.set_state(InstanceState::Stopping, None),
            Stop::RestartRequested => self
                .inst
                .set_state(InstanceState::Restarting, Some("restart requested".into())),
            Stop::Exited(_) | Stop::Unresponsive(_) => {}
        }
        self.inst.clear_idle();
        match why {
            Stop::Cancelled => {
                if let Some(h) = health {
                    h.close().await;
                }
                proc.stop(self.cfg.stop_grace).await;
                RunEnd::Cancelled
            }
            Stop::RestartRequested => {
                proc.stop(self.cfg.stop_grace).await;
                RunEnd::Restart {
                    reason: "restart requested".into(),
                    crashed: false,
                }
            }
            Stop::Exited(status) => RunEnd::Restart {
                reason: format!("Lingma exited ({status})"),
                crashed: true,
            },
            Stop::Unresponsive(error) => {
                proc.kill().await;
                RunEnd::Restart {
                    reason: format!("stopped answering: {error}"),
                    crashed: true,
                }
            }
        }
    }

    async fn connect(&self, ports: Ports) -> Result<LingmaClient, LingmaError> {
        let dialect = lock(&self.inst.status).dialect;
        LingmaClient::connect(
            &ports.ws_url(),
            &self.inst.work_dir.workspace(),
            super::select::with_dialect(&self.cfg.client, dialect),
        )
        .await
    }

    async fn refresh(&self, client: &LingmaClient, drained: bool) -> Result<(), LingmaError> {
        refresh(&self.inst, client, drained).await
    }
}

/// Reads auth status (and models when logged in) and sets the instance's state from them.
pub(super) async fn refresh(
    inst: &Instance,
    client: &LingmaClient,
    drained: bool,
) -> Result<(), LingmaError> {
    let auth = client.auth_status().await?;
    let models = if auth.logged_in() {
        Some(client.query_models().await?)
    } else {
        None
    };
    let logged_in = auth.logged_in();
    {
        let mut st = lock(&inst.status);
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
    inst.set_state(state, None);
    Ok(())
}

/// The next push from a health connection; never, while there is none.
pub(super) async fn next_push(
    events: &mut Option<mpsc::Receiver<ServerMessage>>,
) -> Option<ServerMessage> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
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
}
