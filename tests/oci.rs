//! OCI images pulled from a real registry: Debian's `docker-registry`
//! (the distribution project's registry), started by each test on
//! 127.0.0.1 with a port and a storage directory of its own, and stopped
//! by pid. Each test builds an OCI image layout itself (a busybox-static
//! layer, then a layer that deletes a file with a whiteout and replaces a
//! directory with an opaque one), pushes it with `skopeo copy`, and lets
//! ctm pull it as a container's first provisioning step does
//! (`backend::provision::before_boot`).

#[path = "lab/mod.rs"]
mod lab;
mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ctm::backend::provision::{IMAGE_STORE, before_boot};
use ctm::compile::provision::{RootfsSource, rootfs_step};
use ctm::layout::OCI_BLOBS;
use ctm::model::RootMode;
use ctm::model::oci::Digest;
use support::*;

const REGISTRY: &str = "/usr/bin/docker-registry";
const SKOPEO: &str = "/usr/bin/skopeo";
const BUSYBOX: &str = "/bin/busybox";

/// True (after saying so) when the tests cannot run here.
fn skipped() -> bool {
    skip_unless(
        is_root()
            && [REGISTRY, SKOPEO, BUSYBOX]
                .iter()
                .all(|p| Path::new(p).exists()),
        "the OCI tests need root and Debian's docker-registry, skopeo and busybox-static",
    )
}

/// A registry of the test's own, killed (by its pid) when dropped.
struct Registry {
    child: Child,
    port: u16,
    storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        Registry::start_with("")
    }

    /// A registry with `auth`, a part of its configuration (`auth:` …).
    fn start_with(auth: &str) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("ctm-oci-registry")
            .tempdir_in("/var/tmp")
            .unwrap();
        let storage = dir.path().join("storage");
        // A free port: the kernel picks one, and the registry takes it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
                storage.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let registry = Registry {
            child,
            port,
            storage,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not listen on {port}: {}",
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes the OCI layout `layout` (tag `tag`) as `repo:tag`.
    fn push(&self, layout: &Path, tag: &str, repo: &str) {
        self.push_as(layout, tag, repo, None);
    }

    /// [`Registry::push`], logged in as `USER:PASSWORD`.
    fn push_as(&self, layout: &Path, tag: &str, repo: &str, login: Option<&str>) {
        let mut command = Command::new(SKOPEO);
        if let Some(login) = login {
            command.arg("copy").arg(format!("--dest-creds={login}"));
        } else {
            command.arg("copy");
        }
        let out = command
            // --all: an index with all its images, not only this machine's.
            .args(["--all", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://127.0.0.1:{}/{repo}:{tag}", self.port))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The registry's own file of blob `digest`.
    fn blob_file(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One entry of a test layer.
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
    Link(&'a str, &'a str),
}

/// A gzip-compressed layer: its bytes and the digest of its tar (the
/// config's diff id).
fn layer(entries: &[E<'_>]) -> (Vec<u8>, Digest) {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let (path, kind, mode, data, link): (&str, _, u32, &[u8], _) = match e {
            E::Dir(p) => (p, tar::EntryType::Directory, 0o755, b"", None),
            E::File(p, d, m) => (p, tar::EntryType::Regular, *m, d, None),
            E::Link(p, t) => (p, tar::EntryType::Symlink, 0o777, b"", Some(*t)),
        };
        let raw = &mut h.as_old_mut().name;
        raw[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(t) = link {
            h.as_old_mut().linkname[..t.len()].copy_from_slice(t.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_cksum();
        builder.append(&h, data).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let diff_id = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// Writes an OCI image layout at `dir` with these layers, tagged `tag`;
/// the manifest's digest and the layers' digests.
fn image_layout(dir: &Path, tag: &str, layers: &[(Vec<u8>, Digest)]) -> (Digest, Vec<Digest>) {
    let (manifest, size, digests) = put_image(dir, "amd64", layers);
    write_index(
        dir,
        tag,
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
        size,
    );
    (manifest, digests)
}

/// A blob into the layout at `dir`: its digest and size.
fn put(dir: &Path, bytes: &[u8]) -> (Digest, usize) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let digest = Digest::of(bytes);
    std::fs::write(blobs.join(digest.hex()), bytes).unwrap();
    (digest, bytes.len())
}

/// An image for `arch` into the layout's blobs: its manifest's digest and
/// size, and its layers' digests.
fn put_image(dir: &Path, arch: &str, layers: &[(Vec<u8>, Digest)]) -> (Digest, usize, Vec<Digest>) {
    let runs = serde_json::json!({"Entrypoint": ["/bin/busybox", "echo", "hello from oci"]});
    put_image_running(dir, arch, layers, runs)
}

/// [`put_image`] with `runs` as the config's `config` (what it runs).
fn put_image_running(
    dir: &Path,
    arch: &str,
    layers: &[(Vec<u8>, Digest)],
    runs: serde_json::Value,
) -> (Digest, usize, Vec<Digest>) {
    let mut descriptors = Vec::new();
    let mut digests = Vec::new();
    for (bytes, _) in layers {
        let (digest, size) = put(dir, bytes);
        descriptors.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest.as_str(), "size": size,
        }));
        digests.push(digest);
    }
    let config = serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": runs,
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(_, d)| d.as_str()).collect::<Vec<_>>()},
    });
    let (config_digest, config_size) = put(dir, config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest.as_str(), "size": config_size},
        "layers": descriptors,
    });
    let (manifest_digest, manifest_size) = put(dir, manifest.to_string().as_bytes());
    (manifest_digest, manifest_size, digests)
}

