//! The shipped `config/` loads; broken copies are refused with the file, the key and the
//! reason (what `ccswitch check-config` prints).

use ccswitch::config::{self, ConfigError};
use std::path::{Path, PathBuf};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// Copies the shipped config into a temp dir, lets `edit` change one file, and loads it.
fn load_edited(
    file: &str,
    edit: impl Fn(&str) -> String,
) -> (tempfile::TempDir, Result<config::Config, ConfigError>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("config");
    std::fs::create_dir(&dir).expect("mkdir");
    for name in ["ccswitch.toml", "ivr.toml", "orders.csv"] {
        let text = std::fs::read_to_string(shipped().join(name)).expect("shipped file");
        let text = if name == file { edit(&text) } else { text };
        std::fs::write(dir.join(name), text).expect("write");
    }
    let result = config::load(&dir);
    (tmp, result)
}

fn refused(file: &str, edit: impl Fn(&str) -> String) -> ConfigError {
    let (_tmp, result) = load_edited(file, edit);
    let err = result.expect_err("the edited config is refused");
    let shown = err.to_string();
    assert!(
        shown.contains(&err.key) && shown.contains(&err.reason),
        "{shown}"
    );
    err
}

fn assert_error(err: &ConfigError, file: &str, key: &str, reason_part: &str) {
    assert_eq!(
        err.file.file_name().and_then(|f| f.to_str()),
        Some(file),
        "{err}"
    );
    assert_eq!(err.key, key, "{err}");
    assert!(err.reason.contains(reason_part), "{err}");
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "fixture text `{from}` not found");
    text.replacen(from, to, 1)
}

#[test]
fn shipped_config_loads_with_the_documented_values() {
    let cfg = config::load(&shipped()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.answer.answer_after_rings, 1);
    assert_eq!(cfg.answer.ring_cycle_ms, 6000);
    assert_eq!(cfg.sip.listen.to_string(), "0.0.0.0:5060");
    assert_eq!(cfg.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!((cfg.rtp.port_min, cfg.rtp.port_max), (20000, 29999));
    assert_eq!(cfg.prompts.default_language, "en");
    assert_eq!(cfg.prompts.languages, vec!["en", "zh"]);
    // Relative paths land next to config/, in the project root.
    let root = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).expect("root");
    assert_eq!(cfg.prompts.dir, root.join("prompts"));
    assert_eq!(
        cfg.database.url,
        format!("sqlite:{}", root.join("ccswitch.db").display())
    );
    assert_eq!(cfg.ivr.entry_for("anything"), "greeting");
    assert_eq!(cfg.ivr.entry_for(""), "greeting");
    assert_eq!(cfg.ivr.entry_for("4008005"), "order_number");
}

#[test]
fn shipped_main_file_states_the_answer_policy_literally() {
    let text = std::fs::read_to_string(shipped().join("ccswitch.toml")).expect("read");
    assert!(text.lines().any(|l| l == "answer_after_rings = 1"));
}

