//! The fuzz targets of `fuzz/` (chat request parser and validation, prompt builder), as property
//! tests that CI runs on stable: fewer cases than a fuzzer, same invariants. The frame decoder's
//! properties live next to it (`src/lingma/frame.rs`). Run the real fuzzers with
//! `cargo +nightly fuzz run chat_request` (see docs/benchmark.md).

use lingma_gw::gateway::openai::request::{ChatCompletionRequest, to_turn};
use lingma_gw::turn::prompt::{HistoryStyle, build_follow_up, build_question};
use lingma_gw::turn::usage::estimate_prompt_tokens;
use lingma_gw::turn::{Message, Role};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Arbitrary JSON, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::hash_map(
                prop_oneof![
                    Just("role".to_string()),
                    Just("content".to_string()),
                    Just("type".to_string()),
                    Just("text".to_string()),
                    "[a-z_]{1,8}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Request-shaped JSON: the real field names with arbitrary values.
fn request_like() -> impl Strategy<Value = Value> {
    let role = prop_oneof![
        Just(json!("user")),
        Just(json!("system")),
        Just(json!("assistant")),
        Just(json!("tool")),
        Just(json!("developer")),
        any_json()
    ];
    let message = (role, any_json(), prop::option::of(".{0,8}")).prop_map(|(r, c, id)| {
        let mut m = json!({"role": r, "content": c});
        if let Some(id) = id {
            m["tool_call_id"] = json!(id);
        }
        m
    });
    (
        prop::collection::vec(message, 0..6),
        any_json(),
        any_json(),
        any_json(),
    )
        .prop_map(|(messages, stop, max_tokens, extra)| {
            json!({"model": "auto", "messages": messages, "stop": stop,
                   "max_tokens": max_tokens, "stream": extra})
        })
}

fn role(n: u8) -> Role {
    match n % 4 {
        0 => Role::System,
        1 => Role::User,
        2 => Role::Assistant,
        _ => Role::Tool,
    }
}

/// What the `chat_request` fuzz target checks for one input.
fn check_request_bytes(data: &[u8]) {
    let Ok(req) = serde_json::from_slice::<ChatCompletionRequest>(data) else {
        return;
    };
    if let Ok(chat) = to_turn(req) {
        let messages = &chat.turn.messages;
        assert!(!messages.is_empty());
        let question = build_question(messages, None, HistoryStyle::default());
        let _ = estimate_prompt_tokens(messages);
        let total: usize = messages.iter().map(|m| m.content.len()).sum();
        assert!(question.len() >= total);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn chat_request_never_panics_on_bytes(data in prop::collection::vec(any::<u8>(), 0..256)) {
        check_request_bytes(&data);
    }

    #[test]
    fn chat_request_never_panics_on_json(v in any_json()) {
        check_request_bytes(v.to_string().as_bytes());
    }

    #[test]
    fn chat_request_never_panics_on_request_shapes(v in request_like()) {
        check_request_bytes(v.to_string().as_bytes());
    }

    #[test]
    fn prompt_keeps_every_message_in_order(
        turns in prop::collection::vec((any::<u8>(), ".{0,24}", prop::option::of(".{0,6}")), 0..8)
    ) {
        let messages: Vec<Message> = turns
            .into_iter()
            .map(|(r, content, tool_call_id)| Message {
                role: role(r),
                content,
                tool_call_id,
                ..Message::default()
            })
            .collect();
        let style = HistoryStyle::default();
        let question = build_question(&messages, None, style);
        let follow_up = build_follow_up(&messages, style);
        if let [only] = &messages[..] && only.role == Role::User {
            prop_assert_eq!(&question, &only.content);
            prop_assert_eq!(&follow_up, &only.content);
        }
        // System text first (wherever it stood), then the conversation, each in order; a
        // follow-up keeps the order as it is.
        let system_first: Vec<&Message> = messages
            .iter()
            .filter(|m| m.role == Role::System)
            .chain(messages.iter().filter(|m| m.role != Role::System))
            .collect();
        for (text, order) in [(&question, system_first), (&follow_up, messages.iter().collect())] {
            let mut at = 0;
            for m in order {
                let found = text[at..].find(m.content.as_str());
                prop_assert!(found.is_some(), "{:?} missing after byte {}", m.content, at);
                at += found.unwrap_or(0) + m.content.len();
            }
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for depth in [1_000, 100_000] {
        let body = format!(
            r#"{{"messages":{}}}"#,
            "[".repeat(depth) + &"]".repeat(depth)
        );
        assert!(serde_json::from_str::<ChatCompletionRequest>(&body).is_err());
    }
}
