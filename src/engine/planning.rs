//! `ctm plan FILE`: the host file read, checked and compiled, and planned
//! against the target.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use super::events::Events;
use super::images;
use super::load::{Desired, Outcome, lock_path_for, read_at_most, read_lock, validate_bytes};
use super::session::{Access, Session, Target};
use crate::config::Format;
use crate::model::Name;
use crate::plan::{self, Manifest, Plan};
use crate::state::Store;

/// What planning a host file found.
pub struct Planned {
    /// The host file and its lock, read and checked: its diagnostics are
    /// shown first. `None` when they are byte for byte those the current
    /// generation was compiled from, without a diagnostic, by this very
    /// ctm binary: then nothing was parsed, and there is nothing to show.
    pub outcome: Option<Outcome>,
    /// `None` when the host file has errors; else the plan, or why the
    /// target could not be planned against.
    pub plan: Option<miette::Result<Plan>>,
    /// The host file compiled, when the caller asked for it (to save the
    /// plan) and it has no errors.
    pub desired: Option<Desired>,
}

/// What a host file compiles to, as far as its inputs tell: the format
/// it is read in, its bytes, its lock file's bytes (`None`: no lock file)
/// the ctm binary's hash (`Store::exe_id`) and the topologies down
/// (`Meta::down`); the pure stages read nothing else. Stored with each generation (`Meta::plan_key`); a host
/// file that compiles had no diagnostic (validation gives a model only
/// then), so a plan of the same inputs has nothing to show but the plan.
pub fn plan_key(
    format: Format,
    host: &[u8],
    lock: Option<&[u8]>,
    exe_id: &str,
    down: &BTreeSet<Name>,
) -> String {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    // Lengths first: no two different inputs feed the same bytes.
    let format = match format {
        Format::Kdl => "kdl",
        Format::Toml => "toml",
    };
    for part in [
        b"ctm plan key 1".as_slice(),
        format.as_bytes(),
        exe_id.as_bytes(),
        host,
    ] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    match lock {
        Some(lock) => {
            hash.update((lock.len() as u64).to_le_bytes());
            hash.update(lock);
        }
        None => hash.update(u64::MAX.to_le_bytes()),
    }
    // Only with a topology down, so that the keys of earlier generations
    // (none down) still match.
    if !down.is_empty() {
        hash.update(b"down");
        for name in down {
            hash.update((name.as_str().len() as u64).to_le_bytes());
            hash.update(name.as_str().as_bytes());
        }
    }
    crate::fs::hex(&hash.finalize())
}

/// The key of a compiled host file that an apply stores with its
/// generation, with the lock file as the apply leaves it beside the host
/// file; `None` if the binary cannot be hashed.
pub fn desired_key(store: &Store, desired: &Desired) -> Option<String> {
    Some(plan_key(
        Format::from_path(&desired.source_path),
        desired.source_text.as_bytes(),
        Some(desired.lock_text.as_bytes()),
        &store.exe_id()?,
        &desired.down,
    ))
}

