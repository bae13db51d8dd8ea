//! The `POST /v1/responses` request: its wire types and [`to_turn`], which checks it and turns it
//! into the neutral [`TurnRequest`].
//!
//! Accepted as Codex CLI sends it: `input` as a string or items (`message` with roles
//! developer/system/user/assistant and text parts; `function_call` and `function_call_output`
//! (a string or parts); `custom_tool_call` and its output; `reasoning` and other items the model
//! cannot use are skipped), `instructions`, `tools` (`function`; `namespace` holding functions,
//! offered to the model as `NAMESPACE.NAME`; `custom` free-form tools; hosted tools such as
//! `web_search` left out and reported), `tool_choice`, `parallel_tool_calls`,
//! `max_output_tokens`, `reasoning.summary`, `store`, `previous_response_id`, `prompt_cache_key`.
//! Unknown fields are ignored. Images and files get a clear 400.

use serde::Deserialize;
use serde_json::Value;

use crate::error::GatewayError;
use crate::turn::{Message, Role, ToolCall, ToolChoice, ToolSpec, TurnRequest};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResponsesRequest {
    pub model: Option<String>,
    pub instructions: Option<String>,
    pub input: Option<Input>,
    #[serde(default)]
    pub tools: Vec<Value>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    pub max_output_tokens: Option<u32>,
    pub reasoning: Option<Reasoning>,
    pub store: Option<bool>,
    pub stream: Option<bool>,
    pub previous_response_id: Option<String>,
    pub prompt_cache_key: Option<String>,
    pub metadata: Option<Value>,
    pub user: Option<String>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a string or an array of input items")]
pub enum Input {
    Text(String),
    Items(Vec<Value>),
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Reasoning {
    pub summary: Option<String>,
    pub effort: Option<String>,
}

/// A checked request: the neutral turn plus what only the Responses rendering needs.
#[derive(Debug, Clone)]
pub struct ResponsesTurn {
    pub turn: TurnRequest,
    pub stream: bool,
    pub store: bool,
    /// The model as the client named it (echoed in the response).
    pub model: String,
    /// Reasoning goes out as reasoning summaries.
    pub summaries: bool,
    /// Hosted tools that were left out (`web_search`, ...).
    pub ignored_tools: Vec<String>,
    /// Free-form tools, by the name the model sees.
    pub custom_tools: Vec<String>,
    /// The request as the response object reports it (`tools`, `tool_choice`, ...).
    pub echo: Echo,
    /// Where the conversation starts in `turn.messages` (after the `instructions`, which a
    /// continuation does not inherit).
    pub conversation_from: usize,
}

/// Request fields the response object repeats.
#[derive(Debug, Clone, Default)]
pub struct Echo {
    pub instructions: Option<String>,
    pub tools: Vec<Value>,
    pub tool_choice: Value,
    pub parallel_tool_calls: bool,
    pub max_output_tokens: Option<u32>,
    pub previous_response_id: Option<String>,
    pub metadata: Value,
    pub reasoning: Value,
}

/// The separator of a namespace tool's name as the model sees it (`multi_agent_v1.spawn_agent`).
pub const NAMESPACE_SEP: char = '.';

/// Checks a request and converts it; `history` is the conversation of `previous_response_id`
/// (looked up by the caller), prepended to the input.
pub fn to_turn(
    req: ResponsesRequest,
    history: Vec<Message>,
) -> Result<ResponsesTurn, GatewayError> {
    let model = req
        .model
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| GatewayError::invalid_param("`model` is required", "model"))?
        .to_string();
    if req.max_output_tokens == Some(0) {
        return Err(GatewayError::invalid_param(
            "max_output_tokens must be at least 1",
            "max_output_tokens",
        ));
    }
    let mut messages = history;
    let conversation_from = match req.instructions.as_deref().filter(|i| !i.trim().is_empty()) {
        Some(i) => {
            messages.insert(0, Message::new(Role::System, i));
            1
        }
        None => 0,
    };
    match &req.input {
        None => {
            return Err(GatewayError::invalid_param("`input` is required", "input"));
        }
        Some(Input::Text(t)) => messages.push(Message::new(Role::User, t.clone())),
        Some(Input::Items(items)) => {
            for (i, item) in items.iter().enumerate() {
                convert_item(i, item, &mut messages)?;
            }
        }
    }
    match messages.iter().rev().find(|m| m.role != Role::System) {
        Some(m) if matches!(m.role, Role::User | Role::Tool) => {}
        _ => {
            return Err(GatewayError::invalid_param(
                "`input` must end with a user message or a tool output",
                "input",
            ));
        }
    }
    let (tools, ignored_tools, custom_tools) = tools_of(&req.tools)?;
    let tool_choice = choice_of(req.tool_choice.as_ref())?;
    let summaries = req
        .reasoning
        .as_ref()
        .and_then(|r| r.summary.as_deref())
        .is_some_and(|s| s != "none");
    let parallel = req.parallel_tool_calls.unwrap_or(true);
    Ok(ResponsesTurn {
        turn: TurnRequest {
            messages,
            tools,
            tool_choice,
            parallel_tool_calls: parallel,
            model: Some(model.clone()),
            max_tokens: req.max_output_tokens,
            stream: req.stream.unwrap_or(false),
            affinity: req
                .prompt_cache_key
                .as_deref()
                .filter(|k| !k.is_empty())
                .map(|k| format!("k:{k}")),
            call_id_prefix: "call_",
            ..TurnRequest::default()
        },
        stream: req.stream.unwrap_or(false),
        store: req.store.unwrap_or(true),
        model,
        summaries,
        ignored_tools,
        custom_tools,
        echo: Echo {
            instructions: req.instructions,
            tools: req.tools,
            tool_choice: req
                .tool_choice
                .unwrap_or_else(|| Value::String("auto".into())),
            parallel_tool_calls: parallel,
            max_output_tokens: req.max_output_tokens,
            previous_response_id: req.previous_response_id,
            metadata: req.metadata.unwrap_or(Value::Object(Default::default())),
            reasoning: serde_json::json!({
                "effort": req.reasoning.as_ref().and_then(|r| r.effort.clone()),
                "summary": req.reasoning.as_ref().and_then(|r| r.summary.clone()),
            }),
        },
        conversation_from,
    })
}

fn str_field<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// The offered tools: specs, the hosted tools left out, the free-form tools' names.
type Tools = (Vec<ToolSpec>, Vec<String>, Vec<String>);

/// `function` tools, `namespace`d functions (named `NAMESPACE.NAME`) and `custom` tools as specs;
/// hosted tools are left out and named.
fn tools_of(tools: &[Value]) -> Result<Tools, GatewayError> {
    let mut specs = Vec::new();
    let mut ignored = Vec::new();
    let mut custom = Vec::new();
    let function = |t: &Value, name: String, param: &str| -> Result<ToolSpec, GatewayError> {
        if name.trim().is_empty() || name.ends_with(NAMESPACE_SEP) {
            return Err(GatewayError::invalid_param(
                format!("{param} has no `name`"),
                format!("{param}.name"),
            ));
        }
        let schema = t
            .get("parameters")
            .cloned()
            .filter(|p| !p.is_null())
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
        Ok(ToolSpec::function(
            name,
            str_field(t, "description").unwrap_or(""),
            schema,
        ))
    };
    for (i, t) in tools.iter().enumerate() {
        let param = format!("tools[{i}]");
        match str_field(t, "type").unwrap_or("") {
            "function" => {
                let name = str_field(t, "name").unwrap_or("").to_string();
                specs.push(function(t, name, &param)?);
            }
            "namespace" => {
                let ns = str_field(t, "name").unwrap_or("");
                let inner = t
                    .get("tools")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for (j, f) in inner.iter().enumerate() {
                    let name = format!("{ns}{NAMESPACE_SEP}{}", str_field(f, "name").unwrap_or(""));
                    specs.push(function(f, name, &format!("{param}.tools[{j}]"))?);
                }
            }
            "custom" => {
                let name = str_field(t, "name").unwrap_or("").to_string();
                if name.trim().is_empty() {
                    return Err(GatewayError::invalid_param(
                        format!("{param} has no `name`"),
                        format!("{param}.name"),
                    ));
                }
                let mut description = str_field(t, "description").unwrap_or("").to_string();
                // A grammar says what the text must look like; the model needs it.
                if let Some(def) = t.pointer("/format/definition").and_then(Value::as_str) {
                    description.push_str(" Input grammar: ");
                    description.push_str(def);
                }
                custom.push(name.clone());
                specs.push(ToolSpec::freeform(name, description));
            }
            other => ignored.push(if other.is_empty() {
                "unknown".into()
            } else {
                other.to_string()
            }),
        }
    }
    Ok((specs, ignored, custom))
}

/// `"none" | "auto" | "required" | {"type": "function"|"custom", "name"} | {"type":
/// "allowed_tools", …}` (offered as `auto`).
fn choice_of(v: Option<&Value>) -> Result<ToolChoice, GatewayError> {
    let bad = || {
        GatewayError::invalid_param(
            "`tool_choice` must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"name\": …}",
            "tool_choice",
        )
    };
    Ok(match v {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            _ => return Err(bad()),
        },
        Some(o @ Value::Object(_)) => match str_field(o, "type") {
            Some("function") | Some("custom") => {
                let name = str_field(o, "name").ok_or_else(bad)?;
                match str_field(o, "namespace") {
                    Some(ns) => ToolChoice::Named(format!("{ns}{NAMESPACE_SEP}{name}")),
                    None => ToolChoice::Named(name.to_string()),
                }
            }
            Some("allowed_tools") => ToolChoice::Auto,
            _ => return Err(bad()),
        },
        Some(_) => return Err(bad()),
    })
}

