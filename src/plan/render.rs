//! A plan for people (Terraform-like text, coloured when the terminal
//! takes colour) and for programs (the JSON documented in docs/plan.md).

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};

use super::{Change, FileChange, Plan};
use crate::compile::Owner;
use crate::plan::Action;

const RED: Style = AnsiColor::Red.on_default();
const GREEN: Style = AnsiColor::Green.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const CYAN: Style = AnsiColor::Cyan.on_default();
const BOLD: Style = Style::new().bold();

fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

pub fn owner_label(owner: &Owner) -> String {
    match owner {
        Owner::Container(name) => format!("container {name}"),
        Owner::Network(name) => format!("network {name}"),
        Owner::Tunnel(name) => format!("tunnel {name}"),
        Owner::Firewall => "firewall".into(),
        Owner::Host => "host".into(),
    }
}

/// How much of the files' contents a plan shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// The path of each file only.
    NoDiffs,
    /// The diff of each changed file; new files by path, or, when there
    /// are many (a first apply), counted by kind.
    Changes,
    /// Every file: new ones whole, removed ones whole.
    Whole,
}

/// More new files than this are counted by kind rather than listed.
const LISTED_NEW_FILES: usize = 10;

/// What kind of file a path is, in words, for the count of new files.
fn kind_of(path: &str) -> &'static str {
    let file = path.rsplit('/').next().unwrap_or(path);
    if path.starts_with(crate::layout::AUTOSTART_PREFIX) {
        "autostart links"
    } else if path.contains(".wants/") {
        "unit links"
    } else if path.contains("sysctl.d/") {
        "sysctl settings"
    } else if file.ends_with(".service") || file.ends_with(".target") || file.ends_with(".socket") {
        "systemd units"
    } else if file == "health.json" {
        "health expectations"
    } else if file == "provision.json" {
        "provisioning steps"
    } else if file == "hostname" {
        "host names"
    } else if file.ends_with(".nspawn") {
        "container settings (.nspawn)"
    } else if file.ends_with(".netdev") {
        "link definitions (.netdev)"
    } else if file.ends_with(".network") {
        "network settings (.network)"
    } else if path.contains(".service.d/") {
        "unit drop-ins"
    } else if file.ends_with(".nft") {
        "firewall rulesets"
    } else {
        "other files"
    }
}

