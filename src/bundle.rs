//! Session bundles: moving a logged-in Lingma work dir to another machine (protocol §7).
//!
//! A bundle is a tar.gz holding `manifest.json` plus exactly the files that make a work dir logged
//! in (`cache/id`, `cache/user`, optionally `cache/quota` and Qoder CN's `cache/machine_token.json`
//! and `cache/cache.json`; `cache/db/*` with history). It travels raw, base64 (one line, for
//! environment variables and CI secrets) or encrypted with a passphrase (age, scrypt), optionally
//! base64 on top; [`decode`] recognises all of them.
//!
//! Import treats a bundle as hostile until proven otherwise: the input and the unpacked bytes are
//! capped (a gzip bomb is counted while it inflates), at most [`MAX_ENTRIES`] entries, only regular
//! files at the known paths (no absolute paths, `..`, links or devices), and every file must match
//! the manifest's size and SHA-256. Only then is anything written, in three steps ([`install`]):
//! look (no symbolic link, and nothing but directories and regular files, from the work dir down to
//! any file the bundle writes; a refusal creates nothing anywhere), stage (into a temporary
//! directory beside the target, with modes 0600/0700), swap (renamed into place: the whole work dir
//! at once when it does not exist yet; otherwise file by file with `cache/user` last, so Lingma
//! never sees a user without its machine id, and undone if any rename fails, so the work dir is
//! then as it was).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// `manifest.json`'s `format`.
pub const FORMAT: &str = "lingma-gw-session";
/// The newest manifest version this build reads and the one it writes.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
/// More entries than this is not a session bundle.
pub const MAX_ENTRIES: usize = 200;
/// Default cap on the unpacked size (history databases included); `LINGMA_BUNDLE_MAX_BYTES`.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The files that make a work dir logged in (always exported when present; the first two are
/// required).
const LOGIN_FILES: [&str; 5] = [
    "cache/id",
    "cache/user",
    "cache/quota",
    "cache/machine_token.json",
    "cache/cache.json",
];
const REQUIRED: [&str; 2] = ["cache/id", "cache/user"];
const HISTORY_DIR: &str = "cache/db";

#[derive(Debug, Error)]
pub enum BundleError {
    #[error(
        "instance work dir {0} is not logged in (no cache/id and cache/user): log in first with `lingma-gw login`"
    )]
    NotLoggedIn(PathBuf),
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("not a session bundle: expected a tar.gz, its base64, or an age-encrypted bundle")]
    UnknownFormat,
    #[error(
        "the bundle is encrypted: give its passphrase with --passphrase-stdin or LINGMA_BUNDLE_PASSPHRASE"
    )]
    PassphraseRequired,
    #[error("cannot decrypt the bundle: wrong passphrase, or the encrypted bundle is damaged")]
    WrongPassphrase,
    #[error("cannot encrypt the bundle: {0}")]
    Encrypt(String),
    #[error("the bundle is truncated or corrupt: {0}")]
    Corrupt(String),
    #[error(
        "{input} is too large: a bundle may be at most {limit} bytes; if it really is a session bundle, raise the limit with LINGMA_BUNDLE_MAX_BYTES"
    )]
    InputTooLarge { input: String, limit: u64 },
    #[error(
        "the bundle is larger than {limit} bytes unpacked (a gzip bomb?); raise LINGMA_BUNDLE_MAX_BYTES if it is genuine"
    )]
    TooLarge { limit: u64 },
    #[error("the bundle has more than {0} entries, far more than a session bundle has")]
    TooManyEntries(usize),
    #[error("rejected bundle entry {path:?}: {reason}")]
    BadEntry { path: String, reason: String },
    #[error("the bundle's manifest is missing or invalid: {0}")]
    BadManifest(String),
    #[error(
        "bundle format version {0} is newer than this lingma-gw supports ({FORMAT_VERSION}); upgrade lingma-gw"
    )]
    NewerVersion(u32),
    #[error("{path} does not match its hash in the manifest (the bundle was altered or damaged)")]
    HashMismatch { path: String },
    #[error("work dir {0} is already logged in; pass --force to replace its login")]
    AlreadyLoggedIn(PathBuf),
    #[error(
        "{path} is a symbolic link{}: refusing to write the bundle's files through it; replace it with a real directory or file, or import into another work dir",
        link_target(.target)
    )]
    Link {
        path: PathBuf,
        target: Option<PathBuf>,
    },
    #[error(
        "{path} is {kind}, where the bundle needs a directory: move it out of the way and import again"
    )]
    NotADirectory { path: PathBuf, kind: &'static str },
    #[error(
        "{path} is {kind}, where the bundle puts a login file: move it out of the way and import again"
    )]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error(
        "cannot move the new files in ({path}: {reason}); the import was undone and the work dir is as it was"
    )]
    Undone { path: PathBuf, reason: String },
    #[error(
        "{failure}; undoing the import failed too at {path} ({reason}), so the work dir may hold part of the new login; the replaced files that were not put back are kept in {kept}: put them back by hand, or import again with --force"
    )]
    UndoFailed {
        failure: String,
        path: PathBuf,
        reason: String,
        kept: PathBuf,
    },
}

fn link_target(target: &Option<PathBuf>) -> String {
    match target {
        Some(t) => format!(" (to {})", t.display()),
        None => String::new(),
    }
}

/// One file in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// Unix seconds.
    pub created_at: u64,
    /// The Lingma account name, when known.
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub lingma_version: Option<String>,
    /// The instance the bundle came from.
    #[serde(default)]
    pub instance: Option<String>,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    pub with_history: bool,
    pub account: Option<String>,
    pub lingma_version: Option<String>,
    pub instance: Option<String>,
}

/// Caps applied while reading an untrusted bundle.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Unpacked bytes (tar stream), and also the most input that is read.
    pub max_bytes: u64,
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            max_entries: MAX_ENTRIES,
        }
    }
}

/// A bundle read and verified in memory.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub manifest: Manifest,
    /// Paths relative to the work dir, with their contents, in manifest order.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Whether a work dir holds a login (the files Lingma reads at start).
