//! Logging set-up, and a stderr writer that can neither block nor panic.
//!
//! `serve` runs for weeks with its stderr in a pipe (a terminal, `| head`, a log shipper). A log
//! line must never stop a request: when the reader of that pipe is slow, a blocking write would
//! freeze a runtime worker; when it is gone, `tracing-subscriber` would report the failed write
//! with `eprintln!`, which panics in whatever task logged (a request, the signal watcher). So
//! lines are appended to a bounded buffer that one writer thread empties, many lines to a `write`:
//! a full buffer drops the line (and counts it), a broken pipe ends the writer quietly, and nothing
//! on the caller's side ever waits for stderr.
//!
//! On a terminal a command may show a progress spinner on stderr (`commands/progress.rs`); while
//! one is registered here, each log line is written with the spinner taken down and redrawn
//! below it, so lines and spinner never overwrite each other.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::cli::LogFormat;
use crate::settings::LogSettings;
use crate::util::lock;

/// Bytes that may wait for the writer thread before new lines are dropped.
const PENDING_LIMIT: usize = 2 << 20;

/// How long the writer lets lines gather after the first one woke it. Under load one wake-up and
/// one `write` carry every line of that span, instead of a wake-up, a context switch and a `write`
/// per line (a third of the gateway's own CPU per chat went there); an idle process never wakes.
const GATHER: Duration = Duration::from_millis(2);

/// The buffer the writer keeps between batches (a burst may grow it; it shrinks back to this).
const KEEP_CAPACITY: usize = 64 << 10;

/// The shared end of the writer thread: cheap to clone, never blocks.
#[derive(Clone)]
pub struct StderrSink {
    state: Arc<SinkState>,
}

#[derive(Default)]
struct SinkState {
    /// The writer gave up (the pipe is closed): lines are dropped at once.
    closed: AtomicBool,
    dropped: AtomicU64,
    /// The spinner on stderr, if one is shown.
    progress: Mutex<Option<indicatif::ProgressBar>>,
    pending: Mutex<Pending>,
    /// Wakes the writer when lines arrive while it sleeps.
    arrived: Condvar,
    /// Wakes [`StderrSink::flush`] when everything queued has been written.
    drained: Condvar,
}

/// Lines queued for the writer: whole lines, appended in the order they were logged.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// The writer waits on `arrived` (and must be woken); otherwise it will look by itself.
    asleep: bool,
    /// The writer holds a batch it has not finished writing.
    writing: bool,
}

impl StderrSink {
    /// Starts the writer thread on the process's stderr.
    pub fn stderr() -> Self {
        Self::spawn(std::io::stderr())
    }

