//! Writing a verified bundle into a work dir, in three steps: look (no symbolic link, and nothing
//! but directories and regular files, from the work dir down to any file the bundle writes; a
//! refusal creates nothing anywhere), stage (into a temporary directory beside the target, with
//! modes 0600/0700), swap (renamed into place: the whole work dir at once when it does not exist
//! yet; otherwise file by file with `cache/user` last, so Lingma never sees a user without its
//! machine id, and undone if any rename fails, so the work dir is then as it was).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{
    Bundle, BundleError, MANIFEST, allowed_file, check_entry_path, is_logged_in, read_err,
    write_err,
};
use crate::lingma::workdir::USER_FILE;

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
    let mut seen = HashSet::new();
    for (path, _) in &bundle.files {
        let bad = |reason: String| BundleError::BadEntry {
            path: path.clone(),
            reason,
        };
        check_entry_path(path).map_err(bad)?;
        if path == MANIFEST || !allowed_file(path) {
            return Err(bad("not a file a session bundle has".into()));
        }
        // Staging writes each file once into a fresh directory.
        if !seen.insert(path.as_str()) {
            return Err(bad("the path appears twice".into()));
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
        crate::util::write_private(&dest, data).map_err(|e| write_err(&dest, e))?;
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
        order.sort_by_key(|p| *p == USER_FILE);
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

#[cfg(test)]
mod tests {
    use super::super::tests::manifest_for;
    use super::*;

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
        let mut twice = other_login();
        twice
            .files
            .push(("cache/id".into(), b"another id".to_vec()));
        let err = install(&twice, &wd, true).unwrap_err();
        assert!(
            matches!(&err, BundleError::BadEntry { path, reason } if path == "cache/id" && reason.contains("twice")),
            "{err:?}"
        );
        assert_eq!(snapshot(root.path()), before);
    }
}
