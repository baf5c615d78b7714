//! What every command that works on a root shares: the root and lock
//! options, taking the lock, finishing an interrupted switch first, and
//! computing a plan.

use std::fs::File;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use miette::{IntoDiagnostic as _, WrapErr as _, miette};
use nix::fcntl::Flock;

use crate::apply::{Engine, Recovered, SwitchSpec};
use crate::backend::live::LiveSystem;
use crate::backend::{FilesOnly, System};
use crate::clock::now_unix;
use crate::compile::Artifacts;
use crate::compile::health;
use crate::fs::{self, Entry};
use crate::live::{self, LiveFile};
use crate::plan::{self, Manifest, Plan, SystemState};
use crate::state::{Memory, StateError, Store};

/// How a switch (apply, rollback) runs on the running system.
#[derive(Debug, Clone, clap::Args)]
pub struct SwitchArgs {
    /// Run the switch in this process rather than in a transient systemd
    /// unit. Then, if this process dies part-way (a dropped SSH session),
    /// the next ctm command rolls the switch back instead of it finishing.
    #[arg(long)]
    pub foreground: bool,
    /// Set by ctm itself for the process that runs in the transient unit.
    #[arg(long, hide = true)]
    pub in_unit: bool,
}

impl SwitchArgs {
    /// Whether this process hands the switch to a transient unit.
    pub fn detaches(&self, session: &Session) -> bool {
        session.system.is_live() && !self.foreground && !self.in_unit
    }
}

/// Where the process in the transient unit writes its output, for the
/// ctm that started it to follow (and for later reading).
const RUN_DIR: &str = "run/ctm";

/// Runs `ctm ARGS --in-unit` as the transient unit that performs a switch,
/// following its output; the unit outlives this process, so a dropped SSH
/// session cannot leave a switch half done. Returns whether it succeeded.
pub fn switch_in_unit(
    root: &Path,
    description: &str,
    args: &[String],
    request: Option<(&str, &[u8])>,
) -> miette::Result<bool> {
    let dir = root.join(RUN_DIR);
    std::fs::create_dir_all(&dir)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot create {}", dir.display()))?;
    let mut argv = vec![
        std::env::current_exe()
            .into_diagnostic()
            .wrap_err("cannot find ctm's own binary")?
            .display()
            .to_string(),
    ];
    argv.extend(args.iter().cloned());
    if let Some((name, bytes)) = request {
        let path = dir.join(name);
        fs::write_file(&path, bytes, 0o600)?;
        argv.push(path.display().to_string());
    }
    argv.push("--in-unit".into());
    let log = dir.join("switch.log");
    fs::write_file(&log, b"", 0o600)?;
    // ctm's own settings (and, in tests, its fault injection) go along.
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CTM_"))
        .collect();
    let live = LiveSystem::connect(root)?;
    eprintln!(
        "Running the switch as {} (it finishes even if this session ends; its output: {}) …",
        crate::backend::live::APPLY_UNIT,
        log.display()
    );
    Ok(live.run_in_unit(
        crate::backend::live::APPLY_UNIT,
        description,
        &argv,
        &env,
        &log,
        &mut |line| eprintln!("{line}"),
    )?)
}

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

pub fn is_system_root(root: &Path) -> bool {
    root.canonicalize().is_ok_and(|p| p == Path::new("/"))
}

/// The running system for `/`, files only for any other root. A command
/// that only reads (`plan`, `status`) still works where systemd cannot be
/// reached, saying that the live state is unknown.
fn system_for(root: &Path, changes: bool) -> miette::Result<Box<dyn System>> {
    if !is_system_root(root) {
        return Ok(Box::new(FilesOnly));
    }
    match LiveSystem::connect(root) {
        Ok(live) => Ok(Box::new(live)),
        Err(e) if changes => Err(miette!(
            help = "ctm drives the running system through systemd (252 or newer, as PID 1, with D-Bus) and nft; \
                    use --root DIR to manage the files under DIR instead",
            "cannot change the running system: {e}"
        )),
        Err(e) => {
            eprintln!(
                "warning: cannot reach the running system ({e}); showing file changes only, \
                 without the live state of containers, links and the firewall"
            );
            Ok(Box::new(FilesOnly))
        }
    }
}

pub fn progress(line: &str) {
    eprintln!("  {line}");
}