    /// Starts the writer thread on any writer (tests use a pipe).
    pub fn spawn<W: Write + Send + 'static>(out: W) -> Self {
        let state = Arc::new(SinkState::default());
        let thread_state = state.clone();
        let spawned = std::thread::Builder::new()
            .name("lingma-gw-log".into())
            .spawn(move || write_lines(out, &thread_state));
        if spawned.is_err() {
            state.closed.store(true, Ordering::Relaxed);
        }
        Self { state }
    }

    /// Queues one whole line; drops it when too much is queued already or the writer has stopped.
    pub fn send(&self, line: &[u8]) {
        let st = &self.state;
        if st.closed.load(Ordering::Relaxed) {
            st.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut p = lock(&st.pending);
        if p.bytes.len() + line.len() > PENDING_LIMIT {
            drop(p);
            st.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        p.bytes.extend_from_slice(line);
        if p.asleep {
            p.asleep = false;
            drop(p);
            st.arrived.notify_one();
        }
    }

    /// Waits (at most `timeout`: stderr may be stuck) until every line queued so far is written.
    /// Called before the process exits, and before anything else writes to stderr directly.
    pub fn flush(&self, timeout: Duration) {
        let st = &self.state;
        let deadline = Instant::now() + timeout;
        let mut p = lock(&st.pending);
        while (p.writing || !p.bytes.is_empty()) && !st.closed.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            p = st
                .drained
                .wait_timeout(p, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Lines dropped so far (too much queued, or nobody reads stderr any more).
    pub fn dropped(&self) -> u64 {
        self.state.dropped.load(Ordering::Relaxed)
    }

    /// Whether the writer has stopped for good (its output is closed).
    pub fn is_closed(&self) -> bool {
        self.state.closed.load(Ordering::Relaxed)
    }

    /// The spinner that log lines must be written above (`None`: no spinner any more).
    pub fn set_progress(&self, bar: Option<indicatif::ProgressBar>) {
        *lock(&self.state.progress) = bar;
    }
}

fn write_lines<W: Write>(mut out: W, st: &SinkState) {
    let mut batch = Vec::new();
    let mut reported = 0u64;
    loop {
        {
            let mut p = lock(&st.pending);
            while p.bytes.is_empty() {
                if p.writing {
                    p.writing = false;
                    st.drained.notify_all();
                }
                p.asleep = true;
                p = st.arrived.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            p.writing = true;
        }
        std::thread::sleep(GATHER);
        std::mem::swap(&mut lock(&st.pending).bytes, &mut batch);
        let dropped = st.dropped.load(Ordering::Relaxed);
        if dropped > reported {
            let note = format!(
                "lingma-gw: {} log lines dropped (stderr too slow)\n",
                dropped - reported
            );
            reported = dropped;
            batch.extend_from_slice(note.as_bytes());
        }
        // Held for the whole write: a spinner registered meanwhile (`set_progress`) waits for
        // these lines, and draws only after them.
        let progress = lock(&st.progress);
        let mut write = || out.write_all(&batch).and_then(|_| out.flush());
        let written = match progress.as_ref() {
            Some(bar) => bar.suspend(write),
            None => write(),
        };
        drop(progress);
        batch.clear();
        batch.shrink_to(KEEP_CAPACITY);
        if written.is_err() {
            break;
        }
    }
    // The reader of stderr is gone: everything from now on is dropped without trying.
    st.closed.store(true, Ordering::Relaxed);
    let mut p = lock(&st.pending);
    let lost = p.bytes.iter().filter(|&&b| b == b'\n').count();
    st.dropped.fetch_add(lost as u64, Ordering::Relaxed);
    p.bytes = Vec::new();
    p.writing = false;
    st.drained.notify_all();
}

/// One event's bytes, queued as a whole line. `tracing-subscriber` formats an event into its own
/// buffer and writes it in one call, so the line usually goes straight to the queue uncopied.
pub struct LineWriter<'a> {
    sink: &'a StderrSink,
    buf: Vec<u8>,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.is_empty() && data.ends_with(b"\n") {
            self.sink.send(data);
        } else {
            self.buf.extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.sink.send(&self.buf);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrSink {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            sink: self,
            buf: Vec::new(),
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
        sink.send(b"first\n");
        assert!(wait_for(|| sink.is_closed()));
        sink.send(b"second\n");
        assert!(sink.dropped() >= 1);
    }

    #[test]
    fn a_stuck_reader_never_blocks_the_caller() {
        let (_release, rx) = std::sync::mpsc::channel();
        let sink = StderrSink::spawn(Stuck(rx));
        // Four times what the buffer holds: every send returns at once, and the excess is counted.
        // At most two buffers' worth is accepted: the one the writer took before it got stuck (how
        // much it held then depends on timing) and the one filled after.
        let line = [b'x'; 1023]
            .iter()
            .chain(b"\n")
            .copied()
            .collect::<Vec<u8>>();
        let lines = 4 * PENDING_LIMIT / line.len();
        for _ in 0..lines {
            sink.send(&line);
        }
        assert!(
            sink.dropped() >= (lines / 2 - 1) as u64,
            "{}",
            sink.dropped()
        );
    }

    /// Records each `write` the writer thread makes.
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

    #[test]
    fn lines_arrive_whole_and_in_order() {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let sink = StderrSink::spawn(Chan(tx));
        {
            use tracing_subscriber::fmt::MakeWriter;
            let mut w = sink.make_writer();
            w.write_all(b"a ").unwrap();
            w.write_all(b"b\n").unwrap();
        }
        sink.send(b"c\n");
        sink.flush(Duration::from_secs(10));
        let written: Vec<u8> = rx.try_iter().flatten().collect();
        assert_eq!(written, b"a b\nc\n");
        assert_eq!(sink.dropped(), 0);
    }

    #[test]
    fn lines_from_many_threads_stay_whole_and_share_writes() {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let sink = StderrSink::spawn(Chan(tx));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        sink.send(format!("thread {t} line {i}\n").as_bytes());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        sink.flush(Duration::from_secs(10));
        let writes: Vec<Vec<u8>> = rx.try_iter().collect();
        let text = String::from_utf8(writes.concat()).unwrap();
        let mut next = [0usize; 4];
        for line in text.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            let (t, i): (usize, usize) = (words[1].parse().unwrap(), words[3].parse().unwrap());
            assert_eq!(
                i, next[t],
                "thread {t}'s lines out of order or torn: {line:?}"
            );
            next[t] += 1;
        }
        assert_eq!(next, [2000; 4]);
        // 8,000 lines sent flat out: the writer wrote them in batches, not a `write` each.
        assert!(writes.len() < 8000, "{} writes", writes.len());
    }

    #[test]
    fn flush_gives_up_on_a_stuck_reader() {
        let (_release, rx) = std::sync::mpsc::channel();
        let sink = StderrSink::spawn(Stuck(rx));
        sink.send(b"never read\n");
        let t0 = Instant::now();
        sink.flush(Duration::from_millis(200));
        assert!(t0.elapsed() >= Duration::from_millis(200));
    }
}
