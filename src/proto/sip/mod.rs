//! SIP message syntax (RFC 3261). The rsipstack codec (`rsipstack::sip`, the maintained fork
//! of rsip) splits the message into start line and headers and parses the typed headers;
//! it is lenient, so the RFC 3261 checks a UAS must make are ours (`validate`), and so are
//! the few places where it rejects or misreads valid input:
//! - extension methods (`Method` in rsipstack is a closed enum): the method token is swapped
//!   for OPTIONS before the codec sees the start line, and put back after (we answer 501);
//! - Request-URIs its URI parser rejects or misreads: the codec sees `scheme:host[:port]`;
//! - CSeq with an extension method: read by our own `number method` split;
//! - Via with a transport rsipstack does not know (RFC 4475 `transports`): the typed parse
//!   sees UDP in its place, the real token is kept;
//! - URI user parts containing `;` `?` `/` (RFC 4475 `intmeth`, `semiuri`): `lex::uri_user`;
//! - SWS around `;` `=` `/` (RFC 4475 `wsinv`): squeezed before the typed parsers run;
//! - URI and header params with extension values of params it knows (`;transport=foo`,
//!   `;method=FOO`): the typed parse errs; host/port and tag are then read by us;
//! - Content-Length: the codec treats a bad one as 0 and truncates silently; we check it;
//! - header lines that are not UTF-8 or have no colon: the codec stops or skips silently.
//!
//! Nothing outside this module sees an rsipstack type.

mod build;
mod frame;
mod lex;

pub use build::{
    ack_for_non2xx, error_response, new_branch, request, response, RequestOpts, ResponseOpts,
};
pub use frame::{
    frame, frame_limited, holds_partial_message, message_too_large, Frame, Framer,
    DEFAULT_MAX_MESSAGE,
};

use bytes::Bytes;
use rsipstack::sip as rs;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Cancel,
    Bye,
    Options,
    Info,
    Register,
    Refer,
    Notify,
    Subscribe,
    Update,
    Prack,
    Message,
    Publish,
    Other(String),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Cancel => "CANCEL",
            Method::Bye => "BYE",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Register => "REGISTER",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }

    /// Method names are case-sensitive (RFC 3261 7.1): `invite` is an extension method.
    pub fn parse(s: &str) -> Method {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "CANCEL" => Method::Cancel,
            "BYE" => Method::Bye,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "REGISTER" => Method::Register,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "SUBSCRIBE" => Method::Subscribe,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// As received, upper-cased ("UDP", "TCP", "SCTP", ...).
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub branch: Option<String>,
    pub received: Option<String>,
    /// `Some(None)` for a bare `;rport` (RFC 3581).
    pub rport: Option<Option<u16>>,
    /// This via-parm as received (one comma-separated element, trimmed).
    pub raw: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    pub raw: String,
    pub display: Option<String>,
    pub uri: String,
    pub user: Option<String>,
    pub tag: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub method: Method,
    pub uri: String,
    pub uri_user: Option<String>,
    pub vias: Vec<Via>,
    pub from: NameAddr,
    pub to: NameAddr,
    pub call_id: String,
    pub cseq: u32,
    pub cseq_method: Method,
    pub max_forwards: Option<u32>,
    pub contact: Option<NameAddr>,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Request {
    /// The first Via; `parse` guarantees there is one.
    pub fn top_via(&self) -> &Via {
        &self.vias[0]
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub vias: Vec<Via>,
    pub from: NameAddr,
    pub to: NameAddr,
    pub call_id: String,
    pub cseq: u32,
    pub cseq_method: Method,
    pub contact: Option<NameAddr>,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// What could be read of a bad request: the header values as received (unfolded), enough
/// to build an error response when there is at least one Via.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Salvage {
    pub vias: Vec<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub call_id: Option<String>,
    pub cseq: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub status: u16,
    pub reason: String,
    pub salvage: Option<Salvage>,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for ParseError {}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| lex::same_header(n, name))
        .map(|(_, v)| v.as_str())
}

/// A fault found while reading; the salvage is attached by `parse`.
struct Fault {
    status: u16,
    reason: String,
}

fn bad(what: impl std::fmt::Display) -> Fault {
    Fault {
        status: 400,
        reason: format!("Bad Request: {what}"),
    }
}

/// Largest CSeq number (RFC 3261 8.1.1.5: less than 2**31).
const CSEQ_MAX: u64 = (1 << 31) - 1;

/// Parses one SIP message (a UDP datagram or a frame cut by `frame`). Bytes after the
/// body that Content-Length declares are ignored (RFC 3261 18.3). Never panics.
#[allow(clippy::result_large_err)] // the contract carries the salvage by value; errors are rare
pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
    let is_response = bytes.starts_with(b"SIP/");
    match parse_inner(bytes) {
        Ok(m) => Ok(m),
        Err(f) => {
            // Responses with faults are dropped (RFC 3261 18.1.2); no salvage.
            let salvage = if is_response { None } else { salvage(bytes) };
            Err(ParseError {
                status: f.status,
                reason: f.reason,
                salvage,
            })
        }
    }
}

