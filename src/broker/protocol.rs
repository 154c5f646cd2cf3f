//! The framed protocol between `pairjail join` (and its relay) and the
//! broker, and between `pairjail stop/status` and the broker's control
//! socket. A frame is one kind byte, a big-endian u32 length and the
//! payload: kind 0 carries a JSON [`Msg`], kind 1 raw terminal bytes.
//! Anything else, or a frame over [`MAX_FRAME`], is malformed and closes
//! that connection only.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::broker::liveness::Run;
use crate::profile::Mode;

/// Terminal sizes beyond what a real terminal has are clamped where they
/// enter: a 65535×65535 client costs tmux gigabytes.
pub const MAX_COLS: u16 = 1000;
pub const MAX_ROWS: u16 = 500;

pub fn clamp_size(cols: u16, rows: u16) -> (u16, u16) {
    (cols.clamp(1, MAX_COLS), rows.clamp(1, MAX_ROWS))
}

/// Bumped on any incompatible change; a join and a broker that differ refuse.
pub const VERSION: u32 = 1;
pub const MAX_FRAME: usize = 1 << 20;

const KIND_MSG: u8 = 0;
const KIND_DATA: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Msg {
    /// join → broker, first frame.
    Hello {
        version: u32,
        guest: String,
        mode: Option<Mode>,
        term: String,
        cols: u16,
        rows: u16,
        source: Option<String>,
        /// The guest runs its own tmux client in the guest-direct jail;
        /// the broker only registers it.
        #[serde(default)]
        direct: bool,
        /// The run the guest's invite is bound to (from its forced command).
        #[serde(default)]
        run: Option<Run>,
        /// The SHA-256 fingerprint of the key the guest logged in with
        /// (from its forced command; one of the invite's keys).
        #[serde(default)]
        key: Option<String>,
        /// The guest profile's `[session]` limits, which the broker enforces.
        #[serde(default)]
        limits: Limits,
    },
    /// broker → join: the host must let you in first; wait.
    Waiting {
        text: String,
    },
    /// broker → join: you are in.
    Welcome {
        session: String,
        mode: Mode,
        /// The share is recorded (the guest's banner says so).
        #[serde(default)]
        recorded: bool,
    },
    /// broker → join: you are not, and why (one line for the guest).
    Refused {
        reason: String,
    },
    /// relay → broker: the guest's terminal changed size.
    Resize {
        cols: u16,
        rows: u16,
    },
    /// broker → relay: the session is over for you, and why.
    Bye {
        reason: String,
    },
    /// control: ask for the session's state.
    Status,
    StatusReply {
        session: Box<SessionStatus>,
    },
    /// control: end the session.
    Stop,
    Stopping,
    /// control: disconnect every connection of this guest.
    Kick {
        guest: String,
        reason: String,
    },
    /// control: the host replaced this guest's invite; its connections
    /// get the new one's terms (the broker reads it from the store).
    Reinvite {
        guest: String,
    },
    /// control: change a connected guest's mode.
    SetMode {
        guest: String,
        mode: Mode,
    },
    /// control: let a waiting guest in (in its requested mode, or `mode`).
    Approve {
        guest: String,
        mode: Option<Mode>,
        #[serde(default)]
        which: Which,
    },
    /// control: turn a waiting guest away.
    Deny {
        guest: String,
        #[serde(default)]
        which: Which,
    },
    /// control: the order was carried out; what happened, for the host.
    Done {
        message: String,
    },
    /// control: the order could not be carried out, and why.
    Failed {
        reason: String,
    },
}

/// What a guest's jail profile says about its time in the session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Modes the profile lets this guest have; empty: any.
    #[serde(default)]
    pub allowed_modes: Vec<Mode>,
    /// Seconds from joining until the guest is disconnected.
    #[serde(default)]
    pub max_duration: Option<u64>,
    /// Seconds without input until the guest is disconnected.
    #[serde(default)]
    pub idle_timeout: Option<u64>,
    /// The guest is let in only to a recorded share.
    #[serde(default)]
    pub require_recording: bool,
    /// The guest is let in only to a share with an audit log.
    #[serde(default)]
    pub require_audit_log: bool,
}

