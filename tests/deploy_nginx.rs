//! The scale-out recipe with the real engine: three `lingma-gw serve --sim` replicas behind nginx
//! (Debian's `nginx-light`, installed by scripts/setup-test-deps.sh) running
//! `deploy/nginx/lingma-gw.conf` exactly as shipped. Only what the shipped file leaves to the site
//! is written here: the replicas' addresses (`lingma-gw.upstreams.conf`), the listen address
//! (`lingma-gw.listen.conf`), and a main `nginx.conf` with paths in a temporary directory.
//!
//! Conversations from every API surface (chat completions, Anthropic Messages, Responses), each
//! named the way its client names it (X-Claude-Code-Session-Id, session-id, thread-id,
//! X-Session-Id, X-Session-Affinity, or only the API key), some streaming, go through nginx. Each
//! reply says which replica answered (`x-lingma-gw-replica`): every follow-up must come back to
//! the replica of its first turn, and the replicas' own `/metrics` must show that each follow-up
//! continued its Lingma session. Then the busiest replica is killed (SIGKILL) with answers in
//! flight on it: those, and only those, are lost; every conversation continues, the killed
//! replica's on other replicas (replayed there, then reused), the others where they were.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    Gateway, metric_sum, port_hint, processes_matching, signal, wait_child, wait_for,
    wait_until_async,
};
use futures_util::future::join_all;
use serde_json::{Value, json};

const SHIPPED_CONF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx/lingma-gw.conf");
const REPLICA_HEADER: &str = "x-lingma-gw-replica";
/// The key of the conversations that name themselves in a header.
const SHARED_KEY: &str = "sk-shared";

fn nginx_binary() -> PathBuf {
    let candidates = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"];
    let found = candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("nginx"))
                    .find(|p| p.is_file())
            })
        });
    found.unwrap_or_else(|| {
        panic!(
            "nginx is not installed: run scripts/setup-test-deps.sh (it installs Debian's \
             nginx-light); a skipped scale-out test is not a passing one"
        )
    })
}

/// nginx in the foreground (`daemon off`), as a child of the test, in its own temporary prefix.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    base: String,
}

impl Nginx {
    /// Runs the shipped `lingma-gw.conf` unchanged, with `servers` (HOST:PORT) as its upstreams.
    fn start(servers: &[String]) -> Nginx {
        let bin = nginx_binary();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // When the master runs as root its workers run as nobody: they must be able to enter.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["conf", "logs", "tmp"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::copy(SHIPPED_CONF, root.join("conf/lingma-gw.conf")).unwrap();
        let upstreams: String = servers
            .iter()
            .map(|s| format!("server {s} max_fails=1 fail_timeout=10s;\n"))
            .collect();
        std::fs::write(root.join("conf/lingma-gw.upstreams.conf"), upstreams).unwrap();
        let r = root.display();
        let main = format!(
            "daemon off;\n\
             worker_processes 1;\n\
             pid {r}/nginx.pid;\n\
             error_log {r}/logs/error.log info;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n\
             \x20   log_format upstream '$remote_addr \"$request\" $status upstream=$upstream_addr \
             upstream_status=$upstream_status';\n\
             \x20   access_log {r}/logs/access.log upstream;\n\
             \x20   client_body_temp_path {r}/tmp/body;\n\
             \x20   proxy_temp_path {r}/tmp/proxy;\n\
             \x20   fastcgi_temp_path {r}/tmp/fastcgi;\n\
             \x20   uwsgi_temp_path {r}/tmp/uwsgi;\n\
             \x20   scgi_temp_path {r}/tmp/scgi;\n\
             \x20   include lingma-gw.conf;\n\
             }}\n"
        );
        std::fs::write(root.join("conf/nginx.conf"), main).unwrap();
        let command = |extra: &[&str]| {
            let mut c = Command::new(&bin);
            c.arg("-p")
                .arg(root)
                .args(["-c", "conf/nginx.conf", "-e"])
                .arg(root.join("logs/error.log"))
                .args(extra)
                .stdin(Stdio::null());
            c
        };
        // A port is chosen here (nginx cannot report one it picked): a port taken in between
        // makes nginx exit at once, and another is tried.
        for _ in 0..5 {
            let port = port_hint();
            std::fs::write(
                root.join("conf/lingma-gw.listen.conf"),
                format!("listen 127.0.0.1:{port};\n"),
            )
            .unwrap();
            let test = command(&["-t", "-q"]).output().unwrap();
            assert!(
                test.status.success(),
                "nginx -t rejects the configuration:\n{}",
                String::from_utf8_lossy(&test.stderr)
            );
            let mut child = command(&[])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            // Ready when it answers through to a replica; gone when its port was taken.
            let seen = wait_for(Duration::from_secs(30), || {
                if let Ok(Some(status)) = child.try_wait() {
                    return Ok(Err(status));
                }
                match http_status(&format!("127.0.0.1:{port}"), "/readyz") {
                    Some(200) => Ok(Ok(())),
                    other => Err(other),
                }
            });
            let log = std::fs::read_to_string(root.join("logs/error.log")).unwrap_or_default();
            match seen {
                Ok(Ok(())) => {
                    return Nginx {
                        child,
                        dir,
                        base: format!("http://127.0.0.1:{port}"),
                    };
                }
                Ok(Err(_)) if log.contains("Address already in use") => continue,
                Ok(Err(status)) => panic!("nginx exited ({status}):\n{log}"),
                Err(last) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "nginx did not answer /readyz through a replica (last: {last:?}):\n{log}"
                    );
                }
            }
        }
        panic!("no free port for nginx after 5 tries");
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("logs").join(name)).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), "TERM");
            if wait_child(&mut self.child, Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// The status of `GET path` on `addr`, over a plain socket (for waits outside the runtime).
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    Chat,
    Messages,
    Responses,
}

