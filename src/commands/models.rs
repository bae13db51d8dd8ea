//! `lingma-gw models`: the model registry as a table or JSON.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::InstanceQueryArgs;
use crate::lingma::ModelRegistry;
use crate::settings::Sources;

use super::open_attachable;
use super::progress::Ui;

pub async fn run(
    args: InstanceQueryArgs,
    sources: &Sources<'_>,
    ui: &Ui,
) -> anyhow::Result<ExitCode> {
    let spinner = ui.spinner("opening Lingma…");
    let inst = open_attachable(
        &args.lingma,
        &args.attach,
        &args.instance,
        sources,
        &spinner,
    )
    .await?;
    spinner.set_message(format!("asking instance {} for its models…", inst.name));
    let result = async {
        let auth = inst.client.auth_status().await?;
        if !auth.logged_in() {
            return Err(super::not_logged_in(&inst, &args.lingma));
        }
        Ok::<_, anyhow::Error>(inst.client.query_models().await?)
    }
    .await;
    inst.close().await;
    spinner.finish();
    let registry = result?;
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&registry.models)?;
        s.push('\n');
        s
    } else {
        table(&registry)
    };
    super::print_stdout(text.as_bytes())
}

/// A plain aligned table: key, display name, scenes, reasoning, vision, default.
pub fn table(registry: &ModelRegistry) -> String {
    let header = ["KEY", "NAME", "SCENES", "REASONING", "VISION", "DEFAULT"];
    let yes = |b: bool| if b { "yes" } else { "-" }.to_string();
    let rows: Vec<[String; 6]> = registry
        .models
        .iter()
        .map(|m| {
            [
                m.key.clone(),
                m.display_name.clone(),
                m.scenes.join(","),
                yes(m.is_reasoning),
                yes(m.is_vl),
                yes(m.is_default),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = Vec::new();
    let mut line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
    String::from_utf8_lossy(&out).into_owned()
}
