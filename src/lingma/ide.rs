//! Finding a Lingma runtime that something else started (an IDE, most often), so lingma-gw can
//! attach to it instead of spawning one (§12.3): what the user asks for ([`AttachSpec`]), the
//! discovery files such runtimes publish ([`InfoFile`], in JSON or the legacy three-line form),
//! where they are looked for ([`SearchRoots`]) and in which order ([`discover`]), and what was
//! found ([`Runtime`]). A failed search says every place it looked and why each candidate was
//! refused.
//!
//! Nothing here starts or stops anything: an attached runtime belongs to the user's IDE.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::discovery::pid_alive;
use super::transport::Endpoint;

/// The folders under a root that hold a runtime's shared client cache, in LP's order.
const PRODUCTS: [&str; 4] = ["QoderCN", "Qoder", "Lingma", ""];
const CACHE_DIRS: [&str; 2] = ["SharedClientCache", "sharedClientCache"];
/// Info file names, the JSON form first.
const INFO_FILES: [&str; 2] = [".info.json", ".info"];
const SOCKETS: [&str; 2] = ["lingma.sock", "qodercn.sock"];

/// What `--attach` / `LINGMA_ATTACH` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachSpec {
    /// Look through the discovery order of §12.3.
    Auto,
    /// `ws://HOST:PORT/`.
    Url(String),
    /// An info file or a Unix socket (told apart when it is used).
    Path(PathBuf),
}

impl AttachSpec {
    /// `auto`, a `ws://` URL, or a path.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("the attach target is empty".into());
        }
        if s.eq_ignore_ascii_case("auto") {
            return Ok(AttachSpec::Auto);
        }
        if s.contains("://") {
            let url = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
            if url.scheme() != "ws" || url.host_str().is_none() {
                return Err(format!(
                    "{s:?}: only ws://HOST:PORT URLs can be attached to (or a path, or auto)"
                ));
            }
            return Ok(AttachSpec::Url(url.to_string()));
        }
        Ok(AttachSpec::Path(PathBuf::from(s)))
    }
}

impl std::fmt::Display for AttachSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttachSpec::Auto => f.write_str("auto"),
            AttachSpec::Url(u) => f.write_str(u),
            AttachSpec::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A runtime's discovery file: `{"websocketPort", "pid", "ipcServerPath", "isDev"}`, or the
/// legacy text form (line 1 the WebSocket port, line 2 the pid, line 3 the IPC path).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InfoFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc_server_path: Option<String>,
    #[serde(default)]
    pub is_dev: bool,
}

impl InfoFile {
    /// Either form; the JSON one when the text starts with `{`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("the file is empty".into());
        }
        let info = if t.starts_with('{') {
            let mut v: InfoFile =
                serde_json::from_str(t).map_err(|e| format!("not valid JSON: {e}"))?;
            // `0` and `""` mean absent in the files seen.
            v.websocket_port = v.websocket_port.filter(|p| *p != 0);
            v.ipc_server_path = v.ipc_server_path.filter(|p| !p.trim().is_empty());
            v
        } else {
            let mut lines = t.lines().map(str::trim).filter(|l| !l.is_empty());
            let port = lines.next().unwrap_or_default();
            let websocket_port = match port.parse::<u16>() {
                Ok(0) => None,
                Ok(p) => Some(p),
                Err(_) => return Err(format!("line 1 ({port:?}) is not a port")),
            };
            let pid = match lines.next() {
                Some(p) => Some(
                    p.parse::<u32>()
                        .map_err(|_| format!("line 2 ({p:?}) is not a pid"))?,
                ),
                None => None,
            };
            InfoFile {
                websocket_port,
                pid,
                ipc_server_path: lines.next().map(str::to_string),
                is_dev: false,
            }
        };
        if info.websocket_port.is_none() && info.ipc_server_path.is_none() {
            return Err("it names neither a websocketPort nor an ipcServerPath".into());
        }
        Ok(info)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The legacy three-line form.
    pub fn to_legacy(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.websocket_port.unwrap_or(0),
            self.pid.unwrap_or(0),
            self.ipc_server_path.as_deref().unwrap_or("")
        )
    }

    /// Written in the form its file name asks for (`.json`: JSON; else the legacy lines).
    pub fn render_for(&self, path: &Path) -> String {
        if path.extension().is_some_and(|e| e == "json") {
            self.to_json()
        } else {
            self.to_legacy()
        }
    }

    /// Where to connect: the WebSocket when there is one (no handshake header is needed), else
    /// the IPC socket.
    pub fn endpoint(&self) -> Option<Endpoint> {
        match (self.websocket_port, &self.ipc_server_path) {
            (Some(p), _) => Some(Endpoint::local_port(p)),
            (None, Some(path)) => Some(Endpoint::Unix(PathBuf::from(path))),
            (None, None) => None,
        }
    }
}

/// The folders discovery looks under. Tests (and unusual installs) replace the defaults with
/// `LINGMA_ATTACH_SEARCH_DIRS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRoots(pub Vec<PathBuf>);

