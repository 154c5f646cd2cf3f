//! What every task of a broker shares: its configuration, the roster of
//! guests, the shutdown signal, and the announcer that tells the host
//! (notices and the status-line segment), one notice after another.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::liveness::Run;
use super::notices;
use super::paths::SessionPaths;
use super::roster::{InviteId, Roster};
use super::tmux::Tmux;
use super::workspace::Confinement;
use crate::audit::Event;
use crate::profile::Mode;
use crate::record::{Cast, Wrote};

#[derive(Debug, Clone)]
pub struct Config {
    /// This broker's run: invites bound to it are the only way in.
    pub run: Run,
    pub runtime: std::path::PathBuf,
    pub session: String,
    pub host: String,
    pub host_uid: u32,
    pub guest_uids: Vec<u32>,
    pub allowed: Vec<Mode>,
    pub default_mode: Mode,
    pub paths: SessionPaths,
    /// Guests may run their own tmux client (the host granted them
    /// `server-access` on the tmux socket).
    pub direct: bool,
    /// The session's tmux server and how its clients are started.
    pub tmux: Tmux,
    /// How the session is confined (None: it runs as the host, unconfined).
    pub confinement: Option<Confinement>,
    /// Every guest waits at the door for the host's answer.
    pub approve: bool,
    /// How long a guest waits at the door before it is a denial.
    pub approve_timeout: Duration,
    /// Where the share's audit events go (None: `start --no-audit`).
    pub audit: Option<crate::audit::Sink>,
    /// The directory of the share's recording (None: not recorded).
    pub record: Option<std::path::PathBuf>,
    /// A guest profile requires the recording: the share ends with it.
    pub require_recording: bool,
    /// How guests reach the share.
    pub reach: crate::reach::Reach,
    /// The reverse tunnel to a relay (`start --tunnel`).
    pub tunnel: Option<super::tunnel::Spec>,
}

impl Config {
    /// Is `mode` allowed by the session and by the guest's profile (whose
    /// list, if empty, allows any)?
    pub fn mode_allowed(&self, profile: &[Mode], mode: Mode) -> Result<(), String> {
        if !self.allowed.contains(&mode) {
            let allowed: Vec<String> = self.allowed.iter().map(Mode::to_string).collect();
            return Err(format!(
                "mode {mode} is not allowed in this session (allowed: {}; the host sets this with `pairjail start --allow`)",
                allowed.join(", ")
            ));
        }
        if !profile.is_empty() && !profile.contains(&mode) {
            return Err(format!(
                "the guest's jail profile does not allow mode {mode}"
            ));
        }
        Ok(())
    }
}

pub struct State {
    pub cfg: Config,
    pub since: u64,
    pub roster: Roster,
    /// The mirror groups and their shared tmux clients.
    pub audience: super::audience::Audience,
    /// Some(reason) once the share is over.
    pub shutdown: watch::Sender<Option<String>>,
    notices: mpsc::UnboundedSender<Notice>,
    /// The recording, while it lasts.
    pub cast: Mutex<Option<Cast>>,
    /// The recording's tmux client (not the host's: no notices, no menus).
    pub recorder: Mutex<Option<u32>>,
    /// Bumped when the session's layout may have changed size.
    pub layout: watch::Sender<u64>,
    /// Refusals in the audit log: any local user can knock, so they are
    /// rate-limited (tokens, last refill, how many went unrecorded).
    refusals: Mutex<(f64, std::time::Instant, u64)>,
    /// The same for uids that may not join at all, counted apart: a local
    /// user's flood of knocks never hides a guest's refusal.
    knocks: Mutex<(f64, std::time::Instant, u64)>,
    /// The tunnel's state, when there is one.
    tunnel: Mutex<Option<super::tunnel::Status>>,
    /// The door's menus of guests waiting now, in the order they came:
    /// the host's prefix key opens the latest alone under its name.
    pub door_menus: Mutex<Vec<DoorMenu>>,
    /// Held while the door's key is rebound (one door's change must not
    /// land before another's), with what the key did before the first
    /// door took it (None: no door holds it; Some(None): nothing), put
    /// back when the last door closes.
    pub door_key: tokio::sync::Mutex<Option<Option<String>>>,
    /// The mode the host last gave each guest (by name) in this run: a
    /// guest who connects again comes back in it, not in its invite's (a
    /// demoted guest who reconnected was a pair guest again).
    /// Only under the invite it was given under: one added again or
    /// replaced gives its own mode.
    pub modes: Mutex<std::collections::HashMap<String, (InviteId, crate::profile::Mode)>>,
    /// Writes audit events, and copies them to syslog, off the broker's
    /// thread (None: `start --no-audit`, or the writer could not start).
    audit: Option<crate::audit::writer::Writer>,
}

