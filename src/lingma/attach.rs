//! Attach-or-spawn for terminal commands: use the instance that `serve` already runs for a work
//! dir (found through its instance file), or start a temporary one and always stop it afterwards.

use std::path::Path;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::client::{ClientOptions, LingmaClient, LingmaError};
use super::discovery::{DiscoveryError, LingmaBinary, live_instance, live_instances};
use super::ports::{PortAllocator, Ports, PortsError};
use super::process::{LingmaProcess, ProcessError};
use super::workdir::{WorkDir, default_instance_name};

#[derive(Debug, Error)]
pub enum AttachError {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("cannot connect to the running instance {name} (pid {pid}): {source}")]
    Attach {
        name: String,
        pid: u32,
        source: LingmaError,
    },
    #[error("no free ports: {0}")]
    Ports(#[from] PortsError),
}

/// A connected Lingma instance for one command.
pub struct LocalInstance {
    pub client: LingmaClient,
    pub name: String,
    pub work_dir: WorkDir,
    pub ports: Ports,
    /// Time to attach, or to start and initialize the temporary instance.
    pub open_time: Duration,
    /// `Some` when this command started the process (and must stop it).
    process: Option<LingmaProcess>,
}

impl LocalInstance {
    pub fn attached(&self) -> bool {
        self.process.is_none()
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(LingmaProcess::pid)
    }

    /// Opens instance `name` under `work_root`.
    pub async fn open(
        binary: &LingmaBinary,
        work_root: &Path,
        name: &str,
        opts: &ClientOptions,
        startup_timeout: Duration,
    ) -> Result<Self, AttachError> {
        let started = Instant::now();
        let work_dir = WorkDir::of_instance(work_root, name);
        if let Some(f) = live_instance(&work_dir) {
            let ports = Ports {
                socket: f.socket_port,
                http: f.http_port,
            };
            let client =
                LingmaClient::connect(&ports.ws_url(), &work_dir.workspace(), opts.clone())
                    .await
                    .map_err(|source| AttachError::Attach {
                        name: name.to_string(),
                        pid: f.lingma_pid,
                        source,
                    })?;
            tracing::debug!(
                instance = name,
                pid = f.lingma_pid,
                "attached to the running instance"
            );
            return Ok(Self {
                client,
                name: name.to_string(),
                work_dir,
                ports,
                open_time: started.elapsed(),
                process: None,
            });
        }
        let ports = PortAllocator::new(None).allocate()?;
        let mut process = LingmaProcess::spawn(binary, &work_dir, ports, name)?;
        let client = match process.wait_ready(opts, startup_timeout).await {
            Ok(c) => c,
            Err(e) => {
                process.stop(Duration::from_secs(3)).await;
                return Err(e.into());
            }
        };
        tracing::debug!(
            instance = name,
            pid = process.pid(),
            "started a temporary instance"
        );
        Ok(Self {
            client,
            name: name.to_string(),
            work_dir,
            ports,
            open_time: started.elapsed(),
            process: Some(process),
        })
    }

    /// Closes the connection and stops the process if this command started it.
    pub async fn close(self) {
        self.client.close().await;
        if let Some(p) = self.process {
            p.stop(Duration::from_secs(5)).await;
        }
    }
}

/// The instance a command uses when none is named: the first one `serve` runs under `work_root`,
/// else the first instance's default name.
pub fn default_instance(work_root: &Path) -> String {
    live_instances(work_root)
        .into_iter()
        .next()
        .unwrap_or_else(default_instance_name)
}