#[test]
fn shipped_ivr_uses_only_the_recorded_prompts_and_offers_no_agent() {
    let known: Vec<String> = [
        "greeting",
        "language_menu",
        "main_menu",
        "hours",
        "closed",
        "address",
        "returns",
        "complaints",
        "order_prompt",
        "order_found_prefix",
        "order_status_shipped",
        "order_status_processing",
        "order_status_delivered",
        "order_not_found",
        "anything_else",
        "invalid",
        "no_input",
        "goodbye",
        "please_hold",
        "sorry_wait",
        "hold_music",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain((0..10).map(|d| format!("digit_{d}")))
    .collect();
    let cfg = config::load(&shipped()).expect("loads");
    for id in cfg.ivr.prompt_ids() {
        assert!(known.contains(&id), "prompt `{id}` has no recording");
    }
    let kinds: Vec<&str> = cfg.ivr.nodes().map(|(_, n)| n.kind()).collect();
    for kind in [
        "menu",
        "play",
        "collect",
        "language",
        "office_hours",
        "lookup",
        "hangup",
    ] {
        assert!(
            kinds.contains(&kind),
            "the shipped graph shows a {kind} node"
        );
    }
    assert!(
        !cfg.ivr.prompt_ids().contains("please_hold"),
        "no queue yet"
    );
}

#[test]
fn dangling_edge() {
    let e = refused("ivr.toml", |t| {
        replace_once(t, "\"5\" = \"order_number\"", "\"5\" = \"agents\"")
    });
    assert_error(
        &e,
        "ivr.toml",
        "nodes.main_menu.options.5",
        "`agents` does not exist",
    );
}

#[test]
fn unreachable_node() {
    let e = refused("ivr.toml", |t| {
        format!("{t}\n[nodes.orphan]\nkind = \"hangup\"\n")
    });
    assert_error(&e, "ivr.toml", "nodes.orphan", "unreachable");
}

#[test]
fn missing_prompt() {
    let e = refused("ivr.toml", |t| {
        replace_once(
            t,
            "kind = \"play\"\nprompt = \"hours\"\n",
            "kind = \"play\"\n",
        )
    });
    assert_error(&e, "ivr.toml", "nodes.hours.prompt", "missing");
}

#[test]
fn four_rings_are_refused() {
    let e = refused("ccswitch.toml", |t| {
        replace_once(t, "answer_after_rings = 1", "answer_after_rings = 4")
    });
    assert_error(
        &e,
        "ccswitch.toml",
        "answer.answer_after_rings",
        "three-ring rule",
    );
}

#[test]
fn rtp_port_range_upside_down() {
    let e = refused("ccswitch.toml", |t| {
        replace_once(t, "port_min = 20000", "port_min = 40000")
    });
    assert_error(&e, "ccswitch.toml", "rtp.port_min", "above rtp.port_max");
}

#[test]
fn rtp_events_from_the_same_host_is_shipped_on_and_must_be_a_bool() {
    let cfg = config::load(&shipped()).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.rtp.accept_events_from_same_host);
    let e = refused("ccswitch.toml", |t| {
        replace_once(
            t,
            "accept_events_from_same_host = true",
            "accept_events_from_same_host = 1",
        )
    });
    assert_error(
        &e,
        "ccswitch.toml",
        "rtp.accept_events_from_same_host",
        "bool",
    );
}

#[test]
fn bad_toml_syntax_names_the_line() {
    let e = refused("ivr.toml", |t| {
        replace_once(t, "retries = 0\n", "retries = = 0\n")
    });
    let text = std::fs::read_to_string(shipped().join("ivr.toml")).expect("read");
    let line = text
        .lines()
        .position(|l| l == "retries = 0")
        .expect("fixture line")
        + 1;
    assert_error(&e, "ivr.toml", &e.key.clone(), "TOML syntax");
    assert!(e.key.starts_with(&format!("line {line},")), "{e}");
}

#[test]
fn unknown_key_in_main_file() {
    let e = refused("ccswitch.toml", |t| {
        replace_once(t, "t1_ms = 500", "t1 = 500")
    });
    assert_error(&e, "ccswitch.toml", "sip.t1", "unknown field");
}

#[test]
fn sip_tcp_limits_are_documented_and_checked() {
    let cfg = config::load(&shipped()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.sip.tcp, config::SipTcpSection::default());
    let e = refused("ccswitch.toml", |t| {
        replace_once(
            t,
            "max_connections_per_source = 128",
            "max_connections_per_source = 0",
        )
    });
    assert_error(
        &e,
        "ccswitch.toml",
        "sip.tcp.max_connections_per_source",
        "between 1 and",
    );
    let e = refused("ccswitch.toml", |t| {
        replace_once(t, "idle_timeout_s = 120", "idle_timeout = 120")
    });
    assert_error(&e, "ccswitch.toml", "sip.tcp.idle_timeout", "unknown field");
}

