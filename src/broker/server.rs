//! The broker: a single-threaded tokio server per share. Guests connect to
//! its socket through `pairjail join`; each gets a tmux client on a pty the
//! broker owns. Output is copied to the guest; input only when the guest's
//! mode allows it, so a mirror guest's keystrokes never reach tmux.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::door::{self, Visitor};
use super::guest::{self, Spec};
use super::paths::check_name;
use super::protocol::{
    Frame, GuestState, GuestStatus, Msg, SessionStatus, VERSION, clamp_size, read_frame_async,
};
use super::roster::{Answer, Order};
pub use super::state::Config;
use super::state::{State, log};
use crate::clock::now;
use crate::keys::registry;
use crate::profile::Mode;

/// Runs until the shared session ends or the host stops it.
pub fn run(cfg: Config) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(serve(cfg))
}

fn bind(path: &std::path::Path, mode: u32) -> Result<UnixListener, String> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    Ok(l)
}

async fn serve(cfg: Config) -> Result<(), String> {
    // Guests reach the broker socket (the session directory is 0711, the
    // socket 0666, and each peer's uid is checked); only the host reaches
    // the control socket.
    let guests = bind(&cfg.paths.broker, 0o666)?;
    let control = bind(&cfg.paths.control, 0o600)?;
    let (state, announcer) = State::new(cfg);
    let mut rx = state.shutdown.subscribe();
    tokio::spawn(announcer);
    tokio::spawn(watch_session(state.clone()));
    println!("ready");
    let mut serial = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = guests.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                serial += 1;
                tasks.spawn(admit(state.clone(), stream, serial));
            }
            accepted = control.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                tokio::spawn(control_client(state.clone(), stream));
            }
            _ = rx.changed() => break,
        }
    }
    let reason = rx.borrow().clone().unwrap_or_default();
    log(format!("ending: {reason}"));
    // Every guest task sees the same signal and says goodbye; give them a
    // moment, then drop whatever is left.
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    state.cfg.tmux.kill_server();
    let _ = std::fs::remove_file(&state.cfg.paths.broker);
    let _ = std::fs::remove_file(&state.cfg.paths.control);
    Ok(())
}

/// A control-mode client that lives exactly as long as the session.
async fn watch_session(state: Arc<State>) {
    let mut cmd = tokio::process::Command::from(state.cfg.tmux.command());
    cmd.args([
        "-C",
        "attach-session",
        "-f",
        "ignore-size,no-output,read-only",
        "-t",
    ])
    .arg(format!("={}", state.cfg.session))
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .kill_on_drop(true);
    let reason = match cmd.spawn() {
        Err(e) => format!("cannot watch the session: {e}"),
        Ok(mut child) => {
            let _stdin = child.stdin.take();
            let mut out = child.stdout.take();
            let mut buf = [0u8; 4096];
            let mut shutdown = state.shutdown.subscribe();
            while let Some(o) = out.as_mut() {
                tokio::select! {
                    n = o.read(&mut buf) => if matches!(n, Ok(0) | Err(_)) { break },
                    _ = shutdown.changed() => return,
                }
            }
            "the host's session ended".to_string()
        }
    };
    state.end(reason);
}

fn peer_uid(s: &UnixStream) -> Option<u32> {
    s.peer_cred().ok().map(|c| c.uid())
}

async fn control_client(state: Arc<State>, mut s: UnixStream) {
    if peer_uid(&s) != Some(state.cfg.host_uid) {
        log("control connection from another uid refused");
        return;
    }
    let mut buf = Vec::new();
    let Ok(Some(Frame::Msg(msg))) = read_frame_async(&mut s, &mut buf).await else {
        return;
    };
    let reply = control(&state, msg).await;
    let _ = s.write_all(&Frame::Msg(reply).encode()).await;
}