/// One shared session as `status` reports it (and `status --json` prints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionStatus {
    pub session: String,
    pub host: String,
    /// When the share started (RFC 3339).
    #[serde(with = "crate::clock::as_rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub since: u64,
    pub allowed_modes: Vec<Mode>,
    pub default_mode: Mode,
    pub guests: Vec<GuestStatus>,
    /// The session's jail; `null`: the session runs as the host, unconfined.
    #[serde(default)]
    pub confinement: Option<super::workspace::Confinement>,
    /// Every guest waits at the door for the host (`start --approve`).
    #[serde(default)]
    pub approve: bool,
    /// The recording's file, while the share is recorded.
    #[serde(default)]
    pub recording: Option<String>,
    /// The audit log this share appends to (None: `--no-audit`).
    #[serde(default)]
    pub audit_log: Option<String>,
    /// How guests reach the share: the line they run, the host keys.
    #[serde(default)]
    pub reach: Option<crate::reach::Reach>,
    /// The reverse tunnel to a relay (`start --tunnel`).
    #[serde(default)]
    pub tunnel: Option<super::tunnel::Status>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GuestStatus {
    pub name: String,
    pub mode: Mode,
    /// When the guest joined, or started waiting (RFC 3339).
    #[serde(with = "crate::clock::as_rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub since: u64,
    pub source: Option<String>,
    /// SHA-256 fingerprint of the key the guest logged in with.
    #[serde(default)]
    pub key: Option<String>,
    /// Seconds since the guest last typed (or since it joined).
    #[serde(default)]
    pub idle: u64,
    /// `connected`, or `waiting` for the host's answer at the door.
    #[serde(default)]
    pub state: GuestState,
    /// When the guest's invite expires (RFC 3339).
    #[serde(default, with = "crate::clock::as_rfc3339_opt")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub expires: Option<u64>,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum GuestState {
    #[default]
    Connected,
    Waiting,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Msg(Msg),
    Data(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Msg(m) => encode(KIND_MSG, &serde_json::to_vec(m).unwrap_or_default()),
            Frame::Data(d) => encode(KIND_DATA, d),
        }
    }

    /// The frame of `Frame::Data(data)`, without copying `data` twice.
    /// `data` must fit one frame (see [`data_frames`](Frame::data_frames)).
    pub fn data(data: &[u8]) -> Vec<u8> {
        encode(KIND_DATA, data)
    }

    /// `data` of any length as consecutive data frames, each within
    /// [`MAX_FRAME`] (the relay joins them on the terminal).
    pub fn data_frames(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 5 * (data.len() / MAX_FRAME + 1));
        for chunk in data.chunks(MAX_FRAME) {
            out.extend_from_slice(&encode(KIND_DATA, chunk));
        }
        out
    }

    /// The 5-byte header: kind and payload length, both checked. The one
    /// place a header is read, for the blocking and the async readers.
    fn header(head: &[u8; 5]) -> Result<(u8, usize), FrameError> {
        let kind = head[0];
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::Malformed(format!(
                "frame of {len} bytes exceeds {MAX_FRAME}"
            )));
        }
        if kind != KIND_MSG && kind != KIND_DATA {
            return Err(FrameError::Malformed(format!("unknown frame kind {kind}")));
        }
        Ok((kind, len))
    }

    /// Decodes one frame from the front of `buf`: `Ok(None)` if more bytes
    /// are needed, else the frame and how many bytes it used.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
        Ok(FrameRef::decode(buf)?.map(|(f, used)| {
            let frame = match f {
                FrameRef::Data(d) => Frame::Data(d.to_vec()),
                FrameRef::Msg(m) => Frame::Msg(m),
            };
            (frame, used)
        }))
    }
}

/// What serde says of a message it could not read, cut short: it quotes
/// what it was given (an unknown type whole), and a guest's frame may be a
/// megabyte that would go on into the share's log, the audit log and the
/// recording at every login.
fn quoted(e: &serde_json::Error) -> String {
    const MAX_CHARS: usize = 120;
    let text = e.to_string();
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}… (cut)", &text[..cut]),
        None => text,
    }
}

/// Which of a guest's waiting connections the host's answer is for. One
/// name can knock more than once at a time (an invite holds several
/// keys), and the host judges each knock by its key and where it comes
/// from: an answer that fits more than one is refused unless `all`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Which {
    /// Only the one that logged in with this key (its fingerprint).
    #[serde(default)]
    pub key: Option<String>,
    /// Only the one from this address and port.
    #[serde(default)]
    pub from: Option<String>,
    /// Every one that fits, however many.
    #[serde(default)]
    pub all: bool,
}

