//! Stage 4 for a process that plans again and again (`ctm serve`): the
//! kernel (inotify) vouches for the live paths that cannot have changed
//! since they were last looked at, so that a plan looks again (`lstat`,
//! and the stat cache) only at the others.
//!
//! A path is vouched for when, before it was looked at, there were
//! watches on the path itself (its inode, wherever it is linked from)
//! and on every directory from `/` down to its parent, and no event has
//! arrived on any of them since. Every way to change what `lstat` and a
//! read of the path report goes through one of those: writing or
//! truncating the file (`IN_MODIFY`, `IN_CLOSE_WRITE`, through any of its
//! links), its mode, owner, times or link count (`IN_ATTRIB`), renaming,
//! creating or removing it or any directory above it (`IN_MOVED_*`,
//! `IN_CREATE`, `IN_DELETE`, `IN_*_SELF`). A mount changes what a path
//! names without an inotify event, so the mount table is watched too
//! (`/proc/self/mountinfo` becomes readable with `POLLPRI`). What cannot
//! be vouched for is looked at every time:
//!
//! - a path below a symlink, a root given through one included (the
//!   directory it points to is not watched);
//! - a path on a file system whose changes inotify does not see (anything
//!   but ext2/3/4, XFS, btrfs, tmpfs, F2FS and overlayfs: not NFS, SMB or
//!   FUSE, whose files other machines or a daemon change);
//! - a path whose watch could not be added (the per-user limit,
//!   `fs.inotify.max_user_watches`).
//!
//! After a queue overflow, an error reading events, or a mount, nothing is
//! vouched for: the watches start over. One change inotify does not
//! report at all is a write through a shared writable memory mapping
//! (inotify(7)); it does update the file's mtime and ctime, which the stat
//! cache reads, so a vouched path is looked at again at the latest
//! [`Watcher::recheck`] after it was last looked at (each path at its own
//! moment between half of that and all of it, so that the looks spread
//! over the requests).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::hash::{Hash as _, Hasher as _};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use nix::sys::statfs;

use super::{Snapshot, StatCache, assemble, distinct, look, now_ns};
use crate::fs::{Entry, IoError};

/// What a directory's watch reports: its entries coming and going, and
/// itself going.
const DIR_EVENTS: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR)
    .union(AddWatchFlags::IN_DONT_FOLLOW);

/// What a path's own watch reports: any change to its inode. Not opens
/// and reads, which ctm itself makes.
const PATH_EVENTS: AddWatchFlags = AddWatchFlags::IN_MODIFY
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_DONT_FOLLOW);

/// File systems whose every change goes through this kernel's VFS, so
/// that inotify reports it.
const LOCAL: &[statfs::FsType] = &[
    statfs::EXT4_SUPER_MAGIC,
    statfs::XFS_SUPER_MAGIC,
    statfs::BTRFS_SUPER_MAGIC,
    statfs::TMPFS_MAGIC,
    statfs::F2FS_SUPER_MAGIC,
    statfs::OVERLAYFS_SUPER_MAGIC,
];

/// Reads live paths under one root like [`super::read`], not looking
/// again at what inotify vouches for (see the module's documentation).
pub struct Watcher {
    root: PathBuf,
    recheck: Duration,
    mounts: Mounts,
    state: Mutex<State>,
}

struct State {
    /// The root, absolute.
    root: PathBuf,
    inotify: Inotify,
    /// Set when the watches could not start over: nothing is vouched for
    /// until they can.
    broken: bool,
    /// Directories watched, by absolute path (those above the root too).
    dirs: BTreeMap<PathBuf, WatchDescriptor>,
    /// What each watch stands for.
    watches: HashMap<WatchDescriptor, Watched>,
    /// The watch of the inode found at each path (root-relative).
    path_watches: BTreeMap<String, WatchDescriptor>,
    /// Paths (root-relative) vouched for: what was there, and until when.
    vouched: BTreeMap<String, (Entry, Instant)>,
}

enum Watched {
    Dir(PathBuf),
    /// The paths (root-relative) at which the watched inode was found.
    Path(BTreeSet<String>),
}

