//! Fleets (`ctm fleet`, docs/fleet.md): the orchestration against the
//! recording fake of the SSH transport (canary order, stop at the first
//! failure, rollback of the run, `--keep-going`, confirmation over a new
//! connection, refusals before anything changes, push-binary); the
//! fleet file's examples and schema; and, in the lab, three booted hosts
//! with sshd driven over real SSH.

#[path = "lab/mod.rs"]
mod lab;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ctm::backend::ssh::fake::{Answer, Call, Recording};
use ctm::backend::ssh::{SshError, Via};
use ctm::engine::Event;
use ctm::engine::fleet::{self, ApplyOptions, Controller, HostOutcome, Pushed, Ready, RunRecord};
use ctm::model::Name;
use ctm::model::fleet::Canary;
use ctm::plan::Plan;
use support::*;

// ---- a fleet of fakes ---------------------------------------------------------

/// How one fake host behaves.
#[derive(Clone)]
struct Fake {
    /// The generation it is on.
    on: Option<u64>,
    /// Its plan has changes.
    changes: bool,
    /// Its apply fails (a health check): its ctm rolls it back.
    apply_fails: bool,
    /// After its switch it cannot be reached over a new connection.
    cut_off: bool,
    /// ssh does not know its host key.
    unknown_key: bool,
    version: &'static str,
}

