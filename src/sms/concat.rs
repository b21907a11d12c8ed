//! Reassembly of concatenated (multi-part) texts from handsets, sans-IO: the SMPP gateway
//! feeds each part with `now` and gets whole texts back. A reply longer than one SMS arrives
//! as several deliver_sm, each carrying where it belongs: a UDH concatenation element (IEI
//! 0x00, 8-bit reference; IEI 0x08, 16-bit reference) or the SMPP `sar_*` TLVs.
//!
//! Parts may come in any order and more than once (an SMSC resends a deliver_sm whose
//! response it missed). A set is keyed by (from, to, reference, total). Memory is bounded:
//! at most `Limits::max_sets` open sets and `Limits::max_bytes` buffered octets; beyond that
//! the oldest open set is given up. A set still incomplete `Limits::give_up_after` after its
//! first part is given up too. A given-up set is never dropped: its parts are delivered, in
//! order, as what they are (`Outcome::TimedOut` / `Outcome::Evicted`), so the reply is kept.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// Where one part sits in its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConcatRef {
    /// The sender's reference, the same on every part of one text (8 or 16 bits).
    pub reference: u16,
    /// Parts in the text (2-255).
    pub total: u8,
    /// This part's place, 1-based.
    pub seq: u8,
}

impl ConcatRef {
    /// A usable concatenation header: at least two parts, seq within them. A "1 of 1" header
    /// is a whole text; anything else is not a concatenation we can place.
    pub fn new(reference: u16, total: u8, seq: u8) -> Option<ConcatRef> {
        (total >= 2 && (1..=total).contains(&seq)).then_some(ConcatRef {
            reference,
            total,
            seq,
        })
    }
}

/// The concatenation element of a user data header (`short_message` starting with UDHL),
/// or None when there is none (or it is malformed). The first concatenation element wins.
pub fn udh_concat(short_message: &[u8]) -> Option<ConcatRef> {
    let udhl = *short_message.first()? as usize;
    let udh = short_message.get(1..1 + udhl)?;
    let mut i = 0;
    while i + 2 <= udh.len() {
        let (iei, len) = (udh[i], udh[i + 1] as usize);
        let data = udh.get(i + 2..i + 2 + len)?;
        match (iei, data) {
            (0x00, &[r, total, seq]) => return ConcatRef::new(u16::from(r), total, seq),
            (0x08, &[r1, r2, total, seq]) => {
                return ConcatRef::new(u16::from_be_bytes([r1, r2]), total, seq)
            }
            _ => {}
        }
        i += 2 + len;
    }
    None
}

/// One part of a concatenated text, as read from a deliver_sm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub from: String,
    pub to: String,
    pub concat: ConcatRef,
    pub data_coding: u8,
    /// The part's user data without the UDH, still encoded.
    pub payload: Vec<u8>,
}

/// Why a set was handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every part arrived.
    Complete,
    /// `give_up_after` passed without the missing parts.
    TimedOut,
    /// Pushed out by the caps on open sets or buffered octets.
    Evicted,
    /// The gateway stopped with the set open.
    Flushed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::TimedOut => "timed_out",
            Outcome::Evicted => "evicted",
            Outcome::Flushed => "flushed",
        }
    }
}

/// A text put back together (or as much of it as arrived).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assembled {
    pub from: String,
    pub to: String,
    pub text: String,
    pub reference: u16,
    /// Parts received and parts announced (equal when complete).
    pub received: u8,
    pub total: u8,
    pub outcome: Outcome,
}

/// What one `push` gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Texts handed out: the set this part completed, and any set evicted to make room.
    pub ready: Vec<Assembled>,
    /// The part was already held (or its text was already completed): ignored.
    pub duplicate: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub give_up_after: Duration,
    pub max_sets: usize,
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            give_up_after: Duration::from_secs(300),
            max_sets: 256,
            max_bytes: 1 << 20,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    from: String,
    to: String,
    reference: u16,
    total: u8,
}

struct Set {
    opened: Instant,
    /// Arrival order, to evict the oldest first.
    serial: u64,
    /// seq -> (data_coding, payload).
    parts: BTreeMap<u8, (u8, Vec<u8>)>,
    bytes: usize,
}

/// Open sets of parts, keyed by sender, recipient, reference and part count.
pub struct Reassembler {
    limits: Limits,
    open: HashMap<Key, Set>,
    bytes: usize,
    serial: u64,
    /// Sets completed within `give_up_after`, so a resent part of one is not taken for the
    /// start of a new text (at most `max_sets` remembered).
    done: VecDeque<(Instant, Key)>,
}

