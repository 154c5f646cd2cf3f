//! A session recording: asciicast v2 (what `asciinema play` 2.x and 3.x
//! and asciinema-player all read), plus a side file that says which guest
//! typed each input event.
//!
//! v2, not v3: asciinema 2.x (Debian's) cannot read v3, and v3 has no
//! more room for attribution than v2 — its input events carry no author
//! either. So the cast holds `o` (output), `i` (guest input), `m` (join,
//! leave and mode markers) and `r` (resize) events; `NAME.inputs.jsonl`
//! holds, for every `i` event, the same timestamp and the guest's name.
//!
//! The size stays bounded under a flood: every byte written (both files)
//! spends from a token bucket (`rate` bytes a second, at most `burst`
//! saved up). Output that finds the bucket empty is dropped; when the
//! bucket has refilled halfway, a marker says how much was skipped and the
//! broker asks tmux to redraw the recording client, so replay is whole
//! again from there. A recording is therefore at most
//! `burst + rate × seconds` bytes (markers, which are never dropped, may
//! overdraw it by one line each), and never more than `max_size`: there
//! it stops with a last marker.
//!
//! The files are written by a thread of their own ([`Disk`]): a disk that
//! stalls (a hung network home, a frozen filesystem) holds up the
//! recording, never the broker, whose one thread copies every guest's
//! screen. While the disk is behind, output is skipped as over the budget
//! (the marker says the disk did not keep up) and guests' input waits.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("recording {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("cannot encode a recording event: {0}")]
    Encode(serde_json::Error),
    #[error(
        "recording {0}: the disk did not take its last {1} bytes within {secs} s",
        secs = FINISH.as_secs()
    )]
    Behind(PathBuf, usize),
    #[error(
        "recording {0}: the disk has not kept up for {1} s ({2} bytes waiting): the recording stops"
    )]
    Stalled(PathBuf, u64, usize),
}

/// How far the disk may fall behind before output is skipped and guests'
/// input waits: more than a burst, so a disk that keeps up loses nothing.
/// Four times as much (markers and resizes still queue) stops the
/// recording at once: memory stays bounded however long the disk hangs.
const BEHIND: usize = 4 * 1024 * 1024;
/// How long the end of a recording waits for the disk (inside `stop`'s
/// wait, with the audit log's).
const FINISH: Duration = Duration::from_secs(3);

/// The recording's two files, written in order by a thread of their own.
struct Disk {
    path: PathBuf,
    lines: Option<mpsc::Sender<(Target, String)>>,
    /// Bytes handed to the thread and not yet written.
    queued: Arc<AtomicUsize>,
    /// The first write that failed; nothing is written after it.
    failed: Arc<Mutex<Option<RecordError>>>,
    /// Told when the thread has written everything; None once waited for.
    done_waiting: Option<mpsc::Receiver<()>>,
    /// Since when it has been more than [`BEHIND`] behind.
    behind_since: Option<Instant>,
}

#[derive(Clone, Copy)]
enum Target {
    Cast = 0,
    Inputs = 1,
}

