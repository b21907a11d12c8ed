//! `[webrtc]`: media of browser agents (WebRTC legs, see `media::webrtc`).

use crate::media::webrtc::{IceServer, WebRtcSettings};
use serde::Deserialize;
use std::net::IpAddr;

/// `[webrtc]` in ccswitch.toml.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebRtcSection {
    /// The address of the ICE host candidates (bound and advertised to browsers). Default:
    /// `sip.advertised_ip`, else the address SIP listens on, else the primary interface's.
    pub host_ip: Option<IpAddr>,
    /// UDP ports for the WebRTC peers (one per browser call), inclusive; must not overlap
    /// `[rtp]`'s range.
    pub port_min: u16,
    pub port_max: u16,
    /// STUN/TURN servers for agents behind NAT: the browser phones get them with their
    /// session, the switch gathers a server-reflexive candidate from each STUN one. E.g.
    /// `[[webrtc.ice_servers]] urls = ["stun:stun.example.com:3478"]` or
    /// `urls = ["turn:turn.example.com:3478?transport=udp"], username = "...", credential = "..."`.
    pub ice_servers: Vec<IceServerSection>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct IceServerSection {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

impl Default for WebRtcSection {
    fn default() -> Self {
        WebRtcSection {
            host_ip: None,
            // Above Linux's ephemeral ports (32768-60999) and the usual RTP ranges.
            port_min: 61000,
            port_max: 61999,
            ice_servers: Vec::new(),
        }
    }
}

impl WebRtcSection {
    /// `rtp` is `[rtp]`'s port range.
    pub(super) fn check(&self, rtp: (u16, u16)) -> Result<(), (&'static str, String)> {
        if let Some(ip) = self.host_ip {
            if ip.is_unspecified() || ip.is_multicast() {
                return Err((
                    "webrtc.host_ip",
                    format!("`{ip}` cannot be a host candidate: give the agents' reachable address of this machine"),
                ));
            }
        }
        if self.port_min < 1024 || self.port_min > self.port_max {
            return Err((
                "webrtc.port_min",
                format!(
                    "the range {}..={} must start at 1024 or above and port_min must not exceed port_max",
                    self.port_min, self.port_max
                ),
            ));
        }
        if self.port_min <= rtp.1 && rtp.0 <= self.port_max {
            return Err((
                "webrtc.port_min",
                format!(
                    "the range {}..={} overlaps [rtp] ports {}..={}",
                    self.port_min, self.port_max, rtp.0, rtp.1
                ),
            ));
        }
        for s in &self.ice_servers {
            if s.urls.is_empty() {
                return Err(("webrtc.ice_servers", "every server needs `urls`".into()));
            }
            for u in &s.urls {
                let scheme = u.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
                let host = u.split_once(':').map(|(_, r)| r).unwrap_or("");
                match scheme.as_deref() {
                    Some("stun" | "stuns") if !host.is_empty() => {}
                    Some("turn" | "turns") if !host.is_empty() => {
                        if s.username.is_empty() || s.credential.is_empty() {
                            return Err((
                                "webrtc.ice_servers",
                                format!(
                                    "`{u}` is a TURN server: it needs `username` and `credential`"
                                ),
                            ));
                        }
                    }
                    _ => {
                        return Err((
                            "webrtc.ice_servers",
                            format!(
                                "`{u}` is not a stun:, stuns:, turn: or turns: URL with a host"
                            ),
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// The media shell's settings; `default_host` when `host_ip` is not set.
    pub fn settings(&self, default_host: IpAddr) -> WebRtcSettings {
        WebRtcSettings {
            host_ip: self.host_ip.unwrap_or(default_host),
            port_min: self.port_min,
            port_max: self.port_max,
            ice_servers: self
                .ice_servers
                .iter()
                .map(|s| IceServer {
                    urls: s.urls.clone(),
                    username: s.username.clone(),
                    credential: s.credential.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> WebRtcSection {
        toml::from_str(t).unwrap()
    }

    #[test]
    fn defaults_pass() {
        assert_eq!(WebRtcSection::default().check((20000, 30000)), Ok(()));
    }

    #[test]
    fn bad_values_are_named() {
        let s = parse("host_ip = \"0.0.0.0\"");
        assert_eq!(s.check((20000, 30000)).unwrap_err().0, "webrtc.host_ip");
        let s = parse("port_min = 25000\nport_max = 26000");
        let e = s.check((20000, 30000)).unwrap_err();
        assert!(e.1.contains("overlaps"), "{e:?}");
        let s = parse("port_min = 6000\nport_max = 5000");
        assert_eq!(s.check((20000, 30000)).unwrap_err().0, "webrtc.port_min");
        let s = parse("[[ice_servers]]\nurls = [\"http://x\"]");
        assert!(s.check((20000, 30000)).unwrap_err().1.contains("stun:"));
        let s = parse("[[ice_servers]]\nurls = [\"turn:turn.example.com:3478\"]");
        assert!(s.check((20000, 30000)).unwrap_err().1.contains("username"));
        let s = parse(
            "[[ice_servers]]\nurls = [\"turn:t.example.com:3478\", \"stun:s.example.com\"]\nusername = \"u\"\ncredential = \"p\"",
        );
        assert_eq!(s.check((20000, 30000)), Ok(()));
        assert!(toml::from_str::<WebRtcSection>("stun = 1").is_err());
    }
}
