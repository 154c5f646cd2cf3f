//! The workspace jail of a share: the session's tmux server, and so every
//! pane and everything tmux runs, inside a jail built from a profile
//! (`workspace` by default); every tmux client of such a session inside
//! the `session-client` jail, because a tmux client runs what its server
//! tells it (`detach-client -E`, `lock-client`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::profile::{self, Mode, SearchPath};

/// The shipped profile for the session's server.
pub const DEFAULT_PROFILE: &str = "workspace";
/// The profile of every tmux client of a jailed session.
pub const CLIENT_PROFILE: &str = "session-client";
/// Parameters `start` fills in; a session profile must declare them.
const PARAMS: [&str; 3] = ["workspace", "home", "socket_dir"];

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error(
        "--unconfined-session and --workspace exclude each other: choose a jailed session in DIR or none"
    )]
    Conflict,
    #[error("--workspace {0}: {1}")]
    Dir(PathBuf, String),
    #[error(
        "the workspace would be {0}, {1}; cd into a project directory or pass --workspace DIR (or --unconfined-session to share without a jail)"
    )]
    Unsuitable(PathBuf, String),
    #[error("--session-profile {0}: {1}")]
    Profile(String, String),
    #[error(
        "profiles are read from {0}, inside the workspace {1}: a guest could write a profile there that the session's next jail would be built from; move them out of the workspace (or out of $PAIRJAIL_PROFILE_PATH)"
    )]
    ProfilesInside(PathBuf, PathBuf),
    #[error("{0} {1} is {2}")]
    Exposed(&'static str, PathBuf, String),
    #[error(
        "cannot remember the workspace in {0}: {1} (pairjail keeps every jailed share's workspace there, to never trust a profile or guest book from one later)"
    )]
    Remember(PathBuf, std::io::Error),
    #[error(transparent)]
    Shared(#[from] crate::workspaces::WorkspacesError),
    #[error(
        "the runtime directory {0} is in what every jailed share shows its pair guests (your home, read-only): they run as your uid, and could connect to this share's tmux server and type into it; give --runtime-dir a directory outside your home, such as the default ($XDG_RUNTIME_DIR/pairjail)"
    )]
    SeenByJails(PathBuf),
    #[error(
        "the runtime directory {0} is inside {1}, the workspace of a jailed share, which that share's pair guests can reach as your uid: they could connect to this share's tmux server and type into it; give --runtime-dir a directory outside every shared workspace, such as the default ($XDG_RUNTIME_DIR/pairjail)"
    )]
    InSharedWorkspace(PathBuf, PathBuf),
    #[error(
        "the workspace {0} holds {2} Unix socket(s) in use ({1}), which pair guests (who run as your uid) could connect to: another share's tmux server, an ssh-agent, a database; stop what listens there (`ss -xlp | grep PATH` names it), or share another directory"
    )]
    SocketsInside(PathBuf, String, usize),
    #[error("{0}")]
    Sockets(#[from] crate::unix_sockets::UnixSocketsError),
    #[error(
        "the workspace {0} is where {2} link(s) of your home lead ({1}): your own shell and tools read them outside the jail, and pair guests could rewrite them there; share another directory, or replace those links with copies while you share"
    )]
    LinkedFromHome(PathBuf, String, usize),
    #[error(
        "--direct cannot be used with a jailed session: direct guests' tmux clients run as another user, whom the session's user namespace does not map; use the relay transport, or --unconfined-session"
    )]
    Direct,
}

impl WorkspaceError {
    /// Every one of these is the host's choice to fix (exit 2).
    pub fn is_invalid(&self) -> bool {
        true
    }
}

/// How a share's session is confined: what `start` decided, kept in the
/// session directory for `attach` and sent to the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Confinement {
    /// The session profile (name or file).
    pub profile: String,
    /// The writable directory, at the same path inside.
    pub workspace: PathBuf,
    /// The host's home, read-only inside, its listed secrets hidden.
    pub home: PathBuf,
    /// `none` (a network namespace of its own) or `host`.
    pub network: String,
}

