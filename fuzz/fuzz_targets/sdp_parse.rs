#![no_main]
//! SDP parsing and negotiation must never panic.

use ccswitch::proto::sdp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = sdp::parse(data) {
        if let Ok(n) = sdp::negotiate(&s) {
            let _ = sdp::answer("127.0.0.1".parse().unwrap(), 4000, 1, 1, &n);
        }
    }
});