impl Reassembler {
    pub fn new(limits: Limits) -> Reassembler {
        Reassembler {
            limits: Limits {
                max_sets: limits.max_sets.max(1),
                ..limits
            },
            open: HashMap::new(),
            bytes: 0,
            serial: 0,
            done: VecDeque::new(),
        }
    }

    /// Open sets now.
    pub fn open_sets(&self) -> usize {
        self.open.len()
    }

    /// Octets held in open sets.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Adds a part; hands out the text it completes and any set evicted for room.
    pub fn push(&mut self, part: Part, now: Instant) -> Pushed {
        let mut out = Pushed::default();
        self.forget_done(now);
        let key = Key {
            from: part.from,
            to: part.to,
            reference: part.concat.reference,
            total: part.concat.total,
        };
        if self.done.iter().any(|(_, k)| *k == key) {
            out.duplicate = true;
            return out;
        }
        let seq = part.concat.seq;
        if self
            .open
            .get(&key)
            .is_some_and(|s| s.parts.contains_key(&seq))
        {
            out.duplicate = true;
            return out;
        }
        let size = part.payload.len();
        // Room first: never hold more than the caps allow (the set being added to stays).
        while (!self.open.contains_key(&key) && self.open.len() >= self.limits.max_sets)
            || self.bytes + size > self.limits.max_bytes
        {
            match self.oldest_except(&key) {
                Some(old) => out.ready.push(self.take(&old, Outcome::Evicted)),
                None => break,
            }
        }
        self.serial += 1;
        let serial = self.serial;
        let set = self.open.entry(key.clone()).or_insert_with(|| Set {
            opened: now,
            serial,
            parts: BTreeMap::new(),
            bytes: 0,
        });
        set.parts.insert(seq, (part.data_coding, part.payload));
        set.bytes += size;
        self.bytes += size;
        if set.parts.len() == usize::from(key.total) {
            out.ready.push(self.take(&key, Outcome::Complete));
            if self.done.len() >= self.limits.max_sets {
                self.done.pop_front();
            }
            self.done.push_back((now + self.limits.give_up_after, key));
        } else if self.bytes > self.limits.max_bytes {
            // One set alone is over the byte cap: give it up as it is.
            out.ready.push(self.take(&key, Outcome::Evicted));
        }
        out
    }

    /// Sets open for `give_up_after` or longer, handed out as they are.
    pub fn expire(&mut self, now: Instant) -> Vec<Assembled> {
        self.forget_done(now);
        let give_up = self.limits.give_up_after;
        let mut due: Vec<(u64, Key)> = self
            .open
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.opened) >= give_up)
            .map(|(k, s)| (s.serial, k.clone()))
            .collect();
        due.sort_by_key(|(serial, _)| *serial);
        due.into_iter()
            .map(|(_, k)| self.take(&k, Outcome::TimedOut))
            .collect()
    }

    /// When the next open set times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open
            .values()
            .map(|s| s.opened + self.limits.give_up_after)
            .min()
    }

    /// Every open set, handed out as it is (the gateway is stopping).
    pub fn flush(&mut self) -> Vec<Assembled> {
        let mut all: Vec<(u64, Key)> = self
            .open
            .iter()
            .map(|(k, s)| (s.serial, k.clone()))
            .collect();
        all.sort_by_key(|(serial, _)| *serial);
        all.into_iter()
            .map(|(_, k)| self.take(&k, Outcome::Flushed))
            .collect()
    }

    fn forget_done(&mut self, now: Instant) {
        while self.done.front().is_some_and(|(until, _)| *until <= now) {
            self.done.pop_front();
        }
    }

    fn oldest_except(&self, keep: &Key) -> Option<Key> {
        self.open
            .iter()
            .filter(|(k, _)| *k != keep)
            .min_by_key(|(_, s)| s.serial)
            .map(|(k, _)| k.clone())
    }

    fn take(&mut self, key: &Key, outcome: Outcome) -> Assembled {
        let set = self.open.remove(key).expect("taken sets are open");
        self.bytes -= set.bytes;
        Assembled {
            from: key.from.clone(),
            to: key.to.clone(),
            text: join(&set.parts),
            reference: key.reference,
            received: set.parts.len() as u8,
            total: key.total,
            outcome,
        }
    }
}

