//! The dedicated tmux server of a share: one server, its own socket, only
//! the shared session on it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::profile::Mode;

/// Resizes the client's current window (and the size of new windows) to
/// that client, unless it is an ignore-size client.
const SIZE_HOOK: &str = "run-shell -C \"#{?#{m:*ignore-size*,#{client_flags}},set-option -gu @pairjail-noop,resize-window -x #{client_width} -y #{e|-:#{client_height},#{?status,1,0}} ; set-option -g default-size #{client_width}x#{e|-:#{client_height},#{?status,1,0}}}\"";

/// How long `kill-server` may wait for the server's answer.
const KILL_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum TmuxError {
    #[error("cannot run tmux: {0} (is it installed?)")]
    Run(std::io::Error),
    #[error("tmux {command} failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("cannot open {path} to guests: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct Tmux {
    pub socket: PathBuf,
    /// What runs before `tmux` (a jail for clients of a jailed session).
    prefix: Vec<OsString>,
    /// The tmux program.
    program: PathBuf,
}

impl Tmux {
    /// The server of an unconfined session: clients are plain `tmux`.
    pub fn new(socket: &Path) -> Tmux {
        Tmux {
            socket: socket.to_path_buf(),
            prefix: vec![],
            program: crate::exe::program("tmux"),
        }
    }

    /// The server of a jailed session: every client is `program` run
    /// inside `prefix`.
    pub fn jailed(socket: &Path, prefix: Vec<OsString>, program: PathBuf) -> Tmux {
        Tmux {
            socket: socket.to_path_buf(),
            prefix,
            program,
        }
    }

    pub fn is_jailed(&self) -> bool {
        !self.prefix.is_empty()
    }

    /// A tmux client of this server. A jailed client keeps only its
    /// profile's variables: what the caller has (SSH_AUTH_SOCK, DISPLAY, …)
    /// never reaches a jailed session's environment through a client.
    pub fn command(&self) -> Command {
        let mut c = match self.prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        c.arg("-S").arg(&self.socket);
        c
    }

    /// Starts the server with the shared session, detached. The host's own
    /// tmux configuration is loaded as usual.
    pub fn start(
        &self,
        session: &str,
        program: &[String],
        rogue: bool,
        cwd: Option<&Path>,
    ) -> Result<(), TmuxError> {
        let mut c = self.command();
        c.args(["new-session", "-d", "-s", session, "-x", "200", "-y", "50"]);
        if let Some(dir) = cwd {
            c.arg("-c").arg(dir);
        }
        if !program.is_empty() {
            c.arg("--").args(program);
        }
        // Only the host's clients and pair guests size the window, attached
        // or not. With any automatic window-size, tmux lets ignore-size
        // clients (mirror guests) size the window as soon as no other
        // client is attached; so sizing is manual, and a hook resizes the
        // window to a client that resized or attached, unless that client
        // is ignore-size. (`run -C` because it expands formats.)
        // tmux 3.3a crashes (SIGSEGV) when a grouped session, a rogue
        // guest's, is made under window-size manual: sessions that allow
        // rogue keep "smallest", where mirror guests size the window
        // (within the broker's clamp) while no host or pair client is
        // attached.
        // A server started with -D (a jailed one) stays when its last
        // session ends unless told otherwise.
        c.args([";", "set-option", "-s", "exit-empty", "on"]);
        if rogue {
            c.args([";", "set-option", "-g", "window-size", "smallest"]);
        } else {
            c.args([";", "set-option", "-g", "window-size", "manual"]);
            for hook in [
                "client-attached",
                "client-resized",
                "client-session-changed",
            ] {
                c.args([";", "set-hook", "-g", hook, SIZE_HOOK]);
            }
        }
        let out = c.stdin(Stdio::null()).output().map_err(TmuxError::Run)?;
        if !out.status.success() {
            return Err(TmuxError::Failed {
                command: "new-session".into(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    /// Lets another user's tmux client attach (tmux ≥ 3.3 keeps an access
    /// list; `-r`: read-only), and opens the socket file to them: the access
    /// list, not the file mode, decides who gets in.
    pub fn grant(&self, user: &str, read_only: bool) -> Result<(), TmuxError> {
        let mut c = self.command();
        c.args(["server-access", "-a"]);
        if read_only {
            c.arg("-r");
        }
        let out = c
            .arg(user)
            .stdin(Stdio::null())
            .output()
            .map_err(TmuxError::Run)?;
        if !out.status.success() {
            return Err(TmuxError::Failed {
                command: format!("server-access -a {user}"),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.socket, std::fs::Permissions::from_mode(0o666)).map_err(
            |source| TmuxError::Socket {
                path: self.socket.clone(),
                source,
            },
        )
    }

    /// Does a server answer on the socket?
    pub fn answers(&self) -> bool {
        self.command()
            .arg("start-server")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    pub fn has_session(&self, session: &str) -> bool {
        self.command()
            .args(["has-session", "-t", &format!("={session}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Asks the server to end. A server that does not answer (stopped,
    /// stuck) would hold its client, and the caller, for good: the client
    /// is given `KILL_WAIT`, then killed. Whether the server ended is the
    /// caller's to check.
    pub fn kill_server(&self) {
        let Ok(mut client) = self
            .command()
            .arg("kill-server")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return;
        };
        let deadline = Instant::now() + KILL_WAIT;
        while let Ok(None) = client.try_wait() {
            if Instant::now() >= deadline {
                let _ = client.kill();
                let _ = client.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The arguments (after `tmux -S SOCKET`, see [`command`](Tmux::command))
    /// of the tmux client a guest gets, run by the broker on a pty it owns.
    /// `-E`: the guest's environment never reaches the session. Mirror
    /// guests attach read-only and never resize the host's window; rogue
    /// guests get their own session grouped with the host's. `banner` (a
    /// tmux format) is shown on the client's status line once it is in.
    pub fn guest_client_args(
        session: &str,
        guest: &str,
        mode: Mode,
        serial: u64,
        banner: &str,
    ) -> Vec<String> {
        let target = format!("={session}");
        let mut a: Vec<String> = vec![];
        match mode {
            Mode::Mirror => a.extend(Tmux::watch_args(session)),
            Mode::Pair => a.extend(["attach-session", "-E", "-t", &target].map(String::from)),
            Mode::Rogue => {
                let own = format!("{session}-{guest}-{serial}");
                a.extend(["new-session", "-E", "-t", &target, "-s", &own].map(String::from));
                a.extend([";", "set-option", "destroy-unattached", "on"].map(String::from));
            }
        }
        let ms = BANNER.as_millis().to_string();
        a.extend([";", "display-message", "-d", &ms, banner].map(String::from));
        a
    }
}

impl Tmux {
    /// A client that only watches: read-only, and never a say in the
    /// window's size (a mirror guest's, the recording's).
    pub fn watch_args(session: &str) -> Vec<String> {
        let target = format!("={session}");
        [
            "attach-session",
            "-E",
            "-r",
            "-f",
            "ignore-size,read-only",
            "-t",
            &target,
        ]
        .map(String::from)
        .to_vec()
    }
}

/// How long a guest's banner stays on its status line.
pub const BANNER: std::time::Duration = std::time::Duration::from_secs(8);

/// Text shown literally in a tmux format: `#` doubled, control
/// characters dropped, so no text from outside can run a format job.
pub fn literal(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .replace('#', "##")
}