#[test]
fn webrtc_section_is_documented_and_checked() {
    let cfg = config::load(&shipped()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.webrtc, config::WebRtcSection::default());
    let e = refused("ccswitch.toml", |t| {
        replace_once(t, "port_min = 61000", "port_min = 25000")
    });
    assert_error(&e, "ccswitch.toml", "webrtc.port_min", "overlaps [rtp]");
    let e = refused("ccswitch.toml", |t| {
        replace_once(
            t,
            "port_max = 61999\n",
            "port_max = 61999\n[[webrtc.ice_servers]]\nurls = [\"turn:turn.example.com\"]\n",
        )
    });
    assert_error(&e, "ccswitch.toml", "webrtc.ice_servers", "username");
    let e = refused("ccswitch.toml", |t| {
        replace_once(t, "# host_ip = \"192.0.2.10\"", "host_ip = \"0.0.0.0\"")
    });
    assert_error(&e, "ccswitch.toml", "webrtc.host_ip", "host candidate");
}

#[test]
fn unknown_key_in_a_node() {
    let e = refused("ivr.toml", |t| {
        replace_once(
            t,
            "resolves = true\nnext = \"anything_else\"",
            "resolve = true\nnext = \"anything_else\"",
        )
    });
    assert_error(&e, "ivr.toml", "nodes.hours.resolve", "unknown field");
}

#[test]
fn bad_time_zone() {
    let e = refused("ivr.toml", |t| {
        replace_once(
            t,
            "\ntime_zone = \"Asia/Shanghai\"",
            "\ntime_zone = \"Asia/Atlantis\"",
        )
    });
    assert_error(&e, "ivr.toml", "time_zone", "Asia/Atlantis");
}

#[test]
fn bad_office_hours() {
    let e = refused("ivr.toml", |t| {
        replace_once(t, "sat = \"10:00-16:00\"", "sat = \"10-16\"")
    });
    assert_error(&e, "ivr.toml", "nodes.office_hours.hours.sat", "10-16");
}

#[test]
fn csv_status_without_prompt() {
    let e = refused("orders.csv", |t| {
        replace_once(t, "12346,processing", "12346,lost")
    });
    assert_error(&e, "orders.csv", "line 3", "status `lost`");
}

#[test]
fn csv_row_with_wrong_columns() {
    let e = refused("orders.csv", |t| format!("{t}99999\n"));
    assert_error(
        &e,
        "orders.csv",
        &format!("line {}", t_lines() + 1),
        "2 comma-separated columns",
    );
}

fn t_lines() -> usize {
    std::fs::read_to_string(shipped().join("orders.csv"))
        .expect("read")
        .lines()
        .count()
}

#[test]
fn missing_table_file() {
    let e = refused("ivr.toml", |t| {
        replace_once(t, "\ntable = \"orders.csv\"", "\ntable = \"nope.csv\"")
    });
    assert_error(&e, "ivr.toml", "nodes.order_lookup.table", "cannot read");
}

#[test]
fn missing_ivr_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        tmp.path().join("ccswitch.toml"),
        std::fs::read_to_string(shipped().join("ccswitch.toml")).expect("read"),
    )
    .expect("write");
    let e = config::load(tmp.path()).expect_err("refused");
    assert_error(&e, "ivr.toml", "", "cannot read");
}

