//! Auto-assigned addresses are stable: adding, removing or renaming other
//! containers never changes an existing container's address, as long as
//! compile is given the lock the previous compile wrote.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ctm::config::{self, Format, Source};
use ctm::lock::Lock;
use ctm::validate;
use proptest::prelude::*;

/// A container as the test varies it: its network, and an explicit IPv4
/// host part (10.0.N.x) if it sets one.
#[derive(Debug, Clone, PartialEq)]
struct Spec {
    network: usize,
    explicit: Option<u8>,
}

fn host_text(containers: &BTreeMap<String, Spec>) -> String {
    let mut text = String::from(
        "image \"img\" { directory \"/srv/img\"; }\n\
         network \"n0\" { bridge \"br0\"; ipv4 \"10.0.0.1/24\"; ipv6 \"fd00:0::1/64\"; }\n\
         network \"n1\" { bridge \"br1\"; ipv4 \"10.0.1.1/24\"; ipv6 \"fd00:1::1/64\"; }\n",
    );
    for (name, spec) in containers {
        let explicit = spec
            .explicit
            .map(|x| format!(" ipv4=\"10.0.{}.{x}\"", spec.network))
            .unwrap_or_default();
        text.push_str(&format!(
            "container \"{name}\" {{ image \"img\"; network \"n{}\"{explicit}; }}\n",
            spec.network
        ));
    }
    text
}

type Addresses = BTreeMap<String, (Option<IpAddr>, Option<IpAddr>)>;

fn compile(
    containers: &BTreeMap<String, Spec>,
    lock: &Lock,
) -> Result<(Addresses, Lock), Vec<&'static str>> {
    let text = host_text(containers);
    let (doc, diagnostics) = config::parse(&Source::new("prop.kdl", text.clone(), Format::Kdl));
    assert!(
        diagnostics.is_empty(),
        "generated host does not parse: {diagnostics:?}\n{text}"
    );
    match validate::validate(&doc, lock) {
        Ok(v) => {
            let addresses = v
                .host
                .containers
                .iter()
                .map(|(name, c)| {
                    let a = c.network.as_ref().unwrap();
                    (
                        name.to_string(),
                        (a.ipv4.map(IpAddr::V4), a.ipv6.map(IpAddr::V6)),
                    )
                })
                .collect();
            Ok((addresses, v.lock))
        }
        Err(diagnostics) => Err(diagnostics.iter().map(|d| d.code).collect()),
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (0..2usize, prop::option::weighted(0.3, 2..=254u8))
        .prop_map(|(network, explicit)| Spec { network, explicit })
}

fn hosts() -> impl Strategy<Value = BTreeMap<String, Spec>> {
    prop::collection::btree_map("[a-e][0-9]", spec(), 1..20)
}

/// Explicit addresses must be unique for the first compile to succeed.
fn explicit_unique(containers: &BTreeMap<String, Spec>) -> bool {
    let mut seen = BTreeSet::new();
    containers
        .values()
        .filter_map(|s| s.explicit.map(|x| (s.network, x)))
        .all(|key| seen.insert(key))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn existing_addresses_never_move(
        before in hosts(),
        added in hosts(),
        removed in prop::collection::btree_set("[a-e][0-9]", 0..6),
        renamed in prop::collection::btree_set("[a-e][0-9]", 0..3),
    ) {
        prop_assume!(explicit_unique(&before));
        let (addresses, lock) = compile(&before, &Lock::empty()).expect("a valid host compiles");

        // Every address is unique on its network.
        let mut seen = BTreeSet::new();
        for (v4, v6) in addresses.values() {
            prop_assert!(v4.is_none_or(|a| seen.insert(a)));
            prop_assert!(v6.is_none_or(|a| seen.insert(a)));
        }

        // The next host: drop some, rename some (a new name, same settings),
        // add others under fresh names. Unchanged containers stay as they were.
        let mut after: BTreeMap<String, Spec> = before
            .iter()
            .filter(|(name, _)| !removed.contains(*name))
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        for old in &renamed {
            if let Some(spec) = after.remove(old) {
                after.insert(format!("renamed-{old}"), spec);
            }
        }
        for (name, spec) in &added {
            after.entry(format!("new-{name}")).or_insert_with(|| spec.clone());
        }
        prop_assume!(explicit_unique(&after));

        let kept: Vec<&String> = after.keys().filter(|n| before.get(*n) == after.get(*n)).collect();
        match compile(&after, &lock) {
            Ok((new_addresses, _)) => {
                for name in kept {
                    prop_assert_eq!(&addresses[name], &new_addresses[name], "{} moved", name);
                }
            }
            Err(codes) => {
                // The only acceptable failure: a new container explicitly
                // claims an address the lock holds for an existing one.
                prop_assert!(codes.iter().all(|c| *c == "ctm::duplicate-address"), "{:?}", codes);
                let locked: BTreeSet<IpAddr> = addresses.values().filter_map(|(v4, _)| *v4).collect();
                let claimed = after
                    .iter()
                    .filter(|(n, _)| !kept.contains(n))
                    .filter_map(|(_, s)| s.explicit.map(|x| IpAddr::from([10, 0, s.network as u8, x])))
                    .any(|a| locked.contains(&a));
                prop_assert!(claimed, "compile failed without a conflicting claim: {:?}", codes);
            }
        }
    }

    #[test]
    fn the_lock_is_a_fixed_point(host in hosts()) {
        prop_assume!(explicit_unique(&host));
        let (addresses, lock) = compile(&host, &Lock::empty()).unwrap();
        let (again, lock_again) = compile(&host, &lock).unwrap();
        prop_assert_eq!(addresses, again);
        prop_assert_eq!(lock.render(), lock_again.render());
        prop_assert_eq!(Lock::parse(&lock.render()).unwrap(), lock);
    }
}
