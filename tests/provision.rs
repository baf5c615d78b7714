//! Provisioning end to end, in labs (`tests/lab/`, docs/lab.md): a host
//! file that asks for SSH access, Docker or nested containers gives
//! containers where those work, checked from outside with the real tools
//! (`ssh`, `docker`, `machinectl`), and applying again runs nothing.
//!
//! A lab has no route to a mirror, so what the steps would install is in
//! the lab's guest image already (the lab rootfs has openssh-server,
//! docker.io and systemd-container, their services disabled): the package
//! steps find their packages installed, and the steps that enable and
//! configure them run for real.

#[path = "lab/mod.rs"]
mod lab;
mod support;

use std::time::Duration;

use lab::Lab;
use lab::scenario::*;
use support::*;

fn lab_unavailable() -> bool {
    let available = Lab::available();
    skip_unless(available.is_ok(), &available.err().unwrap_or_default())
}

/// One dual-stack network and the guest image; `containers` goes after.
fn host(containers: &str) -> String {
    format!(
        r#"
host "lab" {{
    uplink "host0"
}}

image "guest" {{
    directory "/srv/images/guest"
}}

network "lan" {{
    bridge "br-lan"
    ipv4 "10.42.0.1/24" {{ nat; }}
    ipv6 "fd42:42::1/64"
}}

template "base" {{
    image "guest"
    bind "/usr" read-only=#true          // the guest image has no /usr of its own
}}
{containers}"#
    )
}

/// A fresh ed25519 key pair in the lab, made by the test; returns the
/// public key's line.
fn key_pair(lab: &Lab, path: &str) -> String {
    lab.ok(&[
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "test@lab",
        "-f",
        path,
    ]);
    lab.read(format!("{path}.pub")).trim().to_string()
}

/// `hostname`, run over SSH as root at `address`.
fn ssh(lab: &Lab, key: &str, address: &str) -> Result<String, String> {
    ssh_run(lab, key, &format!("root@{address}"), "hostname")
}

/// `command`, run over SSH at `destination` (`user@address`) with `key`;
/// its output, trimmed.
fn ssh_run(lab: &Lab, key: &str, destination: &str, command: &str) -> Result<String, String> {
    let out = lab.run(&[
        "ssh",
        "-i",
        key,
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=3",
        destination,
        command,
    ]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(lab::show_output(&out))
    }
}

fn ssh_container(key: &str) -> String {
    host(&format!(
        r#"
container "shell" {{
    from "base"
    network "lan" ipv4="10.42.0.10" ipv6="fd42:42::10"
    ssh {{
        authorized-key "{key}"
    }}
}}
"#
    ))
}

