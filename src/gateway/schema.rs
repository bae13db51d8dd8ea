//! OpenAI chat-completions wire types and request validation.
//!
//! Owns: the request body ([`ChatCompletionRequest`], deserialize-only in spirit: unknown fields are
//! ignored, never rejected), [`validate`] which turns it into a [`ValidChat`] of
//! [`crate::prompt::Message`]s or a 400 naming the offending `param`, and the response shapes
//! ([`ChatCompletion`], [`ChatCompletionChunk`], [`Usage`], [`ModelList`]).
//!
//! What the gateway can honour is limited by Lingma: one text in, one text out. So:
//! * accepted and used: `model`, `messages`, `stream`, `stream_options.include_usage`, `stop`,
//!   `max_tokens`/`max_completion_tokens` (enforced by the gateway, see `limits`), `user`,
//!   `prompt_cache_key`;
//! * accepted and ignored (listed in [`ValidChat::ignored_params`]): sampling parameters,
//!   `seed`, `logit_bias`, `logprobs`, `response_format` other than text, `reasoning_effort`,
//!   `metadata`, `store`, `service_tier`, `parallel_tool_calls`;
//! * rejected with a clear 400: `n > 1`, non-text input (image, audio, file), non-empty `tools` or
//!   `functions`, a `tool_choice` that forces a call. An empty `tools: []` (which many clients
//!   always send) and `tool_choice: "none" | "auto"` are accepted.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::error::GatewayError;
use crate::prompt::{Message, Role};

/// OpenAI's limit on the number of stop sequences.
pub const MAX_STOP_SEQUENCES: usize = 4;

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

/// `POST /v1/chat/completions` body. Every field is optional at this level so that a missing field
/// becomes a precise 400 from [`validate`] rather than a serde error.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ChatCompletionRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub messages: Vec<RequestMessage>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub n: Option<u32>,
    /// `"stop": "x"`, `["x","y"]` or `null`, normalised to a list.
    #[serde(
        default,
        deserialize_with = "de_stop",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub stop: Vec<String>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub logit_bias: Option<Value>,
    #[serde(default)]
    pub logprobs: Option<bool>,
    #[serde(default)]
    pub top_logprobs: Option<u32>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub prompt_cache_key: Option<String>,
    /// `{"type":"text"|"json_object"|"json_schema", ...}`; kept loose so odd shapes never fail.
    #[serde(default)]
    pub response_format: Option<Value>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// Legacy function calling.
    #[serde(default)]
    pub functions: Option<Vec<Value>>,
    #[serde(default)]
    pub function_call: Option<Value>,
    #[serde(default)]
    pub reasoning_effort: Option<String>,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub service_tier: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// One message as sent by the client. `role` is a string so that an unknown role is a 400 from
/// [`validate`] naming `messages[i].role`, not a serde error.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RequestMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<MessageContent>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    /// Assistant turns that called tools (kept as text so history is not lost).
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Legacy assistant function call.
    #[serde(default)]
    pub function_call: Option<FunctionCall>,
    #[serde(default)]
    pub refusal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged, expecting = "a string, null, or an array of content parts")]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One content part. Kept loose (`type` is a string, payloads are raw JSON) so that an unsupported
/// part becomes a precise 400 rather than a serde error.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ContentPart {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_audio: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ToolCall {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub function: Option<FunctionCall>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct FunctionCall {
    #[serde(default)]
    pub name: String,
    /// A JSON document as a string, per OpenAI; any JSON value is tolerated.
    #[serde(default)]
    pub arguments: Value,
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

/// A request reduced to what the gateway acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidChat {
    pub messages: Vec<Message>,
    pub stream: bool,
    /// `stream_options.include_usage` on a streaming request (a final usage chunk is wanted).
    pub include_usage: bool,
    /// Non-empty stop sequences (empty strings are dropped: they would stop before any output).
    pub stop: Vec<String>,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u32>,
    /// Trimmed; `None` when absent or blank (the gateway's default model applies).
    pub model: Option<String>,
    pub user: Option<String>,
    pub prompt_cache_key: Option<String>,
    /// Parameters the client set that have no effect here (for a log line or a header).
    pub ignored_params: Vec<&'static str>,
}

