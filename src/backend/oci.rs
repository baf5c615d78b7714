//! OCI images: pulled from a registry (`registry.rs`) or read from an OCI
//! layout in a tar file, their blobs verified into ctm's blob cache, then
//! their layers applied (`layers.rs`) into an image tree.
//!
//! Every blob is streamed into a temporary file of the cache while it is
//! hashed, and renamed to its digest only if the hash is that digest (and
//! its size the one its descriptor says); a blob of the cache is hashed
//! again before it is used. Manifests are verified the same way before
//! they are read. A tag is resolved to the digest of the manifest the
//! registry gives for it, never to a digest the registry merely claims.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::layers::{self, Compression};
use super::registry::{self, Registry};
use super::{Progress, SystemError};
use crate::layout;
use crate::model::oci::{Digest, ImageConfig, OciReference};

fn error(what: impl Into<String>, why: impl Into<String>) -> SystemError {
    SystemError {
        what: what.into(),
        why: why.into(),
    }
}

/// An image whose manifest and blobs are verified in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The digest of the image's manifest (for its platform): what the
    /// image is.
    pub manifest: Digest,
    /// The digest of the image's config blob (what it runs).
    pub config: Digest,
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
    /// Every blob of the image in the cache: the index(es) on the way to
    /// the manifest, the manifest, the config, the layers. What `ctm gc`
    /// keeps for it.
    pub blobs: Vec<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub digest: Digest,
    pub compression: Compression,
}

/// The OCI name of this machine's architecture (`amd64`, `arm64`, …).
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Where blobs missing from the cache come from: a registry, or nowhere
/// (an archive's blobs are all put in the cache first).
trait Blobs {
    fn cache(&self) -> &Cache;

    /// The blob `digest` (of at most `size` bytes, when known) into the
    /// cache, verified; its path there.
    fn fetch(
        &mut self,
        digest: &Digest,
        size: Option<u64>,
        what: &str,
        progress: Progress<'_>,
    ) -> Result<PathBuf, SystemError>;

    /// A manifest an index names into the cache, verified (a registry
    /// serves manifests apart from blobs).
    fn fetch_manifest(&mut self, digest: &Digest, size: u64) -> Result<PathBuf, SystemError>;
}

/// The cache of verified blobs under `root`.
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(root: &Path) -> Cache {
        Cache {
            dir: root.join(layout::OCI_BLOBS),
        }
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// The blob, if the cache has it and it still hashes to its digest (a
    /// damaged one is removed, to be fetched again).
    fn verified(&self, digest: &Digest) -> Result<Option<PathBuf>, SystemError> {
        let path = self.path(digest);
        let Ok(mut file) = std::fs::File::open(&path) else {
            return Ok(None);
        };
        let (actual, _) = hash(&mut file, None, &mut std::io::sink(), &mut |_| {})
            .map_err(|e| error(format!("reading {}", path.display()), e))?;
        if actual == *digest {
            return Ok(Some(path));
        }
        std::fs::remove_file(&path)
            .map_err(|e| error(format!("removing {}", path.display()), e.to_string()))?;
        Ok(None)
    }

    /// Streams `from` into the cache as blob `digest`: into a temporary
    /// file while hashing, renamed only if the hash (and the size, when
    /// `size` says it) match; otherwise nothing is left.
    fn store(
        &self,
        digest: &Digest,
        size: Option<u64>,
        from: &mut dyn Read,
        what: &str,
        progress: Progress<'_>,
    ) -> Result<PathBuf, SystemError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| error(format!("creating {}", self.dir.display()), e.to_string()))?;
        let path = self.path(digest);
        let temporary = self.dir.join(format!("{}.ctm-partial", digest.hex()));
        let mut file = std::fs::File::create(&temporary)
            .map_err(|e| error(format!("creating {}", temporary.display()), e.to_string()))?;
        let hashed = hash(from, size, &mut file, progress).and_then(|(actual, bytes)| {
            file.sync_all().map_err(|e| e.to_string())?;
            if let Some(size) = size
                && bytes != size
            {
                return Err(format!(
                    "it is {bytes} bytes long, not the {size} its descriptor says"
                ));
            }
            if actual != *digest {
                return Err(format!(
                    "its content has digest {actual}: it is not the blob asked for, and is refused"
                ));
            }
            Ok(())
        });
        if let Err(why) = hashed {
            let _ = std::fs::remove_file(&temporary);
            return Err(error(format!("{what} {digest}"), why));
        }
        std::fs::rename(&temporary, &path).map_err(|e| {
            error(
                format!("moving {} to {}", temporary.display(), path.display()),
                e.to_string(),
            )
        })?;
        Ok(path)
    }
}