/// The steps of the apply that made generation `n` that ran, for
/// container `name`, as `provisioned.json` records them.
fn steps_that_ran(lab: &Lab, n: u64, name: &str) -> Vec<String> {
    let text = lab.read(format!("/var/lib/ctm/generations/{n}/provisioned.json"));
    let records: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("provisioned.json of generation {n}: {e}"));
    records[name]
        .as_array()
        .unwrap_or_else(|| panic!("no records for {name} in generation {n}: {records}"))
        .iter()
        .filter(|r| r["ran"] == true)
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Scenarios 1 and 4: SSH with a key made by the test, over IPv4 and
/// IPv6; applying again runs nothing; a new key runs only its step,
/// without restarting or recreating the container.
#[test]
fn ssh_access_with_the_configured_key_and_nothing_more_on_reapply() {
    if lab_unavailable() {
        return;
    }
    let lab = lab_with("provision-ssh", "");
    let first = key_pair(&lab, "/root/first");
    lab.write("/root/host.kdl", ssh_container(&first));
    let out = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    for step in [
        "generate the SSH host keys",
        "write /root/.ssh/authorized_keys",
        "enable and start ssh.service",
    ] {
        assert!(out.contains(step), "{step} did not run:\n{out}");
    }
    assert_eq!(
        steps_that_ran(&lab, 1, "shell"),
        [
            "rootfs",
            "networkd",
            "hosts",
            "ssh-host-keys",
            "ssh-authorized-keys",
            "ssh-enabled"
        ],
        "openssh-server is in the image: its install step must find it there"
    );
    for address in ["10.42.0.10", "fd42:42::10"] {
        eventually(
            &format!("ssh root@{address}"),
            Duration::from_secs(30),
            || {
                let hostname = ssh(&lab, "/root/first", address)?;
                assert_eq!(hostname, "shell");
                Ok(())
            },
        );
    }
    let mode = lab.run_in(
        "shell",
        &["stat", "--format=%a %U", "/root/.ssh/authorized_keys"],
    );
    assert_eq!(String::from_utf8_lossy(&mode.stdout).trim(), "600 root");

    // Scenario 4: nothing to do, and an apply that does nothing.
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap();
    let started = started_at(&lab, "shell");
    let out = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(out.contains("No changes"), "{out}");
    assert!(
        !lab.path("/var/lib/ctm/generations/2").exists(),
        "a no-op apply made a generation"
    );

    // A new key: only the step that writes it runs.
    let second = key_pair(&lab, "/root/second");
    lab.write("/root/host.kdl", ssh_container(&second));
    let plan = ctm(&lab, &["plan", "/root/host.kdl", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", lab::show_output(&plan));
    let plan = flat(&plan);
    assert!(
        plan.contains("provision container shell (ssh-authorized-keys)"),
        "{plan}"
    );
    assert!(!plan.contains("restart container"), "{plan}");
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert_eq!(steps_that_ran(&lab, 2, "shell"), ["ssh-authorized-keys"]);
    assert_eq!(
        started_at(&lab, "shell"),
        started,
        "the container was restarted for a new key"
    );
    ssh(&lab, "/root/second", "10.42.0.10").expect("the new key logs in");
    assert!(
        ssh(&lab, "/root/first", "10.42.0.10").is_err(),
        "the old key still logs in"
    );
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap();

    // Drift inside: the keys deleted by hand. A plain plan does not look
    // inside containers; --check-steps runs the checks there, and an
    // apply with it runs the step again.
    lab.run_in("shell", &["rm", "/root/.ssh/authorized_keys"]);
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap();
    let out = ctm(
        &lab,
        &[
            "plan",
            "/root/host.kdl",
            "--check-steps",
            "--detailed-exitcode",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", lab::show_output(&out));
    let text = flat(&out);
    assert!(
        text.contains("provision container shell (ssh-authorized-keys)")
            && text.contains("not done inside the container (drift): ssh-authorized-keys"),
        "{text}"
    );
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--check-steps", "--yes"]);
    assert_eq!(steps_that_ran(&lab, 3, "shell"), ["ssh-authorized-keys"]);
    ssh(&lab, "/root/second", "10.42.0.10").expect("the key is back");
    plan_is_empty(&lab, "/root/host.kdl", &["--check-steps"]).unwrap();
}

/// Scenario 2: Docker inside a container: `docker info` works and a tiny
/// image, imported from a tarball made in the container, runs.
#[test]
fn docker_runs_a_container_inside_a_container() {
    if lab_unavailable() {
        return;
    }
    // Seccomp filters stack: a container's own filter cannot allow what
    // the lab's nspawn denies, so the lab must allow what Docker needs
    // too, as a host without nspawn around it does. Nothing else is
    // widened: no capability, and the container is user-namespaced.
    let lab = lab_with_args(
        "provision-docker",
        &host(
            r#"
container "dock" {
    from "base"
    network "lan"
    docker
}
"#,
        ),
        &["--system-call-filter=add_key keyctl bpf"],
    );
    let out = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(out.contains("enable and start docker.service"), "{out}");
    let info = lab.run_in(
        "dock",
        &["docker", "info", "--format", "{{.CgroupVersion}}"],
    );
    assert!(info.status.success(), "{}", lab::show_output(&info));
    assert_eq!(String::from_utf8_lossy(&info.stdout).trim(), "2");
    let run = lab.run_in(
        "dock",
        &[
            "sh",
            "-ec",
            "mkdir -p /tmp/tiny/bin
             cp /usr/bin/busybox /tmp/tiny/bin/busybox
             tar -C /tmp/tiny -c . | docker import - tiny >/dev/null
             docker run --rm --network none tiny /bin/busybox echo hello-from-docker",
        ],
    );
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("hello-from-docker"),
        "{}",
        lab::show_output(&run)
    );
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap();
}

/// Scenario 3: a container with `nested` starts a container of its own,
/// which its machined lists.
#[test]
fn a_nested_container_runs_inside_a_container() {
    if lab_unavailable() {
        return;
    }
    let lab = lab_with(
        "provision-nested",
        &host(
            r#"
container "outer" {
    from "base"
    network "lan"
    nested
}
"#,
        ),
    );
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    // The tiny tree of docs/lab.md, inside `outer`, with `outer`'s /usr.
    let made = lab.run_in(
        "outer",
        &[
            "sh",
            "-ec",
            "G=/var/lib/machines/inner
             mkdir -p $G/usr $G/etc $G/var $G/tmp $G/root /etc/systemd/nspawn
             for d in bin sbin lib lib64; do ln -sfn usr/$d $G/$d; done
             cp /etc/os-release $G/etc/os-release
             touch $G/etc/machine-id
             printf '[Exec]\\nBoot=no\\nParameters=/bin/sleep infinity\\n[Files]\\nBindReadOnly=/usr\\n[Network]\\nVirtualEthernet=yes\\n' \
                 >/etc/systemd/nspawn/inner.nspawn
             machinectl start inner",
        ],
    );
    assert!(made.status.success(), "{}", lab::show_output(&made));
    eventually(
        "machinectl list inside outer",
        Duration::from_secs(30),
        || {
            let out = lab.run_in("outer", &["machinectl", "list", "--no-legend"]);
            let text = String::from_utf8_lossy(&out.stdout);
            if text.lines().any(|l| l.starts_with("inner ")) {
                Ok(())
            } else {
                Err(lab::show_output(&out))
            }
        },
    );
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap();
}

/// Scenario 5: a step that fails (a package no mirror has) fails the
/// apply with the step's output, and the host is back on generation 1.
#[test]
fn a_failing_step_rolls_the_apply_back_with_its_output() {
    if lab_unavailable() {
        return;
    }
    let one = host(
        r#"
container "first" {
    from "base"
    network "lan"
}
"#,
    );
    let lab = lab_with("provision-broken", &one);
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    lab.write(
        "/root/host.kdl",
        one + r#"
container "broken" {
    from "base"
    network "lan"
    packages "ctm-no-such-package"
}
"#,
    );
    let out = ctm(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(!out.status.success(), "{}", lab::show_output(&out));
    let text = flat(&out);
    assert!(
        text.contains("step `packages` of container broken (install the container's packages)"),
        "{text}"
    );
    // apt's own words: the lab has no mirror, so the lists cannot be
    // fetched (or, with a mirror, the package is not in them).
    assert!(
        text.contains("apt-get")
            || text.contains("Unable to locate")
            || text.contains("Failed to fetch"),
        "the step's output is not in the error: {text}"
    );
    assert!(
        text.contains("rolled back: the host is on generation 1 again"),
        "{text}"
    );
    let machines = lab.ok(&["machinectl", "list", "--no-legend", "--no-pager"]);
    assert!(machines.contains("first"), "{machines}");
    assert!(!machines.contains("broken"), "{machines}");
    assert!(
        !lab.path("/var/lib/ctm/generations/2").exists(),
        "the failed apply left its generation"
    );
}

fn two_containers(with_gone: bool) -> String {
    let gone = if with_gone {
        r#"
container "gone" {
    from "base"
    network "lan"
}
"#
    } else {
        ""
    };
    host(&format!(
        r#"
container "keep" {{
    from "base"
    network "lan"
}}
{gone}"#
    ))
}

fn machines(lab: &Lab) -> String {
    lab.ok(&["machinectl", "list", "--no-legend", "--no-pager"])
}

/// A removed container's tree stays unless `--prune` (a rollback puts it
/// back); `ctm destroy` deletes one after asking, and the next apply makes
/// it afresh. Trees ctm did not make are never deleted.
#[test]
fn removed_trees_are_kept_pruned_on_request_and_destroyed_after_asking() {
    if lab_unavailable() {
        return;
    }
    let lab = lab_with("provision-prune", &two_containers(true));
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(lab.path("/var/lib/ctm/rootfs/gone.json").exists());
    let gone = "/var/lib/machines/gone";

    // Pruned, but the apply fails after the tree was set aside: it is back.
    lab.write("/root/host.kdl", two_containers(false));
    let out = lab.run(&[
        "env",
        "CTM_FAULT_ACTION=reload systemd's unit files",
        "ctm",
        "apply",
        "/root/host.kdl",
        "--prune",
        "--yes",
    ]);
    assert!(!out.status.success(), "{}", lab::show_output(&out));
    let text = flat(&out);
    assert!(
        text.contains("rollback: put back the root file system of container gone"),
        "{text}"
    );
    assert!(lab.path(gone).join("etc/os-release").exists());
    assert!(!lab.path("/var/lib/machines/.#gone.ctm-removed").exists());
    eventually("gone running again", Duration::from_secs(30), || {
        let list = machines(&lab);
        list.contains("gone").then_some(()).ok_or(list)
    });

    // Without --prune: stopped, its tree kept, and the plan says so.
    let out = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(out.contains("Kept: the root file systems"), "{out}");
    assert!(out.contains(&format!("gone  ({gone})")), "{out}");
    assert!(lab.path(gone).join("etc/os-release").exists());
    assert!(!machines(&lab).contains("gone"));

    // A leftover of an earlier purge that failed goes with the next one.
    lab.ok(&["mkdir", "-p", "/var/lib/machines/.#old.ctm-removed/etc"]);
    let images = lab.ok(&["machinectl", "list-images", "--no-legend", "--no-pager"]);
    assert!(!images.contains("ctm-removed"), "machined lists {images}");

    let plan = ctm(&lab, &["plan", "/root/host.kdl", "--prune"]);
    let plan = flat(&plan);
    assert!(
        plan.contains(&format!(
            "delete the root file system of container gone ({gone})"
        )),
        "{plan}"
    );
    assert!(plan.contains("this cannot be undone"), "{plan}");
    let out = ctm(
        &lab,
        &[
            "apply",
            "/root/host.kdl",
            "--prune",
            "--confirm-timeout",
            "60",
            "--yes",
        ],
    );
    assert!(!out.status.success());
    assert!(
        flat(&out).contains("--prune cannot be combined with --confirm-timeout"),
        "{}",
        lab::show_output(&out)
    );
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--prune", "--yes"]);
    assert!(!lab.path(gone).exists(), "the pruned tree is still there");
    assert!(!lab.path("/var/lib/machines/.#gone.ctm-removed").exists());
    assert!(!lab.path("/var/lib/machines/.#old.ctm-removed").exists());
    assert!(!lab.path("/var/lib/ctm/rootfs/gone.json").exists());
    let out = ctm_ok(&lab, &["plan", "/root/host.kdl"]);
    assert!(out.contains("No changes") && !out.contains("Kept"), "{out}");

    // destroy asks; without a terminal it wants --yes.
    let out = ctm(&lab, &["destroy", "keep"]);
    assert!(!out.status.success());
    assert!(
        flat(&out).contains("pass --yes"),
        "{}",
        lab::show_output(&out)
    );
    assert!(lab.path("/var/lib/machines/keep").exists());
    let out = ctm_ok(&lab, &["destroy", "keep", "--yes"]);
    assert!(out.contains("made by ctm from image guest"), "{out}");
    assert!(out.contains("it is running: it is stopped first"), "{out}");
    assert!(!lab.path("/var/lib/machines/keep").exists());
    assert!(!machines(&lab).contains("keep"));
    // Still in the host file: the next apply makes it afresh.
    let plan = ctm_ok(&lab, &["plan", "/root/host.kdl"]);
    assert!(plan.contains("start container keep"), "{plan}");
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(lab.path("/var/lib/machines/keep/etc/os-release").exists());
    assert!(machines(&lab).contains("keep"));

    // A tree ctm neither made nor manages is not ctm's to delete.
    lab.ok(&["mkdir", "-p", "/var/lib/machines/stranger/etc"]);
    let out = ctm(&lab, &["destroy", "stranger", "--yes"]);
    assert!(!out.status.success());
    assert!(
        flat(&out).contains("was not made by ctm"),
        "{}",
        lab::show_output(&out)
    );
    assert!(lab.path("/var/lib/machines/stranger/etc").exists());
}

/// A local apt repository in the lab with one tiny package, built by the
/// test (`dpkg-deb`), so that a `packages` step installs something real
/// without a mirror: the lab has no route to one. Its file goes to /opt:
/// the guest containers' /usr is the lab's, bound read-only.
const REPO: &str = "/srv/repo";

fn local_repository(lab: &Lab) {
    lab.ok(&[
        "sh",
        "-ec",
        "R=/srv/repo; P=/tmp/ctm-hello
         mkdir -p $P/DEBIAN $P/opt/ctm-hello $R
         printf 'Package: ctm-hello\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: ctm tests <tests@ctm>\\nDescription: a file for the packages step to install\\n' >$P/DEBIAN/control
         echo hello-from-a-package >$P/opt/ctm-hello/hello
         dpkg-deb --root-owner-group --build $P $R/ctm-hello_1.0_all.deb >/dev/null
         cd $R
         { dpkg-deb --field ctm-hello_1.0_all.deb
           echo \"Filename: ./ctm-hello_1.0_all.deb\"
           echo \"Size: $(stat -c %s ctm-hello_1.0_all.deb)\"
           echo \"SHA256: $(sha256sum ctm-hello_1.0_all.deb | cut -d' ' -f1)\"
           echo; } >Packages
         { echo 'Origin: ctm-tests'; echo \"Date: $(date -Ru)\"; echo 'SHA256:'
           echo \" $(sha256sum Packages | cut -d' ' -f1) $(stat -c %s Packages) Packages\"; } >Release",
    ]);
}

fn app_container(key: &str, packages: bool) -> String {
    let packages = if packages {
        r#"packages "ctm-hello""#
    } else {
        ""
    };
    let with_dns = host("").replace(
        "    ipv6 \"fd42:42::1/64\"\n",
        "    ipv6 \"fd42:42::1/64\"\n    dns \"10.42.0.1\" \"fd42:42::1\"\n",
    );
    with_dns
        + &format!(
            r#"
container "app" {{
    from "base"
    network "lan" ipv4="10.42.0.11"
    environment GREETING="hello" STAGE="test"
    bind "/run/data" "/data" idmap=#true    // tmpfs: the lab's own root (overlayfs) cannot be ID-mapped
    bind "/run/plain" "/plain"
    bind "{REPO}" read-only=#true
    ssh {{
        user "deploy"
        authorized-key "{key}"
    }}
    {packages}
}}
"#
        )
}

/// The remaining parts of a container's settings, checked from inside it:
/// the network's `dns` in /etc/resolv.conf,
/// a named SSH `user` (created, logs in with the key, right modes),
/// `environment` (in the init process), extra `bind` mounts (read-write
/// and read-only), and a `packages` step that installs a real package
/// from a local repository; then applying again runs nothing.
#[test]
fn user_environment_binds_and_packages_hold_inside_the_container() {
    if lab_unavailable() {
        return;
    }
    let lab = lab_with("provision-app", "");
    local_repository(&lab);
    lab.ok(&["mkdir", "-p", "/run/data", "/run/plain"]);
    lab.write("/run/data/marker", "from-the-host\n");
    let key = key_pair(&lab, "/root/deploy");
    lab.write("/root/host.kdl", app_container(&key, false));
    ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);

    eventually("ssh deploy@10.42.0.11", Duration::from_secs(30), || {
        let text = ssh_run(
            &lab,
            "/root/deploy",
            "deploy@10.42.0.11",
            "id -un; cat /data/marker",
        )?;
        assert_eq!(text, "deploy\nfrom-the-host");
        Ok(())
    });
    let modes = lab.run_in(
        "app",
        &[
            "stat",
            "--format=%a %U",
            "/home/deploy/.ssh",
            "/home/deploy/.ssh/authorized_keys",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&modes.stdout).trim(),
        "700 deploy\n600 deploy",
        "{}",
        lab::show_output(&modes)
    );
    // Written by its step, and kept by nspawn (ResolvConf=off) across a
    // restart.
    for restarted in [false, true] {
        if restarted {
            ctm_ok(&lab, &["restart", "app"]);
        }
        let resolv = lab.run_in("app", &["cat", "/etc/resolv.conf"]);
        assert_eq!(
            String::from_utf8_lossy(&resolv.stdout),
            "# Generated by ctm from the network's `dns`.\nnameserver 10.42.0.1\nnameserver fd42:42::1\n",
            "restarted: {restarted}"
        );
    }
    let environ = lab.run_in("app", &["cat", "/proc/1/environ"]);
    let environ = String::from_utf8_lossy(&environ.stdout).replace('\0', "\n");
    for variable in ["GREETING=hello", "STAGE=test"] {
        assert!(
            environ.lines().any(|l| l == variable),
            "{variable} not in the init process's environment:\n{environ}"
        );
    }
    // ID-mapped: host root's directory is container root's, both ways.
    let written = lab.run_in("app", &["sh", "-c", "echo from-inside >/data/back"]);
    assert!(written.status.success(), "{}", lab::show_output(&written));
    assert_eq!(lab.read("/run/data/back"), "from-inside\n");
    let owner = lab.ok(&["stat", "--format=%u", "/run/data/back"]);
    assert_eq!(owner.trim(), "0");
    // Not ID-mapped: the user-namespaced container sees host root's
    // directory as nobody's, and cannot write to it.
    let plain = lab.run_in("app", &["stat", "--format=%U", "/plain"]);
    assert_eq!(String::from_utf8_lossy(&plain.stdout).trim(), "nobody");
    let refused = lab.run_in("app", &["touch", "/plain/nope"]);
    assert!(
        !refused.status.success(),
        "wrote to a host root's directory"
    );
    let refused = lab.run_in("app", &["touch", &format!("{REPO}/nope")]);
    assert!(!refused.status.success(), "the read-only bind took a write");

    // Packages: the container's apt knows only the local repository, as a
    // host with its own mirror would have it.
    lab.run_in(
        "app",
        &[
            "sh",
            "-ec",
            "rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*
             echo 'deb [trusted=yes] file:/srv/repo ./' >/etc/apt/sources.list.d/local.list",
        ],
    );
    lab.write("/root/host.kdl", app_container(&key, true));
    let out = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(out.contains("install the container's packages"), "{out}");
    let installed = lab.run_in("app", &["cat", "/opt/ctm-hello/hello"]);
    assert_eq!(
        String::from_utf8_lossy(&installed.stdout).trim(),
        "hello-from-a-package",
        "{}",
        lab::show_output(&installed)
    );
    assert_eq!(steps_that_ran(&lab, 2, "app"), ["packages"]);
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap();
}

/// A tarball of the guest image, packed with zstd in the lab; returns its
/// SHA-256. `extra` is written into the packed tree as /etc/ctm-version.
fn pack_guest(lab: &Lab, tarball: &str, extra: &str) -> String {
    lab.ok(&[
        "sh",
        "-ec",
        &format!(
            "rm -rf /tmp/pack; cp -a {GUEST} /tmp/pack
             echo {extra} >/tmp/pack/etc/ctm-version
             tar --numeric-owner -C /tmp/pack -c . | zstd -q -o {tarball}
             rm -rf /tmp/pack"
        ),
    ]);
    lab.ok(&["sha256sum", tarball])
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn tarball_host(tarball: &str, sha256: &str, containers: &[&str]) -> String {
    let mut text = format!(
        r#"
host "lab" {{
    uplink "host0"
}}

image "packed" {{
    tarball "{tarball}" sha256="{sha256}"
}}

network "lan" {{
    bridge "br-lan"
    ipv4 "10.42.0.1/24" {{ nat; }}
}}
"#
    );
    for name in containers {
        text.push_str(&format!(
            r#"
container "{name}" {{
    image "packed"
    network "lan"
    bind "/usr" read-only=#true
}}
"#
        ));
    }
    text
}

/// A tarball image: its SHA-256 is checked (a wrong one fails the apply,
/// which rolls back), it is unpacked into the image store once, and a new
/// tarball makes a new image for new containers while an existing
/// container's tree stays as it is.
#[test]
fn a_tarball_image_is_verified_unpacked_once_and_never_rewrites_a_tree() {
    if lab_unavailable() {
        return;
    }
    let lab = lab_with("provision-tarball", "");
    let first = pack_guest(&lab, "/root/guest-1.tar.zst", "1");
    lab.write(
        "/root/host.kdl",
        tarball_host("/root/guest-1.tar.zst", &"0".repeat(64), &["one"]),
    );
    let out = ctm(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(!out.status.success(), "{}", lab::show_output(&out));
    let text = flat(&out);
    assert!(
        text.contains(&format!(
            "/root/guest-1.tar.zst has SHA-256 {first}, not the {} the host file expects",
            "0".repeat(64)
        )),
        "{text}"
    );
    assert!(text.contains("rolled back"), "{text}");
    assert!(!lab.path("/var/lib/machines/one").exists());

    lab.write(
        "/root/host.kdl",
        tarball_host("/root/guest-1.tar.zst", &first, &["one"]),
    );
    let out = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(out.contains("building image packed into"), "{out}");
    assert!(out.contains("built image packed in"), "{out}");
    assert!(machines(&lab).contains("one"));
    lab.run_in("one", &["touch", "/root/one-was-here"]);

    // A new tarball: a new image in the store, used by the new container
    // only; `one` keeps its tree, and is not restarted.
    let second = pack_guest(&lab, "/root/guest-2.tar.zst", "2");
    let started = started_at(&lab, "one");
    lab.write(
        "/root/host.kdl",
        tarball_host("/root/guest-2.tar.zst", &second, &["one", "two"]),
    );
    let out = ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(out.contains("building image packed into"), "{out}");
    let images = || lab.ok(&["sh", "-c", "ls -d /var/lib/ctm/images/*/"]);
    assert_eq!(images().lines().count(), 2, "{}", images());
    assert_eq!(lab.read("/var/lib/machines/two/etc/ctm-version"), "2\n");
    assert_eq!(lab.read("/var/lib/machines/one/etc/ctm-version"), "1\n");
    assert!(lab.path("/var/lib/machines/one/root/one-was-here").exists());
    assert_eq!(started_at(&lab, "one"), started, "one was restarted");
    plan_is_empty(&lab, "/root/host.kdl", &[]).unwrap();

    // Once no generation kept names the first tarball, gc removes its
    // image; the trees made from it stay.
    let out = ctm_ok(&lab, &["gc", "--keep", "1"]);
    assert!(out.contains("Removed image"), "{out}");
    assert_eq!(images().lines().count(), 1, "{}", images());
    assert_eq!(lab.read("/var/lib/machines/one/etc/ctm-version"), "1\n");
}
