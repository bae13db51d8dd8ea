//! Handing out connections: which instance a chat goes to (least loaded, rendezvous affinity, by
//! name, failing over to another), waiting for a free slot or for an instance to become ready,
//! and the lease that returns its connection to the instance's idle list when dropped.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

use super::instance::{Control, Instance, InstanceState};
use super::{Pool, PoolError};
use crate::lingma::{ClientOptions, Dialect, DialectChoice, LingmaClient, ModelRegistry};
use crate::util::lock;

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

impl Pool {
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
        let (epoch, endpoint, dialect, models) = {
            let st = lock(&inst.status);
            (st.epoch, st.endpoint.clone(), st.dialect, st.models.clone())
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
                let endpoint = endpoint.ok_or_else(|| PoolError::Connect {
                    instance: inst.spec.name.clone(),
                    reason: "instance has no endpoint yet".into(),
                })?;
                LingmaClient::open(
                    &endpoint,
                    &inst.work_dir.workspace(),
                    with_dialect(&self.client_opts, dialect),
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
}

/// The pool's client options, speaking `dialect` without asking when the instance's supervisor
/// already found it out.
pub(super) fn with_dialect(opts: &ClientOptions, dialect: Option<Dialect>) -> ClientOptions {
    let mut o = opts.clone();
    if let Some(d) = dialect {
        o.dialect = DialectChoice::Fixed(d);
    }
    o
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

fn rendezvous_score(key: &str, name: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    0xffu8.hash(&mut h);
    name.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
