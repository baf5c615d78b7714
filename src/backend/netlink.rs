//! Links and addresses through rtnetlink: what bridges and tunnels exist
//! and which addresses they hold (for health checks, drift and status),
//! and deleting a link whose `.netdev` changed, since networkd never
//! changes an existing netdev.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::TryStreamExt as _;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{LinkAttribute, State};
use rtnetlink::Handle;

use super::SystemError;

/// One link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    pub index: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// The kernel's operational state, lower-case (`up`, `down`, `unknown`…).
    pub oper_state: String,
    /// Addresses with their prefix, as `10.42.0.1/24` and `fd42:42::1/64`.
    pub addresses: BTreeSet<String>,
}

fn netlink_error(what: impl Into<String>, e: impl std::fmt::Display) -> SystemError {
    SystemError {
        what: what.into(),
        why: e.to_string(),
    }
}

pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a netlink socket in this process's network namespace. Must be
    /// called inside a tokio runtime, which drives the connection.
    pub fn connect() -> Result<Netlink, SystemError> {
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|e| netlink_error("opening a netlink socket", e))?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// The named links that exist, with their addresses.
    pub async fn links(
        &self,
        names: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Link>, SystemError> {
        let mut by_index: BTreeMap<u32, String> = BTreeMap::new();
        let mut out: BTreeMap<String, Link> = BTreeMap::new();
        let mut links = self.handle.link().get().execute();
        while let Some(message) = links
            .try_next()
            .await
            .map_err(|e| netlink_error("listing network links", e))?
        {
            let mut name = None;
            let mut oper_state = String::from("unknown");
            for attribute in &message.attributes {
                match attribute {
                    LinkAttribute::IfName(n) => name = Some(n.clone()),
                    LinkAttribute::OperState(state) => oper_state = state_name(*state),
                    _ => {}
                }
            }
            let Some(name) = name.filter(|n| names.contains(n)) else {
                continue;
            };
            let index = message.header.index;
            by_index.insert(index, name.clone());
            out.insert(
                name,
                Link {
                    index,
                    up: message
                        .header
                        .flags
                        .contains(netlink_packet_route::link::LinkFlags::Up),
                    oper_state,
                    addresses: BTreeSet::new(),
                },
            );
        }
        if out.is_empty() {
            return Ok(out);
        }
        let mut addresses = self.handle.address().get().execute();
        while let Some(message) = addresses
            .try_next()
            .await
            .map_err(|e| netlink_error("listing addresses", e))?
        {
            let Some(name) = by_index.get(&message.header.index) else {
                continue;
            };
            // IFA_LOCAL is the interface's own IPv4 address (IFA_ADDRESS is
            // the peer on point-to-point links); IPv6 has only IFA_ADDRESS.
            let mut local = None;
            let mut address = None;
            for attribute in &message.attributes {
                match attribute {
                    AddressAttribute::Local(a) => local = Some(*a),
                    AddressAttribute::Address(a) => address = Some(*a),
                    _ => {}
                }
            }
            if let (Some(addr), Some(link)) = (local.or(address), out.get_mut(name)) {
                link.addresses
                    .insert(format!("{addr}/{}", message.header.prefix_len));
            }
        }
        Ok(out)
    }

    pub async fn delete(&self, name: &str, index: u32) -> Result<(), SystemError> {
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(|e| netlink_error(format!("deleting link {name}"), e))
    }
}

fn state_name(state: State) -> String {
    match state {
        State::Up => "up",
        State::Down => "down",
        State::LowerLayerDown => "lower-layer-down",
        State::Dormant => "dormant",
        State::NotPresent => "not-present",
        State::Testing => "testing",
        _ => "unknown",
    }
    .to_string()
}
