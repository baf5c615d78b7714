//! What each container uses of the machine, as its cgroup counts it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::layout;

/// A container's use of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// CPU time used since the container started, in microseconds; the
    /// dashboard turns two samples into a percentage.
    pub cpu_usec: u64,
    pub memory_bytes: u64,
}

/// Where resource use comes from: the cgroup tree on the running system;
/// a fixed table in tests.
pub trait Resources: Send + Sync {
    /// `None` when nothing is known (not running, or not the live system).
    fn usage(&self, machine: &str) -> Option<Usage>;
}

/// A root that is not the running system: no cgroups to read.
pub struct NoResources;

impl Resources for NoResources {
    fn usage(&self, _machine: &str) -> Option<Usage> {
        None
    }
}

/// The cgroup v2 tree: `BASE/machine.slice/systemd-nspawn@NAME.service/`.
pub struct Cgroups {
    base: PathBuf,
}

impl Cgroups {
    pub fn new(base: &Path) -> Cgroups {
        Cgroups {
            base: base.to_path_buf(),
        }
    }
}

impl Resources for Cgroups {
    fn usage(&self, machine: &str) -> Option<Usage> {
        let dir = self.base.join("machine.slice").join(layout::unit(machine));
        let cpu = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
        let cpu_usec = cpu
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))?
            .trim()
            .parse()
            .ok()?;
        let memory_bytes = std::fs::read_to_string(dir.join("memory.current"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some(Usage {
            cpu_usec,
            memory_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_usage_is_read_from_the_machine_slice() {
        let dir = tempfile::tempdir().unwrap();
        let unit = dir.path().join("machine.slice/systemd-nspawn@web.service");
        std::fs::create_dir_all(&unit).unwrap();
        std::fs::write(
            unit.join("cpu.stat"),
            "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n",
        )
        .unwrap();
        std::fs::write(unit.join("memory.current"), "52428800\n").unwrap();
        let cgroups = Cgroups::new(dir.path());
        assert_eq!(
            cgroups.usage("web"),
            Some(Usage {
                cpu_usec: 123456,
                memory_bytes: 52428800
            })
        );
        assert_eq!(cgroups.usage("stopped"), None);
    }
}
