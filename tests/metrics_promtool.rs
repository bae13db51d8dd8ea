//! `/metrics` is valid Prometheus exposition as Prometheus' own linter sees it: after some traffic
//! (a chat, a 404, a stream) the page goes through `promtool check metrics`, and the families that
//! dashboards rely on are present.
//!
//! Needs `promtool` (Debian package `prometheus`). Its absence fails the test: a skipped test is
//! not a passing one.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::Gateway;
use serde_json::{Value, json};

const FAMILIES: &[&str] = &[
    "lingma_gw_http_requests_total",
    "lingma_gw_time_to_first_token_seconds",
    "lingma_gw_instance_state",
];

fn promtool() -> &'static str {
    match Command::new("promtool").arg("--version").output() {
        Ok(o) if o.status.success() => "promtool",
        Ok(o) => panic!(
            "`promtool --version` failed ({}): reinstall the Debian package `prometheus` \
             (apt-get install -y --no-install-recommends prometheus)",
            o.status
        ),
        Err(e) => panic!(
            "promtool is not installed ({e}): install the Debian package `prometheus` \
             (apt-get install -y --no-install-recommends prometheus)"
        ),
    }
}

/// Pipes `text` to `promtool check metrics`; returns (success, exit status, combined output).
fn check_metrics(text: &str) -> (bool, String, String) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("wait for promtool");
    let combined = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), out.status.to_string(), combined)
}

/// `# TYPE name ...` lines: the families the page declares.
fn declared_families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_after_traffic() {
    promtool(); // fail before starting anything when it is missing
    let gw = Gateway::start(&["--metrics-public"], &[]);
    let http = reqwest::Client::new();

    // A chat.
    let r = http
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({
            "model": "auto",
            "messages": [{"role": "user", "content": "Reply with exactly: pong"}],
        }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "chat failed: {body}\n{}", gw.stderr());
    assert_eq!(body["choices"][0]["message"]["content"], "pong", "{body}");

    // A 404.
    let r = http.get(gw.url("/v1/no-such-route")).send().await.unwrap();
    assert_eq!(r.status(), 404, "{:?}", r.text().await);

    // A stream, read to the end.
    let r = http
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({
            "model": "auto",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "Reply with exactly: streamed words here"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sse = r.text().await.unwrap();
    assert!(
        sse.contains("data: [DONE]"),
        "stream did not finish:\n{sse}"
    );

    let r = http.get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200, "/metrics with --metrics-public");
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = r.text().await.unwrap();
    assert!(
        content_type.starts_with("text/plain"),
        "/metrics content-type {content_type:?}, want text/plain (Prometheus text format)"
    );

    let (ok, status, output) = check_metrics(&text);
    assert!(
        ok,
        "promtool check metrics exited {status}:\n{output}\n--- /metrics ---\n{text}"
    );

    let declared = declared_families(&text);
    let missing: Vec<&&str> = FAMILIES
        .iter()
        .filter(|f| !declared.iter().any(|d| d == **f))
        .collect();
    assert!(
        missing.is_empty(),
        "/metrics lacks the families {missing:?}; it declares {declared:?}"
    );

    // The traffic above is visible in the request counter: the 404 and both chats.
    let samples: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("lingma_gw_http_requests_total{"))
        .collect();
    assert!(
        samples.iter().any(|l| l.contains("status=\"404\"")),
        "no 404 sample in lingma_gw_http_requests_total: {samples:#?}"
    );
    assert!(
        samples
            .iter()
            .any(|l| l.contains("/v1/chat/completions") && l.contains("status=\"200\"")),
        "no chat 200 sample in lingma_gw_http_requests_total: {samples:#?}"
    );
    // At least one observation of time to first token (the stream and the chat both have one).
    let ttft_count = text
        .lines()
        .filter(|l| l.starts_with("lingma_gw_time_to_first_token_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert!(
        ttft_count >= 1.0,
        "lingma_gw_time_to_first_token_seconds has no observation after a stream:\n{text}"
    );
}
