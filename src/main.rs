//! The `ccswitch` command line: parses arguments and environment, then hands over to `app`.

use ccswitch::app::{self, RunOptions};
use ccswitch::engine::Millis;
use ccswitch::kpi::resolution::ResolutionGroup;
use ccswitch::kpi::survey::{validate_note, Buckets, SurveyGroup};
use ccswitch::kpi::{Interval, Range, ServiceLevelTarget, ServiceLevelTargets};
use ccswitch::store::{report, CloseOutcome, Store, TaskFilter};
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
    /// Follow-up tasks (a low survey score or a complaint-queue call), owned by the agent
    /// who answered the call, due within 24 h.
    Tasks {
        #[command(subcommand)]
        what: TasksCmd,
    },
}

#[derive(Subcommand)]
enum TasksCmd {
    /// Open tasks, the most urgent first (caller numbers masked).
    List {
        #[arg(long, default_value = "config")]
        config: PathBuf,
        #[arg(long, env = "CCSWITCH_DATABASE_URL")]
        database: Option<String>,
        /// Only open tasks past their due time.
        #[arg(long)]
        overdue: bool,
        /// Only this agent's tasks (the extension).
        #[arg(long, value_name = "EXT")]
        agent: Option<String>,
        /// Closed tasks too.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Show full caller numbers; refused unless survey.toml has
        /// `[privacy] allow_unmask = true`.
        #[arg(long)]
        unmask: bool,
    },
    /// Close an open task with a note saying what was done.
    Close {
        /// The task id (`tasks list`).
        id: i64,
        /// What was done (required, at most 1000 characters).
        #[arg(long)]
        note: String,
        #[arg(long, default_value = "config")]
        config: PathBuf,
        #[arg(long, env = "CCSWITCH_DATABASE_URL")]
        database: Option<String>,
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
        /// Show full caller numbers; refused unless survey.toml has
        /// `[privacy] allow_unmask = true`.
        #[arg(long)]
        unmask: bool,
    },
    /// Survey figures per interval (local days or 15 minutes in the IVR's time zone), and
    /// per queue or agent: sent, delivered, answered, response rate = answered / sent, CSAT
    /// (% of answers scoring 4-5, and the mean), NPS, opt-outs, follow-ups opened / closed in
    /// time / overdue (METRICS.md), each ratio with its denominator. A bare date in
    /// --since/--until is UTC midnight: for local days give the offset
    /// (2026-11-22T00:00:00+08:00).
    Surveys {
        #[command(flatten)]
        opts: IntervalOpts,
        /// Group by the survey's queue or agent.
        #[arg(long, value_enum)]
        by: Option<ByArg>,
        /// Refused unless survey.toml has `[privacy] allow_unmask = true` (this report shows
        /// no numbers).
        #[arg(long)]
        unmask: bool,
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
enum ByArg {
    Queue,
    Agent,
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
    // One TLS/DTLS crypto provider for the whole binary (rustls for the HTTP SMS gateway,
    // the webrtc crate's DTLS): ring, installed before anything can pick another.
    let _ = rustls::crypto::ring::default_provider().install_default();
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
                    unmask,
                },
        } => runtime().and_then(|rt| {
            rt.block_on(report_calls(config, database, since, until, format, unmask))
        }),
        Cmd::Report {
            what: ReportCmd::Surveys { opts, by, unmask },
        } => runtime().and_then(|rt| rt.block_on(report_surveys(opts, by, unmask))),
        Cmd::Tasks {
            what:
                TasksCmd::List {
                    config,
                    database,
                    overdue,
                    agent,
                    all,
                    format,
                    unmask,
                },
        } => runtime().and_then(|rt| {
            rt.block_on(tasks_list(
                config,
                database,
                TaskFilter {
                    include_closed: all,
                    overdue_at: overdue.then(|| ccswitch::clock::Clock::new().now()),
                    agent,
                },
                format,
                unmask,
            ))
        }),
        Cmd::Tasks {
            what:
                TasksCmd::Close {
                    id,
                    note,
                    config,
                    database,
                },
        } => runtime().and_then(|rt| rt.block_on(tasks_close(config, database, id, note))),
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
        Err(e) if e.downcast_ref::<Refused>().is_some() => {
            eprintln!("ccswitch: error: {e:#}");
            ExitCode::from(2)
        }
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
    let dispositions = &v.config.queues.dispositions;
    println!(
        "{}: ok ({} IVR prompts, {} agents, {} disposition codes (+{} queue lists), \
         languages {}, answer after {} ring(s) of {} ms)",
        dir.display(),
        v.config.ivr.prompt_ids().len(),
        v.config.agents.len(),
        dispositions.default.len(),
        dispositions.per_queue.len(),
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

/// A request the privacy settings refuse (exit status 2).
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// `--unmask` passes only when the config folder loads and survey.toml says
/// `[privacy] allow_unmask = true`.
fn check_unmask(config_dir: &std::path::Path, unmask: bool) -> anyhow::Result<bool> {
    if !unmask {
        return Ok(false);
    }
    match ccswitch::config::load(config_dir) {
        Ok(cfg) if cfg.privacy.allow_unmask => Ok(true),
        Ok(_) => Err(Refused(format!(
            "--unmask refused: caller numbers are shown masked (PIPL, minimum necessary) \
             unless {}/survey.toml has `[privacy] allow_unmask = true`",
            config_dir.display()
        ))
        .into()),
        Err(e) => Err(Refused(format!(
            "--unmask refused: the config folder {} does not load, so the privacy setting \
             `[privacy] allow_unmask` cannot be checked: {e}",
            config_dir.display()
        ))
        .into()),
    }
}

async fn report_calls(
    config_dir: PathBuf,
    database: Option<String>,
    since: Option<Millis>,
    until: Option<Millis>,
    format: Format,
    unmask: bool,
) -> anyhow::Result<()> {
    let unmask = check_unmask(&config_dir, unmask)?;
    let store = open_store(&config_dir, database).await?;
    let rows = store.calls(since, until).await?;
    let surveys = store.call_surveys(since, until).await?;
    let view = report::CallsView {
        surveys: &surveys,
        unmask,
    };
    print!(
        "{}",
        report::render_calls_with(&rows, view, report_format(format))
    );
    Ok(())
}

/// The IVR time zone's UTC offset at `at` (ms, east positive); UTC, with a note, when the
/// config does not load.
fn ivr_utc_offset_ms(config_dir: &std::path::Path, at: Millis) -> i64 {
    use chrono::{Offset, TimeZone};
    match ccswitch::config::load(config_dir) {
        Ok(cfg) => {
            let tz = cfg.ivr.time_zone();
            let t =
                chrono::DateTime::from_timestamp_millis(i64::try_from(at.as_u64()).unwrap_or(0))
                    .unwrap_or_default()
                    .naive_utc();
            i64::from(tz.offset_from_utc_datetime(&t).fix().local_minus_utc()) * 1000
        }
        Err(e) => {
            eprintln!("ccswitch: note: intervals are UTC: the IVR time zone is not known ({e})");
            0
        }
    }
}

async fn report_surveys(o: IntervalOpts, by: Option<ByArg>, unmask: bool) -> anyhow::Result<()> {
    check_unmask(&o.config, unmask)?;
    let now = ccswitch::clock::Clock::new().now();
    let buckets = Buckets {
        interval: interval(o.interval),
        utc_offset_ms: ivr_utc_offset_ms(&o.config, o.since.unwrap_or(now)),
    };
    let by = match by {
        None => SurveyGroup::All,
        Some(ByArg::Queue) => SurveyGroup::Queue,
        Some(ByArg::Agent) => SurveyGroup::Agent,
    };
    let store = open_store(&o.config, o.database).await?;
    let range = Range {
        since: o.since,
        until: o.until,
    };
    let rows = store.survey_stats(range, buckets, by, now).await?;
    print!(
        "{}",
        report::render_surveys(&rows, buckets, by, report_format(o.format))
    );
    Ok(())
}

async fn tasks_list(
    config_dir: PathBuf,
    database: Option<String>,
    filter: TaskFilter,
    format: Format,
    unmask: bool,
) -> anyhow::Result<()> {
    let unmask = check_unmask(&config_dir, unmask)?;
    let store = open_store(&config_dir, database).await?;
    let tasks = store.list_follow_up_tasks(&filter).await?;
    let now = ccswitch::clock::Clock::new().now();
    print!(
        "{}",
        report::render_tasks(&tasks, now, unmask, report_format(format))
    );
    Ok(())
}

async fn tasks_close(
    config_dir: PathBuf,
    database: Option<String>,
    id: i64,
    note: String,
) -> anyhow::Result<()> {
    let note = validate_note(&note).map_err(|e| anyhow::anyhow!("task {id} not closed: {e}"))?;
    let store = open_store(&config_dir, database).await?;
    let now = ccswitch::clock::Clock::new().now();
    match store.close_follow_up_task(id, now, &note).await? {
        CloseOutcome::Closed => {
            println!("task {id} closed");
            Ok(())
        }
        CloseOutcome::Unknown => anyhow::bail!("task {id} not closed: there is no task {id}"),
        CloseOutcome::AlreadyClosed { at } => anyhow::bail!(
            "task {id} not closed: it was closed already at {}",
            report::rfc3339(at)
        ),
    }
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
    let resolution = resolution_by_key(&store, ResolutionGroup::Queue, range, iv).await?;
    print!(
        "{}",
        report::render_queues(
            &queues,
            &system,
            &targets,
            &resolution,
            iv,
            report_format(o.format)
        )
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
    let range = Range {
        since: o.since,
        until: Some(until),
    };
    let resolution = resolution_by_key(&store, ResolutionGroup::Agent, range, iv).await?;
    print!(
        "{}",
        report::render_agents(&agents, &resolution, iv, report_format(o.format))
    );
    Ok(())
}

/// Disposition counts, disposition FCR and repeat-call proxy per (queue or agent, bucket).
async fn resolution_by_key(
    store: &Store,
    group: ResolutionGroup,
    range: Range,
    iv: Interval,
) -> anyhow::Result<report::ResolutionByKey> {
    Ok(store
        .resolution_stats(group, range, iv)
        .await?
        .into_iter()
        .map(|(name, bucket, s)| ((name, bucket), s))
        .collect())
}
