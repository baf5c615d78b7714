//! Stage 3: [`Host`] → the files systemd, networkd and nft read.
//!
//! A pure function: the same model gives byte-identical artifacts, on any
//! machine. Paths are relative to the root they will be installed under
//! (`etc/systemd/nspawn/web.nspawn`). Each artifact names what it belongs
//! to, so that a plan can tell which container a changed file restarts.

mod backup;
pub mod health;
mod ini;
mod links;
mod loopback;
mod names;
mod networkd;
mod nft;
mod nspawn;
pub mod provision;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Container, Host, IfName, Name};

/// Where the ruleset lives and what loads it at boot.
pub const NFT_RULESET: &str = "etc/ctm/ctm.nft";
pub const NFT_UNIT: &str = "etc/systemd/system/ctm-nftables.service";

/// The files one host compiles to, by root-relative path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Artifacts {
    pub files: BTreeMap<String, Artifact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artifact {
    pub owner: Owner,
    pub content: Content,
}

impl Artifact {
    /// What its path is to hold, for the writers in `fs`.
    pub fn node(&self) -> crate::fs::Node<'_> {
        match &self.content {
            Content::File { text, mode } => crate::fs::Node::File {
                bytes: text.as_bytes(),
                mode: *mode,
            },
            Content::Symlink { target } => crate::fs::Node::Symlink { target },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Content {
    File { text: String, mode: u32 },
    Symlink { target: String },
}

/// What is at an artifact's path before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    File(String),
    Symlink(String),
    /// A directory, a device, or a file that is not UTF-8.
    Other,
}

/// What an artifact configures: a change to a container's files restarts
/// that container only; network files reload networkd; the firewall files
/// reload the nft table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "name")]
pub enum Owner {
    Container(Name),
    Network(Name),
    Tunnel(IfName),
    Firewall,
    Host,
}

impl Artifacts {
    /// Whether an existing file at `path` may be replaced by this artifact:
    /// it is identical, or it carries ctm's marker, or it lies in ctm's
    /// own directory (JSON files there have no room for a comment).
    pub fn may_replace(path: &str, artifact: &Artifact, existing: &Existing) -> bool {
        match (existing, &artifact.content) {
            (Existing::Symlink(target), Content::Symlink { target: ours }) => target == ours,
            (Existing::File(text), Content::File { text: ours, .. }) => {
                text == ours
                    || path.starts_with("etc/ctm/")
                    || text
                        .lines()
                        .take(3)
                        .any(|line| line.starts_with('#') && line.contains(MARKER))
            }
            _ => false,
        }
    }

    /// Every artifact as what its path is to hold, in path order (for
    /// `fs::write_tree`).
    pub fn nodes(&self) -> impl Iterator<Item = (&str, crate::fs::Node<'_>)> {
        self.files.iter().map(|(path, a)| (path.as_str(), a.node()))
    }

    fn file(&mut self, path: String, owner: Owner, text: String) {
        self.files.insert(
            path,
            Artifact {
                owner,
                content: Content::File { text, mode: 0o644 },
            },
        );
    }

    fn symlink(&mut self, path: String, owner: Owner, target: &str) {
        self.files.insert(
            path,
            Artifact {
                owner,
                content: Content::Symlink {
                    target: target.to_string(),
                },
            },
        );
    }
}

/// Compiles a validated host into its artifacts.
pub fn compile(host: &Host) -> Artifacts {
    let header = header(host);
    let mut out = containers(host, &header);
    // A down topology's networks have no bridge; its containers keep
    // their files (and so their trees and volumes), held down below.
    for network in host.networks.values() {
        if !host.network_down(&network.name) {
            networkd::bridge(network, &header, &mut out);
        }
    }
    names::hosts_files(host, &header, &mut out);
    for tunnel in host.tunnels.values() {
        networkd::tunnel(tunnel, &header, &mut out);
    }
    links::links(host, &header, &mut out);
    networkd::sysctl(host, &header, &mut out);
    networkd::network_target(host, &header, &mut out);
    let chains = nft::chains(host);
    nft::firewall(&chains, &header, &mut out);
    backup::timers(host, &header, &mut out);
    let sockets = loopback::forwards(host, &header, &mut out);
    health::write(&health::health(host, &chains, sockets), &mut out);
    out
}

/// Each container's own files. Containers do not read each other's, and
/// they are most of a compile: a large host's are compiled in runs, one
/// a core, then merged in the order one loop over them all would have
/// inserted them, so the files are the same byte for byte.
fn containers(host: &Host, header: &[String]) -> Artifacts {
    // Starting a thread costs tens of microseconds; compiling one
    // container's files, about ten.
    let runs = crate::cores::runs(host.containers.len(), 64, 4);
    containers_in_runs(host, header, runs)
}

/// [`containers`] in `runs` runs.
fn containers_in_runs(host: &Host, header: &[String], runs: usize) -> Artifacts {
    let all: Vec<&Container> = host.containers.values().collect();
    let compiled = crate::cores::in_n_runs(&all, runs, |run| {
        let mut out = Artifacts::default();
        for container in run {
            nspawn::container(host, container, header, &mut out);
            provision::container(host, container, &mut out);
        }
        out
    });
    let mut out = Artifacts::default();
    for mut later in compiled {
        // A path both runs hold keeps the later run's, as a loop's later
        // insert would.
        out.files.append(&mut later.files);
    }
    out
}

/// Marks a file as written by ctm; every generated file with room for a
/// comment carries it in its first lines.
pub const MARKER: &str = "Generated by ctm";

/// The comment every generated file starts with. It names the host, not
/// the source file, so KDL and TOML forms compile to identical bytes.
fn header(host: &Host) -> Vec<String> {
    let mut lines = vec![match &host.name {
        Some(name) => format!("{MARKER} for host {name}."),
        None => format!("{MARKER}."),
    }];
    lines.push("Do not edit: `ctm apply` replaces this file; change the host file instead.".into());
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Format, Source};
    use crate::lock::Lock;

    #[test]
    fn containers_compiled_in_runs_are_those_of_one_loop() {
        let mut text = String::from(
            "image \"deb\" {\n    debootstrap suite=\"bookworm\"\n}\n\
             network \"net0\" {\n    bridge \"br0\"\n    ipv4 \"10.0.0.1/22\"\n}\n",
        );
        for i in 0..300 {
            text.push_str(&format!(
                "container \"ct{i:03}\" {{\n    image \"deb\"\n    network \"net0\"\n"
            ));
            if i % 3 == 0 {
                text.push_str(&format!(
                    "    forward \"tcp\" host={} container=80\n",
                    20000 + i
                ));
            }
            if i % 5 == 0 {
                text.push_str("    limits memory=\"1G\"\n");
            }
            text.push_str("}\n");
        }
        let source = Source::new("many.kdl", text, Format::Kdl);
        let (doc, diagnostics) = config::parse(&source);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let validated = crate::validate::validate(&doc, &Lock::empty()).expect("the host is valid");
        let host = &validated.host;
        let header = header(host);
        let one = containers_in_runs(host, &header, 1);
        assert!(one.files.len() > 300 * 4, "{} files", one.files.len());
        for runs in [2, 3, 4, 7] {
            assert_eq!(containers_in_runs(host, &header, runs), one, "{runs} runs");
        }
        // One run is a plain loop over every container.
        let mut loop_of_all = Artifacts::default();
        for container in host.containers.values() {
            nspawn::container(host, container, &header, &mut loop_of_all);
            provision::container(host, container, &mut loop_of_all);
        }
        assert_eq!(one, loop_of_all);
    }
}
