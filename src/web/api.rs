//! The JSON API under `/api/` (documented in docs/openapi.json). Each
//! handler is the web face of one use case of the engine: the same
//! validation as `ctm check`, the same plan as `ctm plan`, the same apply,
//! confirm, rollback and status as the command line.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::jobs::{Ready, Reporter};
use super::{ApiError, AppState, Shared, console, jobs, logs, metrics};
use crate::clock::Timeout;
use crate::compile;
use crate::engine::apply::{self, Applied, Runner, Seen};
use crate::engine::containers::{self, Verb};
use crate::engine::edit;
use crate::engine::events::generation_name;
use crate::engine::generations;
use crate::engine::images;
use crate::engine::load::{
    Outcome, load_and_validate, lock_path_for, read_lock, summary, validate_text_with,
};
use crate::engine::restores::{self, Kind as RestoreKind};
use crate::engine::status::Sources;
use crate::engine::topologies::{self, Direction};
use crate::engine::tunnels;
use crate::engine::{Access, Event, Refused, Session};
use crate::fs;
use crate::model::{IfName, Name};
use crate::plan::{self, Plan};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/source", get(source))
        .route("/api/validate", post(validate))
        .route("/api/plan", post(plan))
        .route("/api/save", post(save))
        .route("/api/apply", post(apply))
        .route("/api/confirm", post(confirm))
        .route("/api/status", get(status))
        .route("/api/generations", get(generations))
        .route("/api/images", get(images_list))
        .route("/api/images/{name}/pull", post(image_pull))
        .route("/api/images/{name}/remove", post(image_remove))
        .route("/api/tunnels", get(tunnels_list))
        .route("/api/tunnels/{name}/diagnose", get(tunnel_diagnose))
        .route("/api/topologies", get(topologies_list))
        .route("/api/topologies/{name}/up", get(topology_up_plan))
        .route("/api/topologies/{name}/up", post(topology_up))
        .route("/api/topologies/{name}/down", get(topology_down_plan))
        .route("/api/topologies/{name}/down", post(topology_down))
        .route("/api/generations/{a}/diff/{b}", get(diff))
        .route("/api/rollback/{generation}", get(rollback_plan))
        .route("/api/rollback", post(rollback))
        .route("/api/jobs/{id}", get(jobs::events))
        .route("/api/logs/{name}", get(logs::stream))
        .route("/api/edit/read", post(edit_read))
        .route("/api/edit", post(edit_apply))
        .route("/api/containers/{name}", get(container))
        .route("/api/containers/{name}/stats", get(container_stats))
        .route("/api/containers/{name}/start", post(start))
        .route("/api/containers/{name}/stop", post(stop))
        .route("/api/containers/{name}/restart", post(restart))
        .route("/api/containers/{name}/pause", post(pause))
        .route("/api/containers/{name}/resume", post(resume))
        .route("/api/containers/{name}/kill", post(kill))
        .route("/api/containers/{name}/console", get(console::console))
        .route("/api/containers/{name}/backups", get(backups_list))
        .route("/api/containers/{name}/snapshot", post(snapshot_now))
        .route("/api/containers/{name}/backup", post(backup_now))
        .route(
            "/api/containers/{name}/archives/{id}/download",
            get(archive_download),
        )
        .route(
            "/api/containers/{name}/snapshots/{id}/restore",
            get(snapshot_restore_preview),
        )
        .route(
            "/api/containers/{name}/snapshots/{id}/restore",
            post(snapshot_restore),
        )
        .route(
            "/api/containers/{name}/archives/{id}/restore",
            get(archive_restore_preview),
        )
        .route(
            "/api/containers/{name}/archives/{id}/restore",
            post(archive_restore),
        )
        .route("/api/volumes", get(volumes_list))
        .route("/metrics", get(metrics::metrics))
}

type ApiResult = Result<Json<Value>, ApiError>;

/// Where a request's events go that has no stream of its own: the
/// server's standard error (a warning that the running system cannot be
/// reached, a recovery done on the way).
pub(super) fn server_log(event: Event) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "ctm serve: {event}");
}

/// A plan as `ctm plan --json` prints it, each action with the line
/// `ctm plan` shows for it (`summary`) as well.
pub(super) fn plan_json(plan: &Plan) -> Value {
    let mut value = json!(plan);
    if let Some(actions) = value["actions"].as_array_mut() {
        for (json, action) in actions.iter_mut().zip(&plan.actions) {
            json["summary"] = json!(action.summary());
        }
    }
    value
}

/// The web editor plans as `ctm plan [--adopt]`; pruning and checking
/// steps inside containers are for the CLI.
fn adopting(adopt: bool) -> plan::Options {
    plan::Options {
        adopt,
        ..plan::Options::default()
    }
}

