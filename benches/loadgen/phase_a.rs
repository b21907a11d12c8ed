//! Phase A (concurrency): `--calls` calls held in the IVR for `--hold` s.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use crate::caller::{one_call, CallResult, Fail, Shared};
use crate::cli::Opts;
use crate::switch::{rss_sampler, target, usage_of};
use crate::tally::{report, PhaseStats};

/// DTMF that keeps a caller in the shipped IVR: English, then "repeat the menu".
fn keep_alive_digits(hold_s: f64) -> Vec<(f64, u8)> {
    let mut v = vec![(6.7, 1u8)];
    let mut t = 6.7 + 12.0;
    while t < hold_s {
        v.push((t, 9));
        t += 12.0;
    }
    v
}

pub(crate) async fn phase_a(o: &Opts) -> Result<usize, String> {
    let (sw, addr, ring) = target(o, 0, o.calls + 100)?;
    let sh = Arc::new(Shared {
        switch: addr,
        dial: "100",
        active: AtomicUsize::new(0),
        max_active: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        seq: AtomicU64::new(1),
    });
    let (cpu0, rss_idle) = usage_of(&sw);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = rss_sampler(sw.as_ref().map(|s| s.pid()), Arc::clone(&stop));
    let start = Instant::now();
    let ramp_s = o.calls as f64 / o.ramp;
    let release_at = start + Duration::from_secs_f64(ramp_s + 2.0 + o.hold);
    let digits = keep_alive_digits(ramp_s + 2.0 + o.hold);
    println!(
        "phase A: {} calls ramped at {:.0}/s, all held until {:.1} s, answer at once",
        o.calls,
        o.ramp,
        ramp_s + 2.0 + o.hold
    );
    let mut handles = Vec::with_capacity(o.calls);
    for i in 0..o.calls {
        sleep_until(start + Duration::from_secs_f64(i as f64 / o.ramp)).await;
        handles.push(tokio::spawn(one_call(
            Arc::clone(&sh),
            Duration::from_secs(32),
            Some(release_at),
            Duration::ZERO,
            digits.clone(),
        )));
    }
    let mut results = Vec::with_capacity(o.calls);
    for h in handles {
        results.push(h.await.unwrap_or_else(|_| CallResult {
            fail: Some(Fail::Socket),
            ..Default::default()
        }));
    }
    let wall = start.elapsed().as_secs_f64();
    let (cpu1, _) = usage_of(&sw);
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0);
    if let Some(sw) = sw {
        sw.stop();
    }
    let mut stats = PhaseStats {
        name: "phase A: concurrent calls",
        results,
        max_active: sh.max_active.load(Ordering::Relaxed),
        max_in_flight: sh.max_in_flight.load(Ordering::Relaxed),
        wall_s: wall,
        cpu_s: cpu1 - cpu0,
        rss_idle_kb: rss_idle,
        rss_peak_kb: peak,
        ring_cycle_ms: ring,
    };
    Ok(report(&mut stats))
}
