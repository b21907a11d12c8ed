#![no_main]
//! RTP header parsing must never panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ccswitch::proto::rtp::parse(data);
});
