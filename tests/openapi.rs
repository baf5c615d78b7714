//! docs/openapi.json, held to the code. The document is OpenAPI 3.1, every
//! Schema Object in it JSON Schema of the OpenAPI dialect (checked offline
//! against the meta-schemas vendored in tests/openapi/). And a real
//! session through the router, errors included, answers only what the
//! document says: every request body sent and every answer received is
//! validated against the schema the document gives for its path, method,
//! status and media type. An answer with a status or a media type the
//! document does not list fails, and so does a route no call exercised.
//! The schemas are closed (`required`, `additionalProperties: false`), so
//! a field added to or dropped from an answer in src/ fails here until
//! the document says so too.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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

/// docs/openapi.json, the validators built from it, and what was seen.
struct Spec {
    doc: Value,
    validators: Mutex<HashMap<String, jsonschema::Validator>>,
    /// (path template, method) → the statuses answered.
    seen: Mutex<BTreeMap<(String, String), BTreeSet<u16>>>,
}

/// A JSON Pointer token: `~` and `/` escaped.
fn token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

impl Spec {
    fn load() -> Spec {
        let path = repo().join("docs/openapi.json");
        let text = std::fs::read_to_string(&path).unwrap();
        Spec {
            doc: serde_json::from_str(&text).unwrap(),
            validators: Mutex::new(HashMap::new()),
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    /// The errors of `instance` against the schema at `pointer` in the
    /// document, its `$ref`s resolved in the document's components.
    fn errors(&self, pointer: &str, instance: &Value) -> Vec<String> {
        let mut validators = self.validators.lock().unwrap();
        let validator = validators.entry(pointer.to_string()).or_insert_with(|| {
            let schema = self
                .doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("docs/openapi.json has nothing at {pointer}"));
            let root = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": self.doc["components"],
                "allOf": [schema],
            });
            jsonschema::options()
                .offline()
                .build(&root)
                .unwrap_or_else(|e| panic!("the schema at {pointer} does not compile: {e}"))
        });
        validator
            .iter_errors(instance)
            .map(|e| format!("at {}: {e}", e.instance_path()))
            .collect()
    }

    fn assert_valid(&self, pointer: &str, instance: &Value, what: &str) {
        let errors = self.errors(pointer, instance);
        assert!(
            errors.is_empty(),
            "{what} does not match {pointer}:\n{}\n{}",
            errors.join("\n"),
            serde_json::to_string_pretty(instance).unwrap()
        );
    }

    /// The path template of the document that `path` is an instance of.
    fn template(&self, path: &str) -> String {
        let path = path.split('?').next().unwrap();
        let segments: Vec<&str> = path.split('/').collect();
        let matching: Vec<&String> = self.doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|template| {
                let parts: Vec<&str> = template.split('/').collect();
                parts.len() == segments.len()
                    && parts.iter().zip(&segments).all(|(t, s)| {
                        (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s
                    })
            })
            .collect();
        match matching.as_slice() {
            [one] => one.to_string(),
            _ => panic!("{path} is an instance of {matching:?} in docs/openapi.json"),
        }
    }

    /// Checks one exchange against the document, keeping in `answer` the
    /// body as JSON or the events of an event stream, as checked.
    fn check(&self, method: &Method, path: &str, sent: &Sent, answer: &mut Answer) {
        let template = self.template(path);
        let method_name = method.as_str().to_lowercase();
        let what = format!("{method} {path}");
        let op = format!("/paths/{}/{method_name}", token(&template));
        let operation = self
            .doc
            .pointer(&op)
            .unwrap_or_else(|| panic!("{what}: docs/openapi.json has no {method_name} {template}"));
        let request = format!("{op}/requestBody/content/application~1json/schema");
        match sent {
            Sent::Nothing => assert_ne!(
                operation["requestBody"]["required"], true,
                "{what}: sent without the body the document requires"
            ),
            Sent::Json(body) => self.assert_valid(&request, body, &format!("{what}: the request")),
            Sent::Rejected(body) => assert!(
                !self.errors(&request, body).is_empty(),
                "{what}: the server refused this body, but the document allows it: {body}"
            ),
            Sent::Raw(..) => {}
        }
        let status = answer.status.as_u16();
        let response = format!("{op}/responses/{status}");
        let Some(documented) = self.doc.pointer(&response) else {
            panic!(
                "{what} answered {status}, which docs/openapi.json does not list for it: {}",
                answer.text
            );
        };
        match documented.get("content") {
            None => assert!(answer.text.is_empty(), "{what}: an undocumented body"),
            Some(content) => {
                let media = answer
                    .headers
                    .get(header::CONTENT_TYPE)
                    .map(|v| v.to_str().unwrap().split(';').next().unwrap().trim())
                    .unwrap_or_default()
                    .to_string();
                assert!(
                    content.get(&media).is_some(),
                    "{what} answered {status} as {media:?}, which docs/openapi.json does not list: {}",
                    answer.text
                );
                let at = format!("{response}/content/{}", token(&media));
                match media.as_str() {
                    "application/json" => {
                        let body: Value = serde_json::from_str(&answer.text)
                            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", answer.text));
                        self.assert_valid(&format!("{at}/schema"), &body, &what);
                        answer.json = Some(body);
                    }
                    "text/plain" => self.assert_valid(
                        &format!("{at}/schema"),
                        &Value::String(answer.text.clone()),
                        &what,
                    ),
                    "text/event-stream" => {
                        let item = format!("{at}/x-itemSchema");
                        let json_data = self
                            .doc
                            .pointer(&format!("{item}/properties/data/contentMediaType"))
                            == Some(&json!("application/json"));
                        for (event, data) in server_sent_events(&answer.text) {
                            let sse = json!({ "event": event, "data": data });
                            self.assert_valid(&item, &sse, &format!("{what}: an event"));
                            let data = if json_data {
                                let parsed: Value = serde_json::from_str(&data).unwrap();
                                self.assert_valid(
                                    &format!("{item}/properties/data/contentSchema"),
                                    &parsed,
                                    &format!("{what}: the data of a {event} event"),
                                );
                                parsed
                            } else {
                                Value::String(data)
                            };
                            answer.events.push((event, data));
                        }
                    }
                    // A file, whatever its bytes: sent to be saved.
                    "application/zstd" => assert!(
                        answer
                            .headers
                            .get(header::CONTENT_DISPOSITION)
                            .is_some_and(|v| v.to_str().unwrap().starts_with("attachment;")),
                        "{what}: an archive not sent as an attachment"
                    ),
                    other => panic!("{what}: the test cannot check {other}"),
                }
            }
        }
        self.seen
            .lock()
            .unwrap()
            .entry((template, method_name))
            .or_default()
            .insert(status);
    }

    /// Every operation of the document was called.
    fn assert_all_exercised(&self) {
        let seen = self.seen.lock().unwrap();
        let mut missing = Vec::new();
        for (path, operations) in self.doc["paths"].as_object().unwrap() {
            for method in operations.as_object().unwrap().keys() {
                if !seen.contains_key(&(path.clone(), method.clone())) {
                    missing.push(format!("{method} {path}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "never called: {missing:?}; called: {seen:?}"
        );
    }
}

/// The events of a `text/event-stream` body: (name, data), comments and
/// keep-alives left out.
fn server_sent_events(text: &str) -> Vec<(String, String)> {
    let mut events = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = String::from("message");
        let mut data: Vec<&str> = Vec::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim_start().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v));
            } else {
                assert!(line.starts_with(':'), "not an SSE line: {line:?}");
            }
        }
        if !data.is_empty() {
            events.push((name, data.join("\n")));
        }
    }
    events
}

