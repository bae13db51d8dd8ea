//! The simulator on the wire: framing, JSON-RPC rules, auth/models, the streamed chat with its
//! exact callback order and acks, follow-up turns, chat/stop, sessions and the other methods.
//! Every test spawns the real binary (`lingma-gw sim start`) in its own work dir on free ports.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn bare_json_is_ignored_and_logged_and_the_connection_stays_open() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.connect().await;
    c.send_raw(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#)
        .await;
    // The framed request that follows is the first thing answered: the bare one got nothing.
    let id = c.request("initialize", json!({})).await;
    let first = c.recv().await;
    assert_eq!(first["method"], "window/logMessage");
    let resp = c.recv().await;
    assert_eq!(resp["id"], id);
    assert!(sim.log_text().contains("Unknown message header"));
    let logged: Vec<Value> = sim
        .requests()
        .into_iter()
        .filter(|r| r["kind"] == "unknown_header")
        .collect();
    assert_eq!(logged.len(), 1);
    assert!(
        logged[0]["raw"]
            .as_str()
            .unwrap()
            .starts_with("{\"jsonrpc\"")
    );
}

#[tokio::test]
async fn several_frames_in_one_message_split_frames_and_string_ids() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.connect().await;
    let batch = [
        json!({"jsonrpc":"2.0","id":"init-1","method":"initialize","params":{}}),
        json!({"jsonrpc":"2.0","id":"p-1","method":"ping"}),
        json!({"jsonrpc":"2.0","id":7,"method":"ping","params":{}}),
    ]
    .iter()
    .map(frame)
    .collect::<String>();
    c.send_raw(&batch).await;
    assert_eq!(c.recv().await["method"], "window/logMessage");
    let init = c.recv().await;
    assert_eq!(init["id"], "init-1");
    assert_eq!(init["result"]["serverInfo"]["name"], "lingma");
    assert_eq!(init["result"]["serverInfo"]["version"], "2.11.1");
    assert_eq!(init["result"]["capabilities"], json!({}));
    let p1 = c.recv().await;
    assert_eq!(
        p1,
        json!({"jsonrpc":"2.0","id":"p-1","result":{"success":true}})
    );
    assert_eq!(c.recv().await["id"], 7);

    // One frame split over two messages, cut inside the header.
    let f = frame(&json!({"jsonrpc":"2.0","id":"split","method":"ping"}));
    let (a, b) = f.split_at(9);
    c.send_raw(a).await;
    c.send_raw(b).await;
    assert_eq!(c.recv().await["id"], "split");

    // Content-Length counts bytes: a multi-byte body is answered too.
    let r = c
        .call(
            "config/updateEndpoint",
            json!({"endpoint": "https://通义.example"}),
        )
        .await;
    assert_eq!(r["result"]["success"], true);
}

#[tokio::test]
async fn initialize_must_come_first_and_unknown_methods_fail() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.connect().await;
    let r = c.call("auth/status", json!({})).await;
    assert_eq!(r["error"]["code"], -32002);
    assert_eq!(r["error"]["message"], "server not initialized");
    // `initialized` is ignored silently, even as a request.
    c.send(&json!({"jsonrpc":"2.0","method":"initialized","params":{}}))
        .await;
    c.send(&json!({"jsonrpc":"2.0","id":"x","method":"initialized","params":{}}))
        .await;
    c.initialize().await;
    let r = c.call("no/such", json!({})).await;
    assert_eq!(r["error"]["code"], -32601);
    let r = c.call("ping", json!(null)).await;
    assert_eq!(r["result"]["success"], true);
    // Nothing answered the two `initialized` messages.
    assert!(c.recv_within(Duration::from_millis(100)).await.is_none());
}

