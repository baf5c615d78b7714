//! Per-container files: the `.nspawn` settings, the service drop-in with
//! resource limits, the autostart link, and the container-side network
//! configuration for `host0`.

use super::ini::Ini;
use super::{Artifacts, Owner};
use crate::layout;
use crate::model::{AbsPath, Attachment, Bind, Container, Host, IfName, LinkEnd, Network, Route};

/// Sorts before systemd's own `80-container-host0.network` (DHCP), which
/// would otherwise win: networkd uses the first matching file by name.
pub const HOST0_NETWORK: &str = "10-ctm-host0.network";

pub fn host0_source(container: &Container) -> String {
    format!("etc/ctm/machines/{}/{HOST0_NETWORK}", container.name)
}

/// The container-side network file of a link's end, by interface.
fn link_network(interface: &IfName) -> String {
    format!("10-ctm-link-{interface}.network")
}

/// The file bound over the container's `/etc/hostname`: its name.
pub fn hostname_source(container: &Container) -> String {
    format!("etc/ctm/machines/{}/hostname", container.name)
}

/// One word of a list setting (`Parameters=`, `Environment=`), as
/// nspawn splits them: on white space, with `'…'` and `"…"` quoting and
/// backslashes taken as they are (`EXTRACT_UNQUOTE|EXTRACT_RETAIN_ESCAPE`).
/// A word with white space, a quote or a backslash is single-quoted, a
/// `'` in it written as `"'"`; the word has no control character (the
/// image's config was refused with one).
pub fn quote_word(word: &str) -> std::borrow::Cow<'_, str> {
    let plain = !word.is_empty()
        && !word
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '\'' | '"' | '\\'));
    if plain {
        return word.into();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\"'\"'");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out.into()
}