impl Default for Fake {
    fn default() -> Fake {
        Fake {
            on: Some(1),
            changes: true,
            apply_fails: false,
            cut_off: false,
            unknown_key: false,
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

const HOST_FILE: &str = "image \"guest\" {\n    directory \"/srv/images/guest\"\n}\n\
                         container \"app\" {\n    image \"guest\"\n}\n";

/// A real plan of HOST_FILE (a first apply, on an empty files-only root),
/// as the hosts' ctm would print it.
fn some_plan() -> Plan {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("host.kdl");
    std::fs::write(&file, HOST_FILE).unwrap();
    let outcome = ctm::engine::load::load_and_validate(&file, None).unwrap();
    let desired = ctm::engine::load::Desired::compile(&outcome, &Default::default()).unwrap();
    let target = ctm::engine::Target::new(dir.path().join("root"));
    std::fs::create_dir_all(&target.root).unwrap();
    let mut session =
        ctm::engine::Session::open(&target, ctm::engine::Access::Read, &mut |_| {}).unwrap();
    let plan = session
        .plan(&desired.artifacts, Default::default(), &mut |_| {})
        .unwrap();
    assert!(!plan.is_empty());
    plan
}

fn json_lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect()
}

/// The transport of a fleet of fakes, keyed by SSH destination.
fn fakes(hosts: BTreeMap<&'static str, Fake>) -> Recording {
    let changed = some_plan();
    Recording::new(move |call: &Call| {
        let fake = &hosts[call.host.as_str()];
        if fake.unknown_key {
            return Answer::Fails(SshError::HostKey {
                detail: "Host key verification failed.".into(),
            });
        }
        let argv: Vec<&str> = call.argv.iter().map(String::as_str).collect();
        let next = fake.on.map_or(1, |n| n + 1);
        match argv.as_slice() {
            [] => Answer::ok(""),
            [_, "--version"] => Answer::ok(&format!("ctm {}\n", fake.version)),
            ["mktemp", ..] => Answer::ok("/tmp/ctm-fleet.test\n"),
            ["sh", "-c", ..] | ["rm", ..] => Answer::ok(""),
            ["cat", ..] => Answer::ok("# the lock the host wrote\n"),
            [_, "plan", ..] => {
                let mut plan = if fake.changes {
                    changed.clone()
                } else {
                    let mut empty = changed.clone();
                    empty.files.clear();
                    empty.actions.clear();
                    empty
                };
                plan.from_generation = fake.on;
                Answer::ok(&serde_json::to_string(&plan).unwrap())
            }
            [_, "apply", ..] if fake.apply_fails => Answer::streams(
                json_lines(&[
                    Event::Applying { generation: next },
                    Event::Step {
                        line: "check command `false` of container app failed".into(),
                    },
                ]),
                1,
                "Error: the health checks failed; rolled back: the host is on generation 1 again\n",
            ),
            [_, "apply", ..] => Answer::streams(
                json_lines(&[
                    Event::Applying { generation: next },
                    Event::Applied { generation: next },
                    Event::ConfirmBefore {
                        generation: next,
                        previous: fake.on,
                        deadline: 4_000_000_000,
                        seconds: 120,
                        command: "ctm confirm".into(),
                    },
                    Event::Confirmed { generation: next },
                ]),
                0,
                "",
            ),
            [_, "confirm", _] if fake.cut_off => Answer::Fails(SshError::Unreachable {
                detail: "ssh: connect to host port 22: Connection refused".into(),
            }),
            [_, "confirm", _] => Answer::ok(""),
            [_, "rollback", n, ..] => Answer::streams(
                json_lines(&[Event::RolledBack {
                    generation: n.parse().unwrap(),
                }]),
                0,
                "",
            ),
            other => panic!("the fake does not know {other:?}"),
        }
    })
}

/// A fleet file of `names` (each host's destination is its name) with
/// its host files, in a directory of its own.
fn fleet_dir(names: &[&str], extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut text = extra.to_string();
    for name in names {
        text.push_str(&format!(
            "host \"{name}\" {{\n    ssh \"{name}\"\n    file \"hosts/{name}.kdl\"\n}}\n"
        ));
        let host = dir.path().join(format!("hosts/{name}.kdl"));
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        std::fs::write(host, HOST_FILE).unwrap();
    }
    std::fs::write(dir.path().join("fleet.kdl"), text).unwrap();
    dir
}

struct Applied {
    /// The fleet's directory, with the run's record.
    _dir: tempfile::TempDir,
    run: fleet::Run,
    calls: Vec<Call>,
    events: Vec<String>,
}

impl Applied {
    fn outcome(&self, host: &str) -> &HostOutcome {
        &self
            .run
            .record
            .hosts
            .iter()
            .find(|h| h.host == host)
            .unwrap()
            .outcome
    }

    /// `host: ctm VERB`, for every call that changes or confirms a host.
    fn changes(&self) -> Vec<String> {
        self.calls
            .iter()
            .filter(|c| {
                ["apply", "confirm", "rollback"].contains(&c.argv.get(1).map_or("", |s| s.as_str()))
            })
            .map(|c| format!("{}: {} {}", c.host, c.argv[1], c.argv[2..].join(" ")))
            .map(|line| line.replace("/tmp/ctm-fleet.test/", ""))
            .collect()
    }
}

/// Plans and applies the fleet of fakes.
fn apply_fakes(
    fakes_by_name: &[(&'static str, Fake)],
    extra: &str,
    options: impl FnOnce(&Ready) -> ApplyOptions,
) -> Result<Applied, miette::Report> {
    let names: Vec<&str> = fakes_by_name.iter().map(|(n, _)| *n).collect();
    let dir = fleet_dir(&names, extra);
    let ready = fleet::ready(&dir.path().join("fleet.kdl"), &[])?;
    let transport = fakes(fakes_by_name.iter().cloned().collect());
    let ctl = Controller {
        transport: &transport,
        parallel: 1,
    };
    let mut events = Vec::new();
    let mut say = |e: Event| events.push(e.to_string());
    let plan = fleet::plan(&ctl, &ready, &mut say);
    let options = options(&ready);
    let run = fleet::apply(&ctl, &ready, &plan, &options, &mut say);
    let calls = transport.calls();
    Ok(Applied {
        _dir: dir,
        run: run?,
        calls,
        events,
    })
}

fn defaults(ready: &Ready) -> ApplyOptions {
    ApplyOptions {
        canary: ready.fleet.fleet().unwrap().canary.clone(),
        keep_going: false,
        record_dir: ready.fleet.record_dir(),
    }
}

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

#[test]
fn the_canary_goes_first_then_the_rest_in_the_fleet_files_order() {
    let hosts = [
        ("h1", Fake::default()),
        ("h2", Fake::default()),
        ("h3", Fake::default()),
    ];
    let applied = apply_fakes(&hosts, "canary \"h2\"\n", defaults).unwrap();
    assert_eq!(
        applied.changes(),
        [
            "h2: apply plan.json --yes --confirm-timeout 120 --lock-timeout 120 --json",
            "h2: confirm 2",
            "h1: apply plan.json --yes --confirm-timeout 120 --lock-timeout 120 --json",
            "h1: confirm 2",
            "h3: apply plan.json --yes --confirm-timeout 120 --lock-timeout 120 --json",
            "h3: confirm 2",
        ]
    );
    assert!(applied.run.record.succeeded);
    for h in ["h1", "h2", "h3"] {
        assert_eq!(
            applied.outcome(h),
            &HostOutcome::Switched {
                from: Some(1),
                to: 2
            }
        );
    }
    let text = applied.events.join("\n");
    assert!(text.contains("Canary: h2 …"), "{text}");
    assert!(text.contains("Next: h1, h3 …"), "{text}");
    assert!(
        text.contains("h1: Confirming generation 2 over a new SSH connection …"),
        "{text}"
    );
}

#[test]
fn the_confirmation_goes_over_a_new_connection_and_the_apply_over_the_shared_one() {
    let applied = apply_fakes(&[("h1", Fake::default())], "", defaults).unwrap();
    let verb = |c: &Call| c.argv.get(1).cloned().unwrap_or_default();
    let confirm = applied.calls.iter().find(|c| verb(c) == "confirm").unwrap();
    assert_eq!(confirm.via, Some(Via::Fresh));
    for c in applied.calls.iter().filter(|c| verb(c) != "confirm") {
        assert_ne!(c.via, Some(Via::Fresh), "{c:?}");
    }
    // The host's ctm was reached (connect, then its version) before
    // anything was sent to it.
    assert_eq!(applied.calls[0].via, None);
    assert_eq!(applied.calls[1].argv, ["ctm", "--version"]);
}

#[test]
fn a_failure_stops_the_run_and_rolls_back_the_hosts_it_switched() {
    let hosts = [
        ("h1", Fake::default()),
        (
            "h2",
            Fake {
                apply_fails: true,
                ..Fake::default()
            },
        ),
        ("h3", Fake::default()),
    ];
    let applied = apply_fakes(&hosts, "canary \"h1\"\n", defaults).unwrap();
    assert_eq!(
        applied.changes(),
        [
            "h1: apply plan.json --yes --confirm-timeout 120 --lock-timeout 120 --json",
            "h1: confirm 2",
            "h2: apply plan.json --yes --confirm-timeout 120 --lock-timeout 120 --json",
            "h1: rollback 1 --yes --lock-timeout 120 --json",
        ]
    );
    assert!(!applied.run.record.succeeded);
    assert_eq!(
        applied.outcome("h1"),
        &HostOutcome::RolledBack {
            from: Some(1),
            to: 2
        }
    );
    assert!(
        matches!(applied.outcome("h2"), HostOutcome::Failed { reason, .. } if reason.contains("health checks failed")),
        "{:?}",
        applied.outcome("h2")
    );
    assert_eq!(
        applied.outcome("h3"),
        &HostOutcome::NotStarted {
            generation: Some(1)
        }
    );
    let text = applied.events.join("\n");
    assert!(
        text.contains("h2 failed: no further host is started."),
        "{text}"
    );
    assert!(
        text.contains("h1: A later host failed: returning to generation 1 …"),
        "{text}"
    );
    // The record says which host went where.
    let path = applied.run.record_path.as_ref().unwrap();
    let record: RunRecord = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(record, applied.run.record);
}

#[test]
fn keep_going_goes_on_past_a_failure_and_rolls_back_nothing() {
    let hosts = [
        ("h1", Fake::default()),
        (
            "h2",
            Fake {
                apply_fails: true,
                ..Fake::default()
            },
        ),
        ("h3", Fake::default()),
    ];
    let applied = apply_fakes(&hosts, "", |ready| ApplyOptions {
        keep_going: true,
        ..defaults(ready)
    })
    .unwrap();
    let changes = applied.changes();
    assert!(
        !changes.iter().any(|c| c.contains("rollback")),
        "{changes:?}"
    );
    assert!(
        changes.contains(&"h3: confirm 2".to_string()),
        "{changes:?}"
    );
    assert!(matches!(
        applied.outcome("h1"),
        HostOutcome::Switched { .. }
    ));
    assert!(matches!(applied.outcome("h2"), HostOutcome::Failed { .. }));
    assert!(matches!(
        applied.outcome("h3"),
        HostOutcome::Switched { .. }
    ));
    assert!(!applied.run.record.succeeded);
}

#[test]
fn a_failed_canary_stops_the_run_even_with_keep_going() {
    let hosts = [
        (
            "h1",
            Fake {
                apply_fails: true,
                ..Fake::default()
            },
        ),
        ("h2", Fake::default()),
    ];
    let applied = apply_fakes(&hosts, "canary \"h1\"\n", |ready| ApplyOptions {
        keep_going: true,
        ..defaults(ready)
    })
    .unwrap();
    assert_eq!(
        applied.changes(),
        ["h1: apply plan.json --yes --confirm-timeout 120 --lock-timeout 120 --json"]
    );
    assert_eq!(
        applied.outcome("h2"),
        &HostOutcome::NotStarted {
            generation: Some(1)
        }
    );
}

#[test]
fn a_host_that_cannot_be_reached_again_is_left_to_revert_by_itself() {
    let hosts = [
        ("h1", Fake::default()),
        (
            "h2",
            Fake {
                cut_off: true,
                ..Fake::default()
            },
        ),
        ("h3", Fake::default()),
    ];
    let applied = apply_fakes(&hosts, "", defaults).unwrap();
    assert_eq!(
        applied.changes(),
        [
            "h1: apply plan.json --yes --confirm-timeout 120 --lock-timeout 120 --json",
            "h1: confirm 2",
            "h2: apply plan.json --yes --confirm-timeout 120 --lock-timeout 120 --json",
            "h2: confirm 2",
            "h1: rollback 1 --yes --lock-timeout 120 --json",
        ]
    );
    assert!(
        matches!(
            applied.outcome("h2"),
            HostOutcome::NotReachedAgain { from: Some(1), to: 2, deadline: 4_000_000_000, reason }
                if reason.contains("Connection refused")
        ),
        "{:?}",
        applied.outcome("h2")
    );
    let text = applied.events.join("\n");
    assert!(
        text.contains("h2: cannot be reached again over a new SSH connection"),
        "{text}"
    );
    assert!(
        text.contains("the host returns to generation 1 by itself at 2096-10-02T07:06:40Z"),
        "{text}"
    );
}

#[test]
fn an_unchanged_host_is_left_alone() {
    let hosts = [
        (
            "h1",
            Fake {
                changes: false,
                ..Fake::default()
            },
        ),
        ("h2", Fake::default()),
    ];
    let applied = apply_fakes(&hosts, "", defaults).unwrap();
    assert_eq!(
        applied.outcome("h1"),
        &HostOutcome::Unchanged {
            generation: Some(1)
        }
    );
    assert!(applied.changes().iter().all(|c| c.starts_with("h2")));
}

#[test]
fn an_unknown_host_key_stops_the_run_before_anything_changes() {
    let hosts = [
        ("h1", Fake::default()),
        ("h2", Fake::default()),
        (
            "h3",
            Fake {
                unknown_key: true,
                ..Fake::default()
            },
        ),
    ];
    let names: Vec<&str> = hosts.iter().map(|(n, _)| *n).collect();
    let dir = fleet_dir(&names, "");
    let ready = fleet::ready(&dir.path().join("fleet.kdl"), &[]).unwrap();
    let transport = fakes(hosts.iter().cloned().collect());
    let ctl = Controller {
        transport: &transport,
        parallel: 3,
    };
    let plan = fleet::plan(&ctl, &ready, &mut |_| {});
    let problems = plan.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].0, "h3");
    assert!(
        problems[0]
            .1
            .contains("its host key is unknown or has changed, and ctm never accepts a host key"),
        "{}",
        problems[0].1
    );
    let refused = fleet::apply(&ctl, &ready, &plan, &defaults(&ready), &mut |_| {})
        .err()
        .unwrap();
    assert!(
        refused
            .to_string()
            .starts_with("1 of the fleet's hosts cannot be applied; nothing was changed"),
        "{refused}"
    );
    assert!(
        !transport.calls().iter().any(|c| c
            .argv
            .get(1)
            .is_some_and(|v| v == "apply" || v == "confirm")),
        "{:?}",
        transport.calls()
    );
}

#[test]
fn an_old_remote_ctm_is_refused_before_it_is_sent_anything() {
    let hosts = [(
        "h1",
        Fake {
            version: "0.0.9",
            ..Fake::default()
        },
    )];
    let dir = fleet_dir(&["h1"], "");
    let ready = fleet::ready(&dir.path().join("fleet.kdl"), &[]).unwrap();
    let transport = fakes(hosts.iter().cloned().collect());
    let ctl = Controller {
        transport: &transport,
        parallel: 1,
    };
    let plan = fleet::plan(&ctl, &ready, &mut |_| {});
    let problems = plan.problems();
    assert_eq!(
        problems[0].1,
        format!(
            "it runs ctm 0.0.9, which this ctm {} cannot drive; `ctm fleet push-binary` installs this ctm there",
            env!("CARGO_PKG_VERSION")
        )
    );
    // Reached and asked its version; nothing more.
    assert_eq!(transport.calls().len(), 2, "{:?}", transport.calls());
}

#[test]
fn push_binary_sends_this_ctm_and_has_the_host_check_its_sha256() {
    let dir = fleet_dir(&["h1"], "");
    let loaded = fleet::load_valid(&dir.path().join("fleet.kdl")).unwrap();
    let hosts = fleet::select(loaded.fleet().unwrap(), &[]).unwrap();
    let binary = dir.path().join("ctm-binary");
    std::fs::write(&binary, b"this ctm's bytes").unwrap();
    let sha256 = ctm::fs::sha256_hex(b"this ctm's bytes");
    let version = env!("CARGO_PKG_VERSION");
    let installed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = installed.clone();
    let transport = Recording::new(move |call: &Call| {
        let argv: Vec<&str> = call.argv.iter().map(String::as_str).collect();
        match argv.as_slice() {
            [] => Answer::ok(""),
            ["uname", "-m"] => Answer::ok(&format!("{}\n", std::env::consts::ARCH)),
            ["ctm", "--version"] => Answer::ok("ctm 0.0.9\n"),
            ["sh", "-c", "command -v ctm"] => Answer::ok("/usr/local/bin/ctm\n"),
            ["mkdir", "-p", "--", "/usr/local/bin"] => Answer::ok(""),
            ["sh", "-c", _, "sh", "/usr/local/bin/ctm.ctm-push"] => Answer::ok(""),
            [
                "sh",
                "-c",
                _,
                "sh",
                "/usr/local/bin/ctm.ctm-push",
                _,
                "/usr/local/bin/ctm",
            ] => {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
                Answer::ok("")
            }
            ["/usr/local/bin/ctm", "--version"] => Answer::ok(&format!("ctm {version}\n")),
            other => panic!("unexpected {other:?}"),
        }
    });
    let ctl = Controller {
        transport: &transport,
        parallel: 1,
    };
    let pushed = fleet::push_binary(&ctl, &hosts, &binary, false, &mut |_| {});
    assert_eq!(
        pushed,
        [Pushed::Installed {
            path: "/usr/local/bin/ctm".into(),
            sha256: sha256.clone(),
            previous: Some("0.0.9".into()),
        }]
    );
    assert!(installed.load(std::sync::atomic::Ordering::SeqCst));
    let calls = transport.calls();
    let upload = calls
        .iter()
        .find(|c| {
            c.argv
                .last()
                .is_some_and(|a| a == "/usr/local/bin/ctm.ctm-push")
        })
        .unwrap();
    assert_eq!(upload.stdin, b"this ctm's bytes");
    let install = calls
        .iter()
        .find(|c| c.argv.last().is_some_and(|a| a == "/usr/local/bin/ctm"))
        .unwrap();
    // The digest is an argument of the script, compared on the host.
    assert_eq!(install.argv[5], sha256);
    assert!(install.argv[2].contains("sha256sum"));
}

#[test]
fn groups_go_one_after_another_and_the_canary_group_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("canary \"eu\"\n");
    for (name, group) in [
        ("a", None),
        ("b", Some("us")),
        ("c", Some("eu")),
        ("d", None),
        ("e", Some("us")),
        ("f", Some("eu")),
    ] {
        text.push_str(&format!(
            "host \"{name}\" {{\n    ssh \"{name}\"\n    file \"h.kdl\"\n{}}}\n",
            group.map_or(String::new(), |g| format!("    group \"{g}\"\n"))
        ));
    }
    std::fs::write(dir.path().join("fleet.kdl"), &text).unwrap();
    std::fs::write(dir.path().join("h.kdl"), HOST_FILE).unwrap();
    let ready = fleet::ready(&dir.path().join("fleet.kdl"), &[]).unwrap();
    assert_eq!(
        ready.fleet.fleet().unwrap().canary,
        Some(Canary::Group(name("eu")))
    );
    let plans: Vec<fleet::HostPlan> = ready
        .hosts
        .iter()
        .map(|s| fleet::HostPlan {
            selected: s.clone(),
            remote_dir: "/tmp/x".into(),
            plan: some_plan(),
        })
        .collect();
    let refs: Vec<&fleet::HostPlan> = plans.iter().collect();
    let waves: Vec<(bool, Vec<String>)> = fleet::waves(&refs, Some(&Canary::Group(name("eu"))))
        .into_iter()
        .map(|(canary, hosts)| {
            (
                canary,
                hosts
                    .iter()
                    .map(|p| p.selected.host.name.to_string())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        waves,
        [
            (true, vec!["c".to_string(), "f".into()]),
            (false, vec!["a".into(), "d".into()]),
            (false, vec!["b".into(), "e".into()]),
        ]
    );
}

#[test]
fn a_host_whose_kernel_lacks_a_kind_of_link_stops_the_run_before_any_host_moves() {
    let dir = tempfile::tempdir().unwrap();
    let text = "host \"a\" {\n    ssh \"a\"\n    file \"h.kdl\"\n}\n\
                host \"b\" {\n    ssh \"b\"\n    file \"h.kdl\"\n}\n";
    std::fs::write(dir.path().join("fleet.kdl"), text).unwrap();
    std::fs::write(dir.path().join("h.kdl"), HOST_FILE).unwrap();
    let ready = fleet::ready(&dir.path().join("fleet.kdl"), &[]).unwrap();
    let hosts = ready
        .hosts
        .iter()
        .map(|s| {
            let mut plan = some_plan();
            if s.host.name.as_str() == "b" {
                plan.unsupported_links = vec![ctm::plan::LinkKindNote {
                    kind: "gre".into(),
                    links: vec!["site-b".into()],
                    reason: "the kernel has no such kind of link".into(),
                }];
            }
            let host_plan = fleet::HostPlan {
                selected: s.clone(),
                remote_dir: "/tmp/x".into(),
                plan,
            };
            (s.clone(), Ok(host_plan))
        })
        .collect();
    let plan = fleet::FleetPlan { hosts };
    assert_eq!(
        plan.refusal().map(|r| r.to_string()),
        Some(
            "1 of the fleet's hosts cannot be applied; nothing was changed:\n  \
             b: its kernel cannot make gre links (site-b)"
                .to_string()
        )
    );
}

#[test]
fn on_selects_hosts_by_name_or_tag_and_refuses_a_name_that_selects_nothing() {
    let loaded = fleet::load_valid(&repo().join("examples/fleet.kdl")).unwrap();
    let fleet = loaded.fleet().unwrap();
    let names = |on: &[&str]| -> Vec<String> {
        let on: Vec<String> = on.iter().map(|s| s.to_string()).collect();
        fleet::select(fleet, &on)
            .unwrap()
            .iter()
            .map(|h| h.name.to_string())
            .collect()
    };
    assert_eq!(names(&[]), ["lab1", "edge1", "edge2"]);
    assert_eq!(names(&["edge"]), ["edge1", "edge2"]);
    assert_eq!(names(&["lab1", "edge2"]), ["lab1", "edge2"]);
    let refused = fleet::select(fleet, &["egde".to_string()]).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "no host or tag of the fleet is called `egde`"
    );
    assert_eq!(
        refused.help().map(|h| h.to_string()).as_deref(),
        Some("did you mean `edge`?")
    );
}

// ---- the examples and the schema ------------------------------------------------

#[test]
fn the_example_fleet_checks_in_both_syntaxes_and_they_agree() {
    let kdl = fleet::check(&repo().join("examples/fleet.kdl")).unwrap();
    let toml = fleet::check(&repo().join("examples/fleet.toml")).unwrap();
    for checked in [&kdl, &toml] {
        assert_eq!(checked.error_count(), 0, "{:#}", checked.diagnostics_json());
        assert_eq!(checked.hosts.len(), 3);
    }
    assert_eq!(kdl.fleet.fleet(), toml.fleet.fleet());
    let fleet = kdl.fleet.fleet().unwrap();
    let edge2 = fleet.host("edge2").unwrap();
    assert_eq!(edge2.ctm_command(), "/opt/ctm/bin/ctm");
    assert_eq!(fleet.host("lab1").unwrap().ctm_command(), "ctm");
    assert_eq!(fleet.host("edge1").unwrap().confirm_timeout.seconds(), 300);
    assert_eq!(fleet.host("edge2").unwrap().confirm_timeout.seconds(), 120);
    assert_eq!(fleet.canary, Some(Canary::Host(name("lab1"))));
}

#[test]
fn ctm_fleet_check_prints_every_problem_and_exits_1() {
    let dir = fleet_dir(&["h1"], "canary \"nobody\"\n");
    std::fs::write(dir.path().join("hosts/h1.kdl"), "contaner \"x\" {}\n").unwrap();
    let out = ctm_at(
        &["fleet", "check", "fleet.kdl", "--format", "json"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", lab::show_output(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["diagnostics"][0]["code"], "ctm::unknown-canary");
    // Once the fleet file is valid, its host files are checked.
    std::fs::write(
        dir.path().join("fleet.kdl"),
        "host \"h1\" {\n    ssh \"h1\"\n    file \"hosts/h1.kdl\"\n}\n",
    )
    .unwrap();
    let out = ctm_at(&["fleet", "check"], dir.path());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("ctm::unknown-node"), "{text}");
    assert!(text.contains("error: fleet.kdl: 1 problem found"), "{text}");
}

#[test]
fn the_committed_fleet_schema_is_current_and_accepts_the_toml_example() {
    let committed = std::fs::read_to_string(repo().join("schema/fleet.schema.json")).unwrap();
    assert_eq!(
        committed,
        ctm::schema::render_of(ctm::schema::Language::Fleet),
        "schema/fleet.schema.json is stale: run `cargo run -- schema --fleet > schema/fleet.schema.json`"
    );
    let schema: serde_json::Value = serde_json::from_str(&committed).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let example: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo().join("examples/fleet.toml")).unwrap())
            .unwrap();
    let example = serde_json::to_value(example).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&example)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mut typo = example.clone();
    typo["host"]["lab1"]["flie"] = serde_json::json!("x.kdl");
    assert!(!validator.is_valid(&typo));
}

