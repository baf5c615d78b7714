//! Stage 5: what applying would change, and why.
//!
//! A pure function of the desired artifacts, the manifest of the current
//! generation (what ctm owns), what is at each path now, and what the
//! system reports. It never touches the file system, so every rule here
//! (ownership, drift, which container restarts) is tested without root.

mod action;
mod backups;
mod manifest;
pub mod render;
mod roots;
mod volumes;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::compile::health::Health;
use crate::compile::{Artifacts, Content, NFT_RULESET, Owner};
use crate::fs::Entry;
use crate::live::LiveFile;
pub use action::{Action, batches};
pub use backups::{BackupNote, LastBackup, TimerRun, all_active as all_timers_active};
pub use manifest::{Manifest, ManifestEntry, entry_of};
pub use roots::{RootNote, RootsState, choose as choose_root};
pub use volumes::{KeptVolume, Present, QuotaNote, QuotaSupport, VolumeNote, VolumesState};

/// What a plan may do beyond bringing ctm's files to the host file's
/// version, and how closely it looks: `--adopt`, `--prune` and
/// `--check-steps` of `ctm plan` and `ctm apply` (and a saved plan's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct Options {
    /// Take over files at ctm's paths that ctm did not write.
    #[arg(long)]
    pub adopt: bool,
    /// Delete the root file systems ctm made for containers that are no
    /// longer in the host file (listed in red; it cannot be undone).
    #[arg(long)]
    pub prune: bool,
    /// Also run the checks of the running containers' provisioning steps
    /// inside them, and plan again the steps found undone (slower: one
    /// command per step and container).
    #[arg(long)]
    pub check_steps: bool,
}

impl Options {
    pub const ADOPT: Options = Options {
        adopt: true,
        prune: false,
        check_steps: false,
    };
}

/// What the running system reports, for drift. Each part is `None` when
/// the system cannot be asked (a files-only root).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemState {
    /// Container name → running or not.
    pub containers: Option<BTreeMap<String, bool>>,
    /// The links the host file names that exist, with their addresses
    /// (`10.42.0.1/24`); a link missing from the map does not exist.
    #[serde(default)]
    pub links: Option<BTreeMap<String, BTreeSet<String>>>,
    #[serde(default)]
    pub firewall: Option<FirewallState>,
    /// The containers not in the desired host file whose root file system
    /// ctm made and still has (`rootfs`): the ones `--prune` may delete.
    #[serde(default)]
    pub made_rootfs: Option<BTreeSet<String>>,
    /// The running containers whose processes are frozen (`ctm pause`):
    /// an apply neither restarts nor provisions them, nor resumes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<BTreeSet<String>>,
    /// With `--check-steps`: running container → the ids of its installed
    /// provisioning steps whose check, run inside it, says not done.
    /// Containers with every step done are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undone_steps: Option<BTreeMap<String, Vec<String>>>,
    /// Whether the kernel can make each kind of link the desired
    /// generation names (`bridge`, `gre`, `vxlan`…), by kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_kinds: Option<BTreeMap<String, KindSupport>>,
    /// The loopback forwards' socket units the desired generation names,
    /// and whether each is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockets: Option<BTreeMap<String, bool>>,
    /// The host ends of the running containers' networks after their
    /// first (`vn-gw-1`) that exist, each with the link it is a port of
    /// (`None`: none). A container not running has none to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<BTreeMap<String, Option<String>>>,
    /// The links the host file names that exist but are administratively
    /// down (`ip link set … down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links_down: Option<BTreeSet<String>>,
    /// The volumes directory's file system and what is in it, when the
    /// host file has volumes or ctm made some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<VolumesState>,
    /// What the file system of the containers' trees can share with the
    /// image store, and which desired containers have no tree yet (a
    /// live system only: elsewhere nothing is provisioned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roots: Option<RootsState>,
    /// The backup timers (`ctm-backup-NAME.timer`) the desired generation
    /// names, and whether each is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_timers: Option<BTreeMap<String, bool>>,
    /// How each backup timer's service last ran, by container (a live
    /// system only). Not part of a plan's fingerprint: a backup that ran
    /// since changes nothing an apply does.
    #[serde(skip)]
    pub timer_runs: BTreeMap<String, TimerRun>,
    /// The newest archive of each container with a `backup` block, read
    /// by the engine on every root. Not part of the fingerprint either.
    #[serde(skip)]
    pub last_backups: BTreeMap<String, LastBackup>,
    /// How each volume backup timer's service last ran, by volume (a live
    /// system only); not part of the fingerprint.
    #[serde(skip)]
    pub volume_timer_runs: BTreeMap<String, TimerRun>,
    /// The newest archive of each volume of the desired generation, in
    /// its `backup` block's directory or the default one, read by the
    /// engine on every root; not part of the fingerprint.
    #[serde(skip)]
    pub last_volume_backups: BTreeMap<String, LastBackup>,
    /// What each volume ctm made holds, in bytes, by name, as the engine
    /// measured it (`backend::volumes::measure`); not part of the
    /// fingerprint: data written changes nothing an apply does.
    #[serde(skip)]
    pub volume_usage: BTreeMap<String, u64>,
}

/// Whether the running kernel can make links of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "support")]
pub enum KindSupport {
    Supported,
    /// The kernel refused to make one (`Unknown device type`): the kind is
    /// neither built in nor loadable as a module.
    Unsupported {
        reason: String,
    },
    /// The probe itself failed; nothing is known.
    Unknown {
        reason: String,
    },
}

/// A kind of link the host file uses that the kernel lacks, or whose
/// support was not checked, with the links of that kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkKindNote {
    /// As in the `.netdev`: `gre`, `ip6gre`, `vxlan`, `bridge`.
    pub kind: String,
    /// The interfaces of this kind the host file names.
    pub links: Vec<String>,
    pub reason: String,
}

/// `table inet ctm` as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallState {
    /// Chain → number of rules; `None` when the table does not exist.
    pub chains: Option<BTreeMap<String, usize>>,
    /// The table differs from what `nft` listed right after ctm loaded the
    /// ruleset that is installed now: someone changed it by hand.
    pub edited: bool,
}

pub struct Inputs<'a> {
    /// The desired files' contents, for the diffs and the provisioning
    /// steps of the files that change: it must hold every path whose live
    /// entry is not its desired entry, and may leave out the others (a
    /// no-op plan of an unchanged host file reads none: `engine::planning`).
    pub desired: &'a Artifacts,
    /// The desired files: every path with its entry and owner
    /// (`Manifest::of` of all of them). The plan's paths, owners and
    /// changes come from here, and only contents from `desired`.
    pub desired_manifest: &'a Manifest,
    /// The desired generation's expectations (`compile::health`), which
    /// drift in the live system is measured against.
    pub expect: &'a Health,
    pub current: Option<(u64, &'a Manifest)>,
    /// Every path of `desired` and of the current manifest.
    pub live: &'a BTreeMap<String, LiveFile>,
    pub system: &'a SystemState,
    pub options: Options,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Add,
    Change,
    Destroy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    pub path: String,
    pub change: Change,
    pub owner: Owner,
    /// Why: the host file changed, or the file on disk drifted from what
    /// ctm wrote, or a foreign file is being adopted.
    pub reason: String,
    pub before: Entry,
    pub after: Entry,
    /// Unified diff of the text (or of the symlink target).
    pub diff: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    pub actions: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The generation the host is on; `null` before the first apply.
    pub from_generation: Option<u64>,
    pub files: Vec<FileChange>,
    pub conflicts: Vec<Conflict>,
    pub actions: Vec<Action>,
    /// Containers whose provisioning steps changed and will be checked.
    pub provisioning: Vec<String>,
    /// Containers no longer in the host file whose root file system, made
    /// by ctm, stays (without `--prune`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_rootfs: Vec<KeptRootfs>,
    /// Actions not taken because their container is paused (`ctm pause`):
    /// an apply never resumes a paused container by itself, so a restart
    /// or provisioning it needs waits for `ctm resume`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<Action>,
    /// Kinds of link the host file uses that the running kernel cannot
    /// make: an apply is refused before it changes anything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsupported_links: Vec<LinkKindNote>,
    /// Kinds of link whose kernel support was not checked (a files-only
    /// root, or a probe that failed); bridges are left out on a files-only
    /// root, as every network has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unchecked_links: Vec<LinkKindNote>,
    /// Quotas the host file sets that the volumes' file system cannot
    /// enforce: an apply is refused before it changes anything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unenforceable_quotas: Vec<QuotaNote>,
    /// Volumes ctm made that are no longer in the host file: they stay
    /// (without `--prune`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_volumes: Vec<KeptVolume>,
    /// How each new container's root file system is made from its image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_roots: Vec<RootNote>,
    /// Kinds of root file system the host file asks for that the file
    /// system cannot make: an apply is refused before it changes anything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable_roots: Vec<RootNote>,
    /// The containers with a `backup` block: their last archive, and
    /// their timer's last run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<BackupNote>,
    /// The volumes of the host file: what each holds, its quota, its
    /// last backup and its timer's last run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeNote>,
    /// False when the root is not the running system: actions are listed
    /// but not performed.
    pub live_system: bool,
    pub summary: Summary,
    /// Identifies the state this plan was made against; a saved plan is
    /// applied only if the state still has this fingerprint.
    pub fingerprint: String,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.actions.is_empty() && self.conflicts.is_empty()
    }

    /// The kinds of link the kernel lacks that stop an apply of this plan:
    /// none for an empty plan, which changes nothing (its text still
    /// names them).
    pub fn blocking_links(&self) -> &[LinkKindNote] {
        if self.is_empty() {
            &[]
        } else {
            &self.unsupported_links
        }
    }
}

