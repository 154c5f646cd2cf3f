//! What the broker forwards of a tmux client's output (to guests, and into
//! the recording): never the switch to the alternate screen, never a
//! clipboard write or a string for the terminal itself, and never half an
//! escape sequence. The host's own client of a jailed session gets the
//! same, the alternate screen aside (see `host_client`).
//!
//! A pair guest can make tmux pass a program's `OSC 52` (clipboard) and
//! `DCS` strings through to every client (`set -g set-clipboard on`,
//! `allow-passthrough on`): a mirror guest's clipboard would be set to a
//! command that runs when pasted, and so would the clipboard of whoever
//! replays the recording. `OSC 52`, and DCS, APC, PM and SOS strings,
//! however long, are dropped.
//!
//! tmux switches its client's terminal to the alternate screen when it
//! starts and back when it ends. A guest whose connection ends without
//! tmux's goodbye (`~.`, a dropped network, a kill) would be left in it,
//! with tmux's last picture and no prompt. The broker drops the switch
//! (`CSI ? 1049 h`, `CSI ? 1047 h`, `CSI ? 47 h`) from what it forwards, so
//! the guest stays on the normal screen whatever happens; the relay clears
//! it on the way out.
//!
//! Output is cut only between whole units (a character, an escape
//! sequence, a control string): an incomplete one at the end of a read is
//! held until the next. So a mirror group's late joiner starts at a clean
//! edge, and a message the broker draws for one guest never lands inside
//! tmux's sequence. The scroll region is remembered, because a late
//! joiner's terminal must have the one tmux believes it set.

/// An incomplete unit longer than this (a huge clipboard string) is
/// forwarded as it comes rather than held.
const MAX_HELD: usize = 8192;

#[derive(Debug, Default)]
pub struct Filter {
    /// The start of an incomplete unit, from the previous chunk.
    held: Vec<u8>,
    /// The parameters of the last scroll region set (`CSI Pt ; Pb r`);
    /// None: the whole screen.
    region: Option<Vec<u8>>,
    /// A dropped string too long to hold, being skipped to its end (the
    /// byte that says its kind).
    skipping: Option<u8>,
    /// The host's own terminal keeps the alternate-screen switch: its
    /// client is never cut off without tmux's goodbye.
    keep_alternate: bool,
}

/// The OSC commands a guest's terminal gets (tmux sends them to set the
/// title, the cursor colour, hyperlinks): anything else, the clipboard
/// (52), the palette and default colours (4, 10, 11 and their resets,
/// which tmux never sends and which would outlast the share on whoever
/// reads it), the working directory (7: terminals open the next tab
/// there, so a pair guest chose where the host's next shell starts, and
/// what its git prompt runs) and other terminals' private ones (1337,
/// 5522), is dropped.
const OSC_KEPT: [u32; 7] = [0, 1, 2, 8, 12, 112, 133];

/// A string a guest's terminal must never get: an OSC not in
/// [`OSC_KEPT`] (its number read as a terminal does: `052` is 52), or a
/// DCS (tmux's passthrough), APC, PM or SOS string.
fn dropped(seq: &[u8]) -> bool {
    match seq {
        [0x1b, b']', rest @ ..] => {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let number = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|d| d.parse::<u32>().ok());
            !number.is_some_and(|n| OSC_KEPT.contains(&n))
        }
        [0x1b, b'P' | b'_' | b'^' | b'X', ..] => true,
        _ => false,
    }
}

