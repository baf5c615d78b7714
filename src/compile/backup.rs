//! Scheduled backups: a container's `backup` block becomes a timer and a
//! oneshot service that runs `ctm backup NAME --to DIR [--keep N]`, the
//! same command a user types, so a scheduled archive is verified, and
//! pruned after success only, exactly as a manual one.

use super::ini::Ini;
use super::{Artifacts, Owner};
use crate::layout::{self, UNIT_DIR};
use crate::model::Host;

/// Writes the units of every container's `backup` block, the timer
/// enabled at boot.
pub fn timers(host: &Host, header: &[String], out: &mut Artifacts) {
    for container in host.containers.values() {
        let Some(backup) = &container.backup else {
            continue;
        };
        let name = container.name.as_str();
        let timer = layout::backup_timer(name);
        let service = layout::backup_service(name);
        let description = format!("ctm: back up container {name} to {}", backup.to);

        // Every word is a validated name or path: none holds white space,
        // a quote or a `%`, so none is split or expanded by systemd. `ctm`
        // is found on systemd's fixed executable search path.
        let mut exec = format!("ctm backup {name} --to {}", backup.to);
        if let Some(keep) = backup.keep {
            exec.push_str(&format!(" --keep {keep}"));
        }
        let mut unit = Ini::new(header);
        unit.section("Unit").set("Description", &description);
        unit.section("Service")
            .set("Type", "oneshot")
            .set("ExecStart", exec);
        out.file(format!("{UNIT_DIR}/{service}"), Owner::Host, unit.render());

        let mut unit = Ini::new(header);
        unit.section("Unit").set("Description", &description);
        unit.section("Timer")
            .set("OnCalendar", backup.every.as_str())
            // A backup missed while the host was off runs when it is up.
            .set("Persistent", "yes")
            .set("Unit", &service);
        unit.section("Install").set("WantedBy", "timers.target");
        out.file(format!("{UNIT_DIR}/{timer}"), Owner::Host, unit.render());
        out.symlink(
            format!("{UNIT_DIR}/timers.target.wants/{timer}"),
            Owner::Host,
            &format!("/{UNIT_DIR}/{timer}"),
        );
    }
}
