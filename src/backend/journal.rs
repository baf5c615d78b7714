//! A container's journal, read with `journalctl`: the one place that
//! decides how. The command line runs the command in its place; the web
//! server streams its output.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::layout;

/// Which part of a container's log to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    /// A valid container name (it cannot start with `-`, so it never
    /// passes for an option).
    pub name: String,
    /// Keep printing new entries as they come.
    pub follow: bool,
    /// How many of the last entries to show.
    pub lines: u32,
    /// The host's log of the container's unit (systemd-nspawn's own
    /// messages and the boot console) instead of the container's journal.
    pub unit: bool,
    /// Only entries since this time, as journalctl reads it (`-1h`,
    /// `2026-12-03 10:00`, `today`).
    pub since: Option<String>,
    /// Only entries whose message matches this pattern (journalctl's
    /// `--grep`, a PCRE2 pattern).
    pub grep: Option<String>,
}

impl LogQuery {
    /// Refuses a value journalctl would not take as one argument.
    pub fn check(&self) -> Result<(), String> {
        for (what, value) in [("--since", &self.since), ("--grep", &self.grep)] {
            if let Some(v) = value
                && (v.is_empty() || v.chars().any(char::is_control))
            {
                return Err(format!(
                    "{what} takes a non-empty value without control characters"
                ));
            }
        }
        Ok(())
    }
}

/// Where a container's journal comes from.
pub trait Journal: Send + Sync {
    /// The command that prints the entries `query` asks for, one a line;
    /// `None` when there is no journal to read (not the running system).
    fn command(&self, query: &LogQuery) -> Option<Command>;

    /// The last `lines` entries of container `name`'s journal; `None`
    /// when there is no journal to read. Runs [`Journal::command`] and
    /// waits for it, at most 5 s.
    fn last_lines(&self, name: &str, lines: u32) -> Option<Result<Vec<String>, String>> {
        let query = LogQuery {
            name: name.to_string(),
            follow: false,
            lines,
            unit: false,
            since: None,
            grep: None,
        };
        let command = self.command(&query)?;
        Some(read_lines(command, std::time::Duration::from_secs(5)))
    }
}

/// Runs `command` and returns the lines it prints, killing it if it takes
/// longer than `limit`.
fn read_lines(mut command: Command, limit: std::time::Duration) -> Result<Vec<String>, String> {
    use std::io::Read as _;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run journalctl: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("journalctl has no output")?;
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("journalctl took longer than {} s", limit.as_secs()));
            }
            Err(e) => return Err(format!("journalctl: {e}")),
        }
    };
    let bytes = reader.join().unwrap_or_default();
    if !status.success() {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        return Err(format!("journalctl failed ({status}): {}", stderr.trim()));
    }
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .map(|l| l.replace('\r', ""))
        .collect())
}

/// No journal: a root that is not the running system.
pub struct NoJournal;

impl Journal for NoJournal {
    fn command(&self, _query: &LogQuery) -> Option<Command> {
        None
    }
}

/// `journalctl` on the running system: a running container's own journal
/// through machined (`--machine`), a stopped one's from its root file
/// system (`--root`), and the unit's log on the host when asked for it,
/// when the container has no tree yet, or when it is an application
/// container.
pub struct Journalctl {
    /// The root the containers' trees are under (`/`).
    pub root: PathBuf,
}

impl Journal for Journalctl {
    fn command(&self, query: &LogQuery) -> Option<Command> {
        let name = query.name.as_str();
        let mut command = Command::new("journalctl");
        command.args(["--no-pager", "--output", "short-iso", "--lines"]);
        command.arg(query.lines.to_string());
        if query.follow {
            command.arg("--follow");
        }
        // Each as one `--option=value` argument: a value starting with
        // `-` cannot pass for another option.
        if let Some(since) = &query.since {
            command.arg(format!("--since={since}"));
        }
        if let Some(grep) = &query.grep {
            command.arg(format!("--grep={grep}"));
        }
        let tree = self.root.join(layout::machine_dir(name));
        // machined keeps a state file for each registered machine.
        let running = Path::new(&layout::machine_state_file(name)).exists();
        // An application container (`Boot=no`) has no journal of its
        // own: what its command writes is in the unit's log.
        let settings = self.root.join(format!("etc/systemd/nspawn/{name}.nspawn"));
        let application = std::fs::read_to_string(settings)
            .is_ok_and(|text| text.lines().any(|l| l == "Boot=no"));
        if query.unit || application || (!running && !tree.is_dir()) {
            command.arg("--unit").arg(layout::unit(name));
        } else if running {
            command.arg("--machine").arg(name);
        } else {
            command.arg("--root").arg(tree);
        }
        Some(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(journal: &Journalctl, query: &LogQuery) -> Vec<String> {
        journal
            .command(query)
            .unwrap()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_stopped_container_is_read_from_its_tree_or_else_its_unit() {
        let root = tempfile::tempdir().unwrap();
        let journal = Journalctl {
            root: root.path().to_path_buf(),
        };
        let mut query = LogQuery {
            name: "ctm-test-no-such-machine".into(),
            follow: true,
            lines: 20,
            unit: false,
            since: None,
            grep: None,
        };
        assert_eq!(
            args(&journal, &query)[4..],
            [
                "20",
                "--follow",
                "--unit",
                "systemd-nspawn@ctm-test-no-such-machine.service"
            ]
        );
        let tree = root
            .path()
            .join(layout::machine_dir("ctm-test-no-such-machine"));
        std::fs::create_dir_all(&tree).unwrap();
        query.follow = false;
        assert_eq!(
            args(&journal, &query)[4..],
            ["20", "--root", tree.to_str().unwrap()]
        );
        query.unit = true;
        assert_eq!(
            args(&journal, &query)[5..],
            ["--unit", "systemd-nspawn@ctm-test-no-such-machine.service"]
        );
        query.since = Some("-1h".into());
        query.grep = Some("--fail".into());
        assert_eq!(
            args(&journal, &query)[5..7],
            ["--since=-1h", "--grep=--fail"]
        );
        assert!(query.check().is_ok());
        query.grep = Some("a\nb".into());
        assert!(query.check().unwrap_err().contains("--grep"));
    }
}
