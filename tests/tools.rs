//! Tool calling on `/v1/chat/completions`, end to end through `serve --sim`: the official `openai`
//! Python SDK and LangChain's `bind_tools` (`tests/python/openai_tools.py`: every call syntax,
//! the broken variants and the corrective re-ask, `tool_choice`, parallel calls, legacy
//! `functions`, a multi-step loop that sends Lingma only the tool results), plus what only the
//! gateway's own side shows: the tool metrics and the keep-alives of a slow first token on every
//! API surface.

mod common;

use std::time::Duration;

use common::{Gateway, metric_sum};
use serde_json::{Value, json};

const KEY: &str = "sk-tools";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

#[test]
fn openai_sdk_and_langchain_tool_calls() {
    common::clients::require_python(&["openai", "langchain_openai"]);
    let gw = Gateway::start(&["--api-key", KEY, "--metrics-public"], &[]);
    common::clients::run_python_checks("openai_tools.py", &gw, KEY, Duration::from_secs(240));

    // The gateway counted the calls by syntax and outcome, and the follow-ups were small.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let text = rt.block_on(async {
        client()
            .get(gw.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let count = |labels: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("lingma_gw_tool_calls_total{{{labels}}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    for (labels, what) in [
        (
            "outcome=\"parsed\",syntax=\"hermes\"",
            "parsed hermes calls",
        ),
        (
            "outcome=\"repaired\",syntax=\"qwen3_coder\"",
            "repaired qwen3-coder calls",
        ),
        (
            "outcome=\"parsed\",syntax=\"fenced_json\"",
            "parsed fenced calls",
        ),
        ("outcome=\"invalid\",syntax=\"hermes\"", "invalid calls"),
        (
            "outcome=\"reasked\",syntax=\"hermes\"",
            "calls fixed by a re-ask",
        ),
        (
            "outcome=\"failed\",syntax=\"any\"",
            "calls still broken after the re-ask",
        ),
    ] {
        assert!(count(labels) >= 1.0, "no {what} in the metrics:\n{text}");
    }
    let reused = metric_sum(&text, "lingma_gw_question_bytes_total").unwrap_or(0.0);
    assert!(reused > 0.0, "{text}");
}

/// A model that is slow to its first token: every surface keeps the connection alive meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_while_the_first_token_is_slow() {
    let gw = Gateway::start(&["--keepalive", "0.2"], &[]);
    let c = client();
    let slow = "[[sim:slow=1500]] Reply with exactly: late";
    let cases: [(&str, Value, &str); 3] = [
        (
            "/v1/chat/completions",
            json!({"stream": true, "messages": [{"role": "user", "content": slow}]}),
            ": keep-alive\n\n",
        ),
        (
            "/v1/messages",
            json!({"model": "claude-x", "max_tokens": 100, "stream": true,
                   "messages": [{"role": "user", "content": slow}]}),
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
        ),
        (
            "/v1/responses",
            json!({"model": "gpt-x", "stream": true, "input": slow}),
            ": keep-alive\n\n",
        ),
    ];
    for (path, body, keepalive) in cases {
        let text = c
            .post(gw.url(path))
            .json(&body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let at_keepalive = text
            .find(keepalive)
            .unwrap_or_else(|| panic!("{path}: no keep-alive in\n{text}"));
        let at_answer = text
            .find("late")
            .unwrap_or_else(|| panic!("{path}: {text}"));
        assert!(
            at_keepalive < at_answer,
            "{path}: keep-alive after the answer:\n{text}"
        );
    }
}
