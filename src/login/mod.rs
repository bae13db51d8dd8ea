//! Logging a Lingma instance in: Lingma's login family (`login/generateUrl`, the browser's
//! `/auth/callback`, `auth/status`) and the files it then writes (docs/login.md).
//!
//! * [`interactive`]: `lingma-gw login` for a person: print (and open) the login URL, wait for
//!   `auth/status` to turn 2, or take the callback URL the browser was sent to and submit it.
//! * [`headless`]: drive the login page in the system Chromium over CDP with a user name and
//!   password (`login --headless`, the gateway's auto-login), or show it and wait (`--visible`).
//! * [`auto`]: the gateway's auto-login service (one attempt at a time per instance).
//!
//! This file owns what they share: the secret wrapper, callback URL parsing, the state check,
//! the endpoint switch for dedicated domains and waiting for the login to land.

pub mod auto;
pub mod headless;
pub mod interactive;

use std::time::{Duration, Instant};

use thiserror::Error;

use crate::lingma::client::LoginUrl;
use crate::lingma::{AuthStatus, LingmaClient, LingmaError};

/// A password or passphrase: never printed, not even by `{:?}`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The first line of a reader (stdin), without its line ending: how `--password-stdin` and
/// `--passphrase-stdin` read their secret.
pub fn secret_from_reader(r: &mut dyn std::io::BufRead) -> std::io::Result<Secret> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let trimmed = line.trim_end_matches(['\r', '\n']);
    Ok(Secret::new(trimmed))
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CallbackUrlError {
    #[error(
        "that is not a callback URL (expected http://127.0.0.1:PORT/auth/callback?state=...&auth=...&token=...)"
    )]
    NotAUrl,
    #[error("the callback URL has no {0} parameter")]
    Missing(&'static str),
}

/// The values of a browser's `/auth/callback` redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackParams {
    pub state: String,
    pub auth: String,
    pub token: String,
}

impl CallbackParams {
    /// Parses a pasted callback URL (or just its query string).
    pub fn parse(input: &str) -> Result<Self, CallbackUrlError> {
        let input = input.trim().trim_matches(['"', '\'', '<', '>']);
        let query = match url::Url::parse(input) {
            Ok(u) => u
                .query()
                .map(str::to_string)
                .ok_or(CallbackUrlError::NotAUrl)?,
            Err(_) if input.contains("state=") => input
                .split_once('?')
                .map(|(_, q)| q)
                .unwrap_or(input)
                .to_string(),
            Err(_) => return Err(CallbackUrlError::NotAUrl),
        };
        let mut state = None;
        let mut auth = None;
        let mut token = None;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "state" => state = Some(v.into_owned()),
                "auth" => auth = Some(v.into_owned()),
                "token" => token = Some(v.into_owned()),
                _ => {}
            }
        }
        let need = |v: Option<String>, name| {
            v.filter(|s| !s.is_empty())
                .ok_or(CallbackUrlError::Missing(name))
        };
        Ok(Self {
            state: need(state, "state")?,
            auth: need(auth, "auth")?,
            token: need(token, "token")?,
        })
    }

    /// The nonce to submit with `login/auth_callback`: the state without the international
    /// flow's `2-` prefix.
    pub fn nonce(&self) -> &str {
        self.state.strip_prefix("2-").unwrap_or(&self.state)
    }
}

/// The state a login's callback must carry: the nonce, else the URL's `state` parameter.
pub fn expected_state(login: &LoginUrl) -> Option<String> {
    login.nonce.clone().filter(|n| !n.is_empty()).or_else(|| {
        url::Url::parse(&login.url).ok().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "state")
                .map(|(_, v)| v.into_owned())
        })
    })
}

/// Whether a callback's `state` belongs to the login that expects `expected`.
pub fn state_matches(state: &str, expected: &str) -> bool {
    !expected.is_empty() && (state == expected || state.strip_prefix("2-") == Some(expected))
}

/// `DEDICATED_DOMAIN_URL`: switches the instance's endpoint before a login (config/updateEndpoint)
/// when it is not that already. Returns whether it changed.
pub async fn apply_dedicated_domain(client: &LingmaClient, url: &str) -> Result<bool, LingmaError> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(false);
    }
    let current = client.get_endpoint().await.unwrap_or_default();
    if current.trim_end_matches('/') == url.trim_end_matches('/') {
        return Ok(false);
    }
    client.update_endpoint(url).await?;
    tracing::info!(
        endpoint = url,
        "switched the Lingma endpoint (DEDICATED_DOMAIN_URL)"
    );
    Ok(true)
}

/// Waits until `auth/status` says logged in, waking at once on an `auth/report` push and polling
/// every `poll` otherwise. `None` after `timeout`.
pub async fn wait_logged_in(
    client: &LingmaClient,
    timeout: Duration,
    poll: Duration,
) -> Result<Option<AuthStatus>, LingmaError> {
    let deadline = Instant::now() + timeout;
    let mut pushes = Some(client.subscribe());
    loop {
        let status = client.auth_status().await?;
        if status.logged_in() {
            return Ok(Some(status));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        tokio::select! {
            _ = tokio::time::sleep(poll.min(left)) => {}
            msg = async {
                match pushes.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                if msg.is_none() {
                    // The connection closed; the next auth/status call reports it.
                    pushes = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls() {
        let p = CallbackParams::parse(
            " http://127.0.0.1:37510/auth/callback?state=2-abc&auth=QQ%3D%3D&token=dA== \n",
        )
        .unwrap();
        assert_eq!(p.state, "2-abc");
        assert_eq!(p.nonce(), "abc");
        assert_eq!(p.auth, "QQ==");
        assert_eq!(p.token, "dA==");
        assert_eq!(
            CallbackParams::parse("state=s&auth=a&token=t")
                .unwrap()
                .state,
            "s"
        );
        assert_eq!(
            CallbackParams::parse("http://127.0.0.1:1/auth/callback?state=s&auth=a"),
            Err(CallbackUrlError::Missing("token"))
        );
        assert_eq!(
            CallbackParams::parse("hello"),
            Err(CallbackUrlError::NotAUrl)
        );
    }

    #[test]
    fn states() {
        assert!(state_matches("abc", "abc"));
        assert!(state_matches("2-abc", "abc"));
        assert!(!state_matches("abd", "abc"));
        assert!(!state_matches("", ""));
        let login = LoginUrl {
            url: "http://127.0.0.1:1/lingma/login?nonce=n1&state=s1".into(),
            nonce: None,
        };
        assert_eq!(expected_state(&login).as_deref(), Some("s1"));
    }

    #[test]
    fn secrets_are_redacted_and_read_from_one_line() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        let mut input: &[u8] = b"pass word\r\nnext\n";
        assert_eq!(
            secret_from_reader(&mut input).unwrap().expose(),
            "pass word"
        );
    }
}
