//! `lingma-gw serve --sim --port 0`, driven over HTTP as a client would.

mod common;

use std::time::Duration;

use common::{Gateway, asks, processes_matching, signal, stop_requests, wait_until_async};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn post(g: &Gateway, body: Value) -> (u16, Value, reqwest::header::HeaderMap) {
    let r = client()
        .post(g.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, v, headers)
}

/// The status of a GET, with an optional bearer key.
async fn get_status(g: &Gateway, path: &str, key: Option<&str>) -> u16 {
    let mut rb = client().get(g.url(path));
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    rb.send().await.unwrap().status().as_u16()
}

fn user(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": text}]})
}

/// Reads an SSE body into its `data:` payloads.
async fn sse_events(resp: reqwest::Response) -> Vec<String> {
    parse_sse(&resp.text().await.unwrap())
}

/// The `data:` payloads of an SSE text.
fn parse_sse(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

async fn stream(g: &Gateway, mut body: Value) -> Vec<String> {
    body["stream"] = json!(true);
    let r = client()
        .post(g.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    sse_events(r).await
}

fn assert_openai_error(v: &Value, kind: &str) {
    assert_eq!(v["error"]["type"], kind, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    assert!(
        v["error"].get("code").is_some() && v["error"].get("param").is_some(),
        "{v}"
    );
}

#[tokio::test]
async fn models_list_and_lookup() {
    let g = Gateway::start(&[], &[]);
    let v: Value = client()
        .get(g.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"dashscope_qwen3_coder"), "{ids:?}");
    for name in ["dashscope_qwen3_coder", "Qwen3-Coder", "qwen3-coder"] {
        let r = client()
            .get(g.url(&format!("/v1/models/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        let m: Value = r.json().await.unwrap();
        assert_eq!(m["id"], "dashscope_qwen3_coder");
        assert_eq!(m["object"], "model");
    }
    let r = client()
        .get(g.url("/v1/models/gpt-9"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_openai_error(&r.json().await.unwrap(), "invalid_request_error");
}

#[tokio::test]
async fn chat_non_streaming_with_model_resolution_and_usage() {
    let g = Gateway::start(&[], &[]);
    let (s, v, h) = post(&g, json!({"model": "Qwen3-Coder", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "Reply with exactly: 你好 world"}]}
    ]})).await;
    assert_eq!(s, 200, "{v}");
    assert!(h.contains_key("x-request-id"));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "dashscope_qwen3_coder");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "你好 world");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(
        v["choices"][0]["message"]
            .get("reasoning_content")
            .is_none()
    );
    let u = &v["usage"];
    assert!(u["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(
        u["completion_tokens"].as_u64().unwrap() >= 3,
        "CJK counts per character: {u}"
    );
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    // Unknown and `default` models fall back to the default and say which was used.
    let (s, v, _) = post(
        &g,
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["model"], "auto");
    // The flattened conversation reached Lingma with labels.
    let asked = asks(&g.instance_dir("inst-0"));
    assert_eq!(
        asked[0]["questionText"],
        "[System]\nbe brief\n\n[User]\nReply with exactly: 你好 world"
    );
    assert_eq!(
        asked[0]["extra"]["modelConfig"]["key"],
        "dashscope_qwen3_coder"
    );
}

#[tokio::test]
async fn streaming_chunks_usage_only_when_asked() {
    let g = Gateway::start(&[], &[]);
    let events = stream(&g, user("Reply with exactly: one two three four five six")).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "one two three four five six");
    let content_chunks = chunks
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    assert!(content_chunks > 2, "one SSE event per upstream delta");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(
        chunks
            .iter()
            .all(|c| c.get("usage").is_none_or(Value::is_null)),
        "no usage unless asked"
    );
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );

    let mut body = user("Reply with exactly: counted");
    body["stream_options"] = json!({"include_usage": true});
    let events = stream(&g, body).await;
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn reasoning_goes_to_reasoning_content() {
    let g = Gateway::start(&[], &[]);
    let body = json!({"model": "dashscope_qwen_plus_20250428_thinking", "messages": [{"role": "user", "content": "Reply with exactly: 42"}]});
    let (s, v, _) = post(&g, body.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "42");
    let r = v["choices"][0]["message"]["reasoning_content"]
        .as_str()
        .unwrap();
    assert!(!r.is_empty() && !r.contains("think::"));
    let events = stream(&g, body).await;
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!reasoning.is_empty());
    assert_eq!(content, "42");
}

