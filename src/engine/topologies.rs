//! Topologies: `ctm up NAME`, `ctm down NAME`, and the list of them with
//! their state.
//!
//! Up and down change no file the user owns: the host file is in git and
//! says what exists. The set of down topologies is kept with each
//! generation (`state::Meta::down`), so bringing one up or down is an
//! apply of the current generation's own host file with another set
//! ([`apply::prepare_reapply_with`]): the same plan, question, switch,
//! health checks and rollback as every apply, into a new generation. If
//! it fails or rolls back, no generation records the new set, and the
//! set is what it was.
//!
//! The web shows the plan of a move first ([`plan()`], read-only), then
//! applies it only if the host still plans the same ([`prepare`] with the
//! fingerprint seen), as it does a rollback.

use std::collections::BTreeSet;

use miette::miette;
use serde::Serialize;

use super::apply::{self, Applied, PreparedApply, Seen};
use super::events::Events;
use super::refused::Refused;
use super::session::{Access, Session, Target};
use crate::compile::health::{self, HEALTH, Health};
use crate::model::Name;
use crate::plan::{self, Plan};
use crate::state::Store;

/// Which way `ctm up` / `ctm down` moves a topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// A topology of the current generation, with its members and state.
pub use crate::status::TopologyStatus as TopologyState;

/// The topologies of the current generation, by name (none before the
/// first apply).
pub fn list(target: &Target) -> miette::Result<Vec<TopologyState>> {
    let store = target.store();
    let Some(current) = store.current()? else {
        return Ok(Vec::new());
    };
    Ok(crate::status::topologies(&expectations(&store, current)?))
}

/// Generation `n`'s `health.json` alone, read from the store.
fn expectations(store: &Store, n: u64) -> miette::Result<Health> {
    let manifest = store.manifest(n)?;
    let Some(entry) = manifest.files.get(HEALTH) else {
        return Ok(Health::default());
    };
    let artifacts = store.contents(n, [(HEALTH.to_string(), entry.clone())])?;
    health::of(&artifacts).map_err(|e| miette!("{e}"))
}

/// The down set after moving `name` `direction`, from `down`.
pub fn moved(down: &BTreeSet<Name>, name: &Name, direction: Direction) -> BTreeSet<Name> {
    let mut down = down.clone();
    match direction {
        Direction::Up => down.remove(name),
        Direction::Down => down.insert(name.clone()),
    };
    down
}

/// The down set after moving topology `name` `direction`, from the
/// current generation's; refused when the current generation has no
/// topology of that name.
fn wanted(store: &Store, name: &str, direction: Direction) -> miette::Result<BTreeSet<Name>> {
    let current = store.current()?;
    let known = match current {
        Some(n) => expectations(store, n)?.topologies,
        None => Default::default(),
    };
    let topology = Name::parse(name)
        .ok()
        .filter(|n| known.contains_key(n.as_str()));
    let Some(topology) = topology else {
        let names: Vec<&str> = known.keys().map(String::as_str).collect();
        return Err(Refused::NoSuchTopology {
            name: name.to_string(),
            generation: current,
            help: if names.is_empty() {
                "the host file defines no topology: topology \"NAME\" { container \"…\"; }".into()
            } else {
                format!("its topologies: {}", names.join(", "))
            },
        }
        .into());
    };
    Ok(moved(&store.current_down()?, &topology, direction))
}

/// The plan of moving topology `name` `direction`, made under `access`
/// and changing nothing: what the web shows before the user decides. Its
/// fingerprint is what [`prepare`] is given back as `seen`.
pub fn plan(
    target: &Target,
    name: &str,
    direction: Direction,
    access: Access,
    events: Events<'_>,
) -> miette::Result<Plan> {
    let mut session = Session::open(target, access, events)?;
    let down = wanted(&session.store, name, direction)?;
    let desired = apply::reapplied(target, Some(&down), events)?;
    session.plan(&desired.artifacts, plan::Options::default(), events)
}

/// Takes the lock, recovers, and plans the current generation's host file
/// with topology `name` up or down: apply it with [`apply::apply`]. A
/// topology already in that state plans nothing but drift. If the user
/// saw a plan ([`plan()`]), refuses when the host has moved since.
pub fn prepare(
    target: &Target,
    name: &str,
    direction: Direction,
    seen: Option<&Seen<'_>>,
    events: Events<'_>,
) -> miette::Result<PreparedApply> {
    let down = wanted(&target.store(), name, direction)?;
    apply::prepare_reapply_with(target, Some(&down), seen, events)
}

/// How `ctm up NAME` or `ctm down NAME` ended, in words: what the command
/// line prints and the web's job ends with.
pub fn ended(name: &str, direction: Direction, applied: Applied) -> String {
    let state = direction.as_str();
    match applied {
        Applied::NoChanges => format!("Topology {name} is {state}; nothing to change."),
        Applied::Generation(n) | Applied::Unconfirmed(n) => {
            format!("Topology {name} is {state} (generation {n}).")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_adds_and_up_removes_only_the_named_topology() {
        let n = |s: &str| Name::parse(s).unwrap();
        let start: BTreeSet<Name> = [n("a")].into();
        assert_eq!(
            moved(&start, &n("b"), Direction::Down),
            [n("a"), n("b")].into()
        );
        assert_eq!(moved(&start, &n("a"), Direction::Up), BTreeSet::new());
        assert_eq!(moved(&start, &n("a"), Direction::Down), start);
        assert_eq!(moved(&start, &n("b"), Direction::Up), start);
    }
}
