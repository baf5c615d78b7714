//! The validated host: what `validate` produces and `compile` consumes.
//!
//! Unlike the syntax tree, every value here has its final type and every
//! reference has been resolved: templates are merged into containers,
//! addresses are assigned, names are unique. Maps are sorted so that
//! everything derived from a model is deterministic.

pub mod calendar;
pub mod fleet;
pub mod oci;
pub mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;

pub use calendar::Calendar;
pub use types::*;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Host {
    /// The host's name, used in the header of generated files.
    pub name: Option<Name>,
    pub uplink: Option<IfName>,
    pub images: BTreeMap<Name, Image>,
    pub networks: BTreeMap<Name, Network>,
    pub containers: BTreeMap<Name, Container>,
    pub tunnels: BTreeMap<IfName, Tunnel>,
    /// Directories for containers' data that ctm makes and keeps.
    pub volumes: BTreeMap<Name, Volume>,
    /// Point-to-point links between two containers, in the order of their
    /// first end's container and interface.
    pub links: Vec<Link>,
    /// Groups of networks, containers and links brought down and up as
    /// one (`ctm down NAME`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub topologies: BTreeMap<Name, Topology>,
}

/// A `topology`: members named by reference, each in at most one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Topology {
    pub name: Name,
    pub networks: BTreeSet<Name>,
    pub containers: BTreeSet<Name>,
    /// Links by their ends' containers, the lesser name first: every
    /// link between the two is a member.
    pub links: BTreeSet<(Name, Name)>,
    /// Whether it is down. Never read from the host file (which is in
    /// git and says what exists): put here by the engine from the
    /// current generation's record of `ctm down` before compiling
    /// (`Host::set_down`), so that compiling reads no state.
    pub down: bool,
}

impl Topology {
    /// A link's key in [`Topology::links`]: its ends, the lesser first.
    pub fn link_key(a: &Name, b: &Name) -> (Name, Name) {
        if a <= b {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        }
    }
}

impl Host {
    /// Marks the topologies named in `down` down and every other up;
    /// names the host file does not define are ignored (a topology
    /// removed from the file is gone, its state with it).
    pub fn set_down(&mut self, down: &BTreeSet<Name>) {
        for (name, topology) in &mut self.topologies {
            topology.down = down.contains(name);
        }
    }

    /// The down topologies, by name.
    pub fn down(&self) -> BTreeSet<Name> {
        self.topologies
            .values()
            .filter(|t| t.down)
            .map(|t| t.name.clone())
            .collect()
    }

    /// The down topology `container` belongs to, if any: it is stopped
    /// and not started at boot.
    pub fn container_down(&self, container: &Name) -> Option<&Name> {
        self.topologies
            .values()
            .find(|t| t.down && t.containers.contains(container))
            .map(|t| &t.name)
    }

    /// Whether `network` belongs to a down topology: its bridge is not
    /// made.
    pub fn network_down(&self, network: &Name) -> bool {
        self.topologies
            .values()
            .any(|t| t.down && t.networks.contains(network))
    }

    /// Whether `link` belongs to a down topology: its unit is left out,
    /// so it is not made. (A link with an end in a down container needs
    /// nothing: it is made only while both run, and its unit stays so
    /// that the other end is not restarted for it.)
    pub fn link_down(&self, link: &Link) -> bool {
        let [a, b] = &link.ends;
        let key = Topology::link_key(&a.container, &b.container);
        self.topologies
            .values()
            .any(|t| t.down && t.links.contains(&key))
    }
}

/// A point-to-point link: a veth pair with one end in each container.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    pub ends: [LinkEnd; 2],
}

/// One end of a [`Link`]: the container, the interface's name inside it,
/// and its addresses (with the prefix they share with the other end).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkEnd {
    pub container: Name,
    pub interface: IfName,
    pub addresses: Vec<IpNet>,
}

/// A static route in a container, through a gateway on one of its links or
/// on its network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Route {
    pub destination: IpNet,
    pub via: IpAddr,
}

impl Host {
    /// The ends of links inside `container`, each with the link's other end.
    pub fn link_ends<'h>(
        &'h self,
        container: &'h Name,
    ) -> impl Iterator<Item = (&'h LinkEnd, &'h LinkEnd)> + 'h {
        self.links.iter().filter_map(move |link| {
            let [a, b] = &link.ends;
            if &a.container == container {
                Some((a, b))
            } else if &b.container == container {
                Some((b, a))
            } else {
                None
            }
        })
    }
}

