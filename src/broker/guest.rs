//! One admitted guest, relayed: its tmux client on a pty the broker owns,
//! the copy loop, and the host's orders and the guest's deadlines acting
//! on it. Output is copied to the guest; input only while the guest's
//! mode allows it, so a mirror guest's keystrokes never reach tmux.
//!
//! Nothing in the loop waits on the guest or on tmux alone: both
//! directions are buffered (bounded), so a guest that stops reading still
//! gets kicked, demoted or timed out at once.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::net::UnixStream;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use super::altscreen;
use super::notices;
use super::protocol::{Frame, FrameError, Limits, Msg, clamp_size, read_frame_async};
use super::roster::Order;
use super::state::{State, log};
use super::tmux::{Tmux, literal};
use crate::audit::Event;
use crate::profile::Mode;
use crate::terminal as pty;

/// Bytes buffered per direction before the loop stops reading that side.
const MAX_PENDING: usize = 256 * 1024;
static CLIENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// How long before the end a guest is warned.
const WARNING: Duration = Duration::from_secs(60);

/// Who the guest is and what it was given, fixed at admission.
#[derive(Debug, Clone)]
pub struct Spec {
    pub serial: u64,
    pub name: String,
    pub term: String,
    pub cols: u16,
    pub rows: u16,
    pub limits: Limits,
    /// Unix seconds: the invite's expiry.
    pub expires: Option<u64>,
    /// The key fingerprint and source address, for the audit log.
    pub key: Option<String>,
    pub source: Option<String>,
}

struct Client {
    child: crate::terminal::PtyChild,
    master: AsyncFd<OwnedFd>,
    /// The process the broker started (the tmux client, or its jail).
    pid: Option<u32>,
    filter: altscreen::Filter,
}

impl Client {
    /// tmux's name for this client, to aim a message or a flag at it.
    async fn name(&self, t: &Tmux) -> Result<String, String> {
        let pid = self.pid.ok_or("the guest's tmux client has ended")?;
        notices::client_named(t, pid)
            .await
            .map_err(|e| e.to_string())
    }
}

fn spawn_client(state: &State, spec: &Spec, mode: Mode) -> Result<Client, String> {
    let cfg = &state.cfg;
    let what = match mode {
        Mode::Mirror => "you watch; your keys go nowhere",
        Mode::Pair => "you type in the host's session",
        Mode::Rogue => "your own window in the host's session",
    };
    let recorded = if state.recording().is_some() {
        " · recorded"
    } else {
        ""
    };
    let banner = format!(
        "{} · leave: #{{prefix}} d",
        literal(&format!(
            "pairjail: {}'s session {} · you are {mode}: {what}{recorded}",
            cfg.host, cfg.session
        ))
    );
    let mut cmd = cfg.tmux.command();
    cmd.args(Tmux::guest_client_args(
        &cfg.session,
        &spec.name,
        mode,
        // Each client its own number: a rogue guest's new client must not
        // meet the session its old one is leaving behind.
        CLIENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        &banner,
    ))
    .env_clear()
    .env("TERM", &spec.term)
    .env("LC_CTYPE", "C.UTF-8")
    .env("PATH", "/usr/bin:/bin");
    let p = pty::spawn_on_pty(cmd, spec.cols, spec.rows)
        .map_err(|e| format!("the broker could not start a tmux client: {e}"))?;
    let master = pty::async_master(p.master)
        .map_err(|e| format!("the broker could not set up the terminal: {e}"))?;
    Ok(Client {
        pid: p.child.id(),
        child: p.child,
        master,
        filter: altscreen::Filter::default(),
    })
}

/// What the guest's connection is currently doing.
struct Link {
    spec: Spec,
    mode: Mode,
    client: Client,
    /// Guest input not yet taken by the tmux client.
    to_tmux: Vec<u8>,
    /// Guest input not yet recorded (the recording's input budget is
    /// spent): it reaches tmux only once it is in the recording.
    held: Vec<u8>,
    /// Session output not yet taken by the guest.
    to_guest: Vec<u8>,
    last_input: Instant,
    warned: bool,
    /// A warning that could not be shown yet (the client was still
    /// attaching) is tried again from then on.
    warn_after: Instant,
    /// Until then the client's banner may still replace a message.
    banner_until: Instant,
}

