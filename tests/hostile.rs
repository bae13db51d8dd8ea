//! Hostile input: malformed, oversized, deeply nested, non-UTF-8 and oddly addressed requests,
//! written byte for byte to the gateway's socket. Each must be answered with the right status and,
//! wherever the application sees the request, an OpenAI error body; never a 500, never a crash.
//! After the whole table the gateway must still answer a normal chat.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Gateway, wait_until};
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

// -------------------------------------------------------------------------------------------------
// Slow, stalled and hostile clients: every limit below holds a connection, a slot or memory
// against a client that does not play along, and must let it go.
// -------------------------------------------------------------------------------------------------

/// Reads one HTTP/1.1 response from a keep-alive connection: its status and body (the body sized
/// by `Content-Length`).
fn read_response(s: &mut TcpStream) -> Result<(u16, Vec<u8>), String> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            Ok(_) => return Err(format!("closed after {:?}", String::from_utf8_lossy(&raw))),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or("no status")?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).map_err(|e| format!("body: {e}"))?;
    Ok((status, body))
}

/// Waits for the server to close `s` (EOF or reset): how long that took, or an error when it is
/// still open after `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Result<Duration, String> {
    let started = std::time::Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(started.elapsed()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("still open after {limit:?}"));
            }
            Err(_) => return Ok(started.elapsed()),
        }
    }
}

fn get_json(addr: &str, path: &str, auth: &[u8]) -> Value {
    let r = exchange(addr, &request("GET", path, &[auth], b"")).unwrap();
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    serde_json::from_slice(&r.body).unwrap()
}

fn stats(addr: &str) -> Value {
    get_json(addr, "/internal/stats", ADMIN)
}

#[test]
fn slowloris_connections_are_closed_and_normal_traffic_is_served() {
    let g = Gateway::start(
        &[
            "--api-key",
            KEY,
            "--header-timeout",
            "1",
            "--idle-timeout",
            "2",
        ],
        &[],
    );
    let addr = g.addr();
    // 100 connections: half never send a byte, half drip their headers a byte at a time (each
    // byte well inside any per-read timeout, the whole head never finished).
    let mut silent: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let drippers: Vec<_> = (0..50)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || -> Result<Duration, String> {
                let mut s = TcpStream::connect(&addr).map_err(|e| e.to_string())?;
                let started = std::time::Instant::now();
                let head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
                for b in head.iter().chain(std::iter::repeat(&b'a')) {
                    if s.write_all(&[*b]).is_err() {
                        return Ok(started.elapsed());
                    }
                    if started.elapsed() > Duration::from_secs(60) {
                        return Err("still accepting header bytes after 60 s".into());
                    }
                    // The attack's pace, not a synchronisation.
                    std::thread::sleep(Duration::from_millis(100));
                }
                unreachable!()
            })
        })
        .collect();
    // Normal traffic is served meanwhile.
    let r = exchange(
        &addr,
        &chat_request(user("Reply with exactly: normal").as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    for (i, s) in silent.iter_mut().enumerate() {
        let took = closed_within(s, Duration::from_secs(30));
        assert!(took.is_ok(), "silent connection {i}: {took:?}");
    }
    for (i, d) in drippers.into_iter().enumerate() {
        let took = d.join().unwrap();
        assert!(took.is_ok(), "dripping connection {i}: {took:?}");
    }
}

#[test]
fn idle_keep_alive_connections_close_and_quick_follow_ups_are_served() {
    let g = Gateway::start(&["--idle-timeout", "2"], &[]);
    let mut s = TcpStream::connect(g.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let get = b"GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for _ in 0..3 {
        s.write_all(get).unwrap();
        let (status, _) = read_response(&mut s).unwrap();
        assert_eq!(status, 200, "a keep-alive request inside the idle timeout");
    }
    let took = closed_within(&mut s, Duration::from_secs(30));
    assert!(took.is_ok(), "idle keep-alive connection: {took:?}");
}

#[test]
fn anonymous_bodies_are_refused_from_the_headers_and_cost_no_memory() {
    const CONNECTIONS: usize = 20;
    const SENT: usize = 4 * 1024 * 1024;
    let g = Gateway::start(&["--api-key", KEY], &[]);
    let pid = g.child.id();
    let before = common::proc_status_kb(pid, "VmRSS");
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut s = TcpStream::connect(g.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // 10 MiB declared, 4 MiB sent, the rest withheld: an upload that never ends.
        let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n\
                    Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n";
        s.write_all(head.as_bytes()).unwrap();
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = w.write_all(&vec![b' '; SENT]);
        });
        let (status, body) = read_response(&mut s).expect("an answer before the body");
        assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "authentication_error");
        conns.push((s, writer));
    }
    let after = common::proc_status_kb(pid, "VmRSS");
    assert!(
        after < before + 40 * 1024,
        "RSS grew from {before} kB to {after} kB for {CONNECTIONS} refused uploads"
    );
    for (s, w) in conns {
        drop(s);
        let _ = w.join();
    }
}

