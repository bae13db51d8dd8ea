//! `/internal/session/export` and `/internal/auto-login/start|status`: operator endpoints behind
//! the admin token for session bundles and the auto-login service.
//!
//! * `GET /internal/session/export?instance=NAME&base64=true&with_history=true` returns the same
//!   bundle as `lingma-gw session export` (`application/gzip`, or `text/plain` with base64).
//!   `POST` with a JSON body `{instance, base64, with_history, passphrase}` also encrypts (the
//!   passphrase travels in the body, never in a URL).
//! * `POST /internal/auto-login/start` (`{"instance": NAME}` or `?instance=`; without one, every
//!   instance that is not logged in) starts runs and answers 202 with what happened per instance.
//! * `GET /internal/auto-login/status[?instance=NAME]` shows each instance's run.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::InstanceQuery;
use super::extract::{ApiJson, ApiQuery};
use super::state::AppState;
use crate::bundle::{self, ExportOptions};
use crate::error::GatewayError;
use crate::login::auto::Trigger;
use crate::pool::{InstanceState, Selection};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ExportQuery {
    pub instance: Option<String>,
    pub base64: Option<bool>,
    pub with_history: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportBody {
    pub instance: Option<String>,
    pub base64: Option<bool>,
    pub with_history: Option<bool>,
    pub passphrase: Option<String>,
}

pub async fn export_get(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, GatewayError> {
    export(
        &st,
        ExportBody {
            instance: q.instance,
            base64: q.base64,
            with_history: q.with_history,
            passphrase: None,
        },
    )
    .await
}

pub async fn export_post(
    State(st): State<AppState>,
    body: ApiJson<ExportBody>,
) -> Result<Response, GatewayError> {
    export(&st, body.value).await
}

async fn export(st: &AppState, req: ExportBody) -> Result<Response, GatewayError> {
    let snaps = st.engine.pool.snapshots();
    let snap = match &req.instance {
        Some(name) => snaps
            .iter()
            .find(|s| &s.name == name)
            .ok_or_else(|| GatewayError::ResourceNotFound(format!("no instance named {name:?}")))?,
        None => snaps
            .iter()
            .find(|s| s.state == InstanceState::Ready && s.user.is_some())
            .or_else(|| snaps.first())
            .ok_or(GatewayError::NoInstanceReady)?,
    };
    let Some(account) = snap.user.clone() else {
        return Err(GatewayError::NotLoggedIn {
            instance: snap.name.clone(),
        });
    };
    // The Lingma version from a connection's `initialize` (absent when the instance is busy).
    let version = st
        .engine
        .pool
        .acquire(
            &Selection::Named(snap.name.clone()),
            st.engine.config.instance_wait,
        )
        .await
        .ok()
        .map(|lease| lease.client().server_version().to_string());
    let opts = ExportOptions {
        with_history: req.with_history.unwrap_or(false),
        account: Some(account),
        lingma_version: version,
        instance: Some(snap.name.clone()),
    };
    let work_dir = snap.work_dir.clone();
    let mut data = tokio::task::spawn_blocking(move || bundle::export(&work_dir, &opts))
        .await
        .map_err(|e| GatewayError::Internal(e.to_string()))?
        .map_err(|e| match e {
            bundle::BundleError::NotLoggedIn(_) => GatewayError::NotLoggedIn {
                instance: snap.name.clone(),
            },
            other => GatewayError::Internal(other.to_string()),
        })?;
    if let Some(p) = req.passphrase.filter(|p| !p.is_empty()) {
        data = tokio::task::spawn_blocking(move || bundle::encrypt(&data, &p))
            .await
            .map_err(|e| GatewayError::Internal(e.to_string()))?
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
    }
    let b64 = req.base64.unwrap_or(false);
    let (ctype, ext) = if b64 {
        data = bundle::to_base64(&data);
        ("text/plain; charset=utf-8", "b64")
    } else {
        ("application/gzip", "tar.gz")
    };
    let mut resp = Response::new(Body::from(data));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"lingma-session-{}.{ext}\"",
        snap.name
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StartBody {
    pub instance: Option<String>,
}

pub async fn auto_login_start(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<InstanceQuery>,
    body: Option<ApiJson<StartBody>>,
) -> Result<Response, GatewayError> {
    if !st.engine.auto_login.enabled() {
        return Err(GatewayError::invalid_request(
            "auto-login is disabled: set AUTO_LOGIN_ENABLED=true (and AUTO_LOGIN_USERNAME / AUTO_LOGIN_PASSWORD)",
        ));
    }
    let named = body.and_then(|b| b.value.instance).or(q.instance);
    let names: Vec<String> = match named {
        Some(n) => {
            if !st.engine.pool.names().contains(&n) {
                return Err(GatewayError::ResourceNotFound(format!(
                    "no instance named {n:?}"
                )));
            }
            vec![n]
        }
        None => st
            .engine
            .pool
            .snapshots()
            .into_iter()
            .filter(|s| s.user.is_none())
            .map(|s| s.name)
            .collect(),
    };
    let results: Vec<Value> = names
        .iter()
        .map(|n| json!({"instance": n, "result": st.engine.auto_login.start(n)}))
        .collect();
    let started = results
        .iter()
        .any(|r| r["result"] == json!(Trigger::Started));
    let status = if started {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"results": results}))).into_response())
}

pub async fn auto_login_status(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<InstanceQuery>,
) -> Result<Json<Value>, GatewayError> {
    let instances =
        match q.instance {
            Some(n) => vec![st.engine.auto_login.status_of(&n).ok_or_else(|| {
                GatewayError::ResourceNotFound(format!("no instance named {n:?}"))
            })?],
            None => st.engine.auto_login.statuses(),
        };
    Ok(Json(json!({
        "enabled": st.engine.auto_login.enabled(),
        "instances": instances,
    })))
}
