//! The Anthropic Messages front door through `serve --sim`, driven by the official `anthropic`
//! Python SDK (`tests/python/anthropic_client.py`): text and streams in Anthropic's event order,
//! thinking blocks, tool use (parallel, `tool_choice`, a re-asked refusal), a tool loop that keeps
//! its Lingma session under Claude Code's session header, stop sequences and max_tokens,
//! count_tokens, the model map, and every error type the SDK maps.

mod common;

use std::time::Duration;

use common::Gateway;

const KEY: &str = "sk-anthropic";

#[test]
fn anthropic_sdk_against_the_gateway() {
    common::clients::require_python(&["anthropic"]);
    let gw = Gateway::start(
        &[
            "--api-key",
            KEY,
            "--max-in-flight",
            "1",
            "--queue-timeout",
            "0",
            "--model-map",
            "claude-*haiku*=dashscope_qwen_max_latest",
        ],
        &[],
    );
    common::clients::run_python_checks("anthropic_client.py", &gw, KEY, Duration::from_secs(240));
}

/// A wrong path or method under `/v1/messages` is answered in Anthropic's shape, as the SDK and
/// Claude Code read errors there; elsewhere OpenAI's.
#[tokio::test]
async fn path_errors_under_messages_are_anthropic_shaped() {
    let gw = Gateway::start(&["--api-key", KEY], &[]);
    let c = reqwest::Client::new();
    for (method, path, status) in [
        (reqwest::Method::POST, "/v1/messages/batches", 404),
        (reqwest::Method::GET, "/v1/messages", 405),
        (reqwest::Method::GET, "/v1/messages/count_tokens", 405),
    ] {
        let r = c
            .request(method.clone(), gw.url(&format!("{path}?key=secret")))
            .header("x-api-key", KEY)
            .header("x-request-id", "req-path-1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{method} {path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["type"], "error", "{method} {path}: {body}");
        let expected = if status == 404 {
            "not_found_error"
        } else {
            "invalid_request_error"
        };
        assert_eq!(body["error"]["type"], expected, "{body}");
        assert_eq!(body["request_id"], "req-path-1", "{body}");
        assert!(!body.to_string().contains("secret"), "{body}");
    }
    // A path outside the Anthropic surface keeps OpenAI's shape.
    let r = c.get(gw.url("/v1/nope?key=secret")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_url", "{body}");
    assert!(body.get("type").is_none(), "{body}");
    assert!(!body.to_string().contains("secret"), "{body}");
}
