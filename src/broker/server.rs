//! The broker: a single-threaded tokio server per share. Guests connect to
//! its socket through `pairjail join`; each gets a tmux client on a pty the
//! broker owns. Output is copied to the guest; input only when the guest's
//! mode allows it, so a mirror guest's keystrokes never reach tmux.

use std::io::BufRead;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::door::{self, Shut, Visitor};
use super::guest::{self, Spec};
use super::paths::check_name;
use super::protocol::{
    Frame, GuestState, GuestStatus, Msg, SessionStatus, VERSION, clamp_size, read_frame_async,
};
use super::recorder;
use super::roster::{Answer, InviteId, Order, Terms};
pub use super::state::Config;
use super::state::{State, log};
use crate::audit::{Decider, Event, Transport};
use crate::clock::now;
use crate::keys::registry;
use crate::profile::Mode;

/// Runs until the shared session ends or the host stops it. `from_start`
/// is `start`'s line, which says `go` once the share is set up.
pub fn run(cfg: Config, from_start: Box<dyn BufRead + Send>) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(serve(cfg, from_start))
}

fn bind(path: &std::path::Path, mode: u32) -> Result<UnixListener, String> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    Ok(l)
}

async fn serve(cfg: Config, from_start: Box<dyn BufRead + Send>) -> Result<(), String> {
    // Guests reach the broker socket (the session directory is 0711, the
    // socket 0666, and each peer's uid is checked); only the host reaches
    // the control socket.
    let guests = bind(&cfg.paths.broker, 0o666)?;
    let control = bind(&cfg.paths.control, 0o600)?;
    let (state, announcer) = State::new(cfg);
    let mut rx = state.shutdown.subscribe();
    // A share that was asked to record or audit does not start without.
    let recording = match state.cfg.record {
        Some(_) => Some(recorder::start(&state).await?),
        None => None,
    };
    let c = &state.cfg;
    state
        .record_on_disk(Event::SessionStart {
            allowed_modes: c.allowed.clone(),
            default_mode: c.default_mode,
            approve: c.approve,
            direct: c.direct,
            confined: c.confinement.is_some(),
            recording: recording.map(|p| p.display().to_string()),
        })
        .await?;
    tokio::spawn(announcer);
    tokio::spawn(watch_session(state.clone()));
    tokio::spawn(end_on_signals(state.clone()));
    if let Some(spec) = state.cfg.tunnel.clone() {
        tokio::spawn(super::tunnel_task::keep(state.clone(), spec));
    }
    // `start` waits for this line. If it stopped waiting (the host pressed
    // Ctrl-C), nobody was told the share runs: it ends, cleaning up as
    // `stop` would (println! would panic here and leave it all behind).
    let told = {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready").and_then(|()| out.flush())
    };
    if let Err(e) = told {
        state.end(format!(
            "`start` stopped waiting before the share was ready ({e})"
        ));
    }
    wait_for_go(state.clone(), from_start);
    let mut serial = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = guests.accept() => {
                let Ok((stream, _)) = accepted else {
                    out_of_descriptors().await;
                    continue;
                };
                // Anyone can reach the socket: a uid that may not join is
                // turned away here, with no task (knocks spawned faster
                // than they ran grew the broker by hundreds of MB).
                if let Err(reason) = uid_may_join(&state.cfg, &stream) {
                    turn_away(&state, stream, reason);
                    continue;
                }
                serial += 1;
                tasks.spawn(admit(state.clone(), stream, serial));
            }
            // A finished connection's task is kept until joined.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = control.accept() => {
                let Ok((stream, _)) = accepted else {
                    out_of_descriptors().await;
                    continue;
                };
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
    state.record(Event::SessionStop { reason });
    state.with_cast(|c| c.close());
    state.finish_audit();
    // Guests command a jailed session's server (its kill-server may be
    // aliased to nothing, or to a wait): what ends it is the jail, killed.
    if state.cfg.tmux.is_jailed() {
        let uid = nix::unistd::Uid::effective().as_raw();
        if !super::liveness::end_jail(&state.cfg.paths.dir, uid, super::liveness::JAIL_WAIT) {
            log("the session's jail did not end when killed".to_string());
        }
    } else {
        state.cfg.tmux.kill_server();
    }
    let _ = std::fs::remove_file(&state.cfg.paths.broker);
    let _ = std::fs::remove_file(&state.cfg.paths.control);
    Ok(())
}

