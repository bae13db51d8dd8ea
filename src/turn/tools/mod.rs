//! Tool calling over a model that only reads and writes text.
//!
//! The offered tools are described in the question ([`render::instructions`]), the model writes
//! its calls in an agreed syntax, the answer is scanned as it streams ([`parser::Scanner`]), each
//! block is decoded, repaired and checked against the tool's JSON Schema ([`decode::decode`]), and
//! the caller gets native calls. Earlier calls and their results are rendered back into the
//! conversation in the same syntax ([`render`]), so the model sees what it did.
//!
//! * `mod.rs`: the tool set a turn offers (specs, name resolution, schemas compiled on first use).
//! * `parser.rs`: the streaming scanner (text vs call blocks, nothing lost or doubled).
//! * `decode.rs`: block → checked call (every syntax, repairs, validation, problems).
//! * `schema.rs`: schema-guided coercion and the compact parameter rendering.
//! * `render.rs`: the instructions, and calls and results as history.

pub mod decode;
pub mod parser;
pub mod render;
pub mod schema;

use std::collections::HashSet;
use std::sync::OnceLock;

use serde_json::Value;

/// The syntax the model is asked to write calls in (and the one it wrote a call in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CallSyntax {
    /// `<tool_call>{"name":…,"arguments":{…}}</tool_call>`: what Qwen models were trained on.
    #[default]
    Hermes,
    /// `<tool_call><function=NAME><parameter=K>v</parameter></function></tool_call>`: Qwen3-Coder.
    Qwen3Coder,
    /// A fenced JSON block with `name` and `arguments`.
    FencedJson,
}

impl CallSyntax {
    pub const ALL: [CallSyntax; 3] = [Self::Hermes, Self::Qwen3Coder, Self::FencedJson];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hermes => "hermes",
            Self::Qwen3Coder => "qwen3_coder",
            Self::FencedJson => "fenced_json",
        }
    }

    /// Parses a setting value (`hermes`, `qwen3-coder`/`qwen3_coder`/`xml`, `json`/`fenced-json`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "hermes" => Some(Self::Hermes),
            "qwen3_coder" | "xml" => Some(Self::Qwen3Coder),
            "json" | "fenced_json" => Some(Self::FencedJson),
            _ => None,
        }
    }
}

/// What kind of input a tool takes.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolKind {
    /// JSON arguments checked against `ToolSpec::parameters`.
    Function,
    /// Free-form text (Codex's `custom` tools): the model's raw text is the input.
    Freeform,
}

/// One tool a client offers.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// A JSON Schema for the arguments (`{}` accepts anything).
    pub parameters: Value,
    pub kind: ToolKind,
}

impl ToolSpec {
    pub fn function(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: Value,
    ) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            parameters,
            kind: ToolKind::Function,
        }
    }

    pub fn freeform(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            parameters: Value::Object(Default::default()),
            kind: ToolKind::Freeform,
        }
    }
}

/// Which calls the client allows or requires.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// No calls: the tools are not offered (history is still rendered).
    None,
    #[default]
    Auto,
    /// At least one call.
    Required,
    /// A call of this tool.
    Named(String),
}

/// Two tools with one name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("two tools are named `{0}`")]
pub struct DuplicateTool(pub String);

/// The tools of one turn. A tool's schema is compiled the first time a call of it is checked, and
/// only then: an agent offers twenty-odd tools with every request and calls one or two, and
/// compiling them all was over half of the gateway's work on such a request.
pub struct ToolSet {
    specs: Vec<ToolSpec>,
    /// Per spec, once compiled: its schema, or `None` when it does not compile (then nothing is
    /// checked beyond JSON: a client's odd schema must not make its tool unusable).
    validators: Vec<OnceLock<Option<jsonschema::Validator>>>,
}

impl std::fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolSet")
            .field("specs", &self.specs)
            .finish()
    }
}

