//! OpenSSH, the fleet's transport: the system's `ssh` client, so that the
//! user's own configuration, agent, jump hosts and known hosts apply as
//! they do to any `ssh` (docs/fleet.md). Behind the small [`Transport`]
//! trait, with a recording fake ([`fake::Recording`]) for the tests of
//! the fleet's orchestration.
//!
//! Every command is a list of words, each quoted for the remote shell
//! (`shlex`), so that no value of the fleet file is ever read by a shell
//! as anything but one word. What ctm sets on every call, beyond the
//! user's configuration:
//!
//! - `BatchMode=yes`: ssh never prompts (for a password, or about an
//!   unknown host key), it fails instead;
//! - `StrictHostKeyChecking=yes`: a host key that is not in the known
//!   hosts, or has changed, stops the connection; ctm never accepts one;
//! - `ConnectTimeout`, `ServerAliveInterval` and `ServerAliveCountMax`,
//!   so that a host that cannot be reached, or stops answering, is seen
//!   in seconds;
//! - a `ControlMaster` connection per host, in a directory of this
//!   process, shared by the commands of a run ([`Via::Shared`]); a
//!   confirmation goes over a connection of its own ([`Via::Fresh`]).

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::model::fleet::SshTarget;

/// Seconds ssh waits for a connection to be made.
pub const CONNECT_TIMEOUT: u64 = 10;
/// A connection that has not answered for this many seconds
/// (`ServerAliveInterval` × `ServerAliveCountMax`) is given up.
pub const SERVER_ALIVE: (u64, u64) = (5, 3);
/// Seconds a shared connection outlives its last command.
const CONTROL_PERSIST: u64 = 300;

/// Which connection a command goes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The host's shared connection (`ControlMaster`), opened by
    /// [`Transport::connect`]; a new connection if it is gone.
    Shared,
    /// A new connection of its own, that neither uses nor leaves a shared
    /// one: what it proves is that the host can be reached afresh.
    Fresh,
}

/// What a remote command did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    /// Its exit status; `None` when it was stopped ([`Flow::Stop`]).
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Reply {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// The end of what it printed on standard error, on one line, for a
    /// message.
    pub fn error_text(&self) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let tail = one_line(&lines[lines.len().saturating_sub(8)..].join("\n"));
        match (tail.is_empty(), self.status) {
            (false, _) => tail,
            (true, Some(code)) => format!("it exited with status {code}"),
            (true, None) => "it was stopped".into(),
        }
    }
}

/// A report as ctm prints it on a terminal (its code, the box drawing of
/// its margins, its line breaks), as one line of words.
pub fn one_line(report: &str) -> String {
    let is_code = |l: &str| {
        let l = l.trim();
        l.contains("::") && !l.contains(' ')
    };
    report
        .lines()
        .filter(|l| !is_code(l))
        .collect::<Vec<_>>()
        .join(" ")
        .replace(['×', '│', '╭', '╰', '─', '┬', '·', '⚠'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why ssh could not run a command (ssh itself exited 255).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    /// The host's key is not in the known hosts, or is not the one
    /// recorded there: ctm never accepts it.
    #[error("its host key is unknown or has changed, and ctm never accepts a host key ({detail})")]
    HostKey { detail: String },
    /// No connection, or no login, or a connection lost on the way.
    #[error("{detail}")]
    Unreachable { detail: String },
    /// ssh itself could not be started.
    #[error("cannot run ssh: {detail}")]
    NoSsh { detail: String },
}

impl SshError {
    /// From what ssh printed when it exited 255.
    fn from_stderr(stderr: &str) -> SshError {
        let detail = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("@@@"))
            .collect::<Vec<_>>()
            .join(" ");
        let detail = if detail.is_empty() {
            "ssh failed without saying why".to_string()
        } else {
            detail
        };
        let host_key = [
            "Host key verification failed",
            "REMOTE HOST IDENTIFICATION HAS CHANGED",
            "host key is known for",
            "No matching host key",
        ];
        if host_key.iter().any(|m| stderr.contains(m)) {
            SshError::HostKey { detail }
        } else {
            SshError::Unreachable { detail }
        }
    }
}

/// Whether to read on from a streamed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// End the command's SSH session; the host sees it close.
    Stop,
}

