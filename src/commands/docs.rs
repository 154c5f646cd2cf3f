//! `pairjail completions` and `pairjail man`. The CLI definition is handed
//! in by the caller, so this module does not depend on `cli`.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{Failure, Outcome};

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

pub fn completions(a: CompletionsArgs, cmd: clap::Command) -> Outcome {
    let mut cmd = public(cmd);
    clap_complete::generate(a.shell, &mut cmd, "pairjail", &mut io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// The command tree people see: without the hidden internal subcommands
/// (`__broker`, `__relay`, `__probe-attempt`, which pairjail runs itself),
/// which clap's generators would otherwise offer and document.
fn public(cmd: clap::Command) -> clap::Command {
    let visible: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut out = clap::Command::new("pairjail")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .subcommands(visible);
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    out
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write pairjail.1 and pairjail-SUBCOMMAND.1 files into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn man(a: ManArgs, cmd: clap::Command) -> Outcome {
    let cmd = public(cmd);
    match a.out {
        None => clap_mangen::Man::new(cmd)
            .render(&mut io::stdout())
            .map_err(|e| Failure::failed(format!("cannot write man page: {e}")))?,
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Failure::failed(format!("cannot create {}: {e}", dir.display())))?;
            clap_mangen::generate_to(cmd, &dir).map_err(|e| {
                Failure::failed(format!("cannot write man pages to {}: {e}", dir.display()))
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
