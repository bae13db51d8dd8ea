//! Runs tests/python/sim_wire.py (an independent, byte-for-byte Python client of the Lingma wire
//! protocol) against a spawned simulator. python3 and the `websockets` package are required:
//! a missing one fails this test with the fix in the message, it is never skipped.

mod common;

use std::path::Path;

use common::*;

fn python_ready() -> Result<(), String> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import websockets"])
        .output()
        .map_err(|e| format!("python3 is required for this test and could not be run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the python package `websockets` is required: run `pip install -r tests/requirements.txt` \
             ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

#[tokio::test]
async fn python_wire_client_agrees_with_the_simulator() {
    if let Err(e) = python_ready() {
        panic!("{e}");
    }
    let sim = Sim::start(&[]).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/sim_wire.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .arg("--port")
        .arg(sim.ws_port.to_string())
        .output()
        .await
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sim_wire.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("sim_wire.py: OK"), "{stdout}");
}

#[tokio::test]
async fn python_wire_client_detects_a_mismatch() {
    if let Err(e) = python_ready() {
        panic!("{e}");
    }
    // Under the `split` fault a message no longer holds exactly one frame: the script must see it.
    let sim = Sim::start(&["--split"]).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/sim_wire.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .args(["--port", &sim.ws_port.to_string(), "--timeout", "5"])
        .output()
        .await
        .expect("run python3");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MISMATCH"));
}
