//! What a running container uses, read where the kernel counts it: its
//! cgroup (CPU, memory, block I/O, tasks) and its network namespace
//! (bytes and packets on its interfaces).
//!
//! Only the unified (v2) cgroup tree is read. On a v1 or hybrid host the
//! container's v2 cgroup exists but its controllers live in the v1
//! hierarchies, so only what v2 counts without them (CPU time) is there;
//! every figure that is missing says why, rather than reading as zero.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// One sample of a container's use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// CPU time used since the container started, in microseconds.
    pub cpu_usec: Option<u64>,
    pub memory: Option<Memory>,
    pub io: Option<Io>,
    pub pids: Option<Pids>,
    pub network: Option<Network>,
    /// What could not be read, and why (`memory: …`).
    pub unavailable: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Memory {
    pub current_bytes: u64,
    /// The most it has used (Linux 5.19 and later).
    pub peak_bytes: Option<u64>,
    /// `None`: no limit.
    pub limit_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Io {
    pub read_bytes: u64,
    pub write_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pids {
    pub current: u64,
    /// `None`: no limit.
    pub limit: Option<u64>,
}

/// Counted on the container's own interfaces (all but loopback), in its
/// network namespace: what it received and sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// The unified cgroup tree: `/sys/fs/cgroup` on a v2 host, its
/// `unified` part on a hybrid one.
pub fn unified_root(sys_fs_cgroup: &Path) -> Option<PathBuf> {
    [sys_fs_cgroup.to_path_buf(), sys_fs_cgroup.join("unified")]
        .into_iter()
        .find(|p| p.join("cgroup.procs").exists())
}

/// The v2 cgroup of the unit that runs a container whose leader is
/// `leader`: from `/proc/LEADER/cgroup`, up to its `.service` part (the
/// container's payload is a child of it).
pub fn container_cgroup(proc: &Path, unified: &Path, leader: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(proc.join(leader.to_string()).join("cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mut unit = PathBuf::from(unified);
    for part in path.trim_start_matches('/').split('/') {
        // A path from the kernel; `..` cannot appear, but nothing here
        // may climb out of the tree either.
        if part.is_empty() || part == "." || part == ".." {
            return None;
        }
        unit.push(part);
        if part.ends_with(".service") {
            return Some(unit);
        }
    }
    Some(unit)
}

fn read(dir: &Path, file: &str) -> Result<String, String> {
    std::fs::read_to_string(dir.join(file)).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "{file} is missing: its controller is not enabled for this cgroup (on a v1 or hybrid host the controllers are in the v1 hierarchies)"
        ),
        _ => format!("{}: {e}", dir.join(file).display()),
    })
}

fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// `max` means no limit.
fn limit(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => None,
        n => n.parse().ok(),
    }
}

fn keyed<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
}

/// Reads one sample from the cgroup `cgroup` and the network namespace of
/// process `leader` (through `proc`).
pub fn sample(cgroup: &Path, proc: &Path, leader: u32) -> Stats {
    let mut stats = Stats::default();
    let mut unavailable = Vec::new();
    match read(cgroup, "cpu.stat") {
        Ok(text) => stats.cpu_usec = keyed(&text, "usage_usec").and_then(number),
        Err(why) => unavailable.push(format!("cpu: {why}")),
    }
    match read(cgroup, "memory.current") {
        Ok(current) => {
            stats.memory = number(&current).map(|current_bytes| Memory {
                current_bytes,
                peak_bytes: read(cgroup, "memory.peak").ok().as_deref().and_then(number),
                limit_bytes: read(cgroup, "memory.max").ok().as_deref().and_then(limit),
            })
        }
        Err(why) => unavailable.push(format!("memory: {why}")),
    }
    match read(cgroup, "io.stat") {
        Ok(text) => {
            // One line per device: `8:0 rbytes=… wbytes=… rios=…`.
            let mut io = Io {
                read_bytes: 0,
                write_bytes: 0,
            };
            for field in text.split_whitespace() {
                if let Some(n) = field.strip_prefix("rbytes=").and_then(number) {
                    io.read_bytes += n;
                } else if let Some(n) = field.strip_prefix("wbytes=").and_then(number) {
                    io.write_bytes += n;
                }
            }
            stats.io = Some(io);
        }
        Err(why) => unavailable.push(format!("io: {why}")),
    }
    match read(cgroup, "pids.current") {
        Ok(current) => {
            stats.pids = number(&current).map(|current| Pids {
                current,
                limit: read(cgroup, "pids.max").ok().as_deref().and_then(limit),
            })
        }
        Err(why) => unavailable.push(format!("pids: {why}")),
    }
    match std::fs::read_to_string(proc.join(leader.to_string()).join("net/dev")) {
        Ok(text) => stats.network = Some(network(&text)),
        Err(e) => unavailable.push(format!(
            "network: cannot read its /proc/{leader}/net/dev: {e}"
        )),
    }
    stats.unavailable = unavailable;
    stats
}