pub fn is_logged_in(work_dir: &Path) -> bool {
    REQUIRED.iter().all(|f| work_dir.join(f).is_file())
}

fn read_err(path: &Path, e: impl std::fmt::Display) -> BundleError {
    BundleError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> BundleError {
    BundleError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The relative paths a bundle of `work_dir` holds.
fn collect_files(work_dir: &Path, with_history: bool) -> Result<Vec<String>, BundleError> {
    if !is_logged_in(work_dir) {
        return Err(BundleError::NotLoggedIn(work_dir.to_path_buf()));
    }
    let mut files: Vec<String> = LOGIN_FILES
        .iter()
        .filter(|f| work_dir.join(f).is_file())
        .map(|f| f.to_string())
        .collect();
    if with_history {
        let dir = work_dir.join(HISTORY_DIR);
        let mut names: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| history_name_ok(n))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(read_err(&dir, e)),
        };
        names.sort();
        files.extend(names.into_iter().map(|n| format!("{HISTORY_DIR}/{n}")));
    }
    Ok(files)
}

/// Writes the bundle of a logged-in work dir: a tar.gz with `manifest.json` first.
pub fn export(work_dir: &Path, opts: &ExportOptions) -> Result<Vec<u8>, BundleError> {
    let paths = collect_files(work_dir, opts.with_history)?;
    let mut files = Vec::with_capacity(paths.len());
    for p in paths {
        let full = work_dir.join(&p);
        let data = std::fs::read(&full).map_err(|e| read_err(&full, e))?;
        files.push((p, data));
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        created_at: now_secs(),
        account: opts.account.clone().filter(|a| !a.is_empty()),
        lingma_version: opts.lingma_version.clone().filter(|v| !v.is_empty()),
        instance: opts.instance.clone(),
        files: files
            .iter()
            .map(|(p, d)| FileEntry {
                path: p.clone(),
                size: d.len() as u64,
                sha256: hex::encode(Sha256::digest(d)),
            })
            .collect(),
    };
    pack(&manifest, &files)
}

/// tar.gz of the manifest and the files (also used by tests to build hostile bundles' valid parts).
pub fn pack(manifest: &Manifest, files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, BundleError> {
    let io = |e: std::io::Error| BundleError::Write {
        path: PathBuf::from("<bundle>"),
        reason: e.to_string(),
    };
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = manifest.created_at;
    let manifest_json =
        serde_json::to_vec_pretty(manifest).map_err(|e| BundleError::BadManifest(e.to_string()))?;
    let mut append = |path: &str, data: &[u8]| -> std::io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(mtime);
        tar.append_data(&mut h, path, data)
    };
    append(MANIFEST, &manifest_json).map_err(io)?;
    for (p, d) in files {
        append(p, d).map_err(io)?;
    }
    let gz = tar.into_inner().map_err(io)?;
    gz.finish().map_err(io)
}

/// Encrypts with a passphrase (age, scrypt recipient).
pub fn encrypt(data: &[u8], passphrase: &str) -> Result<Vec<u8>, BundleError> {
    if passphrase.is_empty() {
        return Err(BundleError::Encrypt("the passphrase is empty".into()));
    }
    let recipient =
        age::scrypt::Recipient::new(age::secrecy::SecretString::from(passphrase.to_string()));
    age::encrypt(&recipient, data).map_err(|e| BundleError::Encrypt(e.to_string()))
}

/// Standard base64 on one line, newline-terminated.
pub fn to_base64(data: &[u8]) -> Vec<u8> {
    let mut s = base64::engine::general_purpose::STANDARD.encode(data);
    s.push('\n');
    s.into_bytes()
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const AGE_MAGIC: &[u8] = b"age-encryption.org/";
const AGE_ARMOR: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";

/// What a bundle's outer layers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    pub base64: bool,
    pub encrypted: bool,
}

/// Turns raw, base64, encrypted or base64-of-encrypted input into the tar.gz, and says which
/// layers it had.
pub fn decode(
    input: &[u8],
    passphrase: Option<&str>,
    limits: Limits,
) -> Result<(Vec<u8>, Layers), BundleError> {
    if input.len() as u64 > limits.max_bytes {
        return Err(BundleError::InputTooLarge {
            input: "the bundle input".into(),
            limit: limits.max_bytes,
        });
    }
    let mut layers = Layers {
        base64: false,
        encrypted: false,
    };
    let trimmed = trim_ascii(input);
    let mut data: Vec<u8> = if trimmed.starts_with(&GZIP_MAGIC)
        || trimmed.starts_with(AGE_MAGIC)
        || trimmed.starts_with(AGE_ARMOR)
    {
        input.to_vec()
    } else {
        let compact: Vec<u8> = trimmed
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let decoded = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ]
        .iter()
        .find_map(|e| e.decode(&compact).ok())
        .ok_or(BundleError::UnknownFormat)?;
        layers.base64 = true;
        decoded
    };
    if data.starts_with(AGE_MAGIC) || trim_ascii(&data).starts_with(AGE_ARMOR) {
        layers.encrypted = true;
        let pass = passphrase
            .filter(|p| !p.is_empty())
            .ok_or(BundleError::PassphraseRequired)?;
        data = decrypt(&data, pass, limits)?;
    }
    if !data.starts_with(&GZIP_MAGIC) {
        return Err(BundleError::UnknownFormat);
    }
    Ok((data, layers))
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map(|i| i + 1)
        .unwrap_or(start);
    &b[start..end.max(start)]
}

fn decrypt(data: &[u8], passphrase: &str, limits: Limits) -> Result<Vec<u8>, BundleError> {
    let identity =
        age::scrypt::Identity::new(age::secrecy::SecretString::from(passphrase.to_string()));
    let reader = age::armor::ArmoredReader::new(data);
    let decryptor = age::Decryptor::new(reader).map_err(|e| match e {
        age::DecryptError::Io(e) => BundleError::Corrupt(e.to_string()),
        other => BundleError::Corrupt(other.to_string()),
    })?;
    if !decryptor.is_scrypt() {
        return Err(BundleError::Corrupt(
            "the bundle is encrypted to a key, not with a passphrase".into(),
        ));
    }
    let mut out = Vec::new();
    let stream = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::ExcessiveWork { .. } => {
                BundleError::Corrupt("the passphrase's work factor is too high".into())
            }
            _ => BundleError::WrongPassphrase,
        })?;
    stream
        .take(limits.max_bytes + 1)
        .read_to_end(&mut out)
        .map_err(|_| BundleError::WrongPassphrase)?;
    if out.len() as u64 > limits.max_bytes {
        return Err(BundleError::InputTooLarge {
            input: "the decrypted bundle".into(),
            limit: limits.max_bytes,
        });
    }
    Ok(out)
}

