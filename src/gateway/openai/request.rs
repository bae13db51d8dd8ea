//! The `POST /v1/chat/completions` request: its wire types and [`to_turn`], which checks it and
//! turns it into the neutral [`TurnRequest`] (or a 400 naming the offending `param`).
//!
//! Unknown fields are ignored, never rejected. What the gateway honours:
//! * `model`, `messages` (roles system/developer/user/assistant/tool/function; text content as a
//!   string or parts; assistant `tool_calls` and legacy `function_call`; tool results with their
//!   call id), `stream`, `stream_options.include_usage`, `stop`, `max_tokens` /
//!   `max_completion_tokens` (enforced by the gateway), `user` and `prompt_cache_key` (affinity);
//! * `tools` (`function` type), `tool_choice` (`none`, `auto`, `required`, a named function),
//!   `parallel_tool_calls`, and the legacy `functions` / `function_call`;
//! * accepted and without effect: sampling parameters, `seed`, `logit_bias`, `logprobs`,
//!   `response_format`, `reasoning_effort`, `metadata`, `store`, `service_tier`.
//!
//! Refused with a clear 400: `n > 1`, non-text input (image, audio, file), a last message that is
//! not from the user or a tool.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::GatewayError;
use crate::turn::{Message, Role, ToolCall, ToolChoice, ToolSpec, TurnRequest};

/// OpenAI's limit on the number of stop sequences.
pub const MAX_STOP_SEQUENCES: usize = 4;

/// `POST /v1/chat/completions` body. Fields are optional at this level so that a missing one
/// becomes a precise 400 from [`to_turn`] rather than a serde error.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: Option<String>,
    #[serde(default)]
    pub messages: Vec<RequestMessage>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u32>,
    /// `"stop": "x"`, `["x","y"]` or `null`, normalised to a list.
    #[serde(default, deserialize_with = "de_stop")]
    pub stop: Vec<String>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub user: Option<String>,
    pub prompt_cache_key: Option<String>,
    /// Accepted and without effect (read, so that its nesting depth is checked like the rest).
    pub metadata: Option<Value>,
    pub tools: Option<Vec<ToolDef>>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    /// Legacy function calling.
    pub functions: Option<Vec<FunctionDef>>,
    pub function_call: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

/// One message as sent by the client. `role` is a string so that an unknown role is a 400
/// naming `messages[i].role`, not a serde error.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RequestMessage {
    pub role: String,
    pub content: Option<MessageContent>,
    pub name: Option<String>,
    pub tool_call_id: Option<String>,
    pub tool_calls: Option<Vec<RequestToolCall>>,
    /// Legacy assistant function call.
    pub function_call: Option<FunctionCall>,
    pub refusal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged, expecting = "a string, null, or an array of content parts")]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One content part. Kept loose (`type` is a string, payloads are raw JSON) so that an unsupported
/// part becomes a precise 400 rather than a serde error.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub text: Option<String>,
    pub refusal: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RequestToolCall {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub function: Option<FunctionCall>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct FunctionCall {
    #[serde(default)]
    pub name: String,
    /// A JSON document as a string, per OpenAI; any JSON value is tolerated.
    #[serde(default)]
    pub arguments: Value,
}

/// `{"type": "function", "function": {...}}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToolDef {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub function: Option<FunctionDef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FunctionDef {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// JSON Schema; absent means no parameters (Qwen Code sends tools without it).
    pub parameters: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a string, an array of strings, or null")]
enum StopField {
    One(String),
    Many(Vec<String>),
}

fn de_stop<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<StopField>::deserialize(d)? {
        None => Vec::new(),
        Some(StopField::One(s)) => vec![s],
        Some(StopField::Many(v)) => v,
    })
}

/// A checked request: the neutral turn plus what only the OpenAI rendering needs.
#[derive(Debug, Clone)]
pub struct OpenAiChat {
    pub turn: TurnRequest,
    pub stream: bool,
    /// `stream_options.include_usage` on a streaming request (a final usage chunk is wanted).
    pub include_usage: bool,
    /// The request used legacy `functions`: calls are answered as `function_call`.
    pub legacy_functions: bool,
}