impl State {
    fn new(root: &Path) -> Result<State, Errno> {
        Ok(State {
            root: root.to_path_buf(),
            inotify: Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?,
            broken: false,
            dirs: BTreeMap::new(),
            watches: HashMap::new(),
            path_watches: BTreeMap::new(),
            vouched: BTreeMap::new(),
        })
    }
}

/// The keys of `map` that are `rel` or below it (all of them for "").
fn at_or_below<V>(map: &BTreeMap<String, V>, rel: &str) -> Vec<String> {
    if rel.is_empty() {
        return map.keys().cloned().collect();
    }
    let mut keys: Vec<String> = map
        .get_key_value(rel)
        .map(|(k, _)| k.clone())
        .into_iter()
        .collect();
    // Exactly the strings that start with "rel/" ('0' follows '/').
    keys.extend(
        map.range(format!("{rel}/")..format!("{rel}0"))
            .map(|(k, _)| k.clone()),
    );
    keys
}

/// Why a watcher could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch the managed files with inotify: {0}")]
pub struct WatchError(String);

impl Watcher {
    /// Watches paths under `root`; a vouched path is looked at again
    /// `recheck` after it was looked at, at the latest.
    pub fn new(root: &Path, recheck: Duration) -> Result<Watcher, WatchError> {
        let root = std::path::absolute(root)
            .map_err(|e| WatchError(format!("{}: {e}", root.display())))?;
        let state = State::new(&root).map_err(|e| WatchError(e.to_string()))?;
        Ok(Watcher {
            root,
            recheck,
            mounts: Mounts::open(),
            state: Mutex::new(state),
        })
    }

    /// The longest a vouched path goes without being looked at.
    pub fn recheck(&self) -> Duration {
        self.recheck
    }

    /// How many paths are vouched for now (for tests and benchmarks).
    pub fn vouched(&self) -> usize {
        self.state().vouched.len()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| {
            // A reader panicked part-way, perhaps after taking events it
            // did not act on: vouch for nothing, and start over.
            let mut state = poisoned.into_inner();
            state.broken = true;
            state.vouched.clear();
            state
        })
    }

    /// Reads every path (root-relative) like [`super::read`]; the ones
    /// vouched for come as they were last seen, without text.
    pub fn read<'a>(
        &self,
        paths: impl IntoIterator<Item = &'a String>,
        cache: &StatCache,
    ) -> Result<Snapshot, IoError> {
        let paths = distinct(paths);
        // One reader at a time: what it looks at must not be vouched for
        // after an event that a concurrent reader has already taken.
        let mut state = self.state();
        if self.mounts.changed() || !state.catch_up() || state.broken {
            match State::new(&self.root) {
                Ok(fresh) => *state = fresh,
                Err(_) => {
                    // The old watches may name the wrong inodes now.
                    state.broken = true;
                    state.vouched.clear();
                    return Ok(assemble(
                        look(&self.root, &paths, cache, now_ns())?,
                        Vec::new(),
                        cache,
                    ));
                }
            }
        }
        let now = Instant::now();
        let mut vouched = Vec::new();
        let mut unseen = Vec::new();
        // Both sorted: one walk, no lookups.
        let mut known = state.vouched.iter().peekable();
        for path in paths {
            while known.next_if(|(k, _)| k.as_str() < path).is_some() {}
            match known.peek() {
                Some((k, (entry, until))) if k.as_str() == path && *until > now => {
                    vouched.push((path, entry.clone()));
                }
                _ => unseen.push(path),
            }
        }
        // Watches first, then the look: a change after the look is an
        // event that the next read takes.
        let watched: Vec<bool> = unseen.iter().map(|path| state.watch(path)).collect();
        let looks = look(&self.root, &unseen, cache, now_ns())?;
        for (read, watched) in looks.iter().zip(watched) {
            if watched {
                let until = now + self.spread(read.path);
                state
                    .vouched
                    .insert(read.path.to_string(), (read.file.entry.clone(), until));
            }
        }
        Ok(assemble(looks, vouched, cache))
    }

    /// Between half of `recheck` and all of it, fixed per path.
    fn spread(&self, path: &str) -> Duration {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        path.hash(&mut hasher);
        let fraction = (hasher.finish() % 1024) as u32;
        self.recheck / 2 + self.recheck / 2 * fraction / 1024
    }
}

