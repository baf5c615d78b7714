//! ctm's own state under `ROOT/var/lib/ctm/`.
//!
//! ```text
//! generations/N/           one per successful apply, never changed after
//!     meta.json            number, time, source hash, summary, plan key
//!     manifest.json        every file ctm owns in this generation, with
//!                          the hash of its content
//!     source/FILE          the host file and its lock, as applied
//!     provisioned.json     the provisioning steps its apply checked or
//!                          ran, with their output (written before
//!                          `current` moves to it; live host only)
//!     reverted.json        when it was rolled back because nobody
//!                          confirmed it in time, and to which generation
//!     tree/...             only in generations written before `objects`:
//!                          their files
//! objects/SHA256           every generation's files, each content once
//! current -> generations/N the generation the host is on (a symlink,
//!                          replaced atomically)
//! journal.json             present only while a switch is in progress:
//!                          what is being switched, from and to where
//! pending-confirm.json     an apply waiting for `ctm confirm`
//! last-apply.json          how the last apply ended, and how long it took
//! stat-cache               hashes of managed files by stat, binary (see `live`)
//! images/, rootfs/         built images and the trees ctm made (owned by
//!                          `backend::provision` and `backend::rootfs`)
//! lock                     flock'ed by whoever changes any of the above
//! ```
//!
//! A process that plans again and again (`ctm serve`) keeps the current
//! generation's manifest and the stat cache in a [`Memory`] instead of
//! reading them back each time.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::compile::{Artifact, Artifacts, Content, Owner};
use crate::diagnostic::Diagnostic;
use crate::fs::{self, Batch, Entry, IoError, Node, context};
use crate::live::watch::{WatchError, Watcher};
use crate::live::{Stat, StatCache};
use crate::lock::Lock;
use crate::plan::Action;
use crate::plan::{Manifest, ManifestEntry, entry_of};

use crate::layout::STATE_DIR;

/// In a generation: what its apply's provisioning steps did.
const PROVISIONED: &str = "provisioned.json";
/// In a generation written before the object store: its files.
const LEGACY_TREE: &str = "tree";
/// The files of every generation, each content once, named by its hash.
const OBJECTS: &str = "objects";
/// The record of a switch in progress.
const JOURNAL: &str = "journal.json";
const CURRENT: &str = "current";
/// The stat cache (`live::StatCache::encode`).
const STAT_CACHE: &str = "stat-cache";
/// Where ctm before it kept its stat cache, as JSON.
const LEGACY_STAT_CACHE: &str = "stat-cache.json";

/// In a generation: that it was rolled back for want of a confirmation.
const REVERTED: &str = "reverted.json";

/// How the last apply ended (for `/metrics`).
const LAST_APPLY: &str = "last-apply.json";

/// How the last apply ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastApply {
    /// When it ended (Unix seconds).
    pub at: u64,
    /// From its start to its end, a wait for confirmation included.
    pub seconds: f64,
    /// `applied`, `no-changes`, `unconfirmed` (rolled back for want of a
    /// confirmation) or `failed` (rolled back, or not switched).
    pub result: String,
    /// The generation the host was on when it ended.
    pub generation: Option<u64>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StateError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Io(#[from] IoError),
    #[error("{} is damaged: {reason}", path.display())]
    #[diagnostic(
        code(ctm::state),
        help(
            "ctm's state directory was changed by something else; inspect it, or restore it from a backup"
        )
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("another ctm is changing this host (lock {}); gave up after {seconds} s", path.display())]
    #[diagnostic(
        code(ctm::locked),
        help("wait for it to finish, or raise --lock-timeout")
    )]
    LockTimeout { path: PathBuf, seconds: u64 },
    #[error("a switch of this host was interrupted and has not been recovered yet")]
    #[diagnostic(
        code(ctm::interrupted),
        help("any command that changes the host (or `ctm recover`) finishes it first")
    )]
    Interrupted,
    #[error("there is no generation {0}")]
    #[diagnostic(code(ctm::no_generation), help("`ctm generations` lists them"))]
    NoGeneration(u64),
}

pub type Result<T> = std::result::Result<T, StateError>;

fn corrupt(path: &Path, reason: impl ToString) -> StateError {
    StateError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub number: u64,
    /// RFC 3339, UTC.
    pub created: String,
    pub source_name: String,
    pub source_sha256: String,
    pub summary: String,
    pub ctm_version: String,
    /// What this generation was compiled from, when the host file and its
    /// lock had no diagnostic at all: the format, the host file's and the
    /// lock file's bytes (as the apply left it beside the host file) and
    /// the ctm binary's identity (`Store::exe_id`), hashed together
    /// (`engine::planning::plan_key`). A plan of inputs with this key
    /// compiles to this generation's manifest, so it compares the disk with
    /// that manifest without compiling. Absent in generations of earlier
    /// versions, and then every plan compiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_key: Option<String>,
    /// The host file's topologies that were down in this generation
    /// (`ctm down`). Kept with the generation rather than beside it, since
    /// the host file (in git) must not change for it: an apply that fails
    /// or rolls back leaves the set as it was, a rollback returns to the
    /// set of the generation it returns to, and the next apply of any
    /// host file starts from the current generation's.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub down: BTreeSet<crate::model::Name>,
}

