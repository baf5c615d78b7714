//! `ctm serve`: the web editor, a thin face over the application layer
//! (`engine`): the same use cases as the command line, so the web never
//! does anything the CLI cannot, and never does it differently.
//!
//! One module per concern: [`auth`] (token, login, sessions, CSRF and the
//! security headers), [`api`] (the JSON API under `/api/`), [`pages`] (the
//! HTML shells the scripts fill in), [`assets`] (the bundled Bootstrap and
//! CodeMirror), [`jobs`] (apply, rollback and the container verbs streamed
//! over SSE), [`logs`] (a container's journal), [`console`] (a terminal in
//! a container over a WebSocket), [`metrics`] (`/metrics`) and [`fleet`]
//! (the fleet page's API, `ctm serve --fleet`).

pub mod api;
pub mod assets;
pub mod auth;
pub mod console;
pub mod fleet;
pub mod jobs;
pub mod logs;
pub mod metrics;
pub mod pages;
pub mod serve;
pub mod workers;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::backend::cgroups::{Cgroups, NoResources, Resources};
use crate::backend::journal::{Journal, Journalctl, NoJournal};
use crate::engine::{Refused, Target};
use crate::state::{Memory, StateError};

/// How long a web request waits for another ctm to let go of the lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The longest a live path that inotify vouches for goes without being
/// looked at (`live::watch`): the bound on how late a plan shows a write
/// through a memory mapping, the one change inotify does not report.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// What `ctm serve` serves: one host file, managed under one root, and
/// a fleet's page, or either alone.
pub struct Config {
    /// `None`: a fleet's page only (`ctm serve --fleet FLEET`); the host
    /// file's pages and API are then not served.
    pub host_file: Option<PathBuf>,
    /// The fleet of `--fleet`, if any.
    pub fleet: Option<fleet::FleetConfig>,
    pub root: PathBuf,
    pub resources: Box<dyn Resources>,
    pub journal: Box<dyn Journal>,
    /// On `/`: why the running system cannot be driven, so that the
    /// server manages files only (shown on every page).
    pub files_only_reason: Option<String>,
    /// Apply to `/` even so (`ctm serve --files-only`).
    pub allow_files_only: bool,
    /// The system every session drives, when not the one the root calls
    /// for (the recording fake of `backend::recording`, in tests).
    pub system: Option<crate::engine::session::SystemFactory>,
}

impl Config {
    /// The real sources of live data: cgroups and journalctl when the root
    /// is the running system, none otherwise.
    pub fn new(host_file: Option<PathBuf>, root: PathBuf) -> Config {
        let target = Target::new(&root);
        let files_only_reason = crate::engine::session::files_only_reason(&target);
        let live = target.is_system_root() && files_only_reason.is_none();
        Config {
            resources: if live {
                Box::new(Cgroups::new(Path::new("/sys/fs/cgroup")))
            } else {
                Box::new(NoResources)
            },
            journal: if live {
                Box::new(Journalctl { root: root.clone() })
            } else {
                Box::new(NoJournal)
            },
            host_file,
            fleet: None,
            root,
            files_only_reason,
            allow_files_only: false,
            system: None,
        }
    }
}

pub struct AppState {
    pub config: Config,
    pub auth: auth::Auth,
    pub jobs: jobs::Jobs,
    /// Serializes saves of the host file within this server; the check
    /// against the text on disk catches every other writer.
    pub save_lock: tokio::sync::Mutex<()>,
    /// The current generation's manifest and the stat cache, kept between
    /// plans instead of being read back for each.
    pub memory: Arc<Memory>,
    /// The last host text `POST /api/plan` compiled, to answer a text
    /// that says the same without compiling it again.
    pub compiled: crate::engine::load::CompileCache,
    /// Where the CPU work of requests runs, bounded.
    pub workers: workers::Workers,
    /// How fast requests start.
    pub pace: workers::Pace,
}

pub type Shared = Arc<AppState>;

impl AppState {
    /// Loads (or makes, on first start) the login token and the metrics
    /// token under the root. The second value holds the tokens just made,
    /// to print once.
    pub fn new(config: Config) -> miette::Result<(Shared, auth::Fresh)> {
        let (auth, fresh) = auth::Auth::load_or_create(&config.root)?;
        let config_root = config.root.clone();
        let state = AppState {
            config,
            auth,
            jobs: jobs::Jobs::default(),
            save_lock: tokio::sync::Mutex::new(()),
            workers: workers::Workers::default(),
            pace: workers::Pace::default(),
            compiled: Default::default(),
            memory: Arc::new(match Memory::watching(&config_root, RECHECK) {
                Ok(memory) => memory,
                Err(e) => {
                    eprintln!("warning: {e}; every plan looks at every managed file");
                    Memory::default()
                }
            }),
        };
        Ok((Arc::new(state), fresh))
    }

    /// The root the use cases work on, with the server's memory; a request
    /// waits for another ctm's lock briefly, then says it is busy.
    pub fn target(&self) -> Target {
        Target {
            root: self.config.root.clone(),
            lock_timeout: Some(LOCK_WAIT),
            allow_files_only: self.config.allow_files_only,
            memory: Some(self.memory.clone()),
            system: self.config.system.clone(),
        }
    }

