//! One caller, shared by every phase: INVITE, talk (20 ms frames out, arrival gaps in),
//! BYE.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{sleep_until, timeout, Instant};

use crate::rtp::{recv_stamped, tune_socket, wall_ns};
use crate::sipwire;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Fail {
    Status(u16),
    Timeout,
    Socket,
    NoSdp,
}

#[derive(Debug, Default)]
pub(crate) struct CallResult {
    pub(crate) t180_ms: Option<f64>,
    pub(crate) t200_ms: Option<f64>,
    /// When the 200 arrived (kernel stamp, ns since the epoch).
    pub(crate) answered_ns: Option<i128>,
    pub(crate) fail: Option<Fail>,
    pub(crate) ended_by_switch: bool,
    pub(crate) bye_ok: bool,
    /// How long the call talked (answer to hang-up or the switch's BYE).
    pub(crate) talk: Duration,
    pub(crate) rx_packets: u64,
    /// Packets of another SSRC (a stale stream to a reused port), not counted.
    pub(crate) foreign_packets: u64,
    pub(crate) expected_packets: u64,
    pub(crate) gap_err_ms: Vec<f32>,
}

pub(crate) struct Shared {
    pub(crate) switch: SocketAddr,
    /// The number callers dial.
    pub(crate) dial: &'static str,
    /// Answered and not yet hung up.
    pub(crate) active: AtomicUsize,
    pub(crate) max_active: AtomicUsize,
    /// INVITE sent and not yet finished (includes ringing calls).
    pub(crate) in_flight: AtomicUsize,
    pub(crate) max_in_flight: AtomicUsize,
    pub(crate) seq: AtomicU64,
}

pub(crate) struct Dialog {
    pub(crate) ids: sipwire::CallIds,
    pub(crate) to_hdr: String,
    pub(crate) target: String,
    pub(crate) answer: sipwire::Answer,
}

pub(crate) async fn invite(
    sip: &UdpSocket,
    rtp_addr: SocketAddr,
    sh: &Shared,
    tag: u64,
    res: &mut CallResult,
    bound: Duration,
) -> Result<Dialog, Fail> {
    let local = sip.local_addr().map_err(|_| Fail::Socket)?;
    let uri = format!("sip:{}@{}", sh.dial, sh.switch);
    let ids = sipwire::CallIds::new(tag, local, &uri, &format!("555{:07}", tag % 10_000_000));
    let branch = format!("z9hG4bKlg{tag:x}i");
    let msg = ids.invite(&branch, 1, rtp_addr);
    let start = Instant::now();
    let deadline = start + bound;
    let mut retx = Duration::from_millis(500);
    let mut next = start + retx;
    let mut provisional = false;
    tune_socket(sip);
    // Latency runs from just before the send to the kernel's receive stamp of the answer, so
    // a late wake-up of this task after the response arrived is not charged to the switch.
    let sent_ns = wall_ns(start);
    sip.send_to(&msg, sh.switch)
        .await
        .map_err(|_| Fail::Socket)?;
    let mut buf = vec![0u8; 4096];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(Fail::Timeout);
        }
        let wake = if provisional {
            deadline
        } else {
            next.min(deadline)
        };
        match timeout(wake - now, recv_stamped(sip, &mut buf)).await {
            Err(_) => {
                if !provisional && Instant::now() >= next {
                    let _ = sip.send_to(&msg, sh.switch).await;
                    retx = (retx * 2).min(Duration::from_secs(4));
                    next = Instant::now() + retx;
                }
            }
            Ok(Err(_)) => return Err(Fail::Socket),
            Ok(Ok((n, stamp))) => {
                let Some(m) = sipwire::parse(&buf[..n]) else {
                    continue;
                };
                let Some(status) = m.status else { continue };
                if m.call_id() != Some(ids.call_id.as_str()) {
                    continue;
                }
                let ms = match stamp {
                    Some(at) => (at - sent_ns).max(0) as f64 / 1e6,
                    None => start.elapsed().as_secs_f64() * 1000.0,
                };
                if (180..190).contains(&status) && res.t180_ms.is_none() {
                    res.t180_ms = Some(ms);
                }
                if status < 200 {
                    provisional = true;
                    continue;
                }
                let to_hdr = m.header("to").unwrap_or("").to_string();
                if status >= 300 {
                    let _ = sip
                        .send_to(&ids.ack_non2xx(&to_hdr, 1, &branch), sh.switch)
                        .await;
                    return Err(Fail::Status(status));
                }
                res.t200_ms = Some(ms);
                res.answered_ns = Some(stamp.unwrap_or_else(|| wall_ns(start)));
                let target = m.contact_uri().unwrap_or_else(|| uri.clone());
                let answer = sipwire::parse_answer(&m.body).ok_or(Fail::NoSdp)?;
                let ack = ids.ack_2xx(&target, &to_hdr, 1, &format!("z9hG4bKlg{tag:x}a"));
                let _ = sip.send_to(&ack, sh.switch).await;
                return Ok(Dialog {
                    ids,
                    to_hdr,
                    target,
                    answer,
                });
            }
        }
    }
}

