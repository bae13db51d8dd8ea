//! What the simulator keeps on disk in its work dir, and the in-memory state backed by it:
//! the login files (`cache/id`, `cache/user`), the persisted endpoint
//! (`extension/server/config.json`) and the chat session store (`cache/db/sessions.jsonl`).
//!
//! `cache/user` is plain JSON here (the real binary encrypts it); other tools must treat it as
//! opaque. The session store is an append-only journal so that recording a turn costs one small
//! write however many sessions exist; it is compacted once at start-up.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::lingma::WorkDir;
use crate::util::unix_millis;

/// Token lifetime of a fresh login (the real pt-/rt- tokens live about 60 days).
pub const TOKEN_LIFETIME_MS: i64 = 60 * 24 * 3600 * 1000;

/// The plaintext of `cache/user` (field names as in the real file, decrypted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct UserInfo {
    pub name: String,
    pub aid: String,
    pub uid: String,
    pub organization_id: String,
    pub user_type: String,
    pub security_oauth_token: String,
    pub refresh_token: String,
    pub expire_time: i64,
    pub key: String,
    pub encrypt_user_info: String,
}

pub fn random_token(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut s = String::with_capacity(prefix.len() + 40);
    s.push_str(prefix);
    for _ in 0..40 {
        s.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    s
}

impl UserInfo {
    /// A freshly logged-in account with new tokens.
    pub fn new(uid: &str, aid: &str, name: &str) -> Self {
        UserInfo {
            name: name.to_string(),
            aid: aid.to_string(),
            uid: uid.to_string(),
            organization_id: String::new(),
            user_type: "personal_standard".to_string(),
            security_oauth_token: random_token("pt-"),
            refresh_token: random_token("rt-"),
            expire_time: unix_millis() + TOKEN_LIFETIME_MS,
            key: hex::encode(rand::random::<[u8; 16]>()),
            encrypt_user_info: String::new(),
        }
    }

    /// The demo account a fresh work dir starts with.
    pub fn demo() -> Self {
        Self::new("100000000001", "100000000001", "demo")
    }

    /// A user file is usable when it names someone and carries a token.
    pub fn is_valid(&self) -> bool {
        !self.uid.is_empty() && !self.security_oauth_token.is_empty()
    }

    pub fn is_expired(&self, now: i64) -> bool {
        self.expire_time > 0 && self.expire_time <= now
    }
}

/// Writes through a temporary file and a rename so that a reader (or a crash) never sees half a
/// file; the login files are secrets, so owner-only like every private file this crate writes.
fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    crate::util::write_private(path, data)
}

/// The simulator's reads and writes of the files in a work dir (where they are is [`WorkDir`]'s).
pub trait SimFiles {
    /// Reads `cache/id`, creating it when missing. Returns the id and whether it was created.
    fn ensure_machine_id(&self) -> io::Result<(String, bool)>;
    /// The logged-in user, if `cache/user` exists and is valid.
    fn read_user(&self) -> Option<UserInfo>;
    fn write_user(&self, user: &UserInfo) -> io::Result<()>;
    fn remove_user(&self) -> io::Result<()>;
    fn read_endpoint(&self) -> Option<String>;
    fn write_endpoint(&self, endpoint: &str) -> io::Result<()>;
    /// `--copyDataDir SRC`: copies SRC into this work dir, except `cache/user` (the real binary
    /// does not carry the login over to a copied data dir).
    fn copy_from(&self, src: &Path) -> io::Result<()>;
}

impl SimFiles for WorkDir {
    fn ensure_machine_id(&self) -> io::Result<(String, bool)> {
        match fs::read_to_string(self.machine_id()) {
            Ok(s) if !s.trim().is_empty() => Ok((s.trim().to_string(), false)),
            Ok(_) | Err(_) => {
                let id = uuid::Uuid::new_v4().to_string();
                write_atomic(&self.machine_id(), id.as_bytes())?;
                Ok((id, true))
            }
        }
    }

    fn read_user(&self) -> Option<UserInfo> {
        let text = fs::read(self.user()).ok()?;
        let user: UserInfo = serde_json::from_slice(&text).ok()?;
        user.is_valid().then_some(user)
    }

    fn write_user(&self, user: &UserInfo) -> io::Result<()> {
        let data = serde_json::to_vec_pretty(user).map_err(io::Error::other)?;
        write_atomic(&self.user(), &data)
    }

