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

    /// The record the jail's child writes to its parent: errno (i32, 0 for
    /// none), whether a hint follows (u8), the call's length (u32), the
    /// call, the hint. The parent gets back the same value, not text to
    /// re-parse.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(self.errno.map_or(0, |e| e as i32).to_le_bytes());
        out.push(u8::from(self.hint.is_some()));
        out.extend((self.call.len() as u32).to_le_bytes());
        out.extend(self.call.as_bytes());
        out.extend(self.hint.as_deref().unwrap_or("").as_bytes());
        out
    }

    /// The inverse of [`encode`](JailError::encode); a record cut short
    /// (the child died mid-write) still says what arrived.
    pub fn decode(bytes: &[u8]) -> JailError {
        let broken = || JailError::msg("setup", "the jail's report was cut short");
        if bytes.len() < 9 {
            return broken();
        }
        let errno = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let has_hint = bytes[4] == 1;
        let len = u32::from_le_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize;
        let Some(call) = bytes.get(9..9 + len) else {
            return broken();
        };
        let hint = &bytes[9 + len..];
        JailError {
            call: String::from_utf8_lossy(call).into_owned(),
            errno: (errno != 0).then(|| Errno::from_raw(errno)),
            hint: has_hint.then(|| String::from_utf8_lossy(hint).into_owned()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_childs_record_comes_back_as_the_same_error() {
        for e in [
            JailError::sys("unshare(CLONE_NEWUSER)", Errno::EPERM),
            JailError::sys("mount /x", Errno::ENOENT),
            JailError::msg("landlock", "ABI 3 < 6 — needs Linux 6.12"),
            JailError {
                call: "bare".into(),
                errno: None,
                hint: None,
            },
        ] {
            assert_eq!(JailError::decode(&e.encode()), e);
        }
        let cut = JailError::sys("x", Errno::EPERM).encode();
        assert_eq!(JailError::decode(&cut[..7]).call, "setup");
    }
}
