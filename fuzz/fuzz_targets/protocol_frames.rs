#![no_main]
//! The join/broker frame decoder: never panics, never reads past its
//! input, and re-encodes what it decodes to the same bytes.

use libfuzzer_sys::fuzz_target;
use pairjail::broker::protocol::Frame;

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while at < data.len() {
        match Frame::decode(&data[at..]) {
            Ok(Some((frame, used))) => {
                assert!(used >= 5 && at + used <= data.len());
                if let Frame::Data(_) = frame {
                    assert_eq!(frame.encode(), &data[at..at + used]);
                }
                at += used;
            }
            Ok(None) | Err(_) => break,
        }
    }
});