/// A sequence that makes a terminal answer (a report typed back as if
/// from the keyboard), or changes how it sends keys or where its window
/// is: status and cursor reports, device attributes and
/// version, window reports and operations (the title among them), mode and parameter
/// requests, keyboard and graphics queries, colour queries. A guest can
/// make tmux send any of them to the host's terminal (its
/// terminal-overrides are theirs to set); the answer goes to the session,
/// or, arriving after the client ended, to the host's shell.
fn asks_terminal(seq: &[u8]) -> bool {
    // DECID, the oldest way to ask for device attributes.
    if seq == b"\x1bZ" {
        return true;
    }
    if let Some(body) = seq.strip_prefix(b"\x1b]") {
        return body.contains(&b'?');
    }
    let Some(body) = seq.strip_prefix(b"\x1b[") else {
        return false;
    };
    let Some((&last, rest)) = body.split_last() else {
        return false;
    };
    let private = rest.first().copied();
    let first: Option<u32> = rest
        .split(|b| *b == b';')
        .next()
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|p| p.parse().ok());
    let intermediate = rest.last().copied();
    match last {
        b'n' | b'c' => true,
        // DECREQTPARM asks; DECFRA (`$ x`, a filled rectangle) is tmux's
        // own where the terminal has `rectfill`.
        b'x' => intermediate != Some(b'$'),
        b'q' => private == Some(b'>'),
        // Window operations: reports, and resizing, moving, raising or
        // iconifying the reader's window. Only the title stack, which
        // tmux uses, stays.
        b't' => !matches!(first, Some(22 | 23)),
        // A conformance level (DECSCL): its second parameter makes
        // answers 8-bit, as `ESC SP G` does.
        b'p' if intermediate == Some(b'"') => true,
        // xterm's pointer mode (`CSI > 3 p` hides the mouse pointer).
        b'p' if private == Some(b'>') => true,
        // Mode, presentation, tab-stop, checksum, locator and other
        // reports (DECRQM, DECRQPSR, DECRQTSR, DECRQCRA, DECRQUPSS,
        // DECRQDE, DECRQLP, XTREPORTCOLORS; the kitty forms of `u` are
        // below).
        b'p' | b'w' => intermediate == Some(b'$'),
        b'u' if matches!(intermediate, Some(b'$' | b'&')) => true,
        b'y' => intermediate == Some(b'*'),
        b'v' => intermediate == Some(b'"'),
        // DECRQLP (a locator report), and the page's columns and lines
        // (DECSCPP, DECSNLS), which xterm sets by resizing the window.
        b'|' => matches!(intermediate, Some(b'\'' | b'$' | b'*')),
        // The locator: reports typed into the reader's input on every
        // click (DECELR, DECSLE), for as long as the terminal lives.
        b'z' | b'{' => intermediate == Some(b'\''),
        // The status line: output sent there (DECSASD), or shown (DECSSDT).
        b'}' | b'~' => intermediate == Some(b'$'),
        // Tab stops cleared (TBC): tmux moves the cursor itself.
        b'g' => intermediate.is_none_or(|b| b.is_ascii_digit() || b == b';'),
        b'R' => intermediate == Some(b'#'),
        // Modes: only those tmux itself sets. Others change what keys send
        // (win32-input-mode encodes every key, Enter ~ . with it) or make
        // the terminal write on its own (in-band resize reports).
        b'h' | b'l' => !modes_tmux_sets(rest),
        // xterm's key modifiers: only modifyOtherKeys (`CSI > 4 ; n m`),
        // which tmux sets; the others change what cursor and function
        // keys send.
        b'm' if private == Some(b'>') => {
            let resource = rest[1..]
                .split(|b| *b == b';')
                .next()
                .and_then(|p| std::str::from_utf8(p).ok())
                .and_then(|p| p.parse::<u32>().ok());
            resource != Some(4)
        }
        b'S' | b'm' => private == Some(b'?'),
        // The kitty keyboard protocol (push, set, pop, query): once on,
        // every key arrives encoded, and the host's Enter ~ . with it.
        b'u' => matches!(private, Some(b'?' | b'>' | b'=' | b'<')),
        _ => false,
    }
}

/// Are the modes of `CSI params h` (or `l`) all ones tmux sets on its
/// client's terminal (cursor keys, flash, wrap, cursor, alternate screen,
/// margins, mouse, focus, bracketed paste, synchronized output, mintty's
/// escape key; insert mode and cursor blink)? Numbers are read as a terminal reads them (`09001` is 9001).
fn modes_tmux_sets(params: &[u8]) -> bool {
    const PRIVATE: [u32; 20] = [
        1, 5, 7, 12, 25, 47, 69, 1000, 1002, 1003, 1004, 1005, 1006, 1015, 1047, 1048, 1049, 2004,
        2026, 7727,
    ];
    let (list, allowed): (&[u8], &[u32]) = match params.split_first() {
        Some((b'?', list)) => (list, &PRIVATE),
        // Insert mode; 34, the cursor's blink where TERM is screen or tmux.
        _ => (params, &[4, 34]),
    };
    list.split(|b| *b == b';').all(|m| {
        std::str::from_utf8(m)
            .ok()
            .and_then(|m| m.parse::<u32>().ok())
            .is_some_and(|n| allowed.contains(&n))
    })
}

/// Never forwarded: a dropped string, or any sequence longer than the
/// filter holds (no title or sequence of a terminal's is that long; cut
/// into chunks it could not be judged the same way).
fn never(seq: &[u8]) -> bool {
    dropped(seq) || seq.len() > MAX_HELD || holds_c1(seq) || changes_how_bytes_are_read(seq)
}

