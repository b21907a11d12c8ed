//! placeholder: sip
