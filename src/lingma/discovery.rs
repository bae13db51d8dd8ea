//! Finding Lingma: the binary to run (the IDE plugins install it as
//! `~/.lingma/bin/<version>/<platform>/Lingma`) and the instances a running `serve` already owns
//! (each leaves an instance file in its work dir), so terminal commands can attach to them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::workdir::WorkDir;

/// Which Lingma binary to run; the settings decide, [`LingmaBinary::resolve`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryChoice {
    /// `--lingma-bin` / `LINGMA_BIN` / config.
    Path(PathBuf),
    /// The built-in simulator (this executable's `sim` subcommand).
    Sim,
    /// Look for an installed Lingma.
    Discover,
}

#[derive(Debug, Error)]
pub enum DiscoveryError {
    #[error(
        "no Lingma binary found (looked in {looked}). Pass --lingma-bin PATH or set LINGMA_BIN, \
         or use --sim for the built-in simulator"
    )]
    NotFound { looked: String },
    #[error("the Lingma binary {0} does not exist or is not a file")]
    Missing(PathBuf),
    #[error("cannot locate this executable for --sim: {0}")]
    CurrentExe(String),
}

/// A program plus the arguments that come before `start ...` (`["sim"]` for the simulator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LingmaBinary {
    pub program: PathBuf,
    pub prefix_args: Vec<String>,
    pub is_sim: bool,
    /// Extra environment for the child (simulator knobs in tests and the benchmark).
    pub env: Vec<(String, String)>,
}

impl LingmaBinary {
    pub fn resolve(choice: &BinaryChoice) -> Result<Self, DiscoveryError> {
        match choice {
            BinaryChoice::Sim => {
                let exe = std::env::current_exe()
                    .map_err(|e| DiscoveryError::CurrentExe(e.to_string()))?;
                Ok(Self {
                    program: exe,
                    prefix_args: vec!["sim".into()],
                    is_sim: true,
                    env: Vec::new(),
                })
            }
            BinaryChoice::Path(p) => {
                if !p.is_file() {
                    return Err(DiscoveryError::Missing(p.clone()));
                }
                Ok(Self {
                    program: p.clone(),
                    prefix_args: vec![],
                    is_sim: false,
                    env: Vec::new(),
                })
            }
            BinaryChoice::Discover => {
                let home = directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf());
                let root = home
                    .map(|h| h.join(".lingma/bin"))
                    .unwrap_or_else(|| PathBuf::from(".lingma/bin"));
                match find_installed(&root) {
                    Some(program) => Ok(Self {
                        program,
                        prefix_args: vec![],
                        is_sim: false,
                        env: Vec::new(),
                    }),
                    None => Err(DiscoveryError::NotFound {
                        looked: root
                            .join("<version>")
                            .join(platform_dir())
                            .display()
                            .to_string(),
                    }),
                }
            }
        }
    }

    /// `version` of the binary (`Lingma version`), trimmed; `None` when it fails.
    pub async fn version(&self) -> Option<String> {
        let out = tokio::process::Command::new(&self.program)
            .args(&self.prefix_args)
            .arg("version")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(std::time::Duration::from_secs(10), out)
            .await
            .ok()?
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

pub fn platform_dir() -> &'static str {
    match (std::env::consts::ARCH, std::env::consts::OS) {
        ("aarch64", "macos") => "aarch64_darwin",
        ("x86_64", "macos") => "x86_64_darwin",
        ("x86_64", "windows") => "x86_64_windows",
        ("aarch64", "linux") => "aarch64_linux",
        _ => "x86_64_linux",
    }
}

/// `<root>/<version>/<platform>/Lingma`: the version named in `<root>/config.json`
/// (`cosy.core.version`) if present, else the newest version directory.
pub fn find_installed(root: &Path) -> Option<PathBuf> {
    let exe = if cfg!(windows) {
        "Lingma.exe"
    } else {
        "Lingma"
    };
    let candidate = |version: &str| {
        let p = root.join(version).join(platform_dir()).join(exe);
        p.is_file().then_some(p)
    };
    if let Ok(text) = std::fs::read_to_string(root.join("config.json"))
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
    {
        let named = v
            .get("cosy.core.version")
            .or_else(|| v.pointer("/cosy/core/version"))
            .and_then(|x| x.as_str());
        if let Some(found) = named.and_then(candidate) {
            return Some(found);
        }
    }
    let mut versions: Vec<(Vec<u64>, String)> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let parts: Option<Vec<u64>> = name.split('.').map(|p| p.parse().ok()).collect();
            parts.map(|p| (p, name))
        })
        .collect();
    versions.sort();
    versions.iter().rev().find_map(|(_, name)| candidate(name))
}

