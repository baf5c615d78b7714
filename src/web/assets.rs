//! The static assets: Bootstrap, CodeMirror and the page scripts, bundled
//! from `web/` by build.rs (npm ci + esbuild) and embedded in the binary,
//! so nothing is fetched from elsewhere at run time. Each is embedded
//! three times: as is, and compressed with brotli and with gzip at build
//! time, so that a browser gets the smallest it accepts without the server
//! compressing anything per request.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Shared;
use crate::fs::sha256_hex;

macro_rules! bundled {
    ($name:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/web/", $name))
    };
}

/// Why the assets could not be built (empty when they were).
const MISSING: &str = include_str!(concat!(env!("OUT_DIR"), "/web/missing.txt"));

/// Why this binary cannot serve the web editor, if it cannot.
pub fn unavailable() -> Option<&'static str> {
    Some(MISSING.trim()).filter(|m| !m.is_empty())
}

/// A content coding the assets are stored in, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Brotli,
    Gzip,
    Identity,
}

impl Coding {
    /// The `Content-Encoding` token; `None` for the bytes as they are.
    fn token(self) -> Option<&'static str> {
        match self {
            Coding::Brotli => Some("br"),
            Coding::Gzip => Some("gzip"),
            Coding::Identity => None,
        }
    }
}

struct Asset {
    name: &'static str,
    content_type: &'static str,
    /// The same content in each coding: brotli, gzip, as is.
    bytes: [(Coding, &'static [u8]); 3],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: [
            (Coding::Brotli, bundled!("app.js.br")),
            (Coding::Gzip, bundled!("app.js.gz")),
            (Coding::Identity, bundled!("app.js")),
        ],
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: [
            (Coding::Brotli, bundled!("app.css.br")),
            (Coding::Gzip, bundled!("app.css.gz")),
            (Coding::Identity, bundled!("app.css")),
        ],
    },
    // Only the container page loads these: its graphs (uPlot) and its
    // terminal (xterm.js), which no other page needs.
    Asset {
        name: "container.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: [
            (Coding::Brotli, bundled!("container.js.br")),
            (Coding::Gzip, bundled!("container.js.gz")),
            (Coding::Identity, bundled!("container.js")),
        ],
    },
    Asset {
        name: "container.css",
        content_type: "text/css; charset=utf-8",
        bytes: [
            (Coding::Brotli, bundled!("container.css.br")),
            (Coding::Gzip, bundled!("container.css.gz")),
            (Coding::Identity, bundled!("container.css")),
        ],
    },
];

/// The total size of the assets every page loads in `coding`, for the
/// page-weight figure.
pub fn total_bytes(coding: Coding) -> usize {
    ASSETS
        .iter()
        .filter(|a| a.name.starts_with("app."))
        .flat_map(|a| a.bytes.iter())
        .filter(|(c, _)| *c == coding)
        .map(|(_, b)| b.len())
        .sum()
}

pub fn routes() -> Router<Shared> {
    Router::new().route("/assets/{name}", get(asset))
}

/// One entity tag per asset for its content; each coding is a
/// representation of its own and gets a tag of its own.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| sha256_hex(a.bytes[2].1)[..16].to_string())
        .collect()
});

fn etag(i: usize, coding: Coding) -> String {
    match coding.token() {
        Some(token) => format!("\"{}-{token}\"", ETAGS[i]),
        None => format!("\"{}\"", ETAGS[i]),
    }
}

/// Whether an `Accept-Encoding` value accepts `coding` (RFC 9110 12.5.3):
/// named with a q-value above 0, or covered by `*`. Identity is always
/// acceptable here: the assets exist in no other form to fall back to.
pub fn accepts(accept_encoding: &str, coding: Coding) -> bool {
    let Some(token) = coding.token() else {
        return true;
    };
    let mut wildcard = false;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| {
                let (key, value) = p.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| value.trim().parse::<f32>().unwrap_or(0.0))
            })
            .next()
            .unwrap_or(1.0);
        if name.eq_ignore_ascii_case(token) {
            return q > 0.0;
        }
        if name == "*" {
            wildcard = q > 0.0;
        }
    }
    wildcard
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let asset = &ASSETS[i];
    let accept = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (coding, bytes) = asset
        .bytes
        .iter()
        .copied()
        .find(|(c, _)| accepts(accept, *c))
        .unwrap_or(asset.bytes[2]);
    let etag = etag(i, coding);
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = bytes.into_response();
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        if let Some(token) = coding.token() {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(token));
        }
        response
    };
    let h = response.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_is_read_with_its_q_values() {
        use Coding::*;
        let picks = |header: &str| -> Vec<Coding> {
            [Brotli, Gzip, Identity]
                .into_iter()
                .filter(|c| accepts(header, *c))
                .collect()
        };
        assert_eq!(picks(""), [Identity]);
        assert_eq!(picks("gzip, deflate, br, zstd"), [Brotli, Gzip, Identity]);
        assert_eq!(picks("gzip, deflate"), [Gzip, Identity]);
        assert_eq!(picks("br;q=0, gzip;q=0.5"), [Gzip, Identity]);
        assert_eq!(picks("BR ; Q=1.0"), [Brotli, Identity]);
        assert_eq!(picks("*"), [Brotli, Gzip, Identity]);
        assert_eq!(picks("gzip;q=0, *;q=0.1"), [Brotli, Identity]);
        assert_eq!(picks("br;q=bad"), [Identity]);
    }
}
