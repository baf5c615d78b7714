//! The validated fleet file: the hosts `ctm fleet` drives over SSH, each
//! with the host file it runs (docs/fleet.md).
//!
//! Like the host's model, every value here was parsed once into a type
//! that cannot hold a bad one. What reaches an `ssh` command line (a
//! destination, a port, a path on the host) can neither pass for an
//! option nor carry a quote, a space or a control character; the names
//! that reach file names and reports are [`Name`]s.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use serde::Serialize;

use super::types::{AbsPath, Name, Port};
use crate::clock::Timeout;

/// How long a host waits for its confirmation unless the fleet file says.
pub const DEFAULT_CONFIRM_TIMEOUT: u64 = 120;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fleet {
    /// The hosts, in the order of the fleet file (the order they are
    /// applied in).
    pub hosts: Vec<FleetHost>,
    /// What `ctm fleet apply` switches first and alone.
    pub canary: Option<Canary>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetHost {
    pub name: Name,
    pub ssh: SshTarget,
    /// The host file, as the fleet file gives it (relative to the fleet
    /// file unless absolute).
    pub file: HostFilePath,
    pub tags: Vec<Name>,
    /// The group it is applied with; `None`: with the other hosts
    /// without one.
    pub group: Option<Name>,
    /// The host's own, else the fleet's, else [`DEFAULT_CONFIRM_TIMEOUT`].
    pub confirm_timeout: Timeout,
    /// The remote ctm's path; `None`: `ctm` from the remote PATH.
    pub ctm: Option<AbsPath>,
}

impl FleetHost {
    /// The remote ctm as the first word of a remote command.
    pub fn ctm_command(&self) -> &str {
        self.ctm.as_ref().map_or("ctm", AbsPath::as_str)
    }

    /// Whether `--on NAME` selects this host: its name or one of its tags.
    pub fn is_named_by(&self, name: &str) -> bool {
        self.name.as_str() == name || self.tags.iter().any(|t| t.as_str() == name)
    }
}

impl Fleet {
    pub fn host(&self, name: &str) -> Option<&FleetHost> {
        self.hosts.iter().find(|h| h.name.as_str() == name)
    }
}

/// The canary: one host, or every host of one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum Canary {
    Host(Name),
    Group(Name),
}

impl Canary {
    /// The host called `name`, else the group; `None` if neither is.
    pub fn named(hosts: &[FleetHost], name: &str) -> Option<Canary> {
        if let Some(host) = hosts.iter().find(|h| h.name.as_str() == name) {
            return Some(Canary::Host(host.name.clone()));
        }
        hosts
            .iter()
            .filter_map(|h| h.group.as_ref())
            .find(|g| g.as_str() == name)
            .map(|g| Canary::Group(g.clone()))
    }

    pub fn includes(&self, host: &FleetHost) -> bool {
        match self {
            Canary::Host(name) => host.name == *name,
            Canary::Group(name) => host.group.as_ref() == Some(name),
        }
    }
}

/// Where `ssh` connects: a destination and, if the fleet file gives one,
/// a port (otherwise the ssh configuration's).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SshTarget {
    pub destination: SshDestination,
    pub port: Option<Port>,
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{} port {port}", self.destination),
            None => write!(f, "{}", self.destination),
        }
    }
}

/// An OpenSSH destination, `[user@]host`: the host a name of letters,
/// digits, `-`, `_` and `.` (a DNS name, or a `Host` alias of the ssh
/// configuration), or an IPv4 or IPv6 address. It never starts with `-`
/// (ssh would read an option), and holds no space, quote, `%` (an ssh
/// configuration token) or control character.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct SshDestination(String);

impl SshDestination {
    pub const MAX_LEN: usize = 255;