/// A decoded frame whose data stays in the buffer it came from: the relay
/// writes a data frame straight from its read buffer, no copy per frame.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameRef<'a> {
    Msg(Msg),
    Data(&'a [u8]),
}

impl FrameRef<'_> {
    /// As [`Frame::decode`], the data borrowed from `buf`.
    pub fn decode(buf: &[u8]) -> Result<Option<(FrameRef<'_>, usize)>, FrameError> {
        let Some(head) = buf.first_chunk::<5>() else {
            return Ok(None);
        };
        let (kind, len) = Frame::header(head)?;
        if buf.len() < 5 + len {
            return Ok(None);
        }
        let payload = &buf[5..5 + len];
        let frame = if kind == KIND_DATA {
            FrameRef::Data(payload)
        } else {
            FrameRef::Msg(
                serde_json::from_slice(payload).map_err(|e| FrameError::Malformed(quoted(&e)))?,
            )
        };
        Ok(Some((frame, 5 + len)))
    }
}

/// The 5-byte header of a data frame of `len` bytes, for a caller that
/// reads the data in place right after it (the relay: no copy, no second
/// buffer). None past [`MAX_FRAME`].
pub fn data_header(len: usize) -> Option<[u8; 5]> {
    if len > MAX_FRAME {
        return None;
    }
    let n = u32::try_from(len).ok()?.to_be_bytes();
    Some([KIND_DATA, n[0], n[1], n[2], n[3]])
}

/// The largest message the broker reads: what its clients send (a
/// hello, a resize, an order) is a few hundred bytes, and a guest's
/// message is parsed on the broker's only thread.
pub const MAX_BROKER_MSG: usize = 16 * 1024;