fn read_host_file(path: &Path) -> Result<String, ApiError> {
    std::fs::read_to_string(path).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read host file {}: {e}", path.display()),
        )
    })
}

/// Validates `text` as the host file, with the lock file on disk (parsed
/// again only when its text is not the one parsed last).
fn check(state: &AppState, text: String) -> Result<Outcome, ApiError> {
    let host_file = state.host_file()?;
    let lock_path = lock_path_for(host_file);
    let lock_text = read_lock(&lock_path)?;
    Ok(validate_text_with(
        host_file,
        text,
        lock_path,
        lock_text,
        |text| state.memory.parse_lock(text),
    ))
}

/// `GET /api/source`: the host file as it is on disk.
async fn source(State(state): State<Shared>) -> ApiResult {
    state
        .clone()
        .workers
        .run(0, move || {
            let path = state.host_file()?;
            let text = read_host_file(path)?;
            Ok(Json(json!({
                "path": path.display().to_string(),
                "format": match crate::config::Format::from_path(path) {
                    crate::config::Format::Kdl => "kdl",
                    crate::config::Format::Toml => "toml",
                },
                "sha256": fs::sha256_hex(text.as_bytes()),
                "text": text,
            })))
        })
        .await
}

#[derive(Deserialize)]
struct TextRequest {
    /// The host file's text; the file on disk when left out.
    text: Option<String>,
    #[serde(default)]
    adopt: bool,
}

impl TextRequest {
    /// The size of the work it asks for.
    fn size(&self) -> usize {
        self.text.as_ref().map_or(0, String::len)
    }
}

fn text_or_disk(state: &AppState, text: Option<String>) -> Result<String, ApiError> {
    match text {
        Some(text) => Ok(text),
        None => read_host_file(state.host_file()?),
    }
}

/// `POST /api/validate`: `ctm check --format json` of the text.
async fn validate(State(state): State<Shared>, Json(req): Json<TextRequest>) -> ApiResult {
    let size = req.size();
    state
        .clone()
        .workers
        .run(size, move || {
            let text = text_or_disk(&state, req.text)?;
            Ok(Json(check(&state, text)?.diagnostics_json()))
        })
        .await
}

/// `POST /api/plan`: the check, and when the text is valid, `ctm plan
/// --json` of it against the root.
async fn plan(State(state): State<Shared>, Json(req): Json<TextRequest>) -> ApiResult {
    let size = req.size();
    state
        .clone()
        .workers
        .run(size, move || {
            let host_file = state.host_file()?;
            let lock_path = lock_path_for(host_file);
            let lock_text = read_lock(&lock_path)?;
            let mut checked = state.compiled.check(
                host_file,
                text_or_disk(&state, req.text)?,
                lock_path,
                lock_text,
                |text| state.memory.parse_lock(text),
            );
            let check = checked.outcome.diagnostics_json();
            let mut resolved = Vec::new();
            let (host, artifacts) = match &checked.compiled {
                Some(compiled) => (compiled.summary.clone(), compiled.artifacts.clone()),
                None => {
                    // Only the artifacts: a preview has no use for what an
                    // apply also takes along (the lock file to write,
                    // copies of both texts).
                    let Some(validated) = &mut checked.outcome.validated else {
                        return Ok(Json(json!({ "check": check, "plan": null })));
                    };
                    // Image tags the lock does not pin are resolved as the
                    // apply will resolve them, so that its plan is the one
                    // shown.
                    images::resolve_images(&state.target().root, validated, &mut |event| {
                        if let Event::ImageResolved { .. } = &event {
                            resolved.push(json!(event));
                        }
                        server_log(event);
                    })?;
                    let host = summary(&validated.host);
                    let artifacts = Arc::new(compile::compile(&validated.host));
                    // What the registry said is not in the text: kept only
                    // when nothing was resolved.
                    if resolved.is_empty() {
                        state
                            .compiled
                            .keep(&checked, host.clone(), artifacts.clone());
                    }
                    (host, artifacts)
                }
            };
            let mut session = Session::open(&state.target(), Access::ReadShared, &mut server_log)?;
            let plan = session.plan_shared(&artifacts, adopting(req.adopt), &mut server_log)?;
            Ok(Json(json!({
                "check": check,
                "host": host,
                "images": resolved,
                "plan": plan_json(&plan),
            })))
        })
        .await
}

#[derive(Deserialize)]
struct SaveRequest {
    text: String,
    /// The text the editor loaded: the save is refused if the file on
    /// disk is no longer that.
    base: String,
}

