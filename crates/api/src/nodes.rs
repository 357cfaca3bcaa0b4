//! `/nodes`: the hosts of the cluster, in the shape of Docker's swarm node objects (the
//! fields Cove has: id, hostname, state, address).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::json::{ok, Id};
use crate::{ApiResult, AppState};

/// `GET /nodes`.
pub(crate) async fn list(State(st): State<AppState>) -> ApiResult {
    let nodes = st.ctl.node_list().await?;
    let out: Vec<serde_json::Value> = nodes
        .iter()
        .map(|n| {
            json!({
                "ID": n.node.id,
                "Description": { "Hostname": n.node.hostname },
                "Status": {
                    "State": if n.up { "ready" } else { "down" },
                    "Addr": n.node.advertise.to_string(),
                },
                "Spec": { "Role": "worker", "Availability": "active" },
                "Self": n.this,
            })
        })
        .collect();
    Ok(ok(&out))
}

/// `DELETE /nodes/{id}`: forget a node that is down.
pub(crate) async fn remove(State(st): State<AppState>, Id(id): Id) -> ApiResult {
    st.ctl.node_remove(&id).await?;
    Ok(StatusCode::OK.into_response())
}
