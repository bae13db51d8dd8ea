//! Turn events as an OpenAI response: the output items (reasoning summaries, the message, each
//! call as its own `function_call` or `custom_tool_call` item) and the streaming events that build
//! them, every one with a `sequence_number`. One [`Builder`] serves both: a stream writes its
//! events out, a non-streaming request only keeps the final response object.

use serde_json::{Value, json};

use super::request::{Echo, NAMESPACE_SEP};
use crate::error::GatewayError;
use crate::turn::{FinishReason, Message, Role, ToolCall, TurnEvent, Usage};

fn hex_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// `resp_` + 32 hex.
pub fn new_response_id() -> String {
    hex_id("resp")
}

/// The item being built.
enum Open {
    Reasoning {
        id: String,
        index: usize,
        text: String,
    },
    Message {
        id: String,
        index: usize,
        text: String,
    },
    Call {
        id: String,
        index: usize,
        call: ToolCall,
        args: String,
        custom: bool,
    },
}

pub struct Builder {
    pub id: String,
    created_at: u64,
    model: String,
    echo: Echo,
    store: bool,
    summaries: bool,
    namespaces: Vec<String>,
    custom_tools: Vec<String>,
    seq: u64,
    output: Vec<Value>,
    open: Option<Open>,
    /// What the assistant said, for the stored conversation.
    text: String,
    calls: Vec<ToolCall>,
    usage: Usage,
    status: &'static str,
    incomplete: Option<&'static str>,
    error: Option<Value>,
}