    /// The host file, for the routes that serve it (only served when
    /// there is one).
    pub fn host_file(&self) -> Result<&Path, ApiError> {
        self.config.host_file.as_deref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "this server has no host file: it serves a fleet's page only (ctm serve --fleet)",
            )
        })
    }

    /// Refuses a change to `/` that would only write files, unless the
    /// server was started to allow it.
    pub fn may_change(&self) -> Result<(), ApiError> {
        match &self.config.files_only_reason {
            Some(reason) if !self.config.allow_files_only => Err(Refused::FilesOnlyRoot {
                reason: reason.clone(),
            }
            .into()),
            _ => Ok(()),
        }
    }
}

/// The largest request body `ctm serve` reads: the largest host file the
/// web editor accepts, as JSON takes at least its bytes. (The command
/// line reads larger files.)
pub const MAX_BODY: usize = crate::config::MAX_SIZE_WEB;

fn too_large(length: Option<usize>) -> Response {
    let size = length.map_or("larger".to_string(), |n| format!("{n} bytes"));
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request is {size}; ctm serve takes at most {MAX_BODY} (4 MiB)"),
    )
    .with(
        "help",
        json!(
            "check or apply a host file this large with the command line (`ctm check`, `ctm apply`)"
        ),
    )
    .into_response()
}

/// Refuses a body larger than [`MAX_BODY`] before it is read when its
/// length is declared, and says so in JSON when axum's own limit stops
/// one without a length part-way. A body whose worker lane is full now
/// is answered 503 before it is read, too, after `Retry-After`
/// ([`workers::held`]).
async fn limit_body(
    State(state): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY) {
        return too_large(declared);
    }
    if let Err(busy) = state.pace.admit().await {
        return busy.into_response();
    }
    if let Some(busy) = declared
        .filter(|length| *length > 0)
        .and_then(|length| state.workers.full_for(length))
    {
        return workers::held(busy).await.into_response();
    }
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        return too_large(None);
    }
    response
}

pub fn router(state: Shared) -> Router {
    let mut routes = Router::new().merge(pages::routes(&state.config));
    if state.config.host_file.is_some() {
        routes = routes.merge(api::routes());
    }
    if state.config.fleet.is_some() {
        routes = routes.merge(fleet::routes());
    }
    routes
        .merge(auth::routes())
        .merge(assets::routes())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limit_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .layer(axum::middleware::from_fn(auth::security_headers))
        .layer(compression())
        .with_state(state)
}

/// Compresses pages and API answers (brotli or gzip, whichever the client
/// prefers) as they are sent, at a level that costs about 2 ms for the
/// 226 KB source of the 1,000-container host. It leaves alone what
/// already has a `Content-Encoding` (the assets, compressed at build
/// time), what is under 32 bytes, and event streams (`text/event-stream`,
/// the progress of a job and a container's log), which must reach the
/// browser line by line.
fn compression() -> tower_http::compression::CompressionLayer {
    tower_http::compression::CompressionLayer::new()
        .quality(tower_http::compression::CompressionLevel::Precise(4))
}

/// An API error: a status and a JSON body `{"error", "help"?, ...}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: serde_json::Value,
    /// Seconds after which a busy server may be asked again.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: json!({ "error": message.into() }),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    pub fn retry_after(self, seconds: u64) -> ApiError {
        ApiError {
            retry_after: Some(seconds),
            ..self
        }
    }

    pub fn with(mut self, key: &str, value: serde_json::Value) -> ApiError {
        self.body[key] = value;
        self
    }
}

/// A miette report from the shared code: a busy lock or an interrupted
/// switch is a conflict the user can wait out; a missing generation is
/// not found; anything else is the server's problem, with its whole chain.
impl From<miette::Report> for ApiError {
    fn from(report: miette::Report) -> ApiError {
        if let Some(refused) = report.downcast_ref::<Refused>() {
            return ApiError::from_refused(refused);
        }
        let status = match report.downcast_ref::<StateError>() {
            Some(StateError::LockTimeout { .. } | StateError::Interrupted) => StatusCode::CONFLICT,
            Some(StateError::NoGeneration(_)) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut chain: Vec<String> = report.chain().map(|e| e.to_string()).collect();
        chain.dedup();
        let mut error = ApiError::new(status, chain.join(": "));
        if let Some(help) = report.help() {
            error = error.with("help", json!(help.to_string()));
        }
        error
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> ApiError {
        ApiError::from_refused(&refused)
    }
}

impl ApiError {
    /// A refusal: 422 for a host file with errors, 404 for a container
    /// that is not there, 409 for the rest
    /// (nothing was changed, and the user can act on the reason), with
    /// the help and what the refusal carries.
    fn from_refused(refused: &Refused) -> ApiError {
        use miette::Diagnostic as _;
        let status = match refused {
            Refused::Invalid { .. } | Refused::InvalidFleet { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Refused::NoSuchContainer { .. }
            | Refused::NoSuchTunnel { .. }
            | Refused::NoSuchTopology { .. }
            | Refused::NoSuchImage { .. }
            | Refused::NoSuchSnapshot { .. }
            | Refused::NoSuchArchive { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::CONFLICT,
        };
        let mut error = ApiError::new(status, refused.to_string());
        if let Some(help) = refused.help() {
            error = error.with("help", json!(help.to_string()));
        }
        match refused {
            Refused::Invalid { check, .. } | Refused::InvalidFleet { check, .. } => {
                error.with("check", check.clone())
            }
            Refused::Conflicts { conflicts } => error.with("conflicts", json!(conflicts)),
            _ => error,
        }
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> ApiError {
        ApiError::from(miette::Report::new(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
