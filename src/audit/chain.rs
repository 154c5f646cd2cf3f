//! The hash chain: appending a line under a lock, and checking a file.
//!
//! Every line carries the SHA-256 of the line before it, so a line that
//! was edited, removed or moved breaks the chain where it was. What a
//! chain cannot show on its own is a rewrite of everything from the edit
//! on, or lines cut from the end: `verify` prints the chain's head (the
//! last line's hash) so it can be compared with a copy kept elsewhere
//! (the syslog/journald copy carries each line's hash).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use super::AuditError;
use super::event::{Event, Line, VERSION};

/// The `prev` of a file's first line.
pub const ANCHOR: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Hex SHA-256 of one line's bytes (without its newline).
pub fn hash(line: &[u8]) -> String {
    Sha256::digest(line)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Who and where, the same on every line a process writes.
#[derive(Debug, Clone)]
pub struct Origin {
    pub machine: String,
    pub host: String,
    pub session: String,
}

/// Opens (creating 0600) the log for appending. A symlink or a file that
/// is not the caller's is refused: the log is where the host said, and
/// only the host writes it.
fn open(path: &Path) -> Result<File, AuditError> {
    let io = |e| AuditError::Io(path.to_path_buf(), e);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::files::dir_700(dir).map_err(io)?;
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if !meta.is_file() || meta.uid() != nix::unistd::Uid::effective().as_raw() {
        return Err(AuditError::NotYours(path.to_path_buf()));
    }
    Ok(f)
}

/// The last line of `f` (without its newline) and how many lines the
/// file has; reads backwards from the end, so a long log costs little.
fn last_line(f: &mut File) -> std::io::Result<Option<Vec<u8>>> {
    let len = f.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(None);
    }
    let mut end = len;
    let mut tail: Vec<u8> = Vec::new();
    // Skip the final newline, then collect until the one before it.
    let mut first = true;
    while end > 0 {
        let start = end.saturating_sub(4096);
        let mut chunk = vec![0u8; (end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut chunk)?;
        if first && chunk.last() == Some(&b'\n') {
            chunk.pop();
        }
        first = false;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            let mut line = chunk[i + 1..].to_vec();
            line.extend_from_slice(&tail);
            return Ok(Some(line));
        }
        chunk.extend_from_slice(&tail);
        tail = chunk;
        end = start;
    }
    Ok(Some(tail))
}

/// Appends one event to the log at `path`, chained to the line before
/// it; returns the line written (without its newline). Writers in other
/// processes (the broker, `invite add`) wait on the file's lock.
pub fn append(path: &Path, origin: &Origin, event: Event) -> Result<String, AuditError> {
    let (mut lines, done) = append_all(path, origin, std::slice::from_ref(&event));
    done?;
    lines.pop().ok_or_else(|| {
        AuditError::Io(
            path.to_path_buf(),
            std::io::Error::other("no line was written"),
        )
    })
}

/// Appends `events` in order under one lock, each chained to the one
/// before, then one flush to disk for all: a burst (a share's end, an
/// audience arriving) waits for the disk once, not once per line. The
/// lines that went in (without newlines), and what stopped the rest or
/// the flush.
pub fn append_all(
    path: &Path,
    origin: &Origin,
    events: &[Event],
) -> (Vec<String>, Result<(), AuditError>) {
    let mut lines = Vec::new();
    let done = append_into(path, origin, events, &mut lines);
    (lines, done)
}

