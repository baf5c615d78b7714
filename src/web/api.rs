//! The JSON API under `/api/` (documented in docs/openapi.yaml). Each
//! handler calls what the matching CLI command calls: `check`'s validator
//! and JSON, `plan`'s session and plan, `apply`'s and `rollback`'s switch.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::jobs::{Ready, Reporter};
use super::{ApiError, AppState, Config, Shared, blocking, dashboard, edit, jobs, logs};
use crate::cli::apply::{switch_to_new, wait_for_confirmation, write_lock};
use crate::cli::generations::{file_diffs, roll_back_to};
use crate::cli::plan::{Desired, summary};
use crate::cli::{Outcome, lock_path_for, read_lock, validate_text_with};
use crate::clock::now_unix;
use crate::compile;
use crate::fs;
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
        .route("/api/generations/{a}/diff/{b}", get(diff))
        .route("/api/rollback/{generation}", get(rollback_plan))
        .route("/api/rollback", post(rollback))
        .route("/api/jobs/{id}", get(jobs::events))
        .route("/api/logs/{name}", get(logs::stream))
        .route("/api/edit/read", post(edit_read))
        .route("/api/edit", post(edit_apply))
}

type ApiResult = Result<Json<Value>, ApiError>;

/// A plan as `ctm plan --json` prints it, each action with the line
/// `ctm plan` shows for it (`summary`) as well.
fn plan_json(plan: &Plan) -> Value {
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
    let config = &state.config;
    let lock_path = lock_path_for(&config.host_file);
    let lock_text = read_lock(&lock_path)?;
    Ok(validate_text_with(
        &config.host_file,
        text,
        lock_path,
        lock_text,
        |text| state.memory.parse_lock(text),
    ))
}

