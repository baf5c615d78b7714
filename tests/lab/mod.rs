//! The lab: a real systemd host for end-to-end tests, booted with
//! `systemd-nspawn -b` from a cached Debian rootfs (see `docs/lab.md`).
//!
//! The machines that run the tests do not run systemd as PID 1, so `ctm`
//! cannot drive the machine itself. A lab is a Debian bookworm system whose
//! systemd, D-Bus, systemd-networkd, systemd-machined and nftables are real,
//! with the `ctm` under test bind-mounted read-only at `/usr/local/bin/ctm`
//! and a network namespace of its own.
//!
//! ```ignore
//! #[path = "lab/mod.rs"]
//! mod lab;
//!
//! let lab = lab::Lab::boot("my-test", env!("CARGO_BIN_EXE_ctm"));
//! lab.ok(&["systemctl", "start", "systemd-networkd"]);
//! lab.write("/root/host.kdl", "…");
//! let out = lab.ok(&["ctm", "apply", "/root/host.kdl", "--yes"]);
//! ```
//!
//! Each lab is stopped, and its directory removed, when the handle is
//! dropped (`CTM_LAB_KEEP=1` keeps it, `CTM_LAB_KEEP=failed` keeps it only
//! when the test panics). A lab belongs to the thread that booted it: it is
//! also stopped if that thread dies without dropping it.
#![allow(dead_code)]

pub mod scenario;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The Debian suite of the lab (the same as the machines that build ctm,
/// so that the binary built outside runs inside).
pub const SUITE: &str = "bookworm";

/// What the lab rootfs holds besides debootstrap's minbase: a real systemd
/// with D-Bus, networkd and machined (`systemd-container`), nftables, and
/// the tools the end-to-end checks use (`ip`, `ping`, `nc`, `ps`). The
/// provisioning tests also need, already installed since a lab has no
/// route to a mirror: the SSH server and client, Docker, and a static
/// busybox to make a tiny Docker image from. Their services are disabled
/// in the rootfs (see `customize`): ctm's steps enable them in the
/// containers that ask for them.
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "systemd-container",
    "nftables",
    "iputils-ping",
    "netcat-openbsd",
    "procps",
    "openssh-server",
    "openssh-client",
    "docker.io",
    "busybox-static",
    // Tarball images: tar runs these to unpack .tar.xz and .tar.zst.
    "xz-utils",
    "zstd",
    // Container names on the host (glibc asks machined); its package
    // adds `mymachines` to /etc/nsswitch.conf.
    "libnss-mymachines",
    // Volumes on btrfs (tests/volumes.rs): ctm makes subvolumes and sets
    // qgroup limits with the `btrfs` command.
    "btrfs-progs",
];

/// Services the packages above enable on installation, which no lab
/// should start by itself (each lab would run sshd and dockerd).
const DISABLED_UNITS: &[&str] = &[
    "ssh.service",
    "docker.service",
    "docker.socket",
    "containerd.service",
];

/// Bumped whenever the steps that build the rootfs change, so that an old
/// cached tree is not reused.
const RECIPE_VERSION: u32 = 3;

/// Where the cached rootfs lives unless `CTM_LAB_CACHE` says otherwise.
pub const DEFAULT_CACHE: &str = "/var/cache/ctm-lab";

/// The host tools a lab needs.
const TOOLS: &[&str] = &[
    "systemd-nspawn",
    "debootstrap",
    "nsenter",
    "setpriv",
    "kill",
    "cp",
];

/// Default time limit of a command run inside the lab.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Default time limit for a lab to boot (`CTM_LAB_BOOT_TIMEOUT`, seconds).
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a stopping lab gets before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The environment of every command run inside the lab: nothing of the
/// test's own (its PATH, its terminal), no pager, no colours.
const LAB_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
    ("LANG", "C.UTF-8"),
    ("TERM", "dumb"),
    ("SYSTEMD_PAGER", ""),
    ("SYSTEMD_COLORS", "0"),
    ("PAGER", "cat"),
];

/// How a lab's root is made from the cached rootfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    /// `systemd-nspawn --volatile=overlay`: the cached tree is the read-only
    /// lower layer of an overlay whose upper layer is a tmpfs. Nothing to
    /// copy, nothing left on disk.
    Overlay,
    /// `cp -a --reflink=auto` of the cached tree into the lab's directory.
    Copy,
}

/// A running lab. Dropping it stops it.
pub struct Lab {
    name: String,
    machine: String,
    dir: PathBuf,
    log: PathBuf,
    nspawn: Option<Child>,
    cgroup: Option<PathBuf>,
    leader: u32,
    boot_time: Duration,
}

