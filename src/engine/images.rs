//! Images as a host file names them: resolving the tags of OCI images
//! that neither the host file nor its lock pins, before the host file is
//! compiled, so that the plan shows the digest and the lock records it.

use std::path::Path;

use super::events::{Event, Events};
use super::load::{Desired, Outcome};
use crate::backend::oci;
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
        let credentials = credentials
            .as_ref()
            .map(|c| root.join(c.as_str().trim_start_matches('/')));
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

/// True if some OCI image of the host file still needs its tag resolved.
pub fn unresolved(outcome: &Outcome) -> bool {
    outcome.validated.as_ref().is_some_and(|v| {
        v.host.images.values().any(|i| {
            matches!(&i.source, ImageSource::Oci { reference, .. } if reference.digest().is_none())
        })
    })
}

/// [`Desired::compile`] of the host file once its image tags are
/// resolved (through the network, only if some are not pinned yet).
pub fn compile_resolved(
    root: &Path,
    outcome: &mut Outcome,
    events: Events<'_>,
) -> miette::Result<Option<Desired>> {
    if let Some(validated) = &mut outcome.validated {
        resolve_tags(root, validated, events)?;
    }
    Ok(Desired::compile(outcome))
}