/// Checks a request and converts its messages. Every error is a 400 naming the `param`.
pub fn validate(req: &ChatCompletionRequest) -> Result<ValidChat, GatewayError> {
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
    check_tools(req)?;

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

    Ok(ValidChat {
        messages,
        stream,
        include_usage,
        stop: req.stop.iter().filter(|s| !s.is_empty()).cloned().collect(),
        max_tokens,
        model: req
            .model
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned),
        user: req.user.clone(),
        prompt_cache_key: req.prompt_cache_key.clone(),
        ignored_params: ignored_params(req),
    })
}

fn check_tools(req: &ChatCompletionRequest) -> Result<(), GatewayError> {
    const NO_TOOLS: &str = "Function calling is not supported: Lingma has no tool-calling API. \
                            Remove `tools` (an empty array is accepted).";
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(GatewayError::invalid_param_code(
            NO_TOOLS,
            "tools",
            "tools_not_supported",
        ));
    }
    if req.functions.as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(GatewayError::invalid_param_code(
            "Function calling is not supported: Lingma has no tool-calling API. Remove `functions`.",
            "functions",
            "tools_not_supported",
        ));
    }
    // "none"/"auto" (or null) are harmless without tools; "required" or a named function would
    // promise a call the gateway cannot make.
    for (param, value) in [
        ("tool_choice", &req.tool_choice),
        ("function_call", &req.function_call),
    ] {
        match value {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "none" || s == "auto" => {}
            Some(_) => {
                return Err(GatewayError::invalid_param_code(
                    format!(
                        "`{param}` can only be \"none\" or \"auto\": Lingma has no tool-calling API"
                    ),
                    param,
                    "tools_not_supported",
                ));
            }
        }
    }
    Ok(())
}

fn ignored_params(req: &ChatCompletionRequest) -> Vec<&'static str> {
    let response_format_is_text = req
        .response_format
        .as_ref()
        .is_none_or(|f| f.is_null() || f.get("type").and_then(Value::as_str) == Some("text"));
    let flags = [
        ("temperature", req.temperature.is_some()),
        ("top_p", req.top_p.is_some()),
        ("presence_penalty", req.presence_penalty.is_some()),
        ("frequency_penalty", req.frequency_penalty.is_some()),
        ("seed", req.seed.is_some()),
        (
            "logit_bias",
            req.logit_bias
                .as_ref()
                .is_some_and(|b| !b.is_null() && b.as_object().is_none_or(|o| !o.is_empty())),
        ),
        ("logprobs", req.logprobs == Some(true)),
        ("top_logprobs", req.top_logprobs.is_some()),
        ("response_format", !response_format_is_text),
        ("parallel_tool_calls", req.parallel_tool_calls.is_some()),
        ("reasoning_effort", req.reasoning_effort.is_some()),
        (
            "metadata",
            req.metadata.as_ref().is_some_and(|m| !m.is_null()),
        ),
        ("store", req.store == Some(true)),
        ("service_tier", req.service_tier.is_some()),
    ];
    flags
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
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
    let mut content = match &m.content {
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
    if role == Role::Assistant {
        append_tool_calls(&mut content, m);
    }
    let tool_call_id = match m.role.as_str() {
        "tool" => m.tool_call_id.clone(),
        // Legacy function results carry the function's name instead of a call id.
        "function" => m.name.clone().or_else(|| m.tool_call_id.clone()),
        _ => None,
    };
    Ok(Message {
        role,
        content,
        tool_call_id,
    })
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

/// Renders an assistant's tool calls as text lines after its content, so that a conversation
/// that used tools elsewhere still reads coherently to Lingma.
fn append_tool_calls(content: &mut String, m: &RequestMessage) {
    let calls = m
        .tool_calls
        .iter()
        .flatten()
        .filter_map(|c| c.function.as_ref().map(|f| (c.id.as_deref(), f)))
        .chain(m.function_call.as_ref().map(|f| (None, f)));
    for (id, f) in calls {
        if !content.is_empty() {
            content.push('\n');
        }
        content.push_str("[Tool call");
        if let Some(id) = id {
            content.push(' ');
            content.push_str(id);
        }
        content.push_str("] ");
        content.push_str(&f.name);
        content.push('(');
        match &f.arguments {
            Value::String(s) => content.push_str(s),
            Value::Null => {}
            other => content.push_str(&other.to_string()),
        }
        content.push(')');
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// `"chatcmpl-" + 32 hex`.
pub fn new_completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Natural end of the answer or a stop sequence was hit.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// Lingma filtered the answer (`chat/answer.isFiltered`).
    ContentFilter,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ContentFilter => "content_filter",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

impl Usage {
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }
}

/// A non-streaming answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: Usage,
    pub system_fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: FinishReason,
    /// Always `null`: logprobs are not available.
    pub logprobs: Option<()>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

impl ChatCompletion {
    pub fn new(
        id: impl Into<String>,
        created: u64,
        model: impl Into<String>,
        content: String,
        reasoning_content: Option<String>,
        finish_reason: FinishReason,
        usage: Usage,
    ) -> Self {
        Self {
            id: id.into(),
            object: "chat.completion",
            created,
            model: model.into(),
            choices: vec![Choice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content,
                    reasoning_content: reasoning_content.filter(|r| !r.is_empty()),
                },
                finish_reason,
                logprobs: None,
            }],
            usage,
            system_fingerprint: None,
        }
    }
}

