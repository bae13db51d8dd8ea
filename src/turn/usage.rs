//! Token estimates for the `usage` object and for `max_tokens` enforcement.
//!
//! Lingma does not report token usage to clients (protocol §3.8: it is only logged server-side), so
//! every number here is an **estimate**, not a tokenizer count. The rule is deliberately simple and
//! cheap, and it is the same rule everywhere (usage, `max_tokens` cut-off in [`super::limits`]):
//!
//! * each CJK ideograph, kana, hangul syllable/jamo, bopomofo, CJK punctuation or full-width form
//!   counts as one token (BPE tokenizers give roughly one token per such character);
//! * all other text counts one token per 4 bytes of UTF-8, rounded up (the usual "4 characters per
//!   token" rule of thumb for English and code);
//! * text made only of whitespace (or nothing) counts zero.
//!
//! The count is a function of the text only and grows monotonically as text is appended, which is
//! what [`TokenCounter`] relies on to count incrementally over a stream.

use super::Message;
use super::reuse::canonical_json;

/// Tokens added per message for the role markers and separators of a chat prompt.
pub const PER_MESSAGE_OVERHEAD: u32 = 4;
/// Tokens added once per prompt for priming the assistant's reply.
pub const PER_PROMPT_OVERHEAD: u32 = 3;

/// Whether `c` is counted as one whole token (CJK and related scripts).
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF      // Hangul Jamo
        | 0x2E80..=0x2FDF    // CJK radicals, Kangxi radicals
        | 0x3000..=0x303F    // CJK symbols and punctuation
        | 0x3040..=0x30FF    // Hiragana, Katakana
        | 0x3100..=0x312F    // Bopomofo
        | 0x3130..=0x318F    // Hangul compatibility Jamo
        | 0x31A0..=0x31FF    // Bopomofo ext., CJK strokes, Katakana phonetic ext.
        | 0x3200..=0x4DBF    // Enclosed CJK, CJK compatibility, CJK ext. A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xA960..=0xA97F    // Hangul Jamo ext. A
        | 0xAC00..=0xD7FF    // Hangul syllables, Jamo ext. B
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0xFE30..=0xFE4F    // CJK compatibility forms
        | 0xFF00..=0xFFEF    // Half-width and full-width forms
        | 0x20000..=0x3FFFF  // CJK ext. B..H, compatibility supplement
    )
}

/// Incremental form of [`estimate_tokens`]: feeding text in any number of pieces gives the same
/// count as estimating the concatenation at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounter {
    cjk: u32,
    other_bytes: u64,
    saw_non_whitespace: bool,
}

impl TokenCounter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push_char(&mut self, c: char) {
        if c.is_whitespace() {
            self.other_bytes += c.len_utf8() as u64;
            return;
        }
        self.saw_non_whitespace = true;
        if is_cjk(c) {
            self.cjk = self.cjk.saturating_add(1);
        } else {
            self.other_bytes += c.len_utf8() as u64;
        }
    }

    pub fn push_str(&mut self, mut text: &str) {
        // The same as `push_char` for each char, with runs of ASCII (most of a prompt: English,
        // code, JSON) counted in one step: every ASCII char adds one byte, whitespace or not, and
        // only whether one of them is not whitespace (as `push_char` tells it) matters beyond that.
        loop {
            let ascii = text
                .bytes()
                .position(|b| !b.is_ascii())
                .unwrap_or(text.len());
            let (run, rest) = text.split_at(ascii);
            self.other_bytes += run.len() as u64;
            if !self.saw_non_whitespace {
                self.saw_non_whitespace = run.bytes().any(|b| !char::from(b).is_whitespace());
            }
            let mut chars = rest.chars();
            let Some(c) = chars.next() else { return };
            self.push_char(c);
            text = chars.as_str();
        }
    }

    /// The estimate for everything pushed so far.
    pub fn tokens(&self) -> u32 {
        if !self.saw_non_whitespace {
            return 0;
        }
        let other = u32::try_from(self.other_bytes.div_ceil(4)).unwrap_or(u32::MAX);
        self.cjk.saturating_add(other)
    }

    /// The estimate if `c` were pushed next (without pushing it).
    pub fn tokens_with(&self, c: char) -> u32 {
        let mut next = *self;
        next.push_char(c);
        next.tokens()
    }
}

/// Estimated token count of `text` (see the module docs for the rule).
pub fn estimate_tokens(text: &str) -> u32 {
    let mut counter = TokenCounter::new();
    counter.push_str(text);
    counter.tokens()
}

