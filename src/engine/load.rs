//! Reading a host file and its lock, validating them, and compiling the
//! result: what every use case that starts from a host file does first.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::compile::{self, Artifacts};
use crate::config::{self, Format, Source};
use crate::diagnostic::{Diagnostic, json_in_file};
use crate::lock::Lock;
use crate::model::{BuildStep, Host, ImageSource, Name};
use crate::validate::{self, Validated};

/// The lock file that belongs to a host file: `host.kdl` → `host.kdl.lock`.
pub fn lock_path_for(host_file: &Path) -> PathBuf {
    let mut name = host_file.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// A file that was read, for reporting diagnostics against it.
pub struct Loaded {
    pub path: PathBuf,
    pub text: String,
}

/// A host file and its lock, read, parsed and validated.
pub struct Outcome {
    pub host_file: Loaded,
    pub lock_file: Option<Loaded>,
    pub lock_path: PathBuf,
    /// Problems in the host file.
    pub diagnostics: Vec<Diagnostic>,
    /// A problem in the lock file.
    pub lock_diagnostic: Option<Diagnostic>,
    pub validated: Option<Validated>,
}

/// Reads and validates the host file at `path`, with its lock file (or
/// the one `lock_override` names).
pub fn load_and_validate(
    path: &Path,
    lock_override: Option<&Path>,
) -> Result<Outcome, miette::Report> {
    load_at_most(path, lock_override, config::MAX_SIZE_CLI)
}

/// [`load_and_validate`] of a host file of at most `limit` bytes (the
/// command line's `--max-file-size`); a larger one is one diagnostic.
pub fn load_at_most(
    path: &Path,
    lock_override: Option<&Path>,
    limit: usize,
) -> Result<Outcome, miette::Report> {
    let bytes = read_at_most(path, limit)
        .map_err(|e| miette::miette!("cannot read host file {}: {e}", path.display()))?;
    let lock_path = lock_override.map_or_else(|| lock_path_for(path), Path::to_path_buf);
    let lock_text = read_lock(&lock_path)?;
    Ok(validate_bytes(path, bytes, limit, lock_path, lock_text))
}

/// The first `limit + 1` bytes of the file at `path`: a byte past the
/// limit is enough to tell the file is too large.
pub fn read_at_most(path: &Path, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// [`validate_text`] of a host file's bytes: one diagnostic, and nothing
/// validated, when they are more than `limit` or not UTF-8.
pub fn validate_bytes(
    path: &Path,
    bytes: Vec<u8>,
    limit: usize,
    lock_path: PathBuf,
    lock_text: Option<String>,
) -> Outcome {
    match config::text_from_bytes(bytes, limit) {
        Ok(text) => validate_text(path, text, lock_path, lock_text),
        Err(rejected) => Outcome {
            host_file: Loaded {
                path: path.to_path_buf(),
                text: rejected.shown,
            },
            lock_file: None,
            lock_path,
            diagnostics: vec![rejected.diagnostic],
            lock_diagnostic: None,
            validated: None,
        },
    }
}

/// A lock file's text; `None` when there is none yet.
pub fn read_lock(lock_path: &Path) -> Result<Option<String>, miette::Report> {
    match std::fs::read_to_string(lock_path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(miette::miette!(
            "cannot read lock file {}: {e}",
            lock_path.display()
        )),
    }
}

/// Parses and validates a host file's text with its lock file's text.
pub fn validate_text(
    path: &Path,
    text: String,
    lock_path: PathBuf,
    lock_text: Option<String>,
) -> Outcome {
    validate_text_with(path, text, lock_path, lock_text, |text| {
        Lock::parse(text).map(Arc::new)
    })
}

/// [`validate_text`], with the lock file's text parsed by `parse_lock`,
/// which must give what `Lock::parse` gives (`ctm serve` keeps the lock
/// it parsed last: `state::Memory::parse_lock`).
pub fn validate_text_with(
    path: &Path,
    text: String,
    lock_path: PathBuf,
    lock_text: Option<String>,
    parse_lock: impl FnOnce(&str) -> Result<Arc<Lock>, Box<Diagnostic>>,
) -> Outcome {
    let (lock_file, previous, lock_diagnostic) =
        parse_lock_file(lock_path.clone(), lock_text, parse_lock);
    let source = Source::new(path.display().to_string(), text, Format::from_path(path));
    let (document, diagnostics) = config::parse(&source);
    validate_parsed(
        path,
        source,
        &document,
        diagnostics,
        (lock_file, lock_path, previous, lock_diagnostic),
    )
}

/// A lock file read and parsed: its text, the lock (empty when there is
/// none or it has a problem) and its problem.
type ParsedLock = (Option<Loaded>, PathBuf, Arc<Lock>, Option<Diagnostic>);

fn parse_lock_file(
    lock_path: PathBuf,
    lock_text: Option<String>,
    parse_lock: impl FnOnce(&str) -> Result<Arc<Lock>, Box<Diagnostic>>,
) -> (Option<Loaded>, Arc<Lock>, Option<Diagnostic>) {
    let lock_file = lock_text.map(|text| Loaded {
        path: lock_path,
        text,
    });
    let (previous, lock_diagnostic) = match &lock_file {
        Some(loaded) => match parse_lock(&loaded.text) {
            Ok(lock) => (lock, None),
            Err(d) => (Arc::new(Lock::empty()), Some(*d)),
        },
        None => (Arc::new(Lock::empty()), None),
    };
    (lock_file, previous, lock_diagnostic)
}

/// The rest of [`validate_text_with`], once the text is parsed.
fn validate_parsed(
    path: &Path,
    source: Source,
    document: &config::Document,
    mut diagnostics: Vec<Diagnostic>,
    (lock_file, lock_path, previous, lock_diagnostic): ParsedLock,
) -> Outcome {
    let mut validated = None;
    // Without a readable document or lock there is nothing sound to
    // validate; structural errors still let semantic ones be found.
    let syntax_failed = document.nodes.is_empty() && !diagnostics.is_empty();
    if lock_diagnostic.is_none() && !syntax_failed {
        match validate::validate(document, &previous) {
            Ok(mut v) if diagnostics.is_empty() => {
                diagnostics.extend(find_copy_sources(path, document, &mut v));
                if diagnostics.is_empty() {
                    validated = Some(v);
                }
            }
            Ok(_) => {}
            Err(more) => diagnostics.extend(more),
        }
    }
    Outcome {
        host_file: Loaded {
            path: path.to_path_buf(),
            text: source.text,
        },
        lock_file,
        lock_path,
        diagnostics,
        lock_diagnostic,
        validated,
    }
}

/// What a long-lived process (`ctm serve`) keeps of the last host text
/// it checked without a diagnostic and compiled, to answer the next text
/// that says the same (its document's digest, `config::Document::digest`,
/// and its lock file's text are those it was compiled from) without
/// validating and compiling it again: the editor's steady state, where
/// one text after another differs in a comment or in blank space only.
#[derive(Default)]
pub struct CompileCache {
    last: std::sync::Mutex<Option<Arc<Compiled>>>,
}

/// A host text checked without a diagnostic and compiled.
pub struct Compiled {
    document: [u8; 32],
    lock_text: Option<String>,
    /// [`summary`] of the host.
    pub summary: String,
    pub artifacts: Arc<Artifacts>,
}

/// A host text read, parsed and checked by [`CompileCache::check`].
pub struct Checked {
    /// Its diagnostics; `validated` is `None` when `compiled` answers.
    pub outcome: Outcome,
    /// The kept compile of a text that says the same, with the same lock
    /// file: nothing was validated.
    pub compiled: Option<Arc<Compiled>>,
    /// Its document's digest, when it parsed without a diagnostic.
    digest: Option<[u8; 32]>,
}

impl CompileCache {
    /// [`validate_text_with`], answered from the kept compile when the
    /// text says what the kept one said, with the same lock file.
    pub fn check(
        &self,
        path: &Path,
        text: String,
        lock_path: PathBuf,
        lock_text: Option<String>,
        parse_lock: impl FnOnce(&str) -> Result<Arc<Lock>, Box<Diagnostic>>,
    ) -> Checked {
        let (lock_file, previous, lock_diagnostic) =
            parse_lock_file(lock_path.clone(), lock_text, parse_lock);
        let source = Source::new(path.display().to_string(), text, Format::from_path(path));
        let (document, diagnostics) = config::parse(&source);
        let digest =
            (diagnostics.is_empty() && lock_diagnostic.is_none()).then(|| document.digest());
        let kept = self.last().filter(|c| {
            Some(c.document) == digest
                && c.lock_text.as_deref() == lock_file.as_ref().map(|l| l.text.as_str())
        });
        if let Some(compiled) = kept {
            return Checked {
                outcome: Outcome {
                    host_file: Loaded {
                        path: path.to_path_buf(),
                        text: source.text,
                    },
                    lock_file,
                    lock_path,
                    diagnostics,
                    lock_diagnostic,
                    validated: None,
                },
                compiled: Some(compiled),
                digest,
            };
        }
        let outcome = validate_parsed(
            path,
            source,
            &document,
            diagnostics,
            (lock_file, lock_path, previous, lock_diagnostic),
        );
        Checked {
            outcome,
            compiled: None,
            digest,
        }
    }

    /// Keeps what `checked` (validated, without a diagnostic) compiled
    /// to: `artifacts` must be `compile::compile` of its model alone (no
    /// image tag resolved from outside, which the text does not say).
    pub fn keep(&self, checked: &Checked, summary: String, artifacts: Arc<Artifacts>) {
        let Some(document) = checked.digest else {
            return;
        };
        if checked.outcome.validated.is_none() || checked.outcome.error_count() > 0 {
            return;
        }
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(Compiled {
            document,
            lock_text: checked.outcome.lock_file.as_ref().map(|l| l.text.clone()),
            summary,
            artifacts,
        }));
    }

    fn last(&self) -> Option<Arc<Compiled>> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Finds the source of every `copy` step of an image build beside the
/// host file at `host_file` and puts its path in the model (resolved:
/// no symbolic link left in it), so that compiling reads no disk. A
/// source that is not there, or that a symbolic link leads out of the
/// host file's directory, is a diagnostic at the source.
fn find_copy_sources(
    host_file: &Path,
    document: &config::Document,
    validated: &mut Validated,
) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let directory = match host_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let directory = std::fs::canonicalize(directory).unwrap_or_else(|_| directory.to_path_buf());
    for node in document.nodes_named("image") {
        let Some(image) = node
            .arg(0)
            .and_then(|n| n.value.as_str())
            .and_then(|n| crate::model::Name::parse(n).ok())
            .and_then(|n| validated.host.images.get_mut(&n))
        else {
            continue;
        };
        let ImageSource::Build { steps, .. } = &mut image.source else {
            continue;
        };
        let mut nodes: Vec<&config::Node> = node.children_named("copy").collect();
        // In the order validation read the steps.
        nodes.sort_by_key(|n| n.span.offset());
        let copies = steps.iter_mut().filter_map(|s| match s {
            BuildStep::Copy {
                source, host_path, ..
            } => Some((source, host_path)),
            _ => None,
        });
        for ((source, host_path), node) in copies.zip(nodes) {
            let Some(span) = node.arg(0).map(|a| a.span) else {
                continue;
            };
            let wanted = directory.join(source.as_str());
            match std::fs::canonicalize(&wanted) {
                Ok(found) if found.starts_with(&directory) => {
                    *host_path = Some(found.display().to_string());
                }
                Ok(found) => diagnostics.push(
                    Diagnostic::error(
                        "ctm::copy-source",
                        format!(
                            "copy source `{source}` leads out of {} (to {})",
                            directory.display(),
                            found.display()
                        ),
                        span,
                    )
                    .with_label("a symbolic link leads out")
                    .with_help(
                        "a build copies only what lies beside its host file; copy the file there",
                    ),
                ),
                Err(e) => diagnostics.push(
                    Diagnostic::error(
                        "ctm::copy-source",
                        format!(
                            "copy source `{source}` is not in {} ({e})",
                            directory.display()
                        ),
                        span,
                    )
                    .with_label("not found")
                    .with_help("a copy source is relative to the host file's directory"),
                ),
            }
        }
    }
    diagnostics
}

impl Outcome {
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
            + usize::from(self.lock_diagnostic.is_some())
    }

    /// The host file's diagnostics sorted by position (then message).
    pub fn sorted_diagnostics(&self) -> Vec<&Diagnostic> {
        crate::diagnostic::sorted(&self.diagnostics)
    }

    /// The document `ctm check --format json` prints (and the web editor
    /// shows): every diagnostic, sorted by position, then the lock's.
    pub fn diagnostics_json(&self) -> serde_json::Value {
        let host_name = self.host_file.path.display().to_string();
        let mut list = json_in_file(&host_name, &self.host_file.text, self.sorted_diagnostics());
        if let Some(d) = &self.lock_diagnostic {
            let lock_text = self.lock_file.as_ref().map_or("", |l| l.text.as_str());
            list.push(d.to_json(&self.lock_path.display().to_string(), lock_text));
        }
        serde_json::json!({
            "file": host_name,
            "valid": self.error_count() == 0,
            "diagnostics": list,
        })
    }
}