impl Store {
    /// The down topologies of the current generation (none before the
    /// first apply).
    pub fn current_down(&self) -> Result<BTreeSet<crate::model::Name>> {
        match self.current()? {
            Some(n) => Ok(self.meta(n)?.down),
            None => Ok(BTreeSet::new()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub meta: Meta,
    pub manifest: Manifest,
}

/// The record of a switch in progress, written before the first file
/// changes and removed after `current` has moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub from: Option<u64>,
    /// `None` when switching back to no generation at all.
    pub to: Option<u64>,
    /// The generation was created by this switch (and goes if it fails).
    pub new_generation: bool,
    /// Every path the switch touches, with what was there before.
    pub touched: BTreeMap<String, TouchedPath>,
    /// The system actions of the switch, to undo on rollback.
    pub actions: Vec<Action>,
    /// The contents the new generation adds to the store (removed again
    /// if the switch is undone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_objects: Vec<String>,
}

/// A generation to stage (see [`Store::stage`]).
pub struct Staged<'a> {
    pub meta: &'a Meta,
    pub source_text: &'a str,
    pub lock_text: &'a str,
    pub artifacts: &'a Artifacts,
    /// `Manifest::of(artifacts)`.
    pub manifest: &'a Manifest,
    /// From [`Store::new_objects`].
    pub new_objects: &'a BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TouchedPath {
    pub before: Entry,
    pub owner: Owner,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingConfirm {
    pub generation: u64,
    pub previous: Option<u64>,
    /// Seconds since the Unix epoch.
    pub deadline: u64,
}

/// A generation that was applied with a confirmation timeout and rolled
/// back because nobody confirmed it in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reverted {
    /// When it was rolled back (Unix seconds).
    pub at: u64,
    /// The generation the host went back to.
    pub to: Option<u64>,
}

/// What a long-lived process keeps of one root's state between plans,
/// so that a plan does not read and parse it again: the manifest of the
/// generation last planned from, and the stat cache.
///
/// Neither can go stale unseen. A manifest is used only while its file
/// has the [`Stat`] it had when read, and only if it had settled then (the
/// rule of [`StatCache`]): a generation's files never change once written,
/// but its number can be used again (a failed apply's generation is
/// removed, and `gc` may remove the newest), and a new `manifest.json` is
/// a new inode with a new ctime. One command's memory ([`Memory::once`])
/// keeps a manifest unsettled too: the command holds the store's lock
/// from its plan to its switch, and makes at most one generation, under a
/// number it has not read (an apply right after another read the manifest
/// of 5,000 containers twice). The stat cache checks every entry against
/// the live file anyway, wherever it was kept.
#[derive(Default)]
pub struct Memory {
    kept: Mutex<Kept>,
    /// Set for one command's memory: the desired files' texts are not
    /// kept to hash fewer next time, as there is no next time (keeping
    /// them copied 7 MB for an apply of 1,000 containers).
    once: bool,
    /// Vouches for live paths that have not changed (see `live::watch`).
    watcher: Option<Watcher>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("kept_generation", &self.kept_generation())
            .field("watching", &self.watcher.is_some())
            .finish()
    }
}

#[derive(Debug, Default)]
struct Kept {
    manifest: Option<(u64, Stat, Arc<Manifest>)>,
    stat_cache: Option<Arc<StatCache>>,
    /// The text of each desired file last hashed, and its hash.
    hashes: HashMap<String, (String, String)>,
    /// The lock file's text last parsed, and what it parsed to.
    lock: Option<(String, Arc<Lock>)>,
    /// The last compile given by `Arc` and its manifest: the editor's
    /// plans of texts that differ only in comments or blank space share
    /// one compile (`engine::load::CompileCache`), whose manifest is then
    /// the same. Holding the `Arc` keeps the compile alive, so that the
    /// same address is the same compile.
    shared: Option<(Arc<Artifacts>, Arc<Manifest>)>,
}

impl Memory {
    /// A memory that also watches the live paths under `root` with
    /// inotify, looking at a vouched path again after `recheck` at the
    /// latest (`live::watch`).
    pub fn watching(root: &Path, recheck: Duration) -> std::result::Result<Memory, WatchError> {
        Ok(Memory {
            kept: Mutex::default(),
            once: false,
            watcher: Some(Watcher::new(root, recheck)?),
        })
    }

    /// The memory of one command, which plans once: see [`Memory::once`].
    pub fn once() -> Memory {
        Memory {
            once: true,
            ..Memory::default()
        }
    }

    pub fn watcher(&self) -> Option<&Watcher> {
        self.watcher.as_ref()
    }

    /// The generation whose manifest is kept, if any.
    pub fn kept_generation(&self) -> Option<u64> {
        self.kept().manifest.as_ref().map(|(n, _, _)| *n)
    }

    /// `Manifest::of(artifacts)`, hashing only the files whose text is
    /// not, byte for byte, the one last hashed at the same path: between
    /// two plans of the editor most of the compiled files are the same.
    pub fn manifest_of(&self, artifacts: &Artifacts) -> Manifest {
        if self.once {
            return Manifest::of(artifacts);
        }
        let mut kept = self.kept();
        let hashes = &mut kept.hashes;
        let mut texts = 0;
        let files = artifacts
            .files
            .iter()
            .map(|(path, a)| {
                let entry = match &a.content {
                    Content::File { text, mode } => {
                        texts += 1;
                        let sha256 = match hashes.get(path) {
                            Some((hashed, sha256)) if hashed == text => sha256.clone(),
                            _ => {
                                let sha256 = fs::sha256_hex(text.as_bytes());
                                hashes.insert(path.clone(), (text.clone(), sha256.clone()));
                                sha256
                            }
                        };
                        Entry::File {
                            sha256,
                            mode: *mode,
                        }
                    }
                    Content::Symlink { .. } => entry_of(a),
                };
                let owner = a.owner.clone();
                (path.clone(), ManifestEntry { entry, owner })
            })
            .collect();
        // Only the files of this plan stay.
        if hashes.len() > texts {
            hashes.retain(|path, _| artifacts.files.contains_key(path));
        }
        Manifest { files }
    }

