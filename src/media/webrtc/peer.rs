//! One WebRTC peer of a leg, driven by the media worker that owns the leg: the sans-IO
//! `rtc` peer connection (ICE, DTLS-SRTP, RTCP reports) plus its ICE socket. The worker feeds
//! it what the socket receives, the leg's outgoing RTP and the time; it hands back the
//! browser's RTP as plain packets for the leg, and its progress (SDP ready, failed).
//!
//! Why in the worker: a browser leg then costs what a UDP leg costs, one socket read and one
//! write per packet on the thread that already owns the leg, with no task hop, channel or
//! loopback relay between the browser and the bridge.

use super::gather::StunGather;
use super::{media_engine, WebRtcGateway};
use bytes::BytesMut;
use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceGatheringState, RTCPeerConnectionState};
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, CandidateServerReflexiveConfig, RTCIceCandidate,
    RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use rtc::shared::marshal::{Marshal, Unmarshal};
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// How long after the answer ICE + DTLS may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Datagrams read per visit, so one flooding browser cannot starve the worker.
const MAX_RECV_PER_VISIT: usize = 32;

/// Which side of the offer/answer the peer is on.
pub enum Role {
    /// We call a browser phone: our offer goes in the INVITE, its answer comes back.
    Offer,
    /// A browser phone calls us with this offer: our answer goes in the 200 OK.
    Accept(String),
}

/// What the worker tells the engine about a peer.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// Our SDP with every candidate gathered: the offer (Role::Offer) or the answer.
    Sdp(String),
    Connected,
    Failed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the STUN servers before the SDP goes out.
    Gathering,
    /// SDP out; ICE + DTLS may start (the browser's checks arrive before its answer does).
    Negotiating,
    Connected,
    /// Failed or closed: the worker drops it.
    Ended,
}

pub struct Peer {
    /// The INVITE fork this peer serves (0 for a browser caller).
    pub fork: usize,
    pc: RTCPeerConnection,
    socket: UdpSocket,
    /// The ICE socket's address: also the address the leg sends to and hears from for this
    /// peer (the engine puts it in the leg's `Update` as the remote).
    local: SocketAddr,
    sender: RTCRtpSenderId,
    ssrc: u32,
    accepting: bool,
    phase: Phase,
    gather: StunGather,
    /// ICE + DTLS must be up by then (set when the answer is in).
    connect_by: Option<Instant>,
    events: Vec<PeerEvent>,
}

impl Peer {
    /// A peer on a fresh ICE socket of the gateway's range, offering or answering.
    pub fn new(gw: &WebRtcGateway, fork: usize, role: Role, now: Instant) -> Result<Peer, String> {
        let socket = gw.bind_ice_socket()?;
        let local = socket
            .local_addr()
            .map_err(|e| format!("ICE socket: {e}"))?;
        let mut me = media_engine()?;
        let registry = register_default_interceptors(Registry::new(), &mut me)
            .map_err(|e| format!("interceptors: {e}"))?;
        let config = RTCConfigurationBuilder::new()
            .with_certificates(vec![gw.certificate()])
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(config)
            .with_media_engine(me)
            .with_interceptor_registry(registry)
            .build(now)
            .map_err(|e| format!("cannot create the peer connection: {e}"))?;
        let ssrc: u32 = rand::random();
        let accepting = matches!(role, Role::Accept(_));
        let sender = match role {
            Role::Offer => start_offer(&mut pc, ssrc, now)?,
            Role::Accept(offer) => start_answer(&mut pc, ssrc, offer, now)?,
        };
        add_candidate(&mut pc, host_candidate(local)?)?;
        let gather = StunGather::new(gw.stun_servers(), local, now);
        let mut peer = Peer {
            fork,
            pc,
            socket,
            local,
            sender,
            ssrc,
            accepting,
            phase: Phase::Gathering,
            gather,
            connect_by: accepting.then_some(now + CONNECT_TIMEOUT),
            events: Vec::new(),
        };
        peer.tick(now);
        Ok(peer)
    }

    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// The ICE socket's address, which stands for this peer as the leg's remote address.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// It answers a browser caller's offer (else it offered).
    pub fn is_accepting(&self) -> bool {
        self.accepting
    }

    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// The browser's answer to our offer.
    pub fn set_answer(&mut self, now: Instant, sdp: String) -> Result<(), String> {
        if self.accepting {
            return Err("this peer answered an offer; it takes no answer".into());
        }
        let desc =
            RTCSessionDescription::answer(sdp).map_err(|e| format!("bad SDP answer: {e}"))?;
        self.pc
            .set_remote_description(now, desc)
            .map_err(|e| format!("SDP answer refused: {e}"))?;
        self.connect_by = Some(now + CONNECT_TIMEOUT);
        self.flush();
        self.poll_events();
        Ok(())
    }