/// `check-config` on a copy of the whole shipped folder (prompts linked), with `edit`
/// applied to ccswitch.toml: (exit success, stdout, stderr).
fn check_config_output(edit: impl Fn(&str) -> String) -> (bool, String, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("config");
    std::fs::create_dir(&dir).expect("mkdir");
    for entry in std::fs::read_dir(shipped())
        .expect("read config/")
        .flatten()
    {
        let to = dir.join(entry.file_name());
        std::fs::copy(entry.path(), &to).expect("copy");
    }
    let main = dir.join("ccswitch.toml");
    let text = std::fs::read_to_string(&main).expect("read");
    std::fs::write(&main, edit(&text)).expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts"),
        tmp.path().join("prompts"),
    )
    .expect("link prompts");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ccswitch"))
        .args(["check-config", "--config"])
        .arg(&dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run ccswitch check-config");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn check_config_warns_about_demo_passwords_on_a_reachable_address() {
    let (ok, stdout, stderr) = check_config_output(|t| t.to_string());
    assert!(ok, "a warning, not an error: {stdout}{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
    for ext in ["1001", "1002", "1003"] {
        assert!(
            stderr.contains(&format!(
                "agent {ext} still has the demo password `demo{ext}`"
            )),
            "{stderr}"
        );
    }
    assert!(
        stderr.contains("warning: ")
            && stderr.contains("agents.toml: agents[0].ha1_md5: ")
            && stderr.contains("0.0.0.0:5060"),
        "{stderr}"
    );
}

#[test]
fn check_config_is_quiet_about_demo_passwords_on_loopback() {
    let (ok, stdout, stderr) = check_config_output(|t| {
        replace_once(
            t,
            "listen = \"0.0.0.0:5060\"",
            "listen = \"127.0.0.1:5060\"",
        )
    });
    assert!(ok, "{stdout}{stderr}");
    assert!(!stderr.contains("demo password"), "{stderr}");
}

#[test]
fn limits_section_is_validated() {
    let cfg = config::load(&shipped()).unwrap_or_else(|e| panic!("{e}"));
    let l = &cfg.limits;
    assert!(l.trusted_sources.is_empty());
    assert_eq!((l.invites_per_s, l.invite_burst), (10, 20));
    assert_eq!((l.registers_per_s, l.register_burst), (20, 100));
    assert_eq!(l.max_calls_per_source, 50);
    assert_eq!((l.ban_multiple, l.ban_ms), (5, 60_000));
    assert_eq!(l.max_tracked_sources, 20_000);

    let (ok, stdout, stderr) = check_config_output(|t| {
        replace_once(
            t,
            "trusted_sources = []",
            "trusted_sources = [\"192.0.2.0/24\", \"2001:db8::7\"]",
        )
    });
    assert!(ok, "{stdout}{stderr}");

    let err = refused("ccswitch.toml", |t| {
        replace_once(
            t,
            "trusted_sources = []",
            "trusted_sources = [\"10.0.0.0/33\"]",
        )
    });
    assert_error(
        &err,
        "ccswitch.toml",
        "limits.trusted_sources[0]",
        "prefix length",
    );
    let err = refused("ccswitch.toml", |t| {
        replace_once(t, "ban_multiple = 5", "ban_multiple = 1")
    });
    assert_error(
        &err,
        "ccswitch.toml",
        "limits.ban_multiple",
        "0 (never ignore a source) or 2 to 1000",
    );
    let err = refused("ccswitch.toml", |t| {
        replace_once(t, "invite_burst = 20", "invite_burst = 0")
    });
    assert_error(
        &err,
        "ccswitch.toml",
        "limits.invite_burst",
        "between 1 and",
    );
    let err = refused("ccswitch.toml", |t| {
        replace_once(
            t,
            "max_tracked_sources = 20000",
            "max_tracked_sources = 20000\nmax_sources = 3",
        )
    });
    assert_error(&err, "ccswitch.toml", "limits.max_sources", "unknown field");
}

/// `sms.toml` with `from` replaced by `to` is refused, naming `key` and `reason_part`.
fn assert_sms_refused(text: &str, (from, to): (&str, &str), key: &str, reason_part: &str) {
    let (_tmp, r) = load_with_sms(Some(replace_once(text, from, to)));
    assert_error(
        &r.expect_err("the edited sms.toml is refused"),
        "sms.toml",
        key,
        reason_part,
    );
}

/// The whole shipped config folder copied, with `sms.toml` replaced (`None`: removed).
fn load_with_sms(sms: Option<String>) -> (tempfile::TempDir, Result<config::Config, ConfigError>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("config");
    copy_shipped_folder(&dir, "sms.toml", |t| {
        sms.clone().unwrap_or_else(|| t.to_string())
    });
    if sms.is_none() {
        std::fs::remove_file(dir.join("sms.toml")).expect("remove sms.toml");
    }
    let result = config::load(&dir);
    (tmp, result)
}

#[test]
fn sms_file_is_optional_documented_and_validated() {
    // Shipped: present but disabled, so no gateway runs.
    let cfg = config::load(&shipped()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.sms.smpp, None);
    // Absent: also no gateway.
    let (_tmp, loaded) = load_with_sms(None);
    assert_eq!(loaded.unwrap_or_else(|e| panic!("{e}")).sms.smpp, None);

    let shipped_sms = std::fs::read_to_string(shipped().join("sms.toml")).unwrap();
    let on = |t: &str| replace_once(t, "\nenabled = false", "\nenabled = true");
    let (_tmp, r) = load_with_sms(Some(on(&shipped_sms)));
    let smpp = r
        .unwrap_or_else(|e| panic!("{e}"))
        .sms
        .smpp
        .expect("enabled");
    assert_eq!(smpp.port, 2775);
    assert_eq!(smpp.window, 10);
    assert_eq!(smpp.max_per_s, 50);
    assert_eq!(
        smpp.throttle_backoff,
        std::time::Duration::from_millis(1000)
    );

    assert_sms_refused(
        &on(&shipped_sms),
        ("window = 10", "window = 0"),
        "smpp.window",
        "1-1000",
    );
    assert_sms_refused(
        &on(&shipped_sms),
        ("# password_file = \"smpp.secret\"", "password_file = \"x\""),
        "smpp.password_env",
        "not both",
    );
    let (_tmp, r) = load_with_sms(Some(replace_once(
        &on(&shipped_sms),
        "max_per_s = 50",
        "max_per_sec = 50",
    )));
    let err = r.unwrap_err();
    assert_eq!(
        err.file.file_name().and_then(|f| f.to_str()),
        Some("sms.toml")
    );
    assert!(err.to_string().contains("max_per_sec"), "{err}");
}

#[test]
fn sms_http_section_is_documented_and_validated() {
    let cfg = config::load(&shipped()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.sms.http, None, "shipped disabled");

    let shipped_sms = std::fs::read_to_string(shipped().join("sms.toml")).unwrap();
    // Only [http]'s `enabled = false` is flipped; [smpp] stays off.
    let on = |t: &str| {
        let (smpp, http) = t.split_once("\n[http]\n").expect("[http] section");
        format!(
            "{smpp}\n[http]\n{}",
            replace_once(http, "\nenabled = false\n", "\nenabled = true\n")
        )
    };
    let (_tmp, r) = load_with_sms(Some(on(&shipped_sms)));
    let cfg = r.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.sms.smpp, None, "enabling [http] leaves [smpp] off");
    let http = cfg.sms.http.expect("enabled");
    assert_eq!(http.url, "https://sms.example.com/v1/messages");
    assert_eq!(
        http.token,
        config::sms::PasswordSource::Env("CCSWITCH_SMS_HTTP_TOKEN".into())
    );
    assert_eq!(http.timeout, std::time::Duration::from_secs(10));
    assert_eq!(http.max_attempts, 4);
    assert_eq!(http.webhook_window, std::time::Duration::from_secs(300));
    assert_eq!(http.webhook_max_body, 16_384);

    assert_sms_refused(
        &on(&shipped_sms),
        ("max_attempts = 4", "max_attempts = 0"),
        "http.max_attempts",
        "1-20",
    );
    assert_sms_refused(
        &on(&shipped_sms),
        (
            "https://sms.example.com/v1/messages",
            "http://sms.example.com/v1/messages",
        ),
        "http.url",
        "must be https",
    );
    assert_sms_refused(
        &on(&shipped_sms),
        ("# token_file = \"sms-http.token\"", "token_file = \"x\""),
        "http.token_env",
        "not both",
    );
}

