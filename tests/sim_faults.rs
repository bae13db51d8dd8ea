//! Every fault mode of the simulator, observed on the wire: per request through `[[sim:...]]`
//! directives, and per process through flags and `LINGMA_SIM_*` environment variables.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const LONG: &str = "Reply with exactly: abcdefghijklmnopqrstuvwxyz0123456789";
const LONG_ANSWER: &str = "abcdefghijklmnopqrstuvwxyz0123456789";

fn q(directive: &str) -> String {
    format!("{directive} {LONG}")
}

#[tokio::test]
async fn crash_exits_101_after_some_deltas() {
    let mut sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    let r = c
        .call("chat/ask", ask_params("c1", "", &q("[[sim:crash]]")))
        .await;
    assert_eq!(r["result"]["success"], true);
    let stream = c.collect(Duration::from_secs(10), |_| false).await;
    let text = answer_text(&stream);
    assert!(
        !text.is_empty() && text.len() < LONG_ANSWER.len(),
        "{text:?}"
    );
    assert!(!methods(&stream).contains(&"chat/finish".to_string()));
    assert_eq!(sim.wait_exit().await.code(), Some(101));
    assert!(sim.log_text().contains("simulated crash"));
}

#[tokio::test]
async fn process_wide_crash_from_the_environment_after_n_deltas() {
    let mut sim = Sim::builder()
        .args(&["--no-delay"])
        .envs(&[("LINGMA_SIM_CRASH", "1"), ("LINGMA_SIM_FAULT_AFTER", "3")])
        .start()
        .await;
    let mut c = sim.connect().await;
    c.initialize().await;
    c.call("chat/ask", ask_params("c1", "", LONG)).await;
    let stream = c.collect(Duration::from_secs(10), |_| false).await;
    let deltas = stream
        .iter()
        .filter(|m| m["method"] == "chat/answer" && m["params"]["text"] != "")
        .count();
    assert_eq!(deltas, 3);
    let status = sim
        .wait_exit_within(Duration::from_secs(10))
        .await
        .expect("the simulator exits");
    assert_eq!(status.code(), Some(101));
}

#[tokio::test]
async fn close_drops_the_websocket_mid_stream_but_the_process_lives() {
    let mut sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    c.call("chat/ask", ask_params("c1", "", &q("[[sim:close]]")))
        .await;
    let stream = c.collect(Duration::from_secs(10), |_| false).await;
    assert!(!answer_text(&stream).is_empty());
    assert!(!methods(&stream).contains(&"chat/finish".to_string()));
    assert!(sim.child.try_wait().unwrap().is_none());
    let mut c2 = sim.client().await;
    let (_, s) = c2
        .chat(ask_params("c2", "", "Reply with exactly: alive"))
        .await;
    assert_eq!(answer_text(&s), "alive");
    let sid = stream[0]["params"]["sessionId"].clone();
    let sess = c2
        .call("chat/getSessionById", json!({"sessionId": sid}))
        .await;
    assert_eq!(sess["result"]["chatRecords"][0]["reason"], "");
}

#[tokio::test]
async fn no_finish_ends_on_step_end_and_frees_the_connection() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    c.call("chat/ask", ask_params("n1", "", &q("[[sim:no-finish]]")))
        .await;
    let stream = c
        .collect(Duration::from_secs(10), |m| {
            m["params"]["step"] == "step_end"
        })
        .await;
    assert_eq!(answer_text(&stream), LONG_ANSWER);
    assert!(c.recv_within(Duration::from_millis(300)).await.is_none());
    let (r, s) = c
        .chat(ask_params("n2", "", "Reply with exactly: next"))
        .await;
    assert_eq!(r["result"]["success"], true);
    assert_eq!(finish_of(&s)["requestId"], "n2");
}

#[tokio::test]
async fn error_and_quota_finishes() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    for code in [408, 500] {
        let (_, s) = c
            .chat(ask_params("e", "", &format!("[[sim:error={code}]] hi")))
            .await;
        let fin = finish_of(&s);
        assert_eq!(fin["statusCode"], code);
        assert!(fin["reason"].as_str().unwrap().contains(&code.to_string()));
        assert_ne!(fin["reason"], "success");
    }
    let (_, s) = c.chat(ask_params("q", "", "[[sim:quota]] hi")).await;
    let fin = finish_of(&s);
    assert_eq!(fin["statusCode"], 500);
    assert!(fin["reason"].as_str().unwrap().contains("quota exceeded"));
}

#[tokio::test]
async fn process_wide_error_can_be_switched_off_per_request() {
    let sim = Sim::start(&["--error", "408"]).await;
    let mut c = sim.client().await;
    let (_, s) = c.chat(ask_params("a", "", "hi")).await;
    assert_eq!(finish_of(&s)["statusCode"], 408);
    let (_, s) = c.chat(ask_params("b", "", "[[sim:error=off]] hi")).await;
    assert_eq!(finish_of(&s)["statusCode"], 200);
}

