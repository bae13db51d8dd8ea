//! Who may call the gateway: client API keys, the admin token and the metrics token.
//!
//! Credentials are read from `Authorization: Bearer K`, or else `x-api-key: K`, or else
//! `api-key: K` (Anthropic- and Azure-style clients). They are compared in constant time on their
//! SHA-256 digests, so neither the content nor the length of a configured secret leaks through
//! timing, and every configured key is compared (no early exit).
//!
//! Policy:
//! * **clients** (`/v1/*`): no API keys configured means open (identity `anonymous`); otherwise a
//!   configured key is required.
//! * **admin**: the admin token if one is set (a valid *client* key then gets 403); with no admin
//!   token, any client key is accepted ([`AuthConfig::admin_falls_back_to_api_keys`], which the
//!   caller should warn about); with neither, admin endpoints are open, for local development
//!   ([`AuthConfig::admin_is_open`]; the caller logs a loud warning).
//! * **metrics**: open when `metrics_public`; otherwise the metrics token or any client key; with
//!   neither configured, `/metrics` answers 503 [`GatewayError::MetricsDisabled`] rather than
//!   exposing data nobody decided to expose.
//!
//! Blank configured secrets are ignored (an empty `API_KEYS=` must not turn into a key that an
//! empty header would match). Error messages never contain a presented credential.

use std::fmt;

use axum::http::{HeaderMap, HeaderName, header};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::error::GatewayError;

/// Headers read for a credential, in order of precedence.
const KEY_HEADERS: [&str; 2] = ["x-api-key", "api-key"];

#[derive(Clone, Default)]
pub struct AuthConfig {
    pub api_keys: Vec<String>,
    pub admin_token: Option<String>,
    pub metrics_token: Option<String>,
    pub metrics_public: bool,
}

/// Secrets are never printed.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "api_keys",
                &format_args!("[{} redacted]", self.keys().count()),
            )
            .field(
                "admin_token",
                &configured(self.admin_token.as_deref()).map(|_| "<redacted>"),
            )
            .field(
                "metrics_token",
                &configured(self.metrics_token.as_deref()).map(|_| "<redacted>"),
            )
            .field("metrics_public", &self.metrics_public)
            .finish()
    }
}

/// A short, stable, non-secret name for a caller: the first 12 hex digits of SHA-256 of the
/// credential, or `anonymous`. Used to scope session reuse and in logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientIdentity(String);

impl ClientIdentity {
    pub const ANONYMOUS: &'static str = "anonymous";

    pub fn anonymous() -> Self {
        Self(Self::ANONYMOUS.to_owned())
    }

