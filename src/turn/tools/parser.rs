//! The streaming tool-call scanner: splits the model's answer, as it streams, into text and
//! call blocks.
//!
//! Text passes through as it comes; only a suffix that could still become the start of a call
//! marker is held back. Once a marker opens, the block is held until it closes and is then handed
//! over whole, with its raw text: whether it really is a call is decided by `decode.rs`, and a
//! block that is not one goes back out as text, unchanged. Concatenating every segment's text (a
//! call's `raw`) gives back exactly the input: nothing is lost or doubled, however the input was
//! cut into deltas.
//!
//! Markers (models drift between them, so all are recognised whatever syntax was asked for):
//! * `<tool_call>` … `</tool_call>`: Hermes-style JSON inside, or Qwen3-Coder's `<function=…>`;
//! * `<function=NAME>` … `</function>`: Qwen3-Coder's form without the outer tag;
//! * a fenced block opened by three backticks and `json` or `tool_call`, closed by three
//!   backticks on a line of their own.

/// How a block was marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Marker {
    /// `<tool_call>` … `</tool_call>`.
    ToolCallTag,
    /// `<function=` … `</function>`.
    FunctionTag,
    /// A fenced ```` ```json ```` (or ```` ```tool_call ````) block.
    Fence,
}

/// A closed block: `body` is what stands between the markers, `raw` the whole block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub marker: Marker,
    pub body: String,
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    Block(Block),
}

const OPENERS: [(&str, Marker); 4] = [
    ("<tool_call>", Marker::ToolCallTag),
    ("<function=", Marker::FunctionTag),
    ("```json", Marker::Fence),
    ("```tool_call", Marker::Fence),
];

fn closer(marker: Marker) -> &'static str {
    match marker {
        Marker::ToolCallTag => "</tool_call>",
        Marker::FunctionTag => "</function>",
        Marker::Fence => "\n```",
    }
}

/// The scanner's state across deltas.
#[derive(Debug, Default)]
pub struct Scanner {
    /// Input not handed out yet: a held-back suffix, or an open block.
    buf: String,
    /// The open block's marker and the length of its opener in `buf`.
    open: Option<(Marker, usize)>,
}

impl Scanner {
    /// Feeds one delta; returns what can be handed out now.
    pub fn push(&mut self, delta: &str) -> Vec<Segment> {
        self.buf.push_str(delta);
        let mut out = Vec::new();
        loop {
            match self.open {
                None => match earliest_opener(&self.buf) {
                    Some((pos, marker, len)) => {
                        if pos > 0 {
                            out.push(Segment::Text(self.buf[..pos].to_string()));
                            self.buf.drain(..pos);
                        }
                        self.open = Some((marker, len));
                    }
                    None => {
                        let keep = held_suffix(&self.buf);
                        let cut = self.buf.len() - keep;
                        if cut > 0 {
                            out.push(Segment::Text(self.buf[..cut].to_string()));
                            self.buf.drain(..cut);
                        }
                        return out;
                    }
                },
                Some((marker, opener_len)) => {
                    let close = closer(marker);
                    let Some(at) = self.buf[opener_len..].find(close) else {
                        return out;
                    };
                    let body_end = opener_len + at;
                    let end = body_end + close.len();
                    let raw: String = self.buf.drain(..end).collect();
                    out.push(Segment::Block(Block {
                        marker,
                        body: body_of(marker, &raw[..body_end], opener_len),
                        raw,
                    }));
                    self.open = None;
                }
            }
        }
    }

    /// The answer is over: what is still held. An unclosed block is handed out as a block too
    /// (models sometimes end the answer without the closing tag); whether it is a call is decided
    /// by its decoding, like any other.
    pub fn finish(&mut self) -> Vec<Segment> {
        let raw = std::mem::take(&mut self.buf);
        match self.open.take() {
            _ if raw.is_empty() => Vec::new(),
            Some((marker, opener_len)) => vec![Segment::Block(Block {
                marker,
                body: body_of(marker, &raw, opener_len),
                raw,
            })],
            None => vec![Segment::Text(raw)],
        }
    }

    /// Whether a block is open (its text is being held).
    pub fn in_block(&self) -> bool {
        self.open.is_some()
    }
}

/// What stands between the markers. A function tag keeps its `<function=` prefix (it carries the
/// name); a fence drops the rest of its opening line (` action`, a newline).
fn body_of(marker: Marker, upto_closer: &str, opener_len: usize) -> String {
    match marker {
        Marker::FunctionTag => upto_closer.to_string(),
        Marker::ToolCallTag => upto_closer[opener_len..].to_string(),
        Marker::Fence => {
            let rest = &upto_closer[opener_len..];
            match rest.find('\n') {
                Some(nl) => rest[nl + 1..].to_string(),
                None => String::new(),
            }
        }
    }
}

/// The first complete opener in `s`: its byte position, marker and length.
fn earliest_opener(s: &str) -> Option<(usize, Marker, usize)> {
    OPENERS
        .iter()
        .filter_map(|(text, marker)| s.find(text).map(|pos| (pos, *marker, text.len())))
        .min_by_key(|(pos, _, len)| (*pos, usize::MAX - len))
}