#[tokio::test]
async fn auth_status_and_models_when_logged_in() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    let s = c.call("auth/status", json!({})).await["result"].clone();
    assert_eq!(s["status"], 2);
    assert_eq!(s["whitelist"], 3);
    assert_eq!(s["name"], "demo");
    assert_eq!(s["userType"], "personal_standard");
    assert!(s["token"].as_str().unwrap().starts_with("pt-"));
    assert!(s["refreshToken"].as_str().unwrap().starts_with("rt-"));
    assert!(s["expireTime"].as_i64().unwrap() > 1_700_000_000_000);
    for k in [
        "id",
        "accountId",
        "cloudType",
        "privacyPolicyAgreed",
        "orgId",
        "email",
    ] {
        assert!(s.get(k).is_some(), "AuthStatus lacks {k}");
    }

    let m = c.call("config/queryModels", json!({})).await["result"].clone();
    let scenes: HashSet<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        scenes,
        HashSet::from(["chat", "assistant", "developer", "inline", "quest"])
    );
    let chat = m["chat"].as_array().unwrap();
    let item = |k: &str| chat.iter().find(|i| i["key"] == k).cloned().unwrap();
    assert_eq!(item("auto")["isDefault"], true);
    assert_eq!(item("dashscope_qwen3_coder")["displayName"], "Qwen3-Coder");
    assert_eq!(item("dashscope_qwen_max_latest")["displayName"], "Qwen-Max");
    assert_eq!(
        item("dashscope_qwen_plus_20250428_thinking")["isReasoning"],
        true
    );
    assert_eq!(item("dashscope_qmodel")["isVl"], true);
    let auto = item("auto");
    for (k, v) in [
        ("format", json!("openai")),
        ("source", json!("system")),
        ("url", json!("")),
        ("apiKey", json!("")),
        ("model", json!("")),
        ("isReasoning", json!(false)),
        ("isVl", json!(false)),
    ] {
        assert_eq!(auto[k], v, "field {k}");
    }
    // Not every model in every scene.
    assert!(m["inline"].as_array().unwrap().len() < chat.len());
}

#[tokio::test]
async fn logged_out_status_models_and_chat() {
    let sim = Sim::start(&["--logged-out"]).await;
    assert!(
        sim.log_text()
            .contains("No cached user info, please login.")
    );
    let mut c = sim.client().await;
    let s = c.call("auth/status", json!({})).await["result"].clone();
    assert_eq!(s["status"], 1);
    assert_eq!(s["token"], "");
    assert_eq!(s["refreshToken"], "");
    assert_eq!(s["name"], "");
    assert_eq!(
        c.call("config/queryModels", json!({})).await["result"],
        json!({})
    );
    let (r, stream) = c.chat(ask_params("r1", "", "hello")).await;
    assert_eq!(r["result"]["success"], false);
    assert_eq!(r["result"]["errorCode"], "NOT_LOGIN");
    assert!(!r["result"]["errorMessage"].as_str().unwrap().is_empty());
    assert!(stream.is_empty());
}

#[tokio::test]
async fn streamed_chat_has_the_exact_callback_order_and_every_callback_is_acked() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    let q = "hello simulated world";
    let (resp, stream) = c.chat(ask_params("req-1", "", q)).await;
    assert_eq!(
        resp["result"],
        json!({"success": true, "errorCode": "", "errorMessage": ""})
    );
    let m = methods(&stream);
    let n = m.len();
    assert_eq!(m[0], "chat/process_step_callback");
    assert_eq!(stream[0]["params"]["step"], "step_start");
    assert_eq!(stream[0]["params"]["status"], "done");
    assert_eq!(m[1], "session/title/update");
    assert!(m[2..n - 2].iter().all(|x| x == "chat/answer"), "{m:?}");
    assert_eq!(m[n - 2], "chat/process_step_callback");
    assert_eq!(stream[n - 2]["params"]["step"], "step_end");
    assert_eq!(m[n - 1], "chat/finish");

    let sid = stream[0]["params"]["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        uuid::Uuid::parse_str(&sid).is_ok(),
        "invented session id {sid}"
    );
    assert_eq!(stream[1]["params"]["sessionTitle"], q);
    let mut ids = HashSet::new();
    for msg in &stream {
        assert!(
            msg["id"].is_i64(),
            "callbacks are requests with integer ids: {msg}"
        );
        assert!(ids.insert(msg["id"].as_i64().unwrap()));
        assert_eq!(msg["params"]["sessionId"], sid.as_str());
        if msg["method"] != "session/title/update" {
            assert_eq!(msg["params"]["requestId"], "req-1");
        }
    }
    let answers: Vec<&Value> = stream
        .iter()
        .filter(|m| m["method"] == "chat/answer")
        .collect();
    assert!(
        answers.iter().any(|a| a["params"]["text"] == ""),
        "empty deltas"
    );
    for a in &answers {
        let p = &a["params"];
        assert_eq!(p["overwrite"], false);
        assert_eq!(p["isFiltered"], false);
        assert_eq!(p["extra"]["sessionType"], "chat");
        assert!(p["timestamp"].as_i64().unwrap() > 0);
        assert!(p["text"].as_str().unwrap().chars().count() <= 8);
    }
    let expected = format!("echo: {q}");
    assert_eq!(answer_text(&stream), expected);
    let fin = finish_of(&stream);
    assert_eq!(fin["reason"], "success");
    assert_eq!(fin["statusCode"], 200);
    assert_eq!(fin["fullAnswer"], expected.as_str());
    assert_eq!(fin["extra"]["sessionType"], "chat");

    // The acks reached the simulator: a ping round trip orders them before we read the log.
    c.call("ping", json!({})).await;
    let acked: HashSet<i64> = sim
        .requests()
        .iter()
        .filter(|r| r["kind"] == "response" && r["conn"] == 1)
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(acked, ids);
}

