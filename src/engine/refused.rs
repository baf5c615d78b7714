//! Why a use case refused to change the host. Each is a normal answer,
//! not a fault: nothing was changed, and the message says what to do.
//! The web server answers each with 409 Conflict (422 for `Invalid`, 404
//! for `NoSuchContainer`, `NoSuchTunnel`, `NoSuchTopology`, `NoSuchImage`,
//! `NoSuchSnapshot` and `NoSuchArchive`).

use crate::clock::rfc3339;
use crate::engine::events::generation_name;
use crate::plan::{Conflict, LinkKindNote, QuotaNote, RootNote};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Refused {
    #[error(
        "stale plan: {what} changed since {since} (it was planned against generation {}, the host is on {}); nothing was applied",
        generation_name(*planned),
        generation_name(*now)
    )]
    #[diagnostic(
        code(ctm::stale_plan),
        help("look at the new plan (`ctm plan`), then apply again")
    )]
    Stale {
        /// What may have changed: "the host", "the host or the host file".
        what: &'static str,
        /// When the plan was made: "plan.json was made", "the plan was shown".
        since: String,
        planned: Option<u64>,
        now: Option<u64>,
    },
    #[error("the plan has conflicts ({}); nothing was changed", conflicts.iter().map(|c| c.path.as_str()).collect::<Vec<_>>().join(", "))]
    #[diagnostic(
        code(ctm::conflicts),
        help("the plan lists each with its reason; `--adopt` takes over files ctm did not write")
    )]
    Conflicts { conflicts: Vec<Conflict> },
    #[error(
        "the running kernel cannot make {}; nothing was changed",
        kinds.iter().map(|k| format!("{} links ({}: {})", k.kind, k.links.join(", "), k.reason)).collect::<Vec<_>>().join("; ")
    )]
    #[diagnostic(
        code(ctm::unsupported_links),
        help(
            "load or build the kernel's support for the kind (for gre: `modprobe ip_gre`), or use a kind it has (`ctm info` lists them)"
        )
    )]
    UnsupportedLinks { kinds: Vec<LinkKindNote> },
    #[error(
        "the volumes' file system cannot enforce {}; nothing was changed",
        quotas.iter().map(|q| format!("the quota of volume {} ({}): {}", q.volume, crate::model::size_text(q.quota), q.reason)).collect::<Vec<_>>().join("; ")
    )]
    #[diagnostic(
        code(ctm::quota_unsupported),
        help(
            "put /var/lib/ctm/volumes on btrfs, or on XFS or ext4 mounted with `prjquota`; or remove the `quota` (docs/config.md, `volume` → `quota`)"
        )
    )]
    UnenforceableQuotas { quotas: Vec<QuotaNote> },
    #[error(
        "the file system of /var/lib/machines cannot make {}; nothing was changed",
        roots.iter().map(|r| format!("container {}'s root file system as a {}: {}", r.container, r.asked.as_str(), r.reason)).collect::<Vec<_>>().join("; ")
    )]
    #[diagnostic(
        code(ctm::root_unavailable),
        help(
            "put /var/lib/machines and /var/lib/ctm/images on one btrfs (snapshot, reflink) or XFS with reflink=1 (reflink) file system; or ask for `root \"auto\"` or `root \"copy\"` (docs/config.md, `container` → `root`)"
        )
    )]
    UnavailableRoots { roots: Vec<RootNote> },
    #[error("{file} has errors; nothing was applied")]
    #[diagnostic(
        code(ctm::invalid),
        help("fix them first: `ctm check {file}` lists them")
    )]
    Invalid {
        file: String,
        /// `ctm check --format json`'s document of the problems.
        check: serde_json::Value,
    },
    #[error("the fleet file {file} or a host file it names has errors; nothing was done")]
    #[diagnostic(
        code(ctm::invalid_fleet),
        help("fix them first: `ctm fleet check {file}` lists them")
    )]
    InvalidFleet {
        file: String,
        /// `ctm fleet check --format json`'s document of the problems.
        check: serde_json::Value,
    },
    #[error(
        "--prune cannot be combined with --confirm-timeout: a deleted root file system cannot be brought back by the revert"
    )]
    #[diagnostic(
        code(ctm::prune_with_confirm),
        help("apply with --confirm-timeout first, and once it is confirmed, `ctm apply --prune`")
    )]
    PruneWithConfirm,
    #[error(
        "generation {generation} was rolled back at {} for want of a confirmation; the host is on generation {}",
        rfc3339(*at),
        generation_name(*host_on)
    )]
    #[diagnostic(
        code(ctm::confirm_too_late),
        help("apply it again (with a new --confirm-timeout) to return to it")
    )]
    ConfirmTooLate {
        generation: u64,
        at: u64,
        host_on: Option<u64>,
    },
    #[error(
        "generation {asked} is not waiting for confirmation{}",
        match waiting { Some(n) => format!("; generation {n} is"), None => String::new() }
    )]
    #[diagnostic(code(ctm::confirm_other))]
    ConfirmOther { asked: u64, waiting: Option<u64> },
    #[error("the host is already on generation {0}")]
    #[diagnostic(code(ctm::already_on))]
    AlreadyOn(u64),
    #[error("{root} is a files-only root: there is no running container to {verb}")]
    #[diagnostic(
        code(ctm::files_only),
        help("these commands act on the running system (--root /)")
    )]
    FilesOnly { root: String, verb: &'static str },
    #[error(
        "{} of the fleet's hosts cannot be applied; nothing was changed:\n  {}",
        problems.len(),
        problems.join("\n  ")
    )]
    #[diagnostic(
        code(ctm::fleet_hosts),
        help("`ctm fleet plan` shows each host's plan or problem")
    )]
    FleetHosts {
        /// `host: why`, one for each host.
        problems: Vec<String>,
    },
    #[error("ctm serve manages the files under / only: {reason}")]
    #[diagnostic(
        code(ctm::files_only_root),
        help(
            "an apply would write the real /etc without starting anything; start `ctm serve --files-only` to allow that, or fix the running system (`ctm info`)"
        )
    )]
    FilesOnlyRoot { reason: String },
    #[error(
        "container {name} is not managed by ctm: {}",
        match generation { Some(n) => format!("generation {n} has no container {name}"), None => "nothing has been applied yet".into() }
    )]
    #[diagnostic(code(ctm::no_such_container), help("{help}"))]
    NoSuchContainer {
        name: String,
        generation: Option<u64>,
        /// The containers there are.
        help: String,
    },
    #[error("container {container} has no snapshot {id}")]
    #[diagnostic(code(ctm::no_such_snapshot), help("{help}"))]
    NoSuchSnapshot {
        container: String,
        id: String,
        /// The snapshots there are.
        help: String,
    },
    #[error("container {container} has no archive {id}")]
    #[diagnostic(code(ctm::no_such_archive), help("{help}"))]
    NoSuchArchive {
        container: String,
        id: String,
        /// The archives there are.
        help: String,
    },
    #[error(
        "stale restore: what the restore of {what} into container {container} would do changed since it was shown; nothing was changed"
    )]
    #[diagnostic(
        code(ctm::stale_restore),
        help("look at what it does now (the restore's preview), then restore again")
    )]
    StaleRestore {
        container: String,
        /// `snapshot ID`, `archive ID`.
        what: String,
    },
    #[error("the restore of {what} into container {container} cannot be done now: {}; nothing was changed", reasons.join("; "))]
    #[diagnostic(
        code(ctm::restore_blocked),
        help("the restore's preview lists each reason; deal with them, then look at it again")
    )]
    RestoreBlocked {
        container: String,
        what: String,
        reasons: Vec<String>,
    },
    #[error(
        "tunnel {name} is not managed by ctm: {}",
        match generation { Some(n) => format!("generation {n} has no tunnel {name}"), None => "nothing has been applied yet".into() }
    )]
    #[diagnostic(code(ctm::no_such_tunnel), help("{help}"))]
    NoSuchTunnel {
        name: String,
        generation: Option<u64>,
        /// The tunnels there are.
        help: String,
    },
    #[error(
        "topology {name} is not managed by ctm: {}",
        match generation { Some(n) => format!("generation {n} has no topology {name}"), None => "nothing has been applied yet".into() }
    )]
    #[diagnostic(code(ctm::no_such_topology), help("{help}"))]
    NoSuchTopology {
        name: String,
        generation: Option<u64>,
        /// The topologies there are.
        help: String,
    },
    #[error("there is no image {name} {place}")]
    #[diagnostic(code(ctm::no_such_image), help("{help}"))]
    NoSuchImage {
        name: String,
        /// "in host.kdl", "in generation 3", "in the image store".
        place: String,
        /// The images there are.
        help: String,
    },
    #[error(
        "image {name} is used by {} of generation {generation}; nothing was removed",
        containers.join(", ")
    )]
    #[diagnostic(
        code(ctm::image_in_use),
        help(
            "remove those containers (or give them another image) and apply first; `ctm gc` removes the images no generation uses"
        )
    )]
    ImageInUse {
        name: String,
        generation: u64,
        containers: Vec<String>,
    },
}