#[tokio::test]
async fn stop_sequences_and_max_tokens_are_enforced() {
    let g = Gateway::start(&[], &[]);
    let mut body = user("Reply with exactly: alpha beta STOP gamma delta");
    body["stop"] = json!("STOP");
    let (s, v, _) = post(&g, body.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "alpha beta ");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let events = stream(&g, body).await;
    let text: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "alpha beta ");

    let mut body = user("[[sim:len=300]] long");
    body["max_tokens"] = json!(10);
    let (s, v, _) = post(&g, body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 10);
    // The truncated answer was stopped upstream.
    assert!(
        wait_until_async(Duration::from_secs(5), || async {
            !stop_requests(&g.instance_dir("inst-0")).is_empty()
        })
        .await
    );
}

#[tokio::test]
async fn unsupported_inputs_are_400_with_reasons() {
    let g = Gateway::start(&[], &[]);
    let cases = [
        (
            json!({"n": 2, "messages": [{"role": "user", "content": "x"}]}),
            "n",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}]}]}),
            "image",
        ),
        (json!({"messages": []}), "messages"),
        (
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            "role",
        ),
        (json!({"messages": "hello"}), "messages"),
    ];
    for (body, needle) in cases {
        let (s, v, _) = post(&g, body.clone()).await;
        assert_eq!(s, 400, "{body} -> {v}");
        assert_openai_error(&v, "invalid_request_error");
        let msg = v["error"]["message"].as_str().unwrap().to_lowercase();
        assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
    }
    // Sampling parameters Lingma cannot honour are accepted.
    let mut ok = user("hi");
    ok["temperature"] = json!(0.2);
    ok["top_p"] = json!(0.9);
    ok["presence_penalty"] = json!(0.1);
    ok["seed"] = json!(7);
    ok["tools"] = json!([]);
    assert_eq!(post(&g, ok).await.0, 200);
}