    /// [`Memory::manifest_of`] of a shared compile, kept with it: asked
    /// again for the very same compile, it costs nothing (on a plan of
    /// 1,000 containers in `ctm serve`, building the manifest was a sixth
    /// of the request's time).
    pub fn manifest_of_shared(&self, artifacts: &Arc<Artifacts>) -> Arc<Manifest> {
        if let Some((kept, manifest)) = &self.kept().shared
            && Arc::ptr_eq(kept, artifacts)
        {
            return manifest.clone();
        }
        let manifest = Arc::new(self.manifest_of(artifacts));
        self.kept().shared = Some((artifacts.clone(), manifest.clone()));
        manifest
    }

    /// `Lock::parse(text)`, kept for the next call with the same text: the
    /// editor sends the host file on every pause in typing, while the lock
    /// file changes only when an apply adds a container. A text that does
    /// not parse is not kept (its error is rebuilt each time).
    pub fn parse_lock(&self, text: &str) -> std::result::Result<Arc<Lock>, Box<Diagnostic>> {
        if let Some((kept, lock)) = &self.kept().lock
            && kept == text
        {
            return Ok(lock.clone());
        }
        // Parsed outside the mutex: a plan running alongside may parse the
        // same text too, and the last one kept wins; both are the same.
        let lock = Arc::new(Lock::parse(text)?);
        self.kept().lock = Some((text.to_string(), lock.clone()));
        Ok(lock)
    }

    /// How many paths the kept stat cache holds.
    pub fn kept_stat_entries(&self) -> usize {
        self.kept()
            .stat_cache
            .as_ref()
            .map_or(0, |c| c.entries.len())
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Only a cache: what a panicking holder left is still valid data.
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// ctm's state directory under one root.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    dir: PathBuf,
    memory: Option<Arc<Memory>>,
}

impl Store {
    pub fn new(root: &Path) -> Store {
        Store {
            root: root.to_path_buf(),
            dir: root.join(STATE_DIR),
            memory: None,
        }
    }

