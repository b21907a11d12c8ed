//! SMS gateways: a gateway-neutral message and event vocabulary, the text encodings every
//! gateway shares (GSM 7-bit / UCS-2, concatenation), the SMPP v3.4 gateway in `smpp`
//! (the only module that names `rusmpp`/`rusmppc`), and the HTTP (JSON API + signed
//! webhooks) gateway in `http`.
//!
//! A gateway takes `SmsMessage`s and reports `SmsEvent`s; deciding what to send and recording
//! the outcome is the caller's job (the survey service in `crate::surveys`, with its outbox).

pub mod concat;
pub mod http;
pub mod rate;
pub mod smpp;

use std::time::Duration;

/// One text to one handset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmsMessage {
    /// The caller's stable reference (the survey id). Every event about this message names it;
    /// the concatenation reference of a long text is derived from it, so a resent text uses
    /// the same reference as the first try.
    pub id: u64,
    /// E.164 with the leading `+`, e.g. `+8613800138000`.
    pub to: String,
    pub text: String,
}

/// What a gateway reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmsEvent {
    /// Bound to the SMSC (after start and after every reconnect).
    Connected { peer: String },
    /// Not bound: the connection or bind failed or was lost. Queued messages wait.
    Disconnected { reason: String, retry_in: Duration },
    /// The SMSC accepted every part; `gateway_ids` holds its message id for each part, in
    /// order (one entry for a single-part text). Receipts name one of these.
    Submitted { id: u64, gateway_ids: Vec<String> },
    /// The message will not be sent by this gateway. `permanent`: the SMSC refused it (a
    /// retry would be refused too); otherwise temporary failures used up the attempts.
    Failed {
        id: u64,
        permanent: bool,
        reason: String,
    },
    /// The SMSC asked us to slow down; the message is retried after `retry_in`.
    Throttled { id: u64, retry_in: Duration },
    /// A delivery receipt. `state` is the receipt's `stat:` (DELIVRD, UNDELIV, EXPIRED,
    /// REJECTD, DELETED, UNKNOWN are final; ENROUTE, ACCEPTD come with intermediate
    /// notifications); `delivered` is true only for DELIVRD. For a long text each part gets
    /// its own receipt, naming that part's id.
    DeliveryReceipt {
        gateway_id: String,
        delivered: bool,
        state: String,
        error: Option<String>,
    },
    /// A text from a handset (a reply). `from` as the SMSC gave it.
    Inbound {
        from: String,
        to: String,
        text: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SmsError {
    #[error("destination {0:?} is not an E.164 number (+ and 2-15 digits)")]
    BadDestination(String),
    #[error("empty text")]
    EmptyText,
    #[error("text needs {0} parts; at most {MAX_PARTS} are allowed")]
    TooLong(usize),
    #[error("the gateway has stopped")]
    Stopped,
}

/// The most parts a concatenated text may have (the UDH counts them in one octet).
pub const MAX_PARTS: usize = 255;

/// The alphabet chosen for a text, by content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    /// GSM 03.38 default alphabet, one septet per octet (SMPP data_coding 0).
    Gsm7,
    /// UCS-2 big endian (SMPP data_coding 8). Characters outside the BMP go as UTF-16
    /// surrogate pairs, which handsets show correctly.
    Ucs2,
}

impl Coding {
    pub fn data_coding(self) -> u8 {
        match self {
            Coding::Gsm7 => 0x00,
            Coding::Ucs2 => 0x08,
        }
    }
}

/// A text ready for submit_sm: its coding and each part's short_message (with the UDH when
/// there are several parts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedText {
    pub coding: Coding,
    pub parts: Vec<Vec<u8>>,
}

impl EncodedText {
    pub fn concatenated(&self) -> bool {
        self.parts.len() > 1
    }
}

/// GSM 03.38 default alphabet; index = septet. 0x1B is the escape to the extension table.
const GSM7_BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// GSM 03.38 extension table: (septet after ESC, character).
const GSM7_EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0c}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

const ESC: u8 = 0x1B;

fn gsm7_septets(c: char) -> Option<(u8, Option<u8>)> {
    if c != '\u{1b}' {
        if let Some(i) = GSM7_BASIC.iter().position(|&g| g == c) {
            return Some((i as u8, None));
        }
    }
    GSM7_EXTENSION
        .iter()
        .find(|(_, g)| *g == c)
        .map(|(s, _)| (ESC, Some(*s)))
}

/// The text in the GSM 7-bit default alphabet (unpacked: one septet per octet, extension
/// characters as ESC + septet), or `None` when a character is not in it.
pub fn gsm7_encode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        let (a, b) = gsm7_septets(c)?;
        out.push(a);
        if let Some(b) = b {
            out.push(b);
        }
    }
    Some(out)
}

/// Unpacked GSM 7-bit to text; unknown escapes and octets above 0x7F become U+FFFD.
pub fn gsm7_decode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut it = bytes.iter();
    while let Some(&b) = it.next() {
        if b == ESC {
            match it.next() {
                Some(&e) => out.push(
                    GSM7_EXTENSION
                        .iter()
                        .find(|(s, _)| *s == e)
                        .map_or('\u{fffd}', |(_, c)| *c),
                ),
                None => out.push('\u{fffd}'),
            }
        } else if b < 0x80 {
            out.push(GSM7_BASIC[b as usize]);
        } else {
            out.push('\u{fffd}');
        }
    }
    out
}

/// UCS-2 / UTF-16 big endian to text (lossy; an odd trailing octet is dropped as U+FFFD).
pub fn ucs2_decode(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .collect();
    let mut s = String::from_utf16_lossy(&units);
    if bytes.len() % 2 == 1 {
        s.push('\u{fffd}');
    }
    s
}