/// Talks until `until`: 20 ms frames out (with RFC 4733 digits at `digits` offsets),
/// arrival gaps in. Returns early if the switch sends BYE.
async fn talk(
    sip: &UdpSocket,
    rtp: &UdpSocket,
    d: &Dialog,
    sh: &Shared,
    until: Instant,
    digits: &[(f64, u8)],
    res: &mut CallResult,
) {
    let start = Instant::now();
    let ssrc = 0x10ad_0000u32 ^ (d.ids.local.port() as u32);
    let te = d.answer.telephone_event.unwrap_or(101);
    let mut tick: u64 = 0;
    let mut seq: u16 = 1;
    let mut pkt = Vec::with_capacity(200);
    let mut rbuf = vec![0u8; 2048];
    let mut sbuf = vec![0u8; 4096];
    let mut next_digit = 0usize;
    let mut event: Option<(u64, u8)> = None;
    let mut last_arrival: Option<(i128, u16)> = None;
    let mut first_seq: Option<u32> = None;
    let mut stream_ssrc: Option<u32> = None;
    let mut ext_last: u32 = 0;
    loop {
        let mut due = start + Duration::from_millis(20 * tick);
        if due >= until {
            break;
        }
        // Fell behind (a loaded machine): skip missed frames instead of bursting them,
        // as a phone would; the sequence number stays continuous.
        let late = Instant::now().saturating_duration_since(due);
        if late > Duration::from_millis(60) && event.is_none() {
            tick += late.as_millis() as u64 / 20;
            due = start + Duration::from_millis(20 * tick);
        }
        tokio::select! {
            _ = sleep_until(due) => {
                if event.is_none() && next_digit < digits.len() && tick >= (digits[next_digit].0 * 50.0) as u64 {
                    event = Some((tick, digits[next_digit].1));
                    next_digit += 1;
                }
                match event {
                    Some((t0, e)) => {
                        let i = tick - t0;
                        let payload = sipwire::rfc4733_payload(e, i >= 5, ((i.min(5) + 1) * 160) as u16);
                        sipwire::rtp_packet(&mut pkt, i == 0, te, seq, (t0 as u32).wrapping_mul(160), ssrc, &payload);
                        if i >= 7 {
                            event = None;
                        }
                    }
                    None => sipwire::rtp_packet(&mut pkt, tick == 0, d.answer.payload_type, seq,
                        (tick as u32).wrapping_mul(160), ssrc, &sipwire::ULAW_SILENCE),
                }
                let _ = rtp.send_to(&pkt, d.answer.rtp).await;
                seq = seq.wrapping_add(1);
                tick += 1;
            }
            r = recv_stamped(rtp, &mut rbuf) => {
                let Ok((n, stamp)) = r else { continue };
                // The kernel's receive time describes the switch's pacing; our own wake-up
                // time would add this process's scheduling delay.
                let now = stamp.unwrap_or_else(|| wall_ns(start));
                let Some(h) = sipwire::parse_rtp(&rbuf[..n]) else { continue };
                // Lock onto the call's stream, as a phone does: a stray packet from an earlier
                // call whose port this socket reuses must not count as this call's loss.
                match stream_ssrc {
                    None => stream_ssrc = Some(h.ssrc),
                    Some(s) if s != h.ssrc => { res.foreign_packets += 1; continue }
                    Some(_) => {}
                }
                res.rx_packets += 1;
                // Extended sequence number for loss counting across wrap-around.
                let ext = match first_seq {
                    None => { first_seq = Some(h.seq as u32); h.seq as u32 }
                    Some(_) => {
                        let cand = (ext_last & !0xffff) | h.seq as u32;
                        if cand + 0x8000 < ext_last { cand + 0x1_0000 }
                        else if cand > ext_last + 0x8000 && cand >= 0x1_0000 { cand - 0x1_0000 }
                        else { cand }
                    }
                };
                if let Some((t, s)) = last_arrival {
                    if h.seq == s.wrapping_add(1) {
                        let gap = (now - t) as f64 / 1e6;
                        res.gap_err_ms.push((gap - 20.0).abs() as f32);
                    }
                }
                ext_last = ext_last.max(ext);
                last_arrival = Some((now, h.seq));
            }
            r = sip.recv_from(&mut sbuf) => {
                let Ok((n, from)) = r else { continue };
                let Some(m) = sipwire::parse(&sbuf[..n]) else { continue };
                if m.method == "BYE" {
                    let _ = sip.send_to(&m.response(200, "OK"), from).await;
                    res.ended_by_switch = true;
                    break;
                }
                if m.status == Some(200) && m.cseq().map(|c| c.1).as_deref() == Some("INVITE") {
                    let ack = d.ids.ack_2xx(&d.target, &d.to_hdr, 1, "z9hG4bKlgreack");
                    let _ = sip.send_to(&ack, sh.switch).await;
                }
            }
        }
    }
    res.talk = start.elapsed();
    if let Some(f) = first_seq {
        res.expected_packets = (ext_last.saturating_sub(f) + 1) as u64;
    }
}

