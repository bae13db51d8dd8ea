//! The typed Lingma client against `lingma-gw sim` running as a separate process: a full session,
//! and every fault mode ending in the error or event the client promises. These are the legacy
//! dialect's (`chat/ask`) quirks, so the simulator speaks only that dialect here (the client finds
//! that out itself); tests/acp.rs covers the ACP dialect.

mod common;

use std::time::Duration;

use common::{Sim, asks, fast_sim_env, wait_until_async};
use lingma_gw::lingma::{
    ChatError, ChatEvent, ChatFinish, ChatRequest, ClientOptions, EndedBy, LingmaClient,
};

/// A legacy simulator in a fresh temp dir that paces its answers a little (`fast_sim_env`).
async fn start_sim(extra: &[&str]) -> Sim {
    Sim::builder()
        .args(&["--dialect", "legacy"])
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

async fn connect(sim: &Sim, o: ClientOptions) -> LingmaClient {
    let ws = sim.dir.join("workspace");
    std::fs::create_dir_all(&ws).unwrap();
    LingmaClient::connect(&sim.ws_url(), &ws, o).await.unwrap()
}

fn ask(q: &str) -> ChatRequest {
    ChatRequest {
        question: q.into(),
        ..Default::default()
    }
}

/// Collects all events; returns the answer deltas, reasoning deltas and the outcome.
async fn run(
    client: &LingmaClient,
    req: ChatRequest,
) -> (Vec<String>, String, Result<ChatFinish, ChatError>) {
    let mut stream = client.chat(req).await.expect("ask accepted");
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

#[tokio::test]
async fn full_session_initialize_status_models_chat_follow_up() {
    let sim = start_sim(&[]).await;
    let client = connect(&sim, opts()).await;
    assert_eq!(client.server_version(), "2.11.1");
    client.ping().await.unwrap();
    let auth = client.auth_status().await.unwrap();
    assert!(auth.logged_in(), "{auth:?}");
    assert_eq!(auth.name, "demo");
    let models = client.query_models().await.unwrap();
    assert!(models.get("dashscope_qwen3_coder").is_some());
    assert!(models.registry_default().is_some());

    let (deltas, _, fin) = run(
        &client,
        ask("Reply with exactly: the quick brown fox jumps"),
    )
    .await;
    let fin = fin.unwrap();
    assert!(
        deltas.len() > 1,
        "answer should stream in several deltas: {deltas:?}"
    );
    assert_eq!(deltas.concat(), "the quick brown fox jumps");
    assert_eq!(fin.answer, "the quick brown fox jumps");
    assert_eq!(fin.ended_by, EndedBy::Finish);
    assert_eq!(fin.status_code, 200);
    assert!(!fin.session_id.is_empty());

    // A follow-up in the same session: the simulator records it under the same sessionId.
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
    assert_eq!(fin2.session_id, fin.session_id);
    assert_eq!(fin2.answer, "echo: second turn");
    let asks = asks(&sim.dir);
    assert_eq!(asks.len(), 2);
    assert_eq!(asks[1]["sessionId"], fin.session_id.as_str());
    assert_eq!(asks[1]["questionText"], "second turn");

    // Every callback the simulator sent with an id was acknowledged.
    let acks = sim
        .requests()
        .into_iter()
        .filter(|r| r.get("method").is_none() || r["method"].is_null())
        .count();
    assert!(acks >= 8, "callbacks must be acked, saw {acks} replies");
}

#[tokio::test]
async fn strict_ack_mode_streams_because_we_ack() {
    let sim = start_sim(&["--strict-acks"]).await;
    let client = connect(&sim, opts()).await;
    let (_, _, fin) = run(&client, ask("Reply with exactly: acked")).await;
    assert_eq!(fin.unwrap().answer, "acked");
}

#[tokio::test]
async fn logged_out_status_models_and_chat() {
    let sim = start_sim(&["--logged-out"]).await;
    let client = connect(&sim, opts()).await;
    let auth = client.auth_status().await.unwrap();
    assert_eq!(auth.status, 1);
    assert_eq!(auth.status_name(), "not_logged_in");
    assert!(client.query_models().await.unwrap().is_empty());
    let err = client.chat(ask("hi")).await.err().expect("must fail");
    assert!(matches!(err, ChatError::NotLoggedIn), "{err:?}");
}

#[tokio::test]
async fn stop_mid_stream_ends_cancelled() {
    let sim = start_sim(&[]).await;
    let client = connect(&sim, opts()).await;
    let mut stream = client
        .chat(ask("[[sim:len=400,delay=20]] long"))
        .await
        .unwrap();
    let mut got = 0;
    let fin = loop {
        match stream.next().await.unwrap().unwrap() {
            ChatEvent::Answer(_) => {
                got += 1;
                if got == 3 {
                    stream.stop().await.unwrap();
                }
            }
            ChatEvent::Finished(f) => break f,
            _ => {}
        }
    };
    assert_eq!(fin.reason, "cancelled");
    assert!(fin.answer.split_whitespace().count() < 400);
    assert!(sim.requests().iter().any(|r| r["method"] == "chat/stop"));
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_a_stream_sends_stop() {
    let sim = start_sim(&[]).await;
    let client = connect(&sim, opts()).await;
    let mut stream = client
        .chat(ask("[[sim:len=400,delay=20]] long"))
        .await
        .unwrap();
    let _ = stream.next().await;
    drop(stream);
    assert!(
        wait_until_async(Duration::from_secs(5), || async {
            sim.requests().iter().any(|r| r["method"] == "chat/stop")
        })
        .await
    );
}

#[tokio::test]
async fn crash_mid_stream_is_a_connection_error() {
    let mut sim = start_sim(&[]).await;
    let client = connect(&sim, opts()).await;
    let (deltas, _, out) = run(
        &client,
        ask("[[sim:crash,after=2]] Reply with exactly: a b c d e f g h i j k l"),
    )
    .await;
    assert!(matches!(out, Err(ChatError::ConnectionLost)), "{out:?}");
    assert!(!deltas.is_empty());
    let status = sim
        .wait_exit_within(Duration::from_secs(5))
        .await
        .expect("sim exited");
    assert_eq!(status.code(), Some(101));
    // Later calls fail at once with a typed error rather than hanging.
    assert!(client.ping().await.is_err());
}

#[tokio::test]
async fn close_mid_stream_is_a_connection_error() {
    let sim = start_sim(&[]).await;
    let client = connect(&sim, opts()).await;
    let (_, _, out) = run(
        &client,
        ask("[[sim:close,after=1]] Reply with exactly: one two three four five"),
    )
    .await;
    assert!(matches!(out, Err(ChatError::ConnectionLost)), "{out:?}");
}

#[tokio::test]
async fn error_finish_carries_the_status() {
    let sim = start_sim(&[]).await;
    let client = connect(&sim, opts()).await;
    for code in [500, 408] {
        let (_, _, out) = run(&client, ask(&format!("[[sim:error={code}]] hi"))).await;
        match out {
            Err(ChatError::Upstream { status_code, .. }) => assert_eq!(status_code, code),
            other => panic!("expected upstream error {code}, got {other:?}"),
        }
    }
    let (_, _, out) = run(&client, ask("[[sim:quota]] hi")).await;
    match out {
        Err(ChatError::Upstream { reason, .. }) => {
            assert!(reason.to_lowercase().contains("quota"), "{reason}")
        }
        other => panic!("expected quota error, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_model_finishes_with_an_error() {
    let sim = start_sim(&[]).await;
    let client = connect(&sim, opts()).await;
    let (_, _, out) = run(
        &client,
        ChatRequest {
            question: "hi".into(),
            model: Some("no_such_model".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(
        matches!(
            out,
            Err(ChatError::Upstream {
                status_code: 500,
                ..
            })
        ),
        "{out:?}"
    );
}

#[tokio::test]
async fn never_finish_ends_on_the_idle_gap() {
    let sim = start_sim(&[]).await;
    let client = connect(&sim, opts()).await;
    let (deltas, _, out) = run(
        &client,
        ask("[[sim:no-finish]] Reply with exactly: done here"),
    )
    .await;
    let fin = out.unwrap();
    assert_eq!(fin.ended_by, EndedBy::IdleGap);
    assert_eq!(deltas.concat(), "done here");
}

#[tokio::test]
async fn step_end_before_a_slow_answer_is_not_an_empty_turn() {
    // The order captured from Lingma 2.11: step_end first, then the deltas, then nothing.
    let sim = start_sim(&[]).await;
    let client = connect(&sim, opts()).await;
    let (deltas, _, out) = run(
        &client,
        ask("[[sim:step-end-first,no-finish,slow=800]] Reply with exactly: late but whole"),
    )
    .await;
    let fin = out.unwrap();
    assert_eq!(fin.ended_by, EndedBy::IdleGap);
    assert_eq!(deltas.concat(), "late but whole");
}

#[tokio::test(flavor = "multi_thread")]
async fn hang_times_out() {
    let sim = start_sim(&[]).await;
    let client = connect(
        &sim,
        ClientOptions {
            first_token_timeout: Duration::from_millis(400),
            ..opts()
        },
    )
    .await;
    let (_, _, out) = run(&client, ask("[[sim:hang]] hi")).await;
    assert!(matches!(out, Err(ChatError::Timeout { .. })), "{out:?}");
    // Lingma may still be working on it: the abandoned ask is stopped.
    assert!(
        wait_until_async(Duration::from_secs(5), || async {
            sim.requests().iter().any(|r| r["method"] == "chat/stop")
        })
        .await
    );
}

#[tokio::test]
async fn slow_first_token_still_answers() {
    let sim = start_sim(&[]).await;
    let client = connect(&sim, opts()).await;
    let started = std::time::Instant::now();
    let (_, _, out) = run(&client, ask("[[sim:slow=300]] Reply with exactly: late")).await;
    assert_eq!(out.unwrap().answer, "late");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn overwrite_and_retry_give_the_right_text_once() {
    let sim = start_sim(&[]).await;
    let client = connect(&sim, opts()).await;
    for fault in ["overwrite", "retry"] {
        let text = "alpha beta gamma delta epsilon zeta eta theta";
        let (deltas, _, out) = run(
            &client,
            ask(&format!(
                "[[sim:{fault},after=2]] Reply with exactly: {text}"
            )),
        )
        .await;
        let fin = out.unwrap();
        assert_eq!(fin.answer, text, "{fault}");
        assert_eq!(
            deltas.concat(),
            text,
            "{fault}: streamed text must not repeat: {deltas:?}"
        );
    }
    // Legitimate repetition of the answer's start is delayed at most, never dropped.
    for text in ["ab ab ab ab", "abc abc", "x"] {
        let (deltas, _, out) = run(
            &client,
            ask(&format!("[[sim:chunk=3]] Reply with exactly: {text}")),
        )
        .await;
        assert_eq!(out.unwrap().answer, text);
        assert_eq!(deltas.concat(), text);
    }
}

#[tokio::test]
async fn split_and_batched_frames_are_decoded() {
    let sim = start_sim(&[]).await;
    let client = connect(&sim, opts()).await;
    for fault in ["split", "batch"] {
        let (_, _, out) = run(
            &client,
            ask(&format!(
                "[[sim:{fault}]] Reply with exactly: framed {fault}"
            )),
        )
        .await;
        assert_eq!(out.unwrap().answer, format!("framed {fault}"));
    }
}

#[tokio::test]
async fn reasoning_is_split_from_the_answer() {
    let sim = start_sim(&[]).await;
    let client = connect(&sim, opts()).await;
    for style in ["", "[[sim:think=callback]] "] {
        let (deltas, reasoning, out) = run(
            &client,
            ChatRequest {
                question: format!("{style}Reply with exactly: forty-two"),
                model: Some("dashscope_qwen_plus_20250428_thinking".into()),
                ..Default::default()
            },
        )
        .await;
        let fin = out.unwrap();
        assert_eq!(fin.answer, "forty-two", "style {style:?}");
        assert_eq!(deltas.concat(), "forty-two");
        assert!(!reasoning.is_empty(), "reasoning expected for {style:?}");
        assert!(!reasoning.contains("think::"));
    }
}

#[tokio::test]
async fn off_by_one_quirk_and_its_workaround() {
    let sim = start_sim(&["--off-by-one"]).await;
    // Without the workaround the first answer is the (empty) previous one.
    let plain = connect(&sim, opts()).await;
    let (_, _, out) = run(&plain, ask("Reply with exactly: first")).await;
    assert_ne!(out.unwrap().answer, "first");
    // With it, the trigger ask carries the real answer.
    let fixed = connect(
        &sim,
        ClientOptions {
            off_by_one_workaround: true,
            ..opts()
        },
    )
    .await;
    let (_, _, out) = run(&fixed, ask("Reply with exactly: second")).await;
    assert_eq!(out.unwrap().answer, "second");
    let asks = asks(&sim.dir);
    let trigger = asks.last().unwrap();
    assert_eq!(trigger["isReply"], true);
    assert_eq!(trigger["questionText"], "OK");
}

#[tokio::test]
async fn busy_connection_is_a_typed_error() {
    let sim = start_sim(&[]).await;
    let client = connect(&sim, opts()).await;
    let _first = client
        .chat(ask("[[sim:len=200,delay=20]] long"))
        .await
        .unwrap();
    let second = client.chat(ask("again")).await;
    assert!(matches!(second, Err(ChatError::Busy)), "{:?}", second.err());
}

#[tokio::test]
async fn login_flow_over_rpc() {
    let sim = start_sim(&["--logged-out"]).await;
    let client = connect(&sim, opts()).await;
    let login = client.login_url().await.unwrap();
    assert!(
        login.url.contains(&format!("port={}", sim.http_port)),
        "{}",
        login.url
    );
    let nonce = login.nonce.clone().expect("nonce");
    // A wrong nonce is refused; the real one logs in.
    assert!(client.auth_callback("bogus", "YQ==", "YQ==").await.is_err());
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    client
        .auth_callback(
            &nonce,
            &b64("uid-1\naid-1\nAlice"),
            &b64("pt-abc\nrt-def\n4102444800000"),
        )
        .await
        .unwrap();
    let auth = client.auth_status().await.unwrap();
    assert!(auth.logged_in());
    assert_eq!(auth.name, "Alice");
    client.logout().await.unwrap();
    assert!(!client.auth_status().await.unwrap().logged_in());
    client
        .device_login("pt-x", "rt-y", 4102444800000, "uid-2", "Bob")
        .await
        .unwrap();
    assert_eq!(client.auth_status().await.unwrap().name, "Bob");
}

#[tokio::test]
async fn endpoint_get_and_update() {
    let sim = start_sim(&[]).await;
    let client = connect(&sim, opts()).await;
    client
        .update_endpoint("https://lingma.example.com")
        .await
        .unwrap();
    assert_eq!(
        client.get_endpoint().await.unwrap(),
        "https://lingma.example.com"
    );
}

#[tokio::test]
async fn machine_token_header() {
    let sim = start_sim(&["--machine-token", "tok-1"]).await;
    let ws = sim.dir.join("workspace");
    assert!(
        LingmaClient::connect(&sim.ws_url(), &ws, opts())
            .await
            .is_err()
    );
    let with = ClientOptions {
        machine_token: Some("tok-1".into()),
        ..opts()
    };
    let client = LingmaClient::connect(&sim.ws_url(), &ws, with)
        .await
        .unwrap();
    client.ping().await.unwrap();
}
