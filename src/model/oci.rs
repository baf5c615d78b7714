//! OCI image references (`REGISTRY/REPOSITORY:TAG@DIGEST`) and content
//! digests, parsed once (the grammar of the distribution project's
//! `reference` package, which Docker, containerd and skopeo share), so that
//! what reaches a URL, a path of the blob cache or a lock file is one of
//! a few well-formed shapes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A `sha256:` content digest: the only algorithm the OCI image
/// specification requires, and the only one ctm verifies. Lower-case hex,
/// so that it can name a file of the blob cache as it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Digest, String> {
        let Some(hex) = s.strip_prefix("sha256:") else {
            return Err(match s.split_once(':') {
                Some((algorithm, _)) if !algorithm.is_empty() => format!(
                    "`{}` digests are not supported; ctm verifies `sha256:` digests",
                    algorithm.escape_default()
                ),
                _ => format!(
                    "`{}` is not a digest; write `sha256:` and 64 hex digits",
                    s.escape_default()
                ),
            });
        };
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "`{}` is not a SHA-256 digest: `sha256:` must be followed by 64 lower-case hex digits",
                s.escape_default()
            ));
        }
        Ok(Digest(s.to_string()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest::from_sha256(&sha2::Sha256::digest(bytes))
    }

    /// The digest whose SHA-256 sum is `sum` (32 bytes).
    pub fn from_sha256(sum: &[u8]) -> Digest {
        Digest(format!("sha256:{}", crate::fs::hex(sum)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits, without `sha256:`: a file name.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }
}

impl TryFrom<String> for Digest {
    type Error = String;
    fn try_from(s: String) -> Result<Digest, String> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reference to an image on a registry: the registry's host (and port),
/// the repository, and a tag, a digest or both. The registry is always
/// named: ctm does not guess Docker Hub for a bare `debian:12`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OciReference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl OciReference {
    /// The longest repository name, with its registry (the distribution
    /// project's limit).
    pub const MAX_NAME: usize = 255;
    /// The longest tag.
    pub const MAX_TAG: usize = 128;

    pub fn parse(s: &str) -> Result<OciReference, String> {
        if s.contains("://") {
            return Err(format!(
                "`{}` has a URL scheme; write the reference as REGISTRY/REPOSITORY:TAG (ctm uses HTTPS, or plain HTTP for a registry on loopback or marked insecure=#true)",
                s.escape_default()
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => (rest, Some(Digest::parse(digest)?)),
            None => (s, None),
        };
        // The tag's `:` is the last one after the last `/`: a registry's
        // port has one too.
        let last_slash = rest.rfind('/').unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(at) => (&rest[..last_slash + at], Some(&rest[last_slash + at + 1..])),
            None => (rest, None),
        };
        if name.len() > Self::MAX_NAME {
            return Err(format!(
                "the image's name is {} bytes long; registries take at most {}",
                name.len(),
                Self::MAX_NAME
            ));
        }
        let Some((registry, repository)) = name.split_once('/') else {
            return Err(format!(
                "`{}` names no registry; write REGISTRY/REPOSITORY:TAG, e.g. `docker.io/library/debian:12`",
                s.escape_default()
            ));
        };
        if !looks_like_registry(registry) {
            return Err(format!(
                "`{}` is not a registry's host name; the reference starts with the registry, e.g. `docker.io/{}`",
                registry.escape_default(),
                name.escape_default()
            ));
        }
        check_registry(registry)?;
        for component in repository.split('/') {
            check_path_component(component)?;
        }
        if let Some(tag) = tag {
            check_tag(tag)?;
        }
        if tag.is_none() && digest.is_none() {
            return Err(format!(
                "`{}` has neither a tag nor a digest; add one (`:latest` if that is what you mean)",
                s.escape_default()
            ));
        }
        Ok(OciReference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// `host` or `host:port`, as written.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host the registry's API answers on: Docker Hub's `docker.io`
    /// is served by `registry-1.docker.io`.
    pub fn api_host(&self) -> &str {
        match self.registry.as_str() {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        }
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// This reference pinned to `digest` (its tag kept, for the reader).
    pub fn with_digest(&self, digest: Digest) -> OciReference {
        OciReference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// This reference without a digest: what a tag names.
    pub fn without_digest(&self) -> OciReference {
        OciReference {
            digest: None,
            ..self.clone()
        }
    }

    /// True if the registry is on a loopback address (`localhost`,
    /// `127.0.0.0/8`, `::1`), where plain HTTP is allowed as Docker
    /// allows it: the traffic never leaves the machine.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => self.registry.split(':').next().unwrap_or(""),
        };
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl TryFrom<String> for OciReference {
    type Error = String;
    fn try_from(s: String) -> Result<OciReference, String> {
        OciReference::parse(&s)
    }
}

impl From<OciReference> for String {
    fn from(r: OciReference) -> String {
        r.to_string()
    }
}

impl fmt::Display for OciReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// The distribution project's rule: the first component is a registry if
/// it has a `.` or a `:`, or is `localhost`.
fn looks_like_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

/// `host`, `host:port` or `[v6]:port`: DNS labels of letters, digits and
/// inner `-`; a port of 1–65535.
fn check_registry(registry: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "`{}` is not a registry: write HOST or HOST:PORT (letters, digits, `-` and `.`; an IPv6 address in brackets)",
            registry.escape_default()
        )
    };
    let (host, port) = if let Some(v6) = registry.strip_prefix('[') {
        let (address, after) = v6.split_once(']').ok_or_else(bad)?;
        address.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        match after {
            "" => (None, None),
            _ => (None, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return Err(bad());
        }
    }
    if let Some(port) = port
        && !(port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p > 0))
    {
        return Err(format!(
            "`{}` is not a port (1 to 65535) in registry `{}`",
            port.escape_default(),
            registry.escape_default()
        ));
    }
    Ok(())
}

/// One component of a repository: lower-case letters and digits, with
/// single `.`, `_`, or `__`, or runs of `-`, between them.
fn check_path_component(component: &str) -> Result<(), String> {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut ok = !bytes.is_empty() && alnum(bytes[0]) && alnum(bytes[bytes.len() - 1]);
    let mut i = 0;
    while ok && i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
    }
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a repository name component: lower-case letters and digits, separated by one `.`, `_`, `__` or dashes",
            component.escape_default()
        ))
    }
}

/// A tag: a letter, digit or `_`, then up to 127 of those, `.` and `-`.
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = !tag.is_empty()
        && tag.len() <= OciReference::MAX_TAG
        && word(tag.as_bytes()[0])
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a tag: a letter, digit or `_`, then letters, digits, `_`, `.` and `-`, at most {} in all",
            tag.escape_default(),
            OciReference::MAX_TAG
        ))
    }
}