/// The host file compiled, with what it was compiled from.
pub struct Desired {
    pub source_path: PathBuf,
    pub source_text: String,
    pub previous_lock: Option<String>,
    pub lock_text: String,
    pub artifacts: Artifacts,
    pub summary: String,
    /// The topologies it was compiled with down: of those asked for, the
    /// ones the host file defines (`Meta::down` of its generation).
    pub down: BTreeSet<Name>,
}

impl Desired {
    /// Compiles a validated host file with the topologies named in `down`
    /// down (the current generation's, or what `ctm up`/`ctm down` asks
    /// for); `None` when it has errors.
    pub fn compile(outcome: &Outcome, down: &BTreeSet<Name>) -> Option<Desired> {
        let path = &outcome.host_file.path;
        let validated = outcome.validated.as_ref()?;
        let with_down;
        let host = if validated.host.topologies.keys().any(|t| down.contains(t)) {
            // A copy only when something is down: the state is data the
            // engine hands the compiler, never read by it.
            let mut host = validated.host.clone();
            host.set_down(down);
            with_down = host;
            &with_down
        } else {
            &validated.host
        };
        Some(Desired {
            down: host.down(),
            source_path: path.to_path_buf(),
            source_text: outcome.host_file.text.clone(),
            previous_lock: outcome.lock_file.as_ref().map(|l| l.text.clone()),
            lock_text: validated.lock.render(),
            artifacts: compile::compile(host),
            summary: summary(host),
        })
    }
}

/// What a host holds, in a few words: `3 containers, 1 network, 0 tunnels`.
pub fn summary(host: &Host) -> String {
    [
        (host.containers.len(), "container"),
        (host.networks.len(), "network"),
        (host.tunnels.len(), "tunnel"),
    ]
    .iter()
    .map(|(n, what)| format!("{n} {what}{}", if *n == 1 { "" } else { "s" }))
    .collect::<Vec<_>>()
    .join(", ")
}

/// The host file and lock stored with generation `n`, validated again:
/// the model of what the host runs (its images, environments, forwards),
/// beyond the compiled files.
pub fn stored(store: &crate::state::Store, n: u64) -> Result<Outcome, crate::state::StateError> {
    let (name, text, lock) = store.source(n)?;
    let path = PathBuf::from(&name);
    Ok(validate_text(&path, text, lock_path_for(&path), lock))
}