    fn remove_user(&self) -> io::Result<()> {
        match fs::remove_file(self.user()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn read_endpoint(&self) -> Option<String> {
        let text = fs::read(self.endpoint_config()).ok()?;
        let v: Value = serde_json::from_slice(&text).ok()?;
        v.get("endpoint")?.as_str().map(str::to_string)
    }

    fn write_endpoint(&self, endpoint: &str) -> io::Result<()> {
        let data = serde_json::to_vec_pretty(&serde_json::json!({ "endpoint": endpoint }))
            .map_err(io::Error::other)?;
        write_atomic(&self.endpoint_config(), &data)
    }

    fn copy_from(&self, src: &Path) -> io::Result<()> {
        fs::create_dir_all(self.root())?;
        let (from, to) = (src.canonicalize()?, self.root().canonicalize()?);
        if to.starts_with(&from) {
            // Copying a tree into itself would never end.
            return Err(io::Error::other(
                "the work dir is inside the directory to copy",
            ));
        }
        copy_tree(src, self.root(), &WorkDir::new(src).user())
    }
}

fn copy_tree(src: &Path, dst: &Path, skip: &Path) -> io::Result<()> {
    fs::create_dir_all(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        if from == skip {
            continue;
        }
        let to = dst.join(entry.file_name());
        // Symlinks are skipped: following them could copy anything on the machine.
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&from, &to, skip)?;
        } else if kind.is_file() {
            fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// One turn of a conversation (Lingma's ChatRecord).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ChatRecord {
    pub request_id: String,
    pub session_id: String,
    pub chat_task: String,
    pub chat_context: Value,
    /// The question exactly as received, directives included.
    pub question: String,
    pub answer: String,
    pub like_status: i64,
    pub gmt_create: i64,
    pub gmt_modified: i64,
    /// How the turn ended: `success`, `cancelled`, an error text, or `""` when it never finished.
    pub reason: String,
    pub status_code: i64,
}

impl Default for ChatRecord {
    fn default() -> Self {
        ChatRecord {
            request_id: String::new(),
            session_id: String::new(),
            chat_task: String::new(),
            chat_context: Value::Null,
            question: String::new(),
            answer: String::new(),
            like_status: 0,
            gmt_create: 0,
            gmt_modified: 0,
            reason: String::new(),
            status_code: 0,
        }
    }
}

/// One conversation (Lingma's ChatSession).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ChatSession {
    pub session_id: String,
    pub session_title: String,
    pub user_id: String,
    pub user_name: String,
    pub project_id: String,
    pub project_uri: String,
    pub project_name: String,
    pub gmt_create: i64,
    pub gmt_modified: i64,
    pub chat_records: Vec<ChatRecord>,
    pub session_type: String,
    /// The off-by-one quirk is switched on for this conversation (sticky, like the real quirk).
    #[serde(skip)]
    pub off_by_one: bool,
    /// Under off-by-one: the answer that the next ask of this session will receive.
    #[serde(skip)]
    pub pending_answer: Option<String>,
    /// A turn has started (title sent) even if it is not recorded yet.
    #[serde(skip)]
    pub started: bool,
    /// The last answer was a broken tool call (`sim/agent.rs`): the next one corrects it.
    #[serde(skip)]
    pub agent_broken: bool,
    /// The model `session/set_model` chose for the session's next prompts (ACP).
    #[serde(skip)]
    pub model: Option<String>,
}

// Built and serialised one at a time, never stored in bulk.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum JournalOp {
    Session {
        session: ChatSession,
    },
    Turn {
        session: ChatSession,
        record: ChatRecord,
    },
    DeleteSession {
        session_id: String,
    },
    DeleteChat {
        session_id: String,
        request_id: String,
    },
    Clear,
}

/// Sessions in memory, journalled to `cache/db/sessions.jsonl`.
pub struct SessionStore {
    path: PathBuf,
    file: Option<File>,
    sessions: HashMap<String, ChatSession>,
}