#[test]
fn a_stalled_body_gets_408_and_frees_its_reservation() {
    let g = Gateway::start(
        &[
            "--api-key",
            KEY,
            "--admin-token",
            "adm-hostile",
            "--body-timeout",
            "1",
        ],
        &[],
    );
    let mut s = TcpStream::connect(g.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n\
                Authorization: Bearer k-hostile\r\nContent-Type: application/json\r\n\
                Content-Length: 1000\r\n\r\n{\"messages\"";
    s.write_all(head.as_bytes()).unwrap();
    let (status, body) = read_response(&mut s).unwrap();
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["code"], "request_timeout");
    assert_eq!(stats(&g.addr())["admission"]["queued_body_bytes"], 0);
}

#[test]
fn a_client_that_stops_reading_holds_little_memory_and_is_cut_after_the_stall_timeout() {
    let g = Gateway::start(
        &[
            "--api-key",
            KEY,
            "--admin-token",
            "adm-hostile",
            "--stream-stall-timeout",
            "3",
            "--max-in-flight",
            "2",
        ],
        &[],
    );
    let addr = g.addr();
    let pid = g.child.id();
    let peak_before = common::proc_status_kb(pid, "VmHWM");
    // A million-word answer, streamed to a client that reads the response head and then nothing.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(&chat_request(
        br#"{"stream":true,"messages":[{"role":"user","content":"[[sim:len=1000000]] flood"}]}"#,
    ))
    .unwrap();
    let mut first = [0u8; 12];
    s.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // The gateway gives up on it: the slot is free again while the client still holds the socket.
    assert!(
        wait_until(
            Duration::from_secs(60),
            || stats(&addr)["admission"]["in_flight"] == 0
        ),
        "the stalled stream still holds its slot: {}",
        stats(&addr)
    );
    // Lingma was told to stop the answer.
    assert!(wait_until(Duration::from_secs(10), || {
        !common::stop_requests(&g.instance_dir("inst-0")).is_empty()
    }));
    let peak = common::proc_status_kb(pid, "VmHWM");
    assert!(
        peak < peak_before + 24 * 1024,
        "peak RSS grew from {peak_before} kB to {peak} kB while a client did not read"
    );
    // Other chats are served.
    let r = exchange(
        &addr,
        &chat_request(user("Reply with exactly: next").as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    drop(s);
}

#[test]
fn serve_keeps_serving_and_stops_on_sigterm_after_its_stderr_reader_dies() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(common::BIN)
        .args(["-v", "serve", "--sim", "--port", "0", "--work-dir"])
        .arg(dir.path())
        .envs(common::fast_sim_env())
        .env_remove("API_KEYS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listening on http://").map(str::to_string))
        .expect("the address line");
    // Whoever read stderr is gone (`serve 2>&1 | head`, a log shipper that died).
    drop(child.stderr.take());
    for i in 0..5 {
        let r = exchange(
            &addr,
            &request(
                "POST",
                "/v1/chat/completions",
                &[JSON],
                user(&format!("Reply with exactly: alive-{i}")).as_bytes(),
            ),
        )
        .unwrap_or_else(|e| panic!("chat {i} after stderr closed: {e}"));
        assert_eq!(r.status, 200, "chat {i}");
    }
    common::signal(child.id(), "TERM");
    let status = common::wait_child(&mut child, Duration::from_secs(30));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "serve did not stop cleanly on SIGTERM: {status:?}"
    );
}

