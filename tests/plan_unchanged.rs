//! A plan of the host file the current generation was compiled from
//! skips parsing, validating and compiling (`engine::planning`, keyed by
//! `Meta::plan_key`): it must give exactly the plan that compiling gives,
//! and any change of the host file, the lock file or the ctm binary must
//! make it compile again. Drift on the disk is found by the live files'
//! check either way.

use std::path::{Path, PathBuf};
use std::process::Command;

use ctm::engine::apply::{self, Runner};
use ctm::engine::load::{Desired, load_and_validate};
use ctm::engine::planning::{Planned, plan_file};
use ctm::engine::{Event, Target};
use ctm::plan::{Change, Options, Plan};

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    /// A generated host (every part of the language), applied.
    fn applied() -> Host {
        let host = Host {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(host.file(), ctm::synthetic::host_kdl(24, 4, 2)).unwrap();
        host.apply();
        host
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("host.kdl")
    }

    fn lock(&self) -> PathBuf {
        self.dir.path().join("host.kdl.lock")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn apply(&self) {
        let outcome = load_and_validate(&self.file(), None).unwrap();
        let desired = Desired::compile(&outcome, &Default::default()).expect("the host compiles");
        let target = Target::new(self.root());
        let prepared = apply::prepare_apply(
            &target,
            desired,
            Options::default(),
            None,
            None,
            &mut |_| {},
        )
        .unwrap();
        apply::apply(&target, prepared, None, Runner::Foreground, &mut |_| {}).unwrap();
    }

    /// `ctm plan`: compiled only if `compile` (as when the plan is saved)
    /// or the inputs are not the current generation's.
    fn plan(&self, compile: bool) -> Planned {
        let mut warnings = Vec::new();
        let planned = plan_file(
            &Target::new(self.root()),
            &self.file(),
            1 << 24,
            Options::default(),
            compile,
            &mut |e| {
                if let Event::Warning { message } = e {
                    warnings.push(message);
                }
            },
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        planned
    }

    /// The plan without compiling, checked equal to the compiled one.
    fn plan_both(&self) -> Plan {
        let fast = self.plan(false);
        assert!(fast.outcome.is_none(), "planned without compiling");
        let compiled = self.plan(true);
        assert!(compiled.outcome.is_some());
        let (fast, compiled) = (fast.plan.unwrap().unwrap(), compiled.plan.unwrap().unwrap());
        assert_eq!(fast, compiled, "the same plan, fingerprint and all");
        fast
    }

    fn edit(&self, path: &Path, f: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(path).unwrap();
        let edited = f(text.clone());
        assert_ne!(edited, text);
        std::fs::write(path, edited).unwrap();
    }
}

#[test]
fn a_no_op_plan_of_the_applied_host_file_is_the_compiled_plan() {
    let host = Host::applied();
    let plan = host.plan_both();
    assert!(plan.is_empty(), "{plan:?}");
    // Again, now that the stat cache trusts the files.
    assert!(host.plan_both().is_empty());
}

#[test]
fn drift_on_the_disk_is_planned_alike_without_compiling() {
    let host = Host::applied();
    let root = host.root();
    // An edit in place, a removed file, a file replaced by a symlink, and
    // the health expectations edited (a plan reads them from the store).
    let nspawn = root.join("etc/systemd/nspawn/ct00003.nspawn");
    host.edit(&nspawn, |t| t.replacen("[Exec]", "[Exec]\nBoot=no", 1));
    let removed = "etc/systemd/nspawn/ct00004.nspawn";
    std::fs::remove_file(root.join(removed)).unwrap();
    let replaced = root.join("etc/systemd/nspawn/ct00005.nspawn");
    std::fs::remove_file(&replaced).unwrap();
    std::os::unix::fs::symlink("/dev/null", &replaced).unwrap();
    host.edit(&root.join("etc/ctm/health.json"), |t| format!("{t} "));
    let plan = host.plan_both();
    let mut changed: Vec<(&str, Change)> = plan
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.change))
        .collect();
    changed.sort();
    assert_eq!(
        changed,
        [
            ("etc/ctm/health.json", Change::Change),
            ("etc/systemd/nspawn/ct00003.nspawn", Change::Change),
            (removed, Change::Add),
            ("etc/systemd/nspawn/ct00005.nspawn", Change::Change),
        ]
    );
    let diff = &plan
        .files
        .iter()
        .find(|f| f.path.ends_with("ct00003.nspawn"))
        .unwrap()
        .diff;
    assert!(diff.contains("-Boot=no"), "{diff}");
    assert!(!plan.actions.is_empty(), "the restarts drift calls for");
}

#[test]
fn an_edited_host_file_is_compiled_again() {
    let host = Host::applied();
    // A comment changes nothing compiled, but the file is read again.
    host.edit(&host.file(), |t| format!("{t}// a comment\n"));
    let planned = host.plan(false);
    assert!(planned.outcome.is_some(), "compiled");
    assert!(planned.plan.unwrap().unwrap().is_empty());
    // An edit that changes a container.
    host.edit(&host.file(), |t| {
        t.replacen(
            "container \"ct00007\" {\n",
            "container \"ct00007\" {\n    limits memory=\"3G\"\n",
            1,
        )
    });
    let planned = host.plan(false);
    assert!(planned.outcome.is_some(), "compiled");
    let plan = planned.plan.unwrap().unwrap();
    assert!(
        plan.files.iter().any(|f| f.path.contains("ct00007")),
        "{:?}",
        plan.files
    );
    // Applied, the edited file is the current generation's: not compiled.
    host.apply();
    assert!(host.plan_both().is_empty());
}

