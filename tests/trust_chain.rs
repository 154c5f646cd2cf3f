//! The path into the jail, attacked: each test plays a local user who is
//! not the host, or a guest, and tries what an attacker tried on an
//! earlier build (see the README's threat model).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::sshd::{GUEST_USER, HOST, World, hex, msg_frame};
use common::*;

const ATTACKER: &str = "pjevil";
const KEYS_USER: &str = "pairjail-keys";

/// A runtime directory as `pairjail setup` makes it: 3777, the keys
/// user's group.
fn setup_runtime(tag: &str) -> std::path::PathBuf {
    ensure_user(HOST);
    ensure_user(ATTACKER);
    if crate_user_missing(KEYS_USER) {
        let out = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
                KEYS_USER,
            ])
            .output()
            .unwrap();
        // Another test may be adding it at the same time (then useradd
        // says it exists, or finds the password file locked).
        if !out.status.success() {
            eventually(10, || {
                if crate_user_missing(KEYS_USER) {
                    Err(format!("useradd {KEYS_USER}: {}", text(&out.stderr)))
                } else {
                    Ok(())
                }
            });
        }
    }
    let rt = std::env::temp_dir().join(format!("pairjail-tc-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&rt);
    fs::create_dir_all(&rt).unwrap();
    let out = Command::new("chown")
        .arg(format!("root:{KEYS_USER}"))
        .arg(&rt)
        .output()
        .unwrap();
    assert!(out.status.success());
    fs::set_permissions(&rt, fs::Permissions::from_mode(0o3777)).unwrap();
    rt
}

fn crate_user_missing(name: &str) -> bool {
    !Command::new("id")
        .arg(name)
        .output()
        .unwrap()
        .status
        .success()
}

fn pub_key(path: &str) -> (String, String) {
    let text = fs::read_to_string(shared_data(path)).unwrap();
    let mut w = text.split_whitespace();
    (w.next().unwrap().to_string(), w.next().unwrap().to_string())
}

/// `pairjail authorized-keys` as sshd runs it: as the keys user.
fn authorized_keys(rt: &std::path::Path, key: &(String, String)) -> (String, Duration) {
    let started = Instant::now();
    let out = run_as(KEYS_USER, shared_binary())
        .args(["authorized-keys", "--runtime-dir"])
        .arg(rt)
        .args(["pjpair", &key.1, &key.0])
        .current_dir("/")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    (text(&out.stdout), started.elapsed())
}

#[test]
fn a_local_users_own_invites_file_never_yields_an_unrestricted_line() {
    if !root_or_skip() {
        return;
    }
    let rt = setup_runtime("inject");
    let key = pub_key("keys/ed25519.pub");
    let openssh = format!("{} {}", key.0, key.1);
    let evil_dir = rt.join(ATTACKER);
    let out = run_as(ATTACKER, "mkdir")
        .arg("-m0711")
        .arg(&evil_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    // A live "run": the attacker's own process, with its real start time.
    let mut sleeper = run_as(ATTACKER, "sleep").arg("600").spawn().unwrap();
    let pid = sleeper.id();
    // An hour ahead: invites expire within 30 days, or are invalid.
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let start = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start: u64 = start[start.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    let write_as_attacker = |rel: &str, content: &str| {
        let path = evil_dir.join(rel);
        let out = run_as(ATTACKER, "sh")
            .args([
                "-c",
                "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\" && chmod 644 \"$1\"",
                "sh",
            ])
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(content.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    write_as_attacker("s/broker.pid", &format!("{pid} {start}\n"));
    let bare = format!("\\nssh-ed25519 {} injected", key.1);
    let fields = [
        ("name", format!("bob{bare}")),
        ("name", "bob\\r".to_string()),
        ("name", "bo\\u0000b".to_string()),
        ("session", format!("s{bare}")),
        ("mode", format!("mirror{bare}")),
    ];
    for (field, value) in &fields {
        let mut inv = vec![
            ("name", "bob".to_string()),
            ("session", "s".to_string()),
            ("mode", "mirror".to_string()),
        ];
        for f in inv.iter_mut() {
            if f.0 == *field {
                f.1 = value.clone();
            }
        }
        let mut toml = "[[invite]]\n".to_string();
        for (k, v) in &inv {
            toml.push_str(&format!("{k} = \"{v}\"\n"));
        }
        toml.push_str(&format!(
            "via = \"pair-user\"\nkeys = [\"{openssh}\"]\nfingerprints = [\"x\"]\nexpires = {exp}\ncreated = 0\n[invite.run]\npid = {pid}\nstart = {start}\n"
        ));
        write_as_attacker("invites.toml", &toml);
        let (said, _) = authorized_keys(&rt, &key);
        assert!(said.is_empty(), "{field} = {value:?} gave:\n{said}");
    }
    // Also: a key carrying a comment with a line break, and a from= escape.
    for extra in [
        format!("keys = [\"{openssh} c\\nssh-ed25519 {} x\"]", key.1),
        format!("keys = [\"{openssh}\"]\nfrom = [\"1.2.3.4\\\" ssh-ed25519\"]"),
    ] {
        let toml = format!(
            "[[invite]]\nname = \"bob\"\nsession = \"s\"\nmode = \"mirror\"\nvia = \"pair-user\"\n{extra}\nfingerprints = [\"x\"]\nexpires = {exp}\ncreated = 0\n[invite.run]\npid = {pid}\nstart = {start}\n"
        );
        write_as_attacker("invites.toml", &toml);
        let (said, _) = authorized_keys(&rt, &key);
        assert!(said.is_empty(), "{extra:?} gave:\n{said}");
    }
    // The same invite, well-formed, is served: one restricted line whose
    // --host is the directory's owner.
    write_as_attacker(
        "invites.toml",
        &format!(
            "[[invite]]\nname = \"bob\"\nsession = \"s\"\nmode = \"mirror\"\nvia = \"pair-user\"\nkeys = [\"{openssh}\"]\nfingerprints = [\"x\"]\nexpires = {exp}\ncreated = 0\n[invite.run]\npid = {pid}\nstart = {start}\n"
        ),
    );
    let (said, _) = authorized_keys(&rt, &key);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.starts_with("restrict,pty,"), "{said}");
    assert!(said.contains(&format!("--host {ATTACKER} ")), "{said}");
    assert!(said.contains(&format!("--run {pid}.{start}")), "{said}");
    // A run whose start time does not match (pid reuse) is dead.
    write_as_attacker("s/broker.pid", &format!("{pid} {}\n", start + 1));
    let (said, _) = authorized_keys(&rt, &key);
    assert!(
        said.is_empty(),
        "a forged start time kept the invite alive:\n{said}"
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let _ = fs::remove_dir_all(&rt);
}

/// The host's `invite add` of bob's test key to `session` and its
/// `start` (pair-user mode, runtime directory `rts`): their arguments.
fn bob_invited_and_shared(session: &str, rts: &str) -> [Vec<String>; 2] {
    let key_file = shared_data("keys/ed25519.pub").display().to_string();
    let owned = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    [
        owned(&[
            "invite",
            "add",
            "bob",
            "--key-file",
            &key_file,
            "--session",
            session,
            "--via",
            "pair-user",
            "--runtime-dir",
            rts,
        ]),
        owned(&[
            "start",
            "--detach",
            "--session",
            session,
            "--guest-user",
            GUEST_USER,
            "--runtime-dir",
            rts,
            "--",
            "sleep",
            "600",
        ]),
    ]
}

fn words(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn hostile_invites_files_neither_hang_nor_stop_other_hosts_guests() {
    if !root_or_skip() {
        return;
    }
    let rt = setup_runtime("hang");
    // The real host invites bob through pairjail; its session runs.
    let rts = rt.display().to_string();
    let bin = shared_binary();
    let key = pub_key("keys/ed25519.pub");
    let host = |args: &[&str]| {
        let out = as_user(HOST, bin, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    };
    for args in bob_invited_and_shared("sh1", &rts) {
        host(&words(&args));
    }
    ensure_user(GUEST_USER);
    let (said, _) = authorized_keys(&rt, &key);
    assert!(said.contains("--host pjhost"), "{said}");
    // The attacker's invites.toml: a FIFO, a link to /dev/zero, 100 MB, a
    // directory, a file the attacker made but someone else owns.
    let evil_dir = rt.join(ATTACKER);
    let sh = |script: &str| {
        let out = run_as(ATTACKER, "sh")
            .args(["-c", script, "sh"])
            .arg(&evil_dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {}", text(&out.stderr));
    };
    sh("rm -rf \"$1\"; mkdir -m0711 \"$1\"");
    for (what, script) in [
        (
            "fifo",
            "rm -rf \"$1/invites.toml\"; mkfifo -m644 \"$1/invites.toml\"",
        ),
        (
            "/dev/zero",
            "rm -rf \"$1/invites.toml\"; ln -s /dev/zero \"$1/invites.toml\"",
        ),
        (
            "100 MB",
            "rm -rf \"$1/invites.toml\"; head -c 100000000 /dev/zero | tr '\\0' '#' > \"$1/invites.toml\"; chmod 644 \"$1/invites.toml\"",
        ),
        (
            "directory",
            "rm -rf \"$1/invites.toml\"; mkdir \"$1/invites.toml\"",
        ),
    ] {
        sh(script);
        let (said, took) = authorized_keys(&rt, &key);
        assert!(
            said.contains("--host pjhost"),
            "{what}: bob lost his line: {said}"
        );
        // A bound on hangs only (the call's own deadline is 2 s).
        assert!(took < Duration::from_secs(30), "{what}: hung for {took:?}");
    }
    // Someone else's file in the attacker's directory (made by root here).
    sh("rm -rf \"$1/invites.toml\"");
    fs::write(evil_dir.join("invites.toml"), "[[invite]]\n").unwrap();
    let (said, _) = authorized_keys(&rt, &key);
    assert!(said.contains("--host pjhost"), "{said}");
    // The runtime directory is open to every local user: 4100 files of
    // the attacker's there still leave the host's guest its line.
    sh("cd \"$1/..\" && for i in $(seq 4100); do : > \"junk$i\"; done");
    let (said, _) = authorized_keys(&rt, &key);
    assert!(said.contains("--host pjhost"), "4100 files: {said}");
    // Nor millions: authorized-keys never lists the directory, it looks
    // each user's up by name. Shown with a listing it may not read.
    fs::set_permissions(&rt, fs::Permissions::from_mode(0o3733)).unwrap();
    let (said, _) = authorized_keys(&rt, &key);
    fs::set_permissions(&rt, fs::Permissions::from_mode(0o3777)).unwrap();
    assert!(
        said.contains("--host pjhost"),
        "the host was found by listing the runtime directory: {said}"
    );
    // The host's own file is not for other local users to read.
    let out = run_as(ATTACKER, "cat")
        .arg(rt.join(HOST).join("invites.toml"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "another user read the host's invites"
    );
    let _ = as_user(
        HOST,
        bin,
        &["stop", "--session", "sh1", "--runtime-dir", &rts],
    );
    let _ = fs::remove_dir_all(&rt);
}

/// A filesystem whose every lookup below its root never answers: what a
/// local user's FUSE mount can do (with `user_allow_other`). Mounted by
/// root here with python3-fusepy; unmounted, and its server killed, on drop.
struct Stalling {
    dir: std::path::PathBuf,
    server: std::process::Child,
}

impl Stalling {
    fn mount(dir: &std::path::Path) -> Stalling {
        fs::create_dir_all(dir).unwrap();
        let script = r#"
import errno, stat, sys, time
from fusepy import FUSE, FuseOSError, Operations
class Stall(Operations):
    def getattr(self, path, fh=None):
        if path == '/':
            return dict(st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
        time.sleep(3600)
        raise FuseOSError(errno.ENOENT)
FUSE(Stall(), sys.argv[1], foreground=True, allow_other=True)
"#;
        let server = Command::new("/usr/bin/python3")
            .args(["-c", script])
            .arg(dir)
            .spawn()
            .unwrap();
        let mut stalling = Stalling {
            dir: dir.to_path_buf(),
            server,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let target = format!(" {} ", dir.display());
        while !fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&target)
        {
            if let Ok(Some(st)) = stalling.server.try_wait() {
                panic!("the FUSE server ended: {st} (python3-fusepy installed?)");
            }
            assert!(Instant::now() < deadline, "no FUSE mount on {target}");
            std::thread::sleep(Duration::from_millis(20));
        }
        stalling
    }
}

impl Drop for Stalling {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = fs::remove_dir(&self.dir);
    }
}

/// `pairjail authorized-keys` as sshd runs it, killed after `limit`: what
/// it printed (the line, then its warnings), or None if it had not ended
/// by then.
fn authorized_keys_within(
    rt: &std::path::Path,
    key: &(String, String),
    limit: Duration,
) -> Option<String> {
    let mut cmd = run_as(KEYS_USER, shared_binary());
    cmd.args(["authorized-keys", "--runtime-dir"])
        .arg(rt)
        .args(["pjpair", &key.1, &key.0])
        .current_dir("/");
    ended_within(cmd, limit)
}

/// What `cmd` printed (stdout, then stderr), or None if it had not ended
/// after `limit` (then it is killed).
fn ended_within(mut cmd: Command, limit: Duration) -> Option<String> {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            // A process killed while the filesystem holds its request
            // waits for the answer: reaped once the mount is gone.
            let _ = child.kill();
            std::thread::spawn(move || child.wait());
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Some(text(&out.stdout) + &text(&out.stderr))
}

/// authorized-keys reads every host's directory for every login: a local
/// user's session directory that is a link to a filesystem that never
/// answers would stall every guest's login, of every host, until sshd gave
/// up. No link in a host's directory is followed.
#[test]
fn a_link_in_a_hosts_directory_never_stalls_other_hosts_guests() {
    if !root_or_skip() {
        return;
    }
    // The attacker's directory is read only if they may host.
    assert!(
        !std::path::Path::new("/etc/pairjail/config.toml").exists(),
        "this test is about a machine where every user may host (no pairjail setup)"
    );
    let rt = setup_runtime("link");
    let rts = rt.display().to_string();
    let bin = shared_binary();
    let key = pub_key("keys/ed25519.pub");
    ensure_user(GUEST_USER);
    let host = |args: &[&str]| as_user(HOST, bin, args);
    let _cleanup = common::OnDrop(|| {
        let _ = host(&["stop", "--session", "lk1", "--runtime-dir", &rts]);
        let _ = fs::remove_dir_all(&rt);
    });
    for args in bob_invited_and_shared("lk1", &rts) {
        let out = host(&words(&args));
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    let said = authorized_keys_within(&rt, &key, Duration::from_secs(30));
    assert!(
        said.as_deref().is_some_and(|s| s.contains("--host pjhost")),
        "{said:?}"
    );
    // The attacker invites bob's key (public on his forge account) to a
    // "share" of theirs whose directory is a link into the stalling mount.
    let stalling = Stalling::mount(&rt.with_extension("fuse"));
    let invites = fs::read_to_string(rt.join(HOST).join("invites.toml")).unwrap();
    let attacker_writes = |text: &str, script: &str| {
        let mut child = run_as(ATTACKER, "sh")
            .args(["-c", script, "sh"])
            .arg(rt.join(ATTACKER))
            .arg(&stalling.dir)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        assert!(child.wait().unwrap().success());
    };
    // First, the proof that the attacker's invites are read at all: the
    // same invite not yet bound to a run makes bob's key wait for the
    // attacker's share, and the host's guest gets no line meanwhile.
    let mut unbound: toml::Value = toml::from_str(&invites).unwrap();
    for inv in unbound["invite"].as_array_mut().unwrap() {
        inv.as_table_mut().unwrap().remove("run");
    }
    attacker_writes(
        &toml::to_string(&unbound).unwrap(),
        "mkdir -m0711 \"$1\" && cat > \"$1/invites.toml\" && chmod 640 \"$1/invites.toml\"",
    );
    let said = authorized_keys_within(&rt, &key, Duration::from_secs(30));
    assert!(
        said.as_deref()
            .is_some_and(|s| !s.contains("--host pjhost")),
        "the attacker's invites were not read: {said:?}"
    );
    // Then bound to the host's run, with the share's directory a link.
    attacker_writes(
        &invites,
        "cat > \"$1/invites.toml\" && ln -s \"$2/x\" \"$1/lk1\"",
    );
    let said = authorized_keys_within(&rt, &key, Duration::from_secs(30));
    drop(stalling);
    assert!(
        said.is_some(),
        "authorized-keys was still waiting on the link after 30 s"
    );
    // The attacker's invite is for a run that is over, as far as anything
    // beneath its directory says.
    assert!(
        said.as_deref()
            .is_some_and(|s| s.contains("--host pjhost") && !s.contains("skipped")),
        "{said:?}"
    );
}

/// `doctor` reads the host's invites from its directory in the runtime
/// directory, which any local user can make first: made a link into a
/// filesystem that never answers, it held `doctor` for good. It is
/// checked as `start` checks it, and named.
#[test]
fn doctor_never_waits_on_a_hosts_directory_someone_else_made() {
    if !root_or_skip() {
        return;
    }
    let rt = setup_runtime("doc");
    let _cleanup = common::OnDrop(|| {
        let _ = fs::remove_dir_all(&rt);
    });
    let stalling = Stalling::mount(&rt.with_extension("fuse"));
    let out = run_as(ATTACKER, "ln")
        .arg("-s")
        .arg(stalling.dir.join("x"))
        .arg(rt.join(HOST))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut cmd = run_as(HOST, shared_binary());
    cmd.args(["doctor", "--runtime-dir"])
        .arg(&rt)
        .env("HOME", format!("/home/{HOST}"))
        .current_dir("/");
    let said = ended_within(cmd, Duration::from_secs(60));
    drop(stalling);
    let said = said.expect("doctor was still waiting on the link after 60 s");
    assert!(said.contains("invites not read"), "{said}");
}

/// Unmounts on drop, also when the test fails.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A filesystem on `dir` that says `uid` owns it: what a local user's FUSE
/// mount can say (with `user_allow_other`), played by root with a tmpfs.
fn mount_claiming(dir: &std::path::Path, uid: u32) -> Mounted {
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o"])
        .arg(format!("uid={uid},gid={uid},mode=0711"))
        .arg("pjclaim")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "mount: {}", text(&out.stderr));
    Mounted(dir.to_path_buf())
}

/// A local user who makes the host's directory in the shared runtime
/// directory first (it is 3777) and mounts on it a filesystem that says
/// the host owns everything would hold the host's invites, and could add
/// invites of their own to the host's live share. No filesystem mounted
/// on a host's directory is used, whoever says they own it.
#[test]
fn a_filesystem_mounted_on_a_hosts_directory_is_never_used() {
    if !root_or_skip() {
        return;
    }
    let rt = setup_runtime("mount");
    let rts = rt.display().to_string();
    let bin = shared_binary();
    let key = pub_key("keys/ed25519.pub");
    let uid = nix::unistd::User::from_name(HOST)
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    ensure_user(GUEST_USER);
    let host = |args: &[&str]| as_user(HOST, bin, args);
    let [invite, start] = bob_invited_and_shared("mt1", &rts);
    let (invite, start) = (words(&invite), words(&start));
    let copies = rt.with_extension("copies");
    // However the test ends (the mounts have guards of their own, dropped
    // before this one).
    let _cleanup = common::OnDrop(|| {
        let _ = host(&["stop", "--session", "mt1", "--runtime-dir", &rts]);
        let _ = fs::remove_dir_all(&rt);
        let _ = fs::remove_dir_all(&copies);
    });
    // Before the host's first share.
    let dir = rt.join(HOST);
    fs::create_dir(&dir).unwrap();
    let mount = mount_claiming(&dir, uid);
    for args in [&invite[..], &start[..]] {
        let out = host(args);
        if out.status.success() {
            // Stopped while its directory is still where it started.
            let _ = host(&["stop", "--session", "mt1", "--runtime-dir", &rts]);
        }
        assert!(
            !out.status.success() && text(&out.stderr).contains("has a filesystem mounted on"),
            "{args:?} used the mount: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    drop(mount);
    fs::remove_dir(&dir).unwrap();
    // A share runs; then a mount on its directory shows copies of its
    // invites and its broker's pid file, as the attacker's filesystem
    // would (with their own invite added).
    for args in [&invite[..], &start[..]] {
        let out = host(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    let (said, _) = authorized_keys(&rt, &key);
    assert!(said.contains("--host pjhost"), "{said}");
    fs::create_dir_all(&copies).unwrap();
    let cp = |from: &std::path::Path, to: &std::path::Path| {
        let out = Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .output()
            .unwrap();
        assert!(out.status.success(), "cp: {}", text(&out.stderr));
    };
    cp(&dir.join("invites.toml"), &copies);
    cp(&dir.join("mt1"), &copies.join("mt1"));
    let mount = mount_claiming(&dir, uid);
    cp(&copies.join("invites.toml"), &dir);
    fs::create_dir(dir.join("mt1")).unwrap();
    cp(&copies.join("mt1/broker.pid"), &dir.join("mt1"));
    let (said, _) = authorized_keys(&rt, &key);
    assert!(
        !said.contains("--host pjhost"),
        "a line from the mounted directory: {said}"
    );
    drop(mount);
}

#[test]
fn a_pair_uid_client_naming_a_guest_or_mode_not_invited_is_refused() {
    let Some((w, _guests)) = World::new("forge", &[("lee", "sforge", Some("mirror"))]) else {
        return;
    };
    w.start_session("sforge", "mirror,pair", "echo HOST-MARKER-4242; exec sh");

    let hello = |guest: &str, mode: &str| {
        format!(
            r#"{{"type":"hello","version":1,"guest":"{guest}","mode":"{mode}","term":"xterm","cols":80,"rows":24,"source":null}}"#
        )
    };
    let said = w.raw_client(
        GUEST_USER,
        "sforge",
        &hex(&msg_frame(hello("mallory", "pair").as_bytes())),
    );
    assert!(said.contains("mallory has no live invite"), "{said:?}");
    let said = w.raw_client(
        GUEST_USER,
        "sforge",
        &hex(&msg_frame(hello("lee", "pair").as_bytes())),
    );
    assert!(said.contains("lee is invited as mirror"), "{said:?}");
    // Nothing reached the host's shell.
    let screen = w.host_tmux("sforge", &["capture-pane", "-p", "-t", "sforge"]);
    assert!(screen.contains("HOST-MARKER-4242"), "{screen}");
    let _ = w.host_pairjail(&["stop", "--session", "sforge"]);
}

fn tmux_rss_kib(w: &World, session: &str) -> u64 {
    let pid = w.host_tmux(session, &["display", "-p", "-t", session, "#{pid}"]);
    let status = fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn mirror_guests_never_size_the_window_and_huge_sizes_are_clamped() {
    let Some((w, guests)) = World::new(
        "size",
        &[
            ("big", "ssize", Some("mirror")),
            ("tiny", "ssize", Some("mirror")),
        ],
    ) else {
        return;
    };
    w.start_session("ssize", "mirror", "echo HOST-MARKER-4242; exec sh");
    let host = w.attach_host("ssize");
    w.drv(&["resize-window", "-t", &host, "-x", "100", "-y", "30"]);
    w.wait_screen(&host, "HOST-MARKER-4242", 20);
    let size = || {
        w.host_tmux(
            "ssize",
            &[
                "display",
                "-p",
                "-t",
                "ssize",
                "#{window_width}x#{window_height}",
            ],
        )
    };
    // The host's own client sizes the window. (Known race: a resize that
    // lands while the client is still attaching can leave the window at
    // the attach size until the host's next resize; the test resizes
    // again rather than depend on it. What is under test is below: that
    // mirror guests never size it.)
    let host_size = common::eventually(10, || {
        let s = size();
        if s.trim() == "100x29" {
            Ok(s)
        } else {
            w.drv(&["resize-window", "-t", &host, "-x", "99", "-y", "30"]);
            w.drv(&["resize-window", "-t", &host, "-x", "100", "-y", "30"]);
            Err(format!("window is {s}"))
        }
    });
    let rss_before = tmux_rss_kib(&w, "ssize");
    // A 65535x65535 terminal (a Resize frame says the same) and a 10x3 one.
    let big = w.join_in_window(&guests[0], 200, 60);
    w.wait_screen(&big, "HOST-MARKER-4242", 20);
    let tiny = w.join_in_window(&guests[1], 10, 3);
    for (cols, rows) in [(65535u16, 65535u16), (10, 3)] {
        let _ = w.drv(&[
            "resize-window",
            "-t",
            &big,
            "-x",
            // Past the clamp, but small enough that the driver's own tmux
            // redraws the pane quickly (10000x10000 took seconds).
            &cols.min(2000).to_string(),
            "-y",
            &rows.min(900).to_string(),
        ]);
        // The broker clamps what reaches the pty: no client is larger.
        let clients = common::eventually(10, || {
            let c = w.host_tmux(
                "ssize",
                &[
                    "list-clients",
                    "-F",
                    "#{client_width} #{client_height} #{client_flags}",
                ],
            );
            if c.lines().count() >= 3 {
                Ok(c)
            } else {
                Err(c)
            }
        });
        // (The broker's control-mode client has no size.)
        for l in clients.lines().filter(|l| !l.contains("control-mode")) {
            let mut p = l.split_whitespace();
            let (cw, ch): (u32, u32) = (
                p.next().unwrap().parse().unwrap(),
                p.next().unwrap().parse().unwrap(),
            );
            assert!(cw <= 1000 && ch <= 500, "a client of {cw}x{ch}: {clients}");
        }
        assert_eq!(size(), host_size, "a mirror guest sized the window");
    }
    // Host detached: still nobody but the host sizes the window.
    w.drv(&["kill-window", "-t", &host]);
    common::eventually(10, || {
        let c = w.host_tmux("ssize", &["list-clients", "-F", "#{client_flags}"]);
        if c.lines().all(|l| l.contains("ignore-size")) {
            Ok(())
        } else {
            Err(c)
        }
    });
    let _ = w.drv(&["resize-window", "-t", &tiny, "-x", "20", "-y", "4"]);
    let _ = w.drv(&["resize-window", "-t", &big, "-x", "2000", "-y", "900"]);
    // Wait for the broker to pass both sizes on, then compare.
    common::eventually(10, || {
        let c = w.host_tmux(
            "ssize",
            &["list-clients", "-F", "#{client_width}x#{client_height}"],
        );
        if c.contains("20x4") && c.contains("1000x") {
            Ok(())
        } else {
            Err(c)
        }
    });
    assert_eq!(
        size(),
        host_size,
        "with the host detached, a mirror guest sized the window"
    );
    let rss_after = tmux_rss_kib(&w, "ssize");
    assert!(
        rss_after < 2 * rss_before,
        "tmux grew from {rss_before} to {rss_after} KiB"
    );
    let _ = w.host_pairjail(&["stop", "--session", "ssize"]);
}

/// Seccomp and no_new_privs of every process of `uid`.
fn confinement_of(uid: u32) -> Vec<(u32, String, String, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |k: &str| {
            status
                .lines()
                .find(|l| l.starts_with(k))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
                .unwrap_or_default()
        };
        if field("Uid:") != uid.to_string() {
            continue;
        }
        out.push((pid, field("Name:"), field("Seccomp:"), field("NoNewPrivs:")));
    }
    out
}

#[test]
fn everything_in_the_guests_session_is_confined() {
    let Some((w, guests)) = World::new("confined", &[("una", "sconf", Some("mirror"))]) else {
        return;
    };
    w.start_session("sconf", "mirror", "echo HOST-MARKER-4242; exec sh");
    let guest = w.join_in_window(&guests[0], 80, 24);
    w.wait_screen(&guest, "HOST-MARKER-4242", 20);
    let uid = nix::unistd::User::from_name(GUEST_USER)
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    let procs = common::eventually(10, || {
        let p = confinement_of(uid);
        if p.len() >= 3 {
            Ok(p)
        } else {
            Err(format!("{p:?}"))
        }
    });
    // sshd's own privilege-separated child runs as the pair user too.
    for (pid, name, seccomp, nnp) in procs.iter().filter(|p| p.1 != "sshd") {
        assert_eq!(
            (seccomp.as_str(), nnp.as_str()),
            ("2", "1"),
            "{pid} {name} is not confined: {procs:?}"
        );
    }
    assert!(
        !procs
            .iter()
            .any(|p| p.1 == "sh" || p.1 == "dash" || p.1 == "bash"),
        "{procs:?}"
    );
    // The relay is called in the jail, not executed: its confinement is
    // the jail's all the same. No capabilities, namespaces of its own, and
    // a root with nothing in it.
    let relay = procs
        .iter()
        .find(|p| p.1 == "pairjail-relay")
        .unwrap_or_else(|| panic!("no relay among {procs:?}"))
        .0;
    let status = fs::read_to_string(format!("/proc/{relay}/status")).unwrap();
    for k in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        let line = status.lines().find(|l| l.starts_with(k)).unwrap();
        assert!(line.ends_with("0000000000000000"), "relay {line}");
    }
    for ns in ["mnt", "pid", "user", "ipc", "uts"] {
        let theirs = fs::read_link(format!("/proc/{relay}/ns/{ns}")).unwrap();
        assert_ne!(
            theirs,
            fs::read_link(format!("/proc/self/ns/{ns}")).unwrap(),
            "{ns}"
        );
    }
    // Its environment is the profile's (TERM, LANG kept; PATH, HOME set),
    // also in memory: not join's from sshd, which in no-root mode is the
    // host's own session environment.
    let environ = fs::read(format!("/proc/{relay}/environ")).unwrap();
    let vars: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert!(
        vars.iter().all(|v| ["TERM=", "LANG=", "PATH=", "HOME="]
            .iter()
            .any(|k| v.starts_with(k))),
        "the relay's memory holds an environment beyond its profile's: {vars:?}"
    );
    let root: Vec<_> = fs::read_dir(format!("/proc/{relay}/root"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(root.is_empty(), "the relay's root holds {root:?}");
    let _ = w.host_pairjail(&["stop", "--session", "sconf"]);
}

/// A site whose sshd lets a guest's own variables through (`AcceptEnv
/// PAIRJAIL_*`, or `*`): what the guest sends must not pick the profile
/// its jail is built from, by the search path or by the home (this sshd
/// sets HOME after the guest's variables; join does not rely on that).
#[test]
fn a_guests_environment_never_picks_the_files_its_jail_is_built_from() {
    let Some((w, guests)) = World::new_with(
        "guestenv",
        "AcceptEnv PAIRJAIL_* HOME\n",
        &[("vera", "senv", Some("mirror"))],
    ) else {
        return;
    };
    // Somewhere a guest could have written (a jailed share's workspace):
    // a guest-relay profile that is not one, so that join says whether
    // it read it.
    let planted = w.dir.join("planted");
    let in_home = planted.join(".config/pairjail/profiles");
    fs::create_dir_all(&in_home).unwrap();
    for dir in [&planted, &in_home] {
        fs::write(dir.join("guest-relay.toml"), "planted by a guest = [\n").unwrap();
    }
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&planted)
        .status()
        .unwrap();
    // A control: a key whose forced command shows what sshd passed on,
    // so the test cannot pass because the variable never arrived.
    let control = w.keygen("control");
    let public = fs::read_to_string(control.with_extension("pub")).unwrap();
    let keys = w.dir.join("keys").join(GUEST_USER);
    let mut lines = fs::read_to_string(&keys).unwrap();
    lines.push_str(&format!(
        "restrict,command=\"printenv PAIRJAIL_PROFILE_PATH\" {public}"
    ));
    fs::write(&keys, lines).unwrap();
    let shown = w
        .ssh_command(&control)
        .args([
            "-o",
            &format!("SetEnv=PAIRJAIL_PROFILE_PATH={}", planted.display()),
        ])
        .arg(format!("{GUEST_USER}@127.0.0.1"))
        .output()
        .unwrap();
    assert_eq!(
        text(&shown.stdout).trim(),
        planted.display().to_string(),
        "sshd did not pass the variable on: {}",
        text(&shown.stderr)
    );
    let marker = format!("HOST-MARKER-{}", 40 + 3);
    w.start_session("senv", "mirror", &format!("echo {marker}; exec sh"));
    let sent = format!(
        "'SetEnv=PAIRJAIL_PROFILE_PATH={p} HOME={p}'",
        p = planted.display()
    );
    let guest = w.join_in_window_with(&guests[0], GUEST_USER, 80, 24, &["-o", &sent]);
    let screen = w.wait_screen(&guest, &marker, 20);
    assert!(!screen.contains("planted"), "{screen}");
    let _ = w.host_pairjail(&["stop", "--session", "senv"]);
}

#[test]
fn the_pair_shell_runs_join_and_nothing_else() {
    if !root_or_skip() {
        return;
    }
    let dir = SafeBinary::new("shell");
    let shell = dir.dir.join("pair-shell");
    std::os::unix::fs::symlink(&dir.path, &shell).unwrap();
    let bin = dir.path.display().to_string();
    for cmd in [
        format!("{bin} join ; id"),
        format!("exec {bin} join --host pjhost; id"),
        format!("{bin} join --host pjhost --profile /tmp/x"),
        format!("{bin} exec --profile base -- /bin/sh"),
        "id".to_string(),
    ] {
        let out = Command::new(&shell).args(["-c", &cmd]).output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        assert!(
            err.contains("refused") && !text(&out.stdout).contains("uid="),
            "{cmd}: {err}"
        );
    }
    let out = Command::new(&shell).output().unwrap();
    assert!(text(&out.stderr).contains("this account only joins pairjail sessions"));
}

#[test]
fn setup_refuses_root_and_peoples_accounts() {
    if !root_or_skip() {
        return;
    }
    ensure_user(HOST);
    for (user, why) in [
        ("root", "it is root"),
        ("daemon", "system account"),
        (HOST, "login shell"),
    ] {
        let out = Command::new(shared_binary())
            .args(["setup", "--dry-run", "--pair-user", user])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{user}: {}", text(&out.stdout));
        assert!(
            text(&out.stderr).contains(why),
            "{user}: {}",
            text(&out.stderr)
        );
    }
}

/// `start` follows the host's dotfile links to see whether one leads into
/// the workspace. A link left pointing into a place another local user
/// controls (a crashed browser's lock link into /tmp) must not let their
/// FUSE mount, or a dead network mount, hold `start` for good: a chain is
/// not followed onto another mount than the home's and the workspace's.
#[test]
fn a_dotfile_leading_to_another_users_mount_never_holds_start() {
    let Some((w, _)) = World::new("dotfuse", &[]) else {
        return;
    };
    let stalling = Stalling::mount(&w.dir.join("fuse"));
    // The local user's link, in a place of theirs, into their mount.
    std::os::unix::fs::symlink(w.dir.join("fuse/lock"), w.dir.join("lock")).unwrap();
    let dotfile = format!("/home/{HOST}/.pj-dotfuse-{}", std::process::id());
    let _gone = OnDrop(|| {
        let _ = fs::remove_file(format!("/home/{HOST}/.pj-dotfuse-{}", std::process::id()));
    });
    let _ = fs::remove_file(&dotfile);
    std::os::unix::fs::symlink(w.dir.join("lock"), &dotfile).unwrap();
    let owned = Command::new("chown")
        .args(["-h", &format!("{HOST}:{HOST}")])
        .arg(&dotfile)
        .status()
        .unwrap();
    assert!(owned.success());
    let mut start = run_as(HOST, shared_binary());
    start
        .args([
            "start",
            "--detach",
            "--session",
            "sdotfuse",
            "--allow",
            "mirror,pair",
        ])
        .args(["--guest-user", GUEST_USER, "--runtime-dir"])
        .arg(&w.runtime)
        .args(["--", "sh", "-c", "exec sh"])
        .env("HOME", format!("/home/{HOST}"))
        .env("TERM", "xterm")
        .current_dir(w.workspace());
    let said = ended_within(start, Duration::from_secs(60));
    let _ = w.host_pairjail(&["stop", "--session", "sdotfuse"]);
    drop(stalling);
    let said = said.expect("start still waiting on the FUSE mount after 60 s");
    assert!(said.contains("sharing session sdotfuse"), "{said}");
}

/// The pid of the one process of `user` that `pgrep -u USER how` names
/// (`-f` and a pattern of its command line, or `-x` and its name).
fn only_pid(user: &str, how: [&str; 2]) -> Result<u32, String> {
    let pattern = how[1];
    let out = Command::new("pgrep")
        .args(["-u", user])
        .args(how)
        .output()
        .unwrap();
    let pids: Vec<u32> = text(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    match pids[..] {
        [pid] => Ok(pid),
        _ => Err(format!("{user} processes matching {pattern:?}: {pids:?}")),
    }
}

/// Every guest of every host logs in as the same pair user, and `join`
/// waits at the door, unconfined, for as long as the host takes: no other
/// process of that uid (another guest's, if it ever ran code) may read its
/// environment (the guest's address), its descriptors (the guest's
/// terminal, the broker's socket) or ptrace it; nor the relay's after.
#[test]
fn no_process_of_the_pair_user_reads_another_guests_join_or_relay() {
    let Some((w, guests)) = World::new("dump", &[("dee", "sdump", Some("mirror"))]) else {
        return;
    };
    w.start_session_with(
        "sdump",
        "mirror",
        "echo HOST-MARKER-4242; exec sh",
        &["--approve", "--approve-timeout", "120s"],
    );
    let t = w.join_in_window(&guests[0], 100, 30);
    w.wait_screen(&t, "must let you in", 20);
    let reads = |pid: u32| -> Vec<String> {
        [
            format!("tr '\\0' ' ' < /proc/{pid}/environ | head -c 200"),
            format!("ls /proc/{pid}/fd"),
        ]
        .iter()
        .filter_map(|cmd| {
            let out = run_as(GUEST_USER, "sh").args(["-c", cmd]).output().unwrap();
            let said = text(&out.stdout);
            (out.status.success() && !said.trim().is_empty()).then(|| format!("{cmd}: {said}"))
        })
        .collect()
    };
    let join = common::eventually(20, || {
        only_pid(GUEST_USER, ["-f", "join --host .* --session sdump"])
    });
    let read = reads(join);
    assert!(
        read.is_empty(),
        "another pair-user process read the waiting join: {read:?}"
    );
    let out = w.host_pairjail(&["approve", "dee", "--session", "sdump"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    w.wait_screen(&t, "HOST-MARKER-4242", 20);
    let relay = common::eventually(20, || only_pid(GUEST_USER, ["-x", "pairjail-relay"]));
    let read = reads(relay);
    assert!(
        read.is_empty(),
        "another pair-user process read the relay: {read:?}"
    );
    let _ = w.host_pairjail(&["stop", "--session", "sdump"]);
}