/// `POST /api/save`: writes the host file atomically, unless it changed
/// on disk since the editor loaded it; then the answer shows that change.
async fn save(State(state): State<Shared>, Json(req): Json<SaveRequest>) -> ApiResult {
    let _one_at_a_time = state.save_lock.lock().await;
    let size = req.text.len() + req.base.len();
    let worker = state.clone();
    state
        .workers
        .run(size, move || {
            let state = worker;
            let path = state.host_file()?;
            let on_disk = read_host_file(path)?;
            if on_disk != req.base {
                let diff = similar::TextDiff::from_lines(&req.base, &on_disk)
                    .unified_diff()
                    .context_radius(3)
                    .header("loaded", "on disk now")
                    .to_string();
                return Err(ApiError::conflict(format!(
                    "{} changed on disk since it was loaded; nothing was saved",
                    path.display()
                ))
                .with("current", json!(on_disk))
                .with("diff", json!(diff)));
            }
            // Write through a symlink to the file it names, keeping its mode.
            let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            let mode =
                std::fs::metadata(&target).map_or(0o644, |m| m.permissions().mode() & 0o7777);
            fs::write_file(&target, req.text.as_bytes(), mode)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            Ok(Json(json!({
                "saved": path.display().to_string(),
                "sha256": fs::sha256_hex(req.text.as_bytes()),
            })))
        })
        .await
}

#[derive(Deserialize)]
struct ApplyRequest {
    /// The fingerprint of the plan the user saw and confirmed.
    fingerprint: String,
    #[serde(default)]
    adopt: bool,
    /// Seconds to wait for `POST /api/confirm` before rolling back (1 to
    /// 604800); checked as the request is read.
    confirm_timeout: Option<Timeout>,
    /// Commit the host file and its lock with git after the apply.
    #[serde(default)]
    git_commit: bool,
}

/// `POST /api/apply`: applies the saved host file, if its plan still has
/// the fingerprint the user confirmed. Answers 202 with the job to follow.
async fn apply(
    State(state): State<Shared>,
    Json(req): Json<ApplyRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    state.may_change()?;
    let host_file = state.host_file()?.to_path_buf();
    let job_state = state.clone();
    let id = state
        .jobs
        .start("apply", move |ready, report| {
            apply_job(&job_state, &host_file, &req, ready, report)
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "job": id }))))
}

fn apply_job(
    state: &AppState,
    host_file: &Path,
    req: &ApplyRequest,
    ready: Ready,
    report: &Reporter,
) {
    let target = state.target();
    let prepared = (|| -> Result<_, ApiError> {
        let mut outcome = load_and_validate(host_file, None)?;
        let down = target.store().current_down()?;
        let desired =
            images::compile_resolved(&target.root, &mut outcome, &down, &mut |e| report.event(e))?
                .ok_or_else(|| Refused::Invalid {
                    file: host_file.display().to_string(),
                    check: outcome.diagnostics_json(),
                })?;
        let seen = shown(&req.fingerprint, "the host or the saved host file");
        Ok(apply::prepare_apply(
            &target,
            desired,
            adopting(req.adopt),
            req.confirm_timeout,
            Some(&seen),
            &mut |e| report.event(e),
        )?)
    })();
    let Some(prepared) = go_ahead(ready, prepared, apply::PreparedApply::refusal) else {
        return;
    };
    let applied = apply::apply(
        &target,
        prepared,
        req.confirm_timeout,
        Runner::Foreground,
        &mut |e| report.event(e),
    );
    let number = match applied {
        Ok(Applied::NoChanges) => {
            let current = target.store().current().ok().flatten();
            return report.done("No changes. The host matches the host file.", current);
        }
        Ok(Applied::Generation(n)) => n,
        Ok(Applied::Unconfirmed(n)) => {
            let back_on = target.store().current().ok().flatten();
            return report.failed(&format!(
                "Generation {n} was not confirmed: the host is back on generation {}.",
                generation_name(back_on)
            ));
        }
        Err(e) => return report.failed(&format!("{e}")),
    };
    if req.git_commit {
        match apply::commit_host_file(host_file, number) {
            Ok(message) => report.say(&message),
            Err(message) => report.say(&format!("git commit failed: {message}")),
        }
    }
    report.done(
        &format!("Done: the host is on generation {number}."),
        Some(number),
    );
}

#[derive(Deserialize, Default)]
struct ConfirmRequest {
    /// The generation the page shows as waiting; refused if it is not the
    /// one waiting, or was rolled back already.
    generation: Option<u64>,
}

/// `POST /api/confirm`: keeps an apply made with a confirm timeout.
async fn confirm(State(state): State<Shared>, body: Option<Json<ConfirmRequest>>) -> ApiResult {
    let req = body.map(|Json(r)| r).unwrap_or_default();
    state
        .clone()
        .workers
        .run(0, move || {
            let confirmed = apply::confirm(&state.target(), req.generation, &mut server_log)?;
            Ok(Json(json!({ "confirmed": confirmed })))
        })
        .await
}

