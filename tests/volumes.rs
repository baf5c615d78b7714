//! Volumes on real file systems: quotas enforced on btrfs and XFS images
//! the tests make and loop-mount, refused at plan time on a file system
//! that has none, and, in a lab (docs/lab.md), a volume made by `ctm
//! apply`, written by its container through an ID-mapped mount, held to
//! its quota, shown by `ctm status`, kept when its container goes and
//! deleted only by `--prune`.

#[path = "lab/mod.rs"]
mod lab;
mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ctm::backend::volumes::{self, Kind};
use ctm::plan::QuotaSupport;
use lab::Lab;
use lab::scenario::*;
use support::*;

const MIB: u64 = 1 << 20;

fn run(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", argv[0]))
}

fn run_ok(argv: &[&str]) -> String {
    let out = run(argv);
    assert!(
        out.status.success(),
        "{} failed: {}{}",
        argv.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn has_command(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

/// A file system the test made and mounted, unmounted and deleted when
/// dropped (after anything that uses it: declare it first).
struct Mounted {
    dir: tempfile::TempDir,
}

impl Mounted {
    /// A sparse image of `size`, made with `mkfs`, loop-mounted with
    /// `options`; `None` (and a visible skip) where this machine cannot.
    fn image(mkfs: &str, size: &str, options: &str) -> Option<Mounted> {
        let why = if !is_root() {
            Some("loop-mounting an image needs root".to_string())
        } else if !has_command(mkfs) {
            Some(format!(
                "{mkfs} is not installed (.ci/run installs btrfs-progs and xfsprogs)"
            ))
        } else if !Path::new("/dev/loop-control").exists() {
            Some("this machine has no loop devices".to_string())
        } else {
            None
        };
        if skip_unless(why.is_none(), why.as_deref().unwrap_or_default()) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        run_ok(&["truncate", "-s", size, image.to_str().unwrap()]);
        run_ok(&[mkfs, "-q", image.to_str().unwrap()]);
        let mut argv = vec!["mount", "-o"];
        let options = format!("loop,{options}");
        argv.push(&options);
        argv.extend([image.to_str().unwrap(), mnt.to_str().unwrap()]);
        run_ok(&argv);
        Some(Mounted { dir })
    }

    /// A tmpfs of `size`: a file system without project quotas.
    fn tmpfs(size: &str) -> Option<Mounted> {
        if skip_unless(is_root(), "mounting a tmpfs needs root") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        run_ok(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            mnt.to_str().unwrap(),
        ]);
        Some(Mounted { dir })
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// Mounts the image again with `options`; false (and mounted as it
    /// was) if the kernel refuses them.
    fn remount(&mut self, options: &str) -> bool {
        let (image, mnt) = (self.dir.path().join("fs.img"), self.root());
        let (image, mnt) = (image.to_str().unwrap(), mnt.to_str().unwrap());
        run_ok(&["umount", mnt]);
        let with = format!("loop,{options}");
        if run(&["mount", "-o", &with, image, mnt]).status.success() {
            return true;
        }
        run_ok(&["mount", "-o", "loop", image, mnt]);
        false
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // The loop device goes with the mount (mount -o loop sets autoclear).
        let _ = run(&["umount", self.root().to_str().unwrap()]);
    }
}

/// Writes `bytes` of zeros to `path` and syncs them; the error of the
/// first write or sync that fails.
fn fill(path: &Path, bytes: u64) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    let chunk = vec![0u8; MIB as usize];
    for _ in 0..bytes / MIB {
        file.write_all(&chunk)?;
    }
    file.sync_all()
}

fn is_quota_exceeded(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::EDQUOT)
}

#[test]
fn a_btrfs_volume_is_a_subvolume_held_to_its_qgroup_limit() {
    let Some(fs) = Mounted::image("mkfs.btrfs", "300M", "rw") else {
        return;
    };
    let root = fs.root();
    let mut lines = Vec::new();
    volumes::create(&root, "data", Some(8 * MIB), &mut |l| {
        lines.push(l.to_string())
    })
    .unwrap();
    let made = volumes::made_by_ctm(&root, "data").unwrap();
    assert_eq!(made.kind, Kind::BtrfsSubvolume);
    assert_eq!(made.quota, Some(8 * MIB));
    let dir = volumes::path(&root, "data");
    let show = run_ok(&["btrfs", "subvolume", "show", dir.to_str().unwrap()]);
    assert!(show.contains("Name:"), "{show}");

    let err = fill(&dir.join("big"), 32 * MIB).unwrap_err();
    assert!(is_quota_exceeded(&err), "{err}");
    // Raised, the quota lets it grow; what is there stays.
    volumes::set_quota(&root, "data", Some(64 * MIB), &mut |_| {}).unwrap();
    fill(&dir.join("bigger"), 32 * MIB).unwrap();
    let usage = volumes::measure(&root);
    assert!(usage["data"].used >= 32 * MIB, "{usage:?}");

    // --prune's two steps: set aside, then purged with its record.
    volumes::set_aside(&root, "data").unwrap();
    assert!(volumes::purge(&root, &mut |_| {}).is_empty());
    assert!(!dir.exists());
    assert!(volumes::made_volumes(&root).is_empty());
}

#[test]
fn an_xfs_volume_has_a_project_quota_of_its_own_where_the_mount_allows() {
    let Some(mut fs) = Mounted::image("mkfs.xfs", "320M", "rw") else {
        return;
    };
    let root = fs.root();
    // Mounted without `prjquota`: a quota is refused, and nothing is made.
    let support = volumes::quota_support(&volumes::file_system(&root).unwrap(), false);
    assert!(
        matches!(&support, QuotaSupport::Unsupported { reason } if reason.contains("mount it with `prjquota`")),
        "{support:?}"
    );
    let err = volumes::create(&root, "data", Some(8 * MIB), &mut |_| {}).unwrap_err();
    assert!(err.why.contains("prjquota"), "{err}");
    assert!(!volumes::path(&root, "data").exists());
    assert!(volumes::made_volumes(&root).is_empty());
    // Without a quota it is a plain directory.
    volumes::create(&root, "plain", None, &mut |_| {}).unwrap();
    assert_eq!(
        volumes::made_by_ctm(&root, "plain").unwrap().kind,
        Kind::Directory
    );

    if !fs.remount("prjquota") {
        // The kernel's fact, not the machine's setup: say so, loudly.
        say_skipped(&format!(
            "the kernel ({}) has no XFS quota support (CONFIG_XFS_QUOTA): a project quota \
             is refused there (shown above), and its enforcement cannot be shown",
            run_ok(&["uname", "-r"]).trim()
        ));
        return;
    }
    for name in ["data", "logs"] {
        volumes::create(&root, name, Some(8 * MIB), &mut |_| {}).unwrap();
    }
    let (data, logs) = (
        volumes::made_by_ctm(&root, "data").unwrap(),
        volumes::made_by_ctm(&root, "logs").unwrap(),
    );
    assert_eq!(data.kind, Kind::Directory);
    assert!(data.project.is_some() && data.project != logs.project);

    let dir = volumes::path(&root, "data");
    // Inherited: a subdirectory counts against the volume's quota too.
    std::fs::create_dir(dir.join("sub")).unwrap();
    let err = fill(&dir.join("sub/big"), 32 * MIB).unwrap_err();
    assert!(is_quota_exceeded(&err), "{err}");
    let used = volumes::measure(&root)["data"].used;
    assert!((4 * MIB..=8 * MIB).contains(&used), "{used}");
    // The other volume's quota is its own.
    fill(&volumes::path(&root, "logs").join("some"), 4 * MIB).unwrap();
    // Lifted, the quota no longer stops it.
    volumes::set_quota(&root, "data", None, &mut |_| {}).unwrap();
    std::fs::remove_file(dir.join("sub/big")).unwrap();
    fill(&dir.join("sub/big"), 32 * MIB).unwrap();
}

/// A host file with one container of a volume with a quota.
const QUOTA_HOST: &str = r#"
image "guest" {
    directory "/srv/images/guest"
}
volume "data" {
    quota "8M"
}
container "db" {
    image "guest"
    bind "/usr" read-only=#true
    volume "data" "/srv/data" idmap=#true
}
"#;

#[test]
fn a_quota_the_file_system_cannot_enforce_is_refused_at_plan_time() {
    let Some(fs) = Mounted::tmpfs("64m") else {
        return;
    };
    let root = fs.root();
    let file = root.join("host.kdl");
    std::fs::write(&file, QUOTA_HOST).unwrap();
    let ctm = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ctm"))
            .args(args)
            .args(["--root", root.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let planned = ctm(&["plan", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&planned.stdout);
    assert_eq!(planned.status.code(), Some(1), "{text}");
    assert!(
        text.contains("create volume data (quota 8M) at /var/lib/ctm/volumes/data"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "volume data (quota 8M): the volumes are on tmpfs ({}), which has no quotas ctm can set",
            root.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("The volumes' file system cannot enforce a quota: nothing will be applied."),
        "{text}"
    );

    let applied = ctm(&["apply", file.to_str().unwrap(), "--yes"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&applied.stdout),
        String::from_utf8_lossy(&applied.stderr)
    );
    assert_eq!(applied.status.code(), Some(1), "{said}");
    assert!(said.contains("ctm::quota_unsupported"), "{said}");
    assert!(said.contains("the quota of volume data (8M)"), "{said}");
    // Nothing changed: no generation, no volume, no file.
    assert!(!root.join("var/lib/ctm/generations").exists());
    assert!(!root.join("var/lib/ctm/volumes").exists());
    assert!(!root.join("etc/systemd/nspawn/db.nspawn").exists());

    // Without the quota the same host plans.
    std::fs::write(&file, QUOTA_HOST.replace("    quota \"8M\"\n", "")).unwrap();
    let planned = ctm(&["plan", file.to_str().unwrap()]);
    assert!(
        planned.status.success(),
        "{}",
        String::from_utf8_lossy(&planned.stdout)
    );
}

/// A lab whose volumes directory is a btrfs image made here and bound
/// in: the lab's own root is an overlay, which takes neither quotas nor
/// ID-mapped mounts. The lab is dropped before the image (field order).
struct BtrfsLab {
    lab: Lab,
    fs: Mounted,
}

impl BtrfsLab {
    /// `None` (and a visible skip) where there is no lab or no image.
    fn boot(name: &str, host: &str) -> Option<BtrfsLab> {
        let available = Lab::available();
        if skip_unless(available.is_ok(), &available.err().unwrap_or_default()) {
            return None;
        }
        let fs = Mounted::image("mkfs.btrfs", "300M", "rw")?;
        let bind = format!("--bind={}:/var/lib/ctm/volumes", fs.root().display());
        let lab = lab_with_args(name, host, &[&bind]);
        Some(BtrfsLab { lab, fs })
    }
}

#[test]
fn a_volume_outlives_its_container_holds_its_quota_and_goes_only_with_prune() {
    let Some(BtrfsLab { lab, fs }) = BtrfsLab::boot("volumes", QUOTA_HOST) else {
        return;
    };
    let applied = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(
        applied.contains("create volume data (quota 8M) at /var/lib/ctm/volumes/data"),
        "{applied}"
    );

    // The container writes through the ID-mapped mount; on the host the
    // file is root's.
    let wrote = lab.run_in("db", &["sh", "-c", "echo kept > /srv/data/note && id -u"]);
    assert!(wrote.status.success(), "{}", lab::show_output(&wrote));
    let note = fs.root().join("data/note");
    assert_eq!(std::fs::read_to_string(&note).unwrap(), "kept\n");
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(note.metadata().unwrap().uid(), 0);

    // Past its quota, the container's write fails.
    let big = lab.run_in(
        "db",
        &[
            "dd",
            "if=/dev/zero",
            "of=/srv/data/big",
            "bs=1M",
            "count=32",
            "conv=fsync",
        ],
    );
    assert!(!big.status.success(), "{}", lab::show_output(&big));
    assert!(
        lab::show_output(&big).contains("Disk quota exceeded"),
        "{}",
        lab::show_output(&big)
    );

    let status = ctm_ok(&lab, &["status"]);
    let row = status
        .lines()
        .find(|l| l.starts_with("data "))
        .unwrap_or_else(|| panic!("no volume row:\n{status}"));
    assert!(row.contains("8M") && row.contains("db"), "{status}");

    // The container goes; its volume and data stay.
    let without = "image \"guest\" {\n    directory \"/srv/images/guest\"\n}\n";
    lab.write("/root/host.kdl", without);
    let applied = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(
        applied.contains("Kept: volumes no longer in the host file:"),
        "{applied}"
    );
    assert_eq!(std::fs::read_to_string(&note).unwrap(), "kept\n");

    // Only --prune deletes it.
    let pruned = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes", "--prune"]);
    assert!(
        pruned.contains("delete volume data (/var/lib/ctm/volumes/data) and its data"),
        "{pruned}"
    );
    assert!(!fs.root().join("data").exists());
}

// ---- snapshots -------------------------------------------------------------------

/// A host file of one container with a volume, applied to a files-only
/// root, with a tree made by hand where ctm would have made it.
struct FilesOnly {
    dir: tempfile::TempDir,
    /// A file system of its own for the root, when the test made one.
    fs: Option<Mounted>,
}

const SNAPSHOT_HOST: &str = r#"
image "guest" {
    directory "/srv/images/guest"
}
volume "data"
container "web" {
    image "guest"
    volume "data" "/srv/data"
}
"#;

impl FilesOnly {
    fn new() -> FilesOnly {
        FilesOnly::with(None)
    }

    /// With the root on `fs`.
    fn with(fs: Option<Mounted>) -> FilesOnly {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("host.kdl"), SNAPSHOT_HOST).unwrap();
        let f = FilesOnly { dir, fs };
        let out = f.ctm(&["apply", f.file().to_str().unwrap(), "--yes"]);
        assert!(out.status.success(), "{}", text(&out));
        std::fs::create_dir_all(f.root().join("var/lib/machines/web/etc")).unwrap();
        f
    }

    fn root(&self) -> PathBuf {
        match &self.fs {
            Some(fs) => fs.root(),
            None => self.dir.path().join("root"),
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("host.kdl")
    }

    fn ctm(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ctm"))
            .args(args)
            .args(["--root", self.root().to_str().unwrap()])
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctm(args);
        assert!(
            out.status.success(),
            "ctm {}: {}",
            args.join(" "),
            text(&out)
        );
        text(&out)
    }

    fn tree(&self, path: &str) -> PathBuf {
        self.root().join("var/lib/machines/web").join(path)
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The id in `Took snapshot ID of container …`.
fn taken_id(said: &str) -> String {
    said.split("Took snapshot ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no snapshot taken: {said}"))
        .to_string()
}

#[test]
fn a_snapshot_is_restored_and_what_it_replaced_is_kept() {
    let f = FilesOnly::new();
    std::fs::write(f.tree("etc/motd"), "before\n").unwrap();
    let id = taken_id(&f.ok(&["snapshot", "web"]));
    std::fs::write(f.tree("etc/motd"), "after\n").unwrap();
    std::fs::write(f.tree("etc/new"), "new\n").unwrap();

    let said = f.ok(&["restore", "web", &id]);
    assert!(
        said.contains(&format!("Restored snapshot {id} of container web.")),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(f.tree("etc/motd")).unwrap(),
        "before\n"
    );
    assert!(!f.tree("etc/new").exists());
    // The replaced state is a snapshot of its own: restoring it undoes
    // the restore.
    let kept = said
        .split("kept as snapshot ")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches('.')
        .to_string();
    let listed = f.ok(&["snapshots", "web"]);
    assert!(listed.contains(&id) && listed.contains(&kept), "{listed}");
    assert!(
        listed.contains(&format!("kept by the restore of {id}")),
        "{listed}"
    );
    f.ok(&["restore", "web", &kept]);
    assert_eq!(
        std::fs::read_to_string(f.tree("etc/motd")).unwrap(),
        "after\n"
    );
    assert_eq!(std::fs::read_to_string(f.tree("etc/new")).unwrap(), "new\n");

    let json: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(
        &f.ctm(&["snapshots", "--json"]).stdout,
    ))
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3, "{json}");
    assert_eq!(json[0]["container"], "web");
    assert_eq!(json[0]["frozen"], false);
}

#[test]
fn snapshots_of_what_is_not_there_are_clear_errors() {
    let f = FilesOnly::new();
    let out = f.ctm(&["snapshot", "db"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("container db is not managed by ctm"),
        "{}",
        text(&out)
    );
    let out = f.ctm(&["restore", "web", "20990101T000000Z"]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out);
    assert!(
        said.contains("container web has no snapshot 20990101T000000Z"),
        "{said}"
    );
    assert!(said.contains("`ctm snapshot web` takes one"), "{said}");
    // --volumes needs the volume there.
    let volume = f.root().join("var/lib/ctm/volumes/data");
    std::fs::rename(&volume, f.dir.path().join("moved")).unwrap();
    let out = f.ctm(&["snapshot", "web", "--volumes"]);
    assert!(
        text(&out).contains("volume data of container web does not exist"),
        "{}",
        text(&out)
    );
    assert!(f.ok(&["snapshots"]).contains("No snapshots."));
}

/// One container with a volume, in a lab whose volumes are on btrfs.
const LAB_SNAPSHOT_HOST: &str = r#"
image "guest" {
    directory "/srv/images/guest"
}
volume "data" {
    quota "64M"
}
container "web" {
    image "guest"
    bind "/usr" read-only=#true
    volume "data" "/srv/data" idmap=#true
}
"#;

#[test]
fn a_snapshot_of_a_running_container_is_frozen_consistent_and_restores_its_data() {
    let Some(BtrfsLab { lab, fs }) = BtrfsLab::boot("snapshots", LAB_SNAPSHOT_HOST) else {
        return;
    };
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    let in_web = |script: &str| {
        let out = lab.run_in("web", &["sh", "-ec", script]);
        assert!(out.status.success(), "{script}: {}", lab::show_output(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    in_web("echo in-rootfs > /root/hello; echo in-volume > /srv/data/hello");
    // Enough to copy that the copy takes a moment, and a writer in the
    // container's own cgroup (a unit of its systemd) that replaces two
    // files in turn, each whole (write, then rename): in a copy of one
    // moment, a is b or b + 1; a copy made while it runs on is far off.
    in_web("head -c 48M /dev/zero > /root/ballast");
    in_web(
        "systemd-run --unit=writer sh -c 'i=0; while :; do i=$((i+1)); \
         echo $i > /a.new; mv /a.new /a; echo $i > /b.new; mv /b.new /b; done'",
    );

    let events = lab.path("/sys/fs/cgroup/machine.slice/systemd-nspawn@web.service/cgroup.events");
    let done = std::sync::atomic::AtomicBool::new(false);
    let (said, seen_frozen) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut frozen = false;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if std::fs::read_to_string(&events)
                    .is_ok_and(|e| e.lines().any(|l| l == "frozen 1"))
                {
                    frozen = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            frozen
        });
        let said = ctm_ok(&lab, &["snapshot", "web", "--volumes"]);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (said, watcher.join().unwrap())
    });
    assert!(
        seen_frozen,
        "the container's cgroup was never frozen during:\n{said}"
    );
    assert!(said.contains("froze container web for the copy"), "{said}");
    // Thawed after: the writer goes on.
    let before = in_web("cat /a");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_ne!(in_web("cat /a"), before, "the writer did not go on");

    let id = taken_id(&said);
    let snap = |p: &str| {
        lab.read(format!("/var/lib/ctm/snapshots/web/{id}/{p}"))
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let (a, b) = (snap("rootfs/a"), snap("rootfs/b"));
    assert!(a == b || a == b + 1, "inconsistent copy: a={a} b={b}");
    let listed = ctm_ok(&lab, &["snapshots", "web", "--json"]);
    assert!(listed.contains("\"frozen\": true"), "{listed}");
    assert!(listed.contains("\"data\""), "{listed}");

    // Both files go; the restore brings them back.
    in_web("systemctl stop writer; rm /root/hello /srv/data/hello");
    let restored = ctm_ok(&lab, &["restore", "web", &id]);
    assert!(restored.contains("and started it again"), "{restored}");
    eventually("web runs again", std::time::Duration::from_secs(60), || {
        let out = lab.run_in("web", &["cat", "/root/hello", "/srv/data/hello"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(lab::show_output(&out))
        }
    });
    assert_eq!(
        in_web("cat /root/hello /srv/data/hello"),
        "in-rootfs\nin-volume\n"
    );
    // The volume is ctm's still, a subvolume with its quota: nothing to do.
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap();
    // The limit is on the restored subvolume's own qgroup (-f: only the
    // qgroups of this path).
    let show = run_ok(&[
        "btrfs",
        "qgroup",
        "show",
        "-r",
        "--raw",
        "-f",
        fs.root().join("data").to_str().unwrap(),
    ]);
    assert!(show.contains(&(64 * MIB).to_string()), "{show}");
}

#[test]
fn a_snapshot_that_cannot_fit_is_refused_before_anything_is_copied() {
    let Some(fs) = Mounted::tmpfs("32m") else {
        return;
    };
    let f = FilesOnly::with(Some(fs));
    fill(&f.tree("etc/big"), 20 * MIB).unwrap();
    let out = f.ctm(&["snapshot", "web"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("not enough space for the copy: it needs 2"),
        "{said}"
    );
    assert!(said.contains("MB are free at"), "{said}");
    assert!(!f.root().join("var/lib/ctm/snapshots/web").exists());
}

#[test]
fn a_files_only_apply_makes_its_volumes_and_a_restore_brings_back_their_data() {
    let f = FilesOnly::new();
    // Made by the apply, recorded, and then nothing more to do.
    let volume = f.root().join("var/lib/ctm/volumes/data");
    assert!(volume.is_dir());
    let planned = f.ctm(&["plan", f.file().to_str().unwrap(), "--detailed-exitcode"]);
    assert_eq!(planned.status.code(), Some(0), "{}", text(&planned));
    let status = f.ok(&["status"]);
    assert!(status.contains("VOLUME  USED"), "{status}");
    assert!(status.contains("data    "), "{status}");

    std::fs::write(volume.join("table"), "v1").unwrap();
    std::fs::write(f.tree("etc/motd"), "v1").unwrap();
    let id = taken_id(&f.ok(&["snapshot", "web", "--volumes"]));
    std::fs::write(volume.join("table"), "v2").unwrap();
    std::fs::write(f.tree("etc/motd"), "v2").unwrap();
    f.ok(&["restore", "web", &id]);
    assert_eq!(std::fs::read_to_string(volume.join("table")).unwrap(), "v1");
    assert_eq!(std::fs::read_to_string(f.tree("etc/motd")).unwrap(), "v1");
    // The restored volume is ctm's still: the plan has nothing to do.
    let planned = f.ctm(&["plan", f.file().to_str().unwrap(), "--detailed-exitcode"]);
    assert_eq!(planned.status.code(), Some(0), "{}", text(&planned));

    // Out of the host file, the volume stays; only --prune deletes it.
    std::fs::write(
        f.file(),
        SNAPSHOT_HOST
            .replace("volume \"data\"\n", "")
            .replace("    volume \"data\" \"/srv/data\"\n", ""),
    )
    .unwrap();
    let kept = f.ok(&["apply", f.file().to_str().unwrap(), "--yes"]);
    assert!(
        kept.contains("Kept: volumes no longer in the host file:"),
        "{kept}"
    );
    assert!(volume.join("table").exists());
    let pruned = f.ok(&["apply", f.file().to_str().unwrap(), "--yes", "--prune"]);
    assert!(
        pruned.contains("1 volume will be deleted, with all data in it"),
        "{pruned}"
    );
    assert!(!volume.exists());
    assert!(
        !f.root()
            .join("var/lib/ctm/volume-records/data.json")
            .exists()
    );
}

// ---- copy-on-write root file systems ---------------------------------------
//
// A container's root file system shares its image's blocks where the file
// system can (`root` in docs/config.md): the same loop-mounted btrfs and
// XFS images, with a tarball image unpacked into the store and two
// containers made from it as their first provisioning step does.

/// A tarball image at `/srv/image.tar` under `root`: an os-release and
/// 8 MiB that do not compress, so that what is shared is measurable.
fn tarball_image(root: &Path) -> ctm::compile::provision::RootfsSource {
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("etc")).unwrap();
    std::fs::write(tree.path().join("etc/os-release"), "ID=test\n").unwrap();
    let mut data = vec![0u8; 8 * MIB as usize];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        // xorshift: bytes gzip and btrfs compression cannot shrink.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(tree.path().join("data"), &data).unwrap();
    std::fs::create_dir_all(root.join("srv")).unwrap();
    run_ok(&[
        "tar",
        "--create",
        "--file",
        root.join("srv/image.tar").to_str().unwrap(),
        "--directory",
        tree.path().to_str().unwrap(),
        ".",
    ]);
    ctm::compile::provision::RootfsSource::Tarball {
        path: "/srv/image.tar".into(),
        sha256: None,
    }
}

/// Container `name`'s tree made from `source` as `mode` says; the
/// progress lines.
fn make_root(
    root: &Path,
    name: &str,
    source: &ctm::compile::provision::RootfsSource,
    mode: ctm::model::RootMode,
) -> Result<Vec<String>, String> {
    let step = ctm::compile::provision::rootfs_step(name, "img", source.clone(), mode);
    let mut lines = Vec::new();
    ctm::backend::provision::before_boot(root, name, &[step], &mut |l| lines.push(l.to_string()))
        .map(|_| lines.clone())
        .map_err(|e| format!("{e}\nprogress:\n{}", lines.join("\n")))
}

fn machine(root: &Path, name: &str) -> PathBuf {
    root.join("var/lib/machines").join(name)
}

/// `btrfs filesystem du`'s total and exclusive bytes of `path`.
fn btrfs_du(path: &Path) -> (u64, u64) {
    // Data still in the page cache has no extents to count yet.
    run_ok(&["sync", "--file-system", path.to_str().unwrap()]);
    let out = run_ok(&[
        "btrfs",
        "filesystem",
        "du",
        "-s",
        "--raw",
        path.to_str().unwrap(),
    ]);
    let line = out.lines().last().unwrap();
    let fields: Vec<u64> = line
        .split_whitespace()
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    (fields[0], fields[1])
}

/// A write in one container's tree is not seen in the other's, nor in the
/// image.
fn assert_separate(root: &Path, image: &Path) {
    std::fs::write(machine(root, "one").join("etc/os-release"), "ID=changed\n").unwrap();
    std::fs::write(machine(root, "one").join("new"), "only here\n").unwrap();
    for tree in [machine(root, "two"), image.to_path_buf()] {
        assert_eq!(
            std::fs::read_to_string(tree.join("etc/os-release")).unwrap(),
            "ID=test\n"
        );
        assert!(!tree.join("new").exists());
    }
}

#[test]
fn roots_on_btrfs_are_snapshots_of_the_image_and_share_its_blocks() {
    use ctm::model::RootMode;
    let Some(fs) = Mounted::image("mkfs.btrfs", "300M", "rw") else {
        return;
    };
    if skip_unless(has_command("btrfs"), "btrfs-progs is not installed") {
        return;
    }
    let root = fs.root();
    let source = tarball_image(&root);
    let observed = ctm::backend::rootfs::observe(
        &root,
        &std::collections::BTreeMap::from([("one".to_string(), ())]),
    );
    assert_eq!(observed.fs, "btrfs");
    assert_eq!((&observed.snapshot, &observed.reflink), (&None, &None));
    assert_eq!(
        observed.missing.iter().collect::<Vec<_>>(),
        ["one"],
        "{observed:?}"
    );

    let said = make_root(&root, "one", &source, RootMode::Auto).unwrap();
    assert!(
        said.iter().any(|l| l.starts_with("snapshotting image img")),
        "{said:?}"
    );
    make_root(&root, "two", &source, RootMode::Auto).unwrap();
    let image = std::fs::read_dir(root.join(ctm::layout::IMAGE_STORE))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    // The image is a subvolume, and each tree a snapshot of it: a tree's
    // 8 MiB are all shared, none its own.
    for tree in [&image, &machine(&root, "one"), &machine(&root, "two")] {
        let show = run_ok(&["btrfs", "subvolume", "show", tree.to_str().unwrap()]);
        assert!(show.contains("Name:"), "{show}");
    }
    // Each tree's parent is the image.
    let field = |path: &Path, name: &str| {
        run_ok(&["btrfs", "subvolume", "show", path.to_str().unwrap()])
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap()
    };
    let uuid = field(&image, "UUID:");
    for name in ["one", "two"] {
        assert_eq!(field(&machine(&root, name), "Parent UUID:"), uuid);
    }
    for name in ["one", "two"] {
        let (total, exclusive) = btrfs_du(&machine(&root, name));
        assert!(total >= 8 * MIB, "{name}: {total}");
        assert!(exclusive < MIB, "{name}: {exclusive} of {total} exclusive");
        let made = ctm::backend::rootfs::made_by_ctm(&root, name).unwrap();
        assert_eq!(made.kind, Some(RootMode::Snapshot));
    }
    // A copy asked for is one: its blocks are its own.
    make_root(&root, "three", &source, RootMode::Copy).unwrap();
    let (total, exclusive) = btrfs_du(&machine(&root, "three"));
    assert!(exclusive >= 8 * MIB, "{exclusive} of {total} exclusive");
    assert_separate(&root, &image);

    // Deleted as `ctm destroy` and `--prune` do: the snapshot goes, the
    // image and the other tree stay.
    ctm::backend::rootfs::set_aside(&root, "one").unwrap();
    let problems = ctm::backend::rootfs::purge(&root, &mut |_| {});
    assert!(problems.is_empty(), "{problems:?}");
    assert!(!machine(&root, "one").exists());
    assert!(machine(&root, "two").join("data").is_file());
    assert!(image.join("data").is_file());
    // The image's subvolume goes as `ctm image rm` removes it; the
    // snapshot made of it keeps its blocks.
    ctm::backend::provision::remove_image(&image.with_extension("json")).unwrap();
    assert!(!image.exists());
    assert_eq!(
        std::fs::read(machine(&root, "two").join("data"))
            .unwrap()
            .len() as u64,
        8 * MIB
    );
}

#[test]
fn roots_on_xfs_are_reflink_copies_and_a_file_system_without_reflinks_refuses_one() {
    use ctm::model::RootMode;
    let Some(fs) = Mounted::image("mkfs.xfs", "320M", "rw") else {
        return;
    };
    if skip_unless(
        has_command("filefrag"),
        "filefrag (e2fsprogs) is not installed",
    ) {
        return;
    }
    let root = fs.root();
    let source = tarball_image(&root);
    let observed =
        ctm::backend::rootfs::observe(&root, &std::collections::BTreeMap::<String, ()>::new());
    assert_eq!(observed.reflink, None, "{observed:?}");
    assert!(
        observed
            .snapshot
            .as_deref()
            .unwrap_or("")
            .contains("is on xfs, not btrfs"),
        "{observed:?}"
    );
    let said = make_root(&root, "one", &source, RootMode::Auto).unwrap();
    assert!(
        said.iter().any(|l| l.ends_with("(reflink copy)")),
        "{said:?}"
    );
    make_root(&root, "two", &source, RootMode::Reflink).unwrap();
    // Every extent of each tree's data is shared (with the image's).
    for name in ["one", "two"] {
        let extents = run_ok(&[
            "filefrag",
            "-v",
            machine(&root, name).join("data").to_str().unwrap(),
        ]);
        let rows: Vec<&str> = extents
            .lines()
            .filter(|l| {
                l.trim_start()
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit())
            })
            .collect();
        assert!(!rows.is_empty(), "{extents}");
        assert!(rows.iter().all(|r| r.contains("shared")), "{extents}");
        assert_eq!(
            ctm::backend::rootfs::made_by_ctm(&root, name).unwrap().kind,
            Some(RootMode::Reflink)
        );
    }
    let image = std::fs::read_dir(root.join(ctm::layout::IMAGE_STORE))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    assert_separate(&root, &image);
    // A snapshot asked for on XFS is refused, with why, and nothing made.
    let err = make_root(&root, "snap", &source, RootMode::Snapshot).unwrap_err();
    assert!(err.contains("a snapshot cannot be made here"), "{err}");
    assert!(err.contains("is on xfs, not btrfs"), "{err}");
    assert!(!machine(&root, "snap").exists());

    // tmpfs shares nothing: a reflink is refused, `auto` copies.
    let Some(tmp) = Mounted::tmpfs("64m") else {
        return;
    };
    let root = tmp.root();
    let source = tarball_image(&root);
    let err = make_root(&root, "one", &source, RootMode::Reflink).unwrap_err();
    assert!(err.contains("cannot share blocks between files"), "{err}");
    let said = make_root(&root, "one", &source, RootMode::Auto).unwrap();
    assert!(said.iter().any(|l| l.ends_with("(copy)")), "{said:?}");
    assert_eq!(
        ctm::backend::rootfs::made_by_ctm(&root, "one")
            .unwrap()
            .kind,
        Some(RootMode::Copy)
    );
}

// ---- backups -------------------------------------------------------------------

/// The archive in `Backed up container NAME to PATH, …`.
fn backed_up(said: &str) -> PathBuf {
    backed_up_as("container", said)
}

/// The archive in `Backed up KIND NAME to PATH, …`.
fn backed_up_as(kind: &str, said: &str) -> PathBuf {
    let rest = said
        .split(&format!("Backed up {kind} "))
        .nth(1)
        .unwrap_or_else(|| panic!("no backup made: {said}"));
    let path = rest
        .split(" to ")
        .nth(1)
        .unwrap()
        .split(", ")
        .next()
        .unwrap();
    PathBuf::from(path)
}

/// Every file under `dir` with its content, for "nothing changed".
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_backup_restores_the_tree_and_volumes_and_keeps_what_it_replaced() {
    let f = FilesOnly::new();
    let volume = f.root().join("var/lib/ctm/volumes/data");
    std::fs::write(volume.join("table"), "v1").unwrap();
    std::fs::write(f.tree("etc/motd"), "v1").unwrap();
    let said = f.ok(&["backup", "web"]);
    let archive = backed_up(&said);
    assert!(
        archive.starts_with(f.root().join("var/lib/ctm/backups")),
        "{said}"
    );
    assert!(said.contains("with volumes data"), "{said}");
    // The snapshot it was made from is gone.
    assert!(f.ok(&["snapshots", "web"]).contains("No snapshots."));
    let listed = f.ok(&["backups", "web"]);
    assert!(listed.contains(archive.to_str().unwrap()), "{listed}");

    std::fs::write(volume.join("table"), "v2").unwrap();
    std::fs::write(f.tree("etc/motd"), "v2").unwrap();
    std::fs::write(f.tree("etc/new"), "new").unwrap();
    let said = f.ok(&["restore", "web", "--from", archive.to_str().unwrap()]);
    assert!(said.contains("verified"), "{said}");
    assert_eq!(std::fs::read_to_string(volume.join("table")).unwrap(), "v1");
    assert_eq!(std::fs::read_to_string(f.tree("etc/motd")).unwrap(), "v1");
    assert!(!f.tree("etc/new").exists());
    // What it replaced is a snapshot, and the volume is ctm's still.
    let kept = said
        .split("kept as snapshot ")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches('.')
        .to_string();
    f.ok(&["restore", "web", &kept]);
    assert_eq!(std::fs::read_to_string(volume.join("table")).unwrap(), "v2");
    assert_eq!(std::fs::read_to_string(f.tree("etc/new")).unwrap(), "new");
    let planned = f.ctm(&["plan", f.file().to_str().unwrap(), "--detailed-exitcode"]);
    assert_eq!(planned.status.code(), Some(0), "{}", text(&planned));
    // The container's part of the host file went with it.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc {} | tar -xOf - host/host.kdl",
            archive.display()
        ))
        .output()
        .unwrap();
    if out.status.success() {
        let host = String::from_utf8_lossy(&out.stdout);
        assert!(host.contains("container \"web\""), "{host}");
        assert!(host.contains("volume \"data\""), "{host}");
        assert!(host.contains("image \"guest\""), "{host}");
    }
}

#[test]
fn a_backup_with_a_flipped_byte_is_refused_and_nothing_changes() {
    let f = FilesOnly::new();
    std::fs::write(f.tree("etc/motd"), "v1".repeat(1000)).unwrap();
    let archive = backed_up(&f.ok(&["backup", "web"]));
    std::fs::write(f.tree("etc/motd"), "v2").unwrap();
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&archive, &bytes).unwrap();

    let before = contents(&f.root());
    let out = f.ctm(&["restore", "web", "--from", archive.to_str().unwrap()]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("is refused"), "{said}");
    assert!(said.contains("nothing was changed"), "{said}");
    assert_eq!(contents(&f.root()), before, "{said}");
    assert_eq!(std::fs::read_to_string(f.tree("etc/motd")).unwrap(), "v2");
}

#[test]
fn a_backup_of_another_container_is_refused() {
    let f = FilesOnly::new();
    let archive = backed_up(&f.ok(&["backup", "web"]));
    let renamed = archive.with_file_name("db-20990101T000000Z.ctm-backup.tar.zst");
    std::fs::rename(&archive, &renamed).unwrap();
    let out = f.ctm(&["restore", "db", "--from", renamed.to_str().unwrap()]);
    assert!(
        text(&out).contains("is a backup of container web, not of db"),
        "{}",
        text(&out)
    );
}

#[test]
fn backup_retention_keeps_the_newest_n_after_success_only() {
    let f = FilesOnly::new();
    let dir = f.dir.path().join("backups");
    let to = dir.to_str().unwrap();
    // Something of the user's in the same directory is never touched.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("web-notes.txt"), "mine").unwrap();
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(backed_up(&f.ok(&["backup", "web", "--to", to])));
    }
    let said = f.ok(&["backup", "web", "--to", to, "--keep", "2"]);
    made.push(backed_up(&said));
    assert!(
        said.contains("Deleted 2 older archives (--keep 2)."),
        "{said}"
    );
    let left = f.ok(&["backups", "web", "--in", to, "--json"]);
    let left: Vec<serde_json::Value> = serde_json::from_str(&left).unwrap();
    let paths: Vec<PathBuf> = left
        .iter()
        .map(|b| PathBuf::from(b["path"].as_str().unwrap()))
        .collect();
    assert_eq!(paths, made[2..]);
    assert!(dir.join("web-notes.txt").exists());
    // A backup that fails prunes nothing.
    std::fs::remove_dir_all(f.root().join("var/lib/machines/web")).unwrap();
    let out = f.ctm(&["backup", "web", "--to", to, "--keep", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let after = f.ok(&["backups", "web", "--in", to, "--json"]);
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&after)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn snapshots_are_deleted_one_by_one_or_down_to_the_newest_n() {
    let f = FilesOnly::new();
    let ids: Vec<String> = (0..3)
        .map(|_| taken_id(&f.ok(&["snapshot", "web"])))
        .collect();
    let said = f.ok(&["snapshots", "web", "--delete", &ids[1]]);
    assert!(
        said.contains(&format!("Deleted snapshot {} of container web", ids[1])),
        "{said}"
    );
    assert!(
        !f.root()
            .join("var/lib/ctm/snapshots/web")
            .join(&ids[1])
            .exists()
    );
    let out = f.ctm(&["snapshots", "web", "--delete", &ids[1]]);
    assert!(
        text(&out).contains(&format!("container web has no snapshot {}", ids[1])),
        "{}",
        text(&out)
    );
    let said = f.ok(&["snapshots", "web", "--keep", "1"]);
    assert!(
        said.contains("Deleted 1 snapshot of container web"),
        "{said}"
    );
    let listed = f.ok(&["snapshots", "web"]);
    assert!(
        listed.contains(&ids[2]) && !listed.contains(&format!("{} ", ids[0])),
        "{listed}"
    );
}

#[test]
fn an_exported_container_is_imported_on_another_root_never_over_anything() {
    let f = FilesOnly::new();
    let volume = f.root().join("var/lib/ctm/volumes/data");
    std::fs::write(volume.join("table"), "rows").unwrap();
    std::fs::write(f.tree("etc/motd"), "moved").unwrap();
    let archive = f.dir.path().join("web.ctm-backup.tar.zst");
    let said = f.ok(&["export", "web", "-o", archive.to_str().unwrap()]);
    assert!(said.contains("Exported container web to"), "{said}");
    // Never over a file that is there.
    let again = f.ctm(&["export", "web", "-o", archive.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));

    // The same root has both: refused, and nothing changes.
    let before = contents(&f.root());
    let out = f.ctm(&["import", archive.to_str().unwrap()]);
    let refused = text(&out);
    assert_eq!(out.status.code(), Some(1), "{refused}");
    assert!(
        refused.contains("container web's root file system at")
            && refused.contains("volume data at")
            && refused.contains("exists already"),
        "{refused}"
    );
    assert_eq!(contents(&f.root()), before);

    // Another root: put in place, recorded, and the snippet applies.
    let other = tempfile::tempdir().unwrap();
    let root = other.path().join("root");
    let ctm = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ctm"))
            .args(args)
            .args(["--root", root.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = ctm(&["import", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let snippet = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(snippet.contains("container \"web\""), "{snippet}");
    assert!(text(&out).contains("with volumes data"), "{}", text(&out));
    let machine = root.join("var/lib/machines/web");
    assert_eq!(
        std::fs::read_to_string(machine.join("etc/motd")).unwrap(),
        "moved"
    );
    assert!(root.join("var/lib/ctm/rootfs/web.json").exists());
    let file = other.path().join("host.kdl");
    std::fs::write(&file, &snippet).unwrap();
    let applied = ctm(&["apply", file.to_str().unwrap(), "--yes"]);
    assert!(applied.status.success(), "{}", text(&applied));
    assert!(
        !text(&applied).contains("create volume data"),
        "{}",
        text(&applied)
    );
    assert_eq!(
        std::fs::read_to_string(root.join("var/lib/ctm/volumes/data/table")).unwrap(),
        "rows"
    );
    let planned = ctm(&["plan", file.to_str().unwrap(), "--detailed-exitcode"]);
    assert_eq!(planned.status.code(), Some(0), "{}", text(&planned));

    // Under another name, beside it: only the volume is in the way.
    let out = ctm(&["import", archive.to_str().unwrap(), "--as", "web2"]);
    assert!(text(&out).contains("volume data at"), "{}", text(&out));
    assert!(!root.join("var/lib/machines/web2").exists());
}

#[test]
fn a_container_exported_from_one_lab_runs_with_its_data_in_another() {
    let Some(BtrfsLab { lab: a, fs: _fs_a }) = BtrfsLab::boot("export-a", LAB_SNAPSHOT_HOST) else {
        return;
    };
    ctm_ok(&a, &["apply", "/root/host.kdl", "--yes"]);
    let wrote = a.run_in(
        "web",
        &[
            "sh",
            "-ec",
            "echo in-rootfs > /root/hello; echo in-volume > /srv/data/hello",
        ],
    );
    assert!(wrote.status.success(), "{}", lab::show_output(&wrote));
    let said = ctm_ok(&a, &["export", "web", "-o", "/root/web.ctm-backup.tar.zst"]);
    assert!(said.contains("Exported container web"), "{said}");
    let archive = std::fs::read(a.path("/root/web.ctm-backup.tar.zst")).unwrap();

    // A second lab with nothing of web's: the host file has only the image.
    let Some(BtrfsLab { lab: b, fs: _fs_b }) = BtrfsLab::boot(
        "export-b",
        "image \"guest\" {\n    directory \"/srv/images/guest\"\n}\n",
    ) else {
        return;
    };
    b.write("/root/web.ctm-backup.tar.zst", &archive);
    let snippet = ctm_ok(&b, &["import", "/root/web.ctm-backup.tar.zst"]);
    assert!(snippet.contains("container \"web\""), "{snippet}");
    // stdout (the host file's part) and stderr (progress) come mixed:
    // progress lines are indented by two spaces, the host file by four.
    let is_progress =
        |l: &str| l.starts_with("  ") && !l.starts_with("    ") || l.starts_with("Imported");
    let host = snippet
        .lines()
        .filter(|l| !is_progress(l))
        .collect::<Vec<_>>()
        .join("\n");
    b.write("/root/host.kdl", format!("{host}\n"));
    let applied = ctm_ok(&b, &["apply", "/root/host.kdl", "--yes"]);
    assert!(!applied.contains("create volume data"), "{applied}");
    eventually(
        "web runs in the second lab",
        std::time::Duration::from_secs(60),
        || {
            let out = b.run_in("web", &["cat", "/root/hello", "/srv/data/hello"]);
            let said = String::from_utf8_lossy(&out.stdout).into_owned();
            if said == "in-rootfs\nin-volume\n" {
                Ok(())
            } else {
                Err(lab::show_output(&out))
            }
        },
    );
}

#[test]
fn a_running_container_is_backed_up_frozen_and_restored_from_the_archive() {
    let Some(BtrfsLab { lab, fs: _fs }) = BtrfsLab::boot("backups", LAB_SNAPSHOT_HOST) else {
        return;
    };
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    let in_web = |script: &str| {
        let out = lab.run_in("web", &["sh", "-ec", script]);
        assert!(out.status.success(), "{script}: {}", lab::show_output(&out));
    };
    in_web("echo in-rootfs > /root/hello; echo in-volume > /srv/data/hello");
    let said = ctm_ok(&lab, &["backup", "web", "--keep", "1"]);
    assert!(said.contains("froze container web for the copy"), "{said}");
    let archive = backed_up(&said);
    in_web("rm /root/hello /srv/data/hello");

    let restored = ctm_ok(
        &lab,
        &["restore", "web", "--from", archive.to_str().unwrap()],
    );
    assert!(restored.contains("and started it again"), "{restored}");
    eventually("web runs again", std::time::Duration::from_secs(60), || {
        let out = lab.run_in("web", &["cat", "/root/hello", "/srv/data/hello"]);
        if String::from_utf8_lossy(&out.stdout) == "in-rootfs\nin-volume\n" {
            Ok(())
        } else {
            Err(lab::show_output(&out))
        }
    });
    // The volume is ctm's still, with its quota: nothing to do.
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap();
}

/// The archives of container `web` in `dir` of the lab, oldest first.
fn archives_in(lab: &Lab, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(lab.path(dir))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("web-") && n.ends_with(".ctm-backup.tar.zst"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn the_backup_timers_service_started_by_hand_archives_and_keeps_the_newest() {
    let host = LAB_SNAPSHOT_HOST.replace(
        "    volume \"data\" \"/srv/data\" idmap=#true\n",
        "    volume \"data\" \"/srv/data\" idmap=#true\n    \
         backup {\n        to \"/srv/backups\"\n        every \"Mon..Fri 02:00\"\n        keep 2\n    }\n",
    );
    let Some(BtrfsLab { lab, fs: _fs }) = BtrfsLab::boot("backup-timer", &host) else {
        return;
    };
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    // Started by the apply, enabled at boot through timers.target, and
    // systemd reads its schedule.
    assert_eq!(
        lab.ok(&["systemctl", "is-active", "ctm-backup-web.timer"])
            .trim(),
        "active"
    );
    assert_eq!(
        lab.ok(&["systemctl", "is-enabled", "ctm-backup-web.timer"])
            .trim(),
        "enabled"
    );
    let shown = lab.ok(&[
        "systemctl",
        "show",
        "-p",
        "TimersCalendar",
        "ctm-backup-web.timer",
    ]);
    assert!(
        shown.contains("OnCalendar=Mon..Fri *-*-* 02:00:00"),
        "{shown}"
    );

    let run = || {
        let out = lab.run(&["systemctl", "start", "ctm-backup-web.service"]);
        let journal = lab.run(&["journalctl", "-u", "ctm-backup-web.service", "--no-pager"]);
        assert!(
            out.status.success(),
            "{}\n{}",
            lab::show_output(&out),
            lab::show_output(&journal)
        );
    };
    run();
    let first = archives_in(&lab, "/srv/backups");
    assert_eq!(first.len(), 1, "{first:?}");
    run();
    run();
    let kept = archives_in(&lab, "/srv/backups");
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(!kept.contains(&first[0]), "the oldest was kept: {kept:?}");
    // What was pruned is what the command keeps by hand: the newest two.
    let listed = ctm_ok(&lab, &["backups", "web", "--in", "/srv/backups"]);
    for name in &kept {
        assert!(listed.contains(name.as_str()), "{name} not in:\n{listed}");
    }

    // Without the block the next apply stops the timer; the archives stay.
    std::fs::write(lab.path("/root/host.kdl"), LAB_SNAPSHOT_HOST).unwrap();
    let applied = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(
        applied.contains("backup timers: stop ctm-backup-web.timer"),
        "{applied}"
    );
    let state = lab.run(&["systemctl", "is-active", "ctm-backup-web.timer"]);
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "inactive");
    assert_eq!(archives_in(&lab, "/srv/backups"), kept);
}

// ---- a volume's own backups ------------------------------------------------------

/// The archive in `Backed up volume NAME to PATH, …`.
fn volume_backed_up(said: &str) -> PathBuf {
    backed_up_as("volume", said)
}

/// `bytes` that zstd cannot shrink, the same for one `seed`.
fn noise(seed: u64, bytes: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

impl FilesOnly {
    fn volume(&self) -> PathBuf {
        self.root().join("var/lib/ctm/volumes/data")
    }

    /// The archives of volume `data` in `dir`, as `ctm backups --volume`
    /// lists them, oldest first.
    fn volume_archives(&self, dir: &Path) -> Vec<PathBuf> {
        let listed = self.ok(&[
            "backups",
            "--volume",
            "data",
            "--in",
            dir.to_str().unwrap(),
            "--json",
        ]);
        serde_json::from_str::<Vec<serde_json::Value>>(&listed)
            .unwrap()
            .iter()
            .map(|b| PathBuf::from(b["path"].as_str().unwrap()))
            .collect()
    }
}

#[test]
fn a_volumes_backup_keeps_the_newest_n_and_its_restore_keeps_what_it_replaced() {
    let f = FilesOnly::new();
    let dir = f.dir.path().join("backups");
    let to = dir.to_str().unwrap();
    std::fs::write(f.volume().join("table"), "v1").unwrap();
    let first = volume_backed_up(&f.ok(&["backup", "--volume", "data", "--to", to]));
    assert!(first.starts_with(&dir), "{first:?}");
    assert!(
        first
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with(".ctm-volume.tar.zst")
    );
    let mut made = vec![first.clone()];
    for _ in 0..2 {
        made.push(volume_backed_up(
            &f.ok(&["backup", "--volume", "data", "--to", to, "--keep", "2"]),
        ));
    }
    // The first pruned after the third was whole; never the container's.
    assert_eq!(f.volume_archives(&dir), made[1..]);
    assert!(f.ok(&["backups", "web", "--in", to]).contains("No backups"));

    std::fs::write(f.volume().join("table"), "v2").unwrap();
    std::fs::write(f.volume().join("new"), "new").unwrap();
    let said = f.ok(&[
        "restore",
        "--volume",
        "data",
        "--from",
        made[1].to_str().unwrap(),
    ]);
    assert!(said.contains("verified"), "{said}");
    assert_eq!(
        std::fs::read_to_string(f.volume().join("table")).unwrap(),
        "v1"
    );
    assert!(!f.volume().join("new").exists());
    // What it replaced is a new archive beside the one restored.
    let now = f.volume_archives(&dir);
    assert_eq!(now.len(), 3, "{now:?}");
    let kept = now.last().unwrap().clone();
    assert!(!made.contains(&kept), "{now:?}");
    f.ok(&[
        "restore",
        "--volume",
        "data",
        "--from",
        kept.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(f.volume().join("table")).unwrap(),
        "v2"
    );
    assert_eq!(
        std::fs::read_to_string(f.volume().join("new")).unwrap(),
        "new"
    );
    // The volume is ctm's still: the host file plans nothing.
    let planned = f.ctm(&["plan", f.file().to_str().unwrap(), "--detailed-exitcode"]);
    assert_eq!(planned.status.code(), Some(0), "{}", text(&planned));
}

#[test]
fn a_volumes_archive_with_a_flipped_byte_is_refused_and_nothing_changes() {
    let f = FilesOnly::new();
    let dir = f.dir.path().join("backups");
    // Data zstd cannot shrink: the middle byte of the archive is data.
    std::fs::write(f.volume().join("blob"), noise(1, 256 << 10)).unwrap();
    let archive =
        volume_backed_up(&f.ok(&["backup", "--volume", "data", "--to", dir.to_str().unwrap()]));
    std::fs::write(f.volume().join("blob"), "changed since").unwrap();
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&archive, &bytes).unwrap();

    let (root_before, dir_before) = (contents(&f.root()), contents(&dir));
    let out = f.ctm(&[
        "restore",
        "--volume",
        "data",
        "--from",
        archive.to_str().unwrap(),
    ]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("is refused"), "{said}");
    assert!(said.contains("nothing was changed"), "{said}");
    assert_eq!(contents(&f.root()), root_before, "{said}");
    assert_eq!(contents(&dir), dir_before, "{said}");
}

/// Undoes `chattr +i` when dropped, even when the test fails.
struct Immutable(PathBuf);

impl Immutable {
    /// `None` (and a visible skip) where the file system has no such flag.
    fn set(path: &Path) -> Option<Immutable> {
        let ok = is_root()
            && has_command("chattr")
            && run(&["chattr", "+i", path.to_str().unwrap()])
                .status
                .success();
        if skip_unless(
            ok,
            "chattr +i (root, e2fsprogs, a file system with the flag) is not available",
        ) {
            return None;
        }
        Some(Immutable(path.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = run(&["chattr", "-i", self.0.to_str().unwrap()]);
    }
}

/// The swap itself fails (the volume made immutable: root cannot rename
/// it either): the volume is as it was, the archives are all there, with
/// the one that kept the volume, and the unpacked tree is gone.
#[test]
fn a_volume_restore_that_fails_at_the_swap_deletes_nothing_the_user_had() {
    let f = FilesOnly::new();
    let dir = f.dir.path().join("backups");
    std::fs::write(f.volume().join("table"), "v1").unwrap();
    let archive =
        volume_backed_up(&f.ok(&["backup", "--volume", "data", "--to", dir.to_str().unwrap()]));
    std::fs::write(f.volume().join("table"), "v2").unwrap();
    let Some(_immutable) = Immutable::set(&f.volume()) else {
        return;
    };
    let out = f.ctm(&[
        "restore",
        "--volume",
        "data",
        "--from",
        archive.to_str().unwrap(),
    ]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert_eq!(
        std::fs::read_to_string(f.volume().join("table")).unwrap(),
        "v2",
        "{said}"
    );
    let left = f.volume_archives(&dir);
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(left[0], archive);
    let volumes = f.root().join("var/lib/ctm/volumes");
    let names: Vec<String> = std::fs::read_dir(&volumes)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["data"], "{said}");
    drop(_immutable);
    // The archive that kept it holds what the volume had.
    f.ok(&[
        "restore",
        "--volume",
        "data",
        "--from",
        archive.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(f.volume().join("table")).unwrap(),
        "v1"
    );
    f.ok(&[
        "restore",
        "--volume",
        "data",
        "--from",
        left[1].to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(f.volume().join("table")).unwrap(),
        "v2"
    );
}

/// A restore that cannot fit is refused before anything is written, and
/// says which volume, how much it needs and how much is free.
#[test]
fn a_volume_restore_that_cannot_fit_is_refused_naming_the_space_it_needs() {
    let Some(fs) = Mounted::tmpfs("24m") else {
        return;
    };
    let f = FilesOnly::with(Some(fs));
    // The archives on another file system than the root.
    let dir = f.dir.path().join("backups");
    std::fs::write(f.volume().join("blob"), noise(2, 6 << 20)).unwrap();
    let archive =
        volume_backed_up(&f.ok(&["backup", "--volume", "data", "--to", dir.to_str().unwrap()]));
    // Leave about 3 MB free on the root's file system.
    let stat = nix::sys::statvfs::statvfs(&f.root()).unwrap();
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    fill(&f.root().join("filler"), free - (3 << 20)).unwrap();

    let before = contents(&f.root());
    let out = f.ctm(&[
        "restore",
        "--volume",
        "data",
        "--from",
        archive.to_str().unwrap(),
    ]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    // As one line: the report is wrapped to the terminal's width.
    let said = said
        .split_whitespace()
        .filter(|w| *w != "│")
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        said.contains("not enough space to restore volume data: it needs 6.3 MB, and"),
        "{said}"
    );
    assert!(said.contains("MB are free at"), "{said}");
    assert!(
        said.contains("restoring volume data needs 6.3 MB at"),
        "{said}"
    );
    assert!(said.contains("nothing was changed"), "{said}");
    assert_eq!(contents(&f.root()), before);
    assert_eq!(f.volume_archives(&dir), [archive]);
}

/// The archives of volume `data` in `dir` of the lab, oldest first.
fn volume_archives_in(lab: &Lab, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(lab.path(dir))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("data-") && n.ends_with(".ctm-volume.tar.zst"))
                .collect()
        })
        .unwrap_or_default();
    // By id, as ctm orders them: `ID` before `ID-2` (which sorts first as
    // text) made in the same second.
    names.sort_by_key(|n| {
        let id = n
            .trim_start_matches("data-")
            .trim_end_matches(".ctm-volume.tar.zst");
        let (base, k) = id.split_once('-').unwrap_or((id, "1"));
        (base.to_string(), k.parse::<u32>().unwrap_or(0))
    });
    names
}

/// A volume's `backup` block in a booted lab: its timer is active, its
/// service started by hand archives the volume (its container frozen for
/// the copy) and keeps the newest `keep`; plan and status show the last
/// archive; a restore from one brings back the archived data and keeps
/// what it replaced as an archive of its own.
#[test]
fn a_volumes_backup_timer_archives_keeps_the_newest_and_its_archive_restores() {
    let started = std::time::Instant::now();
    let host = LAB_SNAPSHOT_HOST.replace(
        "    quota \"64M\"\n",
        "    quota \"64M\"\n    backup {\n        to \"/srv/backups\"\n        \
         every \"Mon..Fri 02:00\"\n        keep 2\n    }\n",
    );
    let Some(BtrfsLab { lab, fs }) = BtrfsLab::boot("volume-backup", &host) else {
        return;
    };
    let booted = started.elapsed();
    let applied = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(
        applied.contains("ctm-volume-backup-data.timer"),
        "{applied}"
    );
    let timer = "ctm-volume-backup-data.timer";
    let service = "ctm-volume-backup-data.service";
    assert_eq!(lab.ok(&["systemctl", "is-active", timer]).trim(), "active");
    assert_eq!(
        lab.ok(&["systemctl", "is-enabled", timer]).trim(),
        "enabled"
    );
    let shown = lab.ok(&["systemctl", "show", "-p", "TimersCalendar", timer]);
    assert!(
        shown.contains("OnCalendar=Mon..Fri *-*-* 02:00:00"),
        "{shown}"
    );

    let wrote = lab.run_in("web", &["sh", "-ec", "echo archived > /srv/data/hello"]);
    assert!(wrote.status.success(), "{}", lab::show_output(&wrote));
    let hello = fs.root().join("data/hello");
    eventually(
        "web wrote to its volume",
        std::time::Duration::from_secs(30),
        || match std::fs::read_to_string(&hello) {
            Ok(s) if s == "archived\n" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    let run = || {
        let at = std::time::Instant::now();
        let out = lab.run(&["systemctl", "start", service]);
        let journal = lab.run(&["journalctl", "-u", service, "--no-pager"]);
        assert!(
            out.status.success(),
            "{}\n{}",
            lab::show_output(&out),
            lab::show_output(&journal)
        );
        let result = lab.ok(&["systemctl", "show", "-p", "Result,ExecMainStatus", service]);
        assert!(
            result.contains("Result=success") && result.contains("ExecMainStatus=0"),
            "{result}\n{}",
            lab::show_output(&journal)
        );
        at.elapsed()
    };
    let first_run = run();
    let first = volume_archives_in(&lab, "/srv/backups");
    assert_eq!(first.len(), 1, "{first:?}");
    let journal = lab.ok(&["journalctl", "-u", service, "--no-pager"]);
    assert!(journal.contains("froze container web"), "{journal}");
    let mut runs = vec![first_run];
    for _ in 0..3 {
        runs.push(run());
    }
    let kept = volume_archives_in(&lab, "/srv/backups");
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(!kept.contains(&first[0]), "the oldest was kept: {kept:?}");
    // The timer's own state: active, waiting for its next Mon..Fri 02:00.
    let state = lab.ok(&[
        "systemctl",
        "show",
        "-p",
        "ActiveState,NextElapseUSecRealtime,Result",
        timer,
    ]);
    assert!(
        state.contains("ActiveState=active") && state.contains("Result=success"),
        "{state}"
    );

    // Plan and status name the newest archive.
    let plan: serde_json::Value =
        serde_json::from_str(&ctm_ok(&lab, &["plan", "/root/host.kdl", "--json"])).unwrap();
    let newest = kept.last().unwrap();
    let last = &plan["volumes"][0]["last"];
    assert!(
        last["path"]
            .as_str()
            .is_some_and(|p| p.ends_with(newest.as_str())),
        "{plan}"
    );
    assert_eq!(plan["volumes"][0]["quota"], 64 << 20);
    assert!(plan["volumes"][0]["used"].as_u64().is_some(), "{plan}");
    assert_eq!(plan["volumes"][0]["last_run"]["result"], "success");
    let status = ctm_ok(&lab, &["status"]);
    let row = status
        .lines()
        .find(|l| l.starts_with("volume data "))
        .unwrap_or_else(|| panic!("no backup row for the volume:\n{status}"));
    assert!(
        row.contains(timer) && row.contains(newest.as_str()),
        "{status}"
    );

    // Changed since; restored from the newest archive with web stopped.
    let wrote = lab.run_in("web", &["sh", "-ec", "echo changed > /srv/data/hello"]);
    assert!(wrote.status.success(), "{}", lab::show_output(&wrote));
    let archive = format!("/srv/backups/{newest}");
    let refused = ctm(&lab, &["restore", "--volume", "data", "--from", &archive]);
    assert!(
        lab::show_output(&refused).contains("volume data is mounted by container web, which runs"),
        "{}",
        lab::show_output(&refused)
    );
    ctm_ok(&lab, &["stop", "web"]);
    let restore_at = std::time::Instant::now();
    let restored = ctm_ok(&lab, &["restore", "--volume", "data", "--from", &archive]);
    let restore_took = restore_at.elapsed();
    assert_eq!(
        std::fs::read_to_string(&hello).unwrap(),
        "archived\n",
        "{restored}"
    );
    let after = volume_archives_in(&lab, "/srv/backups");
    assert_eq!(after.len(), 3, "{after:?}");
    let replaced = after
        .iter()
        .find(|n| !kept.contains(n))
        .unwrap_or_else(|| panic!("no archive kept the replaced state: {after:?}"));
    assert!(restored.contains(replaced.as_str()), "{restored}");
    ctm_ok(&lab, &["start", "web"]);
    eventually(
        "web reads the restored file",
        std::time::Duration::from_secs(60),
        || {
            let out = lab.run_in("web", &["cat", "/srv/data/hello"]);
            if String::from_utf8_lossy(&out.stdout) == "archived\n" {
                Ok(())
            } else {
                Err(lab::show_output(&out))
            }
        },
    );
    // The replaced state is in the archive that kept it.
    ctm_ok(&lab, &["stop", "web"]);
    ctm_ok(
        &lab,
        &[
            "restore",
            "--volume",
            "data",
            "--from",
            &format!("/srv/backups/{replaced}"),
        ],
    );
    assert_eq!(std::fs::read_to_string(&hello).unwrap(), "changed\n");
    // The volume is ctm's still, with its quota.
    ctm_ok(&lab, &["start", "web"]);
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap();
    eprintln!(
        "volume backup lab: booted in {booted:?}, service runs {runs:?}, restore {restore_took:?}, \
         all {:?}",
        started.elapsed()
    );
}