// ---- survey.toml (issue 8) ------------------------------------------------------------------

/// Copies the whole shipped folder (queues.toml and agents.toml included, which
/// survey.toml is checked against), applies `edit` to survey.toml, and loads it.
fn load_with_survey(
    edit: impl Fn(&str) -> String,
) -> (tempfile::TempDir, Result<config::Config, ConfigError>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("config");
    copy_shipped_folder(&dir, "survey.toml", edit);
    let result = config::load(&dir);
    (tmp, result)
}

fn copy_shipped_folder(dir: &Path, file: &str, edit: impl Fn(&str) -> String) {
    std::fs::create_dir(dir).expect("mkdir");
    for entry in std::fs::read_dir(shipped())
        .expect("read config/")
        .flatten()
    {
        let to = dir.join(entry.file_name());
        std::fs::copy(entry.path(), &to).expect("copy");
    }
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, edit(&text)).expect("write");
}

fn survey_refused(from: &str, to: &str) -> ConfigError {
    let (_tmp, result) = load_with_survey(|t| replace_once(t, from, to));
    let err = result.expect_err("the edited survey.toml is refused");
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("survey.toml: {}: {}", err.key, err.reason)),
        "{shown}"
    );
    err
}

#[test]
fn shipped_survey_file_loads_in_the_ivr_time_zone_with_the_agents_as_internal_numbers() {
    use ccswitch::engine::survey::{
        CallOutcome, CallSummary, SkipReason, SurveyDecision, SurveyLedger,
    };
    let cfg = config::load(&shipped()).unwrap_or_else(|e| panic!("{e}"));
    let survey = cfg
        .survey
        .as_ref()
        .expect("the shipped file enables surveys");
    assert_eq!(survey.time_zone, cfg.ivr.time_zone());
    assert_eq!(survey.time_zone, chrono_tz::Asia::Shanghai);
    assert_eq!(survey.company, "Example Co");
    assert!(survey.complaint_queues.contains("complaints"));
    for agent in &cfg.agents.agents {
        assert!(survey.numbers.extensions.contains(&agent.extension));
    }
    // An agent calling in from its own phone is internal; a Chinese mobile is surveyed.
    let call = |caller: &str| CallSummary {
        call_id: "c".into(),
        caller: caller.into(),
        ended_at: ccswitch::engine::Millis(1_780_000_000_000),
        language: Some("zh".into()),
        outcome: CallOutcome::AgentHandled {
            agent: "1002".into(),
            queue: Some("tech".into()),
            talk_ms: 60_000,
        },
        queues_visited: vec!["tech".into()],
    };
    let ledger = SurveyLedger::default();
    let now = ccswitch::engine::Millis(1_780_000_000_000);
    assert_eq!(
        survey.decide(now, &call("1001"), &ledger),
        SurveyDecision::Skip(SkipReason::Internal)
    );
    let SurveyDecision::Schedule(s) = survey.decide(now, &call("13812345678"), &ledger) else {
        panic!("a mobile caller is surveyed");
    };
    assert_eq!(s.language, "zh");
    assert!(s.text.starts_with("感谢致电Example Co"), "{}", s.text);
}