#[tokio::test]
async fn slow_first_token_and_inter_chunk_delay() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    let t0 = Instant::now();
    let (_, s) = c
        .chat(ask_params(
            "s",
            "",
            "[[sim:slow=400]] Reply with exactly: x",
        ))
        .await;
    assert!(t0.elapsed() >= Duration::from_millis(400));
    assert_eq!(answer_text(&s), "x");

    c.call(
        "chat/ask",
        ask_params(
            "d",
            "",
            "[[sim:delay=150]] [[sim:chunk=4]] Reply with exactly: 0123456789ab",
        ),
    )
    .await;
    let mut stamps = Vec::new();
    loop {
        let m = c.recv().await;
        c.ack(&m).await;
        if m["method"] == "chat/answer" && m["params"]["text"] != "" {
            // The simulator's own send time: reading times would shrink under machine load.
            stamps.push(m["params"]["timestamp"].as_i64().expect("timestamp"));
        }
        if m["method"] == "chat/finish" {
            break;
        }
    }
    assert_eq!(stamps.len(), 3);
    assert!(stamps[2] - stamps[0] >= 300, "{stamps:?}");
}

#[tokio::test]
async fn overwrite_replaces_the_buffer_with_a_prefix() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    let (_, s) = c.chat(ask_params("o", "", &q("[[sim:overwrite]]"))).await;
    let overwrites: Vec<&Value> = s
        .iter()
        .filter(|m| m["method"] == "chat/answer" && m["params"]["overwrite"] == true)
        .collect();
    assert_eq!(overwrites.len(), 1);
    let t = overwrites[0]["params"]["text"].as_str().unwrap();
    assert!(LONG_ANSWER.starts_with(t) && t.len() > 8, "{t:?}");
    assert_eq!(answer_text(&s), LONG_ANSWER);
    assert_eq!(finish_of(&s)["fullAnswer"], LONG_ANSWER);
}

#[tokio::test]
async fn retry_duplicates_partial_deltas_then_overwrites() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    let (_, s) = c.chat(ask_params("r", "", &q("[[sim:retry]]"))).await;
    assert_eq!(answer_text(&s), LONG_ANSWER);
    let naive = naive_text(&s);
    assert_ne!(
        naive, LONG_ANSWER,
        "a client ignoring overwrite gets it wrong"
    );
    assert!(naive.starts_with(&LONG_ANSWER[..16]));
    assert!(naive.contains(&format!("{}{}", &LONG_ANSWER[..16], &LONG_ANSWER[..8])));
}

#[tokio::test]
async fn off_by_one_answers_arrive_one_ask_late() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    let (_, s1) = c
        .chat(ask_params(
            "a1",
            "",
            "[[sim:off-by-one]] Reply with exactly: one",
        ))
        .await;
    assert_eq!(answer_text(&s1), "");
    let sid = s1[0]["params"]["sessionId"].as_str().unwrap().to_string();
    // The quirk sticks to the conversation: the trigger ask needs no directive.
    let mut trigger = ask_params("a2", &sid, "OK");
    trigger["isReply"] = json!(true);
    let (_, s2) = c.chat(trigger).await;
    assert_eq!(answer_text(&s2), "one");
    assert!(
        s2.iter()
            .filter(|m| m["method"] == "chat/answer")
            .all(|m| m["params"]["requestId"] == "a2")
    );
    assert_eq!(finish_of(&s2)["fullAnswer"], "one");
    let (_, s3) = c
        .chat(ask_params("a3", &sid, "Reply with exactly: three"))
        .await;
    assert_eq!(answer_text(&s3), "echo: OK");
    // Another session is unaffected.
    let (_, other) = c
        .chat(ask_params("b1", "", "Reply with exactly: fine"))
        .await;
    assert_eq!(answer_text(&other), "fine");
}

#[tokio::test]
async fn process_wide_off_by_one_via_faults_list() {
    let sim = Sim::start(&["--faults", "off-by-one"]).await;
    let mut c = sim.client().await;
    let (_, s1) = c
        .chat(ask_params("a1", "s-fixed", "Reply with exactly: one"))
        .await;
    assert_eq!(answer_text(&s1), "");
    let (_, s2) = c
        .chat(ask_params("a2", "s-fixed", "Reply with exactly: two"))
        .await;
    assert_eq!(answer_text(&s2), "one");
}

#[tokio::test]
async fn expired_token_flips_status_to_3_until_refresh() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    let (r, _) = c.chat(ask_params("x1", "", "[[sim:expired]] hi")).await;
    assert_eq!(r["result"]["success"], false);
    assert_eq!(r["result"]["errorCode"], "NOT_LOGIN");
    assert_eq!(
        c.call("auth/status", json!({})).await["result"]["status"],
        3
    );
    let (r, _) = c.chat(ask_params("x2", "", "hi")).await;
    assert_eq!(r["result"]["errorCode"], "NOT_LOGIN");
    let r = c.call("auth/refreshToken", json!({})).await;
    assert_eq!(r["result"]["success"], true);
    assert_eq!(
        c.call("auth/status", json!({})).await["result"]["status"],
        2
    );
    let (r, _) = c.chat(ask_params("x3", "", "hi")).await;
    assert_eq!(r["result"]["success"], true);
}