    /// Reads what the ICE socket holds; the browser's RTP packets go to `rtp` (plain RTP,
    /// for the leg).
    pub fn read(&mut self, now: Instant, buf: &mut [u8], rtp: &mut Vec<bytes::Bytes>) {
        for _ in 0..MAX_RECV_PER_VISIT {
            match self.socket.recv_from(buf) {
                Ok((n, from)) => self.take_datagram(now, buf.get(..n).unwrap_or(&[]), from),
                // WouldBlock: drained. Other errors (ICMP reported on the socket) carry no
                // data: stop for this visit.
                Err(_) => break,
            }
        }
        self.finish_read(rtp);
    }

    /// One datagram the caller read from `socket()` itself (a load generator taking kernel
    /// receive times); its RTP goes to `rtp`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        bytes: &[u8],
        from: SocketAddr,
        rtp: &mut Vec<bytes::Bytes>,
    ) {
        self.take_datagram(now, bytes, from);
        self.finish_read(rtp);
    }

    fn take_datagram(&mut self, now: Instant, bytes: &[u8], from: SocketAddr) {
        if self.gather.is_server(from) && !self.gather.done(now) {
            self.gather.handle(from, bytes);
            return;
        }
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(bytes),
        };
        if let Err(e) = self.pc.handle_read(msg) {
            tracing::trace!(error = %e, "WebRTC datagram refused");
        }
    }

    /// Decrypted RTP out, replies (ICE, DTLS, RTCP) sent, state changes noted.
    fn finish_read(&mut self, rtp: &mut Vec<bytes::Bytes>) {
        while let Some(msg) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(_, pkt) = msg.message {
                if let Ok(b) = pkt.marshal() {
                    rtp.push(b.freeze());
                }
            }
        }
        self.flush();
        self.poll_events();
    }

    /// Sends one RTP packet of the leg (plain RTP, any SSRC) to the browser, on our SSRC.
    /// Nothing goes out before DTLS is up.
    pub fn send_rtp(&mut self, now: Instant, bytes: &[u8]) -> std::io::Result<usize> {
        if self.phase != Phase::Connected {
            return Ok(0);
        }
        let mut b = bytes;
        let Ok(mut pkt) = rtc::rtp::packet::Packet::unmarshal(&mut b) else {
            return Ok(0);
        };
        pkt.header.ssrc = self.ssrc;
        if let Some(mut sender) = self.pc.rtp_sender(self.sender) {
            if let Err(e) = sender.write_rtp(now, pkt) {
                tracing::trace!(error = %e, "WebRTC RTP not sent");
            }
        }
        self.flush();
        Ok(bytes.len())
    }

    /// Timers: STUN retransmissions and the end of gathering, ICE checks and keepalives, DTLS
    /// retransmissions, RTCP reports, the connect deadline.
    pub fn tick(&mut self, now: Instant) {
        if self.phase == Phase::Ended {
            return;
        }
        if self.phase == Phase::Gathering {
            for (server, req) in self.gather.poll_transmit(now) {
                let _ = self.socket.send_to(&req, server);
            }
            if self.gather.done(now) {
                self.finish_gathering();
            }
        }
        if self.pc.poll_timeout().is_some_and(|t| t <= now) {
            if let Err(e) = self.pc.handle_timeout(now) {
                tracing::trace!(error = %e, "WebRTC timer");
            }
        }
        self.flush();
        self.poll_events();
        if self.phase != Phase::Connected && self.connect_by.is_some_and(|t| now >= t) {
            self.fail("ICE/DTLS did not connect".into());
        }
    }

    /// What happened since the last call.
    pub fn take_events(&mut self) -> Vec<PeerEvent> {
        std::mem::take(&mut self.events)
    }

    /// Ends the session (DTLS close_notify goes out).
    pub fn close(&mut self) {
        let _ = self.pc.close();
        self.flush();
        self.phase = Phase::Ended;
    }

    fn finish_gathering(&mut self) {
        let found: Vec<_> = self.gather.found().to_vec();
        for (public, server) in found {
            if public == self.local {
                continue;
            }
            match srflx_candidate(public, self.local, server) {
                Ok(c) => {
                    if let Err(e) = add_candidate(&mut self.pc, c) {
                        tracing::debug!(error = %e, "server-reflexive candidate refused");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "server-reflexive candidate"),
            }
        }
        // The end-of-candidates marker completes gathering (an event, then the SDP).
        if let Err(e) = self.pc.add_local_candidate(RTCIceCandidateInit::default()) {
            self.fail(format!("end of candidates: {e}"));
            return;
        }
        self.phase = Phase::Negotiating;
    }

    fn fail(&mut self, reason: String) {
        if self.phase != Phase::Ended {
            self.phase = Phase::Ended;
            self.events.push(PeerEvent::Failed(reason));
        }
    }

    fn flush(&mut self) {
        while let Some(msg) = self.pc.poll_write() {
            let _ = self.socket.send_to(&msg.message, msg.transport.peer_addr);
        }
    }

    fn poll_events(&mut self) {
        while let Some(ev) = self.pc.poll_event() {
            match ev {
                RTCPeerConnectionEvent::OnIceGatheringStateChangeEvent(
                    RTCIceGatheringState::Complete,
                ) => match self.pc.local_description() {
                    Some(d) => self.events.push(PeerEvent::Sdp(d.sdp.clone())),
                    None => self.fail("no local description".into()),
                },
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => match state {
                    RTCPeerConnectionState::Connected if self.phase != Phase::Ended => {
                        self.phase = Phase::Connected;
                        self.connect_by = None;
                        self.events.push(PeerEvent::Connected);
                    }
                    RTCPeerConnectionState::Failed => self.fail("WebRTC connection failed".into()),
                    RTCPeerConnectionState::Closed => self.fail("WebRTC connection closed".into()),
                    _ => {}
                },
                _ => {}
            }
        }
    }
}

