//! SDP offer/answer for G.711 audio (RFC 3264, RFC 4566) over the rtc-sdp parser.
//! rtc-sdp reads the description; the choice of codec, address and direction is ours:
//! static payload types 0/8 need no rtpmap (RFC 3551), media-level `c=` and direction
//! attributes override session-level ones, and only plain RTP/AVP is accepted.

use crate::engine::Codec;
use bytes::Bytes;
use rtc_sdp::description::media::MediaDescription;
use rtc_sdp::SessionDescription;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

/// Media direction as the remote side states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// What we answer to a remote that states `self`.
    fn answered(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    pub telephone_event_pt: Option<u8>,
    /// None for c=0.0.0.0 (hold) or port 0 (rejected stream).
    pub remote: Option<SocketAddr>,
    pub direction: Direction,
    pub ptime: u32,
    /// The offer's m-lines in order (RFC 3264 6: the answer has as many): `None` is the
    /// audio stream we took, `Some(line)` a stream we refuse, already written with port 0.
    pub m_lines: Vec<Option<String>>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SdpError {
    #[error("malformed SDP: {0}")]
    Malformed(String),
    #[error("no audio stream in SDP")]
    NoAudio,
    #[error("no common codec (PCMU/PCMA over RTP/AVP)")]
    NoCommonCodec,
}

/// A parsed session description.
#[derive(Clone, Debug)]
pub struct Sdp(SessionDescription);

/// Largest SDP body we read; SIP bodies from phones are a few hundred bytes.
const MAX_SDP: usize = 64 * 1024;

pub fn parse(body: &[u8]) -> Result<Sdp, SdpError> {
    if body.len() > MAX_SDP {
        return Err(SdpError::Malformed("too large".into()));
    }
    if !body.starts_with(b"v=") {
        return Err(SdpError::Malformed("does not start with v=".into()));
    }
    let mut cursor = std::io::Cursor::new(body);
    SessionDescription::unmarshal(&mut cursor)
        .map(Sdp)
        .map_err(|e| SdpError::Malformed(e.to_string()))
}

fn is_audio(m: &MediaDescription) -> bool {
    m.media_name.media.eq_ignore_ascii_case("audio")
}

fn is_rtp_avp(m: &MediaDescription) -> bool {
    let p = &m.media_name.protos;
    p.len() == 2 && p[0].eq_ignore_ascii_case("RTP") && p[1].eq_ignore_ascii_case("AVP")
}

/// `a=rtpmap:<pt> <name>/<rate>` for this payload type, as (name, rate).
fn rtpmap(m: &MediaDescription, pt: &str) -> Option<(String, String)> {
    m.attributes
        .iter()
        .filter(|a| a.key.eq_ignore_ascii_case("rtpmap"))
        .find_map(|a| {
            let v = a.value.as_deref()?;
            let (p, rest) = v.trim().split_once(' ')?;
            if p != pt {
                return None;
            }
            let mut parts = rest.trim().split('/');
            let name = parts.next()?.to_string();
            let rate = parts.next().unwrap_or("").to_string();
            Some((name, rate))
        })
}

fn direction_of(attrs: &[rtc_sdp::description::common::Attribute]) -> Option<Direction> {
    attrs
        .iter()
        .rev()
        .find_map(|a| match a.key.to_ascii_lowercase().as_str() {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        })
}

/// Chooses our codec and reads the remote media address from the first usable audio
/// m-line: the first audio line with a port, else the first audio line (rejected).
pub fn negotiate(s: &Sdp) -> Result<Negotiated, SdpError> {
    let sd = &s.0;
    let audio: Vec<&MediaDescription> = sd
        .media_descriptions
        .iter()
        .filter(|m| is_audio(m))
        .collect();
    let m = *audio
        .iter()
        .find(|m| m.media_name.port.value != 0)
        .or_else(|| audio.first())
        .ok_or(SdpError::NoAudio)?;
    let m_lines = sd
        .media_descriptions
        .iter()
        .map(|other| {
            if std::ptr::eq(other, m) {
                None
            } else {
                let n = &other.media_name;
                let fmt = n.formats.first().map(String::as_str).unwrap_or("0");
                Some(format!("m={} 0 {} {fmt}", n.media, n.protos.join("/")))
            }
        })
        .collect();
    if !is_rtp_avp(m) {
        // RTP/SAVP, UDP/TLS/RTP/SAVPF...: we have no SRTP.
        return Err(SdpError::NoCommonCodec);
    }
    // The offerer's order decides between PCMU and PCMA (RFC 3264 6.1).
    let codec = m
        .media_name
        .formats
        .iter()
        .find_map(|f| {
            let static_codec = match f.as_str() {
                "0" => Codec::Pcmu,
                "8" => Codec::Pcma,
                _ => return None,
            };
            // An rtpmap that maps 0/8 to something else is not G.711.
            match rtpmap(m, f) {
                None => Some(static_codec),
                Some((name, rate)) => {
                    let want = if static_codec == Codec::Pcmu {
                        "PCMU"
                    } else {
                        "PCMA"
                    };
                    (name.eq_ignore_ascii_case(want) && (rate.is_empty() || rate == "8000"))
                        .then_some(static_codec)
                }
            }
        })
        .ok_or(SdpError::NoCommonCodec)?;
    let telephone_event_pt = m.media_name.formats.iter().find_map(|f| {
        let pt: u8 = f.parse().ok().filter(|p| (96..=127).contains(p))?;
        let (name, rate) = rtpmap(m, f)?;
        (name.eq_ignore_ascii_case("telephone-event") && rate == "8000").then_some(pt)
    });
    let ptime = m
        .attribute("ptime")
        .flatten()
        .map(str::to_string)
        .or_else(|| sd.attribute("ptime").cloned())
        .and_then(|p| p.trim().parse::<u32>().ok())
        .filter(|p| (10..=120).contains(p))
        .unwrap_or(20);
    let direction = direction_of(&m.attributes)
        .or_else(|| direction_of(&sd.attributes))
        .unwrap_or(Direction::SendRecv);
    let conn = m
        .connection_information
        .as_ref()
        .or(sd.connection_information.as_ref())
        .and_then(|c| c.address.as_ref())
        .ok_or_else(|| SdpError::Malformed("no connection address".into()))?;
    // "a.b.c.d/ttl" is multicast notation; the address part is what we need.
    let addr_text = conn.address.split('/').next().unwrap_or("");
    let ip: IpAddr = addr_text.parse().map_err(|_| {
        SdpError::Malformed(format!(
            "connection address {addr_text:?} is not an IP address"
        ))
    })?;
    let port = m.media_name.port.value;
    let remote = if ip.is_unspecified() || port <= 0 || port > i64::from(u16::MAX) as isize {
        None
    } else {
        Some(SocketAddr::new(ip, port as u16))
    };
    Ok(Negotiated {
        codec,
        telephone_event_pt,
        remote,
        direction,
        ptime,
        m_lines,
    })
}

fn session_head(out: &mut String, ip: IpAddr, session_id: u64, version: u64) {
    let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let _ = write!(out, "v=0\r\no=ccswitch {session_id} {version} IN {fam} {ip}\r\ns=ccswitch\r\nc=IN {fam} {ip}\r\nt=0 0\r\n");
}

fn rtpmap_line(out: &mut String, codec: Codec) {
    let name = match codec {
        Codec::Pcmu => "PCMU",
        Codec::Pcma => "PCMA",
    };
    let _ = write!(out, "a=rtpmap:{} {name}/8000\r\n", codec.payload_type());
}

/// Our answer: the negotiated codec, telephone-event with the offered payload type (0-16),
/// ptime 20, and the direction that mirrors the remote's.
pub fn answer(ip: IpAddr, port: u16, session_id: u64, version: u64, n: &Negotiated) -> Bytes {
    let mut out = String::with_capacity(256);
    session_head(&mut out, ip, session_id, version);
    let ours = n.m_lines.iter().position(Option::is_none).unwrap_or(0);
    for line in n.m_lines[..ours].iter().flatten() {
        let _ = write!(out, "{line}\r\n");
    }
    let _ = write!(out, "m=audio {port} RTP/AVP {}", n.codec.payload_type());
    if let Some(te) = n.telephone_event_pt {
        let _ = write!(out, " {te}");
    }
    out.push_str("\r\n");
    rtpmap_line(&mut out, n.codec);
    if let Some(te) = n.telephone_event_pt {
        let _ = write!(
            out,
            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
        );
    }
    let _ = write!(
        out,
        "a=ptime:20\r\na={}\r\n",
        n.direction.answered().attribute()
    );
    for line in n.m_lines.iter().skip(ours + 1).flatten() {
        let _ = write!(out, "{line}\r\n");
    }
    Bytes::from(out)
}

/// Our offer: PCMU 0, PCMA 8, telephone-event/8000 101 0-16, ptime 20, sendrecv.
pub fn offer(ip: IpAddr, port: u16, session_id: u64, version: u64) -> Bytes {
    let mut out = String::with_capacity(256);
    session_head(&mut out, ip, session_id, version);
    let _ = write!(out, "m=audio {port} RTP/AVP 0 8 101\r\n");
    rtpmap_line(&mut out, Codec::Pcmu);
    rtpmap_line(&mut out, Codec::Pcma);
    out.push_str(
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
    );
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn neg(sdp: &str) -> Result<Negotiated, SdpError> {
        negotiate(&parse(sdp.replace('\n', "\r\n").as_bytes())?)
    }

    const LINPHONE: &str = "v=0
o=alice 2630 1297 IN IP4 192.168.1.20
s=Talk
c=IN IP4 192.168.1.20
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
";

    const BARESIP: &str = "v=0
o=- 1234123412 1234123413 IN IP4 10.0.0.7
s=-
c=IN IP4 10.0.0.7
t=0 0
m=audio 10004 RTP/AVP 96 9 8 0 101
b=AS:128
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:9 G722/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
a=rtcp-rsize
";

    const PJSUA: &str = "v=0
o=- 3912345678 3912345678 IN IP4 172.16.5.9
s=pjmedia
b=AS:84
t=0 0
a=X-nat:0
m=audio 4000 RTP/AVP 98 97 99 104 3 0 8 9 96
c=IN IP4 172.16.5.9
b=AS:64000
a=rtcp:4001 IN IP4 172.16.5.9
a=sendrecv
a=rtpmap:98 speex/16000
a=rtpmap:97 speex/8000
a=rtpmap:99 speex/32000
a=rtpmap:104 iLBC/8000
a=fmtp:104 mode=30
a=rtpmap:3 GSM/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:9 G722/8000
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-16
a=ssrc:1426384470 cname:5a5b0d5b2d3c1b1a
";

    const ZOIPER: &str = "v=0
o=Z 1700000000000 1 IN IP4 203.0.113.44
s=Z
c=IN IP4 203.0.113.44
t=0 0
m=audio 52000 RTP/AVP 106 9 98 101 8 0 3
a=rtpmap:106 opus/48000/2
a=fmtp:106 sprop-maxcapturerate=16000; minptime=20; useinbandfec=1
a=rtpmap:98 telephone-event/48000
a=fmtp:98 0-16
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:30
a=sendrecv
";

    #[test]
    fn linphone_prefers_pcmu_and_its_8k_telephone_event() {
        let n = neg(LINPHONE).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.telephone_event_pt, Some(100));
        assert_eq!(n.remote, Some("192.168.1.20:7078".parse().unwrap()));
        assert_eq!((n.direction, n.ptime), (Direction::SendRecv, 20));
    }

    #[test]
    fn baresip_order_gives_pcma() {
        let n = neg(BARESIP).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.telephone_event_pt, Some(101));
    }

    #[test]
    fn pjsua_media_level_connection() {
        let n = neg(PJSUA).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.telephone_event_pt, Some(96));
        assert_eq!(n.remote, Some("172.16.5.9:4000".parse().unwrap()));
    }

    #[test]
    fn zoiper_ptime_and_static_pts_without_rtpmap() {
        let n = neg(ZOIPER).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.telephone_event_pt, Some(101));
        assert_eq!(n.ptime, 30);
    }

    #[test]
    fn hold_and_directions() {
        let held = BARESIP
            .replace("c=IN IP4 10.0.0.7", "c=IN IP4 0.0.0.0")
            .replace("a=sendrecv", "a=sendonly");
        let n = neg(&held).unwrap();
        assert_eq!((n.remote, n.direction), (None, Direction::SendOnly));
        // Media level overrides session level.
        let s = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\na=inactive\nm=audio 5004 RTP/AVP 0\na=recvonly\n";
        assert_eq!(neg(s).unwrap().direction, Direction::RecvOnly);
        let s = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\na=inactive\nm=audio 5004 RTP/AVP 0\n";
        assert_eq!(neg(s).unwrap().direction, Direction::Inactive);
    }

    #[test]
    fn rejected_stream_ipv6_and_refusals() {
        let s =
            "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 0 RTP/AVP 0\n";
        assert_eq!(neg(s).unwrap().remote, None);
        let s = "v=0\no=- 1 1 IN IP6 2001:db8::5\ns=-\nc=IN IP6 2001:db8::5\nt=0 0\nm=audio 6000 RTP/AVP 8 0\n";
        let n = neg(s).unwrap();
        assert_eq!(
            (n.codec, n.remote),
            (Codec::Pcma, Some("[2001:db8::5]:6000".parse().unwrap()))
        );
        let savp = BARESIP.replace("RTP/AVP", "RTP/SAVP");
        assert_eq!(neg(&savp), Err(SdpError::NoCommonCodec));
        let video = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=video 5004 RTP/AVP 96\n";
        assert_eq!(neg(video), Err(SdpError::NoAudio));
        let g722 = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 5004 RTP/AVP 9 101\n";
        assert_eq!(neg(g722), Err(SdpError::NoCommonCodec));
        assert!(matches!(parse(b"hello"), Err(SdpError::Malformed(_))));
        let no_c = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio 5004 RTP/AVP 0\n";
        assert!(matches!(neg(no_c), Err(SdpError::Malformed(_))));
    }

    #[test]
    fn answer_mirrors_and_parses_back() {
        let n = neg(&BARESIP.replace("a=sendrecv", "a=sendonly")).unwrap();
        let a = answer("10.1.1.1".parse().unwrap(), 20000, 42, 1, &n);
        let text = std::str::from_utf8(&a).unwrap();
        assert!(text.contains("m=audio 20000 RTP/AVP 8 101\r\n"));
        assert!(text.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"));
        assert!(text.contains("a=recvonly\r\n"));
        let back = negotiate(&parse(&a).unwrap()).unwrap();
        assert_eq!(back.codec, Codec::Pcma);
        assert_eq!(back.direction, Direction::RecvOnly);
        assert_eq!(back.remote, Some("10.1.1.1:20000".parse().unwrap()));
    }

    #[test]
    fn answer_keeps_the_offers_m_lines_and_refuses_video_with_port_0() {
        let offer = "v=0\r\no=a 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n\
m=video 9078 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n\
m=audio 7078 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        let n = negotiate(&parse(offer.as_bytes()).unwrap()).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        let a = answer("10.1.1.1".parse().unwrap(), 30000, 7, 2, &n);
        let a = std::str::from_utf8(&a).unwrap();
        let m: Vec<&str> = a.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m,
            vec!["m=video 0 RTP/AVP 96", "m=audio 30000 RTP/AVP 8 101"]
        );
        assert!(parse(a.as_bytes()).is_ok());
    }

    #[test]
    fn offer_parses_back() {
        let o = offer("10.1.1.1".parse().unwrap(), 30000, 7, 2);
        let n = negotiate(&parse(&o).unwrap()).unwrap();
        assert_eq!(
            n,
            Negotiated {
                codec: Codec::Pcmu,
                telephone_event_pt: Some(101),
                remote: Some("10.1.1.1:30000".parse().unwrap()),
                direction: Direction::SendRecv,
                ptime: 20,
                m_lines: vec![None],
            }
        );
        let o6 = offer("2001:db8::1".parse().unwrap(), 30000, 7, 2);
        assert!(std::str::from_utf8(&o6)
            .unwrap()
            .contains("c=IN IP6 2001:db8::1\r\n"));
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(s) = parse(&data) { let _ = negotiate(&s); }
            let mut v = b"v=0\r\n".to_vec();
            v.extend_from_slice(&data);
            if let Ok(s) = parse(&v) { let _ = negotiate(&s); }
        }

        #[test]
        fn mutated_offers_never_panic(pos in 0usize..400, byte in any::<u8>()) {
            let mut v = BARESIP.replace('\n', "\r\n").into_bytes();
            if pos < v.len() { v[pos] = byte; }
            if let Ok(s) = parse(&v) { let _ = negotiate(&s); }
        }
    }
}
