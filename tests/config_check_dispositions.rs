//! Disposition codes in `queues.toml` (issue 10) and the disposition prefix in `agents.toml`:
//! the shipped files load with the documented codes; broken copies are refused with the
//! file, the key and the reason (what `ccswitch check-config` prints).

use ccswitch::config::{self, ConfigError};
use std::path::{Path, PathBuf};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// The whole shipped folder in a temp dir (prompts linked beside it), with `file` edited.
fn load_with(
    file: &str,
    edit: impl Fn(&str) -> String,
) -> (tempfile::TempDir, Result<config::Config, ConfigError>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("config");
    std::fs::create_dir(&dir).expect("mkdir");
    for entry in std::fs::read_dir(shipped())
        .expect("read config/")
        .flatten()
    {
        std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
    }
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, edit(&text)).expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts"),
        tmp.path().join("prompts"),
    )
    .expect("link prompts");
    let result = config::load(&dir);
    (tmp, result)
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "fixture text `{from}` not found");
    text.replacen(from, to, 1)
}

/// `file` with `from` replaced by `to` is refused naming `key` and `reason_part`.
fn refused(file: &str, from: &str, to: &str, key: &str, reason_part: &str) {
    let (_tmp, result) = load_with(file, |t| replace_once(t, from, to));
    let err = result.expect_err("the edited file is refused");
    assert_eq!(
        err.file.file_name().and_then(|f| f.to_str()),
        Some(file),
        "{err}"
    );
    assert_eq!(err.key, key, "{err}");
    assert!(err.reason.contains(reason_part), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("{file}: {}: {}", err.key, err.reason)),
        "{err}"
    );
}

const RESOLVED: &str = r#"{ number = 1, name = "resolved", label = { en = "Resolved", zh = "已解决" }, resolved = true },"#;

#[test]
fn shipped_codes_load() {
    let (_tmp, cfg) = load_with("queues.toml", str::to_string);
    let cfg = cfg.expect("shipped config loads");
    let d = &cfg.queues.dispositions;
    let names: Vec<&str> = d.default.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "resolved",
            "follow_up",
            "complaint",
            "wrong_queue",
            "callback_requested",
            "info_only",
            "escalated",
            "dropped",
            "nuisance"
        ]
    );
    let follow_up = d.by_number(Some("tech"), 2).expect("*42 in tech");
    assert_eq!(follow_up.name, "follow_up");
    assert!(follow_up.follow_up && follow_up.opens_task() && !follow_up.resolved);
    assert_eq!(follow_up.label_zh, "需跟进");
    assert!(d.by_name(None, "complaint").unwrap().complaint);
    assert!(d.by_name(None, "resolved").unwrap().resolved);
    assert_eq!(d.follow_up_due_ms, 24 * 3_600_000);
    // The complaints queue has its own list.
    assert_eq!(
        d.by_number(Some("complaints"), 3).unwrap().name,
        "compensation_offered"
    );
    assert!(d.by_name(Some("complaints"), "nuisance").is_none());
    assert_eq!(cfg.agents.feature_codes.disposition, "*4");
    assert_eq!(cfg.agents.feature_codes.disposition_number("*42"), Some(2));
}

#[test]
fn without_the_table_the_shipped_codes_apply_and_an_empty_list_turns_them_off() {
    let (_tmp, cfg) = load_with("queues.toml", |t| {
        let start = t.find("[dispositions]").unwrap();
        let end = t[start..].find("\n]\n").unwrap() + start + 3;
        format!("{}{}", &t[..start], &t[end..])
    });
    let cfg = cfg.expect("loads without [dispositions]");
    assert_eq!(cfg.queues.dispositions.default.len(), 9);
    let (_tmp, cfg) = load_with("queues.toml", |t| {
        let start = t.find("follow_up_due_h = 24\ncodes = [").unwrap();
        let end = t[start..].find("\n]\n").unwrap() + start + 3;
        format!("{}codes = []\n{}", &t[..start], &t[end..])
    });
    let cfg = cfg.expect("loads with codes = []");
    assert!(cfg.queues.dispositions.default.is_empty());
    assert!(cfg.queues.dispositions.by_number(Some("tech"), 1).is_none());
    assert_eq!(
        cfg.queues.dispositions.codes_for(Some("complaints")).len(),
        5
    );
}

