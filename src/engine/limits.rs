//! Per-source limits on new INVITEs and REGISTERs, in the spirit of Kamailio's pike and
//! fail2ban: one source address must not be able to take every call slot.
//!
//! Each source IP gets a token bucket per kind of request (rate and burst). A request that
//! finds the bucket empty is refused (503 with Retry-After). A second, wider bucket per kind
//! runs at `ban_multiple` times the rate: when that one runs dry too the source is "far over
//! its rate" and is ignored (no reply: replying feeds the flood) for `ban_ms`. New INVITEs
//! are also refused while the source already has `max_calls_per_source` live calls.
//! `trusted` networks (carrier trunks, SBCs: every call from one address) are exempt.
//!
//! Sans-IO: fed `now`; the table of sources is bounded (`max_sources`): idle entries (all
//! buckets full again, not banned) are swept when it fills, so a flood of spoofed addresses
//! cannot grow memory without bound. Sources that find the table full share one overflow
//! entry, which rate-limits but never bans (a ban there would shut out every new source).

use super::time::Millis;
use ipnet::IpNet;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// How often a refusing source gets a warn line (with the count refused since the last).
const WARN_EVERY_MS: u64 = 10_000;
/// A full table is swept for idle entries at most this often.
const SWEEP_EVERY_MS: u64 = 1_000;
/// Retry-After for a source at its concurrent-call cap: calls last minutes, not seconds.
const CONCURRENCY_RETRY_AFTER_S: u64 = 30;
/// One token in the buckets' fixed-point unit (1/1000 token per unit, so a rate in tokens
/// per second refills exactly `rate` units per millisecond).
const TOKEN: u64 = 1000;

/// What a trusted network looks like, for the error of one that does not parse.
const NETWORK_HINT: &str =
    "not a network like 192.0.2.0/24 (prefix length 0-32, or 0-128 for IPv6)";

/// An IP network `addr/prefix` (a bare address is a /32 or /128), parsed by `ipnet`.
/// IPv4-mapped IPv6 sources match IPv4 networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr(IpNet);

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// Host bits are cleared (`10.1.2.3/8` is `10.0.0.0/8`), as the usual tools do.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let net = match s.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) if !s.contains('/') => s
                .parse::<IpAddr>()
                .map(IpNet::from)
                .map_err(|_| format!("`{s}` is not an address or network like 192.0.2.0/24"))?,
            Err(_) => return Err(format!("`{s}`: {NETWORK_HINT}")),
        };
        // A v4-mapped v6 network is the IPv4 network it names (sources are canonicalised too).
        let net = match net {
            IpNet::V6(v6) if v6.addr().to_ipv4_mapped().is_some() && v6.prefix_len() >= 96 => {
                let v4 = v6.addr().to_ipv4_mapped().expect("checked above");
                IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).expect("prefix within 0..=32")
            }
            other => other,
        };
        Ok(Cidr(net.trunc()))
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Cidr, String> {
        s.parse()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A sustained rate (tokens per second, 0 = unlimited) and the burst allowed on top.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_s: u32,
    pub burst: u32,
}

/// The limits, in engine units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Exempt networks.
    pub trusted: Vec<Cidr>,
    /// New INVITEs (not re-INVITEs, not in-dialog requests) per source.
    pub invite: Rate,
    pub register: Rate,
    /// Live calls one source may have at once (0 = no cap).
    pub max_calls_per_source: u32,
    /// Sending more than this many times the rate (and burst) gets a source ignored
    /// (0 = never ignore).
    pub ban_multiple: u32,
    pub ban_ms: u64,
    /// Sources tracked at once (the memory bound).
    pub max_sources: usize,
}

impl LimitsConfig {
    /// Nothing limited: for tools and tests that drive many calls from one address.
    pub fn off() -> LimitsConfig {
        LimitsConfig {
            trusted: Vec::new(),
            invite: Rate { per_s: 0, burst: 0 },
            register: Rate { per_s: 0, burst: 0 },
            max_calls_per_source: 0,
            ban_multiple: 0,
            ban_ms: 0,
            max_sources: 1,
        }
    }
}