/// `GET /api/source`: the host file as it is on disk.
async fn source(State(state): State<Shared>) -> ApiResult {
    blocking(move || {
        let path = &state.config.host_file;
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

fn text_or_disk(config: &Config, text: Option<String>) -> Result<String, ApiError> {
    match text {
        Some(text) => Ok(text),
        None => read_host_file(&config.host_file),
    }
}

/// `POST /api/validate`: `ctm check --format json` of the text.
async fn validate(State(state): State<Shared>, Json(req): Json<TextRequest>) -> ApiResult {
    blocking(move || {
        let text = text_or_disk(&state.config, req.text)?;
        Ok(Json(check(&state, text)?.diagnostics_json()))
    })
    .await
}

/// `POST /api/plan`: the check, and when the text is valid, `ctm plan
/// --json` of it against the root.
async fn plan(State(state): State<Shared>, Json(req): Json<TextRequest>) -> ApiResult {
    blocking(move || {
        let config = &state.config;
        let outcome = check(&state, text_or_disk(config, req.text)?)?;
        let check = outcome.diagnostics_json();
        // Only the artifacts: a preview has no use for what an apply also
        // takes along (the lock file to write, copies of both texts).
        let Some(validated) = &outcome.validated else {
            return Ok(Json(json!({ "check": check, "plan": null })));
        };
        let artifacts = compile::compile(&validated.host);
        let mut session = state.reading_session()?;
        let plan = session.plan(&artifacts, adopting(req.adopt))?;
        Ok(Json(json!({
            "check": check,
            "host": summary(&validated.host),
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
    let state = state.clone();
    blocking(move || {
        let path = &state.config.host_file;
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
        let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        let mode = std::fs::metadata(&target).map_or(0o644, |m| m.permissions().mode() & 0o7777);
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
    /// Seconds to wait for `POST /api/confirm` before rolling back.
    confirm_timeout: Option<u64>,
    /// Commit the host file and its lock with git after the apply.
    #[serde(default)]
    git_commit: bool,
}

fn stale(what: &str) -> ApiError {
    ApiError::conflict(format!(
        "stale plan: {what} changed since the plan was shown; nothing was applied"
    ))
    .with("help", json!("look at the new plan, then apply again"))
}

/// `POST /api/apply`: applies the saved host file, if its plan still has
/// the fingerprint the user confirmed. Answers 202 with the job to follow.
async fn apply(
    State(state): State<Shared>,
    Json(req): Json<ApplyRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if req.confirm_timeout == Some(0) {
        return Err(ApiError::bad_request(
            "confirm_timeout must be at least 1 second",
        ));
    }
    let job_state = state.clone();
    let id = state
        .jobs
        .start("apply", move |ready, report| {
            apply_job(&job_state, &req, ready, report)
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "job": id }))))
}

fn apply_job(state: &AppState, req: &ApplyRequest, ready: Ready, report: &Reporter) {
    let config = &state.config;
    let root = config.root_args();
    let prepared = (|| {
        let outcome = crate::cli::load_and_validate(&config.host_file, None)?;
        let desired = Desired::compile(&outcome).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the saved host file has errors; fix them in the editor first",
            )
            .with("check", outcome.diagnostics_json())
        })?;
        let mut session = state.changing_session(true)?;
        let plan = session.plan(&desired.artifacts, adopting(req.adopt))?;
        if plan.fingerprint != req.fingerprint {
            return Err(stale("the host or the saved host file"));
        }
        if !plan.conflicts.is_empty() {
            return Err(
                ApiError::conflict("the plan has conflicts; nothing was applied")
                    .with("conflicts", json!(plan.conflicts)),
            );
        }
        Ok((desired, session, plan))
    })();
    let (desired, mut session, plan) = match prepared {
        Ok(p) => p,
        Err(e) => return ready.refuse(e),
    };
    ready.accept();
    if plan.is_empty() {
        if let Some(message) = write_lock(&desired) {
            report.say(&message);
        }
        return report.done(
            "No changes. The host matches the host file.",
            plan.from_generation,
        );
    }
    let number = match session.store.next_number() {
        Ok(n) => n,
        Err(e) => return report.failed(&e.to_string()),
    };
    let deadline = req.confirm_timeout.map(|s| now_unix() + s);
    report.say(&format!("Applying generation {number} …"));
    let switched = switch_to_new(
        &mut session,
        number,
        &desired,
        &plan,
        deadline,
        &mut |line| report.say(line),
    );
    if let Err(e) = switched {
        return report.failed(&format!("{e}"));
    }
    report.say(if session.system.is_live() {
        "Health check passed."
    } else {
        "Health check: nothing to check on a files-only root."
    });
    if let Some(message) = write_lock(&desired) {
        report.say(&message);
    }
    report.say(&format!("Applied: the host is on generation {number}."));
    // Let `confirm` take the lock while this job waits.
    let timer_armed = session.system.is_live();
    drop(session);
    if let Some(deadline) = deadline {
        report.waiting(
            &format!(
                "Confirm before the deadline, or the host returns to generation {}.",
                plan.from_generation
                    .map_or("none".into(), |n| n.to_string())
            ),
            deadline,
        );
        match wait_for_confirmation(&root, number, timer_armed, &mut |m| report.say(m)) {
            Ok(true) => {}
            Ok(false) => {
                return report.failed(&format!(
                    "Generation {number} was not confirmed: the host is back on generation {}.",
                    plan.from_generation
                        .map_or("none".into(), |n| n.to_string())
                ));
            }
            Err(e) => return report.failed(&format!("{e}")),
        }
    }
    if req.git_commit {
        match git_commit(&config.host_file, number) {
            Ok(message) => report.say(&message),
            Err(message) => report.say(&format!("git commit failed: {message}")),
        }
    }
    report.done(
        &format!("Done: the host is on generation {number}."),
        Some(number),
    );
}

/// Commits the host file and its lock in the git repository holding them.
fn git_commit(host_file: &Path, generation: u64) -> Result<String, String> {
    let dir = host_file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = host_file
        .file_name()
        .ok_or("the host file has no file name")?
        .to_string_lossy()
        .into_owned();
    let lock = format!("{name}.lock");
    let mut files = vec![name.as_str()];
    if dir.join(&lock).exists() {
        files.push(&lock);
    }
    let git = |args: &[&str]| -> Result<String, String> {
        let output = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            Ok(text)
        } else {
            Err(text.trim().to_string())
        }
    };
    let mut add = vec!["add", "--"];
    add.extend(&files);
    git(&add)?;
    if git(&["diff", "--cached", "--quiet", "--"]).is_ok() {
        return Ok("git: nothing to commit, the host file and lock are committed already".into());
    }
    let message = format!("ctm apply: generation {generation}");
    let mut commit = vec!["commit", "-q", "-m", &message, "--"];
    commit.extend(&files);
    git(&commit)?;
    Ok(format!(
        "git: committed {} ({message})",
        files.join(" and ")
    ))
}

/// `POST /api/confirm`: keeps an apply made with a confirm timeout.
async fn confirm(State(state): State<Shared>) -> ApiResult {
    blocking(move || {
        let session = state.changing_session(false)?;
        let pending = session.store.pending_confirm()?;
        if pending.is_some() {
            session.store.clear_pending_confirm()?;
        }
        Ok(Json(json!({
            "confirmed": pending.map(|p| p.generation),
        })))
    })
    .await
}

/// `GET /api/status`: what the dashboard shows.
async fn status(State(state): State<Shared>) -> ApiResult {
    blocking(move || Ok(Json(dashboard::status(&state)?))).await
}

/// `GET /api/generations`: every generation, the current one and any
/// apply waiting for confirmation.
async fn generations(State(state): State<Shared>) -> ApiResult {
    blocking(move || {
        let session = state.reading_session()?;
        let store = &session.store;
        let current = store.current()?;
        let mut list = Vec::new();
        for n in store.generations()?.into_iter().rev() {
            list.push(json!({
                "generation": store.load(n)?.meta,
                "current": current == Some(n),
            }));
        }
        Ok(Json(json!({
            "current": current,
            "pending_confirm": store.pending_confirm()?,
            "generations": list,
        })))
    })
    .await
}

/// `GET /api/generations/{a}/diff/{b}`: the files that differ, as
/// `ctm diff A B` shows them.
async fn diff(State(state): State<Shared>, UrlPath((a, b)): UrlPath<(u64, u64)>) -> ApiResult {
    blocking(move || {
        let session = state.reading_session()?;
        let (from, to) = (session.store.artifacts(a)?, session.store.artifacts(b)?);
        let files: Vec<Value> = file_diffs(&from, &to, &a.to_string(), &b.to_string())
            .into_iter()
            .map(|(path, diff)| json!({ "path": path, "diff": diff }))
            .collect();
        Ok(Json(json!({ "from": a, "to": b, "files": files })))
    })
    .await
}

/// `GET /api/rollback/{generation}`: the plan of returning to it, shown
/// before the user decides.
async fn rollback_plan(State(state): State<Shared>, UrlPath(target): UrlPath<u64>) -> ApiResult {
    blocking(move || {
        let mut session = state.reading_session()?;
        let desired = session.store.artifacts(target)?;
        let plan = session.plan(&desired, plan::Options::default())?;
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
    let job_state = state.clone();
    let id = state
        .jobs
        .start("rollback", move |ready, report| {
            let prepared = (|| {
                let mut session = job_state.changing_session(true)?;
                let desired = session.store.artifacts(req.generation)?;
                let plan = session.plan(&desired, plan::Options::default())?;
                if plan.fingerprint != req.fingerprint {
                    return Err(stale("the host"));
                }
                if plan.from_generation == Some(req.generation) {
                    return Err(ApiError::conflict(format!(
                        "the host is already on generation {}",
                        req.generation
                    )));
                }
                if !plan.conflicts.is_empty() {
                    return Err(
                        ApiError::conflict("the plan has conflicts; nothing was changed")
                            .with("conflicts", json!(plan.conflicts)),
                    );
                }
                Ok((session, desired, plan))
            })();
            let (mut session, desired, plan) = match prepared {
                Ok(p) => p,
                Err(e) => return ready.refuse(e),
            };
            ready.accept();
            report.say(&format!("Rolling back to generation {} …", req.generation));
            match roll_back_to(&mut session, req.generation, &desired, &plan, &mut |l| {
                report.say(l)
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
    let format = crate::config::Format::from_path(&state.config.host_file);
    let values = edit::read(&req.text, format, req.kind, &req.name)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    Ok(Json(json!({ "values": values })))
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
    let format = crate::config::Format::from_path(&state.config.host_file);
    let text = edit::apply(&req.text, format, &req.edit)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    Ok(Json(json!({ "text": text })))
}