/// The short_message of an incoming text decoded by its data_coding; a UDH (esm_class bit
/// 0x40) is skipped.
pub fn decode_short_message(data_coding: u8, esm_class: u8, bytes: &[u8]) -> String {
    let body = if esm_class & 0x40 != 0 && !bytes.is_empty() {
        let udhl = bytes[0] as usize;
        bytes.get(udhl + 1..).unwrap_or(&[])
    } else {
        bytes
    };
    match data_coding {
        0x00 | 0x01 => gsm7_or_ascii(body),
        0x03 => body.iter().map(|&b| b as char).collect(),
        0x08 => ucs2_decode(body),
        // Class-marked UCS-2 (0x18, 0x19... and 0xF?: general data coding groups).
        dc if dc & 0xC0 == 0 && dc & 0x0C == 0x08 => ucs2_decode(body),
        _ => String::from_utf8_lossy(body).into_owned(),
    }
}

/// data_coding 0 is "SMSC default": GSM 7-bit by the spec, but many SMSCs pass ASCII or
/// UTF-8 under it. Both agree on letters, digits and most punctuation; take the octets as
/// UTF-8 unless a control septet (other than LF/CR) or invalid UTF-8 shows they are GSM.
fn gsm7_or_ascii(body: &[u8]) -> String {
    let gsm_only = body.iter().any(|&b| b < 0x20 && b != b'\n' && b != b'\r');
    match std::str::from_utf8(body) {
        Ok(s) if !gsm_only => s.to_string(),
        _ => gsm7_decode(body),
    }
}

/// Single-part and per-part capacity, in units of the coding (septets or UTF-16 units).
const GSM7_SINGLE: usize = 160;
const GSM7_PART: usize = 153;
const UCS2_SINGLE: usize = 70;
const UCS2_PART: usize = 67;

/// Encodes `text` in GSM 7-bit when every character is in the default alphabet (or its
/// extension), otherwise UCS-2, split into concatenated parts with an 8-bit-reference UDH
/// (`05 00 03 ref total seq`) when it does not fit one message. Parts never split an escape
/// pair or a surrogate pair.
pub fn encode_text(text: &str, reference: u8) -> Result<EncodedText, SmsError> {
    if text.is_empty() {
        return Err(SmsError::EmptyText);
    }
    // Chunks of units that must stay together: a GSM escape pair, a surrogate pair.
    let (coding, units): (Coding, Vec<Vec<u8>>) = match gsm7_encode(text) {
        Some(_) => (
            Coding::Gsm7,
            text.chars()
                .map(|c| {
                    let (a, b) = gsm7_septets(c).unwrap_or((0x3F, None));
                    let mut v = vec![a];
                    v.extend(b);
                    v
                })
                .collect(),
        ),
        None => (
            Coding::Ucs2,
            text.chars()
                .map(|c| {
                    let mut buf = [0u16; 2];
                    c.encode_utf16(&mut buf)
                        .iter()
                        .flat_map(|u| u.to_be_bytes())
                        .collect()
                })
                .collect(),
        ),
    };
    let unit_len = |chunk: &Vec<u8>| match coding {
        Coding::Gsm7 => chunk.len(),
        Coding::Ucs2 => chunk.len() / 2,
    };
    let total: usize = units.iter().map(unit_len).sum();
    let (single, part) = match coding {
        Coding::Gsm7 => (GSM7_SINGLE, GSM7_PART),
        Coding::Ucs2 => (UCS2_SINGLE, UCS2_PART),
    };
    if total <= single {
        return Ok(EncodedText {
            coding,
            parts: vec![units.concat()],
        });
    }
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut cur_units = 0;
    for chunk in &units {
        let n = unit_len(chunk);
        if cur_units + n > part {
            bodies.push(std::mem::take(&mut cur));
            cur_units = 0;
        }
        cur.extend_from_slice(chunk);
        cur_units += n;
    }
    if !cur.is_empty() {
        bodies.push(cur);
    }
    if bodies.len() > MAX_PARTS {
        return Err(SmsError::TooLong(bodies.len()));
    }
    let count = bodies.len() as u8;
    let parts = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let mut sm = vec![0x05, 0x00, 0x03, reference, count, (i + 1) as u8];
            sm.extend(body);
            sm
        })
        .collect();
    Ok(EncodedText { coding, parts })
}

/// `+` and 2-15 digits (E.164 allows at most 15).
pub fn check_e164(to: &str) -> Result<&str, SmsError> {
    match to.strip_prefix('+') {
        Some(d) if (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) => Ok(d),
        _ => Err(SmsError::BadDestination(to.to_string())),
    }
}

/// The fields of an SMPP delivery receipt text (SMPP 3.4 appendix B):
/// `id:IIII sub:SSS dlvrd:DDD submit date:... done date:... stat:DDDDDDD err:E text:...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptText {
    pub id: Option<String>,
    pub stat: Option<String>,
    pub err: Option<String>,
}

/// Reads `id:`, `stat:` and `err:` from a receipt text; fields may come in any order and
/// case. `None` when the text has none of them.
pub fn parse_receipt_text(text: &str) -> Option<ReceiptText> {
    let mut r = ReceiptText {
        id: None,
        stat: None,
        err: None,
    };
    for word in text.split_whitespace() {
        let Some((k, v)) = word.split_once(':') else {
            continue;
        };
        let slot = match k.to_ascii_lowercase().as_str() {
            "id" => &mut r.id,
            "stat" => &mut r.stat,
            "err" => &mut r.err,
            "text" => break,
            _ => continue,
        };
        if slot.is_none() && !v.is_empty() {
            *slot = Some(v.to_string());
        }
    }
    (r.id.is_some() || r.stat.is_some()).then_some(r)
}

#[cfg(test)]
mod tests;