/// The text of a `message` item's content (a string or parts).
fn message_text(content: Option<&Value>, param: &str) -> Result<String, GatewayError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                let kind = str_field(p, "type").unwrap_or("");
                match kind {
                    "input_text" | "output_text" | "text" | "summary_text" => {
                        texts.push(str_field(p, "text").unwrap_or("").to_string());
                    }
                    "refusal" => texts.push(str_field(p, "refusal").unwrap_or("").to_string()),
                    "input_image" | "input_file" | "input_audio" => {
                        return Err(GatewayError::invalid_param_code(
                            format!(
                                "{} input is not supported by this gateway (Lingma accepts text only)",
                                kind.trim_start_matches("input_")
                            ),
                            format!("{param}[{j}]"),
                            "unsupported_content",
                        ));
                    }
                    other => {
                        return Err(GatewayError::invalid_param_code(
                            format!(
                                "Content part type `{}` is not supported",
                                other.escape_debug()
                            ),
                            format!("{param}[{j}].type"),
                            "unsupported_content",
                        ));
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        Some(_) => Err(GatewayError::invalid_param(
            format!("{param} must be a string or an array of parts"),
            param,
        )),
    }
}

/// The assistant message the next call belongs to: the last message when it is the
/// assistant's, else a new one (a call's item follows its message item, if any).
fn assistant_for_call(messages: &mut Vec<Message>) -> &mut Message {
    if messages.last().is_none_or(|m| m.role != Role::Assistant) {
        messages.push(Message::new(Role::Assistant, ""));
    }
    let last = messages.len() - 1;
    &mut messages[last]
}