/// One client conversation: the history it sends in full every turn, as its client would.
struct Conv {
    id: usize,
    surface: Surface,
    stream: bool,
    /// Its conversation header (name, value), what nginx must hash on; `None`: only the key.
    header: Option<(&'static str, String)>,
    /// A header of lower precedence, sent with a new value every turn: were nginx to hash on it
    /// instead of `header`, the conversation would wander between replicas.
    noise: Option<&'static str>,
    key: String,
    history: Vec<Value>,
    /// The replica that answered each turn.
    replicas: Vec<String>,
}

/// Twenty conversations: every surface, every conversation header the recipe hashes on, the key
/// alone, streaming and not.
fn conversations() -> Vec<Conv> {
    use Surface::*;
    type Spec = (Surface, Option<&'static str>, Option<&'static str>);
    let mut specs: Vec<Spec> = Vec::new();
    specs.extend([(Chat, Some("x-session-id"), Some("x-session-affinity")); 4]);
    specs.extend([(Chat, Some("x-session-affinity"), None); 2]);
    specs.extend([(Chat, None, None); 2]);
    specs.extend(
        [(
            Messages,
            Some("x-claude-code-session-id"),
            Some("x-session-id"),
        ); 4],
    );
    specs.push((Messages, None, None));
    specs.extend([(Responses, Some("session-id"), Some("x-session-affinity")); 4]);
    specs.push((Responses, Some("thread-id"), Some("x-session-id")));
    specs.extend([(Responses, None, None); 2]);
    specs
        .into_iter()
        .enumerate()
        .map(|(id, (surface, header, noise))| Conv {
            id,
            surface,
            stream: id % 2 == 1,
            header: header.map(|h| (h, uuid::Uuid::new_v4().to_string())),
            noise,
            key: match header {
                Some(_) => SHARED_KEY.to_string(),
                None => format!("sk-own-{id}"),
            },
            history: Vec::new(),
            replicas: Vec::new(),
        })
        .collect()
}

fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| {
            event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_string)
        })
        .collect()
}

