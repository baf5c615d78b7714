//! Stage 4: what is on the host now, at the paths a plan is about.
//!
//! A plan compares every file ctm manages, and reading and hashing
//! thousands of files is most of what a no-op plan costs. Two things keep
//! it cheap: the paths are read on all cores, and a [`StatCache`] lets a
//! file whose inode, size, mode, mtime and ctime are exactly as they were
//! when its content was last hashed be trusted without reading it again.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fs::{self, Entry, IoError};

pub mod watch;

/// What is at one path now, with its text when it is a readable file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFile {
    pub entry: Entry,
    pub text: Option<String>,
}

impl LiveFile {
    pub const ABSENT: LiveFile = LiveFile {
        entry: Entry::Absent,
        text: None,
    };
}

/// A file's identity and timestamps, as `lstat` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mode: u32,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl Stat {
    pub fn of(meta: &std::fs::Metadata) -> Stat {
        Stat {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mode: meta.mode(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

/// What files and symlinks held, valid as long as their [`Stat`] is
/// unchanged: a file's content hash, a symlink's target.
///
/// Sound because every write, truncate, rename onto the path or `chmod`
/// gives the file a new ctime (or a new inode), and user space cannot set
/// ctime; a symlink's target cannot be changed in place at all, only by
/// replacing the symlink, which is a new inode with a new ctime.
/// Timestamps are coarser than a fast rewrite, though: a file changed
/// again within the same clock tick keeps its ctime. So an entry is
/// recorded only for a path whose ctime was at least [`Self::SETTLED_NS`]
/// old when it was read; any later change then has a later ctime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatCache {
    pub entries: BTreeMap<String, (Stat, Entry)>,
}

impl StatCache {
    /// Two seconds: far more than the kernel's timestamp tick, and than the
    /// granularity of file systems with coarse times.
    pub const SETTLED_NS: i128 = 2_000_000_000;

    /// Whether a path with this stat, read at `now_ns`, may be recorded.
    pub fn settled(stat: &Stat, now_ns: i128) -> bool {
        now_ns - stat.ctime_ns >= Self::SETTLED_NS
    }
}

/// The live files at a plan's paths, and the stat cache for those paths.
pub struct Snapshot {
    pub live: BTreeMap<String, LiveFile>,
    /// The cache for exactly these paths; `None` when that is the cache
    /// the snapshot was taken with, unchanged (nothing to save).
    pub cache: Option<StatCache>,
}

/// One path read: what is there, and how it stands with the cache.
struct Read<'a> {
    path: &'a str,
    file: LiveFile,
    cached: Cached,
}

enum Cached {
    /// Trusted from the cache: its entry stays as it is.
    Hit,
    /// Read; recorded in the cache with this stat.
    Record(Stat),
    /// Read, and not to be recorded (absent, unsettled, or changing).
    No,
}

/// Reads every path (root-relative) under `root`, each once however often
/// it is named, trusting `cache` where a path's stat is unchanged. A file
/// trusted from the cache comes without its text.
pub fn read<'a>(
    root: &Path,
    paths: impl IntoIterator<Item = &'a String>,
    cache: &StatCache,
) -> Result<Snapshot, IoError> {
    read_at(root, paths, cache, now_ns())
}

/// [`read`] as if at `now_ns` (which decides what has settled).
fn read_at<'a>(
    root: &Path,
    paths: impl IntoIterator<Item = &'a String>,
    cache: &StatCache,
    now_ns: i128,
) -> Result<Snapshot, IoError> {
    let paths = distinct(paths);
    let looks = look(root, &paths, cache, now_ns)?;
    Ok(assemble(looks, Vec::new(), cache))
}

/// The paths, sorted, each once.
fn distinct<'a>(paths: impl IntoIterator<Item = &'a String>) -> Vec<&'a str> {
    let mut paths: Vec<&str> = paths.into_iter().map(String::as_str).collect();
    // Stable sort: it merges runs that are sorted already, and the paths
    // come as two (the desired files' and the manifest's, both maps).
    paths.sort();
    paths.dedup();
    paths
}

