//! Where a Lingma runtime listens ([`Endpoint`]) and the byte pipe one JSON-RPC connection runs
//! over: a WebSocket, where each Content-Length frame travels as one text message (§2.2), or a
//! Unix socket, where the same frames follow one another as a plain byte stream (the IPC channel
//! an IDE's runtime opens, §12.3). `rpc.rs` sees only [`Writer`] and [`Reader`]; framing itself is
//! `frame.rs`.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Initial read buffer of one connection. tungstenite's default 128 KiB is allocated (and touched)
/// per connection: with a thousand pooled connections that alone was ~130 MB. Lingma's messages
/// are small and the buffer still grows for a larger frame.
const READ_BUFFER_SIZE: usize = 8 * 1024;

/// Where a Lingma runtime takes connections.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `ws://HOST:PORT/...`
    WebSocket(String),
    /// A Unix socket (`lingma.sock`, `qodercn.sock`, or an info file's `ipcServerPath`).
    Unix(PathBuf),
}

impl Endpoint {
    /// The WebSocket of a runtime on this machine.
    pub fn local_port(port: u16) -> Self {
        Endpoint::WebSocket(format!("ws://127.0.0.1:{port}/"))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::WebSocket(url) => f.write_str(url),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Why a connection could not be opened (the caller adds the endpoint).
pub(super) type OpenError = String;

/// An open connection's two halves, and the process at the other end when the transport says
/// (a Unix socket's peer credentials).
pub(super) struct Opened {
    pub(super) writer: Writer,
    pub(super) reader: Reader,
    pub(super) peer_pid: Option<u32>,
}

/// Opens `endpoint`. `machine_token` adds the `Cosy-MachineToken` header that Qoder CN's
/// WebSocket sidecar requires; a socket has no handshake to carry it.
pub(super) async fn open(
    endpoint: &Endpoint,
    machine_token: Option<&str>,
    timeout: Duration,
) -> Result<Opened, OpenError> {
    let timed_out = || format!("timed out after {}s", timeout.as_secs_f32());
    match endpoint {
        Endpoint::WebSocket(url) => {
            let mut request = url
                .as_str()
                .into_client_request()
                .map_err(|e| e.to_string())?;
            if let Some(token) = machine_token {
                let value = HeaderValue::from_str(token)
                    .map_err(|_| "machine token is not a valid header value".to_string())?;
                request.headers_mut().insert("Cosy-MachineToken", value);
            }
            let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_SIZE);
            let connecting =
                tokio_tungstenite::connect_async_with_config(request, Some(config), true);
            let (ws, _) = tokio::time::timeout(timeout, connecting)
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| e.to_string())?;
            if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
                // Acks and asks must leave at once, without Nagle's delay: a strict Lingma sends
                // its next delta only once the previous one is acknowledged.
                let _ = tcp.set_nodelay(true);
            }
            let (sink, stream) = ws.split();
            Ok(Opened {
                writer: Writer::Ws(sink),
                reader: Reader::Ws(stream),
                peer_pid: None,
            })
        }
        Endpoint::Unix(path) => {
            let stream = tokio::time::timeout(timeout, tokio::net::UnixStream::connect(path))
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| e.to_string())?;
            let peer_pid = stream
                .peer_cred()
                .ok()
                .and_then(|c| c.pid())
                .and_then(|p| u32::try_from(p).ok());
            let (read, write) = stream.into_split();
            Ok(Opened {
                writer: Writer::Unix(BufWriter::new(write)),
                reader: Reader::Unix(read, Vec::new()),
                peer_pid,
            })
        }
    }
}

/// The sending half. Frames are fed (buffered) and flushed separately, so a burst of acks costs
/// one write.
pub(super) enum Writer {
    Ws(SplitSink<Ws, WsMessage>),
    Unix(BufWriter<OwnedWriteHalf>),
}

/// The transport failed; the connection is unusable.
#[derive(Debug)]
pub(super) struct Broken;

impl Writer {
    /// Buffers one encoded frame.
    pub(super) async fn feed(&mut self, frame: String) -> Result<(), Broken> {
        match self {
            Writer::Ws(sink) => sink.feed(WsMessage::text(frame)).await.map_err(|_| Broken),
            Writer::Unix(w) => w.write_all(frame.as_bytes()).await.map_err(|_| Broken),
        }
    }

    pub(super) async fn flush(&mut self) -> Result<(), Broken> {
        match self {
            Writer::Ws(sink) => sink.flush().await.map_err(|_| Broken),
            Writer::Unix(w) => w.flush().await.map_err(|_| Broken),
        }
    }

    /// Sends one frame at once.
    pub(super) async fn send(&mut self, frame: String) -> Result<(), Broken> {
        self.feed(frame).await?;
        self.flush().await
    }

    /// A WebSocket close frame, or the socket's write side shut down.
    pub(super) async fn close(&mut self) {
        match self {
            Writer::Ws(sink) => {
                let _ = sink.close().await;
            }
            Writer::Unix(w) => {
                let _ = w.shutdown().await;
            }
        }
    }
}

/// The receiving half.
pub(super) enum Reader {
    Ws(SplitStream<Ws>),
    /// The socket and a read buffer reused across reads.
    Unix(OwnedReadHalf, Vec<u8>),
}

/// What one read produced.
pub(super) enum Incoming {
    /// Bytes of the frame stream: a WebSocket message's payload, or what a socket read returned.
    Data(Data),
    /// A WebSocket control message: nothing to decode.
    Skip,
    /// The peer closed the connection (or it failed).
    Closed,
}

/// Received bytes, moved out of the transport without a copy where it allows.
pub(super) enum Data {
    Ws(WsMessage),
    Bytes(Vec<u8>),
}

impl Data {
    pub(super) fn as_bytes(&self) -> &[u8] {
        match self {
            Data::Ws(WsMessage::Text(t)) => t.as_bytes(),
            Data::Ws(WsMessage::Binary(b)) => b,
            Data::Ws(_) => &[],
            Data::Bytes(b) => b,
        }
    }
}

impl Reader {
    /// The next piece of input. Cancel-safe: dropping the future loses nothing (the reader polls
    /// it once to see whether more input is already waiting).
    pub(super) async fn next(&mut self) -> Incoming {
        match self {
            Reader::Ws(stream) => match stream.next().await {
                Some(Ok(m @ (WsMessage::Text(_) | WsMessage::Binary(_)))) => {
                    Incoming::Data(Data::Ws(m))
                }
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => Incoming::Closed,
                Some(Ok(_)) => Incoming::Skip,
            },
            Reader::Unix(sock, buf) => {
                buf.clear();
                buf.reserve(READ_BUFFER_SIZE);
                // `read_buf` only appends what arrived, and a dropped read loses nothing.
                match sock.read_buf(buf).await {
                    Ok(0) | Err(_) => Incoming::Closed,
                    Ok(_) => Incoming::Data(Data::Bytes(std::mem::take(buf))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_print_as_a_user_would_give_them() {
        assert_eq!(
            Endpoint::local_port(37010).to_string(),
            "ws://127.0.0.1:37010/"
        );
        assert_eq!(
            Endpoint::Unix("/tmp/lingma.sock".into()).to_string(),
            "unix:/tmp/lingma.sock"
        );
    }
}
