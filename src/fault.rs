//! Fault injection for the crash-safety and full-disk tests.
//!
//! With the `fault-injection` feature, every [`point`] an apply passes is
//! counted; when the count reaches `CTM_FAULT_AT`, the process aborts on
//! the spot, as a power cut or SIGKILL would stop it. `CTM_FAULT_TRACE=1`
//! prints each point as it passes, so a test can see how many there are.
//! `CTM_FAULT_SLOW_MS=N` sleeps N ms at every point, so that a test can
//! act while a switch is under way. `CTM_FAULT_PAUSE_AT=K` stops at point
//! K instead, for as long as the process
//! lives, so that a test can kill it from outside at a known step (as a
//! dropped session or an administrator would).
//!
//! Every write that takes space (creating a file, a directory, a symlink
//! or a hard link, and writing a file's bytes) asks [`no_space`] first.
//! `CTM_FAULT_NOSPACE_FROM=K` makes the K-th such write and every later
//! one fail, as on a disk that filled up at that moment and stays full;
//! `CTM_FAULT_NOSPACE_ERRNO=EDQUOT` fails them with "Disk quota
//! exceeded" instead of "No space left on device". With
//! `CTM_FAULT_TRACE=1` each of these writes is printed too.
//! `CTM_FAULT_SKIP_SPACE_CHECK=1` skips the check of free space and
//! inodes before a switch, so that a test on a small file system can
//! fill it for real in the middle of one.
//!
//! The settings are read once per process. Without the feature, `point`
//! and `no_space` compile to nothing.

#[cfg(feature = "fault-injection")]
mod injected {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    pub struct Settings {
        pub trace: bool,
        pub at: Option<u64>,
        pub slow_ms: Option<u64>,
        pub pause_at: Option<u64>,
        pub nospace_from: Option<u64>,
        pub nospace_errno: i32,
        pub skip_space_check: bool,
    }

    fn number(name: &str) -> Option<u64> {
        std::env::var(name).ok().and_then(|v| v.parse().ok())
    }

    pub fn settings() -> &'static Settings {
        static SETTINGS: OnceLock<Settings> = OnceLock::new();
        SETTINGS.get_or_init(|| Settings {
            trace: std::env::var_os("CTM_FAULT_TRACE").is_some(),
            at: number("CTM_FAULT_AT"),
            slow_ms: number("CTM_FAULT_SLOW_MS"),
            pause_at: number("CTM_FAULT_PAUSE_AT"),
            nospace_from: number("CTM_FAULT_NOSPACE_FROM"),
            nospace_errno: match std::env::var("CTM_FAULT_NOSPACE_ERRNO").as_deref() {
                Ok("EDQUOT") => nix::libc::EDQUOT,
                _ => nix::libc::ENOSPC,
            },
            skip_space_check: std::env::var_os("CTM_FAULT_SKIP_SPACE_CHECK").is_some(),
        })
    }

    pub static PASSED: AtomicU64 = AtomicU64::new(0);
    pub static WRITES: AtomicU64 = AtomicU64::new(0);

    pub fn next(counter: &AtomicU64) -> u64 {
        counter.fetch_add(1, Ordering::SeqCst) + 1
    }
}

#[cfg(feature = "fault-injection")]
pub fn point(label: &str) {
    let settings = injected::settings();
    let n = injected::next(&injected::PASSED);
    if settings.trace {
        eprintln!("fault point {n}: {label}");
    }
    if settings.at == Some(n) {
        eprintln!("fault injected at point {n}: {label}");
        std::process::abort();
    }
    if let Some(ms) = settings.slow_ms {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    if settings.pause_at == Some(n) {
        eprintln!("paused at fault point {n}: {label}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_label: &str) {}

/// Called before each write that takes space (`what` of `path`): the
/// error of a full disk from the `CTM_FAULT_NOSPACE_FROM`-th on.
#[cfg(feature = "fault-injection")]
pub fn no_space(what: &str, path: &std::path::Path) -> std::io::Result<()> {
    let settings = injected::settings();
    let n = injected::next(&injected::WRITES);
    if settings.trace {
        eprintln!("space write {n}: {what} {}", path.display());
    }
    match settings.nospace_from {
        Some(from) if n >= from => Err(std::io::Error::from_raw_os_error(settings.nospace_errno)),
        _ => Ok(()),
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn no_space(_what: &str, _path: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

/// Whether the check of free space before a switch is to be skipped.
#[cfg(feature = "fault-injection")]
pub fn skip_space_check() -> bool {
    injected::settings().skip_space_check
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn skip_space_check() -> bool {
    false
}

/// Skips a unit test this machine cannot run: said on the real standard
/// error (seen without `--nocapture`, and counted by `.ci/run`), and a
/// failure under CI (`CI` set), as `tests/support`'s `skip_unless` does
/// for the integration tests.
#[cfg(test)]
pub(crate) fn skip_test(why: &str) {
    use std::io::Write as _;
    assert!(
        std::env::var_os("CI").is_none_or(|v| v.is_empty()),
        "CI must run this test, but {why}"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED ({}): {why}",
        std::thread::current().name().unwrap_or("a test")
    );
}