/// What the host asked for on `start`.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub allow: Vec<Mode>,
    pub workspace: Option<PathBuf>,
    pub profile: Option<String>,
    pub unconfined: bool,
    pub direct: bool,
    /// Where `start` runs: the default workspace.
    pub cwd: PathBuf,
    pub home: PathBuf,
    pub host_uid: u32,
}

/// Decides the session's confinement. Jailed when the host named a
/// workspace, or when guests may type (pair, rogue) unless the host opted
/// out; mirror-only sessions stay as they are.
pub fn decide(r: &Request, search: &SearchPath) -> Result<Option<Confinement>, WorkspaceError> {
    if r.unconfined {
        if r.workspace.is_some() || r.profile.is_some() {
            return Err(WorkspaceError::Conflict);
        }
        return Ok(None);
    }
    let typing = r
        .allow
        .iter()
        .any(|m| matches!(m, Mode::Pair | Mode::Rogue));
    let dir = match &r.workspace {
        Some(d) => d.clone(),
        None if typing || r.profile.is_some() => r.cwd.clone(),
        None => return Ok(None),
    };
    if r.direct {
        return Err(WorkspaceError::Direct);
    }
    let workspace = check_dir(&dir, r.workspace.is_some(), &r.home, r.host_uid)?;
    check_search(search, &workspace)?;
    // The workspace as the host's programs may have spelled it when they
    // bound a socket there: as given, and the shell's logical $PWD.
    let mut spellings = vec![dir.components().collect::<PathBuf>()];
    if let Some(pwd) = std::env::var_os("PWD").map(PathBuf::from)
        && pwd.is_absolute()
        && pwd.canonicalize().is_ok_and(|real| real == r.cwd)
        && let Ok(rest) = workspace.strip_prefix(&r.cwd)
    {
        spellings.push(pwd.join(rest));
    }
    check_no_sockets(&workspace, &spellings)?;
    let name = r.profile.clone().unwrap_or_else(|| DEFAULT_PROFILE.into());
    let resolved = profile::resolve(&name, search)
        .map_err(|e| WorkspaceError::Profile(name.clone(), e.to_string()))?;
    // The files it came from, and where their `extends` were looked up
    // first, must be out of the guests' reach too.
    for dir in resolved.sources.iter().filter_map(|s| s.dir.as_deref()) {
        // A file named without a directory was read from the current one.
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let real = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        if !real.is_absolute() || real.starts_with(&workspace) {
            return Err(WorkspaceError::ProfilesInside(real, workspace));
        }
    }
    // Nor in the workspace of an earlier jailed share (a profile named by
    // its path is read as given, not looked up on the search path).
    let shared = crate::workspaces::shared_of_caller()?;
    for file in resolved.sources.iter().filter(|s| s.dir.is_some()) {
        let path = Path::new(&file.name);
        if let Some(w) = crate::workspaces::holding(&shared, path) {
            return Err(WorkspaceError::ProfilesInside(
                path.to_path_buf(),
                w.to_path_buf(),
            ));
        }
    }
    let missing: Vec<&str> = PARAMS
        .into_iter()
        .filter(|p| !resolved.profile.params.contains_key(*p))
        .collect();
    if !missing.is_empty() {
        return Err(WorkspaceError::Profile(
            name,
            format!(
                "a session profile must declare [params] {} (start from the shipped `workspace`: `pairjail profile show workspace`)",
                missing.join(", ")
            ),
        ));
    }
    // The share ends its jail by killing the jail's pid 1, which takes
    // every process of its pid namespace with it: without one, what a
    // guest started would outlive the share.
    if !resolved.profile.namespaces.pid {
        return Err(WorkspaceError::Profile(
            name,
            "a session profile must keep [namespaces] pid = true: the share ends everything its guests started by ending the jail's pid namespace".into(),
        ));
    }
    Ok(Some(Confinement {
        profile: name,
        workspace,
        home: r.home.clone(),
        network: if resolved.profile.namespaces.net {
            "none".into()
        } else {
            "host".into()
        },
    }))
}

