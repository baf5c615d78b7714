//! A session on one root: the system it drives, the state store, the lock
//! that keeps two ctm from changing the host at once, and recovery of
//! whatever an interrupted ctm left behind. Every use case runs in one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use miette::miette;
use nix::fcntl::Flock;

use super::events::{Event, Events};
use crate::apply::{Engine, Progress, Recovered, SwitchSpec};
use crate::backend::archive::Subject;
use crate::backend::live::LiveSystem;
use crate::backend::{FilesOnly, System, volumes};
use crate::clock::now_unix;
use crate::compile::Artifacts;
use crate::compile::health;
use crate::fs::{self, Entry};
use crate::live::{self, LiveFile};
use crate::plan::{self, Manifest, Plan, SystemState};
use crate::state::{Memory, StateError, Store};

/// The root a use case works on, and how it meets other ctm processes.
#[derive(Clone)]
pub struct Target {
    /// `/` for the running system, or a directory whose files ctm manages.
    pub root: PathBuf,
    /// Give up waiting for another ctm's lock after this long (`None`:
    /// wait as long as it takes).
    pub lock_timeout: Option<Duration>,
    /// Manage the files under `/` when the running system cannot be driven
    /// (`ctm serve --files-only`): changes are then written, and actions
    /// listed but not performed. Without it, changing `/` needs systemd.
    pub allow_files_only: bool,
    /// What a long-lived process (`ctm serve`) keeps between plans.
    pub memory: Option<Arc<Memory>>,
    /// The system each session drives, when it is not the one the root
    /// calls for (the recording fake of `backend::recording`, in tests).
    pub system: Option<SystemFactory>,
}

/// Makes the system for one session.
pub type SystemFactory = Arc<dyn Fn() -> Box<dyn System> + Send + Sync>;

impl Target {
    pub fn new(root: impl Into<PathBuf>) -> Target {
        Target {
            root: root.into(),
            lock_timeout: None,
            allow_files_only: false,
            memory: None,
            system: None,
        }
    }

    /// This target, with every session driving the system `make` makes.
    pub fn with_system(self, make: SystemFactory) -> Target {
        Target {
            system: Some(make),
            ..self
        }
    }

    pub fn store(&self) -> Store {
        let store = Store::new(&self.root);
        match &self.memory {
            Some(memory) => store.with_memory(memory.clone()),
            None => store,
        }
    }

    /// Whether the root is the running system's (`/`).
    pub fn is_system_root(&self) -> bool {
        is_system_root(&self.root)
    }
}

pub fn is_system_root(root: &Path) -> bool {
    root.canonicalize().is_ok_and(|p| p == Path::new("/"))
}

/// Why a session on `/` can only manage files, if it can only manage
/// files: the running system cannot be reached (no systemd as PID 1, no
/// D-Bus, an old systemd, no nft).
pub fn files_only_reason(target: &Target) -> Option<String> {
    if !target.is_system_root() {
        return None;
    }
    LiveSystem::connect(&target.root)
        .err()
        .map(|e| e.to_string())
}

/// How a session holds the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only (plan, status, generations, diff): the lock is taken
    /// only if ctm has state under the root (a root ctm never managed gets
    /// nothing written to it), exclusively, so that an interrupted switch
    /// is recovered first.
    Read,
    /// Reads side by side with other readers (the web editor's previews),
    /// under the shared lock; refuses while a switch is interrupted, which
    /// the next writer recovers.
    ReadShared,
    /// Changes the host: the exclusive lock, recovery first, and on `/`
    /// the running system must be reachable.
    Change,
    /// Changes ctm's state only (confirm, recover, gc): the exclusive lock
    /// and recovery, with the running system if it can be reached.
    ChangeState,
}

/// What [`Session::prefetch`] read.
pub struct Prefetch {
    current: Option<u64>,
    manifest: Arc<Manifest>,
    cache: Arc<live::StatCache>,
    snapshot: live::Snapshot,
}

pub struct Session {
    pub store: Store,
    pub system: Box<dyn System>,
    _lock: Option<Flock<File>>,
}

