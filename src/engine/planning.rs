//! `ctm plan FILE`: the host file read, checked and compiled, and planned
//! against the target.

use std::path::Path;

use super::events::Events;
use super::images;
use super::load::{Desired, Outcome, load_at_most};
use super::session::{Access, Session, Target};
use crate::plan::{self, Plan};

/// What planning a host file found.
pub struct Planned {
    /// The host file and its lock, read and checked: its diagnostics are
    /// shown first.
    pub outcome: Outcome,
    /// `None` when the host file has errors; else the plan, or why the
    /// target could not be planned against.
    pub plan: Option<miette::Result<(Desired, Plan)>>,
}

/// Plans the host file at `file` (at most `limit` bytes) against
/// `target`. The file is read, checked and compiled on one thread while
/// this one takes the lock and reads what the plan compares it with (the
/// manifest, the stat cache, the live files): neither needs the other,
/// and a no-op plan of 1,000 containers spends about as long on each.
pub fn plan_file(
    target: &Target,
    file: &Path,
    limit: usize,
    options: plan::Options,
    events: Events<'_>,
) -> miette::Result<Planned> {
    let (loaded, opened) = std::thread::scope(|scope| {
        let loading = scope.spawn(|| -> miette::Result<_> {
            let outcome = load_at_most(file, None, limit)?;
            // Tags to resolve are resolved below, where events can be
            // reported, and compiled after.
            let desired = (!images::unresolved(&outcome))
                .then(|| Desired::compile(&outcome))
                .flatten();
            Ok((outcome, desired))
        });
        let opened = Session::open(target, Access::Read, events)
            .and_then(|session| Ok((session.prefetch()?, session)));
        let loaded = loading
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (loaded, opened)
    });
    let (mut outcome, mut desired) = loaded?;
    if images::unresolved(&outcome) {
        desired = images::compile_resolved(&target.root, &mut outcome, events)?;
    }
    let plan = desired.map(|desired| {
        let (prefetched, mut session) = opened?;
        let (plan, _) =
            session.plan_prefetched(&desired.artifacts, options, events, Some(prefetched))?;
        Ok((desired, plan))
    });
    Ok(Planned { outcome, plan })
}