#[tokio::test]
async fn follow_up_turn_reuses_the_session_and_is_recorded() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    let (_, s1) = c
        .chat(ask_params("r1", "", "Reply with exactly: first"))
        .await;
    let sid = s1[0]["params"]["sessionId"].as_str().unwrap().to_string();
    let (_, s2) = c
        .chat(ask_params("r2", &sid, "Reply with exactly: second"))
        .await;
    assert!(!methods(&s2).contains(&"session/title/update".to_string()));
    assert!(s2.iter().all(|m| m["params"]["sessionId"] == sid.as_str()));
    assert_eq!(answer_text(&s2), "second");

    let sess = c
        .call("chat/getSessionById", json!({"sessionId": sid}))
        .await["result"]
        .clone();
    assert_eq!(sess["sessionId"], sid.as_str());
    assert_eq!(sess["sessionTitle"], "Reply with exactly: first");
    let recs = sess["chatRecords"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["question"], "Reply with exactly: first");
    assert_eq!(recs[0]["answer"], "first");
    assert_eq!(recs[1]["requestId"], "r2");
    assert_eq!(recs[1]["answer"], "second");

    let asks = sim.requests_for("chat/ask");
    assert_eq!(asks.len(), 2);
    assert_eq!(asks[1]["params"]["sessionId"], sid.as_str());
    assert_eq!(
        asks[1]["params"]["questionText"],
        "Reply with exactly: second"
    );
    let cur = c.call("session/getCurrent", json!({})).await["result"].clone();
    assert_eq!(cur["currentSessionIds"], json!([sid]));
}

#[tokio::test]
async fn sessions_list_delete_clear_and_survive_restart() {
    let mut sim = Sim::start(&[]).await;
    let dir = sim.take_dir().unwrap();
    let mut c = sim.client().await;
    let mut sids = Vec::new();
    for i in 0..3 {
        let (_, s) = c
            .chat(ask_params(&format!("r{i}"), "", &format!("q{i}")))
            .await;
        sids.push(s[0]["params"]["sessionId"].as_str().unwrap().to_string());
    }
    c.call(
        "chat/deleteChatById",
        json!({"sessionId": sids[0], "requestId": "r0"}),
    )
    .await;
    // LP retries deleteSessionById with {id}.
    c.call("chat/deleteSessionById", json!({"id": sids[1]}))
        .await;
    assert_eq!(sim.stop().await.code(), Some(0));

    let sim = Sim::start_in(dir.path(), &["--no-delay"]).await;
    let mut c = sim.client().await;
    let list = c
        .call("chat/listAllSessions", json!({"projectUri": ""}))
        .await["result"]
        .clone();
    let listed: HashSet<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sessionId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, HashSet::from([sids[0].as_str(), sids[2].as_str()]));
    let s0 = c
        .call("chat/getSessionById", json!({"sessionId": sids[0]}))
        .await["result"]
        .clone();
    assert_eq!(s0["chatRecords"], json!([]));
    let s2 = c
        .call("chat/getSessionById", json!({"sessionId": sids[2]}))
        .await["result"]
        .clone();
    assert_eq!(s2["chatRecords"][0]["answer"], "echo: q2");
    c.call("chat/clearAllSessions", json!({})).await;
    let list = c.call("chat/listAllSessions", json!({})).await["result"].clone();
    assert_eq!(list, json!([]));
    assert_eq!(
        c.call("chat/getSessionById", json!({"sessionId": sids[2]}))
            .await["result"],
        Value::Null
    );
}