/// One unfolded header line of our own scan.
struct Line<'a> {
    name: &'a str,
    value: String,
}

struct Scan<'a> {
    start: &'a str,
    lines: Vec<Line<'a>>,
    body_start: usize,
}

/// Our own scan of the header block: every line UTF-8, every header line `token ":"`.
fn scan(bytes: &[u8]) -> Result<Scan<'_>, Fault> {
    let end = find(bytes, b"\r\n\r\n").ok_or_else(|| bad("no blank line after the headers"))?;
    let head = std::str::from_utf8(&bytes[..end]).map_err(|_| bad("header is not UTF-8"))?;
    let mut raw_lines = head.split("\r\n");
    let start = raw_lines.next().unwrap_or("");
    let mut lines: Vec<Line> = Vec::new();
    for l in raw_lines {
        if l.starts_with([' ', '\t']) {
            let Some(last) = lines.last_mut() else {
                return Err(bad("continuation line before any header"));
            };
            last.value.push(' ');
            last.value.push_str(l.trim());
            continue;
        }
        let (name, value) = l
            .split_once(':')
            .ok_or_else(|| bad("header line without colon"))?;
        let name = name.trim_end_matches([' ', '\t']);
        if !lex::is_token(name) {
            return Err(bad("malformed header name"));
        }
        lines.push(Line {
            name,
            value: value.trim().to_string(),
        });
    }
    for l in &mut lines {
        l.value = l.value.trim().to_string();
    }
    Ok(Scan {
        start,
        lines,
        body_start: end + 4,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads what it can of a broken request for the error response.
fn salvage(bytes: &[u8]) -> Option<Salvage> {
    let end = find(bytes, b"\r\n\r\n").unwrap_or(bytes.len());
    let head = String::from_utf8_lossy(&bytes[..end]);
    let mut s = Salvage::default();
    let mut last: Option<(String, String)> = None;
    let mut lines: Vec<(String, String)> = Vec::new();
    for l in head.split('\n').skip(1) {
        let l = l.trim_end_matches('\r');
        if l.starts_with([' ', '\t']) {
            if let Some((_, v)) = last.as_mut() {
                v.push(' ');
                v.push_str(l.trim());
            }
            continue;
        }
        if let Some(prev) = last.take() {
            lines.push(prev);
        }
        if let Some((n, v)) = l.split_once(':') {
            last = Some((n.trim().to_string(), v.trim().to_string()));
        }
    }
    lines.extend(last);
    for (n, v) in lines {
        match lex::expand_compact(&n).to_ascii_lowercase().as_str() {
            "via" => s.vias.push(v),
            "from" if s.from.is_none() => s.from = Some(v),
            "to" if s.to.is_none() => s.to = Some(v),
            "call-id" if s.call_id.is_none() => s.call_id = Some(v),
            "cseq" if s.cseq.is_none() => s.cseq = Some(v),
            _ => {}
        }
    }
    if s.vias.is_empty()
        && s.from.is_none()
        && s.to.is_none()
        && s.call_id.is_none()
        && s.cseq.is_none()
    {
        return None;
    }
    Some(s)
}

fn parse_inner(bytes: &[u8]) -> Result<Message, Fault> {
    let sc = scan(bytes)?;
    if sc.start.starts_with("SIP/") {
        let (status, reason) = status_line(sc.start)?;
        let msg = codec(bytes, None)?;
        let common = common(&sc, &msg, bytes)?;
        return Ok(Message::Response(Response {
            status,
            reason,
            vias: common.vias,
            from: common.from,
            to: common.to,
            call_id: common.call_id,
            cseq: common.cseq,
            cseq_method: common.cseq_method,
            contact: common.contact,
            content_type: common.content_type,
            headers: common.headers,
            body: common.body,
        }));
    }
    let (method, uri) = request_line(sc.start)?;
    let msg = codec(bytes, Some((&method, &uri)))?;
    let common = common(&sc, &msg, bytes)?;
    if common.cseq_method != method {
        return Err(bad("CSeq method does not match"));
    }
    let max_forwards = match single(&sc, "Max-Forwards")? {
        None => None,
        Some(v) => Some(
            digits(v)
                .filter(|n| *n <= 255)
                .ok_or_else(|| bad("invalid Max-Forwards"))? as u32,
        ),
    };
    Ok(Message::Request(Request {
        uri_user: lex::uri_user(&uri),
        method,
        uri,
        vias: common.vias,
        from: common.from,
        to: common.to,
        call_id: common.call_id,
        cseq: common.cseq,
        cseq_method: common.cseq_method,
        max_forwards,
        contact: common.contact,
        content_type: common.content_type,
        headers: common.headers,
        body: common.body,
    }))
}

/// `Method SP Request-URI SP SIP-Version`, single spaces (RFC 4475 lwsstart, trws, lwsruri).
fn request_line(line: &str) -> Result<(Method, String), Fault> {
    let parts: Vec<&str> = line.split(' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty() || p.contains('\t')) {
        // A version we cannot speak is answered 505 even when the rest is odd.
        if parts
            .last()
            .is_some_and(|v| v.starts_with("SIP/") && !v.eq_ignore_ascii_case("SIP/2.0"))
        {
            return Err(Fault {
                status: 505,
                reason: "Version Not Supported".into(),
            });
        }
        return Err(bad("malformed Request-Line"));
    }
    let (m, uri, version) = (parts[0], parts[1], parts[2]);
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        if version.len() > 4 && version.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
            return Err(Fault {
                status: 505,
                reason: "Version Not Supported".into(),
            });
        }
        return Err(bad("malformed SIP-Version"));
    }
    if !lex::is_token(m) {
        return Err(bad("malformed method"));
    }
    let scheme = uri.split_once(':').map(|(s, _)| s).unwrap_or("");
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(bad("malformed Request-URI"));
    }
    let sip = scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips");
    if !sip && !scheme.eq_ignore_ascii_case("tel") {
        return Err(Fault {
            status: 416,
            reason: "Unsupported URI Scheme".into(),
        });
    }
    if sip {
        // RFC 3261 19.1.1: headers are not allowed in a Request-URI (RFC 4475 escruri).
        // The userinfo may contain '?' (RFC 4475 intmeth); the first '@' ends it.
        let after_user = uri.split_once('@').map(|(_, h)| h).unwrap_or(uri);
        if after_user.contains('?') {
            return Err(bad("headers in Request-URI"));
        }
        // rsipstack's URI parser rejects extension values of known params
        // (`;transport=foo`, `;method=FOO`) and misreads user parts with `;`/`?`, so it
        // only checks the host and port here.
        rs::parse_uri(&uri_core(uri)).map_err(|e| bad(format!("malformed Request-URI ({e})")))?;
        if uri.ends_with('@') || uri.contains(":@") || uri.len() <= scheme.len() + 1 {
            return Err(bad("malformed Request-URI"));
        }
    }
    Ok((Method::parse(m), uri.to_string()))
}