pub(crate) async fn bye(sip: &UdpSocket, d: &Dialog, sh: &Shared) -> bool {
    let branch = format!("z9hG4bKlgb{}", d.ids.local.port());
    let msg = d.ids.bye(&d.target, &d.to_hdr, 2, &branch);
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut retx = Duration::from_millis(500);
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        let _ = sip.send_to(&msg, sh.switch).await;
        let wait_until = (Instant::now() + retx).min(deadline);
        while let Ok(Ok((n, from))) =
            timeout(wait_until - Instant::now(), sip.recv_from(&mut buf)).await
        {
            let Some(m) = sipwire::parse(&buf[..n]) else {
                continue;
            };
            if m.method == "BYE" {
                // The switch hung up at the same moment: answer it, we are done.
                let _ = sip.send_to(&m.response(200, "OK"), from).await;
                return true;
            }
            if m.cseq().map(|c| c.1).as_deref() == Some("BYE") && m.status.unwrap_or(0) >= 200 {
                return m.status == Some(200);
            }
            if Instant::now() >= wait_until {
                break;
            }
        }
        retx = (retx * 2).min(Duration::from_secs(4));
    }
    false
}

/// A whole call: INVITE ... talk until `release_at` (or `hold` after answer) ... BYE.
pub(crate) async fn one_call(
    sh: Arc<Shared>,
    invite_bound: Duration,
    release_at: Option<Instant>,
    hold: Duration,
    digits: Vec<(f64, u8)>,
) -> CallResult {
    let now = sh.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    sh.max_in_flight.fetch_max(now, Ordering::Relaxed);
    let res = call_flow(&sh, invite_bound, release_at, hold, digits).await;
    sh.in_flight.fetch_sub(1, Ordering::Relaxed);
    res
}

async fn call_flow(
    sh: &Shared,
    invite_bound: Duration,
    release_at: Option<Instant>,
    hold: Duration,
    digits: Vec<(f64, u8)>,
) -> CallResult {
    let mut res = CallResult::default();
    let tag = sh.seq.fetch_add(1, Ordering::Relaxed) | ((std::process::id() as u64) << 32);
    let (sip, rtp) = match (
        UdpSocket::bind("127.0.0.1:0").await,
        UdpSocket::bind("127.0.0.1:0").await,
    ) {
        (Ok(s), Ok(r)) => (s, r),
        _ => {
            res.fail = Some(Fail::Socket);
            return res;
        }
    };
    tune_socket(&rtp);
    let Ok(rtp_addr) = rtp.local_addr() else {
        res.fail = Some(Fail::Socket);
        return res;
    };
    let d = match invite(&sip, rtp_addr, sh, tag, &mut res, invite_bound).await {
        Ok(d) => d,
        Err(f) => {
            res.fail = Some(f);
            return res;
        }
    };
    let now_active = sh.active.fetch_add(1, Ordering::Relaxed) + 1;
    sh.max_active.fetch_max(now_active, Ordering::Relaxed);
    let until = release_at.unwrap_or_else(|| Instant::now() + hold);
    talk(&sip, &rtp, &d, sh, until, &digits, &mut res).await;
    sh.active.fetch_sub(1, Ordering::Relaxed);
    if !res.ended_by_switch {
        res.bye_ok = bye(&sip, &d, sh).await;
    }
    res
}
