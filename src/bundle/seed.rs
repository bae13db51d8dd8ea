//! Session seeds: what fills a work dir that is not logged in (the pool seeds each instance before
//! every start). A seed is a logged-in work dir to copy, or a session bundle installed with all of
//! the import's checks.

use std::path::{Path, PathBuf};

use super::{BundleError, Limits, import, is_logged_in, read_input};
use crate::lingma::workdir::{INSTANCE_FILE, LOGS_DIR, WorkDir};

/// Where a logged-out work dir gets its login from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seed {
    /// A logged-in work dir, copied in (all but its logs and instance file).
    Dir(PathBuf),
    /// A session bundle file, not encrypted (`serve` decrypts and verifies each configured seed
    /// once at start and stores it as such a file).
    Bundle(PathBuf),
    /// A session bundle given as text (base64, as a CI secret in `LINGMA_SESSION_BUNDLE`).
    Inline(String),
}

impl Seed {
    /// A configured seed (`--session-bundle`, an account's `bundle`): an existing directory, else
    /// an existing file, else the value itself as bundle text.
    pub fn from_setting(value: &Path) -> Self {
        if value.is_dir() {
            Self::Dir(value.to_path_buf())
        } else if value.is_file() {
            Self::Bundle(value.to_path_buf())
        } else {
            // Base64 is ASCII: a value that is not UTF-8 is no bundle either way, and the
            // import says so.
            Self::Inline(value.to_string_lossy().into_owned())
        }
    }
}

impl std::fmt::Display for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(p) | Self::Bundle(p) => write!(f, "{}", p.display()),
            Self::Inline(_) => f.write_str("<inline bundle>"),
        }
    }
}

/// Fills `work_dir` from `seed` unless it is logged in already (has a `cache/user`). Files are
/// written to temporary names and renamed, so a failure never leaves half a file.
pub fn seed_work_dir(work_dir: &WorkDir, seed: Option<&Seed>) -> std::io::Result<()> {
    let Some(seed) = seed else {
        return Ok(());
    };
    if work_dir.user().exists() {
        return Ok(());
    }
    tracing::info!(work_dir = %work_dir.root().display(), %seed, "seeding a logged-out work dir");
    let installed = match seed {
        Seed::Dir(dir) => return copy_tree(dir, work_dir.root()),
        Seed::Bundle(file) => seed_from_file(file, work_dir.root()),
        Seed::Inline(text) => seed_from_text(text, work_dir.root()),
    };
    installed.map(drop).map_err(std::io::Error::other)
}

/// Copies a logged-in work dir, but not what belongs to its own runs (logs, instance file).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == LOGS_DIR || name == INSTANCE_FILE {
            continue;
        }
        let kind = entry.file_type()?;
        let dest = to.join(&name);
        if kind.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else if kind.is_file() {
            let tmp = to.join(format!(".{}.seed-tmp", name.to_string_lossy()));
            std::fs::copy(entry.path(), &tmp)?;
            std::fs::rename(&tmp, &dest)?;
        }
    }
    Ok(())
}

/// Seeds a logged-out work dir from a bundle file. A logged-in work dir is left alone. The bundle
/// must not be encrypted.
fn seed_from_file(bundle: &Path, work_dir: &Path) -> Result<bool, BundleError> {
    if is_logged_in(work_dir) {
        return Ok(false);
    }
    let limits = Limits::default();
    let input = read_input(bundle, limits)?;
    import(&input, work_dir, None, false, limits)?;
    Ok(true)
}

/// [`seed_from_file`] for a bundle given as text.
fn seed_from_text(text: &str, work_dir: &Path) -> Result<bool, BundleError> {
    if is_logged_in(work_dir) {
        return Ok(false);
    }
    import(text.as_bytes(), work_dir, None, false, Limits::default())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::super::tests::manifest_for;
    use super::super::{pack, to_base64};
    use super::*;

    #[test]
    fn seeding_skips_logged_in_dirs_and_logs() {
        let seed = tempfile::tempdir().unwrap();
        let from = WorkDir::new(seed.path());
        std::fs::create_dir_all(from.cache()).unwrap();
        std::fs::create_dir_all(from.logs()).unwrap();
        std::fs::write(from.user(), b"u").unwrap();
        std::fs::write(from.machine_id(), b"i").unwrap();
        std::fs::write(from.lingma_log(), b"l").unwrap();
        std::fs::write(from.instance_file(), b"{}").unwrap();
        let wd = tempfile::tempdir().unwrap();
        let wd = WorkDir::new(wd.path());
        let seed = Seed::from_setting(seed.path());
        assert!(matches!(seed, Seed::Dir(_)));
        seed_work_dir(&wd, Some(&seed)).unwrap();
        assert_eq!(std::fs::read(wd.user()).unwrap(), b"u");
        assert!(!wd.logs().exists());
        assert!(!wd.instance_file().exists());
        std::fs::write(wd.user(), b"mine").unwrap();
        seed_work_dir(&wd, Some(&seed)).unwrap();
        assert_eq!(std::fs::read(wd.user()).unwrap(), b"mine");
    }

    #[test]
    fn bundles_seed_from_a_file_or_from_text() {
        let files = vec![
            ("cache/id".to_string(), b"i".to_vec()),
            ("cache/user".to_string(), b"u".to_vec()),
        ];
        let text = to_base64(&pack(&manifest_for(&files), &files).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bundle");
        std::fs::write(&file, &text).unwrap();
        let text = String::from_utf8(text).unwrap();
        for (name, seed) in [
            ("a", Seed::from_setting(&file)),
            ("b", Seed::from_setting(Path::new(&text))),
        ] {
            assert!(matches!(
                (name, &seed),
                ("a", Seed::Bundle(_)) | ("b", Seed::Inline(_))
            ));
            let wd = WorkDir::of_instance(dir.path(), name);
            seed_work_dir(&wd, Some(&seed)).unwrap();
            assert_eq!(std::fs::read(wd.user()).unwrap(), b"u");
            // Logged in now: a second seeding leaves it alone.
            seed_work_dir(&wd, Some(&seed)).unwrap();
        }
    }
}
