//! Fuzzes the chat-completions request body: `serde_json::from_slice::<ChatCompletionRequest>`
//! then `openai::request::to_turn`, and for a valid request what the gateway does next with it
//! (the question text, the prompt token estimate). Nothing may panic; a valid request's messages
//! are never empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lingma_gw::gateway::openai::request::{ChatCompletionRequest, to_turn};
use lingma_gw::turn::prompt::{HistoryStyle, build_question};
use lingma_gw::turn::usage::estimate_prompt_tokens;

fuzz_target!(|data: &[u8]| {
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
});
