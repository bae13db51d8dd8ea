//! Logging set-up, and a stderr writer that can neither block nor panic.
//!
//! `serve` runs for weeks with its stderr in a pipe (a terminal, `| head`, a log shipper). A log
//! line must never stop a request: when the reader of that pipe is slow, a blocking write would
//! freeze a runtime worker; when it is gone, `tracing-subscriber` would report the failed write
//! with `eprintln!`, which panics in whatever task logged (a request, the signal watcher). So
//! lines go through a bounded queue to one writer thread: a full queue drops the line (and counts
//! it), a broken pipe ends the writer quietly, and nothing on the caller's side ever waits.
//!
//! On a terminal a command may show a progress spinner on stderr (`commands/progress.rs`); while
//! one is registered here, each log line is written with the spinner taken down and redrawn
//! below it, so lines and spinner never overwrite each other.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use crate::cli::LogFormat;
use crate::settings::LogSettings;

/// Lines that may wait for the writer thread before new ones are dropped.
const QUEUE_LINES: usize = 8192;

/// The shared end of the writer thread: cheap to clone, never blocks.
#[derive(Clone)]
pub struct StderrSink {
    tx: SyncSender<Vec<u8>>,
    state: Arc<SinkState>,
}

#[derive(Default)]
struct SinkState {
    /// The writer gave up (the pipe is closed): lines are dropped at once.
    closed: AtomicBool,
    dropped: AtomicU64,
    /// The spinner on stderr, if one is shown.
    progress: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl StderrSink {
    /// Starts the writer thread on the process's stderr.
    pub fn stderr() -> Self {
        Self::spawn(std::io::stderr())
    }

    /// Starts the writer thread on any writer (tests use a pipe).
    pub fn spawn<W: Write + Send + 'static>(out: W) -> Self {
        let (tx, rx) = sync_channel(QUEUE_LINES);
        let state = Arc::new(SinkState::default());
        let thread_state = state.clone();
        let spawned = std::thread::Builder::new()
            .name("lingma-gw-log".into())
            .spawn(move || write_lines(out, rx, &thread_state));
        if spawned.is_err() {
            state.closed.store(true, Ordering::Relaxed);
        }
        Self { tx, state }
    }

    /// Queues one line; drops it when the queue is full or the writer has stopped.
    pub fn send(&self, line: Vec<u8>) {
        if self.state.closed.load(Ordering::Relaxed) {
            self.state.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.state.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines dropped so far (queue full, or nobody reads stderr any more).
    pub fn dropped(&self) -> u64 {
        self.state.dropped.load(Ordering::Relaxed)
    }

    /// Whether the writer has stopped for good (its output is closed).
    pub fn is_closed(&self) -> bool {
        self.state.closed.load(Ordering::Relaxed)
    }

    /// The spinner that log lines must be written above (`None`: no spinner any more).
    pub fn set_progress(&self, bar: Option<indicatif::ProgressBar>) {
        *crate::util::lock(&self.state.progress) = bar;
    }
}

fn write_lines<W: Write>(mut out: W, rx: Receiver<Vec<u8>>, state: &SinkState) {
    let mut reported = 0u64;
    while let Ok(line) = rx.recv() {
        let dropped = state.dropped.load(Ordering::Relaxed);
        if dropped > reported {
            let note = format!(
                "lingma-gw: {} log lines dropped (stderr too slow)\n",
                dropped - reported
            );
            reported = dropped;
            if out.write_all(note.as_bytes()).is_err() {
                break;
            }
        }
        // Held for the whole write: a spinner registered meanwhile (`set_progress`) waits for
        // this line, and draws only after it.
        let progress = crate::util::lock(&state.progress);
        let mut write = || out.write_all(&line).and_then(|_| out.flush());
        let written = match progress.as_ref() {
            Some(bar) => bar.suspend(write),
            None => write(),
        };
        drop(progress);
        if written.is_err() {
            break;
        }
    }
    // The reader of stderr is gone: everything from now on is dropped without trying.
    state.closed.store(true, Ordering::Relaxed);
    while rx.try_recv().is_ok() {
        state.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// One event's bytes; queued as a whole line when dropped by `tracing-subscriber`.
pub struct LineWriter {
    sink: StderrSink,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.sink.send(std::mem::take(&mut self.buf));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrSink {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            sink: self.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

/// Installs the global subscriber: level filter, text or JSON, lines to stderr through
/// [`StderrSink`]. Returns the sink, so callers can see whether stderr is still read.
pub fn init(log: &LogSettings) -> StderrSink {
    use tracing_subscriber::EnvFilter;
    // chromiumoxide warns about every DevTools message newer than its protocol tables (headless
    // login); those are noise unless asked for by name.
    let directives = if log.filter.contains("chromiumoxide") {
        log.filter.clone()
    } else {
        format!("{},chromiumoxide=error", log.filter)
    };
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let sink = StderrSink::stderr();
    // A failed write must not be reported with `eprintln!` (which panics on a closed stderr).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink.clone())
        .log_internal_errors(false);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    sink
}

/// Writes a line to stdout; a closed stdout (`| head`) is not an error worth a panic.
pub fn stdout_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|_| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A writer that fails like a pipe whose reader has gone.
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A writer that never returns (a reader that stopped reading).
    struct Stuck(std::sync::mpsc::Receiver<()>);
    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn wait_for(mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if f() {
                return true;
            }
            std::thread::yield_now();
        }
        false
    }

    #[test]
    fn a_broken_pipe_closes_the_sink_and_later_lines_are_dropped() {
        let sink = StderrSink::spawn(Broken);
        sink.send(b"first\n".to_vec());
        assert!(wait_for(|| sink.is_closed()));
        sink.send(b"second\n".to_vec());
        assert!(sink.dropped() >= 1);
    }

    #[test]
    fn a_stuck_reader_never_blocks_the_caller() {
        let (_release, rx) = std::sync::mpsc::channel();
        let sink = StderrSink::spawn(Stuck(rx));
        // Far more lines than the queue holds: every send returns at once.
        for i in 0..(QUEUE_LINES * 2) {
            sink.send(format!("line {i}\n").into_bytes());
        }
        assert!(sink.dropped() >= QUEUE_LINES as u64 - 1);
    }

    #[test]
    fn lines_arrive_whole_and_in_order() {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        struct Chan(std::sync::mpsc::Sender<Vec<u8>>);
        impl Write for Chan {
            fn write(&mut self, d: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.send(d.to_vec());
                Ok(d.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = StderrSink::spawn(Chan(tx));
        {
            use tracing_subscriber::fmt::MakeWriter;
            let mut w = sink.make_writer();
            w.write_all(b"a ").unwrap();
            w.write_all(b"b\n").unwrap();
        }
        sink.send(b"c\n".to_vec());
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), b"a b\n");
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), b"c\n");
        assert_eq!(sink.dropped(), 0);
    }
}