/// What a request carries.
enum Sent {
    Nothing,
    /// JSON the document allows.
    Json(Value),
    /// JSON the document does not allow (and the server refuses).
    Rejected(Value),
    /// Bytes with this Content-Type (none when empty): not JSON, or no
    /// JSON media type; not checked.
    Raw(&'static str, String),
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
    /// The body, when it is JSON.
    json: Option<Value>,
    /// The events, when it is an event stream.
    events: Vec<(String, Value)>,
}

impl Answer {
    fn json(&self) -> &Value {
        self.json
            .as_ref()
            .unwrap_or_else(|| panic!("not JSON: {}", self.text))
    }

    fn expect(self, status: StatusCode) -> Answer {
        assert_eq!(self.status, status, "{}", self.text);
        self
    }
}

/// A journal that prints two lines.
struct Printf;

impl Journal for Printf {
    fn command(&self, query: &LogQuery) -> Option<std::process::Command> {
        let mut c = std::process::Command::new("printf");
        c.arg(format!(
            "{}: started\\n{}: ready\\n",
            query.name, query.name
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
    spec: Arc<Spec>,
}

fn fixture(spec: &Arc<Spec>, journal: Box<dyn Journal>, files_only: Option<&str>) -> Fixture {
    fixture_on(spec, "homelab.kdl", journal, files_only, None)
}

/// A fixture whose sessions drive the recording fake, as if the root were
/// a live host: containers start, pause, report their use.
fn live_fixture(spec: &Arc<Spec>) -> Fixture {
    live_fixture_of(spec, "homelab.kdl")
}

/// [`live_fixture`] of another example.
fn live_fixture_of(spec: &Arc<Spec>, example: &str) -> Fixture {
    let fake = ctm::backend::recording::Recording::new();
    fixture_on(
        spec,
        example,
        Box::new(Printf),
        None,
        Some(Arc::new(move || Box::new(fake.clone()))),
    )
}

fn fixture_on(
    spec: &Arc<Spec>,
    example: &str,
    journal: Box<dyn Journal>,
    files_only: Option<&str>,
    system: Option<ctm::engine::session::SystemFactory>,
) -> Fixture {
    let (dir, host) = scratch_example(example);
    let root = dir.path().join("root");
    let config = Config {
        host_file: Some(host.clone()),
        fleet: None,
        root: root.clone(),
        resources: Box::new(OneBusyContainer),
        journal,
        files_only_reason: files_only.map(str::to_string),
        allow_files_only: false,
        system,
    };
    let (state, _) = AppState::new(config).unwrap();
    let app = ctm::web::router(state.clone());
    Fixture {
        _dir: dir,
        host,
        root,
        state,
        app,
        spec: spec.clone(),
    }
}

/// A real plan of the example host, as a host's ctm prints it.
fn example_plan(host: &std::path::Path) -> ctm::plan::Plan {
    let outcome = ctm::engine::load::load_and_validate(host, None).unwrap();
    let desired = ctm::engine::load::Desired::compile(&outcome, &Default::default()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let target = ctm::engine::Target::new(root.path());
    let mut session =
        ctm::engine::Session::open(&target, ctm::engine::Access::Read, &mut |_| {}).unwrap();
    session
        .plan(&desired.artifacts, Default::default(), &mut |_| {})
        .unwrap()
}

/// A server that shows a fleet too: `h1` and `h2` behind the recording
/// fake of the SSH transport, `h2` running a ctm of another series; one
/// earlier run recorded.
fn fleet_fixture(spec: &Arc<Spec>) -> (Fixture, PathBuf) {
    use ctm::backend::ssh::Transport;
    use ctm::backend::ssh::fake::{Answer as Ssh, Call, Recording};
    use ctm::engine::fleet::{HostOutcome, HostRecord, RunRecord};
    let (dir, host) = scratch_example("homelab.kdl");
    let fleet = dir.path().join("fleet.kdl");
    std::fs::write(
        &fleet,
        "canary \"h1\"\nhost \"h1\" {\n    ssh \"root@h1\"\n    file \"homelab.kdl\"\n    tags \"lab\"\n}\n\
         host \"h2\" {\n    ssh \"root@h2\" port=2222\n    file \"homelab.kdl\"\n    group \"edge\"\n}\n",
    )
    .unwrap();
    let record = RunRecord {
        ctm_fleet_run: 1,
        started: "2026-01-01T00:00:00Z".into(),
        finished: "2026-01-01T00:01:00Z".into(),
        fleet_file: fleet.display().to_string(),
        fleet_sha256: "0".repeat(64),
        ctm_version: env!("CARGO_PKG_VERSION").into(),
        canary: Some("h1".into()),
        keep_going: false,
        parallel: 1,
        succeeded: true,
        hosts: vec![HostRecord {
            host: "h1".into(),
            destination: "root@h1".into(),
            host_file: "homelab.kdl".into(),
            host_file_sha256: "0".repeat(64),
            outcome: HostOutcome::Switched { from: None, to: 1 },
        }],
    };
    let runs = dir.path().join(".ctm-fleet/runs");
    std::fs::create_dir_all(&runs).unwrap();
    std::fs::write(
        runs.join("20260101T000000Z-1.json"),
        serde_json::to_string(&record).unwrap(),
    )
    .unwrap();
    let plan = serde_json::to_string(&example_plan(&host)).unwrap();
    let status = json!({
        "generation": {
            "number": 1, "created": "2026-01-01T00:00:30Z", "source_name": "h1.kdl",
            "source_sha256": "0".repeat(64), "summary": "3 containers, 2 networks, 1 tunnel",
            "ctm_version": env!("CARGO_PKG_VERSION"),
        },
        "pending_confirm": null,
        "drift": { "files": [{ "path": "etc/x" }], "conflicts": [], "actions": [], "firewall": [] },
    })
    .to_string();
    let answer = move |call: &Call| {
        let argv: Vec<&str> = call.argv.iter().map(String::as_str).collect();
        let old = call.host == "root@h2";
        match argv.as_slice() {
            ["ctm", "--version"] if old => Ssh::ok("ctm 0.0.9\n"),
            ["ctm", "--version"] => Ssh::ok(&format!("ctm {}\n", env!("CARGO_PKG_VERSION"))),
            ["ctm", "status", "--json"] => Ssh::ok(&status),
            ["ctm", "plan", ..] => Ssh::ok(&plan),
            ["mktemp", ..] => Ssh::ok("/tmp/ctm-fleet.x\n"),
            _ => Ssh::ok(""),
        }
    };
    let answer = Arc::new(answer);
    let config = Config {
        fleet: Some(ctm::web::fleet::FleetConfig {
            file: fleet.clone(),
            connect: Arc::new(move || {
                let answer = answer.clone();
                Ok(Box::new(Recording::new(move |c: &Call| answer(c))) as Box<dyn Transport>)
            }),
        }),
        ..Config::new(Some(host.clone()), dir.path().join("root"))
    };
    let (state, _) = AppState::new(config).unwrap();
    let app = ctm::web::router(state.clone());
    let root = dir.path().join("root");
    (
        Fixture {
            _dir: dir,
            host,
            root,
            state,
            app,
            spec: spec.clone(),
        },
        fleet,
    )
}

impl Fixture {
    fn bearer(&self) -> Auth {
        Auth::Bearer(self.state.auth.token().to_string())
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, String) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// One call of the API, checked against the document.
    async fn call(&self, method: Method, path: &str, auth: &Auth, sent: Sent) -> Answer {
        let mut request = Request::builder().method(method.clone()).uri(path);
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
        let body = match &sent {
            Sent::Nothing => Body::empty(),
            Sent::Json(v) | Sent::Rejected(v) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            Sent::Raw(content_type, bytes) => {
                if !content_type.is_empty() {
                    request = request.header(header::CONTENT_TYPE, *content_type);
                }
                Body::from(bytes.clone())
            }
        };
        let (status, headers, text) = self.send(request.body(body).unwrap()).await;
        let mut answer = Answer {
            status,
            headers,
            text,
            json: None,
            events: Vec::new(),
        };
        self.spec.check(&method, path, &sent, &mut answer);
        answer
    }

    /// A WebSocket handshake with the token, checked against the document.
    async fn handshake(&self, path: &str) -> Answer {
        let request = Request::get(path)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.state.auth.token()),
            )
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
            .body(Body::empty())
            .unwrap();
        let (status, headers, text) = self.send(request).await;
        let mut answer = Answer {
            status,
            headers,
            text,
            json: None,
            events: Vec::new(),
        };
        self.spec
            .check(&Method::GET, path, &Sent::Nothing, &mut answer);
        answer
    }

    async fn api(&self, method: Method, path: &str, sent: Sent) -> Answer {
        let auth = self.bearer();
        self.call(method, path, &auth, sent).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.api(Method::GET, path, Sent::Nothing).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.api(Method::POST, path, Sent::Json(body)).await
    }

    /// Logs in through the form; returns the session cookie and its CSRF
    /// token, read from a page as the scripts do (neither is the API).
    async fn login(&self) -> (String, String) {
        let request = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={}", self.state.auth.token())))
            .unwrap();
        let (status, headers, _) = self.send(request).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let cookie = headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .strip_prefix("ctm_session=")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let request = Request::get("/editor")
            .header(header::COOKIE, format!("ctm_session={cookie}"))
            .body(Body::empty())
            .unwrap();
        let (status, _, page) = self.send(request).await;
        assert_eq!(status, StatusCode::OK);
        let csrf = page
            .split("name=\"csrf-token\" content=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        (cookie, csrf)
    }

    async fn fingerprint(&self) -> Value {
        let answer = self
            .post("/api/plan", json!({}))
            .await
            .expect(StatusCode::OK);
        answer.json()["plan"]["fingerprint"].clone()
    }

    /// Starts an apply; returns its job.
    async fn start_apply(&self, body: Value) -> u64 {
        let answer = self
            .post("/api/apply", body)
            .await
            .expect(StatusCode::ACCEPTED);
        answer.json()["job"].as_u64().unwrap()
    }

    /// The job's whole event stream (it ends with the job): each event's
    /// data, whose `kind` is the event's name.
    async fn job_events(&self, job: u64) -> Vec<Value> {
        let answer = self
            .get(&format!("/api/jobs/{job}"))
            .await
            .expect(StatusCode::OK);
        assert_eq!(answer.headers[header::CONTENT_TYPE], "text/event-stream");
        for (name, data) in &answer.events {
            assert_eq!(data["kind"], name.as_str(), "{data}");
        }
        answer.events.into_iter().map(|(_, data)| data).collect()
    }

    async fn wait_until_waiting(&self, job: u64) {
        for _ in 0..200 {
            if self.state.jobs.get(job).unwrap().phase() == ctm::web::jobs::Phase::Waiting {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("job {job} never waited for a confirmation");
    }

    fn edit_host(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.host).unwrap();
        assert!(text.contains(from));
        std::fs::write(&self.host, text.replace(from, to)).unwrap();
    }
}

#[tokio::test]
async fn every_answer_of_a_real_session_is_in_the_spec() {
    let spec = Arc::new(Spec::load());
    let f = fixture(&spec, Box::new(Printf), None);
    use StatusCode as S;

    // Who may call: nobody without the token; a session reads, and
    // changes only with its CSRF token.
    let a = f
        .call(Method::GET, "/api/status", &Auth::None, Sent::Nothing)
        .await;
    assert_eq!(a.status, S::UNAUTHORIZED);
    let wrong = Auth::Bearer("0".repeat(64));
    let a = f
        .call(Method::POST, "/api/plan", &wrong, Sent::Json(json!({})))
        .await;
    assert_eq!(a.status, S::UNAUTHORIZED);
    let (cookie, csrf) = f.login().await;
    let a = f
        .call(
            Method::POST,
            "/api/validate",
            &Auth::Cookie(cookie.clone(), None),
            Sent::Json(json!({})),
        )
        .await;
    assert_eq!(a.status, S::FORBIDDEN);
    f.call(
        Method::POST,
        "/api/validate",
        &Auth::Cookie(cookie.clone(), Some(csrf)),
        Sent::Json(json!({})),
    )
    .await
    .expect(S::OK);
    f.call(
        Method::GET,
        "/api/source",
        &Auth::Cookie(cookie, None),
        Sent::Nothing,
    )
    .await
    .expect(S::OK);

    // The host file: read, validated (valid and not), planned.
    let source = f.get("/api/source").await.expect(S::OK);
    let text = source.json()["text"].as_str().unwrap().to_string();
    let a = f.post("/api/validate", json!({ "text": text })).await;
    assert_eq!(a.expect(S::OK).json()["valid"], true);
    let broken = text.replace(
        "container \"web\" {",
        "container \"web\" {\n    colour \"red\"",
    );
    let a = f
        .post("/api/validate", json!({ "text": broken, "adopt": false }))
        .await
        .expect(S::OK);
    assert_eq!(a.json()["valid"], false);
    assert!(!a.json()["diagnostics"].as_array().unwrap().is_empty());
    f.post("/api/validate", json!({ "text": null }))
        .await
        .expect(S::OK);
    // What axum refuses before ctm sees it: plain text, not JSON.
    let a = f
        .api(
            Method::POST,
            "/api/validate",
            Sent::Raw("application/json", "{".into()),
        )
        .await;
    assert_eq!(a.status, S::BAD_REQUEST);
    let a = f
        .api(Method::POST, "/api/validate", Sent::Raw("", "{}".into()))
        .await;
    assert_eq!(a.status, S::UNSUPPORTED_MEDIA_TYPE);
    let a = f
        .api(
            Method::POST,
            "/api/validate",
            Sent::Rejected(json!({ "text": 5 })),
        )
        .await;
    assert_eq!(a.status, S::UNPROCESSABLE_ENTITY);
    assert_eq!(a.headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    let a = f
        .post("/api/validate", json!({ "text": "x".repeat(5 << 20) }))
        .await;
    assert_eq!(a.status, S::PAYLOAD_TOO_LARGE);
    let a = f
        .post("/api/plan", json!({ "text": broken }))
        .await
        .expect(S::OK);
    assert_eq!(a.json()["plan"], Value::Null);
    let a = f
        .post("/api/plan", json!({ "text": text, "adopt": true }))
        .await
        .expect(S::OK);
    assert_eq!(a.json()["plan"]["from_generation"], Value::Null);

    // Before the first apply.
    let a = f.get("/api/status").await.expect(S::OK);
    assert_eq!(a.json()["generation"], Value::Null);
    let a = f.get("/api/generations").await.expect(S::OK);
    assert_eq!(a.json()["generations"], json!([]));
    let a = f.get("/api/images").await.expect(S::OK);
    assert_eq!(a.json(), &json!([]));
    // No generation uses an image yet: the pull's job fails, saying so;
    // the store has none to remove.
    let a = f
        .api(Method::POST, "/api/images/app/pull", Sent::Nothing)
        .await
        .expect(S::ACCEPTED);
    let job = a.json()["job"].as_u64().unwrap();
    let a = f.get(&format!("/api/jobs/{job}")).await.expect(S::OK);
    assert!(a.text.contains("there is no image app"), "{}", a.text);
    f.api(Method::POST, "/api/images/-bad/pull", Sent::Nothing)
        .await
        .expect(S::BAD_REQUEST);
    let a = f
        .api(Method::POST, "/api/images/app/remove", Sent::Nothing)
        .await
        .expect(S::NOT_FOUND);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("there is no image app")
    );
    f.api(Method::POST, "/api/images/-bad/remove", Sent::Nothing)
        .await
        .expect(S::BAD_REQUEST);

    // Save, then a save over a file changed since it was loaded.
    let saved = format!("{text}\n// saved through the API\n");
    f.post("/api/save", json!({ "text": saved, "base": text }))
        .await
        .expect(S::OK);
    let a = f
        .post("/api/save", json!({ "text": "host \"x\"\n", "base": text }))
        .await
        .expect(S::CONFLICT);
    assert_eq!(a.json()["current"], saved.as_str());

    // An apply refused: a file in ctm's way, a host file with errors, a
    // confirmation timeout out of range, a stale plan.
    let foreign = f.root.join("etc/systemd/nspawn/web.nspawn");
    std::fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    std::fs::write(&foreign, "[Exec]\nBoot=yes\n").unwrap();
    let fingerprint = f.fingerprint().await;
    let a = f
        .post("/api/apply", json!({ "fingerprint": fingerprint }))
        .await
        .expect(S::CONFLICT);
    assert_eq!(
        a.json()["conflicts"][0]["path"],
        "etc/systemd/nspawn/web.nspawn"
    );
    std::fs::remove_file(&foreign).unwrap();
    f.post("/api/save", json!({ "text": broken, "base": saved }))
        .await
        .expect(S::OK);
    let a = f
        .post("/api/apply", json!({ "fingerprint": "any" }))
        .await
        .expect(S::UNPROCESSABLE_ENTITY);
    assert_eq!(a.json()["check"]["valid"], false);
    f.post("/api/save", json!({ "text": text, "base": broken }))
        .await
        .expect(S::OK);
    let fingerprint = f.fingerprint().await;
    for timeout in [0, 604_801] {
        let body = json!({ "fingerprint": fingerprint, "confirm_timeout": timeout });
        let a = f
            .api(Method::POST, "/api/apply", Sent::Rejected(body))
            .await;
        assert_eq!(a.status, S::UNPROCESSABLE_ENTITY, "{}", a.text);
    }
    f.post("/api/apply", json!({ "fingerprint": "stale" }))
        .await
        .expect(S::CONFLICT);

    // The first apply, and its events.
    let job = f
        .start_apply(json!({
            "fingerprint": fingerprint,
            "adopt": false,
            "confirm_timeout": null,
            "git_commit": false,
        }))
        .await;
    let events = f.job_events(job).await;
    let last = events.last().unwrap();
    assert_eq!(
        (&last["kind"], &last["generation"]),
        (&json!("done"), &json!(1))
    );
    assert!(events.iter().any(|e| e["event"]["event"] == "applying"));
    let a = f.get("/api/jobs/999").await;
    assert_eq!(a.status, S::NOT_FOUND);
    let a = f.get("/api/jobs/one").await;
    assert_eq!(a.status, S::BAD_REQUEST);

    // Status after it, with drift: a file ctm wrote, edited by hand.
    let nspawn = f.root.join("etc/systemd/nspawn/web.nspawn");
    let written = std::fs::read_to_string(&nspawn).unwrap();
    std::fs::write(&nspawn, format!("{written}# edited by hand\n")).unwrap();
    let a = f.get("/api/status").await.expect(S::OK);
    let status = a.json();
    assert_eq!(status["generation"]["number"], 1);
    let web = &status["containers"][2];
    assert_eq!(web["name"], "web");
    assert_eq!(web["usage"]["memory_bytes"], 64 << 20);
    assert_eq!(web["drift"][0]["path"], "etc/systemd/nspawn/web.nspawn");
    assert!(!status["drift"]["files"].as_array().unwrap().is_empty());
    std::fs::write(&nspawn, written).unwrap();

    // An apply with a confirmation timeout, confirmed in time.
    f.edit_host("host=8080", "host=8081");
    let fingerprint = f.fingerprint().await;
    let job = f
        .start_apply(json!({ "fingerprint": fingerprint, "confirm_timeout": 60 }))
        .await;
    f.wait_until_waiting(job).await;
    let a = f.get("/api/status").await.expect(S::OK);
    assert_eq!(a.json()["pending_confirm"]["generation"], 2);
    let a = f.get("/api/generations").await.expect(S::OK);
    assert_eq!(a.json()["pending_confirm"]["previous"], 1);
    let a = f
        .post("/api/apply", json!({ "fingerprint": fingerprint }))
        .await
        .expect(S::CONFLICT);
    assert_eq!(a.json()["job"], job);
    f.post("/api/confirm", json!({ "generation": 7 }))
        .await
        .expect(S::CONFLICT);
    let a = f
        .post("/api/confirm", json!({ "generation": 2 }))
        .await
        .expect(S::OK);
    assert_eq!(a.json()["confirmed"], 2);
    let events = f.job_events(job).await;
    let waiting = events.iter().find(|e| e["kind"] == "waiting").unwrap();
    assert_eq!(waiting["event"]["event"], "confirm-before");
    assert_eq!(events.last().unwrap()["generation"], 2);
    let a = f
        .api(Method::POST, "/api/confirm", Sent::Nothing)
        .await
        .expect(S::OK);
    assert_eq!(a.json()["confirmed"], Value::Null);
    let a = f
        .api(
            Method::POST,
            "/api/confirm",
            Sent::Raw("application/json", "{".into()),
        )
        .await;
    assert_eq!(a.status, S::BAD_REQUEST);

    // One not confirmed in time, and a confirmation that comes too late.
    f.edit_host("host=8081", "host=8082");
    let fingerprint = f.fingerprint().await;
    let job = f
        .start_apply(json!({ "fingerprint": fingerprint, "confirm_timeout": 1 }))
        .await;
    let events = f.job_events(job).await;
    assert_eq!(events.last().unwrap()["kind"], "failed");
    let a = f
        .post("/api/confirm", json!({ "generation": 3 }))
        .await
        .expect(S::CONFLICT);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("for want of a confirmation")
    );
    let a = f.get("/api/status").await.expect(S::OK);
    assert_eq!(a.json()["unconfirmed"]["back_to"], 2);
    let a = f.get("/api/generations").await.expect(S::OK);
    let list = a.json();
    assert_eq!(list["generations"][0]["generation"]["number"], 3);
    assert_eq!(list["generations"][0]["reverted"]["to"], 2);

    // Diffs and rollbacks.
    let a = f.get("/api/generations/1/diff/2").await.expect(S::OK);
    assert_eq!(a.json()["files"][0]["path"], "etc/ctm/ctm.nft");
    f.get("/api/generations/1/diff/99")
        .await
        .expect(S::NOT_FOUND);
    f.get("/api/generations/one/diff/2")
        .await
        .expect(S::BAD_REQUEST);
    let shown = f.get("/api/rollback/1").await.expect(S::OK);
    let fingerprint = shown.json()["plan"]["fingerprint"].clone();
    f.get("/api/rollback/99").await.expect(S::NOT_FOUND);
    f.get("/api/rollback/one").await.expect(S::BAD_REQUEST);
    for (body, status) in [
        (
            json!({ "generation": 1, "fingerprint": "stale" }),
            S::CONFLICT,
        ),
        (json!({ "generation": 2, "fingerprint": "x" }), S::CONFLICT),
        (
            json!({ "generation": 99, "fingerprint": "x" }),
            S::NOT_FOUND,
        ),
    ] {
        f.post("/api/rollback", body).await.expect(status);
    }
    let a = f
        .api(
            Method::POST,
            "/api/rollback",
            Sent::Rejected(json!({ "generation": "one", "fingerprint": "x" })),
        )
        .await;
    assert_eq!(a.status, S::UNPROCESSABLE_ENTITY);
    let a = f
        .post(
            "/api/rollback",
            json!({ "generation": 1, "fingerprint": fingerprint }),
        )
        .await
        .expect(S::ACCEPTED);
    let events = f.job_events(a.json()["job"].as_u64().unwrap()).await;
    assert_eq!(events.last().unwrap()["generation"], 1);

    // Logs: the journal, a name that is none, a root without a journal.
    for path in ["/api/logs/web", "/api/logs/web?follow=true"] {
        let a = f.get(path).await.expect(S::OK);
        let names: Vec<&str> = a.events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["line", "line", "end"]);
        assert_eq!(a.events[0].1, "web: started");
    }
    let a = f.get("/api/logs/-rf").await.expect(S::BAD_REQUEST);
    assert!(a.json.is_some());
    let a = f.get("/api/logs/web?follow=maybe").await;
    assert_eq!(a.status, S::BAD_REQUEST);
    assert!(a.json.is_none(), "axum's own answer: {}", a.text);
    let files = fixture(&spec, Box::new(NoJournal), None);
    files.get("/api/logs/web").await.expect(S::CONFLICT);

    // Another ctm holds the lock (waited for 2 s).
    let held = Store::new(&f.root).lock(None, || {}).unwrap();
    f.get("/api/status").await.expect(S::CONFLICT);
    drop(held);

    // The forms: read and edit, a network and a container.
    let text = std::fs::read_to_string(&f.host).unwrap();
    let read = |kind: &str, name: &str| json!({ "text": text, "kind": kind, "name": name });
    let a = f
        .post("/api/edit/read", read("container", "web"))
        .await
        .expect(S::OK);
    assert_eq!(a.json()["values"]["form"]["template"], "base");
    let a = f
        .post("/api/edit/read", read("network", "lan"))
        .await
        .expect(S::OK);
    assert_eq!(a.json()["values"]["form"]["bridge"], "br-lan");
    let a = f
        .post("/api/edit/read", read("container", ""))
        .await
        .expect(S::OK);
    assert_eq!(a.json()["values"]["names"], json!(["web", "ci", "builder"]));
    assert_eq!(a.json()["values"]["form"], Value::Null);
    let a = f
        .post(
            "/api/edit",
            json!({
                "text": text,
                "kind": "network",
                "values": { "name": "dmz", "bridge": "br-dmz", "ipv4": "10.43.0.1/24", "ipv4_nat": true },
            }),
        )
        .await
        .expect(S::OK);
    let edited = a.json()["text"].as_str().unwrap().to_string();
    let a = f
        .post(
            "/api/edit",
            json!({
                "text": edited,
                "kind": "container",
                "values": {
                    "name": "db",
                    "template": "base",
                    "network": "dmz",
                    "forwards": [{ "protocol": "tcp", "host": 5432, "container": 5432 }],
                    "authorized_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE6xAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA test"],
                },
            }),
        )
        .await
        .expect(S::OK);
    let edited = a.json()["text"].as_str().unwrap().to_string();
    assert!(edited.contains("container \"db\""), "{edited}");
    for values in [json!({ "name": "n" }), json!({})] {
        let text = if values == json!({}) { &edited } else { "x {" };
        f.post(
            "/api/edit",
            json!({ "text": text, "kind": "network", "values": values }),
        )
        .await
        .expect(S::UNPROCESSABLE_ENTITY);
    }
    // Bodies the document does not allow: an unknown kind is refused in
    // plain text; a field the server does not know it ignores.
    for (path, body, status) in [
        (
            "/api/edit",
            json!({ "text": text, "kind": "volume", "values": {} }),
            S::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/edit/read",
            json!({ "text": text, "kind": "volume", "name": "" }),
            S::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/edit",
            json!({ "text": text, "kind": "network", "values": { "name": "n", "template": "base" } }),
            S::OK,
        ),
    ] {
        let a = f.api(Method::POST, path, Sent::Rejected(body)).await;
        assert_eq!(a.status, status, "{path}: {}", a.text);
    }

    // A files-only root `/` refuses to change anything.
    let g = fixture(&spec, Box::new(NoJournal), Some("no systemd as PID 1"));
    let a = g
        .post("/api/apply", json!({ "fingerprint": "x" }))
        .await
        .expect(S::CONFLICT);
    assert!(a.json()["help"].as_str().unwrap().contains("--files-only"));
    g.api(Method::POST, "/api/containers/web/stop", Sent::Nothing)
        .await
        .expect(S::CONFLICT);

    // The container page and its buttons, on a files-only root: the page,
    // without live values; the buttons, refused.
    f.get("/api/containers/web").await.expect(S::OK);
    f.get("/api/containers/web/stats").await.expect(S::CONFLICT);
    f.api(Method::POST, "/api/containers/web/start", Sent::Nothing)
        .await
        .expect(S::CONFLICT);
    f.handshake("/api/containers/web/console")
        .await
        .expect(S::CONFLICT);
    // The tunnels, on a root that is not the running system: listed
    // without their links; a diagnosis refused.
    let a = f.get("/api/tunnels").await.expect(S::OK);
    assert_eq!(a.json()["live_system"], false);
    assert_eq!(a.json()["tunnels"][0]["live"], Value::Null);
    f.get("/api/tunnels/lab-vx/diagnose")
        .await
        .expect(S::CONFLICT);
    f.get("/metrics").await.expect(S::OK);
    f.call(Method::GET, "/metrics", &Auth::None, Sent::Nothing)
        .await
        .expect(S::UNAUTHORIZED);

    // On a live host (the recording fake).
    let h = live_fixture(&spec);
    let fingerprint = h.fingerprint().await;
    let job = h.start_apply(json!({ "fingerprint": fingerprint })).await;
    h.job_events(job).await;
    let page = h.get("/api/containers/web").await.expect(S::OK);
    assert_eq!(page.json()["status"]["state"], "running");
    h.get("/api/containers/nosuch").await.expect(S::NOT_FOUND);
    h.get("/api/containers/no%20such")
        .await
        .expect(S::BAD_REQUEST);
    h.get("/api/containers/web/stats").await.expect(S::OK);
    h.get("/api/containers/nosuch/stats")
        .await
        .expect(S::NOT_FOUND);
    h.get("/metrics").await.expect(S::OK);
    let a = h.get("/api/tunnels").await.expect(S::OK);
    assert_eq!(a.json()["tunnels"][1]["live"]["exists"], true);
    let a = h.get("/api/tunnels/lab-vx/diagnose").await.expect(S::OK);
    assert_eq!(a.json()["remote_answers"], true);
    h.get("/api/tunnels/nosuch/diagnose")
        .await
        .expect(S::NOT_FOUND);
    h.get("/api/tunnels/no%20such/diagnose")
        .await
        .expect(S::BAD_REQUEST);
    for verb in ["stop", "start", "restart"] {
        let a = h
            .api(
                Method::POST,
                &format!("/api/containers/web/{verb}"),
                Sent::Nothing,
            )
            .await
            .expect(S::ACCEPTED);
        let events = h.job_events(a.json()["job"].as_u64().unwrap()).await;
        assert_eq!(events.last().unwrap()["kind"], "done", "{verb}: {events:?}");
    }
    h.api(Method::POST, "/api/containers/nosuch/stop", Sent::Nothing)
        .await
        .expect(S::NOT_FOUND);
    for verb in ["pause", "resume"] {
        h.api(
            Method::POST,
            &format!("/api/containers/web/{verb}"),
            Sent::Nothing,
        )
        .await
        .expect(S::OK);
    }
    h.api(Method::POST, "/api/containers/nosuch/pause", Sent::Nothing)
        .await
        .expect(S::NOT_FOUND);
    h.post("/api/containers/web/kill", json!({ "signal": "TERM" }))
        .await
        .expect(S::OK);
    h.post("/api/containers/web/kill", json!({ "signal": "NOSUCH" }))
        .await
        .expect(S::BAD_REQUEST);
    h.api(
        Method::POST,
        "/api/containers/web/kill",
        Sent::Rejected(json!({})),
    )
    .await
    .expect(S::UNPROCESSABLE_ENTITY);
    // Snapshots and backups: jobs (the fake has no trees, so they fail in
    // their events, after the route's answer), the listing, and a download
    // of an archive the listing names, and of ids it does not.
    for what in ["snapshot", "backup"] {
        let a = h
            .api(
                Method::POST,
                &format!("/api/containers/web/{what}"),
                Sent::Nothing,
            )
            .await
            .expect(S::ACCEPTED);
        let events = h.job_events(a.json()["job"].as_u64().unwrap()).await;
        assert_eq!(
            events.last().unwrap()["kind"],
            "failed",
            "{what}: {events:?}"
        );
        h.api(
            Method::POST,
            &format!("/api/containers/nosuch/{what}"),
            Sent::Nothing,
        )
        .await
        .expect(S::NOT_FOUND);
    }
    let backups = h.root.join("var/lib/ctm/backups");
    std::fs::create_dir_all(&backups).unwrap();
    std::fs::write(
        backups.join("web-20261204T100000Z.ctm-backup.tar.zst"),
        b"archive bytes",
    )
    .unwrap();
    let a = h.get("/api/containers/web/backups").await.expect(S::OK);
    assert_eq!(
        a.json()["archives"][0]["id"],
        "20261204T100000Z",
        "{}",
        a.json()
    );
    h.get("/api/containers/no%20such/backups")
        .await
        .expect(S::BAD_REQUEST);
    let a = h
        .get("/api/containers/web/archives/20261204T100000Z/download")
        .await
        .expect(S::OK);
    assert_eq!(a.text, "archive bytes");
    for id in ["20261204T100001Z", "..%2f..%2fetc%2fpasswd"] {
        h.get(&format!("/api/containers/web/archives/{id}/download"))
            .await
            .expect(S::NOT_FOUND);
    }
    // A restore, its preview first: a snapshot of a tree made here, its
    // preview, a restore with another key (refused), then with the key.
    let tree = h.root.join("var/lib/machines/web");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hello"), "one").unwrap();
    let a = h
        .api(Method::POST, "/api/containers/web/snapshot", Sent::Nothing)
        .await
        .expect(S::ACCEPTED);
    let events = h.job_events(a.json()["job"].as_u64().unwrap()).await;
    assert_eq!(events.last().unwrap()["kind"], "done", "{events:?}");
    let a = h.get("/api/containers/web/backups").await.expect(S::OK);
    let id = a.json()["snapshots"][0]["id"].as_str().unwrap().to_string();
    let restore = format!("/api/containers/web/snapshots/{id}/restore");
    let preview = h.get(&restore).await.expect(S::OK);
    assert_eq!(preview.json()["restarts"], true, "{}", preview.json());
    let key = preview.json()["key"].clone();
    std::fs::write(tree.join("etc/hello"), "two").unwrap();
    h.post(&restore, json!({ "key": "0".repeat(64) }))
        .await
        .expect(S::CONFLICT);
    h.api(Method::POST, &restore, Sent::Rejected(json!({})))
        .await
        .expect(S::UNPROCESSABLE_ENTITY);
    let a = h
        .post(&restore, json!({ "key": key }))
        .await
        .expect(S::ACCEPTED);
    let events = h.job_events(a.json()["job"].as_u64().unwrap()).await;
    assert_eq!(events.last().unwrap()["kind"], "done", "{events:?}");
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/hello")).unwrap(),
        "one"
    );
    let none = "/api/containers/web/snapshots/20991231T000000Z/restore";
    h.get(none).await.expect(S::NOT_FOUND);
    h.post(none, json!({ "key": key }))
        .await
        .expect(S::NOT_FOUND);
    h.get("/api/containers/no%20such/snapshots/x/restore")
        .await
        .expect(S::BAD_REQUEST);
    h.get("/api/containers/web/archives/..%2f..%2fetc/restore")
        .await
        .expect(S::NOT_FOUND);
    // The archive listed above is not one: its preview is shown (an
    // archive is read when its restore verifies it), its restore accepted
    // and then refused by the verification, nothing changed.
    let restore = "/api/containers/web/archives/20261204T100000Z/restore";
    let preview = h.get(restore).await.expect(S::OK);
    assert_eq!(preview.json()["space"]["needed"], Value::Null);
    let a = h
        .post(restore, json!({ "key": preview.json()["key"] }))
        .await
        .expect(S::ACCEPTED);
    let events = h.job_events(a.json()["job"].as_u64().unwrap()).await;
    assert_eq!(events.last().unwrap()["kind"], "failed", "{events:?}");
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/hello")).unwrap(),
        "one"
    );
    h.post(
        "/api/containers/web/archives/20991231T000000Z/restore",
        json!({ "key": "k" }),
    )
    .await
    .expect(S::NOT_FOUND);
    // The volumes view (homelab.kdl has none).
    let a = h.get("/api/volumes").await.expect(S::OK);
    assert_eq!(a.json()["volumes"], json!([]));
    // The console: refused before the upgrade when it is not a handshake,
    // and here, in-process, where no connection can be upgraded.
    h.get("/api/containers/web/console")
        .await
        .expect(S::BAD_REQUEST);
    h.handshake("/api/containers/web/console?cols=100&rows=30")
        .await
        .expect(S::UPGRADE_REQUIRED);
    h.handshake("/api/containers/nosuch/console")
        .await
        .expect(S::NOT_FOUND);