fn ctm_at(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ctm"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

// ---- in the lab: three hosts over real SSH ---------------------------------------

use lab::Lab;
use lab::scenario::GUEST;

/// The hosts' first generation: one container with a health check.
const V1: &str = r#"image "guest" {
    directory "/srv/images/guest"
}

template "base" {
    image "guest"
    bind "/usr" read-only=#true
}

container "app" {
    from "base"
    check command="true" timeout="60s"
}
"#;

/// A change: the container gets an environment variable (and restarts).
fn v2() -> String {
    V1.replace(
        "    check command=\"true\"",
        "    environment STAMP=\"v2\"\n    check command=\"true\"",
    )
}

/// v2 whose health check fails.
fn v2_broken() -> String {
    v2().replace(
        "check command=\"true\" timeout=\"60s\"",
        "check command=\"false\" timeout=\"3s\"",
    )
}

/// v2 plus a network whose container takes the host's port 22: a new SSH
/// connection to the host is sent into the container, where nothing
/// listens. The connection already open is not.
/// Port 22 of the host's own addresses forwarded to a container: new SSH
/// connections to the lab reach the container. Not its loopback port,
/// which the lab's sshd holds (a loopback forward there would fail to
/// listen, and the apply would roll back before it cut anything).
fn v3_cuts_ssh() -> String {
    v2().replace(
        "container \"app\" {\n    from \"base\"\n",
        "network \"lan\" {\n    bridge \"br-lan\"\n    ipv4 \"10.77.0.1/24\"\n}\n\n\
         container \"app\" {\n    from \"base\"\n    network \"lan\"\n    forward \"tcp\" host=22 container=22 loopback=#false\n",
    )
}

