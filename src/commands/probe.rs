use std::process::ExitCode;

use serde_json::json;

use super::exec::parse_params;
use super::{Failure, Outcome};
use crate::jail::probe::{self, Verdict};
use crate::profile::{self, SearchPath};

pub fn run(profile_arg: &str, params: &[String], only: &[String], json: bool) -> Outcome {
    let resolved =
        profile::resolve(profile_arg, &SearchPath::from_env()).map_err(Failure::invalid)?;
    let params = parse_params(params)?;
    let exe = std::env::current_exe()
        .map_err(|e| Failure::failed(format!("cannot find my own binary: {e}")))?;
    let reports = probe::run(&resolved.profile, &params, &exe, only).map_err(Failure::failed)?;
    if reports.is_empty() {
        return Err(Failure::invalid("probe: no attempt matched --only"));
    }
    let held = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Blocked)
        .count();
    if json {
        let v = json!({"profile": profile_arg, "attempts": reports, "blocked": held, "total": reports.len()});
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(Failure::failed)?
        );
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
            };
            println!(
                "{:<22} {:<10} {:<52} {}",
                r.attempt, verdict, r.expected, r.observed
            );
        }
        println!(
            "\n{held}/{} attempts blocked in profile {profile_arg}",
            reports.len()
        );
    }
    Ok(if held == reports.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn attempt(name: &str, vars: &[String]) -> Outcome {
    Ok(ExitCode::from(probe::attempt_main(name, vars) as u8))
}
