//! The gateway's enforcement of `stop` sequences and `max_tokens` on a streamed answer.
//!
//! Lingma knows neither parameter, so the gateway cuts the answer itself. [`OutputLimiter`] takes
//! the answer's deltas as they arrive and returns what may be sent now. Semantics, defined on the
//! whole answer text `T` so that they do not depend on how `T` was split into deltas:
//!
//! 1. **Stop**: the first stop sequence to be *completed* in `T` wins (as a model that checks after
//!    each token would stop there); if several complete at the same character, the one that starts
//!    earliest. The output is `T` up to the start of that occurrence: the stop sequence and
//!    everything after it are never sent. So the output never contains a stop sequence.
//! 2. **Length**: the output is further cut to the longest prefix whose estimated token count
//!    ([`super::usage`], an estimate) is at most `max_tokens`. If that cut removes anything, the
//!    finish reason is `length` (even when a stop sequence followed: the budget ran out first).
//! 3. Otherwise, a stop sequence gives `stop`; no stop sequence and no cut is a natural end.
//!
//! Streaming: text that could still be the beginning of a stop sequence is held back, and only the
//! shortest such tail (the longest suffix that is a proper prefix of some stop sequence, at most
//! the longest stop's length minus one byte), so output is delayed only while a stop sequence is
//! actually partially matched. [`OutputLimiter::finish`] releases the tail at the natural end.
//! Empty stop strings are ignored.

use super::usage::TokenCounter;

/// Which limit ended an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A stop sequence came ([`OutputLimiter::matched_stop`] says which).
    Stop,
    /// `max_tokens` was reached.
    Length,
}

/// What to send after one delta.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Text to send now (may be empty).
    pub emit: String,
    /// Set once, on the step where a limit ends the answer: stop the upstream turn and send a
    /// finish chunk with this reason. Later pushes return an empty step with `None`.
    pub finished: Option<Limit>,
}

#[derive(Debug, Clone)]
pub struct OutputLimiter {
    stops: Vec<String>,
    max_tokens: Option<u32>,
    counter: TokenCounter,
    held: String,
    finished: Option<Limit>,
    /// The stop sequence that ended the answer.
    matched: Option<String>,
    done: bool,
}

impl OutputLimiter {
    pub fn new(stop: Vec<String>, max_tokens: Option<u32>) -> Self {
        Self {
            stops: stop.into_iter().filter(|s| !s.is_empty()).collect(),
            max_tokens,
            counter: TokenCounter::new(),
            held: String::new(),
            finished: None,
            matched: None,
            done: false,
        }
    }

    /// Feeds one delta of the answer.
    pub fn push(&mut self, delta: &str) -> Step {
        if self.done {
            return Step::default();
        }
        if self.stops.is_empty() && self.max_tokens.is_none() {
            self.counter.push_str(delta);
            return Step {
                emit: delta.to_owned(),
                finished: None,
            };
        }
        let mut buf = std::mem::take(&mut self.held);
        buf.push_str(delta);
        if let Some((start, stop)) = self.first_completed_stop(&buf) {
            let (emit, cut) = self.admit(&buf[..start]);
            let reason = if cut {
                Limit::Length
            } else {
                self.matched = Some(stop);
                Limit::Stop
            };
            return self.end(emit, reason);
        }
        let confirmed = buf.len() - self.partial_stop_len(&buf);
        let (emit, cut) = self.admit(&buf[..confirmed]);
        if cut {
            return self.end(emit, Limit::Length);
        }
        self.held = buf.split_off(confirmed);
        Step {
            emit,
            finished: None,
        }
    }

    /// The answer ended upstream: returns the held-back tail that may still be sent (possibly cut
    /// by `max_tokens`, in which case [`OutputLimiter::finished`] becomes `Some(Length)`). Returns
    /// an empty string once the limiter has finished.
    pub fn finish(&mut self) -> String {
        if self.done {
            return String::new();
        }
        self.done = true;
        let held = std::mem::take(&mut self.held);
        let (emit, cut) = self.admit(&held);
        if cut {
            self.finished = Some(Limit::Length);
        }
        emit
    }

