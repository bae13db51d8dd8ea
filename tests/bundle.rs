//! Session bundles end to end: `lingma-gw session export|import` against the simulator, raw,
//! base64 and encrypted; hostile bundles (each rejected with a clear message and nothing written
//! outside a temporary dir); the running instance restarted on import; `serve` applying
//! `LINGMA_SESSION_BUNDLE` and per-account bundles; `/internal/session/export`.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{BIN, Gateway, fast_sim_env, output_within, wait_for_async, wait_until_async};
use serde_json::{Value, json};

/// Runs the binary to completion (killed after 120 s), with `stdin` written first.
fn cli(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("LINGMA_BUNDLE_PASSPHRASE")
        .envs(fast_sim_env())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(data) = stdin {
            input.write_all(data).unwrap();
        }
    }
    output_within(child, Duration::from_secs(120))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}; stderr:\n{}",
        o.status.code(),
        stderr(o)
    );
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `sim status -o json` of a work dir: the process-free login check.
fn sim_status(work_dir: &Path) -> Value {
    let o = cli(
        &["sim", "status", "-o", "json", "--workDir", path(work_dir)],
        &[],
        None,
    );
    ok(&o);
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A raw bundle exported from a fresh simulator work dir (logged in as `demo`).
fn exported(root: &Path, extra: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> PathBuf {
    let out = root.join(format!("bundle-{}", extra.join("").replace('-', "")));
    let src = root.join("src");
    let mut args = vec![
        "session",
        "export",
        "--sim",
        "--work-dir",
        path(&src),
        "-o",
        path(&out),
    ];
    args.extend_from_slice(extra);
    let o = cli(&args, env, stdin);
    ok(&o);
    assert!(
        stderr(&o).contains("Exported the session of demo"),
        "{}",
        stderr(&o)
    );
    out
}

/// Imports into `<root>/dst` and checks the instance started there is logged in.
fn import_and_check(
    root: &Path,
    bundle: &Path,
    env: &[(&str, &str)],
    stdin: Option<&[u8]>,
    extra: &[&str],
) {
    let dst = root.join("dst");
    let _ = std::fs::remove_dir_all(&dst);
    let mut args = vec!["session", "import", "--sim", "--work-dir", path(&dst)];
    args.extend_from_slice(extra);
    args.push(path(bundle));
    let o = cli(&args, env, stdin);
    ok(&o);
    assert!(
        stderr(&o).contains("Imported the session of demo"),
        "{}",
        stderr(&o)
    );
    assert_eq!(sim_status(&dst.join("inst-0"))["username"], "demo");
    // A Lingma started on the imported work dir (which would otherwise start logged out) is
    // logged in: `models` refuses a logged-out instance.
    let o = cli(
        &["models", "--sim", "--work-dir", path(&dst), "--json"],
        &[("LINGMA_SIM_LOGGED_OUT", "1")],
        None,
    );
    ok(&o);
    let models: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(!models.as_array().unwrap().is_empty());
}

#[test]
fn export_import_round_trip_logs_in_a_fresh_work_dir() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = exported(dir.path(), &[], &[], None);
    let bytes = std::fs::read(&bundle).unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "a gzip file");
    assert_eq!(
        std::fs::metadata(&bundle).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Exactly the login files plus the manifest, with correct hashes.
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut names = Vec::new();
    let mut manifest = Value::Null;
    let mut contents = std::collections::HashMap::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if name == "manifest.json" {
            manifest = serde_json::from_slice(&data).unwrap();
        }
        contents.insert(name.clone(), data);
        names.push(name);
    }
    assert_eq!(names, ["manifest.json", "cache/id", "cache/user"]);
    assert_eq!(manifest["format"], "lingma-gw-session");
    assert_eq!(manifest["version"], 1);
    assert_eq!(manifest["account"], "demo");
    assert_eq!(manifest["lingma_version"], "2.11.1");
    assert!(manifest["created_at"].as_u64().unwrap() > 1_600_000_000);
    for f in manifest["files"].as_array().unwrap() {
        use sha2::Digest;
        let data = &contents[f["path"].as_str().unwrap()];
        assert_eq!(f["sha256"], hex::encode(sha2::Sha256::digest(data)));
        assert_eq!(f["size"], data.len());
    }
    let src_user = std::fs::read(dir.path().join("src/inst-0/cache/user")).unwrap();
    assert_eq!(contents["cache/user"], src_user);

    import_and_check(dir.path(), &bundle, &[], None, &[]);
    let wd = dir.path().join("dst/inst-0");
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(wd.join("cache/user")), 0o600);
    assert_eq!(mode(wd.join("cache/id")), 0o600);
    assert_eq!(mode(wd.join("cache")), 0o700);

    // `export` and `import` are `session export|import` under the names ops type.
    let short = dir.path().join("short.bundle");
    let src = dir.path().join("src");
    ok(&cli(
        &[
            "export",
            "--sim",
            "--work-dir",
            path(&src),
            "-o",
            path(&short),
        ],
        &[],
        None,
    ));
    assert_eq!(list(&std::fs::read(&short).unwrap()), list(&bytes));
    let dst = dir.path().join("short-dst");
    let o = cli(
        &["import", "--sim", "--work-dir", path(&dst), path(&short)],
        &[],
        None,
    );
    ok(&o);
    assert!(
        stderr(&o).contains("Imported the session of demo"),
        "{}",
        stderr(&o)
    );
    assert_eq!(sim_status(&dst.join("inst-0"))["username"], "demo");

    // With history: the session store rides along.
    let with_history = exported(dir.path(), &["--with-history"], &[], None);
    let listing = list(&std::fs::read(&with_history).unwrap());
    assert!(
        listing.iter().any(|n| n.starts_with("cache/db/")),
        "{listing:?}"
    );
}

