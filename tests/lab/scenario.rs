//! What the end-to-end scenarios share: a lab with ctm and the slim guest
//! image, running ctm in it, waiting for an outcome.

use std::process::Output;
use std::time::{Duration, Instant};

use super::{Lab, Options, show_output};

/// Where the scenarios bind the slim guest image ([`Lab::guest_image`]).
pub const GUEST: &str = "/srv/images/guest";

/// A command's output with miette's wrapping undone (box-drawing margins
/// and line breaks become single spaces), for matching whole sentences.
pub fn flat(out: &Output) -> String {
    let text = show_output(out).replace(['│', '×'], " ");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A lab with ctm and the guest image, and `host` at /root/host.kdl.
pub fn lab_with(name: &str, host: &str) -> Lab {
    lab_with_args(name, host, &[])
}

/// [`lab_with`], the lab's nspawn given more arguments.
pub fn lab_with_args(name: &str, host: &str, nspawn_args: &[&str]) -> Lab {
    let lab = Lab::boot_with(
        name,
        Options {
            ctm: Some(env!("CARGO_BIN_EXE_ctm").into()),
            guest_at: Some(GUEST.into()),
            nspawn_args: nspawn_args.iter().map(|a| a.to_string()).collect(),
            ..Options::default()
        },
    );
    lab.write("/root/host.kdl", host);
    lab
}

pub fn ctm(lab: &Lab, args: &[&str]) -> Output {
    let mut cmd = vec!["ctm"];
    cmd.extend_from_slice(args);
    lab.run_timeout(&cmd, Duration::from_secs(600))
}

pub fn ctm_ok(lab: &Lab, args: &[&str]) -> String {
    let out = ctm(lab, args);
    assert!(
        out.status.success(),
        "ctm {} failed in lab {}:\n{}",
        args.join(" "),
        lab.name(),
        show_output(&out)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Retries `probe` for up to `timeout`; the last failure is the message.
pub fn eventually(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => {
                panic!("not within {} s: {what}: {e}", timeout.as_secs())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// `ctm plan HOST --detailed-exitcode EXTRA…`: Ok when it finds nothing
/// to change, else its output.
pub fn plan_is_empty(lab: &Lab, host: &str, extra: &[&str]) -> Result<(), String> {
    let mut args = vec!["plan", host, "--detailed-exitcode", "--no-diff"];
    args.extend_from_slice(extra);
    let out = ctm(lab, &args);
    if out.status.code() == Some(0) {
        Ok(())
    } else {
        Err(show_output(&out))
    }
}

pub fn ping(lab: &Lab, address: &str) -> Result<(), String> {
    let out = lab.run(&["ping", "-c", "1", "-W", "2", address]);
    if out.status.success() {
        Ok(())
    } else {
        Err(show_output(&out))
    }
}

/// `systemd-nspawn@NAME.service`'s last start, in the lab's monotonic clock.
pub fn started_at(lab: &Lab, name: &str) -> u64 {
    let unit = format!("systemd-nspawn@{name}.service");
    lab.ok(&[
        "systemctl",
        "show",
        &unit,
        "--property=ActiveEnterTimestampMonotonic",
        "--value",
    ])
    .trim()
    .parse()
    .unwrap_or_else(|e| panic!("start time of {unit}: {e}"))
}

/// Runs `f` on a thread of this process that has entered the lab's
/// network namespace: this machine's files, the lab's network (its
/// loopback included), so a test reaches a server the lab runs on
/// 127.0.0.1.
pub fn in_lab_network<T: Send + 'static>(lab: &Lab, f: impl FnOnce() -> T + Send + 'static) -> T {
    use std::os::fd::AsRawFd as _;
    let ns = std::fs::File::open(format!("/proc/{}/ns/net", lab.leader()))
        .unwrap_or_else(|e| panic!("the lab's network namespace: {e}"));
    std::thread::spawn(move || {
        // SAFETY: setns(2) on a descriptor we hold; it changes only this
        // thread's network namespace.
        let rc = unsafe { nix::libc::setns(ns.as_raw_fd(), nix::libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

/// Where `serve_in_lab` listens, inside the lab.
pub const SERVE_PORT: u16 = 7780;

/// Starts `ctm serve /root/host.kdl` in the lab as a transient unit on
/// its loopback, waits until it answers, and returns its login token.
pub fn serve_in_lab(lab: &Lab) -> String {
    lab.ok(&[
        "systemd-run",
        "--unit=ctm-web",
        "--collect",
        "ctm",
        "serve",
        "/root/host.kdl",
        "--listen",
        &format!("127.0.0.1:{SERVE_PORT}"),
    ]);
    eventually("ctm serve to answer", Duration::from_secs(20), || {
        let answer = http_in_lab(lab, "/login", None);
        answer
            .starts_with("HTTP/1.1 200")
            .then_some(())
            .ok_or(answer)
    });
    lab.read("/var/lib/ctm/web-token").trim().to_string()
}

/// A GET of `path` from the server in the lab: the whole answer, headers
/// and all.
pub fn http_in_lab(lab: &Lab, path: &str, token: Option<&str>) -> String {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{}\r\n",
        token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"))
    );
    in_lab_network(lab, move || {
        use std::io::{Read as _, Write as _};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", SERVE_PORT)) else {
            return String::from("(not listening yet)");
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let _ = stream.write_all(request.as_bytes());
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
}