/// A guest waiting at the door, and the menu that answers it.
#[derive(Debug, Clone)]
pub struct DoorMenu {
    pub token: String,
    pub name: String,
    pub menu: String,
}

/// Refusals recorded at once, then one a second.
const REFUSAL_BURST: f64 = 20.0;

/// One line of the share's log (the broker's stderr), which the host reads
/// in a terminal: guests put names and frames in front of the broker, and
/// what they sent may be quoted here (serde quotes an unknown message type
/// as sent), so control characters are shown, not obeyed.
pub fn log(msg: impl std::fmt::Display) {
    use std::io::Write;
    let text = crate::terminal::printable(&msg.to_string());
    // Not eprintln!, which panics when the log cannot be written (a full
    // runtime directory): a line lost is better than a broker gone.
    let _ = writeln!(std::io::stderr(), "{} broker: {text}", crate::clock::now());
}

impl State {
    /// The state and the announcer's task (run it on the broker's runtime).
    pub fn new(cfg: Config) -> (Arc<State>, impl std::future::Future<Output = ()>) {
        let (tx, _) = watch::channel(None);
        let (notices, rx) = mpsc::unbounded_channel();
        let audit = cfg.audit.as_ref().and_then(|sink| {
            let syslog = sink.syslog.as_deref().and_then(|socket| {
                crate::audit::syslog::Copier::start(socket)
                    .inspect_err(|e| log(format!("audit lines will not be copied to syslog: {e}")))
                    .ok()
            });
            crate::audit::writer::Writer::start(sink.clone(), syslog, log)
                .inspect_err(|e| log(format!("no audit writer: {e}")))
                .ok()
        });
        let state = Arc::new(State {
            audit,
            since: crate::clock::now(),
            roster: Roster::default(),
            audience: Default::default(),
            shutdown: tx,
            notices,
            cast: Mutex::new(None),
            recorder: Mutex::new(None),
            layout: watch::channel(0).0,
            refusals: Mutex::new((REFUSAL_BURST, std::time::Instant::now(), 0)),
            knocks: Mutex::new((REFUSAL_BURST, std::time::Instant::now(), 0)),
            door_menus: Mutex::new(Vec::new()),
            door_key: tokio::sync::Mutex::new(None),
            modes: Mutex::new(Default::default()),
            tunnel: Mutex::new(cfg.tunnel.as_ref().map(|t| super::tunnel::Status {
                relay: t.relay.clone(),
                listen_port: t.listen_port,
                state: "connecting".into(),
                ..Default::default()
            })),
            cfg,
        });
        let announcer = announce_loop(state.clone(), rx);
        (state, announcer)
    }

    /// Logs `text`, shows it on the host's clients and refreshes the
    /// status-line segment; in order, without holding up the caller.
    pub fn announce(&self, text: String) {
        log(&text);
        let _ = self.notices.send(Notice { text, door: false });
    }

    /// A notice from the door: always shown, never counted with others
    /// (knocks are held to the join allowance).
    pub fn announce_door(&self, text: String) {
        log(&text);
        let _ = self.notices.send(Notice { text, door: true });
    }

    /// The mode the host last gave `guest` in this run under the invite
    /// `id`, if any.
    pub fn mode_of(&self, guest: &str, id: &InviteId) -> Option<crate::profile::Mode> {
        let modes = self.modes.lock().unwrap_or_else(|p| p.into_inner());
        modes
            .get(guest)
            .filter(|(given, _)| given == id)
            .map(|(_, m)| *m)
    }

