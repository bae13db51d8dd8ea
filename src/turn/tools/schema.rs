//! What the gateway reads in a tool's JSON Schema: the types it coerces arguments to (models
//! write `"5"` for 5, and the Qwen3-Coder syntax writes every value as bare text), and the compact
//! one-line-per-parameter form the tools are described in.

use serde_json::{Map, Value};

use super::decode::parse_lenient;

/// The `type` names a schema allows (`"type": "x"` or `"type": ["x", "null"]`; `anyOf`/`oneOf`
/// alternatives too).
fn types(schema: &Value) -> Vec<&str> {
    let mut out: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = schema.get(key) {
            for alt in alts {
                out.extend(types(alt));
            }
        }
    }
    out
}

/// Converts values written as strings into what the schema asks for, in place, recursively.
/// Returns whether anything changed. A string stays a string when the schema allows strings.
pub fn coerce(value: &mut Value, schema: &Value) -> bool {
    let allowed = types(schema);
    let mut changed = false;
    if let Value::String(s) = value
        && !allowed.is_empty()
        && !allowed.contains(&"string")
        && let Some(v) = from_text(s, &allowed)
    {
        *value = v;
        changed = true;
    }
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = schema.get("properties") {
                for (k, v) in map.iter_mut() {
                    if let Some(sub) = props.get(k) {
                        changed |= coerce(v, sub);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for v in items {
                    changed |= coerce(v, item_schema);
                }
            }
        }
        _ => {}
    }
    changed
}

fn from_text(s: &str, allowed: &[&str]) -> Option<Value> {
    let t = s.trim();
    for ty in allowed {
        let v = match *ty {
            "integer" => t.parse::<i64>().ok().map(Value::from),
            "number" => t.parse::<i64>().ok().map(Value::from).or_else(|| {
                t.parse::<f64>()
                    .ok()
                    .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            }),
            "boolean" => match t.to_ascii_lowercase().as_str() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            "null" if t == "null" || t.is_empty() => Some(Value::Null),
            "object" => parse_lenient(t)
                .ok()
                .map(|(v, _)| v)
                .filter(Value::is_object),
            "array" => parse_lenient(t)
                .ok()
                .map(|(v, _)| v)
                .filter(Value::is_array),
            _ => None,
        };
        if v.is_some() {
            return v;
        }
    }
    None
}

/// A schema's type in a few characters: `string`, `integer`, `array<string>`, `"a" | "b"`,
/// `object{k: string}` (nested up to `depth`).
pub fn type_label(schema: &Value, depth: usize) -> String {
    if let Some(Value::Array(vals)) = schema.get("enum") {
        return vals
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(" | ");
    }
    if let Some(c) = schema.get("const") {
        return c.to_string();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = schema.get(key) {
            return alts
                .iter()
                .map(|a| type_label(a, depth))
                .collect::<Vec<_>>()
                .join(" | ");
        }
    }
    let tys = types(schema);
    let main = tys.iter().copied().find(|t| *t != "null").unwrap_or("any");
    let label = match main {
        "array" => match schema.get("items") {
            Some(items) => format!("array<{}>", type_label(items, depth)),
            None => "array".into(),
        },
        "object" => match schema.get("properties").and_then(Value::as_object) {
            Some(props) if depth > 0 && !props.is_empty() => {
                let required = required_set(schema);
                let inner: Vec<String> = props
                    .iter()
                    .map(|(k, v)| {
                        let opt = if required.contains(&k.as_str()) {
                            ""
                        } else {
                            "?"
                        };
                        format!("{k}{opt}: {}", type_label(v, depth - 1))
                    })
                    .collect();
                format!("object{{{}}}", inner.join(", "))
            }
            _ => "object".into(),
        },
        other => other.to_string(),
    };
    if tys.contains(&"null") && main != "any" {
        format!("{label} | null")
    } else {
        label
    }
}