/// What an OCI image runs, from its config blob (`config` of the image
/// specification's `application/vnd.oci.image.config.v1+json`): the
/// entrypoint and command, environment, working directory and user.
/// Parsed once, refusing what cannot be written into a `.nspawn` file as
/// it is: the blob comes from a registry or an archive, and is hostile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// The digest of the config blob this was read from.
    pub digest: Digest,
    /// `Entrypoint` then `Cmd`: the command line, program first.
    pub command: Vec<String>,
    /// `Env`, in the image's order (a later one of a name wins).
    pub environment: Vec<(String, String)>,
    /// `WorkingDir`: absolute.
    pub working_directory: Option<String>,
    /// The user part of `User` (`NAME`, `UID`; a `:GROUP` after it is
    /// not kept: nspawn runs the command with the user's own groups).
    pub user: Option<String>,
}

/// The parts of a config blob ctm reads; the rest is ignored.
#[derive(Deserialize)]
struct RawImage {
    #[serde(default)]
    config: Option<RawConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

impl ImageConfig {
    /// The config blob `bytes`, whose digest is `digest` (verified by
    /// whoever read it).
    pub fn parse(digest: Digest, bytes: &[u8]) -> Result<ImageConfig, String> {
        let raw: RawImage = serde_json::from_slice(bytes)
            .map_err(|e| format!("its config {digest} is not an image configuration: {e}"))?;
        let raw = raw.config.unwrap_or(RawConfig {
            entrypoint: None,
            cmd: None,
            env: None,
            working_dir: None,
            user: None,
        });
        let plain = |what: &str, value: &str| -> Result<(), String> {
            if value.chars().any(char::is_control) {
                Err(format!(
                    "its {what} `{}` has a control character, which ctm refuses",
                    value.escape_default()
                ))
            } else {
                Ok(())
            }
        };
        let mut command = raw.entrypoint.unwrap_or_default();
        command.extend(raw.cmd.unwrap_or_default());
        for word in &command {
            plain("command", word)?;
        }
        let mut environment = Vec::new();
        for entry in raw.env.unwrap_or_default() {
            plain("environment entry", &entry)?;
            let Some((name, value)) = entry.split_once('=') else {
                return Err(format!(
                    "its environment entry `{}` is not NAME=VALUE",
                    entry.escape_default()
                ));
            };
            if name.is_empty() {
                return Err(format!(
                    "its environment entry `{}` has no name",
                    entry.escape_default()
                ));
            }
            environment.push((name.to_string(), value.to_string()));
        }
        let working_directory = match raw.working_dir.filter(|d| !d.is_empty()) {
            Some(dir) => {
                plain("working directory", &dir)?;
                if !dir.starts_with('/') {
                    return Err(format!(
                        "its working directory `{}` is not absolute",
                        dir.escape_default()
                    ));
                }
                Some(dir)
            }
            None => None,
        };
        let user = match raw.user.filter(|u| !u.is_empty()) {
            Some(user) => {
                let name = user.split(':').next().unwrap_or_default();
                let ok = !name.is_empty()
                    && !name.starts_with('-')
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if !ok {
                    return Err(format!(
                        "its user `{}` is not a user name or number",
                        user.escape_default()
                    ));
                }
                Some(name.to_string())
            }
            None => None,
        };
        Ok(ImageConfig {
            digest,
            command,
            environment,
            working_directory,
            user,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_reference_names_registry_repository_tag_and_digest() {
        let r = OciReference::parse("127.0.0.1:5000/team/app:v1.2").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("v1.2"));
        assert_eq!(r.digest(), None);
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), "127.0.0.1:5000/team/app:v1.2");

        let pinned = format!("docker.io/library/debian:12@sha256:{HEX}");
        let r = OciReference::parse(&pinned).unwrap();
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.digest().unwrap().hex(), HEX);
        assert!(!r.is_loopback());
        assert_eq!(r.to_string(), pinned);
        assert_eq!(
            r.without_digest().to_string(),
            "docker.io/library/debian:12"
        );

