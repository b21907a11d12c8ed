//! WebRTC legs for browser agents (issue 10 item 2), in the media shell.
//!
//! The engine stays sans-IO: it asks for a peer with `MediaCommand::WebRtcOffer` and gets the
//! SDP offer back as `MediaEvent::WebRtcOffer`; the browser's answer goes in with
//! `MediaCommand::WebRtcAnswer`; `MediaCommand::Close` of the leg closes its peers. When a
//! browser phone calls us, `MediaCommand::WebRtcAccept` carries its offer and the peer's
//! answer comes back as `MediaEvent::WebRtcAccepted`.
//!
//! Each peer is a `webrtc` 0.21 peer connection (ICE with host candidates on the configured
//! address and port range plus STUN/TURN servers, DTLS-SRTP, RTCP reports from the default
//! interceptors) offering PCMU, PCMA and telephone-event (RFC 4733) only. Its audio meets the
//! media plane as plain RTP on loopback: a relay socket per peer exchanges packets with the
//! agent leg's own RTP port, so the leg (pacing, playback and hold audio, bridge with the caller,
//! PCMU/PCMA transcoding, recording, RFC 4733 digits) behaves exactly as for a UDP phone and no
//! packet passes through the engine. The relay hop costs one loopback datagram each way
//! (measured by `cargo bench --bench media_bridge`, WebRTC case).

pub mod client;

use crate::engine::media::{LegId, MediaEvent};
use ::webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use ::webrtc::media_stream::track_local::TrackLocal;
use ::webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use ::webrtc::media_stream::MediaStreamTrack;
use ::webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState, RTCIceServer,
    RTCPeerConnectionState, RTCSessionDescription, Registry,
};
use ::webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc::{self, UnboundedSender};

use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_PCMA, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::shared::marshal::{Marshal, Unmarshal};

/// Payload type of telephone-event in our offers (the agent leg's `telephone_event_pt`).
pub const TELEPHONE_EVENT_PT: u8 = 101;
/// How long ICE gathering may take before the offer goes out with what was gathered.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after the answer ICE + DTLS may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A STUN or TURN server for the peers' ICE agents (`[[webrtc.ice_servers]]`).
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
    /// Where the media plane's legs listen (`[rtp] bind_ip`); a wildcard means loopback.
    pub media_ip: IpAddr,
}

