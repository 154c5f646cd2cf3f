//! The one-time root part of pair-user mode as a plan: the files it
//! writes and the commands it runs, in order, each shown before it is
//! done (`--dry-run` shows them and does nothing). Then sshd's effective
//! configuration is checked; if it does not hold, the drop-in goes again.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::broker::paths;
use crate::config::{SystemConfig, Written};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Invalid(String),
    #[error("setup needs root (or use --dry-run to see what it would write)")]
    NotRoot,
    #[error("{0}")]
    Unsafe(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("{0}")]
    Sshd(String),
    #[error(transparent)]
    Exe(#[from] crate::exe::ExeError),
}

impl SetupError {
    pub fn is_invalid(&self) -> bool {
        matches!(self, SetupError::Invalid(_) | SetupError::NotRoot)
    }
}

/// What setup is asked for (the command's flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the machine's config goes (`/etc/pairjail/config.toml`).
    pub config: PathBuf,
    /// Users who may host (empty, with no group: every local user).
    pub hosts: Vec<String>,
    pub host_group: Option<String>,
    pub public_host: Option<String>,
    pub pair_user: String,
    pub runtime_dir: PathBuf,
    pub sshd_config_dir: PathBuf,
    pub sshd_config: PathBuf,
    pub tmpfiles_dir: PathBuf,
    pub shell: PathBuf,
    pub keys_command_user: String,
}

/// One thing setup does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A symlink `path` → `target`, placed atomically.
    Link { path: PathBuf, target: PathBuf },
    /// A whole file, placed atomically.
    Write {
        path: PathBuf,
        text: String,
        mode: u32,
    },
    /// A system command (useradd, usermod, chown, …).
    Run { argv: Vec<String> },
}

/// sshd's name for the key types it accepts: `PubkeyAcceptedAlgorithms`
/// since OpenSSH 8.5, `PubkeyAcceptedKeyTypes` before (an older sshd
/// refuses the new name). From `sshd -V`; the new name if it says nothing.
fn accepted_keys_keyword(version: &str) -> &'static str {
    if older_than(version, (8, 5)) {
        "PubkeyAcceptedKeyTypes"
    } else {
        "PubkeyAcceptedAlgorithms"
    }
}

/// Does `sshd -V`'s text name a version before `than`? (No: it says none.)
pub fn older_than(version: &str, than: (u32, u32)) -> bool {
    version
        .split("OpenSSH_")
        .nth(1)
        .and_then(|v| {
            let mut parts = v.split(|c: char| !c.is_ascii_digit());
            Some((
                parts.next()?.parse::<u32>().ok()?,
                parts.next()?.parse::<u32>().ok()?,
            ))
        })
        .is_some_and(|v| v < than)
}

/// A connection that never opens a session (`ssh -N`) never runs the
/// forced command, so neither `kick` nor `stop` ends it (a read-only
/// hunt held ten past both): sshd ends it itself since OpenSSH 9.2.
fn unused_timeout(version: &str) -> &'static str {
    if older_than(version, (9, 2)) {
        ""
    } else {
        "\tUnusedConnectionTimeout 60\n"
    }
}

fn sshd_version() -> String {
    Command::new(crate::exe::program("sshd"))
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default()
}

fn sshd_conf(a: &Options, bin: &Path, keys_keyword: &str, unused: &str) -> String {
    format!(
        "# Written by `pairjail setup`. Guests log in as {user} with keys that\n\
         # `pairjail authorized-keys` serves only while their session is live.\n\
         Match User {user}\n\
         \t# Only the keys below, which carry the forced command: no\n\
         \t# certificate (its own command), host-based or GSSAPI login.\n\
         \tAuthenticationMethods publickey\n\
         \t{keys_keyword} -*-cert-v01@openssh.com\n\
         \tHostbasedAuthentication no\n\
         \tAuthorizedKeysFile none\n\
         \tAuthorizedKeysCommand {bin} authorized-keys --config {conf} %u %k %t\n\
         \tAuthorizedKeysCommandUser {akc}\n\
         \tPasswordAuthentication no\n\
         \tKbdInteractiveAuthentication no\n\
         \tDisableForwarding yes\n\
         \t# Not covered by DisableForwarding: `ssh -w` tunnels.\n\
         \tPermitTunnel no\n\
         \tPermitTTY yes\n\
         \tPermitUserRC no\n{unused}",
        user = a.pair_user,
        bin = bin.display(),
        conf = a.config.display(),
        akc = a.keys_command_user,
    )
}

/// The comment `setup` gives the guest user, so a later `setup` knows the
/// account is its own.
pub const GECOS: &str = "pairjail guests";

