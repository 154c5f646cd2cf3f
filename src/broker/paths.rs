//! Where a share lives: `<runtime>/<host user>/<session>/` holding the
//! broker socket (guests), the control socket (the host only), the tmux
//! socket and the broker's log. The runtime directory is `--runtime-dir`,
//! else `$PAIRJAIL_RUNTIME_DIR`, else `/run/pairjail` when it exists (made
//! by `pairjail setup`), else `$XDG_RUNTIME_DIR/pairjail`.

use std::path::{Path, PathBuf};

pub const DEFAULT_RUNTIME: &str = "/run/pairjail";
pub const DEFAULT_SESSION: &str = "pair";

pub fn runtime_dir(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("PAIRJAIL_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if Path::new(DEFAULT_RUNTIME).is_dir() {
        return Ok(PathBuf::from(DEFAULT_RUNTIME));
    }
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        return Ok(Path::new(&x).join("pairjail"));
    }
    Err(format!(
        "no runtime directory: {DEFAULT_RUNTIME} does not exist (run `sudo pairjail setup`) and neither --runtime-dir, PAIRJAIL_RUNTIME_DIR nor XDG_RUNTIME_DIR is set"
    ))
}

/// Session and guest names: what may appear in paths, tmux targets and
/// forced commands without quoting.
pub fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {kind} name '{}': use 1-32 letters, digits, '-', '_' or '.', not starting with '-' or '.'",
            name.escape_debug()
        ))
    }
}

/// A session name: a name tmux keeps as given. tmux turns '.' and ':'
/// into '_', so a share of `a.b` would look for a session that does not
/// exist and end at once.
pub fn check_session(name: &str) -> Result<(), String> {
    check_name("session", name)?;
    if name.contains('.') {
        return Err(format!(
            "invalid session name '{name}': tmux would rename it (no '.'); use '-' or '_'"
        ));
    }
    Ok(())
}

/// Unix user names as sshd passes them.
pub fn check_user(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid user name '{}'", name.escape_debug()))
    }
}

#[derive(Debug, Clone)]
pub struct SessionPaths {
    pub dir: PathBuf,
    pub broker: PathBuf,
    pub control: PathBuf,
    /// The tmux socket, alone in its directory: a jailed session's server
    /// sees that directory and nothing else of the runtime directory.
    pub tmux: PathBuf,
    /// The broker's log, beside the session directory (which the broker
    /// removes on the way out) so it outlives the run.
    pub log: PathBuf,
}

impl SessionPaths {
    pub fn new(runtime: &Path, host: &str, session: &str) -> SessionPaths {
        let dir = runtime.join(host).join(session);
        SessionPaths {
            broker: dir.join("broker.sock"),
            control: dir.join("control.sock"),
            tmux: dir.join("tmux").join("tmux.sock"),
            log: runtime.join(host).join(format!("{session}.log")),
            dir,
        }
    }
}

/// The runtime directory and the calling user: where the caller's own
/// shares and invites live.
pub fn mine(explicit: Option<&Path>) -> Result<(PathBuf, String), String> {
    Ok((runtime_dir(explicit)?, current_user()?))
}

/// The user running this process, from the password database.
fn current_user() -> Result<String, String> {
    let uid = nix::unistd::Uid::effective();
    crate::users::by_uid(uid.as_raw())
        .map(|u| u.name)
        .ok_or_else(|| format!("uid {uid} has no entry in the password database"))
}

/// `<runtime>/<host>` must belong to `host`: otherwise another local user
/// could have made it first and would be impersonating the host's share.
pub fn check_host_dir(runtime: &Path, host: &str) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let dir = runtime.join(host);
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let uid = crate::users::by_name(host)
        .map(|u| u.uid)
        .ok_or_else(|| format!("no such user {host}"))?;
    if meta.file_type().is_symlink() || !meta.is_dir() || meta.uid() != uid {
        return Err(format!(
            "{} is not a directory owned by {host}; refusing to use it",
            dir.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("session", "pair").is_ok());
        assert!(check_name("guest", "bob.smith-2").is_ok());
        for bad in [
            "",
            "-x",
            ".x",
            "a b",
            "a\"b",
            "a;b",
            "a\nb",
            "$(id)",
            &"x".repeat(33),
        ] {
            assert!(check_name("guest", bad).is_err(), "{bad:?}");
        }
        assert!(check_session("review-2").is_ok());
        assert!(check_session("a.b").is_err());
        assert!(check_user("alice").is_ok());
        assert!(check_user("Alice").is_err());
        assert!(check_user("a/b").is_err());
    }
}