    /// Remembers the host's mode for `guest` under an invite (None: its
    /// invite's again).
    pub fn set_mode_of(&self, guest: &str, mode: Option<(InviteId, crate::profile::Mode)>) {
        let mut modes = self.modes.lock().unwrap_or_else(|p| p.into_inner());
        match mode {
            Some(m) => modes.insert(guest.to_string(), m),
            None => modes.remove(guest),
        };
    }

    /// Changes the tunnel's status (if the share has a tunnel).
    pub fn set_tunnel(&self, f: impl FnOnce(&mut super::tunnel::Status)) {
        if let Ok(mut t) = self.tunnel.lock()
            && let Some(t) = t.as_mut()
        {
            f(t);
        }
    }

    pub fn tunnel(&self) -> Option<super::tunnel::Status> {
        self.tunnel.lock().ok().and_then(|t| t.clone())
    }

    /// Ends the share; the first reason given is the one it ends with.
    pub fn end(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.shutdown.send_if_modified(|r| {
            if r.is_some() {
                return false;
            }
            *r = Some(reason);
            true
        });
    }

    /// Writes an audit event (and a marker in the recording for what
    /// happens to guests) without waiting for the disk; a failure goes to
    /// the share's log and the event is written later.
    pub fn record(&self, event: Event) {
        self.mark(&event);
        if let Some(w) = &self.audit {
            w.record(event, None);
        }
    }

    /// Writes an audit event and waits until it is on disk. Err: the
    /// audit log could not take it (or the share has no audit writer).
    pub async fn record_on_disk(&self, event: Event) -> Result<(), String> {
        self.mark(&event);
        if self.cfg.audit.is_none() {
            return Ok(());
        }
        let Some(w) = &self.audit else {
            return Err("the audit writer did not start (see the share's log)".into());
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        w.record(event, Some(tx));
        rx.await
            .unwrap_or_else(|_| Err("the audit writer has stopped".into()))
    }

    /// A marker in the recording for what happens to guests.
    fn mark(&self, event: &Event) {
        let marker = !matches!(
            event,
            Event::JoinAttempt { .. }
                | Event::Refused { .. }
                | Event::SessionStart { .. }
                | Event::InviteAdded { .. }
                | Event::InviteRevoked { .. }
                | Event::InviteExpired { .. }
                | Event::RecordingStopped { .. }
        );
        if marker {
            // A reason can quote what a guest sent (a malformed frame):
            // whoever replays the recording sees its controls, not obeys.
            let text = crate::terminal::printable(&format!("pairjail: {}", event.describe()));
            self.with_cast(|c| c.marker(&text));
        }
    }

    /// Writes the audit events still queued and sends the lines still
    /// queued for syslog (at the share's end).
    pub fn finish_audit(&self) {
        if let Some(w) = &self.audit
            && !w.finish()
        {
            log("the audit log did not take the share's last events in time: they are lost");
        }
    }

    /// Runs `f` on the recording, if there is one; a recording that
    /// fails or fills up ends (an audit event says why), and with it the
    /// share if recording is required.
    pub fn with_cast(
        &self,
        f: impl FnOnce(&mut Cast) -> Result<Wrote, crate::record::RecordError>,
    ) -> Wrote {
        let mut guard = match self.cast.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let Some(cast) = guard.as_mut() else {
            return Wrote::Ended;
        };
        let why = match f(cast) {
            Ok(Wrote::Stopped(why)) => why,
            Ok(w) => return w,
            Err(e) => e.to_string(),
        };
        *guard = None;
        drop(guard);
        // The host hears of it in the session, not only in the share's log.
        self.announce(format!("the recording stopped: {why}"));
        self.record(Event::RecordingStopped {
            reason: why.clone(),
        });
        // A recorded share does not go on unrecorded, required or not:
        // a pair guest who fills the recordings' disk stops the
        // recording, and went on typing unrecorded (a read-only hunt).
        self.end(if self.cfg.require_recording {
            format!("the recording stopped ({why}) and this share requires one")
        } else {
            format!("the recording stopped ({why}); a recorded share does not go on unrecorded")
        });
        Wrote::Stopped(why)
    }

    /// May this refusal go into the audit log? Some(n): yes, and `n`
    /// before it did not (the flood it was part of).
    pub fn refusal_recorded(&self, knock: bool) -> Option<u64> {
        let bucket = if knock { &self.knocks } else { &self.refusals };
        let mut g = match bucket.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let (tokens, at, dropped) = &mut *g;
        let now = std::time::Instant::now();
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64()).min(REFUSAL_BURST);
        *at = now;
        if *tokens < 1.0 {
            *dropped += 1;
            return None;
        }
        *tokens -= 1.0;
        Some(std::mem::take(dropped))
    }

