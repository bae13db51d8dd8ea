//! lingma-gw: an OpenAI-compatible gateway and terminal tool for Tongyi Lingma.
//!
//! The crate is one library and one thin binary. Everything that speaks to a Lingma process lives in
//! [`lingma`]; the process pool in [`pool`]; the HTTP gateway in [`gateway`]; the built-in Lingma
//! simulator in [`sim`]; each subcommand's glue in [`commands`].

pub mod accounts;
pub mod bundle;
pub mod cli;
pub mod commands;
pub mod error;
pub mod gateway;
pub mod lingma;
pub mod logging;
pub mod login;
pub mod metrics;
pub mod pool;
pub mod settings;
pub mod sim;
pub mod turn;
pub mod util;