#[tokio::test]
async fn malformed_requests_get_openai_errors() {
    let g = Gateway::start(&["--api-key", "k1"], &[]);
    let c = client();
    let url = g.url("/v1/chat/completions");
    let r = c
        .post(&url)
        .bearer_auth("k1")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_openai_error(&r.json().await.unwrap(), "invalid_request_error");
    let r = c
        .post(&url)
        .bearer_auth("k1")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_openai_error(&r.json().await.unwrap(), "invalid_request_error");
    // An oversized body is refused from its declared length, before a byte of it is read. Only
    // the head is sent: a client still writing 11 MB when the 413 and the close come back would
    // race with them (an EPIPE on a loaded machine).
    let (status, body) = raw_exchange(
        &g.base,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer k1\r\n\
         Content-Type: application/json\r\nContent-Length: 11534336\r\n\r\n",
    );
    assert_eq!(status, 413);
    assert_openai_error(
        &serde_json::from_str(&body).unwrap(),
        "invalid_request_error",
    );
    let r = c
        .get(g.url("/v2/whatever"))
        .bearer_auth("k1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_openai_error(&r.json().await.unwrap(), "invalid_request_error");
    let r = c.get(&url).bearer_auth("k1").send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_openai_error(&r.json().await.unwrap(), "invalid_request_error");
}

#[tokio::test]
async fn api_keys_admin_and_metrics_credentials() {
    let g = Gateway::start(
        &[
            "--api-key",
            "client-key",
            "--api-key",
            "other",
            "--admin-token",
            "adm",
            "--metrics-token",
            "met",
        ],
        &[],
    );
    let c = client();
    let chat = |key: Option<&'static str>| {
        let mut rb = c.post(g.url("/v1/chat/completions")).json(&user("hi"));
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        rb.send()
    };
    for bad in [None, Some("wrong"), Some("adm")] {
        let r = chat(bad).await.unwrap();
        assert_eq!(r.status(), 401, "{bad:?}");
        let v: Value = r.json().await.unwrap();
        assert_openai_error(&v, "authentication_error");
        assert!(!v.to_string().contains("client-key"));
    }
    assert_eq!(chat(Some("client-key")).await.unwrap().status(), 200);
    assert_eq!(chat(Some("other")).await.unwrap().status(), 200);
    let r = c
        .get(g.url("/v1/models"))
        .header("x-api-key", "client-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Admin: only the admin token; a client key is a valid credential without admin rights.
    assert_eq!(
        get_status(&g, "/internal/stats", Some("client-key")).await,
        403
    );
    assert_eq!(get_status(&g, "/internal/stats", None).await, 401);
    let r = c
        .get(g.url("/internal/stats"))
        .bearer_auth("adm")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stats: Value = r.json().await.unwrap();
    assert_eq!(stats["instances"][0]["name"], "inst-0");
    // Metrics: its token or a client key, nothing else.
    assert_eq!(get_status(&g, "/metrics", None).await, 401);
    assert_eq!(get_status(&g, "/metrics", Some("met")).await, 200);
    assert_eq!(get_status(&g, "/metrics", Some("client-key")).await, 200);
    // Health is open.
    assert_eq!(c.get(g.url("/healthz")).send().await.unwrap().status(), 200);
    assert!(!g.stderr().contains("client-key"), "secrets never logged");
}

#[tokio::test]
async fn metrics_disabled_without_credentials_and_public_when_asked() {
    let g = Gateway::start(&[], &[]);
    let r = client().get(g.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_openai_error(&r.json().await.unwrap(), "server_error");
    let g = Gateway::start(&["--metrics-public"], &[]);
    post(&g, user("hi")).await;
    let text = client()
        .get(g.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for family in [
        "lingma_gw_http_requests_total",
        "lingma_gw_chat_duration_seconds",
        "lingma_gw_time_to_first_token_seconds",
        "lingma_gw_gateway_overhead_seconds",
        "lingma_gw_prompt_tokens_total",
        "lingma_gw_chats_in_flight",
        "lingma_gw_instance_state",
        "lingma_gw_session_cache_hits_total",
    ] {
        assert!(text.contains(family), "missing {family}");
    }
    assert!(
        text.contains("lingma_gw_instance_state{instance=\"inst-0\",state=\"ready\"} 1"),
        "{text}"
    );
}

#[test]
fn non_loopback_without_keys_is_refused() {
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--sim", "--host", "0.0.0.0", "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("API keys"), "{err}");
}

#[tokio::test]
async fn session_reuse_sends_only_the_new_turn() {
    let g = Gateway::start(&[], &[]);
    let first = json!({"messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Reply with exactly: first answer"}
    ]});
    let (_, v1, _) = post(&g, first.clone()).await;
    let answer = v1["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let mut second = first.clone();
    second["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": answer}),
        json!({"role": "user", "content": "and the second"}),
    ]);
    let (s, v2, _) = post(&g, second.clone()).await;
    assert_eq!(s, 200);
    assert_eq!(
        v2["choices"][0]["message"]["content"],
        "echo: and the second"
    );
    let a = asks(&g.instance_dir("inst-0"));
    assert_eq!(a.len(), 2);
    assert_eq!(a[1]["questionText"], "and the second");
    assert_eq!(a[1]["sessionId"], a[0]["sessionId"]);
    // An edited history is replayed whole in a new session.
    let mut edited = second.clone();
    edited["messages"][2]["content"] = json!("something else");
    post(&g, edited).await;
    let a = asks(&g.instance_dir("inst-0"));
    assert_ne!(a[2]["sessionId"], a[0]["sessionId"]);
    assert!(
        a[2]["questionText"]
            .as_str()
            .unwrap()
            .contains("[Assistant]\nsomething else")
    );
    // A failed turn is never cached: continuing it replays.
    let failed = json!({"messages": [{"role": "user", "content": "[[sim:error=500]] x"}]});
    assert_eq!(post(&g, failed).await.0, 502);
}