/// May `user` become the guests' account? Not root, not a system account
/// someone else made, not an account a person logs in to (a real shell or
/// a password).
fn check_pair_user(user: &str, shell: &Path) -> Result<(), String> {
    let Some(u) = crate::users::by_name(user) else {
        return Ok(());
    };
    let refuse = |why: String| {
        Err(format!(
            "refusing --pair-user {user}: {why}; pick a new name (setup creates the account)"
        ))
    };
    if u.uid == 0 {
        return refuse("it is root".into());
    }
    // Ours: made by setup (the comment), or an earlier setup's shell.
    let ours = u.gecos == GECOS
        || u.shell.file_name().and_then(|n| n.to_str()) == Some(crate::guest::pair_shell::NAME);
    if u.uid < 1000 && !ours {
        return refuse(format!(
            "uid {} is a system account pairjail did not create",
            u.uid
        ));
    }
    let no_login = [
        "/usr/sbin/nologin",
        "/sbin/nologin",
        "/bin/false",
        "/usr/bin/false",
    ];
    if !ours && u.shell != shell && !no_login.iter().any(|n| u.shell == Path::new(n)) {
        return refuse(format!("its login shell is {}", u.shell.display()));
    }
    match crate::users::password_field(user) {
        Some(p) if !(p.starts_with('!') || p.starts_with('*')) => {
            refuse("it has a password".into())
        }
        _ => Ok(()),
    }
}

/// Root makes the runtime directory 3777 with `mkdir`, `chown` and `chmod`,
/// which follow symlinks: an existing one must be root's own real
/// directory, and every directory above it one only root can change (or a
/// sticky one, where nobody can replace root's entries), or another user
/// could aim root at /etc. A missing one is no entry of root's yet: in a sticky
/// directory (/tmp) anyone could put a link there between this check and
/// the chmod, so its parent must be one only root can write.
/// No link and no `..` on the way at all: a rule that let root's own
/// links through missed the links their targets pass through (a review
/// aimed `--undo` at another user's directory that way).
fn check_runtime_place(dir: &Path) -> Result<(), String> {
    let exists = match std::fs::symlink_metadata(dir) {
        Ok(m) if !m.is_dir() || m.uid() != 0 => {
            return Err(format!(
                "--runtime-dir {}: it exists and is not a directory of root's (a symlink, or someone else's); remove it or pick another",
                dir.display()
            ));
        }
        Ok(_) => true,
        Err(_) => false,
    };
    // The path as written is what root runs mkdir, chown and chmod on and
    // what the config keeps for `--undo` to remove: a link on the way, in
    // a directory someone else can change, could be aimed at /etc between
    // this check and those (a read-only attack hunt did, and had `--undo`
    // remove another user's tree). Only the real path is taken.
    match crate::realpath::real_path(dir) {
        Some(real) if real == dir => {}
        Some(real) => {
            return Err(format!(
                "--runtime-dir {}: a link or `..` on the way leads to {} today; give that path (whoever can change the link could aim root's chmod elsewhere)",
                dir.display(),
                real.display()
            ));
        }
        None => {
            return Err(format!(
                "--runtime-dir {}: give an absolute path without `..`",
                dir.display()
            ));
        }
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    // Every directory above, not only the parent: whoever can change any
    // of them can move root's directory below away and put a link there.
    // Those of the real path: a link on the way leads through directories
    // the path as written does not name.
    let real = std::fs::canonicalize(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    for above in real.ancestors() {
        let m = std::fs::metadata(above).map_err(|e| format!("{}: {e}", above.display()))?;
        if !crate::files::only_root_changes(&m) {
            return Err(format!(
                "--runtime-dir {}: {} above it can be changed by users other than root; pick a place under /run",
                dir.display(),
                above.display()
            ));
        }
    }
    let m = std::fs::metadata(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    if !exists && m.mode() & 0o022 != 0 {
        return Err(format!(
            "--runtime-dir {}: it does not exist, and its parent {} is open to other users, who could put a link there before root makes it 3777; pick a place under /run (or make it yourself first: mkdir -m 3777 {})",
            dir.display(),
            parent.display(),
            dir.display()
        ));
    }
    Ok(())
}

/// What setup writes (the pair user's login shell, the config sshd's keys
/// command reads, sshd's drop-in, the tmpfiles line) goes in directories
/// only root can change, all the way up: a team's group-writable
/// `/opt/tools` for `--shell` let any member swap the pair user's shell
/// and run as the pair user, unjailed, at every guest's login (a
/// read-only attack hunt). Directories not made yet are made by root.
fn check_root_only(flag: &str, dir: &Path) -> Result<(), String> {
    let real = crate::realpath::real_path(dir).unwrap_or_else(|| dir.to_path_buf());
    for (i, above) in real.ancestors().enumerate() {
        let m = match std::fs::metadata(above) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{flag}: {}: {e}", above.display())),
        };
        // The directory itself: not even a sticky one, where someone
        // else could make the name before root does.
        let root_only = if i == 0 {
            m.uid() == 0 && m.mode() & 0o022 == 0
        } else {
            crate::files::only_root_changes(&m)
        };
        if !root_only {
            return Err(format!(
                "{flag} {}: {} can be changed by users other than root, who could swap what setup puts there; pick a place only root can change",
                dir.display(),
                above.display()
            ));
        }
    }
    Ok(())
}

/// A path that goes into a configuration line as it is: printable, no
/// white space, no quote, `%`, `#` or backslash.
fn check_plain_path(flag: &str, path: &Path) -> Result<(), String> {
    let text = path.to_str().unwrap_or("\u{fffd}");
    match text
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "\"'%\\#\u{fffd}".contains(*c))
    {
        None => Ok(()),
        Some(c) => Err(format!(
            "{flag} {}: {c:?} cannot go into sshd's configuration; pick a path without it",
            path.display().to_string().escape_debug()
        )),
    }
}

/// sshd refuses an AuthorizedKeysCommand unless it and every directory
/// above it are owned by root and not writable by group or others.
fn check_safe_path(bin: &Path) -> Result<(), String> {
    let mut p = Some(bin);
    while let Some(cur) = p {
        let m = std::fs::metadata(cur).map_err(|e| format!("{}: {e}", cur.display()))?;
        if m.uid() != 0 || m.mode() & 0o022 != 0 {
            return Err(format!(
                "sshd will not run {} as AuthorizedKeysCommand: {} must be owned by root and not writable by group or others (install pairjail to /usr/local/bin first)",
                bin.display(),
                cur.display()
            ));
        }
        p = cur.parent();
    }
    Ok(())
}

fn run_argv(argv: &[&str]) -> Step {
    Step::Run {
        argv: argv.iter().map(|s| s.to_string()).collect(),
    }
}

/// A plan: the steps, the binary the configuration names, and what the
/// steps create that was not there before (for `--undo`, and to roll back
/// a setup that fails half-way).
#[derive(Debug, Clone)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub bin: PathBuf,
    pub creates: Written,
}

