//! Overlay roots (`root "overlay"`, issue 16) on a real systemd host: two
//! containers made from one stored image boot on overlays of its tree,
//! keep their writes apart, survive each other's `ctm destroy`, and a
//! snapshot (and an archive) restored into one gives back exactly what
//! it held, an image's file it had deleted included (a whiteout in the
//! new upper).
//!
//! The lab's own root is an overlay (`--volatile=overlay`), which cannot
//! hold an upper directory: `/var/lib/ctm` is a directory of this
//! machine's, bound in, as a host's own disk would be.

#[path = "lab/mod.rs"]
mod lab;
mod support;

use std::time::{Duration, Instant};

use lab::Lab;
use lab::scenario::*;
use support::*;

const HOST: &str = r#"
host "lab" {
    uplink "host0"
}

image "packed" {
    tarball "/root/guest.tar"
}

template "base" {
    image "packed"
    bind "/usr" read-only=#true          // the guest image has no /usr of its own
    root "overlay"
}

container "a" {
    from "base"
}

container "b" {
    from "base"
}
"#;

fn lab_unavailable() -> bool {
    let available = Lab::available();
    skip_unless(available.is_ok(), &available.err().unwrap_or_default())
}

fn sh(lab: &Lab, script: &str) -> String {
    lab.sh_ok(script).trim().to_string()
}

fn running(lab: &Lab, name: &str) -> Result<(), String> {
    let unit = format!("systemd-nspawn@{name}.service");
    let active = lab.run(&["systemctl", "is-active", &unit]);
    let state = lab.run(&["machinectl", "show", name, "--property=State", "--value"]);
    let (active, state) = (
        String::from_utf8_lossy(&active.stdout).trim().to_string(),
        String::from_utf8_lossy(&state.stdout).trim().to_string(),
    );
    if active == "active" && state == "running" {
        Ok(())
    } else {
        Err(format!("{unit} is {active}, machine {name} is {state:?}"))
    }
}

