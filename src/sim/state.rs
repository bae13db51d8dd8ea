//! The state one simulator process shares between its WebSocket connections, chat streams and
//! HTTP handlers: login state, endpoint, login nonces, the session store, the connection and
//! running-chat registries, and the shutdown / crash tokens.
//!
//! Every lock here is a `std::sync::Mutex` held for a few map operations and never across an
//! await, so there is no global lock on the message path.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::{CRASH_EXIT_CODE, CrashAction, SimConfig};
use super::conn::Conn;
use super::log::{LingmaLog, RequestLog};
use super::store::{SessionStore, SimFiles, UserInfo};
use crate::lingma::WorkDir;
use crate::util::lock;
use crate::util::unix_millis;

/// The built-in region default reported in the log when no endpoint is configured.
pub const DEFAULT_ENDPOINT: &str = "https://lingma-api.tongyi.aliyun.com";

/// Who is logged in.
#[derive(Debug, Clone, Default)]
pub struct LoginState {
    pub user: Option<UserInfo>,
    /// Token expired (fault `expired`, or an expired `cache/user` at start): auth/status 3.
    pub expired: bool,
}

/// A login started by `login/generateUrl` / `auth/login`, waiting for its callback.
#[derive(Debug, Clone)]
pub struct PendingLogin {
    pub verifier: String,
    pub challenge: String,
}

#[derive(Default)]
pub struct Nonces {
    pub pending: HashMap<String, PendingLogin>,
    pub used: HashSet<String>,
}

pub struct RunningChat {
    pub session_id: String,
    pub stop: CancellationToken,
}

pub struct Shared {
    pub cfg: SimConfig,
    pub dir: WorkDir,
    pub http_port: u16,
    pub machine_id: String,
    pub log: LingmaLog,
    pub reqlog: Option<RequestLog>,
    pub login: Mutex<LoginState>,
    pub endpoint: Mutex<String>,
    pub sessions: Mutex<SessionStore>,
    pub nonces: Mutex<Nonces>,
    pub conns: Mutex<HashMap<u64, Arc<Conn>>>,
    pub chats: Mutex<HashMap<String, RunningChat>>,
    pub next_conn: AtomicU64,
    /// Graceful stop (signal): close connections with a close frame, flush, exit 0.
    pub shutdown: CancellationToken,
    /// Simulated crash of an embedded simulator: drop everything without a word.
    pub kill: CancellationToken,
    pub tasks: TaskTracker,
}

/// Errors of a login callback, with the text the error page and `login/auth_callback` show.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("unknown login state (nonce)")]
    UnknownNonce,
    #[error("this login link was already used")]
    ReusedNonce,
    #[error("invalid auth parameter")]
    BadAuth,
    #[error("invalid token parameter")]
    BadToken,
    #[error("cannot save the login: {0}")]
    Io(#[from] std::io::Error),
}

impl CallbackError {
    pub fn code(&self) -> &'static str {
        match self {
            CallbackError::UnknownNonce | CallbackError::ReusedNonce => "INVALID_NONCE",
            CallbackError::BadAuth | CallbackError::BadToken => "INVALID_PARAM",
            CallbackError::Io(_) => "SYSTEM_ERROR",
        }
    }
}

/// Decodes the `auth`/`token` query values: standard or URL-safe base64, padded or not.
pub fn decode_b64(s: &str) -> Option<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let s = s.trim();
    let bytes = [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())?;
    String::from_utf8(bytes).ok()
}

