//! A client of the OCI distribution API: just what a pull needs (a
//! manifest by tag or digest, a blob by digest), with the registry's own
//! ways of asking for a login: an anonymous (or basic-authenticated)
//! bearer token from the realm its `WWW-Authenticate` challenge names, or
//! basic authentication.
//!
//! Written over `ureq` rather than taken from a client crate: the pull runs
//! in the provisioning thread beside debootstrap and tar (blocking, no
//! runtime of its own), must stream every blob to a file while hashing it,
//! and must tell loopback from the rest for plain HTTP; the full clients
//! bring an async stack and decide those things themselves.

use std::io::Read;
use std::time::Duration;

use base64::Engine as _;

use crate::model::oci::OciReference;

/// How a registry is reached and who asks.
pub struct Registry {
    agent: ureq::Agent,
    /// `https://host[:port]` or `http://…`.
    base: String,
    repository: String,
    login: Option<Login>,
    /// The `Authorization` value that worked last.
    authorization: Option<String>,
}

/// A user name and password, from a credentials file.
#[derive(Clone)]
pub struct Login {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, not even in a debug print.
        write!(f, "Login {{ user: {:?} }}", self.user)
    }
}

/// The largest manifest or index ctm reads (the distribution project's
/// own limit is 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// The manifest kinds ctm can read, in the order it prefers them.
pub const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

impl Registry {
    /// A client of the registry `reference` names: plain HTTP if it is on
    /// loopback or `insecure`, HTTPS with the host's trust store otherwise.
    pub fn new(reference: &OciReference, insecure: bool, login: Option<Login>) -> Registry {
        let scheme = if reference.is_loopback() || insecure {
            "http"
        } else {
            "https"
        };
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .https_only(scheme == "https")
            .timeout_connect(Some(Duration::from_secs(30)))
            // A stalled transfer fails; a slow one that progresses does not.
            .timeout_recv_body(Some(Duration::from_secs(300)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .tls_config(tls)
            .user_agent(concat!("ctm/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Registry {
            agent,
            base: format!("{scheme}://{}", reference.api_host()),
            repository: reference.repository().to_string(),
            login,
            authorization: None,
        }
    }

    /// A manifest (or index) by tag or digest: its media type and bytes.
    pub fn manifest(&mut self, tag_or_digest: &str) -> Result<(String, Vec<u8>), String> {
        let url = format!(
            "{}/v2/{}/manifests/{tag_or_digest}",
            self.base, self.repository
        );
        let mut response = self.get(&url, Some(MANIFEST_TYPES))?;
        let media_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let mut bytes = Vec::new();
        response
            .body_mut()
            .as_reader()
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading {url}: {e}"))?;
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(format!(
                "{url}: the manifest is larger than {MAX_MANIFEST} bytes"
            ));
        }
        Ok((media_type, bytes))
    }

    /// A blob's bytes as they come, to be hashed by the caller.
    pub fn blob(&mut self, digest: &str) -> Result<impl Read + use<>, String> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        let response = self.get(&url, None)?;
        Ok(Named {
            inner: response.into_body().into_reader(),
            url,
        })
    }

    /// GET `url`, answering an authentication challenge once.
    fn get(
        &mut self,
        url: &str,
        accept: Option<&str>,
    ) -> Result<ureq::http::Response<ureq::Body>, String> {
        let send = |authorization: Option<&str>| {
            let mut request = self.agent.get(url);
            if let Some(a) = accept {
                request = request.header("Accept", a);
            }
            if let Some(a) = authorization {
                request = request.header("Authorization", a);
            }
            request.call().map_err(|e| format!("GET {url}: {e}"))
        };
        let mut response = send(self.authorization.as_deref())?;
        if response.status() == 401 {
            let challenge = response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            self.authorization = Some(self.answer(&challenge)?);
            response = send(self.authorization.as_deref())?;
        }
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let mut body = String::new();
        let _ = response
            .body_mut()
            .as_reader()
            .take(64 * 1024)
            .read_to_string(&mut body);
        Err(format!(
            "GET {url}: {status}{}",
            registry_errors(&body)
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ))
    }

    /// The `Authorization` that answers a `WWW-Authenticate` challenge.
    fn answer(&self, challenge: &str) -> Result<String, String> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        let params = challenge_params(params);
        let basic = self.login.as_ref().map(|l| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", l.user, l.password))
            )
        });
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => basic.ok_or_else(|| {
                format!(
                    "{} asks for a login (basic authentication); name a credentials file in the host file: oci \"…\" credentials=\"/path/config.json\"",
                    self.base
                )
            }),
            "bearer" => {
                let realm = params
                    .iter()
                    .find(|(k, _)| k == "realm")
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| format!("{}: a bearer challenge without a realm", self.base))?;
                // The token service is another server: the same rule for
                // plain HTTP holds there.
                if !(realm.starts_with("https://")
                    || (realm.starts_with("http://") && self.base.starts_with("http://")))
                {
                    return Err(format!(
                        "{}: the token service {realm} is not HTTPS",
                        self.base
                    ));
                }
                let query: Vec<(String, String)> = params
                    .into_iter()
                    .filter(|(k, _)| k == "service" || k == "scope")
                    .collect();
                let mut request = self.agent.get(&realm);
                for (k, v) in &query {
                    request = request.query(k, v);
                }
                if let Some(b) = &basic {
                    request = request.header("Authorization", b);
                }
                let mut response = request
                    .call()
                    .map_err(|e| format!("asking {realm} for a token: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!(
                        "asking {realm} for a token: {}{}",
                        response.status(),
                        if basic.is_some() {
                            " (is the login in the credentials file right?)"
                        } else {
                            ""
                        }
                    ));
                }
                let mut text = String::new();
                response
                    .body_mut()
                    .as_reader()
                    .take(1 << 20)
                    .read_to_string(&mut text)
                    .map_err(|e| format!("reading the token from {realm}: {e}"))?;
                let token: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| format!("the token from {realm} is not JSON: {e}"))?;
                let token = token
                    .get("token")
                    .or_else(|| token.get("access_token"))
                    .and_then(|t| t.as_str())
                    .filter(|t| {
                        !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic())
                    })
                    .ok_or_else(|| format!("{realm} answered without a usable token"))?;
                Ok(format!("Bearer {token}"))
            }
            _ => Err(format!(
                "{} asks for authentication ctm does not speak: {}",
                self.base,
                challenge.escape_default()
            )),
        }
    }
}

