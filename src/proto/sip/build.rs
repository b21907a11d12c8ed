//! Writing SIP messages: responses to parsed requests, our own requests, ACK for non-2xx.

use super::{lex, parse, Message, Method, Request, Response, Salvage, Via};
use crate::engine::Transport;
use bytes::Bytes;
use std::fmt::Write;
use std::net::SocketAddr;

#[derive(Default)]
pub struct ResponseOpts<'a> {
    pub to_tag: Option<&'a str>,
    pub contact: Option<&'a str>,
    pub extra_headers: Vec<(&'static str, String)>,
    pub body: Option<(&'a str, &'a [u8])>,
    /// Adds received= and fills rport on the top Via (RFC 3581, RFC 3261 18.2.1).
    pub source: Option<SocketAddr>,
}

pub struct RequestOpts<'a> {
    pub method: Method,
    pub uri: &'a str,
    pub transport: Transport,
    pub sent_by: &'a str,
    pub branch: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub call_id: &'a str,
    pub cseq: u32,
    pub contact: Option<&'a str>,
    pub route: Vec<String>,
    pub extra_headers: Vec<(&'static str, String)>,
    pub body: Option<(&'a str, &'a [u8])>,
}

/// "z9hG4bK" (RFC 3261 8.1.1.7 magic cookie) + 16 hex digits.
pub fn new_branch(random: u64) -> String {
    format!("z9hG4bK{random:016x}")
}

/// The top Via as a response must carry it: `received` when the source address differs
/// from sent-by or the client asked for rport, and `rport=<source port>` when it asked.
fn stamp_via(raw: &str, rport_asked: bool, host: &str, source: Option<SocketAddr>) -> String {
    let Some(src) = source else {
        return raw.to_string();
    };
    let ip = src.ip().to_string();
    let same_host = host
        .trim_matches(['[', ']'])
        .parse::<std::net::IpAddr>()
        .is_ok_and(|h| h == src.ip());
    if !rport_asked && same_host {
        return raw.to_string();
    }
    let parts = lex::split_outside(raw, ';').unwrap_or_else(|| vec![raw]);
    let mut out = parts
        .first()
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    for p in parts.iter().skip(1) {
        let name = p.split('=').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("received") {
            continue;
        }
        if name.eq_ignore_ascii_case("rport") {
            let _ = write!(out, ";rport={}", src.port());
            continue;
        }
        out.push(';');
        out.push_str(p.trim());
    }
    let _ = write!(out, ";received={ip}");
    out
}

fn write_via(out: &mut String, vias: &[Via], source: Option<SocketAddr>) {
    for (i, v) in vias.iter().enumerate() {
        let value = if i == 0 {
            stamp_via(&v.raw, v.rport.is_some(), &v.host, source)
        } else {
            v.raw.clone()
        };
        let _ = write!(out, "Via: {value}\r\n");
    }
}

fn finish(mut out: String, body: Option<(&str, &[u8])>) -> Bytes {
    let mut bytes;
    match body {
        Some((ct, b)) => {
            let _ = write!(
                out,
                "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                b.len()
            );
            bytes = out.into_bytes();
            bytes.extend_from_slice(b);
        }
        None => {
            out.push_str("Content-Length: 0\r\n\r\n");
            bytes = out.into_bytes();
        }
    }
    Bytes::from(bytes)
}

/// A header value may not carry a line break of its own (it would inject headers).
fn clean(v: &str) -> String {
    v.replace(['\r', '\n'], " ")
}

/// Copies Via(s), From, To (+ to_tag if the To has none), Call-ID, CSeq; adds Server,
/// Content-Length.
pub fn response(req: &Request, status: u16, reason: &str, opts: &ResponseOpts) -> Bytes {
    let mut out = String::with_capacity(512);
    let _ = write!(out, "SIP/2.0 {status} {}\r\n", clean(reason));
    write_via(&mut out, &req.vias, opts.source);
    let _ = write!(out, "From: {}\r\n", req.from.raw);
    match (&req.to.tag, opts.to_tag) {
        (None, Some(tag)) => {
            let _ = write!(out, "To: {};tag={}\r\n", req.to.raw, clean(tag));
        }
        _ => {
            let _ = write!(out, "To: {}\r\n", req.to.raw);
        }
    }
    let _ = write!(
        out,
        "Call-ID: {}\r\nCSeq: {} {}\r\n",
        req.call_id, req.cseq, req.cseq_method
    );
    if let Some(c) = opts.contact {
        let _ = write!(out, "Contact: {}\r\n", clean(c));
    }
    for (n, v) in &opts.extra_headers {
        let _ = write!(out, "{n}: {}\r\n", clean(v));
    }
    out.push_str("Server: ccswitch\r\n");
    finish(out, opts.body)
}

