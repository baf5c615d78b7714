//! Plan and apply against a scratch root, through the real binary: the
//! host is always wholly on one generation, whatever fails and wherever
//! the process dies.

mod support;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// A scratch root and a directory with a host file, per test.
struct Lab {
    _dir: tempfile::TempDir,
    root: PathBuf,
    work: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        Lab {
            _dir: dir,
            root,
            work,
        }
    }

    /// Writes `host.kdl` (keeping any lock file beside it).
    fn host(&self, text: &str) -> &Lab {
        std::fs::write(self.work.join("host.kdl"), text).unwrap();
        self
    }

    fn ctm(&self, args: &[&str]) -> Output {
        self.ctm_env(args, &[])
    }

    fn ctm_env(&self, args: &[&str], env: &[(&str, String)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ctm"));
        cmd.args(args)
            .arg("--root")
            .arg(&self.root)
            .current_dir(&self.work);
        cmd.env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Starts `ctm apply host.kdl --yes` with extra arguments in the
    /// background.
    fn spawn_apply(&self, extra: &[&str], stderr: Stdio) -> Child {
        Command::new(env!("CARGO_BIN_EXE_ctm"))
            .args(["apply", "host.kdl", "--yes"])
            .args(extra)
            .arg("--root")
            .arg(&self.root)
            .current_dir(&self.work)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap()
    }

    /// Waits until the host is on generation `n`.
    fn wait_for_current(&self, n: u64) {
        let waited = Instant::now();
        while self.current() != Some(n) {
            assert!(
                waited.elapsed() < Duration::from_secs(20),
                "never reached generation {n}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn apply(&self) -> Output {
        self.ctm(&["apply", "host.kdl", "--yes"])
    }

    /// Every file under the root outside ctm's state, with its content,
    /// mode or symlink target.
    fn tree(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        walk(&self.root, &self.root, &mut out);
        out
    }

    fn current(&self) -> Option<u64> {
        std::fs::read_link(self.root.join("var/lib/ctm/current"))
            .ok()
            .and_then(|t| t.file_name()?.to_str()?.parse().ok())
    }

    /// A lab with a copy of this one's root and work directory.
    fn copy(&self) -> Lab {
        let lab = Lab::new();
        copy_tree(&self.root, &lab.root);
        copy_tree(&self.work, &lab.work);
        lab
    }

    /// Panics unless ctm's state is clean after a finished or undone
    /// switch: no journal, staging or temporary file left, and the store
    /// holding exactly the contents its generations use.
    fn assert_clean_state(&self, when: &str) {
        let state = self.root.join("var/lib/ctm");
        for left in [
            "journal.json",
            "journal.json.ctm-new",
            "current.ctm-new",
            "journal",
        ] {
            assert!(!state.join(left).exists(), "{left} left {when}");
        }
        let mut used = std::collections::BTreeSet::new();
        for n in self.generations() {
            let manifest: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(state.join(format!("generations/{n}/manifest.json")))
                    .unwrap(),
            )
            .unwrap();
            for entry in manifest["files"].as_object().unwrap().values() {
                if let Some(sha256) = entry["sha256"].as_str() {
                    used.insert(sha256.to_string());
                }
            }
        }
        let names = |dir: &Path| -> std::collections::BTreeSet<String> {
            std::fs::read_dir(dir)
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().into_string().unwrap())
                        .collect()
                })
                .unwrap_or_default()
        };
        let staging: Vec<String> = names(&state.join("generations"))
            .into_iter()
            .filter(|n| n.parse::<u64>().is_err())
            .collect();
        assert!(staging.is_empty(), "{staging:?} left {when}");
        assert_eq!(
            names(&state.join("objects")),
            used,
            "the store must hold exactly what the generations use {when}"
        );
    }

    /// The text generation `n` holds for `path`, from the state's store.
    fn stored(&self, n: u64, path: &str) -> String {
        let state = self.root.join("var/lib/ctm");
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(state.join(format!("generations/{n}/manifest.json"))).unwrap(),
        )
        .unwrap();
        let sha256 = manifest["files"][path]["sha256"].as_str().unwrap();
        std::fs::read_to_string(state.join("objects").join(sha256)).unwrap()
    }

    fn generations(&self) -> Vec<u64> {
        let mut gens: Vec<u64> = std::fs::read_dir(self.root.join("var/lib/ctm/generations"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        gens.sort();
        gens
    }
}

/// Copies a tree: files with their modes, symlinks as symlinks.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if kind.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        if rel == "var/lib/ctm" {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            out.insert(
                rel,
                format!("-> {}", std::fs::read_link(&path).unwrap().display()),
            );
        } else if meta.is_dir() {
            walk(root, &path, out);
        } else {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o7777;
            out.insert(
                rel,
                format!("{mode:o}\n{}", std::fs::read_to_string(&path).unwrap()),
            );
        }
    }
}