/// The plan as text with ANSI colours; `anstream` strips them where the
/// output is not a colour terminal (or NO_COLOR is set).
pub fn text(plan: &Plan, title: &str, show: Show) -> String {
    let mut out = String::new();
    let from = plan
        .from_generation
        .map_or("none".to_string(), |n| n.to_string());
    let _ = writeln!(
        out,
        "{}",
        paint(BOLD, &format!("{title} (host on generation {from})"))
    );
    if plan.is_empty() {
        out.push_str("\nNo changes. The host matches the host file.\n");
        held(&mut out, plan);
        link_kinds(&mut out, plan);
        kept_rootfs(&mut out, plan);
        kept_volumes(&mut out, plan);
        backups(&mut out, plan);
        volumes(&mut out, plan);
        return out;
    }
    if !plan.files.is_empty() {
        out.push('\n');
    }
    let added = plan
        .files
        .iter()
        .filter(|f| f.change == Change::Add)
        .count();
    let count_added = show != Show::Whole
        && (added > LISTED_NEW_FILES || (plan.from_generation.is_none() && added > 1));
    if count_added {
        let mut kinds: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for f in plan.files.iter().filter(|f| f.change == Change::Add) {
            *kinds.entry(kind_of(&f.path)).or_default() += 1;
        }
        let _ = writeln!(
            out,
            "  {} {}",
            paint(GREEN, "+"),
            paint(
                GREEN,
                &format!("{added} new files (`--diff` lists them and shows them whole):")
            )
        );
        for (kind, n) in kinds {
            let _ = writeln!(out, "      {n:>4} {kind}");
        }
    }
    for f in &plan.files {
        if count_added && f.change == Change::Add {
            continue;
        }
        let (sign, style) = match f.change {
            Change::Add => ("+", GREEN),
            Change::Change => ("~", YELLOW),
            Change::Destroy => ("-", RED),
        };
        let _ = writeln!(
            out,
            "  {} {}  ({}; {})",
            paint(style, sign),
            paint(style, &f.path),
            owner_label(&f.owner),
            f.reason
        );
    }
    for c in &plan.conflicts {
        let _ = writeln!(
            out,
            "  {} {}  {}",
            paint(RED, "!"),
            paint(RED, &c.path),
            c.reason
        );
    }
    if show != Show::NoDiffs {
        let shown = |f: &&FileChange| {
            !f.diff.is_empty() && (show == Show::Whole || f.change == Change::Change)
        };
        for f in plan.files.iter().filter(shown) {
            out.push('\n');
            for line in f.diff.lines() {
                let style = if line.starts_with("+++") || line.starts_with("---") {
                    BOLD
                } else if line.starts_with('+') {
                    GREEN
                } else if line.starts_with('-') {
                    RED
                } else if line.starts_with("@@") {
                    CYAN
                } else {
                    Style::new()
                };
                let _ = writeln!(out, "{}", paint(style, line));
            }
        }
    }
    if !plan.actions.is_empty() {
        let _ = writeln!(out, "\n{}", paint(BOLD, "Actions, in order:"));
        for (i, a) in plan.actions.iter().enumerate() {
            // Deleting data is the one thing a rollback cannot undo.
            let summary = match a {
                Action::RemoveRootfs { .. } => paint(RED, &a.summary()),
                _ => a.summary(),
            };
            let _ = writeln!(out, "  {}. {summary}\n       because {}", i + 1, a.reason());
        }
        if !plan.live_system {
            let _ = writeln!(
                out,
                "  {}",
                paint(
                    YELLOW,
                    "(not performed: the root is not the running system, so ctm manages files only)"
                )
            );
        }
    }
    held(&mut out, plan);
    link_kinds(&mut out, plan);
    if !plan.provisioning.is_empty() {
        let _ = writeln!(
            out,
            "\nProvisioning steps to check, for: {}",
            plan.provisioning.join(", ")
        );
    }
    kept_rootfs(&mut out, plan);
    kept_volumes(&mut out, plan);
    quotas(&mut out, plan);
    roots(&mut out, plan);
    backups(&mut out, plan);
    volumes(&mut out, plan);
    let s = &plan.summary;
    let _ = writeln!(
        out,
        "\n{}",
        paint(
            BOLD,
            &format!(
                "Plan: {} to add, {} to change, {} to destroy; {} action{}.",
                s.add,
                s.change,
                s.destroy,
                s.actions,
                if s.actions == 1 { "" } else { "s" }
            )
        )
    );
    let deleted = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::RemoveRootfs { .. }))
        .count();
    let deleted_volumes = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::RemoveVolume { .. }))
        .count();
    if deleted_volumes > 0 {
        let _ = writeln!(
            out,
            "{}",
            paint(
                RED,
                &format!(
                    "{deleted_volumes} volume{} will be deleted, with all data in {}; this cannot be undone.",
                    if deleted_volumes == 1 { "" } else { "s" },
                    if deleted_volumes == 1 { "it" } else { "them" }
                )
            )
        );
    }
    if deleted > 0 {
        let _ = writeln!(
            out,
            "{}",
            paint(
                RED,
                &format!(
                    "{deleted} root file system{} will be deleted, with all data in {}; this cannot be undone.",
                    if deleted == 1 { "" } else { "s" },
                    if deleted == 1 { "it" } else { "them" }
                )
            )
        );
    }
    if !plan.unsupported_links.is_empty() {
        let kinds: Vec<&str> = plan
            .unsupported_links
            .iter()
            .map(|n| n.kind.as_str())
            .collect();
        let _ = writeln!(
            out,
            "{}",
            paint(
                RED,
                &format!(
                    "The kernel cannot make {} links: nothing will be applied.",
                    kinds.join(", ")
                )
            )
        );
    }
    if !plan.unenforceable_quotas.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            paint(
                RED,
                "The volumes' file system cannot enforce a quota: nothing will be applied."
            )
        );
    }
    if !plan.unavailable_roots.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            paint(
                RED,
                "The file system cannot make a root file system the host file asks for: nothing will be applied."
            )
        );
    }
    if !plan.conflicts.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            paint(
                RED,
                &format!(
                    "{} conflict{}: nothing will be applied until {} resolved.",
                    plan.conflicts.len(),
                    if plan.conflicts.len() == 1 { "" } else { "s" },
                    if plan.conflicts.len() == 1 {
                        "it is"
                    } else {
                        "they are"
                    }
                )
            )
        );
    }
    out
}