/// Counts inflated bytes and fails once they pass the cap, so a bomb is stopped mid-stream.
struct Capped<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(std::io::Error::other(CAP_MARKER));
        }
        Ok(n)
    }
}

const CAP_MARKER: &str = "lingma-gw: unpacked size limit";

fn tar_err(e: std::io::Error, limits: Limits) -> BundleError {
    if e.to_string().contains(CAP_MARKER) {
        BundleError::TooLarge {
            limit: limits.max_bytes,
        }
    } else {
        BundleError::Corrupt(e.to_string())
    }
}

/// Why an entry path is refused (`None`: it is acceptable).
pub fn check_entry_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.contains('\0') {
        return Err("NUL in path".into());
    }
    if path.starts_with('/') || path.starts_with('\\') || path.get(1..2) == Some(":") {
        return Err("absolute paths are not allowed".into());
    }
    if path.contains('\\') {
        return Err("backslashes are not allowed".into());
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.split('/').any(|c| c == "..") {
        return Err("`..` (path traversal) is not allowed".into());
    }
    if trimmed.split('/').any(|c| c.is_empty() || c == ".") {
        return Err("empty or `.` path components are not allowed".into());
    }
    Ok(())
}

/// Whether a (checked) path is one a session bundle may carry.
fn allowed_file(path: &str) -> bool {
    if path == MANIFEST || LOGIN_FILES.contains(&path) {
        return true;
    }
    match path
        .strip_prefix(HISTORY_DIR)
        .and_then(|r| r.strip_prefix('/'))
    {
        Some(name) => history_name_ok(name),
        None => false,
    }
}

fn history_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn allowed_dir(path: &str) -> bool {
    matches!(path.trim_end_matches('/'), "cache" | "cache/db")
}

/// Reads and verifies a tar.gz bundle in memory.
pub fn read(targz: &[u8], limits: Limits) -> Result<Bundle, BundleError> {
    let gz = flate2::read::GzDecoder::new(targz);
    let capped = Capped {
        inner: gz,
        read: 0,
        limit: limits.max_bytes,
    };
    let mut archive = tar::Archive::new(capped);
    let mut manifest: Option<Manifest> = None;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let entries = archive.entries().map_err(|e| tar_err(e, limits))?;
    for (count, entry) in entries.enumerate() {
        if count >= limits.max_entries {
            return Err(BundleError::TooManyEntries(limits.max_entries));
        }
        let mut entry = entry.map_err(|e| tar_err(e, limits))?;
        let raw = entry.path_bytes();
        let path = String::from_utf8(raw.to_vec()).map_err(|_| BundleError::BadEntry {
            path: String::from_utf8_lossy(&raw).into_owned(),
            reason: "the path is not UTF-8".into(),
        })?;
        let bad = |reason: &str| BundleError::BadEntry {
            path: path.clone(),
            reason: reason.to_string(),
        };
        check_entry_path(&path).map_err(|r| bad(&r))?;
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            return Err(bad("links are not allowed"));
        }
        if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            return Err(bad("devices and special files are not allowed"));
        }
        if kind.is_dir() {
            if !allowed_dir(&path) {
                return Err(bad("not a directory a session bundle has"));
            }
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            return Err(bad("only regular files are allowed"));
        }
        if !allowed_file(&path) {
            return Err(bad("not a file a session bundle has"));
        }
        let size = entry.header().size().map_err(|e| tar_err(e, limits))?;
        if size > limits.max_bytes {
            return Err(BundleError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 20));
        entry
            .read_to_end(&mut data)
            .map_err(|e| tar_err(e, limits))?;
        if data.len() as u64 != size {
            return Err(BundleError::Corrupt(format!("{path} is truncated")));
        }
        if path == MANIFEST {
            if manifest.is_some() {
                return Err(BundleError::BadManifest("two manifests".into()));
            }
            manifest = Some(
                serde_json::from_slice(&data)
                    .map_err(|e| BundleError::BadManifest(e.to_string()))?,
            );
        } else {
            if files.iter().any(|(p, _)| *p == path) {
                return Err(bad("the path appears twice"));
            }
            files.push((path, data));
        }
    }
    let manifest = manifest.ok_or_else(|| BundleError::BadManifest("no manifest.json".into()))?;
    let files = verify(&manifest, files)?;
    Ok(Bundle { manifest, files })
}

/// Checks the manifest against the files: format, version, exactly the same set of paths, and
/// each file's size and SHA-256. Returns the files in manifest order.
pub fn verify(
    manifest: &Manifest,
    mut files: Vec<(String, Vec<u8>)>,
) -> Result<Vec<(String, Vec<u8>)>, BundleError> {
    if manifest.format != FORMAT {
        return Err(BundleError::BadManifest(format!(
            "format is {:?}, expected {FORMAT:?}",
            manifest.format
        )));
    }
    if manifest.version > FORMAT_VERSION {
        return Err(BundleError::NewerVersion(manifest.version));
    }
    if manifest.version == 0 {
        return Err(BundleError::BadManifest("version 0".into()));
    }
    for required in REQUIRED {
        if !manifest.files.iter().any(|f| f.path == required) {
            return Err(BundleError::BadManifest(format!(
                "it does not list {required}"
            )));
        }
    }
    let mut ordered = Vec::with_capacity(manifest.files.len());
    for f in &manifest.files {
        check_entry_path(&f.path).map_err(|reason| BundleError::BadEntry {
            path: f.path.clone(),
            reason,
        })?;
        if f.path == MANIFEST || !allowed_file(&f.path) {
            return Err(BundleError::BadManifest(format!(
                "it lists {:?}, which a session bundle does not have",
                f.path
            )));
        }
        let Some(i) = files.iter().position(|(p, _)| *p == f.path) else {
            return Err(BundleError::BadManifest(format!(
                "{} is listed but not in the bundle",
                f.path
            )));
        };
        let (path, data) = files.swap_remove(i);
        let hash = hex::encode(Sha256::digest(&data));
        if data.len() as u64 != f.size || !hash.eq_ignore_ascii_case(&f.sha256) {
            return Err(BundleError::HashMismatch { path });
        }
        ordered.push((path, data));
    }
    if let Some((extra, _)) = files.first() {
        return Err(BundleError::BadManifest(format!(
            "{extra} is in the bundle but not listed"
        )));
    }
    Ok(ordered)
}

