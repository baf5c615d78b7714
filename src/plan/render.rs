//! A plan for people (Terraform-like text, coloured when the terminal
//! takes colour) and for programs (the JSON documented in docs/plan.md).

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};

use super::{Change, Plan};
use crate::compile::Owner;
use crate::layout::MACHINES;
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

/// The plan as text with ANSI colours; `anstream` strips them where the
/// output is not a colour terminal (or NO_COLOR is set).
pub fn text(plan: &Plan, title: &str, show_diffs: bool) -> String {
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
        kept_rootfs(&mut out, plan);
        return out;
    }
    if !plan.files.is_empty() {
        out.push('\n');
    }
    for f in &plan.files {
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
    if show_diffs {
        for f in plan.files.iter().filter(|f| !f.diff.is_empty()) {
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
    if !plan.provisioning.is_empty() {
        let _ = writeln!(
            out,
            "\nProvisioning steps to check, for: {}",
            plan.provisioning.join(", ")
        );
    }
    kept_rootfs(&mut out, plan);
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

/// The trees of removed containers that stay, and how to delete them.
fn kept_rootfs(out: &mut String, plan: &Plan) {
    if plan.kept_rootfs.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nKept: the root file systems of containers no longer in the host file:"
    );
    for name in &plan.kept_rootfs {
        let _ = writeln!(out, "  {name}  (/{MACHINES}/{name})");
    }
    let _ = writeln!(
        out,
        "  `ctm apply --prune` deletes them; `ctm destroy NAME` deletes one."
    );
}
