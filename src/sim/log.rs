//! The two log files a simulator writes in its work dir: `logs/lingma.log` (lines shaped like the
//! real binary's, which clients tail for readiness) and `logs/sim-requests.jsonl` (every inbound
//! client message, one JSON object a line, for tests to assert on).
//!
//! Both are written unbuffered with one `write` per line under a mutex that is never held across an
//! await: a line is on disk before the message it records is answered, so a test that got an
//! answer can read the line without polling, and a simulated crash (`process::exit`) loses nothing.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use crate::util::{lock, unix_millis};

/// `2025-05-04 10:11:12.345` (UTC), the timestamp layout of Lingma's own log lines.
pub fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{milli:03}",
        tod / 3600,
        (tod / 60) % 60,
        tod % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm; avoids a date crate for one log format.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn write_line(file: &Mutex<File>, line: &[u8]) {
    let mut f = lock(file);
    if let Err(e) = f.write_all(line) {
        tracing::warn!("cannot write simulator log: {e}");
    }
}

/// `logs/lingma.log`. Every line also goes to stderr through `tracing`, after the file: whoever
/// saw a line on stderr (the readiness line, say) finds it in the file too.
pub struct LingmaLog {
    file: Mutex<File>,
}

impl LingmaLog {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(LingmaLog {
            file: Mutex::new(open_append(path)?),
        })
    }

    fn line(&self, level: &str, msg: &str) {
        let line = format!("{} {level} {msg}\n", format_ms(unix_millis()));
        write_line(&self.file, line.as_bytes());
    }

    // The file first: whoever sees a line on stderr (the readiness line) may read the file at
    // once and must find it there too.
    pub fn info(&self, msg: &str) {
        self.line("INFO", msg);
        tracing::info!(target: "lingma_sim", "{msg}");
    }

    pub fn warn(&self, msg: &str) {
        self.line("WARN", msg);
        tracing::warn!(target: "lingma_sim", "{msg}");
    }

    /// Only to the file: per-message detail that would flood stderr under load.
    pub fn debug(&self, msg: &str) {
        self.line("DEBUG", msg);
        tracing::debug!(target: "lingma_sim", "{msg}");
    }
}

/// `logs/sim-requests.jsonl`.
pub struct RequestLog {
    file: Mutex<File>,
}

impl RequestLog {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(RequestLog {
            file: Mutex::new(open_append(path)?),
        })
    }

    /// Records one inbound frame body that parsed as a JSON object. An object on one line is
    /// spliced (its own keys follow `ts`, `conn` and `kind`) so the common case costs one
    /// allocation and no re-serialisation.
    pub fn record(&self, conn: u64, kind: &str, body: &[u8]) {
        self.write(conn, kind, body, true)
    }

    /// Records bytes that are not a valid message (bare JSON, bad JSON) under `raw`.
    pub fn record_raw(&self, conn: u64, kind: &str, body: &[u8]) {
        self.write(conn, kind, body, false)
    }

    fn write(&self, conn: u64, kind: &str, body: &[u8], valid_object: bool) {
        let trimmed = body.trim_ascii();
        let mut line = Vec::with_capacity(trimmed.len() + 64);
        let _ = write!(
            line,
            "{{\"ts\":{},\"conn\":{conn},\"kind\":\"{kind}\"",
            unix_millis()
        );
        let one_line_object = valid_object
            && trimmed.first() == Some(&b'{')
            && trimmed.last() == Some(&b'}')
            && !trimmed.iter().any(|&b| b == b'\n' || b == b'\r');
        if one_line_object {
            let inner = trimmed[1..trimmed.len() - 1].trim_ascii();
            if !inner.is_empty() {
                line.push(b',');
                line.extend_from_slice(inner);
            }
        } else {
            let raw = serde_json::Value::String(String::from_utf8_lossy(body).into_owned());
            let _ = write!(line, ",\"raw\":{raw}");
        }
        line.extend_from_slice(b"}\n");
        write_line(&self.file, &line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_dates() {
        assert_eq!(format_ms(0), "1970-01-01 00:00:00.000");
        assert_eq!(format_ms(1_746_353_472_345), "2025-05-04 10:11:12.345");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29 00:00:00.000");
    }

    #[test]
    fn request_log_lines_are_json() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.jsonl");
        let log = RequestLog::open(&p).unwrap();
        log.record(3, "request", br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
        log.record(3, "request", b"{\n\"id\":2}");
        log.record_raw(4, "unknown_header", b"{}");
        log.record_raw(4, "invalid", b"{not json}");
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["method"], "ping");
        assert_eq!(lines[0]["conn"], 3);
        assert_eq!(lines[1]["raw"], "{\n\"id\":2}");
        assert_eq!(lines[2]["kind"], "unknown_header");
        assert_eq!(lines[2]["raw"], "{}");
        assert_eq!(lines[3]["raw"], "{not json}");
    }
}