/// Which limited request arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An INVITE that would start a new call.
    Invite,
    Register,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Invite => "INVITE",
            Kind::Register => "REGISTER",
        }
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Over its rate.
    Rate,
    /// At its concurrent-call cap.
    Concurrency,
}

/// What to do with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Answer 503 with this Retry-After.
    Refuse {
        why: Refusal,
        retry_after_s: u64,
    },
    /// The source is banned: no reply at all.
    Ignore,
}

/// A token bucket in fixed point (`TOKEN` units per token).
#[derive(Clone, Copy, Debug)]
struct Bucket {
    level: u64,
    at: Millis,
}

impl Bucket {
    fn full(rate: Rate, multiple: u32, now: Millis) -> Bucket {
        Bucket {
            level: capacity(rate, multiple),
            at: now,
        }
    }

    fn level_at(&self, rate: Rate, multiple: u32, now: Millis) -> u64 {
        let refill = now
            .since(self.at)
            .saturating_mul(u64::from(rate.per_s) * u64::from(multiple));
        self.level
            .saturating_add(refill)
            .min(capacity(rate, multiple))
    }

    /// Takes one token if there is one.
    fn take(&mut self, rate: Rate, multiple: u32, now: Millis) -> bool {
        self.level = self.level_at(rate, multiple, now);
        self.at = self.at.max(now);
        if self.level >= TOKEN {
            self.level -= TOKEN;
            true
        } else {
            false
        }
    }

    /// Milliseconds until the next token.
    fn wait_ms(&self, rate: Rate) -> u64 {
        let per_ms = u64::from(rate.per_s).max(1);
        TOKEN.saturating_sub(self.level).div_ceil(per_ms)
    }
}

fn capacity(rate: Rate, multiple: u32) -> u64 {
    u64::from(rate.burst.max(1))
        .saturating_mul(u64::from(multiple))
        .saturating_mul(TOKEN)
}

/// One source's state.
#[derive(Clone, Debug)]
struct Source {
    invite: Bucket,
    invite_ban: Bucket,
    register: Bucket,
    register_ban: Bucket,
    banned_until: Option<Millis>,
    /// Requests ignored during the current ban.
    ignored: u64,
    /// Refusals since the last warn line.
    refused_unlogged: u64,
    last_warn: Option<Millis>,
}

impl Source {
    fn fresh(cfg: &LimitsConfig, now: Millis) -> Source {
        let ban = cfg.ban_multiple.max(1);
        Source {
            invite: Bucket::full(cfg.invite, 1, now),
            invite_ban: Bucket::full(cfg.invite, ban, now),
            register: Bucket::full(cfg.register, 1, now),
            register_ban: Bucket::full(cfg.register, ban, now),
            banned_until: None,
            ignored: 0,
            refused_unlogged: 0,
            last_warn: None,
        }
    }

    /// Indistinguishable from a fresh entry: safe to forget.
    fn idle(&self, cfg: &LimitsConfig, now: Millis) -> bool {
        let ban = cfg.ban_multiple.max(1);
        let full = |b: &Bucket, rate: Rate, m: u32| b.level_at(rate, m, now) >= capacity(rate, m);
        self.banned_until.is_none()
            && full(&self.invite, cfg.invite, 1)
            && full(&self.invite_ban, cfg.invite, ban)
            && full(&self.register, cfg.register, 1)
            && full(&self.register_ban, cfg.register, ban)
    }
}