impl AppState {
    /// Where the status document's live parts come from.
    pub(super) fn sources(&self) -> Sources<'_> {
        let config = &self.config;
        Sources {
            host_file: config.host_file.as_deref(),
            resources: config.resources.as_ref(),
            files_only_reason: config.files_only_reason.clone(),
        }
    }
}

/// `GET /api/status`: the status document (as `ctm status --json`).
async fn status(State(state): State<Shared>) -> ApiResult {
    state
        .clone()
        .workers
        .run(0, move || {
            let sources = state.sources();
            let status = crate::engine::status::status(
                &state.target(),
                Access::ReadShared,
                &sources,
                &mut server_log,
            )?;
            Ok(Json(json!(status)))
        })
        .await
}

/// `GET /api/generations`: every generation (newest first), the current
/// one, any apply waiting for confirmation, and the ones rolled back for
/// want of one.
async fn generations(State(state): State<Shared>) -> ApiResult {
    state
        .clone()
        .workers
        .run(0, move || {
            let mut list = generations::list(&state.target(), Access::ReadShared, &mut server_log)?;
            list.generations.reverse();
            Ok(Json(json!(list)))
        })
        .await
}

/// `GET /api/images`: the images, as `ctm images --json` lists them.
async fn images_list(State(state): State<Shared>) -> ApiResult {
    state
        .clone()
        .workers
        .run(0, move || {
            let list = images::list(&state.target(), Access::ReadShared, &mut server_log)?;
            Ok(Json(json!(list)))
        })
        .await
}

/// `POST /api/images/{name}/pull`: a job that builds, pulls or unpacks
/// image `name` of the current generation into the store, as `ctm image
/// pull NAME` does; its events are the pull's progress.
async fn image_pull(
    State(state): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    state.may_change()?;
    let name = Name::parse(&name).map_err(ApiError::bad_request)?;
    let job_state = state.clone();
    let id = state
        .jobs
        .start("pull", move |ready, report| {
            ready.accept();
            let target = job_state.target();
            match images::pull(
                &target,
                name.as_str(),
                images::Definition::Current,
                &mut |e| report.event(e),
            ) {
                Ok(path) => {
                    let current = target.store().current().ok().flatten();
                    report.done(&format!("Pulled image {name} into {path}."), current);
                }
                Err(e) => report.failed(&format!("{e}")),
            }
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "job": id }))))
}

/// `POST /api/images/{name}/remove`: removes image `name` from the store,
/// as `ctm image rm NAME` does: refused (409) while a container of the
/// current generation is made from it, 404 when the store has none.
async fn image_remove(State(state): State<Shared>, UrlPath(name): UrlPath<String>) -> ApiResult {
    state.may_change()?;
    let name = Name::parse(&name).map_err(ApiError::bad_request)?;
    state
        .clone()
        .workers
        .run(0, move || {
            let removed = images::remove(&state.target(), name.as_str(), &mut server_log)?;
            Ok(Json(json!({ "removed": removed })))
        })
        .await
}

/// `GET /api/tunnels`: the tunnels of the current generation with their
/// live state, as `ctm tunnel status --json` prints them.
async fn tunnels_list(State(state): State<Shared>) -> ApiResult {
    state
        .clone()
        .workers
        .run(0, move || {
            let list = tunnels::status(&state.target(), None, Access::ReadShared, &mut server_log)?;
            Ok(Json(json!(list)))
        })
        .await
}

/// `GET /api/tunnels/{name}/diagnose`: why the tunnel does not carry
/// traffic, as `ctm tunnel diagnose NAME --json` prints it. It changes
/// nothing (the repairs an apply makes stay with `ctm tunnel diagnose
/// --fix`, or an apply of the current generation).
async fn tunnel_diagnose(State(state): State<Shared>, UrlPath(name): UrlPath<String>) -> ApiResult {
    let name = IfName::parse(&name).map_err(ApiError::bad_request)?;
    state
        .clone()
        .workers
        .run(0, move || {
            let found = tunnels::diagnose(
                &state.target(),
                name.as_str(),
                Access::ReadShared,
                &mut server_log,
            )?;
            Ok(Json(json!(found)))
        })
        .await
}

/// `GET /api/topologies`: the topologies of the current generation, each
/// up or down with its members, as `ctm topologies --json` prints them.
async fn topologies_list(State(state): State<Shared>) -> ApiResult {
    state
        .clone()
        .workers
        .run(0, move || {
            let list = topologies::list(&state.target())?;
            Ok(Json(json!(list)))
        })
        .await
}

/// What the user confirmed in the browser: the plan with `fingerprint`,
/// of a host that `what` names as what may have changed since.
fn shown<'a>(fingerprint: &'a str, what: &'static str) -> Seen<'a> {
    Seen {
        fingerprint,
        from_generation: None,
        when: "the plan was shown".into(),
        what,
    }
}

