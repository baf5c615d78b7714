//! The generations: listing them, comparing two, collecting garbage,
//! recovering after a crash.

use std::collections::BTreeSet;

use miette::miette;
use serde::Serialize;

use super::events::{Event, Events};
use super::images;
use super::session::{Access, Session, Target};
use crate::backend::provision;
use crate::compile::{Artifacts, Content};
use crate::state::{Meta, PendingConfirm, Reverted};

/// One generation, as `ctm generations` and the web's generations page
/// show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenerationInfo {
    pub generation: Meta,
    pub current: bool,
    /// Rolled back because nobody confirmed it in time: when, and to
    /// which generation.
    pub reverted: Option<Reverted>,
}

/// Every generation, newest last, and what waits for confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Generations {
    pub current: Option<u64>,
    pub pending_confirm: Option<PendingConfirm>,
    pub generations: Vec<GenerationInfo>,
}

pub fn list(target: &Target, access: Access, events: Events<'_>) -> miette::Result<Generations> {
    let session = Session::open(target, access, events)?;
    let store = &session.store;
    let current = store.current()?;
    let mut generations = Vec::new();
    for n in store.generations()? {
        generations.push(GenerationInfo {
            generation: store.load(n)?.meta,
            current: current == Some(n),
            reverted: store.reverted(n)?,
        });
    }
    Ok(Generations {
        current,
        pending_confirm: store.pending_confirm()?,
        generations,
    })
}

/// One file that differs between two generations, as a unified diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    pub path: String,
    pub diff: String,
}

/// The files that differ between generations `a` and `b`.
pub fn diff(
    target: &Target,
    a: u64,
    b: u64,
    access: Access,
    events: Events<'_>,
) -> miette::Result<Vec<FileDiff>> {
    let session = Session::open(target, access, events)?;
    let from = session.store.artifacts(a)?;
    let to = session.store.artifacts(b)?;
    Ok(file_diffs(&from, &to, &a.to_string(), &b.to_string()))
}

/// The unified diff of every file that differs between two sets of
/// artifacts, by path; the headers name them `A/path` and `B/path`.
pub fn file_diffs(a: &Artifacts, b: &Artifacts, a_name: &str, b_name: &str) -> Vec<FileDiff> {
    let text = |c: Option<&Content>| match c {
        Some(Content::File { text, .. }) => text.clone(),
        Some(Content::Symlink { target }) => format!("-> {target}\n"),
        None => String::new(),
    };
    let paths: BTreeSet<&String> = a.files.keys().chain(b.files.keys()).collect();
    let mut diffs = Vec::new();
    for path in paths {
        let before = text(a.files.get(path).map(|x| &x.content));
        let after = text(b.files.get(path).map(|x| &x.content));
        if before == after {
            continue;
        }
        let diff = similar::TextDiff::from_lines(&before, &after)
            .unified_diff()
            .context_radius(3)
            .header(&format!("{a_name}/{path}"), &format!("{b_name}/{path}"))
            .to_string();
        diffs.push(FileDiff {
            path: path.clone(),
            diff,
        });
    }
    diffs
}

/// `ctm gc --keep N`: removes all but the newest `keep` generations (never
/// the current one, nor one a pending confirmation may return to), then
/// the images no generation left uses. Returns how many things went.
pub fn gc(target: &Target, keep: usize, events: Events<'_>) -> miette::Result<usize> {
    let session = Session::open(target, Access::ChangeState, events)?;
    let store = &session.store;
    let current = store.current()?;
    let pending = store.pending_confirm()?;
    let all = store.generations()?;
    let keep_from = all.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for (i, n) in all.iter().enumerate() {
        let protected = i >= keep_from
            || Some(*n) == current
            || pending
                .as_ref()
                .is_some_and(|p| p.previous == Some(*n) || p.generation == *n);
        if !protected {
            store.remove_generation(*n)?;
            removed.push(*n);
        }
    }
    // Files no generation left uses; a crashed apply's are freed too.
    store.remove_unused_objects()?;
    let count = removed.len();
    if !removed.is_empty() {
        events(Event::RemovedGenerations {
            generations: removed,
        });
    }
    let images = remove_unused_images(&session, events)?;
    if count + images == 0 {
        events(Event::NothingToRemove);
    }
    Ok(count + images)
}

/// Removes the images in the store that no generation left uses (a
/// rollback to one of them may need its images again), then the blobs no
/// image left uses; returns how many images went.
fn remove_unused_images(session: &Session, events: Events<'_>) -> miette::Result<usize> {
    let mut wanted = Vec::new();
    for n in session.store.generations()? {
        // A generation ctm cannot read is a reason to keep every image.
        let used = images::used_by(&session.store.artifacts(n)?)
            .map_err(|e| miette!("generation {n}: {e}; no image removed"))?;
        wanted.extend(used.into_iter().map(|(_, image, source)| (image, source)));
    }
    let unused = provision::unused_images(session.store.root(), &wanted);
    for record in &unused {
        provision::remove_image(record)?;
        events(Event::RemovedImage {
            path: record.with_extension("").display().to_string(),
        });
    }
    images::remove_unused_blobs(session.store.root(), events)?;
    let steps = provision::unused_build_steps(session.store.root());
    for tree in &steps {
        provision::remove_build_step(tree)?;
    }
    if !steps.is_empty() {
        events(Event::RemovedBuildSteps { count: steps.len() });
    }
    Ok(unused.len())
}

/// `ctm recover`: finishes or undoes an interrupted switch (opening the
/// session does), and says which generation the host is on.
pub fn recover(target: &Target, events: Events<'_>) -> miette::Result<Option<u64>> {
    let session = Session::open(target, Access::ChangeState, events)?;
    Ok(session.store.current()?)
}
