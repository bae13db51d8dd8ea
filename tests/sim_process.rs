//! The simulator as a process: start-up log lines and delay, a taken port, clean exits on SIGTERM
//! and SIGINT (also during the start-up delay), and the request log.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use serde_json::json;

#[tokio::test]
async fn startup_log_lines_in_order() {
    let sim = Sim::start(&["--transportType", "websocket"]).await;
    let log = sim.log_text();
    let pos = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("lingma.log lacks {needle:?}:\n{log}"))
    };
    let ready = format!(
        "Communication servers ready - WebSocket: {}, HTTP: {}, IPC: none",
        sim.ws_port, sim.http_port
    );
    assert!(pos("using machine id from file: ") < pos("endpoint config: "));
    assert!(pos("endpoint config: ") < pos(&format!("Using http server: {}", sim.http_port)));
    assert!(pos("Using http server: ") < pos(&ready));
    assert!(log.contains("transport type: websocket"));
    assert!(sim.dir.join("cache").is_dir());
    // The readiness line goes to stderr too (the harness found the ports there).
    assert!(
        sim.stderr().contains(&ready),
        "stderr lacks the readiness line:\n{}",
        sim.stderr()
    );
}

#[tokio::test]
async fn startup_delay_is_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let _sim = Sim::start_in(tmp.path(), &["--startup-delay-ms", "400"]).await;
    assert!(t0.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn taken_port_exits_1_without_half_starting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let tmp = tempfile::tempdir().unwrap();
    // The HTTP port is the taken one: the WebSocket port must not be left listening either (a
    // concrete number, to look at afterwards).
    let ws = port_hint();
    let out = sim_command(tmp.path(), ws, port, &["--no-delay"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("HTTP port {port} is already in use")),
        "{err}"
    );
    let log = std::fs::read_to_string(tmp.path().join("logs/lingma.log")).unwrap();
    assert!(!log.contains(READY));
    assert!(std::net::TcpListener::bind(("127.0.0.1", ws)).is_ok());

    let out = sim_command(tmp.path(), port, 0, &["--no-delay"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WebSocket port"));
}

#[tokio::test]
async fn sigterm_and_sigint_exit_0_and_close_connections() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let mut sim = Sim::start(&[]).await;
        let mut c = sim.client().await;
        // A stream in flight must not hold the exit up.
        c.call("chat/ask", ask_params("h", "", "[[sim:hang]] x"))
            .await;
        sim.signal(sig);
        assert_eq!(sim.wait_exit().await.code(), Some(0), "{sig}");
        assert!(c.closed_within(Duration::from_secs(5)).await);
        assert!(sim.log_text().contains("shutdown complete"));
    }
}

#[tokio::test]
async fn sigterm_during_startup_delay_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = sim_command(tmp.path(), 0, 0, &["--startup-delay-ms", "30000"])
        .spawn()
        .unwrap();
    // The work dir is prepared before the delay: wait for the log file, then signal.
    let log = tmp.path().join("logs/lingma.log");
    assert!(
        wait_until_async(Duration::from_secs(10), || async {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("endpoint config")
        })
        .await
    );
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn request_log_records_every_inbound_message() {
    let sim = Sim::start(&[]).await;
    let mut c = sim.client().await;
    c.call("ping", json!({"x": 1})).await;
    let mut c2 = sim.client().await;
    c2.call("auth/status", json!({})).await;
    let reqs = sim.requests();
    let ping = reqs.iter().find(|r| r["method"] == "ping").unwrap();
    assert_eq!(ping["conn"], 1);
    assert_eq!(ping["kind"], "request");
    assert_eq!(ping["params"], json!({"x": 1}));
    assert!(ping["id"].is_i64() && ping["ts"].as_i64().unwrap() > 0);
    let st = reqs.iter().find(|r| r["method"] == "auth/status").unwrap();
    assert_eq!(st["conn"], 2);
    assert_eq!(
        reqs.iter().filter(|r| r["method"] == "initialize").count(),
        2
    );
}

#[tokio::test]
async fn bad_arguments_are_usage_errors() {
    let out = tokio::process::Command::new(BIN)
        .args(["sim", "start", "--socketPort", "1"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let tmp = tempfile::tempdir().unwrap();
    let out = sim_command(tmp.path(), 0, 0, &["--accounts", "nopassword"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
