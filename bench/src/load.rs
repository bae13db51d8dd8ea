//! The load generators: the same chat sent directly over Lingma's WebSocket protocol with the
//! crate's own [`LingmaClient`] (as the gateway's pool does), or through the gateway over HTTP/1.1
//! keep-alive with reqwest. Each worker owns one connection and sends its requests one after the
//! other (a closed loop); a run is a fixed number of requests shared by its workers.
//!
//! Every answer is checked against the text the simulator must produce, so a fast wrong answer
//! counts as an error, not as a fast answer.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use lingma_gw::lingma::{ChatEvent, ChatRequest, ClientOptions, LingmaClient};
use serde::Deserialize;

/// Which way a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Direct,
    Gateway,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Gateway => "gateway",
        }
    }
}

/// Non-streaming (whole answer) or streaming (time to first token is what is measured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Complete,
    Stream,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Complete => "non-streaming",
            Mode::Stream => "streaming",
        }
    }
}

/// The one question every request asks, and the answer it must get.
#[derive(Debug, Clone)]
pub struct Workload {
    pub question: String,
    pub expected: String,
    pub model: String,
}

impl Workload {
    /// An answer of `words` words (`w1 w2 ...`), streamed by the simulator in 8-character deltas.
    pub fn new(words: usize) -> Self {
        let expected = (1..=words)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        Workload {
            question: format!("[[sim:len={words}]] Count for the benchmark."),
            expected,
            model: "auto".into(),
        }
    }

    fn http_body(&self, stream: bool) -> Bytes {
        let body = serde_json::json!({
            "model": self.model,
            "stream": stream,
            "messages": [{"role": "user", "content": self.question}],
        });
        Bytes::from(body.to_string())
    }

    fn lingma_request(&self) -> ChatRequest {
        ChatRequest {
            question: self.question.clone(),
            session_id: None,
            model: Some(self.model.clone()),
            ..ChatRequest::default()
        }
    }
}

/// One HTTP/1.1 keep-alive connection to the gateway: a reqwest client of its own whose pool keeps
/// at most one idle connection, used by one worker at a time (so it never needs a second).
pub struct HttpConn {
    client: reqwest::Client,
    base: String,
}

impl HttpConn {
    /// A client for the gateway at `addr`, connected by a first request (`GET /healthz`), so that
    /// no measured request pays for the connection.
    pub async fn connect(addr: SocketAddr) -> Result<Self> {
        let client = reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1)
            .pool_idle_timeout(None)
            .no_proxy()
            .build()
            .context("cannot build the HTTP client")?;
        let c = HttpConn {
            client,
            base: format!("http://{addr}"),
        };
        c.get("/healthz")
            .await
            .with_context(|| format!("cannot connect to the gateway at {addr}"))?;
        Ok(c)
    }

    /// Sends one POST with a JSON body and returns the response with its body still to be read.
    pub async fn post(&self, path: &str, body: Bytes) -> Result<reqwest::Response> {
        Ok(self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?)
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response> {
        Ok(self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await?)
    }

    /// A GET whose text body is returned.
    pub async fn get_text(&self, path: &str) -> Result<String> {
        Ok(self.get(path).await?.text().await?)
    }

    /// A GET whose JSON body is returned.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        let body = self.get(path).await?.bytes().await?;
        Ok(serde_json::from_slice(&body)?)
    }
}

/// A connection of either kind.
pub enum Conn {
    Direct(LingmaClient),
    Gateway(HttpConn),
}

/// How to reach a target.
#[derive(Clone)]
pub enum Endpoint {
    Direct {
        url: String,
        workspace: std::path::PathBuf,
    },
    Gateway(SocketAddr),
}

impl Endpoint {
    pub fn target(&self) -> Target {
        match self {
            Endpoint::Direct { .. } => Target::Direct,
            Endpoint::Gateway(_) => Target::Gateway,
        }
    }

    pub async fn connect(&self) -> Result<Conn> {
        match self {
            Endpoint::Direct { url, workspace } => {
                let c = LingmaClient::connect(url, workspace, ClientOptions::default())
                    .await
                    .context("cannot connect to the simulator")?;
                Ok(Conn::Direct(c))
            }
            Endpoint::Gateway(addr) => Ok(Conn::Gateway(HttpConn::connect(*addr).await?)),
        }
    }
}

/// One request's latency: the whole answer (non-streaming) or the first content (streaming).
pub type Sample = Duration;

impl Conn {
    pub async fn request(&mut self, w: &Workload, mode: Mode) -> Result<Sample> {
        match self {
            Conn::Direct(c) => direct(c, w, mode).await,
            Conn::Gateway(h) => gateway(h, w, mode).await,
        }
    }
}

async fn direct(client: &LingmaClient, w: &Workload, mode: Mode) -> Result<Sample> {
    let started = Instant::now();
    let mut stream = client
        .chat(w.lingma_request())
        .await
        .map_err(|e| anyhow!("chat/ask failed: {e}"))?;
    let mut first = None;
    let mut answer = String::new();
    while let Some(ev) = stream.next().await {
        match ev.map_err(|e| anyhow!("chat stream failed: {e}"))? {
            ChatEvent::Answer(t) => {
                if first.is_none() && !t.is_empty() {
                    first = Some(started.elapsed());
                }
                answer.push_str(&t);
            }
            ChatEvent::Finished(f) => {
                let total = started.elapsed();
                if f.status_code != 200 || answer != w.expected {
                    bail!(
                        "wrong finish: status {} reason {:?}, answer {answer:?}",
                        f.status_code,
                        f.reason
                    );
                }
                return Ok(match mode {
                    Mode::Complete => total,
                    Mode::Stream => first.unwrap_or(total),
                });
            }
            ChatEvent::Reasoning(_) | ChatEvent::Replace(_) => {}
        }
    }
    bail!("the chat stream ended without a finish")
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<CompletionChoice>,
}

