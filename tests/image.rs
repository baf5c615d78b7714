//! A debootstrap image built for real on this machine, as a container's
//! first apply builds it (`backend::provision`, the `rootfs` step): from
//! the mirror the root's own apt sources name, into ctm's image store,
//! with debootstrap's progress streamed, then reused for the next
//! container. The labs cannot do this: they have no route to a mirror.
//! Needs root, debootstrap and the host's mirror (as the lab's own rootfs
//! build does); about 40 s.

mod support;

use std::path::Path;

use ctm::backend::provision::{IMAGE_STORE, before_boot, host_mirror};
use ctm::backend::rootfs;
use ctm::compile::provision::{RootfsSource, Step, rootfs_step};
use support::*;

fn step(name: &str) -> Step {
    rootfs_step(
        name,
        "bookworm",
        RootfsSource::Debootstrap {
            suite: "bookworm".into(),
            mirror: None,
            variant: Some("minbase".into()),
            packages: vec!["netbase".into()],
        },
        ctm::model::RootMode::Auto,
    )
}

fn make(root: &Path, name: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let made = before_boot(root, name, &[step(name)], &mut |line| {
        lines.push(line.to_string())
    });
    if let Err(e) = made {
        panic!("{name}: {e}\nprogress:\n{}", lines.join("\n"));
    }
    lines
}

#[test]
fn a_debootstrap_image_is_built_once_from_the_hosts_mirror_and_reused() {
    let sources = Path::new("/etc/apt/sources.list.d/debian.sources");
    let ready = is_root()
        && Path::new("/usr/sbin/debootstrap").exists()
        && host_mirror(Path::new("/")).is_ok();
    if skip_unless(
        ready,
        "building an image needs root, debootstrap and a mirror in the host's apt sources",
    ) {
        return;
    }
    let root = tempfile::Builder::new()
        .prefix("ctm-image-test")
        .tempdir_in("/var/tmp")
        .unwrap();
    // The root's apt sources, as a real host's: ctm takes the mirror there.
    for (from, to) in [
        (sources, "etc/apt/sources.list.d/debian.sources"),
        (Path::new("/etc/apt/sources.list"), "etc/apt/sources.list"),
    ] {
        if from.exists() {
            let to = root.path().join(to);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(from, to).unwrap();
        }
    }

    let cold = make(root.path(), "first");
    assert!(
        cold.iter()
            .any(|l| l.starts_with("building image bookworm into")),
        "{cold:?}"
    );
    // debootstrap's own lines come through as it runs.
    assert!(
        cold.iter()
            .any(|l| l.contains("I: Base system installed successfully")),
        "{cold:?}"
    );
    assert!(
        cold.iter()
            .any(|l| l.starts_with("built image bookworm in")),
        "{cold:?}"
    );
    let tree = root.path().join("var/lib/machines/first");
    let os = std::fs::read_to_string(tree.join("etc/os-release")).unwrap();
    assert!(os.contains("VERSION_CODENAME=bookworm"), "{os}");
    // The image's packages are in it, installed by debootstrap.
    assert!(tree.join("etc/protocols").exists(), "netbase is missing");
    assert!(rootfs::made_by_ctm(root.path(), "first").is_some());

    // The next container: from the store, not built again.
    let cached = make(root.path(), "second");
    assert!(
        cached.iter().any(|l| l.contains("is in the store")),
        "{cached:?}"
    );
    assert!(
        !cached.iter().any(|l| l.starts_with("building image")),
        "{cached:?}"
    );
    // One image, with the record of its definition that `ctm gc` reads.
    let images: Vec<_> = std::fs::read_dir(root.path().join(IMAGE_STORE))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(images.len(), 1, "{images:?}");
    assert!(images[0].with_extension("json").exists());
    assert!(
        root.path()
            .join("var/lib/machines/second/etc/os-release")
            .exists()
    );
}
