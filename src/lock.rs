//! The lock file: addresses ctm assigned and the digests image tags
//! resolved to, kept so they never move.
//!
//! A container without explicit addresses gets them from its network, and
//! the assignment is recorded here (`HOSTFILE.lock`, meant to be committed
//! like `Cargo.lock`). Validation reads the previous lock and keeps every
//! recorded address that is still valid, so adding, removing or renaming
//! another container never changes an existing container's address.
//! Likewise an OCI image named by a tag alone is pinned to the digest the
//! tag resolved to when it was first planned, until its reference changes.
//! Parsing and rendering are pure; the CLI reads and writes the file.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use miette::SourceSpan;
use serde::{Deserialize, Serialize};

use crate::diagnostic::Diagnostic;
use crate::model::oci::{Digest, OciReference};

pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub version: u32,
    /// Container name → its assigned addresses.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub containers: BTreeMap<String, Assigned>,
    /// Container name → network after its first → the addresses assigned
    /// there (a container on several networks).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attached: BTreeMap<String, BTreeMap<String, Addresses>>,
    /// Image name → the digest its tag resolved to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, Pinned>,
}

/// An OCI image's tag, and the digest it resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pinned {
    /// The reference as the host file writes it (no digest).
    pub reference: OciReference,
    pub digest: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assigned {
    pub network: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
}

/// The addresses assigned on one of a container's other networks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Addresses {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
}

impl Lock {
    pub fn empty() -> Lock {
        Lock {
            version: VERSION,
            containers: BTreeMap::new(),
            attached: BTreeMap::new(),
            images: BTreeMap::new(),
        }
    }

    /// Parses a lock file; errors point into the lock file's text.
    ///
    /// A lock file of another version may have other fields, and the
    /// error to give is then the version: when the file is not a lock of
    /// this version, its version is read on its own to tell which.
    pub fn parse(text: &str) -> Result<Lock, Box<Diagnostic>> {
        if let Some(lock) = rendered(text) {
            return Ok(lock);
        }
        let whole = toml::from_str::<Lock>(text);
        if let Ok(lock) = &whole
            && lock.version == VERSION
        {
            return whole.map_err(invalid);
        }
        let header: Header = toml::from_str(text).map_err(invalid)?;
        let version = *header.version.get_ref();
        if version != VERSION {
            let range = header.version.span();
            return Err(Box::new(
                Diagnostic::error(
                    "ctm::lock-file",
                    format!(
                        "lock file version {version} is not supported (this ctm writes version {VERSION})"
                    ),
                    SourceSpan::new(range.start.into(), range.end - range.start),
                )
                .with_label("unsupported version"),
            ));
        }
        whole.map_err(invalid)
    }

    pub fn render(&self) -> String {
        let mut out = String::from(
            "# Written by ctm: addresses it assigned to containers that do not set their own.\n\
             # Commit this file next to the host file; ctm keeps these addresses stable.\n",
        );
        if !self.images.is_empty() {
            out.push_str(
                "# [images]: the digest each image's tag resolved to; delete an entry to resolve it again.\n",
            );
        }
        // A struct of strings, integers and addresses in sorted maps: the
        // serializer has no way to fail, and writes it in a stable order.
        out.push_str(&toml::to_string(self).expect("a lock always serializes to TOML"));
        out
    }
}

/// The lock as [`Lock::render`] writes its addresses (comments, the
/// version, then `[containers.NAME]` and `[attached.NAME.NETWORK]` tables
/// of plain strings, in order), read line by line; `None` for anything
/// else, which the TOML parser reads (or refuses) instead. An apply reads
/// the lock every time, and for 5,000 containers the TOML parser took
/// 14 ms of it.
fn rendered(text: &str) -> Option<Lock> {
    // TOML refuses control characters, in comments and strings alike.
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return None;
    }
    let mut lock = Lock::empty();
    let mut version = None;
    // The table being filled: a container's addresses, or those on one of
    // its other networks.
    enum Table {
        None,
        Container(String, Option<String>, Addresses),
        Attached(String, String, Addresses),
    }
    let mut table = Table::None;
    let close = |lock: &mut Lock, table: Table| -> Option<()> {
        match table {
            Table::None => {}
            Table::Container(name, network, Addresses { ipv4, ipv6 }) => {
                let assigned = Assigned {
                    network: network?,
                    ipv4,
                    ipv6,
                };
                // In order, each once: as render writes them.
                if lock
                    .containers
                    .last_key_value()
                    .is_some_and(|(k, _)| *k >= name)
                {
                    return None;
                }
                lock.containers.insert(name, assigned);
            }
            Table::Attached(name, network, addresses) => {
                let on = lock.attached.entry(name).or_default();
                if on.last_key_value().is_some_and(|(k, _)| *k >= network) {
                    return None;
                }
                on.insert(network, addresses);
            }
        }
        Some(())
    };
    let bare = |key: &str| {
        !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let header = header.strip_suffix(']')?;
            let next = match header.split('.').collect::<Vec<_>>()[..] {
                ["containers", name] if bare(name) => {
                    Table::Container(name.to_string(), None, Addresses::default())
                }
                ["attached", name, network] if bare(name) && bare(network) => {
                    // A container's other networks follow its own table.
                    if lock
                        .attached
                        .keys()
                        .next_back()
                        .is_some_and(|k| k.as_str() > name)
                    {
                        return None;
                    }
                    Table::Attached(name.to_string(), network.to_string(), Addresses::default())
                }
                _ => return None,
            };
            close(&mut lock, std::mem::replace(&mut table, next))?;
            continue;
        }
        let (key, value) = line.split_once(" = ")?;
        if key == "version" && matches!(table, Table::None) && version.is_none() {
            version = Some(value.parse::<u32>().ok().filter(|v| *v == VERSION)?);
            continue;
        }
        let value = value.strip_prefix('"')?.strip_suffix('"')?;
        if value.contains(['"', '\\']) {
            return None;
        }
        let addresses = match &mut table {
            Table::Container(_, network, addresses) => {
                if key == "network"
                    && network.is_none()
                    && addresses.ipv4.is_none()
                    && addresses.ipv6.is_none()
                {
                    *network = Some(value.to_string());
                    continue;
                }
                addresses
            }
            Table::Attached(_, _, addresses) => addresses,
            Table::None => return None,
        };
        match key {
            "ipv4" if addresses.ipv4.is_none() && addresses.ipv6.is_none() => {
                addresses.ipv4 = Some(value.parse().ok()?);
            }
            "ipv6" if addresses.ipv6.is_none() => addresses.ipv6 = Some(value.parse().ok()?),
            _ => return None,
        }
    }
    close(&mut lock, table)?;
    version?;
    Some(lock)
}

