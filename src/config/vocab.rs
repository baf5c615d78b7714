//! The configuration language, described once.
//!
//! Every node, argument and property ctm understands is listed here, with
//! its type, whether it may repeat, and a line of documentation. The KDL and
//! TOML front-ends check input against it, the JSON Schema is generated from
//! it, and a test holds `docs/config.md` to it, so the language cannot drift
//! between the two syntaxes or away from its documentation.

/// The type a value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    String,
    Integer,
    /// An integer or a decimal number.
    Number,
    Bool,
}

impl ValueKind {
    pub fn description(self) -> &'static str {
        match self {
            ValueKind::String => "a string",
            ValueKind::Integer => "an integer",
            ValueKind::Number => "a number",
            ValueKind::Bool => "a boolean",
        }
    }
}

/// A positional argument. In TOML it is the key `name`, or the value itself
/// when it is the node's only argument (`uplink = "eth0"`).
#[derive(Debug)]
pub struct ArgSpec {
    pub name: &'static str,
    pub kind: ValueKind,
    pub required: bool,
    /// Takes all remaining arguments (`packages "a" "b"`); a TOML array.
    pub variadic: bool,
    pub doc: &'static str,
}

#[derive(Debug)]
pub struct PropSpec {
    pub name: &'static str,
    pub kind: ValueKind,
    pub required: bool,
    pub doc: &'static str,
}

#[derive(Debug)]
pub struct NodeSpec {
    pub name: &'static str,
    pub doc: &'static str,
    /// One line of KDL, shown in hints.
    pub example: &'static str,
    pub args: &'static [ArgSpec],
    pub props: &'static [PropSpec],
    /// Free-form properties of this type (`environment KEY="value"`).
    pub any_props: Option<ValueKind>,
    pub children: &'static [ChildSpec],
    /// A named collection: the first argument is the name, and TOML writes
    /// it as a table key (`[container.web]`).
    pub keyed: bool,
}

impl NodeSpec {
    /// A node that is present or absent (`docker`, `nat`); `true` in TOML.
    pub fn is_flag(&self) -> bool {
        self.args.is_empty()
            && self.props.is_empty()
            && self.any_props.is_none()
            && self.children.is_empty()
    }
}

#[derive(Debug)]
pub struct ChildSpec {
    pub spec: &'static NodeSpec,
    pub required: bool,
    /// May be given more than once (a TOML array).
    pub repeat: bool,
}

const fn arg(name: &'static str, kind: ValueKind, doc: &'static str) -> ArgSpec {
    ArgSpec {
        name,
        kind,
        required: true,
        variadic: false,
        doc,
    }
}

const fn optional_arg(name: &'static str, kind: ValueKind, doc: &'static str) -> ArgSpec {
    ArgSpec {
        name,
        kind,
        required: false,
        variadic: false,
        doc,
    }
}

const fn prop(name: &'static str, kind: ValueKind, doc: &'static str) -> PropSpec {
    PropSpec {
        name,
        kind,
        required: false,
        doc,
    }
}

const fn required_prop(name: &'static str, kind: ValueKind, doc: &'static str) -> PropSpec {
    PropSpec {
        name,
        kind,
        required: true,
        doc,
    }
}

const fn once(spec: &'static NodeSpec) -> ChildSpec {
    ChildSpec {
        spec,
        required: false,
        repeat: false,
    }
}

const fn required(spec: &'static NodeSpec) -> ChildSpec {
    ChildSpec {
        spec,
        required: true,
        repeat: false,
    }
}

const fn many(spec: &'static NodeSpec) -> ChildSpec {
    ChildSpec {
        spec,
        required: false,
        repeat: true,
    }
}

const NO_ARGS: &[ArgSpec] = &[];
const NO_PROPS: &[PropSpec] = &[];
const NO_CHILDREN: &[ChildSpec] = &[];

const fn leaf(
    name: &'static str,
    doc: &'static str,
    example: &'static str,
    args: &'static [ArgSpec],
) -> NodeSpec {
    NodeSpec {
        name,
        doc,
        example,
        args,
        props: NO_PROPS,
        any_props: None,
        children: NO_CHILDREN,
        keyed: false,
    }
}

const fn flag(name: &'static str, doc: &'static str) -> NodeSpec {
    leaf(name, doc, name, NO_ARGS)
}

use ValueKind::{Bool, Integer, Number, String};

// ---- host ----------------------------------------------------------------

static UPLINK: NodeSpec = leaf(
    "uplink",
    "The host's link to the outside: NAT masquerades out of it.",
    "uplink \"eth0\"",
    &[arg("interface", String, "Name of the network interface.")],
);

