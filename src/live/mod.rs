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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatCache {
    pub entries: BTreeMap<String, (Stat, Entry)>,
}

impl StatCache {
    /// Two seconds: far more than the kernel's timestamp tick, and than the
    /// granularity of file systems with coarse times.
    pub const SETTLED_NS: i128 = 2_000_000_000;

    /// The start of the cache as [`Self::encode`] writes it.
    const HEADER: &[u8] = b"ctm stat cache 3\n";
    /// Its end: a cache cut short (a crash before it reached the disk)
    /// lacks it.
    const TRAILER: &[u8] = b"end\n";

    /// Whether a path with this stat, read at `now_ns`, may be recorded.
    pub fn settled(stat: &Stat, now_ns: i128) -> bool {
        now_ns - stat.ctime_ns >= Self::SETTLED_NS
    }

    /// The cache in a binary form, read back by [`Self::decode`] with no
    /// parsing of text (a plan reads it every time; as text, one path a
    /// line, it was a fifth of a no-op plan's CPU at 5,000 containers):
    ///
    /// ```text
    /// HEADER  COUNT:u64
    /// COUNT × ( PATH_LEN:u32 PATH  DEV:u64 INO:u64 SIZE:u64 MODE:u32
    ///           MTIME_NS:i64 CTIME_NS:i64
    ///           ( 'f' SHA256:[u8; 32] MODE:u32 | 'l' TARGET_LEN:u32 TARGET ) )
    /// TRAILER
    /// ```
    ///
    /// little-endian, paths in strictly ascending order. An entry that
    /// does not fit (a time past 2262, a hash that is not 64 hex digits)
    /// is left out: it is read again, as if never cached.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::HEADER.len() + 8 + self.entries.len() * 160);
        out.extend_from_slice(Self::HEADER);
        out.extend_from_slice(&0u64.to_le_bytes());
        let mut count: u64 = 0;
        let mut sha = [0u8; 32];
        for (path, (stat, entry)) in &self.entries {
            let (Ok(mtime), Ok(ctime)) =
                (i64::try_from(stat.mtime_ns), i64::try_from(stat.ctime_ns))
            else {
                continue;
            };
            let Ok(path_len) = u32::try_from(path.len()) else {
                continue;
            };
            match entry {
                Entry::File { sha256, .. } if !unhex(sha256, &mut sha) => continue,
                Entry::Symlink { target } if u32::try_from(target.len()).is_err() => continue,
                Entry::File { .. } | Entry::Symlink { .. } => {}
                // Only files and symlinks are recorded.
                Entry::Absent | Entry::Other => continue,
            }
            out.extend_from_slice(&path_len.to_le_bytes());
            out.extend_from_slice(path.as_bytes());
            out.extend_from_slice(&stat.dev.to_le_bytes());
            out.extend_from_slice(&stat.ino.to_le_bytes());
            out.extend_from_slice(&stat.size.to_le_bytes());
            out.extend_from_slice(&stat.mode.to_le_bytes());
            out.extend_from_slice(&mtime.to_le_bytes());
            out.extend_from_slice(&ctime.to_le_bytes());
            match entry {
                Entry::File { mode, .. } => {
                    out.push(b'f');
                    out.extend_from_slice(&sha);
                    out.extend_from_slice(&mode.to_le_bytes());
                }
                Entry::Symlink { target } => {
                    out.push(b'l');
                    out.extend_from_slice(&(target.len() as u32).to_le_bytes());
                    out.extend_from_slice(target.as_bytes());
                }
                Entry::Absent | Entry::Other => {}
            }
            count += 1;
        }
        out[Self::HEADER.len()..Self::HEADER.len() + 8].copy_from_slice(&count.to_le_bytes());
        out.extend_from_slice(Self::TRAILER);
        out
    }

    /// The cache [`Self::encode`] wrote; `None` for anything else (a
    /// torn or foreign file, or one of an older ctm, is no cache: its
    /// files are read again).
    pub fn decode(bytes: &[u8]) -> Option<StatCache> {
        let body = bytes
            .strip_prefix(Self::HEADER)?
            .strip_suffix(Self::TRAILER)?;
        let mut reader = Reader(body);
        let count = reader.u64()?;
        // Each entry takes 50 bytes at least: a hostile count cannot make
        // a large allocation.
        let mut entries = Vec::with_capacity(usize::try_from(count).ok()?.min(body.len() / 50));
        let mut previous: Option<&str> = None;
        for _ in 0..count {
            let path = reader.text()?;
            if previous.is_some_and(|p| p >= path) {
                return None;
            }
            previous = Some(path);
            let stat = Stat {
                dev: reader.u64()?,
                ino: reader.u64()?,
                size: reader.u64()?,
                mode: reader.u32()?,
                mtime_ns: i128::from(reader.u64()? as i64),
                ctime_ns: i128::from(reader.u64()? as i64),
            };
            let entry = match reader.take(1)? {
                b"f" => Entry::File {
                    sha256: fs::hex(reader.take(32)?),
                    mode: reader.u32()?,
                },
                b"l" => Entry::Symlink {
                    target: reader.text()?.to_string(),
                },
                _ => return None,
            };
            entries.push((path.to_string(), (stat, entry)));
        }
        if !reader.0.is_empty() {
            return None;
        }
        // In ascending order: `collect` builds the map in one pass.
        Some(StatCache {
            entries: entries.into_iter().collect(),
        })
    }
}