/// Checks a request and converts it. Every error is a 400 naming the `param`.
pub fn to_turn(req: ChatCompletionRequest) -> Result<OpenAiChat, GatewayError> {
    if req.messages.is_empty() {
        return Err(GatewayError::invalid_param(
            "`messages` must contain at least one message",
            "messages",
        ));
    }
    match req.n {
        Some(0) => return Err(GatewayError::invalid_param("n must be at least 1", "n")),
        Some(n) if n > 1 => {
            return Err(GatewayError::invalid_param(
                "n > 1 is not supported: Lingma returns one answer per request",
                "n",
            ));
        }
        _ => {}
    }
    let max_tokens = match (req.max_completion_tokens, req.max_tokens) {
        (Some(0), _) => {
            return Err(GatewayError::invalid_param(
                "max_completion_tokens must be at least 1",
                "max_completion_tokens",
            ));
        }
        (None, Some(0)) => {
            return Err(GatewayError::invalid_param(
                "max_tokens must be at least 1",
                "max_tokens",
            ));
        }
        (Some(m), _) => Some(m),
        (None, m) => m,
    };
    if req.stop.len() > MAX_STOP_SEQUENCES {
        return Err(GatewayError::invalid_param(
            format!(
                "At most {MAX_STOP_SEQUENCES} stop sequences are allowed (got {})",
                req.stop.len()
            ),
            "stop",
        ));
    }
    let legacy_functions = req.tools.as_ref().is_none_or(Vec::is_empty)
        && req.functions.as_ref().is_some_and(|f| !f.is_empty());
    let tools = tools_of(&req)?;
    let tool_choice = if legacy_functions {
        choice_of(req.function_call.as_ref(), "function_call")?
    } else {
        choice_of(req.tool_choice.as_ref(), "tool_choice")?
    };

    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        messages.push(convert_message(i, m)?);
    }
    let last = messages.len() - 1;
    if !matches!(messages[last].role, Role::User | Role::Tool) {
        return Err(GatewayError::invalid_param(
            format!(
                "The last message must be from the user or a tool (got `{}`): this gateway cannot \
                 continue an assistant or system message",
                req.messages[last].role
            ),
            format!("messages[{last}].role"),
        ));
    }

    let stream = req.stream.unwrap_or(false);
    let include_usage = stream
        && req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
    let affinity = req
        .user
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(|u| format!("u:{u}"))
        .or_else(|| {
            req.prompt_cache_key
                .as_deref()
                .filter(|k| !k.is_empty())
                .map(|k| format!("k:{k}"))
        });
    Ok(OpenAiChat {
        turn: TurnRequest {
            messages,
            tools,
            tool_choice,
            parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
            model: req
                .model
                .as_deref()
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned),
            max_tokens,
            stop: req.stop.into_iter().filter(|s| !s.is_empty()).collect(),
            stream,
            affinity,
            call_id_prefix: "call_",
            ..TurnRequest::default()
        },
        stream,
        include_usage,
        legacy_functions,
    })
}

/// `tools` (function type) and the legacy `functions`, as tool specs.
fn tools_of(req: &ChatCompletionRequest) -> Result<Vec<ToolSpec>, GatewayError> {
    let mut out = Vec::new();
    for (i, t) in req.tools.iter().flatten().enumerate() {
        if t.kind != "function" {
            return Err(GatewayError::invalid_param_code(
                format!(
                    "Tool type `{}` is not supported (expected `function`)",
                    t.kind.escape_debug()
                ),
                format!("tools[{i}].type"),
                "unsupported_tool",
            ));
        }
        let Some(f) = &t.function else {
            return Err(GatewayError::invalid_param(
                format!("tools[{i}] has no `function`"),
                format!("tools[{i}].function"),
            ));
        };
        out.push(spec(f, &format!("tools[{i}].function"))?);
    }
    if out.is_empty() {
        for (i, f) in req.functions.iter().flatten().enumerate() {
            out.push(spec(f, &format!("functions[{i}]"))?);
        }
    }
    Ok(out)
}

fn spec(f: &FunctionDef, param: &str) -> Result<ToolSpec, GatewayError> {
    if f.name.trim().is_empty() {
        return Err(GatewayError::invalid_param(
            format!("{param} has no `name`"),
            format!("{param}.name"),
        ));
    }
    let parameters = f
        .parameters
        .clone()
        .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
    Ok(ToolSpec::function(&f.name, &f.description, parameters))
}