/// Checks the request and returns the plan.
pub fn plan(a: &Options, dry_run: bool) -> Result<Plan, SetupError> {
    use SetupError::Invalid;
    paths::check_user(&a.pair_user).map_err(Invalid)?;
    paths::check_user(&a.keys_command_user).map_err(Invalid)?;
    if a.shell.file_name().and_then(|n| n.to_str()) != Some(crate::guest::pair_shell::NAME) {
        return Err(Invalid(format!(
            "--shell {}: the file name must be {} (pairjail acts as the shell by that name)",
            a.shell.display(),
            crate::guest::pair_shell::NAME
        )));
    }
    check_pair_user(&a.pair_user, &a.shell).map_err(Invalid)?;
    for h in &a.hosts {
        paths::check_user(h).map_err(Invalid)?;
        if crate::users::by_name(h).is_none() {
            return Err(Invalid(format!("--host {h}: no such user")));
        }
    }
    if let Some(g) = &a.host_group {
        paths::check_user(g)
            .map_err(|_| Invalid(format!("--host-group {g}: invalid group name")))?;
    }
    if let Some(h) = &a.public_host {
        crate::config::check_host_name(h).map_err(Invalid)?;
    }
    if !a.runtime_dir.is_absolute() || !a.config.is_absolute() {
        return Err(Invalid(
            "--runtime-dir and --config must be absolute paths".into(),
        ));
    }
    // These go into sshd's configuration and a tmpfiles.d line, which
    // split at white space and expand `%`: a value with a newline (from
    // $PAIRJAIL_CONFIG, which `sudo -E` keeps) wrote its own directive
    // into the Match block (a read-only attack hunt).
    for (flag, path) in [
        ("--config", &a.config),
        ("--runtime-dir", &a.runtime_dir),
        ("--shell", &a.shell),
    ] {
        check_plain_path(flag, path).map_err(Invalid)?;
    }
    if !dry_run {
        check_runtime_place(&a.runtime_dir).map_err(SetupError::Unsafe)?;
        for (flag, place) in [
            ("--shell", a.shell.parent()),
            ("--config", a.config.parent()),
            ("--sshd-config-dir", Some(a.sshd_config_dir.as_path())),
            ("--tmpfiles-dir", Some(a.tmpfiles_dir.as_path())),
        ] {
            check_root_only(flag, place.unwrap_or(Path::new("/"))).map_err(SetupError::Unsafe)?;
        }
    }
    if a.keys_command_user == a.pair_user {
        return Err(Invalid(
            "--keys-command-user must differ from --pair-user: guests must not read invites".into(),
        ));
    }
    if !dry_run && !nix::unistd::Uid::effective().is_root() {
        return Err(SetupError::NotRoot);
    }
    let bin = crate::exe::own()?;
    if !dry_run {
        check_safe_path(&bin).map_err(SetupError::Unsafe)?;
    }
    let rt = a.runtime_dir.display().to_string();
    let shell = a.shell.display().to_string();
    let mut creates = Written::default();
    let sshd_dropin = a.sshd_config_dir.join("pairjail.conf");
    let tmpfiles = a.tmpfiles_dir.join("pairjail.conf");
    // Only what is not there yet: a failed re-run must not remove a
    // working setup's files (the config remembers those from its run).
    for f in [&a.shell, &sshd_dropin, &tmpfiles, &a.config] {
        if std::fs::symlink_metadata(f).is_err() {
            creates.files.push(f.clone());
        }
        new_parents(f, &mut creates.dirs);
    }
    if !a.runtime_dir.exists() {
        creates.dirs.push(a.runtime_dir.clone());
    }
    let mut steps = vec![
        Step::Link {
            path: a.shell.clone(),
            target: bin.clone(),
        },
        Step::Write {
            path: sshd_dropin,
            text: {
                let version = sshd_version();
                sshd_conf(
                    a,
                    &bin,
                    accepted_keys_keyword(&version),
                    unused_timeout(&version),
                )
            },
            mode: 0o644,
        },
        Step::Write {
            path: tmpfiles,
            text: format!("d {rt} 3777 root {} -\n", a.keys_command_user),
            mode: 0o644,
        },
    ];
    // Home `/`: sshd changes into it at each login, and a missing home
    // greets every guest with "Could not chdir to home directory".
    if crate::users::by_name(&a.pair_user).is_none() {
        creates.users.push(a.pair_user.clone());
        steps.push(run_argv(&[
            "useradd",
            "--system",
            "--user-group",
            "--home-dir",
            GUEST_HOME,
            "--no-create-home",
            "--comment",
            GECOS,
            "--shell",
            &shell,
            &a.pair_user,
        ]));
    } else {
        steps.push(run_argv(&[
            "usermod",
            "--shell",
            &shell,
            "--home",
            GUEST_HOME,
            &a.pair_user,
        ]));
    }
    // No password at all, but not "locked" ('!'), which sshd treats as
    // "refuse every login" without PAM.
    steps.push(run_argv(&["usermod", "-p", "*", &a.pair_user]));
    // A user created here gets a group of its own name (--user-group).
    let keys_group = match crate::users::by_name(&a.keys_command_user) {
        Some(u) => u.gid.to_string(),
        None => {
            creates.users.push(a.keys_command_user.clone());
            steps.push(run_argv(&[
                "useradd",
                "--system",
                "--user-group",
                "--comment",
                "pairjail authorized-keys",
                "--home-dir",
                "/nonexistent",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                &a.keys_command_user,
            ]));
            a.keys_command_user.clone()
        }
    };
    // Sticky: nobody removes another host's directory. Setgid: every host
    // directory and invites file made inside gets the keys user's group,
    // so invites are readable by the host and that user only (0640).
    steps.push(run_argv(&["mkdir", "-p", &rt]));
    steps.push(run_argv(&["chown", &format!("root:{keys_group}"), &rt]));
    steps.push(run_argv(&["chmod", "3777", &rt]));
    Ok(Plan {
        steps,
        bin,
        creates,
    })
}

