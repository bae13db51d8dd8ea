//! `cargo run --release -p lingma-gw-bench`: the gateway's load benchmark (docs/benchmark.md), a
//! development tool in its own workspace member, built against the `lingma-gw` library and driving
//! the `lingma-gw` binary of the same target directory (`cargo build --release` first).
//!
//! In one run it starts the simulator twice in its no-delay mode (once on its own, once as the
//! child of `lingma-gw serve --sim`) and sends the same load both ways: directly over Lingma's
//! WebSocket protocol with the crate's own client, and through the gateway over HTTP keep-alive.
//! It reports what the gateway adds (p50/p99 of whole non-streaming answers and of time to first
//! token, at each concurrency), gateway throughput as a fraction of direct, the gateway's resident
//! memory while it holds many open streams, and every error. It prints a table and writes JSON.
//!
//! Runs are interleaved (direct, gateway, then gateway, direct, ...) so that a change in the load
//! of a shared machine hits both sides alike; numbers are ratios and percentiles, not one time.

mod agent;
mod hold;
mod load;
mod procs;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::{Value, json};

use load::{Endpoint, Mode, Target, Workload};
use stats::{Comparison, CpuPerRequest};

/// Measures lingma-gw against the simulator it fronts, in the same run.
#[derive(Debug, Parser)]
#[command(name = "bench", version)]
struct Args {
    /// A smoke run under a minute: one round, fewer requests.
    #[arg(long)]
    quick: bool,
    /// Concurrency levels (closed-loop workers, one connection each).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// Requests per worker in one run (default 100; 25 with --quick).
    #[arg(long)]
    requests_per_worker: Option<usize>,
    /// At least this many requests in one run (default 400; 150 with --quick).
    #[arg(long)]
    min_requests: Option<usize>,
    /// Rounds of (direct, gateway) runs per level and mode, order alternating (default 3; 1 with
    /// --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Which kinds of chat to measure: non-streaming (`complete`), streaming (`stream`), or both.
    #[arg(long, value_delimiter = ',', default_value = "complete,stream")]
    modes: Vec<String>,
    /// Also measure below saturation: both sides paced to this share of the direct path's
    /// closed-loop throughput (0 turns it off), at the concurrencies of --paced-concurrency.
    #[arg(long, default_value_t = 0.25)]
    pace: f64,
    /// Concurrencies also measured paced (see --pace).
    #[arg(long, value_delimiter = ',', default_value = "16")]
    paced_concurrency: Vec<usize>,
    /// Words in each answer (`w1 w2 ...`, streamed in 8-character deltas).
    #[arg(long, default_value_t = 20)]
    words: usize,
    /// Streams held open at once for the memory measurement (0 skips it).
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Tool steps of the agent-loop run (question bytes per step, with and without reuse, on each
    /// API surface); 0 skips it.
    #[arg(long, default_value_t = 20)]
    agent_steps: usize,
    /// Where to write the JSON results (default: target/bench/results.json next to the binary).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Keep the temporary work dirs (logs of the gateway and simulators) instead of removing them.
    #[arg(long)]
    keep_work_dir: bool,
    /// Exit 1 when a target is missed (gateway CPU per chat <= 1.3x the direct client's at the
    /// highest concurrency, added p99 < 0.5 ms paced at concurrency 16, gateway RSS < 60 MB with
    /// the streams open); errors always exit 1.
    #[arg(long)]
    check: bool,
    /// Only send N chats over the direct client (at the first --concurrency and --modes) and exit:
    /// no gateway, no table. For counting the client's own instructions per chat
    /// (`scripts/callgrind-gateway.py --target direct`).
    #[arg(long, value_name = "N")]
    direct_only: Option<usize>,
}

/// Added p99 below saturation (paced rows at concurrency 16), in ms.
const TARGET_ADDED_P99_MS: f64 = 0.5;
/// Gateway CPU per chat over the direct client's, flat out at the highest concurrency.
const TARGET_GATEWAY_VS_CLIENT_CPU: f64 = 1.3;
/// Peak RSS of the gateway with the streams of the memory phase open, in MB.
const TARGET_RSS_MB: f64 = 60.0;

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Accumulates the runs of one (level, mode, target).
#[derive(Default)]
struct Acc {
    samples: Vec<Duration>,
    wall: Duration,
    errors: Vec<String>,
    /// CPU used during the runs: the bench itself, the gateway, the simulator(s).
    client_ns: u64,
    gateway_ns: u64,
    sim_ns: u64,
}

/// The processes whose CPU time a run is charged with.
struct CpuProbe {
    gateway: Option<u32>,
    sims: Vec<u32>,
}

impl CpuProbe {
    fn read(&self) -> (u64, u64, u64) {
        (
            procs::cpu_ns(std::process::id()),
            self.gateway.map(procs::cpu_ns).unwrap_or(0),
            self.sims.iter().map(|&p| procs::cpu_ns(p)).sum(),
        )
    }
}

async fn run(args: Args) -> Result<ExitCode> {
    let bin = procs::lingma_gw_binary()?;
    procs::raise_fd_limit();
    let per_worker = args
        .requests_per_worker
        .unwrap_or(if args.quick { 25 } else { 100 });
    let min_requests = args
        .min_requests
        .unwrap_or(if args.quick { 150 } else { 400 });
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let levels: Vec<usize> = args
        .concurrency
        .iter()
        .copied()
        .filter(|&c| c > 0)
        .collect();
    let max_c = levels.iter().copied().max().unwrap_or(1);
    let out = match &args.out {
        Some(p) => p.clone(),
        None => default_out()?,
    };
    let work = std::env::temp_dir().join(format!("lingma-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let machine = machine();
    println!(
        "bench: {} CPUs ({}), load average {}, open-files limit {}",
        machine["cpus"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["loadavg_start"].as_str().unwrap_or("?"),
        procs::open_files_limit(),
    );
    println!(
        "bench: binary {}, work dir {}",
        bin.display(),
        work.display()
    );

    if let Some(chats) = args.direct_only {
        let r = direct_only(&args, &bin, &work, chats).await;
        if r.is_ok() && !args.keep_work_dir {
            let _ = std::fs::remove_dir_all(&work);
        }
        return r;
    }

    let started = Instant::now();
    let result = measure(
        &args,
        &bin,
        &work,
        &levels,
        max_c,
        per_worker,
        min_requests,
        rounds,
    )
    .await;
    let (comparisons, errors, gw_after) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: work dir kept for inspection: {}", work.display());
            return Err(e);
        }
    };
    let hold = if args.streams > 0 {
        let dir = work.join("gateway-hold");
        println!(
            "bench: memory: opening {} streams through a fresh gateway ...",
            args.streams
        );
        let gw = procs::Gateway::start(&bin, &dir, args.streams)?;
        let r = hold::run(&gw, args.streams).await;
        let mut gw = gw;
        let clean = gw.child.stop(Duration::from_secs(30));
        let mut r = r?;
        if !clean {
            r.errors
                .push("the hold gateway did not exit 0 on SIGTERM".into());
        }
        Some(r)
    } else {
        None
    };
    let agent = if args.agent_steps > 0 {
        println!(
            "bench: agent loop: {} tool steps on each surface, with and without reuse ...",
            args.agent_steps
        );
        Some(agent_loops(&bin, &work, args.agent_steps).await?)
    } else {
        None
    };
    let elapsed = started.elapsed();

    print_table(&comparisons);
    let mut all_errors = errors;
    if let Some(h) = &hold {
        print_hold(h);
        all_errors.extend(h.errors.iter().map(|e| format!("hold: {e}")));
    }
    if let Some(a) = &agent {
        print_agent(a);
    }
    let verdicts = verdicts(&comparisons, hold.as_ref());
    println!();
    for (name, ok, text) in &verdicts {
        println!(
            "target {:<46} {:<6} {}",
            name,
            if *ok { "met" } else { "MISSED" },
            text
        );
    }
    println!("errors: {}", all_errors.len());
    for e in all_errors.iter().take(20) {
        println!("  {e}");
    }

    let report = json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "machine": Value::Object({
            let mut m = machine.as_object().cloned().unwrap_or_default();
            m.insert("loadavg_end".into(), json!(loadavg()));
            m
        }),
        "settings": {
            "quick": args.quick, "concurrency": levels, "requests_per_worker": per_worker,
            "min_requests": min_requests, "rounds": rounds, "answer_words": args.words,
            "streams": args.streams, "simulator": "lingma-gw sim, LINGMA_SIM_NO_DELAY=1, chunk 8 chars",
            "gateway": format!("serve --sim --instances 1, {max_c} connections, max-in-flight {max_c}"),
        },
        "latency": comparisons,
        "gateway_after_load": gw_after,
        "memory": hold,
        "agent_loop": agent,
        "targets": verdicts.iter().map(|(n, ok, t)| json!({"target": n, "met": ok, "measured": t})).collect::<Vec<_>>(),
        "errors": all_errors,
        "elapsed_seconds": elapsed.as_secs_f64(),
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "results: {} ({:.0} s)",
        out.display(),
        elapsed.as_secs_f64()
    );
    if !args.keep_work_dir {
        let _ = std::fs::remove_dir_all(&work);
    }
    let missed = verdicts.iter().any(|(_, ok, _)| !ok);
    Ok(if !all_errors.is_empty() || (args.check && missed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The direct path's own simulator (in `work/direct-sim`) and the endpoint that reaches it.
fn start_direct(bin: &std::path::Path, work: &std::path::Path) -> Result<(procs::Sim, Endpoint)> {
    let sim_dir = work.join("direct-sim");
    let sim = procs::Sim::start(bin, &sim_dir)?;
    let workspace = load::workspace(&sim_dir);
    std::fs::create_dir_all(&workspace)?;
    let direct = Endpoint::Direct {
        url: sim.ws_url(),
        workspace,
    };
    Ok((sim, direct))
}

/// A `--modes` item.
fn parse_mode(m: &str) -> Result<Mode> {
    match m {
        "complete" | "non-streaming" => Ok(Mode::Complete),
        "stream" | "streaming" => Ok(Mode::Stream),
        other => anyhow::bail!("unknown mode {other:?}: use complete or stream"),
    }
}

/// `--direct-only N`: a simulator and the direct client only; a warm-up chat on every connection,
/// then N chats. Any wrong answer fails the run.
async fn direct_only(
    args: &Args,
    bin: &std::path::Path,
    work: &std::path::Path,
    chats: usize,
) -> Result<ExitCode> {
    let c = args.concurrency.first().copied().unwrap_or(1).max(1);
    let mode = args
        .modes
        .first()
        .map_or(Ok(Mode::Complete), |m| parse_mode(m))?;
    let (mut sim, direct) = start_direct(bin, work)?;
    let w = Arc::new(Workload::new(args.words));
    let mut conns = load::connect_all(&direct, c).await?;
    let warm = load::run(&mut conns, &w, mode, c, None).await;
    let before = procs::own_cpu()?;
    let r = load::run(&mut conns, &w, mode, chats, None).await;
    let after = procs::own_cpu()?;
    drop(conns);
    sim.child.stop(Duration::from_secs(30));
    if let Some(e) = warm.errors.iter().chain(&r.errors).next() {
        anyhow::bail!("a direct chat failed: {e}");
    }
    let n = r.samples.len().max(1) as f64;
    println!(
        "bench: {} direct {} chats at concurrency {c} in {:.2} s; the client's CPU per chat: user {:.0} µs, system {:.0} µs",
        r.samples.len(),
        mode.as_str(),
        r.wall.as_secs_f64(),
        (after.user - before.user).as_secs_f64() * 1e6 / n,
        (after.system - before.system).as_secs_f64() * 1e6 / n,
    );
    Ok(ExitCode::SUCCESS)
}

/// Question bytes per step of one agent loop.
#[derive(Debug, serde::Serialize)]
struct AgentLoop {
    surface: agent::Surface,
    reuse: bool,
    question_bytes: Vec<u64>,
}

/// The agent loop on each surface, through a gateway with reuse and one without.
async fn agent_loops(
    bin: &std::path::Path,
    work: &std::path::Path,
    steps: usize,
) -> Result<Vec<AgentLoop>> {
    let mut out = Vec::new();
    for reuse in [true, false] {
        let dir = work.join(if reuse { "agent-reuse" } else { "agent-replay" });
        let extra: &[&str] = if reuse { &[] } else { &["--no-session-reuse"] };
        let mut gw = procs::Gateway::start_with(bin, &dir, 4, extra)?;
        let conn = load::HttpConn::connect(gw.addr).await?;
        for surface in agent::Surface::ALL {
            let question_bytes = agent::run(&conn, surface, steps).await?;
            out.push(AgentLoop {
                surface,
                reuse,
                question_bytes,
            });
        }
        gw.child.stop(Duration::from_secs(30));
    }
    Ok(out)
}

fn print_agent(loops: &[AgentLoop]) {
    println!();
    println!("agent loop: bytes of the question sent to Lingma per step");
    let steps = loops.first().map_or(0, |l| l.question_bytes.len());
    let mut header = format!("{:<18} {:<6}", "surface", "reuse");
    for i in 1..=steps {
        header.push_str(&format!(" {:>7}", format!("s{i}")));
    }
    println!("{header} {:>9}", "total");
    for l in loops {
        let mut row = format!(
            "{:<18} {:<6}",
            l.surface.as_str(),
            if l.reuse { "on" } else { "off" }
        );
        for b in &l.question_bytes {
            row.push_str(&format!(" {b:>7}"));
        }
        println!("{row} {:>9}", l.question_bytes.iter().sum::<u64>());
    }
}

/// The latency and throughput phase: both targets, every level, both modes, interleaved.
#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &Args,
    bin: &std::path::Path,
    work: &std::path::Path,
    levels: &[usize],
    max_c: usize,
    per_worker: usize,
    min_requests: usize,
    rounds: usize,
) -> Result<(Vec<Comparison>, Vec<String>, Value)> {
    let (mut sim, direct) = start_direct(bin, work)?;
    let mut gw = procs::Gateway::start(bin, &work.join("gateway"), max_c)?;
    println!(
        "bench: simulator pid {} on {}; gateway pid {} on http://{} ({max_c} connections)",
        sim.child.pid(),
        sim.ws_url(),
        gw.child.pid(),
        gw.addr
    );
    let gateway = Endpoint::Gateway(gw.addr);
    let w = Arc::new(Workload::new(args.words));
    let modes = args
        .modes
        .iter()
        .map(|m| parse_mode(m))
        .collect::<Result<Vec<_>>>()?;

    // Warm both paths (connections, allocator, caches) and check that both answer correctly.
    let warm_c = max_c.min(16);
    for ep in [&direct, &gateway] {
        let mut conns = load::connect_all(ep, warm_c).await?;
        for mode in [Mode::Complete, Mode::Stream] {
            let r = load::run(&mut conns, &w, mode, 200, None).await;
            if let Some(e) = r.errors.first() {
                anyhow::bail!("warm-up against {} failed: {e}", ep.target().as_str());
            }
        }
    }

    let probe_d = CpuProbe {
        gateway: None,
        sims: vec![sim.child.pid()],
    };
    let probe_g = CpuProbe {
        gateway: Some(gw.child.pid()),
        sims: procs::children(gw.child.pid()),
    };
    let mut comparisons = Vec::new();
    let mut errors = Vec::new();
    for &c in levels {
        let requests = (per_worker * c).max(min_requests);
        let mut conns_d = load::connect_all(&direct, c).await?;
        let mut conns_g = load::connect_all(&gateway, c).await?;
        for &mode in &modes {
            let mut pair = Pair {
                direct: &mut conns_d,
                gateway: &mut conns_g,
                probe_d: &probe_d,
                probe_g: &probe_g,
            };
            let (cmp, errs) = pair.compare(&w, mode, c, requests, rounds, None).await;
            report_line(&cmp);
            let capacity = cmp.direct_rps;
            comparisons.push(cmp);
            errors.extend(errs);
            // The same load below saturation: both sides on one fixed schedule, at a share of
            // what the direct path just managed flat out.
            if args.paced_concurrency.contains(&c) && args.pace > 0.0 && capacity > 0.0 {
                let rate = capacity * args.pace;
                let (cmp, errs) = pair
                    .compare(&w, mode, c, requests, rounds, Some(rate))
                    .await;
                report_line(&cmp);
                comparisons.push(cmp);
                errors.extend(errs);
            }
        }
    }

    // After the load: nothing left in flight, and what the load cost in memory.
    let ctl = load::HttpConn::connect(gw.addr).await?;
    let stats = ctl.get_json("/internal/stats").await?;
    let in_flight = stats
        .pointer("/admission/in_flight")
        .and_then(Value::as_u64);
    if in_flight != Some(0) {
        errors.push(format!("gateway in flight after the load: {in_flight:?}"));
    }
    let mem = procs::memory(gw.child.pid())?;
    let gw_after = json!({"in_flight": in_flight, "memory": mem});
    drop(ctl);
    if !gw.child.stop(Duration::from_secs(30)) {
        errors.push(format!(
            "the gateway did not exit 0 on SIGTERM (log: {})",
            gw.log.display()
        ));
    }
    if !sim.child.stop(Duration::from_secs(10)) {
        errors.push("the simulator did not exit 0 on SIGTERM".into());
    }
    Ok((comparisons, errors, gw_after))
}

/// The connections of both sides at one concurrency, and the processes charged with their CPU.
struct Pair<'a> {
    direct: &'a mut Vec<load::Conn>,
    gateway: &'a mut Vec<load::Conn>,
    probe_d: &'a CpuProbe,
    probe_g: &'a CpuProbe,
}

impl Pair<'_> {
    /// `rounds` rounds of one direct and one gateway run, the order alternating.
    async fn compare(
        &mut self,
        w: &Arc<Workload>,
        mode: Mode,
        c: usize,
        requests: usize,
        rounds: usize,
        pace: Option<f64>,
    ) -> (Comparison, Vec<String>) {
        let mut acc_d = Acc::default();
        let mut acc_g = Acc::default();
        for round in 0..rounds {
            let order = if round % 2 == 0 {
                [Target::Direct, Target::Gateway]
            } else {
                [Target::Gateway, Target::Direct]
            };
            for t in order {
                let (conns, acc, probe) = match t {
                    Target::Direct => (&mut *self.direct, &mut acc_d, self.probe_d),
                    Target::Gateway => (&mut *self.gateway, &mut acc_g, self.probe_g),
                };
                let before = probe.read();
                let r = load::run(conns, w, mode, requests, pace).await;
                let after = probe.read();
                acc.client_ns += after.0.saturating_sub(before.0);
                acc.gateway_ns += after.1.saturating_sub(before.1);
                acc.sim_ns += after.2.saturating_sub(before.2);
                acc.samples.extend(r.samples);
                acc.wall += r.wall;
                acc.errors.extend(
                    r.errors
                        .into_iter()
                        .map(|e| format!("{} {} c={c}: {e}", t.as_str(), mode.as_str())),
                );
            }
        }
        let cmp = Comparison::new(
            mode.as_str(),
            c,
            &acc_d.samples,
            &acc_g.samples,
            acc_d.wall,
            acc_g.wall,
            acc_d.errors.len(),
            acc_g.errors.len(),
        )
        .with_cpu(
            CpuPerRequest::new(acc_d.client_ns, 0, acc_d.sim_ns, acc_d.samples.len()),
            CpuPerRequest::new(
                acc_g.client_ns,
                acc_g.gateway_ns,
                acc_g.sim_ns,
                acc_g.samples.len(),
            ),
        )
        .paced(pace);
        let mut errors = acc_d.errors;
        errors.extend(acc_g.errors);
        (cmp, errors)
    }
}

fn report_line(cmp: &Comparison) {
    println!(
        "bench: c={:<3} {:<13} {:<7} direct p50 {:.3} ms p99 {:.3} ms | gateway p50 {:.3} ms p99 {:.3} ms | throughput {:.0}% (by CPU {:.0}%) | gateway CPU {:.2}x client",
        cmp.concurrency,
        cmp.mode,
        cmp.load_label(),
        cmp.direct.p50_ms,
        cmp.direct.p99_ms,
        cmp.gateway.p50_ms,
        cmp.gateway.p99_ms,
        cmp.throughput_ratio * 100.0,
        cmp.cpu_throughput_ratio * 100.0,
        cmp.gateway_vs_client_cpu
    );
}

fn default_out() -> Result<PathBuf> {
    // target/release/bench -> target/bench/results.json
    let exe = std::env::current_exe()?;
    let target = exe
        .parent()
        .and_then(|p| p.parent())
        .context("cannot find the target directory")?;
    Ok(target.join("bench").join("results.json"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> Value {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.to_string()))
        .unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu_model,
        "kernel": kernel,
        "memory": mem_total,
        "loadavg_start": loadavg(),
    })
}