impl Conv {
    fn path(&self) -> &'static str {
        match self.surface {
            Surface::Chat => "/v1/chat/completions",
            Surface::Messages => "/v1/messages",
            Surface::Responses => "/v1/responses",
        }
    }

    /// The request as this conversation's client sends it: the key where the client puts it,
    /// its conversation header, the noise header with a fresh value.
    fn request(&self, http: &reqwest::Client, base: &str, body: Value) -> reqwest::RequestBuilder {
        let mut rb = http.post(format!("{base}{}", self.path())).json(&body);
        rb = match self.surface {
            Surface::Messages => rb
                .header("x-api-key", &self.key)
                .header("anthropic-version", "2023-06-01"),
            _ => rb.bearer_auth(&self.key),
        };
        if let Some((name, value)) = &self.header {
            rb = rb.header(*name, value);
        }
        if let Some(noise) = self.noise {
            rb = rb.header(noise, uuid::Uuid::new_v4().to_string());
        }
        rb
    }

    fn body(&self, messages: Vec<Value>, stream: bool) -> Value {
        match self.surface {
            Surface::Chat => json!({"model": "auto", "stream": stream, "messages": messages}),
            Surface::Messages => json!({
                "model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": stream,
                "messages": messages,
            }),
            Surface::Responses => json!({
                "model": "gpt-5-codex", "store": false, "stream": stream, "input": messages,
            }),
        }
    }

    fn user_message(&self, text: &str) -> Value {
        match self.surface {
            Surface::Responses => json!({
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": text}],
            }),
            _ => json!({"role": "user", "content": text}),
        }
    }

    /// Turn `n`: the whole history plus a new question; the answer must be the one asked for.
    /// Returns the replica that answered.
    async fn turn(
        &mut self,
        http: &reqwest::Client,
        base: &str,
        n: usize,
    ) -> Result<String, String> {
        let expected = format!("c{}-t{n}", self.id);
        let question = self.user_message(&format!("Reply with exactly: {expected}"));
        let mut messages = self.history.clone();
        messages.push(question.clone());
        let resp = self
            .request(http, base, self.body(messages, self.stream))
            .send()
            .await
            .map_err(|e| format!("conversation {} turn {n}: {e}", self.id))?;
        let status = resp.status();
        let replica = resp
            .headers()
            .get(REPLICA_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = resp
            .text()
            .await
            .map_err(|e| format!("conversation {} turn {n}: {e}", self.id))?;
        if status != 200 {
            return Err(format!(
                "conversation {} turn {n}: {status} {text}",
                self.id
            ));
        }
        let (answer, assistant) = self.answer(&text).ok_or_else(|| {
            format!(
                "conversation {} turn {n}: unreadable answer: {text}",
                self.id
            )
        })?;
        if answer != expected {
            return Err(format!(
                "conversation {} turn {n}: answer {answer:?}, expected {expected:?}",
                self.id
            ));
        }
        self.history.push(question);
        self.history.extend(assistant);
        self.replicas.push(replica.clone());
        Ok(replica)
    }

    /// The answer's text and what the client echoes back as the assistant's turn.
    fn answer(&self, body: &str) -> Option<(String, Vec<Value>)> {
        match (self.surface, self.stream) {
            (Surface::Chat, false) => {
                let v: Value = serde_json::from_str(body).ok()?;
                let message = v["choices"][0]["message"].clone();
                Some((message["content"].as_str()?.to_string(), vec![message]))
            }
            (Surface::Chat, true) => {
                let data = sse_data(body);
                if data.last().map(String::as_str) != Some("[DONE]") {
                    return None;
                }
                let text: String = data
                    .iter()
                    .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                    .filter_map(|v| {
                        v["choices"][0]["delta"]["content"]
                            .as_str()
                            .map(str::to_string)
                    })
                    .collect();
                Some((
                    text.clone(),
                    vec![json!({"role": "assistant", "content": text})],
                ))
            }
            (Surface::Messages, false) => {
                let v: Value = serde_json::from_str(body).ok()?;
                let text = blocks_text(&v["content"]);
                Some((
                    text,
                    vec![json!({"role": "assistant", "content": v["content"]})],
                ))
            }
            (Surface::Messages, true) => {
                let events: Vec<Value> = sse_data(body)
                    .iter()
                    .filter_map(|d| serde_json::from_str(d).ok())
                    .collect();
                if events.last()?["type"] != "message_stop" {
                    return None;
                }
                let text: String = events
                    .iter()
                    .filter(|e| e["type"] == "content_block_delta")
                    .filter_map(|e| e["delta"]["text"].as_str().map(str::to_string))
                    .collect();
                let content = json!([{"type": "text", "text": text}]);
                Some((text, vec![json!({"role": "assistant", "content": content})]))
            }
            (Surface::Responses, stream) => {
                let response: Value = if stream {
                    sse_data(body)
                        .iter()
                        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                        .find(|e| e["type"] == "response.completed")?["response"]
                        .clone()
                } else {
                    serde_json::from_str(body).ok()?
                };
                let output = response["output"].as_array()?.clone();
                let text = output
                    .iter()
                    .filter(|item| item["type"] == "message")
                    .map(|item| blocks_text(&item["content"]))
                    .collect();
                // Codex sends the output items back as they came.
                Some((text, output))
            }
        }
    }
}

fn blocks_text(content: &Value) -> String {
    content
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["text"].as_str())
        .collect()
}

