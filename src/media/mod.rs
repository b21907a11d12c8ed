//! The media plane: RTP legs paced on absolute 20 ms deadlines, prompt playback, DTMF.
//! `leg` is the sans-IO state machine, `runtime` the worker threads and sockets around it.

pub mod bridge;
pub mod leg;
pub mod mix;
pub mod prompts;
pub mod recorder;
pub mod runtime;
pub mod webrtc;
