//! A deliberately small SIP/RTP wire kit for the raw test caller (tests/e2e.rs) and the
//! load generator (benches/loadgen/). It is independent of the switch's own parser on
//! purpose: a peer that shared the switch's code would share its bugs.
//!
//! Included with `#[path = "e2e/sipwire.rs"] mod sipwire;` so both targets compile it.
#![allow(dead_code)] // each includer uses a different subset

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// One dialog's worth of identifiers from the caller's side.
#[derive(Clone, Debug)]
pub struct CallIds {
    pub call_id: String,
    pub from_tag: String,
    pub caller: String,
    pub request_uri: String,
    /// Our SIP address (Via sent-by and Contact).
    pub local: SocketAddr,
    /// "UDP" or "TCP", as it appears in Via.
    pub transport: &'static str,
}

impl CallIds {
    pub fn new(tag: u64, local: SocketAddr, request_uri: &str, caller: &str) -> CallIds {
        CallIds {
            call_id: format!("raw-{tag:016x}@127.0.0.1"),
            from_tag: format!("f{tag:x}"),
            caller: caller.to_string(),
            request_uri: request_uri.to_string(),
            local,
            transport: "UDP",
        }
    }

    fn our_from_header(&self) -> String {
        format!(
            "<sip:{}@{}>;tag={}",
            self.caller,
            self.local.ip(),
            self.from_tag
        )
    }

    fn common(&self, out: &mut String, method: &str, uri: &str, branch: &str, cseq: u32, to: &str) {
        let _ = write!(
            out,
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/{} {};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {}\r\n\
             To: {to}\r\n\
             Call-ID: {}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:{}@{}>\r\n\
             User-Agent: ccswitch-raw-caller\r\n",
            self.transport,
            self.local,
            self.our_from_header(),
            self.call_id,
            self.caller,
            self.local,
        );
    }