    // Topologies (examples/topology.kdl, on the recording fake): none
    // before the first apply; then each move's plan shown first, a stale
    // plan, a body without its fingerprint and a name there is not
    // refused, and the move as the plan shown.
    let t = live_fixture_of(&spec, "topology.kdl");
    let a = t.get("/api/topologies").await.expect(S::OK);
    assert_eq!(a.json(), &json!([]));
    t.get("/api/topologies/bgp/down").await.expect(S::NOT_FOUND);
    let fingerprint = t.fingerprint().await;
    let job = t.start_apply(json!({ "fingerprint": fingerprint })).await;
    t.job_events(job).await;
    for direction in ["down", "up"] {
        let path = format!("/api/topologies/bgp/{direction}");
        let shown = t.get(&path).await.expect(S::OK);
        assert_eq!(shown.json()["direction"], direction);
        let fingerprint = shown.json()["plan"]["fingerprint"].clone();
        t.post(&path, json!({ "fingerprint": "stale" }))
            .await
            .expect(S::CONFLICT);
        t.api(Method::POST, &path, Sent::Rejected(json!({})))
            .await
            .expect(S::UNPROCESSABLE_ENTITY);
        let nosuch = format!("/api/topologies/nosuch/{direction}");
        t.get(&nosuch).await.expect(S::NOT_FOUND);
        t.post(&nosuch, json!({ "fingerprint": "x" }))
            .await
            .expect(S::NOT_FOUND);
        let a = t
            .post(&path, json!({ "fingerprint": fingerprint }))
            .await
            .expect(S::ACCEPTED);
        let events = t.job_events(a.json()["job"].as_u64().unwrap()).await;
        assert_eq!(events.last().unwrap()["kind"], "done", "{events:?}");
        let a = t.get("/api/topologies").await.expect(S::OK);
        assert_eq!(a.json()[0]["down"], direction == "down");
        let a = t.get("/api/status").await.expect(S::OK);
        assert_eq!(a.json()["topologies"][0]["down"], direction == "down");
    }
    g.post("/api/topologies/bgp/down", json!({ "fingerprint": "x" }))
        .await
        .expect(S::CONFLICT);

