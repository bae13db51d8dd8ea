//! The typed client in the ACP-style dialect (§12) against `lingma-gw sim` as a separate process:
//! an answer built from `agent_message_chunk`s (not the empty `fullAnswer`), thinking as
//! reasoning, the context window, several prompts at once on one connection, a reader that stays
//! behind cut off without stalling the others, stopping by deleting the session (and the `{id}`
//! retry), the prompt reply early, late or never, errors; dialect detection and forcing; and the
//! same dialect over a Unix socket; `try_next` (the events that need no waiting) against `next`.

mod common;

use std::task::Poll;
use std::time::Duration;

use common::{Sim, asks, fast_sim_env, stop_requests};
use lingma_gw::lingma::{
    ChatError, ChatEvent, ChatFinish, ChatRequest, ClientOptions, Dialect, DialectChoice, EndedBy,
    Endpoint, LingmaClient, rpc::RpcError,
};

async fn start_sim(dialect: &str, extra: &[&str]) -> Sim {
    Sim::builder()
        .args(&["--dialect", dialect])
        .args(extra)
        .envs(&fast_sim_env())
        .start()
        .await
}

fn opts() -> ClientOptions {
    ClientOptions {
        rpc_timeout: Duration::from_secs(5),
        first_token_timeout: Duration::from_secs(5),
        stall_timeout: Duration::from_secs(5),
        idle_finish: Duration::from_millis(300),
        ..Default::default()
    }
}

fn workspace(sim: &Sim) -> std::path::PathBuf {
    let ws = sim.dir.join("workspace");
    std::fs::create_dir_all(&ws).unwrap();
    ws
}

async fn connect(sim: &Sim, o: ClientOptions) -> LingmaClient {
    LingmaClient::connect(&sim.ws_url(), &workspace(sim), o)
        .await
        .unwrap()
}

fn ask(q: &str) -> ChatRequest {
    ChatRequest {
        question: q.into(),
        ..Default::default()
    }
}

/// Collects all events: the answer deltas, the reasoning, and the outcome.
async fn run(
    client: &LingmaClient,
    req: ChatRequest,
) -> (Vec<String>, String, Result<ChatFinish, ChatError>) {
    let stream = client.chat(req).await;
    let mut stream = match stream {
        Ok(s) => s,
        Err(e) => return (Vec::new(), String::new(), Err(e)),
    };
    let mut deltas = Vec::new();
    let mut reasoning = String::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(ChatEvent::Answer(t)) => deltas.push(t),
            Ok(ChatEvent::Reasoning(t)) => reasoning.push_str(&t),
            Ok(ChatEvent::Replace(t)) => deltas.push(format!("<replace:{t}>")),
            Ok(ChatEvent::Finished(f)) => return (deltas, reasoning, Ok(f)),
            Err(e) => return (deltas, reasoning, Err(e)),
        }
    }
    panic!("stream ended without finish or error");
}

