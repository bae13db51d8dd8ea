//! The memory phase: many streams held open at once through a fresh gateway, and what that costs
//! the gateway process (and, separately, its simulator child) in resident memory.
//!
//! Each stream asks with `[[sim:hang]]`: the simulator accepts the ask and sends nothing more, so
//! the gateway holds an admitted request, a leased WebSocket connection, a running Lingma stream
//! and an open SSE response (whose first, role chunk the client has read) until the client leaves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::load::HttpConn;
use crate::procs::{self, Gateway, Memory};

#[derive(Debug, Serialize)]
pub struct HoldResult {
    pub streams: usize,
    pub opened: usize,
    pub errors: Vec<String>,
    pub open_seconds: f64,
    /// The gateway process, idle after start-up (its connections to the simulator open).
    pub gateway_idle: Memory,
    /// The gateway process with every stream open (`hwm_kb` is the peak since it started).
    pub gateway_held: Memory,
    /// The simulator children, summed, with every stream open.
    pub children_held: Memory,
    pub children: usize,
    pub gateway_fds_held: usize,
    /// `chats_in_flight` as the gateway reported it while the streams were open.
    pub in_flight_reported: u64,
    /// Seconds from the clients' disconnect until the gateway reported 0 in flight.
    pub release_seconds: f64,
}

async fn in_flight(ctl: &HttpConn) -> Result<u64> {
    let v = ctl.get_json("/internal/stats").await?;
    v.pointer("/admission/in_flight")
        .and_then(serde_json::Value::as_u64)
        .context("/internal/stats has no admission.in_flight")
}

/// Opens `streams` hanging streams through `gw`, reads memory, closes them all, and waits until
/// the gateway has released every slot.
pub async fn run(gw: &Gateway, streams: usize) -> Result<HoldResult> {
    let pid = gw.child.pid();
    let ctl = HttpConn::connect(gw.addr).await?;
    // Let the start-up settle so "idle" is idle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gateway_idle = procs::memory(pid)?;

    let body = Bytes::from(
        serde_json::json!({
            "model": "auto",
            "stream": true,
            "messages": [{"role": "user", "content": "[[sim:hang]] hold this stream open"}],
        })
        .to_string(),
    );
    let started = Instant::now();
    // Connect in waves so the accept backlog never overflows.
    let gate = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::with_capacity(streams);
    for _ in 0..streams {
        let gate = gate.clone();
        let body = body.clone();
        let addr = gw.addr;
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let conn = HttpConn::connect(addr).await?;
            let mut resp = conn.post("/v1/chat/completions", body).await?;
            if resp.status() != 200 {
                let b = resp.bytes().await?;
                bail!("status: {}", String::from_utf8_lossy(&b));
            }
            // The role chunk: the response is open and streaming.
            match resp.chunk().await? {
                Some(_) => Ok((conn, resp)),
                None => bail!("the stream ended at once"),
            }
        }));
    }
    let mut held = Vec::with_capacity(streams);
    let mut errors = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(e) => errors.push(format!("task failed: {e}")),
        }
    }
    let open_seconds = started.elapsed().as_secs_f64();
    let opened = held.len();
    let in_flight_reported = in_flight(&ctl).await?;
    let gateway_held = procs::memory(pid)?;
    let kids = procs::children(pid);
    let mut children_held = Memory::default();
    for k in &kids {
        children_held = children_held + procs::memory(*k).unwrap_or_default();
    }
    let gateway_fds_held = procs::open_fds(pid);

    // Every client leaves at once.
    let released = Instant::now();
    drop(held);
    let deadline = released + Duration::from_secs(60);
    loop {
        if in_flight(&ctl).await? == 0 {
            break;
        }
        if Instant::now() > deadline {
            errors.push("slots still held 60 s after the clients left".into());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(HoldResult {
        streams,
        opened,
        errors,
        open_seconds,
        gateway_idle,
        gateway_held,
        children_held,
        children: kids.len(),
        gateway_fds_held,
        in_flight_reported,
        release_seconds: released.elapsed().as_secs_f64(),
    })
}