/// `SIP-Version SP Status-Code SP Reason-Phrase`.
fn status_line(line: &str) -> Result<(u16, String), Fault> {
    let mut it = line.splitn(3, ' ');
    let version = it.next().unwrap_or("");
    let code = it.next().unwrap_or("");
    let reason = it.next();
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(Fault {
            status: 505,
            reason: "Version Not Supported".into(),
        });
    }
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) || reason.is_none() {
        return Err(bad("malformed Status-Line"));
    }
    let status: u16 = code.parse().map_err(|_| bad("malformed Status-Line"))?;
    if !(100..=699).contains(&status) {
        return Err(bad("status code out of range"));
    }
    Ok((status, reason.unwrap_or("").to_string()))
}

/// Runs the rsipstack codec. For a request it sees a start line of our making: its
/// `Method` is a closed enum (an extension method becomes OPTIONS; we put the real one
/// back and answer 501), and its URI parser rejects valid URIs (user parts with `;`/`?`,
/// extension param values), so it gets `scheme:host[:port]`; we keep the URI as received.
fn codec(bytes: &[u8], request: Option<(&Method, &str)>) -> Result<rs::SipMessage, Fault> {
    let owned;
    let input = match request {
        Some((method, uri)) => {
            let m = match method {
                Method::Other(_) => "OPTIONS",
                m => m.as_str(),
            };
            let line_end = find(bytes, b"\r\n").unwrap_or(bytes.len());
            let mut v = format!("{m} {} SIP/2.0", uri_core(uri)).into_bytes();
            v.extend_from_slice(&bytes[line_end..]);
            owned = v;
            &owned[..]
        }
        None => bytes,
    };
    rs::SipMessage::try_from(input).map_err(|e| bad(format!("unreadable message ({e})")))
}