/// Options for [`Lab::boot_with`].
#[derive(Clone, Debug)]
pub struct Options {
    /// The ctm binary to bind read-only at `/usr/local/bin/ctm`.
    pub ctm: Option<PathBuf>,
    /// Where to bind the cached rootfs read-only inside the lab, as a
    /// ready-made directory image for nested containers (it has systemd,
    /// iproute2, ping and nc). `None`: not bound.
    pub image_at: Option<String>,
    /// Where to bind the slim guest image ([`Lab::guest_image`]) read-only
    /// inside the lab, as a `directory` image for ctm. `None`: not bound.
    pub guest_at: Option<String>,
    /// How the lab's root is made.
    pub root: Root,
    /// More `systemd-nspawn` arguments, e.g. `--bind-ro=HOST:LAB`.
    pub nspawn_args: Vec<String>,
    /// How long to wait for the lab to boot.
    pub boot_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        let root = match std::env::var("CTM_LAB_ROOT").as_deref() {
            Ok("copy") => Root::Copy,
            _ => Root::Overlay,
        };
        let boot_timeout = std::env::var("CTM_LAB_BOOT_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(BOOT_TIMEOUT);
        Options {
            ctm: None,
            image_at: None,
            guest_at: None,
            root,
            nspawn_args: Vec::new(),
            boot_timeout,
        }
    }
}

