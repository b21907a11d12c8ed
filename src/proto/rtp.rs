//! placeholder: rtp