/// The parts in order. One coding throughout: the octets are joined before decoding, so a
/// character a handset split across two parts (a UTF-16 surrogate pair, a GSM escape) comes
/// out whole. Mixed codings (unusual): each part decoded on its own.
fn join(parts: &BTreeMap<u8, (u8, Vec<u8>)>) -> String {
    let mut codings = parts.values().map(|(dc, _)| *dc);
    let first = codings.next().unwrap_or(0);
    if codings.all(|dc| dc == first) {
        let bytes: Vec<u8> = parts
            .values()
            .flat_map(|(_, p)| p.iter().copied())
            .collect();
        super::decode_short_message(first, 0, &bytes)
    } else {
        parts
            .values()
            .map(|(dc, p)| super::decode_short_message(*dc, 0, p))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ucs2(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(|u| u.to_be_bytes()).collect()
    }

    fn part(reference: u16, total: u8, seq: u8, text: &str) -> Part {
        Part {
            from: "8613800138000".into(),
            to: "10690000".into(),
            concat: ConcatRef::new(reference, total, seq).unwrap(),
            data_coding: 8,
            payload: ucs2(text),
        }
    }

    fn limits() -> Limits {
        Limits {
            give_up_after: Duration::from_secs(300),
            max_sets: 4,
            max_bytes: 10_000,
        }
    }

    #[test]
    fn udh_concatenation_elements_8_and_16_bit() {
        assert_eq!(
            udh_concat(&[0x05, 0x00, 0x03, 0x2C, 0x03, 0x02, 0x00, 0x35]),
            ConcatRef::new(0x2C, 3, 2)
        );
        assert_eq!(
            udh_concat(&[0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01, 0x00]),
            ConcatRef::new(0x1234, 2, 1)
        );
        // Another element first (0x24: national language shift), then the concatenation.
        assert_eq!(
            udh_concat(&[0x08, 0x24, 0x01, 0x0D, 0x00, 0x03, 0x07, 0x02, 0x02]),
            ConcatRef::new(7, 2, 2)
        );
        // No concatenation element, cut short, or a part that cannot be placed.
        assert_eq!(udh_concat(&[0x03, 0x24, 0x01, 0x0D]), None);
        assert_eq!(udh_concat(&[0x05, 0x00, 0x03, 0x2C]), None);
        assert_eq!(udh_concat(&[0x05, 0x00, 0x03, 0x2C, 0x03, 0x04]), None);
        assert_eq!(udh_concat(&[0x05, 0x00, 0x03, 0x2C, 0x03, 0x00]), None);
        assert_eq!(udh_concat(&[0x05, 0x00, 0x03, 0x2C, 0x01, 0x01]), None);
        assert_eq!(udh_concat(&[]), None);
        assert_eq!(udh_concat(&[0x05, 0x00, 0x05, 0x2C, 0x03, 0x01]), None);
    }

    #[test]
    fn parts_out_of_order_come_out_as_one_text_in_order() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(limits());
        assert_eq!(r.push(part(7, 3, 3, "的服务"), t0), Pushed::default());
        assert_eq!(r.push(part(7, 3, 1, "5 很好，"), t0), Pushed::default());
        assert_eq!(r.open_sets(), 1);
        let out = r.push(part(7, 3, 2, "谢谢你们"), t0 + Duration::from_secs(2));
        assert!(!out.duplicate);
        assert_eq!(
            out.ready,
            vec![Assembled {
                from: "8613800138000".into(),
                to: "10690000".into(),
                text: "5 很好，谢谢你们的服务".into(),
                reference: 7,
                received: 3,
                total: 3,
                outcome: Outcome::Complete,
            }]
        );
        assert_eq!((r.open_sets(), r.buffered_bytes()), (0, 0));
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn a_character_split_across_parts_is_joined_before_decoding() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(limits());
        let bytes = ucs2("4 😀 ok");
        let (a, b) = bytes.split_at(6); // inside the surrogate pair
        let mut p1 = part(1, 2, 1, "");
        p1.payload = a.to_vec();
        let mut p2 = part(1, 2, 2, "");
        p2.payload = b.to_vec();
        r.push(p2, t0);
        assert_eq!(r.push(p1, t0).ready[0].text, "4 😀 ok");
    }

    #[test]
    fn duplicates_are_ignored_also_after_completion() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(limits());
        r.push(part(9, 2, 1, "4 the wait "), t0);
        let again = r.push(part(9, 2, 1, "4 the wait "), t0);
        assert!(again.duplicate && again.ready.is_empty());
        let done = r.push(part(9, 2, 2, "was long"), t0);
        assert_eq!(done.ready[0].text, "4 the wait was long");
        // The SMSC resends a part of a text already handed out: not a new text.
        let late = r.push(part(9, 2, 2, "was long"), t0 + Duration::from_secs(10));
        assert!(late.duplicate && late.ready.is_empty());
        assert_eq!(r.open_sets(), 0);
        // After the window, the same reference starts a new text (handsets reuse them).
        let later = t0 + Duration::from_secs(301);
        assert!(!r.push(part(9, 2, 1, "x"), later).duplicate);
    }

    #[test]
    fn sets_differ_by_sender_reference_and_total() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(limits());
        r.push(part(1, 2, 1, "a"), t0);
        r.push(part(2, 2, 1, "b"), t0);
        r.push(part(1, 3, 1, "c"), t0);
        let mut other = part(1, 2, 2, "d");
        other.from = "8613900000000".into();
        r.push(other, t0);
        assert_eq!(r.open_sets(), 4);
        let out = r.push(part(2, 2, 2, "B"), t0);
        assert_eq!(out.ready[0].text, "bB");
        assert_eq!(r.open_sets(), 3);
    }

    #[test]
    fn incomplete_sets_are_given_up_after_the_timeout_with_what_arrived() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(limits());
        r.push(part(5, 3, 1, "3 "), t0);
        r.push(part(5, 3, 3, "slow"), t0 + Duration::from_secs(100));
        r.push(part(6, 2, 2, "later"), t0 + Duration::from_secs(60));
        assert_eq!(r.next_deadline(), Some(t0 + Duration::from_secs(300)));
        assert!(r.expire(t0 + Duration::from_secs(299)).is_empty());
        let out = r.expire(t0 + Duration::from_secs(300));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].text, "3 slow");
        assert_eq!((out[0].received, out[0].total), (2, 3));
        assert_eq!(out[0].outcome, Outcome::TimedOut);
        assert_eq!(r.next_deadline(), Some(t0 + Duration::from_secs(360)));
        // A late part of a given-up text is kept too: it starts a set of its own.
        let late = r.push(part(5, 3, 2, "very "), t0 + Duration::from_secs(301));
        assert!(!late.duplicate && late.ready.is_empty());
        assert_eq!(r.open_sets(), 2);
        let rest = r.flush();
        assert_eq!(
            rest.iter()
                .map(|a| (a.text.as_str(), a.outcome))
                .collect::<Vec<_>>(),
            vec![("later", Outcome::Flushed), ("very ", Outcome::Flushed)]
        );
        assert_eq!((r.open_sets(), r.buffered_bytes()), (0, 0));
    }

    #[test]
    fn memory_is_bounded_by_sets_and_bytes_oldest_given_up_first() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(limits());
        for reference in 0..4 {
            assert!(r.push(part(reference, 2, 1, "x"), t0).ready.is_empty());
        }
        // A fifth set: the oldest (reference 0) goes out as it is.
        let out = r.push(part(4, 2, 1, "y"), t0);
        assert_eq!(out.ready.len(), 1);
        assert_eq!(out.ready[0].reference, 0);
        assert_eq!(out.ready[0].outcome, Outcome::Evicted);
        assert_eq!(r.open_sets(), 4);
        // A part for an open set needs no room.
        assert!(r.push(part(1, 2, 2, "z"), t0).ready[0].outcome == Outcome::Complete);

        // Bytes: 10 000 at most; a big part pushes the older sets out.
        let mut r = Reassembler::new(limits());
        r.push(part(1, 2, 1, &"a".repeat(2000)), t0); // 4000 octets
        r.push(part(2, 2, 1, &"b".repeat(2000)), t0);
        let out = r.push(part(3, 2, 1, &"c".repeat(2000)), t0);
        assert_eq!(out.ready.len(), 1);
        assert_eq!(out.ready[0].reference, 1);
        assert_eq!(out.ready[0].text.len(), 2000);
        assert_eq!(r.buffered_bytes(), 8000);
        // One part over the cap on its own: everything older goes, then it goes as it is.
        let out = r.push(part(4, 2, 1, &"d".repeat(6000)), t0);
        let refs: Vec<u16> = out.ready.iter().map(|a| a.reference).collect();
        assert_eq!(refs, vec![2, 3, 4]);
        assert!(out.ready.iter().all(|a| a.outcome == Outcome::Evicted));
        assert_eq!((r.open_sets(), r.buffered_bytes()), (0, 0));
    }
}
