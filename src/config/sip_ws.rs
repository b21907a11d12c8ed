//! `[sip.websocket]`: SIP over WebSocket (RFC 7118) on the HTTP listener's `/sip`.

use crate::engine::limits::Cidr;
use serde::Deserialize;

/// `[sip.websocket]` in ccswitch.toml (see `net::ws`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipWebSocketSection {
    /// Serve `GET /sip` (WebSocket, subprotocol `sip`) on the HTTP listener.
    pub enabled: bool,
    /// Origins (`scheme://host[:port]`) whose pages may connect; `*` allows any. Empty:
    /// only pages served by this host (the Origin's host:port equals the Host header).
    /// Clients that send no Origin (not browsers) are not restricted by it.
    pub allowed_origins: Vec<String>,
    /// Reverse proxies (CIDRs) in front of `/sip`, e.g. the TLS terminator for wss: their
    /// `X-Forwarded-For` gives the agent's address (registrar blocking and per-source
    /// limits then count agents, not the proxy) and `X-Forwarded-Proto: https` makes the
    /// transport wss. Headers from anyone else are ignored.
    pub trusted_proxies: Vec<Cidr>,
    /// Largest SIP message (one WebSocket message); larger ones close the connection.
    pub max_message_bytes: usize,
    /// WebSocket connections open at once; more get 503 before the upgrade.
    pub max_connections: usize,
    /// Connections open at once from one IP address (agents behind one NAT share one).
    pub max_connections_per_source: usize,
    /// A connection silent this long is closed unless a registration or a call uses it.
    pub idle_timeout_s: u64,
}

impl Default for SipWebSocketSection {
    fn default() -> Self {
        SipWebSocketSection {
            enabled: false,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            max_message_bytes: 65_536,
            max_connections: 2048,
            max_connections_per_source: 512,
            idle_timeout_s: 60,
        }
    }
}

impl SipWebSocketSection {
    pub fn to_limits(&self) -> crate::net::ws_guard::WsLimits {
        crate::net::ws_guard::WsLimits {
            allowed_origins: self.allowed_origins.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            max_message_bytes: self.max_message_bytes,
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_source,
            idle_timeout_ms: self.idle_timeout_s.saturating_mul(1000),
        }
    }

    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(bad) = self
            .allowed_origins
            .iter()
            .find(|o| crate::net::ws_guard::normalize_origin(o).is_none())
        {
            return Err((
                "sip.websocket.allowed_origins",
                format!("`{bad}` is not `*` or an origin like https://agents.example.com[:port]"),
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_message_bytes) {
            return Err((
                "sip.websocket.max_message_bytes",
                "must be between 1024 and 16777216".into(),
            ));
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err((
                "sip.websocket.max_connections",
                "must be between 1 and 1000000".into(),
            ));
        }
        if self.max_connections_per_source == 0
            || self.max_connections_per_source > self.max_connections
        {
            return Err((
                "sip.websocket.max_connections_per_source",
                format!(
                    "must be between 1 and sip.websocket.max_connections ({})",
                    self.max_connections
                ),
            ));
        }
        if !(1..=86_400).contains(&self.idle_timeout_s) {
            return Err((
                "sip.websocket.idle_timeout_s",
                "must be between 1 and 86400 (a day)".into(),
            ));
        }
        Ok(())
    }
}
