//! The simulator as a library (`lingma_gw::sim::Simulator`), as a benchmark harness or another
//! crate's test would embed it: start on port 0, chat, crash without killing the host process,
//! stop cleanly.

mod common;

use std::time::Duration;

use common::*;
use lingma_gw::sim::{CrashAction, SimConfig, SimExit, Simulator};

fn config(dir: &std::path::Path) -> SimConfig {
    let mut cfg = SimConfig::new(dir, 0, 0).with_no_delay();
    cfg.on_crash = CrashAction::StopServer;
    cfg
}

#[tokio::test]
async fn embedded_start_chat_and_clean_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = Simulator::start(config(tmp.path())).await.unwrap();
    assert_ne!(sim.ws_port(), 0);
    assert_ne!(sim.http_port(), 0);
    let log = std::fs::read_to_string(tmp.path().join("logs/lingma.log")).unwrap();
    assert!(log.contains(&format!(
        "Communication servers ready - WebSocket: {}, HTTP: {}, IPC: none",
        sim.ws_port(),
        sim.http_port()
    )));
    assert!(log.contains("picked free WebSocket port"));

    let mut c = Client::connect(sim.ws_port()).await;
    c.initialize().await;
    let (resp, stream) = c
        .chat(ask_params("r1", "", "Reply with exactly: embedded"))
        .await;
    assert_eq!(resp["result"]["success"], true);
    assert_eq!(answer_text(&stream), "embedded");

    sim.shutdown();
    let exit = tokio::time::timeout(Duration::from_secs(10), sim.wait())
        .await
        .unwrap();
    assert_eq!(exit, SimExit::Clean);
    assert!(c.closed_within(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn embedded_crash_stops_the_server_not_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = Simulator::start(config(tmp.path())).await.unwrap();
    let mut c = Client::connect(sim.ws_port()).await;
    c.initialize().await;
    let resp = c
        .call(
            "chat/ask",
            ask_params(
                "r1",
                "",
                "[[sim:crash]] Reply with exactly: abcdefghijklmnopqrstuvwxyz",
            ),
        )
        .await;
    assert_eq!(resp["result"]["success"], true);
    let stream = c
        .collect(Duration::from_secs(5), |m| m["method"] == "chat/finish")
        .await;
    assert!(!methods(&stream).contains(&"chat/finish".to_string()));
    assert!(
        !answer_text(&stream).is_empty(),
        "some deltas before the crash"
    );
    let exit = tokio::time::timeout(Duration::from_secs(10), sim.wait())
        .await
        .unwrap();
    assert_eq!(exit, SimExit::Crashed);
}