impl Lab {
    /// Says what is missing for a lab to run here, if anything: for
    /// `skip_unless(Lab::available().is_ok(), ...)`, so that a test skips
    /// loudly here and fails under CI.
    pub fn available() -> Result<(), String> {
        let mut missing = Vec::new();
        if !nix::unistd::geteuid().is_root() {
            missing.push("root".to_string());
        }
        for tool in TOOLS {
            if find_tool(tool).is_none() {
                missing.push(format!("`{tool}`"));
            }
        }
        if cgroup2_mount().is_none() {
            missing.push("a mounted cgroup v2 hierarchy".to_string());
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the lab (a systemd host booted with systemd-nspawn) needs {}; see docs/lab.md",
                missing.join(", ")
            ))
        }
    }

    /// The cached lab rootfs, built first if it is not there yet: a Debian
    /// bookworm minbase with [`PACKAGES`], from the mirror this machine's
    /// apt uses. Safe to call from parallel tests and test binaries (a
    /// flock makes one build it and the others wait). Panics, with the
    /// debootstrap log's tail, if it cannot be built.
    pub fn rootfs() -> PathBuf {
        match build_rootfs() {
            Ok(p) => p,
            Err(e) => panic!("lab rootfs: {e}"),
        }
    }

    /// A slim guest image made from the cached rootfs (built once, beside
    /// it): the whole tree but `/usr`, which stays empty, with
    /// `/etc/os-release` a file instead of a link into `/usr`. A container
    /// made from it binds the lab's `/usr` read-only (`bind "/usr"
    /// read-only=#true` in the host file) and boots the lab's systemd, so
    /// that each container costs 9 MB of copying instead of 170 MB.
    pub fn guest_image() -> PathBuf {
        match build_guest() {
            Ok(p) => p,
            Err(e) => panic!("lab guest image: {e}"),
        }
    }

    /// Boots a lab with `ctm` bound read-only at `/usr/local/bin/ctm`;
    /// returns once `systemctl is-system-running --wait` inside says
    /// `running` or `degraded`. `name` (the test's) goes into the machine
    /// name and the messages. Panics, with the tail of the lab's console
    /// log, if it does not boot.
    pub fn boot(name: &str, ctm: impl AsRef<Path>) -> Lab {
        Lab::boot_with(
            name,
            Options {
                ctm: Some(ctm.as_ref().to_path_buf()),
                ..Options::default()
            },
        )
    }

    /// [`Lab::boot`] with options.
    pub fn boot_with(name: &str, options: Options) -> Lab {
        let started = Instant::now();
        let rootfs = Lab::rootfs();
        let machine = machine_name(name);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{machine}."))
            .tempdir_in(lab_run_dir())
            .unwrap_or_else(|e| panic!("lab {name}: cannot make its directory: {e}"))
            .keep();
        let log = dir.join("console.log");
        let mut lab = Lab {
            name: name.to_string(),
            machine,
            dir,
            log,
            nspawn: None,
            cgroup: None,
            leader: 0,
            boot_time: Duration::ZERO,
        };
        if let Err(e) = lab.start(&rootfs, &options) {
            // Stopped first (unless it may be kept, to be looked at), so
            // that the log is whole; the rest goes when `lab` is dropped as
            // this panic unwinds.
            if keep_mode() == Keep::Never {
                lab.stop();
            }
            panic!("lab {name} did not boot: {e}\n{}", lab.log_tail(40));
        }
        lab.boot_time = started.elapsed();
        progress(&format!(
            "lab {} ({}) booted in {:.1} s",
            lab.name,
            lab.machine,
            lab.boot_time.as_secs_f64()
        ));
        lab
    }

    fn start(&mut self, rootfs: &Path, options: &Options) -> Result<(), String> {
        let deadline = Instant::now() + options.boot_timeout;
        let root = match options.root {
            Root::Overlay => rootfs.to_path_buf(),
            Root::Copy => {
                let root = self.dir.join("rootfs");
                let out = Command::new("cp")
                    .args(["-a", "--reflink=auto", "--"])
                    .arg(rootfs)
                    .arg(&root)
                    .output()
                    .map_err(|e| format!("cp: {e}"))?;
                if !out.status.success() {
                    return Err(format!(
                        "cp -a {} {} failed: {}",
                        rootfs.display(),
                        root.display(),
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
                root
            }
        };
        let log = File::create(&self.log).map_err(|e| format!("{}: {e}", self.log.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;

        // Every lab gets a cgroup of its own. Without one, nspawn puts every
        // lab started from one cgroup into the same `payload` cgroup, where
        // their systemds trip over each other's units; and it is how the
        // lab's processes are all found and killed, whatever happens.
        let cgroup = lab_cgroup(&self.machine)?;
        fs::create_dir(&cgroup).map_err(|e| format!("{}: {e}", cgroup.display()))?;
        self.cgroup = Some(cgroup.clone());
        write_atomically(&self.dir.join("cgroup"), &cgroup.display().to_string());

        // sh moves itself into the lab's cgroup and execs setpriv, which
        // makes the lab die with the thread that boots it (unless it may
        // be kept) and execs systemd-nspawn: one pid all along.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", r#"echo $$ > "$0" && exec "$@""#])
            .arg(cgroup.join("cgroup.procs"));
        if keep_mode() == Keep::Never {
            cmd.args(["setpriv", "--pdeathsig", "TERM", "--"]);
        }
        cmd.arg("systemd-nspawn")
            .arg("--directory")
            .arg(&root)
            // No machined and no system bus outside: see docs/lab.md.
            .args(["--register=no", "--keep-unit", "--boot", "--network-veth"])
            .arg(format!("--machine={}", self.machine))
            .arg(format!("--uuid={}", random_uuid()?));
        if options.root == Root::Overlay {
            cmd.arg("--volatile=overlay");
        }
        if let Some(ctm) = &options.ctm {
            let ctm = ctm
                .canonicalize()
                .map_err(|e| format!("ctm binary {}: {e}", ctm.display()))?;
            cmd.arg(bind_ro(&ctm, "/usr/local/bin/ctm"));
        }
        if let Some(at) = &options.image_at {
            cmd.arg(bind_ro(rootfs, at));
        }
        if let Some(at) = &options.guest_at {
            cmd.arg(bind_ro(&Lab::guest_image(), at));
        }
        cmd.args(&options.nspawn_args)
            // A pure cgroup v2 tree inside, like a current distribution.
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start systemd-nspawn: {e}"))?;
        let pid = child.id();
        self.nspawn = Some(child);
        write_atomically(&self.dir.join("nspawn.pid"), &format!("{pid}\n"));

        // The container's PID 1: nspawn's child in another pid namespace.
        let own_pidns = fs::read_link("/proc/self/ns/pid").map_err(|e| e.to_string())?;
        self.leader = loop {
            self.check_alive()?;
            if let Some(leader) = children(pid).into_iter().find(|c| {
                fs::read_link(format!("/proc/{c}/ns/pid")).is_ok_and(|ns| ns != own_pidns)
            }) {
                break leader;
            }
            if Instant::now() > deadline {
                return Err("no container process appeared".into());
            }
            thread::sleep(Duration::from_millis(20));
        };

        // Until systemd inside has its bus up, systemctl cannot connect; then
        // `--wait` blocks until the boot is over.
        let mut last = String::new();
        loop {
            self.check_alive()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "not up after {} s; last `systemctl is-system-running`: {last}",
                    options.boot_timeout.as_secs()
                ));
            }
            match self.try_run(&["systemctl", "is-system-running", "--wait"], left) {
                Ok(out) => {
                    let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
                    match state.as_str() {
                        "running" => return Ok(()),
                        "degraded" => {
                            let failed = self.run(&["systemctl", "--failed", "--no-legend"]);
                            progress(&format!(
                                "lab {}: booted degraded; failed units:\n{}",
                                self.name,
                                String::from_utf8_lossy(&failed.stdout)
                            ));
                            return Ok(());
                        }
                        // "offline" too is what systemctl says before the
                        // lab's PID 1 has become systemd.
                        "maintenance" | "stopping" => {
                            return Err(format!("the lab's systemd says {state}"));
                        }
                        _ => {
                            last =
                                format!("{state} {}", String::from_utf8_lossy(&out.stderr).trim())
                        }
                    }
                }
                Err(e) => last = e,
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn check_alive(&mut self) -> Result<(), String> {
        let child = self.nspawn.as_mut().expect("started");
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("systemd-nspawn exited: {}", describe(status))),
            Err(e) => Err(format!("systemd-nspawn: {e}")),
        }
    }

    /// The test's name given to [`Lab::boot`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The lab's machine name (also its host name).
    pub fn machine(&self) -> &str {
        &self.machine
    }

    /// The pid (on this machine) of the systemd-nspawn process.
    pub fn nspawn_pid(&self) -> u32 {
        self.nspawn.as_ref().map_or(0, Child::id)
    }

    /// The pid (on this machine) of the lab's PID 1, its systemd.
    pub fn leader(&self) -> u32 {
        self.leader
    }

    /// How long [`Lab::boot`] took, the rootfs build included if it ran.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// The lab's own directory on this machine (its console log is
    /// `console.log` there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last `lines` lines of the lab's console (systemd-nspawn's output).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        format!(
            "--- last {} lines of {} ---\n{}\n---",
            tail.len(),
            self.log.display(),
            tail.join("\n")
        )
    }

    /// The path on this machine of `path` inside the lab, through
    /// `/proc/LEADER/root`: it sees the lab's whole tree as the lab does,
    /// `/run` and `/tmp` included. Symlinks with absolute targets resolve
    /// on this machine, not in the lab: read those inside (`lab.run`).
    pub fn path(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        let rel = path.strip_prefix("/").unwrap_or(path);
        PathBuf::from(format!("/proc/{}/root", self.leader)).join(rel)
    }

    /// Writes a file inside the lab (making its parent directories).
    pub fn write(&self, path: impl AsRef<Path>, contents: impl AsRef<[u8]>) {
        let host = self.path(&path);
        if let Some(parent) = host.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
        }
        fs::write(&host, contents).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
    }

    /// Reads a file inside the lab.
    pub fn read(&self, path: impl AsRef<Path>) -> String {
        let host = self.path(&path);
        fs::read_to_string(&host).unwrap_or_else(|e| panic!("{}: {e}", host.display()))
    }

    /// The lab's system bus, as a unix socket path on this machine.
    pub fn bus_socket(&self) -> PathBuf {
        self.path("/run/dbus/system_bus_socket")
    }

    /// Runs a command inside the lab (all its namespaces, its root, as its
    /// root user, with a clean environment), killed after [`RUN_TIMEOUT`].
    /// Panics only if it cannot be run or times out; check the status.
    pub fn run(&self, cmd: &[&str]) -> Output {
        self.run_timeout(cmd, RUN_TIMEOUT)
    }

    /// [`Lab::run`] with a time limit of its own.
    pub fn run_timeout(&self, cmd: &[&str], timeout: Duration) -> Output {
        self.try_run(cmd, timeout)
            .unwrap_or_else(|e| panic!("lab {}: {e}", self.name))
    }

    /// Runs a shell script inside the lab with `sh -ec` (stops at the
    /// first failing command).
    pub fn sh(&self, script: &str) -> Output {
        self.run(&["sh", "-ec", script])
    }

    /// Runs a command inside the lab, panics (showing its output) unless it
    /// succeeds, and returns its stdout.
    pub fn ok(&self, cmd: &[&str]) -> String {
        let out = self.run(cmd);
        self.expect_success(&cmd.join(" "), &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// [`Lab::sh`] that must succeed; returns its stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        self.expect_success(script, &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn expect_success(&self, what: &str, out: &Output) {
        if !out.status.success() {
            panic!(
                "lab {}: `{what}` failed ({}):\n{}",
                self.name,
                describe(out.status),
                show_output(out)
            );
        }
    }

    /// Runs a command inside a container (`machinectl` machine) that runs
    /// inside the lab, entering all its namespaces.
    pub fn run_in(&self, machine: &str, cmd: &[&str]) -> Output {
        let leader = self.machine_leader(machine);
        let mut args = vec!["nsenter", "-t", &leader, "-a", "--"];
        args.extend_from_slice(cmd);
        self.run(&args)
    }

    /// The pid, as the lab sees it, of the leader of a machine registered
    /// with the lab's machined.
    pub fn machine_leader(&self, machine: &str) -> String {
        self.ok(&[
            "machinectl",
            "show",
            machine,
            "--property=Leader",
            "--value",
        ])
        .trim()
        .to_string()
    }

    /// Makes a tiny guest tree at `/var/lib/machines/NAME` inside the lab
    /// and returns that path: empty but for `/etc/os-release`, an empty
    /// machine-id, the lab's `/etc/alternatives` symlinks and the `bin`,
    /// `sbin`, `lib`, `lib64` symlinks into `/usr`, which its `.nspawn` file
    /// is to bind read-only from the lab (`BindReadOnly=/usr`).
    pub fn tiny_guest(&self, name: &str) -> PathBuf {
        let rel = format!("/var/lib/machines/{name}");
        let g = self.path(&rel);
        for d in ["usr", "etc", "var", "tmp", "root"] {
            fs::create_dir_all(g.join(d)).unwrap_or_else(|e| panic!("{}: {e}", g.display()));
        }
        for d in ["bin", "sbin", "lib", "lib64"] {
            let _ = fs::remove_file(g.join(d));
            symlink(format!("usr/{d}"), g.join(d)).unwrap();
        }
        fs::copy(self.path("/etc/os-release"), g.join("etc/os-release")).unwrap();
        fs::write(g.join("etc/machine-id"), "").unwrap();
        // Debian's `nc`, `which`, ... are symlinks through /etc/alternatives.
        let alternatives = g.join("etc/alternatives");
        fs::create_dir_all(&alternatives).unwrap();
        for entry in fs::read_dir(self.path("/etc/alternatives"))
            .unwrap()
            .flatten()
        {
            if let Ok(target) = fs::read_link(entry.path()) {
                let link = alternatives.join(entry.file_name());
                let _ = fs::remove_file(&link);
                symlink(target, link).unwrap();
            }
        }
        PathBuf::from(rel)
    }

    fn try_run(&self, cmd: &[&str], timeout: Duration) -> Result<Output, String> {
        // `timeout` inside kills the command in the lab too, not only the
        // nsenter outside; the outer limit is for a lab that hangs.
        let secs = timeout.as_secs().max(1).to_string();
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.leader.to_string())
            .args(["-a", "--", "timeout", "--kill-after=5", &secs])
            .args(cmd)
            .env_clear()
            .envs(LAB_ENV.iter().copied());
        let out = run_with_timeout(c, timeout + Duration::from_secs(15))
            .map_err(|e| format!("`{}`: {e}", cmd.join(" ")))?;
        if out.status.code() == Some(124) {
            return Err(format!(
                "`{}` timed out after {secs} s inside the lab:\n{}",
                cmd.join(" "),
                show_output(&out)
            ));
        }
        Ok(out)
    }

    /// Stops the lab: SIGTERM to the systemd-nspawn started by this
    /// handle (a clean poweroff), then after [`STOP_TIMEOUT`] SIGKILL to it
    /// and to whatever is left in the lab's own cgroup, which holds only
    /// what this lab started; then removes that cgroup.
    fn stop(&mut self) {
        if let Some(mut child) = self.nspawn.take() {
            self.stop_nspawn(&mut child);
        }
        if let Some(cgroup) = self.cgroup.take()
            && let Err(e) = remove_cgroup(&cgroup)
        {
            progress(&format!("lab {}: {e}", self.name));
        }
    }

    fn stop_nspawn(&self, child: &mut Child) {
        let pid = child.id();
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        // nspawn turns SIGTERM into a clean poweroff of the lab. The child
        // is not reaped before this, so `pid` is still the nspawn we started.
        let _ = Command::new("kill")
            .args(["-s", "TERM", "--", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let journal = self
            .try_run(
                &["journalctl", "--no-pager", "-b", "-n", "40"],
                Duration::from_secs(5),
            )
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| e);
        progress(&format!(
            "lab {}: still running {} s after SIGTERM; killing it (systemd-nspawn pid {pid} and its cgroup)\n{}\n--- its journal ---\n{journal}",
            self.name,
            STOP_TIMEOUT.as_secs(),
            self.log_tail(30)
        ));
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        let keep = match keep_mode() {
            Keep::Always => true,
            Keep::Failed => panicking,
            Keep::Never => false,
        };
        if panicking && self.nspawn.is_some() {
            progress(&format!(
                "lab {} ({}) at the failure:\n{}\n(CTM_LAB_KEEP=failed keeps a failed lab running; see docs/lab.md)",
                self.name,
                self.machine,
                self.log_tail(25)
            ));
        }
        if keep && self.nspawn.is_some() {
            let pid = self.nspawn_pid();
            progress(&format!(
                "lab {} kept running (CTM_LAB_KEEP): machine {}, systemd-nspawn pid {pid}, directory {}\n  \
                 enter it:  nsenter -t {} -a bash\n  \
                 stop it:   kill {pid}   (the next lab to boot removes what is left of it)",
                self.name,
                self.machine,
                self.dir.display(),
                self.leader,
            ));
            // Not waited for: it outlives the test.
            drop(self.nspawn.take());
            return;
        }
        self.stop();
        if let Err(e) = remove_tree(&self.dir) {
            progress(&format!("lab {}: {e}", self.name));
        }
    }
}