impl SearchRoots {
    /// §12.3: the user's config dir, `~/.qodercn/vscode`, `~/.qodercn`, `~/.lingma/vscode`,
    /// `~/.lingma`.
    pub fn default_roots() -> Self {
        let mut roots = Vec::new();
        if let Some(b) = directories::BaseDirs::new() {
            roots.push(b.config_dir().to_path_buf());
            let home = b.home_dir();
            for sub in [".qodercn/vscode", ".qodercn", ".lingma/vscode", ".lingma"] {
                roots.push(home.join(sub));
            }
        }
        SearchRoots(roots)
    }

    /// `<root>/<product>/<SharedClientCache|sharedClientCache>` for every root, in order.
    pub fn cache_dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for root in &self.0 {
            for product in PRODUCTS {
                for cache in CACHE_DIRS {
                    let d = if product.is_empty() {
                        root.join(cache)
                    } else {
                        root.join(product).join(cache)
                    };
                    if !out.contains(&d) {
                        out.push(d);
                    }
                }
            }
        }
        out
    }

    /// Every info file path, in the order they are tried.
    pub fn info_files(&self) -> Vec<PathBuf> {
        self.cache_dirs()
            .into_iter()
            .flat_map(|d| INFO_FILES.map(|n| d.join(n)))
            .collect()
    }

    /// Every socket path that exists, newest first.
    pub fn sockets(&self) -> Vec<PathBuf> {
        let mut found: Vec<(SystemTime, PathBuf)> = self
            .cache_dirs()
            .into_iter()
            .flat_map(|d| SOCKETS.map(|n| d.join(n)))
            .filter_map(|p| {
                let meta = std::fs::metadata(&p).ok()?;
                is_socket(&meta).then(|| (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), p))
            })
            .collect();
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        found.into_iter().map(|(_, p)| p).collect()
    }
}

fn is_socket(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_socket()
}

/// A runtime to attach to, and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    pub endpoint: Endpoint,
    /// Its process, when the info file names one (or the socket's peer says).
    pub pid: Option<u32>,
    /// The info file or socket it was found through (`None` for a URL).
    pub source: Option<PathBuf>,
}