    pub fn parse(s: &str) -> Result<SshDestination, String> {
        if s.is_empty() {
            return Err("an SSH destination cannot be empty".into());
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!(
                "the SSH destination is {} characters long; at most {} are allowed",
                s.len(),
                Self::MAX_LEN
            ));
        }
        if s.starts_with('-') {
            return Err(format!(
                "`{s}` starts with `-`: ssh would read it as an option"
            ));
        }
        let (user, host) = match s.rsplit_once('@') {
            Some((user, host)) => (Some(user), host),
            None => (None, s),
        };
        if let Some(user) = user {
            check_user(user)?;
        }
        let host = check_host(host)?;
        Ok(SshDestination(match user {
            Some(user) => format!("{user}@{host}"),
            None => host,
        }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_user(user: &str) -> Result<(), String> {
    let mut chars = user.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || user.len() > 32 {
        return Err(format!(
            "`{user}` is not a user name: it starts with a letter or `_`, and has at most 32 characters"
        ));
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
        return Err(format!(
            "`{}` may not appear in the user of an SSH destination; use letters, digits, `_`, `-` and `.`",
            c.escape_default()
        ));
    }
    Ok(())
}

/// The host part, normalised: an IPv6 address loses its brackets.
fn check_host(host: &str) -> Result<String, String> {
    if host.is_empty() {
        return Err("the SSH destination names no host after `@`".into());
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(v6) = bare.parse::<Ipv6Addr>() {
        return Ok(v6.to_string());
    }
    if bare.parse::<IpAddr>().is_ok() {
        return Ok(bare.to_string());
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "`{}` may not appear in the host of an SSH destination; use a host name, an address or a `Host` alias of your ssh configuration",
            c.escape_default()
        ));
    }
    if host.starts_with('-') || host.starts_with('.') || host.contains("..") {
        return Err(format!(
            "`{host}` is not a host name: it may not start with `-` or `.`, nor hold `..`"
        ));
    }
    Ok(host.to_string())
}

impl fmt::Display for SshDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The path of a host file as the fleet file gives it: `.kdl` or `.toml`
/// (the syntax it is read in).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct HostFilePath(String);

impl HostFilePath {
    pub fn parse(s: &str) -> Result<HostFilePath, String> {
        if s.is_empty() {
            return Err("the host file's path cannot be empty".into());
        }
        if s.chars().any(char::is_control) {
            return Err("a path may not hold control characters".into());
        }
        if !(s.ends_with(".kdl") || s.ends_with(".toml")) || s.ends_with("/.kdl") {
            return Err(format!(
                "`{s}` is not a host file: its name ends in `.kdl`, or `.toml` for the TOML form"
            ));
        }
        Ok(HostFilePath(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `kdl` or `toml`.
    pub fn extension(&self) -> &'static str {
        if self.0.ends_with(".toml") {
            "toml"
        } else {
            "kdl"
        }
    }
}

impl fmt::Display for HostFilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_is_a_user_at_a_host_and_never_an_option() {
        for good in [
            "web1",
            "root@203.0.113.5",
            "deploy@web-1.example.com",
            "root@fd00::1",
            "lab_2",
        ] {
            assert!(SshDestination::parse(good).is_ok(), "{good}");
        }
        assert_eq!(
            SshDestination::parse("root@[fd00::1]").unwrap().as_str(),
            "root@fd00::1"
        );
        for bad in [
            "",
            "-oProxyCommand=sh",
            "root@-oProxyCommand=x",
            "root@",
            "root@web1 ls",
            "root@web1;id",
            "ro ot@web1",
            "root@web%h",
            "1root@web1",
            "root@we'b",
            "root@.hidden",
            "a@b@c",
        ] {
            assert!(SshDestination::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_host_file_path_says_its_syntax() {
        assert_eq!(
            HostFilePath::parse("hosts/web1.toml").unwrap().extension(),
            "toml"
        );
        assert_eq!(HostFilePath::parse("web1.kdl").unwrap().extension(), "kdl");
        assert!(HostFilePath::parse("web1.yaml").is_err());
        assert!(HostFilePath::parse("").is_err());
        assert!(HostFilePath::parse("hosts/.kdl").is_err());
    }
}