/// The per-source limiter (see the module doc).
#[derive(Debug)]
pub struct SourceLimits {
    cfg: LimitsConfig,
    sources: HashMap<IpAddr, Source>,
    /// Shared by sources that found the table full.
    overflow: Source,
    /// Ban ends, in time order.
    bans: BTreeSet<(Millis, IpAddr)>,
    /// Live calls per source IP (every source, trusted or not; entries at zero are removed).
    live_calls: HashMap<IpAddr, u32>,
    last_sweep: Option<Millis>,
}

impl SourceLimits {
    pub fn new(cfg: LimitsConfig) -> SourceLimits {
        SourceLimits {
            overflow: Source::fresh(&cfg, Millis::ZERO),
            cfg,
            sources: HashMap::new(),
            bans: BTreeSet::new(),
            live_calls: HashMap::new(),
            last_sweep: None,
        }
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.cfg.trusted.iter().any(|n| n.contains(ip))
    }

    /// Sources ignored right now.
    pub fn banned(&self) -> usize {
        self.bans.len()
    }

    /// Sources tracked right now (the bounded table).
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// Decides about one new INVITE or REGISTER from `ip`; consumes a token when it counts.
    pub fn check(&mut self, now: Millis, ip: IpAddr, kind: Kind) -> Verdict {
        if self.is_trusted(ip) {
            return Verdict::Allow;
        }
        let rate = match kind {
            Kind::Invite => self.cfg.invite,
            Kind::Register => self.cfg.register,
        };
        let live = self.live_calls.get(&ip).copied().unwrap_or(0);
        let over_cap = kind == Kind::Invite
            && self.cfg.max_calls_per_source > 0
            && live >= self.cfg.max_calls_per_source;
        if rate.per_s == 0 && !over_cap {
            return Verdict::Allow;
        }
        self.make_room(now, ip);
        let cfg = &self.cfg;
        let tracked = self.sources.len() < cfg.max_sources || self.sources.contains_key(&ip);
        let source = if tracked {
            self.sources
                .entry(ip)
                .or_insert_with(|| Source::fresh(cfg, now))
        } else {
            &mut self.overflow
        };
        if source.banned_until.is_some() {
            source.ignored += 1;
            return Verdict::Ignore;
        }
        let mut verdict = Verdict::Allow;
        if rate.per_s > 0 {
            let (bucket, ban_bucket) = match kind {
                Kind::Invite => (&mut source.invite, &mut source.invite_ban),
                Kind::Register => (&mut source.register, &mut source.register_ban),
            };
            let within_ban_rate = ban_bucket.take(rate, cfg.ban_multiple.max(1), now);
            // The shared overflow entry never bans: that would shut out every new source.
            if tracked && cfg.ban_multiple > 0 && cfg.ban_ms > 0 && !within_ban_rate {
                let until = now.plus(cfg.ban_ms);
                source.banned_until = Some(until);
                source.ignored = 1;
                tracing::warn!(source = %ip, method = kind.as_str(), ban_ms = cfg.ban_ms,
                    rate_per_s = rate.per_s, multiple = cfg.ban_multiple,
                    "source far over its rate: ignoring it");
                self.bans.insert((until, ip));
                return Verdict::Ignore;
            }
            if !bucket.take(rate, 1, now) {
                verdict = Verdict::Refuse {
                    why: Refusal::Rate,
                    retry_after_s: bucket.wait_ms(rate).div_ceil(1000).max(1),
                };
            }
        }
        if verdict == Verdict::Allow && over_cap {
            verdict = Verdict::Refuse {
                why: Refusal::Concurrency,
                retry_after_s: CONCURRENCY_RETRY_AFTER_S,
            };
        }
        if let Verdict::Refuse { why, .. } = verdict {
            source.refused_unlogged += 1;
            if source
                .last_warn
                .is_none_or(|t| now.since(t) >= WARN_EVERY_MS)
            {
                tracing::warn!(source = %ip, method = kind.as_str(), ?why,
                    refused = source.refused_unlogged, live_calls = live,
                    "source over its limit: answering 503 (logged once per 10 s per source)");
                source.last_warn = Some(now);
                source.refused_unlogged = 0;
            }
        }
        verdict
    }

