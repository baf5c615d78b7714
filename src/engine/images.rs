//! Images: resolving the tags of OCI images that neither the host file
//! nor its lock pins, before the host file is compiled (so that the plan
//! shows the digest and the lock records it); listing, pulling and
//! removing images (`ctm images`, `ctm image pull`, `ctm image build`,
//! `ctm image rm`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::events::{Event, Events};
use super::load::{Desired, Outcome, load_and_validate};
use super::refused::Refused;
use super::session::{Access, Session, Target};
use crate::backend::{oci, provision};
use crate::compile::provision::{Action, RootfsSource, Step};
use crate::compile::{Artifacts, Content};
use crate::layout::under_root;
use crate::lock::Pinned;
use crate::model::ImageSource;
use crate::validate::Validated;

/// Resolves, against each registry, the tag of every OCI image of
/// `validated` that has no digest yet; pins the image to it and records
/// it in the lock. `root` is where credentials files are read.
pub fn resolve_tags(
    root: &Path,
    validated: &mut Validated,
    events: Events<'_>,
) -> miette::Result<()> {
    for (name, image) in &mut validated.host.images {
        let ImageSource::Oci {
            reference,
            credentials,
            insecure,
        } = &mut image.source
        else {
            continue;
        };
        if reference.digest().is_some() {
            continue;
        }
        let credentials = credentials.as_ref().map(|c| under_root(root, c.as_str()));
        let digest = oci::resolve_tag(reference, credentials.as_deref(), *insecure)
            .map_err(|e| miette::miette!("image {name}: {e}"))?;
        events(Event::ImageResolved {
            image: name.to_string(),
            reference: reference.to_string(),
            digest: digest.to_string(),
        });
        validated.lock.images.insert(
            name.to_string(),
            Pinned {
                reference: reference.clone(),
                digest: digest.clone(),
            },
        );
        *reference = reference.with_digest(digest);
    }
    Ok(())
}

/// Puts in the model what each OCI image that application containers
/// run says it runs (its config blob, verified into the blob cache:
/// fetched once, read from the cache after), so that compiling reads no
/// disk. A pinned image already pulled needs no network.
pub fn read_configs(
    root: &Path,
    validated: &mut Validated,
    events: Events<'_>,
) -> miette::Result<()> {
    let host = &validated.host;
    let mut wanted: BTreeMap<crate::model::Name, Vec<String>> = BTreeMap::new();
    for container in host.containers.values() {
        if let Some(image) = host.application(container)
            && image.config.is_none()
        {
            wanted
                .entry(image.name.clone())
                .or_default()
                .push(container.name.to_string());
        }
    }
    for (name, containers) in wanted {
        let Some(image) = validated.host.images.get_mut(&name) else {
            continue;
        };
        let config = match &image.source {
            ImageSource::Oci {
                reference,
                credentials,
                insecure,
            } => {
                let credentials = credentials.as_ref().map(|c| under_root(root, c.as_str()));
                oci::config(root, reference, credentials.as_deref(), *insecure)
            }
            ImageSource::OciArchive { path } => {
                let file = under_root(root, path.as_str());
                let mut step = |line: &str| events(Event::Step { line: line.into() });
                oci::import_archive(root, &file, &mut step)
                    .and_then(|pulled| oci::read_config(root, &pulled.config))
            }
            _ => continue,
        }
        .map_err(|e| miette::miette!("image {name}: {e}"))?;
        if config.command.is_empty() {
            return Err(miette::miette!(
                help = format!(
                    "add `boot` to container {} to boot the image's init instead",
                    containers.join(", ")
                ),
                "image {name} names no command (its config has neither Entrypoint nor Cmd), so container {} has nothing to run",
                containers.join(", ")
            ));
        }
        image.config = Some(config);
    }
    Ok(())
}

