//! `/internal/*`: operator endpoints behind the admin token: stats, the raw model registry,
//! instances with restart and drain.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth;
use super::error::GatewayError;
use super::state::AppState;
use crate::pool::{PoolError, Selection};

pub async fn stats(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, GatewayError> {
    auth::check_admin(&st.auth, &headers)?;
    let c = st.sessions.stats();
    let cache = json!({
        "entries": c.entries, "hits": c.hits, "misses": c.misses,
        "evictions": c.evictions, "expirations": c.expirations,
        "invalidations": c.invalidations,
    });
    Ok(Json(json!({
        "uptime_sec": st.pool.uptime().as_secs(),
        "admission": {
            "in_flight": st.admission.in_flight(),
            "waiting": st.admission.waiting(),
            "capacity": st.admission.capacity(),
            "rejected_total": st.admission.rejected_total(),
            "retry_after_sec": st.admission.retry_after_secs(),
        },
        "session_cache": cache,
        "session_reuse": st.config.session_reuse,
        "instances": st.pool.snapshots(),
    })))
}

pub async fn instances(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, GatewayError> {
    auth::check_admin(&st.auth, &headers)?;
    Ok(Json(json!({ "instances": st.pool.snapshots() })))
}

#[derive(Debug, Deserialize)]
pub struct InstanceQuery {
    pub instance: Option<String>,
}

pub async fn models_raw(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<InstanceQuery>, QueryRejection>,
) -> Result<Json<Value>, GatewayError> {
    auth::check_admin(&st.auth, &headers)?;
    let Query(q) = q.map_err(|r| GatewayError::invalid_request(r.body_text()))?;
    let sel = match q.instance {
        Some(name) => Selection::Named(name),
        None => Selection::Any,
    };
    let lease = st
        .pool
        .acquire(&sel, st.config.instance_wait)
        .await
        .map_err(admin_pool_error)?;
    let raw = lease
        .client()
        .query_models_raw()
        .await
        .map_err(|e| GatewayError::UpstreamUnavailable(e.to_string()))?;
    Ok(Json(json!({ "instance": lease.instance(), "result": raw })))
}

pub async fn restart(
    State(st): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<Value>), GatewayError> {
    instance_action(&st, &headers, name, "restart", |st, name| {
        st.pool.restart(name)?;
        st.sessions.invalidate_instance(name);
        Ok(())
    })
}

pub async fn drain(
    State(st): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<Value>), GatewayError> {
    instance_action(&st, &headers, name, "drain", |st, name| st.pool.drain(name))
}

/// An admin action on one named instance: 202 once the pool has taken it.
fn instance_action(
    st: &AppState,
    headers: &HeaderMap,
    name: Result<Path<String>, PathRejection>,
    action: &'static str,
    run: impl FnOnce(&AppState, &str) -> Result<(), PoolError>,
) -> Result<(StatusCode, Json<Value>), GatewayError> {
    auth::check_admin(&st.auth, headers)?;
    let Path(name) = name.map_err(|r| GatewayError::invalid_request(r.body_text()))?;
    run(st, &name).map_err(admin_pool_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "instance": name, "action": action })),
    ))
}

fn admin_pool_error(e: PoolError) -> GatewayError {
    match e {
        PoolError::UnknownInstance(name) => {
            GatewayError::ResourceNotFound(format!("no instance named {name:?}"))
        }
        PoolError::NotLoggedIn { instance } => GatewayError::NotLoggedIn { instance },
        PoolError::NoInstanceReady | PoolError::NotReady { .. } => GatewayError::NoInstanceReady,
        other => GatewayError::UpstreamUnavailable(other.to_string()),
    }
}