#[test]
fn survey_file_is_optional_and_can_be_disabled() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("config");
    copy_shipped_folder(&dir, "survey.toml", |t| t.to_string());
    std::fs::remove_file(dir.join("survey.toml")).expect("rm survey.toml");
    assert!(config::load(&dir).expect("loads").survey.is_none());
    let (_tmp, result) = load_with_survey(|t| replace_once(t, "enabled = true", "enabled = false"));
    assert!(result.expect("loads").survey.is_none());
}

#[test]
fn survey_faults_name_file_key_and_reason() {
    let e = survey_refused("{agent} today", "{agent_name} today");
    assert_error(
        &e,
        "survey.toml",
        "templates.en.csat",
        "unknown placeholder `{agent_name}`",
    );
    let e = survey_refused("start = \"21:00\"", "start = \"21h\"");
    assert_error(&e, "survey.toml", "quiet_hours.start", "not a time of day");
    let e = survey_refused("default_region = \"CN\"", "default_region = \"ZZ\"");
    assert_error(&e, "survey.toml", "numbers.default_region", "not a region");
    let e = survey_refused("delay_s = 60", "delay_s = 60\ndelay_ms = 1");
    assert_error(&e, "survey.toml", "delay_ms", "unknown field");
    let e = survey_refused("min_talk_s = 15", "min_talk_s = 15\nlanguages = []");
    assert_error(&e, "survey.toml", "qualify.languages", "unknown field");
    let e = survey_refused(
        "complaint_queues = []",
        "complaint_queues = [\"complaint\"]",
    );
    assert_error(
        &e,
        "survey.toml",
        "follow_up.complaint_queues[0]",
        "queue `complaint` is not defined in queues.toml",
    );
    let e = survey_refused("delay_s = 60", "delay_s = \"60\"");
    assert_error(&e, "survey.toml", "delay_s", "invalid type");
}

