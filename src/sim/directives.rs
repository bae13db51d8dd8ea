//! Per-request fault directives embedded in the question text: `[[sim:NAME]]`,
//! `[[sim:NAME=VALUE]]`, or several in one bracket separated by commas (`[[sim:crash,after=3]]`).
//!
//! A gateway forwards the user's text untouched, so a test that can only talk OpenAI to the gateway
//! can still steer the simulator behind it. The same `NAME[=VALUE]` syntax is used by the
//! process-wide `--faults` list (`LINGMA_SIM_FAULTS`).

use std::time::Duration;

use super::config::{Faults, PromptReply, ThinkStyle};

const OPEN: &str = "[[sim:";
const CLOSE: &str = "]]";
/// Largest `len=N` answer (about 7 MB of text).
pub const MAX_LEN: usize = 1_000_000;

/// A question with its directives taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// The question without directives, used to generate the reply.
    pub text: String,
    pub faults: Faults,
    /// Directives that were not understood (stripped and logged, never fatal).
    pub unknown: Vec<String>,
}

/// Removes every `[[sim:...]]` from `question` and collects the faults they name.
pub fn parse(question: &str) -> Directives {
    let mut faults = Faults::default();
    let mut unknown = Vec::new();
    let mut text = String::with_capacity(question.len());
    let mut rest = question;
    while let Some(start) = rest.find(OPEN) {
        let body_start = start + OPEN.len();
        let Some(len) = rest[body_start..].find(CLOSE) else {
            break;
        };
        text.push_str(&rest[..start]);
        for item in rest[body_start..body_start + len].split(',') {
            if let Err(e) = apply(&mut faults, item) {
                unknown.push(e);
            }
        }
        rest = &rest[body_start + len + CLOSE.len()..];
        // "a [[sim:x]] b" becomes "a b", not "a  b".
        if text.ends_with([' ', '\t']) || text.is_empty() {
            rest = rest.strip_prefix([' ', '\t']).unwrap_or(rest);
        }
    }
    text.push_str(rest);
    Directives {
        text,
        faults,
        unknown,
    }
}

/// Parses a process-wide list such as `crash,slow=500` or `off-by-one retry`.
pub fn parse_list(list: &str) -> Result<Faults, String> {
    let mut faults = Faults::default();
    for item in list.split([',', ' ', ';']).filter(|s| !s.trim().is_empty()) {
        apply(&mut faults, item)?;
    }
    Ok(faults)
}

fn flag(value: Option<&str>, name: &str) -> Result<bool, String> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("1") | Some("on") | Some("true") | Some("yes") => Ok(true),
        Some("0") | Some("off") | Some("false") | Some("no") => Ok(false),
        Some(v) => Err(format!("{name}={v}: expected on/off")),
    }
}

fn number<T: std::str::FromStr>(value: Option<&str>, name: &str) -> Result<T, String> {
    let v = value.ok_or_else(|| format!("{name} needs a value ({name}=N)"))?;
    v.trim()
        .parse()
        .map_err(|_| format!("{name}={v}: not a number"))
}

fn millis(value: Option<&str>, name: &str) -> Result<Duration, String> {
    number::<u64>(value, name).map(Duration::from_millis)
}

