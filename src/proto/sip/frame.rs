//! TCP stream framing (RFC 3261 18.3): a message ends Content-Length bytes after the blank
//! line; on a stream Content-Length is mandatory. CRLFs between messages are keep-alives
//! (RFC 5626 3.5.1): a double CRLF is a ping the transport answers with a single CRLF
//! (the pong); a single CRLF is ignored.
//!
//! Size (RFC 3261 18.3, 21.5.14): a message longer than the stream's limit is `TooLarge`.
//! When the header section is complete (even if only the Content-Length gives the size
//! away) the shell answers a request with 513 Message Too Large built from those headers
//! (`message_too_large`) and closes: the body that follows cannot be skipped safely, so
//! the stream cannot be resynchronised. A header section with no end within the limit
//! cannot be answered at all: the shell just closes.

use super::{lex, salvage};
use bytes::Bytes;
use std::net::SocketAddr;

/// The default limit of one message (headers plus body) on a stream.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Need more bytes.
    Incomplete,
    /// This many leading CR/LF bytes are keep-alives without a ping: drop them.
    KeepAlive(usize),
    /// This many leading CR/LF bytes hold a double-CRLF ping: drop them, answer one CRLF.
    Ping(usize),
    /// The first message is this many bytes long.
    Message(usize),
    /// The first message exceeds the limit. `header_end`: length of its complete header
    /// section (blank line included) when one was found, for a 513; None when the header
    /// section itself ran past the limit.
    TooLarge { header_end: Option<usize> },
    /// The stream cannot be framed; close it.
    Invalid(String),
}

/// `frame_limited` with `DEFAULT_MAX_MESSAGE`.
pub fn frame(buf: &[u8]) -> Frame {
    frame_limited(buf, DEFAULT_MAX_MESSAGE)
}

/// Frames the first message in `buf`; no message may exceed `max_message` bytes.
pub fn frame_limited(buf: &[u8], max_message: usize) -> Frame {
    let crlf = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if crlf > 0 {
        if buf[..crlf].windows(4).any(|w| w == b"\r\n\r\n") {
            return Frame::Ping(crlf);
        }
        // Only part of a ping may have arrived: wait for the rest, unless a message follows.
        if crlf == buf.len() && crlf < 4 {
            return Frame::Incomplete;
        }
        return Frame::KeepAlive(crlf);
    }
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > max_message {
            return Frame::TooLarge { header_end: None };
        }
        return Frame::Incomplete;
    };
    let header_end = end + 4;
    if header_end > max_message {
        return Frame::TooLarge { header_end: None };
    }
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut len: Option<usize> = None;
    for line in head.split("\r\n").skip(1) {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !lex::same_header(name.trim(), "Content-Length") {
            continue;
        }
        let v = value.trim();
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Frame::Invalid("bad Content-Length".into());
        }
        // Too many digits to be a size we would ever take is "too large", not "bad".
        let n: usize = v.parse().unwrap_or(usize::MAX);
        if len.is_some_and(|l| l != n) {
            return Frame::Invalid("conflicting Content-Length".into());
        }
        len = Some(n);
    }
    let Some(n) = len else {
        return Frame::Invalid("missing Content-Length".into());
    };
    let total = header_end.saturating_add(n);
    if total > max_message {
        return Frame::TooLarge {
            header_end: Some(header_end),
        };
    }
    if buf.len() < total {
        Frame::Incomplete
    } else {
        Frame::Message(total)
    }
}

/// Whether `buf` (what is left after framing) holds the start of a message, as opposed to
/// nothing or the first bytes of a keep-alive.
pub fn holds_partial_message(buf: &[u8]) -> bool {
    buf.iter().any(|b| *b != b'\r' && *b != b'\n')
}

/// 513 Message Too Large for the request whose header section is `head`, addressed like
/// any error response (top Via, `source`). None for a response or an ACK (neither gets an
/// answer) and for headers too broken to reply to.
pub fn message_too_large(head: &[u8], source: SocketAddr) -> Option<Bytes> {
    if head.starts_with(b"SIP/") || head.starts_with(b"ACK ") {
        return None;
    }
    let s = salvage(head)?;
    super::error_response(&s, 513, "Message Too Large", source)
}
