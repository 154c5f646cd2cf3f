//! A real sshd on 127.0.0.1 with a test config, real users, generated
//! ed25519 keys with forced commands, and a driver tmux whose windows run
//! real `ssh -tt` clients. Everything stops on drop.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

pub const HOST: &str = "pjhost";
pub const GUEST_USER: &str = "pjpair";

pub struct World {
    pub dir: PathBuf,
    pub port: u16,
    pub runtime: PathBuf,
    sshd: Option<Child>,
    pub driver: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// One guest key: its private key file and the forced command it gets.
pub struct Guest {
    pub name: String,
    pub key: PathBuf,
}

impl World {
    /// Needs root (users, sshd). Outside CI without root: None, loudly.
    /// Guests get `restrict,pty,command="pairjail join …"` lines written for
    /// the guest user, the way a host would write them by hand.
    pub fn new(tag: &str, guests: &[(&str, &str, Option<&str>)]) -> Option<(World, Vec<Guest>)> {
        World::new_with(tag, "", guests)
    }

    /// Like `new`, with `top` at the start of sshd's config.
    pub fn new_with(
        tag: &str,
        top: &str,
        guests: &[(&str, &str, Option<&str>)],
    ) -> Option<(World, Vec<Guest>)> {
        let mut w = World::bare(
            tag,
            top,
            &format!("{}/keys/%u", World::dir_for(tag).display()),
        )?;
        let bin = shared_binary();
        let mut lines = String::new();
        let mut out = Vec::new();
        for (name, session, mode) in guests {
            let key = w.keygen(name);
            let public = fs::read_to_string(key.with_extension("pub")).unwrap();
            let mode = mode.map(|m| format!(" --mode {m}")).unwrap_or_default();
            lines.push_str(&format!(
                "restrict,pty,command=\"exec {} join --host {HOST} --session {session} --guest {name}{mode} --runtime-dir {}\" {}",
                bin.display(),
                w.runtime.display(),
                public
            ));
            out.push(Guest {
                name: name.to_string(),
                key,
            });
        }
        fs::write(w.dir.join("keys").join(GUEST_USER), lines).unwrap();
        // The broker admits a guest only against the host's own invites.
        for ((name, session, mode), g) in guests.iter().zip(&out) {
            w.invite(name, session, *mode, &g.key.with_extension("pub"));
        }
        w.start_sshd();
        Some((w, out))
    }

    /// Adds words to one guest's forced `join` command (sshd reads the
    /// file at each login).
    /// Gives one guest's forced command a guest-relay profile whose
    /// `[session]` adds `session_line` (written world-readable, for join).
    pub fn guest_profile(&self, guest: &str, name: &str, session_line: &str) {
        let p = self.dir.join(format!("{name}.toml"));
        fs::write(
            &p,
            format!("extends = [\"guest-relay\"]\n\n[session]\n{session_line}\n"),
        )
        .unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        self.join_args(guest, &format!("--profile {}", p.display()));
    }

    pub fn join_args(&self, guest: &str, extra: &str) {
        let path = self.dir.join("keys").join(GUEST_USER);
        let text = fs::read_to_string(&path).unwrap();
        let needle = format!("--guest {guest} ");
        assert!(text.contains(&needle), "no line for {guest}");
        fs::write(&path, text.replace(&needle, &format!("{needle}{extra} "))).unwrap();
    }

    /// The driver pane's own screen mode: is the guest's outer terminal
    /// in the alternate screen?
    pub fn alternate_on(&self, target: &str) -> bool {
        self.drv(&["display-message", "-p", "-t", target, "#{alternate_on}"])
            .trim()
            == "1"
    }

    /// The driver pane with its scrollback.
    pub fn history(&self, target: &str) -> String {
        self.drv(&["capture-pane", "-p", "-J", "-S", "-200", "-t", target])
    }

    /// `pairjail status --json` as the host: the guests of `session`.
    pub fn guests(&self, session: &str) -> Vec<serde_json::Value> {
        let out = self.host_pairjail(&["status", "--json", "--session", session]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v[0]["guests"].as_array().cloned().unwrap_or_default()
    }

    /// `pairjail invite add` as the host (pair-user invites).
    pub fn invite(&self, name: &str, session: &str, mode: Option<&str>, public: &Path) {
        let public = public.display().to_string();
        let mut args = vec![
            "invite",
            "add",
            name,
            "--key-file",
            &public,
            "--session",
            session,
            "--via",
            "pair-user",
            // Tests invite the same guest again to change its invite.
            "--replace",
        ];
        if let Some(m) = mode {
            args.push("--mode");
            args.extend(m.split_whitespace());
        }
        let out = self.host_pairjail(&args);
        assert!(
            out.status.success(),
            "invite add {name}: {}",
            text(&out.stderr)
        );
    }

    pub fn dir_for(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("pairjail-e2e-{tag}-{}", std::process::id()))
    }