#[derive(PartialEq, Eq)]
enum Keep {
    Never,
    Always,
    Failed,
}

fn keep_mode() -> Keep {
    match std::env::var("CTM_LAB_KEEP").as_deref() {
        Ok("failed") => Keep::Failed,
        Ok("" | "0") | Err(_) => Keep::Never,
        Ok(_) => Keep::Always,
    }
}

/// The cache directory (`CTM_LAB_CACHE`, else [`DEFAULT_CACHE`]).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("CTM_LAB_CACHE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_CACHE), PathBuf::from)
}

/// Where the labs' own directories go: beside the cache, so that a lab
/// left by an interrupted run is easy to find (and to remove).
fn lab_run_dir() -> PathBuf {
    let dir = cache_dir().join("labs");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    sweep_stale_labs(&dir);
    dir
}

/// Removes the directories of labs whose systemd-nspawn is gone (a test
/// run that was killed leaves them). A lab still running, kept or not, is
/// left alone, and so is a directory too new to have its pid file yet.
fn sweep_stale_labs(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let pid = fs::read_to_string(path.join("nspawn.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        let running = match pid {
            Some(pid) => {
                is_alive(pid)
                    && fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| {
                        matches!(comm.trim(), "systemd-nspawn" | "setpriv" | "sh")
                    })
            }
            None => entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() < Duration::from_secs(600)),
        };
        if !running {
            // A lab whose nspawn died may have left its processes behind.
            let cleaned = match fs::read_to_string(path.join("cgroup")) {
                Ok(cgroup) => remove_cgroup(Path::new(cgroup.trim())),
                Err(_) => Ok(()),
            }
            .and_then(|()| remove_tree(&path));
            match cleaned {
                Ok(()) => progress(&format!("removed a stale lab: {}", path.display())),
                Err(e) => progress(&format!("cannot remove a stale lab: {e}")),
            }
        }
    }
}

