//! `pairjail exec`: run a command in the jail a profile describes.

use std::ffi::OsString;
use std::process::ExitCode;

use super::{Failure, Outcome};
use crate::jail;
use crate::profile::{self, SearchPath};

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Profile name (on the search path) or file.
    #[arg(long, value_name = "NAME|FILE")]
    pub profile: String,
    /// Keep this open descriptor in the jail, at the same number.
    #[arg(long = "pass-fd", value_name = "N")]
    pub pass_fd: Vec<i32>,
    /// Set a profile parameter, e.g. --param session_socket=/run/x.sock.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub param: Vec<String>,
    /// The command and its arguments (after --).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

pub fn run(a: ExecArgs) -> Outcome {
    let profile = profile::load(&a.profile, &SearchPath::from_env())?;
    let params = profile::params::parse(&a.param, &profile.params).map_err(Failure::invalid)?;
    for fd in &a.pass_fd {
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
    let program =
        crate::exe::find_program(first).map_err(|e| Failure::invalid(format!("exec: {e}")))?;
    let cmd = jail::Command {
        pass_fds: a.pass_fd,
        params,
        ..jail::Command::new(jail::Program::File {
            path: program,
            argv: a.command.clone(),
        })
    };
    let status = jail::spawn(&profile, &cmd)?.wait()?;
    Ok(ExitCode::from(status.code().clamp(0, 255) as u8))
}
