//! The broker's task that keeps `start --tunnel`'s ssh running (see
//! `tunnel.rs` for the command and why it is built that way).

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::state::{State, log};
use super::tunnel::{BACKOFF_FIRST, BACKOFF_MAX, NOISE, STABLE, Spec};

/// How much of a line of ssh's stderr is kept.
const LINE_HEAD: usize = 512;

/// Lines of ssh's stderr logged per run of ssh.
const LOGGED: u32 = 20;

/// The next line of `r`, its first [`LINE_HEAD`] bytes shown printable
/// (the rest read and dropped); None at the end.
async fn next_line(r: &mut (impl AsyncBufRead + Unpin)) -> Option<String> {
    let mut head: Vec<u8> = Vec::new();
    loop {
        let chunk = match r.fill_buf().await {
            Ok(c) if !c.is_empty() => c,
            _ if head.is_empty() => return None,
            _ => break,
        };
        let (line, used, ended) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        let room = LINE_HEAD.saturating_sub(head.len());
        head.extend_from_slice(&line[..line.len().min(room)]);
        r.consume(used);
        if ended {
            break;
        }
    }
    // ssh ends its messages with "\r\n" (a terminal may be raw).
    if head.last() == Some(&b'\r') {
        head.pop();
    }
    Some(crate::terminal::printable(&String::from_utf8_lossy(&head)))
}

/// Keeps the tunnel up until the share ends.
pub async fn keep(state: Arc<State>, spec: Spec) {
    let mut shutdown = state.shutdown.subscribe();
    let mut backoff = BACKOFF_FIRST;
    let mut ups = 0u32;
    loop {
        state.set_tunnel(|t| t.state = "connecting".into());
        // Looked up again at each start: never from a jailed share's
        // workspace (a link there put on PATH meanwhile included).
        let ssh = match &state.cfg.confinement {
            Some(c) => crate::exe::program_outside("ssh", &c.workspace),
            None => crate::exe::program("ssh"),
        };
        let mut cmd = std::process::Command::new(ssh);
        cmd.args(spec.argv())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        crate::jail::die_with_parent_on_exec(&mut cmd);
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let started = Instant::now();
        match cmd.spawn() {
            Ok(mut child) => {
                let stderr = child.stderr.take();
                let st = state.clone();
                let prior_ups = ups;
                let reader = async move {
                    let Some(e) = stderr else { return };
                    let mut e = tokio::io::BufReader::new(e);
                    // The relay writes some of this (its banners, as many
                    // and as long as it likes): lines are cut short, the
                    // log takes a few per run, and only the first success
                    // changes anything.
                    let mut logged = 0;
                    let mut up = false;
                    while let Some(l) = next_line(&mut e).await {
                        if l.contains("remote forward success") {
                            if std::mem::replace(&mut up, true) {
                                continue;
                            }
                            st.set_tunnel(|t| {
                                t.state = "up".into();
                                t.last_error = None;
                                t.reconnects = prior_ups;
                            });
                            if prior_ups > 0 {
                                st.announce("the tunnel is back: guests can join again".into());
                            } else {
                                log(format!("tunnel: up ({l})"));
                            }
                        } else if !NOISE.iter().any(|n| l.starts_with(n)) {
                            logged += 1;
                            if logged <= LOGGED {
                                log(format!("tunnel: {l}"));
                            } else if logged == LOGGED + 1 {
                                log("tunnel: ssh says more; not logged until it starts again");
                            }
                            st.set_tunnel(|t| t.last_error = Some(l.clone()));
                        }
                    }
                };
                let was_up;
                tokio::select! {
                    (status, _) = async { tokio::join!(child.wait(), reader) } => {
                        was_up = state.tunnel().is_some_and(|t| t.state == "up");
                        log(format!("tunnel: ssh ended ({status:?})"));
                    }
                    _ = shutdown.changed() => {
                        // SIGTERM first: ssh closes the forward on the
                        // relay cleanly; SIGKILL if it does not go.
                        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGTERM,
                            );
                        }
                        let ended = tokio::time::timeout(
                            std::time::Duration::from_secs(2),
                            child.wait(),
                        )
                        .await;
                        if ended.is_err() {
                            let _ = child.kill().await;
                        }
                        return;
                    }
                }
                if was_up {
                    ups += 1;
                    // In the session, not only in `status`: while it is
                    // down, whoever else takes the port on the relay gets
                    // the guests who connect.
                    state.announce(format!(
                        "the tunnel to {} dropped: guests cannot join until it is back (if it stays down, someone else on the relay may hold port {})",
                        spec.relay, spec.listen_port
                    ));
                }
            }
            Err(e) => {
                log(format!("tunnel: cannot run ssh: {e}"));
                state.set_tunnel(|t| t.last_error = Some(format!("cannot run ssh: {e}")));
            }
        }
        state.set_tunnel(|t| t.state = "down".into());
        if started.elapsed() >= STABLE {
            backoff = BACKOFF_FIRST;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}