/// `scheme:host[:port]` of a URI: no userinfo, params or headers.
fn uri_core(uri: &str) -> String {
    let (scheme, rest) = uri.split_once(':').unwrap_or(("sip", uri));
    let after_user = if scheme.eq_ignore_ascii_case("tel") {
        rest
    } else {
        rest.split_once('@').map(|(_, h)| h).unwrap_or(rest)
    };
    format!(
        "{scheme}:{}",
        after_user.split([';', '?']).next().unwrap_or("")
    )
}

struct Common {
    vias: Vec<Via>,
    from: NameAddr,
    to: NameAddr,
    call_id: String,
    cseq: u32,
    cseq_method: Method,
    contact: Option<NameAddr>,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// The value of a header that must appear at most once.
fn single<'a>(sc: &'a Scan, name: &str) -> Result<Option<&'a str>, Fault> {
    let mut it = sc.lines.iter().filter(|l| lex::same_header(l.name, name));
    let first = it.next();
    if it.next().is_some() {
        return Err(bad(format!("more than one {name}")));
    }
    Ok(first.map(|l| l.value.as_str()))
}

fn required<'a>(sc: &'a Scan, name: &str) -> Result<&'a str, Fault> {
    single(sc, name)?.ok_or_else(|| bad(format!("missing {name}")))
}

