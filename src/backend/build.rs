//! Image builds: `from`, then `run`, `copy` and `env` steps.
//!
//! Each step that changes the tree runs on a copy of the tree before it
//! (`cp --reflink=auto`: a few metadata writes where the file system
//! shares blocks), in a container of its own that nothing else sees
//! (`systemd-nspawn --register=no`, without a network unless the host
//! file allows one), and becomes a cached tree
//! `IMAGE_STORE/.build/KEY` only once it succeeded. `KEY` chains a hash
//! of the parent's identity (its tree in the store, which names the
//! definition and what it was made from), of every step so far and of
//! the content every `copy` read: an unchanged recipe finds every step
//! cached, and a changed step runs again with all after it, but none
//! before. A failing step leaves neither its tree nor an image.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::provision::{IMAGE_STORE, Provenance, build_once, image_tree, remove_tree, stored_tree};
use super::{Progress, SystemError, exec};
use crate::compile::provision::{BuildStep, RootfsSource};
use crate::fs;

/// A step may install a toolchain; a hung one must not hang ctm.
const STEP_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// Where a `copy` step puts its source for the container to take it
/// from: a fresh directory at the top of the step's tree.
const STAGING: &str = ".ctm-copy";
/// Copies the staged source to `$1` inside the container, where the
/// image's own symbolic links resolve inside its root: a directory's
/// content is merged into the destination, a file goes into a directory
/// that is there under its own name (`$2`), and replaces anything else.
const COPY_SCRIPT: &str = r#"set -e
dest="$1"
mkdir -p "$(dirname "$dest")"
if [ -d /.ctm-copy/source ] && [ ! -L /.ctm-copy/source ]; then
  mkdir -p "$dest"
  cp -a /.ctm-copy/source/. "$dest"/
elif [ -d "$dest" ]; then
  cp -a /.ctm-copy/source "$dest/$2"
else
  cp -a /.ctm-copy/source "$dest"
fi
rm -rf /.ctm-copy"#;

fn error(what: impl Into<String>, why: impl Into<String>) -> SystemError {
    SystemError {
        what: what.into(),
        why: why.into(),
    }
}

