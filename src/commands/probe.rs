//! `lingma-gw probe`: a step-by-step diagnosis a user can paste into a bug report. Each step says
//! ok or failed, with a hint; the exit code is 1 when any step failed. With `--attach` the first
//! steps are finding the running runtime instead of the binary and the work dir; both paths then
//! name the dialect the runtime speaks (`--json`: `"dialect"`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::InstanceQueryArgs;
use crate::lingma::attach::{LocalInstance, default_instance};
use crate::lingma::discovery::LingmaBinary;
use crate::lingma::ide::AttachSpec;
use crate::lingma::{ChatEvent, ChatRequest, Dialect, WorkDir};
use crate::settings::{LingmaSettings, Sources};

#[derive(Debug, Serialize)]
pub struct Step {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    pub ms: u64,
}

struct Report {
    steps: Vec<Step>,
    /// What the `dialect` step found.
    dialect: Option<Dialect>,
}

impl Report {
    fn record(
        &mut self,
        name: &'static str,
        started: Instant,
        result: Result<String, (String, String)>,
    ) -> bool {
        let ms = started.elapsed().as_millis() as u64;
        let ok = result.is_ok();
        let (detail, hint) = match result {
            Ok(d) => (d, None),
            Err((d, h)) => (d, Some(h)),
        };
        self.steps.push(Step {
            name,
            ok,
            detail,
            hint,
            ms,
        });
        ok
    }
}

pub async fn run(args: InstanceQueryArgs, sources: &Sources<'_>) -> anyhow::Result<ExitCode> {
    let settings = LingmaSettings::resolve(&args.lingma, &Default::default(), sources)?
        .with_attach(&args.attach, sources)?;
    let mut report = Report {
        steps: Vec::new(),
        dialect: None,
    };
    match &settings.attach {
        Some(spec) => probe_attached(&settings, spec, &mut report).await,
        None => probe(&settings, args.instance.instance.clone(), &mut report).await,
    }
    let all_ok = report.steps.iter().all(|s| s.ok);
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&serde_json::json!({
            "ok": all_ok,
            "version": env!("CARGO_PKG_VERSION"),
            "dialect": report.dialect,
            "steps": report.steps,
        }))?;
        s.push('\n');
        s
    } else {
        render(&report.steps)
    };
    super::print_stdout(text.as_bytes())?;
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn render(steps: &[Step]) -> String {
    let width = steps.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for s in steps {
        let mark = if s.ok { "ok  " } else { "FAIL" };
        out.push_str(&format!(
            "{mark}  {:width$}  {} ({} ms)\n",
            s.name, s.detail, s.ms
        ));
        if let Some(h) = &s.hint {
            out.push_str(&format!("      {:width$}  hint: {h}\n", ""));
        }
    }
    out
}

async fn probe(settings: &LingmaSettings, instance: Option<String>, report: &mut Report) {
    let t = Instant::now();
    let binary = match LingmaBinary::resolve(&settings.binary) {
        Ok(b) => {
            let version = b.version().await;
            let label = if b.is_sim {
                " (built-in simulator)"
            } else {
                ""
            };
            report.record(
                "binary",
                t,
                match version {
                    Some(v) => Ok(format!("{}{label}, version {v}", b.program.display())),
                    None => Err((
                        format!("{} does not answer `version`", b.program.display()),
                        "check that the file is the Lingma executable and is executable".into(),
                    )),
                },
            );
            b
        }
        Err(e) => {
            report.record("binary", t, Err((e.to_string(), "install Lingma through its IDE plugin, or pass --lingma-bin PATH, or try --sim".into())));
            return;
        }
    };

    let t = Instant::now();
    let name = instance.unwrap_or_else(|| default_instance(&settings.work_dir));
    let work_dir = WorkDir::of_instance(&settings.work_dir, &name);
    let dir = work_dir.root();
    let writable = std::fs::create_dir_all(dir).and_then(|_| {
        let p = dir.join(".lingma-gw-probe");
        std::fs::write(&p, b"probe")?;
        std::fs::remove_file(&p)
    });
    if !report.record(
        "work dir",
        t,
        writable.map(|_| dir.display().to_string()).map_err(|e| {
            (
                format!("{}: {e}", dir.display()),
                "pass --work-dir DIR or set LINGMA_WORK_DIR to a writable directory".into(),
            )
        }),
    ) {
        return;
    }

    let t = Instant::now();
    let inst = match LocalInstance::open(
        &binary,
        &settings.work_dir,
        &name,
        &settings.client,
        settings.startup_timeout,
    )
    .await
    {
        Ok(i) => i,
        Err(e) => {
            report.record(
                "instance",
                t,
                Err((
                    e.to_string(),
                    format!("see {} and run with -v", work_dir.lingma_log().display()),
                )),
            );
            return;
        }
    };
    let how = if inst.attached() {
        "attached to the running instance"
    } else {
        "started a temporary instance"
    };
    report.record(
        "instance",
        t,
        Ok(format!("{how} {name} at {}", inst.endpoint)),
    );
    report.steps.push(Step {
        name: "initialize",
        ok: true,
        detail: format!(
            "server version {}",
            empty_dash(inst.client.server_version())
        ),
        hint: None,
        ms: inst.open_time.as_millis() as u64,
    });
    if dialect_step(&inst, report).await {
        checks_on(&inst, report).await;
    }
    inst.close().await;
}

