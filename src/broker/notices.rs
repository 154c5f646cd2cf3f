//! What the broker tells people inside the session, through the session's
//! own tmux server: notices on the host's clients, the status-line segment
//! that shows who is in, messages on one guest's client, the flags that
//! make a guest's client read-only, and the door's menu.
//!
//! Every text that goes into a tmux format is escaped (`#` → `##`), so a
//! host's `--reason` cannot run a format job.

use std::process::Stdio;

use super::tmux::{Tmux, literal};

/// The session option the status-line segment shows.
pub const SEGMENT_OPTION: &str = "@pairjail-guests";

#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("cannot run tmux: {0}")]
    Run(std::io::Error),
    #[error("tmux {command} failed: {stderr}")]
    Failed { command: String, stderr: String },
}

/// The most of a tmux answer the broker reads.
const MAX_ANSWER: u64 = 1 << 20;
/// How long one tmux command may take.
const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs one tmux command on the session's server; its stdout.
///
/// Where pair guests are, they command that server: `command-alias` can
/// make any command never return, or answer with a format that expands
/// to gigabytes. So an answer is read up to `MAX_ANSWER` and waited for
/// `ANSWER_WAIT`, and its client is killed past either.
pub async fn tmux(t: &Tmux, args: &[&str]) -> Result<String, NoticeError> {
    use tokio::io::AsyncReadExt;
    let command = args.first().unwrap_or(&"").to_string();
    let mut c = tokio::process::Command::from(t.command());
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = c.spawn().map_err(NoticeError::Run)?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(NoticeError::Failed {
            command,
            stderr: "no output pipes".into(),
        });
    };
    let reading = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (mut stdout, mut stderr) = (stdout.take(MAX_ANSWER), stderr.take(MAX_ANSWER));
        let (o, e) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        o.and(e).map_err(NoticeError::Run)?;
        if out.len() as u64 >= MAX_ANSWER || err.len() as u64 >= MAX_ANSWER {
            let _ = child.kill().await;
            return Err(NoticeError::Failed {
                command: command.clone(),
                stderr: format!("an answer of {MAX_ANSWER} bytes or more"),
            });
        }
        let status = child.wait().await.map_err(NoticeError::Run)?;
        Ok::<_, NoticeError>((status, out, err))
    };
    let (status, out, err) = tokio::time::timeout(ANSWER_WAIT, reading)
        .await
        .map_err(|_| NoticeError::Failed {
            command: command.clone(),
            stderr: format!("no answer within {} s", ANSWER_WAIT.as_secs()),
        })??;
    if !status.success() {
        return Err(NoticeError::Failed {
            command,
            stderr: String::from_utf8_lossy(&err).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// One attached client: tmux's name for it (its tty, or `client-PID`),
/// and the pid it reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub name: String,
    pub pid: u32,
    pub uid: u32,
    pub control: bool,
}

async fn clients(t: &Tmux, session: Option<&str>) -> Vec<ClientInfo> {
    let target = session.map(|s| format!("={s}"));
    let mut args = vec!["list-clients"];
    if let Some(t) = &target {
        args.extend(["-t", t.as_str()]);
    }
    args.extend([
        "-F",
        "#{client_uid} #{client_control_mode} #{client_pid} #{client_name}",
    ]);
    tmux(t, &args)
        .await
        .map(|o| parse_clients(&o))
        .unwrap_or_default()
}

/// The most clients of tmux's answer looked at. Every one costs up to
/// three reads of /proc on the broker's only thread, and a pair guest can
/// make tmux answer anything (`command-alias` on `list-clients`): a
/// hundred thousand forged lines froze every guest's screen for seconds
/// per notice. A real share has a client per pair guest, per mirror group
/// and per host terminal, far fewer.
const MAX_CLIENTS: usize = 512;

/// The most host terminals a notice is drawn on, one tmux call each.
const MAX_HOST_CLIENTS: usize = 8;

fn parse_clients(out: &str) -> Vec<ClientInfo> {
    out.lines()
        .take(MAX_CLIENTS)
        .filter_map(|l| {
            let mut w = l.splitn(4, ' ');
            Some(ClientInfo {
                uid: w.next()?.parse().ok()?,
                control: w.next()? == "1",
                pid: w.next()?.parse().ok()?,
                name: w.next()?.to_string(),
            })
        })
        .filter(|c| !c.name.is_empty())
        .collect()
}

/// The parent of a process, from `/proc/PID/stat` (fields after the last ')').
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Was this client started as (or by) one of `started`: the process the
/// broker spawned is the client itself (unconfined) or its jail, which
/// runs the client two processes down (`pairjail exec` and its child).
fn started_by(c: &ClientInfo, started: &[u32]) -> bool {
    let mut pid = Some(c.pid);
    for _ in 0..3 {
        match pid {
            Some(p) if started.contains(&p) => return true,
            Some(p) => pid = parent(p),
            None => return false,
        }
    }
    false
}

/// The host's own clients of the session: its uid, not a control client,
/// not one the broker started for a guest (`guests`: those processes).
/// `guests` is asked after tmux has listed its clients: a guest's client is
/// known to the broker from its spawn on, so none listed can be missing.
pub async fn host_clients(
    t: &Tmux,
    session: &str,
    host_uid: u32,
    guests: &(dyn Fn() -> Vec<u32> + Sync),
) -> Vec<String> {
    let listed = clients(t, Some(session)).await;
    let guests = guests();
    listed
        .into_iter()
        .filter(|c| c.uid == host_uid && !c.control && !started_by(c, &guests))
        .map(|c| c.name)
        .take(MAX_HOST_CLIENTS)
        .collect()
}

/// tmux's name for the client the broker started as process `pid`.
pub async fn client_named(t: &Tmux, pid: u32) -> Result<String, NoticeError> {
    clients(t, None)
        .await
        .into_iter()
        .find(|c| started_by(c, &[pid]))
        .map(|c| c.name)
        .ok_or_else(|| NoticeError::Failed {
            command: "list-clients".into(),
            stderr: format!("no client of process {pid}"),
        })
}

/// Is the session's status line on top (`status-position top`, and on)?
/// Asked when a message is drawn: the scroll regions tmux sends do not
/// tell (it sets the whole screen around redraws, and a program's own
/// region inside the pane while it scrolls).
pub async fn status_on_top(t: &Tmux, session: &str) -> Result<bool, NoticeError> {
    let said = tmux(
        t,
        &[
            "display-message",
            "-p",
            "-t",
            &format!("={session}:"),
            "#{status-position} #{status}",
        ],
    )
    .await?;
    Ok(matches!(said.split_whitespace().collect::<Vec<_>>()[..], ["top", on] if on != "off"))
}

/// Shows `text` on one client's status line for `ms` milliseconds.
pub async fn show(t: &Tmux, tty: &str, text: &str, ms: u32) -> Result<(), NoticeError> {
    tmux(
        t,
        &[
            "display-message",
            "-c",
            tty,
            "-d",
            &ms.to_string(),
            &literal(text),
        ],
    )
    .await
    .map(drop)
}

/// A notice for the host: shown on each of its clients.
pub async fn tell_host(
    t: &Tmux,
    session: &str,
    host_uid: u32,
    guests: &(dyn Fn() -> Vec<u32> + Sync),
    text: &str,
) {
    for tty in host_clients(t, session, host_uid, guests).await {
        let _ = show(t, &tty, text, 5000).await;
    }
}

/// Adds the guests segment in front of the session's status-right (once,
/// when the broker starts) and makes room for it.
pub async fn install_segment(t: &Tmux, session: &str) -> Result<(), NoticeError> {
    // `=NAME:`, not `=NAME`: set-option takes a pane target, and tmux 3.3
    // finds no session for a bare `=NAME` there.
    let target = format!("={session}:");
    let right = tmux(t, &["show-options", "-gv", "status-right"]).await?;
    let length = tmux(t, &["show-options", "-gv", "status-right-length"]).await?;
    let length: u32 = length.trim().parse().unwrap_or(40);
    let segment = format!("#{{?{SEGMENT_OPTION},#[reverse] #{{{SEGMENT_OPTION}}} #[default],}}");
    // At the end of the line: when the line is too long for a terminal,
    // tmux cuts the right part from its left.
    let value = format!("{} {segment}", right.trim_end_matches('\n'));
    tmux(t, &["set-option", "-t", &target, "status-right", &value]).await?;
    tmux(
        t,
        &[
            "set-option",
            "-t",
            &target,
            "status-right-length",
            &(length + 80).to_string(),
        ],
    )
    .await
    .map(drop)
}

/// Sets the segment's text (empty: the segment disappears).
pub async fn set_segment(t: &Tmux, session: &str, text: &str) -> Result<(), NoticeError> {
    let target = format!("={session}:");
    // An option's value is not expanded again when the format shows it,
    // but `#` is still escaped, in case a later format uses E:.
    tmux(
        t,
        &["set-option", "-t", &target, SEGMENT_OPTION, &literal(text)],
    )
    .await
    .map(drop)
}

/// Makes a guest's client read-only: bytes already on their way through
/// the client are then dropped by the server.
pub async fn set_read_only(t: &Tmux, tty: &str) -> Result<(), NoticeError> {
    tmux(
        t,
        &["refresh-client", "-t", tty, "-f", "read-only,ignore-size"],
    )
    .await
    .map(drop)
}

/// The key, after the host's prefix, that opens the door's menu.
pub const DOOR_KEY: &str = "a";

/// The door's question as a tmux command: a menu whose items answer on
/// the tmux option `answer_option` and wake `channel`. Both names carry a
/// random token only the broker and this menu know, so nobody else in the
/// session (a pair guest typing tmux commands) can answer.
pub fn door_menu(title: &str, answer_option: &str, channel: &str) -> String {
    let item =
        |answer: &str| format!("set-option -s {answer_option} {answer} ; wait-for -S {channel}");
    let words = [
        "display-menu".to_string(),
        "-T".into(),
        literal(title),
        "-x".into(),
        "C".into(),
        "-y".into(),
        "C".into(),
        "Admit as requested".into(),
        "a".into(),
        item("requested"),
        "Admit as pair".into(),
        "p".into(),
        item("pair"),
        "Admit as mirror (watch only)".into(),
        "m".into(),
        item("mirror"),
        String::new(),
        "Deny".into(),
        "d".into(),
        item("deny"),
    ];
    words
        .iter()
        .map(|w| quoted(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `word` as one word of a tmux command string: in double quotes, where
/// only `\`, `"` and `$` need escaping.
fn quoted(word: &str) -> String {
    let mut q = String::from("\"");
    for c in word.chars() {
        if matches!(c, '\\' | '"' | '$') {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// Binds the host's prefix then [`DOOR_KEY`] to the door's `menu`, which
/// marks the server with the door's `token` as it opens. The menu opens
/// when the host asks for it, never by itself: a menu takes the keyboard
/// the moment it opens, so one that opened on a knock took the host's
/// next `a` (in `cat`) as "admit", and swallowed the keys before it. Only
/// a client of the host's uid gets it (`uid`).
pub async fn bind_door(t: &Tmux, token: &str, menu: &str, uid: u32) -> Result<(), NoticeError> {
    let only_host = format!("#{{==:#{{client_uid}},{uid}}}");
    let open = format!("set-option -s {DOOR_OPEN} {token} ; {menu}");
    tmux(
        t,
        &[
            "bind-key", "-T", "prefix", DOOR_KEY, "if-shell", "-F", &only_host, &open,
        ],
    )
    .await
    .map(drop)
}

/// The server option naming the door whose menu the host opened last.
pub const DOOR_OPEN: &str = "@pairjail-door-open";

/// What the door's key did before a door took it (the host's own
/// binding, from the config the share's server loaded), as a command.
pub async fn door_key_binding(t: &Tmux) -> Option<String> {
    let out = tmux(t, &["list-keys", "-T", "prefix", DOOR_KEY])
        .await
        .ok()?;
    let line = out.lines().next()?.trim();
    line.starts_with("bind-key").then(|| line.to_string())
}

/// Gives the door's key back what it did before (`binding`), or nothing.
pub async fn restore_door_key(t: &Tmux, binding: Option<&str>) -> Result<(), NoticeError> {
    match binding {
        // `list-keys` prints bindings as commands; if-shell parses one.
        Some(b) => tmux(t, &["if-shell", "-F", "1", b]).await,
        None => tmux(t, &["unbind-key", "-T", "prefix", DOOR_KEY]).await,
    }
    .map(drop)
}

/// Did the host open the menu of the door `token` last?
pub async fn door_opened(t: &Tmux, token: &str) -> bool {
    tmux(t, &["show-options", "-sv", DOOR_OPEN])
        .await
        .is_ok_and(|v| v.trim() == token)
}

/// The host's prefix key as tmux names it (`C-b`), to tell the host.
pub async fn prefix(t: &Tmux) -> Option<String> {
    let p = tmux(t, &["show-options", "-gv", "prefix"]).await.ok()?;
    let p = p.trim();
    (!p.is_empty() && p != "None").then(|| literal(p))
}

/// Closes a menu (or popup) on a client: how the door takes its question
/// back once it has an answer.
pub async fn close_menu(t: &Tmux, client: &str) -> Result<(), NoticeError> {
    tmux(t, &["display-popup", "-C", "-c", client])
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_text_are_shown_not_run() {
        assert_eq!(
            literal("#(touch /tmp/x) #{pane_pid}"),
            "##(touch /tmp/x) ##{pane_pid}"
        );
        assert_eq!(literal("a\x1b[2Jb\n"), "a[2Jb");
    }

    #[test]
    fn a_forged_list_of_clients_is_read_only_so_far() {
        let forged = "1000 0 3 x\n".repeat(100_000);
        assert_eq!(parse_clients(&forged).len(), MAX_CLIENTS);
    }

    #[test]
    fn clients_are_parsed_and_a_client_is_known_by_its_process() {
        let out = "1000 0 42 /dev/pts/3\n1000 1 43 client-43\n1001 0 44 client-44\n";
        let c = parse_clients(out);
        assert_eq!(c.len(), 3);
        assert_eq!(c[1].name, "client-43");
        assert!(c[1].control);
        let me = std::process::id();
        let mine = ClientInfo {
            name: "x".into(),
            pid: me,
            uid: 0,
            control: false,
        };
        assert!(started_by(&mine, &[me]));
        assert!(started_by(&mine, &[parent(me).unwrap()]));
        assert!(!started_by(&mine, &[me + 1_000_000]));
    }
}