/// SIGTERM (an admin, the machine shutting down), SIGINT or SIGHUP end the
/// share as `stop` does: guests are told, and the audit events still
/// queued are written before the broker exits.
async fn end_on_signals(state: Arc<State>) {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    let listen = |kind: SignalKind, name: &str| {
        signal(kind)
            .inspect_err(|e| log(format!("{name} will end the broker at once: {e}")))
            .ok()
    };
    async fn next(s: &mut Option<Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    let mut term = listen(SignalKind::terminate(), "SIGTERM");
    let mut int = listen(SignalKind::interrupt(), "SIGINT");
    let mut hup = listen(SignalKind::hangup(), "SIGHUP");
    let name = tokio::select! {
        () = next(&mut term) => "SIGTERM",
        () = next(&mut int) => "SIGINT",
        () = next(&mut hup) => "SIGHUP",
    };
    // A second signal ends the broker at once, as it did before it handled
    // any: an end that hangs (a log's lock held for good) is not forever.
    for sig in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        if let Err(e) = crate::jail::default_signal_action(sig) {
            log(format!("a second {sig} will not end the broker: {e}"));
        }
    }
    state.end(format!("the share's broker got {name}"));
}

/// How long a guest whose profile requires the audit log waits for its
/// line to be on disk before it is turned away.
const AUDIT_WAIT: Duration = Duration::from_secs(10);

/// Records `event` and waits until it is on disk, for a guest whose
/// profile requires the audit log; past a moment the guest is told why it
/// waits (once: `told`), past [`AUDIT_WAIT`] in all it is an error.
async fn on_disk(
    state: &State,
    s: &mut UnixStream,
    event: Event,
    told: &mut bool,
) -> Result<(), String> {
    let written = state.record_on_disk(event);
    tokio::pin!(written);
    let start = tokio::time::Instant::now();
    tokio::select! {
        done = &mut written => return done,
        _ = tokio::time::sleep(Duration::from_millis(300)) => {}
    }
    if !std::mem::replace(told, true) {
        let waiting = Frame::Msg(Msg::Waiting {
            text: "waiting for the host's audit log to take your join (its disk is slow)".into(),
        });
        let _ = tokio::time::timeout(Duration::from_secs(1), s.write_all(&waiting.encode())).await;
    }
    tokio::time::timeout_at(start + AUDIT_WAIT, written)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "the audit log did not take the line within {} s",
                AUDIT_WAIT.as_secs()
            ))
        })
}

/// After a failed accept (no descriptor left, EMFILE): the listener stays
/// ready, so taking the next one at once would spin the broker's only
/// thread. A pause lets connections end and descriptors come back.
async fn out_of_descriptors() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// How much of a line from the watcher is kept (its start names it).
const LINE_HEAD: usize = 64;

