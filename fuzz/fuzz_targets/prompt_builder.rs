//! Fuzzes `lingma_gw::prompt::build_question` and `build_follow_up` on arbitrary conversations:
//! nothing may panic, a lone user message is sent verbatim, and every message's text appears in
//! the question in the conversation's order.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lingma_gw::prompt::{Message, Role, build_follow_up, build_question};

#[derive(Debug, Arbitrary)]
struct Turn {
    role: u8,
    content: String,
    tool_call_id: Option<String>,
}

fuzz_target!(|turns: Vec<Turn>| {
    let messages: Vec<Message> = turns
        .into_iter()
        .map(|t| Message {
            role: match t.role % 4 {
                0 => Role::System,
                1 => Role::User,
                2 => Role::Assistant,
                _ => Role::Tool,
            },
            content: t.content,
            tool_call_id: t.tool_call_id,
        })
        .collect();
    let question = build_question(&messages);
    let follow_up = build_follow_up(&messages);
    if let [only] = &messages[..]
        && only.role == Role::User
    {
        assert_eq!(question, only.content);
        assert_eq!(follow_up, only.content);
    } else {
        assert_eq!(question, follow_up);
    }
    let mut at = 0;
    for m in &messages {
        let found = question[at..]
            .find(m.content.as_str())
            .unwrap_or_else(|| panic!("{:?} missing from the question after byte {at}", m.content));
        at += found + m.content.len();
    }
});
