//! Session bundles: moving a logged-in Lingma work dir to another machine (a login lives in a few
//! files under `cache/`; the machine id among them is what Lingma binds it to).
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
//! the manifest's size and SHA-256. Only then is anything written ([`install`]: look, stage, swap).
//!
//! This file owns the format (manifest, packing, layers, reading and verifying) and export;
//! `install` writes a verified bundle into a work dir; `seed` fills logged-out work dirs from a
//! session seed (a bundle or a logged-in work dir) for the pool.

mod install;
mod seed;

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::lingma::workdir::{CACHE_DIR, HISTORY_DIR, MACHINE_ID_FILE, USER_FILE, WorkDir};

pub use install::{Installed, install};
pub use seed::{Seed, seed_work_dir};

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
    MACHINE_ID_FILE,
    USER_FILE,
    "cache/quota",
    "cache/machine_token.json",
    "cache/cache.json",
];
const REQUIRED: [&str; 2] = [MACHINE_ID_FILE, USER_FILE];

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

impl FileEntry {
    /// The entry for `data` at `path`.
    pub fn of(path: &str, data: &[u8]) -> Self {
        Self {
            path: path.to_string(),
            size: data.len() as u64,
            sha256: hex::encode(Sha256::digest(data)),
        }
    }
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
    WorkDir::new(work_dir).has_login()
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
        created_at: crate::util::unix_secs(),
        account: opts.account.clone().filter(|a| !a.is_empty()),
        lingma_version: opts.lingma_version.clone().filter(|v| !v.is_empty()),
        instance: opts.instance.clone(),
        files: files.iter().map(|(p, d)| FileEntry::of(p, d)).collect(),
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
    matches!(path.trim_end_matches('/'), CACHE_DIR | HISTORY_DIR)
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn manifest_for(files: &[(String, Vec<u8>)]) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            created_at: 1,
            account: Some("demo".into()),
            lingma_version: Some("2.11.1".into()),
            instance: None,
            files: files.iter().map(|(p, d)| FileEntry::of(p, d)).collect(),
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