/// What `serve` records about a running instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceFile {
    pub name: String,
    pub owner_pid: u32,
    pub lingma_pid: u32,
    pub socket_port: u16,
    pub http_port: u16,
    pub started_at: u64,
}

impl InstanceFile {
    /// Written atomically, so a reader never sees half a file.
    pub fn write(&self, work_dir: &WorkDir) -> std::io::Result<()> {
        crate::util::write_private(&work_dir.instance_file(), &serde_json::to_vec_pretty(self)?)
    }

    pub fn read(work_dir: &WorkDir) -> Option<Self> {
        let text = std::fs::read(work_dir.instance_file()).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Both the owner and the Lingma process are alive.
    pub fn is_live(&self) -> bool {
        pid_alive(self.owner_pid) && pid_alive(self.lingma_pid)
    }

    /// Removes the file if it still describes this owner (a new owner may have replaced it).
    pub fn remove_if_owned(work_dir: &WorkDir, owner_pid: u32) {
        if let Some(f) = Self::read(work_dir)
            && f.owner_pid == owner_pid
        {
            let _ = std::fs::remove_file(work_dir.instance_file());
        }
    }
}

/// The live instance recorded in `work_dir`, removing a stale file (dead pids) on the way.
pub fn live_instance(work_dir: &WorkDir) -> Option<InstanceFile> {
    let f = InstanceFile::read(work_dir)?;
    if f.is_live() {
        return Some(f);
    }
    let path = work_dir.instance_file();
    tracing::debug!(path = %path.display(), "removing stale instance file");
    let _ = std::fs::remove_file(path);
    None
}

/// The names of the instances under `work_root` that a running `serve` owns, sorted. Stale
/// instance files are left alone (this only looks).
pub fn live_instances(work_root: &Path) -> Vec<String> {
    let mut live: Vec<String> = std::fs::read_dir(work_root)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| InstanceFile::read(&WorkDir::new(e.path())).is_some_and(|f| f.is_live()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    live.sort();
    live
}

pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    // Signal 0 checks existence; EPERM still means the process exists. A zombie counts as
    // dead: it no longer serves anything.
    let exists = match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    };
    exists && !is_zombie(pid)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_newest_or_configured_version() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for v in ["2.5.20", "2.11.1", "2.9.0"] {
            let d = root.join(v).join(platform_dir());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("Lingma"), b"").unwrap();
        }
        std::fs::create_dir_all(root.join("not-a-version")).unwrap();
        assert_eq!(
            find_installed(root).unwrap(),
            root.join("2.11.1").join(platform_dir()).join("Lingma")
        );
        std::fs::write(
            root.join("config.json"),
            br#"{"cosy.core.version":"2.5.20"}"#,
        )
        .unwrap();
        assert_eq!(
            find_installed(root).unwrap(),
            root.join("2.5.20").join(platform_dir()).join("Lingma")
        );
        assert!(find_installed(&root.join("nope")).is_none());
    }

    #[test]
    fn missing_binary_is_a_clear_error() {
        let e = LingmaBinary::resolve(&BinaryChoice::Path("/no/such/Lingma".into())).unwrap_err();
        assert!(e.to_string().contains("/no/such/Lingma"));
    }

    #[test]
    fn instance_file_round_trip_and_staleness() {
        let root = tempfile::tempdir().unwrap();
        let dir = WorkDir::of_instance(root.path(), "inst-0");
        std::fs::create_dir(dir.root()).unwrap();
        let f = InstanceFile {
            name: "inst-0".into(),
            owner_pid: std::process::id(),
            lingma_pid: std::process::id(),
            socket_port: 1,
            http_port: 2,
            started_at: 0,
        };
        f.write(&dir).unwrap();
        assert_eq!(live_instance(&dir), Some(f.clone()));
        assert_eq!(live_instances(root.path()), ["inst-0"]);
        let stale = InstanceFile { lingma_pid: 0, ..f };
        stale.write(&dir).unwrap();
        assert!(live_instances(root.path()).is_empty());
        assert_eq!(live_instance(&dir), None);
        assert!(!dir.instance_file().exists());
    }
}
