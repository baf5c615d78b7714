//! Container names that resolve. Inside containers: one hosts file per
//! network, with the names and addresses of the containers on it, bound
//! into each of them (their `/etc/hosts` links to it, a provisioning
//! step). On the host, systemd's nss-mymachines resolves the name of every
//! running container from machined (docs/config.md, "Names").

use std::collections::HashMap;
use std::fmt::Write as _;

use super::{Artifacts, Owner};
use crate::layout;
use crate::model::{Attachment, Host, Name, Network};

/// The lines every hosts file starts with, as Debian's own.
const LOOPBACK: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// Writes `etc/ctm/networks/NAME/hosts` for each network with containers.
pub fn hosts_files(host: &Host, header: &[String], out: &mut Artifacts) {
    // Each container's attachments, by network, in one pass: looking for
    // each network's containers among all was 100 networks times 5,000
    // containers for a large host. A container on several networks is
    // listed on each, with its addresses there; on one network twice,
    // with its first attachment.
    let mut on: HashMap<&Name, Vec<(&Name, &Attachment)>> = HashMap::new();
    for container in host.containers.values() {
        for attach in container.attachments() {
            let listed = on.entry(&attach.network).or_default();
            if listed
                .last()
                .is_none_or(|(name, _)| *name != &container.name)
            {
                listed.push((&container.name, attach));
            }
        }
    }
    for network in host.networks.values() {
        if let Some(listed) = on.get(&network.name) {
            out.file(
                format!("{}/hosts", layout::network_dir(network.name.as_str())),
                Owner::Network(network.name.clone()),
                hosts(network, listed, header),
            );
        }
    }
}

fn hosts(network: &Network, listed: &[(&Name, &Attachment)], header: &[String]) -> String {
    let mut text = String::new();
    for line in header {
        let _ = writeln!(text, "# {}", super::ini::escape_controls(line));
    }
    let _ = writeln!(text, "# The containers on network {}.", network.name);
    text.push_str(LOOPBACK);
    for (name, attach) in listed {
        // Names and addresses are validated: no space, newline or `#`.
        if let Some(v4) = attach.ipv4 {
            let _ = writeln!(text, "{v4}\t{name}");
        }
        if let Some(v6) = attach.ipv6 {
            let _ = writeln!(text, "{v6}\t{name}");
        }
    }
    text
}