/// `"none" | "auto" | "required" | {"type":"function","function":{"name":…}}` (and the legacy
/// `function_call`: `"none" | "auto" | {"name":…}`).
fn choice_of(v: Option<&Value>, param: &str) -> Result<ToolChoice, GatewayError> {
    let bad = || {
        GatewayError::invalid_param(
            format!(
                "`{param}` must be \"none\", \"auto\", \"required\" or {{\"type\": \"function\", \"function\": {{\"name\": …}}}}"
            ),
            param,
        )
    };
    Ok(match v {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" | "any" => ToolChoice::Required,
            _ => return Err(bad()),
        },
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| o.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(bad)?;
            ToolChoice::Named(name.to_string())
        }
        Some(_) => return Err(bad()),
    })
}

fn convert_message(i: usize, m: &RequestMessage) -> Result<Message, GatewayError> {
    let role = match m.role.as_str() {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" | "function" => Role::Tool,
        other => {
            return Err(GatewayError::invalid_param(
                format!(
                    "Invalid role `{}` in messages[{i}]: expected one of system, developer, user, \
                     assistant, tool, function",
                    other.escape_debug()
                ),
                format!("messages[{i}].role"),
            ));
        }
    };
    let content = match &m.content {
        None => {
            if role != Role::Assistant {
                return Err(GatewayError::invalid_param(
                    format!("messages[{i}].content is required for role `{}`", m.role),
                    format!("messages[{i}].content"),
                ));
            }
            m.refusal.clone().unwrap_or_default()
        }
        Some(MessageContent::Text(t)) => t.clone(),
        Some(MessageContent::Parts(parts)) => join_parts(i, parts)?,
    };
    let mut msg = Message::new(role, content);
    match m.role.as_str() {
        "assistant" => {
            for c in m.tool_calls.iter().flatten() {
                let Some(f) = &c.function else { continue };
                msg.tool_calls.push(ToolCall {
                    id: c.id.clone().unwrap_or_default(),
                    name: f.name.clone(),
                    input: arguments_value(&f.arguments),
                });
            }
            // Legacy: the call's id is the function's name, as its result names it.
            if let Some(f) = &m.function_call {
                msg.tool_calls.push(ToolCall {
                    id: f.name.clone(),
                    name: f.name.clone(),
                    input: arguments_value(&f.arguments),
                });
            }
        }
        "tool" => {
            msg.tool_call_id = m.tool_call_id.clone();
            msg.tool_name = m.name.clone();
        }
        // Legacy function results carry the function's name instead of a call id.
        "function" => {
            msg.tool_call_id = m.name.clone().or_else(|| m.tool_call_id.clone());
            msg.tool_name = m.name.clone();
        }
        _ => {}
    }
    Ok(msg)
}

/// Arguments as the client echoes them: a JSON string (parsed), or already a value. Text that
/// is not JSON is kept as a string, so the history still shows it.
fn arguments_value(a: &Value) -> Value {
    match a {
        Value::String(s) if s.trim().is_empty() => Value::Object(Default::default()),
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| a.clone()),
        Value::Null => Value::Object(Default::default()),
        other => other.clone(),
    }
}