#[test]
fn survey_privacy_defaults_and_limits() {
    let cfg = config::load(&shipped()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!cfg.privacy.allow_unmask);
    assert_eq!(cfg.privacy.retention_days, 30);
    assert_eq!(cfg.privacy.retention_ms(), 30 * 86_400_000);
    let (_tmp, result) =
        load_with_survey(|t| replace_once(t, "allow_unmask = false", "allow_unmask = true"));
    assert!(result.expect("loads").privacy.allow_unmask);
    // Privacy applies with surveys off too.
    let (_tmp, result) = load_with_survey(|t| {
        let t = replace_once(t, "enabled = true", "enabled = false");
        replace_once(&t, "retention_days = 30", "retention_days = 7")
    });
    let cfg = result.expect("loads");
    assert!(cfg.survey.is_none());
    assert_eq!(cfg.privacy.retention_days, 7);
    for bad in ["0", "3651"] {
        let e = survey_refused("retention_days = 30", &format!("retention_days = {bad}"));
        assert_error(&e, "survey.toml", "privacy.retention_days", "1 to 3650");
    }
    let e = survey_refused(
        "allow_unmask = false",
        "allow_unmask = false
unmask = true",
    );
    assert_error(&e, "survey.toml", "privacy.unmask", "unknown field");
    let e = survey_refused("allow_unmask = false", "allow_unmask = \"no\"");
    assert_error(&e, "survey.toml", "privacy.allow_unmask", "invalid type");
}

#[test]
fn check_config_reports_a_broken_survey_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("config");
    copy_shipped_folder(&dir, "survey.toml", |t| {
        replace_once(t, "end = \"08:00\"", "end = \"08:00 am\"")
    });
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts"),
        tmp.path().join("prompts"),
    )
    .expect("link prompts");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ccswitch"))
        .args(["check-config", "--config"])
        .arg(&dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run ccswitch check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("survey.toml: quiet_hours.end: `08:00 am` is not a time of day"),
        "{stderr}"
    );
}

/// Copies the shipped folder and applies each (file, from, to) edit once.
fn load_with_edits(
    edits: &[(&str, &str, &str)],
) -> (tempfile::TempDir, Result<config::Config, ConfigError>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("config");
    copy_shipped_folder(&dir, "survey.toml", |t| t.to_string());
    for (file, from, to) in edits {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, replace_once(&text, from, to)).expect("write");
    }
    let result = config::load(&dir);
    (tmp, result)
}

