//! Caller numbers -> E.164 mobile numbers, with `phonenumber` (libphonenumber metadata).
//!
//! Input is the SIP From user part as received: `+8613812345678`, `008613812345678`,
//! `13812345678`, `anonymous`, empty (withheld), an agent extension, or garbage. Only a
//! tightly filtered string (an optional `+` and 6 to 17 digits) reaches the crate, so no
//! input can reach one of its internal unwraps; a proptest checks arbitrary strings.

use super::SkipReason;
use phonenumber::country::Id;
use phonenumber::{Mode, PhoneNumber, Type};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Fewest and most digits we hand to the parser: below 6 nothing is a reachable number,
/// above 17 (15 of E.164 plus a `00` prefix) nothing is valid.
const MIN_DIGITS: usize = 6;
const MAX_DIGITS: usize = 17;

/// Words SIP uses for a caller without a number (RFC 3323 `anonymous`, and what gateways
/// put into the user part for withheld numbers).
const ANONYMOUS_WORDS: [&str; 7] = [
    "anonymous",
    "unknown",
    "private",
    "withheld",
    "restricted",
    "unavailable",
    "anonymous.invalid",
];

/// A mobile number in E.164 (`+8613812345678`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164 {
    text: String,
    /// Digits of the country code (after the `+`).
    code_len: usize,
}

impl E164 {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// For logs and reports (PIPL: minimum necessary): the national number with all but
    /// its first 3 and last 4 digits hidden, `+86 138****5678`.
    pub fn masked(&self) -> String {
        let national = self.text.get(1 + self.code_len..).unwrap_or("");
        let code = self.text.get(1..1 + self.code_len).unwrap_or("");
        let n = national.len();
        let shown = if n >= 8 {
            format!(
                "{}{}{}",
                &national[..3],
                "*".repeat(n - 7),
                &national[n - 4..]
            )
        } else {
            "*".repeat(n)
        };
        format!("+{code} {shown}")
    }
}