    /// The limit that ended the answer, if one did. `None` after [`OutputLimiter::finish`] means
    /// a natural end (report `stop`).
    pub fn finished(&self) -> Option<Limit> {
        self.finished
    }

    /// Whether nothing more will be emitted (a limit was hit or `finish` was called).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Estimated tokens emitted so far (the `completion_tokens` of the usage).
    pub fn tokens(&self) -> u32 {
        self.counter.tokens()
    }

    /// Text currently held back as a possible stop-sequence start.
    pub fn held_back(&self) -> &str {
        &self.held
    }

    fn end(&mut self, emit: String, reason: Limit) -> Step {
        self.done = true;
        self.finished = Some(reason);
        self.held.clear();
        Step {
            emit,
            finished: Some(reason),
        }
    }

    /// Start of the stop occurrence in `buf` that completes first (ties: earliest start), and
    /// which stop it is.
    fn first_completed_stop(&self, buf: &str) -> Option<(usize, String)> {
        self.stops
            .iter()
            .filter_map(|s| {
                buf.find(s.as_str())
                    .map(|start| (start + s.len(), start, s))
            })
            .min()
            .map(|(_, start, s)| (start, s.clone()))
    }

    /// The stop sequence that ended the answer, once one did.
    pub fn matched_stop(&self) -> Option<&str> {
        self.matched.as_deref()
    }

