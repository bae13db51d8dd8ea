//! The OpenAI-compatible HTTP gateway: `router.rs` holds the route table and request middleware,
//! `state.rs` the shared state; one file per endpoint family (`chat.rs`, `models.rs`,
//! `health.rs`, `admin.rs`, `login.rs`) and one per building block (`error.rs`, `schema.rs`, `auth.rs`,
//! `admission.rs`, `session_cache.rs`, `metrics.rs`, `usage.rs`, `limits.rs`).

pub mod admin;
pub mod admission;
pub mod auth;
pub mod chat;
pub mod error;
pub mod extract;
pub mod health;
pub mod limits;
pub mod login;
pub mod metrics;
pub mod models;
pub mod router;
pub mod schema;
pub mod server;
pub mod session_cache;
pub mod state;
pub mod usage;