/// What [`install`] did.
#[derive(Debug, Clone)]
pub struct Installed {
    pub work_dir: PathBuf,
    pub files: Vec<String>,
    pub replaced: bool,
}

/// Writes a verified bundle into `work_dir`. Refuses a logged-in work dir unless `force`.
///
/// Look, stage, swap; nothing is created before the look passes, and a failed swap is undone:
/// - look: the work dir and every path below it that the bundle writes (each directory on the
///   way and the file itself) must be absent, a real directory, or (the file) a regular file.
///   A symbolic link anywhere there is refused, so no file or directory is ever made through
///   one. The work dir's own ancestors are the user's choice and are not checked.
/// - stage: the files are written into a temporary directory beside the work dir.
/// - swap: a work dir that does not exist yet is renamed into place at once; otherwise the files
///   are renamed in one by one, `cache/user` last, and each file replaced is first kept (hard
///   linked) in the staging dir. If any step fails, the steps taken are undone in reverse, so the
///   work dir is as it was.
pub fn install(bundle: &Bundle, work_dir: &Path, force: bool) -> Result<Installed, BundleError> {
    install_with(bundle, work_dir, force, &mut |from, to| {
        std::fs::rename(from, to)
    })
}

/// [`install`] with the rename that moves each staged file into place given, so that tests can
/// make it fail.
fn install_with(
    bundle: &Bundle,
    work_dir: &Path,
    force: bool,
    rename: &mut dyn FnMut(&Path, &Path) -> std::io::Result<()>,
) -> Result<Installed, BundleError> {
    // `Bundle`'s fields are public: check again what `read` checked before joining any path.
    for (path, _) in &bundle.files {
        let bad = |reason: String| BundleError::BadEntry {
            path: path.clone(),
            reason,
        };
        check_entry_path(path).map_err(bad)?;
        if path == MANIFEST || !allowed_file(path) {
            return Err(bad("not a file a session bundle has".into()));
        }
    }
    // Look.
    let exists = check_destinations(work_dir, bundle.files.iter().map(|(p, _)| p.as_str()))?;
    let replaced = is_logged_in(work_dir);
    if replaced && !force {
        return Err(BundleError::AlreadyLoggedIn(work_dir.to_path_buf()));
    }
    // Stage.
    let parent = match work_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| write_err(&parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".lingma-gw-import-")
        .tempdir_in(&parent)
        .map_err(|e| write_err(&parent, e))?;
    let stage = staging.path().join("w");
    for (path, data) in &bundle.files {
        let dest = stage.join(path);
        if let Some(dir) = dest.parent() {
            create_private_dirs(dir)?;
        }
        write_private(&dest, data)?;
    }
    // Swap.
    if !exists {
        set_mode(&stage, 0o700)?;
        rename(&stage, work_dir).map_err(|e| write_err(work_dir, e))?;
    } else {
        // The work dir has other state (logs, index, workspace): move the files in one by one,
        // `cache/user` last, so a Lingma starting meanwhile sees the old login or the whole new one.
        let mut order: Vec<&str> = bundle.files.iter().map(|(p, _)| p.as_str()).collect();
        // Stable: manifest order, with cache/user moved to the end.
        order.sort_by_key(|p| *p == "cache/user");
        let kept = staging.path().join("replaced");
        let result = swap(work_dir, &stage, &kept, &order, rename);
        if matches!(result, Err(BundleError::UndoFailed { .. })) {
            // The replaced files that could not be put back live in the staging dir: keep it.
            let _ = staging.keep();
        }
        result?;
    }
    Ok(Installed {
        work_dir: work_dir.to_path_buf(),
        files: bundle.files.iter().map(|(p, _)| p.clone()).collect(),
        replaced,
    })
}

/// What is at `path`, links not followed: `None` when nothing is. A symbolic link is refused.
fn existing(path: &Path) -> Result<Option<std::fs::FileType>, BundleError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(BundleError::Link {
            path: path.to_path_buf(),
            target: std::fs::read_link(path).ok(),
        }),
        Ok(m) => Ok(Some(m.file_type())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_err(path, e)),
    }
}

fn kind_name(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

/// The look step: the work dir and each path from it down to every destination is absent, a
/// real directory, or (the destination) a regular file. Returns whether the work dir exists.
fn check_destinations<'a>(
    work_dir: &Path,
    paths: impl IntoIterator<Item = &'a str>,
) -> Result<bool, BundleError> {
    let Some(t) = existing(work_dir)? else {
        return Ok(false);
    };
    if !t.is_dir() {
        return Err(BundleError::NotADirectory {
            path: work_dir.to_path_buf(),
            kind: kind_name(t),
        });
    }
    for rel in paths {
        let mut p = work_dir.to_path_buf();
        let mut parts = rel.split('/').peekable();
        while let Some(part) = parts.next() {
            p.push(part);
            let last = parts.peek().is_none();
            match existing(&p)? {
                // Nothing below a missing path can exist.
                None => break,
                Some(t) if last && !t.is_file() => {
                    return Err(BundleError::NotAFile {
                        path: p,
                        kind: kind_name(t),
                    });
                }
                Some(t) if !last && !t.is_dir() => {
                    return Err(BundleError::NotADirectory {
                        path: p,
                        kind: kind_name(t),
                    });
                }
                Some(_) => {}
            }
        }
    }
    Ok(true)
}