/// Sums `/proc/PID/net/dev` over every interface but loopback.
fn network(text: &str) -> Network {
    let mut net = Network {
        rx_bytes: 0,
        tx_bytes: 0,
        rx_packets: 0,
        tx_packets: 0,
    };
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let fields: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        // rx: bytes packets errs drop fifo frame compressed multicast;
        // then tx: bytes packets …
        if fields.len() >= 10 {
            net.rx_bytes += fields[0];
            net.rx_packets += fields[1];
            net.tx_bytes += fields[8];
            net.tx_packets += fields[9];
        }
    }
    net
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn a_v2_cgroup_gives_every_figure() {
        let root = tempfile::tempdir().unwrap();
        let (sys, proc) = (root.path().join("sys"), root.path().join("proc"));
        write(&sys, "cgroup.procs", "");
        write(
            &proc.join("42"),
            "cgroup",
            "0::/machine.slice/systemd-nspawn@web.service/payload\n",
        );
        let unit = sys.join("machine.slice/systemd-nspawn@web.service");
        write(&unit, "cpu.stat", "usage_usec 2500000\nuser_usec 2000000\n");
        write(&unit, "memory.current", "52428800\n");
        write(&unit, "memory.peak", "60000000\n");
        write(&unit, "memory.max", "max\n");
        write(
            &unit,
            "io.stat",
            "8:0 rbytes=4096 wbytes=8192 rios=1\n254:0 rbytes=1 wbytes=2\n",
        );
        write(&unit, "pids.current", "7\n");
        write(&unit, "pids.max", "512\n");
        write(
            &proc.join("42/net"),
            "dev",
            "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
             lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  \
             host0:    5000      50    0    0    0     0          0         0     3000      30    0    0    0     0       0          0\n",
        );
        let unified = unified_root(&sys).unwrap();
        let cgroup = container_cgroup(&proc, &unified, 42).unwrap();
        assert_eq!(cgroup, unit);
        let s = sample(&cgroup, &proc, 42);
        assert_eq!(s.cpu_usec, Some(2_500_000));
        assert_eq!(
            s.memory,
            Some(Memory {
                current_bytes: 52428800,
                peak_bytes: Some(60000000),
                limit_bytes: None
            })
        );
        assert_eq!(
            s.io,
            Some(Io {
                read_bytes: 4097,
                write_bytes: 8194
            })
        );
        assert_eq!(
            s.pids,
            Some(Pids {
                current: 7,
                limit: Some(512)
            })
        );
        assert_eq!(
            s.network,
            Some(Network {
                rx_bytes: 5000,
                tx_bytes: 3000,
                rx_packets: 50,
                tx_packets: 30
            })
        );
        assert!(s.unavailable.is_empty(), "{:?}", s.unavailable);
    }

    #[test]
    fn a_hybrid_host_says_what_it_cannot_count() {
        let root = tempfile::tempdir().unwrap();
        let (sys, proc) = (root.path().join("sys"), root.path().join("proc"));
        write(&sys.join("unified"), "cgroup.procs", "");
        write(
            &proc.join("7"),
            "cgroup",
            "0::/machine.slice/systemd-nspawn@db.service\n",
        );
        let unit = sys.join("unified/machine.slice/systemd-nspawn@db.service");
        write(&unit, "cpu.stat", "usage_usec 10\n");
        let unified = unified_root(&sys).unwrap();
        let s = sample(&container_cgroup(&proc, &unified, 7).unwrap(), &proc, 7);
        assert_eq!(s.cpu_usec, Some(10));
        assert_eq!(s.memory, None);
        let said = s.unavailable.join("\n");
        assert!(
            said.contains("memory: memory.current is missing: its controller is not enabled"),
            "{said}"
        );
        assert!(said.contains("io: io.stat is missing"), "{said}");
        assert!(said.contains("pids: pids.current is missing"), "{said}");
        assert!(
            said.contains("network: cannot read its /proc/7/net/dev"),
            "{said}"
        );
    }

    #[test]
    fn a_cgroup_path_cannot_climb_out_of_the_tree() {
        let root = tempfile::tempdir().unwrap();
        let proc = root.path().join("proc");
        write(&proc.join("9"), "cgroup", "0::/machine.slice/../../etc\n");
        assert_eq!(container_cgroup(&proc, root.path(), 9), None);
    }
}
