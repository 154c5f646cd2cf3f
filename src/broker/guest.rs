//! One admitted guest, relayed: its tmux client on a pty the broker owns,
//! the copy loop, and the host's orders and the guest's deadlines acting
//! on it. Output is copied to the guest; input only while the guest's
//! mode allows it, so a mirror guest's keystrokes never reach tmux.
//!
//! A mirror guest watches through its mirror group's shared client (see
//! `audience`); pair and rogue guests have a client of their own.
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
use super::audience::{self, Member, Next};
use super::notices;
use super::outbox::Outbox;
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

/// How long a group member's terminal size must hold before it moves to
/// the group of that size.
const SETTLE: Duration = Duration::from_millis(200);

/// A member's moves in a row, each after twice the wait of the one
/// before (SETTLE, 2×, 4×… up to 128×, 25.6 s); a minute without one and
/// the next waits SETTLE again. A move to a size nobody else has starts a
/// tmux client and a screen model on the host: without this, a guest
/// resizing in a loop made the host start one every SETTLE.
#[derive(Debug, Default)]
struct Moves {
    in_a_row: u32,
    last: Option<Instant>,
}

const QUIET: Duration = Duration::from_secs(60);

impl Moves {
    /// When a size that settles at `now` may move the member.
    fn due(&self, now: Instant) -> Instant {
        let settled = now + SETTLE;
        match self.last {
            Some(last) if now.saturating_duration_since(last) < QUIET => {
                settled.max(last + SETTLE * (1 << self.in_a_row.min(7)))
            }
            _ => settled,
        }
    }

    fn moved(&mut self, now: Instant) {
        let streak = self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < QUIET);
        self.in_a_row = if streak { self.in_a_row + 1 } else { 1 };
        self.last = Some(now);
    }
}

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
    /// The invite it was admitted under (or the one that replaced it).
    pub invite: super::roster::InviteId,
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

/// What the guest is told it is, on its status line.
fn banner(state: &State, mode: Mode) -> String {
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
    format!(
        "pairjail: {}'s session {} · you are {mode}: {what}{recorded}",
        cfg.host, cfg.session
    )
}

/// A tmux client of the session on a new pty the broker owns, with the
/// guest's terminal type and nothing else of its environment.
fn start_client(
    state: &State,
    args: Vec<String>,
    term: &str,
    cols: u16,
    rows: u16,
) -> Result<(crate::terminal::PtyChild, AsyncFd<OwnedFd>), String> {
    let mut cmd = state.cfg.tmux.command();
    cmd.args(args)
        .env_clear()
        .env("TERM", term)
        .env("LC_CTYPE", "C.UTF-8")
        .env("PATH", "/usr/bin:/bin");
    let p = pty::spawn_on_pty(cmd, cols, rows)
        .map_err(|e| format!("the broker could not start a tmux client: {e}"))?;
    let master = pty::async_master(p.master)
        .map_err(|e| format!("the broker could not set up the terminal: {e}"))?;
    Ok((p.child, master))
}

/// A pair or rogue guest's own client; its banner is tmux's message.
fn spawn_client(state: &State, spec: &Spec, mode: Mode) -> Result<Client, String> {
    let banner = format!("{} · leave: #{{prefix}} d", literal(&banner(state, mode)));
    let args = Tmux::guest_client_args(
        &state.cfg.session,
        &spec.name,
        mode,
        // Each client its own number: a rogue guest's new client must not
        // meet the session its old one is leaving behind.
        CLIENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        &banner,
    );
    let (child, master) = start_client(state, args, &spec.term, spec.cols, spec.rows)?;
    Ok(Client {
        pid: child.id(),
        child,
        master,
        filter: altscreen::Filter::default(),
    })
}

/// A mirror guest's place in the group of its size and terminal type
/// (a group of one to start with), and the screen as it is now.
fn join_group(state: &State, spec: &Spec) -> Result<(Member, Vec<u8>), String> {
    let key = audience::Key {
        term: spec.term.clone(),
        cols: spec.cols,
        rows: spec.rows,
    };
    state.audience.join(key, || {
        start_client(
            state,
            Tmux::watch_args(&state.cfg.session),
            &spec.term,
            spec.cols,
            spec.rows,
        )
    })
}

/// A message the broker draws on a group member's own last row.
struct Overlay {
    text: String,
    /// Drawn on the first row (tmux's status line is on top).
    on_top: bool,
    /// None: its time is up; the row is put back once the member has
    /// caught up with the group.
    until: Option<Instant>,
}

