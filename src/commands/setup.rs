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
    /// Where the guest user's shell (it runs only `pairjail join`) is written.
    #[arg(
        long,
        default_value = "/usr/local/lib/pairjail/pair-shell",
        value_name = "PATH"
    )]
    pub shell: PathBuf,
    /// The unprivileged user sshd runs `pairjail authorized-keys` as.
    #[arg(long, default_value = "nobody", value_name = "USER")]
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

fn shell_script(bin: &Path) -> String {
    // sshd runs the forced command as `<shell> -c "<command>"`; anything
    // else (an interactive login) gets one line and nothing.
    format!(
        "#!/bin/sh\n# Written by `pairjail setup`: the login shell of the guests' user.\n\
         case \"$1:$2\" in\n  \"-c:{bin} join \"*) exec /bin/sh -c \"$2\" ;;\nesac\n\
         echo \"this account only joins pairjail sessions (ssh -t to a host that invited you)\" >&2\nexit 1\n",
        bin = bin.display()
    )
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
    if dry {
        return Ok(());
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)
            .map_err(|e| Failure::failed(format!("cannot create {}: {e}", d.display())))?;
    }
    let tmp = path.with_extension("pairjail-tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)))
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
    write(&a.shell, &shell_script(&bin), 0o755, dry, &mut written)?;
    write(&conf_path, &sshd_conf(&a, &bin), 0o644, dry, &mut written)?;
    let rt = a.runtime_dir.display().to_string();
    write(
        &a.tmpfiles_dir.join("pairjail.conf"),
        &format!("d {rt} 1777 root root -\n"),
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
    run_cmd(dry, &["mkdir", "-p", &rt])?;
    run_cmd(dry, &["chmod", "1777", &rt])?;

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