/// Reads one frame for the broker, buffering across calls (cancel-safe:
/// bytes read are kept in `buf`). `Ok(None)`: the peer closed.
///
/// Each frame counts against the task's share of the broker's one thread
/// (tokio's budget), read from the socket or already buffered: a guest
/// sending tiny frames as fast as it can yields the thread every few
/// hundred, like any other task, instead of holding it for a whole
/// buffer's worth.
pub async fn read_frame_async(
    s: &mut (impl tokio::io::AsyncReadExt + Unpin),
    buf: &mut Vec<u8>,
) -> Result<Option<Frame>, FrameError> {
    tokio::task::consume_budget().await;
    loop {
        if let Some(head) = buf.first_chunk::<5>() {
            let (kind, len) = Frame::header(head)?;
            if kind == KIND_MSG && len > MAX_BROKER_MSG {
                return Err(FrameError::Malformed(format!(
                    "a message of {len} bytes, larger than any a client sends ({MAX_BROKER_MSG})"
                )));
            }
        }
        if let Some((f, used)) = Frame::decode(buf)? {
            buf.drain(..used);
            return Ok(Some(f));
        }
        let mut chunk = [0u8; 8192];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Blocking helpers for join, the relay and the control commands.
pub fn write_frame(w: &mut impl Write, f: &Frame) -> io::Result<()> {
    w.write_all(&f.encode())
}

pub fn read_frame(r: &mut impl Read) -> Result<Frame, FrameError> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        other => other?,
    }
    let (_, len) = Frame::header(&head)?;
    let mut buf = head.to_vec();
    buf.resize(5 + len, 0);
    r.read_exact(&mut buf[5..])?;
    match Frame::decode(&buf)? {
        Some((f, _)) => Ok(f),
        None => Err(FrameError::Malformed("short frame".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::Data(b"hello\x1b[0m".to_vec()),
            Frame::Msg(Msg::Hello {
                version: VERSION,
                guest: "bob".into(),
                mode: Some(Mode::Mirror),
                term: "xterm".into(),
                cols: 80,
                rows: 24,
                source: Some("10.0.0.1:5555".into()),
                direct: false,
                run: Some(Run { pid: 9, start: 3 }),
                key: Some("SHA256:abc".into()),
                limits: Limits {
                    allowed_modes: vec![Mode::Pair],
                    max_duration: Some(60),
                    idle_timeout: None,
                    require_recording: true,
                    require_audit_log: false,
                },
            }),
            Frame::Msg(Msg::Resize {
                cols: 100,
                rows: 40,
            }),
        ];
        let mut buf = Vec::new();
        for f in &frames {
            buf.extend(f.encode());
        }
        let mut at = 0;
        for f in &frames {
            let (got, used) = Frame::decode(&buf[at..]).unwrap().unwrap();
            assert_eq!(&got, f);
            at += used;
        }
        assert_eq!(at, buf.len());
        assert!(Frame::decode(&buf[..3]).unwrap().is_none());
        // Borrowed: the same frames, data pointing into the buffer, and
        // every cut short of a whole frame asks for more.
        let (first, used) = FrameRef::decode(&buf).unwrap().unwrap();
        assert_eq!(first, FrameRef::Data(b"hello\x1b[0m"));
        assert!(matches!(first, FrameRef::Data(d) if std::ptr::eq(d.as_ptr(), buf[5..].as_ptr())));
        for cut in 0..used {
            assert!(FrameRef::decode(&buf[..cut]).unwrap().is_none(), "{cut}");
        }
        let payload = b"hello\x1b[0m";
        let mut framed = data_header(payload.len()).unwrap().to_vec();
        framed.extend_from_slice(payload);
        assert_eq!(framed, Frame::Data(payload.to_vec()).encode());
        assert_eq!(data_header(MAX_FRAME + 1), None);
    }

    /// A guest that sends tiny frames as fast as it can must not hold the
    /// broker's one thread for a whole buffer's worth: another task runs
    /// long before the flood ends.
    #[test]
    fn a_flood_of_tiny_frames_yields_the_brokers_thread() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            const FRAMES: usize = 20_000;
            let flood: Vec<u8> = std::iter::repeat_n([KIND_DATA, 0, 0, 0, 0], FRAMES)
                .flatten()
                .collect();
            let read = std::sync::Arc::new(AtomicUsize::new(0));
            let other = {
                let read = read.clone();
                tokio::spawn(async move { read.load(Ordering::Relaxed) })
            };
            let mut r: &[u8] = &flood;
            let mut buf = Vec::new();
            while let Ok(Some(_)) = read_frame_async(&mut r, &mut buf).await {
                read.fetch_add(1, Ordering::Relaxed);
            }
            assert_eq!(read.load(Ordering::Relaxed), FRAMES);
            let when = other.await.unwrap();
            assert!(
                when < FRAMES,
                "the other task ran only after all {when} frames"
            );
        });
    }

    /// A message larger than any a client sends is refused from its
    /// header, before the broker reads (or parses) it.
    #[test]
    fn the_broker_refuses_a_large_message_from_its_header() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut frame = vec![KIND_MSG];
        frame.extend_from_slice(&100_000u32.to_be_bytes());
        frame.extend_from_slice(br#"{"type":"resize","#);
        let mut r: &[u8] = &frame;
        let mut buf = Vec::new();
        match rt.block_on(read_frame_async(&mut r, &mut buf)) {
            Err(FrameError::Malformed(m)) => assert!(m.contains("100000 bytes"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_frames_are_errors() {
        assert!(matches!(
            Frame::decode(&[9, 0, 0, 0, 0]),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            Frame::decode(&[0, 0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            Frame::decode(&[0, 0, 0, 0, 2, b'{', b'x']),
            Err(FrameError::Malformed(_))
        ));
        let mut r: &[u8] = &[];
        assert!(matches!(read_frame(&mut r), Err(FrameError::Closed)));
        // serde quotes an unknown type whole: what the error says of a
        // frame as large as any is short.
        let json = format!(r#"{{"type":"{}"}}"#, "PJ-LONG ".repeat(MAX_FRAME / 8 - 2));
        let mut frame = vec![KIND_MSG];
        frame.extend_from_slice(&u32::try_from(json.len()).unwrap().to_be_bytes());
        frame.extend_from_slice(json.as_bytes());
        match Frame::decode(&frame) {
            Err(FrameError::Malformed(m)) => {
                assert!(m.starts_with("unknown variant `PJ-LONG"), "{m}");
                assert!(m.chars().count() < 200, "{} characters", m.chars().count());
            }
            other => panic!("{other:?}"),
        }
    }
}
