//! The OpenAI-compatible HTTP gateway.
pub mod error;
pub mod schema;
pub mod usage;