#[derive(Deserialize)]
struct CompletionChoice {
    message: CompletionMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct CompletionMessage {
    content: Option<String>,
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<ChunkChoice<'a>>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default, borrow)]
    delta: ChunkDelta<'a>,
    #[serde(borrow)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
}

/// Borrowed where the JSON has no escapes (the common case): no allocation per delta.
#[derive(Deserialize, Default)]
struct ChunkDelta<'a> {
    #[serde(borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
}

async fn gateway(conn: &HttpConn, w: &Workload, mode: Mode) -> Result<Sample> {
    let stream = mode == Mode::Stream;
    let started = Instant::now();
    let mut resp = conn
        .post("/v1/chat/completions", w.http_body(stream))
        .await?;
    let status = resp.status();
    if !stream {
        let bytes = resp.bytes().await?;
        let total = started.elapsed();
        if status != 200 {
            bail!("status {status}: {}", String::from_utf8_lossy(&bytes));
        }
        let c: Completion = serde_json::from_slice(&bytes)
            .with_context(|| format!("bad completion body {}", String::from_utf8_lossy(&bytes)))?;
        let choice = c.choices.first().context("no choices")?;
        if choice.message.content.as_deref() != Some(w.expected.as_str())
            || choice.finish_reason.as_deref() != Some("stop")
        {
            bail!("wrong completion: {}", String::from_utf8_lossy(&bytes));
        }
        return Ok(total);
    }
    if status != 200 {
        let bytes = resp.bytes().await?;
        bail!("status {status}: {}", String::from_utf8_lossy(&bytes));
    }
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut first = None;
    let mut answer = String::new();
    let mut finished = false;
    let mut done = false;
    while let Some(data) = resp.chunk().await? {
        buf.extend_from_slice(&data);
        // Events are parsed where they lie; the consumed prefix is dropped once per frame.
        let mut start = 0;
        while let Some(len) = find(&buf[start..], b"\n\n") {
            let event = &buf[start..start + len];
            start += len + 2;
            let payload = event
                .strip_prefix(b"data: ")
                .context("an SSE event without `data: `")?;
            if payload == b"[DONE]" {
                done = true;
                continue;
            }
            let chunk: Chunk = serde_json::from_slice(payload)
                .with_context(|| format!("bad SSE chunk {}", String::from_utf8_lossy(payload)))?;
            for c in &chunk.choices {
                if let Some(t) = c.delta.content.as_deref().filter(|t| !t.is_empty()) {
                    if first.is_none() {
                        first = Some(started.elapsed());
                    }
                    answer.push_str(t);
                }
                if c.finish_reason.as_deref() == Some("stop") {
                    finished = true;
                }
            }
        }
        buf.drain(..start);
    }
    if !(done && finished) || answer != w.expected {
        bail!("incomplete stream: finish {finished}, [DONE] {done}, answer {answer:?}");
    }
    first.context("a stream without content")
}

/// Position of the first `\n\n` (SSE event end) in `hay`.
fn find(hay: &[u8], needle: &[u8; 2]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = hay[from..].iter().position(|&b| b == needle[0]) {
        let at = from + i;
        if hay.get(at + 1) == Some(&needle[1]) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// What one run measured.
pub struct RunResult {
    pub samples: Vec<Sample>,
    pub errors: Vec<String>,
    pub wall: Duration,
}

/// Sends `requests` requests over `conns` (one worker per connection) and collects the samples.
/// Without `pace` each worker sends its next request as soon as the last one ended (a closed
/// loop: the machine runs flat out). With `pace` (requests per second, all workers together)
/// every worker keeps a fixed schedule instead, so latency is measured below saturation.
pub async fn run(
    conns: &mut Vec<Conn>,
    w: &Arc<Workload>,
    mode: Mode,
    requests: usize,
    pace: Option<f64>,
) -> RunResult {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers = conns.len().max(1);
    // One worker's time between two of its requests, and the offset that staggers the workers.
    let period = pace.map(|rate| Duration::from_secs_f64(workers as f64 / rate.max(1e-3)));
    let mut handles = Vec::with_capacity(conns.len());
    for (index, mut conn) in conns.drain(..).enumerate() {
        let next = next.clone();
        let w = w.clone();
        let start =
            period.map(|p| tokio::time::Instant::now() + p.mul_f64(index as f64 / workers as f64));
        handles.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors = Vec::new();
            let mut k = 0u32;
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                if let (Some(start), Some(p)) = (start, period) {
                    tokio::time::sleep_until(start + p * k).await;
                    k += 1;
                }
                match conn.request(&w, mode).await {
                    Ok(s) => samples.push(s),
                    Err(e) => errors.push(format!("{e:#}")),
                }
            }
            (conn, samples, errors)
        }));
    }
    let mut samples = Vec::with_capacity(requests);
    let mut errors = Vec::new();
    for h in handles {
        match h.await {
            Ok((conn, s, e)) => {
                conns.push(conn);
                samples.extend(s);
                errors.extend(e);
            }
            Err(e) => errors.push(format!("worker task failed: {e}")),
        }
    }
    RunResult {
        samples,
        errors,
        wall: started.elapsed(),
    }
}

/// Opens `n` connections to `endpoint`.
pub async fn connect_all(endpoint: &Endpoint, n: usize) -> Result<Vec<Conn>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(endpoint.connect().await?);
    }
    Ok(out)
}

/// The work dir's workspace, as the gateway's pool passes it to `initialize`.
pub fn workspace(dir: &Path) -> std::path::PathBuf {
    lingma_gw::lingma::WorkDir::new(dir).workspace()
}
