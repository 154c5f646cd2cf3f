//! The managed block in a user's authorized_keys (no-root mode). Every
//! byte outside the block is preserved exactly: comments, odd spacing, a
//! last line without a newline. Writes are atomic (temp file in the same
//! directory, fsync, rename, same mode), serialized by a lock file, and
//! refused for a symlink or a file owned by someone else.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

pub const BEGIN: &str =
    "# >>> pairjail managed block (pairjail invite ... changes it; do not edit) >>>";
/// Used instead of BEGIN when the file did not end with a newline, so that
/// removing the block also removes the newline pairjail added.
pub const BEGIN_NL: &str =
    "# >>> pairjail managed block (pairjail added the newline before this line) >>>";
pub const END: &str = "# <<< pairjail managed block <<<";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub before: Vec<u8>,
    pub lines: Vec<String>,
    pub after: Vec<u8>,
}

fn line_starts(content: &[u8]) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0).chain(
        content
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1),
    )
}

fn line_at(content: &[u8], start: usize) -> &[u8] {
    let end = content[start..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(content.len(), |p| start + p);
    &content[start..end]
}

/// A line as the block's reader sees it: without the CR of a file an
/// editor or tool turned into CRLF (the block is still ours, and its lines
/// are read the same).
fn without_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Finds the block. A file with no block is all `before`.
pub fn split(content: &[u8]) -> Result<Split, String> {
    let begin = line_starts(content).filter(|&s| s < content.len()).find(|&s| {
        matches!(without_cr(line_at(content, s)), l if l == BEGIN.as_bytes() || l == BEGIN_NL.as_bytes())
    });
    let Some(begin) = begin else {
        return Ok(Split {
            before: content.to_vec(),
            lines: vec![],
            after: vec![],
        });
    };
    let added_nl = without_cr(line_at(content, begin)) == BEGIN_NL.as_bytes();
    let body_start = (begin + line_at(content, begin).len() + 1).min(content.len());
    let mut lines = Vec::new();
    let mut at = body_start;
    loop {
        if at >= content.len() {
            return Err(
                "authorized_keys has a pairjail begin marker without an end marker; fix it by hand"
                    .into(),
            );
        }
        let raw = line_at(content, at);
        let l = without_cr(raw);
        if l == END.as_bytes() {
            break;
        }
        lines.push(String::from_utf8_lossy(l).into_owned());
        at += raw.len() + 1;
    }
    let after_start = (at + line_at(content, at).len() + 1).min(content.len());
    let mut before = content[..begin].to_vec();
    if added_nl && before.last() == Some(&b'\n') {
        before.pop();
    }
    Ok(Split {
        before,
        lines,
        after: content[after_start..].to_vec(),
    })
}

/// Puts the block back (or leaves it out when `lines` is empty).
pub fn join(s: &Split) -> Vec<u8> {
    let mut out = s.before.clone();
    if !s.lines.is_empty() {
        let needs_nl = !out.is_empty() && out.last() != Some(&b'\n');
        if needs_nl {
            out.push(b'\n');
        }
        out.extend_from_slice(if needs_nl { BEGIN_NL } else { BEGIN }.as_bytes());
        out.push(b'\n');
        for l in &s.lines {
            out.extend_from_slice(l.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(END.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(&s.after);
    out
}

/// Changes the block's lines with `f`, atomically and under a lock.
pub fn update(path: &Path, f: impl FnOnce(Vec<String>) -> Vec<String>) -> Result<(), String> {
    let dir = path
        .parent()
        .ok_or("authorized_keys path has no directory")?
        .to_path_buf();
    if !dir.exists() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let lock_path = dir.join(".pairjail.lock");
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock {}: {e}", lock_path.display()))?;

    let me = nix::unistd::Uid::effective().as_raw();
    let (content, mode) = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(format!(
                "refusing to write {}: it is a symlink",
                path.display()
            ));
        }
        Ok(m) if m.uid() != me => {
            return Err(format!(
                "refusing to write {}: it is owned by uid {}, not {me}",
                path.display(),
                m.uid()
            ));
        }
        Ok(m) => (
            fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            m.permissions().mode() & 0o7777,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 0o600),
        Err(e) => return Err(format!("cannot stat {}: {e}", path.display())),
    };
    let mut s = split(&content)?;
    let new_lines = f(s.lines.clone());
    if new_lines == s.lines {
        return Ok(());
    }
    s.lines = new_lines;
    write_atomic(path, &join(&s), mode)
}

/// Reads the block's lines (no lock: renames make every read consistent).
pub fn read_lines(path: &Path) -> Result<Vec<String>, String> {
    match fs::read(path) {
        Ok(c) => Ok(split(&c)?.lines),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    crate::files::write_atomic(path, bytes, mode).map_err(|e| {
        format!(
            "cannot write {}: {e} (the file was left unchanged)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(original: &[u8]) {
        let mut s = split(original).unwrap();
        assert!(s.lines.is_empty());
        s.lines = vec!["restrict ssh-ed25519 AAAA x".into()];
        let with = join(&s);
        let mut back = split(&with).unwrap();
        assert_eq!(back.lines, s.lines);
        back.lines.clear();
        assert_eq!(join(&back), original, "not byte-identical after removal");
    }

    #[test]
    fn foreign_bytes_survive_add_and_remove() {
        roundtrip(b"");
        roundtrip(b"ssh-ed25519 AAAA me\n");
        roundtrip(
            b"# comment\n\n  ssh-rsa   AAAA   odd  spacing\t\nssh-ed25519 AAAA no-newline-at-end",
        );
        roundtrip(b"\n\n\n");
        roundtrip(b"\r\nwindows line\r\n");
    }

    #[test]
    fn a_block_in_the_middle_stays_in_place() {
        let text = format!("a\n{BEGIN}\nold\n{END}\nb\n");
        let mut s = split(text.as_bytes()).unwrap();
        assert_eq!(s.lines, ["old"]);
        assert_eq!(s.before, b"a\n");
        assert_eq!(s.after, b"b\n");
        s.lines = vec!["new".into()];
        assert_eq!(join(&s), format!("a\n{BEGIN}\nnew\n{END}\nb\n").as_bytes());
    }

    /// An editor or tool that turned the file into CRLF leaves the block
    /// ours: not found, its old lines would stay as someone else's for
    /// good, and sshd would take them before a later invite of their keys.
    #[test]
    fn a_block_turned_into_crlf_is_still_found_and_rewritten() {
        let text = format!("a\r\n{BEGIN}\r\nold\r\n{END}\r\nb\r\n");
        let mut s = split(text.as_bytes()).unwrap();
        assert_eq!(s.lines, ["old"]);
        assert_eq!(s.before, b"a\r\n");
        assert_eq!(s.after, b"b\r\n");
        s.lines = vec!["new".into()];
        assert_eq!(
            join(&s),
            format!("a\r\n{BEGIN}\nnew\n{END}\nb\r\n").as_bytes()
        );
        s.lines.clear();
        assert_eq!(join(&s), b"a\r\nb\r\n");
    }

    #[test]
    fn an_unterminated_block_is_an_error() {
        assert!(split(format!("a\n{BEGIN}\nx\n").as_bytes()).is_err());
    }
}