/// The answer to a request that starts a change as a job: accepted with
/// the prepared change to carry out, or refused with why it could not be
/// prepared or why its plan must not go ahead (`refusal`).
fn go_ahead<P, E: Into<ApiError>>(
    ready: Ready,
    prepared: Result<P, E>,
    refusal: impl FnOnce(&P) -> Option<Refused>,
) -> Option<P> {
    let checked = prepared
        .map_err(Into::into)
        .and_then(|p| match refusal(&p) {
            Some(refused) => Err(ApiError::from(refused)),
            None => Ok(p),
        });
    match checked {
        Ok(p) => {
            ready.accept();
            Some(p)
        }
        Err(e) => {
            ready.refuse(e);
            None
        }
    }
}

/// The plan of moving a topology up or down, shown before the user
/// decides, as `ctm up NAME` / `ctm down NAME` shows it before asking.
async fn topology_plan(state: Shared, name: String, direction: Direction) -> ApiResult {
    state
        .clone()
        .workers
        .run(0, move || {
            let plan = topologies::plan(
                &state.target(),
                &name,
                direction,
                Access::ReadShared,
                &mut server_log,
            )?;
            Ok(Json(json!({
                "topology": name,
                "direction": direction,
                "plan": plan_json(&plan),
            })))
        })
        .await
}

/// `GET /api/topologies/{name}/up`: the plan of bringing it up.
async fn topology_up_plan(
    State(state): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult {
    topology_plan(state, name, Direction::Up).await
}

/// `GET /api/topologies/{name}/down`: the plan of bringing it down.
async fn topology_down_plan(
    State(state): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult {
    topology_plan(state, name, Direction::Down).await
}

#[derive(Deserialize)]
struct MoveRequest {
    /// The fingerprint of the plan the user saw and confirmed.
    fingerprint: String,
}

/// Moves a topology up or down as `ctm up NAME` / `ctm down NAME` does,
/// if the plan still has the fingerprint the user saw. Answers 202 with
/// the job.
async fn topology_move(
    state: Shared,
    name: String,
    direction: Direction,
    req: MoveRequest,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    state.may_change()?;
    let job_state = state.clone();
    let kind = match direction {
        Direction::Up => "topology up",
        Direction::Down => "topology down",
    };
    let id = state
        .jobs
        .start(kind, move |ready, report| {
            let target = job_state.target();
            let seen = shown(&req.fingerprint, "the host");
            let prepared = topologies::prepare(&target, &name, direction, Some(&seen), &mut |e| {
                report.event(e)
            });
            let Some(prepared) = go_ahead(ready, prepared, apply::PreparedApply::refusal) else {
                return;
            };
            match apply::apply(&target, prepared, None, Runner::Foreground, &mut |e| {
                report.event(e)
            }) {
                Ok(applied) => {
                    let current = target.store().current().ok().flatten();
                    report.done(&topologies::ended(&name, direction, applied), current);
                }
                Err(e) => report.failed(&format!("{e}")),
            }
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "job": id }))))
}

/// `POST /api/topologies/{name}/up`: a job that brings it up.
async fn topology_up(
    State(state): State<Shared>,
    UrlPath(name): UrlPath<String>,
    Json(req): Json<MoveRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    topology_move(state, name, Direction::Up, req).await
}

/// `POST /api/topologies/{name}/down`: a job that brings it down.
async fn topology_down(
    State(state): State<Shared>,
    UrlPath(name): UrlPath<String>,
    Json(req): Json<MoveRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    topology_move(state, name, Direction::Down, req).await
}

/// `GET /api/generations/{a}/diff/{b}`: the files that differ, as
/// `ctm diff A B` shows them.
async fn diff(State(state): State<Shared>, UrlPath((a, b)): UrlPath<(u64, u64)>) -> ApiResult {
    state
        .clone()
        .workers
        .run(0, move || {
            let files =
                generations::diff(&state.target(), a, b, Access::ReadShared, &mut server_log)?;
            Ok(Json(json!({ "from": a, "to": b, "files": files })))
        })
        .await
}

/// `GET /api/rollback/{generation}`: the plan of returning to it, shown
/// before the user decides.
async fn rollback_plan(State(state): State<Shared>, UrlPath(target): UrlPath<u64>) -> ApiResult {
    state
        .clone()
        .workers
        .run(0, move || {
            let mut session = Session::open(&state.target(), Access::ReadShared, &mut server_log)?;
            let desired = session.store.artifacts(target)?;
            let plan = session.plan(&desired, plan::Options::default(), &mut server_log)?;
            Ok(Json(
                json!({ "generation": target, "plan": plan_json(&plan) }),
            ))
        })
        .await
}

#[derive(Deserialize)]
struct RollbackRequest {
    generation: u64,
    fingerprint: String,
}

