//! Who may use the web editor, and the headers that keep a browser safe.
//!
//! Every request but the login form and the static assets needs the
//! token: as `Authorization: Bearer TOKEN` (scripts, curl), or through the
//! session cookie the login form sets (`HttpOnly; SameSite=Strict`). A
//! request that changes something and comes with the cookie must also
//! carry the session's CSRF token in `X-CSRF-Token`, and must not come
//! from another site (`Sec-Fetch-Site`, `Origin`); so must the WebSocket
//! handshake of the console, which brings its CSRF token as the `csrf`
//! query parameter. The token lives in `ROOT/var/lib/ctm/web-token`, mode
//! 0600, made on first start; beside it, `web-metrics-token` reads
//! `/metrics` only.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::{ApiError, Shared, pages};
use crate::fs;
use crate::layout::STATE_DIR;

pub const COOKIE: &str = "ctm_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a login lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The Content-Security-Policy of every response: only this server's own
/// scripts and styles, no inline code, no framing. The one exception is
/// a `<style>` element carrying the response's nonce: CodeMirror puts its
/// styles into one (and is given the nonce through a meta tag).
fn csp(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; \
         img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    )
}

/// The CSP nonce of the response, for the pages to hand to CodeMirror.
#[derive(Debug, Clone)]
pub struct CspNonce(pub String);

pub struct Auth {
    token: String,
    pub token_path: PathBuf,
    /// A token that reads `/metrics` and nothing else, for a Prometheus
    /// server: it need not be trusted with the host.
    metrics_token: String,
    pub metrics_path: PathBuf,
    sessions: Mutex<HashMap<String, Login>>,
}

struct Login {
    csrf: String,
    since: Instant,
}

/// The CSRF token of the request's session, for the pages to embed.
#[derive(Debug, Clone)]
pub struct Csrf(pub String);

/// Random bytes from the kernel, as hex.
pub fn random_hex(bytes: usize) -> miette::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| miette::miette!("cannot read /dev/urandom: {e}"))?;
    Ok(fs::hex(&buf))
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The tokens made by this start, to print once.
#[derive(Debug, Default)]
pub struct Fresh {
    pub login: Option<String>,
    pub metrics: Option<String>,
}

/// Reads the token in `path`, or makes and saves one (returned as the
/// second value, so that it is printed exactly once).
fn token_file(path: &Path) -> miette::Result<(String, Option<String>)> {
    let (token, fresh) = match std::fs::read_to_string(path) {
        Ok(text) => (text.trim().to_string(), None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = random_hex(32)?;
            fs::write_file(path, format!("{token}\n").as_bytes(), 0o600)?;
            (token.clone(), Some(token))
        }
        Err(e) => {
            return Err(miette::miette!(
                "cannot read the web token {}: {e}",
                path.display()
            ));
        }
    };
    if token.len() < 32 {
        return Err(miette::miette!(
            help = "delete it, and ctm serve makes a new one",
            "the web token in {} is too short to be safe",
            path.display()
        ));
    }
    Ok((token, fresh))
}

impl Auth {
    /// Reads the login token and the metrics token under `root`, or makes
    /// and saves them.
    pub fn load_or_create(root: &Path) -> miette::Result<(Auth, Fresh)> {
        let token_path = root.join(STATE_DIR).join("web-token");
        let metrics_path = root.join(STATE_DIR).join("web-metrics-token");
        let (token, login) = token_file(&token_path)?;
        let (metrics_token, metrics) = token_file(&metrics_path)?;
        Ok((
            Auth {
                token,
                token_path,
                metrics_token,
                metrics_path,
                sessions: Mutex::new(HashMap::new()),
            },
            Fresh { login, metrics },
        ))
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn metrics_token(&self) -> &str {
        &self.metrics_token
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Login>> {
        // A panic while holding this lock cannot leave the map half-changed.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a session; returns its cookie value.
    fn login(&self) -> miette::Result<String> {
        let id = random_hex(32)?;
        let csrf = random_hex(32)?;
        let mut sessions = self.sessions();
        sessions.retain(|_, l| l.since.elapsed() < SESSION_LIFETIME);
        sessions.insert(
            id.clone(),
            Login {
                csrf,
                since: Instant::now(),
            },
        );
        Ok(id)
    }

    /// The CSRF token of a live session.
    fn session_csrf(&self, id: &str) -> Option<String> {
        let sessions = self.sessions();
        sessions
            .iter()
            .find(|(k, l)| same_secret(k, id) && l.since.elapsed() < SESSION_LIFETIME)
            .map(|(_, l)| l.csrf.clone())
    }

    fn logout(&self, id: &str) {
        self.sessions().retain(|k, _| !same_secret(k, id));
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn is_public(path: &str) -> bool {
    path == "/login" || path.starts_with("/assets/")
}

/// A request a browser sent on behalf of another site.
fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, rest)| rest) != Some(host),
        _ => false,
    }
}

fn denied(path: &str, status: StatusCode, message: &str) -> Response {
    if path.starts_with("/api/") || path == "/metrics" {
        ApiError::new(status, message).into_response()
    } else if status == StatusCode::UNAUTHORIZED {
        Redirect::to("/login").into_response()
    } else {
        (status, message.to_string()).into_response()
    }
}

/// A WebSocket handshake (the console): a GET, but it opens a channel
/// that acts on the host, so it is held to the rules of a change.
fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The `csrf` query parameter: a browser cannot send headers of its own
/// with a WebSocket handshake.
fn csrf_parameter(request: &Request) -> Option<String> {
    request
        .uri()
        .query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "csrf")
        .map(|(_, v)| v.to_string())
}

