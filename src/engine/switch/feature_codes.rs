//! Screening an INVITE before the IVR: feature codes (`*21` ready, `*22` break, ...,
//! `*4`+number dispositions) from authenticated agents (407 flow), and toll-fraud refusals
//! (agent extensions, unknown `*` codes get 404).

use super::dispositions::CodeRef;
use super::Engine;
use crate::engine::registrar::AuthResult;
use crate::engine::time::Millis;
use crate::engine::txn::TxnKey;
use crate::engine::Peer;
use crate::proto::sip::{Request, ResponseOpts};

impl Engine {
    /// Feature codes and calls to agents: `Err(())` when the INVITE was answered here
    /// (refused or challenged); `Ok(Some(prompt))` for an accepted feature call (the
    /// confirmation to play); `Ok(None)` for an ordinary call.
    pub(super) fn screen_invite(
        &mut self,
        now: Millis,
        peer: Peer,
        key: &TxnKey,
        req: &Request,
    ) -> Result<Option<String>, ()> {
        let dialled = req.uri_user.clone().unwrap_or_default();
        if let Some((mode, agent)) = super::monitor::parse_code(&dialled) {
            return self.screen_monitor(now, peer, key, req, mode, agent);
        }
        let feature = self.features.lookup(&dialled).or_else(|| {
            self.features
                .disposition_number(&dialled)
                .map(|_| "disposition")
        });
        if let Some(feature) = feature {
            match self.registrar.authenticate_request(now, peer.addr, req) {
                AuthResult::Ok(ext) if feature == "disposition" => {
                    let number = self.features.disposition_number(&dialled).unwrap_or(0);
                    let res = self.set_disposition(now, &ext, None, CodeRef::Number(number), None);
                    let prompt = if res.is_ok() {
                        "feature_disposition_saved"
                    } else {
                        "feature_refused"
                    };
                    return Ok(Some(prompt.to_string()));
                }
                AuthResult::Ok(ext) => {
                    let res = match feature {
                        "ready" => self
                            .acd
                            .set_ready(now, &ext)
                            .or_else(|_| self.acd.login(now, &ext)),
                        "logout" => self.acd.logout(now, &ext),
                        reason => self.acd.set_not_ready(now, &ext, reason),
                    };
                    let prompt = match (&res, feature) {
                        (Err(e), _) => {
                            tracing::info!(agent = %ext, feature, error = %e, "feature code refused");
                            "feature_refused"
                        }
                        (Ok(()), "ready") => "feature_ready",
                        (Ok(()), "logout") => "feature_logged_out",
                        (Ok(()), _) => "feature_not_ready",
                    };
                    tracing::info!(agent = %ext, feature, ok = res.is_ok(), "feature code");
                    return Ok(Some(prompt.to_string()));
                }
                AuthResult::Challenge(r) => {
                    let to_tag = self.new_tag();
                    let opts = ResponseOpts {
                        to_tag: Some(&to_tag),
                        extra_headers: r.headers,
                        ..Default::default()
                    };
                    self.respond(now, key, req, peer, r.status, &r.reason, opts);
                    return Err(());
                }
                AuthResult::Forbidden => {
                    self.reply(now, key, req, peer, 403, "Forbidden");
                    return Err(());
                }
            }
        }
        if dialled.starts_with('*') || self.agent_dir.get(&dialled).is_some() {
            self.reply(now, key, req, peer, 404, "Not Found");
            return Err(());
        }
        Ok(None)
    }
}
