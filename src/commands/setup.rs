//! `pairjail setup --pair-user pair`: prints each step of `crate::setup`'s
//! plan and carries it out (`--dry-run`: prints only), then has sshd
//! validate the result.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Failure, Outcome};
use crate::broker::paths;
use crate::setup::{self, Options, SetupError, Step};

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

pub fn run(a: SetupArgs) -> Outcome {
    let opts = Options {
        pair_user: a.pair_user,
        runtime_dir: a.runtime_dir,
        sshd_config_dir: a.sshd_config_dir,
        sshd_config: a.sshd_config,
        tmpfiles_dir: a.tmpfiles_dir,
        shell: a.shell,
        keys_command_user: a.keys_command_user,
    };
    let (steps, bin) = setup::plan(&opts, a.dry_run)?;
    for step in &steps {
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
        if !a.dry_run {
            setup::apply(step)?;
        }
    }
    if a.dry_run {
        println!("(dry run: nothing was written)");
        return Ok(ExitCode::SUCCESS);
    }
    setup::verify_sshd(&opts, &bin)?;
    println!(
        "done: sshd accepts the configuration; reload sshd (systemctl reload ssh) to apply it"
    );
    Ok(ExitCode::SUCCESS)
}