/// The running system for `/`, files only for any other root. A session
/// that does not change the host still works where systemd cannot be
/// reached, without the live state of containers, links and the firewall.
fn system_for(
    target: &Target,
    access: Access,
    events: Events<'_>,
) -> miette::Result<Box<dyn System>> {
    if let Some(make) = &target.system {
        return Ok(make());
    }
    if !target.is_system_root() {
        return Ok(Box::new(FilesOnly::new(&target.root)));
    }
    match LiveSystem::connect(&target.root) {
        Ok(live) => Ok(Box::new(live)),
        Err(e) if access == Access::Change && !target.allow_files_only => Err(miette!(
            help = "ctm drives the running system through systemd (252 or newer, as PID 1, with D-Bus) and nft; \
                    use --root DIR to manage the files under DIR instead",
            "cannot change the running system: {e}"
        )),
        Err(e) => {
            events(Event::Warning {
                message: format!(
                    "warning: cannot reach the running system ({e}); showing file changes only, \
                     without the live state of containers, links and the firewall"
                ),
            });
            Ok(Box::new(FilesOnly::new(&target.root)))
        }
    }
}

impl Session {
    /// Opens a session on `target`; see [`Access`]. Every access but
    /// `ReadShared` first finishes what an interrupted ctm left.
    pub fn open(target: &Target, access: Access, events: Events<'_>) -> miette::Result<Session> {
        let system = system_for(target, access, events)?;
        Session::open_with(target.store(), system, target.lock_timeout, access, events)
    }

    /// [`Session::open`] with the system given (a recording fake in tests).
    pub fn open_with(
        store: Store,
        system: Box<dyn System>,
        lock_timeout: Option<Duration>,
        access: Access,
        events: Events<'_>,
    ) -> miette::Result<Session> {
        let has_state = store.dir().is_dir();
        let lock = match access {
            Access::Read | Access::ReadShared if !has_state => None,
            Access::ReadShared => Some(store.lock_shared(lock_timeout, || {})?),
            _ => {
                let path = store.dir().join("lock").display().to_string();
                Some(store.lock(lock_timeout, || events(Event::WaitingForLock { path }))?)
            }
        };
        let mut session = Session {
            store,
            system,
            _lock: lock,
        };
        match access {
            Access::ReadShared if session.store.journal()?.is_some() => {
                return Err(StateError::Interrupted.into());
            }
            Access::ReadShared => {}
            Access::Read if !has_state => {}
            _ => session.recover(events)?,
        }
        Ok(session)
    }

    /// Whether this session holds the lock on a root with ctm's state (a
    /// session on a root ctm never managed holds none and writes nothing).
    pub fn has_state(&self) -> bool {
        self._lock.is_some()
    }

    pub fn engine<'a>(&'a mut self, progress: &'a mut dyn FnMut(Progress)) -> Engine<'a> {
        Engine {
            store: &self.store,
            system: self.system.as_mut(),
            progress,
        }
    }

    /// Completes an interrupted switch, and rolls back an apply whose
    /// confirmation time ran out while no ctm was waiting for it.
    pub fn recover(&mut self, events: Events<'_>) -> miette::Result<()> {
        let recovered = {
            let mut step = |p: Progress| events(Event::from(p));
            self.engine(&mut step).recover()?
        };
        match recovered {
            Recovered::Nothing => {}
            Recovered::Finished { generation } => {
                events(Event::FinishedInterrupted { generation });
            }
            Recovered::RolledBack { to, problems } => {
                events(Event::RolledBackInterrupted {
                    generation: to,
                    problems,
                });
            }
        }
        if let Some(pending) = self.store.pending_confirm()?
            && now_unix() >= pending.deadline
        {
            events(Event::NotConfirmedInTime {
                generation: pending.generation,
            });
            self.revert_unconfirmed(events)?;
        }
        Ok(())
    }

    /// Returns the host to the generation before an unconfirmed one, and
    /// records that it was rolled back for want of a confirmation.
    pub fn revert_unconfirmed(&mut self, events: Events<'_>) -> miette::Result<()> {
        let Some(pending) = self.store.pending_confirm()? else {
            return Ok(());
        };
        let desired = match pending.previous {
            Some(n) => self.store.artifacts(n)?,
            None => Artifacts::default(),
        };
        // Restoring ctm's own earlier files: take over whatever is there.
        let plan = self.plan(&desired, plan::Options::ADOPT, events)?;
        self.switch_back(
            pending.previous,
            &desired,
            &plan,
            Some(pending.generation),
            events,
        )?;
        events(Event::BackOn {
            generation: pending.previous,
        });
        Ok(())
    }

