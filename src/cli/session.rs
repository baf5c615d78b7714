//! What every command that works on a root shares: the root and lock
//! options, taking the lock, finishing an interrupted switch first, and
//! computing a plan.

use std::fs::File;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use miette::{IntoDiagnostic as _, WrapErr as _, miette};
use nix::fcntl::Flock;

use crate::apply::{Engine, Recovered, SwitchSpec};
use crate::backend::fs::{self, Entry};
use crate::backend::{FilesOnly, System};
use crate::compile::Artifacts;
use crate::live;
use crate::plan::{self, LiveFile, Plan};
use crate::state::{Manifest, StateError, Store, now_unix};

#[derive(Debug, Clone, clap::Args)]
pub struct RootArgs {
    /// Manage the files under this directory instead of the running
    /// system (system actions are then listed, not performed).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Give up after waiting this long for another ctm to finish
    /// (default: wait as long as it takes).
    #[arg(long, value_name = "SECONDS")]
    pub lock_timeout: Option<u64>,
}

pub struct Session {
    pub store: Store,
    pub system: Box<dyn System>,
    _lock: Flock<File>,
}

/// The running system under `root`, for observing it and acting on it.
fn system_for(_root: &Path) -> Box<dyn System> {
    Box::new(FilesOnly)
}

pub fn is_system_root(root: &Path) -> bool {
    root.canonicalize().is_ok_and(|p| p == Path::new("/"))
}

pub fn progress(line: &str) {
    eprintln!("  {line}");
}

impl Session {
    /// Takes the lock on the root and finishes anything an interrupted ctm
    /// left behind. `changes` says whether the command will change the
    /// host, which on the running system needs the live backend.
    pub fn open(args: &RootArgs, changes: bool) -> miette::Result<Session> {
        if changes && is_system_root(&args.root) {
            return Err(miette!(
                help =
                    "use --root DIR to manage the files under DIR; `ctm plan` works on / already",
                "ctm cannot change the running system yet: its systemd, networkd and nftables backend is not built"
            ));
        }
        let store = Store::new(&args.root);
        let lock = store.lock(args.lock_timeout.map(Duration::from_secs), || {
            eprintln!(
                "waiting for another ctm to finish (it holds {}) …",
                store.dir().join("lock").display()
            )
        })?;
        let mut session = Session {
            store,
            system: system_for(&args.root),
            _lock: lock,
        };
        session.recover()?;
        Ok(session)
    }

    /// A session for reading only (plans, status), holding the lock shared
    /// so that readers run side by side (the stat cache is the one thing
    /// they write, safely). It cannot recover: if a switch was
    /// interrupted, it refuses, and the next writer finishes the job.
    pub fn open_shared(args: &RootArgs) -> miette::Result<Session> {
        let store = Store::new(&args.root);
        let lock = store.lock_shared(args.lock_timeout.map(Duration::from_secs), || {})?;
        if store.journal()?.is_some() {
            return Err(StateError::Interrupted.into());
        }
        Ok(Session {
            system: system_for(&args.root),
            store,
            _lock: lock,
        })
    }

    pub fn engine<'a>(&'a mut self, progress: &'a mut dyn FnMut(&str)) -> Engine<'a> {
        Engine {
            store: &self.store,
            system: self.system.as_mut(),
            progress,
        }
    }

    /// Completes an interrupted switch, and rolls back an apply whose
    /// confirmation time ran out while no ctm was waiting for it.
    pub fn recover(&mut self) -> miette::Result<()> {
        let mut report = progress;
        match self.engine(&mut report).recover()? {
            Recovered::Nothing => {}
            Recovered::Finished { generation } => eprintln!(
                "ctm: finished an interrupted switch; the host is on generation {}",
                generation.map_or("none".into(), |n| n.to_string())
            ),
            Recovered::RolledBack { to, problems } => {
                eprintln!(
                    "ctm: rolled back an interrupted switch; the host is on generation {}",
                    to.map_or("none".into(), |n| n.to_string())
                );
                for p in problems {
                    eprintln!("ctm: while undoing its actions: {p}");
                }
            }
        }
        if let Some(pending) = self.store.pending_confirm()?
            && now_unix() >= pending.deadline
        {
            eprintln!(
                "ctm: generation {} was not confirmed in time; rolling back",
                pending.generation
            );
            self.revert_unconfirmed()?;
        }
        Ok(())
    }

    /// Returns the host to the generation before an unconfirmed one.
    pub fn revert_unconfirmed(&mut self) -> miette::Result<()> {
        let Some(pending) = self.store.pending_confirm()? else {
            return Ok(());
        };
        let desired = match pending.previous {
            Some(n) => self.store.artifacts(n)?,
            None => Artifacts::default(),
        };
        // Restoring ctm's own earlier files: take over whatever is there.
        let plan = self.plan(&desired, true)?;
        let current = self.store.current()?;
        let mut report = progress;
        let result = self.engine(&mut report).switch(&SwitchSpec {
            from: current,
            to: pending.previous,
            desired: &desired,
            files: &plan.files,
            actions: &plan.actions,
            confirm_deadline: None,
            stage: None,
        });
        result?;
        self.store.clear_pending_confirm()?;
        eprintln!(
            "ctm: the host is back on generation {}",
            pending.previous.map_or("none".into(), |n| n.to_string())
        );
        Ok(())
    }

    /// The plan from the current generation to `desired`.
    pub fn plan(&mut self, desired: &Artifacts, adopt: bool) -> miette::Result<Plan> {
        let current = self.store.current()?;
        let manifest = match current {
            Some(n) => self.store.load(n)?.manifest,
            None => Manifest::default(),
        };
        let paths: Vec<&String> = desired.files.keys().chain(manifest.files.keys()).collect();
        let cache = self.store.stat_cache();
        let (mut live, updated) = live::read(self.store.root(), paths, &cache)?;
        if updated != cache {
            // Only a cache: failing to save it costs speed, nothing else.
            if let Err(e) = self.store.set_stat_cache(&updated) {
                eprintln!("warning: {e}");
            }
        }
        // Files trusted from the cache come without text; the ones that will
        // change are read for their diff.
        let desired_entries = Manifest::of(desired);
        for (path, file) in live.iter_mut() {
            let unchanged = desired_entries
                .files
                .get(path)
                .is_some_and(|d| d.entry == file.entry);
            if file.text.is_none() && matches!(file.entry, Entry::File { .. }) && !unchanged {
                let (entry, bytes) = fs::read_entry(&self.store.root().join(path))?;
                *file = LiveFile {
                    entry,
                    text: bytes.and_then(|b| String::from_utf8(b).ok()),
                };
            }
        }
        let system = self.system.observe()?;
        Ok(plan::plan(&plan::Inputs {
            desired,
            current: current.map(|n| (n, &manifest)),
            live: &live,
            system: &system,
            adopt,
        }))
    }
}

/// Asks for confirmation on a terminal; elsewhere `--yes` is required.
pub fn confirm(question: &str, yes: bool) -> miette::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(miette!(
            help = "pass --yes to go ahead without asking",
            "standard input is not a terminal, so ctm cannot ask for confirmation"
        ));
    }
    eprint!("{question} Only 'yes' is accepted: ");
    std::io::stderr().flush().into_diagnostic()?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .into_diagnostic()
        .wrap_err("cannot read the answer")?;
    Ok(answer.trim() == "yes")
}