/// Builds image `image` (`source`, a [`RootfsSource::Build`]) into the
/// store unless it is there, from its parent `parent` (`from`) built,
/// pulled or unpacked first; its tree.
pub(super) fn build(
    root: &Path,
    image: &str,
    source: &RootfsSource,
    progress: Progress<'_>,
) -> Result<PathBuf, SystemError> {
    let RootfsSource::Build {
        parent,
        from,
        network,
        steps,
    } = source
    else {
        return Err(error(
            format!("building image {image}"),
            "it is not a build",
        ));
    };
    let parent_tree = image_tree(root, parent, from, progress)?;
    // Every step's key first (hashing, no container): an image built
    // before is found even when its steps' trees were removed.
    let mut keys = Vec::with_capacity(steps.len());
    let mut key = fs::sha256_hex(parent_tree.display().to_string().as_bytes());
    for (i, step) in steps.iter().enumerate() {
        let content = match step {
            BuildStep::Copy { source, .. } => content_hash(Path::new(source)).map_err(|why| {
                error(
                    format!(
                        "image {image}: step {}/{} ({})",
                        i + 1,
                        steps.len(),
                        describe(step)
                    ),
                    why,
                )
            })?,
            _ => String::new(),
        };
        // Plain data: serializing it cannot fail.
        let said = serde_json::to_string(step).unwrap_or_default();
        key = fs::sha256_hex(format!("{key}\n{said}\n{content}").as_bytes());
        keys.push(key.clone());
    }
    if let Some(tree) = stored_tree(root, image, source, &key) {
        progress(&format!(
            "image {image} is in the store ({}): no step changed",
            tree.display()
        ));
        return Ok(tree);
    }
    let cache = root.join(IMAGE_STORE).join(".build");
    std::fs::create_dir_all(&cache)
        .map_err(|e| error(format!("creating {}", cache.display()), e.to_string()))?;
    let mut tree = parent_tree;
    let mut env: Vec<(String, String)> = Vec::new();
    let count = steps.len();
    for (i, (step, key)) in steps.iter().zip(&keys).enumerate() {
        let number = i + 1;
        let what = describe(step);
        if let BuildStep::Env { name, value } = step {
            env.push((name.clone(), value.clone()));
            progress(&format!("image {image}: step {number}/{count}: {what}"));
            continue;
        }
        let done = cache.join(&key[..32]);
        if done.is_dir() {
            progress(&format!(
                "image {image}: step {number}/{count}: {what} (cached)"
            ));
            tree = done;
            continue;
        }
        progress(&format!("image {image}: step {number}/{count}: {what}"));
        let started = Instant::now();
        let temporary = cache.join(format!("{}.ctm-new", &key[..32]));
        remove_tree(&temporary)?;
        copy_tree(&tree, &temporary, progress)?;
        let ran = run_step(&temporary, &key[..12], *network, &env, step, progress);
        if let Err(e) = ran {
            let _ = remove_tree(&temporary);
            return Err(error(
                format!("image {image}: step {number}/{count} ({what})"),
                format!("{}: {}", e.what, e.why),
            ));
        }
        std::fs::rename(&temporary, &done).map_err(|e| {
            error(
                format!("moving {} to {}", temporary.display(), done.display()),
                e.to_string(),
            )
        })?;
        progress(&format!(
            "image {image}: step {number}/{count} done in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        tree = done;
    }
    let last = tree;
    build_once(
        root,
        image,
        source,
        &key,
        Provenance {
            steps: steps
                .iter()
                .zip(&keys)
                .filter(|(step, _)| !matches!(step, BuildStep::Env { .. }))
                .map(|(_, key)| key[..32].to_string())
                .collect(),
            ..Provenance::default()
        },
        progress,
        |dir, echo| copy_tree(&last, dir, echo),
    )
}

/// A step in a few words, for progress and errors.
fn describe(step: &BuildStep) -> String {
    match step {
        BuildStep::Run { command } => {
            let line = command.lines().next().unwrap_or_default();
            if line.len() < command.len() {
                format!("run `{line} …`")
            } else {
                format!("run `{line}`")
            }
        }
        BuildStep::Copy {
            source,
            destination,
        } => format!("copy {source} to {destination}"),
        BuildStep::Env { name, .. } => format!("env {name}"),
    }
}

/// Copies tree `from` to `to` (made if missing) whole, sharing blocks
/// where the file system can.
fn copy_tree(from: &Path, to: &Path, progress: Progress<'_>) -> Result<(), SystemError> {
    let ran = exec::on_host(
        &[
            "cp".to_string(),
            "--archive".to_string(),
            "--reflink=auto".to_string(),
            "--no-target-directory".to_string(),
            from.display().to_string(),
            to.display().to_string(),
        ],
        STEP_TIMEOUT,
        &mut |line| progress(line),
    )?;
    if ran.success() {
        Ok(())
    } else {
        Err(error(
            format!("copying {} to {}", from.display(), to.display()),
            format!("cp: {}; {}", ran.describe(), ran.tail(10)),
        ))
    }
}

/// Runs one `run` or `copy` step in a container of `tree`.
fn run_step(
    tree: &Path,
    key: &str,
    network: bool,
    env: &[(String, String)],
    step: &BuildStep,
    progress: Progress<'_>,
) -> Result<(), SystemError> {
    let mut argv = vec![
        "systemd-nspawn".to_string(),
        "--quiet".to_string(),
        "--register=no".to_string(),
        "--as-pid2".to_string(),
        "--console=pipe".to_string(),
        format!("--machine=ctm-build-{key}"),
        format!("--directory={}", tree.display()),
    ];
    if !network {
        argv.push("--private-network".to_string());
    }
    argv.extend(env.iter().map(|(k, v)| format!("--setenv={k}={v}")));
    argv.push("--".to_string());
    match step {
        BuildStep::Run { command } => {
            argv.extend(["/bin/sh".to_string(), "-c".to_string(), command.clone()]);
        }
        BuildStep::Copy {
            source,
            destination,
        } => {
            stage(tree, Path::new(source), progress)?;
            // The destination is an argument, never part of the script.
            argv.extend([
                "/bin/sh".to_string(),
                "-c".to_string(),
                COPY_SCRIPT.to_string(),
                "sh".to_string(),
                destination.clone(),
                Path::new(source)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ]);
        }
        BuildStep::Env { .. } => return Ok(()),
    }
    let ran = exec::on_host(&argv, STEP_TIMEOUT, &mut |line| {
        progress(&format!("  {line}"))
    })?;
    if ran.success() {
        Ok(())
    } else {
        Err(error(
            "the step failed",
            format!("{}; its output ends:\n{}", ran.describe(), ran.tail(20)),
        ))
    }
}

/// Puts a copy step's source at `/.ctm-copy/source` in `tree`: a
/// directory made fresh there (never one the image had, nor a link it
/// planted), owned by root as everything `copy` writes, modes kept.
fn stage(tree: &Path, source: &Path, progress: Progress<'_>) -> Result<(), SystemError> {
    if !source.is_absolute() {
        return Err(error(
            format!("copying {}", source.display()),
            "the source was not found beside the host file (the engine resolves it when loading)",
        ));
    }
    let staging = tree.join(STAGING);
    std::fs::create_dir(&staging).map_err(|e| {
        error(
            format!("creating {}", staging.display()),
            format!("{e} (the image has a {STAGING} of its own)"),
        )
    })?;
    let ran = exec::on_host(
        &[
            "cp".to_string(),
            "--recursive".to_string(),
            "--no-dereference".to_string(),
            "--preserve=mode,timestamps".to_string(),
            "--no-target-directory".to_string(),
            source.display().to_string(),
            staging.join("source").display().to_string(),
        ],
        STEP_TIMEOUT,
        &mut |line| progress(line),
    )?;
    if ran.success() {
        Ok(())
    } else {
        Err(error(
            format!("copying {}", source.display()),
            format!("cp: {}; {}", ran.describe(), ran.tail(10)),
        ))
    }
}

/// A hash of what `copy` would copy from `path`: each entry's relative
/// path, kind, permission bits and content (a link's target), in sorted
/// order; a changed file changes it, a touched one does not.
fn content_hash(path: &Path) -> Result<String, String> {
    use sha2::Digest as _;
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;
    let mut hasher = sha2::Sha256::new();
    let mut stack = vec![(path.to_path_buf(), PathBuf::new())];
    let mut buffer = vec![0u8; 1 << 16];
    while let Some((at, relative)) = stack.pop() {
        let meta = std::fs::symlink_metadata(&at).map_err(|e| format!("{}: {e}", at.display()))?;
        let mode = meta.permissions().mode() & 0o7777;
        let name = relative.display();
        if meta.is_symlink() {
            let target = std::fs::read_link(&at).map_err(|e| format!("{}: {e}", at.display()))?;
            hasher.update(format!("link {name} {}\n", target.display()));
        } else if meta.is_dir() {
            hasher.update(format!("dir {name} {mode:o}\n"));
            let mut entries: Vec<_> = std::fs::read_dir(&at)
                .map_err(|e| format!("{}: {e}", at.display()))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: {e}", at.display()))?;
            // Reversed: the stack gives them back in order.
            entries.sort();
            for entry in entries.into_iter().rev() {
                stack.push((at.join(&entry), relative.join(&entry)));
            }
        } else if meta.is_file() {
            hasher.update(format!("file {name} {mode:o} {}\n", meta.len()));
            let mut file =
                std::fs::File::open(&at).map_err(|e| format!("{}: {e}", at.display()))?;
            loop {
                let n = file
                    .read(&mut buffer)
                    .map_err(|e| format!("{}: {e}", at.display()))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
            }
        } else {
            return Err(format!(
                "{} is neither a file, a directory nor a symbolic link",
                at.display()
            ));
        }
    }
    Ok(fs::hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_hash_follows_content_and_modes_not_times() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        std::fs::create_dir_all(site.join("css")).unwrap();
        std::fs::write(site.join("index.html"), "hello").unwrap();
        std::fs::write(site.join("css/a.css"), "a").unwrap();
        let first = content_hash(&site).unwrap();
        // Written again with the same bytes: the same.
        std::fs::write(site.join("index.html"), "hello").unwrap();
        assert_eq!(content_hash(&site).unwrap(), first);
        std::fs::write(site.join("css/a.css"), "b").unwrap();
        let changed = content_hash(&site).unwrap();
        assert_ne!(changed, first);
        std::fs::set_permissions(
            site.join("index.html"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let moded = content_hash(&site).unwrap();
        assert_ne!(moded, changed);
        // A file moved to another directory is another tree.
        std::fs::rename(site.join("css/a.css"), site.join("a.css")).unwrap();
        assert_ne!(content_hash(&site).unwrap(), moded);
        assert!(content_hash(&dir.path().join("missing")).is_err());
    }
}