/// Estimated prompt tokens of a conversation: each message's content, tool calls (name and
/// arguments) and tool call id, plus [`PER_MESSAGE_OVERHEAD`] per message, plus
/// [`PER_PROMPT_OVERHEAD`] once. Tool descriptions are counted by the caller, from the text they
/// are rendered into.
pub fn estimate_prompt_tokens(messages: &[Message]) -> u32 {
    messages.iter().fold(PER_PROMPT_OVERHEAD, |total, m| {
        let id = m.tool_call_id.as_deref().map_or(0, estimate_tokens);
        let calls = m.tool_calls.iter().fold(0u32, |t, c| {
            t.saturating_add(estimate_tokens(&c.name))
                .saturating_add(estimate_tokens(&canonical_json(&c.input)))
                .saturating_add(PER_MESSAGE_OVERHEAD)
        });
        total
            .saturating_add(PER_MESSAGE_OVERHEAD)
            .saturating_add(estimate_tokens(&m.content))
            .saturating_add(id)
            .saturating_add(calls)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::Role;
    use proptest::prelude::*;

    #[test]
    fn empty_and_whitespace_are_zero() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("   \n\t "), 0);
        assert_eq!(
            estimate_tokens("\u{3000}"),
            0,
            "ideographic space is whitespace"
        );
        // Every Unicode whitespace char counts, the ASCII ones too (vertical tab included).
        assert_eq!(estimate_tokens("\u{0B}\u{0C}\r\n\t \u{85}\u{A0}"), 0);
    }

    #[test]
    fn latin_text_is_a_quarter_of_its_bytes_rounded_up() {
        assert_eq!(estimate_tokens("a"), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("hello world"), 3); // 11 bytes
        assert_eq!(estimate_tokens(&"x".repeat(400)), 100);
        // Non-CJK multi-byte characters count by bytes: "é" is 2 bytes, "😀" is 4.
        assert_eq!(estimate_tokens("éé"), 1);
        assert_eq!(estimate_tokens("😀😀"), 2);
    }

    #[test]
    fn cjk_counts_one_per_character() {
        assert_eq!(estimate_tokens("你好世界"), 4);
        assert_eq!(estimate_tokens("こんにちは"), 5);
        assert_eq!(estimate_tokens("カタカナ"), 4);
        assert_eq!(estimate_tokens("안녕하세요"), 5);
        assert_eq!(
            estimate_tokens("你好，世界。"),
            6,
            "full-width punctuation counts as CJK"
        );
    }

    #[test]
    fn mixed_chinese_and_english() {
        // 4 CJK + "Rust " (5 bytes) + "语言" (2 CJK) + " is fast" (8 bytes) = 6 + ceil(13/4)=4.
        assert_eq!(estimate_tokens("你好世界Rust 语言 is fast"), 10);
        // Whitespace between CJK characters counts as other bytes.
        assert_eq!(estimate_tokens("中 文"), 3);
    }

    #[test]
    fn prompt_tokens_add_overheads() {
        assert_eq!(estimate_prompt_tokens(&[]), PER_PROMPT_OVERHEAD);
        let msgs = [
            Message::new(Role::System, "be terse"), // 2
            Message::new(Role::User, "你好"),       // 2
        ];
        assert_eq!(
            estimate_prompt_tokens(&msgs),
            PER_PROMPT_OVERHEAD + 2 * PER_MESSAGE_OVERHEAD + 4
        );
        let tool = Message::tool_result("call_1", "ok");
        assert_eq!(
            estimate_prompt_tokens(&[tool]),
            PER_PROMPT_OVERHEAD + PER_MESSAGE_OVERHEAD + 1 + 2
        );
    }

    #[test]
    fn tokens_with_does_not_push() {
        let mut c = TokenCounter::new();
        c.push_str("abcd");
        assert_eq!(c.tokens_with('e'), 2);
        assert_eq!(c.tokens(), 1);
    }

    proptest! {
        #[test]
        fn incremental_equals_one_shot(parts in proptest::collection::vec(".{0,12}", 0..8)) {
            let mut c = TokenCounter::new();
            for p in &parts {
                c.push_str(p);
            }
            prop_assert_eq!(c.tokens(), estimate_tokens(&parts.concat()));
        }

        #[test]
        fn a_str_counts_as_its_chars_one_by_one(
            text in "[ \t\n\r\u{0B}\u{0C}\u{85}\u{A0}\u{3000}]{0,6}|[a-z \t\n\r\u{0B}\u{0C}\u{85}\u{A0}\u{3000}\u{4E00}\u{AC00}é😀]{0,40}|.{0,40}",
        ) {
            let mut by_char = TokenCounter::new();
            text.chars().for_each(|c| by_char.push_char(c));
            let mut by_str = TokenCounter::new();
            by_str.push_str(&text);
            prop_assert_eq!(by_str, by_char);
        }

        #[test]
        fn monotone_in_appended_text(a in ".{0,20}", b in ".{0,20}") {
            let joined = a.clone() + &b;
            prop_assert!(estimate_tokens(&joined) >= estimate_tokens(&a));
        }
    }
}
