//! The OpenAI-compatible HTTP gateway.
pub mod admission;
pub mod auth;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod schema;
pub mod session_cache;
pub mod usage;