#[tokio::test]
async fn no_session_reuse_replays_every_time() {
    let g = Gateway::start(&["--no-session-reuse"], &[]);
    let (_, v1, _) = post(&g, user("Reply with exactly: a1")).await;
    let body = json!({"messages": [
        {"role": "user", "content": "Reply with exactly: a1"},
        {"role": "assistant", "content": v1["choices"][0]["message"]["content"]},
        {"role": "user", "content": "q2"}
    ]});
    post(&g, body).await;
    let a = asks(&g.instance_dir("inst-0"));
    assert_ne!(a[1]["sessionId"], a[0]["sessionId"]);
    assert_eq!(
        a[1]["questionText"],
        "[User]\nReply with exactly: a1\n\n[Assistant]\na1\n\n[User]\nq2"
    );
}

#[tokio::test]
async fn affinity_keeps_a_user_on_one_instance() {
    let g = Gateway::start(&["--instances", "3"], &[]);
    let mut seen = std::collections::HashSet::new();
    for i in 0..6 {
        let r = client()
            .post(g.url("/v1/chat/completions"))
            .header("x-session-id", "sticky-1")
            .json(&user(&format!("q{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    for name in ["inst-0", "inst-1", "inst-2"] {
        if !asks(&g.instance_dir(name)).is_empty() {
            seen.insert(name);
        }
    }
    assert_eq!(seen.len(), 1, "one sticky key, one instance: {seen:?}");
}

#[tokio::test]
async fn backpressure_is_429_with_retry_after() {
    let g = Gateway::start(
        &[
            "--max-in-flight",
            "1",
            "--queue-timeout",
            "0.2",
            "--admin-token",
            "a",
        ],
        &[],
    );
    let base = g.url("/v1/chat/completions");
    let slow = tokio::spawn(async move {
        client()
            .post(base)
            .json(&user("[[sim:slow=1500]] Reply with exactly: slow"))
            .send()
            .await
            .unwrap()
            .status()
    });
    // The slow chat holds the only slot.
    assert!(
        wait_until_async(Duration::from_secs(10), || async {
            admin_get(&g, "/internal/stats").await["admission"]["in_flight"] == 1
        })
        .await,
        "the slow chat was not admitted"
    );
    let (s, v, h) = post(&g, user("hi")).await;
    assert_eq!(s, 429, "{v}");
    assert_openai_error(&v, "rate_limit_error");
    let ra: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(ra >= 1);
    assert_eq!(slow.await.unwrap(), 200);
    // The slot is free again.
    assert_eq!(post(&g, user("hi")).await.0, 200);
}

#[tokio::test]
async fn upstream_failures_map_to_statuses() {
    let g = Gateway::start(&[], &[("LINGMA_FIRST_TOKEN_TIMEOUT", "0.5")]);
    let (s, v, _) = post(&g, user("[[sim:error=500]] x")).await;
    assert_eq!(s, 502, "{v}");
    let (s, v, _) = post(&g, user("[[sim:error=408]] x")).await;
    assert_eq!(s, 504, "{v}");
    let (s, v, _) = post(&g, user("[[sim:hang]] x")).await;
    assert_eq!(s, 504, "{v}");
    // Still healthy afterwards.
    let (s, v, _) = post(&g, user("Reply with exactly: fine")).await;
    assert_eq!(
        (s, v["choices"][0]["message"]["content"].as_str()),
        (200, Some("fine"))
    );
}

#[tokio::test]
async fn mid_stream_failure_is_an_error_event_not_a_clean_end() {
    let g = Gateway::start(&["--instances", "2"], &[]);
    for fault in ["close", "crash"] {
        let events = stream(
            &g,
            user(&format!(
                "[[sim:{fault},after=2]] Reply with exactly: a b c d e f g h i j k l m n o p"
            )),
        )
        .await;
        let last: Value = serde_json::from_str(events.last().unwrap()).unwrap_or(Value::Null);
        assert!(
            last.get("error").is_some(),
            "{fault}: last event must be an error: {events:?}"
        );
        assert!(
            !events
                .iter()
                .any(|e| e.contains("\"finish_reason\":\"stop\"")),
            "{fault}"
        );
        assert!(!events.iter().any(|e| e == "[DONE]"), "{fault}");
    }
    // The crashed instance comes back; the gateway keeps answering meanwhile.
    assert_eq!(post(&g, user("hi")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_disconnect_stops_upstream_and_frees_the_slot() {
    let g = Gateway::start(
        &[
            "--max-in-flight",
            "1",
            "--queue-timeout",
            "0",
            "--admin-token",
            "a",
        ],
        &[],
    );
    let mut body = user("[[sim:len=2000,delay=10]] long");
    body["stream"] = json!(true);
    let mut r = client()
        .post(g.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let _ = r.chunk().await.unwrap();
    let _ = r.chunk().await.unwrap();
    drop(r);
    assert!(
        wait_until_async(Duration::from_secs(5), || async {
            !stop_requests(&g.instance_dir("inst-0")).is_empty()
        })
        .await
    );
    let freed = wait_until_async(Duration::from_secs(5), || async {
        admin_get(&g, "/internal/stats").await["admission"]["in_flight"] == 0
    })
    .await;
    assert!(freed, "slot released after disconnect");
    assert_eq!(post(&g, user("hi")).await.0, 200);
}

#[tokio::test]
async fn not_logged_in_is_503_with_what_to_do() {
    let g = Gateway::start(&[], &[("LINGMA_SIM_LOGGED_OUT", "1")]);
    let (s, v, _) = post(&g, user("hi")).await;
    assert_eq!(s, 503, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lingma-gw login"),
        "{v}"
    );
    let r = client().get(g.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["instances"][0]["state"], "not_logged_in");
    assert_eq!(
        client()
            .get(g.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
}

#[tokio::test]
async fn no_instance_ready_is_a_fast_503() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("Lingma");
    std::fs::write(&fake, "#!/bin/sh\nexit 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = std::process::Command::new(common::BIN);
    cmd.args(["serve", "--port", "0", "--lingma-bin"])
        .arg(&fake)
        .arg("--work-dir")
        .arg(dir.path().join("w"));
    cmd.env("LINGMA_STARTUP_TIMEOUT", "2")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    use std::io::BufRead;
    let line = std::io::BufReader::new(out)
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let base = line.strip_prefix("listening on ").unwrap().to_string();
    let started = std::time::Instant::now();
    let r = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&user("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fast, not after a queue timeout"
    );
    signal(child.id(), "TERM");
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn admin_instances_restart_and_drain() {
    let g = Gateway::start(&["--instances", "2", "--admin-token", "a"], &[]);
    let c = client();
    let v = admin_get(&g, "/internal/instances").await;
    assert_eq!(v["instances"].as_array().unwrap().len(), 2);
    let pid = v["instances"][0]["pid"].as_u64().unwrap();
    let r = c
        .post(g.url("/internal/instances/inst-0/restart"))
        .bearer_auth("a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .post(g.url("/internal/instances/nope/restart"))
        .bearer_auth("a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let restarted = wait_until_async(Duration::from_secs(10), || async {
        let v = admin_get(&g, "/internal/instances").await;
        let i = &v["instances"][0];
        i["state"] == "ready" && i["pid"].as_u64() != Some(pid)
    })
    .await;
    assert!(restarted);
    let r = c
        .post(g.url("/internal/instances/inst-1/drain"))
        .bearer_auth("a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let raw: Value = c
        .get(g.url("/internal/models/raw"))
        .bearer_auth("a")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(raw["result"]["chat"].is_array(), "{raw}");
}

#[tokio::test]
async fn request_ids_pass_through() {
    let g = Gateway::start(&[], &[]);
    let r = client()
        .get(g.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = client().get(g.url("/healthz")).send().await.unwrap();
    assert!(
        r.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
    assert!(
        wait_until_async(Duration::from_secs(2), || async {
            g.stderr().contains("abc-123")
        })
        .await
    );
}

#[tokio::test]
async fn replica_id_in_a_header_on_every_response_healthz_and_the_log() {
    let g = Gateway::start(
        &["--replica-id", "replica-7", "--api-key", "k"],
        &[("LINGMA_GW_REPLICA_ID", "from-env")],
    );
    let c = client();
    // Success, a refusal before any handler, an unknown route, a chat: each names the replica.
    let chat = c
        .post(g.url("/v1/chat/completions"))
        .bearer_auth("k")
        .json(&user("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 200);
    assert_eq!(chat.headers()["x-lingma-gw-replica"], "replica-7");
    for (path, key, status) in [
        ("/healthz", None, 200),
        ("/v1/models", None, 401),
        ("/nowhere", Some("k"), 404),
    ] {
        let mut req = c.get(g.url(path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(r.headers()["x-lingma-gw-replica"], "replica-7", "{path}");
    }
    // /healthz says it without credentials (it is not a secret).
    let h: Value = c
        .get(g.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["replica"], "replica-7", "{h}");
    assert!(
        wait_until_async(Duration::from_secs(2), || async {
            g.stderr()
                .lines()
                .any(|l| l.contains("/v1/chat/completions") && l.contains("replica=replica-7"))
        })
        .await,
        "{}",
        g.stderr()
    );
}

/// A GET on an admin endpoint with the token `a`, as JSON.
async fn admin_get(g: &Gateway, path: &str) -> Value {
    client()
        .get(g.url(path))
        .bearer_auth("a")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Starts a stream, sends the gateway SIGTERM while it runs (its first event has arrived), and
/// reads the stream to its end.
async fn stream_through_sigterm(g: &Gateway, prompt: &str) -> Vec<String> {
    let mut body = user(prompt);
    body["stream"] = json!(true);
    let mut r = client()
        .post(g.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut raw = r
        .chunk()
        .await
        .unwrap()
        .expect("the stream's first event")
        .to_vec();
    signal(g.child.id(), "TERM");
    raw.extend_from_slice(&r.bytes().await.unwrap());
    parse_sse(&String::from_utf8(raw).unwrap())
}

#[tokio::test]
async fn sigterm_lets_a_running_stream_finish_then_exits_cleanly() {
    let mut g = Gateway::start(&[], &[]);
    let needle = format!("--workDir={}", g.work_dir.display());
    let events = stream_through_sigterm(&g, "[[sim:len=40,delay=25]] words").await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "the stream finished"
    );
    let status = g.wait_exit(Duration::from_secs(15)).expect("exited");
    assert!(status.success());
    assert!(
        processes_matching(&needle).is_empty(),
        "no Lingma left behind"
    );
}

#[tokio::test]
async fn answers_still_running_after_the_grace_period_end_with_an_error() {
    let mut g = Gateway::start(&["--shutdown-grace", "0.5"], &[]);
    let needle = format!("--workDir={}", g.work_dir.display());
    let events = stream_through_sigterm(&g, "[[sim:len=2000,delay=20]] words").await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap_or(Value::Null);
    assert!(
        last.get("error").is_some(),
        "ends with an error event: {:?}",
        events.last()
    );
    assert!(!events.iter().any(|e| e == "[DONE]"));
    let status = g.wait_exit(Duration::from_secs(15)).expect("exited");
    assert!(status.success());
    assert!(processes_matching(&needle).is_empty());
}

/// Writes `head` on a new connection and reads the whole response (the server closes it):
/// the status and the body.
fn raw_exchange(base: &str, head: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}
