//! The broker: a single-threaded tokio server per share. Guests connect to
//! its socket through `pairjail join`; each gets a tmux client on a pty the
//! broker owns. Output is copied to the guest; input only when the guest's
//! mode allows it, so a mirror guest's keystrokes never reach tmux.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::liveness::Run;
use super::paths::{SessionPaths, check_name};
use super::protocol::{Frame, FrameError, GuestStatus, Msg, SessionStatus, VERSION, clamp_size};
use super::tmux::Tmux;
use super::workspace::Confinement;
use crate::keys::registry;
use crate::profile::Mode;
use crate::terminal as pty;

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
}

struct State {
    cfg: Config,
    since: u64,
    guests: Mutex<BTreeMap<u64, GuestStatus>>,
    /// Some(reason) once the share is over.
    shutdown: watch::Sender<Option<String>>,
}

use crate::clock::now;

fn log(msg: impl std::fmt::Display) {
    eprintln!("{} broker: {msg}", now());
}

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
    let (tx, mut rx) = watch::channel(None);
    let state = Arc::new(State {
        since: now(),
        guests: Mutex::new(BTreeMap::new()),
        shutdown: tx,
        cfg,
    });
    tokio::spawn(watch_session(state.clone()));
    println!("ready");
    let mut serial = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = guests.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                serial += 1;
                tasks.spawn(guest(state.clone(), stream, serial));
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
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
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
    let _ = state.shutdown.send(Some(reason));
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
    let Ok(Some(Frame::Msg(msg))) = read_frame(&mut s, &mut buf).await else {
        return;
    };
    let reply = match msg {
        Msg::Status => Msg::StatusReply {
            session: status(&state),
        },
        Msg::Stop => {
            let _ = state
                .shutdown
                .send(Some("the host stopped the session".into()));
            Msg::Stopping
        }
        _ => return,
    };
    let _ = s.write_all(&Frame::Msg(reply).encode()).await;
}

fn status(state: &State) -> SessionStatus {
    let guests = state
        .guests
        .lock()
        .map(|g| g.values().cloned().collect())
        .unwrap_or_default();
    SessionStatus {
        session: state.cfg.session.clone(),
        host: state.cfg.host.clone(),
        since: state.since,
        allowed_modes: state.cfg.allowed.clone(),
        default_mode: state.cfg.default_mode,
        guests,
        confinement: state.cfg.confinement.clone(),
    }
}

/// Reads one frame, buffering across calls. `Ok(None)`: the peer closed.
async fn read_frame(
    s: &mut (impl AsyncReadExt + Unpin),
    buf: &mut Vec<u8>,
) -> Result<Option<Frame>, FrameError> {
    loop {
        if let Some((f, used)) = Frame::decode(buf)? {
            buf.drain(..used);
            return Ok(Some(f));
        }
        let mut chunk = [0u8; 8192];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn valid_term(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
}

async fn refuse(s: &mut UnixStream, reason: String) {
    log(format!("refused: {reason}"));
    let _ = s
        .write_all(&Frame::Msg(Msg::Refused { reason }).encode())
        .await;
}

async fn guest(state: Arc<State>, mut s: UnixStream, serial: u64) {
    let cfg = &state.cfg;
    let uid = peer_uid(&s);
    if !uid.is_some_and(|u| u == cfg.host_uid || cfg.guest_uids.contains(&u)) {
        return refuse(&mut s, "this user may not join this session".into()).await;
    }
    let mut buf = Vec::new();
    let hello = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut s, &mut buf)).await;
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
    let mode = invite.mode;
    if !cfg.allowed.contains(&mode) {
        let allowed: Vec<String> = cfg.allowed.iter().map(Mode::to_string).collect();
        return refuse(
            &mut s,
            format!(
                "mode {mode} is not allowed in this session (allowed: {})",
                allowed.join(", ")
            ),
        )
        .await;
    }
    let (cols, rows) = clamp_size(cols, rows);
    if direct {
        return direct_guest(&state, s, serial, guest, mode, source).await;
    }
    let term = if valid_term(&term) {
        term
    } else {
        "xterm-256color".into()
    };

    let mut cmd = cfg.tmux.command();
    cmd.args(Tmux::guest_client_args(&cfg.session, &guest, mode, serial))
        .env_clear()
        .env("TERM", &term)
        .env("LC_CTYPE", "C.UTF-8")
        .env("PATH", "/usr/bin:/bin");
    let (mut child, master) = match pty::spawn_on_pty(cmd, cols, rows) {
        Ok(x) => x,
        Err(e) => {
            return refuse(
                &mut s,
                format!("the broker could not start a tmux client: {e}"),
            )
            .await;
        }
    };
    let welcome = Frame::Msg(Msg::Welcome {
        session: cfg.session.clone(),
        mode,
    })
    .encode();
    if s.write_all(&welcome).await.is_err() {
        let _ = child.kill().await;
        return;
    }
    register(state.as_ref(), serial, &guest, mode, source, "");
    let reason = relay(&state, &mut s, &mut buf, master, mode).await;
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
    let _ = child.kill().await;
    if let Ok(mut g) = state.guests.lock() {
        g.remove(&serial);
    }
    log(format!(
        "guest {guest} left ({})",
        reason.as_deref().unwrap_or("disconnected")
    ));
}