    /// Users, directories, a host key and an sshd config (with `top` at its
    /// start and the given AuthorizedKeysFile); sshd is not started yet.
    pub fn bare(tag: &str, top: &str, authorized_keys_file: &str) -> Option<World> {
        if !is_root() {
            assert!(!in_ci(), "the session tests need root in CI");
            eprintln!("SKIPPED: the session tests need root (users, sshd)");
            return None;
        }
        if !require_kernel() {
            return None;
        }
        ensure_user(HOST);
        ensure_user(GUEST_USER);
        let dir = World::dir_for(tag);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("keys")).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let runtime = dir.join("run");
        fs::create_dir_all(&runtime).unwrap();
        fs::set_permissions(&runtime, fs::Permissions::from_mode(0o1777)).unwrap();
        // The host's project: sessions start here (the workspace of a jailed one).
        let ws = dir.join("ws");
        fs::create_dir_all(&ws).unwrap();
        run(Command::new("chown").arg(format!("{HOST}:{HOST}")).arg(&ws));
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join("hostkey")));
        let port = free_port();
        let config = format!(
            "{top}Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {authorized_keys_file}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\nPrintMotd no\nPrintLastLog no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n",
            d = dir.display()
        );
        fs::write(dir.join("sshd_config"), config).unwrap();
        let driver = format!("pjdrv-{tag}-{}", std::process::id());
        run(Command::new("tmux").args([
            "-L",
            &driver,
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "drv",
            "-x",
            "120",
            "-y",
            "40",
        ]));
        Some(World {
            dir,
            port,
            runtime,
            sshd: None,
            driver,
        })
    }

    pub fn keygen(&self, name: &str) -> PathBuf {
        let key = self.dir.join(format!("key-{name}"));
        if !key.exists() {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(&key));
        }
        key
    }

    pub fn start_sshd(&mut self) {
        fs::create_dir_all("/run/sshd").unwrap();
        let sshd = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(self.dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.dir.join("sshd.log")).unwrap())
            .spawn()
            .expect("sshd (openssh-server) must be installed");
        self.sshd = Some(sshd);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// ssh options every client here uses.
    pub fn ssh_args(&self, key: &Path) -> Vec<String> {
        vec![
            "-i".into(),
            key.display().to_string(),
            "-p".into(),
            self.port.to_string(),
            "-o".into(),
            "StrictHostKeyChecking=no".into(),
            "-o".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
            "-o".into(),
            "BatchMode=yes".into(),
        ]
    }

    /// `ssh -tt` as the guest user, to its end (for joins that are refused).
    pub fn ssh_join(&self, g: &Guest) -> std::process::Output {
        self.ssh_command(&g.key)
            .arg("-tt")
            .arg(format!("{GUEST_USER}@127.0.0.1"))
            .output()
            .unwrap()
    }

    /// The guest's join ends with exit status 1 and a line containing `needle`.
    pub fn assert_join_refused(&self, g: &Guest, needle: &str) {
        let out = self.ssh_join(g);
        let all = text(&out.stdout) + &text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(all.contains(needle), "expected '{needle}' in: {all}");
    }

    pub fn ssh_command(&self, key: &Path) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.ssh_args(key));
        c
    }

    /// Opens a driver window running `ssh -tt` for the guest; returns its target.
    pub fn join_in_window(&self, g: &Guest, cols: u16, rows: u16) -> String {
        self.join_in_window_as(g, GUEST_USER, cols, rows)
    }

    /// Like `join_in_window`, as another ssh user.
    pub fn join_in_window_as(&self, g: &Guest, user: &str, cols: u16, rows: u16) -> String {
        self.join_in_window_with(g, user, cols, rows, &[])
    }

    /// Like `join_in_window_as`, with more ssh options (`-o …`), each one
    /// word for the window's shell.
    pub fn join_in_window_with(
        &self,
        g: &Guest,
        user: &str,
        cols: u16,
        rows: u16,
        more: &[&str],
    ) -> String {
        // ssh starts once the window has its size (the Enter sent after
        // the resize), so the guest joins at that size.
        let cmd = format!(
            "read _; ssh -tt {} {} {user}@127.0.0.1; echo SSH-EXIT=$?; sleep 600",
            self.ssh_args(&g.key).join(" "),
            more.join(" ")
        );
        let target = format!("drv:{}", g.name);
        self.drv(&["new-window", "-d", "-n", &g.name, &cmd]);
        self.drv(&[
            "resize-window",
            "-t",
            &target,
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
        ]);
        self.drv(&["send-keys", "-t", &target, "Enter"]);
        target
    }

    /// Waits until everything the guest typed in `target` so far has been
    /// handled on the host side: the guest's terminal is resized to a width
    /// no client has yet, which travels behind the keystrokes on the same
    /// connection (relay → broker, or the guest's own tmux client); once a
    /// client of the host's tmux server has that width, the keys before it
    /// were taken or dropped. A wait on state, for negative checks.
    pub fn barrier(&self, target: &str, session: &str) {
        static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(150);
        let width = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let w = width.to_string();
        self.drv(&["resize-window", "-t", target, "-x", &w, "-y", "40"]);
        eventually(20, || {
            let widths = self.host_tmux(session, &["list-clients", "-F", "#{client_width}"]);
            if widths.lines().any(|l| l.trim() == w) {
                Ok(())
            } else {
                Err(format!(
                    "no client of {session} reached width {w}: {widths:?}"
                ))
            }
        });
    }

    pub fn drv(&self, args: &[&str]) -> String {
        run(Command::new("tmux").arg("-L").arg(&self.driver).args(args))
    }

    pub fn screen(&self, target: &str) -> String {
        self.drv(&["capture-pane", "-p", "-t", target])
    }

    /// Waits (up to `secs`, to catch hangs, never to time anything) for a screen to contain `needle`.
    pub fn wait_screen(&self, target: &str, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen(target);
            if s.contains(needle) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "'{needle}' never appeared on {target}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pid of the session's broker (`broker.pid` holds `PID START`).
    pub fn broker_pid(&self, session: &str) -> i32 {
        first_pid(&self.session_paths(session).join("broker.pid"))
    }

    /// Kills the session's broker with SIGKILL, as a crash would, and
    /// waits until it is gone; its pid.
    pub fn crash_broker(&self, session: &str) -> i32 {
        let pid = self.broker_pid(session);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        eventually(10, || {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("__broker") {
                Err(format!("the broker {pid} did not die"))
            } else {
                Ok(())
            }
        });
        pid
    }

    /// The session's tmux server as `start` recorded it in `tmux.pid`
    /// (its pid as the host sees it).
    pub fn server_pid(&self, session: &str) -> i32 {
        first_pid(&self.session_paths(session).join("tmux.pid"))
    }

    pub fn session_paths(&self, session: &str) -> PathBuf {
        self.runtime.join(HOST).join(session)
    }

    /// Runs pairjail as the host user.
    pub fn host_pairjail(&self, args: &[&str]) -> std::process::Output {
        let rt = self.runtime.display().to_string();
        run_as(HOST, shared_binary())
            .args(args)
            .args(["--runtime-dir", &rt])
            .env("HOME", format!("/home/{HOST}"))
            .env("TERM", "xterm")
            .current_dir("/")
            .output()
            .unwrap()
    }

    /// The host's project directory, where sessions start.
    pub fn workspace(&self) -> PathBuf {
        self.dir.join("ws")
    }

    /// `pairjail start --detach` as the host, running `program`.
    pub fn start_session(&self, session: &str, allow: &str, program: &str) {
        self.start_session_with(session, allow, program, &[]);
    }

    pub fn start_session_with(&self, session: &str, allow: &str, program: &str, extra: &[&str]) {
        let out = self.try_start_session(session, allow, program, extra, &[]);
        assert!(out.status.success(), "start: {}", text(&out.stderr));
    }

    /// `pairjail start --detach` as the host with extra arguments and
    /// variables in its environment; the output, whatever it is.
    pub fn try_start_session(
        &self,
        session: &str,
        allow: &str,
        program: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> std::process::Output {
        self.try_start_session_limited(session, allow, program, extra, env, None)
    }

    /// The same under `prlimit LIMIT` (e.g. `--nofile=256:8192`).
    pub fn try_start_session_limited(
        &self,
        session: &str,
        allow: &str,
        program: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        limit: Option<&str>,
    ) -> std::process::Output {
        let rt = self.runtime.display().to_string();
        let mut cmd = match limit {
            Some(l) => {
                let mut c = Command::new("prlimit");
                c.arg(l).arg("--").arg("setpriv");
                c.args(["--reuid", HOST, "--regid", HOST, "--init-groups", "--"])
                    .arg(shared_binary());
                c
            }
            None => run_as(HOST, shared_binary()),
        };
        cmd.args([
            "start",
            "--detach",
            "--session",
            session,
            "--allow",
            allow,
            "--default-mode",
        ])
        .arg(allow.split(',').next().unwrap())
        .args(["--guest-user", GUEST_USER, "--runtime-dir", &rt])
        .args(extra)
        .args(["--", "sh", "-c", program])
        .env("HOME", format!("/home/{HOST}"))
        .env("TERM", "xterm")
        .envs(env.iter().copied())
        .current_dir(self.workspace())
        .output()
        .unwrap()
    }

    /// tmux on the host's dedicated server, as the host.
    pub fn host_tmux(&self, session: &str, args: &[&str]) -> String {
        let sock = self
            .session_paths(session)
            .join("tmux")
            .join("server")
            .join("tmux.sock");
        let out = run_as(HOST, "tmux")
            .args(["-S"])
            .arg(sock)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?} as {HOST}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// A hand-written client on the session's broker socket, run as `user`:
    /// sends the bytes, returns what the broker answered.
    pub fn raw_client(&self, user: &str, session: &str, payload_hex: &str) -> String {
        let sock = self.session_paths(session).join("broker.sock");
        let script = format!(
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect({:?})\ns.sendall(bytes.fromhex({:?}))\ns.settimeout(5)\nout=b''\ntry:\n  while True:\n    d=s.recv(4096)\n    if not d: break\n    out+=d\nexcept Exception: pass\nsys.stdout.write(out.decode('utf-8','replace'))\n",
            sock.display().to_string(),
            payload_hex
        );
        let out = run_as(user, "/usr/bin/python3")
            .args(["-c", &script])
            .current_dir("/")
            .output()
            .expect("python3");
        text(&out.stdout) + &text(&out.stderr)
    }

    /// Attaches the host's own terminal (a driver window) to the session
    /// with `pairjail attach`; the window shows `ATTACH-EXIT=<status>` and
    /// pairjail's last line when it ends.
    pub fn attach_host(&self, session: &str) -> String {
        let cmd = format!(
            "setpriv --reuid {HOST} --regid {HOST} --init-groups -- env HOME=/home/{HOST} {} attach --session {session} --runtime-dir {}; echo ATTACH-EXIT=$?; sleep 600",
            shared_binary().display(),
            self.runtime.display()
        );
        let target = format!("drv:host-{session}");
        self.drv(&["new-window", "-d", "-n", &format!("host-{session}"), &cmd]);
        target
    }
}

/// The pid in a pid file (`PID START`).
fn first_pid(path: &Path) -> i32 {
    fs::read_to_string(path)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A message frame written by hand (kind 0, u32 length, JSON), so the tests
/// do not depend on the encoder they check.
pub fn msg_frame(json: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8];
    f.extend_from_slice(&(json.len() as u32).to_be_bytes());
    f.extend_from_slice(json);
    f
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.driver, "kill-server"])
            .output();
        if let Some(sshd) = self.sshd.as_mut() {
            let _ = sshd.kill();
            let _ = sshd.wait();
        }
        // Any session a failed test left running.
        if let Ok(hosts) = fs::read_dir(self.runtime.join(HOST)) {
            for d in hosts.flatten() {
                let sock = d.path().join("tmux").join("server").join("tmux.sock");
                if sock.exists() {
                    let _ = run_as(HOST, "tmux")
                        .args(["-S"])
                        .arg(&sock)
                        .arg("kill-server")
                        .output();
                }
                // And its broker (`broker.pid`: PID START), if that pid is
                // still a broker.
                let pid = fs::read_to_string(d.path().join("broker.pid"))
                    .ok()
                    .and_then(|t| t.split_whitespace().next()?.parse::<i32>().ok());
                if let Some(pid) = pid {
                    let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    if String::from_utf8_lossy(&cmd).contains("__broker") {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        }
        // Whatever still names this world's directory on its command line
        // (a tmux server whose socket the kill above did not reach).
        let dir = format!("{}/", self.dir.display());
        let me = std::process::id();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if pid as u32 != me && String::from_utf8_lossy(&cmd).contains(&dir) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
