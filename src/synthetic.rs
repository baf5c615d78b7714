//! Generates synthetic host files for benchmarks and tests.
//!
//! [`host_kdl`] writes a valid KDL host file of any size that exercises
//! every part of the language: dual-stack networks with and without NAT,
//! template inheritance, explicit and assigned addresses, port forwards,
//! binds, limits, SSH keys, Docker, nesting and GRE tunnels. The output
//! depends on the three counts only, so a benchmark run on one machine can
//! be repeated on another (`cargo run --example gen_host -- 1000 100 50`).
//!
//! [`hostile_kdl`] writes the hostile files of issue 13 (`cargo run
//! --example gen_hostile -- repeated-property 100000`).

use std::fmt::Write;
use std::net::Ipv4Addr;

use base64::Engine;

/// A valid ed25519 key, the one in `examples/homelab.kdl`.
const ADMIN_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMp0tjDw5Qn0NKqAdy/eivAd6YR/Tj3jVA/0sAkX+k4+ admin@laptop";

/// Addresses a /22 gives containers: 1024 less the network address, the
/// broadcast address and the bridge's own.
const HOSTS_PER_NETWORK: usize = 1024 - 3;

/// First host port handed to forwards; each forwarding container gets its own.
const FIRST_HOST_PORT: usize = 20000;

/// A host file with `containers` containers spread round-robin over
/// `networks` networks, and `tunnels` GRE tunnels.
///
/// Network `i` is `net{i}` on bridge `br{i}` with the i-th /22 of
/// 10.0.0.0/8 and `fd00:{i:x}::/64`. Every third container sets its IPv4
/// address, taken from the top of its /22 downwards, so it never meets the
/// assigned ones, which ctm takes from the bottom upwards. Tunnel `i` is
/// `site{i}` with the i-th /31 of 172.16.0.0/12.
///
/// # Panics
///
/// If the counts do not fit the address plan: more than 16,384 networks,
/// more than 1,021 containers on one network, or more than 2^19 tunnels.
pub fn host_kdl(containers: usize, networks: usize, tunnels: usize) -> String {
    assert!(
        networks <= 1 << 14,
        "at most 16384 /22 networks fit in 10.0.0.0/8"
    );
    assert!(
        networks == 0 || containers.div_ceil(networks) <= HOSTS_PER_NETWORK,
        "at most {HOSTS_PER_NETWORK} containers fit on one /22 network"
    );
    assert!(
        tunnels <= 1 << 19,
        "at most 2^19 /31 tunnels fit in 172.16.0.0/12"
    );

    let mut out = String::with_capacity(1024 + networks * 160 + containers * 360 + tunnels * 160);
    header(&mut out);
    for i in 0..networks {
        network(&mut out, i);
    }
    templates(&mut out);
    // Explicit addresses given so far on each network, to count down from
    // the top of its subnet.
    let mut explicit = vec![0usize; networks];
    for i in 0..containers {
        container(&mut out, i, networks, &mut explicit);
    }
    for i in 0..tunnels {
        tunnel(&mut out, i);
    }
    out
}

fn header(out: &mut String) {
    out.push_str(
        "// Synthetic host file written by ctm::synthetic::host_kdl.\n\
         \n\
         host \"bench\" {\n    uplink \"eth0\"\n}\n\
         \n\
         image \"debian-bookworm\" {\n    \
             debootstrap suite=\"bookworm\"\n    \
             packages \"openssh-server\" \"ca-certificates\"\n}\n\n",
    );
}

/// The first address of network `i`'s /22, as an integer.
fn subnet_base(i: usize) -> u32 {
    u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (i as u32) * 1024
}

fn network(out: &mut String, i: usize) {
    let gateway = Ipv4Addr::from(subnet_base(i) + 1);
    let nat4 = if i.is_multiple_of(2) { " { nat; }" } else { "" };
    let nat6 = if i.is_multiple_of(4) { " { nat; }" } else { "" };
    let _ = write!(
        out,
        "network \"net{i}\" {{\n    \
             bridge \"br{i}\"\n    \
             ipv4 \"{gateway}/22\"{nat4}\n    \
             ipv6 \"fd00:{i:x}::1/64\"{nat6}\n\
         }}\n\n"
    );
}