/// What guests must neither change nor read (`what`: the audit log, the
/// recordings; the runtime directory, whose sockets a process of the
/// host's uid reaches through any mount) is not in the workspace, nor
/// anywhere the session profile binds into the jail unless its hide list
/// covers it. `harm`: what guests could do with it there (None: rewrite
/// it in the workspace, read it elsewhere).
pub fn check_private(
    c: &Confinement,
    search: &SearchPath,
    what: &'static str,
    path: &Path,
    harm: Option<&str>,
) -> Result<(), WorkspaceError> {
    let real = real_or_parent(path);
    // Also a path whose spelling goes through the workspace (a link
    // there that leads out today): what is opened later by that spelling
    // goes where a guest repoints the link (the audit log is opened again
    // for every batch of lines).
    if real.starts_with(&c.workspace) || crate::realpath::passes_into(path, &c.workspace) {
        return Err(WorkspaceError::Exposed(
            what,
            path.to_path_buf(),
            format!(
                "inside the workspace, where guests could {}; put it elsewhere",
                harm.unwrap_or("rewrite it")
            ),
        ));
    }
    if shown_in_jail(&c.profile, search, Some(&c.workspace), &c.home, &real)? {
        return Err(WorkspaceError::Exposed(
            what,
            path.to_path_buf(),
            format!(
                "seen in the jail (a bind shows it, and it is not on the session profile's hide list), where pair guests could {}; move it out of what the jail shows, or add its directory to the profile's hide list",
                harm.unwrap_or("read it")
            ),
        ));
    }
    Ok(())
}

/// Every share's sockets obey any process of the host's uid (its tmux
/// server checks nothing else), which is what every jailed session runs
/// as: a runtime directory that the `workspace` profile shows (the home,
/// read-only; a read-only mount does not stop a connect) would hand the
/// pair guests of any jailed share this share's session. Refused for every
/// share, jailed or not.
pub fn check_unseen_by_jails(
    search: &SearchPath,
    home: &Path,
    runtime: &Path,
) -> Result<(), WorkspaceError> {
    let real = real_or_parent(runtime);
    if shown_in_jail(DEFAULT_PROFILE, search, None, home, &real)? {
        return Err(WorkspaceError::SeenByJails(runtime.to_path_buf()));
    }
    // Nor inside the workspace of a jailed share, which its jail shows
    // (one shared before this start is known; one shared later finds this
    // share's sockets there as it starts, `check_no_sockets`).
    if let Some(w) = crate::workspaces::holding(&crate::workspaces::shared(home)?, &real) {
        return Err(WorkspaceError::InSharedWorkspace(
            runtime.to_path_buf(),
            w.to_path_buf(),
        ));
    }
    Ok(())
}

/// Does a jail of `profile` (with this workspace; none: the profile's
/// default, which shows nothing) show `real`, through a bind its hide list
/// does not cover?
fn shown_in_jail(
    profile_name: &str,
    search: &SearchPath,
    workspace: Option<&Path>,
    home: &Path,
    real: &Path,
) -> Result<bool, WorkspaceError> {
    let resolved = profile::resolve(profile_name, search)
        .map_err(|e| WorkspaceError::Profile(profile_name.to_string(), e.to_string()))?;
    // The jail's own params: the profile's defaults, then what start sets.
    let mut params = resolved.profile.params.clone();
    if let Some(w) = workspace {
        params.insert("workspace".into(), w.display().to_string());
    }
    params.insert("home".into(), home.display().to_string());
    // Where the jail shows it: through the last bind of a directory above
    // it (the last mount wins), at that bind's destination.
    // Every place a bind of a directory above it shows it in the jail
    // (two binds of one directory are two ways to read it).
    let shown: Vec<PathBuf> = resolved
        .profile
        .mounts
        .iter()
        .filter_map(|m| {
            let profile::Mount::Bind { src, dst, .. } = m else {
                return None;
            };
            let src = profile::expand(src, &params).ok()?;
            let dst = profile::expand(dst, &params).ok()?;
            let rest = real.strip_prefix(real_or_parent(Path::new(&src))).ok()?;
            Some(Path::new(&dst).join(rest))
        })
        .collect();
    let hidden = |at: &Path| {
        resolved.profile.hide.iter().any(|raw| {
            let Ok(pattern) = profile::expand(raw, &params) else {
                return false;
            };
            let parts: Vec<_> = Path::new(&pattern).components().collect();
            let mine: Vec<_> = at.components().collect();
            parts.len() <= mine.len()
                && parts.iter().zip(&mine).all(|(p, m)| {
                    glob::Pattern::new(&p.as_os_str().to_string_lossy())
                        .is_ok_and(|g| g.matches(&m.as_os_str().to_string_lossy()))
                })
        })
    };
    Ok(!shown.iter().all(|at| hidden(at)))
}