    /// Switches the host to generation `to` (none at all for `None`), an
    /// existing one whose files are `desired`, by `plan`; then settles a
    /// pending confirmation, which a rollback or a revert ends. A revert
    /// names the generation it undoes (`unconfirmed`), recorded as rolled
    /// back for want of a confirmation before the confirmation goes.
    pub fn switch_back(
        &mut self,
        to: Option<u64>,
        desired: &Artifacts,
        plan: &Plan,
        unconfirmed: Option<u64>,
        events: Events<'_>,
    ) -> miette::Result<()> {
        {
            let mut step = |p: Progress| events(Event::from(p));
            self.engine(&mut step).switch(&SwitchSpec {
                from: plan.from_generation,
                to,
                desired,
                files: &plan.files,
                actions: &plan.actions,
                confirm_deadline: None,
                stage: None,
            })?;
        }
        if let Some(n) = unconfirmed {
            self.store.set_reverted(n, to)?;
        }
        self.store.clear_pending_confirm()?;
        if let Err(e) = self.system.disarm_revert() {
            events(Event::Warning {
                message: format!("warning: {e}"),
            });
        }
        Ok(())
    }

    /// The plan from the current generation to `desired`.
    pub fn plan(
        &mut self,
        desired: &Artifacts,
        options: plan::Options,
        events: Events<'_>,
    ) -> miette::Result<Plan> {
        Ok(self.plan_and_state(desired, options, events)?.0)
    }

    /// What a plan reads before it knows the desired files: the current
    /// generation's manifest, the stat cache, and the live files at the
    /// manifest's paths. `ctm plan` reads them under this session's lock
    /// while another thread compiles the host file (on a no-op plan of
    /// 1,000 containers, a third of the time; docs/benchmarks.md).
    pub fn prefetch(&self) -> miette::Result<Prefetch> {
        let current = self.store.current()?;
        let manifest = match current {
            Some(n) => self.store.manifest(n)?,
            None => Arc::new(Manifest::default()),
        };
        let cache = self.store.stat_cache();
        let snapshot = live::read(self.store.root(), manifest.files.keys(), &cache)?;
        Ok(Prefetch {
            current,
            manifest,
            cache,
            snapshot,
        })
    }

    /// The plan, and the live state it was made against.
    pub fn plan_and_state(
        &mut self,
        desired: &Artifacts,
        options: plan::Options,
        events: Events<'_>,
    ) -> miette::Result<(Plan, SystemState)> {
        self.plan_prefetched(desired, options, events, None)
    }

    /// [`Session::plan`] of a compile that a long-lived process keeps and
    /// may plan again (`ctm serve`'s editor): its manifest is kept with it.
    pub fn plan_shared(
        &mut self,
        desired: &Arc<Artifacts>,
        options: plan::Options,
        events: Events<'_>,
    ) -> miette::Result<Plan> {
        let manifest = self.store.manifest_of_shared(desired);
        Ok(self
            .plan_with(desired, Some(manifest), options, events, None)?
            .0)
    }

    /// [`Session::plan_and_state`], from what [`Session::prefetch`] read
    /// earlier in this session (under the same lock, so no apply came
    /// between). Its snapshot holds the paths of the manifest; the
    /// desired paths that the manifest lacks are read now and joined to
    /// it, so that the snapshot and its stat cache are always those of
    /// exactly the plan's paths.
    pub fn plan_prefetched(
        &mut self,
        desired: &Artifacts,
        options: plan::Options,
        events: Events<'_>,
        prefetched: Option<Prefetch>,
    ) -> miette::Result<(Plan, SystemState)> {
        self.plan_with(desired, None, options, events, prefetched)
    }