/// Just the version of a lock file, with where it is written.
#[derive(Deserialize)]
struct Header {
    version: toml::Spanned<u32>,
}

fn invalid(e: toml::de::Error) -> Box<Diagnostic> {
    let span = e.span().map_or(SourceSpan::new(0.into(), 0), |r| {
        SourceSpan::new(r.start.into(), r.end - r.start)
    });
    Box::new(
        Diagnostic::error(
            "ctm::lock-file",
            format!("invalid lock file: {}", e.message().trim()),
            span,
        )
        .with_label("here")
        .with_help(
            "the lock file is written by ctm; restore it from version control, or delete it to let ctm assign addresses and resolve image tags anew",
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lock {
        let mut lock = Lock::empty();
        let assigned = |network: &str, ipv4: Option<&str>, ipv6: Option<&str>| Assigned {
            network: network.into(),
            ipv4: ipv4.map(|a| a.parse().unwrap()),
            ipv6: ipv6.map(|a| a.parse().unwrap()),
        };
        lock.containers.insert(
            "api".into(),
            assigned("front", Some("10.0.0.2"), Some("fd00::2")),
        );
        lock.containers
            .insert("db".into(), assigned("back", None, Some("fd00:1::3")));
        lock.containers
            .insert("web_1".into(), assigned("front", Some("10.0.0.3"), None));
        for (network, ipv4) in [("back", "10.1.0.2"), ("mgmt", "10.2.0.2")] {
            lock.attached.entry("api".into()).or_default().insert(
                network.into(),
                Addresses {
                    ipv4: Some(ipv4.parse().unwrap()),
                    ipv6: None,
                },
            );
        }
        lock
    }

    #[test]
    fn the_rendered_lock_is_read_line_by_line_as_toml_reads_it() {
        let lock = sample();
        let text = lock.render();
        assert_eq!(rendered(&text), Some(lock.clone()), "{text}");
        assert_eq!(toml::from_str::<Lock>(&text).unwrap(), lock);
        assert_eq!(rendered(&Lock::empty().render()), Some(Lock::empty()));
        // What render never writes is the TOML parser's to read or refuse.
        for other in [
            text.replace("version = 1", "version = 2"),
            text.replace("ipv4 = ", "ipv4  = "),
            text.replace("[containers.db]", "[containers.\"db\"]"),
            text.replace("[containers.db]", "[containers.a]"),
            text + "[images.app]\nreference = \"reg.example/app:1\"\ndigest = \"sha256:beef\"\n",
        ] {
            assert_eq!(rendered(&other), None, "{other}");
        }
    }

    #[test]
    fn a_garbled_lock_is_read_as_toml_reads_it_or_left_to_toml() {
        let text = sample().render();
        for at in 0..text.len() {
            for byte in [
                b'"', b'\\', b'[', b']', b'.', b'=', b' ', b'\n', b'\r', 1, b'#', b'0', b'x', b':',
            ] {
                let mut garbled = text.clone().into_bytes();
                garbled[at] = byte;
                let Ok(garbled) = String::from_utf8(garbled) else {
                    continue;
                };
                if let Some(read) = rendered(&garbled) {
                    assert_eq!(
                        Some(read),
                        toml::from_str::<Lock>(&garbled).ok(),
                        "{garbled}"
                    );
                }
            }
        }
    }
}
