//! What ctm owns in a generation: every file's path, kind, hash and owner.
//! The plan compares it with what is on disk; the state store keeps one
//! per generation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::compile::{Artifact, Artifacts, Content, Owner};
use crate::fs::{self, Entry};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    #[serde(flatten)]
    pub entry: Entry,
    pub owner: Owner,
}

/// Every file ctm owns in a generation: root-relative path → what it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: BTreeMap<String, ManifestEntry>,
}

impl Manifest {
    pub fn of(artifacts: &Artifacts) -> Manifest {
        Manifest {
            files: artifacts
                .files
                .iter()
                .map(|(path, a)| {
                    (
                        path.clone(),
                        ManifestEntry {
                            entry: entry_of(a),
                            owner: a.owner.clone(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// What an artifact is once written.
pub fn entry_of(artifact: &Artifact) -> Entry {
    match &artifact.content {
        Content::File { text, mode } => Entry::File {
            sha256: fs::sha256_hex(text.as_bytes()),
            mode: *mode,
        },
        Content::Symlink { target } => Entry::Symlink {
            target: target.clone(),
        },
    }
}