/// One turn of every conversation at once; every failure, not just the first.
async fn round(convs: &mut [Conv], http: &reqwest::Client, base: &str, n: usize) {
    let results = join_all(convs.iter_mut().map(|c| c.turn(http, base, n))).await;
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(
        failures.is_empty(),
        "turn {n}: {} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// (session cache hits, misses, question bytes reused, question bytes replayed) of a replica.
async fn reuse_figures(http: &reqwest::Client, g: &Gateway) -> (f64, f64, f64, f64) {
    let text = http
        .get(g.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let bytes = |reuse: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "lingma_gw_question_bytes_total{{reuse=\"{reuse}\"}} "
                ))
            })
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        metric_sum(&text, "lingma_gw_session_cache_hits_total").unwrap_or(0.0),
        metric_sum(&text, "lingma_gw_session_cache_misses_total").unwrap_or(0.0),
        bytes("true"),
        bytes("false"),
    )
}

fn sim_log(g: &Gateway) -> String {
    std::fs::read_to_string(g.instance_dir("inst-0").join("logs/sim-requests.jsonl"))
        .unwrap_or_default()
}

/// SIGKILL, as a crash or an OOM kill would; returns once the replica and its Lingma are gone.
async fn kill(g: &mut Gateway) {
    signal(g.child.id(), "KILL");
    assert!(g.wait_exit(Duration::from_secs(10)).is_some());
    // Its Lingma process follows it (parent-death signal): nothing is left running.
    let lingma = format!("--workDir={}", g.work_dir.display());
    assert!(
        wait_until_async(Duration::from_secs(10), || async {
            processes_matching(&lingma).is_empty()
        })
        .await,
        "the killed replica's simulator outlived it"
    );
}

/// Two turns of every conversation after a kill, from turn `n`. A conversation whose replica is
/// dead moves to a live one (a miss there, then a hit); every other stays (hits). Returns (moved,
/// reuse hits, misses) on the live replicas over the two turns.
async fn continue_after_kill(
    convs: &mut [Conv],
    replicas: &[Gateway],
    alive: &[bool],
    names: &[&str],
    http: &reqwest::Client,
    base: &str,
    n: usize,
) -> (usize, f64, f64) {
    let mut before = Vec::new();
    for (i, g) in replicas.iter().enumerate() {
        before.push(if alive[i] {
            reuse_figures(http, g).await
        } else {
            Default::default()
        });
    }
    let homes: Vec<String> = convs
        .iter()
        .map(|c| c.replicas.last().unwrap().clone())
        .collect();
    round(convs, http, base, n).await;
    round(convs, http, base, n + 1).await;
    let live = |r: &str| names.iter().position(|x| *x == r).is_some_and(|i| alive[i]);
    let mut moved = 0;
    for (c, home) in convs.iter().zip(&homes) {
        let (a, b) = (&c.replicas[n - 1], &c.replicas[n]);
        if live(home) {
            assert_eq!(
                (a, b),
                (home, home),
                "conversation {} left a live replica",
                c.id
            );
        } else {
            moved += 1;
            assert!(live(a), "conversation {} answered by {a}", c.id);
            assert_eq!(b, a, "conversation {} moved again", c.id);
        }
    }
    let (mut hits, mut misses) = (0.0, 0.0);
    for (i, g) in replicas.iter().enumerate().filter(|(i, _)| alive[*i]) {
        let f = reuse_figures(http, g).await;
        hits += f.0 - before[i].0;
        misses += f.1 - before[i].1;
    }
    assert_eq!(misses, moved as f64, "replays of the moved conversations");
    assert_eq!(
        hits,
        (convs.len() - moved + convs.len()) as f64,
        "reuse after the kill"
    );
    (moved, hits, misses)
}