pub fn encode_b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Builds the user from a callback's `auth` (`UID\nAID\nName`) and `token`
/// (`pt-…\nrt-…\nexpireMillis`) values, both base64, as the real login service sends them.
pub fn user_from_callback(auth: &str, token: &str) -> Result<UserInfo, CallbackError> {
    let auth = decode_b64(auth).ok_or(CallbackError::BadAuth)?;
    let mut a = auth.split('\n').map(str::trim);
    let (Some(uid), Some(aid), Some(name)) = (a.next(), a.next(), a.next()) else {
        return Err(CallbackError::BadAuth);
    };
    if uid.is_empty() {
        return Err(CallbackError::BadAuth);
    }
    let token = decode_b64(token).ok_or(CallbackError::BadToken)?;
    let mut t = token.split('\n').map(str::trim);
    let (Some(pt), Some(rt)) = (t.next(), t.next()) else {
        return Err(CallbackError::BadToken);
    };
    if pt.is_empty() {
        return Err(CallbackError::BadToken);
    }
    let expire = match t.next() {
        Some(e) if !e.is_empty() => e.parse::<i64>().map_err(|_| CallbackError::BadToken)?,
        _ => unix_millis() + super::store::TOKEN_LIFETIME_MS,
    };
    let mut user = UserInfo::new(uid, aid, name);
    user.security_oauth_token = pt.to_string();
    user.refresh_token = rt.to_string();
    user.expire_time = expire;
    Ok(user)
}

/// The identity the test login page gives an account: stable per user name.
pub fn account_identity(username: &str) -> (String, String, String) {
    let digest = Sha256::digest(username.as_bytes());
    let mut n = [0u8; 8];
    n.copy_from_slice(&digest[..8]);
    let uid = (u64::from_be_bytes(n) % 900_000_000_000 + 100_000_000_000).to_string();
    let name = username.split('@').next().unwrap_or(username).to_string();
    (uid.clone(), uid, name)
}

impl Shared {
    /// The `auth/status` result, shaped like the real one.
    pub fn auth_status(&self) -> Value {
        let login = lock(&self.login).clone();
        match login.user {
            Some(u) => json!({
                "status": if login.expired { 3 } else { 2 },
                "name": u.name,
                "id": u.uid,
                "accountId": u.aid,
                "token": u.security_oauth_token,
                "refreshToken": u.refresh_token,
                "expireTime": u.expire_time,
                "userType": u.user_type,
                "whitelist": 3,
                "cloudType": "cloud",
                "privacyPolicyAgreed": true,
                "quota": 0,
                "orgId": u.organization_id,
                "orgName": "",
                "yxUid": "",
                "avatarUrl": "",
                "isSubAccount": false,
                "email": "",
                "userTag": "",
                "messageId": "",
                "isPrivacyPolicyModifiable": false,
            }),
            None => json!({
                "status": 1,
                "name": "",
                "id": "",
                "accountId": "",
                "token": "",
                "refreshToken": "",
                "expireTime": 0,
                "userType": "",
                "whitelist": 4,
                "cloudType": "cloud",
                "privacyPolicyAgreed": false,
                "quota": 0,
                "orgId": "",
                "orgName": "",
                "yxUid": "",
                "avatarUrl": "",
                "isSubAccount": false,
                "email": "",
                "userTag": "",
                "messageId": "",
                "isPrivacyPolicyModifiable": false,
            }),
        }
    }

    /// Logged in with a valid (not expired) token.
    pub fn logged_in(&self) -> bool {
        let l = lock(&self.login);
        l.user.is_some() && !l.expired
    }

    pub fn set_expired(&self) {
        let mut l = lock(&self.login);
        if l.user.is_some() && !l.expired {
            l.expired = true;
            drop(l);
            self.log.warn("token expired, login required");
        }
    }

    /// Writes `cache/user`, flips to logged in and tells every client with `auth/report`.
    pub fn set_user(self: &Arc<Self>, user: UserInfo, how: &str) -> std::io::Result<()> {
        self.dir.write_user(&user)?;
        self.log.info(&format!(
            "login success ({how}): user {} ({})",
            user.name, user.uid
        ));
        *lock(&self.login) = LoginState {
            user: Some(user),
            expired: false,
        };
        self.broadcast("auth/report", self.auth_status());
        Ok(())
    }

    pub fn logout(self: &Arc<Self>) -> std::io::Result<()> {
        self.dir.remove_user()?;
        *lock(&self.login) = LoginState::default();
        self.log.info("user logged out, cached user info removed");
        self.broadcast("auth/report", self.auth_status());
        Ok(())
    }