pub fn container(host: &Host, container: &Container, header: &[String], out: &mut Artifacts) {
    let owner = || Owner::Container(container.name.clone());
    let name = &container.name;

    let mut nspawn = Ini::new(header);
    let application = host.application(container);
    nspawn
        .section("Exec")
        .set("Boot", if application.is_some() { "no" } else { "yes" })
        .set("Hostname", name);
    // An OCI image runs its command as systemd's own OCI support runs
    // it: no init, the command under nspawn's stub init (`ProcessTwo=`),
    // which reaps what the command leaves and passes signals on. The
    // engine put the image's config in the model before compiling.
    let config = application.and_then(|image| image.config.as_ref());
    if application.is_some() {
        nspawn.set("ProcessTwo", "yes");
    }
    if let Some(config) = config {
        let words: Vec<_> = config.command.iter().map(|w| quote_word(w)).collect();
        nspawn.set("Parameters", words.join(" "));
        if let Some(dir) = &config.working_directory {
            nspawn.set("WorkingDirectory", dir);
        }
        if let Some(user) = &config.user {
            nspawn.set("User", user);
        }
        // The image's variables, but those the host file sets itself.
        for (key, value) in &config.environment {
            let own = container.environment.keys().any(|k| k.as_str() == key);
            if !own {
                nspawn.set("Environment", quote_word(&format!("{key}={value}")));
            }
        }
    }
    if container.nested {
        // An inner nspawn needs real root: a user-namespaced container
        // cannot create device nodes or mount proc/sysfs for a nested one
        // (see docs/nspawn-settings.md).
        nspawn.set("PrivateUsers", "no");
    }
    if container.docker {
        // runc uses the kernel keyring and loads a cgroup device eBPF
        // program; nspawn's default seccomp filter blocks all three.
        // Nothing more: Docker runs in the user-namespaced container.
        nspawn.set("SystemCallFilter", "add_key keyctl bpf");
    }
    let dns = container
        .network
        .as_ref()
        .and_then(|a| host.networks.get(&a.network))
        .is_some_and(|n| !n.dns.is_empty());
    if dns {
        // ctm writes the container's /etc/resolv.conf (a provisioning
        // step); nspawn must not replace it at each boot.
        nspawn.set("ResolvConf", "off");
    }
    for (key, value) in &container.environment {
        nspawn.set(
            "Environment",
            format!("{}={}", key.as_str(), value.as_str()),
        );
    }

    nspawn.section("Files");
    // A volume is a bind of the directory ctm keeps for it.
    let volumes = container.volumes.iter().map(|m| Bind {
        source: AbsPath::parse(&layout::volume_path(m.volume.as_str()))
            .expect("a volume's path is absolute and made of a valid name"),
        target: m.target.clone(),
        read_only: m.read_only,
        idmap: m.idmap,
    });
    for bind in container.binds.iter().cloned().chain(volumes) {
        let key = if bind.read_only {
            "BindReadOnly"
        } else {
            "Bind"
        };
        if bind.idmap {
            // Without it, the user-namespaced container sees host
            // root's files as nobody's and cannot write to them.
            nspawn.set(key, format!("{}:{}:idmap", bind.source, bind.target));
        } else if bind.source == bind.target {
            nspawn.set(key, bind.source.as_str());
        } else {
            nspawn.set(key, format!("{}:{}", bind.source, bind.target));
        }
    }
    // `Hostname=` names the kernel's host name at start, but the
    // container's systemd sets it again from /etc/hostname at boot,
    // and debootstrap copies the building host's /etc/hostname into
    // the image: the container would be called after the machine that
    // built its image. Its own name, bound read-only, wins.
    nspawn.set(
        "BindReadOnly",
        format!("/{}:/etc/hostname", hostname_source(container)),
    );
    if let Some(attach) = &container.network {
        nspawn.set(
            "BindReadOnly",
            format!(
                "/{}:/etc/systemd/network/{HOST0_NETWORK}",
                host0_source(container)
            ),
        );
        // The network's hosts file, as a directory so that an apply's new
        // file shows (names.rs).
        nspawn.set(
            "BindReadOnly",
            format!(
                "/{}:{}",
                layout::network_dir(attach.network.as_str()),
                layout::NETWORK_DIR_INSIDE
            ),
        );
    }

    for extra in &container.more_networks {
        let file = extra_network(&extra.interface);
        nspawn.set(
            "BindReadOnly",
            format!("/etc/ctm/machines/{name}/{file}:/etc/systemd/network/{file}"),
        );
    }

    for (end, _) in host.link_ends(&container.name) {
        let file = link_network(&end.interface);
        nspawn.set(
            "BindReadOnly",
            format!("/etc/ctm/machines/{name}/{file}:/etc/systemd/network/{file}"),
        );
    }

    nspawn.section("Network");
    match container
        .network
        .as_ref()
        .and_then(|a| host.networks.get(&a.network))
    {
        Some(network) => {
            nspawn.set("Bridge", &network.bridge);
            // Each other network: a veth pair of its own, whose host end
            // networkd puts on the bridge (`extra_host_side`).
            for extra in &container.more_networks {
                nspawn.set(
                    "VirtualEthernetExtra",
                    format!("{}:{}", extra.host_interface, extra.interface),
                );
            }
        }
        None => {
            // No network in the host file means none: loopback only. Not
            // the host's namespace (the container could bind host ports and
            // see every interface), nor the stock unit's unconfigured veth.
            nspawn.set("Private", "yes").set("VirtualEthernet", "no");
        }
    }
    out.file(
        format!("etc/systemd/nspawn/{name}.nspawn"),
        owner(),
        nspawn.render(),
    );

    if container.root == crate::model::RootMode::Overlay {
        out.file(
            format!(
                "{}/{}",
                layout::UNIT_DIR,
                layout::overlay_mount_unit(name.as_str())
            ),
            owner(),
            overlay_mount(name.as_str(), header),
        );
    }

    if !container.limits.is_empty() {
        let mut dropin = Ini::new(header);
        dropin.section("Service");
        if let Some(memory) = container.limits.memory {
            dropin.set("MemoryMax", memory);
        }
        if let Some(quota) = container.limits.cpu_quota {
            dropin.set("CPUQuota", format!("{}%", quota.percent()));
        }
        out.file(
            layout::unit_dropin(name.as_str(), "50-ctm-limits.conf"),
            owner(),
            dropin.render(),
        );
    }

    out.file(hostname_source(container), owner(), format!("{name}\n"));

    if container.docker {
        // Docker needs a cgroup v2 tree it can write to. nspawn gives a
        // container one only when the host's is unified *and* it finds a
        // systemd of 230 or newer in the image before boot (an image whose
        // /usr is bound in has none to find), or when this variable says so;
        // on a hybrid host only the variable does (docs/nspawn-settings.md).
        let mut dropin = Ini::new(header);
        dropin
            .section("Service")
            .set("Environment", "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1");
        out.file(
            layout::unit_dropin(name.as_str(), "50-ctm-docker.conf"),
            owner(),
            dropin.render(),
        );
    }

    // A container of a down topology is not started at boot either.
    if container.autostart && host.container_down(name).is_none() {
        out.symlink(
            layout::autostart_link(name.as_str()),
            owner(),
            layout::NSPAWN_TEMPLATE,
        );
    }

    if let (Some(attach), Some(network)) = (
        &container.network,
        container
            .network
            .as_ref()
            .and_then(|a| host.networks.get(&a.network)),
    ) {
        let mut inside = Ini::new(header);
        inside
            .section("Match")
            .set("Name", "host0")
            .set("Virtualization", "container");
        inside.section("Network");
        if let (Some(addr), Some(subnet)) = (attach.ipv4, network.ipv4) {
            inside
                .set("Address", format!("{addr}/{}", subnet.address.prefix_len()))
                .set("Gateway", subnet.gateway());
        }
        if let (Some(addr), Some(subnet)) = (attach.ipv6, network.ipv6) {
            inside
                .set("Address", format!("{addr}/{}", subnet.address.prefix_len()))
                .set("Gateway", subnet.gateway());
        }
        for server in &network.dns {
            inside.set("DNS", server);
        }
        // The addresses above are the truth; SLAAC would add others.
        inside.set("IPv6AcceptRA", "no");
        let subnets = [
            attach
                .ipv4
                .zip(network.ipv4)
                .map(|(_, s)| s.address.trunc().into()),
            attach
                .ipv6
                .zip(network.ipv6)
                .map(|(_, s)| s.address.trunc().into()),
        ];
        routes(&mut inside, container, |via| {
            subnets
                .iter()
                .flatten()
                .any(|n: &ipnet::IpNet| n.contains(&via))
        });
        out.file(host0_source(container), owner(), inside.render());
    }

    for extra in &container.more_networks {
        let Some(network) = host.networks.get(&extra.attachment.network) else {
            continue;
        };
        out.file(
            format!(
                "etc/ctm/machines/{name}/{}",
                extra_network(&extra.interface)
            ),
            owner(),
            extra_inside(
                container,
                &extra.attachment,
                &extra.interface,
                network,
                header,
            ),
        );
        extra_host_side(container, &extra.host_interface, network, header, out);
    }

    for (end, peer) in host.link_ends(&container.name) {
        out.file(
            format!("etc/ctm/machines/{name}/{}", link_network(&end.interface)),
            owner(),
            link_end(container, end, peer, header),
        );
    }
}

