//! `pairjail schema OUTPUT`: the JSON Schema of each `--json` output,
//! generated from the same types that print it.

use std::process::ExitCode;

use super::{ErrorOutput, Outcome, print_json};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Output {
    /// `status --json`
    Status,
    /// `invite list --json`
    InviteList,
    /// `invite add --json`
    InviteAdd,
    /// `doctor --json`
    Doctor,
    /// one line of the audit log (`audit show --json` prints one per line)
    AuditLine,
    /// `audit verify --json`
    AuditVerify,
    /// `profile show --json` (a profile)
    Profile,
    /// `profile list --json`
    ProfileList,
    /// `profile check --json`
    ProfileCheck,
    /// `probe --json`
    Probe,
    /// what any command prints on stdout instead when it fails with --json
    Error,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  pairjail schema status > status.schema.json
  pairjail status --json | python3 -m jsonschema status.schema.json   # or any validator")]
pub struct SchemaArgs {
    /// The output whose schema to print.
    #[arg(value_enum)]
    pub output: Output,
}

pub fn run(a: SchemaArgs) -> Outcome {
    use schemars::schema_for;
    let schema = match a.output {
        Output::Status => schema_for!(Vec<crate::broker::protocol::SessionStatus>),
        Output::InviteList => schema_for!(Vec<super::invite::Row<'static>>),
        Output::InviteAdd => schema_for!(super::invite::Added<'static>),
        Output::Doctor => schema_for!(Vec<crate::doctor::Check>),
        Output::AuditLine => schema_for!(crate::audit::event::Line),
        Output::AuditVerify => schema_for!(crate::audit::chain::Report),
        Output::Profile => schema_for!(crate::profile::Profile),
        Output::ProfileList => schema_for!(Vec<super::profile::Listed>),
        Output::ProfileCheck => schema_for!(Vec<super::profile::Checked>),
        Output::Probe => schema_for!(super::probe::ProbeOutput),
        Output::Error => schema_for!(ErrorOutput),
    };
    print_json(&schema)?;
    Ok(ExitCode::SUCCESS)
}
