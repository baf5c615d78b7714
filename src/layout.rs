//! Where things live on a host that ctm manages: the names of units and
//! the paths of directories, spelled once. The compiler, the backend, the
//! state store and the web server use these; the browser gets them through
//! the API, never as a copy of its own.
//!
//! Paths without a leading `/` are relative to the root ctm manages (`/`,
//! or `--root DIR`); paths with one are as a container or systemd sees
//! them.

/// An absolute path as the host sees it (`/srv/backups`), under the
/// root ctm manages (`/`, or `--root DIR`).
pub fn under_root(root: &std::path::Path, path: &str) -> std::path::PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// ctm's own state: generations, journal, records (see `state`).
pub const STATE_DIR: &str = "var/lib/ctm";

/// Images ctm built or unpacked, under the state directory.
pub const IMAGE_STORE: &str = "var/lib/ctm/images";

/// The OCI blobs ctm pulled or imported (manifests, configs, layers),
/// each named by its SHA-256 and verified before it was put there.
pub const OCI_BLOBS: &str = "var/lib/ctm/oci/blobs/sha256";

/// ctm's records of the root file systems it made.
pub const ROOTFS_RECORDS: &str = "var/lib/ctm/rootfs";

/// The overlays of containers whose root is `overlay`: `NAME/lower` (a
/// link to the image's tree), `NAME/upper` (the container's changes) and
/// `NAME/work` (overlayfs's own).
pub const OVERLAYS: &str = "var/lib/ctm/overlays";

/// A container's overlay directory, relative to the root.
pub fn overlay_dir(container: &str) -> String {
    format!("{OVERLAYS}/{container}")
}

/// The mount unit of a container's overlay root: systemd names a mount
/// unit after its path, `/` as `-` and a `-` of the path as `\x2d` (a
/// name's other characters, letters, digits, `_` and a `.` not first,
/// stay as they are). The stock `systemd-nspawn@.service` has
/// `RequiresMountsFor=/var/lib/machines/%i`, so it pulls this in.
pub fn overlay_mount_unit(container: &str) -> String {
    format!(
        "{}.mount",
        machine_dir(container)
            .replace('-', "\\x2d")
            .replace('/', "-")
    )
}

/// The volumes ctm made: one directory (or btrfs subvolume) each.
pub const VOLUMES: &str = "var/lib/ctm/volumes";

/// ctm's records of the volumes it made.
pub const VOLUME_RECORDS: &str = "var/lib/ctm/volume-records";

/// Snapshots of containers (`ctm snapshot`): `CONTAINER/ID/` with the
/// root file system and volumes, `CONTAINER/ID.json` the record.
pub const SNAPSHOTS: &str = "var/lib/ctm/snapshots";

/// Backup archives (`ctm backup` without `--to`):
/// `CONTAINER-ID.ctm-backup.tar.zst`.
pub const BACKUPS: &str = "var/lib/ctm/backups";

/// A volume's directory, relative to the root.
pub fn volume_dir(volume: &str) -> String {
    format!("{VOLUMES}/{volume}")
}

/// A volume's directory as the host sees it when the root is `/` (the
/// source of its bind mounts).
pub fn volume_path(volume: &str) -> String {
    format!("/{VOLUMES}/{volume}")
}

/// machined's directory of container root file systems.
pub const MACHINES: &str = "var/lib/machines";

/// Where the stock template unit lives on Debian 12 and later (merged /usr).
pub const NSPAWN_TEMPLATE: &str = "/usr/lib/systemd/system/systemd-nspawn@.service";

/// Where ctm writes systemd units and drop-ins.
pub const UNIT_DIR: &str = "etc/systemd/system";

/// The start of every autostart link's path; the container's unit follows.
pub const AUTOSTART_PREFIX: &str = "etc/systemd/system/machines.target.wants/systemd-nspawn@";

/// The unit that runs a container: `systemd-nspawn@NAME.service`.
pub fn unit(container: &str) -> String {
    format!("systemd-nspawn@{container}.service")
}

/// A drop-in of a container's unit, relative to the root.
pub fn unit_dropin(container: &str, file: &str) -> String {
    format!("{UNIT_DIR}/systemd-nspawn@{container}.service.d/{file}")
}

/// A unit a container's unit wants (started with it), relative to the
/// root.
pub fn unit_wants(container: &str, unit: &str) -> String {
    format!("{UNIT_DIR}/systemd-nspawn@{container}.service.wants/{unit}")
}

/// The unit that makes a link between two containers, named after its
/// first end: `ctm-link-r1:eth1.service` (`:` cannot be in a container's
/// name nor in an interface's, so no two ends share a unit).
pub fn link_unit(container: &str, interface: &str) -> String {
    format!("ctm-link-{container}:{interface}.service")
}

