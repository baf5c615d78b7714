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
