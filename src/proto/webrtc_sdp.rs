//! SDP of WebRTC legs that the engine reads and writes itself (sans-IO): whether an offer is
//! a WebRTC one, and the answer to a browser's re-INVITE (hold, unhold) in an established
//! session.

/// Our answer to a browser's re-offer in an established WebRTC session: our own description
/// from the start of the call (same ICE credentials, fingerprint and candidates, so neither
/// ICE nor DTLS restarts) with the DTLS role we already have, the answering direction, the
/// offer's mid, only the payload types the re-offer still carries, and `version` as the
/// o= session version. None when the re-offer keeps neither PCMU nor PCMA.
pub fn reanswer(ours: &str, offer: &str, version: u64, we_active: bool) -> Option<String> {
    let offer_lines: Vec<&str> = offer.lines().map(str::trim_end).collect();
    let m_offer = offer_lines.iter().find(|l| l.starts_with("m=audio"))?;
    let offer_pts: Vec<&str> = m_offer.split_whitespace().skip(3).collect();
    // Media-level attributes of the offer's audio section.
    let audio_attrs: Vec<&str> = offer_lines
        .iter()
        .skip_while(|l| !l.starts_with("m=audio"))
        .skip(1)
        .take_while(|l| !l.starts_with("m="))
        .copied()
        .collect();
    let direction = audio_attrs
        .iter()
        .rev()
        .find_map(|l| match *l {
            "a=sendonly" => Some("a=recvonly"),
            "a=recvonly" => Some("a=sendonly"),
            "a=inactive" => Some("a=inactive"),
            "a=sendrecv" => Some("a=sendrecv"),
            _ => None,
        })
        .unwrap_or("a=sendrecv");
    let mid = audio_attrs
        .iter()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .map(str::to_string);
    let m_ours = ours.lines().find(|l| l.starts_with("m=audio"))?.trim_end();
    let head: Vec<&str> = m_ours.split_whitespace().take(3).collect();
    let kept: Vec<&str> = m_ours
        .split_whitespace()
        .skip(3)
        .filter(|pt| offer_pts.contains(pt))
        .collect();
    if !kept.iter().any(|pt| *pt == "0" || *pt == "8") {
        return None;
    }
    let pt_of = |l: &str, prefix: &str| -> Option<String> {
        l.strip_prefix(prefix)
            .and_then(|r| r.split([' ', ':']).next())
            .map(str::to_string)
    };
    let mut out = String::new();
    for line in ours.lines().map(str::trim_end) {
        let dropped_pt = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
            .iter()
            .find_map(|p| pt_of(line, p))
            .is_some_and(|pt| !kept.contains(&pt.as_str()));
        if dropped_pt || line.is_empty() {
            continue;
        }
        let replaced = if line.starts_with("o=") {
            let mut t: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            if t.len() >= 3 {
                t[2] = version.to_string();
            }
            t.join(" ")
        } else if line.starts_with("m=audio") {
            format!("{} {}", head.join(" "), kept.join(" "))
        } else if line.starts_with("a=setup:") {
            if we_active {
                "a=setup:active"
            } else {
                "a=setup:passive"
            }
            .to_string()
        } else if matches!(
            line,
            "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive"
        ) {
            direction.to_string()
        } else if let (Some(_), Some(mid)) = (line.strip_prefix("a=mid:"), mid.as_ref()) {
            format!("a=mid:{mid}")
        } else if let (true, Some(mid)) = (line.starts_with("a=group:BUNDLE"), mid.as_ref()) {
            format!("a=group:BUNDLE {mid}")
        } else {
            line.to_string()
        };
        out.push_str(&replaced);
        out.push_str("\r\n");
    }
    Some(out)
}

/// Whether an SDP offer is a WebRTC one: its audio is DTLS-SRTP (UDP/TLS/RTP/SAVPF or
/// another SAVP profile), which only a WebRTC peer can terminate.
pub fn is_webrtc(sdp: &[u8]) -> bool {
    String::from_utf8_lossy(sdp).lines().any(|l| {
        l.starts_with("m=audio")
            && l.split_whitespace()
                .nth(2)
                .is_some_and(|p| p.contains("SAVP"))
    })
}

/// The o= line's session version (RFC 4566 5.2), which a later SDP of the same session
/// must raise by one (RFC 3264 8).
pub fn session_version(sdp: &str) -> Option<u64> {
    let o = sdp.lines().find(|l| l.starts_with("o="))?;
    o.split_whitespace().nth(2)?.parse().ok()
}

/// Our DTLS role after the browser's answer: active when it chose passive.
pub fn we_are_active(answer: &str) -> bool {
    answer.lines().any(|l| l.trim_end() == "a=setup:passive")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "v=0\r\no=- 7 100 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 AA\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 8 101\r\nc=IN IP4 0.0.0.0\r\na=setup:actpass\r\na=mid:0\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\na=rtcp-mux\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\na=candidate:1 1 udp 1 127.0.0.1 61000 typ host\r\n";

    #[test]
    fn hold_reoffer_gets_recvonly_with_our_role_and_credentials() {
        let offer = "v=0\r\no=b 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126\r\na=mid:audio\r\na=setup:actpass\r\na=sendonly\r\n";
        let a = reanswer(OURS, offer, 101, false).unwrap();
        assert!(a.contains("o=- 7 101 IN IP4"), "{a}");
        assert!(a.contains("m=audio 9 UDP/TLS/RTP/SAVPF 0 8\r\n"), "{a}");
        assert!(!a.contains("rtpmap:101") && !a.contains("fmtp:101"), "{a}");
        assert!(
            a.contains("a=setup:passive") && a.contains("a=recvonly"),
            "{a}"
        );
        assert!(
            a.contains("a=mid:audio") && a.contains("a=group:BUNDLE audio"),
            "{a}"
        );
        assert!(a.contains("a=ice-ufrag:u") && a.contains("a=fingerprint:sha-256 AA"));
        let unhold = offer
            .replace("a=sendonly", "a=sendrecv")
            .replace(" 126", " 101");
        let a = reanswer(OURS, &unhold, 102, true).unwrap();
        assert!(
            a.contains("a=sendrecv") && a.contains("a=setup:active"),
            "{a}"
        );
        assert!(a.contains("SAVPF 0 8 101"), "{a}");
        assert_eq!(
            reanswer(OURS, "v=0\r\nm=audio 9 RTP/AVP 9\r\n", 1, false),
            None
        );
        assert_eq!(reanswer(OURS, "garbage", 1, false), None);
        assert!(is_webrtc(OURS.as_bytes()));
        assert_eq!(session_version(OURS), Some(100));
        assert_eq!(session_version("v=0\r\no=- x\r\n"), None);
        assert!(is_webrtc(b"v=0\r\nm=audio 9 RTP/SAVPF 0\r\n"));
        assert!(!is_webrtc(b"v=0\r\nm=audio 4000 RTP/AVP 0 101\r\n"));
        assert!(!is_webrtc(b"garbage"));
        assert!(we_are_active("a=setup:passive\r\n"));
        assert!(!we_are_active("a=setup:active\r\n"));
    }
}