    pub fn from_secret(secret: &str) -> Self {
        let digest = Sha256::digest(secret.as_bytes());
        Self(hex::encode(&digest[..6]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_anonymous(&self) -> bool {
        self.0 == Self::ANONYMOUS
    }
}

impl fmt::Display for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn configured(secret: Option<&str>) -> Option<&str> {
    secret.map(str::trim).filter(|s| !s.is_empty())
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Constant-time: compares `presented` with every candidate, whatever the outcome.
fn matches_any<'a>(presented: &[u8; 32], candidates: impl Iterator<Item = &'a str>) -> bool {
    let mut found = Choice::from(0);
    for candidate in candidates {
        found |= digest(candidate).ct_eq(presented);
    }
    found.into()
}

impl AuthConfig {
    /// Configured client keys, trimmed, blanks skipped.
    fn keys(&self) -> impl Iterator<Item = &str> {
        self.api_keys
            .iter()
            .map(|k| k.trim())
            .filter(|k| !k.is_empty())
    }

    /// Whether `/v1/*` requires a key.
    pub fn client_auth_enabled(&self) -> bool {
        self.keys().next().is_some()
    }

    /// No admin token but client keys: every client key is an admin credential. Worth a warning.
    pub fn admin_falls_back_to_api_keys(&self) -> bool {
        configured(self.admin_token.as_deref()).is_none() && self.client_auth_enabled()
    }

    /// No admin token and no client keys: admin endpoints are open. Worth a loud warning.
    pub fn admin_is_open(&self) -> bool {
        configured(self.admin_token.as_deref()).is_none() && !self.client_auth_enabled()
    }

    /// Whether `/metrics` is served at all (public, or some credential can unlock it).
    pub fn metrics_enabled(&self) -> bool {
        self.metrics_public
            || configured(self.metrics_token.as_deref()).is_some()
            || self.client_auth_enabled()
    }
}

/// The credential the request presents, if any. A header that is present but malformed is an
/// error (a client that sends one meant to authenticate, and should learn why it failed).
pub fn presented_credential(headers: &HeaderMap) -> Result<Option<&str>, GatewayError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| {
            GatewayError::Unauthorized(
                "The Authorization header contains invalid characters. Use `Authorization: Bearer YOUR_API_KEY`."
                    .into(),
            )
        })?;
        let value = value.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(GatewayError::Unauthorized(
                "Unsupported Authorization scheme. Use `Authorization: Bearer YOUR_API_KEY`."
                    .into(),
            ));
        }
        let key = rest.trim();
        if key.is_empty() {
            return Err(GatewayError::Unauthorized(
                "The Authorization header has no API key after `Bearer`.".into(),
            ));
        }
        return Ok(Some(key));
    }
    for name in KEY_HEADERS {
        if let Some(value) = headers.get(HeaderName::from_static(name)) {
            let key = value
                .to_str()
                .map_err(|_| {
                    GatewayError::Unauthorized(format!(
                        "The {name} header contains invalid characters."
                    ))
                })?
                .trim();
            if key.is_empty() {
                return Err(GatewayError::Unauthorized(format!(
                    "The {name} header is empty."
                )));
            }
            return Ok(Some(key));
        }
    }
    Ok(None)
}

fn missing_key() -> GatewayError {
    GatewayError::Unauthorized(
        "You didn't provide an API key. Send it as `Authorization: Bearer YOUR_API_KEY`.".into(),
    )
}

fn incorrect_key() -> GatewayError {
    GatewayError::Unauthorized("Incorrect API key provided.".into())
}

/// Authenticates a `/v1/*` request.
pub fn check_client(
    config: &AuthConfig,
    headers: &HeaderMap,
) -> Result<ClientIdentity, GatewayError> {
    if !config.client_auth_enabled() {
        return Ok(ClientIdentity::anonymous());
    }
    let key = presented_credential(headers)?.ok_or_else(missing_key)?;
    if matches_any(&digest(key), config.keys()) {
        Ok(ClientIdentity::from_secret(key))
    } else {
        Err(incorrect_key())
    }
}

/// Authenticates an admin request (see the module docs for the policy).
pub fn check_admin(
    config: &AuthConfig,
    headers: &HeaderMap,
) -> Result<ClientIdentity, GatewayError> {
    let Some(admin) = configured(config.admin_token.as_deref()) else {
        // No admin token: client keys are admin keys; with none, admin is open (local dev).
        return check_client(config, headers);
    };
    let key = presented_credential(headers)?.ok_or_else(missing_key)?;
    let presented = digest(key);
    if matches_any(&presented, std::iter::once(admin)) {
        return Ok(ClientIdentity::from_secret(key));
    }
    if matches_any(&presented, config.keys()) {
        return Err(GatewayError::Forbidden(
            "This API key is not allowed to use admin endpoints; use the admin token.".into(),
        ));
    }
    Err(incorrect_key())
}

/// Authorizes a `/metrics` scrape (see the module docs for the policy).
pub fn check_metrics(config: &AuthConfig, headers: &HeaderMap) -> Result<(), GatewayError> {
    if config.metrics_public {
        return Ok(());
    }
    if !config.metrics_enabled() {
        return Err(GatewayError::MetricsDisabled);
    }
    let key = presented_credential(headers)?.ok_or_else(missing_key)?;
    let allowed = configured(config.metrics_token.as_deref())
        .into_iter()
        .chain(config.keys());
    if matches_any(&digest(key), allowed) {
        Ok(())
    } else {
        Err(incorrect_key())
    }
}

