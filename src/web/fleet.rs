//! The fleet page's API (`ctm serve --fleet FLEET`, docs/fleet.md): each
//! host's status, and the fleet plan, from the use cases of `ctm fleet
//! status` and `ctm fleet plan`. Both reach the hosts over SSH, in the
//! workers' lane for remote work. Applying a fleet stays with the
//! command line.

use std::path::PathBuf;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::api::{plan_json, server_log};
use super::{ApiError, AppState, Shared};
use crate::backend::ssh::{Connect, Transport};
use crate::engine::fleet::{self, Controller};

/// How many hosts the page reaches at once.
const PARALLEL: usize = 8;

/// The fleet `ctm serve` shows.
pub struct FleetConfig {
    /// The fleet file.
    pub file: PathBuf,
    /// The transport of each request (`ssh`, with `--ssh-config`).
    pub connect: Connect,
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/fleet", get(status))
        .route("/api/fleet/plan", post(plan))
}

type ApiResult = Result<Json<Value>, ApiError>;

/// The fleet's file and a transport for one request.
fn open(state: &AppState) -> Result<(&FleetConfig, Box<dyn Transport>), ApiError> {
    let config = state
        .config
        .fleet
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "this server shows no fleet"))?;
    let transport = (config.connect)().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot make a directory for the SSH connections: {e}"),
        )
    })?;
    Ok((config, transport))
}

/// `GET /api/fleet`: every host with its generation, drift, pending
/// confirmation and last apply (as `ctm fleet status --json`).
async fn status(State(state): State<Shared>) -> ApiResult {
    state
        .clone()
        .workers
        .run_remote(move || {
            let (config, transport) = open(&state)?;
            let loaded = fleet::load_valid(&config.file)?;
            let valid = loaded.fleet().expect("valid");
            let hosts: Vec<_> = valid.hosts.iter().collect();
            let ctl = Controller {
                transport: transport.as_ref(),
                parallel: PARALLEL,
            };
            let statuses = fleet::status(&ctl, &hosts, &loaded.record_dir(), &mut server_log);
            Ok(Json(json!({
                "file": config.file.display().to_string(),
                "canary": valid.canary,
                "hosts": statuses,
            })))
        })
        .await
}

/// `POST /api/fleet/plan`: every host's plan, made by its own ctm (as
/// `ctm fleet plan --json`, each action with its line of text), and the
/// totals. Nothing is left on the hosts.
async fn plan(State(state): State<Shared>) -> ApiResult {
    state
        .clone()
        .workers
        .run_remote(move || {
            let (config, transport) = open(&state)?;
            let ready = fleet::ready(&config.file, &[])?;
            let ctl = Controller {
                transport: transport.as_ref(),
                parallel: PARALLEL,
            };
            let plan = fleet::plan(&ctl, &ready, &mut server_log);
            fleet::discard(&ctl, &plan);
            Ok(Json(plan.to_json(plan_json)))
        })
        .await
}
