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
