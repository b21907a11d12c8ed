//! Phase C (bridged calls): callers queued to registered agents, relay delay and loss
//! per direction.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{sleep, sleep_until, Instant};

use crate::agents::agent;
use crate::caller::{bye, invite, CallResult, Fail, Shared};
use crate::cli::Opts;
use crate::frames::{lg_frame, now_ns, RelayRx};
use crate::rtp::{recv_stamped, tune_socket};
use crate::sipwire;
use crate::switch::{proc_usage, rss_sampler, start_switch};
use crate::tally::{pct, BridgeCheck, Heard, Tally};

pub(crate) struct CShared {
    /// Callers hearing their agent now, and the peak.
    bridged: AtomicUsize,
    max_bridged: AtomicUsize,
    /// Agents with a call up now, and the peak.
    pub(crate) agent_calls: AtomicUsize,
    pub(crate) max_agent_calls: AtomicUsize,
    pub(crate) registered: AtomicUsize,
    /// Frames sent, and 20 ms ticks skipped because this process woke too late (its own
    /// overload, not the switch's: skipped frames are never counted as loss).
    pub(crate) frames_sent: AtomicU64,
    pub(crate) frames_skipped: AtomicU64,
    /// Set when the phase is over: agents unregister-free exit.
    pub(crate) stop: std::sync::atomic::AtomicBool,
    /// Caller number -> kernel stamp of the INVITE arriving at the agent.
    pub(crate) offered: Mutex<std::collections::HashMap<String, i128>>,
}

#[derive(Debug, Default)]
struct BridgedResult {
    call: CallResult,
    caller: String,
    /// The stream id this caller's frames carry.
    stream: u32,
    bridged: bool,
    rx: RelayRx,
}

/// A caller of phase C: dials the tech hotline, talks with timestamped frames until
/// `release_at`, hangs up.
async fn bridged_call(sh: Arc<Shared>, cs: Arc<CShared>, release_at: Instant) -> BridgedResult {
    let mut out = BridgedResult::default();
    let tag = sh.seq.fetch_add(1, Ordering::Relaxed) | ((std::process::id() as u64) << 32);
    out.caller = format!("555{:07}", tag % 10_000_000);
    let (sip, rtp) = match (
        UdpSocket::bind("127.0.0.1:0").await,
        UdpSocket::bind("127.0.0.1:0").await,
    ) {
        (Ok(s), Ok(r)) => (s, r),
        _ => {
            out.call.fail = Some(Fail::Socket);
            return out;
        }
    };
    tune_socket(&rtp);
    let Ok(rtp_addr) = rtp.local_addr() else {
        out.call.fail = Some(Fail::Socket);
        return out;
    };
    let d = match invite(
        &sip,
        rtp_addr,
        &sh,
        tag,
        &mut out.call,
        Duration::from_secs(32),
    )
    .await
    {
        Ok(d) => d,
        Err(f) => {
            out.call.fail = Some(f);
            return out;
        }
    };
    let ssrc = 0x10ad_c000u32 ^ (d.ids.local.port() as u32);
    let stream = (tag & 0x7fff_ffff) as u32;
    out.stream = stream;
    let start = Instant::now();
    let (mut tick, mut seq, mut counter) = (0u64, 1u16, 0u32);
    let mut pkt = Vec::with_capacity(200);
    let mut rbuf = vec![0u8; 2048];
    let mut sbuf = vec![0u8; 4096];
    loop {
        let mut due = start + Duration::from_millis(20 * tick);
        if due >= release_at {
            break;
        }
        let late = Instant::now().saturating_duration_since(due);
        if late > Duration::from_millis(60) {
            let skip = late.as_millis() as u64 / 20;
            cs.frames_skipped.fetch_add(skip, Ordering::Relaxed);
            tick += skip;
            due = start + Duration::from_millis(20 * tick);
        }
        tokio::select! {
            _ = sleep_until(due) => {
                lg_frame(&mut pkt, seq, tick, ssrc, stream, counter);
                let _ = rtp.send_to(&pkt, d.answer.rtp).await;
                cs.frames_sent.fetch_add(1, Ordering::Relaxed);
                seq = seq.wrapping_add(1);
                counter += 1;
                tick += 1;
            }
            r = recv_stamped(&rtp, &mut rbuf) => {
                let Ok((n, stamp)) = r else { continue };
                if out.rx.on_packet(&rbuf[..n], stamp.unwrap_or_else(now_ns)) && !out.bridged {
                    out.bridged = true;
                    let now = cs.bridged.fetch_add(1, Ordering::Relaxed) + 1;
                    cs.max_bridged.fetch_max(now, Ordering::Relaxed);
                }
            }
            r = sip.recv_from(&mut sbuf) => {
                let Ok((n, from)) = r else { continue };
                let Some(m) = sipwire::parse(&sbuf[..n]) else { continue };
                if m.method == "BYE" {
                    let _ = sip.send_to(&m.response(200, "OK"), from).await;
                    out.call.ended_by_switch = true;
                    break;
                }
                if m.status == Some(200) && m.cseq().map(|c| c.1).as_deref() == Some("INVITE") {
                    let ack = d.ids.ack_2xx(&d.target, &d.to_hdr, 1, "z9hG4bKlgreack");
                    let _ = sip.send_to(&ack, sh.switch).await;
                }
            }
        }
    }
    out.call.talk = start.elapsed();
    if out.bridged {
        cs.bridged.fetch_sub(1, Ordering::Relaxed);
    }
    if !out.call.ended_by_switch {
        out.call.bye_ok = bye(&sip, &d, &sh).await;
    }
    out
}