/// The key of the cached rootfs: what goes into it.
fn rootfs_key() -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "recipe {RECIPE_VERSION}\nsuite {SUITE}\nvariant minbase\n"
    ));
    for p in PACKAGES {
        h.update(format!("package {p}\n"));
    }
    h.finalize().iter().take(8).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Takes the flock at `lock_path` in the lab cache, which parallel tests
/// and test binaries share: one builds `what` while the others wait,
/// saying so. Released when the file is dropped; the caller looks again
/// for what it wanted once it holds it.
pub fn lock_cache(lock_path: &Path, what: &str) -> Result<File, String> {
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        progress(&format!(
            "waiting for another test to finish building {what} ({})",
            lock_path.display()
        ));
        lock.lock()
            .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    }
    Ok(lock)
}

fn build_rootfs() -> Result<PathBuf, String> {
    let cache = cache_dir();
    let key = rootfs_key();
    let done = cache.join(format!("rootfs-{SUITE}-{key}"));
    if done.is_dir() {
        return Ok(done);
    }
    fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let _lock = lock_cache(&cache.join("lock"), "the lab rootfs")?;
    if done.is_dir() {
        return Ok(done);
    }
    // Whatever partial build is left is from a run that died: we hold the lock.
    for entry in fs::read_dir(&cache).map_err(|e| e.to_string())?.flatten() {
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && entry.file_name().to_string_lossy().starts_with("build-") {
            remove_tree(&entry.path())?;
        }
    }
    let build = cache.join(format!("build-{key}-{}", std::process::id()));
    let log_path = cache.join(format!("rootfs-{SUITE}-{key}.log"));
    let result = debootstrap(&build, &log_path).and_then(|()| customize(&build));
    if let Err(e) = result {
        let _ = remove_tree(&build);
        return Err(e);
    }
    let _ = Command::new("sync").arg("-f").arg(&build).status();
    fs::rename(&build, &done).map_err(|e| format!("rename into {}: {e}", done.display()))?;
    Ok(done)
}