fn list(targz: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(targz));
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn base64_and_encrypted_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let b64 = exported(dir.path(), &["--base64"], &[], None);
    let text = std::fs::read_to_string(&b64).unwrap();
    assert_eq!(text.trim_end().lines().count(), 1, "one line");
    assert!(
        text.trim_end()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
    );
    import_and_check(dir.path(), &b64, &[], None, &[]);

    // Encrypted with the passphrase from the environment, imported with it on stdin.
    let pass = [("LINGMA_BUNDLE_PASSPHRASE", "correct horse battery staple")];
    let enc = exported(dir.path(), &["--encrypt"], &pass, None);
    let raw = std::fs::read(&enc).unwrap();
    assert!(raw.starts_with(b"age-encryption.org/v1"), "an age file");
    assert!(
        !raw.windows(4).any(|w| w == b"demo"),
        "nothing readable inside"
    );
    import_and_check(
        dir.path(),
        &enc,
        &[],
        Some(b"correct horse battery staple\n"),
        &["--passphrase-stdin"],
    );

    // Encrypted and base64, passphrase from stdin at export, from the environment at import.
    let both = exported(
        dir.path(),
        &["--encrypt", "--base64", "--passphrase-stdin"],
        &[],
        Some(b"s3cret pass\n"),
    );
    let text = std::fs::read_to_string(&both).unwrap();
    assert!(!text.contains("age-encryption"), "base64 on top");
    import_and_check(
        dir.path(),
        &both,
        &[("LINGMA_BUNDLE_PASSPHRASE", "s3cret pass")],
        None,
        &[],
    );

    // Without a passphrase, import says what is missing.
    let o = cli(
        &[
            "session",
            "import",
            "--sim",
            "--work-dir",
            path(&dir.path().join("x")),
            path(&enc),
        ],
        &[],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the bundle is encrypted: give its passphrase"),
        "{}",
        stderr(&o)
    );
    // --encrypt without any passphrase is a usage error.
    let o = cli(
        &[
            "session",
            "export",
            "--sim",
            "--work-dir",
            path(&dir.path().join("src")),
            "--encrypt",
            "-o",
            path(&dir.path().join("nope")),
        ],
        &[],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// One tar entry for a hand-made bundle.
struct Entry {
    name: Vec<u8>,
    kind: tar::EntryType,
    data: Vec<u8>,
    link: Option<&'static str>,
}

fn file(name: &str, data: &[u8]) -> Entry {
    Entry {
        name: name.as_bytes().to_vec(),
        kind: tar::EntryType::Regular,
        data: data.to_vec(),
        link: None,
    }
}

/// A tar.gz written header by header (the tar crate refuses to *write* `..` or absolute names,
/// so names are put into the header bytes directly).
fn craft(entries: &[Entry]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for e in entries {
        let mut h = tar::Header::new_old();
        {
            let raw = h.as_old_mut();
            raw.name.fill(0);
            raw.name[..e.name.len()].copy_from_slice(&e.name);
            if let Some(l) = e.link {
                raw.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(e.kind);
        h.set_mode(0o600);
        h.set_size(e.data.len() as u64);
        h.set_cksum();
        b.append(&h, &e.data[..]).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// The entries of a real bundle, to tamper with.
fn entries_of(targz: &[u8]) -> Vec<Entry> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(targz));
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path_bytes().to_vec();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            Entry {
                name,
                kind: tar::EntryType::Regular,
                data,
                link: None,
            }
        })
        .collect()
}

/// Every name under `dir`, recursively (to prove nothing was written).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            out.push(e.path().display().to_string());
            if e.file_type().unwrap().is_dir() {
                out.extend(tree(&e.path()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn hostile_bundles_are_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(exported(dir.path(), &[], &[], None)).unwrap();
    let valid = entries_of(&good);
    let manifest = valid[0].data.clone();
    let outside = dir.path().join("evil");
    let absolute = format!("{}/abs-evil", dir.path().display());

    let mut bad_hash = entries_of(&good);
    bad_hash[2].data =
        br#"{"uid":"666","security_oauth_token":"pt-forged","name":"mallory"}"#.to_vec();
    let mut symlink = entries_of(&good);
    symlink[2] = Entry {
        name: b"cache/user".to_vec(),
        kind: tar::EntryType::Symlink,
        data: vec![],
        link: Some("/etc/passwd"),
    };
    let mut device = entries_of(&good);
    device.push(Entry {
        name: b"cache/quota".to_vec(),
        kind: tar::EntryType::Char,
        data: vec![],
        link: None,
    });
    let mut many = vec![file("manifest.json", &manifest)];
    for i in 0..250 {
        many.push(file(&format!("cache/db/f{i}"), b"x"));
    }
    let bomb = {
        let mut e = entries_of(&good);
        e.push(file("cache/quota", &vec![0u8; 3 * 1024 * 1024]));
        craft(&e)
    };
    let encrypted = std::fs::read(exported(
        dir.path(),
        &["--encrypt"],
        &[("LINGMA_BUNDLE_PASSPHRASE", "right")],
        None,
    ))
    .unwrap();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "path traversal",
            craft(&[
                file("manifest.json", &manifest),
                file("../evil", b"pwned"),
                valid[1].clone_entry(),
                valid[2].clone_entry(),
            ]),
            "`..` (path traversal) is not allowed",
        ),
        (
            "absolute path",
            craft(&[file(&absolute, b"pwned"), file("manifest.json", &manifest)]),
            "absolute paths are not allowed",
        ),
        ("symlink", craft(&symlink), "links are not allowed"),
        (
            "device",
            craft(&device),
            "devices and special files are not allowed",
        ),
        ("oversized", bomb, "larger than 1048576 bytes unpacked"),
        ("too many entries", craft(&many), "more than 200 entries"),
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "truncated or corrupt",
        ),
        (
            "bad hash",
            craft(&bad_hash),
            "cache/user does not match its hash in the manifest",
        ),
        (
            "not a bundle",
            b"hello, I am not a bundle\n".to_vec(),
            "not a session bundle",
        ),
    ];
    let target_root = dir.path().join("target-root");
    for (what, data, message) in cases {
        let f = dir
            .path()
            .join(format!("hostile-{}", what.replace(' ', "-")));
        std::fs::write(&f, &data).unwrap();
        std::fs::create_dir_all(&target_root).unwrap();
        let o = cli(
            &[
                "session",
                "import",
                "--sim",
                "--work-dir",
                path(&target_root),
                path(&f),
            ],
            &[("LINGMA_BUNDLE_MAX_BYTES", "1048576")],
            None,
        );
        assert_eq!(o.status.code(), Some(1), "{what}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(message),
            "{what}: expected {message:?} in:\n{}",
            stderr(&o)
        );
        assert!(
            tree(&target_root).is_empty(),
            "{what} wrote {:?}",
            tree(&target_root)
        );
        assert!(!outside.exists(), "{what} escaped");
        assert!(
            !Path::new(&absolute).exists(),
            "{what} wrote an absolute path"
        );
    }

    // Wrong passphrase.
    let f = dir.path().join("hostile-wrong-pass");
    std::fs::write(&f, &encrypted).unwrap();
    let o = cli(
        &[
            "session",
            "import",
            "--sim",
            "--work-dir",
            path(&target_root),
            "--passphrase-stdin",
            path(&f),
        ],
        &[],
        Some(b"wrong\n"),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("wrong passphrase"), "{}", stderr(&o));
    assert!(tree(&target_root).is_empty());
    // The default cap stops a bomb too (no LINGMA_BUNDLE_MAX_BYTES): 80 MiB of zeros.
    let big = {
        let mut e = entries_of(&good);
        e.push(file("cache/quota", &vec![0u8; 80 * 1024 * 1024]));
        craft(&e)
    };
    assert!(big.len() < 1024 * 1024, "the bomb is small packed");
    let f = dir.path().join("hostile-default-cap");
    std::fs::write(&f, &big).unwrap();
    let o = cli(
        &[
            "session",
            "import",
            "--sim",
            "--work-dir",
            path(&target_root),
            path(&f),
        ],
        &[],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("larger than 67108864 bytes unpacked"),
        "{}",
        stderr(&o)
    );
    assert!(tree(&target_root).is_empty());
}