fn methods_sent(sim: &Sim) -> Vec<String> {
    sim.requests()
        .into_iter()
        .filter_map(|r| r["method"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn an_acp_answer_is_built_from_its_chunks_with_thinking_as_reasoning() {
    let sim = start_sim("acp", &[]).await;
    let client = connect(&sim, opts()).await;
    assert_eq!(client.server_version(), "0.7.1");
    assert!(client.auth_status().await.unwrap().logged_in());
    assert!(!client.query_models().await.unwrap().is_empty());

    let (deltas, reasoning, fin) = run(
        &client,
        ChatRequest {
            question: "Reply with exactly: the quick brown fox jumps".into(),
            model: Some("dashscope_qwen_plus_20250428_thinking".into()),
            ..Default::default()
        },
    )
    .await;
    let fin = fin.unwrap();
    assert_eq!(client.dialect(), Some(Dialect::Acp));
    assert!(deltas.len() > 1, "streamed in several chunks: {deltas:?}");
    // The simulator's chat_finish carries an empty fullAnswer, as the real runtime's did: the
    // answer can only have come from the chunks.
    assert_eq!(deltas.concat(), "the quick brown fox jumps");
    assert_eq!(fin.answer, "the quick brown fox jumps");
    assert!(reasoning.contains("I will answer exactly"), "{reasoning:?}");
    assert_eq!(fin.reasoning, reasoning);
    assert_eq!((fin.ended_by, fin.status_code), (EndedBy::Finish, 200));
    let ctx = fin.context.expect("context_usage reported");
    assert!(
        ctx.used_tokens > 0 && ctx.limit_tokens > ctx.used_tokens,
        "{ctx:?}"
    );

    // What went on the wire: a session, its model, a prompt with the request id in _meta; no
    // chat/ask (this runtime would refuse it).
    let sent = methods_sent(&sim);
    assert!(!sent.iter().any(|m| m == "chat/ask"), "{sent:?}");
    let new = sim.requests_for("session/new");
    assert_eq!(new.len(), 1, "{sent:?}");
    assert!(
        new[0]["params"]["cwd"]
            .as_str()
            .unwrap()
            .ends_with("workspace")
    );
    assert_eq!(new[0]["params"]["mcpServers"], serde_json::json!([]));
    let set = sim.requests_for("session/set_model");
    assert_eq!(
        set[0]["params"]["modelId"],
        "dashscope_qwen_plus_20250428_thinking"
    );
    let prompt = &sim.requests_for("session/prompt")[0]["params"];
    assert_eq!(prompt["sessionId"], fin.session_id.as_str());
    assert_eq!(
        prompt["_meta"]["ai-coding/request-id"],
        fin.request_id.as_str()
    );
    assert_eq!(prompt["_meta"]["ai-coding/mode"], "chat");

    // A follow-up in the same session goes to that session, with no new one.
    let (_, _, fin2) = run(
        &client,
        ChatRequest {
            question: "second turn".into(),
            session_id: Some(fin.session_id.clone()),
            ..Default::default()
        },
    )
    .await;
    let fin2 = fin2.unwrap();
    assert_eq!(fin2.answer, "echo: second turn");
    assert_eq!(fin2.session_id, fin.session_id);
    assert_eq!(sim.requests_for("session/new").len(), 1);
    let a = asks(&sim.dir);
    assert_eq!(a[1]["sessionId"], fin.session_id.as_str());
}

#[tokio::test]
async fn several_prompts_at_once_on_one_connection_each_get_their_own_answer() {
    let sim = start_sim("acp", &[]).await;
    let client = connect(&sim, opts()).await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            // Paced so that the four streams interleave on the connection.
            let q = format!("[[sim:delay=5,chunk=2]] Reply with exactly: answer number {i} here");
            let (_, _, fin) = run(&c, ask(&q)).await;
            (i, fin.unwrap())
        }));
    }
    let mut sessions = std::collections::HashSet::new();
    for t in tasks {
        let (i, fin) = t.await.unwrap();
        assert_eq!(fin.answer, format!("answer number {i} here"));
        sessions.insert(fin.session_id);
    }
    assert_eq!(sessions.len(), 4, "one session per prompt");
    // One connection carried them all (plus none other).
    let conns: std::collections::HashSet<u64> = sim
        .requests_for("session/prompt")
        .iter()
        .filter_map(|r| r["conn"].as_u64())
        .collect();
    assert_eq!(conns.len(), 1);
}

