//! The simulator as a coding agent's model: when a question carries tool instructions (the
//! `# Tools` block a gateway puts in front of the conversation), directives in the user's text
//! script the tool calls it answers with, so a real agent client can be driven through a loop of
//! several steps against the simulator.
//!
//! * `[[tool:NAME {JSON arguments}]]`: one step of the script: on that turn the answer is a call
//!   of `NAME`. Several blocks make several steps, one per turn; `[[tool&:NAME {…}]]` adds a call
//!   to the step before it (parallel calls in one answer).
//! * `[[sim:tool-syntax=hermes|qwen3-coder|json|function]]`: the syntax the calls are written in
//!   (`function` is Qwen3-Coder's `<function=…>` without the outer `<tool_call>`). Default: hermes.
//! * `[[sim:tool-fault=bad-json|unknown-tool|missing-arg|refuse]]`: each step's first answer is
//!   broken that way (JSON that does not parse, a tool nobody offered, the arguments without their
//!   required fields, a refusal in words); asked again in the same session, the simulator answers
//!   correctly, unless `[[sim:tool-fault-sticky]]` keeps it broken.
//!
//! The step is the number of tool results the session has received (told apart by call id). When
//! every scripted step is done, a tool result is answered in text that quotes it. A question with
//! tool instructions and no script is answered as any other (a model that chose not to call).
//! Everything is read from the session's questions, so it works the same whether a gateway sends
//! only the new messages of a conversation or replays all of it.

use serde_json::Value;

/// What starts a gateway's tool instructions.
pub const TOOLS_HEADING: &str = "# Tools";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Hermes,
    Qwen3Coder,
    Json,
    Function,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    BadJson,
    UnknownTool,
    MissingArg,
    Refuse,
}

/// One scripted call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: String,
    pub arguments: Value,
}

/// The agent directives of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub steps: Vec<Vec<Call>>,
    pub syntax: Syntax,
    pub fault: Option<Fault>,
    pub sticky: bool,
}

/// Reads the script from the first text that has one.
pub fn script<'a>(texts: impl IntoIterator<Item = &'a str>) -> Option<Script> {
    let text = texts.into_iter().find(|t| t.contains("[[tool:"))?;
    let mut steps: Vec<Vec<Call>> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("[[tool") {
        let after = &rest[start + "[[tool".len()..];
        let (append, body_start) = match after.strip_prefix("&:") {
            Some(b) => (true, b),
            None => match after.strip_prefix(':') {
                Some(b) => (false, b),
                None => {
                    rest = after;
                    continue;
                }
            },
        };
        let Some(end) = body_start.find("]]") else {
            break;
        };
        let body = body_start[..end].trim();
        rest = &body_start[end + 2..];
        let (name, args) = match body.find(['{', ' ']) {
            Some(i) => (body[..i].trim(), body[i..].trim()),
            None => (body, ""),
        };
        let arguments = if args.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(args).unwrap_or(Value::String(args.to_string()))
        };
        let call = Call {
            name: name.to_string(),
            arguments,
        };
        match steps.last_mut() {
            Some(step) if append => step.push(call),
            _ => steps.push(vec![call]),
        }
    }
    let flag = |name: &str| text.contains(&format!("[[sim:{name}]]"));
    let value = |name: &str| -> Option<String> {
        let open = format!("[[sim:{name}=");
        let at = text.find(&open)? + open.len();
        let end = text[at..].find("]]")?;
        Some(text[at..at + end].trim().to_ascii_lowercase())
    };
    let syntax = match value("tool-syntax").as_deref() {
        Some("qwen3-coder") | Some("qwen3_coder") | Some("xml") => Syntax::Qwen3Coder,
        Some("json") | Some("fenced-json") => Syntax::Json,
        Some("function") => Syntax::Function,
        _ => Syntax::Hermes,
    };
    let fault = match value("tool-fault").as_deref() {
        Some("bad-json") => Some(Fault::BadJson),
        Some("unknown-tool") => Some(Fault::UnknownTool),
        Some("missing-arg") => Some(Fault::MissingArg),
        Some("refuse") => Some(Fault::Refuse),
        _ => None,
    };
    Some(Script {
        steps,
        syntax,
        fault,
        sticky: flag("tool-fault-sticky"),
    })
}