/// What the guest's connection is currently doing.
struct Link {
    spec: Spec,
    mode: Mode,
    /// A pair or rogue guest's own client.
    client: Option<Client>,
    /// A mirror guest's group.
    member: Option<Member>,
    overlay: Option<Overlay>,
    /// Guest input not yet taken by the tmux client.
    to_tmux: Vec<u8>,
    /// Guest input not yet recorded (the recording's input budget is
    /// spent): it reaches tmux only once it is in the recording.
    held: Vec<u8>,
    /// Session output not yet taken by the guest.
    to_guest: Outbox,
    last_input: Instant,
    warned: bool,
    /// A warning that could not be shown yet (the client was still
    /// attaching) is tried again from then on.
    warn_after: Instant,
    /// Until then the client's banner may still replace a message.
    banner_until: Instant,
}

impl Link {
    /// Gives the guest its screen for `mode`: its own client, or its
    /// group's (whose current screen is queued for it, with the banner).
    fn attach(&mut self, state: &State, mode: Mode) -> Result<(), String> {
        if mode == Mode::Mirror {
            let (member, first) = join_group(state, &self.spec)?;
            self.member = Some(member);
            self.client = None;
            self.to_guest.push_vec(first);
        } else {
            self.client = Some(spawn_client(state, &self.spec, mode)?);
            self.member = None;
        }
        state
            .roster
            .set_client(self.spec.serial, self.client.as_ref().and_then(|c| c.pid));
        Ok(())
    }

    /// Shows `text` to this guest alone for `ms`: tmux's message on its
    /// own client, or drawn by the broker on a group member's last row.
    /// Was it shown?
    async fn show(&mut self, state: &State, text: &str, ms: u64) -> bool {
        if let Some(member) = &self.member {
            // Not known (tmux failed, or took longer than a guest should
            // wait): the last row, where tmux puts it by default.
            let asked = notices::status_on_top(&state.cfg.tmux, &state.cfg.session);
            let on_top = matches!(
                tokio::time::timeout(Duration::from_millis(300), asked).await,
                Ok(Ok(true))
            );
            self.to_guest.push_vec(member.message(text, on_top));
            self.overlay = Some(Overlay {
                text: text.to_string(),
                on_top,
                until: Some(Instant::now() + Duration::from_millis(ms)),
            });
            return true;
        }
        let Some(client) = &self.client else {
            return false;
        };
        match client.name(&state.cfg.tmux).await {
            Ok(name) => {
                let ms = u32::try_from(ms).unwrap_or(u32::MAX);
                notices::show(&state.cfg.tmux, &name, text, ms)
                    .await
                    .is_ok()
            }
            Err(_) => false,
        }
    }

