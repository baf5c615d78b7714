//! Port forwards from the host's own loopback addresses.
//!
//! nftables cannot send `127.0.0.1` or `::1` to a container: the kernel
//! never routes a loopback source off `lo` (IPv4 only with
//! `route_localnet`, which opens every interface to martian packets;
//! IPv6 has no such switch at all, systemd#6106). So each TCP forward gets
//! a socket unit listening on `127.0.0.1:PORT` and `[::1]:PORT`, whose
//! connections systemd's own `systemd-socket-proxyd` relays to the
//! container: the same port on every address of the host, over both
//! families. `systemd-socket-proxyd` relays streams only: UDP forwards
//! stay off loopback.

use super::ini::Ini;
use super::{Artifacts, Owner};
use crate::layout::{self, SOCKET_PROXYD, UNIT_DIR};
use crate::model::Host;

/// Writes the units of every forward with `loopback` (every `tcp` one
/// unless it says `loopback=#false`) and returns the socket units that
/// must be active.
pub fn forwards(host: &Host, header: &[String], out: &mut Artifacts) -> Vec<String> {
    let mut sockets = Vec::new();
    for container in host.containers.values() {
        let Some(attach) = &container.network else {
            continue;
        };
        // One backend per forward: the proxy connects to one address, IPv4
        // where the container has one.
        let backend = match (attach.ipv4, attach.ipv6) {
            (Some(v4), _) => v4.to_string(),
            (None, Some(v6)) => format!("[{v6}]"),
            (None, None) => continue,
        };
        for f in container.forwards.iter().filter(|f| f.loopback) {
            let socket = layout::loopback_socket(f.protocol.as_str(), f.host.get());
            let service = layout::loopback_service(&socket);
            let description = format!(
                "ctm: host port {} on loopback to container {}",
                f.host, container.name
            );

            let mut unit = Ini::new(header);
            unit.section("Unit").set("Description", &description);
            unit.section("Socket")
                .set("ListenStream", format!("127.0.0.1:{}", f.host))
                .set("ListenStream", format!("[::1]:{}", f.host))
                .set("Service", &service);
            unit.section("Install").set("WantedBy", "sockets.target");
            out.file(
                format!("{UNIT_DIR}/{socket}"),
                Owner::Firewall,
                unit.render(),
            );
            out.symlink(
                format!("{UNIT_DIR}/sockets.target.wants/{socket}"),
                Owner::Firewall,
                &format!("/{UNIT_DIR}/{socket}"),
            );

            let mut unit = Ini::new(header);
            unit.section("Unit")
                .set("Description", &description)
                .set("Requires", &socket)
                .set("After", &socket);
            unit.section("Service")
                .set(
                    "ExecStart",
                    format!("{SOCKET_PROXYD} {backend}:{}", f.container),
                )
                // A relay of bytes needs no privilege and no files.
                .set("DynamicUser", "yes")
                .set("PrivateTmp", "yes")
                .set("ProtectSystem", "strict")
                .set("ProtectHome", "yes")
                .set("NoNewPrivileges", "yes");
            out.file(
                format!("{UNIT_DIR}/{service}"),
                Owner::Firewall,
                unit.render(),
            );
            sockets.push(socket);
        }
    }
    sockets.sort();
    sockets
}