fn build_guest() -> Result<PathBuf, String> {
    let rootfs = build_rootfs()?;
    let cache = cache_dir();
    let done = cache.join(format!("guest-{SUITE}-{}", rootfs_key()));
    if done.is_dir() {
        return Ok(done);
    }
    let _lock = lock_cache(&cache.join("lock"), "the lab guest image")?;
    if done.is_dir() {
        return Ok(done);
    }
    let build = cache.join(format!("build-guest-{}", std::process::id()));
    let _ = remove_tree(&build);
    fs::create_dir_all(build.join("usr")).map_err(|e| format!("{}: {e}", build.display()))?;
    for entry in fs::read_dir(&rootfs).map_err(|e| e.to_string())?.flatten() {
        if entry.file_name() == "usr" {
            continue;
        }
        let out = Command::new("cp")
            .args(["-a", "--"])
            .arg(entry.path())
            .arg(&build)
            .output()
            .map_err(|e| format!("cp: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cp -a {}: {}",
                entry.path().display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    // Each container makes its own SSH host keys (a ctm step), as a
    // container from a real image would.
    let ssh = build.join("etc/ssh");
    for entry in fs::read_dir(&ssh)
        .map_err(|e| format!("{}: {e}", ssh.display()))?
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
            fs::remove_file(entry.path())
                .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        }
    }
    // nspawn looks for os-release before /usr is bound.
    let os_release = build.join("etc/os-release");
    let _ = fs::remove_file(&os_release);
    fs::copy(rootfs.join("usr/lib/os-release"), &os_release)
        .map_err(|e| format!("{}: {e}", os_release.display()))?;
    fs::rename(&build, &done).map_err(|e| format!("rename into {}: {e}", done.display()))?;
    progress(&format!("made the slim guest image {}", done.display()));
    Ok(done)
}

fn debootstrap(target: &Path, log_path: &Path) -> Result<(), String> {
    let mirror = mirror()?;
    let started = Instant::now();
    progress(&format!(
        "building the lab rootfs ({SUITE} from {mirror}; about a minute, once) into {}; log: {}",
        target.display(),
        log_path.display()
    ));
    let log = File::create(log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut child = Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(SUITE)
        .arg(target)
        .arg(&mirror)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot run debootstrap: {e}"))?;
    let mut next_report = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(15);
            let text = fs::read_to_string(log_path).unwrap_or_default();
            let last = text.lines().last().unwrap_or("");
            progress(&format!(
                "  debootstrap: {} s: {last}",
                started.elapsed().as_secs()
            ));
        }
        thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        let text = fs::read_to_string(log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        return Err(format!(
            "debootstrap failed ({}); the end of {}:\n{}",
            describe(status),
            log_path.display(),
            lines[lines.len().saturating_sub(30)..].join("\n")
        ));
    }
    progress(&format!(
        "lab rootfs built in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Makes the debootstrapped tree a good lab: a fresh machine id per boot
/// (nspawn's `--uuid`), the machine name as host name, nothing of this
/// machine's (debootstrap copies its host name), nothing that prompts or
/// runs on a timer during a test, no package cache.
fn customize(root: &Path) -> Result<(), String> {
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let machine_id = root.join("etc/machine-id");
    fs::write(&machine_id, "").map_err(|e| io(&machine_id, e))?;
    // systemd would take D-Bus's id, the same in every lab, before --uuid.
    let dbus_id = root.join("var/lib/dbus/machine-id");
    let _ = fs::remove_file(&dbus_id);
    symlink("/etc/machine-id", &dbus_id).map_err(|e| io(&dbus_id, e))?;
    let hostname = root.join("etc/hostname");
    let _ = fs::remove_file(&hostname);
    let hosts = root.join("etc/hosts");
    fs::write(
        &hosts,
        "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n",
    )
    .map_err(|e| io(&hosts, e))?;
    let units = root.join("etc/systemd/system");
    for unit in [
        "systemd-firstboot.service",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "dpkg-db-backup.timer",
        "e2scrub_all.timer",
        "e2scrub_reap.service",
        "fstrim.timer",
    ] {
        let link = units.join(unit);
        let _ = fs::remove_file(&link);
        symlink("/dev/null", &link).map_err(|e| io(&link, e))?;
    }
    let disable = Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .arg("disable")
        .args(DISABLED_UNITS)
        .output()
        .map_err(|e| format!("systemctl --root disable: {e}"))?;
    if !disable.status.success() {
        return Err(format!(
            "systemctl --root={} disable {}: {}",
            root.display(),
            DISABLED_UNITS.join(" "),
            String::from_utf8_lossy(&disable.stderr)
        ));
    }
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let dir = root.join(dir);
        for entry in fs::read_dir(&dir).map_err(|e| io(&dir, e))?.flatten() {
            let p = entry.path();
            if p.is_file() && p.file_name() != Some(OsStr::new("lock")) {
                fs::remove_file(&p).map_err(|e| io(&p, e))?;
            }
        }
    }
    let stamp = root.join("etc/ctm-lab");
    fs::write(
        &stamp,
        format!(
            "suite={SUITE}\nrecipe={RECIPE_VERSION}\npackages={}\n",
            PACKAGES.join(",")
        ),
    )
    .map_err(|e| io(&stamp, e))?;
    Ok(())
}

/// The Debian mirror this machine's apt uses (`CTM_LAB_MIRROR` overrides).
pub fn mirror() -> Result<String, String> {
    if let Some(m) = std::env::var("CTM_LAB_MIRROR")
        .ok()
        .filter(|m| !m.is_empty())
    {
        return Ok(m);
    }
    let deb822 = "/etc/apt/sources.list.d/debian.sources";
    if let Ok(text) = fs::read_to_string(deb822) {
        for line in text.lines() {
            if let Some(rest) = line.trim().strip_prefix("URIs:")
                && let Some(uri) = rest.split_whitespace().next()
            {
                return Ok(uri.to_string());
            }
        }
    }
    let list = "/etc/apt/sources.list";
    if let Ok(text) = fs::read_to_string(list) {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("deb") {
                continue;
            }
            let mut word = words.next();
            // `deb [arch=amd64 signed-by=...] URI ...`
            if word.is_some_and(|w| w.starts_with('[')) {
                while let Some(w) = word {
                    word = words.next();
                    if w.ends_with(']') {
                        break;
                    }
                }
            }
            if let Some(uri) = word {
                return Ok(uri.to_string());
            }
        }
    }
    Err(format!(
        "no Debian mirror: no `URIs:` line in {deb822} and no `deb` line in {list} (set CTM_LAB_MIRROR)"
    ))
}

/// Removes a directory tree, first unmounting anything mounted under it
/// (a debootstrap that died leaves its /proc and /sys mounted), and
/// refusing if that fails, so as never to descend into a mount.
fn remove_tree(path: &Path) -> Result<(), String> {
    if !path.exists() {
        return Ok(());
    }
    let mounts_under = || -> Vec<PathBuf> {
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut v: Vec<PathBuf> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(|m| PathBuf::from(m.replace("\\040", " ")))
            .filter(|m| m.starts_with(path))
            .collect();
        v.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        v
    };
    for m in mounts_under() {
        let _ = Command::new("umount").arg("--lazy").arg(&m).status();
    }
    let left = mounts_under();
    if !left.is_empty() {
        return Err(format!(
            "not removing {}: still mounted under it: {left:?}",
            path.display()
        ));
    }
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("removing {}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Whether a process exists and is not a zombie.
fn is_alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        !matches!(state, Some("Z" | "X") | None)
    })
}

/// Writes a small file whole or not at all (other test processes read it).
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    let _ = fs::write(&tmp, text).and_then(|()| fs::rename(&tmp, path));
}