/// [`resolve_tags`], then [`read_configs`]: what the host file needs
/// from registries and archives before it is compiled.
pub fn resolve_images(
    root: &Path,
    validated: &mut Validated,
    events: Events<'_>,
) -> miette::Result<()> {
    resolve_tags(root, validated, events)?;
    read_configs(root, validated, events)
}

/// True if some OCI image of the host file still needs its tag resolved,
/// or its config read for an application container.
pub fn unresolved(outcome: &Outcome) -> bool {
    outcome.validated.as_ref().is_some_and(|v| {
        let host = &v.host;
        host.images.values().any(|i| {
            matches!(&i.source, ImageSource::Oci { reference, .. } if reference.digest().is_none())
        }) || host
            .containers
            .values()
            .any(|c| host.application(c).is_some_and(|i| i.config.is_none()))
    })
}

/// [`Desired::compile`] of the host file once its images are resolved
/// ([`resolve_images`]: through the network only for what the cache
/// lacks).
pub fn compile_resolved(
    root: &Path,
    outcome: &mut Outcome,
    down: &std::collections::BTreeSet<crate::model::Name>,
    events: Events<'_>,
) -> miette::Result<Option<Desired>> {
    if let Some(validated) = &mut outcome.validated {
        resolve_images(root, validated, events)?;
    }
    Ok(Desired::compile(outcome, down))
}

/// The images the containers of a generation are made from: container,
/// image and its definition, from each container's provisioning steps.
pub fn used_by(artifacts: &Artifacts) -> miette::Result<Vec<(String, String, RootfsSource)>> {
    let mut used = Vec::new();
    for (path, artifact) in &artifacts.files {
        let (Some(container), Content::File { text, .. }) = (
            path.strip_prefix("etc/ctm/machines/")
                .and_then(|p| p.strip_suffix("/provision.json")),
            &artifact.content,
        ) else {
            continue;
        };
        let steps: Vec<Step> = serde_json::from_str(text)
            .map_err(|e| miette::miette!("{path} is not readable ({e})"))?;
        used.extend(steps.into_iter().filter_map(|s| match s.action {
            Action::CreateRootfs { image, source, .. } => {
                Some((container.to_string(), image, source))
            }
            _ => None,
        }));
    }
    Ok(used)
}

/// One image, as `ctm images` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    pub name: String,
    /// `oci REFERENCE`, `tarball PATH`, `debootstrap SUITE`, …
    pub source: String,
    /// What it was made from: an OCI manifest's digest, a tarball's.
    pub digest: Option<String>,
    /// The bytes of its tree; `None` until it is built or pulled.
    pub size: Option<u64>,
    /// Its tree: in the store, or a `directory` image's own; `None`
    /// until it is built or pulled.
    pub path: Option<String>,
    /// The containers of the current generation made from it.
    pub containers: Vec<String>,
    /// Defined in the current generation (else kept for a rollback,
    /// until `ctm gc`).
    pub current: bool,
}

/// A definition in a few words.
pub fn describe(source: &RootfsSource) -> String {
    match source {
        RootfsSource::Directory { path } => format!("directory {path}"),
        RootfsSource::Tarball { path, .. } => format!("tarball {path}"),
        RootfsSource::Oci { reference, .. } => format!("oci {reference}"),
        RootfsSource::OciArchive { path } => format!("oci-archive {path}"),
        RootfsSource::Debootstrap { suite, .. } => format!("debootstrap {suite}"),
        RootfsSource::Build { parent, steps, .. } => {
            format!("build from {parent}, {} steps", steps.len())
        }
    }
}

