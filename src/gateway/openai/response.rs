//! OpenAI's response shapes: the `chat.completion` object, the `chat.completion.chunk` events of a
//! stream (text, reasoning, tool-call deltas exactly as OpenAI sends them, finish, usage), and the
//! model list.

use serde::Serialize;
use serde_json::Value;

use crate::turn::{FinishReason, ToolCall, TurnOutput, Usage};

/// `"chatcmpl-" + 32 hex`.
pub fn new_completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

/// OpenAI's `finish_reason`.
pub fn finish_reason(reason: &FinishReason, legacy_functions: bool) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::StopSequence(_) => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls if legacy_functions => "function_call",
        FinishReason::ToolCalls => "tool_calls",
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WireUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

impl From<Usage> for WireUsage {
    fn from(u: Usage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total(),
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
    pub usage: WireUsage,
    pub system_fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: &'static str,
    /// Always `null`: logprobs are not available.
    pub logprobs: Option<()>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    /// `null` when the answer is only tool calls, as OpenAI sends it.
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<WireToolCall>,
    /// Legacy `functions` requests: the (first) call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_call: Option<WireFunction>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WireToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: WireFunction,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WireFunction {
    pub name: String,
    /// The arguments as a JSON document in a string.
    pub arguments: String,
}

fn wire_function(c: &ToolCall) -> WireFunction {
    WireFunction {
        name: c.name.clone(),
        arguments: match &c.input {
            Value::String(raw) => raw.clone(),
            other => other.to_string(),
        },
    }
}

impl ChatCompletion {
    pub fn new(id: String, created: u64, model: String, out: TurnOutput, legacy: bool) -> Self {
        let calls: Vec<WireToolCall> = out
            .tool_calls
            .iter()
            .map(|c| WireToolCall {
                id: c.id.clone(),
                kind: "function",
                function: wire_function(c),
            })
            .collect();
        let content = (!out.text.is_empty() || calls.is_empty()).then_some(out.text);
        let (tool_calls, function_call) = if legacy {
            (Vec::new(), out.tool_calls.first().map(wire_function))
        } else {
            (calls, None)
        };
        Self {
            id,
            object: "chat.completion",
            created,
            model,
            choices: vec![Choice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content,
                    reasoning_content: (!out.reasoning.is_empty()).then_some(out.reasoning),
                    tool_calls,
                    function_call,
                },
                finish_reason: finish_reason(&out.finish, legacy),
                logprobs: None,
            }],
            usage: out.usage.into(),
            system_fingerprint: None,
        }
    }
}

/// One SSE event of a streamed answer. Borrows its strings: chunks are built and serialized
/// immediately, one per event, so nothing is copied for them.
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
    pub usage: Option<WireUsage>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkChoice<'a> {
    pub index: u32,
    pub delta: Delta<'a>,
    pub finish_reason: Option<&'static str>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<[ToolCallDelta<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionDelta<'a>>,
}

/// A call in a chunk: the first one carries id, type and name (and empty arguments); the next
/// ones only the index and a piece of the arguments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallDelta<'a> {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionDelta<'a>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub arguments: &'a str,
}

/// The constant part of every chunk of one streamed answer; builds each chunk shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkBuilder {
    pub id: String,
    pub created: u64,
    pub model: String,
    /// Calls go out as the legacy `function_call` delta.
    pub legacy: bool,
}

