//! The neutral turn: what every API surface asks of Lingma, and what comes back, with no wire
//! format in sight.
//!
//! A front door (OpenAI chat, Anthropic Messages, OpenAI Responses) parses its request into a
//! [`TurnRequest`], hands it to the [`engine::Engine`], and renders the [`TurnEvent`]s it gets
//! back in its own shape. Everything between is here, once: admission, conversation reuse, the
//! pool, the question text, tool emulation, output limits, usage, metrics.
//!
//! * `engine.rs`: runs a turn (admission, reuse, pool, ask, events, re-ask, bookkeeping).
//! * `prompt.rs`: the question text (conversation, tool instructions, history in call syntax).
//! * `reuse.rs`: which upstream session already holds a conversation.
//! * `admission.rs`: the in-flight guard, the bounded queue and the body budget.
//! * `limits.rs`, `usage.rs`: `stop`/`max_tokens` on the answer, token estimates.
//! * `model_map.rs`: which Lingma model answers the names clients send (`claude-*`, `gpt-*`).
//! * `tools/`: tool emulation (scanner, decoding, schemas, rendering).

pub mod admission;
pub mod engine;
pub mod limits;
pub mod model_map;
pub mod prompt;
pub mod reuse;
pub mod tools;
pub mod usage;

use serde_json::Value;

pub use engine::{Engine, EngineConfig, Turn};
pub use tools::{CallSyntax, ToolChoice, ToolKind, ToolSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Role {
    System,
    #[default]
    User,
    Assistant,
    Tool,
}

/// A call the assistant made earlier, as the client echoes it back.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON arguments of a function tool; the raw text (a JSON string) of a free-form one.
    pub input: Value,
}

/// One message of a conversation, reduced to what Lingma can be told.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Message {
    pub role: Role,
    /// The text (content parts joined).
    pub content: String,
    /// An assistant message's calls.
    pub tool_calls: Vec<ToolCall>,
    /// A tool result's call id.
    pub tool_call_id: Option<String>,
    /// A tool result's tool name, when the client sends it or the history says it.
    pub tool_name: Option<String>,
    /// A tool result that reports a failure.
    pub is_error: bool,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            ..Self::default()
        }
    }

    pub fn tool_result(id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: Role::Tool,
            content: content.into(),
            tool_call_id: Some(id.into()),
            ..Self::default()
        }
    }
}

/// A turn as a front door asks for it.
#[derive(Debug, Clone, Default)]
pub struct TurnRequest {
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub tool_choice: ToolChoice,
    /// `false`: at most one call is handed out.
    pub parallel_tool_calls: bool,
    /// The model as the client named it (`None`: the default).
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    /// Whether the client reads the answer as a stream (metrics and logs only: the engine
    /// always streams).
    pub stream: bool,
    /// Who asks: separates conversations of different clients in the reuse cache.
    pub identity: String,
    /// What keeps a conversation on one instance (a header, a user field, a cache key); `None`:
    /// derived from the conversation's first message.
    pub affinity: Option<String>,
    /// The prefix of the call ids handed out (`call_`, `toolu_`).
    pub call_id_prefix: &'static str,
}

/// Why an answer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// The model was done.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// One of the client's stop sequences came.
    StopSequence(String),
    /// The answer ended with tool calls.
    ToolCalls,
}

/// Estimated token counts of a turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl Usage {
    pub fn total(&self) -> u32 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// What a turn streams.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEvent {
    Text(String),
    Reasoning(String),
    /// A call begins: `index` counts the calls of this answer from 0.
    ToolCallStart {
        index: usize,
        id: String,
        name: String,
    },
    /// A piece of the call's arguments: JSON text for a function tool, raw text for a free-form
    /// one. The pieces of one call concatenate to its whole input.
    ToolCallDelta {
        index: usize,
        delta: String,
    },
    ToolCallEnd {
        index: usize,
    },
    /// Nothing happened for a while (the model is thinking): streams send a keep-alive.
    KeepAlive,
    /// The last event.
    Finish {
        reason: FinishReason,
        usage: Usage,
    },
}

/// A whole answer (non-streaming clients).
#[derive(Debug, Clone, PartialEq)]
pub struct TurnOutput {
    pub text: String,
    pub reasoning: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish: FinishReason,
    pub usage: Usage,
}