/// The length of the longest suffix of `s` that is a proper prefix of an opener: text that must
/// wait for the next delta to be told apart.
fn held_suffix(s: &str) -> usize {
    let mut best = 0;
    for (opener, _) in OPENERS {
        let max = (opener.len() - 1).min(s.len());
        for n in (best + 1..=max).rev() {
            if s.is_char_boundary(s.len() - n) && opener.starts_with(&s[s.len() - n..]) {
                best = n;
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan_all(deltas: &[&str]) -> Vec<Segment> {
        let mut s = Scanner::default();
        let mut out: Vec<Segment> = deltas.iter().flat_map(|d| s.push(d)).collect();
        out.extend(s.finish());
        merge_text(out)
    }

    fn merge_text(segs: Vec<Segment>) -> Vec<Segment> {
        let mut out: Vec<Segment> = Vec::new();
        for s in segs {
            match (out.last_mut(), s) {
                (Some(Segment::Text(a)), Segment::Text(b)) => a.push_str(&b),
                (_, s) => out.push(s),
            }
        }
        out
    }

    fn joined(segs: &[Segment]) -> String {
        segs.iter()
            .map(|s| match s {
                Segment::Text(t) => t.as_str(),
                Segment::Block(b) => b.raw.as_str(),
            })
            .collect()
    }

    #[test]
    fn text_streams_at_once_and_only_a_possible_marker_start_waits() {
        let mut s = Scanner::default();
        assert_eq!(s.push("Hello wor"), vec![Segment::Text("Hello wor".into())]);
        assert_eq!(s.push("ld <tool"), vec![Segment::Text("ld ".into())]);
        // `<tool` turns out to be text.
        assert_eq!(s.push("box>"), vec![Segment::Text("<toolbox>".into())]);
        assert_eq!(s.push("``"), vec![]);
        assert_eq!(s.push("`rust\n"), vec![Segment::Text("```rust\n".into())]);
        assert!(s.finish().is_empty());
    }

    #[test]
    fn a_hermes_block_is_cut_out_with_the_text_around_it() {
        let segs = scan_all(&[
            "Let me look.\n<tool_",
            "call>\n{\"name\": \"read\", \"arguments\": {\"path\": \"a\"}}\n</tool",
            "_call>\nDone.",
        ]);
        assert_eq!(
            segs,
            vec![
                Segment::Text("Let me look.\n".into()),
                Segment::Block(Block {
                    marker: Marker::ToolCallTag,
                    body: "\n{\"name\": \"read\", \"arguments\": {\"path\": \"a\"}}\n".into(),
                    raw: "<tool_call>\n{\"name\": \"read\", \"arguments\": {\"path\": \"a\"}}\n</tool_call>".into(),
                }),
                Segment::Text("\nDone.".into()),
            ]
        );
    }

    #[test]
    fn function_tags_and_fences_are_blocks() {
        let segs = scan_all(&["<function=ls>\n<parameter=dir>\n/tmp\n</parameter>\n</function>"]);
        let Segment::Block(b) = &segs[0] else {
            panic!("{segs:?}")
        };
        assert_eq!(b.marker, Marker::FunctionTag);
        assert!(b.body.starts_with("<function=ls>"));
        let segs = scan_all(&["x ```json action\n{\"tool\":\"ls\"}\n```\ny"]);
        assert_eq!(segs.len(), 3);
        let Segment::Block(b) = &segs[1] else {
            panic!("{segs:?}")
        };
        assert_eq!(b.marker, Marker::Fence);
        assert_eq!(b.body, "{\"tool\":\"ls\"}");
    }

    #[test]
    fn an_unclosed_block_is_handed_out_at_the_end() {
        let segs = scan_all(&["a <tool_call>{\"name\":\"x\",\"arguments\":{}}"]);
        assert_eq!(segs.len(), 2);
        assert!(
            matches!(&segs[1], Segment::Block(b) if b.body == "{\"name\":\"x\",\"arguments\":{}}")
        );
    }

    #[test]
    fn two_blocks_in_a_row() {
        let segs = scan_all(&["<tool_call>{}</tool_call><tool_call>{}</tool_call>"]);
        assert_eq!(segs.len(), 2);
        assert!(segs.iter().all(|s| matches!(s, Segment::Block(_))));
    }

    #[test]
    fn multibyte_text_is_never_split_inside_a_character() {
        let segs = scan_all(&["héllo <", "tool_cäll> ✓"]);
        assert_eq!(joined(&segs), "héllo <tool_cäll> ✓");
    }

    proptest! {
        /// Nothing lost or doubled, however the answer is cut into deltas.
        #[test]
        fn every_cut_gives_back_the_input(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("<tool_call>".to_string()),
                    Just("</tool_call>".to_string()),
                    Just("<function=f>".to_string()),
                    Just("</function>".to_string()),
                    Just("```json\n".to_string()),
                    Just("\n```".to_string()),
                    Just("<".to_string()),
                    Just("`".to_string()),
                    "[a-z {}\":é\n]{0,12}",
                ],
                0..24,
            ),
            cuts in proptest::collection::vec(0usize..200, 0..12),
        ) {
            let input: String = parts.concat();
            let mut points: Vec<usize> = cuts
                .into_iter()
                .map(|c| c % (input.len() + 1))
                .filter(|&c| input.is_char_boundary(c))
                .collect();
            points.sort_unstable();
            points.dedup();
            let mut deltas = Vec::new();
            let mut last = 0;
            for p in points {
                deltas.push(&input[last..p]);
                last = p;
            }
            deltas.push(&input[last..]);
            let whole = scan_all(&[input.as_str()]);
            let cut = scan_all(&deltas);
            prop_assert_eq!(joined(&cut), input.clone());
            prop_assert_eq!(whole, cut);
        }
    }
}
