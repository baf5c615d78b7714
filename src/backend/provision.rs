//! Running provisioning steps (`compile::provision`): each step's check
//! first, its action only if the check says it is not done.
//!
//! Before boot, steps work on the host: creating a container's root file
//! system from its image, building the image into ctm's image store first
//! when it is built (debootstrap) or unpacked (tarball). Once the
//! container runs, steps run inside it ([`super::exec`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::exec::{self, Ran};
use super::oci;
use super::{Progress, StepRecord, SystemError};
use crate::compile::provision::{Action, Check, Phase, RootfsSource, Step};
use crate::fs;
use crate::layout::under_root;
use crate::model::RootMode;

/// Where built and unpacked images are kept, under the root.
pub use crate::layout::IMAGE_STORE;
/// How long one step (a check or an action) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

fn error(what: impl Into<String>, why: impl Into<String>) -> SystemError {
    SystemError {
        what: what.into(),
        why: why.into(),
    }
}

/// The steps compiled for a container, as installed under `root`.
pub fn read_steps(root: &Path, name: &str) -> Result<Vec<Step>, SystemError> {
    let path = root.join(crate::compile::provision::steps_path(name));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| error(format!("reading {}", path.display()), e.to_string()))?;
    serde_json::from_str(&text)
        .map_err(|e| error(format!("reading {}", path.display()), e.to_string()))
}

/// How much of a step's output a generation keeps.
const KEPT_LINES: usize = 200;

fn record(step: &Step, ran: bool, output: String, started: Instant) -> StepRecord {
    StepRecord {
        id: step.id.clone(),
        description: step.description.clone(),
        ran,
        millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        output,
    }
}

/// Runs the before-boot steps of container `name`.
pub fn before_boot(
    root: &Path,
    name: &str,
    steps: &[Step],
    progress: Progress<'_>,
) -> Result<Vec<StepRecord>, SystemError> {
    let mut outcomes = Vec::new();
    for step in steps.iter().filter(|s| s.phase == Phase::BeforeBoot) {
        let started = Instant::now();
        let done = match &step.check {
            Check::PathExists { path } => under_root(root, path).exists(),
            other => {
                return Err(error(
                    format!("step {} of container {name}", step.id),
                    format!("a {other:?} check cannot run before the container boots"),
                ));
            }
        };
        if !done {
            progress(&format!("{name}: {}", step.description));
            match &step.action {
                Action::CreateRootfs {
                    image,
                    source,
                    root: mode,
                } => {
                    let Check::PathExists { path } = &step.check else {
                        unreachable!("checked above")
                    };
                    create_rootfs(
                        root,
                        name,
                        image,
                        source,
                        *mode,
                        &under_root(root, path),
                        progress,
                    )?;
                }
                other => {
                    return Err(error(
                        format!("step {} of container {name}", step.id),
                        format!("a {other:?} action cannot run before the container boots"),
                    ));
                }
            }
        }
        outcomes.push(record(step, !done, String::new(), started));
    }
    Ok(outcomes)
}

/// Runs the steps that need the running container whose leader is `leader`.
pub fn running(
    leader: u32,
    name: &str,
    steps: &[Step],
    progress: Progress<'_>,
) -> Result<Vec<StepRecord>, SystemError> {
    let mut outcomes = Vec::new();
    for step in steps.iter().filter(|s| s.phase == Phase::Running) {
        let started = Instant::now();
        let what = || {
            format!(
                "step `{}` of container {name} ({})",
                step.id, step.description
            )
        };
        let done = check_inside(leader, &step.check).map_err(|e| error(what(), e.to_string()))?;
        let mut output = String::new();
        if !done {
            progress(&format!("{name}: {}", step.description));
            let mut echo = |line: &str| progress(&format!("{name}:   {line}"));
            let ran = match &step.action {
                Action::Command { argv, env } => {
                    exec::in_container(leader, argv, env, STEP_TIMEOUT, &mut echo)?
                }
                Action::InstallPackages { packages } => {
                    install_packages(leader, packages, &mut echo)?
                }
                Action::WriteFile {
                    path,
                    content,
                    mode,
                    owner,
                } => write_inside(leader, path, content, *mode, owner, &mut echo)?,
                Action::CreateRootfs { .. } => {
                    return Err(error(what(), "a root file system is created before boot"));
                }
            };
            if !ran.success() {
                return Err(error(
                    what(),
                    format!("{}; its output ends:\n{}", ran.describe(), ran.tail(20)),
                ));
            }
            // Ran, and must now be done: a step whose check still fails
            // would run again on every apply.
            if !check_inside(leader, &step.check).map_err(|e| error(what(), e.to_string()))? {
                return Err(error(
                    what(),
                    "it ran without error, but its check still says it is not done",
                ));
            }
            output = ran.tail(KEPT_LINES);
        }
        outcomes.push(record(step, !done, output, started));
    }
    Ok(outcomes)
}

/// The ids of the steps that need the running container whose check, run
/// inside it, says they are not done. Checks only: nothing is changed.
pub fn undone(leader: u32, name: &str, steps: &[Step]) -> Result<Vec<String>, SystemError> {
    let mut ids = Vec::new();
    for step in steps.iter().filter(|s| s.phase == Phase::Running) {
        let done = check_inside(leader, &step.check).map_err(|e| {
            error(
                format!("checking step `{}` of container {name}", step.id),
                e.to_string(),
            )
        })?;
        if !done {
            ids.push(step.id.clone());
        }
    }
    Ok(ids)
}