    /// INVITE with a PCMU/PCMA + telephone-event offer for `rtp`.
    pub fn invite(&self, branch: &str, cseq: u32, rtp: SocketAddr) -> Vec<u8> {
        let sdp = sdp_offer(rtp.ip(), rtp.port(), cseq as u64);
        let mut out = String::with_capacity(800);
        let to = format!("<{}>", self.request_uri);
        self.common(&mut out, "INVITE", &self.request_uri, branch, cseq, &to);
        let _ = write!(
            out,
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        out.into_bytes()
    }

    /// ACK for a 2xx: a new transaction to the remote target, same CSeq number.
    pub fn ack_2xx(&self, target: &str, to_hdr: &str, cseq: u32, branch: &str) -> Vec<u8> {
        let mut out = String::with_capacity(400);
        self.common(&mut out, "ACK", target, branch, cseq, to_hdr);
        out.push_str("Content-Length: 0\r\n\r\n");
        out.into_bytes()
    }

    /// ACK for a non-2xx final: same branch as the INVITE, Request-URI of the INVITE.
    pub fn ack_non2xx(&self, to_hdr: &str, cseq: u32, branch: &str) -> Vec<u8> {
        let mut out = String::with_capacity(400);
        self.common(&mut out, "ACK", &self.request_uri, branch, cseq, to_hdr);
        out.push_str("Content-Length: 0\r\n\r\n");
        out.into_bytes()
    }

    pub fn bye(&self, target: &str, to_hdr: &str, cseq: u32, branch: &str) -> Vec<u8> {
        let mut out = String::with_capacity(400);
        self.common(&mut out, "BYE", target, branch, cseq, to_hdr);
        out.push_str("Content-Length: 0\r\n\r\n");
        out.into_bytes()
    }

    pub fn cancel(&self, cseq: u32, branch: &str) -> Vec<u8> {
        let mut out = String::with_capacity(400);
        let to = format!("<{}>", self.request_uri);
        self.common(&mut out, "CANCEL", &self.request_uri, branch, cseq, &to);
        out.push_str("Content-Length: 0\r\n\r\n");
        out.into_bytes()
    }

    /// SIP INFO carrying one DTMF digit as application/dtmf-relay.
    pub fn info_dtmf(
        &self,
        target: &str,
        to_hdr: &str,
        cseq: u32,
        branch: &str,
        digit: char,
    ) -> Vec<u8> {
        let body = format!("Signal={digit}\r\nDuration=160\r\n");
        let mut out = String::with_capacity(500);
        self.common(&mut out, "INFO", target, branch, cseq, to_hdr);
        let _ = write!(
            out,
            "Content-Type: application/dtmf-relay\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        out.into_bytes()
    }
}

/// REGISTER of `user` at `registrar` (Request-URI `sip:<registrar>`), Contact = `local`,
/// with an `Authorization` value when answering a challenge.
#[allow(clippy::too_many_arguments)]
pub fn register(
    user: &str,
    registrar: SocketAddr,
    local: SocketAddr,
    call_id: &str,
    from_tag: &str,
    cseq: u32,
    branch: &str,
    expires: u32,
    authorization: Option<&str>,
) -> Vec<u8> {
    let mut out = String::with_capacity(700);
    let aor = format!("sip:{user}@{}", registrar.ip());
    let _ = write!(
        out,
        "REGISTER {} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <{aor}>;tag={from_tag}\r\n\
         To: <{aor}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@{local}>\r\n\
         Expires: {expires}\r\n\
         User-Agent: ccswitch-raw-agent\r\n",
        register_uri(registrar)
    );
    if let Some(a) = authorization {
        let _ = write!(out, "Authorization: {a}\r\n");
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

/// The Request-URI (and digest `uri`) `register` uses.
pub fn register_uri(registrar: SocketAddr) -> String {
    format!("sip:{registrar}")
}

/// Parameters of a `Digest ...` challenge or credentials value, names lower-cased, values
/// unquoted. None when it is not a Digest value.
pub fn digest_params(v: &str) -> Option<Vec<(String, String)>> {
    let v = v.trim();
    let rest = v.get(..6).filter(|s| s.eq_ignore_ascii_case("digest"))?;
    let mut s = &v[rest.len()..];
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if s.is_empty() {
            return Some(out);
        }
        let eq = s.find('=')?;
        let name = s[..eq].trim().to_ascii_lowercase();
        s = s[eq + 1..].trim_start();
        let value;
        if let Some(q) = s.strip_prefix('"') {
            let mut val = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => val.push(c),
                }
            }
            value = val;
            s = &q[end?..];
        } else {
            let end = s.find(',').unwrap_or(s.len());
            value = s[..end].trim().to_string();
            s = &s[end..];
        }
        out.push((name, value));
    }
}

/// Answer SDP choosing PCMU and telephone-event 101.
pub fn sdp_answer(ip: IpAddr, port: u16, version: u64) -> String {
    format!(
        "v=0\r\n\
         o=raw 4343 {version} IN IP4 {ip}\r\n\
         s=raw\r\n\
         c=IN IP4 {ip}\r\n\
         t=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n"
    )
}

pub fn sdp_offer(ip: IpAddr, port: u16, version: u64) -> String {
    format!(
        "v=0\r\n\
         o=raw 4242 {version} IN IP4 {ip}\r\n\
         s=raw\r\n\
         c=IN IP4 {ip}\r\n\
         t=0 0\r\n\
         m=audio {port} RTP/AVP 0 8 101\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n"
    )
}

/// A parsed SIP message: just what a scripted peer needs.
#[derive(Clone, Debug)]
pub struct Msg {
    /// Some(status) for responses.
    pub status: Option<u16>,
    /// Request method for requests ("" for responses).
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

fn full_name(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let full = match lower.as_str() {
        "v" => "via",
        "f" => "from",
        "t" => "to",
        "i" => "call-id",
        "m" => "contact",
        "l" => "content-length",
        "c" => "content-type",
        other => other,
    };
    full.to_string()
}

impl Msg {
    pub fn header(&self, name: &str) -> Option<&str> {
        let want = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == want)
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let want = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(move |(n, _)| *n == want)
            .map(|(_, v)| v.as_str())
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("call-id")
    }

    /// (number, method) from CSeq.
    pub fn cseq(&self) -> Option<(u32, String)> {
        let v = self.header("cseq")?;
        let mut it = v.split_whitespace();
        let n = it.next()?.parse().ok()?;
        let m = it.next()?.to_string();
        Some((n, m))
    }

    /// The URI inside the Contact header (for in-dialog requests).
    pub fn contact_uri(&self) -> Option<String> {
        let v = self.header("contact")?;
        Some(angle_uri(v))
    }

