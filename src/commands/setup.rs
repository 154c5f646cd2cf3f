//! `pairjail setup --pair-user pair`: the one-time root part of pair-user
//! mode. It writes exactly the files it prints (and `--dry-run` prints
//! them without writing), creates the locked guest user and the runtime
//! directory, and validates sshd's configuration before saying done.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use super::{Failure, Outcome};
use crate::broker::paths;

#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// The Unix user every guest logs in as.
    #[arg(long, value_name = "USER")]
    pub pair_user: String,
    /// Print every file and command without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// The runtime directory hosts share sessions in.
    #[arg(long, default_value = paths::DEFAULT_RUNTIME, value_name = "DIR")]
    pub runtime_dir: PathBuf,
    /// Where sshd reads drop-in configuration.
    #[arg(long, default_value = "/etc/ssh/sshd_config.d", value_name = "DIR")]
    pub sshd_config_dir: PathBuf,
    /// The main sshd configuration to validate (it must include the drop-in directory).
    #[arg(long, default_value = "/etc/ssh/sshd_config", value_name = "FILE")]
    pub sshd_config: PathBuf,
    /// Where systemd-tmpfiles recreates the runtime directory at boot.
    #[arg(long, default_value = "/etc/tmpfiles.d", value_name = "DIR")]
    pub tmpfiles_dir: PathBuf,
    /// Where the guest user's shell is linked to the pairjail binary (it
    /// runs only `pairjail join`, never a shell); its file name must be
    /// `pair-shell`.
    #[arg(
        long,
        default_value = "/usr/local/lib/pairjail/pair-shell",
        value_name = "PATH"
    )]
    pub shell: PathBuf,
    /// The unprivileged user sshd runs `pairjail authorized-keys` as
    /// (created if missing). Its group owns the runtime directory, so it
    /// and the hosts, and no one else, can read invites.
    #[arg(long, default_value = "pairjail-keys", value_name = "USER")]
    pub keys_command_user: String,
}

fn sshd_conf(a: &SetupArgs, bin: &Path) -> String {
    format!(
        "# Written by `pairjail setup`. Guests log in as {user} with keys that\n\
         # `pairjail authorized-keys` serves only while their session is live.\n\
         Match User {user}\n\
         \tAuthorizedKeysFile none\n\
         \tAuthorizedKeysCommand {bin} authorized-keys --runtime-dir {rt} %u %k %t\n\
         \tAuthorizedKeysCommandUser {akc}\n\
         \tPasswordAuthentication no\n\
         \tKbdInteractiveAuthentication no\n\
         \tDisableForwarding yes\n\
         \tPermitTTY yes\n\
         \tPermitUserRC no\n",
        user = a.pair_user,
        bin = bin.display(),
        rt = a.runtime_dir.display(),
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

fn link_shell(
    shell: &Path,
    bin: &Path,
    dry: bool,
    written: &mut Vec<PathBuf>,
) -> Result<(), Failure> {
    println!("--- {} -> {} (symlink)", shell.display(), bin.display());
    place(shell, dry, written, |tmp| {
        let _ = std::fs::remove_file(tmp);
        std::os::unix::fs::symlink(bin, tmp)
    })
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

fn write(
    path: &Path,
    text: &str,
    mode: u32,
    dry: bool,
    written: &mut Vec<PathBuf>,
) -> Result<(), Failure> {
    println!("--- {} (mode {mode:o})", path.display());
    print!("{text}");
    place(path, dry, written, |tmp| {
        std::fs::write(tmp, text)
            .and_then(|_| std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(mode)))
    })
}

/// Makes `path` atomically: `make` builds a temp file beside it, which is
/// renamed over it (nothing in a dry run).
fn place(
    path: &Path,
    dry: bool,
    written: &mut Vec<PathBuf>,
    make: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), Failure> {
    if dry {
        return Ok(());
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)
            .map_err(|e| Failure::failed(format!("cannot create {}: {e}", d.display())))?;
    }
    let tmp = path.with_extension("pairjail-tmp");
    make(&tmp)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Failure::failed(format!("cannot write {}: {e}", path.display()))
        })?;
    written.push(path.to_path_buf());
    Ok(())
}

