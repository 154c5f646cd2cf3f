use std::fs;
use std::io;
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;

use super::{Failure, Outcome};
use crate::cli::Cli;

pub fn completions(shell: clap_complete::Shell) -> Outcome {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "pairjail", &mut io::stdout());
    Ok(ExitCode::SUCCESS)
}

pub fn man(out: Option<&Path>) -> Outcome {
    let cmd = Cli::command();
    match out {
        None => clap_mangen::Man::new(cmd)
            .render(&mut io::stdout())
            .map_err(|e| Failure::failed(format!("cannot write man page: {e}")))?,
        Some(dir) => {
            fs::create_dir_all(dir)
                .map_err(|e| Failure::failed(format!("cannot create {}: {e}", dir.display())))?;
            clap_mangen::generate_to(cmd, dir).map_err(|e| {
                Failure::failed(format!("cannot write man pages to {}: {e}", dir.display()))
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
