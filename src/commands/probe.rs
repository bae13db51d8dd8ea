//! `lingma-gw probe`: a step-by-step diagnosis a user can paste into a bug report. Each step says
//! ok or failed, with a hint that can be pasted as is (it repeats `--sim`, `--lingma-bin`,
//! `--work-dir`, `--attach` and the instance, and names only files that exist); the exit code is 1
//! when any step failed. With `--attach` the first steps are finding the running runtime instead
//! of the binary and the work dir; both paths then name the dialect the runtime speaks (`--json`:
//! `"dialect"`). Each step's line is printed as the step ends, with a spinner on the running one
//! when stderr is a terminal; `--json` prints one object at the end.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::{InstanceQueryArgs, LingmaArgs};
use crate::lingma::attach::{LocalInstance, default_instance};
use crate::lingma::discovery::LingmaBinary;
use crate::lingma::ide::AttachSpec;
use crate::lingma::{ChatEvent, ChatRequest, Dialect, WorkDir};
use crate::settings::{LingmaSettings, Sources};

use super::progress::{Spinner, Ui};
use super::suggest;

/// Every step's name, in order (the checklist's first column is as wide as the longest).
const STEPS: [&str; 9] = [
    "binary",
    "work dir",
    "instance",
    "attach",
    "initialize",
    "dialect",
    "login",
    "models",
    "chat",
];

#[derive(Debug, Serialize)]
pub struct Step {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    pub ms: u64,
}

/// The steps so far; in text mode each is printed as it is recorded.
struct Report<'a> {
    steps: Vec<Step>,
    /// What the `dialect` step found.
    dialect: Option<Dialect>,
    /// Print each step's line when it ends (text mode).
    stream: bool,
    ui: &'a Ui,
    /// The spinner of the running step.
    running: Option<Spinner>,
    /// The flags that chose the setup, for hints.
    lingma: &'a LingmaArgs,
    /// `--attach` as given, for hints.
    attach: Option<&'a str>,
}

impl Report<'_> {
    /// Step `name` begins: a spinner says what it does.
    fn begin(&mut self, name: &str, what: &str) {
        // The old spinner goes first: it unregisters itself from the log writer when dropped.
        self.running = None;
        self.running = Some(self.ui.spinner(format!("{name}: {what}…")));
    }

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
        self.push(Step {
            name,
            ok,
            detail,
            hint,
            ms,
        });
        ok
    }

    fn push(&mut self, step: Step) {
        // The spinner leaves the terminal before the line is written where it was.
        if let Some(s) = self.running.take() {
            s.finish();
        }
        if self.stream {
            // A closed stdout (`| head`) ends the output, not the probe.
            let _ = super::print_stdout(render(&step).as_bytes());
        }
        self.steps.push(step);
    }

    /// A command the user can paste to see more (`lingma-gw probe -v` on the same setup).
    fn verbose_probe(&self, instance: Option<&str>) -> String {
        let mut extra = Vec::new();
        if let Some(a) = self.attach {
            extra.extend(["--attach", a]);
        }
        extra.push("-v");
        suggest("probe", self.lingma, instance, &extra)
    }
}

pub async fn run(
    args: InstanceQueryArgs,
    sources: &Sources<'_>,
    ui: &Ui,
) -> anyhow::Result<ExitCode> {
    let settings = LingmaSettings::resolve(&args.lingma, &Default::default(), sources)?
        .with_attach(&args.attach, sources)?;
    let mut report = Report {
        steps: Vec::new(),
        dialect: None,
        stream: !args.json,
        ui,
        running: None,
        lingma: &args.lingma,
        attach: args.attach.attach.as_deref(),
    };
    match &settings.attach {
        Some(spec) => probe_attached(&settings, spec, &mut report).await,
        None => probe(&settings, args.instance.instance.clone(), &mut report).await,
    }
    report.running = None;
    let all_ok = report.steps.iter().all(|s| s.ok);
    if args.json {
        let mut s = serde_json::to_string_pretty(&serde_json::json!({
            "ok": all_ok,
            "version": env!("CARGO_PKG_VERSION"),
            "dialect": report.dialect,
            "steps": report.steps,
        }))?;
        s.push('\n');
        super::print_stdout(s.as_bytes())?;
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One step's line (and its hint's), the name column as wide as the longest step name.
fn render(s: &Step) -> String {
    let width = STEPS.iter().map(|n| n.len()).max().unwrap_or(0);
    let mark = if s.ok { "ok  " } else { "FAIL" };
    let mut out = format!("{mark}  {:width$}  {} ({} ms)\n", s.name, s.detail, s.ms);
    if let Some(h) = &s.hint {
        out.push_str(&format!("      {:width$}  hint: {h}\n", ""));
    }
    out
}

async fn probe(settings: &LingmaSettings, instance: Option<String>, report: &mut Report<'_>) {
    let t = Instant::now();
    report.begin("binary", "asking the Lingma binary for its version");
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
    report.begin("work dir", "checking that the work dir is writable");
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
    report.begin(
        "instance",
        &format!(
            "opening instance {name} (a temporary one starts within {} s)",
            settings.startup_timeout.as_secs()
        ),
    );
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
            let log = work_dir.lingma_log();
            let more = report.verbose_probe(Some(&name));
            let hint = if log.is_file() {
                format!(
                    "see {}, and run `{more}` for Lingma's own output",
                    log.display()
                )
            } else {
                format!("Lingma wrote no log; run `{more}` to see all of its output")
            };
            report.record("instance", t, Err((e.to_string(), hint)));
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
    report.push(Step {
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
async fn probe_attached(settings: &LingmaSettings, spec: &AttachSpec, report: &mut Report<'_>) {
    let t = Instant::now();
    report.begin("attach", &format!("finding the running Lingma ({spec})"));
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
    report.push(Step {
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
async fn dialect_step(inst: &LocalInstance, report: &mut Report<'_>) -> bool {
    let t = Instant::now();
    report.begin("dialect", "finding which dialect the runtime speaks");
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
            format!(
                "the runtime answers neither dialect's first call; run `{}`",
                report.verbose_probe(report.attach.is_none().then_some(inst.name.as_str()))
            ),
        )),
    };
    report.record("dialect", t, result)
}

async fn checks_on(inst: &LocalInstance, report: &mut Report<'_>) {
    // The instance name means nothing to a runtime found with --attach.
    let instance = inst.runtime.is_none().then_some(inst.name.as_str());
    let t = Instant::now();
    report.begin("login", "asking who is logged in");
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
                    format!(
                        "run `{}`",
                        suggest("login", report.lingma, Some(&inst.name), &[])
                    )
                },
            )),
        ),
        Err(e) => report.record(
            "login",
            t,
            Err((
                e.to_string(),
                format!(
                    "the instance does not answer auth/status; run `{}`",
                    report.verbose_probe(instance)
                ),
            )),
        ),
    };
    if !logged_in {
        return;
    }
    let t = Instant::now();
    report.begin("models", "listing the models");
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
            let hint = format!("run `{}`", report.verbose_probe(instance));
            report.record("models", t, Err((e.to_string(), hint)));
            return;
        }
    };
    let t = Instant::now();
    report.begin(
        "chat",
        "asking \"Reply with exactly: pong\" and waiting for the answer",
    );
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
    let log = inst.work_dir.lingma_log();
    let more = report.verbose_probe(instance);
    let hint = if inst.runtime.is_none() && log.is_file() {
        format!("see {} and run `{more}`", log.display())
    } else {
        format!("run `{more}`")
    };
    report.record("chat", t, result.map_err(|e| (e, hint)));
}

fn empty_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}
