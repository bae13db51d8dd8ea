//! The text the model reads about tools: the instructions (tools, parameters, the call syntax,
//! what `tool_choice` asks), and calls and results rendered back into the history in the same
//! syntax, so the model sees what it did and what came back.

use std::fmt::Write as _;

use serde_json::Value;

use super::schema::{cut, parameter_lines};
use super::{CallSyntax, ToolChoice, ToolKind, ToolSet};

/// The heading every instructions block starts with (the simulator looks for it).
pub const HEADING: &str = "# Tools";

/// How the instructions are written.
#[derive(Debug, Clone, Copy)]
pub struct RenderOptions {
    pub syntax: CallSyntax,
    /// Characters of a tool's description; a parameter's gets a quarter of it.
    pub description_limit: usize,
}

/// The instructions block for the tools a turn offers.
pub fn instructions(
    tools: &ToolSet,
    choice: &ToolChoice,
    parallel: bool,
    opts: RenderOptions,
) -> String {
    let mut out = String::with_capacity(256 + tools.len() * 200);
    let _ = writeln!(out, "{HEADING}\n");
    out.push_str(
        "You can call the tools below. To call a tool, write the call exactly like this:\n",
    );
    out.push_str(&example(opts.syntax));
    if tools.specs().iter().any(|t| t.kind == ToolKind::Freeform) {
        out.push_str(
            "A tool marked (free-form) takes plain text, not JSON: call it like this, with the \
             text as it is:\n",
        );
        out.push_str("<tool_call>\n<function=NAME>\n<parameter=input>\nTHE TEXT\n</parameter>\n</function>\n</tool_call>\n");
    }
    if parallel {
        out.push_str("You may write several calls, one after another, when they do not depend on each other.\n");
    } else {
        out.push_str("Write at most one call per answer.\n");
    }
    out.push_str(
        "After your call(s), stop and wait: the results come back in <tool_response> blocks. \
         Use only the tools listed here, with arguments that match their parameters. \
         Never claim that you cannot use tools.\n",
    );
    match choice {
        ToolChoice::Required => out.push_str("In this answer you must call at least one tool.\n"),
        ToolChoice::Named(name) => {
            let _ = writeln!(out, "In this answer you must call the tool `{name}`.");
        }
        ToolChoice::Auto | ToolChoice::None => {}
    }
    out.push_str("\nAvailable tools:\n");
    let param_limit = (opts.description_limit / 4).max(40);
    for t in tools.specs() {
        let desc = cut(&t.description, opts.description_limit);
        let kind = if t.kind == ToolKind::Freeform {
            " (free-form)"
        } else {
            ""
        };
        let _ = write!(out, "- {}{kind}", t.name);
        if !desc.is_empty() {
            let _ = write!(out, ": {desc}");
        }
        out.push('\n');
        if t.kind == ToolKind::Function {
            for line in parameter_lines(&t.parameters, param_limit) {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    out
}

fn example(syntax: CallSyntax) -> String {
    match syntax {
        CallSyntax::Hermes => "<tool_call>\n{\"name\": \"TOOL_NAME\", \"arguments\": {\"PARAMETER\": VALUE}}\n</tool_call>\n".into(),
        CallSyntax::Qwen3Coder => "<tool_call>\n<function=TOOL_NAME>\n<parameter=PARAMETER>\nVALUE\n</parameter>\n</function>\n</tool_call>\n".into(),
        CallSyntax::FencedJson => "```json\n{\"name\": \"TOOL_NAME\", \"arguments\": {\"PARAMETER\": VALUE}}\n```\n".into(),
    }
}

/// One earlier call as the model would have written it. `input` is the JSON arguments of a
/// function tool, or the raw text (a JSON string) of a free-form one.
pub fn call(name: &str, input: &Value, free_form: bool, syntax: CallSyntax) -> String {
    if free_form {
        let text = input
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| input.to_string());
        return format!(
            "<tool_call>\n<function={name}>\n<parameter=input>\n{text}\n</parameter>\n</function>\n</tool_call>"
        );
    }
    match syntax {
        CallSyntax::Hermes => format!("<tool_call>\n{}\n</tool_call>", call_json(name, input)),
        CallSyntax::FencedJson => format!("```json\n{}\n```", call_json(name, input)),
        CallSyntax::Qwen3Coder => {
            let mut out = format!("<tool_call>\n<function={name}>\n");
            if let Value::Object(args) = input {
                for (k, v) in args {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let _ = write!(out, "<parameter={k}>\n{text}\n</parameter>\n");
                }
            }
            out.push_str("</function>\n</tool_call>");
            out
        }
    }
}

/// `{"name": …, "arguments": …}` with the name first, as models were trained to write it.
fn call_json(name: &str, input: &Value) -> String {
    format!(
        "{{\"name\": {}, \"arguments\": {input}}}",
        Value::String(name.to_string())
    )
}

/// A tool's result as the model reads it.
pub fn result(name: Option<&str>, id: Option<&str>, content: &str, is_error: bool) -> String {
    let mut attrs = String::new();
    if let Some(n) = name {
        let _ = write!(attrs, " name=\"{n}\"");
    }
    if let Some(i) = id {
        let _ = write!(attrs, " id=\"{i}\"");
    }
    if is_error {
        attrs.push_str(" error=\"true\"");
    }
    format!("<tool_response{attrs}>\n{content}\n</tool_response>")
}

#[cfg(test)]
mod tests {
    use super::super::decode::decode;
    use super::super::parser::{Scanner, Segment};
    use super::super::{ToolSet, ToolSpec};
    use super::*;
    use serde_json::json;

    fn tools() -> ToolSet {
        ToolSet::new(vec![
            ToolSpec::function(
                "write_file",
                "Writes a file to disk.\nUse absolute paths.",
                json!({"type": "object", "properties": {
                    "file_path": {"type": "string", "description": "Absolute path"},
                    "content": {"type": "string"}
                }, "required": ["file_path", "content"]}),
            ),
            ToolSpec::freeform("apply_patch", "Applies a patch"),
        ])
        .unwrap()
    }

    #[test]
    fn instructions_are_compact_and_complete() {
        let opts = RenderOptions {
            syntax: CallSyntax::Hermes,
            description_limit: 200,
        };
        let text = instructions(
            &tools(),
            &ToolChoice::Named("write_file".into()),
            false,
            opts,
        );
        assert!(text.starts_with(HEADING));
        assert!(text.contains("- write_file: Writes a file to disk. Use absolute paths.\n"));
        assert!(text.contains("    file_path (string, required): Absolute path\n"));
        assert!(text.contains("- apply_patch (free-form): Applies a patch\n"));
        assert!(text.contains("must call the tool `write_file`"));
        assert!(text.contains("at most one call"));
        assert!(text.contains("<tool_call>\n{\"name\": \"TOOL_NAME\""));
    }

    /// A call rendered into the history in any syntax decodes back to the same call.
    #[test]
    fn history_calls_round_trip_through_the_parser() {
        let t = tools();
        let input = json!({"file_path": "/a b/c.txt", "content": "line 1\n  line 2\n"});
        for syntax in CallSyntax::ALL {
            let text = call("write_file", &input, false, syntax);
            let mut s = Scanner::default();
            let mut segs = s.push(&text);
            segs.extend(s.finish());
            let [Segment::Block(b)] = segs.as_slice() else {
                panic!("{syntax:?}: {segs:?}")
            };
            let c = decode(b, &t).unwrap();
            assert_eq!(c.written, syntax);
            assert_eq!(
                (c.name.as_str(), &c.input),
                ("write_file", &input),
                "{syntax:?}"
            );
        }
        let patch = json!("*** Begin Patch\n+x\n*** End Patch");
        let text = call("apply_patch", &patch, true, CallSyntax::Hermes);
        let mut s = Scanner::default();
        let segs = s.push(&text);
        let [Segment::Block(b)] = segs.as_slice() else {
            panic!("{segs:?}")
        };
        assert_eq!(decode(b, &t).unwrap().input, patch);
    }

    #[test]
    fn results_carry_name_id_and_error() {
        assert_eq!(
            result(Some("ls"), Some("call_1"), "a\nb", true),
            "<tool_response name=\"ls\" id=\"call_1\" error=\"true\">\na\nb\n</tool_response>"
        );
        assert_eq!(
            result(None, None, "x", false),
            "<tool_response>\nx\n</tool_response>"
        );
    }
}