/// An escape with intermediates other than the ones tmux sends: a
/// character set designation (`ESC ( 0`), a line's size (`ESC # 6`),
/// or the switch back to UTF-8 (`ESC % G`). Anything else changes how
/// the terminal reads what follows or how it answers: `ESC % @` leaves
/// UTF-8, after which a byte inside a valid UTF-8 character (0x9D in
/// U+035D) is a C1 control that starts an OSC; `ESC SP G` makes answers
/// 8-bit.
fn changes_how_bytes_are_read(seq: &[u8]) -> bool {
    match seq {
        [0x1b, b'(' | b')' | b'*' | b'+' | b'-' | b'.' | b'/', _] => false,
        [0x1b, b'#', b'3'..=b'6' | b'8'] => false,
        [0x1b, b'%', b'G'] => false,
        [0x1b, 0x20..=0x2f, ..] => true,
        _ => false,
    }
}

/// Is `b` the kind byte of a control string (OSC, DCS, APC, PM, SOS)?
fn is_string(b: u8) -> bool {
    matches!(b, b']' | b'P' | b'_' | b'^' | b'X')
}

/// Where a control string of `kind` being skipped ends in `data`: after
/// BEL (OSC only) or ST, at an ESC that starts something else, or after a
/// CAN or SUB. None: not in `data` (a final ESC may start the ST).
fn string_end(data: &[u8], kind: u8) -> Option<usize> {
    let mut j = 0;
    while j < data.len() {
        match (data[j], data.get(j + 1)) {
            (0x07, _) if kind == b']' => return Some(j + 1),
            (0x1b, None) => return None,
            (0x1b, Some(b'\\')) => return Some(j + 2),
            (0x1b, Some(_)) => return Some(j),
            (0x18 | 0x1a, _) => return Some(j + 1),
            _ => {}
        }
        j += 1;
    }
    None
}

/// The unit at the start of `rest` (which starts with ESC).
enum Unit {
    /// `len` bytes. `abandoned`: cut short by ESC, CAN or SUB, which a
    /// terminal discards. `clean`: no C0 control inside (terminals run
    /// those in place and go on with the sequence).
    Done {
        len: usize,
        abandoned: bool,
        clean: bool,
    },
    Partial,
}

/// A C0 control a terminal runs in the middle of a sequence.
fn runs_inside(b: u8) -> bool {
    b < 0x20 && !aborts(b)
}

/// ESC, CAN and SUB end a sequence unfinished.
fn aborts(b: u8) -> bool {
    matches!(b, 0x1b | 0x18 | 0x1a)
}

fn escape_len(rest: &[u8]) -> Unit {
    let mut clean = true;
    let done = |len, abandoned, clean| Unit::Done {
        len,
        abandoned,
        clean,
    };
    // The byte that says what kind of sequence this is.
    let mut j = 1;
    let kind = loop {
        match rest.get(j) {
            None => return Unit::Partial,
            Some(&b) if runs_inside(b) || b == 0x7f => clean = false,
            Some(&b) if aborts(b) => return done(j, true, clean),
            Some(&b) => break b,
        }
        j += 1;
    };
    j += 1;
    match kind {
        b'[' => loop {
            match rest.get(j) {
                None => return Unit::Partial,
                Some(0x20..=0x3f) => {}
                Some(0x40..=0x7e) => return done(j + 1, false, clean),
                Some(&b) if runs_inside(b) || b == 0x7f => clean = false,
                // ESC, CAN, SUB, or a byte no sequence holds.
                Some(_) => return done(j, true, clean),
            }
            j += 1;
        },
        // OSC, DCS, APC, PM, SOS: a string until BEL (OSC) or ST.
        b']' | b'P' | b'_' | b'^' | b'X' => loop {
            match (rest.get(j), rest.get(j + 1)) {
                (None, _) | (Some(0x1b), None) => return Unit::Partial,
                (Some(0x07), _) if kind == b']' => return done(j + 1, false, clean),
                (Some(0x1b), Some(b'\\')) => return done(j + 2, false, clean),
                (Some(&b), _) if aborts(b) => return done(j, true, clean),
                _ => {}
            }
            j += 1;
        },
        // Intermediates (a character set: ESC ( B), then a final byte.
        0x20..=0x2f => loop {
            match rest.get(j) {
                None => return Unit::Partial,
                Some(0x20..=0x2f) => {}
                Some(0x30..=0x7e) => return done(j + 1, false, clean),
                Some(&b) if runs_inside(b) || b == 0x7f => clean = false,
                Some(_) => return done(j, true, clean),
            }
            j += 1;
        },
        _ => done(j, false, clean),
    }
}