fn digits(v: &str) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn common(sc: &Scan, msg: &rs::SipMessage, bytes: &[u8]) -> Result<Common, Fault> {
    use rs::HasHeaders;
    let rs_headers = match msg {
        rs::SipMessage::Request(r) => r.headers(),
        rs::SipMessage::Response(r) => r.headers(),
    };
    let headers: Vec<(String, String)> = rs_headers
        .iter()
        .map(|h| {
            (
                lex::expand_compact(h.name()).to_string(),
                h.value().to_string(),
            )
        })
        .collect();

    let mut vias = Vec::new();
    for l in sc.lines.iter().filter(|l| lex::same_header(l.name, "Via")) {
        let parts = lex::split_outside(&l.value, ',').ok_or_else(|| bad("malformed Via"))?;
        for p in parts {
            vias.push(via(p.trim())?);
        }
    }
    if vias.is_empty() {
        return Err(bad("missing Via"));
    }
    let from = name_addr(required(sc, "From")?).map_err(|_| bad("malformed From"))?;
    let to = name_addr(required(sc, "To")?).map_err(|_| bad("malformed To"))?;
    let call_id = required(sc, "Call-ID")?;
    if call_id.is_empty() || call_id.chars().any(char::is_whitespace) {
        return Err(bad("malformed Call-ID"));
    }
    let (cseq, cseq_method) = cseq(required(sc, "CSeq")?)?;
    let mut contact = None;
    for l in sc
        .lines
        .iter()
        .filter(|l| lex::same_header(l.name, "Contact"))
    {
        let parts = lex::split_outside(&l.value, ',').ok_or_else(|| bad("malformed Contact"))?;
        for p in parts {
            let p = p.trim();
            if p == "*" {
                continue;
            }
            let na = name_addr(p).map_err(|_| bad("malformed Contact"))?;
            contact.get_or_insert(na);
        }
    }
    let content_type = single(sc, "Content-Type")?.map(str::to_string);
    if let Some(d) = single(sc, "Date")? {
        // rfc1123-date, always GMT (RFC 3261 20.17; RFC 4475 baddate).
        if !d.ends_with(" GMT") {
            return Err(bad("malformed Date"));
        }
    }
    let available = bytes.len().saturating_sub(sc.body_start);
    let body_len = match single(sc, "Content-Length")? {
        None => available,
        Some(v) => {
            let n = digits(v).ok_or_else(|| bad("invalid Content-Length"))?;
            if n > available as u64 {
                return Err(bad("Content-Length exceeds body"));
            }
            n as usize
        }
    };
    let body = Bytes::copy_from_slice(&bytes[sc.body_start..sc.body_start + body_len]);
    Ok(Common {
        vias,
        from,
        to,
        call_id: call_id.to_string(),
        cseq,
        cseq_method,
        contact,
        content_type,
        headers,
        body,
    })
}

fn cseq(v: &str) -> Result<(u32, Method), Fault> {
    // The typed parser handles the standard methods; an extension method is ours.
    let typed = rs::typed::CSeq::parse(v).ok();
    let mut it = v.split_whitespace();
    let (Some(num), Some(m), None) = (it.next(), it.next(), it.next()) else {
        return Err(bad("malformed CSeq"));
    };
    let n = digits(num)
        .filter(|n| *n <= CSEQ_MAX)
        .ok_or_else(|| bad("CSeq number out of range"))?;
    if !lex::is_token(m) {
        return Err(bad("malformed CSeq"));
    }
    let method = match typed {
        Some(t) if t.method.to_string() == m => Method::parse(&t.method.to_string()),
        _ => Method::parse(m),
    };
    Ok((n as u32, method))
}

fn via(raw: &str) -> Result<Via, Fault> {
    let err = || bad("malformed Via");
    let norm = lex::squeeze(raw, &['/', ';', '=', ':']);
    let (proto, rest) = norm.split_once(' ').ok_or_else(err)?;
    let mut p = proto.split('/');
    let (Some(name), Some(ver), Some(transport), None) = (p.next(), p.next(), p.next(), p.next())
    else {
        return Err(err());
    };
    if !name.eq_ignore_ascii_case("SIP") || !lex::is_token(ver) || !lex::is_token(transport) {
        return Err(err());
    }
    let (sent_by, params) = rest.split_once(';').unwrap_or((rest, ""));
    if sent_by.is_empty() || sent_by.contains(' ') || !lex::params_ok(params) {
        return Err(err());
    }
    // rsipstack knows a fixed transport list; an extension transport is valid syntax.
    let known = ["UDP", "TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"];
    let typed_input = if known.iter().any(|k| k.eq_ignore_ascii_case(transport)) {
        norm.clone()
    } else {
        format!("SIP/2.0/UDP {rest}")
    };
    let t = rs::typed::Via::parse(&typed_input).map_err(|_| err())?;
    let hp = &t.uri.host_with_port;
    let host = match &hp.host {
        rs::Host::IpAddr(ip) => ip.to_string(),
        rs::Host::Domain(d) => {
            let d = d.to_string();
            if d.is_empty()
                || !d
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
            {
                return Err(err());
            }
            d
        }
    };
    let branch = match lex::param(params, "branch") {
        Some(Some(b)) => Some(b.to_string()),
        Some(None) => return Err(err()),
        None => None,
    };
    let rport = match lex::param(params, "rport") {
        None => None,
        Some(None) => Some(None),
        Some(Some(p)) => Some(Some(p.parse::<u16>().map_err(|_| err())?)),
    };
    Ok(Via {
        transport: transport.to_ascii_uppercase(),
        host,
        port: hp.port.map(|p| p.value()),
        branch,
        received: lex::param(params, "received").flatten().map(str::to_string),
        rport,
        raw: raw.to_string(),
    })
}

