//! The HTTP gateway: the route table and request middleware (`router.rs`), the server loop with
//! its connection limits (`server.rs`), authentication (`auth.rs`), the extractors that read
//! bodies, queries and paths under the gateway's rules (`extract.rs`), shared state (`state.rs`),
//! health and metrics (`health.rs`), operator endpoints (`admin.rs`, `login.rs`), the SSE response
//! every streamed answer goes out in (`event_stream.rs`), and one folder per API surface: `openai/`
//! (`/v1/chat/completions`, `/v1/models`), `anthropic/` (`/v1/messages`,
//! `/v1/messages/count_tokens`), `responses/` (`/v1/responses`).
//!
//! A front door parses its wire format into a neutral turn, runs it on the engine (`crate::turn`)
//! and renders the events; it never touches the pool or the Lingma client. The one error type is
//! `crate::error::GatewayError`; each surface renders it in its own shape.

pub mod admin;
pub mod anthropic;
pub mod auth;
pub mod event_stream;
pub mod extract;
pub mod health;
pub mod login;
pub mod openai;
pub mod responses;
pub mod router;
pub mod server;
pub mod state;
