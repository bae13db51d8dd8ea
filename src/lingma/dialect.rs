//! The two dialects a Lingma runtime speaks (§12.1) and how a client tells them apart.
//!
//! The plugin runtime that `Lingma start` launches (2.x) speaks the legacy `chat/ask` dialect; the
//! runtime bundled with the desktop IDE (0.7.x) and QoderCN speak the ACP-style `session/*`
//! dialect. Nothing negotiates it at `initialize`, so a client tries `session/new` once: an answer
//! means ACP, "method not found" (or an equivalent refusal) means legacy. The answer is remembered
//! per connection by the client and per instance by the pool; a setting can force either.

use serde::Serialize;

use super::rpc::RpcError;

/// The dialect a runtime speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// `chat/ask` with `chat/answer` ... `chat/finish` callbacks, one ask per connection.
    Legacy,
    /// `session/new`, `session/prompt` and `session/update` notifications, several prompts per
    /// connection.
    Acp,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Legacy => "legacy",
            Dialect::Acp => "acp",
        }
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the settings say about the dialect (`--lingma-dialect auto|legacy|acp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DialectChoice {
    /// Detect it: try `session/new` once.
    #[default]
    Auto,
    /// Use this one without asking (the user knows, or the pool already found out).
    Fixed(Dialect),
}

impl DialectChoice {
    /// `auto`, `legacy` or `acp` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(DialectChoice::Auto),
            "legacy" => Some(DialectChoice::Fixed(Dialect::Legacy)),
            "acp" => Some(DialectChoice::Fixed(Dialect::Acp)),
            _ => None,
        }
    }

    pub fn fixed(self) -> Option<Dialect> {
        match self {
            DialectChoice::Auto => None,
            DialectChoice::Fixed(d) => Some(d),
        }
    }
}

/// Whether an error means "this runtime has no such method", the sign of a legacy runtime when
/// `session/new` gets it. JSON-RPC says -32601; runtimes that do not follow it were seen answering
/// with texts instead, so those count too.
pub fn is_method_not_found(e: &RpcError) -> bool {
    match e {
        RpcError::Remote { code, message, .. } => {
            let m = message.to_ascii_lowercase();
            *code == -32601
                || m.contains("method not found")
                || m.contains("unknown method")
                || m.contains("not supported")
                || m.contains("unsupported method")
                || m.contains("no handler")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(code: i64, message: &str) -> RpcError {
        RpcError::Remote {
            method: "session/new".into(),
            code,
            message: message.into(),
            data: None,
        }
    }

    #[test]
    fn method_not_found_in_its_spellings() {
        assert!(is_method_not_found(&remote(-32601, "whatever")));
        assert!(is_method_not_found(&remote(
            -32603,
            "Unknown method: session/new"
        )));
        assert!(is_method_not_found(&remote(
            0,
            "method not found: session/new"
        )));
        assert!(!is_method_not_found(&remote(-32602, "cwd is required")));
        assert!(!is_method_not_found(&RpcError::Closed));
    }

    #[test]
    fn choices_parse() {
        assert_eq!(DialectChoice::parse("AUTO"), Some(DialectChoice::Auto));
        assert_eq!(
            DialectChoice::parse(" acp ").and_then(DialectChoice::fixed),
            Some(Dialect::Acp)
        );
        assert_eq!(
            DialectChoice::parse("legacy").and_then(DialectChoice::fixed),
            Some(Dialect::Legacy)
        );
        assert_eq!(DialectChoice::parse("both"), None);
    }
}