impl ToolSet {
    pub fn new(specs: Vec<ToolSpec>) -> Result<Self, DuplicateTool> {
        let mut seen = HashSet::new();
        for s in &specs {
            if !seen.insert(s.name.as_str()) {
                return Err(DuplicateTool(s.name.clone()));
            }
        }
        let validators = specs.iter().map(|_| OnceLock::new()).collect();
        Ok(Self { specs, validators })
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn specs(&self) -> &[ToolSpec] {
        &self.specs
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.specs.iter().map(|s| s.name.as_str())
    }

    pub fn get(&self, name: &str) -> Option<&ToolSpec> {
        self.specs.iter().find(|s| s.name == name)
    }

    /// The tool a model meant by `name`: the exact name, else the only tool that matches it
    /// ignoring case, and ignoring a `functions.`-style prefix. Several matches: none.
    pub fn resolve(&self, name: &str) -> Option<&ToolSpec> {
        if let Some(s) = self.get(name) {
            return Some(s);
        }
        let bare = |n: &str| -> String {
            n.rsplit(['.', '/', ':'])
                .next()
                .unwrap_or(n)
                .trim()
                .to_ascii_lowercase()
        };
        let wanted = name.trim().to_ascii_lowercase();
        let unique = |pred: &dyn Fn(&ToolSpec) -> bool| -> Option<&ToolSpec> {
            let mut hits = self.specs.iter().filter(|s| pred(s));
            let first = hits.next()?;
            hits.next().is_none().then_some(first)
        };
        unique(&|s| s.name.to_ascii_lowercase() == wanted)
            .or_else(|| unique(&|s| bare(&s.name) == bare(name)))
    }

    /// Schema errors of `args` for the tool `name` (empty when valid or unchecked).
    pub fn validate(&self, name: &str, args: &Value) -> Vec<String> {
        let Some(i) = self.specs.iter().position(|s| s.name == name) else {
            return Vec::new();
        };
        let spec = &self.specs[i];
        let compiled = self.validators[i].get_or_init(|| match spec.kind {
            ToolKind::Freeform => None,
            ToolKind::Function => match jsonschema::validator_for(&spec.parameters) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::debug!(tool = %spec.name, error = %e, "tool schema does not compile; arguments are not checked");
                    None
                }
            },
        });
        let Some(v) = compiled else {
            return Vec::new();
        };
        v.iter_errors(args)
            .take(5)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("at `{at}`: {e}")
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_schema_is_compiled_when_a_call_is_checked_and_one_that_does_not_compile_checks_nothing() {
        let tools = ToolSet::new(vec![
            ToolSpec::function(
                "read",
                "Reads a file.",
                json!({"type": "object", "properties": {"path": {"type": "string"}},
                       "required": ["path"]}),
            ),
            // Not a schema jsonschema compiles (`type` must name a type).
            ToolSpec::function("odd", "A client's odd schema.", json!({"type": 12})),
        ])
        .expect("distinct names");
        // Nothing is compiled until a call is checked.
        assert!(tools.validators.iter().all(|v| v.get().is_none()));
        assert!(tools.validate("read", &json!({"path": "a.txt"})).is_empty());
        assert!(tools.validators[0].get().is_some_and(Option::is_some));
        assert!(tools.validators[1].get().is_none());
        let errors = tools.validate("read", &json!({"path": 3}));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("at `/path`"), "{errors:?}");
        assert!(!tools.validate("read", &json!({})).is_empty());
        assert_eq!(tools.validate("read", &json!({"path": 3})), errors);
        // The odd schema leaves its tool usable, unchecked beyond JSON.
        assert!(jsonschema::validator_for(&json!({"type": 12})).is_err());
        assert!(
            tools
                .validate("odd", &json!({"anything": [1, 2]}))
                .is_empty()
        );
        assert!(tools.validators[1].get().is_some_and(Option::is_none));
        assert!(tools.validate("nope", &json!({})).is_empty());
    }
}
