//! Pseudo-terminals for commands run inside containers (`ctm exec` and
//! `ctm shell` at a terminal, the web console).
//!
//! A command in a container never gets the caller's own terminal: a
//! process holding a terminal's file descriptor can push keystrokes into
//! it (TIOCSTI), so a container's root could type into the host's shell.
//! It gets a pty of its own, whose other end ctm relays. The pty is made
//! in the container's own devpts instance when it has one (as
//! `machinectl shell` does), so that `tty`, `ssh` and `sudo` find their
//! terminal there; else on the host's.

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::pty::{Winsize, openpty};
use nix::sys::termios::{self, SetArg, Termios};

/// A command running on a pty of its own.
pub struct Pty {
    /// The terminal's other end: what the command writes comes out here,
    /// what is written here is its input.
    pub master: File,
    pub child: Child,
}

/// A terminal's size in characters.
pub fn size(columns: u16, rows: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// A new pty's master in the devpts of the container whose root is `root`
/// (`/proc/LEADER/root`): its `/dev/pts/ptmx`, found without leaving the
/// container's root (its symlinks resolve inside it), and only if it is
/// the real multiplexer device.
pub fn master_in(root: &std::path::Path) -> io::Result<File> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    let dir = File::open(root)?;
    let master = openat2(
        &dir,
        "dev/pts/ptmx",
        OpenHow::new()
            .flags(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
    )?;
    let stat = nix::sys::stat::fstat(&master)?;
    let is_ptmx = (stat.st_mode & nix::libc::S_IFMT) == nix::libc::S_IFCHR
        && nix::sys::stat::major(stat.st_rdev) == 5
        && nix::sys::stat::minor(stat.st_rdev) == 2;
    if !is_ptmx {
        return Err(io::Error::other(
            "the container's /dev/pts/ptmx is not the pty multiplexer",
        ));
    }
    // SAFETY: unlockpt on a descriptor we own.
    if unsafe { nix::libc::unlockpt(master.as_raw_fd()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(File::from(master))
}

/// The other end of `master`, opened through the master itself (no path
/// is looked up).
fn peer(master: &File) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: TIOCGPTPEER returns a new descriptor, which we then own.
    let fd = unsafe {
        nix::libc::ioctl(
            master.as_raw_fd(),
            nix::libc::TIOCGPTPEER,
            nix::libc::O_RDWR | nix::libc::O_NOCTTY | nix::libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just made for us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Starts `command` with a new pty as its controlling terminal and its
/// standard input, output and error: in the devpts of the container whose
/// root is `container_root` when it has a usable one ([`master_in`]),
/// else on the host.
pub fn spawn(
    mut command: Command,
    window: Winsize,
    container_root: Option<&std::path::Path>,
) -> io::Result<Pty> {
    let (master, slave) = match container_root.and_then(|root| master_in(root).ok()) {
        Some(master) => {
            let slave = peer(&master)?;
            resize(&master, window)?;
            (master, slave)
        }
        None => {
            let pair = openpty(&window, None).map_err(io::Error::from)?;
            (File::from(pair.master), pair.slave)
        }
    };
    command
        .stdin(slave.try_clone()?)
        .stdout(slave.try_clone()?)
        .stderr(slave);
    // SAFETY: between fork and exec only async-signal-safe calls are
    // made: setsid(2) and ioctl(2) on the inherited descriptor 0.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid().map_err(io::Error::from)?;
            if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    Ok(Pty { master, child })
}

/// Kills process `leader`, which leads a session of its own (as every
/// command [`spawn`] starts does), and every process in its session or
/// below it: for a command in a container, the `nsenter` on the host, the
/// shell it started inside, and whatever that started (background jobs
/// included). Looks again until none is left, so that a process forking
/// meanwhile is caught too.
pub fn kill_session(leader: u32) {
    use std::collections::{BTreeMap, BTreeSet};
    for _ in 0..20 {
        // pid → (parent, session), from /proc/PID/stat.
        let mut table: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // The command name may hold spaces and parentheses: the fields
            // start after the last `)`.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
            if let (Some(ppid), Some(session)) = (
                fields.get(1).and_then(|f| f.parse().ok()),
                fields.get(3).and_then(|f| f.parse().ok()),
            ) {
                table.insert(pid, (ppid, session));
            }
        }
        let mut doomed: BTreeSet<u32> = table
            .iter()
            .filter(|(pid, (_, session))| **pid == leader || *session == leader)
            .map(|(pid, _)| *pid)
            .collect();
        loop {
            let more: Vec<u32> = table
                .iter()
                .filter(|(pid, (ppid, _))| doomed.contains(ppid) && !doomed.contains(pid))
                .map(|(pid, _)| *pid)
                .collect();
            if more.is_empty() {
                break;
            }
            doomed.extend(more);
        }
        if doomed.is_empty() {
            return;
        }
        for pid in doomed {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Tells the command its terminal's new size.
pub fn resize(master: &impl AsFd, window: Winsize) -> io::Result<()> {
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer given.
    let done = unsafe {
        nix::libc::ioctl(
            master.as_fd().as_raw_fd(),
            nix::libc::TIOCSWINSZ,
            &window as *const Winsize,
        )
    };
    if done < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The size of the terminal at `fd`, if it is one.
pub fn window_size(fd: &impl AsFd) -> Option<Winsize> {
    let mut window = size(0, 0);
    // SAFETY: TIOCGWINSZ writes one `winsize` to the pointer given.
    let done = unsafe {
        nix::libc::ioctl(
            fd.as_fd().as_raw_fd(),
            nix::libc::TIOCGWINSZ,
            &mut window as *mut Winsize,
        )
    };
    (done == 0).then_some(window)
}

/// Puts the terminal at `fd` in raw mode until dropped (keys go to the
/// command as typed: ^C to it, not to ctm). It reads the descriptor
/// itself, unbuffered, so that what `poll` says is all there is.
struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    fn enter(fd: OwnedFd) -> io::Result<RawMode> {
        let saved = termios::tcgetattr(&fd).map_err(io::Error::from)?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&fd, SetArg::TCSANOW, &raw).map_err(io::Error::from)?;
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(&self.fd, SetArg::TCSANOW, &self.saved);
    }
}

/// Runs `command` on a pty of its own, relaying this process's terminal
/// (standard input, in raw mode, and standard output) to it and its size
/// as it changes; returns how the command ended.
pub fn run_attached(
    command: Command,
    container_root: Option<&std::path::Path>,
) -> io::Result<ExitStatus> {
    let stdin = io::stdin();
    let window = window_size(&stdin).unwrap_or(size(80, 24));
    let Pty {
        mut master,
        mut child,
    } = spawn(command, window, container_root)?;
    let raw = RawMode::enter(stdin.as_fd().try_clone_to_owned()?)?;
    let mut last = window;
    let mut buffer = [0u8; 16 * 1024];
    let mut out = io::stdout().lock();
    let mut input_open = true;
    loop {
        // The window may have been resized: look every quarter second.
        if let Some(now) = window_size(&raw.fd)
            && (now.ws_row, now.ws_col) != (last.ws_row, last.ws_col)
        {
            let _ = resize(&master, now);
            last = now;
        }
        let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if input_open {
            fds.push(PollFd::new(raw.fd.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(250u16)) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready = |fd: &PollFd<'_>| {
            fd.revents().is_some_and(|r| {
                r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
            })
        };
        let (master_ready, input_ready) = (ready(&fds[0]), fds.get(1).is_some_and(ready));
        drop(fds);
        if master_ready {
            match master.read(&mut buffer) {
                // EIO: every holder of the pty's other end has closed it.
                Ok(0) => break,
                Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
                Ok(n) => {
                    out.write_all(&buffer[..n])?;
                    out.flush()?;
                }
            }
        }
        if input_ready {
            match nix::unistd::read(&raw.fd, &mut buffer) {
                Ok(0) => input_open = false,
                Ok(n) => master.write_all(&buffer[..n])?,
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if !master_ready && !input_ready && child.try_wait()?.is_some() {
            // Its output is drained (nothing was ready): done.
            break;
        }
    }
    drop(raw);
    let status = child.wait()?;
    out.flush()?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn killing_a_session_takes_its_background_jobs_along() {
        let mut command = Command::new("sh");
        command.args(["-c", "sleep 300 & sleep 300 & echo started; wait"]);
        let mut pty = spawn(command, size(80, 24), None).unwrap();
        let mut buffer = [0u8; 64];
        let n = pty.master.read(&mut buffer).unwrap();
        assert!(String::from_utf8_lossy(&buffer[..n]).contains("started"));
        let leader = pty.child.id();
        kill_session(leader);
        assert!(!pty.child.wait().unwrap().success());
        // No process of that session is left (zombies aside, whose parent
        // has not reaped them yet: they hold nothing).
        let left: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .unwrap()
                    .1
                    .split_whitespace()
                    .collect();
                fields[3] == leader.to_string() && fields[0] != "Z"
            })
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_command_gets_a_terminal_of_its_own_with_its_size() {
        let mut command = Command::new("sh");
        command.args(["-c", "tty; stty size; read line; echo got $line"]);
        let mut pty = spawn(command, size(100, 30), None).unwrap();
        pty.master.write_all(b"hello\n").unwrap();
        let mut output = Vec::new();
        let mut buffer = [0u8; 1024];
        loop {
            match pty.master.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => output.extend_from_slice(&buffer[..n]),
                Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(pty.child.wait().unwrap().success());
        let text = String::from_utf8_lossy(&output);
        assert!(text.contains("/dev/pts/"), "{text}");
        assert!(text.contains("30 100"), "{text}");
        assert!(text.contains("got hello"), "{text}");
    }
}
