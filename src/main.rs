//! The `ccswitch` command line: parses arguments and environment, then hands over to `app`.

use ccswitch::app::{self, RunOptions};
use ccswitch::engine::Millis;
use ccswitch::kpi::{Interval, Range, ServiceLevelTarget, ServiceLevelTargets};
use ccswitch::store::{report, Store};
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[path = "cli/user.rs"]
mod user_cli;

#[derive(Parser)]
#[command(
    name = "ccswitch",
    version,
    about = "Call-centre switch: SIP, IVR, routing, honest metrics"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the switch.
    Run {
        #[arg(long, default_value = "config")]
        config: PathBuf,
        /// SIP listen address (UDP and TCP), overrides sip.listen.
        #[arg(long)]
        sip_listen: Option<SocketAddr>,
        /// HTTP listen address, overrides http.listen.
        #[arg(long)]
        http_listen: Option<SocketAddr>,
        /// Database URL (sqlite://... or postgres://...), overrides database.url.
        #[arg(long, env = "CCSWITCH_DATABASE_URL")]
        database: Option<String>,
        /// RTP port range MIN-MAX, overrides rtp.port_min / rtp.port_max.
        #[arg(long, value_parser = parse_port_range)]
        rtp_ports: Option<(u16, u16)>,
        /// Start even though agents still have their demo passwords (`demo<extension>`) and
        /// SIP listens on a non-loopback address, or users.toml users have the demo password
        /// (`ccswitch-demo`) and HTTP does. For a demo on a closed network only.
        #[arg(long)]
        allow_demo_credentials: bool,
    },
    /// Validate the config folder and the prompts offline.
    CheckConfig {
        #[arg(long, default_value = "config")]
        config: PathBuf,
    },
    /// Reports from the stored call records.
    Report {
        #[command(subcommand)]
        what: ReportCmd,
    },
    /// Agent tools.
    Agent {
        #[command(subcommand)]
        what: AgentCmd,
    },
    /// Supervisor API users and tokens: password hashes for users.toml, API tokens.
    User {
        #[command(subcommand)]
        what: user_cli::UserCmd,
    },
}

#[derive(Subcommand)]
enum AgentCmd {
    /// Reads a password from standard input and prints the `ha1_md5` / `ha1_sha256` lines
    /// for the agent's entry in agents.toml (the password itself is never stored).
    HashPassword {
        /// The agent's extension (the SIP username).
        #[arg(long)]
        extension: String,
        /// Digest realm: `[registrar] realm` of agents.toml, or the agent's own `realm`.
        #[arg(long, default_value = ccswitch::config::agents::DEFAULT_REALM)]
        realm: String,
    },
}

#[derive(Subcommand)]
enum ReportCmd {
    /// Calls with their per-call figures (METRICS.md).
    Calls {
        #[arg(long, default_value = "config")]
        config: PathBuf,
        #[arg(long, env = "CCSWITCH_DATABASE_URL")]
        database: Option<String>,
        /// Start (inclusive): RFC 3339 time, YYYY-MM-DD, or epoch milliseconds.
        #[arg(long, value_parser = parse_time)]
        since: Option<Millis>,
        /// End (exclusive), same forms as --since.
        #[arg(long, value_parser = parse_time)]
        until: Option<Millis>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Per queue and interval: offered, answered, abandoned, service level beside the queue's
    /// target, ASA, AHT; and the whole system's 3-ring compliance and IVR containment per
    /// interval (METRICS.md). Each queue's threshold T and target % come from queues.toml
    /// (`service_level_s`, `service_level_pct`; 20 s and 80 % for queues not configured).
    Queues {
        #[command(flatten)]
        opts: IntervalOpts,
        /// Service-level threshold T in seconds (answered within T) for every queue, instead
        /// of each queue's `service_level_s`.
        #[arg(long)]
        service_level_secs: Option<u64>,
    },
    /// Per agent and interval: offers and outcomes, handled calls, AHT, occupancy.
    Agents {
        #[command(flatten)]
        opts: IntervalOpts,
    },
}

#[derive(clap::Args)]
struct IntervalOpts {
    #[arg(long, default_value = "config")]
    config: PathBuf,
    #[arg(long, env = "CCSWITCH_DATABASE_URL")]
    database: Option<String>,
    /// Start (inclusive): RFC 3339 time, YYYY-MM-DD, or epoch milliseconds.
    #[arg(long, value_parser = parse_time)]
    since: Option<Millis>,
    /// End (exclusive), same forms as --since. Default: unbounded for queues; now for agents
    /// (an agent's current state counts up to it).
    #[arg(long, value_parser = parse_time)]
    until: Option<Millis>,
    #[arg(long, value_enum, default_value = "day")]
    interval: IntervalArg,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum IntervalArg {
    Day,
    #[value(name = "15m")]
    Quarter,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| "expected MIN-MAX, e.g. 20000-29999".to_string())?;
    let lo: u16 = lo.trim().parse().map_err(|e| format!("bad MIN: {e}"))?;
    let hi: u16 = hi.trim().parse().map_err(|e| format!("bad MAX: {e}"))?;
    if lo >= hi || lo < 1024 {
        return Err("MIN must be >= 1024 and below MAX".to_string());
    }
    Ok((lo, hi))
}

fn parse_time(s: &str) -> Result<Millis, String> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(Millis(ms));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(Millis(t.timestamp_millis().max(0) as u64));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).ok_or("bad date")?.and_utc();
        return Ok(Millis(t.timestamp_millis().max(0) as u64));
    }
    Err(format!(
        "`{s}` is not a time: use RFC 3339 (2026-11-22T08:00:00Z), YYYY-MM-DD, or epoch ms"
    ))
}