    /// Response to a request we received (e.g. 200 OK to the switch's BYE).
    pub fn response(&self, status: u16, reason: &str) -> Vec<u8> {
        let mut out = format!("SIP/2.0 {status} {reason}\r\n");
        for name in ["via", "from", "to", "call-id", "cseq"] {
            for v in self.headers_named(name) {
                let _ = write!(out, "{}: {v}\r\n", canonical(name));
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        out.into_bytes()
    }
}

impl Msg {
    /// Response to a request we received, as a UAS: `to_tag` is added to To when it has
    /// none; optional Contact and SDP body.
    pub fn reply(
        &self,
        status: u16,
        reason: &str,
        to_tag: Option<&str>,
        contact: Option<&str>,
        sdp: Option<&str>,
    ) -> Vec<u8> {
        let mut out = format!("SIP/2.0 {status} {reason}\r\n");
        for name in ["via", "from", "to", "call-id", "cseq"] {
            for v in self.headers_named(name) {
                match to_tag {
                    Some(t) if name == "to" && !v.contains(";tag=") => {
                        let _ = write!(out, "To: {v};tag={t}\r\n");
                    }
                    _ => {
                        let _ = write!(out, "{}: {v}\r\n", canonical(name));
                    }
                }
            }
        }
        if let Some(c) = contact {
            let _ = write!(out, "Contact: <{c}>\r\n");
        }
        match sdp {
            Some(b) => {
                let _ = write!(
                    out,
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len()
                );
            }
            None => out.push_str("Content-Length: 0\r\n\r\n"),
        }
        out.into_bytes()
    }
}

fn canonical(name: &str) -> &'static str {
    match name {
        "via" => "Via",
        "from" => "From",
        "to" => "To",
        "call-id" => "Call-ID",
        "cseq" => "CSeq",
        _ => "X-Unknown",
    }
}

/// `"Name" <sip:a@b>;tag=x` -> `sip:a@b`; a bare `sip:a@b;tag=x` -> `sip:a@b`.
pub fn angle_uri(v: &str) -> String {
    if let (Some(a), Some(b)) = (v.find('<'), v.find('>')) {
        if a < b {
            return v[a + 1..b].to_string();
        }
    }
    v.split(';').next().unwrap_or(v).trim().to_string()
}

/// Parses one SIP message from a datagram (or a TCP frame). None for junk.
pub fn parse(buf: &[u8]) -> Option<Msg> {
    let text = std::str::from_utf8(buf).ok()?;
    let (head, body) = match text.find("\r\n\r\n") {
        Some(i) => (&text[..i], &text[i + 4..]),
        None => (text, ""),
    };
    let mut lines = head.split("\r\n");
    let first = lines.next()?;
    let (status, method) = if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
        let code = rest.split_whitespace().next()?.parse().ok()?;
        (Some(code), String::new())
    } else {
        (None, first.split_whitespace().next()?.to_string())
    };
    let mut headers = Vec::new();
    for line in lines {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some((_, v)) = headers.last_mut() {
                let v: &mut String = v;
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.push((full_name(n), v.trim().to_string()));
        }
    }
    Some(Msg {
        status,
        method,
        headers,
        body: body.to_string(),
    })
}

/// How long a complete SIP message at the start of a TCP buffer is, if complete.
pub fn tcp_frame_len(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut len = 0usize;
    for line in head.split("\r\n") {
        if let Some((n, v)) = line.split_once(':') {
            if full_name(n) == "content-length" {
                len = v.trim().parse().ok()?;
            }
        }
    }
    if buf.len() >= end + len {
        Some(end + len)
    } else {
        None
    }
}

/// What the answer SDP says: where to send RTP and the telephone-event payload type.
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    pub rtp: SocketAddr,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
}

pub fn parse_answer(sdp: &str) -> Option<Answer> {
    let mut ip: Option<IpAddr> = None;
    let mut port: Option<u16> = None;
    let mut pt: Option<u8> = None;
    let mut te = None;
    for line in sdp.lines() {
        let line = line.trim();
        if let Some(c) = line.strip_prefix("c=IN IP4 ") {
            ip = c.trim().parse().ok();
        } else if let Some(m) = line.strip_prefix("m=audio ") {
            let mut it = m.split_whitespace();
            port = it.next().and_then(|p| p.parse().ok());
            let _proto = it.next();
            pt = it.next().and_then(|p| p.parse().ok());
        } else if let Some(r) = line.strip_prefix("a=rtpmap:") {
            if r.to_ascii_lowercase().contains("telephone-event") {
                te = r.split_whitespace().next().and_then(|p| p.parse().ok());
            }
        }
    }
    Some(Answer {
        rtp: SocketAddr::new(ip?, port?),
        payload_type: pt?,
        telephone_event: te,
    })
}

