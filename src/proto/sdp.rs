//! placeholder: sdp
