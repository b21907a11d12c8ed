//! placeholder: g711