/// An error response from what could be read of a bad request. None without a Via (there
/// is nowhere to send it). A To tag is added when missing, derived from the Call-ID so a
/// retransmitted bad request gets the same answer.
pub fn error_response(s: &Salvage, status: u16, reason: &str, source: SocketAddr) -> Option<Bytes> {
    let top = s.vias.first()?;
    let mut out = String::with_capacity(512);
    let _ = write!(out, "SIP/2.0 {status} {}\r\n", clean(reason));
    for (i, v) in s.vias.iter().enumerate() {
        let value = if i == 0 {
            // Only the first element of a comma-joined line is the top Via.
            let first = lex::split_outside(top, ',')
                .and_then(|p| p.first().map(|f| f.trim().to_string()))
                .unwrap_or_else(|| top.clone());
            let rest = top.trim().strip_prefix(first.as_str()).unwrap_or("");
            let rport = lex::split_outside(&first, ';')
                .map(|p| {
                    p.iter().skip(1).any(|x| {
                        x.split('=')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .eq_ignore_ascii_case("rport")
                    })
                })
                .unwrap_or(false);
            let host = first
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .split([';', ':'])
                .next()
                .unwrap_or("");
            format!("{}{rest}", stamp_via(&first, rport, host, Some(source)))
        } else {
            v.clone()
        };
        let _ = write!(out, "Via: {value}\r\n");
    }
    if let Some(f) = &s.from {
        let _ = write!(out, "From: {f}\r\n");
    }
    if let Some(t) = &s.to {
        if lex::param(t.rsplit('>').next().unwrap_or(""), "tag").is_some() {
            let _ = write!(out, "To: {t}\r\n");
        } else {
            let seed = s
                .call_id
                .as_deref()
                .unwrap_or("")
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                });
            let _ = write!(out, "To: {t};tag={:08x}\r\n", seed as u32);
        }
    }
    if let Some(c) = &s.call_id {
        let _ = write!(out, "Call-ID: {c}\r\n");
    }
    if let Some(c) = &s.cseq {
        let _ = write!(out, "CSeq: {c}\r\n");
    }
    out.push_str("Server: ccswitch\r\n");
    Some(finish(out, None))
}

/// Max-Forwards: 70; Content-Length always.
pub fn request(o: &RequestOpts) -> Bytes {
    let mut out = String::with_capacity(512);
    let _ = write!(out, "{} {} SIP/2.0\r\n", o.method, clean(o.uri));
    let _ = write!(
        out,
        "Via: SIP/2.0/{} {};branch={};rport\r\n",
        o.transport.as_str().to_ascii_uppercase(),
        clean(o.sent_by),
        clean(o.branch)
    );
    out.push_str("Max-Forwards: 70\r\n");
    for r in &o.route {
        let _ = write!(out, "Route: {}\r\n", clean(r));
    }
    let _ = write!(out, "From: {}\r\nTo: {}\r\n", clean(o.from), clean(o.to));
    let _ = write!(
        out,
        "Call-ID: {}\r\nCSeq: {} {}\r\n",
        clean(o.call_id),
        o.cseq,
        o.method
    );
    if let Some(c) = o.contact {
        let _ = write!(out, "Contact: {}\r\n", clean(c));
    }
    for (n, v) in &o.extra_headers {
        let _ = write!(out, "{n}: {}\r\n", clean(v));
    }
    out.push_str("User-Agent: ccswitch\r\n");
    finish(out, o.body)
}

/// The ACK for a non-2xx final response to our INVITE (RFC 3261 17.1.1.3): same Request-URI,
/// top Via, From, Call-ID, CSeq number and Route as the INVITE; To from the response.
pub fn ack_for_non2xx(invite: &[u8], resp: &Response) -> Option<Bytes> {
    if resp.status < 300 {
        return None;
    }
    let Ok(Message::Request(inv)) = parse(invite) else {
        return None;
    };
    if inv.method != Method::Invite {
        return None;
    }
    let mut out = String::with_capacity(512);
    let _ = write!(out, "ACK {} SIP/2.0\r\n", inv.uri);
    let _ = write!(out, "Via: {}\r\n", inv.top_via().raw);
    out.push_str("Max-Forwards: 70\r\n");
    for (n, v) in &inv.headers {
        if n.eq_ignore_ascii_case("Route") {
            let _ = write!(out, "Route: {v}\r\n");
        }
    }
    let _ = write!(out, "From: {}\r\nTo: {}\r\n", inv.from.raw, resp.to.raw);
    let _ = write!(
        out,
        "Call-ID: {}\r\nCSeq: {} ACK\r\n",
        inv.call_id, inv.cseq
    );
    Some(finish(out, None))
}
