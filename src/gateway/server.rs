//! The HTTP server loop: accepts connections and serves the router on each, with the connection
//! limits that a public endpoint needs and `axum::serve` does not offer.
//!
//! * **Headers** must arrive within `header_timeout` of their first byte (slowloris).
//! * **Idle keep-alive** connections (no request in progress) close after `idle_timeout`; a new
//!   connection that sends nothing is idle from the start.
//! * **Stalled writes**: a response that cannot be written for `write_stall_timeout` (the client
//!   stopped reading) ends the connection. Dropping the connection drops the response body, which
//!   stops the answer upstream and frees its slot (see `chat.rs`).
//!
//! Request *bodies* have their own deadline, enforced where they are read (`extract.rs`), because
//! only the handler knows that it is reading one.
//!
//! The read-side deadlines live in [`GuardedIo`], which wraps the socket: it knows when bytes
//! arrive, and the per-connection [`ConnState`] (fed by the service wrapper) tells it whether a
//! request is in progress. Shutdown is graceful: the accept loop stops, every connection is told to
//! finish its current request and close, and [`serve`] returns when all of them are gone.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use futures_util::task::AtomicWaker;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Per-connection time limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// From the first byte of a request's headers to their end.
    pub header_timeout: Duration,
    /// A connection with no request in progress and no bytes arriving.
    pub idle_timeout: Duration,
    /// A response write that makes no progress (the client stopped reading).
    pub write_stall_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets every connection finish its
/// current request and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The header deadline is ours (it starts at the first byte, not when the connection
        // becomes idle); hyper's own would cut idle keep-alive connections at the same limit.
        .header_read_timeout(None);
    builder.http2().timer(TokioTimer::new());
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: keep serving the
                    // others; pausing briefly keeps an EMFILE from spinning the loop.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Deltas must leave as soon as they are written (design: no batching).
        let _ = tcp.set_nodelay(true);
        let conn = Arc::new(ConnState::new());
        let io = TokioIo::new(GuardedIo::new(tcp, conn.clone(), limits));
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let active = ActiveRequest::new(conn.clone());
            let app = app.clone();
            async move {
                let resp = app.oneshot(req.map(Body::new)).await?;
                Ok::<Response, Infallible>(resp.map(|body| {
                    Body::new(TrackedBody {
                        body,
                        _active: active,
                    })
                }))
            }
        });
        let served = builder.serve_connection(io, service).into_owned();
        let watched = graceful.watch(served);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// What the socket wrapper needs to know about its connection.
#[derive(Debug)]
struct ConnState {
    born: Instant,
    /// Requests whose response has not been written completely yet.
    active: AtomicUsize,
    /// When the connection last became idle, in milliseconds since `born`.
    idle_since_ms: AtomicU64,
    /// The task of a read that started while a request was active, and so has no deadline: woken
    /// when the connection becomes idle, so the read starts its idle deadline. (hyper may poll
    /// the socket for the next request before it drops the last response body, and does not
    /// poll it again by itself.)
    reader: AtomicWaker,
}

impl ConnState {
    fn new() -> Self {
        Self {
            born: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            reader: AtomicWaker::new(),
        }
    }

    fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    fn idle_since(&self) -> Instant {
        self.born + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire))
    }
}

/// Counts one request as in progress from its head until its response body is gone.
struct ActiveRequest(Arc<ConnState>);

impl ActiveRequest {
    fn new(conn: Arc<ConnState>) -> Self {
        conn.active.fetch_add(1, Ordering::AcqRel);
        Self(conn)
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        let c = &self.0;
        let ms = u64::try_from(c.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        c.idle_since_ms.store(ms, Ordering::Release);
        if c.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            c.reader.wake();
        }
    }
}

/// A response body that keeps its request counted as active while hyper writes it.
struct TrackedBody {
    body: Body,
    _active: ActiveRequest,
}

impl http_body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, with the read deadlines (idle, headers) and the write-stall deadline.
struct GuardedIo {
    tcp: TcpStream,
    conn: Arc<ConnState>,
    limits: ConnLimits,
    /// First byte of the next request's head, while no request is active.
    head_started: Option<Instant>,
    read_timer: Pin<Box<Sleep>>,
    /// Since when writes have been refused by the socket.
    write_blocked: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
}

impl GuardedIo {
    fn new(tcp: TcpStream, conn: Arc<ConnState>, limits: ConnLimits) -> Self {
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
        Self {
            tcp,
            conn,
            limits,
            head_started: None,
            read_timer: Box::pin(tokio::time::sleep_until(far)),
            write_blocked: None,
            write_timer: Box::pin(tokio::time::sleep_until(far)),
        }
    }

    /// The deadline for the next bytes: none while a request is in progress.
    fn read_deadline(&mut self) -> Option<(Instant, &'static str)> {
        if self.conn.is_active() {
            self.head_started = None;
            return None;
        }
        Some(match self.head_started {
            Some(t) => (
                t + self.limits.header_timeout,
                "request headers not received in time",
            ),
            None => (
                self.conn.idle_since() + self.limits.idle_timeout,
                "idle connection",
            ),
        })
    }

    /// `Pending`, or the timeout error when `deadline` has passed (the timer wakes the task then).
    ///
    /// The timer is moved only when the deadline comes earlier than it. A keep-alive connection
    /// pushes its idle deadline later with every request; rather than take the timer out of the
    /// timer wheel and put it back each time, a timer that fires early is set again then.
    fn wait_for(
        timer: &mut Pin<Box<Sleep>>,
        cx: &mut Context<'_>,
        deadline: Instant,
        what: &'static str,
    ) -> Poll<io::Error> {
        let at = tokio::time::Instant::from_std(deadline);
        if timer.deadline() > at {
            timer.as_mut().reset(at);
        }
        while timer.as_mut().poll(cx).is_ready() {
            if tokio::time::Instant::now() >= at {
                return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, what));
            }
            timer.as_mut().reset(at);
        }
        Poll::Pending
    }

    fn on_write<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.write_blocked = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let since = *self.write_blocked.get_or_insert_with(Instant::now);
                let deadline = since + self.limits.write_stall_timeout;
                let err = ready!(Self::wait_for(
                    &mut self.write_timer,
                    cx,
                    deadline,
                    "the client stopped reading the response",
                ));
                tracing::info!("closing a connection: the client stopped reading the response");
                Poll::Ready(Err(err))
            }
        }
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let deadline = this.read_deadline();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.head_started.is_none() && deadline.is_some()
                {
                    this.head_started = Some(Instant::now());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match deadline {
                None => {
                    this.conn.reader.register(cx.waker());
                    // The request may have ended between the look and the registration.
                    if !this.conn.is_active() {
                        cx.waker().wake_by_ref();
                    }
                    Poll::Pending
                }
                Some((at, what)) => {
                    let err = ready!(Self::wait_for(&mut this.read_timer, cx, at, what));
                    tracing::debug!(reason = what, "closing a connection");
                    Poll::Ready(Err(err))
                }
            },
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_write(cx, data);
        this.on_write(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.on_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_flush(cx);
        this.on_write(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_shutdown(cx);
        this.on_write(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_active_request_has_no_read_deadline_and_idleness_starts_when_it_ends() {
        let conn = Arc::new(ConnState::new());
        let born_idle = conn.idle_since();
        assert_eq!(born_idle, conn.born);
        let active = ActiveRequest::new(conn.clone());
        assert!(conn.is_active());
        drop(active);
        assert!(!conn.is_active());
        assert!(conn.idle_since() >= born_idle);
    }
}
