//! `wallboard.toml` (issue 9): the shipped file loads and equals the METRICS.md defaults;
//! the file is optional; broken copies are refused with the file, the key and the reason,
//! by `config::load` and by `ccswitch check-config`.

use ccswitch::config::{self, wallboard::Wallboard, ConfigError};
use std::path::{Path, PathBuf};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// The whole shipped folder in a temp dir (prompts linked beside it), with `file` edited.
fn copy_with(file: &str, edit: impl Fn(&str) -> String) -> (tempfile::TempDir, PathBuf) {
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
    (tmp, dir)
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "fixture text `{from}` not found");
    text.replacen(from, to, 1)
}

fn refused(from: &str, to: &str, key: &str, reason_part: &str) -> ConfigError {
    let (_tmp, dir) = copy_with("wallboard.toml", |t| replace_once(t, from, to));
    let err = config::load(&dir).expect_err("the edited wallboard.toml is refused");
    assert_eq!(
        err.file.file_name().and_then(|f| f.to_str()),
        Some("wallboard.toml"),
        "{err}"
    );
    assert_eq!(err.key, key, "{err}");
    assert!(err.reason.contains(reason_part), "{err}");
    err
}

#[test]
fn shipped_wallboard_file_holds_the_metrics_md_standards() {
    let cfg = config::load(&shipped()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(*cfg.wallboard, Wallboard::default());
    let t = &cfg.wallboard.targets;
    assert_eq!(
        (
            t.service_level_pct,
            t.service_level_secs,
            t.frt_secs,
            t.aht_secs
        ),
        (80.0, 20, 20, 300)
    );
    assert_eq!((t.containment_pct, t.three_ring_pct), (60.0, 100.0));
    assert_eq!((t.csat_pct, t.response_rate_pct), (90.0, 80.0));
    assert_eq!(cfg.wallboard.alerts.not_ready_max_secs, 900);
}

#[test]
fn wallboard_file_is_optional() {
    let (_tmp, dir) = copy_with("wallboard.toml", |t| t.to_string());
    std::fs::remove_file(dir.join("wallboard.toml")).expect("rm");
    let cfg = config::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(*cfg.wallboard, Wallboard::default());
}

#[test]
fn bad_values_and_unknown_keys_are_refused() {
    refused(
        "service_level_pct = 80.0",
        "service_level_pct = 180.0",
        "targets.service_level_pct",
        "percentage",
    );
    refused(
        "frt_secs = 20",
        "frt_secs = 0",
        "targets.frt_secs",
        "between 1 and 3600",
    );
    refused(
        "not_ready_max_secs = 900",
        "not_ready_max_secs = 10",
        "alerts.not_ready_max_secs",
        "between 60 and 86400",
    );
    let e = refused(
        "aht_secs = 300",
        "aht_secs = 300\naht_sec = 1",
        "targets.aht_sec",
        "unknown field `aht_sec`",
    );
    assert!(e.reason.contains("line"), "{e}");
    refused(
        "frt_secs = 20",
        "frt_secs = \"twenty\"",
        "targets.frt_secs",
        "invalid type",
    );
}

#[test]
fn check_config_names_the_wallboard_fault() {
    let (_tmp, dir) = copy_with("wallboard.toml", |t| {
        replace_once(t, "csat_pct = 90.0", "csat_pct = -1.0")
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ccswitch"))
        .args(["check-config", "--config"])
        .arg(&dir)
        .output()
        .expect("run ccswitch check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("wallboard.toml: targets.csat_pct: must be a percentage between 0 and 100"),
        "{stderr}"
    );
}
