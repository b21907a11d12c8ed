//! What the registrar answers: REGISTER replies (200 with the bindings, plain errors) and the
//! result of authenticating other requests.

use super::{Registrar, RegistrarEvent};
use crate::engine::Millis;

/// What to answer, and what changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterReply {
    pub status: u16,
    pub reason: String,
    /// Extra response headers: `WWW-Authenticate`/`Proxy-Authenticate` (SHA-256 first),
    /// `Contact` (one per binding, with `expires`), `Min-Expires` (423), `Date` (200).
    pub headers: Vec<(&'static str, String)>,
    pub events: Vec<RegistrarEvent>,
}

impl RegisterReply {
    pub(super) fn plain(status: u16, reason: &str) -> RegisterReply {
        RegisterReply {
            status,
            reason: reason.to_string(),
            headers: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Result of `authenticate_request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthResult {
    /// The authenticated extension.
    Ok(String),
    /// Answer with this (407 and `Proxy-Authenticate`).
    Challenge(RegisterReply),
    /// Answer 403 Forbidden: blocked source, or credentials for another user than From.
    Forbidden,
}

impl Registrar {
    /// 200 OK listing every current binding with its remaining seconds, and Date.
    pub(super) fn ok(&self, now: Millis, ext: &str, events: Vec<RegistrarEvent>) -> RegisterReply {
        let mut headers: Vec<(&'static str, String)> = self
            .contacts(ext)
            .iter()
            .map(|b| {
                let left = b.expires_at.since(now).div_ceil(1000);
                ("Contact", format!("<{}>;expires={left}", b.uri))
            })
            .collect();
        headers.push(("Date", http_date(now)));
        RegisterReply {
            status: 200,
            reason: "OK".into(),
            headers,
            events,
        }
    }
}

/// RFC 1123 date in GMT (RFC 3261 20.17).
fn http_date(now: Millis) -> String {
    let t = chrono::DateTime::from_timestamp_millis(now.as_i64()).unwrap_or_default();
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Lets tests and tools write the Contact list of a reply.
pub fn contact_header_values(reply: &RegisterReply) -> Vec<&str> {
    reply
        .headers
        .iter()
        .filter(|(n, _)| *n == "Contact")
        .map(|(_, v)| v.as_str())
        .collect()
}
