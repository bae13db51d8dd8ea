//! A command on a real terminal: a tmux server of its own (private socket, no config), one pane
//! running the command, everything the command writes to the terminal recorded as it happens
//! (`pipe-pane`, so a spinner that is drawn and cleared again is still seen), the screen as a user
//! sees it (`capture-pane`), keys typed into it, and its exit status (the pane stays after the
//! command ends). Waits are on what the pane shows, through the one deadline helper.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::wait::wait_for;

pub struct Tmux {
    socket: String,
    dir: tempfile::TempDir,
    raw: PathBuf,
    /// Where the shell writes the command's exit status.
    status: PathBuf,
}

/// A word as `sh` reads it back.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Tmux {
    /// Starts `argv` (with `env` added) on a 160x50 terminal, run by a bash that then writes its
    /// exit status down. It waits for a line on its terminal before it runs, so that recording
    /// starts before the command's first byte; `start` sends that line. Ctrl-C (`send_keys`)
    /// reaches the command; bash waits for it and carries on when it was not ended by the signal.
    pub fn start(argv: &[&str], env: &[(&str, &str)]) -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        let socket = format!("lingma-gw-test-{}", std::process::id())
            + &format!("-{}", dir.path().file_name().unwrap().to_string_lossy());
        let conf = dir.path().join("tmux.conf");
        std::fs::write(
            &conf,
            "set -g remain-on-exit on\nset -g history-limit 5000\nset -g status off\n",
        )
        .unwrap();
        let status = dir.path().join("status");
        let mut words: Vec<String> = vec!["env".into()];
        words.extend(env.iter().map(|(k, v)| sh_quote(&format!("{k}={v}"))));
        words.extend(argv.iter().map(|a| sh_quote(a)));
        let script = format!(
            "read -r _go; {}; echo $? > {}",
            words.join(" "),
            sh_quote(status.to_str().unwrap())
        );
        let t = Tmux {
            raw: dir.path().join("raw.out"),
            socket,
            dir,
            status,
        };
        let status = Command::new("tmux")
            .args(["-L", &t.socket, "-f"])
            .arg(&conf)
            .args(["new-session", "-d", "-x", "160", "-y", "50", "-s", "t"])
            .args(["bash", "--norc", "--noprofile", "-c", &script])
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux is installed (scripts/setup-test-deps.sh)");
        assert!(status.success(), "tmux new-session failed");
        t.tmux(&[
            "pipe-pane",
            "-o",
            "-t",
            "t",
            &format!("cat >> {}", sh_quote(t.raw.to_str().unwrap())),
        ]);
        t.send_keys(&["Enter"]);
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Keys as tmux names them (`Enter`, `C-c`).
    pub fn send_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Text typed as is.
    pub fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", text]);
    }

    /// The screen and its scrollback as a user sees it now, wrapped lines joined (without the
    /// line tmux adds when the command has ended).
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-S", "-", "-t", "t"])
            .lines()
            .filter(|l| !l.starts_with("Pane is dead ("))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// Every byte the command wrote to the terminal so far, escape sequences included.
    pub fn raw(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.raw).unwrap_or_default()).into_owned()
    }

    /// Waits until the screen shows `needle`; the screen then.
    pub fn wait_for_screen(&self, needle: &str, timeout: Duration) -> String {
        wait_for(timeout, || {
            let s = self.screen();
            if s.contains(needle) { Ok(s) } else { Err(s) }
        })
        .unwrap_or_else(|s| panic!("the terminal never showed {needle:?}; it shows:\n{s}"))
    }

    /// Waits until the recorded output holds `needle`.
    pub fn wait_for_raw(&self, needle: &str, timeout: Duration) -> String {
        wait_for(timeout, || {
            let s = self.raw();
            if s.contains(needle) { Ok(s) } else { Err(s) }
        })
        .unwrap_or_else(|s| panic!("the command never wrote {needle:?}; it wrote:\n{s:?}"))
    }

    /// The command's exit status, once it has ended (the shell that ran it writes it down: tmux
    /// itself was seen to leave an ended command unreaped, without a status, under load).
    pub fn wait_exit(&self, timeout: Duration) -> i32 {
        let found = wait_for(timeout, || {
            let s = std::fs::read_to_string(&self.status).unwrap_or_default();
            match s.trim().parse::<i32>() {
                Ok(code) if s.ends_with('\n') => Ok(code),
                _ => Err(()),
            }
        });
        found.unwrap_or_else(|_| {
            panic!(
                "the command did not end within {timeout:?}; the terminal shows:\n{}",
                self.screen()
            )
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}
