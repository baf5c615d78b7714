//! What this host runs, for `ctm info`: programs' versions, the kernel,
//! the cgroup layout and user namespaces.

use std::path::Path;
use std::process::Command;

/// The first line a program prints to standard output, trimmed; `None`
/// when it cannot run.
pub fn first_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

/// The kernel's release (`6.1.0-27-amd64`).
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The cgroup layout, and whether it is the unified (v2) tree.
pub fn cgroup_layout() -> (String, bool) {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        ("v2 (unified)".into(), true)
    } else if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        (
            "hybrid (v1 with v2 at /sys/fs/cgroup/unified)".into(),
            false,
        )
    } else {
        ("v1".into(), false)
    }
}

/// The sources of host names glibc asks, in order (the `hosts:` line of
/// `/etc/nsswitch.conf`); `None` when there is no such line.
pub fn nss_hosts() -> Option<Vec<String>> {
    let text = std::fs::read_to_string("/etc/nsswitch.conf").ok()?;
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .find_map(|l| l.trim_start().strip_prefix("hosts:"))
        .map(|rest| rest.split_whitespace().map(str::to_string).collect())
}

/// How many user namespaces may exist; `None` when unknown.
pub fn max_user_namespaces() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}
