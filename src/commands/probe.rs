//! `pairjail probe` and the hidden `__probe-attempt`.

use std::process::ExitCode;

use super::{Failure, Outcome, print_json};
use crate::jail::probe::{self, Verdict};
use crate::profile::{self, SearchPath};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  pairjail probe --profile guest-relay            # each attempt executed in its own jail\n  pairjail probe --profile guest-relay --called   # called there, as a guest's relay runs\n  pairjail probe --profile ./team.toml --only tiocsti --only socket-inet\n  pairjail probe --profile workspace --param workspace=$PWD --json"
)]
pub struct ProbeArgs {
    /// Profile name (on the search path) or file.
    #[arg(long, value_name = "NAME|FILE", add = clap_complete::engine::ArgValueCompleter::new(super::complete::profiles))]
    pub profile: String,
    /// Set a profile parameter.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub param: Vec<String>,
    /// Run only these attempts (repeatable); a name that is not one of them
    /// is refused, never skipped.
    #[arg(long, value_name = "ATTEMPT", value_parser = clap::builder::PossibleValuesParser::new(probe::ATTEMPTS.iter().map(|a| a.name)))]
    pub only: Vec<String>,
    /// Call each attempt inside the jail as pairjail's own code, without an
    /// exec, the way `join` runs a guest's relay (default: execute it as a
    /// program, the way `exec` runs one).
    #[arg(long)]
    pub called: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `probe --json`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct ProbeOutput {
    pub profile: String,
    pub attempts: Vec<probe::Report>,
    pub blocked: usize,
    pub allowed: usize,
    pub total: usize,
}

pub fn run(a: ProbeArgs) -> Outcome {
    let resolved = profile::resolve(&a.profile, &SearchPath::from_env())?;
    let params =
        profile::params::parse(&a.param, &resolved.profile.params).map_err(Failure::invalid)?;
    let payload = if a.called {
        probe::Payload::Called
    } else {
        probe::Payload::Executed(crate::exe::own()?)
    };
    let reports = probe::run(&resolved.profile, &params, &payload, &a.only)?;
    if reports.is_empty() {
        return Err(Failure::invalid("probe: no attempt matched --only"));
    }
    let held = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Blocked)
        .count();
    let allowed = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Allowed)
        .count();
    if a.json {
        print_json(&ProbeOutput {
            profile: a.profile.clone(),
            total: reports.len(),
            blocked: held,
            allowed,
            attempts: reports.clone(),
        })?;
    } else {
        println!(
            "{:<22} {:<10} {:<52} OBSERVED",
            "ATTEMPT", "VERDICT", "EXPECTED"
        );
        for r in &reports {
            let verdict = match r.verdict {
                Verdict::Blocked => "blocked",
                Verdict::Escaped => "ESCAPED",
                Verdict::Inconclusive => "UNKNOWN",
                Verdict::Allowed => "allowed",
            };
            println!(
                "{:<22} {:<10} {:<52} {}",
                r.attempt, verdict, r.expected, r.observed
            );
        }
        println!(
            "\n{held}/{} attempts blocked in profile {}{}",
            reports.len(),
            a.profile,
            if allowed > 0 {
                format!(", {allowed} allowed by its design ([probe] allowed)")
            } else {
                String::new()
            }
        );
    }
    Ok(if held + allowed == reports.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(Debug, clap::Args)]
pub struct AttemptArgs {
    pub name: String,
    pub vars: Vec<String>,
}

pub fn attempt(a: AttemptArgs) -> Outcome {
    Ok(ExitCode::from(
        probe::attempt_main(&a.name, &a.vars).clamp(0, 255) as u8,
    ))
}
