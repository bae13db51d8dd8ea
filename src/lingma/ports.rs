//! The two ports a Lingma child listens on, and handing out pairs: from a configured first port
//! (`LINGMA_SOCKET_PORT`, HTTP port = socket + 500) or any free ones, never a port already handed
//! to another instance of this process that may not be listening yet.

use std::collections::HashSet;
use std::sync::Mutex;

use thiserror::Error;

use crate::util::lock;

/// How far above the first configured port a pair is looked for.
const RANGE: u16 = 400;
/// The HTTP port's distance from the socket port when the first port is configured.
const HTTP_OFFSET: u16 = 500;
/// Tries at asking the system for two free ports that differ and are not taken.
const TRIES: usize = 50;

#[derive(Debug, Error)]
pub enum PortsError {
    #[error("no free port pair in {from}..{to}")]
    RangeFull { from: u16, to: u16 },
    #[error("could not find two free ports")]
    Exhausted,
    #[error("cannot look for a free port: {0}")]
    Io(#[from] std::io::Error),
}

/// Where a child listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub socket: u16,
    pub http: u16,
}

impl Ports {
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.socket)
    }
}

/// Hands out port pairs and remembers them until they are released.
#[derive(Debug, Default)]
pub struct PortAllocator {
    first: Option<u16>,
    taken: Mutex<HashSet<u16>>,
}

impl PortAllocator {
    /// `first`: the first socket port to try; `None` takes any free ports.
    pub fn new(first: Option<u16>) -> Self {
        Self {
            first,
            taken: Mutex::new(HashSet::new()),
        }
    }

    pub fn allocate(&self) -> Result<Ports, PortsError> {
        let mut taken = lock(&self.taken);
        let ports = match self.first {
            Some(base) => in_range(base, &taken)?,
            None => any_free(&taken)?,
        };
        taken.insert(ports.socket);
        taken.insert(ports.http);
        Ok(ports)
    }

    pub fn release(&self, ports: Ports) {
        let mut taken = lock(&self.taken);
        taken.remove(&ports.socket);
        taken.remove(&ports.http);
    }
}

fn in_range(base: u16, taken: &HashSet<u16>) -> Result<Ports, PortsError> {
    let ok = |p: u16| !taken.contains(&p) && port_is_free(p);
    let end = base.saturating_add(RANGE);
    for socket in base..end {
        let Some(http) = socket.checked_add(HTTP_OFFSET) else {
            break;
        };
        if ok(socket) && ok(http) {
            return Ok(Ports { socket, http });
        }
    }
    Err(PortsError::RangeFull {
        from: base,
        to: end,
    })
}

fn any_free(taken: &HashSet<u16>) -> Result<Ports, PortsError> {
    for _ in 0..TRIES {
        let socket = free_port()?;
        let http = free_port()?;
        if socket != http && !taken.contains(&socket) && !taken.contains(&http) {
            return Ok(Ports { socket, http });
        }
    }
    Err(PortsError::Exhausted)
}

/// A free TCP port on 127.0.0.1 (bound and released: a later bind can still race, which the
/// caller handles by restarting with new ports).
fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// Whether `port` can be bound on 127.0.0.1 right now.
fn port_is_free(port: u16) -> bool {
    port != 0 && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_differ_and_are_not_handed_out_twice_until_released() {
        let a = PortAllocator::new(None);
        let p = a.allocate().unwrap();
        assert_ne!(p.socket, p.http);
        let q = a.allocate().unwrap();
        for port in [q.socket, q.http] {
            assert!(port != p.socket && port != p.http);
        }
        a.release(p);
        assert!(lock(&a.taken).len() == 2);
    }

    #[test]
    fn a_configured_first_port_gives_http_500_above() {
        let base = free_port().unwrap().min(u16::MAX - 1000);
        let a = PortAllocator::new(Some(base));
        let p = a.allocate().unwrap();
        assert!(p.socket >= base && p.socket < base + RANGE);
        assert_eq!(p.http, p.socket + HTTP_OFFSET);
        let q = a.allocate().unwrap();
        assert_ne!(p.socket, q.socket);
    }
}