/// Adds a jailed share's `workspace` (a real path) to the list of those
/// pair guests could write (see `crate::workspaces`), once.
pub fn remember(home: &Path, workspace: &Path) -> Result<(), WorkspaceError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if crate::workspaces::shared(home)?
        .iter()
        .any(|w| w == workspace)
    {
        return Ok(());
    }
    let path = crate::workspaces::list_path(home);
    let fail = |e| WorkspaceError::Remember(path.clone(), e);
    if let Some(dir) = path.parent() {
        crate::files::dir_700(dir).map_err(fail)?;
    }
    let line = serde_json::to_string(workspace)
        .map_err(|e| fail(std::io::Error::other(e.to_string())))?
        + "\n";
    // One append of one line: the lines of two starts never mix.
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(fail)
}

/// `path` with links resolved, also where it is not made yet (as the
/// search path is judged); as given where that cannot be said.
fn real_or_parent(path: &Path) -> PathBuf {
    profile::real_path(path).unwrap_or_else(|| path.to_path_buf())
}

/// No socket in use inside the workspace: the jail shows it writable, and
/// a `connect` there reaches whatever listens, as the host's uid (a share
/// of the host's whose runtime directory is inside, an ssh-agent, a
/// database). Taken as the share starts; one bound there later is not
/// seen.
///
/// The table's paths are compared as bound with each way the workspace
/// is spelled (`spellings`: as given, the shell's `$PWD`; a home behind
/// a link), never looked up outside it: another user's socket may sit on
/// a filesystem of theirs that hangs every look (FUSE). What matches is
/// looked for beneath the workspace only, through no link and no `..`
/// (a guest of an earlier share could have planted one): a bound path
/// can hold a newline, and so fake a line of the table.
pub fn check_no_sockets(workspace: &Path, spellings: &[PathBuf]) -> Result<(), WorkspaceError> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    let bad = |e: std::io::Error| WorkspaceError::Dir(workspace.to_path_buf(), e.to_string());
    let dir = std::fs::File::open(workspace).map_err(bad)?;
    let socket_beneath = |rel: &Path| {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        openat2(&dir, rel, how)
            .ok()
            .and_then(|fd| nix::sys::stat::fstat(&fd).ok())
            .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
    };
    let mut inside: Vec<PathBuf> = crate::unix_sockets::bound()?
        .into_iter()
        .filter(|p| !p.components().any(|c| c == std::path::Component::ParentDir))
        .filter(|p| {
            std::iter::once(workspace)
                .chain(spellings.iter().map(PathBuf::as_path))
                .filter_map(|s| p.strip_prefix(s).ok())
                .any(|rel| !rel.as_os_str().is_empty() && socket_beneath(rel))
        })
        .collect();
    inside.sort();
    inside.dedup();
    if inside.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = inside
        .iter()
        .take(3)
        .map(|p| p.display().to_string())
        .collect();
    Err(WorkspaceError::SocketsInside(
        workspace.to_path_buf(),
        shown.join(", "),
        inside.len(),
    ))
}

/// No profile a jailed session's tmux clients are started in may come
/// from where the session can write.
pub fn check_search(search: &SearchPath, workspace: &Path) -> Result<(), WorkspaceError> {
    match search.inside(workspace) {
        Some(d) => Err(WorkspaceError::ProfilesInside(d, workspace.to_path_buf())),
        None => Ok(()),
    }
}