fn complaint_queues(edits: &[(&str, &str, &str)]) -> Vec<String> {
    let (_tmp, result) = load_with_edits(edits);
    let cfg = result.unwrap_or_else(|e| panic!("{e}"));
    let survey = cfg.survey.expect("surveys enabled");
    survey.complaint_queues.iter().cloned().collect()
}

#[test]
fn complaint_queues_come_from_the_queue_flag_plus_the_survey_list() {
    const FLAG: &str = "record = true\ncomplaint = true";
    // Shipped: the `complaints` queue is flagged in queues.toml, survey.toml lists none.
    let cfg = config::load(&shipped()).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.queues.get("complaints").expect("queue").complaint);
    assert!(!cfg.queues.get("tech").expect("queue").complaint);
    assert_eq!(complaint_queues(&[]), vec!["complaints"]);
    // Without the flag, nothing is a complaints queue...
    let unflagged = ("queues.toml", FLAG, "record = true");
    assert!(complaint_queues(&[unflagged]).is_empty());
    // ...unless survey.toml lists it (the older way, still honoured).
    let listed = (
        "survey.toml",
        "complaint_queues = []",
        "complaint_queues = [\"complaints\"]",
    );
    assert_eq!(complaint_queues(&[unflagged, listed]), vec!["complaints"]);
    // Both: the union.
    let tech = (
        "survey.toml",
        "complaint_queues = []",
        "complaint_queues = [\"tech\"]",
    );
    assert_eq!(complaint_queues(&[tech]), vec!["complaints", "tech"]);
    // A flag on another queue counts too.
    let flag_tech = (
        "queues.toml",
        "skill = \"tech\"\n",
        "skill = \"tech\"\ncomplaint = true\n",
    );
    assert_eq!(complaint_queues(&[flag_tech]), vec!["complaints", "tech"]);
}

#[test]
fn complaint_flag_faults_name_file_and_key() {
    let (_tmp, result) = load_with_edits(&[(
        "queues.toml",
        "record = true\ncomplaint = true",
        "record = true\ncomplaint = \"yes\"",
    )]);
    let e = result.expect_err("a string flag is refused");
    assert_error(
        &e,
        "queues.toml",
        "queues.complaints.complaint",
        "invalid type",
    );
    let (_tmp, result) = load_with_edits(&[(
        "queues.toml",
        "[defaults]\n",
        "[defaults]\ncomplaint = true\n",
    )]);
    let e = result.expect_err("not a [defaults] key");
    assert_error(&e, "queues.toml", "defaults.complaint", "unknown field");
    let (_tmp, result) = load_with_edits(&[(
        "survey.toml",
        "complaint_queues = []",
        "complaint_queues = [\"complaints\", \"gripes\"]",
    )]);
    let e = result.expect_err("an unknown queue in the list is refused");
    assert_error(
        &e,
        "survey.toml",
        "follow_up.complaint_queues[1]",
        "queue `gripes` is not defined in queues.toml",
    );
}

#[test]
fn agent_display_ids_are_checked_and_reach_the_survey_texts() {
    // The whole folder: survey.toml reads the display ids from agents.toml.
    let load = |id: &str| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("config");
        copy_shipped_folder(&dir, "agents.toml", |t| {
            replace_once(
                t,
                "name = \"Bob\"",
                &format!("name = \"Bob\"\ndisplay_id = \"{id}\""),
            )
        });
        let result = config::load(&dir);
        (tmp, result)
    };
    for (id, reason) in [
        ("Bob", "agent's name"),
        ("A 07", "not a display id"),
        ("", "not a display id"),
    ] {
        let err = load(id).1.expect_err("refused");
        assert_error(&err, "agents.toml", "agents[1].display_id", reason);
    }
    let (_tmp, cfg) = load("A-07");
    let cfg = cfg.unwrap_or_else(|e| panic!("{e}"));
    let policy = cfg.survey.expect("surveys shipped on");
    assert_eq!(policy.fields("1002", None).agent, "A-07");
    assert_eq!(policy.fields("1001", None).agent, "1001");
}