fn templates(out: &mut String) {
    let _ = write!(
        out,
        "template \"base\" {{\n    \
             image \"debian-bookworm\"\n    \
             ssh {{\n        authorized-key \"{ADMIN_KEY}\"\n    }}\n    \
             limits memory=\"1G\" cpus=2\n\
         }}\n\n\
         template \"server\" {{\n    \
             from \"base\"\n    \
             limits memory=\"2G\"\n    \
             environment TZ=\"UTC\" LANG=\"C.UTF-8\"\n    \
             packages \"nginx-light\"\n\
         }}\n\n"
    );
}

fn container(out: &mut String, i: usize, networks: usize, explicit: &mut [usize]) {
    let _ = writeln!(out, "container \"ct{i:05}\" {{");
    match i % 4 {
        0 => out.push_str("    from \"server\"\n"),
        1 | 2 => out.push_str("    from \"base\"\n"),
        _ => {
            // No template: its own image and keys, one of them its own.
            let _ = write!(
                out,
                "    image \"debian-bookworm\"\n    \
                 ssh {{\n        \
                     user \"deploy\"\n        \
                     authorized-key \"{ADMIN_KEY}\"\n        \
                     authorized-key \"{}\"\n    \
                 }}\n",
                own_key(i)
            );
        }
    }
    let attached = networks > 0;
    if attached {
        let n = i % networks;
        let _ = write!(out, "    network \"net{n}\"");
        if i.is_multiple_of(3) {
            let m = explicit[n];
            explicit[n] += 1;
            // From the top of the /22 (the last host address is base+1022)
            // downwards; assignment starts at base+2.
            let v4 = Ipv4Addr::from(subnet_base(n) + 1022 - m as u32);
            let _ = write!(out, " ipv4=\"{v4}\"");
            if i.is_multiple_of(6) {
                let _ = write!(out, " ipv6=\"fd00:{n:x}::1:0:{m:x}\"");
            }
        }
        out.push('\n');
        let port = FIRST_HOST_PORT + i / 4;
        if i % 4 == 1 && port <= usize::from(u16::MAX) {
            let _ = writeln!(out, "    forward \"tcp\" host={port} container=80");
            if i % 8 == 1 {
                let _ = writeln!(out, "    forward \"udp\" host={port} container=53");
            }
        }
    }
    if i.is_multiple_of(5) {
        let _ = writeln!(out, "    bind \"/srv/ctm/ct{i:05}\" \"/var/lib/data\"");
        if i.is_multiple_of(10) {
            out.push_str("    bind \"/srv/shared\" read-only=#true\n");
        }
    }
    if i % 6 == 2 {
        out.push_str("    limits memory=\"512M\" cpus=0.5\n");
    }
    if attached && i % 7 == 3 {
        out.push_str("    docker\n");
    }
    if i % 11 == 5 {
        out.push_str("    nested\n");
    }
    if i % 13 == 12 {
        out.push_str("    autostart #false\n");
    }
    if i % 9 == 4 {
        out.push_str("    packages \"curl\" \"jq\"\n");
    }
    if i % 10 == 7 {
        let _ = writeln!(out, "    environment APP_ID=\"{i}\" ROLE=\"worker\"");
    }
    out.push_str("}\n\n");
}

/// A well-formed ed25519 public key of container `i`'s own (not a real
/// key pair: 32 bytes derived from `i`).
fn own_key(i: usize) -> String {
    let mut blob = Vec::with_capacity(4 + 11 + 4 + 32);
    blob.extend_from_slice(&11u32.to_be_bytes());
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&32u32.to_be_bytes());
    let seed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for k in 0..4u64 {
        blob.extend_from_slice(&(seed ^ k.wrapping_mul(0xD1B5_4A32_D192_ED03)).to_le_bytes());
    }
    let data = base64::engine::general_purpose::STANDARD.encode(&blob);
    format!("ssh-ed25519 {data} ct{i:05}@bench")
}

fn tunnel(out: &mut String, i: usize) {
    let address = Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + 2 * i as u32);
    let remote = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 1 + i as u32);
    let _ = write!(
        out,
        "tunnel \"site{i}\" {{\n    \
             gre local=\"192.0.2.1\" remote=\"{remote}\"\n    \
             address \"{address}/31\"\n"
    );
    if i.is_multiple_of(2) && i <= 0xffff {
        let _ = writeln!(out, "    address \"fdff:{i:x}::/127\"");
    }
    out.push_str("}\n\n");
}

