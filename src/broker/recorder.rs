//! The recording's tap: a read-only tmux client of the broker's own, at
//! the size of the session's window (it never changes that size), whose
//! output goes to the cast. It sees what a client of the host's sees:
//! every pane, the status line, and a redraw when asked.

use std::os::fd::AsFd;
use std::sync::Arc;

use super::notices;
use super::state::{State, log};
use super::tmux::Tmux;
use crate::record::{Budget, Cast, Wrote};
use crate::terminal as pty;

const TERM: &str = "xterm-256color";

/// How long the recording's client may end before the session's own end
/// is seen (see `tap`).
const SESSION_END_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The size a client of the session's current window has: the window,
/// plus the status lines.
async fn size(state: &State) -> Result<(u16, u16), String> {
    let target = format!("={}:", state.cfg.session);
    let out = notices::tmux(
        &state.cfg.tmux,
        &[
            "display-message",
            "-p",
            "-t",
            &target,
            "#{window_width} #{window_height} #{status}",
        ],
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut f = out.split_whitespace();
    let num = |v: Option<&str>| v.and_then(|v| v.parse::<u16>().ok());
    let (Some(w), Some(h)) = (num(f.next()), num(f.next())) else {
        return Err(format!("tmux gave no window size: {out:?}"));
    };
    let status = match f.next() {
        Some("off") | None => 0,
        Some("on") => 1,
        Some(n) => n.parse::<u16>().unwrap_or(1),
    };
    Ok(super::protocol::clamp_size(w, h.saturating_add(status)))
}

/// Creates the recording and starts its client; the task runs until the
/// share ends. Err: the share must not start (it was asked to record).
pub async fn start(state: &Arc<State>) -> Result<std::path::PathBuf, String> {
    let Some(dir) = &state.cfg.record else {
        return Err("not recording".into());
    };
    let (cols, rows) = size(state).await?;
    let title = format!("{}'s session {}", state.cfg.host, state.cfg.session);
    let cast = Cast::create(
        dir,
        &state.cfg.session,
        &title,
        (cols, rows),
        TERM,
        Budget::default(),
    )
    .map_err(|e| e.to_string())?;
    let path = cast.path().to_path_buf();
    let mut cmd = state.cfg.tmux.command();
    cmd.args(Tmux::watch_args(&state.cfg.session))
        .env_clear()
        .env("TERM", TERM)
        .env("LC_CTYPE", "C.UTF-8")
        .env("PATH", "/usr/bin:/bin");
    let p = pty::spawn_on_pty(cmd, cols, rows)
        .map_err(|e| format!("cannot start the recording's tmux client: {e}"))?;
    let master = pty::async_master(p.master)
        .map_err(|e| format!("cannot set up the recording's terminal: {e}"))?;
    if let Ok(mut pid) = state.recorder.lock() {
        *pid = p.child.id();
    }
    if let Ok(mut c) = state.cast.lock() {
        *c = Some(cast);
    }
    tokio::spawn(tap(state.clone(), p.child, master, (cols, rows)));
    Ok(path)
}

async fn tap(
    state: Arc<State>,
    mut child: crate::terminal::PtyChild,
    master: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    mut current: (u16, u16),
) {
    let mut shutdown = state.shutdown.subscribe();
    let mut layout = state.layout.subscribe();
    let mut buf = [0u8; 16384];
    // What is recorded is what a guest would get: no clipboard write or
    // terminal string for whoever replays it (see altscreen.rs).
    let mut filter = super::altscreen::Filter::default();
    let mut clean = Vec::with_capacity(buf.len());
    let mut skipping = false;
    let why = loop {
        tokio::select! {
            _ = shutdown.changed() => break None,
            // Output was skipped: the redraw comes when the budget allows,
            // whether or not the session prints anything more.
            _ = tokio::time::sleep(std::time::Duration::from_millis(250)), if skipping => {
                match state.with_cast(|c| c.poll()) {
                    Wrote::Resumed => { skipping = false; redraw(&state).await }
                    Wrote::Stopped(_) | Wrote::Ended => break None,
                    Wrote::Written | Wrote::Skipped | Wrote::Later => {}
                }
            }
            changed = layout.changed() => {
                if changed.is_err() {
                    continue;
                }
                let Ok(size) = size(&state).await else { continue };
                if size != current {
                    current = size;
                    let _ = pty::set_size(master.get_ref().as_fd(), size.0, size.1);
                    if let Wrote::Stopped(_) = state.with_cast(|c| c.resize(size.0, size.1)) {
                        break None;
                    }
                }
            }
            ready = master.readable() => {
                let Ok(mut guard) = ready else { break Some("its terminal failed".to_string()) };
                match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from)) {
                    Ok(Ok(0)) | Ok(Err(_)) => break Some("its tmux client ended".to_string()),
                    Ok(Ok(n)) => {
                        clean.clear();
                        filter.push(&buf[..n], &mut clean);
                        match state.with_cast(|c| c.output(&clean)) {
                            Wrote::Resumed => { skipping = false; redraw(&state).await }
                            Wrote::Stopped(_) | Wrote::Ended => break None,
                            Wrote::Skipped => skipping = true,
                            Wrote::Written | Wrote::Later => {}
                        }
                    }
                    Err(_would_block) => {}
                }
            }
        }
    };
    let _ = child.kill().await;
    // Whatever comes next, the recording says where its screen stopped.
    if why.is_some() && state.shutdown.borrow().is_none() {
        state.with_cast(|c| c.marker("pairjail: the recording's tmux client ended"));
    }
    // The client also ends when the session does (its last shell exits):
    // the watcher says so within moments, and that is the reason the
    // share ends with, not the recording.
    let normal_end = tokio::time::timeout(SESSION_END_WAIT, async {
        while state.shutdown.borrow().is_none() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    })
    .await
    .is_ok();
    if let Some(why) = why
        && !normal_end
    {
        // The client went away while the share goes on. A pair guest can
        // detach it (it is a client of the server guests command), to go
        // on where nothing records the screen: the recording says so, and
        // the share ends with it.
        log(format!("recording client: {why}"));
        state.with_cast(|_| {
            Ok(Wrote::Stopped(format!(
                "the recording's tmux client ended ({why})"
            )))
        });
        state.end(format!(
            "the recording stopped ({why}); a recorded share does not go on unrecorded"
        ));
    }
}

/// Asks tmux to redraw the recording client from scratch (after output
/// was skipped, the screen in the recording is whole again from here).
async fn redraw(state: &State) {
    let pid = state.recorder.lock().ok().and_then(|p| *p);
    let Some(pid) = pid else { return };
    if let Ok(name) = notices::client_named(&state.cfg.tmux, pid).await {
        let _ = notices::tmux(&state.cfg.tmux, &["refresh-client", "-t", &name]).await;
    }
}