/// A lab with ctm, the guest image, and sshd reachable from here at
/// `10.231.SUBNET.2` with the test's key; returns the lab.
fn ssh_lab(name: &str, subnet: u8, public_key: &str) -> Lab {
    let lab = Lab::boot_with(
        name,
        lab::Options {
            ctm: Some(env!("CARGO_BIN_EXE_ctm").into()),
            guest_at: Some(GUEST.into()),
            ..lab::Options::default()
        },
    );
    // The lab's end of its veth pair, configured by networkd from the
    // start (so that networkd, once a host file needs it, keeps it).
    lab.write(
        "/etc/systemd/network/10-fleet-host0.network",
        format!(
            "[Match]\nName=host0\n\n[Network]\nAddress=10.231.{subnet}.2/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
        ),
    );
    lab.ok(&["systemctl", "start", "systemd-networkd"]);
    // This machine's end: the interface whose index is host0's peer.
    let peer = lab.ok(&["cat", "/sys/class/net/host0/iflink"]);
    let peer = peer.trim();
    let here = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .find(|e| std::fs::read_to_string(e.path().join("ifindex")).is_ok_and(|i| i.trim() == peer))
        .unwrap_or_else(|| panic!("no interface here with index {peer}"))
        .file_name()
        .to_string_lossy()
        .into_owned();
    for args in [
        vec![
            "address",
            "add",
            &format!("10.231.{subnet}.1/24"),
            "dev",
            &here,
        ],
        vec!["link", "set", &here, "up"],
    ] {
        let out = Command::new("ip").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            lab::show_output(&out)
        );
    }
    let address = format!("10.231.{subnet}.2/24");
    lab::scenario::eventually("host0 has its address", Duration::from_secs(30), || {
        let shown = lab.ok(&["ip", "-br", "address", "show", "dev", "host0"]);
        if shown.contains(&address) {
            Ok(())
        } else {
            Err(shown)
        }
    });
    lab.sh_ok("install -d -m 700 /root/.ssh");
    lab.write("/root/.ssh/authorized_keys", public_key);
    lab.sh_ok("chmod 600 /root/.ssh/authorized_keys && systemctl start ssh");
    lab
}

