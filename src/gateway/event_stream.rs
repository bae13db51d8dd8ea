//! The `text/event-stream` response every front door streams with: headers that keep proxies from
//! buffering, and a body that asks its source for the next chunk of bytes until it says it is done.

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
