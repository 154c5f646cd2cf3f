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
    sshd: Child,
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
    pub fn new(tag: &str, guests: &[(&str, &str, Option<&str>)]) -> Option<(World, Vec<Guest>)> {
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
        let dir = std::env::temp_dir().join(format!("pairjail-e2e-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("keys")).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let runtime = dir.join("run");
        fs::create_dir_all(&runtime).unwrap();
        fs::set_permissions(&runtime, fs::Permissions::from_mode(0o1777)).unwrap();
        let bin = shared_binary();
        let mut lines = String::new();
        let mut out = Vec::new();
        for (name, session, mode) in guests {
            let key = dir.join(format!("key-{name}"));
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(&key));
            let public = fs::read_to_string(key.with_extension("pub")).unwrap();
            let mode = mode.map(|m| format!(" --mode {m}")).unwrap_or_default();
            lines.push_str(&format!(
                "restrict,pty,command=\"{} join --host {HOST} --session {session} --guest {name}{mode} --runtime-dir {}\" {}",
                bin.display(),
                runtime.display(),
                public
            ));
            out.push(Guest {
                name: name.to_string(),
                key,
            });
        }
        fs::write(dir.join("keys").join(GUEST_USER), lines).unwrap();
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join("hostkey")));
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/keys/%u\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\nPrintMotd no\nPrintLastLog no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n",
            d = dir.display()
        );
        fs::write(dir.join("sshd_config"), config).unwrap();
        fs::create_dir_all("/run/sshd").unwrap();
        let sshd = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("sshd.log")).unwrap())
            .spawn()
            .expect("sshd (openssh-server) must be installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let driver = format!("pjdrv-{tag}-{}", std::process::id());
        let w = World {
            dir,
            port,
            runtime,
            sshd,
            driver,
        };
        run(Command::new("tmux").args([
            "-L",
            &w.driver,
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
        Some((w, out))
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

    pub fn ssh_command(&self, key: &Path) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.ssh_args(key));
        c
    }

    /// Opens a driver window running `ssh -tt` for the guest; returns its target.
    pub fn join_in_window(&self, g: &Guest, cols: u16, rows: u16) -> String {
        let cmd = format!(
            "ssh -tt {} {GUEST_USER}@127.0.0.1; echo SSH-EXIT=$?; sleep 600",
            self.ssh_args(&g.key).join(" ")
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
        target
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

    pub fn session_paths(&self, session: &str) -> PathBuf {
        self.runtime.join(HOST).join(session)
    }

    /// Runs pairjail as the host user.
    pub fn host_pairjail(&self, args: &[&str]) -> std::process::Output {
        let rt = self.runtime.display().to_string();
        Command::new("setpriv")
            .args(["--reuid", HOST, "--regid", HOST, "--init-groups", "--"])
            .arg(shared_binary())
            .args(args)
            .args(["--runtime-dir", &rt])
            .env("HOME", format!("/home/{HOST}"))
            .env("TERM", "xterm")
            .current_dir("/")
            .output()
            .unwrap()
    }

    /// `pairjail start --detach` as the host, running `program`.
    pub fn start_session(&self, session: &str, allow: &str, program: &str) {
        let rt = self.runtime.display().to_string();
        let out = Command::new("setpriv")
            .args(["--reuid", HOST, "--regid", HOST, "--init-groups", "--"])
            .arg(shared_binary())
            .args([
                "start",
                "--detach",
                "--session",
                session,
                "--allow",
                allow,
                "--default-mode",
            ])
            .arg(allow.split(',').next().unwrap())
            .args([
                "--guest-user",
                GUEST_USER,
                "--runtime-dir",
                &rt,
                "--",
                "sh",
                "-c",
                program,
            ])
            .env("HOME", format!("/home/{HOST}"))
            .env("TERM", "xterm")
            .current_dir("/")
            .output()
            .unwrap();
        assert!(out.status.success(), "start: {}", text(&out.stderr));
    }

    /// tmux on the host's dedicated server, as the host.
    pub fn host_tmux(&self, session: &str, args: &[&str]) -> String {
        let sock = self.session_paths(session).join("tmux.sock");
        let out = Command::new("setpriv")
            .args([
                "--reuid",
                HOST,
                "--regid",
                HOST,
                "--init-groups",
                "--",
                "tmux",
                "-S",
            ])
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

    /// Attaches the host's own terminal (a driver window) to the session.
    pub fn attach_host(&self, session: &str) -> String {
        let sock = self.session_paths(session).join("tmux.sock");
        let cmd = format!(
            "setpriv --reuid {HOST} --regid {HOST} --init-groups -- tmux -S {} attach -t ={session}",
            sock.display()
        );
        let target = format!("drv:host-{session}");
        self.drv(&["new-window", "-d", "-n", &format!("host-{session}"), &cmd]);
        target
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.driver, "kill-server"])
            .output();
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
        // Any session a failed test left running.
        if let Ok(hosts) = fs::read_dir(self.runtime.join(HOST)) {
            for d in hosts.flatten() {
                let sock = d.path().join("tmux.sock");
                if sock.exists() {
                    let _ = Command::new("setpriv")
                        .args([
                            "--reuid",
                            HOST,
                            "--regid",
                            HOST,
                            "--init-groups",
                            "--",
                            "tmux",
                            "-S",
                        ])
                        .arg(&sock)
                        .arg("kill-server")
                        .output();
                }
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
