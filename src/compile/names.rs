//! Container names that resolve. Inside containers: one hosts file per
//! network, with the names and addresses of the containers on it, bound
//! into each of them (their `/etc/hosts` links to it, a provisioning
//! step). On the host, systemd's nss-mymachines resolves the name of every
//! running container from machined (docs/config.md, "Names").

use std::fmt::Write as _;

use super::{Artifacts, Owner};
use crate::layout;
use crate::model::{Host, Network};

/// The lines every hosts file starts with, as Debian's own.
const LOOPBACK: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// Writes `etc/ctm/networks/NAME/hosts` for each network with containers.
pub fn hosts_files(host: &Host, header: &[String], out: &mut Artifacts) {
    for network in host.networks.values() {
        if let Some(text) = hosts(host, network, header) {
            out.file(
                format!("{}/hosts", layout::network_dir(network.name.as_str())),
                Owner::Network(network.name.clone()),
                text,
            );
        }
    }
}

fn hosts(host: &Host, network: &Network, header: &[String]) -> Option<String> {
    let mut text = String::new();
    for line in header {
        let _ = writeln!(text, "# {}", super::ini::escape_controls(line));
    }
    let _ = writeln!(text, "# The containers on network {}.", network.name);
    text.push_str(LOOPBACK);
    let mut any = false;
    for container in host.containers.values() {
        // A container on several networks is listed on each, with its
        // addresses there.
        let Some(attach) = container.attachments().find(|a| a.network == network.name) else {
            continue;
        };
        any = true;
        // Names and addresses are validated: no space, newline or `#`.
        if let Some(v4) = attach.ipv4 {
            let _ = writeln!(text, "{v4}\t{}", container.name);
        }
        if let Some(v6) = attach.ipv6 {
            let _ = writeln!(text, "{v6}\t{}", container.name);
        }
    }
    any.then_some(text)
}
