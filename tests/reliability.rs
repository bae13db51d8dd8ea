//! Reliability under load and faults: `lingma-gw serve --sim` driven by many concurrent clients
//! while the simulator crashes, fails, never finishes or is slow, as a real Lingma does.
//!
//! Every response must be a well-formed success or a well-formed OpenAI error (never a 500, never
//! a truncated body); the gateway must survive; crashed instances must come back; and afterwards
//! nothing may be left behind: no request in flight, no admission slot, no extra connection (the
//! gateway's open file descriptors) and no extra process (the process table).
//!
//! The CI variant sends 300 requests at concurrency 16; `RELIABILITY_FULL=1` runs the heavy one
//! (2,000 requests at concurrency 64, more crashes).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{
    Gateway, fds_without_clients, metric_sum, processes_matching, signal, tcp_connections_to,
    wait_until_async,
};
use serde_json::{Value, json};

/// `LINGMA_IDLE_FINISH_SEC`: a never-finishing answer ends 0.3 s after its `step_end`.
const IDLE_FINISH: (&str, &str) = ("LINGMA_IDLE_FINISH_SEC", "0.3");

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build()
        .unwrap()
}

fn full() -> bool {
    std::env::var("RELIABILITY_FULL").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// What one request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fault {
    None,
    Crash,
    ErrorFinish,
    NoFinish,
    SlowFirstToken,
}

impl Fault {
    fn directive(self) -> &'static str {
        match self {
            Fault::None => "",
            Fault::Crash => "[[sim:crash]] ",
            Fault::ErrorFinish => "[[sim:error=500]] ",
            Fault::NoFinish => "[[sim:no-finish]] ",
            Fault::SlowFirstToken => "[[sim:slow=300]] ",
        }
    }
}

/// How a response ended, once checked to be well-formed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// 200 with the complete answer (and, streaming, a finish chunk and `[DONE]`).
    Success(String),
    /// An OpenAI error body with this status (before any answer was sent), and its message.
    Error(u16, String),
    /// A stream that began and then ended with an OpenAI error event (no `[DONE]`).
    StreamError,
}

/// Checks an OpenAI error object: a non-empty message and type, `code` and `param` present.
fn check_error_object(v: &Value) -> Result<(), String> {
    let e = v
        .get("error")
        .ok_or_else(|| format!("no `error` object: {v}"))?;
    let message_ok = e["message"].as_str().is_some_and(|m| !m.is_empty());
    let type_ok = e["type"].as_str().is_some_and(|t| !t.is_empty());
    if !message_ok || !type_ok || e.get("code").is_none() || e.get("param").is_none() {
        return Err(format!("malformed OpenAI error: {v}"));
    }
    Ok(())
}

/// Sends one chat and checks that the response is well-formed, whatever happened upstream.
async fn chat(
    c: &reqwest::Client,
    base: &str,
    question: &str,
    stream: bool,
) -> Result<Outcome, String> {
    let body = json!({"model": "auto", "stream": stream, "messages": [{"role": "user", "content": question}]});
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = r
        .text()
        .await
        .map_err(|e| format!("body read failed ({status}): {e}"))?;
    if status != 200 {
        if status == 500 || !matches!(status, 429 | 502 | 503 | 504) {
            return Err(format!("unexpected status {status}: {text}"));
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{status} body is not JSON ({e}): {text}"))?;
        check_error_object(&v)?;
        let message = v["error"]["message"].as_str().unwrap_or_default();
        return Ok(Outcome::Error(status, message.chars().take(60).collect()));
    }
    if !stream {
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| format!("200 body is not JSON ({e}): {text}"))?;
        let choice = &v["choices"][0];
        let content = choice["message"]["content"].as_str();
        if v["object"] != "chat.completion"
            || content.is_none()
            || choice["finish_reason"] != "stop"
        {
            return Err(format!("malformed completion: {text}"));
        }
        return Ok(Outcome::Success(content.unwrap_or_default().to_string()));
    }
    if !content_type.starts_with("text/event-stream") {
        return Err(format!(
            "a stream answered with content-type {content_type:?}"
        ));
    }
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    let mut content = String::new();
    let mut finished = false;
    for (i, event) in events.iter().enumerate() {
        let last = i + 1 == events.len();
        let data = event
            .strip_prefix("data: ")
            .ok_or_else(|| format!("an SSE event without `data: `: {event:?}"))?;
        if data == "[DONE]" {
            if !last || !finished {
                return Err(format!("[DONE] out of place: {text}"));
            }
            return Ok(Outcome::Success(content));
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| format!("SSE data is not JSON ({e}): {data}"))?;
        if v.get("error").is_some() {
            check_error_object(&v)?;
            if !last {
                return Err(format!("events after an error event: {text}"));
            }
            return Ok(Outcome::StreamError);
        }
        if v["object"] != "chat.completion.chunk" {
            return Err(format!("not a chunk: {data}"));
        }
        if i == 0 && v["choices"][0]["delta"]["role"] != "assistant" {
            return Err(format!("the first chunk has no role: {data}"));
        }
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            content.push_str(t);
        }
        if v["choices"][0]["finish_reason"].as_str().is_some() {
            finished = true;
        }
    }
    Err(format!(
        "the stream ended without [DONE] or an error event: {text}"
    ))
}

