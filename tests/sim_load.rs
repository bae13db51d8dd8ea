//! The simulator under the load the benchmark puts on it, scaled to a test: many concurrent
//! connections with streams open at once in no-delay mode, every answer correct and complete.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_streams_all_complete_correctly() {
    const CONNS: usize = 300;
    const ASKS: usize = 10;
    let sim = Sim::start(&[]).await;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..CONNS {
        let port = sim.ws_port;
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(port).await;
            c.initialize().await;
            let mut sid = String::new();
            for j in 0..ASKS {
                let want = format!("answer {i}-{j} 通义");
                let (r, s) = c
                    .chat(ask_params(
                        &format!("r{i}-{j}"),
                        &sid,
                        &format!("Reply with exactly: {want}"),
                    ))
                    .await;
                assert_eq!(r["result"]["success"], true);
                assert_eq!(answer_text(&s), want);
                assert_eq!(finish_of(&s)["statusCode"], 200);
                sid = s[0]["params"]["sessionId"].as_str().unwrap().to_string();
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("load finished in time")
            .expect("client task");
    }
    let elapsed = t0.elapsed();
    eprintln!(
        "{} asks over {CONNS} connections in {elapsed:?} ({:.0} asks/s, debug build)",
        CONNS * ASKS,
        (CONNS * ASKS) as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(sim.requests_for("chat/ask").len(), CONNS * ASKS);
    if let Some(pid) = sim.child.id() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let f: Vec<&str> = stat.split_whitespace().collect();
        if f.len() > 15 {
            eprintln!("simulator cpu: utime {} stime {} ticks", f[13], f[14]);
        }
    }
}
