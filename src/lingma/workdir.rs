//! The layout of one instance's work dir, spelled once: what Lingma reads and writes there (the
//! login files, its log, the endpoint config, the history database), what this crate adds (the
//! workspace folder every connection names, the instance file a running `serve` leaves, the
//! simulator's request log), and how instances are named under the work root.
//!
//! Paths are built here and nowhere else; the relative ones are public as constants for the code
//! that works with paths relative to a work dir (session bundles list their files that way).

use std::path::{Path, PathBuf};

/// The file a running `serve` leaves in each instance's work dir (pids and ports), so terminal
/// commands can attach to the instance.
pub const INSTANCE_FILE: &str = "lingma-gw.instance.json";
/// Lingma's cache: the login files and the history database.
pub const CACHE_DIR: &str = "cache";
/// The machine id Lingma binds a login to.
pub const MACHINE_ID_FILE: &str = "cache/id";
/// The logged-in user and its tokens (encrypted by the real Lingma).
pub const USER_FILE: &str = "cache/user";
/// Lingma's chat history database.
pub const HISTORY_DIR: &str = "cache/db";
/// Lingma's log folder; it is per machine and run, so never copied or bundled.
pub const LOGS_DIR: &str = "logs";
const LINGMA_LOG: &str = "lingma.log";
const REQUEST_LOG: &str = "sim-requests.jsonl";
const WORKSPACE_DIR: &str = "workspace";
const ENDPOINT_CONFIG: &str = "extension/server/config.json";
const INSTANCE_PREFIX: &str = "inst-";

/// One instance's work dir (`--workDir` of its Lingma).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkDir {
    root: PathBuf,
}

impl WorkDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The work dir of instance `name` under the work root (`<work-dir>/<name>`).
    pub fn of_instance(work_root: &Path, name: &str) -> Self {
        Self::new(work_root.join(name))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder given to Lingma as the workspace of every connection (`initialize`).
    pub fn workspace(&self) -> PathBuf {
        self.root.join(WORKSPACE_DIR)
    }

    pub fn logs(&self) -> PathBuf {
        self.root.join(LOGS_DIR)
    }

    /// Lingma's own log, which says why a start failed.
    pub fn lingma_log(&self) -> PathBuf {
        self.logs().join(LINGMA_LOG)
    }

    /// The simulator's log of every inbound message (docs/simulator.md).
    pub fn request_log(&self) -> PathBuf {
        self.logs().join(REQUEST_LOG)
    }

    pub fn instance_file(&self) -> PathBuf {
        self.root.join(INSTANCE_FILE)
    }

    pub fn cache(&self) -> PathBuf {
        self.root.join(CACHE_DIR)
    }

    pub fn machine_id(&self) -> PathBuf {
        self.root.join(MACHINE_ID_FILE)
    }

    pub fn user(&self) -> PathBuf {
        self.root.join(USER_FILE)
    }

    pub fn history(&self) -> PathBuf {
        self.root.join(HISTORY_DIR)
    }

    /// Where Lingma keeps the endpoint set with `config/updateEndpoint`.
    pub fn endpoint_config(&self) -> PathBuf {
        self.root.join(ENDPOINT_CONFIG)
    }

    /// Both login files are there (not whether Lingma accepts them).
    pub fn has_login(&self) -> bool {
        self.machine_id().is_file() && self.user().is_file()
    }
}

/// The name of the `index`-th instance when no accounts file names it: `inst-0`, `inst-1`, ...
pub fn instance_name(index: usize) -> String {
    format!("{INSTANCE_PREFIX}{index}")
}

/// The instance a command uses when nothing else decides.
pub fn default_instance_name() -> String {
    instance_name(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let w = WorkDir::of_instance(Path::new("/w"), &default_instance_name());
        assert_eq!(w.root(), Path::new("/w/inst-0"));
        assert_eq!(w.workspace(), Path::new("/w/inst-0/workspace"));
        assert_eq!(w.lingma_log(), Path::new("/w/inst-0/logs/lingma.log"));
        assert_eq!(
            w.request_log(),
            Path::new("/w/inst-0/logs/sim-requests.jsonl")
        );
        assert_eq!(
            w.instance_file(),
            Path::new("/w/inst-0/lingma-gw.instance.json")
        );
        assert_eq!(w.machine_id(), Path::new("/w/inst-0/cache/id"));
        assert_eq!(w.user(), Path::new("/w/inst-0/cache/user"));
        assert_eq!(w.history(), Path::new("/w/inst-0/cache/db"));
        assert_eq!(instance_name(2), "inst-2");
    }
}