/// A control-mode client that lives exactly as long as the session.
async fn watch_session(state: Arc<State>) {
    let mut std_cmd = state.cfg.tmux.command();
    // Ends with the broker, like every client it starts.
    crate::jail::die_with_parent_on_exec(&mut std_cmd);
    let mut cmd = tokio::process::Command::from(std_cmd);
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
            let out = child.stdout.take();
            let mut shutdown = state.shutdown.subscribe();
            if let Some(mut o) = out {
                // Only the start of each line is kept: a guest can send
                // this client a line of any length (`refresh-client -B`
                // with a format that expands to gigabytes). Bytes, not
                // text: a pane's name need not be UTF-8.
                let mut chunk = [0u8; 8192];
                let mut head: Vec<u8> = Vec::with_capacity(LINE_HEAD);
                loop {
                    tokio::select! {
                        n = o.read(&mut chunk) => match n {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                for &b in &chunk[..n] {
                                    if b != b'\n' {
                                        if head.len() < LINE_HEAD {
                                            head.push(b);
                                        }
                                        continue;
                                    }
                                    // A window resized or another one
                                    // shown: the recording follows its size.
                                    if head.starts_with(b"%layout-change") || head.starts_with(b"%session-window-changed") {
                                        state.layout.send_modify(|n| *n += 1);
                                    }
                                    head.clear();
                                }
                            }
                        },
                        _ = shutdown.changed() => return,
                    }
                }
            }
            "the host's session ended".to_string()
        }
    };
    state.end(reason);
}

/// After `ready`, `start` still adds the invites and waits for the tunnel,
/// then says `go`. If it ends first (the host pressed Ctrl-C), the host
/// was never told the share runs, and it would run with none of its
/// invites: it ends. A thread of its own, since a read of a pipe does not
/// end when the runtime does.
fn wait_for_go(state: Arc<State>, mut from_start: Box<dyn BufRead + Send>) {
    let waiting = std::thread::Builder::new()
        .name("start-line".into())
        .spawn({
            let state = state.clone();
            move || {
                let mut line = String::new();
                let said = from_start.read_line(&mut line);
                if said.is_err() || line.trim_end() != "go" {
                    state.end(
                        "`start` ended before it finished setting up the share (stopped with Ctrl-C?)",
                    );
                }
            }
        });
    if let Err(e) = waiting {
        state.end(format!("cannot wait for `start`: {e}"));
    }
}

fn peer_uid(s: &UnixStream) -> Option<u32> {
    s.peer_cred().ok().map(|c| c.uid())
}

/// Is the peer in the broker's own user namespace? Everything in a jailed
/// session, and every guest's jail, runs in one of its own, often with the
/// host's uid (a workspace jail; guests in no-root mode): only the host's
/// own processes share the broker's. A peer whose namespace cannot be
/// read (a jail's non-dumpable pid 1) is not. None: the peer is gone.
fn peer_shares_my_user_namespace(s: &UnixStream) -> Option<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::socket::{getsockopt, sockopt::PeerPidfd};
    let Some(pid) = s.peer_cred().ok().and_then(|c| c.pid()) else {
        return Some(false);
    };
    // The peer itself, pinned (Linux 6.5 on): its pid, read next in /proc,
    // could name another process if the peer ended and the pid was taken.
    let pinned = match getsockopt(s, PeerPidfd) {
        Ok(fd) => Some(fd),
        Err(nix::errno::Errno::ENOPROTOOPT) => None,
        Err(_) => return None,
    };
    let theirs = match std::fs::read_link(format!("/proc/{pid}/ns/user")) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(_) => return Some(false),
        Ok(t) => t,
    };
    // Still running after the read: the pid was the peer's all along. A
    // pidfd is readable once its process has ended.
    if let Some(fd) = &pinned {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let ended = poll(&mut fds, PollTimeout::ZERO).map_or(true, |n| n > 0);
        if ended {
            return None;
        }
    }
    Some(std::fs::read_link("/proc/self/ns/user").is_ok_and(|mine| mine == theirs))
}