/// `--attach`: find the runtime, connect, and the same checks; the runtime is left running.
async fn probe_attached(settings: &LingmaSettings, spec: &AttachSpec, report: &mut Report) {
    let t = Instant::now();
    let inst = match LocalInstance::attach_to(
        spec,
        &settings.attach_roots,
        &settings.work_dir,
        crate::pool::ATTACHED_NAME,
        &settings.client,
    )
    .await
    {
        Ok(i) => i,
        Err(e) => {
            report.record(
                "attach",
                t,
                Err((
                    e.to_string(),
                    "start Lingma in your IDE, or pass --attach PATH|ws://HOST:PORT".into(),
                )),
            );
            return;
        }
    };
    let found = match &inst.runtime {
        Some(rt) => {
            let through = rt
                .source
                .as_ref()
                .map(|p| format!(" through {}", p.display()))
                .unwrap_or_default();
            let pid = rt.pid.map(|p| format!(", pid {p}")).unwrap_or_default();
            format!("{} (--attach {spec}){through}{pid}", inst.endpoint)
        }
        None => inst.endpoint.to_string(),
    };
    report.record("attach", t, Ok(found));
    report.steps.push(Step {
        name: "initialize",
        ok: true,
        detail: format!(
            "server version {}",
            empty_dash(inst.client.server_version())
        ),
        hint: None,
        ms: inst.open_time.as_millis() as u64,
    });
    if dialect_step(&inst, report).await {
        checks_on(&inst, report).await;
    }
    inst.close().await;
}

/// Which dialect the runtime speaks: forced by the settings, or found with one `session/new`.
async fn dialect_step(inst: &LocalInstance, report: &mut Report) -> bool {
    let t = Instant::now();
    let forced = inst.client.dialect().is_some();
    let result = match inst.client.detect_dialect().await {
        Ok(d) => {
            report.dialect = Some(d);
            let how = match d {
                Dialect::Legacy => "legacy (chat/ask)",
                Dialect::Acp => "acp (session/new, session/prompt)",
            };
            let why = if forced {
                "as --lingma-dialect says"
            } else {
                "detected"
            };
            Ok(format!("{how}, {why}"))
        }
        Err(e) => Err((
            e.to_string(),
            "the runtime answers neither dialect's first call; run with -v".into(),
        )),
    };
    report.record("dialect", t, result)
}

async fn checks_on(inst: &LocalInstance, report: &mut Report) {
    let t = Instant::now();
    let logged_in = match inst.client.auth_status().await {
        Ok(a) if a.logged_in() => report.record(
            "login",
            t,
            Ok(format!(
                "logged in as {} ({})",
                empty_dash(&a.name),
                empty_dash(&a.user_type)
            )),
        ),
        Ok(a) => report.record(
            "login",
            t,
            Err((
                format!("not logged in (status {})", a.status_name()),
                if inst.runtime.is_some() {
                    "log in through the IDE that runs this Lingma".to_string()
                } else {
                    format!("run `lingma-gw login --instance {}`", inst.name)
                },
            )),
        ),
        Err(e) => report.record(
            "login",
            t,
            Err((
                e.to_string(),
                "the instance does not answer auth/status; run with -v".into(),
            )),
        ),
    };
    if !logged_in {
        return;
    }
    let t = Instant::now();
    let models = inst.client.query_models().await;
    let default = match &models {
        Ok(r) if !r.is_empty() => {
            report.record("models", t, Ok(format!("{} models", r.models.len())));
            r.registry_default().map(|m| m.key.clone())
        }
        Ok(_) => {
            report.record(
                "models",
                t,
                Err((
                    "the model list is empty".into(),
                    "the account may have no model access; check it in the IDE".into(),
                )),
            );
            return;
        }
        Err(e) => {
            report.record("models", t, Err((e.to_string(), "run with -v".into())));
            return;
        }
    };
    let t = Instant::now();
    let result = async {
        let mut stream = inst
            .client
            .chat(ChatRequest {
                question: "Reply with exactly: pong".into(),
                model: default,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut first: Option<Duration> = None;
        let mut text = String::new();
        while let Some(ev) = stream.next().await {
            match ev.map_err(|e| e.to_string())? {
                ChatEvent::Answer(a) => {
                    first.get_or_insert_with(|| t.elapsed());
                    text.push_str(&a);
                }
                ChatEvent::Finished(_) => {
                    return Ok(format!(
                        "answered {:?}, first token after {} ms",
                        text.trim(),
                        first.unwrap_or_default().as_millis()
                    ));
                }
                _ => {}
            }
        }
        Err("the answer stream ended without a finish".to_string())
    }
    .await;
    report.record(
        "chat",
        t,
        result.map_err(|e| (e, "see the instance log and run with -v".into())),
    );
}

fn empty_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}