#[tokio::test]
async fn three_replicas_behind_the_shipped_nginx_config_keep_and_survive_conversations() {
    let convs_template = conversations();
    let mut args: Vec<String> = ["--metrics-public", "--api-key", SHARED_KEY]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for c in convs_template.iter().filter(|c| c.header.is_none()) {
        args.extend(["--api-key".to_string(), c.key.clone()]);
    }
    let mut replicas: Vec<Gateway> = (0..3)
        .map(|i| {
            let id = format!("r{i}");
            let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
            a.extend(["--replica-id", &id]);
            Gateway::start(&a, &[])
        })
        .collect();
    let names = ["r0", "r1", "r2"];
    let addrs: Vec<String> = replicas.iter().map(Gateway::addr).collect();
    let nginx = Nginx::start(&addrs);
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let base = nginx.base.clone();
    let mut convs = convs_template;

    // Four turns each: one first turn and three follow-ups per conversation.
    for n in 1..=4 {
        round(&mut convs, &http, &base, n).await;
    }
    let mut home: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut kept = 0;
    let mut follow_ups = 0;
    for c in &convs {
        assert!(names.contains(&c.replicas[0].as_str()), "{:?}", c.replicas);
        follow_ups += c.replicas.len() - 1;
        kept += c.replicas[1..]
            .iter()
            .filter(|r| **r == c.replicas[0])
            .count();
        let name = names.iter().find(|n| **n == c.replicas[0]).unwrap();
        home.entry(name).or_default().push(c.id);
    }
    let spread: Vec<String> = home
        .iter()
        .map(|(r, ids)| format!("{r}: {ids:?}"))
        .collect();
    println!("conversations by replica: {}", spread.join("; "));
    assert_eq!(
        kept,
        follow_ups,
        "follow-ups that left their replica: {:?}",
        convs
            .iter()
            .map(|c| (c.id, c.header.as_ref().map(|h| h.0), &c.replicas))
            .collect::<Vec<_>>()
    );
    assert!(
        home.len() >= 2,
        "all conversations on one replica: {spread:?}"
    );

    // Each follow-up continued its Lingma session on its replica: one hit each, no miss.
    let mut before = Vec::new();
    for (i, g) in replicas.iter().enumerate() {
        let f = reuse_figures(&http, g).await;
        let convs_here = home.get(names[i]).map_or(0, Vec::len);
        assert_eq!(f.0 as usize, 3 * convs_here, "{}: hits {f:?}", names[i]);
        assert_eq!(f.1, 0.0, "{}: misses {f:?}", names[i]);
        before.push(f);
    }
    let hits: f64 = before.iter().map(|f| f.0).sum();
    println!(
        "before the kill: {kept}/{follow_ups} follow-ups on their replica; session reuse {hits}/{follow_ups} \
         ({:.0}%); question bytes reused/replayed per replica {:?}",
        100.0 * hits / follow_ups as f64,
        before.iter().map(|f| (f.2, f.3)).collect::<Vec<_>>()
    );

    // The busiest replica dies with answers in flight on it: a stream whose first event has come
    // through nginx (so nginx does not buffer it) and a non-streaming answer still waiting.
    let (victim_name, victim_convs) = home
        .iter()
        .max_by_key(|(_, ids)| ids.len())
        .map(|(n, ids)| (n.to_string(), ids.clone()))
        .unwrap();
    let victim_index = names.iter().position(|n| *n == victim_name).unwrap();
    let anchor = &convs[victim_convs[0]];
    let in_flight = |stream: bool| {
        let question = format!("Reply with exactly: inflight-{stream} [[sim:hang]]");
        let body = anchor.body(vec![anchor.user_message(&question)], stream);
        anchor.request(&http, &base, body).send()
    };
    let mut streaming = in_flight(true).await.unwrap();
    assert_eq!(streaming.status(), 200);
    assert_eq!(streaming.headers()[REPLICA_HEADER], victim_name.as_str());
    let first = streaming
        .chunk()
        .await
        .unwrap()
        .expect("the stream's first event");
    assert!(!first.is_empty());
    let waiting = tokio::spawn(in_flight(false));
    let victim_base = replicas[victim_index].url("/healthz");
    assert!(
        wait_until_async(Duration::from_secs(20), || async {
            let h: Value = match http.get(&victim_base).send().await {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            h["in_flight"] == 2
        })
        .await,
        "the two answers never ran on {victim_name}"
    );
    kill(&mut replicas[victim_index]).await;
    // What was in flight on the dead replica is lost, and only that: the stream ends without
    // its answer, the waiting request fails; nginx did not send either to another replica.
    let rest = streaming
        .bytes()
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let stream_text = String::from_utf8_lossy(&rest);
    assert!(
        !stream_text.contains("[DONE]") && !stream_text.contains("inflight"),
        "a stream cut by the kill ended as if complete: {stream_text}"
    );
    let waited = waiting.await.unwrap();
    let waited_status = match waited {
        Ok(r) => {
            let s = r.status().as_u16();
            let t = r.text().await.unwrap_or_default();
            assert!(
                !t.contains("inflight-false"),
                "the waiting answer was answered: {t}"
            );
            Some(s)
        }
        Err(_) => None,
    };
    assert_ne!(
        waited_status,
        Some(200),
        "the waiting request succeeded after its replica died"
    );
    assert!(sim_log(&replicas[victim_index]).contains("inflight-true"));
    for (i, g) in replicas
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim_index)
    {
        assert!(
            !sim_log(g).contains("inflight"),
            "{} was asked an answer that was in flight on the killed replica: nginx retried a \
             request that had been sent",
            names[i]
        );
    }

    // Every conversation continues at once: the dead replica's on the others (a new session
    // with the whole history), the rest where they were; one more turn continues the session.
    let mut alive = vec![true; 3];
    alive[victim_index] = false;
    let (moved, hits, replays) =
        continue_after_kill(&mut convs, &replicas, &alive, &names, &http, &base, 5).await;
    assert_eq!(moved, victim_convs.len());
    println!(
        "after killing {victim_name} with 2 answers in flight (both lost, neither sent to another \
         replica): {n}/{n} conversations continued ({moved} moved and replayed, then reused; {} \
         stayed and reused): {hits} reuse hits, {replays} replays",
        convs.len() - moved,
        n = convs.len(),
    );

    // A second replica dies with nothing in flight, so nginx still counts it as up: the first
    // requests hashed to it find its port closed, and nginx must send them to the last replica
    // (proxy_next_upstream error), or they would be lost.
    let second = (0..3).find(|i| alive[*i]).unwrap();
    let refused_before = nginx.log("error.log").matches("Connection refused").count();
    kill(&mut replicas[second]).await;
    alive[second] = false;
    let (moved, hits, replays) =
        continue_after_kill(&mut convs, &replicas, &alive, &names, &http, &base, 7).await;
    let refused = nginx.log("error.log").matches("Connection refused").count() - refused_before;
    assert!(
        refused >= 1,
        "no request met the dead replica's closed port, so the retry was not exercised:\n{}",
        nginx.log("error.log")
    );
    println!(
        "after killing {} with nothing in flight: {n}/{n} conversations continued on the last \
         replica ({moved} moved; nginx met a refused connection {refused} time(s) and sent the \
         request on): {hits} reuse hits, {replays} replays",
        names[second],
        n = convs.len(),
    );
    drop(nginx);
}