/// `seq` as a terminal takes it (a CSI sequence), minus the
/// alternate-screen switch: `CSI ? … h` setting 1049, 1047 or 47 among
/// other modes keeps the others. None: nothing is left.
fn without_switch(seq: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    use std::borrow::Cow;
    let params = match seq
        .strip_prefix(b"\x1b[?")
        .and_then(|p| p.strip_suffix(b"h"))
    {
        Some(p) if p.iter().all(|b| b.is_ascii_digit() || *b == b';') => p,
        _ => return Some(Cow::Borrowed(seq)),
    };
    let switch = |p: &[u8]| matches!(p, b"1049" | b"1047" | b"47");
    if !params.split(|b| *b == b';').any(switch) {
        return Some(Cow::Borrowed(seq));
    }
    let kept: Vec<&[u8]> = params
        .split(|b| *b == b';')
        .filter(|p| !switch(p))
        .collect();
    if kept.is_empty() {
        return None;
    }
    let mut out = b"\x1b[?".to_vec();
    out.extend_from_slice(&kept.join(&b';'));
    out.push(b'h');
    Some(Cow::Owned(out))
}

/// Copies `run` (text: no ESC, no incomplete character at its end) less
/// any C1 control, written as UTF-8 (U+0080 to U+009F) or as a bare byte
/// (0x80 to 0x9F, which no UTF-8 character starts with), and less any
/// other byte that is not UTF-8: terminals that take U+009D or 0x9D as
/// OSC, or U+009B as CSI, would otherwise start what ESC would.
fn copy_without_c1(run: &[u8], out: &mut Vec<u8>) {
    if run.is_ascii() {
        out.extend_from_slice(run);
        return;
    }
    for chunk in run.utf8_chunks() {
        let text = chunk.valid();
        if text.chars().any(crate::terminal::is_c1) {
            let mut buf = [0u8; 4];
            for c in text.chars().filter(|c| !crate::terminal::is_c1(*c)) {
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        } else {
            out.extend_from_slice(text.as_bytes());
        }
    }
}

/// Does a sequence hold a C1 control (as UTF-8 or a bare byte) or a byte
/// that is not UTF-8? Inside a kept string (a title), U+009C would end it
/// for some terminals and U+009D start another: `OSC 0 ; t` + U+009C
/// U+009D + `52;…` is a clipboard write to them.
fn holds_c1(seq: &[u8]) -> bool {
    !seq.is_ascii()
        && seq
            .utf8_chunks()
            .any(|c| !c.invalid().is_empty() || c.valid().chars().any(crate::terminal::is_c1))
}

/// Where an incomplete UTF-8 character at the end of `run` starts.
fn utf8_cut(run: &[u8]) -> usize {
    for back in 1..=run.len().min(3) {
        let i = run.len() - back;
        let b = run[i];
        if b & 0xc0 == 0x80 {
            continue;
        }
        let need = match b {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        return if back < need { i } else { run.len() };
    }
    run.len()
}

impl Filter {
    /// The filter for the host's own client of a jailed session: the same
    /// strings dropped, the alternate screen kept.
    pub fn for_host() -> Filter {
        Filter {
            keep_alternate: true,
            ..Filter::default()
        }
    }

    /// Appends `input`, minus the alternate-screen switches and any
    /// incomplete unit at its end, to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        // Nearly always nothing is held: `input` is read where it lies,
        // with no copy (the broker and every guest's relay call this on
        // each read).
        let held = std::mem::take(&mut self.held);
        let joined: Vec<u8>;
        let data: &[u8] = if held.is_empty() {
            input
        } else {
            joined = [held.as_slice(), input].concat();
            &joined
        };
        let mut i = 0;
        if let Some(kind) = self.skipping {
            match string_end(data, kind) {
                Some(end) => {
                    self.skipping = None;
                    i = end;
                }
                None => {
                    if data.last() == Some(&0x1b) {
                        self.held = vec![0x1b];
                    }
                    return;
                }
            }
        }
        while i < data.len() {
            if data[i] != 0x1b {
                // Copy the run up to the next ESC at once.
                let end = data[i..]
                    .iter()
                    .position(|&b| b == 0x1b)
                    .map_or(data.len(), |p| i + p);
                let cut = if end == data.len() {
                    i + utf8_cut(&data[i..end])
                } else {
                    end
                };
                let from = out.len();
                copy_without_c1(&data[i..cut], out);
                // ENQ makes some terminals answer (PuTTY: its name).
                if out[from..].contains(&0x05) {
                    let kept: Vec<u8> = out.drain(from..).filter(|b| *b != 0x05).collect();
                    out.extend(kept);
                }
                if cut < end {
                    self.held = data[cut..].to_vec();
                    return;
                }
                i = end;
                continue;
            }
            let rest = &data[i..];
            match escape_len(rest) {
                Unit::Done {
                    len,
                    abandoned,
                    clean,
                } => {
                    let unit = &rest[..len];
                    if clean {
                        if !abandoned {
                            self.emit(unit, out);
                        }
                    } else {
                        // As a terminal runs it: the controls first, then
                        // the sequence without them (an OSC's closing BEL
                        // is its end, not a control inside). A dropped
                        // string goes whole, controls and all.
                        let closing = unit.len() > 2
                            && unit.last() == Some(&0x07)
                            && unit.iter().skip(1).find(|b| !runs_inside(**b)) == Some(&b']');
                        let body = if closing && !abandoned {
                            &unit[..unit.len() - 1]
                        } else {
                            unit
                        };
                        let mut seq: Vec<u8> = body
                            .iter()
                            .copied()
                            .filter(|b| !runs_inside(*b) && *b != 0x7f)
                            .collect();
                        if !never(&seq) {
                            // ENQ makes some terminals answer (see below
                            // for text).
                            out.extend(body.iter().filter(|b| runs_inside(**b) && **b != 0x05));
                            if !abandoned {
                                if closing {
                                    seq.push(0x07);
                                }
                                self.emit(&seq, out);
                            }
                        }
                    }
                    i += len;
                }
                Unit::Partial if rest.len() <= MAX_HELD => {
                    self.held = rest.to_vec();
                    return;
                }
                Unit::Partial => {
                    // Too long to hold: never forwarded (no title or
                    // sequence of a terminal's is this long). A string is
                    // skipped to its end, in this chunk or a later one;
                    // anything else is dropped, and the next chunk taken as
                    // new output.
                    let at = rest[1..].iter().position(|b| !runs_inside(*b));
                    let Some(at) = at.filter(|a| is_string(rest[1 + a])) else {
                        return;
                    };
                    let kind = rest[1 + at];
                    let start = at + 2;
                    match string_end(&rest[start..], kind) {
                        Some(end) => i += start + end,
                        None => {
                            self.skipping = Some(kind);
                            if rest.last() == Some(&0x1b) {
                                self.held = vec![0x1b];
                            }
                            return;
                        }
                    }
                }
            }
        }
    }

    /// A whole sequence, minus any alternate-screen switch in it (unless
    /// kept); nothing of a dropped string.
    fn emit(&mut self, seq: &[u8], out: &mut Vec<u8>) {
        if never(seq) {
            return;
        }
        let seq = if self.keep_alternate {
            std::borrow::Cow::Borrowed(seq)
        } else {
            match without_switch(seq) {
                Some(seq) => seq,
                None => return,
            }
        };
        // Whoever reads it (a guest, the host, someone replaying the
        // recording with `cat` or asciinema): nothing that makes their
        // terminal answer or changes how it sends keys.
        if asks_terminal(&seq) {
            return;
        }
        self.note(&seq);
        out.extend_from_slice(&seq);
    }

    /// Remembers the scroll region a sequence sets or resets.
    fn note(&mut self, seq: &[u8]) {
        if seq == b"\x1bc" {
            self.region = None;
        } else if seq.len() >= 3 && seq.ends_with(b"r") && seq.starts_with(b"\x1b[") {
            let params = &seq[2..seq.len() - 1];
            if params.iter().all(|b| b.is_ascii_digit() || *b == b';') {
                self.region = (!params.is_empty()).then(|| params.to_vec());
            }
        }
    }

    /// The sequence that gives a fresh terminal the scroll region tmux
    /// believes it set (it also moves the cursor home).
    pub fn region(&self) -> Vec<u8> {
        let mut seq = b"\x1b[".to_vec();
        if let Some(p) = &self.region {
            seq.extend_from_slice(p);
        }
        seq.push(b'r');
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut f = Filter::default();
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, &mut out);
        }
        out
    }

    #[test]
    fn the_alternate_screen_switch_is_dropped_and_everything_else_kept() {
        let input: &[u8] = b"a\x1b[?1049h\x1b[22;0;0tb\x1b[?47hc\x1b[?1049ld\x1b[?1047h\x1b[1me\xe2\x82\xac\x1b]0;title\x07\x1b(Bf";
        let want: &[u8] = b"a\x1b[22;0;0tbc\x1b[?1049ld\x1b[1me\xe2\x82\xac\x1b]0;title\x07\x1b(Bf";
        assert_eq!(run(&[input]), want);
        // Split at every position, and byte by byte.
        for cut in 0..input.len() {
            assert_eq!(run(&[&input[..cut], &input[cut..]]), want, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes), want);
    }

    #[test]
    fn output_stops_only_between_whole_units() {
        let mut f = Filter::default();
        for (chunk, shown) in [
            (&b"x\x1b"[..], &b"x"[..]),
            (b"[0", b""),
            (b"m\xe2\x82", b"\x1b[0m"),
            (b"\xac\x1b]0;ti", b"\xe2\x82\xac"),
            (b"tle\x1b\\", b"\x1b]0;title\x1b\\"),
        ] {
            let mut out = Vec::new();
            f.push(chunk, &mut out);
            assert_eq!(out, shown, "after {chunk:?}");
        }
    }

    #[test]
    fn an_abandoned_escape_or_string_cannot_hide_the_switch() {
        for input in [
            &b"\x1b\x1b[?1049hx"[..],
            b"\x1b]0;t\x1b[?1049hx",
            b"\x1bPq\x18\x1b[?1049hx",
            // What is left of the line once the switch is cut out must not
            // join an abandoned prefix into a new switch.
            b"\x1b\x1b[?1049h[?1049hx",
            b"\x1b[\x1b[?1049h?1049hx",
            b"\x1b]0;\x1b[?1049h[?1049hx",
            // Terminals run C0 controls inside a sequence and go on with it.
            b"\x1b\r[?1049hx",
            b"\x1b[?10\r49hx",
            b"\x1b[\x00?1049hx",
            // The switch among other modes.
            b"\x1b[?25;1049hx",
            b"\x1b[?1049;1047;47hx",
        ] {
            let out = run(&[input]);
            // What a terminal would do with it: no alternate screen.
            let mut vt = vt100::Parser::new(
                std::num::NonZeroU16::new(5).unwrap(),
                std::num::NonZeroU16::new(40).unwrap(),
                0,
            );
            vt.process(&out);
            assert!(!vt.screen().alternate_screen(), "{input:?} gave {out:?}");
            assert!(out.ends_with(b"x"), "{input:?} gave {out:?}");
            for cut in 0..input.len() {
                assert_eq!(run(&[&input[..cut], &input[cut..]]), out, "cut at {cut}");
            }
        }
    }

    #[test]
    fn no_guest_or_replay_gets_a_query_or_a_key_mode() {
        // What a guest's terminal, or one replaying the recording, would
        // answer or keep after the share (kitty's "every key encoded",
        // win32-input-mode, in-band resize reports, ENQ).
        assert_eq!(
            run(&[b"\x1b[>8u\x1b[6n\x1b[?9001h\x1b[?2048h\x05\x1b[?25hx"]),
            b"\x1b[?25hx".to_vec()
        );
    }

    #[test]
    fn no_terminal_is_taken_out_of_utf8_or_has_its_window_moved() {
        // `ESC % @` leaves UTF-8: the terminal then reads the second byte
        // of U+035D (0x9D) as OSC, and of U+06DB (0x9B) as CSI, so valid
        // UTF-8 text becomes a clipboard write or a report. Window
        // operations resize, move or iconify the reader's window; 8-bit
        // answers (`ESC SP G`) are not what tmux reads. The character
        // sets tmux uses, UTF-8's own switch and the title stack stay.
        let input: &[u8] = b"a\x1b%@\xcd\x9d52;c;eA==\x07b\x1b%Gc\x1b(0d\x1b)0\x1b(Be\x1b[8;1;1tf\x1b[2t\x1b[3;0;0t\x1b[9;1tg\x1b[22;0th\x1b Gi\x1b%/Gj";
        let want: &[u8] = b"a\xcd\x9d52;c;eA==\x07b\x1b%Gc\x1b(0d\x1b)0\x1b(Befg\x1b[22;0thij";
        assert_eq!(run(&[input]), want);
        for cut in 0..input.len() {
            assert_eq!(run(&[&input[..cut], &input[cut..]]), want, "cut at {cut}");
        }
        let mut f = Filter::for_host();
        let mut out = Vec::new();
        f.push(input, &mut out);
        assert_eq!(out, want);
        // Nor through a conformance level (`CSI 62;2 " p` makes answers
        // 8-bit too), nor xterm's key modifiers other than the
        // modifyOtherKeys tmux sets (`CSI > 1;2 m` changes what cursor
        // keys send); tmux's own `CSI > 4;1 m` stays.
        let input: &[u8] = b"a\x1b[62;2\"pb\x1b[>1;2mc\x1b[>0;1md\x1b[>2;3me\x1b[>4;1mf\x1b[>4mg";
        let want: &[u8] = b"abcde\x1b[>4;1mf\x1b[>4mg";
        for cut in 0..input.len() {
            assert_eq!(run(&[&input[..cut], &input[cut..]]), want, "cut at {cut}");
        }
        // Nor the page's size (xterm resizes the window for it), the
        // locator (a report typed into the reader's input at every click,
        // long after the share), the status line, the pointer or the tab
        // stops; DECERA-like sequences of other finals stay.
        let input: &[u8] =
            b"a\x1b[132$|b\x1b[60*|c\x1b[1;1'zd\x1b[1;3'{e\x1b[2$~f\x1b[1$}g\x1b[>3ph\x1b[3gi\x1b[gj\x1b[2$zk";
        let want: &[u8] = b"abcdefghij\x1b[2$zk";
        assert_eq!(
            run(&[b"a\x1b[32;1;1;5;80$xb\x1b[1xc"]),
            b"a\x1b[32;1;1;5;80$xbc"
        );
        for cut in 0..input.len() {
            assert_eq!(run(&[&input[..cut], &input[cut..]]), want, "cut at {cut}");
        }
        // What a goodbye puts back includes 7-bit answers and the modes
        // the filters pass (reverse video, margins, mintty's escape key,
        // synchronized output), and tab stops every 8 columns.
        for reset in [
            crate::terminal::restore_sequence(true),
            crate::terminal::restore_sequence(false),
        ] {
            for undo in [
                &b"\x1b F"[..],
                b"\x1b[?5l",
                b"\x1b[?69l",
                b"\x1b[?7727l",
                b"\x1b[?2026l",
                b"\x1b[?5W",
            ] {
                assert!(
                    reset.windows(undo.len()).any(|w| w == undo),
                    "{:?} does not undo {:?}",
                    String::from_utf8_lossy(reset),
                    String::from_utf8_lossy(undo)
                );
            }
        }
    }

    #[test]
    fn no_c1_control_reaches_a_terminal_in_text_or_inside_a_kept_string() {
        // A title that ends itself and starts a clipboard write for a
        // terminal that reads C1 (UTF-8 or bare), then bare C1 in text;
        // UTF-8 whose bytes include 0x80 to 0x9F (the euro sign) stays.
        let out = run(&[
            b"a\x1b]0;t\xc2\x9c\xc2\x9d52;c;eA==\x07b",
            b"\x1b]2;t\x9c\x9d52;c;eA==\x07c\x9d52;d\x9b6n\xe2\x82\xac\xff",
        ]);
        assert_eq!(out, b"abc52;d6n\xe2\x82\xac".to_vec());
    }

    #[test]
    fn the_hosts_filter_keeps_the_alternate_screen_and_drops_the_same_strings() {
        let mut f = Filter::for_host();
        let mut out = Vec::new();
        f.push(
            b"\x1b[?1049ha\x1b]52;c;eA==\x07b\x1bPtmux;x\x1b\\c\x1b]0;t\x07\x1b[?1049l",
            &mut out,
        );
        assert_eq!(out, b"\x1b[?1049habc\x1b]0;t\x07\x1b[?1049l".to_vec());
        let mut out = Vec::new();
        f.push(b"a\x05b\x1b[\x05?25h\x1b[?7727h\x1b[34h", &mut out);
        assert_eq!(out, b"ab\x1b[?25h\x1b[?7727h\x1b[34h".to_vec());
        // Nothing that makes the host's terminal answer; the same kinds
        // of sequence that do not, kept.
        let mut out = Vec::new();
        f.push(
            b"\x1b[6n\x1b[>c\x1b[>q\x1b[21t\x1b[14t\x1b[?2004$p\x1b[?u\x1b[>8u\x1b[=8;1u\x1b[<u\x1b[?1;1S\x1b[?4m\x1b]11;?\x07\x1bZ\x1b[1$w\x1b[2$u\x1b[?9001h\x1b[?09001h\x1b[?25;9001h\x1b[?2048h\x1b[20h\x1b[1;1;1;1;1*y\x1b[22;0;0t\x1b[2 q\x1b[>4;1m\x1b[?25h\x1b[?12;25h\x1b[?1049l\x1b[4l\x1b[1;31mx",
            &mut out,
        );
        assert_eq!(
            out,
            b"\x1b[22;0;0t\x1b[2 q\x1b[>4;1m\x1b[?25h\x1b[?12;25h\x1b[?1049l\x1b[4l\x1b[1;31mx"
                .to_vec()
        );
    }

    #[test]
    fn clipboard_writes_and_terminal_strings_never_reach_a_guest() {
        let input: &[u8] = b"a\x1b]52;c;Y3VybCBldmlsfHNoCg==\x07b\x1b]52;;eA==\x1b\\c\x1bPtmux;\x1b\x1b]52;c;eA==\x07\x1b\\d\x1b_apc\x1b\\e\x1b]2;title\x07f";
        let want: &[u8] = b"abc\x1b\\de\x1b]2;title\x07f";
        assert_eq!(run(&[input]), want);
        for cut in 0..input.len() {
            assert_eq!(run(&[&input[..cut], &input[cut..]]), want, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes), want);
        // Spelled as a terminal still reads it: a leading zero, a C0
        // control inside, C1 controls written as UTF-8; other terminals'
        // clipboards.
        for input in [
            &b"a\x1b]052;c;eA==\x07b"[..],
            b"a\x1b\r]52;c;eA==\x07b",
            b"a\xc2\x9d52;c;eA==\xc2\x9cb",
            b"a\x1b]1337;Copy=;eA==\x07b",
            b"a\x1b]5522;type=write\x1b\\b",
            // tmux's own Swd, with set-titles on: the folder the host's
            // terminal opens its next tab in.
            b"a\x1b]7;file:///home/host/proj/evil\x07b",
        ] {
            // The host's own terminal (`attach`) too.
            let mut host = Filter::for_host();
            let mut shown = vec![];
            host.push(input, &mut shown);
            assert!(!shown.contains(&0x1b), "{input:?} gave the host {shown:?}");
            let out = run(&[input]);
            // No sequence starts: no ESC, no C1 control (the C1 one's
            // words stay as plain text, which a terminal only shows).
            assert!(
                !out.contains(&0x1b)
                    && !out
                        .windows(2)
                        .any(|w| w[0] == 0xc2 && (0x80..=0x9f).contains(&w[1])),
                "{input:?} gave {out:?}"
            );
            assert!(
                out.starts_with(b"a") && out.ends_with(b"b"),
                "{input:?} gave {out:?}"
            );
            for cut in 0..input.len() {
                assert_eq!(run(&[&input[..cut], &input[cut..]]), out, "cut at {cut}");
            }
        }
        // A C1 CSI cannot switch to the alternate screen either.
        assert_eq!(run(&[b"a\xc2\x9b?1049hb"]), b"a?1049hb");
        // Longer than the filter holds, in pieces, with either ending, and
        // with a control inside its start; a long title is dropped too.
        for (open, end) in [
            (&b"x\x1b]52;c;"[..], &b"\x07"[..]),
            (b"x\x1b]52;c;", b"\x1b\\"),
            (b"x\x1b\r]52;c;", b"\x07"),
            (b"x\x1b]2;", b"\x07"),
        ] {
            let mut huge = open.to_vec();
            huge.extend(std::iter::repeat_n(b'A', 3 * MAX_HELD));
            huge.extend_from_slice(end);
            huge.extend_from_slice(b"y\x1b[1mz");
            let want: &[u8] = b"xy\x1b[1mz";
            assert_eq!(run(&[&huge]), want);
            for size in [1000, 4096, 8191, 8193] {
                let chunks: Vec<&[u8]> = huge.chunks(size).collect();
                assert_eq!(run(&chunks), want, "chunks of {size}");
            }
        }
    }

    #[test]
    fn the_scroll_region_is_remembered() {
        let mut f = Filter::default();
        let mut out = Vec::new();
        assert_eq!(f.region(), b"\x1b[r");
        f.push(b"\x1b[1;23r\x1b[?25l", &mut out);
        assert_eq!(f.region(), b"\x1b[1;23r");
        f.push(b"\x1b[r", &mut out);
        assert_eq!(f.region(), b"\x1b[r");
        f.push(b"\x1b[2;9r\x1bc", &mut out);
        assert_eq!(f.region(), b"\x1b[r");
    }
}
