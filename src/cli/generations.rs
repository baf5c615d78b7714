//! Commands on the generations: list, diff, roll back, confirm, recover,
//! collect garbage.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::ExitCode;

use miette::{IntoDiagnostic as _, miette};

use super::plan::print_plan;
use super::session::{RootArgs, Session, SwitchArgs, confirm, progress, switch_in_unit};
use crate::apply::SwitchSpec;
use crate::compile::{Artifacts, Content};
use crate::plan::Plan;

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    root: RootArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn list(args: &ListArgs) -> miette::Result<ExitCode> {
    let session = Session::open(&args.root, false)?;
    let current = session.store.current()?;
    let mut rows = Vec::new();
    for n in session.store.generations()? {
        let g = session.store.load(n)?;
        rows.push((g.meta, current == Some(n)));
    }
    if args.json {
        let list: Vec<_> = rows
            .iter()
            .map(|(m, is_current)| serde_json::json!({ "generation": m, "current": is_current }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list).into_diagnostic()?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "No generations yet: nothing has been applied under {}.",
            args.root.root.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>4}  {:<20}  {:<24}  {:<12}  summary",
        "gen", "created", "source", "sha256"
    );
    for (m, is_current) in rows {
        println!(
            "{:>4}{} {:<20}  {:<24}  {:<12}  {}",
            m.number,
            if is_current { "*" } else { " " },
            m.created,
            m.source_name,
            &m.source_sha256[..12.min(m.source_sha256.len())],
            m.summary
        );
    }
    println!("(* current)");
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The older generation.
    a: u64,
    /// The newer generation.
    b: u64,
    #[command(flatten)]
    root: RootArgs,
}

pub fn diff(args: &DiffArgs) -> miette::Result<ExitCode> {
    let session = Session::open(&args.root, false)?;
    let a = session.store.artifacts(args.a)?;
    let b = session.store.artifacts(args.b)?;
    let diffs = file_diffs(&a, &b, &args.a.to_string(), &args.b.to_string());
    let mut out = anstream::stdout();
    let changed = diffs.len();
    for (_, diff) in diffs {
        for line in diff.lines() {
            let style = match line.chars().next() {
                Some('+') if !line.starts_with("+++") => anstyle::AnsiColor::Green.on_default(),
                Some('-') if !line.starts_with("---") => anstyle::AnsiColor::Red.on_default(),
                Some('@') => anstyle::AnsiColor::Cyan.on_default(),
                _ => anstyle::Style::new(),
            };
            let _ = writeln!(out, "{style}{line}{style:#}");
        }
    }
    eprintln!(
        "{changed} file{} differ between generations {} and {}",
        if changed == 1 { "" } else { "s" },
        args.a,
        args.b
    );
    Ok(ExitCode::SUCCESS)
}

/// The unified diff of every file that differs between two sets of
/// artifacts, by path; the headers name them `A/path` and `B/path`.
pub fn file_diffs(
    a: &Artifacts,
    b: &Artifacts,
    a_name: &str,
    b_name: &str,
) -> Vec<(String, String)> {
    let text = |c: Option<&Content>| match c {
        Some(Content::File { text, .. }) => text.clone(),
        Some(Content::Symlink { target }) => format!("-> {target}\n"),
        None => String::new(),
    };
    let paths: BTreeSet<&String> = a.files.keys().chain(b.files.keys()).collect();
    let mut diffs = Vec::new();
    for path in paths {
        let before = text(a.files.get(path).map(|x| &x.content));
        let after = text(b.files.get(path).map(|x| &x.content));
        if before == after {
            continue;
        }
        let diff = similar::TextDiff::from_lines(&before, &after)
            .unified_diff()
            .context_radius(3)
            .header(&format!("{a_name}/{path}"), &format!("{b_name}/{path}"))
            .to_string();
        diffs.push((path.clone(), diff));
    }
    diffs
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The generation to return to (default: the one before the current).
    generation: Option<u64>,
    #[command(flatten)]
    root: RootArgs,
    /// Roll back without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Leave out the diffs of file contents.
    #[arg(long)]
    no_diff: bool,
    #[command(flatten)]
    switch: SwitchArgs,
}