impl SessionStore {
    /// Loads the journal (tolerating a torn last line from a crash) and rewrites it compacted.
    pub fn open(db_dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(db_dir)?;
        let path = db_dir.join("sessions.jsonl");
        let mut sessions: HashMap<String, ChatSession> = HashMap::new();
        if let Ok(text) = fs::read_to_string(&path) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let Ok(op) = serde_json::from_str::<JournalOp>(line) else {
                    continue;
                };
                match op {
                    JournalOp::Session { session } => {
                        sessions.insert(session.session_id.clone(), session);
                    }
                    JournalOp::Turn { session, record } => {
                        let s = sessions
                            .entry(session.session_id.clone())
                            .or_insert_with(|| ChatSession {
                                chat_records: Vec::new(),
                                ..session.clone()
                            });
                        s.gmt_modified = session.gmt_modified;
                        s.session_title = session.session_title;
                        s.chat_records.retain(|r| r.request_id != record.request_id);
                        s.chat_records.push(record);
                    }
                    JournalOp::DeleteSession { session_id } => {
                        sessions.remove(&session_id);
                    }
                    JournalOp::DeleteChat {
                        session_id,
                        request_id,
                    } => {
                        if let Some(s) = sessions.get_mut(&session_id) {
                            s.chat_records.retain(|r| r.request_id != request_id);
                        }
                    }
                    JournalOp::Clear => sessions.clear(),
                }
            }
        }
        let mut compact = Vec::new();
        let mut ordered: Vec<&ChatSession> = sessions.values().collect();
        ordered.sort_by_key(|s| s.gmt_create);
        for s in ordered {
            let op = JournalOp::Session { session: s.clone() };
            if let Ok(line) = serde_json::to_string(&op) {
                compact.extend_from_slice(line.as_bytes());
                compact.push(b'\n');
            }
        }
        write_atomic(&path, &compact)?;
        let file = OpenOptions::new().append(true).open(&path)?;
        Ok(SessionStore {
            path,
            file: Some(file),
            sessions,
        })
    }

    fn journal(&mut self, op: &JournalOp) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let Ok(mut line) = serde_json::to_vec(op) else {
            return;
        };
        line.push(b'\n');
        if let Err(e) = file.write_all(&line) {
            tracing::warn!("cannot append to {}: {e}", self.path.display());
        }
    }

    /// The session, created (not yet journalled) when unknown.
    pub fn session_mut(&mut self, session_id: &str, session_type: &str) -> &mut ChatSession {
        self.sessions
            .entry(session_id.to_string())
            .or_insert_with(|| {
                let now = unix_millis();
                ChatSession {
                    session_id: session_id.to_string(),
                    session_type: session_type.to_string(),
                    gmt_create: now,
                    gmt_modified: now,
                    ..ChatSession::default()
                }
            })
    }

    /// Records a finished (or abandoned) turn and journals it.
    pub fn record_turn(&mut self, record: ChatRecord) {
        let Some(s) = self.sessions.get_mut(&record.session_id) else {
            return;
        };
        s.gmt_modified = record.gmt_modified;
        s.chat_records.retain(|r| r.request_id != record.request_id);
        s.chat_records.push(record.clone());
        let head = ChatSession {
            chat_records: Vec::new(),
            ..s.clone()
        };
        self.journal(&JournalOp::Turn {
            session: head,
            record,
        });
    }

    pub fn get(&self, session_id: &str) -> Option<&ChatSession> {
        self.sessions.get(session_id)
    }

    /// Newest first.
    pub fn list(&self) -> Vec<&ChatSession> {
        let mut v: Vec<&ChatSession> = self.sessions.values().collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.gmt_modified));
        v
    }

    pub fn delete(&mut self, session_id: &str) -> bool {
        let found = self.sessions.remove(session_id).is_some();
        if found {
            self.journal(&JournalOp::DeleteSession {
                session_id: session_id.to_string(),
            });
        }
        found
    }

    pub fn delete_chat(&mut self, session_id: &str, request_id: &str) -> bool {
        let Some(s) = self.sessions.get_mut(session_id) else {
            return false;
        };
        let before = s.chat_records.len();
        s.chat_records.retain(|r| r.request_id != request_id);
        let found = s.chat_records.len() != before;
        if found {
            self.journal(&JournalOp::DeleteChat {
                session_id: session_id.to_string(),
                request_id: request_id.to_string(),
            });
        }
        found
    }

    pub fn clear(&mut self) {
        self.sessions.clear();
        self.journal(&JournalOp::Clear);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_survive_reopen_and_deletes_replay() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut st = SessionStore::open(dir.path()).unwrap();
            for (sid, rid) in [("s1", "r1"), ("s1", "r2"), ("s2", "r3")] {
                st.session_mut(sid, "chat").session_title = format!("title {sid}");
                st.record_turn(ChatRecord {
                    request_id: rid.into(),
                    session_id: sid.into(),
                    question: format!("q {rid}"),
                    answer: format!("a {rid}"),
                    ..ChatRecord::default()
                });
            }
            assert!(st.delete("s2"));
            assert!(st.delete_chat("s1", "r1"));
        }
        let mut st = SessionStore::open(dir.path()).unwrap();
        assert!(st.get("s2").is_none());
        let s1 = st.get("s1").unwrap();
        assert_eq!(s1.session_title, "title s1");
        assert_eq!(s1.chat_records.len(), 1);
        assert_eq!(s1.chat_records[0].question, "q r2");
        st.clear();
        drop(st);
        let st = SessionStore::open(dir.path()).unwrap();
        assert!(st.list().is_empty());
    }

    #[test]
    fn user_file_round_trip_and_copy_skips_user() {
        let src = tempfile::tempdir().unwrap();
        let w = WorkDir::new(src.path());
        let (id, created) = w.ensure_machine_id().unwrap();
        assert!(created);
        assert_eq!(w.ensure_machine_id().unwrap(), (id.clone(), false));
        assert!(w.read_user().is_none());
        let u = UserInfo::demo();
        w.write_user(&u).unwrap();
        assert_eq!(w.read_user(), Some(u));
        let dst = tempfile::tempdir().unwrap();
        let w2 = WorkDir::new(dst.path());
        w2.copy_from(src.path()).unwrap();
        assert_eq!(w2.ensure_machine_id().unwrap(), (id, false));
        assert!(w2.read_user().is_none());
        assert!(
            WorkDir::new(src.path().join("inner"))
                .copy_from(src.path())
                .is_err()
        );
        w.remove_user().unwrap();
        w.remove_user().unwrap();
        assert!(w.read_user().is_none());
    }
}