/// One SSE event of a streamed answer. Borrows its strings: chunks are built and serialized
/// immediately, one per upstream delta, so nothing is copied for them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatCompletionChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub system_fingerprint: Option<&'a str>,
    pub choices: Vec<ChunkChoice<'a>>,
    /// Only on the final usage chunk (when `stream_options.include_usage`), whose `choices` is `[]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkChoice<'a> {
    pub index: u32,
    pub delta: Delta<'a>,
    pub finish_reason: Option<FinishReason>,
    pub logprobs: Option<()>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
}

/// The constant part of every chunk of one streamed answer; builds each chunk shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkBuilder {
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl ChunkBuilder {
    pub fn new(id: impl Into<String>, created: u64, model: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            created,
            model: model.into(),
        }
    }

    /// A fresh id and the current time.
    pub fn start(model: impl Into<String>) -> Self {
        Self::new(new_completion_id(), unix_time(), model)
    }

    fn chunk<'a>(
        &'a self,
        delta: Delta<'a>,
        finish_reason: Option<FinishReason>,
    ) -> ChatCompletionChunk<'a> {
        ChatCompletionChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: None,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                logprobs: None,
            }],
            usage: None,
        }
    }

    /// First chunk: `delta: {"role":"assistant","content":""}`.
    pub fn role(&self) -> ChatCompletionChunk<'_> {
        self.chunk(
            Delta {
                role: Some("assistant"),
                content: Some(""),
                reasoning_content: None,
            },
            None,
        )
    }

    pub fn content<'a>(&'a self, text: &'a str) -> ChatCompletionChunk<'a> {
        self.chunk(
            Delta {
                content: Some(text),
                ..Delta::default()
            },
            None,
        )
    }

    pub fn reasoning<'a>(&'a self, text: &'a str) -> ChatCompletionChunk<'a> {
        self.chunk(
            Delta {
                reasoning_content: Some(text),
                ..Delta::default()
            },
            None,
        )
    }

    /// Last choice chunk: empty delta and the finish reason.
    pub fn finish(&self, reason: FinishReason) -> ChatCompletionChunk<'_> {
        self.chunk(Delta::default(), Some(reason))
    }

    /// Final chunk when `include_usage`: `choices: []` and the usage.
    pub fn usage(&self, usage: Usage) -> ChatCompletionChunk<'_> {
        ChatCompletionChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: None,
            choices: Vec::new(),
            usage: Some(usage),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelObject {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: String,
}

