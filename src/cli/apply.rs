//! `ctm apply FILE|PLAN.json`: move the host to a new generation, or leave
//! it exactly as it was.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use miette::{IntoDiagnostic as _, miette};

use super::plan::{Desired, SavedPlan, desired, desired_from, print_plan, read_saved};
use super::session::{RootArgs, Session, SwitchArgs, confirm, progress, switch_in_unit};
use super::{lock_path_for, validate_text};
use crate::apply::{Stage, SwitchSpec};
use crate::clock::{now_rfc3339, now_unix};
use crate::fs;
use crate::plan::Plan;
use crate::state::Meta;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The host file, or a plan saved with `ctm plan -o PLAN.json`.
    file: PathBuf,
    #[command(flatten)]
    root: RootArgs,
    /// Apply without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    #[command(flatten)]
    options: crate::plan::Options,
    /// After applying, wait this long for `ctm confirm`, else roll back.
    #[arg(long, value_name = "SECONDS")]
    confirm_timeout: Option<u64>,
    /// Leave out the diffs of file contents.
    #[arg(long)]
    no_diff: bool,
    #[command(flatten)]
    switch: SwitchArgs,
}

/// A deleted tree cannot come back, so an apply that deletes one cannot
/// wait for a confirmation that would undo it.
fn prune_with_confirm_timeout() -> miette::Report {
    miette!(
        help = "apply with --confirm-timeout first, and once it is confirmed, `ctm apply --prune`",
        "--prune cannot be combined with --confirm-timeout: a deleted root file system cannot be brought back by the revert"
    )
}

pub fn run(args: &Args) -> miette::Result<ExitCode> {
    let is_saved = args.file.extension().is_some_and(|e| e == "json");
    let (desired, saved) = if is_saved {
        let saved = read_saved(&args.file)?;
        let root = args
            .root
            .root
            .canonicalize()
            .unwrap_or_else(|_| args.root.root.clone());
        if saved.root != root {
            return Err(miette!(
                "{} was planned for root {}, not {}",
                args.file.display(),
                saved.root.display(),
                root.display()
            ));
        }
        let outcome = validate_text(
            &saved.source_path,
            saved.source_text.clone(),
            lock_path_for(&saved.source_path),
            saved.lock_text.clone(),
        );
        (desired_from(outcome)?, Some(saved))
    } else {
        (desired(&args.file)?, None)
    };
    let Some(desired) = desired else {
        return Ok(ExitCode::FAILURE);
    };
    let options = saved.as_ref().map_or(args.options, |s| s.options);
    if options.prune && args.confirm_timeout.is_some() {
        return Err(prune_with_confirm_timeout());
    }

    let mut session = Session::open(&args.root, true)?;
    let plan = session.plan(&desired.artifacts, options)?;
    if let Some(saved) = &saved
        && saved.plan.fingerprint != plan.fingerprint
    {
        return Err(miette!(
            help = "run `ctm plan` again and apply the new plan",
            "stale plan: the host changed since {} was made (it was planned against generation {}, the host is on {})",
            args.file.display(),
            saved
                .plan
                .from_generation
                .map_or("none".into(), |n| n.to_string()),
            plan.from_generation
                .map_or("none".into(), |n| n.to_string()),
        ));
    }
    if args.switch.in_unit {
        // The ctm that started this unit showed the plan already.
        eprintln!(
            "Plan: {} to add, {} to change, {} to destroy; {} actions.",
            plan.summary.add, plan.summary.change, plan.summary.destroy, plan.summary.actions
        );
    } else {
        print_plan(
            &plan,
            &format!("ctm apply {}", args.file.display()),
            !args.no_diff,
        );
    }
    if !plan.conflicts.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    if plan.is_empty() {
        note_lock(&desired, &args.switch);
        return Ok(ExitCode::SUCCESS);
    }
    if saved.is_none() && !args.switch.in_unit && !confirm("Apply these changes?", args.yes)? {
        eprintln!("Nothing applied.");
        return Ok(ExitCode::FAILURE);
    }

    if args.switch.detaches(&session) {
        // What was shown and confirmed is what the unit applies: as a saved
        // plan, refused there if the host changed in between.
        let request = SavedPlan {
            ctm_saved_plan: 1,
            root: args.root.root.clone(),
            source_path: desired.source_path.clone(),
            source_text: desired.source_text.clone(),
            lock_text: desired.previous_lock.clone(),
            options,
            plan,
        };
        let number = session.store.next_number()?;
        drop(session);
        let text = serde_json::to_vec_pretty(&request).into_diagnostic()?;
        let mut unit_args = vec![
            "apply".to_string(),
            "--root".to_string(),
            args.root.root.display().to_string(),
        ];
        if let Some(seconds) = args.confirm_timeout {
            unit_args.extend(["--confirm-timeout".to_string(), seconds.to_string()]);
        }
        let done = switch_in_unit(
            &args.root.root,
            &format!("ctm apply {} (generation {number})", args.file.display()),
            &unit_args,
            Some(("apply-plan.json", &text)),
        )?;
        if !done {
            return Ok(ExitCode::FAILURE);
        }
        note_lock(&desired, &args.switch);
        return match args.confirm_timeout {
            Some(seconds) => await_confirmation(
                &args.root,
                number,
                request.plan.from_generation,
                seconds,
                true,
            ),
            None => Ok(ExitCode::SUCCESS),
        };
    }

    let number = session.store.next_number()?;
    let deadline = args.confirm_timeout.map(|s| now_unix() + s);
    let from = plan.from_generation;
    let mut report = progress;
    eprintln!("Applying generation {number} …");
    switch_to_new(&mut session, number, &desired, &plan, deadline, &mut report)?;
    note_lock(&desired, &args.switch);
    eprintln!("Applied: the host is on generation {number}.");

    let Some(seconds) = args.confirm_timeout else {
        return Ok(ExitCode::SUCCESS);
    };
    if args.switch.in_unit {
        // The revert timer is armed; the ctm that started this unit waits.
        return Ok(ExitCode::SUCCESS);
    }
    // Let `ctm confirm` take the lock while this process waits.
    let root = args.root.clone();
    let timer_armed = session.system.is_live();
    drop(session);
    await_confirmation(&root, number, from, seconds, timer_armed)
}

