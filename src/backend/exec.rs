//! Running a command inside a running container: `nsenter` into every
//! namespace of the container's leader (as machined reports it), with a
//! clean environment, a time limit, and the output streamed line by line
//! and kept.
//!
//! Why `nsenter` and not `systemd-run --machine`: it needs nothing inside
//! the container (no D-Bus daemon, which minimal images lack), and a
//! container that booted without networking can still be fixed from here.

use std::io::{BufRead as _, BufReader, Read};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::SystemError;

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Whether `program` is on the `PATH` ctm runs commands with.
pub fn installed(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    PATH.split(':').any(|dir| {
        std::fs::metadata(std::path::Path::new(dir).join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// The exit code; `None` if it was killed (by the time limit or a signal).
    pub code: Option<i32>,
    pub timed_out: bool,
    /// Standard output and error, interleaved as they arrived.
    pub output: String,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The end of the output, for an error message.
    pub fn tail(&self, lines: usize) -> String {
        let all: Vec<&str> = self.output.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn describe(&self) -> String {
        match (self.code, self.timed_out) {
            (_, true) => "timed out".into(),
            (Some(code), _) => format!("exit status {code}"),
            (None, _) => "killed by a signal".into(),
        }
    }
}

/// Runs `argv` inside the container whose leader is `leader`, as root.
pub fn in_container(
    leader: u32,
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
    on_line: &mut dyn FnMut(&str),
) -> Result<Ran, SystemError> {
    in_container_with_input(leader, argv, env, None, timeout, on_line)
}

/// As [`in_container`], with `input` on the command's standard input.
pub fn in_container_with_input(
    leader: u32,
    argv: &[String],
    env: &[(String, String)],
    input: Option<&[u8]>,
    timeout: Duration,
    on_line: &mut dyn FnMut(&str),
) -> Result<Ran, SystemError> {
    let command = command_in(leader, argv, env, None);
    run(command, input, timeout, on_line).map_err(|why| SystemError {
        what: format!("running `{}` in the container", argv.join(" ")),
        why,
    })
}

/// The command that runs `argv` inside the container whose leader is
/// `leader`, as root, in `workdir` (the leader's own when `None`), with a
/// clean environment: a standard `PATH`, `HOME`, `LANG`, then `env`. The
/// caller decides how to run it (its output read, or attached to a pty).
///
/// The working directory is changed to inside the container, by its own
/// shell: `nsenter --wd=DIR` would open DIR on the host before entering,
/// and a path through the container's root from outside would follow the
/// container's symlinks on the host.
///
/// The command joins the container's unit cgroup (its `supervisor`
/// part, beside the payload that the container's own systemd manages)
/// before it runs: `nsenter` enters the namespaces only, and a process
/// left in the caller's cgroup would escape the container's limits, its
/// accounting and the freezer (`ctm pause`).
pub fn command_in(
    leader: u32,
    argv: &[String],
    env: &[(String, String)],
    workdir: Option<&str>,
) -> Command {
    let mut command = Command::new("nsenter");
    if let Some(procs) = supervisor_procs(leader) {
        // SAFETY: between fork and exec only open(2), write(2) and
        // close(2) run, on a path made before the fork.
        unsafe {
            command.pre_exec(move || {
                let fd =
                    nix::libc::open(procs.as_ptr(), nix::libc::O_WRONLY | nix::libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" moves the process that writes it.
                let written = nix::libc::write(fd, b"0".as_ptr().cast(), 1);
                nix::libc::close(fd);
                if written < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    command
        .arg(format!("--target={leader}"))
        .args(["--all", "--root", "--wd", "--"]);
    if let Some(dir) = workdir {
        command.args([
            "/bin/sh",
            "-c",
            "cd -- \"$1\" && shift && exec \"$@\"",
            "sh",
            dir,
        ]);
    }
    command
        .args(argv)
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .envs(env.iter().map(|(k, v)| (k, v)));
    command
}

/// `cgroup.procs` of the `supervisor` cgroup of the unit that runs the
/// container led by `leader`, on the unified (v2) tree; `None` where
/// there is no such tree (a v1-only host) or no such cgroup.
fn supervisor_procs(leader: u32) -> Option<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt as _;
    let unified = super::stats::unified_root(std::path::Path::new("/sys/fs/cgroup"))?;
    let unit = super::stats::container_cgroup(std::path::Path::new("/proc"), &unified, leader)?;
    let procs = unit.join("supervisor").join("cgroup.procs");
    procs
        .exists()
        .then(|| std::ffi::CString::new(procs.as_os_str().as_bytes()).ok())
        .flatten()
}

/// Runs a command on the host with the same limits and streaming.
pub fn on_host(
    argv: &[String],
    timeout: Duration,
    on_line: &mut dyn FnMut(&str),
) -> Result<Ran, SystemError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(SystemError {
            what: "running a command".into(),
            why: "the command is empty".into(),
        });
    };
    let mut command = Command::new(program);
    command.args(args);
    run(command, None, timeout, on_line).map_err(|why| SystemError {
        what: format!("running `{}`", argv.join(" ")),
        why,
    })
}

fn run(
    mut command: Command,
    input: Option<&[u8]>,
    timeout: Duration,
    on_line: &mut dyn FnMut(&str),
) -> Result<Ran, String> {
    // A group of its own, so that a time-out kills what nsenter forked
    // into the container as well.
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command.spawn().map_err(|e| e.to_string())?;
    let writer = match (input, child.stdin.take()) {
        (Some(bytes), Some(mut stdin)) => {
            let bytes = bytes.to_vec();
            // A command that exits without reading its input closes the
            // pipe; that is its business, reported by its exit status.
            Some(std::thread::spawn(move || {
                let _ = std::io::Write::write_all(&mut stdin, &bytes);
            }))
        }
        _ => None,
    };
    let (lines, received) = mpsc::channel::<String>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        })
    })
    .collect();
    drop(lines);

    let deadline = Instant::now() + timeout;
    let mut output = String::new();
    let mut timed_out = false;
    let mut closed = false;
    while !closed {
        match received.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                on_line(&line);
                output.push_str(&line);
                output.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => closed = true,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                kill_group(child.id());
                closed = true;
            }
        }
    }
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() >= deadline && !timed_out {
            timed_out = true;
            kill_group(child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for reader in readers {
        let _ = reader.join();
    }
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    // Output that arrived after the streams were last read.
    while let Ok(line) = received.try_recv() {
        on_line(&line);
        output.push_str(&line);
        output.push('\n');
    }
    Ok(Ran {
        code: status.code(),
        timed_out,
        output,
    })
}

fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // The group is the child's own (process_group(0)): nothing else is in it.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn output_is_streamed_and_kept() {
        let mut seen = Vec::new();
        let ran = on_host(
            &argv(&["sh", "-c", "echo one; echo two >&2; exit 3"]),
            Duration::from_secs(10),
            &mut |line| seen.push(line.to_string()),
        )
        .unwrap();
        assert_eq!(ran.code, Some(3));
        assert!(!ran.timed_out);
        seen.sort();
        assert_eq!(seen, ["one", "two"]);
        assert_eq!(ran.describe(), "exit status 3");
    }

    #[test]
    fn a_command_over_its_time_is_killed_with_what_it_started() {
        let started = Instant::now();
        let ran = on_host(
            &argv(&["sh", "-c", "echo before; sleep 30 & sleep 30"]),
            Duration::from_millis(300),
            &mut |_| {},
        )
        .unwrap();
        assert!(ran.timed_out);
        assert_eq!(ran.code, None);
        assert_eq!(ran.output, "before\n");
        // The background sleep held the pipe open; it was killed too.
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