/// The cgroup v2 hierarchy's mount point (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on a hybrid host).
fn cgroup2_mount() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if right.split(' ').next() != Some("cgroup2") {
            return None;
        }
        Some(PathBuf::from(left.split(' ').nth(4)?.replace("\\040", " ")))
    })
}

/// A new cgroup for a lab, beside this process's own cgroup v2.
fn lab_cgroup(machine: &str) -> Result<PathBuf, String> {
    let mount = cgroup2_mount().ok_or("no cgroup v2 hierarchy is mounted")?;
    let own = fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("this process is in no cgroup v2")?;
    let parent = mount.join(own.trim().trim_start_matches('/'));
    Ok(parent.join(format!("ctm-{machine}")))
}

/// Kills whatever is left in a lab's cgroup and removes it, subtree first.
/// Only ever given a lab's own cgroup (checked).
fn remove_cgroup(cgroup: &Path) -> Result<(), String> {
    let ours = cgroup2_mount().is_some_and(|m| cgroup.starts_with(m))
        && cgroup
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("ctm-lab-"));
    if !ours {
        return Err(format!("{} is not a lab's cgroup", cgroup.display()));
    }
    if !cgroup.exists() {
        return Ok(());
    }
    let populated = || {
        fs::read_to_string(cgroup.join("cgroup.events"))
            .is_ok_and(|e| e.lines().any(|l| l == "populated 1"))
    };
    if populated() {
        // cgroup.kill: SIGKILL to every process in the subtree, at once.
        if let Err(e) = fs::write(cgroup.join("cgroup.kill"), "1")
            && cgroup.exists()
        {
            return Err(format!("{}: cgroup.kill: {e}", cgroup.display()));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while populated() {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} still has processes after cgroup.kill",
                    cgroup.display()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    // Another test process may be removing the same stale lab: what is
    // gone already is fine.
    fn rmdir_tree(dir: &Path) -> std::io::Result<()> {
        let entries = match fs::read_dir(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            other => other?,
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&entry.path())?;
            }
        }
        // A cgroup that has just emptied can be busy for a moment.
        let mut tries = 0;
        loop {
            match fs::remove_dir(dir) {
                Err(e) if e.raw_os_error() == Some(16) && tries < 100 => {
                    tries += 1;
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                other => return other,
            }
        }
    }
    rmdir_tree(cgroup).map_err(|e| format!("removing cgroup {}: {e}", cgroup.display()))
}