impl Entry {
    fn clone_entry(&self) -> Entry {
        Entry {
            name: self.name.clone(),
            kind: self.kind,
            data: self.data.clone(),
            link: self.link,
        }
    }
}

#[test]
fn import_refuses_a_logged_in_work_dir_without_force_and_export_refuses_a_logged_out_one() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = exported(dir.path(), &[], &[], None);
    let dst = dir.path().join("dst");
    let import = |force: bool| {
        let mut args = vec!["session", "import", "--sim", "--work-dir", path(&dst)];
        if force {
            args.push("--force");
        }
        args.push(path(&bundle));
        cli(&args, &[], None)
    };
    ok(&import(false));
    let user_before = std::fs::read(dst.join("inst-0/cache/user")).unwrap();
    let o = import(false);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("already logged in; pass --force"),
        "{}",
        stderr(&o)
    );
    std::fs::write(dst.join("inst-0/logs.keep"), b"other state").unwrap();
    let o = import(true);
    ok(&o);
    assert!(stderr(&o).contains("replacing its login"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(dst.join("inst-0/cache/user")).unwrap(),
        user_before
    );
    assert!(
        dst.join("inst-0/logs.keep").exists(),
        "other files of the work dir stay"
    );
    let leftovers: Vec<_> = tree(&dst)
        .into_iter()
        .filter(|p| p.contains(".lingma-gw-import-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let o = cli(
        &[
            "session",
            "export",
            "--sim",
            "--work-dir",
            path(&dir.path().join("out")),
            "-o",
            path(&dir.path().join("never")),
        ],
        &[("LINGMA_SIM_LOGGED_OUT", "1")],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not logged in"), "{}", stderr(&o));
    assert!(!dir.path().join("never").exists());
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn instances(g: &Gateway) -> Value {
    http()
        .get(g.url("/internal/instances"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_ready(g: &Gateway, user: &str) -> Value {
    wait_for_async(Duration::from_secs(30), || async {
        let v = instances(g).await;
        let ready = v["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["state"] == "ready" && i["user"] == user);
        if ready { Ok(v) } else { Err(v) }
    })
    .await
    .unwrap_or_else(|v| panic!("not ready as {user}: {v}"))
}

async fn chat_status(g: &Gateway) -> (u16, Value) {
    let r = http()
        .post(g.url("/v1/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": "Reply with exactly: pong"}]}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn import_restarts_the_running_instance() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = exported(dir.path(), &[], &[], None);
    let root = dir.path().join("gw");
    let g = Gateway::start_in(&root, &[], &[("LINGMA_SIM_LOGGED_OUT", "1")]);
    assert!(
        wait_until_async(Duration::from_secs(20), || async {
            std::fs::read_to_string(root.join("inst-0/lingma-gw.instance.json")).is_ok()
        })
        .await
    );
    let (status, body) = chat_status(&g).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "not_logged_in");
    let root_s = root.clone();
    let b = bundle.clone();
    let o = tokio::task::spawn_blocking(move || {
        cli(
            &[
                "session",
                "import",
                "--sim",
                "--work-dir",
                path(&root_s),
                path(&b),
            ],
            &[],
            None,
        )
    })
    .await
    .unwrap();
    ok(&o);
    assert!(
        stderr(&o).contains("Restarted the running instance inst-0: logged in as demo"),
        "{}",
        stderr(&o)
    );
    let v = wait_ready(&g, "demo").await;
    assert!(v["instances"][0]["restarts"].as_u64().unwrap() >= 1, "{v}");
    let (status, body) = chat_status(&g).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "pong");
}

#[tokio::test]
async fn serve_applies_session_bundles_and_internal_export_returns_one() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = exported(dir.path(), &[], &[], None);
    let logged_out = ("LINGMA_SIM_LOGGED_OUT", "1");

    // LINGMA_SESSION_BUNDLE as a file.
    let g = Gateway::start(&[], &[logged_out, ("LINGMA_SESSION_BUNDLE", path(&bundle))]);
    wait_ready(&g, "demo").await;
    drop(g);

    // Inline base64 of an encrypted bundle, as a CI secret would hold it.
    let pass = ("LINGMA_BUNDLE_PASSPHRASE", "ci-secret");
    let enc = exported(dir.path(), &["--encrypt", "--base64"], &[pass], None);
    let inline = std::fs::read_to_string(&enc).unwrap();
    let g = Gateway::start(
        &["--instances", "2"],
        &[logged_out, pass, ("LINGMA_SESSION_BUNDLE", inline.trim())],
    );
    wait_ready(&g, "demo").await;
    drop(g);

    // A wrong passphrase stops serve at start with a usage error.
    let out = Command::new(BIN)
        .args([
            "serve",
            "--sim",
            "--port",
            "0",
            "--work-dir",
            path(&dir.path().join("bad")),
        ])
        .envs([
            logged_out,
            ("LINGMA_BUNDLE_PASSPHRASE", "wrong"),
            ("LINGMA_SESSION_BUNDLE", inline.trim()),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("wrong passphrase"),
        "{}",
        stderr(&out)
    );

    // Per-account bundles: alice gets one, bob does not.
    let accounts = json!([
        {"name": "alice", "username": "demo@example.com", "bundle": path(&bundle)},
        {"name": "bob"}
    ])
    .to_string();
    let g = Gateway::start(&["--accounts", &accounts], &[logged_out]);
    wait_for_async(Duration::from_secs(30), || async {
        let v = instances(&g).await;
        let state = |n: &str| {
            v["instances"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["name"] == n)
                .unwrap()["state"]
                .clone()
        };
        if state("alice") == "ready" && state("bob") == "not_logged_in" {
            Ok(())
        } else {
            Err(v)
        }
    })
    .await
    .unwrap_or_else(|v| panic!("{v}"));

    // /internal/session/export of alice imports into a fresh work dir that is then logged in.
    let r = http()
        .get(g.url("/internal/session/export?instance=alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/gzip");
    let raw = r.bytes().await.unwrap();
    let f = dir.path().join("from-http.tgz");
    std::fs::write(&f, &raw).unwrap();
    let d = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || import_and_check(&d, &f, &[], None, &[]))
        .await
        .unwrap();
    // Base64 and encrypted through POST (the passphrase in the body, not the URL).
    let r = http()
        .post(g.url("/internal/session/export"))
        .json(&json!({"instance": "alice", "base64": true, "passphrase": "via-http"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let f = dir.path().join("from-http.b64");
    std::fs::write(&f, &text).unwrap();
    let d = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        import_and_check(
            &d,
            &f,
            &[("LINGMA_BUNDLE_PASSPHRASE", "via-http")],
            None,
            &[],
        )
    })
    .await
    .unwrap();
    // A logged-out instance is refused.
    let r = http()
        .get(g.url("/internal/session/export?instance=bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_logged_in");
}

/// Every entry under `dir`, links not followed: directories and files with their modes, files
/// with their contents, links with their targets. Equal snapshots mean nothing was changed.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o7777;
            let what = if m.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                walk(root, &p, out);
                format!("dir {mode:o}")
            } else {
                let data = std::fs::read(&p).unwrap();
                format!("file {mode:o} {:?}", String::from_utf8_lossy(&data))
            };
            out.insert(p.strip_prefix(root).unwrap().display().to_string(), what);
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[test]
fn forced_import_over_a_symlinked_login_file_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = exported(dir.path(), &[], &[], None);
    let dst = dir.path().join("dst");
    let o = cli(
        &[
            "session",
            "import",
            "--sim",
            "--work-dir",
            path(&dst),
            path(&bundle),
        ],
        &[],
        None,
    );
    ok(&o);
    // The work dir holds a login of its own (another machine id), other state, and a
    // `cache/user` that is a link to a file outside the work dir.
    let wd = dst.join("inst-0");
    std::fs::write(wd.join("cache/id"), b"the-old-machine-id").unwrap();
    std::fs::write(wd.join("logs.keep"), b"other state").unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("user"), br#"{"uid":"someone else"}"#).unwrap();
    std::fs::remove_file(wd.join("cache/user")).unwrap();
    symlink(&outside.join("user"), &wd.join("cache/user"));
    let before = (snapshot(&dst), snapshot(&outside));

    let o = cli(
        &[
            "session",
            "import",
            "--sim",
            "--work-dir",
            path(&dst),
            "--force",
            path(&bundle),
        ],
        &[],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        (snapshot(&dst), snapshot(&outside)),
        before,
        "the refused import changed the work dir or the link's target; stderr:\n{}",
        stderr(&o)
    );
    let link = wd.join("cache/user");
    assert!(
        stderr(&o).contains(&format!(
            "{} is a symbolic link (to {}): refusing to write the bundle's files through it",
            link.display(),
            outside.join("user").display()
        )),
        "{}",
        stderr(&o)
    );
}

/// A bundle whose manifest lists the history file first (nothing requires manifest order).
fn history_first_bundle(root: &Path) -> PathBuf {
    use sha2::Digest;
    let files: [(&str, &[u8]); 3] = [
        ("cache/db/local.db", b"history"),
        ("cache/id", b"machine-from-bundle"),
        ("cache/user", br#"{"uid":"1","name":"demo"}"#),
    ];
    let manifest = json!({
        "format": "lingma-gw-session",
        "version": 1,
        "created_at": 1_700_000_000u64,
        "account": "demo",
        "files": files.iter().map(|(p, d)| json!({
            "path": p,
            "size": d.len(),
            "sha256": hex::encode(sha2::Sha256::digest(d)),
        })).collect::<Vec<_>>(),
    })
    .to_string();
    let mut entries = vec![file("manifest.json", manifest.as_bytes())];
    entries.extend(files.iter().map(|(p, d)| file(p, d)));
    let f = root.join("history-first.tgz");
    std::fs::write(&f, craft(&entries)).unwrap();
    f
}

#[test]
fn import_refuses_a_symlinked_work_dir_or_cache_dir_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = history_first_bundle(dir.path());
    let w = dir.path().join("w");
    let outside = dir.path().join("outside");
    for d in [&w, &outside.join("wd"), &outside.join("cache")] {
        std::fs::create_dir_all(d).unwrap();
    }
    // inst-0 is a link to a directory outside W; inst-1 is a real directory whose `cache` is.
    symlink(&outside.join("wd"), &w.join("inst-0"));
    std::fs::create_dir(w.join("inst-1")).unwrap();
    symlink(&outside.join("cache"), &w.join("inst-1/cache"));
    let before = (snapshot(&w), snapshot(&outside));
    for (instance, link) in [
        ("inst-0", w.join("inst-0")),
        ("inst-1", w.join("inst-1/cache")),
    ] {
        for force in [false, true] {
            let mut args = vec![
                "session",
                "import",
                "--sim",
                "--work-dir",
                path(&w),
                "--instance",
                instance,
            ];
            if force {
                args.push("--force");
            }
            args.push(path(&bundle));
            let o = cli(&args, &[], None);
            assert_eq!(o.status.code(), Some(1), "{instance}: {}", stderr(&o));
            assert_eq!(
                (snapshot(&w), snapshot(&outside)),
                before,
                "{instance} (force {force}): the refused import created or changed something; \
                 stderr:\n{}",
                stderr(&o)
            );
            assert!(
                stderr(&o).contains(&format!("{} is a symbolic link (to ", link.display())),
                "{instance}: {}",
                stderr(&o)
            );
        }
    }
}

#[test]
fn an_oversize_input_is_too_large_not_a_gzip_bomb() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("w");
    // 200 MB, sparse: nothing is written to disk.
    let big = dir.path().join("big.bin");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(200_000_000)
        .unwrap();
    let o = cli(
        &[
            "session",
            "import",
            "--sim",
            "--work-dir",
            path(&target),
            path(&big),
        ],
        &[],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    for want in [
        big.display().to_string().as_str(),
        "200000000 bytes",
        "too large",
        "67108864 bytes",
        "LINGMA_BUNDLE_MAX_BYTES",
    ] {
        assert!(err.contains(want), "expected {want:?} in:\n{err}");
    }
    assert!(!err.contains("gzip bomb"), "{err}");
    assert!(!target.exists(), "{:?}", tree(dir.path()));

    // The same from stdin, with a smaller cap (only just over it: the binary stops reading at
    // the cap, and the rest must fit in the pipe).
    let o = cli(
        &["session", "import", "--sim", "--work-dir", path(&target)],
        &[("LINGMA_BUNDLE_MAX_BYTES", "1048576")],
        Some(&vec![b'A'; 1024 * 1024 + 16]),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    for want in [
        "the bundle on stdin is too large",
        "1048576 bytes",
        "LINGMA_BUNDLE_MAX_BYTES",
    ] {
        assert!(err.contains(want), "expected {want:?} in:\n{err}");
    }
    assert!(!err.contains("gzip bomb"), "{err}");
    assert!(!target.exists());
}