/// The host's orders: one question, one answer.
async fn control(state: &State, msg: Msg) -> Msg {
    let done = |r: Result<String, String>| match r {
        Ok(message) => Msg::Done { message },
        Err(reason) => Msg::Failed { reason },
    };
    match msg {
        Msg::Status => Msg::StatusReply {
            session: status(state),
        },
        Msg::Stop => {
            state.end("the host stopped the session");
            Msg::Stopping
        }
        Msg::Kick { guest, reason } => {
            // The line the guest gets: control characters could paint
            // over the guest's screen, so they go.
            let reason: String = reason
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            done(
                state
                    .roster
                    .order(&guest, || Order::Kick(reason.clone()))
                    .map(|n| format!("{guest} disconnected ({n} connection(s))"))
                    .map_err(|e| e.to_string()),
            )
        }
        Msg::SetMode { guest, mode } => {
            let replies = std::cell::RefCell::new(vec![]);
            let sent = state.roster.order(&guest, || {
                let (tx, rx) = tokio::sync::oneshot::channel();
                replies.borrow_mut().push(rx);
                Order::Mode(mode, tx)
            });
            let replies = replies.into_inner();
            if let Err(e) = sent {
                return Msg::Failed {
                    reason: e.to_string(),
                };
            }
            let mut last = Err(format!("{guest} left before the change"));
            for rx in replies {
                last = rx
                    .await
                    .unwrap_or_else(|_| Err(format!("{guest} left before the change")));
                if last.is_err() {
                    break;
                }
            }
            done(last)
        }
        Msg::Approve { guest, mode } => done(
            state
                .roster
                .answer(&guest, Answer::Admit(mode))
                .map(|_| format!("{guest} is let in"))
                .map_err(|e| e.to_string()),
        ),
        Msg::Deny { guest } => done(
            state
                .roster
                .answer(&guest, Answer::Deny)
                .map(|_| format!("{guest} is turned away"))
                .map_err(|e| e.to_string()),
        ),
        other => Msg::Failed {
            reason: format!("not a control request: {other:?}"),
        },
    }
}

fn status(state: &State) -> SessionStatus {
    SessionStatus {
        session: state.cfg.session.clone(),
        host: state.cfg.host.clone(),
        since: state.since,
        allowed_modes: state.cfg.allowed.clone(),
        default_mode: state.cfg.default_mode,
        guests: state.roster.list(),
        confinement: state.cfg.confinement.clone(),
        approve: state.cfg.approve,
    }
}

fn valid_term(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
}

/// `SHA256:` and unpadded base64, as ssh-keygen prints it.
fn valid_fingerprint(k: &str) -> bool {
    k.strip_prefix("SHA256:").is_some_and(|b| {
        !b.is_empty()
            && b.len() <= 64
            && b.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/'))
    })
}

async fn refuse(s: &mut UnixStream, reason: String) {
    log(format!("refused: {reason}"));
    let _ = s
        .write_all(&Frame::Msg(Msg::Refused { reason }).encode())
        .await;
}

/// A new connection on the broker socket: checks who it is against the
/// host's own invites, holds it at the door if the host asked for that,
/// then hands it to the relay (or registers a direct guest).
async fn admit(state: Arc<State>, mut s: UnixStream, serial: u64) {
    let cfg = &state.cfg;
    let uid = peer_uid(&s);
    if !uid.is_some_and(|u| u == cfg.host_uid || cfg.guest_uids.contains(&u)) {
        return refuse(&mut s, "this user may not join this session".into()).await;
    }
    let mut buf = Vec::new();
    let hello =
        tokio::time::timeout(Duration::from_secs(5), read_frame_async(&mut s, &mut buf)).await;
    let Ok(Ok(Some(Frame::Msg(Msg::Hello {
        version,
        guest,
        mode,
        term,
        cols,
        rows,
        source,
        direct,
        run,
        key,
        limits,
    })))) = hello
    else {
        return refuse(&mut s, "expected a hello".into()).await;
    };
    if version != VERSION {
        return refuse(&mut s, format!("protocol version {version} is not supported: the host runs pairjail with protocol {VERSION}; update pairjail")).await;
    }
    if let Err(e) = check_name("guest", &guest) {
        return refuse(&mut s, e).await;
    }
    if run.is_some_and(|r| r != cfg.run) {
        return refuse(
            &mut s,
            "this invite was for an earlier run of the session; ask the host to invite you again"
                .into(),
        )
        .await;
    }
    // Who the guest is and what it may do come from the host's own invite
    // store, never from the hello: a client that names a guest or a mode
    // the host did not invite to this run gets nothing.
    let invite = match registry::admission(&cfg.runtime, &cfg.host, &cfg.session, &guest, cfg.run) {
        Ok(i) => i,
        Err(e) => return refuse(&mut s, e).await,
    };
    if mode.is_some_and(|m| m != invite.mode) || direct != invite.direct {
        return refuse(
            &mut s,
            format!(
                "{guest} is invited as {}{}, not as asked",
                invite.mode,
                if invite.direct { " (direct)" } else { "" }
            ),
        )
        .await;
    }
    // The key the guest says it used must be one of the invite's; with
    // none said, an invite of one key names it.
    let key = match &key {
        Some(k) if valid_fingerprint(k) && invite.fingerprints.contains(k) => Some(k.clone()),
        Some(_) => {
            return refuse(
                &mut s,
                format!("{guest} logged in with a key that is not in the invite"),
            )
            .await;
        }
        None if invite.fingerprints.len() == 1 => invite.fingerprints.first().cloned(),
        None => None,
    };
    let requested = invite.mode;
    if let Err(e) = cfg.mode_allowed(&limits.allowed_modes, requested) {
        return refuse(&mut s, e).await;
    }
    if limits.max_duration == Some(0) || limits.idle_timeout == Some(0) {
        return refuse(&mut s, "the guest profile's time limits are zero".into()).await;
    }
    let (cols, rows) = clamp_size(cols, rows);
    let entry = GuestStatus {
        name: guest.clone(),
        mode: requested,
        since: now(),
        source: source.clone(),
        key: key.clone(),
        idle: 0,
        state: GuestState::Connected,
        expires: Some(invite.expires),
    };
    let mut orders = match state.roster.add(serial, entry) {
        Ok(rx) => rx,
        Err(e) => return refuse(&mut s, e.to_string()).await,
    };
    let mut mode = requested;
    if cfg.approve || invite.approve {
        let visitor = Visitor {
            serial,
            name: &guest,
            mode: requested,
            key: key.as_deref(),
            source: source.as_deref(),
        };
        let answered = door::wait(&state, &mut s, &visitor, &mut orders).await;
        state.roster.close_door(serial);
        match answered {
            Ok(m) => mode = m,
            Err(reason) => {
                state.roster.remove(serial);
                state.announce(format!("{guest} was not let in: {reason}"));
                return refuse(&mut s, reason).await;
            }
        }
        if let Err(e) = cfg.mode_allowed(&limits.allowed_modes, mode) {
            state.roster.remove(serial);
            return refuse(&mut s, e).await;
        }
        state.roster.update(serial, |g| {
            g.mode = mode;
            g.since = now();
        });
    }
    if direct {
        if limits.idle_timeout.is_some() {
            state.roster.remove(serial);
            return refuse(&mut s, "the direct transport cannot enforce the profile's idle_timeout (the broker never sees a direct guest's input); remove it from the guest-direct profile".into()).await;
        }
        // The end: the invite's expiry or the profile's max_duration.
        let mut end = Duration::from_secs(invite.expires.saturating_sub(now()));
        if let Some(max) = limits.max_duration {
            end = end.min(Duration::from_secs(max));
        }
        return direct_guest(&state, s, serial, guest, mode, orders, end).await;
    }
    let spec = Spec {
        serial,
        name: guest,
        term: if valid_term(&term) {
            term
        } else {
            "xterm-256color".into()
        },
        cols,
        rows,
        limits,
        expires: Some(invite.expires),
    };
    guest::relayed(state.clone(), s, buf, spec, mode, orders).await;
}

