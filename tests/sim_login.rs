//! Login state of the simulator: the demo login of a fresh work dir, `sim status`, the OAuth
//! callback (HTTP and RPC) with one-shot nonces and the `auth/report` push, the test login page
//! with its captcha and verification modes, logout across restarts and `--copyDataDir`.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use serde_json::{Value, json};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

async fn sim_status(dir: &std::path::Path) -> Value {
    let out = tokio::process::Command::new(BIN)
        .args(["sim", "status", "-o", "json", "--workDir"])
        .arg(dir)
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits for the `auth/report` push (acking it) and returns its params.
async fn auth_report(c: &mut Client) -> Value {
    let msgs = c
        .collect(Duration::from_secs(5), |m| m["method"] == "auth/report")
        .await;
    let report = msgs.last().expect("auth/report pushed");
    assert_eq!(report["method"], "auth/report");
    assert!(report["id"].is_i64(), "auth/report is a request");
    report["params"].clone()
}

#[tokio::test]
async fn fresh_work_dir_is_logged_in_as_demo_and_status_reads_the_files() {
    let sim = Sim::start(&[]).await;
    let id = std::fs::read_to_string(sim.dir.join("cache/id")).unwrap();
    assert!(uuid::Uuid::parse_str(id.trim()).is_ok());
    assert!(
        sim.log_text()
            .contains(&format!("using machine id from file: {}", id.trim()))
    );
    let user: Value =
        serde_json::from_slice(&std::fs::read(sim.dir.join("cache/user")).unwrap()).unwrap();
    assert_eq!(user["name"], "demo");
    assert_eq!(user["user_type"], "personal_standard");
    assert!(
        user["security_oauth_token"]
            .as_str()
            .unwrap()
            .starts_with("pt-")
    );
    assert!(user["refresh_token"].as_str().unwrap().starts_with("rt-"));
    for k in ["aid", "uid", "organization_id", "expire_time", "key"] {
        assert!(user.get(k).is_some(), "cache/user lacks {k}");
    }
    assert_eq!(
        sim_status(&sim.dir).await,
        json!({"logged_in": true, "version": "2.11.1", "username": "demo",
               "user_type": "personal_standard"})
    );
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        sim_status(empty.path()).await,
        json!({"logged_in": false, "version": "2.11.1"})
    );
    let out = std::process::Command::new(BIN)
        .args(["sim", "version"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2.11.1");
}

#[tokio::test]
async fn browser_callback_logs_in_pushes_auth_report_and_rejects_reuse() {
    let sim = Sim::start(&["--logged-out"]).await;
    let mut c = sim.client().await;
    let mut watcher = sim.client().await;
    let g = c
        .call("login/generateUrl", json!({"loginDedicatedType": ""}))
        .await["result"]
        .clone();
    assert_eq!(g["success"], true);
    assert_eq!(g["challengeMethod"], "S256");
    let nonce = g["nonce"].as_str().unwrap().to_string();
    let url = g["loginUrl"].as_str().unwrap();
    assert!(url.starts_with(&format!("http://127.0.0.1:{}/lingma/login?", sim.http_port)));
    let q = query_of(url);
    assert_eq!(q["nonce"], nonce);
    assert_eq!(q["state"], nonce);
    assert_eq!(q["port"], sim.http_port.to_string());
    assert_eq!(q["challenge"], g["challenge"].as_str().unwrap());
    assert_eq!(q["challenge_method"], "S256");
    let mid = std::fs::read_to_string(sim.dir.join("cache/id")).unwrap();
    assert_eq!(q["machine_id"], mid.trim());
    // challenge = base64url(sha256(verifier))
    use sha2::Digest;
    let expect = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(
        g["verifier"].as_str().unwrap().as_bytes(),
    ));
    assert_eq!(g["challenge"], expect.as_str());

    let cb = format!("http://127.0.0.1:{}/auth/callback", sim.http_port);
    let auth = b64("777\n888\nBob");
    let token = b64("pt-bob\nrt-bob\n4102444800000");
    let params = [
        ("state", nonce.as_str()),
        ("auth", &auth),
        ("token", &token),
    ];

    // A foreign Host is refused before anything else.
    let r = http()
        .get(&cb)
        .header("Host", "evil.example")
        .query(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http().get(&cb).query(&params).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("登录成功"));

    for client in [&mut c, &mut watcher] {
        let report = auth_report(client).await;
        assert_eq!(report["status"], 2);
        assert_eq!(report["name"], "Bob");
    }
    let s = c.call("auth/status", json!({})).await["result"].clone();
    assert_eq!(s["status"], 2);
    assert_eq!(s["id"], "777");
    assert_eq!(s["accountId"], "888");
    assert_eq!(s["token"], "pt-bob");
    assert_eq!(s["refreshToken"], "rt-bob");
    assert_eq!(s["expireTime"], 4102444800000i64);
    assert_eq!(sim_status(&sim.dir).await["username"], "Bob");

    // Reused and unknown nonces fail with an error page.
    let r = http().get(&cb).query(&params).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("already used"));
    let bad = [
        ("state", "nope"),
        ("auth", auth.as_str()),
        ("token", token.as_str()),
    ];
    assert_eq!(
        http().get(&cb).query(&bad).send().await.unwrap().status(),
        400
    );
}