impl Disk {
    fn start(path: PathBuf, cast: File, inputs: File) -> Result<Disk, RecordError> {
        let (lines, to_write) = mpsc::channel::<(Target, String)>();
        let (finished, done) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Mutex::new(None));
        let lengths = [&cast, &inputs].map(|f| f.metadata().map(|m| m.len()));
        let [Ok(cast_len), Ok(inputs_len)] = lengths else {
            return Err(RecordError::Io(
                path.clone(),
                std::io::Error::other("cannot read the recording's length"),
            ));
        };
        let mut files = [
            (cast, path.clone(), cast_len),
            (inputs, inputs_path(&path), inputs_len),
        ];
        let (q, f) = (queued.clone(), failed.clone());
        std::thread::Builder::new()
            .name("recording".into())
            .spawn(move || {
                let mut broken = false;
                for (to, line) in to_write {
                    let (file, p, len) = &mut files[to as usize];
                    if !broken {
                        match file.write_all(line.as_bytes()) {
                            Ok(()) => *len += line.len() as u64,
                            Err(e) => {
                                // A line the disk took only part of (full)
                                // is cut off: the file ends whole and
                                // replays to its last event.
                                let _ = file.set_len(*len);
                                broken = true;
                                *f.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(RecordError::Io(p.clone(), e));
                            }
                        }
                    }
                    q.fetch_sub(line.len(), Ordering::Relaxed);
                }
                let _ = finished.send(());
            })
            .map_err(|e| RecordError::Io(path.clone(), e))?;
        Ok(Disk {
            path,
            lines: Some(lines),
            queued,
            failed,
            done_waiting: Some(done),
            behind_since: None,
        })
    }

    /// Is the disk more than [`BEHIND`] behind? An error once it has been
    /// for `stall`, or is four times that far behind.
    fn behind(&mut self, stall: Duration) -> Result<bool, RecordError> {
        let queued = self.queued();
        if queued <= BEHIND {
            self.behind_since = None;
            return Ok(false);
        }
        let since = *self.behind_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= stall || queued > 4 * BEHIND {
            return Err(RecordError::Stalled(
                self.path.clone(),
                since.elapsed().as_secs(),
                queued,
            ));
        }
        Ok(true)
    }

    fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    fn failure(&self) -> Result<(), RecordError> {
        match self.failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Hands a line to the thread; the last write's failure, if any.
    fn put(&self, to: Target, line: String) -> Result<(), RecordError> {
        self.failure()?;
        let gone = || {
            RecordError::Io(
                self.path.clone(),
                std::io::Error::other("the recording's writer ended"),
            )
        };
        let lines = self.lines.as_ref().ok_or_else(gone)?;
        let n = line.len();
        self.queued.fetch_add(n, Ordering::Relaxed);
        lines.send((to, line)).map_err(|_| gone())
    }

    /// No more lines: waits for the last ones to be written, at most
    /// [`FINISH`].
    fn finish(&mut self) -> Result<(), RecordError> {
        self.lines = None;
        let Some(done) = self.done_waiting.take() else {
            return self.failure();
        };
        match done.recv_timeout(FINISH) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(RecordError::Behind(self.path.clone(), self.queued()))
            }
            _ => self.failure(),
        }
    }
}

/// How big a recording may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes a second, sustained.
    pub rate: u64,
    /// Bytes that may be written at once after a quiet spell.
    pub burst: u64,
    /// The whole recording (both files); then it stops.
    pub max_size: u64,
    /// Guests' input has its own bucket, never dropped: over it, the
    /// broker holds the guest's keys back until they can be recorded (a
    /// big paste slows down; an output flood never blocks a guest's
    /// Ctrl-C).
    pub input_rate: u64,
    pub input_burst: u64,
    /// A disk more than [`BEHIND`] behind for this long stops the
    /// recording: guests' keys wait for it, and would wait forever on a
    /// disk that hung.
    pub stall: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            rate: 64 * 1024,
            burst: 1024 * 1024,
            max_size: 1024 * 1024 * 1024,
            input_rate: 16 * 1024,
            input_burst: 256 * 1024,
            stall: Duration::from_secs(10),
        }
    }
}

/// What became of a chunk of output.
#[derive(Debug, PartialEq, Eq)]
pub enum Wrote {
    Written,
    /// Dropped: over the budget.
    Skipped,
    /// Written after a skip: the recording client should be redrawn.
    Resumed,
    /// The recording reached `max_size` and ended now (the reason).
    Stopped(String),
    /// The recording had already ended.
    Ended,
    /// Not written yet: over the input budget; offer it again later.
    Later,
}

pub struct Cast {
    path: PathBuf,
    disk: Disk,
    start: Instant,
    budget: Budget,
    tokens: f64,
    refilled: Instant,
    in_tokens: f64,
    in_refilled: Instant,
    written: u64,
    skipped: u64,
    skipping: bool,
    /// Some of what was skipped was for the disk, not the budget.
    disk_behind: bool,
    ended: bool,
    /// The start of a UTF-8 sequence cut by the end of the last read.
    carry: Vec<u8>,
    /// The same for each guest's input (a character cut between two of
    /// its frames).
    in_carry: std::collections::HashMap<String, Vec<u8>>,
}

