//! Hostile input: malformed, oversized, deeply nested, non-UTF-8 and oddly addressed requests,
//! written byte for byte to the gateway's socket. Each must be answered with the right status and,
//! wherever the application sees the request, an OpenAI error body; never a 500, never a crash.
//! After the whole table the gateway must still answer a normal chat.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Gateway;
use serde_json::Value;

const KEY: &str = "k-hostile";

/// One raw HTTP exchange: `Connection: close`, the whole response read to EOF.
struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

fn exchange(addr: &str, request: &[u8]) -> Result<Reply, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // Written from another thread while this one reads: the server may answer (and close) before
    // it has read a large body, and the answer must not be lost to a blocked write.
    let mut w = s.try_clone().unwrap();
    let request = request.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&request);
    });
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(format!(
            "no response ({read:?}): {:?}",
            String::from_utf8_lossy(&raw)
        ));
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok(Reply {
        status,
        headers: head,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// A request with the given method, path, extra header lines and body.
fn request(method: &str, path: &str, headers: &[&[u8]], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n")
        .into_bytes();
    for h in headers {
        r.extend_from_slice(h);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    r.extend_from_slice(body);
    r
}

const AUTH: &[u8] = b"Authorization: Bearer k-hostile";
const JSON: &[u8] = b"Content-Type: application/json";
const ADMIN: &[u8] = b"Authorization: Bearer adm-hostile";

fn chat_request(body: &[u8]) -> Vec<u8> {
    request("POST", "/v1/chat/completions", &[AUTH, JSON], body)
}

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// This status with an OpenAI error body of this `error.type`.
    Error(u16, &'static str),
    /// 200 with this answer.
    Answer(&'static str),
    /// This status from the HTTP layer, which answers before the application sees the request
    /// (hyper's own response, not an OpenAI body).
    Transport(u16),
}

fn nested(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

fn user(content: &str) -> String {
    serde_json::json!({"messages": [{"role": "user", "content": content}]}).to_string()
}

fn cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::*;
    const BAD: &str = "invalid_request_error";
    const AUTHN: &str = "authentication_error";
    let many: String = {
        let mut m: Vec<Value> = (0..9_999)
            .map(|i| serde_json::json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("m{i}")}))
            .collect();
        m.push(serde_json::json!({"role": "user", "content": "Reply with exactly: many"}));
        serde_json::json!({ "messages": m }).to_string()
    };
    let huge_content = user(&("x".repeat(5 * 1024 * 1024) + "\nReply with exactly: huge"));
    // An unknown model falls back to the default one, as model resolution does for any name.
    let huge_model = format!(
        r#"{{"model":"{}","messages":[{{"role":"user","content":"Reply with exactly: model"}}]}}"#,
        "m".repeat(1024 * 1024)
    );
    let oversized = user(&"a".repeat(11 * 1024 * 1024));
    let mut invalid_utf8 = br#"{"messages":[{"role":"user","content":"bad "#.to_vec();
    invalid_utf8.extend_from_slice(b"\xff\xfe\xc3\x28");
    invalid_utf8.extend_from_slice(br#""}]}"#);
    let mut invalid_utf8_key = br#"{"mess"#.to_vec();
    invalid_utf8_key.extend_from_slice(b"\x80");
    invalid_utf8_key.extend_from_slice(br#"ages":[]}"#);
    vec![
        // Broken JSON.
        ("not json", chat_request(b"{not json"), Error(400, BAD)),
        ("empty body", chat_request(b""), Error(400, BAD)),
        ("truncated", chat_request(br#"{"messages":[{"role":"user","content":"hi"#), Error(400, BAD)),
        ("trailing garbage", chat_request(br#"{"messages":[]} xyz"#), Error(400, BAD)),
        ("top-level array", chat_request(b"[]"), Error(400, BAD)),
        ("top-level null", chat_request(b"null"), Error(400, BAD)),
        ("duplicate field", chat_request(br#"{"messages":[],"messages":[]}"#), Error(400, BAD)),
        // Wrong types and values.
        ("messages is a string", chat_request(br#"{"messages":"hi"}"#), Error(400, BAD)),
        ("content is a number", chat_request(br#"{"messages":[{"role":"user","content":42}]}"#), Error(400, BAD)),
        ("role is unknown", chat_request(br#"{"messages":[{"role":"wizard","content":"x"}]}"#), Error(400, BAD)),
        ("role missing", chat_request(br#"{"messages":[{"content":"x"}]}"#), Error(400, BAD)),
        ("no messages", chat_request(br#"{"messages":[]}"#), Error(400, BAD)),
        ("model is a number", chat_request(br#"{"model":5,"messages":[{"role":"user","content":"x"}]}"#), Error(400, BAD)),
        ("stream is a string", chat_request(br#"{"stream":"yes","messages":[{"role":"user","content":"x"}]}"#), Error(400, BAD)),
        ("max_tokens negative", chat_request(br#"{"max_tokens":-1,"messages":[{"role":"user","content":"x"}]}"#), Error(400, BAD)),
        ("max_tokens overflows", chat_request(br#"{"max_tokens":99999999999,"messages":[{"role":"user","content":"x"}]}"#), Error(400, BAD)),
        ("number out of range", chat_request(br#"{"temperature":1e400,"messages":[{"role":"user","content":"x"}]}"#), Error(400, BAD)),
        ("n > 1", chat_request(br#"{"n":3,"messages":[{"role":"user","content":"x"}]}"#), Error(400, BAD)),
        ("five stop sequences", chat_request(br#"{"stop":["a","b","c","d","e"],"messages":[{"role":"user","content":"x"}]}"#), Error(400, BAD)),
        ("lone surrogate", chat_request(br#"{"messages":[{"role":"user","content":"\ud800"}]}"#), Error(400, BAD)),
        // Invalid UTF-8.
        ("invalid UTF-8 in a string", chat_request(&invalid_utf8), Error(400, BAD)),
        ("invalid UTF-8 in a key", chat_request(&invalid_utf8_key), Error(400, BAD)),
        // Deep nesting.
        ("nested 10,000 deep (unknown field)", chat_request(format!(r#"{{"metadata":{},"messages":[{{"role":"user","content":"x"}}]}}"#, nested(10_000)).as_bytes()), Error(400, BAD)),
        ("nested 100,000 deep (messages)", chat_request(format!(r#"{{"messages":{}}}"#, nested(100_000)).as_bytes()), Error(400, BAD)),
        ("nested objects", chat_request(("{\"a\":".repeat(50_000) + "1" + &"}".repeat(50_000)).as_bytes()), Error(400, BAD)),
        // Huge inputs within the body limit are served; above it, 413.
        ("5 MB content", chat_request(huge_content.as_bytes()), Answer("huge")),
        ("10,000 messages", chat_request(many.as_bytes()), Answer("many")),
        ("1 MB model name", chat_request(huge_model.as_bytes()), Answer("model")),
        ("NUL in content", chat_request(user("a\u{0}b\nReply with exactly: nul").as_bytes()), Answer("nul")),
        ("oversized body", chat_request(oversized.as_bytes()), Error(413, BAD)),
        (
            "oversized Content-Length, no body",
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer k-hostile\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n".to_vec(),
            Error(413, BAD),
        ),
        // Content type.
        ("no content type", request("POST", "/v1/chat/completions", &[AUTH], user("x").as_bytes()), Error(415, BAD)),
        ("text/plain", request("POST", "/v1/chat/completions", &[AUTH, b"Content-Type: text/plain"], user("x").as_bytes()), Error(415, BAD)),
        // Credentials.
        ("no credentials", request("POST", "/v1/chat/completions", &[JSON], user("x").as_bytes()), Error(401, AUTHN)),
        ("Bearer alone", request("POST", "/v1/chat/completions", &[JSON, b"Authorization: Bearer"], user("x").as_bytes()), Error(401, AUTHN)),
        ("Bearer and spaces", request("POST", "/v1/chat/completions", &[JSON, b"Authorization: Bearer    "], user("x").as_bytes()), Error(401, AUTHN)),
        ("Basic scheme", request("POST", "/v1/chat/completions", &[JSON, b"Authorization: Basic azpr"], user("x").as_bytes()), Error(401, AUTHN)),
        ("token without scheme", request("POST", "/v1/chat/completions", &[JSON, b"Authorization: k-hostile"], user("x").as_bytes()), Error(401, AUTHN)),
        ("wrong key", request("POST", "/v1/chat/completions", &[JSON, b"Authorization: Bearer k-wrong"], user("x").as_bytes()), Error(401, AUTHN)),
        ("non-UTF-8 bearer", request("POST", "/v1/chat/completions", &[JSON, b"Authorization: Bearer \xff\xfe\xfd"], user("x").as_bytes()), Error(401, AUTHN)),
        ("empty x-api-key", request("POST", "/v1/chat/completions", &[JSON, b"x-api-key: "], user("x").as_bytes()), Error(401, AUTHN)),
        ("non-UTF-8 x-api-key", request("POST", "/v1/chat/completions", &[JSON, b"x-api-key: \xc3\x28"], user("x").as_bytes()), Error(401, AUTHN)),
        ("key on an admin route", request("GET", "/internal/stats", &[b"Authorization: Bearer k-hostile"], b""), Error(403, "permission_error")),
        // Methods and paths.
        ("GET on chat", request("GET", "/v1/chat/completions", &[AUTH], b""), Error(405, BAD)),
        ("DELETE on models", request("DELETE", "/v1/models", &[AUTH], b""), Error(405, BAD)),
        ("unknown method", request("BREW", "/v1/chat/completions", &[AUTH, JSON], user("x").as_bytes()), Error(405, BAD)),
        ("unknown path", request("POST", "/v2/chat/completions", &[AUTH, JSON], user("x").as_bytes()), Error(404, BAD)),
        ("root", request("GET", "/", &[AUTH], b""), Error(404, BAD)),
        ("dot segments", request("GET", "/v1/../../etc/passwd", &[AUTH], b""), Error(404, BAD)),
        ("double slashes", request("POST", "//v1//chat/completions", &[AUTH, JSON], user("x").as_bytes()), Error(404, BAD)),
        ("percent-encoded invalid UTF-8 model id", request("GET", "/v1/models/%ff%fe", &[AUTH], b""), Error(400, BAD)),
        ("percent-encoded invalid UTF-8 instance", request("POST", "/internal/instances/%c3%28/restart", &[ADMIN], b""), Error(400, BAD)),
        ("invalid UTF-8 query", request("GET", "/internal/models/raw?instance=%ff", &[ADMIN], b""), Error(404, BAD)),
        ("duplicate query field", request("GET", "/internal/models/raw?instance=a&instance=b", &[ADMIN], b""), Error(400, BAD)),
        ("unknown model id", request("GET", "/v1/models/no-such-model", &[AUTH], b""), Error(404, BAD)),
        ("long path", request("GET", &format!("/v1/models/{}", "a".repeat(60_000)), &[AUTH], b""), Error(404, BAD)),
        // Bytes that are not HTTP at all: hyper answers 400 itself and closes.
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n".to_vec(), Transport(400)),
        ("header too large", request("GET", "/v1/models", &[AUTH, format!("X-Big: {}", "b".repeat(1024 * 1024)).as_bytes()], b""), Transport(431)),
    ]
}

#[test]
fn hostile_requests_get_openai_errors_and_the_gateway_survives() {
    let g = Gateway::start(&["--api-key", KEY, "--admin-token", "adm-hostile"], &[]);
    let addr = g.base.trim_start_matches("http://").to_string();
    let mut failures = Vec::new();
    for (name, req, expect) in cases() {
        let r = match exchange(&addr, &req) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let body_text = String::from_utf8_lossy(&r.body)
            .chars()
            .take(300)
            .collect::<String>();
        let verdict = match expect {
            _ if r.status == 500 => Err("a 500".to_string()),
            Expect::Transport(status) => (r.status == status)
                .then_some(())
                .ok_or_else(|| format!("status {} (expected {status})", r.status)),
            Expect::Answer(text) => match serde_json::from_slice::<Value>(&r.body) {
                Ok(v) if r.status == 200 && v["choices"][0]["message"]["content"] == text => Ok(()),
                _ => Err(format!(
                    "status {} (expected 200 answering {text:?})",
                    r.status
                )),
            },
            Expect::Error(status, kind) => {
                let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                let e = &v["error"];
                let well_formed = e["message"].as_str().is_some_and(|m| !m.is_empty())
                    && e.get("code").is_some()
                    && e.get("param").is_some()
                    && r.headers
                        .to_ascii_lowercase()
                        .contains("content-type: application/json");
                if r.status != status {
                    Err(format!("status {} (expected {status})", r.status))
                } else if !well_formed || e["type"] != kind {
                    Err(format!("not an OpenAI {kind}"))
                } else if !KEY.is_empty() && String::from_utf8_lossy(&r.body).contains("k-wrong") {
                    Err("the error echoes the presented key".to_string())
                } else {
                    Ok(())
                }
            }
        };
        if let Err(why) = verdict {
            failures.push(format!("{name}: {why}; body: {body_text}"));
        }
    }
    let mut g = g;
    assert!(
        g.child.try_wait().unwrap().is_none(),
        "the gateway died:\n{}",
        g.stderr()
    );
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Still serving.
    let r = exchange(
        &addr,
        &chat_request(user("Reply with exactly: alive").as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "alive");
}