impl Runtime {
    /// Whether its process is known to be gone (a runtime with no known pid is not).
    pub fn is_gone(&self) -> bool {
        self.pid.is_some_and(|p| !pid_alive(p))
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FindError {
    #[error(
        "no running Lingma found to attach to. Looked for info files (.info.json, .info) and \
         sockets (lingma.sock, qodercn.sock) in:\n{}{}\nStart Lingma in your IDE, or pass \
         --attach PATH|ws://HOST:PORT (or set LINGMA_ATTACH_SEARCH_DIRS)",
        list(looked),
        refused_list(refused)
    )]
    NotFound {
        looked: Vec<PathBuf>,
        /// Candidates that exist but were refused, with the reason.
        refused: Vec<(PathBuf, String)>,
    },
    #[error("cannot attach through {path}: {reason}")]
    BadTarget { path: PathBuf, reason: String },
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| format!("  {}", p.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn refused_list(refused: &[(PathBuf, String)]) -> String {
    if refused.is_empty() {
        return String::new();
    }
    let items: Vec<String> = refused
        .iter()
        .map(|(p, why)| format!("  {}: {why}", p.display()))
        .collect();
    format!("\nFound but not usable:\n{}", items.join("\n"))
}

/// Reads an info file and checks that the runtime it names is alive.
pub fn read_info_file(path: &Path) -> Result<Runtime, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let info = InfoFile::parse(&text)?;
    if let Some(pid) = info.pid.filter(|p| *p != 0)
        && !pid_alive(pid)
    {
        return Err(format!("stale: it names pid {pid}, which is not running"));
    }
    let endpoint = info
        .endpoint()
        .ok_or_else(|| "it names no endpoint".to_string())?;
    Ok(Runtime {
        endpoint,
        pid: info.pid.filter(|p| *p != 0),
        source: Some(path.to_path_buf()),
    })
}

/// What an explicit target means now: a Unix socket, or an info file.
pub fn resolve_path(path: &Path) -> Result<Runtime, FindError> {
    let bad = |reason: String| FindError::BadTarget {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if is_socket(&meta) {
        return Ok(Runtime {
            endpoint: Endpoint::Unix(path.to_path_buf()),
            pid: None,
            source: Some(path.to_path_buf()),
        });
    }
    if meta.is_dir() {
        return Err(bad(
            "it is a directory; give the info file or the socket in it".into(),
        ));
    }
    read_info_file(path).map_err(bad)
}

/// Resolves a spec into the runtime to connect to now.
pub fn resolve(spec: &AttachSpec, roots: &SearchRoots) -> Result<Runtime, FindError> {
    match spec {
        AttachSpec::Url(u) => Ok(Runtime {
            endpoint: Endpoint::WebSocket(u.clone()),
            pid: None,
            source: None,
        }),
        AttachSpec::Path(p) => resolve_path(p),
        AttachSpec::Auto => discover(roots),
    }
}

/// §12.3's order: the first info file that parses and names a live runtime, else the newest
/// socket.
pub fn discover(roots: &SearchRoots) -> Result<Runtime, FindError> {
    let mut refused = Vec::new();
    for path in roots.info_files() {
        if !path.exists() {
            continue;
        }
        match read_info_file(&path) {
            Ok(rt) => return Ok(rt),
            Err(why) => refused.push((path, why)),
        }
    }
    if let Some(sock) = roots.sockets().into_iter().next() {
        return Ok(Runtime {
            endpoint: Endpoint::Unix(sock.clone()),
            pid: None,
            source: Some(sock),
        });
    }
    Err(FindError::NotFound {
        looked: roots.cache_dirs(),
        refused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_files_in_both_forms() {
        let j = InfoFile::parse(
            r#"{"websocketPort":36510,"pid":14060,"ipcServerPath":"/tmp/l.sock","isDev":false}"#,
        )
        .unwrap();
        assert_eq!(j.websocket_port, Some(36510));
        assert_eq!(j.pid, Some(14060));
        assert_eq!(j.endpoint(), Some(Endpoint::local_port(36510)));
        let l = InfoFile::parse("36510\n14060\n/tmp/l.sock\n").unwrap();
        assert_eq!(l, j);
        assert_eq!(InfoFile::parse(&j.to_legacy()).unwrap(), j);
        assert_eq!(InfoFile::parse(&j.to_json()).unwrap(), j);
        let only_ipc = InfoFile::parse("0\n1\n/tmp/x.sock").unwrap();
        assert_eq!(
            only_ipc.endpoint(),
            Some(Endpoint::Unix("/tmp/x.sock".into()))
        );
    }

    #[test]
    fn bad_info_files_say_why() {
        assert!(InfoFile::parse("").unwrap_err().contains("empty"));
        assert!(InfoFile::parse("{nope").unwrap_err().contains("JSON"));
        assert!(InfoFile::parse("port\n1").unwrap_err().contains("line 1"));
        assert!(
            InfoFile::parse("36510\npid")
                .unwrap_err()
                .contains("line 2")
        );
        assert!(
            InfoFile::parse("{\"pid\":1}")
                .unwrap_err()
                .contains("neither")
        );
    }

    #[test]
    fn the_search_order_is_the_protocols() {
        let roots = SearchRoots(vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        let files = roots.info_files();
        assert_eq!(
            files[0],
            Path::new("/a/QoderCN/SharedClientCache/.info.json")
        );
        assert_eq!(files[1], Path::new("/a/QoderCN/SharedClientCache/.info"));
        assert!(files.contains(&PathBuf::from("/a/Lingma/sharedClientCache/.info")));
        assert!(files.contains(&PathBuf::from("/b/SharedClientCache/.info.json")));
        assert_eq!(files.len(), 2 * 4 * 2 * 2);
    }

    #[test]
    fn discovery_skips_stale_and_bad_files_and_lists_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let roots = SearchRoots(vec![dir.path().to_path_buf()]);
        let err = discover(&roots).unwrap_err().to_string();
        assert!(err.contains("SharedClientCache"), "{err}");
        let qoder = dir.path().join("QoderCN/SharedClientCache");
        std::fs::create_dir_all(&qoder).unwrap();
        std::fs::write(qoder.join(".info.json"), "{broken").unwrap();
        let lingma = dir.path().join("Lingma/SharedClientCache");
        std::fs::create_dir_all(&lingma).unwrap();
        // pid 0 is never a runtime; u32::MAX - 1 is never alive.
        std::fs::write(lingma.join(".info"), format!("4242\n{}\n", u32::MAX - 1)).unwrap();
        let err = discover(&roots).unwrap_err().to_string();
        assert!(err.contains("not valid JSON"), "{err}");
        assert!(err.contains("stale"), "{err}");
        let live = InfoFile {
            websocket_port: Some(4343),
            pid: Some(std::process::id()),
            ..Default::default()
        };
        std::fs::write(lingma.join(".info.json"), live.to_json()).unwrap();
        let rt = discover(&roots).unwrap();
        assert_eq!(rt.endpoint, Endpoint::local_port(4343));
        assert_eq!(rt.pid, Some(std::process::id()));
        assert!(!rt.is_gone());
    }

    #[test]
    fn specs_parse() {
        assert_eq!(AttachSpec::parse("auto"), Ok(AttachSpec::Auto));
        assert_eq!(
            AttachSpec::parse("ws://127.0.0.1:36510"),
            Ok(AttachSpec::Url("ws://127.0.0.1:36510/".into()))
        );
        assert!(AttachSpec::parse("http://x:1").is_err());
        assert_eq!(
            AttachSpec::parse("/tmp/.info.json"),
            Ok(AttachSpec::Path("/tmp/.info.json".into()))
        );
        assert!(AttachSpec::parse(" ").is_err());
    }
}
