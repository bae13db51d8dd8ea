//! The agent-loop run: what a coding agent's tool loop costs in question bytes sent to Lingma,
//! step by step, with and without conversation reuse, on each API surface.
//!
//! An agent resends its whole history every step: a large system prompt, a dozen tools with long
//! descriptions, and every earlier call and result. With reuse the gateway recognises the turn it
//! answered (including the calls the client echoes back) and sends Lingma only the new tool
//! results; without it, each step replays everything. The simulator plays the model with a script
//! of `steps` calls (docs/simulator.md); each step's question size is the change of the gateway's
//! `lingma_gw_question_bytes_total` counter.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::load::HttpConn;

/// The surfaces an agent talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Surface {
    Chat,
    Messages,
    Responses,
}

impl Surface {
    pub const ALL: [Surface; 3] = [Surface::Chat, Surface::Messages, Surface::Responses];

    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Chat => "chat/completions",
            Surface::Messages => "messages",
            Surface::Responses => "responses",
        }
    }
}

/// A tool set shaped like a coding agent's: names, long descriptions, real parameters.
fn tools() -> Vec<(String, String, Value)> {
    let filler = "Use it carefully: read the surrounding code first, keep changes small, and explain \
                  what you did. ";
    [
        ("read_file", "file_path"),
        ("write_file", "file_path"),
        ("edit_file", "file_path"),
        ("run_shell_command", "command"),
        ("glob", "pattern"),
        ("grep_search", "pattern"),
        ("list_directory", "path"),
        ("web_fetch", "url"),
        ("todo_write", "todos"),
        ("task", "prompt"),
        ("notebook_edit", "notebook_path"),
        ("ask_user", "question"),
    ]
    .into_iter()
    .map(|(name, param)| {
        let description = format!("The {name} tool. {}", filler.repeat(8));
        let schema = json!({"type": "object", "properties": {
            param: {"type": "string", "description": format!("The {param} to work on")},
            "timeout": {"type": "integer", "description": "Milliseconds"},
            "description": {"type": "string"}
        }, "required": [param]});
        (name.to_string(), description, schema)
    })
    .collect()
}

fn system_prompt() -> String {
    "You are a coding agent working in a repository. Follow the project's conventions. ".repeat(250)
}

/// The first user message: the script of `steps` calls (one per turn).
fn script(steps: usize) -> String {
    let mut s = String::from("Investigate the failing build and fix it. ");
    for i in 0..steps {
        s.push_str(&format!(
            "[[tool:run_shell_command {{\"command\": \"step {i}\", \"timeout\": 1000}}]] "
        ));
    }
    s
}

/// One agent conversation: requests in the surface's wire format, calls echoed back, results added.
struct Agent {
    surface: Surface,
    messages: Vec<Value>,
    system: String,
}

impl Agent {
    fn new(surface: Surface, steps: usize) -> Self {
        let system = system_prompt();
        let first = script(steps);
        let messages = match surface {
            Surface::Chat => vec![
                json!({"role": "system", "content": system}),
                json!({"role": "user", "content": first}),
            ],
            Surface::Messages => {
                vec![json!({"role": "user", "content": [{"type": "text", "text": first}]})]
            }
            Surface::Responses => vec![
                json!({"type": "message", "role": "developer", "content": [{"type": "input_text", "text": system}]}),
                json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": first}]}),
            ],
        };
        Self {
            surface,
            messages,
            system,
        }
    }

