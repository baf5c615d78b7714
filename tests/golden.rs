//! Every example compiles, to exactly the files recorded in tests/golden/,
//! and each KDL example's TOML twin compiles to the same bytes.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use ctm::compile;
use ctm::config::Format;
use support::*;

/// The example host files (`examples/fleet.*` is a fleet of them,
/// checked in tests/fleet.rs).
fn examples() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("kdl" | "toml")))
        .filter(|p| p.file_stem().is_none_or(|s| s != "fleet"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no examples found");
    paths
}

fn compiled(path: &Path) -> (String, ctm::lock::Lock, compile::Artifacts) {
    let (text, lock) = example(path);
    let v = validated(
        &path.display().to_string(),
        &text,
        Format::from_path(path),
        &lock,
    );
    let artifacts = compile::compile(&v.host);
    (flatten(&artifacts), v.lock, artifacts)
}

#[test]
fn every_example_matches_its_golden_file() {
    for path in examples() {
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let (flat, _, _) = compiled(&path);
        assert_golden(
            &repo().join("tests/golden").join(format!("{stem}.txt")),
            &flat,
        );
    }
}

#[test]
fn kdl_and_toml_forms_compile_to_identical_bytes() {
    let mut pairs = 0;
    for kdl in examples()
        .into_iter()
        .filter(|p| p.extension().unwrap() == "kdl")
    {
        let toml = kdl.with_extension("toml");
        if !toml.exists() {
            continue;
        }
        pairs += 1;
        let (a, lock_a, _) = compiled(&kdl);
        let (b, lock_b, _) = compiled(&toml);
        assert_eq!(
            a,
            b,
            "{} and {} compile differently",
            kdl.display(),
            toml.display()
        );
        assert_eq!(
            lock_a,
            lock_b,
            "{} and {} assign different addresses",
            kdl.display(),
            toml.display()
        );
    }
    assert!(pairs > 0, "no example has both a KDL and a TOML form");
}

#[test]
fn committed_example_locks_are_up_to_date() {
    for path in examples() {
        let (_, new_lock, _) = compiled(&path);
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let committed = std::fs::read_to_string(&lock_path)
            .unwrap_or_else(|_| panic!("{} has no committed lock file", path.display()));
        assert_eq!(committed, new_lock.render(), "{:?} is stale", lock_path);
    }
}

#[test]
fn compiling_twice_gives_identical_bytes() {
    for path in examples() {
        assert_eq!(compiled(&path).0, compiled(&path).0);
    }
}

/// The ruleset must load: `nft -c -f` checks it against the kernel without
/// applying it, in a private network namespace so nothing on the machine
/// is touched.
#[test]
fn every_ruleset_passes_nft_check() {
    let nft = ["/usr/sbin/nft", "/sbin/nft"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if skip_unless(
        nft.is_some(),
        "nft is not installed (apt-get install nftables)",
    ) {
        return;
    }
    if skip_unless(is_root(), "nft -c needs root (CAP_NET_ADMIN)") {
        return;
    }
    let nft = nft.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for path in examples() {
        let (_, _, artifacts) = compiled(&path);
        let compile::Content::File { text, .. } = &artifacts.files[compile::NFT_RULESET].content
        else {
            panic!("the ruleset is not a file");
        };
        let file = dir.path().join("ctm.nft");
        std::fs::write(&file, text).unwrap();
        let output = Command::new("unshare")
            .args(["--net", nft, "-c", "-f"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "nft -c rejected the ruleset of {}:\n{}\n{text}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn committed_schema_is_up_to_date() {
    let path = repo().join("schema/ctm.schema.json");
    let generated = ctm::schema::render();
    if std::env::var_os("CTM_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/ctm.schema.json is stale: run `cargo run -- schema > schema/ctm.schema.json`"
    );
}

/// The committed schema accepts every TOML example and refuses a typo, so
/// editors that use it agree with ctm.
#[test]
fn the_schema_accepts_the_toml_examples_and_refuses_unknown_keys() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("schema/ctm.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
    let mut checked = 0;
    for path in examples()
        .into_iter()
        .filter(|p| p.extension().unwrap() == "toml")
    {
        let text = std::fs::read_to_string(&path).unwrap();
        let instance: serde_json::Value = toml::from_str(&text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{} does not match the schema: {errors:?}",
            path.display()
        );
        checked += 1;

        let typo: serde_json::Value =
            toml::from_str(&text.replace("bridge = ", "brige = ")).unwrap();
        assert!(
            !validator.is_valid(&typo),
            "the schema accepts `brige` in {}",
            path.display()
        );
    }
    assert!(checked > 0);
}

#[test]
fn an_overlay_root_compiles_to_the_mount_unit_nspawn_requires() {
    let text = "image \"deb\" {\n    debootstrap suite=\"bookworm\"\n}\n\
                container \"my-web\" {\n    image \"deb\"\n    root \"overlay\"\n}\n\
                container \"db\" {\n    image \"deb\"\n}\n";
    let v = validated(
        "overlay.kdl",
        text,
        Format::Kdl,
        &ctm::lock::Lock::default(),
    );
    let artifacts = compile::compile(&v.host);
    // Named as systemd escapes /var/lib/machines/my-web: the stock
    // systemd-nspawn@.service's RequiresMountsFor= finds it by that name.
    let unit = artifacts
        .files
        .get("etc/systemd/system/var-lib-machines-my\\x2dweb.mount")
        .expect("the mount unit");
    let flat = flatten(&artifacts);
    assert!(
        flat.contains(
            "[Mount]\nWhat=overlay\nWhere=/var/lib/machines/my-web\nType=overlay\n\
             Options=lowerdir=/var/lib/ctm/overlays/my-web/lower,\
             upperdir=/var/lib/ctm/overlays/my-web/upper,\
             workdir=/var/lib/ctm/overlays/my-web/work,metacopy=on\n"
        ),
        "{flat}"
    );
    assert!(
        flat.contains("RequiresMountsFor=/var/lib/ctm/overlays/my-web\n"),
        "{flat}"
    );
    assert!(matches!(unit.owner, compile::Owner::Container(ref n) if n.as_str() == "my-web"));
    // Another kind of root has no mount unit.
    assert!(!flat.contains("var-lib-machines-db.mount"), "{flat}");
}

/// With topology `bgp` down, examples/topology.kdl compiles without the
/// bridge of its network, its link's unit and its containers' autostart
/// links; the containers keep their files (so their trees and volumes are
/// never pruned) and health.json says they are down.
#[test]
fn a_down_topology_leaves_out_its_bridges_links_and_autostart() {
    let path = repo().join("examples/topology.kdl");
    let (text, lock) = example(&path);
    let mut v = validated("topology.kdl", &text, Format::Kdl, &lock);
    let up = compile::compile(&v.host);
    let bgp = ctm::model::Name::parse("bgp").unwrap();
    v.host.set_down(&[bgp].into());
    let down = compile::compile(&v.host);
    assert_golden(
        &repo().join("tests/golden/topology-down.txt"),
        &flatten(&down),
    );
    let gone: Vec<&String> = up
        .files
        .keys()
        .filter(|p| !down.files.contains_key(*p))
        .collect();
    assert_eq!(
        gone,
        [
            "etc/ctm/ctm-link",
            "etc/systemd/network/50-ctm-br-ab.netdev",
            "etc/systemd/network/50-ctm-br-ab.network",
            "etc/systemd/system/ctm-link-r1:to-r2.service",
            "etc/systemd/system/machines.target.wants/systemd-nspawn@r1.service",
            "etc/systemd/system/machines.target.wants/systemd-nspawn@r2.service",
            "etc/systemd/system/systemd-nspawn@r1.service.wants/ctm-link-r1:to-r2.service",
            "etc/systemd/system/systemd-nspawn@r2.service.wants/ctm-link-r1:to-r2.service",
        ]
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .iter()
        .collect::<Vec<_>>(),
    );
    assert!(down.files.contains_key("etc/systemd/nspawn/r1.nspawn"));
    let health = compile::health::of(&down).unwrap();
    assert_eq!(health.containers["r1"].down.as_deref(), Some("bgp"));
    assert!(!health.containers["r1"].autostart);
    assert_eq!(health.containers["web"].down, None);
    assert!(health.topologies["bgp"].down);
    assert!(!health.links.contains_key("br-ab"));
}