    /// Is the share being recorded right now?
    pub fn recording(&self) -> Option<std::path::PathBuf> {
        let guard = match self.cast.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        guard.as_ref().map(|c| c.path().to_path_buf())
    }

    /// The clients the broker started (guests' and the recording's):
    /// never the host's.
    pub fn own_clients(&self) -> Vec<u32> {
        let mut pids = self.roster.clients();
        pids.extend(self.audience.clients());
        if let Ok(Some(pid)) = self.recorder.lock().as_deref() {
            pids.push(*pid);
        }
        pids
    }
}

/// Notices of one burst shown one by one; the rest are counted.
const MAX_NOTICES_AT_ONCE: usize = 3;

/// A notice for the host's clients.
#[derive(Debug)]
pub struct Notice {
    text: String,
    /// From the door: a guest waits for the host's answer.
    door: bool,
}

/// What a burst of notices shows: every one from the door, and of the
/// others the last few, after a count of the rest.
fn burst(notices: Vec<Notice>) -> Vec<String> {
    let (door, mut texts): (Vec<Notice>, Vec<Notice>) = notices.into_iter().partition(|n| n.door);
    let shown = texts.split_off(texts.len().saturating_sub(MAX_NOTICES_AT_ONCE));
    let more = (!texts.is_empty()).then(|| {
        format!(
            "{} earlier notice(s) not shown (see `pairjail status` and the share's log)",
            texts.len()
        )
    });
    more.into_iter()
        .chain(shown.into_iter().map(|n| n.text))
        .chain(door.into_iter().map(|n| n.text))
        .collect()
}

async fn announce_loop(state: Arc<State>, mut rx: mpsc::UnboundedReceiver<Notice>) {
    let cfg = &state.cfg;
    if let Err(e) = notices::install_segment(&cfg.tmux, &cfg.session).await {
        log(format!("no guests segment in the status line: {e}"));
    }
    while let Some(first) = rx.recv().await {
        // A burst (an audience arriving) is one segment update: setting a
        // tmux option redraws every client.
        let mut texts = vec![first];
        while let Ok(more) = rx.try_recv() {
            texts.push(more);
        }
        // Each notice can take tmux seconds per host client (a pair guest
        // can make it answer slowly): a burst shows its last few and
        // counts the rest, so notices never queue up for hours behind
        // each other. Every one is in the share's log already.
        for text in burst(texts) {
            notices::tell_host(
                &cfg.tmux,
                &cfg.session,
                cfg.host_uid,
                &|| state.own_clients(),
                &format!("pairjail: {text}"),
            )
            .await;
        }
        let _ = notices::set_segment(&cfg.tmux, &cfg.session, &state.roster.summary()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_notices_shows_its_last_few_and_counts_the_rest() {
        let texts = |n: usize| {
            (1..=n)
                .map(|i| Notice {
                    text: format!("n{i}"),
                    door: false,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(burst(texts(2)), ["n1", "n2"]);
        let shown = burst(texts(1000));
        assert_eq!(shown.len(), MAX_NOTICES_AT_ONCE + 1);
        assert!(
            shown[0].starts_with("997 earlier notice(s) not shown"),
            "{shown:?}"
        );
        assert_eq!(shown[1..], ["n998", "n999", "n1000"]);
        // A knock at the door is never folded into the count, however
        // many joins come around it.
        let mut mixed = texts(20);
        mixed.insert(
            3,
            Notice {
                text: "knock".into(),
                door: true,
            },
        );
        let shown = burst(mixed);
        assert!(shown.contains(&"knock".to_string()), "{shown:?}");
        assert_eq!(shown.len(), MAX_NOTICES_AT_ONCE + 2);
    }
}