/// Puts a guest on the list `pairjail status` shows.
fn register(
    state: &State,
    serial: u64,
    guest: &str,
    mode: Mode,
    source: Option<String>,
    how: &str,
) {
    log(format!(
        "guest {guest} joined as {mode}{how} from {}",
        source.as_deref().unwrap_or("local")
    ));
    if let Ok(mut g) = state.guests.lock() {
        g.insert(
            serial,
            GuestStatus {
                name: guest.to_string(),
                mode,
                since: now(),
                source,
            },
        );
    }
}

/// Copies until one side ends. Returns the reason to tell the guest, if
/// the guest is still there to hear it.
async fn relay(
    state: &State,
    s: &mut UnixStream,
    buf: &mut Vec<u8>,
    master: OwnedFd,
    mode: Mode,
) -> Option<String> {
    let Ok(master) = pty::async_master(master) else {
        return Some("the broker could not set up the terminal".into());
    };
    let mut shutdown = state.shutdown.subscribe();
    if let Some(reason) = shutdown.borrow().clone() {
        return Some(reason);
    }
    let (mut rd, mut wr) = s.split();
    let mut out = [0u8; 16384];
    loop {
        tokio::select! {
            frame = read_frame(&mut rd, buf) => match frame {
                Ok(Some(Frame::Data(bytes))) => {
                    // The whole point of mirror mode: its input goes nowhere.
                    if mode != Mode::Mirror && write_all_fd(&master, &bytes).await.is_err() {
                        return Some("the tmux client went away".into());
                    }
                }
                Ok(Some(Frame::Msg(Msg::Resize { cols, rows }))) => {
                    let (cols, rows) = clamp_size(cols, rows);
                    let _ = pty::set_size(master.get_ref().as_fd(), cols, rows);
                }
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(FrameError::Malformed(m)) => return Some(format!("malformed frame from the guest: {m}")),
                Err(_) => return None,
            },
            ready = master.readable() => {
                let Ok(mut guard) = ready else { return Some("the terminal failed".into()) };
                match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), &mut out).map_err(std::io::Error::from)) {
                    Ok(Ok(0)) | Ok(Err(_)) => return Some("the session ended".into()),
                    Ok(Ok(n)) => {
                        if wr.write_all(&Frame::Data(out[..n].to_vec()).encode()).await.is_err() {
                            return None;
                        }
                    }
                    Err(_would_block) => {}
                }
            }
            _ = shutdown.changed() => {
                return Some(shutdown.borrow().clone().unwrap_or_else(|| "the session ended".into()));
            }
        }
    }
}

async fn write_all_fd(fd: &AsyncFd<OwnedFd>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let mut guard = fd.writable().await?;
        match guard.try_io(|f| nix::unistd::write(f.get_ref(), bytes).map_err(std::io::Error::from))
        {
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
    Ok(())
}

/// A guest with its own tmux client (the direct transport): no pty here,
/// only its place in `status` and a goodbye when the session ends.
async fn direct_guest(
    state: &State,
    mut s: UnixStream,
    serial: u64,
    guest: String,
    mode: Mode,
    source: Option<String>,
) {
    let cfg = &state.cfg;
    if !cfg.direct {
        return refuse(
            &mut s,
            "the host did not enable the direct transport (pairjail start --direct)".into(),
        )
        .await;
    }
    if mode == Mode::Rogue {
        return refuse(&mut s, "rogue mode needs the relay transport".into()).await;
    }
    let welcome = Frame::Msg(Msg::Welcome {
        session: cfg.session.clone(),
        mode,
    })
    .encode();
    if s.write_all(&welcome).await.is_err() {
        return;
    }
    register(state, serial, &guest, mode, source, " (direct)");
    let mut shutdown = state.shutdown.subscribe();
    let mut buf = [0u8; 64];
    let reason = tokio::select! {
        _ = s.read(&mut buf) => None,
        _ = shutdown.changed() => shutdown.borrow().clone(),
    };
    if let Some(reason) = reason {
        let _ = s.write_all(&Frame::Msg(Msg::Bye { reason }).encode()).await;
    }
    if let Ok(mut g) = state.guests.lock() {
        g.remove(&serial);
    }
    log(format!("guest {guest} (direct) left"));
}