/// The guest user's home: a directory that exists, that only root can
/// write, and that holds nothing.
pub const GUEST_HOME: &str = "/";

/// The missing directories above `file`, outermost last (removed in that
/// order by `--undo`, each only if empty).
fn new_parents(file: &Path, out: &mut Vec<PathBuf>) {
    let mut missing = Vec::new();
    let mut p = file.parent();
    while let Some(d) = p {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        p = d.parent();
    }
    for d in missing {
        if !out.contains(&d) {
            out.push(d);
        }
    }
}

/// The config setup writes last, once sshd accepted everything: it is what
/// turns pair-user mode on. `earlier` is a previous setup's record, kept
/// so `--undo` still removes what that run created.
pub fn config_for(
    a: &Options,
    port: Option<u16>,
    creates: &Written,
    earlier: Option<&Written>,
) -> SystemConfig {
    let mut written = earlier.cloned().unwrap_or_default();
    for f in &creates.files {
        if !written.files.contains(f) {
            written.files.push(f.clone());
        }
    }
    for d in &creates.dirs {
        if !written.dirs.contains(d) {
            written.dirs.push(d.clone());
        }
    }
    for u in &creates.users {
        if !written.users.contains(u) {
            written.users.push(u.clone());
        }
    }
    SystemConfig {
        pair_user: a.pair_user.clone(),
        runtime_dir: a.runtime_dir.clone(),
        hosts: a.hosts.clone(),
        host_group: a.host_group.clone(),
        public_host: a.public_host.clone(),
        port,
        written,
    }
}

/// Writes the config (0644, root's).
pub fn write_config(path: &Path, c: &SystemConfig) -> Result<(), SetupError> {
    apply(&Step::Write {
        path: path.to_path_buf(),
        text: c.render(),
        mode: 0o644,
    })
}

/// Removes what this run created after a step failed, newest first, so a
/// failed setup leaves the machine as it was (files it replaced stay
/// replaced: their old content is gone with the write).
pub fn roll_back(creates: &Written, config: &Path, runtime: &Path) -> Vec<String> {
    let created_config = creates.files.iter().any(|f| f == config);
    undo_steps(creates, true, config, runtime)
        .iter()
        .filter(|s| created_config || **s != Undo::RemoveFile(config.to_path_buf()))
        .filter_map(|s| apply_undo(s).err().map(|e| e.to_string()))
        .collect()
}