fn should_autostart(desired: &Manifest, name: &str) -> bool {
    desired
        .files
        .contains_key(&crate::layout::autostart_link(name))
}

/// Files whose change does not need the container restarted: the
/// autostart link (systemd reads it at boot) and the provisioning steps.
fn restart_irrelevant(path: &str) -> bool {
    path.starts_with(crate::layout::AUTOSTART_PREFIX) || path.ends_with("/provision.json")
}

/// Why a file ctm wrote is no longer wanted: its container or network
/// is in a topology that `ctm down` took down (the host file still has
/// it), or it left the host file.
fn no_longer_wanted(expect: &Health, owner: &Owner) -> String {
    let member = |t: &crate::compile::health::TopologyHealth| match owner {
        Owner::Container(name) => t.containers.iter().any(|c| c == name.as_str()),
        Owner::Network(name) => t.networks.iter().any(|n| n == name.as_str()),
        Owner::Tunnel(_) | Owner::Firewall | Owner::Host => false,
    };
    match expect.topologies.iter().find(|(_, t)| t.down && member(t)) {
        Some((name, _)) => format!("left out while topology {name} is down"),
        None => "no longer in the host file".into(),
    }
}

pub fn plan(input: &Inputs<'_>) -> Plan {
    let desired_manifest = input.desired_manifest;
    let empty = Manifest::default();
    let manifest = input.current.map_or(&empty, |(_, m)| m);
    let mut files = Vec::new();
    let mut conflicts = Vec::new();
    // Every map here is sorted by path: one walk over them all, in the
    // order of the union of the desired and the owned paths.
    let mut desired_entries = desired_manifest.files.iter().peekable();
    let mut owned_files = manifest.files.iter().peekable();
    let mut live_files = input.live.iter().peekable();
    let mut desired_paths = desired_manifest.files.keys().peekable();
    let mut owned_paths = manifest.files.keys().peekable();
    let paths = std::iter::from_fn(|| match (desired_paths.peek(), owned_paths.peek()) {
        (Some(d), Some(o)) if o < d => owned_paths.next(),
        (Some(d), Some(o)) if o == d => {
            owned_paths.next();
            desired_paths.next()
        }
        (Some(_), _) => desired_paths.next(),
        (None, _) => owned_paths.next(),
    });
    for path in paths {
        let live = seek(&mut live_files, path).unwrap_or(&LiveFile::ABSENT);
        let owned = seek(&mut owned_files, path);
        match seek(&mut desired_entries, path) {
            Some(wanted) => {
                let after = &wanted.entry;
                if live.entry == *after {
                    continue;
                }
                let (change, reason) = match (&live.entry, owned) {
                    (Entry::Absent, _) => (Change::Add, "new".to_string()),
                    (Entry::Other, _) => {
                        conflicts.push(Conflict {
                            path: path.clone(),
                            reason: "is a directory or special file; ctm will not replace it"
                                .into(),
                        });
                        continue;
                    }
                    (live_entry, Some(m)) if *live_entry != m.entry => (
                        Change::Change,
                        "changed on disk since ctm wrote it (drift); ctm restores it".to_string(),
                    ),
                    (_, Some(_)) => (Change::Change, "the host file changed".to_string()),
                    (_, None) if input.options.adopt => (
                        Change::Change,
                        "adopted: exists but was not written by ctm (--adopt)".to_string(),
                    ),
                    (_, None) => {
                        conflicts.push(Conflict {
                            path: path.clone(),
                            reason: "exists but was not written by ctm; pass --adopt to let ctm take it over".into(),
                        });
                        continue;
                    }
                };
                let content = input.desired.files.get(path).map(|a| &a.content);
                debug_assert!(content.is_some(), "the content of {path}, which changes");
                files.push(FileChange {
                    path: path.clone(),
                    change,
                    owner: wanted.owner.clone(),
                    reason,
                    before: live.entry.clone(),
                    after: after.clone(),
                    diff: diff(path, live, content),
                });
            }
            None => {
                let Some(m) = owned else { continue };
                match &live.entry {
                    Entry::Absent => {}
                    entry if *entry == m.entry => files.push(FileChange {
                        path: path.clone(),
                        change: Change::Destroy,
                        owner: m.owner.clone(),
                        reason: no_longer_wanted(input.expect, &m.owner),
                        before: entry.clone(),
                        after: Entry::Absent,
                        diff: diff(path, live, None),
                    }),
                    _ => conflicts.push(Conflict {
                        path: path.clone(),
                        reason: "is no longer in the host file, but was changed since ctm wrote it; \
                                 ctm will not delete it: remove it yourself, or restore ctm's version"
                            .into(),
                    }),
                }
            }
        }
    }
    let volumes = volumes::plan(input);
    let roots = roots::plan(input);
    conflicts.extend(volumes.conflicts.iter().cloned());
    let (actions, held) = hold_paused(input, actions(input, manifest, &files, &volumes));
    let (unsupported_links, unchecked_links) = link_kinds(input.expect, input.system);
    let kept_rootfs = if input.options.prune {
        Vec::new()
    } else {
        orphaned_rootfs(input)
    };
    let provisioning = files
        .iter()
        .filter(|f| f.path.ends_with("/provision.json") && f.change != Change::Destroy)
        .filter_map(|f| match &f.owner {
            Owner::Container(name) => Some(name.to_string()),
            _ => None,
        })
        .collect();
    let summary = Summary {
        add: files.iter().filter(|f| f.change == Change::Add).count(),
        change: files.iter().filter(|f| f.change == Change::Change).count(),
        destroy: files.iter().filter(|f| f.change == Change::Destroy).count(),
        actions: actions.len(),
    };
    Plan {
        from_generation: input.current.map(|(n, _)| n),
        files,
        conflicts,
        actions,
        provisioning,
        kept_rootfs,
        held,
        unsupported_links,
        unchecked_links,
        unenforceable_quotas: volumes.quotas,
        kept_volumes: volumes.kept,
        new_roots: roots.new,
        unavailable_roots: roots.unavailable,
        backups: backups::notes(input),
        volumes: volumes::notes(input),
        live_system: input.system.containers.is_some(),
        summary,
        fingerprint: fingerprint(input, desired_manifest),
    }
}

/// The kinds of link the desired generation uses, sorted into those the
/// kernel cannot make and those not checked. A files-only root checks
/// nothing; there, bridges go unmentioned (every network is one, and
/// nspawn itself needs them), the kinds of tunnels are listed.
fn link_kinds(expect: &Health, system: &SystemState) -> (Vec<LinkKindNote>, Vec<LinkKindNote>) {
    let mut by_kind: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, link) in &expect.links {
        by_kind.entry(&link.kind).or_default().push(name.clone());
    }
    let (mut unsupported, mut unchecked) = (Vec::new(), Vec::new());
    for (kind, links) in by_kind {
        let note = |reason: &str| LinkKindNote {
            kind: kind.to_string(),
            links: links.clone(),
            reason: reason.to_string(),
        };
        match system.link_kinds.as_ref().map(|k| k.get(kind)) {
            None if kind == "bridge" => {}
            None => unchecked.push(note("the root is not the running system")),
            Some(None) => unchecked.push(note("the system did not say")),
            Some(Some(KindSupport::Supported)) => {}
            Some(Some(KindSupport::Unsupported { reason })) => unsupported.push(note(reason)),
            Some(Some(KindSupport::Unknown { reason })) => unchecked.push(note(reason)),
        }
    }
    (unsupported, unchecked)
}

/// A root file system ctm made for a container no longer in the host
/// file, kept until `--prune` or `ctm destroy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptRootfs {
    pub name: String,
    /// Where it is on the host (`/var/lib/machines/NAME`).
    pub path: String,
}

