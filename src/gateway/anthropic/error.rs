//! The gateway's errors in Anthropic's shape: `{"type":"error","error":{"type","message"},
//! "request_id"}` with Anthropic's status/type pairs, and the `error` event of a stream that fails
//! after it started.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::{ErrorShape, GatewayError};

/// Anthropic's `error.type` for the status the gateway answers with.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The error object (also the data of a stream's `error` event).
pub fn body(e: &GatewayError, request_id: Option<&str>) -> Value {
    let mut v = json!({
        "type": "error",
        "error": {"type": error_type(e.status_code()), "message": e.to_string()},
    });
    if let Some(id) = request_id {
        v["request_id"] = Value::String(id.to_string());
    }
    v
}

/// Anthropic's error responses.
pub struct AnthropicShape;

impl ErrorShape for AnthropicShape {
    fn render(e: GatewayError, request_id: Option<&str>) -> Response {
        let mut resp = (e.status_code(), Json(body(&e, request_id))).into_response();
        let h = resp.headers_mut();
        if let Some(secs) = e.retry_after_secs() {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(v) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
            h.insert("request-id", v);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    #[test]
    fn status_type_pairs() {
        let cases = [
            (
                GatewayError::invalid_request("x"),
                400,
                "invalid_request_error",
            ),
            (
                GatewayError::Unauthorized("x".into()),
                401,
                "authentication_error",
            ),
            (GatewayError::Forbidden("x".into()), 403, "permission_error"),
            (GatewayError::NotFound("x".into()), 404, "not_found_error"),
            (
                GatewayError::PayloadTooLarge { limit: 1 },
                413,
                "request_too_large",
            ),
            (
                GatewayError::RateLimited {
                    retry_after_secs: 2,
                },
                429,
                "rate_limit_error",
            ),
            (GatewayError::Internal("x".into()), 500, "api_error"),
            (
                GatewayError::Upstream {
                    status: 500,
                    reason: "x".into(),
                },
                502,
                "api_error",
            ),
            (GatewayError::NoInstanceReady, 503, "overloaded_error"),
            (GatewayError::UpstreamTimeout("x".into()), 504, "api_error"),
        ];
        for (e, status, ty) in cases {
            assert_eq!(e.status_code().as_u16(), status, "{e:?}");
            assert_eq!(error_type(e.status_code()), ty, "{e:?}");
        }
    }

    #[tokio::test]
    async fn the_response_has_anthropics_shape_and_headers() {
        let resp = AnthropicShape::render(
            GatewayError::RateLimited {
                retry_after_secs: 3,
            },
            Some("req_1"),
        );
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
        assert_eq!(resp.headers()["request-id"], "req_1");
        let v: Value =
            serde_json::from_slice(&to_bytes(resp.into_body(), usize::MAX).await.unwrap()).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert!(v["error"]["message"].as_str().unwrap().contains("capacity"));
        assert_eq!(v["request_id"], "req_1");
    }
}