fn print_table(rows: &[Comparison]) {
    println!();
    println!("Latency added by the gateway (gateway - direct, same load, same run); ms, p50 / p99");
    println!(
        "{:<14} {:>4} {:<8} | {:>15} | {:>15} | {:>17} | {:>11} | {:>10}",
        "mode",
        "conc",
        "load",
        "direct p50/p99",
        "gateway p50/p99",
        "added p50/p99",
        "ratio p99",
        "throughput"
    );
    println!("{}", "-".repeat(115));
    for r in rows {
        println!(
            "{:<14} {:>4} {:<8} | {:>6.3} / {:>6.3} | {:>6.3} / {:>6.3} | {:>+7.3} / {:>+7.3} | {:>10.2}x | {:>9.0}%",
            r.mode,
            r.concurrency,
            r.load_label(),
            r.direct.p50_ms,
            r.direct.p99_ms,
            r.gateway.p50_ms,
            r.gateway.p99_ms,
            r.added_p50_ms,
            r.added_p99_ms,
            r.ratio_p99,
            r.throughput_ratio * 100.0,
        );
    }
    println!(
        "(non-streaming: whole answer; streaming: time to first token. flat-out: closed loop, the \
         machine saturated; paced: both sides on one schedule at a share of direct capacity. \
         throughput: gateway requests/s as a share of direct)"
    );
    println!();
    println!(
        "CPU per request, microseconds (all processes; by CPU = direct total / gateway total; \
         gw / client = the gateway process over the direct client)"
    );
    println!(
        "{:<14} {:>4} {:<8} | {:>21} | {:>29} | {:>7} | {:>11}",
        "mode",
        "conc",
        "load",
        "direct: client + sim",
        "gateway: client + gw + sim",
        "by CPU",
        "gw / client"
    );
    println!("{}", "-".repeat(109));
    for r in rows {
        let (d, g) = (&r.direct_cpu, &r.gateway_cpu);
        println!(
            "{:<14} {:>4} {:<8} | {:>5.0} + {:>5.0} = {:>5.0} | {:>5.0} + {:>5.0} + {:>5.0} = {:>5.0} | {:>6.0}% | {:>10.2}x",
            r.mode,
            r.concurrency,
            r.load_label(),
            d.client_us,
            d.simulator_us,
            d.total_us,
            g.client_us,
            g.gateway_us,
            g.simulator_us,
            g.total_us,
            r.cpu_throughput_ratio * 100.0,
            r.gateway_vs_client_cpu,
        );
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn print_hold(h: &hold::HoldResult) {
    println!();
    println!(
        "Memory with {} open streams ({} opened in {:.1} s; gateway reported {} in flight; released in {:.2} s)",
        h.streams, h.opened, h.open_seconds, h.in_flight_reported, h.release_seconds
    );
    let per_stream = if h.opened > 0 {
        (h.gateway_held.rss_kb.saturating_sub(h.gateway_idle.rss_kb)) as f64 / h.opened as f64
    } else {
        0.0
    };
    println!(
        "  gateway process: idle {:.1} MB, with the streams {:.1} MB RSS, peak {:.1} MB (VmHWM); {:.1} kB per stream; {} fds",
        mb(h.gateway_idle.rss_kb),
        mb(h.gateway_held.rss_kb),
        mb(h.gateway_held.hwm_kb),
        per_stream,
        h.gateway_fds_held
    );
    println!(
        "  simulator children ({}): {:.1} MB RSS, peak {:.1} MB",
        h.children,
        mb(h.children_held.rss_kb),
        mb(h.children_held.hwm_kb)
    );
}

/// The benchmark's targets, each with whether it was met and what was measured.
fn verdicts(rows: &[Comparison], hold: Option<&hold::HoldResult>) -> Vec<(String, bool, String)> {
    let mut out = Vec::new();
    let top = rows.iter().map(|r| r.concurrency).max().unwrap_or(0);
    for r in rows
        .iter()
        .filter(|r| r.concurrency == top && r.paced_rps.is_none())
    {
        out.push((
            format!(
                "gateway CPU <= {TARGET_GATEWAY_VS_CLIENT_CPU}x client, c={top}, {}",
                r.mode
            ),
            r.gateway_vs_client_cpu <= TARGET_GATEWAY_VS_CLIENT_CPU,
            format!(
                "{:.2}x ({:.0} / {:.0} us)",
                r.gateway_vs_client_cpu, r.gateway_cpu.gateway_us, r.direct_cpu.client_us
            ),
        ));
    }
    for r in rows
        .iter()
        .filter(|r| r.concurrency == 16 && r.paced_rps.is_some())
    {
        out.push((
            format!(
                "added p99 < {TARGET_ADDED_P99_MS} ms, c=16 paced, {}",
                r.mode
            ),
            r.added_p99_ms < TARGET_ADDED_P99_MS,
            format!("{:+.3} ms", r.added_p99_ms),
        ));
    }
    if let Some(h) = hold {
        let peak = mb(h.gateway_held.hwm_kb);
        out.push((
            format!("gateway RSS < {TARGET_RSS_MB} MB, {} streams", h.streams),
            peak < TARGET_RSS_MB && h.opened == h.streams,
            format!("{peak:.1} MB peak"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(concurrency: usize, paced: bool, gw_us: f64, added_p99_ms: f64) -> Comparison {
        let d = vec![Duration::from_millis(1); 10];
        let mut c = Comparison::new(
            "non-streaming",
            concurrency,
            &d,
            &d,
            Duration::from_secs(1),
            Duration::from_secs(1),
            0,
            0,
        )
        .with_cpu(
            CpuPerRequest::new(100_000, 0, 100_000, 1),
            CpuPerRequest::new(50_000, (gw_us * 1000.0) as u64, 100_000, 1),
        )
        .paced(paced.then_some(1000.0));
        c.added_p99_ms = added_p99_ms;
        c
    }

    #[test]
    fn verdicts_apply_the_cpu_ratio_at_the_top_concurrency_and_p99_to_paced_rows() {
        let rows = [
            row(16, false, 900.0, 5.0), // flat out at 16: neither target applies
            row(16, true, 900.0, 0.4),
            row(64, false, 129.0, 9.0),
        ];
        let v = verdicts(&rows, None);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v.iter().all(|(_, ok, _)| *ok), "{v:?}");
        let rows = [row(16, true, 100.0, 0.6), row(64, false, 131.0, 0.0)];
        let v = verdicts(&rows, None);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v.iter().all(|(_, ok, _)| !*ok), "{v:?}");
        assert!(v[0].2.starts_with("1.31x"), "{v:?}");
    }
}