/// The script the link units run, relative to the root.
pub const LINK_SCRIPT: &str = "etc/ctm/ctm-link";

/// The link that makes a container start at boot, relative to the root.
pub fn autostart_link(container: &str) -> String {
    format!("{AUTOSTART_PREFIX}{container}.service")
}

/// The start of every loopback forward's unit name; `tcp-PORT.socket`
/// or `.service` follows.
pub const LOOPBACK_FORWARD_PREFIX: &str = "ctm-forward-";

/// The socket unit that takes a host port's connections on loopback:
/// `ctm-forward-tcp-8080.socket`.
pub fn loopback_socket(protocol: &str, port: u16) -> String {
    format!("{LOOPBACK_FORWARD_PREFIX}{protocol}-{port}.socket")
}

/// The proxy service a loopback forward's socket starts.
pub fn loopback_service(socket: &str) -> String {
    format!("{}.service", socket.trim_end_matches(".socket"))
}

/// The start of every backup timer's and service's unit name; the
/// container's name and `.timer` or `.service` follow.
pub const BACKUP_UNIT_PREFIX: &str = "ctm-backup-";

/// The timer that backs a container up on the schedule of its `backup`
/// block: `ctm-backup-web.timer`.
pub fn backup_timer(container: &str) -> String {
    format!("{BACKUP_UNIT_PREFIX}{container}.timer")
}

/// The service the backup timer starts: `ctm-backup-web.service`.
pub fn backup_service(container: &str) -> String {
    format!("{BACKUP_UNIT_PREFIX}{container}.service")
}

/// The start of every volume's backup timer's and service's unit name;
/// the volume's name and `.timer` or `.service` follow. Not
/// `ctm-backup-`: a volume and a container of one name each have theirs.
pub const VOLUME_BACKUP_UNIT_PREFIX: &str = "ctm-volume-backup-";

/// The timer of volume `volume`'s `backup` block:
/// `ctm-volume-backup-data.timer`.
pub fn volume_backup_timer(volume: &str) -> String {
    format!("{VOLUME_BACKUP_UNIT_PREFIX}{volume}.timer")
}

/// The service a volume's backup timer starts.
pub fn volume_backup_service(volume: &str) -> String {
    format!("{VOLUME_BACKUP_UNIT_PREFIX}{volume}.service")
}

/// Where systemd's own TCP proxy lives on Debian (package `systemd`).
pub const SOCKET_PROXYD: &str = "/lib/systemd/systemd-socket-proxyd";

/// The directory of a network's hosts file (`hosts`: its containers'
/// names and addresses), relative to the root; bound read-only into each
/// container on the network at [`NETWORK_DIR_INSIDE`].
pub fn network_dir(network: &str) -> String {
    format!("etc/ctm/networks/{network}")
}

/// Where a container sees its network's directory; its `/etc/hosts` is a
/// link to the `hosts` file there. A directory, not the file, is bound:
/// a file bind would keep showing the file an apply replaced.
pub const NETWORK_DIR_INSIDE: &str = "/etc/ctm/network";

/// A container's root file system, relative to the root.
pub fn machine_dir(container: &str) -> String {
    format!("{MACHINES}/{container}")
}

/// A container's root file system as the host sees it when the root is `/`.
pub fn machine_path(container: &str) -> String {
    format!("/{MACHINES}/{container}")
}

/// machined's record of a registered (running) machine.
pub fn machine_state_file(container: &str) -> String {
    format!("/run/systemd/machines/{container}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlay_mount_unit_is_named_as_systemd_escapes_its_path() {
        assert_eq!(overlay_mount_unit("web"), "var-lib-machines-web.mount");
        assert_eq!(
            overlay_mount_unit("my-web_1.a"),
            "var-lib-machines-my\\x2dweb_1.a.mount"
        );
    }

    #[test]
    fn names_and_paths_of_one_container() {
        assert_eq!(unit("web"), "systemd-nspawn@web.service");
        assert_eq!(
            autostart_link("web"),
            "etc/systemd/system/machines.target.wants/systemd-nspawn@web.service"
        );
        assert_eq!(
            unit_dropin("web", "50-ctm-limits.conf"),
            "etc/systemd/system/systemd-nspawn@web.service.d/50-ctm-limits.conf"
        );
        assert_eq!(machine_dir("web"), "var/lib/machines/web");
        assert_eq!(machine_path("web"), "/var/lib/machines/web");
        assert_eq!(volume_dir("pgdata"), "var/lib/ctm/volumes/pgdata");
        assert_eq!(volume_path("pgdata"), "/var/lib/ctm/volumes/pgdata");
    }
}
