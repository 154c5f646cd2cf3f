//! The Unix sockets bound to a path in this network namespace
//! (`/proc/net/unix`): what answers a `connect` to a file.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum UnixSocketsError {
    #[error("cannot read /proc/net/unix: {0}")]
    Read(#[from] std::io::Error),
}

/// The paths of the sockets bound in this network namespace.
pub fn bound() -> Result<Vec<PathBuf>, UnixSocketsError> {
    let table = std::fs::read("/proc/net/unix")?;
    Ok(parse(&table))
}

/// The absolute paths in a `/proc/net/unix` table: the eighth field to
/// the end of its line (a path may hold spaces). Abstract names (`@…`)
/// are not files; a relative path was bound from a directory the table
/// does not say.
pub fn parse(table: &[u8]) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    table
        .split(|b| *b == b'\n')
        .skip(1)
        .filter_map(|line| {
            let mut rest = line;
            for _ in 0..7 {
                let start = rest.iter().position(|b| *b != b' ')?;
                rest = &rest[start..];
                let end = rest.iter().position(|b| *b == b' ')?;
                rest = &rest[end..];
            }
            let path = rest.strip_prefix(b" ")?;
            path.starts_with(b"/")
                .then(|| PathBuf::from(std::ffi::OsStr::from_bytes(path)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_paths_are_read_spaces_and_all() {
        let table = b"Num       RefCount Protocol Flags    Type St Inode Path\n\
0000000000000000: 00000002 00000000 00010000 0001 01  2045 /run/x y/tmux.sock\n\
0000000000000000: 00000002 00000000 00010000 0001 01 123456 @abstract\n\
0000000000000000: 00000002 00000000 00000000 0001 03 17\n\
0000000000000000: 00000002 00000000 00010000 0001 01 99 relative.sock\n\
0000000000000000: 00000002 00000000 00010000 0005 01 1234567 /tmp/agent\n";
        assert_eq!(
            parse(table),
            [
                PathBuf::from("/run/x y/tmux.sock"),
                PathBuf::from("/tmp/agent")
            ]
        );
    }
}