/// A workspace must be the host's own directory, and must not expose what
/// the jail hides: not `/`, not the home itself or a directory above it.
fn check_dir(dir: &Path, named: bool, home: &Path, uid: u32) -> Result<PathBuf, WorkspaceError> {
    let bad = |why: String| WorkspaceError::Dir(dir.to_path_buf(), why);
    let real = dir.canonicalize().map_err(|e| bad(e.to_string()))?;
    let meta = std::fs::metadata(&real).map_err(|e| bad(e.to_string()))?;
    if !meta.is_dir() {
        return Err(bad("not a directory".into()));
    }
    let unsuitable = |why: &str| {
        if named {
            bad(format!("{why}; pick a project directory"))
        } else {
            WorkspaceError::Unsuitable(real.clone(), why.to_string())
        }
    };
    let home = home.canonicalize().unwrap_or_else(|_| home.to_path_buf());
    if real == Path::new("/") {
        return Err(unsuitable("the root directory"));
    }
    if home.starts_with(&real) {
        return Err(unsuitable(
            "your home directory or one above it (it would expose what the jail hides)",
        ));
    }
    if meta.uid() != uid {
        return Err(unsuitable("a directory you do not own"));
    }
    // The jail binds the workspace by this path later: whoever can change
    // a directory above it could swap it for another (the host's home,
    // read-write) in between (a read-only hunt did, from a team's
    // group-writable directory). Only the host or root may, or a sticky
    // directory, where nobody moves another's entries.
    // The home and what is above it do not count (whoever can change
    // them has the account already), nor does a directory of the host's
    // whose group is the host's own (a umask of 002 makes `~/src` 0775 on
    // Ubuntu and Fedora; a review found every such workspace refused).
    let my_group = nix::unistd::Gid::effective().as_raw();
    if let Some(above) = real.ancestors().skip(1).find(|a| {
        !home.starts_with(a)
            && !std::fs::metadata(a).is_ok_and(|m| {
                let group_ok = m.uid() == uid && m.gid() == my_group;
                (m.uid() == uid || m.uid() == 0)
                    && (m.mode() & 0o002 == 0 && (m.mode() & 0o020 == 0 || group_ok)
                        || m.mode() & 0o1000 != 0)
            })
    }) {
        return Err(unsuitable(&format!(
            "{} above it can be changed by other users, who could swap it for another directory before the jail binds it; share one whose parent directories only you or root can change (chmod go-w {0})",
            above.display()
        )));
    }
    // A link inside a workspace shared before leads here: what a guest of
    // that share left (a link to `~/bin`, on PATH) would pick this
    // share's workspace (a read-only hunt). Its own subdirectories may be
    // shared again: guests could write there anyway.
    // Spelled as given (made absolute from where `start` runs) and as the
    // shell's $PWD has it: the working directory itself comes resolved, so
    // a link on its way shows only there (a review found the check blind
    // to `cd old/sub && pairjail start`).
    let remembered = crate::workspaces::shared(&home).unwrap_or_default();
    let mut spelled = vec![std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())];
    if let Some(pwd) = std::env::var_os("PWD").map(PathBuf::from)
        && pwd.is_absolute()
        && pwd.canonicalize().is_ok_and(|p| p == real)
    {
        spelled.push(pwd);
    }
    if let Some(w) = remembered.iter().find(|w| {
        !real.starts_with(w) && spelled.iter().any(|s| crate::realpath::passes_into(s, w))
    }) {
        return Err(unsuitable(&format!(
            "reached through a link inside {}, a workspace shared before, whose guests could have left that link",
            w.display()
        )));
    }
    // Pair guests write the workspace as the host; the host's own tools,
    // outside the jail, read what to run from there (a directory on PATH
    // inside a project, an activated `.venv/bin`, is allowed: see the
    // README, and pairjail never runs a program from one).
    let hidden = real
        .strip_prefix(&home)
        .ok()
        .and_then(|rest| rest.components().next())
        .is_some_and(|c| c.as_os_str().as_bytes().starts_with(b"."));
    if hidden {
        return Err(unsuitable(
            "inside a hidden directory of your home (~/.ssh, ~/.config, ~/.local, …), whose files your own tools read and run outside the jail",
        ));
    }
    // The same files, reached through links: a dotfiles repository.
    let links = super::home_links::leading_into(&home, &real);
    if !links.is_empty() {
        let shown: Vec<String> = links
            .iter()
            .take(3)
            .map(|l| match l.strip_prefix(&home) {
                Ok(rest) => format!("~/{}", rest.display()),
                Err(_) => l.display().to_string(),
            })
            .collect();
        return Err(WorkspaceError::LinkedFromHome(
            real,
            shown.join(", "),
            links.len(),
        ));
    }
    Ok(real)
}

