//! The door: a guest that must be let in waits here until the host
//! answers, in the session (a tmux menu on the host's own clients) or with
//! `pairjail approve` / `pairjail deny` (the control socket, which answers
//! only the host's uid). No answer in time is a denial.
//!
//! The menu answers through a tmux option and a `wait-for` channel whose
//! names carry 128 random bits: only the broker and the menu know them, so
//! nobody else in the session (a pair guest typing tmux commands) can
//! answer for the host.
//!
//! The menu is shown only in sessions where no guest can ever type, that
//! is, sessions that allow neither pair nor rogue. A guest who can type
//! can run tmux in a pane and attach a client of its own to the session:
//! that client has the host's uid and was not started by the broker, and
//! tmux knows nothing else about a client that the client could not have
//! made up (its pid, its tty's name). So the menu would open on it, and
//! the guest, or a script it left running, could let anyone in. There the
//! host answers with `pairjail approve` / `pairjail deny` only.

use std::io::Read;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::mpsc::UnboundedReceiver;

use super::notices;
use super::protocol::{Frame, Msg};
use super::roster::{Answer, Order};
use super::state::{DoorMenu, State};
use crate::audit::Decider;
use crate::profile::Mode;

/// Who is at the door, for the host's prompt.
pub struct Visitor<'a> {
    pub serial: u64,
    pub name: &'a str,
    pub mode: Mode,
    pub key: Option<&'a str>,
    pub source: Option<&'a str>,
}