fn required_set(schema: &Value) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// One line per parameter: `name (type, required): description`, descriptions cut to
/// `description_limit` characters.
pub fn parameter_lines(schema: &Value, description_limit: usize) -> Vec<String> {
    let empty = Map::new();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let required = required_set(schema);
    props
        .iter()
        .map(|(name, sub)| {
            let mut line = format!("{name} ({}", type_label(sub, 2));
            if required.contains(&name.as_str()) {
                line.push_str(", required");
            }
            line.push(')');
            if let Some(d) = sub.get("description").and_then(Value::as_str) {
                let d = cut(d, description_limit);
                if !d.is_empty() {
                    line.push_str(": ");
                    line.push_str(&d);
                }
            }
            line
        })
        .collect()
}

/// `text` on one line (words joined by one space), at most `limit` characters (an ellipsis marks
/// a cut). Reads only up to the word that crosses the cut: an agent's tool descriptions run to
/// many kilobytes.
pub fn cut(text: &str, limit: usize) -> String {
    let mut out = String::new();
    let mut chars = 0usize;
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
            chars += 1;
        }
        out.push_str(word);
        chars += word.chars().count();
        if chars > limit {
            let keep = limit.saturating_sub(1);
            let end = out.char_indices().nth(keep).map_or(out.len(), |(i, _)| i);
            out.truncate(end);
            out.push('…');
            return out;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_become_what_the_schema_says() {
        let schema = json!({"type": "object", "properties": {
            "n": {"type": "integer"}, "x": {"type": "number"}, "b": {"type": "boolean"},
            "o": {"type": "object"}, "a": {"type": "array", "items": {"type": "integer"}},
            "s": {"type": "string"}, "either": {"type": ["integer", "string"]},
            "nested": {"type": "object", "properties": {"k": {"type": "boolean"}}}
        }});
        let mut v = json!({"n": "5", "x": "2.5", "b": "True", "o": "{\"k\": 1}", "a": ["1", 2],
                           "s": "7", "either": "7", "nested": {"k": "false"}});
        assert!(coerce(&mut v, &schema));
        assert_eq!(
            v,
            json!({"n": 5, "x": 2.5, "b": true, "o": {"k": 1}, "a": [1, 2], "s": "7",
                   "either": "7", "nested": {"k": false}})
        );
        // Nothing to do: unchanged, and said so.
        assert!(!coerce(&mut v, &schema));
        // A string that is no number stays (validation reports it).
        let mut v = json!({"n": "five"});
        assert!(!coerce(&mut v, &schema));
    }

    /// The plain form: the whole text on one line, then cut.
    fn cut_reference(text: &str, limit: usize) -> String {
        let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if one_line.chars().count() <= limit {
            return one_line;
        }
        let mut out: String = one_line.chars().take(limit.saturating_sub(1)).collect();
        out.push('…');
        out
    }

    proptest::proptest! {
        #[test]
        fn cut_is_the_plain_form(text in "[ab é😀\t\n\u{3000}]{0,30}|.{0,30}", limit in 0usize..25) {
            proptest::prop_assert_eq!(cut(&text, limit), cut_reference(&text, limit));
        }
    }

    #[test]
    fn cut_joins_words_and_marks_the_cut() {
        assert_eq!(cut("  one\n two   three ", 100), "one two three");
        assert_eq!(cut("one two three", 13), "one two three");
        assert_eq!(cut("one two three", 12), "one two thr…");
        assert_eq!(cut("one two three", 1), "…");
        assert_eq!(cut("one", 0), "…");
        assert_eq!(cut(" \n ", 0), "");
        assert_eq!(cut("é😀 é😀", 3), "é😀…");
    }

    #[test]
    fn compact_labels() {
        assert_eq!(type_label(&json!({"type": "string"}), 2), "string");
        assert_eq!(
            type_label(&json!({"type": "array", "items": {"type": "string"}}), 2),
            "array<string>"
        );
        assert_eq!(
            type_label(&json!({"enum": ["low", "high"]}), 2),
            "\"low\" | \"high\""
        );
        assert_eq!(
            type_label(&json!({"type": ["string", "null"]}), 2),
            "string | null"
        );
        assert_eq!(
            type_label(
                &json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}),
                2
            ),
            "object{a: integer}"
        );
        assert_eq!(type_label(&json!({}), 2), "any");
        let lines = parameter_lines(
            &json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "Where\n  the file goes"},
                "n": {"type": "integer"}
            }, "required": ["path"]}),
            10,
        );
        assert_eq!(
            lines,
            ["path (string, required): Where the…", "n (integer)"]
        );
    }
}