/// The lab's current generation and how many it has (its own ctm's
/// answer, read inside the lab).
fn generations(lab: &Lab) -> (Option<u64>, usize) {
    let out = lab.ok(&["ctm", "generations", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let list = list.as_array().unwrap();
    let current = list
        .iter()
        .find(|g| g["current"] == true)
        .map(|g| g["generation"]["number"].as_u64().unwrap());
    (current, list.len())
}

fn flat(out: &Output) -> String {
    lab::scenario::flat(out)
}

#[test]
fn a_fleet_of_three_labs_over_ssh() {
    let available = Lab::available();
    if skip_unless(available.is_ok(), &available.err().unwrap_or_default()) {
        return;
    }
    let ssh = which("ssh").and(which("ssh-keygen"));
    if skip_unless(
        ssh.is_some(),
        "the fleet's lab test needs the OpenSSH client (`ssh`, `ssh-keygen`; package openssh-client)",
    ) {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = d.join("id_ed25519");
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "ctm-fleet-test",
            "-f",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", lab::show_output(&out));
    let public = std::fs::read_to_string(d.join("id_ed25519.pub")).unwrap();

    // Three hosts, one after another (this machine has two cores).
    let base = 10 + (std::process::id() % 80) as u8 * 3;
    let labs: Vec<Lab> = (0..3)
        .map(|i| ssh_lab(&format!("fleet-{}", i + 1), base + i, &public))
        .collect();
    let address = |i: usize| format!("10.231.{}.2", base + i as u8);

    // What this machine knows of them: their host keys, written here (so
    // that StrictHostKeyChecking=yes holds), and an ssh configuration.
    let mut known = String::new();
    for (i, lab) in labs.iter().enumerate() {
        let key = lab.read("/etc/ssh/ssh_host_ed25519_key.pub");
        let key: Vec<&str> = key.split_whitespace().take(2).collect();
        known.push_str(&format!("{} {}\n", address(i), key.join(" ")));
    }
    std::fs::write(d.join("known_hosts"), known).unwrap();
    std::fs::write(d.join("empty_known_hosts"), "").unwrap();
    let config = |known_hosts: &str| {
        let mut text = String::new();
        for i in 0..3 {
            text.push_str(&format!("Host lab{}\n    HostName {}\n", i + 1, address(i)));
        }
        text.push_str(&format!(
            "Host *\n    User root\n    IdentityFile {}\n    IdentitiesOnly yes\n    \
             UserKnownHostsFile {}\n    GlobalKnownHostsFile /dev/null\n    LogLevel ERROR\n",
            key.display(),
            d.join(known_hosts).display()
        ));
        text
    };
    std::fs::write(d.join("ssh_config"), config("known_hosts")).unwrap();
    std::fs::write(d.join("ssh_config_unknown"), config("empty_known_hosts")).unwrap();

    let mut fleet = String::from("canary \"lab1\"\n");
    for i in 1..=3 {
        fleet.push_str(&format!(
            "host \"lab{i}\" {{\n    ssh \"lab{i}\"\n    file \"lab{i}.kdl\"\n    tags \"lab\"\n{}}}\n",
            if i == 3 { "    confirm-timeout 45\n" } else { "" }
        ));
    }
    std::fs::write(d.join("fleet.kdl"), &fleet).unwrap();
    let write_host =
        |i: usize, text: &str| std::fs::write(d.join(format!("lab{i}.kdl")), text).unwrap();
    let fleet_cmd = |args: &[&str], config: &str| {
        let mut all = vec!["fleet"];
        all.extend_from_slice(args);
        all.extend(["--ssh-config", config]);
        let t = Instant::now();
        let out = ctm_at(&all, d);
        eprintln!(
            "ctm {} took {:.1} s (exit {:?})\n{}",
            all.join(" "),
            t.elapsed().as_secs_f64(),
            out.status.code(),
            lab::show_output(&out)
        );
        out
    };
    let config_path = d.join("ssh_config").display().to_string();
    let unknown_path = d.join("ssh_config_unknown").display().to_string();
    let all_on = |expect: (Option<u64>, usize)| {
        for lab in &labs {
            assert_eq!(generations(lab), expect, "lab {}", lab.name());
        }
    };

    // The plan shows all three; nothing is applied yet.
    for i in 1..=3 {
        write_host(i, V1);
    }
    let out = fleet_cmd(&["plan", "fleet.kdl"], &config_path);
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for i in 1..=3 {
        assert!(
            text.contains(&format!("lab{i} (lab{i}) (host on generation none)")),
            "{text}"
        );
    }
    assert!(text.contains("Fleet: 3 of 3 hosts would change"), "{text}");
    all_on((None, 0));

    // Apply, the canary first: all three switch and are confirmed.
    let out = fleet_cmd(&["apply", "fleet.kdl", "--yes"], &config_path);
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("Canary: lab1 …"), "{text}");
    assert!(text.contains("Next: lab2, lab3 …"), "{text}");
    assert!(
        text.contains("lab2: Confirming generation 1 over a new SSH connection …"),
        "{text}"
    );
    assert!(
        text.contains("lab3: Confirmed: the host stays on generation 1."),
        "{text}"
    );
    all_on((Some(1), 1));
    for lab in &labs {
        let timer = lab.run(&["systemctl", "is-active", "ctm-revert.timer"]);
        assert!(!timer.status.success(), "a revert timer is left");
    }
    // The lock files came back beside the host files.
    assert!(d.join("lab1.kdl.lock").exists());

    // The fleet page of `ctm serve --fleet` reaches them too.
    let web = Served::start(d, &config_path);
    let hosts = web.call("GET", "/api/fleet");
    for (i, host) in hosts["hosts"].as_array().unwrap().iter().enumerate() {
        assert_eq!(host["host"], format!("lab{}", i + 1), "{hosts:#}");
        assert_eq!(host["generation"]["number"], 1, "{hosts:#}");
        assert_eq!(host["drift"], 0, "{hosts:#}");
        assert_eq!(host["last_apply"]["outcome"], "switched", "{hosts:#}");
    }
    let plan = web.call("POST", "/api/fleet/plan");
    assert_eq!(plan["would_change"], false, "{plan:#}");
    drop(web);

    let out = fleet_cmd(&["plan", "fleet.kdl", "--on", "lab"], &config_path);
    assert_eq!(out.status.code(), Some(0), "{}", flat(&out));

    // With a host key this machine does not know, nothing changes.
    for i in 1..=3 {
        write_host(i, &v2());
    }
    let out = fleet_cmd(&["apply", "fleet.kdl", "--yes"], &unknown_path);
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("3 of the fleet's hosts cannot be applied; nothing was changed"),
        "{text}"
    );
    assert!(
        text.contains("its host key is unknown or has changed, and ctm never accepts a host key"),
        "{text}"
    );
    all_on((Some(1), 1));

    // Host 2's health check fails: it rolls itself back, host 1 (the
    // canary, switched and confirmed) is rolled back, host 3 is never
    // touched.
    write_host(2, &v2_broken());
    let out = fleet_cmd(&["apply", "fleet.kdl", "--yes"], &config_path);
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("lab2 failed: no further host is started."),
        "{text}"
    );
    assert!(
        text.contains("lab1: A later host failed: returning to generation 1 …"),
        "{text}"
    );
    assert!(
        text.contains("lab1 lab1 1 1 rolled back (generation 2 undone: a later host failed)"),
        "{text}"
    );
    assert!(text.contains("lab3 lab3 1 1 not started"), "{text}");
    assert!(
        text.contains("lab2 lab2 1 1 failed: health check failed: check command `false` of container app failed"),
        "{text}"
    );
    assert_eq!(generations(&labs[0]), (Some(1), 2));
    assert_eq!(generations(&labs[1]), (Some(1), 1));
    assert_eq!(generations(&labs[2]), (Some(1), 1));
    let runs = fleet::records(&d.join(".ctm-fleet/runs"));
    let last = runs.last().unwrap();
    assert!(!last.succeeded);
    assert_eq!(
        last.hosts[2].outcome,
        HostOutcome::NotStarted {
            generation: Some(1)
        }
    );

    // Host 3 alone, with a change that takes its port 22: the apply goes
    // through on the connection already open, the confirmation cannot
    // get through, and host 3 returns to generation 1 by itself.
    write_host(3, &v3_cuts_ssh());
    let out = fleet_cmd(
        &["apply", "fleet.kdl", "--yes", "--on", "lab3"],
        &config_path,
    );
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("lab3: cannot be reached again over a new SSH connection"),
        "{text}"
    );
    let reverted = Instant::now();
    let deadline = Duration::from_secs(45 + 60);
    loop {
        let (current, count) = generations(&labs[2]);
        if current == Some(1) && count == 2 {
            break;
        }
        assert!(
            reverted.elapsed() < deadline,
            "lab3 did not return to generation 1: {current:?} of {count}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!(
        "lab3 was back on generation 1 {:.0} s after the fleet gave up on it",
        reverted.elapsed().as_secs_f64()
    );
    let table = labs[2].ok(&["nft", "list", "table", "inet", "ctm"]);
    assert!(!table.contains("dport 22"), "{table}");
    write_host(3, &v2());
    let out = fleet_cmd(
        &["status", "fleet.kdl", "--on", "lab3", "--json"],
        &config_path,
    );
    assert_eq!(out.status.code(), Some(0), "{}", flat(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status[0]["generation"]["number"], 1);
    assert_eq!(status[0]["last_apply"]["outcome"], "not-reached-again");

    // A host whose ctm is old is refused; push-binary upgrades it.
    lab_old_ctm(&labs[0], d, &config_path, &fleet_cmd);
    eprintln!(
        "the fleet's lab test took {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

fn lab_old_ctm(lab: &Lab, d: &Path, config: &str, fleet_cmd: &dyn Fn(&[&str], &str) -> Output) {
    lab.write("/opt/old/ctm", "#!/bin/sh\necho 'ctm 0.0.9'\n");
    lab.sh_ok("chmod 755 /opt/old/ctm");
    std::fs::write(
        d.join("old.kdl"),
        "host \"old\" {\n    ssh \"lab1\"\n    file \"lab1.kdl\"\n    ctm \"/opt/old/ctm\"\n}\n",
    )
    .unwrap();
    let before = generations(lab);
    let out = fleet_cmd(&["apply", "old.kdl", "--yes"], config);
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "it runs ctm 0.0.9, which this ctm {} cannot drive",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    assert_eq!(generations(lab), before);
    let out = fleet_cmd(&["push-binary", "old.kdl"], config);
    let text = flat(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("installed at /opt/old/ctm (it ran 0.0.9)"),
        "{text}"
    );
    let ours = ctm::fs::sha256_hex(&std::fs::read(env!("CARGO_BIN_EXE_ctm")).unwrap());
    let theirs = lab.ok(&["sha256sum", "/opt/old/ctm"]);
    assert!(theirs.starts_with(&ours), "{theirs} is not {ours}");
    let out = fleet_cmd(&["plan", "old.kdl"], config);
    assert_ne!(out.status.code(), Some(1), "{}", flat(&out));
    let out = fleet_cmd(&["push-binary", "old.kdl"], config);
    assert!(flat(&out).contains(&format!("runs ctm {} already", env!("CARGO_PKG_VERSION"))));
}

/// `ctm serve --fleet fleet.kdl` in `dir`, on a port of its own; stopped
/// when dropped.
struct Served {
    child: std::process::Child,
    address: String,
    token: String,
    _root: tempfile::TempDir,
}

impl Served {
    fn start(dir: &Path, ssh_config: &str) -> Served {
        use std::io::BufRead as _;
        let root = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ctm"))
            .args(["serve", "--fleet", "fleet.kdl", "--ssh-config", ssh_config])
            .args(["--listen", "127.0.0.1:0", "--root"])
            .arg(root.path())
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let address = loop {
            let line = lines
                .next()
                .expect("ctm serve printed its address")
                .unwrap();
            if let Some((_, url)) = line.split_once("listening on http://") {
                break url.trim().trim_end_matches('/').to_string();
            }
        };
        let token = std::fs::read_to_string(root.path().join("var/lib/ctm/web-token")).unwrap();
        Served {
            child,
            address,
            token: token.trim().to_string(),
            _root: root,
        }
    }

    /// One request of the API; its JSON answer, which must be 200.
    fn call(&self, method: &str, path: &str) -> serde_json::Value {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(&self.address).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.address, self.token
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "{method} {path}: {answer}"
        );
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}
