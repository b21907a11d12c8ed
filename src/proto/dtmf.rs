//! DTMF digits: RFC 4733 telephone-event payloads and SIP INFO bodies.

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    #[error("telephone-event payload too short ({0} bytes, need 4)")]
    TooShort(usize),
    #[error("unsupported DTMF content type {0:?}")]
    UnsupportedContentType(String),
    #[error("no Signal= line in dtmf-relay body")]
    NoSignal,
    #[error("not a DTMF digit: {0:?}")]
    BadDigit(String),
}

/// One RFC 4733 §2.3 payload: event, E bit, volume, duration (timestamp units).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc4733Event {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

/// Parses the first 4-byte event block (a packet may carry redundant blocks after it).
pub fn parse_rfc4733(payload: &[u8]) -> Result<Rfc4733Event, DtmfError> {
    match payload {
        [event, flags, d0, d1, ..] => Ok(Rfc4733Event {
            event: *event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([*d0, *d1]),
        }),
        _ => Err(DtmfError::TooShort(payload.len())),
    }
}

/// RFC 4733 §3.2 event codes 0-15 to the keypad digit; other events (flash, tones) are None.
pub fn event_to_digit(e: u8) -> Option<char> {
    const DIGITS: &[u8; 16] = b"0123456789*#ABCD";
    DIGITS.get(usize::from(e)).map(|&b| char::from(b))
}

fn normalise_digit(s: &str) -> Result<char, DtmfError> {
    let s = s.trim();
    // Some phones send the event code ("10" for *) rather than the key.
    if let Ok(code) = s.parse::<u8>() {
        return event_to_digit(code).ok_or_else(|| DtmfError::BadDigit(s.to_string()));
    }
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if matches!(c.to_ascii_uppercase(), '*' | '#' | 'A'..='D') => {
            Ok(c.to_ascii_uppercase())
        }
        _ => Err(DtmfError::BadDigit(s.to_string())),
    }
}

/// The digit in a SIP INFO body: `application/dtmf-relay` ("Signal=5\r\nDuration=160") or
/// `application/dtmf` ("5"). Content-type parameters and case are ignored.
pub fn parse_info_body(content_type: &str, body: &[u8]) -> Result<char, DtmfError> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let text = String::from_utf8_lossy(body);
    match mime.as_str() {
        "application/dtmf-relay" => {
            let signal = text
                .lines()
                .filter_map(|line| line.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("signal"))
                .map(|(_, v)| v)
                .ok_or(DtmfError::NoSignal)?;
            normalise_digit(signal)
        }
        "application/dtmf" => normalise_digit(&text),
        _ => Err(DtmfError::UnsupportedContentType(content_type.to_string())),
    }
}

/// Turns a leg's telephone-event packets into digits: one per event. An event is identified by
/// its RTP timestamp (RFC 4733 §2.5.1.2: every packet of one event shares the start
/// timestamp), so updates and the thrice-sent end packet of the same event report nothing.
#[derive(Clone, Debug, Default)]
pub struct DigitDetector {
    last: Option<(u32, u8)>,
}

impl DigitDetector {
    pub fn new() -> DigitDetector {
        DigitDetector::default()
    }

    /// Feeds one received event; returns the digit when this packet starts a new event. The
    /// first packet seen counts even if it is an end packet (the start was lost).
    pub fn feed(&mut self, timestamp: u32, event: &Rfc4733Event) -> Option<char> {
        let key = (timestamp, event.event);
        if self.last == Some(key) {
            return None;
        }
        self.last = Some(key);
        event_to_digit(event.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(event: u8, end: bool, duration: u16) -> Rfc4733Event {
        Rfc4733Event {
            event,
            end,
            volume: 10,
            duration,
        }
    }

    #[test]
    fn parses_rfc4733_payload() {
        let e = parse_rfc4733(&[11, 0x8a, 0x03, 0x20]).unwrap();
        assert_eq!(e, ev(11, true, 800));
        assert_eq!(event_to_digit(e.event), Some('#'));
        assert_eq!(parse_rfc4733(&[1, 2]), Err(DtmfError::TooShort(2)));
        assert_eq!(event_to_digit(16), None);
    }

    #[test]
    fn detector_reports_one_digit_per_event() {
        let mut d = DigitDetector::new();
        let mut got = Vec::new();
        // "5": start, two updates, end x3; then "5" again (new timestamp); then "1".
        for (ts, e) in [
            (1000, ev(5, false, 160)),
            (1000, ev(5, false, 320)),
            (1000, ev(5, false, 480)),
            (1000, ev(5, true, 640)),
            (1000, ev(5, true, 640)),
            (1000, ev(5, true, 640)),
            (3000, ev(5, false, 160)),
            (3000, ev(5, true, 320)),
            (5000, ev(1, true, 320)), // start lost: the end packet still counts once
            (5000, ev(1, true, 320)),
        ] {
            got.extend(d.feed(ts, &e));
        }
        assert_eq!(got, vec!['5', '5', '1']);
    }

    #[test]
    fn info_bodies() {
        assert_eq!(
            parse_info_body("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
            Ok('5')
        );
        assert_eq!(
            parse_info_body("Application/DTMF-Relay; x=y", b"signal= #\nDuration=100"),
            Ok('#')
        );
        assert_eq!(
            parse_info_body("application/dtmf-relay", b"Signal=10\r\n"),
            Ok('*')
        );
        assert_eq!(parse_info_body("application/dtmf", b"7"), Ok('7'));
        assert_eq!(parse_info_body("application/dtmf", b" a \r\n"), Ok('A'));
        assert_eq!(
            parse_info_body("application/dtmf-relay", b"Duration=160"),
            Err(DtmfError::NoSignal)
        );
        assert!(matches!(
            parse_info_body("application/dtmf", b"55"),
            Err(DtmfError::BadDigit(_))
        ));
        assert!(matches!(
            parse_info_body("application/dtmf", b"E"),
            Err(DtmfError::BadDigit(_))
        ));
        assert!(matches!(
            parse_info_body("text/plain", b"5"),
            Err(DtmfError::UnsupportedContentType(_))
        ));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(ct in ".{0,40}", body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_info_body(&ct, &body);
            let _ = parse_info_body("application/dtmf-relay", &body);
            let _ = parse_info_body("application/dtmf", &body);
            let _ = parse_rfc4733(&body);
        }
    }
}
