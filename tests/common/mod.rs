//! The test harness, shared by every integration test through `mod common;`: it spawns the real
//! binary as a simulator or a gateway, finds the ports they bound (never picks them for them),
//! talks the Lingma wire protocol, waits with deadlines, and kills and reaps what it spawned.
//!
//! - `sim`: `lingma-gw sim start` on port 0, its readiness line, its request record (asks and
//!   stops read the same in both dialects).
//! - `gateway`: `lingma-gw serve --sim --port 0`, its `listening on` line, its stderr; `/metrics`.
//! - `ws`: a raw Lingma client (frames over WebSocket, JSON-RPC, acks) and `chat/ask` helpers.
//! - `wait`: the one polling helper (sync and async), child exits and outputs with deadlines.
//! - `procs`: signals and what `/proc` says (processes, descriptors, connections, memory).
//! - `clients`: real clients: the Python SDK scripts and the npm-installed coding-agent CLIs.
//! - `tmux`: a command on a real terminal: what it draws, what the screen shows, keys typed.
//!
//! Each test binary uses a part of it.
#![allow(dead_code, unused_imports)]

pub mod clients;
pub mod gateway;
pub mod procs;
pub mod sim;
pub mod tmux;
pub mod wait;
pub mod ws;

pub use gateway::{Gateway, metric_sum};
pub use procs::{
    client_connections, fds_without_clients, open_fds, port_hint, proc_status_kb,
    processes_matching, signal, tcp_connections_to,
};
pub use sim::{
    READY, Sim, SimBuilder, asks, callback_url_for, parse_ready, read_requests, sim_command,
    stop_requests,
};
pub use wait::{output_within, wait_child, wait_for, wait_for_async, wait_until, wait_until_async};
pub use ws::{
    Client, Ws, answer_text, ask_params, finish_of, frame, methods, naive_text, with_model,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_lingma-gw");

/// The dialect the gateway-facing tests run their simulators in: `LINGMA_TEST_SIM_DIALECT`
/// (`legacy`, `acp` or `both`; default `legacy`). `scripts/test.sh` runs those tests once more
/// with `acp`, so the whole gateway suite is proven in both dialects without a second copy.
pub fn test_dialect() -> &'static str {
    match std::env::var("LINGMA_TEST_SIM_DIALECT").as_deref() {
        Ok("acp") => "acp",
        Ok("both") => "both",
        Ok("legacy") | Ok("") | Err(_) => "legacy",
        Ok(other) => panic!("LINGMA_TEST_SIM_DIALECT={other:?}: expected legacy, acp or both"),
    }
}

/// Environment for fast simulators that still pace their answers: no start-up delay, small but
/// non-zero streaming delays (`Sim::start` uses `--no-delay` instead), in the test dialect.
pub fn fast_sim_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("LINGMA_SIM_STARTUP_DELAY_MS", "0"),
        ("LINGMA_SIM_FIRST_TOKEN_DELAY_MS", "5"),
        ("LINGMA_SIM_CHUNK_DELAY_MS", "1"),
        ("LINGMA_SIM_DIALECT", test_dialect()),
    ]
}
