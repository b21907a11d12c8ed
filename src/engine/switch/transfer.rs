//! Blind transfer: REFER from the agent's phone to a queue or an agent's extension, 202,
//! the NOTIFY sipfrag, and the caller moved on.

use super::agent_leg::AgentLegState;
use super::Engine;
use crate::engine::acd::AgentState;
use crate::engine::call::AcdPhase;
use crate::engine::media::{LegId, MediaCommand};
use crate::engine::record::{EndedBy, Record};
use crate::engine::time::Millis;
use crate::engine::txn::TxnKey;
use crate::engine::Peer;
use crate::proto::sip::{self, Method, Request, RequestOpts};
use rand::Rng;

impl Engine {
    /// Blind transfer by the agent to a queue (`Refer-To: <sip:QUEUE@...>`): 202, a final
    /// NOTIFY (sipfrag 200), our BYE to the agent (who enters wrap-up), and the caller
    /// waits in the new queue with hold audio.
    pub(super) fn on_agent_refer(
        &mut self,
        now: Millis,
        peer: Peer,
        key: &TxnKey,
        req: &Request,
        leg: LegId,
    ) {
        let target = req
            .header("Refer-To")
            .or_else(|| req.header("r"))
            .and_then(|v| {
                let v = v.trim().trim_start_matches('<');
                let rest = v.strip_prefix("sip:").or_else(|| v.strip_prefix("sips:"))?;
                let user = rest.split(['@', '>', ';']).next()?;
                Some(user.to_string())
            });
        let Some(target) = target else {
            return self.reply(now, key, req, peer, 400, "Bad Refer-To");
        };
        let Some(l) = self.agent_legs.get(&leg) else {
            return;
        };
        // Only the phone we are talking to may move the call (Call-IDs can leak).
        if l.peer.map(|p| p.addr) != Some(peer.addr) {
            return self.reply(now, key, req, peer, 403, "Forbidden");
        }
        let call_key = l.call_key;
        let connected = l.state == AgentLegState::Up
            && self
                .calls
                .get(&call_key)
                .is_some_and(|c| c.agent_leg == Some(leg) && c.acd == AcdPhase::Connected);
        if !connected {
            return self.reply_no_dialog(now, key, req, peer);
        }
        // Transfer targets are queues and agents' extensions: ccswitch never dials anything
        // but registered agent phones.
        let to_queue = self.acd.queues().get(&target).is_some();
        if !to_queue && self.agent_dir.get(&target).is_none() {
            return self.reply(now, key, req, peer, 404, "Not Found");
        }
        if !to_queue && !matches!(self.acd.agent_state(&target), Some(AgentState::Ready)) {
            return self.reply(now, key, req, peer, 480, "Temporarily Unavailable");
        }
        self.reply(now, key, req, peer, 202, "Accepted");
        self.send_notify(now, leg, "SIP/2.0 200 OK\r\n");
        let agent = self
            .agent_legs
            .get(&leg)
            .map(|l| l.agent.clone())
            .unwrap_or_default();
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        call.agent_leg = None;
        call.acd = AcdPhase::Queued;
        if to_queue {
            call.queue = Some(target.clone());
        }
        let (caller_leg, call_id) = (call.leg, call.id.clone());
        self.survey_note_transfer(call_key, now, (!to_queue).then_some(target.as_str()));
        self.media(MediaCommand::Unbridge { leg: caller_leg });
        self.agent_bye(now, leg);
        self.persist(Record::CallTransferred {
            call_id,
            at: now,
            target: target.clone(),
            by: agent,
        });
        let moved = if to_queue {
            self.acd.transfer_to_queue(now, call_key, &target)
        } else {
            self.acd.transfer_to_agent(now, call_key, &target)
        };
        if let Err(e) = moved {
            tracing::warn!(error = %e, "transfer refused: ending the call");
            if let Some(c) = self.calls.get_mut(&call_key) {
                c.acd = AcdPhase::None;
            }
            self.end_call(now, call_key, EndedBy::System, "transfer_failed", true);
        }
    }

    /// The final NOTIFY of a REFER's implicit subscription (RFC 3515).
    pub(super) fn send_notify(&mut self, now: Millis, leg: LegId, sipfrag: &str) {
        let sent_by = self.cfg.sent_by.clone();
        let branch = sip::new_branch(self.rng.random());
        let Some(l) = self.agent_legs.get_mut(&leg) else {
            return;
        };
        let Some(peer) = l.peer else {
            return;
        };
        l.local_cseq = l.local_cseq.max(l.invite_cseq) + 1;
        let bytes = sip::request(&RequestOpts {
            method: Method::Notify,
            uri: &l.remote_target,
            transport: peer.transport,
            sent_by: &sent_by,
            branch: &branch,
            from: &l.from,
            to: &l.to,
            call_id: &l.sip_call_id,
            cseq: l.local_cseq,
            contact: None,
            route: vec![],
            extra_headers: vec![
                ("Event", "refer".to_string()),
                (
                    "Subscription-State",
                    "terminated;reason=noresource".to_string(),
                ),
            ],
            body: Some(("message/sipfrag;version=2.0", sipfrag.as_bytes())),
        });
        let key = TxnKey {
            branch: branch.clone(),
            method: "NOTIFY".to_string(),
            sent_by: String::new(),
        };
        self.agent_by_branch.insert(branch, leg);
        self.txns.client_send(now, key, peer, false, bytes);
    }
}