/// Standard error with miette's line wrapping undone, so that messages
/// can be matched whole.
fn err(o: &Output) -> String {
    let text = String::from_utf8_lossy(&o.stderr);
    let mut flat = String::new();
    for line in text.lines() {
        let line = line.trim_start_matches([' ', '│', '×']).trim_end();
        if !flat.is_empty() && !flat.ends_with('\n') {
            flat.push(if line.is_empty() { '\n' } else { ' ' });
        }
        flat.push_str(line);
        if line.is_empty() {
            flat.push('\n');
        }
    }
    flat
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn homelab() -> String {
    std::fs::read_to_string(repo().join("examples/homelab.kdl")).unwrap()
}

/// The homelab host changed in every way a switch can: a file changed
/// (limits), files removed (container builder), files added (container
/// db), a network file changed and the firewall changed.
fn homelab_v2() -> String {
    homelab()
        .replace("memory=\"1G\"", "memory=\"2G\"")
        .replace("container \"builder\"", "container \"db\"")
        .replace("ipv6 \"fd42:42::1/64\"", "ipv6 \"fd42:43::1/64\"")
        .replace("host=8080", "host=8081")
        .replace("ipv6=\"fd42:42::10\"", "ipv6=\"fd42:43::10\"")
}

#[test]
fn apply_then_plan_shows_no_changes() {
    let lab = Lab::new();
    lab.host(&homelab());
    let o = lab.ctm(&["plan", "host.kdl", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        out(&o).contains("Plan: 34 to add, 0 to change, 0 to destroy; 12 actions."),
        "{}",
        out(&o)
    );

    let o = lab.apply();
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(lab.current(), Some(1));
    assert!(lab.root.join("etc/systemd/nspawn/web.nspawn").exists());

    let o = lab.ctm(&["plan", "host.kdl", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("No changes."), "{}", out(&o));

    // Applying again changes nothing and makes no generation.
    let o = lab.apply();
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(lab.generations(), vec![1]);
}

#[test]
fn a_change_to_one_container_restarts_only_that_container() {
    let lab = Lab::new();
    lab.host(&homelab());
    assert!(lab.apply().status.success());
    lab.host(&homelab().replace(
        "network \"lan\" ipv4=\"10.42.0.10\"",
        "network \"lan\" ipv4=\"10.42.0.11\"",
    ));
    let o = lab.ctm(&["plan", "host.kdl", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let actions: Vec<String> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["action"].as_str().unwrap(),
                a["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    // web's address moved: its host0 file, the DNAT rules and the
    // address its loopback forward's proxy relays to changed.
    assert_eq!(
        actions,
        [
            "daemon-reload ",
            "replace-firewall ",
            "reload-loopback-forwards ",
            "restart-container web"
        ],
        "{plan:#}"
    );
}

#[test]
fn a_network_only_change_restarts_no_container() {
    let lab = Lab::new();
    lab.host(&homelab());
    assert!(lab.apply().status.success());
    lab.host(&homelab().replace("address \"172.16.0.0/31\"", "address \"172.16.0.2/31\""));
    let o = lab.ctm(&["plan", "host.kdl", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kinds: Vec<&str> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["reload-networkd"], "{plan:#}");
    // The tunnel's .network, and the expectations health checks read.
    let files: Vec<&str> = plan["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "etc/ctm/health.json",
            "etc/systemd/network/50-ctm-site-b.network"
        ]
    );
}

#[test]
fn drift_is_shown_and_undone() {
    let lab = Lab::new();
    lab.host(&homelab());
    assert!(lab.apply().status.success());
    let before = lab.tree();
    let path = lab.root.join("etc/systemd/nspawn/web.nspawn");
    std::fs::write(&path, "[Exec]\nBoot=no\n").unwrap();
    let o = lab.ctm(&["plan", "host.kdl", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        out(&o).contains("~ etc/systemd/nspawn/web.nspawn"),
        "{}",
        out(&o)
    );
    assert!(out(&o).contains("drift"), "{}", out(&o));
    assert!(out(&o).contains("restart container web"), "{}", out(&o));
    assert!(lab.apply().status.success());
    assert_eq!(lab.tree(), before);
}

#[test]
fn an_edit_in_place_is_seen_after_the_stat_cache_trusts_the_file() {
    let lab = Lab::new();
    lab.host(&homelab());
    assert!(lab.apply().status.success());
    // Files settle (2 s), then a plan records their hashes by stat.
    std::thread::sleep(Duration::from_millis(2100));
    let o = lab.ctm(&["plan", "host.kdl", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let cache = std::fs::read(lab.root.join("var/lib/ctm/stat-cache")).unwrap();
    let cache = ctm::live::StatCache::decode(&cache).expect("a stat cache");
    assert!(
        cache.entries.contains_key("etc/systemd/nspawn/web.nspawn"),
        "{:?}",
        cache.entries.keys()
    );

    // Same length, same place, different content: only ctime tells.
    use std::io::{Seek as _, Write as _};
    let path = lab.root.join("etc/systemd/nspawn/web.nspawn");
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.seek(std::io::SeekFrom::End(-4)).unwrap();
    file.write_all(b"XXXX").unwrap();
    drop(file);
    let o = lab.ctm(&["plan", "host.kdl", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(
        out(&o).contains("~ etc/systemd/nspawn/web.nspawn"),
        "{}",
        out(&o)
    );
    assert!(
        out(&o).contains("-Bridge=br-XXXX"),
        "the diff shows the edit: {}",
        out(&o)
    );
}

#[test]
fn a_foreign_file_is_never_touched_without_adopt() {
    let lab = Lab::new();
    lab.host(&homelab());
    let theirs = lab.root.join("etc/systemd/network/50-ctm-br-lan.network");
    std::fs::create_dir_all(theirs.parent().unwrap()).unwrap();
    std::fs::write(&theirs, "[Match]\nName=br-lan\n# mine\n").unwrap();

    let o = lab.ctm(&["plan", "host.kdl"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("! etc/systemd/network/50-ctm-br-lan.network"),
        "{}",
        out(&o)
    );
    assert!(out(&o).contains("pass --adopt"), "{}", out(&o));
    let o = lab.apply();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(&theirs).unwrap(),
        "[Match]\nName=br-lan\n# mine\n"
    );
    assert_eq!(lab.current(), None);
    assert_eq!(
        lab.tree().len(),
        1,
        "nothing else may be written: {:?}",
        lab.tree().keys()
    );

    // With --adopt the user asks ctm to take the file over: it is replaced
    // (and its original kept only while the switch is in progress).
    let o = lab.ctm(&["apply", "host.kdl", "--yes", "--adopt"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        std::fs::read_to_string(&theirs)
            .unwrap()
            .contains("Generated by ctm")
    );
}

#[test]
fn a_removed_file_is_deleted_only_if_unchanged() {
    let lab = Lab::new();
    lab.host(&homelab());
    assert!(lab.apply().status.success());
    let edited = lab.root.join("etc/systemd/nspawn/builder.nspawn");
    std::fs::write(&edited, "[Exec]\n# edited by hand\n").unwrap();
    lab.host(&homelab_v2());
    let o = lab.apply();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("! etc/systemd/nspawn/builder.nspawn"),
        "{}",
        out(&o)
    );
    assert!(out(&o).contains("ctm will not delete it"), "{}", out(&o));
    assert_eq!(
        std::fs::read_to_string(&edited).unwrap(),
        "[Exec]\n# edited by hand\n"
    );
    assert_eq!(lab.current(), Some(1));

    // Restored to what ctm wrote, it is removed like any other.
    std::fs::remove_file(&edited).unwrap();
    let o = lab.apply();
    assert!(o.status.success(), "{}", err(&o));
    assert!(!lab.root.join("etc/systemd/nspawn/builder.nspawn").exists());
    assert!(lab.root.join("etc/systemd/nspawn/db.nspawn").exists());
}

#[test]
fn a_failing_action_rolls_back_to_the_previous_generation() {
    let lab = Lab::new();
    lab.host(&homelab());
    assert!(lab.apply().status.success());
    let before = lab.tree();
    lab.host(&homelab_v2());
    let o = lab.ctm_env(
        &["apply", "host.kdl", "--yes"],
        &[("CTM_FAULT_ACTION", "restart container web".into())],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = err(&o);
    assert!(
        e.contains("restart container web failed: injected failure"),
        "{e}"
    );
    assert!(
        e.contains("rolled back: the host is on generation 1 again"),
        "{e}"
    );
    assert!(
        e.contains("rollback: would restart container web (files only: not done)"),
        "the undo must restart what the switch restarted: {e}"
    );
    assert_eq!(lab.tree(), before);
    assert_eq!(lab.current(), Some(1));
    assert_eq!(
        lab.generations(),
        vec![1],
        "the failed generation must not remain"
    );
}

#[test]
fn a_failing_health_check_rolls_back() {
    let lab = Lab::new();
    lab.host(&homelab());
    assert!(lab.apply().status.success());
    let before = lab.tree();
    lab.host(&homelab_v2());
    let o = lab.ctm_env(
        &["apply", "host.kdl", "--yes"],
        &[("CTM_FAULT_HEALTH", "web is not running".into())],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("health check failed: web is not running"),
        "{}",
        err(&o)
    );
    assert_eq!(lab.tree(), before);
    assert_eq!(lab.current(), Some(1));
}

/// Runs `args` with the process aborted at fault point `k`; returns
/// whether the fault fired (the run was cut short).
fn run_with_fault(lab: &Lab, args: &[&str], k: u64) -> bool {
    let o = lab.ctm_env(args, &[("CTM_FAULT_AT", k.to_string())]);
    match o.status.signal() {
        Some(6) => true,
        _ => {
            assert!(
                o.status.success(),
                "run without fault failed at k={k}: {}",
                err(&o)
            );
            false
        }
    }
}

/// The points between which a switch makes its writes durable: a crash
/// test must pass each of them.
const SYNC_BOUNDARIES: [&str; 6] = [
    "journal written",
    "switch prepared, before the sync",
    "switch synced",
    "file switched",
    "directory switched",
    "files synced",
];

/// The error message of a full disk, by errno name.
fn full_disk_message(errno: &str) -> &'static str {
    match errno {
        "EDQUOT" => "Disk quota exceeded",
        _ => "No space left on device",
    }
}

/// For every point K at which the process can die during `args`, the
/// next ctm command, run on a disk that is full from its start, leaves
/// the root wholly at `old` or wholly at `new`, and ctm's state agrees
/// with the files and holds nothing more.
fn crash_everywhere(setup: impl Fn(&Lab), args: &[&str], min_points: u64) {
    let mut old_seen = 0;
    let mut new_seen = 0;
    let mut k = 1;
    let (old, new, old_gen, new_gen) = {
        let lab = Lab::new();
        setup(&lab);
        let old = (lab.tree(), lab.current());
        let o = lab.ctm(args);
        assert!(o.status.success(), "{}", err(&o));
        (old.0, lab.tree(), old.1, lab.current())
    };
    assert_ne!(old, new, "the switch under test must change files");
    // Each run starts from a copy of one lab set up once.
    let template = Lab::new();
    setup(&template);
    let trace = template
        .copy()
        .ctm_env(args, &[("CTM_FAULT_TRACE", "1".into())]);
    let trace = String::from_utf8_lossy(&trace.stderr);
    for boundary in SYNC_BOUNDARIES {
        assert!(
            trace.contains(&format!(": {boundary}")),
            "the crash test must pass `{boundary}`: {trace}"
        );
    }
    loop {
        let lab = template.copy();
        if !run_with_fault(&lab, args, k) {
            break;
        }
        // Recovery needs no space: the disk is full from its first write.
        let errno = if k % 2 == 0 { "EDQUOT" } else { "ENOSPC" };
        let o = lab.ctm_env(
            &["recover"],
            &[
                ("CTM_FAULT_NOSPACE_FROM", "1".into()),
                ("CTM_FAULT_NOSPACE_ERRNO", errno.into()),
            ],
        );
        assert!(
            o.status.success(),
            "recover on a full disk ({errno}) failed after a crash at point {k}: {}",
            err(&o)
        );
        lab.assert_clean_state(&format!("after a crash at point {k}"));
        let tree = lab.tree();
        if tree == old {
            assert_eq!(
                lab.current(),
                old_gen,
                "files are old but current is not, crash at point {k}"
            );
            old_seen += 1;
        } else if tree == new {
            assert_eq!(
                lab.current(),
                new_gen,
                "files are new but current is not, crash at point {k}"
            );
            new_seen += 1;
        } else {
            let mixed: Vec<_> = tree
                .iter()
                .filter(|(p, c)| old.get(*p) != Some(c))
                .map(|(p, _)| p.clone())
                .collect();
            panic!(
                "a crash at point {k} left a mix of generations; differs from the old tree at {mixed:?}"
            );
        }
        k += 1;
    }
    assert!(
        k > min_points,
        "only {} fault points were passed; expected more than {min_points}",
        k - 1
    );
    assert!(
        old_seen > 0 && new_seen > 0,
        "old {old_seen}, new {new_seen}"
    );
    eprintln!(
        "crashed at each of {} points: {old_seen} recovered to old, {new_seen} to new",
        k - 1
    );
}

#[test]
fn a_crash_at_any_point_of_an_apply_leaves_one_generation() {
    crash_everywhere(
        |lab| {
            lab.host(&homelab());
            assert!(lab.apply().status.success());
            lab.host(&homelab_v2());
        },
        &["apply", "host.kdl", "--yes"],
        20,
    );
}

#[test]
fn a_crash_at_any_point_of_a_first_apply_leaves_nothing_or_everything() {
    crash_everywhere(
        |lab| {
            lab.host(&homelab());
        },
        &["apply", "host.kdl", "--yes"],
        40,
    );
}

#[test]
fn a_crash_at_any_point_of_a_rollback_leaves_one_generation() {
    crash_everywhere(
        |lab| {
            lab.host(&homelab());
            assert!(lab.apply().status.success());
            lab.host(&homelab_v2());
            assert!(lab.apply().status.success());
        },
        &["rollback", "1", "--yes"],
        20,
    );
}

/// For every write that takes space during `args`, and with the disk
/// full from that write on (`ENOSPC`, then `EDQUOT`): the command fails,
/// undoes itself on the full disk, and leaves the root wholly at `old`
/// (or, when only a write after the commit failed, wholly at `new`), with
/// ctm's state clean. Returns how many writes there were.
fn full_disk_everywhere(setup: impl Fn(&Lab), args: &[&str], min_writes: u64) {
    let template = Lab::new();
    setup(&template);
    let (old, old_gen) = (template.tree(), template.current());
    let (new, new_gen) = {
        let lab = template.copy();
        let o = lab.ctm(args);
        assert!(o.status.success(), "{}", err(&o));
        (lab.tree(), lab.current())
    };
    for errno in ["ENOSPC", "EDQUOT"] {
        let mut k = 1;
        let mut undone = 0;
        loop {
            let lab = template.copy();
            let o = lab.ctm_env(
                args,
                &[
                    ("CTM_FAULT_NOSPACE_FROM", k.to_string()),
                    ("CTM_FAULT_NOSPACE_ERRNO", errno.into()),
                ],
            );
            if o.status.success() {
                break;
            }
            assert_eq!(o.status.code(), Some(1), "{}", err(&o));
            let e = err(&o);
            assert!(
                e.contains(full_disk_message(errno)),
                "write {k} ({errno}): {e}"
            );
            let tree = lab.tree();
            if tree == old {
                assert_eq!(lab.current(), old_gen, "write {k} ({errno}): {e}");
                undone += 1;
            } else {
                assert_eq!(
                    tree, new,
                    "a full disk at write {k} ({errno}) mixed generations: {e}"
                );
                assert_eq!(lab.current(), new_gen, "write {k} ({errno}): {e}");
            }
            lab.assert_clean_state(&format!("after a full disk at write {k} ({errno})"));
            k += 1;
        }
        assert!(
            k > min_writes,
            "only {} writes took space; expected more than {min_writes}",
            k - 1
        );
        assert!(undone > 0, "{errno}: no run was undone");
        eprintln!(
            "{errno} from each of {} writes: {undone} undone, the rest failed after the switch",
            k - 1
        );
    }
}

#[test]
fn a_full_disk_at_any_write_of_an_apply_leaves_one_generation() {
    full_disk_everywhere(
        |lab| {
            lab.host(&homelab());
            assert!(lab.apply().status.success());
            lab.host(&homelab_v2());
        },
        &["apply", "host.kdl", "--yes"],
        40,
    );
}

#[test]
fn a_full_disk_at_any_write_of_a_first_apply_leaves_nothing() {
    full_disk_everywhere(
        |lab| {
            lab.host(&homelab());
        },
        &["apply", "host.kdl", "--yes"],
        60,
    );
}

#[test]
fn a_full_disk_at_any_write_of_a_rollback_leaves_one_generation() {
    full_disk_everywhere(
        |lab| {
            lab.host(&homelab());
            assert!(lab.apply().status.success());
            lab.host(&homelab_v2());
            assert!(lab.apply().status.success());
        },
        &["rollback", "1", "--yes"],
        20,
    );
}

#[test]
fn a_crash_during_the_rollback_of_a_failed_apply_is_finished_later() {
    let lab = Lab::new();
    lab.host(&homelab());
    assert!(lab.apply().status.success());
    let before = lab.tree();
    lab.host(&homelab_v2());
    // Fail an action, then die while undoing: the points after the first
    // "file restored" belong to the rollback.
    let trace = lab.ctm_env(
        &["apply", "host.kdl", "--yes"],
        &[
            ("CTM_FAULT_ACTION", "restart container web".into()),
            ("CTM_FAULT_TRACE", "1".into()),
        ],
    );
    let restore_point = String::from_utf8_lossy(&trace.stderr)
        .lines()
        .find(|l| l.contains("file restored"))
        .and_then(|l| {
            l.strip_prefix("fault point ")?
                .split(':')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .expect("the rollback passes fault points");
    let lab = Lab::new();
    lab.host(&homelab());
    assert!(lab.apply().status.success());
    lab.host(&homelab_v2());
    let o = lab.ctm_env(
        &["apply", "host.kdl", "--yes"],
        &[
            ("CTM_FAULT_ACTION", "restart container web".into()),
            ("CTM_FAULT_AT", (restore_point + 1).to_string()),
        ],
    );
    assert_eq!(o.status.signal(), Some(6), "{}", err(&o));
    assert!(lab.root.join("var/lib/ctm/journal.json").exists());
    let o = lab.ctm(&["generations"]);
    assert!(o.status.success());
    assert!(
        err(&o).contains("rolled back an interrupted switch"),
        "{}",
        err(&o)
    );
    assert_eq!(lab.tree(), before);
    assert_eq!(lab.current(), Some(1));
}

#[test]
fn two_applies_at_once_take_turns() {
    let lab = Lab::new();
    lab.host(&homelab());
    std::fs::write(lab.work.join("v2.kdl"), homelab_v2()).unwrap();
    let spawn = |file: &str| {
        Command::new(env!("CARGO_BIN_EXE_ctm"))
            .args(["apply", file, "--yes", "--root"])
            .arg(&lab.root)
            .current_dir(&lab.work)
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn("host.kdl").unwrap());
        let b = s.spawn(|| spawn("v2.kdl").unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success(), "{}", err(&a));
    assert!(b.status.success(), "{}", err(&b));
    assert_eq!(lab.generations(), vec![1, 2]);
    // Whichever came second is what the host is on, wholly.
    let last =
        std::fs::read_to_string(lab.root.join("var/lib/ctm/generations/2/meta.json")).unwrap();
    let file = if last.contains("\"v2.kdl\"") {
        "v2.kdl"
    } else {
        "host.kdl"
    };
    let o = lab.ctm(&["plan", file, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
}

#[test]
fn a_second_ctm_waits_for_the_lock_or_gives_up() {
    use nix::fcntl::{Flock, FlockArg};
    let lab = Lab::new();
    lab.host(&homelab());
    let state = lab.root.join("var/lib/ctm");
    std::fs::create_dir_all(&state).unwrap();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state.join("lock"))
        .unwrap();
    let held = Flock::lock(file, FlockArg::LockExclusive).unwrap();

    let started = Instant::now();
    let o = lab.ctm(&["apply", "host.kdl", "--yes", "--lock-timeout", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        err(&o).contains("waiting for another ctm to finish"),
        "{}",
        err(&o)
    );
    assert!(
        err(&o).contains("another ctm is changing this host"),
        "{}",
        err(&o)
    );
    assert!(lab.tree().is_empty());

    // Without a timeout it waits, and goes ahead once the lock is free.
    let mut child = lab.spawn_apply(&[], Stdio::null());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "it must wait while the lock is held"
    );
    drop(held);
    assert!(child.wait().unwrap().success());
    assert_eq!(lab.current(), Some(1));
}

#[test]
fn a_saved_plan_applies_once_and_only_against_the_state_it_was_made_for() {
    let lab = Lab::new();
    lab.host(&homelab());
    let o = lab.ctm(&["plan", "host.kdl", "-o", "plan.json"]);
    assert!(o.status.success(), "{}", err(&o));
    // Terraform's hole (hashicorp/terraform#24078): a plan made against an
    // empty state must not apply twice.
    let o = lab.ctm(&["apply", "plan.json"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(lab.current(), Some(1));
    let o = lab.ctm(&["apply", "plan.json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("stale plan"), "{}", err(&o));
    assert_eq!(lab.generations(), vec![1]);

    // A plan is also stale when a file it covers changed on disk.
    lab.host(&homelab_v2());
    assert!(
        lab.ctm(&["plan", "host.kdl", "-o", "plan2.json"])
            .status
            .success()
    );
    std::fs::write(lab.root.join("etc/systemd/nspawn/web.nspawn"), "# edited\n").unwrap();
    let o = lab.ctm(&["apply", "plan2.json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("stale plan"), "{}", err(&o));
    assert_eq!(
        std::fs::read_to_string(lab.root.join("etc/systemd/nspawn/web.nspawn")).unwrap(),
        "# edited\n"
    );

    // And it applies what was planned, not what the host file says now.
    let lab = Lab::new();
    lab.host(&homelab());
    assert!(
        lab.ctm(&["plan", "host.kdl", "-o", "plan.json"])
            .status
            .success()
    );
    lab.host(&homelab_v2());
    assert!(lab.ctm(&["apply", "plan.json"]).status.success());
    std::fs::write(lab.work.join("v1.kdl"), homelab()).unwrap();
    std::fs::copy(lab.work.join("host.kdl.lock"), lab.work.join("v1.kdl.lock")).unwrap();
    let o = lab.ctm(&["plan", "v1.kdl", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
}

#[test]
fn an_unconfirmed_apply_rolls_back_by_itself() {
    let lab = Lab::new();
    lab.host(&homelab());
    assert!(lab.apply().status.success());
    let before = lab.tree();
    lab.host(&homelab_v2());
    let o = lab.ctm(&["apply", "host.kdl", "--yes", "--confirm-timeout", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("Confirm within 1 s"), "{}", err(&o));
    assert!(err(&o).contains("rolled back"), "{}", err(&o));
    assert_eq!(lab.tree(), before);
    assert_eq!(lab.current(), Some(1));
}

#[test]
fn a_confirmed_apply_stays() {
    let lab = Lab::new();
    lab.host(&homelab());
    let child = lab.spawn_apply(&["--confirm-timeout", "30"], Stdio::piped());
    lab.wait_for_current(1);
    let o = lab.ctm(&["confirm"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        err(&o).contains("Confirmed: the host stays on generation 1"),
        "{}",
        err(&o)
    );
    let done = child.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", err(&done));
    assert!(err(&done).contains("Confirmed"), "{}", err(&done));
    assert_eq!(lab.current(), Some(1));
}

#[test]
fn an_unconfirmed_apply_rolls_back_even_when_its_process_was_killed() {
    let lab = Lab::new();
    lab.host(&homelab());
    assert!(lab.apply().status.success());
    let before = lab.tree();
    lab.host(&homelab_v2());
    let mut child = lab.spawn_apply(&["--confirm-timeout", "2"], Stdio::null());
    lab.wait_for_current(2);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        lab.current(),
        Some(2),
        "killed before the deadline: still on the new generation"
    );
    std::thread::sleep(Duration::from_millis(2200));
    // Any ctm command notices the deadline has passed.
    let o = lab.ctm(&["generations"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("was not confirmed in time"), "{}", err(&o));
    assert_eq!(lab.tree(), before);
    assert_eq!(lab.current(), Some(1));
}

#[test]
fn generations_diff_rollback_and_gc() {
    let lab = Lab::new();
    lab.host(&homelab());
    assert!(lab.apply().status.success());
    lab.host(&homelab_v2());
    assert!(lab.apply().status.success());
    lab.host(&homelab());
    assert!(lab.apply().status.success());
    assert_eq!(lab.generations(), vec![1, 2, 3]);

    let o = lab.ctm(&["generations", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert_eq!(list[2]["current"], true);
    assert_eq!(
        list[0]["generation"]["summary"],
        "3 containers, 1 network, 2 tunnels"
    );

    let o = lab.ctm(&["diff", "1", "2"]);
    assert!(o.status.success());
    assert!(out(&o).contains("+MemoryMax=2G"), "{}", out(&o));

    let o = lab.ctm(&["rollback", "--yes"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(lab.current(), Some(2));
    let o = lab.ctm(&["plan", "host.kdl", "--detailed-exitcode"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "after the rollback the host file differs again"
    );

    let o = lab.ctm(&["gc", "--keep", "1"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        lab.generations(),
        vec![2, 3],
        "the current generation (2) is always kept"
    );
    // The contents generation 1 shared with the others stay; its own go.
    lab.assert_clean_state("after gc");
    let o = lab.ctm(&["rollback", "3", "--yes"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = lab.ctm(&["plan", "host.kdl", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
}

/// Every file under the root (ctm's state too) with its inode.
fn inodes(dir: &Path, out: &mut BTreeMap<PathBuf, u64>) {
    use std::os::unix::fs::MetadataExt as _;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            inodes(&path, out);
        } else {
            out.insert(path, meta.ino());
        }
    }
}

#[test]
fn an_apply_writes_only_the_files_that_change_and_shares_the_rest() {
    let lab = Lab::new();
    lab.host(&homelab());
    assert!(lab.apply().status.success());
    let mut before = BTreeMap::new();
    inodes(&lab.root, &mut before);
    let web = homelab().replace("memory=\"1G\"", "memory=\"3G\"");
    lab.host(&web);
    let o = lab.ctm(&["plan", "host.kdl", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let changed: Vec<&str> = plan["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(!changed.is_empty() && changed.len() < 5, "{changed:?}");
    // Two containers had 1G: their files are now alike, one content.
    let contents: std::collections::BTreeSet<&str> = plan["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["after"]["sha256"].as_str().unwrap())
        .collect();
    assert!(lab.apply().status.success());
    let mut after = BTreeMap::new();
    inodes(&lab.root, &mut after);
    let written: Vec<String> = after
        .iter()
        .filter(|(path, ino)| before.get(*path) != Some(ino))
        .map(|(path, _)| path.strip_prefix(&lab.root).unwrap().display().to_string())
        .collect();
    // In the live tree, the changed files; in the state, generation 2's
    // own files, the changed files' contents, the record of how the apply
    // ended (`last-apply.json`, for /metrics) and the stat cache.
    let live: Vec<&str> = written
        .iter()
        .filter(|p| !p.starts_with("var/lib/ctm/"))
        .map(String::as_str)
        .collect();
    assert_eq!(live, changed);
    let objects = written
        .iter()
        .filter(|p| p.starts_with("var/lib/ctm/objects/"))
        .count();
    assert_eq!(objects, contents.len(), "{written:?}");
    // (The stat cache is only rewritten once files have settled.)
    let rest: Vec<&str> = written
        .iter()
        .filter(|p| p.starts_with("var/lib/ctm/") && !p.starts_with("var/lib/ctm/objects/"))
        .filter(|p| *p != "var/lib/ctm/stat-cache")
        .map(String::as_str)
        .collect();
    assert_eq!(
        rest,
        [
            "var/lib/ctm/current",
            "var/lib/ctm/generations/2/manifest.json",
            "var/lib/ctm/generations/2/meta.json",
            "var/lib/ctm/generations/2/source/host.kdl",
            "var/lib/ctm/generations/2/source/host.kdl.lock",
            "var/lib/ctm/last-apply.json",
        ]
    );
    lab.assert_clean_state("after the apply");
}

/// Turns generation `n` into what ctm wrote before the object store: its
/// files in its own `tree/`, no shared store.
fn make_legacy(lab: &Lab, n: u64) {
    let state = lab.root.join("var/lib/ctm");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(state.join(format!("generations/{n}/manifest.json"))).unwrap(),
    )
    .unwrap();
    let tree = state.join(format!("generations/{n}/tree"));
    for (path, entry) in manifest["files"].as_object().unwrap() {
        let stored = tree.join(path);
        std::fs::create_dir_all(stored.parent().unwrap()).unwrap();
        match entry["kind"].as_str().unwrap() {
            "file" => {
                let sha256 = entry["sha256"].as_str().unwrap();
                std::fs::copy(state.join("objects").join(sha256), &stored).unwrap();
            }
            _ => std::os::unix::fs::symlink(entry["target"].as_str().unwrap(), &stored).unwrap(),
        }
    }
}

#[test]
fn generations_written_before_the_object_store_are_read_and_switched_from() {
    let lab = Lab::new();
    lab.host(&homelab());
    assert!(lab.apply().status.success());
    let on_1 = lab.tree();
    make_legacy(&lab, 1);
    std::fs::remove_dir_all(lab.root.join("var/lib/ctm/objects")).unwrap();
    lab.host(&homelab_v2());
    let o = lab.apply();
    assert!(o.status.success(), "{}", err(&o));
    let o = lab.ctm(&["diff", "1", "2"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("+MemoryMax=2G"), "{}", out(&o));
    let o = lab.ctm(&["rollback", "1", "--yes"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(lab.tree(), on_1);
    let o = lab.ctm(&["gc", "--keep", "0"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(lab.generations(), vec![1]);
    assert!(
        !lab.root
            .join("var/lib/ctm/objects")
            .read_dir()
            .unwrap()
            .any(|_| true)
    );
}

#[test]
fn a_switch_interrupted_before_the_object_store_is_rolled_back_from_its_copies() {
    let lab = Lab::new();
    lab.host(&homelab());
    assert!(lab.apply().status.success());
    let on_1 = lab.tree();
    make_legacy(&lab, 1);
    // What ctm before the object store left when it died mid-switch: its
    // journal with a copy of each touched file, one file already replaced
    // and a new one written.
    let state = lab.root.join("var/lib/ctm");
    let path = "etc/systemd/nspawn/web.nspawn";
    let live = lab.root.join(path);
    let backup = state.join("journal/backup").join(path);
    std::fs::create_dir_all(backup.parent().unwrap()).unwrap();
    std::fs::copy(&live, &backup).unwrap();
    let sha256 = {
        use sha2::Digest as _;
        ctm::fs::hex(&sha2::Sha256::digest(std::fs::read(&live).unwrap()))
    };
    std::fs::write(&live, "[Exec]\n# half-way\n").unwrap();
    std::fs::write(lab.root.join("etc/systemd/nspawn/new.nspawn"), "x").unwrap();
    let journal = serde_json::json!({
        "from": 1, "to": 2, "new_generation": true, "actions": [],
        "touched": {
            path: {"before": {"kind": "file", "sha256": sha256, "mode": 0o644}, "owner": {"kind": "container", "name": "web"}},
            "etc/systemd/nspawn/new.nspawn": {"before": {"kind": "absent"}, "owner": {"kind": "container", "name": "new"}},
        },
    });
    std::fs::write(state.join("journal/journal.json"), journal.to_string()).unwrap();
    let o = lab.ctm(&["recover"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        err(&o).contains("rolled back an interrupted switch"),
        "{}",
        err(&o)
    );
    assert_eq!(lab.tree(), on_1);
    assert!(!state.join("journal").exists());
}

#[test]
fn gc_removes_the_images_no_kept_generation_uses() {
    let lab = Lab::new();
    lab.host(&homelab());
    assert!(lab.apply().status.success());
    lab.host(&homelab().replace(
        "debootstrap suite=\"bookworm\"",
        "debootstrap suite=\"bookworm\" variant=\"minbase\"",
    ));
    assert!(lab.apply().status.success());
    // The store as live applies leave it: each image with its record,
    // named after the definition its generation's steps give.
    let store = lab.root.join("var/lib/ctm/images");
    for (n, name) in [(1, "debian-bookworm-1111"), (2, "debian-bookworm-2222")] {
        let steps = lab.stored(n, "etc/ctm/machines/builder/provision.json");
        let steps: serde_json::Value = serde_json::from_str(&steps).unwrap();
        let action = &steps[0]["action"];
        assert_eq!(action["kind"], "create-rootfs");
        let record = serde_json::json!({ "image": action["image"], "source": action["source"] });
        std::fs::create_dir_all(store.join(name)).unwrap();
        std::fs::write(store.join(format!("{name}.json")), record.to_string()).unwrap();
    }
    let o = lab.ctm(&["gc", "--keep", "1"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(lab.generations(), vec![2]);
    assert!(err(&o).contains("Removed image"), "{}", err(&o));
    assert!(!store.join("debian-bookworm-1111").exists());
    assert!(!store.join("debian-bookworm-1111.json").exists());
    assert!(store.join("debian-bookworm-2222").is_dir());
    // Nothing more to remove.
    let o = lab.ctm(&["gc", "--keep", "1"]);
    assert!(err(&o).contains("Nothing to remove"), "{}", err(&o));
}

#[test]
fn the_running_system_is_not_changed_without_systemd() {
    // On a host booted with systemd this would really apply the example:
    // the lab tests cover that, inside a lab.
    if skip_unless(
        !std::path::Path::new("/run/systemd/system").exists(),
        "this machine runs systemd; the refusal is for machines without it",
    ) {
        return;
    }
    let lab = Lab::new();
    lab.host(&homelab());
    let o = Command::new(env!("CARGO_BIN_EXE_ctm"))
        .args(["apply", "host.kdl", "--yes", "--root", "/"])
        .current_dir(&lab.work)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("cannot change the running system: connecting to the system D-Bus failed"),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("use --root DIR"), "{}", err(&o));
    assert!(!std::path::Path::new("/etc/ctm/ctm.nft").exists());
}

/// A tmpfs mounted over a directory for one test, unmounted when dropped.
struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    fn mount(at: &Path, options: &str) -> Tmpfs {
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(o.status.success(), "mount: {}", err(&o));
        Tmpfs {
            at: at.to_path_buf(),
        }
    }

    fn remount(&self, options: &str) {
        let o = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.at)
            .output()
            .unwrap();
        assert!(o.status.success(), "remount {options}: {}", err(&o));
    }

    /// Bytes and inodes in use.
    fn used(&self) -> (u64, u64) {
        let s = nix::sys::statvfs::statvfs(&self.at).unwrap();
        (
            (s.blocks() - s.blocks_free()) * s.fragment_size(),
            s.files() - s.files_free(),
        )
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).status();
    }
}

/// Generation A fits on the file system and B does not: an apply of B
/// fails, and leaves the host wholly on A with the space it had, whether
/// the space or the inodes run out, and whether the check before the
/// switch sees it coming (a clear error, nothing written) or not (the
/// disk fills up mid-switch, and the switch is undone on the full disk).
#[test]
fn a_full_tmpfs_leaves_the_host_on_the_generation_that_fits() {
    if skip_unless(is_root(), "mounting a small tmpfs needs root") {
        return;
    }
    let lab = Lab::new();
    let fs = Tmpfs::mount(&lab.root, "size=64m,nr_inodes=100000");
    let small = ctm::synthetic::host_kdl(10, 2, 1);
    let big = ctm::synthetic::host_kdl(120, 4, 2);
    lab.host(&small);
    let o = lab.apply();
    assert!(o.status.success(), "{}", err(&o));
    let on_a = lab.tree();
    lab.host(&big);
    // Once the files have settled, a plan records them all in the stat
    // cache, which later plans leave as it is: what follows compares the
    // space used with this.
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        lab.ctm(&["plan", "host.kdl", "--detailed-exitcode"])
            .status
            .code(),
        Some(2)
    );
    let (bytes, inodes) = fs.used();
    for (limit, short_of) in [
        (format!("size={}", bytes + 256 * 1024), "KiB of space and"),
        (format!("size=64m,nr_inodes={}", inodes + 60), "inodes and"),
    ] {
        fs.remount(&limit);
        // Seen coming: refused before anything is written.
        let o = lab.apply();
        assert_eq!(o.status.code(), Some(1), "{}", err(&o));
        let e = err(&o);
        assert!(e.contains("not enough room on the file system of"), "{e}");
        assert!(e.contains(short_of), "{e}");
        assert!(
            !(e.contains("KiB of space and") && e.contains("inodes and")),
            "only what is short: {e}"
        );
        assert!(e.contains("nothing was changed"), "{e}");
        assert_eq!(lab.tree(), on_a);
        assert_eq!(fs.used(), (bytes, inodes), "{limit}: nothing may be left");
        // Not seen coming: the disk fills up mid-switch.
        let o = lab.ctm_env(
            &["apply", "host.kdl", "--yes"],
            &[("CTM_FAULT_SKIP_SPACE_CHECK", "1".into())],
        );
        assert_eq!(o.status.code(), Some(1), "{}", err(&o));
        let e = err(&o);
        assert!(e.contains("No space left on device"), "{limit}: {e}");
        assert!(
            e.contains("rolled back: the host is on generation 1 again"),
            "{e}"
        );
        assert_eq!(lab.tree(), on_a, "{limit}");
        assert_eq!(lab.current(), Some(1));
        lab.assert_clean_state(&format!("after filling the tmpfs ({limit})"));
        assert_eq!(fs.used(), (bytes, inodes), "{limit}: nothing may be left");
        let o = lab.ctm(&["recover"]);
        assert!(
            err(&o).contains("The host is on generation 1; no switch is in progress"),
            "{}",
            err(&o)
        );
    }
    // With room again, B applies.
    fs.remount("size=64m,nr_inodes=100000");
    let o = lab.apply();
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(lab.current(), Some(2));
}
