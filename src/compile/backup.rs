//! Scheduled backups: a container's `backup` block becomes a timer and a
//! oneshot service that runs `ctm backup NAME --to DIR [--keep N]`, and a
//! volume's one that runs `ctm backup --volume NAME --to DIR [--keep N]`:
//! the same command a user types, so a scheduled archive is verified,
//! and pruned after success only, exactly as a manual one.

use super::ini::Ini;
use super::{Artifacts, Owner};
use crate::layout::{self, UNIT_DIR};
use crate::model::{BackupSchedule, Host};

/// Writes the units of every container's and volume's `backup` block,
/// the timers enabled at boot.
pub fn timers(host: &Host, header: &[String], out: &mut Artifacts) {
    for container in host.containers.values() {
        let Some(backup) = &container.backup else {
            continue;
        };
        let name = container.name.as_str();
        write(
            &Units {
                timer: layout::backup_timer(name),
                service: layout::backup_service(name),
                description: format!("ctm: back up container {name} to {}", backup.to),
                command: format!("ctm backup {name}"),
            },
            backup,
            header,
            out,
        );
    }
    for volume in host.volumes.values() {
        let Some(backup) = &volume.backup else {
            continue;
        };
        let name = volume.name.as_str();
        write(
            &Units {
                timer: layout::volume_backup_timer(name),
                service: layout::volume_backup_service(name),
                description: format!("ctm: back up volume {name} to {}", backup.to),
                command: format!("ctm backup --volume {name}"),
            },
            backup,
            header,
            out,
        );
    }
}

/// The names and the command of one `backup` block's units.
struct Units {
    timer: String,
    service: String,
    description: String,
    /// `ctm backup …` without `--to` and `--keep`.
    command: String,
}

fn write(units: &Units, backup: &BackupSchedule, header: &[String], out: &mut Artifacts) {
    let Units {
        timer,
        service,
        description,
        command,
    } = units;
    // Every word is a validated name or path: none holds white space,
    // a quote or a `%`, so none is split or expanded by systemd. `ctm`
    // is found on systemd's fixed executable search path.
    let mut exec = format!("{command} --to {}", backup.to);
    if let Some(keep) = backup.keep {
        exec.push_str(&format!(" --keep {keep}"));
    }
    let mut unit = Ini::new(header);
    unit.section("Unit").set("Description", description);
    unit.section("Service")
        .set("Type", "oneshot")
        .set("ExecStart", exec);
    out.file(format!("{UNIT_DIR}/{service}"), Owner::Host, unit.render());

    let mut unit = Ini::new(header);
    unit.section("Unit").set("Description", description);
    unit.section("Timer")
        .set("OnCalendar", backup.every.as_str())
        // A backup missed while the host was off runs when it is up.
        .set("Persistent", "yes")
        .set("Unit", service);
    unit.section("Install").set("WantedBy", "timers.target");
    out.file(format!("{UNIT_DIR}/{timer}"), Owner::Host, unit.render());
    out.symlink(
        format!("{UNIT_DIR}/timers.target.wants/{timer}"),
        Owner::Host,
        &format!("/{UNIT_DIR}/{timer}"),
    );
}
