//! `/healthz` (pool summary, 200 while one instance is ready), `/readyz`, and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth;
use super::state::AppState;
use crate::pool::InstanceState;

/// Open to anyone (load balancers, probes): status and counts. Instance names, states and the
/// accounts they are logged in as only with an admin or metrics credential.
pub async fn healthz(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let snaps = st.engine.pool.snapshots();
    let ready = snaps
        .iter()
        .filter(|s| s.state == InstanceState::Ready)
        .count();
    let status = if ready > 0 && !st.engine.shutdown.is_cancelled() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({
        "status": if status == StatusCode::OK { "ok" } else { "unavailable" },
        "ready_instances": ready,
        "total_instances": snaps.len(),
        "in_flight": st.engine.admission.in_flight(),
        "waiting": st.engine.admission.waiting(),
        "capacity": st.engine.admission.capacity(),
        "uptime_sec": st.engine.pool.uptime().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
        // Not a secret: it names this replica to whoever asks (load balancers, operators).
        "replica": &*st.config.replica_id,
    });
    if auth::may_see_details(&st.auth, &headers) {
        body["instances"] = snaps
            .iter()
            .map(|s| {
                json!({
                    "name": s.name, "state": s.state, "in_flight": s.in_flight,
                    "capacity": s.capacity, "restarts": s.restarts, "user": s.user,
                    "attached": s.attached, "dialect": s.dialect,
                })
            })
            .collect();
    }
    (status, Json(body)).into_response()
}

pub async fn readyz(State(st): State<AppState>) -> Response {
    if st.engine.pool.any_ready() && !st.engine.shutdown.is_cancelled() {
        (StatusCode::OK, Json(json!({"status": "ready"}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready"})),
        )
            .into_response()
    }
}

/// Behind the metrics credential (route middleware).
pub async fn metrics(State(st): State<AppState>) -> Response {
    sync_metrics(&st);
    let mut resp = st.engine.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// Copies pool, admission and session-cache state into the registry just before a scrape, so the
/// request path never touches these gauges.
fn sync_metrics(st: &AppState) {
    let states: Vec<&str> = InstanceState::ALL.iter().map(|s| s.as_str()).collect();
    for snap in st.engine.pool.snapshots() {
        st.engine
            .metrics
            .set_instance_state(&snap.name, snap.state.as_str(), &states);
        let restarts = st
            .engine
            .metrics
            .instance_restarts
            .with_label_values(&[&snap.name]);
        let seen = restarts.get();
        if snap.restarts > seen {
            restarts.inc_by(snap.restarts - seen);
        }
    }
    st.engine.metrics.sync_admission(
        st.engine.admission.waiting(),
        st.engine.admission.rejected_total(),
    );
    st.engine
        .metrics
        .sync_session_cache(&st.engine.sessions.stats());
}