fn pct32(v: &[f32]) -> String {
    let mut v: Vec<f64> = v.iter().map(|x| *x as f64).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return "n/a".into();
    }
    format!(
        "p50 {:.2}  p99 {:.2}  max {:.2}",
        sipwire::percentile(&v, 50.0),
        sipwire::percentile(&v, 99.0),
        v[v.len() - 1]
    )
}

pub(crate) async fn phase_c(o: &Opts) -> Result<usize, String> {
    if o.target.is_some() {
        println!("\nphase C skipped: it needs the switch it spawns (generated agents)");
        return Ok(0);
    }
    let n_agents = o.agents;
    let n_calls = o.bridge_calls;
    let sw = start_switch(0, 2 * n_calls + 100, n_agents.max(1))?;
    let addr = sw.sip;
    let sh = Arc::new(Shared {
        switch: addr,
        dial: "4008006",
        active: AtomicUsize::new(0),
        max_active: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        seq: AtomicU64::new(1),
    });
    let cs = Arc::new(CShared {
        bridged: AtomicUsize::new(0),
        max_bridged: AtomicUsize::new(0),
        agent_calls: AtomicUsize::new(0),
        max_agent_calls: AtomicUsize::new(0),
        registered: AtomicUsize::new(0),
        frames_sent: AtomicU64::new(0),
        frames_skipped: AtomicU64::new(0),
        stop: std::sync::atomic::AtomicBool::new(false),
        offered: Mutex::new(std::collections::HashMap::new()),
    });
    println!(
        "\nphase C: {n_agents} agents register (digest), {n_calls} calls to 4008006 (queue tech) \
         ramped at {:.0}/s, held {:.1} s once all are bridged",
        o.ramp, o.bridge_hold
    );
    let (cpu0, rss_idle) = proc_usage(sw.pid());
    let (own_cpu0, _) = proc_usage(std::process::id());
    let stop_rss = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = rss_sampler(Some(sw.pid()), Arc::clone(&stop_rss));
    let t0 = Instant::now();
    let mut agents = Vec::with_capacity(n_agents);
    for i in 0..n_agents {
        sleep_until(t0 + Duration::from_secs_f64(i as f64 / o.ramp)).await;
        agents.push(tokio::spawn(agent(i, addr, Arc::clone(&cs))));
    }
    // Wait for the registrations to settle (each is bounded by its own timeouts).
    let reg_deadline = Instant::now() + Duration::from_secs(40);
    while cs.registered.load(Ordering::Relaxed) < n_agents
        && Instant::now() < reg_deadline
        && !agents.iter().all(|h| h.is_finished())
    {
        sleep(Duration::from_millis(50)).await;
    }
    let reg_s = t0.elapsed().as_secs_f64();
    println!(
        "phase C: {} of {n_agents} agents registered in {reg_s:.1} s",
        cs.registered.load(Ordering::Relaxed)
    );
    let start = Instant::now();
    let ramp_s = n_calls as f64 / o.ramp;
    let settle_s = 3.0;
    let steady_from = start + Duration::from_secs_f64(ramp_s + settle_s);
    let release_at = steady_from + Duration::from_secs_f64(o.bridge_hold);
    let (cpu_calls0, _) = proc_usage(sw.pid());
    let pid = sw.pid();
    let steady = tokio::spawn(async move {
        sleep_until(steady_from).await;
        let a = proc_usage(pid).0;
        let t = Instant::now();
        sleep_until(release_at).await;
        (proc_usage(pid).0 - a, t.elapsed().as_secs_f64())
    });
    let mut handles = Vec::with_capacity(n_calls);
    for i in 0..n_calls {
        sleep_until(start + Duration::from_secs_f64(i as f64 / o.ramp)).await;
        handles.push(tokio::spawn(bridged_call(
            Arc::clone(&sh),
            Arc::clone(&cs),
            release_at,
        )));
    }
    let mut calls = Vec::with_capacity(n_calls);
    for h in handles {
        calls.push(h.await.unwrap_or_else(|_| BridgedResult {
            call: CallResult {
                fail: Some(Fail::Socket),
                ..Default::default()
            },
            ..Default::default()
        }));
    }
    let calls_wall = start.elapsed().as_secs_f64();
    let (cpu_calls1, _) = proc_usage(sw.pid());
    let (steady_cpu, steady_wall) = steady.await.unwrap_or((0.0, 0.0));
    // Let the last BYEs reach the agents, then stop them.
    sleep(Duration::from_millis(500)).await;
    cs.stop.store(true, Ordering::Relaxed);
    let mut agent_res = Vec::with_capacity(n_agents);
    for h in agents {
        if let Ok(r) = h.await {
            agent_res.push(r);
        }
    }
    stop_rss.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0);
    let (cpu_end, _) = proc_usage(sw.pid());
    let own_cpu = proc_usage(std::process::id()).0 - own_cpu0;
    let tail = sw.tail();
    sw.stop();

    // Figures.
    let reg_fail: Vec<&String> = agent_res
        .iter()
        .filter_map(|a| a.register_fail.as_ref())
        .collect();
    // What the agents heard of each caller's stream: (received, expected).
    let mut heard_by_agents = std::collections::HashMap::<u32, Heard>::new();
    for (stream, heard) in agent_res.iter().flat_map(|a| a.rx.per_stream()) {
        let h = heard_by_agents.entry(stream).or_default();
        *h = h.add(heard);
    }
    let mut tally = Tally::default();
    let (mut a2c_loss, mut c2a_loss) = (Heard::default(), Heard::default());
    for c in &calls {
        let a2c = c.rx.loss();
        let c2a = heard_by_agents.get(&c.stream).copied();
        let check = BridgeCheck {
            bridged: c.bridged,
            heard_by_agent: c2a.is_some(),
        };
        let c2a = c2a.unwrap_or_default();
        a2c_loss = a2c_loss.add(a2c);
        c2a_loss = c2a_loss.add(c2a);
        tally.add(&c.call, Some(check), a2c.add(c2a));
    }
    let bridged = calls.iter().filter(|c| c.bridged).count();
    let both_ways = calls
        .iter()
        .filter(|c| c.bridged && heard_by_agents.contains_key(&c.stream))
        .count();
    let a2c: Vec<f32> = calls
        .iter()
        .flat_map(|c| c.rx.delay_ms.iter().copied())
        .collect();
    let c2a: Vec<f32> = agent_res
        .iter()
        .flat_map(|a| a.rx.delay_ms.iter().copied())
        .collect();
    let offered = cs.offered.lock().map(|m| m.clone()).unwrap_or_default();
    let mut routing: Vec<f64> = calls
        .iter()
        .filter_map(|c| {
            let at = c.call.answered_ns?;
            let inv = offered.get(&c.caller)?;
            Some((inv - at) as f64 / 1e6)
        })
        .collect();
    let mut t200: Vec<f64> = calls.iter().filter_map(|c| c.call.t200_ms).collect();
    let agent_calls: u32 = agent_res.iter().map(|a| a.calls).sum();
    let pct_of = |cpu: f64, wall: f64| if wall > 0.0 { 100.0 * cpu / wall } else { 0.0 };

    println!("\n== phase C: bridged calls ==");
    println!(
        "{:<34} {} of {n_agents} ({} failed) in {reg_s:.1} s",
        "agents registered (digest)",
        cs.registered.load(Ordering::Relaxed),
        reg_fail.len()
    );
    let (sent, skipped) = (
        cs.frames_sent.load(Ordering::Relaxed),
        cs.frames_skipped.load(Ordering::Relaxed),
    );
    println!(
        "{:<34} {sent} sent, {skipped} 20 ms ticks skipped ({:.1}%: this process's own lag); loadgen CPU {own_cpu:.1} s",
        "loadgen RTP frames",
        if sent + skipped > 0 {
            100.0 * skipped as f64 / (sent + skipped) as f64
        } else {
            0.0
        }
    );
    if let Some(e) = reg_fail.first() {
        println!("{:<34} {e}", "first registration failure");
    }
    println!("{:<34} {n_calls}", "calls attempted");
    tally.print(true);
    println!(
        "{:<34} {bridged} (audio both ways: {both_ways})",
        "calls bridged (caller hears agent)"
    );
    println!(
        "{:<34} {} (agent legs up, peak: {}; legs = 2 x calls)",
        "calls bridged concurrently, peak",
        cs.max_bridged.load(Ordering::Relaxed),
        cs.max_agent_calls.load(Ordering::Relaxed)
    );
    println!("{:<34} {agent_calls}", "offers answered by agents");
    println!("{:<34} {}", "INVITE->200 (caller) ms", pct(&mut t200));
    println!(
        "{:<34} {} ({} calls)",
        "routing 200 -> agent INVITE ms",
        pct(&mut routing),
        routing.len()
    );
    println!(
        "{:<34} {} ({} frames)",
        "relay delay agent->caller ms",
        pct32(&a2c),
        a2c.len()
    );
    println!(
        "{:<34} {} ({} frames)",
        "relay delay caller->agent ms",
        pct32(&c2a),
        c2a.len()
    );
    println!(
        "{:<34} agent->caller {:.3}% ({} of {}), caller->agent {:.3}% ({} of {})",
        "relayed RTP loss",
        a2c_loss.loss_pct(),
        a2c_loss.lost(),
        a2c_loss.expected,
        c2a_loss.loss_pct(),
        c2a_loss.lost(),
        c2a_loss.expected
    );
    println!(
        "{:<34} {:.1}% of one core while all bridged ({:.1} s CPU in {:.1} s); calls phase {:.1}% ({:.1} s in {:.1} s); whole phase {:.1} s CPU",
        "switch CPU",
        pct_of(steady_cpu, steady_wall),
        steady_cpu,
        steady_wall,
        pct_of(cpu_calls1 - cpu_calls0, calls_wall),
        cpu_calls1 - cpu_calls0,
        calls_wall,
        cpu_end - cpu0
    );
    let max_b = cs.max_bridged.load(Ordering::Relaxed);
    println!(
        "{:<34} {:.1} kB per bridged call (RSS idle {} kB, peak {} kB)",
        "switch RSS",
        if max_b > 0 {
            peak.saturating_sub(rss_idle) as f64 / max_b as f64
        } else {
            0.0
        },
        rss_idle,
        peak
    );
    let failed = tally.failed();
    if failed > 0 && o.quick {
        eprintln!("switch log tail:\n{tail}");
    }
    Ok(failed + reg_fail.len())
}