fn append_into(
    path: &Path,
    origin: &Origin,
    events: &[Event],
    lines: &mut Vec<String>,
) -> Result<(), AuditError> {
    let io = |e| AuditError::Io(path.to_path_buf(), e);
    let f = open(path)?;
    let mut f =
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| io(std::io::Error::from(e)))?;
    let last = last_line(&mut f).map_err(io)?;
    // A last line cut short (a full disk, a crash) is ended first, so the
    // new line stays whole; `verify` names the damaged one.
    let mut len = f.seek(SeekFrom::End(0)).map_err(io)?;
    if len > 0 {
        let mut end = [0u8; 1];
        f.seek(SeekFrom::Start(len - 1)).map_err(io)?;
        f.read_exact(&mut end).map_err(io)?;
        if end[0] != b'\n' {
            f.write_all(b"\n").map_err(io)?;
            len += 1;
        }
    }
    let (mut prev, mut seq) = match &last {
        None => (ANCHOR.to_string(), 1),
        Some(bytes) => {
            // The next number follows the last line's; a last line that
            // is not ours (damaged) still gets chained to, and `verify`
            // names it.
            let seq = serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()
                .and_then(|v| v.get("seq").and_then(serde_json::Value::as_u64))
                .map_or(0, |s| s + 1);
            (hash(bytes), seq)
        }
    };
    for event in events {
        let line = Line {
            v: VERSION,
            seq,
            time: now_rfc3339(),
            machine: origin.machine.clone(),
            host: origin.host.clone(),
            session: origin.session.clone(),
            event: event.clone(),
            prev,
        };
        // Escaped as recordings are: a reviewer reads the log with `cat` or
        // `tail -f`, and a reason can quote a guest's bytes.
        let mut text = crate::json_line::escaped(&line).map_err(AuditError::Encode)?;
        text.push('\n');
        // One write per whole line (O_APPEND). A line the disk took only
        // part of (full: a pair guest can fill the disk from a shared
        // workspace) is cut off again under the lock, so no half line is
        // left for every later line to chain to (`verify` stopped at it,
        // and checked nothing after it, in every later share).
        if let Err(e) = f.write_all(text.as_bytes()) {
            let _ = f.set_len(len);
            return Err(io(e));
        }
        len += text.len() as u64;
        text.pop();
        prev = hash(text.as_bytes());
        seq += 1;
        lines.push(text);
    }
    // Then to disk: an audit line that was acknowledged is not lost with
    // the machine.
    f.sync_data().map_err(io)
}

/// Now, RFC 3339 in UTC with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Report {
    pub lines: u64,
    /// Hex SHA-256 of the last line: compare it with a copy kept elsewhere.
    pub head: Option<String>,
    /// The first problem, if any.
    pub problem: Option<Problem>,
    /// What the syslog copy says (`verify --syslog`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopyCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Problem {
    /// 1-based line number in the file.
    pub line: u64,
    pub what: String,
}

/// Checks the chain of a whole file; stops at the first problem.
/// `head`, if given, must be the last line's hash (lines cut from the end).
pub fn verify(r: impl Read, head: Option<&str>) -> std::io::Result<Report> {
    let mut prev_hash = ANCHOR.to_string();
    let mut prev_seq = 0u64;
    let mut n = 0u64;
    let mut reader = BufReader::new(r);
    let mut raw = Vec::new();
    let problem = |line, what: String| Problem { line, what };
    loop {
        raw.clear();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        n += 1;
        if raw.last() != Some(&b'\n') {
            return Ok(report(n, &prev_hash, Some(problem(n, "the line is cut short (no newline): the file was truncated or is being written".into()))));
        }
        raw.pop();
        let line: Line = match serde_json::from_slice(&raw) {
            Ok(l) => l,
            Err(e) => {
                return Ok(report(
                    n,
                    &prev_hash,
                    Some(problem(n, format!("not an audit line ({e}): changed"))),
                ));
            }
        };
        if line.seq != prev_seq + 1 {
            let what = if line.seq > prev_seq + 1 {
                format!(
                    "lines removed or moved here (seq jumps from {prev_seq} to {})",
                    line.seq
                )
            } else {
                format!(
                    "out of order (seq {} after {prev_seq}): lines were moved or copied",
                    line.seq
                )
            };
            return Ok(report(n, &prev_hash, Some(problem(n, what))));
        }
        if line.prev != prev_hash {
            // The seq numbers run on, so nothing was removed or moved
            // here: the line before this one is not what was written.
            let at = n.saturating_sub(1).max(1);
            let what = if n == 1 {
                "the first line does not start the chain (its prev is not the anchor): lines were removed from the start".to_string()
            } else {
                format!("changed after it was written (line {n} records a different hash for it)")
            };
            return Ok(report(n, &prev_hash, Some(problem(at, what))));
        }
        prev_hash = hash(&raw);
        prev_seq = line.seq;
    }
    let mut r = report(n, &prev_hash, None);
    // As `verify` prints it (`sha256:…`) or as syslog has it (`sha256=…`).
    let head = head.map(|h| {
        h.strip_prefix("sha256:")
            .or_else(|| h.strip_prefix("sha256="))
            .unwrap_or(h)
    });
    if let Some(h) = head
        && (n == 0 || !h.eq_ignore_ascii_case(&prev_hash))
    {
        r.problem = Some(problem(
            n,
            format!(
                "the last line's hash is {prev_hash}, not the head {h} kept elsewhere: the end was changed or cut"
            ),
        ));
    }
    Ok(r)
}