    /// This store, keeping manifests and the stat cache in `memory`
    /// between plans (see [`Memory`]).
    pub fn with_memory(self, memory: Arc<Memory>) -> Store {
        Store {
            memory: Some(memory),
            ..self
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn generations_dir(&self) -> PathBuf {
        self.dir.join("generations")
    }

    pub fn generation_dir(&self, n: u64) -> PathBuf {
        self.generations_dir().join(n.to_string())
    }

    fn pending_confirm_path(&self) -> PathBuf {
        self.dir.join("pending-confirm.json")
    }

    /// Takes the exclusive lock, waiting up to `timeout` (forever if None);
    /// `waiting` is called once if the lock is busy.
    pub fn lock(&self, timeout: Option<Duration>, waiting: impl FnOnce()) -> Result<Flock<File>> {
        self.lock_as(FlockArg::LockExclusiveNonblock, timeout, waiting)
    }

    /// Takes the lock shared, for readers that change nothing (the web
    /// editor's plan previews): they do not wait for one another, and none
    /// runs while a writer holds the lock.
    pub fn lock_shared(
        &self,
        timeout: Option<Duration>,
        waiting: impl FnOnce(),
    ) -> Result<Flock<File>> {
        self.lock_as(FlockArg::LockSharedNonblock, timeout, waiting)
    }

    fn lock_as(
        &self,
        how: FlockArg,
        timeout: Option<Duration>,
        waiting: impl FnOnce(),
    ) -> Result<Flock<File>> {
        fs::create_dirs(&self.dir)?;
        let path = self.dir.join("lock");
        let mut file = context(
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path),
            "open lock file",
            &path,
        )?;
        let started = Instant::now();
        let mut told = Some(waiting);
        loop {
            match Flock::lock(file, how) {
                Ok(lock) => return Ok(lock),
                Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                    file = f;
                    if let Some(tell) = told.take() {
                        tell();
                    }
                    if timeout.is_some_and(|t| started.elapsed() >= t) {
                        return Err(StateError::LockTimeout {
                            path,
                            seconds: timeout.map_or(0, |t| t.as_secs()),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err((_, errno)) => {
                    return Err(IoError {
                        action: "lock",
                        path,
                        source: errno.into(),
                    }
                    .into());
                }
            }
        }
    }

    pub fn current(&self) -> Result<Option<u64>> {
        let link = self.dir.join(CURRENT);
        match std::fs::read_link(&link) {
            Ok(target) => {
                let n = target
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or_else(|| corrupt(&link, format!("points to {}", target.display())))?;
                Ok(Some(n))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(context(Err(e), "read", &link)?),
        }
    }

    /// Points `current` at generation `n`, atomically.
    pub fn set_current(&self, n: u64) -> Result<()> {
        fs::write_symlink(&self.dir.join(CURRENT), &format!("generations/{n}"))?;
        Ok(())
    }

    pub fn generations(&self) -> Result<Vec<u64>> {
        let dir = self.generations_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(context(Err(e), "read directory", &dir)?),
        };
        let mut numbers = Vec::new();
        for entry in entries {
            let entry = context(entry, "read directory", &dir)?;
            if let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    pub fn next_number(&self) -> Result<u64> {
        Ok(self.generations()?.last().map_or(1, |n| n + 1))
    }

    pub fn load(&self, n: u64) -> Result<Generation> {
        let dir = self.generation_dir(n);
        if !dir.exists() {
            return Err(StateError::NoGeneration(n));
        }
        Ok(Generation {
            meta: read_json(&dir.join("meta.json"))?,
            manifest: read_json(&dir.join("manifest.json"))?,
        })
    }

    /// The meta of generation `n` alone (its manifest unread).
    pub fn meta(&self, n: u64) -> Result<Meta> {
        let dir = self.generation_dir(n);
        if !dir.exists() {
            return Err(StateError::NoGeneration(n));
        }
        read_json(&dir.join("meta.json"))
    }

    /// The manifest of generation `n`: from memory while its file is
    /// unchanged, else read (and kept: see [`Memory`]).
    pub fn manifest(&self, n: u64) -> Result<Arc<Manifest>> {
        self.manifest_at(n, crate::live::now_ns())
    }

    /// [`Self::manifest`] as if at `now_ns` (which decides what has settled).
    fn manifest_at(&self, n: u64, now_ns: i128) -> Result<Arc<Manifest>> {
        let path = self.generation_dir(n).join("manifest.json");
        if let Some(memory) = &self.memory
            && let Some((_, _, manifest)) =
                memory.kept().manifest.as_ref().filter(|(m, stat, _)| {
                    *m == n
                        && std::fs::symlink_metadata(&path).is_ok_and(|now| Stat::of(&now) == *stat)
                })
        {
            return Ok(manifest.clone());
        }
        if !self.generation_dir(n).exists() {
            return Err(StateError::NoGeneration(n));
        }
        // The stat of the very file that is read: a file put in its place
        // later has another.
        let mut file = context(File::open(&path), "open", &path)?;
        let meta = context(file.metadata(), "inspect", &path)?;
        let mut text = String::new();
        context(
            std::io::Read::read_to_string(&mut file, &mut text),
            "read",
            &path,
        )?;
        let manifest: Arc<Manifest> =
            Arc::new(Manifest::from_json(&text).map_err(|e| corrupt(&path, e))?);
        let stat = Stat::of(&meta);
        if let Some(memory) = &self.memory
            && (memory.once || StatCache::settled(&stat, now_ns))
        {
            memory.kept().manifest = Some((n, stat, manifest.clone()));
        }
        Ok(manifest)
    }

    /// The compiled files of generation `n`, read back from the store
    /// (or, for a generation written before the store had objects, from
    /// its own `tree/`), each checked against its hash in the manifest.
    pub fn artifacts(&self, n: u64) -> Result<Artifacts> {
        let generation = self.load(n)?;
        self.contents(n, generation.manifest.files)
    }

    /// The contents of `files`, entries of generation `n`'s manifest,
    /// read back from the store and each checked against its hash: the
    /// few a no-op plan of an unchanged host file needs, without reading
    /// them all (`engine::planning`).
    pub fn contents(
        &self,
        n: u64,
        files: impl IntoIterator<Item = (String, ManifestEntry)>,
    ) -> Result<Artifacts> {
        let tree = self.generation_dir(n).join(LEGACY_TREE);
        let legacy = self.is_legacy(n);
        let mut out = BTreeMap::new();
        for (path, m) in files {
            let content = match &m.entry {
                Entry::File { mode, sha256 } => {
                    let stored = if legacy {
                        tree.join(&path)
                    } else {
                        self.object_path(sha256)
                    };
                    let text = fs::read_to_string(&stored)?;
                    if fs::sha256_hex(text.as_bytes()) != *sha256 {
                        return Err(corrupt(&stored, "its content does not match the manifest"));
                    }
                    Content::File { text, mode: *mode }
                }
                Entry::Symlink { target } => Content::Symlink {
                    target: target.clone(),
                },
                other => {
                    return Err(corrupt(
                        &self.generation_dir(n).join("manifest.json"),
                        format!("unexpected entry {other:?} for {path}"),
                    ));
                }
            };
            out.insert(
                path,
                Artifact {
                    owner: m.owner,
                    content,
                },
            );
        }
        Ok(Artifacts { files: out })
    }

    /// The identity of the running ctm binary (`/proc/self/exe`), which
    /// with the host file and its lock decides what a compile gives
    /// ([`Meta::plan_key`]): its device, inode, size, mtime and ctime.
    /// A binary replaced or rewritten in any way has another: a rename
    /// brings another inode, and every write sets ctime, which no caller
    /// can set back. Hashing the file instead cost a fresh process half a
    /// second for a debug build (346 MB), on every root it planned in.
    /// `None` (the binary cannot be stat'ed) means every plan compiles.
    pub fn exe_id(&self) -> Option<String> {
        static ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        ID.get_or_init(|| {
            let stat = Stat::of(&std::fs::metadata("/proc/self/exe").ok()?);
            Some(format!(
                "{} {} {} {} {} {}",
                env!("CARGO_PKG_VERSION"),
                stat.dev,
                stat.ino,
                stat.size,
                stat.mtime_ns,
                stat.ctime_ns
            ))
        })
        .clone()
    }

    /// The host file and lock a generation was made from.
    pub fn source(&self, n: u64) -> Result<(String, String, Option<String>)> {
        let generation = self.load(n)?;
        let dir = self.generation_dir(n).join("source");
        let text = fs::read_to_string(&dir.join(&generation.meta.source_name))?;
        let lock =
            match fs::read_to_string(&dir.join(format!("{}.lock", generation.meta.source_name))) {
                Ok(lock) => Some(lock),
                Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e.into()),
            };
        Ok((generation.meta.source_name, text, lock))
    }

    /// Whether generation `n` was written before the object store, with
    /// its files in its own `tree/`.
    fn is_legacy(&self, n: u64) -> bool {
        self.generation_dir(n).join(LEGACY_TREE).is_dir()
    }

    fn objects_dir(&self) -> PathBuf {
        self.dir.join(OBJECTS)
    }

    /// Where the store keeps the file whose content has this hash.
    pub fn object_path(&self, sha256: &str) -> PathBuf {
        self.objects_dir().join(sha256)
    }

    fn staging_dir(&self, n: u64) -> PathBuf {
        self.generations_dir().join(format!("{n}.staging"))
    }

    /// The contents a generation with `manifest` needs that the store does
    /// not hold yet: those of the generation `from` are there (its staging
    /// put them there), any other is looked for.
    pub fn new_objects(&self, from: Option<u64>, manifest: &Manifest) -> Result<BTreeSet<String>> {
        let held = match from {
            Some(n) if !self.is_legacy(n) => Some(self.manifest(n)?),
            _ => None,
        };
        let held: HashSet<&str> = held
            .iter()
            .flat_map(|m| m.files.values())
            .filter_map(|m| match &m.entry {
                Entry::File { sha256, .. } => Some(sha256.as_str()),
                _ => None,
            })
            .collect();
        let mut new = BTreeSet::new();
        for m in manifest.files.values() {
            if let Entry::File { sha256, .. } = &m.entry
                && !held.contains(sha256.as_str())
                && !new.contains(sha256)
                && !fs::exists(&self.object_path(sha256))?
            {
                new.insert(sha256.clone());
            }
        }
        Ok(new)
    }

    /// Writes generation `meta.number` under a temporary name: its source,
    /// manifest and meta, and the contents in `new` (from
    /// [`Self::new_objects`]) into the store, where the generations share
    /// them. Nothing is fsynced: everything written is recorded in `batch`,
    /// for the caller to make durable with the rest of the switch, before
    /// [`Self::place_staged`] renames the generation into place.
    pub fn stage(&self, staged: &Staged<'_>, batch: &mut Batch) -> Result<()> {
        let meta = staged.meta;
        let staging = self.staging_dir(meta.number);
        fs::remove_tree(&staging)?;
        let source = staging.join("source");
        fs::create_dirs(&source)?;
        let create = |batch: &mut Batch, path: &Path, bytes: &[u8]| -> Result<()> {
            fs::create(path, Node::File { bytes, mode: 0o644 })?;
            batch.wrote(path);
            Ok(())
        };
        create(
            batch,
            &source.join(&meta.source_name),
            staged.source_text.as_bytes(),
        )?;
        create(
            batch,
            &source.join(format!("{}.lock", meta.source_name)),
            staged.lock_text.as_bytes(),
        )?;
        let objects = self.objects_dir();
        fs::create_dirs(&objects)?;
        let mut written = HashSet::new();
        for (path, artifact) in &staged.artifacts.files {
            if let (Content::File { text, .. }, Some(m)) =
                (&artifact.content, staged.manifest.files.get(path))
                && let Entry::File { sha256, .. } = &m.entry
                && staged.new_objects.contains(sha256)
                && written.insert(sha256.as_str())
            {
                let object = self.object_path(sha256);
                fs::create(
                    &object,
                    Node::File {
                        bytes: text.as_bytes(),
                        mode: 0o600,
                    },
                )?;
                batch.wrote(&object);
            }
        }
        // Compact: a plan reads it every time.
        let manifest = staging.join("manifest.json");
        create(batch, &manifest, &staged.manifest.to_json())?;
        let meta_path = staging.join("meta.json");
        create(batch, &meta_path, &json_bytes(&meta_path, meta)?)?;
        Ok(())
    }

    /// Renames a staged generation, made durable, into place; the rename
    /// is durable once `batch` is synced.
    pub fn place_staged(&self, n: u64, batch: &mut Batch) -> Result<()> {
        fs::rename_entry(&self.staging_dir(n), &self.generation_dir(n))?;
        batch.changed(&self.generations_dir());
        Ok(())
    }

    /// Removes generation `n` (and its staging, if any); the contents it
    /// shares stay in the store until [`Self::remove_unused_objects`].
    pub fn remove_generation(&self, n: u64) -> Result<()> {
        fs::remove_tree(&self.staging_dir(n))?;
        Ok(fs::remove_tree(&self.generation_dir(n))?)
    }

    /// Removes contents from the store (those a failed switch added).
    pub fn remove_objects(&self, hashes: &[String]) -> Result<()> {
        let mut removed = false;
        for sha256 in hashes {
            removed |= fs::remove_entry(&self.object_path(sha256))?;
        }
        if removed {
            fs::fsync_dir(&self.objects_dir())?;
        }
        Ok(())
    }

    /// Removes the contents no generation uses any more (after `ctm gc`
    /// removed generations); returns how many.
    pub fn remove_unused_objects(&self) -> Result<usize> {
        let dir = self.objects_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(context(Err(e), "read directory", &dir)?),
        };
        let mut used = HashSet::new();
        for n in self.generations()? {
            if self.is_legacy(n) {
                continue;
            }
            for m in self.manifest(n)?.files.values() {
                if let Entry::File { sha256, .. } = &m.entry {
                    used.insert(sha256.clone());
                }
            }
        }
        let mut removed = 0;
        for entry in entries {
            let entry = context(entry, "read directory", &dir)?;
            let name = entry.file_name();
            if !name.to_str().is_some_and(|n| used.contains(n)) {
                fs::remove_entry(&entry.path())?;
                removed += 1;
            }
        }
        if removed > 0 {
            fs::fsync_dir(&dir)?;
        }
        Ok(removed)
    }

    /// Leftovers of an interrupted staging or journal write, which never
    /// took effect, removed first by recovery (they are what a full disk
    /// needs freed).
    pub fn clean_leftovers(&self) -> Result<()> {
        fs::remove(&fs::temp_path(&self.journal_path()))?;
        fs::remove(&fs::temp_path(&self.dir.join(CURRENT)))?;
        // Left by earlier versions of ctm.
        fs::remove_tree(&self.dir.join("journal.new"))?;
        fs::remove_tree(&self.dir.join("journal.done"))?;
        let legacy = self.legacy_journal_dir();
        if legacy.is_dir() && !legacy.join(JOURNAL).exists() {
            // A legacy journal whose closing was interrupted.
            fs::remove_tree(&legacy)?;
        }
        if let Ok(entries) = std::fs::read_dir(self.generations_dir()) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().ends_with(".staging") {
                    fs::remove_tree(&entry.path())?;
                }
            }
        }
        Ok(())
    }

    fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL)
    }

