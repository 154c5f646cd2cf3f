//! The machine's configuration, `/etc/pairjail/config.toml`: written by
//! `pairjail setup`, read by `start`, `invite`, `status`, `doctor` and
//! sshd's `authorized-keys`. Its presence is what "pair-user mode" means:
//! which user guests log in as, where shares live, which local users may
//! host, and the name and port guests connect to. It also lists what setup
//! wrote, so `setup --undo` removes exactly that.
//!
//! `authorized-keys` trusts `hosts` to decide whose invites to serve, so
//! the file must belong to root and be writable by no one else.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const DEFAULT_PATH: &str = "/etc/pairjail/config.toml";
/// Points every command at another config (tests, a second install).
pub const ENV: &str = "PAIRJAIL_CONFIG";
/// Larger than any config setup writes.
const MAX_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is {why}; refusing to trust it (it decides who may host): `sudo chown root:root {path} && sudo chmod 644 {path}`, or run `sudo pairjail setup` again"
    )]
    Unsafe { path: PathBuf, why: String },
    #[error("{path}: {message} (fix the file, or run `sudo pairjail setup` again)")]
    Parse { path: PathBuf, message: String },
}

/// What setup made, so that `--undo` removes that and nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Written {
    /// Files and symlinks setup placed (this config included).
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Directories setup created (removed if empty).
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
    /// Users setup created (removed only with `--undo --remove-user`).
    #[serde(default)]
    pub users: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemConfig {
    /// The Unix user every guest logs in as.
    pub pair_user: String,
    /// Where every host's shares and invites live.
    pub runtime_dir: PathBuf,
    /// Local users who may host. Empty, with no `host_group`: every user.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Members of this group may host too (wemux's `host_list`, as a group).
    #[serde(default)]
    pub host_group: Option<String>,
    /// The name guests connect to (default: this machine's host name).
    #[serde(default)]
    pub public_host: Option<String>,
    /// sshd's port as setup found it (`sshd -T`).
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub written: Written,
}

impl SystemConfig {
    /// May `user` host a share that guests of the pair user reach?
    pub fn may_host(&self, user: &str) -> bool {
        if self.hosts.is_empty() && self.host_group.is_none() {
            return true;
        }
        if self.hosts.iter().any(|h| h == user) {
            return true;
        }
        self.host_group
            .as_deref()
            .is_some_and(|g| crate::lookup::in_group(user, g))
    }

    pub fn render(&self) -> String {
        let body = toml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
        format!(
            "# Written by `pairjail setup`; `sudo pairjail setup --undo` removes it and\n\
             # everything listed under [written].\n\
             # hosts / host_group: who may host (both empty: every local user).\n\
             {body}"
        )
    }

    pub fn parse(text: &str, path: &Path) -> Result<SystemConfig, ConfigError> {
        let c: SystemConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        let bad = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        crate::users::check_user(&c.pair_user).map_err(|e| bad(format!("pair_user: {e}")))?;
        for h in &c.hosts {
            crate::users::check_user(h).map_err(|e| bad(format!("hosts: {e}")))?;
        }
        if let Some(g) = &c.host_group {
            crate::users::check_user(g).map_err(|_| {
                bad(format!(
                    "host_group: invalid group name '{}'",
                    g.escape_debug()
                ))
            })?;
        }
        if !c.runtime_dir.is_absolute() {
            return Err(bad("runtime_dir must be an absolute path".into()));
        }
        if let Some(h) = &c.public_host {
            check_host_name(h).map_err(bad)?;
        }
        Ok(c)
    }
}

/// A name or address guests type after `@`: nothing ssh would read as an
/// option or a second word.
pub fn check_host_name(h: &str) -> Result<(), String> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && !h.starts_with('-')
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "public host '{}': use a DNS name or an IP address",
            h.escape_debug()
        ))
    }
}

/// Where setup put sshd's drop-in before it wrote a config: a machine
/// with that file and no config was set up by an older pairjail.
pub const LEGACY_DROPIN: &str = "/etc/ssh/sshd_config.d/pairjail.conf";

/// Set up by an older pairjail (sshd's drop-in, no config): pair-user
/// mode is meant, but nothing says which user or runtime directory.
pub fn legacy_setup() -> bool {
    std::env::var_os(ENV).is_none() && Path::new(LEGACY_DROPIN).exists() && !path().exists()
}

/// The config file to read: `$PAIRJAIL_CONFIG`, else the default.
pub fn path() -> PathBuf {
    std::env::var_os(ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_PATH), PathBuf::from)
}