impl ModelObject {
    pub fn new(id: impl Into<String>, created: u64, owned_by: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            object: "model",
            created,
            owned_by: owned_by.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelObject>,
}

impl ModelList {
    pub fn new(data: Vec<ModelObject>) -> Self {
        Self {
            object: "list",
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> ChatCompletionRequest {
        serde_json::from_value(v).unwrap()
    }

    fn valid(v: Value) -> ValidChat {
        validate(&parse(v)).unwrap()
    }

    #[track_caller]
    fn invalid(v: Value) -> (String, Option<String>) {
        match validate(&parse(v)) {
            Ok(ok) => panic!("expected an error, got {ok:?}"),
            Err(GatewayError::InvalidRequest { message, param, .. }) => (message, param),
            Err(other) => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    fn user(text: &str) -> Message {
        Message::new(Role::User, text)
    }

    #[test]
    fn openai_sdk_style_request() {
        let v = valid(json!({
            "model": "qwen3-coder",
            "messages": [
                {"role": "system", "content": "You are helpful."},
                {"role": "user", "content": "Hello!"}
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 0.2,
            "max_tokens": 256,
            "stop": "\n\n",
            "user": "u-1",
            "prompt_cache_key": "conv-9"
        }));
        assert_eq!(
            v.messages,
            vec![
                Message::new(Role::System, "You are helpful."),
                user("Hello!")
            ]
        );
        assert!(v.stream && v.include_usage);
        assert_eq!(v.stop, vec!["\n\n".to_string()]);
        assert_eq!(v.max_tokens, Some(256));
        assert_eq!(v.model.as_deref(), Some("qwen3-coder"));
        assert_eq!(v.user.as_deref(), Some("u-1"));
        assert_eq!(v.prompt_cache_key.as_deref(), Some("conv-9"));
        assert_eq!(v.ignored_params, vec!["temperature"]);
    }

    #[test]
    fn langchain_style_content_parts_and_nulls() {
        let v = valid(json!({
            "model": "m",
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "line one"},
                    {"type": "text", "text": "line two"}
                ], "name": "alice"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\":21}"},
            ],
            "stream": false,
            "stop": null,
            "n": 1,
            "tools": [],
            "tool_choice": "auto",
            "stream_options": null,
            "logit_bias": {},
            "response_format": {"type": "text"}
        }));
        assert_eq!(
            v.messages,
            vec![
                Message::new(Role::System, "Be brief."),
                user("line one\nline two"),
                Message::new(
                    Role::Assistant,
                    "[Tool call call_1] get_weather({\"city\":\"Paris\"})"
                ),
                Message {
                    role: Role::Tool,
                    content: "{\"temp\":21}".into(),
                    tool_call_id: Some("call_1".into())
                },
            ]
        );
        assert!(!v.stream && !v.include_usage);
        assert!(v.stop.is_empty());
        assert!(v.ignored_params.is_empty(), "{:?}", v.ignored_params);
    }

    #[test]
    fn continue_and_aider_style_requests() {
        // Continue: many sampling options, stop list, max_tokens, and extra unknown fields.
        let v = valid(json!({
            "model": "qwen-max",
            "messages": [
                {"role": "system", "content": "<important_rules>...</important_rules>"},
                {"role": "user", "content": "write fib"},
                {"role": "assistant", "content": "def fib(n): ..."},
                {"role": "user", "content": "now in rust"}
            ],
            "max_tokens": 4096,
            "temperature": 0.0,
            "top_p": 1,
            "frequency_penalty": 0,
            "presence_penalty": 0,
            "stop": ["<|endoftext|>", "```\n\n"],
            "stream": true,
            "some_future_param": {"x": 1},
            "prediction": {"type": "content", "content": "..."}
        }));
        assert_eq!(v.messages.len(), 4);
        assert_eq!(v.stop.len(), 2);
        assert!(v.stream && !v.include_usage);
        assert_eq!(
            v.ignored_params,
            vec![
                "temperature",
                "top_p",
                "presence_penalty",
                "frequency_penalty"
            ]
        );
        // aider: plain messages, stream, and an assistant prefix echo in the history.
        let v = valid(json!({
            "model": "openai/qwen",
            "messages": [
                {"role": "user", "content": "I added these files"},
                {"role": "assistant", "content": "Ok."},
                {"role": "user", "content": "Change x"}
            ],
            "stream": true,
            "temperature": 0
        }));
        assert_eq!(v.messages[1], Message::new(Role::Assistant, "Ok."));
    }

    #[test]
    fn json_schema_response_format_and_friends_are_accepted_but_ignored() {
        let v = valid(json!({
            "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
            "seed": 1, "logprobs": true, "top_logprobs": 2, "reasoning_effort": "low",
            "metadata": {"k": "v"}, "store": true, "service_tier": "auto",
            "parallel_tool_calls": false, "logit_bias": {"50256": -100}
        }));
        assert_eq!(
            v.ignored_params,
            vec![
                "seed",
                "logit_bias",
                "logprobs",
                "top_logprobs",
                "response_format",
                "parallel_tool_calls",
                "reasoning_effort",
                "metadata",
                "store",
                "service_tier"
            ]
        );
        assert_eq!(v.model, None);
    }

    #[test]
    fn role_mapping() {
        let v = valid(json!({"messages": [
            {"role": "developer", "content": "d"},
            {"role": "system", "content": "s"},
            {"role": "assistant", "content": "a"},
            {"role": "function", "name": "lookup", "content": "42"},
        ]}));
        let roles: Vec<Role> = v.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [Role::System, Role::System, Role::Assistant, Role::Tool]
        );
        assert_eq!(v.messages[3].tool_call_id.as_deref(), Some("lookup"));
    }

