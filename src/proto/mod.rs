//! Pure wire formats: no state, no I/O.

pub mod digest;
pub mod dtmf;
pub mod g711;
pub mod rtp;
pub mod sdp;
pub mod sip;
pub mod webrtc_sdp;