/// The container-side network file of a network after the first.
fn extra_network(interface: &IfName) -> String {
    format!("10-ctm-net-{interface}.network")
}

/// A network after the container's first, inside it: its addresses and
/// the routes through gateways on it, but no default route (the first
/// network has it) and no name servers (the first network's are used).
fn extra_inside(
    container: &Container,
    attach: &Attachment,
    interface: &IfName,
    network: &Network,
    header: &[String],
) -> String {
    let mut inside = Ini::new(header);
    inside
        .section("Match")
        .set("Name", interface)
        .set("Virtualization", "container");
    inside
        .section("Network")
        .set("Description", format!("ctm: network {}", network.name));
    let mut subnets: Vec<ipnet::IpNet> = Vec::new();
    if let (Some(addr), Some(subnet)) = (attach.ipv4, network.ipv4) {
        inside.set("Address", format!("{addr}/{}", subnet.address.prefix_len()));
        subnets.push(subnet.address.trunc().into());
    }
    if let (Some(addr), Some(subnet)) = (attach.ipv6, network.ipv6) {
        inside.set("Address", format!("{addr}/{}", subnet.address.prefix_len()));
        subnets.push(subnet.address.trunc().into());
    }
    inside.set("IPv6AcceptRA", "no");
    routes(&mut inside, container, |via| {
        subnets.iter().any(|n| n.contains(&via))
    });
    inside.render()
}

