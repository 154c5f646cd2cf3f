//! Where a share lives: `<runtime>/<host user>/<session>/` holding the
//! broker socket (guests), the control socket (the host only), the tmux
//! socket and the broker's log. The runtime directory is `--runtime-dir`,
//! else `$PAIRJAIL_RUNTIME_DIR`, else the one `/etc/pairjail/config.toml`
//! names (pair-user mode, after `pairjail setup`), else
//! `$XDG_RUNTIME_DIR/pairjail`, else — like tmux — a private directory
//! `pairjail-UID` under `$TMPDIR` or `/tmp`.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

pub const DEFAULT_RUNTIME: &str = "/run/pairjail";
pub const DEFAULT_SESSION: &str = "pair";

pub fn runtime_dir(explicit: Option<&Path>) -> Result<PathBuf, String> {
    settle(chosen_runtime_dir(explicit)?)
}

fn chosen_runtime_dir(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("PAIRJAIL_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Some(c) = crate::config::load().map_err(|e| e.to_string())? {
        return Ok(c.runtime_dir);
    }
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        return Ok(Path::new(&x).join("pairjail"));
    }
    private_tmp_dir()
}

/// `join`'s: `--runtime-dir`, else the one `/etc/pairjail/config.toml`
/// names, else `/run/user/UID/pairjail` where it exists, else the private
/// /tmp one. Never from the environment, which a guest adds to wherever
/// sshd's `AcceptEnv` lets it.
pub fn runtime_dir_for_guest(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return settle(p.to_path_buf());
    }
    let config = Path::new(crate::config::DEFAULT_PATH);
    if let Some(c) = crate::config::load_from(config).map_err(|e| e.to_string())? {
        return settle(c.runtime_dir);
    }
    let uid = nix::unistd::Uid::effective().as_raw();
    let user = PathBuf::from(format!("/run/user/{uid}"));
    if user.is_dir() {
        return settle(user.join("pairjail"));
    }
    let dir = Path::new("/tmp").join(format!("pairjail-{uid}"));
    if dir.exists() {
        check_private(&dir, uid)?;
    }
    settle(dir)
}