/// `name-addr / addr-spec` with header params: From, To, Contact.
fn name_addr(raw: &str) -> Result<NameAddr, ()> {
    let s = raw.trim();
    let (display, uri, params) = if let Some(rest) = s.strip_prefix('"') {
        // quoted-string display name, backslash escapes
        let mut end = None;
        let mut esc = false;
        for (i, c) in rest.char_indices() {
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                end = Some(i);
                break;
            }
        }
        let end = end.ok_or(())?;
        let after = rest[end + 1..].trim_start();
        let (uri, params) = angle(after)?;
        (Some(unescape(&rest[..end])), uri, params)
    } else if let Some(lt) = s.find('<') {
        let disp = s[..lt].trim();
        // *(token LWS); non-ASCII letters are tolerated (phones send unquoted UTF-8 names),
        // ASCII separators are not (RFC 4475 baddn).
        if !disp
            .chars()
            .all(|c| !c.is_ascii() || lex::is_token_char(c) || c == ' ' || c == '\t')
        {
            return Err(());
        }
        let (uri, params) = angle(&s[lt..])?;
        (
            (!disp.is_empty()).then(|| disp.split_whitespace().collect::<Vec<_>>().join(" ")),
            uri,
            params,
        )
    } else {
        // addr-spec: its URI cannot carry params or headers (RFC 3261 20.10; RFC 4475 regbadct)
        let (uri, params) = s.split_once(';').unwrap_or((s, ""));
        let uri = uri.trim();
        if uri.contains(['?', ',', ' ', '\t', '"', '>']) {
            return Err(());
        }
        (None, uri.to_string(), params.to_string())
    };
    if !uri.contains(':') || !lex::params_ok(&params) {
        return Err(());
    }
    // The typed rsipstack parse gives the tag; our scan above did the strict checks.
    let normalized = format!(
        "<{uri}>{}",
        if params.trim().is_empty() {
            String::new()
        } else {
            format!(";{}", lex::squeeze(&params, &[';', '=']))
        }
    );
    // rsipstack rejects extension values of params it knows (`;transport=foo`,
    // `;method=FOO`): the tag then comes from our own param scan.
    let tag = match rs::typed::From::parse(&normalized) {
        Ok(typed) => typed.tag().map(|t| t.value().to_string()),
        Err(_) => lex::param(&params, "tag")
            .flatten()
            .map(|t| t.trim().to_string()),
    };
    Ok(NameAddr {
        raw: s.to_string(),
        display,
        user: lex::uri_user(&uri),
        uri,
        tag,
    })
}

/// `<uri>` then header params.
fn angle(s: &str) -> Result<(String, String), ()> {
    let inner = s.strip_prefix('<').ok_or(())?;
    let gt = inner.find('>').ok_or(())?;
    let uri = &inner[..gt];
    // No LWS inside the brackets (RFC 4475 badaspec).
    if uri.is_empty() || uri.contains([' ', '\t', '<']) {
        return Err(());
    }
    let rest = inner[gt + 1..].trim();
    let params = if rest.is_empty() {
        ""
    } else {
        rest.strip_prefix(';').ok_or(())?
    };
    Ok((uri.to_string(), params.to_string()))
}

fn unescape(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    let mut esc = false;
    for c in q.chars() {
        if esc {
            out.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests;