#[test]
fn the_queue_is_bounded_by_count_and_by_body_memory() {
    let g = Gateway::start(
        &[
            "--api-key",
            KEY,
            "--admin-token",
            "adm-hostile",
            "--max-in-flight",
            "1",
            "--max-queue",
            "2",
            "--queue-timeout",
            "120",
            "--queue-memory",
            "1",
            "--body-limit",
            "700000",
        ],
        &[],
    );
    let addr = g.addr();
    // The only slot is taken by a long answer.
    let mut holder = TcpStream::connect(&addr).unwrap();
    holder
        .write_all(&chat_request(
            br#"{"stream":true,"messages":[{"role":"user","content":"[[sim:len=5000,delay=20]] hold"}]}"#,
        ))
        .unwrap();
    let mut first = [0u8; 12];
    holder.read_exact(&mut first).unwrap();
    assert!(wait_until(
        Duration::from_secs(30),
        || stats(&addr)["admission"]["in_flight"] == 1
    ));
    // A 600 kB request waits; a second one does not fit the 1 MiB budget and is refused at once.
    let big = |tag: &str| {
        user(&format!(
            "{}\nReply with exactly: {tag}",
            "x".repeat(600_000)
        ))
    };
    let waiting_big = {
        let (addr, body) = (addr.clone(), big("big"));
        std::thread::spawn(move || exchange(&addr, &chat_request(body.as_bytes())))
    };
    assert!(wait_until(
        Duration::from_secs(30),
        || stats(&addr)["admission"]["waiting"] == 1
    ));
    let started = std::time::Instant::now();
    let r = exchange(&addr, &chat_request(big("refused").as_bytes())).unwrap();
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.headers.to_ascii_lowercase().contains("retry-after:"));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "refused at once"
    );
    // A small request still fits: the queue holds two.
    let waiting_small = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            exchange(
                &addr,
                &chat_request(user("Reply with exactly: small").as_bytes()),
            )
        })
    };
    assert!(wait_until(
        Duration::from_secs(30),
        || stats(&addr)["admission"]["waiting"] == 2
    ));
    // A full queue refuses at once, whatever the body.
    let started = std::time::Instant::now();
    let r = exchange(
        &addr,
        &chat_request(user("Reply with exactly: third").as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "refused at once"
    );
    // The holder leaves; the waiting requests are answered.
    drop(holder);
    for (w, text) in [(waiting_big, "big"), (waiting_small, "small")] {
        let r = w.join().unwrap().unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], text);
    }
    assert_eq!(stats(&addr)["admission"]["queued_body_bytes"], 0);
}

#[test]
fn a_chat_waits_for_an_instance_that_is_restarting() {
    let g = Gateway::start(
        &["--admin-token", "adm-hostile"],
        // A slow start, so the chat certainly arrives while the instance is restarting.
        &[("LINGMA_SIM_STARTUP_DELAY_MS", "1500")],
    );
    let addr = g.addr();
    let state = || {
        get_json(&addr, "/internal/instances", ADMIN)["instances"][0]["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(wait_until(Duration::from_secs(30), || state() == "ready"));
    let r = exchange(
        &addr,
        &request("POST", "/internal/instances/inst-0/restart", &[ADMIN], b""),
    )
    .unwrap();
    assert_eq!(r.status, 202);
    assert!(wait_until(Duration::from_secs(30), || state() != "ready"));
    let r = exchange(
        &addr,
        &request(
            "POST",
            "/v1/chat/completions",
            &[JSON],
            user("Reply with exactly: back").as_bytes(),
        ),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn healthz_names_instances_and_accounts_only_to_admin_or_metrics_credentials() {
    let g = Gateway::start(
        &[
            "--api-key",
            KEY,
            "--admin-token",
            "adm-hostile",
            "--metrics-token",
            "met-hostile",
        ],
        &[],
    );
    let addr = g.addr();
    assert!(wait_until(Duration::from_secs(30), || {
        exchange(&addr, &request("GET", "/healthz", &[], b"")).is_ok_and(|r| r.status == 200)
    }));
    for (who, auth) in [
        ("anonymous", &b"X-None: 1"[..]),
        ("a client key", AUTH),
        ("a wrong key", b"Authorization: Bearer nope"),
    ] {
        let r = exchange(&addr, &request("GET", "/healthz", &[auth], b"")).unwrap();
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["status"], "ok", "{who}");
        assert_eq!(v["ready_instances"], 1, "{who}");
        assert!(v.get("instances").is_none(), "{who} sees instances: {v}");
        assert!(!String::from_utf8_lossy(&r.body).contains("demo"), "{who}");
    }
    for (who, auth) in [
        ("admin", ADMIN),
        ("metrics", &b"Authorization: Bearer met-hostile"[..]),
    ] {
        let v = get_json(&addr, "/healthz", auth);
        assert_eq!(v["instances"][0]["name"], "inst-0", "{who}");
        assert_eq!(v["instances"][0]["user"], "demo", "{who}");
    }
}

#[test]
fn failed_chats_name_their_instance_in_the_request_log() {
    let g = Gateway::start(&["--api-key", KEY], &[]);
    let r = exchange(
        &g.addr(),
        &chat_request(user("[[sim:error=500]] fail").as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 502);
    assert!(
        wait_until(Duration::from_secs(10), || g.stderr().lines().any(|l| {
            l.contains("request")
                && l.contains("status=502")
                && l.contains("instance=inst-0")
                && l.contains("error=upstream_error")
        })),
        "no request line naming the instance:\n{}",
        g.stderr()
    );
}
