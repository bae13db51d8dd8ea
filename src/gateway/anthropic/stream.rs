//! Turn events rendered as Anthropic Messages: the SSE stream in Anthropic's exact event order,
//! and the one message object of a non-streaming answer.

use axum::body::Bytes;
use axum::response::Response;
use serde::Serialize;
use serde_json::{Value, json};

use crate::gateway::event_stream;
use crate::turn::{FinishReason, Turn, TurnEvent, TurnOutput};

/// `msg_` + 24 hex characters.
pub fn new_message_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("msg_{}", &id[..24])
}

/// Anthropic's `stop_reason` and `stop_sequence`.
fn stop_of(reason: &FinishReason) -> (&'static str, Value) {
    match reason {
        FinishReason::Stop => ("end_turn", Value::Null),
        FinishReason::Length => ("max_tokens", Value::Null),
        FinishReason::StopSequence(s) => ("stop_sequence", Value::String(s.clone())),
        FinishReason::ToolCalls => ("tool_use", Value::Null),
    }
}

/// The message of a non-streaming answer: thinking (when asked for), text, then tool uses.
pub fn message(model: &str, out: TurnOutput, thinking: bool) -> Value {
    let mut content = Vec::new();
    if thinking && !out.reasoning.is_empty() {
        content
            .push(json!({"type": "thinking", "thinking": out.reasoning, "signature": SIGNATURE}));
    }
    if !out.text.is_empty() || out.tool_calls.is_empty() {
        content.push(json!({"type": "text", "text": out.text}));
    }
    for c in out.tool_calls {
        content.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.input}));
    }
    let (stop_reason, stop_sequence) = stop_of(&out.finish);
    json!({
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {
            "input_tokens": out.usage.prompt_tokens,
            "output_tokens": out.usage.completion_tokens,
        },
    })
}

/// Thinking blocks carry a signature; Lingma's reasoning has none to give, and the gateway drops
/// thinking blocks from the question, so this only has to be present.
const SIGNATURE: &str = "lingma-gw";

/// The SSE response of a streamed answer.
pub fn response(turn: Turn, model: String, thinking: bool) -> Response {
    let state = Stream {
        turn,
        model,
        thinking,
        started: false,
        over: false,
        next_index: 0,
        open: None,
    };
    event_stream::response(state)
}

impl event_stream::EventSource for Stream {
    fn next_bytes(&mut self) -> impl Future<Output = Option<Bytes>> + Send {
        self.advance()
    }
}

/// The kind of the content block that is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    ToolUse,
}

struct Stream {
    turn: Turn,
    model: String,
    thinking: bool,
    started: bool,
    over: bool,
    next_index: usize,
    open: Option<(usize, Open)>,
}

fn event(out: &mut Vec<u8>, name: &str, data: &impl Serialize) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    if serde_json::to_writer(&mut *out, data).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
}

/// A `content_block_delta` event's data, written straight from the borrowed text (most events of
/// a stream are these: no `Value` built per delta). The bytes are those of the `json!` form.
#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
    delta: Delta<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum Delta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
}

fn block_delta(out: &mut Vec<u8>, index: usize, delta: Delta<'_>) {
    let data = BlockDelta {
        kind: "content_block_delta",
        index,
        delta,
    };
    event(out, "content_block_delta", &data);
}

