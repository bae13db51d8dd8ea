//! From a block the scanner cut out to a checked call: the name and arguments the model wrote,
//! tolerant repairs, and validation against the tool's JSON Schema.
//!
//! Repairs are the mistakes models make in practice and that have one meaning: typographic
//! quotes around JSON, trailing commas, arguments given as a JSON string instead of an object,
//! numbers and booleans written as strings where the schema says otherwise (always so in the
//! Qwen3-Coder syntax, whose parameter values are bare text), `tool`/`parameters` instead of
//! `name`/`arguments`. A name is mapped to a tool only when exactly one tool fits. Whatever is
//! still wrong is reported in words the model can act on (see `Problem`), for the corrective
//! re-ask.

use serde_json::{Map, Value};

use super::parser::{Block, Marker};
use super::{CallSyntax, ToolKind, ToolSet};

/// A call that passed every check: `input` is a JSON object for a function tool, a JSON string
/// (the raw text) for a freeform tool.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedCall {
    pub name: String,
    pub input: Value,
    /// The syntax the model wrote it in.
    pub written: CallSyntax,
    /// At least one repair was needed.
    pub repaired: bool,
}

/// Why a block is not a usable call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The block is not a call at all (a JSON code block in an answer, say): it is text.
    NotACall,
    /// It is a call, but of no tool we offered (or of several, ambiguously).
    UnknownTool { name: String },
    /// Arguments that are not JSON, even after repairs.
    BadJson { name: String, error: String },
    /// Arguments that do not match the tool's parameters.
    Invalid { name: String, errors: Vec<String> },
}

impl Problem {
    /// One line the model can act on.
    pub fn describe(&self, tools: &ToolSet) -> String {
        match self {
            Self::NotACall => "the block is not a tool call".into(),
            Self::UnknownTool { name } => format!(
                "there is no tool named `{name}`; the tools are: {}",
                tools.names().collect::<Vec<_>>().join(", ")
            ),
            Self::BadJson { name, error } => {
                format!("the arguments of `{name}` are not valid JSON ({error})")
            }
            Self::Invalid { name, errors } => format!(
                "the arguments of `{name}` do not match its parameters: {}",
                errors.join("; ")
            ),
        }
    }
}

/// Decodes and checks one block against the offered tools.
pub fn decode(block: &Block, tools: &ToolSet) -> Result<CheckedCall, Problem> {
    let (written, name, args) = match block.marker {
        Marker::FunctionTag => {
            let (name, params) = parse_function_tag(&block.body).ok_or(Problem::NotACall)?;
            (CallSyntax::Qwen3Coder, name, Args::Params(params))
        }
        Marker::ToolCallTag if block.body.trim_start().starts_with("<function=") => {
            let (name, params) = parse_function_tag(block.body.trim()).ok_or(Problem::NotACall)?;
            (CallSyntax::Qwen3Coder, name, Args::Params(params))
        }
        Marker::ToolCallTag => {
            let (name, args) = parse_json_call(&block.body).ok_or(Problem::NotACall)?;
            (CallSyntax::Hermes, name, args)
        }
        Marker::Fence => {
            let (name, args) = parse_json_call(&block.body).ok_or(Problem::NotACall)?;
            // A fenced JSON block is often just JSON in an answer: only a known tool makes it a call.
            if tools.resolve(&name).is_none() {
                return Err(Problem::NotACall);
            }
            (CallSyntax::FencedJson, name, args)
        }
    };
    let tool = tools
        .resolve(&name)
        .ok_or_else(|| Problem::UnknownTool { name: name.clone() })?;
    let mut repaired = args.repaired();
    let input = match &tool.kind {
        ToolKind::Freeform => Value::String(args.into_raw_text()),
        ToolKind::Function => {
            let mut value = args.into_object(&tool.name)?;
            repaired |= super::schema::coerce(&mut value, &tool.parameters);
            let errors = tools.validate(&tool.name, &value);
            if !errors.is_empty() {
                return Err(Problem::Invalid {
                    name: tool.name.clone(),
                    errors,
                });
            }
            value
        }
    };
    Ok(CheckedCall {
        name: tool.name.clone(),
        input,
        written,
        repaired: repaired || name != tool.name,
    })
}

/// Arguments as written, before they are checked.
#[derive(Debug)]
enum Args {
    /// A JSON value; `repaired` when getting it took a repair.
    Json { value: Value, repaired: bool },
    /// Text that should have been JSON and could not be read even with repairs.
    Broken { text: String, error: String },
    /// Qwen3-Coder parameters: bare text values.
    Params(Vec<(String, String)>),
}

impl Args {
    fn repaired(&self) -> bool {
        matches!(self, Self::Json { repaired: true, .. })
    }