    /// Where ctm before the object store kept its journal, with a copy of
    /// every touched file in `backup/`.
    fn legacy_journal_dir(&self) -> PathBuf {
        self.dir.join("journal")
    }

    /// The switch in progress, if any.
    pub fn journal(&self) -> Result<Option<Journal>> {
        for path in [self.journal_path(), self.legacy_journal_dir().join(JOURNAL)] {
            if fs::exists(&path)? {
                return Ok(Some(read_json(&path)?));
            }
        }
        Ok(None)
    }

    /// Records a switch before it changes anything, durably: from this
    /// moment a crash is undone from the journal.
    pub fn begin_journal(&self, journal: &Journal) -> Result<()> {
        let path = self.journal_path();
        let bytes = serde_json::to_vec(journal).map_err(|e| corrupt(&path, e))?;
        fs::write_file(&path, &bytes, 0o600)?;
        crate::fault::point("journal written");
        Ok(())
    }

    /// The copy of a touched file that a journal written by an earlier
    /// version of ctm holds, if there is one.
    pub fn legacy_backup(&self, path: &str) -> Option<PathBuf> {
        let backup = self.legacy_journal_dir().join("backup").join(path);
        backup.exists().then_some(backup)
    }

    /// Closes the journal: the switch is over, committed or undone.
    pub fn end_journal(&self) -> Result<()> {
        fs::remove(&self.journal_path())?;
        let legacy = self.legacy_journal_dir();
        fs::remove(&legacy.join(JOURNAL))?;
        crate::fault::point("journal closed");
        fs::remove_tree(&legacy)?;
        Ok(())
    }