fn convert_item(i: usize, item: &Value, out: &mut Vec<Message>) -> Result<(), GatewayError> {
    let param = format!("input[{i}]");
    let kind = str_field(item, "type").unwrap_or(if item.get("role").is_some() {
        "message"
    } else {
        ""
    });
    match kind {
        "message" => {
            let role = match str_field(item, "role").unwrap_or("") {
                "developer" | "system" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    return Err(GatewayError::invalid_param(
                        format!(
                            "Invalid role `{}` in {param}: expected developer, system, user or assistant",
                            other.escape_debug()
                        ),
                        format!("{param}.role"),
                    ));
                }
            };
            let text = message_text(item.get("content"), &format!("{param}.content"))?;
            // Two assistant items in a row (text, then more text) read as one message.
            match out.last_mut() {
                Some(last)
                    if role == Role::Assistant
                        && last.role == Role::Assistant
                        && last.tool_calls.is_empty() =>
                {
                    if !last.content.is_empty() {
                        last.content.push('\n');
                    }
                    last.content.push_str(&text);
                }
                _ => out.push(Message::new(role, text)),
            }
        }
        "function_call" => {
            let name = str_field(item, "name").unwrap_or("");
            let name = match str_field(item, "namespace") {
                Some(ns) if !ns.is_empty() => format!("{ns}{NAMESPACE_SEP}{name}"),
                _ => name.to_string(),
            };
            let args = str_field(item, "arguments").unwrap_or("");
            let input = if args.trim().is_empty() {
                Value::Object(Default::default())
            } else {
                serde_json::from_str(args).unwrap_or_else(|_| Value::String(args.to_string()))
            };
            assistant_for_call(out).tool_calls.push(ToolCall {
                id: call_id(item, &param)?,
                name,
                input,
            });
        }
        "custom_tool_call" => {
            assistant_for_call(out).tool_calls.push(ToolCall {
                id: call_id(item, &param)?,
                name: str_field(item, "name").unwrap_or("").to_string(),
                input: Value::String(str_field(item, "input").unwrap_or("").to_string()),
            });
        }
        "function_call_output" | "custom_tool_call_output" => {
            let text = message_text(item.get("output"), &format!("{param}.output"))?;
            out.push(Message::tool_result(call_id(item, &param)?, text));
        }
        // Nothing the model can read again: reasoning is encrypted or summarised, hosted calls ran
        // elsewhere.
        _ => tracing::debug!(item = kind, "input item skipped"),
    }
    Ok(())
}

