//! Shared test setup: real users, the built binary where they can run it.
#![allow(dead_code)]

pub mod sshd;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub const TEST_USER: &str = "pjtest";

pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Creates a Unix user (idempotent). Only as root. One at a time: two
/// tests of a binary making the same user at once raced (one `useradd`
/// found the user the other had just made, or /etc/passwd locked).
pub fn ensure_user(name: &str) {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let exists = Command::new("id")
        .arg("-u")
        .arg(name)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !exists {
        let out = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", "--user-group", name])
            .output()
            .expect("useradd must be installed (package passwd)");
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // No password, but not locked: sshd refuses key logins to locked accounts.
    let out = Command::new("usermod")
        .args(["-p", "*", name])
        .output()
        .expect("usermod");
    assert!(
        out.status.success(),
        "usermod {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A copy of the binary in a world-readable place (the checkout may live
/// under /root, which other users cannot enter).
pub fn shared_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // Copies left by earlier test processes that are gone.
        if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("pairjail-test-bin-")
                    && !Path::new(&format!("/proc/{pid}")).exists()
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("pairjail-test-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dst = dir.join("pairjail");
        std::fs::copy(env!("CARGO_BIN_EXE_pairjail"), &dst).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
        wait_executable(&dst);
        dst
    })
}

/// A fresh copy of an executable can fail with ETXTBSY for a moment: a
/// fork in another test thread may still hold the copy's write descriptor
/// until it execs. Wait that out.
pub fn wait_executable(path: &Path) {
    for _ in 0..100 {
        match Command::new(path).arg("--version").output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            _ => return,
        }
    }
}

/// A file from tests/data, copied where other users can read it (the
/// checkout may sit in a directory only root can enter).
pub fn shared_data(rel: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel);
    let dst = shared_binary().with_file_name(rel.replace('/', "_"));
    std::fs::copy(&src, &dst).unwrap();
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o644)).unwrap();
    dst
}

/// pairjail run as an unprivileged user: the caller if not root, otherwise
/// the test user (created here), from a neutral directory.
pub fn pairjail_unprivileged(args: &[&str]) -> Output {
    let mut cmd = if is_root() {
        ensure_user(TEST_USER);
        let mut c = run_as(TEST_USER, shared_binary());
        c.env("HOME", format!("/home/{TEST_USER}"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_pairjail"))
    };
    cmd.args(args)
        .current_dir("/")
        .env_remove("PAIRJAIL_PROFILE_PATH");
    cmd.output().expect("run pairjail")
}

/// pairjail as the current user, from the checkout (so ./profiles is found).
pub fn pairjail(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pairjail"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("PAIRJAIL_PROFILE_PATH")
        .output()
        .expect("run pairjail")
}

/// Kernel features the jail needs: user namespaces and Landlock. In CI a
/// missing feature fails the test; elsewhere the test is skipped, loudly.
pub fn require_kernel() -> bool {
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .map(|s| s.trim() != "0")
        .unwrap_or(false);
    let landlock = pairjail::jail::landlock::kernel_abi() >= 6;
    if userns && landlock {
        return true;
    }
    let msg = format!(
        "kernel lacks what the jail needs: user namespaces {userns}, Landlock ABI >= 6 {landlock}"
    );
    if in_ci() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A copy of the binary where sshd accepts it as AuthorizedKeysCommand:
/// it and every directory above it owned by root, not writable by others.
/// Removed on drop.
pub struct SafeBinary {
    pub dir: PathBuf,
    pub path: PathBuf,
}

impl SafeBinary {
    pub fn new(tag: &str) -> SafeBinary {
        use std::os::unix::fs::PermissionsExt;
        let dir = PathBuf::from(format!(
            "/usr/local/lib/pairjail-test-{tag}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join("pairjail");
        std::fs::copy(env!("CARGO_BIN_EXE_pairjail"), &path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        wait_executable(&path);
        SafeBinary { dir, path }
    }
}

impl Drop for SafeBinary {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `program` as `user` (uid, gid and groups), via setpriv.
pub fn run_as(user: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid", user, "--regid", user, "--init-groups", "--"])
        .arg(program);
    c
}

/// Runs `bin args…` as `user` (with their HOME), from /.
pub fn as_user(user: &str, bin: &Path, args: &[&str]) -> Output {
    run_as(user, bin)
        .args(args)
        .env("HOME", format!("/home/{user}"))
        .env("TERM", "xterm")
        .env_remove("PAIRJAIL_RUNTIME_DIR")
        .current_dir("/")
        .output()
        .expect("setpriv")
}

/// Polls `probe` every 50 ms until it gives `Ok`; after `secs` fails with
/// its last `Err`. The bound only catches hangs; it never times anything.
pub fn eventually<T>(secs: u64, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        match probe() {
            Ok(t) => return t,
            Err(why) => assert!(std::time::Instant::now() < deadline, "{why}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Asserts that `out` succeeded (with its output in the message) and
/// returns its stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{:?}: {}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// True as root; outside CI without root the test is skipped, loudly; in
/// CI without root it fails.
pub fn root_or_skip() -> bool {
    if is_root() {
        return true;
    }
    assert!(!in_ci(), "these tests need root in CI");
    eprintln!("SKIPPED: needs root (users)");
    false
}

/// Runs its closure when dropped: clean-up that happens however a test
/// ends (a share it started, a directory it made outside its world).
pub struct OnDrop<F: FnMut()>(pub F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}