/// Waits until the container's own systemd has finished booting
/// (`running` or `degraded`). Until its bus is up, `systemctl` cannot
/// even ask, so that is retried; then `--wait` blocks until the boot is
/// over.
pub fn wait_until_booted(leader: u32, name: &str, timeout: Duration) -> Result<(), SystemError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ran = exec::in_container(
            leader,
            &argv(&["systemctl", "is-system-running", "--wait"]),
            &[],
            left.max(Duration::from_secs(1)),
            &mut |_| {},
        )?;
        let state = ran.output.trim();
        match state {
            "running" | "degraded" => return Ok(()),
            "maintenance" | "stopping" => {
                return Err(error(
                    format!("waiting for container {name} to boot"),
                    format!("its systemd says {state:?}"),
                ));
            }
            _ if std::time::Instant::now() >= deadline => {
                return Err(error(
                    format!("waiting for container {name} to boot"),
                    format!(
                        "not booted after {} s; its systemd says {state:?} ({})",
                        timeout.as_secs(),
                        ran.describe()
                    ),
                ));
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn quiet(leader: u32, words: Vec<String>) -> Result<Ran, SystemError> {
    exec::in_container(leader, &words, &[], CHECK_TIMEOUT, &mut |_| {})
}

fn check_inside(leader: u32, check: &Check) -> Result<bool, SystemError> {
    Ok(match check {
        Check::PathExists { path } => quiet(leader, argv(&["test", "-e", path]))?.success(),
        Check::Command { argv } => quiet(leader, argv.clone())?.success(),
        Check::FileContent {
            path,
            content,
            mode,
        } => {
            let sum = quiet(leader, argv(&["sha256sum", "--", path]))?;
            let stat = quiet(leader, argv(&["stat", "--format=%a", "--", path]))?;
            sum.success()
                && stat.success()
                && sum.output.split_whitespace().next() == Some(&fs::sha256_hex(content.as_bytes()))
                && u32::from_str_radix(stat.output.trim(), 8).ok() == Some(*mode)
        }
        Check::PackagesInstalled { packages } => {
            let mut words = argv(&[
                "dpkg-query",
                "--show",
                "--showformat=${db:Status-Status}\\n",
            ]);
            words.extend(packages.iter().cloned());
            let ran = quiet(leader, words)?;
            ran.success()
                && ran.output.lines().count() == packages.len()
                && ran.output.lines().all(|l| l == "installed")
        }
    })
}

/// `apt-get update`, then `apt-get install` of `packages`, inside the
/// container; the output of both, so that a failure shows either.
fn install_packages(
    leader: u32,
    packages: &[String],
    echo: &mut dyn FnMut(&str),
) -> Result<Ran, SystemError> {
    let env = [("DEBIAN_FRONTEND".to_string(), "noninteractive".to_string())];
    let update = exec::in_container(
        leader,
        &argv(&["apt-get", "update", "--quiet", "--quiet"]),
        &env,
        STEP_TIMEOUT,
        echo,
    )?;
    if !update.success() {
        return Ok(update);
    }
    let mut install = argv(&["apt-get", "install", "--yes", "--no-install-recommends"]);
    install.extend(packages.iter().cloned());
    exec::in_container(leader, &install, &env, STEP_TIMEOUT, echo)
}

/// Writes a file inside the container, owned by `owner` and its group,
/// creating its directory with mode 0700 when it is missing. The content
/// goes to a temporary file beside it, made with its final mode before
/// anything is written into it, then renamed over the file: a reader (sshd
/// reading `authorized_keys`) never sees half of it. `dd` reads the content
/// from its standard input as it is: reopening `/dev/stdin` by path is
/// refused in a user-namespaced container, where the pipe belongs to a user
/// it does not map.
fn write_inside(
    leader: u32,
    path: &str,
    content: &str,
    mode: u32,
    owner: &str,
    echo: &mut dyn FnMut(&str),
) -> Result<Ran, SystemError> {
    let dir = Path::new(path)
        .parent()
        .map_or("/".to_string(), |d| d.display().to_string());
    let owner_group = format!("{owner}:");
    let temporary = format!("{path}.ctm-new");
    let mut steps: Vec<(Vec<String>, Option<&[u8]>)> = Vec::new();
    // The directory is made only when missing: an existing home or .ssh
    // directory keeps its mode and owner.
    if !quiet(leader, argv(&["test", "-d", &dir]))?.success() {
        steps.push((argv(&["install", "-d", "-m", "700", "--", &dir]), None));
        steps.push((argv(&["chown", &owner_group, "--", &dir]), None));
    }
    steps.extend([
        (
            argv(&[
                "install",
                "-m",
                &format!("{mode:o}"),
                "/dev/null",
                &temporary,
            ]),
            None,
        ),
        (
            argv(&["dd", &format!("of={temporary}"), "status=none"]),
            Some(content.as_bytes()),
        ),
        (argv(&["chown", &owner_group, "--", &temporary]), None),
        (argv(&["mv", "-f", "--", &temporary, path]), None),
    ]);
    let mut last = None;
    for (words, input) in steps {
        let ran = exec::in_container_with_input(leader, &words, &[], input, STEP_TIMEOUT, echo)?;
        if !ran.success() {
            let _ = quiet(leader, argv(&["rm", "-f", "--", &temporary]));
            return Ok(ran);
        }
        last = Some(ran);
    }
    Ok(last.unwrap_or(Ran {
        code: Some(0),
        timed_out: false,
        output: String::new(),
    }))
}

// ---- root file systems and the image store -----------------------------

/// Creates `target` from the image as `mode` says (`root`: a btrfs
/// snapshot of the image, a reflink copy, a plain copy; `auto`, the first
/// the file system offers, as the plan said: `plan::choose_root`), into a
/// temporary name beside it, then renamed, so a failure leaves no half
/// tree that a later apply would take for a finished one. The tree is
/// recorded as ctm's (`rootfs::record`, with its kind), which is what lets
/// `--prune` delete it.
fn create_rootfs(
    root: &Path,
    name: &str,
    image: &str,
    source: &RootfsSource,
    mode: RootMode,
    target: &Path,
    progress: Progress<'_>,
) -> Result<(), SystemError> {
    let tree = image_tree(root, image, source, progress)?;
    if mode == RootMode::Overlay {
        return create_overlay(root, name, image, source, &tree, target, progress);
    }
    let temporary = sibling(target, ".ctm-new");
    remove_tree(&temporary)?;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| error(format!("creating {}", parent.display()), e.to_string()))?;
    }
    let what = || format!("making container {name}'s root file system from image {image}");
    let state = super::rootfs::observe(root, &std::collections::BTreeMap::<String, ()>::new());
    let kind = crate::plan::choose_root(mode, &state).map_err(|why| {
        error(
            what(),
            format!("a {} cannot be made here: {why}", mode.as_str()),
        )
    })?;
    let kind = match kind {
        RootMode::Snapshot if super::btrfs::is_subvolume(&tree) => {
            progress(&format!(
                "snapshotting image {image} to {}",
                target.display()
            ));
            super::btrfs::run(
                &[
                    "subvolume",
                    "snapshot",
                    &tree.display().to_string(),
                    &temporary.display().to_string(),
                ],
                progress,
            )
            .map_err(|e| error(what(), e.to_string()))?;
            RootMode::Snapshot
        }
        RootMode::Snapshot if mode == RootMode::Snapshot => {
            return Err(error(
                what(),
                format!(
                    "{} is not a btrfs subvolume (a directory image, or an image made before ctm made \
                     them subvolumes: `ctm image rm {image}` makes it again as one), so it cannot \
                     be snapshotted; ask for `root \"reflink\"`",
                    tree.display()
                ),
            ));
        }
        // The image is a plain directory: a clone of each file shares the
        // blocks as well (btrfs always clones).
        RootMode::Snapshot | RootMode::Reflink => {
            copy(&tree, &temporary, "always", image, target, progress)?;
            RootMode::Reflink
        }
        _ => {
            copy(&tree, &temporary, "never", image, target, progress)?;
            RootMode::Copy
        }
    };
    super::rootfs::record(root, name, image, Some(kind), &temporary)?;
    std::fs::rename(&temporary, target).map_err(|e| {
        error(
            format!("moving {} to {}", temporary.display(), target.display()),
            e.to_string(),
        )
    })
}