/// `POST /api/rollback`: returns the host to a generation, if the plan
/// still has the fingerprint the user saw. Answers 202 with the job.
async fn rollback(
    State(state): State<Shared>,
    Json(req): Json<RollbackRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    state.may_change()?;
    let job_state = state.clone();
    let id = state
        .jobs
        .start("rollback", move |ready, report| {
            let target = job_state.target();
            let seen = shown(&req.fingerprint, "the host");
            let prepared =
                apply::prepare_rollback(&target, Some(req.generation), Some(&seen), &mut |e| {
                    report.event(e)
                });
            let Some(prepared) = go_ahead(ready, prepared, apply::PreparedRollback::refusal) else {
                return;
            };
            match apply::roll_back(&target, prepared, Runner::Foreground, &mut |e| {
                report.event(e)
            }) {
                Ok(()) => report.done(
                    &format!("Rolled back: the host is on generation {}.", req.generation),
                    Some(req.generation),
                ),
                Err(e) => report.failed(&format!("{e}")),
            }
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "job": id }))))
}

#[derive(Deserialize)]
struct EditReadRequest {
    text: String,
    kind: edit::Kind,
    name: String,
}

/// `POST /api/edit/read`: the form values of one network or container of
/// the text, and the names there are to choose from.
async fn edit_read(State(state): State<Shared>, Json(req): Json<EditReadRequest>) -> ApiResult {
    let format = crate::config::Format::from_path(state.host_file()?);
    state
        .workers
        .run(req.text.len(), move || {
            let values = edit::read(&req.text, format, req.kind, &req.name)
                .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
            Ok(Json(json!({ "values": values })))
        })
        .await
}

#[derive(Deserialize)]
struct EditRequest {
    text: String,
    #[serde(flatten)]
    edit: edit::Edit,
}

/// `POST /api/edit`: the text with one network or container added or
/// changed, every other byte as it was (comments and formatting kept).
async fn edit_apply(State(state): State<Shared>, Json(req): Json<EditRequest>) -> ApiResult {
    let format = crate::config::Format::from_path(state.host_file()?);
    state
        .workers
        .run(req.text.len(), move || {
            let text = edit::apply(&req.text, format, &req.edit)
                .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
            Ok(Json(json!({ "text": text })))
        })
        .await
}

/// A container's name from the path, or 400.
fn container_name(name: &str) -> Result<Name, ApiError> {
    Name::parse(name).map_err(ApiError::bad_request)
}

/// How many of a container's last log lines its page shows.
const PAGE_LOG_LINES: u32 = 50;

/// `GET /api/containers/{name}`: the container page's document.
async fn container(State(state): State<Shared>, UrlPath(name): UrlPath<String>) -> ApiResult {
    let name = container_name(&name)?;
    state
        .clone()
        .workers
        .run(0, move || {
            let detail = containers::detail(
                &state.target(),
                &state.sources(),
                state.config.journal.as_ref(),
                &name,
                PAGE_LOG_LINES,
                &mut server_log,
            )?;
            Ok(Json(json!(detail)))
        })
        .await
}

/// `GET /api/containers/{name}/stats`: one sample of what it uses.
async fn container_stats(State(state): State<Shared>, UrlPath(name): UrlPath<String>) -> ApiResult {
    let name = container_name(&name)?;
    state
        .clone()
        .workers
        .run(0, move || {
            let sample = containers::sample(&state.target(), &name, &mut server_log)?;
            Ok(Json(json!(sample)))
        })
        .await
}

/// Start, stop or restart: a job, as they take a while (a start makes
/// the root file system and provisions it when they are missing), once
/// the container is known to be one ctm runs here.
async fn act(
    state: Shared,
    name: String,
    verb: Verb,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    container_job(state, name, verb.name(), move |target, name, events| {
        containers::act(target, verb, name, events)?;
        Ok(format!("{} container {name}.", verb.done()))
    })
    .await
}

/// A job of `what` on container `name`, once the container is known to
/// be one ctm runs here: `work` runs in it with the job's events and
/// gives the line its end reports.
async fn container_job(
    state: Shared,
    name: String,
    what: &'static str,
    work: impl FnOnce(
        &crate::engine::session::Target,
        &Name,
        crate::engine::events::Events<'_>,
    ) -> miette::Result<String>
    + Send
    + 'static,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    state.may_change()?;
    let name = container_name(&name)?;
    let (target, checked) = (state.target(), name.clone());
    state
        .workers
        .run(0, move || {
            containers::check(&target, &checked, what, &mut server_log).map_err(ApiError::from)
        })
        .await?;
    let job_state = state.clone();
    let id = state
        .jobs
        .start(what, move |ready, report| {
            ready.accept();
            let target = job_state.target();
            match work(&target, &name, &mut |e| report.event(e)) {
                Ok(line) => {
                    let current = target.store().current().ok().flatten();
                    report.done(&line, current);
                }
                Err(e) => report.failed(&format!("{e}")),
            }
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "job": id }))))
}

