//! What the operating system says about processes, read from `/proc` rather than from the tests'
//! own bookkeeping: signals, live processes by command line, open descriptors, TCP connections,
//! memory.

use std::collections::HashSet;
use std::process::Command;

/// Sends `kill -SIG pid` (`sig` without the `SIG` prefix: `TERM`, `KILL`, ...).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Pids of live processes whose command line contains `needle` (from /proc, not our bookkeeping).
pub fn processes_matching(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let zombie = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        if cmd.contains(needle) && !zombie {
            out.push(pid);
        }
    }
    out
}

/// A port number that was free a moment ago. Only for code under test that copes with a taken
/// port itself (the pool's port scan from a base, a simulator refusing a taken port); never for
/// starting a process the harness then waits on: those bind port 0 and report the port they got.
pub fn port_hint() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Open file descriptors of a process (its sockets included), from /proc.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// TCP connections that process `pid` holds to `127.0.0.1:port` (any state), matched through the
/// socket inodes of its file descriptors and `/proc/net/tcp`.
pub fn tcp_connections_to(pid: u32, port: u16) -> usize {
    let inodes = socket_inodes(pid);
    let port_hex = format!(":{port:04X}");
    tcp_table()
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 9 && f[2].ends_with(&port_hex) && inodes.contains(f[9])
        })
        .count()
}

/// Connections that clients hold to process `pid`'s listening `port` (sockets of `pid` whose local
/// port is `port`, the listener itself excluded).
pub fn client_connections(pid: u32, port: u16) -> usize {
    let inodes = socket_inodes(pid);
    let port_hex = format!(":{port:04X}");
    tcp_table()
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Field 3 is the state: 0A is LISTEN.
            f.len() > 9 && f[1].ends_with(&port_hex) && f[3] != "0A" && inodes.contains(f[9])
        })
        .count()
}

/// Open descriptors of `pid` other than its clients' connections to `port`: what a test compares
/// before and after, without counting keep-alive connections its own HTTP client happens to hold.
pub fn fds_without_clients(pid: u32, port: u16) -> usize {
    open_fds(pid).saturating_sub(client_connections(pid, port))
}

/// The lines (header skipped) of `/proc/net/tcp` and `/proc/net/tcp6`.
fn tcp_table() -> impl Iterator<Item = String> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
}

fn socket_inodes(pid: u32) -> HashSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A field of `/proc/<pid>/status` in kB (`VmRSS`, `VmHWM`, ...).
pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(str::to_string))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
