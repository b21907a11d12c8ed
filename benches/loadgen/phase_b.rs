//! Phase B (rate): `--rate` new calls/s for `--rate-seconds` with the one-ring policy.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use crate::caller::{one_call, CallResult, Fail, Shared};
use crate::cli::Opts;
use crate::switch::{rss_sampler, target, usage_of};
use crate::tally::{report, PhaseStats};

pub(crate) async fn phase_b(o: &Opts) -> Result<usize, String> {
    let total = (o.rate * o.rate_seconds).round() as usize;
    let (sw, addr, ring) = target(o, o.rings, total + 100)?;
    let sh = Arc::new(Shared {
        switch: addr,
        dial: "100",
        active: AtomicUsize::new(0),
        max_active: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        seq: AtomicU64::new(1),
    });
    println!(
        "phase B: {:.0} calls/s for {:.1} s ({total} calls), answer after {} ring(s) of {} ms, talk {:.1} s",
        o.rate, o.rate_seconds, o.rings, ring, o.rate_hold
    );
    let (cpu0, rss_idle) = usage_of(&sw);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = rss_sampler(sw.as_ref().map(|s| s.pid()), Arc::clone(&stop));
    let bound = Duration::from_millis(3 * ring + 10_000);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(total);
    for i in 0..total {
        sleep_until(start + Duration::from_secs_f64(i as f64 / o.rate.max(0.001))).await;
        handles.push(tokio::spawn(one_call(
            Arc::clone(&sh),
            bound,
            None,
            Duration::from_secs_f64(o.rate_hold),
            Vec::new(),
        )));
    }
    let mut results = Vec::with_capacity(total);
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
        name: "phase B: call rate",
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