/// `pairjail exec --profile P --param … --` before a program: how a
/// jailed process is started from outside.
fn exec_prefix(exe: &Path, profile: &str, params: &[(&str, &Path)]) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        exe.into(),
        "exec".into(),
        "--profile".into(),
        profile.into(),
    ];
    for (k, val) in params {
        let mut kv = OsString::from(format!("{k}="));
        kv.push(val.as_os_str());
        v.push("--param".into());
        v.push(kv);
    }
    v.push("--".into());
    v
}

impl Confinement {
    /// The tmux program for this share's server and clients: never one
    /// from a PATH directory inside the workspace, which guests write.
    pub fn tmux(&self) -> PathBuf {
        crate::exe::program_outside("tmux", &self.workspace)
    }

    /// The command line of the jailed tmux server (`-D`: it stays in the
    /// foreground, so the jail lives exactly as long as the server).
    pub fn server_argv(&self, exe: &Path, tmux: &Path, socket: &Path) -> Vec<OsString> {
        let socket_dir = socket.parent().unwrap_or(Path::new("/"));
        let mut v = exec_prefix(
            exe,
            &self.profile,
            &[
                ("workspace", &self.workspace),
                ("home", &self.home),
                ("socket_dir", socket_dir),
            ],
        );
        v.extend([tmux.into(), "-D".into(), "-S".into(), socket.into()]);
        v
    }
}

/// What runs before `tmux -S SOCKET …` for a client of a jailed session.
pub fn client_prefix(exe: &Path, socket: &Path) -> Vec<OsString> {
    let socket_dir = socket.parent().unwrap_or(Path::new("/"));
    exec_prefix(exe, CLIENT_PROFILE, &[("socket_dir", socket_dir)])
}

/// The file in the session directory (outside every jail) that records a
/// share's confinement.
pub fn record_path(session_dir: &Path) -> PathBuf {
    session_dir.join("confinement.json")
}

