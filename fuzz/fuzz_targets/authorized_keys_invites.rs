#![no_main]
//! The authorized-keys reader: for any invites file a local user can
//! write, every line it yields is one line starting with `restrict,`.

use libfuzzer_sys::fuzz_target;
use pairjail::keys::authorized::lines_from;
use pairjail::keys::key;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let offered = key::parse(include_str!("../../tests/data/keys/ed25519.pub"))
        .expect("the test key parses");
    let found = lines_from(
        data,
        "host",
        &offered,
        Path::new("/run/pairjail"),
        Path::new("/usr/local/bin/pairjail"),
        |_| true,
    );
    for f in found {
        assert!(f.line.starts_with("restrict,"), "{:?}", f.line);
        assert!(!f.line.contains(['\n', '\r', '\0']), "{:?}", f.line);
        assert_eq!(f.line.matches(" pairjail:").count(), 1, "{:?}", f.line);
    }
});
