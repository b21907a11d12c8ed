//! WebRTC legs for browser agents and browser callers (issue 10 item 2), in the media shell.
//!
//! The engine stays sans-IO: it asks for a peer with `MediaCommand::WebRtcOffer` and gets the
//! SDP offer back as `MediaEvent::WebRtcOffer`; the browser's answer goes in with
//! `MediaCommand::WebRtcAnswer`; `MediaCommand::Close` of the leg closes its peers. When a
//! browser phone calls us, `MediaCommand::WebRtcAccept` carries its offer and the peer's
//! answer comes back as `MediaEvent::WebRtcAccepted`.
//!
//! Each peer (`peer.rs`) is a sans-IO `rtc` 0.21 peer connection (the core of the `webrtc`
//! crate): ICE with a host candidate on the configured address and port range plus
//! server-reflexive candidates from the configured STUN servers (`gather.rs`), DTLS-SRTP, RTCP
//! reports from the default interceptors, offering PCMU, PCMA and telephone-event (RFC 4733)
//! only. It lives in the media worker that owns its leg (`media::runtime::webrtc_legs`): the
//! worker reads the peer's ICE socket, hands the decrypted RTP to the leg as if the leg's own
//! socket had received it from the peer's address, and encrypts what the leg sends to that
//! address. So the leg (pacing, playback and hold audio, bridge with the caller, PCMU/PCMA
//! transcoding, recording, RFC 4733 digits) behaves exactly as for a UDP phone, no packet
//! passes through the engine, and no packet crosses a thread.
//!
//! TURN servers in `[[webrtc.ice_servers]]` are for the browsers (agents behind NAT): the
//! pages get the list with the session; the switch itself gathers host and server-reflexive
//! candidates only.

pub mod client;
mod gather;
pub mod peer;

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_PCMA, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

/// Payload type of telephone-event in our offers (the agent leg's `telephone_event_pt`).
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// A STUN or TURN server (`[[webrtc.ice_servers]]`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// What the WebRTC peers bind and advertise (`[webrtc]` in ccswitch.toml).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebRtcSettings {
    /// The address ICE host candidates are bound on and advertised with.
    pub host_ip: IpAddr,
    /// UDP ports for the peers' ICE sockets (one per peer), inclusive.
    pub port_min: u16,
    pub port_max: u16,
    pub ice_servers: Vec<IceServer>,
}

impl Default for WebRtcSettings {
    fn default() -> Self {
        WebRtcSettings {
            host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_min: 40000,
            port_max: 49999,
            ice_servers: Vec::new(),
        }
    }
}

struct Shared {
    settings: WebRtcSettings,
    /// One DTLS certificate for every peer (as a browser uses one per page).
    certificate: RTCCertificate,
    /// The STUN servers of `settings.ice_servers`, resolved when the gateway starts.
    stun: Vec<SocketAddr>,
    next_port: AtomicU32,
    /// Peers alive now (the workers count them).
    peers: AtomicUsize,
}

/// What every WebRTC peer shares: settings, certificate, STUN servers, the port range.
/// Attached to the media plane with `MediaHandle::attach_webrtc`. Cheap to clone.
#[derive(Clone)]
pub struct WebRtcGateway {
    shared: Arc<Shared>,
}

impl WebRtcGateway {
    /// Makes the DTLS certificate and resolves the STUN servers (a name that does not resolve
    /// is logged and skipped: the peers then offer host candidates only).
    pub fn new(settings: WebRtcSettings) -> Result<WebRtcGateway, String> {
        let provider =
            rtc::crypto::default_provider().map_err(|e| format!("WebRTC crypto provider: {e}"))?;
        let params = CertificateParams::new(vec!["ccswitch".to_owned()])
            .map_err(|e| format!("WebRTC certificate: {e}"))?;
        let certificate = RTCCertificate::generate(
            provider.crypto(),
            rtc::crypto::SignatureScheme::EcdsaP256Sha256,
            params,
        )
        .map_err(|e| format!("WebRTC certificate: {e}"))?;
        let stun = stun_servers(&settings.ice_servers);
        Ok(WebRtcGateway {
            shared: Arc::new(Shared {
                settings,
                certificate,
                stun,
                next_port: AtomicU32::new(0),
                peers: AtomicUsize::new(0),
            }),
        })
    }