/// Runs an admitted guest until it leaves, is sent away or the share ends.
pub async fn relayed(
    state: Arc<State>,
    s: UnixStream,
    mut buf: Vec<u8>,
    spec: Spec,
    mode: Mode,
    mut orders: UnboundedReceiver<Order>,
) {
    let serial = spec.serial;
    let name = spec.name.clone();
    let (key, source) = (spec.key.clone(), spec.source.clone());
    let client = match spawn_client(&state, &spec, mode) {
        Ok(c) => c,
        Err(e) => {
            log(&e);
            let _ = state.record(Event::Left {
                guest: name.clone(),
                reason: e.clone(),
            });
            let mut s = s;
            let _ = tokio::io::AsyncWriteExt::write_all(
                &mut s,
                &Frame::Msg(Msg::Refused { reason: e }).encode(),
            )
            .await;
            state.roster.remove(serial);
            return;
        }
    };
    state.roster.set_client(serial, client.pid);
    let welcome = Frame::Msg(Msg::Welcome {
        session: state.cfg.session.clone(),
        mode,
        recorded: state.recording().is_some(),
    })
    .encode();
    let mut link = Link {
        spec,
        mode,
        client,
        to_tmux: Vec::new(),
        held: Vec::new(),
        to_guest: welcome,
        last_input: Instant::now(),
        warned: false,
        warn_after: Instant::now(),
        banner_until: Instant::now() + super::tmux::BANNER,
    };
    state.announce(format!("{name} joined as {mode}"));
    let _ = state.record(Event::Joined {
        guest: name.clone(),
        mode,
        key: key.clone(),
        source: source.clone(),
    });
    let (mut rd, wr) = s.into_split();
    let reason = copy(&state, &mut link, &mut rd, &wr, &mut buf, &mut orders).await;
    if let Some(reason) = &reason {
        // A short goodbye; a guest that stopped reading does not get to
        // hold the broker.
        let bye = Frame::Msg(Msg::Bye {
            reason: reason.clone(),
        })
        .encode();
        link.to_guest.extend_from_slice(&bye);
        let _ = tokio::time::timeout(Duration::from_secs(2), flush(&wr, &mut link.to_guest)).await;
    }
    let _ = link.client.child.kill().await;
    state.roster.remove(serial);
    let reason = reason.unwrap_or_else(|| "disconnected".into());
    state.announce(format!("{name} left ({reason})"));
    let _ = state.record(Event::Left {
        guest: name,
        reason,
    });
}

