//! Progress for terminal commands: a spinner on stderr that says what the command is waiting for
//! (an instance starting, the first token, a bundle being packed), with the time spent so far.
//!
//! Shown only when stderr is a terminal and `-q` is not given; on a pipe every call here does
//! nothing. Log lines written while a spinner is up go above it (the stderr writer in `logging`
//! takes the spinner down for each line), and a command clears its spinner before it writes to
//! the terminal itself. One spinner at a time.

use std::borrow::Cow;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::logging::StderrSink;

/// How often a spinner is redrawn.
const TICK: Duration = Duration::from_millis(100);

/// Whether progress is shown, and where log lines go meanwhile.
#[derive(Clone)]
pub struct Ui {
    enabled: bool,
    sink: Option<StderrSink>,
}

impl Ui {
    /// Progress when stderr is a terminal and the user did not ask for quiet.
    pub fn new(quiet: bool, sink: Option<StderrSink>) -> Self {
        Self {
            enabled: !quiet && std::io::stderr().is_terminal(),
            sink,
        }
    }

    /// No progress at all (tests, commands that print nothing but their answer).
    pub fn hidden() -> Self {
        Self {
            enabled: false,
            sink: None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A spinner showing `message` until it is finished or dropped.
    pub fn spinner(&self, message: impl Into<Cow<'static, str>>) -> Spinner {
        if !self.enabled {
            return Spinner {
                bar: None,
                sink: None,
            };
        }
        let bar = ProgressBar::new_spinner();
        let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        // Registered before it first draws, so no log line is written across it.
        if let Some(sink) = &self.sink {
            sink.set_progress(Some(bar.clone()));
        }
        bar.set_message(message);
        bar.enable_steady_tick(TICK);
        Spinner {
            bar: Some(bar),
            sink: self.sink.clone(),
        }
    }

    /// A bar of `total` bytes (`None`: a byte count without an end), for reading or writing
    /// session bundles.
    pub fn bytes(&self, total: Option<u64>, message: impl Into<Cow<'static, str>>) -> Spinner {
        let s = self.spinner(message);
        if let (Some(bar), Some(total)) = (&s.bar, total) {
            bar.set_length(total);
            let style = ProgressStyle::with_template(
                "{spinner} {msg} {bytes}/{total_bytes} [{bar:30}] ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
        } else if let Some(bar) = &s.bar {
            let style = ProgressStyle::with_template("{spinner} {msg} {bytes} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
        }
        s
    }
}

/// A spinner on stderr (or nothing, when progress is not shown). Dropping it clears it.
pub struct Spinner {
    bar: Option<ProgressBar>,
    sink: Option<StderrSink>,
}

impl Spinner {
    pub fn set_message(&self, message: impl Into<Cow<'static, str>>) {
        if let Some(bar) = &self.bar {
            bar.set_message(message);
        }
    }

    /// Moves a byte bar on.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Whether anything is drawn.
    pub fn is_shown(&self) -> bool {
        self.bar.is_some()
    }

    /// Takes the spinner off the terminal for good.
    pub fn finish(mut self) {
        self.clear();
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            if let Some(sink) = &self.sink {
                sink.set_progress(None);
            }
            bar.finish_and_clear();
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Reads through `inner`, moving `spinner` on by the bytes read.
pub struct CountingReader<'a, R> {
    pub inner: R,
    pub spinner: &'a Spinner,
}

impl<R: std::io::Read> std::io::Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.spinner.inc(n as u64);
        Ok(n)
    }
}
