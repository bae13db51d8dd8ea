//! Attach-or-spawn for terminal commands: use a runtime something else runs when asked
//! (`--attach`: an IDE's, found as `ide.rs` says, never stopped), else the instance that `serve`
//! already runs for a work dir (found through its instance file), else start a temporary one and
//! always stop it afterwards.

use std::path::Path;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::client::{ClientOptions, LingmaClient, LingmaError};
use super::discovery::{DiscoveryError, LingmaBinary, live_instance, live_instances};
use super::ide::{self, AttachSpec, FindError, Runtime, SearchRoots};
use super::ports::{PortAllocator, Ports, PortsError};
use super::process::{LingmaProcess, ProcessError};
use super::transport::Endpoint;
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
    #[error(transparent)]
    Find(#[from] FindError),
    #[error("cannot connect to the running Lingma at {endpoint}{}: {source}", found_through(.through))]
    Connect {
        endpoint: String,
        through: Option<std::path::PathBuf>,
        source: LingmaError,
    },
}

fn found_through(p: &Option<std::path::PathBuf>) -> String {
    p.as_ref()
        .map(|p| format!(" (found through {})", p.display()))
        .unwrap_or_default()
}

/// A connected Lingma instance for one command.
pub struct LocalInstance {
    pub client: LingmaClient,
    pub name: String,
    pub work_dir: WorkDir,
    /// Where the connection goes.
    pub endpoint: Endpoint,
    /// The ports of an instance this crate started (`serve`'s or a temporary one); `None` for
    /// a runtime found through `--attach`.
    pub ports: Option<Ports>,
    /// The runtime `--attach` found (an IDE's): never stopped, logged in or out from here.
    pub runtime: Option<Runtime>,
    /// Time to attach, or to start and initialize the temporary instance.
    pub open_time: Duration,
    /// `Some` when this command started the process (and must stop it).
    process: Option<LingmaProcess>,
}

impl LocalInstance {
    /// Whether the process was already running (this command only connected to it).
    pub fn attached(&self) -> bool {
        self.process.is_none()
    }

    /// Connects to the runtime `spec` names (`--attach`), which something else started. Its
    /// connections name `<work_root>/<name>/workspace` as their project.
    pub async fn attach_to(
        spec: &AttachSpec,
        roots: &SearchRoots,
        work_root: &Path,
        name: &str,
        opts: &ClientOptions,
    ) -> Result<Self, AttachError> {
        let started = Instant::now();
        let runtime = ide::resolve(spec, roots)?;
        let work_dir = WorkDir::of_instance(work_root, name);
        let workspace = work_dir.workspace();
        // Named in `initialize` and as `session/new`'s cwd, so it must exist.
        let _ = std::fs::create_dir_all(&workspace);
        let client = LingmaClient::open(&runtime.endpoint, &workspace, opts.clone())
            .await
            .map_err(|source| AttachError::Connect {
                endpoint: runtime.endpoint.to_string(),
                through: runtime.source.clone(),
                source,
            })?;
        let runtime = Runtime {
            pid: runtime.pid.or_else(|| client.peer_pid()),
            ..runtime
        };
        tracing::debug!(endpoint = %runtime.endpoint, "attached to a running Lingma");
        Ok(Self {
            client,
            name: name.to_string(),
            work_dir,
            endpoint: runtime.endpoint.clone(),
            ports: None,
            runtime: Some(runtime),
            open_time: started.elapsed(),
            process: None,
        })
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
                endpoint: Endpoint::local_port(ports.socket),
                ports: Some(ports),
                runtime: None,
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
            endpoint: Endpoint::local_port(ports.socket),
            ports: Some(ports),
            runtime: None,
            open_time: started.elapsed(),
            process: Some(process),
        })
    }

    /// Closes the connection and stops the process if this command started it (never one it
    /// attached to).
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
