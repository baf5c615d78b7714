//! The static assets: Bootstrap, CodeMirror and the page scripts, bundled
//! from `web/` by build.rs (npm ci + esbuild) and embedded in the binary,
//! so nothing is fetched from elsewhere at run time.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Shared;
use crate::backend::fs::sha256_hex;

const APP_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/web/app.js"));
const APP_CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/web/app.css"));
/// Why the assets could not be built (empty when they were).
const MISSING: &str = include_str!(concat!(env!("OUT_DIR"), "/web/missing.txt"));

/// Why this binary cannot serve the web editor, if it cannot.
pub fn unavailable() -> Option<&'static str> {
    Some(MISSING.trim()).filter(|m| !m.is_empty())
}

/// (name, content type, bytes)
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", APP_JS),
    ("app.css", "text/css; charset=utf-8", APP_CSS),
];

/// The total size of the assets every page loads, for the page-weight figure.
pub fn total_bytes() -> usize {
    ASSETS.iter().map(|(_, _, b)| b.len()).sum()
}

pub fn routes() -> Router<Shared> {
    Router::new().route("/assets/{name}", get(asset))
}

static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|(_, _, bytes)| format!("\"{}\"", &sha256_hex(bytes)[..16]))
        .collect()
});

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|(n, _, _)| *n == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (_, content_type, bytes) = ASSETS[i];
    let etag = &ETAGS[i];
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    response
}