/// Copies `from` into `to` while hashing it; at most `limit` bytes (one
/// more is an error). Progress every 16 MiB.
fn hash(
    from: &mut dyn Read,
    limit: Option<u64>,
    to: &mut dyn std::io::Write,
    progress: Progress<'_>,
) -> Result<(Digest, u64), String> {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut total: u64 = 0;
    let mut next_report: u64 = 16 << 20;
    loop {
        let n = from.read(&mut buffer).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if let Some(limit) = limit
            && total > limit
        {
            return Err(format!(
                "it is longer than the {limit} bytes its descriptor says"
            ));
        }
        hasher.update(&buffer[..n]);
        to.write_all(&buffer[..n]).map_err(|e| e.to_string())?;
        if total >= next_report {
            progress(&format!("  {} received", mib(total)));
            next_report += 16 << 20;
        }
    }
    Ok((Digest::from_sha256(&hasher.finalize()), total))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

struct FromRegistry<'a> {
    registry: Registry,
    cache: &'a Cache,
}

impl Blobs for FromRegistry<'_> {
    fn cache(&self) -> &Cache {
        self.cache
    }

    fn fetch(
        &mut self,
        digest: &Digest,
        size: Option<u64>,
        what: &str,
        progress: Progress<'_>,
    ) -> Result<PathBuf, SystemError> {
        let mut body = self
            .registry
            .blob(digest.as_str())
            .map_err(|e| error(format!("pulling {what} {digest}"), e))?;
        self.cache.store(digest, size, &mut body, what, progress)
    }

    fn fetch_manifest(&mut self, digest: &Digest, size: u64) -> Result<PathBuf, SystemError> {
        let (_, bytes) = self
            .registry
            .manifest(digest.as_str())
            .map_err(|e| error(format!("pulling manifest {digest}"), e))?;
        self.cache
            .store(digest, Some(size), &mut &bytes[..], "manifest", &mut |_| {})
    }
}

/// Only what the cache has (an archive's blobs, imported first).
struct CacheOnly<'a>(&'a Cache);

impl Blobs for CacheOnly<'_> {
    fn cache(&self) -> &Cache {
        self.0
    }

    fn fetch(
        &mut self,
        digest: &Digest,
        _: Option<u64>,
        what: &str,
        _: Progress<'_>,
    ) -> Result<PathBuf, SystemError> {
        Err(error(
            format!("{what} {digest}"),
            "the archive does not have it",
        ))
    }

    fn fetch_manifest(&mut self, digest: &Digest, size: u64) -> Result<PathBuf, SystemError> {
        self.fetch(digest, Some(size), "manifest", &mut |_| {})
    }
}

/// Pulls the image `reference` names into the cache: resolves its tag
/// (unless pinned), its index for this machine's architecture, and
/// fetches its config and layers, verifying each.
pub fn pull(
    root: &Path,
    reference: &OciReference,
    credentials: Option<&Path>,
    insecure: bool,
    progress: Progress<'_>,
) -> Result<Pulled, SystemError> {
    let cache = Cache::new(root);
    let registry = connect(reference, credentials, insecure)?;
    let (mut blobs, top, digest) = top_manifest(registry, &cache, reference, progress)?;
    resolve(&mut blobs, &top, &digest, progress)
}

/// What the image `reference` names runs (its config blob), verified
/// into the cache; the registry is asked only for what the cache lacks
/// (nothing, for a pinned image pulled before), and never for a layer.
pub fn config(
    root: &Path,
    reference: &OciReference,
    credentials: Option<&Path>,
    insecure: bool,
) -> Result<ImageConfig, SystemError> {
    let cache = Cache::new(root);
    let registry = connect(reference, credentials, insecure)?;
    let (mut blobs, top, digest) = top_manifest(registry, &cache, reference, &mut |_| {})?;
    let (_, manifest, _) = platform_manifest(&mut blobs, &top, &digest)?;
    let config = descriptor_digest(manifest.config())?;
    if cache.verified(&config)?.is_none() {
        blobs.fetch(
            &config,
            Some(manifest.config().size()),
            "config",
            &mut |_| {},
        )?;
    }
    read_config(root, &config)
}

