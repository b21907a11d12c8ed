#![no_main]
//! SIP parsing, error responses and TCP framing must never panic.

use ccswitch::proto::sip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sip::frame(data);
    match sip::parse(data) {
        Ok(sip::Message::Request(r)) => {
            let out = sip::response(
                &r,
                200,
                "OK",
                &sip::ResponseOpts {
                    to_tag: Some("t"),
                    source: Some("127.0.0.1:5060".parse().unwrap()),
                    ..Default::default()
                },
            );
            // What we write must parse back.
            assert!(sip::parse(&out).is_ok());
        }
        Ok(sip::Message::Response(_)) => {}
        Err(e) => {
            if let Some(s) = e.salvage {
                let _ =
                    sip::error_response(&s, e.status, &e.reason, "127.0.0.1:5060".parse().unwrap());
            }
        }
    }
});