/// The layout's `index.json`, naming `digest` (of `media_type`) as `tag`.
fn write_index(dir: &Path, tag: &str, media_type: &str, digest: &Digest, size: usize) {
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": media_type,
            "digest": digest.as_str(), "size": size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// A multi-architecture image: an image index with one image for each
/// of `arches` (a file `/arch` saying which), tagged `tag`; the index's
/// digest.
fn multi_arch_layout(dir: &Path, tag: &str, arches: &[&str]) -> Digest {
    let manifests: Vec<serde_json::Value> = arches
        .iter()
        .map(|arch| {
            let (digest, size, _) = put_image(
                dir,
                arch,
                &[layer(&[E::File("arch", arch.as_bytes(), 0o644)])],
            );
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest.as_str(), "size": size,
                "platform": {"architecture": arch, "os": "linux"},
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let (digest, size) = put(dir, index.to_string().as_bytes());
    write_index(
        dir,
        tag,
        "application/vnd.oci.image.index.v1+json",
        &digest,
        size,
    );
    digest
}

/// The test image: busybox with a shell link, a file and a directory the
/// second layer deletes (whiteout) and replaces (opaque).
fn busybox_layers() -> Vec<(Vec<u8>, Digest)> {
    let busybox = std::fs::read(BUSYBOX).unwrap();
    vec![
        layer(&[
            E::Dir("bin/"),
            E::File("bin/busybox", &busybox, 0o755),
            E::Link("bin/sh", "busybox"),
            E::Dir("etc/"),
            E::File("etc/os-release", b"ID=busybox\n", 0o644),
            E::File("etc/removed", b"gone soon\n", 0o644),
            E::Dir("opt/"),
            E::Dir("opt/data/"),
            E::File("opt/data/old", b"old\n", 0o644),
        ]),
        layer(&[
            E::File("etc/.wh.removed", b"", 0o644),
            E::Dir("opt/data/"),
            E::File("opt/data/.wh..wh..opq", b"", 0o644),
            E::File("opt/data/new", b"new\n", 0o644),
        ]),
    ]
}

/// A root for ctm to provision into.
fn root() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ctm-oci-root")
        .tempdir_in("/var/tmp")
        .unwrap()
}

/// Runs the rootfs step of container `name` from `source`; the progress
/// lines, or the error with them.
fn provision(root: &Path, name: &str, source: RootfsSource) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    let step = rootfs_step(name, "app", source, RootMode::Auto);
    match before_boot(root, name, &[step], &mut |l| lines.push(l.to_string())) {
        Ok(_) => Ok(lines),
        Err(e) => Err(format!("{e}\nprogress:\n{}", lines.join("\n"))),
    }
}

fn oci(reference: String) -> RootfsSource {
    RootfsSource::Oci {
        reference,
        credentials: None,
        insecure: false,
    }
}

/// What a root's store and blob cache hold, to show nothing half-made is
/// left: the names in the image store and in the blob cache.
fn leftovers(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for dir in [IMAGE_STORE, OCI_BLOBS, "var/lib/machines"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            names.extend(
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains("ctm-"))
                    .map(|n| format!("{dir}/{n}")),
            );
        }
    }
    names
}