/// The config blob `digest` of the cache, hashed again and parsed.
pub fn read_config(root: &Path, digest: &Digest) -> Result<ImageConfig, SystemError> {
    let what = || format!("config {digest}");
    let path = Cache::new(root)
        .verified(digest)?
        .ok_or_else(|| error(what(), "it is not in the cache"))?;
    let file = std::fs::File::open(&path)
        .map_err(|e| error(format!("reading {}", path.display()), e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(registry::MAX_MANIFEST + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error(format!("reading {}", path.display()), e.to_string()))?;
    if bytes.len() as u64 > registry::MAX_MANIFEST {
        return Err(error(what(), "it is too large"));
    }
    ImageConfig::parse(digest.clone(), &bytes).map_err(|e| error(what(), e))
}

/// The manifest (or index) `reference` names, verified into the cache:
/// from the cache if pinned and there, else from the registry (a pinned
/// digest checked against what it serves). The blob source to go on
/// with, the path and digest of that manifest.
fn top_manifest<'c>(
    mut registry: Registry,
    cache: &'c Cache,
    reference: &OciReference,
    progress: Progress<'_>,
) -> Result<(FromRegistry<'c>, PathBuf, Digest), SystemError> {
    // A pinned image whose manifest is in the cache needs the registry
    // only for the blobs the cache lacks: none, once pulled whole.
    if let Some(pinned) = reference.digest()
        && let Some(cached) = cache.verified(pinned)?
    {
        return Ok((FromRegistry { registry, cache }, cached, pinned.clone()));
    }
    let what = format!("pulling {reference}");
    let wanted = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.as_str().to_string(),
        (None, Some(tag)) => tag.to_string(),
        (None, None) => unreachable!("a reference has a tag or a digest"),
    };
    let (_, bytes) = registry
        .manifest(&wanted)
        .map_err(|e| error(what.clone(), e))?;
    let digest = Digest::of(&bytes);
    match reference.digest() {
        Some(pinned) if *pinned != digest => {
            return Err(error(
                what,
                format!(
                    "the registry's manifest has digest {digest}, not the pinned {pinned}: refused"
                ),
            ));
        }
        Some(_) => {}
        None => progress(&format!(
            "{} resolved to {digest}",
            reference.without_digest()
        )),
    }
    let cached = cache.store(&digest, None, &mut &bytes[..], "manifest", &mut |_| {})?;
    Ok((FromRegistry { registry, cache }, cached, digest))
}

/// The digest of the manifest (or index) the registry serves for
/// `reference`'s tag now: the hash of its bytes.
pub fn resolve_tag(
    reference: &OciReference,
    credentials: Option<&Path>,
    insecure: bool,
) -> Result<Digest, SystemError> {
    let what = || format!("resolving {reference}");
    let tag = reference
        .tag()
        .ok_or_else(|| error(what(), "it has no tag to resolve"))?;
    let (_, bytes) = connect(reference, credentials, insecure)?
        .manifest(tag)
        .map_err(|e| error(what(), e))?;
    Ok(Digest::of(&bytes))
}

/// A client of `reference`'s registry, with the login from the
/// credentials file at `credentials` (a path on this machine).
fn connect(
    reference: &OciReference,
    credentials: Option<&Path>,
    insecure: bool,
) -> Result<Registry, SystemError> {
    let login = match credentials {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                error(
                    format!("reading the credentials file {}", path.display()),
                    e.to_string(),
                )
            })?;
            Some(
                registry::login_from(&text, reference.registry())
                    .map_err(|e| error(format!("the credentials file {}", path.display()), e))?,
            )
        }
        None => None,
    };
    Ok(Registry::new(reference, insecure, login))
}