/// One thing `--undo` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    RemoveFile(PathBuf),
    /// Only if empty.
    RemoveDir(PathBuf),
    /// The runtime directory, with what hosts left in it, unless a share runs.
    RemoveRuntime(PathBuf),
    RemoveUser(String),
    /// A user kept (no `--remove-user`): its shell, which undo removes,
    /// becomes nologin so the account cannot be logged in to.
    NoLogin(String),
}

/// The undo of what `written` lists: files, then users, then the runtime
/// directory, then the config (the record of all this, so a failed undo
/// can run again), then directories (innermost first).
pub fn undo_steps(
    written: &Written,
    remove_users: bool,
    config: &Path,
    runtime: &Path,
) -> Vec<Undo> {
    let mut out: Vec<Undo> = written
        .files
        .iter()
        .rev()
        .filter(|f| f.as_path() != config)
        .cloned()
        .map(Undo::RemoveFile)
        .collect();
    for u in written.users.iter().rev() {
        out.push(if remove_users {
            Undo::RemoveUser(u.clone())
        } else {
            Undo::NoLogin(u.clone())
        });
    }
    // The runtime directory before the record: what users left in it can
    // make its removal fail, and the record lets undo run again.
    let (runtimes, mut dirs): (Vec<PathBuf>, Vec<PathBuf>) =
        written.dirs.iter().cloned().partition(|d| d == runtime);
    out.extend(runtimes.into_iter().map(Undo::RemoveRuntime));
    out.push(Undo::RemoveFile(config.to_path_buf()));
    // Deepest first: a parent is removed after its children.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    out.extend(dirs.into_iter().map(Undo::RemoveDir));
    out
}

/// The runtime directory holds what hosts left (invites, logs); once no
/// share runs, none of it means anything without setup.
fn remove_runtime(dir: &Path) -> Result<(), SetupError> {
    // A config written before setup took only real paths may name one
    // through a link, which someone may have aimed elsewhere since; and
    // every directory above must be one only root can change, or someone
    // could swap a part of the way between this check and the removal.
    // Already gone: nothing to check or remove (the check would refuse a
    // missing one in a sticky directory, which is for making it).
    if std::fs::symlink_metadata(dir).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        return Ok(());
    }
    if let Err(why) = check_runtime_place(dir) {
        return Err(SetupError::Unsafe(format!(
            "the runtime directory {} is not one root alone controls now ({why}); remove it yourself once you have checked where it leads, then run --undo again",
            dir.display()
        )));
    }
    no_share_running(dir)?;
    // Any local user may have nested directories there past the
    // descriptors `remove_dir_all` needs, one per level.
    crate::files::remove_tree(dir).or_else(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Ok(())
        } else {
            Err(SetupError::Write {
                path: dir.to_path_buf(),
                source: e,
            })
        }
    })
}

/// A running share stops `--undo` before it changes anything: its guests
/// would lose their way in mid-session. (Checked again when the runtime
/// directory goes.)
pub fn no_share_running(dir: &Path) -> Result<(), SetupError> {
    let Ok(hosts) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let Ok(top) = nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) else {
        return Ok(());
    };
    for host in hosts.flatten() {
        // Only a host's own directory, never a link (any user may put one
        // in a shared runtime directory), nor another mount (a local
        // user's FUSE mount there held root's undo for good; a read-only
        // hunt, by reading), opened once and read through that
        // descriptor: a swap after the check leads nowhere else.
        let flags = nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY;
        let Ok(fd) = crate::files::open_beneath(top.as_fd(), Path::new(&host.file_name()), flags)
        else {
            continue;
        };
        let Ok(owner) = nix::sys::stat::fstat(&fd).map(|m| m.st_uid) else {
            continue;
        };
        // Listed and read through the descriptor (its /proc/self/fd link
        // is the directory opened, not a path looked up again).
        let through = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        let Ok(listing) = std::fs::read_dir(&through) else {
            continue;
        };
        let names: Vec<std::ffi::OsString> = listing.flatten().map(|e| e.file_name()).collect();
        let dir_fd = fd.as_fd();
        for name in names {
            let path = Path::new(&name);
            // A live pid file, or a run lock held: a broker whose pid file
            // is gone may still be ending (removing its invites and files),
            // and a `start` holds `.starting` before its broker runs.
            let session = match path.extension().and_then(|e| e.to_str()) {
                // Session names have no '.': `.invites.lock` is not a run's.
                Some("lock" | "starting")
                    if path
                        .file_stem()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| crate::broker::paths::check_session(n).is_ok())
                        && crate::broker::run_lock::held_in(dir_fd, &name, owner) =>
                {
                    path.file_stem()
                }
                None if crate::broker::paths::check_session(&name.to_string_lossy()).is_ok()
                    && crate::broker::liveness::live_run(&through.join(&name), owner).is_some() =>
                {
                    Some(std::ffi::OsStr::new(&name))
                }
                _ => None,
            };
            if let Some(session) = session {
                return Err(SetupError::Invalid(format!(
                    "{} is sharing session {} in {}; it must stop first (`pairjail stop --session {1}` as that user), then run this again; nothing was changed",
                    host.file_name().to_string_lossy(),
                    session.to_string_lossy(),
                    dir.display()
                )));
            }
        }
    }
    Ok(())
}

