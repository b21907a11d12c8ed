//! The SMS gateway the survey service sends through: SMPP or HTTP, chosen by
//! `survey.toml` `gateway` among the gateways `sms.toml` enables.
//!
//! `gateway = "smpp"` or `"http"` names one (it must be enabled); any other name (the
//! shipped `"default"`) takes SMPP when it is enabled, else HTTP.

use crate::config::sms::SmsConfig;
use crate::sms::http::HttpGateway;
use crate::sms::smpp::SmppGateway;
use crate::sms::{SmsError, SmsEvent, SmsMessage};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug)]
pub enum Gateway {
    Smpp(SmppGateway),
    Http(HttpGateway),
    /// Hands texts to a channel (tests, and a switch without a real gateway).
    Channel(mpsc::UnboundedSender<SmsMessage>),
}

impl Gateway {
    /// Starts the gateway `name` picks from `sms`. Must run inside a tokio runtime.
    pub fn start(
        sms: &SmsConfig,
        name: &str,
    ) -> Result<(Gateway, mpsc::UnboundedReceiver<SmsEvent>), String> {
        let smpp = || -> Result<_, String> {
            let cfg = sms.smpp.clone().ok_or_else(|| {
                "survey.toml gateway = \"smpp\" but sms.toml has no enabled [smpp]".to_string()
            })?;
            let (g, ev) = SmppGateway::start(cfg)?;
            Ok((Gateway::Smpp(g), ev))
        };
        let http = || -> Result<_, String> {
            let cfg = sms.http.clone().ok_or_else(|| {
                "survey.toml gateway = \"http\" but sms.toml has no enabled [http]".to_string()
            })?;
            let (g, ev) = HttpGateway::start(cfg)?;
            Ok((Gateway::Http(g), ev))
        };
        match name {
            "smpp" => smpp(),
            "http" => http(),
            _ if sms.smpp.is_some() => smpp(),
            _ if sms.http.is_some() => http(),
            _ => Err(format!(
                "surveys are enabled (gateway {name:?}) but sms.toml enables no gateway"
            )),
        }
    }

    /// Recorded on each sent text (`sms_messages.gateway`).
    pub fn name(&self) -> &'static str {
        match self {
            Gateway::Smpp(_) => "smpp",
            Gateway::Http(_) => "http",
            Gateway::Channel(_) => "channel",
        }
    }

    pub fn send(&self, msg: SmsMessage) -> Result<(), SmsError> {
        match self {
            Gateway::Smpp(g) => g.send(msg),
            Gateway::Http(g) => g.send(msg),
            Gateway::Channel(tx) => tx.send(msg).map_err(|_| SmsError::Stopped),
        }
    }

    pub async fn stop(self, grace: Duration) {
        match self {
            Gateway::Smpp(g) => g.stop(grace).await,
            Gateway::Http(g) => g.stop(grace).await,
            Gateway::Channel(_) => {}
        }
    }
}
