//! Image builds end to end, in a real systemd host (a lab): `ctm image
//! build` runs each step of a recipe in a container of the image so far
//! (systemd-nspawn inside the lab), caches every step, and leaves no
//! image when a step fails. The parent is a busybox-static tree the test
//! makes (the lab's slim guest has an empty `/usr`, so no shell); the
//! steps' markers are random (the kernel's `random/uuid`), so a step that
//! ran again is told by a marker that changed.

#[path = "lab/mod.rs"]
mod lab;
mod support;

use std::path::Path;

use lab::scenario::{ctm, ctm_ok};
use support::*;

const BUSYBOX: &str = "/bin/busybox";

/// A tree nspawn runs commands in: busybox-static and the applets the
/// steps (and `copy`) use, an empty `/usr` and an os-release.
fn busybox_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("usr")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/os-release"), "ID=busybox\n").unwrap();
    std::fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "cp", "mkdir", "dirname", "rm", "echo"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
}

const RECIPE: &str = r#"
host "lab" {
    uplink "host0"
}

image "bb" {
    directory "/srv/images/bb"
}

image "app" {
    from "bb"
    run "cat /proc/sys/kernel/random/uuid > /one"
    env "GREETING" "hello from env"
    copy "files/site" "/srv/site"
    copy "files/motd" "/etc"
    run "cat /proc/sys/kernel/random/uuid > /two; echo $GREETING > /greeting"
}
"#;

/// The tree `ctm image build` says it made.
fn built_at(said: &str) -> String {
    said.lines()
        .find_map(|l| l.strip_prefix("Image app is at "))
        .and_then(|l| l.strip_suffix('.'))
        .unwrap_or_else(|| panic!("no tree in:\n{said}"))
        .to_string()
}

