//! Mirror guests who watch at the same terminal size and type share one
//! tmux client: tmux draws once per group, however large the audience,
//! and the broker copies each frame of that client's output to every
//! member (one buffer, shared, never copied per guest).
//!
//! The group keeps a model of its screen (a vt100 parser fed the same
//! bytes): a late joiner, or a member that fell too far behind, gets the
//! screen as it is now and then the stream from there. Messages meant for
//! one guest (its banner, a warning) cannot go through tmux, whose status
//! line every member shares: the broker draws them on that guest's last
//! row itself and puts the row back from the model afterwards.
//!
//! A group lives as long as it has members: the last one to leave ends
//! its tmux client.

use std::collections::HashMap;
use std::num::NonZeroU16;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::io::unix::AsyncFd;
use tokio::sync::{broadcast, oneshot};

use super::altscreen::Filter;
use super::protocol::Frame;
use crate::terminal::PtyChild;

/// Frames a group holds for members that are behind; one further behind
/// is redrawn from the model instead.
const BACKLOG: usize = 512;

/// Mirror groups a share keeps at once. Each is a tmux client and a screen
/// model (up to 16 MB at the largest size): without a bound, one invited
/// guest could join at size after size until the broker ran out of memory.
pub const MAX_GROUPS: usize = 16;

/// What makes two mirror guests' screens the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub term: String,
    pub cols: u16,
    pub rows: u16,
}

/// The mirror groups of a share.
#[derive(Default)]
pub struct Audience {
    groups: Mutex<HashMap<Key, Weak<Group>>>,
}

/// One group: its client's process and what it shares with the task that
/// reads the client.
struct Group {
    key: Key,
    pid: Option<u32>,
    screen: Arc<Mutex<Screen>>,
    /// Dropped with the group (its last member): the reading task then
    /// ends the client.
    _stop: oneshot::Sender<()>,
}

/// The client's output as the members see it.
struct Screen {
    filter: Filter,
    model: vt100::Parser,
    /// None once the client has ended.
    tx: Option<broadcast::Sender<Arc<[u8]>>>,
}

fn lock(m: &Mutex<Screen>) -> MutexGuard<'_, Screen> {
    // A panic while holding it leaves a model at worst one chunk off.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Screen {
    /// The whole screen as a frame, for a terminal that has seen nothing
    /// of it: attributes reset, tmux's scroll region, then the contents,
    /// cursor and input modes.
    fn redraw(&self) -> Vec<u8> {
        let screen = self.model.screen();
        // The contents first, under the whole-screen region (the model
        // moves down rows with CR LF, which a region's bottom would turn
        // into a scroll); then tmux's region, which homes the cursor, and
        // the cursor back where it was.
        let mut bytes = b"\x1b[0m\x1b[r".to_vec();
        bytes.extend_from_slice(screen.state_formatted().as_bytes());
        bytes.extend_from_slice(&self.filter.region());
        let (row, col) = screen.cursor_position();
        bytes.extend_from_slice(format!("\x1b[{};{}H", row + 1, col + 1).as_bytes());
        Frame::data_frames(&bytes)
    }
}

/// What a member gets next.
pub enum Next {
    /// A frame of the group's output (shared with the other members).
    Frame(Arc<[u8]>),
    /// The member fell behind: the screen as it is now.
    Redraw(Vec<u8>),
    /// The group's client has ended.
    Ended,
}

/// A mirror guest's place in a group.
pub struct Member {
    group: Arc<Group>,
    rx: broadcast::Receiver<Arc<[u8]>>,
}

impl Member {
    /// Is this member its group's only one (leaving ends the group)?
    pub fn alone(&self) -> bool {
        Arc::strong_count(&self.group) == 1
    }

    pub async fn next(&mut self) -> Next {
        match self.rx.recv().await {
            Ok(frame) => Next::Frame(frame),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let screen = lock(&self.group.screen);
                match &screen.tx {
                    Some(tx) => {
                        self.rx = tx.subscribe();
                        Next::Redraw(screen.redraw())
                    }
                    None => Next::Ended,
                }
            }
            Err(broadcast::error::RecvError::Closed) => Next::Ended,
        }
    }

    pub fn key(&self) -> &Key {
        &self.group.key
    }

    /// A frame that draws `text` on this member's status row, in tmux's
    /// message colours, leaving the cursor and attributes as they were:
    /// the first row with the status line on top (`on_top`, which the
    /// caller asks tmux), else the last, the row tmux never scrolls, so the
    /// message does not move into the pane. (With the status line off every
    /// row scrolls; `restore` repairs the pane.)
    pub fn message(&self, text: &str, on_top: bool) -> Vec<u8> {
        let Key { cols, rows, .. } = self.group.key;
        let row = if on_top { 1 } else { rows };
        let text: String = text
            .chars()
            .filter(|c| !c.is_control())
            .take(usize::from(cols.saturating_sub(1)))
            .collect();
        Frame::data(format!("\x1b7\x1b[{row};1H\x1b[0;30;43m{text}\x1b[K\x1b[0m\x1b8").as_bytes())
    }

    /// The whole screen as the group has it, over a message and wherever
    /// the pane scrolled it to (messages are few; a screen is small); None
    /// while frames the group sent are still queued for this member. Both
    /// are looked at under the lock the pump holds while it feeds the
    /// screen and sends: a frame sent in between would be in the redraw and
    /// still queued, and drawn twice (a scroll, twice).
    pub fn restore(&self) -> Option<Vec<u8>> {
        let screen = lock(&self.group.screen);
        self.rx.is_empty().then(|| screen.redraw())
    }
}