fn create(path: &Path) -> Result<File, RecordError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| RecordError::Io(path.to_path_buf(), e))
}

/// Room kept below `max_size` for the terminal reset that ends every
/// recording (its event line, escaped, is about 300 bytes).
const RESET_ROOM: u64 = 512;

/// The side file of a cast: `x.cast` → `x.inputs.jsonl`.
pub fn inputs_path(cast: &Path) -> PathBuf {
    cast.with_extension("inputs.jsonl")
}

/// The default directory: `$XDG_STATE_HOME/pairjail/recordings`.
pub fn default_dir() -> Option<PathBuf> {
    let env = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("XDG_STATE_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| env("HOME").map(|h| h.join(".local/state")))
        .map(|s| s.join("pairjail/recordings"))
}

/// Where an unfinished UTF-8 sequence starts at the end of `b` (or
/// `b.len()` when none is).
fn unfinished(b: &[u8]) -> usize {
    for back in 1..=b.len().min(3) {
        let i = b.len() - back;
        match b[i] {
            c if c < 0x80 => return b.len(),
            c if c >= 0xC0 => {
                let need = if c >= 0xF0 {
                    4
                } else if c >= 0xE0 {
                    3
                } else {
                    2
                };
                return if need > back { i } else { b.len() };
            }
            _ => {}
        }
    }
    b.len()
}

/// Text of `bytes` with a UTF-8 sequence cut at the end held back for
/// the next call; invalid bytes become U+FFFD.
fn utf8(carry: &mut Vec<u8>, bytes: &[u8]) -> String {
    carry.extend_from_slice(bytes);
    let cut = unfinished(carry);
    let text = String::from_utf8_lossy(&carry[..cut]).into_owned();
    carry.drain(..cut);
    text
}

impl Cast {
    /// Creates `DIR/SESSION-TIME.cast` (0600, never over another file)
    /// and its side file, and writes the header.
    pub fn create(
        dir: &Path,
        session: &str,
        title: &str,
        size: (u16, u16),
        term: &str,
        budget: Budget,
    ) -> Result<Cast, RecordError> {
        crate::files::dir_700(dir).map_err(|e| RecordError::Io(dir.to_path_buf(), e))?;
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .replace([':', '-'], "");
        let taken = |r: &Result<File, RecordError>| matches!(r, Err(RecordError::Io(_, e)) if e.kind() == std::io::ErrorKind::AlreadyExists);
        let mut n = 0;
        loop {
            let (path, cast) = if n <= 100 {
                let name = if n == 0 {
                    format!("{session}-{stamp}.cast")
                } else {
                    format!("{session}-{stamp}-{n}.cast")
                };
                let path = dir.join(name);
                let made = create(&path);
                if taken(&made) {
                    n += 1;
                    continue;
                }
                (path, made?)
            } else if n <= 110 {
                // Every name this second was taken: in a shared directory
                // (sticky, like /tmp) another user can make them first. A
                // name nobody can guess instead.
                let io = |e: std::io::Error| RecordError::Io(dir.to_path_buf(), e);
                let (file, path) = tempfile::Builder::new()
                    .prefix(&format!("{session}-{stamp}-"))
                    .suffix(".cast")
                    .rand_bytes(8)
                    .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
                    .tempfile_in(dir)
                    .map_err(io)?
                    .keep()
                    .map_err(|e| io(e.error))?;
                (path, file)
            } else {
                return Err(RecordError::Io(
                    dir.to_path_buf(),
                    std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "every name for a recording is taken",
                    ),
                ));
            };
            // Its side file too, or neither: an empty cast is never left.
            let inputs = create(&inputs_path(&path));
            if inputs.is_err() {
                let _ = std::fs::remove_file(&path);
            }
            if taken(&inputs) {
                n += 1;
                continue;
            }
            return Cast::over(path, cast, inputs?, title, size, term, budget);
        }
    }

    /// A recording into `cast` and `inputs` (files just created), starting
    /// with its header.
    fn over(
        path: PathBuf,
        cast: File,
        inputs: File,
        title: &str,
        size: (u16, u16),
        term: &str,
        budget: Budget,
    ) -> Result<Cast, RecordError> {
        let header = serde_json::json!({
            "version": 2,
            "width": size.0,
            "height": size.1,
            "timestamp": crate::clock::now(),
            "title": title,
            "env": {"TERM": term, "SHELL": "/bin/sh"},
        });
        let mut c = Cast {
            disk: Disk::start(path.clone(), cast, inputs)?,
            path,
            start: Instant::now(),
            tokens: budget.burst as f64,
            refilled: Instant::now(),
            in_tokens: budget.input_burst as f64,
            in_refilled: Instant::now(),
            budget,
            written: 0,
            skipped: 0,
            skipping: false,
            disk_behind: false,
            ended: false,
            carry: Vec::new(),
            in_carry: std::collections::HashMap::new(),
        };
        let text = header.to_string() + "\n";
        c.spend(text.len() as u64);
        c.put_cast(text)?;
        Ok(c)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far (both files).
    pub fn written(&self) -> u64 {
        self.written
    }

    fn time(&self) -> f64 {
        (self.start.elapsed().as_micros() as f64) / 1e6
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + dt * self.budget.rate as f64).min(self.budget.burst as f64);
    }

    /// Markers are never dropped, so they may overdraw the bucket; by no
    /// more than one burst, so a burst of markers cannot blind the
    /// recording for long.
    fn spend(&mut self, n: u64) {
        self.tokens = (self.tokens - n as f64).max(-(self.budget.burst as f64));
    }

    fn put_cast(&mut self, text: String) -> Result<(), RecordError> {
        self.written += text.len() as u64;
        self.disk.put(Target::Cast, text)
    }

    fn event(&self, code: &str, data: &str) -> Result<String, RecordError> {
        let mut s =
            crate::json_line::escaped(&(self.time(), code, data)).map_err(RecordError::Encode)?;
        s.push('\n');
        Ok(s)
    }

    /// Past `max_size` with `more` bytes: the recording ends here.
    fn over_max(&mut self, more: u64) -> Result<Option<String>, RecordError> {
        // Room is kept for the terminal reset that ends every recording.
        if self.written + more + RESET_ROOM <= self.budget.max_size {
            return Ok(None);
        }
        let why = format!(
            "the recording reached its size limit ({} bytes)",
            self.budget.max_size
        );
        self.put_reset()?;
        let last = self.event(
            "m",
            &format!("pairjail: {why}; nothing after this is recorded"),
        )?;
        self.put_cast(last)?;
        // Written by the thread as it can; only the share's end waits.
        self.ended = true;
        self.disk.lines = None;
        Ok(Some(why))
    }

    /// The terminal put back the way a shell expects it (modes, screen,
    /// character set), as the last output: whoever replays a recording
    /// cut anywhere gets their terminal back. Outside the budgets.
    fn put_reset(&mut self) -> Result<(), RecordError> {
        let text = String::from_utf8_lossy(crate::terminal::restore_sequence(false)).into_owned();
        let line = self.event("o", &text)?;
        self.put_cast(line)
    }

    /// Ends the recording (the share is over, its last events written):
    /// the terminal reset goes last.
    pub fn close(&mut self) -> Result<Wrote, RecordError> {
        if self.ended {
            // Ended by its size limit: its last lines are waited for here.
            if self.disk.done_waiting.is_some() {
                self.disk.finish()?;
            }
            return Ok(Wrote::Ended);
        }
        self.put_reset()?;
        self.ended = true;
        self.disk.finish()?;
        Ok(Wrote::Ended)
    }

    /// Session output, as the recording client got it.
    pub fn output(&mut self, bytes: &[u8]) -> Result<Wrote, RecordError> {
        if self.ended {
            return Ok(Wrote::Ended);
        }
        self.refill();
        if self.skipping {
            let resumed = self.try_resume()?;
            if !matches!(resumed, Wrote::Resumed | Wrote::Stopped(_)) {
                self.skipped += bytes.len() as u64;
            }
            return Ok(resumed);
        }
        let text = utf8(&mut self.carry, bytes);
        if text.is_empty() {
            return Ok(Wrote::Written);
        }
        let line = self.event("o", &text)?;
        let cost = line.len() as u64;
        let disk_behind = self.disk.behind(self.budget.stall)?;
        if self.tokens < cost as f64 || disk_behind {
            self.skipping = true;
            self.disk_behind |= disk_behind;
            self.skipped += bytes.len() as u64;
            self.carry.clear();
            return Ok(Wrote::Skipped);
        }
        if let Some(why) = self.over_max(cost)? {
            return Ok(Wrote::Stopped(why));
        }
        self.spend(cost);
        self.put_cast(line)?;
        Ok(Wrote::Written)
    }

    /// Enough saved up again to go on recording after a skip: room for a
    /// full redraw of a large screen.
    fn resume_at(&self) -> f64 {
        (self.budget.burst / 2).min(128 * 1024) as f64
    }

    /// After a skip, once the bucket has refilled: a marker that says how
    /// much was lost, and `Resumed` (the caller has tmux redraw). What
    /// tmux sends from here on continues a stream whose middle is gone,
    /// so the chunk at hand is dropped too; the redraw makes it whole.
    fn try_resume(&mut self) -> Result<Wrote, RecordError> {
        if self.tokens < self.resume_at() || self.disk.queued() > BEHIND / 2 {
            return Ok(Wrote::Skipped);
        }
        let why = if self.disk_behind {
            "the disk did not keep up".to_string()
        } else {
            format!("more than {} bytes a second", self.budget.rate)
        };
        let note = self.event(
            "m",
            &format!("pairjail: {} bytes were not recorded ({why})", self.skipped),
        )?;
        if let Some(why) = self.over_max(note.len() as u64)? {
            return Ok(Wrote::Stopped(why));
        }
        self.spend(note.len() as u64);
        self.put_cast(note)?;
        self.skipping = false;
        self.disk_behind = false;
        self.skipped = 0;
        self.carry.clear();
        Ok(Wrote::Resumed)
    }

    /// Called now and then while skipping, so a flood that stopped gets
    /// its redraw even if nothing else is printed.
    pub fn poll(&mut self) -> Result<Wrote, RecordError> {
        if self.ended {
            return Ok(Wrote::Ended);
        }
        if !self.skipping {
            return Ok(Wrote::Written);
        }
        self.disk.behind(self.budget.stall)?;
        self.refill();
        self.try_resume()
    }

    /// A guest's input: an `i` event in the cast and the guest's name at
    /// the same time in the side file. Never dropped: over the input
    /// budget it is `Later`, and the caller holds the keys back.
    pub fn input(&mut self, guest: &str, bytes: &[u8]) -> Result<Wrote, RecordError> {
        if self.ended {
            return Ok(Wrote::Ended);
        }
        let now = Instant::now();
        let dt = now.duration_since(self.in_refilled).as_secs_f64();
        self.in_refilled = now;
        let burst = self.budget.input_burst as f64;
        self.in_tokens = (self.in_tokens + dt * self.budget.input_rate as f64).min(burst);
        // The carry is the guest's only once these bytes are written: a
        // `Later` is retried with the same bytes.
        let mut carry = self.in_carry.get(guest).cloned().unwrap_or_default();
        let data = utf8(&mut carry, bytes);
        if data.is_empty() {
            self.in_carry.insert(guest.to_string(), carry);
            return Ok(Wrote::Written);
        }
        let t = self.time();
        let line = crate::json_line::escaped(&(t, "i", &data)).map_err(RecordError::Encode)? + "\n";
        let side = crate::json_line::escaped(
            &serde_json::json!({"time": t, "guest": guest, "data": data}),
        )
        .map_err(RecordError::Encode)?
            + "\n";
        let cost = (line.len() + side.len()) as u64;
        // A chunk bigger than the whole bucket goes when the bucket is full.
        // A disk that is behind takes no more keys until it catches up.
        if self.disk.behind(self.budget.stall)? || self.in_tokens < (cost as f64).min(burst) {
            return Ok(Wrote::Later);
        }
        if let Some(why) = self.over_max(cost)? {
            return Ok(Wrote::Stopped(why));
        }
        self.in_tokens -= cost as f64;
        self.put_cast(line)?;
        self.written += side.len() as u64;
        self.disk.put(Target::Inputs, side)?;
        self.in_carry.insert(guest.to_string(), carry);
        Ok(Wrote::Written)
    }

    /// A marker (join, leave, mode change): always written while the
    /// recording lasts.
    pub fn marker(&mut self, text: &str) -> Result<Wrote, RecordError> {
        if self.ended {
            return Ok(Wrote::Ended);
        }
        self.disk.behind(self.budget.stall)?;
        self.refill();
        let line = self.event("m", text)?;
        if let Some(why) = self.over_max(line.len() as u64)? {
            return Ok(Wrote::Stopped(why));
        }
        self.spend(line.len() as u64);
        self.put_cast(line)?;
        Ok(Wrote::Written)
    }

    /// The recording client's new size.
    pub fn resize(&mut self, cols: u16, rows: u16) -> Result<Wrote, RecordError> {
        if self.ended {
            return Ok(Wrote::Ended);
        }
        self.disk.behind(self.budget.stall)?;
        self.refill();
        let line = self.event("r", &format!("{cols}x{rows}"))?;
        if let Some(why) = self.over_max(line.len() as u64)? {
            return Ok(Wrote::Stopped(why));
        }
        self.spend(line.len() as u64);
        self.put_cast(line)?;
        Ok(Wrote::Written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_utf8_sequence_waits_for_its_end() {
        let mut carry = vec![];
        let s = "é→x".as_bytes();
        let mut out = String::new();
        for b in s {
            out.push_str(&utf8(&mut carry, std::slice::from_ref(b)));
        }
        assert_eq!(out, "é→x");
        assert_eq!(utf8(&mut carry, b"a\xffb"), "a\u{fffd}b");
    }

    /// In a shared directory (sticky, like /tmp) any local user can make
    /// files under the names a recording would take next: that made the
    /// share fail to start recording, leaving an empty cast behind.
    #[test]
    fn names_taken_in_a_shared_directory_never_stop_a_recording() {
        let d = tempfile::tempdir().expect("tempdir");
        let now = std::time::SystemTime::now();
        for ahead in 0..3 {
            let stamp = humantime::format_rfc3339_seconds(now + Duration::from_secs(ahead))
                .to_string()
                .replace([':', '-'], "");
            for n in 0..=100 {
                let name = if n == 0 {
                    format!("s-{stamp}.inputs.jsonl")
                } else {
                    format!("s-{stamp}-{n}.inputs.jsonl")
                };
                std::fs::write(d.path().join(name), "theirs").expect("plant");
            }
        }
        let mut c = Cast::create(d.path(), "s", "t", (80, 24), "xterm", Budget::default())
            .expect("a recording starts");
        c.close().expect("close");
        let casts: Vec<_> = std::fs::read_dir(d.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".cast"))
            .collect();
        assert_eq!(casts.len(), 1, "casts left: {casts:?}");
        let side = inputs_path(&casts[0].path());
        assert_ne!(std::fs::read_to_string(&side).expect("side file"), "theirs");
        // Under a name nobody could take first (`s-STAMP-RANDOM`), not a
        // stamped one (`s-STAMP` or `s-STAMP-N`): every one was taken.
        let name = casts[0].file_name().to_string_lossy().into_owned();
        let tail = name
            .trim_end_matches(".cast")
            .split('-')
            .nth(2)
            .unwrap_or("");
        assert!(
            !tail.is_empty() && tail.parse::<u32>().is_err(),
            "{name} is a name others could take"
        );
    }

    #[test]
    fn what_a_guest_typed_is_stored_with_nothing_that_rewrites_the_review() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut c =
            Cast::create(d.path(), "s", "t", (80, 24), "xterm", Budget::default()).expect("create");
        let typed = "rm -rf ~\u{9b}2K\u{202e}txt.exe\u{200b}";
        c.input("bob", typed.as_bytes()).expect("input");
        c.close().expect("close");
        for path in [c.path().to_path_buf(), inputs_path(c.path())] {
            let body = std::fs::read_to_string(&path).expect("read");
            assert!(
                !body.chars().any(crate::json_line::hides_text),
                "{}: {body:?}",
                path.display()
            );
            let found = body
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
                .any(|e| e.get("data").unwrap_or(&e[2]) == typed);
            assert!(found, "{}: {body}", path.display());
        }
    }

    #[test]
    fn a_character_a_guest_typed_across_two_frames_is_recorded_whole() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut c =
            Cast::create(d.path(), "s", "t", (80, 24), "xterm", Budget::default()).expect("create");
        let euro = "€".as_bytes();
        c.input("bob", &euro[..1]).expect("input");
        c.input("ann", b"x").expect("input");
        c.input("bob", &euro[1..]).expect("input");
        c.close().expect("close");
        let side = std::fs::read_to_string(inputs_path(c.path())).expect("read");
        let typed: Vec<(String, String)> = side
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
            .map(|e| (e["guest"].to_string(), e["data"].to_string()))
            .collect();
        assert_eq!(
            typed,
            [
                ("\"ann\"".into(), "\"x\"".into()),
                ("\"bob\"".into(), "\"€\"".into())
            ]
        );
    }

    #[test]
    fn a_recording_ends_with_the_terminal_put_back() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut c =
            Cast::create(d.path(), "s", "t", (80, 24), "xterm", Budget::default()).expect("create");
        c.output(b"\x1b[?1000h").expect("output");
        c.close().expect("close");
        assert!(matches!(c.output(b"more"), Ok(Wrote::Ended)));
        let body = std::fs::read_to_string(c.path()).expect("read");
        let last: serde_json::Value =
            serde_json::from_str(body.lines().last().expect("a line")).expect("json");
        assert_eq!(last[1], "o");
        assert!(
            last[2]
                .as_str()
                .is_some_and(|t| t.contains("\u{1b}[?1000l")),
            "{last}"
        );
    }

    #[test]
    fn a_flood_stays_within_the_budget() {
        let d = tempfile::tempdir().expect("tempdir");
        let budget = Budget {
            rate: 1000,
            burst: 4000,
            max_size: 1 << 30,
            ..Budget::default()
        };
        let mut c = Cast::create(d.path(), "s", "t", (80, 24), "xterm", budget).expect("create");
        let chunk = vec![b'y'; 512];
        let t = Instant::now();
        let mut skipped = 0;
        while t.elapsed().as_millis() < 300 {
            if c.output(&chunk).expect("output") == Wrote::Skipped {
                skipped += 1;
            }
        }
        let bound = budget.burst as f64 + budget.rate as f64 * t.elapsed().as_secs_f64() + 200.0;
        assert!(skipped > 0);
        assert!((c.written() as f64) <= bound, "{} > {bound}", c.written());
    }

    #[test]
    fn input_over_its_budget_waits_and_is_never_dropped() {
        let d = tempfile::tempdir().expect("tempdir");
        let budget = Budget {
            input_rate: 1000,
            input_burst: 2000,
            ..Budget::default()
        };
        let mut c = Cast::create(d.path(), "s", "t", (80, 24), "xterm", budget).expect("create");
        let mut later = 0;
        let mut written = 0;
        while written < 20 {
            match c.input("bob", &[b'x'; 200]).expect("input") {
                Wrote::Written => written += 1,
                Wrote::Later => {
                    later += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                w => panic!("{w:?}"),
            }
        }
        assert!(later > 0, "the input budget never held anything back");
        c.close().expect("close");
        let side = std::fs::read_to_string(inputs_path(c.path())).expect("side file");
        assert_eq!(side.lines().count(), 20);
    }

    /// A recording whose cast is a pipe nobody reads yet (a disk that
    /// stops), with no output budget to speak of.
    fn cast_on_a_pipe(dir: &Path, stall: Duration) -> (Cast, std::io::PipeReader) {
        let (reader, writer) = std::io::pipe().expect("pipe");
        let cast = File::from(std::os::fd::OwnedFd::from(writer));
        let inputs = create(&dir.join("i")).expect("inputs");
        let budget = Budget {
            rate: 1 << 30,
            burst: 1 << 30,
            stall,
            ..Budget::default()
        };
        let c =
            Cast::over(dir.join("c"), cast, inputs, "t", (80, 24), "xterm", budget).expect("cast");
        (c, reader)
    }

    /// A disk that stops taking writes (a hung network home) must not
    /// hold up whoever records: here the cast is a pipe nobody reads.
    #[test]
    fn a_disk_that_stops_holds_up_the_recording_never_its_caller() {
        let d = tempfile::tempdir().expect("tempdir");
        let (mut c, mut reader) = cast_on_a_pipe(d.path(), Budget::default().stall);
        let chunk = vec![b'y'; 64 * 1024];
        let mut skipped = false;
        // Each call returns although nothing is written past the pipe's
        // 64 KiB; past 4 MiB behind, output is skipped and keys wait.
        for _ in 0..100 {
            skipped |= c.output(&chunk).expect("output") == Wrote::Skipped;
        }
        assert!(skipped, "output was never skipped for the disk");
        assert_eq!(c.input("bob", b"x").expect("input"), Wrote::Later);
        // The disk comes back: the recording goes on, and says what it
        // lost and why.
        let drain = std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = std::io::Read::read_to_end(&mut reader, &mut all);
            all
        });
        let resumed = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            c.poll().expect("poll") == Wrote::Resumed
        });
        assert!(resumed, "the recording never resumed");
        assert_eq!(c.input("bob", b"x").expect("input"), Wrote::Written);
        c.close().expect("close");
        drop(c);
        let all = String::from_utf8(drain.join().expect("drain")).expect("utf-8");
        assert!(
            all.contains("bytes were not recorded (the disk did not keep up)"),
            "{}",
            &all[all.len().saturating_sub(500)..]
        );
    }

    /// A disk that hangs for good would hold guests' keys back forever:
    /// past `stall` (or four times [`BEHIND`]) the recording stops, and
    /// says why.
    #[test]
    fn a_disk_that_hangs_stops_the_recording() {
        let d = tempfile::tempdir().expect("tempdir");
        let (mut c, reader) = cast_on_a_pipe(d.path(), Duration::from_millis(500));
        let chunk = vec![b'y'; 64 * 1024];
        let mut tries = 0;
        while c.output(&chunk).expect("output") != Wrote::Skipped {
            tries += 1;
            assert!(tries < 1000, "output was never skipped for the disk");
        }
        // Held back, unless this thread was slow enough for the stall.
        assert!(
            matches!(
                c.input("bob", b"x"),
                Ok(Wrote::Later) | Err(RecordError::Stalled(..))
            ),
            "keys went on while the disk was behind"
        );
        std::thread::sleep(Duration::from_millis(600));
        let stopped = c.input("bob", b"x");
        assert!(
            matches!(stopped, Err(RecordError::Stalled(..))),
            "{stopped:?}"
        );
        // The writer, stuck in its write, is let go.
        drop(reader);
    }

    #[test]
    fn the_size_limit_ends_the_recording() {
        let d = tempfile::tempdir().expect("tempdir");
        let budget = Budget {
            rate: 1 << 30,
            burst: 1 << 30,
            max_size: 2000,
            ..Budget::default()
        };
        let mut c = Cast::create(d.path(), "s", "t", (80, 24), "xterm", budget).expect("create");
        let mut stopped = false;
        for _ in 0..100 {
            match c.output(&[b'y'; 100]).expect("output") {
                Wrote::Stopped(_) => stopped = true,
                Wrote::Ended => break,
                _ => {}
            }
        }
        assert!(stopped);
        c.close().expect("close");
        let body = std::fs::read_to_string(c.path()).expect("read");
        assert!(body.len() <= 2000 + 200, "{}", body.len());
        assert!(
            body.contains("nothing after this is recorded"),
            "no last marker:\n{body}"
        );
    }
}
