//! Judging a call: the same rules and the same tally in every phase, and a phase's
//! printed figures.

use std::time::Duration;

use crate::caller::{CallResult, Fail};
use crate::sipwire;

/// Talk time after which a call that heard no RTP at all has lost it: the switch starts
/// sending within a frame or two of its answer, so half a second of silence is not a
/// scheduling hiccup (a sanity floor, not a timing figure).
const NO_RTP_AFTER: Duration = Duration::from_millis(500);

/// The first thing that went wrong with a call, in this order (a call counts once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Problem {
    /// No dialog: a non-2xx final, no final in time, a socket error, a 200 without SDP.
    Setup(Fail),
    /// Phase C: the caller never heard an agent.
    NeverBridged,
    /// The switch sent BYE before the caller hung up.
    EndedBySwitch,
    /// The caller's BYE got another final status, or none within its 8 s.
    ByeNot200,
    /// Phase C: the agent never heard the caller.
    OneWayAudio,
    /// The call talked NO_RTP_AFTER or longer and heard not one RTP packet.
    NoRtp,
    /// Packets missing between the first and the last one heard.
    RtpLost,
}

/// What a call heard: RTP packets received, and expected over the first..last heard.
/// The switch's sequence numbers advance per packet sent (a late frame is skipped, not
/// numbered), and the relayed frame counters per frame the far end sent, so a gap is a
/// packet that was sent and never arrived: on loopback that is a bug, not load.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Heard {
    pub(crate) received: u64,
    pub(crate) expected: u64,
}

impl Heard {
    pub(crate) fn lost(self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    pub(crate) fn add(self, o: Heard) -> Heard {
        Heard {
            received: self.received + o.received,
            expected: self.expected + o.expected,
        }
    }

    pub(crate) fn loss_pct(self) -> f64 {
        if self.expected > 0 {
            100.0 * self.lost() as f64 / self.expected as f64
        } else {
            0.0
        }
    }
}

/// Phase C's bridge checks for one call: did the caller hear an agent, did the agent hear it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BridgeCheck {
    pub(crate) bridged: bool,
    pub(crate) heard_by_agent: bool,
}

/// The call's first problem, or None when it worked throughout.
fn judge(call: &CallResult, bridge: Option<BridgeCheck>, heard: Heard) -> Option<Problem> {
    if let Some(f) = call.fail {
        return Some(Problem::Setup(f));
    }
    if bridge.is_some_and(|b| !b.bridged) {
        return Some(Problem::NeverBridged);
    }
    if call.ended_by_switch {
        return Some(Problem::EndedBySwitch);
    }
    if !call.bye_ok {
        return Some(Problem::ByeNot200);
    }
    if bridge.is_some_and(|b| !b.heard_by_agent) {
        return Some(Problem::OneWayAudio);
    }
    if heard.received == 0 && call.talk >= NO_RTP_AFTER {
        return Some(Problem::NoRtp);
    }
    if heard.lost() > 0 {
        return Some(Problem::RtpLost);
    }
    None
}

/// One phase's calls by outcome, and the RTP they heard.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    calls: usize,
    problems: std::collections::BTreeMap<Problem, usize>,
    heard: Heard,
    /// Calls that lost packets, counted even when an earlier problem classed the call.
    calls_with_loss: usize,
}

impl Tally {
    pub(crate) fn add(&mut self, call: &CallResult, bridge: Option<BridgeCheck>, heard: Heard) {
        self.calls += 1;
        self.heard = self.heard.add(heard);
        if heard.lost() > 0 {
            self.calls_with_loss += 1;
        }
        if let Some(p) = judge(call, bridge, heard) {
            *self.problems.entry(p).or_default() += 1;
        }
    }

    /// Calls with any problem.
    pub(crate) fn failed(&self) -> usize {
        self.problems.values().sum()
    }

    fn count(&self, want: impl Fn(&Problem) -> bool) -> usize {
        self.problems
            .iter()
            .filter(|(p, _)| want(p))
            .map(|(_, n)| n)
            .sum()
    }