pub fn apply_undo(step: &Undo) -> Result<(), SetupError> {
    let gone = |path: &Path, r: std::io::Result<()>| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(SetupError::Write {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    };
    match step {
        Undo::RemoveFile(p) => gone(p, std::fs::remove_file(p)),
        Undo::RemoveDir(p) => match std::fs::remove_dir(p) {
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                Err(SetupError::Invalid(format!(
                    "left {}: it is not empty (a host's shares or invites are still there; `pairjail stop` them, then run --undo again)",
                    p.display()
                )))
            }
            r => gone(p, r),
        },
        Undo::RemoveRuntime(p) => remove_runtime(p),
        Undo::RemoveUser(u) if crate::users::by_name(u).is_some() => {
            run_cmd(&["userdel", u.as_str()]).map(|_| ())
        }
        Undo::RemoveUser(_) => Ok(()),
        Undo::NoLogin(u) if crate::users::by_name(u).is_some() => {
            run_cmd(&["usermod", "--shell", "/usr/sbin/nologin", u.as_str()]).map(|_| ())
        }
        Undo::NoLogin(_) => Ok(()),
    }
}

/// Carries out one step.
pub fn apply(step: &Step) -> Result<(), SetupError> {
    match step {
        Step::Link { path, target } => place(path, |tmp| {
            let _ = std::fs::remove_file(tmp);
            std::os::unix::fs::symlink(target, tmp)
        }),
        Step::Write { path, text, mode } => {
            create_parent(path)?;
            crate::files::write_atomic(path, text.as_bytes(), *mode).map_err(|source| {
                SetupError::Write {
                    path: path.clone(),
                    source,
                }
            })
        }
        Step::Run { argv } => run_cmd(argv).map(|_| ()),
    }
}

fn create_parent(path: &Path) -> Result<(), SetupError> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|source| SetupError::Write {
            path: d.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// A symlink cannot be written through a temp file's contents: it is made
/// beside the target and renamed over it.
fn place(path: &Path, make: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<(), SetupError> {
    create_parent(path)?;
    let tmp = path.with_extension("pairjail-tmp");
    make(&tmp)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            SetupError::Write {
                path: path.to_path_buf(),
                source,
            }
        })
}