/// Plans the host file at `file` (at most `limit` bytes) against
/// `target`; `keep` keeps what it compiled (to save the plan).
///
/// When the host file, its lock file and the ctm binary are those the
/// current generation was compiled from (its `plan_key`), the plan
/// compares the disk with that generation's manifest without parsing,
/// validating or compiling anything: the same plan, since the pure
/// stages read nothing else. Otherwise the file is read, checked and
/// compiled on one thread while this one reads what the plan compares
/// it with (the manifest, the stat cache, the live files): neither needs
/// the other, and a no-op plan of 1,000 containers spends about as long
/// on each.
pub fn plan_file(
    target: &Target,
    file: &Path,
    limit: usize,
    options: plan::Options,
    keep: bool,
    events: Events<'_>,
) -> miette::Result<Planned> {
    let bytes = read_at_most(file, limit)
        .map_err(|e| miette::miette!("cannot read host file {}: {e}", file.display()))?;
    let lock_path = lock_path_for(file);
    let lock_text = read_lock(&lock_path)?;
    // A session that cannot be opened is reported only if the host file
    // compiles, as before: the file's own errors come first.
    let mut opened = Session::open(target, Access::Read, events);
    if !keep
        && bytes.len() <= limit
        && let Ok(session) = &mut opened
        && let Some(n) = unchanged(&session.store, file, &bytes, lock_text.as_deref())
    {
        let plan = session
            .plan_unchanged(n, options, events)
            .map(|(plan, _)| plan);
        return Ok(Planned {
            outcome: None,
            plan: Some(plan),
            desired: None,
        });
    }
    // Compiled with the topologies the current generation has down (read
    // without the lock: an apply checks the plan against the host again).
    let down = target.store().current_down()?;
    let read = Read {
        file,
        bytes,
        limit,
        lock_path,
        lock_text,
    };
    let (loaded, opened) = compile_while(read, &down, &target.store(), || {
        opened.and_then(|session| Ok((session.prefetch()?, session)))
    });
    let (mut outcome, mut compiled) = loaded;
    if images::unresolved(&outcome) {
        compiled = images::compile_resolved(&target.root, &mut outcome, &down, events)?
            .map(|desired| with_manifest(&target.store(), desired));
    }
    let plan = compiled.as_ref().map(|(desired, manifest)| {
        let (prefetched, mut session) = opened?;
        let (plan, _) = session.plan_with(
            &desired.artifacts,
            Some(manifest.clone()),
            options,
            events,
            Some(prefetched),
        )?;
        Ok(plan)
    });
    Ok(Planned {
        outcome: Some(outcome),
        plan,
        desired: compiled.map(|(desired, _)| desired).filter(|_| keep),
    })
}

/// A compile, with the manifest of its files.
pub(super) type Compiled = (Desired, Arc<Manifest>);

/// A host file as read, before it is checked.
pub(super) struct Read<'a> {
    pub file: &'a Path,
    pub bytes: Vec<u8>,
    pub limit: usize,
    pub lock_path: std::path::PathBuf,
    pub lock_text: Option<String>,
}

/// The host file checked and compiled with the topologies in `down` down,
/// with the manifest of its files (hashed through `store`'s memory), on
/// another thread while this one runs `here`: a plan reads what it
/// compares the compile with (the manifest, the stat cache, the live
/// files) in `here`, and neither needs the other. Half of a plan or an
/// apply after an edit of 1,000 containers is each. A file with image
/// tags to resolve is only checked: they are resolved where events can
/// be reported (`images::compile_resolved`), then compiled.
pub(super) fn compile_while<R>(
    read: Read<'_>,
    down: &BTreeSet<Name>,
    store: &Store,
    here: impl FnOnce() -> R,
) -> ((Outcome, Option<Compiled>), R) {
    let compiling = || {
        let outcome = validate_bytes(
            read.file,
            read.bytes,
            read.limit,
            read.lock_path,
            read.lock_text,
        );
        let compiled = (!images::unresolved(&outcome))
            .then(|| Desired::compile(&outcome, down))
            .flatten()
            .map(|desired| with_manifest(store, desired));
        (outcome, compiled)
    };
    crate::cores::side_by_side(compiling, here)
}

/// `desired`, with the manifest of its files.
pub(super) fn with_manifest(store: &Store, desired: Desired) -> Compiled {
    let manifest = Arc::new(store.manifest_of(&desired.artifacts));
    (desired, manifest)
}

/// The current generation, if the host file's and lock's bytes and this
/// binary are exactly what it was compiled from. Anything that cannot be
/// read here only means the plan compiles.
fn unchanged(store: &Store, file: &Path, host: &[u8], lock: Option<&str>) -> Option<u64> {
    let n = store.current().ok()??;
    let meta = store.meta(n).ok()?;
    let stored = meta.plan_key?;
    // The file would be compiled with the current generation's down set.
    let key = plan_key(
        Format::from_path(file),
        host,
        lock.map(str::as_bytes),
        &store.exe_id()?,
        &meta.down,
    );
    (key == stored).then_some(n)
}
