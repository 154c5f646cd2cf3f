//! The profile format: plain data, no kernel calls. Every struct rejects
//! unknown fields so a typo is an error, never a silently ignored rule.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::{Action, HumanDuration, Size};

/// A sandbox profile. Files may set any subset; `extends` merges them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    /// Profiles merged underneath this one, in order (names on the search path).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extends: Vec<String>,
    /// One line for people reading `profile show`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Named values (`{name}` in mount sources/targets and Landlock paths),
    /// with defaults; `pairjail exec --param name=value` overrides them.
    pub params: BTreeMap<String, String>,
    pub namespaces: Namespaces,
    pub ids: Ids,
    /// Filesystem entries, applied in order on top of a fresh tmpfs root.
    #[serde(rename = "mount")]
    pub mounts: Vec<Mount>,
    /// Paths inside the jail made empty after the mounts: a directory gets an
    /// empty read-only tmpfs over it, a file an empty read-only file. `*` and
    /// `?` match within the last component (`{home}/.cargo/credentials*`).
    /// A path that is a symlink hides what it points to, where that is
    /// visible. Listed paths that do not exist at entry are skipped by the
    /// mounts; Landlock enforces the list too: a read rule on a directory
    /// of the caller's that a listed path lies under grants its entries one
    /// by one, as they are at entry, never the listed ones (so one saved
    /// again by rename, which drops its mount, or made after entry stays
    /// unreadable). Not under a `write` rule, which Landlock grants whole
    /// (`profile check` says so), nor in a directory that is not the
    /// caller's (`/etc`), where the caller's tools change nothing: there
    /// the mount alone hides it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hide: Vec<String>,
    pub landlock: Landlock,
    pub seccomp: Seccomp,
    pub capabilities: Capabilities,
    pub rlimits: Rlimits,
    pub cgroup: Cgroup,
    pub env: Env,
    pub session: Session,
    pub probe: Probe,
}

/// How `pairjail probe` reads this profile's results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Probe {
    /// Attempts that get through by design (a workspace runs shells and
    /// reads its home): reported as "allowed by the profile", not escapes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Namespaces {
    pub user: bool,
    pub mount: bool,
    pub pid: bool,
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    pub cgroup: bool,
    /// Hostname inside the UTS namespace.
    pub hostname: String,
}

impl Default for Namespaces {
    fn default() -> Self {
        Namespaces {
            user: true,
            mount: true,
            pid: true,
            net: true,
            ipc: true,
            uts: true,
            cgroup: false,
            hostname: "pairjail".into(),
        }
    }
}

/// Identity inside the jail. Outside, the jail is always the caller's uid
/// (or `nobody` when the caller is root).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Ids {
    pub uid: Id,
    pub gid: Id,
}

impl Default for Ids {
    fn default() -> Self {
        Ids {
            uid: Id::Number(1000),
            gid: Id::Number(1000),
        }
    }
}

impl Ids {
    /// The ids inside, given the ids the jail has outside: `caller` maps
    /// an id to itself.
    pub fn inside(&self, outside_uid: u32, outside_gid: u32) -> (u32, u32) {
        (self.uid.or(outside_uid), self.gid.or(outside_gid))
    }
}

/// A uid or gid inside the jail: a number, or `"caller"` for the id the
/// jail has outside (files it writes in a bound directory are then the
/// caller's, and programs that compare peer uids keep working).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "IdRepr", into = "IdRepr")]
#[schemars(with = "IdRepr")]
pub enum Id {
    Number(u32),
    Caller,
}