/// A guest with its own tmux client (the direct transport): no pty here,
/// only its place in `status`, the host's kick, and a goodbye when the
/// session ends (join then ends the guest's client).
async fn direct_guest(
    state: &State,
    mut s: UnixStream,
    serial: u64,
    guest: String,
    mode: Mode,
    mut orders: tokio::sync::mpsc::UnboundedReceiver<Order>,
    end: Duration,
) {
    let cfg = &state.cfg;
    if !cfg.direct {
        state.roster.remove(serial);
        return refuse(
            &mut s,
            "the host did not enable the direct transport (pairjail start --direct)".into(),
        )
        .await;
    }
    if mode == Mode::Rogue {
        state.roster.remove(serial);
        return refuse(&mut s, "rogue mode needs the relay transport".into()).await;
    }
    let welcome = Frame::Msg(Msg::Welcome {
        session: cfg.session.clone(),
        mode,
    })
    .encode();
    if s.write_all(&welcome).await.is_err() {
        state.roster.remove(serial);
        return;
    }
    state.announce(format!("{guest} joined as {mode} (direct)"));
    let mut shutdown = state.shutdown.subscribe();
    let mut buf = [0u8; 64];
    let deadline = tokio::time::sleep(end);
    tokio::pin!(deadline);
    let reason = loop {
        tokio::select! {
            _ = s.read(&mut buf) => break None,
            _ = &mut deadline => break Some("your invite expired, or the guest time limit is up".to_string()),
            _ = shutdown.changed() => break shutdown.borrow().clone(),
            order = orders.recv() => match order {
                Some(Order::Kick(reason)) => break Some(reason),
                Some(Order::Mode(_, reply)) => {
                    let _ = reply.send(Err(format!(
                        "{guest} uses the direct transport, whose mode tmux's server-access fixes; kick and invite again"
                    )));
                }
                None => {}
            },
        }
    };
    if let Some(reason) = &reason {
        let _ = s
            .write_all(
                &Frame::Msg(Msg::Bye {
                    reason: reason.clone(),
                })
                .encode(),
            )
            .await;
    }
    state.roster.remove(serial);
    state.announce(format!(
        "{guest} (direct) left ({})",
        reason.as_deref().unwrap_or("disconnected")
    ));
}
