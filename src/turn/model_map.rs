//! The model map: which Lingma model answers a model name that clients send but Lingma does not
//! know (Claude Code asks for `claude-opus-…`, `claude-haiku-…`; Codex for `gpt-…`).
//!
//! Rules are `PATTERN=MODEL`, tried in order; a pattern is a glob (`*` any run of characters,
//! `?` one character), matched ignoring case against the whole name. `MODEL` is a Lingma model
//! key or display name (resolved like any requested name). A name no rule matches is resolved as
//! it is, and an unknown one falls back to the default model.

use std::fmt;

/// One `PATTERN=MODEL` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub pattern: String,
    pub model: String,
}

/// A rule that does not read as `PATTERN=MODEL`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model map rule {0:?} is not PATTERN=MODEL (e.g. claude-*=dashscope_qwen3_coder)")]
pub struct BadRule(pub String);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelMap {
    rules: Vec<Rule>,
}

impl ModelMap {
    /// Parses rules (`PATTERN=MODEL` each).
    pub fn parse<'a>(rules: impl IntoIterator<Item = &'a str>) -> Result<Self, BadRule> {
        let mut out = Vec::new();
        for r in rules {
            let r = r.trim();
            if r.is_empty() {
                continue;
            }
            let (pattern, model) = r.split_once('=').ok_or_else(|| BadRule(r.to_string()))?;
            let (pattern, model) = (pattern.trim(), model.trim());
            if pattern.is_empty() || model.is_empty() {
                return Err(BadRule(r.to_string()));
            }
            out.push(Rule {
                pattern: pattern.to_string(),
                model: model.to_string(),
            });
        }
        Ok(Self { rules: out })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The model the first matching rule names.
    pub fn map(&self, name: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| glob(&r.pattern.to_ascii_lowercase(), &name.to_ascii_lowercase()))
            .map(|r| r.model.as_str())
    }
}

impl fmt::Display for ModelMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules: Vec<String> = self
            .rules
            .iter()
            .map(|r| format!("{}={}", r.pattern, r.model))
            .collect();
        f.write_str(&rules.join(","))
    }
}

/// `*` and `?` globbing over characters (iterative, no backtracking blow-up).
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("claude-*", "claude-opus-5-5"));
        assert!(glob("*haiku*", "claude-haiku-4-5"));
        assert!(glob("gpt-?", "gpt-5"));
        assert!(!glob("gpt-?", "gpt-55"));
        assert!(glob("*", ""));
        assert!(!glob("a*b", "acbd"));
        assert!(glob("a*b*c", "axxbyyc"));
    }

    #[test]
    fn first_matching_rule_wins_ignoring_case() {
        let m = ModelMap::parse([
            "claude-*haiku*=dashscope_qwen_max_latest",
            "Claude-*=dashscope_qwen3_coder",
        ])
        .unwrap();
        assert_eq!(m.map("claude-haiku-4-5"), Some("dashscope_qwen_max_latest"));
        assert_eq!(m.map("CLAUDE-opus-5-5"), Some("dashscope_qwen3_coder"));
        assert_eq!(m.map("gpt-5"), None);
        assert_eq!(
            m.to_string(),
            "claude-*haiku*=dashscope_qwen_max_latest,Claude-*=dashscope_qwen3_coder"
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in ["claude", "=x", "x=", " = "] {
            assert!(ModelMap::parse([bad]).is_err(), "{bad}");
        }
        assert!(ModelMap::parse(["", "  "]).unwrap().is_empty());
    }
}
