//! Attach-or-spawn for terminal commands: use the instance that `serve` already runs for a work
//! dir (found through its instance file), or start a temporary one and always stop it afterwards.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::client::{ClientOptions, LingmaClient, LingmaError};
use super::discovery::{DiscoveryError, InstanceFile, LingmaBinary, live_instance};
use super::process::{LingmaProcess, Ports, ProcessError, free_port};

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
    Ports(String),
}

/// A connected Lingma instance for one command.
pub struct LocalInstance {
    pub client: LingmaClient,
    pub name: String,
    pub work_dir: PathBuf,
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
        let work_dir = work_root.join(name);
        let workspace = crate::pool::workspace(&work_dir);
        if let Some(f) = live_instance(&work_dir) {
            let ports = Ports {
                socket: f.socket_port,
                http: f.http_port,
            };
            let client = LingmaClient::connect(&ports.ws_url(), &workspace, opts.clone())
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
        std::fs::create_dir_all(&workspace).map_err(|e| ProcessError::WorkDir {
            path: workspace.clone(),
            reason: e.to_string(),
        })?;
        let ports = free_port_pair().map_err(AttachError::Ports)?;
        let mut process = LingmaProcess::spawn(binary, &work_dir, ports, name)?;
        let client = match process.wait_ready(&workspace, opts, startup_timeout).await {
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

/// Two distinct free ports for a temporary instance.
fn free_port_pair() -> Result<Ports, String> {
    for _ in 0..20 {
        let socket = free_port().map_err(|e| e.to_string())?;
        let http = free_port().map_err(|e| e.to_string())?;
        if socket != http {
            return Ok(Ports { socket, http });
        }
    }
    Err("the system kept handing out one port twice".into())
}

/// The instance a command uses when none is named: the first one `serve` runs under `work_root`,
/// else `inst-0`.
pub fn default_instance(work_root: &Path) -> String {
    let mut live: Vec<String> = std::fs::read_dir(work_root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| InstanceFile::read(&e.path()).is_some_and(|f| f.is_live()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    live.sort();
    live.into_iter().next().unwrap_or_else(|| "inst-0".into())
}