        let r = OciReference::parse(&format!("localhost/app@sha256:{HEX}")).unwrap();
        assert_eq!((r.tag(), r.is_loopback()), (None, true));
        assert!(
            OciReference::parse("[::1]:5000/app:1")
                .unwrap()
                .is_loopback()
        );
        assert!(
            OciReference::parse("a-b.example/x-y--z/a.b_c__d:_1")
                .is_ok_and(|r| r.repository() == "x-y--z/a.b_c__d")
        );
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        let cases = [
            ("debian:12", "names no registry"),
            ("library/debian:12", "is not a registry's host name"),
            ("https://ghcr.io/a/b:1", "has a URL scheme"),
            ("ghcr.io/a/b", "neither a tag nor a digest"),
            ("ghcr.io/A/b:1", "is not a repository name component"),
            ("ghcr.io/a//b:1", "is not a repository name component"),
            ("ghcr.io/a/b.:1", "is not a repository name component"),
            ("ghcr.io/a/b:-x", "is not a tag"),
            ("ghcr.io/a/b:x y", "is not a tag"),
            ("ghcr.io:99999/a:1", "is not a port"),
            ("ghcr.io:/a:1", "is not a port"),
            ("bad_host.io/a:1", "is not a registry"),
            ("ghcr.io/a:1@md5:00", "digests are not supported"),
            ("ghcr.io/a:1@sha256:00", "64 lower-case hex digits"),
            ("ghcr.io/a\n:1", "is not a repository name component"),
        ];
        for (input, expected) in cases {
            let err = OciReference::parse(input).unwrap_err();
            assert!(err.contains(expected), "{input}: {err}");
        }
        let long = format!("ghcr.io/{}:1", "a".repeat(300));
        assert!(
            OciReference::parse(&long)
                .unwrap_err()
                .contains("at most 255")
        );
        let tag = format!("ghcr.io/a:{}", "t".repeat(129));
        assert!(
            OciReference::parse(&tag)
                .unwrap_err()
                .contains("is not a tag")
        );
    }

    #[test]
    fn a_digest_is_sha256_in_lower_case() {
        assert!(Digest::parse(&format!("sha256:{HEX}")).is_ok());
        assert!(Digest::parse(&format!("sha256:{}", HEX.to_uppercase())).is_err());
        assert!(Digest::parse(HEX).is_err());
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