impl Default for WebRtcSettings {
    fn default() -> Self {
        WebRtcSettings {
            host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_min: 40000,
            port_max: 49999,
            ice_servers: Vec::new(),
            media_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

enum PeerCmd {
    Answer(String),
}

/// Which side of the offer/answer our peer is on.
enum Role {
    /// We call a browser phone: our offer goes in the INVITE, its answer comes back.
    Offer,
    /// A browser phone calls us with this offer: our answer goes in the 200 OK.
    Accept(String),
}

/// Each leg's peers: (fork, the peer task's command sender).
type PeerMap = HashMap<LegId, Vec<(usize, UnboundedSender<PeerCmd>)>>;

struct Shared {
    settings: WebRtcSettings,
    events: UnboundedSender<MediaEvent>,
    next_port: AtomicU32,
    /// The live peers by leg and fork; dropping a sender ends the peer's task.
    peers: Mutex<PeerMap>,
    rt: tokio::runtime::Handle,
}

/// The media shell's WebRTC side. Cheap to clone.
#[derive(Clone)]
pub struct WebRtcGateway {
    shared: Arc<Shared>,
}

impl WebRtcGateway {
    /// Peers run as tasks on `rt`; events go to the engine on `events`.
    pub fn new(
        settings: WebRtcSettings,
        events: UnboundedSender<MediaEvent>,
        rt: tokio::runtime::Handle,
    ) -> WebRtcGateway {
        WebRtcGateway {
            shared: Arc::new(Shared {
                settings,
                events,
                next_port: AtomicU32::new(0),
                peers: Mutex::new(HashMap::new()),
                rt,
            }),
        }
    }

    /// Creates the peer for `leg`/`fork`; its RTP goes to the leg's `rtp_port`.
    pub fn offer(&self, leg: LegId, fork: usize, rtp_port: u16) {
        self.spawn(leg, fork, rtp_port, Role::Offer);
    }

    /// Creates the peer that answers a browser's `offer` (its INVITE) for `leg`.
    pub fn accept(&self, leg: LegId, offer: String, rtp_port: u16) {
        self.spawn(leg, 0, rtp_port, Role::Accept(offer));
    }

    fn spawn(&self, leg: LegId, fork: usize, rtp_port: u16, role: Role) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.peers().entry(leg).or_default().push((fork, tx));
        let shared = self.shared.clone();
        let media_ip = if shared.settings.media_ip.is_unspecified() {
            match shared.settings.media_ip {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            }
        } else {
            shared.settings.media_ip
        };
        let leg_addr = SocketAddr::new(media_ip, rtp_port);
        self.shared.rt.spawn(async move {
            if let Err(reason) = run_peer(&shared, leg, fork, leg_addr, role, rx).await {
                tracing::info!(leg, fork, reason = %reason, "WebRTC peer ended");
                let _ = shared
                    .events
                    .send(MediaEvent::WebRtcFailed { leg, fork, reason });
            }
            let mut peers = shared.peers.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(list) = peers.get_mut(&leg) {
                list.retain(|(f, tx)| *f != fork || !tx.is_closed());
                if list.is_empty() {
                    peers.remove(&leg);
                }
            }
        });
    }

    /// The browser's answer for `leg`/`fork`; the leg's other peers end.
    pub fn answer(&self, leg: LegId, fork: usize, sdp: String) {
        let mut peers = self.peers();
        let Some(list) = peers.get_mut(&leg) else {
            drop(peers);
            let reason = format!("no WebRTC peer for leg {leg}");
            let _ = self
                .shared
                .events
                .send(MediaEvent::WebRtcFailed { leg, fork, reason });
            return;
        };
        list.retain(|(f, _)| *f == fork);
        if let Some((_, tx)) = list.first() {
            let _ = tx.send(PeerCmd::Answer(sdp));
        }
    }

    /// Ends every peer of `leg`.
    pub fn close(&self, leg: LegId) {
        self.peers().remove(&leg);
    }

    /// Ends every peer (shutdown).
    pub fn close_all(&self) {
        self.peers().clear();
    }

    /// Peers alive now (all legs).
    pub fn peer_count(&self) -> usize {
        self.peers().values().map(Vec::len).sum()
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, PeerMap> {
        self.shared
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// PCMU, PCMA and telephone-event: what a G.711 agent leg can carry without transcoding.
pub fn media_engine() -> Result<MediaEngine, String> {
    let mut me = MediaEngine::default();
    for (mime, pt, fmtp) in [
        (MIME_TYPE_PCMU, 0u8, ""),
        (MIME_TYPE_PCMA, 8, ""),
        (MIME_TYPE_TELEPHONE_EVENT, TELEPHONE_EVENT_PT, "0-16"),
    ] {
        me.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: codec(mime, fmtp),
                payload_type: pt,
            },
            RtpCodecKind::Audio,
        )
        .map_err(|e| format!("registering {mime}: {e}"))?;
    }
    Ok(me)
}

fn codec(mime: &str, fmtp: &str) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: mime.to_owned(),
        clock_rate: 8000,
        channels: 0,
        sdp_fmtp_line: fmtp.to_owned(),
        rtcp_feedback: vec![],
    }
}

/// An audio track we send on, with its SSRC.
pub fn audio_track(ssrc: u32) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
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
    )))
}

/// Adds `track` as a sendrecv audio transceiver offering PCMU, PCMA and telephone-event
/// (without the preferences only the track's own codec would be offered).
pub(crate) async fn add_audio(
    pc: &Arc<dyn PeerConnection>,
    track: &Arc<TrackLocalStaticRTP>,
) -> Result<(), String> {
    let t = pc
        .add_transceiver_from_track(
            track.clone() as Arc<dyn TrackLocal>,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendrecv,
                ..Default::default()
            }),
        )
        .await
        .map_err(|e| format!("add_transceiver: {e}"))?;
    let prefs = [
        (MIME_TYPE_PCMU, 0u8, ""),
        (MIME_TYPE_PCMA, 8, ""),
        (MIME_TYPE_TELEPHONE_EVENT, TELEPHONE_EVENT_PT, "0-16"),
    ]
    .into_iter()
    .map(|(mime, pt, fmtp)| RTCRtpCodecParameters {
        rtp_codec: codec(mime, fmtp),
        payload_type: pt,
    })
    .collect();
    t.set_codec_preferences(prefs)
        .await
        .map_err(|e| format!("set_codec_preferences: {e}"))
}

/// Peer connection callbacks, turned into channel messages for the peer's task.
pub(crate) struct Handler {
    pub gathered: UnboundedSender<()>,
    pub state: UnboundedSender<RTCPeerConnectionState>,
    pub track: UnboundedSender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(());
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.track.send(track);
    }
}

pub(crate) struct Channels {
    pub gathered: mpsc::UnboundedReceiver<()>,
    pub state: mpsc::UnboundedReceiver<RTCPeerConnectionState>,
    pub track: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
}