impl Host {
    /// The OCI image whose entrypoint `container` runs (an application
    /// container), or `None` if the container boots its image's init.
    pub fn application(&self, container: &Container) -> Option<&Image> {
        self.images
            .get(&container.image)
            .filter(|image| image.is_oci() && !container.boot)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Volume {
    pub name: Name,
    pub quota: Option<Quota>,
    /// Backed up alone on a schedule by a timer ctm owns
    /// (`ctm-volume-backup-NAME.timer`).
    pub backup: Option<BackupSchedule>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Image {
    pub name: Name,
    pub source: ImageSource,
    pub packages: Vec<PackageName>,
    /// What an OCI image runs, from its verified config blob: never
    /// read from the host file, but put here by the engine before
    /// compiling (`engine::images::resolve`) for an image that
    /// application containers run, so that compiling reads no disk.
    pub config: Option<oci::ImageConfig>,
}

impl Image {
    /// An image from a registry or an OCI archive: it says what it runs.
    pub fn is_oci(&self) -> bool {
        matches!(
            self.source,
            ImageSource::Oci { .. } | ImageSource::OciArchive { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum ImageSource {
    Debootstrap {
        suite: Word,
        mirror: Option<MirrorUrl>,
        variant: Option<Word>,
    },
    Directory {
        path: AbsPath,
    },
    Tarball {
        path: AbsPath,
        sha256: Option<Sha256Hex>,
    },
    /// Pulled from a registry. `reference` carries the digest when the
    /// host file pins one (or its lock file recorded what the tag
    /// resolved to); without one the tag is resolved when planning.
    Oci {
        reference: oci::OciReference,
        /// A Docker-style `config.json` with the registry's password.
        credentials: Option<AbsPath>,
        /// Plain HTTP to a registry that is not on loopback.
        insecure: bool,
    },
    /// An OCI image layout in a tar file (`skopeo copy oci-archive:`,
    /// `docker save` since Docker 25).
    #[serde(rename = "oci-archive")]
    OciArchive {
        path: AbsPath,
    },
    /// Built from another image of the host file, step by step.
    Build {
        from: Name,
        /// The `run` steps reach the host's network.
        network: bool,
        steps: Vec<BuildStep>,
    },
}

/// One step of an image build, in the order the host file gives them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum BuildStep {
    /// `/bin/sh -c COMMAND` in a container of the image so far.
    Run { command: String },
    /// A file or directory beside the host file, copied to `destination`.
    Copy {
        source: RelPath,
        destination: AbsPath,
        /// `source` on the host: the host file's directory joined to it.
        /// Never read from the host file, but put here by the engine once
        /// it found the source there (`engine::load`), so that compiling
        /// reads no disk.
        host_path: Option<String>,
    },
    /// An environment variable for the `run` steps after it.
    Env { name: EnvName, value: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Network {
    pub name: Name,
    pub bridge: IfName,
    pub ipv4: Option<Subnet<Ipv4Net>>,
    pub ipv6: Option<Subnet<Ipv6Net>>,
    /// The containers' name servers, in order.
    pub dns: Vec<IpAddr>,
    /// Where traffic from the network may go, and what may come in.
    pub egress: Egress,
}

/// A network's place in the host's forwarding (`egress`). Whatever the
/// policy, containers on one network reach each other (bridged, not
/// routed) and the host, answers to their connections come back, and port
/// forwards reach them; traffic between two networks is dropped unless a
/// container's `allow` rule lets it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Egress {
    /// Out to anything but another network, masqueraded through the
    /// uplink (the families whose subnet has `nat`); nothing comes in
    /// unasked.
    Nat,
    /// Out to anything but another network, with the containers' own
    /// addresses; in from anything but another network.
    Routed,
    /// Nothing leaves the bridge and nothing is routed onto it.
    Isolated,
}

impl Egress {
    pub fn parse(s: &str) -> Result<Egress, String> {
        match s {
            "nat" => Ok(Egress::Nat),
            "routed" => Ok(Egress::Routed),
            "isolated" => Ok(Egress::Isolated),
            _ => Err(format!(
                "`{s}` is not an egress policy; use `nat`, `routed` or `isolated`"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Egress::Nat => "nat",
            Egress::Routed => "routed",
            Egress::Isolated => "isolated",
        }
    }
}

/// A bridge's address within its subnet (`10.42.0.1/24`): the address is
/// the containers' gateway, the network is where their addresses come from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Subnet<N> {
    pub address: N,
    pub nat: bool,
}

impl Subnet<Ipv4Net> {
    pub fn gateway(&self) -> Ipv4Addr {
        self.address.addr()
    }
}

impl Subnet<Ipv6Net> {
    pub fn gateway(&self) -> Ipv6Addr {
        self.address.addr()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Container {
    pub name: Name,
    pub image: Name,
    /// Its first network, on `host0`.
    pub network: Option<Attachment>,
    /// The networks after the first (`network` given again), in the order
    /// written, each on a veth pair of its own.
    pub more_networks: Vec<ExtraAttachment>,
    pub forwards: Vec<Forward>,
    pub binds: Vec<Bind>,
    pub volumes: Vec<VolumeMount>,
    pub limits: Limits,
    pub ssh: Option<Ssh>,
    pub docker: bool,
    pub nested: bool,
    /// Boot the image's init (`Boot=yes`) even though the image is an
    /// OCI image, which otherwise runs its entrypoint.
    pub boot: bool,
    pub autostart: bool,
    /// How its root file system is made from the image.
    pub root: RootMode,
    pub packages: Vec<PackageName>,
    pub environment: BTreeMap<EnvName, EnvValue>,
    /// Run after every apply that starts or restarts the container; a
    /// failure rolls the apply back.
    pub checks: Vec<HealthCheck>,
    /// What may reach the container from other networks and the outside,
    /// in order: the first rule that matches a packet decides.
    pub rules: Vec<FirewallRule>,
    /// Static routes, each through a gateway on one of the container's
    /// links or on its network.
    pub routes: Vec<Route>,
    /// Backed up on a schedule by a timer ctm owns.
    pub backup: Option<BackupSchedule>,
}

/// A container's `backup` block: `ctm backup NAME --to DIR [--keep N]`,
/// run by `ctm-backup-NAME.timer`; or a volume's, `ctm backup --volume
/// NAME …`, run by `ctm-volume-backup-NAME.timer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupSchedule {
    pub to: AbsPath,
    pub every: Calendar,
    /// How many archives to keep; `None`: every one.
    pub keep: Option<std::num::NonZeroU32>,
}

/// `allow` or `deny`: routed traffic to a container, matched by protocol,
/// port and the network it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirewallRule {
    pub verdict: Verdict,
    pub traffic: Traffic,
    /// The network the traffic comes from; `None`: from anywhere.
    pub from: Option<Name>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
}

/// What a rule matches: a port only ever with its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "match")]
pub enum Traffic {
    All,
    Protocol { protocol: Protocol },
    Port { protocol: Protocol, port: Port },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub probe: Probe,
    pub timeout: CheckTimeout,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    /// A TCP connection from the host to this port on each of the
    /// container's addresses succeeds.
    Tcp(Port),
    /// This command, run inside the container, exits 0.
    Command(CommandLine),
}

/// A container's place on a network, with its final addresses: one of each
/// family the network has, given in the host file or assigned by ctm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attachment {
    pub network: Name,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

/// A network after a container's first: nspawn makes a veth pair for it
/// (`VirtualEthernetExtra=`), and networkd puts the host's end on the
/// network's bridge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtraAttachment {
    pub attachment: Attachment,
    /// Its name inside the container (`interface=`, or the network's name).
    pub interface: IfName,
    /// The host's end of the pair: unique on the host, derived from the
    /// container's name and the attachment's place (`host_interface`).
    pub host_interface: IfName,
}

impl Container {
    /// Every network the container is on, the first one first, each with
    /// the interface it has there (`host0` for the first).
    pub fn attachments(&self) -> impl Iterator<Item = &Attachment> {
        self.network
            .iter()
            .chain(self.more_networks.iter().map(|m| &m.attachment))
    }
}

/// The host's end of a container's `index`th extra network (1 for the
/// second network it is on): `vn-CONTAINER-INDEX` when that fits in an
/// interface name, else `vn` and 13 hex digits of a hash of both. The
/// forms cannot meet: only the short one has a `-` after `vn`, and the
/// index after the last `-` makes the short one unique. Not `ve-` or
/// `vb-`: systemd's own `80-container-ve.network` would match those.
pub fn host_interface(container: &Name, index: usize) -> IfName {
    let short = format!("vn-{container}-{index}");
    if let Ok(name) = IfName::parse(&short) {
        return name;
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{container}\n{index}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    IfName::parse(&format!("vn{}", &hex[..13])).expect("vn and 13 hex digits are an interface name")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Forward {
    pub protocol: Protocol,
    pub host: Port,
    pub container: Port,
    /// Connections to the host's loopback addresses go to the container
    /// too (`tcp` only).
    pub loopback: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bind {
    pub source: AbsPath,
    pub target: AbsPath,
    pub read_only: bool,
    /// An ID-mapped mount: the user-namespaced container sees the
    /// source's files with their host owners.
    pub idmap: bool,
}

/// A volume mounted into a container (`volume "data" "/var/lib/db"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeMount {
    pub volume: Name,
    pub target: AbsPath,
    pub read_only: bool,
    /// As [`Bind::idmap`].
    pub idmap: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Limits {
    pub memory: Option<ByteSize>,
    pub cpu_quota: Option<CpuQuota>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.cpu_quota.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ssh {
    pub user: UserName,
    pub authorized_keys: Vec<SshKey>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tunnel {
    pub name: IfName,
    /// This host's endpoint; its family is the underlay's.
    pub local: IpAddr,
    pub encapsulation: Encapsulation,
    /// The MTU the host file sets (`mtu`), checked against the underlay.
    pub mtu: Option<Mtu>,
    /// What the underlay carries (`underlay-mtu`), when the host file says.
    pub underlay_mtu: Option<Mtu>,
    pub addresses: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Encapsulation {
    /// GRE (`gre` over IPv4, `ip6gre` over IPv6), point to point.
    Gre { remote: IpAddr },
    /// VXLAN: Ethernet in UDP, to one peer or a multicast group.
    Vxlan {
        id: Vni,
        peer: VxlanPeer,
        /// The UDP port, the IANA's 4789 unless set.
        port: Port,
        /// The underlay interface; networkd attaches the tunnel to it.
        device: Option<IfName>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VxlanPeer {
    Remote(IpAddr),
    /// A multicast group every member of the VXLAN joins.
    Group(IpAddr),
}

impl VxlanPeer {
    pub fn address(self) -> IpAddr {
        match self {
            VxlanPeer::Remote(a) | VxlanPeer::Group(a) => a,
        }
    }
}

/// The IANA's port for VXLAN (the kernel's own default is Linux's older
/// 8472, so ctm always says which).
pub const VXLAN_PORT: u16 = 4789;

impl Tunnel {
    /// The kind of link, as networkd's `Kind=` and the kernel name it.
    pub fn kind(&self) -> &'static str {
        match (&self.encapsulation, self.local.is_ipv4()) {
            (Encapsulation::Gre { .. }, true) => "gre",
            (Encapsulation::Gre { .. }, false) => "ip6gre",
            (Encapsulation::Vxlan { .. }, _) => "vxlan",
        }
    }

    /// The address packets are sent to: the peer, or the group.
    pub fn remote(&self) -> IpAddr {
        match &self.encapsulation {
            Encapsulation::Gre { remote } => *remote,
            Encapsulation::Vxlan { peer, .. } => peer.address(),
        }
    }

    /// The bytes each packet gains: for GRE the outer IP header and the
    /// GRE header (IPv6: with the encapsulation limit option, as the
    /// kernel sends it); for VXLAN the outer IP, UDP and VXLAN headers and
    /// the inner Ethernet header.
    pub fn overhead(&self) -> u16 {
        match (&self.encapsulation, self.local.is_ipv4()) {
            (Encapsulation::Gre { .. }, true) => 20 + 4,
            (Encapsulation::Gre { .. }, false) => 40 + 4 + 8,
            (Encapsulation::Vxlan { .. }, true) => 20 + 8 + 8 + 14,
            (Encapsulation::Vxlan { .. }, false) => 40 + 8 + 8 + 14,
        }
    }

    /// The largest MTU the underlay carries without fragments: its MTU
    /// (1500 unless the host file says) less the overhead. `None` when the
    /// underlay is too small to carry anything.
    pub fn derived_mtu(&self) -> Option<Mtu> {
        self.underlay_mtu
            .unwrap_or(Mtu::ETHERNET)
            .minus(self.overhead())
    }
}