    /// Peers alive now (all legs).
    pub fn peer_count(&self) -> usize {
        self.shared.peers.load(Ordering::Relaxed)
    }

    pub(crate) fn peer_opened(&self) {
        self.shared.peers.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn peer_closed(&self) {
        self.shared.peers.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn certificate(&self) -> RTCCertificate {
        self.shared.certificate.clone()
    }

    pub(crate) fn stun_servers(&self) -> &[SocketAddr] {
        &self.shared.stun
    }

    /// A non-blocking UDP socket on `host_ip` and the next free port of the range (round
    /// robin, at most 64 tries).
    pub(crate) fn bind_ice_socket(&self) -> Result<UdpSocket, String> {
        let s = &self.shared.settings;
        let span = u32::from(s.port_max.saturating_sub(s.port_min)) + 1;
        let mut last = String::new();
        for _ in 0..span.min(64) {
            let n = self.shared.next_port.fetch_add(1, Ordering::Relaxed) % span;
            let addr = SocketAddr::new(s.host_ip, s.port_min + n as u16);
            match UdpSocket::bind(addr).and_then(|u| u.set_nonblocking(true).map(|()| u)) {
                Ok(u) => return Ok(u),
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        Err(format!("no free WebRTC port: {last}"))
    }
}

/// The `stun:` URLs' addresses (default port 3478).
fn stun_servers(servers: &[IceServer]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for url in servers.iter().flat_map(|s| &s.urls) {
        let Some(rest) = url.strip_prefix("stun:") else {
            continue;
        };
        let host_port = rest.split('?').next().unwrap_or(rest);
        let target = if host_port
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && !h.ends_with(':') && p.parse::<u16>().is_ok())
        {
            host_port.to_string()
        } else {
            format!("{host_port}:3478")
        };
        match target.to_socket_addrs() {
            Ok(addrs) => out.extend(addrs),
            Err(e) => tracing::warn!(url = %url, error = %e, "STUN server not resolved; skipped"),
        }
    }
    out
}

/// PCMU, PCMA and telephone-event: what a G.711 agent leg can carry without transcoding.
pub fn media_engine() -> Result<MediaEngine, String> {
    let mut me = MediaEngine::default();
    for params in codec_parameters() {
        let mime = params.rtp_codec.mime_type.clone();
        me.register_codec(params, RtpCodecKind::Audio)
            .map_err(|e| format!("registering {mime}: {e}"))?;
    }
    Ok(me)
}

/// PCMU (0), PCMA (8) and telephone-event (101), in our order of preference.
pub fn codec_parameters() -> Vec<RTCRtpCodecParameters> {
    [
        (MIME_TYPE_PCMU, 0u8, ""),
        (MIME_TYPE_PCMA, 8, ""),
        (MIME_TYPE_TELEPHONE_EVENT, TELEPHONE_EVENT_PT, "0-16"),
    ]
    .into_iter()
    .map(|(mime, pt, fmtp)| RTCRtpCodecParameters {
        rtp_codec: codec(mime, fmtp),
        payload_type: pt,
    })
    .collect()
}

pub(crate) fn codec(mime: &str, fmtp: &str) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: mime.to_owned(),
        clock_rate: 8000,
        channels: 0,
        sdp_fmtp_line: fmtp.to_owned(),
        rtcp_feedback: vec![],
    }
}

/// Our sending track: one audio encoding on `ssrc`, PCMU by default.
pub(crate) fn audio_track(ssrc: u32) -> MediaStreamTrack {
    MediaStreamTrack::new(
        "ccswitch".to_string(),
        format!("audio-{ssrc:08x}"),
        "audio".to_string(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: codec(MIME_TYPE_PCMU, ""),
            ..Default::default()
        }],
    )
}