/// The machine's config, or None when setup never ran (no-root mode).
pub fn load() -> Result<Option<SystemConfig>, ConfigError> {
    load_from(&path())
}

pub fn load_from(path: &Path) -> Result<Option<SystemConfig>, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let read = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let unsafe_ = |why: String| ConfigError::Unsafe {
        path: path.to_path_buf(),
        why,
    };
    // Opened without following a link and without blocking on a FIFO;
    // what is checked is the file that was opened, not a name.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(unsafe_("a symlink".into()));
        }
        Err(e) => return Err(read(e)),
    };
    let meta = file.metadata().map_err(read)?;
    if !meta.is_file() {
        return Err(unsafe_("not a regular file".into()));
    }
    if meta.uid() != 0 {
        return Err(unsafe_(format!("owned by uid {}, not root", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_(format!(
            "writable by group or others (mode {:o})",
            meta.mode() & 0o777
        )));
    }
    check_parents(path).map_err(unsafe_)?;
    let mut text = String::new();
    file.take(MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read)?;
    if text.len() as u64 > MAX_BYTES {
        return Err(unsafe_(format!("longer than {MAX_BYTES} bytes")));
    }
    SystemConfig::parse(&text, path).map(Some)
}

/// Like sshd's StrictModes: every directory above the config belongs to
/// root and nobody else can replace an entry in it (not writable by
/// group or others, unless sticky).
fn check_parents(path: &Path) -> Result<(), String> {
    let mut p = path.parent();
    while let Some(dir) = p.filter(|d| !d.as_os_str().is_empty()) {
        let m = std::fs::metadata(dir).map_err(|e| format!("in {}: {e}", dir.display()))?;
        if !crate::files::only_root_changes(&m) {
            return Err(format!(
                "in {}, a directory users other than root can change",
                dir.display()
            ));
        }
        p = dir.parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SystemConfig {
        SystemConfig {
            pair_user: "pair".into(),
            runtime_dir: "/run/pairjail".into(),
            hosts: vec!["alice".into()],
            host_group: None,
            public_host: Some("dev.example.com".into()),
            port: Some(2222),
            written: Written {
                files: vec!["/etc/pairjail/config.toml".into()],
                dirs: vec![],
                users: vec!["pair".into()],
            },
        }
    }

    #[test]
    fn round_trips_and_checks_fields() {
        let c = sample();
        let back = SystemConfig::parse(&c.render(), Path::new("c.toml")).unwrap();
        assert_eq!(back, c);
        assert!(back.may_host("alice"));
        assert!(!back.may_host("mallory"));
        let open = SystemConfig {
            hosts: vec![],
            ..sample()
        };
        assert!(open.may_host("anyone"));
        for bad in [
            "pair_user = \"Pair\"\nruntime_dir = \"/run/x\"\n",
            "pair_user = \"pair\"\nruntime_dir = \"run/x\"\n",
            "pair_user = \"pair\"\nruntime_dir = \"/run/x\"\npublic_host = \"-oProxyCommand=x\"\n",
            "pair_user = \"pair\"\nruntime_dir = \"/run/x\"\nhosts = [\"a b\"]\n",
            "pair_user = \"pair\"\nruntime_dir = \"/run/x\"\nsurprise = 1\n",
        ] {
            assert!(
                SystemConfig::parse(bad, Path::new("c.toml")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_file_others_could_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.toml");
        assert!(load_from(&p).unwrap().is_none());
        std::fs::write(&p, sample().render()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(load_from(&p), Err(ConfigError::Unsafe { .. })));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        if nix::unistd::Uid::effective().is_root() {
            assert_eq!(load_from(&p).unwrap(), Some(sample()));
            // A link to a good file is still refused: what is checked is
            // what was opened.
            let link = d.path().join("link.toml");
            std::os::unix::fs::symlink(&p, &link).unwrap();
            assert!(matches!(load_from(&link), Err(ConfigError::Unsafe { .. })));
            // A FIFO neither hangs the reader nor passes.
            let fifo = d.path().join("fifo.toml");
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
            assert!(matches!(load_from(&fifo), Err(ConfigError::Unsafe { .. })));
            // In a directory another user could change: refused.
            let open = d.path().join("open");
            std::fs::create_dir(&open).unwrap();
            std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
            let q = open.join("config.toml");
            std::fs::copy(&p, &q).unwrap();
            assert!(matches!(load_from(&q), Err(ConfigError::Unsafe { .. })));
            nix::unistd::chown(&p, Some(nix::unistd::Uid::from_raw(1)), None).unwrap();
            assert!(matches!(load_from(&p), Err(ConfigError::Unsafe { .. })));
        }
    }
}
