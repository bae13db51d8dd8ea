//! The gateway's one HTTP error type.
//!
//! Every failure the gateway reports over HTTP is a [`GatewayError`]: bad requests, rejected
//! bodies, queries and paths (the extractors in `extract.rs` reject with it), authentication,
//! unknown routes, capacity, and upstream (Lingma) failures.
//! [`GatewayError::status_code`] is the single exhaustive mapping to an HTTP status, and the
//! [`IntoResponse`] impl writes OpenAI's error body
//! `{"error":{"message":..,"type":..,"code":..,"param":..}}` (`code`/`param` are `null` when absent),
//! so OpenAI SDKs surface the message and retry exactly what they would retry against OpenAI.
//! [`GatewayError::to_body`] is the same object, reused for the SSE error event written when a
//! stream fails after its headers were sent.
//!
//! Status choices worth knowing:
//! * 503 is for "the gateway cannot serve right now" states that are not about one request:
//!   not logged in, no ready instance, shutting down, metrics disabled.
//! * 502 is for a failure of one upstream call ([`GatewayError::Upstream`],
//!   [`GatewayError::UpstreamUnavailable`]: the Lingma connection dropped or the process crashed
//!   mid-request); 504 for an upstream timeout. OpenAI SDKs retry 502/503/504 and 429.
//! * 429, 503-not-ready and 503-shutting-down carry `Retry-After`; 401 carries
//!   `WWW-Authenticate: Bearer`.
//! * No message ever contains a presented credential.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// `Retry-After` sent with [`GatewayError::NoInstanceReady`]: instances restart with a backoff of
/// a few seconds, so asking clients to come back sooner only adds load.
pub const NO_INSTANCE_RETRY_AFTER_SECS: u64 = 5;

/// `Retry-After` sent with [`GatewayError::LoginInProgress`]: a headless login takes seconds.
pub const LOGIN_RETRY_AFTER_SECS: u64 = 5;

