//! SIP dispatch: bytes in, parsed, matched to a transaction, screened per source, then
//! routed to the caller leg, the agent leg, the registrar or OPTIONS; replies and the
//! shared no-dialog answer.

use super::{Engine, ALLOW};
use crate::engine::limits::{Kind, Refusal, Verdict};
use crate::engine::time::Millis;
use crate::engine::txn::{ClientMatch, ServerMatch, TxnKey};
use crate::engine::Peer;
use crate::proto::sip::{self, Message, Method, Request, Response, ResponseOpts};
use bytes::Bytes;

impl Engine {
    pub(super) fn on_sip(&mut self, now: Millis, peer: Peer, bytes: &[u8]) {
        self.stats.sip_received += 1;
        // Stream keep-alives (RFC 5626 CRLF) are not messages.
        if bytes.iter().all(|b| *b == b'\r' || *b == b'\n') {
            return;
        }
        match sip::parse(bytes) {
            Err(e) => {
                self.stats.malformed += 1;
                tracing::warn!(from = %peer.addr, reason = %e.reason, "malformed SIP message");
                let resp = e
                    .salvage
                    .as_ref()
                    .and_then(|s| sip::error_response(s, e.status, &e.reason, peer.addr));
                match resp {
                    Some(b) => self.transmit(peer, b),
                    None => self.stats.malformed_dropped += 1,
                }
            }
            Ok(Message::Request(req)) => self.on_request(now, peer, req),
            Ok(Message::Response(resp)) => self.on_response(now, resp),
        }
    }

    pub(super) fn server_key(req: &Request) -> TxnKey {
        let via = req.top_via();
        let branch = match &via.branch {
            Some(b) if b.starts_with("z9hG4bK") => b.clone(),
            // RFC 2543 peers: no magic cookie, match on the dialog-ish identifiers instead.
            _ => format!(
                "2543:{}:{}:{}",
                req.call_id,
                req.from.tag.as_deref().unwrap_or(""),
                req.cseq
            ),
        };
        let method = match req.method {
            Method::Ack => "INVITE".to_string(),
            ref m => m.as_str().to_string(),
        };
        TxnKey {
            branch,
            method,
            sent_by: format!("{}:{}", via.host, via.port.unwrap_or(5060)),
        }
    }

