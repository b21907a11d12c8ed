//! TCP stream framing (RFC 3261 18.3): a message ends Content-Length bytes after the blank
//! line; on a stream Content-Length is mandatory. CRLFs between messages are keep-alives
//! (RFC 5626 3.5.1).

use super::lex;

/// Largest header block we buffer before giving up on a stream.
pub const MAX_HEADER: usize = 64 * 1024;
/// Largest body we accept on a stream.
pub const MAX_BODY: usize = 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Need more bytes.
    Incomplete,
    /// This many leading CR/LF bytes are keep-alives: drop them.
    KeepAlive(usize),
    /// The first message is this many bytes long.
    Message(usize),
    /// The stream cannot be framed; close it.
    Invalid(String),
}

pub fn frame(buf: &[u8]) -> Frame {
    let crlf = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if crlf > 0 {
        return Frame::KeepAlive(crlf);
    }
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEADER {
            return Frame::Invalid("header too large".into());
        }
        return Frame::Incomplete;
    };
    if end > MAX_HEADER {
        return Frame::Invalid("header too large".into());
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
        if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Frame::Invalid("bad Content-Length".into());
        }
        let n: usize = match v.parse() {
            Ok(n) => n,
            Err(_) => return Frame::Invalid("bad Content-Length".into()),
        };
        if len.is_some_and(|l| l != n) {
            return Frame::Invalid("conflicting Content-Length".into());
        }
        len = Some(n);
    }
    let Some(n) = len else {
        return Frame::Invalid("missing Content-Length".into());
    };
    if n > MAX_BODY {
        return Frame::Invalid("body too large".into());
    }
    let total = end + 4 + n;
    if buf.len() < total {
        Frame::Incomplete
    } else {
        Frame::Message(total)
    }
}