pub(crate) fn handler() -> (Arc<Handler>, Channels) {
    let (g, gathered) = mpsc::unbounded_channel();
    let (s, state) = mpsc::unbounded_channel();
    let (t, track) = mpsc::unbounded_channel();
    (
        Arc::new(Handler {
            gathered: g,
            state: s,
            track: t,
        }),
        Channels {
            gathered,
            state,
            track,
        },
    )
}

/// Builds a peer connection bound to `udp` with our codecs and RTCP interceptors.
pub(crate) async fn build_peer(
    udp: SocketAddr,
    ice_servers: &[IceServer],
    handler: Arc<Handler>,
) -> Result<Arc<dyn PeerConnection>, String> {
    let mut me = media_engine()?;
    let registry = register_default_interceptors(Registry::new(), &mut me)
        .map_err(|e| format!("interceptors: {e}"))?;
    let config = RTCConfigurationBuilder::new()
        .with_ice_servers(
            ice_servers
                .iter()
                .map(|s| RTCIceServer {
                    urls: s.urls.clone(),
                    username: s.username.clone(),
                    credential: s.credential.clone(),
                })
                .collect(),
        )
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(config)
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(vec![udp])
        .build()
        .await
        .map_err(|e| format!("cannot create the peer connection on {udp}: {e}"))?;
    Ok(Arc::new(pc))
}

/// Waits for ICE gathering to complete (bounded) and returns the local description's SDP.
pub(crate) async fn gathered_sdp(
    pc: &Arc<dyn PeerConnection>,
    gathered: &mut mpsc::UnboundedReceiver<()>,
) -> Result<String, String> {
    let _ = tokio::time::timeout(GATHER_TIMEOUT, gathered.recv()).await;
    pc.local_description()
        .await
        .map(|d| d.sdp)
        .ok_or_else(|| "no local description".to_string())
}

/// Packets from the leg (plain RTP on the relay socket) go out on `track` with our SSRC.
/// Returns when the peer connection is gone.
pub(crate) async fn outbound(
    relay: Arc<tokio::net::UdpSocket>,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        let n = match relay.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) if is_transient(&e) => continue,
            Err(_) => return,
        };
        let mut b = &buf[..n];
        let Ok(mut pkt) = rtc::rtp::packet::Packet::unmarshal(&mut b) else {
            continue;
        };
        pkt.header.ssrc = ssrc;
        if track.write_rtp(pkt).await.is_err() {
            return;
        }
    }
}

/// Packets of the browser's track go to the leg as plain RTP. Returns when the track ends.
pub(crate) async fn inbound(relay: Arc<tokio::net::UdpSocket>, remote: Arc<dyn TrackRemote>) {
    while let Some(ev) = remote.poll().await {
        if let TrackRemoteEvent::OnRtpPacket(pkt) = ev {
            if let Ok(bytes) = pkt.marshal() {
                let _ = relay.send(&bytes).await;
            }
        }
    }
}

/// ICMP port-unreachable from a leg not yet open shows up as ECONNREFUSED on the next recv.
fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
    )
}

impl Shared {
    /// Next port of the range to try (round robin).
    fn port(&self) -> u16 {
        let span = u32::from(self.settings.port_max - self.settings.port_min) + 1;
        let n = self.next_port.fetch_add(1, Ordering::Relaxed) % span;
        self.settings.port_min + n as u16
    }
}

async fn run_peer(
    shared: &Shared,
    leg: LegId,
    fork: usize,
    leg_addr: SocketAddr,
    role: Role,
    mut cmds: mpsc::UnboundedReceiver<PeerCmd>,
) -> Result<(), String> {
    let relay = std::net::UdpSocket::bind(SocketAddr::new(leg_addr.ip(), 0))
        .and_then(|s| {
            s.connect(leg_addr)?;
            s.set_nonblocking(true)?;
            tokio::net::UdpSocket::from_std(s)
        })
        .map_err(|e| format!("relay socket towards {leg_addr}: {e}"))?;
    let relay_addr = relay
        .local_addr()
        .map_err(|e| format!("relay socket: {e}"))?;
    let relay = Arc::new(relay);

    let (h, mut ch) = handler();
    let s = &shared.settings;
    let span = usize::from(s.port_max - s.port_min) + 1;
    let mut pc = None;
    let mut last = String::new();
    for _ in 0..span.min(64) {
        let udp = SocketAddr::new(s.host_ip, shared.port());
        match build_peer(udp, &s.ice_servers, h.clone()).await {
            Ok(p) => {
                pc = Some(p);
                break;
            }
            Err(e) => last = e,
        }
    }
    let pc = pc.ok_or_else(|| format!("no free WebRTC port: {last}"))?;
    let target = Target {
        leg,
        fork,
        relay_addr,
    };
    let result = drive(shared, target, role, relay, &pc, &mut ch, &mut cmds).await;
    let _ = pc.close().await;
    result
}