    fn stat_cache_path(&self) -> PathBuf {
        self.dir.join(STAT_CACHE)
    }

    /// `Manifest::of(artifacts)`, from the hashes in memory where the
    /// texts are the same (see [`Memory::manifest_of`]).
    pub fn manifest_of(&self, artifacts: &Artifacts) -> Manifest {
        match &self.memory {
            Some(memory) => memory.manifest_of(artifacts),
            None => Manifest::of(artifacts),
        }
    }

    /// [`Store::manifest_of`] of a compile that may be asked for again
    /// (see [`Memory::manifest_of_shared`]).
    pub fn manifest_of_shared(&self, artifacts: &Arc<Artifacts>) -> Arc<Manifest> {
        match &self.memory {
            Some(memory) => memory.manifest_of_shared(artifacts),
            None => Arc::new(Manifest::of(artifacts)),
        }
    }

    /// The watcher of live paths, when this store has one.
    pub fn watcher(&self) -> Option<&Watcher> {
        self.memory.as_deref().and_then(Memory::watcher)
    }

    /// The cache of file hashes by stat: the one in memory, else the one
    /// on disk; empty if missing or unreadable (it is only a cache: `live`
    /// re-reads what it cannot trust).
    pub fn stat_cache(&self) -> Arc<StatCache> {
        if let Some(cache) = self
            .memory
            .as_ref()
            .and_then(|m| m.kept().stat_cache.clone())
        {
            return cache;
        }
        let cache: Arc<StatCache> = Arc::new(
            std::fs::read(self.stat_cache_path())
                .ok()
                .and_then(|bytes| StatCache::decode(&bytes))
                .unwrap_or_default(),
        );
        if let Some(memory) = &self.memory {
            memory.kept().stat_cache = Some(cache.clone());
        }
        cache
    }