/// Looks at each path, on all cores.
fn look<'a>(
    root: &Path,
    paths: &[&'a str],
    cache: &StatCache,
    now_ns: i128,
) -> Result<Vec<Read<'a>>, IoError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = paths.len().div_ceil(threads).max(64);
    let read_chunk = |chunk: &[&'a str]| -> Result<Vec<Read<'a>>, IoError> {
        chunk
            .iter()
            .map(|path| read_one(root, path, cache, now_ns))
            .collect()
    };
    let parts: Vec<Result<Vec<Read>, IoError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = paths
            .chunks(chunk.max(1))
            .map(|c| scope.spawn(move || read_chunk(c)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut reads = Vec::with_capacity(paths.len());
    for part in parts {
        reads.extend(part?);
    }
    Ok(reads)
}

/// The snapshot of the paths looked at and of those `vouched` for (known
/// unchanged, so not looked at: they keep their cache entries).
fn assemble(looks: Vec<Read<'_>>, vouched: Vec<(&str, Entry)>, cache: &StatCache) -> Snapshot {
    // The cache is unchanged when every entry of it was trusted or kept,
    // and nothing new is to be recorded.
    let hits = looks
        .iter()
        .filter(|r| matches!(r.cached, Cached::Hit))
        .count();
    let kept = vouched
        .iter()
        .filter(|(p, _)| cache.entries.contains_key(*p))
        .count();
    let unchanged = hits + kept == cache.entries.len()
        && !looks.iter().any(|r| matches!(r.cached, Cached::Record(_)));
    let mut updated = (!unchanged).then(StatCache::default);
    let mut live = Vec::with_capacity(looks.len() + vouched.len());
    for read in looks {
        if let Some(updated) = updated.as_mut() {
            let entry = match read.cached {
                Cached::Hit => cache.entries.get(read.path).cloned(),
                Cached::Record(stat) => Some((stat, read.file.entry.clone())),
                Cached::No => None,
            };
            if let Some(entry) = entry {
                updated.entries.insert(read.path.to_string(), entry);
            }
        }
        live.push((read.path.to_string(), read.file));
    }
    for (path, entry) in vouched {
        if let Some(updated) = updated.as_mut()
            && let Some(kept) = cache.entries.get(path)
        {
            updated.entries.insert(path.to_string(), kept.clone());
        }
        live.push((path.to_string(), LiveFile { entry, text: None }));
    }
    Snapshot {
        // Two sorted runs: collecting sorts them cheaply and builds the
        // map in one pass.
        live: live.into_iter().collect(),
        cache: updated,
    }
}

/// Nanoseconds since the Unix epoch, as file timestamps count them.
pub fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn read_one<'a>(
    root: &Path,
    path: &'a str,
    cache: &StatCache,
    now_ns: i128,
) -> Result<Read<'a>, IoError> {
    let full = root.join(path);
    let meta = match std::fs::symlink_metadata(&full) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => None,
        Err(e) => return fs::context(Err(e), "inspect", &full),
    };
    let meta = meta.filter(|m| m.is_file() || m.is_symlink());
    if let Some(meta) = &meta {
        let stat = Stat::of(meta);
        if let Some((_, entry)) = cache.entries.get(path).filter(|(s, _)| *s == stat) {
            return Ok(Read {
                path,
                file: LiveFile {
                    entry: entry.clone(),
                    text: None,
                },
                cached: Cached::Hit,
            });
        }
    }
    let (entry, bytes) = fs::read_entry(&full)?;
    let text = bytes.and_then(|b| String::from_utf8(b).ok());
    // Record the entry only if the path was settled before it was read,
    // and still holds what was stat'ed (the same kind, the same stat).
    let cached = match (&entry, &meta) {
        (Entry::File { .. }, Some(meta)) if meta.is_file() => Some(Stat::of(meta)),
        (Entry::Symlink { .. }, Some(meta)) if meta.is_symlink() => Some(Stat::of(meta)),
        _ => None,
    }
    .filter(|stat| {
        StatCache::settled(stat, now_ns)
            && std::fs::symlink_metadata(&full).is_ok_and(|after| Stat::of(&after) == *stat)
    })
    .map_or(Cached::No, Cached::Record);
    Ok(Read {
        path,
        file: LiveFile { entry, text },
        cached,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_freshly_written_file_is_read_but_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        let snap = read(dir.path(), &strings(&["f"]), &StatCache::default()).unwrap();
        assert_eq!(snap.live["f"].text.as_deref(), Some("x"));
        assert!(
            snap.cache.is_none(),
            "a file changed within the last 2 s must not be trusted later"
        );
    }

    #[test]
    fn settled_files_and_symlinks_are_cached_then_trusted_while_their_stat_holds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        std::os::unix::fs::symlink("/target", dir.path().join("l")).unwrap();
        let paths = strings(&["f", "l", "absent"]);
        // Read as if 3 s later: both have settled.
        let later = now_ns() + 3_000_000_000;
        let snap = read_at(dir.path(), &paths, &StatCache::default(), later).unwrap();
        let cache = snap.cache.expect("settled entries are recorded");
        assert_eq!(
            cache.entries.keys().collect::<Vec<_>>(),
            ["f", "l"],
            "nothing is recorded for an absent path"
        );
        assert_eq!(cache.entries["f"].1, snap.live["f"].entry);
        assert_eq!(
            cache.entries["l"].1,
            Entry::Symlink {
                target: "/target".into()
            }
        );

        // Trusted: a cache entry with the same stat is believed as is, and
        // the cache is unchanged.
        let mut planted = cache.clone();
        let fake = Entry::File {
            sha256: "planted".into(),
            mode: 0o644,
        };
        planted.entries.get_mut("f").unwrap().1 = fake.clone();
        planted.entries.get_mut("l").unwrap().1 = Entry::Symlink {
            target: "/planted".into(),
        };
        let snap = read_at(dir.path(), &paths, &planted, later).unwrap();
        assert_eq!(snap.live["f"].entry, fake);
        assert!(snap.live["f"].text.is_none());
        assert_eq!(
            snap.live["l"].entry,
            Entry::Symlink {
                target: "/planted".into()
            }
        );
        assert!(snap.cache.is_none(), "every entry was trusted");

        // Not trusted: any difference in the stat means reading again.
        planted.entries.get_mut("f").unwrap().0.ino += 1;
        planted.entries.get_mut("l").unwrap().0.ctime_ns -= 1;
        let snap = read_at(dir.path(), &paths, &planted, later).unwrap();
        assert_eq!(snap.live["f"].text.as_deref(), Some("x"));
        assert_eq!(snap.live["l"].entry, cache.entries["l"].1);
        assert_eq!(snap.cache, Some(cache));
    }

    #[test]
    fn each_path_is_read_once_and_stale_entries_leave_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        let later = now_ns() + 3_000_000_000;
        let twice = strings(&["f", "f"]);
        let cache = read_at(dir.path(), &twice, &StatCache::default(), later)
            .unwrap()
            .cache
            .unwrap();
        let snap = read_at(dir.path(), &twice, &cache, later).unwrap();
        assert_eq!(snap.live.len(), 1);
        assert!(snap.cache.is_none(), "one path, one entry, trusted");

        // A path no longer asked about is dropped from the cache.
        let snap = read_at(dir.path(), &strings(&["g"]), &cache, later).unwrap();
        assert_eq!(snap.cache, Some(StatCache::default()));
    }
}