/// One change the swap made to the work dir, and so one to undo.
enum Step {
    /// A directory that did not exist.
    Dir(PathBuf),
    /// A file that did not exist.
    Created(PathBuf),
    /// A file that was replaced; the old one is kept at `kept`.
    Replaced { dest: PathBuf, kept: PathBuf },
}

/// Moves the staged files into the existing work dir in `order`, each checked again just before
/// (the work dir may have changed since the look). On failure every step taken is undone.
fn swap(
    work_dir: &Path,
    stage: &Path,
    kept: &Path,
    order: &[&str],
    rename: &mut dyn FnMut(&Path, &Path) -> std::io::Result<()>,
) -> Result<(), BundleError> {
    let mut done = Vec::new();
    let Err(failure) = swap_steps(work_dir, stage, kept, order, rename, &mut done) else {
        return Ok(());
    };
    match undo(&done) {
        Ok(()) => Err(match failure {
            BundleError::Read { path, reason } | BundleError::Write { path, reason } => {
                BundleError::Undone { path, reason }
            }
            // Refusals (a link or a directory appeared meanwhile) say so themselves.
            other => other,
        }),
        Err((undo_path, e)) => Err(BundleError::UndoFailed {
            failure: failure.to_string(),
            path: undo_path,
            reason: e.to_string(),
            kept: kept.to_path_buf(),
        }),
    }
}

fn swap_steps(
    work_dir: &Path,
    stage: &Path,
    kept: &Path,
    order: &[&str],
    rename: &mut dyn FnMut(&Path, &Path) -> std::io::Result<()>,
    done: &mut Vec<Step>,
) -> Result<(), BundleError> {
    for rel in order {
        let parts: Vec<&str> = rel.split('/').collect();
        let mut dir = work_dir.to_path_buf();
        for part in &parts[..parts.len().saturating_sub(1)] {
            dir.push(part);
            match existing(&dir)? {
                None => {
                    create_private_dir(&dir)?;
                    done.push(Step::Dir(dir.clone()));
                }
                Some(t) if t.is_dir() => {}
                Some(t) => {
                    return Err(BundleError::NotADirectory {
                        path: dir,
                        kind: kind_name(t),
                    });
                }
            }
        }
        let dest = work_dir.join(rel);
        let from = stage.join(rel);
        match existing(&dest)? {
            None => {
                rename(&from, &dest).map_err(|e| write_err(&dest, e))?;
                done.push(Step::Created(dest));
            }
            Some(t) if t.is_file() => {
                let keep = kept.join(rel);
                if let Some(d) = keep.parent() {
                    create_private_dirs(d)?;
                }
                // A hard link keeps the very file (contents, mode, owner, times) for an undo;
                // a copy where links are not supported.
                std::fs::hard_link(&dest, &keep)
                    .or_else(|_| std::fs::copy(&dest, &keep).map(drop))
                    .map_err(|e| write_err(&keep, e))?;
                rename(&from, &dest).map_err(|e| write_err(&dest, e))?;
                done.push(Step::Replaced { dest, kept: keep });
            }
            Some(t) => {
                return Err(BundleError::NotAFile {
                    path: dest,
                    kind: kind_name(t),
                });
            }
        }
    }
    Ok(())
}

/// Undoes the steps in reverse; goes on past a failure and returns the first one.
fn undo(done: &[Step]) -> Result<(), (PathBuf, std::io::Error)> {
    let mut first = None;
    for step in done.iter().rev() {
        let (path, result) = match step {
            Step::Dir(d) => (d, std::fs::remove_dir(d)),
            Step::Created(f) => (f, std::fs::remove_file(f)),
            Step::Replaced { dest, kept } => (dest, std::fs::rename(kept, dest)),
        };
        if let Err(e) = result {
            first.get_or_insert((path.clone(), e));
        }
    }
    first.map_or(Ok(()), Err)
}

fn create_private_dir(dir: &Path) -> Result<(), BundleError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| write_err(dir, e))
}

fn create_private_dirs(dir: &Path) -> Result<(), BundleError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| write_err(dir, e))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), BundleError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| write_err(path, e))
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), BundleError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| write_err(path, e))?;
    f.write_all(data).map_err(|e| write_err(path, e))?;
    f.sync_all().map_err(|e| write_err(path, e))
}

/// Decodes, reads, verifies and installs: the whole import of one input.
pub fn import(
    input: &[u8],
    work_dir: &Path,
    passphrase: Option<&str>,
    force: bool,
    limits: Limits,
) -> Result<(Bundle, Installed), BundleError> {
    let (targz, _) = decode(input, passphrase, limits)?;
    let bundle = read(&targz, limits)?;
    let installed = install(&bundle, work_dir, force)?;
    Ok((bundle, installed))
}

/// Reads an input file with the size cap; a regular file over the cap is refused unread.
pub fn read_input(path: &Path, limits: Limits) -> Result<Vec<u8>, BundleError> {
    let too_large = |size: Option<u64>| BundleError::InputTooLarge {
        input: match size {
            Some(n) => format!("the bundle file {} ({n} bytes)", path.display()),
            None => format!("the bundle file {}", path.display()),
        },
        limit: limits.max_bytes,
    };
    let f = std::fs::File::open(path).map_err(|e| read_err(path, e))?;
    let meta = f.metadata().map_err(|e| read_err(path, e))?;
    if meta.is_file() && meta.len() > limits.max_bytes {
        return Err(too_large(Some(meta.len())));
    }
    let mut data = Vec::new();
    // A pipe, or a file that grew since: the cap holds while reading.
    f.take(limits.max_bytes + 1)
        .read_to_end(&mut data)
        .map_err(|e| read_err(path, e))?;
    if data.len() as u64 > limits.max_bytes {
        return Err(too_large(None));
    }
    Ok(data)
}

