//! Invites, keys and setup against a real sshd: access exists only while
//! the session is live, the managed block never disturbs a foreign byte,
//! and bad input is refused with one clear line.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::sshd::{HOST, World};
use common::*;

const PAIR: &str = "pjpu";
const MARKER: &str = "HOST-MARKER-4242";

/// Does `key` get past sshd's authentication as `user`? (The forced command
/// may still refuse; that is a different question.)
fn authenticates(w: &World, key: &Path, user: &str) -> bool {
    let out = w
        .ssh_command(key)
        .args([
            "-o",
            "ConnectTimeout=10",
            "-T",
            &format!("{user}@127.0.0.1"),
            "true",
        ])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    if err.contains("Permission denied") {
        return false;
    }
    assert!(
        out.status.code() != Some(255),
        "ssh failed for another reason: {err}"
    );
    true
}

#[test]
fn pair_user_mode_access_exists_only_while_the_session_is_live() {
    // Its host's invites go through the same store code as no-root mode's,
    // which rewrites the host's managed block from this test's store: the
    // other tests' lines in it would go.
    let _turn = host_ssh_lock();
    let sd_dir = World::dir_for("pu").join("sshd.d");
    // The site trusts a user CA (for its staff's logins): a certificate for
    // the pair user must not be a way past the forced command.
    let ca = World::dir_for("pu").join("user-ca");
    let top = format!(
        "TrustedUserCAKeys {}.pub\nInclude {}/*.conf\n",
        ca.display(),
        sd_dir.display()
    );
    let Some(mut w) = World::bare("pu", &top, "none") else {
        return;
    };
    let bin = SafeBinary::new("pu");
    let rt = w.runtime.display().to_string();
    // Setup, with every path it writes pointed into the test directory.
    let d = w.dir.display().to_string();
    let setup = Command::new(&bin.path)
        .args(["setup", "--pair-user", PAIR, "--runtime-dir", &rt])
        .args(["--config", &format!("{}/config.toml", w.dir.display())])
        .args([
            "--sshd-config-dir",
            &format!("{d}/sshd.d"),
            "--sshd-config",
            &format!("{d}/sshd_config"),
        ])
        .args([
            "--tmpfiles-dir",
            &format!("{d}/tmpfiles"),
            "--shell",
            &format!("{}/pair-shell", bin.dir.display()),
        ])
        .output()
        .unwrap();
    let said = ok(&setup);
    assert!(
        said.contains("done: sshd accepts the configuration"),
        "{said}"
    );
    let conf = fs::read_to_string(sd_dir.join("pairjail.conf")).unwrap();
    for want in [
        "Match User pjpu",
        "AuthorizedKeysFile none",
        "DisableForwarding yes",
        "PermitUserRC no",
        "AuthorizedKeysCommandUser pairjail-keys",
    ] {
        assert!(conf.contains(want), "{conf}");
    }
    // An sshd of 9.2 or later (Debian 12's) ends connections that open no
    // session (`ssh -N`), which no kick reaches; an older one has no such
    // setting, and none is written.
    let version = Command::new("sshd").arg("-V").output().unwrap();
    let version = text(&version.stderr);
    let recent = !pairjail::setup::older_than(&version, (9, 2));
    assert_eq!(
        conf.contains("UnusedConnectionTimeout 60"),
        recent,
        "{version}\n{conf}"
    );
    let keygen = |args: &[&str]| {
        let out = Command::new("ssh-keygen").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ssh-keygen {args:?}: {}",
            text(&out.stderr)
        );
    };
    keygen(&["-q", "-t", "ed25519", "-N", "", "-f", ca.to_str().unwrap()]);
    w.start_sshd();
    // A certificate for the pair user, from the CA sshd trusts, asking for
    // a command of its own: refused before any shell runs.
    let certified = w.keygen("certified");
    keygen(&[
        "-q",
        "-s",
        ca.to_str().unwrap(),
        "-I",
        "staff",
        "-n",
        PAIR,
        certified.with_extension("pub").to_str().unwrap(),
    ]);
    let out = w
        .ssh_command(&certified)
        .arg(format!("{PAIR}@127.0.0.1"))
        .arg("join --host pjhost --session spu --guest bob")
        .output()
        .unwrap();
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(
        out.status.code() == Some(255) && said.contains("Permission denied"),
        "a certificate logged in as the pair user: {said}"
    );

    let bob = w.keygen("bob");
    let stranger = w.keygen("stranger");
    let bob_pub = format!("{}", bob.with_extension("pub").display());
    let add = |expires: &str| {
        let mut args = vec![
            "invite",
            "add",
            "bob",
            "--key-file",
            &bob_pub,
            "--session",
            "spu",
            "--via",
            "pair-user",
            "--runtime-dir",
            &rt,
        ];
        if !expires.is_empty() {
            args.extend(["--expires", expires]);
        }
        ok(&as_user(HOST, &bin.path, &args));
    };
    let start = || {
        ok(&as_user(
            HOST,
            &bin.path,
            &[
                "start",
                "--detach",
                "--session",
                "spu",
                "--guest-user",
                PAIR,
                "--runtime-dir",
                &rt,
                "--",
                "sh",
                "-c",
                &format!("echo {MARKER}; exec sh"),
            ],
        ));
    };
    let stop = || {
        let _ = as_user(
            HOST,
            &bin.path,
            &["stop", "--session", "spu", "--runtime-dir", &rt],
        );
    };

    // Invited, but the session is not running: refused.
    add("");
    assert!(
        !authenticates(&w, &bob, PAIR),
        "a key got in with no live session"
    );
    // Live: in, and it lands in the session.
    start();
    assert!(
        authenticates(&w, &bob, PAIR),
        "the invited key was refused during its session"
    );
    let g = common::sshd::Guest {
        name: "bob".into(),
        key: bob.clone(),
    };
    let win = w.join_in_window_as(&g, PAIR, 80, 24);
    w.wait_screen(&win, MARKER, 20);
    assert!(
        !authenticates(&w, &stranger, PAIR),
        "a key never invited got in"
    );
    // Even with a live invite: a command or -W gives nothing (forwarding is
    // off for the pair user: `setup` checked `disableforwarding yes`).
    let target = format!("{PAIR}@127.0.0.1");
    let out = w
        .ssh_command(&bob)
        .args(["-T", &target, "cat /etc/passwd"])
        .output()
        .unwrap();
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(
        !all.contains("root:x:0") && all.contains("a terminal is required"),
        "{all}"
    );
    let out = w
        .ssh_command(&bob)
        .args(["-W", &format!("127.0.0.1:{}", w.port), &target])
        .output()
        .unwrap();
    assert!(!text(&out.stdout).contains("SSH-2.0"), "-W reached sshd");
    // Revoked: out.
    ok(&as_user(
        HOST,
        &bin.path,
        &["invite", "revoke", "bob", "--runtime-dir", &rt],
    ));
    assert!(!authenticates(&w, &bob, PAIR), "a revoked key got in");
    // Session ended: out, and its invites are gone.
    add("");
    assert!(authenticates(&w, &bob, PAIR));
    stop();
    assert!(
        !authenticates(&w, &bob, PAIR),
        "a key got in after its session ended"
    );
    assert!(
        !text(&as_user(HOST, &bin.path, &["invite", "list", "--runtime-dir", &rt]).stdout)
            .contains("bob")
    );
    // The broker is killed (a crash): out at once, though nothing cleaned up.
    start();
    add("");
    assert!(authenticates(&w, &bob, PAIR));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(w.broker_pid("spu")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{}", w.broker_pid("spu"))).exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !authenticates(&w, &bob, PAIR),
        "a key got in after its broker was killed"
    );
    // The next start cleans the dead session's leftovers.
    let _ = w.host_tmux("spu", &["kill-server"]);
    start();
    assert!(
        !text(&as_user(HOST, &bin.path, &["invite", "list", "--runtime-dir", &rt]).stdout)
            .contains("bob")
    );
    // Expiry: in while valid, out after.
    add("3s");
    assert!(authenticates(&w, &bob, PAIR));
    // Refused once the clock passes the expiry (bounded: never enforced
    // fails the test).
    eventually(15, || {
        if authenticates(&w, &bob, PAIR) {
            Err("an expired key still gets in".to_string())
        } else {
            Ok(())
        }
    });
    stop();
}