    /// [`Session::plan_prefetched`], with the desired files' manifest if
    /// the caller has it.
    pub(super) fn plan_with(
        &mut self,
        desired: &Artifacts,
        desired_manifest: Option<Arc<Manifest>>,
        options: plan::Options,
        events: Events<'_>,
        prefetched: Option<Prefetch>,
    ) -> miette::Result<(Plan, SystemState)> {
        let (current, manifest, cache, snapshot) = match prefetched {
            Some(p) => (p.current, p.manifest, p.cache, Some(p.snapshot)),
            None => {
                let current = self.store.current()?;
                let manifest = match current {
                    Some(n) => self.store.manifest(n)?,
                    None => Arc::new(Manifest::default()),
                };
                (current, manifest, self.store.stat_cache(), None)
            }
        };
        let snapshot = match snapshot {
            Some(ahead) => {
                // Both maps sorted by path: one walk finds the desired
                // paths that the manifest lacks.
                let mut known = manifest.files.keys().peekable();
                let lacking: Vec<&String> = desired
                    .files
                    .keys()
                    .filter(|path| {
                        while known.next_if(|k| k < path).is_some() {}
                        known.peek() != Some(path)
                    })
                    .collect();
                if lacking.is_empty() {
                    ahead
                } else {
                    ahead.joined(self.read_live(lacking, &cache)?, &cache)
                }
            }
            None => self.read_live(desired.files.keys().chain(manifest.files.keys()), &cache)?,
        };
        let desired_manifest =
            desired_manifest.unwrap_or_else(|| Arc::new(self.store.manifest_of(desired)));
        self.plan_against(
            current,
            &manifest,
            snapshot,
            desired,
            &desired_manifest,
            options,
            events,
        )
    }

    /// The plan from the current generation `n` to the same generation
    /// again: for a host file (and lock, and ctm) known to compile to
    /// exactly its manifest (`Meta::plan_key`), without compiling. The
    /// live files are read as for any plan; the contents of the desired
    /// files are read from the store only where the disk differs (for
    /// the diffs) and for the health expectations.
    pub fn plan_unchanged(
        &mut self,
        n: u64,
        options: plan::Options,
        events: Events<'_>,
    ) -> miette::Result<(Plan, SystemState)> {
        // Neither needs the other, and each is about a fifth of such a plan.
        let (cache, manifest) =
            crate::cores::side_by_side(|| self.store.stat_cache(), || self.store.manifest(n));
        let manifest = manifest?;
        let snapshot = self.read_live(manifest.files.keys(), &cache)?;
        // Both maps sorted by path: one walk, rather than a lookup (of
        // long, alike keys) per path.
        let mut live = snapshot.live.iter().peekable();
        let needed = manifest
            .files
            .iter()
            .filter(|(path, m)| {
                while live.next_if(|(p, _)| p < path).is_some() {}
                *path == health::HEALTH
                    || live
                        .peek()
                        .is_none_or(|(p, l)| p != path || l.entry != m.entry)
            })
            .map(|(path, m)| (path.clone(), m.clone()));
        let desired = self.store.contents(n, needed)?;
        self.plan_against(
            Some(n),
            &manifest,
            snapshot,
            &desired,
            &manifest,
            options,
            events,
        )
    }

