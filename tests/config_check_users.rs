//! `users.toml` (issue 9): the shipped file loads; broken copies are refused with the file,
//! the key and the reason; the demo password is refused on a reachable HTTP address.

#![allow(clippy::disallowed_methods)] // a bounded wait for the refusing `run`

use ccswitch::auth::Role;
use ccswitch::config::{self, ConfigError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

const DEMO_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$TGu/6WRtYo2yCp2Nv1Yi6A$\
                         pHMDOsc1sutZBijGKyclnBbS+Wjgwoo2yfqENl5+YAk";

/// users.toml with `from` replaced by `to` is refused naming `key` and `reason_part`.
fn refused(from: &str, to: &str, key: &str, reason_part: &str) -> ConfigError {
    let (_tmp, dir) = copy_with("users.toml", |t| replace_once(t, from, to));
    let err = config::load(&dir).expect_err("the edited users.toml is refused");
    assert_eq!(
        err.file.file_name().and_then(|f| f.to_str()),
        Some("users.toml"),
        "{err}"
    );
    assert_eq!(err.key, key, "{err}");
    assert!(err.reason.contains(reason_part), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("users.toml: {}: {}", err.key, err.reason)),
        "{err}"
    );
    err
}

#[test]
fn shipped_users_file_has_one_demo_admin_and_the_documented_defaults() {
    let cfg = config::load(&shipped()).unwrap_or_else(|e| panic!("{e}"));
    let users = &cfg.users;
    assert_eq!(users.users.len(), 1);
    let admin = users.get("admin").expect("admin");
    assert_eq!(admin.role, Role::Admin);
    assert_eq!(admin.password_hash, DEMO_HASH);
    assert_eq!(users.demo_users(), vec![(0, "admin")]);
    assert!(ccswitch::auth::password::verify_password(
        DEMO_HASH,
        config::users::DEMO_PASSWORD
    ));
    assert_eq!(users.sessions.idle_timeout_ms, 1_800_000);
    assert_eq!(users.sessions.max_age_ms, 43_200_000);
    assert_eq!(users.sessions.max_sessions, 10_000);
    assert_eq!(users.throttle.free_failures, 3);
    assert_eq!(users.throttle.block_after, 10);
    assert_eq!(users.throttle.block_ms, 900_000);
    assert_eq!(users.throttle.max_sources, 10_000);
    // Loopback HTTP (the shipped http.listen): the demo admin is no exposure.
    assert!(config::users::exposed_demo_users(&cfg).is_empty());
}

#[test]
fn users_file_is_optional() {
    let (_tmp, dir) = copy_with("users.toml", |t| t.to_string());
    std::fs::remove_file(dir.join("users.toml")).expect("rm");
    let cfg = config::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.users.is_empty());
}

#[test]
fn plaintext_and_foreign_hashes_are_refused() {
    let e = refused(
        DEMO_HASH,
        "hunter2-secret",
        "users[0].password_hash",
        "plaintext passwords are refused",
    );
    assert!(!e.to_string().contains("hunter2"), "never echoed: {e}");
    assert!(e.reason.contains("ccswitch user hash-password"), "{e}");
    refused(
        DEMO_HASH,
        "$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Z0n2ANHvS/8cA1ONwAkUeUKLpvDNdgwDCDH1sCgKcJs",
        "users[0].password_hash",
        "only argon2id",
    );
    refused(
        DEMO_HASH,
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        "users[0].password_hash",
        "user `admin`",
    );
    refused(
        "m=19456,t=2,p=1",
        "m=1024,t=1,p=1",
        "users[0].password_hash",
        "too weak",
    );
}

