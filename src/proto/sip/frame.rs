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
    match scan(buf, max_message) {
        Scan::Done(f) => f,
        Scan::NeedHeader | Scan::NeedBody(_) => Frame::Incomplete,
    }
}

/// What `scan` found; `Done` is never `Frame::Incomplete`.
enum Scan {
    Done(Frame),
    /// No end of the header section yet (or only part of a keep-alive).
    NeedHeader,
    /// The header section is complete; the message is this long in all.
    NeedBody(usize),
}

/// Frames a stream as bytes arrive, remembering what it learnt about an unfinished message
/// (how far the header section was searched, or the total length once known), so a message
/// trickling in a few bytes at a time is searched once rather than once per read.
///
/// Contract: `buf` is the stream's unframed bytes; after any result but `Incomplete` the
/// caller removes the bytes it names (or closes the stream) before calling again.
#[derive(Clone, Debug)]
pub struct Framer {
    max_message: usize,
    pending: Pending,
}

#[derive(Clone, Copy, Debug)]
enum Pending {
    Nothing,
    /// `buf[..searched]` holds no end of header section.
    Header {
        searched: usize,
    },
    Body {
        total: usize,
    },
}

impl Framer {
    pub fn new(max_message: usize) -> Framer {
        Framer {
            max_message,
            pending: Pending::Nothing,
        }
    }

    pub fn next(&mut self, buf: &[u8]) -> Frame {
        match self.pending {
            Pending::Body { total } if buf.len() < total => return Frame::Incomplete,
            Pending::Body { total } => {
                self.pending = Pending::Nothing;
                return Frame::Message(total);
            }
            Pending::Header { searched } if buf.len() >= searched => {
                // The blank line may straddle the old end: look from three bytes before it.
                let from = searched.saturating_sub(3);
                if !buf[from..].windows(4).any(|w| w == b"\r\n\r\n") {
                    if buf.len() > self.max_message {
                        self.pending = Pending::Nothing;
                        return Frame::TooLarge { header_end: None };
                    }
                    self.pending = Pending::Header {
                        searched: buf.len(),
                    };
                    return Frame::Incomplete;
                }
            }
            _ => {}
        }
        let starts_with_crlf = buf.first().is_some_and(|b| *b == b'\r' || *b == b'\n');
        match scan(buf, self.max_message) {
            Scan::Done(f) => {
                self.pending = Pending::Nothing;
                f
            }
            // Part of a keep-alive: a few bytes, not worth remembering.
            Scan::NeedHeader if starts_with_crlf => {
                self.pending = Pending::Nothing;
                Frame::Incomplete
            }
            Scan::NeedHeader => {
                self.pending = Pending::Header {
                    searched: buf.len(),
                };
                Frame::Incomplete
            }
            Scan::NeedBody(total) => {
                self.pending = Pending::Body { total };
                Frame::Incomplete
            }
        }
    }
}

fn scan(buf: &[u8], max_message: usize) -> Scan {
    use Scan::Done;
    let crlf = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if crlf > 0 {
        if buf[..crlf].windows(4).any(|w| w == b"\r\n\r\n") {
            return Done(Frame::Ping(crlf));
        }
        // Only part of a ping may have arrived: wait for the rest, unless a message follows.
        if crlf == buf.len() && crlf < 4 {
            return Scan::NeedHeader;
        }
        return Done(Frame::KeepAlive(crlf));
    }
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > max_message {
            return Done(Frame::TooLarge { header_end: None });
        }
        return Scan::NeedHeader;
    };
    let header_end = end + 4;
    if header_end > max_message {
        return Done(Frame::TooLarge { header_end: None });
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
            return Done(Frame::Invalid("bad Content-Length".into()));
        }
        // Too many digits to be a size we would ever take is "too large", not "bad".
        let n: usize = v.parse().unwrap_or(usize::MAX);
        if len.is_some_and(|l| l != n) {
            return Done(Frame::Invalid("conflicting Content-Length".into()));
        }
        len = Some(n);
    }
    let Some(n) = len else {
        return Done(Frame::Invalid("missing Content-Length".into()));
    };
    let total = header_end.saturating_add(n);
    if total > max_message {
        return Done(Frame::TooLarge {
            header_end: Some(header_end),
        });
    }
    if buf.len() < total {
        Scan::NeedBody(total)
    } else {
        Done(Frame::Message(total))
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