impl Audience {
    /// Joins the group of `key`, starting it (and its client, with
    /// `start`) if there is none. Returns the member and its first frame:
    /// the screen as it is now.
    pub fn join(
        &self,
        key: Key,
        start: impl FnOnce() -> Result<(PtyChild, AsyncFd<OwnedFd>), String>,
    ) -> Result<(Member, Vec<u8>), String> {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.retain(|_, g| g.strong_count() > 0);
        if let Some(group) = groups.get(&key).and_then(Weak::upgrade) {
            let screen = lock(&group.screen);
            if let Some(tx) = &screen.tx {
                let rx = tx.subscribe();
                let first = screen.redraw();
                drop(screen);
                return Ok((Member { group, rx }, first));
            }
        }
        if groups.len() >= MAX_GROUPS {
            let mut sizes: Vec<String> = groups
                .keys()
                .filter(|k| k.term == key.term)
                .map(|k| format!("{}x{}", k.cols, k.rows))
                .collect();
            sizes.sort();
            sizes.truncate(3);
            let hint = if sizes.is_empty() {
                String::new()
            } else {
                format!(" (such as {})", sizes.join(", "))
            };
            return Err(format!(
                "this share already shows {MAX_GROUPS} screens of different sizes or terminal types: join with a terminal of one of their sizes{hint}"
            ));
        }
        let (child, master) = start()?;
        let (cols, rows) = (
            NonZeroU16::new(key.cols).unwrap_or(NonZeroU16::MIN),
            NonZeroU16::new(key.rows).unwrap_or(NonZeroU16::MIN),
        );
        let (tx, rx) = broadcast::channel(BACKLOG);
        let screen = Arc::new(Mutex::new(Screen {
            filter: Filter::default(),
            model: vt100::Parser::new(rows, cols, 0),
            tx: Some(tx),
        }));
        let (stop, stopped) = oneshot::channel();
        let group = Arc::new(Group {
            key: key.clone(),
            pid: child.id(),
            screen: screen.clone(),
            _stop: stop,
        });
        let first = lock(&screen).redraw();
        tokio::spawn(pump(screen, master, child, stopped));
        groups.insert(key, Arc::downgrade(&group));
        Ok((Member { group, rx }, first))
    }

    /// Could a member of `from` (None: a newcomer) move to the group of
    /// `key` under [`MAX_GROUPS`]: that group exists, or one would be
    /// free, counting the one `from` ends by leaving it alone?
    pub fn has_room(&self, key: &Key, from: Option<&Member>) -> bool {
        let freed = usize::from(from.is_some_and(|m| m.alone() && m.group.key != *key));
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let live: Vec<&Key> = groups
            .iter()
            .filter(|(_, g)| g.strong_count() > 0)
            .map(|(k, _)| k)
            .collect();
        live.contains(&key) || live.len() - freed.min(live.len()) < MAX_GROUPS
    }

    /// The processes of the groups' clients (never the host's).
    pub fn clients(&self) -> Vec<u32> {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups
            .values()
            .filter_map(Weak::upgrade)
            .filter_map(|g| g.pid)
            .collect()
    }
}

/// Reads a group's client until it ends or the group is gone: each read,
/// cut at a clean edge, goes into the model and, framed once, to every
/// member.
async fn pump(
    screen: Arc<Mutex<Screen>>,
    master: AsyncFd<OwnedFd>,
    mut child: PtyChild,
    mut stopped: oneshot::Receiver<()>,
) {
    // However the task ends (a panic too), members see the end and new
    // guests start a new group.
    let ended = Ended(screen.clone());
    let mut buf = vec![0u8; 16384];
    let mut out = Vec::with_capacity(buf.len());
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            ready = master.readable() => {
                let Ok(mut guard) = ready else { break };
                match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from)) {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => {
                        out.clear();
                        let mut s = lock(&screen);
                        s.filter.push(&buf[..n], &mut out);
                        if !out.is_empty() {
                            s.model.process(&out);
                            if let Some(tx) = &s.tx {
                                // No member listening is not an error: the
                                // last one may be leaving right now.
                                let _ = tx.send(Arc::from(Frame::data(&out)));
                            }
                        }
                    }
                    Err(_would_block) => {}
                }
            }
        }
    }
    // New guests start a new group from now on, whatever the reaping takes.
    drop(ended);
    child.kill().await;
}

/// Ends a group's stream: members see the end once they have read what
/// came before it.
struct Ended(Arc<Mutex<Screen>>);

impl Drop for Ended {
    fn drop(&mut self) {
        lock(&self.0).tx = None;
    }
}