impl Stream {
    async fn advance(&mut self) -> Option<Bytes> {
        if self.over {
            return None;
        }
        let mut out = Vec::with_capacity(256);
        if !self.started {
            self.started = true;
            let start = json!({
                "type": "message_start",
                "message": {
                    "id": new_message_id(), "type": "message", "role": "assistant",
                    "model": self.model, "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": self.turn.prompt_tokens(), "output_tokens": 0},
                },
            });
            event(&mut out, "message_start", &start);
            return Some(Bytes::from(out));
        }
        match self.turn.next().await {
            None => {
                self.over = true;
                return None;
            }
            Some(Ok(TurnEvent::Text(t))) => {
                let i =
                    self.ensure_open(&mut out, Open::Text, || json!({"type": "text", "text": ""}));
                block_delta(&mut out, i, Delta::Text { text: &t });
            }
            Some(Ok(TurnEvent::Reasoning(t))) => {
                if !self.thinking {
                    return Some(Bytes::new());
                }
                let i = self.ensure_open(
                    &mut out,
                    Open::Thinking,
                    || json!({"type": "thinking", "thinking": "", "signature": ""}),
                );
                block_delta(&mut out, i, Delta::Thinking { thinking: &t });
            }
            Some(Ok(TurnEvent::ToolCallStart { id, name, .. })) => {
                self.close(&mut out);
                // Claude Code builds the input from the deltas only, never from this `input`.
                self.start_block(
                    &mut out,
                    Open::ToolUse,
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                );
            }
            Some(Ok(TurnEvent::ToolCallDelta { delta, .. })) => {
                if let Some((i, Open::ToolUse)) = self.open {
                    block_delta(
                        &mut out,
                        i,
                        Delta::InputJson {
                            partial_json: &delta,
                        },
                    );
                }
            }
            Some(Ok(TurnEvent::ToolCallEnd { .. })) => self.close(&mut out),
            Some(Ok(TurnEvent::KeepAlive)) => event(&mut out, "ping", &json!({"type": "ping"})),
            Some(Ok(TurnEvent::Finish { reason, usage })) => {
                self.close(&mut out);
                let (stop_reason, stop_sequence) = stop_of(&reason);
                let delta = json!({
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                    "usage": {"output_tokens": usage.completion_tokens},
                });
                event(&mut out, "message_delta", &delta);
                event(&mut out, "message_stop", &json!({"type": "message_stop"}));
                self.over = true;
            }
            Some(Err(e)) => {
                tracing::warn!(instance = %self.turn.instance(), error = %e, "stream failed mid-answer");
                event(&mut out, "error", &super::error::body(&e, None));
                self.over = true;
            }
        }
        Some(Bytes::from(out))
    }

    /// The index of an open block of `kind`, opening one (and closing another) when needed.
    fn ensure_open(
        &mut self,
        out: &mut Vec<u8>,
        kind: Open,
        block: impl FnOnce() -> Value,
    ) -> usize {
        match self.open {
            Some((i, k)) if k == kind => i,
            _ => {
                self.close(out);
                self.start_block(out, kind, block())
            }
        }
    }

    fn start_block(&mut self, out: &mut Vec<u8>, kind: Open, block: Value) -> usize {
        let i = self.next_index;
        self.next_index += 1;
        let start = json!({"type": "content_block_start", "index": i, "content_block": block});
        event(out, "content_block_start", &start);
        self.open = Some((i, kind));
        i
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((i, kind)) = self.open.take() {
            if kind == Open::Thinking {
                block_delta(
                    out,
                    i,
                    Delta::Signature {
                        signature: SIGNATURE,
                    },
                );
            }
            event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": i}),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::{ToolCall, Usage};

    #[test]
    fn a_block_delta_is_the_bytes_of_its_json_form() {
        let text = "Hello, \"quoted\" é\n\t\u{1}😀 </script>";
        let cases = [
            (
                Delta::Text { text },
                json!({"type": "text_delta", "text": text}),
            ),
            (
                Delta::Thinking { thinking: text },
                json!({"type": "thinking_delta", "thinking": text}),
            ),
            (
                Delta::InputJson {
                    partial_json: "{\"a\": [1,",
                },
                json!({"type": "input_json_delta", "partial_json": "{\"a\": [1,"}),
            ),
            (
                Delta::Signature {
                    signature: SIGNATURE,
                },
                json!({"type": "signature_delta", "signature": SIGNATURE}),
            ),
        ];
        for (i, (delta, expected)) in cases.into_iter().enumerate() {
            let mut typed = Vec::new();
            block_delta(&mut typed, i, delta);
            let mut plain = Vec::new();
            event(
                &mut plain,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": i, "delta": expected}),
            );
            assert_eq!(
                String::from_utf8(typed).unwrap(),
                String::from_utf8(plain).unwrap()
            );
        }
    }

    #[test]
    fn a_non_streaming_message_has_blocks_stop_reason_and_usage() {
        let out = TurnOutput {
            text: "I'll write it.".into(),
            reasoning: "thinking...".into(),
            tool_calls: vec![ToolCall {
                id: "toolu_1".into(),
                name: "Write".into(),
                input: json!({"a": 1}),
            }],
            finish: FinishReason::ToolCalls,
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 4,
            },
        };
        let m = message("claude-opus-5-5", out.clone(), false);
        assert_eq!(m["model"], "claude-opus-5-5");
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(
            m["content"][0],
            json!({"type": "text", "text": "I'll write it."})
        );
        assert_eq!(
            m["content"][1],
            json!({"type": "tool_use", "id": "toolu_1", "name": "Write", "input": {"a": 1}})
        );
        assert_eq!(m["usage"], json!({"input_tokens": 10, "output_tokens": 4}));
        let m = message("m", out, true);
        assert_eq!(m["content"][0]["type"], "thinking");
        assert!(new_message_id().starts_with("msg_") && new_message_id().len() == 28);
        let (r, s) = stop_of(&FinishReason::StopSequence("END".into()));
        assert_eq!((r, s), ("stop_sequence", json!("END")));
    }
}