#[tokio::test]
async fn a_reader_that_stays_behind_is_cut_off_and_the_others_go_on() {
    let sim = start_sim("acp", &[]).await;
    let client = connect(
        &sim,
        ClientOptions {
            lag_limit: Duration::from_millis(300),
            ..opts()
        },
    )
    .await;
    // Far more updates than a route's channel holds, and nobody reads them.
    let mut stalled = client
        .chat(ask("[[sim:len=400,chunk=1,delay=0]] flood"))
        .await
        .unwrap();
    // Meanwhile another prompt on the same connection is answered in full.
    let (_, _, fin) = run(
        &client,
        ask("[[sim:slow=100]] Reply with exactly: still here"),
    )
    .await;
    assert_eq!(fin.unwrap().answer, "still here");
    // The stalled one learns what happened once it reads.
    let mut outcome = None;
    while let Some(ev) = stalled.next().await {
        if let Err(e) = ev {
            outcome = Some(e);
            break;
        }
    }
    assert!(
        matches!(outcome, Some(ChatError::Rpc(RpcError::Lagged { .. }))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_slow_reader_alone_on_its_connection_gets_backpressure_not_cut_off() {
    let sim = start_sim("acp", &[]).await;
    let client = connect(
        &sim,
        ClientOptions {
            lag_limit: Duration::from_millis(100),
            ..opts()
        },
    )
    .await;
    let mut stream = client
        .chat(ask("[[sim:len=400,chunk=1,delay=0]] flood"))
        .await
        .unwrap();
    // The behaviour under test: a consumer that reads nothing for several lag limits while its
    // channel is full. With no one else on the connection, nothing is cut off.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut text = String::new();
    let fin = loop {
        match stream.next().await.expect("a finish") {
            Ok(ChatEvent::Answer(t)) => text.push_str(&t),
            Ok(ChatEvent::Finished(f)) => break f,
            Ok(_) => {}
            Err(e) => panic!("cut off although alone: {e}"),
        }
    };
    assert_eq!(text, fin.answer);
    assert!(
        text.starts_with("w1 w2 ") && text.ends_with(" w400"),
        "{text}"
    );
}

#[tokio::test]
async fn stop_deletes_the_session_and_the_answer_ends_cancelled() {
    let sim = start_sim("acp", &[]).await;
    let client = connect(&sim, opts()).await;
    let mut stream = client
        .chat(ask("[[sim:len=2000,delay=5]] long"))
        .await
        .unwrap();
    // Stop once the answer has begun.
    loop {
        if let ChatEvent::Answer(_) = stream.next().await.unwrap().unwrap() {
            break;
        }
    }
    stream.stop().await.unwrap();
    let fin = loop {
        match stream.next().await.expect("a finish").expect("no error") {
            ChatEvent::Finished(f) => break f,
            _ => continue,
        }
    };
    assert_eq!(fin.reason, "cancelled");
    let stops = stop_requests(&sim.dir);
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0]["params"]["sessionId"], fin.session_id.as_str());
    // The connection takes the next prompt at once.
    let (_, _, next) = run(&client, ask("Reply with exactly: next")).await;
    assert_eq!(next.unwrap().answer, "next");
}

#[tokio::test]
async fn a_runtime_that_wants_id_gets_the_retry_and_dropping_a_stream_stops_it() {
    let sim = start_sim("acp", &["--delete-needs-id"]).await;
    let client = connect(&sim, opts()).await;
    let mut stream = client
        .chat(ask("[[sim:len=2000,delay=5]] long"))
        .await
        .unwrap();
    let _ = stream.next().await;
    let session = stream.session_id().to_string();
    drop(stream);
    let deleted = common::wait_until_async(Duration::from_secs(5), || async {
        sim.requests_for("chat/deleteSessionById")
            .iter()
            .any(|r| r["params"]["id"] == session.as_str())
    })
    .await;
    assert!(
        deleted,
        "the abandoned prompt's session was deleted with {{id}}"
    );
    let tried: Vec<_> = sim
        .requests_for("chat/deleteSessionById")
        .into_iter()
        .map(|r| r["params"].clone())
        .collect();
    assert_eq!(tried[0]["sessionId"], session.as_str(), "{tried:?}");
    // The simulator ended that prompt: the session takes no more updates.
    let (_, _, fin) = run(&client, ask("Reply with exactly: after")).await;
    assert_eq!(fin.unwrap().answer, "after");
}

#[tokio::test]
async fn the_prompt_reply_may_come_early_late_or_never() {
    let sim = start_sim("acp", &[]).await;
    let client = connect(&sim, opts()).await;
    for when in ["early", "late", "none"] {
        let q = format!("[[sim:prompt-reply={when}]] Reply with exactly: {when}");
        let (_, _, fin) = run(&client, ask(&q)).await;
        assert_eq!(fin.unwrap().answer, when);
    }
}

#[tokio::test]
async fn acp_errors_timeouts_and_the_idle_gap() {
    let sim = start_sim("acp", &[]).await;
    let client = connect(&sim, opts()).await;
    let (_, _, fin) = run(&client, ask("[[sim:error=500]] x")).await;
    assert!(
        matches!(
            fin,
            Err(ChatError::Upstream {
                status_code: 500,
                ..
            })
        ),
        "{fin:?}"
    );
    let (_, _, fin) = run(&client, ask("[[sim:error=408]] x")).await;
    assert!(
        matches!(
            fin,
            Err(ChatError::Upstream {
                status_code: 408,
                ..
            })
        ),
        "{fin:?}"
    );
    // No chat_finish: the legacy step_end that also arrives, then silence, ends the turn.
    let (deltas, _, fin) = run(&client, ask("[[sim:no-finish]] Reply with exactly: quiet")).await;
    let fin = fin.unwrap();
    assert_eq!(
        (fin.ended_by, deltas.concat()),
        (EndedBy::IdleGap, "quiet".into())
    );
    let quick = ClientOptions {
        first_token_timeout: Duration::from_millis(300),
        ..opts()
    };
    let client = connect(&sim, quick).await;
    let (_, _, fin) = run(&client, ask("[[sim:hang]] x")).await;
    assert!(matches!(fin, Err(ChatError::Timeout { .. })), "{fin:?}");
}

#[tokio::test]
async fn a_logged_out_acp_runtime_refuses_the_prompt() {
    let sim = start_sim("acp", &["--logged-out"]).await;
    let client = connect(&sim, opts()).await;
    let (_, _, fin) = run(&client, ask("hi")).await;
    assert!(matches!(fin, Err(ChatError::NotLoggedIn)), "{fin:?}");
}

#[tokio::test]
async fn detection_tries_session_new_once_and_remembers() {
    // A legacy runtime: session/new is "method not found", so chat/ask it is, from then on.
    let legacy = start_sim("legacy", &[]).await;
    let client = connect(&legacy, opts()).await;
    assert_eq!(client.server_version(), "2.11.1");
    assert_eq!(client.dialect(), None);
    for i in 0..2 {
        let (_, _, fin) = run(&client, ask(&format!("Reply with exactly: l{i}"))).await;
        assert_eq!(fin.unwrap().answer, format!("l{i}"));
    }
    assert_eq!(client.dialect(), Some(Dialect::Legacy));
    assert_eq!(legacy.requests_for("session/new").len(), 1);
    assert_eq!(legacy.requests_for("chat/ask").len(), 2);

    // A runtime that speaks both: the probe finds ACP and deletes its throwaway session.
    let both = start_sim("both", &[]).await;
    let client = connect(&both, opts()).await;
    assert_eq!(client.detect_dialect().await.unwrap(), Dialect::Acp);
    let probe = both.requests_for("session/new");
    assert_eq!(probe.len(), 1);
    assert_eq!(both.requests_for("chat/deleteSessionById").len(), 1);
    let (_, _, fin) = run(&client, ask("Reply with exactly: b")).await;
    assert_eq!(fin.unwrap().answer, "b");
    assert!(both.requests_for("chat/ask").is_empty());

    // Forced legacy on the same runtime: no probe, chat/ask.
    let forced = ClientOptions {
        dialect: DialectChoice::Fixed(Dialect::Legacy),
        ..opts()
    };
    let client = connect(&both, forced).await;
    assert_eq!(client.dialect(), Some(Dialect::Legacy));
    let (_, _, fin) = run(&client, ask("Reply with exactly: forced")).await;
    assert_eq!(fin.unwrap().answer, "forced");
    assert_eq!(both.requests_for("chat/ask").len(), 1);
    assert_eq!(
        both.requests_for("session/new").len(),
        2,
        "only the earlier ones"
    );

    // Forced ACP on a legacy runtime: a clear refusal, not a hang.
    let wrong = ClientOptions {
        dialect: DialectChoice::Fixed(Dialect::Acp),
        ..opts()
    };
    let client = connect(&legacy, wrong).await;
    let (_, _, fin) = run(&client, ask("hi")).await;
    let err = fin.unwrap_err().to_string();
    assert!(err.contains("does not speak the ACP dialect"), "{err}");
}

#[tokio::test]
async fn the_acp_dialect_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("lingma.sock");
    let sim = start_sim("acp", &["--ipc-socket", sock.to_str().unwrap()]).await;
    assert!(sim.stderr().contains(&format!("IPC: {}", sock.display())));
    let client = LingmaClient::open(&Endpoint::Unix(sock.clone()), &workspace(&sim), opts())
        .await
        .unwrap();
    assert!(client.auth_status().await.unwrap().logged_in());
    let (_, _, fin) = run(&client, ask("Reply with exactly: over the socket")).await;
    assert_eq!(fin.unwrap().answer, "over the socket");
    // Its connection is told apart from WebSocket ones only by its number.
    assert!(sim.log_text().contains("ipc connection"));
    sim.stop().await;
    assert!(!sock.exists(), "the socket file goes with a clean exit");
}

