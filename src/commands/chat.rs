//! `lingma-gw chat`: one question, the answer streamed to stdout as it arrives. On a terminal a
//! spinner on stderr says what it waits for (a temporary instance starting, the first token) and
//! is gone before the first character of the answer.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::cli::ChatArgs;
use crate::lingma::{ChatEvent, ChatRequest, Resolution};
use crate::settings::Sources;
use crate::turn::prompt::{HistoryStyle, build_question};
use crate::turn::usage::{estimate_prompt_tokens, estimate_tokens};
use crate::turn::{Message, Role};

use super::progress::{Spinner, Ui};
use super::{UsageError, not_logged_in, open_attachable};
use crate::lingma::attach::LocalInstance;

/// Exit code after Ctrl-C, as shells expect (128 + SIGINT).
const INTERRUPTED: u8 = 130;

pub async fn run(
    args: ChatArgs,
    sources: &Sources<'_>,
    verbose: bool,
    ui: &Ui,
) -> anyhow::Result<ExitCode> {
    let question = read_prompt(args.prompt.as_deref())?;
    let mut messages = Vec::new();
    if let Some(system) = args.system.as_deref().filter(|s| !s.trim().is_empty()) {
        messages.push(Message::new(Role::System, system));
    }
    messages.push(Message::new(Role::User, question));
    let spinner = ui.spinner("opening Lingma…");
    let inst = open_attachable(
        &args.lingma,
        &args.attach,
        &args.instance,
        sources,
        &spinner,
    )
    .await?;
    let outcome = ask(
        &inst,
        &args,
        &messages,
        verbose || args.show_reasoning,
        spinner,
    )
    .await;
    inst.close().await;
    outcome
}

fn read_prompt(arg: Option<&str>) -> anyhow::Result<String> {
    let text = match arg {
        Some(p) if p != "-" => p.to_string(),
        _ => {
            let stdin = std::io::stdin();
            if arg.is_none() && stdin.is_terminal() {
                return Err(
                    UsageError("give a PROMPT, or pipe one on stdin (or pass -)".into()).into(),
                );
            }
            let mut s = String::new();
            stdin
                .lock()
                .read_to_string(&mut s)
                .context("cannot read the prompt from stdin")?;
            s
        }
    };
    if text.trim().is_empty() {
        return Err(UsageError("the prompt is empty".into()).into());
    }
    Ok(text)
}

async fn ask(
    inst: &LocalInstance,
    args: &ChatArgs,
    messages: &[Message],
    show_reasoning: bool,
    spinner: Spinner,
) -> anyhow::Result<ExitCode> {
    let client = &inst.client;
    spinner.set_message(format!("asking instance {}…", inst.name));
    let auth = client.auth_status().await?;
    if !auth.logged_in() {
        return Err(not_logged_in(inst, &args.lingma));
    }
    let registry = client.query_models().await?;
    let model = match registry.resolve(args.model.as_deref(), None) {
        Resolution::Exact(k) => Some(k),
        Resolution::Default(_) if args.model.is_some() => {
            let keys: Vec<&str> = registry.models.iter().map(|m| m.key.as_str()).collect();
            return Err(UsageError(format!(
                "unknown model {:?}; available: {}",
                args.model.as_deref().unwrap_or_default(),
                keys.join(", ")
            ))
            .into());
        }
        Resolution::Default(k) => Some(k),
        Resolution::Unspecified => None,
    };
    // Listened for from here on, not per event: a Ctrl-C between two events must not be lost.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let started = Instant::now();
    let mut stream = client
        .chat(ChatRequest {
            question: build_question(messages, None, HistoryStyle::default()),
            session_id: None,
            model: model.clone(),
            mode: Default::default(),
        })
        .await?;
    spinner.set_message(format!(
        "waiting for the first token{}…",
        model
            .as_deref()
            .map(|m| format!(" from {m}"))
            .unwrap_or_default()
    ));
    // Taken off the terminal before the first character of the answer (with --json it stays,
    // saying the answer is coming, until the one JSON object is printed).
    let mut spinner = Some(spinner);
    let mut first_token: Option<Duration> = None;
    let mut stdout = std::io::stdout().lock();
    let dim = std::io::stderr().is_terminal();
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut ended_with_newline = true;
    loop {
        let ev = tokio::select! {
            ev = stream.next() => ev,
            _ = interrupt.recv() => {
                if let Some(s) = spinner.take() {
                    s.finish();
                }
                // Tell Lingma, but do not keep a user who pressed Ctrl-C waiting on it.
                let _ = tokio::time::timeout(Duration::from_secs(2), stream.stop()).await;
                if !args.json && !ended_with_newline {
                    let _ = writeln!(stdout);
                }
                let _ = writeln!(std::io::stderr(), "interrupted");
                return Ok(ExitCode::from(INTERRUPTED));
            }
        };
        let ev = match ev {
            Some(ev) => ev?,
            None => anyhow::bail!("the Lingma stream ended without a finish"),
        };
        if first_token.is_none() && matches!(ev, ChatEvent::Answer(_) | ChatEvent::Reasoning(_)) {
            if args.json {
                if let Some(s) = &spinner {
                    s.set_message("receiving the answer…");
                }
            } else if let Some(s) = spinner.take() {
                s.finish();
            }
        }
        match ev {
            ChatEvent::Answer(t) => {
                first_token.get_or_insert_with(|| started.elapsed());
                text.push_str(&t);
                if !args.json {
                    if let Err(e) = stdout.write_all(t.as_bytes()).and_then(|_| stdout.flush()) {
                        if e.kind() == std::io::ErrorKind::BrokenPipe {
                            let _ =
                                tokio::time::timeout(Duration::from_secs(2), stream.stop()).await;
                            return Ok(ExitCode::SUCCESS);
                        }
                        return Err(e.into());
                    }
                    ended_with_newline = t.ends_with('\n');
                }
            }
            ChatEvent::Reasoning(t) => {
                first_token.get_or_insert_with(|| started.elapsed());
                reasoning.push_str(&t);
                if show_reasoning && !args.json {
                    if dim {
                        eprint!("\x1b[2m{t}\x1b[0m");
                    } else {
                        eprint!("{t}");
                    }
                }
            }
            ChatEvent::Replace(full) => {
                text = full;
            }
            ChatEvent::Finished(f) => {
                if let Some(s) = spinner.take() {
                    s.finish();
                }
                if args.json {
                    let prompt_tokens = estimate_prompt_tokens(messages);
                    let completion = estimate_tokens(&text) + estimate_tokens(&reasoning);
                    let out = json!({
                        "text": text,
                        "reasoning": (!reasoning.is_empty()).then_some(&reasoning),
                        "model": model,
                        "session_id": f.session_id,
                        "request_id": f.request_id,
                        "latency_ms": started.elapsed().as_millis() as u64,
                        "first_token_ms": first_token.map(|d| d.as_millis() as u64),
                        "finish_reason": f.reason,
                        "dialect": stream.dialect(),
                        "context": f.context,
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion,
                            "total_tokens": prompt_tokens + completion,
                            "estimated": true,
                        },
                    });
                    let mut s = serde_json::to_string_pretty(&out)?;
                    s.push('\n');
                    return super::print_stdout(s.as_bytes());
                }
                if !ended_with_newline {
                    let _ = writeln!(stdout);
                }
                if show_reasoning && !reasoning.is_empty() {
                    eprintln!();
                }
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}