/// A machine name for a test: its name, made a valid host name, plus
/// this process and a counter so that parallel labs never share one.
fn machine_name(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let mut base: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    base.truncate(24);
    let base = base.trim_matches('-');
    format!(
        "lab-{base}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn random_uuid() -> Result<String, String> {
    fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("random uuid: {e}"))
}

fn bind_ro(host: &Path, inside: &str) -> String {
    // `:` separates the two paths in nspawn's syntax.
    let host = host.display().to_string();
    assert!(
        !host.contains(':') && !inside.contains(':'),
        "cannot bind {host} at {inside}: `:` in a path"
    );
    format!("--bind-ro={host}:{inside}")
}

/// The pids whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out.sort_unstable();
    out
}

fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Runs a command, collecting its output, killing it after `timeout`.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().map_err(|e| e.to_string())?;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let output = Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    };
    if timed_out {
        return Err(format!(
            "killed after {} s:\n{}",
            timeout.as_secs(),
            show_output(&output)
        ));
    }
    Ok(output)
}

/// A command's output for a failure message.
pub fn show_output(out: &Output) -> String {
    format!(
        "--- stdout ---\n{}--- stderr ---\n{}---",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// A progress line on stderr, written past the test harness's capture so
/// that a long build or a kept lab is never silent.
fn progress(msg: &str) {
    let _ = writeln!(std::io::stderr(), "ctm-lab: {msg}");
}
