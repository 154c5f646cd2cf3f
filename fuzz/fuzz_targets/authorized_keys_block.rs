#![no_main]
//! The managed-block reader/writer: for any file content, removing the block
//! restores the foreign bytes exactly, and a block added then removed
//! leaves the file as it was.

use libfuzzer_sys::fuzz_target;
use pairjail::keys::block::{join, split};

fuzz_target!(|data: &[u8]| {
    let Ok(mut s) = split(data) else { return };
    let had_block = !s.lines.is_empty() || join(&s) != data;
    let original_foreign = {
        let mut t = s.clone();
        t.lines.clear();
        join(&t)
    };
    s.lines = vec!["restrict,pty ssh-ed25519 AAAA pairjail:s:g".into()];
    let with = join(&s);
    let mut back = split(&with).expect("a file pairjail wrote must parse");
    assert_eq!(back.lines, s.lines);
    back.lines.clear();
    assert_eq!(join(&back), original_foreign);
    if !had_block {
        assert_eq!(original_foreign, data);
    }
});