async fn flush(
    wr: &tokio::net::unix::OwnedWriteHalf,
    pending: &mut Vec<u8>,
) -> std::io::Result<()> {
    while !pending.is_empty() {
        wr.writable().await?;
        match wr.try_write(pending) {
            Ok(n) => {
                pending.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The next deadline of a guest, and what happens then.
enum Due {
    Warn(String),
    End(String),
    Idle,
}

fn unix_to_instant(at: u64) -> Instant {
    let now = crate::clock::now();
    Instant::now() + Duration::from_secs(at.saturating_sub(now))
}

fn next_due(link: &Link, joined: Instant) -> Option<(Instant, Due)> {
    let mut ends: Vec<(Instant, String)> = vec![];
    if let Some(at) = link.spec.expires {
        ends.push((
            unix_to_instant(at),
            format!("your invite expired at {}", crate::clock::rfc3339(at)),
        ));
    }
    if let Some(max) = link.spec.limits.max_duration {
        ends.push((
            joined + Duration::from_secs(max),
            format!(
                "the guest time limit ({}) is up",
                humantime::format_duration(Duration::from_secs(max))
            ),
        ));
    }
    let end = ends.into_iter().min_by_key(|(at, _)| *at);
    let mut due: Vec<(Instant, Due)> = vec![];
    if let Some((at, why)) = end {
        if !link.warned {
            let when = at
                .checked_sub(WARNING)
                .unwrap_or(at)
                .max(link.warn_after)
                .min(at);
            let left = at.saturating_duration_since(when).as_secs();
            due.push((
                when,
                Due::Warn(format!(
                    "pairjail: you will be disconnected in {left} s: {}",
                    why.replace("expired at", "expires at")
                        .replace(" is up", " will be up")
                )),
            ));
        }
        due.push((at, Due::End(why)));
    }
    if let Some(idle) = link.spec.limits.idle_timeout {
        due.push((link.last_input + Duration::from_secs(idle), Due::Idle));
    }
    due.into_iter().min_by_key(|(at, _)| *at)
}

/// The copy loop. Returns the reason to tell the guest, if it is still
/// there to hear it.
async fn copy(
    state: &State,
    link: &mut Link,
    rd: &mut tokio::net::unix::OwnedReadHalf,
    wr: &tokio::net::unix::OwnedWriteHalf,
    buf: &mut Vec<u8>,
    orders: &mut UnboundedReceiver<Order>,
) -> Option<String> {
    let mut shutdown = state.shutdown.subscribe();
    if let Some(reason) = shutdown.borrow().clone() {
        return Some(reason);
    }
    let joined = Instant::now();
    let mut out = [0u8; 16384];
    let mut last_touch = 0u64;
    loop {
        let due = next_due(link, joined);
        let at = due
            .as_ref()
            .map_or(Instant::now() + Duration::from_secs(86400 * 365), |d| d.0);
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                return Some(shutdown.borrow().clone().unwrap_or_else(|| "the session ended".into()));
            }
            order = orders.recv() => match order {
                Some(Order::Kick(reason)) => {
                    let _ = state.record(Event::Kicked { guest: link.spec.name.clone(), reason: reason.clone() });
                    return Some(reason);
                }
                Some(Order::Mode(mode, reply)) => {
                    let r = change_mode(state, link, mode).await;
                    let _ = reply.send(r);
                }
                None => {}
            },
            _ = tokio::time::sleep_until(at), if due.is_some() => match due.map(|d| d.1) {
                Some(Due::Warn(text)) => {
                    let shown = match link.client.name(&state.cfg.tmux).await {
                        Ok(name) => notices::show(&state.cfg.tmux, &name, &text, 15000).await.is_ok(),
                        Err(_) => false,
                    };
                    // The banner, chained after the client's attach, can
                    // land on top of a warning shown as the client appears:
                    // one shown that early is shown again once it is gone.
                    let now = Instant::now();
                    link.warned = shown && now >= link.banner_until;
                    link.warn_after = if shown {
                        link.banner_until.max(now + Duration::from_millis(250))
                    } else {
                        now + Duration::from_millis(250)
                    };
                }
                Some(Due::End(why)) => return Some(why),
                Some(Due::Idle) => {
                    let idle = link.spec.limits.idle_timeout.unwrap_or(0);
                    return Some(format!(
                        "no input for {}: disconnected (idle timeout)",
                        humantime::format_duration(Duration::from_secs(idle))
                    ));
                }
                None => {}
            },
            // Input held back for the recording: offered again shortly.
            _ = tokio::time::sleep(Duration::from_millis(100)), if !link.held.is_empty() => release(state, link),
            frame = read_frame_async(rd, buf), if link.to_tmux.len() < MAX_PENDING && link.held.len() < MAX_PENDING => match frame {
                Ok(Some(Frame::Data(bytes))) => {
                    link.last_input = Instant::now();
                    let now = crate::clock::now();
                    if now != last_touch {
                        state.roster.touch(link.spec.serial, now);
                        last_touch = now;
                    }
                    // The whole point of mirror mode: its input goes nowhere.
                    if link.mode != Mode::Mirror {
                        link.held.extend_from_slice(&bytes);
                        release(state, link);
                    }
                }
                Ok(Some(Frame::Msg(Msg::Resize { cols, rows }))) => {
                    let (cols, rows) = clamp_size(cols, rows);
                    link.spec.cols = cols;
                    link.spec.rows = rows;
                    let _ = pty::set_size(link.client.master.get_ref().as_fd(), cols, rows);
                }
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(FrameError::Malformed(m)) => return Some(format!("malformed frame from the guest: {m}")),
                Err(_) => return None,
            },
            ready = link.client.master.readable(), if link.to_guest.len() < MAX_PENDING => {
                let Ok(mut guard) = ready else { return Some("the terminal failed".into()) };
                match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), &mut out).map_err(std::io::Error::from)) {
                    Ok(Ok(0)) | Ok(Err(_)) => return Some(client_ended(state, link).await),
                    Ok(Ok(n)) => {
                        let mut data = Vec::with_capacity(n);
                        link.client.filter.push(&out[..n], &mut data);
                        if !data.is_empty() {
                            link.to_guest.extend_from_slice(&Frame::Data(data).encode());
                        }
                    }
                    Err(_would_block) => {}
                }
            }
            ready = link.client.master.writable(), if !link.to_tmux.is_empty() => {
                let Ok(mut guard) = ready else { return Some("the terminal failed".into()) };
                match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), &link.to_tmux).map_err(std::io::Error::from)) {
                    Ok(Ok(n)) => { link.to_tmux.drain(..n); }
                    Ok(Err(_)) => return Some(client_ended(state, link).await),
                    Err(_would_block) => {}
                }
            }
            ready = wr.writable(), if !link.to_guest.is_empty() => {
                if ready.is_err() {
                    return None;
                }
                match wr.try_write(&link.to_guest) {
                    Ok(n) => { link.to_guest.drain(..n); }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return None,
                }
            }
        }
    }
}

