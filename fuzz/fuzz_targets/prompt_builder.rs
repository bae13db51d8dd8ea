//! Fuzzes `lingma_gw::turn::prompt::build_question` and `build_follow_up` on arbitrary
//! conversations: nothing may panic, a lone user message is sent verbatim, and every message's
//! text appears in the question (system text first, then the conversation, each in order) and in
//! the follow-up (in the conversation's order).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lingma_gw::turn::prompt::{HistoryStyle, build_follow_up, build_question};
use lingma_gw::turn::{Message, Role};

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
            ..Message::default()
        })
        .collect();
    let style = HistoryStyle::default();
    let question = build_question(&messages, None, style);
    let follow_up = build_follow_up(&messages, style);
    if let [only] = &messages[..]
        && only.role == Role::User
    {
        assert_eq!(question, only.content);
        assert_eq!(follow_up, only.content);
    }
    let system_first: Vec<&Message> = messages
        .iter()
        .filter(|m| m.role == Role::System)
        .chain(messages.iter().filter(|m| m.role != Role::System))
        .collect();
    for (text, order) in [(&question, system_first), (&follow_up, messages.iter().collect())] {
        let mut at = 0;
        for m in order {
            let found = text[at..]
                .find(m.content.as_str())
                .unwrap_or_else(|| panic!("{:?} missing after byte {at}", m.content));
            at += found + m.content.len();
        }
    }
});