/// `ctm images`: the images of the current generation, built or not, and
/// those the store keeps for older ones.
pub fn list(target: &Target, access: Access, events: Events<'_>) -> miette::Result<Vec<ImageInfo>> {
    let session = Session::open(target, access, events)?;
    let root = session.store.root().to_path_buf();
    let used = match session.store.current()? {
        Some(n) => used_by(&session.store.artifacts(n)?)?,
        None => Vec::new(),
    };
    // Each definition of the current generation, with its containers.
    let mut defined: BTreeMap<(String, String), (RootfsSource, Vec<String>)> = BTreeMap::new();
    for (container, image, source) in used {
        let key = (image, serde_json::to_string(&source).unwrap_or_default());
        defined
            .entry(key)
            .or_insert((source, Vec::new()))
            .1
            .push(container);
    }
    let stored = provision::stored_images(&root);
    let mut list = Vec::new();
    for ((image, _), (source, containers)) in &defined {
        let mut found = false;
        for (record, s) in stored.iter().filter(|(_, s)| s.is(image, source)) {
            found = true;
            list.push(ImageInfo {
                name: image.clone(),
                source: describe(source),
                digest: s.digest.clone(),
                size: s.size,
                path: Some(record.with_extension("").display().to_string()),
                containers: containers.clone(),
                current: true,
            });
        }
        if !found {
            let path = match source {
                RootfsSource::Directory { path } => Some(path.clone()),
                _ => None,
            };
            list.push(ImageInfo {
                name: image.clone(),
                source: describe(source),
                digest: None,
                size: None,
                path,
                containers: containers.clone(),
                current: true,
            });
        }
    }
    for (record, s) in &stored {
        if defined
            .iter()
            .any(|((image, _), (source, _))| s.is(image, source))
        {
            continue;
        }
        list.push(ImageInfo {
            name: s.image.clone(),
            source: describe(&s.source),
            digest: s.digest.clone(),
            size: s.size,
            path: Some(record.with_extension("").display().to_string()),
            containers: Vec::new(),
            current: false,
        });
    }
    Ok(list)
}

/// Where `ctm image pull` takes an image's definition from.
pub enum Definition<'a> {
    /// The current generation (what the host runs).
    Current,
    /// A host file (with its lock).
    HostFile(&'a Path),
}

/// `ctm image pull NAME [FILE]`: builds, pulls or unpacks image `name`
/// into the store now (nothing if it is there), as a container's first
/// apply would; its path in the store.
pub fn pull(
    target: &Target,
    name: &str,
    from: Definition<'_>,
    events: Events<'_>,
) -> miette::Result<String> {
    make(target, name, from, false, events)
}

/// `ctm image build NAME [FILE]`: [`pull`] of an image built from a
/// recipe (`from`, `run`, `copy`, `env`), refused for any other: the
/// steps an earlier build ran unchanged come from the build cache.
pub fn build(
    target: &Target,
    name: &str,
    from: Definition<'_>,
    events: Events<'_>,
) -> miette::Result<String> {
    make(target, name, from, true, events)
}

fn make(
    target: &Target,
    name: &str,
    from: Definition<'_>,
    recipe_only: bool,
    events: Events<'_>,
) -> miette::Result<String> {
    // Serialised with applies, which build into the same store.
    let session = Session::open(target, Access::ChangeState, events)?;
    let (source, place, known) = match from {
        Definition::HostFile(file) => {
            let outcome = load_and_validate(file, None)?;
            let Some(validated) = &outcome.validated else {
                return Err(Refused::Invalid {
                    file: file.display().to_string(),
                    check: outcome.diagnostics_json(),
                }
                .into());
            };
            let images = &validated.host.images;
            (
                images
                    .iter()
                    .find(|(n, _)| n.as_str() == name)
                    .and_then(|(_, i)| RootfsSource::of(i, images)),
                format!("in {}", file.display()),
                images.keys().map(|n| n.to_string()).collect::<Vec<_>>(),
            )
        }
        Definition::Current => {
            let current = session.store.current()?;
            let used = match current {
                Some(n) => used_by(&session.store.artifacts(n)?)?,
                None => Vec::new(),
            };
            let known: BTreeSet<String> = used.iter().map(|(_, i, _)| i.clone()).collect();
            (
                used.into_iter()
                    .find(|(_, i, _)| i == name)
                    .map(|(_, _, s)| s),
                match current {
                    Some(n) => {
                        format!("in generation {n} (name a host file to pull one it does not use)")
                    }
                    None => "yet: nothing has been applied (name a host file)".into(),
                },
                known.into_iter().collect(),
            )
        }
    };
    let Some(source) = source else {
        return Err(Refused::NoSuchImage {
            name: name.to_string(),
            place,
            help: one_of(&known),
        }
        .into());
    };
    if recipe_only && !matches!(source, RootfsSource::Build { .. }) {
        return Err(miette::miette!(
            help = format!("`ctm image pull {name}` makes it"),
            "image {name} has no recipe to build: it is {}",
            describe(&source)
        ));
    }
    let mut step = |line: &str| events(Event::Step { line: line.into() });
    let tree = provision::image_tree(session.store.root(), name, &source, &mut step)
        .map_err(|e| miette::miette!("{e}"))?;
    Ok(tree.display().to_string())
}

