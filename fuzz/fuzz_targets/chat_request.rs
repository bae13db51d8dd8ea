//! Fuzzes the chat-completions request body: `serde_json::from_slice::<ChatCompletionRequest>`
//! then `schema::validate`, and for a valid request what the gateway does next with it (the
//! question text, the prompt token estimate). Nothing may panic; a valid request's messages are
//! never empty; a request that parsed must parse again after serializing it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lingma_gw::gateway::schema::{self, ChatCompletionRequest};
use lingma_gw::gateway::usage::estimate_prompt_tokens;
use lingma_gw::prompt::build_question;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<ChatCompletionRequest>(data) else {
        return;
    };
    if let Ok(text) = serde_json::to_vec(&req) {
        assert!(serde_json::from_slice::<ChatCompletionRequest>(&text).is_ok());
    }
    if let Ok(chat) = schema::validate(&req) {
        assert!(!chat.messages.is_empty());
        let question = build_question(&chat.messages);
        let _ = estimate_prompt_tokens(&chat.messages);
        let total: usize = chat.messages.iter().map(|m| m.content.len()).sum();
        assert!(question.len() >= total);
    }
});