impl Builder {
    pub fn new(
        model: String,
        echo: Echo,
        store: bool,
        summaries: bool,
        custom_tools: Vec<String>,
    ) -> Self {
        let namespaces = echo
            .tools
            .iter()
            .filter(|t| t.get("type").and_then(Value::as_str) == Some("namespace"))
            .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_string))
            .collect();
        Self {
            id: new_response_id(),
            created_at: crate::util::unix_secs(),
            model,
            echo,
            store,
            summaries,
            namespaces,
            custom_tools,
            seq: 0,
            output: Vec::new(),
            open: None,
            text: String::new(),
            calls: Vec::new(),
            usage: Usage::default(),
            status: "in_progress",
            incomplete: None,
            error: None,
        }
    }

    /// The response object as it stands.
    pub fn response(&self) -> Value {
        let usage = json!({
            "input_tokens": self.usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.usage.total(),
        });
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "error": self.error,
            "incomplete_details": self.incomplete.map(|r| json!({"reason": r})),
            "instructions": self.echo.instructions,
            "max_output_tokens": self.echo.max_output_tokens,
            "model": self.model,
            "output": self.output,
            "parallel_tool_calls": self.echo.parallel_tool_calls,
            "previous_response_id": self.echo.previous_response_id,
            "reasoning": self.echo.reasoning,
            "store": self.store,
            "temperature": null,
            "text": {"format": {"type": "text"}},
            "tool_choice": self.echo.tool_choice,
            "tools": self.echo.tools,
            "top_p": null,
            "truncation": "disabled",
            "usage": if self.status == "in_progress" { Value::Null } else { usage },
            "user": null,
            "metadata": self.echo.metadata,
        })
    }

    /// The assistant's turn as a neutral message (for the stored conversation).
    pub fn assistant_message(&self) -> Message {
        Message {
            role: Role::Assistant,
            content: self.text.clone(),
            tool_calls: self.calls.clone(),
            ..Message::default()
        }
    }

    fn event(&mut self, out: &mut Vec<u8>, kind: &str, mut data: Value) {
        data["type"] = Value::String(kind.to_string());
        data["sequence_number"] = Value::from(self.seq);
        self.seq += 1;
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        if serde_json::to_writer(&mut *out, &data).is_err() {
            out.extend_from_slice(b"{}");
        }
        out.extend_from_slice(b"\n\n");
    }

    /// `response.created` and `response.in_progress`.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        let r = self.response();
        self.event(out, "response.created", json!({"response": r}));
        let r = self.response();
        self.event(out, "response.in_progress", json!({"response": r}));
    }

    /// Applies one turn event; writes the stream events it makes. `Finish` ends the response.
    pub fn apply(&mut self, out: &mut Vec<u8>, ev: TurnEvent) {
        match ev {
            TurnEvent::Text(t) => {
                let (id, index) = self.ensure_message(out);
                if let Some(Open::Message { text, .. }) = &mut self.open {
                    text.push_str(&t);
                }
                self.text.push_str(&t);
                self.event(
                    out,
                    "response.output_text.delta",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "delta": t, "logprobs": []}),
                );
            }
            TurnEvent::Reasoning(t) if self.summaries => {
                let (id, index) = self.ensure_reasoning(out);
                if let Some(Open::Reasoning { text, .. }) = &mut self.open {
                    text.push_str(&t);
                }
                self.event(
                    out,
                    "response.reasoning_summary_text.delta",
                    json!({"item_id": id, "output_index": index, "summary_index": 0, "delta": t}),
                );
            }
            TurnEvent::Reasoning(_) | TurnEvent::KeepAlive => {}
            TurnEvent::ToolCallStart { id, name, .. } => {
                self.close(out);
                let custom = self.custom_tools.contains(&name);
                let item_id = hex_id(if custom { "ctc" } else { "fc" });
                let index = self.output.len();
                let call = ToolCall {
                    id,
                    name,
                    input: Value::Null,
                };
                let item = self.call_item(&item_id, &call, "", custom, "in_progress");
                self.event(
                    out,
                    "response.output_item.added",
                    json!({"output_index": index, "item": item}),
                );
                self.open = Some(Open::Call {
                    id: item_id,
                    index,
                    call,
                    args: String::new(),
                    custom,
                });
            }
            TurnEvent::ToolCallDelta { delta, .. } => {
                let Some(Open::Call {
                    id,
                    index,
                    args,
                    custom,
                    ..
                }) = &mut self.open
                else {
                    return;
                };
                args.push_str(&delta);
                let (id, index, custom) = (id.clone(), *index, *custom);
                let kind = if custom {
                    "response.custom_tool_call_input.delta"
                } else {
                    "response.function_call_arguments.delta"
                };
                self.event(
                    out,
                    kind,
                    json!({"item_id": id, "output_index": index, "delta": delta}),
                );
            }
            TurnEvent::ToolCallEnd { .. } => self.close(out),
            TurnEvent::Finish { reason, usage } => {
                self.close(out);
                self.usage = usage;
                let kind = if reason == FinishReason::Length {
                    self.status = "incomplete";
                    self.incomplete = Some("max_output_tokens");
                    "response.incomplete"
                } else {
                    self.status = "completed";
                    "response.completed"
                };
                let r = self.response();
                self.event(out, kind, json!({"response": r}));
            }
        }
    }

    /// The response failed after it started: `response.failed` with the error. The item being
    /// built is not finished (no `output_item.done`): a client that retries must not keep half an
    /// answer in its history.
    pub fn fail(&mut self, out: &mut Vec<u8>, e: &GatewayError) {
        self.open = None;
        self.status = "failed";
        self.error = Some(json!({
            "code": e.code().unwrap_or("server_error"),
            "message": e.to_string(),
        }));
        let r = self.response();
        self.event(out, "response.failed", json!({"response": r}));
    }

    fn call_item(
        &self,
        item_id: &str,
        call: &ToolCall,
        args: &str,
        custom: bool,
        status: &str,
    ) -> Value {
        if custom {
            return json!({"id": item_id, "type": "custom_tool_call", "status": status,
                          "call_id": call.id, "name": call.name, "input": args});
        }
        // A namespaced tool goes back under its own name, with its namespace beside it.
        let (namespace, name) = match call.name.split_once(NAMESPACE_SEP) {
            Some((ns, n)) if self.namespaces.iter().any(|x| x == ns) => (Some(ns), n),
            _ => (None, call.name.as_str()),
        };
        let mut item = json!({"id": item_id, "type": "function_call", "status": status,
                              "call_id": call.id, "name": name, "arguments": args});
        if let Some(ns) = namespace {
            item["namespace"] = Value::String(ns.to_string());
        }
        item
    }

    fn ensure_message(&mut self, out: &mut Vec<u8>) -> (String, usize) {
        if let Some(Open::Message { id, index, .. }) = &self.open {
            return (id.clone(), *index);
        }
        self.close(out);
        let id = hex_id("msg");
        let index = self.output.len();
        self.event(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": {"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
        );
        self.event(
            out,
            "response.content_part.added",
            json!({"item_id": id, "output_index": index, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
        );
        self.open = Some(Open::Message {
            id: id.clone(),
            index,
            text: String::new(),
        });
        (id, index)
    }

    fn ensure_reasoning(&mut self, out: &mut Vec<u8>) -> (String, usize) {
        if let Some(Open::Reasoning { id, index, .. }) = &self.open {
            return (id.clone(), *index);
        }
        self.close(out);
        let id = hex_id("rs");
        let index = self.output.len();
        self.event(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": {"id": id, "type": "reasoning", "summary": []}}),
        );
        self.event(
            out,
            "response.reasoning_summary_part.added",
            json!({"item_id": id, "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}),
        );
        self.open = Some(Open::Reasoning {
            id: id.clone(),
            index,
            text: String::new(),
        });
        (id, index)
    }

    /// Finishes the open item: its `…done` events and `response.output_item.done` (Codex takes
    /// items from that one only).
    fn close(&mut self, out: &mut Vec<u8>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let item = match open {
            Open::Message { id, index, text } => {
                self.event(out, "response.output_text.done", json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}));
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                self.event(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
                );
                json!({"id": id, "type": "message", "status": "completed", "role": "assistant", "content": [part]})
            }
            Open::Reasoning { id, index, text } => {
                self.event(
                    out,
                    "response.reasoning_summary_text.done",
                    json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text}),
                );
                let part = json!({"type": "summary_text", "text": text});
                self.event(
                    out,
                    "response.reasoning_summary_part.done",
                    json!({"item_id": id, "output_index": index, "summary_index": 0, "part": part}),
                );
                json!({"id": id, "type": "reasoning", "summary": [part]})
            }
            Open::Call {
                id,
                index,
                mut call,
                args,
                custom,
            } => {
                if custom {
                    self.event(
                        out,
                        "response.custom_tool_call_input.done",
                        json!({"item_id": id, "output_index": index, "input": args}),
                    );
                    call.input = Value::String(args.clone());
                } else {
                    self.event(
                        out,
                        "response.function_call_arguments.done",
                        json!({"item_id": id, "output_index": index, "arguments": args}),
                    );
                    call.input = serde_json::from_str(&args).unwrap_or(Value::String(args.clone()));
                }
                let item = self.call_item(&id, &call, &args, custom, "completed");
                self.calls.push(call);
                item
            }
        };
        let index = self.output.len();
        self.output.push(item.clone());
        self.event(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(bytes: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(bytes)
            .split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    fn echo(tools: Vec<Value>) -> Echo {
        Echo {
            tools,
            tool_choice: json!("auto"),
            parallel_tool_calls: true,
            ..Echo::default()
        }
    }

    #[test]
    fn text_then_a_namespaced_call_in_order_with_sequence_numbers() {
        let mut b = Builder::new(
            "gpt-5.5".into(),
            echo(vec![
                json!({"type": "namespace", "name": "ns", "tools": []}),
            ]),
            false,
            true,
            vec![],
        );
        let mut out = Vec::new();
        b.start(&mut out);
        b.apply(&mut out, TurnEvent::Reasoning("hm".into()));
        b.apply(&mut out, TurnEvent::Text("Run".into()));
        b.apply(&mut out, TurnEvent::Text("ning.".into()));
        b.apply(
            &mut out,
            TurnEvent::ToolCallStart {
                index: 0,
                id: "call_1".into(),
                name: "ns.spawn".into(),
            },
        );
        b.apply(
            &mut out,
            TurnEvent::ToolCallDelta {
                index: 0,
                delta: "{\"a\":1}".into(),
            },
        );
        b.apply(&mut out, TurnEvent::ToolCallEnd { index: 0 });
        b.apply(
            &mut out,
            TurnEvent::Finish {
                reason: FinishReason::ToolCalls,
                usage: Usage {
                    prompt_tokens: 5,
                    completion_tokens: 2,
                },
            },
        );
        let evs = events(&out);
        let kinds: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, e) in evs.iter().enumerate() {
            assert_eq!(e["sequence_number"], i as u64);
        }
        let done = &evs[18]["item"];
        assert_eq!(done["name"], "spawn");
        assert_eq!(done["namespace"], "ns");
        assert_eq!(done["arguments"], "{\"a\":1}");
        let r = &evs[19]["response"];
        assert_eq!(r["status"], "completed");
        assert_eq!(r["output"].as_array().unwrap().len(), 3);
        assert_eq!(r["usage"]["total_tokens"], 7);
        let m = b.assistant_message();
        assert_eq!(m.content, "Running.");
        assert_eq!(m.tool_calls[0].input, json!({"a": 1}));
    }

    #[test]
    fn custom_calls_length_and_failure() {
        let mut b = Builder::new(
            "m".into(),
            echo(vec![]),
            true,
            false,
            vec!["apply_patch".into()],
        );
        let mut out = Vec::new();
        b.apply(
            &mut out,
            TurnEvent::ToolCallStart {
                index: 0,
                id: "call_2".into(),
                name: "apply_patch".into(),
            },
        );
        b.apply(
            &mut out,
            TurnEvent::ToolCallDelta {
                index: 0,
                delta: "*** Begin".into(),
            },
        );
        b.apply(&mut out, TurnEvent::ToolCallEnd { index: 0 });
        let evs = events(&out);
        assert_eq!(evs[1]["type"], "response.custom_tool_call_input.delta");
        assert_eq!(
            evs[3]["item"],
            json!({"id": evs[3]["item"]["id"], "type": "custom_tool_call", "status": "completed", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin"})
        );
        let mut out = Vec::new();
        b.apply(
            &mut out,
            TurnEvent::Finish {
                reason: FinishReason::Length,
                usage: Usage::default(),
            },
        );
        let evs = events(&out);
        assert_eq!(evs[0]["type"], "response.incomplete");
        assert_eq!(
            evs[0]["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        let mut f = Builder::new("m".into(), echo(vec![]), true, false, vec![]);
        let mut out = Vec::new();
        f.fail(&mut out, &GatewayError::UpstreamUnavailable("gone".into()));
        let evs = events(&out);
        assert_eq!(evs[0]["type"], "response.failed");
        assert_eq!(evs[0]["response"]["error"]["code"], "upstream_unavailable");
    }
}