#[tokio::test]
async fn chat_stop_mid_stream_finishes_cancelled() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    let r = c
        .call(
            "chat/ask",
            ask_params("long-1", "", "[[sim:len=200]] [[sim:delay=20]] go"),
        )
        .await;
    assert_eq!(r["result"]["success"], true);
    // Wait for the first real delta, then stop.
    loop {
        let m = c.recv().await;
        c.ack(&m).await;
        if m["method"] == "chat/answer" && m["params"]["text"] != "" {
            break;
        }
    }
    let stop_id = c
        .request("chat/stop", json!({"requestId": "long-1", "sessionId": ""}))
        .await;
    let rest = c
        .collect(Duration::from_secs(10), |m| m["method"] == "chat/finish")
        .await;
    let stop_resp = rest
        .iter()
        .find(|m| m["id"] == stop_id && m.get("method").is_none())
        .expect("chat/stop answered");
    assert_eq!(stop_resp["result"], json!({}));
    let fin = finish_of(&rest);
    assert_eq!(fin["reason"], "cancelled");
    assert_eq!(fin["requestId"], "long-1");
    assert!(fin["fullAnswer"].as_str().unwrap().len() < "w1 w2".len() * 100);
    assert_eq!(sim.requests_for("chat/stop").len(), 1);
    // The connection is free again.
    let (r, s) = c
        .chat(ask_params("after", "", "Reply with exactly: ok"))
        .await;
    assert_eq!(r["result"]["success"], true);
    assert_eq!(answer_text(&s), "ok");
}

#[tokio::test]
async fn ask_validation_busy_connection_and_unknown_model() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    let r = c.call("chat/ask", json!({"questionText": "x"})).await;
    assert_eq!(r["error"]["code"], -32602);
    let r = c.call("chat/ask", json!({"requestId": "r"})).await;
    assert_eq!(r["error"]["code"], -32602);
    let r = c
        .call("chat/ask", ask_params("h1", "", "[[sim:hang]] wait"))
        .await;
    assert_eq!(r["result"]["success"], true);
    let r = c.call("chat/ask", ask_params("h2", "", "second")).await;
    assert_eq!(r["error"]["code"], -32602);
    assert_eq!(r["error"]["message"], "Another chat is in progress");
    // Another connection is not busy.
    let mut c2 = sim.client().await;
    let (_, s) = c2
        .chat(with_model(ask_params("m1", "", "hi"), "no_such_model"))
        .await;
    let fin = finish_of(&s);
    assert_eq!(fin["statusCode"], 500);
    assert!(fin["reason"].as_str().unwrap().contains("no_such_model"));
    let (_, s) = c2
        .chat(with_model(
            ask_params("m2", "", "hi"),
            "dashscope_qwen3_coder",
        ))
        .await;
    assert_eq!(finish_of(&s)["statusCode"], 200);
    assert_eq!(finish_of(&s)["extra"]["modelKey"], "dashscope_qwen3_coder");
}

#[tokio::test]
async fn reasoning_model_thinks_inline_or_by_callback() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    let model = "dashscope_qwen_plus_20250428_thinking";
    let (_, s) = c
        .chat(with_model(
            ask_params("t1", "", "Reply with exactly: 42"),
            model,
        ))
        .await;
    let text = answer_text(&s);
    assert!(text.starts_with("````think::1200\n"), "{text:?}");
    assert!(text.ends_with("\n````\n42"), "{text:?}");
    assert!(!methods(&s).contains(&"chat/think".to_string()));

    let (_, s) = c
        .chat(with_model(
            ask_params("t2", "", "[[sim:think=callback]] Reply with exactly: 42"),
            model,
        ))
        .await;
    assert_eq!(answer_text(&s), "42");
    let thinks: Vec<&Value> = s.iter().filter(|m| m["method"] == "chat/think").collect();
    assert!(thinks.len() >= 2);
    assert!(
        thinks[..thinks.len() - 1]
            .iter()
            .all(|t| t["params"]["step"] == "start")
    );
    assert_eq!(thinks.last().unwrap()["params"]["step"], "done");
    let first_think = s.iter().position(|m| m["method"] == "chat/think").unwrap();
    let first_answer = s.iter().position(|m| m["method"] == "chat/answer").unwrap();
    assert!(first_think < first_answer);
    // A plain model never thinks.
    let (_, s) = c.chat(ask_params("t3", "", "Reply with exactly: 7")).await;
    assert_eq!(answer_text(&s), "7");
}