/// An overlay root (`root "overlay"`): `overlays/NAME/` with `lower`, a
/// link to the image's tree, and the empty `upper` and `work`; then the
/// empty directory at `target` it is mounted on (the compiled mount unit
/// does that when the container starts). Each made under a temporary name
/// and renamed, the mount point last, so that a failure leaves nothing a
/// later apply would take for a finished root. Only an image in ctm's
/// store, which is never changed once made (a new pull or build is a new
/// tree), can lie under an overlay: a directory image is the user's, who
/// may change it under the container.
fn create_overlay(
    root: &Path,
    name: &str,
    image: &str,
    source: &RootfsSource,
    tree: &Path,
    target: &Path,
    progress: Progress<'_>,
) -> Result<(), SystemError> {
    let what = || format!("making container {name}'s root file system an overlay of image {image}");
    if matches!(source, RootfsSource::Directory { .. }) {
        return Err(error(
            what(),
            format!(
                "{} is a directory of the host's, which may change under the container; \
                 an overlay needs an image ctm stores (a tarball, OCI, debootstrap or build), \
                 or ask for `root \"copy\"`",
                tree.display()
            ),
        ));
    }
    let state = super::rootfs::observe(root, &std::collections::BTreeMap::<String, ()>::new());
    if let Some(why) = state.overlay {
        return Err(error(
            what(),
            format!("an overlay cannot be made here: {why}"),
        ));
    }
    let dir = super::rootfs::overlay(root, name);
    let temporary = sibling(&dir, ".ctm-new");
    remove_tree(&temporary)?;
    let made = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(temporary.join("upper"))?;
        std::fs::create_dir_all(temporary.join("work"))?;
        std::os::unix::fs::symlink(tree, temporary.join("lower"))
    })();
    made.map_err(|e| error(format!("creating {}", temporary.display()), e.to_string()))?;
    progress(&format!(
        "making {} an overlay of image {image} ({}), its changes in {}",
        target.display(),
        tree.display(),
        dir.join("upper").display()
    ));
    super::rootfs::record(
        root,
        name,
        image,
        Some(RootMode::Overlay),
        &temporary.join("upper"),
    )?;
    if dir.symlink_metadata().is_ok() {
        // Left by a root made before whose mount point is gone: not ours
        // to keep (the record now names the new one).
        remove_tree(&dir)?;
    }
    std::fs::rename(&temporary, &dir).map_err(|e| {
        error(
            format!("moving {} to {}", temporary.display(), dir.display()),
            e.to_string(),
        )
    })?;
    let mount_point = sibling(target, ".ctm-new");
    remove_tree(&mount_point)?;
    std::fs::create_dir_all(&mount_point)
        .and_then(|()| std::fs::rename(&mount_point, target))
        .map_err(|e| error(format!("creating {}", target.display()), e.to_string()))
}

