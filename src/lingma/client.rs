//! The typed Lingma client: one initialized JSON-RPC connection and the control calls the
//! product makes (`initialize`, `auth/status`, `config/queryModels`, the login family, the
//! endpoint). `chat` starts a [`ChatStream`] (chat_stream.rs) for one question, in the dialect the
//! connection speaks: the client owns that choice (forced by the options, or detected with one
//! `session/new`, see dialect.rs) and remembers it for the connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use thiserror::Error;
use tokio::sync::mpsc;

use super::acp::{self, AcpStream};
use super::chat_stream::{ChatError, ChatRequest, ChatStream, LegacyStream};
use super::dialect::{Dialect, DialectChoice, is_method_not_found};
use super::models::ModelRegistry;
use super::rpc::{Delivery, RpcConnection, RpcError, ServerMessage};
use super::transport::Endpoint;

#[derive(Debug, Error, Clone)]
pub enum LingmaError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("Lingma answered {method} with an unexpected result: {detail}")]
    Unexpected { method: String, detail: String },
    #[error("{method} failed: {code} {message}")]
    Failed {
        method: String,
        code: String,
        message: String,
    },
}

/// Timeouts and behaviour switches of a client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// Control calls (initialize, auth/status, ...): `LINGMA_RPC_TIMEOUT`.
    pub rpc_timeout: Duration,
    /// From the ask to the first delta.
    pub first_token_timeout: Duration,
    /// Between two messages of a running answer.
    pub stall_timeout: Duration,
    /// After `step_end` with no `chat/finish`, the turn ends after this much silence (real 2.x
    /// was seen never sending the finish).
    pub idle_finish: Duration,
    /// Work around answers that arrive one question late (seen on Lingma 2.11): after the real
    /// ask ends, send a throw-away trigger ask and take its answer. Off by default.
    pub off_by_one_workaround: bool,
    pub machine_token: Option<String>,
    /// The dialect to speak (`--lingma-dialect`); `Auto` detects it.
    pub dialect: DialectChoice,
    /// How long one answer's unread events may hold up the others that share its connection
    /// (ACP prompts) before it is cut off.
    pub lag_limit: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            rpc_timeout: Duration::from_secs(30),
            first_token_timeout: Duration::from_secs(120),
            stall_timeout: Duration::from_secs(120),
            idle_finish: Duration::from_secs(3),
            off_by_one_workaround: false,
            machine_token: None,
            dialect: DialectChoice::Auto,
            lag_limit: Duration::from_secs(10),
        }
    }
}

/// `auth/status`. Only the fields the product uses are typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AuthStatus {
    pub status: i64,
    pub name: String,
    pub id: String,
    pub account_id: String,
    pub user_type: String,
    pub expire_time: i64,
    pub whitelist: i64,
    #[serde(skip_serializing)]
    pub token: String,
}

impl AuthStatus {
    pub const LOGGED_IN: i64 = 2;

    pub fn logged_in(&self) -> bool {
        self.status == Self::LOGGED_IN
    }

    pub fn status_name(&self) -> &'static str {
        match self.status {
            1 => "not_logged_in",
            2 => "logged_in",
            3 => "login_expired",
            4 => "error",
            5 => "network_error",
            6 => "ip_banned",
            7 => "app_disabled",
            _ => "unknown",
        }
    }
}

/// `login/generateUrl` / `auth/login`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginUrl {
    pub url: String,
    pub nonce: Option<String>,
}

/// An initialized connection to one Lingma process.
#[derive(Clone)]
pub struct LingmaClient {
    rpc: RpcConnection,
    opts: ClientOptions,
    server_version: String,
    workspace: PathBuf,
    /// Set once: forced by the options, or found by the first `session/new`.
    dialect: Arc<OnceLock<Dialect>>,
}

impl LingmaClient {
    /// Connects to the WebSocket at `url` (`ws://127.0.0.1:<port>/`); see [`LingmaClient::open`].
    pub async fn connect(
        url: &str,
        workspace: &Path,
        opts: ClientOptions,
    ) -> Result<Self, LingmaError> {
        Self::open(&Endpoint::WebSocket(url.to_string()), workspace, opts).await
    }