impl ChunkBuilder {
    pub fn new(id: impl Into<String>, created: u64, model: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            created,
            model: model.into(),
            legacy: false,
        }
    }

    fn chunk<'a>(
        &'a self,
        delta: Delta<'a>,
        finish_reason: Option<&'static str>,
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
                ..Delta::default()
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

    /// The start of a call: id, type, name, and empty arguments.
    pub fn call_start<'a>(
        &'a self,
        index: usize,
        id: &'a str,
        name: &'a str,
    ) -> ChatCompletionChunk<'a> {
        let function = FunctionDelta {
            name: Some(name),
            arguments: "",
        };
        self.chunk(self.call_delta(index, Some(id), function), None)
    }

    /// A piece of a call's arguments.
    pub fn call_arguments<'a>(&'a self, index: usize, piece: &'a str) -> ChatCompletionChunk<'a> {
        let function = FunctionDelta {
            name: None,
            arguments: piece,
        };
        self.chunk(self.call_delta(index, None, function), None)
    }

    fn call_delta<'a>(
        &self,
        index: usize,
        id: Option<&'a str>,
        function: FunctionDelta<'a>,
    ) -> Delta<'a> {
        if self.legacy {
            return Delta {
                function_call: Some(function),
                ..Delta::default()
            };
        }
        Delta {
            tool_calls: Some([ToolCallDelta {
                index,
                id,
                kind: id.map(|_| "function"),
                function,
            }]),
            ..Delta::default()
        }
    }

    /// Last choice chunk: empty delta and the finish reason.
    pub fn finish(&self, reason: &FinishReason) -> ChatCompletionChunk<'_> {
        self.chunk(Delta::default(), Some(finish_reason(reason, self.legacy)))
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
            usage: Some(usage.into()),
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

    #[test]
    fn role_content_and_reasoning_chunks() {
        let b = ChunkBuilder::new("chatcmpl-1", 5, "qwen");
        assert_eq!(
            serde_json::to_value(b.role()).unwrap(),
            json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5,
                "model": "qwen", "system_fingerprint": null,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                             "finish_reason": null, "logprobs": null}]
            })
        );
        assert_eq!(
            serde_json::to_value(b.content("Hel")).unwrap()["choices"][0]["delta"],
            json!({"content": "Hel"})
        );
        assert_eq!(
            serde_json::to_value(b.reasoning("hmm")).unwrap()["choices"][0]["delta"],
            json!({"reasoning_content": "hmm"})
        );
    }

    #[test]
    fn tool_call_chunks_as_openai_streams_them() {
        let b = ChunkBuilder::new("chatcmpl-1", 5, "qwen");
        assert_eq!(
            serde_json::to_value(b.call_start(1, "call_x", "ls")).unwrap()["choices"][0]["delta"],
            json!({"tool_calls": [{"index": 1, "id": "call_x", "type": "function",
                                   "function": {"name": "ls", "arguments": ""}}]})
        );
        assert_eq!(
            serde_json::to_value(b.call_arguments(1, "{\"a\":")).unwrap()["choices"][0]["delta"],
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"a\":"}}]})
        );
        let v = serde_json::to_value(b.finish(&FinishReason::ToolCalls)).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["choices"][0]["delta"], json!({}));
        let mut legacy = b.clone();
        legacy.legacy = true;
        assert_eq!(
            serde_json::to_value(legacy.call_start(0, "f", "f")).unwrap()["choices"][0]["delta"],
            json!({"function_call": {"name": "f", "arguments": ""}})
        );
        assert_eq!(
            serde_json::to_value(legacy.finish(&FinishReason::ToolCalls)).unwrap()["choices"][0]["finish_reason"],
            "function_call"
        );
    }

    #[test]
    fn finish_and_usage_chunks() {
        let b = ChunkBuilder::new("chatcmpl-1", 5, "qwen");
        let f = serde_json::to_value(b.finish(&FinishReason::StopSequence("x".into()))).unwrap();
        assert_eq!(f["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            serde_json::to_value(b.usage(Usage {
                prompt_tokens: 10,
                completion_tokens: 3
            }))
            .unwrap(),
            json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5,
                "model": "qwen", "system_fingerprint": null, "choices": [],
                "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
            })
        );
    }

    #[test]
    fn completion_with_text_with_calls_and_legacy() {
        let out = |text: &str, calls: Vec<ToolCall>, finish| TurnOutput {
            text: text.into(),
            reasoning: String::new(),
            tool_calls: calls,
            finish,
            usage: Usage {
                prompt_tokens: 3,
                completion_tokens: 1,
            },
        };
        let c = ChatCompletion::new(
            "chatcmpl-9".into(),
            7,
            "qwen".into(),
            out("pong", vec![], FinishReason::Stop),
            false,
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
        let call = ToolCall {
            id: "call_1".into(),
            name: "ls".into(),
            input: json!({"d": "/"}),
        };
        let c = ChatCompletion::new(
            "x".into(),
            7,
            "q".into(),
            out("", vec![call.clone()], FinishReason::ToolCalls),
            false,
        );
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"],
            json!([{"id": "call_1", "type": "function", "function": {"name": "ls", "arguments": "{\"d\":\"/\"}"}}])
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        let c = ChatCompletion::new(
            "x".into(),
            7,
            "q".into(),
            out("", vec![call], FinishReason::ToolCalls),
            true,
        );
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["choices"][0]["message"]["function_call"]["name"], "ls");
        assert!(v["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(v["choices"][0]["finish_reason"], "function_call");
    }

    #[test]
    fn ids_and_model_list() {
        let id = new_completion_id();
        assert!(id.starts_with("chatcmpl-") && id.len() == 9 + 32, "{id}");
        let list = ModelList::new(vec![ModelObject::new("qwen", 1, "lingma")]);
        assert_eq!(
            serde_json::to_value(&list).unwrap(),
            json!({"object": "list", "data": [{"id": "qwen", "object": "model", "created": 1, "owned_by": "lingma"}]})
        );
    }
}