impl std::fmt::Display for E164 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The keyed hash of a number (HMAC-SHA256 under the switch's number key, lower-case hex).
/// Stored next to every number, and alone once retention drops the number: the frequency
/// cap and opt-outs keep working without keeping who called. `number` is E.164 (`+86...`);
/// hash exactly that text so every component agrees.
pub fn number_hash(key: &[u8], number: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
        .expect("HMAC takes keys of any length");
    mac.update(number.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A number for logs and reports (PIPL: minimum necessary): all but the first 3 and last 4
/// digits hidden (`+86 138****5678` for E.164 via `E164::masked`; any other text: its
/// digits masked the same way, `138****5678`). Short inputs are fully hidden.
pub fn mask_number(raw: &str) -> String {
    let n = raw.chars().count();
    if n >= 8 {
        let chars: Vec<char> = raw.chars().collect();
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[n - 4..].iter().collect();
        format!("{head}{}{tail}", "*".repeat(n - 7))
    } else {
        "*".repeat(n)
    }
}

/// An international number keeps its country code and shows its national number the way
/// `E164::masked` does (`+86 138****5678`); anything else goes through `mask_number`.
/// Only `+` and 6 to 17 digits reach the phone number parser (as in `numbers.rs`).
pub fn mask_caller(raw: &str) -> String {
    let digits = raw
        .strip_prefix('+')
        .filter(|d| (6..=17).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()));
    if let Some(d) = digits {
        if let Ok(n) = phonenumber::parse(None, raw) {
            let code = n.code().value().to_string();
            if let Some(national) = d.strip_prefix(code.as_str()).filter(|n| !n.is_empty()) {
                return format!("+{code} {}", mask_number(national));
            }
        }
    }
    mask_number(raw)
}

/// How caller numbers are read (`[numbers]` of survey.toml plus the agent extensions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberRules {
    /// Region of numbers without a `+` or international prefix.
    pub default_region: Id,
    /// Numbers without a `+` of at most this many digits are internal extensions.
    pub internal_max_digits: usize,
    /// Agent extensions (`agents.toml`): always internal.
    pub extensions: BTreeSet<String>,
}

impl NumberRules {
    /// The caller's E.164 mobile number, or why it is not surveyed. Never panics.
    pub fn normalise(&self, raw: &str) -> Result<E164, SkipReason> {
        // `+86...;phone-context=...` or `...;user=phone`: only the number part counts.
        let raw = raw.split(';').next().unwrap_or("").trim();
        if raw.is_empty() || ANONYMOUS_WORDS.iter().any(|w| raw.eq_ignore_ascii_case(w)) {
            return Err(SkipReason::Anonymous);
        }
        if self.extensions.contains(raw) {
            return Err(SkipReason::Internal);
        }
        let dialable = dialable(raw).ok_or(SkipReason::Malformed)?;
        let digits = dialable.trim_start_matches('+');
        if self.extensions.contains(digits) {
            return Err(SkipReason::Internal);
        }
        if !dialable.starts_with('+') && digits.len() <= self.internal_max_digits {
            return Err(SkipReason::Internal);
        }
        if !(MIN_DIGITS..=MAX_DIGITS).contains(&digits.len()) {
            return Err(SkipReason::Malformed);
        }
        let number = phonenumber::parse(Some(self.default_region), &dialable)
            .map_err(|_| SkipReason::Malformed)?;
        if !number.is_valid() {
            return Err(SkipReason::Malformed);
        }
        match number.number_type(&phonenumber::metadata::DATABASE) {
            Type::Mobile | Type::FixedLineOrMobile => e164(&number).ok_or(SkipReason::Malformed),
            _ => Err(SkipReason::NotMobile),
        }
    }
}

/// `+` and digits only, visual separators (space, `-`, `.`, `(`, `)`) dropped, full-width
/// digits read as digits; None for anything else (letters, a `+` in the middle, ...).
fn dialable(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    for (i, c) in raw.chars().enumerate() {
        match c {
            '+' | '＋' if i == 0 => out.push('+'),
            '0'..='9' => out.push(c),
            '０'..='９' => out.push(char::from(b'0' + (c as u32 - '０' as u32) as u8)),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
        if out.len() > MAX_DIGITS + 1 {
            return None;
        }
    }
    Some(out)
}

fn e164(number: &PhoneNumber) -> Option<E164> {
    // The formatter reports an unknown country code as a fmt::Error; `to_string` would
    // panic on it, `write!` hands it back.
    let mut text = String::new();
    write!(text, "{}", number.format().mode(Mode::E164)).ok()?;
    let code_len = number.code().value().to_string().len();
    (text.starts_with('+') && text.len() > 1 + code_len).then_some(E164 { text, code_len })
}

/// The region for a CLDR code like "CN" or "US", if the phone metadata knows it.
pub fn region(code: &str) -> Option<Id> {
    let id: Id = code.parse().ok()?;
    phonenumber::metadata::DATABASE
        .by_id(id.as_ref())
        .map(|_| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules() -> NumberRules {
        NumberRules {
            default_region: region("CN").unwrap(),
            internal_max_digits: 6,
            extensions: ["1001", "1002", "8001234"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    fn ok(raw: &str) -> String {
        rules()
            .normalise(raw)
            .unwrap_or_else(|e| panic!("{raw}: {e}"))
            .to_string()
    }

    #[test]
    fn chinese_mobiles_in_every_spelling() {
        for raw in [
            "+8613812345678",
            "008613812345678",
            "13812345678",
            "138 1234 5678",
            "138-1234-5678",
            "+86 138 1234 5678",
            "+8613812345678;user=phone",
            "１３８１２３４５６７８",
        ] {
            assert_eq!(ok(raw), "+8613812345678", "{raw}");
        }
    }

    #[test]
    fn foreign_mobiles_keep_their_country() {
        assert_eq!(ok("+447911123456"), "+447911123456");
        assert_eq!(ok("+85291234567"), "+85291234567");
        // NANP numbers are FixedLineOrMobile: accepted (see the module doc of `survey`).
        assert_eq!(ok("+12015550123"), "+12015550123");
    }

    #[test]
    fn skip_reasons() {
        let r = rules();
        for raw in ["", "  ", "anonymous", "Anonymous", "withheld", "RESTRICTED"] {
            assert_eq!(r.normalise(raw), Err(SkipReason::Anonymous), "{raw:?}");
        }
        for raw in ["1001", "1002", "8001234", "+1002", "555", "123456"] {
            assert_eq!(r.normalise(raw), Err(SkipReason::Internal), "{raw:?}");
        }
        for raw in [
            "alice",
            "sip:13812345678",
            "138123456789012345678",
            "+",
            "+12",
            "1381234567+8",
            "+999123456789",
            "0000000",
            "+0000000",
        ] {
            assert_eq!(r.normalise(raw), Err(SkipReason::Malformed), "{raw:?}");
        }
        // Beijing landline, toll-free, a landline abroad.
        for raw in [
            "01088880000",
            "+861088880000",
            "4008005000",
            "+442079460000",
        ] {
            assert_eq!(r.normalise(raw), Err(SkipReason::NotMobile), "{raw:?}");
        }
    }

    #[test]
    fn masked_keeps_only_the_edges() {
        let n = rules().normalise("+8613812345678").unwrap();
        assert_eq!(n.masked(), "+86 138****5678");
        assert_eq!(n.as_str(), "+8613812345678");
    }

    #[test]
    fn regions() {
        assert!(region("CN").is_some());
        assert!(region("US").is_some());
        assert!(region("XX").is_none());
        assert!(region("cn").is_none());
        assert!(region("").is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,40}") {
            let _ = rules().normalise(&s);
        }

        #[test]
        fn digit_strings_never_panic(s in "(\\+|00|0|\\+0)?[0-9]{0,20}") {
            if let Ok(n) = rules().normalise(&s) {
                prop_assert!(n.as_str().starts_with('+'));
                prop_assert!(n.as_str()[1..].bytes().all(|b| b.is_ascii_digit()));
            }
        }
    }
}