/// `POST /api/containers/{name}/start`: a job that starts it.
async fn start(
    State(state): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    act(state, name, Verb::Start).await
}

/// `POST /api/containers/{name}/stop`: a job that stops it.
async fn stop(
    State(state): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    act(state, name, Verb::Stop).await
}

/// `POST /api/containers/{name}/restart`: a job that restarts it.
async fn restart(
    State(state): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    act(state, name, Verb::Restart).await
}

/// Pause, resume and kill are done at once: the answer says so.
async fn at_once(
    state: Shared,
    name: String,
    done: impl FnOnce(&crate::engine::Target, &Name) -> miette::Result<String> + Send + 'static,
) -> ApiResult {
    state.may_change()?;
    let name = container_name(&name)?;
    state
        .clone()
        .workers
        .run(0, move || {
            let message = done(&state.target(), &name)?;
            Ok(Json(json!({ "done": message })))
        })
        .await
}

/// `POST /api/containers/{name}/pause`: freezes its processes.
async fn pause(State(state): State<Shared>, UrlPath(name): UrlPath<String>) -> ApiResult {
    at_once(state, name, |target, name| {
        containers::set_paused(target, name, true, &mut server_log)?;
        Ok(format!("Paused container {name}."))
    })
    .await
}

/// `POST /api/containers/{name}/resume`: thaws them.
async fn resume(State(state): State<Shared>, UrlPath(name): UrlPath<String>) -> ApiResult {
    at_once(state, name, |target, name| {
        containers::set_paused(target, name, false, &mut server_log)?;
        Ok(format!("Resumed container {name}."))
    })
    .await
}

#[derive(Deserialize)]
struct KillRequest {
    /// `TERM`, `SIGKILL`, `9`: as `ctm kill --signal`.
    signal: String,
}

/// `POST /api/containers/{name}/kill`: sends a signal to every process.
async fn kill(
    State(state): State<Shared>,
    UrlPath(name): UrlPath<String>,
    Json(req): Json<KillRequest>,
) -> ApiResult {
    let signal = containers::parse_signal(&req.signal).map_err(ApiError::bad_request)?;
    at_once(state, name, move |target, name| {
        containers::kill(target, name, signal, &mut server_log)?;
        Ok(format!("Sent signal {} to container {name}.", req.signal))
    })
    .await
}

/// `GET /api/containers/{name}/backups`: its snapshots, and its archives
/// in the default backup directory and its `backup` block's, oldest
/// first.
async fn backups_list(State(state): State<Shared>, UrlPath(name): UrlPath<String>) -> ApiResult {
    let name = container_name(&name)?;
    state
        .clone()
        .workers
        .run(0, move || {
            let target = state.target();
            let snapshots = crate::engine::snapshots::list(&target, Some(&name))?;
            let archives = crate::engine::backups::archives(&target, &name)?;
            Ok(Json(json!({
                "container": name.as_str(),
                "snapshots": snapshots,
                "archives": archives,
            })))
        })
        .await
}

/// `POST /api/containers/{name}/snapshot`: a job that takes a snapshot.
async fn snapshot_now(
    State(state): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    container_job(state, name, "snapshot", |target, name, events| {
        let options = crate::engine::snapshots::Options::default();
        let taken = crate::engine::snapshots::snapshot(target, name, options, events)?;
        Ok(format!("Took snapshot {} of container {name}.", taken.id))
    })
    .await
}

/// `POST /api/containers/{name}/backup`: a job that makes an archive in
/// the default backup directory.
async fn backup_now(
    State(state): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    container_job(state, name, "backup", |target, name, events| {
        let options = crate::engine::backups::BackupOptions::default();
        let made = crate::engine::backups::backup(target, name, &options, events)?;
        Ok(format!("Made archive {} of container {name}.", made.id))
    })
    .await
}