    /// For a function tool: an object (a JSON string holding an object is unwrapped).
    fn into_object(self, name: &str) -> Result<Value, Problem> {
        match self {
            Self::Json {
                value: Value::Object(m),
                ..
            } => Ok(Value::Object(m)),
            Self::Json {
                value: Value::Null, ..
            } => Ok(Value::Object(Map::new())),
            Self::Json {
                value: Value::String(s),
                ..
            } => match parse_lenient(&s) {
                Ok((Value::Object(m), _)) => Ok(Value::Object(m)),
                Ok(_) if s.trim().is_empty() => Ok(Value::Object(Map::new())),
                Ok((other, _)) => Err(Problem::BadJson {
                    name: name.into(),
                    error: format!("expected an object, got {}", kind_of(&other)),
                }),
                Err(error) => Err(Problem::BadJson {
                    name: name.into(),
                    error,
                }),
            },
            Self::Json { value, .. } => Err(Problem::BadJson {
                name: name.into(),
                error: format!("expected an object, got {}", kind_of(&value)),
            }),
            Self::Broken { error, .. } => Err(Problem::BadJson {
                name: name.into(),
                error,
            }),
            Self::Params(params) => Ok(Value::Object(
                params
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            )),
        }
    }

    /// For a freeform tool: the raw text (the single parameter, or a string argument).
    fn into_raw_text(self) -> String {
        match self {
            Self::Json {
                value: Value::String(s),
                ..
            } => s,
            Self::Json {
                value: Value::Object(m),
                ..
            } if m.len() == 1 => match m.into_iter().next() {
                Some((_, Value::String(s))) => s,
                Some((_, other)) => other.to_string(),
                None => String::new(),
            },
            Self::Json { value, .. } => value.to_string(),
            Self::Broken { text, .. } => text,
            Self::Params(mut p) if p.len() == 1 => p.remove(0).1,
            Self::Params(p) => p.into_iter().map(|(_, v)| v).collect::<Vec<_>>().join("\n"),
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `{"name":…,"arguments":…}` and its variants (`tool`/`parameters`, `function: {name, arguments}`,
/// `args`, `input`). `None` when the body is not such an object at all.
fn parse_json_call(body: &str) -> Option<(String, Args)> {
    let (value, repaired) = match parse_lenient(body) {
        Ok(v) => v,
        // Broken JSON that still names a tool is a call gone wrong (worth a re-ask), not text.
        Err(error) => {
            return name_in_broken_json(body).map(|name| {
                (
                    name,
                    Args::Broken {
                        text: body.trim().to_string(),
                        error,
                    },
                )
            });
        }
    };
    let Value::Object(mut obj) = value else {
        return None;
    };
    if let Some(Value::Object(f)) = obj.get("function")
        && f.contains_key("name")
    {
        let f = f.clone();
        obj = f;
    }
    let name = ["name", "tool", "tool_name"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))?
        .trim()
        .to_string();
    if name.is_empty() {
        return None;
    }
    let args = ["arguments", "parameters", "args", "input"]
        .iter()
        .find_map(|k| obj.remove(*k))
        .unwrap_or(Value::Null);
    Some((
        name,
        Args::Json {
            value: args,
            repaired,
        },
    ))
}

/// The value of a `"name"` (or `"tool"`) key in text that does not parse as JSON.
fn name_in_broken_json(body: &str) -> Option<String> {
    for key in ["\"name\"", "\"tool\""] {
        let Some(at) = body.find(key) else { continue };
        let rest = body[at + key.len()..]
            .trim_start()
            .strip_prefix(':')?
            .trim_start();
        let rest = rest.strip_prefix('"')?;
        let end = rest.find('"')?;
        let name = rest[..end].trim();
        if !name.is_empty() {
            return Some(name.to_string());
        }
    }
    None
}

/// `<function=NAME>` then `<parameter=KEY>value</parameter>`…, up to `</function>` (which may be
/// missing at the end of an answer).
fn parse_function_tag(body: &str) -> Option<(String, Vec<(String, String)>)> {
    let rest = body.trim_start().strip_prefix("<function=")?;
    let end = rest.find('>')?;
    let name = rest[..end].trim().to_string();
    if name.is_empty() || name.contains(['<', '\n']) {
        return None;
    }
    let mut rest = &rest[end + 1..];
    let mut params = Vec::new();
    while let Some(start) = rest.find("<parameter=") {
        let after = &rest[start + "<parameter=".len()..];
        let close = after.find('>')?;
        let key = after[..close].trim().to_string();
        let value_and_rest = &after[close + 1..];
        let (value, next) = match value_and_rest.find("</parameter>") {
            Some(v) => (
                &value_and_rest[..v],
                &value_and_rest[v + "</parameter>".len()..],
            ),
            // Unclosed: up to the next parameter or the end of the function.
            None => {
                let v = value_and_rest
                    .find("<parameter=")
                    .or_else(|| value_and_rest.find("</function>"))
                    .unwrap_or(value_and_rest.len());
                (&value_and_rest[..v], &value_and_rest[v..])
            }
        };
        params.push((key, trim_one_newline(value).to_string()));
        rest = next;
    }
    Some((name, params))
}

/// Values are written on their own lines: drop the newline after the opening tag and before the
/// closing one, nothing else (indentation in a file's content matters).
fn trim_one_newline(v: &str) -> &str {
    let v = v
        .strip_prefix("\r\n")
        .or_else(|| v.strip_prefix('\n'))
        .unwrap_or(v);
    v.strip_suffix("\r\n")
        .or_else(|| v.strip_suffix('\n'))
        .unwrap_or(v)
}

/// JSON, or JSON after the repairs models need: typographic quotes, trailing commas, a fence or
/// prose around one object. Returns whether a repair was needed.
pub fn parse_lenient(text: &str) -> Result<(Value, bool), String> {
    let t = text.trim();
    let first = match serde_json::from_str::<Value>(t) {
        Ok(v) => return Ok((v, false)),
        Err(e) => e.to_string(),
    };
    let mut candidate = t.to_string();
    // Smart quotes used as JSON quotes.
    if candidate.contains(['\u{201c}', '\u{201d}']) {
        candidate = candidate.replace(['\u{201c}', '\u{201d}'], "\"");
    }
    // One object with text around it.
    if let (Some(a), Some(b)) = (candidate.find('{'), candidate.rfind('}'))
        && a < b
        && (a > 0 || b + 1 < candidate.len())
    {
        candidate = candidate[a..=b].to_string();
    }
    candidate = strip_trailing_commas(&candidate);
    serde_json::from_str::<Value>(&candidate)
        .map(|v| (v, true))
        .map_err(|_| first)
}

/// Removes commas that directly precede `}` or `]` (outside strings).
fn strip_trailing_commas(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_string = false;
    let mut escaped = false;
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        if c == ',' {
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            if matches!(next, Some('}') | Some(']')) {
                continue;
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{ToolSet, ToolSpec};
    use super::*;
    use serde_json::json;

    fn tools() -> ToolSet {
        ToolSet::new(vec![
            ToolSpec::function(
                "write_file",
                "Write a file",
                json!({"type": "object", "properties": {
                    "file_path": {"type": "string"}, "content": {"type": "string"},
                    "append": {"type": "boolean"}, "mode": {"type": "integer"}
                }, "required": ["file_path", "content"]}),
            ),
            ToolSpec::function(
                "run_shell_command",
                "Run a command",
                json!({"type": "object", "properties": {"command": {"type": "string"},
                    "level": {"type": "string", "enum": ["low", "high"]},
                    "env": {"type": "object"}}, "required": ["command"]}),
            ),
            ToolSpec::freeform("apply_patch", "Apply a patch"),
        ])
        .unwrap()
    }

    fn block(marker: Marker, body: &str) -> Block {
        Block {
            marker,
            body: body.into(),
            raw: body.into(),
        }
    }

    #[test]
    fn hermes_json_call() {
        let c = decode(
            &block(
                Marker::ToolCallTag,
                r#"{"name": "write_file", "arguments": {"file_path": "a", "content": "x"}}"#,
            ),
            &tools(),
        )
        .unwrap();
        assert_eq!(c.name, "write_file");
        assert_eq!(c.input, json!({"file_path": "a", "content": "x"}));
        assert_eq!(c.written, CallSyntax::Hermes);
        assert!(!c.repaired);
    }

    #[test]
    fn qwen3_coder_parameters_are_coerced_by_the_schema() {
        let body = "<function=write_file>\n<parameter=file_path>\na.txt\n</parameter>\n<parameter=content>\n  indented\nline 2\n</parameter>\n<parameter=append>\ntrue\n</parameter>\n<parameter=mode>\n644\n</parameter>\n</function>";
        for marker in [Marker::FunctionTag, Marker::ToolCallTag] {
            let c = decode(&block(marker, body), &tools()).unwrap();
            assert_eq!(
                c.input,
                json!({"file_path": "a.txt", "content": "  indented\nline 2", "append": true, "mode": 644})
            );
            assert_eq!(c.written, CallSyntax::Qwen3Coder);
            assert!(c.repaired, "strings became a boolean and a number");
        }
    }

    #[test]
    fn fenced_json_with_tool_and_parameters() {
        let c = decode(
            &block(
                Marker::Fence,
                r#"{"tool": "run_shell_command", "parameters": {"command": "ls"}}"#,
            ),
            &tools(),
        )
        .unwrap();
        assert_eq!(c.name, "run_shell_command");
        assert_eq!(c.written, CallSyntax::FencedJson);
        // A fenced block that names no tool is ordinary JSON: text.
        assert_eq!(
            decode(
                &block(Marker::Fence, r#"{"name": "Alice", "age": 3}"#),
                &tools()
            ),
            Err(Problem::NotACall)
        );
        assert_eq!(
            decode(&block(Marker::Fence, "[1, 2]"), &tools()),
            Err(Problem::NotACall)
        );
    }

    #[test]
    fn repairs() {
        let t = tools();
        // Smart quotes and a trailing comma.
        let c = decode(
            &block(
                Marker::ToolCallTag,
                "{\u{201c}name\u{201d}: \u{201c}run_shell_command\u{201d}, \u{201c}arguments\u{201d}: {\u{201c}command\u{201d}: \u{201c}ls\u{201d},},}",
            ),
            &t,
        )
        .unwrap();
        assert_eq!(c.input, json!({"command": "ls"}));
        assert!(c.repaired);
        // Arguments as a JSON string.
        let c = decode(
            &block(
                Marker::ToolCallTag,
                r#"{"name": "run_shell_command", "arguments": "{\"command\": \"ls\", \"env\": \"{\\\"A\\\": \\\"1\\\"}\"}"}"#,
            ),
            &t,
        )
        .unwrap();
        assert_eq!(c.input, json!({"command": "ls", "env": {"A": "1"}}));
        // A name that fits one tool only.
        let c = decode(
            &block(
                Marker::ToolCallTag,
                r#"{"name": "functions.Run_Shell_Command", "arguments": {"command": "ls"}}"#,
            ),
            &t,
        )
        .unwrap();
        assert_eq!(c.name, "run_shell_command");
        assert!(c.repaired);
    }

    #[test]
    fn problems_name_what_is_wrong() {
        let t = tools();
        assert_eq!(
            decode(
                &block(
                    Marker::ToolCallTag,
                    r#"{"name": "delete_all", "arguments": {}}"#
                ),
                &t
            ),
            Err(Problem::UnknownTool {
                name: "delete_all".into()
            })
        );
        let missing = decode(
            &block(
                Marker::ToolCallTag,
                r#"{"name": "write_file", "arguments": {"file_path": "a"}}"#,
            ),
            &t,
        )
        .unwrap_err();
        let Problem::Invalid { errors, .. } = &missing else {
            panic!("{missing:?}")
        };
        assert!(errors.iter().any(|e| e.contains("content")), "{errors:?}");
        let bad_enum = decode(
            &block(
                Marker::ToolCallTag,
                r#"{"name": "run_shell_command", "arguments": {"command": "ls", "level": "max"}}"#,
            ),
            &t,
        )
        .unwrap_err();
        assert!(bad_enum.describe(&t).contains("level"), "{bad_enum:?}");
        let broken = decode(
            &block(
                Marker::ToolCallTag,
                r#"{"name": "write_file", "arguments": "{file_path: a"}"#,
            ),
            &t,
        )
        .unwrap_err();
        assert!(matches!(broken, Problem::BadJson { .. }), "{broken:?}");
        // The whole block broken, but naming a tool: a bad call, not text.
        let broken = decode(
            &block(
                Marker::ToolCallTag,
                r#"{"name": "write_file", "arguments": {file_path: "a", content: }"#,
            ),
            &t,
        )
        .unwrap_err();
        assert!(
            matches!(broken, Problem::BadJson { ref name, .. } if name == "write_file"),
            "{broken:?}"
        );
        assert_eq!(
            decode(&block(Marker::ToolCallTag, "not json at all"), &t),
            Err(Problem::NotACall)
        );
    }

    #[test]
    fn freeform_tools_take_the_raw_text() {
        let t = tools();
        let patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch";
        let c = decode(
            &block(
                Marker::ToolCallTag,
                &format!(
                    "<function=apply_patch>\n<parameter=input>\n{patch}\n</parameter>\n</function>"
                ),
            ),
            &t,
        )
        .unwrap();
        assert_eq!(c.input, Value::String(patch.into()));
        let c = decode(
            &block(
                Marker::ToolCallTag,
                &serde_json::to_string(
                    &json!({"name": "apply_patch", "arguments": {"input": patch}}),
                )
                .unwrap(),
            ),
            &t,
        )
        .unwrap();
        assert_eq!(c.input, Value::String(patch.into()));
    }

    #[test]
    fn trailing_commas_inside_strings_are_kept() {
        assert_eq!(
            strip_trailing_commas(r#"{"a": "x,}", "b": [1,2,],}"#),
            r#"{"a": "x,}", "b": [1,2]}"#
        );
    }
}