/// The host's end of a network after the container's first, on the
/// network's bridge. Owned by the network, so that a change reloads
/// networkd; the `.nspawn` naming the pair restarts the container.
fn extra_host_side(
    container: &Container,
    host_interface: &IfName,
    network: &Network,
    header: &[String],
    out: &mut Artifacts,
) {
    let mut config = Ini::new(header);
    config.section("Match").set("Name", host_interface);
    // Only while the container runs: the host must not wait for it.
    config.section("Link").set("RequiredForOnline", "no");
    config
        .section("Network")
        .set(
            "Description",
            format!(
                "ctm: container {} on network {}",
                container.name, network.name
            ),
        )
        .set("Bridge", &network.bridge);
    out.file(
        format!("etc/systemd/network/50-ctm-{host_interface}.network"),
        Owner::Network(network.name.clone()),
        config.render(),
    );
}

/// The network file of a link's end inside its container: its addresses,
/// and the routes through the other end.
fn link_end(container: &Container, end: &LinkEnd, peer: &LinkEnd, header: &[String]) -> String {
    let mut inside = Ini::new(header);
    inside
        .section("Match")
        .set("Name", &end.interface)
        .set("Virtualization", "container");
    // The link exists only while the other end runs: networkd must not
    // wait for it before the container is online.
    inside.section("Link").set("RequiredForOnline", "no");
    inside
        .section("Network")
        .set("Description", format!("ctm: link to {}", peer.container));
    for address in &end.addresses {
        inside.set("Address", address);
    }
    inside.set("IPv6AcceptRA", "no");
    routes(&mut inside, container, |via| {
        end.addresses.iter().any(|n| n.trunc().contains(&via))
    });
    inside.render()
}

/// The container's routes whose gateway `here` holds, one `[Route]` each.
fn routes(ini: &mut Ini, container: &Container, here: impl Fn(std::net::IpAddr) -> bool) {
    for Route { destination, via } in container.routes.iter().filter(|r| here(r.via)) {
        ini.section("Route")
            .set("Destination", destination)
            .set("Gateway", via);
    }
}

/// The mount unit of an overlay root: the image's tree (through the link
/// `lower`, which ctm points at the image when it makes the root, so this
/// file does not change when the image is pulled again) under the
/// container's `upper`. A unit, not a mount ctm makes once, so that it is
/// there again after a reboot: `systemd-nspawn@.service` requires the
/// mounts for `/var/lib/machines/%i`, so starting the container mounts it.
/// `metacopy=on`: nspawn's user namespace chowns the tree on first boot
/// where it cannot map IDs, and a chown then copies a file's inode up,
/// not its data, which stays shared with the image.
fn overlay_mount(name: &str, header: &[String]) -> String {
    let dir = format!("/{}", layout::overlay_dir(name));
    let mut unit = Ini::new(header);
    unit.section("Unit")
        .set(
            "Description",
            format!("Root file system of container {name}: an overlay of its image"),
        )
        .set("RequiresMountsFor", &dir);
    unit.section("Mount")
        .set("What", "overlay")
        .set("Where", layout::machine_path(name))
        .set("Type", "overlay")
        .set(
            "Options",
            format!("lowerdir={dir}/lower,upperdir={dir}/upper,workdir={dir}/work,metacopy=on"),
        );
    unit.render()
}
