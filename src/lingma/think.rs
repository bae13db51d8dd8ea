//! Splitting a fenced `think::` block out of Lingma's answer stream (reasoning models put their
//! reasoning there, at the start of the `chat/answer` deltas).
//!
//! Reasoning models may start their answer with a block whose opening line is four backticks and
//! `think::<millis>` and whose closing line is four backticks. The block is reasoning, not answer,
//! and it arrives in arbitrary deltas, so this is a small streaming state machine that holds back
//! only the bytes that could still be part of a marker.

const OPEN: &str = "````think::";
const CLOSE: &str = "````";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Reasoning(String),
    Answer(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not yet known whether the answer opens with a think block.
    Probe,
    Think,
    /// Just after the closing fence: one newline belongs to the fence.
    AfterThink,
    Answer,
}

#[derive(Debug, Clone)]
pub struct ThinkSplitter {
    state: State,
    pending: String,
}

impl Default for ThinkSplitter {
    fn default() -> Self {
        Self {
            state: State::Probe,
            pending: String::new(),
        }
    }
}

impl ThinkSplitter {
    pub fn push(&mut self, delta: &str) -> Vec<Piece> {
        let mut out = Vec::new();
        if self.state == State::Answer {
            if !delta.is_empty() {
                out.push(Piece::Answer(delta.to_string()));
            }
            return out;
        }
        self.pending.push_str(delta);
        self.advance(&mut out);
        out
    }

    /// A splitter positioned after `text`, whose pieces the caller has already taken as a whole
    /// (after an `overwrite` that replaced the answer).
    pub fn after_text(text: &str) -> Self {
        let mut s = Self::default();
        let _ = s.push(text);
        s.pending.clear();
        s
    }

    /// The stream ended: whatever is held back is emitted as what it most likely is.
    pub fn finish(&mut self) -> Vec<Piece> {
        let rest = std::mem::take(&mut self.pending);
        let piece = match self.state {
            State::Think => Piece::Reasoning(rest),
            _ => Piece::Answer(rest),
        };
        self.state = State::Answer;
        match &piece {
            Piece::Reasoning(s) | Piece::Answer(s) if s.is_empty() => Vec::new(),
            _ => vec![piece],
        }
    }

    fn advance(&mut self, out: &mut Vec<Piece>) {
        loop {
            match self.state {
                State::Probe => {
                    let trimmed = self.pending.trim_start();
                    if trimmed.len() < OPEN.len() {
                        if OPEN.starts_with(trimmed) {
                            return;
                        }
                        self.switch_to_answer(out);
                        return;
                    }
                    if !trimmed.starts_with(OPEN) {
                        self.switch_to_answer(out);
                        return;
                    }
                    let Some(nl) = trimmed.find('\n') else {
                        return;
                    };
                    self.pending = trimmed[nl + 1..].to_string();
                    self.state = State::Think;
                }
                State::Think => {
                    if let Some(at) = find_close(&self.pending) {
                        let reasoning = self.pending[..at].trim_end_matches('\n').to_string();
                        if !reasoning.is_empty() {
                            out.push(Piece::Reasoning(reasoning));
                        }
                        self.pending = self.pending[at + CLOSE.len()..].to_string();
                        self.state = State::AfterThink;
                        continue;
                    }
                    let keep = held_tail(&self.pending);
                    let cut = self.pending.len() - keep;
                    if cut > 0 {
                        let emit: String = self.pending.drain(..cut).collect();
                        out.push(Piece::Reasoning(emit));
                    }
                    return;
                }
                State::AfterThink => {
                    if self.pending.is_empty() {
                        return;
                    }
                    if let Some(rest) = self.pending.strip_prefix('\n') {
                        self.pending = rest.to_string();
                    }
                    self.switch_to_answer(out);
                    return;
                }
                State::Answer => return,
            }
        }
    }

    fn switch_to_answer(&mut self, out: &mut Vec<Piece>) {
        self.state = State::Answer;
        let text = std::mem::take(&mut self.pending);
        if !text.is_empty() {
            out.push(Piece::Answer(text));
        }
    }
}

/// Position of a closing fence that starts a line.
fn find_close(s: &str) -> Option<usize> {
    if s.starts_with(CLOSE) {
        return Some(0);
    }
    s.find("\n````").map(|i| i + 1)
}

/// How many trailing bytes could be the start of `\n````` (all ASCII, so the cut is a char
/// boundary).
fn held_tail(s: &str) -> usize {
    let marker = "\n````";
    (1..=marker.len().min(s.len()))
        .rev()
        .find(|&k| s.ends_with(&marker[..k]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(chunks: &[&str]) -> (String, String) {
        let mut s = ThinkSplitter::default();
        let mut pieces: Vec<Piece> = chunks.iter().flat_map(|c| s.push(c)).collect();
        pieces.extend(s.finish());
        let mut r = String::new();
        let mut a = String::new();
        for p in pieces {
            match p {
                Piece::Reasoning(t) => r.push_str(&t),
                Piece::Answer(t) => a.push_str(&t),
            }
        }
        (r, a)
    }

    #[test]
    fn plain_answer_passes_through() {
        assert_eq!(run(&["pon", "", "g"]), (String::new(), "pong".into()));
        assert_eq!(run(&["`code`"]), (String::new(), "`code`".into()));
    }

    #[test]
    fn think_block_is_split() {
        let text = "````think::1200\nLet me think.\nOK.\n````\nThe answer.";
        assert_eq!(
            run(&[text]),
            ("Let me think.\nOK.".into(), "The answer.".into())
        );
    }

    #[test]
    fn empty_think_block() {
        assert_eq!(run(&["````think::0\n````\nA"]), (String::new(), "A".into()));
    }

    #[test]
    fn unterminated_think_is_reasoning() {
        assert_eq!(run(&["````think::5\nhmm"]), ("hmm".into(), String::new()));
    }

    proptest! {
        #[test]
        fn any_split_gives_same_result(cuts in prop::collection::vec(0usize..60, 0..8)) {
            let text = "````think::1200\n推理 step one\nstep ``two``\n````\nAnswer with ```code``` 完";
            let mut bounds: Vec<usize> = cuts.into_iter()
                .map(|c| c % text.len())
                .filter(|&c| text.is_char_boundary(c))
                .collect();
            bounds.sort();
            bounds.dedup();
            let mut chunks = Vec::new();
            let mut last = 0;
            for b in bounds {
                chunks.push(&text[last..b]);
                last = b;
            }
            chunks.push(&text[last..]);
            prop_assert_eq!(run(&chunks), ("推理 step one\nstep ``two``".to_string(), "Answer with ```code``` 完".to_string()));
        }
    }
}