/// What the store holds: its entries and those of its build cache.
fn store(lab: &lab::Lab) -> String {
    let out = lab.run(&[
        "ls",
        "-a",
        "/var/lib/ctm/images",
        "/var/lib/ctm/images/.build",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_recipe_builds_once_rebuilds_from_a_changed_step_and_a_failed_step_leaves_no_image() {
    let available = lab::Lab::available();
    if skip_unless(available.is_ok(), &available.err().unwrap_or_default())
        || skip_unless(
            Path::new(BUSYBOX).exists(),
            "the image build test needs busybox-static on the host",
        )
    {
        return;
    }
    let tree = tempfile::tempdir().unwrap();
    busybox_tree(tree.path());
    let bind = format!("--bind-ro={}:/srv/images/bb", tree.path().display());
    let lab = lab::scenario::lab_with_args("img-build", RECIPE, &[&bind]);
    lab.write("/root/files/site/index.html", "<p>site</p>\n");
    lab.write("/root/files/site/css/a.css", "p {}\n");
    lab.write("/root/files/motd", "motd\n");

    // First build: every step runs, in order, with the environment and
    // the copied files.
    let said = ctm_ok(&lab, &["image", "build", "app", "/root/host.kdl"]);
    for step in [
        "step 1/5: run `cat /proc/sys/kernel/random/uuid > /one`",
        "step 2/5: env GREETING",
        "step 3/5: copy /root/files/site to /srv/site",
        "step 5/5: run `cat /proc/sys/kernel/random/uuid > /two;",
    ] {
        assert!(said.contains(step), "{step:?} in:\n{said}");
    }
    assert!(!said.contains("(cached)"), "{said}");
    let first = built_at(&said);
    let one = lab.ok(&["cat", &format!("{first}/one")]);
    let two = lab.ok(&["cat", &format!("{first}/two")]);
    assert_eq!(
        lab.ok(&["cat", &format!("{first}/greeting")]),
        "hello from env\n"
    );
    assert_eq!(lab.ok(&["cat", &format!("{first}/etc/motd")]), "motd\n");
    assert_eq!(
        lab.ok(&["cat", &format!("{first}/srv/site/css/a.css")]),
        "p {}\n"
    );
    assert_eq!(
        lab.ok(&["cat", &format!("{first}/srv/site/index.html")]),
        "<p>site</p>\n"
    );
    // The staging directory went with the step.
    assert!(
        !lab.run(&["test", "-e", &format!("{first}/.ctm-copy")])
            .status
            .success()
    );

    // Unchanged: nothing runs, the same image.
    let said = ctm_ok(&lab, &["image", "build", "app", "/root/host.kdl"]);
    assert!(said.contains("no step changed"), "{said}");
    assert!(!said.contains("step 1/5"), "{said}");
    assert_eq!(built_at(&said), first);
    assert_eq!(lab.ok(&["cat", &format!("{first}/one")]), one);

    // The last `run` changed: the steps before it come from the cache.
    lab.write(
        "/root/host.kdl",
        RECIPE.replace("> /greeting\"", "> /greeting; echo changed > /changed\""),
    );
    let said = ctm_ok(&lab, &["image", "build", "app", "/root/host.kdl"]);
    assert!(
        said.contains("step 1/5: run `cat /proc/sys/kernel/random/uuid > /one` (cached)"),
        "{said}"
    );
    assert!(
        said.contains("step 3/5: copy /root/files/site to /srv/site (cached)"),
        "{said}"
    );
    let last = said
        .lines()
        .find(|l| l.contains("step 5/5: run"))
        .unwrap_or_else(|| panic!("no step 5 in:\n{said}"));
    assert!(!last.ends_with("(cached)"), "{said}");
    let second = built_at(&said);
    assert_ne!(second, first);
    assert_eq!(
        lab.ok(&["cat", &format!("{second}/one")]),
        one,
        "step 1 ran again"
    );
    assert_ne!(
        lab.ok(&["cat", &format!("{second}/two")]),
        two,
        "step 5 did not run"
    );
    assert_eq!(lab.ok(&["cat", &format!("{second}/changed")]), "changed\n");

    // A copied file changed: the copy and the steps after it run again.
    lab.write("/root/files/site/index.html", "<p>new</p>\n");
    let said = ctm_ok(&lab, &["image", "build", "app", "/root/host.kdl"]);
    assert!(
        said.contains("step 1/5: run `cat /proc/sys/kernel/random/uuid > /one` (cached)"),
        "{said}"
    );
    assert!(
        !said.contains("step 3/5: copy /root/files/site to /srv/site (cached)"),
        "{said}"
    );
    let third = built_at(&said);
    assert_eq!(
        lab.ok(&["cat", &format!("{third}/srv/site/index.html")]),
        "<p>new</p>\n"
    );

    // A failing step: its output is shown, and nothing new is left.
    let before = store(&lab);
    lab.write(
        "/root/host.kdl",
        RECIPE.replace(
            "echo $GREETING > /greeting\"",
            "echo broken-step-output; exit 3\"",
        ),
    );
    let out = ctm(&lab, &["image", "build", "app", "/root/host.kdl"]);
    let said = lab::show_output(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("step 5/5"), "{said}");
    assert!(said.contains("broken-step-output"), "{said}");
    assert!(said.contains("exit"), "{said}");
    assert_eq!(store(&lab), before, "a failed build left something");
}

/// The KDL and TOML forms of a recipe (docs/config.md's) validate to one
/// model, its steps in the file's order in both.
#[test]
fn a_recipe_reads_the_same_in_kdl_and_toml_with_its_steps_in_order() {
    use ctm::config::{self, Format, Source};
    use ctm::model::{BuildStep, ImageSource, Name};
    let kdl = r#"
image "debian-bookworm" {
    debootstrap suite="bookworm"
}
image "web" {
    from "debian-bookworm" network=#true
    env "DEBIAN_FRONTEND" "noninteractive"
    run "apt-get install --yes nginx"
    copy "site" "/var/www/html"
    run "systemctl enable nginx"
}
"#;
    let toml = r#"
[image.debian-bookworm]
debootstrap = { suite = "bookworm" }

[image.web]
from = { image = "debian-bookworm", network = true }

[[image.web.env]]
name = "DEBIAN_FRONTEND"
value = "noninteractive"

[[image.web.run]]
command = "apt-get install --yes nginx"

[[image.web.copy]]
source = "site"
destination = "/var/www/html"

[[image.web.run]]
command = "systemctl enable nginx"
"#;
    let read = |text: &str, format| {
        let (doc, diagnostics) = config::parse(&Source::new("test", text, format));
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let validated = ctm::validate::validate(&doc, &ctm::lock::Lock::empty())
            .unwrap_or_else(|d| panic!("{d:?}"));
        validated.host.images[&Name::parse("web").unwrap()]
            .source
            .clone()
    };
    let source = read(kdl, Format::Kdl);
    assert_eq!(read(toml, Format::Toml), source);
    let ImageSource::Build {
        from,
        network,
        steps,
    } = source
    else {
        panic!("a build: {source:?}");
    };
    assert_eq!((from.as_str(), network), ("debian-bookworm", true));
    let kinds: Vec<&str> = steps
        .iter()
        .map(|s| match s {
            BuildStep::Run { .. } => "run",
            BuildStep::Copy { .. } => "copy",
            BuildStep::Env { .. } => "env",
        })
        .collect();
    assert_eq!(kinds, ["env", "run", "copy", "run"]);
}

/// A container of a built image: its first provisioning step names the
/// whole recipe, its parent's definition within, and each copy source
/// where the engine found it beside the host file; what `ctm apply`
/// builds through (`backend::provision::image_tree`).
#[test]
fn a_container_of_a_built_image_is_created_from_the_whole_recipe() {
    use ctm::compile::provision::{Action, BuildStep, RootfsSource, Step};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("motd"), "hi\n").unwrap();
    let path = dir.path().join("host.kdl");
    std::fs::write(
        &path,
        r#"
image "debian" {
    debootstrap suite="bookworm"
}
image "app" {
    from "debian"
    copy "motd" "/etc/motd"
    run "true"
}
container "web" {
    image "app"
}
"#,
    )
    .unwrap();
    let outcome = ctm::engine::load::load_and_validate(&path, None).unwrap();
    assert!(outcome.diagnostics.is_empty(), "{:?}", outcome.diagnostics);
    let host = &outcome.validated.as_ref().unwrap().host;
    let artifacts = ctm::compile::compile(host);
    let steps = &artifacts.files["etc/ctm/machines/web/provision.json"];
    let ctm::compile::Content::File { text, .. } = &steps.content else {
        panic!("a file");
    };
    let steps: Vec<Step> = serde_json::from_str(text).unwrap();
    let Action::CreateRootfs { image, source, .. } = &steps[0].action else {
        panic!("{:?}", steps[0]);
    };
    assert_eq!(image, "app");
    let motd = std::fs::canonicalize(dir.path()).unwrap().join("motd");
    assert_eq!(
        *source,
        RootfsSource::Build {
            parent: "debian".into(),
            from: Box::new(RootfsSource::Debootstrap {
                suite: "bookworm".into(),
                mirror: None,
                variant: None,
                packages: Vec::new(),
            }),
            network: false,
            steps: vec![
                BuildStep::Copy {
                    source: motd.display().to_string(),
                    destination: "/etc/motd".into(),
                },
                BuildStep::Run {
                    command: "true".into()
                },
            ],
        }
    );
}