    fn path(&self) -> &'static str {
        match self.surface {
            Surface::Chat => "/v1/chat/completions",
            Surface::Messages => "/v1/messages",
            Surface::Responses => "/v1/responses",
        }
    }

    fn body(&self) -> Value {
        let t = tools();
        match self.surface {
            Surface::Chat => json!({
                "model": "auto", "messages": self.messages,
                "tools": t.iter().map(|(n, d, p)| json!({"type": "function", "function": {"name": n, "description": d, "parameters": p}})).collect::<Vec<_>>(),
            }),
            Surface::Messages => json!({
                "model": "claude-opus-5-5", "max_tokens": 32000, "system": self.system, "messages": self.messages,
                "tools": t.iter().map(|(n, d, p)| json!({"name": n, "description": d, "input_schema": p})).collect::<Vec<_>>(),
            }),
            Surface::Responses => json!({
                "model": "gpt-5.5", "store": false, "input": self.messages,
                "tools": t.iter().map(|(n, d, p)| json!({"type": "function", "name": n, "description": d, "parameters": p})).collect::<Vec<_>>(),
            }),
        }
    }

    /// Appends the answer and the results of its calls; false when the answer had no call.
    fn absorb(&mut self, answer: &Value, step: usize) -> Result<bool> {
        let result = |name: &str| {
            format!(
                "{name} finished step {step}: exit 0\n{}",
                "output line\n".repeat(5)
            )
        };
        match self.surface {
            Surface::Chat => {
                let m = &answer["choices"][0]["message"];
                let calls = m["tool_calls"].as_array().cloned().unwrap_or_default();
                if calls.is_empty() {
                    return Ok(false);
                }
                self.messages.push(
                    json!({"role": "assistant", "content": m["content"], "tool_calls": calls}),
                );
                for c in &calls {
                    self.messages
                        .push(json!({"role": "tool", "tool_call_id": c["id"],
                        "content": result(c["function"]["name"].as_str().unwrap_or(""))}));
                }
            }
            Surface::Messages => {
                let content = answer["content"].as_array().cloned().unwrap_or_default();
                let uses: Vec<&Value> =
                    content.iter().filter(|b| b["type"] == "tool_use").collect();
                if uses.is_empty() {
                    return Ok(false);
                }
                let results: Vec<Value> = uses
                    .iter()
                    .map(|b| json!({"type": "tool_result", "tool_use_id": b["id"], "content": result(b["name"].as_str().unwrap_or(""))}))
                    .collect();
                self.messages
                    .push(json!({"role": "assistant", "content": content}));
                self.messages
                    .push(json!({"role": "user", "content": results}));
            }
            Surface::Responses => {
                let output = answer["output"].as_array().cloned().unwrap_or_default();
                let calls: Vec<Value> = output
                    .iter()
                    .filter(|o| o["type"] == "function_call")
                    .cloned()
                    .collect();
                if calls.is_empty() {
                    return Ok(false);
                }
                self.messages.extend(output);
                for c in &calls {
                    self.messages.push(
                        json!({"type": "function_call_output", "call_id": c["call_id"],
                        "output": result(c["name"].as_str().unwrap_or(""))}),
                    );
                }
            }
        }
        Ok(true)
    }
}

/// Bytes of questions sent so far (both reuse labels).
async fn question_bytes(conn: &HttpConn) -> Result<u64> {
    let text = conn.get_text("/metrics").await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("lingma_gw_question_bytes_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// Runs one agent loop of `steps` tool calls; returns each step's question bytes (the last entry
/// is the final answer's question).
pub async fn run(conn: &HttpConn, surface: Surface, steps: usize) -> Result<Vec<u64>> {
    let mut agent = Agent::new(surface, steps);
    let mut sizes = Vec::with_capacity(steps + 1);
    for step in 0..=steps {
        let before = question_bytes(conn).await?;
        let body = bytes::Bytes::from(serde_json::to_vec(&agent.body())?);
        let resp = conn.post(agent.path(), body).await?;
        let status = resp.status();
        let answer: Value = serde_json::from_slice(&resp.bytes().await?)
            .with_context(|| format!("{} step {step}: not JSON", surface.as_str()))?;
        if !status.is_success() {
            bail!("{} step {step}: {status}: {answer}", surface.as_str());
        }
        sizes.push(question_bytes(conn).await? - before);
        let called = agent.absorb(&answer, step)?;
        if called != (step < steps) {
            bail!(
                "{} step {step}: expected {} call, got {answer}",
                surface.as_str(),
                if step < steps { "a" } else { "no" }
            );
        }
    }
    Ok(sizes)
}
