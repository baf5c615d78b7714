//! Host-side networking for systemd-networkd: a bridge per network, a
//! tunnel interface per tunnel, and the forwarding sysctls.

use super::ini::Ini;
use super::{Artifacts, Owner};
use crate::model::{Encapsulation, Host, Network, Tunnel, VxlanPeer};

pub fn bridge(network: &Network, header: &[String], out: &mut Artifacts) {
    let owner = || Owner::Network(network.name.clone());
    let base = format!("etc/systemd/network/50-ctm-{}", network.bridge);

    let mut netdev = Ini::new(header);
    netdev
        .section("NetDev")
        .set("Name", &network.bridge)
        .set("Kind", "bridge");
    out.file(format!("{base}.netdev"), owner(), netdev.render());

    let mut config = Ini::new(header);
    config.section("Match").set("Name", &network.bridge);
    // A bridge has no carrier until a container attaches; it must still
    // get its addresses, and must not hold up network-online.target.
    config.section("Link").set("RequiredForOnline", "no");
    config
        .section("Network")
        .set("ConfigureWithoutCarrier", "yes");
    if let Some(v4) = network.ipv4 {
        config.set("Address", v4.address);
    }
    if let Some(v6) = network.ipv6 {
        config.set("IPv6SendRA", "yes");
        // Without carrier (no container attached yet) duplicate address
        // detection never finishes: the address would stay tentative and
        // networkd would report the bridge as configuring for ever. ctm
        // owns the subnet and validation keeps containers off the gateway
        // address, so there is nothing to detect.
        config
            .section("Address")
            .set("Address", v6.address)
            .set("DuplicateAddressDetection", "none");
        config
            .section("IPv6Prefix")
            .set("Prefix", v6.address.trunc());
    }
    out.file(format!("{base}.network"), owner(), config.render());
}

pub fn tunnel(tunnel: &Tunnel, header: &[String], out: &mut Artifacts) {
    let owner = || Owner::Tunnel(tunnel.name.clone());
    let base = format!("etc/systemd/network/50-ctm-{}", tunnel.name);

    let mut netdev = Ini::new(header);
    netdev
        .section("NetDev")
        .set("Name", &tunnel.name)
        .set("Kind", tunnel.kind());
    if let Some(mtu) = mtu_bytes(tunnel) {
        netdev.set("MTUBytes", mtu);
    }
    match &tunnel.encapsulation {
        Encapsulation::Gre { remote } => {
            // Independent: ctm does not own the uplink's .network file, so
            // the tunnel cannot be attached there with Tunnel=.
            netdev
                .section("Tunnel")
                .set("Local", tunnel.local)
                .set("Remote", remote)
                .set("Independent", "yes");
        }
        Encapsulation::Vxlan {
            id,
            peer,
            port,
            device,
        } => {
            netdev
                .section("VXLAN")
                .set("VNI", id)
                .set("Local", tunnel.local);
            match peer {
                VxlanPeer::Remote(address) => netdev.set("Remote", address),
                VxlanPeer::Group(address) => netdev.set("Group", address),
            };
            // Always written: unset, the kernel uses Linux's old 8472,
            // which no other VXLAN implementation speaks by default.
            netdev.set("DestinationPort", port);
            // With a device, networkd creates the tunnel on it when the
            // device's own .network names it (`VXLAN=`); without one, the
            // tunnel stands alone and the routes to `Remote` carry it.
            if device.is_none() {
                netdev.set("Independent", "yes");
            }
        }
    }
    out.file(format!("{base}.netdev"), owner(), netdev.render());

    let mut config = Ini::new(header);
    config.section("Match").set("Name", &tunnel.name);
    config.section("Network");
    for address in &tunnel.addresses {
        config.set("Address", address);
    }
    out.file(format!("{base}.network"), owner(), config.render());
}

/// The MTU written into the `.netdev`. VXLAN always gets one: without a
/// device the kernel gives it 1500, more than any 1500-byte underlay
/// carries once 50 bytes of headers are added. GRE keeps the kernel's own
/// (the same as derived for a 1500-byte underlay) unless the host file
/// sets `mtu` or `underlay-mtu`.
fn mtu_bytes(tunnel: &Tunnel) -> Option<crate::model::Mtu> {
    let derived = tunnel.derived_mtu();
    match &tunnel.encapsulation {
        Encapsulation::Vxlan { .. } => tunnel.mtu.or(derived),
        Encapsulation::Gre { .. } if tunnel.underlay_mtu.is_some() => tunnel.mtu.or(derived),
        Encapsulation::Gre { .. } => tunnel.mtu,
    }
}

const NETWORK_TARGET: &str = include_str!("../../templates/ctm-network.target");

/// Bridges and tunnels exist only while systemd-networkd runs, which
/// Debian does not enable. A target of ctm's own wants it at boot, so
/// that ctm never creates or removes the service's own enablement link,
/// which the administrator may have made (or may remove) themselves.
pub fn network_target(host: &Host, header: &[String], out: &mut Artifacts) {
    if host.networks.is_empty() && host.tunnels.is_empty() {
        return;
    }
    let mut unit = String::new();
    for line in header {
        unit.push_str(&format!("# {}\n", super::ini::escape_controls(line)));
    }
    unit.push_str(NETWORK_TARGET);
    out.file(
        "etc/systemd/system/ctm-network.target".into(),
        Owner::Host,
        unit,
    );
    out.symlink(
        "etc/systemd/system/multi-user.target.wants/ctm-network.target".into(),
        Owner::Host,
        "/etc/systemd/system/ctm-network.target",
    );
}

/// inotify instances root may hold: every container's systemd takes
/// several, all charged to root, which created their user namespaces; the
/// kernel's default of 128 lets about 16 containers boot (seen in the
/// lab: the 17th systemd fails with "Too many open files").
pub const INOTIFY_INSTANCES: u32 = 8192;

/// Routing between bridges, tunnels and the uplink needs forwarding on.
/// IPv6 forwarding makes the kernel ignore router advertisements, so the
/// uplink is told to keep accepting them (accept_ra=2): otherwise a host
/// that gets its own IPv6 route by SLAAC would lose it.
pub fn sysctl(host: &Host, header: &[String], out: &mut Artifacts) {
    let routes = !host.networks.is_empty() || !host.tunnels.is_empty();
    if !routes && host.containers.is_empty() {
        return;
    }
    let mut text = String::new();
    for line in header {
        text.push_str(&format!("# {}\n", super::ini::escape_controls(line)));
    }
    if !host.containers.is_empty() {
        text.push_str(&format!(
            "fs.inotify.max_user_instances = {INOTIFY_INSTANCES}\n"
        ));
    }
    if !routes {
        out.file("etc/sysctl.d/50-ctm.conf".into(), Owner::Host, text);
        return;
    }
    text.push_str("net.ipv4.ip_forward = 1\n");
    text.push_str("net.ipv6.conf.all.forwarding = 1\n");
    if let Some(uplink) = &host.uplink {
        // sysctl.d reads dots as separators; a name with dots (a VLAN such
        // as eth0.10) must be written with slashes instead.
        if uplink.as_str().contains('.') {
            text.push_str(&format!("net/ipv6/conf/{uplink}/accept_ra = 2\n"));
        } else {
            text.push_str(&format!("net.ipv6.conf.{uplink}.accept_ra = 2\n"));
        }
    }
    out.file("etc/sysctl.d/50-ctm.conf".into(), Owner::Host, text);
}