async fn get_json(c: &reqwest::Client, url: String) -> Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

async fn metrics(c: &reqwest::Client, g: &Gateway) -> String {
    c.get(g.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Pids of the simulator children serving `g` (their command line names its work dir).
fn children(g: &Gateway) -> Vec<u32> {
    processes_matching(&g.work_dir.display().to_string())
        .into_iter()
        .filter(|&p| p != g.child.id())
        .collect()
}

/// Every instance ready, nothing in flight anywhere: admission, instances, the metrics gauge.
async fn settled(c: &reqwest::Client, g: &Gateway, instances: usize) -> bool {
    let health = get_json(c, g.url("/healthz")).await;
    let stats = get_json(c, g.url("/internal/stats")).await;
    let m = metrics(c, g).await;
    let ready = health["instances"].as_array().is_some_and(|a| {
        a.len() == instances
            && a.iter()
                .all(|i| i["state"] == "ready" && i["in_flight"] == 0)
    });
    ready
        && stats["admission"]["in_flight"] == 0
        && stats["admission"]["waiting"] == 0
        && metric_sum(&m, "lingma_gw_chats_in_flight") == Some(0.0)
}

/// Lingma connections the gateway holds, per instance (the pool's chat connections plus the
/// supervisor's health connection).
async fn upstream_connections(c: &reqwest::Client, g: &Gateway) -> Vec<usize> {
    let stats = get_json(c, g.url("/internal/stats")).await;
    stats["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["socket_port"].as_u64())
                .map(|p| tcp_connections_to(g.child.id(), p as u16))
                .collect()
        })
        .unwrap_or_default()
}

/// The gateway's log lines about instance state changes, for failure messages.
fn state_log(g: &Gateway) -> String {
    g.stderr()
        .lines()
        .filter(|l| l.contains("instance state") || l.contains("restart"))
        .collect::<Vec<_>>()
        .join("\n")
}

struct Plan {
    requests: usize,
    concurrency: usize,
    instances: usize,
    connections: usize,
    /// Requests with a crash directive. Fewer than instances, and spread over the run, so that
    /// one instance is always serving and none reaches the crash-loop limit (3 exits a minute,
    /// then a 30 s backoff): fault-free requests fail only when caught in a crash.
    crashes: usize,
}

/// The fault of request `i`: 10% carry one, spread evenly over the run; `crashes` of them crash.
fn fault_of(i: usize, plan: &Plan) -> Fault {
    if i % 10 != 5 {
        return Fault::None;
    }
    let k = i / 10; // 0, 1, 2, ... over the faulty requests
    let faulty = plan.requests / 10;
    let crash_every = (faulty / plan.crashes.max(1)).max(1);
    if plan.crashes > 0 && k % crash_every == crash_every / 2 && k / crash_every < plan.crashes {
        return Fault::Crash;
    }
    match k % 3 {
        0 => Fault::ErrorFinish,
        1 => Fault::NoFinish,
        _ => Fault::SlowFirstToken,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_with_faults_leaves_nothing_behind() {
    let plan = if full() {
        Plan {
            requests: 2000,
            concurrency: 64,
            instances: 4,
            connections: 16,
            crashes: 3,
        }
    } else {
        Plan {
            requests: 300,
            concurrency: 16,
            instances: 3,
            connections: 6,
            crashes: 2,
        }
    };
    let conns = plan.connections.to_string();
    let instances = plan.instances.to_string();
    let g = Gateway::start(
        &[
            "--instances",
            &instances,
            "--metrics-public",
            "--queue-timeout",
            "10",
        ],
        &[IDLE_FINISH, ("LINGMA_CONNECTIONS_PER_INSTANCE", &conns)],
    );
    let c = client();
    assert!(
        wait_until_async(Duration::from_secs(20), || settled(&c, &g, plan.instances)).await,
        "the gateway did not settle at start"
    );
    let sims_before = children(&g);
    assert_eq!(
        sims_before.len(),
        plan.instances,
        "one simulator per instance"
    );
    // The warm pool is open now: per instance its chat connections and one health connection.
    let upstream_cap = plan.connections + 1;
    assert_eq!(
        upstream_connections(&c, &g).await,
        vec![upstream_cap; plan.instances]
    );
    let fds_before = fds_without_clients(g.child.id(), g.port());

    // The load has its own client, whose keep-alive connections are closed before counting.
    let load = client();
    let next = Arc::new(AtomicUsize::new(0));
    let plan = Arc::new(plan);
    let mut workers = Vec::new();
    for _ in 0..plan.concurrency {
        let (c, next, plan, base) = (load.clone(), next.clone(), plan.clone(), g.base.clone());
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plan.requests {
                    return out;
                }
                let fault = fault_of(i, &plan);
                let expected = format!("answer-{i}");
                let question = format!("{}Reply with exactly: {expected}", fault.directive());
                let stream = i % 2 == 0;
                out.push((
                    i,
                    fault,
                    stream,
                    expected,
                    chat(&c, &base, &question, stream).await,
                ));
            }
        }));
    }
    let mut results = Vec::new();
    for w in workers {
        results.extend(w.await.unwrap());
    }
    drop(load);
    assert_eq!(results.len(), plan.requests);

    // Every response well-formed; what each kind of request may end as.
    let mut malformed = Vec::new();
    let mut tally: HashMap<(Fault, String), usize> = HashMap::new();
    let mut crashes_reached = 0;
    for (i, fault, stream, expected, r) in &results {
        let outcome = match r {
            Ok(o) => o.clone(),
            Err(e) => {
                malformed.push(format!("#{i} {fault:?} stream={stream}: {e}"));
                continue;
            }
        };
        let kind = match &outcome {
            Outcome::Success(_) => "success".to_string(),
            Outcome::Error(s, m) => format!("error {s}: {m}"),
            Outcome::StreamError => "stream error".to_string(),
        };
        *tally.entry((*fault, kind)).or_default() += 1;
        if let Outcome::Success(text) = &outcome
            && text != expected
        {
            malformed.push(format!(
                "#{i} {fault:?}: answer {text:?}, expected {expected:?} (crossed streams?)"
            ));
        }
        match (fault, &outcome) {
            (Fault::ErrorFinish, Outcome::Success(_)) => {
                malformed.push(format!("#{i}: an error finish reported as a success"))
            }
            (Fault::Crash, Outcome::Success(_)) => {
                malformed.push(format!("#{i}: a crash reported as a success"))
            }
            (Fault::Crash, Outcome::Error(502, _) | Outcome::StreamError) => crashes_reached += 1,
            _ => {}
        }
    }
    let mut tally: Vec<_> = tally.into_iter().collect();
    tally.sort_by_key(|((f, k), _)| (format!("{f:?}"), k.clone()));
    eprintln!("outcomes: {tally:?}");
    assert!(
        malformed.is_empty(),
        "{} malformed or wrong responses:\n{}",
        malformed.len(),
        malformed.join("\n")
    );

    // Requests without a fault succeed, except those in flight on an instance when it crashed.
    let clean: Vec<_> = results.iter().filter(|r| r.1 == Fault::None).collect();
    let clean_ok = clean
        .iter()
        .filter(|r| matches!(r.4, Ok(Outcome::Success(_))))
        .count();
    assert!(
        clean_ok * 100 >= clean.len() * 90,
        "only {clean_ok} of {} fault-free requests succeeded: {tally:?}\ninstance states:\n{}",
        clean.len(),
        state_log(&g)
    );
    for f in [Fault::NoFinish, Fault::SlowFirstToken] {
        assert!(
            tally.iter().any(|((ff, k), _)| *ff == f && k == "success"),
            "no {f:?} request succeeded: {tally:?}"
        );
    }

    // The gateway is alive, the crashed instances came back, nothing is left in flight.
    let mut g = g;
    assert!(
        g.child.try_wait().unwrap().is_none(),
        "the gateway died:\n{}",
        g.stderr()
    );
    assert!(
        wait_until_async(Duration::from_secs(if full() { 120 } else { 30 }), || {
            settled(&c, &g, plan.instances)
        })
        .await,
        "not settled after the load: {}\n{}",
        get_json(&c, g.url("/healthz")).await,
        get_json(&c, g.url("/internal/stats")).await
    );
    let m = metrics(&c, &g).await;
    let restarts = metric_sum(&m, "lingma_gw_instance_restarts_total").unwrap_or(0.0);
    if crashes_reached > 0 {
        assert!(
            restarts >= 1.0,
            "{crashes_reached} crashes reached Lingma but no restart was counted"
        );
    }
    assert_eq!(metric_sum(&m, "lingma_gw_admission_waiting"), Some(0.0));

    // No process leaked: one live simulator per instance, the crashed ones reaped and replaced.
    assert!(
        wait_until_async(Duration::from_secs(10), || async {
            children(&g).len() == plan.instances
        })
        .await,
        "simulator processes after the load: {:?} (expected {})",
        children(&g),
        plan.instances
    );
    // No connection leaked: at most the pool's connections per instance are open to Lingma, and
    // the gateway holds no more descriptors than at start (the load client is gone).
    assert!(
        wait_until_async(Duration::from_secs(10), || async {
            upstream_connections(&c, &g)
                .await
                .iter()
                .all(|&n| n <= upstream_cap)
                && fds_without_clients(g.child.id(), g.port()) <= fds_before
        })
        .await,
        "Lingma connections per instance: {:?} (at most {upstream_cap}); descriptors {} before, {} after",
        upstream_connections(&c, &g).await,
        fds_before,
        fds_without_clients(g.child.id(), g.port())
    );
    // And it still answers.
    assert_eq!(
        chat(&c, &g.base, "Reply with exactly: still here", false).await,
        Ok(Outcome::Success("still here".into()))
    );
    signal(g.child.id(), "TERM");
    let status = g
        .wait_exit(Duration::from_secs(30))
        .expect("the gateway did not exit on SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        children(&g).is_empty(),
        "simulators left after exit: {:?}",
        children(&g)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnects_mid_stream_release_every_slot() {
    const STREAMS: usize = 100;
    let g = Gateway::start(
        &[
            "--instances",
            "2",
            "--metrics-public",
            "--max-in-flight",
            "100",
            "--queue-timeout",
            "0",
        ],
        &[IDLE_FINISH, ("LINGMA_CONNECTIONS_PER_INSTANCE", "50")],
    );
    let c = client();
    assert!(wait_until_async(Duration::from_secs(20), || settled(&c, &g, 2)).await);
    let fds_before = fds_without_clients(g.child.id(), g.port());
    let load = client();

    // 100 long streams (2,000 words, a delta every 20 ms: half a minute each, far longer than
    // the test needs under any load): each has sent content when dropped.
    let mut open = Vec::new();
    for i in 0..STREAMS {
        let (c, url) = (load.clone(), g.url("/v1/chat/completions"));
        open.push(tokio::spawn(async move {
            let body = json!({"stream": true, "messages": [{"role": "user", "content": format!("[[sim:len=2000,delay=20]] stream {i}")}]});
            let mut r = c.post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let mut seen = String::new();
            while !seen.contains("\"content\":\"w") {
                let chunk = r.chunk().await.unwrap().expect("the stream ended early");
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
            r
        }));
    }
    let mut responses = Vec::new();
    for t in open {
        responses.push(t.await.unwrap());
    }
    let stats = get_json(&c, g.url("/internal/stats")).await;
    assert_eq!(stats["admission"]["in_flight"], STREAMS, "{stats}");

    // Every client leaves mid-answer.
    drop(responses);
    assert!(
        wait_until_async(Duration::from_secs(15), || settled(&c, &g, 2)).await,
        "slots still held after {STREAMS} disconnects: {}",
        get_json(&c, g.url("/internal/stats")).await
    );
    let m = metrics(&c, &g).await;
    assert_eq!(
        metric_sum(&m, "lingma_gw_stream_disconnects_total"),
        Some(STREAMS as f64)
    );
    // Lingma was told to stop every abandoned answer.
    let stops = |name: &str| common::stop_requests(&g.instance_dir(name)).len();
    assert!(
        wait_until_async(Duration::from_secs(10), || async {
            stops("inst-0") + stops("inst-1") >= STREAMS
        })
        .await,
        "chat/stop sent {} times for {STREAMS} abandoned answers",
        stops("inst-0") + stops("inst-1")
    );
    // Every slot is usable again: a full batch at once, with a queue timeout of 0, all admitted.
    let mut batch = Vec::new();
    for i in 0..STREAMS {
        let (c, base) = (load.clone(), g.base.clone());
        batch.push(tokio::spawn(async move {
            chat(
                &c,
                &base,
                &format!("[[sim:slow=200]] Reply with exactly: again-{i}"),
                false,
            )
            .await
        }));
    }
    for (i, t) in batch.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), Ok(Outcome::Success(format!("again-{i}"))));
    }
    drop(load);
    // The abandoned connections were closed, not kept: at most 50 + 1 per instance remain.
    assert!(
        wait_until_async(Duration::from_secs(10), || async {
            upstream_connections(&c, &g).await.iter().all(|&n| n <= 51)
                && fds_without_clients(g.child.id(), g.port()) <= fds_before
        })
        .await,
        "Lingma connections per instance: {:?}; descriptors {fds_before} before, {} after",
        upstream_connections(&c, &g).await,
        fds_without_clients(g.child.id(), g.port())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_then_exits_zero_with_no_child_left() {
    const STREAMING: usize = 12;
    const WHOLE: usize = 12;
    let mut g = Gateway::start(
        &["--instances", "2", "--metrics-public"],
        &[IDLE_FINISH, ("LINGMA_CONNECTIONS_PER_INSTANCE", "12")],
    );
    let c = client();
    assert!(wait_until_async(Duration::from_secs(20), || settled(&c, &g, 2)).await);
    let sims = children(&g);
    assert_eq!(sims.len(), 2);

    // Answers that take about two seconds (85 characters, a delta every 150 ms), so that all of
    // them are running when SIGTERM comes, even on a loaded machine.
    let mut running = Vec::new();
    for i in 0..STREAMING + WHOLE {
        let (c, base) = (c.clone(), g.base.clone());
        running.push(tokio::spawn(async move {
            let q = format!(
                "[[sim:delay=150]] Reply with exactly: {}",
                "w ".repeat(40) + &format!("end-{i}")
            );
            (q.clone(), chat(&c, &base, &q, i < STREAMING).await)
        }));
    }
    assert!(
        wait_until_async(Duration::from_secs(10), || async {
            get_json(&c, g.url("/internal/stats")).await["admission"]["in_flight"]
                == STREAMING + WHOLE
        })
        .await,
        "the load did not start"
    );
    signal(g.child.id(), "TERM");

    // Running answers finish normally; new requests are turned away.
    for t in running {
        let (q, r) = t.await.unwrap();
        let expected = q
            .rsplit("Reply with exactly: ")
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        assert_eq!(
            r,
            Ok(Outcome::Success(expected)),
            "an answer running at SIGTERM was cut"
        );
    }
    match c
        .post(g.url("/v1/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": "late"}]}))
        .send()
        .await
    {
        Err(_) => {} // the listener is closed
        Ok(r) => {
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 503, "a request after SIGTERM: {v}");
            check_error_object(&v).unwrap();
        }
    }
    let status = g
        .wait_exit(Duration::from_secs(30))
        .expect("the gateway did not exit after draining");
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{}",
        g.stderr()
    );
    for pid in sims {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z")),
            "simulator {pid} outlived the gateway"
        );
    }
    assert!(
        children(&g).is_empty(),
        "processes left: {:?}",
        children(&g)
    );
}
