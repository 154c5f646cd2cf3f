//! Keeps guests' terminals out of the alternate screen.
//!
//! tmux switches its client's terminal to the alternate screen when it
//! starts and back when it ends. A guest whose connection ends without
//! tmux's goodbye (`~.`, a dropped network, a kill) would be left in it,
//! with tmux's last picture and no prompt. The broker drops the switch
//! (`CSI ? 1049 h`, `CSI ? 1047 h`, `CSI ? 47 h`) from what it forwards, so
//! the guest stays on the normal screen whatever happens; the relay clears
//! it on the way out. Sequences split across reads are held back until
//! they are complete.

/// The sequences dropped. All start with ESC [ ? and end with `h`.
const DROPPED: [&[u8]; 3] = [b"\x1b[?1049h", b"\x1b[?1047h", b"\x1b[?47h"];

#[derive(Debug, Default)]
pub struct Filter {
    /// The start of a possible dropped sequence, from the previous chunk.
    held: Vec<u8>,
}

impl Filter {
    /// Appends `input`, minus the alternate-screen switches, to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut data = std::mem::take(&mut self.held);
        data.extend_from_slice(input);
        let mut i = 0;
        while i < data.len() {
            if data[i] != 0x1b {
                // Copy the run up to the next ESC at once.
                let end = data[i..]
                    .iter()
                    .position(|&b| b == 0x1b)
                    .map_or(data.len(), |p| i + p);
                out.extend_from_slice(&data[i..end]);
                i = end;
                continue;
            }
            let rest = &data[i..];
            if let Some(seq) = DROPPED.iter().find(|s| rest.starts_with(s)) {
                i += seq.len();
                continue;
            }
            if DROPPED.iter().any(|s| s.starts_with(rest)) {
                // Could still become one: wait for the next chunk.
                self.held = rest.to_vec();
                return;
            }
            out.push(0x1b);
            i += 1;
        }
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
        let input: &[u8] = b"a\x1b[?1049h\x1b[22;0;0tb\x1b[?47hc\x1b[?1049ld\x1b[?1047h\x1b[1me";
        let want: &[u8] = b"a\x1b[22;0;0tbc\x1b[?1049ld\x1b[1me";
        assert_eq!(run(&[input]), want);
        // Split at every position, and byte by byte.
        for cut in 0..input.len() {
            assert_eq!(run(&[&input[..cut], &input[cut..]]), want, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes), want);
    }

    #[test]
    fn a_lone_escape_at_the_end_is_held_then_released() {
        let mut f = Filter::default();
        let mut out = Vec::new();
        f.push(b"x\x1b", &mut out);
        assert_eq!(out, b"x");
        f.push(b"[0m", &mut out);
        assert_eq!(out, b"x\x1b[0m");
    }
}