    // The fleet page's API (ctm serve --fleet), over the fake of SSH.
    let (fl, fleet) = fleet_fixture(&spec);
    let a = fl.get("/api/fleet").await.expect(S::OK);
    let hosts = a.json()["hosts"].as_array().unwrap();
    assert_eq!(hosts[0]["generation"]["number"], 1);
    assert_eq!(hosts[0]["drift"], 1);
    assert_eq!(hosts[0]["last_apply"]["outcome"], "switched");
    assert!(hosts[1]["error"].as_str().unwrap().contains("ctm 0.0.9"));
    assert_eq!(a.json()["canary"], json!({ "kind": "host", "name": "h1" }));
    let a = fl
        .api(Method::POST, "/api/fleet/plan", Sent::Nothing)
        .await
        .expect(S::OK);
    assert_eq!(a.json()["totals"]["hosts_changing"], 1);
    assert!(a.json()["hosts"][0]["plan"]["actions"][0]["summary"].is_string());
    assert!(a.json()["hosts"][1]["error"].is_string());
    std::fs::write(&fleet, "host \"h1\" {\n}\n").unwrap();
    let a = fl.get("/api/fleet").await.expect(S::UNPROCESSABLE_ENTITY);
    assert_eq!(a.json()["check"]["valid"], false);

