//! `ctm status` and the web dashboard: the status document of a root.

use std::collections::BTreeSet;
use std::path::Path;

use miette::miette;

use super::events::Events;
use super::load::stored;
use super::session::{Access, Session, Target};
use crate::backend::cgroups::Resources;
use crate::backend::volumes;
use crate::compile::Artifacts;
use crate::compile::health;
use crate::fs::sha256_hex;
use crate::status::{self, Status, Unconfirmed};

/// Where the parts of the status that are not the root's come from.
pub struct Sources<'a> {
    /// The host file being edited (`ctm serve`), to say whether it has
    /// changes that are not applied.
    pub host_file: Option<&'a Path>,
    pub resources: &'a dyn Resources,
    /// Why `/` is managed as files only, when it is.
    pub files_only_reason: Option<String>,
}

pub(crate) fn millis_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The containers, networks, tunnels and firewall of the current
/// generation as they are now, with what drifted.
pub fn status(
    target: &Target,
    access: Access,
    sources: &Sources<'_>,
    events: Events<'_>,
) -> miette::Result<Status> {
    let mut session = Session::open(target, access, events)?;
    let store = session.store.clone();
    let current = store.current()?;
    let meta = match current {
        Some(n) => Some(store.load(n)?.meta),
        None => None,
    };
    let artifacts = match current {
        Some(n) => store.artifacts(n)?,
        None => Artifacts::default(),
    };
    let expect = health::of(&artifacts).map_err(|e| miette!("{e}"))?;
    // The plan back to the current generation names everything that drifted.
    let (plan, system) =
        session.plan_and_state(&artifacts, crate::plan::Options::default(), events)?;
    let names: BTreeSet<String> = expect.containers.keys().cloned().collect();
    let containers = session.system.containers(&names)?;

    // The model of the generation, for what the expectations do not hold
    // (images, forwards): from the host file stored with it.
    let mut notes = Vec::new();
    let validated = match current {
        Some(n) => {
            let outcome = stored(&store, n)?;
            if outcome.validated.is_none() {
                notes.push(format!(
                    "the host file stored with generation {n} no longer validates ({} problem{}), \
                     so its images, networks and tunnels are not shown",
                    outcome.error_count(),
                    if outcome.error_count() == 1 { "" } else { "s" }
                ));
            }
            outcome.validated
        }
        None => None,
    };
    let host_file_changed = match (sources.host_file, &meta) {
        (Some(path), Some(meta)) => Some(
            std::fs::read(path).ok().map(|b| sha256_hex(&b)).as_deref()
                != Some(meta.source_sha256.as_str()),
        ),
        _ => None,
    };
    let unconfirmed = match store.generations()?.last() {
        Some(&newest) if Some(newest) != current => store.reverted(newest)?.map(|r| Unconfirmed {
            generation: newest,
            at: r.at,
            back_to: r.to,
        }),
        _ => None,
    };
    let pending = store.pending_confirm()?;
    let measured = volumes::measure(&target.root);
    Ok(status::status(&status::Inputs {
        root: target.root.display().to_string(),
        host_file: sources.host_file.map(|p| p.display().to_string()),
        host_file_changed,
        files_only_reason: sources.files_only_reason.clone(),
        sampled_at_ms: millis_now(),
        generation: meta.as_ref(),
        pending_confirm: pending.as_ref(),
        unconfirmed,
        host: validated.as_ref().map(|v| &v.host),
        notes,
        expect: &expect,
        plan: &plan,
        system: &system,
        containers: containers.as_ref(),
        resources: sources.resources,
        volumes: &measured,
    }))
}
