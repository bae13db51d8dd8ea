//! `GET /v1/models` and `GET /v1/models/{id}`: the registry of a ready instance, as OpenAI model
//! objects. A model can be looked up by key, display name or alias, as chats resolve it.

use axum::Json;
use axum::extract::State;

use super::response::{ModelList, ModelObject};
use crate::error::GatewayError;
use crate::gateway::extract::ApiPath;
use crate::gateway::state::AppState;
use crate::lingma::{ModelRegistry, Resolution};

fn registry(st: &AppState) -> Result<std::sync::Arc<ModelRegistry>, GatewayError> {
    if let Some(r) = st.engine.pool.models() {
        return Ok(r);
    }
    let snaps = st.engine.pool.snapshots();
    match snaps
        .iter()
        .find(|s| s.state == crate::pool::InstanceState::NotLoggedIn)
    {
        Some(s) if !st.engine.pool.any_ready() => Err(GatewayError::NotLoggedIn {
            instance: s.name.clone(),
        }),
        _ if st.engine.pool.any_ready() => Ok(std::sync::Arc::new(ModelRegistry::default())),
        _ => Err(GatewayError::NoInstanceReady),
    }
}

fn object(st: &AppState, m: &crate::lingma::ModelInfo) -> ModelObject {
    let created = st.engine.pool.started_unix();
    ModelObject::new(m.key.clone(), created, "lingma")
}

pub async fn list(State(st): State<AppState>) -> Result<Json<ModelList>, GatewayError> {
    let reg = registry(&st)?;
    Ok(Json(ModelList::new(
        reg.models.iter().map(|m| object(&st, m)).collect(),
    )))
}

pub async fn get_one(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ModelObject>, GatewayError> {
    let reg = registry(&st)?;
    match reg.resolve(Some(&id), None) {
        Resolution::Exact(key) => match reg.get(&key) {
            Some(m) => Ok(Json(object(&st, m))),
            None => Err(GatewayError::ModelNotFound(id)),
        },
        _ => Err(GatewayError::ModelNotFound(id)),
    }
}
