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

use crate::backend::fs::{self, Entry, IoError};
use crate::plan::LiveFile;

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
    fn of(meta: &std::fs::Metadata) -> Stat {
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

/// Content hashes of files, valid as long as their [`Stat`] is unchanged.
///
/// Sound because every write, truncate, rename onto the path or `chmod`
/// gives the file a new ctime (or a new inode), and user space cannot set
/// ctime. Timestamps are coarser than a fast rewrite, though: a file
/// changed again within the same clock tick keeps its ctime. So a hash is
/// recorded only for a file whose ctime was at least [`Self::SETTLED_NS`]
/// old when it was read; any later change then has a later ctime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatCache {
    pub files: BTreeMap<String, (Stat, String)>,
}

impl StatCache {
    /// Two seconds: far more than the kernel's timestamp tick, and than the
    /// granularity of file systems with coarse times.
    pub const SETTLED_NS: i128 = 2_000_000_000;
}

/// One path read: what is there, and its cache entry if it may have one.
struct Read {
    path: String,
    file: LiveFile,
    cached: Option<(Stat, String)>,
}

/// Reads every path (root-relative) under `root`, trusting `cache` where a
/// file's stat is unchanged, and returns what it found together with the
/// cache for these paths. A file trusted from the cache comes without its
/// text.
pub fn read<'a>(
    root: &Path,
    paths: impl IntoIterator<Item = &'a String>,
    cache: &StatCache,
) -> Result<(BTreeMap<String, LiveFile>, StatCache), IoError> {
    let paths: Vec<&String> = paths.into_iter().collect();
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = paths.len().div_ceil(threads).max(64);
    let read_chunk = |chunk: &[&String]| -> Result<Vec<Read>, IoError> {
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
    let mut live = BTreeMap::new();
    let mut updated = StatCache::default();
    for part in parts {
        for read in part? {
            if let Some(cached) = read.cached {
                updated.files.insert(read.path.clone(), cached);
            }
            live.insert(read.path, read.file);
        }
    }
    Ok((live, updated))
}

fn read_one(root: &Path, path: &str, cache: &StatCache, now_ns: i128) -> Result<Read, IoError> {
    let full = root.join(path);
    let meta = match std::fs::symlink_metadata(&full) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => None,
        Err(e) => return fs::context(Err(e), "inspect", &full),
    };
    if let Some(meta) = meta.as_ref().filter(|m| m.is_file()) {
        let stat = Stat::of(meta);
        if let Some((cached, sha256)) = cache.files.get(path).filter(|(s, _)| *s == stat) {
            let entry = Entry::File {
                sha256: sha256.clone(),
                mode: cached.mode & 0o7777,
            };
            return Ok(Read {
                path: path.to_string(),
                file: LiveFile { entry, text: None },
                cached: Some((stat, sha256.clone())),
            });
        }
    }
    let (entry, bytes) = fs::read_entry(&full)?;
    let text = bytes.and_then(|b| String::from_utf8(b).ok());
    // Record the hash only if the file was settled before it was read, and
    // is still the file that was stat'ed.
    let cached = match (&entry, &meta) {
        (Entry::File { sha256, .. }, Some(meta)) if meta.is_file() => {
            let stat = Stat::of(meta);
            let settled = now_ns - stat.ctime_ns >= StatCache::SETTLED_NS;
            let same = std::fs::symlink_metadata(&full).is_ok_and(|after| Stat::of(&after) == stat);
            (settled && same).then(|| (stat, sha256.clone()))
        }
        _ => None,
    };
    Ok(Read {
        path: path.to_string(),
        file: LiveFile { entry, text },
        cached,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freshly_written_file_is_read_but_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        let (live, cache) = read(dir.path(), [&"f".to_string()], &StatCache::default()).unwrap();
        assert_eq!(live["f"].text.as_deref(), Some("x"));
        assert!(
            cache.files.is_empty(),
            "a file changed within the last 2 s must not be trusted later"
        );
    }

    #[test]
    fn a_settled_file_is_cached_and_then_trusted_while_its_stat_holds() {
        // A file of the system that has not changed for a long time.
        let path = "etc/debian_version".to_string();
        let root = Path::new("/");
        let (live, cache) = read(root, [&path], &StatCache::default()).unwrap();
        let Entry::File { sha256, .. } = &live[&path].entry else {
            panic!("{path} is not a file");
        };
        let (stat, cached_sha) = cache.files.get(&path).expect("a settled file is cached");
        assert_eq!(cached_sha, sha256);

        // Trusted: a cache entry with the same stat is believed as is.
        let mut planted = StatCache::default();
        planted
            .files
            .insert(path.clone(), (*stat, "planted".into()));
        let (live, _) = read(root, [&path], &planted).unwrap();
        assert!(matches!(&live[&path].entry, Entry::File { sha256, .. } if sha256 == "planted"));
        assert!(live[&path].text.is_none());

        // Not trusted: any difference in the stat means reading again.
        planted.files.insert(
            path.clone(),
            (
                Stat {
                    ino: stat.ino + 1,
                    ..*stat
                },
                "planted".into(),
            ),
        );
        let (live, _) = read(root, [&path], &planted).unwrap();
        assert!(matches!(&live[&path].entry, Entry::File { sha256: s, .. } if s == sha256));
    }
}