/// Tests that rewrite the host user's ~/.ssh take turns.
static HOST_SSH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn host_ssh_lock() -> std::sync::MutexGuard<'static, ()> {
    HOST_SSH.lock().unwrap_or_else(|e| e.into_inner())
}

fn host_home() -> std::path::PathBuf {
    Path::new("/home").join(HOST)
}

const FOREIGN: &[u8] = b"# my own keys, keep them\n\n   ssh-ed25519   AAAAC3NzaC1lZDI1NTE5AAAAIAJCqDurRXeJWQUTSTJqfQpE6rCPegMRmesffVkruZxh   odd spacing\t\n\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAJCqDurRXeJWQUTSTJqfQpE6rCPegMRmesffVkruZxh last-line-without-newline";

fn write_foreign(extra: usize) -> Vec<u8> {
    let ssh = host_home().join(".ssh");
    fs::create_dir_all(&ssh).unwrap();
    let mut content = FOREIGN.to_vec();
    if extra > 0 {
        let mut pad = b"# padding\n".repeat(extra);
        pad.extend_from_slice(&content);
        content = pad;
    }
    let f = ssh.join("authorized_keys");
    let _ = fs::remove_file(&f);
    fs::write(&f, &content).unwrap();
    let uid = nix::unistd::User::from_name(HOST).unwrap().unwrap().uid;
    let gid = nix::unistd::User::from_name(HOST).unwrap().unwrap().gid;
    for p in [&ssh, &f] {
        nix::unistd::chown(p, Some(uid), Some(gid)).unwrap();
    }
    fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    content
}

/// `n` generated keys `PREFIX0…`: the paths of their public halves.
fn public_keys(w: &World, prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            w.keygen(&format!("{prefix}{i}"))
                .with_extension("pub")
                .display()
                .to_string()
        })
        .collect()
}

fn authorized_keys() -> Vec<u8> {
    fs::read(host_home().join(".ssh/authorized_keys")).unwrap()
}