pub fn rollback(args: &RollbackArgs) -> miette::Result<ExitCode> {
    let mut session = Session::open(&args.root, true)?;
    let current = session.store.current()?;
    let target = rollback_target(&session, args.generation)?;
    if Some(target) == current {
        eprintln!("The host is already on generation {target}.");
        return Ok(ExitCode::SUCCESS);
    }
    let desired = session.store.artifacts(target)?;
    let plan = session.plan(&desired, crate::plan::Options::default())?;
    if !args.switch.in_unit {
        print_plan(
            &plan,
            &format!("ctm rollback to generation {target}"),
            !args.no_diff,
        );
    }
    if !plan.conflicts.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    if !args.switch.in_unit && !confirm(&format!("Roll back to generation {target}?"), args.yes)? {
        eprintln!("Nothing changed.");
        return Ok(ExitCode::FAILURE);
    }
    if args.switch.detaches(&session) {
        drop(session);
        let done = switch_in_unit(
            &args.root.root,
            &format!("ctm rollback to generation {target}"),
            &[
                "rollback".to_string(),
                target.to_string(),
                "--root".to_string(),
                args.root.root.display().to_string(),
            ],
            None,
        )?;
        return Ok(if done {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let mut report = progress;
    roll_back_to(&mut session, target, &desired, &plan, &mut report)?;
    eprintln!("Rolled back: the host is on generation {target}.");
    Ok(ExitCode::SUCCESS)
}

/// The generation `ctm rollback [GEN]` returns to: the one asked for, or
/// the one before the current.
pub fn rollback_target(session: &Session, asked: Option<u64>) -> miette::Result<u64> {
    if let Some(n) = asked {
        return Ok(n);
    }
    let Some(cur) = session.store.current()? else {
        return Err(miette!(
            "nothing has been applied yet, so there is nothing to roll back"
        ));
    };
    session
        .store
        .generations()?
        .iter()
        .rev()
        .find(|n| **n < cur)
        .copied()
        .ok_or_else(|| miette!("generation {cur} is the oldest; there is nothing before it"))
}

/// Switches the host back to generation `target` (whose artifacts are
/// `desired`) by `plan`: the one way the CLI and the web editor roll back.
pub fn roll_back_to(
    session: &mut Session,
    target: u64,
    desired: &Artifacts,
    plan: &Plan,
    progress: &mut dyn FnMut(&str),
) -> miette::Result<()> {
    session.engine(progress).switch(&SwitchSpec {
        from: plan.from_generation,
        to: Some(target),
        desired,
        files: &plan.files,
        actions: &plan.actions,
        confirm_deadline: None,
        stage: None,
    })?;
    // A rollback settles any pending confirmation.
    session.store.clear_pending_confirm()?;
    if let Err(e) = session.system.disarm_revert() {
        progress(&format!("warning: {e}"));
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// How many of the newest generations to keep (the current one is
    /// always kept).
    #[arg(long, value_name = "N")]
    keep: usize,
    #[command(flatten)]
    root: RootArgs,
}

pub fn gc(args: &GcArgs) -> miette::Result<ExitCode> {
    let session = Session::open(&args.root, false)?;
    let current = session.store.current()?;
    let pending = session.store.pending_confirm()?;
    let all = session.store.generations()?;
    let keep_from = all.len().saturating_sub(args.keep);
    let mut removed = Vec::new();
    for (i, n) in all.iter().enumerate() {
        let protected = i >= keep_from
            || Some(*n) == current
            || pending
                .as_ref()
                .is_some_and(|p| p.previous == Some(*n) || p.generation == *n);
        if !protected {
            session.store.remove_generation(*n)?;
            removed.push(n.to_string());
        }
    }
    session.store.remove_unused_objects()?;
    if !removed.is_empty() {
        eprintln!(
            "Removed generation{} {}.",
            if removed.len() == 1 { "" } else { "s" },
            removed.join(", ")
        );
    }
    let images = remove_unused_images(&session)?;
    if removed.is_empty() && images == 0 {
        eprintln!("Nothing to remove.");
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes the images in the store that no generation left uses (a
/// rollback to one of them may need its images again); returns how many.
fn remove_unused_images(session: &Session) -> miette::Result<usize> {
    use crate::backend::provision::{self, StoredImage};
    use crate::compile::provision::{Action, Step};
    let mut wanted = Vec::new();
    for n in session.store.generations()? {
        for (path, artifact) in &session.store.artifacts(n)?.files {
            let (true, Content::File { text, .. }) =
                (path.ends_with("/provision.json"), &artifact.content)
            else {
                continue;
            };
            // A generation ctm cannot read is a reason to keep every image.
            let steps: Vec<Step> = serde_json::from_str(text).map_err(|e| {
                miette!("generation {n}: {path} is not readable ({e}); no image removed")
            })?;
            wanted.extend(steps.into_iter().filter_map(|s| match s.action {
                Action::CreateRootfs { image, source } => Some(StoredImage { image, source }),
                _ => None,
            }));
        }
    }
    let unused = provision::unused_images(session.store.root(), &wanted);
    for record in &unused {
        provision::remove_image(record)?;
        eprintln!(
            "Removed image {} (no generation uses it).",
            record.with_extension("").display()
        );
    }
    Ok(unused.len())
}

pub fn confirm_pending(root: &RootArgs) -> miette::Result<ExitCode> {
    let mut session = Session::open(root, false)?;
    match session.store.pending_confirm()? {
        Some(p) => {
            session.store.clear_pending_confirm()?;
            // With the confirmation gone from the state, a timer that
            // fired anyway would find nothing to revert.
            if let Err(e) = session.system.disarm_revert() {
                eprintln!("warning: {e}; the revert timer will find nothing to do");
            }
            eprintln!("Confirmed: the host stays on generation {}.", p.generation);
        }
        None => eprintln!("Nothing is waiting for confirmation."),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn recover(root: &RootArgs) -> miette::Result<ExitCode> {
    // Opening a session recovers; say where that leaves the host.
    let session = Session::open(root, false)?;
    eprintln!(
        "The host is on generation {}; no switch is in progress.",
        session
            .store
            .current()?
            .map_or("none".into(), |n| n.to_string())
    );
    Ok(ExitCode::SUCCESS)
}