#[test]
fn unknown_keys_roles_and_duplicates_are_refused() {
    let e = refused(
        "role = \"admin\"",
        "role = \"admin\"\npasword = \"x\"",
        "users[0].pasword",
        "unknown field `pasword`",
    );
    assert!(e.reason.contains("line"), "{e}");
    refused(
        "role = \"admin\"",
        "role = \"root\"",
        "users[0].role",
        "unknown variant `root`",
    );
    // Agents sign in to /agent with their extension and SIP password, never as users.
    refused(
        "role = \"admin\"",
        "role = \"agent\"",
        "users[0].role",
        "agents sign in to /agent",
    );
    refused(
        "idle_timeout_s = 1800",
        "idle_timeout_s = 1800\nidle_timeout = 5",
        "sessions.idle_timeout",
        "unknown field `idle_timeout`",
    );
    refused(
        "[[users]]\nname = \"admin\"",
        &format!(
            "[[users]]\nname = \"admin\"\nrole = \"viewer\"\npassword_hash = \"{DEMO_HASH}\"\n\n[[users]]\nname = \"admin\""
        ),
        "users[1].name",
        "listed twice",
    );
    refused(
        "name = \"admin\"",
        "name = \"ad min\"",
        "users[0].name",
        "only letters",
    );
}

#[test]
fn session_and_sign_in_settings_are_checked() {
    refused(
        "max_age_s = 43200",
        "max_age_s = 60",
        "sessions.max_age_s",
        "at least sessions.idle_timeout_s (1800)",
    );
    refused(
        "idle_timeout_s = 1800",
        "idle_timeout_s = 10",
        "sessions.idle_timeout_s",
        "between 60 and 86400",
    );
    refused(
        "block_after = 10",
        "block_after = 3",
        "sign_in.block_after",
        "above sign_in.free_failures (3)",
    );
    refused(
        "block_s = 900",
        "block_s = 0",
        "sign_in.block_s",
        "between 1 and 86400",
    );
}

fn check_config(dir: &Path) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ccswitch"))
        .args(["check-config", "--config"])
        .arg(dir)
        .output()
        .expect("run ccswitch check-config");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

const REACHABLE_HTTP: (&str, &str) = ("listen = \"127.0.0.1:8080\"", "listen = \"0.0.0.0:8080\"");

#[test]
fn check_config_reports_users_toml_faults_and_demo_passwords_on_a_reachable_address() {
    let (_tmp, dir) = copy_with("users.toml", |t| {
        replace_once(t, DEMO_HASH, "plain-text-pw")
    });
    let (ok, stdout, stderr) = check_config(&dir);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("users.toml: users[0].password_hash: user `admin`: the password hash is not a password hash"),
        "{stderr}"
    );

    let (_tmp, dir) = copy_with("ccswitch.toml", |t| {
        replace_once(t, REACHABLE_HTTP.0, REACHABLE_HTTP.1)
    });
    let (ok, stdout, stderr) = check_config(&dir);
    assert!(ok, "a warning, not an error: {stdout}{stderr}");
    assert!(
        stderr.contains("warning: ")
            && stderr.contains("users.toml: users[0].password_hash: user admin still has the demo password `ccswitch-demo` while HTTP listens on 0.0.0.0:8080"),
        "{stderr}"
    );

    let (_tmp, dir) = copy_with("ccswitch.toml", |t| t.to_string());
    let (ok, _, stderr) = check_config(&dir);
    assert!(ok);
    assert!(!stderr.contains("ccswitch-demo"), "loopback HTTP: {stderr}");
}

/// `run` refuses the demo admin on a reachable HTTP address before binding anything.
#[test]
fn run_refuses_the_demo_admin_on_a_reachable_http_address() {
    let (_tmp, dir) = copy_with("ccswitch.toml", |t| t.to_string());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ccswitch"))
        .args(["run", "--config"])
        .arg(&dir)
        .args([
            "--sip-listen",
            "127.0.0.1:0",
            "--http-listen",
            "0.0.0.0:0",
            "--database",
            "sqlite::memory:",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ccswitch run");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ccswitch run did not refuse the demo admin");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    assert!(!status.success());
    assert!(
        stderr.contains("user admin still has the demo password"),
        "{stderr}"
    );
}