/// The kinds of link the kernel lacks (an apply is refused), and those
/// not checked.
fn link_kinds(out: &mut String, plan: &Plan) {
    if !plan.unsupported_links.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            paint(RED, "Not supported by the running kernel:")
        );
        for note in &plan.unsupported_links {
            let _ = writeln!(
                out,
                "  {} {}  ({}): {}",
                paint(RED, "!"),
                paint(RED, &note.kind),
                note.links.join(", "),
                note.reason
            );
        }
        let _ = writeln!(
            out,
            "  Load or build the kernel's support for the kind (for gre: `modprobe ip_gre`), or use a kind it has; `ctm info` lists them."
        );
    }
    if !plan.unchecked_links.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            paint(
                YELLOW,
                "Kernel support not checked for these kinds of link:"
            )
        );
        for note in &plan.unchecked_links {
            let _ = writeln!(
                out,
                "  {}  ({}): {}",
                note.kind,
                note.links.join(", "),
                note.reason
            );
        }
    }
}

/// What waits for a paused container, and how to have it done.
fn held(out: &mut String, plan: &Plan) {
    if plan.held.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n{}",
        paint(
            YELLOW,
            "Held: not done, because the container is paused (an apply never resumes it):"
        )
    );
    for a in &plan.held {
        let _ = writeln!(out, "  - {}\n       because {}", a.summary(), a.reason());
    }
    let _ = writeln!(
        out,
        "  After `ctm resume NAME`, `ctm restart NAME` applies a held restart, and `ctm apply --check-steps` held provisioning."
    );
}

/// The last backup of each container with a `backup` block.
fn backups(out: &mut String, plan: &Plan) {
    if plan.backups.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nBackups:");
    for note in &plan.backups {
        let line = format!("container {}: {}", note.container, note.describe());
        let failed = note.last_run.as_ref().is_some_and(|r| r.failed());
        let _ = writeln!(out, "  {}", if failed { paint(RED, &line) } else { line });
    }
}

/// Each volume of the host file: what it holds, its quota, its last
/// backup.
fn volumes(out: &mut String, plan: &Plan) {
    if plan.volumes.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nVolumes:");
    for note in &plan.volumes {
        let line = note.describe();
        let _ = writeln!(
            out,
            "  {}",
            if note.failed() {
                paint(RED, &line)
            } else {
                line
            }
        );
    }
}

/// The volumes no longer in the host file that stay, and how to delete
/// them.
fn kept_volumes(out: &mut String, plan: &Plan) {
    if plan.kept_volumes.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nKept: volumes no longer in the host file:");
    for kept in &plan.kept_volumes {
        let _ = writeln!(out, "  {}  ({})", kept.name, kept.path);
    }
    let _ = writeln!(out, "  `ctm apply --prune` deletes them, with their data.");
}

/// The quotas the volumes' file system cannot enforce (an apply is
/// refused).
fn quotas(out: &mut String, plan: &Plan) {
    if plan.unenforceable_quotas.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n{}",
        paint(RED, "Quotas the volumes' file system cannot enforce:")
    );
    for note in &plan.unenforceable_quotas {
        let _ = writeln!(
            out,
            "  {} volume {} (quota {}): {}",
            paint(RED, "!"),
            note.volume,
            crate::model::size_text(note.quota),
            note.reason
        );
    }
}

/// How each new container's root file system is made, and the kinds
/// asked for that cannot be (an apply is refused).
fn roots(out: &mut String, plan: &Plan) {
    if !plan.new_roots.is_empty() {
        let _ = writeln!(out, "\nRoot file systems to make:");
        for note in &plan.new_roots {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                note.container,
                note.kind.as_str(),
                note.reason
            );
        }
    }
    if !plan.unavailable_roots.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            paint(RED, "Root file systems the file system cannot make:")
        );
        for note in &plan.unavailable_roots {
            let _ = writeln!(
                out,
                "  {} {} (root \"{}\"): {}",
                paint(RED, "!"),
                note.container,
                note.asked.as_str(),
                note.reason
            );
        }
    }
}

/// The trees of removed containers that stay, and how to delete them.
fn kept_rootfs(out: &mut String, plan: &Plan) {
    if plan.kept_rootfs.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nKept: the root file systems of containers no longer in the host file:"
    );
    for kept in &plan.kept_rootfs {
        let _ = writeln!(out, "  {}  ({})", kept.name, kept.path);
    }
    let _ = writeln!(
        out,
        "  `ctm apply --prune` deletes them; `ctm destroy NAME` deletes one."
    );
}
