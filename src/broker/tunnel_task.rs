//! The broker's task that keeps `start --tunnel`'s ssh running (see
//! `tunnel.rs` for the command and why it is built that way).

use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncBufReadExt;

use super::state::{State, log};
use super::tunnel::{BACKOFF_FIRST, BACKOFF_MAX, NOISE, STABLE, Spec};

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
                    let mut lines = tokio::io::BufReader::new(e).lines();
                    while let Ok(Some(l)) = lines.next_line().await {
                        if l.contains("remote forward success") {
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
                            log(format!("tunnel: {l}"));
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
