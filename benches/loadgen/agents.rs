//! Phase C's agents: generated into the switch's config, registered with digest auth,
//! answering every offer at once.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{sleep_until, timeout, Instant};

use crate::frames::{lg_frame, now_ns, RelayRx};
use crate::phase_c::CShared;
use crate::rtp::{recv_stamped, tune_socket};
use crate::sipwire;

/// First agent extension of phase C (extensions are consecutive from here).
const AGENT_BASE: usize = 70000;

fn agent_ext(i: usize) -> String {
    (AGENT_BASE + i).to_string()
}

fn agent_password(ext: &str) -> String {
    format!("demo{ext}")
}

/// agents.toml with `n` agents (tech = 5, queue tech, English, both HA1s for
/// `demo<ext>`) and queues.toml with a 1 s wrap-up, in the temp config dir.
pub(crate) fn write_agents(dir: &Path, n: usize) -> Result<(), String> {
    use ccswitch::proto::digest::{ha1, Algorithm};
    let path = dir.join("agents.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let realm = table
        .get("registrar")
        .and_then(|r| r.get("realm"))
        .and_then(|r| r.as_str())
        .unwrap_or("ccswitch")
        .to_string();
    let mut agents = Vec::with_capacity(n);
    for i in 0..n {
        let ext = agent_ext(i);
        let pw = agent_password(&ext);
        let mut a = toml::Table::new();
        a.insert("extension".into(), ext.clone().into());
        a.insert("name".into(), format!("Load agent {i}").into());
        let mut skills = toml::Table::new();
        skills.insert("tech".into(), toml::Value::Integer(5));
        a.insert("skills".into(), toml::Value::Table(skills));
        a.insert("languages".into(), toml::Value::Array(vec!["en".into()]));
        a.insert("queues".into(), toml::Value::Array(vec!["tech".into()]));
        a.insert(
            "ha1_md5".into(),
            ha1(Algorithm::Md5, &ext, &realm, &pw).into(),
        );
        a.insert(
            "ha1_sha256".into(),
            ha1(Algorithm::Sha256, &ext, &realm, &pw).into(),
        );
        agents.push(toml::Value::Table(a));
    }
    table.insert("agents".into(), toml::Value::Array(agents));
    std::fs::write(&path, table.to_string()).map_err(|e| e.to_string())?;

    let path = dir.join("queues.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let defaults = table
        .entry("defaults")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(d) = defaults.as_table_mut() {
        d.insert("wrap_up_s".into(), toml::Value::Integer(1));
    }
    std::fs::write(&path, table.to_string()).map_err(|e| e.to_string())
}

#[derive(Debug, Default)]
pub(crate) struct AgentResult {
    pub(crate) register_fail: Option<String>,
    pub(crate) calls: u32,
    pub(crate) rx: RelayRx,
}

/// Registration with digest auth: REGISTER, 401, REGISTER with Authorization, 200.
async fn agent_register(
    sip: &UdpSocket,
    switch: SocketAddr,
    idx: usize,
    buf: &mut [u8],
) -> Result<(), String> {
    use ccswitch::proto::digest::{response, Algorithm, QopAuth};
    let ext = agent_ext(idx);
    let local = sip.local_addr().map_err(|e| e.to_string())?;
    let call_id = format!("lg-reg-{idx}-{}@127.0.0.1", std::process::id());
    let tag = format!("r{idx}");
    // Even agents answer the SHA-256 challenge, odd ones MD5: both paths get load.
    let want = if idx % 2 == 0 {
        Algorithm::Sha256
    } else {
        Algorithm::Md5
    };
    let mut auth: Option<String> = None;
    for cseq in 1..=3u32 {
        let branch = format!("z9hG4bKlgr{idx}x{cseq}");
        let msg = sipwire::register(
            &ext,
            switch,
            local,
            &call_id,
            &tag,
            cseq,
            &branch,
            3600,
            auth.as_deref(),
        );
        let mut got = None;
        let mut retx = Duration::from_millis(500);
        let deadline = Instant::now() + Duration::from_secs(16);
        'send: while Instant::now() < deadline {
            let _ = sip.send_to(&msg, switch).await;
            let until = (Instant::now() + retx).min(deadline);
            while let Ok(Ok((n, _))) = timeout(
                until.saturating_duration_since(Instant::now()),
                sip.recv_from(buf),
            )
            .await
            {
                let Some(m) = sipwire::parse(&buf[..n]) else {
                    continue;
                };
                if m.cseq() == Some((cseq, "REGISTER".into())) && m.status.unwrap_or(0) >= 200 {
                    got = Some(m);
                    break 'send;
                }
            }
            retx = (retx * 2).min(Duration::from_secs(4));
        }
        let Some(m) = got else {
            return Err("REGISTER timeout".into());
        };
        match m.status {
            Some(200) => return Ok(()),
            Some(401) => {
                let challenges: Vec<Vec<(String, String)>> = m
                    .headers_named("www-authenticate")
                    .filter_map(sipwire::digest_params)
                    .collect();
                let get = |c: &Vec<(String, String)>, k: &str| {
                    c.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
                };
                let pick = challenges
                    .iter()
                    .find(|c| Algorithm::from_param(get(c, "algorithm").as_deref()) == Some(want))
                    .or_else(|| challenges.first())
                    .ok_or("401 without a Digest challenge")?;
                let alg = Algorithm::from_param(get(pick, "algorithm").as_deref())
                    .ok_or("unsupported algorithm")?;
                let realm = get(pick, "realm").unwrap_or_default();
                let nonce = get(pick, "nonce").unwrap_or_default();
                let uri = sipwire::register_uri(switch);
                let ha1 = ccswitch::proto::digest::ha1(alg, &ext, &realm, &agent_password(&ext));
                let cnonce = format!("{:08x}", idx * 7919 + 13);
                let resp = response(
                    alg,
                    &ha1,
                    "REGISTER",
                    &uri,
                    &nonce,
                    Some(QopAuth {
                        nc: "00000001",
                        cnonce: &cnonce,
                    }),
                );
                let mut a = format!(
                    "Digest username=\"{ext}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
                     response=\"{resp}\", algorithm={}, qop=auth, nc=00000001, cnonce=\"{cnonce}\"",
                    alg.as_str()
                );
                if let Some(o) = get(pick, "opaque") {
                    a.push_str(&format!(", opaque=\"{o}\""));
                }
                auth = Some(a);
            }
            Some(s) => return Err(format!("REGISTER answered {s}")),
            None => return Err("REGISTER: not a response".into()),
        }
    }
    Err("REGISTER: challenged again after credentials".into())
}

/// One agent's softphone: registers, then answers every INVITE at once (200 + PCMU
/// answer), sends timestamped frames while a call is up, measures the relayed caller audio.
pub(crate) async fn agent(idx: usize, switch: SocketAddr, cs: Arc<CShared>) -> AgentResult {
    let mut res = AgentResult::default();
    let (sip, rtp) = match (
        UdpSocket::bind("127.0.0.1:0").await,
        UdpSocket::bind("127.0.0.1:0").await,
    ) {
        (Ok(s), Ok(r)) => (s, r),
        _ => {
            res.register_fail = Some("socket".into());
            return res;
        }
    };
    tune_socket(&rtp);
    let (Ok(local), Ok(rtp_addr)) = (sip.local_addr(), rtp.local_addr()) else {
        res.register_fail = Some("socket".into());
        return res;
    };
    let mut sbuf = vec![0u8; 8192];
    if let Err(e) = agent_register(&sip, switch, idx, &mut sbuf).await {
        res.register_fail = Some(e);
        return res;
    }
    cs.registered.fetch_add(1, Ordering::Relaxed);
    // The SIP socket gets receive stamps only now: offers' arrival times are measured.
    tune_socket(&sip);
    let ext = agent_ext(idx);
    let contact = format!("sip:{ext}@{local}");
    let ssrc = 0xa6e0_0000u32 ^ idx as u32;
    let stream = 0x8000_0000u32 | idx as u32;
    let mut counter: u32 = 0;
    // The call up now: (Call-ID, where to send RTP, our 200 for retransmitted INVITEs).
    let mut call: Option<(String, SocketAddr, Vec<u8>)> = None;
    let mut start = Instant::now();
    let mut tick: u64 = 0;
    let mut seq: u16 = 1;
    let mut pkt = Vec::with_capacity(200);
    let mut rbuf = vec![0u8; 2048];
    let mut ended: Vec<String> = Vec::new();
    while !cs.stop.load(Ordering::Relaxed) {
        let due = if call.is_some() {
            let mut due = start + Duration::from_millis(20 * tick);
            let late = Instant::now().saturating_duration_since(due);
            if late > Duration::from_millis(60) {
                let skip = late.as_millis() as u64 / 20;
                cs.frames_skipped.fetch_add(skip, Ordering::Relaxed);
                tick += skip;
                due = start + Duration::from_millis(20 * tick);
            }
            due
        } else {
            Instant::now() + Duration::from_millis(100)
        };
        tokio::select! {
            _ = sleep_until(due) => {
                if let Some((_, to, _)) = &call {
                    lg_frame(&mut pkt, seq, tick, ssrc, stream, counter);
                    let _ = rtp.send_to(&pkt, *to).await;
                    cs.frames_sent.fetch_add(1, Ordering::Relaxed);
                    seq = seq.wrapping_add(1);
                    counter += 1;
                    tick += 1;
                }
            }
            r = recv_stamped(&rtp, &mut rbuf) => {
                let Ok((n, stamp)) = r else { continue };
                res.rx.on_packet(&rbuf[..n], stamp.unwrap_or_else(now_ns));
            }
            r = recv_stamped(&sip, &mut sbuf) => {
                let Ok((n, stamp)) = r else { continue };
                let Some(m) = sipwire::parse(&sbuf[..n]) else { continue };
                if m.status.is_some() {
                    continue;
                }
                let cid = m.call_id().unwrap_or("").to_string();
                match m.method.as_str() {
                    "INVITE" => {
                        if let Some((id, _, ok)) = &call {
                            let again = ok.clone();
                            if *id == cid {
                                let _ = sip.send_to(&again, switch).await;
                            } else {
                                let _ = sip.send_to(&m.reply(486, "Busy Here", Some("lgbusy"), None, None), switch).await;
                            }
                            continue;
                        }
                        if ended.contains(&cid) {
                            continue;
                        }
                        let Some(offer) = sipwire::parse_answer(&m.body) else {
                            let _ = sip.send_to(&m.reply(488, "Not Acceptable Here", Some("lgna"), None, None), switch).await;
                            continue;
                        };
                        if let Some(caller) = m.header("x-caller") {
                            if let Ok(mut map) = cs.offered.lock() {
                                map.insert(caller.to_string(), stamp.unwrap_or_else(now_ns));
                            }
                        }
                        let sdp = sipwire::sdp_answer(rtp_addr.ip(), rtp_addr.port(), 1);
                        let tag = format!("a{idx}x{}", res.calls);
                        let ok = m.reply(200, "OK", Some(&tag), Some(&contact), Some(&sdp));
                        let _ = sip.send_to(&ok, switch).await;
                        res.calls += 1;
                        let now = cs.agent_calls.fetch_add(1, Ordering::Relaxed) + 1;
                        cs.max_agent_calls.fetch_max(now, Ordering::Relaxed);
                        call = Some((cid, offer.rtp, ok));
                        start = Instant::now();
                        tick = 0;
                    }
                    "BYE" => {
                        let _ = sip.send_to(&m.reply(200, "OK", None, None, None), switch).await;
                        if call.as_ref().is_some_and(|c| c.0 == cid) {
                            call = None;
                            cs.agent_calls.fetch_sub(1, Ordering::Relaxed);
                            ended.push(cid);
                            if ended.len() > 16 {
                                ended.remove(0);
                            }
                        }
                    }
                    "ACK" => {}
                    _ => {
                        let _ = sip.send_to(&m.reply(200, "OK", None, None, None), switch).await;
                    }
                }
            }
        }
    }
    if call.is_some() {
        cs.agent_calls.fetch_sub(1, Ordering::Relaxed);
    }
    res
}