    spec.assert_all_exercised();
}

/// The OpenAPI 3.1 schema (tests/openapi/) with its dynamic anchor `meta`
/// bound to the Schema Object dialect, as the OpenAPI Initiative's
/// `schema-base` document binds it: so every schema in the document is
/// checked as JSON Schema 2020-12 with the OpenAPI vocabulary, not only
/// for being an object.
fn openapi_3_1_validator() -> jsonschema::Validator {
    let load = |name: &str| -> Value {
        let path = repo().join("tests/openapi").join(name);
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    };
    let resources = [
        load("oas-3.1-schema.json"),
        load("oas-3.1-dialect-base.json"),
        load("oas-3.1-meta-base.json"),
    ];
    let mut registry = jsonschema::Registry::new();
    for resource in resources {
        let id = resource["$id"].as_str().unwrap().to_string();
        registry = registry.add(id, resource).unwrap();
    }
    let registry = registry.prepare().unwrap();
    let with_dialect = json!({
        "$id": "https://spec.openapis.org/oas/3.1/schema-base/2022-10-07",
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": "https://spec.openapis.org/oas/3.1/schema/2022-10-07",
        "properties": { "jsonSchemaDialect": { "$ref": "#/$defs/dialect" } },
        "$defs": {
            "dialect": { "const": "https://spec.openapis.org/oas/3.1/dialect/base" },
            "schema": {
                "$dynamicAnchor": "meta",
                "$ref": "https://spec.openapis.org/oas/3.1/dialect/base",
                "properties": { "$schema": { "$ref": "#/$defs/dialect" } }
            }
        }
    });
    jsonschema::options()
        .with_registry(&registry)
        .offline()
        .build(&with_dialect)
        .unwrap()
}