/// The tool results in a question: (call id, content), in order.
pub fn tool_results(question: &str) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let mut rest = question;
    while let Some(start) = rest.find("<tool_response") {
        let after = &rest[start..];
        let Some(head_end) = after.find('>') else {
            break;
        };
        let head = &after[..head_end];
        let id = head.find("id=\"").and_then(|i| {
            let v = &head[i + 4..];
            v.find('"').map(|e| v[..e].to_string())
        });
        let body = &after[head_end + 1..];
        // A result block puts its content on the next line and closes; a mention of the tag in
        // prose (the instructions say how results come back) does neither.
        let (Some(content_start), Some(e)) = (
            body.strip_prefix('\n').map(|_| 1),
            body.find("</tool_response>"),
        ) else {
            rest = body;
            continue;
        };
        let content = &body[content_start.min(e)..e];
        out.push((id, content.trim_matches('\n').to_string()));
        rest = &body[e + "</tool_response>".len()..];
    }
    out
}

/// What the agent answers. `earlier` are the session's earlier questions, `question` this one;
/// `correcting` is set when the previous answer of the session was a broken call.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub text: String,
    /// The answer is a broken call (or a refusal): the next question of the session corrects it.
    pub broken: bool,
}

/// The answer of an agent turn, or `None` when the question is not an agent's (no tool
/// instructions, or no script).
pub fn answer(earlier: &[&str], question: &str, correcting: bool) -> Option<Answer> {
    if !question.contains(TOOLS_HEADING) && !earlier.iter().any(|q| q.contains(TOOLS_HEADING)) {
        return None;
    }
    let script = script(earlier.iter().copied().chain(std::iter::once(question)))?;
    // Results received so far in this session, told apart by call id (a replayed conversation
    // carries earlier results again).
    let mut seen: Vec<Option<String>> = Vec::new();
    let mut last_result = None;
    for q in earlier.iter().copied().chain(std::iter::once(question)) {
        for (id, content) in tool_results(q) {
            if id.is_none() || !seen.contains(&id) {
                seen.push(id);
            }
            last_result = Some(content);
        }
    }
    let mut consumed = seen.len();
    let mut step = 0;
    while step < script.steps.len() && consumed >= script.steps[step].len() {
        consumed -= script.steps[step].len();
        step += 1;
    }
    let Some(calls) = script.steps.get(step) else {
        let quoted = last_result.unwrap_or_default();
        return Some(Answer {
            text: format!("Done. The tool said: {}", quoted.trim()),
            broken: false,
        });
    };
    let broken = script.fault.filter(|_| !correcting || script.sticky);
    let text = match broken {
        Some(Fault::Refuse) => "I'm sorry, but I can't run tools here.".to_string(),
        Some(fault) => render_calls(calls, script.syntax, Some(fault)),
        None => render_calls(calls, script.syntax, None),
    };
    Some(Answer {
        text,
        broken: broken.is_some(),
    })
}