/// `cp --archive --reflink=REFLINK` of the image's tree to `temporary`;
/// what is copied is deleted again if it fails.
fn copy(
    tree: &Path,
    temporary: &Path,
    reflink: &str,
    image: &str,
    target: &Path,
    progress: Progress<'_>,
) -> Result<(), SystemError> {
    let how = if reflink == "always" {
        "reflink copy"
    } else {
        "copy"
    };
    progress(&format!(
        "copying image {image} to {} ({how})",
        target.display()
    ));
    let ran = exec::on_host(
        &[
            "cp".to_string(),
            "--archive".to_string(),
            format!("--reflink={reflink}"),
            "--no-target-directory".to_string(),
            tree.display().to_string(),
            temporary.display().to_string(),
        ],
        STEP_TIMEOUT,
        &mut |line| progress(line),
    )?;
    if !ran.success() {
        let _ = remove_tree(temporary);
        return Err(error(
            format!("copying image {image} to {}", target.display()),
            format!("cp: {}; {}", ran.describe(), ran.tail(10)),
        ));
    }
    Ok(())
}

/// The tree an image is copied from: the directory itself, or the image
/// as built, pulled or unpacked into the store (once per definition).
pub fn image_tree(
    root: &Path,
    image: &str,
    source: &RootfsSource,
    progress: Progress<'_>,
) -> Result<PathBuf, SystemError> {
    match source {
        RootfsSource::Directory { path } => {
            let tree = under_root(root, path);
            if !tree.is_dir() {
                return Err(error(
                    format!("image {image}"),
                    format!("its directory {} does not exist", tree.display()),
                ));
            }
            if !tree.join("etc/os-release").exists() && !tree.join("usr/lib/os-release").exists() {
                return Err(error(
                    format!("image {image}"),
                    format!(
                        "{} is not a root file system tree (it has no etc/os-release or usr/lib/os-release)",
                        tree.display()
                    ),
                ));
            }
            Ok(tree)
        }
        RootfsSource::Tarball { path, sha256 } => {
            let file = under_root(root, path);
            let (actual, compression) = read_tarball(&file).map_err(|e| {
                error(
                    format!("reading image {image}"),
                    format!("{}: {e}", file.display()),
                )
            })?;
            if let Some(expected) = sha256
                && *expected != actual
            {
                return Err(error(
                    format!("image {image}"),
                    format!(
                        "{} has SHA-256 {actual}, not the {expected} the host file expects",
                        file.display()
                    ),
                ));
            }
            if let Some(program) = compression.program()
                && !exec::installed(program)
            {
                return Err(error(
                    format!("image {image}"),
                    format!(
                        "{} is {program}-compressed, and {program} is not installed on the host (apt install {})",
                        file.display(),
                        compression.package().unwrap_or(program)
                    ),
                ));
            }
            let provenance = Provenance {
                digest: Some(format!("sha256:{actual}")),
                ..Provenance::default()
            };
            build_once(
                root,
                image,
                source,
                &actual,
                provenance,
                progress,
                |dir, echo| {
                    let mut words = vec!["tar".to_string(), "--extract".to_string()];
                    words.extend(compression.tar_option().map(str::to_string));
                    exec::on_host(
                        &[
                            words,
                            vec![
                                "--numeric-owner".to_string(),
                                "--xattrs".to_string(),
                                "--xattrs-include=*".to_string(),
                                "--acls".to_string(),
                                "--file".to_string(),
                                file.display().to_string(),
                                "--directory".to_string(),
                                dir.display().to_string(),
                            ],
                        ]
                        .concat(),
                        STEP_TIMEOUT,
                        echo,
                    )
                    .and_then(|ran| succeeded(image, ran))
                },
            )
        }
        RootfsSource::Oci {
            reference,
            credentials,
            insecure,
        } => {
            let reference = crate::model::oci::OciReference::parse(reference)
                .map_err(|e| error(format!("image {image}"), e))?;
            let credentials = credentials.as_deref().map(|c| under_root(root, c));
            // A digest in the definition names the image whole: once in the
            // store, nothing is pulled or hashed again for the next container.
            let pinned = reference.digest().is_some();
            if pinned && let Some(tree) = stored_tree(root, image, source, "") {
                progress(&format!(
                    "image {image} is in the store ({})",
                    tree.display()
                ));
                return Ok(tree);
            }
            progress(&format!("image {image}: pulling {reference}"));
            let pulled = oci::pull(
                root,
                &reference,
                credentials.as_deref(),
                *insecure,
                progress,
            )
            .map_err(|e| in_image(image, e))?;
            // A tag alone names what it resolved to this time.
            let extra = if pinned { "" } else { pulled.manifest.as_str() };
            build_once(
                root,
                image,
                source,
                extra,
                Provenance::of(&pulled),
                progress,
                |dir, echo| oci::unpack(root, &pulled, dir, echo),
            )
        }
        RootfsSource::OciArchive { path } => {
            let file = under_root(root, path);
            let pulled =
                oci::import_archive(root, &file, progress).map_err(|e| in_image(image, e))?;
            build_once(
                root,
                image,
                source,
                pulled.manifest.as_str(),
                Provenance::of(&pulled),
                progress,
                |dir, echo| oci::unpack(root, &pulled, dir, echo),
            )
        }
        RootfsSource::Build { .. } => super::build::build(root, image, source, progress),
        RootfsSource::Debootstrap {
            suite,
            mirror,
            variant,
            packages,
        } => {
            let mirror = match mirror {
                Some(m) => m.clone(),
                None => host_mirror(root)?,
            };
            build_once(
                root,
                image,
                source,
                &mirror,
                Provenance::default(),
                progress,
                |dir, echo| {
                    let mut words = vec!["debootstrap".to_string()];
                    if let Some(v) = variant {
                        words.push(format!("--variant={v}"));
                    }
                    if !packages.is_empty() {
                        words.push(format!("--include={}", packages.join(",")));
                    }
                    words.push(suite.clone());
                    words.push(dir.display().to_string());
                    words.push(mirror.clone());
                    exec::on_host(&words, STEP_TIMEOUT, echo).and_then(|ran| succeeded(image, ran))
                },
            )
        }
    }
}

