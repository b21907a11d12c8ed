//! A WebRTC endpoint that answers our offers the way a browser does: for the integration
//! tests and the media_bridge bench (the "browser" end of a WebRTC agent leg), and for
//! tools. It uses the same `webrtc` crate with PCMU/PCMA/telephone-event.

// Arrival times are real time: the bench measures relay delay with them.
#![allow(clippy::disallowed_methods)]

use super::{media_engine, IceServer};
use ::webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use ::webrtc::media_stream::track_local::TrackLocal;
use ::webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use ::webrtc::peer_connection::{
    register_default_interceptors, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState, RTCIceServer,
    RTCPeerConnectionState, RTCSessionDescription, Registry,
};
use ::webrtc::rtp_transceiver::RTCRtpTransceiverDirection;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{self, UnboundedSender};

/// How long ICE gathering may take before the answer goes out with what was gathered.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// One RTP packet the browser end received, with its arrival time.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
}

/// The browser end of a WebRTC leg.
pub struct BrowserPeer {
    pc: Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    ch: Channels,
    /// Everything received on the remote track, in order.
    pub received: mpsc::UnboundedReceiver<Received>,
    received_tx: mpsc::UnboundedSender<Received>,
}

impl BrowserPeer {
    /// A peer with host candidates on `udp` (port 0 for any).
    pub async fn new(udp: SocketAddr, ice_servers: &[IceServer]) -> Result<BrowserPeer, String> {
        let (h, ch) = handler();
        let pc = build_peer(udp, ice_servers, h).await?;
        let ssrc: u32 = rand::random();
        let track = audio_track(ssrc);
        pc.add_track(track.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(|e| format!("add_track: {e}"))?;
        let (received_tx, received) = mpsc::unbounded_channel();
        Ok(BrowserPeer {
            pc,
            track,
            ssrc,
            ch,
            received,
            received_tx,
        })
    }

    /// Takes the switch's offer and returns the answer SDP (all candidates gathered).
    pub async fn answer(&mut self, offer: &str) -> Result<String, String> {
        let offer = RTCSessionDescription::offer(offer.to_string())
            .map_err(|e| format!("bad SDP offer: {e}"))?;
        self.pc
            .set_remote_description(offer)
            .await
            .map_err(|e| format!("offer refused: {e}"))?;
        let answer = self
            .pc
            .create_answer(None)
            .await
            .map_err(|e| format!("create_answer: {e}"))?;
        self.pc
            .set_local_description(answer)
            .await
            .map_err(|e| format!("set_local_description: {e}"))?;
        gathered_sdp(&self.pc, &mut self.ch.gathered).await
    }

    /// Waits until ICE and DTLS are up (bounded by `within`).
    pub async fn connected(&mut self, within: Duration) -> Result<(), String> {
        tokio::time::timeout(within, connected(&mut self.ch.state))
            .await
            .map_err(|_| "not connected in time".to_string())??;
        // Receive the switch's track as soon as it arrives.
        let tx = self.received_tx.clone();
        let mut tracks = std::mem::replace(&mut self.ch.track, mpsc::unbounded_channel().1);
        tokio::spawn(async move {
            while let Some(remote) = tracks.recv().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some(ev) = remote.poll().await {
                        if let TrackRemoteEvent::OnRtpPacket(p) = ev {
                            let r = Received {
                                at: Instant::now(),
                                payload_type: p.header.payload_type,
                                sequence_number: p.header.sequence_number,
                                timestamp: p.header.timestamp,
                                marker: p.header.marker,
                                payload: p.payload.to_vec(),
                            };
                            if tx.send(r).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Ok(())
    }

    /// Sends one RTP packet (our SSRC) to the switch.
    pub async fn send(
        &self,
        payload_type: u8,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<(), String> {
        let pkt = rtc::rtp::packet::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker,
                payload_type,
                sequence_number: seq,
                timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: bytes::Bytes::copy_from_slice(payload),
        };
        self.track
            .write_rtp(pkt)
            .await
            .map_err(|e| format!("write_rtp: {e}"))
    }

    /// A re-offer in the running session, as a browser's hold (`hold`: sendonly) or unhold
    /// (sendrecv) re-INVITE carries.
    pub async fn reoffer(&mut self, hold: bool) -> Result<String, String> {
        let dir = if hold {
            RTCRtpTransceiverDirection::Sendonly
        } else {
            RTCRtpTransceiverDirection::Sendrecv
        };
        for t in self.pc.get_transceivers().await {
            t.set_direction(dir)
                .await
                .map_err(|e| format!("set_direction: {e}"))?;
        }
        let offer = self
            .pc
            .create_offer(None)
            .await
            .map_err(|e| format!("create_offer: {e}"))?;
        self.pc
            .set_local_description(offer)
            .await
            .map_err(|e| format!("set_local_description: {e}"))?;
        self.pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| "no local description".to_string())
    }

    /// The switch's answer to `reoffer`.
    pub async fn accept(&self, answer: &str) -> Result<(), String> {
        let answer = RTCSessionDescription::answer(answer.to_string())
            .map_err(|e| format!("bad SDP answer: {e}"))?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(|e| format!("answer refused: {e}"))
    }

    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

/// An audio track we send on, with its SSRC.
fn audio_track(ssrc: u32) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(super::audio_track(ssrc)))
}

/// Peer connection callbacks, turned into channel messages for the peer's task.
struct Handler {
    gathered: UnboundedSender<()>,
    state: UnboundedSender<RTCPeerConnectionState>,
    track: UnboundedSender<Arc<dyn TrackRemote>>,
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

struct Channels {
    gathered: mpsc::UnboundedReceiver<()>,
    state: mpsc::UnboundedReceiver<RTCPeerConnectionState>,
    track: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
}

fn handler() -> (Arc<Handler>, Channels) {
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
async fn build_peer(
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
async fn gathered_sdp(
    pc: &Arc<dyn PeerConnection>,
    gathered: &mut mpsc::UnboundedReceiver<()>,
) -> Result<String, String> {
    let _ = tokio::time::timeout(GATHER_TIMEOUT, gathered.recv()).await;
    pc.local_description()
        .await
        .map(|d| d.sdp)
        .ok_or_else(|| "no local description".to_string())
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