    // One argument per part of a SIP response; bundling them would only rename the list.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn respond(
        &mut self,
        now: Millis,
        key: &TxnKey,
        req: &Request,
        peer: Peer,
        status: u16,
        reason: &str,
        opts: ResponseOpts,
    ) -> Bytes {
        let opts = ResponseOpts {
            source: Some(peer.addr),
            ..opts
        };
        let bytes = sip::response(req, status, reason, &opts);
        self.txns.server_respond(now, key, status, bytes.clone());
        bytes
    }

    /// Stateless-looking answers for requests that get one final response and nothing else.
    pub(super) fn reply(
        &mut self,
        now: Millis,
        key: &TxnKey,
        req: &Request,
        peer: Peer,
        status: u16,
        reason: &str,
    ) {
        let extra = match status {
            405 | 501 => vec![("Allow", ALLOW.to_string())],
            _ => vec![],
        };
        let to_tag = if req.to.tag.is_none() && status >= 200 {
            Some(self.new_tag())
        } else {
            None
        };
        let opts = ResponseOpts {
            to_tag: to_tag.as_deref(),
            extra_headers: extra,
            ..Default::default()
        };
        self.respond(now, key, req, peer, status, reason, opts);
    }

    /// 481: the request names a dialog or transaction we do not have (RFC 3261 12.2.2).
    pub(super) fn reply_no_dialog(&mut self, now: Millis, key: &TxnKey, req: &Request, peer: Peer) {
        self.reply(now, key, req, peer, 481, "Call/Transaction Does Not Exist");
    }

    pub(super) fn on_request(&mut self, now: Millis, peer: Peer, req: Request) {
        let key = Self::server_key(&req);
        let is_ack = req.method == Method::Ack;
        match self.txns.server_request(now, &key, is_ack) {
            ServerMatch::New => {}
            ServerMatch::AckMatched => return,
            _ => {
                self.stats.retransmissions += 1;
                return;
            }
        }
        if is_ack {
            if !self.on_agent_ack(&req) {
                self.on_ack(now, req);
            }
            return;
        }
        // After the transaction match, so retransmissions never cost a token.
        if !self.screen_source(now, peer, &key, &req) {
            return;
        }
        self.txns
            .server_create(now, key.clone(), peer, req.method == Method::Invite);

        if req.max_forwards == Some(0) {
            return self.reply(now, &key, &req, peer, 483, "Too Many Hops");
        }
        let uri = req.uri.to_ascii_lowercase();
        if !(uri.starts_with("sip:") || uri.starts_with("sips:") || uri.starts_with("tel:")) {
            return self.reply(now, &key, &req, peer, 416, "Unsupported URI Scheme");
        }
        if req.method != Method::Cancel {
            if let Some(required) = req.header("Require") {
                // We support no extensions (RFC 3261 8.2.2.3).
                let required = required.to_string();
                let to_tag = self.new_tag();
                let opts = ResponseOpts {
                    to_tag: Some(&to_tag),
                    extra_headers: vec![("Unsupported", required)],
                    ..Default::default()
                };
                self.respond(now, &key, &req, peer, 420, "Bad Extension", opts);
                return;
            }
        }

        let span = self
            .dialog_of(&req)
            .or_else(|| {
                let invite_key = TxnKey {
                    method: "INVITE".to_string(),
                    ..key.clone()
                };
                self.by_invite.get(&invite_key).copied()
            })
            .and_then(|k| self.calls.get(&k))
            .map(|c| c.span.clone());
        let _entered = span.as_ref().map(|s| s.enter());
        if req.to.tag.is_some() && self.on_agent_request(now, peer, &key, &req) {
            return;
        }
        match req.method {
            Method::Register => self.on_register(now, peer, key, req),
            Method::Invite if req.to.tag.is_none() => self.on_new_invite(now, peer, key, req),
            Method::Invite => self.on_reinvite(now, peer, key, req),
            Method::Cancel => self.on_cancel(now, peer, key, req),
            Method::Bye => self.on_bye(now, peer, key, req),
            Method::Info => self.on_info(now, peer, key, req),
            Method::Options => self.on_options(now, peer, key, req),
            Method::Other(_) => self.reply(now, &key, &req, peer, 501, "Not Implemented"),
            _ if req.to.tag.is_some() && self.dialog_of(&req).is_none() => {
                self.reply_no_dialog(now, &key, &req, peer)
            }
            _ => self.reply(now, &key, &req, peer, 405, "Method Not Allowed"),
        }
    }

    /// Per-source limits (`limits.rs`) for requests that would create state: new INVITEs
    /// and REGISTERs. False when the request was answered 503 or is to be ignored.
    pub(super) fn screen_source(
        &mut self,
        now: Millis,
        peer: Peer,
        key: &TxnKey,
        req: &Request,
    ) -> bool {
        let kind = match req.method {
            Method::Invite if req.to.tag.is_none() => Kind::Invite,
            Method::Register => Kind::Register,
            _ => return true,
        };
        let verdict = self.limits.check(now, peer.addr.ip(), kind);
        self.stats.sources_banned = self.limits.banned() as u64;
        match verdict {
            Verdict::Allow => true,
            Verdict::Ignore => {
                self.stats.source_ignored += 1;
                false
            }
            Verdict::Refuse { why, retry_after_s } => {
                match why {
                    Refusal::Rate => self.stats.source_rate_limited += 1,
                    Refusal::Concurrency => self.stats.source_over_concurrency += 1,
                }
                // A server transaction, so retransmissions get this 503 again for free.
                self.txns
                    .server_create(now, key.clone(), peer, kind == Kind::Invite);
                let to_tag = self.new_tag();
                let opts = ResponseOpts {
                    to_tag: Some(&to_tag),
                    extra_headers: vec![("Retry-After", retry_after_s.to_string())],
                    ..Default::default()
                };
                self.respond(now, key, req, peer, 503, "Service Unavailable", opts);
                false
            }
        }
    }

    pub(super) fn dialog_of(&self, req: &Request) -> Option<u64> {
        let remote_tag = req.from.tag.clone().unwrap_or_default();
        let key = self.by_dialog.get(&(req.call_id.clone(), remote_tag))?;
        let call = self.calls.get(key)?;
        match &req.to.tag {
            Some(t) if *t == call.local_tag => Some(*key),
            _ => None,
        }
    }

    pub(super) fn on_options(&mut self, now: Millis, peer: Peer, key: TxnKey, req: Request) {
        if req.to.tag.is_some() && self.dialog_of(&req).is_none() {
            return self.reply_no_dialog(now, &key, &req, peer);
        }
        let to_tag = if req.to.tag.is_none() {
            Some(self.new_tag())
        } else {
            None
        };
        let opts = ResponseOpts {
            to_tag: to_tag.as_deref(),
            extra_headers: vec![
                ("Allow", ALLOW.to_string()),
                ("Accept", "application/sdp".to_string()),
                ("Accept-Language", "en, zh".to_string()),
            ],
            ..Default::default()
        };
        self.respond(now, &key, &req, peer, 200, "OK", opts);
    }

    pub(super) fn on_response(&mut self, now: Millis, resp: Response) {
        let Some(via) = resp.vias.first() else {
            return;
        };
        let key = TxnKey {
            branch: via.branch.clone().unwrap_or_default(),
            method: resp.cseq_method.as_str().to_string(),
            sent_by: String::new(),
        };
        if self.on_agent_response(now, &key, &resp) {
            return;
        }
        match self.txns.client_response(now, &key, resp.status, None) {
            ClientMatch::Pass if resp.status >= 200 => {
                if let Some(call_key) = self.by_bye.remove(&key) {
                    self.remove_call(call_key);
                }
            }
            ClientMatch::Pass => {}
            _ => self.stats.retransmissions += 1,
        }
    }
}