/// Reads [`StatCache::encode`]'s fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A length, then that many bytes of UTF-8.
    fn text(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.u32()?).ok()?;
        std::str::from_utf8(self.take(len)?).ok()
    }
}

/// The 32 bytes that 64 lowercase hex digits spell, into `out`; false
/// for anything else.
fn unhex(hex: &str, out: &mut [u8; 32]) -> bool {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return false;
    }
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(high), Some(low)) => *byte = high << 4 | low,
            _ => return false,
        }
    }
    true
}

/// The live files at a plan's paths, and the stat cache for those paths.
pub struct Snapshot {
    pub live: BTreeMap<String, LiveFile>,
    /// The cache for exactly these paths; `None` when that is the cache
    /// the snapshot was taken with, unchanged (nothing to save).
    pub cache: Option<StatCache>,
}

impl Snapshot {
    /// This snapshot and `more`, both taken with `cache` and of paths
    /// that no two share: a plan reads the current manifest's paths ahead,
    /// and then only the desired paths that the manifest lacks (at 5,000
    /// containers, a new file named read all 33,000 paths again).
    pub fn joined(self, more: Snapshot, cache: &StatCache) -> Snapshot {
        let mut live = self.live;
        live.extend(more.live);
        let cache = match (self.cache, more.cache) {
            // The usual case: the new paths are not there yet, so nothing
            // of them is cached, and the cache for all is this one's.
            (mine, Some(theirs)) if theirs.entries.is_empty() => mine,
            (None, None) => None,
            (mine, theirs) => {
                let mut all = mine.unwrap_or_else(|| cache.clone());
                all.entries
                    .extend(theirs.unwrap_or_else(|| cache.clone()).entries);
                Some(all)
            }
        };
        Snapshot { live, cache }
    }
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
    let read_chunk = |chunk: &[&'a str]| -> Result<Vec<Read<'a>>, IoError> {
        use std::os::unix::ffi::OsStrExt as _;
        // The paths are sorted, and so is the cache: one walk through both
        // rather than a lookup (of long, alike keys) per path; and one
        // buffer for the full paths.
        let Some(first) = chunk.first() else {
            return Ok(Vec::new());
        };
        let mut cached = cache
            .entries
            .range::<str, _>((
                std::ops::Bound::Included(*first),
                std::ops::Bound::Unbounded,
            ))
            .peekable();
        let mut full = root.as_os_str().as_bytes().to_vec();
        full.push(b'/');
        let base = full.len();
        chunk
            .iter()
            .map(|path| {
                while cached.next_if(|(k, _)| k.as_str() < *path).is_some() {}
                let hit = cached.next_if(|(k, _)| k.as_str() == *path).map(|(_, v)| v);
                full.truncate(base);
                full.extend_from_slice(path.as_bytes());
                read_one(
                    Path::new(std::ffi::OsStr::from_bytes(&full)),
                    path,
                    hit,
                    now_ns,
                )
            })
            .collect()
    };
    // Sixty-four paths at least to a run: a thread costs as much as
    // looking at a few dozen.
    let parts = crate::cores::in_runs(paths, 64, 8, read_chunk);
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

/// Looks at `full`, the root-relative `path` under the root, which the
/// cache holds as `cached`, if at all.
fn read_one<'a>(
    full: &Path,
    path: &'a str,
    cached: Option<&(Stat, Entry)>,
    now_ns: i128,
) -> Result<Read<'a>, IoError> {
    let meta = match std::fs::symlink_metadata(full) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => None,
        Err(e) => return fs::context(Err(e), "inspect", full),
    };
    let meta = meta.filter(|m| m.is_file() || m.is_symlink());
    if let Some(meta) = &meta {
        let stat = Stat::of(meta);
        if let Some((_, entry)) = cached.filter(|(s, _)| *s == stat) {
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
    let (entry, bytes) = fs::read_entry(full)?;
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
            && std::fs::symlink_metadata(full).is_ok_and(|after| Stat::of(&after) == *stat)
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
    fn the_cache_reads_back_what_it_wrote_and_nothing_else() {
        let stat = |ino| Stat {
            dev: 2049,
            ino,
            size: 700,
            mode: 0o100644,
            mtime_ns: 1_700_000_000_123_456_789,
            ctime_ns: -5,
        };
        let mut cache = StatCache::default();
        cache.entries.insert(
            "etc/a b.conf".into(),
            (
                stat(1),
                Entry::File {
                    sha256: "ab".repeat(32),
                    mode: 0o640,
                },
            ),
        );
        cache.entries.insert(
            "etc/odd\tname\\x\n".into(),
            (
                stat(2),
                Entry::Symlink {
                    target: "/t\\\n".into(),
                },
            ),
        );
        let bytes = cache.encode();
        assert_eq!(StatCache::decode(&bytes), Some(cache.clone()));
        assert_eq!(
            StatCache::decode(&StatCache::default().encode()),
            Some(StatCache::default())
        );
        // Of another format, the text one of older ctm among them: no cache.
        assert_eq!(StatCache::decode(b"{\"entries\": {}}"), None);
        assert_eq!(StatCache::decode(b"ctm stat cache 2\nend 0\n"), None);
        // Cut anywhere short of its end, or with more after it: no cache.
        for cut in 0..bytes.len() {
            assert_eq!(StatCache::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.insert(bytes.len() - 4, 0);
        assert_eq!(StatCache::decode(&longer), None);
        // Garbled: a byte changed anywhere is refused, or read as a cache
        // of the same shape (a changed byte of a path, a stat or a hash
        // still reads, as it would in any format without a checksum).
        // Never a panic, nor a huge allocation from a garbled count.
        for at in 0..bytes.len() {
            for byte in [0, 1, b'f', b'l', 0x7f, 0xff] {
                let mut garbled = bytes.clone();
                garbled[at] = byte;
                if let Some(read) = StatCache::decode(&garbled) {
                    assert_eq!(read.entries.len(), 2, "byte {at} as {byte}");
                }
            }
        }
        // Paths out of order, or one twice: not what encode writes.
        let swapped = |first: &str, second: &str| {
            let mut swapped = bytes.clone();
            let at = |p: &str| {
                bytes
                    .windows(p.len())
                    .position(|w| w == p.as_bytes())
                    .unwrap()
            };
            let (i, j) = (at(first), at(second));
            swapped[j..j + first.len()].copy_from_slice(first.as_bytes());
            swapped[i..i + first.len()].copy_from_slice(&bytes[j..j + first.len()]);
            swapped
        };
        assert_eq!(StatCache::decode(&swapped("etc/a", "etc/o")), None);
    }

    #[test]
    fn what_the_cache_cannot_hold_is_left_out_and_read_again() {
        let stat = Stat {
            dev: 1,
            ino: 1,
            size: 1,
            mode: 0o100644,
            mtime_ns: 0,
            ctime_ns: 0,
        };
        let file = |sha256: &str| {
            (
                stat,
                Entry::File {
                    sha256: sha256.into(),
                    mode: 0o644,
                },
            )
        };
        let mut cache = StatCache::default();
        cache.entries.insert("kept".into(), file(&"0f".repeat(32)));
        cache.entries.insert("upper".into(), file(&"0F".repeat(32)));
        cache.entries.insert("short".into(), file("0f"));
        let mut late = file(&"0f".repeat(32));
        late.0.ctime_ns = i128::from(i64::MAX) + 1;
        cache.entries.insert("late".into(), late);
        cache.entries.insert("absent".into(), (stat, Entry::Absent));
        let read = StatCache::decode(&cache.encode()).unwrap();
        assert_eq!(read.entries.keys().collect::<Vec<_>>(), ["kept"]);
        assert_eq!(read.entries["kept"], cache.entries["kept"]);
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
    fn two_snapshots_joined_are_one_snapshot_of_all_their_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        std::fs::write(dir.path().join("g"), "y").unwrap();
        let later = now_ns() + 3_000_000_000;
        let read = |paths: &[&str], cache: &StatCache| {
            read_at(dir.path(), &strings(paths), cache, later).unwrap()
        };
        let cache_of =
            |paths: &[&str]| read(paths, &StatCache::default()).cache.unwrap_or_default();
        // Whatever the cache held before: nothing, some of the paths, all
        // of them, or more.
        for cache in [
            StatCache::default(),
            cache_of(&["f"]),
            cache_of(&["g"]),
            cache_of(&["f", "g"]),
        ] {
            let whole = read(&["f", "g", "h"], &cache);
            for (one, other) in [(&["f"][..], &["g", "h"][..]), (&["f", "g"], &["h"])] {
                let joined = read(one, &cache).joined(read(other, &cache), &cache);
                let texts = |s: &Snapshot| {
                    s.live
                        .iter()
                        .map(|(p, f)| (p.clone(), f.entry.clone()))
                        .collect::<Vec<_>>()
                };
                assert_eq!(texts(&joined), texts(&whole), "{one:?} + {other:?}");
                assert_eq!(
                    joined.cache.clone().unwrap_or_else(|| cache.clone()),
                    whole.cache.clone().unwrap_or_else(|| cache.clone()),
                    "{one:?} + {other:?} from {:?}",
                    cache.entries.keys().collect::<Vec<_>>()
                );
            }
        }
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
