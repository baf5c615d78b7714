//! Stage 4: what is on the host now, at the paths a plan is about.

use std::collections::BTreeMap;
use std::path::Path;

use crate::backend::fs::{self, IoError};
use crate::plan::LiveFile;

/// Reads every path (root-relative) under `root`.
pub fn read<'a>(
    root: &Path,
    paths: impl IntoIterator<Item = &'a String>,
) -> Result<BTreeMap<String, LiveFile>, IoError> {
    let mut live = BTreeMap::new();
    for path in paths {
        let (entry, bytes) = fs::read_entry(&root.join(path))?;
        let text = bytes.and_then(|b| String::from_utf8(b).ok());
        live.insert(path.clone(), LiveFile { entry, text });
    }
    Ok(live)
}
