//! Provisioning steps: what must happen to a container's root file system
//! or inside the running container, as data.
//!
//! Each step has a check that says whether it is already done, so applying
//! twice runs nothing the second time. Executing them belongs to the apply
//! engine; here they are only compiled, in order, and written as
//! `etc/ctm/machines/NAME/provision.json` so that a plan shows a changed
//! step like any changed file. Commands are argument vectors, never shell
//! text: a value from the host file cannot become shell syntax.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Artifacts, Owner};
use crate::model::{self, Container, Host, Image, ImageSource, Name, PackageName, RootMode};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Stable identifier within the container, e.g. `ssh-authorized-keys`.
    pub id: String,
    pub description: String,
    pub phase: Phase,
    pub check: Check,
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// On the host, before the container first boots: paths are the
    /// host's (the root file system is `/var/lib/machines/NAME`).
    BeforeBoot,
    /// Inside the running container.
    Running,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Check {
    /// Done if this path exists (on the host before boot, in the container
    /// when running).
    PathExists { path: String },
    /// Done if this file has exactly this content and mode.
    FileContent {
        path: String,
        content: String,
        mode: u32,
    },
    /// Done if this command exits 0.
    Command { argv: Vec<String> },
    /// Done if dpkg reports every one of these packages as `installed`
    /// (not merely known: `dpkg-query --show` also succeeds for packages
    /// removed with their configuration left behind).
    PackagesInstalled { packages: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Action {
    /// Create the root file system from an image (built first, if it is
    /// built and not in the image store yet).
    CreateRootfs {
        image: String,
        source: RootfsSource,
        /// How the tree is made from the image (`root`); the plan says
        /// which kind `auto` becomes on this host.
        #[serde(default, skip_serializing_if = "RootMode::is_auto")]
        root: RootMode,
    },
    /// Write a file (creating its directory with mode 0700), owned by `owner`.
    WriteFile {
        path: String,
        content: String,
        mode: u32,
        owner: String,
    },
    /// Install packages with apt: refresh the package lists (a fresh
    /// image may have none), then install without recommends.
    InstallPackages { packages: Vec<String> },
    /// Run a command with these extra environment variables.
    Command {
        argv: Vec<String>,
        env: Vec<(String, String)>,
    },
}

/// Where an image comes from, as the step executor needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum RootfsSource {
    /// A tree on the host, copied as it is.
    Directory { path: String },
    /// A tarball on the host, checked against its SHA-256 if given.
    Tarball {
        path: String,
        sha256: Option<String>,
    },
    /// Pulled from a registry: `reference` with its digest when pinned
    /// (else its tag is resolved when pulled).
    Oci {
        reference: String,
        credentials: Option<String>,
        insecure: bool,
    },
    /// An OCI image layout in a tar file on the host.
    OciArchive { path: String },
    /// Built with debootstrap; `mirror: None` means the host's own.
    Debootstrap {
        suite: String,
        mirror: Option<String>,
        variant: Option<String>,
        packages: Vec<String>,
    },
    /// Built from image `parent` (defined by `from`), step by step.
    Build {
        parent: String,
        from: Box<RootfsSource>,
        network: bool,
        steps: Vec<BuildStep>,
    },
}

/// One step of [`RootfsSource::Build`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum BuildStep {
    /// `/bin/sh -c COMMAND` in a container of the image so far.
    Run { command: String },
    /// `source` (on the host, absolute) copied to `destination` in the
    /// image.
    Copy { source: String, destination: String },
    /// An environment variable for the `run` steps after it.
    Env { name: String, value: String },
}