/// A blob's body whose read errors say where it came from: a registry
/// that stops mid-transfer fails the read, and the user needs to know
/// which one.
struct Named<R> {
    inner: R,
    url: String,
}

impl<R: Read> Read for Named<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "reading {}: {e}; the blobs fetched before stay in the cache, and a retry fetches the rest",
                    self.url
                ),
            )
        })
    }
}

/// `realm="…",service="…",scope="…"` as pairs (values may hold commas
/// inside their quotes: scopes do).
fn challenge_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        out.push((key, value.to_string()));
        rest = after.trim_start_matches(',').trim();
    }
    out
}

/// The `errors` of a registry's JSON error body, as one line.
fn registry_errors(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let errors = value.get("errors")?.as_array()?;
    let text: Vec<String> = errors
        .iter()
        .map(|e| {
            let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let message = e.get("message").and_then(|m| m.as_str()).unwrap_or("");
            format!("{code} {message}")
                .trim()
                .escape_default()
                .to_string()
        })
        .collect();
    (!text.is_empty()).then(|| text.join("; "))
}

/// The login for `registry` in a Docker-style `config.json`
/// (`{"auths": {"REGISTRY": {"auth": "BASE64(user:password)"}}}`, or
/// `username` and `password`), as `docker login` and `skopeo login`
/// write it.
pub fn login_from(text: &str, registry: &str) -> Result<Login, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("it is not JSON: {e}"))?;
    let auths = value
        .get("auths")
        .and_then(|a| a.as_object())
        .ok_or("it has no `auths`")?;
    let mut keys = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ];
    if registry == "docker.io" {
        keys.push("https://index.docker.io/v1/".into());
    }
    let entry = keys
        .iter()
        .find_map(|k| auths.get(k))
        .ok_or_else(|| format!("it has no login for {registry}"))?;
    if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .map_err(|_| format!("the `auth` of {registry} is not base64"))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| format!("the `auth` of {registry} is not text"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| format!("the `auth` of {registry} is not USER:PASSWORD"))?;
        return Ok(Login {
            user: user.to_string(),
            password: password.to_string(),
        });
    }
    match (
        entry.get("username").and_then(|u| u.as_str()),
        entry.get("password").and_then(|p| p.as_str()),
    ) {
        (Some(user), Some(password)) => Ok(Login {
            user: user.to_string(),
            password: password.to_string(),
        }),
        _ => Err(format!(
            "the login for {registry} has neither `auth` nor `username` and `password`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback_or_when_marked_insecure() {
        let base = |reference: &str, insecure: bool| {
            Registry::new(&OciReference::parse(reference).unwrap(), insecure, None).base
        };
        assert_eq!(base("127.0.0.1:5000/a:1", false), "http://127.0.0.1:5000");
        assert_eq!(base("localhost/a:1", false), "http://localhost");
        assert_eq!(base("[::1]:5000/a:1", false), "http://[::1]:5000");
        assert_eq!(base("reg.lan:5000/a:1", false), "https://reg.lan:5000");
        assert_eq!(base("reg.lan:5000/a:1", true), "http://reg.lan:5000");
        assert_eq!(
            base("docker.io/library/debian:12", false),
            "https://registry-1.docker.io"
        );
    }

    #[test]
    fn a_challenge_is_read_with_commas_inside_quotes() {
        let params = challenge_params(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            params,
            [
                ("realm".into(), "https://auth.example/token".into()),
                ("service".into(), "registry.example".into()),
                ("scope".into(), "repository:a/b:pull,push".into()),
            ]
        );
    }

    #[test]
    fn a_login_is_found_under_any_spelling_of_the_registry() {
        let auth = base64::engine::general_purpose::STANDARD.encode("me:s3:cret");
        let text = format!(r#"{{"auths":{{"https://reg.example:5000":{{"auth":"{auth}"}}}}}}"#);
        let login = login_from(&text, "reg.example:5000").unwrap();
        assert_eq!(
            (login.user.as_str(), login.password.as_str()),
            ("me", "s3:cret")
        );
        assert!(!format!("{login:?}").contains("s3"));
        let plain = r#"{"auths":{"reg.example":{"username":"u","password":"p"}}}"#;
        assert_eq!(login_from(plain, "reg.example").unwrap().user, "u");
        assert!(
            login_from(plain, "other.example")
                .unwrap_err()
                .contains("no login for other.example")
        );
        assert!(login_from("{}", "x").unwrap_err().contains("no `auths`"));
    }

    #[test]
    fn registry_errors_become_one_line() {
        let body = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest\nunknown"}]}"#;
        assert_eq!(
            registry_errors(body).as_deref(),
            Some("MANIFEST_UNKNOWN manifest\\nunknown")
        );
        assert_eq!(registry_errors("not json"), None);
    }
}