fn token() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("the door cannot make a token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Why a guest did not get past the door.
pub enum Shut {
    /// Turned away, by whom, and the line the guest gets.
    Denied(Decider, String),
    /// The guest gave up, or the share ended, while it waited.
    Gone(String),
}

/// Waits for the host's answer. Ok(mode): let in, in that mode.
pub async fn wait(
    state: &State,
    s: &mut UnixStream,
    v: &Visitor<'_>,
    orders: &mut UnboundedReceiver<Order>,
) -> Result<Mode, Shut> {
    let cfg = &state.cfg;
    let answer = state
        .roster
        .wait_at_door(v.serial)
        .map_err(|e| Shut::Denied(Decider::Host, e.to_string()))?;
    let secs = cfg.approve_timeout.as_secs();
    let waiting = Frame::Msg(Msg::Waiting {
        text: format!(
            "{} must let you in; waiting up to {secs} s (Ctrl-C to give up)",
            cfg.host
        ),
    });
    if s.write_all(&waiting.encode()).await.is_err() {
        return Err(Shut::Gone("gave up".into()));
    }
    let who = format!(
        "{} wants to join as {} (key {}, from {})",
        v.name,
        v.mode,
        v.key.unwrap_or("unknown"),
        v.source.unwrap_or("local")
    );
    let menus_safe = !cfg
        .allowed
        .iter()
        .any(|m| matches!(m, Mode::Pair | Mode::Rogue));
    let token = token().map_err(|e| Shut::Denied(Decider::Host, e))?;
    let option = format!("@pairjail-door-{token}");
    let channel = format!("pairjail-door-{token}");
    // The menu opens only when the host asks (its prefix, then `a`): one
    // that opened by itself took the keyboard mid-word.
    let cli = format!("`pairjail approve {0}` / `pairjail deny {0}`", v.name);
    // The key comes first: a status line cuts a long notice at its width.
    let notice = if menus_safe {
        let menu = notices::door_menu(&format!("pairjail: {who}"), &option, &channel);
        let twin = {
            let mut menus = lock(&state.door_menus);
            let twin = menus.iter().any(|m| m.name == v.name);
            menus.push(DoorMenu {
                token: token.clone(),
                name: v.name.to_string(),
                menu,
            });
            twin
        };
        rebind(state).await;
        if twin {
            // Its menu and the other's differ only in the address: the
            // host answers for the one it means, by address.
            format!(
                "two connections of {0} wait, so no menu: this one is from {1}: `pairjail approve {0} --from {1}` (or deny); {who}",
                v.name,
                v.source.unwrap_or("local")
            )
        } else {
            let keys = match notices::prefix(&cfg.tmux).await {
                Some(p) => format!("{p} {}", notices::DOOR_KEY),
                None => format!("your tmux prefix, then {}", notices::DOOR_KEY),
            };
            format!("press {keys}: {who}; or {cli}")
        }
    } else {
        format!("{who}: no menu in a session where guests can type; answer with {cli}")
    };
    // Never folded into a count with other notices (see `announce_loop`):
    // the host must see who knocks.
    state.announce_door(notice);
    let menu = menus_safe.then_some((channel.as_str(), option.as_str()));
    let decided = decide(state, s, answer, menu, orders).await;
    if menus_safe {
        // This door's menu goes with it: the key opens the one of the
        // guest who came before, if one still waits. If the host opened
        // this door's menu last, it is closed on the host's clients, as
        // tmux's own would be (never a menu or popup of another door's,
        // or of the host's own, on a knock given up).
        lock(&state.door_menus).retain(|m| m.token != token);
        rebind(state).await;
        if notices::door_opened(&cfg.tmux, &token).await {
            let _ = notices::tmux(&cfg.tmux, &["set-option", "-su", notices::DOOR_OPEN]).await;
            for name in notices::host_clients(&cfg.tmux, &cfg.session, cfg.host_uid, &|| {
                state.own_clients()
            })
            .await
            {
                let _ = notices::close_menu(&cfg.tmux, &name).await;
            }
        }
    }
    let decided = decided?;
    match decided {
        Answer::Deny => Err(Shut::Denied(
            Decider::Host,
            format!("{} did not let you in", cfg.host),
        )),
        Answer::Admit(None) => Ok(v.mode),
        Answer::Admit(Some(m)) if cfg.allowed.contains(&m) => Ok(m),
        Answer::Admit(Some(m)) => Err(Shut::Denied(
            Decider::Host,
            format!(
                "{} let you in as {m}, which this session does not allow",
                cfg.host
            ),
        )),
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Points the host's door key at the latest waiting guest's menu, or at
/// nothing once none waits.
async fn rebind(state: &State) {
    let t = &state.cfg.tmux;
    let mut before = state.door_key.lock().await;
    // The latest guest alone under its name: where two connections of a
    // name wait (a stolen key beside the real guest), the key would open
    // whichever knocked last, and "admit" would let in the wrong one.
    let latest = {
        let menus = lock(&state.door_menus);
        menus
            .iter()
            .rev()
            .find(|m| menus.iter().filter(|o| o.name == m.name).count() == 1)
            .map(|m| (m.token.clone(), m.menu.clone()))
    };
    let done = match (latest, before.is_some()) {
        (Some((token, menu)), held) => {
            if !held {
                *before = Some(notices::door_key_binding(t).await);
            }
            notices::bind_door(t, &token, &menu, state.cfg.host_uid).await
        }
        (None, true) => {
            let original = before.take().flatten();
            notices::restore_door_key(t, original.as_deref()).await
        }
        (None, false) => Ok(()),
    };
    if let Err(e) = done {
        super::state::log(format!("the door's key: {e}"));
    }
}

/// Waits for the first answer: the control socket, the menu (its
/// `wait-for` channel and option, only where no guest can type), the
/// clock, a kick, the end of the share, or the guest giving up.
///
/// Where guests can type, tmux is never asked: they command the server,
/// and `command-alias` makes any command answer what they like (a
/// `wait-for` that returns at once, a `show-options` that says "pair").
async fn decide(
    state: &State,
    s: &mut UnixStream,
    answer: tokio::sync::oneshot::Receiver<Answer>,
    menu: Option<(&str, &str)>,
    orders: &mut UnboundedReceiver<Order>,
) -> Result<Answer, Shut> {
    let cfg = &state.cfg;
    // The menu's waiter, and the option it answers in.
    let mut waiter = match menu {
        Some((channel, option)) => {
            let mut std_waiter = cfg.tmux.command();
            // Ends with the broker (kill_on_drop does not, on a SIGKILL).
            crate::jail::die_with_parent_on_exec(&mut std_waiter);
            let mut waiter = tokio::process::Command::from(std_waiter);
            waiter
                .args(["wait-for", channel])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            let child = waiter.spawn().map_err(|e| {
                Shut::Denied(
                    Decider::Host,
                    format!("the door cannot wait for the menu: {e}"),
                )
            })?;
            Some((child, option))
        }
        None => None,
    };
    let menu_closed = async {
        match waiter.as_mut() {
            Some((child, option)) => {
                let _ = child.wait().await;
                menu_answer(state, option).await
            }
            None => std::future::pending().await,
        }
    };
    let mut shutdown = state.shutdown.subscribe();
    let mut probe = [0u8; 1];
    let decided = tokio::select! {
        a = answer => a.unwrap_or(Answer::Deny),
        a = menu_closed => a,
        _ = tokio::time::sleep(cfg.approve_timeout) => {
            return Err(Shut::Denied(Decider::Timeout, format!("{} did not answer within {} s", cfg.host, cfg.approve_timeout.as_secs())));
        }
        order = orders.recv() => return Err(Shut::Denied(Decider::Host, match order {
            Some(Order::Kick(reason)) => reason,
            Some(Order::Terms(_)) => "the host changed your invite: connect again".into(),
            _ => "turned away".into(),
        })),
        _ = shutdown.changed() => {
            return Err(Shut::Gone(shutdown.borrow().clone().unwrap_or_else(|| "the session ended".into())));
        }
        // join sends nothing before it is let in: a close (or anything
        // else) means the guest gave up.
        _ = tokio::io::AsyncReadExt::read(s, &mut probe) => return Err(Shut::Gone("gave up".into())),
    };
    Ok(decided)
}

/// The menu item the host chose (its option, then cleared).
async fn menu_answer(state: &State, option: &str) -> Answer {
    let t = &state.cfg.tmux;
    let value = notices::tmux(t, &["show-options", "-sv", option]).await;
    let _ = notices::tmux(t, &["set-option", "-su", option]).await;
    match value.as_deref().map(str::trim) {
        Ok("requested") => Answer::Admit(None),
        Ok("pair") => Answer::Admit(Some(Mode::Pair)),
        Ok("mirror") => Answer::Admit(Some(Mode::Mirror)),
        _ => Answer::Deny,
    }
}
