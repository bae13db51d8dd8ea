//! `/internal/*`: operator endpoints behind the admin token: stats, the raw model registry,
//! instances with restart and drain.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{ApiPath, ApiQuery};
use super::state::AppState;
use crate::error::GatewayError;
use crate::pool::{PoolError, Selection};

pub async fn stats(State(st): State<AppState>) -> Json<Value> {
    let c = st.engine.sessions.stats();
    let cache = json!({
        "entries": c.entries, "hits": c.hits, "misses": c.misses,
        "evictions": c.evictions, "expirations": c.expirations,
        "invalidations": c.invalidations,
    });
    Json(json!({
        "uptime_sec": st.engine.pool.uptime().as_secs(),
        "admission": {
            "in_flight": st.engine.admission.in_flight(),
            "waiting": st.engine.admission.waiting(),
            "capacity": st.engine.admission.capacity(),
            "rejected_total": st.engine.admission.rejected_total(),
            "retry_after_sec": st.engine.admission.retry_after_secs(),
            "max_queue": st.engine.admission.max_queue(),
            "queued_body_bytes": st.engine.admission.queued_body_bytes(),
        },
        "session_cache": cache,
        "session_reuse": st.engine.config.session_reuse,
        "instances": st.engine.pool.snapshots(),
    }))
}

pub async fn instances(State(st): State<AppState>) -> Json<Value> {
    Json(json!({ "instances": st.engine.pool.snapshots() }))
}

/// `?instance=NAME` on admin endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct InstanceQuery {
    pub instance: Option<String>,
}

pub async fn models_raw(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<InstanceQuery>,
) -> Result<Json<Value>, GatewayError> {
    let sel = match q.instance {
        Some(name) => Selection::Named(name),
        None => Selection::Any,
    };
    let lease = st
        .engine
        .pool
        .acquire(&sel, st.engine.config.instance_wait)
        .await
        .map_err(|e| st.engine.pool_error(e))?;
    let raw = lease
        .client()
        .query_models_raw()
        .await
        .map_err(|e| GatewayError::UpstreamUnavailable(e.to_string()))?;
    Ok(Json(json!({ "instance": lease.instance(), "result": raw })))
}

pub async fn restart(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<Value>), GatewayError> {
    instance_action(&st, name, "restart", |st, name| {
        st.engine.pool.restart(name)?;
        st.engine.sessions.invalidate_instance(name);
        Ok(())
    })
}

pub async fn drain(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<Value>), GatewayError> {
    instance_action(&st, name, "drain", |st, name| st.engine.pool.drain(name))
}

/// An admin action on one named instance: 202 once the pool has taken it.
fn instance_action(
    st: &AppState,
    name: String,
    action: &'static str,
    run: impl FnOnce(&AppState, &str) -> Result<(), PoolError>,
) -> Result<(StatusCode, Json<Value>), GatewayError> {
    run(st, &name).map_err(|e| st.engine.pool_error(e))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "instance": name, "action": action })),
    ))
}
