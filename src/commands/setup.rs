//! `pairjail setup --pair-user pair`: prints each step of `crate::setup`'s
//! plan and carries it out (`--dry-run`: prints only), then has sshd
//! validate the result.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Failure, Outcome};
use crate::broker::paths;
use crate::setup::{self, Options, SetupError, Step, Undo};

impl From<SetupError> for Failure {
    fn from(e: SetupError) -> Self {
        if e.is_invalid() {
            Failure::invalid(e)
        } else {
            Failure::failed(e)
        }
    }
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  sudo pairjail setup --dry-run                      # show every file and command first
  sudo pairjail setup --host alice --public-host dev.example.com
  sudo pairjail setup --host-group developers        # members of a group may host
  sudo pairjail setup --undo                         # remove what setup wrote (keeps the user)
  sudo pairjail setup --undo --remove-user           # and the users it created

Run it again to change a setting: what you do not give is kept from the
config (/etc/pairjail/config.toml).")]
pub struct SetupArgs {
    /// The Unix user every guest logs in as (default: the config's, else `pair`).
    #[arg(long, value_name = "USER")]
    pub pair_user: Option<String>,
    /// A local user who may host sessions guests of the pair user can reach
    /// (repeat; with neither --host nor --host-group: every local user).
    #[arg(long = "host", value_name = "USER")]
    pub hosts: Vec<String>,
    /// Members of this group may host.
    #[arg(long, value_name = "GROUP")]
    pub host_group: Option<String>,
    /// The name guests connect to, printed in connect lines (default: this
    /// machine's host name).
    #[arg(long, value_name = "NAME")]
    pub public_host: Option<String>,
    /// Print every file and command without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove exactly what setup wrote (listed in the config), and the config.
    #[arg(long)]
    pub undo: bool,
    /// With --undo: also delete the users setup created.
    #[arg(long, requires = "undo")]
    pub remove_user: bool,
    /// The machine's config file, which every pairjail command reads.
    #[arg(long, value_name = "FILE", env = crate::config::ENV, default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// The runtime directory hosts share sessions in (default: the config's, else /run/pairjail).
    #[arg(long, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
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

pub fn run(a: SetupArgs) -> Outcome {
    let earlier = crate::config::load_from(&a.config).map_err(Failure::invalid)?;
    if a.undo {
        return undo(&a, earlier);
    }
    let kept = earlier.as_ref();
    let opts = Options {
        config: a.config.clone(),
        hosts: if a.hosts.is_empty() {
            kept.map(|c| c.hosts.clone()).unwrap_or_default()
        } else {
            a.hosts
        },
        host_group: a
            .host_group
            .or_else(|| kept.and_then(|c| c.host_group.clone())),
        public_host: a
            .public_host
            .or_else(|| kept.and_then(|c| c.public_host.clone())),
        pair_user: a
            .pair_user
            .or_else(|| kept.map(|c| c.pair_user.clone()))
            .unwrap_or_else(|| "pair".into()),
        runtime_dir: a
            .runtime_dir
            .or_else(|| kept.map(|c| c.runtime_dir.clone()))
            .unwrap_or_else(|| paths::DEFAULT_RUNTIME.into()),
        sshd_config_dir: a.sshd_config_dir,
        sshd_config: a.sshd_config,
        tmpfiles_dir: a.tmpfiles_dir,
        shell: a.shell,
        keys_command_user: a.keys_command_user,
    };
    let plan = setup::plan(&opts, a.dry_run)?;
    let previous_dropin = std::fs::read_to_string(opts.sshd_config_dir.join("pairjail.conf")).ok();
    for step in &plan.steps {
        show(step);
        if !a.dry_run
            && let Err(e) = setup::apply(step)
        {
            return Err(failed_half_way(e, &plan.creates, &opts));
        }
    }
    if a.dry_run {
        let c = setup::config_for(&opts, None, &plan.creates, kept.map(|c| &c.written));
        println!("--- {} (mode 644)", opts.config.display());
        print!("{}", c.render());
        println!("(dry run: nothing was written)");
        return Ok(ExitCode::SUCCESS);
    }
    let port = match setup::verify_sshd(&opts, &plan.bin, previous_dropin.as_deref()) {
        Ok(p) => p,
        Err(e) => return Err(failed_half_way(e, &plan.creates, &opts)),
    };
    let config = setup::config_for(&opts, port, &plan.creates, kept.map(|c| &c.written));
    println!("--- {} (mode 644)", opts.config.display());
    print!("{}", config.render());
    if let Err(e) = setup::write_config(&opts.config, &config) {
        return Err(failed_half_way(e, &plan.creates, &opts));
    }
    let who = if config.hosts.is_empty() && config.host_group.is_none() {
        "every local user".to_string()
    } else {
        let mut w = config.hosts.join(", ");
        if let Some(g) = &config.host_group {
            w = if w.is_empty() {
                format!("group {g}")
            } else {
                format!("{w}, group {g}")
            };
        }
        w
    };
    println!(
        "done: sshd accepts the configuration; reload sshd (systemctl reload ssh) to apply it"
    );
    println!(
        "  guests log in as {}; who may host: {who}",
        config.pair_user
    );
    println!(
        "  undo: sudo pairjail setup --undo{}",
        undo_flag(&opts.config)
    );
    Ok(ExitCode::SUCCESS)
}

fn undo_flag(config: &std::path::Path) -> String {
    if config == std::path::Path::new(crate::config::DEFAULT_PATH) {
        String::new()
    } else {
        format!(" --config {}", config.display())
    }
}

fn show(step: &Step) {
    match step {
        Step::Link { path, target } => {
            println!("--- {} -> {} (symlink)", path.display(), target.display())
        }
        Step::Write { path, text, mode } => {
            println!("--- {} (mode {mode:o})", path.display());
            print!("{text}");
        }
        Step::Run { argv } => println!("+ {}", argv.join(" ")),
    }
}

/// A step failed: what this run created goes again, and the line says so.
fn failed_half_way(e: SetupError, creates: &crate::config::Written, opts: &Options) -> Failure {
    let left = setup::roll_back(creates, &opts.config, &opts.runtime_dir);
    let tail = if left.is_empty() {
        "; everything this run created was removed again".to_string()
    } else {
        format!("; could not remove again: {}", left.join("; "))
    };
    let f: Failure = e.into();
    Failure {
        code: f.code,
        message: format!("{}{tail}", f.message),
    }
}

fn undo(a: &SetupArgs, earlier: Option<crate::config::SystemConfig>) -> Outcome {
    let Some(c) = earlier else {
        return Err(Failure::invalid(format!(
            "setup --undo: {} does not exist, so there is no record of what setup wrote (give --config FILE if it is elsewhere)",
            a.config.display()
        )));
    };
    if !a.dry_run && !nix::unistd::Uid::effective().is_root() {
        return Err(SetupError::NotRoot.into());
    }
    // Before anything changes: a running share stops the undo.
    setup::no_share_running(&c.runtime_dir)?;
    let mut problems = Vec::new();
    for step in setup::undo_steps(&c.written, a.remove_user, &a.config, &c.runtime_dir) {
        if step == Undo::RemoveFile(a.config.clone()) && !problems.is_empty() {
            println!("- kept {} so that --undo can run again", a.config.display());
            continue;
        }
        match &step {
            Undo::RemoveFile(p) => println!("- rm {}", p.display()),
            Undo::RemoveDir(p) => println!("- rmdir {}", p.display()),
            Undo::RemoveRuntime(p) => println!(
                "- rm -r {} (what hosts left there; refused while a share runs)",
                p.display()
            ),
            Undo::RemoveUser(u) => println!("- userdel {u}"),
            Undo::NoLogin(u) => {
                println!("- usermod --shell /usr/sbin/nologin {u} (kept; --remove-user deletes it)")
            }
        }
        if !a.dry_run
            && let Err(e) = setup::apply_undo(&step)
        {
            problems.push(e.to_string());
        }
    }
    if a.dry_run {
        println!("(dry run: nothing was removed)");
        return Ok(ExitCode::SUCCESS);
    }
    if !problems.is_empty() {
        return Err(Failure::failed(format!(
            "setup --undo: {}",
            problems.join("; ")
        )));
    }
    println!("done: pairjail's setup is undone; reload sshd (systemctl reload ssh)");
    Ok(ExitCode::SUCCESS)
}
