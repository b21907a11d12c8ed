//! `ccswitch user ...`: password hashes for users.toml, and API tokens (create, list,
//! revoke). Part of the binary, not the library.

use ccswitch::auth::{password, token, Role};
use ccswitch::clock::Clock;
use ccswitch::engine::Millis;
use ccswitch::store::audit::AuditEntry;
use ccswitch::store::Store;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum UserCmd {
    /// Reads a password and prints its argon2id hash for `password_hash` in users.toml. At a
    /// terminal it asks twice without echo; otherwise the first line of standard input is
    /// the password. The password itself is never stored.
    HashPassword {
        /// Print a whole `[[users]]` entry for this user name (role viewer: edit it).
        #[arg(long)]
        name: Option<String>,
    },
    /// Creates an API token for an integration and prints it once; only its hash is kept.
    /// Use it as `Authorization: Bearer <token>`.
    Token {
        /// The token's name (shown in the audit log as token:NAME).
        name: String,
        /// viewer, supervisor or admin.
        #[arg(long)]
        role: Role,
        #[arg(long, default_value = "config")]
        config: PathBuf,
        #[arg(long, env = "CCSWITCH_DATABASE_URL")]
        database: Option<String>,
    },
    /// Lists the API tokens: name, role, created, last used (never the token).
    Tokens {
        #[arg(long, default_value = "config")]
        config: PathBuf,
        #[arg(long, env = "CCSWITCH_DATABASE_URL")]
        database: Option<String>,
    },
    /// Revokes the API token NAME at once.
    Revoke {
        name: String,
        #[arg(long, default_value = "config")]
        config: PathBuf,
        #[arg(long, env = "CCSWITCH_DATABASE_URL")]
        database: Option<String>,
    },
}

pub fn run(cmd: UserCmd) -> anyhow::Result<()> {
    match cmd {
        UserCmd::HashPassword { name } => hash_password(name.as_deref()),
        UserCmd::Token {
            name,
            role,
            config,
            database,
        } => crate::runtime()?.block_on(create_token(&name, role, config, database)),
        UserCmd::Tokens { config, database } => {
            crate::runtime()?.block_on(list_tokens(config, database))
        }
        UserCmd::Revoke {
            name,
            config,
            database,
        } => crate::runtime()?.block_on(revoke(&name, config, database)),
    }
}

fn hash_password(name: Option<&str>) -> anyhow::Result<()> {
    if let Some(n) = name {
        token::check_name(n).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    }
    let pw = read_password()?;
    let phc = password::hash_password(&pw).map_err(|e| anyhow::anyhow!(e))?;
    match name {
        None => println!("{phc}"),
        Some(n) => {
            println!("[[users]]\nname = \"{n}\"\nrole = \"viewer\"\npassword_hash = \"{phc}\"")
        }
    }
    Ok(())
}

/// At a terminal: asked twice without echo. Otherwise: the first line of standard input.
fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        let first = prompt_hidden("Password: ")?;
        let again = prompt_hidden("Repeat the password: ")?;
        if first != again {
            anyhow::bail!("the two passwords differ");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let pw = line.strip_suffix('\n').unwrap_or(&line);
    Ok(pw.strip_suffix('\r').unwrap_or(pw).to_string())
}

/// Reads one line from the terminal on standard input with echo off.
fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    use std::io::{BufRead, Write};
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let echo_off = EchoOff::new();
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if !echo_off.active() {
        // With echo off, ECHONL already ended the line.
        eprintln!();
    }
    drop(echo_off);
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Echo is off on standard input while this lives.
struct EchoOff {
    #[cfg(unix)]
    saved: Option<libc::termios>,
}

impl EchoOff {
    fn new() -> EchoOff {
        #[cfg(unix)]
        {
            // SAFETY: tcgetattr/tcsetattr on fd 0 with a zeroed termios that tcgetattr fills.
            unsafe {
                let mut t: libc::termios = std::mem::zeroed();
                if libc::tcgetattr(0, &mut t) != 0 {
                    return EchoOff { saved: None };
                }
                let saved = t;
                t.c_lflag &= !libc::ECHO;
                t.c_lflag |= libc::ECHONL;
                if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                    return EchoOff { saved: None };
                }
                EchoOff { saved: Some(saved) }
            }
        }
        #[cfg(not(unix))]
        EchoOff {}
    }
}

impl EchoOff {
    fn active(&self) -> bool {
        #[cfg(unix)]
        return self.saved.is_some();
        #[cfg(not(unix))]
        false
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(t) = self.saved {
            // SAFETY: restores the settings read in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
        }
    }
}

fn cli_audit(now: Millis, action: &str, target: &str, detail: Option<String>) -> AuditEntry {
    AuditEntry {
        at: now,
        user: "cli".into(),
        source: "cli".into(),
        action: action.into(),
        target: Some(target.into()),
        detail,
    }
}

fn os_user() -> Option<String> {
    std::env::var("USER").ok().map(|u| format!("os user {u}"))
}

async fn create_token(
    name: &str,
    role: Role,
    config: PathBuf,
    database: Option<String>,
) -> anyhow::Result<()> {
    token::check_name(name).map_err(|e| anyhow::anyhow!("NAME: {e}"))?;
    let store: Store = crate::open_store(&config, database).await?;
    let now = Clock::new().now();
    let t = token::new_token();
    store
        .create_api_token(name, role, &token::token_hash(&t), now)
        .await?;
    let detail = Some(match os_user() {
        Some(u) => format!("role {role}, {u}"),
        None => format!("role {role}"),
    });
    store
        .audit(&cli_audit(now, "token.create", name, detail))
        .await?;
    eprintln!(
        "token `{name}` ({role}) created; it is shown once, here, and cannot be shown again:"
    );
    println!("{t}");
    Ok(())
}

fn time(at: Option<Millis>) -> String {
    at.and_then(|t| chrono::DateTime::from_timestamp_millis(t.as_i64()))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "never".into())
}

async fn list_tokens(config: PathBuf, database: Option<String>) -> anyhow::Result<()> {
    let store: Store = crate::open_store(&config, database).await?;
    let tokens = store.api_tokens().await?;
    let w = tokens
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<w$}  {:<10}  {:<20}  LAST USED",
        "NAME", "ROLE", "CREATED"
    );
    for t in &tokens {
        println!(
            "{:<w$}  {:<10}  {:<20}  {}",
            t.name,
            t.role.as_str(),
            time(Some(t.created_at)),
            time(t.last_used_at)
        );
    }
    Ok(())
}

async fn revoke(name: &str, config: PathBuf, database: Option<String>) -> anyhow::Result<()> {
    let store: Store = crate::open_store(&config, database).await?;
    if !store.revoke_api_token(name).await? {
        anyhow::bail!("no token named `{name}` (see `ccswitch user tokens`)");
    }
    let now = Clock::new().now();
    store
        .audit(&cli_audit(now, "token.revoke", name, os_user()))
        .await?;
    eprintln!("token `{name}` revoked");
    Ok(())
}