    /// The live files at `paths`, vouched for by the watcher if there is
    /// one, else by the stat cache.
    fn read_live<'a>(
        &self,
        paths: impl IntoIterator<Item = &'a String>,
        cache: &live::StatCache,
    ) -> miette::Result<live::Snapshot> {
        Ok(match self.store.watcher() {
            Some(watcher) => watcher.read(paths, cache)?,
            None => live::read(self.store.root(), paths, cache)?,
        })
    }

    /// The plan from generation `current` (whose manifest is `manifest`)
    /// to the desired files, against the live files in `snapshot` (at
    /// every path of both) and the system: see `plan::Inputs` for what
    /// `desired` must hold.
    #[allow(clippy::too_many_arguments)]
    fn plan_against(
        &mut self,
        current: Option<u64>,
        manifest: &Manifest,
        snapshot: live::Snapshot,
        desired: &Artifacts,
        desired_manifest: &Manifest,
        options: plan::Options,
        events: Events<'_>,
    ) -> miette::Result<(Plan, SystemState)> {
        // Only a cache: failing to save it costs speed, nothing else; and
        // a root without ctm's state gets nothing written to it.
        if let Some(updated) = snapshot.cache
            && self.has_state()
            && let Err(e) = self.store.set_stat_cache(updated)
        {
            events(Event::Warning {
                message: format!("warning: {e}"),
            });
        }
        // Files trusted from the cache come without text; the ones that will
        // change are read for their diff.
        let mut live = snapshot.live;
        // Both maps sorted by path: one walk, no lookups.
        let mut wanted = desired_manifest.files.iter().peekable();
        for (path, file) in live.iter_mut() {
            while wanted.next_if(|(p, _)| *p < path).is_some() {}
            let unchanged = wanted
                .peek()
                .is_some_and(|(p, d)| *p == path && d.entry == file.entry);
            if file.text.is_none() && matches!(file.entry, Entry::File { .. }) && !unchanged {
                let (entry, bytes) = fs::read_entry(&self.store.root().join(path))?;
                *file = LiveFile {
                    entry,
                    text: bytes.and_then(|b| String::from_utf8(b).ok()),
                };
            }
        }
        let expect = health::of(desired).map_err(|e| miette!("{e}"))?;
        let mut system = self.system.observe(&expect)?;
        // Read on every root, files-only too: the plan shows the volumes
        // to make and refuses a quota their file system cannot enforce.
        system.volumes = volumes::observe(self.store.root(), &expect.volumes)?;
        system.last_backups = last_backups(self.store.root(), &expect);
        system.last_volume_backups = last_volume_backups(self.store.root(), &expect);
        // What each volume holds, for the plan's list of volumes: a
        // project's own count where it has one, else a walk reused for a
        // minute.
        system.volume_usage = volumes::measure(self.store.root())
            .into_iter()
            .map(|(name, m)| (name, m.used))
            .collect();
        if options.check_steps {
            // Only containers whose steps are installed have run them.
            let names: BTreeSet<String> = expect
                .containers
                .keys()
                .filter(|name| {
                    self.store
                        .root()
                        .join(crate::compile::provision::steps_path(name))
                        .exists()
                })
                .cloned()
                .collect();
            let mut step = |line: &str| events(Event::Step { line: line.into() });
            system.undone_steps = self.system.undone_steps(&names, &mut step)?;
        }
        let plan = plan::plan(&plan::Inputs {
            desired,
            desired_manifest,
            expect: &expect,
            current: current.map(|n| (n, manifest)),
            live: &live,
            system: &system,
            options,
        });
        Ok((plan, system))
    }
}

/// An archive found, as the plan and the status show it.
fn last_backup(l: crate::backend::archive::Listed) -> plan::LastBackup {
    plan::LastBackup {
        id: l.id,
        path: l.path.display().to_string(),
        bytes: l.bytes,
        at: l.modified,
    }
}

/// The newest archive of each volume of `expect`, in its `backup` block's
/// directory or in the default one (`ctm backup --volume` without `--to`).
pub(crate) fn last_volume_backups(
    root: &std::path::Path,
    expect: &health::Health,
) -> BTreeMap<String, plan::LastBackup> {
    newest_archives(
        root,
        expect.volumes.values().filter_map(|v| v.backup.as_ref()),
        expect.volumes.keys().cloned().map(Subject::Volume),
    )
}

/// The newest archive of each container of `expect`, in its `backup`
/// block's directory or in the default one (`ctm backup` without `--to`).
pub(crate) fn last_backups(
    root: &std::path::Path,
    expect: &health::Health,
) -> BTreeMap<String, plan::LastBackup> {
    newest_archives(
        root,
        expect.backups.values(),
        expect.containers.keys().cloned().map(Subject::Container),
    )
}

/// The newest archive of each of `subjects` in the default directory or
/// in one of `blocks`' directories.
fn newest_archives<'a>(
    root: &std::path::Path,
    blocks: impl Iterator<Item = &'a health::BackupHealth>,
    subjects: impl IntoIterator<Item = Subject>,
) -> BTreeMap<String, plan::LastBackup> {
    let mut dirs = vec![root.join(crate::layout::BACKUPS)];
    dirs.extend(blocks.map(|b| crate::layout::under_root(root, &b.to)));
    crate::backend::archive::newest_of(&dirs, subjects)
        .into_iter()
        .map(|(name, l)| (name, last_backup(l)))
        .collect()
}