    #[test]
    fn legacy_function_call_and_refusal_are_rendered() {
        let v = valid(json!({"messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "thinking", "function_call": {"name": "f", "arguments": "{}"}},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't"}]},
            {"role": "assistant", "content": null, "refusal": "nope"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "a", "arguments": {"x": 1}}},
                {"id": "c2", "type": "function", "function": {"name": "b", "arguments": ""}}
            ]},
            {"role": "user", "content": "go"},
        ]}));
        assert_eq!(v.messages[1].content, "thinking\n[Tool call] f({})");
        assert_eq!(v.messages[2].content, "I can't");
        assert_eq!(v.messages[3].content, "nope");
        assert_eq!(
            v.messages[4].content,
            "[Tool call c1] a({\"x\":1})\n[Tool call c2] b()"
        );
    }

    #[test]
    fn model_is_trimmed_and_blank_means_default() {
        let m = |model: Value| {
            valid(json!({"model": model, "messages": [{"role": "user", "content": "x"}]})).model
        };
        assert_eq!(m(json!(" qwen ")), Some("qwen".into()));
        assert_eq!(m(json!("")), None);
        assert_eq!(m(json!("  ")), None);
        assert_eq!(m(Value::Null), None);
    }

    #[test]
    fn max_completion_tokens_wins_and_empty_stops_are_dropped() {
        let v = valid(json!({
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 10, "max_completion_tokens": 20, "stop": ["", "END"]
        }));
        assert_eq!(v.max_tokens, Some(20));
        assert_eq!(v.stop, vec!["END".to_string()]);
    }

    #[test]
    fn include_usage_only_when_streaming() {
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
                json!({"messages": [{"role": "user", "content": [
                    {"type": "input_audio", "input_audio": {"data": "..", "format": "wav"}}
                ]}]}),
                "messages[0].content[0]",
                "audio input is not supported",
            ),
            (
                json!({"messages": [{"role": "user", "content": [
                    {"type": "file", "file": {"file_id": "f"}}
                ]}]}),
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
                json!({"messages": [u], "tools": [{"type": "function", "function": {"name": "f"}}]}),
                "tools",
                "Function calling is not supported",
            ),
            (
                json!({"messages": [u], "functions": [{"name": "f"}]}),
                "functions",
                "Function calling is not supported",
            ),
            (
                json!({"messages": [u], "tools": [], "tool_choice": "required"}),
                "tool_choice",
                "\"none\" or \"auto\"",
            ),
            (
                json!({"messages": [u], "tool_choice": {"type": "function", "function": {"name": "f"}}}),
                "tool_choice",
                "\"none\" or \"auto\"",
            ),
            (
                json!({"messages": [u], "function_call": {"name": "f"}}),
                "function_call",
                "\"none\" or \"auto\"",
            ),
        ];
        for (body, param, needle) in cases {
            let (message, got) = invalid(body.clone());
            assert_eq!(got.as_deref(), Some(param), "{body}");
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
    }

    #[test]
    fn tools_errors_have_a_code_and_status_400() {
        let err = validate(&parse(json!({
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function"}]
        })))
        .unwrap_err();
        assert_eq!(err.status_code(), 400);
        assert_eq!(err.code(), Some("tools_not_supported"));
        let ok = validate(&parse(json!({
            "messages": [{"role": "user", "content": "x"}],
            "tools": [], "tool_choice": "none", "functions": [], "function_call": "auto"
        })));
        assert!(ok.is_ok(), "{ok:?}");
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

    #[test]
    fn role_chunk_shape() {
        let b = ChunkBuilder::new("chatcmpl-1", 1700000000, "qwen");
        assert_eq!(
            serde_json::to_value(b.role()).unwrap(),
            json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000,
                "model": "qwen", "system_fingerprint": null,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                             "finish_reason": null, "logprobs": null}]
            })
        );
    }

    #[test]
    fn content_and_reasoning_chunk_shapes() {
        let b = ChunkBuilder::new("chatcmpl-1", 5, "qwen");
        assert_eq!(
            serde_json::to_value(b.content("Hel")).unwrap(),
            json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5,
                "model": "qwen", "system_fingerprint": null,
                "choices": [{"index": 0, "delta": {"content": "Hel"},
                             "finish_reason": null, "logprobs": null}]
            })
        );
        assert_eq!(
            serde_json::to_value(b.reasoning("hmm")).unwrap()["choices"][0]["delta"],
            json!({"reasoning_content": "hmm"})
        );
    }

    #[test]
    fn finish_and_usage_chunk_shapes() {
        let b = ChunkBuilder::new("chatcmpl-1", 5, "qwen");
        assert_eq!(
            serde_json::to_value(b.finish(FinishReason::Length)).unwrap(),
            json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5,
                "model": "qwen", "system_fingerprint": null,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "length", "logprobs": null}]
            })
        );
        assert_eq!(
            serde_json::to_value(b.usage(Usage::new(10, 3))).unwrap(),
            json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5,
                "model": "qwen", "system_fingerprint": null, "choices": [],
                "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
            })
        );
    }

    #[test]
    fn chat_completion_shape() {
        let c = ChatCompletion::new(
            "chatcmpl-9",
            7,
            "qwen",
            "pong".into(),
            None,
            FinishReason::Stop,
            Usage::new(3, 1),
        );
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({
                "id": "chatcmpl-9", "object": "chat.completion", "created": 7, "model": "qwen",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"},
                             "finish_reason": "stop", "logprobs": null}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                "system_fingerprint": null
            })
        );
        let c = ChatCompletion::new(
            "x",
            7,
            "qwen",
            "a".into(),
            Some("why".into()),
            FinishReason::ContentFilter,
            Usage::default(),
        );
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["choices"][0]["message"]["reasoning_content"], "why");
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    }

    #[test]
    fn model_list_shape() {
        let list = ModelList::new(vec![ModelObject::new("qwen", 1, "lingma")]);
        assert_eq!(
            serde_json::to_value(&list).unwrap(),
            json!({"object": "list", "data": [
                {"id": "qwen", "object": "model", "created": 1, "owned_by": "lingma"}
            ]})
        );
    }

    #[test]
    fn ids_and_time() {
        let id = new_completion_id();
        assert!(id.starts_with("chatcmpl-") && id.len() == 9 + 32, "{id}");
        assert_ne!(id, new_completion_id());
        assert!(unix_time() > 1_600_000_000);
        let b = ChunkBuilder::start("m");
        assert!(b.id.starts_with("chatcmpl-"));
        assert_eq!(FinishReason::Length.as_str(), "length");
        assert_eq!(Usage::new(u32::MAX, 1).total_tokens, u32::MAX);
    }
}