fn render_calls(calls: &[Call], syntax: Syntax, fault: Option<Fault>) -> String {
    let mut out = format!("I'll use the {} tool.\n", calls[0].name);
    for c in calls {
        let (name, args) = match fault {
            Some(Fault::UnknownTool) => ("no_such_tool".to_string(), c.arguments.clone()),
            Some(Fault::MissingArg) => (c.name.clone(), Value::Object(Default::default())),
            _ => (c.name.clone(), c.arguments.clone()),
        };
        let json_call = if fault == Some(Fault::BadJson) {
            // Keys without quotes: no repair makes this JSON.
            let inner = match &args {
                Value::Object(m) => m
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            format!(
                "{{\"name\": {}, \"arguments\": {{{inner}}}}}",
                Value::String(name.clone())
            )
        } else {
            format!(
                "{{\"name\": {}, \"arguments\": {args}}}",
                Value::String(name.clone())
            )
        };
        let block = match syntax {
            Syntax::Hermes => format!("<tool_call>\n{json_call}\n</tool_call>\n"),
            Syntax::Json => format!("```json\n{json_call}\n```\n"),
            Syntax::Qwen3Coder | Syntax::Function => {
                let mut f = format!("<function={name}>\n");
                if let Value::Object(m) = &args {
                    for (k, v) in m {
                        let text = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        f.push_str(&format!("<parameter={k}>\n{text}\n</parameter>\n"));
                    }
                }
                f.push_str("</function>");
                if syntax == Syntax::Qwen3Coder {
                    format!("<tool_call>\n{f}\n</tool_call>\n")
                } else {
                    format!("{f}\n")
                }
            }
        };
        out.push_str(&block);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const Q: &str = "[System]\n# Tools\n...\n\n[User]\nDo it [[tool:write_file {\"path\": \"a\", \"content\": \"x\"}]] [[tool:read {\"path\": \"a\"}]] [[tool&:ls {}]]";

    #[test]
    fn the_script_has_steps_and_parallel_calls() {
        let s = script([Q]).unwrap();
        assert_eq!(s.steps.len(), 2);
        assert_eq!(
            s.steps[0][0].arguments,
            json!({"path": "a", "content": "x"})
        );
        assert_eq!(s.steps[1].len(), 2);
        assert_eq!(s.steps[1][1].name, "ls");
        assert_eq!(s.syntax, Syntax::Hermes);
    }

    #[test]
    fn steps_follow_the_results_received() {
        let a = answer(&[], Q, false).unwrap();
        assert!(
            a.text.contains("<tool_call>\n{\"name\": \"write_file\""),
            "{}",
            a.text
        );
        // A follow-up carries one result: the second step (two calls at once).
        let r1 = "[Tool result]\n<tool_response name=\"write_file\" id=\"c1\">\nwritten\n</tool_response>";
        let a = answer(&[Q], r1, false).unwrap();
        assert!(
            a.text.contains("\"read\"") && a.text.contains("\"ls\""),
            "{}",
            a.text
        );
        // The same as a replay of the whole conversation in a fresh session.
        let replay = format!("{Q}\n\n[Assistant]\n...\n\n{r1}");
        assert_eq!(answer(&[], &replay, false).unwrap(), a);
        // After both results of step two: text quoting the last result.
        let r2 = "<tool_response id=\"c2\">\nfile a\n</tool_response>\n<tool_response id=\"c3\">\nlisting\n</tool_response>";
        let a = answer(&[Q, r1], r2, false).unwrap();
        assert_eq!(a.text, "Done. The tool said: listing");
    }

    #[test]
    fn faults_break_the_first_attempt_and_are_corrected_when_asked_again() {
        let q = format!("{Q} [[sim:tool-fault=bad-json]]");
        let a = answer(&[], &q, false).unwrap();
        assert!(a.broken && a.text.contains("path: \"a\""), "{}", a.text);
        let fixed = answer(&[&q], "Your last answer could not be used", true).unwrap();
        assert!(
            !fixed.broken && fixed.text.contains("\"path\":\"a\""),
            "{}",
            fixed.text
        );
        let sticky = format!("{q} [[sim:tool-fault-sticky]]");
        assert!(answer(&[&sticky], "again", true).unwrap().broken);
        let refuse = format!("{Q} [[sim:tool-fault=refuse]]");
        let a = answer(&[], &refuse, false).unwrap();
        assert!(a.broken && !a.text.contains("tool_call"));
    }

    #[test]
    fn syntaxes() {
        for (name, needle) in [
            (
                "qwen3-coder",
                "<tool_call>\n<function=write_file>\n<parameter=path>\na\n</parameter>",
            ),
            ("function", "<function=write_file>"),
            ("json", "```json\n{\"name\": \"write_file\""),
        ] {
            let q = format!("{Q} [[sim:tool-syntax={name}]]");
            let a = answer(&[], &q, false).unwrap();
            assert!(a.text.contains(needle), "{name}: {}", a.text);
        }
        let a = answer(&[], &format!("{Q} [[sim:tool-syntax=function]]"), false).unwrap();
        assert!(!a.text.contains("<tool_call>"));
    }

    #[test]
    fn the_tag_in_prose_is_not_a_result() {
        assert!(tool_results("results come back in <tool_response> blocks").is_empty());
        assert_eq!(
            tool_results("x <tool_response id=\"a\">\nok\n</tool_response>"),
            vec![(Some("a".to_string()), "ok".to_string())]
        );
    }

    #[test]
    fn no_instructions_or_no_script_is_not_an_agent_turn() {
        assert_eq!(answer(&[], "[[tool:x {}]] no heading", false), None);
        assert_eq!(answer(&[], "# Tools\nplain question", false), None);
    }
}