impl State {
    /// Takes every event queued since the last read. False when nothing
    /// can be vouched for any more (an overflow, or events lost).
    fn catch_up(&mut self) -> bool {
        loop {
            match self.inotify.read_events() {
                Ok(events) if events.is_empty() => return true,
                Ok(events) => {
                    for event in events {
                        if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                            return false;
                        }
                        self.take(event);
                    }
                }
                Err(Errno::EAGAIN) => return true,
                Err(Errno::EINTR) => {}
                Err(_) => return false,
            }
        }
    }

    fn take(&mut self, event: InotifyEvent) {
        match self.watches.get(&event.wd) {
            Some(Watched::Dir(dir)) => {
                let changed = match &event.name {
                    Some(name) => dir.join(name),
                    None => dir.clone(),
                };
                self.forget(&changed);
            }
            Some(Watched::Path(paths)) => {
                for path in paths {
                    self.vouched.remove(path);
                }
            }
            None => {}
        }
        if event.mask.contains(AddWatchFlags::IN_IGNORED)
            && let Some(Watched::Dir(dir)) = self.watches.remove(&event.wd)
            && self.dirs.get(&dir) == Some(&event.wd)
        {
            self.dirs.remove(&dir);
        }
    }

    /// Vouches no more for `changed` (absolute) and everything below it,
    /// and drops the watches there: the next look watches whatever is at
    /// those paths then.
    fn forget(&mut self, changed: &Path) {
        // The root's paths at or below `changed`: all of them when it is
        // the root or above it.
        let rel = match changed.strip_prefix(&self.root) {
            Ok(rel) => Some(rel.to_string_lossy().into_owned()),
            Err(_) if self.root.starts_with(changed) => Some(String::new()),
            Err(_) => None,
        };
        if let Some(rel) = rel {
            for path in at_or_below(&self.vouched, &rel) {
                self.vouched.remove(&path);
            }
            for path in at_or_below(&self.path_watches, &rel) {
                self.unwatch_path(&path);
            }
        }
        let dirs: Vec<(PathBuf, WatchDescriptor)> = self
            .dirs
            .range(changed.to_path_buf()..)
            .take_while(|(p, _)| p.starts_with(changed))
            .map(|(p, wd)| (p.clone(), *wd))
            .collect();
        for (dir, wd) in dirs {
            self.dirs.remove(&dir);
            self.watches.remove(&wd);
            // Already gone if the directory is.
            let _ = self.inotify.rm_watch(wd);
        }
    }

    /// Drops the link between `path` and the inode watched there.
    fn unwatch_path(&mut self, path: &str) {
        let Some(wd) = self.path_watches.remove(path) else {
            return;
        };
        if let Some(Watched::Path(paths)) = self.watches.get_mut(&wd) {
            paths.remove(path);
            if paths.is_empty() {
                self.watches.remove(&wd);
                let _ = self.inotify.rm_watch(wd);
            }
        }
    }

    /// Watches `full` and every directory above it. True when the path
    /// can be vouched for after it is looked at: every directory down to
    /// the path exists and is watched, or the first one missing is named
    /// in a watched directory (its creation will be an event there).
    fn watch(&mut self, path: &str) -> bool {
        let full = self.root.join(path);
        let full = full.as_path();
        let Some(parent) = full.parent() else {
            return false;
        };
        let mut above: Vec<&Path> = parent.ancestors().collect();
        above.reverse();
        for dir in above {
            if self.dirs.contains_key(dir) {
                continue;
            }
            match self.inotify.add_watch(dir, DIR_EVENTS) {
                // The same directory under another path (a bind mount):
                // its events would name only one of them.
                Ok(wd) if self.watches.contains_key(&wd) => return false,
                Ok(wd) => {
                    let local =
                        statfs::statfs(dir).is_ok_and(|s| LOCAL.contains(&s.filesystem_type()));
                    if !local {
                        let _ = self.inotify.rm_watch(wd);
                        return false;
                    }
                    self.dirs.insert(dir.to_path_buf(), wd);
                    self.watches.insert(wd, Watched::Dir(dir.to_path_buf()));
                }
                // Absent, or a file where a directory would be: the path
                // is absent, until an event in the directory above.
                Err(Errno::ENOENT) => return true,
                Err(Errno::ENOTDIR) => {
                    return std::fs::symlink_metadata(dir).is_ok_and(|m| !m.is_symlink());
                }
                Err(_) => return false,
            }
        }
        // A directory at the path that is also some path's parent: not
        // ctm's kind of path anyway, and a second watch on it would
        // replace what its watch reports.
        if self.dirs.contains_key(full) {
            return false;
        }
        match self.inotify.add_watch(full, PATH_EVENTS) {
            Ok(wd) => {
                if self.path_watches.get(path) != Some(&wd) {
                    self.unwatch_path(path);
                }
                match self
                    .watches
                    .entry(wd)
                    .or_insert_with(|| Watched::Path(BTreeSet::new()))
                {
                    Watched::Path(paths) => {
                        paths.insert(path.to_string());
                        self.path_watches.insert(path.to_string(), wd);
                    }
                    Watched::Dir(_) => return false,
                }
                true
            }
            Err(Errno::ENOENT | Errno::ENOTDIR) => true,
            Err(_) => false,
        }
    }
}

