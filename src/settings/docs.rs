//! The settings table as documentation: the README's configuration table (Markdown) and the man
//! pages' ENVIRONMENT sections (roff). `scripts/gen-docs.sh` writes both; `tests/generated.rs`
//! fails when the committed copies drift from the table.

use clap_mangen::roff::{Inline, Roff, bold, italic, roman};

use super::table::{self, Default, Scope, Setting};

/// The lines around the generated table in README.md.
pub const README_BEGIN: &str =
    "<!-- settings-table: generated from src/settings/table.rs by scripts/gen-docs.sh -->";
pub const README_END: &str = "<!-- settings-table: end -->";

/// Where the setting's flag is: `--work-dir` when every command it applies to has it,
/// `serve --port` or `serve|chat --attach` when only some do.
fn flag_text(s: &Setting) -> Option<String> {
    let flag = s.flag?;
    let candidates: Vec<&str> = match s.scope {
        Scope::Global => return Some(format!("--{flag}")),
        Scope::Lingma => table::LINGMA_COMMANDS.to_vec(),
        Scope::Commands(list) => list.to_vec(),
    };
    let with_flag: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|c| flag_is_on(c, flag))
        .collect();
    Some(
        if s.scope == Scope::Lingma && with_flag.len() == candidates.len() {
            format!("--{flag}")
        } else {
            format!("{} --{flag}", with_flag.join("|"))
        },
    )
}

/// Whether command `path` has `--flag` (the clap tree decides; the table only names the flag).
fn flag_is_on(path: &str, flag: &str) -> bool {
    let mut cmd = crate::cli::command();
    for part in path.split(' ') {
        match cmd.find_subcommand(part) {
            Some(sub) => cmd = sub.clone(),
            None => return false,
        }
    }
    cmd.get_arguments().any(|a| a.get_long() == Some(flag))
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

fn code(s: &str) -> String {
    format!("`{s}`")
}

/// The README's configuration table, with the marker lines around it.
pub fn readme_table() -> String {
    let mut out = String::new();
    out.push_str(README_BEGIN);
    out.push('\n');
    out.push_str("| Variable | Flag | Config key | Default | Meaning |\n");
    out.push_str("|---|---|---|---|---|\n");
    for s in table::SETTINGS {
        let env: Vec<String> = s.env.iter().map(|e| code(e)).collect();
        let flag = flag_text(s).map(|f| code(&f)).unwrap_or_default();
        let key = match (s.key, s.flag) {
            (None, None) => "(environment only)".to_string(),
            (None, Some(_)) => String::new(),
            (Some(k), _) if s.key_aliases.is_empty() => code(k),
            (Some(k), _) => {
                let old: Vec<String> = s.key_aliases.iter().map(|a| code(a)).collect();
                format!("{} (or {})", code(k), old.join(", "))
            }
        };
        let default = match s.default {
            Default::Is(v) => code(v),
            Default::Computed(v) => v.to_string(),
            Default::None => "none".to_string(),
        };
        let mut meaning = s.doc.to_string();
        if s.kind == table::Kind::List {
            meaning.push_str("; comma-separated in the environment");
        }
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            env.join(", "),
            md_escape(&flag),
            key,
            md_escape(&default),
            md_escape(&meaning)
        ));
    }
    out.push_str(README_END);
    out.push('\n');
    out
}

/// The ENVIRONMENT section for the command at `path` (`None`: the main page, every setting).
pub fn man_environment(path: Option<&str>) -> Option<String> {
    let settings: Vec<&Setting> = table::SETTINGS
        .iter()
        .copied()
        .filter(|s| path.is_none_or(|p| s.scope.includes(p)))
        .collect();
    if settings.is_empty() {
        return None;
    }
    let mut roff = Roff::new();
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(
        "Every setting is resolved in one order: the command-line flag, then the environment \
         variable, then the config file (TOML; ",
    ), bold("--config"), roman(", "), bold("LINGMA_GW_CONFIG"), roman(
        ", or lingma-gw/config.toml in the user's config dir; keys are the long flag names with \
         _), then the default. Where several variables are listed, the first one set wins; the \
         names of the earlier Python gateway keep working.",
    )]);
    for s in settings {
        roff.control("TP", []);
        let mut tag: Vec<Inline> = Vec::new();
        for (i, e) in s.env.iter().enumerate() {
            if i > 0 {
                tag.push(roman(", "));
            }
            tag.push(bold(*e));
        }
        tag.push(roman(" "));
        tag.push(italic(s.kind.format()));
        roff.text(tag);
        let mut body = vec![roman(format!("{}.", s.doc))];
        if let Some(f) = flag_text(s) {
            body.push(roman(" Flag: "));
            body.push(bold(f));
            body.push(roman("."));
        }
        match (s.key, s.flag) {
            (Some(k), _) => {
                body.push(roman(" Config key: "));
                body.push(bold(k));
                if !s.key_aliases.is_empty() {
                    body.push(roman(format!(" (or {})", s.key_aliases.join(", "))));
                }
                body.push(roman("."));
            }
            (None, None) => body.push(roman(" Environment only: never a flag or a file.")),
            (None, Some(_)) => {}
        }
        if let Some(d) = s.default_text() {
            body.push(roman(format!(" Default: {d}.")));
        }
        if s.kind == table::Kind::List {
            body.push(roman(" Comma-separated."));
        }
        if path.is_none() && matches!(s.scope, Scope::Commands(_)) {
            body.push(roman(format!(" For {}.", s.scope.describe())));
        }
        roff.text(body);
    }
    Some(roff.to_roff())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_table_has_every_setting_once() {
        let t = readme_table();
        for s in table::SETTINGS {
            let row = format!("| `{}`", s.env[0]);
            assert_eq!(t.matches(&row).count(), 1, "{row}");
        }
        assert!(t.contains("| `API_KEYS` | `serve --api-key` | `api_key` (or `api_keys`) |"));
        assert!(t.contains("`--work-dir`"));
    }

    #[test]
    fn environment_sections_follow_the_scopes() {
        let all = man_environment(None).unwrap();
        for s in table::SETTINGS {
            assert!(all.contains(s.env[0]), "{}", s.env[0]);
        }
        let chat = man_environment(Some("chat")).unwrap();
        assert!(chat.contains("LINGMA_WORK_DIR") && chat.contains("LOG_FORMAT"));
        assert!(!chat.contains("GATEWAY_PORT"));
        let serve = man_environment(Some("serve")).unwrap();
        assert!(serve.contains("GATEWAY_PORT") && serve.contains("AUTO_LOGIN_ENABLED"));
    }
}
