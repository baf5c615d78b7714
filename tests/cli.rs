//! The `ctm` binary end to end: exit codes, the written tree, the lock
//! file, and refusing to overwrite files ctm did not write.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::*;

fn ctm(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ctm"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A scratch directory holding a copy of an example, without its lock.
fn scratch(example: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("examples").join(example),
        dir.path().join(example),
    )
    .unwrap();
    dir
}

/// Reads a written tree back in the golden-file format.
fn read_tree(root: &Path) -> String {
    let mut entries = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            if meta.file_type().is_symlink() {
                entries.push((
                    rel.clone(),
                    format!(
                        "=== {rel} -> {}\n",
                        std::fs::read_link(&path).unwrap().display()
                    ),
                ));
            } else if meta.is_dir() {
                stack.push(path);
            } else {
                use std::os::unix::fs::PermissionsExt;
                let mode = meta.permissions().mode() & 0o7777;
                let text = std::fs::read_to_string(&path).unwrap();
                entries.push((rel.clone(), format!("=== {rel} (mode {mode:o})\n{text}")));
            }
        }
    }
    entries.sort();
    entries.into_iter().map(|(_, text)| text).collect()
}

#[test]
fn compile_writes_the_golden_tree_and_the_lock() {
    let dir = scratch("homelab.kdl");
    let out = dir.path().join("out");
    let o = ctm(&["compile", "homelab.kdl", "--out", "out"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let golden = std::fs::read_to_string(repo().join("tests/golden/homelab.txt")).unwrap();
    assert_eq!(read_tree(&out), golden);
    let lock = std::fs::read_to_string(dir.path().join("homelab.kdl.lock")).unwrap();
    assert_eq!(
        lock,
        std::fs::read_to_string(repo().join("examples/homelab.kdl.lock")).unwrap()
    );
    assert!(
        stderr(&o).contains("updated homelab.kdl.lock"),
        "{}",
        stderr(&o)
    );

    // A second run keeps the lock as it is and says nothing about it.
    let o = ctm(&["compile", "homelab.kdl", "--out", "out"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("updated"), "{}", stderr(&o));
}

#[test]
fn locked_refuses_to_change_the_lock() {
    let dir = scratch("homelab.kdl");
    let o = ctm(
        &["compile", "homelab.kdl", "--out", "out", "--locked"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is out of date and --locked was given"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("homelab.kdl.lock").exists());
    assert!(
        !dir.path().join("out").exists(),
        "nothing may be written when the lock is stale"
    );

    std::fs::copy(
        repo().join("examples/homelab.kdl.lock"),
        dir.path().join("homelab.kdl.lock"),
    )
    .unwrap();
    let o = ctm(
        &["compile", "homelab.kdl", "--out", "out", "--locked"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn compile_never_replaces_a_file_it_did_not_write_without_force() {
    let dir = scratch("homelab.kdl");
    let theirs = dir
        .path()
        .join("out/etc/systemd/network/50-ctm-br-lan.network");
    std::fs::create_dir_all(theirs.parent().unwrap()).unwrap();
    std::fs::write(&theirs, "[Match]\nName=br-lan\n# written by hand\n").unwrap();

    let o = ctm(&["compile", "homelab.kdl", "--out", "out"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("were not written by ctm"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("50-ctm-br-lan.network"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&theirs).unwrap(),
        "[Match]\nName=br-lan\n# written by hand\n"
    );
    assert!(
        !dir.path().join("out/etc/systemd/nspawn").exists(),
        "nothing may be written on conflict"
    );

    let o = ctm(
        &["compile", "homelab.kdl", "--out", "out", "--force"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read_to_string(&theirs)
            .unwrap()
            .contains("Generated by ctm")
    );
}

#[test]
fn check_exit_codes_and_summary() {
    let dir = scratch("homelab.kdl");
    let o = ctm(&["check", "homelab.kdl"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("homelab.kdl: ok (3 containers, 1 network, 1 tunnel)"));
    // check reads the lock but never writes it.
    assert!(!dir.path().join("homelab.kdl.lock").exists());

    std::fs::write(
        dir.path().join("bad.kdl"),
        "container \"web\" {\n    imgae \"x\"\n}\n",
    )
    .unwrap();
    let o = ctm(&["check", "bad.kdl"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("unknown node `imgae` in `container`"), "{err}");
    assert!(err.contains("did you mean `image`?"), "{err}");
    assert!(err.contains("bad.kdl:2:5"), "{err}");
    assert!(err.contains("container `web` has no image"), "{err}");
    assert!(err.contains("2 problems found"), "{err}");
}

#[test]
fn a_broken_lock_file_is_reported_against_the_lock_file() {
    let dir = scratch("homelab.kdl");
    std::fs::write(
        dir.path().join("homelab.kdl.lock"),
        "version = 1\n[containers.ci]\nnetwork = 5\n",
    )
    .unwrap();
    let o = ctm(&["check", "homelab.kdl"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("invalid lock file"), "{err}");
    assert!(err.contains("homelab.kdl.lock:3"), "{err}");
}

#[test]
fn unreadable_host_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let o = ctm(&["check", "missing.kdl"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot read host file missing.kdl"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let o = ctm(&["schema"], &repo());
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        std::fs::read_to_string(repo().join("schema/ctm.schema.json")).unwrap()
    );
}

#[test]
fn completions_and_help() {
    let o = ctm(&["completions", "bash"], &repo());
    assert!(o.status.success());
    let script = String::from_utf8(o.stdout).unwrap();
    assert!(
        script.contains("_ctm()") && script.contains("compile"),
        "{script}"
    );

    let o = ctm(&["--help"], &repo());
    let help = String::from_utf8(o.stdout).unwrap();
    for word in ["check", "compile", "schema", "completions"] {
        assert!(
            help.contains(word),
            "--help does not mention {word}:\n{help}"
        );
    }
    let o = ctm(&["compile", "--help"], &repo());
    let help = String::from_utf8(o.stdout).unwrap();
    assert!(
        help.contains("--locked") && help.contains("--force") && help.contains("--out"),
        "{help}"
    );
}

/// Runs ctm with its standard output a pipe whose reader has gone, as
/// `ctm … | head -c 1` leaves it once head has exited.
fn with_closed_stdout(args: &[&str], cwd: &Path) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_ctm"))
        .args(args)
        .current_dir(cwd)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_reader_that_goes_away_ends_ctm_quietly() {
    let dir = scratch("homelab.kdl");
    let root = dir.path().join("root");
    let root = root.to_str().unwrap();
    for args in [
        &["completions", "bash"][..],
        &["schema"],
        &["check", "homelab.kdl", "--format", "json"],
        &["plan", "homelab.kdl", "--root", root],
        &["plan", "homelab.kdl", "--root", root, "--json"],
        &["generations", "--root", root],
        &["status", "--root", root, "--json"],
    ] {
        let o = with_closed_stdout(args, dir.path());
        assert_eq!(o.status.code(), Some(0), "ctm {args:?}: {}", stderr(&o));
        assert!(
            !stderr(&o).contains("panicked"),
            "ctm {args:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn commands_that_only_read_write_nothing_on_a_root_ctm_never_managed() {
    let dir = scratch("homelab.kdl");
    let root = dir.path().join("never-managed");
    let root_arg = root.to_str().unwrap();
    for args in [
        &["plan", "homelab.kdl", "--root", root_arg][..],
        &["plan", "homelab.kdl", "--root", root_arg, "--check-steps"],
        &["status", "--root", root_arg],
        &["generations", "--root", root_arg],
    ] {
        let o = ctm(args, dir.path());
        assert!(o.status.success(), "ctm {args:?}: {}", stderr(&o));
        assert!(!root.exists(), "ctm {args:?} created {}", root.display());
    }
    // On a root ctm manages, a plan writes nothing but its stat cache.
    let managed = dir.path().join("managed");
    let managed_arg = managed.to_str().unwrap();
    let o = ctm(
        &["apply", "homelab.kdl", "--root", managed_arg, "--yes"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let listing = |p: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(p.join("var/lib/ctm"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = listing(&managed);
    let o = ctm(&["plan", "homelab.kdl", "--root", managed_arg], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let after: Vec<String> = listing(&managed)
        .into_iter()
        .filter(|n| n != "stat-cache.json")
        .collect();
    let before: Vec<String> = before
        .into_iter()
        .filter(|n| n != "stat-cache.json")
        .collect();
    assert_eq!(before, after);
}
