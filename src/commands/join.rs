//! `pairjail join`, sshd's forced command for a guest.

use std::process::ExitCode;

use super::{Outcome, RuntimeDir};
use crate::broker::liveness::Run;
use crate::broker::paths::DEFAULT_SESSION;
use crate::guest::join::{self, Join, Transport};
use crate::profile::Mode;

#[derive(Debug, clap::Args)]
pub struct JoinArgs {
    /// The Unix user sharing the session.
    #[arg(long)]
    pub host: String,
    /// The shared session (the name given to `start --session`).
    #[arg(long, default_value = DEFAULT_SESSION, add = clap_complete::engine::ArgValueCompleter::new(super::complete::sessions))]
    pub session: String,
    /// The guest's name, as the host sees it.
    #[arg(long)]
    pub guest: String,
    /// The guest's mode (default: the session's default mode).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    #[command(flatten)]
    pub runtime_dir: RuntimeDir,
    /// How the guest reaches the session.
    #[arg(long, value_enum, default_value = "relay")]
    pub transport: Transport,
    /// The guest's jail (default: guest-relay, or guest-direct).
    #[arg(long, value_name = "NAME|FILE")]
    pub profile: Option<String>,
    /// The broker run (PID.START) the invite is bound to; join goes on
    /// only while that run is alive.
    #[arg(long, value_name = "PID.START")]
    pub run: Option<Run>,
    /// The SHA-256 fingerprint of the key this line is for (shown to the host).
    #[arg(long, value_name = "SHA256:…")]
    pub key: Option<String>,
}

pub fn run(a: JoinArgs) -> Outcome {
    join::join(&Join {
        host: a.host,
        session: a.session,
        guest: a.guest,
        mode: a.mode,
        runtime_dir: a.runtime_dir.path,
        profile: a.profile,
        transport: a.transport,
        run: a.run,
        key: a.key,
    })?;
    Ok(ExitCode::SUCCESS)
}