/// What the scale-out test cannot tell apart, read from the shipped file: lingma-gw already asks
/// nginx not to buffer its streams (`X-Accel-Buffering: no`), and no test waits an hour.
#[test]
fn shipped_config_streams_waits_long_and_retries_only_unreached_requests() {
    let conf = std::fs::read_to_string(SHIPPED_CONF).unwrap();
    let directive = |name: &str| -> Vec<String> {
        conf.lines()
            .map(|l| l.split('#').next().unwrap().trim())
            .filter(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l.trim_end_matches(';').to_string())
            .collect()
    };
    assert_eq!(directive("hash"), ["hash $lingma_gw_affinity consistent"]);
    assert_eq!(directive("proxy_buffering"), ["proxy_buffering off"]);
    assert_eq!(
        directive("proxy_request_buffering"),
        ["proxy_request_buffering on"]
    );
    for name in ["proxy_read_timeout", "proxy_send_timeout"] {
        let [d] = &directive(name)[..] else {
            panic!("{name}: {:?}", directive(name))
        };
        let secs: u64 = d
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.strip_suffix('s'))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(secs >= 600, "{d}: a reasoning model may think for minutes");
    }
    let [next] = &directive("proxy_next_upstream")[..] else {
        panic!("{:?}", directive("proxy_next_upstream"))
    };
    let conditions: Vec<&str> = next.split_whitespace().skip(1).collect();
    assert!(
        conditions.iter().all(|c| ["error", "timeout"].contains(c)),
        "{next}: only unreached replicas may be retried (no non_idempotent, no http_5xx)"
    );
    // The chain of maps: the clients' conversation headers first, then the generic ones, then
    // the key, then the address; each map falls back to the next.
    let order = [
        "$http_x_claude_code_session_id",
        "$http_session_id",
        "$http_thread_id",
        "$http_x_session_id",
        "$http_x_session_affinity",
        "$http_authorization",
        "$http_x_api_key",
    ];
    let maps = directive("map");
    let sources: Vec<&str> = maps
        .iter()
        .filter_map(|m| m.split_whitespace().nth(1))
        .filter(|s| order.contains(s))
        .collect();
    assert_eq!(sources, order, "{maps:?}");
}