/// Seeds a logged-out work dir from a bundle file (the pool's session seeds). A logged-in work dir
/// is left alone. The bundle must not be encrypted: `serve` decrypts seeds once at start.
pub fn seed_from_file(bundle: &Path, work_dir: &Path) -> Result<bool, BundleError> {
    if is_logged_in(work_dir) {
        return Ok(false);
    }
    let limits = Limits::default();
    let input = read_input(bundle, limits)?;
    import(&input, work_dir, None, false, limits)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_for(files: &[(String, Vec<u8>)]) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            created_at: 1,
            account: Some("demo".into()),
            lingma_version: Some("2.11.1".into()),
            instance: None,
            files: files
                .iter()
                .map(|(p, d)| FileEntry {
                    path: p.clone(),
                    size: d.len() as u64,
                    sha256: hex::encode(Sha256::digest(d)),
                })
                .collect(),
        }
    }

    fn login_files() -> Vec<(String, Vec<u8>)> {
        vec![
            ("cache/id".into(), b"0f1e2d3c-machine".to_vec()),
            ("cache/user".into(), b"{\"uid\":\"1\"}".to_vec()),
        ]
    }

    #[test]
    fn entry_paths() {
        for ok in ["cache/id", "cache/db/local.db", "manifest.json", "cache/"] {
            assert!(check_entry_path(ok).is_ok(), "{ok}");
        }
        let reason = |p: &str| check_entry_path(p).unwrap_err();
        assert!(reason("/etc/passwd").contains("absolute"));
        assert!(reason("C:/x").contains("absolute"));
        assert!(reason("../x").contains(".."));
        assert!(reason("cache/../../x").contains(".."));
        assert!(reason("cache/./id").contains("`.`"));
        assert!(reason("cache//id").contains("empty"));
        assert!(reason("cache\\id").contains("backslash"));
        assert!(reason("").contains("empty"));
        assert!(allowed_file("cache/db/local.db-wal"));
        assert!(!allowed_file("cache/db/.hidden"));
        assert!(!allowed_file("cache/db/sub/x"));
        assert!(!allowed_file("logs/lingma.log"));
        assert!(!allowed_file("cache/policy"));
    }

    #[test]
    fn manifest_verification() {
        let files = login_files();
        let m = manifest_for(&files);
        assert_eq!(verify(&m, files.clone()).unwrap().len(), 2);

        let mut tampered = files.clone();
        tampered[1].1 = b"{\"uid\":\"2\"}".to_vec();
        assert!(matches!(
            verify(&m, tampered),
            Err(BundleError::HashMismatch { path }) if path == "cache/user"
        ));

        let mut extra = files.clone();
        extra.push(("cache/quota".into(), b"q".to_vec()));
        assert!(matches!(
            verify(&m, extra),
            Err(BundleError::BadManifest(_))
        ));

        assert!(matches!(
            verify(&m, files[..1].to_vec()),
            Err(BundleError::BadManifest(_))
        ));

        let mut newer = m.clone();
        newer.version = FORMAT_VERSION + 1;
        assert!(matches!(
            verify(&newer, files.clone()),
            Err(BundleError::NewerVersion(_))
        ));

        let mut wrong = m.clone();
        wrong.format = "other".into();
        assert!(matches!(
            verify(&wrong, files.clone()),
            Err(BundleError::BadManifest(_))
        ));

        let mut no_user = manifest_for(&files[..1]);
        no_user.files.retain(|f| f.path != "cache/user");
        assert!(matches!(
            verify(&no_user, files[..1].to_vec()),
            Err(BundleError::BadManifest(_))
        ));
    }

    #[test]
    fn pack_read_install_round_trip_with_modes() {
        use std::os::unix::fs::PermissionsExt;
        let files = login_files();
        let packed = pack(&manifest_for(&files), &files).unwrap();
        let b64 = to_base64(&packed);
        let (targz, layers) = decode(&b64, None, Limits::default()).unwrap();
        assert!(layers.base64 && !layers.encrypted);
        let bundle = read(&targz, Limits::default()).unwrap();
        assert_eq!(bundle.manifest.account.as_deref(), Some("demo"));
        let root = tempfile::tempdir().unwrap();
        let wd = root.path().join("inst-0");
        install(&bundle, &wd, false).unwrap();
        assert_eq!(std::fs::read(wd.join("cache/user")).unwrap(), files[1].1);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&wd.join("cache/user")), 0o600);
        assert_eq!(mode(&wd.join("cache")), 0o700);
        assert_eq!(mode(&wd), 0o700);
        assert!(matches!(
            install(&bundle, &wd, false),
            Err(BundleError::AlreadyLoggedIn(_))
        ));
        let again = install(&bundle, &wd, true).unwrap();
        assert!(again.replaced);
        // Nothing but the work dir is left in the parent.
        let names: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("inst-0")]);
    }

    #[test]
    fn bombs_and_counts_are_capped() {
        let big = vec![0u8; 300_000];
        let files = vec![
            ("cache/id".to_string(), b"i".to_vec()),
            ("cache/user".to_string(), big),
        ];
        let packed = pack(&manifest_for(&files), &files).unwrap();
        let small = Limits {
            max_bytes: 100_000,
            max_entries: MAX_ENTRIES,
        };
        assert!(matches!(
            read(&packed, small),
            Err(BundleError::TooLarge { .. })
        ));
        let few = Limits {
            max_bytes: DEFAULT_MAX_BYTES,
            max_entries: 2,
        };
        assert!(matches!(
            read(&packed, few),
            Err(BundleError::TooManyEntries(2))
        ));
        assert!(matches!(
            read(&packed[..packed.len() / 2], Limits::default()),
            Err(BundleError::Corrupt(_))
        ));
        assert!(matches!(
            decode(b"hello world", None, Limits::default()),
            Err(BundleError::UnknownFormat)
        ));
    }

    fn bundle_of(files: &[(&str, &[u8])]) -> Bundle {
        let files: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|(p, d)| (p.to_string(), d.to_vec()))
            .collect();
        Bundle {
            manifest: manifest_for(&files),
            files,
        }
    }

    /// A second login, different from the one a test work dir starts with, with history and
    /// quota (files the work dir does not have), listed history first: manifest order is the
    /// bundle's choice.
    fn other_login() -> Bundle {
        bundle_of(&[
            ("cache/db/local.db", b"new history"),
            ("cache/id", b"new-machine-id"),
            ("cache/quota", b"new quota"),
            ("cache/user", b"{\"uid\":\"new\"}"),
        ])
    }

    /// Every entry under `dir`, links not followed: directories and files with their modes,
    /// files with their contents, links with their targets.
    fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, String> {
        use std::os::unix::fs::PermissionsExt;
        fn walk(dir: &Path, out: &mut std::collections::BTreeMap<PathBuf, String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                let mode = m.permissions().mode() & 0o7777;
                let what = if m.file_type().is_symlink() {
                    format!("link -> {}", std::fs::read_link(&p).unwrap().display())
                } else if m.is_dir() {
                    walk(&p, out);
                    format!("dir {mode:o}")
                } else {
                    let data = std::fs::read(&p).unwrap();
                    format!("file {mode:o} {:?}", String::from_utf8_lossy(&data))
                };
                out.insert(p, what);
            }
        }
        let mut out = std::collections::BTreeMap::new();
        walk(dir, &mut out);
        out
    }

    /// `<root>/inst-0`, logged in with an old login, with other state beside it.
    fn logged_in_work_dir(root: &Path) -> PathBuf {
        let wd = root.join("inst-0");
        std::fs::create_dir_all(wd.join("cache")).unwrap();
        std::fs::write(wd.join("cache/id"), b"old-machine-id").unwrap();
        std::fs::write(wd.join("cache/user"), b"{\"uid\":\"old\"}").unwrap();
        std::fs::write(wd.join("logs.keep"), b"other state").unwrap();
        assert!(is_logged_in(&wd));
        wd
    }

    /// An install that must be refused in the look step: before the staging dir is made beside
    /// the work dir (which would change the parent's mtime even once removed), before any rename.
    fn refused(bundle: &Bundle, work_dir: &Path, force: bool) -> BundleError {
        let parent = work_dir.parent().unwrap();
        let mtime = || {
            std::fs::symlink_metadata(parent)
                .unwrap()
                .modified()
                .unwrap()
        };
        let before = mtime();
        let mut renames = Vec::new();
        let result = install_with(bundle, work_dir, force, &mut |from, to| {
            renames.push(to.to_path_buf());
            std::fs::rename(from, to)
        });
        assert!(renames.is_empty(), "renamed {renames:?} before refusing");
        assert_eq!(mtime(), before, "a staging dir was made in {parent:?}");
        result.unwrap_err()
    }

    fn ino(p: &Path) -> u64 {
        std::os::unix::fs::MetadataExt::ino(&std::fs::symlink_metadata(p).unwrap())
    }

    #[test]
    fn a_symlinked_cache_dir_is_refused_before_anything_is_created() {
        let root = tempfile::tempdir().unwrap();
        let wd = root.path().join("inst-0");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&wd).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, wd.join("cache")).unwrap();
        let before = snapshot(root.path());
        for force in [false, true] {
            let err = refused(&other_login(), &wd, force);
            assert_eq!(snapshot(root.path()), before, "force {force}: {err}");
            assert!(
                matches!(&err, BundleError::Link { path, target }
                    if *path == wd.join("cache") && target.as_deref() == Some(&*outside)),
                "{err:?}"
            );
            assert_eq!(
                err.to_string(),
                format!(
                    "{} is a symbolic link (to {}): refusing to write the bundle's files through \
                     it; replace it with a real directory or file, or import into another work dir",
                    wd.join("cache").display(),
                    outside.display()
                )
            );
        }
    }

    #[test]
    fn a_symlinked_work_dir_is_refused_before_anything_is_created() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let w = root.path().join("w");
        std::fs::create_dir(&w).unwrap();
        // One link to an existing directory, one dangling.
        let linked = w.join("inst-0");
        let dangling = w.join("inst-1");
        std::os::unix::fs::symlink(&outside, &linked).unwrap();
        std::os::unix::fs::symlink(root.path().join("nowhere"), &dangling).unwrap();
        let before = snapshot(root.path());
        for wd in [&linked, &dangling] {
            for force in [false, true] {
                let err = refused(&other_login(), wd, force);
                assert_eq!(snapshot(root.path()), before, "{wd:?} force {force}: {err}");
                assert!(
                    matches!(&err, BundleError::Link { path, .. } if path == wd),
                    "{err:?}"
                );
            }
        }
        assert!(!root.path().join("nowhere").exists());
    }

    #[test]
    fn forced_install_over_a_linked_or_directory_cache_user_changes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let wd = logged_in_work_dir(root.path());
        let outside = root.path().join("outside-user");
        std::fs::write(&outside, b"{\"uid\":\"someone else\"}").unwrap();

        // cache/user a link to a file outside the work dir.
        std::fs::remove_file(wd.join("cache/user")).unwrap();
        std::os::unix::fs::symlink(&outside, wd.join("cache/user")).unwrap();
        let before = snapshot(root.path());
        let err = refused(&other_login(), &wd, true);
        assert_eq!(snapshot(root.path()), before, "{err}");
        assert_eq!(
            std::fs::read(wd.join("cache/id")).unwrap(),
            b"old-machine-id"
        );
        assert!(
            matches!(&err, BundleError::Link { path, .. } if *path == wd.join("cache/user")),
            "{err:?}"
        );

        // cache/user a non-empty directory (the work dir is then not logged in: no --force
        // needed, and the refusal is the same with it).
        std::fs::remove_file(wd.join("cache/user")).unwrap();
        std::fs::create_dir_all(wd.join("cache/user/sub")).unwrap();
        let before = snapshot(root.path());
        for force in [false, true] {
            let err = refused(&other_login(), &wd, force);
            assert_eq!(snapshot(root.path()), before, "force {force}: {err}");
            assert!(
                matches!(&err, BundleError::NotAFile { path, kind: "a directory" }
                    if *path == wd.join("cache/user")),
                "{err:?}"
            );
            assert!(
                err.to_string()
                    .contains("is a directory, where the bundle puts a login file"),
                "{err}"
            );
        }

        // `cache` a regular file.
        std::fs::remove_dir_all(wd.join("cache")).unwrap();
        std::fs::write(wd.join("cache"), b"not a dir").unwrap();
        let before = snapshot(root.path());
        let err = refused(&other_login(), &wd, true);
        assert_eq!(snapshot(root.path()), before, "{err}");
        assert!(
            matches!(&err, BundleError::NotADirectory { path, kind: "a regular file" }
                if *path == wd.join("cache")),
            "{err:?}"
        );
    }

    #[test]
    fn a_failed_rename_is_undone_and_the_work_dir_is_as_it_was() {
        let root = tempfile::tempdir().unwrap();
        let wd = logged_in_work_dir(root.path());
        let before = snapshot(root.path());
        let id_ino = ino(&wd.join("cache/id"));
        let mut renamed = Vec::new();
        let err = install_with(&other_login(), &wd, true, &mut |from, to| {
            renamed.push(to.strip_prefix(&wd).unwrap().to_path_buf());
            if to.ends_with("cache/user") {
                return Err(std::io::Error::other("injected failure"));
            }
            std::fs::rename(from, to)
        })
        .unwrap_err();
        // Everything else was moved in first, cache/user last.
        assert_eq!(
            renamed,
            ["cache/db/local.db", "cache/id", "cache/quota", "cache/user"]
                .map(PathBuf::from)
                .to_vec()
        );
        assert_eq!(snapshot(root.path()), before, "{err}");
        assert_eq!(ino(&wd.join("cache/id")), id_ino, "the very file is back");
        assert!(
            matches!(&err, BundleError::Undone { path, reason }
                if *path == wd.join("cache/user") && reason == "injected failure"),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .ends_with("the import was undone and the work dir is as it was"),
            "{err}"
        );
    }

    #[test]
    fn a_destination_that_becomes_a_directory_mid_swap_is_undone() {
        let root = tempfile::tempdir().unwrap();
        let wd = logged_in_work_dir(root.path());
        // Not logged in: a machine id but no user yet.
        std::fs::remove_file(wd.join("cache/user")).unwrap();
        let mut before = snapshot(root.path());
        let user = wd.join("cache/user");
        // Something makes cache/user a non-empty directory after the look: the real rename
        // onto it fails.
        let err = install_with(&other_login(), &wd, false, &mut |from, to| {
            if to == user {
                std::fs::create_dir_all(user.join("sub")).unwrap();
            }
            std::fs::rename(from, to)
        })
        .unwrap_err();
        assert!(
            matches!(&err, BundleError::Undone { path, .. } if *path == user),
            "{err:?}"
        );
        // As before, plus only what the intruder made.
        for p in [user.clone(), user.join("sub")] {
            before.insert(p, String::new());
        }
        let after = snapshot(root.path());
        assert_eq!(
            after.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>(),
            "{err}"
        );
        for (p, what) in &after {
            if !p.starts_with(&user) {
                assert_eq!(&before[p], what, "{p:?}");
            }
        }
    }

    #[test]
    fn an_undo_that_fails_says_so_and_keeps_the_replaced_files() {
        let root = tempfile::tempdir().unwrap();
        let wd = logged_in_work_dir(root.path());
        let db = wd.join("cache/db/local.db");
        let err = install_with(&other_login(), &wd, true, &mut |from, to| {
            if to.ends_with("cache/user") {
                // The new history file has turned into a directory: the undo cannot remove it.
                std::fs::remove_file(&db)?;
                std::fs::create_dir_all(db.join("sub"))?;
                return Err(std::io::Error::other("injected failure"));
            }
            std::fs::rename(from, to)
        })
        .unwrap_err();
        let BundleError::UndoFailed {
            failure,
            path,
            kept,
            ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert!(failure.contains("injected failure"), "{failure}");
        assert_eq!(*path, db);
        assert!(kept.starts_with(root.path()) && kept.is_dir(), "{kept:?}");
        // The undo went on past the failure: the old login is back.
        assert_eq!(
            std::fs::read(wd.join("cache/id")).unwrap(),
            b"old-machine-id"
        );
        assert_eq!(
            std::fs::read(wd.join("cache/user")).unwrap(),
            b"{\"uid\":\"old\"}"
        );
        assert!(!wd.join("cache/quota").exists());
        assert!(
            err.to_string().contains(&kept.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn install_checks_the_paths_of_a_hand_made_bundle() {
        let root = tempfile::tempdir().unwrap();
        let wd = logged_in_work_dir(root.path());
        let before = snapshot(root.path());
        let mut b = other_login();
        b.files.push(("../escaped".into(), b"x".to_vec()));
        let err = install(&b, &wd, true).unwrap_err();
        assert!(
            matches!(&err, BundleError::BadEntry { path, .. } if path == "../escaped"),
            "{err:?}"
        );
        assert_eq!(snapshot(root.path()), before);
    }

    #[test]
    fn an_oversize_input_is_too_large_and_a_bomb_is_a_bomb() {
        let dir = tempfile::tempdir().unwrap();
        // 200 MB, sparse.
        let big = dir.path().join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(200_000_000)
            .unwrap();
        let err = read_input(&big, Limits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                BundleError::InputTooLarge {
                    limit: DEFAULT_MAX_BYTES,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "the bundle file {} (200000000 bytes) is too large: a bundle may be at most \
                 67108864 bytes; if it really is a session bundle, raise the limit with \
                 LINGMA_BUNDLE_MAX_BYTES",
                big.display()
            )
        );
        let small = Limits {
            max_bytes: 1024,
            max_entries: MAX_ENTRIES,
        };
        let err = decode(&[b'A'; 1025], None, small).unwrap_err();
        assert!(
            matches!(err, BundleError::InputTooLarge { limit: 1024, .. }),
            "{err:?}"
        );
        assert!(!err.to_string().contains("gzip bomb"), "{err}");
        // Inflating past the cap is the bomb.
        let files = vec![
            ("cache/id".to_string(), b"i".to_vec()),
            ("cache/user".to_string(), vec![0u8; 300_000]),
        ];
        let packed = pack(&manifest_for(&files), &files).unwrap();
        assert!(packed.len() < 1024 * 4);
        let err = read(
            &packed,
            Limits {
                max_bytes: 100_000,
                max_entries: MAX_ENTRIES,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("(a gzip bomb?)"), "{err}");
    }
}