#[test]
fn a_host_file_with_errors_is_compiled_and_shown() {
    let host = Host::applied();
    host.edit(&host.file(), |t| {
        format!("{t}container \"bad\" {{ network \"nowhere\" }}\n")
    });
    let planned = host.plan(false);
    let outcome = planned.outcome.expect("compiled");
    assert!(outcome.error_count() > 0);
    assert!(planned.plan.is_none());
}

#[test]
fn an_edited_lock_file_is_compiled_again() {
    let host = Host::applied();
    host.edit(&host.lock(), |t| format!("{t}\n# edited\n"));
    let planned = host.plan(false);
    let outcome = planned.outcome.expect("compiled");
    assert!(outcome.lock_diagnostic.is_none());
    assert!(planned.plan.unwrap().unwrap().is_empty());
    // A lock file taken away: compiled too (addresses assigned afresh).
    std::fs::remove_file(host.lock()).unwrap();
    assert!(host.plan(false).outcome.is_some());
}

#[test]
fn another_generation_is_not_planned_by_the_current_ones_key() {
    let host = Host::applied();
    let first = std::fs::read_to_string(host.file()).unwrap();
    host.edit(&host.file(), |t| t.replacen("ct00002", "ct00002x", 1));
    host.apply();
    // Back to the first host file: the key is generation 1's, the host is
    // on generation 2.
    std::fs::write(host.file(), first).unwrap();
    let planned = host.plan(false);
    assert!(planned.outcome.is_some(), "compiled");
    assert!(!planned.plan.unwrap().unwrap().is_empty());
}

/// The ctm binary is part of the key: another binary compiles. Seen from
/// outside, with a state whose manifest was tampered with so that the
/// two ways give different plans: planned from the manifest without
/// compiling, two files swapped their contents; compiled, nothing
/// changed.
#[test]
fn another_ctm_binary_compiles_again() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    std::fs::write(w.join("host.kdl"), ctm::synthetic::host_kdl(6, 2, 1)).unwrap();
    let ctm = |exe: &Path, args: &[&str]| {
        let out = Command::new(exe)
            .args(args)
            .current_dir(w)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_ctm"));
    let (code, out) = ctm(&exe, &["apply", "host.kdl", "--yes", "--root", "root"]);
    assert_eq!(code, Some(0), "{out}");
    let plan = ["plan", "host.kdl", "--root", "root", "--detailed-exitcode"];
    assert_eq!(ctm(&exe, &plan).0, Some(0));

    let manifest = w.join("root/var/lib/ctm/generations/1/manifest.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let files = json["files"].as_object_mut().unwrap();
    let (a, b) = (
        "etc/systemd/nspawn/ct00000.nspawn",
        "etc/systemd/nspawn/ct00001.nspawn",
    );
    let (sa, sb) = (files[a]["sha256"].clone(), files[b]["sha256"].clone());
    files[a]["sha256"] = sb;
    files[b]["sha256"] = sa;
    std::fs::write(&manifest, serde_json::to_vec(&json).unwrap()).unwrap();
    let (code, out) = ctm(&exe, &plan);
    assert_eq!(code, Some(2), "planned from the manifest: {out}");
    assert!(out.contains(a) && out.contains(b), "{out}");

    // The same binary with a byte more is another binary.
    let copy = w.join("ctm-copy");
    let mut bytes = std::fs::read(&exe).unwrap();
    bytes.push(0);
    std::fs::write(&copy, bytes).unwrap();
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (code, out) = ctm(&copy, &plan);
    assert_eq!(code, Some(0), "compiled: {out}");
    // And the first binary again: its key again.
    assert_eq!(ctm(&exe, &plan).0, Some(2));
}

/// `ctm serve` keeps the last text it compiled without a diagnostic and
/// answers a text that says the same (a comment or blank space apart,
/// with the same lock file) from it; anything else is compiled.
#[test]
fn a_text_that_says_the_same_is_answered_from_the_kept_compile() {
    use ctm::engine::load::CompileCache;
    use std::sync::Arc;
    let cache = CompileCache::default();
    let text = ctm::synthetic::host_kdl(6, 2, 1);
    let check = |text: &str, lock: Option<&str>| {
        cache.check(
            Path::new("host.kdl"),
            text.to_string(),
            PathBuf::from("host.kdl.lock"),
            lock.map(str::to_string),
            |t| ctm::lock::Lock::parse(t).map(Arc::new),
        )
    };
    let first = check(&text, None);
    assert!(first.compiled.is_none());
    let validated = first.outcome.validated.as_ref().expect("valid");
    let artifacts = Arc::new(ctm::compile::compile(&validated.host));
    let lock = validated.lock.render();
    cache.keep(&first, "summary".into(), artifacts.clone());

    let same = check(&format!("// a note\n{text}\n\n// 2\n"), None);
    let kept = same.compiled.expect("answered from the kept compile");
    assert!(Arc::ptr_eq(&kept.artifacts, &artifacts));
    assert!(same.outcome.diagnostics.is_empty() && same.outcome.validated.is_none());

    // Another value, another lock file, an error: compiled.
    let edited = text.replacen(
        "container \"ct00001\" {\n",
        "container \"ct00001\" {\n    limits memory=\"3G\"\n",
        1,
    );
    assert_ne!(edited, text);
    assert!(check(&edited, None).compiled.is_none());
    assert!(check(&text, Some(&lock)).compiled.is_none());
    let broken = check(&format!("{text}\nnonsense {{"), None);
    assert!(broken.compiled.is_none() && broken.outcome.error_count() > 0);
    // A text with an error is never kept.
    cache.keep(&broken, "summary".into(), artifacts.clone());
    assert!(
        check(&format!("{text}\nnonsense {{"), None)
            .compiled
            .is_none()
    );
    // The first text again still is.
    assert!(check(&text, None).compiled.is_some());
}