/// Runs commands on the hosts of a fleet.
pub trait Transport: Send + Sync {
    /// Opens the host's shared connection: the host key is checked and
    /// the login made here, before anything else is asked of the host.
    fn connect(&self, to: &SshTarget) -> Result<(), SshError>;
    /// Runs `argv` on the host with `stdin`, and collects its output.
    fn run(
        &self,
        to: &SshTarget,
        via: Via,
        argv: &[String],
        stdin: &[u8],
    ) -> Result<Reply, SshError>;
    /// Runs `argv` over the shared connection, handing each line of its
    /// standard output to `line` as it comes; [`Flow::Stop`] ends it.
    fn stream(
        &self,
        to: &SshTarget,
        argv: &[String],
        line: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<Reply, SshError>;
}

/// Makes a transport for one use (a long-lived server makes one per
/// request): OpenSSH, or the recording fake in tests.
pub type Connect = std::sync::Arc<dyn Fn() -> std::io::Result<Box<dyn Transport>> + Send + Sync>;

/// The system's OpenSSH client.
pub struct OpenSsh {
    program: PathBuf,
    /// `--ssh-config FILE`: `-F FILE` on every call.
    config: Option<PathBuf>,
    /// Where the shared connections' sockets are (mode 0700), removed
    /// with the connections when this is dropped.
    control_dir: PathBuf,
    connected: Mutex<BTreeSet<SshTarget>>,
}

impl OpenSsh {
    /// `ssh` from the PATH, with `config` as its configuration file if
    /// given (else the user's own).
    pub fn new(config: Option<&Path>) -> std::io::Result<OpenSsh> {
        OpenSsh::with_program(Path::new("ssh"), config)
    }

    /// A [`Connect`] that makes an `OpenSsh` with `config` each time.
    pub fn connect_with(config: Option<PathBuf>) -> Connect {
        std::sync::Arc::new(move || {
            OpenSsh::new(config.as_deref()).map(|ssh| Box::new(ssh) as Box<dyn Transport>)
        })
    }

