//! The decisions of the SIP-over-WebSocket transport (RFC 7118), sans-IO: whether a
//! handshake may upgrade (Origin against the configured list, the `sip` subprotocol),
//! and what one WebSocket message is (a SIP message, or a keep-alive). `ws.rs` carries
//! them out; admission caps reuse `tcp_guard::Admission`.
//!
//! Origin rule: a browser always sends `Origin`, so a page of another site is refused
//! (403) unless its origin is listed (`*` lists every one). With no list only pages of
//! this host may connect: the Origin's host[:port] must equal the request's Host. A
//! client that sends no Origin is not a browser page (a native SIP client or a test) and
//! is not restricted by it; it still has to authenticate like any phone.
//!
//! Behind a TLS-terminating reverse proxy every connection comes from the proxy. When the
//! proxy's address is in `trusted_proxies`, the client address it appends to
//! `X-Forwarded-For` is the peer's address (with the proxy connection's port, which keeps
//! it unique), so registrar blocking and per-source limits see the agent, not the proxy;
//! and `X-Forwarded-Proto: https` makes the transport `Wss` (Via `SIP/2.0/WSS`).

use crate::engine::limits::Cidr;
use crate::engine::Transport;
use std::net::{IpAddr, SocketAddr};

/// Limits of the WebSocket transport (`[sip.websocket]` in ccswitch.toml).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsLimits {
    pub allowed_origins: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<Cidr>,
    pub max_message_bytes: usize,
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    pub idle_timeout_ms: u64,
}

/// The subprotocol RFC 7118 section 4 requires.
pub const SUBPROTOCOL: &str = "sip";

/// Why a handshake was refused: the `reason` label of `ccswitch_sip_ws_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The Origin is not allowed (403).
    Origin,
    /// The client did not offer the `sip` subprotocol (400).
    Subprotocol,
    /// `max_connections` or `max_connections_per_source` reached (503).
    Capacity,
}

impl Refusal {
    pub const ALL: [Refusal; 3] = [Refusal::Origin, Refusal::Subprotocol, Refusal::Capacity];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Origin => "origin",
            Refusal::Subprotocol => "subprotocol",
            Refusal::Capacity => "capacity",
        }
    }
}

/// `*`, or an origin as `scheme://host[:port]` in lower case without a default port or
/// a trailing slash. None when it is neither.
pub fn normalize_origin(origin: &str) -> Option<String> {
    let o = origin.trim();
    if o == "*" {
        return Some("*".into());
    }
    let (scheme, rest) = o.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.strip_suffix('/').unwrap_or(rest).to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let well_formed = !authority.is_empty()
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
    if !well_formed {
        return None;
    }
    let authority = authority
        .strip_suffix(default_port)
        .unwrap_or(&authority)
        .to_string();
    Some(format!("{scheme}://{authority}"))
}

/// Whether a handshake with this `Origin` (None: not sent) to this `Host` may upgrade.
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    if allowed.iter().any(|a| a.trim() == "*") {
        return true;
    }
    // An opaque origin ("null": sandboxed frames, file://) never matches a listed one.
    let Some(origin) = normalize_origin(origin).filter(|o| o != "*") else {
        return false;
    };
    if !allowed.is_empty() {
        return allowed
            .iter()
            .filter_map(|a| normalize_origin(a))
            .any(|a| a == origin);
    }
    let Some(host) = host.map(|h| h.trim().to_ascii_lowercase()) else {
        return false;
    };
    let authority = origin.split_once("://").map_or("", |(_, a)| a);
    // The Host header carries the port unless it is the default one of the scheme.
    authority == host
        || (origin.starts_with("http://") && format!("{authority}:80") == host)
        || (origin.starts_with("https://") && format!("{authority}:443") == host)
}

/// Whether `Sec-WebSocket-Protocol` values offer `sip` (a comma-separated list each).
pub fn offers_sip<'a>(values: impl IntoIterator<Item = &'a str>) -> bool {
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(SUBPROTOCOL))
}

/// The peer address and transport of a connection from `tcp_peer`, given the proxy
/// headers (only believed from `trusted` proxies).
pub fn client_peer(
    tcp_peer: SocketAddr,
    forwarded_for: Option<&str>,
    forwarded_proto: Option<&str>,
    trusted: &[Cidr],
) -> (SocketAddr, Transport) {
    if !trusted.iter().any(|c| c.contains(tcp_peer.ip())) {
        return (tcp_peer, Transport::Ws);
    }
    // The last entry is the one our proxy appended: the address it saw.
    let client = forwarded_for
        .and_then(|v| v.rsplit(',').next())
        .map(|v| v.trim().trim_start_matches('[').trim_end_matches(']'))
        .and_then(|v| v.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip.to_canonical(), tcp_peer.port()))
        .unwrap_or(tcp_peer);
    let secure = forwarded_proto
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| matches!(p.trim().to_ascii_lowercase().as_str(), "https" | "wss"));
    (
        client,
        if secure {
            Transport::Wss
        } else {
            Transport::Ws
        },
    )
}

/// Why a connection closed: the `reason` label of `ccswitch_sip_ws_connections_closed_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    PeerClosed,
    IdleTimeout,
    TooLarge,
    /// A WebSocket protocol error (bad frame, a message over the frame limit, reset).
    ProtocolError,
    /// The control loop stopped (shutdown).
    Shutdown,
}