#[test]
fn numbers_must_be_1_to_99_and_unique() {
    refused(
        "queues.toml",
        r#"{ number = 4, name = "wrong_queue""#,
        r#"{ number = 100, name = "wrong_queue""#,
        "dispositions.codes[3].number",
        "not 1 to 99",
    );
    refused(
        "queues.toml",
        r#"{ number = 4, name = "wrong_queue""#,
        r#"{ number = 0, name = "wrong_queue""#,
        "dispositions.codes[3].number",
        "not 1 to 99",
    );
    refused(
        "queues.toml",
        r#"{ number = 4, name = "wrong_queue""#,
        r#"{ number = 2, name = "wrong_queue""#,
        "dispositions.codes[3].number",
        "already the number of dispositions.codes[1]",
    );
}

#[test]
fn names_must_be_identifiers_and_unique() {
    refused(
        "queues.toml",
        r#"name = "wrong_queue""#,
        r#"name = "resolved""#,
        "dispositions.codes[3].name",
        "already the name of dispositions.codes[0]",
    );
    refused(
        "queues.toml",
        r#"name = "wrong_queue""#,
        r#"name = "Wrong Queue""#,
        "dispositions.codes[3].name",
        "not a disposition name",
    );
}

#[test]
fn both_labels_are_required() {
    refused(
        "queues.toml",
        r#"label = { en = "Wrong queue", zh = "转错队列" }"#,
        r#"label = { en = "Wrong queue" }"#,
        "dispositions.codes[3].label.zh",
        "needs an en and a zh label",
    );
    refused(
        "queues.toml",
        r#"label = { en = "Wrong queue", zh = "转错队列" }"#,
        r#"label = { en = " ", zh = "转错队列" }"#,
        "dispositions.codes[3].label.en",
        "must not be empty",
    );
}

#[test]
fn queue_lists_are_checked_and_keep_resolved_consistent() {
    refused(
        "queues.toml",
        r#"{ number = 5, name = "wrong_queue", label = { en = "Wrong queue", zh = "转错队列" } },
]"#,
        r#"{ number = 1, name = "wrong_queue", label = { en = "Wrong queue", zh = "转错队列" } },
]"#,
        "queues.complaints.dispositions[4].number",
        "already the number of queues.complaints.dispositions[0]",
    );
    // `resolved` in the complaints list must stay resolved.
    let complaints_resolved = format!("dispositions = [\n  {RESOLVED}");
    refused(
        "queues.toml",
        &complaints_resolved,
        "dispositions = [\n  { number = 1, name = \"resolved\", label = { en = \"Resolved\", zh = \"已解决\" } },",
        "queues.complaints.dispositions[0].resolved",
        "one name must mean the same",
    );
    refused(
        "queues.toml",
        "follow_up_due_h = 24",
        "follow_up_due_h = 0",
        "dispositions.follow_up_due_h",
        "must be 1 to 720",
    );
}

#[test]
fn the_disposition_prefix_is_dialable_and_no_other_code_starts_with_it() {
    refused(
        "agents.toml",
        "disposition = \"*4\"",
        "disposition = \"*2\"",
        "feature_codes.ready",
        "starts with the disposition prefix `*2`",
    );
    refused(
        "agents.toml",
        "disposition = \"*4\"",
        "disposition = \"\"",
        "feature_codes.disposition",
        "not dialable",
    );
    let (_tmp, cfg) = load_with("agents.toml", |t| {
        replace_once(t, "disposition = \"*4\"", "disposition = \"*7\"")
    });
    let cfg = cfg.expect("another prefix loads");
    assert_eq!(
        cfg.agents.feature_codes.disposition_number("*712"),
        Some(12)
    );
    assert_eq!(cfg.agents.feature_codes.disposition_number("*412"), None);
}