/// Reads an OCI layout archive (`oci-layout`, `index.json`,
/// `blobs/sha256/…`): every blob verified into the cache as it is read,
/// then its image resolved from `index.json` for this architecture.
pub fn import_archive(
    root: &Path,
    archive: &Path,
    progress: Progress<'_>,
) -> Result<Pulled, SystemError> {
    let what = format!("reading {}", archive.display());
    let cache = Cache::new(root);
    let file = std::fs::File::open(archive).map_err(|e| error(what.clone(), e.to_string()))?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    let mut index = None;
    let mut blobs = 0;
    for entry in tar
        .entries()
        .map_err(|e| error(what.clone(), e.to_string()))?
    {
        let mut entry = entry.map_err(|e| error(what.clone(), e.to_string()))?;
        let path = layers::safe_relative(Path::new(OsStr::from_bytes(&entry.path_bytes())))
            .map_err(|e| error(what.clone(), e.to_string()))?;
        let path = path.to_string_lossy().into_owned();
        if path == "index.json" {
            let mut text = Vec::new();
            (&mut entry)
                .take(registry::MAX_MANIFEST + 1)
                .read_to_end(&mut text)
                .map_err(|e| error(what.clone(), e.to_string()))?;
            index = Some(text);
        } else if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            let digest =
                Digest::parse(&format!("sha256:{hex}")).map_err(|e| error(what.clone(), e))?;
            if cache.verified(&digest)?.is_none() {
                let size = entry.size();
                cache.store(&digest, Some(size), &mut entry, "archive blob", progress)?;
            }
            blobs += 1;
        }
    }
    let index = index.ok_or_else(|| {
        error(
            what.clone(),
            "it has no index.json: it is not an OCI image layout (a `docker save` from before Docker 25 is not one; `skopeo copy docker-archive:FILE oci-archive:NEW` converts it)",
        )
    })?;
    progress(&format!(
        "{} blobs verified from {}",
        blobs,
        archive.display()
    ));
    if index.len() as u64 > registry::MAX_MANIFEST {
        return Err(error(what, "its index.json is too large"));
    }
    let index_digest = Digest::of(&index);
    let cached = cache.store(&index_digest, None, &mut &index[..], "index", &mut |_| {})?;
    resolve(&mut CacheOnly(&cache), &cached, &index_digest, progress)
}

/// From a manifest or index (verified, at `path` with `digest`) to the
/// image for this machine (`platform_manifest`); then its config and
/// layers are fetched.
fn resolve(
    blobs: &mut dyn Blobs,
    path: &Path,
    digest: &Digest,
    progress: Progress<'_>,
) -> Result<Pulled, SystemError> {
    let (digest, manifest, mut used) = platform_manifest(blobs, path, digest)?;
    let config = descriptor_digest(manifest.config())?;
    if blobs.cache().verified(&config)?.is_none() {
        let size = Some(manifest.config().size());
        blobs.fetch(&config, size, "config", &mut |_| {})?;
    }
    let mut layers = Vec::new();
    let count = manifest.layers().len();
    for (i, layer) in manifest.layers().iter().enumerate() {
        let media_type = layer.media_type().to_string();
        let compression = Compression::of_media_type(&media_type).ok_or_else(|| {
            error(
                format!("manifest {digest}"),
                format!(
                    "layer {} has media type {media_type}, which ctm cannot unpack",
                    i + 1
                ),
            )
        })?;
        let layer_digest = descriptor_digest(layer)?;
        let cached = blobs.cache().verified(&layer_digest)?.is_some();
        progress(&format!(
            "layer {}/{count} {layer_digest} ({}{})",
            i + 1,
            mib(layer.size()),
            if cached { ", in the cache" } else { "" }
        ));
        if !cached {
            blobs.fetch(&layer_digest, Some(layer.size()), "layer", progress)?;
        }
        layers.push(Layer {
            digest: layer_digest,
            compression,
        });
    }
    used.push(config.clone());
    used.extend(layers.iter().map(|l| l.digest.clone()));
    Ok(Pulled {
        manifest: digest,
        config,
        layers,
        blobs: used,
    })
}