fn one_of(names: &[String]) -> String {
    if names.is_empty() {
        "there are none".into()
    } else {
        format!("there are: {}", names.join(", "))
    }
}

/// `ctm image rm NAME`: removes image `name` from the store (every tree
/// of it), refused while a container of the current generation is made
/// from it; then the blobs no image left uses. The paths removed.
pub fn remove(target: &Target, name: &str, events: Events<'_>) -> miette::Result<Vec<String>> {
    let session = Session::open(target, Access::ChangeState, events)?;
    let root = session.store.root().to_path_buf();
    if let Some(n) = session.store.current()? {
        let containers: Vec<String> = used_by(&session.store.artifacts(n)?)?
            .into_iter()
            .filter(|(_, image, _)| image == name)
            .map(|(c, _, _)| c)
            .collect();
        if !containers.is_empty() {
            return Err(Refused::ImageInUse {
                name: name.to_string(),
                generation: n,
                containers,
            }
            .into());
        }
    }
    let stored = provision::stored_images(&root);
    let records: Vec<&PathBuf> = stored
        .iter()
        .filter(|(_, s)| s.image == name)
        .map(|(r, _)| r)
        .collect();
    if records.is_empty() {
        let known: BTreeSet<String> = stored.iter().map(|(_, s)| s.image.clone()).collect();
        return Err(Refused::NoSuchImage {
            name: name.to_string(),
            place: "in the image store".into(),
            help: one_of(&known.into_iter().collect::<Vec<_>>()),
        }
        .into());
    }
    // An overlay root is made of the image's tree: not removed under it,
    // whether or not the host file still has the container.
    let lowers = crate::backend::rootfs::overlay_lowers(&root);
    for record in &records {
        if let Some(containers) = lowers.get(&record.with_extension("")) {
            return Err(miette::miette!(
                help = "`ctm destroy` them first, or give them another `root`",
                "image {name} is under the overlay roots of containers {}; nothing was removed",
                containers.join(", ")
            ));
        }
    }
    let mut removed = Vec::new();
    for record in records {
        provision::remove_image(record)?;
        let tree = record.with_extension("").display().to_string();
        events(Event::RemovedImage { path: tree.clone() });
        removed.push(tree);
    }
    remove_unused_blobs(&root, events)?;
    Ok(removed)
}

/// Removes the blobs of the cache that no image of the store was made
/// from; returns how many.
pub fn remove_unused_blobs(root: &Path, events: Events<'_>) -> miette::Result<usize> {
    let kept: BTreeSet<String> = provision::stored_images(root)
        .into_iter()
        .flat_map(|(_, s)| s.blobs)
        .collect();
    let unused = oci::unused_blobs(root, &kept);
    for blob in &unused {
        std::fs::remove_file(blob)
            .map_err(|e| miette::miette!("removing {}: {e}", blob.display()))?;
    }
    if !unused.is_empty() {
        events(Event::RemovedBlobs {
            count: unused.len(),
        });
    }
    Ok(unused.len())
}