/// Whether the caller presented an admin or metrics credential (or admin is open): such callers
/// see details (instances, accounts) that anonymous health checks do not.
pub fn may_see_details(config: &AuthConfig, headers: &HeaderMap) -> bool {
    if config.admin_is_open() {
        return true;
    }
    let Ok(Some(key)) = presented_credential(headers) else {
        return false;
    };
    let presented = digest(key);
    let privileged = configured(config.admin_token.as_deref())
        .into_iter()
        .chain(configured(config.metrics_token.as_deref()));
    // Without an admin token, client keys are admin credentials (see `check_admin`).
    let client_keys_are_admin = configured(config.admin_token.as_deref()).is_none();
    matches_any(&presented, privileged)
        || (client_keys_are_admin && matches_any(&presented, config.keys()))
}

/// Route-group middleware: the caller's credential is checked from the headers, before any byte
/// of the body is read; the identity goes into the request's extensions (see `extract::Caller`).
pub mod layer {
    use axum::extract::{Request, State};
    use axum::middleware::Next;
    use axum::response::{IntoResponse, Response};

    use super::super::router::REQUEST_ID;
    use super::super::state::AppState;
    use crate::error::ErrorShape;

    /// `/v1/*`: a client key (or none when no keys are configured); a refusal in the shape of
    /// the route's API surface `S`.
    pub async fn client<S: ErrorShape>(
        State(st): State<AppState>,
        mut req: Request,
        next: Next,
    ) -> Response {
        match super::check_client(&st.auth, req.headers()) {
            Ok(id) => {
                req.extensions_mut().insert(id);
                next.run(req).await
            }
            Err(e) => {
                let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok());
                S::render(e, id)
            }
        }
    }

    /// `/internal/*`: the admin token (see the module docs for the fallbacks).
    pub async fn admin(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
        match super::check_admin(&st.auth, req.headers()) {
            Ok(id) => {
                req.extensions_mut().insert(id);
                next.run(req).await
            }
            Err(e) => e.into_response(),
        }
    }

    /// `/metrics`.
    pub async fn metrics(State(st): State<AppState>, req: Request, next: Next) -> Response {
        match super::check_metrics(&st.auth, req.headers()) {
            Ok(()) => next.run(req).await,
            Err(e) => e.into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};

    const KEY: &str = "sk-client-1";
    const KEY2: &str = "sk-client-2";
    const ADMIN: &str = "admin-secret";
    const METRICS: &str = "metrics-secret";

    fn cfg(keys: &[&str], admin: Option<&str>, metrics: Option<&str>, public: bool) -> AuthConfig {
        AuthConfig {
            api_keys: keys.iter().map(|k| k.to_string()).collect(),
            admin_token: admin.map(str::to_owned),
            metrics_token: metrics.map(str::to_owned),
            metrics_public: public,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn bearer(k: &str) -> HeaderMap {
        headers(&[("authorization", &format!("Bearer {k}"))])
    }

    #[track_caller]
    fn status(r: Result<impl fmt::Debug, GatewayError>) -> StatusCode {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.status_code(),
        }
    }

    #[test]
    fn details_need_an_admin_or_metrics_credential() {
        let c = cfg(&[KEY], Some(ADMIN), Some(METRICS), true);
        assert!(may_see_details(&c, &bearer(ADMIN)));
        assert!(may_see_details(&c, &bearer(METRICS)));
        assert!(
            !may_see_details(&c, &bearer(KEY)),
            "a client key is not admin here"
        );
        assert!(!may_see_details(&c, &bearer("wrong")));
        assert!(
            !may_see_details(&c, &HeaderMap::new()),
            "metrics_public is not enough"
        );
        // No admin token: client keys are admin credentials.
        let c = cfg(&[KEY], None, None, false);
        assert!(may_see_details(&c, &bearer(KEY)));
        assert!(!may_see_details(&c, &HeaderMap::new()));
        // Nothing configured: admin is open, and so are the details.
        assert!(may_see_details(
            &cfg(&[], None, None, false),
            &HeaderMap::new()
        ));
    }

    #[test]
    fn open_when_no_keys() {
        let c = AuthConfig::default();
        let id = check_client(&c, &HeaderMap::new()).unwrap();
        assert!(id.is_anonymous());
        assert_eq!(id.as_str(), "anonymous");
        // Any header, even a malformed one, is ignored when auth is off.
        assert!(check_client(&c, &headers(&[("authorization", "Basic xyz")])).is_ok());
        // Blank keys do not enable auth.
        let c = cfg(&["", "  "], None, None, false);
        assert!(!c.client_auth_enabled());
        assert!(check_client(&c, &HeaderMap::new()).unwrap().is_anonymous());
    }

    #[test]
    fn bearer_and_alternative_headers() {
        let c = cfg(&[KEY, KEY2], None, None, false);
        let expected = ClientIdentity::from_secret(KEY);
        for h in [
            bearer(KEY),
            headers(&[("authorization", &format!("bearer   {KEY}  "))]),
            headers(&[("x-api-key", KEY)]),
            headers(&[("api-key", KEY)]),
        ] {
            assert_eq!(check_client(&c, &h).unwrap(), expected, "{h:?}");
        }
        assert_eq!(
            check_client(&c, &bearer(KEY2)).unwrap(),
            ClientIdentity::from_secret(KEY2)
        );
        // Authorization takes precedence over x-api-key.
        let h = headers(&[("authorization", "Bearer wrong"), ("x-api-key", KEY)]);
        assert_eq!(status(check_client(&c, &h)), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn configured_keys_are_trimmed() {
        let c = cfg(&[" sk-a "], None, None, false);
        assert!(check_client(&c, &bearer("sk-a")).is_ok());
    }

    #[test]
    fn identity_is_short_stable_and_not_the_key() {
        let id = ClientIdentity::from_secret(KEY);
        assert_eq!(id.as_str().len(), 12);
        assert!(id.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(id, ClientIdentity::from_secret(KEY));
        assert_ne!(id, ClientIdentity::from_secret(KEY2));
        assert!(!id.as_str().contains("sk-"));
        assert_eq!(
            ClientIdentity::from_secret("abc").as_str(),
            "ba7816bf8f01",
            "sha256(\"abc\") prefix"
        );
        assert_eq!(id.to_string(), id.as_str());
    }

    #[test]
    fn missing_wrong_and_malformed_credentials_are_401_without_echo() {
        let c = cfg(&[KEY], None, None, false);
        let secret_looking = "sk-THIS-MUST-NOT-BE-ECHOED";
        let cases = [
            (HeaderMap::new(), "didn't provide an API key"),
            (bearer(secret_looking), "Incorrect API key"),
            (headers(&[("authorization", "Bearer")]), "no API key after"),
            (
                headers(&[("authorization", "Bearer    ")]),
                "no API key after",
            ),
            (
                headers(&[("authorization", &format!("Basic {secret_looking}"))]),
                "Unsupported Authorization scheme",
            ),
            (
                headers(&[("authorization", secret_looking)]),
                "Unsupported Authorization scheme",
            ),
            (headers(&[("x-api-key", "")]), "x-api-key header is empty"),
            (headers(&[("api-key", " ")]), "api-key header is empty"),
        ];
        for (h, needle) in cases {
            let err = check_client(&c, &h).unwrap_err();
            assert_eq!(err.status_code(), StatusCode::UNAUTHORIZED);
            let msg = err.to_string();
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
            assert!(!msg.contains(secret_looking), "{msg}");
            assert!(!err.to_body().to_string().contains(secret_looking));
        }
    }

    #[test]
    fn non_ascii_header_is_401() {
        let c = cfg(&[KEY], None, None, false);
        for name in ["authorization", "x-api-key"] {
            let mut h = HeaderMap::new();
            h.insert(
                HeaderName::from_static(name),
                HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
            );
            let err = check_client(&c, &h).unwrap_err();
            assert_eq!(err.status_code(), StatusCode::UNAUTHORIZED);
            assert!(err.to_string().contains("invalid characters"), "{err}");
        }
    }

    #[test]
    fn key_prefix_or_extension_does_not_match() {
        let c = cfg(&[KEY], None, None, false);
        for k in ["sk-client-", "sk-client-10", "SK-CLIENT-1"] {
            assert_eq!(
                status(check_client(&c, &bearer(k))),
                StatusCode::UNAUTHORIZED
            );
        }
    }

    #[test]
    fn admin_with_admin_token() {
        let c = cfg(&[KEY], Some(ADMIN), None, false);
        assert!(!c.admin_falls_back_to_api_keys());
        assert!(!c.admin_is_open());
        assert!(check_admin(&c, &bearer(ADMIN)).is_ok());
        assert_eq!(status(check_admin(&c, &bearer(KEY))), StatusCode::FORBIDDEN);
        assert_eq!(
            status(check_admin(&c, &bearer("nope"))),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(check_admin(&c, &HeaderMap::new())),
            StatusCode::UNAUTHORIZED
        );
        // The admin token is not a client key.
        assert_eq!(
            status(check_client(&c, &bearer(ADMIN))),
            StatusCode::UNAUTHORIZED
        );
        // Admin token alone (no client keys) still protects admin.
        let c = cfg(&[], Some(ADMIN), None, false);
        assert!(check_admin(&c, &bearer(ADMIN)).is_ok());
        assert_eq!(
            status(check_admin(&c, &HeaderMap::new())),
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn admin_falls_back_to_api_keys() {
        let c = cfg(&[KEY], None, None, false);
        assert!(c.admin_falls_back_to_api_keys());
        assert!(!c.admin_is_open());
        assert!(check_admin(&c, &bearer(KEY)).is_ok());
        assert_eq!(
            status(check_admin(&c, &bearer("x"))),
            StatusCode::UNAUTHORIZED
        );
        // A blank admin token counts as unset.
        let c = cfg(&[KEY], Some(" "), None, false);
        assert!(c.admin_falls_back_to_api_keys());
        assert_eq!(
            status(check_admin(&c, &bearer(" "))),
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn admin_open_without_any_credentials_configured() {
        let c = AuthConfig::default();
        assert!(c.admin_is_open());
        assert!(!c.admin_falls_back_to_api_keys());
        assert!(check_admin(&c, &HeaderMap::new()).unwrap().is_anonymous());
    }

    #[test]
    fn metrics_policy() {
        // Public: no credentials needed.
        let c = cfg(&[KEY], None, Some(METRICS), true);
        assert!(check_metrics(&c, &HeaderMap::new()).is_ok());
        // Token or client key.
        let c = cfg(&[KEY], None, Some(METRICS), false);
        assert!(check_metrics(&c, &bearer(METRICS)).is_ok());
        assert!(check_metrics(&c, &bearer(KEY)).is_ok());
        assert_eq!(
            status(check_metrics(&c, &bearer("x"))),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(check_metrics(&c, &HeaderMap::new())),
            StatusCode::UNAUTHORIZED
        );
        // Token only, open chat.
        let c = cfg(&[], None, Some(METRICS), false);
        assert!(c.metrics_enabled());
        assert!(check_metrics(&c, &headers(&[("x-api-key", METRICS)])).is_ok());
        assert_eq!(
            status(check_metrics(&c, &HeaderMap::new())),
            StatusCode::UNAUTHORIZED
        );
        // Client keys only.
        let c = cfg(&[KEY], None, None, false);
        assert!(check_metrics(&c, &bearer(KEY)).is_ok());
        // Nothing configured: disabled, even with an admin token set.
        for c in [
            AuthConfig::default(),
            cfg(&[], Some(ADMIN), None, false),
            cfg(&[], None, Some(""), false),
        ] {
            assert!(!c.metrics_enabled());
            let err = check_metrics(&c, &bearer(ADMIN)).unwrap_err();
            assert_eq!(err, GatewayError::MetricsDisabled);
            assert_eq!(err.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = cfg(&[KEY], Some(ADMIN), Some(METRICS), false);
        let s = format!("{c:?}");
        for secret in [KEY, ADMIN, METRICS] {
            assert!(!s.contains(secret), "{s}");
        }
        assert!(s.contains("[1 redacted]"), "{s}");
    }
}
