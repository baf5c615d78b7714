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
        out(&o).contains("Plan: 25 to add, 0 to change, 0 to destroy; 11 actions."),
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
    // web's address moved: its host0 file and the DNAT rules changed.
    assert_eq!(
        actions,
        ["replace-firewall ", "restart-container web"],
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
    let cache = std::fs::read_to_string(lab.root.join("var/lib/ctm/stat-cache.json")).unwrap();
    assert!(cache.contains("etc/systemd/nspawn/web.nspawn"), "{cache}");

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
        e.contains("rollback: restart container web"),
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

/// For every point K at which the process can die during `args`, the
/// next ctm command leaves the root wholly at `old` or wholly at `new`,
/// and ctm's state agrees with the files.
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
    loop {
        let lab = Lab::new();
        setup(&lab);
        if !run_with_fault(&lab, args, k) {
            break;
        }
        let o = lab.ctm(&["recover"]);
        assert!(
            o.status.success(),
            "recover failed after a crash at point {k}: {}",
            err(&o)
        );
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
        assert!(
            !lab.root.join("var/lib/ctm/journal").exists(),
            "journal left after recovery (point {k})"
        );
        // And the host is usable: a plain plan works.
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
    assert!(lab.root.join("var/lib/ctm/journal").exists());
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
        "3 containers, 1 network, 1 tunnel"
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
        let steps = std::fs::read_to_string(lab.root.join(format!(
            "var/lib/ctm/generations/{n}/tree/etc/ctm/machines/builder/provision.json"
        )))
        .unwrap();
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