/// Waits for `ctm confirm`; when the time is up, the host goes back to
/// the previous generation: by the revert timer armed on the running
/// system, else by this process. If this process dies meanwhile, the
/// timer (or the next ctm command) does it.
fn await_confirmation(
    root: &RootArgs,
    number: u64,
    from: Option<u64>,
    seconds: u64,
    timer_armed: bool,
) -> miette::Result<ExitCode> {
    eprintln!(
        "Confirm within {seconds} s with `ctm confirm{}` (from another shell or a new SSH session), \
         or the host returns to generation {}.",
        if root.root.as_os_str() == "/" {
            String::new()
        } else {
            format!(" --root {}", root.root.display())
        },
        from.map_or("none".into(), |n| n.to_string())
    );
    let confirmed = wait_for_confirmation(root, number, timer_armed, &mut |m| eprintln!("{m}"))?;
    Ok(if confirmed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Waits until generation `number` is confirmed (true) or rolled back
/// (false). When its deadline passes, the revert timer rolls it back if
/// one is armed (`timer_armed`, the running system); else this process
/// does.
pub fn wait_for_confirmation(
    root: &RootArgs,
    number: u64,
    timer_armed: bool,
    say: &mut dyn FnMut(&str),
) -> miette::Result<bool> {
    let store = crate::state::Store::new(&root.root);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        match store.pending_confirm()? {
            None => {
                // Confirmed, or rolled back by another ctm that saw the deadline pass.
                return Ok(if store.current()? == Some(number) {
                    say(&format!(
                        "Confirmed: the host stays on generation {number}."
                    ));
                    true
                } else {
                    say(&format!("Generation {number} was rolled back."));
                    false
                });
            }
            // The timer reverts; this process only reports, unless the
            // timer is long overdue.
            Some(p) if timer_armed && now_unix() < p.deadline + 60 => {}
            Some(p) if p.generation == number && now_unix() >= p.deadline => {
                let mut session = Session::open(root, true)?;
                // `open` has already rolled back an expired confirmation.
                session.revert_unconfirmed()?;
                say("Not confirmed in time: rolled back.");
                return Ok(false);
            }
            Some(_) => {}
        }
    }
}

/// Switches the host to generation `number`, made from `desired` by
/// `plan`: the one way `ctm apply` and the web editor apply.
pub fn switch_to_new(
    session: &mut Session,
    number: u64,
    desired: &Desired,
    plan: &Plan,
    confirm_deadline: Option<u64>,
    progress: &mut dyn FnMut(&str),
) -> miette::Result<()> {
    let meta = Meta {
        number,
        created: now_rfc3339(),
        source_name: desired
            .source_path
            .file_name()
            .map_or("host.kdl".into(), |n| n.to_string_lossy().into_owned()),
        source_sha256: fs::sha256_hex(desired.source_text.as_bytes()),
        summary: desired.summary.clone(),
        ctm_version: env!("CARGO_PKG_VERSION").into(),
    };
    session.engine(progress).switch(&SwitchSpec {
        from: plan.from_generation,
        to: Some(number),
        desired: &desired.artifacts,
        files: &plan.files,
        actions: &plan.actions,
        confirm_deadline,
        stage: Some(Stage {
            meta: &meta,
            source_text: &desired.source_text,
            lock_text: &desired.lock_text,
        }),
    })?;
    Ok(())
}

/// Records the assigned addresses next to the host file. The generation
/// holds them too, so failing here loses nothing: the message says so.
pub fn write_lock(desired: &Desired) -> Option<String> {
    if desired.previous_lock.as_deref() == Some(desired.lock_text.as_str()) {
        return None;
    }
    let path = lock_path_for(&desired.source_path);
    Some(
        match fs::write_file(&path, desired.lock_text.as_bytes(), 0o644) {
            Ok(()) => format!("updated {}", path.display()),
            Err(e) => format!("warning: {e}; the generation keeps a copy of the lock"),
        },
    )
}

/// Writes the lock file next to the host file and says so. In the
/// transient unit the host file's path may be relative to another
/// directory: the ctm that started the unit writes it.
fn note_lock(desired: &Desired, switch: &SwitchArgs) {
    if switch.in_unit {
        return;
    }
    if let Some(message) = write_lock(desired) {
        eprintln!("{message}");
    }
}