/// Only root or `uid` can change what `runtime` and every directory above
/// it hold (each root's, or sticky, or `uid`'s and closed to others; one
/// not made yet does not count):
/// what join finds there stays what it checked until it connects. In a
/// runtime directory another local user made (a host's private /tmp one,
/// after a reboot emptied /tmp), they could swap a link in between.
pub fn check_guest_runtime(runtime: &Path, uid: u32) -> Result<(), String> {
    for dir in runtime.ancestors() {
        // One not made yet is made by the host (`start`, `invite add`).
        let m = match std::fs::symlink_metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            m => m.map_err(|e| format!("{}: {e}", dir.display()))?,
        };
        let theirs = m.uid() == uid && m.mode() & 0o022 == 0;
        if m.file_type().is_symlink() || !(crate::files::only_root_changes(&m) || theirs) {
            return Err(format!(
                "{} can be changed by someone who is neither root nor the host (owner uid {}, mode {:o}), so guests' join cannot trust what it finds there; use a runtime directory whose every parent only root or the host can change",
                dir.display(),
                m.uid(),
                m.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

/// One spelling per runtime directory: invite lines name it, and a store
/// rewrites only the lines that name it, so `/run/x/`, `/run/x` and a link
/// to it come out the same. Absolute, with links resolved where it exists
/// (one not made yet: its parts that exist, resolved), and no control character,
/// which no authorized_keys line can carry.
pub fn settle(p: PathBuf) -> Result<PathBuf, String> {
    if !p.is_absolute() {
        return Err(format!(
            "runtime directory {} is not an absolute path: give one that starts with /",
            p.display()
        ));
    }
    // Links resolved also above a part not made yet (`/var/run/pj` is
    // `/run/pj`): every check of the way there sees real directories.
    let p = crate::realpath::real_path(&p).unwrap_or_else(|| p.components().collect());
    if p.to_string_lossy().chars().any(char::is_control) {
        return Err(format!(
            "runtime directory {} has a control character, which an invite's forced command cannot carry: pick another",
            p.to_string_lossy().escape_debug()
        ));
    }
    Ok(p)
}

/// Do `a` and `b` name the same directory? Its device and inode where
/// both exist, else the same settled spelling.
pub fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => {
            let plain = |p: &Path| p.components().collect::<PathBuf>();
            plain(a) == plain(b)
        }
    }
}

/// The runtime directories the default would pick in other circumstances
/// (the config's, `$XDG_RUNTIME_DIR/pairjail`, the private /tmp one),
/// other than `chosen`: a share started before `setup`, or from another
/// login, lives in one of them.
pub fn other_defaults(chosen: &Path) -> Vec<PathBuf> {
    let uid = nix::unistd::Uid::effective().as_raw();
    let mut out = Vec::new();
    if let Ok(Some(c)) = crate::config::load() {
        out.push(c.runtime_dir);
    }
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        out.push(Path::new(&x).join("pairjail"));
    }
    out.push(PathBuf::from(format!("/run/user/{uid}/pairjail")));
    // The private one only if it passes the same check as when chosen.
    let private = private_tmp_path(uid);
    if check_private(&private, uid).is_ok() {
        out.push(private);
    }
    out.retain(|p| !same_dir(p, chosen) && p.is_dir());
    out.dedup();
    out
}

/// `$TMPDIR/pairjail-UID` (or `/tmp/…`), made 0700 if missing. One that
/// already exists must be a real directory of ours that nobody else can
/// enter: in a shared /tmp another user could have made it first, to
/// watch or impersonate our shares (tmate's CVE-2021-44512).
pub fn private_tmp_dir() -> Result<PathBuf, String> {
    let uid = nix::unistd::Uid::effective().as_raw();
    let dir = private_tmp_path(uid);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    check_private(&dir, uid)?;
    Ok(dir)
}

/// Where [`private_tmp_dir`] lives: `$TMPDIR` if absolute, else /tmp.
fn private_tmp_path(uid: u32) -> PathBuf {
    std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join(format!("pairjail-{uid}"))
}

/// `dir` is a directory (not a link) owned by `uid`, closed to others.
pub fn check_private(dir: &Path, uid: u32) -> Result<(), String> {
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let why = if m.file_type().is_symlink() || !m.is_dir() {
        Some("is not a directory".to_string())
    } else if m.uid() != uid {
        Some(format!("belongs to uid {}, not you (uid {uid})", m.uid()))
    } else if m.mode() & 0o077 != 0 {
        Some(format!("has mode {:o}, open to others", m.mode() & 0o777))
    } else {
        None
    };
    match why {
        Some(why) => Err(format!(
            "{} {why}; refusing to share through it (someone may have made it to watch your sessions): remove it, or set PAIRJAIL_RUNTIME_DIR to a directory only you can enter",
            dir.display()
        )),
        None => Ok(()),
    }
}

/// The `--runtime-dir DIR` a printed command needs to find the same
/// share again (empty when the default finds it).
pub fn flag(explicit: Option<&Path>) -> String {
    match explicit {
        Some(p) => format!(
            " --runtime-dir {}",
            shlex::try_quote(&p.to_string_lossy())
                .map_or_else(|_| p.display().to_string(), |q| q.into_owned())
        ),
        None => String::new(),
    }
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
        return Ok(());
    }
    // The name is quoted into logs: a client's hello may carry a megabyte.
    let shown: String = name.chars().take(40).collect();
    let cut = if shown.len() < name.len() { "…" } else { "" };
    Err(format!(
        "invalid {kind} name '{}{cut}': use 1-32 letters, digits, '-', '_' or '.', not starting with '-' or '.'",
        shown.escape_debug()
    ))
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

pub use crate::users::check_user;

#[derive(Debug, Clone)]
pub struct SessionPaths {
    pub dir: PathBuf,
    pub broker: PathBuf,
    pub control: PathBuf,
    /// The tmux socket, alone in its directory: a jailed session's server
    /// sees that directory and nothing else of the runtime directory.
    pub tmux: PathBuf,
    /// The directory above the socket's, which no jail sees: closed to
    /// others, it keeps them out even if a pair guest, inside, opens the
    /// socket's own directory and the server's access list.
    pub tmux_guard: PathBuf,
    /// The broker's log, beside the session directory (which the broker
    /// removes on the way out) so it outlives the run.
    pub log: PathBuf,
    /// The run's lock (see `run_lock`), beside it for the same reason.
    /// Session names have no '.', so no other file has these names.
    pub lock: PathBuf,
    /// Held by `start` from its checks until its broker is ready.
    pub start_lock: PathBuf,
}

impl SessionPaths {
    pub fn new(runtime: &Path, host: &str, session: &str) -> SessionPaths {
        let dir = runtime.join(host).join(session);
        SessionPaths {
            broker: dir.join("broker.sock"),
            control: dir.join("control.sock"),
            tmux: dir.join("tmux").join("server").join("tmux.sock"),
            tmux_guard: dir.join("tmux"),
            log: runtime.join(host).join(format!("{session}.log")),
            lock: runtime.join(host).join(format!("{session}.lock")),
            start_lock: runtime.join(host).join(format!("{session}.starting")),
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
    let dir = runtime.join(host);
    crate::mountinfo::refuse(&dir).map_err(|e| e.to_string())?;
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
    // A mount the table did not show (another mount namespace's): the
    // host's directory lives on the runtime directory's filesystem.
    let top = std::fs::metadata(runtime).map_err(|e| format!("{}: {e}", runtime.display()))?;
    if meta.dev() != top.dev() {
        return Err(crate::mountinfo::mounted(&dir, &dir).to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_directory_others_can_change_is_refused_to_guests() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir_in("/tmp").unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let open = d.path().join("open");
        let inside = open.join("run");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        // Open to all, and not sticky: anyone could rename `run` away.
        let e = check_guest_runtime(&inside, me).unwrap_err();
        assert!(
            e.starts_with(&format!("{} can be changed", open.display())),
            "{e}"
        );
        // Not made yet: made by the host later.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        check_guest_runtime(&inside.join("later"), me).unwrap();
        check_guest_runtime(&inside, me).unwrap();
        // Someone else's, to a host who is not root.
        if me == 0 {
            // Root's directories are the machine's own.
            check_guest_runtime(&inside, 4242).unwrap();
        } else {
            let e = check_guest_runtime(&inside, me + 1).unwrap_err();
            assert!(e.contains("neither root nor the host"), "{e}");
        }
    }

    #[test]
    fn a_refused_name_is_quoted_short() {
        let e = check_name("guest", &format!("{}\u{1b}", "a".repeat(1 << 20))).unwrap_err();
        assert!(e.len() < 200, "{} bytes", e.len());
        assert!(e.contains(&format!("'{}…'", "a".repeat(40))), "{e}");
        let e = check_name("guest", "-x").unwrap_err();
        assert!(e.contains("'-x'"), "{e}");
    }

    #[test]
    fn a_runtime_directory_has_one_spelling() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("run");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, d.path().join("link")).unwrap();
        let settled = settle(real.clone()).unwrap();
        for other in ["run/", "./run", "link", "link/.", "run/../run"] {
            let p = settle(d.path().join(other)).unwrap();
            assert_eq!(p, settled, "{other}");
            assert!(same_dir(&p, &real));
        }
        // Not made yet: tidied, and still the same as its other spellings.
        let later = settle(d.path().join("later/")).unwrap();
        assert_eq!(later, settled.parent().unwrap().join("later"));
        assert!(same_dir(&later, &d.path().join("./later")));
        assert!(!same_dir(&later, &real));
        assert!(
            settle(PathBuf::from("run"))
                .unwrap_err()
                .contains("absolute")
        );
        assert!(
            settle(PathBuf::from("/tmp/a\nb"))
                .unwrap_err()
                .contains("control")
        );
    }

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

    #[test]
    fn a_private_dir_must_be_ours_and_closed() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let me = nix::unistd::Uid::effective().as_raw();
        let p = d.path().join("rt");
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(check_private(&p, me).is_ok());
        assert!(check_private(&p, me + 1).is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(check_private(&p, me).unwrap_err().contains("mode 755"));
        let l = d.path().join("link");
        std::os::unix::fs::symlink(&p, &l).unwrap();
        assert!(check_private(&l, me).is_err());
    }
}
