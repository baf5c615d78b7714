//! Building an image and making containers' root file systems from it,
//! with ctm's own image store (`backend::provision`), on this machine:
//! a cold build (debootstrap of bookworm minbase from the mirror this
//! machine's apt uses, into an empty store), then root file systems made
//! from the cached image. Needs root, debootstrap and the mirror.
//!
//! `cargo bench --bench image`. Figures: docs/benchmarks.md.

use std::path::Path;
use std::time::{Duration, Instant};

use ctm::backend::provision::before_boot;
use ctm::compile::provision::{RootfsSource, Step, rootfs_step};

fn step(name: &str) -> Step {
    rootfs_step(
        name,
        "bench",
        RootfsSource::Debootstrap {
            suite: "bookworm".into(),
            mirror: None,
            variant: Some("minbase".into()),
            packages: Vec::new(),
        },
        ctm::model::RootMode::Auto,
    )
}

fn make(root: &Path, name: &str) -> Duration {
    let started = Instant::now();
    let mut progress = |line: &str| eprintln!("  {line}");
    if let Err(e) = before_boot(root, name, &[step(name)], &mut progress) {
        panic!("{name}: {e}");
    }
    started.elapsed()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let uid = nix::unistd::geteuid();
    let sources = Path::new("/etc/apt/sources.list.d/debian.sources");
    if !uid.is_root() || !sources.exists() || !Path::new("/usr/sbin/debootstrap").exists() {
        println!(
            "SKIPPED: needs root, debootstrap and {} (the mirror to build from)",
            sources.display()
        );
        return;
    }
    let root = match tempfile::Builder::new()
        .prefix("ctm-image-bench")
        .tempdir_in("/var/tmp")
    {
        Ok(d) => d,
        Err(e) => panic!("a scratch root in /var/tmp: {e}"),
    };
    // ctm takes the mirror from the root's apt sources, as on a real host.
    let apt = root.path().join("etc/apt/sources.list.d");
    if let Err(e) = std::fs::create_dir_all(&apt)
        .and_then(|()| std::fs::copy(sources, apt.join("debian.sources")).map(|_| ()))
    {
        panic!("{}: {e}", apt.display());
    }
    eprintln!("cold: building the image into an empty store …");
    let cold = make(root.path(), "c0");
    let mut cached: Vec<Duration> = (1..=5)
        .map(|i| make(root.path(), &format!("c{i}")))
        .collect();
    cached.sort();
    println!(
        "image build, cold (debootstrap bookworm minbase, then the first root file system): {:.1} s",
        cold.as_secs_f64()
    );
    println!(
        "root file system from the cached image: median {:.2} s ({:.2}–{:.2}), 5 runs",
        cached[2].as_secs_f64(),
        cached[0].as_secs_f64(),
        cached[4].as_secs_f64()
    );
}