    /// Replaces the cache, in memory and on disk. Written under a temporary name of its own and
    /// renamed into place, so that readers holding the lock shared (the
    /// web editor's previews) can save it side by side: each rename puts a
    /// whole file in place, and the last one wins. Not fsynced: after a
    /// crash a torn cache reads as empty, and files are read again.
    pub fn set_stat_cache(&self, cache: StatCache) -> Result<()> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let path = self.stat_cache_path();
        let bytes = cache.encode();
        if let Some(memory) = &self.memory {
            memory.kept().stat_cache = Some(Arc::new(cache));
        }
        let tmp = self.dir.join(format!(
            "{STAT_CACHE}.{}-{}.tmp",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create(
            &tmp,
            Node::File {
                bytes: &bytes,
                mode: 0o600,
            },
        )?;
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(context(Err(e), "rename into place", &path)?);
        }
        // The JSON cache of earlier versions is never read again.
        fs::remove_entry(&self.dir.join(LEGACY_STAT_CACHE))?;
        Ok(())
    }

    pub fn pending_confirm(&self) -> Result<Option<PendingConfirm>> {
        let path = self.pending_confirm_path();
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(read_json(&path)?))
    }

    /// Records what the provisioning steps of the apply that made
    /// generation `n` did (before `current` moves to it).
    pub fn set_provisioned(
        &self,
        n: u64,
        records: &BTreeMap<String, Vec<crate::backend::StepRecord>>,
    ) -> Result<()> {
        let path = self.generation_dir(n).join(PROVISIONED);
        let mut bytes = serde_json::to_vec_pretty(records).map_err(|e| corrupt(&path, e))?;
        bytes.push(b'\n');
        fs::write_file(&path, &bytes, 0o644)?;
        Ok(())
    }

    /// What the provisioning steps of generation `n`'s apply did; empty
    /// when none ran there (or it was applied to a files-only root).
    pub fn provisioned(&self, n: u64) -> Result<BTreeMap<String, Vec<crate::backend::StepRecord>>> {
        let path = self.generation_dir(n).join(PROVISIONED);
        if !path.exists() {
            return Ok(BTreeMap::new());
        }
        read_json(&path)
    }

    pub fn set_pending_confirm(&self, pending: &PendingConfirm) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(pending)
            .map_err(|e| corrupt(&self.pending_confirm_path(), e))?;
        fs::write_file(&self.pending_confirm_path(), &bytes, 0o644)?;
        Ok(())
    }

    pub fn clear_pending_confirm(&self) -> Result<()> {
        Ok(fs::remove(&self.pending_confirm_path())?)
    }

    /// Records that generation `n` was rolled back, now, because nobody
    /// confirmed it in time; the host went back to `to`.
    pub fn set_reverted(&self, n: u64, to: Option<u64>) -> Result<()> {
        let record = Reverted {
            at: crate::clock::now_unix(),
            to,
        };
        let path = self.generation_dir(n).join(REVERTED);
        let mut bytes = serde_json::to_vec_pretty(&record).map_err(|e| corrupt(&path, e))?;
        bytes.push(b'\n');
        fs::write_file(&path, &bytes, 0o644)?;
        Ok(())
    }

    /// Records how the last apply ended.
    pub fn set_last_apply(&self, last: &LastApply) -> Result<()> {
        let path = self.dir().join(LAST_APPLY);
        let mut bytes = serde_json::to_vec_pretty(last).map_err(|e| corrupt(&path, e))?;
        bytes.push(b'\n');
        fs::write_file(&path, &bytes, 0o644)?;
        Ok(())
    }

    /// How the last apply ended; `None` before the first.
    pub fn last_apply(&self) -> Result<Option<LastApply>> {
        let path = self.dir().join(LAST_APPLY);
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(read_json(&path)?))
    }

    /// Whether generation `n` was rolled back for want of a confirmation.
    pub fn reverted(&self, n: u64) -> Result<Option<Reverted>> {
        let path = self.generation_dir(n).join(REVERTED);
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(read_json(&path)?))
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| corrupt(path, e))
}

