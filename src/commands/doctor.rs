//! `pairjail doctor`: prints each check of `crate::doctor` and its fix.

use std::process::ExitCode;

use super::{Outcome, RuntimeDir, print_json};
use crate::doctor;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  pairjail doctor                 as the host: what works, and a fix you can run for each problem
  sudo pairjail doctor            also reads sshd's effective config for the pair user
  pairjail doctor --json          for scripts (schema: `pairjail schema doctor`)

Exit status 1 when a check fails.")]
pub struct DoctorArgs {
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
    /// The guests' Unix user to check (default: the config's pair user;
    /// without a config, none: no-root mode).
    #[arg(long, value_name = "USER")]
    pub pair_user: Option<String>,
    #[command(flatten)]
    pub runtime_dir: RuntimeDir,
}

pub fn run(a: DoctorArgs) -> Outcome {
    let checks = doctor::checks(a.pair_user.as_deref(), a.runtime_dir.get());
    let failed = checks.iter().any(|c| c.status == "fail");
    if a.json {
        print_json(&checks)?;
    } else {
        for c in &checks {
            println!("{:<5} {:<24} {}", c.status, c.name, c.detail);
            if let Some(f) = &c.fix {
                println!("      {:<24} fix: {f}", "");
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