impl RootfsSource {
    /// The definition of `image`; `images` are the host's, where a build
    /// finds its parent. `None` if a parent is missing, which validation
    /// refuses (as it refuses a cycle).
    pub fn of(image: &Image, images: &BTreeMap<Name, Image>) -> Option<RootfsSource> {
        Some(match &image.source {
            ImageSource::Build {
                from,
                network,
                steps,
            } => RootfsSource::Build {
                parent: from.to_string(),
                from: Box::new(RootfsSource::of(images.get(from)?, images)?),
                network: *network,
                steps: steps
                    .iter()
                    .map(|step| match step {
                        model::BuildStep::Run { command } => BuildStep::Run {
                            command: command.clone(),
                        },
                        model::BuildStep::Copy {
                            source,
                            destination,
                            host_path,
                        } => BuildStep::Copy {
                            // Without the engine's path, the relative one,
                            // which the executor refuses.
                            source: host_path.clone().unwrap_or_else(|| source.to_string()),
                            destination: destination.to_string(),
                        },
                        model::BuildStep::Env { name, value } => BuildStep::Env {
                            name: name.as_str().to_string(),
                            value: value.clone(),
                        },
                    })
                    .collect(),
            },
            ImageSource::Directory { path } => RootfsSource::Directory {
                path: path.to_string(),
            },
            ImageSource::Tarball { path, sha256 } => RootfsSource::Tarball {
                path: path.to_string(),
                sha256: sha256.as_ref().map(|s| s.as_str().to_string()),
            },
            ImageSource::Oci {
                reference,
                credentials,
                insecure,
            } => RootfsSource::Oci {
                reference: reference.to_string(),
                credentials: credentials.as_ref().map(|c| c.to_string()),
                insecure: *insecure,
            },
            ImageSource::OciArchive { path } => RootfsSource::OciArchive {
                path: path.to_string(),
            },
            ImageSource::Debootstrap {
                suite,
                mirror,
                variant,
            } => RootfsSource::Debootstrap {
                suite: suite.as_str().to_string(),
                mirror: mirror.as_ref().map(|m| m.as_str().to_string()),
                variant: variant.as_ref().map(|v| v.as_str().to_string()),
                packages: image
                    .packages
                    .iter()
                    .map(|p| p.as_str().to_string())
                    .collect(),
            },
        })
    }
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn packages_step(id: &str, description: String, packages: &[&PackageName]) -> Step {
    let names: Vec<String> = packages.iter().map(|p| p.as_str().to_string()).collect();
    Step {
        id: id.into(),
        description,
        phase: Phase::Running,
        check: Check::PackagesInstalled {
            packages: names.clone(),
        },
        action: Action::InstallPackages { packages: names },
    }
}

fn enable_step(id: &str, unit: &str) -> Step {
    Step {
        id: id.into(),
        description: format!("enable and start {unit}"),
        phase: Phase::Running,
        check: Check::Command {
            argv: argv(&["systemctl", "is-enabled", "--quiet", unit]),
        },
        action: Action::Command {
            argv: argv(&["systemctl", "enable", "--now", unit]),
            env: Vec::new(),
        },
    }
}

/// The steps for one container, in the order they must run. `image` is
/// the container's image (validation made sure it exists).
/// The first step of every container: its root file system, made from
/// `image` (whose definition is `source`) unless it exists.
pub fn rootfs_step(container: &str, image: &str, source: RootfsSource, root: RootMode) -> Step {
    Step {
        id: "rootfs".into(),
        description: format!("create the root file system from image {image}"),
        phase: Phase::BeforeBoot,
        check: Check::PathExists {
            path: crate::layout::machine_path(container),
        },
        action: Action::CreateRootfs {
            image: image.to_string(),
            source,
            root,
        },
    }
}

/// `linked`: the container is an end of a `link`, whose interface its
/// networkd configures as it does `host0`.
pub fn steps(
    container: &Container,
    source: RootfsSource,
    dns: &[IpAddr],
    linked: bool,
) -> Vec<Step> {
    let mut steps = vec![rootfs_step(
        container.name.as_str(),
        container.image.as_str(),
        source,
        container.root,
    )];
    if container.network.is_some() || linked {
        steps.push(enable_step("networkd", "systemd-networkd.service"));
    }
    if container.network.is_some() {
        // The names of the containers on its network (compile/names.rs).
        let hosts = format!("{}/hosts", crate::layout::NETWORK_DIR_INSIDE);
        steps.push(Step {
            id: "hosts".into(),
            description: format!("link /etc/hosts to {hosts}"),
            phase: Phase::Running,
            check: Check::Command {
                argv: argv(&[
                    "sh",
                    "-c",
                    &format!("[ \"$(readlink /etc/hosts)\" = {hosts} ]"),
                ]),
            },
            action: Action::Command {
                argv: argv(&["ln", "-sfn", &hosts, "/etc/hosts"]),
                env: Vec::new(),
            },
        });
    }
    if !dns.is_empty() {
        // The file itself, not only networkd's DNS=: that reaches
        // /etc/resolv.conf only through systemd-resolved, which a minimal
        // image lacks.
        let mut text = String::from("# Generated by ctm from the network's `dns`.\n");
        for server in dns {
            text.push_str(&format!("nameserver {server}\n"));
        }
        let path = "/etc/resolv.conf".to_string();
        steps.push(Step {
            id: "resolver".into(),
            description: format!("write {path}"),
            phase: Phase::Running,
            check: Check::FileContent {
                path: path.clone(),
                content: text.clone(),
                mode: 0o644,
            },
            action: Action::WriteFile {
                path,
                content: text,
                mode: 0o644,
                owner: "root".into(),
            },
        });
    }
    if !container.packages.is_empty() {
        let packages: Vec<&PackageName> = container.packages.iter().collect();
        steps.push(packages_step(
            "packages",
            "install the container's packages".into(),
            &packages,
        ));
    }
    if let Some(ssh) = &container.ssh {
        let server = PackageName::trusted(PackageName::SSH_SERVER);
        steps.push(packages_step(
            "ssh-server",
            "install the OpenSSH server".into(),
            &[&server],
        ));
        // Host keys belong to the container: an image that carries keys
        // would give every container made from it the same identity.
        steps.push(Step {
            id: "ssh-host-keys".into(),
            description: "generate the SSH host keys".into(),
            phase: Phase::Running,
            check: Check::PathExists {
                path: "/etc/ssh/ssh_host_ed25519_key".into(),
            },
            action: Action::Command {
                argv: argv(&["ssh-keygen", "-A"]),
                env: Vec::new(),
            },
        });
        let home = if ssh.user.as_str() == "root" {
            "/root".to_string()
        } else {
            steps.push(Step {
                id: "ssh-user".into(),
                description: format!("create user {}", ssh.user.as_str()),
                phase: Phase::Running,
                check: Check::Command {
                    argv: argv(&["id", "--user", ssh.user.as_str()]),
                },
                action: Action::Command {
                    argv: argv(&[
                        "useradd",
                        "--create-home",
                        "--shell",
                        "/bin/bash",
                        ssh.user.as_str(),
                    ]),
                    env: Vec::new(),
                },
            });
            format!("/home/{}", ssh.user.as_str())
        };
        let mut keys = String::new();
        for key in &ssh.authorized_keys {
            keys.push_str(key.as_str());
            keys.push('\n');
        }
        let path = format!("{home}/.ssh/authorized_keys");
        steps.push(Step {
            id: "ssh-authorized-keys".into(),
            description: format!("write {path}"),
            phase: Phase::Running,
            check: Check::FileContent {
                path: path.clone(),
                content: keys.clone(),
                mode: 0o600,
            },
            action: Action::WriteFile {
                path,
                content: keys,
                mode: 0o600,
                owner: ssh.user.as_str().to_string(),
            },
        });
        steps.push(enable_step("ssh-enabled", "ssh.service"));
    }
    if container.docker {
        let docker = PackageName::trusted(PackageName::DOCKER);
        steps.push(packages_step("docker", "install Docker".into(), &[&docker]));
        steps.push(enable_step("docker-enabled", "docker.service"));
    }
    if container.nested {
        let nspawn = PackageName::trusted("systemd-container");
        steps.push(packages_step(
            "nested",
            "install systemd-nspawn for nested containers".into(),
            &[&nspawn],
        ));
    }
    steps
}

/// Where a container's compiled steps are installed, relative to the root.
pub fn steps_path(container: &str) -> String {
    format!("etc/ctm/machines/{container}/provision.json")
}

pub fn container(host: &Host, container: &Container, out: &mut Artifacts) {
    // Validation refuses a container whose image is not defined, and a
    // build whose parent is not.
    let Some(source) = host
        .images
        .get(&container.image)
        .and_then(|image| RootfsSource::of(image, &host.images))
    else {
        return;
    };
    let dns = container
        .network
        .as_ref()
        .and_then(|a| host.networks.get(&a.network))
        .map_or(&[][..], |n| n.dns.as_slice());
    out.file(
        steps_path(container.name.as_str()),
        Owner::Container(container.name.clone()),
        steps_json(&steps(
            container,
            source,
            dns,
            host.link_ends(&container.name).next().is_some(),
        )),
    );
}

/// The steps as `provision.json` holds them: a JSON array with one step
/// a line, so that a changed step is one changed line in a plan's diff.
/// Not indented: a plan hashes and compares every container's steps, and
/// indentation was most of their bytes.
pub fn steps_json(steps: &[Step]) -> String {
    let mut json = Vec::with_capacity(steps.len() * 320);
    json.push(b'[');
    for (i, step) in steps.iter().enumerate() {
        json.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
        // Plain structs with string keys: serialization has no way to fail.
        serde_json::to_writer(&mut json, step).expect("provisioning steps serialize to JSON");
    }
    json.extend_from_slice(b"\n]\n");
    String::from_utf8(json).expect("serde_json writes UTF-8")
}