fn json_bytes<T: Serialize>(path: &Path, value: &T) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| corrupt(path, e))?;
    bytes.push(b'\n');
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_with(path: &str) -> Manifest {
        let mut manifest = Manifest::default();
        manifest.files.insert(
            path.into(),
            ManifestEntry {
                entry: Entry::Symlink {
                    target: "/x".into(),
                },
                owner: Owner::Firewall,
            },
        );
        manifest
    }

    /// Writes generation `n`'s manifest as a new file, as staging does.
    fn write_manifest(store: &Store, n: u64, manifest: &Manifest) {
        let dir = store.generation_dir(n);
        std::fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join("manifest.json.new");
        std::fs::write(&tmp, serde_json::to_vec(manifest).unwrap()).unwrap();
        std::fs::rename(&tmp, dir.join("manifest.json")).unwrap();
    }

    #[test]
    fn a_kept_manifest_serves_while_its_file_is_unchanged_and_never_after() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Arc::new(Memory::default());
        let store = Store::new(dir.path()).with_memory(memory.clone());
        let later = crate::live::now_ns() + 3_000_000_000;
        write_manifest(&store, 1, &manifest_with("a"));

        // Just written: read, but not kept (it has not settled).
        assert_eq!(*store.manifest(1).unwrap(), manifest_with("a"));
        assert!(memory.kept().manifest.is_none());

        // Settled: kept, and then served from memory.
        assert_eq!(*store.manifest_at(1, later).unwrap(), manifest_with("a"));
        let planted = Arc::new(manifest_with("planted"));
        memory.kept().manifest.as_mut().unwrap().2 = planted.clone();
        assert_eq!(*store.manifest_at(1, later).unwrap(), *planted);

        // Generation 1 made anew (a failed apply's number used again): its
        // new file is read, not the kept one.
        write_manifest(&store, 1, &manifest_with("b"));
        assert_eq!(*store.manifest_at(1, later).unwrap(), manifest_with("b"));
        // Another generation is not the kept one either.
        write_manifest(&store, 2, &manifest_with("c"));
        assert_eq!(*store.manifest_at(2, later).unwrap(), manifest_with("c"));
        assert!(matches!(
            store.manifest_at(3, later),
            Err(StateError::NoGeneration(3))
        ));
    }

    #[test]
    fn one_command_keeps_the_manifest_it_read_just_after_it_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Arc::new(Memory::once());
        let store = Store::new(dir.path()).with_memory(memory.clone());
        write_manifest(&store, 1, &manifest_with("a"));
        assert_eq!(*store.manifest(1).unwrap(), manifest_with("a"));
        assert_eq!(memory.kept_generation(), Some(1), "kept unsettled");
        let planted = Arc::new(manifest_with("planted"));
        memory.kept().manifest.as_mut().unwrap().2 = planted.clone();
        assert_eq!(*store.manifest(1).unwrap(), *planted, "served from memory");
        // Still never once its file is another.
        write_manifest(&store, 1, &manifest_with("b"));
        assert_eq!(*store.manifest(1).unwrap(), manifest_with("b"));
    }

    #[test]
    fn hashes_kept_in_memory_give_the_manifest_of_the_artifacts() {
        let file = |text: &str| Artifact {
            owner: Owner::Firewall,
            content: Content::File {
                text: text.into(),
                mode: 0o644,
            },
        };
        let mut artifacts = Artifacts::default();
        artifacts.files.insert("a".into(), file("x"));
        artifacts.files.insert("b".into(), file("y"));
        artifacts.files.insert(
            "l".into(),
            Artifact {
                owner: Owner::Firewall,
                content: Content::Symlink {
                    target: "/t".into(),
                },
            },
        );
        let memory = Memory::default();
        assert_eq!(memory.manifest_of(&artifacts), Manifest::of(&artifacts));
        // The same again, a text changed (same length), a file gone, one new.
        assert_eq!(memory.manifest_of(&artifacts), Manifest::of(&artifacts));
        artifacts.files.insert("b".into(), file("z"));
        artifacts.files.remove("a");
        artifacts.files.insert("c".into(), file("w"));
        assert_eq!(memory.manifest_of(&artifacts), Manifest::of(&artifacts));
        let mut kept: Vec<String> = memory.kept().hashes.keys().cloned().collect();
        kept.sort();
        assert_eq!(kept, ["b", "c"]);
        // One command's memory hashes the same, and keeps no text.
        let once = Memory::once();
        assert_eq!(once.manifest_of(&artifacts), Manifest::of(&artifacts));
        assert!(once.kept().hashes.is_empty());
    }

    #[test]
    fn a_kept_lock_is_the_lock_its_text_parses_to() {
        let lock = |addr: &str| {
            format!("version = 1\n\n[containers.web]\nnetwork = \"lan\"\nipv4 = \"{addr}\"\n")
        };
        let memory = Memory::default();
        let first = memory.parse_lock(&lock("10.0.0.2")).unwrap();
        assert_eq!(*first, Lock::parse(&lock("10.0.0.2")).unwrap());
        // The same text: the same lock, not parsed again.
        assert!(Arc::ptr_eq(
            &first,
            &memory.parse_lock(&lock("10.0.0.2")).unwrap()
        ));
        // A changed text (the same length) is parsed anew.
        let changed = memory.parse_lock(&lock("10.0.0.3")).unwrap();
        assert_eq!(*changed, Lock::parse(&lock("10.0.0.3")).unwrap());
        assert_ne!(changed, first);
        // A text that does not parse gives the error, and keeps nothing.
        let broken = "version = 1\n[containers.web]\nnetwork = 7\n";
        assert_eq!(
            memory.parse_lock(broken).unwrap_err().message,
            Lock::parse(broken).unwrap_err().message
        );
        assert!(Arc::ptr_eq(
            &changed,
            &memory.parse_lock(&lock("10.0.0.3")).unwrap()
        ));
    }

    #[test]
    fn the_stat_cache_is_kept_in_memory_and_saved_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path()).with_memory(Arc::default());
        std::fs::create_dir_all(store.dir()).unwrap();
        assert_eq!(*store.stat_cache(), StatCache::default());
        let mut cache = StatCache::default();
        let stat = crate::live::Stat {
            dev: 1,
            ino: 2,
            size: 3,
            mode: 0o100644,
            mtime_ns: 4,
            ctime_ns: 5,
        };
        cache.entries.insert(
            "f".into(),
            (
                stat,
                Entry::Symlink {
                    target: "/x".into(),
                },
            ),
        );
        store.set_stat_cache(cache.clone()).unwrap();
        assert_eq!(*store.stat_cache(), cache);
        // The CLI, without memory, reads what was saved.
        assert_eq!(*Store::new(dir.path()).stat_cache(), cache);
        // The server does not read the disk again.
        std::fs::remove_file(store.dir().join(STAT_CACHE)).unwrap();
        assert_eq!(*store.stat_cache(), cache);
    }
}
