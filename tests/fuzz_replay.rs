//! Replays every seed in fuzz/corpus/<target>/ through the parsers on stable Rust, so the
//! corpus (and any crash input saved into it) is checked by every `cargo test`.

use ccswitch::proto::{sdp, sip};
use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn sip_corpus() {
    for (path, data) in corpus("sip_parse") {
        let _ = sip::frame(&data);
        match sip::parse(&data) {
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
                assert!(
                    sip::parse(&out).is_ok(),
                    "{}: our response does not parse back",
                    path.display()
                );
            }
            Ok(sip::Message::Response(_)) => {}
            Err(e) => {
                if let Some(s) = e.salvage {
                    let _ = sip::error_response(
                        &s,
                        e.status,
                        &e.reason,
                        "127.0.0.1:5060".parse().unwrap(),
                    );
                }
            }
        }
    }
}

#[test]
fn sdp_corpus() {
    for (_, data) in corpus("sdp_parse") {
        if let Ok(s) = sdp::parse(&data) {
            if let Ok(n) = sdp::negotiate(&s) {
                let a = sdp::answer("127.0.0.1".parse().unwrap(), 4000, 1, 1, &n);
                assert!(sdp::parse(&a).is_ok());
            }
        }
    }
}

/// RTP and RFC 4733 seeds through our parsers (what the fuzz targets call), plus the digit
/// detector that consumes parsed events.
#[test]
fn rtp_and_rfc4733_corpora() {
    for (_, data) in corpus("rtp_parse") {
        let _ = ccswitch::proto::rtp::parse(&data);
    }
    let mut detector = ccswitch::proto::dtmf::DigitDetector::default();
    for (i, (_, data)) in corpus("rfc4733_parse").into_iter().enumerate() {
        if let Ok(ev) = ccswitch::proto::dtmf::parse_rfc4733(&data) {
            let _ = ccswitch::proto::dtmf::event_to_digit(ev.event);
            let _ = detector.feed(i as u32, &ev);
        }
    }
}

/// SMS survey replies (and the same bytes as a caller number): what the `survey_reply`
/// target calls, plus the readings the seeds were chosen for.
#[test]
fn survey_reply_corpus() {
    use ccswitch::engine::survey::{numbers, parse_reply, NumberRules, Reply, Scale};
    let rules = NumberRules {
        default_region: numbers::region("CN").expect("CN"),
        internal_max_digits: 6,
        extensions: Default::default(),
    };
    let mut seen = std::collections::BTreeMap::new();
    for (path, data) in corpus("survey_reply") {
        let text = String::from_utf8_lossy(&data);
        for scale in [Scale::Csat, Scale::Nps] {
            if let Reply::Score { score, .. } = parse_reply(&text, scale) {
                assert!(scale.range().contains(&score), "{}", path.display());
            }
        }
        let _ = rules.normalise(&text);
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        seen.insert(name, parse_reply(&text, Scale::Csat));
    }
    let score = |s: u8| Reply::Score {
        score: s,
        comment: None,
    };
    assert_eq!(seen["ascii_5"], score(5));
    assert_eq!(seen["fullwidth_5"], score(5));
    assert_eq!(seen["chinese_5"], score(5));
    assert_eq!(seen["td_fullwidth"], Reply::OptOut);
    assert_eq!(seen["tuiding"], Reply::OptOut);
    assert!(matches!(seen["yiban_word"], Reply::Unreadable { .. }));
}
