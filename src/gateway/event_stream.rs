//! The `text/event-stream` response every front door streams with: headers that keep proxies from
//! buffering, and a body that asks its source for the next chunk of bytes until it says it is done;
//! and [`TextTemplate`], for the events of an answer that differ only in their text.

use std::convert::Infallible;
use std::future::Future;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// What a streamed answer is written from: each call returns the bytes ready to send (one or more
/// whole events), or `None` when the stream is over.
pub trait EventSource: Send + 'static {
    fn next_bytes(&mut self) -> impl Future<Output = Option<Bytes>> + Send;
}

/// A `200 text/event-stream` response whose body is produced by polling `source`.
pub fn response<S: EventSource>(source: S) -> Response {
    let body = futures_util::stream::unfold(source, |mut s| async move {
        let bytes = s.next_bytes().await?;
        Some((Ok::<Bytes, Infallible>(bytes), s))
    });
    let mut resp = (StatusCode::OK, Body::from_stream(body)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// An event rendered once with a placeholder for its one varying string, then filled in per event.
/// A streamed answer's deltas differ only in their text, so serialising the whole event for each
/// one is wasted work; filling in gives the same bytes.
#[derive(Debug, Clone)]
pub struct TextTemplate {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl TextTemplate {
    /// The placeholder `render` is given; serde_json writes it as `"\u0000"`.
    const MARK: &'static str = "\u{0}";
    const MARK_JSON: &'static [u8] = b"\"\\u0000\"";

    /// `render(text)` is the whole event for `text`. `None` when the placeholder does not appear
    /// in it exactly once (another string of the event held the same character): then render
    /// each event whole.
    pub fn new(render: impl FnOnce(&str) -> Vec<u8>) -> Option<Self> {
        let event = render(Self::MARK);
        let find = |from: usize| {
            event[from..]
                .windows(Self::MARK_JSON.len())
                .position(|w| w == Self::MARK_JSON)
                .map(|i| from + i)
        };
        let at = find(0)?;
        let end = at + Self::MARK_JSON.len();
        if find(end).is_some() {
            return None;
        }
        Some(Self {
            head: event[..at].to_vec(),
            tail: event[end..].to_vec(),
        })
    }

    /// The event for `text`.
    pub fn fill(&self, text: &str) -> Bytes {
        let mut out = Vec::with_capacity(self.head.len() + text.len() + 8 + self.tail.len());
        out.extend_from_slice(&self.head);
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, text);
        out.extend_from_slice(&self.tail);
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: &str, text: &str) -> Vec<u8> {
        let mut out = b"data: ".to_vec();
        let v = json!({"id": id, "delta": {"content": text}, "n": null});
        serde_json::to_writer(&mut out, &v).unwrap();
        out.extend_from_slice(b"\n\n");
        out
    }

    #[test]
    fn a_filled_template_is_the_event_rendered_whole() {
        let t = TextTemplate::new(|text| event("chatcmpl-1", text)).unwrap();
        for text in [
            "",
            "Hel",
            "quote \" back \\ nl \n tab \t",
            "é 中 🦀",
            "\u{0}\u{1f}",
            "</script>",
        ] {
            assert_eq!(
                &t.fill(text)[..],
                &event("chatcmpl-1", text)[..],
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_placeholder_seen_twice_gives_no_template() {
        // Another string that is the placeholder, or ends in an escaped quote and the placeholder
        // (its `\"` then looks like the token's opening quote).
        assert!(TextTemplate::new(|text| event("\u{0}", text)).is_none());
        assert!(TextTemplate::new(|text| event("x\"\u{0}", text)).is_none());
        // Inside another string the placeholder's character is harmless.
        let t = TextTemplate::new(|text| event("a\u{0}b", text)).unwrap();
        assert_eq!(&t.fill("hi")[..], &event("a\u{0}b", "hi")[..]);
        assert!(TextTemplate::new(|_| b"data: {}\n\n".to_vec()).is_none());
    }
}