fn call_id(item: &Value, param: &str) -> Result<String, GatewayError> {
    str_field(item, "call_id")
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            GatewayError::invalid_param(
                format!("{param} has no `call_id`"),
                format!("{param}.call_id"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn turn(v: Value) -> ResponsesTurn {
        to_turn(serde_json::from_value(v).unwrap(), Vec::new()).unwrap()
    }

    #[test]
    fn codex_request_and_tool_turn() {
        let t = turn(json!({
            "model": "gpt-5.5", "stream": true, "store": false, "prompt_cache_key": "sess-1",
            "reasoning": {"summary": "auto"}, "include": ["reasoning.encrypted_content"],
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "base prompt"}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>"}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Run it"}]},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Running."}]},
                {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "exec_command",
                 "arguments": "{\"cmd\": \"echo hi\"}", "status": "completed"},
                {"type": "function_call_output", "call_id": "call_1", "output": "Process exited with code 0"}
            ],
            "tools": [
                {"type": "function", "name": "exec_command", "parameters": {"type": "object",
                 "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}, "strict": false},
                {"type": "namespace", "name": "multi_agent_v1", "description": "agents", "tools": [
                    {"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}}]},
                {"type": "custom", "name": "apply_patch", "description": "Patch files",
                 "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
                {"type": "web_search", "external_web_access": false},
                {"type": "tool_search", "execution": "client"}
            ],
            "tool_choice": "auto", "parallel_tool_calls": true
        }));
        assert!(t.stream && !t.store && t.summaries);
        let m = &t.turn.messages;
        assert_eq!(m[0], Message::new(Role::System, "base prompt"));
        assert_eq!(m[3].content, "Running.");
        assert_eq!(
            m[3].tool_calls,
            vec![ToolCall {
                id: "call_1".into(),
                name: "exec_command".into(),
                input: json!({"cmd": "echo hi"})
            }]
        );
        assert_eq!(
            m[4],
            Message::tool_result("call_1", "Process exited with code 0")
        );
        let names: Vec<&str> = t.turn.tools.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["exec_command", "multi_agent_v1.spawn_agent", "apply_patch"]
        );
        assert!(
            t.turn.tools[2]
                .description
                .contains("Input grammar: start: x")
        );
        assert_eq!(t.ignored_tools, ["web_search", "tool_search"]);
        assert_eq!(t.custom_tools, ["apply_patch"]);
        assert_eq!(t.turn.affinity.as_deref(), Some("k:sess-1"));
    }

    #[test]
    fn strings_instructions_history_and_custom_calls() {
        let history = vec![
            Message::new(Role::User, "earlier"),
            Message::new(Role::Assistant, "ok"),
        ];
        let t = to_turn(
            serde_json::from_value(
                json!({"model": "m", "instructions": "be brief", "input": "next"}),
            )
            .unwrap(),
            history,
        )
        .unwrap();
        let roles: Vec<Role> = t.turn.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [Role::System, Role::User, Role::Assistant, Role::User]
        );
        assert!(t.store, "store defaults to true");
        let t = turn(json!({"model": "m", "input": [
            {"role": "user", "content": "patch it"},
            {"type": "custom_tool_call", "call_id": "c9", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "c9", "output": [{"type": "input_text", "text": "Success"}]}
        ]}));
        assert_eq!(
            t.turn.messages[1].tool_calls[0].input,
            json!("*** Begin Patch")
        );
        assert_eq!(t.turn.messages[2].content, "Success");
    }

    #[test]
    fn errors_name_the_param() {
        for (body, param, needle) in [
            (json!({"input": "x"}), "model", "required"),
            (json!({"model": "m"}), "input", "required"),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}),
                "input[0].content[0]",
                "image input is not supported",
            ),
            (
                json!({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}),
                "input[0].call_id",
                "call_id",
            ),
            (
                json!({"model": "m", "input": [{"role": "assistant", "content": "x"}]}),
                "input",
                "must end",
            ),
            (
                json!({"model": "m", "input": "x", "tool_choice": "sometimes"}),
                "tool_choice",
                "must be",
            ),
            (
                json!({"model": "m", "input": "x", "max_output_tokens": 0}),
                "max_output_tokens",
                "at least 1",
            ),
        ] {
            match to_turn(serde_json::from_value(body.clone()).unwrap(), Vec::new()) {
                Err(GatewayError::InvalidRequest {
                    message, param: p, ..
                }) => {
                    assert_eq!(p.as_deref(), Some(param), "{body}");
                    assert!(message.contains(needle), "{message}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
