use std::fmt;

use nix::errno::Errno;

/// A failed jail step, naming the call and errno, with a hint when the
/// errno usually means a kernel setting: `jail: unshare(CLONE_NEWUSER): EPERM — …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailError {
    pub call: String,
    pub errno: Option<Errno>,
    pub hint: Option<String>,
}

impl JailError {
    pub fn sys(call: impl Into<String>, errno: Errno) -> Self {
        let call = call.into();
        let hint = hint_for(&call, errno).map(str::to_string);
        JailError {
            call,
            errno: Some(errno),
            hint,
        }
    }

    /// Drops an empty hint (for messages that arrive already formatted).
    pub fn without_hint(mut self) -> Self {
        if self.hint.as_deref() == Some("") {
            self.hint = None;
        }
        self
    }

    pub fn msg(call: impl Into<String>, hint: impl Into<String>) -> Self {
        JailError {
            call: call.into(),
            errno: None,
            hint: Some(hint.into()),
        }
    }
}

impl fmt::Display for JailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "jail: {}", self.call)?;
        if let Some(e) = self.errno {
            write!(f, ": {e:?}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, " — {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for JailError {}

fn hint_for(call: &str, errno: Errno) -> Option<&'static str> {
    match (errno, call) {
        (Errno::EPERM, c) if c.contains("CLONE_NEWUSER") => Some(
            "user namespaces are disabled (sysctl kernel.unprivileged_userns_clone=0 or an AppArmor userns restriction?)",
        ),
        (Errno::ENOSPC, c) if c.contains("CLONE_NEW") => {
            Some("namespace limit reached (sysctl user.max_user_namespaces?)")
        }
        (Errno::EINVAL, c) if c.contains("CLONE_NEWUSER") => {
            Some("called from a multithreaded process; enter the jail before starting threads")
        }
        (Errno::EPERM, c) if c.starts_with("mount") => {
            Some("the user namespace lacks mount rights (is kernel.unprivileged_userns_clone 0?)")
        }
        (Errno::ENOENT, c) if c.starts_with("mount") => {
            Some("the source does not exist; mark the bind `optional = true` if that is expected")
        }
        (Errno::EPERM, c) if c.contains("uid_map") || c.contains("gid_map") => {
            Some("the id map is not allowed (only your own uid can be mapped without root)")
        }
        _ => None,
    }
}
