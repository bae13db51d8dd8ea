//! Extractors for the gateway's handlers. Every one rejects with [`GatewayError`], so a bad body,
//! query or path gets the same error shape as everything else (never axum's plain-text rejections).
//!
//! * [`ApiJson`]: a JSON body read under the gateway's rules: a JSON content type, the body limit
//!   (a declared oversize body is refused before a byte is read), the body deadline (slow or
//!   stalled uploads end with 408), and the queue's memory budget (the body's bytes are reserved
//!   before they are read and stay reserved until the request is admitted).
//! * [`Caller`]: the identity that the auth middleware established from the headers.
//! * [`ApiQuery`], [`ApiPath`]: axum's, with the rejection mapped.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{header, request::Parts};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::auth::ClientIdentity;
use super::state::AppState;
use crate::error::GatewayError;
use crate::turn::admission::BodyReservation;

/// A JSON request body, with its reservation in the body budget. Drop the reservation (or the
/// whole value) once the request is admitted.
pub struct ApiJson<T> {
    pub value: T,
    pub reservation: BodyReservation,
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = GatewayError;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, GatewayError> {
        if !is_json(req.headers()) {
            return Err(GatewayError::UnsupportedMediaType);
        }
        let limit = st.config.body_limit;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(GatewayError::PayloadTooLarge { limit });
        }
        let mut reservation = st.engine.admission.reserve_body(declared.unwrap_or(0))?;
        let read = read_body(req, limit, declared.is_none(), &mut reservation, st);
        let bytes = match tokio::time::timeout(st.config.body_timeout, read).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(GatewayError::RequestTimeout {
                    after: st.config.body_timeout,
                });
            }
        };
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(de).map_err(json_error)?;
        Ok(Self { value, reservation })
    }
}

/// An optional body: none when the request has neither a content type nor a body length.
impl<T: DeserializeOwned> axum::extract::OptionalFromRequest<AppState> for ApiJson<T> {
    type Rejection = GatewayError;

    async fn from_request(req: Request, st: &AppState) -> Result<Option<Self>, GatewayError> {
        let h = req.headers();
        let empty = !h.contains_key(header::CONTENT_TYPE)
            && h.get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v.trim() == "0");
        if empty {
            return Ok(None);
        }
        <Self as FromRequest<AppState>>::from_request(req, st)
            .await
            .map(Some)
    }
}

/// Reads the whole body; undeclared lengths are reserved chunk by chunk as they arrive.
async fn read_body(
    req: Request,
    limit: usize,
    reserve_as_read: bool,
    reservation: &mut BodyReservation,
    st: &AppState,
) -> Result<Vec<u8>, GatewayError> {
    let mut out = Vec::new();
    let mut stream = req.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            GatewayError::invalid_request(format!("Failed to read the request body: {e}"))
        })?;
        if out.len() + chunk.len() > limit {
            return Err(GatewayError::PayloadTooLarge { limit });
        }
        if reserve_as_read && !reservation.grow(chunk.len() as u64) {
            return Err(st.engine.admission.rejection());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `application/json`, or any `+json` type (as axum's `Json` accepts).
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    let Some((ty, sub)) = essence.split_once('/') else {
        return false;
    };
    ty.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// serde's message with the JSON path (`messages[0].content: invalid type ...`).
fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> GatewayError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if path.is_empty() || path == "." {
        GatewayError::InvalidJson(inner.to_string())
    } else {
        GatewayError::InvalidJson(format!("{path}: {inner}"))
    }
}

/// The caller, as the auth middleware of the route group identified it.
#[derive(Debug, Clone)]
pub struct Caller(pub ClientIdentity);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, GatewayError> {
        parts
            .extensions
            .get::<ClientIdentity>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| {
                GatewayError::Internal("the route has no authentication middleware".into())
            })
    }
}

/// A query string, or a 400 in the gateway's shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, GatewayError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|r: QueryRejection| GatewayError::invalid_request(r.body_text()))
    }
}

/// A path parameter, or a 400 in the gateway's shape (for example `%ff`, which does not decode).
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, GatewayError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Self(v))
            .map_err(|r: PathRejection| GatewayError::invalid_request(r.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn json_content_types() {
        let h = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            m
        };
        assert!(is_json(&h("application/json")));
        assert!(is_json(&h("application/json; charset=utf-8")));
        assert!(is_json(&h("Application/JSON")));
        assert!(is_json(&h("application/vnd.api+json")));
        assert!(!is_json(&h("text/plain")));
        assert!(!is_json(&h("application/x-www-form-urlencoded")));
        assert!(!is_json(&h("application/+json")));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn json_errors_carry_the_path() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            n: u32,
        }
        let parse = |s: &str| {
            let de = &mut serde_json::Deserializer::from_str(s);
            serde_path_to_error::deserialize::<_, T>(de).map_err(json_error)
        };
        let GatewayError::InvalidJson(m) = parse(r#"{"n":"two"}"#).unwrap_err() else {
            panic!()
        };
        assert!(m.starts_with("n: invalid type: string"), "{m}");
        let GatewayError::InvalidJson(m) = parse("{\"n\": ").unwrap_err() else {
            panic!()
        };
        assert!(m.contains("EOF while parsing"), "{m}");
    }
}