/// The mount table of this process's mount namespace, which changes
/// what a path names without any inotify event.
struct Mounts {
    file: Option<File>,
}

impl Mounts {
    /// Opens `/proc/self/mountinfo`; without it, every check says changed.
    fn open() -> Mounts {
        Mounts {
            file: File::open("/proc/self/mountinfo").ok(),
        }
    }

    /// Whether a mount or unmount happened since the last check (or the
    /// file was opened): the kernel flags it with `POLLPRI` once.
    fn changed(&self) -> bool {
        let Some(file) = &self.file else {
            return true;
        };
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => fds[0]
                .revents()
                .is_none_or(|r| r.intersects(PollFlags::POLLPRI | PollFlags::POLLERR)),
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    struct Root {
        dir: tempfile::TempDir,
        watcher: Watcher,
        paths: Vec<String>,
    }

    impl Root {
        /// a/f and b/g (files), a/l (a symlink), and n/m (absent).
        fn new(recheck: Duration) -> Root {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("a")).unwrap();
            std::fs::create_dir_all(dir.path().join("b")).unwrap();
            std::fs::write(dir.path().join("a/f"), "f").unwrap();
            std::fs::write(dir.path().join("b/g"), "g").unwrap();
            std::os::unix::fs::symlink("/target", dir.path().join("a/l")).unwrap();
            let watcher = Watcher::new(dir.path(), recheck).unwrap();
            let paths = ["a/f", "a/l", "b/g", "n/m"].map(String::from).to_vec();
            Root {
                dir,
                watcher,
                paths,
            }
        }

        fn path(&self, p: &str) -> PathBuf {
            self.dir.path().join(p)
        }

        /// Each path's text: `None` when it was vouched for (a fresh file
        /// read without the watcher always comes with its text).
        fn read(&self) -> BTreeMap<String, (Entry, Option<String>)> {
            let snap = self
                .watcher
                .read(&self.paths, &StatCache::default())
                .unwrap();
            snap.live
                .into_iter()
                .map(|(p, f)| (p, (f.entry, f.text)))
                .collect()
        }

        /// Reads twice: the second time everything is vouched for. A
        /// mount or unmount anywhere on the machine (another test's lab, a
        /// loop device) between the two reads rightly vouches for nothing
        /// (`Mounts`), so a pair is tried again a few times.
        fn settle(&self) -> BTreeMap<String, (Entry, Option<String>)> {
            for _ in 0..5 {
                let first = self.read();
                let second = self.read();
                // A mount may also land while the second read runs (the
                // overlay test of rootfs.rs mounts in this very binary):
                // then a path read again is not yet counted as unvouched.
                let all_vouched = second.values().all(|(_, text)| text.is_none());
                if self.watcher.vouched() != self.paths.len() || !all_vouched {
                    continue;
                }
                for (path, (entry, text)) in &second {
                    assert_eq!(*entry, first[path].0, "{path}");
                    assert_eq!(*text, None, "{path} is vouched for");
                }
                return first;
            }
            panic!("five pairs of reads in a row never vouched for every path");
        }
    }

    fn looked_again(seen: &BTreeMap<String, (Entry, Option<String>)>, path: &str) -> bool {
        matches!(seen[path].0, Entry::File { .. }) && seen[path].1.is_some()
    }