impl CloseReason {
    pub const ALL: [CloseReason; 5] = [
        CloseReason::PeerClosed,
        CloseReason::IdleTimeout,
        CloseReason::TooLarge,
        CloseReason::ProtocolError,
        CloseReason::Shutdown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::TooLarge => "too_large",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// Why reading failed. axum hides the WebSocket library's error type, so its text tells:
/// a peer gone without a close frame (a tab closed, a process killed) is a routine close,
/// a message over the limit is `too_large`, anything else a protocol error.
pub fn read_error(text: &str) -> CloseReason {
    let t = text.to_ascii_lowercase();
    if t.contains("without closing handshake") || t.contains("connection reset") {
        CloseReason::PeerClosed
    } else if t.contains("too long") || t.contains("too big") || t.contains("space limit") {
        CloseReason::TooLarge
    } else {
        CloseReason::ProtocolError
    }
}

/// What one WebSocket message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// One SIP message (RFC 7118 section 5: one per WebSocket message), for the engine.
    Sip,
    /// Only CR/LF: an RFC 5626 keep-alive; a double CRLF ping gets a CRLF pong.
    KeepAlive { pong: bool },
    /// Longer than `max_message_bytes`: close the connection.
    TooLarge,
}

pub fn classify(bytes: &[u8], max_message_bytes: usize) -> Payload {
    if bytes.len() > max_message_bytes {
        return Payload::TooLarge;
    }
    if bytes.iter().all(|b| *b == b'\r' || *b == b'\n') {
        return Payload::KeepAlive {
            pong: bytes == b"\r\n\r\n",
        };
    }
    Payload::Sip
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn origins_normalize() {
        assert_eq!(
            normalize_origin("HTTPS://Agents.Example.com:443/").as_deref(),
            Some("https://agents.example.com")
        );
        assert_eq!(
            normalize_origin("http://10.0.0.1:8080").as_deref(),
            Some("http://10.0.0.1:8080")
        );
        assert_eq!(normalize_origin("*").as_deref(), Some("*"));
        for bad in [
            "null",
            "agents.example.com",
            "ftp://x",
            "http://",
            "http://a b",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn empty_list_allows_this_host_only() {
        let none: Vec<String> = vec![];
        let host = Some("127.0.0.1:8080");
        assert!(origin_allowed(Some("http://127.0.0.1:8080"), host, &none));
        assert!(!origin_allowed(Some("http://evil.example"), host, &none));
        assert!(!origin_allowed(Some("http://127.0.0.1:9090"), host, &none));
        assert!(!origin_allowed(Some("null"), host, &none));
        assert!(origin_allowed(
            Some("https://cc.example"),
            Some("cc.example"),
            &none
        ));
        assert!(origin_allowed(
            Some("http://cc.example"),
            Some("cc.example:80"),
            &none
        ));
        assert!(!origin_allowed(Some("http://cc.example"), None, &none));
        // Not a browser: no Origin to check.
        assert!(origin_allowed(None, host, &none));
    }

    #[test]
    fn listed_origins_and_star() {
        let allowed = list(&["https://agents.example.com", "http://10.0.0.9:8080"]);
        let host = Some("switch.example:8080");
        assert!(origin_allowed(
            Some("https://AGENTS.example.com"),
            host,
            &allowed
        ));
        assert!(origin_allowed(Some("http://10.0.0.9:8080"), host, &allowed));
        assert!(!origin_allowed(
            Some("http://agents.example.com"),
            host,
            &allowed
        ));
        // The list replaces the same-host rule.
        assert!(!origin_allowed(
            Some("http://switch.example:8080"),
            host,
            &allowed
        ));
        assert!(origin_allowed(Some("null"), host, &list(&["*"])));
    }

    #[test]
    fn subprotocol_sip_is_required() {
        assert!(offers_sip(["sip"]));
        assert!(offers_sip(["chat, SIP"]));
        assert!(offers_sip(["chat", "sip"]));
        assert!(!offers_sip(["sips, chat"]));
        assert!(!offers_sip([]));
    }

    #[test]
    fn proxy_headers_only_from_trusted_proxies() {
        let proxy: SocketAddr = "10.0.0.2:41000".parse().unwrap();
        let trusted: Vec<Cidr> = vec!["10.0.0.0/24".parse().unwrap()];
        let xff = Some("198.51.100.1, 203.0.113.9");
        assert_eq!(
            client_peer(proxy, xff, Some("https"), &trusted),
            ("203.0.113.9:41000".parse().unwrap(), Transport::Wss)
        );
        assert_eq!(
            client_peer(proxy, Some("[2001:db8::7]"), None, &trusted),
            ("[2001:db8::7]:41000".parse().unwrap(), Transport::Ws)
        );
        assert_eq!(
            client_peer(proxy, Some("garbage"), Some("http"), &trusted),
            (proxy, Transport::Ws)
        );
        assert_eq!(
            client_peer(proxy, xff, Some("https"), &[]),
            (proxy, Transport::Ws)
        );
    }

    #[test]
    fn payloads() {
        assert_eq!(
            classify(b"\r\n\r\n", 100),
            Payload::KeepAlive { pong: true }
        );
        assert_eq!(classify(b"\r\n", 100), Payload::KeepAlive { pong: false });
        assert_eq!(classify(b"", 100), Payload::KeepAlive { pong: false });
        assert_eq!(classify(b"OPTIONS sip:x SIP/2.0\r\n", 100), Payload::Sip);
        assert_eq!(classify(&[0xff, 0x00, 0x13], 100), Payload::Sip);
        assert_eq!(classify(&[b'a'; 101], 100), Payload::TooLarge);
    }

    #[test]
    fn read_errors_are_classified_by_their_text() {
        assert_eq!(
            read_error("WebSocket protocol error: Connection reset without closing handshake"),
            CloseReason::PeerClosed
        );
        assert_eq!(
            read_error("Space limit exceeded: Message too long: 70000 > 65536"),
            CloseReason::TooLarge
        );
        assert_eq!(
            read_error("WebSocket protocol error: Received an unmasked frame from client"),
            CloseReason::ProtocolError
        );
    }
}