    /// Length of the longest suffix of `buf` that is a proper prefix of some stop sequence.
    fn partial_stop_len(&self, buf: &str) -> usize {
        self.stops
            .iter()
            .map(|stop| {
                (1..stop.len().min(buf.len() + 1))
                    .rev()
                    .find(|&k| stop.is_char_boundary(k) && buf.ends_with(&stop[..k]))
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
    }

    /// Counts `text` against the budget; returns the part that fits and whether it was cut.
    fn admit(&mut self, text: &str) -> (String, bool) {
        let Some(max) = self.max_tokens else {
            self.counter.push_str(text);
            return (text.to_owned(), false);
        };
        for (i, c) in text.char_indices() {
            if self.counter.tokens_with(c) > max {
                return (text[..i].to_owned(), true);
            }
            self.counter.push_char(c);
        }
        (text.to_owned(), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::usage::estimate_tokens;
    use proptest::prelude::*;

    fn stops(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    /// Runs the limiter over `deltas`: (all emitted text, finish reason).
    fn run(l: &mut OutputLimiter, deltas: &[&str]) -> (String, Option<Limit>) {
        let mut out = String::new();
        let mut reason = None;
        for d in deltas {
            let step = l.push(d);
            out.push_str(&step.emit);
            if step.finished.is_some() {
                assert!(reason.is_none(), "finished reported twice");
                reason = step.finished;
            }
        }
        out.push_str(&l.finish());
        (out, reason.or(l.finished()))
    }

    #[test]
    fn no_limits_pass_through() {
        let mut l = OutputLimiter::new(vec![], None);
        let s = l.push("hello ");
        assert_eq!(s.emit, "hello ");
        assert_eq!(s.finished, None);
        assert_eq!(l.push("world").emit, "world");
        assert_eq!(l.finish(), "");
        assert_eq!(l.finished(), None);
        assert_eq!(l.tokens(), 3);
    }

    #[test]
    fn stop_within_one_delta() {
        let mut l = OutputLimiter::new(stops(&["END"]), None);
        let s = l.push("abc END xyz");
        assert_eq!(s.emit, "abc ");
        assert_eq!(s.finished, Some(Limit::Stop));
        // After finishing, pushes return nothing.
        assert_eq!(l.push("more"), Step::default());
        assert_eq!(l.finish(), "");
        assert!(l.is_done());
    }

    #[test]
    fn stop_split_across_deltas_is_held_back_then_dropped() {
        let mut l = OutputLimiter::new(stops(&["</answer>"]), None);
        let s = l.push("42</ans");
        assert_eq!(s.emit, "42");
        assert_eq!(l.held_back(), "</ans");
        let s = l.push("wer> trailing");
        assert_eq!(s.emit, "");
        assert_eq!(s.finished, Some(Limit::Stop));
    }

    #[test]
    fn false_alarm_is_released() {
        let mut l = OutputLimiter::new(stops(&["STOP"]), None);
        assert_eq!(l.push("ST").emit, "");
        assert_eq!(l.push("A").emit, "STA");
        assert_eq!(l.push("S").emit, "");
        assert_eq!(l.finish(), "S", "tail released at the natural end");
        assert_eq!(l.finished(), None);
    }

    #[test]
    fn holds_back_only_the_partial_match() {
        let mut l = OutputLimiter::new(stops(&["\n\n", "###"]), None);
        assert_eq!(l.push("line\n").emit, "line");
        assert_eq!(l.held_back(), "\n");
        assert_eq!(l.push("x##").emit, "\nx");
        assert_eq!(l.held_back(), "##");
    }

    #[test]
    fn first_completed_stop_wins() {
        // "c" completes before "abcde" could.
        let (out, r) = run(
            &mut OutputLimiter::new(stops(&["abcde", "c"]), None),
            &["abc", "de"],
        );
        assert_eq!((out.as_str(), r), ("ab", Some(Limit::Stop)));
        let (out, r) = run(
            &mut OutputLimiter::new(stops(&["abcde", "c"]), None),
            &["abcde"],
        );
        assert_eq!((out.as_str(), r), ("ab", Some(Limit::Stop)));
        // Same end: the earlier start wins.
        let (out, r) = run(&mut OutputLimiter::new(stops(&["c", "bc"]), None), &["abc"]);
        assert_eq!((out.as_str(), r), ("a", Some(Limit::Stop)));
    }

    #[test]
    fn multibyte_stop_sequences() {
        let (out, r) = run(
            &mut OutputLimiter::new(stops(&["。结束"]), None),
            &["你好。", "结", "束了"],
        );
        assert_eq!((out.as_str(), r), ("你好", Some(Limit::Stop)));
    }

    #[test]
    fn max_tokens_cuts_at_a_char_boundary() {
        let mut l = OutputLimiter::new(vec![], Some(2));
        let s = l.push("abcd");
        assert_eq!((s.emit.as_str(), s.finished), ("abcd", None));
        let s = l.push("efgh");
        assert_eq!((s.emit.as_str(), s.finished), ("efgh", None));
        let s = l.push("i");
        assert_eq!((s.emit.as_str(), s.finished), ("", Some(Limit::Length)));
        assert_eq!(l.tokens(), 2);

        let (out, r) = run(&mut OutputLimiter::new(vec![], Some(3)), &["你好世界"]);
        assert_eq!((out.as_str(), r), ("你好世", Some(Limit::Length)));
        // Exactly at the budget with a natural end: no cut.
        let (out, r) = run(&mut OutputLimiter::new(vec![], Some(4)), &["你好", "世界"]);
        assert_eq!((out.as_str(), r), ("你好世界", None));
    }

    #[test]
    fn length_before_stop_reports_length() {
        let (out, r) = run(
            &mut OutputLimiter::new(stops(&["END"]), Some(1)),
            &["abcdefEND"],
        );
        assert_eq!((out.as_str(), r), ("abcd", Some(Limit::Length)));
        // Stop within budget: stop.
        let (out, r) = run(
            &mut OutputLimiter::new(stops(&["X"]), Some(1)),
            &["abcd", "X"],
        );
        assert_eq!((out.as_str(), r), ("abcd", Some(Limit::Stop)));
    }

    #[test]
    fn held_tail_cut_by_budget_at_finish() {
        let mut l = OutputLimiter::new(stops(&["ef!"]), Some(1));
        assert_eq!(l.push("abcde").emit, "abcd");
        assert_eq!(l.held_back(), "e");
        assert_eq!(l.finish(), "");
        assert_eq!(l.finished(), Some(Limit::Length));
    }

    #[test]
    fn empty_stop_strings_are_ignored() {
        let (out, r) = run(&mut OutputLimiter::new(stops(&[""]), None), &["abc"]);
        assert_eq!((out.as_str(), r), ("abc", None));
    }

    /// Reference semantics computed on the whole text (see the module docs).
    fn reference(text: &str, stops: &[String], max: Option<u32>) -> (String, Option<Limit>) {
        let stop_at = stops
            .iter()
            .filter(|s| !s.is_empty())
            .flat_map(|s| {
                text.match_indices(s.as_str())
                    .map(|(i, m)| (i + m.len(), i))
            })
            .min();
        let candidate = stop_at.map_or(text, |(_, start)| &text[..start]);
        let mut end = candidate.len();
        if let Some(max) = max {
            for (i, _) in candidate.char_indices().chain([(candidate.len(), ' ')]) {
                if estimate_tokens(&candidate[..i]) > max {
                    break;
                }
                end = i;
            }
        }
        let out = candidate[..end].to_owned();
        let reason = if end < candidate.len() {
            Some(Limit::Length)
        } else if stop_at.is_some() {
            Some(Limit::Stop)
        } else {
            None
        };
        (out, reason)
    }

    fn piece() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('a'),
                Just('b'),
                Just(' '),
                Just('中'),
                Just('é'),
                Just('😀')
            ],
            0..6,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    fn stop_seq() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![Just('a'), Just('b'), Just(' '), Just('中'), Just('😀')],
            0..4,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_split_matches_one_shot_and_reference(
            deltas in proptest::collection::vec(piece(), 0..10),
            stop in proptest::collection::vec(stop_seq(), 0..4),
            max in proptest::option::of(0u32..12),
        ) {
            let text = deltas.concat();
            let split: Vec<&str> = deltas.iter().map(String::as_str).collect();
            let streamed = run(&mut OutputLimiter::new(stop.clone(), max), &split);
            let one_shot = run(&mut OutputLimiter::new(stop.clone(), max), &[text.as_str()]);
            prop_assert_eq!(&streamed, &one_shot);
            prop_assert_eq!(&streamed, &reference(&text, &stop, max));
            let (out, _) = streamed;
            prop_assert!(text.starts_with(&out));
            for s in stop.iter().filter(|s| !s.is_empty()) {
                prop_assert!(!out.contains(s.as_str()), "output {:?} contains stop {:?}", out, s);
            }
            if let Some(max) = max {
                prop_assert!(estimate_tokens(&out) <= max);
            }
        }

        /// A two-letter alphabet makes overlapping and nested stop sequences common.
        #[test]
        fn any_split_matches_reference_with_overlapping_stops(
            deltas in proptest::collection::vec("[ab]{0,4}", 0..8),
            stop in proptest::collection::vec("[ab]{1,4}", 1..4),
            max in proptest::option::of(0u32..6),
        ) {
            let text = deltas.concat();
            let split: Vec<&str> = deltas.iter().map(String::as_str).collect();
            let streamed = run(&mut OutputLimiter::new(stop.clone(), max), &split);
            prop_assert_eq!(&streamed, &reference(&text, &stop, max));
            let one_shot = run(&mut OutputLimiter::new(stop.clone(), max), &[text.as_str()]);
            prop_assert_eq!(&streamed, &one_shot);
        }

        #[test]
        fn held_back_never_exceeds_longest_stop(
            deltas in proptest::collection::vec(piece(), 0..10),
            stop in proptest::collection::vec(stop_seq(), 1..4),
        ) {
            let longest = stop.iter().map(String::len).max().unwrap_or(0);
            let mut l = OutputLimiter::new(stop, None);
            for d in &deltas {
                l.push(d);
                prop_assert!(l.held_back().len() < longest.max(1));
            }
        }
    }
}
