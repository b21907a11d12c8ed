#![no_main]
//! Survey reply parsing (SMS text, any bytes) and caller-number normalisation must never
//! panic; a score is always on its scale.

use ccswitch::engine::survey::{parse_reply, NumberRules, Reply, Scale};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for scale in [Scale::Csat, Scale::Nps] {
        if let Reply::Score { score, .. } = parse_reply(&text, scale) {
            assert!(scale.range().contains(&score));
        }
    }
    let rules = NumberRules {
        default_region: ccswitch::engine::survey::numbers::region("CN").unwrap(),
        internal_max_digits: 6,
        extensions: Default::default(),
    };
    let _ = rules.normalise(&text);
});