/// `GET /api/containers/{name}/archives/{id}/download`: the archive file,
/// as an attachment. The file is the one the listing names for `id`,
/// never a path made of the request: an id that is not in the list (a
/// `../` included) is not found.
async fn archive_download(
    State(state): State<Shared>,
    UrlPath((name, id)): UrlPath<(String, String)>,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::header;
    let name = container_name(&name)?;
    let target = state.target();
    let wanted = id.clone();
    let (listed, file) = state
        .workers
        .run(0, move || {
            let listed = crate::engine::backups::archives(&target, &name)?
                .into_iter()
                .find(|l| l.id == wanted)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        format!("container {name} has no archive {wanted}"),
                    )
                })?;
            let file = std::fs::File::open(&listed.path).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("opening {}: {e}", listed.path.display()),
                )
            })?;
            Ok((listed, file))
        })
        .await?;
    // Read on a thread of its own, a chunk at a time, as the client takes it.
    let (send, receive) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    std::thread::spawn(move || {
        use std::io::Read as _;
        let mut file = file;
        loop {
            let mut chunk = vec![0; 256 * 1024];
            match file.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    if send.blocking_send(Ok(chunk)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = send.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(receive, |mut receive| async move {
        receive.recv().await.map(|chunk| (chunk, receive))
    });
    let file_name = crate::backend::archive::file_name(&listed.subject, &listed.id);
    axum::response::Response::builder()
        .header(header::CONTENT_TYPE, "application/zstd")
        .header(header::CONTENT_LENGTH, listed.bytes)
        // A validated name and id: letters, digits, `-`, `.` only.
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file_name}\""),
        )
        .body(axum::body::Body::from_stream(stream))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// An id of a snapshot or archive from the path: ctm's ids are letters,
/// digits and `-`; anything else is none of them.
fn restore_id(id: &str) -> Result<String, ApiError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("there is no snapshot or archive {id:?}"),
        ));
    }
    Ok(id.to_string())
}

/// The preview of a restore, shown before it is done.
async fn restore_preview(state: Shared, name: String, kind: RestoreKind, id: String) -> ApiResult {
    let name = container_name(&name)?;
    let id = restore_id(&id)?;
    state
        .clone()
        .workers
        .run(0, move || {
            let preview = restores::preview(&state.target(), &name, kind, &id, &mut server_log)?;
            Ok(Json(json!(preview)))
        })
        .await
}

/// `GET /api/containers/{name}/snapshots/{id}/restore`: what restoring
/// the snapshot does, with the key its restore takes.
async fn snapshot_restore_preview(
    State(state): State<Shared>,
    UrlPath((name, id)): UrlPath<(String, String)>,
) -> ApiResult {
    restore_preview(state, name, RestoreKind::Snapshot, id).await
}

/// `GET /api/containers/{name}/archives/{id}/restore`: what restoring the
/// archive does, with the key its restore takes.
async fn archive_restore_preview(
    State(state): State<Shared>,
    UrlPath((name, id)): UrlPath<(String, String)>,
) -> ApiResult {
    restore_preview(state, name, RestoreKind::Archive, id).await
}

#[derive(Deserialize)]
struct RestoreRequest {
    /// The key of the preview the user saw.
    key: String,
}

/// A restore as a job, once its preview still has the key the user saw
/// and nothing blocks it (refused with the reason otherwise, nothing
/// changed). Answers 202 with the job.
async fn restore_job(
    state: Shared,
    name: String,
    kind: RestoreKind,
    id: String,
    key: String,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    state.may_change()?;
    let name = container_name(&name)?;
    let id = restore_id(&id)?;
    let job_state = state.clone();
    let job = state
        .jobs
        .start("restore", move |ready, report| {
            let target = job_state.target();
            let shown =
                match restores::check(&target, &name, kind, &id, &key, &mut |e| report.event(e)) {
                    Ok(shown) => shown,
                    Err(e) => return ready.refuse(ApiError::from(e)),
                };
            ready.accept();
            match restores::restore(&target, &name, &shown, &mut |e| report.event(e)) {
                Ok(done) => {
                    let current = target.store().current().ok().flatten();
                    report.done(
                        &format!(
                            "Restored {} into container {name}; what it replaced is snapshot {}.",
                            shown.what(),
                            done.kept
                        ),
                        current,
                    );
                }
                Err(e) => report.failed(&format!("{e}")),
            }
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "job": job }))))
}

/// `POST /api/containers/{name}/snapshots/{id}/restore`: restores the
/// snapshot, if its preview still has the key sent.
async fn snapshot_restore(
    State(state): State<Shared>,
    UrlPath((name, id)): UrlPath<(String, String)>,
    Json(req): Json<RestoreRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    restore_job(state, name, RestoreKind::Snapshot, id, req.key).await
}

/// `POST /api/containers/{name}/archives/{id}/restore`: restores the
/// archive, if its preview still has the key sent.
async fn archive_restore(
    State(state): State<Shared>,
    UrlPath((name, id)): UrlPath<(String, String)>,
    Json(req): Json<RestoreRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    restore_job(state, name, RestoreKind::Archive, id, req.key).await
}

/// `GET /api/volumes`: every volume with what it holds, its quota, the
/// containers that mount it and its newest archive.
async fn volumes_list(State(state): State<Shared>) -> ApiResult {
    state
        .clone()
        .workers
        .run(0, move || {
            let volumes = crate::engine::volumes::list(&state.target(), &mut server_log)?;
            Ok(Json(json!({ "volumes": volumes })))
        })
        .await
}