/// Whose peer it is: the leg and INVITE fork it serves, and its relay socket's address.
struct Target {
    leg: LegId,
    fork: usize,
    relay_addr: SocketAddr,
}

async fn drive(
    shared: &Shared,
    target: Target,
    role: Role,
    relay: Arc<tokio::net::UdpSocket>,
    pc: &Arc<dyn PeerConnection>,
    ch: &mut Channels,
    cmds: &mut mpsc::UnboundedReceiver<PeerCmd>,
) -> Result<(), String> {
    let Target {
        leg,
        fork,
        relay_addr,
    } = target;
    let ssrc: u32 = rand::random();
    let track = audio_track(ssrc);
    match role {
        Role::Offer => {
            add_audio(pc, &track).await?;
            let offer = pc
                .create_offer(None)
                .await
                .map_err(|e| format!("create_offer: {e}"))?;
            pc.set_local_description(offer)
                .await
                .map_err(|e| format!("set_local_description: {e}"))?;
            let sdp = gathered_sdp(pc, &mut ch.gathered).await?;
            let _ = shared.events.send(MediaEvent::WebRtcOffer {
                leg,
                fork,
                sdp,
                relay: relay_addr,
            });
            // The answer, or the end of the offer (Close, or another fork answered).
            let Some(PeerCmd::Answer(answer)) = cmds.recv().await else {
                return Ok(());
            };
            let desc = RTCSessionDescription::answer(answer)
                .map_err(|e| format!("bad SDP answer: {e}"))?;
            pc.set_remote_description(desc)
                .await
                .map_err(|e| format!("SDP answer refused: {e}"))?;
        }
        Role::Accept(offer) => {
            // As a browser answers: the track first, so the offer's audio section takes it.
            pc.add_track(track.clone() as Arc<dyn TrackLocal>)
                .await
                .map_err(|e| format!("add_track: {e}"))?;
            let desc =
                RTCSessionDescription::offer(offer).map_err(|e| format!("bad SDP offer: {e}"))?;
            pc.set_remote_description(desc)
                .await
                .map_err(|e| format!("SDP offer refused: {e}"))?;
            let answer = pc
                .create_answer(None)
                .await
                .map_err(|e| format!("create_answer: {e}"))?;
            pc.set_local_description(answer)
                .await
                .map_err(|e| format!("set_local_description: {e}"))?;
            let sdp = gathered_sdp(pc, &mut ch.gathered).await?;
            let _ = shared.events.send(MediaEvent::WebRtcAccepted {
                leg,
                sdp,
                relay: relay_addr,
            });
        }
    }
    // ICE and DTLS up: send what the leg sends (hold audio, the caller) from now on, and
    // relay the browser's track once it arrives.
    tokio::select! {
        r = connected(&mut ch.state) => r?,
        _ = cmds.recv() => return Ok(()),
        _ = tokio::time::sleep(CONNECT_TIMEOUT) => return Err("ICE/DTLS did not connect".into()),
    }
    tracing::debug!(leg, fork, "WebRTC peer connected");
    let out = tokio::spawn(outbound(relay.clone(), track, ssrc));
    let result = loop {
        tokio::select! {
            t = ch.track.recv() => match t {
                Some(remote) => {
                    tokio::spawn(inbound(relay.clone(), remote));
                }
                None => break Ok(()),
            },
            c = cmds.recv() => if c.is_none() { break Ok(()) },
            _ = failed(&mut ch.state) => break Err("WebRTC connection failed".to_string()),
        }
    };
    out.abort();
    result
}

/// Resolves when the connection is up, or fails.
async fn connected(
    state: &mut mpsc::UnboundedReceiver<RTCPeerConnectionState>,
) -> Result<(), String> {
    while let Some(s) = state.recv().await {
        match s {
            RTCPeerConnectionState::Connected => return Ok(()),
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                return Err("ICE/DTLS failed".into())
            }
            _ => {}
        }
    }
    Err("peer connection ended".into())
}

/// Resolves when the connection fails or closes.
pub(crate) async fn failed(state: &mut mpsc::UnboundedReceiver<RTCPeerConnectionState>) {
    while let Some(s) = state.recv().await {
        if matches!(
            s,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
        ) {
            return;
        }
    }
    std::future::pending::<()>().await
}