async fn control_client(state: Arc<State>, mut s: UnixStream) {
    if peer_uid(&s) != Some(state.cfg.host_uid) {
        log("control connection from another uid refused");
        return;
    }
    // A pair guest in a jailed session (this share's or another's) runs as
    // the host's uid, and may see this socket through a bind of the home:
    // refused before anything is read. A peer whose process is gone is
    // refused too (it may have handed the socket on); mostly it is an
    // asker that stopped waiting.
    match peer_shares_my_user_namespace(&s) {
        Some(true) => {}
        Some(false) => {
            log("control connection from a jail (another user namespace) refused");
            return;
        }
        None if asker_gone(&s) => {
            log("dropped an order from a command that stopped waiting for the answer");
            return;
        }
        None => {
            log("control connection whose process is gone refused");
            return;
        }
    }
    let mut buf = Vec::new();
    let Ok(Some(Frame::Msg(msg))) = read_frame_async(&mut s, &mut buf).await else {
        return;
    };
    // An asker that hung up gave up waiting (this broker was stopped or
    // swamped for its 3 s) and told the host the order failed: carrying it
    // out now would stop a share or kick a guest, maybe one who came back
    // since, long after the host was told it did not happen.
    if asker_gone(&s) {
        log("dropped an order from a command that stopped waiting for the answer");
        return;
    }
    let reply = control(&state, msg).await;
    let _ = s.write_all(&Frame::Msg(reply).encode()).await;
}

/// Has the other end of a control connection closed? Checked without
/// waiting: the order it sent is still buffered, but nobody will read the
/// answer.
fn asker_gone(s: &UnixStream) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    // A closed peer makes a stream socket report POLLHUP, whatever was
    // asked for (nix knows no POLLRDHUP, and reports no flags at all when
    // an unknown one is set).
    let mut fds = [PollFd::new(s.as_fd(), PollFlags::empty())];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLHUP)),
        // Cannot tell: answer as before.
        Err(_) => false,
    }
}

