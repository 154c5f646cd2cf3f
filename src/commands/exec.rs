use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{Failure, Outcome};
use crate::jail;
use crate::profile::{self, SearchPath};

pub struct Args {
    pub profile: String,
    pub pass_fds: Vec<i32>,
    pub params: Vec<String>,
    pub command: Vec<OsString>,
}

pub fn run(a: Args) -> Outcome {
    let resolved =
        profile::resolve(&a.profile, &SearchPath::from_env()).map_err(Failure::invalid)?;
    let params = parse_params(&a.params)?;
    for fd in &a.pass_fds {
        if *fd < 3 {
            return Err(Failure::invalid(format!(
                "--pass-fd {fd}: 0, 1 and 2 are always passed"
            )));
        }
        if !jail::is_open(*fd) {
            return Err(Failure::invalid(format!(
                "--pass-fd {fd}: not an open descriptor"
            )));
        }
    }
    let Some(first) = a.command.first() else {
        return Err(Failure::invalid(
            "exec: no command given (pairjail exec --profile P -- CMD [ARGS])",
        ));
    };
    let program = find_program(first).ok_or_else(|| {
        Failure::invalid(format!(
            "exec: {}: command not found",
            first.to_string_lossy()
        ))
    })?;
    let cmd = jail::Command {
        program,
        argv: a.command.clone(),
        pass_fds: a.pass_fds,
        params,
        stdio: [None; 3],
    };
    let child = jail::spawn(&resolved.profile, &cmd).map_err(Failure::failed)?;
    let status = child.wait().map_err(Failure::failed)?;
    Ok(ExitCode::from(status.code().clamp(0, 255) as u8))
}

pub fn parse_params(raw: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    raw.iter()
        .map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| Failure::invalid(format!("--param {kv}: expected NAME=VALUE")))
        })
        .collect()
}

/// The program as the caller's shell would find it: a path as given, or the
/// first match on the caller's PATH (looked up outside the jail).
pub fn find_program(name: &std::ffi::OsStr) -> Option<PathBuf> {
    let p = Path::new(name);
    if name.to_string_lossy().contains('/') {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(p))
        .find(|c| c.is_file())
}
