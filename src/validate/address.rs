//! Address rules for subnets and containers, and the allocator that gives
//! containers the lowest free address while keeping recorded ones.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// A bridge address must leave room for containers and be a host address.
pub fn check_subnet_v4(net: &Ipv4Net) -> Result<(), String> {
    if net.prefix_len() > 30 {
        return Err(format!(
            "/{} leaves no room for containers; use a prefix of /30 or shorter, e.g. /24",
            net.prefix_len()
        ));
    }
    if net.addr() == net.network() {
        return Err(format!(
            "{} is the network address of {}; the bridge needs a host address such as {}",
            net.addr(),
            net.trunc(),
            first_host_v4(net)
        ));
    }
    if net.addr() == net.broadcast() {
        return Err(format!(
            "{} is the broadcast address of {}; the bridge needs a host address",
            net.addr(),
            net.trunc()
        ));
    }
    Ok(())
}

pub fn check_subnet_v6(net: &Ipv6Net) -> Result<(), String> {
    if net.prefix_len() > 126 {
        return Err(format!(
            "/{} leaves no room for containers; use a prefix of /126 or shorter, e.g. /64",
            net.prefix_len()
        ));
    }
    if net.addr() == net.network() {
        return Err(format!(
            "{} is the subnet-router anycast address of {}; the bridge needs another address such as {}",
            net.addr(),
            net.trunc(),
            nth_v6(net, 1)
        ));
    }
    Ok(())
}

fn first_host_v4(net: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).wrapping_add(1))
}

fn nth_v6(net: &Ipv6Net, n: u128) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net.network()).wrapping_add(n))
}

/// Why a container may not have `addr` on a network with `net`.
pub fn container_v4_problem(addr: Ipv4Addr, net: &Ipv4Net) -> Option<String> {
    let subnet = net.trunc();
    if !subnet.contains(&addr) {
        Some(format!("{addr} is outside the network's subnet {subnet}"))
    } else if addr == net.addr() {
        Some(format!("{addr} is the gateway, the bridge's own address"))
    } else if addr == net.network() {
        Some(format!("{addr} is the network address of {subnet}"))
    } else if addr == net.broadcast() {
        Some(format!("{addr} is the broadcast address of {subnet}"))
    } else {
        None
    }
}

pub fn container_v6_problem(addr: Ipv6Addr, net: &Ipv6Net) -> Option<String> {
    let subnet = net.trunc();
    if !subnet.contains(&addr) {
        Some(format!("{addr} is outside the network's subnet {subnet}"))
    } else if addr == net.addr() {
        Some(format!("{addr} is the gateway, the bridge's own address"))
    } else if addr == net.network() {
        Some(format!(
            "{addr} is the subnet-router anycast address of {subnet}"
        ))
    } else {
        None
    }
}

/// Hands out the lowest addresses of a subnet not yet taken.
///
/// Candidates are walked upwards from the first host address, so assigning
/// n addresses costs O(n + taken) however large the subnet.
pub struct Allocator<A: Ord> {
    next: u128,
    last: u128,
    taken: BTreeSet<A>,
}

impl Allocator<Ipv4Addr> {
    pub fn v4(net: &Ipv4Net) -> Self {
        let mut taken = BTreeSet::new();
        taken.insert(net.addr());
        Allocator {
            next: u128::from(u32::from(net.network())) + 1,
            // The broadcast address is never handed out.
            last: u128::from(u32::from(net.broadcast())).saturating_sub(1),
            taken,
        }
    }
}

impl Allocator<Ipv6Addr> {
    pub fn v6(net: &Ipv6Net) -> Self {
        let mut taken = BTreeSet::new();
        taken.insert(net.addr());
        Allocator {
            next: u128::from(net.network()) + 1,
            last: u128::from(net.broadcast()),
            taken,
        }
    }
}

impl<A: Ord + Copy + FromU128> Allocator<A> {
    pub fn is_taken(&self, addr: A) -> bool {
        self.taken.contains(&addr)
    }

    pub fn take(&mut self, addr: A) {
        self.taken.insert(addr);
    }

    pub fn next_free(&mut self) -> Option<A> {
        while self.next <= self.last {
            let candidate = A::from_u128(self.next);
            self.next += 1;
            if self.taken.insert(candidate) {
                return Some(candidate);
            }
        }
        None
    }
}

pub trait FromU128 {
    fn from_u128(n: u128) -> Self;
}

impl FromU128 for Ipv4Addr {
    fn from_u128(n: u128) -> Self {
        Ipv4Addr::from(n as u32)
    }
}

impl FromU128 for Ipv6Addr {
    fn from_u128(n: u128) -> Self {
        Ipv6Addr::from(n)
    }
}