#[tokio::test]
async fn rpc_auth_callback_and_auth_login() {
    let sim = Sim::start(&["--logged-out"]).await;
    let mut c = sim.client().await;
    let r = c.call("auth/login", json!({"loginType": ""})).await["result"].clone();
    assert_eq!(r["success"], true);
    let nonce = query_of(r["url"].as_str().unwrap())["state"].clone();
    let bad = c
        .call(
            "login/auth_callback",
            json!({"nonce": nonce, "auth": "%%%", "tokenString": b64("pt-x\nrt-x\n1")}),
        )
        .await["result"]
        .clone();
    assert_eq!(bad["success"], false);
    assert_eq!(bad["errorCode"], "INVALID_PARAM");
    // An invalid payload does not burn the nonce.
    let ok = c
        .call(
            "login/auth_callback",
            json!({"nonce": nonce, "auth": b64("1\n2\nCarol"),
                   "tokenString": b64("pt-c\nrt-c\n4102444800000")}),
        )
        .await["result"]
        .clone();
    assert_eq!(
        ok,
        json!({"success": true, "errorCode": "", "errorMsg": ""})
    );
    assert_eq!(auth_report(&mut c).await["name"], "Carol");
    let again = c
        .call(
            "login/auth_callback",
            json!({"nonce": nonce, "auth": b64("1\n2\nCarol"),
                   "tokenString": b64("pt-c\nrt-c\n4102444800000")}),
        )
        .await["result"]
        .clone();
    assert_eq!(again["errorCode"], "INVALID_NONCE");
    let (r, _) = c.chat(ask_params("r", "", "hi")).await;
    assert_eq!(r["result"]["success"], true);
}

async fn start_login(sim: &Sim) -> (Client, String) {
    let mut c = sim.client().await;
    let g = c.call("login/generateUrl", json!({})).await["result"].clone();
    (c, g["loginUrl"].as_str().unwrap().to_string())
}