/// Moves held input on to tmux once it is recorded as this guest's
/// (at once when the share is not recorded).
fn release(state: &State, link: &mut Link) {
    if link.held.is_empty() {
        return;
    }
    let held = &link.held;
    let name = &link.spec.name;
    if state.with_cast(|c| c.input(name, held)) == crate::record::Wrote::Later {
        return;
    }
    link.to_tmux.append(&mut link.held);
}

/// Why the guest's tmux client ended: the share is over, the session is
/// gone, or the client alone was detached.
async fn client_ended(state: &State, link: &mut Link) -> String {
    let _ = link.client.child.wait().await;
    if let Some(reason) = state.shutdown.borrow().clone() {
        return reason;
    }
    let target = format!("={}", state.cfg.session);
    match notices::tmux(&state.cfg.tmux, &["has-session", "-t", &target]).await {
        Ok(_) => "your tmux client was detached".into(),
        Err(_) => "the session ended".into(),
    }
}

/// A live mode change. Mirror ↔ pair keeps the client and flips who
/// listens: the broker at once (the next byte), tmux right after (bytes
/// already inside the client). Changes to or from rogue give the guest a
/// new client, which redraws its screen.
async fn change_mode(state: &State, link: &mut Link, mode: Mode) -> Result<String, String> {
    let name = link.spec.name.clone();
    if mode == link.mode {
        return Ok(format!("{name} is already {mode}"));
    }
    state
        .cfg
        .mode_allowed(&link.spec.limits.allowed_modes, mode)?;
    let old = link.mode;
    let how = if old != Mode::Rogue && mode != Mode::Rogue {
        link.mode = mode;
        if mode == Mode::Mirror {
            // Typed but not yet taken by tmux: dropped with the demotion.
            link.to_tmux.clear();
            link.held.clear();
        }
        let name = link.client.name(&state.cfg.tmux).await?;
        notices::set_read_only(&state.cfg.tmux, &name, mode == Mode::Mirror)
            .await
            .map_err(|e| format!("the mode changed in the broker, but tmux refused: {e}"))?;
        "at once"
    } else {
        let client = spawn_client(state, &link.spec, mode)?;
        let mut old_client = std::mem::replace(&mut link.client, client);
        let _ = old_client.child.kill().await;
        link.mode = mode;
        link.to_tmux.clear();
        link.held.clear();
        state.roster.set_client(link.spec.serial, link.client.pid);
        "with a new tmux client"
    };
    state.roster.update(link.spec.serial, |g| g.mode = mode);
    if let Ok(name) = link.client.name(&state.cfg.tmux).await {
        let text = format!("pairjail: the host made you {mode}");
        let _ = notices::show(&state.cfg.tmux, &name, &text, 5000).await;
    }
    state.announce(format!("{name} is now {mode} (was {old})"));
    let _ = state.record(Event::ModeChanged {
        guest: name.clone(),
        from: old,
        to: mode,
    });
    Ok(format!("{name} is now {mode} ({how})"))
}