impl Id {
    pub fn or(self, caller: u32) -> u32 {
        match self {
            Id::Number(n) => n,
            Id::Caller => caller,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum IdRepr {
    Number(u32),
    Word(String),
}

impl TryFrom<IdRepr> for Id {
    type Error = String;
    fn try_from(r: IdRepr) -> Result<Id, String> {
        match r {
            IdRepr::Number(n) => Ok(Id::Number(n)),
            IdRepr::Word(w) if w == "caller" => Ok(Id::Caller),
            IdRepr::Word(w) => Err(format!("invalid id '{w}': use a number or \"caller\"")),
        }
    }
}

impl From<Id> for IdRepr {
    fn from(id: Id) -> IdRepr {
        match id {
            Id::Number(n) => IdRepr::Number(n),
            Id::Caller => IdRepr::Word("caller".into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Mount {
    /// A host path made visible inside; read-only unless `rw = true`.
    Bind {
        src: String,
        dst: String,
        #[serde(default, skip_serializing_if = "is_false")]
        rw: bool,
        /// Skip silently when `src` does not exist.
        #[serde(default, skip_serializing_if = "is_false")]
        optional: bool,
        /// Shown through a read-only overlay instead of a bind: the same
        /// files, but every Unix socket under it refuses connections (a
        /// read-only bind does not stop a `connect`: an ssh-agent, a
        /// Docker or tmux socket in the home would be reachable), and
        /// filesystems mounted under it are not shown. A directory only;
        /// not with `rw`.
        #[serde(default, skip_serializing_if = "is_false")]
        overlay: bool,
    },
    /// A private, empty tmpfs of at most `size` (without one, the kernel's
    /// default, half of the machine's memory: `profile check` says so).
    Tmpfs {
        dst: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<Size>,
        /// Octal permission bits, e.g. `0o1777`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
    },
    /// procfs for the jail's own pid namespace.
    Proc {
        #[serde(default = "default_proc")]
        dst: String,
    },
    /// A tmpfs with null, zero, full, random, urandom and tty only; with
    /// `pts = true` also a private devpts instance (`pts/`, `ptmx`), for
    /// programs that open terminals of their own (tmux, script).
    Dev {
        #[serde(default = "default_dev")]
        dst: String,
        #[serde(default, skip_serializing_if = "is_false")]
        pts: bool,
    },
}

fn default_proc() -> String {
    "/proc".into()
}
fn default_dev() -> String {
    "/dev".into()
}
fn is_false(b: &bool) -> bool {
    !*b
}

impl Mount {
    pub fn dst(&self) -> &str {
        match self {
            Mount::Bind { dst, .. }
            | Mount::Tmpfs { dst, .. }
            | Mount::Proc { dst }
            | Mount::Dev { dst, .. } => dst,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Compat {
    /// Apply what the running kernel supports and warn about the rest.
    BestEffort,
    /// Refuse to start unless the kernel supports the pinned ABI fully.
    #[default]
    Hard,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Forbid connecting to abstract unix sockets outside the jail (ABI 6).
    AbstractUnixSocket,
    /// Forbid signalling processes outside the jail (ABI 6).
    Signal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Landlock {
    pub enabled: bool,
    /// The Landlock ABI the rules are written for (1..=9).
    pub abi: u8,
    pub compat: Compat,
    /// Paths (inside the jail) that may be read.
    pub read: Vec<String>,
    /// Paths that may be read and executed.
    pub read_exec: Vec<String>,
    /// Paths that may be read and written.
    pub write: Vec<String>,
    pub scopes: Vec<Scope>,
}

impl Default for Landlock {
    fn default() -> Self {
        Landlock {
            enabled: true,
            abi: 6,
            compat: Compat::Hard,
            read: vec![],
            read_exec: vec![],
            write: vec![],
            scopes: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Seccomp {
    pub enabled: bool,
    /// What a syscall outside the allowlist gets.
    pub default_action: Action,
    /// Syscall names, or `@group` for a group from `[seccomp.groups]`.
    pub allow: Vec<String>,
    /// ioctl requests allowed by name (compared on the low 32 bits).
    pub ioctl: Vec<String>,
    /// When set, `socket` and `socketpair` are allowed only for these
    /// address families (e.g. "AF_UNIX").
    pub socket_families: Vec<String>,
    /// Named syscall sets, referenced as `@name` in `allow`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, Vec<String>>,
}

impl Default for Seccomp {
    fn default() -> Self {
        Seccomp {
            enabled: true,
            default_action: Action::KillProcess,
            allow: vec![],
            ioctl: vec![],
            socket_families: vec![],
            groups: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Capabilities {
    /// Capabilities kept inside the jail's user namespace (`CAP_…`).
    pub keep: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Rlimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nofile: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nproc: Option<u64>,
    /// Address space.
    #[serde(rename = "as", skip_serializing_if = "Option::is_none")]
    pub address_space: Option<Size>,
    /// CPU seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fsize: Option<Size>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core: Option<Size>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Cgroup {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<Size>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_max: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<u64>,
    /// Fail instead of warning when the cgroup tree is not writable.
    pub required: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Env {
    /// Variables copied from the caller; everything else is cleared.
    pub keep: Vec<String>,
    /// Variables set inside; values may use `{params}`.
    pub set: BTreeMap<String, String>,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Watch only: no input reaches the session.
    Mirror,
    /// Type into the host's session.
    Pair,
    /// Own window in a session grouped with the host's.
    Rogue,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mirror" => Ok(Mode::Mirror),
            "pair" => Ok(Mode::Pair),
            "rogue" => Ok(Mode::Rogue),
            _ => Err(format!(
                "unknown mode '{s}', expected mirror, pair or rogue"
            )),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Mirror => "mirror",
            Mode::Pair => "pair",
            Mode::Rogue => "rogue",
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Session {
    pub allowed_modes: Vec<Mode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<HumanDuration>,
    /// Guests with this profile join only a recorded share, and `start`
    /// refuses to share without `--record`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub require_recording: bool,
    /// Guests with this profile join only a share with an audit log, and
    /// `start` refuses `--no-audit`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub require_audit_log: bool,
}