    #[test]
    fn vouched_paths_are_looked_at_again_after_any_change() {
        let r = Root::new(Duration::from_secs(600));
        let first = r.settle();
        assert_eq!(first["a/f"].1.as_deref(), Some("f"));
        assert_eq!(first["n/m"].0, Entry::Absent);

        // Written in place, same length.
        std::fs::write(r.path("a/f"), "F").unwrap();
        let seen = r.read();
        assert_eq!(seen["a/f"].1.as_deref(), Some("F"));
        assert!(!looked_again(&seen, "b/g"), "b/g is still vouched for");

        // Its mode.
        r.settle();
        std::fs::set_permissions(r.path("a/f"), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(r.read()["a/f"].0, Entry::File { mode: 0o600, .. }));

        // Through a hard link in a directory nobody watches.
        r.settle();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::hard_link(r.path("b/g"), elsewhere.path().join("g")).unwrap();
        r.settle();
        std::fs::write(elsewhere.path().join("g"), "G").unwrap();
        assert_eq!(r.read()["b/g"].1.as_deref(), Some("G"));

        // A symlink replaced by rename.
        r.settle();
        std::os::unix::fs::symlink("/other", r.path("a/l.new")).unwrap();
        std::fs::rename(r.path("a/l.new"), r.path("a/l")).unwrap();
        assert_eq!(
            r.read()["a/l"].0,
            Entry::Symlink {
                target: "/other".into()
            }
        );

        // An absent path created, with the directory above it.
        r.settle();
        std::fs::create_dir(r.path("n")).unwrap();
        std::fs::write(r.path("n/m"), "m").unwrap();
        assert_eq!(r.read()["n/m"].1.as_deref(), Some("m"));

        // A directory above a path replaced by another one.
        r.settle();
        std::fs::create_dir(r.path("b.new")).unwrap();
        std::fs::write(r.path("b.new/g"), "new g").unwrap();
        std::fs::rename(r.path("b"), r.path("b.old")).unwrap();
        std::fs::rename(r.path("b.new"), r.path("b")).unwrap();
        assert_eq!(r.read()["b/g"].1.as_deref(), Some("new g"));
        // The old one is not watched any more for these paths.
        r.settle();
        std::fs::write(r.path("b.old/g"), "old").unwrap();
        assert!(!looked_again(&r.read(), "b/g"));
        std::fs::write(r.path("b/g"), "newer").unwrap();
        assert_eq!(r.read()["b/g"].1.as_deref(), Some("newer"));
    }

    #[test]
    fn nothing_is_vouched_for_beyond_the_recheck_time() {
        let r = Root::new(Duration::ZERO);
        r.read();
        let seen = r.read();
        assert!(looked_again(&seen, "a/f") && looked_again(&seen, "b/g"));
    }

    #[test]
    fn a_path_below_a_symlinked_directory_is_always_looked_at() {
        let r = Root::new(Duration::from_secs(600));
        std::os::unix::fs::symlink(r.path("a"), r.path("c")).unwrap();
        let paths = vec!["c/f".to_string()];
        let read = || {
            r.watcher
                .read(&paths, &StatCache::default())
                .unwrap()
                .live
                .remove("c/f")
                .unwrap()
        };
        assert_eq!(read().text.as_deref(), Some("f"));
        assert_eq!(read().text.as_deref(), Some("f"), "looked at again");
        assert_eq!(r.watcher.vouched(), 0);
    }

    /// A mount over a watched directory changes what its paths name
    /// without an inotify event. Needs root (skipped otherwise).
    #[test]
    fn a_mount_over_a_directory_is_seen() {
        use std::process::Command;
        let r = Root::new(Duration::from_secs(600));
        r.settle();
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("g"), "mounted").unwrap();
        let mounted = Command::new("mount")
            .arg("--bind")
            .arg(other.path())
            .arg(r.path("b"))
            .output();
        if !mounted.as_ref().is_ok_and(|o| o.status.success()) {
            crate::fault::skip_test(&format!("cannot bind-mount ({mounted:?}); needs root"));
            return;
        }
        let seen = r.read();
        let unmounted = Command::new("umount").arg(r.path("b")).status();
        assert!(unmounted.is_ok_and(|s| s.success()));
        assert_eq!(seen["b/g"].1.as_deref(), Some("mounted"));
    }
}
