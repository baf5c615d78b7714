//! The web editor's JSON API, called in-process through the router: every
//! endpoint, its auth and CSRF checks, the stale-file save, applies that
//! meet the lock or another apply, and the same answers as the CLI.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Command;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use ctm::backend::journal::{Journal, LogQuery, NoJournal};
use ctm::state::Store;
use ctm::web::{AppState, Config, Shared};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use support::*;
use tower::ServiceExt as _;

/// A journal that prints two lines, one of them hostile.
struct Printf;

impl Journal for Printf {
    fn command(&self, query: &LogQuery) -> Option<std::process::Command> {
        let mut c = std::process::Command::new("printf");
        c.arg(format!(
            "{}: started\\n<script>alert(1)</script>\\r\\n",
            query.name
        ));
        Some(c)
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    host: PathBuf,
    root: PathBuf,
    state: Shared,
    app: Router,
}

fn fixture_with(journal: Box<dyn Journal>) -> Fixture {
    let (dir, host) = scratch_example("homelab.kdl");
    let root = dir.path().join("root");
    let config = Config {
        host_file: Some(host.clone()),
        fleet: None,
        root: root.clone(),
        resources: Box::new(OneBusyContainer),
        journal,
        files_only_reason: None,
        allow_files_only: false,
        system: None,
    };
    let (state, fresh) = AppState::new(config).unwrap();
    assert!(
        fresh.login.is_some() && fresh.metrics.is_some(),
        "a first start makes the tokens"
    );
    let app = ctm::web::router(state.clone());
    Fixture {
        _dir: dir,
        host,
        root,
        state,
        app,
    }
}

fn fixture() -> Fixture {
    fixture_with(Box::new(NoJournal))
}

/// A fixture whose sessions drive the recording fake, as if the root were
/// a live host: containers start, pause and report their use.
fn live_fixture() -> (Fixture, ctm::backend::recording::Recording) {
    live_fixture_of("homelab.kdl")
}

/// [`live_fixture`] of another example.
fn live_fixture_of(example: &str) -> (Fixture, ctm::backend::recording::Recording) {
    let (dir, host) = scratch_example(example);
    let root = dir.path().join("root");
    let fake = ctm::backend::recording::Recording::new();
    let system = fake.clone();
    let config = Config {
        host_file: Some(host.clone()),
        fleet: None,
        root: root.clone(),
        resources: Box::new(OneBusyContainer),
        journal: Box::new(Printf),
        files_only_reason: None,
        allow_files_only: false,
        system: Some(std::sync::Arc::new(move || Box::new(system.clone()))),
    };
    let (state, _) = AppState::new(config).unwrap();
    let app = ctm::web::router(state.clone());
    (
        Fixture {
            _dir: dir,
            host,
            root,
            state,
            app,
        },
        fake,
    )
}

/// How a request proves who it is.
#[derive(Clone)]
enum Auth {
    None,
    Bearer(String),
    /// A session cookie, and the CSRF token to send (if any).
    Cookie(String, Option<String>),
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

impl Fixture {
    fn bearer(&self) -> Auth {
        Auth::Bearer(self.state.auth.token().to_string())
    }

