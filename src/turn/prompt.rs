//! Lingma's single `questionText`, built from a conversation.
//!
//! Lingma's `chat/ask` takes one text; callers flatten history into it. This is the one place
//! where that flattening happens, so every API surface and the terminal `chat` command send the
//! same thing:
//!
//! * a lone user message with no system text and no tools is sent as it is (`chat "hi"` sends
//!   exactly `hi`);
//! * otherwise labelled blocks: every system message first (wherever the client put it: Claude
//!   Code sends one in the middle of `messages`), then the tool instructions, then the
//!   conversation in order, ending with the turn the model is to answer;
//! * assistant calls are written back in the call syntax the model is asked to use, and tool
//!   results as `<tool_response>` blocks carrying the call's id and tool name;
//! * a follow-up in an upstream session that already holds the history sends only the new
//!   messages (normally the tool results and any new user text).

use std::fmt::Write as _;

use super::tools::{CallSyntax, ToolKind, ToolSet, render};
use super::{Message, Role};

fn label(role: Role) -> &'static str {
    match role {
        Role::System => "System",
        Role::User => "User",
        Role::Assistant => "Assistant",
        Role::Tool => "Tool result",
    }
}

/// How calls in the history are written.
#[derive(Debug, Clone, Copy)]
pub struct HistoryStyle<'t> {
    pub syntax: CallSyntax,
    /// The turn's tools, to tell free-form tools (their input is raw text) from function tools.
    pub tools: Option<&'t ToolSet>,
}

impl Default for HistoryStyle<'_> {
    fn default() -> Self {
        Self {
            syntax: CallSyntax::Hermes,
            tools: None,
        }
    }
}

/// The question for a whole conversation in a fresh upstream session. `tool_instructions` is the
/// block from [`render::instructions`], when the turn offers tools.
pub fn build_question(
    messages: &[Message],
    tool_instructions: Option<&str>,
    style: HistoryStyle<'_>,
) -> String {
    if tool_instructions.is_none()
        && let [only] = messages
        && only.role == Role::User
    {
        return only.content.clone();
    }
    let mut out = String::new();
    for m in messages.iter().filter(|m| m.role == Role::System) {
        push_block(&mut out, m, style);
    }
    if let Some(t) = tool_instructions {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        let _ = write!(out, "[System]\n{t}");
    }
    for m in messages.iter().filter(|m| m.role != Role::System) {
        push_block(&mut out, m, style);
    }
    out
}

/// The question for a turn that continues an upstream session which already holds the history:
/// only the messages after it.
pub fn build_follow_up(new_messages: &[Message], style: HistoryStyle<'_>) -> String {
    if let [only] = new_messages
        && only.role == Role::User
    {
        return only.content.clone();
    }
    let mut out = String::new();
    for m in new_messages {
        push_block(&mut out, m, style);
    }
    out
}

fn push_block(out: &mut String, m: &Message, style: HistoryStyle<'_>) {
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    let _ = writeln!(out, "[{}]", label(m.role));
    match m.role {
        Role::Tool => out.push_str(&render::result(
            m.tool_name.as_deref(),
            m.tool_call_id.as_deref(),
            &m.content,
            m.is_error,
        )),
        Role::Assistant => {
            out.push_str(&m.content);
            for call in &m.tool_calls {
                if !out.ends_with('\n') && !out.ends_with("]\n") {
                    out.push('\n');
                }
                let free_form = match style.tools.and_then(|t| t.get(&call.name)) {
                    Some(spec) => spec.kind == ToolKind::Freeform,
                    None => call.input.is_string(),
                };
                out.push_str(&render::call(
                    &call.name,
                    &call.input,
                    free_form,
                    style.syntax,
                ));
            }
        }
        Role::System | Role::User => out.push_str(&m.content),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::ToolCall;
    use serde_json::json;

    #[test]
    fn single_user_message_is_sent_verbatim() {
        let q = build_question(
            &[Message::new(Role::User, "hi")],
            None,
            HistoryStyle::default(),
        );
        assert_eq!(q, "hi");
    }

    #[test]
    fn conversation_is_labelled_with_system_text_first() {
        let msgs = [
            Message::new(Role::User, "2+2?"),
            Message::new(Role::System, "be terse"),
            Message::new(Role::Assistant, "4"),
            Message::new(Role::User, "and 3+3?"),
        ];
        assert_eq!(
            build_question(&msgs, None, HistoryStyle::default()),
            "[System]\nbe terse\n\n[User]\n2+2?\n\n[Assistant]\n4\n\n[User]\nand 3+3?"
        );
    }

    #[test]
    fn tools_history_and_results() {
        let mut call = Message::new(Role::Assistant, "Reading it.");
        call.tool_calls.push(ToolCall {
            id: "call_1".into(),
            name: "read".into(),
            input: json!({"path": "a"}),
        });
        let mut result = Message::tool_result("call_1", "hello");
        result.tool_name = Some("read".into());
        let msgs = [Message::new(Role::User, "read a"), call, result];
        let q = build_question(&msgs, Some("# Tools\n..."), HistoryStyle::default());
        assert_eq!(
            q,
            "[System]\n# Tools\n...\n\n[User]\nread a\n\n[Assistant]\nReading it.\n<tool_call>\n\
             {\"name\": \"read\", \"arguments\": {\"path\":\"a\"}}\n</tool_call>\n\n[Tool result]\n\
             <tool_response name=\"read\" id=\"call_1\">\nhello\n</tool_response>"
        );
        // A follow-up carries only the result.
        assert_eq!(
            build_follow_up(&msgs[2..], HistoryStyle::default()),
            "[Tool result]\n<tool_response name=\"read\" id=\"call_1\">\nhello\n</tool_response>"
        );
        assert_eq!(
            build_follow_up(&[Message::new(Role::User, "next")], HistoryStyle::default()),
            "next"
        );
    }
}