/// `Retry-After` sent with [`GatewayError::ShuttingDown`]: another replica can take the retry.
pub const SHUTTING_DOWN_RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// A request the gateway understood but will not serve (400 `invalid_request_error`).
    #[error("{message}")]
    InvalidRequest {
        message: String,
        /// The offending parameter, e.g. `messages[2].content`.
        param: Option<String>,
        code: Option<String>,
    },
    /// The body is not valid JSON or does not fit the schema; holds serde's message (with path).
    #[error("We could not parse the JSON body of your request: {0}")]
    InvalidJson(String),
    #[error("Expected a JSON request body with `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("The request body is too large (limit: {limit} bytes)")]
    PayloadTooLarge { limit: usize },
    /// The body did not arrive within the body deadline (a slow or stalled upload).
    #[error("The request body was not received within {} s", after.as_secs_f64())]
    RequestTimeout { after: std::time::Duration },
    /// Missing, malformed or wrong credentials. The message never echoes the credential.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that are not allowed here (e.g. a client key on an admin endpoint).
    #[error("{0}")]
    Forbidden(String),
    /// Unknown route; holds `"METHOD /path"`.
    #[error("Unknown request URL: {0}. Please check the URL for typos.")]
    NotFound(String),
    #[error("Method not allowed for this URL")]
    MethodNotAllowed,
    /// A named thing that does not exist (e.g. an instance on an admin endpoint); holds the
    /// whole message. Unknown *routes* are [`GatewayError::NotFound`].
    #[error("{0}")]
    ResourceNotFound(String),
    /// Holds the model name as the client sent it.
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
    #[error(
        "The gateway is at capacity: every Lingma instance is busy. Please try again in {retry_after_secs}s."
    )]
    RateLimited { retry_after_secs: u64 },
    #[error(
        "Lingma instance `{instance}` is not logged in. Run `lingma-gw login --instance {instance}` \
         (or import a session bundle), or enable auto-login."
    )]
    NotLoggedIn { instance: String },
    /// The instance is logged out and auto-login is logging it in now (503 with `Retry-After`).
    #[error(
        "Lingma instance `{instance}` is not logged in; auto-login is logging it in now. Please \
         retry in a few seconds."
    )]
    LoginInProgress { instance: String },
    #[error("No Lingma instance is ready to serve requests yet. Please retry shortly.")]
    NoInstanceReady,
    #[error("The gateway is shutting down. Please retry.")]
    ShuttingDown,
    #[error(
        "Metrics are disabled: set METRICS_TOKEN (--metrics-token) to protect them or METRICS_PUBLIC=true (--metrics-public) to expose them."
    )]
    MetricsDisabled,
    /// Lingma answered the turn with an error (non-200 `chat/finish` or an error text).
    #[error("Upstream error (status {status}): {reason}")]
    Upstream { status: u16, reason: String },
    #[error("Upstream timeout: {0}")]
    UpstreamTimeout(String),
    /// The Lingma connection or process went away during the request (502).
    #[error("Upstream unavailable: {0}")]
    UpstreamUnavailable(String),
    /// A bug or an unexpected state. The message is all the client sees; put details in the log.
    #[error("Internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// 400 with a message and no param.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// 400 naming the offending parameter (e.g. `messages[2].content`).
    pub fn invalid_param(message: impl Into<String>, param: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: Some(param.into()),
            code: None,
        }
    }

    /// 400 with param and a machine-readable code.
    pub fn invalid_param_code(
        message: impl Into<String>,
        param: impl Into<String>,
        code: impl Into<String>,
    ) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: Some(param.into()),
            code: Some(code.into()),
        }
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } | Self::InvalidJson(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) | Self::ResourceNotFound(_) | Self::ModelNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotLoggedIn { .. }
            | Self::LoginInProgress { .. }
            | Self::NoInstanceReady
            | Self::ShuttingDown
            | Self::MetricsDisabled => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream { .. } | Self::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `error.type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. }
            | Self::InvalidJson(_)
            | Self::UnsupportedMediaType
            | Self::PayloadTooLarge { .. }
            | Self::RequestTimeout { .. }
            | Self::NotFound(_)
            | Self::MethodNotAllowed
            | Self::ResourceNotFound(_)
            | Self::ModelNotFound(_) => "invalid_request_error",
            Self::Unauthorized(_) => "authentication_error",
            Self::Forbidden(_) => "permission_error",
            Self::RateLimited { .. } => "rate_limit_error",
            Self::Upstream { .. } | Self::UpstreamTimeout(_) | Self::UpstreamUnavailable(_) => {
                "upstream_error"
            }
            Self::NotLoggedIn { .. }
            | Self::LoginInProgress { .. }
            | Self::NoInstanceReady
            | Self::ShuttingDown
            | Self::MetricsDisabled
            | Self::Internal(_) => "server_error",
        }
    }

    /// OpenAI's `error.code` (`null` when `None`).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::InvalidRequest { code, .. } => code.as_deref(),
            Self::InvalidJson(_) => Some("invalid_json"),
            Self::UnsupportedMediaType => Some("unsupported_media_type"),
            Self::PayloadTooLarge { .. } => Some("payload_too_large"),
            Self::RequestTimeout { .. } => Some("request_timeout"),
            Self::Unauthorized(_) => Some("invalid_api_key"),
            Self::Forbidden(_) => Some("forbidden"),
            Self::NotFound(_) => Some("unknown_url"),
            Self::MethodNotAllowed => Some("method_not_allowed"),
            Self::ResourceNotFound(_) => Some("not_found"),
            Self::ModelNotFound(_) => Some("model_not_found"),
            Self::RateLimited { .. } => Some("rate_limit_exceeded"),
            Self::NotLoggedIn { .. } => Some("not_logged_in"),
            Self::LoginInProgress { .. } => Some("login_in_progress"),
            Self::NoInstanceReady => Some("no_instance_ready"),
            Self::ShuttingDown => Some("shutting_down"),
            Self::MetricsDisabled => Some("metrics_disabled"),
            Self::Upstream { .. } => Some("upstream_error"),
            Self::UpstreamTimeout(_) => Some("upstream_timeout"),
            Self::UpstreamUnavailable(_) => Some("upstream_unavailable"),
            Self::Internal(_) => None,
        }
    }

    /// OpenAI's `error.param` (`null` when `None`).
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::InvalidRequest { param, .. } => param.as_deref(),
            Self::ModelNotFound(_) => Some("model"),
            _ => None,
        }
    }

    /// Seconds for the `Retry-After` header, for the errors that have one.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Self::NoInstanceReady => Some(NO_INSTANCE_RETRY_AFTER_SECS),
            Self::LoginInProgress { .. } => Some(LOGIN_RETRY_AFTER_SECS),
            Self::ShuttingDown => Some(SHUTTING_DOWN_RETRY_AFTER_SECS),
            _ => None,
        }
    }

    /// The OpenAI error object `{"error":{"message","type","code","param"}}`.
    pub fn to_body(&self) -> Value {
        json!({
            "error": {
                "message": self.to_string(),
                "type": self.error_type(),
                "code": self.code(),
                "param": self.param(),
            }
        })
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut response = (self.status_code(), Json(self.to_body())).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(self, Self::Unauthorized(_)) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// How an API surface writes an error. The default is OpenAI's body (the `IntoResponse` impl
/// above), used by `/v1/chat/completions`, `/v1/responses`, `/v1/models` and the operator
/// endpoints; the Anthropic front door has its own.
pub trait ErrorShape: Send + Sync + 'static {
    /// The response for `e`; `request_id` is the request's `x-request-id`.
    fn render(e: GatewayError, request_id: Option<&str>) -> Response;
}

/// OpenAI's `{"error": {...}}`.
pub struct OpenAiShape;

impl ErrorShape for OpenAiShape {
    fn render(e: GatewayError, _request_id: Option<&str>) -> Response {
        e.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    fn all_variants() -> Vec<GatewayError> {
        vec![
            GatewayError::invalid_param_code("bad", "messages[0]", "some_code"),
            GatewayError::InvalidJson("expected value at line 1 column 1".into()),
            GatewayError::UnsupportedMediaType,
            GatewayError::PayloadTooLarge { limit: 10 },
            GatewayError::RequestTimeout {
                after: std::time::Duration::from_secs(30),
            },
            GatewayError::Unauthorized("Incorrect API key provided.".into()),
            GatewayError::Forbidden("no".into()),
            GatewayError::NotFound("GET /x".into()),
            GatewayError::MethodNotAllowed,
            GatewayError::ResourceNotFound("No instance named `inst-9`".into()),
            GatewayError::ModelNotFound("gpt-9".into()),
            GatewayError::RateLimited {
                retry_after_secs: 7,
            },
            GatewayError::NotLoggedIn {
                instance: "inst-0".into(),
            },
            GatewayError::NoInstanceReady,
            GatewayError::ShuttingDown,
            GatewayError::MetricsDisabled,
            GatewayError::Upstream {
                status: 500,
                reason: "boom".into(),
            },
            GatewayError::UpstreamTimeout("no first token in 60 s".into()),
            GatewayError::UpstreamUnavailable("connection closed".into()),
            GatewayError::Internal("oops".into()),
        ]
    }

    async fn body_of(resp: Response) -> Value {
        let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn status_type_and_code_of_every_variant() {
        let expected: Vec<(u16, &str, Option<&str>)> = vec![
            (400, "invalid_request_error", Some("some_code")),
            (400, "invalid_request_error", Some("invalid_json")),
            (415, "invalid_request_error", Some("unsupported_media_type")),
            (413, "invalid_request_error", Some("payload_too_large")),
            (408, "invalid_request_error", Some("request_timeout")),
            (401, "authentication_error", Some("invalid_api_key")),
            (403, "permission_error", Some("forbidden")),
            (404, "invalid_request_error", Some("unknown_url")),
            (405, "invalid_request_error", Some("method_not_allowed")),
            (404, "invalid_request_error", Some("not_found")),
            (404, "invalid_request_error", Some("model_not_found")),
            (429, "rate_limit_error", Some("rate_limit_exceeded")),
            (503, "server_error", Some("not_logged_in")),
            (503, "server_error", Some("no_instance_ready")),
            (503, "server_error", Some("shutting_down")),
            (503, "server_error", Some("metrics_disabled")),
            (502, "upstream_error", Some("upstream_error")),
            (504, "upstream_error", Some("upstream_timeout")),
            (502, "upstream_error", Some("upstream_unavailable")),
            (500, "server_error", None),
        ];
        let variants = all_variants();
        assert_eq!(variants.len(), expected.len());
        for (err, (status, ty, code)) in variants.iter().zip(expected) {
            assert_eq!(err.status_code().as_u16(), status, "{err:?}");
            assert_eq!(err.error_type(), ty, "{err:?}");
            assert_eq!(err.code(), code, "{err:?}");
        }
    }

    #[tokio::test]
    async fn every_variant_writes_the_openai_body() {
        for err in all_variants() {
            let expected = err.to_body();
            let status = err.status_code();
            let resp = err.clone().into_response();
            assert_eq!(resp.status(), status);
            assert_eq!(
                resp.headers()[header::CONTENT_TYPE],
                "application/json",
                "{err:?}"
            );
            let body = body_of(resp).await;
            assert_eq!(body, expected);
            let obj = body["error"].as_object().unwrap();
            let mut keys: Vec<_> = obj.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["code", "message", "param", "type"], "{err:?}");
            assert!(obj["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert_eq!(obj["message"], err.to_string());
            assert!(obj["code"].is_string() || obj["code"].is_null());
            assert!(obj["param"].is_string() || obj["param"].is_null());
        }
    }

    #[test]
    fn absent_code_and_param_are_null() {
        let body = GatewayError::Internal("x".into()).to_body();
        assert_eq!(
            body,
            json!({"error": {"message": "Internal error: x", "type": "server_error", "code": null, "param": null}})
        );
        let body = GatewayError::invalid_request("bad").to_body();
        assert!(body["error"]["code"].is_null());
        assert!(body["error"]["param"].is_null());
    }

    #[test]
    fn param_is_written() {
        let body = GatewayError::invalid_param("n > 1 is not supported", "n").to_body();
        assert_eq!(body["error"]["param"], "n");
        assert_eq!(body["error"]["message"], "n > 1 is not supported");
        assert_eq!(
            GatewayError::ModelNotFound("m".into()).to_body()["error"]["param"],
            "model"
        );
    }

    #[test]
    fn messages_guide_the_operator() {
        let m = GatewayError::NotLoggedIn {
            instance: "inst-1".into(),
        }
        .to_string();
        assert!(m.contains("lingma-gw login --instance inst-1"), "{m}");
        assert!(m.contains("auto-login"), "{m}");
        let m = GatewayError::MetricsDisabled.to_string();
        assert!(
            m.contains("METRICS_TOKEN") && m.contains("METRICS_PUBLIC"),
            "{m}"
        );
        let m = GatewayError::ModelNotFound("qwen-x".into()).to_string();
        assert!(m.contains("`qwen-x`"), "{m}");
    }

    #[tokio::test]
    async fn retry_after_and_www_authenticate_headers() {
        let resp = GatewayError::RateLimited {
            retry_after_secs: 7,
        }
        .into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
        let resp = GatewayError::NoInstanceReady.into_response();
        assert_eq!(
            resp.headers()[header::RETRY_AFTER],
            NO_INSTANCE_RETRY_AFTER_SECS.to_string().as_str()
        );
        let resp = GatewayError::Unauthorized("x".into()).into_response();
        assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert!(resp.headers().get(header::RETRY_AFTER).is_none());
        let resp = GatewayError::Internal("x".into()).into_response();
        assert!(resp.headers().get(header::RETRY_AFTER).is_none());
        assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