fn errors(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn the_spec_is_openapi_3_1() {
    let validator = openapi_3_1_validator();
    let doc = Spec::load().doc;
    let found = errors(&validator, &doc);
    assert!(found.is_empty(), "{}", found.join("\n"));

    // The check looks inside the schemas, not only at the document's shape.
    let mut bad = doc.clone();
    bad["components"]["schemas"]["Usage"]["properties"]["cpu_usec"]["type"] = json!(5);
    assert!(!errors(&validator, &bad).is_empty(), "a schema of type 5");
    let mut bad = doc.clone();
    bad["paths"]["/api/edit"]["post"]["requestBody"]["content"]["application/json"]["schema"]["discriminator"] =
        json!({ "mapping": {} });
    assert!(
        !errors(&validator, &bad).is_empty(),
        "a discriminator without propertyName"
    );
    let mut bad = doc.clone();
    bad["paths"]["/api/status"]["get"]["responses"]["200"]["content"] = json!([]);
    assert!(!errors(&validator, &bad).is_empty(), "content as a list");
    let mut bad = doc;
    bad["openapi"] = json!("3.0.3");
    assert!(!errors(&validator, &bad).is_empty(), "OpenAPI 3.0");
}

/// The schemas are closed and say what is required: a field the code
/// adds, drops or renames is caught, and the two edit forms are told
/// apart.
#[test]
fn the_schemas_catch_a_body_that_drifts_from_them() {
    let spec = Spec::load();
    let confirm = "/paths/~1api~1confirm/post/responses/200/content/application~1json/schema";
    assert!(spec.errors(confirm, &json!({ "confirmed": 3 })).is_empty());
    assert!(!spec.errors(confirm, &json!({})).is_empty(), "missing");
    assert!(
        !spec
            .errors(confirm, &json!({ "confirmed": 3, "at": 0 }))
            .is_empty(),
        "an unknown field"
    );

    let action = "/components/schemas/PlanAction";
    let start = json!({ "action": "start-container", "name": "web", "reason": "new", "summary": "start container web" });
    assert!(spec.errors(action, &start).is_empty());
    let mut extra = start.clone();
    extra["steps"] = json!(["x"]);
    assert!(
        !spec.errors(action, &extra).is_empty(),
        "a field of another action"
    );
    let mut bare = start.clone();
    bare.as_object_mut().unwrap().remove("summary");
    assert!(!spec.errors(action, &bare).is_empty(), "no summary");
    assert!(
        !spec.errors("/components/schemas/Action", &start).is_empty(),
        "a drift action has no summary"
    );

    let read = "/paths/~1api~1edit~1read/post/responses/200/content/application~1json/schema";
    let network = json!({ "name": "lan", "bridge": "br-lan", "ipv4": "", "ipv4_nat": false, "ipv6": "", "ipv6_nat": false });
    assert!(
        spec.errors(
            read,
            &json!({ "values": { "names": ["lan"], "form": network } })
        )
        .is_empty()
    );
    let mut partial = network.clone();
    partial.as_object_mut().unwrap().remove("ipv6_nat");
    assert!(
        !spec
            .errors(read, &json!({ "values": { "names": [], "form": partial } }))
            .is_empty(),
        "read answers every field"
    );
    let edit = "/paths/~1api~1edit/post/requestBody/content/application~1json/schema";
    let body = |kind: &str, values: Value| json!({ "text": "", "kind": kind, "values": values });
    assert!(
        spec.errors(edit, &body("network", json!({ "name": "lan" })))
            .is_empty()
    );
    assert!(
        !spec
            .errors(edit, &body("container", network.clone()))
            .is_empty(),
        "a network's fields as a container"
    );
    assert!(
        !spec
            .errors(edit, &body("volume", json!({ "name": "v" })))
            .is_empty()
    );
}