    /// Starts a login: a one-shot nonce, a PKCE pair and the URL of the simulator's login page.
    pub fn new_login(&self) -> (String, PendingLogin, String) {
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let verifier =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let challenge =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&verifier));
        let url = format!(
            "http://127.0.0.1:{port}/lingma/login?nonce={nonce}&port={port}&state={nonce}\
             &challenge={challenge}&challenge_method=S256&machine_id={mid}",
            port = self.http_port,
            mid = self.machine_id,
        );
        let pending = PendingLogin {
            verifier,
            challenge,
        };
        let mut n = lock(&self.nonces);
        // Bound what an abandoned-login loop can make us keep.
        if n.pending.len() >= 10_000 {
            n.pending.clear();
        }
        n.pending.insert(nonce.clone(), pending.clone());
        (nonce, pending, url)
    }

    pub fn nonce_known(&self, nonce: &str) -> Result<(), CallbackError> {
        let n = lock(&self.nonces);
        if n.pending.contains_key(nonce) {
            Ok(())
        } else if n.used.contains(nonce) {
            Err(CallbackError::ReusedNonce)
        } else {
            Err(CallbackError::UnknownNonce)
        }
    }

    /// Completes a login from a browser redirect or `login/auth_callback`. The nonce is consumed
    /// only once the payload is valid.
    pub fn complete_callback(
        self: &Arc<Self>,
        nonce: &str,
        auth: &str,
        token: &str,
    ) -> Result<(), CallbackError> {
        self.nonce_known(nonce)?;
        let user = user_from_callback(auth, token)?;
        {
            let mut n = lock(&self.nonces);
            if n.pending.remove(nonce).is_none() {
                // Another callback won the race for this nonce.
                return Err(CallbackError::ReusedNonce);
            }
            n.used.insert(nonce.to_string());
        }
        self.set_user(user, "auth callback")?;
        Ok(())
    }

    /// Sends a server request (not awaiting the ack) to every initialized connection.
    pub fn broadcast(self: &Arc<Self>, method: &'static str, params: Value) {
        let conns: Vec<Arc<Conn>> = lock(&self.conns)
            .values()
            .filter(|c| c.initialized.load(Ordering::Relaxed))
            .cloned()
            .collect();
        if conns.is_empty() {
            return;
        }
        // Off the caller's task: a client that does not read must not stall an HTTP handler.
        self.tasks.spawn(async move {
            for c in conns {
                let (body, _) = c.server_request(method, params.clone(), false);
                c.send(vec![body], c.wire).await;
            }
        });
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A simulated crash: the binary exits at once; an embedded simulator drops everything.
    pub fn crash(&self) {
        self.log.warn("simulated crash");
        match self.cfg.on_crash {
            CrashAction::ExitProcess => std::process::exit(CRASH_EXIT_CODE),
            CrashAction::StopServer => {
                self.kill.cancel();
                self.shutdown.cancel();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_payload_round_trip() {
        let auth = encode_b64("123\n456\nAlice");
        let token = encode_b64("pt-abc\nrt-def\n1700000000000");
        let u = user_from_callback(&auth, &token).unwrap();
        assert_eq!(
            (u.uid.as_str(), u.aid.as_str(), u.name.as_str()),
            ("123", "456", "Alice")
        );
        assert_eq!(u.security_oauth_token, "pt-abc");
        assert_eq!(u.refresh_token, "rt-def");
        assert_eq!(u.expire_time, 1_700_000_000_000);
        // URL-safe, unpadded input is accepted too.
        let url_safe = auth
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_");
        assert!(user_from_callback(&url_safe, &token).is_ok());
        assert!(matches!(
            user_from_callback("!!", &token),
            Err(CallbackError::BadAuth)
        ));
        assert!(matches!(
            user_from_callback(&auth, &encode_b64("only-one-line")),
            Err(CallbackError::BadToken)
        ));
    }

    #[test]
    fn identity_is_stable() {
        let a = account_identity("demo@example.com");
        assert_eq!(a, account_identity("demo@example.com"));
        assert_eq!(a.2, "demo");
        assert_eq!(a.0.len(), 12);
    }
}