/// What a copy kept elsewhere (syslog) says of the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct CopyCheck {
    /// Lines of this log (its machine and host) the copy holds.
    pub checked: u64,
    /// The seq of each of them that the file does not hold as written.
    pub missing: Vec<u64>,
}

/// Checks a copy of the log's lines kept elsewhere (the text of a syslog
/// file or of `journalctl -t pairjail -o cat`: `sha256=HASH LINE`
/// anywhere on each of its lines) against the log: each line of this
/// log's machine and host in the copy must be in the file byte for byte.
/// A chain can be rewritten after an edit, and whoever can write the file
/// (the host's account) can also send syslog a new head, so comparing the
/// last head is not enough; the lines syslog had before stay there. A
/// copy line whose own hash does not match it is not one pairjail sent,
/// and is skipped.
pub fn check_copy(log: impl Read, copy: impl Read) -> std::io::Result<CopyCheck> {
    let mut held = std::collections::HashSet::new();
    let mut origin: Option<(String, String)> = None;
    for raw in BufReader::new(log).split(b'\n') {
        let raw = raw?;
        if origin.is_none()
            && let Ok(l) = serde_json::from_slice::<Line>(&raw)
        {
            origin = Some((l.machine, l.host));
        }
        held.insert(hash(&raw));
    }
    let mut found = CopyCheck {
        checked: 0,
        missing: Vec::new(),
    };
    let Some((machine, host)) = origin else {
        return Ok(found);
    };
    for raw in BufReader::new(copy).split(b'\n') {
        let raw = raw?;
        let text = String::from_utf8_lossy(&raw);
        let Some(at) = text.find("sha256=") else {
            continue;
        };
        let rest = &text[at + "sha256=".len()..];
        let (Some(h), Some(line)) = (rest.get(..64), rest.get(65..)) else {
            continue;
        };
        let line = line.trim_end_matches('\r');
        if !rest[64..].starts_with(' ') || !h.eq_ignore_ascii_case(&hash(line.as_bytes())) {
            continue;
        }
        let Ok(l) = serde_json::from_str::<Line>(line) else {
            continue;
        };
        if l.machine != machine || l.host != host {
            continue;
        }
        found.checked += 1;
        if !held.contains(&h.to_ascii_lowercase()) {
            found.missing.push(l.seq);
        }
    }
    Ok(found)
}

