//! The `POST /v1/messages` request (and `count_tokens`, which takes the same body): its wire
//! types and [`to_turn`], which checks it and turns it into the neutral [`TurnRequest`].
//!
//! Accepted as Claude Code sends it: `system` as a string or text blocks (and `system`-role
//! entries inside `messages`, which Claude Code puts there); content as a string or blocks
//! (`text`, `tool_use`, `tool_result` with string or block content and `is_error`, `thinking` and
//! `redacted_thinking` dropped from the question, `cache_control` anywhere ignored); `tools`
//! (client tools; server tools and tools marked `defer_loading` are not described to the model);
//! `tool_choice` (`auto`, `any`, `tool`, `none`, `disable_parallel_tool_use`); `stop_sequences`,
//! `max_tokens`, `thinking`, `metadata.user_id`. Unknown fields are ignored. `image` and
//! `document` blocks get a clear 400 (Lingma takes text only).

use serde::Deserialize;
use serde_json::Value;

use crate::error::GatewayError;
use crate::turn::{Message, Role, ToolCall, ToolChoice, ToolSpec, TurnRequest};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MessagesRequest {
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub messages: Vec<InputMessage>,
    pub system: Option<Content>,
    #[serde(default)]
    pub stop_sequences: Vec<String>,
    pub stream: Option<bool>,
    pub tools: Option<Vec<ToolDef>>,
    pub tool_choice: Option<ToolChoiceDef>,
    pub thinking: Option<Thinking>,
    pub metadata: Option<Metadata>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InputMessage {
    pub role: String,
    pub content: Option<Content>,
}

/// A string, or content blocks.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a string or an array of content blocks")]
pub enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

/// One content block, kept loose so that an unsupported block is a precise 400.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Block {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub text: Option<String>,
    // tool_use
    pub id: Option<String>,
    pub name: Option<String>,
    pub input: Option<Value>,
    // tool_result
    pub tool_use_id: Option<String>,
    pub content: Option<Box<Content>>,
    pub is_error: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToolDef {
    /// `custom` or absent for client tools; anything else is a server tool.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub input_schema: Option<Value>,
    pub defer_loading: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToolChoiceDef {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub name: Option<String>,
    pub disable_parallel_tool_use: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Thinking {
    #[serde(rename = "type", default)]
    pub kind: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Metadata {
    pub user_id: Option<String>,
}

/// A checked request: the neutral turn plus what only the Anthropic rendering needs.
#[derive(Debug, Clone)]
pub struct AnthropicTurn {
    pub turn: TurnRequest,
    pub stream: bool,
    /// The model as the client named it (the response echoes it: Claude Code compares).
    pub model: String,
    /// `thinking` is `enabled` or `adaptive`: reasoning goes out as thinking blocks.
    pub thinking: bool,
}

/// Checks a request and converts it. Every error is a 400 naming the `param`.
pub fn to_turn(req: MessagesRequest) -> Result<AnthropicTurn, GatewayError> {
    let model = req
        .model
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| GatewayError::invalid_param("`model` is required", "model"))?
        .to_string();
    let max_tokens = match req.max_tokens {
        None => {
            return Err(GatewayError::invalid_param(
                "`max_tokens` is required",
                "max_tokens",
            ));
        }
        Some(0) => {
            return Err(GatewayError::invalid_param(
                "`max_tokens` must be at least 1",
                "max_tokens",
            ));
        }
        Some(n) => n,
    };
    if req.messages.is_empty() {
        return Err(GatewayError::invalid_param(
            "`messages` must contain at least one message",
            "messages",
        ));
    }
    let mut messages = Vec::new();
    if let Some(system) = &req.system {
        let text = text_of(system, "system")?;
        if !text.is_empty() {
            messages.push(Message::new(Role::System, text));
        }
    }
    for (i, m) in req.messages.iter().enumerate() {
        convert_message(i, m, &mut messages)?;
    }
    match messages.iter().rev().find(|m| m.role != Role::System) {
        Some(m) if matches!(m.role, Role::User | Role::Tool) => {}
        Some(_) => {
            return Err(GatewayError::invalid_param(
                "The last message must be from the user: this gateway cannot continue an \
                 assistant message (prefill)",
                "messages",
            ));
        }
        None => {
            return Err(GatewayError::invalid_param(
                "`messages` has no user message",
                "messages",
            ));
        }
    }
    let (tool_choice, parallel) = match &req.tool_choice {
        None => (ToolChoice::Auto, true),
        Some(c) => {
            let choice = match c.kind.as_str() {
                "auto" | "" => ToolChoice::Auto,
                "any" => ToolChoice::Required,
                "none" => ToolChoice::None,
                "tool" => ToolChoice::Named(c.name.clone().filter(|n| !n.is_empty()).ok_or_else(
                    || {
                        GatewayError::invalid_param(
                            "`tool_choice` of type `tool` needs a `name`",
                            "tool_choice.name",
                        )
                    },
                )?),
                other => {
                    return Err(GatewayError::invalid_param(
                        format!(
                            "`tool_choice.type` must be auto, any, tool or none (got `{}`)",
                            other.escape_debug()
                        ),
                        "tool_choice.type",
                    ));
                }
            };
            (choice, !c.disable_parallel_tool_use.unwrap_or(false))
        }
    };
    let thinking = req
        .thinking
        .as_ref()
        .is_some_and(|t| matches!(t.kind.as_str(), "enabled" | "adaptive"));
    Ok(AnthropicTurn {
        turn: TurnRequest {
            messages,
            tools: tools_of(req.tools.as_deref().unwrap_or_default())?,
            tool_choice,
            parallel_tool_calls: parallel,
            model: Some(model.clone()),
            max_tokens: Some(max_tokens),
            stop: req
                .stop_sequences
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect(),
            stream: req.stream.unwrap_or(false),
            affinity: req
                .metadata
                .as_ref()
                .and_then(|m| m.user_id.as_deref())
                .and_then(session_of_user_id)
                .map(|s| format!("s:{s}")),
            call_id_prefix: "toolu_",
            ..TurnRequest::default()
        },
        stream: req.stream.unwrap_or(false),
        model,
        thinking,
    })
}

/// The session in Claude Code's `metadata.user_id`: a JSON string with `session_id`, or the
/// older `user_…_account_…_session_<uuid>` form; else the whole value.
fn session_of_user_id(user_id: &str) -> Option<String> {
    let u = user_id.trim();
    if u.is_empty() {
        return None;
    }
    if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(u)
        && let Some(s) = o.get("session_id").and_then(Value::as_str)
    {
        return Some(s.to_string());
    }
    match u.rsplit_once("_session_") {
        Some((_, s)) if !s.is_empty() => Some(s.to_string()),
        _ => Some(u.to_string()),
    }
}

/// Client tools as specs. Server tools (`web_search_…`, `bash_…`: Lingma cannot run them) and
/// deferred tools (loaded later through a search tool) are left out.
fn tools_of(tools: &[ToolDef]) -> Result<Vec<ToolSpec>, GatewayError> {
    let mut out = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let client_tool = t.kind.as_deref().is_none_or(|k| k == "custom");
        if !client_tool || t.defer_loading == Some(true) {
            continue;
        }
        if t.name.trim().is_empty() {
            return Err(GatewayError::invalid_param(
                format!("tools[{i}] has no `name`"),
                format!("tools[{i}].name"),
            ));
        }
        let schema = t
            .input_schema
            .clone()
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
        out.push(ToolSpec::function(&t.name, &t.description, schema));
    }
    Ok(out)
}

/// The text of a string or of text blocks (joined with newlines); `cache_control` ignored.
fn text_of(content: &Content, param: &str) -> Result<String, GatewayError> {
    match content {
        Content::Text(t) => Ok(t.clone()),
        Content::Blocks(blocks) => {
            let mut texts = Vec::new();
            for (j, b) in blocks.iter().enumerate() {
                match b.kind.as_str() {
                    "text" => texts.push(b.text.as_deref().unwrap_or_default()),
                    "thinking" | "redacted_thinking" => {}
                    other => return Err(unsupported_block(other, &format!("{param}[{j}]"))),
                }
            }
            Ok(texts.join("\n"))
        }
    }
}

fn unsupported_block(kind: &str, param: &str) -> GatewayError {
    match kind {
        "image" | "document" | "search_result" => GatewayError::invalid_param_code(
            format!("{kind} input is not supported by this gateway (Lingma accepts text only)"),
            param,
            "unsupported_content",
        ),
        "" => {
            GatewayError::invalid_param(format!("{param} has no `type`"), format!("{param}.type"))
        }
        other => GatewayError::invalid_param_code(
            format!(
                "Content block type `{}` is not supported here",
                other.escape_debug()
            ),
            format!("{param}.type"),
            "unsupported_content",
        ),
    }
}

/// One input message, as one or more neutral messages (a user message's tool results become
/// tool messages, in their order).
fn convert_message(i: usize, m: &InputMessage, out: &mut Vec<Message>) -> Result<(), GatewayError> {
    let param = format!("messages[{i}]");
    let role = match m.role.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        // Claude Code puts one inside `messages`.
        "system" => Role::System,
        other => {
            return Err(GatewayError::invalid_param(
                format!(
                    "Invalid role `{}` in {param}: expected user or assistant",
                    other.escape_debug()
                ),
                format!("{param}.role"),
            ));
        }
    };
    let content = m.content.as_ref().ok_or_else(|| {
        GatewayError::invalid_param(
            format!("{param}.content is required"),
            format!("{param}.content"),
        )
    })?;
    let blocks = match content {
        Content::Text(t) => {
            out.push(Message::new(role, t.clone()));
            return Ok(());
        }
        Content::Blocks(b) => b,
    };
    if role == Role::System {
        out.push(Message::new(
            Role::System,
            text_of(content, &format!("{param}.content"))?,
        ));
        return Ok(());
    }
    let mut current = Message::new(role, "");
    let mut texts: Vec<&str> = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let bp = format!("{param}.content[{j}]");
        match (role, b.kind.as_str()) {
            (_, "text") => texts.push(b.text.as_deref().unwrap_or_default()),
            (_, "thinking" | "redacted_thinking") => {}
            (Role::Assistant, "tool_use") => current.tool_calls.push(ToolCall {
                id: b.id.clone().unwrap_or_default(),
                name: b.name.clone().unwrap_or_default(),
                input: b.input.clone().unwrap_or(Value::Object(Default::default())),
            }),
            (Role::User, "tool_result") => {
                // Text before a result is its own user message, in order.
                if !texts.is_empty() {
                    current.content = texts.join("\n");
                    out.push(std::mem::replace(&mut current, Message::new(role, "")));
                    texts.clear();
                }
                let id = b.tool_use_id.clone().ok_or_else(|| {
                    GatewayError::invalid_param(
                        format!("{bp} has no `tool_use_id`"),
                        format!("{bp}.tool_use_id"),
                    )
                })?;
                let text = match b.content.as_deref() {
                    None => String::new(),
                    Some(c) => text_of(c, &format!("{bp}.content"))?,
                };
                let mut result = Message::tool_result(id, text);
                result.is_error = b.is_error.unwrap_or(false);
                out.push(result);
            }
            (_, other) => return Err(unsupported_block(other, &bp)),
        }
    }
    current.content = texts.join("\n");
    if !current.content.is_empty() || !current.tool_calls.is_empty() || out.is_empty() {
        out.push(current);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn turn(v: Value) -> AnthropicTurn {
        to_turn(serde_json::from_value(v).unwrap()).unwrap()
    }

    #[track_caller]
    fn invalid(v: Value) -> (String, Option<String>) {
        match to_turn(serde_json::from_value(v).unwrap()) {
            Ok(ok) => panic!("expected an error, got {ok:?}"),
            Err(GatewayError::InvalidRequest { message, param, .. }) => (message, param),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn claude_code_first_turn() {
        let t = turn(json!({
            "model": "claude-opus-5-5", "max_tokens": 128000, "stream": true,
            "system": [
                {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"},
                {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}
            ],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "<system-reminder>attribution</system-reminder>"},
                    {"type": "text", "text": "Create hello.txt", "cache_control": {"type": "ephemeral"}}
                ]},
                {"role": "system", "content": [{"type": "text", "text": "# Environment"}]}
            ],
            "tools": [
                {"name": "Write", "description": "Writes a file", "input_schema": {"type": "object",
                 "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}},
                {"name": "DeferredToolPlaceholder", "defer_loading": true, "input_schema": {}},
                {"type": "web_search_20250305", "name": "web_search"}
            ],
            "metadata": {"user_id": "{\"device_id\":\"d\",\"session_id\":\"abc-123\"}"},
            "thinking": {"type": "adaptive"}, "context_management": {"edits": []},
            "output_config": {"effort": "high"}, "temperature": 1
        }));
        assert!(t.stream && t.thinking);
        assert_eq!(t.model, "claude-opus-5-5");
        let m = &t.turn.messages;
        assert_eq!(
            m[0],
            Message::new(
                Role::System,
                "x-anthropic-billing-header: cc_version=2.1\nYou are Claude Code."
            )
        );
        assert_eq!(
            m[1],
            Message::new(
                Role::User,
                "<system-reminder>attribution</system-reminder>\nCreate hello.txt"
            )
        );
        assert_eq!(m[2], Message::new(Role::System, "# Environment"));
        assert_eq!(
            t.turn.tools.len(),
            1,
            "server and deferred tools are left out"
        );
        assert_eq!(t.turn.affinity.as_deref(), Some("s:abc-123"));
        assert_eq!(t.turn.max_tokens, Some(128000));
        assert_eq!(t.turn.call_id_prefix, "toolu_");
    }

    #[test]
    fn tool_use_and_tool_results() {
        let t = turn(json!({
            "model": "m", "max_tokens": 10,
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "s"},
                    {"type": "text", "text": "I'll write it."},
                    {"type": "tool_use", "id": "toolu_1", "name": "Write", "input": {"file_path": "/a"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok", "cache_control": {"type": "ephemeral"}},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
                     "content": [{"type": "text", "text": "<tool_use_error>bad</tool_use_error>"}]},
                    {"type": "text", "text": "and then?"}
                ]}
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true}
        }));
        let m = &t.turn.messages;
        assert_eq!(m[1].content, "I'll write it.");
        assert_eq!(
            m[1].tool_calls,
            vec![ToolCall {
                id: "toolu_1".into(),
                name: "Write".into(),
                input: json!({"file_path": "/a"})
            }]
        );
        assert_eq!(m[2], Message::tool_result("toolu_1", "ok"));
        assert!(m[3].is_error && m[3].content == "<tool_use_error>bad</tool_use_error>");
        assert_eq!(m[4], Message::new(Role::User, "and then?"));
        assert_eq!(t.turn.tool_choice, ToolChoice::Required);
        assert!(!t.turn.parallel_tool_calls);
    }

    #[test]
    fn errors_name_the_param() {
        let u = json!({"role": "user", "content": "x"});
        for (body, param, needle) in [
            (
                json!({"max_tokens": 5, "messages": [u]}),
                "model",
                "required",
            ),
            (
                json!({"model": "m", "messages": [u]}),
                "max_tokens",
                "required",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": []}),
                "messages",
                "at least one",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [u, {"role": "assistant", "content": "pre"}]}),
                "messages",
                "prefill",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}]}]}),
                "messages[0].content[0]",
                "image input is not supported",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "bot", "content": "x"}]}),
                "messages[0].role",
                "Invalid role",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [u], "tool_choice": {"type": "tool"}}),
                "tool_choice.name",
                "needs a `name`",
            ),
        ] {
            let (message, got) = invalid(body.clone());
            assert_eq!(got.as_deref(), Some(param), "{body}");
            assert!(message.contains(needle), "{message}");
        }
    }

    #[test]
    fn user_id_sessions() {
        assert_eq!(
            session_of_user_id("user_ab_account__session_u-1").as_deref(),
            Some("u-1")
        );
        assert_eq!(
            session_of_user_id("{\"session_id\":\"s\"}").as_deref(),
            Some("s")
        );
        assert_eq!(session_of_user_id("plain").as_deref(), Some("plain"));
        assert_eq!(session_of_user_id(" "), None);
    }
}
