//! placeholder: dtmf