static HOST: NodeSpec = NodeSpec {
    name: "host",
    doc: "Settings of the host itself.",
    example: "host \"lab1\" { uplink \"eth0\"; }",
    args: &[arg(
        "name",
        String,
        "The host's name, used in generated file headers.",
    )],
    props: NO_PROPS,
    any_props: None,
    children: &[once(&UPLINK)],
    keyed: false,
};

// ---- images --------------------------------------------------------------

static DEBOOTSTRAP: NodeSpec = NodeSpec {
    name: "debootstrap",
    doc: "Build the image with debootstrap.",
    example: "debootstrap suite=\"bookworm\"",
    args: NO_ARGS,
    props: &[
        required_prop("suite", String, "Debian or Ubuntu suite, e.g. `bookworm`."),
        prop(
            "mirror",
            String,
            "Mirror URL; defaults to the one the host's own apt sources use.",
        ),
        prop("variant", String, "debootstrap variant, e.g. `minbase`."),
    ],
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

static DIRECTORY: NodeSpec = leaf(
    "directory",
    "Use an existing root file system tree on the host as the image.",
    "directory \"/srv/images/bookworm\"",
    &[arg("path", String, "Absolute path of the tree.")],
);

static TARBALL: NodeSpec = NodeSpec {
    name: "tarball",
    doc: "Unpack a local tarball (`.tar`, `.tar.zst`, `.tar.xz`) as the image.",
    example: "tarball \"/srv/images/bookworm.tar.zst\" sha256=\"…\"",
    args: &[arg("path", String, "Absolute path of the tarball.")],
    props: &[prop(
        "sha256",
        String,
        "Expected SHA-256 of the tarball, checked before use.",
    )],
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

static OCI: NodeSpec = NodeSpec {
    name: "oci",
    doc: "Pull the image from an OCI registry (the distribution API).",
    example: "oci \"ghcr.io/example/app:1.4\" digest=\"sha256:…\"",
    args: &[arg(
        "reference",
        String,
        "`REGISTRY/REPOSITORY:TAG`, `REGISTRY/REPOSITORY@sha256:…` or both; the registry is always named (`docker.io/library/debian:12`).",
    )],
    props: &[
        prop(
            "digest",
            String,
            "The image's `sha256:` digest: pins it. Without it the tag is resolved when planning and recorded in the lock file.",
        ),
        prop(
            "credentials",
            String,
            "Absolute path of a Docker-style `config.json` with the registry's login (never the secret itself).",
        ),
        prop(
            "insecure",
            Bool,
            "Reach the registry over plain HTTP although it is not on loopback.",
        ),
    ],
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

static OCI_ARCHIVE: NodeSpec = leaf(
    "oci-archive",
    "Unpack an OCI image layout in a tar file (`skopeo copy … oci-archive:FILE`, `docker save` since Docker 25) as the image.",
    "oci-archive \"/srv/images/app.tar\"",
    &[arg("path", String, "Absolute path of the archive.")],
);

static BUILD_FROM: NodeSpec = NodeSpec {
    name: "from",
    doc: "Build the image from another image of the host file: each `run`, `copy` and `env` step, in order, in a container of the one before.",
    example: "from \"debian-bookworm\" network=#true",
    args: &[arg("image", String, "Name of the parent `image`.")],
    props: &[prop(
        "network",
        Bool,
        "Give the build's `run` steps the host's network (default `#false`: no network at all).",
    )],
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

static RUN: NodeSpec = leaf(
    "run",
    "A build step: a command run by `/bin/sh -c` in a container of the image so far.",
    "run \"apt-get install --yes nginx\"",
    &[arg("command", String, "The shell command.")],
);

static COPY: NodeSpec = leaf(
    "copy",
    "A build step: a file or directory beside the host file, copied into the image.",
    "copy \"site\" \"/srv/site\"",
    &[
        arg(
            "source",
            String,
            "Path relative to the host file's directory, inside it.",
        ),
        arg(
            "destination",
            String,
            "Absolute path in the image it becomes.",
        ),
    ],
);

static ENV: NodeSpec = leaf(
    "env",
    "A build step: an environment variable for the `run` steps after it.",
    "env \"DEBIAN_FRONTEND\" \"noninteractive\"",
    &[
        arg("name", String, "The variable's name."),
        arg("value", String, "Its value."),
    ],
);

static PACKAGES: NodeSpec = NodeSpec {
    name: "packages",
    doc: "Packages to install into the image (or container).",
    example: "packages \"openssh-server\" \"curl\"",
    args: &[ArgSpec {
        name: "names",
        kind: String,
        required: true,
        variadic: true,
        doc: "Package names.",
    }],
    props: NO_PROPS,
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

static IMAGE: NodeSpec = NodeSpec {
    name: "image",
    doc: "A root file system image that containers are created from.",
    example: "image \"debian-bookworm\" { debootstrap suite=\"bookworm\"; }",
    args: &[arg("name", String, "The image's name.")],
    props: NO_PROPS,
    any_props: None,
    children: &[
        once(&DEBOOTSTRAP),
        once(&DIRECTORY),
        once(&TARBALL),
        once(&OCI),
        once(&OCI_ARCHIVE),
        once(&BUILD_FROM),
        many(&RUN),
        many(&COPY),
        many(&ENV),
        many(&PACKAGES),
    ],
    keyed: true,
};

// ---- networks ------------------------------------------------------------

static BRIDGE: NodeSpec = leaf(
    "bridge",
    "Name of the bridge interface ctm creates for the network.",
    "bridge \"br-lan\"",
    &[arg(
        "name",
        String,
        "Interface name, at most 15 characters.",
    )],
);

static NAT: NodeSpec = flag(
    "nat",
    "Masquerade traffic from this subnet out of the host's uplink.",
);

static IPV4: NodeSpec = NodeSpec {
    name: "ipv4",
    doc: "The bridge's IPv4 address with the subnet's prefix length; containers use it as their gateway.",
    example: "ipv4 \"10.42.0.1/24\" { nat; }",
    args: &[arg(
        "address",
        String,
        "Address and prefix, e.g. `10.42.0.1/24`.",
    )],
    props: NO_PROPS,
    any_props: None,
    children: &[once(&NAT)],
    keyed: false,
};

static IPV6: NodeSpec = NodeSpec {
    name: "ipv6",
    doc: "The bridge's IPv6 address with the subnet's prefix length; the bridge sends router advertisements for the prefix.",
    example: "ipv6 \"fd42:42::1/64\"",
    args: &[arg(
        "address",
        String,
        "Address and prefix, e.g. `fd42:42::1/64`.",
    )],
    props: NO_PROPS,
    any_props: None,
    children: &[once(&NAT)],
    keyed: false,
};

static DNS: NodeSpec = NodeSpec {
    name: "dns",
    doc: "The name servers of the containers on this network: written to their /etc/resolv.conf and their host0 network file.",
    example: "dns \"10.42.0.1\" \"2001:db8::53\"",
    args: &[ArgSpec {
        name: "servers",
        kind: String,
        required: true,
        variadic: true,
        doc: "IPv4 or IPv6 addresses, at most three (the resolver's limit).",
    }],
    props: NO_PROPS,
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

static EGRESS: NodeSpec = leaf(
    "egress",
    "Where traffic from the network may go: `nat` (out through the uplink, masqueraded; nothing comes in unasked), `routed` (out and in with the containers' own addresses) or `isolated` (nothing leaves or is routed in). Traffic between two networks is dropped whatever the policy, unless a container's `allow` lets it in. Default: `nat` when a subnet has `nat`, else `routed`.",
    "egress \"isolated\"",
    &[arg("policy", String, "`nat`, `routed` or `isolated`.")],
);

static NETWORK: NodeSpec = NodeSpec {
    name: "network",
    doc: "A bridged network on the host that containers attach to.",
    example: "network \"lan\" { bridge \"br-lan\"; ipv4 \"10.42.0.1/24\"; }",
    args: &[arg("name", String, "The network's name.")],
    props: NO_PROPS,
    any_props: None,
    children: &[
        required(&BRIDGE),
        once(&IPV4),
        once(&IPV6),
        once(&DNS),
        once(&EGRESS),
    ],
    keyed: true,
};

// ---- containers and templates --------------------------------------------

static FROM: NodeSpec = leaf(
    "from",
    "Inherit the settings of a template; the node's own settings override them, lists are merged.",
    "from \"base\"",
    &[arg("template", String, "Name of the template.")],
);

static USE_IMAGE: NodeSpec = leaf(
    "image",
    "The image the container's root file system is created from.",
    "image \"debian-bookworm\"",
    &[arg("name", String, "Name of an `image`.")],
);

static ATTACH: NodeSpec = NodeSpec {
    name: "network",
    doc: "Attach the container to a network. Addresses not given are assigned by ctm and recorded in the lock file. Given again, the container is on several networks: the first is on nspawn's `host0` and has the default route, each other one on an interface of its own.",
    example: "network \"lan\" ipv4=\"10.42.0.10\" ipv6=\"fd42:42::10\"",
    args: &[arg("name", String, "Name of a `network`.")],
    props: &[
        prop(
            "ipv4",
            String,
            "The container's IPv4 address, inside the network's subnet.",
        ),
        prop(
            "ipv6",
            String,
            "The container's IPv6 address, inside the network's subnet.",
        ),
        prop(
            "interface",
            String,
            "The interface's name inside the container, for a network after the first (default: the network's name); at most 15 characters.",
        ),
    ],
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

static FORWARD: NodeSpec = NodeSpec {
    name: "forward",
    doc: "Forward a port of the host to the container, over IPv4 and IPv6 (where the container has an address of that family).",
    example: "forward \"tcp\" host=8080 container=80",
    args: &[arg("protocol", String, "`tcp` or `udp`.")],
    props: &[
        required_prop("host", Integer, "Port on the host, 1–65535."),
        required_prop("container", Integer, "Port in the container, 1–65535."),
        prop(
            "loopback",
            Bool,
            "Also take the port's connections to the host's 127.0.0.1 and ::1, through a socket unit and systemd-socket-proxyd (default: true for `tcp`; `udp` cannot).",
        ),
    ],
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

static BIND: NodeSpec = NodeSpec {
    name: "bind",
    doc: "Bind-mount a host directory or file into the container.",
    example: "bind \"/srv/www\" \"/var/www\" read-only=#true",
    args: &[
        arg("source", String, "Absolute path on the host."),
        optional_arg(
            "target",
            String,
            "Absolute path in the container; defaults to the source path.",
        ),
    ],
    props: &[
        prop("read-only", Bool, "Mount read-only (default: false)."),
        prop(
            "idmap",
            Bool,
            "Show the source's files to the container with their host owners: files of host root are the container root's (default: false). Needs a file system that supports ID-mapped mounts.",
        ),
    ],
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

static MOUNT_VOLUME: NodeSpec = NodeSpec {
    name: "volume",
    doc: "Mount a `volume` (a directory ctm makes and keeps) into the container.",
    example: "volume \"data\" \"/var/lib/postgresql\"",
    args: &[
        arg("name", String, "Name of a top-level `volume`."),
        arg("target", String, "Absolute path in the container."),
    ],
    props: &[
        prop("read-only", Bool, "Mount read-only (default: false)."),
        prop(
            "idmap",
            Bool,
            "Show the volume's files to the container with their host owners: files of host root are the container root's (default: false). Needs a file system that supports ID-mapped mounts.",
        ),
    ],
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

static LIMITS: NodeSpec = NodeSpec {
    name: "limits",
    doc: "Resource limits, enforced by systemd on the container's unit.",
    example: "limits memory=\"1G\" cpus=2",
    args: NO_ARGS,
    props: &[
        prop(
            "memory",
            String,
            "Memory limit with a unit suffix K, M, G or T (powers of 1024), e.g. `512M`.",
        ),
        prop(
            "cpus",
            Number,
            "CPU time, in CPUs; `1.5` is 150% of one CPU.",
        ),
    ],
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

static AUTHORIZED_KEY: NodeSpec = leaf(
    "authorized-key",
    "An OpenSSH public key allowed to log in.",
    "authorized-key \"ssh-ed25519 AAAA… admin@laptop\"",
    &[arg(
        "key",
        String,
        "The key, as in an authorized_keys line.",
    )],
);

static SSH_USER: NodeSpec = leaf(
    "user",
    "The account the keys are for (default: root).",
    "user \"deploy\"",
    &[arg("name", String, "A user name.")],
);

static SSH: NodeSpec = NodeSpec {
    name: "ssh",
    doc: "Run an SSH server in the container and authorize these keys.",
    example: "ssh { authorized-key \"ssh-ed25519 AAAA…\"; }",
    args: NO_ARGS,
    props: NO_PROPS,
    any_props: None,
    children: &[many(&AUTHORIZED_KEY), once(&SSH_USER)],
    keyed: false,
};

static DOCKER: NodeSpec = flag(
    "docker",
    "Run Docker inside the container: ctm adds the nspawn settings Docker needs and installs it.",
);

static NESTED: NodeSpec = flag(
    "nested",
    "Let the container run systemd-nspawn containers of its own.",
);

static BOOT: NodeSpec = flag(
    "boot",
    "Boot the image's init (systemd) even though the image is an OCI image, whose entrypoint runs otherwise.",
);

static AUTOSTART: NodeSpec = leaf(
    "autostart",
    "Start the container when the host boots (default: true).",
    "autostart #false",
    &[arg("enabled", Bool, "`#true` or `#false`.")],
);

static ROOT_KIND: NodeSpec = leaf(
    "root",
    "How the container's root file system is made from its image: `snapshot` (a btrfs snapshot of the image), `reflink` (a copy sharing the image's blocks: btrfs, XFS with reflink), `copy` (every byte copied), `overlay` (an overlayfs mount of the image under a directory of the container's own that takes its changes: shares the image's files on any file system, ext4 too), or `auto` (the default: the first of snapshot, reflink and copy the file system offers; never overlay). The plan says which each new container gets, and refuses a kind the file system cannot do.",
    "root \"reflink\"",
    &[arg(
        "kind",
        String,
        "`auto`, `snapshot`, `reflink`, `copy` or `overlay`.",
    )],
);

static ENVIRONMENT: NodeSpec = NodeSpec {
    name: "environment",
    doc: "Environment variables for the container's init process, as properties.",
    example: "environment TZ=\"Europe/Berlin\" LANG=\"C.UTF-8\"",
    args: NO_ARGS,
    props: NO_PROPS,
    any_props: Some(String),
    children: NO_CHILDREN,
    keyed: false,
};

static CHECK: NodeSpec = NodeSpec {
    name: "check",
    doc: "A health check run after every apply that starts or restarts the container; if it still fails when its timeout is up, the apply is rolled back.",
    example: "check tcp=80 timeout=\"30s\"",
    args: NO_ARGS,
    props: &[
        prop(
            "tcp",
            Integer,
            "A port that must accept TCP connections from the host on each of the container's addresses.",
        ),
        prop(
            "command",
            String,
            "A command that must exit 0 inside the container; split into words like a shell would, never run by one.",
        ),
        prop(
            "timeout",
            String,
            "How long the check is retried before it fails, from `1s` to `1h` (default: `60s`).",
        ),
    ],
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

/// `allow` and `deny` take the same arguments.
const RULE_ARGS: &[ArgSpec] = &[optional_arg(
    "protocol",
    String,
    "`tcp` or `udp`; without it, every protocol.",
)];
const RULE_PROPS: &[PropSpec] = &[
    prop(
        "port",
        Integer,
        "The container's port, 1–65535; needs the protocol. Without it, every port.",
    ),
    prop(
        "from",
        String,
        "The `network` the traffic comes from; without it, from anywhere (other networks, the uplink, tunnels).",
    ),
];

static ALLOW: NodeSpec = NodeSpec {
    name: "allow",
    doc: "Let routed traffic reach the container: from another network (dropped otherwise), or from outside. Rules are tried in order, the container's own before its template's; the first that matches decides.",
    example: "allow \"tcp\" port=5432 from=\"front\"",
    args: RULE_ARGS,
    props: RULE_PROPS,
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

static DENY: NodeSpec = NodeSpec {
    name: "deny",
    doc: "Drop routed traffic to the container that its network's egress policy would let in (on a `routed` network, traffic from outside). Port forwards are never dropped: a forward is an explicit opening.",
    example: "deny \"tcp\" port=22",
    args: RULE_ARGS,
    props: RULE_PROPS,
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

static ROUTE: NodeSpec = NodeSpec {
    name: "route",
    doc: "A static route in the container, through a gateway on one of its `link`s or on its network.",
    example: "route \"10.0.0.0/8\" via=\"10.0.12.1\"",
    args: &[arg(
        "destination",
        String,
        "The destination with its prefix length, e.g. `10.0.0.0/8` (`0.0.0.0/0` or `::/0` for a default route).",
    )],
    props: &[required_prop(
        "via",
        String,
        "The gateway: an address in the subnet of one of the container's links or of its network.",
    )],
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

static BACKUP_TO: NodeSpec = leaf(
    "to",
    "The directory the archives go to, as `ctm backup --to`.",
    "to \"/srv/backups\"",
    &[arg("directory", String, "An absolute path on the host.")],
);

static BACKUP_EVERY: NodeSpec = leaf(
    "every",
    "When to back up: a systemd calendar expression (`OnCalendar=`, systemd.time(7)).",
    "every \"daily\"",
    &[arg(
        "calendar",
        String,
        "A shorthand (`hourly`, `daily`, `weekly`, `monthly`, …) or `[WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:SECOND]]`, e.g. `*-*-* 03:00:00` or `Mon..Fri 02:00`.",
    )],
);

static BACKUP_KEEP: NodeSpec = leaf(
    "keep",
    "How many of the container's archives to keep in the directory, pruned after a backup succeeds (default: every one).",
    "keep 7",
    &[arg("count", Integer, "At least 1.")],
);

static BACKUP: NodeSpec = NodeSpec {
    name: "backup",
    doc: "Back the container up on a schedule: a systemd timer `ctm-backup-NAME.timer` that ctm owns runs `ctm backup NAME --to DIR --keep N`.",
    example: "backup { to \"/srv/backups\"; every \"daily\"; keep 7; }",
    args: NO_ARGS,
    props: NO_PROPS,
    any_props: None,
    children: &[
        required(&BACKUP_TO),
        required(&BACKUP_EVERY),
        once(&BACKUP_KEEP),
    ],
    keyed: false,
};

static VOLUME_BACKUP: NodeSpec = NodeSpec {
    name: "backup",
    doc: "Back the volume up alone on a schedule: a systemd timer `ctm-volume-backup-NAME.timer` that ctm owns runs `ctm backup --volume NAME --to DIR --keep N`.",
    example: "backup { to \"/srv/backups\"; every \"daily\"; keep 7; }",
    args: NO_ARGS,
    props: NO_PROPS,
    any_props: None,
    // The container's block's children: one meaning, one definition.
    children: BACKUP.children,
    keyed: false,
};

static CONTAINER_CHILDREN: &[ChildSpec] = &[
    once(&FROM),
    once(&USE_IMAGE),
    many(&ATTACH),
    many(&FORWARD),
    many(&BIND),
    many(&MOUNT_VOLUME),
    once(&LIMITS),
    once(&SSH),
    once(&DOCKER),
    once(&NESTED),
    once(&BOOT),
    once(&AUTOSTART),
    once(&ROOT_KIND),
    many(&PACKAGES),
    once(&ENVIRONMENT),
    many(&CHECK),
    many(&ALLOW),
    many(&DENY),
    many(&ROUTE),
    once(&BACKUP),
];

static TEMPLATE: NodeSpec = NodeSpec {
    name: "template",
    doc: "Settings shared by containers that name it with `from`. Takes every node a container takes.",
    example: "template \"base\" { image \"debian-bookworm\"; }",
    args: &[arg("name", String, "The template's name.")],
    props: NO_PROPS,
    any_props: None,
    children: CONTAINER_CHILDREN,
    keyed: true,
};

static CONTAINER: NodeSpec = NodeSpec {
    name: "container",
    doc: "A systemd-nspawn container. Its name is the machine name.",
    example: "container \"web\" { image \"debian-bookworm\"; }",
    args: &[arg(
        "name",
        String,
        "Machine name: letters, digits, `-`, `_`, `.`, at most 64 characters.",
    )],
    props: NO_PROPS,
    any_props: None,
    children: CONTAINER_CHILDREN,
    keyed: true,
};

// ---- volumes ---------------------------------------------------------------

static QUOTA: NodeSpec = leaf(
    "quota",
    "The most the volume may hold, enforced by the file system (btrfs qgroups, XFS or ext4 project quotas).",
    "quota \"10G\"",
    &[arg(
        "size",
        String,
        "A size with a unit suffix K, M, G or T (powers of 1024), at least `1M`.",
    )],
);

static VOLUME: NodeSpec = NodeSpec {
    name: "volume",
    doc: "A directory for a container's data that ctm makes (a btrfs subvolume on btrfs) and keeps: it is deleted only by `--prune`.",
    example: "volume \"pgdata\" { quota \"10G\"; }",
    args: &[arg("name", String, "The volume's name.")],
    props: NO_PROPS,
    any_props: None,
    children: &[once(&QUOTA), once(&VOLUME_BACKUP)],
    keyed: true,
};

// ---- tunnels ---------------------------------------------------------------

const UNDERLAY_MTU: PropSpec = prop(
    "underlay-mtu",
    Integer,
    "The MTU of the network between the endpoints (default 1500): the tunnel's own MTU is derived from it.",
);

static GRE: NodeSpec = NodeSpec {
    name: "gre",
    doc: "A GRE tunnel between two endpoints (both IPv4, or both IPv6 for ip6gre).",
    example: "gre local=\"192.0.2.1\" remote=\"198.51.100.7\"",
    args: NO_ARGS,
    props: &[
        required_prop("local", String, "This host's endpoint address."),
        required_prop("remote", String, "The peer's endpoint address."),
        UNDERLAY_MTU,
    ],
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

static VXLAN: NodeSpec = NodeSpec {
    name: "vxlan",
    doc: "A VXLAN tunnel (Ethernet over UDP) to one peer, or to a multicast group.",
    example: "vxlan id=42 local=\"192.0.2.1\" remote=\"198.51.100.7\"",
    args: NO_ARGS,
    props: &[
        required_prop(
            "id",
            Integer,
            "The VXLAN network identifier, 1 to 16777215.",
        ),
        required_prop("local", String, "This host's endpoint address."),
        prop(
            "remote",
            String,
            "The peer's endpoint address (or give `group`).",
        ),
        prop(
            "group",
            String,
            "A multicast group address instead of `remote`; needs `device`.",
        ),
        prop("port", Integer, "The UDP port (default 4789)."),
        prop(
            "device",
            String,
            "The underlay interface the tunnel is attached to.",
        ),
        UNDERLAY_MTU,
    ],
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

static TUNNEL_MTU: NodeSpec = leaf(
    "mtu",
    "The tunnel interface's MTU (default: derived from the underlay's).",
    "mtu 1400",
    &[arg("bytes", Integer, "Bytes, 68 to 65535.")],
);

static TUNNEL_ADDRESS: NodeSpec = leaf(
    "address",
    "An address with prefix on the tunnel interface.",
    "address \"172.16.0.0/31\"",
    &[arg("address", String, "Address and prefix length.")],
);

static TUNNEL: NodeSpec = NodeSpec {
    name: "tunnel",
    doc: "A tunnel interface (`gre` or `vxlan`); its name is the interface name.",
    example: "tunnel \"site-b\" { gre local=\"192.0.2.1\" remote=\"198.51.100.7\"; }",
    args: &[arg(
        "name",
        String,
        "Interface name, at most 15 characters.",
    )],
    props: NO_PROPS,
    any_props: None,
    children: &[
        once(&GRE),
        once(&VXLAN),
        once(&TUNNEL_MTU),
        many(&TUNNEL_ADDRESS),
    ],
    keyed: true,
};

// ---- links ----------------------------------------------------------------

static LINK_ADDRESS: NodeSpec = leaf(
    "address",
    "An address of one end, with the prefix length both ends share; at most one of each family per end.",
    "address \"r1\" \"10.0.12.1/30\"",
    &[
        arg(
            "container",
            String,
            "The end: one of the link's two containers.",
        ),
        arg(
            "address",
            String,
            "Address and prefix length, e.g. `10.0.12.1/30`.",
        ),
    ],
);

static LINK_INTERFACE: NodeSpec = leaf(
    "interface",
    "The name of the link's interface inside one end (default: `to-` and the other end's name, when that fits in 15 characters).",
    "interface \"r1\" \"eth1\"",
    &[
        arg(
            "container",
            String,
            "The end: one of the link's two containers.",
        ),
        arg(
            "name",
            String,
            "Interface name, at most 15 characters; not `host0`, nspawn's own.",
        ),
    ],
);

static LINK: NodeSpec = NodeSpec {
    name: "link",
    doc: "A point-to-point link between two containers: a veth pair with one end in each, made whenever both run.",
    example: "link \"r1\" \"r2\" { address \"r1\" \"10.0.12.1/30\"; address \"r2\" \"10.0.12.2/30\"; }",
    args: &[
        arg("a", String, "One end: a container's name."),
        arg("b", String, "The other end: another container's name."),
    ],
    props: NO_PROPS,
    any_props: None,
    children: &[many(&LINK_ADDRESS), many(&LINK_INTERFACE)],
    keyed: false,
};

// ---- topologies -------------------------------------------------------------

static TOPOLOGY_NETWORK: NodeSpec = leaf(
    "network",
    "A network of the topology: while it is down, its bridge is not made (its networkd files are left out).",
    "network \"ab\"",
    &[arg("name", String, "Name of a top-level `network`.")],
);

static TOPOLOGY_CONTAINER: NodeSpec = leaf(
    "container",
    "A container of the topology: while it is down, the container is stopped and not started at boot; its root file system and volumes stay.",
    "container \"r1\"",
    &[arg("name", String, "Name of a top-level `container`.")],
);

static TOPOLOGY_LINK: NodeSpec = leaf(
    "link",
    "A link of the topology, named by its two ends as the top-level `link` is: while the topology is down, the link is not made.",
    "link \"r1\" \"r2\"",
    &[
        arg("a", String, "One end of a top-level `link`."),
        arg("b", String, "Its other end (the ends in either order)."),
    ],
);

static TOPOLOGY: NodeSpec = NodeSpec {
    name: "topology",
    doc: "A group of networks, containers and links defined elsewhere in the host file, brought down and up as one (`ctm down NAME`, `ctm up NAME`). Each belongs to at most one topology.",
    example: "topology \"lab\" { network \"ab\"; container \"r1\"; container \"r2\"; link \"r1\" \"r2\"; }",
    args: &[arg("name", String, "The topology's name.")],
    props: NO_PROPS,
    any_props: None,
    children: &[
        many(&TOPOLOGY_NETWORK),
        many(&TOPOLOGY_CONTAINER),
        many(&TOPOLOGY_LINK),
    ],
    keyed: true,
};

/// The top of a host file.
pub static ROOT: NodeSpec = NodeSpec {
    name: "",
    doc: "A host file.",
    example: "",
    args: NO_ARGS,
    props: NO_PROPS,
    any_props: None,
    children: &[
        once(&HOST),
        many(&IMAGE),
        many(&NETWORK),
        many(&TEMPLATE),
        many(&CONTAINER),
        many(&TUNNEL),
        many(&VOLUME),
        many(&LINK),
        many(&TOPOLOGY),
    ],
    keyed: false,
};

// ---- the fleet file --------------------------------------------------------
//
// A second, small language read by the same front-ends and checker: the
// hosts of a fleet (`ctm fleet`, docs/fleet.md).

static REMOTE_CTM: NodeSpec = leaf(
    "ctm",
    "The ctm the hosts run, as an absolute path on them (default: `ctm` from the remote PATH).",
    "ctm \"/usr/local/bin/ctm\"",
    &[arg(
        "path",
        String,
        "Absolute path of the ctm binary on the host.",
    )],
);

static CONFIRM_TIMEOUT: NodeSpec = leaf(
    "confirm-timeout",
    "Seconds a host waits, from the start of its switch, to be confirmed over a new SSH connection before it returns to its previous generation by itself (default: 120).",
    "confirm-timeout 120",
    &[arg(
        "seconds",
        Integer,
        "Whole seconds, 1 to 604800 (7 days).",
    )],
);

static CANARY: NodeSpec = leaf(
    "canary",
    "A host, or a group, that `ctm fleet apply` switches first and alone; the rest follow only if it succeeds.",
    "canary \"web1\"",
    &[arg("name", String, "The name of a `host` or of a `group`.")],
);

static SSH_DESTINATION: NodeSpec = NodeSpec {
    name: "ssh",
    doc: "How the controller reaches the host: an OpenSSH destination, with the user's own ssh configuration, agent and known hosts.",
    example: "ssh \"root@203.0.113.5\" port=22",
    args: &[arg(
        "destination",
        String,
        "`[user@]host`: a host name, an address, or a `Host` alias of the ssh configuration.",
    )],
    props: &[prop(
        "port",
        Integer,
        "The SSH port, 1–65535 (default: the ssh configuration's, else 22).",
    )],
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

static HOST_FILE: NodeSpec = leaf(
    "file",
    "The host file the host runs (KDL, or TOML when it ends in `.toml`), relative to the fleet file; its lock file sits beside it.",
    "file \"hosts/web1.kdl\"",
    &[arg(
        "path",
        String,
        "Path of the host file, relative to the fleet file.",
    )],
);

static TAGS: NodeSpec = NodeSpec {
    name: "tags",
    doc: "Names to select the host by (`ctm fleet plan --on TAG`).",
    example: "tags \"web\" \"eu\"",
    args: &[ArgSpec {
        name: "names",
        kind: String,
        required: true,
        variadic: true,
        doc: "Tags: letters, digits, `-`, `_`, `.`.",
    }],
    props: NO_PROPS,
    any_props: None,
    children: NO_CHILDREN,
    keyed: false,
};

static GROUP: NodeSpec = leaf(
    "group",
    "The group the host is applied with: groups go one after another, in the order they first appear, and the hosts of a group side by side (up to `--parallel`). The hosts without a group are one group too.",
    "group \"eu\"",
    &[arg("name", String, "The group's name.")],
);

static FLEET_HOST: NodeSpec = NodeSpec {
    name: "host",
    doc: "A host of the fleet. Its name is how the fleet's commands and reports call it.",
    example: "host \"web1\" { ssh \"root@203.0.113.5\"; file \"hosts/web1.kdl\"; }",
    args: &[arg(
        "name",
        String,
        "The host's name: letters, digits, `-`, `_`, `.`, at most 64 characters.",
    )],
    props: NO_PROPS,
    any_props: None,
    children: &[
        required(&SSH_DESTINATION),
        required(&HOST_FILE),
        once(&TAGS),
        once(&GROUP),
        once(&CONFIRM_TIMEOUT),
        once(&REMOTE_CTM),
    ],
    keyed: true,
};

/// The top of a fleet file.
pub static FLEET: NodeSpec = NodeSpec {
    name: "",
    doc: "A fleet file.",
    example: "",
    args: NO_ARGS,
    props: NO_PROPS,
    any_props: None,
    children: &[
        once(&REMOTE_CTM),
        once(&CONFIRM_TIMEOUT),
        once(&CANARY),
        many(&FLEET_HOST),
    ],
    keyed: false,
};

/// Every node spec reachable from the root, each once, with its path of
/// node names (`["container", "forward"]`), in declaration order.
pub fn walk() -> Vec<(Vec<&'static str>, &'static NodeSpec)> {
    walk_from(&ROOT)
}

/// [`walk`] from the top of another language ([`FLEET`]).
pub fn walk_from(root: &'static NodeSpec) -> Vec<(Vec<&'static str>, &'static NodeSpec)> {
    fn visit(
        spec: &'static NodeSpec,
        path: &mut Vec<&'static str>,
        out: &mut Vec<(Vec<&'static str>, &'static NodeSpec)>,
    ) {
        for child in spec.children {
            path.push(child.spec.name);
            out.push((path.clone(), child.spec));
            // Templates share the container's children; list them once.
            if !std::ptr::eq(child.spec, &TEMPLATE) {
                visit(child.spec, path, out);
            }
            path.pop();
        }
    }
    let mut out = Vec::new();
    visit(root, &mut Vec::new(), &mut out);
    out
}
