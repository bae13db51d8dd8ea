//! Everything that talks to a Lingma process: framing, the transports (WebSocket, Unix socket),
//! JSON-RPC, the typed client and both of Lingma's dialects (legacy `chat/ask`, ACP `session/*`),
//! the model registry, process spawning, finding a binary or a runtime an IDE already runs, and the
//! layout of a work dir. Nothing here knows about the pool, the gateway, the settings or the
//! commands above it.

pub mod acp;
pub mod attach;
pub mod chat_stream;
pub mod client;
pub mod dialect;
pub mod discovery;
pub mod frame;
pub mod ide;
pub mod models;
pub mod ports;
pub mod process;
pub mod rpc;
pub mod think;
pub mod transport;
pub mod workdir;

pub use chat_stream::{
    AskMode, ChatError, ChatEvent, ChatFinish, ChatRequest, ChatStream, ContextUsage, EndedBy,
};
pub use client::{AuthStatus, ClientOptions, LingmaClient, LingmaError, LoginUrl};
pub use dialect::{Dialect, DialectChoice};
pub use models::{ModelInfo, ModelRegistry, Resolution};
pub use transport::Endpoint;
pub use workdir::WorkDir;