fn main() -> ExitCode {
    ccswitch::telemetry::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::CheckConfig { config } => check_config(config),
        Cmd::Run {
            config,
            sip_listen,
            http_listen,
            database,
            rtp_ports,
            allow_demo_credentials,
        } => runtime().and_then(|rt| {
            rt.block_on(app::run(RunOptions {
                config_dir: config,
                sip_listen,
                http_listen,
                database_url: database,
                rtp_ports,
                allow_demo_credentials,
            }))
        }),
        Cmd::Report {
            what:
                ReportCmd::Calls {
                    config,
                    database,
                    since,
                    until,
                    format,
                },
        } => runtime()
            .and_then(|rt| rt.block_on(report_calls(config, database, since, until, format))),
        Cmd::Report {
            what:
                ReportCmd::Queues {
                    opts,
                    service_level_secs,
                },
        } => runtime().and_then(|rt| rt.block_on(report_queues(opts, service_level_secs))),
        Cmd::Report {
            what: ReportCmd::Agents { opts },
        } => runtime().and_then(|rt| rt.block_on(report_agents(opts))),
        Cmd::Agent {
            what: AgentCmd::HashPassword { extension, realm },
        } => hash_password(&extension, &realm),
        Cmd::User { what } => user_cli::run(what),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ccswitch: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn check_config(dir: PathBuf) -> anyhow::Result<()> {
    let v = app::validate(&dir)?;
    for e in app::exposed_demo_credentials(&v.config) {
        eprintln!("ccswitch: warning: {e}");
    }
    println!(
        "{}: ok ({} IVR prompts, {} agents, languages {}, answer after {} ring(s) of {} ms)",
        dir.display(),
        v.config.ivr.prompt_ids().len(),
        v.config.agents.len(),
        v.config.prompts.languages.join(", "),
        v.config.answer.answer_after_rings,
        v.config.answer.ring_cycle_ms
    );
    Ok(())
}

async fn open_store(
    config_dir: &std::path::Path,
    database: Option<String>,
) -> anyhow::Result<Store> {
    let url = match database {
        Some(u) => u,
        None => {
            let cfg = ccswitch::config::load(config_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
            cfg.database.url.clone()
        }
    };
    Ok(Store::open(&url).await?)
}

fn report_format(format: Format) -> report::ReportFormat {
    match format {
        Format::Table => report::ReportFormat::Table,
        Format::Csv => report::ReportFormat::Csv,
        Format::Json => report::ReportFormat::Json,
    }
}

fn interval(i: IntervalArg) -> Interval {
    match i {
        IntervalArg::Day => Interval::Day,
        IntervalArg::Quarter => Interval::Quarter,
    }
}

/// First line of standard input (without the line ending) is the password.
fn hash_password(extension: &str, realm: &str) -> anyhow::Result<()> {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    let lines = ccswitch::config::agents::hash_password_lines(extension, realm, password)
        .map_err(|e| anyhow::anyhow!(e))?;
    print!("{lines}");
    Ok(())
}

async fn report_calls(
    config_dir: PathBuf,
    database: Option<String>,
    since: Option<Millis>,
    until: Option<Millis>,
    format: Format,
) -> anyhow::Result<()> {
    let store = open_store(&config_dir, database).await?;
    let rows = store.calls(since, until).await?;
    print!("{}", report::render_calls(&rows, report_format(format)));
    Ok(())
}

async fn report_queues(o: IntervalOpts, service_level_secs: Option<u64>) -> anyhow::Result<()> {
    let threshold_override = service_level_secs.map(|s| s.saturating_mul(1000));
    // Each queue's service-level standard is in queues.toml; with the flag the config may be
    // missing (every queue then gets the flag's T and the default 80 %).
    let targets = match ccswitch::config::load(&o.config) {
        Ok(cfg) => ServiceLevelTargets::from_queues(&cfg.queues, threshold_override),
        Err(e) => match threshold_override {
            Some(t) => ServiceLevelTargets {
                fallback: ServiceLevelTarget {
                    threshold_ms: t,
                    ..ServiceLevelTarget::default()
                },
                ..ServiceLevelTargets::default()
            },
            None => anyhow::bail!(
                "{e}\n(each queue's service level is read from queues.toml in {}; pass \
                 --config DIR, or --service-level-secs N to report without it)",
                o.config.display()
            ),
        },
    };
    let store = open_store(&o.config, o.database).await?;
    let range = Range {
        since: o.since,
        until: o.until,
    };
    let iv = interval(o.interval);
    let queues = store.queue_stats_per_queue(range, iv, &targets).await?;
    let system = store.summary_by_interval(range, iv).await?;
    print!(
        "{}",
        report::render_queues(&queues, &system, &targets, iv, report_format(o.format))
    );
    Ok(())
}

async fn report_agents(o: IntervalOpts) -> anyhow::Result<()> {
    let store = open_store(&o.config, o.database).await?;
    // An agent's current state lasts until `until`; without one, until now.
    let until = o
        .until
        .unwrap_or_else(|| ccswitch::clock::Clock::new().now());
    let iv = interval(o.interval);
    let agents = store.agent_stats(o.since, until, iv).await?;
    print!(
        "{}",
        report::render_agents(&agents, iv, report_format(o.format))
    );
    Ok(())
}