/// From a manifest or index (verified, at `path` with `digest`) to the
/// manifest for this machine: an index is followed (at most two deep) to
/// the manifest for `linux` and this architecture. Its digest, the
/// manifest, and the digests on the way (the indexes and the manifest).
fn platform_manifest(
    blobs: &mut dyn Blobs,
    path: &Path,
    digest: &Digest,
) -> Result<(Digest, ImageManifest, Vec<Digest>), SystemError> {
    let mut path = path.to_path_buf();
    let mut digest = digest.clone();
    let mut used = Vec::new();
    for _ in 0..3 {
        used.push(digest.clone());
        let bytes = std::fs::read(&path)
            .map_err(|e| error(format!("reading {}", path.display()), e.to_string()))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| error(format!("manifest {digest}"), format!("not JSON: {e}")))?;
        if value.get("manifests").is_some() {
            let index = ImageIndex::from_reader(&bytes[..])
                .map_err(|e| error(format!("index {digest}"), e.to_string()))?;
            let chosen = choose(index.manifests(), &digest)?;
            let next = descriptor_digest(chosen)?;
            path = match blobs.cache().verified(&next)? {
                Some(cached) => cached,
                None => blobs.fetch_manifest(&next, chosen.size())?,
            };
            digest = next;
            continue;
        }
        let manifest = ImageManifest::from_reader(&bytes[..])
            .map_err(|e| error(format!("manifest {digest}"), e.to_string()))?;
        return Ok((digest, manifest, used));
    }
    Err(error(
        format!("manifest {digest}"),
        "indexes nest deeper than ctm follows",
    ))
}

fn descriptor_digest(descriptor: &Descriptor) -> Result<Digest, SystemError> {
    let text = descriptor.digest().to_string();
    Digest::parse(&text).map_err(|e| error("a descriptor", e))
}

/// The manifest of an index for `linux` on this machine's architecture;
/// one without a platform only if it is the only one.
fn choose<'i>(manifests: &'i [Descriptor], index: &Digest) -> Result<&'i Descriptor, SystemError> {
    let arch = host_architecture();
    if let Some(d) = manifests.iter().find(|d| {
        d.platform()
            .as_ref()
            .is_some_and(|p| p.os().to_string() == "linux" && p.architecture().to_string() == arch)
    }) {
        return Ok(d);
    }
    if let [only] = manifests
        && only.platform().is_none()
    {
        return Ok(only);
    }
    let offered: Vec<String> = manifests
        .iter()
        .filter_map(|d| d.platform().as_ref())
        .map(|p| format!("{}/{}", p.os(), p.architecture()))
        .collect();
    Err(error(
        format!("index {index}"),
        format!(
            "it has no image for linux/{arch}{}",
            if offered.is_empty() {
                String::new()
            } else {
                format!(" (it has {})", offered.join(", "))
            }
        ),
    ))
}

/// The blobs of the cache that none of `kept` (the blobs of every image
/// the store keeps) is, with the temporary files an interrupted pull
/// left.
pub fn unused_blobs(root: &Path, kept: &std::collections::BTreeSet<String>) -> Vec<PathBuf> {
    let cache = Cache::new(root);
    let Ok(entries) = std::fs::read_dir(&cache.dir) else {
        return Vec::new();
    };
    let mut unused: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            !kept.contains(&format!("sha256:{name}"))
        })
        .map(|e| e.path())
        .collect();
    unused.sort();
    unused
}

/// Applies the image's layers, bottom first, onto the empty tree `dir`.
pub fn unpack(
    root: &Path,
    pulled: &Pulled,
    dir: &Path,
    progress: Progress<'_>,
) -> Result<(), SystemError> {
    let cache = Cache::new(root);
    let count = pulled.layers.len();
    for (i, layer) in pulled.layers.iter().enumerate() {
        // Hashed again: the file is what was verified.
        let path = cache.verified(&layer.digest)?.ok_or_else(|| {
            error(
                format!("layer {}", layer.digest),
                "it is no longer in the cache, or no longer matches its digest",
            )
        })?;
        let applied = layers::apply(dir, &path, layer.compression).map_err(|e| {
            error(
                format!("applying layer {}/{count} {}", i + 1, layer.digest),
                e.to_string(),
            )
        })?;
        progress(&format!(
            "applied layer {}/{count}: {} entries, {} removed",
            i + 1,
            applied.entries,
            applied.removed
        ));
    }
    // nspawn refuses a tree without /usr, even to run one command in it,
    // and an image made `FROM scratch` has none. mkdir does not follow a
    // symbolic link a layer may have put there: nothing outside is made.
    let usr = dir.join("usr");
    match std::fs::create_dir(&usr) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(error(format!("creating {}", usr.display()), e.to_string()))
        }
        _ => Ok(()),
    }
}