/// The hostile host files of issue 13, each a size of `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// One `limits` node with `cpus=1` `n` times (700 KB at 100,000; did
    /// not finish in 15 minutes).
    RepeatedProperty,
    /// `n` `limits cpus=1` nodes in one container (15.6 s at 100,000).
    RepeatedNode,
    /// One `environment` node with `n` distinct variables (889 KB at
    /// 100,000; 38.8 s).
    DistinctProperties,
    /// `n` child blocks nested in one another, in one container.
    Nested,
    /// `n` containers of one line each (50 MB at 1,370,000; 17.9 s and
    /// 3.0 GB).
    MinimalContainers,
}

impl Hostile {
    pub const ALL: [(Hostile, &'static str); 5] = [
        (Hostile::RepeatedProperty, "repeated-property"),
        (Hostile::RepeatedNode, "repeated-node"),
        (Hostile::DistinctProperties, "distinct-properties"),
        (Hostile::Nested, "nested"),
        (Hostile::MinimalContainers, "minimal-containers"),
    ];
}

/// A host file of `kind` and size `n`: an image, and what `kind` says.
pub fn hostile_kdl(kind: Hostile, n: usize) -> String {
    let mut out = String::from("image \"img\" {\n    directory \"/srv/img\"\n}\n");
    match kind {
        Hostile::RepeatedProperty => {
            out.push_str("container \"web\" {\n    image \"img\"\n    limits");
            out.push_str(&" cpus=1".repeat(n));
            out.push_str("\n}\n");
        }
        Hostile::RepeatedNode => {
            out.push_str("container \"web\" {\n    image \"img\"\n");
            out.push_str(&"    limits cpus=1\n".repeat(n));
            out.push_str("}\n");
        }
        Hostile::DistinctProperties => {
            out.push_str("container \"web\" {\n    image \"img\"\n    environment");
            for i in 0..n {
                let _ = write!(out, " V{i}=\"x\"");
            }
            out.push_str("\n}\n");
        }
        Hostile::Nested => {
            out.push_str("container \"web\" {\n    image \"img\"\n");
            out.push_str(&"a {".repeat(n));
            out.push_str(&"}".repeat(n));
            out.push_str("\n}\n");
        }
        Hostile::MinimalContainers => {
            for i in 0..n {
                let _ = writeln!(out, "container \"c{i:07}\" {{ image \"img\"; }}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Format, Source};
    use crate::lock::Lock;
    use crate::{compile, validate};

    /// Parses, validates and compiles, insisting on zero diagnostics.
    fn pipeline(containers: usize, networks: usize, tunnels: usize) -> validate::Validated {
        let text = host_kdl(containers, networks, tunnels);
        let source = Source::new("synthetic.kdl", text, Format::Kdl);
        let (doc, diagnostics) = config::parse(&source);
        assert!(diagnostics.is_empty(), "parse: {diagnostics:#?}");
        let validated = match validate::validate(&doc, &Lock::empty()) {
            Ok(v) => v,
            Err(diagnostics) => panic!("validate: {diagnostics:#?}"),
        };
        let host = &validated.host;
        assert_eq!(host.containers.len(), containers);
        assert_eq!(host.networks.len(), networks);
        assert_eq!(host.tunnels.len(), tunnels);
        let artifacts = compile::compile(host);
        assert!(artifacts.files.len() > containers + networks + tunnels);
        validated
    }

    #[test]
    fn large_host_is_valid() {
        let validated = pipeline(1000, 100, 50);
        let host = &validated.host;
        assert!(host.containers.values().any(|c| c.docker));
        assert!(host.containers.values().any(|c| c.nested));
        assert!(host.containers.values().any(|c| !c.forwards.is_empty()));
        assert!(host.containers.values().any(|c| !c.binds.is_empty()));
        // Every sixth container sets both addresses; the others had at
        // least one assigned.
        assert_eq!(
            validated.lock.containers.len(),
            1000 - 1000_usize.div_ceil(6)
        );
    }

    #[test]
    fn small_host_is_valid() {
        pipeline(7, 2, 1);
    }

    #[test]
    fn edge_counts_are_valid() {
        pipeline(0, 0, 0);
        pipeline(5, 0, 0);
        pipeline(1, 1, 0);
        // A full /22 less its gateway: explicit and assigned addresses meet.
        pipeline(HOSTS_PER_NETWORK, 1, 0);
    }

    #[test]
    fn output_is_deterministic() {
        assert_eq!(host_kdl(50, 5, 3), host_kdl(50, 5, 3));
    }
}