fn report(lines: u64, head: &str, problem: Option<Problem>) -> Report {
    Report {
        lines,
        head: (lines > 0).then(|| head.to_string()),
        problem,
        copy: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            machine: "m".into(),
            host: "alice".into(),
            session: "s".into(),
        }
    }

    fn sample(dir: &Path) -> (std::path::PathBuf, Vec<String>) {
        let p = dir.join("audit.jsonl");
        for g in ["bob", "carol", "dave", "erin"] {
            append(
                &p,
                &origin(),
                Event::Left {
                    guest: g.into(),
                    reason: "bye".into(),
                },
            )
            .expect("append");
        }
        let text = std::fs::read_to_string(&p).expect("read");
        (p, text.lines().map(String::from).collect())
    }

    fn check(lines: &[String]) -> Report {
        let text = lines.join("\n") + "\n";
        verify(text.as_bytes(), None).expect("verify")
    }

    #[test]
    fn untouched_passes_and_names_its_head() {
        let d = tempfile::tempdir().expect("tempdir");
        let (_, lines) = sample(d.path());
        let r = check(&lines);
        assert_eq!(r.problem, None);
        assert_eq!(r.lines, 4);
        assert_eq!(r.head.as_deref(), Some(hash(lines[3].as_bytes()).as_str()));
    }

    /// Found by a read-only attack hunt: whoever can write the log (the
    /// host's account) rewrote it, chain and all, and sent syslog one more
    /// line with the new head; `verify --head` said ok. The lines syslog
    /// already held are not in the rewritten file.
    #[test]
    fn a_rewritten_chain_is_told_by_the_lines_syslog_already_holds() {
        let d = tempfile::tempdir().expect("tempdir");
        let (_, lines) = sample(d.path());
        let copy: String = lines
            .iter()
            .map(|l| {
                format!(
                    "Dec  8 03:00:00 vm pairjail[42]: sha256={} {l}\n",
                    hash(l.as_bytes())
                )
            })
            .collect::<String>()
            + "Dec  8 03:00:01 vm sshd[7]: unrelated\n";
        let log = lines.join("\n") + "\n";
        let ok = check_copy(log.as_bytes(), copy.as_bytes()).expect("check");
        assert_eq!(
            ok,
            CopyCheck {
                checked: 4,
                missing: vec![]
            }
        );
        // Carol's line rewritten, every later line chained again.
        let rewritten = d.path().join("rewritten.jsonl");
        for (i, g) in ["bob", "carol (gone)", "dave", "erin"]
            .into_iter()
            .enumerate()
        {
            append(
                &rewritten,
                &origin(),
                Event::Left {
                    guest: if i == 1 { "carol".into() } else { g.into() },
                    reason: if i == 1 {
                        "never typed".into()
                    } else {
                        "bye".into()
                    },
                },
            )
            .expect("append");
        }
        let text = std::fs::read_to_string(&rewritten).expect("read");
        assert_eq!(verify(text.as_bytes(), None).expect("verify").problem, None);
        let told = check_copy(text.as_bytes(), copy.as_bytes()).expect("check");
        // Every line differs (their times differ too); at least carol's.
        assert!(told.missing.contains(&2), "{told:?}");
        // A forged copy line (its hash is not its line's) is not counted.
        let forged = format!("pairjail[1]: sha256={} {}\n", "0".repeat(64), lines[0]);
        let none = check_copy(log.as_bytes(), forged.as_bytes()).expect("check");
        assert_eq!(none.checked, 0);
    }

    #[test]
    fn an_edit_a_removal_and_a_swap_are_each_named() {
        let d = tempfile::tempdir().expect("tempdir");
        let (_, lines) = sample(d.path());
        let mut edited = lines.clone();
        edited[1] = edited[1].replace("carol", "caro1");
        assert_eq!(check(&edited).problem.map(|p| p.line), Some(2));
        let mut removed = lines.clone();
        removed.remove(2);
        assert_eq!(check(&removed).problem.map(|p| p.line), Some(3));
        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        assert_eq!(check(&swapped).problem.map(|p| p.line), Some(2));
        let mut first_gone = lines.clone();
        first_gone.remove(0);
        assert_eq!(check(&first_gone).problem.map(|p| p.line), Some(1));
    }

    #[test]
    fn a_cut_end_is_caught_only_against_a_head_kept_elsewhere() {
        let d = tempfile::tempdir().expect("tempdir");
        let (_, lines) = sample(d.path());
        let head = hash(lines[3].as_bytes());
        let text = lines[..3].join("\n") + "\n";
        let r = verify(text.as_bytes(), Some(&head)).expect("verify");
        assert_eq!(r.problem.map(|p| p.line), Some(3));
    }

    #[test]
    fn a_line_cut_short_is_named_and_the_next_append_stays_whole() {
        let d = tempfile::tempdir().expect("tempdir");
        let (p, lines) = sample(d.path());
        let cut = lines.join("\n") + "\n" + &lines[3][..20];
        std::fs::write(&p, cut).expect("write");
        append(
            &p,
            &origin(),
            Event::InviteExpired {
                guest: "zed".into(),
            },
        )
        .expect("append");
        let text = std::fs::read_to_string(&p).expect("read");
        let last = text.lines().last().expect("a line");
        assert!(serde_json::from_str::<Line>(last).is_ok(), "{last}");
        let r = verify(text.as_bytes(), None).expect("verify");
        assert_eq!(r.problem.map(|p| p.line), Some(5));
    }

    #[test]
    fn an_emptied_file_fails_against_its_head() {
        let r = verify(&b""[..], Some("sha256:abc")).expect("verify");
        assert!(r.problem.is_some());
    }

    #[test]
    fn a_symlink_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let target = d.path().join("elsewhere");
        std::fs::write(&target, "").expect("write");
        let link = d.path().join("audit.jsonl");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let e = append(
            &link,
            &origin(),
            Event::InviteExpired {
                guest: "bob".into(),
            },
        );
        assert!(e.is_err(), "{e:?}");
    }
}