/// Our sendrecv audio section offering PCMU, PCMA and telephone-event, as the local
/// description; returns its sender.
fn start_offer(
    pc: &mut RTCPeerConnection,
    ssrc: u32,
    now: Instant,
) -> Result<RTCRtpSenderId, String> {
    let id = pc
        .add_transceiver_from_track(
            super::audio_track(ssrc),
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendrecv,
                streams: vec![],
                send_encodings: vec![],
            }),
        )
        .map_err(|e| format!("add_transceiver: {e}"))?;
    let mut t = pc
        .rtp_transceiver(id)
        .ok_or("the new transceiver is missing")?;
    // Without the preferences only the track's own codec would be offered.
    t.set_codec_preferences(super::codec_parameters())
        .map_err(|e| format!("set_codec_preferences: {e}"))?;
    let sender = t.sender().ok_or("the new transceiver has no sender")?;
    let offer = pc
        .create_offer(None)
        .map_err(|e| format!("create_offer: {e}"))?;
    pc.set_local_description(now, offer)
        .map_err(|e| format!("set_local_description: {e}"))?;
    Ok(sender)
}

/// The browser's `offer` as the remote description and our answer as the local one; returns
/// our audio sender.
fn start_answer(
    pc: &mut RTCPeerConnection,
    ssrc: u32,
    offer: String,
    now: Instant,
) -> Result<RTCRtpSenderId, String> {
    // As a browser answers: the track first, so the offer's audio section takes it.
    let sender = pc
        .add_track(super::audio_track(ssrc))
        .map_err(|e| format!("add_track: {e}"))?;
    let desc = RTCSessionDescription::offer(offer).map_err(|e| format!("bad SDP offer: {e}"))?;
    pc.set_remote_description(now, desc)
        .map_err(|e| format!("SDP offer refused: {e}"))?;
    let answer = pc
        .create_answer(None)
        .map_err(|e| format!("create_answer: {e}"))?;
    pc.set_local_description(now, answer)
        .map_err(|e| format!("set_local_description: {e}"))?;
    Ok(sender)
}

fn add_candidate(pc: &mut RTCPeerConnection, c: RTCIceCandidateInit) -> Result<(), String> {
    pc.add_local_candidate(c)
        .map_err(|e| format!("local candidate: {e}"))
}

fn host_candidate(local: SocketAddr) -> Result<RTCIceCandidateInit, String> {
    CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: local.ip().to_string(),
            port: local.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .and_then(|c| RTCIceCandidate::from(&c).to_json())
    .map_err(|e| format!("host candidate {local}: {e}"))
}

fn srflx_candidate(
    public: SocketAddr,
    local: SocketAddr,
    server: SocketAddr,
) -> Result<RTCIceCandidateInit, String> {
    let c = CandidateServerReflexiveConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: public.ip().to_string(),
            port: public.port(),
            component: 1,
            ..Default::default()
        },
        rel_addr: local.ip().to_string(),
        rel_port: local.port(),
        ..Default::default()
    }
    .new_candidate_server_reflexive()
    .map_err(|e| e.to_string())?;
    let mut init = RTCIceCandidate::from(&c)
        .to_json()
        .map_err(|e| e.to_string())?;
    init.url = Some(format!("stun:{server}"));
    Ok(init)
}