    /// After group output: a message still up is drawn again (the output
    /// may have covered it); one whose time is up is taken down once the
    /// member has everything the group sent before it.
    fn after_group_output(&mut self) {
        let Some(overlay) = &self.overlay else {
            return;
        };
        match (overlay.until, &self.member) {
            // Drawn anew: the output may have covered it.
            (Some(_), Some(member)) => self
                .to_guest
                .push_vec(member.message(&overlay.text, overlay.on_top)),
            (Some(_), None) => {}
            (None, Some(member)) => {
                if let Some(screen) = member.restore() {
                    self.to_guest.push_vec(screen);
                    self.overlay = None;
                }
            }
            (None, None) => self.overlay = None,
        }
    }
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
    let mut to_guest = Outbox::default();
    to_guest.push_vec(
        Frame::Msg(Msg::Welcome {
            session: state.cfg.session.clone(),
            mode,
            recorded: state.recording().is_some(),
        })
        .encode(),
    );
    let mut link = Link {
        spec,
        mode,
        client: None,
        member: None,
        overlay: None,
        to_tmux: Vec::new(),
        held: Vec::new(),
        to_guest,
        last_input: Instant::now(),
        warned: false,
        warn_after: Instant::now(),
        banner_until: Instant::now() + super::tmux::BANNER,
    };
    if let Err(e) = link.attach(&state, mode) {
        log(&e);
        state.record(Event::Left {
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
    let (mut rd, wr) = s.into_split();
    if link.member.is_some() {
        // The screen first, as far as the socket takes it now: the banner
        // waits for tmux to say where its status line is.
        let _ = link
            .to_guest
            .write_with(|slices| wr.try_write_vectored(slices));
        let text = format!("{} · leave: Enter ~ .", banner(&state, mode));
        link.show(&state, &text, super::tmux::BANNER.as_millis() as u64)
            .await;
    }
    state.announce(format!("{name} joined as {mode}"));
    state.record(Event::Joined {
        guest: name.clone(),
        mode,
        key: key.clone(),
        source: source.clone(),
    });
    let reason = copy(&state, &mut link, &mut rd, &wr, &mut buf, &mut orders).await;
    if let Some(reason) = &reason {
        // A short goodbye; a guest that stopped reading does not get to
        // hold the broker.
        let bye = Frame::Msg(Msg::Bye {
            reason: reason.clone(),
        })
        .encode();
        link.to_guest.push_vec(bye);
        let _ = tokio::time::timeout(Duration::from_secs(2), flush(&wr, &mut link.to_guest)).await;
    }
    if let Some(client) = link.client.as_mut() {
        client.child.kill().await;
    }
    // Leaving its group: the last member's going ends the group's client.
    drop(link.member.take());
    state.roster.remove(serial);
    let reason = reason.unwrap_or_else(|| "disconnected".into());
    state.announce(format!("{name} left ({reason})"));
    state.record(Event::Left {
        guest: name,
        reason,
    });
}

async fn flush(wr: &tokio::net::unix::OwnedWriteHalf, pending: &mut Outbox) -> std::io::Result<()> {
    while !pending.is_empty() {
        wr.writable().await?;
        match pending.write_with(|slices| wr.try_write_vectored(slices)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The guest's own client's pty, readable (never, for a group member).
async fn own_readable(
    client: &Option<Client>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, OwnedFd>> {
    match client {
        Some(c) => c.master.readable().await,
        None => std::future::pending().await,
    }
}

async fn own_writable(
    client: &Option<Client>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, OwnedFd>> {
    match client {
        Some(c) => c.master.writable().await,
        None => std::future::pending().await,
    }
}

/// The group's next output (never, for a guest with its own client).
async fn group_output(member: &mut Option<Member>) -> Next {
    match member {
        Some(m) => m.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
        // The end first: at the same instant it wins over its warning.
        due.push((at, Due::End(why.clone())));
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
    let mut data = Vec::with_capacity(out.len());
    let mut regroup_at: Option<Instant> = None;
    let mut moves = Moves::default();
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
                    state.record(Event::Kicked { guest: link.spec.name.clone(), reason: reason.clone() });
                    return Some(reason);
                }
                Some(Order::Mode(mode, reply)) => {
                    // A move between groups still pending is moot now.
                    regroup_at = None;
                    let r = change_mode(state, link, mode).await;
                    let failed = r.as_ref().err().cloned();
                    let _ = reply.send(r);
                    // A demotion that could not give a screen: out, rather
                    // than left typing or frozen.
                    if let (Some(e), None, None) = (failed, &link.client, &link.member) {
                        return Some(e);
                    }
                }
                Some(Order::Terms(t)) => {
                    if let Some(why) = t.refuses(&link.spec.invite, link.spec.key.as_deref(), link.spec.source.as_deref()) {
                        state.record(Event::Kicked { guest: link.spec.name.clone(), reason: why.to_string() });
                        return Some(why.to_string());
                    }
                    link.spec.expires = Some(t.expires);
                    link.spec.invite = t.id.clone();
                    link.warned = false;
                    state.roster.update(link.spec.serial, |g| g.expires = Some(t.expires));
                    if t.mode != link.mode {
                        regroup_at = None;
                        // A mode the new invite gives that cannot be had
                        // (the session or the guest's profile does not
                        // allow it): out, as admission would refuse it,
                        // never left in the old mode (a review).
                        if let Err(e) = change_mode(state, link, t.mode).await {
                            state.announce(format!(
                                "{} disconnected: its new invite's mode {} cannot be had: {e}",
                                link.spec.name, t.mode
                            ));
                            let why = format!("the host changed your invite: {e}");
                            state.record(Event::Kicked { guest: link.spec.name.clone(), reason: why.clone() });
                            return Some(why);
                        }
                    }
                }
                None => {}
            },
            _ = tokio::time::sleep_until(at), if due.is_some() => match due.map(|d| d.1) {
                Some(Due::Warn(text)) => {
                    let shown = link.show(state, &text, 15000).await;
                    // The banner, chained after the client's attach, can
                    // land on top of a warning shown as the client appears:
                    // one shown that early is shown again once it is gone.
                    let now = Instant::now();
                    // (A group member's banner is the broker's own, which
                    // the warning replaces.)
                    link.warned = shown && (now >= link.banner_until || link.member.is_some());
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
                    if let Some(c) = &link.client {
                        let _ = pty::set_size(c.master.get_ref().as_fd(), cols, rows);
                    } else {
                        // A group member moves once its size has settled:
                        // a stream of resizes must not start a tmux client
                        // and a screen model each.
                        let moved = link.member.as_ref().is_some_and(|m| {
                            (m.key().cols, m.key().rows) != (cols, rows)
                        });
                        regroup_at = moved.then(|| moves.due(Instant::now()));
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(FrameError::Malformed(m)) => return Some(format!("malformed frame from the guest: {m}")),
                Err(_) => return None,
            },
            ready = own_readable(&link.client), if link.to_guest.len() < MAX_PENDING => {
                let Ok(mut guard) = ready else { return Some("the terminal failed".into()) };
                match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), &mut out).map_err(std::io::Error::from)) {
                    Ok(Ok(0)) | Ok(Err(_)) => return Some(client_ended(state, link).await),
                    Ok(Ok(n)) => {
                        data.clear();
                        if let Some(c) = link.client.as_mut() {
                            c.filter.push(&out[..n], &mut data);
                        }
                        if !data.is_empty() {
                            link.to_guest.push_vec(Frame::data(&data));
                        }
                    }
                    Err(_would_block) => {}
                }
            }
            next = group_output(&mut link.member), if link.to_guest.len() < MAX_PENDING => {
                match next {
                    Next::Frame(frame) => link.to_guest.push(frame),
                    Next::Redraw(frame) => link.to_guest.push_vec(frame),
                    Next::Ended => return Some(why_ended(state).await),
                }
                link.after_group_output();
            }
            // A member moves once it has taken what it was sent: a guest
            // that does not read cannot pile up one redraw per resize.
            _ = sleep_until_some(regroup_at), if link.to_guest.len() < MAX_PENDING => {
                regroup_at = None;
                let moved = link.client.is_none()
                    && link.member.as_ref().is_some_and(|m| {
                        (m.key().cols, m.key().rows) != (link.spec.cols, link.spec.rows)
                    });
                if moved {
                    moves.moved(Instant::now());
                    match regroup(state, link) {
                        Ok(true) => {}
                        // Tried again later (ever less often), in case a
                        // size frees.
                        Ok(false) => {
                            let (c, r) = link.member.as_ref().map_or((0, 0), |m| (m.key().cols, m.key().rows));
                            let text = format!(
                                "pairjail: {} sizes shown already; yours stays {c}x{r}",
                                audience::MAX_GROUPS
                            );
                            link.show(state, &text, 5000).await;
                            regroup_at = Some(moves.due(Instant::now()));
                        }
                        Err(e) => return Some(e),
                    }
                }
            }
            _ = sleep_until_some(link.overlay.as_ref().and_then(|o| o.until)) => {
                if let Some(o) = link.overlay.as_mut() {
                    o.until = None;
                }
                link.after_group_output();
            }
            ready = own_writable(&link.client), if !link.to_tmux.is_empty() => {
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
                match link.to_guest.write_with(|slices| wr.try_write_vectored(slices)) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return None,
                }
            }
        }
    }
}

/// A group member whose terminal changed size moves to the group of its
/// new size, which draws the whole screen for it.
/// Moves a member to the group of its size: Ok(false), and nothing
/// changed, when the share already shows [`audience::MAX_GROUPS`] sizes
/// (being cut off for resizing a window is worse than a screen of the
/// old size).
fn regroup(state: &State, link: &mut Link) -> Result<bool, String> {
    let key = audience::Key {
        term: link.spec.term.clone(),
        cols: link.spec.cols,
        rows: link.spec.rows,
    };
    if !state.audience.has_room(&key, link.member.as_ref()) {
        return Ok(false);
    }
    // Alone in its group: leaving first frees its place for the new one.
    if link.member.as_ref().is_some_and(audience::Member::alone) {
        link.member = None;
    }
    let (member, first) = join_group(state, &link.spec)?;
    // Frames of the old size still queued are harmless: the new screen
    // is drawn whole after them.
    link.member = Some(member);
    link.to_guest.push_vec(first);
    if let (Some(o), Some(m)) = (&link.overlay, &link.member) {
        link.to_guest.push_vec(m.message(&o.text, o.on_top));
    }
    Ok(true)
}

/// Moves held input on to tmux once it is recorded as this guest's
/// (at once when the share is not recorded).
fn release(state: &State, link: &mut Link) {
    if link.held.is_empty() {
        return;
    }
    let held = &link.held;
    let name = &link.spec.name;
    match state.with_cast(|c| c.input(name, held)) {
        crate::record::Wrote::Later => return,
        // The recording stopped (the share ends with it): the keys it did
        // not record go nowhere. (Ended is also what a share that was
        // never recorded gets.)
        crate::record::Wrote::Stopped(_) | crate::record::Wrote::Ended
            if state.cfg.record.is_some() =>
        {
            link.held.clear();
            return;
        }
        _ => {}
    }
    link.to_tmux.append(&mut link.held);
}

/// Why the guest's own tmux client ended: the share is over, the
/// session is gone, or the client alone was detached.
async fn client_ended(state: &State, link: &mut Link) -> String {
    if let Some(c) = link.client.as_mut() {
        c.child.wait().await;
    }
    why_ended(state).await
}

/// Why a client ended (a group's is reaped by its group): the share is
/// over, the session is gone, or the client alone was detached.
async fn why_ended(state: &State) -> String {
    if let Some(reason) = state.shutdown.borrow().clone() {
        return reason;
    }
    let target = format!("={}", state.cfg.session);
    match notices::tmux(&state.cfg.tmux, &["has-session", "-t", &target]).await {
        Ok(_) => "your tmux client was detached".into(),
        Err(_) => "the session ended".into(),
    }
}

/// A live mode change. Pair ↔ rogue, and anything to or from mirror,
/// changes the guest's client: its own new one, or its mirror group's,
/// either of which draws the whole screen. The broker stops passing a
/// demoted guest's keys at once, with the next byte.
async fn change_mode(state: &State, link: &mut Link, mode: Mode) -> Result<String, String> {
    let name = link.spec.name.clone();
    if mode == link.mode {
        return Ok(format!("{name} is already {mode}"));
    }
    state
        .cfg
        .mode_allowed(&link.spec.limits.allowed_modes, mode)?;
    let old = link.mode;
    // Typed but not yet taken by tmux: dropped with the change.
    link.to_tmux.clear();
    link.held.clear();
    if mode == Mode::Mirror {
        // Fails closed: the broker stops passing keys before anything else;
        // what the old client has already taken from its pty is dropped by
        // the tmux server (best effort) and the client ends whatever
        // happens next.
        link.mode = mode;
        let mut old_client = link.client.take();
        if let Some(c) = &old_client
            && let Ok(name) = c.name(&state.cfg.tmux).await
        {
            let _ = notices::set_read_only(&state.cfg.tmux, &name).await;
        }
        let attached = link.attach(state, mode);
        if let Some(c) = old_client.as_mut() {
            c.child.kill().await;
        }
        attached?;
    } else {
        let mut old_client = link.client.take();
        let old_member = link.member.take();
        if let Err(e) = link.attach(state, mode) {
            // Nothing changed: the guest keeps the screen it had.
            link.client = old_client;
            link.member = old_member;
            return Err(e);
        }
        link.mode = mode;
        if let Some(c) = old_client.as_mut() {
            c.child.kill().await;
        }
        drop(old_member);
    }
    link.overlay = None;
    let how = if link.member.is_some() {
        "watching with the other mirror guests"
    } else {
        "with a new tmux client"
    };
    state.roster.update(link.spec.serial, |g| g.mode = mode);
    state.set_mode_of(&name, Some((link.spec.invite.clone(), mode)));
    let text = format!("pairjail: the host made you {mode}");
    link.show(state, &text, 5000).await;
    state.announce(format!("{name} is now {mode} (was {old})"));
    state.record(Event::ModeChanged {
        guest: name.clone(),
        from: old,
        to: mode,
    });
    Ok(format!("{name} is now {mode} ({how})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_resizing_in_a_loop_moves_ever_less_often_until_it_stops() {
        let t0 = Instant::now();
        let mut moves = Moves::default();
        assert_eq!(moves.due(t0), t0 + SETTLE, "the first move waits SETTLE");
        // Each move in a row: the next waits twice as long from it.
        let mut at = t0;
        let mut gaps = vec![];
        for _ in 0..10 {
            let due = moves.due(at);
            gaps.push((due - at).as_millis());
            moves.moved(due);
            at = due;
        }
        assert_eq!(
            gaps,
            [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 25600, 25600]
        );
        // A size that settles long after the last move waits SETTLE only
        // when a quiet minute has passed.
        let later = at + Duration::from_secs(30);
        assert_eq!(moves.due(later), later + SETTLE);
        let quiet = at + QUIET;
        assert_eq!(moves.due(quiet), quiet + SETTLE);
        moves.moved(quiet + SETTLE);
        assert_eq!(moves.due(quiet + SETTLE), quiet + SETTLE * 3);
    }
}