/// RTP fixed header fields we check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload_offset: usize,
}

pub fn parse_rtp(buf: &[u8]) -> Option<RtpHeader> {
    if buf.len() < 12 || buf[0] >> 6 != 2 {
        return None;
    }
    let csrc = (buf[0] & 0x0f) as usize;
    let mut off = 12 + 4 * csrc;
    if buf[0] & 0x10 != 0 {
        let ext = buf.get(off + 2..off + 4)?;
        off += 4 + 4 * u16::from_be_bytes([ext[0], ext[1]]) as usize;
    }
    if off > buf.len() {
        return None;
    }
    Some(RtpHeader {
        marker: buf[1] & 0x80 != 0,
        payload_type: buf[1] & 0x7f,
        seq: u16::from_be_bytes([buf[2], buf[3]]),
        timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        payload_offset: off,
    })
}

pub fn rtp_packet(
    out: &mut Vec<u8>,
    marker: bool,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: &[u8],
) {
    out.clear();
    out.push(0x80);
    out.push((pt & 0x7f) | if marker { 0x80 } else { 0 });
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

/// RFC 4733 telephone-event payload.
pub fn rfc4733_payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [event, if end { 0x80 | 10 } else { 10 }, d[0], d[1]]
}

pub fn digit_event(d: char) -> Option<u8> {
    match d {
        '0'..='9' => Some(d as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(12 + (d as u8 - b'A')),
        _ => None,
    }
}

/// G.711 mu-law to linear PCM (ITU-T G.711).
pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let sign = u & 0x80;
    let exponent = (u >> 4) & 0x07;
    let mantissa = u & 0x0f;
    let magnitude = ((((mantissa as i32) << 3) + 0x84) << exponent) - 0x84;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// RMS of a mu-law payload, in linear int16 units.
pub fn ulaw_rms(payload: &[u8]) -> f64 {
    if payload.is_empty() {
        return 0.0;
    }
    let sum: f64 = payload
        .iter()
        .map(|&b| {
            let s = ulaw_to_linear(b) as f64;
            s * s
        })
        .sum();
    (sum / payload.len() as f64).sqrt()
}

/// One 20 ms mu-law silence frame.
pub const ULAW_SILENCE: [u8; 160] = [0xff; 160];

/// Nearest-rank percentile of a sorted slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    // Imports live inside the tests: the bench including this file compiles with cfg(test)
    // but no test harness, so a module-level import would be unused there.
    #[test]
    fn digest_params_unquotes_and_escapes() {
        use super::*;
        let p = digest_params(
            "Digest realm=\"cc\\\"s\", nonce=\"abc,def\", algorithm=SHA-256, qop=\"auth\", stale=true",
        )
        .expect("digest");
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("realm"), Some("cc\"s"));
        assert_eq!(get("nonce"), Some("abc,def"));
        assert_eq!(get("algorithm"), Some("SHA-256"));
        assert_eq!(get("qop"), Some("auth"));
        assert_eq!(get("stale"), Some("true"));
        assert!(digest_params("Basic realm=\"x\"").is_none());
        assert!(digest_params("Digest realm=\"unterminated").is_none());
    }

    #[test]
    fn register_and_reply_round_trip() {
        use super::*;
        let reg: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let msg = register(
            "1001",
            reg,
            local,
            "c1",
            "t1",
            2,
            "z9hG4bKx",
            60,
            Some("Digest x=1"),
        );
        let m = parse(&msg).expect("parse");
        assert_eq!(m.method, "REGISTER");
        assert_eq!(m.cseq(), Some((2, "REGISTER".to_string())));
        assert_eq!(m.header("authorization"), Some("Digest x=1"));
        assert_eq!(m.contact_uri().as_deref(), Some("sip:1001@127.0.0.1:40000"));
        let sdp = sdp_answer("127.0.0.1".parse().unwrap(), 30000, 1);
        let ok = parse(&m.reply(200, "OK", Some("tg"), Some("sip:a@b"), Some(&sdp))).unwrap();
        assert_eq!(ok.status, Some(200));
        assert!(ok.header("to").unwrap().ends_with(";tag=tg"));
        let a = parse_answer(&ok.body).expect("sdp");
        assert_eq!((a.rtp.port(), a.payload_type), (30000, 0));
        // A To that already has a tag keeps it.
        let again = parse(&ok.reply(200, "OK", Some("other"), None, None)).unwrap();
        assert!(!again.header("to").unwrap().contains("other"));
    }
}