/// Applies one `NAME[=VALUE]` item.
fn apply(f: &mut Faults, item: &str) -> Result<(), String> {
    let item = item.trim();
    let (name, value) = match item.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (item, None),
    };
    let name = name.to_ascii_lowercase().replace('_', "-");
    match name.as_str() {
        // `crash=N` / `close=N` also set the number of deltas before the fault.
        "crash" | "close" => {
            let on = match value.map(str::parse::<usize>) {
                Some(Ok(n)) => {
                    f.after = Some(n);
                    true
                }
                _ => flag(value, &name)?,
            };
            if name == "crash" {
                f.crash = Some(on);
            } else {
                f.close = Some(on);
            }
        }
        "no-finish" | "nofinish" => f.no_finish = Some(flag(value, &name)?),
        "error" => {
            f.error = Some(match value.map(|v| v.to_ascii_lowercase()).as_deref() {
                Some("off") | Some("none") => 0,
                _ => number(value, &name)?,
            })
        }
        "quota" => f.quota = Some(flag(value, &name)?),
        "slow" => f.slow = Some(millis(value, &name)?),
        "delay" => f.delay = Some(millis(value, &name)?),
        "overwrite" => f.overwrite = Some(flag(value, &name)?),
        "retry" => f.retry = Some(flag(value, &name)?),
        "off-by-one" | "offbyone" => f.off_by_one = Some(flag(value, &name)?),
        "expired" => f.expired = Some(flag(value, &name)?),
        "split" => f.split = Some(flag(value, &name)?),
        "batch" => f.batch = Some(flag(value, &name)?),
        "hang" => f.hang = Some(flag(value, &name)?),
        "step-end-first" => f.step_end_first = Some(flag(value, &name)?),
        "think" => {
            f.think = Some(match value.map(|v| v.to_ascii_lowercase()).as_deref() {
                Some("callback") => ThinkStyle::Callback,
                None | Some("inline") => ThinkStyle::Inline,
                Some(v) => return Err(format!("think={v}: expected inline or callback")),
            })
        }
        "len" => {
            let n: usize = number(value, &name)?;
            // A typo must not make the simulator allocate gigabytes.
            if n > MAX_LEN {
                return Err(format!("len={n}: at most {MAX_LEN}"));
            }
            f.len = Some(n);
        }
        "after" => f.after = Some(number(value, &name)?),
        // Read by the agent script (`agent.rs`) from the conversation, not per question.
        "tool-syntax" | "tool-fault" | "tool-fault-sticky" => {}
        "chunk" => f.chunk = Some(number(value, &name)?),
        "prompt-reply" => {
            let v = value.unwrap_or_default();
            f.prompt_reply = Some(
                PromptReply::parse(v)
                    .ok_or_else(|| format!("prompt-reply={v}: expected late, early or none"))?,
            );
        }
        "" => {}
        _ => return Err(format!("unknown directive {item:?}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strips_and_collects() {
        let d = parse("[[sim:slow=500]] Reply with exactly: hi [[sim:crash,after=3]]");
        assert_eq!(d.text, "Reply with exactly: hi ");
        assert_eq!(d.faults.slow, Some(Duration::from_millis(500)));
        assert_eq!(d.faults.crash, Some(true));
        assert_eq!(d.faults.after, Some(3));
        assert!(d.unknown.is_empty());
    }

    #[test]
    fn middle_directive_keeps_single_space() {
        assert_eq!(parse("a [[sim:retry]] b").text, "a b");
    }

    #[test]
    fn values_and_unknowns() {
        let d = parse("[[sim:error=408]][[sim:think=callback]][[sim:bogus]][[sim:off_by_one]]x");
        assert_eq!(d.faults.error, Some(408));
        assert_eq!(d.faults.think, Some(ThinkStyle::Callback));
        assert_eq!(d.faults.off_by_one, Some(true));
        assert_eq!(d.unknown.len(), 1);
        assert_eq!(d.text, "x");
        assert_eq!(parse("[[sim:crash=off]]").faults.crash, Some(false));
        assert_eq!(parse("[[sim:crash=5]]").faults.after, Some(5));
        let huge = parse("[[sim:len=999999999999]]");
        assert_eq!(huge.faults.len, None);
        assert_eq!(huge.unknown.len(), 1);
    }

    #[test]
    fn unterminated_is_text() {
        assert_eq!(parse("[[sim:crash").text, "[[sim:crash");
    }

    #[test]
    fn list() {
        let f = parse_list("off-by-one, slow=20 batch").unwrap();
        assert_eq!(f.off_by_one, Some(true));
        assert_eq!(f.batch, Some(true));
        assert_eq!(f.slow, Some(Duration::from_millis(20)));
        assert!(parse_list("nope").is_err());
        assert!(parse_list("").unwrap().is_empty());
    }

    #[test]
    fn display_round_trips_through_the_list_parser() {
        let f = parse_list(
            "crash, after=3, slow=500, think=callback, off-by-one=off, error=408, step-end-first, \
             prompt-reply=none",
        )
        .unwrap();
        assert_eq!(parse_list(&f.to_string()).unwrap(), f);
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = parse(&s);
            let _ = parse(&format!("[[sim:{s}]]"));
        }
    }
}