impl Session {
    /// Takes the lock on the root and finishes anything an interrupted ctm
    /// left behind. `changes` says whether the command will change the
    /// host, which on the running system needs the live backend.
    pub fn open(args: &RootArgs, changes: bool) -> miette::Result<Session> {
        let system = system_for(&args.root, changes)?;
        let store = Store::new(&args.root);
        let lock = store.lock(args.lock_timeout.map(Duration::from_secs), || {
            eprintln!(
                "waiting for another ctm to finish (it holds {}) …",
                store.dir().join("lock").display()
            )
        })?;
        let mut session = Session {
            store,
            system,
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
            system: system_for(&args.root, false)?,
            store,
            _lock: lock,
        })
    }

    /// The same session, keeping the current generation's manifest and the
    /// stat cache in `memory` between plans (`ctm serve`).
    pub fn with_memory(self, memory: Arc<Memory>) -> Session {
        Session {
            store: self.store.with_memory(memory),
            ..self
        }
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
        let plan = self.plan(&desired, plan::Options::ADOPT)?;
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
        if let Err(e) = self.system.disarm_revert() {
            eprintln!("warning: {e}");
        }
        eprintln!(
            "ctm: the host is back on generation {}",
            pending.previous.map_or("none".into(), |n| n.to_string())
        );
        Ok(())
    }

    /// The plan from the current generation to `desired`.
    pub fn plan(&mut self, desired: &Artifacts, options: plan::Options) -> miette::Result<Plan> {
        Ok(self.plan_and_state(desired, options)?.0)
    }

    /// The plan, and the live state it was made against.
    pub fn plan_and_state(
        &mut self,
        desired: &Artifacts,
        options: plan::Options,
    ) -> miette::Result<(Plan, SystemState)> {
        let current = self.store.current()?;
        let manifest = match current {
            Some(n) => self.store.manifest(n)?,
            None => Arc::new(Manifest::default()),
        };
        let cache = self.store.stat_cache();
        let paths = desired.files.keys().chain(manifest.files.keys());
        let snapshot = match self.store.watcher() {
            Some(watcher) => watcher.read(paths, &cache)?,
            None => live::read(self.store.root(), paths, &cache)?,
        };
        if let Some(updated) = snapshot.cache {
            // Only a cache: failing to save it costs speed, nothing else.
            if let Err(e) = self.store.set_stat_cache(updated) {
                eprintln!("warning: {e}");
            }
        }
        // Files trusted from the cache come without text; the ones that will
        // change are read for their diff.
        let desired_manifest = self.store.manifest_of(desired);
        let mut live = snapshot.live;
        // Both maps sorted by path: one walk, no lookups.
        let mut wanted = desired_manifest.files.iter().peekable();
        for (path, file) in live.iter_mut() {
            while wanted.next_if(|(p, _)| *p < path).is_some() {}
            let unchanged = wanted
                .peek()
                .is_some_and(|(p, d)| *p == path && d.entry == file.entry);
            if file.text.is_none() && matches!(file.entry, Entry::File { .. }) && !unchanged {
                let (entry, bytes) = fs::read_entry(&self.store.root().join(path))?;
                *file = LiveFile {
                    entry,
                    text: bytes.and_then(|b| String::from_utf8(b).ok()),
                };
            }
        }
        let expect = health::of(desired).map_err(|e| miette!("{e}"))?;
        let mut system = self.system.observe(&expect)?;
        if options.check_steps {
            // Only containers whose steps are installed have run them.
            let names: std::collections::BTreeSet<String> = expect
                .containers
                .keys()
                .filter(|name| {
                    self.store
                        .root()
                        .join(crate::compile::provision::steps_path(name))
                        .exists()
                })
                .cloned()
                .collect();
            let mut report = progress;
            system.undone_steps = self.system.undone_steps(&names, &mut report)?;
        }
        let plan = plan::plan(&plan::Inputs {
            desired,
            desired_manifest: &desired_manifest,
            expect: &expect,
            current: current.map(|n| (n, manifest.as_ref())),
            live: &live,
            system: &system,
            options,
        });
        Ok((plan, system))
    }
}

/// Asks for confirmation on a terminal; elsewhere `--yes` is required.
pub fn confirm(question: &str, yes: bool) -> miette::Result<bool> {
    ask(&format!("{question} Only 'yes' is accepted:"), "yes", yes)
}

/// Asks on a terminal for `answer` to be typed; elsewhere `--yes` is
/// required.
pub fn ask(prompt: &str, answer: &str, yes: bool) -> miette::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(miette!(
            help = "pass --yes to go ahead without asking",
            "standard input is not a terminal, so ctm cannot ask for confirmation"
        ));
    }
    eprint!("{prompt} ");
    std::io::stderr().flush().into_diagnostic()?;
    let mut typed = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut typed)
        .into_diagnostic()
        .wrap_err("cannot read the answer")?;
    Ok(typed.trim() == answer)
}