    /// Connects to `endpoint` and sends `initialize` with `workspace` as the project.
    pub async fn open(
        endpoint: &Endpoint,
        workspace: &Path,
        opts: ClientOptions,
    ) -> Result<Self, LingmaError> {
        let rpc = RpcConnection::connect(
            endpoint,
            opts.machine_token.as_deref(),
            opts.connect_timeout,
        )
        .await?;
        let uri = file_uri(workspace);
        let name = workspace
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "workspace".into());
        // Nothing negotiates the dialect here, and both runtimes accept either shape of the
        // params, so one `initialize` carries the fields of both: the plugin's (rootUri,
        // workspaceFolders) and ACP's (protocolVersion, clientCapabilities, timestamp).
        let result = rpc
            .call(
                "initialize",
                json!({
                    "processId": std::process::id(),
                    "clientInfo": {"name": "lingma-gw", "version": env!("CARGO_PKG_VERSION")},
                    "rootUri": uri,
                    "capabilities": {},
                    "workspaceFolders": [{"uri": uri, "name": name}],
                    "protocolVersion": 1,
                    "clientCapabilities": {},
                    "timestamp": crate::util::unix_millis(),
                }),
                opts.rpc_timeout,
            )
            .await?;
        let server_version = result
            .pointer("/serverInfo/version")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let dialect = Arc::new(OnceLock::new());
        if let Some(d) = opts.dialect.fixed() {
            let _ = dialect.set(d);
        }
        Ok(Self {
            rpc,
            opts,
            server_version,
            workspace: workspace.to_path_buf(),
            dialect,
        })
    }

    /// The dialect of this connection, once known (forced, or detected by
    /// [`LingmaClient::detect_dialect`] or the first chat).
    pub fn dialect(&self) -> Option<Dialect> {
        self.dialect.get().copied()
    }

    /// The dialect of this connection, asking the runtime when it is not known yet: one
    /// `session/new` (whose session is deleted again), legacy when the method does not exist.
    pub async fn detect_dialect(&self) -> Result<Dialect, LingmaError> {
        if let Some(d) = self.dialect() {
            return Ok(d);
        }
        match acp::new_session(&self.rpc, &self.workspace, self.opts.rpc_timeout).await {
            Ok(session) => {
                // A throwaway session would show in the IDE's history: delete it.
                if let Err(e) =
                    acp::delete_session(&self.rpc, &session, self.opts.rpc_timeout).await
                {
                    tracing::debug!(error = %e, "could not delete the dialect probe's session");
                }
                Ok(self.learn(Dialect::Acp))
            }
            Err(e) if is_method_not_found(&e) => Ok(self.learn(Dialect::Legacy)),
            Err(e) => Err(e.into()),
        }
    }

    fn learn(&self, d: Dialect) -> Dialect {
        *self.dialect.get_or_init(|| {
            tracing::debug!(dialect = %d, "Lingma dialect detected");
            d
        })
    }

    /// The same connection with other timeouts.
    pub fn with_options(mut self, opts: ClientOptions) -> Self {
        self.opts = opts;
        self
    }

    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// The runtime's process, when the transport tells (a Unix socket's peer).
    pub fn peer_pid(&self) -> Option<u32> {
        self.rpc.peer_pid()
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    pub fn is_closed(&self) -> bool {
        self.rpc.is_closed()
    }

    pub async fn close(&self) {
        self.rpc.close().await;
    }

    /// Server messages outside a chat (for example `auth/report` after a login). Messages that
    /// do not fit the channel are dropped: the caller also makes calls on this connection.
    pub fn subscribe(&self) -> mpsc::Receiver<ServerMessage> {
        self.rpc.subscribe(Delivery::Lossy)
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value, LingmaError> {
        Ok(self.rpc.call(method, params, self.opts.rpc_timeout).await?)
    }

    pub async fn ping(&self) -> Result<(), LingmaError> {
        self.call("ping", json!({})).await.map(|_| ())
    }

    pub async fn auth_status(&self) -> Result<AuthStatus, LingmaError> {
        let v = self.call("auth/status", json!({})).await?;
        serde_json::from_value(v).map_err(|e| unexpected("auth/status", e))
    }

    pub async fn query_models(&self) -> Result<ModelRegistry, LingmaError> {
        let v = self.call("config/queryModels", json!({})).await?;
        Ok(ModelRegistry::from_query_result(&v))
    }

    /// The raw `config/queryModels` result, for diagnosis.
    pub async fn query_models_raw(&self) -> Result<Value, LingmaError> {
        self.call("config/queryModels", json!({})).await
    }

    /// A login URL: `login/generateUrl`, falling back to `auth/login` when that fails.
    pub async fn login_url(&self) -> Result<LoginUrl, LingmaError> {
        match self
            .call("login/generateUrl", json!({"loginDedicatedType": ""}))
            .await
        {
            Ok(v) if success(&v) && str_field(&v, "loginUrl").is_some() => {
                return Ok(LoginUrl {
                    url: str_field(&v, "loginUrl").unwrap_or_default(),
                    nonce: str_field(&v, "nonce"),
                });
            }
            Ok(v) => {
                tracing::debug!(result = %v, "login/generateUrl gave no URL; trying auth/login")
            }
            Err(e) => tracing::debug!(error = %e, "login/generateUrl failed; trying auth/login"),
        }
        let v = self.call("auth/login", json!({"loginType": ""})).await?;
        match str_field(&v, "url") {
            Some(url) if success(&v) => {
                let nonce = url::Url::parse(&url).ok().and_then(|u| {
                    u.query_pairs()
                        .find(|(k, _)| k == "nonce")
                        .map(|(_, v)| v.into_owned())
                });
                Ok(LoginUrl { url, nonce })
            }
            _ => Err(unexpected("auth/login", v)),
        }
    }

    /// Submits the values of a browser's `/auth/callback` redirect (`state`, `auth`, `token`).
    pub async fn auth_callback(
        &self,
        nonce: &str,
        auth: &str,
        token: &str,
    ) -> Result<(), LingmaError> {
        let v = self
            .call(
                "login/auth_callback",
                json!({"nonce": nonce, "auth": auth, "tokenString": token}),
            )
            .await?;
        check_success("login/auth_callback", &v)
    }

    pub async fn device_login(
        &self,
        token: &str,
        refresh_token: &str,
        expire_time_ms: i64,
        user_id: &str,
        username: &str,
    ) -> Result<(), LingmaError> {
        let v = self
            .call(
                "auth/device_login",
                json!({
                    "token": token, "refreshToken": refresh_token, "expiresIn": "",
                    "expireTime": expire_time_ms.to_string(), "userId": user_id, "username": username,
                }),
            )
            .await?;
        // No capture of the real result's shape exists: only an explicit failure counts.
        if v.get("success").and_then(Value::as_bool) == Some(false) {
            return check_success("auth/device_login", &v);
        }
        Ok(())
    }

    pub async fn logout(&self) -> Result<(), LingmaError> {
        self.call("auth/logout", json!({})).await.map(|_| ())
    }

    pub async fn get_endpoint(&self) -> Result<String, LingmaError> {
        let v = self.call("config/getEndpoint", json!({})).await?;
        Ok(str_field(&v, "endpoint").unwrap_or_default())
    }

    pub async fn update_endpoint(&self, endpoint: &str) -> Result<(), LingmaError> {
        let v = self
            .call("config/updateEndpoint", json!({"endpoint": endpoint}))
            .await?;
        check_success("config/updateEndpoint", &v)
    }

    /// Asks a question (`chat/ask`, or `session/prompt` in a new or the given session) and
    /// returns the stream of its answer. On a connection whose dialect is not known yet, the new
    /// session a fresh ACP conversation needs is the detection itself.
    pub async fn chat(&self, req: ChatRequest) -> Result<ChatStream, ChatError> {
        let dialect = match self.dialect() {
            Some(d) => d,
            None if req.session_id.is_none() => {
                match acp::new_session(&self.rpc, &self.workspace, self.opts.rpc_timeout).await {
                    Ok(session) => {
                        self.learn(Dialect::Acp);
                        let s = AcpStream::start(&self.rpc, &self.opts, req, session).await?;
                        return Ok(ChatStream::acp(s));
                    }
                    Err(e) if is_method_not_found(&e) => self.learn(Dialect::Legacy),
                    Err(e) => return Err(e.into()),
                }
            }
            None => self.detect_dialect().await.map_err(|e| match e {
                LingmaError::Rpc(e) => ChatError::Rpc(e),
                other => ChatError::Rejected {
                    code: String::new(),
                    message: other.to_string(),
                },
            })?,
        };
        match dialect {
            Dialect::Legacy => Ok(ChatStream::legacy(
                LegacyStream::start(&self.rpc, &self.opts, req).await?,
            )),
            Dialect::Acp => {
                let session = match req.session_id.clone().filter(|s| !s.is_empty()) {
                    Some(s) => s,
                    None => acp::new_session(&self.rpc, &self.workspace, self.opts.rpc_timeout)
                        .await
                        .map_err(|e| acp_refused("session/new", e))?,
                };
                let s = AcpStream::start(&self.rpc, &self.opts, req, session).await?;
                Ok(ChatStream::acp(s))
            }
        }
    }
}

/// A session call refused by a runtime that was told (not found) to speak ACP: say so plainly.
fn acp_refused(method: &str, e: RpcError) -> ChatError {
    if is_method_not_found(&e) {
        return ChatError::Rejected {
            code: "METHOD_NOT_FOUND".into(),
            message: format!(
                "this Lingma does not speak the ACP dialect ({method} does not exist); \
                 use --lingma-dialect legacy or auto"
            ),
        };
    }
    e.into()
}

/// Whether a Lingma result says it succeeded (both spellings occur).
pub(super) fn success(v: &Value) -> bool {
    v.get("success")
        .or_else(|| v.get("isSuccess"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

pub(super) fn str_field(v: &Value, name: &str) -> Option<String> {
    v.get(name).and_then(Value::as_str).map(str::to_string)
}

fn check_success(method: &str, v: &Value) -> Result<(), LingmaError> {
    if success(v) {
        return Ok(());
    }
    Err(LingmaError::Failed {
        method: method.to_string(),
        code: str_field(v, "errorCode").unwrap_or_default(),
        message: str_field(v, "errorMsg")
            .or_else(|| str_field(v, "errorMessage"))
            .unwrap_or_else(|| v.to_string()),
    })
}

fn unexpected(method: &str, detail: impl std::fmt::Display) -> LingmaError {
    LingmaError::Unexpected {
        method: method.to_string(),
        detail: detail.to_string(),
    }
}

/// `file:///abs/path` for a workspace directory.
pub fn file_uri(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match url::Url::from_directory_path(&abs) {
        Ok(u) => u.to_string().trim_end_matches('/').to_string(),
        Err(()) => format!("file://{}", abs.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_accepts_both_spellings() {
        assert!(success(&json!({"success": true})));
        assert!(success(&json!({"isSuccess": true, "requestId": "x"})));
        assert!(!success(&json!({"success": false})));
        assert!(!success(&json!({})));
    }

    #[test]
    fn file_uri_is_absolute() {
        assert_eq!(file_uri(Path::new("/tmp/a b")), "file:///tmp/a%20b");
    }

    #[test]
    fn auth_status_parses_live_shape() {
        let s: AuthStatus = serde_json::from_value(json!({
            "status": 2, "name": "n", "id": "1", "token": "pt-x", "whitelist": 3,
            "userType": "personal_standard", "extra": 1
        }))
        .unwrap();
        assert!(s.logged_in());
        assert_eq!(s.user_type, "personal_standard");
    }
}
