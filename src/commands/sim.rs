//! `lingma-gw sim`: turns the parsed `sim` arguments into a [`SimConfig`] and runs the built-in
//! Lingma simulator (`start`), reads a work dir's login state (`status`) or prints the version.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::cli::sim::{SimCommand, SimStartArgs, StatusFormat};
use crate::sim::{self, CRASH_EXIT_CODE, Faults, SimConfig, SimExit};

/// Resolves `sim start` flags (already merged with their `LINGMA_SIM_*` variables by clap).
pub fn config_from_args(args: SimStartArgs) -> SimConfig {
    let k = args.knobs;
    let f = args.faults;
    let mut cfg = SimConfig::new(args.work_dir, args.socket_port, args.http_port);
    cfg.endpoint = args.endpoint;
    cfg.transport_type = args.transport_type;
    cfg.copy_data_dir = args.copy_data_dir;
    cfg.startup_delay = Duration::from_millis(k.startup_delay_ms);
    cfg.first_token_delay = Duration::from_millis(k.first_token_delay_ms);
    cfg.chunk_size = k.chunk_size;
    cfg.chunk_delay = Duration::from_millis(k.chunk_delay_ms);
    cfg.strict_acks = k.strict_acks;
    cfg.machine_token = k.machine_token.filter(|t| !t.is_empty());
    cfg.logged_out = k.logged_out;
    cfg.login_challenge = k.login_challenge;
    cfg.accounts = k.accounts.0;
    if let Some(u) = k.credit_usage {
        cfg.credit_usage = u;
    }
    cfg.think = k.think;
    cfg.request_log = !k.no_request_log;
    cfg.dialect = k.dialect;
    cfg.info_file = k.info_file;
    cfg.ipc_socket = k.ipc_socket;
    cfg.delete_needs_id = k.delete_needs_id;
    if k.no_delay {
        cfg = cfg.with_no_delay();
    }
    let on = |b: bool| b.then_some(true);
    let flags = Faults {
        crash: on(f.crash),
        close: on(f.close),
        no_finish: on(f.no_finish),
        error: f.error,
        quota: on(f.quota),
        slow: f.slow.map(Duration::from_millis),
        delay: f.delay.map(Duration::from_millis),
        overwrite: on(f.overwrite),
        retry: on(f.retry),
        off_by_one: on(f.off_by_one),
        expired: on(f.expired),
        split: on(f.split),
        batch: on(f.batch),
        think: None,
        hang: on(f.hang),
        step_end_first: on(f.step_end_first),
        len: None,
        after: f.fault_after,
        chunk: None,
        prompt_reply: None,
    };
    // Individual flags win over the --faults list.
    cfg.faults = flags.over(&f.faults.unwrap_or_default());
    cfg
}

pub async fn run(cmd: SimCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SimCommand::Version => {
            println!("{}", sim::VERSION);
            Ok(ExitCode::SUCCESS)
        }
        SimCommand::Status(args) => {
            let report = sim::status(&args.work_dir);
            match args.output {
                StatusFormat::Json => println!("{}", serde_json::to_string(&report)?),
                StatusFormat::Text => match &report.username {
                    Some(u) => println!(
                        "logged in as {u} ({}), Lingma {}",
                        report.user_type.as_deref().unwrap_or(""),
                        report.version
                    ),
                    None => println!("not logged in, Lingma {}", report.version),
                },
            }
            Ok(ExitCode::SUCCESS)
        }
        SimCommand::Start(args) => {
            let cfg = config_from_args(args);
            let work_dir = cfg.work_dir.clone();
            let exit = sim::run_until_signal(cfg)
                .await
                .with_context(|| format!("simulator in {} failed to start", work_dir.display()))?;
            Ok(match exit {
                SimExit::Clean => ExitCode::SUCCESS,
                SimExit::Crashed => ExitCode::from(CRASH_EXIT_CODE as u8),
            })
        }
    }
}