fn leftover_temp_files() -> Vec<String> {
    fs::read_dir(host_home().join(".ssh"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn no_root_mode_keeps_foreign_lines_byte_identical() {
    let _turn = host_ssh_lock();
    let Some(mut w) = World::bare("nr", "", ".ssh/authorized_keys") else {
        return;
    };
    let bin = shared_binary();
    let rt = w.runtime.display().to_string();
    w.start_sshd();
    let original = write_foreign(0);
    let carol = w.keygen("carol");
    let carol_pub = carol.with_extension("pub").display().to_string();

    // Add: the block appears after the foreign bytes, which are untouched.
    ok(&as_user(
        HOST,
        bin,
        &[
            "invite",
            "add",
            "carol",
            "--key-file",
            &carol_pub,
            "--session",
            "snr",
            "--mode",
            "pair",
            "--via",
            "authorized-keys",
            "--runtime-dir",
            &rt,
        ],
    ));
    let with = authorized_keys();
    assert!(with.starts_with(&original), "foreign bytes changed");
    let block = String::from_utf8_lossy(&with[original.len()..]).into_owned();
    assert!(block.contains("restrict,pty,expiry-time=\""), "{block}");
    assert!(block.contains("--guest carol --mode pair"), "{block}");
    assert_eq!(
        fs::metadata(host_home().join(".ssh/authorized_keys"))
            .unwrap()
            .mode()
            & 0o777,
        0o600
    );

    // Not live: sshd lets the key in, the forced command gives nothing.
    let target = format!("{HOST}@127.0.0.1");
    let out = w
        .ssh_command(&carol)
        .args(["-tt", &target, "cat /etc/passwd"])
        .output()
        .unwrap();
    let all = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!("{HOST} is not sharing a session right now"))
            && !all.contains("root:x:0"),
        "{all}"
    );
    // -W: no stdio forwarding past `restrict`.
    let out = w
        .ssh_command(&carol)
        .args(["-W", &format!("127.0.0.1:{}", w.port), &target])
        .output()
        .unwrap();
    assert!(!text(&out.stdout).contains("SSH-2.0"));

    // Live: carol lands in the session as a pair guest.
    ok(&as_user(
        HOST,
        bin,
        &[
            "start",
            "--detach",
            "--session",
            "snr",
            "--allow",
            "mirror,pair",
            "--workspace",
            &w.workspace().display().to_string(),
            "--runtime-dir",
            &rt,
            "--",
            "sh",
            "-c",
            &format!("echo {MARKER}; exec sh"),
        ],
    ));
    let g = common::sshd::Guest {
        name: "carol".into(),
        key: carol.clone(),
    };
    let win = w.join_in_window_as(&g, HOST, 80, 24);
    w.wait_screen(&win, MARKER, 20);

    // Revoke: byte-identical to the original.
    ok(&as_user(
        HOST,
        bin,
        &["invite", "revoke", "carol", "--runtime-dir", &rt],
    ));
    assert_eq!(authorized_keys(), original, "revoke left the file changed");

    // Add again, then end the session: byte-identical again.
    ok(&as_user(
        HOST,
        bin,
        &[
            "invite",
            "add",
            "carol",
            "--key-file",
            &carol_pub,
            "--session",
            "snr",
            "--via",
            "authorized-keys",
            "--runtime-dir",
            &rt,
        ],
    ));
    assert_ne!(authorized_keys(), original);
    ok(&as_user(
        HOST,
        bin,
        &["stop", "--session", "snr", "--runtime-dir", &rt],
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while authorized_keys() != original {
        assert!(
            Instant::now() < deadline,
            "ending the session did not restore the file:\n{}",
            String::from_utf8_lossy(&authorized_keys())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The broker restores the file before it exits: the adds below are for
    // a session that has ended, so they start once its directory is gone.
    let session_dir = w.runtime.join(HOST).join("snr");
    while session_dir.exists() {
        assert!(
            Instant::now() < deadline,
            "the broker of snr did not exit: {} is still there",
            session_dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Concurrent adds from several processes: every line lands, foreign bytes intact.
    let keys = public_keys(&w, "c", 8);
    let children: Vec<_> = (0..8)
        .map(|i| {
            run_as(HOST, bin)
                .args([
                    "invite",
                    "add",
                    &format!("c{i}"),
                    "--key-file",
                    &keys[i],
                    "--session",
                    "snr",
                    "--via",
                    "authorized-keys",
                    "--runtime-dir",
                    &rt,
                ])
                .env("HOME", host_home())
                .current_dir("/")
                .output()
        })
        .collect();
    // Those ran one after another; now eight at once.
    for c in children {
        ok(&c.unwrap());
    }
    // Other guests with their own keys (one key is never invited twice).
    let more = public_keys(&w, "d", 8);
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (bin, key, rt) = (bin.to_path_buf(), more[i].clone(), rt.clone());
            std::thread::spawn(move || {
                as_user(
                    HOST,
                    &bin,
                    &[
                        "invite",
                        "add",
                        &format!("d{i}"),
                        "--key-file",
                        &key,
                        "--session",
                        "snr",
                        "--via",
                        "authorized-keys",
                        "--runtime-dir",
                        &rt,
                    ],
                )
            })
        })
        .collect();
    for h in handles {
        ok(&h.join().unwrap());
    }
    let now = authorized_keys();
    assert!(now.starts_with(&original));
    let text_now = String::from_utf8_lossy(&now);
    for i in 0..8 {
        assert!(
            text_now.contains(&format!("pairjail:snr:c{i}")),
            "c{i} missing"
        );
        assert!(
            text_now.contains(&format!("pairjail:snr:d{i}")),
            "d{i} missing"
        );
    }
    ok(&as_user(
        HOST,
        bin,
        &["invite", "clean", "--runtime-dir", &rt],
    ));
    assert_eq!(
        authorized_keys(),
        original,
        "clean did not remove the dead session's lines"
    );
}

#[test]
fn invites_kept_in_two_runtime_directories_never_drop_each_others_lines() {
    // One host, two runtime directories (a desktop login's
    // $XDG_RUNTIME_DIR and an ssh login's private /tmp one): each keeps
    // its own invites, and both write the one authorized_keys.
    let _turn = host_ssh_lock();
    let Some(w) = World::bare("nr2", "", ".ssh/authorized_keys") else {
        return;
    };
    let bin = shared_binary();
    let rt1 = w.runtime.display().to_string();
    let second = w.dir.join("run two");
    fs::create_dir_all(&second).unwrap();
    fs::set_permissions(&second, fs::Permissions::from_mode(0o1777)).unwrap();
    let rt2 = second.display().to_string();
    let original = write_foreign(0);
    let keys = public_keys(&w, "tworun", 2);
    let add = |name: &str, key: &str, rt: &str| ok(&add_invite(bin, name, key, "stwo", rt));
    let block = || String::from_utf8_lossy(&authorized_keys()[original.len()..]).into_owned();
    add("carol", &keys[0], &rt1);
    add("dave", &keys[1], &rt2);
    let both = block();
    assert!(
        both.contains("--guest carol") && both.contains("--guest dave"),
        "adding dave in the second runtime directory dropped carol: {both}"
    );
    ok(&as_user(
        HOST,
        bin,
        &["invite", "revoke", "dave", "--runtime-dir", &rt2],
    ));
    let left = block();
    assert!(
        left.contains("--guest carol") && !left.contains("--guest dave"),
        "{left}"
    );
    ok(&as_user(
        HOST,
        bin,
        &["invite", "revoke", "carol", "--runtime-dir", &rt1],
    ));
    assert_eq!(
        authorized_keys(),
        original,
        "the file is not back as it was"
    );
}

/// One key invited from two runtime directories: sshd uses the first line
/// that has the key, so the second invite could never be used (and its
/// guest would land in the first one's session). The second is refused,
/// naming the first, unless the first's store is gone.
#[test]
fn a_key_invited_from_another_runtime_directory_is_refused() {
    let _turn = host_ssh_lock();
    let Some(w) = World::bare("nrk", "", ".ssh/authorized_keys") else {
        return;
    };
    let bin = shared_binary();
    let second = w.dir.join("run2");
    fs::create_dir_all(&second).unwrap();
    fs::set_permissions(&second, fs::Permissions::from_mode(0o1777)).unwrap();
    let original = write_foreign(0);
    let keys = public_keys(&w, "twokey", 1);
    let add =
        |name: &str, rt: &Path| add_invite(bin, name, &keys[0], "skey", &rt.display().to_string());
    ok(&add("carol", &w.runtime));
    let again = add("dave", &second);
    let said = text(&again.stderr);
    assert!(
        !again.status.success()
            && said.contains("pairjail invite revoke carol --session skey --runtime-dir")
            && said.lines().count() == 1,
        "the same key from a second runtime directory: {said}"
    );
    let block = String::from_utf8_lossy(&authorized_keys()[original.len()..]).into_owned();
    assert!(!block.contains("--guest dave"), "{block}");
    ok(&as_user(
        HOST,
        bin,
        &[
            "invite",
            "revoke",
            "carol",
            "--runtime-dir",
            &w.runtime.display().to_string(),
        ],
    ));
    ok(&add("dave", &second));
    ok(&as_user(
        HOST,
        bin,
        &[
            "invite",
            "revoke",
            "dave",
            "--runtime-dir",
            &second.display().to_string(),
        ],
    ));
    assert_eq!(
        authorized_keys(),
        original,
        "the file is not back as it was"
    );

    // A store that is gone (a /tmp cleared at reboot): its line can never
    // be revoked and lets nobody in, so it does not block the key, and the
    // new line goes before it (sshd takes the first line with the key).
    // Made again by someone else (here root): still not the host's store.
    ok(&add("carol", &w.runtime));
    fs::remove_dir_all(w.runtime.join(HOST)).unwrap();
    fs::create_dir(w.runtime.join(HOST)).unwrap();
    ok(&add("dave", &second));
    let block = String::from_utf8_lossy(&authorized_keys()[original.len()..]).into_owned();
    let (dave, carol) = (block.find("--guest dave"), block.find("--guest carol"));
    assert!(
        matches!((dave, carol), (Some(d), Some(c)) if d < c),
        "the new line should come first, the gone store's stay until it expires: {block}"
    );
}

/// A `start` whose guest-book invite is refused (its key is already
/// invited from another runtime directory) fails, and leaves no share
/// running: the broker it had launched is stopped and waited for.
#[test]
fn a_start_whose_guest_book_invite_is_refused_leaves_no_share() {
    let _turn = host_ssh_lock();
    let Some(w) = World::bare("sgb", "", ".ssh/authorized_keys") else {
        return;
    };
    let bin = shared_binary();
    write_foreign(0);
    let keys = public_keys(&w, "book", 1);
    let second = w.dir.join("run2");
    fs::create_dir_all(&second).unwrap();
    fs::set_permissions(&second, fs::Permissions::from_mode(0o1777)).unwrap();
    ok(&add_invite(
        bin,
        "dave",
        &keys[0],
        "sother",
        &second.display().to_string(),
    ));
    let book = host_home().join(".config/pairjail/guests.toml");
    fs::create_dir_all(book.parent().unwrap()).unwrap();
    fs::write(&book, format!("[carol]\nkey_file = {:?}\n", keys[0])).unwrap();
    let chown = Command::new("chown")
        .args(["-R", &format!("{HOST}:{HOST}")])
        .arg(host_home().join(".config"))
        .status()
        .unwrap();
    assert!(chown.success());
    let out = within(
        spawn_host(
            bin,
            &[
                "start",
                "--detach",
                "--session",
                "ssgb",
                "--invite",
                "carol",
                "--workspace",
                &w.workspace().display().to_string(),
                "--runtime-dir",
                &w.runtime.display().to_string(),
                "--",
                "sh",
            ],
        ),
        60,
        "start",
    );
    fs::remove_file(&book).unwrap();
    let said = text(&out.stderr);
    assert!(
        !out.status.success() && said.contains("already invited") && said.lines().count() == 1,
        "start with a refused guest-book invite: {said}"
    );
    let status = status_of(&w, bin, "ssgb");
    assert!(
        !status.status.success(),
        "the share still runs after start failed: {}",
        text(&status.stdout)
    );
    assert!(
        !w.session_paths("ssgb").exists(),
        "the failed start's session directory is left"
    );
    // Its broker did run, and was stopped.
    let log = fs::read_to_string(w.runtime.join(HOST).join("ssgb.log")).unwrap_or_default();
    assert!(
        log.contains("ending: the host stopped the session"),
        "{log}"
    );
}

#[test]
fn a_runtime_directory_spelled_another_way_is_the_same_store() {
    // `--runtime-dir /x/run/` at add, `/x/run` at revoke (or a symlink to
    // it): the same invites, so the revoke must take the line out.
    let _turn = host_ssh_lock();
    let Some(w) = World::bare("nrs", "", ".ssh/authorized_keys") else {
        return;
    };
    let bin = shared_binary();
    let rt = w.runtime.display().to_string();
    let link = w.dir.join("run-link");
    std::os::unix::fs::symlink(&w.runtime, &link).unwrap();
    let original = write_foreign(0);
    let keys = public_keys(&w, "spelled", 2);
    let add = |name: &str, key: &str, rt: &str| ok(&add_invite(bin, name, key, "sspell", rt));
    add("carol", &keys[0], &format!("{rt}/"));
    add("dave", &keys[1], &link.display().to_string());
    for name in ["carol", "dave"] {
        ok(&as_user(
            HOST,
            bin,
            &["invite", "revoke", name, "--runtime-dir", &rt],
        ));
    }
    let left = String::from_utf8_lossy(&authorized_keys()[original.len()..]).into_owned();
    assert!(
        !left.contains("--guest carol") && !left.contains("--guest dave"),
        "a revoked guest's line is still in authorized_keys: {left}"
    );
    assert_eq!(
        authorized_keys(),
        original,
        "the file is not back as it was"
    );
}

#[test]
fn a_write_that_fails_midway_leaves_the_original_intact() {
    if !is_root() {
        assert!(!in_ci());
        return;
    }
    let _turn = host_ssh_lock();
    ensure_user(HOST);
    let original = write_foreign(400);
    let dir = World::dir_for("fsz");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777)).unwrap();
    let rt = dir.join("run");
    fs::create_dir_all(&rt).unwrap();
    fs::set_permissions(&rt, fs::Permissions::from_mode(0o1777)).unwrap();
    // The file is ~4 KiB; a 2 KiB file-size limit stops the rewrite midway
    // (the small invites file still fits).
    let out = Command::new("prlimit")
        .args([
            "--fsize=2048",
            "--",
            "setpriv",
            "--reuid",
            HOST,
            "--regid",
            HOST,
            "--init-groups",
            "--",
        ])
        .arg(shared_binary())
        .args([
            "invite",
            "add",
            "x",
            "--key-file",
            shared_data("keys/ed25519.pub").to_str().unwrap(),
        ])
        .args([
            "--via",
            "authorized-keys",
            "--runtime-dir",
            rt.to_str().unwrap(),
        ])
        .env("HOME", host_home())
        .current_dir("/")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("the file was left unchanged"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        authorized_keys(),
        original,
        "a failed write changed the file"
    );
    assert!(
        leftover_temp_files().is_empty(),
        "temp files left: {:?}",
        leftover_temp_files()
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn symlinked_or_foreign_owned_authorized_keys_are_refused() {
    if !is_root() {
        assert!(!in_ci());
        return;
    }
    let _turn = host_ssh_lock();
    ensure_user(HOST);
    write_foreign(0);
    let ak = host_home().join(".ssh/authorized_keys");
    let dir = World::dir_for("sym");
    fs::create_dir_all(dir.join("run")).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(dir.join("run"), fs::Permissions::from_mode(0o1777)).unwrap();
    let rt = dir.join("run").display().to_string();
    let key_path = shared_data("keys/ed25519.pub");
    let key = key_path.to_str().unwrap();
    let add = || {
        as_user(
            HOST,
            shared_binary(),
            &[
                "invite",
                "add",
                "x",
                "--key-file",
                key,
                "--via",
                "authorized-keys",
                "--runtime-dir",
                &rt,
            ],
        )
    };

    let real = host_home().join(".ssh/real_keys");
    fs::rename(&ak, &real).unwrap();
    std::os::unix::fs::symlink(&real, &ak).unwrap();
    let out = add();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("it is a symlink"),
        "{}",
        text(&out.stderr)
    );
    fs::remove_file(&ak).unwrap();
    fs::rename(&real, &ak).unwrap();

    nix::unistd::chown(&ak, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    let out = add();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("it is owned by uid 0"),
        "{}",
        text(&out.stderr)
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn bad_names_keys_and_expiry_are_refused_with_one_line() {
    let key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/keys/ed25519.pub");
    let dir = tempfile::tempdir().unwrap();
    let rt = dir.path().display().to_string();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pairjail"))
            .args(args)
            .args(["--runtime-dir", &rt])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let e = text(&out.stderr);
        assert_eq!(e.lines().count(), 1, "{e}");
        e.trim().to_string()
    };
    for name in ["bob\"", "bob\nroot", "$(id)", "a;b", "a b", "", "a/../b"] {
        let e = run(&["invite", "add", name, "--key-file", key]);
        assert!(
            e.starts_with("pairjail: invalid guest name"),
            "{name:?}: {e}"
        );
    }
    let e = run(&["invite", "add", "bob", "--key", "ssh-ed25519 AAAA"]);
    assert!(
        e.starts_with("pairjail: --key: not an OpenSSH public key (")
            && e.ends_with("it looks cut short; copy the whole line of the .pub file"),
        "{e}"
    );
    // What people paste instead of a public key: named, with the fix.
    let private = dir.path().join("leaked");
    assert!(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&private)
            .status()
            .unwrap()
            .success()
    );
    let e = run(&[
        "invite",
        "add",
        "bob",
        "--key-file",
        &private.display().to_string(),
    ]);
    assert!(
        e.contains("this is a PRIVATE key") && e.contains("ssh-keygen -y -f"),
        "{e}"
    );
    let e = run(&[
        "invite",
        "add",
        "bob",
        "--key-file",
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/keys/putty.ppk"),
    ]);
    assert!(
        e.contains("PuTTY private key") && e.contains("public-openssh"),
        "{e}"
    );
    let e = run(&["invite", "add", "bob", "--key", "hello there"]);
    assert!(e.contains("got `hello there…`"), "{e}");
    let e = run(&[
        "invite",
        "add",
        "bob",
        "--key-file",
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/keys/rsa1024.pub"),
    ]);
    assert_eq!(
        e,
        format!(
            "pairjail: --key-file {}/tests/data/keys/rsa1024.pub: line 1: RSA key of 1024 bits is too short (at least 2048)",
            env!("CARGO_MANIFEST_DIR")
        )
    );
    let e = run(&[
        "invite",
        "add",
        "bob",
        "--key-file",
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/keys/dsa.pub"),
    ]);
    assert!(
        e.contains("DSA keys are refused") || e.contains("not an OpenSSH public key"),
        "{e}"
    );
    for bad in ["soon", "-2h", "2020-01-01T00:00", "2026-13-01T00:00"] {
        let e = run(&[
            "invite",
            "add",
            "bob",
            "--key-file",
            key,
            &format!("--expires={bad}"),
        ]);
        assert!(
            e.starts_with(&format!("pairjail: --expires '{bad}'")),
            "{e}"
        );
    }
    let e = run(&[
        "invite",
        "add",
        "bob",
        "--key-file",
        key,
        "--from",
        "10.0.0.1\",command=\"sh",
    ]);
    assert!(e.starts_with("pairjail: invalid --from entry"), "{e}");
    let e = run(&["invite", "add", "bob", "--key-file", key, "--github", "bob"]);
    assert_eq!(
        e,
        "pairjail: give exactly one of --key, --key-file, --github, --gitlab"
    );
}

/// A one-shot HTTP server on 127.0.0.1 standing in for github.com.
fn forge(routes: Vec<(&'static str, u16, String)>) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in l.incoming().flatten() {
            use std::io::{BufRead, BufReader, Write};
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
            }
            let mut s = stream;
            match routes.iter().find(|(p, _, _)| *p == path) {
                Some((_, 0, _)) => std::thread::sleep(Duration::from_secs(5)),
                Some((_, code, body)) => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
                None => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    port
}

#[test]
fn github_keys_are_imported_and_errors_are_clear() {
    let ed = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/keys/ed25519.pub"
    ))
    .unwrap();
    let port = forge(vec![
        ("/bob.keys", 200, ed.clone()),
        ("/nokeys.keys", 200, String::new()),
        ("/broken.keys", 500, "oops".into()),
        ("/slow.keys", 0, String::new()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let rt = dir.path().display().to_string();
    let run = |who: &str| {
        Command::new(env!("CARGO_BIN_EXE_pairjail"))
            .args([
                "invite",
                "add",
                "bob",
                "--github",
                who,
                "--via",
                "pair-user",
                "--runtime-dir",
                &rt,
            ])
            .env("PAIRJAIL_GITHUB_URL", format!("http://127.0.0.1:{port}"))
            .env("PAIRJAIL_FETCH_TIMEOUT_SECS", "1")
            .output()
            .unwrap()
    };
    let out = run("bob");
    let said = ok(&out);
    assert!(
        said.contains("invited bob (mirror, session pair) ssh-ed25519 SHA256:"),
        "{said}"
    );
    let list = Command::new(env!("CARGO_BIN_EXE_pairjail"))
        .args(["invite", "list", "--json", "--runtime-dir", &rt])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v[0]["name"], "bob");
    assert_eq!(v[0]["key_type"], "ssh-ed25519");
    assert!(v[0]["fingerprint"].as_str().unwrap().starts_with("SHA256:"));
    let cases = [
        ("nokeys", "GitHub user 'nokeys' has no public keys"),
        ("missing", "GitHub user 'missing' does not exist"),
        ("broken", "answered HTTP 500"),
        ("slow", "timed out after 1 s"),
    ];
    for (who, expected) in cases {
        let out = run(who);
        assert_eq!(out.status.code(), Some(1), "{who}");
        assert!(
            text(&out.stderr).contains(expected),
            "{who}: {}",
            text(&out.stderr)
        );
    }
}

/// `pairjail ARGS…` as the host (its HOME, from /), started, not waited
/// for; its output is piped for the failure message.
fn spawn_host(bin: &Path, args: &[&str]) -> std::process::Child {
    run_as(HOST, bin)
        .args(args)
        .env("HOME", host_home())
        .current_dir("/")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// `invite add NAME --via authorized-keys` as the host, for `session` in
/// runtime directory `rt`.
fn add_invite(bin: &Path, name: &str, key: &str, session: &str, rt: &str) -> std::process::Output {
    as_user(
        HOST,
        bin,
        &[
            "invite",
            "add",
            name,
            "--key-file",
            key,
            "--session",
            session,
            "--via",
            "authorized-keys",
            "--runtime-dir",
            rt,
        ],
    )
}

/// `status --session SESSION` in this world, waited for (30 s at most).
fn status_of(w: &World, bin: &Path, session: &str) -> std::process::Output {
    within(
        spawn_host(
            bin,
            &[
                "status",
                "--session",
                session,
                "--runtime-dir",
                &w.runtime.display().to_string(),
            ],
        ),
        30,
        "status --session",
    )
}

/// `start --detach` of a plain `sh` in `session`, in this world.
fn spawn_start(w: &World, bin: &Path, session: &str) -> std::process::Child {
    spawn_host(
        bin,
        &[
            "start",
            "--detach",
            "--session",
            session,
            "--workspace",
            &w.workspace().display().to_string(),
            "--runtime-dir",
            &w.runtime.display().to_string(),
            "--",
            "sh",
        ],
    )
}

/// `invite add NAME --key-file KEY --session SESSION --via authorized-keys`.
fn spawn_add(w: &World, bin: &Path, name: &str, key: &str, session: &str) -> std::process::Child {
    spawn_host(
        bin,
        &[
            "invite",
            "add",
            name,
            "--key-file",
            key,
            "--session",
            session,
            "--via",
            "authorized-keys",
            "--runtime-dir",
            &w.runtime.display().to_string(),
        ],
    )
}

/// `stop --session SESSION`.
fn spawn_stop(w: &World, bin: &Path, session: &str) -> std::process::Child {
    spawn_host(
        bin,
        &[
            "stop",
            "--session",
            session,
            "--runtime-dir",
            &w.runtime.display().to_string(),
        ],
    )
}

/// The host's invites lock, held: a broker that ends waits for it before
/// it removes its run's invites.
fn hold_invites_lock(w: &World) -> nix::fcntl::Flock<fs::File> {
    let lock = fs::OpenOptions::new()
        .write(true)
        .open(w.runtime.join(HOST).join(".invites.lock"))
        .unwrap();
    nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap()
}

/// Waits until `path` is gone, failing with `why` after the deadline.
fn wait_gone(path: &Path, deadline: Instant, why: &str) {
    while path.exists() {
        assert!(Instant::now() < deadline, "{why}: {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until process `pid` no longer runs a broker (it has exited, or
/// is a zombie, whose command line is empty), failing with `why` after
/// the deadline.
fn wait_broker_gone(pid: i32, deadline: Instant, why: &str) {
    let cmdline = || fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    while String::from_utf8_lossy(&cmdline()).contains("__broker") {
        assert!(Instant::now() < deadline, "{why}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Does the session's tmux server answer on its socket?
fn tmux_answers(w: &World, session: &str) -> std::process::Output {
    let sock = w
        .runtime
        .join(HOST)
        .join(session)
        .join("tmux/server/tmux.sock");
    run_as(HOST, "tmux")
        .arg("-S")
        .arg(&sock)
        .args(["has-session", "-t", &format!("={session}")])
        .output()
        .unwrap()
}

/// An invite added while its session is ending is kept for the next start,
/// never bound to the run that is dying (and so lost with it). The window
/// is held open: the test holds the invites lock while the broker ends, so
/// the broker waits on it exactly where an `invite add` could slip in.
#[test]
fn an_invite_added_while_the_session_ends_waits_for_the_next_start() {
    let _turn = host_ssh_lock();
    let Some(w) = World::bare("er", "", ".ssh/authorized_keys") else {
        return;
    };
    let bin = shared_binary();
    let rt = w.runtime.display().to_string();
    let original = write_foreign(0);
    let keys = public_keys(&w, "er", 2);
    ok(&spawn_start(&w, bin, "ser").wait_with_output().unwrap());
    ok(&spawn_add(&w, bin, "bob", &keys[0], "ser")
        .wait_with_output()
        .unwrap());

    let host_dir = w.runtime.join(HOST);
    let held = hold_invites_lock(&w);
    let stop = spawn_stop(&w, bin, "ser");
    // The broker now waits for the lock to remove its run's invites. Its
    // pid file must already be gone: while it names a live run, an add is
    // bound to that run.
    let deadline = Instant::now() + Duration::from_secs(10);
    wait_gone(
        &host_dir.join("ser/broker.pid"),
        deadline,
        "the ending broker still names its run while it waits for the invites lock: an add now would be bound to a run about to die",
    );
    let carol = spawn_add(&w, bin, "carol", &keys[1], "ser");
    drop(held);
    ok(&carol.wait_with_output().unwrap());
    ok(&stop.wait_with_output().unwrap());
    wait_gone(
        &host_dir.join("ser"),
        deadline,
        "the broker of ser did not exit",
    );

    let listed = ok(&as_user(
        HOST,
        bin,
        &["invite", "list", "--json", "--runtime-dir", &rt],
    ));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["carol"], "{listed}");
    let block = String::from_utf8_lossy(&authorized_keys()[original.len()..]).into_owned();
    assert!(
        block.contains("pairjail:ser:carol") && !block.contains("pairjail:ser:bob"),
        "{block}"
    );

    // The next start binds carol: her line now names that run.
    ok(&spawn_start(&w, bin, "ser").wait_with_output().unwrap());
    let store = fs::read_to_string(host_dir.join("invites.toml")).unwrap();
    assert!(store.contains("[invite.run]"), "{store}");
    ok(&spawn_stop(&w, bin, "ser").wait_with_output().unwrap());
}

/// `stop` then `start` at once: the new run never begins while the last
/// one is still removing its invites and files (it would remove the new
/// run's tmux socket), and `stop` returns only when the run is over. The
/// window is held open as above: the ending broker waits for the invites
/// lock, which the test holds.
#[test]
fn a_restart_waits_for_the_last_run_to_finish_ending() {
    let _turn = host_ssh_lock();
    let Some(w) = World::bare("rs", "", ".ssh/authorized_keys") else {
        return;
    };
    let bin = shared_binary();
    write_foreign(0);
    ok(&spawn_start(&w, bin, "srs").wait_with_output().unwrap());
    let key = public_keys(&w, "rs", 1);
    ok(&spawn_add(&w, bin, "bob", &key[0], "srs")
        .wait_with_output()
        .unwrap());

    let pid_file = w.runtime.join(HOST).join("srs/broker.pid");
    let old = w.broker_pid("srs");
    let held = hold_invites_lock(&w);
    let mut stop = spawn_stop(&w, bin, "srs");
    let deadline = Instant::now() + Duration::from_secs(10);
    wait_gone(&pid_file, deadline, "the broker did not start ending");
    // The old run now waits for the invites lock, its cleanup still ahead.
    let mut restart = spawn_start(&w, bin, "srs");
    let window = Instant::now() + Duration::from_secs(2);
    while restart.try_wait().unwrap().is_none() && Instant::now() < window {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        stop.try_wait().unwrap().is_none(),
        "`stop` returned while its run was still ending"
    );
    assert!(
        restart.try_wait().unwrap().is_none(),
        "`start` went on while the last run was still ending"
    );
    drop(held);
    let stopped = stop.wait_with_output().unwrap();
    let restarted = restart.wait_with_output().unwrap();
    assert!(stopped.status.success(), "stop: {}", text(&stopped.stderr));
    assert!(
        restarted.status.success(),
        "start: {}",
        text(&restarted.stderr)
    );
    wait_broker_gone(old, deadline, "the old broker did not exit");
    // The new run is whole: its tmux server answers on its socket.
    let answered = tmux_answers(&w, "srs");
    assert!(
        answered.status.success(),
        "the restarted session's tmux socket is gone: {}",
        text(&answered.stderr)
    );
    ok(&spawn_stop(&w, bin, "srs").wait_with_output().unwrap());
}

/// Waits for `child` at most `secs`, killing it then: a hang fails the test
/// instead of the whole run.
fn within(mut child: std::process::Child, secs: u64, what: &str) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} still running after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Two `start`s of one session at once: one shares it, the other is told
/// it is shared, and the session works (the loser once killed the winner's
/// tmux server). A session named like a file of the host's directory
/// (`invites`) starts, takes invites and stops.
#[test]
fn concurrent_starts_share_once_and_any_session_name_works() {
    let _turn = host_ssh_lock();
    let Some(w) = World::bare("cs", "", ".ssh/authorized_keys") else {
        return;
    };
    let bin = shared_binary();
    write_foreign(0);
    let (a, b) = (spawn_start(&w, bin, "scs"), spawn_start(&w, bin, "scs"));
    let outs = [within(a, 60, "start"), within(b, 60, "start")];
    let won = outs.iter().filter(|o| o.status.success()).count();
    let told: Vec<String> = outs
        .iter()
        .filter(|o| !o.status.success())
        .map(|o| text(&o.stderr))
        .collect();
    assert_eq!(won, 1, "{told:?}");
    assert!(
        told[0].contains("session scs is already shared"),
        "{told:?}"
    );
    let answered = tmux_answers(&w, "scs");
    assert!(answered.status.success(), "{}", text(&answered.stderr));
    ok(&within(spawn_stop(&w, bin, "scs"), 30, "stop"));

    let key = public_keys(&w, "cs", 1);
    ok(&within(
        spawn_start(&w, bin, "invites"),
        60,
        "start --session invites",
    ));
    ok(&within(
        spawn_add(&w, bin, "bob", &key[0], "invites"),
        30,
        "invite add --session invites",
    ));
    ok(&within(
        spawn_stop(&w, bin, "invites"),
        30,
        "stop --session invites",
    ));
}

/// A broker that dies (a crash, `kill -9`, the OOM killer) leaves its
/// session's tmux server running, its sockets, its pid file and its run's
/// invites. `stop` ends all of that, says what it found, and the session
/// can be started again.
#[test]
fn stop_after_a_broker_crash_ends_what_it_left() {
    let _turn = host_ssh_lock();
    let Some(w) = World::bare("cr", "", ".ssh/authorized_keys") else {
        return;
    };
    let bin = shared_binary();
    let rt = w.runtime.display().to_string();
    let original = write_foreign(0);
    ok(&within(spawn_start(&w, bin, "scr"), 60, "start"));
    let key = public_keys(&w, "cr", 1);
    ok(&within(
        spawn_add(&w, bin, "bob", &key[0], "scr"),
        30,
        "invite add",
    ));

    let dir = w.session_paths("scr");
    let pid = w.crash_broker("scr");
    assert!(
        tmux_answers(&w, "scr").status.success(),
        "the test needs the dead broker's tmux server still running"
    );
    // A new run never takes over the dead one's server, which its guests
    // may have set up (hooks, command aliases).
    let taken = within(spawn_start(&w, bin, "scr"), 60, "start after the crash");
    assert!(
        !taken.status.success()
            && text(&taken.stderr).contains("left its tmux server running")
            && text(&taken.stderr).contains("pairjail stop --session scr"),
        "start took over a dead run's server: {}{}",
        text(&taken.stdout),
        text(&taken.stderr)
    );

    let stopped = within(spawn_stop(&w, bin, "scr"), 30, "stop");
    assert!(
        stopped.status.success(),
        "stop after a broker crash: {}",
        text(&stopped.stderr)
    );
    let said = text(&stopped.stdout);
    assert!(
        said.contains(&format!("pid {pid}")) && said.contains("1 invite"),
        "{said}"
    );
    assert!(
        !tmux_answers(&w, "scr").status.success(),
        "the dead broker's tmux server still runs after stop"
    );
    assert!(
        !dir.exists(),
        "left behind: {:?}",
        fs::read_dir(&dir).map(|d| d.count())
    );
    let listed = ok(&as_user(
        HOST,
        bin,
        &["invite", "list", "--json", "--runtime-dir", &rt],
    ));
    assert_eq!(listed.trim(), "[]", "{listed}");
    let block = String::from_utf8_lossy(&authorized_keys()[original.len()..]).into_owned();
    assert!(!block.contains("pairjail:scr:bob"), "{block}");

    // Nothing is left to stop now, and the session starts again.
    let again = within(spawn_stop(&w, bin, "scr"), 30, "stop");
    assert!(
        !again.status.success() && text(&again.stderr).contains("no session scr is being shared"),
        "{}",
        text(&again.stderr)
    );
    ok(&within(
        spawn_start(&w, bin, "scr"),
        60,
        "start after the crash",
    ));
    ok(&within(spawn_stop(&w, bin, "scr"), 30, "stop"));
}

/// SIGSTOPs `pid` until the guard goes: resumed whatever happens, or the
/// test world's teardown waits on it too.
fn stop_process(pid: i32) -> impl Drop {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    struct Resume(i32);
    impl Drop for Resume {
        fn drop(&mut self) {
            let _ = kill(Pid::from_raw(self.0), Signal::SIGCONT);
        }
    }
    kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    Resume(pid)
}

/// Fills the backlog of a listener that does not accept: connects without
/// blocking until the kernel says its queue is full. The connections stay
/// queued while the returned descriptors are open.
fn fill_backlog(socket: &Path) -> Vec<std::os::fd::OwnedFd> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let addr = nix::sys::socket::UnixAddr::new(socket).unwrap();
    let mut pending = Vec::new();
    loop {
        let fd = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_NONBLOCK,
            None,
        )
        .unwrap();
        match nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => pending.push(fd),
            Err(nix::errno::Errno::EAGAIN) => return pending,
            Err(e) => panic!("connect to {}: {e}", socket.display()),
        }
        assert!(
            pending.len() < 70_000,
            "the backlog of {} never filled",
            socket.display()
        );
    }
}

/// A dead broker's tmux server that does not answer (stopped, or stuck):
/// `stop` neither hangs on it nor leaves it running with its socket gone;
/// it ends the server that listens on the host's own socket, then the rest.
#[test]
fn stop_after_a_crash_ends_a_tmux_server_that_does_not_answer() {
    stop_ends_a_stopped_server("crs", false);
}

/// The same with the stopped server's backlog full, so the kernel can no
/// longer say who listens on its socket (a first `stop` that was cut
/// short, hung clients, or guests of a direct session connecting): `stop`
/// knows the server from what `start` recorded (pid, start time, owner).
#[test]
fn stop_after_a_crash_ends_a_stopped_tmux_server_whose_backlog_is_full() {
    stop_ends_a_stopped_server("crf", true);
}

fn stop_ends_a_stopped_server(tag: &str, full: bool) {
    let _turn = host_ssh_lock();
    let Some(w) = World::bare(tag, "", ".ssh/authorized_keys") else {
        return;
    };
    let bin = shared_binary();
    let session = format!("s{tag}");
    let session = session.as_str();
    ok(&within(spawn_start(&w, bin, session), 60, "start"));
    let sock = w.session_paths(session).join("tmux/server/tmux.sock");
    // The server's pid as this namespace sees it (tmux's own #{pid} is
    // the one inside a confined session's jail).
    let server = nix::sys::socket::getsockopt(
        &std::os::unix::net::UnixStream::connect(&sock).unwrap(),
        nix::sys::socket::sockopt::PeerCredentials,
    )
    .unwrap()
    .pid();
    let pid = w.broker_pid(session);
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    wait_broker_gone(
        pid,
        Instant::now() + Duration::from_secs(10),
        "the broker did not die",
    );
    let _resume = stop_process(server);
    let _pending = full.then(|| fill_backlog(&sock));

    let stopped = within(spawn_stop(&w, bin, session), 60, "stop");
    assert!(
        stopped.status.success(),
        "stop with a tmux server that does not answer: {}",
        text(&stopped.stderr)
    );
    let state = || {
        fs::read_to_string(format!("/proc/{server}/stat"))
            .ok()
            .and_then(|s| s.rsplit(") ").next().map(|r| r.chars().next()))
            .flatten()
    };
    assert!(
        matches!(state(), None | Some('Z' | 'X')),
        "the tmux server (pid {server}) still runs after stop: {:?}",
        state()
    );
    let list = |dir: std::path::PathBuf| -> Vec<String> {
        fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let left = (
        list(w.session_paths(session)),
        list(w.session_paths(session).join("tmux")),
    );
    assert!(
        !w.session_paths(session).exists(),
        "the session directory is left, with {left:?}; stop said: {}",
        text(&stopped.stdout)
    );
    ok(&within(spawn_start(&w, bin, session), 60, "start again"));
    ok(&within(spawn_stop(&w, bin, session), 30, "stop"));
}

/// A broker that is alive but stopped (SIGSTOP, a debugger, a machine
/// under swap) stops accepting; once its control socket's backlog is full
/// a blocking `connect` waits on it for good. `status` and `stop` must
/// still answer, and say which broker does not answer, with its pid.
#[test]
fn status_and_stop_answer_when_a_stopped_brokers_backlog_is_full() {
    let _turn = host_ssh_lock();
    let Some(w) = World::bare("bfl", "", ".ssh/authorized_keys") else {
        return;
    };
    let bin = shared_binary();
    ok(&within(spawn_start(&w, bin, "sbfl"), 60, "start"));
    let pid = w.broker_pid("sbfl");
    let resume = stop_process(pid);

    let pending = fill_backlog(&w.session_paths("sbfl").join("control.sock"));

    let status = within(
        spawn_host(
            bin,
            &[
                "status",
                "--json",
                "--runtime-dir",
                &w.runtime.display().to_string(),
            ],
        ),
        30,
        "status",
    );
    assert!(status.status.success(), "status: {}", text(&status.stderr));
    // Not "nothing shared": the share is there, and its broker is named.
    let said = text(&status.stderr);
    assert!(
        said.contains("sbfl") && said.contains(&format!("pid {pid}")),
        "status should say which broker does not answer: {said}"
    );
    assert_eq!(text(&status.stdout).trim(), "[]", "status --json");
    let one = status_of(&w, bin, "sbfl");
    let said = text(&one.stderr);
    assert!(
        !one.status.success()
            && said.contains(&format!("pid {pid}"))
            && !said.contains("being shared"),
        "status --session of a silent share: {said}"
    );
    let stopped = within(spawn_stop(&w, bin, "sbfl"), 30, "stop");
    assert!(
        !stopped.status.success(),
        "stop of a stopped broker succeeded"
    );
    let said = text(&stopped.stderr);
    assert!(
        said.contains(&pid.to_string()) && said.lines().count() == 1,
        "stop should name the broker that does not answer in one line: {said}"
    );

    drop(pending);
    drop(resume);
    ok(&within(spawn_stop(&w, bin, "sbfl"), 30, "stop"));
}

/// `stop` gave up on a stopped broker after 3 s and told the host it does
/// not answer; the order was still sitting in the socket. Once the broker
/// runs again it must not carry out an order whose asker is gone (a late
/// stop, or a kick of a guest who has come back since).
#[test]
fn an_order_the_host_gave_up_on_is_not_carried_out_later() {
    let _turn = host_ssh_lock();
    let Some(w) = World::bare("lat", "", ".ssh/authorized_keys") else {
        return;
    };
    let bin = shared_binary();
    ok(&within(spawn_start(&w, bin, "slat"), 60, "start"));
    let pid = w.broker_pid("slat");
    let resume = stop_process(pid);
    let stopped = within(spawn_stop(&w, bin, "slat"), 30, "stop");
    assert!(
        !stopped.status.success() && text(&stopped.stderr).contains(&pid.to_string()),
        "stop of a stopped broker: {}",
        text(&stopped.stderr)
    );
    let rt = w.runtime.display().to_string();
    let kicked = within(
        spawn_host(
            bin,
            &["kick", "carol", "--session", "slat", "--runtime-dir", &rt],
        ),
        30,
        "kick",
    );
    let said = text(&kicked.stderr);
    assert!(
        !kicked.status.success()
            && said.contains(&format!("pid {pid}"))
            && !said.contains("being shared"),
        "kick of a stopped broker should say it does not answer: {said}"
    );
    drop(resume);
    // The broker takes connections in order: the abandoned one first.
    let log = w.runtime.join(HOST).join("slat.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let said = fs::read_to_string(&log).unwrap_or_default();
        if said.contains("stopped waiting") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broker never dropped the abandoned order (alive: {}); its log:\n{said}",
            Path::new(&format!("/proc/{pid}")).exists()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = status_of(&w, bin, "slat");
    assert!(
        status.status.success(),
        "the share ended after all: {}",
        text(&status.stderr)
    );
    ok(&within(spawn_stop(&w, bin, "slat"), 30, "stop"));
}

/// `invite revoke` promises that a connected guest goes too. With the
/// share's broker stopped, nobody can say whether the guest is still
/// connected: the invite goes, and revoke says so instead of reporting
/// success.
#[test]
fn revoke_says_when_it_cannot_disconnect_the_guest() {
    let _turn = host_ssh_lock();
    let Some(w) = World::bare("rvs", "", ".ssh/authorized_keys") else {
        return;
    };
    let bin = shared_binary();
    ok(&within(spawn_start(&w, bin, "srvs"), 60, "start"));
    let original = write_foreign(0);
    let keys = public_keys(&w, "revsilent", 1);
    let rt = w.runtime.display().to_string();
    ok(&add_invite(bin, "carol", &keys[0], "srvs", &rt));
    let resume = stop_process(w.broker_pid("srvs"));
    let out = within(
        spawn_host(bin, &["invite", "revoke", "carol", "--runtime-dir", &rt]),
        60,
        "revoke",
    );
    // A name never invited: the silent share is only mentioned.
    let typo = within(
        spawn_host(bin, &["invite", "revoke", "nobody", "--runtime-dir", &rt]),
        60,
        "revoke",
    );
    drop(resume);
    let said = text(&out.stderr);
    assert!(
        !out.status.success() && said.contains("may still be connected") && said.contains("srvs"),
        "revoke with the share's broker stopped: {said}"
    );
    assert!(
        text(&typo.stderr).contains("no invite named nobody"),
        "revoke of a name never invited, with a share silent: {}",
        text(&typo.stderr)
    );
    assert_eq!(
        authorized_keys(),
        original,
        "the invite's line is still there"
    );
    ok(&within(spawn_stop(&w, bin, "srvs"), 30, "stop"));
}

/// Another local user made `<runtime>/<host>` first in a shared runtime
/// directory and put a link there to the host's real share elsewhere: an
/// order for "their" session must not reach the host's real broker (it
/// answers the host, so the peer check alone lets it through).
#[test]
fn an_order_never_follows_a_link_another_user_planted_to_a_real_share() {
    let _turn = host_ssh_lock();
    let Some(w) = World::bare("oln", "", ".ssh/authorized_keys") else {
        return;
    };
    let bin = shared_binary();
    ok(&within(spawn_start(&w, bin, "soln"), 60, "start"));
    let shared = w.dir.join("shared");
    let planted = shared.join(HOST).join("sx");
    fs::create_dir_all(&planted).unwrap();
    for d in [shared.clone(), shared.join(HOST), planted.clone()] {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
    }
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::symlink(
        w.session_paths("soln").join("control.sock"),
        planted.join("control.sock"),
    )
    .unwrap();
    let rt = shared.display().to_string();
    for (what, args) in [
        (
            "kick",
            vec!["kick", "carol", "--session", "sx", "--runtime-dir", &rt],
        ),
        (
            "stop",
            vec!["stop", "--session", "sx", "--runtime-dir", &rt],
        ),
    ] {
        let out = within(spawn_host(bin, &args), 30, what);
        assert!(
            !out.status.success(),
            "{what} of a planted session succeeded"
        );
        assert!(
            !text(&out.stderr).contains("carol"),
            "{what} reached a broker: {}",
            text(&out.stderr)
        );
        let status = status_of(&w, bin, "soln");
        assert!(
            status.status.success(),
            "{what} through the planted link reached the real share: {}",
            text(&status.stderr)
        );
    }
    ok(&within(spawn_stop(&w, bin, "soln"), 30, "stop"));
}

/// Another local user made `<runtime>/<host>` first (a shared runtime
/// directory is 1777) and planted a session with a listening "tmux"
/// socket: a tmux client obeys its server (it can be told to run a shell
/// or write files), so `stop` must refuse the directory before it starts
/// any client there.
#[test]
fn stop_never_runs_tmux_on_a_socket_another_user_planted() {
    let _turn = host_ssh_lock();
    let Some(w) = World::bare("pl", "", ".ssh/authorized_keys") else {
        return;
    };
    let bin = shared_binary();
    let planted = w.runtime.join(HOST).join("spl");
    fs::create_dir_all(planted.join("tmux/server")).unwrap();
    for d in [
        w.runtime.join(HOST),
        planted.clone(),
        planted.join("tmux"),
        planted.join("tmux/server"),
    ] {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
    }
    let listener =
        std::os::unix::net::UnixListener::bind(planted.join("tmux/server/tmux.sock")).unwrap();
    fs::set_permissions(
        planted.join("tmux/server/tmux.sock"),
        fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    listener.set_nonblocking(true).unwrap();

    let rt = w.runtime.display().to_string();
    for (what, args) in [
        ("stop", ["stop", "--session", "spl", "--runtime-dir", &rt]),
        (
            "attach",
            ["attach", "--session", "spl", "--runtime-dir", &rt],
        ),
    ] {
        let out = within(spawn_host(bin, &args), 30, what);
        assert!(
            listener.accept().is_err(),
            "{what} ran a tmux client on a socket the host does not own"
        );
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains(&format!("is not a directory owned by {HOST}")),
            "{what}: {}",
            text(&out.stderr)
        );
    }
}