fn join_parts(i: usize, parts: &[ContentPart]) -> Result<String, GatewayError> {
    let mut texts: Vec<&str> = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let param = format!("messages[{i}].content[{j}]");
        let unsupported = |what: &str| {
            Err(GatewayError::invalid_param_code(
                format!("{what} input is not supported by this gateway (Lingma accepts text only)"),
                param.clone(),
                "unsupported_content",
            ))
        };
        match part.kind.as_str() {
            "text" | "input_text" => match &part.text {
                Some(t) => texts.push(t),
                None => {
                    return Err(GatewayError::invalid_param(
                        format!("{param} of type `text` has no `text`"),
                        format!("{param}.text"),
                    ));
                }
            },
            "refusal" => texts.push(part.refusal.as_deref().unwrap_or_default()),
            "image_url" | "input_image" | "image" => return unsupported("image"),
            "input_audio" | "audio" => return unsupported("audio"),
            "file" | "input_file" => return unsupported("file"),
            "" => {
                return Err(GatewayError::invalid_param(
                    format!("{param} has no `type`"),
                    format!("{param}.type"),
                ));
            }
            other => {
                return Err(GatewayError::invalid_param_code(
                    format!(
                        "Content part type `{}` is not supported (expected `text`)",
                        other.escape_debug()
                    ),
                    format!("{param}.type"),
                    "unsupported_content",
                ));
            }
        }
    }
    Ok(texts.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid(v: Value) -> OpenAiChat {
        to_turn(serde_json::from_value(v).unwrap()).unwrap()
    }

    #[track_caller]
    fn invalid(v: Value) -> (String, Option<String>) {
        match to_turn(serde_json::from_value(v).unwrap()) {
            Ok(ok) => panic!("expected an error, got {ok:?}"),
            Err(GatewayError::InvalidRequest { message, param, .. }) => (message, param),
            Err(other) => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    #[test]
    fn openai_sdk_style_request() {
        let v = valid(json!({
            "model": "qwen3-coder",
            "messages": [
                {"role": "system", "content": "You are helpful."},
                {"role": "user", "content": "Hello!"}
            ],
            "stream": true, "stream_options": {"include_usage": true},
            "temperature": 0.2, "max_tokens": 256, "stop": "\n\n",
            "user": "u-1", "prompt_cache_key": "conv-9"
        }));
        let t = &v.turn;
        assert_eq!(
            t.messages,
            vec![
                Message::new(Role::System, "You are helpful."),
                Message::new(Role::User, "Hello!")
            ]
        );
        assert!(v.stream && v.include_usage);
        assert_eq!(t.stop, vec!["\n\n".to_string()]);
        assert_eq!(t.max_tokens, Some(256));
        assert_eq!(t.model.as_deref(), Some("qwen3-coder"));
        assert_eq!(t.affinity.as_deref(), Some("u:u-1"));
        assert_eq!(t.call_id_prefix, "call_");
        assert!(t.tools.is_empty() && t.tool_choice == ToolChoice::Auto);
    }

    #[test]
    fn langchain_and_qwen_code_history_with_tools() {
        let v = valid(json!({
            "model": "m",
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "line one"}, {"type": "text", "text": "line two"}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                // Qwen Code sends tool results as text parts.
                {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "21 C"}]},
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather",
                "description": "Weather", "parameters": {"type": "object",
                "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
                // No parameters at all (Qwen Code's get_goal).
                {"type": "function", "function": {"name": "get_goal"}}],
            "tool_choice": "auto", "stop": null, "n": 1, "stream_options": null
        }));
        let t = &v.turn;
        assert_eq!(
            t.messages[1],
            Message::new(Role::User, "line one\nline two")
        );
        assert_eq!(
            t.messages[2].tool_calls,
            vec![ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                input: json!({"city": "Paris"})
            }]
        );
        assert_eq!(t.messages[2].content, "");
        assert_eq!(t.messages[3].role, Role::Tool);
        assert_eq!(t.messages[3].content, "21 C");
        assert_eq!(t.messages[3].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(t.tools.len(), 2);
        assert_eq!(t.tools[1].parameters["type"], "object");
        assert!(t.parallel_tool_calls);
    }

    #[test]
    fn tool_choice_variants_and_legacy_functions() {
        let base = |choice: Value| {
            json!({"messages": [{"role": "user", "content": "x"}],
                   "tools": [{"type": "function", "function": {"name": "f"}}],
                   "tool_choice": choice, "parallel_tool_calls": false})
        };
        assert_eq!(
            valid(base(json!("none"))).turn.tool_choice,
            ToolChoice::None
        );
        assert_eq!(
            valid(base(json!("required"))).turn.tool_choice,
            ToolChoice::Required
        );
        assert_eq!(
            valid(base(json!({"type": "function", "function": {"name": "f"}})))
                .turn
                .tool_choice,
            ToolChoice::Named("f".into())
        );
        assert!(!valid(base(json!("auto"))).turn.parallel_tool_calls);
        let v = valid(json!({
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{\"a\":1}"}},
                {"role": "function", "name": "f", "content": "42"},
                {"role": "user", "content": "and?"}
            ],
            "functions": [{"name": "f", "parameters": {"type": "object"}}],
            "function_call": {"name": "f"}
        }));
        assert!(v.legacy_functions);
        assert_eq!(v.turn.tool_choice, ToolChoice::Named("f".into()));
        assert_eq!(v.turn.messages[1].tool_calls[0].id, "f");
        assert_eq!(v.turn.messages[2].tool_call_id.as_deref(), Some("f"));
    }

    #[test]
    fn model_is_trimmed_and_blank_means_default() {
        let m = |model: Value| {
            valid(json!({"model": model, "messages": [{"role": "user", "content": "x"}]}))
                .turn
                .model
        };
        assert_eq!(m(json!(" qwen ")), Some("qwen".into()));
        assert_eq!(m(json!("")), None);
        assert_eq!(m(Value::Null), None);
    }

    #[test]
    fn max_completion_tokens_wins_and_empty_stops_are_dropped() {
        let v = valid(json!({
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 10, "max_completion_tokens": 20, "stop": ["", "END"]
        }));
        assert_eq!(v.turn.max_tokens, Some(20));
        assert_eq!(v.turn.stop, vec!["END".to_string()]);
        let v = valid(json!({
            "messages": [{"role": "user", "content": "x"}],
            "stream": false, "stream_options": {"include_usage": true}
        }));
        assert!(!v.include_usage);
    }

    #[test]
    fn validation_errors_name_the_param() {
        let u = json!({"role": "user", "content": "x"});
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!({"messages": []}), "messages", "at least one"),
            (json!({"model": "m"}), "messages", "at least one"),
            (
                json!({"messages": [u, {"role": "assistant", "content": "a"}]}),
                "messages[1].role",
                "last message",
            ),
            (
                json!({"messages": [{"role": "system", "content": "s"}]}),
                "messages[0].role",
                "last message",
            ),
            (
                json!({"messages": [u], "n": 2}),
                "n",
                "n > 1 is not supported",
            ),
            (json!({"messages": [u], "n": 0}), "n", "at least 1"),
            (
                json!({"messages": [u], "max_tokens": 0}),
                "max_tokens",
                "at least 1",
            ),
            (
                json!({"messages": [u], "max_completion_tokens": 0, "max_tokens": 5}),
                "max_completion_tokens",
                "at least 1",
            ),
            (
                json!({"messages": [u], "stop": ["a", "b", "c", "d", "e"]}),
                "stop",
                "At most 4",
            ),
            (
                json!({"messages": [{"role": "wizard", "content": "x"}]}),
                "messages[0].role",
                "Invalid role `wizard`",
            ),
            (
                json!({"messages": [u, {"role": "user", "content": null}]}),
                "messages[1].content",
                "required",
            ),
            (
                json!({"messages": [{"role": "user", "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                ]}]}),
                "messages[0].content[1]",
                "image input is not supported by this gateway",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
                "messages[0].content[0]",
                "audio input is not supported",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "file"}]}]}),
                "messages[0].content[0]",
                "file input is not supported",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "video"}]}]}),
                "messages[0].content[0].type",
                "`video` is not supported",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"text": "x"}]}]}),
                "messages[0].content[0].type",
                "no `type`",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]}),
                "messages[0].content[0].text",
                "no `text`",
            ),
            (
                json!({"messages": [u], "tools": [{"type": "retrieval"}]}),
                "tools[0].type",
                "not supported",
            ),
            (
                json!({"messages": [u], "tools": [{"type": "function"}]}),
                "tools[0].function",
                "no `function`",
            ),
            (
                json!({"messages": [u], "tools": [{"type": "function", "function": {"name": " "}}]}),
                "tools[0].function.name",
                "no `name`",
            ),
            (
                json!({"messages": [u], "tool_choice": "sometimes"}),
                "tool_choice",
                "must be",
            ),
            (
                json!({"messages": [u], "tool_choice": 5}),
                "tool_choice",
                "must be",
            ),
        ];
        for (body, param, needle) in cases {
            let (message, got) = invalid(body.clone());
            assert_eq!(got.as_deref(), Some(param), "{body}");
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
    }

    #[test]
    fn serde_level_errors_are_clear() {
        let err = serde_json::from_value::<ChatCompletionRequest>(json!({
            "messages": [{"role": "user", "content": 5}]
        }))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("a string, null, or an array of content parts"),
            "{err}"
        );
        let err = serde_json::from_value::<ChatCompletionRequest>(json!({
            "messages": [{"role": "user", "content": "x"}], "stop": 3
        }))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("a string, an array of strings, or null"),
            "{err}"
        );
    }
}
