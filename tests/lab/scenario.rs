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
