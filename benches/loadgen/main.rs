//! Load generator: many real SIP callers with real RTP against the `ccswitch` binary on
//! 127.0.0.1, printing capacity figures (SIPp is not available here; this plays its role).
//!
//! Phase A (concurrency): ramps `--calls` calls (answer at once), each sending 20 ms PCMU
//! frames and RFC 4733 digits (English, then "repeat the menu" every 12 s so the IVR keeps
//! the call), holds them all for `--hold` s, then hangs up. Measures INVITE->180/200,
//! pacing of the RTP the switch sends (inter-arrival error against 20 ms), loss, switch CPU
//! and memory per call.
//! Phase B (rate): `--rate` new calls/s for `--rate-seconds` with the shipped one-ring answer
//! policy, short calls; counts three-ring compliance and failures.
//! Phase C (bridged calls): the temp config gets `--agents` generated agents (extensions
//! 70000.., password `demo<ext>`, tech = 5, queue tech, HA1s made with
//! `ccswitch::proto::digest::ha1`) and a 1 s wrap-up; each agent registers over UDP with
//! digest auth (401 -> REGISTER with Authorization; even agents SHA-256, odd MD5), then
//! answers every offer at once (200 + PCMU answer). Callers (as many as agents unless
//! `--calls` says) dial 4008006 (straight to queue tech), are answered at once, and hold
//! until all are bridged plus `--bridge-hold` s, then BYE (calls beyond the agents wait in
//! the queue all along and count as never bridged). The switch's RTP range is put below
//! the kernel's ephemeral range, which this process's own sockets use. Both sides send 20 ms PCMU
//! frames whose payload carries the send time (SystemTime ns, big-endian, bytes 0..8), a
//! marker, a stream id and a frame counter; the switch relays the payload unchanged (same
//! codec), so relay delay = kernel receive stamp - embedded send time, per direction.
//! Loss is counted on the frame counter per stream (first..last frame seen). Routing time
//! runs from the caller's 200 (kernel stamp) to the offer's INVITE at the agent (kernel
//! stamp; matched on X-Caller).
//!
//!   cargo bench --bench loadgen -- [--quick] [--calls N] [--hold S] [--ramp R]
//!       [--rate R] [--rate-seconds S] [--rate-hold S] [--rings N] [--agents N]
//!       [--bridge-hold S] [--phase a|b|c|all]
//!
//! Every phase judges its calls the same way (`judge`, `Tally`): a call fails when it was not
//! set up, the switch ended it early (BYE before the caller's), its BYE got no 200, or it lost
//! RTP (any packet missing in sequence, or none heard in 500 ms of talk); phase C also fails
//! calls never bridged or whose agent never heard the caller. Each phase prints the counts;
//! in quick mode any of them makes the exit status 1.
//!
//! Without `--bench` on the command line (i.e. under `cargo test --all-targets`) it runs the
//! quick mode. The switch binary is $CCSWITCH_BIN, else the one cargo built for this
//! profile. Needs many file descriptors (2 per call or agent here, ~2 per leg in the switch): it
//! raises its own RLIMIT_NOFILE to the hard limit; `ulimit -n 65536` first for big runs.
//! RTP arrival times are the kernel's receive timestamps (SO_TIMESTAMPNS), so the pacing
//! figures describe the switch, not this process's own scheduling delay. SIP latencies are
//! taken in this process and include its scheduling delay (an upper bound).
#![allow(clippy::disallowed_methods)] // a load generator measures wall-clock time on purpose

mod agents;
mod caller;
mod cli;
mod frames;
mod phase_a;
mod phase_b;
mod phase_c;
mod rtp;
#[path = "../../tests/e2e/sipwire.rs"]
mod sipwire;
mod switch;
mod tally;

use crate::cli::parse_opts;
use crate::phase_a::phase_a;
use crate::phase_b::phase_b;
use crate::phase_c::phase_c;
use crate::switch::switch_bin;

fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a stack struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            let _ = libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

fn main() {
    let o = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let nofile = raise_nofile();
    let need = if o.phase_a { o.calls * 2 } else { 0 }
        .max(if o.phase_b {
            (o.rate * (o.rate_seconds + 10.0)) as usize * 2
        } else {
            0
        })
        .max(if o.phase_c {
            2 * (o.agents + o.bridge_calls)
        } else {
            0
        });
    let target = match o.target {
        Some(a) => format!("external SIP server {a}"),
        None => format!("switch {}", switch_bin().display()),
    };
    println!(
        "loadgen ({} mode): {target}, RLIMIT_NOFILE {nofile}",
        if o.quick { "quick" } else { "full" }
    );
    if (nofile as usize) < need + 100 {
        println!("warning: about {need} sockets needed; raise `ulimit -n` (e.g. 65536)");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    let outcome = rt.block_on(async {
        let mut failed = 0;
        if o.phase_a {
            failed += phase_a(&o).await?;
        }
        if o.phase_b {
            failed += phase_b(&o).await?;
        }
        if o.phase_c {
            failed += phase_c(&o).await?;
        }
        Ok::<usize, String>(failed)
    });
    match outcome {
        Ok(0) => println!("\nloadgen: done"),
        Ok(n) if o.quick => {
            // At quick-mode load every call must work: a failure is a bug, not a capacity figure.
            eprintln!(
                "\nloadgen: {n} calls (or agent registrations) failed in quick mode: not set up, \
                 ended early by the switch, BYE without 200 or RTP lost (see the phase summaries)"
            );
            std::process::exit(1);
        }
        Ok(n) => println!("\nloadgen: done ({n} failed calls)"),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}