fn run_cmd(argv: &[impl AsRef<str>]) -> Result<String, SetupError> {
    let argv: Vec<&str> = argv.iter().map(AsRef::as_ref).collect();
    let out = Command::new(crate::exe::program(argv[0]))
        .args(&argv[1..])
        .output()
        .map_err(|source| SetupError::Spawn {
            program: argv[0].to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(SetupError::Command {
            command: argv.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Asks sshd whether the configuration parses and what the pair user's
/// effective settings are; unless all of pairjail's hold, the drop-in is
/// removed again so sshd stays as it was found.
/// Returns sshd's effective port for the pair user. `previous` is the
/// drop-in's content before this run (None: there was none): on failure
/// it is put back, so sshd is left as it was found.
pub fn verify_sshd(
    a: &Options,
    bin: &Path,
    previous: Option<&str>,
) -> Result<Option<u16>, SetupError> {
    let conf_path = a.sshd_config_dir.join("pairjail.conf");
    let main = a.sshd_config.display().to_string();
    let undo = |why: String| match previous {
        Some(old) => {
            let _ = crate::files::write_atomic(&conf_path, old.as_bytes(), 0o644);
            SetupError::Sshd(format!("{why}; put {} back as it was", conf_path.display()))
        }
        None => {
            let _ = std::fs::remove_file(&conf_path);
            SetupError::Sshd(format!("{why}; removed {} again", conf_path.display()))
        }
    };
    run_cmd(&["sshd", "-t", "-f", &main]).map_err(|e| undo(e.to_string()))?;
    // From this machine and from afar: a site's `Match Address` block
    // before pairjail's can give a remote guest what a local one lacks (a
    // read-only attack hunt put `AuthorizedKeysFile` and passwords back
    // for 10.0.0.0/8, and setup said all was well).
    let mut port = None;
    let unused = unused_timeout(&sshd_version());
    for (host, addr) in [
        ("localhost", "127.0.0.1"),
        ("guest.example.net", "203.0.113.7"),
    ] {
        let spec = format!("user={},host={host},addr={addr}", a.pair_user);
        let effective =
            run_cmd(&["sshd", "-T", "-f", &main, "-C", &spec]).map_err(|e| undo(e.to_string()))?;
        check_effective(a, bin, &main, &effective, !unused.is_empty()).map_err(|why| {
            undo(format!(
                "sshd's effective config for {} from {addr} {why}",
                a.pair_user
            ))
        })?;
        port = port.or_else(|| {
            effective
                .lines()
                .find_map(|l| l.strip_prefix("port ").and_then(|p| p.trim().parse().ok()))
        });
    }
    Ok(port)
}

/// What is wrong with sshd's effective configuration for the pair user
/// (`sshd -T`), if anything.
fn check_effective(
    a: &Options,
    bin: &Path,
    main: &str,
    effective: &str,
    unused_timeout: bool,
) -> Result<(), String> {
    let mut want = vec![
        format!(
            "authorizedkeyscommand {} authorized-keys --config {} %u %k %t",
            bin.display(),
            a.config.display()
        ),
        format!("authorizedkeyscommanduser {}", a.keys_command_user),
        "disableforwarding yes".into(),
        "permittty yes".into(),
        "permittunnel no".into(),
        "permituserrc no".into(),
        "passwordauthentication no".into(),
        "authorizedkeysfile none".into(),
        "authenticationmethods publickey".into(),
        "hostbasedauthentication no".into(),
    ];
    // A site's block read first could set it to `none` (a review).
    if unused_timeout {
        want.push("unusedconnectiontimeout 60".into());
    }
    // The first value sshd finds wins: an earlier block of the site's
    // could still let certificates in.
    let certs = effective.lines().find(|l| {
        l.starts_with("pubkeyacceptedalgorithms ") || l.starts_with("pubkeyacceptedkeytypes ")
    });
    if certs.is_none_or(|l| l.contains("-cert-v01")) {
        return Err(format!(
            "still accepts certificates (an earlier Match block or line of {main} sets the accepted key types first)"
        ));
    }
    // Whole lines (`authenticationmethods publickey keyboard-interactive`
    // is not `publickey`).
    for w in &want {
        if !effective.lines().any(|l| l == w.as_str()) {
            return Err(format!(
                "lacks '{w}' (is {} included by {main}, before any Match block of the site's that sets it?)",
                a.sshd_config_dir.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any user may put a link in a shared runtime directory: root's undo
    /// check must not follow it and lock files elsewhere (it would report
    /// them as shares, and hold up whoever uses them).
    #[test]
    fn undo_checks_run_locks_of_real_host_directories_only() {
        let d = tempfile::tempdir().unwrap();
        let runtime = d.path().join("run");
        let elsewhere = d.path().join("elsewhere");
        std::fs::create_dir_all(runtime.join("host")).unwrap();
        std::fs::create_dir(&elsewhere).unwrap();
        let hold = |path: &Path| {
            let f = std::fs::File::create(path).unwrap();
            nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).unwrap()
        };
        let _other = hold(&elsewhere.join("xtables.lock"));
        std::os::unix::fs::symlink(&elsewhere, runtime.join("link")).unwrap();
        assert!(no_share_running(&runtime).is_ok());
        let _run = hold(&runtime.join("host").join("sy.lock"));
        let refused = no_share_running(&runtime).unwrap_err().to_string();
        assert!(refused.contains("host is sharing session sy"), "{refused}");
    }

    /// Local users can make the runtime directory's removal fail (a tree
    /// too deep for `remove_dir_all`): the record of what setup wrote goes
    /// after it, so that `--undo` can run again.
    #[test]
    fn undo_keeps_its_record_until_the_runtime_directory_is_gone() {
        let (config, runtime) = (
            PathBuf::from("/etc/pairjail/config.toml"),
            PathBuf::from("/run/pairjail"),
        );
        let written = crate::config::Written {
            files: vec![
                PathBuf::from("/etc/ssh/sshd_config.d/pairjail.conf"),
                config.clone(),
            ],
            dirs: vec![PathBuf::from("/etc/pairjail"), runtime.clone()],
            users: vec!["pjpair".into()],
        };
        let steps = undo_steps(&written, false, &config, &runtime);
        let at = |step: &Undo| steps.iter().position(|s| s == step).unwrap();
        assert!(
            at(&Undo::RemoveRuntime(runtime.clone())) < at(&Undo::RemoveFile(config.clone())),
            "{steps:?}"
        );
        assert!(
            at(&Undo::RemoveFile(config)) < at(&Undo::RemoveDir("/etc/pairjail".into())),
            "{steps:?}"
        );
        assert_eq!(steps.len(), 5, "{steps:?}");
    }

    #[test]
    fn the_accepted_keys_keyword_follows_the_sshd_version() {
        for (said, want) in [
            ("OpenSSH_9.2, OpenSSL 3.0.19", "PubkeyAcceptedAlgorithms"),
            ("OpenSSH_8.5p1, OpenSSL 1.1.1", "PubkeyAcceptedAlgorithms"),
            (
                "OpenSSH_8.4p1 Debian-5+deb11u3, OpenSSL 1.1.1w",
                "PubkeyAcceptedKeyTypes",
            ),
            (
                "unknown option -- V\nOpenSSH_7.4p1, OpenSSL 1.0.2k-fips",
                "PubkeyAcceptedKeyTypes",
            ),
            ("", "PubkeyAcceptedAlgorithms"),
        ] {
            assert_eq!(accepted_keys_keyword(said), want, "{said}");
        }
        // sshd ends connections that open no session itself since 9.2.
        assert!(unused_timeout("OpenSSH_9.2, OpenSSL 3.0.19").contains("UnusedConnectionTimeout"));
        assert!(unused_timeout("OpenSSH_10.0p2").contains("UnusedConnectionTimeout"));
        assert_eq!(unused_timeout("OpenSSH_9.1p1 Debian"), "");
        assert_eq!(unused_timeout("OpenSSH_8.4p1"), "");
    }

    #[test]
    fn root_never_chmods_through_a_link_or_a_directory_others_can_change() {
        use std::os::unix::fs::PermissionsExt;
        if !nix::unistd::Uid::effective().is_root() {
            assert!(std::env::var_os("CI").is_none(), "needs root in CI");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let link = d.path().join("rt");
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        assert!(
            check_runtime_place(&link)
                .unwrap_err()
                .contains("not a directory of root's")
        );
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            check_runtime_place(&open.join("rt"))
                .unwrap_err()
                .contains("can be changed")
        );
        assert!(check_runtime_place(&d.path().join("fresh")).is_ok());
        // Sticky like /tmp: root's own directory there is fine, a missing
        // one is not (a link could take its place before the chmod).
        let sticky = d.path().join("sticky");
        std::fs::create_dir(&sticky).unwrap();
        std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(
            check_runtime_place(&sticky.join("rt"))
                .unwrap_err()
                .contains("does not exist")
        );
        std::fs::create_dir(sticky.join("rt")).unwrap();
        assert!(check_runtime_place(&sticky.join("rt")).is_ok());
        for bad in [
            "/etc/pj.toml\n\tAuthorizedKeysFile /tmp/k",
            "/etc/p j",
            "/etc/%u",
            "/etc/a\"b",
        ] {
            let refused = check_plain_path("--config", Path::new(bad)).unwrap_err();
            assert!(refused.contains("cannot go into"), "{refused}");
        }
        check_plain_path("--config", Path::new("/etc/pairjail/config.toml")).unwrap();
        // Where setup writes its other files.
        let team = d.path().join("team");
        std::fs::create_dir(&team).unwrap();
        std::fs::set_permissions(&team, std::fs::Permissions::from_mode(0o775)).unwrap();
        let refused = check_root_only("--shell", &team).unwrap_err();
        assert!(
            refused.contains("can be changed by users other than root"),
            "{refused}"
        );
        assert!(check_root_only("--shell", &team.join("lib")).is_err());
        assert!(check_root_only("--shell", &d.path().join("fresh/lib")).is_ok());
        let sticky_dir = d.path().join("sticky-shell");
        std::fs::create_dir(&sticky_dir).unwrap();
        std::fs::set_permissions(&sticky_dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(check_root_only("--shell", &sticky_dir).is_err());
        // A link on the way, even one that leads somewhere safe today.
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        // (In a directory others can write: `open`, 0777.)
        std::os::unix::fs::symlink(&real, open.join("alias")).unwrap();
        let refused = check_runtime_place(&open.join("alias/rt")).unwrap_err();
        assert!(refused.contains("give that path"), "{refused}");
        assert!(check_runtime_place(&real.join("rt")).is_ok());
        // Root's own link, in a directory only root changes, whose target
        // goes through a link another user controls: refused like any
        // link (setup and undo).
        let roots = d.path().join("roots");
        std::fs::create_dir(&roots).unwrap();
        std::os::unix::fs::symlink(open.join("alias"), roots.join("run")).unwrap();
        assert!(check_runtime_place(&roots.join("run/rt")).is_err());
        // (Undo faces a runtime directory that is there.)
        std::fs::create_dir(real.join("rt")).unwrap();
        assert!(remove_runtime(&roots.join("run/rt")).is_err());
        // Undo of a directory another user could move away: refused.
        std::fs::create_dir_all(open.join("pj")).unwrap();
        assert!(remove_runtime(&open.join("pj")).is_err());
        assert!(open.join("pj").exists());
        assert!(remove_runtime(&open.join("alias/rt")).is_err());
        assert!(real.join("rt").exists());
        // One that is gone already: nothing to do.
        assert!(remove_runtime(&d.path().join("gone")).is_ok());
        // Root's own directory, inside one another user owns: they can
        // move it away and put a link to /etc in its place.
        let theirs = d.path().join("theirs");
        std::fs::create_dir_all(theirs.join("pj")).unwrap();
        nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        for place in [theirs.join("pj/rt"), theirs.join("pj")] {
            let refused = check_runtime_place(&place).unwrap_err();
            assert!(refused.contains("can be changed"), "{refused}");
        }
    }
}