/// The containers not in the host file that still have a root file
/// system ctm made.
fn orphaned_rootfs(input: &Inputs<'_>) -> Vec<KeptRootfs> {
    let Some(made) = &input.system.made_rootfs else {
        return Vec::new();
    };
    let desired: BTreeSet<&str> = input
        .desired_manifest
        .files
        .values()
        .filter_map(|a| match &a.owner {
            Owner::Container(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    made.iter()
        .filter(|name| !desired.contains(name.as_str()))
        .map(|name| KeptRootfs {
            name: name.clone(),
            path: crate::layout::machine_path(name),
        })
        .collect()
}

/// The value at `key` in a sorted map being walked in order, moving the
/// walk past it.
fn seek<'a, V>(
    walk: &mut std::iter::Peekable<std::collections::btree_map::Iter<'a, String, V>>,
    key: &str,
) -> Option<&'a V> {
    while walk.next_if(|(k, _)| k.as_str() < key).is_some() {}
    walk.next_if(|(k, _)| k.as_str() == key).map(|(_, v)| v)
}

/// The system actions the file changes call for, in the order they must
/// run: stop what goes away, reload what reads changed files, then restart
/// and start containers.
fn actions(
    input: &Inputs<'_>,
    manifest: &Manifest,
    files: &[FileChange],
    volumes: &volumes::VolumePlan,
) -> Vec<Action> {
    let running = |name: &str| {
        input
            .system
            .containers
            .as_ref()
            .map(|c| c.get(name).copied().unwrap_or(false))
    };
    // The owners of the desired and the current files, each once.
    let desired_owners: BTreeSet<&Owner> = input
        .desired_manifest
        .files
        .values()
        .map(|a| &a.owner)
        .collect();
    let current_owners: BTreeSet<&Owner> = manifest.files.values().map(|m| &m.owner).collect();

    // The containers of down topologies, with their topology.
    let held_down: BTreeMap<&str, &str> = input
        .expect
        .containers
        .iter()
        .filter_map(|(name, c)| Some((name.as_str(), c.down.as_deref()?)))
        .collect();
    let mut stop = Vec::new();
    for (name, topology) in &held_down {
        // Only one known to run: a files-only root has nothing to stop.
        if running(name) == Some(true) {
            stop.push(Action::StopContainer {
                name: name.to_string(),
                reason: format!("topology `{topology}` is down"),
            });
        }
    }
    let mut restart = Vec::new();
    let mut start = Vec::new();
    // Containers whose provisioning steps changed, or that are new.
    let mut to_provision: BTreeSet<String> = BTreeSet::new();
    let mut new_containers: BTreeSet<String> = BTreeSet::new();
    let mut by_container: BTreeMap<String, Vec<&FileChange>> = BTreeMap::new();
    for f in files {
        if let Owner::Container(name) = &f.owner {
            by_container.entry(name.to_string()).or_default().push(f);
        }
    }
    for (name, changes) in &by_container {
        let owner = changes[0].owner.clone();
        let in_desired = desired_owners.contains(&owner);
        let in_current = current_owners.contains(&owner);
        let is_running = running(name);
        if !in_desired {
            if is_running != Some(false) {
                stop.push(Action::StopContainer {
                    name: name.clone(),
                    reason: "removed from the host file".into(),
                });
            }
            continue;
        }
        if held_down.contains_key(name.as_str()) {
            // Neither started nor restarted: stopped below. A new one
            // still gets its root file system (prepared below).
            if !in_current {
                new_containers.insert(name.clone());
            }
            continue;
        }
        let relevant: Vec<&str> = changes
            .iter()
            .filter(|f| !restart_irrelevant(&f.path))
            .map(|f| f.path.as_str())
            .collect();
        if changes.iter().any(|f| f.path.ends_with("/provision.json")) {
            to_provision.insert(name.clone());
        }
        if !in_current {
            new_containers.insert(name.clone());
            if should_autostart(input.desired_manifest, name) && is_running != Some(true) {
                start.push(Action::StartContainer {
                    name: name.clone(),
                    reason: match runs(input.desired, name) {
                        Some(command) => format!("new container, runs {command}"),
                        None => "new container".into(),
                    },
                });
            }
        } else if !relevant.is_empty() {
            match is_running {
                Some(false) if should_autostart(input.desired_manifest, name) => {
                    start.push(Action::StartContainer {
                        name: name.clone(),
                        reason: format!(
                            "stopped, should be running; changed: {}",
                            relevant.join(", ")
                        ),
                    })
                }
                Some(false) => {}
                Some(true) => restart.push(Action::RestartContainer {
                    name: name.clone(),
                    reason: format!("changed: {}", relevant.join(", ")),
                }),
                None => restart.push(Action::RestartContainer {
                    name: name.clone(),
                    reason: format!(
                        "changed: {} (restarted only if running)",
                        relevant.join(", ")
                    ),
                }),
            }
        }
    }
    // Drift in the running system: a container that should run does not.
    if let Some(states) = &input.system.containers {
        for owner in &desired_owners {
            let Owner::Container(name) = owner else {
                continue;
            };
            let name = name.to_string();
            let planned = start.iter().chain(&restart).any(|a| matches!(a,
                Action::StartContainer { name: n, .. } | Action::RestartContainer { name: n, .. } if *n == name));
            if !planned
                && should_autostart(input.desired_manifest, &name)
                && !states.get(&name).copied().unwrap_or(false)
            {
                start.push(Action::StartContainer {
                    name,
                    reason: "stopped, but should be running (drift)".into(),
                });
            }
        }
    }

    // Deleting a tree comes right after the stops: its container must not
    // run, and nothing later needs it.
    let mut remove = Vec::new();
    if input.options.prune {
        for KeptRootfs { name, .. } in orphaned_rootfs(input) {
            let stopping = stop.iter().any(|a| a.container() == Some(name.as_str()));
            if !stopping && running(&name) == Some(true) {
                stop.push(Action::StopContainer {
                    name: name.clone(),
                    reason: "not in the host file, and its root file system is deleted (--prune)"
                        .into(),
                });
            }
            remove.push(Action::RemoveRootfs {
                name,
                reason: "no longer in the host file (--prune)".into(),
            });
        }
    }

    // Before-boot steps run for every new container (even one that does
    // not start now: its root file system is made on the first apply) and
    // before every start, so that a container never starts without one.
    let mut prepare: BTreeMap<String, String> = new_containers
        .iter()
        .map(|n| (n.clone(), "new container".to_string()))
        .collect();
    for a in &start {
        if let Action::StartContainer { name, .. } = a {
            prepare
                .entry(name.clone())
                .or_insert_with(|| "about to start; its root file system must exist".into());
        }
    }
    // Steps inside the container run once it runs: after a start or a
    // restart, or now if it runs already and its steps changed.
    let will_run: BTreeSet<&str> = start
        .iter()
        .chain(&restart)
        .filter_map(Action::container)
        .collect();
    let mut provision = Vec::new();
    for name in &to_provision {
        let desired = desired_owners
            .iter()
            .any(|o| matches!(o, Owner::Container(n) if n.as_str() == name));
        if !desired {
            continue;
        }
        let runs = will_run.contains(name.as_str()) || running(name) == Some(true);
        if runs || (running(name).is_none() && should_autostart(input.desired_manifest, name)) {
            let path = crate::compile::provision::steps_path(name);
            provision.push(Action::ProvisionContainer {
                name: name.clone(),
                reason: if new_containers.contains(name) {
                    "new container".into()
                } else {
                    "its provisioning steps changed".into()
                },
                steps: changed_steps(input.live.get(&path), input.desired.files.get(&path)),
            });
        }
    }
    // Drift inside containers (`--check-steps`): steps whose check fails
    // though they ran once, e.g. a deleted authorized_keys.
    if let Some(undone) = &input.system.undone_steps {
        for (name, steps) in undone {
            let desired = desired_owners
                .iter()
                .any(|o| matches!(o, Owner::Container(n) if n.as_str() == name));
            if desired && !to_provision.contains(name) {
                provision.push(Action::ProvisionContainer {
                    name: name.clone(),
                    reason: format!(
                        "not done inside the container (drift): {}",
                        steps.join(", ")
                    ),
                    steps: steps.clone(),
                });
            }
        }
    }

    let mut actions = stop;
    actions.extend(remove);
    actions.extend(volumes.remove.iter().cloned());
    let units: Vec<&str> = files
        .iter()
        .filter(|f| f.path.starts_with("etc/systemd/system/"))
        .map(|f| f.path.as_str())
        .collect();
    if !units.is_empty() {
        actions.push(Action::DaemonReload {
            reason: format!("changed: {}", units.join(", ")),
        });
    }
    let sysctl: Vec<&str> = files
        .iter()
        .filter(|f| f.path.starts_with("etc/sysctl.d/"))
        .map(|f| f.path.as_str())
        .collect();
    if !sysctl.is_empty() {
        actions.push(Action::ApplySysctl {
            reason: format!("changed: {}", sysctl.join(", ")),
        });
    }
    // networkd's files; a network's hosts file is read by containers as
    // it changes, and needs no reload.
    let network: Vec<&FileChange> = files
        .iter()
        .filter(|f| matches!(f.owner, Owner::Network(_) | Owner::Tunnel(_)))
        .filter(|f| f.path.starts_with("etc/systemd/network/"))
        .collect();
    // A link whose files change is reconfigured by the reload anyway.
    let drifted: Vec<(String, String)> = link_drift(input)
        .into_iter()
        .filter(|(name, _)| {
            !network
                .iter()
                .any(|f| file_link(&f.path) == Some(name.as_str()))
        })
        .collect();
    if !network.is_empty() || !drifted.is_empty() {
        let netdevs = |added: bool| -> Vec<String> {
            network
                .iter()
                .filter(|f| f.path.ends_with(".netdev") && (f.change == Change::Add) == added)
                .filter_map(|f| file_link(&f.path).map(str::to_string))
                .collect()
        };
        let delete_links = netdevs(false);
        let mut reasons = Vec::new();
        if !network.is_empty() {
            reasons.push(format!(
                "changed: {}",
                network
                    .iter()
                    .map(|f| f.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        reasons.extend(drifted.iter().map(|(_, why)| why.clone()));
        actions.push(Action::ReloadNetworkd {
            reason: reasons.join("; "),
            created_links: netdevs(true),
            reconfigure_links: drifted
                .into_iter()
                .map(|(name, _)| name)
                .filter(|name| !delete_links.contains(name))
                .collect(),
            delete_links,
        });
    }
    if files.iter().any(|f| f.path == NFT_RULESET) {
        actions.push(Action::ReplaceFirewall {
            reason: format!("changed: {NFT_RULESET}"),
        });
    } else if let Some(reason) = firewall_drift(input) {
        actions.push(Action::ReplaceFirewall { reason });
    }
    actions.extend(loopback_forwards(input, files));
    actions.extend(backup_timers(input, files));
    // Volumes exist before any container that mounts one starts.
    actions.extend(volumes.make.iter().cloned());
    actions.extend(
        prepare
            .into_iter()
            .map(|(name, reason)| Action::PrepareContainer { name, reason }),
    );
    actions.extend(restart);
    actions.extend(start);
    actions.extend(provision);
    actions
}

/// The loopback forwards' sockets to start, restart or stop: by their
/// unit files' changes (a socket's or its proxy's), and by the running
/// system (a socket that should listen and does not).
fn loopback_forwards(input: &Inputs<'_>, files: &[FileChange]) -> Option<Action> {
    let prefix = format!(
        "{}/{}",
        crate::layout::UNIT_DIR,
        crate::layout::LOOPBACK_FORWARD_PREFIX
    );
    // Socket unit → the changes of its two files.
    let mut changed: BTreeMap<String, Vec<&FileChange>> = BTreeMap::new();
    for f in files {
        let Some(name) = f.path.strip_prefix(&prefix) else {
            continue;
        };
        let stem = name
            .trim_end_matches(".socket")
            .trim_end_matches(".service");
        changed
            .entry(format!(
                "{}{stem}.socket",
                crate::layout::LOOPBACK_FORWARD_PREFIX
            ))
            .or_default()
            .push(f);
    }
    let (mut start, mut restart, mut stop) = (Vec::new(), Vec::new(), Vec::new());
    let mut reasons = Vec::new();
    for (socket, changes) in &changed {
        if changes.iter().all(|f| f.change == Change::Destroy) {
            stop.push(socket.clone());
        } else if changes.iter().all(|f| f.change == Change::Add) {
            start.push(socket.clone());
        } else {
            restart.push(socket.clone());
        }
    }
    if !changed.is_empty() {
        reasons.push(format!(
            "changed: {}",
            changed.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if let Some(sockets) = &input.system.sockets {
        let idle: Vec<String> = input
            .expect
            .sockets
            .iter()
            .filter(|s| !changed.contains_key(*s) && sockets.get(*s) == Some(&false))
            .cloned()
            .collect();
        if !idle.is_empty() {
            reasons.push(format!("not listening (drift): {}", idle.join(", ")));
            start.extend(idle);
        }
    }
    if start.is_empty() && restart.is_empty() && stop.is_empty() {
        return None;
    }
    Some(Action::ReloadLoopbackForwards {
        reason: reasons.join("; "),
        start,
        restart,
        stop,
    })
}

/// The backup timers to start, restart or stop, by their unit files'
/// changes, and by the running system (a timer stopped by hand). A change
/// to a backup service alone needs only the daemon reload: its next run
/// reads it.
fn backup_timers(input: &Inputs<'_>, files: &[FileChange]) -> Option<Action> {
    // A container's and a volume's.
    let prefixes = [
        crate::layout::BACKUP_UNIT_PREFIX,
        crate::layout::VOLUME_BACKUP_UNIT_PREFIX,
    ]
    .map(|p| format!("{}/{p}", crate::layout::UNIT_DIR));
    let (mut start, mut restart, mut stop) = (Vec::new(), Vec::new(), Vec::new());
    for f in files {
        if !prefixes.iter().any(|p| f.path.starts_with(p)) || !f.path.ends_with(".timer") {
            continue;
        }
        let Some(unit) = f.path.rsplit('/').next() else {
            continue;
        };
        match f.change {
            Change::Add => start.push(unit.to_string()),
            Change::Destroy => stop.push(unit.to_string()),
            Change::Change => restart.push(unit.to_string()),
        }
    }
    let changed: Vec<String> = start.iter().chain(&restart).chain(&stop).cloned().collect();
    let mut reasons = Vec::new();
    if !changed.is_empty() {
        reasons.push(format!("changed: {}", changed.join(", ")));
    }
    let idle = backups::idle_timers(input, &changed);
    if !idle.is_empty() {
        reasons.push(format!("not active (drift): {}", idle.join(", ")));
        start.extend(idle);
    }
    if start.is_empty() && restart.is_empty() && stop.is_empty() {
        return None;
    }
    Some(Action::ReloadBackupTimers {
        reason: reasons.join("; "),
        start,
        restart,
        stop,
    })
}

/// Splits off the restarts and provisioning of paused containers: they
/// wait, listed, until the container is resumed. A stop goes ahead (a
/// container removed from the host file stops, paused or not).
fn hold_paused(input: &Inputs<'_>, actions: Vec<Action>) -> (Vec<Action>, Vec<Action>) {
    let Some(paused) = &input.system.paused else {
        return (actions, Vec::new());
    };
    actions.into_iter().partition(|a| match a {
        Action::RestartContainer { name, .. } | Action::ProvisionContainer { name, .. } => {
            !paused.contains(name)
        }
        _ => true,
    })
}

/// Why `table inet ctm` must be loaded again although its file did not
/// change: it is missing, has other chains or rule counts than compiled,
/// or was edited by hand since ctm loaded it.
fn firewall_drift(input: &Inputs<'_>) -> Option<String> {
    let live = input.system.firewall.as_ref()?;
    if !input.desired_manifest.files.contains_key(NFT_RULESET) {
        return None;
    }
    let expected = &input.expect.firewall;
    match &live.chains {
        None => Some("table inet ctm is missing (drift)".into()),
        Some(chains) if chains != expected => {
            let mut differences = Vec::new();
            for name in expected
                .keys()
                .chain(chains.keys())
                .collect::<BTreeSet<_>>()
            {
                let (want, have) = (expected.get(name), chains.get(name));
                if want != have {
                    differences.push(format!(
                        "chain {name} has {} rules, not {}",
                        have.map_or("no".to_string(), |n| n.to_string()),
                        want.map_or("none".to_string(), |n| n.to_string())
                    ));
                }
            }
            Some(format!(
                "table inet ctm was changed (drift): {}",
                differences.join("; ")
            ))
        }
        Some(_) if live.edited => {
            Some("table inet ctm was edited since ctm loaded it (drift)".into())
        }
        Some(_) => None,
    }
}

/// Links that are missing or lack an address ctm gives them, with why.
fn link_drift(input: &Inputs<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(live) = &input.system.links {
        for (name, expected) in &input.expect.links {
            match live.get(name) {
                None => out.push((name.clone(), format!("link {name} is missing (drift)"))),
                Some(_)
                    if input
                        .system
                        .links_down
                        .as_ref()
                        .is_some_and(|d| d.contains(name)) =>
                {
                    out.push((name.clone(), format!("link {name} is down (drift)")))
                }
                Some(addresses) => {
                    let lacking: Vec<&str> = expected
                        .addresses
                        .iter()
                        .filter(|a| !addresses.contains(*a))
                        .map(String::as_str)
                        .collect();
                    if !lacking.is_empty() {
                        out.push((
                            name.clone(),
                            format!("link {name} lacks {} (drift)", lacking.join(", ")),
                        ));
                    }
                }
            }
        }
    }
    // The host end of a running container's network after its first
    // that is no port of its bridge: networkd did not match it (or it was
    // taken out by hand); reconfiguring it puts it back.
    if let Some(ports) = &input.system.ports {
        for (_, attach) in input.expect.ports() {
            let name = &attach.host_interface;
            match ports.get(name) {
                Some(Some(master)) if *master == attach.bridge => {}
                Some(master) => out.push((
                    name.clone(),
                    format!(
                        "{name} is {}not a port of {} (drift)",
                        master
                            .as_ref()
                            .map_or(String::new(), |m| format!("a port of {m}, ")),
                        attach.bridge
                    ),
                )),
                None => {}
            }
        }
    }
    out
}

/// `etc/systemd/network/50-ctm-br-lan.netdev` (or `.network`) → `br-lan`.
fn file_link(path: &str) -> Option<&str> {
    let name = path.rsplit('/').next()?.strip_prefix("50-ctm-")?;
    name.strip_suffix(".netdev")
        .or_else(|| name.strip_suffix(".network"))
}

/// The ids of the steps that a container's new `provision.json` has and
/// its installed one lacks, or has otherwise: the ones an apply expects
/// to run (the before-boot ones are the prepare action's).
fn changed_steps(
    live: Option<&LiveFile>,
    desired: Option<&crate::compile::Artifact>,
) -> Vec<String> {
    use crate::compile::provision::{Phase, Step};
    let parse = |text: Option<&str>| -> Vec<Step> {
        text.and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default()
    };
    let before = parse(live.and_then(|l| l.text.as_deref()));
    let after = parse(match desired.map(|a| &a.content) {
        Some(Content::File { text, .. }) => Some(text.as_str()),
        _ => None,
    });
    after
        .into_iter()
        .filter(|step| step.phase == Phase::Running && !before.contains(step))
        .map(|step| step.id)
        .collect()
}

/// What an application container runs: its `.nspawn` file's
/// `Parameters=`, as written there (quoted as nspawn reads it).
fn runs(desired: &Artifacts, name: &str) -> Option<String> {
    let path = format!("etc/systemd/nspawn/{name}.nspawn");
    let Some(Content::File { text, .. }) = desired.files.get(&path).map(|a| &a.content) else {
        return None;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("Parameters="))
        .map(str::to_string)
}

fn diff(path: &str, live: &LiveFile, after: Option<&Content>) -> String {
    let before_text = match &live.entry {
        Entry::Symlink { target } => format!("-> {target}\n"),
        Entry::File { .. } => live
            .text
            .clone()
            .unwrap_or_else(|| "(not UTF-8 text)\n".into()),
        _ => String::new(),
    };
    let after_text = match after {
        Some(Content::File { text, .. }) => text.clone(),
        Some(Content::Symlink { target }) => format!("-> {target}\n"),
        None => String::new(),
    };
    similar::TextDiff::from_lines(&before_text, &after_text)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
}

/// A digest of everything the plan was computed from. The generation
/// number is part of it, so a plan can be applied once only, even a plan
/// made before the very first apply (hashicorp/terraform#24078).
///
/// Fed to the hash as it is, with a NUL after each field (a path or a
/// target cannot hold one): the generation, the system's state (small)
/// as JSON, then every path in order with its desired entry and owner
/// and what is at it now, which for most paths is the desired entry and
/// is written `=`. The basis was once one JSON document, built whole and
/// hashed: 2 MB of fresh memory for the 1,000-container host, and most of
/// a plan's time after the live files.
fn fingerprint(input: &Inputs<'_>, desired: &Manifest) -> String {
    use sha2::Digest as _;
    use std::io::Write as _;

    /// Feeds what is written to the hash, behind a buffer.
    struct Hashing(sha2::Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    fn field(out: &mut impl std::io::Write, bytes: &[u8]) -> std::io::Result<()> {
        out.write_all(bytes)?;
        out.write_all(b"\0")
    }
    fn desired_entry(
        out: &mut impl std::io::Write,
        path: &str,
        m: &ManifestEntry,
    ) -> std::io::Result<()> {
        field(out, b"+")?;
        field(out, path.as_bytes())?;
        entry(out, &m.entry)?;
        let (kind, name) = match &m.owner {
            Owner::Container(name) => ("container", name.as_str()),
            Owner::Network(name) => ("network", name.as_str()),
            Owner::Tunnel(name) => ("tunnel", name.as_str()),
            Owner::Firewall => ("firewall", ""),
            Owner::Host => ("host", ""),
        };
        field(out, kind.as_bytes())?;
        field(out, name.as_bytes())
    }
    fn entry(out: &mut impl std::io::Write, entry: &Entry) -> std::io::Result<()> {
        match entry {
            Entry::Absent => field(out, b"a"),
            Entry::Other => field(out, b"o"),
            Entry::File { sha256, mode } => {
                field(out, b"f")?;
                field(out, sha256.as_bytes())?;
                field(out, &mode.to_le_bytes())
            }
            Entry::Symlink { target } => {
                field(out, b"l")?;
                field(out, target.as_bytes())
            }
        }
    }
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, Hashing(sha2::Sha256::new()));
    // Writing into the hash cannot fail, nor can serializing plain data.
    let written = (|| -> std::io::Result<()> {
        field(&mut out, b"ctm plan basis 2")?;
        field(
            &mut out,
            format!("{:?}", input.current.map(|(n, _)| n)).as_bytes(),
        )?;
        serde_json::to_writer(&mut out, input.system)?;
        field(&mut out, b"")?;
        // Every path of the desired files and of what is at the paths, in
        // order: the desired entry and owner; then what is at the path, or
        // `=` when that is the desired entry (most of a plan's paths).
        field(&mut out, format!("{}", input.live.len()).as_bytes())?;
        field(&mut out, format!("{}", desired.files.len()).as_bytes())?;
        let mut desired_files = desired.files.iter().peekable();
        for (path, live) in input.live {
            while let Some((other, m)) = desired_files.next_if(|(p, _)| *p < path) {
                desired_entry(&mut out, other, m)?;
            }
            match desired_files.next_if(|(p, _)| *p == path) {
                Some((_, m)) => {
                    desired_entry(&mut out, path, m)?;
                    if live.entry == m.entry {
                        field(&mut out, b"=")?;
                    } else {
                        entry(&mut out, &live.entry)?;
                    }
                }
                None => {
                    field(&mut out, b"-")?;
                    field(&mut out, path.as_bytes())?;
                    entry(&mut out, &live.entry)?;
                }
            }
        }
        for (path, m) in desired_files {
            desired_entry(&mut out, path, m)?;
        }
        field(
            &mut out,
            &[u8::from(input.options.adopt), u8::from(input.options.prune)],
        )?;
        out.flush()
    })();
    written.expect("hashing cannot fail");
    let hashing = out
        .into_inner()
        .unwrap_or_else(|_| unreachable!("flushed above"));
    crate::fs::hex(&hashing.0.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::Artifact;
    use crate::model::Name;

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    fn file(owner: Owner, text: &str) -> Artifact {
        Artifact {
            owner,
            content: Content::File {
                text: text.into(),
                mode: 0o644,
            },
        }
    }

    /// Two containers (a autostarts, b does not) and a network.
    fn desired(a_text: &str) -> Artifacts {
        let mut files = BTreeMap::new();
        files.insert(
            "etc/systemd/nspawn/a.nspawn".into(),
            file(Owner::Container(name("a")), a_text),
        );
        files.insert(
            "etc/systemd/nspawn/b.nspawn".into(),
            file(Owner::Container(name("b")), "b\n"),
        );
        files.insert(
            crate::layout::autostart_link("a"),
            Artifact {
                owner: Owner::Container(name("a")),
                content: Content::Symlink {
                    target: "/x".into(),
                },
            },
        );
        files.insert(
            "etc/systemd/network/50-ctm-br0.netdev".into(),
            file(Owner::Network(name("n")), "netdev\n"),
        );
        Artifacts { files }
    }

    /// The live files exactly as `artifacts` would write them.
    fn live_of(artifacts: &Artifacts) -> BTreeMap<String, LiveFile> {
        artifacts
            .files
            .iter()
            .map(|(p, a)| {
                let text = match &a.content {
                    Content::File { text, .. } => Some(text.clone()),
                    Content::Symlink { .. } => None,
                };
                (
                    p.clone(),
                    LiveFile {
                        entry: entry_of(a),
                        text,
                    },
                )
            })
            .collect()
    }

    fn names_of(kept: &[KeptRootfs]) -> Vec<&str> {
        kept.iter().map(|k| k.name.as_str()).collect()
    }

    fn names(actions: &[Action]) -> Vec<String> {
        actions.iter().map(Action::summary).collect()
    }

    fn system(running: &[(&str, bool)]) -> SystemState {
        SystemState {
            containers: Some(running.iter().map(|(n, r)| (n.to_string(), *r)).collect()),
            ..SystemState::default()
        }
    }

    fn plan_for(desired: &Artifacts, applied: &Artifacts, system: &SystemState) -> Plan {
        plan_expecting(desired, applied, system, &Health::default())
    }

    fn plan_expecting(
        desired: &Artifacts,
        applied: &Artifacts,
        system: &SystemState,
        expect: &Health,
    ) -> Plan {
        plan_with(desired, applied, system, expect, Options::default())
    }

    fn plan_with(
        desired: &Artifacts,
        applied: &Artifacts,
        system: &SystemState,
        expect: &Health,
        options: Options,
    ) -> Plan {
        let manifest = Manifest::of(applied);
        let live = live_of(applied);
        plan(&Inputs {
            desired,
            desired_manifest: &Manifest::of(desired),
            expect,
            current: Some((1, &manifest)),
            live: &live,
            system,
            options,
        })
    }

    #[test]
    fn a_changed_running_container_restarts_and_nothing_else_does() {
        let applied = desired("a\n");
        let p = plan_for(
            &desired("a changed\n"),
            &applied,
            &system(&[("a", true), ("b", true)]),
        );
        assert_eq!(names(&p.actions), ["restart container a"]);
        assert_eq!(
            p.summary,
            Summary {
                add: 0,
                change: 1,
                destroy: 0,
                actions: 1
            }
        );
    }

    #[test]
    fn a_paused_container_is_neither_restarted_nor_resumed_and_the_plan_says_so() {
        let applied = desired("a\n");
        let mut paused = system(&[("a", true), ("b", true)]);
        paused.paused = Some(BTreeSet::from(["a".to_string()]));
        let p = plan_for(&desired("a changed\n"), &applied, &paused);
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        assert_eq!(names(&p.held), ["restart container a"]);
        // Its files still change; only the restart waits.
        assert_eq!(p.summary.change, 1);
        let text = render::text(&p, "ctm plan", render::Show::NoDiffs);
        assert!(
            text.contains("Held: not done, because the container is paused")
                && text.contains("`ctm restart NAME` applies a held restart"),
            "{text}"
        );
    }

    #[test]
    fn a_changed_stopped_container_that_should_run_is_started_not_restarted() {
        let applied = desired("a\n");
        let p = plan_for(
            &desired("a changed\n"),
            &applied,
            &system(&[("a", false), ("b", false)]),
        );
        assert_eq!(
            names(&p.actions),
            [
                "prepare the root file system of container a",
                "start container a"
            ]
        );
        assert!(
            p.actions[1]
                .reason()
                .starts_with("stopped, should be running"),
            "{:?}",
            p.actions
        );
    }

    #[test]
    fn a_changed_stopped_container_without_autostart_stays_stopped() {
        let mut applied = desired("a\n");
        applied.files.insert(
            "etc/systemd/nspawn/b.nspawn".into(),
            file(Owner::Container(name("b")), "old b\n"),
        );
        let p = plan_for(
            &desired("a\n"),
            &applied,
            &system(&[("a", true), ("b", false)]),
        );
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        assert_eq!(p.files.len(), 1);
    }

    #[test]
    fn a_stopped_container_that_should_run_is_drift() {
        let applied = desired("a\n");
        let p = plan_for(&applied, &applied, &system(&[("a", false), ("b", false)]));
        assert!(p.files.is_empty());
        assert_eq!(
            names(&p.actions),
            [
                "prepare the root file system of container a",
                "start container a"
            ]
        );
        assert_eq!(
            p.actions[1].reason(),
            "stopped, but should be running (drift)"
        );
    }

    #[test]
    fn files_only_roots_report_no_container_drift() {
        let applied = desired("a\n");
        let p = plan_for(&applied, &applied, &SystemState::default());
        assert!(p.is_empty(), "{:?}", p.actions);
        assert!(!p.live_system);
    }

    #[test]
    fn a_network_change_deletes_the_link_and_reloads_networkd_only() {
        let applied = desired("a\n");
        let mut next = desired("a\n");
        next.files.insert(
            "etc/systemd/network/50-ctm-br0.netdev".into(),
            file(Owner::Network(name("n")), "netdev changed\n"),
        );
        let p = plan_for(&next, &applied, &system(&[("a", true)]));
        assert_eq!(
            names(&p.actions),
            ["delete links br0 and reload systemd-networkd"]
        );
    }

    #[test]
    fn a_removed_container_is_stopped_first_and_its_files_destroyed() {
        let applied = desired("a\n");
        let mut next = desired("a\n");
        next.files
            .retain(|p, _| !p.contains("/a.") && !p.contains("@a."));
        let p = plan_for(&next, &applied, &system(&[("a", true), ("b", true)]));
        assert_eq!(
            names(&p.actions),
            ["stop container a", "reload systemd's unit files"]
        );
        assert_eq!(p.summary.destroy, 2);
        // Already stopped: nothing to stop.
        let p = plan_for(&next, &applied, &system(&[("a", false), ("b", true)]));
        assert_eq!(names(&p.actions), ["reload systemd's unit files"]);
    }

    /// `applied` plus the backup units of container `a`, its timer's text
    /// `timer`.
    fn with_backup(applied: &Artifacts, timer: &str) -> Artifacts {
        let mut next = applied.clone();
        for (unit, text) in [
            ("ctm-backup-a.timer", timer),
            ("ctm-backup-a.service", "s\n"),
        ] {
            next.files.insert(
                format!("etc/systemd/system/{unit}"),
                file(Owner::Host, text),
            );
        }
        next
    }

    #[test]
    fn backup_timers_are_started_restarted_for_a_new_schedule_and_stopped() {
        let before = desired("a\n");
        let daily = with_backup(&before, "daily\n");
        let running = system(&[("a", true), ("b", true)]);
        let p = plan_for(&daily, &before, &running);
        assert_eq!(
            names(&p.actions),
            [
                "reload systemd's unit files",
                "backup timers: start ctm-backup-a.timer"
            ]
        );
        let weekly = with_backup(&before, "weekly\n");
        let p = plan_for(&weekly, &daily, &running);
        assert_eq!(
            names(&p.actions),
            [
                "reload systemd's unit files",
                "backup timers: restart ctm-backup-a.timer"
            ]
        );
        // A new command line alone is read by the next run: no restart.
        let mut keep = daily.clone();
        keep.files.insert(
            "etc/systemd/system/ctm-backup-a.service".into(),
            file(Owner::Host, "keep 3\n"),
        );
        let p = plan_for(&keep, &daily, &running);
        assert_eq!(names(&p.actions), ["reload systemd's unit files"]);
        let p = plan_for(&before, &daily, &running);
        assert_eq!(
            names(&p.actions),
            [
                "reload systemd's unit files",
                "backup timers: stop ctm-backup-a.timer"
            ]
        );
    }

    #[test]
    fn a_backup_timer_stopped_by_hand_is_drift_an_apply_starts_again() {
        let daily = with_backup(&desired("a\n"), "daily\n");
        let mut expect = Health::default();
        expect.backups.insert(
            "a".into(),
            crate::compile::health::BackupHealth {
                to: "/srv/backups".into(),
            },
        );
        let mut running = system(&[("a", true), ("b", true)]);
        running.backup_timers = Some(BTreeMap::from([("ctm-backup-a.timer".into(), false)]));
        let p = plan_expecting(&daily, &daily, &running, &expect);
        assert!(p.files.is_empty());
        assert_eq!(
            names(&p.actions),
            ["backup timers: start ctm-backup-a.timer"]
        );
        assert_eq!(
            p.actions[0].reason(),
            "not active (drift): ctm-backup-a.timer"
        );
        // Active: nothing to do. Not known (a files-only root): nothing either.
        running.backup_timers = Some(all_timers_active(&expect));
        assert!(plan_expecting(&daily, &daily, &running, &expect).is_empty());
        running.backup_timers = None;
        assert!(plan_expecting(&daily, &daily, &running, &expect).is_empty());
    }

    #[test]
    fn the_plan_names_the_last_backup_of_each_container_with_a_backup_block() {
        let daily = with_backup(&desired("a\n"), "daily\n");
        let mut expect = Health::default();
        expect.backups.insert(
            "a".into(),
            crate::compile::health::BackupHealth {
                to: "/srv/backups".into(),
            },
        );
        let mut running = system(&[("a", true), ("b", true)]);
        let p = plan_expecting(&daily, &daily, &running, &expect);
        assert_eq!(p.backups.len(), 1);
        assert_eq!(p.backups[0].describe(), "no backup yet");
        running.last_backups.insert(
            "a".into(),
            LastBackup {
                id: "20261203T171500Z".into(),
                path: "/srv/backups/a-20261203T171500Z.ctm-backup.tar.zst".into(),
                bytes: 2_500_000,
                at: 1_796_318_100,
            },
        );
        running.timer_runs.insert(
            "a".into(),
            TimerRun {
                result: "exit-code".into(),
                last_trigger_usec: 1,
            },
        );
        let p = plan_expecting(&daily, &daily, &running, &expect);
        let line = p.backups[0].describe();
        assert_eq!(
            line,
            "last backup 20261203T171500Z (2026-12-03T17:15:00Z, 2.5 MB) at \
             /srv/backups/a-20261203T171500Z.ctm-backup.tar.zst; \
             the last run of ctm-backup-a.timer failed (exit-code)"
        );
        let text = render::text(&p, "Plan", render::Show::NoDiffs);
        assert!(text.contains(&format!("container a: {line}")), "{text}");
        // Neither is part of the fingerprint: a backup changes nothing an
        // apply does.
        let before = plan_expecting(
            &daily,
            &daily,
            &system(&[("a", true), ("b", true)]),
            &expect,
        );
        assert_eq!(p.fingerprint, before.fingerprint);
    }

    fn pruning(
        desired: &Artifacts,
        applied: &Artifacts,
        system: &SystemState,
        prune: bool,
    ) -> Plan {
        let options = Options {
            prune,
            ..Options::default()
        };
        plan_with(desired, applied, system, &Health::default(), options)
    }

    fn with_trees(mut system: SystemState, made: &[&str]) -> SystemState {
        system.made_rootfs = Some(made.iter().map(|n| n.to_string()).collect());
        system
    }

    #[test]
    fn a_removed_containers_tree_is_kept_unless_pruned_and_then_deleted_after_the_stop() {
        let applied = desired("a\n");
        let mut next = desired("a\n");
        next.files
            .retain(|p, _| !p.contains("/a.") && !p.contains("@a."));
        let system = with_trees(system(&[("a", true), ("b", true)]), &["a", "b"]);

        let kept = pruning(&next, &applied, &system, false);
        assert_eq!(names_of(&kept.kept_rootfs), ["a"]);
        assert!(
            !kept
                .actions
                .iter()
                .any(|a| matches!(a, Action::RemoveRootfs { .. }))
        );

        let pruned = pruning(&next, &applied, &system, true);
        assert!(pruned.kept_rootfs.is_empty());
        assert_eq!(
            names(&pruned.actions),
            [
                "stop container a",
                "delete the root file system of container a (/var/lib/machines/a)",
                "reload systemd's unit files"
            ]
        );
        // A different decision, a different plan to apply.
        assert_ne!(kept.fingerprint, pruned.fingerprint);
    }

    #[test]
    fn prune_never_touches_a_tree_ctm_did_not_make_or_a_container_in_the_host_file() {
        let applied = desired("a\n");
        let mut next = desired("a\n");
        next.files
            .retain(|p, _| !p.contains("/a.") && !p.contains("@a."));
        // Only b's tree is ctm's, and b is still in the host file.
        let system = with_trees(system(&[("a", false), ("b", true)]), &["b"]);
        let p = pruning(&next, &applied, &system, true);
        assert_eq!(names(&p.actions), ["reload systemd's unit files"]);
        assert!(p.kept_rootfs.is_empty());
    }

    #[test]
    fn pruning_a_container_removed_earlier_stops_it_if_someone_started_it() {
        let applied = desired("a\n");
        let system = with_trees(system(&[("a", true), ("b", true), ("old", true)]), &["old"]);
        let p = pruning(&applied, &applied, &system, true);
        assert_eq!(
            names(&p.actions),
            [
                "stop container old",
                "delete the root file system of container old (/var/lib/machines/old)"
            ]
        );
        // Without --prune nothing happens to it: only the note.
        let p = pruning(&applied, &applied, &system, false);
        assert!(p.actions.is_empty());
        assert_eq!(names_of(&p.kept_rootfs), ["old"]);
        assert_eq!(p.kept_rootfs[0].path, "/var/lib/machines/old");
        assert!(
            render::text(&p, "ctm plan", render::Show::NoDiffs)
                .contains("`ctm apply --prune` deletes them")
        );
    }

    #[test]
    fn steps_undone_inside_a_container_are_planned_again() {
        let applied = desired("a\n");
        let mut system = system(&[("a", true), ("b", true)]);
        system.undone_steps = Some(BTreeMap::from([
            ("a".to_string(), vec!["ssh-authorized-keys".to_string()]),
            ("gone".to_string(), vec!["networkd".to_string()]),
        ]));
        let p = plan_for(&applied, &applied, &system);
        assert_eq!(
            names(&p.actions),
            ["provision container a (ssh-authorized-keys)"]
        );
        assert_eq!(
            p.actions[0].reason(),
            "not done inside the container (drift): ssh-authorized-keys"
        );
    }

    fn with_ruleset(mut artifacts: Artifacts) -> Artifacts {
        artifacts.files.insert(
            NFT_RULESET.into(),
            file(Owner::Firewall, "table inet ctm\n"),
        );
        artifacts
    }

    fn expecting_firewall(chains: &[(&str, usize)]) -> Health {
        Health {
            firewall: chains.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
            ..Health::default()
        }
    }

    #[test]
    fn the_plan_says_how_each_new_root_is_made_and_refuses_one_that_cannot_be() {
        let mut expect = Health::default();
        for (n, root) in [
            ("a", crate::model::RootMode::Auto),
            ("b", crate::model::RootMode::Snapshot),
        ] {
            expect.containers.insert(
                n.into(),
                crate::compile::health::ContainerHealth {
                    root,
                    ..Default::default()
                },
            );
        }
        let state = SystemState {
            roots: Some(RootsState {
                fs: "xfs".into(),
                snapshot: Some("/var/lib/machines is on xfs, not btrfs".into()),
                reflink: None,
                overlay: None,
                missing: ["a", "b"].map(String::from).into(),
            }),
            ..system(&[])
        };
        let d = desired("a\n");
        let p = plan_expecting(&d, &d, &state, &expect);
        let text = render::text(&p, "Plan", render::Show::Whole);
        assert!(
            text.contains("Root file systems to make:\n  a reflink: a reflink copy of the image: shares its blocks (xfs)"),
            "{text}"
        );
        assert!(
            text.contains("b (root \"snapshot\"): /var/lib/machines is on xfs, not btrfs"),
            "{text}"
        );
        assert!(
            text.contains("The file system cannot make a root file system the host file asks for")
        );
    }

    fn with_firewall(chains: Option<&[(&str, usize)]>, edited: bool) -> SystemState {
        SystemState {
            firewall: Some(FirewallState {
                chains: chains.map(|c| c.iter().map(|(n, k)| (n.to_string(), *k)).collect()),
                edited,
            }),
            ..system(&[("a", true)])
        }
    }

    #[test]
    fn a_missing_or_edited_firewall_table_is_drift() {
        let applied = with_ruleset(desired("a\n"));
        let expect = expecting_firewall(&[("forward", 2)]);
        let plan = |system: &SystemState| plan_expecting(&applied, &applied, system, &expect);

        let p = plan(&with_firewall(Some(&[("forward", 2)]), false));
        assert!(p.is_empty(), "{:?}", p.actions);

        let p = plan(&with_firewall(None, false));
        assert_eq!(names(&p.actions), ["replace nftables table inet ctm"]);
        assert_eq!(p.actions[0].reason(), "table inet ctm is missing (drift)");

        let p = plan(&with_firewall(Some(&[("forward", 1), ("extra", 0)]), false));
        assert_eq!(
            p.actions[0].reason(),
            "table inet ctm was changed (drift): chain extra has 0 rules, not none; \
             chain forward has 1 rules, not 2"
        );

        let p = plan(&with_firewall(Some(&[("forward", 2)]), true));
        assert_eq!(
            p.actions[0].reason(),
            "table inet ctm was edited since ctm loaded it (drift)"
        );
    }

    #[test]
    fn a_missing_link_or_address_is_drift_that_networkd_repairs() {
        let applied = desired("a\n");
        let mut expect = Health::default();
        expect.links.insert(
            "br0".into(),
            crate::compile::health::LinkHealth {
                kind: "bridge".into(),
                addresses: vec!["10.0.0.1/24".into(), "fd00::1/64".into()],
            },
        );
        let with_links = |links: &[(&str, &[&str])]| SystemState {
            links: Some(
                links
                    .iter()
                    .map(|(n, a)| (n.to_string(), a.iter().map(|s| s.to_string()).collect()))
                    .collect(),
            ),
            ..system(&[("a", true)])
        };
        let p = plan_expecting(
            &applied,
            &applied,
            &with_links(&[("br0", &["10.0.0.1/24", "fd00::1/64", "fe80::1/64"])]),
            &expect,
        );
        assert!(p.is_empty(), "{:?}", p.actions);

        let p = plan_expecting(&applied, &applied, &with_links(&[]), &expect);
        assert_eq!(
            names(&p.actions),
            ["reload systemd-networkd, reconfigure br0"]
        );
        assert_eq!(p.actions[0].reason(), "link br0 is missing (drift)");

        let p = plan_expecting(
            &applied,
            &applied,
            &with_links(&[("br0", &["10.0.0.1/24"])]),
            &expect,
        );
        assert_eq!(p.actions[0].reason(), "link br0 lacks fd00::1/64 (drift)");
    }

    #[test]
    fn an_extra_networks_host_end_out_of_its_bridge_is_drift_that_networkd_repairs() {
        let applied = desired("a\n");
        let mut expect = Health::default();
        expect.containers.insert(
            "a".into(),
            crate::compile::health::ContainerHealth {
                autostart: true,
                more_networks: vec![crate::compile::health::AttachmentHealth {
                    network: "back".into(),
                    bridge: "br-back".into(),
                    interface: "eth1".into(),
                    host_interface: "vn-a-1".into(),
                    addresses: Vec::new(),
                }],
                ..Default::default()
            },
        );
        let with_port = |master: Option<Option<&str>>| SystemState {
            ports: Some(
                master
                    .map(|m| ("vn-a-1".to_string(), m.map(str::to_string)))
                    .into_iter()
                    .collect(),
            ),
            ..system(&[("a", true)])
        };
        for fine in [Some(Some("br-back")), None] {
            let p = plan_expecting(&applied, &applied, &with_port(fine), &expect);
            assert!(p.is_empty(), "{fine:?}: {:?}", p.actions);
        }
        let p = plan_expecting(&applied, &applied, &with_port(Some(None)), &expect);
        assert_eq!(
            names(&p.actions),
            ["reload systemd-networkd, reconfigure vn-a-1"]
        );
        assert_eq!(
            p.actions[0].reason(),
            "vn-a-1 is not a port of br-back (drift)"
        );
        let p = plan_expecting(&applied, &applied, &with_port(Some(Some("br-x"))), &expect);
        assert_eq!(
            p.actions[0].reason(),
            "vn-a-1 is a port of br-x, not a port of br-back (drift)"
        );
    }

    #[test]
    fn kinds_of_link_the_kernel_lacks_or_that_were_not_checked_are_in_the_plan() {
        let applied = desired("a\n");
        let mut expect = Health::default();
        for (name, kind) in [
            ("br0", "bridge"),
            ("t1", "gre"),
            ("t2", "gre"),
            ("v1", "vxlan"),
        ] {
            expect.links.insert(
                name.into(),
                crate::compile::health::LinkHealth {
                    kind: kind.into(),
                    addresses: Vec::new(),
                },
            );
        }
        // A files-only root probes nothing: the tunnels' kinds are noted.
        let p = plan_expecting(&applied, &applied, &SystemState::default(), &expect);
        assert!(p.unsupported_links.is_empty());
        let unchecked: Vec<(&str, &[String])> = p
            .unchecked_links
            .iter()
            .map(|n| (n.kind.as_str(), n.links.as_slice()))
            .collect();
        assert_eq!(
            unchecked,
            [
                ("gre", &["t1".to_string(), "t2".to_string()][..]),
                ("vxlan", &["v1".to_string()][..])
            ]
        );
        assert_eq!(
            p.unchecked_links[0].reason,
            "the root is not the running system"
        );

        // The running system says gre is missing, vxlan there.
        let system = SystemState {
            link_kinds: Some(
                [
                    ("bridge", KindSupport::Supported),
                    (
                        "gre",
                        KindSupport::Unsupported {
                            reason: "Unknown device type".into(),
                        },
                    ),
                    ("vxlan", KindSupport::Supported),
                ]
                .into_iter()
                .map(|(k, s)| (k.to_string(), s))
                .collect(),
            ),
            ..system(&[("a", true)])
        };
        let p = plan_expecting(&desired("b\n"), &applied, &system, &expect);
        assert!(p.unchecked_links.is_empty(), "{:?}", p.unchecked_links);
        assert_eq!(
            p.unsupported_links,
            [LinkKindNote {
                kind: "gre".into(),
                links: vec!["t1".into(), "t2".into()],
                reason: "Unknown device type".into(),
            }]
        );
        let text = render::text(&p, "ctm plan", render::Show::NoDiffs);
        assert!(
            text.contains("Not supported by the running kernel:"),
            "{text}"
        );
        assert!(text.contains("(t1, t2): Unknown device type"), "{text}");
        assert!(text.contains("nothing will be applied"), "{text}");
    }

    #[test]
    fn a_new_container_is_prepared_started_and_provisioned() {
        let applied = desired("a\n");
        let mut next = desired("a\n");
        next.files.insert(
            "etc/systemd/nspawn/c.nspawn".into(),
            file(Owner::Container(name("c")), "c\n"),
        );
        next.files.insert(
            "etc/ctm/machines/c/provision.json".into(),
            file(Owner::Container(name("c")), "[]\n"),
        );
        next.files.insert(
            crate::layout::autostart_link("c"),
            Artifact {
                owner: Owner::Container(name("c")),
                content: Content::Symlink {
                    target: "/x".into(),
                },
            },
        );
        let p = plan_for(&next, &applied, &system(&[("a", true), ("b", false)]));
        assert_eq!(
            names(&p.actions),
            [
                "reload systemd's unit files",
                "prepare the root file system of container c",
                "start container c",
                "provision container c"
            ]
        );
    }

    #[test]
    fn changed_steps_of_a_running_container_provision_it_without_a_restart() {
        use crate::compile::provision::{Action as StepAction, Check, Phase, Step};
        let step = |id: &str, content: &str| Step {
            id: id.into(),
            description: format!("write /{id}"),
            phase: Phase::Running,
            check: Check::PathExists {
                path: format!("/{id}"),
            },
            action: StepAction::WriteFile {
                path: format!("/{id}"),
                content: content.into(),
                mode: 0o600,
                owner: "root".into(),
            },
        };
        let steps = crate::compile::provision::steps_json;
        let mut applied = desired("a\n");
        applied.files.insert(
            "etc/ctm/machines/a/provision.json".into(),
            file(
                Owner::Container(name("a")),
                &steps(&[step("kept", "x"), step("keys", "old key")]),
            ),
        );
        let mut next = applied.clone();
        next.files.insert(
            "etc/ctm/machines/a/provision.json".into(),
            file(
                Owner::Container(name("a")),
                &steps(&[step("kept", "x"), step("keys", "new key"), step("new", "y")]),
            ),
        );
        let p = plan_for(&next, &applied, &system(&[("a", true), ("b", false)]));
        assert_eq!(names(&p.actions), ["provision container a (keys, new)"]);
        assert_eq!(p.provisioning, ["a"]);
    }

    #[test]
    fn the_fingerprint_follows_the_generation_the_files_and_the_system() {
        let applied = desired("a\n");
        let manifest = Manifest::of(&applied);
        let live = live_of(&applied);
        let running = system(&[("a", true)]);
        let fingerprint =
            |current: Option<u64>, live: &BTreeMap<String, LiveFile>, system: &SystemState| {
                plan(&Inputs {
                    desired: &applied,
                    desired_manifest: &manifest,
                    expect: &Health::default(),
                    current: current.map(|n| (n, &manifest)),
                    live,
                    system,
                    options: Options::default(),
                })
                .fingerprint
            };
        let base = fingerprint(Some(1), &live, &running);
        assert_eq!(base, fingerprint(Some(1), &live, &running));
        assert_ne!(base, fingerprint(Some(2), &live, &running));
        assert_ne!(base, fingerprint(Some(1), &live, &system(&[("a", false)])));
        let mut edited = live.clone();
        edited.insert(
            "etc/systemd/nspawn/b.nspawn".into(),
            LiveFile {
                entry: Entry::File {
                    sha256: crate::fs::sha256_hex(b"x"),
                    mode: 0o644,
                },
                text: Some("x".into()),
            },
        );
        assert_ne!(base, fingerprint(Some(1), &edited, &running));
        // Every part of the basis counts: the desired files and owners,
        // and the options.
        let mut other = manifest.clone();
        other.files.values_mut().next().unwrap().owner = Owner::Host;
        let with = |desired: &Manifest, options: Options| {
            plan(&Inputs {
                desired: &applied,
                desired_manifest: desired,
                expect: &Health::default(),
                current: Some((1, &manifest)),
                live: &live,
                system: &running,
                options,
            })
            .fingerprint
        };
        assert_eq!(base, with(&manifest, Options::default()));
        assert_ne!(base, with(&other, Options::default()));
        assert_ne!(base, with(&manifest, Options::ADOPT));
    }
}
