//! Values parsed once into types that cannot hold a bad value.
//!
//! Each `parse` returns a message fit for a diagnostic; the validator adds
//! the span. Once a value is one of these types, the compiler can write it
//! into a unit file or an nft rule without further checks: none of them can
//! contain a control character, a quote, or a separator of those formats.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// MAX_ARG_STRLEN: the longest string, with its NUL, that `execve` takes
/// as one argument or one `NAME=value` of the environment.
const MAX_ARG_STRLEN: usize = 131_072;

/// `Err` if `s` is longer than `max` bytes: `what` is longer than `why`
/// allows.
fn at_most(s: &str, max: usize, what: &str, why: &str) -> Result<(), String> {
    if s.len() > max {
        return Err(format!(
            "{what} is {} bytes long; {why} takes at most {max}",
            s.len()
        ));
    }
    Ok(())
}

/// A container, image, network or template name: systemd's machine-name
/// rules (letters, digits, `-`, `_`, `.`; no leading `.` or `-`; no `..`;
/// at most 64 characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(s: String) -> Result<Name, String> {
        Name::parse(&s)
    }
}

impl From<Name> for String {
    fn from(name: Name) -> String {
        name.0
    }
}

impl Name {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Name, String> {
        if s.is_empty() {
            return Err("a name cannot be empty".into());
        }
        // Characters first: a name with a character it may not have is
        // wrong whatever its length, and once it is ASCII its length in
        // bytes is its length in characters.
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(format!(
                "`{}` may not appear in a name; use letters, digits, `-`, `_` and `.`",
                c.escape_default()
            ));
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!(
                "`{s}` is {} characters long; names have at most {} characters",
                s.len(),
                Self::MAX_LEN
            ));
        }
        if s.starts_with('.') || s.starts_with('-') {
            return Err("a name may not start with `.` or `-`".into());
        }
        if s.contains("..") {
            return Err("a name may not contain `..`".into());
        }
        if s.ends_with('.') {
            return Err("a name may not end with `.`".into());
        }
        Ok(Name(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A name orders, compares and hashes as its text (all derived from the
/// one `String`), so maps keyed by names can be looked up by `&str`.
impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A network interface name as the kernel and networkd accept it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfName(String);

impl TryFrom<String> for IfName {
    type Error = String;
    fn try_from(s: String) -> Result<IfName, String> {
        IfName::parse(&s)
    }
}

impl From<IfName> for String {
    fn from(name: IfName) -> String {
        name.0
    }
}

impl IfName {
    /// IFNAMSIZ less the terminating NUL.
    pub const MAX_LEN: usize = 15;

    pub fn parse(s: &str) -> Result<IfName, String> {
        if s.is_empty() {
            return Err("an interface name cannot be empty".into());
        }
        // Characters first, as for `Name`.
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(format!(
                "`{}` may not appear in an interface name; use letters, digits, `-`, `_` and `.`",
                c.escape_default()
            ));
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!(
                "`{s}` is {} characters long; Linux interface names have at most {}",
                s.len(),
                Self::MAX_LEN
            ));
        }
        if s.starts_with('.') || s.starts_with('-') {
            return Err("an interface name may not start with `.` or `-`".into());
        }
        if matches!(s, "all" | "default" | "lo") {
            return Err(format!("`{s}` is reserved by the kernel"));
        }
        Ok(IfName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An absolute, normalized path without characters that unit files,
/// nspawn's `Bind=` (which splits on `:`) or shells treat specially, and
/// as long as Linux takes a path to be: at most [`AbsPath::MAX_COMPONENT`]
/// bytes between slashes and [`AbsPath::MAX_LEN`] in all.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct AbsPath(String);

impl AbsPath {
    /// NAME_MAX: the longest file name.
    pub const MAX_COMPONENT: usize = 255;
    /// PATH_MAX (4,096) less the terminating NUL: the longest path a
    /// system call takes.
    pub const MAX_LEN: usize = 4095;

    pub fn parse(s: &str) -> Result<AbsPath, String> {
        if s.len() > Self::MAX_LEN {
            return Err(format!(
                "the path is {} bytes long; Linux takes paths of at most {} bytes (PATH_MAX less its NUL)",
                s.len(),
                Self::MAX_LEN
            ));
        }
        if let Some(long) = s.split('/').find(|part| part.len() > Self::MAX_COMPONENT) {
            return Err(format!(
                "a component of the path is {} bytes long; Linux takes file names of at most {} bytes (NAME_MAX)",
                long.len(),
                Self::MAX_COMPONENT
            ));
        }
        if !s.starts_with('/') {
            return Err(format!("`{s}` is not an absolute path"));
        }
        if let Some(c) = s.chars().find(|c| {
            c.is_control()
                || c.is_whitespace()
                || matches!(c, ':' | '\\' | '"' | '\'' | '%' | '$' | '`')
        }) {
            return Err(format!(
                "`{}` may not appear in a path: it is a separator or quote in unit files",
                c.escape_default()
            ));
        }
        if s.len() > 1 && s.ends_with('/') {
            return Err("a path may not end with `/`".into());
        }
        if s.split('/')
            .skip(1)
            .any(|part| matches!(part, "" | "." | ".."))
            && s != "/"
        {
            return Err("a path may not contain empty, `.` or `..` components".into());
        }
        Ok(AbsPath(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True if this path is `other` or lies below it.
    pub fn is_within(&self, other: &str) -> bool {
        self.0 == other
            || self
                .0
                .starts_with(&format!("{}/", other.trim_end_matches('/')))
    }
}

impl fmt::Display for AbsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A path relative to the host file's directory that stays inside it:
/// no `..`, no `/` at the start, no empty or `.` components, nothing a
/// shell or a unit file treats specially. (A symbolic link that leads out
/// is refused when the source is read, which only the engine does.)
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RelPath(String);

impl RelPath {
    pub fn parse(s: &str) -> Result<RelPath, String> {
        if s.starts_with('/') {
            return Err(format!(
                "`{s}` is absolute; a copy source is relative to the host file's directory"
            ));
        }
        if s.split('/').any(|part| part == "..") {
            return Err(format!(
                "`{s}` leads out of the host file's directory; a copy source must lie inside it"
            ));
        }
        // The same characters and lengths as an absolute path.
        AbsPath::parse(&format!("/{s}")).map(|_| RelPath(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A TCP or UDP port, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Port(u16);

impl Port {
    pub fn from_integer(i: i128) -> Result<Port, String> {
        match u16::try_from(i) {
            Ok(p) if p != 0 => Ok(Port(p)),
            _ => Err(format!("{i} is not a port; ports are 1 to 65535")),
        }
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a container's root file system is made from its image (`root`).
/// Every kind but `Copy` shares the image's blocks until they are written.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RootMode {
    /// The best the file system offers: a btrfs snapshot, else a reflink
    /// copy, else a plain copy.
    #[default]
    Auto,
    /// A btrfs snapshot of the image's subvolume.
    Snapshot,
    /// A copy whose files share the image's extents (`FICLONE`: btrfs,
    /// XFS with reflink).
    Reflink,
    /// A plain copy of every byte.
    Copy,
    /// An overlayfs mount: the image's tree, never written, under a
    /// directory of the container's own that takes every change. Asked
    /// for only: `auto` never picks it (an image must then stay as it was
    /// while any container is made from it, see docs/config.md `root`).
    Overlay,
}

impl RootMode {
    /// Every kind, in the order the documentation and the web editor's
    /// form list them (the default first).
    pub const ALL: [RootMode; 5] = [
        RootMode::Auto,
        RootMode::Snapshot,
        RootMode::Reflink,
        RootMode::Copy,
        RootMode::Overlay,
    ];

    pub fn parse(s: &str) -> Result<RootMode, String> {
        match s {
            "auto" => Ok(RootMode::Auto),
            "snapshot" => Ok(RootMode::Snapshot),
            "reflink" => Ok(RootMode::Reflink),
            "copy" => Ok(RootMode::Copy),
            "overlay" => Ok(RootMode::Overlay),
            _ => Err(format!(
                "`{s}` is not a kind of root file system; use `auto`, `snapshot`, `reflink`, `copy` or `overlay`"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RootMode::Auto => "auto",
            RootMode::Snapshot => "snapshot",
            RootMode::Reflink => "reflink",
            RootMode::Copy => "copy",
            RootMode::Overlay => "overlay",
        }
    }

    pub fn is_auto(&self) -> bool {
        *self == RootMode::Auto
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn parse(s: &str) -> Result<Protocol, String> {
        match s {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            _ => Err(format!(
                "`{s}` is not a protocol ctm forwards; use `tcp` or `udp`"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A memory size in bytes, written with systemd's suffixes (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ByteSize(u64);

/// `512M`: a whole number with a suffix K, M, G or T (powers of 1024), or
/// none for bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, suffix) = s.split_at(digits_end);
    let not_a_size =
        || format!("`{s}` is not a size; write a whole number with K, M, G or T, e.g. `512M`");
    let shift = match suffix {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(not_a_size()),
    };
    let number: u64 = digits.parse().map_err(|_| not_a_size())?;
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// `bytes` as the host file writes sizes, with the largest suffix that
/// represents it exactly: `10G`, `1536M`, `1000`.
pub fn size_text(bytes: u64) -> String {
    for (shift, suffix) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

impl ByteSize {
    /// Below this a container cannot even boot its init.
    pub const MIN: u64 = 16 << 20;

    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let bytes = parse_size(s)?;
        if bytes < Self::MIN {
            return Err(format!(
                "`{s}` is too little memory for a container; give at least 16M"
            ));
        }
        Ok(ByteSize(bytes))
    }

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&size_text(self.0))
    }
}

/// The most a volume may hold, in bytes: at least 1 MiB and a whole
/// number of KiB, as project quotas count in KiB blocks and a smaller
/// limit leaves no room for the file system's own metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Quota(u64);

impl Quota {
    pub const MIN: u64 = 1 << 20;

    pub fn parse(s: &str) -> Result<Quota, String> {
        let bytes = parse_size(s)?;
        if bytes < Self::MIN {
            return Err(format!(
                "`{s}` is too small a quota for a volume; give at least 1M"
            ));
        }
        if !bytes.is_multiple_of(1024) {
            return Err(format!(
                "`{s}` is not a whole number of kibibytes; quotas count in 1K blocks"
            ));
        }
        Ok(Quota(bytes))
    }

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&size_text(self.0))
    }
}

/// CPU time as a percentage of one CPU (systemd's `CPUQuota=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CpuQuota(u32);

impl CpuQuota {
    /// The largest CPU count `cpus` accepts.
    pub const MAX_CPUS: f64 = 4096.0;

    pub fn from_cpus(cpus: f64) -> Result<CpuQuota, String> {
        if !(cpus.is_finite() && cpus > 0.0) {
            return Err(format!(
                "{cpus} is not a CPU count; give a number above 0, e.g. `2` or `0.5`"
            ));
        }
        if cpus > Self::MAX_CPUS {
            return Err(format!(
                "{cpus} is too many CPUs; give at most {}",
                Self::MAX_CPUS
            ));
        }
        let percent = (cpus * 100.0).round();
        if percent < 1.0 {
            return Err(format!("{cpus} CPUs is less than 1% of a CPU"));
        }
        Ok(CpuQuota(percent as u32))
    }

    pub fn percent(self) -> u32 {
        self.0
    }
}

/// A validated OpenSSH public key: algorithm, key data and an optional
/// comment, as one `authorized_keys` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SshKey(String);

impl SshKey {
    const ALGORITHMS: &'static [&'static str] = &[
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];

    /// OpenSSH reads keys of at most 16 KiB (SSH_MAX_PUBKEY_BYTES), about
    /// 22 KB in base64: this leaves room for a comment.
    pub const MAX_LEN: usize = 32 << 10;

    pub fn parse(s: &str) -> Result<SshKey, String> {
        at_most(
            s,
            Self::MAX_LEN,
            "the key",
            "an authorized_keys line ctm writes",
        )?;
        let mut words = s.split(' ').filter(|w| !w.is_empty());
        let algorithm = words.next().unwrap_or("");
        if !Self::ALGORITHMS.contains(&algorithm) {
            let why = if algorithm == "ssh-dss" {
                "DSA keys are no longer accepted by OpenSSH".to_string()
            } else {
                format!("`{algorithm}` is not an OpenSSH public key type")
            };
            return Err(format!(
                "not a valid OpenSSH public key: {why}; expected e.g. `ssh-ed25519 AAAA… comment`"
            ));
        }
        let data = words
            .next()
            .ok_or("not a valid OpenSSH public key: the key data is missing")?;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|_| "not a valid OpenSSH public key: the key data is not valid base64")?;
        // The blob starts with its own algorithm name as an SSH string.
        let declared = blob
            .get(..4)
            .map(|len| u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize)
            .and_then(|len| blob.get(4..4 + len));
        if declared != Some(algorithm.as_bytes()) {
            return Err(format!(
                "not a valid OpenSSH public key: the key data is not an `{algorithm}` key"
            ));
        }
        if algorithm == "ssh-ed25519" && blob.len() != 4 + 11 + 4 + 32 {
            return Err(
                "not a valid OpenSSH public key: the ed25519 key data has the wrong length".into(),
            );
        }
        if has_control(s) {
            return Err("an SSH key may not contain control characters".into());
        }
        let comment: Vec<&str> = words.collect();
        let mut line = format!("{algorithm} {data}");
        if !comment.is_empty() {
            line.push(' ');
            line.push_str(&comment.join(" "));
        }
        Ok(SshKey(line))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user account name as Debian's `adduser` accepts it by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct UserName(String);

impl UserName {
    pub fn root() -> UserName {
        UserName("root".into())
    }

    pub fn parse(s: &str) -> Result<UserName, String> {
        let mut chars = s.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        if !first_ok
            || s.len() > 32
            || !s
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
        {
            return Err(format!(
                "`{s}` is not a valid user name; use lower-case letters, digits, `_` and `-`, starting with a letter"
            ));
        }
        Ok(UserName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Debian package name (Debian Policy 5.6.1).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PackageName(String);

impl PackageName {
    /// dpkg names files after a package (`NAME:ARCH.md5sums`), and a file
    /// name has at most 255 bytes.
    pub const MAX_LEN: usize = 200;

    pub fn parse(s: &str) -> Result<PackageName, String> {
        at_most(s, Self::MAX_LEN, "the package name", "dpkg")?;
        let valid = s.len() >= 2
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')
            });
        if !valid {
            return Err(format!(
                "`{s}` is not a package name; Debian package names use lower-case letters, digits, `+`, `-` and `.`"
            ));
        }
        Ok(PackageName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The package `ssh` installs in a container.
    pub const SSH_SERVER: &'static str = "openssh-server";
    /// The package `docker` installs in a container.
    pub const DOCKER: &'static str = "docker.io";

    /// A name written into ctm itself, known to be valid.
    pub(crate) fn trusted(name: &'static str) -> PackageName {
        PackageName(name.to_string())
    }
}

/// An environment variable name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct EnvName(String);

impl EnvName {
    /// Longer names serve no program; the bound leaves the value room in
    /// one `NAME=value` of [`MAX_ARG_STRLEN`].
    pub const MAX_LEN: usize = 255;

    pub fn parse(s: &str) -> Result<EnvName, String> {
        at_most(s, Self::MAX_LEN, "the variable name", "ctm")?;
        let valid = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "`{s}` is not a valid environment variable name; use letters, digits and `_`, not starting with a digit"
            ));
        }
        Ok(EnvName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An environment variable's value. nspawn splits `Environment=` on
/// whitespace and treats quotes and backslashes specially, so those are
/// refused rather than escaped by guesswork.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EnvValue(String);

impl EnvValue {
    /// A `NAME=value` and its NUL fit in [`MAX_ARG_STRLEN`] with any name.
    pub const MAX_LEN: usize = MAX_ARG_STRLEN - EnvName::MAX_LEN - 2;

    pub fn parse(s: &str) -> Result<EnvValue, String> {
        at_most(
            s,
            Self::MAX_LEN,
            "the value",
            "the environment of a process (MAX_ARG_STRLEN)",
        )?;
        if let Some(c) = s
            .chars()
            .find(|c| c.is_control() || c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
        {
            return Err(format!(
                "`{}` may not appear in an environment value: nspawn's Environment= splits on whitespace and interprets quotes",
                c.escape_default()
            ));
        }
        Ok(EnvValue(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A lower-case hex SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn parse(s: &str) -> Result<Sha256Hex, String> {
        if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(Sha256Hex(s.to_ascii_lowercase()))
        } else {
            Err(format!("`{s}` is not a SHA-256 digest (64 hex digits)"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A mirror URL for debootstrap: http(s) or file, no spaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MirrorUrl(String);

impl MirrorUrl {
    /// PATH_MAX less its NUL: a `file:/` mirror is a path.
    pub const MAX_LEN: usize = AbsPath::MAX_LEN;

    pub fn parse(s: &str) -> Result<MirrorUrl, String> {
        at_most(s, Self::MAX_LEN, "the mirror URL", "a path (PATH_MAX)")?;
        let scheme_ok = ["http://", "https://", "file:/"]
            .iter()
            .any(|p| s.starts_with(p));
        if !scheme_ok
            || s.chars()
                .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
        {
            return Err(format!(
                "`{s}` is not a mirror URL; expected http://, https:// or file:/"
            ));
        }
        Ok(MirrorUrl(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A debootstrap suite or variant word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Word(String);

impl Word {
    /// NAME_MAX: a suite is a directory of the mirror (`dists/SUITE`).
    pub const MAX_LEN: usize = AbsPath::MAX_COMPONENT;

    pub fn parse(s: &str) -> Result<Word, String> {
        at_most(s, Self::MAX_LEN, "the word", "a file name (NAME_MAX)")?;
        if !s.is_empty()
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
            })
        {
            Ok(Word(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is not valid here; use lower-case letters, digits, `-`, `_` and `.`"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Parses an address with a prefix, keeping the host part (`10.42.0.1/24`).
pub fn parse_interface_address<N: FromStr>(s: &str, family: &str) -> Result<N, String> {
    if !s.contains('/') {
        return Err(format!(
            "`{s}` has no prefix length; write the {family} address with its prefix, e.g. {}",
            if family == "IPv4" {
                "`10.42.0.1/24`"
            } else {
                "`fd42:42::1/64`"
            }
        ));
    }
    s.parse::<N>()
        .map_err(|_| format!("`{s}` is not an {family} address with a prefix length"))
}

pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>()
        .map_err(|_| format!("`{s}` is not an IP address"))
}

/// A command as an argument vector, never shell text: written as one string
/// in the host file and split by POSIX shell quoting rules (`shlex`), so
/// `"sh -c 'test -e /run/ready'"` is three words. Nothing is expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommandLine(Vec<String>);

impl CommandLine {
    /// Each word is one argument of `execve`, at most MAX_ARG_STRLEN with
    /// its NUL; so is the whole.
    pub const MAX_LEN: usize = MAX_ARG_STRLEN - 1;

    pub fn parse(s: &str) -> Result<CommandLine, String> {
        at_most(
            s,
            Self::MAX_LEN,
            "the command",
            "an argument of execve (MAX_ARG_STRLEN)",
        )?;
        if has_control(s) {
            return Err("a command may not contain control characters".into());
        }
        let words = shlex::split(s)
            .ok_or_else(|| format!("`{s}` has an unbalanced quote or a trailing backslash"))?;
        match words.first() {
            None => Err("the command is empty".into()),
            Some(first) if first.is_empty() => Err("the command's first word is empty".into()),
            Some(_) => Ok(CommandLine(words)),
        }
    }

    pub fn argv(&self) -> &[String] {
        &self.0
    }
}

/// How long a health check may keep failing before it counts as failed:
/// between 1 second and 1 hour, written like `30s`, `2m` or `1m 30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CheckTimeout(u32);

impl CheckTimeout {
    pub const DEFAULT: CheckTimeout = CheckTimeout(60);
    const MAX_SECONDS: u64 = 3600;

    pub fn parse(s: &str) -> Result<CheckTimeout, String> {
        let d = humantime::parse_duration(s)
            .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. `30s` or `2m`"))?;
        if d.subsec_nanos() != 0 || d.as_secs() == 0 || d.as_secs() > Self::MAX_SECONDS {
            return Err(format!(
                "`{s}` is out of range: a check's timeout is whole seconds, from 1s to 1h"
            ));
        }
        Ok(CheckTimeout(d.as_secs() as u32))
    }

    pub fn seconds(self) -> u32 {
        self.0
    }
}

/// A VXLAN network identifier: 1 to 16777215 (24 bits; networkd takes
/// no 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Vni(u32);

impl Vni {
    pub const MAX: u32 = (1 << 24) - 1;

    pub fn from_integer(i: i128) -> Result<Vni, String> {
        match u32::try_from(i) {
            Ok(v) if (1..=Self::MAX).contains(&v) => Ok(Vni(v)),
            _ => Err(format!("{i} is not a VXLAN id; ids are 1 to {}", Self::MAX)),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A link's MTU in bytes: 68 (the least IPv4 allows) to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Mtu(u16);

impl Mtu {
    pub const MIN: u16 = 68;
    /// What Ethernet carries, and what an underlay is taken to carry
    /// unless the host file says otherwise.
    pub const ETHERNET: Mtu = Mtu(1500);

    pub fn from_integer(i: i128) -> Result<Mtu, String> {
        match u16::try_from(i) {
            Ok(m) if m >= Self::MIN => Ok(Mtu(m)),
            _ => Err(format!(
                "{i} is not an MTU; MTUs are {} to 65535 bytes",
                Self::MIN
            )),
        }
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// What is left of this MTU after `overhead` bytes of encapsulation,
    /// if anything usable is.
    pub fn minus(self, overhead: u16) -> Option<Mtu> {
        self.0
            .checked_sub(overhead)
            .filter(|m| *m >= Self::MIN)
            .map(Mtu)
    }
}

impl fmt::Display for Mtu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