/// `Ok` if the program that built an image succeeded; its output's end
/// otherwise.
fn succeeded(image: &str, ran: Ran) -> Result<(), SystemError> {
    if ran.success() {
        return Ok(());
    }
    Err(error(
        format!("building image {image}"),
        format!("{}; its output ends:\n{}", ran.describe(), ran.tail(20)),
    ))
}

/// An error of pulling or importing, said of the image.
fn in_image(image: &str, e: SystemError) -> SystemError {
    error(format!("image {image}: {}", e.what), e.why)
}

/// How a tarball is compressed, told by its first bytes (not its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    fn of(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The program tar runs to decompress it.
    fn program(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Xz => Some("xz"),
            Compression::Zstd => Some("zstd"),
        }
    }

    /// The Debian package that has [`Self::program`].
    fn package(self) -> Option<&'static str> {
        match self {
            Compression::Xz => Some("xz-utils"),
            other => other.program(),
        }
    }

    fn tar_option(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("--gzip"),
            Compression::Xz => Some("--xz"),
            Compression::Zstd => Some("--zstd"),
        }
    }
}

/// A tarball's SHA-256, read in pieces (images are hundreds of
/// megabytes), and its compression.
fn read_tarball(path: &Path) -> std::io::Result<(String, Compression)> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut compression = None;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        compression.get_or_insert_with(|| Compression::of(&buffer[..n]));
        hasher.update(&buffer[..n]);
    }
    Ok((
        fs::hex(&hasher.finalize()),
        compression.unwrap_or(Compression::None),
    ))
}

/// The store's name for an image: a hash of its definition and of what
/// the definition points at (the tarball's content, the mirror used).
fn store_key(source: &RootfsSource, extra: &str) -> String {
    // Plain data: serializing it cannot fail.
    let definition = serde_json::to_string(source).unwrap_or_default();
    fs::sha256_hex(format!("{definition}\n{extra}").as_bytes())[..16].to_string()
}

/// What the store records beside each image it built, `NAME-KEY.json`:
/// which definition the image is, so that `ctm gc` can tell the images no
/// generation uses any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredImage {
    pub image: String,
    pub source: RootfsSource,
    /// What the image was made from: an OCI image's manifest digest, a
    /// tarball's `sha256:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The blobs of the OCI blob cache the image was made from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<String>,
    /// The bytes of the tree's files, counted once per inode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// A built image's steps in the build cache (`.build/KEY`): kept
    /// while the image is, so that a changed recipe reruns only from the
    /// step that changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
}

impl StoredImage {
    /// True if this is the image of that definition (whatever it was made
    /// from since).
    pub fn is(&self, image: &str, source: &RootfsSource) -> bool {
        self.image == image && self.source == *source
    }
}

/// What [`build_once`] records of an image besides its definition.
#[derive(Default)]
pub(super) struct Provenance {
    pub digest: Option<String>,
    pub blobs: Vec<String>,
    /// A build's steps in the build cache.
    pub steps: Vec<String>,
}

impl Provenance {
    fn of(pulled: &oci::Pulled) -> Provenance {
        Provenance {
            digest: Some(pulled.manifest.to_string()),
            blobs: pulled.blobs.iter().map(|b| b.to_string()).collect(),
            steps: Vec::new(),
        }
    }
}

/// The tree [`build_once`] made of this definition and `extra`, if it is
/// there.
pub(super) fn stored_tree(
    root: &Path,
    image: &str,
    source: &RootfsSource,
    extra: &str,
) -> Option<PathBuf> {
    let tree = root
        .join(IMAGE_STORE)
        .join(format!("{image}-{}", store_key(source, extra)));
    tree.is_dir().then_some(tree)
}

/// The lock this process holds while it builds the image stored at
/// `tree`.
fn building_lock(tree: &Path) -> std::sync::Arc<std::sync::Mutex<()>> {
    static LOCKS: std::sync::Mutex<
        std::collections::BTreeMap<PathBuf, std::sync::Arc<std::sync::Mutex<()>>>,
    > = std::sync::Mutex::new(std::collections::BTreeMap::new());
    let mut locks = LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    locks.entry(tree.to_path_buf()).or_default().clone()
}