async fn submit(sim: &Sim, state: &str, user: &str, password: &str) -> Value {
    http()
        .post(format!(
            "http://localhost:{}/lingma/login/submit",
            sim.http_port
        ))
        .json(&json!({"state": state, "loginId": user, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn login_page_has_the_passport_shape_and_logs_in() {
    let sim = Sim::start(&["--logged-out"]).await;
    let (mut c, url) = start_login(&sim).await;
    let outer = http().get(&url).send().await.unwrap().text().await.unwrap();
    assert!(outer.contains("id=\"alibaba-login-iframe\""));
    assert!(outer.contains("<iframe id=\"alibaba-login-box\" name=\"alibaba-login-box\""));
    let state = query_of(&url)["state"].clone();
    let box_url = format!(
        "http://127.0.0.1:{}/lingma/login/box?state={state}",
        sim.http_port
    );
    assert!(outer.contains(&format!("/lingma/login/box?state={state}")));
    let inner = http()
        .get(&box_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "class=\"tabs-item active\" id=\"tab-qr\"",
        ">账密登录<",
        "id=\"fm-login-id\"",
        "id=\"fm-login-password\"",
        "class=\"fm-button fm-submit",
        "id=\"fm-login-submit\"",
        "id=\"password-panel\" class=\"password-login\" style=\"display:none\"",
        "id=\"nc_1_wrapper\"",
    ] {
        assert!(inner.contains(needle), "login box lacks {needle}");
    }

    let wrong = submit(&sim, &state, "demo@example.com", "nope").await;
    assert_eq!(wrong["result"], "error");
    assert!(!wrong["message"].as_str().unwrap().is_empty());
    let ok = submit(&sim, &state, "demo@example.com", "demo-password").await;
    assert_eq!(ok["result"], "ok");
    let redirect = ok["redirect"].as_str().unwrap();
    assert!(redirect.starts_with(&format!(
        "http://127.0.0.1:{}/auth/callback?state={state}&",
        sim.http_port
    )));
    // Following the redirect is what logs in.
    assert_eq!(
        c.call("auth/status", json!({})).await["result"]["status"],
        1
    );
    let r = http().get(redirect).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(auth_report(&mut c).await["name"], "demo");
    assert_eq!(
        c.call("auth/status", json!({})).await["result"]["status"],
        2
    );
}

#[tokio::test]
async fn login_page_captcha_and_verification_modes() {
    let sim = Sim::start(&[
        "--logged-out",
        "--login-challenge",
        "captcha",
        "--accounts",
        "a@x.com:pa,b@x.com:pb:verification,c@x.com:pc:none",
    ])
    .await;
    let (_c, url) = start_login(&sim).await;
    let state = query_of(&url)["state"].clone();
    let r = submit(&sim, &state, "a@x.com", "pa").await;
    assert_eq!(r, json!({"result": "captcha"}));
    let inner = http()
        .get(format!(
            "http://127.0.0.1:{}/lingma/login/box?state={state}",
            sim.http_port
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(inner.contains("id=\"nc_1_n1z\"") && inner.contains("请按住滑块"));

    let r = submit(&sim, &state, "b@x.com", "pb").await;
    assert_eq!(r["result"], "verification");
    let iv = r["redirect"].as_str().unwrap();
    assert!(iv.contains("/iv/"));
    let page = http()
        .get(format!("http://127.0.0.1:{}{iv}", sim.http_port))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("安全验证"));

    assert_eq!(submit(&sim, &state, "c@x.com", "pc").await["result"], "ok");
    // The default account is not configured here.
    assert_eq!(
        submit(&sim, &state, "demo@example.com", "demo-password").await["result"],
        "error"
    );
}

#[tokio::test]
async fn logout_persists_across_restart() {
    let mut sim = Sim::start(&[]).await;
    let dir = sim.take_dir().unwrap();
    let mut c = sim.client().await;
    let r = c.call("auth/logout", json!({})).await;
    assert_eq!(r["result"]["success"], true);
    assert!(!sim.dir.join("cache/user").exists());
    assert_eq!(
        c.call("auth/status", json!({})).await["result"]["status"],
        1
    );
    assert_eq!(sim.stop().await.code(), Some(0));

    assert_eq!(sim_status(dir.path()).await["logged_in"], false);
    let sim = Sim::start_in(dir.path(), &["--no-delay"]).await;
    let mut c = sim.client().await;
    assert_eq!(
        c.call("auth/status", json!({})).await["result"]["status"],
        1
    );
    assert_eq!(
        sim.log_text()
            .matches("No cached user info, please login.")
            .count(),
        1
    );
}

#[tokio::test]
async fn copy_data_dir_does_not_carry_the_login() {
    let src = Sim::start(&[]).await;
    let src_dir = src.dir.clone();
    let id = std::fs::read_to_string(src_dir.join("cache/id")).unwrap();
    let dst = tempfile::tempdir().unwrap();
    let copy = src_dir.display().to_string();
    let sim = Sim::start_in(dst.path(), &["--no-delay", "--copyDataDir", &copy]).await;
    assert_eq!(
        std::fs::read_to_string(dst.path().join("cache/id")).unwrap(),
        id
    );
    assert!(!dst.path().join("cache/user").exists());
    assert!(
        sim.log_text()
            .contains("No cached user info, please login.")
    );
    let mut c = sim.client().await;
    assert_eq!(
        c.call("auth/status", json!({})).await["result"]["status"],
        1
    );
}