    async fn call(&self, method: Method, path: &str, auth: &Auth, body: Option<Value>) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        match auth {
            Auth::None => {}
            Auth::Bearer(token) => {
                request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            Auth::Cookie(cookie, csrf) => {
                request = request.header(header::COOKIE, format!("ctm_session={cookie}"));
                if let Some(csrf) = csrf {
                    request = request.header("x-csrf-token", csrf);
                }
            }
        }
        let body = match body {
            Some(v) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn api(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let auth = self.bearer();
        self.call(method, path, &auth, body).await
    }

    /// Logs in through the form; returns the session cookie and its CSRF
    /// token (read from a page, as the scripts do).
    async fn login(&self) -> (String, String) {
        let request = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={}", self.state.auth.token())))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let set_cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
        assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
        let cookie = set_cookie
            .strip_prefix("ctm_session=")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let page = self
            .call(
                Method::GET,
                "/editor",
                &Auth::Cookie(cookie.clone(), None),
                None,
            )
            .await;
        assert_eq!(page.status, StatusCode::OK);
        let csrf = page
            .text
            .split("name=\"csrf-token\" content=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        (cookie, csrf)
    }

    /// The job's whole event stream (it ends with the job).
    async fn job_events(&self, job: u64) -> Vec<Value> {
        let answer = self
            .api(Method::GET, &format!("/api/jobs/{job}"), None)
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        answer
            .text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    async fn plan(&self) -> Value {
        let answer = self.api(Method::POST, "/api/plan", Some(json!({}))).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer.json()["plan"].clone()
    }

    async fn post_apply(&self, body: Value) -> Answer {
        self.api(Method::POST, "/api/apply", Some(body)).await
    }

    /// Applies the saved host file and waits for the job to end.
    async fn apply(&self) -> Vec<Value> {
        let fingerprint = self.plan().await["fingerprint"].clone();
        let answer = self.post_apply(json!({ "fingerprint": fingerprint })).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
        self.job_events(answer.json()["job"].as_u64().unwrap())
            .await
    }

    fn current(&self) -> Option<u64> {
        Store::new(&self.root).current().unwrap()
    }

    fn edit_host(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.host).unwrap();
        assert!(text.contains(from));
        std::fs::write(&self.host, text.replace(from, to)).unwrap();
    }
}

fn ctm_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ctm"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn every_request_needs_the_token_or_a_session() {
    let f = fixture();
    for (method, path) in [
        (Method::GET, "/api/status"),
        (Method::GET, "/api/source"),
        (Method::POST, "/api/plan"),
        (Method::POST, "/api/save"),
        (Method::POST, "/api/apply"),
        (Method::POST, "/api/confirm"),
        (Method::GET, "/api/generations"),
        (Method::POST, "/api/rollback"),
        (Method::GET, "/api/logs/web"),
        (Method::POST, "/api/images/debian-bookworm/pull"),
        (Method::POST, "/api/images/debian-bookworm/remove"),
    ] {
        let a = f.call(method.clone(), path, &Auth::None, None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(a.json()["error"].as_str().unwrap().contains("log in"));
        let a = f
            .call(method.clone(), path, &Auth::Bearer("0".repeat(64)), None)
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // Pages send people to the login form instead.
    let a = f.call(Method::GET, "/editor", &Auth::None, None).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers[header::LOCATION], "/login");
    let a = f
        .call(Method::GET, "/", &Auth::Cookie("forged".into(), None), None)
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    // The login form and the assets are public.
    let a = f.call(Method::GET, "/login", &Auth::None, None).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = f
        .call(Method::GET, "/assets/app.js", &Auth::None, None)
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert!(a.text.len() > 100_000, "the bundle holds CodeMirror");
}

#[tokio::test]
async fn the_token_file_is_private_and_kept() {
    let f = fixture();
    let path = f.root.join("var/lib/ctm/web-token");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().trim(),
        f.state.auth.token()
    );
    assert_eq!(f.state.auth.token().len(), 64);
    let (again, fresh) = ctm::web::auth::Auth::load_or_create(&f.root).unwrap();
    assert_eq!(again.token(), f.state.auth.token());
    assert!(
        fresh.login.is_none() && fresh.metrics.is_none(),
        "the tokens are printed once only"
    );
}

#[tokio::test]
async fn a_session_needs_its_csrf_token_to_change_anything() {
    let f = fixture();
    let request = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={}", "0".repeat(64))))
        .unwrap();
    let wrong = f.app.clone().oneshot(request).await.unwrap();
    assert_eq!(
        wrong.status(),
        StatusCode::UNAUTHORIZED,
        "a wrong token logs nobody in"
    );
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());
    let (cookie, csrf) = f.login().await;
    let body = Some(json!({ "text": "" }));
    // Reading needs only the cookie.
    let a = f
        .call(
            Method::GET,
            "/api/status",
            &Auth::Cookie(cookie.clone(), None),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    for csrf_sent in [None, Some("0".repeat(64))] {
        let a = f
            .call(
                Method::POST,
                "/api/validate",
                &Auth::Cookie(cookie.clone(), csrf_sent),
                body.clone(),
            )
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
        assert!(a.json()["error"].as_str().unwrap().contains("CSRF"));
    }
    let with_csrf = Auth::Cookie(cookie.clone(), Some(csrf.clone()));
    let a = f
        .call(Method::POST, "/api/validate", &with_csrf, body.clone())
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    // Another site's page cannot post, even with every token.
    let request = Request::post("/api/validate")
        .header(header::COOKIE, format!("ctm_session={cookie}"))
        .header("x-csrf-token", &csrf)
        .header("sec-fetch-site", "cross-site")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let response = f.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // Logging out ends the session.
    let a = f.call(Method::POST, "/logout", &with_csrf, None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = f.call(Method::GET, "/api/status", &with_csrf, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn pages_have_a_strict_policy_no_inline_code_and_escape_what_they_show() {
    // A host file whose path is hostile HTML.
    let f = fixture();
    let dir = f.host.parent().unwrap().join("a<b>\"c&d");
    std::fs::create_dir_all(&dir).unwrap();
    let host = dir.join("homelab.kdl");
    std::fs::copy(&f.host, &host).unwrap();
    let config = Config::new(Some(host), f.root.clone());
    let (state, _) = AppState::new(config).unwrap();
    let app = ctm::web::router(state.clone());
    for path in [
        "/",
        "/editor",
        "/apply",
        "/generations",
        "/tunnels",
        "/tunnels?diagnose=site-b",
        "/topologies",
        "/logs",
        "/logs/web",
    ] {
        let request = Request::get(path)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", state.auth.token()),
            )
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let html = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(
            html.contains("a&lt;b&gt;&quot;c&amp;d"),
            "{path}: the path, escaped"
        );
        assert!(!html.contains("a<b>"), "{path}");
        assert_eq!(
            html.matches("<script").count(),
            html.matches("<script src=\"/assets/app.js\" defer>")
                .count(),
            "{path}: no inline script"
        );
        assert!(!html.contains(" style="), "{path}: no inline style");
        let handler = html.split(" on").skip(1).any(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!handler, "{path}: no inline event handler");
    }
}

#[tokio::test]
async fn validate_answers_what_ctm_check_prints() {
    let f = fixture();
    f.edit_host("    docker ", "    colour \"blue\"\n    docker ");
    let a = f.api(Method::POST, "/api/validate", Some(json!({}))).await;
    assert_eq!(a.status, StatusCode::OK);
    let cli = ctm_cli(&["check", f.host.to_str().unwrap(), "--format", "json"]);
    let cli: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(a.json(), cli);
    let d = &cli["diagnostics"][0];
    assert_eq!(d["code"], "ctm::unknown-node");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(37), Some(5))
    );
    // Text sent in the request is checked instead of the file.
    let a = f
        .api(
            Method::POST,
            "/api/validate",
            Some(json!({ "text": "host \"x\"\n" })),
        )
        .await;
    assert_eq!(a.json()["valid"], true);
}

#[tokio::test]
async fn plan_answers_what_ctm_plan_prints() {
    let f = fixture();
    f.apply().await;
    f.edit_host("host=8080", "host=8081");
    let mut web = f.plan().await;
    for action in web["actions"].as_array_mut().unwrap() {
        assert!(action["summary"].is_string());
        action.as_object_mut().unwrap().remove("summary");
    }
    let cli = ctm_cli(&[
        "plan",
        f.host.to_str().unwrap(),
        "--root",
        f.root.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let cli: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(web, cli);
    // The ruleset, and the health expectations that name the loopback
    // forward's socket (whose units are added and removed).
    assert_eq!(web["summary"]["change"], 2);
    // Text with errors has no plan, only the check.
    let a = f
        .api(
            Method::POST,
            "/api/plan",
            Some(json!({ "text": "nonsense {" })),
        )
        .await;
    assert_eq!(a.json()["plan"], Value::Null);
    assert_eq!(a.json()["check"]["valid"], false);
}

#[tokio::test]
async fn a_save_over_a_file_changed_on_disk_is_refused_and_shows_the_change() {
    let f = fixture();
    let loaded = f.api(Method::GET, "/api/source", None).await.json();
    let base = loaded["text"].as_str().unwrap().to_string();
    assert_eq!(loaded["format"], "kdl");
    std::fs::set_permissions(&f.host, std::fs::Permissions::from_mode(0o640)).unwrap();
    // Someone else saves first.
    f.edit_host("host=8080", "host=9090");
    let theirs = std::fs::read_to_string(&f.host).unwrap();
    let mine = base.replace("br-lan", "br-home");
    let a = f
        .api(
            Method::POST,
            "/api/save",
            Some(json!({ "text": mine, "base": base })),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let body = a.json();
    assert_eq!(body["current"], theirs.as_str());
    let diff = body["diff"].as_str().unwrap();
    assert!(diff.contains("-    forward \"tcp\" host=8080"), "{diff}");
    assert!(diff.contains("+    forward \"tcp\" host=9090"), "{diff}");
    assert_eq!(
        std::fs::read_to_string(&f.host).unwrap(),
        theirs,
        "nothing saved"
    );
    // Saving over what is on disk now works, and keeps the file's mode.
    let a = f
        .api(
            Method::POST,
            "/api/save",
            Some(json!({ "text": mine, "base": theirs })),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(std::fs::read_to_string(&f.host).unwrap(), mine);
    let mode = std::fs::metadata(&f.host).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}

#[tokio::test]
async fn a_save_through_a_symlink_writes_the_file_it_names() {
    let f = fixture();
    let real = f.host.with_file_name("real.kdl");
    std::fs::rename(&f.host, &real).unwrap();
    std::os::unix::fs::symlink(&real, &f.host).unwrap();
    let base = std::fs::read_to_string(&real).unwrap();
    let a = f
        .api(
            Method::POST,
            "/api/save",
            Some(json!({ "text": "host \"x\"\n", "base": base })),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(std::fs::symlink_metadata(&f.host).unwrap().is_symlink());
    assert_eq!(std::fs::read_to_string(&real).unwrap(), "host \"x\"\n");
}

#[tokio::test]
async fn apply_streams_its_progress_and_refuses_a_stale_plan() {
    let f = fixture();
    let stale = f.plan().await["fingerprint"].clone();
    f.edit_host("host=8080", "host=8081");
    let a = f.post_apply(json!({ "fingerprint": stale })).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("stale plan")
    );
    assert_eq!(f.current(), None, "nothing applied");

    let events = f.apply().await;
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.last(), Some(&"done"), "{events:?}");
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages[0], "Applying generation 1 …");
    // A files-only root switches files only: the actions are what a live
    // host would run, said so in the text and in the typed event.
    assert!(
        messages.contains(&"would reload systemd's unit files (files only: not done)"),
        "{messages:?}"
    );
    assert!(
        events.iter().any(|e| e["event"]
            == json!({
                "event": "action",
                "action": "reload systemd's unit files",
                "rollback": false,
                "performed": false,
            })),
        "{events:?}"
    );
    assert!(messages.contains(&"Health check: nothing to check on a files-only root."));
    assert_eq!(events.last().unwrap()["generation"], 1);
    assert_eq!(f.current(), Some(1));
    // The generation is the CLI's: `ctm plan` sees nothing left to do.
    let cli = ctm_cli(&[
        "plan",
        f.host.to_str().unwrap(),
        "--root",
        f.root.to_str().unwrap(),
        "--detailed-exitcode",
    ]);
    assert_eq!(
        cli.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
}

#[tokio::test]
async fn apply_waits_for_the_lock_then_gives_up() {
    let f = fixture();
    let fingerprint = f.plan().await["fingerprint"].clone();
    // Another ctm holds the lock (the same flock the CLI takes).
    let store = Store::new(&f.root);
    let held = store.lock(None, || {}).unwrap();
    let a = f.post_apply(json!({ "fingerprint": fingerprint })).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("another ctm is changing this host"),
        "{}",
        a.text
    );
    // Plan previews wait for it too, and say so.
    let a = f.api(Method::POST, "/api/plan", Some(json!({}))).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    drop(held);
    let a = f.post_apply(json!({ "fingerprint": fingerprint })).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
}

#[tokio::test]
async fn one_apply_at_a_time_and_confirm_keeps_it() {
    let f = fixture();
    let fingerprint = f.plan().await["fingerprint"].clone();
    let a = f
        .post_apply(json!({ "fingerprint": fingerprint, "confirm_timeout": 60 }))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let job = a.json()["job"].as_u64().unwrap();
    // Wait until it waits for confirmation.
    for _ in 0..100 {
        if f.state.jobs.get(job).unwrap().phase() == ctm::web::jobs::Phase::Waiting {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        f.state.jobs.get(job).unwrap().phase(),
        ctm::web::jobs::Phase::Waiting
    );
    let pending = f.api(Method::GET, "/api/generations", None).await.json();
    assert_eq!(pending["pending_confirm"]["generation"], 1);
    // A second apply is refused while the first runs.
    let a = f.post_apply(json!({ "fingerprint": fingerprint })).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("apply 1 is still running")
    );
    let a = f.api(Method::POST, "/api/confirm", None).await;
    assert_eq!(a.json()["confirmed"], 1);
    let events = f.job_events(job).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"waiting"), "{kinds:?}");
    assert_eq!(events.last().unwrap()["kind"], "done", "{events:?}");
    assert_eq!(f.current(), Some(1));
    let a = f.api(Method::POST, "/api/confirm", None).await;
    assert_eq!(a.json()["confirmed"], Value::Null);
}

#[tokio::test]
async fn an_unconfirmed_apply_is_rolled_back() {
    let f = fixture();
    f.apply().await;
    f.edit_host("host=8080", "host=8081");
    let fingerprint = f.plan().await["fingerprint"].clone();
    let a = f
        .post_apply(json!({ "fingerprint": fingerprint, "confirm_timeout": 1 }))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let events = f.job_events(a.json()["job"].as_u64().unwrap()).await;
    let last = events.last().unwrap();
    assert_eq!(last["kind"], "failed", "{events:?}");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("back on generation 1")
    );
    assert_eq!(f.current(), Some(1));
}

#[tokio::test]
async fn generations_diff_and_a_rollback_shown_before_it_happens() {
    let f = fixture();
    f.apply().await;
    f.edit_host("host=8080", "host=8081");
    f.apply().await;
    let list = f.api(Method::GET, "/api/generations", None).await.json();
    assert_eq!(list["current"], 2);
    let numbers: Vec<u64> = list["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["generation"]["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [2, 1]);
    let diff = f
        .api(Method::GET, "/api/generations/1/diff/2", None)
        .await
        .json();
    assert_eq!(diff["files"][0]["path"], "etc/ctm/ctm.nft");
    assert!(
        diff["files"][0]["diff"]
            .as_str()
            .unwrap()
            .contains("+++ 2/etc/ctm/ctm.nft")
    );
    let a = f.api(Method::GET, "/api/generations/1/diff/9", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    let shown = f.api(Method::GET, "/api/rollback/1", None).await.json();
    assert_eq!(shown["plan"]["summary"]["change"], 2);
    let a = f
        .api(
            Method::POST,
            "/api/rollback",
            Some(json!({ "generation": 1, "fingerprint": "stale" })),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(f.current(), Some(2));
    let a = f
        .api(
            Method::POST,
            "/api/rollback",
            Some(json!({ "generation": 1, "fingerprint": shown["plan"]["fingerprint"] })),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let events = f.job_events(a.json()["job"].as_u64().unwrap()).await;
    assert_eq!(
        events.last().unwrap()["message"],
        "Rolled back: the host is on generation 1."
    );
    assert_eq!(f.current(), Some(1));
}

#[tokio::test]
async fn status_shows_the_generation_drift_and_resource_use() {
    let f = fixture();
    let empty = f.api(Method::GET, "/api/status", None).await.json();
    assert_eq!(empty["generation"], Value::Null);
    assert_eq!(empty["live"], false);
    assert_eq!(empty["live_note"], "unknown: files-only root");
    f.apply().await;
    // Someone edits a file ctm wrote.
    let nspawn = f.root.join("etc/systemd/nspawn/web.nspawn");
    let text = std::fs::read_to_string(&nspawn).unwrap();
    std::fs::write(&nspawn, text + "# edited by hand\n").unwrap();
    let s = f.api(Method::GET, "/api/status", None).await.json();
    assert_eq!(s["generation"]["number"], 1);
    assert_eq!(s["host_file_changed"], false);
    let names: Vec<&str> = s["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["builder", "ci", "web"]);
    let web = &s["containers"][2];
    assert_eq!(web["ipv4"], "10.42.0.10");
    assert_eq!(web["ipv6"], "fd42:42::10");
    assert_eq!(
        web["state"],
        Value::Null,
        "a files-only root reports no state"
    );
    assert_eq!(web["usage"]["memory_bytes"], 64 << 20);
    assert_eq!(web["drift"][0]["path"], "etc/systemd/nspawn/web.nspawn");
    assert!(
        web["drift"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("drift")
    );
    assert_eq!(s["containers"][1]["drift"], json!([]));
    assert_eq!(s["networks"][0]["bridge"], "br-lan");
    assert_eq!(s["networks"][0]["containers"], 3);
    // Sorted by name: lab-vx (vxlan), then site-b (gre).
    assert_eq!(s["tunnels"][0]["remote"], "203.0.113.9");
    assert_eq!(s["tunnels"][1]["remote"], "198.51.100.7");
    f.edit_host("host=8080", "host=8081");
    let s = f.api(Method::GET, "/api/status", None).await.json();
    assert_eq!(s["host_file_changed"], true);
}

#[tokio::test]
async fn logs_stream_the_journal_or_say_they_need_the_live_system() {
    let f = fixture();
    let a = f.api(Method::GET, "/api/logs/web", None).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("need the live system")
    );

    let f = fixture_with(Box::new(Printf));
    let a = f.api(Method::GET, "/api/logs/web?follow=true", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers[header::CONTENT_TYPE], "text/event-stream");
    assert!(
        a.text.contains("event: line\ndata: web: started\n"),
        "{}",
        a.text
    );
    // Sent as data, not as markup; the carriage return dropped.
    assert!(
        a.text.contains("data: <script>alert(1)</script>\n"),
        "{}",
        a.text
    );
    assert!(!a.text.contains('\r'));
    assert!(
        a.text.contains("event: end\ndata: journalctl ended"),
        "{}",
        a.text
    );
    let a = f.api(Method::GET, "/api/logs/-rf", None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
}

#[tokio::test]
async fn images_are_pulled_with_progress_and_removed_unless_in_use() {
    let f = fixture();
    // A tarball image, unpacked by `tar` into the store: no network.
    let tree = f.root.join("srv/tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/os-release"), "ID=test\n").unwrap();
    let tar = std::process::Command::new("tar")
        .args(["--create", "--file"])
        .arg(f.root.join("srv/image.tar"))
        .arg("--directory")
        .arg(&tree)
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());
    f.edit_host(
        "debootstrap suite=\"bookworm\"\n    packages \"openssh-server\" \"ca-certificates\"",
        "tarball \"/srv/image.tar\"",
    );
    let events = f.apply().await;
    assert_eq!(events.last().unwrap()["kind"], "done", "{events:?}");

    let a = f
        .api(Method::POST, "/api/images/debian-bookworm/pull", None)
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let events = f.job_events(a.json()["job"].as_u64().unwrap()).await;
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    // The pull's progress, then where the image is.
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("building image debian-bookworm into ")),
        "{messages:?}"
    );
    let done = events.last().unwrap();
    assert_eq!(done["kind"], "done", "{events:?}");
    assert!(
        done["message"]
            .as_str()
            .unwrap()
            .starts_with("Pulled image debian-bookworm into "),
        "{done}"
    );
    let listed = f.api(Method::GET, "/api/images", None).await.json();
    assert!(listed[0]["size"].is_u64(), "{listed}");
    let page = f.call(Method::GET, "/images", &f.bearer(), None).await;
    assert!(
        page.text.contains("data-pull=\"debian-bookworm\"")
            && page.text.contains("data-remove=\"debian-bookworm\""),
        "{}",
        page.text
    );

    // In use by the current generation: refused, with the reason.
    let a = f
        .api(Method::POST, "/api/images/debian-bookworm/remove", None)
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    let error = a.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.starts_with("image debian-bookworm is used by ") && error.contains("of generation 1"),
        "{error}"
    );
    assert!(f.api(Method::GET, "/api/images", None).await.json()[0]["size"].is_u64());
    // Not in the store, not a name: 404 and 400.
    let a = f.api(Method::POST, "/api/images/nope/remove", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("there is no image nope")
    );
    let a = f.api(Method::POST, "/api/images/-bad/pull", None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);

    // Once no container uses it, it goes.
    let text = std::fs::read_to_string(&f.host).unwrap();
    let image_only = text.split("\ncontainer ").next().unwrap().to_string();
    std::fs::write(&f.host, image_only).unwrap();
    let events = f.apply().await;
    assert_eq!(events.last().unwrap()["kind"], "done", "{events:?}");
    let a = f
        .api(Method::POST, "/api/images/debian-bookworm/remove", None)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["removed"].as_array().unwrap().len(), 1);
    assert_eq!(
        f.api(Method::GET, "/api/images", None).await.json()[0]["size"],
        Value::Null
    );
}

#[tokio::test]
async fn the_forms_edit_the_text_in_place() {
    let f = fixture();
    let text = std::fs::read_to_string(&f.host).unwrap();
    let a = f
        .api(
            Method::POST,
            "/api/edit/read",
            Some(json!({ "text": text, "kind": "container", "name": "web" })),
        )
        .await
        .json();
    assert_eq!(a["values"]["names"], json!(["web", "ci", "builder"]));
    assert_eq!(a["values"]["form"]["template"], "base");
    let a = f
        .api(
            Method::POST,
            "/api/edit",
            Some(json!({
                "text": text,
                "kind": "network",
                "values": { "name": "dmz", "bridge": "br-dmz", "ipv4": "10.43.0.1/24", "ipv4_nat": true },
            })),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let edited = a.json()["text"].as_str().unwrap().to_string();
    assert!(edited.starts_with(text.trim_end()), "the rest is untouched");
    assert!(edited.ends_with(
        "network \"dmz\" {\n    bridge \"br-dmz\"\n    ipv4 \"10.43.0.1/24\" { nat; }\n}\n"
    ));
    let check = f
        .api(
            Method::POST,
            "/api/validate",
            Some(json!({ "text": edited })),
        )
        .await
        .json();
    assert_eq!(check["valid"], true, "{check}");
    let a = f
        .api(
            Method::POST,
            "/api/edit",
            Some(json!({ "text": "x {", "kind": "network", "values": { "name": "n" } })),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// The README's claim: the binary serves its own assets, nothing else.
#[test]
fn the_bundle_is_in_the_binary() {
    use ctm::web::assets::{Coding, total_bytes};
    assert!(ctm::web::assets::unavailable().is_none());
    assert!(total_bytes(Coding::Identity) > 200_000);
    assert!(total_bytes(Coding::Brotli) < total_bytes(Coding::Gzip));
    assert!(total_bytes(Coding::Gzip) < total_bytes(Coding::Identity) / 2);
}

/// A raw answer: status, headers and the body's bytes as sent.
async fn raw(
    f: &Fixture,
    path: &str,
    accept_encoding: &str,
    etag: Option<&str>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut request = Request::get(path)
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", f.state.auth.token()),
        )
        .header(header::ACCEPT_ENCODING, accept_encoding);
    if let Some(etag) = etag {
        request = request.header(header::IF_NONE_MATCH, etag);
    }
    let response = f
        .app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes.to_vec())
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The assets go out in the best coding the client accepts, compressed at
/// build time, each coding with its own entity tag; pages and API answers
/// are compressed as they are sent; the event streams of jobs are not.
#[tokio::test]
async fn answers_are_compressed_for_clients_that_accept_it() {
    let f = fixture();
    let (_, plain, identity) = raw(&f, "/assets/app.js", "", None).await;
    assert!(plain.get(header::CONTENT_ENCODING).is_none());
    assert_eq!(plain[header::VARY], "accept-encoding");
    let (_, gz, gzipped) = raw(&f, "/assets/app.js", "gzip", None).await;
    assert_eq!(gz[header::CONTENT_ENCODING], "gzip");
    assert_eq!(gunzip(&gzipped), identity);
    let (status, br, brotli) = raw(&f, "/assets/app.js", "gzip, deflate, br, zstd", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(br[header::CONTENT_ENCODING], "br");
    assert!(brotli.len() < gzipped.len() && gzipped.len() < identity.len() / 2);
    let tags: Vec<&str> = [&plain, &gz, &br]
        .iter()
        .map(|h| h[header::ETAG].to_str().unwrap())
        .collect();
    assert!(
        tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2],
        "{tags:?}"
    );
    let (status, h, body) = raw(&f, "/assets/app.js", "br", Some(tags[2])).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(h[header::ETAG], tags[2]);
    assert!(body.is_empty());
    // A tag of another coding is not this representation's.
    let (status, _, _) = raw(&f, "/assets/app.js", "br", Some(tags[1])).await;
    assert_eq!(status, StatusCode::OK);

    let (status, h, body) = raw(&f, "/api/source", "gzip", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h[header::CONTENT_ENCODING], "gzip");
    let source: Value = serde_json::from_slice(&gunzip(&body)).unwrap();
    assert_eq!(
        source["text"],
        std::fs::read_to_string(&f.host).unwrap().as_str()
    );
    let (_, h, _) = raw(&f, "/editor", "br", None).await;
    assert_eq!(h[header::CONTENT_ENCODING], "br");
    assert!(h.get(header::CONTENT_SECURITY_POLICY).is_some());

    let fingerprint = f.plan().await["fingerprint"].clone();
    let a = f.post_apply(json!({ "fingerprint": fingerprint })).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let job = a.json()["job"].as_u64().unwrap();
    let (status, h, body) = raw(&f, &format!("/api/jobs/{job}"), "gzip, br", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.get(header::CONTENT_ENCODING).is_none(), "{h:?}");
    assert!(String::from_utf8(body).unwrap().contains("data: "));
}

/// docs/openapi.json documents exactly the routes src/web/api.rs and
/// src/web/fleet.rs serve.
#[test]
fn the_openapi_file_lists_every_route() {
    let source = ["src/web/api.rs", "src/web/fleet.rs"]
        .map(|f| std::fs::read_to_string(repo().join(f)).unwrap())
        .join("\n");
    // A route's call may be on one line or, formatted, on several.
    let mut served: Vec<(String, String)> = source
        .split(".route(")
        .skip(1)
        .filter_map(|call| call.trim_start().strip_prefix('"'))
        .map(|rest| {
            let (path, handler) = rest.split_once("\",").unwrap();
            let method = handler.trim_start().split('(').next().unwrap().to_string();
            (path.to_string(), method)
        })
        .collect();
    served.sort();
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("docs/openapi.json")).unwrap())
            .unwrap();
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (path.clone(), m.clone()))
        })
        .collect();
    documented.sort();
    assert_eq!(served, documented);
}