#[tokio::test]
async fn machine_token_is_required_when_configured() {
    let sim = Sim::start(&["--machine-token", "tok-123"]).await;
    let url = format!("ws://127.0.0.1:{}/ws", sim.ws_port);
    let err = tokio_tungstenite::connect_async(&url).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(r) => assert_eq!(r.status(), 401),
        e => panic!("expected 401, got {e}"),
    }
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("Cosy-MachineToken", "tok-123".parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut c = Client::from_ws(ws);
    c.initialize().await;
}

#[tokio::test]
async fn websocket_paths() {
    let sim = Sim::start(&[]).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws", sim.ws_port))
            .await
            .unwrap();
    ws.send(Message::text(frame(
        &json!({"jsonrpc":"2.0","id":1,"method":"initialize"}),
    )))
    .await
    .unwrap();
    let mut c = Client::from_ws(ws);
    assert_eq!(c.recv().await["method"], "window/logMessage");
    let err = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/other", sim.ws_port))
        .await
        .unwrap_err();
    assert!(matches!(err, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 404));
}

#[tokio::test]
async fn endpoint_is_persisted_and_announced() {
    let mut sim = Sim::start(&["--endpoint", "https://proxy.example"]).await;
    assert!(
        sim.log_text()
            .contains("endpoint config: https://proxy.example")
    );
    let dir = sim.take_dir().unwrap();
    let mut c = sim.client().await;
    let r = c.call("config/getEndpoint", json!({})).await;
    assert_eq!(r["result"]["endpoint"], "https://proxy.example");
    let id = c
        .request(
            "config/updateEndpoint",
            json!({"endpoint": "https://dedicated.example"}),
        )
        .await;
    // The push goes to every connection from its own task, so it may overtake the response:
    // read until both have come.
    let seen = std::cell::Cell::new(0);
    let msgs = c
        .collect(Duration::from_secs(5), |m| {
            if m["method"] == "config/changeEndpoint"
                || (m["id"] == id && m.get("method").is_none())
            {
                seen.set(seen.get() + 1);
            }
            seen.get() == 2
        })
        .await;
    let resp = msgs
        .iter()
        .find(|m| m["id"] == id && m.get("method").is_none())
        .unwrap();
    assert_eq!(resp["result"]["success"], true);
    let push = msgs
        .iter()
        .find(|m| m["method"] == "config/changeEndpoint")
        .unwrap();
    assert_eq!(push["params"]["endpoint"], "https://dedicated.example");
    assert!(push["id"].is_i64());
    sim.stop().await;
    let sim = Sim::start_in(dir.path(), &["--no-delay"]).await;
    let mut c = sim.client().await;
    let r = c.call("config/getEndpoint", json!({})).await;
    assert_eq!(r["result"]["endpoint"], "https://dedicated.example");
}

#[tokio::test]
async fn token_methods_quota_and_plan() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    let before = c.call("auth/status", json!({})).await["result"].clone();
    let id = c
        .request(
            "auth/refreshToken",
            json!({"securityOauthToken": before["token"], "refreshToken": before["refreshToken"],
                   "tokenExpireTime": before["expireTime"]}),
        )
        .await;
    let r = c.response_to(json!(id)).await;
    assert_eq!(r["result"]["success"], true);
    assert_eq!(r["result"]["uid"], before["id"]);
    let note = c.recv().await;
    assert_eq!(note["method"], "auth/syncTokenUpdate");
    assert!(note.get("id").is_none());
    assert_eq!(note["params"]["status"], 0);
    let after = c.call("auth/status", json!({})).await["result"].clone();
    assert_eq!(after["token"], note["params"]["token"]);
    assert_ne!(after["token"], before["token"]);

    let r = c
        .call(
            "auth/device_login",
            json!({"token": "pt-device", "refreshToken": "rt-device", "expiresIn": "",
                   "expireTime": "4102444800000", "userId": "42", "username": "alice"}),
        )
        .await;
    assert_eq!(r["result"]["success"], true);
    let s = c.call("auth/status", json!({})).await["result"].clone();
    assert_eq!(
        (s["status"].clone(), s["name"].clone()),
        (json!(2), json!("alice"))
    );
    assert_eq!(s["token"], "pt-device");
    let user: Value =
        serde_json::from_slice(&std::fs::read(sim.dir.join("cache/user")).unwrap()).unwrap();
    assert_eq!(user["security_oauth_token"], "pt-device");
    assert_eq!(user["expire_time"], 4102444800000i64);

    assert!(c.call("user/plan", json!({})).await.get("error").is_some());
    let q = c.call("credit/usage", json!({})).await["result"].clone();
    assert_eq!(q["quota"]["limit"], 1000);
}