#[test]
fn an_image_is_pulled_verified_and_its_layers_applied_with_whiteouts() {
    if skipped() {
        return;
    }
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let (manifest, _) = image_layout(work.path(), "v1", &busybox_layers());
    registry.push(work.path(), "v1", "test/busybox");
    let root = root();
    let reference = format!("127.0.0.1:{}/test/busybox:v1", registry.port);

    let lines = provision(root.path(), "first", oci(reference.clone())).unwrap();
    let said = lines.join("\n");
    // The tag's resolution, and each layer, are reported as they happen.
    assert!(
        said.contains(&format!("{reference} resolved to {manifest}")),
        "{said}"
    );
    assert!(said.contains("layer 1/2 sha256:"), "{said}");
    assert!(said.contains("applied layer 2/2"), "{said}");

    let tree = root.path().join("var/lib/machines/first");
    assert!(tree.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(tree.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(
        !tree.join("etc/removed").exists(),
        "the whiteout deleted it"
    );
    assert!(!tree.join("etc/.wh.removed").exists());
    let data: Vec<String> = std::fs::read_dir(tree.join("opt/data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        data,
        ["new"],
        "the opaque directory has only its own layer's file"
    );
    // The tree runs: busybox from the image.
    let out = Command::new("chroot")
        .arg(&tree)
        .args([
            "/bin/sh",
            "-c",
            "echo hello from $(/bin/busybox cat /opt/data/new)",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from new\n");

    // The next container, pinned to the digest the tag resolved to: from
    // the store, with nothing fetched again.
    let pinned = format!("{reference}@{manifest}");
    std::fs::remove_dir_all(root.path().join(IMAGE_STORE)).unwrap();
    let again = provision(root.path(), "second", oci(pinned.clone())).unwrap();
    assert!(!again.join("\n").contains("resolved to"), "{again:?}");
    assert!(
        root.path()
            .join("var/lib/machines/second/bin/busybox")
            .exists()
    );
    // The third is copied from the store: nothing pulled, nothing hashed,
    // even with the registry gone.
    drop(registry);
    let cached = provision(root.path(), "third", oci(pinned)).unwrap();
    assert!(
        cached.iter().any(|l| l.contains("is in the store")),
        "{cached:?}"
    );
    assert!(!cached.iter().any(|l| l.contains("layer")), "{cached:?}");
    assert!(
        leftovers(root.path()).is_empty(),
        "{:?}",
        leftovers(root.path())
    );
}

#[test]
fn a_tampered_blob_or_a_wrong_pinned_digest_is_refused_with_nothing_made_and_a_retry_resumes() {
    if skipped() {
        return;
    }
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let (manifest, layers) = image_layout(work.path(), "v1", &busybox_layers());
    registry.push(work.path(), "v1", "test/busybox");
    let root = root();
    let reference = format!("127.0.0.1:{}/test/busybox:v1", registry.port);

    // A digest that is not the image's: the registry has no such
    // manifest, and says so.
    let wrong = Digest::of(b"another image");
    let err = provision(root.path(), "web", oci(format!("{reference}@{wrong}"))).unwrap_err();
    assert!(
        err.contains(&format!(
            "manifests/{wrong}: 404 Not Found: MANIFEST_UNKNOWN"
        )),
        "{err}"
    );
    assert_ne!(wrong, manifest);

    // One byte of the second layer flipped in the registry's storage.
    let file = registry.blob_file(&layers[1]);
    let good = std::fs::read(&file).unwrap();
    let mut bytes = good.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let err = provision(root.path(), "web", oci(reference.clone())).unwrap_err();
    assert!(err.contains(&format!("layer {}", layers[1])), "{err}");
    assert!(
        err.contains("it is not the blob asked for, and is refused"),
        "{err}"
    );
    // Nothing half-made: no container, no image, no partial blob, and the
    // bad layer is not in the cache.
    assert!(!root.path().join("var/lib/machines/web").exists());
    assert!(
        std::fs::read_dir(root.path().join(IMAGE_STORE)).is_err()
            || std::fs::read_dir(root.path().join(IMAGE_STORE))
                .unwrap()
                .next()
                .is_none()
    );
    assert!(!root.path().join(OCI_BLOBS).join(layers[1].hex()).exists());
    assert!(
        leftovers(root.path()).is_empty(),
        "{:?}",
        leftovers(root.path())
    );

    // Repaired, the retry takes the first layer from the cache.
    std::fs::write(&file, good).unwrap();
    let lines = provision(root.path(), "web", oci(reference.clone())).unwrap();
    let said = lines.join("\n");
    assert!(
        said.contains(&format!("layer 1/2 {} (1.1 MiB, in the cache)", layers[0])),
        "{said}"
    );
    assert!(
        said.contains(&format!("layer 2/2 {} (0.0 MiB)", layers[1])),
        "{said}"
    );

    // With the registry gone, a pinned image whose blobs are all cached
    // is made again without it.
    drop(registry);
    std::fs::remove_dir_all(root.path().join(IMAGE_STORE)).unwrap();
    let pinned = format!("{reference}@{manifest}");
    provision(root.path(), "offline", oci(pinned)).unwrap();
    assert!(
        root.path()
            .join("var/lib/machines/offline/bin/busybox")
            .exists()
    );
}

/// A loopback proxy in front of a registry, one request per connection,
/// that logs each request's path and cuts the answer for one path (its
/// head and half its body, then the connection closed, as a registry
/// stopped mid-transfer does) once.
struct Cutter {
    port: u16,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Cutter {
    fn start(upstream: u16, cut: String) -> Cutter {
        use std::io::{BufRead as _, BufReader, Read as _};
        use std::sync::{Arc, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let cut = Arc::new(Mutex::new(Some(cut)));
        let log = requests.clone();
        // The thread ends with the test's process; it holds no resource
        // beyond the listener.
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { continue };
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut head = Vec::new();
                let mut path = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if path.is_empty() {
                        path = line.split(' ').nth(1).unwrap_or("").to_string();
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if !line.to_ascii_lowercase().starts_with("connection:") {
                        head.push(line);
                    }
                }
                head.push("Connection: close\r\n\r\n".into());
                log.lock().unwrap().push(path.clone());
                let mut server = std::net::TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                server.write_all(head.concat().as_bytes()).unwrap();
                let mut answer = Vec::new();
                let _ = server.read_to_end(&mut answer);
                let mut armed = cut.lock().unwrap();
                if armed.as_deref().is_some_and(|c| path.ends_with(c)) {
                    *armed = None;
                    let body = answer
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map_or(0, |p| p + 4);
                    let _ = client.write_all(&answer[..body + (answer.len() - body) / 2]);
                } else {
                    let _ = client.write_all(&answer);
                }
                let _ = client.shutdown(std::net::Shutdown::Both);
            }
        });
        Cutter { port, requests }
    }

    /// The paths asked since the last call.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

#[test]
fn a_registry_gone_mid_pull_is_named_and_the_retry_fetches_only_the_missing_blobs() {
    if skipped() {
        return;
    }
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let mut layers = busybox_layers();
    layers.push(layer(&[E::File("etc/third", b"third\n", 0o644)]));
    let (_, digests) = image_layout(work.path(), "v1", &layers);
    registry.push(work.path(), "v1", "test/busybox");
    let cutter = Cutter::start(registry.port, format!("/blobs/{}", digests[1]));
    let root = root();
    let reference = format!("127.0.0.1:{}/test/busybox:v1", cutter.port);

    let err = provision(root.path(), "web", oci(reference.clone())).unwrap_err();
    // Which registry, which blob, and what went wrong.
    assert!(err.contains(&format!("layer {}", digests[1])), "{err}");
    assert!(
        err.contains(&format!(
            "http://127.0.0.1:{}/v2/test/busybox/blobs/",
            cutter.port
        )),
        "{err}"
    );
    let asked = cutter.take();
    assert!(
        asked.iter().any(|p| p.ends_with(digests[0].as_str())),
        "{asked:?}"
    );
    assert!(
        !asked.iter().any(|p| p.ends_with(digests[2].as_str())),
        "nothing after the failed layer is fetched: {asked:?}"
    );
    // Nothing half-made, and the first layer is kept.
    assert!(!root.path().join("var/lib/machines/web").exists());
    assert!(root.path().join(OCI_BLOBS).join(digests[0].hex()).exists());
    assert!(!root.path().join(OCI_BLOBS).join(digests[1].hex()).exists());
    assert!(
        leftovers(root.path()).is_empty(),
        "{:?}",
        leftovers(root.path())
    );

    // The retry asks for the manifest again (a tag may have moved) and
    // for the two missing layers only.
    let lines = provision(root.path(), "web", oci(reference)).unwrap();
    let said = lines.join("\n");
    assert!(
        said.contains(&format!("layer 1/3 {} (1.1 MiB, in the cache)", digests[0])),
        "{said}"
    );
    let blobs: Vec<String> = cutter
        .take()
        .into_iter()
        .filter(|p| p.contains("/blobs/"))
        .collect();
    assert_eq!(
        blobs,
        [1, 2].map(|i| format!("/v2/test/busybox/blobs/{}", digests[i])),
        "{said}"
    );
    let tree = root.path().join("var/lib/machines/web");
    assert_eq!(std::fs::read(tree.join("etc/third")).unwrap(), b"third\n");
    assert!(!tree.join("etc/removed").exists());
}

#[test]
fn a_hostile_layer_is_refused_and_leaves_nothing() {
    if skipped() {
        return;
    }
    let registry = Registry::start();
    let root = root();
    let outside = tempfile::tempdir().unwrap();
    let escape = outside.path().display().to_string();
    let cases: [(&str, Vec<E<'_>>, &str); 2] = [
        (
            "dotdot",
            vec![E::File("../../../../../../tmp/ctm-oci-pwned", b"x", 0o644)],
            "`..` in a layer's path",
        ),
        (
            "symlink",
            vec![
                E::Link("escape", &escape),
                E::File("escape/pwned", b"x", 0o644),
            ],
            "`escape` is a symbolic link",
        ),
    ];
    for (repo, entries, expected) in cases {
        let work = tempfile::tempdir().unwrap();
        image_layout(work.path(), "v1", &[layer(&entries)]);
        registry.push(work.path(), "v1", repo);
        let reference = format!("127.0.0.1:{}/{repo}:v1", registry.port);
        let err = provision(root.path(), repo, oci(reference)).unwrap_err();
        assert!(err.contains(expected), "{repo}: {err}");
        assert!(!root.path().join("var/lib/machines").join(repo).exists());
    }
    assert!(!Path::new("/tmp/ctm-oci-pwned").exists());
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    assert!(
        leftovers(root.path()).is_empty(),
        "{:?}",
        leftovers(root.path())
    );
}

#[test]
fn an_oci_archive_is_verified_and_unpacked() {
    if skipped() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let (manifest, _) = image_layout(&layout, "v1", &busybox_layers());
    let root = root();
    // Paths in a host file are the root's.
    let archive = root.path().join("srv/app.tar");
    std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
    let out = Command::new(SKOPEO)
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("oci-archive:{}", archive.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let source = RootfsSource::OciArchive {
        path: "/srv/app.tar".into(),
    };
    let lines = provision(root.path(), "web", source).unwrap();
    assert!(
        lines.iter().any(|l| l.contains("blobs verified")),
        "{lines:?}"
    );
    let tree = root.path().join("var/lib/machines/web");
    assert!(tree.join("bin/busybox").is_file());
    assert!(!tree.join("etc/removed").exists());
    assert!(root.path().join(OCI_BLOBS).join(manifest.hex()).exists());

    // A byte of the busybox layer (the largest blob) flipped inside the
    // archive: refused as it is read.
    let mut bytes = std::fs::read(&archive).unwrap();
    let (first, _) = busybox_layers().remove(0);
    let at = bytes
        .windows(64)
        .position(|w| w == &first[..64])
        .expect("the layer is in the archive");
    bytes[at + first.len() / 2] ^= 0xff;
    let fresh = self::root();
    let tampered = fresh.path().join("srv/app.tar");
    std::fs::create_dir_all(tampered.parent().unwrap()).unwrap();
    std::fs::write(&tampered, bytes).unwrap();
    let err = provision(
        fresh.path(),
        "web",
        RootfsSource::OciArchive {
            path: "/srv/app.tar".into(),
        },
    )
    .unwrap_err();
    assert!(err.contains("is not the blob asked for"), "{err}");
    assert!(
        leftovers(fresh.path()).is_empty(),
        "{:?}",
        leftovers(fresh.path())
    );
}

fn ctm(args: &[&str], cwd: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ctm"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_tag_is_resolved_when_planning_and_the_lock_keeps_it_from_moving() {
    if skipped() {
        return;
    }
    let registry = Registry::start();
    let first = tempfile::tempdir().unwrap();
    let (v1, _) = image_layout(first.path(), "v1", &busybox_layers());
    registry.push(first.path(), "v1", "test/app");
    let work = tempfile::tempdir().unwrap();
    let host = |tag: &str| {
        format!(
            "image \"app\" {{\n    oci \"127.0.0.1:{}/test/app:{tag}\"\n}}\n\ncontainer \"web\" {{\n    image \"app\"\n}}\n",
            registry.port
        )
    };
    std::fs::write(work.path().join("host.kdl"), host("v1")).unwrap();
    let root = work.path().join("root");
    let root_arg = root.to_str().unwrap();

    // The plan says what the tag resolved to.
    let (ok, said) = ctm(&["plan", "host.kdl", "--root", root_arg], work.path());
    assert!(ok, "{said}");
    let resolved = format!("test/app:v1 resolved to {v1}; the lock file pins it");
    assert!(said.contains(&resolved), "{said}");

    // Applying records it in the lock, and the compiled step pulls by it.
    let (ok, said) = ctm(
        &["apply", "host.kdl", "--root", root_arg, "--yes"],
        work.path(),
    );
    assert!(ok, "{said}");
    let lock = std::fs::read_to_string(work.path().join("host.kdl.lock")).unwrap();
    assert!(lock.contains("[images.app]"), "{lock}");
    assert!(lock.contains(&format!("digest = \"{v1}\"")), "{lock}");
    let steps = std::fs::read_to_string(root.join("etc/ctm/machines/web/provision.json")).unwrap();
    assert!(steps.contains(&format!("test/app:v1@{v1}")), "{steps}");

    // The tag moves on the registry; the host does not.
    let second = tempfile::tempdir().unwrap();
    let mut layers = busybox_layers();
    layers.push(layer(&[E::File("etc/v2", b"2\n", 0o644)]));
    let (v2, _) = image_layout(second.path(), "v1", &layers);
    registry.push(second.path(), "v1", "test/app");
    assert_ne!(v1, v2);
    let (ok, said) = ctm(&["plan", "host.kdl", "--root", root_arg], work.path());
    assert!(ok, "{said}");
    assert!(!said.contains("resolved to"), "{said}");
    assert!(!said.contains("provision.json"), "{said}");

    // A changed reference is resolved again.
    registry.push(second.path(), "v1", "test/app2");
    std::fs::write(
        work.path().join("host.kdl"),
        host("v1").replace("test/app:", "test/app2:"),
    )
    .unwrap();
    let (ok, said) = ctm(
        &["apply", "host.kdl", "--root", root_arg, "--yes"],
        work.path(),
    );
    assert!(ok, "{said}");
    assert!(
        said.contains(&format!("test/app2:v1 resolved to {v2}")),
        "{said}"
    );
    let lock = std::fs::read_to_string(work.path().join("host.kdl.lock")).unwrap();
    assert!(lock.contains(&format!("digest = \"{v2}\"")), "{lock}");
    assert!(!lock.contains(v1.as_str()), "{lock}");
}

#[test]
fn images_are_listed_pulled_refused_while_used_and_removed() {
    if skipped() {
        return;
    }
    let registry = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let (manifest, _) = image_layout(layout.path(), "v1", &busybox_layers());
    registry.push(layout.path(), "v1", "test/app");
    let work = tempfile::tempdir().unwrap();
    let image = format!(
        "image \"app\" {{\n    oci \"127.0.0.1:{}/test/app:v1\"\n}}\n",
        registry.port
    );
    let with_container = format!("{image}\ncontainer \"web\" {{\n    image \"app\"\n}}\n");
    std::fs::write(work.path().join("host.kdl"), &with_container).unwrap();
    let root = work.path().join("root");
    let r = root.to_str().unwrap();
    let run = |args: &[&str]| ctm(args, work.path());
    let images_json = || {
        let (ok, said) = run(&["images", "--root", r, "--json"]);
        assert!(ok, "{said}");
        serde_json::from_str::<serde_json::Value>(&said).unwrap()
    };

    let (ok, said) = run(&["apply", "host.kdl", "--root", r, "--yes"]);
    assert!(ok, "{said}");
    // Defined and used, not pulled yet (a root that is not the running
    // system runs no provisioning).
    let listed = images_json();
    assert_eq!(listed[0]["name"], "app", "{listed}");
    assert_eq!(listed[0]["containers"], serde_json::json!(["web"]));
    assert_eq!(listed[0]["size"], serde_json::Value::Null);

    let (ok, said) = run(&["image", "pull", "app", "--root", r]);
    assert!(ok, "{said}");
    assert!(said.contains("applied layer 2/2"), "{said}");
    let listed = images_json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["digest"], manifest.as_str());
    assert!(listed[0]["size"].as_u64().unwrap() > 1_000_000, "{listed}");
    assert_eq!(
        listed[0]["source"],
        format!("oci 127.0.0.1:{}/test/app:v1@{manifest}", registry.port)
    );
    let (ok, table) = run(&["images", "--root", r]);
    assert!(
        ok && table.contains("app") && table.contains("web"),
        "{table}"
    );

    // In use: refused, nothing removed.
    let (ok, said) = run(&["image", "rm", "app", "--root", r]);
    assert!(!ok, "{said}");
    assert!(
        said.contains("image app is used by web of generation 1"),
        "{said}"
    );
    assert!(images_json()[0]["size"].is_u64());

    // Without its container the image is an older generation's; removing
    // it removes its blobs too.
    std::fs::write(work.path().join("host.kdl"), &image).unwrap();
    let (ok, said) = run(&["apply", "host.kdl", "--root", r, "--yes"]);
    assert!(ok, "{said}");
    assert_eq!(images_json()[0]["current"], false);
    let (ok, said) = run(&["image", "rm", "app", "--root", r]);
    assert!(ok, "{said}");
    assert!(said.contains("Removed image"), "{said}");
    assert!(said.contains("Removed 4 blobs of the OCI cache"), "{said}");
    assert_eq!(images_json(), serde_json::json!([]));
    let (ok, said) = run(&["image", "rm", "app", "--root", r]);
    assert!(
        !ok && said.contains("there is no image app in the image store"),
        "{said}"
    );

    // Pulled from a host file, then collected by gc once no generation
    // uses it.
    let (ok, said) = run(&["image", "pull", "app", "host.kdl", "--root", r]);
    assert!(ok, "{said}");
    assert!(
        std::fs::read_dir(root.join(OCI_BLOBS))
            .unwrap()
            .next()
            .is_some()
    );
    let (ok, said) = run(&["gc", "--keep", "1", "--root", r]);
    assert!(ok, "{said}");
    assert!(said.contains("Removed image"), "{said}");
    assert!(
        std::fs::read_dir(root.join(OCI_BLOBS))
            .unwrap()
            .next()
            .is_none()
    );
    let (ok, said) = run(&["image", "pull", "nope", "host.kdl", "--root", r]);
    assert!(
        !ok && said.contains("there is no image nope in host.kdl"),
        "{said}"
    );
}

/// A whole tree as one gzip layer (links kept as links), with its diff id.
fn tree_layer(dir: &Path) -> (Vec<u8>, Digest) {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", dir).unwrap();
    let tar = builder.into_inner().unwrap();
    let diff_id = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// A lab named `name` with `host` as its host file, serving `registry`'s
/// storage on its own 127.0.0.1:5000 (read-only), up and answering.
fn lab_with_registry(name: &str, registry: &Registry, host: &str) -> lab::Lab {
    let storage = format!("--bind-ro={}:/srv/registry", registry.storage.display());
    let binary = format!("--bind-ro={REGISTRY}:/usr/local/bin/docker-registry");
    let lab = lab::scenario::lab_with_args(name, host, &[&storage, &binary]);
    lab.write(
        "/root/registry.yml",
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: /srv/registry\n  maintenance:\n    uploadpurging:\n      enabled: false\n    readonly:\n      enabled: true\nhttp:\n  addr: 127.0.0.1:5000\n",
    );
    lab.ok(&[
        "systemd-run",
        "--unit=registry",
        "/usr/local/bin/docker-registry",
        "serve",
        "/root/registry.yml",
    ]);
    lab::scenario::eventually("the lab's registry", Duration::from_secs(20), || {
        let out = lab.run(&["nc", "-z", "127.0.0.1", "5000"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(lab::show_output(&out))
        }
    });
    lab
}

/// End to end in a real systemd host: a container of a busybox image
/// that is not booted runs the image's entrypoint and command, with its
/// environment and working directory (a command line whose quotes and
/// `$` must reach the shell as they are); its line reaches the journal.
#[test]
fn an_application_container_runs_its_entrypoint_in_a_lab() {
    let available = lab::Lab::available();
    if skip_unless(available.is_ok(), &available.err().unwrap_or_default()) || skipped() {
        return;
    }
    let registry = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let script = r#"echo "$GREETING in $(pwd) it's" | tee /said; exec sleep 3600"#;
    let runs = serde_json::json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": [script],
        "Env": ["PATH=/bin", "GREETING=hello from the entrypoint"],
        "WorkingDir": "/opt/data",
    });
    let (manifest, size, _) = put_image_running(layout.path(), "amd64", &busybox_layers(), runs);
    write_index(
        layout.path(),
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
        size,
    );
    registry.push(layout.path(), "v1", "test/hello");
    let host = r#"
host "lab" {
    uplink "host0"
}

image "hello" {
    oci "127.0.0.1:5000/test/hello:v1"
}

container "hello" {
    image "hello"
}
"#;
    let lab = lab_with_registry("oci-app", &registry, host);
    let plan = lab::scenario::ctm_ok(&lab, &["plan", "/root/host.kdl"]);
    assert!(
        plan.contains("new container, runs /bin/sh -c 'echo \"$GREETING in $(pwd) it'\"'\"'s\""),
        "{plan}"
    );
    lab::scenario::ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    let expected = "hello from the entrypoint in /opt/data it's";
    let said = lab.ok(&["cat", "/var/lib/machines/hello/said"]);
    assert_eq!(said.trim(), expected);
    lab::scenario::eventually("the line in the journal", Duration::from_secs(20), || {
        let out = lab.ok(&["journalctl", "--unit=systemd-nspawn@hello", "--output=cat"]);
        if out.contains(expected) {
            Ok(())
        } else {
            Err(out)
        }
    });
    let state = lab.ok(&["systemctl", "is-active", "systemd-nspawn@hello"]);
    assert_eq!(state.trim(), "active");
    // It has no journal of its own: `ctm logs` shows the unit's.
    let logs = lab::scenario::ctm_ok(&lab, &["logs", "hello"]);
    assert!(logs.contains(expected), "{logs}");
}

/// End to end in a real systemd host: the lab's slim guest tree, with a
/// layer on top that deletes `/etc/motd` and adds a file, is pushed to a
/// registry; a registry in the lab serves that storage on the lab's own
/// loopback; `ctm apply` in the lab resolves the tag, pulls, unpacks and
/// boots a container from it, and `ctm exec` runs a command in it.
#[test]
fn a_container_made_from_a_pulled_image_boots_and_runs_a_command_in_a_lab() {
    let available = lab::Lab::available();
    if skip_unless(available.is_ok(), &available.err().unwrap_or_default()) || skipped() {
        return;
    }
    let registry = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let guest = lab::Lab::guest_image();
    let (manifest, _) = image_layout(
        layout.path(),
        "v1",
        &[
            tree_layer(&guest),
            layer(&[
                E::File("etc/.wh.motd", b"", 0o644),
                E::File("etc/oci-marker", b"made from a pulled image\n", 0o644),
            ]),
        ],
    );
    registry.push(layout.path(), "v1", "test/guest");

    let host = r#"
host "lab" {
    uplink "host0"
}

image "app" {
    oci "127.0.0.1:5000/test/guest:v1"
}

network "lan" {
    bridge "br-lan"
    ipv4 "10.42.0.1/24"
}

container "app" {
    image "app"
    boot
    bind "/usr" read-only=#true
    network "lan"
}
"#;
    let lab = lab_with_registry("oci-pull", &registry, host);
    let said = lab::scenario::ctm_ok(&lab, &["apply", "/root/host.kdl", "--yes"]);
    assert!(
        said.contains(&format!("test/guest:v1 resolved to {manifest}")),
        "{said}"
    );
    assert!(said.contains("applied layer 2/2"), "{said}");
    let out = lab::scenario::ctm_ok(&lab, &["exec", "app", "--", "cat", "/etc/oci-marker"]);
    assert!(out.contains("made from a pulled image"), "{out}");
    let out = lab::scenario::ctm(&lab, &["exec", "app", "--", "test", "-e", "/etc/motd"]);
    assert!(!out.status.success(), "the whiteout deleted /etc/motd");
    let listed = lab::scenario::ctm_ok(&lab, &["images", "--json"]);
    assert!(
        listed.contains(manifest.as_str()) && listed.contains("\"app\""),
        "{listed}"
    );
}

#[test]
fn an_index_is_resolved_for_this_machines_architecture() {
    if skipped() {
        return;
    }
    let registry = Registry::start();
    let both = tempfile::tempdir().unwrap();
    let index = multi_arch_layout(both.path(), "v1", &["arm64", "amd64"]);
    registry.push(both.path(), "v1", "multi");
    let other = tempfile::tempdir().unwrap();
    multi_arch_layout(other.path(), "v1", &["arm64", "s390x"]);
    registry.push(other.path(), "v1", "foreign");
    let root = root();

    let reference = format!("127.0.0.1:{}/multi:v1", registry.port);
    let lines = provision(root.path(), "web", oci(reference.clone())).unwrap();
    // The tag names the index; its amd64 image is the one applied.
    assert!(
        lines
            .join("\n")
            .contains(&format!("{reference} resolved to {index}")),
        "{lines:?}"
    );
    let arch = std::fs::read_to_string(root.path().join("var/lib/machines/web/arch")).unwrap();
    assert_eq!(arch, ctm::backend::oci::host_architecture());

    let reference = format!("127.0.0.1:{}/foreign:v1", registry.port);
    let err = provision(root.path(), "other", oci(reference)).unwrap_err();
    assert!(
        err.contains(&format!(
            "it has no image for linux/{} (it has linux/arm64, linux/s390x)",
            ctm::backend::oci::host_architecture()
        )),
        "{err}"
    );
}

#[test]
fn a_registry_that_asks_for_a_login_gets_the_one_in_the_credentials_file() {
    if skipped() {
        return;
    }
    // docker-registry's htpasswd takes bcrypt only; Python's crypt makes it.
    let hash = Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt; print(crypt.crypt('s3cret', crypt.mksalt(crypt.METHOD_BLOWFISH)))",
        ])
        .output()
        .unwrap();
    let hash = String::from_utf8_lossy(&hash.stdout).trim().to_string();
    assert!(hash.starts_with("$2"), "no bcrypt hash: {hash:?}");
    let secrets = tempfile::tempdir().unwrap();
    let htpasswd = secrets.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let registry = Registry::start_with(&format!(
        "auth:\n  htpasswd:\n    realm: ctm-test\n    path: {}\n",
        htpasswd.display()
    ));
    let layout = tempfile::tempdir().unwrap();
    image_layout(layout.path(), "v1", &busybox_layers());
    registry.push_as(layout.path(), "v1", "private/app", Some("alice:s3cret"));
    let root = root();
    let reference = format!("127.0.0.1:{}/private/app:v1", registry.port);
    // The credentials file, where the host file names it (under the root).
    let auth = |password: &str| {
        let token = base64_encode(format!("alice:{password}").as_bytes());
        format!(
            r#"{{"auths":{{"127.0.0.1:{}":{{"auth":"{token}"}}}}}}"#,
            registry.port
        )
    };
    let path = root.path().join("etc/ctm/registry.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let with_login = |reference: &str| RootfsSource::Oci {
        reference: reference.to_string(),
        credentials: Some("/etc/ctm/registry.json".into()),
        insecure: false,
    };

    let err = provision(root.path(), "web", oci(reference.clone())).unwrap_err();
    assert!(
        err.contains("asks for a login (basic authentication); name a credentials file"),
        "{err}"
    );
    std::fs::write(&path, auth("wrong")).unwrap();
    let err = provision(root.path(), "web", with_login(&reference)).unwrap_err();
    assert!(err.contains("401 Unauthorized"), "{err}");
    assert!(!err.contains("wrong"), "the password is never shown: {err}");
    std::fs::write(&path, auth("s3cret")).unwrap();
    provision(root.path(), "web", with_login(&reference)).unwrap();
    assert!(
        root.path()
            .join("var/lib/machines/web/bin/busybox")
            .exists()
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A registry's token service, as Docker Hub's and GHCR's work: the
/// first request is answered 401 with a bearer challenge naming a realm;
/// the realm hands out a token (checking the login, when there is one);
/// the request again with the token succeeds. Served here by a few lines
/// on loopback, since Debian's registry cannot issue tokens itself.
#[test]
fn a_bearer_challenge_is_answered_with_a_token_from_its_realm() {
    use std::io::{BufRead as _, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":2},"layers":[]}"#;
    let expected_basic = format!("Basic {}", base64_encode(b"bob:pw"));
    let basic = expected_basic.clone();
    let server = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let mut authorization = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line
                    .strip_prefix("authorization: ")
                    .or(line.strip_prefix("Authorization: "))
                {
                    authorization = v.trim().to_string();
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            seen.push((path.clone(), authorization.clone()));
            let (status, headers, body): (&str, String, Vec<u8>) = if path.starts_with("/token") {
                if authorization == basic {
                    ("200 OK", String::new(), br#"{"token":"t0ken"}"#.to_vec())
                } else {
                    ("401 Unauthorized", String::new(), Vec::new())
                }
            } else if authorization == "Bearer t0ken" {
                (
                    "200 OK",
                    "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n".into(),
                    manifest.to_vec(),
                )
            } else {
                (
                    "401 Unauthorized",
                    format!(
                        "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\",scope=\"repository:team/app:pull\"\r\n"
                    ),
                    Vec::new(),
                )
            };
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .unwrap();
            stream.write_all(&body).unwrap();
        }
        seen
    });
    let credentials = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        credentials.path(),
        r#"{"auths":{"127.0.0.1":{"username":"bob","password":"pw"}}}"#
            .replace("127.0.0.1", &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    let reference =
        ctm::model::oci::OciReference::parse(&format!("127.0.0.1:{port}/team/app:v1")).unwrap();
    let digest =
        ctm::backend::oci::resolve_tag(&reference, Some(credentials.path()), false).unwrap();
    assert_eq!(digest, Digest::of(manifest));
    let seen = server.join().unwrap();
    assert_eq!(
        seen[0],
        ("/v2/team/app/manifests/v1".to_string(), String::new())
    );
    assert_eq!(
        seen[1],
        (
            "/token?service=fake&scope=repository%3Ateam%2Fapp%3Apull".to_string(),
            expected_basic
        )
    );
    assert_eq!(
        seen[2],
        (
            "/v2/team/app/manifests/v1".to_string(),
            "Bearer t0ken".to_string()
        )
    );
}

/// The web editor resolves tags as the command line does: its plan says
/// what each tag resolved to, and its apply of that plan pins it in the
/// lock (the plan it applies is the one it showed). Its images page and
/// API list what `ctm images` lists.
#[tokio::test]
async fn the_web_plan_shows_the_resolved_digest_its_apply_pins_it_and_the_images_page_lists_it() {
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode, header};
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    if skipped() {
        return;
    }
    let registry = Registry::start();
    let layout = tempfile::tempdir().unwrap();
    let (manifest, _) = image_layout(layout.path(), "v1", &busybox_layers());
    registry.push(layout.path(), "v1", "test/app");
    let work = tempfile::tempdir().unwrap();
    let host = work.path().join("host.kdl");
    std::fs::write(
        &host,
        format!(
            "image \"app\" {{\n    oci \"127.0.0.1:{}/test/app:v1\"\n}}\n\ncontainer \"web\" {{\n    image \"app\"\n}}\n",
            registry.port
        ),
    )
    .unwrap();
    let config = ctm::web::Config {
        host_file: Some(host.clone()),
        fleet: None,
        root: work.path().join("root"),
        resources: Box::new(OneBusyContainer),
        journal: Box::new(ctm::backend::journal::NoJournal),
        files_only_reason: None,
        allow_files_only: false,
        system: None,
    };
    let (state, _) = ctm::web::AppState::new(config).unwrap();
    let app = ctm::web::router(state.clone());
    let token = state.auth.token().to_string();
    let call = |method: Method, path: String, body: Option<serde_json::Value>| {
        let app = app.clone();
        let token = token.clone();
        async move {
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .header(header::AUTHORIZATION, format!("Bearer {token}"));
            let body = match body {
                Some(v) => {
                    request = request.header(header::CONTENT_TYPE, "application/json");
                    Body::from(v.to_string())
                }
                None => Body::empty(),
            };
            let response = app.oneshot(request.body(body).unwrap()).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
    };

    let (status, text) = call(
        Method::POST,
        "/api/plan".into(),
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let plan: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(plan["images"][0]["event"], "image-resolved", "{plan}");
    assert_eq!(plan["images"][0]["digest"], manifest.as_str());
    let fingerprint = plan["plan"]["fingerprint"].clone();

    let (status, text) = call(
        Method::POST,
        "/api/apply".into(),
        Some(serde_json::json!({ "fingerprint": fingerprint })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let job: serde_json::Value = serde_json::from_str(&text).unwrap();
    let (_, events) = call(Method::GET, format!("/api/jobs/{}", job["job"]), None).await;
    assert!(events.contains("\"kind\":\"done\""), "{events}");
    let lock = std::fs::read_to_string(work.path().join("host.kdl.lock")).unwrap();
    assert!(lock.contains(&format!("digest = \"{manifest}\"")), "{lock}");

    // Pulled, the image is on the images page and in its API, with the
    // columns of `ctm images`.
    let target = ctm::engine::Target::new(work.path().join("root"));
    ctm::engine::images::pull(
        &target,
        "app",
        ctm::engine::images::Definition::Current,
        &mut |_| {},
    )
    .unwrap();
    let (status, text) = call(Method::GET, "/api/images".into(), None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let listed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed[0]["digest"], manifest.as_str(), "{listed}");
    assert_eq!(listed[0]["containers"], serde_json::json!(["web"]));
    let (status, page) = call(Method::GET, "/images".into(), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let short: String = manifest.as_str().chars().take(19).collect();
    assert!(page.contains("id=\"images\""), "{page}");
    assert!(
        page.contains(&short) && page.contains("<td>web</td>"),
        "{page}"
    );
    assert!(page.contains(&format!("oci 127.0.0.1:{}/test/app:v1@", registry.port)));
}