/// Plan previews run side by side under the shared lock, and each may
/// save the stat cache: it stays whole, and no temporary file is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_previews_share_the_lock_and_the_stat_cache() {
    let f = fixture();
    f.apply().await;
    // Files are trusted by the cache only once their ctime is 2 s old.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let f = std::sync::Arc::new(f);
    let previews: Vec<_> = (0..8)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move { f.api(Method::POST, "/api/plan", Some(json!({}))).await })
        })
        .collect();
    for preview in previews {
        let a = preview.await.unwrap();
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        assert_eq!(a.json()["plan"]["summary"]["change"], 0);
    }
    let dir = f.root.join("var/lib/ctm");
    let cache = std::fs::read(dir.join("stat-cache")).unwrap();
    assert!(ctm::live::StatCache::decode(&cache).is_some());
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The server keeps the manifest and the stat cache between plans, and
/// inotify vouches for the live files, yet a hand edit of a managed file
/// made between two plans shows in the second:
/// an edit in place of the same length (only the ctime tells), a symlink
/// replaced by one of the same length, and a removed file.
#[tokio::test]
async fn a_hand_edit_between_two_plans_shows_in_the_second() {
    let f = fixture();
    f.apply().await;
    // Files settle (2 s); then a plan records them and keeps the manifest.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert!(f.plan().await["files"].as_array().unwrap().is_empty());
    assert_eq!(f.state.memory.kept_generation(), Some(1));
    let kept = f.state.memory.kept_stat_entries();
    assert!(kept > 20, "the stat cache holds every managed path: {kept}");
    assert!(f.plan().await["files"].as_array().unwrap().is_empty());
    let watcher = f.state.memory.watcher().expect("inotify watches the root");
    assert_eq!(watcher.vouched(), kept, "inotify vouches for every path");

    use std::io::{Seek as _, Write as _};
    let nspawn = f.root.join("etc/systemd/nspawn/web.nspawn");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&nspawn)
        .unwrap();
    file.seek(std::io::SeekFrom::End(-4)).unwrap();
    file.write_all(b"XXXX").unwrap();
    drop(file);
    let wants = f
        .root
        .join("etc/systemd/system/machines.target.wants/systemd-nspawn@web.service");
    let target = std::fs::read_link(&wants).unwrap();
    let other = target.to_string_lossy().replace(".service", ".servicX");
    let tmp = wants.with_extension("new");
    std::os::unix::fs::symlink(&other, &tmp).unwrap();
    std::fs::rename(&tmp, &wants).unwrap();
    std::fs::remove_file(
        f.root
            .join("etc/systemd/system/systemd-nspawn@ci.service.d/50-ctm-limits.conf"),
    )
    .unwrap();

    let plan = f.plan().await;
    let files: Vec<(String, String, String)> = plan["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_string(),
                c["change"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let drift = "changed on disk since ctm wrote it (drift); ctm restores it".to_string();
    assert_eq!(
        files,
        [
            (
                "etc/systemd/nspawn/web.nspawn".to_string(),
                "change".to_string(),
                drift.clone()
            ),
            (
                "etc/systemd/system/machines.target.wants/systemd-nspawn@web.service".to_string(),
                "change".to_string(),
                drift
            ),
            (
                "etc/systemd/system/systemd-nspawn@ci.service.d/50-ctm-limits.conf".to_string(),
                "add".to_string(),
                "new".to_string()
            ),
        ]
    );
    assert!(
        plan["files"][0]["diff"].as_str().unwrap().contains("XXXX"),
        "the diff shows the edit: {}",
        plan["files"][0]["diff"]
    );
}

#[tokio::test]
async fn apply_can_commit_the_host_file_and_lock_with_git() {
    let f = fixture();
    let dir = f.host.parent().unwrap().to_path_buf();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    git(&["init", "-q"]);
    git(&["add", "homelab.kdl"]);
    git(&["commit", "-q", "-m", "start"]);
    // The job's git runs without -c: give the repository an identity.
    git(&["config", "user.name", "ctm test"]);
    git(&["config", "user.email", "ctm@example.org"]);
    let fingerprint = f.plan().await["fingerprint"].clone();
    let a = f
        .post_apply(json!({ "fingerprint": fingerprint, "git_commit": true }))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let events = f.job_events(a.json()["job"].as_u64().unwrap()).await;
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages
            .contains(&"git: committed homelab.kdl and homelab.kdl.lock (ctm apply: generation 1)"),
        "{messages:?}"
    );
    assert_eq!(
        git(&["log", "-1", "--format=%s"]).trim(),
        "ctm apply: generation 1"
    );
    assert_eq!(
        git(&[
            "status",
            "--porcelain",
            "--",
            "homelab.kdl",
            "homelab.kdl.lock"
        ]),
        ""
    );
}

