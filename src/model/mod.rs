//! The validated host: what `validate` produces and `compile` consumes.
//!
//! Unlike the syntax tree, every value here has its final type and every
//! reference has been resolved: templates are merged into containers,
//! addresses are assigned, names are unique. Maps are sorted so that
//! everything derived from a model is deterministic.

pub mod fleet;
pub mod types;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;

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
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Image {
    pub name: Name,
    pub source: ImageSource,
    pub packages: Vec<PackageName>,
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
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Network {
    pub name: Name,
    pub bridge: IfName,
    pub ipv4: Option<Subnet<Ipv4Net>>,
    pub ipv6: Option<Subnet<Ipv6Net>>,
    /// The containers' name servers, in order.
    pub dns: Vec<IpAddr>,
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
    pub network: Option<Attachment>,
    pub forwards: Vec<Forward>,
    pub binds: Vec<Bind>,
    pub limits: Limits,
    pub ssh: Option<Ssh>,
    pub docker: bool,
    pub nested: bool,
    pub autostart: bool,
    pub packages: Vec<PackageName>,
    pub environment: BTreeMap<EnvName, EnvValue>,
    /// Run after every apply that starts or restarts the container; a
    /// failure rolls the apply back.
    pub checks: Vec<HealthCheck>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Forward {
    pub protocol: Protocol,
    pub host: Port,
    pub container: Port,
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
    pub local: IpAddr,
    pub remote: IpAddr,
    pub addresses: Vec<IpNet>,
}