    /// The outcome lines of a phase summary; `bridged` adds phase C's two rows.
    pub(crate) fn print(&self, bridged: bool) {
        let setup: std::collections::BTreeMap<String, usize> = self
            .problems
            .iter()
            .filter_map(|(p, n)| match p {
                Problem::Setup(f) => Some((format!("{f:?}"), *n)),
                _ => None,
            })
            .collect();
        let n = |p: Problem| self.problems.get(&p).copied().unwrap_or(0);
        println!(
            "{:<34} {} of {}",
            "calls failed (any reason below)",
            self.failed(),
            self.calls
        );
        println!(
            "{:<34} {} {setup:?}",
            "  not set up (non-2xx/timeout)",
            self.count(|p| matches!(p, Problem::Setup(_)))
        );
        if bridged {
            println!("{:<34} {}", "  never bridged", n(Problem::NeverBridged));
        }
        println!(
            "{:<34} {}",
            "  ended early by the switch",
            n(Problem::EndedBySwitch)
        );
        println!("{:<34} {}", "  BYE without 200", n(Problem::ByeNot200));
        if bridged {
            println!(
                "{:<34} {}",
                "  agent never heard the caller",
                n(Problem::OneWayAudio)
            );
        }
        println!(
            "{:<34} {} (no RTP in {} ms of talk: {})",
            "  RTP lost",
            n(Problem::RtpLost) + n(Problem::NoRtp),
            NO_RTP_AFTER.as_millis(),
            n(Problem::NoRtp)
        );
        println!(
            "{:<34} {:.3}% ({} of {} packets; calls with any loss: {})",
            "RTP loss",
            self.heard.loss_pct(),
            self.heard.lost(),
            self.heard.expected,
            self.calls_with_loss
        );
    }
}

pub(crate) fn pct(v: &mut [f64]) -> String {
    if v.is_empty() {
        return "n/a".into();
    }
    v.sort_by(|a, b| a.total_cmp(b));
    format!(
        "p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}",
        sipwire::percentile(v, 50.0),
        sipwire::percentile(v, 95.0),
        sipwire::percentile(v, 99.0),
        v[v.len() - 1]
    )
}

pub(crate) struct PhaseStats {
    pub(crate) name: &'static str,
    pub(crate) results: Vec<CallResult>,
    pub(crate) max_active: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) wall_s: f64,
    pub(crate) cpu_s: f64,
    pub(crate) rss_idle_kb: u64,
    pub(crate) rss_peak_kb: u64,
    pub(crate) ring_cycle_ms: u64,
}

pub(crate) fn report(p: &mut PhaseStats) -> usize {
    let total = p.results.len();
    let mut tally = Tally::default();
    for r in &p.results {
        let heard = Heard {
            received: r.rx_packets,
            expected: r.expected_packets,
        };
        tally.add(r, None, heard);
    }
    let mut t180: Vec<f64> = p.results.iter().filter_map(|r| r.t180_ms).collect();
    let mut t200: Vec<f64> = p.results.iter().filter_map(|r| r.t200_ms).collect();
    let three = 3 * p.ring_cycle_ms;
    let within = p
        .results
        .iter()
        .filter(|r| r.t200_ms.map(|t| t <= three as f64).unwrap_or(false))
        .count();
    let mut gaps: Vec<f64> = p
        .results
        .iter()
        .flat_map(|r| r.gap_err_ms.iter().map(|g| *g as f64))
        .collect();
    let foreign: u64 = p.results.iter().map(|r| r.foreign_packets).sum();
    println!("\n== {} ==", p.name);
    println!("{:<34} {}", "calls attempted", total);
    tally.print(false);
    println!("{:<34} {}", "INVITE->180 ms", pct(&mut t180));
    println!("{:<34} {}", "INVITE->200 ms", pct(&mut t200));
    println!(
        "{:<34} {:.1}% ({within}/{total}, 3 rings = {three} ms)",
        "answered within three rings",
        if total > 0 {
            100.0 * within as f64 / total as f64
        } else {
            0.0
        }
    );
    println!("{:<34} {}", "concurrent calls sustained", p.max_active);
    println!(
        "{:<34} {}",
        "calls in progress, peak (+ringing)", p.max_in_flight
    );
    println!(
        "{:<34} {} (of which gaps measured {}; foreign-SSRC packets ignored: {foreign})",
        "RTP packets received",
        tally.heard.received,
        gaps.len()
    );
    println!("{:<34} {}", "pacing error |gap-20ms| ms", pct(&mut gaps));
    println!(
        "{:<34} {:.1}% of one core ({:.1} s CPU in {:.1} s)",
        "switch CPU",
        if p.wall_s > 0.0 {
            100.0 * p.cpu_s / p.wall_s
        } else {
            0.0
        },
        p.cpu_s,
        p.wall_s
    );
    let per_call = if p.max_active > 0 {
        p.rss_peak_kb.saturating_sub(p.rss_idle_kb) as f64 / p.max_active as f64
    } else {
        0.0
    };
    println!(
        "{:<34} {:.1} kB (RSS idle {} kB, peak {} kB)",
        "switch RSS per call", per_call, p.rss_idle_kb, p.rss_peak_kb
    );
    tally.failed()
}
