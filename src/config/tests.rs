use super::*;

#[test]
fn sqlite_relative_paths_are_resolved_against_the_base() {
    let base = Path::new("/srv/cc");
    assert_eq!(
        resolve_sqlite_url("sqlite:ccswitch.db", base),
        "sqlite:/srv/cc/ccswitch.db"
    );
    assert_eq!(
        resolve_sqlite_url("sqlite://data/x.db?mode=rwc", base),
        "sqlite:/srv/cc/data/x.db?mode=rwc"
    );
    assert_eq!(
        resolve_sqlite_url("sqlite:/var/x.db", base),
        "sqlite:/var/x.db"
    );
    assert_eq!(
        resolve_sqlite_url("sqlite::memory:", base),
        "sqlite::memory:"
    );
    assert_eq!(
        resolve_sqlite_url("postgres://u@h/db", base),
        "postgres://u@h/db"
    );
}

#[test]
fn language_codes() {
    assert!(is_language_code("en"));
    assert!(is_language_code("zh-Hans"));
    assert!(!is_language_code("EN"));
    assert!(!is_language_code("../x"));
    assert!(!is_language_code(""));
}

fn parse_main(text: &str) -> Result<MainFile, ConfigError> {
    let m: MainFile = toml_error::parse(Path::new("ccswitch.toml"), text)?;
    check_main(&m).map_err(|(k, r)| ConfigError::new(Path::new("ccswitch.toml"), k, r))?;
    Ok(m)
}

#[test]
fn empty_main_file_gives_the_defaults() {
    let m = parse_main("").unwrap();
    assert_eq!(m.sip.listen.to_string(), "0.0.0.0:5060");
    assert_eq!((m.sip.t1_ms, m.sip.t2_ms, m.sip.t4_ms), (500, 4000, 5000));
    assert_eq!(m.answer, AnswerSection::default());
    assert_eq!((m.rtp.port_min, m.rtp.port_max), (20000, 29999));
    assert_eq!(m.rtp.inactivity_ms, 30_000);
    assert_eq!(m.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(m.database.url, "sqlite:ccswitch.db");
    assert_eq!(m.prompts.languages, vec!["en", "zh"]);
    assert_eq!(m.switch.max_calls, 5000);
    assert_eq!(m.switch.company, "Example Co");
}

#[test]
fn rtp_events_from_the_same_host_default_on_and_take_only_a_bool() {
    assert!(parse_main("").unwrap().rtp.accept_events_from_same_host);
    let off = parse_main("[rtp]\naccept_events_from_same_host = false\n").unwrap();
    assert!(!off.rtp.accept_events_from_same_host);
    let e = parse_main("[rtp]\naccept_events_from_same_host = \"yes\"\n").unwrap_err();
    assert_eq!(e.key, "rtp.accept_events_from_same_host", "{e}");
    assert!(e.reason.contains("line 2"), "{e}");
}

#[test]
fn four_rings_break_the_three_ring_rule() {
    for rings in ["4", "300", "-1"] {
        let e = parse_main(&format!("[answer]\nanswer_after_rings = {rings}\n")).unwrap_err();
        assert_eq!(e.key, "answer.answer_after_rings");
        assert!(e.reason.contains("three-ring"), "{e}");
        assert!(e.reason.contains("line 2"), "{e}");
    }
    assert_eq!(
        parse_main("[answer]\nanswer_after_rings = 0\n")
            .unwrap()
            .answer
            .answer_after_rings,
        0
    );
}

#[test]
fn port_range_must_be_ordered() {
    let e = parse_main("[rtp]\nport_min = 30000\nport_max = 20000\n").unwrap_err();
    assert_eq!(e.key, "rtp.port_min");
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let e = parse_main("[sip]\nlisten = \"0.0.0.0:5060\"\nt9_ms = 3\n").unwrap_err();
    assert_eq!(e.key, "sip.t9_ms");
    assert!(e.reason.contains("unknown field"), "{e}");
    assert!(e.reason.contains("line 3"), "{e}");
}

#[test]
fn bad_address_is_named() {
    let e = parse_main("[http]\nlisten = \"localhost\"\n").unwrap_err();
    assert_eq!(e.key, "http.listen");
}

#[test]
fn shipped_config_loads_its_queues() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let cfg = load(&dir).unwrap();
    let names: Vec<&str> = cfg.queues.names().collect();
    assert_eq!(names, vec!["after_sales", "complaints", "tech"]);
}

#[test]
fn sip_tcp_limits_default_and_are_checked() {
    let m = parse_main("").unwrap();
    assert_eq!(m.sip.tcp, SipTcpSection::default());
    assert_eq!(m.sip.tcp.to_limits().idle_timeout_ms, 120_000);
    let m = parse_main("[sip.tcp]\nidle_timeout_s = 5\nmax_message_bytes = 4096\n").unwrap();
    assert_eq!(
        (m.sip.tcp.idle_timeout_s, m.sip.tcp.max_message_bytes),
        (5, 4096)
    );
    for (text, key) in [
        ("message_timeout_ms = 0", "sip.tcp.message_timeout_ms"),
        ("idle_timeout_s = 0", "sip.tcp.idle_timeout_s"),
        ("max_connections = 0", "sip.tcp.max_connections"),
        (
            "max_connections = 10\nmax_connections_per_source = 11",
            "sip.tcp.max_connections_per_source",
        ),
        ("max_message_bytes = 100", "sip.tcp.max_message_bytes"),
        ("idle_timeout_ms = 5", "sip.tcp.idle_timeout_ms"),
        ("max_connections = -1", "sip.tcp.max_connections"),
    ] {
        let e = parse_main(&format!("[sip.tcp]\n{text}\n")).unwrap_err();
        assert_eq!(e.key, key, "{e}");
    }
}

#[test]
fn sip_websocket_defaults_and_checks() {
    let m = parse_main("").unwrap();
    assert_eq!(m.sip.websocket, SipWebSocketSection::default());
    assert!(!m.sip.websocket.enabled);
    let m = parse_main(
        "[sip.websocket]\nenabled = true\nallowed_origins = [\"https://agents.example.com\", \"*\"]\n",
    )
    .unwrap();
    assert!(m.sip.websocket.enabled);
    assert_eq!(m.sip.websocket.to_limits().allowed_origins.len(), 2);
    assert_eq!(m.sip.websocket.to_limits().idle_timeout_ms, 60_000);
    for (text, key) in [
        (
            "allowed_origins = [\"agents.example.com\"]",
            "sip.websocket.allowed_origins",
        ),
        ("max_message_bytes = 10", "sip.websocket.max_message_bytes"),
        ("max_connections = 0", "sip.websocket.max_connections"),
        (
            "max_connections = 10\nmax_connections_per_source = 11",
            "sip.websocket.max_connections_per_source",
        ),
        ("idle_timeout_s = 0", "sip.websocket.idle_timeout_s"),
        ("enable = true", "sip.websocket.enable"),
    ] {
        let e = parse_main(&format!("[sip.websocket]\n{text}\n")).unwrap_err();
        assert_eq!(e.key, key, "{e}");
    }
}

#[test]
fn default_language_must_be_listed() {
    let e = parse_main("[prompts]\ndefault_language = \"fr\"\n").unwrap_err();
    assert_eq!(e.key, "prompts.default_language");
}