fn run_cmd(dry: bool, argv: &[&str]) -> Result<String, Failure> {
    println!("+ {}", argv.join(" "));
    if dry {
        return Ok(String::new());
    }
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|e| Failure::failed(format!("cannot run {}: {e}", argv[0])))?;
    if !out.status.success() {
        return Err(Failure::failed(format!(
            "{} failed: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn run(a: SetupArgs) -> Outcome {
    paths::check_user(&a.pair_user).map_err(Failure::invalid)?;
    paths::check_user(&a.keys_command_user).map_err(Failure::invalid)?;
    if a.shell.file_name().and_then(|n| n.to_str()) != Some(crate::guest::pair_shell::NAME) {
        return Err(Failure::invalid(format!(
            "--shell {}: the file name must be {} (pairjail acts as the shell by that name)",
            a.shell.display(),
            crate::guest::pair_shell::NAME
        )));
    }
    check_pair_user(&a.pair_user, &a.shell).map_err(Failure::invalid)?;
    if a.keys_command_user == a.pair_user {
        return Err(Failure::invalid(
            "--keys-command-user must differ from --pair-user: guests must not read invites",
        ));
    }
    if !a.dry_run && !nix::unistd::Uid::effective().is_root() {
        return Err(Failure::invalid(
            "setup needs root (or use --dry-run to see what it would write)",
        ));
    }
    let bin = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| Failure::failed(format!("cannot find my own binary: {e}")))?;
    if !a.dry_run {
        check_safe_path(&bin).map_err(Failure::failed)?;
    }
    let dry = a.dry_run;
    let mut written = Vec::new();
    let conf_path = a.sshd_config_dir.join("pairjail.conf");
    link_shell(&a.shell, &bin, dry, &mut written)?;
    write(&conf_path, &sshd_conf(&a, &bin), 0o644, dry, &mut written)?;
    let rt = a.runtime_dir.display().to_string();
    let group = a.keys_command_user.clone();
    write(
        &a.tmpfiles_dir.join("pairjail.conf"),
        &format!("d {rt} 3777 root {group} -\n"),
        0o644,
        dry,
        &mut written,
    )?;

    let exists = crate::users::by_name(&a.pair_user).is_some();
    let shell = a.shell.display().to_string();
    if !exists {
        run_cmd(
            dry,
            &[
                "useradd",
                "--system",
                "--user-group",
                "--home-dir",
                "/nonexistent",
                "--no-create-home",
                "--comment",
                GECOS,
                "--shell",
                &shell,
                &a.pair_user,
            ],
        )?;
    } else {
        run_cmd(dry, &["usermod", "--shell", &shell, &a.pair_user])?;
    }
    // No password at all, but not "locked" ('!'), which sshd treats as
    // "refuse every login" without PAM.
    run_cmd(dry, &["usermod", "-p", "*", &a.pair_user])?;
    if crate::users::by_name(&a.keys_command_user).is_none() {
        run_cmd(
            dry,
            &[
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
            ],
        )?;
    }
    // Sticky: nobody removes another host's directory. Setgid: every host
    // directory and invites file made inside gets the keys user's group,
    // so invites are readable by the host and that user only (0640).
    // (In a dry run the user may not exist yet: its group has its name.)
    let keys_group = crate::users::by_name(&a.keys_command_user)
        .map_or_else(|| a.keys_command_user.clone(), |u| u.gid.to_string());
    run_cmd(dry, &["mkdir", "-p", &rt])?;
    run_cmd(dry, &["chown", &format!("root:{keys_group}"), &rt])?;
    run_cmd(dry, &["chmod", "3777", &rt])?;

    let main = a.sshd_config.display().to_string();
    let check = run_cmd(dry, &["sshd", "-t", "-f", &main]).and_then(|_| {
        let spec = format!("user={},host=localhost,addr=127.0.0.1", a.pair_user);
        run_cmd(dry, &["sshd", "-T", "-f", &main, "-C", &spec])
    });
    let effective = match check {
        Ok(e) => e,
        Err(f) => {
            // Leave sshd as we found it.
            let _ = std::fs::remove_file(&conf_path);
            return Err(Failure::failed(format!(
                "{}; removed {} again",
                f.message,
                conf_path.display()
            )));
        }
    };
    if !dry {
        let want = [
            format!("authorizedkeyscommand {} authorized-keys", bin.display()),
            "disableforwarding yes".into(),
            "permittty yes".into(),
            "passwordauthentication no".into(),
            "authorizedkeysfile none".into(),
        ];
        for w in &want {
            if !effective.lines().any(|l| l.starts_with(w.as_str())) {
                let _ = std::fs::remove_file(&conf_path);
                return Err(Failure::failed(format!(
                    "sshd's effective config for {} lacks '{w}' (is {} included by {}?); removed {} again",
                    a.pair_user,
                    a.sshd_config_dir.display(),
                    main,
                    conf_path.display()
                )));
            }
        }
        println!(
            "done: sshd accepts the configuration; reload sshd (systemctl reload ssh) to apply it"
        );
    } else {
        println!("(dry run: nothing was written)");
    }
    Ok(ExitCode::SUCCESS)
}