#[tokio::test]
async fn events_taken_without_waiting_are_the_same_and_nothing_is_made_up() {
    let sim = start_sim("acp", &[]).await;
    let client = connect(&sim, opts()).await;
    let q = "[[sim:chunk=3]] Reply with exactly: one two three four five six seven eight";
    let (waited, _, fin) = run(&client, ask(q)).await;
    assert_eq!(fin.unwrap().ended_by, EndedBy::Finish);

    // The same answer read the way the turn engine reads it: what is there first, then waiting.
    let mut stream = client.chat(ask(q)).await.unwrap();
    let mut taken = Vec::new();
    let finish = loop {
        let ev = match stream.try_next() {
            Poll::Ready(ev) => ev,
            Poll::Pending => stream.next().await,
        };
        match ev.expect("the stream ended without a finish").unwrap() {
            ChatEvent::Answer(t) => taken.push(t),
            ChatEvent::Finished(f) => break f,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(
        (taken.concat(), finish.ended_by),
        (waited.concat(), EndedBy::Finish)
    );
    assert!(matches!(stream.try_next(), Poll::Ready(None)));

    // A turn without chat_finish: once its words are read, what still arrives (step_end, the
    // legacy snapshot) is no event, so nothing is ready until the idle gap would end it.
    let patient = ClientOptions {
        idle_finish: Duration::from_secs(60),
        ..opts()
    };
    let client = connect(&sim, patient).await;
    let mut stream = client
        .chat(ask("[[sim:no-finish]] Reply with exactly: quiet words"))
        .await
        .unwrap();
    let mut text = String::new();
    while text != "quiet words" {
        match stream.next().await.unwrap().unwrap() {
            ChatEvent::Answer(t) => text.push_str(&t),
            other => panic!("unexpected {other:?} before the words were read"),
        }
    }
    loop {
        match stream.try_next() {
            Poll::Pending => break,
            Poll::Ready(Some(Ok(ChatEvent::Answer(t)))) if t.is_empty() => {}
            other => panic!("nothing but empty deltas may be ready: {other:?}"),
        }
    }
}
