#![no_main]
//! RFC 4733 telephone-event payload parsing must never panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ccswitch::proto::dtmf::parse_rfc4733(data);
});