/// The host's orders: one question, one answer.
async fn control(state: &State, msg: Msg) -> Msg {
    let done = |r: Result<String, String>| match r {
        Ok(message) => Msg::Done { message },
        Err(reason) => Msg::Failed { reason },
    };
    match msg {
        // A share that is ending says so: `attach` learns from it, not
        // from tmux (whose answers a guest can forge), that it is over.
        Msg::Status if state.shutdown.borrow().is_some() => Msg::Stopping,
        Msg::Status => Msg::StatusReply {
            session: Box::new(status(state)),
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
        Msg::Reinvite { guest } => {
            let cfg = &state.cfg;
            // The invite is read from the host's store, never taken from
            // the message; one that is gone (or no longer this run's)
            // ends the guest's connections.
            let terms = registry::admission(&cfg.runtime, &cfg.host, &cfg.session, &guest, cfg.run)
                .map(|i| Terms {
                    id: InviteId {
                        created: i.created,
                        keys: i.fingerprints.clone(),
                    },
                    mode: i.mode,
                    expires: i.expires,
                    keys: i.fingerprints,
                    from: i.from,
                })
                .map_err(|e| format!("the host changed your invite: {e}"));
            // The new invite's mode replaces any the host gave live.
            state.set_mode_of(&guest, None);
            done(
                state
                    .roster
                    .order(&guest, || match &terms {
                        Ok(t) => Order::Terms(t.clone()),
                        Err(why) => Order::Kick(why.clone()),
                    })
                    .map(|n| format!("{guest}'s new invite applies to {n} connection(s)"))
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
        Msg::Approve { guest, mode, which } => done(
            state
                .roster
                .answer(&guest, &which, Answer::Admit(mode))
                .map(|n| match n {
                    1 => format!("{guest} is let in"),
                    n => format!("{n} connections of {guest} are let in"),
                })
                .map_err(|e| e.to_string()),
        ),
        Msg::Deny { guest, which } => done(
            state
                .roster
                .answer(&guest, &which, Answer::Deny)
                .map(|n| match n {
                    1 => format!("{guest} is turned away"),
                    n => format!("{n} connections of {guest} are turned away"),
                })
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
        recording: state.recording().map(|p| p.display().to_string()),
        audit_log: state
            .cfg
            .audit
            .as_ref()
            .map(|a| a.path.display().to_string()),
        reach: Some(state.cfg.reach.clone()),
        tunnel: state.tunnel(),
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
    answer_refused(s, reason).await;
}

/// How long a refused client has to take its answer: one that never reads
/// does not keep its connection.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

async fn answer_refused(s: &mut UnixStream, reason: String) {
    let frame = Frame::Msg(Msg::Refused { reason }).encode();
    let _ = tokio::time::timeout(ANSWER_WAIT, s.write_all(&frame)).await;
}

/// May the peer join: is it a guest's `join`? Its uid is the host's or a
/// guest user's, and with the host's uid (no-root mode, where sshd runs
/// `join` as the host) it is in the broker's own user namespace: a pair
/// guest's shell in a jailed session (this share's or another's) has the
/// host's uid too, and naming an invitee would join it to a share with no
/// jail around it. A guest user's processes come only from sshd's forced
/// command, and their namespace cannot be read by the host's uid. (A
/// broker inside a container's user namespace refuses sshd's `join`s of
/// the host's uid too: a namespace cannot see its parent to tell a
/// container's host from a jail.)
fn uid_may_join(cfg: &Config, s: &UnixStream) -> Result<(), String> {
    let uid = peer_uid(s);
    if uid == Some(cfg.host_uid) && peer_shares_my_user_namespace(s) != Some(true) {
        return Err(
            "a process in another user namespace (a jail) may not join: guests join through ssh (a share started inside a container, such as toolbox, takes no-root guests only from its own namespace: start it outside, or use pair-user mode)".to_string(),
        );
    }
    if uid.is_some_and(|u| u == cfg.host_uid || cfg.guest_uids.contains(&u)) {
        return Ok(());
    }
    Err(format!(
        "this user (uid {}) may not join this session",
        uid.map_or("unknown".into(), |u| u.to_string())
    ))
}

/// A connection refused before it is given a task: the answer goes out
/// only if the socket takes it at once. Written past tokio, whose
/// readiness for a stream just accepted is not known yet.
fn turn_away(state: &State, s: UnixStream, reason: String) {
    note_refusal(state, Who::default(), &reason, true);
    if let Ok(s) = s.into_std() {
        let frame = Frame::Msg(Msg::Refused { reason }).encode();
        let _ = std::io::Write::write(&mut &s, &frame);
    }
}

/// Anyone who can reach the socket can be refused, as fast as it connects:
/// the share's log (often on a tmpfs) and the audit log take refusals at
/// the same bounded rate, and the next one written counts the rest.
fn note_refusal(state: &State, who: Who, reason: &str, knock: bool) {
    let Some(dropped) = state.refusal_recorded(knock) else {
        return;
    };
    let noted = if dropped > 0 {
        format!("{reason} ({dropped} earlier refusals not recorded: more than one a second)")
    } else {
        reason.to_string()
    };
    log(format!("refused: {noted}"));
    state.record(Event::Refused {
        guest: who.guest,
        key: who.key,
        source: who.source,
        reason: noted,
    });
}

/// Who is knocking, as far as the broker knows yet (for the audit log).
#[derive(Debug, Default)]
struct Who {
    guest: Option<String>,
    key: Option<String>,
    source: Option<String>,
}

/// Why a connection goes no further.
enum Turned {
    /// Refused by a rule: recorded as `refused`.
    Refused(String),
    /// Turned away at the door (already recorded as `denied`).
    Denied(String),
    /// The guest gave up or the share ended while it waited (recorded).
    Gone(String),
}

impl From<String> for Turned {
    fn from(reason: String) -> Self {
        Turned::Refused(reason)
    }
}

/// A new connection on the broker socket: checks who it is against the
/// host's own invites, holds it at the door if the host asked for that,
/// then hands it to the relay (or registers a direct guest). Every
/// refusal is in the audit log with who it was and why.
async fn admit(state: Arc<State>, mut s: UnixStream, serial: u64) {
    let mut who = Who::default();
    let mut buf = Vec::new();
    let admitted = check(&state, &mut s, &mut buf, serial, &mut who).await;
    let a = match admitted {
        Ok(a) => a,
        Err(Turned::Refused(reason)) => {
            note_refusal(&state, who, &reason, false);
            return answer_refused(&mut s, reason).await;
        }
        Err(Turned::Denied(reason) | Turned::Gone(reason)) => return refuse(&mut s, reason).await,
    };
    if a.direct {
        return direct_guest(&state, s, serial, a).await;
    }
    guest::relayed(state.clone(), s, buf, a.spec, a.mode, a.orders).await;
}

/// A guest let in, and what it was given.
struct Admission {
    spec: Spec,
    mode: Mode,
    direct: bool,
    key: Option<String>,
    source: Option<String>,
    /// When a direct guest's connection ends (invite expiry, max_duration).
    end: Duration,
    orders: tokio::sync::mpsc::UnboundedReceiver<Order>,
}

async fn check(
    state: &Arc<State>,
    s: &mut UnixStream,
    buf: &mut Vec<u8>,
    serial: u64,
    who: &mut Who,
) -> Result<Admission, Turned> {
    let cfg = &state.cfg;
    uid_may_join(cfg, s)?;
    let hello = tokio::time::timeout(Duration::from_secs(5), read_frame_async(s, buf)).await;
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
        return Err("expected a hello".to_string().into());
    };
    if version != VERSION {
        return Err(format!("protocol version {version} is not supported: the host runs pairjail with protocol {VERSION}; update pairjail").into());
    }
    check_name("guest", &guest)?;
    who.guest = Some(guest.clone());
    who.source = source.clone().filter(|s| valid_source(s));
    if key.as_deref().is_some_and(valid_fingerprint) {
        who.key = key.clone();
    }
    if run.is_some_and(|r| r != cfg.run) {
        return Err(
            "this invite was for an earlier run of the session; ask the host to invite you again"
                .to_string()
                .into(),
        );
    }
    // Who the guest is and what it may do come from the host's own invite
    // store, never from the hello: a client that names a guest or a mode
    // the host did not invite to this run gets nothing.
    let invite = registry::admission(&cfg.runtime, &cfg.host, &cfg.session, &guest, cfg.run)?;
    if mode.is_some_and(|m| m != invite.mode) || direct != invite.direct {
        return Err(format!(
            "{guest} is invited as {}{}, not as asked",
            invite.mode,
            if invite.direct { " (direct)" } else { "" }
        )
        .into());
    }
    // The key the guest says it used must be one of the invite's; with
    // none said, an invite of one key names it.
    let key = match &key {
        Some(k) if valid_fingerprint(k) && invite.fingerprints.contains(k) => Some(k.clone()),
        Some(_) => {
            return Err(format!("{guest} logged in with a key that is not in the invite").into());
        }
        None if invite.fingerprints.len() == 1 => invite.fingerprints.first().cloned(),
        None => None,
    };
    who.key = key.clone();
    state.roster.may_join(&guest).map_err(|e| e.to_string())?;
    // The host's `mode` outlasts the connection it changed.
    let invite_id = InviteId {
        created: invite.created,
        keys: invite.fingerprints.clone(),
    };
    let mut requested = state.mode_of(&guest, &invite_id).unwrap_or(invite.mode);
    // Said once to a guest that waits for the audit log.
    let mut told = false;
    let attempt = Event::JoinAttempt {
        guest: guest.clone(),
        key: key.clone(),
        source: who.source.clone(),
        mode: requested,
        transport: if direct {
            Transport::Direct
        } else {
            Transport::Relay
        },
    };
    // A profile that requires the audit log lets a guest in only once its
    // attempt is on disk; otherwise the join does not wait for the disk.
    if limits.require_audit_log {
        match (&cfg.audit, on_disk(state, s, attempt, &mut told).await) {
            (None, _) => return Err("the guest's jail profile requires an audit log, and the host started the share with --no-audit".to_string().into()),
            (Some(_), Err(e)) => return Err(format!("the guest's jail profile requires an audit log, which cannot be written: {e}").into()),
            (Some(_), Ok(())) => {}
        }
        // The host may have revoked or replaced the invite while the guest
        // waited: a replaced one's terms are not this connection's yet
        // (and a Reinvite found it in no list), so it connects again.
        let again = registry::admission(&cfg.runtime, &cfg.host, &cfg.session, &guest, cfg.run)?;
        if again != invite {
            return Err(
                "the host changed your invite while you waited: connect again"
                    .to_string()
                    .into(),
            );
        }
        // The host may have changed the guest's mode meanwhile (another
        // connection of its): taken now, with nothing awaited until the
        // guest is in the list.
        requested = state.mode_of(&guest, &invite_id).unwrap_or(invite.mode);
    } else {
        state.record(attempt);
    }
    if limits.require_recording && state.recording().is_none() {
        return Err("the guest's jail profile requires a recording, and this share is not recorded (the host starts it with --record)".to_string().into());
    }
    cfg.mode_allowed(&limits.allowed_modes, requested)?;
    if limits.max_duration == Some(0) || limits.idle_timeout == Some(0) {
        return Err("the guest profile's time limits are zero"
            .to_string()
            .into());
    }
    if direct {
        direct_allowed(state, requested, &limits)?;
    }
    let (cols, rows) = clamp_size(cols, rows);
    let entry = GuestStatus {
        name: guest.clone(),
        mode: requested,
        since: now(),
        source: who.source.clone(),
        key: key.clone(),
        idle: 0,
        state: GuestState::Connected,
        expires: Some(invite.expires),
    };
    let mut orders = state.roster.add(serial, entry).map_err(|e| e.to_string())?;
    let mut mode = requested;
    let mut by = Decider::Invite;
    if cfg.approve || invite.approve {
        let visitor = Visitor {
            serial,
            name: &guest,
            mode: requested,
            key: key.as_deref(),
            source: who.source.as_deref(),
        };
        let answered = door::wait(state, s, &visitor, &mut orders).await;
        state.roster.close_door(serial);
        let answered = answered.and_then(|m| {
            cfg.mode_allowed(&limits.allowed_modes, m)
                .map(|()| m)
                .map_err(|e| Shut::Denied(Decider::Host, e))
        });
        match answered {
            Ok(m) => mode = m,
            Err(shut) => {
                state.roster.remove(serial);
                return Err(match shut {
                    Shut::Denied(by, reason) => {
                        state.announce(format!("{guest} was not let in: {reason}"));
                        state.record(Event::Denied {
                            guest: guest.clone(),
                            by,
                            reason: reason.clone(),
                        });
                        Turned::Denied(reason)
                    }
                    Shut::Gone(reason) => {
                        state.record(Event::Left {
                            guest: guest.clone(),
                            reason: format!("at the door: {reason}"),
                        });
                        Turned::Gone(reason)
                    }
                });
            }
        }
        by = Decider::Host;
        if direct && let Err(e) = direct_allowed(state, mode, &limits) {
            state.roster.remove(serial);
            return Err(Turned::Refused(e));
        }
        state.roster.update(serial, |g| {
            g.mode = mode;
            g.since = now();
        });
    }
    let admitted = Event::Admitted {
        guest: guest.clone(),
        mode,
        by,
    };
    if limits.require_audit_log {
        if let Err(e) = on_disk(state, s, admitted, &mut told).await {
            // Its attempt and admission are in the log (or on their way):
            // what ended it is said the same way, never rate-limited.
            state.roster.remove(serial);
            let reason = format!(
                "the guest's jail profile requires an audit log, which cannot be written: {e}"
            );
            state.record(Event::Left {
                guest: guest.clone(),
                reason: format!("at the door: {reason}"),
            });
            return Err(Turned::Gone(reason));
        }
    } else {
        state.record(admitted);
    }
    // The end of a direct guest: the invite's expiry or the profile's
    // max_duration.
    let mut end = Duration::from_secs(invite.expires.saturating_sub(now()));
    if let Some(max) = limits.max_duration {
        end = end.min(Duration::from_secs(max));
    }
    Ok(Admission {
        spec: Spec {
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
            invite: invite_id,
            key: key.clone(),
            source: who.source.clone(),
        },
        mode,
        direct,
        key,
        source: who.source.clone(),
        end,
        orders,
    })
}

/// Can this guest use the direct transport here?
fn direct_allowed(
    state: &State,
    mode: Mode,
    limits: &super::protocol::Limits,
) -> Result<(), String> {
    if !state.cfg.direct {
        return Err(
            "the host did not enable the direct transport (pairjail start --direct)".into(),
        );
    }
    if mode == Mode::Rogue {
        return Err("rogue mode needs the relay transport".into());
    }
    if limits.idle_timeout.is_some() {
        return Err("the direct transport cannot enforce the profile's idle_timeout (the broker never sees a direct guest's input); remove it from the guest-direct profile".into());
    }
    // A direct guest's keys never pass the broker: a recorded share
    // could not say who typed what.
    if mode == Mode::Pair && state.recording().is_some() {
        return Err("this share is recorded, and a direct pair guest's typing cannot be attributed; ask the host for a relay invite".into());
    }
    Ok(())
}

/// `ADDRESS PORT` as sshd gives it in SSH_CONNECTION, joined by `:`.
fn valid_source(s: &str) -> bool {
    s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '%' | '[' | ']'))
}

/// A guest with its own tmux client (the direct transport): no pty here,
/// only its place in `status`, the host's kick, and a goodbye when the
/// session ends (join then ends the guest's client).
async fn direct_guest(state: &State, mut s: UnixStream, serial: u64, a: Admission) {
    let cfg = &state.cfg;
    let (guest, mode, mut orders) = (a.spec.name, a.mode, a.orders);
    let welcome = Frame::Msg(Msg::Welcome {
        session: cfg.session.clone(),
        mode,
        recorded: state.recording().is_some(),
    })
    .encode();
    if s.write_all(&welcome).await.is_err() {
        state.roster.remove(serial);
        state.record(Event::Left {
            guest,
            reason: "gone before the welcome".into(),
        });
        return;
    }
    state.announce(format!("{guest} joined as {mode} (direct)"));
    state.record(Event::Joined {
        guest: guest.clone(),
        mode,
        key: a.key,
        source: a.source,
    });
    let mut shutdown = state.shutdown.subscribe();
    let mut buf = [0u8; 64];
    let deadline = tokio::time::sleep(a.end);
    tokio::pin!(deadline);
    let reason = loop {
        tokio::select! {
            _ = s.read(&mut buf) => break None,
            _ = &mut deadline => break Some("your invite expired, or the guest time limit is up".to_string()),
            _ = shutdown.changed() => break shutdown.borrow().clone(),
            order = orders.recv() => match order {
                Some(Order::Kick(reason)) => {
                    state.record(Event::Kicked { guest: guest.clone(), reason: reason.clone() });
                    break Some(reason);
                }
                Some(Order::Mode(_, reply)) => {
                    let _ = reply.send(Err(format!(
                        "{guest} uses the direct transport, whose mode tmux's server-access fixes; kick and invite again"
                    )));
                }
                // Its mode and deadline are fixed once tmux has it: it
                // connects again under the new invite.
                Some(Order::Terms(_)) => {
                    let reason = "the host changed your invite: connect again".to_string();
                    state.record(Event::Kicked { guest: guest.clone(), reason: reason.clone() });
                    break Some(reason);
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
    let reason = reason.unwrap_or_else(|| "disconnected".into());
    state.announce(format!("{guest} (direct) left ({reason})"));
    state.record(Event::Left { guest, reason });
}