/// A server on `/` of a machine whose running system cannot be driven,
/// as `Config::new` finds it there: said on every page, applies refused.
fn files_only_fixture(allow: bool) -> Fixture {
    let (dir, host) = scratch_example("homelab.kdl");
    let root = dir.path().join("root");
    let config = Config {
        host_file: Some(host.clone()),
        fleet: None,
        root: root.clone(),
        resources: Box::new(OneBusyContainer),
        journal: Box::new(NoJournal),
        files_only_reason: Some("connecting to the system D-Bus failed".into()),
        allow_files_only: allow,
        system: None,
    };
    let (state, _) = AppState::new(config).unwrap();
    let app = ctm::web::router(state.clone());
    Fixture {
        _dir: dir,
        host,
        root,
        state,
        app,
    }
}

#[tokio::test]
async fn a_files_only_system_root_says_why_and_refuses_to_apply_unless_allowed() {
    let f = files_only_fixture(false);
    let fingerprint = f.plan().await["fingerprint"].clone();
    let a = f.post_apply(json!({ "fingerprint": fingerprint })).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    let body = a.json();
    assert_eq!(
        body["error"],
        "ctm serve manages the files under / only: connecting to the system D-Bus failed"
    );
    assert!(body["help"].as_str().unwrap().contains("--files-only"));
    let a = f
        .api(
            Method::POST,
            "/api/rollback",
            Some(json!({ "generation": 1, "fingerprint": "x" })),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(f.current(), None, "nothing applied");
    for page in ["/", "/apply", "/generations"] {
        let a = f.api(Method::GET, page, None).await;
        assert!(
            a.text.contains("id=\"files-only\"")
                && a.text.contains("connecting to the system D-Bus failed"),
            "{page}: {}",
            a.text
        );
    }
    let apply_page = f.api(Method::GET, "/apply", None).await.text;
    assert!(apply_page.contains("data-refused=\"ctm serve manages the files under / only"));

    // Started with --files-only, the same server applies the files.
    let f = files_only_fixture(true);
    f.apply().await;
    assert_eq!(f.current(), Some(1));
    assert!(
        !f.api(Method::GET, "/apply", None)
            .await
            .text
            .contains("data-refused")
    );
}

#[tokio::test]
async fn a_confirmation_after_the_deadline_is_refused_and_says_where_the_host_is() {
    let f = fixture();
    f.apply().await;
    f.edit_host("host=8080", "host=8081");
    let fingerprint = f.plan().await["fingerprint"].clone();
    let a = f
        .post_apply(json!({ "fingerprint": fingerprint, "confirm_timeout": 1 }))
        .await;
    let events = f.job_events(a.json()["job"].as_u64().unwrap()).await;
    assert_eq!(events.last().unwrap()["kind"], "failed");
    let waiting = events.iter().find(|e| e["kind"] == "waiting").unwrap();
    assert_eq!(waiting["event"]["event"], "confirm-before");
    assert_eq!(waiting["event"]["generation"], 2);
    let a = f
        .api(
            Method::POST,
            "/api/confirm",
            Some(json!({ "generation": 2 })),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    let error = a.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.starts_with("generation 2 was rolled back at ")
            && error.ends_with(" for want of a confirmation; the host is on generation 1"),
        "{error}"
    );
    // Without a generation, the same: the newest one was rolled back.
    let a = f.api(Method::POST, "/api/confirm", None).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    let list = f.api(Method::GET, "/api/generations", None).await.json();
    assert_eq!(list["generations"][0]["generation"]["number"], 2);
    assert_eq!(list["generations"][0]["reverted"]["to"], 1);
    assert_eq!(list["generations"][1]["reverted"], Value::Null);
    let status = f.api(Method::GET, "/api/status", None).await.json();
    assert_eq!(status["unconfirmed"]["generation"], 2);
    assert_eq!(status["unconfirmed"]["back_to"], 1);
    // A confirmation that timed out is an error on the command line too.
    let o = ctm_cli(&["confirm", "--root", f.root.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    // miette wraps the message to the terminal's width.
    let said = String::from_utf8_lossy(&o.stderr).replace('│', " ");
    let said = said.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        said.contains("generation 2 was rolled back at ")
            && said.contains("for want of a confirmation; the host is on generation 1"),
        "{said}"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_before_it_is_read() {
    let f = fixture();
    let text = "x".repeat(ctm::web::MAX_BODY);
    let a = f
        .api(Method::POST, "/api/validate", Some(json!({ "text": text })))
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("ctm serve takes at most 4194304 (4 MiB)"),
        "{}",
        a.text
    );
    // A body just under it is read, and the text found wanting.
    let text = "x".repeat(ctm::web::MAX_BODY - 100);
    let a = f
        .api(Method::POST, "/api/validate", Some(json!({ "text": text })))
        .await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "{}",
        &a.text[..200.min(a.text.len())]
    );
    assert_eq!(a.json()["valid"], false);
}

/// `ctm serve --fleet FLEET` without a host file: the fleet page is the
/// start page, the host file's pages and API are not served, and the
/// fleet's API answers (over the recording fake of SSH).
#[tokio::test]
async fn a_server_of_a_fleet_alone_serves_the_fleet_page_only() {
    use ctm::backend::ssh::Transport;
    use ctm::backend::ssh::fake::{Answer as Ssh, Call, Recording};
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet.kdl");
    std::fs::write(
        &fleet,
        "host \"h1\" {\n    ssh \"root@h1\"\n    file \"h1.kdl\"\n}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("h1.kdl"), "host \"h1\"\n").unwrap();
    let config = Config {
        fleet: Some(ctm::web::fleet::FleetConfig {
            file: fleet,
            connect: std::sync::Arc::new(|| {
                Ok(Box::new(Recording::new(|c: &Call| {
                    match c.argv.get(1).map(String::as_str) {
                        Some("--version") => {
                            Ssh::ok(&format!("ctm {}\n", env!("CARGO_PKG_VERSION")))
                        }
                        Some("status") => Ssh::ok("{\"generation\": null, \"drift\": null}"),
                        _ => Ssh::ok(""),
                    }
                })) as Box<dyn Transport>)
            }),
        }),
        ..Config::new(None, dir.path().join("root"))
    };
    let (state, _) = AppState::new(config).unwrap();
    let f = Fixture {
        host: PathBuf::new(),
        root: dir.path().join("root"),
        app: ctm::web::router(state.clone()),
        state,
        _dir: dir,
    };
    let auth = f.bearer();
    let start = f.call(Method::GET, "/", &auth, None).await;
    assert_eq!(start.status, StatusCode::OK);
    assert!(start.text.contains("data-page=\"fleet\""), "{}", start.text);
    assert!(!start.text.contains("href=\"/editor\""), "{}", start.text);
    assert!(!start.text.contains("data-host-file"), "{}", start.text);
    for path in ["/editor", "/api/status", "/api/source"] {
        let a = f.call(Method::GET, path, &auth, None).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
    }
    let a = f.api(Method::GET, "/api/fleet", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let hosts = &a.json()["hosts"];
    assert_eq!(hosts[0]["host"], "h1");
    assert_eq!(hosts[0]["generation"], Value::Null);
    assert_eq!(hosts[0]["error"], Value::Null);
}

async fn web_state(f: &Fixture) -> Value {
    f.api(Method::GET, "/api/containers/web", None).await.json()["status"]["state"].clone()
}

#[tokio::test]
async fn the_container_page_shows_one_container_and_its_buttons_act() {
    let (f, fake) = live_fixture();
    let done = f.apply().await;
    assert_eq!(done.last().unwrap()["kind"], "done", "{done:?}");
    let a = f.api(Method::GET, "/api/containers/web", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let d = a.json();
    assert_eq!(d["status"]["state"], "running");
    assert_eq!(d["status"]["forwards"], json!(["tcp 8080 → 80"]));
    assert_eq!(d["binds"][0]["target"], "/var/www");
    assert_eq!(d["limits"]["memory_bytes"], 1u64 << 30);
    assert_eq!(
        d["logs"],
        json!(["web: started", "<script>alert(1)</script>"])
    );
    assert!(!d["steps"].as_array().unwrap().is_empty());
    let a = f.api(Method::GET, "/api/containers/nosuch", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
    assert!(a.json()["help"].as_str().unwrap().contains("web"));
    let a = f.api(Method::GET, "/api/containers/no%20such", None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);

    // Two samples: the page divides the CPU time by the time between.
    let one = f
        .api(Method::GET, "/api/containers/web/stats", None)
        .await
        .json();
    let two = f
        .api(Method::GET, "/api/containers/web/stats", None)
        .await
        .json();
    assert_eq!(
        two["stats"]["cpu_usec"].as_u64().unwrap() - one["stats"]["cpu_usec"].as_u64().unwrap(),
        1_000_000
    );

    // Pause and resume at once; stop and start as jobs.
    let a = f.api(Method::POST, "/api/containers/web/pause", None).await;
    assert_eq!(a.json()["done"], "Paused container web.");
    assert_eq!(web_state(&f).await, "paused");
    let a = f
        .api(Method::POST, "/api/containers/web/resume", None)
        .await;
    assert_eq!(a.json()["done"], "Resumed container web.");
    assert_eq!(web_state(&f).await, "running");
    let a = f.api(Method::POST, "/api/containers/web/stop", None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let events = f.job_events(a.json()["job"].as_u64().unwrap()).await;
    assert_eq!(events.last().unwrap()["message"], "Stopped container web.");
    assert_eq!(web_state(&f).await, "stopped");
    let a = f.api(Method::POST, "/api/containers/web/start", None).await;
    let events = f.job_events(a.json()["job"].as_u64().unwrap()).await;
    assert_eq!(
        events.last().unwrap()["message"],
        "Started container web.",
        "{events:?}"
    );
    assert!(fake.running().contains("web"));
    let a = f
        .api(Method::POST, "/api/containers/web/restart", None)
        .await;
    let events = f.job_events(a.json()["job"].as_u64().unwrap()).await;
    assert_eq!(events.last().unwrap()["kind"], "done", "{events:?}");

    // Kill takes a signal, by name or number.
    let a = f
        .api(
            Method::POST,
            "/api/containers/web/kill",
            Some(json!({ "signal": "HUP" })),
        )
        .await;
    assert_eq!(a.json()["done"], "Sent signal HUP to container web.");
    assert!(
        fake.take_calls()
            .contains(&"kill web with signal 1".to_string())
    );
    let a = f
        .api(
            Method::POST,
            "/api/containers/web/kill",
            Some(json!({ "signal": "NOSUCH" })),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("is not a signal")
    );
    let a = f
        .api(Method::POST, "/api/containers/nosuch/stop", None)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);

    // A session needs its CSRF token for each of them.
    let (cookie, csrf) = f.login().await;
    let a = f
        .call(
            Method::POST,
            "/api/containers/web/pause",
            &Auth::Cookie(cookie.clone(), None),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = f
        .call(
            Method::POST,
            "/api/containers/web/pause",
            &Auth::Cookie(cookie, Some(csrf)),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
}

/// Follows job `a` (a 202 answer) to its end; its last event.
async fn job_end(f: &Fixture, a: &Answer) -> Value {
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let events = f.job_events(a.json()["job"].as_u64().unwrap()).await;
    events.last().cloned().unwrap_or(Value::Null)
}

/// The container page's snapshots and backups: a snapshot and a backup
/// as jobs, each restored after its preview (a stale preview refused), an
/// archive in the `backup` block's own directory listed, downloaded and
/// restored, and the volumes view with each volume's users and archives.
#[tokio::test]
async fn snapshots_and_archives_are_restored_after_their_preview() {
    let (f, fake) = live_fixture();
    f.edit_host(
        "container \"web\" {\n",
        "volume \"data\" {\n    backup {\n        to \"/srv/vb\"\n        every \"daily\"\n    }\n}\n\n\
         container \"web\" {\n    volume \"data\" \"/srv/data\"\n    \
         backup {\n        to \"/srv/cb\"\n        every \"daily\"\n    }\n",
    );
    let done = f.apply().await;
    assert_eq!(done.last().unwrap()["kind"], "done", "{done:?}");
    let tree = f.root.join("var/lib/machines/web");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hello"), "one").unwrap();
    // The recording fake makes no volume: made here as an apply makes it.
    ctm::backend::volumes::create(&f.root, "data", None, &mut |_| {}).unwrap();
    let data = f.root.join("var/lib/ctm/volumes/data");
    std::fs::write(data.join("db"), "rows 1").unwrap();

    // A snapshot, its preview, a stale one refused, then the restore.
    let a = f
        .api(Method::POST, "/api/containers/web/snapshot", None)
        .await;
    let end = job_end(&f, &a).await;
    assert_eq!(end["kind"], "done", "{end}");
    let list = f
        .api(Method::GET, "/api/containers/web/backups", None)
        .await
        .json();
    let id = list["snapshots"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(list["snapshots"].as_array().unwrap().len(), 1, "{list}");
    std::fs::write(tree.join("etc/hello"), "two").unwrap();
    let restore = format!("/api/containers/web/snapshots/{id}/restore");
    let p = f.api(Method::GET, &restore, None).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    let p = p.json();
    assert_eq!(p["restarts"], true, "{p}");
    assert_eq!(p["blocked"], json!([]));
    assert_eq!(p["volumes"], json!([]), "a snapshot without --volumes");
    assert_eq!(p["steps"][0], "stop container web");
    assert!(p["kept"].as_str().unwrap().contains("new snapshot"), "{p}");
    // The container stopped since: what the restore does changed.
    let stop = f.api(Method::POST, "/api/containers/web/stop", None).await;
    assert_eq!(job_end(&f, &stop).await["kind"], "done");
    let a = f
        .api(Method::POST, &restore, Some(json!({ "key": p["key"] })))
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("stale restore"),
        "{}",
        a.text
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/hello")).unwrap(),
        "two"
    );
    let p = f.api(Method::GET, &restore, None).await.json();
    assert_eq!(p["restarts"], false, "{p}");
    let a = f
        .api(Method::POST, &restore, Some(json!({ "key": p["key"] })))
        .await;
    let end = job_end(&f, &a).await;
    assert_eq!(end["kind"], "done", "{end}");
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/hello")).unwrap(),
        "one"
    );
    let list = f
        .api(Method::GET, "/api/containers/web/backups", None)
        .await
        .json();
    assert_eq!(
        list["snapshots"].as_array().unwrap().len(),
        2,
        "what it replaced is kept: {list}"
    );

    // A backup, moved into the block's own directory: listed from there,
    // downloaded by its id, restored with its volume after its preview.
    let start = f.api(Method::POST, "/api/containers/web/start", None).await;
    assert_eq!(job_end(&f, &start).await["kind"], "done");
    let a = f
        .api(Method::POST, "/api/containers/web/backup", None)
        .await;
    let end = job_end(&f, &a).await;
    assert_eq!(end["kind"], "done", "{end}");
    let list = f
        .api(Method::GET, "/api/containers/web/backups", None)
        .await
        .json();
    let made = std::path::PathBuf::from(list["archives"][0]["path"].as_str().unwrap());
    let archive_id = list["archives"][0]["id"].as_str().unwrap().to_string();
    let block = f.root.join("srv/cb");
    std::fs::create_dir_all(&block).unwrap();
    let moved = block.join(made.file_name().unwrap());
    std::fs::rename(&made, &moved).unwrap();
    let list = f
        .api(Method::GET, "/api/containers/web/backups", None)
        .await
        .json();
    assert_eq!(
        list["archives"][0]["path"],
        moved.display().to_string(),
        "{list}"
    );
    let a = f
        .api(
            Method::GET,
            &format!("/api/containers/web/archives/{archive_id}/download"),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.headers[header::CONTENT_LENGTH].to_str().unwrap(),
        std::fs::metadata(&moved).unwrap().len().to_string()
    );
    for bad in ["..%2f..%2fetc%2fpasswd", "..%2fweb"] {
        let a = f
            .api(
                Method::GET,
                &format!("/api/containers/web/archives/{bad}/download"),
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{bad}: {}", a.text);
    }
    std::fs::write(tree.join("etc/hello"), "three").unwrap();
    std::fs::write(data.join("db"), "rows 2").unwrap();
    let restore = format!("/api/containers/web/archives/{archive_id}/restore");
    let p = f.api(Method::GET, &restore, None).await.json();
    assert_eq!(p["volumes"], json!(["data"]), "{p}");
    assert_eq!(p["path"], moved.display().to_string());
    assert!(
        p["steps"][0]
            .as_str()
            .unwrap()
            .starts_with("verify the archive"),
        "{p}"
    );
    let a = f
        .api(Method::POST, &restore, Some(json!({ "key": p["key"] })))
        .await;
    let end = job_end(&f, &a).await;
    assert_eq!(end["kind"], "done", "{end}");
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/hello")).unwrap(),
        "one"
    );
    assert_eq!(std::fs::read_to_string(data.join("db")).unwrap(), "rows 1");
    assert!(fake.running().contains("web"), "started again");

    // The volumes view: its user, its block's directory, its archives.
    let a = f.api(Method::GET, "/api/volumes", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let v = &a.json()["volumes"][0];
    assert_eq!(v["name"], "data");
    assert_eq!(v["containers"], json!(["web"]));
    assert_eq!(v["backup_to"], "/srv/vb");
    assert_eq!(v["archives"], 0);
    assert!(v["used"].as_u64().is_some(), "{v}");
    let vb = f.root.join("srv/vb");
    std::fs::create_dir_all(&vb).unwrap();
    std::fs::write(vb.join("data-20261204T100000Z.ctm-volume.tar.zst"), "x").unwrap();
    let v = f.api(Method::GET, "/api/volumes", None).await.json()["volumes"][0].clone();
    assert_eq!(v["archives"], 1);
    assert_eq!(v["last_backup"]["id"], "20261204T100000Z");
}

/// The tunnels page and its API, over the recording fake: each tunnel
/// with its link, and a Diagnose button whose findings are those of
/// `ctm tunnel diagnose`. Here, a kernel without GRE (as this machine's)
/// and the VXLAN tunnel without its address.
#[tokio::test]
async fn the_tunnels_page_shows_their_state_and_diagnoses_one() {
    let (f, fake) = live_fixture();
    let done = f.apply().await;
    assert_eq!(done.last().unwrap()["kind"], "done", "{done:?}");
    fake.without_kind("gre");
    fake.without_link("site-b");

    let a = f.api(Method::GET, "/api/tunnels", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let list = a.json();
    assert_eq!(list["live_system"], true);
    let names: Vec<&str> = list["tunnels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lab-vx", "site-b"]);
    assert_eq!(list["tunnels"][0]["live"]["up"], true);
    assert_eq!(list["tunnels"][1]["live"]["exists"], false);
    assert!(
        list["tunnels"][1]["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("link site-b is missing")
    );

    let a = f
        .api(Method::GET, "/api/tunnels/site-b/diagnose", None)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let d = a.json();
    assert_eq!(d["kernel_has_kind"], false);
    assert_eq!(d["remote_answers"], true);
    assert_eq!(
        d["findings"],
        json!([{
            "cause": "this kernel cannot make gre links",
            "evidence": "link site-b does not exist, and the kernel refused a test link of kind gre",
            "fix": "use a kind of tunnel this kernel has (`ctm info` lists them), or a kernel with gre support",
            "fixed_by_apply": false,
        }])
    );
    assert!(fake.take_calls().contains(&"ping 198.51.100.7".to_string()));
    let a = f
        .api(Method::GET, "/api/tunnels/nosuch/diagnose", None)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
    assert_eq!(a.json()["help"], "its tunnels: lab-vx, site-b");
    let a = f
        .api(Method::GET, "/api/tunnels/a%2Fb/diagnose", None)
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);

    // The page: a row and a Diagnose button for each tunnel.
    let page = f.api(Method::GET, "/tunnels", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text.contains("<tr data-tunnel=\"lab-vx\">"),
        "{}",
        page.text
    );
    assert!(page.text.contains("<tr data-tunnel=\"site-b\">"));
    assert_eq!(page.text.matches(">Diagnose</button>").count(), 2);
    assert!(page.text.contains("name=\"diagnose\" value=\"site-b\""));
    assert!(!page.text.contains("id=\"diagnosis\""));
    // Pressed: the findings, each with what shows it and the fix; the
    // address the fake's lab-vx lacks is one an apply repairs.
    let page = f.api(Method::GET, "/tunnels?diagnose=site-b", None).await;
    assert!(
        page.text.contains("Diagnosis of <code>site-b</code>"),
        "{}",
        page.text
    );
    assert!(page.text.contains("Kernel: cannot make gre links"));
    assert!(page.text.contains("this kernel cannot make gre links"));
    assert!(
        page.text
            .contains("the kernel refused a test link of kind gre")
    );
    assert!(page.text.contains("or a kernel with gre support"));
    let page = f.api(Method::GET, "/tunnels?diagnose=lab-vx", None).await;
    assert!(
        page.text.contains("link lab-vx lacks its addresses"),
        "{}",
        page.text
    );
    assert!(page.text.contains("an apply repairs this"));
    assert!(page.text.contains("ctm tunnel diagnose lab-vx --fix"));
    let page = f.api(Method::GET, "/tunnels?diagnose=nosuch", None).await;
    assert!(
        page.text.contains("its tunnels: lab-vx, site-b"),
        "{}",
        page.text
    );
}

/// On a root that is not the running system the tunnels are listed from
/// the host file alone, and a diagnosis is refused, saying why.
#[tokio::test]
async fn tunnels_of_a_files_only_root_cannot_be_diagnosed() {
    let f = fixture();
    f.apply().await;
    let a = f.api(Method::GET, "/api/tunnels", None).await;
    assert_eq!(a.json()["live_system"], false);
    assert_eq!(a.json()["tunnels"][1]["live"], Value::Null);
    let a = f
        .api(Method::GET, "/api/tunnels/site-b/diagnose", None)
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    let page = f.api(Method::GET, "/tunnels", None).await;
    assert!(
        page.text.contains("Diagnose needs the running system"),
        "{}",
        page.text
    );
    assert_eq!(
        page.text
            .matches("type=\"submit\" disabled>Diagnose</button>")
            .count(),
        2
    );
    let page = f.api(Method::GET, "/tunnels?diagnose=site-b", None).await;
    let refusal = a.json()["error"].as_str().unwrap().to_string();
    assert!(page.text.contains(&refusal), "{refusal}: {}", page.text);
}

#[tokio::test]
async fn a_files_only_root_refuses_the_container_verbs() {
    let f = fixture();
    f.apply().await;
    let a = f.api(Method::GET, "/api/containers/web", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["status"]["state"], Value::Null);
    assert_eq!(a.json()["logs_note"], ctm::status::LOGS_NEED_LIVE);
    for (method, path) in [
        (Method::GET, "/api/containers/web/stats"),
        (Method::POST, "/api/containers/web/start"),
        (Method::POST, "/api/containers/web/pause"),
        (Method::GET, "/api/containers/web/console"),
    ] {
        let a = f.api(method, path, None).await;
        assert_eq!(a.status, StatusCode::CONFLICT, "{path}: {}", a.text);
        assert!(
            a.json()["error"]
                .as_str()
                .unwrap()
                .contains("files-only root"),
            "{path}: {}",
            a.text
        );
    }
    let f = files_only_fixture(false);
    let a = f.api(Method::POST, "/api/containers/web/stop", None).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("manages the files under / only")
    );
}

/// A WebSocket handshake for the console, as a browser sends it.
fn handshake(cookie: &str, csrf: Option<&str>, site: &str) -> Request<Body> {
    let uri = match csrf {
        Some(csrf) => format!("/api/containers/web/console?cols=100&rows=30&csrf={csrf}"),
        None => "/api/containers/web/console".to_string(),
    };
    Request::get(uri)
        .header(header::COOKIE, format!("ctm_session={cookie}"))
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
        .header(header::HOST, "127.0.0.1:7780")
        .header(header::ORIGIN, "http://127.0.0.1:7780")
        .header("sec-fetch-site", site)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn the_console_handshake_is_held_to_the_rules_of_a_change() {
    let f = fixture();
    let (cookie, csrf) = f.login().await;
    let status = |r: Request<Body>| {
        let app = f.app.clone();
        async move { app.oneshot(r).await.unwrap().status() }
    };
    // Another site's page cannot open a console, even with the token.
    assert_eq!(
        status(handshake(&cookie, Some(&csrf), "cross-site")).await,
        StatusCode::FORBIDDEN
    );
    // Nor a page without the session's CSRF token.
    assert_eq!(
        status(handshake(&cookie, None, "same-origin")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(handshake(&cookie, Some(&"0".repeat(64)), "same-origin")).await,
        StatusCode::FORBIDDEN
    );
    // With it, the use case answers: nothing runs under a files-only root.
    assert_eq!(
        status(handshake(&cookie, Some(&csrf), "same-origin")).await,
        StatusCode::CONFLICT
    );
    // Without a session, nothing.
    let mut r = handshake("nosuch", Some(&csrf), "same-origin");
    r.headers_mut().remove(header::COOKIE);
    assert_eq!(status(r).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn metrics_parse_and_need_a_token() {
    let (f, _fake) = live_fixture();
    f.apply().await;
    let a = f.call(Method::GET, "/metrics", &Auth::None, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // The metrics token reads /metrics and nothing else.
    let metrics_token = Auth::Bearer(f.state.auth.metrics_token().to_string());
    let a = f
        .call(Method::GET, "/api/status", &metrics_token, None)
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = f.call(Method::GET, "/metrics", &metrics_token, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(
        a.headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let same = f.api(Method::GET, "/metrics", None).await;
    assert_eq!(same.status, StatusCode::OK);
    let mode = std::fs::metadata(&f.state.auth.metrics_path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let Some(families) = prometheus_parse(&a.text) else {
        return;
    };
    assert_eq!(families["ctm_generation"]["samples"][0][2], 1.0);
    assert_eq!(families["ctm_last_apply_success"]["samples"][0][2], 1.0);
    assert_eq!(families["ctm_container_cpu_seconds"]["type"], "counter");
    let running: Vec<&Value> = families["ctm_container_state"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s[1]["state"] == "running" && s[2] == 1.0)
        .collect();
    let names: Vec<&str> = running
        .iter()
        .map(|s| s[1]["container"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"web") && names.contains(&"ci"), "{names:?}");
}

/// Issue 13: a 1.2 KB text nested 400 levels deep overflowed a worker's
/// stack and killed `ctm serve`, on every endpoint that reads a text, and
/// again on every plan once saved (commented out, which the CLI accepted).
/// Now each is a diagnostic at the place, and the server goes on.
#[tokio::test]
async fn texts_nested_too_deep_are_diagnostics_and_the_server_goes_on() {
    let f = fixture();
    let deep = format!("a{}{}\n", "{a".repeat(1276), "}".repeat(1276));
    let slashdashed = format!("host \"x\"\n/-{deep}");
    let too_deep = |check: &Value| {
        assert_eq!(check["valid"], false, "{check:#}");
        let codes: Vec<&str> = check["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["ctm::too-deep"], "{check:#}");
    };
    for text in [&deep, &slashdashed] {
        let a = f
            .api(Method::POST, "/api/validate", Some(json!({ "text": text })))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        too_deep(&a.json());
        let a = f
            .api(Method::POST, "/api/plan", Some(json!({ "text": text })))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        assert_eq!(a.json()["plan"], Value::Null);
        too_deep(&a.json()["check"]);
        let a = f
            .api(
                Method::POST,
                "/api/edit/read",
                Some(json!({ "text": text, "kind": "container", "name": "web" })),
            )
            .await;
        // Nothing to fill a form with (the page shows the diagnostics).
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        assert_eq!(a.json()["values"], json!({ "form": null, "names": [] }));
        let a = f
            .api(
                Method::POST,
                "/api/edit",
                Some(json!({ "text": text, "kind": "network", "values": { "name": "n" } })),
            )
            .await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    }
    // Saved on disk by someone else: every plan says what is wrong.
    std::fs::write(&f.host, &slashdashed).unwrap();
    let a = f.api(Method::POST, "/api/plan", Some(json!({}))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["plan"], Value::Null);
    too_deep(&a.json()["check"]);
    let a = f.api(Method::GET, "/api/source", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["text"], slashdashed.as_str());
    assert_eq!(
        f.api(Method::GET, "/api/status", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_topology_goes_down_and_up_from_the_plan_shown_first() {
    let (f, fake) = live_fixture_of("topology.kdl");
    let a = f.api(Method::GET, "/api/topologies", None).await;
    assert_eq!((a.status, a.json()), (StatusCode::OK, json!([])));
    let a = f.api(Method::GET, "/api/topologies/bgp/down", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
    f.apply().await;
    let running = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
    assert_eq!(fake.running(), running(&["r1", "r2", "web"]));

    // The list is `ctm topologies --json`'s.
    let list = f.api(Method::GET, "/api/topologies", None).await.json();
    assert_eq!(list[0]["name"], "bgp");
    assert_eq!(list[0]["down"], false);
    assert_eq!(list[0]["containers"], json!(["r1", "r2"]));
    assert_eq!(list[0]["networks"], json!(["ab"]));
    let cli = ctm_cli(&["topologies", "--json", "--root", f.root.to_str().unwrap()]);
    assert!(cli.status.success());
    assert_eq!(serde_json::from_slice::<Value>(&cli.stdout).unwrap(), list);

    // The plan of bringing it down, shown first: the routers stop, web
    // is not in it.
    let shown = f
        .api(Method::GET, "/api/topologies/bgp/down", None)
        .await
        .json();
    assert_eq!(
        (&shown["topology"], &shown["direction"]),
        (&json!("bgp"), &json!("down"))
    );
    let summaries: Vec<&str> = shown["plan"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["summary"].as_str().unwrap())
        .collect();
    assert!(summaries.contains(&"stop container r1"), "{summaries:?}");
    assert!(
        !summaries.iter().any(|s| s.contains("web")),
        "{summaries:?}"
    );
    assert_eq!(f.current(), Some(1), "showing the plan changes nothing");

    // Refused: a stale plan (409), a topology there is not (404).
    let a = f
        .api(
            Method::POST,
            "/api/topologies/bgp/down",
            Some(json!({ "fingerprint": "stale" })),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert!(a.json()["error"].as_str().unwrap().contains("stale plan"));
    for method in [Method::GET, Method::POST] {
        let a = f
            .api(
                method.clone(),
                "/api/topologies/nosuch/down",
                (method == Method::POST).then(|| json!({ "fingerprint": "x" })),
            )
            .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{method}: {}", a.text);
        assert!(
            a.json()["help"].as_str().unwrap().contains("bgp"),
            "{}",
            a.text
        );
    }
    assert_eq!(f.current(), Some(1));

    // Down, as the plan shown.
    let a = f
        .api(
            Method::POST,
            "/api/topologies/bgp/down",
            Some(json!({ "fingerprint": shown["plan"]["fingerprint"] })),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let events = f.job_events(a.json()["job"].as_u64().unwrap()).await;
    let last = events.last().unwrap();
    assert_eq!(
        last["message"], "Topology bgp is down (generation 2).",
        "{events:?}"
    );
    assert_eq!(last["generation"], 2);
    assert_eq!(fake.running(), running(&["web"]));
    let list = f.api(Method::GET, "/api/topologies", None).await.json();
    assert_eq!(list[0]["down"], true);
    let status = f.api(Method::GET, "/api/status", None).await.json();
    assert_eq!(status["topologies"], list);

    // Up again.
    let shown = f
        .api(Method::GET, "/api/topologies/bgp/up", None)
        .await
        .json();
    let a = f
        .api(
            Method::POST,
            "/api/topologies/bgp/up",
            Some(json!({ "fingerprint": shown["plan"]["fingerprint"] })),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let events = f.job_events(a.json()["job"].as_u64().unwrap()).await;
    assert_eq!(
        events.last().unwrap()["message"],
        "Topology bgp is up (generation 3).",
        "{events:?}"
    );
    assert_eq!(fake.running(), running(&["r1", "r2", "web"]));
    let list = f.api(Method::GET, "/api/topologies", None).await.json();
    assert_eq!(list[0]["down"], false);
}