    pub fn with_program(program: &Path, config: Option<&Path>) -> std::io::Result<OpenSsh> {
        use std::os::unix::fs::DirBuilderExt as _;
        // Short: a unix socket's path has at most 107 bytes, and `%C` is 40.
        let control_dir = std::env::temp_dir().join(format!(
            "ctm-ssh-{}-{}",
            std::process::id(),
            crate::fs::hex(&nanos().to_le_bytes()[..4])
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&control_dir)?;
        Ok(OpenSsh {
            program: program.to_path_buf(),
            config: config.map(Path::to_path_buf),
            control_dir,
            connected: Mutex::new(BTreeSet::new()),
        })
    }

    /// `ssh` with ctm's options for `to` (up to, not including, `--`).
    fn command(&self, to: &SshTarget, via: Via) -> Command {
        let mut c = Command::new(&self.program);
        if let Some(config) = &self.config {
            c.arg("-F").arg(config);
        }
        let (interval, count) = SERVER_ALIVE;
        for option in [
            "BatchMode=yes".to_string(),
            "StrictHostKeyChecking=yes".to_string(),
            format!("ConnectTimeout={CONNECT_TIMEOUT}"),
            format!("ServerAliveInterval={interval}"),
            format!("ServerAliveCountMax={count}"),
        ] {
            c.arg("-o").arg(option);
        }
        match via {
            Via::Shared => {
                c.arg("-o")
                    .arg(format!("ControlPath={}/%C", self.control_dir.display()));
                c.args(["-o", "ControlMaster=no"]);
            }
            Via::Fresh => {
                c.args(["-o", "ControlMaster=no", "-o", "ControlPath=none"]);
            }
        }
        if let Some(port) = to.port {
            c.arg("-p").arg(port.to_string());
        }
        c
    }

    fn spawn(&self, mut command: Command) -> Result<std::process::Child, SshError> {
        command.spawn().map_err(|e| SshError::NoSsh {
            detail: format!("{}: {e}", self.program.display()),
        })
    }
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos().into())
}

/// The remote command: every word quoted for the remote shell.
fn remote_command(argv: &[String]) -> Result<String, SshError> {
    shlex::try_join(argv.iter().map(String::as_str)).map_err(|e| SshError::NoSsh {
        detail: format!("a word of the remote command cannot be quoted: {e}"),
    })
}

/// ssh's own failure (255), or what the remote command did.
fn finish(
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
) -> Result<Reply, SshError> {
    if status.code() == Some(255) {
        return Err(SshError::from_stderr(&stderr));
    }
    Ok(Reply {
        status: status.code(),
        stdout,
        stderr,
    })
}

fn read_all(mut from: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl Transport for OpenSsh {
    fn connect(&self, to: &SshTarget) -> Result<(), SshError> {
        if self.connected.lock().is_ok_and(|c| c.contains(to)) {
            return Ok(());
        }
        let mut c = self.command(to, Via::Shared);
        // The master goes to the background once logged in; it keeps
        // what it was given as its standard error, so that is a file,
        // never a pipe this process would wait on.
        let log = self.control_dir.join(format!("connect-{}.log", nanos()));
        let file = std::fs::File::create(&log).map_err(|e| SshError::NoSsh {
            detail: format!("{}: {e}", log.display()),
        })?;
        c.args(["-o", "ControlMaster=yes"])
            .arg("-o")
            .arg(format!("ControlPersist={CONTROL_PERSIST}"))
            .args(["-N", "-f", "--", to.destination.as_str()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        let status = self.spawn(c)?.wait().map_err(|e| SshError::NoSsh {
            detail: e.to_string(),
        })?;
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        if !status.success() {
            return Err(SshError::from_stderr(&stderr));
        }
        if let Ok(mut connected) = self.connected.lock() {
            connected.insert(to.clone());
        }
        Ok(())
    }

    fn run(
        &self,
        to: &SshTarget,
        via: Via,
        argv: &[String],
        stdin: &[u8],
    ) -> Result<Reply, SshError> {
        let mut c = self.command(to, via);
        c.args(["-T", "--", to.destination.as_str()])
            .arg(remote_command(argv)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.spawn(c)?;
        let out = read_all(child.stdout.take().expect("piped"));
        let err = read_all(child.stderr.take().expect("piped"));
        if let Some(mut input) = child.stdin.take() {
            // A command that stops reading early is not an error here:
            // its status says what happened.
            let _ = input.write_all(stdin);
        }
        let status = child.wait().map_err(|e| SshError::NoSsh {
            detail: e.to_string(),
        })?;
        finish(
            status,
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default(),
        )
    }

    fn stream(
        &self,
        to: &SshTarget,
        argv: &[String],
        line: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<Reply, SshError> {
        let mut c = self.command(to, Via::Shared);
        c.args(["-T", "--", to.destination.as_str()])
            .arg(remote_command(argv)?)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.spawn(c)?;
        let err = read_all(child.stderr.take().expect("piped"));
        let mut stdout = String::new();
        let mut stopped = false;
        for text in BufReader::new(child.stdout.take().expect("piped")).lines() {
            let Ok(text) = text else { break };
            stdout.push_str(&text);
            stdout.push('\n');
            if line(&text) == Flow::Stop {
                stopped = true;
                let _ = child.kill();
                break;
            }
        }
        let status = child.wait().map_err(|e| SshError::NoSsh {
            detail: e.to_string(),
        })?;
        let stderr = err.join().unwrap_or_default();
        if stopped {
            return Ok(Reply {
                status: None,
                stdout,
                stderr,
            });
        }
        finish(status, stdout, stderr)
    }
}

impl Drop for OpenSsh {
    /// Closes the shared connections, and removes their directory.
    fn drop(&mut self) {
        let connected =
            std::mem::take(&mut *self.connected.lock().unwrap_or_else(|e| e.into_inner()));
        for to in connected {
            let mut c = self.command(&to, Via::Shared);
            c.args(["-O", "exit", "--", to.destination.as_str()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Ok(mut child) = c.spawn() {
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.control_dir);
    }
}

/// A recording fake of the transport: every call is kept, and answered
/// by the function the test gives.
pub mod fake {
    use super::*;

    /// One call, as the fake saw it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Call {
        /// The destination.
        pub host: String,
        /// `None` for [`Transport::connect`].
        pub via: Option<Via>,
        pub argv: Vec<String>,
        pub stdin: Vec<u8>,
    }

    impl Call {
        /// The command as one line (`ctm apply /tmp/x/plan.json --yes`).
        pub fn line(&self) -> String {
            self.argv.join(" ")
        }
    }

    /// How the fake answers a call.
    #[derive(Debug, Clone)]
    pub enum Answer {
        /// The command ran: these lines on standard output (one by one
        /// to a stream), then this reply.
        Ran { lines: Vec<String>, reply: Reply },
        /// ssh failed.
        Fails(SshError),
    }

    impl Answer {
        /// Exit status 0 with `stdout`.
        pub fn ok(stdout: &str) -> Answer {
            Answer::Ran {
                lines: Vec::new(),
                reply: Reply {
                    status: Some(0),
                    stdout: stdout.to_string(),
                    stderr: String::new(),
                },
            }
        }

        /// Exit status `code` with `stderr`.
        pub fn exits(code: i32, stderr: &str) -> Answer {
            Answer::Ran {
                lines: Vec::new(),
                reply: Reply {
                    status: Some(code),
                    stdout: String::new(),
                    stderr: stderr.to_string(),
                },
            }
        }

        /// `lines` streamed, then exit status `code` with `stderr`.
        pub fn streams(lines: Vec<String>, code: i32, stderr: &str) -> Answer {
            Answer::Ran {
                lines,
                reply: Reply {
                    status: Some(code),
                    stdout: String::new(),
                    stderr: stderr.to_string(),
                },
            }
        }
    }

    type Answers = Box<dyn Fn(&Call) -> Answer + Send + Sync>;

    pub struct Recording {
        calls: Mutex<Vec<Call>>,
        answer: Answers,
    }

    impl Recording {
        pub fn new(answer: impl Fn(&Call) -> Answer + Send + Sync + 'static) -> Recording {
            Recording {
                calls: Mutex::new(Vec::new()),
                answer: Box::new(answer),
            }
        }

        /// Every call so far, in order.
        pub fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
        }

        fn record(&self, call: Call) -> Answer {
            let answer = (self.answer)(&call);
            self.calls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(call);
            answer
        }
    }

    impl Transport for Recording {
        fn connect(&self, to: &SshTarget) -> Result<(), SshError> {
            match self.record(Call {
                host: to.destination.to_string(),
                via: None,
                argv: Vec::new(),
                stdin: Vec::new(),
            }) {
                Answer::Fails(e) => Err(e),
                Answer::Ran { .. } => Ok(()),
            }
        }

        fn run(
            &self,
            to: &SshTarget,
            via: Via,
            argv: &[String],
            stdin: &[u8],
        ) -> Result<Reply, SshError> {
            match self.record(Call {
                host: to.destination.to_string(),
                via: Some(via),
                argv: argv.to_vec(),
                stdin: stdin.to_vec(),
            }) {
                Answer::Fails(e) => Err(e),
                Answer::Ran { lines, mut reply } => {
                    for l in lines {
                        reply.stdout.push_str(&l);
                        reply.stdout.push('\n');
                    }
                    Ok(reply)
                }
            }
        }

        fn stream(
            &self,
            to: &SshTarget,
            argv: &[String],
            line: &mut dyn FnMut(&str) -> Flow,
        ) -> Result<Reply, SshError> {
            match self.record(Call {
                host: to.destination.to_string(),
                via: Some(Via::Shared),
                argv: argv.to_vec(),
                stdin: Vec::new(),
            }) {
                Answer::Fails(e) => Err(e),
                Answer::Ran { lines, reply } => {
                    for l in lines {
                        if line(&l) == Flow::Stop {
                            return Ok(Reply {
                                status: None,
                                ..reply
                            });
                        }
                    }
                    Ok(reply)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_failures_are_told_apart() {
        assert!(matches!(
            SshError::from_stderr(
                "No ED25519 host key is known for 10.0.0.2 and you have requested strict checking.\nHost key verification failed.\n"
            ),
            SshError::HostKey { .. }
        ));
        assert!(matches!(
            SshError::from_stderr("ssh: connect to host 10.0.0.2 port 22: Connection refused\n"),
            SshError::Unreachable { .. }
        ));
    }

    #[test]
    fn a_report_becomes_one_line() {
        let report = "ctm::apply_failed\n\n  × health check failed: still\n  │ failing after 3 s\n  help: look\n";
        assert_eq!(
            one_line(report),
            "health check failed: still failing after 3 s help: look"
        );
    }

    #[test]
    fn every_word_of_a_remote_command_is_quoted() {
        let argv: Vec<String> = ["ctm", "plan", "/tmp/x y/$(id).kdl", "a;b"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            remote_command(&argv).unwrap(),
            "ctm plan '/tmp/x y/$(id).kdl' 'a;b'"
        );
        assert!(remote_command(&["a\0b".to_string()]).is_err());
    }
}