/// Builds an image into `IMAGE_STORE/NAME-KEY` unless it is there: into a
/// temporary directory first, renamed when complete. `KEY` hashes the
/// definition and `extra`, what it points at (the mirror, the tarball's
/// digest).
pub(super) fn build_once(
    root: &Path,
    image: &str,
    source: &RootfsSource,
    extra: &str,
    provenance: Provenance,
    progress: Progress<'_>,
    build: impl FnOnce(&Path, &mut dyn FnMut(&str)) -> Result<(), SystemError>,
) -> Result<PathBuf, SystemError> {
    let store = root.join(IMAGE_STORE);
    let name = format!("{image}-{}", store_key(source, extra));
    let tree = store.join(&name);
    // Containers are prepared in parallel: two made of one image that is
    // not stored yet would both build it, into the same temporary
    // directory. One builds; the other waits, then finds it stored.
    let building = building_lock(&tree);
    let _building = building.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tree) = stored_tree(root, image, source, extra) {
        progress(&format!(
            "image {image} is in the store ({})",
            tree.display()
        ));
        return Ok(tree);
    }
    let temporary = sibling(&tree, ".ctm-new");
    remove_tree(&temporary)?;
    if super::btrfs::on_btrfs(&store) && super::btrfs::available() {
        // A subvolume, which each container's tree can be a snapshot of.
        fs::create_dirs(&store)
            .map_err(|e| error(format!("creating {}", store.display()), e.to_string()))?;
        super::btrfs::run(
            &["subvolume", "create", &temporary.display().to_string()],
            &mut |_| {},
        )?;
    } else {
        std::fs::create_dir_all(&temporary)
            .map_err(|e| error(format!("creating {}", temporary.display()), e.to_string()))?;
    }
    progress(&format!("building image {image} into {}", tree.display()));
    let started = std::time::Instant::now();
    if let Err(e) = build(&temporary, &mut |line| progress(&format!("  {line}"))) {
        let _ = remove_tree(&temporary);
        return Err(e);
    }
    let record = StoredImage {
        image: image.to_string(),
        source: source.clone(),
        digest: provenance.digest,
        blobs: provenance.blobs,
        size: Some(tree_size(&temporary)),
        steps: provenance.steps,
    };
    // Plain data: serializing it cannot fail.
    let text = serde_json::to_vec_pretty(&record).unwrap_or_default();
    let record_path = store.join(format!("{name}.json"));
    fs::write_file(&record_path, &text, 0o644)
        .map_err(|e| error(format!("recording image {image}"), e.to_string()))?;
    std::fs::rename(&temporary, &tree).map_err(|e| {
        error(
            format!("moving {} to {}", temporary.display(), tree.display()),
            e.to_string(),
        )
    })?;
    progress(&format!(
        "built image {image} in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(tree)
}

/// The images in the store that none of `wanted` (every image definition
/// of the generations that are kept) is: each image tree with its record.
/// An image without a record (built by an older ctm, or interrupted
/// before its record was written) is never listed: ctm cannot tell what
/// it is.
pub fn unused_images(root: &Path, wanted: &[(String, RootfsSource)]) -> Vec<PathBuf> {
    let store = root.join(IMAGE_STORE);
    let Ok(entries) = std::fs::read_dir(&store) else {
        return Vec::new();
    };
    // An image under an overlay root is in use whatever the host file
    // says: the container's tree is made of it.
    let lowers = super::rootfs::overlay_lowers(root);
    let mut unused: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let record = e.path();
            record.file_name()?.to_str()?.strip_suffix(".json")?;
            let stored: StoredImage = serde_json::from_slice(&std::fs::read(&record).ok()?).ok()?;
            (!wanted
                .iter()
                .any(|(image, source)| stored.is(image, source))
                && !lowers.contains_key(&record.with_extension("")))
            .then_some(record)
        })
        .collect();
    unused.sort();
    unused
}

/// Removes an image that [`unused_images`] listed: the tree, then its
/// record (a tree left without a record is never removed by mistake, only
/// kept by mistake).
pub fn remove_image(record: &Path) -> Result<(), SystemError> {
    let tree = record.with_extension("");
    remove_tree(&tree)?;
    std::fs::remove_file(record)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        })
        .map_err(|e| error(format!("removing {}", record.display()), e.to_string()))
}

/// The trees of the build cache that no image in the store was built
/// through (left by a recipe since changed, an image removed, or a
/// build that was interrupted).
pub fn unused_build_steps(root: &Path) -> Vec<PathBuf> {
    let kept: std::collections::BTreeSet<String> = stored_images(root)
        .into_iter()
        .flat_map(|(_, s)| s.steps)
        .collect();
    let Ok(entries) = std::fs::read_dir(root.join(IMAGE_STORE).join(".build")) else {
        return Vec::new();
    };
    let mut unused: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_str().is_some_and(|n| kept.contains(n)))
        .map(|e| e.path())
        .collect();
    unused.sort();
    unused
}

/// Removes a tree of the build cache that [`unused_build_steps`] listed.
pub fn remove_build_step(tree: &Path) -> Result<(), SystemError> {
    remove_tree(tree)
}

