//! `kick`, `mode`, `approve` and `deny`: the host's orders to a running
//! share, carried out by its broker (which answers only the host).

use std::process::ExitCode;

use super::{Failure, Outcome, RuntimeDir};
use crate::broker::paths::DEFAULT_SESSION;
use crate::broker::protocol::Which;
use crate::broker::share;
use crate::profile::Mode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  pairjail kick bob\n  pairjail kick bob --reason 'we are done for today' --keep-invite"
)]
pub struct KickArgs {
    /// The guest's name (as in `pairjail status`).
    pub name: String,
    /// A line the guest sees when it is disconnected.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Keep the guest's invite, so it can join again.
    #[arg(long)]
    pub keep_invite: bool,
    /// The shared session (the name given to `start --session`).
    #[arg(long, default_value = DEFAULT_SESSION, add = clap_complete::engine::ArgValueCompleter::new(super::complete::sessions))]
    pub session: String,
    #[command(flatten)]
    pub runtime_dir: RuntimeDir,
}

/// Disconnects a guest now and (unless --keep-invite) revokes its invite
/// for this session first, so it cannot come straight back.
pub fn kick(a: KickArgs) -> Outcome {
    let at = share::locate(a.runtime_dir.get(), &a.session)?;
    // A revoke that fails (a full runtime directory, which a pair guest
    // can fill from the session) still disconnects the guest, and says
    // the invite stays (a read-only hunt: the kick failed and the guest
    // stayed connected).
    let revoked = if a.keep_invite {
        None
    } else {
        Some(
            crate::keys::registry::revoke(&at.runtime, &at.host, &a.name, Some(&a.session))
                .inspect(|gone| {
                    crate::audit::invites(
                        &at.host,
                        gone.iter()
                            .map(|i| crate::audit::invite_removed(i, "the host kicked the guest")),
                    )
                }),
        )
    };
    let kicked = share::kick(&at, &a.name, &a.reason);
    if let Ok(done) = &kicked {
        println!("{done}");
    }
    // Whatever the disconnect did, the revoke's outcome is said.
    match revoked {
        None => {}
        Some(Ok(_)) => println!("revoked {}'s invite to session {}", a.name, a.session),
        Some(Err(e)) => {
            return Err(Failure::failed(format!(
                "the guest's invite could not be revoked, so it can log in again: {e}; `pairjail stop --session {}` ends the share{}",
                a.session,
                match &kicked {
                    Ok(_) => String::new(),
                    Err(k) => format!(" (nor was it disconnected: {k})"),
                }
            )));
        }
    }
    kicked?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Mirror <-> pair takes effect on the guest's next byte. A change to or from\nrogue gives the guest a new tmux client (its screen redraws).\n\nExamples:\n  pairjail mode bob pair      # bob may type now\n  pairjail mode bob mirror    # bob watches again"
)]
pub struct ModeArgs {
    /// The guest's name (as in `pairjail status`).
    pub name: String,
    /// The new mode (must be in the session's --allow).
    #[arg(value_enum)]
    pub mode: Mode,
    /// The shared session (the name given to `start --session`).
    #[arg(long, default_value = DEFAULT_SESSION, add = clap_complete::engine::ArgValueCompleter::new(super::complete::sessions))]
    pub session: String,
    #[command(flatten)]
    pub runtime_dir: RuntimeDir,
}

pub fn mode(a: ModeArgs) -> Outcome {
    let at = share::locate(a.runtime_dir.get(), &a.session)?;
    println!("{}", share::set_mode(&at, &a.name, a.mode)?);
    Ok(ExitCode::SUCCESS)
}

/// Which of a guest's waiting connections to answer, when it knocks from
/// more than one terminal or key at once.
#[derive(Debug, clap::Args)]
pub struct Pick {
    /// Only the connection that logged in with this key: its fingerprint,
    /// as the notice and `pairjail status` show it.
    #[arg(long, value_name = "FINGERPRINT")]
    pub key: Option<String>,
    /// Only the connection from this address and port, as the notice and
    /// `pairjail status` show it.
    #[arg(long, value_name = "ADDRESS:PORT")]
    pub from: Option<String>,
    /// Every waiting connection of the guest that fits (without it, an
    /// answer that fits more than one is refused, listing them).
    #[arg(long)]
    pub all: bool,
}

impl Pick {
    fn which(self) -> Which {
        Which {
            key: self.key,
            from: self.from,
            all: self.all,
        }
    }
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  pairjail approve bob               # in the mode bob's invite asks for\n  pairjail approve bob --mode mirror # but only to watch\n  pairjail approve bob --from 203.0.113.7:50122  # one of two bobs waiting\n\nWhen more than one connection of the name waits at once (another key of\nthe invite, another terminal), the answer must say which one (--key or\n--from, as the notice shows them) or --all."
)]
pub struct ApproveArgs {
    /// The waiting guest's name (as in `pairjail status`).
    pub name: String,
    /// Let the guest in with this mode instead of the one it asked for.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    #[command(flatten)]
    pub pick: Pick,
    /// The shared session (the name given to `start --session`).
    #[arg(long, default_value = DEFAULT_SESSION, add = clap_complete::engine::ArgValueCompleter::new(super::complete::sessions))]
    pub session: String,
    #[command(flatten)]
    pub runtime_dir: RuntimeDir,
}

pub fn approve(a: ApproveArgs) -> Outcome {
    let at = share::locate(a.runtime_dir.get(), &a.session)?;
    println!(
        "{}",
        share::answer(&at, &a.name, Some(a.mode), a.pick.which())?
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  pairjail deny mallory\n  pairjail deny bob --key SHA256:2f0cVgCFu5v0sVZbVhHuFExbU0Xxo1a6ygM4mSk3Ocg"
)]
pub struct DenyArgs {
    /// The waiting guest's name (as in `pairjail status`).
    pub name: String,
    #[command(flatten)]
    pub pick: Pick,
    /// The shared session (the name given to `start --session`).
    #[arg(long, default_value = DEFAULT_SESSION, add = clap_complete::engine::ArgValueCompleter::new(super::complete::sessions))]
    pub session: String,
    #[command(flatten)]
    pub runtime_dir: RuntimeDir,
}

pub fn deny(a: DenyArgs) -> Outcome {
    let at = share::locate(a.runtime_dir.get(), &a.session)?;
    println!("{}", share::answer(&at, &a.name, None, a.pick.which())?);
    Ok(ExitCode::SUCCESS)
}
