//! Composition root: load and validate config and prompts, open the store, bind the
//! listeners, start the shells and the control loop, and shut down in stages.

use crate::api::{self, ApiState};
use crate::clock::Clock;
use crate::config::{self, Config};
use crate::control::{self, Inputs, Shells};
use crate::engine::acd::MaxWaitPolicy;
use crate::engine::switch::{ANNOUNCE_PROMPTS, FEATURE_PROMPTS};
use crate::engine::txn::TxnConfig;
use crate::engine::{Command, Engine, EngineConfig, PromptKey};
use crate::media::prompts::{load_prompts, PromptSet};
use crate::media::runtime::{LegPolicy, MediaConfig, MediaHandle, RuntimeOptions};
use crate::net::{self, NetSender};
use crate::store::{self, Store};
use anyhow::{anyhow, Context};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

/// What `ccswitch run` may override on top of the config folder.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub config_dir: PathBuf,
    pub sip_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub database_url: Option<String>,
    pub rtp_ports: Option<(u16, u16)>,
    /// Start even though agents still have demo passwords on a non-loopback SIP address.
    pub allow_demo_credentials: bool,
}

/// Everything a running switch needs, validated: `check-config` stops here.
pub struct Validated {
    pub config: Config,
    pub prompts: PromptSet,
}

/// Loads the config folder and every prompt, and checks that each prompt the IVR can play
/// exists in every configured language.
pub fn validate(dir: &Path) -> anyhow::Result<Validated> {
    let config = config::load(dir).map_err(|e| anyhow!("{e}"))?;
    let prompts =
        load_prompts(&config.prompts.dir, &config.prompts.languages).map_err(|e| anyhow!("{e}"))?;
    let mut ids = config.ivr.prompt_ids();
    ids.insert("goodbye".to_string());
    // What queues play: hold audio, apology, closing prompt, position announcements.
    for name in config.queues.names() {
        if let Some(q) = config.queues.get(name) {
            ids.insert(q.hold_prompt.clone());
            ids.insert(q.apology_prompt.clone());
            if let MaxWaitPolicy::Closing { prompt } = &q.on_max_wait {
                ids.insert(prompt.clone());
            }
            ids.insert(q.closing_prompt.clone());
        }
    }
    if !config.queues.is_empty() {
        ids.extend(ANNOUNCE_PROMPTS.iter().map(|p| p.to_string()));
        ids.extend(FEATURE_PROMPTS.iter().map(|p| p.to_string()));
        ids.extend((0..10).map(|d| format!("digit_{d}")));
    }
    for lang in &config.prompts.languages {
        for id in &ids {
            let key = PromptKey {
                id: id.clone(),
                lang: lang.clone(),
            };
            if !prompts.has(&key) {
                let file = config.prompts.dir.join(lang).join(format!("{id}.wav"));
                return Err(anyhow!(
                    "{}: missing prompt `{id}` for language `{lang}` (used by {})",
                    file.display(),
                    dir.join("ivr.toml").display()
                ));
            }
        }
    }
    Ok(Validated { config, prompts })
}

/// Agents that still have the documented demo password (`demo<extension>`) while SIP
/// listens on a non-loopback address (a wildcard counts): anyone who reaches the switch could
/// sign in as them and take customer calls. Empty when SIP listens on loopback only.
/// Also users of `users.toml` with the demo password while HTTP listens on a non-loopback
/// address (`config::users::exposed_demo_users`).
pub fn exposed_demo_credentials(config: &Config) -> Vec<config::ConfigError> {
    let mut exposed = exposed_demo_agents(config);
    exposed.extend(config::users::exposed_demo_users(config));
    exposed
}

fn exposed_demo_agents(config: &Config) -> Vec<config::ConfigError> {
    let listen = config.sip.listen;
    if listen.ip().to_canonical().is_loopback() {
        return Vec::new();
    }
    let file = config.dir.join(config::AGENTS_FILE);
    config
        .agents
        .demo_credentials()
        .into_iter()
        .map(|(i, key, ext)| {
            config::ConfigError::new(
                &file,
                format!("agents[{i}].{key}"),
                format!(
                    "agent {ext} still has the demo password `{demo}` while SIP listens on \
                     {listen}, which is not a loopback address: anyone who can reach it can \
                     sign in as this agent and take customer calls. Make a new HA1 with \
                     `ccswitch agent hash-password --extension {ext}`, listen on 127.0.0.1, \
                     or start with --allow-demo-credentials",
                    demo = config::agents::demo_password(ext)
                ),
            )
        })
        .collect()
}