/// Every image in the store with its record: the record's path (the
/// tree is beside it, without `.json`) and what it says. Images without a
/// readable record are left out, as [`unused_images`] leaves them.
pub fn stored_images(root: &Path) -> Vec<(PathBuf, StoredImage)> {
    let Ok(entries) = std::fs::read_dir(root.join(IMAGE_STORE)) else {
        return Vec::new();
    };
    let mut images: Vec<(PathBuf, StoredImage)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let record = e.path();
            record.file_name()?.to_str()?.strip_suffix(".json")?;
            let stored = serde_json::from_slice(&std::fs::read(&record).ok()?).ok()?;
            Some((record, stored))
        })
        .collect();
    images.sort_by(|a, b| a.0.cmp(&b.0));
    images
}

/// The bytes of the files under `dir`, each inode once (as `du` counts
/// the blocks, but in bytes): what an image takes to copy.
fn tree_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if seen.insert((meta.dev(), meta.ino())) {
                total += meta.len();
            }
        }
    }
    total
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

pub(super) fn remove_tree(path: &Path) -> Result<(), SystemError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(error(format!("removing {}", path.display()), e.to_string())),
    }
}

/// The Debian mirror the host's own apt uses: the first `URIs:` of
/// `debian.sources` (deb822), else the first `deb` line of `sources.list`.
/// Nothing is ever fetched from anywhere the host or the user did not name.
pub fn host_mirror(root: &Path) -> Result<String, SystemError> {
    let deb822 = root.join("etc/apt/sources.list.d/debian.sources");
    if let Ok(text) = std::fs::read_to_string(&deb822)
        && let Some(uri) = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("URIs:"))
            .and_then(|u| u.split_whitespace().next())
    {
        return Ok(uri.to_string());
    }
    let list = root.join("etc/apt/sources.list");
    if let Ok(text) = std::fs::read_to_string(&list)
        && let Some(uri) = text.lines().find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("deb"))
                .then(|| words.find(|w| !w.starts_with('[')))
                .flatten()
        })
    {
        return Ok(uri.to_string());
    }
    Err(error(
        "finding a Debian mirror",
        format!(
            "the image gives no mirror and the host's apt sources ({} or {}) name none; add mirror=\"…\" to its debootstrap node",
            deb822.display(),
            list.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::provision::rootfs_step;

    #[test]
    fn the_mirror_comes_from_the_hosts_apt_sources() {
        let root = tempfile::tempdir().unwrap();
        assert!(host_mirror(root.path()).is_err());
        std::fs::create_dir_all(root.path().join("etc/apt/sources.list.d")).unwrap();
        std::fs::write(
            root.path().join("etc/apt/sources.list"),
            "# old style\ndeb [arch=amd64] http://mirror.example/debian bookworm main\n",
        )
        .unwrap();
        assert_eq!(
            host_mirror(root.path()).unwrap(),
            "http://mirror.example/debian"
        );
        std::fs::write(
            root.path().join("etc/apt/sources.list.d/debian.sources"),
            "Types: deb\nURIs: https://deb.example/debian\nSuites: bookworm\n",
        )
        .unwrap();
        assert_eq!(
            host_mirror(root.path()).unwrap(),
            "https://deb.example/debian"
        );
    }

    #[test]
    fn a_directory_image_is_copied_whole_and_atomically() {
        let root = tempfile::tempdir().unwrap();
        let image = root.path().join("srv/images/tree");
        std::fs::create_dir_all(image.join("etc")).unwrap();
        std::fs::write(image.join("etc/os-release"), "ID=debian\n").unwrap();
        std::os::unix::fs::symlink("usr/bin", image.join("bin")).unwrap();
        let step = rootfs_step(
            "web",
            "tree",
            RootfsSource::Directory {
                path: "/srv/images/tree".into(),
            },
            RootMode::Auto,
        );
        let mut lines = Vec::new();
        let outcomes = before_boot(root.path(), "web", std::slice::from_ref(&step), &mut |l| {
            lines.push(l.to_string())
        })
        .unwrap();
        assert!(outcomes[0].ran);
        let made = root.path().join("var/lib/machines/web");
        assert_eq!(
            std::fs::read_to_string(made.join("etc/os-release")).unwrap(),
            "ID=debian\n"
        );
        assert_eq!(
            std::fs::read_link(made.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert!(!root.path().join("var/lib/machines/web.ctm-new").exists());
        // Done now: a second run changes nothing.
        let again = before_boot(root.path(), "web", &[step], &mut |_| {}).unwrap();
        assert!(!again[0].ran);
    }

    #[test]
    fn a_tree_without_os_release_is_refused() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("srv/empty")).unwrap();
        let e = image_tree(
            root.path(),
            "empty",
            &RootfsSource::Directory {
                path: "/srv/empty".into(),
            },
            &mut |_| {},
        )
        .unwrap_err();
        assert!(e.why.contains("is not a root file system tree"), "{e}");
    }

    /// A tarball at `path` under `dir` of a tree with an os-release, made
    /// by `tar` with `flags` (`-cf`, `-czf`).
    fn make_tarball(dir: &Path, path: &str, flags: &str) -> PathBuf {
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/os-release"), "ID=debian\n").unwrap();
        let tarball = dir.join(path);
        std::fs::create_dir_all(tarball.parent().unwrap()).unwrap();
        let status = std::process::Command::new("tar")
            .arg(flags)
            .arg(&tarball)
            .arg("-C")
            .arg(&src)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());
        tarball
    }

    #[test]
    fn a_tarball_is_checked_and_unpacked_once() {
        let root = tempfile::tempdir().unwrap();
        let tarball = make_tarball(root.path(), "srv/t.tar", "-cf");
        let wrong = RootfsSource::Tarball {
            path: "/srv/t.tar".into(),
            sha256: Some("0".repeat(64)),
        };
        let e = image_tree(root.path(), "t", &wrong, &mut |_| {}).unwrap_err();
        assert!(e.why.contains("not the 000"), "{e}");
        let right = RootfsSource::Tarball {
            path: "/srv/t.tar".into(),
            sha256: Some(fs::sha256_hex(&std::fs::read(&tarball).unwrap())),
        };
        let tree = image_tree(root.path(), "t", &right, &mut |_| {}).unwrap();
        assert_eq!(
            std::fs::read_to_string(tree.join("etc/os-release")).unwrap(),
            "ID=debian\n"
        );
        let mut lines = Vec::new();
        let again =
            image_tree(root.path(), "t", &right, &mut |l| lines.push(l.to_string())).unwrap();
        assert_eq!(again, tree);
        assert!(lines[0].contains("is in the store"), "{lines:?}");
    }

    #[test]
    fn two_containers_of_one_image_prepared_at_once_build_it_once() {
        let root = tempfile::tempdir().unwrap();
        make_tarball(root.path(), "srv/t.tar", "-cf");
        let source = RootfsSource::Tarball {
            path: "/srv/t.tar".into(),
            sha256: None,
        };
        let built = std::sync::atomic::AtomicUsize::new(0);
        let trees: Vec<PathBuf> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(|| {
                        let mut lines = Vec::new();
                        let tree = image_tree(root.path(), "t", &source, &mut |l| {
                            lines.push(l.to_string())
                        })
                        .unwrap();
                        if lines.iter().any(|l| l.starts_with("building image")) {
                            built.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        tree
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(trees[0], trees[1]);
        assert_eq!(built.into_inner(), 1);
        assert_eq!(
            std::fs::read_to_string(trees[0].join("etc/os-release")).unwrap(),
            "ID=debian\n"
        );
    }

    #[test]
    fn only_build_steps_no_stored_image_was_built_through_are_unused() {
        let root = tempfile::tempdir().unwrap();
        let store = root.path().join(IMAGE_STORE);
        for step in ["kept", "changed", "interrupted.ctm-new"] {
            std::fs::create_dir_all(store.join(".build").join(step)).unwrap();
        }
        let record = StoredImage {
            image: "app".into(),
            source: RootfsSource::Directory {
                path: "/srv/app".into(),
            },
            digest: None,
            blobs: Vec::new(),
            size: None,
            steps: vec!["kept".into()],
        };
        std::fs::create_dir_all(store.join("app-0123")).unwrap();
        std::fs::write(
            store.join("app-0123.json"),
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
        let unused = unused_build_steps(root.path());
        assert_eq!(
            unused,
            [
                store.join(".build/changed"),
                store.join(".build/interrupted.ctm-new")
            ]
        );
        for tree in &unused {
            remove_build_step(tree).unwrap();
        }
        assert!(store.join(".build/kept").is_dir());
        assert!(unused_build_steps(root.path()).is_empty());
    }

    #[test]
    fn only_images_no_generation_wants_are_unused() {
        let root = tempfile::tempdir().unwrap();
        make_tarball(root.path(), "srv/a.tar", "-cf");
        make_tarball(root.path(), "srv/b.tar", "-cf");
        let source = |path: &str| RootfsSource::Tarball {
            path: path.into(),
            sha256: None,
        };
        let a = image_tree(root.path(), "t", &source("/srv/a.tar"), &mut |_| {}).unwrap();
        let b = image_tree(root.path(), "t", &source("/srv/b.tar"), &mut |_| {}).unwrap();
        // An image ctm cannot account for is never removed.
        let legacy = root.path().join(IMAGE_STORE).join("old-0123456789abcdef");
        std::fs::create_dir_all(&legacy).unwrap();
        let wanted = [("t".to_string(), source("/srv/a.tar"))];
        let unused = unused_images(root.path(), &wanted);
        assert_eq!(unused, [b.with_extension("json")]);
        remove_image(&unused[0]).unwrap();
        assert!(!b.exists() && !b.with_extension("json").exists());
        assert!(a.is_dir() && legacy.is_dir());
        assert!(unused_images(root.path(), &wanted).is_empty());
    }

    #[test]
    fn a_compressed_tarball_is_told_by_its_bytes_and_hashed_whole() {
        let dir = tempfile::tempdir().unwrap();
        // Named .tar, gzip inside: the bytes decide.
        let tarball = make_tarball(dir.path(), "image.tar", "-czf");
        let (sha256, compression) = read_tarball(&tarball).unwrap();
        assert_eq!(compression, Compression::Gzip);
        assert_eq!(sha256, fs::sha256_hex(&std::fs::read(&tarball).unwrap()));
        assert_eq!(
            Compression::of(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1]),
            Compression::Xz
        );
        assert_eq!(
            Compression::of(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::of(b"etc/\0\0"), Compression::None);
        assert_eq!(Compression::Xz.package(), Some("xz-utils"));
        assert!(exec::installed("tar"));
        assert!(!exec::installed("ctm-no-such-program"));
    }
}