/// Lets through requests that carry the token, or a live session (with
/// its CSRF token when the request changes something). `/metrics` also
/// takes the metrics token, which opens nothing else.
pub async fn guard(State(state): State<Shared>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let upgrade = is_upgrade(request.headers());
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD) || upgrade;
    if changes && cross_site(request.headers()) {
        return denied(&path, StatusCode::FORBIDDEN, "cross-site request refused");
    }
    if is_public(&path) {
        return next.run(request).await;
    }
    let auth = &state.auth;
    if let Some(token) = bearer(request.headers()) {
        if same_secret(token, auth.token())
            || (path == "/metrics" && same_secret(token, auth.metrics_token()))
        {
            return next.run(request).await;
        }
        return denied(&path, StatusCode::UNAUTHORIZED, "wrong token");
    }
    let Some(csrf) = cookie(request.headers(), COOKIE).and_then(|id| auth.session_csrf(&id)) else {
        return denied(
            &path,
            StatusCode::UNAUTHORIZED,
            "log in first: send the token as `Authorization: Bearer TOKEN`, or use the login form",
        );
    };
    if changes {
        let sent = if upgrade {
            csrf_parameter(&request)
        } else {
            request
                .headers()
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        if !sent.is_some_and(|sent| same_secret(&sent, &csrf)) {
            return denied(
                &path,
                StatusCode::FORBIDDEN,
                if upgrade {
                    "missing or wrong CSRF token (the csrf query parameter)"
                } else {
                    "missing or wrong CSRF token (X-CSRF-Token)"
                },
            );
        }
    }
    request.extensions_mut().insert(Csrf(csrf));
    next.run(request).await
}

/// Headers on every response: the CSP, no sniffing, no framing, no
/// referrer, and no caching of anything but the assets.
pub async fn security_headers(mut request: Request, next: Next) -> Response {
    let is_asset = request.uri().path().starts_with("/assets/");
    // Without randomness there is no nonce, and the policy stays stricter.
    let nonce = random_hex(16).unwrap_or_default();
    request.extensions_mut().insert(CspNonce(nonce.clone()));
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(&csp(&nonce)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !is_asset {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

async fn login_page() -> impl IntoResponse {
    pages::login(None)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(state): State<Shared>, Form(form): Form<LoginForm>) -> Response {
    if !same_secret(form.token.trim(), state.auth.token()) {
        // Slows guessing down; the token's 256 bits do the rest.
        tokio::time::sleep(Duration::from_millis(300)).await;
        return (
            StatusCode::UNAUTHORIZED,
            pages::login(Some(
                "That is not the token. It is in the file named when ctm serve first started.",
            )),
        )
            .into_response();
    }
    match state.auth.login() {
        Ok(id) => (
            [(
                header::SET_COOKIE,
                format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict"),
            )],
            Redirect::to("/"),
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Ends the session (the guard has checked its CSRF token).
async fn logout(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, COOKIE) {
        state.auth.logout(&id);
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        StatusCode::NO_CONTENT,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("", "a"));
    }

    #[test]
    fn cross_site_requests_are_recognized() {
        let mut h = HeaderMap::new();
        assert!(
            !cross_site(&h),
            "no browser headers: a script, not a browser"
        );
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(!cross_site(&h));
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7780"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(cross_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:7780"),
        );
        assert!(!cross_site(&h));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ctm_session=xyz; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("xyz"));
    }
}