/// The database URL in force: flag, then environment (read by `main`), then config.
pub fn database_url(config: &Config, overridden: Option<&str>) -> String {
    overridden
        .map(str::to_string)
        .unwrap_or_else(|| config.database.url.clone())
}

pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let signals = ShutdownSignals::register();
    let clock = Clock::new();
    let Validated {
        mut config,
        prompts,
    } = validate(&opts.config_dir)?;
    if let Some(a) = opts.sip_listen {
        config.sip.listen = a;
    }
    if let Some(a) = opts.http_listen {
        config.http.listen = a;
    }
    if let Some((lo, hi)) = opts.rtp_ports {
        config.rtp.port_min = lo;
        config.rtp.port_max = hi;
    }
    let exposed = exposed_demo_credentials(&config);
    if !exposed.is_empty() {
        if !opts.allow_demo_credentials {
            let all: Vec<String> = exposed.iter().map(|e| e.to_string()).collect();
            return Err(anyhow!("{}", all.join("\n")));
        }
        for e in &exposed {
            tracing::warn!(
                "DEMO CREDENTIALS ON A REACHABLE ADDRESS (--allow-demo-credentials): {e}"
            );
        }
    }
    let url = database_url(&config, opts.database_url.as_deref());

    let metrics = crate::telemetry::init_metrics()?;
    let store = Store::open(&url)
        .await
        .with_context(|| format!("opening database {}", redact_url(&url)))?;
    let closed = store.close_unfinished().await?;
    if closed > 0 {
        tracing::warn!(
            calls = closed,
            "closed calls left unfinished by the last run as failed"
        );
    }
    let surveys = survey_setup(&config, &store, clock.now()).await?;
    let (records, writer) = store::spawn_writer_with(
        store.clone(),
        store::WriterConfig {
            survey_groups: surveys.policy.is_some(),
            ..store::WriterConfig::default()
        },
    );

    let udp = Arc::new(
        UdpSocket::bind(config.sip.listen)
            .await
            .with_context(|| format!("binding SIP UDP {}", config.sip.listen))?,
    );
    let sip_addr = udp.local_addr()?;
    let tcp = TcpListener::bind(sip_addr)
        .await
        .with_context(|| format!("binding SIP TCP {sip_addr}"))?;
    let http = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding HTTP {}", config.http.listen))?;
    let http_addr = http.local_addr()?;

    let advertised = config.sip.advertised_ip.unwrap_or_else(|| {
        if sip_addr.ip().is_unspecified() {
            let ip = primary_ip().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            tracing::info!(%ip, "sip.advertised_ip not set: advertising the primary interface address");
            ip
        } else {
            sip_addr.ip()
        }
    });
    let sent_by = SocketAddr::new(advertised, sip_addr.port()).to_string();

    let (media_tx, media_rx) = mpsc::unbounded_channel();
    let media = MediaHandle::start_with_policy(
        MediaConfig {
            bind_ip: config.rtp.bind_ip,
            workers: config.rtp.workers,
        },
        RuntimeOptions {
            realtime_priority: (config.rtp.realtime_priority > 0)
                .then_some(i32::from(config.rtp.realtime_priority)),
        },
        LegPolicy {
            accept_events_from_same_host: config.rtp.accept_events_from_same_host,
        },
        Arc::new(prompts),
        clock,
        media_tx.clone(),
    )
    .context("starting the media plane")?;
    // Browser legs' WebRTC peers, run by the media workers beside the legs they serve.
    let webrtc = config.webrtc.settings(advertised);
    tracing::info!(host = %webrtc.host_ip, ports = %format!("{}-{}", webrtc.port_min, webrtc.port_max),
        ice_servers = webrtc.ice_servers.len(), "WebRTC media ready");
    let gateway = crate::media::webrtc::WebRtcGateway::new(webrtc).map_err(anyhow::Error::msg)?;
    let _ = media.attach_webrtc(gateway);

    let records_calls = config
        .queues
        .names()
        .any(|q| config.queues.get(q).is_some_and(|s| s.record));
    if records_calls {
        std::fs::create_dir_all(&config.recording.dir).with_context(|| {
            format!(
                "creating the recordings folder {} (ccswitch.toml recording.dir)",
                config.recording.dir.display()
            )
        })?;
    }
    let engine = Engine::new(EngineConfig {
        sent_by,
        media_ip: advertised,
        ring_cycle_ms: config.answer.ring_cycle_ms,
        answer_after_rings: config.answer.answer_after_rings,
        max_calls: config.switch.max_calls,
        rtp_port_min: config.rtp.port_min,
        rtp_port_max: config.rtp.port_max,
        rtp_inactivity_ms: config.rtp.inactivity_ms,
        txn: TxnConfig {
            t1_ms: config.sip.t1_ms,
            t2_ms: config.sip.t2_ms,
            t4_ms: config.sip.t4_ms,
        },
        ivr: config.ivr.clone(),
        agents: config.agents.clone(),
        queues: config.queues.clone(),
        registrar_secret: {
            use rand::TryRngCore;
            let mut secret = [0u8; 32];
            // The OS RNG failing is not recoverable; fall back to the seed-derived value.
            if rand::rngs::OsRng.try_fill_bytes(&mut secret).is_err() {
                secret[..8].copy_from_slice(&clock.now().as_u64().to_le_bytes());
            }
            secret
        },
        recordings_dir: config.recording.dir.clone(),
        limits: config.limits.to_limits_config(),
        default_language: config.prompts.default_language.clone(),
        seed: clock.now().as_u64() ^ u64::from(std::process::id()),
        surveys,
    });

    let (sip_tx, sip_rx) = mpsc::channel(4096);
    let conns = net::tcp::Connections::new(config.sip.tcp.to_limits(), clock);
    let (in_use_tx, in_use_rx) = mpsc::channel(1024);
    net::udp::spawn_receiver(udp.clone(), sip_tx.clone());
    let ws = net::ws::WsConnections::new(
        config.sip.websocket.to_limits(),
        sip_tx.clone(),
        in_use_tx.clone(),
    );
    net::tcp::spawn_listener(tcp, conns.clone(), sip_tx, in_use_tx);
    tracing::info!(udp = %sip_addr, tcp = %sip_addr, "SIP listening");

    // Live view (issue 9): the hub gets every record and live event from the control loop
    // and, when surveys run, their sending and answers from the survey service.
    let (live_tx, live) = crate::live::start(&config, &store, clock).await;

    // Surveys (issue 8): the SMS gateway, the survey service (outbox sender, replies,
    // receipts, expiry, escalation) and the webhook routes; only when survey.toml is on.
    // An opt-out reaches the engine as `Command::SurveyOptOut`, so the next call from that
    // number is skipped at hang-up (the sender checks sms_opt_outs again before sending).
    let (cmd_tx, cmd_rx) = mpsc::channel(8);
    let (surveys, survey_webhooks) = match config.survey.clone() {
        None => (None, None),
        Some(_) if config.sms.smpp.is_none() && config.sms.http.is_none() => {
            tracing::warn!(
                "surveys are on but sms.toml enables no gateway: surveys stay queued, unsent"
            );
            (None, None)
        }
        Some(policy) => {
            let number_key = store
                .number_hash_key()
                .await
                .context("reading the number-hash key")?;
            let (gateway, events) = crate::surveys::Gateway::start(&config.sms, &policy.gateway)
                .map_err(|e| anyhow!("starting the SMS gateway for surveys: {e}"))?;
            let gateway_name = gateway.name();
            let (opt_out_tx, mut opt_out_rx) = mpsc::unbounded_channel::<String>();
            let engine_commands = cmd_tx.clone();
            tokio::spawn(async move {
                while let Some(number_hash) = opt_out_rx.recv().await {
                    if engine_commands
                        .send(Command::SurveyOptOut { number_hash })
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
            let service = crate::surveys::SurveyService::start(
                store.clone(),
                crate::surveys::ServiceConfig {
                    live: Some(live_tx.downgrade()),
                    ..crate::surveys::ServiceConfig::new(policy, number_key)
                },
                gateway,
                events,
                opt_out_tx,
                clock,
            )
            .await
            .context("starting the survey service")?;
            let webhooks = match &config.sms.http {
                Some(http) => Some(api::SurveyWebhooks {
                    service: service.handle(),
                    verifier: Arc::new(std::sync::Mutex::new(
                        crate::sms::http::WebhookVerifier::from_config(http)
                            .map_err(|e| anyhow!("SMS webhooks: {e}"))?,
                    )),
                    clock,
                    max_body: http.webhook_max_body,
                }),
                None => None,
            };
            tracing::info!(
                gateway = gateway_name,
                webhooks = webhooks.is_some(),
                "survey service started"
            );
            (Some(service), webhooks)
        }
    };

    // PIPL retention: full caller numbers of finished surveys and of old call records
    // become their keyed hash.
    let retention = store::spawn_retention(
        store.clone(),
        std::time::Duration::from_secs(3600),
        config.privacy.retention_ms(),
        store
            .number_hash_key()
            .await
            .context("reading the number-hash key")?,
    );

    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let api_state = ApiState {
        metrics,
        surveys: survey_webhooks,
    };
    let auth = api::auth_routes::AuthState::with_agents(
        config.users.clone(),
        config.agents.clone(),
        store.clone(),
        clock,
    )
    .with_ice_servers(
        config
            .webrtc
            .ice_servers
            .iter()
            .map(|s| api::auth_routes::IceServerInfo {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect(),
    );
    // Browsers signed in before a restart (the wallboard) stay signed in.
    if let Err(e) = auth.restore().await {
        tracing::error!(error = %e, "could not restore browser sessions: they must sign in again");
    }
    let (monitor_tx, monitor_rx) = mpsc::channel::<control::MonitorAsk>(64);
    let rest =
        api::rest::RestState::new(&config, auth.clone(), store.clone(), cmd_tx.clone(), clock)
            .with_monitor(monitor_tx);
    let mut http_app = api::router(api_state)
        .merge(api::auth_routes::router(auth.clone()))
        .merge(api::rest::router(rest))
        .merge(api::live_routes::router(auth, live));
    if config.sip.websocket.enabled {
        http_app = http_app.merge(net::ws::router(ws.clone()));
        tracing::info!(url = %format!("ws://{http_addr}{}", net::ws::PATH), "SIP over WebSocket listening");
    }
    // Unknown /api/ paths and wrong methods answer with problem documents too.
    let http_app = http_app.layer(axum::middleware::from_fn(api::problem::api_fallbacks));
    let http_task = tokio::spawn(api::serve_router(http, http_app, async {
        let _ = http_stop_rx.await;
    }));
    tracing::info!(addr = %http_addr, users = config.users.users.len(), "HTTP listening (/health, /metrics, /api/v1)");

    let grace_ms = config.switch.shutdown_grace_ms;
    tokio::spawn(async move {
        signals.wait().await;
        tracing::info!("signal received: graceful shutdown");
        let _ = cmd_tx.send(Command::Shutdown { grace_ms }).await;
        // Keep the sender alive so the control loop does not see a closed channel.
        std::future::pending::<()>().await;
    });

    let shells = Shells {
        net: NetSender::new(udp, conns, ws),
        media: media.clone(),
        records,
        live: Some(live_tx),
    };
    control::run(
        engine,
        clock,
        Inputs {
            sip: sip_rx,
            media: media_rx,
            commands: cmd_rx,
            tcp_in_use: in_use_rx,
            monitor: monitor_rx,
        },
        shells,
    )
    .await;

    // Let the last BYEs leave before the sockets go.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    media.shutdown();
    let _ = http_stop_tx.send(());
    let _ = http_task.await;
    if let Some(service) = surveys {
        service.stop(std::time::Duration::from_secs(2)).await;
    }
    retention.abort();
    let stats = writer.shutdown().await;
    tracing::info!(?stats, "store flushed; bye");
    Ok(())
}

/// Surveys after hang-up (issue 8): the policy, the number-hash key, and what the store
/// remembers of surveys inside the frequency cap and of opt-outs. Off: nothing is read.
async fn survey_setup(
    config: &Config,
    store: &Store,
    now: crate::engine::Millis,
) -> anyhow::Result<crate::engine::SurveySetup> {
    let Some(policy) = config.survey.clone() else {
        return Ok(crate::engine::SurveySetup::default());
    };
    let number_hash_key = store
        .number_hash_key()
        .await
        .context("reading the number-hash key")?;
    let cap_ms = u64::from(policy.frequency_cap_days) * 86_400_000;
    let since = crate::engine::Millis(now.as_u64().saturating_sub(cap_ms));
    let ledger = store
        .survey_ledger(since)
        .await
        .context("reading earlier surveys and opt-outs")?;
    tracing::info!(
        recent_numbers = ledger.last_sent.len(),
        opted_out = ledger.opted_out.len(),
        "surveys on"
    );
    Ok(crate::engine::SurveySetup {
        policy: Some(policy),
        number_hash_key,
        ledger,
    })
}

/// SIGTERM and SIGINT, registered at once: a signal that arrives before the control loop
/// runs must still mean "shut down gracefully", not the default "die".
struct ShutdownSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn register() -> ShutdownSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            ShutdownSignals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        ShutdownSignals {}
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = next(&mut self.term) => {}
                _ = next(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The address this host uses to reach other networks (no packet is sent: connecting a UDP
/// socket only picks the route). None on a host without a default route.
fn primary_ip() -> Option<IpAddr> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect("192.0.2.1:9").ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// Hides a password in a database URL for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