    /// When the table is full and `ip` is new, forgets idle sources (at most once a second,
    /// so a full table of busy sources does not cost a sweep per packet).
    fn make_room(&mut self, now: Millis, ip: IpAddr) {
        if self.sources.len() < self.cfg.max_sources || self.sources.contains_key(&ip) {
            return;
        }
        if self
            .last_sweep
            .is_some_and(|t| now.since(t) < SWEEP_EVERY_MS)
        {
            return;
        }
        self.last_sweep = Some(now);
        let cfg = &self.cfg;
        self.sources.retain(|_, s| !s.idle(cfg, now));
    }

    /// A call from `ip` was created.
    pub fn call_started(&mut self, ip: IpAddr) {
        *self.live_calls.entry(ip).or_insert(0) += 1;
    }

    /// A call from `ip` is gone.
    pub fn call_ended(&mut self, ip: IpAddr) {
        if let Some(n) = self.live_calls.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.live_calls.remove(&ip);
            }
        }
    }

    /// The next ban to lift.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.bans.first().map(|(at, _)| *at)
    }

    /// Lifts the bans that are over; the source starts again with full buckets.
    pub fn handle_timeout(&mut self, now: Millis) {
        while let Some(&(at, ip)) = self.bans.first() {
            if at > now {
                break;
            }
            self.bans.pop_first();
            if let Some(s) = self.sources.remove(&ip) {
                tracing::info!(source = %ip, ignored = s.ignored, "source no longer ignored");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LimitsConfig {
        LimitsConfig {
            trusted: vec!["192.0.2.0/24".parse().unwrap()],
            invite: Rate {
                per_s: 10,
                burst: 20,
            },
            register: Rate {
                per_s: 5,
                burst: 10,
            },
            max_calls_per_source: 3,
            ban_multiple: 4,
            ban_ms: 60_000,
            max_sources: 4,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let n: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(n.to_string(), "10.0.0.0/8");
        assert!(n.contains(ip("10.200.0.1")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(n.contains(ip("::ffff:10.0.0.9")), "IPv4-mapped source");
        let host: Cidr = "203.0.113.7".parse().unwrap();
        assert!(host.contains(ip("203.0.113.7")) && !host.contains(ip("203.0.113.8")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("2001:db8::1")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        for bad in [
            "10.0.0.0/33",
            "2001:db8::/129",
            "example.com",
            "10.0.0.0/x",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn burst_then_rate_then_503_with_retry_after() {
        let mut l = SourceLimits::new(cfg());
        let src = ip("10.0.0.66");
        let t = Millis(1_000_000);
        for _ in 0..20 {
            assert_eq!(l.check(t, src, Kind::Invite), Verdict::Allow);
        }
        assert_eq!(
            l.check(t, src, Kind::Invite),
            Verdict::Refuse {
                why: Refusal::Rate,
                retry_after_s: 1
            }
        );
        // 100 ms at 10/s is one token.
        assert_eq!(l.check(t.plus(100), src, Kind::Invite), Verdict::Allow);
        assert!(matches!(
            l.check(t.plus(100), src, Kind::Invite),
            Verdict::Refuse { .. }
        ));
        // Another source is untouched; REGISTERs have their own bucket.
        assert_eq!(l.check(t, ip("10.0.0.7"), Kind::Invite), Verdict::Allow);
        assert_eq!(l.check(t.plus(100), src, Kind::Register), Verdict::Allow);
    }

    #[test]
    fn far_over_the_rate_is_ignored_until_the_ban_ends() {
        let mut l = SourceLimits::new(cfg());
        let src = ip("10.0.0.66");
        let t = Millis(1_000_000);
        let mut verdicts = Vec::new();
        // 1000/s for one second: the ban bucket (40/s, burst 80) runs dry after ~80.
        for i in 0..1000 {
            verdicts.push(l.check(t.plus(i), src, Kind::Invite));
        }
        let first_ignored = verdicts.iter().position(|v| *v == Verdict::Ignore).unwrap();
        assert!((80..100).contains(&first_ignored), "{first_ignored}");
        assert!(verdicts[first_ignored..]
            .iter()
            .all(|v| *v == Verdict::Ignore));
        assert_eq!(l.banned(), 1);
        assert_eq!(
            l.poll_timeout(),
            Some(t.plus(first_ignored as u64 + 60_000))
        );
        // REGISTERs from a banned source are ignored too.
        assert_eq!(l.check(t.plus(2000), src, Kind::Register), Verdict::Ignore);
        let end = l.poll_timeout().unwrap();
        l.handle_timeout(end);
        assert_eq!(l.banned(), 0);
        assert_eq!(l.check(end, src, Kind::Invite), Verdict::Allow);
    }

    #[test]
    fn a_little_over_the_rate_is_refused_but_never_banned() {
        let mut l = SourceLimits::new(cfg());
        let src = ip("10.0.0.66");
        // 20/s (twice the rate, half the ban rate) for a minute.
        let mut refused = 0;
        for i in 0..1200 {
            match l.check(Millis(1_000_000 + i * 50), src, Kind::Invite) {
                Verdict::Ignore => panic!("banned at {i}"),
                Verdict::Refuse { .. } => refused += 1,
                Verdict::Allow => {}
            }
        }
        assert!(refused > 500, "{refused}");
    }

    #[test]
    fn concurrent_call_cap_per_source() {
        let mut l = SourceLimits::new(cfg());
        let src = ip("10.0.0.66");
        let t = Millis(1_000_000);
        for _ in 0..3 {
            assert_eq!(l.check(t, src, Kind::Invite), Verdict::Allow);
            l.call_started(src);
        }
        assert_eq!(
            l.check(t, src, Kind::Invite),
            Verdict::Refuse {
                why: Refusal::Concurrency,
                retry_after_s: CONCURRENCY_RETRY_AFTER_S
            }
        );
        assert_eq!(l.check(t, src, Kind::Register), Verdict::Allow);
        l.call_ended(src);
        assert_eq!(l.check(t, src, Kind::Invite), Verdict::Allow);
    }

    #[test]
    fn trusted_sources_are_exempt() {
        let mut l = SourceLimits::new(cfg());
        let trunk = ip("192.0.2.10");
        for i in 0..10_000 {
            assert_eq!(l.check(Millis(i), trunk, Kind::Invite), Verdict::Allow);
            l.call_started(trunk);
        }
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn off_allows_everything() {
        let mut l = SourceLimits::new(LimitsConfig::off());
        for i in 0..10_000 {
            assert_eq!(
                l.check(Millis(i), ip("10.0.0.1"), Kind::Invite),
                Verdict::Allow
            );
            assert_eq!(
                l.check(Millis(i), ip("10.0.0.1"), Kind::Register),
                Verdict::Allow
            );
            l.call_started(ip("10.0.0.1"));
        }
    }

    #[test]
    fn the_table_is_bounded_and_idle_sources_are_forgotten() {
        let mut l = SourceLimits::new(cfg());
        let t = Millis(1_000_000);
        // A spoofed-address flood: one INVITE from each of 10 000 addresses.
        for i in 0..10_000u32 {
            let src = IpAddr::V4((0x0a00_0000 + i).into());
            assert_ne!(l.check(t, src, Kind::Invite), Verdict::Ignore);
            assert!(l.tracked() <= 4);
        }
        // Later, once their buckets are full again, new sources get tracked entries.
        let later = t.plus(10_000);
        assert_eq!(l.check(later, ip("10.9.9.9"), Kind::Invite), Verdict::Allow);
        assert!(l.tracked() <= 4);
        assert!(l.sources.contains_key(&ip("10.9.9.9")));
    }
}