fn fs_type(lab: &Lab, path: &str) -> String {
    let out = lab.run(&["findmnt", "-n", "-o", "FSTYPE", "--mountpoint", path]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Bytes of disk `dir` takes in the lab (`du`: blocks, not the apparent
/// sizes, which count a file copied up for its metadata alone, whose
/// data stays in the image, at its full size).
fn bytes(lab: &Lab, dir: &str) -> u64 {
    du(lab, dir, "")
}

/// [`bytes`] but for the container's journal, whose files journald
/// allocates in 8 MiB steps while the container runs.
fn bytes_but_journal(lab: &Lab, dir: &str) -> u64 {
    du(lab, dir, "--exclude=journal")
}

fn du(lab: &Lab, dir: &str, options: &str) -> u64 {
    sh(
        lab,
        &format!("du -s --block-size=1 {options} {dir} | cut -f1"),
    )
    .parse()
    .unwrap_or_else(|e| panic!("du {dir}: {e}"))
}

fn in_container(lab: &Lab, name: &str, script: &str) -> std::process::Output {
    lab.run_in(name, &["/bin/sh", "-c", script])
}

fn in_container_ok(lab: &Lab, name: &str, script: &str) -> String {
    let out = in_container(lab, name, script);
    assert!(
        out.status.success(),
        "in {name}: {script}\n{}",
        lab::show_output(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn two_overlay_roots_share_an_image_keep_apart_and_restore_exactly() {
    if lab_unavailable() {
        return;
    }
    // Declared before the lab: dropped after it, once nothing is mounted
    // from it.
    let state = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let lab = lab_with_args(
        "overlay-roots",
        HOST,
        &[&format!("--bind={}:/var/lib/ctm", state.path().display())],
    );
    eprintln!("lab booted in {:.1} s", started.elapsed().as_secs_f64());
    lab.ok(&["tar", "-C", GUEST, "-cf", "/root/guest.tar", "."]);

    let t = Instant::now();
    let plan = ctm_ok(&lab, &["plan", "/root/host.kdl"]);
    assert!(plan.contains("an overlay of the image"), "{plan}");
    let applied = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    eprintln!(
        "apply of two overlay roots took {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert!(applied.contains("generation 1"), "{applied}");
    // The probe's answer is kept for this boot: plans do not probe again.
    let probe = sh(&lab, "cat /var/lib/ctm/overlay-probe.json");
    assert!(probe.contains("boot_id"), "{probe}");
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap_or_else(|e| panic!("{e}"));

    for name in ["a", "b"] {
        eventually(&format!("{name} runs"), Duration::from_secs(60), || {
            running(&lab, name)
        });
        assert_eq!(
            fs_type(&lab, &format!("/var/lib/machines/{name}")),
            "overlay"
        );
    }
    let lower = sh(&lab, "readlink /var/lib/ctm/overlays/a/lower");
    assert_eq!(lower, sh(&lab, "readlink /var/lib/ctm/overlays/b/lower"));
    assert!(lower.starts_with("/var/lib/ctm/images/"), "{lower}");
    eprintln!(
        "image tree {} bytes on disk; uppers after boot, but the journal: a {} bytes, b {} bytes",
        bytes(&lab, &lower),
        bytes_but_journal(&lab, "/var/lib/ctm/overlays/a/upper"),
        bytes_but_journal(&lab, "/var/lib/ctm/overlays/b/upper")
    );

    // A write in a is a's alone: not in b, not in the image.
    in_container_ok(&lab, "a", "echo from-a > /root/only-a");
    assert!(
        !in_container(&lab, "b", "test -e /root/only-a")
            .status
            .success()
    );
    assert!(
        !lab.run(&["test", "-e", &format!("{lower}/root/only-a")])
            .status
            .success()
    );
    assert_eq!(
        sh(&lab, "cat /var/lib/ctm/overlays/a/upper/root/only-a"),
        "from-a"
    );

    // A snapshot of a, with an image's file deleted and another changed.
    in_container_ok(&lab, "a", "rm /etc/issue.net && echo changed > /etc/issue");
    let t = Instant::now();
    let said = ctm_ok(&lab, &["snapshot", "a"]);
    let id = said
        .split("Took snapshot ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no snapshot taken: {said}"))
        .to_string();
    eprintln!("snapshot {id} took {:.1} s", t.elapsed().as_secs_f64());
    // Changed since: all of it undone by the restore.
    in_container_ok(
        &lab,
        "a",
        "echo back > /etc/issue.net && echo again > /etc/issue && rm /root/only-a && echo later > /root/after",
    );
    let t = Instant::now();
    eprintln!(
        "upper of a before the restore: {} bytes on disk but the journal, {} entries",
        bytes_but_journal(&lab, "/var/lib/ctm/overlays/a/upper"),
        sh(&lab, "find /var/lib/ctm/overlays/a/upper | wc -l")
    );
    let restored = ctm_ok(&lab, &["restore", "a", &id]);
    eprintln!("restore took {:.1} s", t.elapsed().as_secs_f64());
    assert!(restored.contains(&id), "{restored}");
    eventually("a runs again", Duration::from_secs(60), || {
        running(&lab, "a")
    });
    assert_eq!(fs_type(&lab, "/var/lib/machines/a"), "overlay");
    assert_eq!(in_container_ok(&lab, "a", "cat /root/only-a"), "from-a");
    assert_eq!(in_container_ok(&lab, "a", "cat /etc/issue"), "changed");
    assert!(
        !in_container(&lab, "a", "test -e /etc/issue.net")
            .status
            .success()
    );
    assert!(
        !in_container(&lab, "a", "test -e /root/after")
            .status
            .success()
    );
    // The deleted file is a whiteout; the image is as it was.
    assert_eq!(
        sh(
            &lab,
            "stat -c '%F %t:%T' /var/lib/ctm/overlays/a/upper/etc/issue.net"
        ),
        "character special file 0:0"
    );
    assert!(
        lab.run(&["test", "-e", &format!("{lower}/etc/issue.net")])
            .status
            .success()
    );
    // What the snapshot holds of /root and /etc is what a sees, exactly
    // (the rest of the tree is written by the boot it went through).
    let snapshot = format!("/var/lib/ctm/snapshots/a/{id}/rootfs");
    for dir in ["root", "etc"] {
        let diff = lab.run(&[
            "diff",
            "-r",
            "--no-dereference",
            &format!("{snapshot}/{dir}"),
            &format!("/var/lib/machines/a/{dir}"),
        ]);
        assert!(diff.status.success(), "{dir}:\n{}", lab::show_output(&diff));
    }
    eprintln!(
        "upper of a after the restore: {} bytes on disk but the journal, {} entries (the image tree is {} bytes)",
        bytes_but_journal(&lab, "/var/lib/ctm/overlays/a/upper"),
        sh(&lab, "find /var/lib/ctm/overlays/a/upper | wc -l"),
        bytes(&lab, &lower)
    );
    let snapshots = ctm_ok(&lab, &["snapshots", "a"]);
    assert!(snapshots.contains("kept by the restore"), "{snapshots}");

    // A backup (an archive of the merged view, made from a snapshot)
    // restored with --from: the same rebuild of the upper.
    let t = Instant::now();
    let said = ctm_ok(&lab, &["backup", "a"]);
    let archive = said
        .split("--from ")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no archive made: {said}"))
        .to_string();
    eprintln!("backup took {:.1} s", t.elapsed().as_secs_f64());
    in_container_ok(
        &lab,
        "a",
        "echo after-backup > /root/only-a && rm /etc/os-release && touch /root/later",
    );
    let t = Instant::now();
    let restored = ctm_ok(&lab, &["restore", "a", "--from", &archive]);
    eprintln!(
        "restore from the archive took {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert!(restored.contains("Restored backup"), "{restored}");
    eprintln!(
        "upper of a after the archive's restore: {} bytes on disk but the journal",
        bytes_but_journal(&lab, "/var/lib/ctm/overlays/a/upper")
    );
    eventually("a runs again", Duration::from_secs(60), || {
        running(&lab, "a")
    });
    assert_eq!(fs_type(&lab, "/var/lib/machines/a"), "overlay");
    assert_eq!(in_container_ok(&lab, "a", "cat /root/only-a"), "from-a");
    assert!(
        in_container(&lab, "a", "test -s /etc/os-release")
            .status
            .success()
    );
    assert!(
        !in_container(&lab, "a", "test -e /root/later")
            .status
            .success()
    );
    assert!(
        !in_container(&lab, "a", "test -e /etc/issue.net")
            .status
            .success()
    );

    // Destroying b keeps the image and a.
    let t = Instant::now();
    ctm_ok(&lab, &["destroy", "b", "--yes"]);
    eprintln!("destroy took {:.1} s", t.elapsed().as_secs_f64());
    assert_eq!(fs_type(&lab, "/var/lib/machines/b"), "");
    assert!(
        !lab.run(&["test", "-e", "/var/lib/ctm/overlays/b"])
            .status
            .success()
    );
    assert!(
        lab.run(&["test", "-e", &format!("{lower}/etc/os-release")])
            .status
            .success()
    );
    running(&lab, "a").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(in_container_ok(&lab, "a", "cat /root/only-a"), "from-a");
    eprintln!("whole test {:.1} s", started.elapsed().as_secs_f64());
}
