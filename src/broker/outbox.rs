//! What waits to be written to a guest's connection: frames queued whole
//! (a mirror group's are shared, not copied) and written with one
//! vectored write per wake-up.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;

/// Frames written in one call at most.
const MAX_SLICES: usize = 64;

#[derive(Default)]
pub struct Outbox {
    frames: VecDeque<Arc<[u8]>>,
    /// How much of the first frame is already written.
    done: usize,
    /// Bytes still to write.
    len: usize,
}

impl Outbox {
    pub fn push(&mut self, frame: Arc<[u8]>) {
        self.len += frame.len();
        self.frames.push_back(frame);
    }

    pub fn push_vec(&mut self, frame: Vec<u8>) {
        if !frame.is_empty() {
            self.push(Arc::from(frame));
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes as much as `write` takes (one call); returns how much.
    pub fn write_with(
        &mut self,
        write: impl FnOnce(&[IoSlice<'_>]) -> std::io::Result<usize>,
    ) -> std::io::Result<usize> {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let mut k = 0;
        for (i, f) in self.frames.iter().take(MAX_SLICES).enumerate() {
            let start = if i == 0 { self.done } else { 0 };
            slices[i] = IoSlice::new(&f[start..]);
            k = i + 1;
        }
        let n = write(&slices[..k])?;
        self.advance(n);
        Ok(n)
    }

    fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(first) = self.frames.front() else {
                break;
            };
            let left = first.len() - self.done;
            if n < left {
                self.done += n;
                return;
            }
            n -= left;
            self.done = 0;
            self.frames.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_vectored_writes_keep_every_byte_in_order() {
        let mut o = Outbox::default();
        for f in [&b"abc"[..], b"", b"de", b"fghij"] {
            o.push(Arc::from(f));
        }
        o.push_vec(b"k".to_vec());
        assert_eq!(o.len(), 11);
        let mut got = Vec::new();
        // A writer that takes at most 4 bytes a call.
        while !o.is_empty() {
            o.write_with(|slices| {
                let mut n = 0;
                for s in slices {
                    for &b in s.iter() {
                        if n == 4 {
                            return Ok(n);
                        }
                        got.push(b);
                        n += 1;
                    }
                }
                Ok(n)
            })
            .unwrap();
        }
        assert_eq!(got, b"abcdefghijk");
        assert_eq!(o.len(), 0);
    }
}