#[tokio::test]
async fn expired_from_the_environment_at_start() {
    let sim = Sim::builder()
        .args(&["--no-delay"])
        .env("LINGMA_SIM_EXPIRED", "true")
        .start()
        .await;
    let mut c = sim.connect().await;
    c.initialize().await;
    assert_eq!(
        c.call("auth/status", json!({})).await["result"]["status"],
        3
    );
}

#[tokio::test]
async fn split_sends_each_frame_as_two_messages() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    let (m0, f0) = (c.ws_messages, c.frames);
    let (_, s) = c.chat(ask_params("sp", "", &q("[[sim:split]]"))).await;
    assert_eq!(answer_text(&s), LONG_ANSWER);
    // The ask's own response is one message, every stream frame two.
    let frames = c.frames - f0;
    let msgs = c.ws_messages - m0;
    assert_eq!(frames, s.len() + 1);
    assert_eq!(msgs, 2 * s.len() + 1);
}

#[tokio::test]
async fn batch_sends_several_frames_per_message() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    let (m0, f0) = (c.ws_messages, c.frames);
    let (_, s) = c.chat(ask_params("b", "", &q("[[sim:batch]]"))).await;
    assert_eq!(answer_text(&s), LONG_ANSWER);
    let frames = c.frames - f0;
    let msgs = c.ws_messages - m0;
    assert_eq!(frames, s.len() + 1);
    assert!(msgs < frames, "{msgs} messages for {frames} frames");
}

#[tokio::test]
async fn process_wide_batch_joins_initialize_notification_and_response() {
    let sim = Sim::start(&["--batch"]).await;
    let mut c = sim.connect().await;
    c.initialize().await;
    assert_eq!((c.ws_messages, c.frames), (1, 2));
}

#[tokio::test]
async fn hang_sends_nothing_until_stopped() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    let r = c
        .call("chat/ask", ask_params("h", "", "[[sim:hang]] hi"))
        .await;
    assert_eq!(r["result"]["success"], true);
    assert!(c.recv_within(Duration::from_millis(300)).await.is_none());
    c.request("chat/stop", json!({"requestId": "h"})).await;
    let rest = c
        .collect(Duration::from_secs(5), |m| m["method"] == "chat/finish")
        .await;
    assert_eq!(finish_of(&rest)["reason"], "cancelled");
}

#[tokio::test]
async fn strict_acks_stall_the_stream_until_acked() {
    let sim = Sim::start(&["--strict-acks"]).await;
    let mut c = sim.client().await;
    c.auto_ack = false;
    let r = c
        .call("chat/ask", ask_params("k", "", "Reply with exactly: acked"))
        .await;
    assert_eq!(r["result"]["success"], true);
    let first = c.recv().await;
    assert_eq!(first["params"]["step"], "step_start");
    assert!(
        c.recv_within(Duration::from_millis(300)).await.is_none(),
        "stalled"
    );
    c.ack(&first).await;
    let second = c.recv().await;
    assert_eq!(second["method"], "session/title/update");
    c.ack(&second).await;
    let rest = c
        .collect(Duration::from_secs(5), |m| m["method"] == "chat/finish")
        .await;
    assert_eq!(answer_text(&rest), "acked");
}

#[tokio::test]
async fn step_end_first_sends_the_answers_after_step_end() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    let (_, s) = c
        .chat(ask_params(
            "se",
            "",
            "[[sim:step-end-first]] Reply with exactly: pong",
        ))
        .await;
    let m = methods(&s);
    let step_end = s
        .iter()
        .position(|x| x["params"]["step"] == "step_end")
        .unwrap();
    let first_answer = m.iter().position(|x| x == "chat/answer").unwrap();
    assert!(step_end < first_answer, "{m:?}");
    assert_eq!(m.last().unwrap(), "chat/finish");
    assert_eq!(answer_text(&s), "pong");
}

#[tokio::test]
async fn len_directive_and_directives_are_kept_in_the_record() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    let question = "[[sim:len=5]] write";
    let (_, s) = c.chat(ask_params("l", "", question)).await;
    assert_eq!(answer_text(&s), "w1 w2 w3 w4 w5");
    let sid = s[0]["params"]["sessionId"].clone();
    let sess = c
        .call("chat/getSessionById", json!({"sessionId": sid}))
        .await;
    assert_eq!(sess["result"]["chatRecords"][0]["question"], question);
    assert_eq!(sess["result"]["sessionTitle"], "write");
}