/// Reads a session's confinement; `None` for an unconfined session.
pub fn read_record(session_dir: &Path) -> Result<Option<Confinement>, String> {
    let path = record_path(session_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(allow: &[Mode], cwd: &Path) -> Request {
        Request {
            allow: allow.to_vec(),
            cwd: cwd.to_path_buf(),
            home: PathBuf::from("/nonexistent-home"),
            host_uid: nix::unistd::Uid::effective().as_raw(),
            ..Default::default()
        }
    }

    /// Found by a read-only attack hunt: another user who could write a
    /// directory above the workspace swapped it for a link to the host's
    /// home between `start`'s check and the jail's bind; and a link a
    /// guest of an earlier share left in its workspace picked the next
    /// share's workspace (`~/bin`, on PATH).
    #[test]
    fn a_workspace_others_could_swap_or_an_old_guest_picked_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let s = SearchPath::from_env();
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let team = root.join("team");
        std::fs::create_dir_all(team.join("app")).unwrap();
        std::fs::set_permissions(&team, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = decide(&request(&[Mode::Pair], &team.join("app")), &s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("can be changed by other users"), "{e}");
        // The caller's own group (a umask of 002): fine.
        std::fs::set_permissions(&team, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(decide(&request(&[Mode::Pair], &team.join("app")), &s).is_ok());
        // Sticky, like /tmp: nobody moves another's entries.
        std::fs::set_permissions(&team, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(decide(&request(&[Mode::Pair], &team.join("app")), &s).is_ok());
        // A link inside a workspace shared before, leading out of it.
        let home = root.join("home");
        let (old, bin) = (root.join("old"), home.join("bin"));
        std::fs::create_dir_all(&old).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(old.join("inner")).unwrap();
        std::os::unix::fs::symlink(&bin, old.join("sub")).unwrap();
        let list = crate::workspaces::list_path(&home);
        std::fs::create_dir_all(list.parent().unwrap()).unwrap();
        std::fs::write(&list, format!("{}\n", serde_json::to_string(&old).unwrap())).unwrap();
        let mut r = request(&[Mode::Pair], &old.join("sub"));
        r.home = home.clone();
        let e = decide(&r, &s).unwrap_err().to_string();
        assert!(e.contains("a workspace shared before"), "{e}");
        // Its own subdirectory, and the directory itself: fine.
        r.cwd = old.join("inner");
        assert!(decide(&r, &s).is_ok());
        r.cwd = bin.clone();
        assert!(decide(&r, &s).is_ok());
    }

    #[test]
    fn pair_and_rogue_are_jailed_by_default_mirror_is_not() {
        let d = tempfile::tempdir().unwrap();
        let s = SearchPath::from_env();
        for modes in [&[Mode::Mirror, Mode::Pair][..], &[Mode::Rogue]] {
            let c = decide(&request(modes, d.path()), &s).unwrap().unwrap();
            assert_eq!(c.workspace, d.path().canonicalize().unwrap());
            assert_eq!(c.profile, "workspace");
            assert_eq!(c.network, "none");
        }
        assert_eq!(
            decide(&request(&[Mode::Mirror], d.path()), &s).unwrap(),
            None
        );
        let mut r = request(&[Mode::Pair], d.path());
        r.unconfined = true;
        assert_eq!(decide(&r, &s).unwrap(), None);
        r.workspace = Some(d.path().into());
        assert!(matches!(decide(&r, &s), Err(WorkspaceError::Conflict)));
    }

    /// Found by a read-only attack hunt: `--audit-log ~/ws/al/audit.jsonl`
    /// with `ws/al` a link out of the workspace passed, and a guest who
    /// replaced the link had the broker write the log into the workspace.
    #[test]
    fn a_private_file_reached_through_the_workspace_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path().join("ws");
        let state = d.path().join("state");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        std::os::unix::fs::symlink(&state, ws.join("al")).unwrap();
        let c = Confinement {
            profile: "workspace".into(),
            workspace: ws.canonicalize().unwrap(),
            home: PathBuf::from("/nonexistent-home"),
            network: "none".into(),
        };
        let s = SearchPath::from_env();
        let e = check_private(&c, &s, "the audit log", &ws.join("al/audit.jsonl"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("inside the workspace"), "{e}");
        check_private(&c, &s, "the audit log", &state.join("audit.jsonl"), None).unwrap();
    }

    #[test]
    fn root_home_and_foreign_directories_are_refused() {
        let s = SearchPath::from_env();
        let d = tempfile::tempdir().unwrap();
        let e = decide(&request(&[Mode::Pair], Path::new("/")), &s).unwrap_err();
        assert!(e.to_string().contains("the root directory"), "{e}");
        let mut r = request(&[Mode::Pair], d.path());
        r.home = d.path().join("me");
        std::fs::create_dir(&r.home).unwrap();
        let e = decide(&r, &s).unwrap_err();
        assert!(e.to_string().contains("home directory or one above"), "{e}");
        let mut r = request(&[Mode::Pair], d.path());
        r.host_uid += 1;
        let e = decide(&r, &s).unwrap_err();
        assert!(e.to_string().contains("do not own"), "{e}");
        let mut r = request(&[Mode::Pair], d.path());
        r.direct = true;
        assert!(matches!(decide(&r, &s), Err(WorkspaceError::Direct)));
        let mut r = request(&[Mode::Pair], d.path());
        r.profile = Some("guest-relay".into());
        let e = decide(&r, &s).unwrap_err().to_string();
        assert!(
            e.contains("must declare [params] workspace, home, socket_dir"),
            "{e}"
        );
    }
}
