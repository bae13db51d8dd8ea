//! Building Lingma's single `questionText` from an OpenAI-style conversation.
//!
//! Lingma's `chat/ask` takes one text; callers flatten history into it. This is
//! the one place where that flattening happens, so the gateway and the terminal `chat` command send
//! the same thing. The gateway's schema converts OpenAI messages into [`Message`] first, which keeps
//! this module free of HTTP types.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    fn label(self) -> &'static str {
        match self {
            Role::System => "System",
            Role::User => "User",
            Role::Assistant => "Assistant",
            Role::Tool => "Tool result",
        }
    }
}

/// One turn of a conversation, already reduced to text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// For tool results: the id of the call they answer.
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_call_id: None,
        }
    }
}

/// The question text for a whole conversation sent in a fresh upstream session.
///
/// A lone user message (optionally after system messages) is sent without labels when there are no
/// system messages, so that `chat "hi"` sends exactly `hi`. Anything longer is flattened into labelled
/// blocks, ending with the last user turn, which the model is expected to answer.
pub fn build_question(messages: &[Message]) -> String {
    if let [only] = messages
        && only.role == Role::User
    {
        return only.content.clone();
    }
    let mut out = String::new();
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push_str("\n\n");
        }
        match (&m.role, &m.tool_call_id) {
            (Role::Tool, Some(id)) => {
                let _ = write!(out, "[{} ({id})]\n{}", m.role.label(), m.content);
            }
            _ => {
                let _ = write!(out, "[{}]\n{}", m.role.label(), m.content);
            }
        }
    }
    out
}

/// The question text for a turn that continues an upstream session which already holds the
/// history: only the messages after that history are sent (normally one user message).
pub fn build_follow_up(new_messages: &[Message]) -> String {
    if let [only] = new_messages
        && only.role == Role::User
    {
        return only.content.clone();
    }
    build_question(new_messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_user_message_is_sent_verbatim() {
        assert_eq!(build_question(&[Message::new(Role::User, "hi")]), "hi");
    }

    #[test]
    fn conversation_is_labelled_in_order() {
        let msgs = [
            Message::new(Role::System, "be terse"),
            Message::new(Role::User, "2+2?"),
            Message::new(Role::Assistant, "4"),
            Message {
                role: Role::Tool,
                content: "{\"ok\":true}".into(),
                tool_call_id: Some("call_1".into()),
            },
            Message::new(Role::User, "and 3+3?"),
        ];
        assert_eq!(
            build_question(&msgs),
            "[System]\nbe terse\n\n[User]\n2+2?\n\n[Assistant]\n4\n\n[Tool result (call_1)]\n{\"ok\":true}\n\n[User]\nand 3+3?"
        );
    }

    #[test]
    fn system_plus_user_keeps_labels() {
        let msgs = [
            Message::new(Role::System, "s"),
            Message::new(Role::User, "u"),
        ];
        assert_eq!(build_question(&msgs), "[System]\ns\n\n[User]\nu");
    }

    #[test]
    fn follow_up_sends_only_new_turn() {
        assert_eq!(build_follow_up(&[Message::new(Role::User, "next")]), "next");
        let two = [
            Message {
                role: Role::Tool,
                content: "42".into(),
                tool_call_id: None,
            },
            Message::new(Role::User, "go on"),
        ];
        assert_eq!(build_follow_up(&two), "[Tool result]\n42\n\n[User]\ngo on");
    }
}
