//! The HTTP shell of `auth`: sign-in, sign-out and who-am-I under `/api/v1/session`, and the
//! `Caller` / `Authorized<P>` extractors every other API route uses.
//!
//! - `POST /api/v1/session` `{"user","password"}`: sets the cookie `ccswitch_session`
//!   (HttpOnly, SameSite=Strict, Path=/, Max-Age = the session lifetime) and answers
//!   `{user, role, permissions, csrf_token, expires_at}`. The cookie has no `Secure`
//!   attribute because ccswitch serves plain HTTP; behind a TLS-terminating proxy, have the
//!   proxy add it (e.g. nginx `proxy_cookie_flags ccswitch_session secure`).
//! - `GET /api/v1/session`: the caller (session or token) and its permissions.
//! - `DELETE /api/v1/session`: sign-out (needs `X-CSRF-Token`).
//! - `POST /api/v1/session/agent` `{"extension","password"}`: an agent signs in to the agent
//!   desk with their extension and SIP password (checked against agents.toml's HA1, the same
//!   secret their phone registers with), throttled with the user sign-in. The session's role
//!   is `agent`, its user `agent:<extension>`: the live feed and that extension's desk only.
//!
//! Authentication: `Authorization: Bearer <token>` (an API token; exempt from CSRF, since a
//! browser never attaches it by itself), else the session cookie. A cookie-authenticated
//! request with a method other than GET/HEAD/OPTIONS must carry `X-CSRF-Token` equal to the
//! session's token, or gets 403 `csrf-token-invalid`.
//!
//! The client address for throttling and audit is the TCP peer (`ConnectInfo`): serve with
//! `into_make_service_with_connect_info::<SocketAddr>()` (as `api::serve` does).
//! `X-Forwarded-For` is not trusted.

use super::problem::{types, ApiJson, Problem};
use crate::auth::session::{session_hash, Session};
use crate::auth::throttle::FailureOutcome;
use crate::auth::{password, token, Permission, Role, Sessions, SignInThrottle, ThrottleDecision};
use crate::clock::Clock;
use crate::config::users::UsersConfig;
use crate::engine::agents::AgentDirectory;
use crate::engine::Millis;
use crate::store::audit::AuditEntry;
use crate::store::web_sessions::WebSessionRow;
use crate::store::{Store, StoreError};
use axum::extract::{ConnectInfo, FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

pub const SESSION_COOKIE: &str = "ccswitch_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
pub const SESSION_PATH: &str = "/api/v1/session";

/// Metric names (described in `describe_metrics`).
const SIGN_INS: &str = "ccswitch_api_sign_ins_total";
const AUTH_REFUSED: &str = "ccswitch_api_auth_refused_total";
const AUDIT_FAILURES: &str = "ccswitch_audit_write_failures_total";

pub fn describe_metrics() {
    metrics::describe_counter!(
        SIGN_INS,
        "sign-in attempts at POST /api/v1/session by outcome (ok, failed, throttled, blocked)"
    );
    metrics::describe_counter!(
        AUTH_REFUSED,
        "API requests refused by authentication or authorisation, by reason (no_credentials, \
         session, token, csrf, forbidden)"
    );
    metrics::describe_counter!(
        AUDIT_FAILURES,
        "audit log rows the database did not take (the action is logged instead)"
    );
}

/// Shared by every API route that authenticates. Cheap to clone.
#[derive(Clone)]
pub struct AuthState {
    inner: Arc<Inner>,
}

struct Inner {
    users: Arc<UsersConfig>,
    /// agents.toml: who may sign in to the agent desk (extension + SIP password).
    agents: Arc<AgentDirectory>,
    sessions: Mutex<Sessions>,
    throttle: Mutex<SignInThrottle>,
    store: Store,
    clock: Clock,
    /// Password verifications at once (each takes ~19 MiB and tens of ms of CPU): many
    /// sources signing in together queue here instead of exhausting memory.
    verifications: tokio::sync::Semaphore,
    /// `[[webrtc.ice_servers]]`, handed to users whose browser phone needs them.
    ice_servers: Vec<IceServerInfo>,
}

const MAX_CONCURRENT_VERIFICATIONS: usize = 4;

/// Poisoning only means another request panicked mid-update; the maps stay usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AuthState {
    /// Users only: no agent can sign in to the agent desk (see `with_agents`).
    pub fn new(users: Arc<UsersConfig>, store: Store, clock: Clock) -> AuthState {
        AuthState::with_agents(users, Arc::new(AgentDirectory::empty()), store, clock)
    }

    /// Users (users.toml) and agents (agents.toml, for the agent desk).
    pub fn with_agents(
        users: Arc<UsersConfig>,
        agents: Arc<AgentDirectory>,
        store: Store,
        clock: Clock,
    ) -> AuthState {
        AuthState {
            inner: Arc::new(Inner {
                sessions: Mutex::new(Sessions::new(users.sessions)),
                throttle: Mutex::new(SignInThrottle::new(users.throttle)),
                users,
                agents,
                store,
                clock,
                verifications: tokio::sync::Semaphore::new(MAX_CONCURRENT_VERIFICATIONS),
                ice_servers: Vec::new(),
            }),
        }
    }

    /// The STUN/TURN servers (`[[webrtc.ice_servers]]`) the browser phones of the agent desk
    /// and the wallboard use: an agent behind NAT needs them on the browser's side. Set while
    /// building, before the state is shared (else ignored, with an error logged).
    pub fn with_ice_servers(self, servers: Vec<IceServerInfo>) -> AuthState {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.ice_servers = servers;
                AuthState {
                    inner: Arc::new(inner),
                }
            }
            Err(inner) => {
                tracing::error!("ICE servers set after the auth state was shared: ignored");
                AuthState { inner }
            }
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Puts the stored sessions back (call once at startup, before serving): purges expired
    /// and idle rows, and drops sessions whose user is no longer in users.toml (their role
    /// always comes from users.toml). Returns how many sessions were restored.
    pub async fn restore(&self) -> Result<usize, StoreError> {
        let now = self.now();
        let cfg = self.inner.users.sessions;
        let store = &self.inner.store;
        let purged = store
            .delete_expired_web_sessions(
                now,
                Millis(now.as_u64().saturating_sub(cfg.idle_timeout_ms)),
            )
            .await?;
        let rows = store.unexpired_web_sessions(now).await?;
        let mut restored = 0;
        let mut dropped = Vec::new();
        {
            let mut sessions = lock(&self.inner.sessions);
            for row in rows {
                // An agent session comes back while the extension is still in agents.toml.
                let who = match agent_of_user(&row.user) {
                    Some(ext) => self
                        .inner
                        .agents
                        .get(ext)
                        .map(|_| (row.user.clone(), Role::Agent)),
                    None => self
                        .inner
                        .users
                        .get(&row.user)
                        .map(|u| (u.name.clone(), u.role)),
                };
                let Some((user, role)) = who else {
                    dropped.push(row.session_hash);
                    continue;
                };
                let session = Session {
                    user,
                    role,
                    csrf_token: row.csrf_token,
                    created_at: row.created_at,
                    last_seen: row.last_seen,
                    stored_seen: row.last_seen,
                };
                if sessions.restore(&row.session_hash, session, now) {
                    restored += 1;
                } else {
                    dropped.push(row.session_hash);
                }
            }
        }
        for hash in &dropped {
            store.delete_web_session(hash).await?;
        }
        tracing::info!(
            restored,
            dropped = dropped.len(),
            purged,
            "browser sessions restored from the store"
        );
        Ok(restored)
    }

    pub fn now(&self) -> Millis {
        self.inner.clock.now()
    }

    /// Writes an audit row. A database failure is logged and counted and returned, so a
    /// caller that must not act unaudited (recording download) can refuse.
    pub async fn audit(
        &self,
        user: &str,
        source: IpAddr,
        action: &str,
        target: Option<&str>,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        let entry = AuditEntry {
            at: self.now(),
            user: user.to_string(),
            source: source.to_string(),
            action: action.to_string(),
            target: target.map(str::to_string),
            detail: detail.map(str::to_string),
        };
        let r = self.inner.store.audit(&entry).await;
        if let Err(e) = &r {
            metrics::counter!(AUDIT_FAILURES).increment(1);
            tracing::error!(error = %e, ?entry, "audit log write failed");
        }
        r
    }

    /// Audits an action of `caller` (its audit name and address).
    pub async fn audit_caller(
        &self,
        caller: &Caller,
        action: &str,
        target: Option<&str>,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        self.audit(&caller.audit_name(), caller.source, action, target, detail)
            .await
    }
}

/// How a caller authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    Session {
        csrf_token: String,
        expires_at: Millis,
    },
    Token,
}

/// An authenticated API client. As an extractor it authenticates (401 otherwise) and, for a
/// cookie session on a state-changing method, checks the CSRF header (403 otherwise); it
/// checks no permission: use `require` or `Authorized<P>`.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The users.toml user or the API token's name.
    pub name: String,
    pub role: Role,
    pub via: Via,
    /// The TCP peer (unspecified when the server was not given `ConnectInfo`).
    pub source: IpAddr,
}

impl Caller {
    pub fn require(&self, p: Permission) -> Result<(), Problem> {
        if self.role.allows(p) {
            return Ok(());
        }
        metrics::counter!(AUTH_REFUSED, "reason" => "forbidden").increment(1);
        Err(Problem::forbidden(format!(
            "the {} role may not do this: it needs the `{}` permission",
            self.role,
            p.as_str()
        ))
        .with("permission", p.as_str()))
    }

    /// The extension of an agent-desk session (role agent), else None.
    pub fn agent_extension(&self) -> Option<&str> {
        if self.role != Role::Agent {
            return None;
        }
        agent_of_user(&self.name)
    }

    /// May act on agent `extension`: an agent on their own extension, or a role with `p`
    /// (`agent_commands` for state, `call_details` for reading calls). 403 otherwise.
    pub fn require_for_agent(&self, extension: &str, p: Permission) -> Result<(), Problem> {
        match self.agent_extension() {
            Some(own) if own == extension => Ok(()),
            Some(_) => {
                metrics::counter!(AUTH_REFUSED, "reason" => "forbidden").increment(1);
                Err(
                    Problem::forbidden("an agent may act on their own extension only".to_string())
                        .with("permission", p.as_str()),
                )
            }
            None => self.require(p),
        }
    }

    /// The audit log's `user`: the user name, or `token:NAME` for an API token.
    pub fn audit_name(&self) -> String {
        match self.via {
            Via::Session { .. } => self.name.clone(),
            Via::Token => format!("token:{}", self.name),
        }
    }
}

/// The session user name of an agent-desk session: `agent:<extension>`.
pub fn agent_user(extension: &str) -> String {
    format!("{AGENT_USER_PREFIX}{extension}")
}

/// The extension in an agent-desk session's user name. users.toml names cannot contain `:`,
/// so no user is mistaken for an agent.
pub fn agent_of_user(user: &str) -> Option<&str> {
    user.strip_prefix(AGENT_USER_PREFIX)
        .filter(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()))
}

const AGENT_USER_PREFIX: &str = "agent:";

/// The TCP peer of the request.
pub fn source_of(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The value of cookie `name` in the request's Cookie header(s).
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

fn refused(reason: &'static str, detail: &str) -> Problem {
    metrics::counter!(AUTH_REFUSED, "reason" => reason).increment(1);
    Problem::unauthorized(detail)
}

impl<S> FromRequestParts<S> for Caller
where
    AuthState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Caller, Problem> {
        let st = AuthState::from_ref(state);
        let source = source_of(parts);
        let now = st.now();
        if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
            let presented = auth
                .to_str()
                .ok()
                .and_then(|v| {
                    let (scheme, rest) = v.split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
                })
                .ok_or_else(|| {
                    refused("token", "the Authorization header must be `Bearer <token>`")
                })?;
            if !token::looks_like_token(presented) {
                return Err(refused("token", "unknown or revoked API token"));
            }
            let found = st
                .inner
                .store
                .use_api_token(&token::token_hash(presented), now)
                .await
                .map_err(Problem::internal)?;
            let t = found.ok_or_else(|| refused("token", "unknown or revoked API token"))?;
            return Ok(Caller {
                name: t.name,
                role: t.role,
                via: Via::Token,
                source,
            });
        }
        let Some(id) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(refused(
                "no_credentials",
                "sign in (POST /api/v1/session) or send Authorization: Bearer <token>",
            ));
        };
        let (session, touch): (Session, Option<Millis>) = {
            let mut sessions = lock(&st.inner.sessions);
            let s = sessions
                .authenticate(id, now)
                .map_err(|e| refused("session", &format!("{e}: sign in again")))?;
            (s, sessions.take_touch(id))
        };
        if let Some(seen) = touch {
            // At most once a minute per session; a failure only shortens the session's life
            // after a restart, so it is logged, not refused.
            if let Err(e) = st
                .inner
                .store
                .touch_web_session(&session_hash(id), seen)
                .await
            {
                tracing::warn!(error = %e, "could not store a session's last use");
            }
        }
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let presented = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !session.csrf_matches(presented) {
                metrics::counter!(AUTH_REFUSED, "reason" => "csrf").increment(1);
                return Err(Problem::csrf());
            }
        }
        let expires_at = session.expires_at(lock(&st.inner.sessions).config());
        Ok(Caller {
            name: session.user,
            role: session.role,
            via: Via::Session {
                csrf_token: session.csrf_token,
                expires_at,
            },
            source,
        })
    }
}

/// A permission as a type, for `Authorized<P>`.
pub trait RequiredPermission {
    const PERMISSION: Permission;
}

/// Permission marker types: `Authorized<perm::Recordings>`.
pub mod perm {
    use super::RequiredPermission;
    use crate::auth::Permission;

    macro_rules! marker {
        ($($name:ident),*) => {$(
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
            impl RequiredPermission for $name {
                const PERMISSION: Permission = Permission::$name;
            }
        )*};
    }
    marker!(
        ViewLive,
        ViewReports,
        AgentCommands,
        CallDetails,
        Recordings,
        Unmask,
        Admin
    );
}

/// A `Caller` that has permission `P` (403 `forbidden` otherwise).
#[derive(Clone, Debug)]
pub struct Authorized<P>(pub Caller, PhantomData<P>);

impl<P> Authorized<P> {
    pub fn caller(&self) -> &Caller {
        &self.0
    }
}

impl<S, P> FromRequestParts<S> for Authorized<P>
where
    AuthState: FromRef<S>,
    S: Send + Sync,
    P: RequiredPermission + Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(P::PERMISSION)?;
        Ok(Authorized(caller, PhantomData))
    }
}

/// `/api/v1/session`, ready to merge into the API router.
pub fn router(state: AuthState) -> Router {
    Router::new()
        .route(SESSION_PATH, get(who_am_i).post(sign_in).delete(sign_out))
        .route(AGENT_SESSION_PATH, axum::routing::post(agent_sign_in))
        .with_state(state)
}

pub const AGENT_SESSION_PATH: &str = "/api/v1/session/agent";

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSignInRequest {
    /// The agent's extension (agents.toml), also their SIP user name.
    #[schema(example = "1001")]
    pub extension: String,
    /// The agent's SIP password (the one their phone registers with).
    pub password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    pub user: String,
    pub password: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct SessionInfo {
    pub user: String,
    pub role: Role,
    /// `session` or `token`.
    pub via: String,
    pub permissions: Vec<Permission>,
    /// For a cookie session: echo it in `X-CSRF-Token` on POST/PUT/PATCH/DELETE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
    /// For a cookie session: when it ends at the latest (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// For a cookie session: it ends after this many idle seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_s: Option<u64>,
    /// For an agent-desk session (role agent): the agent's extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    /// For a signed-in user with a SIP phone (users.toml `sip_extension`): its extension,
    /// which the wallboard's browser phone registers as and the monitor button rings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_extension: Option<String>,
    /// For a session with a browser phone (agent desk, wallboard phone): the STUN/TURN servers
    /// its WebRTC connection uses (`RTCConfiguration.iceServers`); none configured, absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ice_servers: Vec<IceServerInfo>,
}

/// One STUN or TURN server, as a browser's `RTCIceServer` takes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct IceServerInfo {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential: String,
}

fn rfc3339(at: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(at.as_i64())
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

impl SessionInfo {
    fn of(caller: &Caller, inner: &Inner) -> SessionInfo {
        let (idle_timeout_ms, agents) = (inner.users.sessions.idle_timeout_ms, &*inner.agents);
        let (via, csrf, expires) = match &caller.via {
            Via::Session {
                csrf_token,
                expires_at,
            } => ("session", Some(csrf_token.clone()), Some(*expires_at)),
            Via::Token => ("token", None, None),
        };
        let extension = caller.agent_extension().map(str::to_string);
        let sip_extension = match caller.via {
            Via::Session { .. } => agents
                .supervisors
                .iter()
                .find(|s| s.name == caller.name)
                .map(|s| s.extension.clone()),
            Via::Token => None,
        };
        let has_phone = extension.is_some() || sip_extension.is_some();
        SessionInfo {
            user: caller.name.clone(),
            role: caller.role,
            via: via.to_string(),
            permissions: caller.role.permissions(),
            csrf_token: csrf,
            expires_at: expires.map(rfc3339),
            idle_timeout_s: expires.map(|_| idle_timeout_ms / 1000),
            extension,
            sip_extension,
            ice_servers: if has_phone {
                inner.ice_servers.clone()
            } else {
                Vec::new()
            },
        }
    }
}

/// Session responses carry the CSRF token: never cached.
fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn session_cookie(value: &str, max_age_s: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("ccswitch_session=; Max-Age=0"))
}

/// Who is calling: the session's or token's user, role and permissions.
#[utoipa::path(
    get,
    path = "/api/v1/session",
    operation_id = "whoAmI",
    tag = "session",
    responses(
        (status = 200, description = "The caller", body = SessionInfo),
        (status = 401, description = "Not signed in", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer_token" = []))
)]
pub async fn who_am_i(State(st): State<AuthState>, caller: Caller) -> Response {
    no_store(axum::Json(SessionInfo::of(&caller, &st.inner)).into_response())
}

/// The source address of a request, as an extractor that never fails.
pub struct Source(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Source, Self::Rejection> {
        Ok(Source(source_of(parts)))
    }
}

/// An allowed sign-in attempt not yet finished; dropped open, it is abandoned.
struct PendingAttempt<'a> {
    st: &'a AuthState,
    source: IpAddr,
    open: bool,
}

impl Drop for PendingAttempt<'_> {
    fn drop(&mut self) {
        if self.open {
            lock(&self.st.inner.throttle).abandon(self.source);
        }
    }
}

/// Sign in with a users.toml user: sets the session cookie.
#[utoipa::path(
    post,
    path = "/api/v1/session",
    operation_id = "signIn",
    tag = "session",
    request_body = SignInRequest,
    responses(
        (status = 200, description = "Signed in; Set-Cookie carries the session", body = SessionInfo),
        (status = 400, description = "Malformed JSON", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Wrong user name or password (type sign-in-failed)", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 422, description = "Body does not fit (unknown field, wrong type)", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed sign-ins from this address", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "The session cannot be stored (database unavailable)", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
    ),
    security(())
)]
pub async fn sign_in(
    State(st): State<AuthState>,
    Source(source): Source,
    ApiJson(req): ApiJson<SignInRequest>,
) -> Result<Response, Problem> {
    let now = st.now();
    let decision = lock(&st.inner.throttle).begin(source, now);
    // If the client goes away mid-check this future is dropped: free the attempt's slot.
    let mut pending = PendingAttempt {
        st: &st,
        source,
        open: matches!(decision, ThrottleDecision::Allow),
    };
    match decision {
        ThrottleDecision::Allow => {}
        ThrottleDecision::Slowed { retry_after_ms } => {
            metrics::counter!(SIGN_INS, "outcome" => "throttled").increment(1);
            return Err(Problem::too_many_requests(
                retry_after_ms,
                "too many failed sign-ins from this address: wait and try again",
            ));
        }
        ThrottleDecision::Blocked { retry_after_ms } => {
            metrics::counter!(SIGN_INS, "outcome" => "blocked").increment(1);
            return Err(Problem::too_many_requests(
                retry_after_ms,
                "this address is blocked after too many failed sign-ins",
            ));
        }
    }
    let user = st.inner.users.get(&req.user).cloned();
    // An unknown name costs the same verification as a wrong password.
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| password::dummy_hash().to_string());
    let password = req.password;
    let verified = {
        // The semaphore is never closed; a failed acquire only means "no permit", so verify.
        let _permit = st.inner.verifications.acquire().await.ok();
        tokio::task::spawn_blocking(move || password::verify_password(&hash, &password))
            .await
            .unwrap_or(false)
    };
    let ok = verified && user.is_some();
    let now = st.now();
    pending.open = false;
    let outcome = lock(&st.inner.throttle).finish(source, now, ok);
    let Some(user) = user.filter(|_| ok) else {
        metrics::counter!(SIGN_INS, "outcome" => "failed").increment(1);
        let detail = match outcome {
            FailureOutcome::Blocked { until } => {
                Some(format!("source blocked until {}", rfc3339(until)))
            }
            FailureOutcome::Counted { failures } => Some(format!("{failures} failure(s) in a row")),
        };
        let _ = st
            .audit(
                &req.user,
                source,
                "session.sign_in_failed",
                None,
                detail.as_deref(),
            )
            .await;
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            types::SIGN_IN_FAILED,
            "Sign-in failed",
        )
        .detail("wrong user name or password"));
    };
    metrics::counter!(SIGN_INS, "outcome" => "ok").increment(1);
    open_session(&st, &user.name, user.role, source, now).await
}

/// Makes, stores and answers a new session for `name` (a user, or `agent:<ext>`).
async fn open_session(
    st: &AuthState,
    name: &str,
    role: Role,
    source: IpAddr,
    now: Millis,
) -> Result<Response, Problem> {
    let cfg = st.inner.users.sessions;
    let (id, session) =
        lock(&st.inner.sessions).create(name, role, now, rand::random(), rand::random());
    // Stored before answering, so the cookie outlives a restart; no store, no session.
    let row = WebSessionRow {
        session_hash: session_hash(id.as_str()),
        user: session.user.clone(),
        csrf_token: session.csrf_token.clone(),
        created_at: session.created_at,
        expires_at: session.expires_at(&cfg),
        last_seen: session.last_seen,
    };
    if let Err(e) = st.inner.store.insert_web_session(&row).await {
        lock(&st.inner.sessions).remove(id.as_str());
        tracing::error!(error = %e, "could not store a new session");
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            types::UNAVAILABLE,
            "Service unavailable",
        )
        .detail("the session cannot be stored: try again later"));
    }
    let _ = st
        .audit(name, source, "session.sign_in", None, Some(role.as_str()))
        .await;
    let caller = Caller {
        name: session.user.clone(),
        role: session.role,
        via: Via::Session {
            expires_at: session.expires_at(&cfg),
            csrf_token: session.csrf_token,
        },
        source,
    };
    let mut res = no_store(axum::Json(SessionInfo::of(&caller, &st.inner)).into_response());
    res.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(id.as_str(), cfg.max_age_ms / 1000),
    );
    Ok(res)
}

/// Checks an agent's SIP password against their HA1 in agents.toml (MD5 if configured, else
/// SHA-256), in time independent of where it differs. An unknown extension costs the same.
pub fn agent_password_matches(agents: &AgentDirectory, extension: &str, password: &str) -> bool {
    use crate::proto::digest::{ha1, Algorithm};
    let agent = agents.get(extension);
    let realm = agent
        .map(|a| a.realm.as_str())
        .unwrap_or(agents.registrar.realm.as_str());
    let (alg, stored) = match agent {
        Some(a) => match (&a.ha1_md5, &a.ha1_sha256) {
            (Some(h), _) => (Algorithm::Md5, h.to_ascii_lowercase()),
            (None, Some(h)) => (Algorithm::Sha256, h.to_ascii_lowercase()),
            (None, None) => (Algorithm::Md5, String::new()),
        },
        None => (Algorithm::Md5, String::new()),
    };
    let computed = ha1(alg, extension, realm, password);
    let same = crate::auth::constant_time_eq(computed.as_bytes(), stored.as_bytes());
    same && agent.is_some() && !password.is_empty()
}

/// Sign in to the agent desk with an extension and its SIP password: sets the session cookie
/// (role agent, user `agent:<extension>`).
#[utoipa::path(
    post,
    path = "/api/v1/session/agent",
    operation_id = "agentSignIn",
    tag = "session",
    request_body = AgentSignInRequest,
    responses(
        (status = 200, description = "Signed in as the agent; Set-Cookie carries the session", body = SessionInfo),
        (status = 400, description = "Malformed JSON", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Wrong extension or password (type sign-in-failed)", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 422, description = "Body does not fit (unknown field, wrong type)", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed sign-ins from this address", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "The session cannot be stored (database unavailable)", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
    ),
    security(())
)]
pub async fn agent_sign_in(
    State(st): State<AuthState>,
    Source(source): Source,
    ApiJson(req): ApiJson<AgentSignInRequest>,
) -> Result<Response, Problem> {
    let now = st.now();
    let decision = lock(&st.inner.throttle).begin(source, now);
    let mut pending = PendingAttempt {
        st: &st,
        source,
        open: matches!(decision, ThrottleDecision::Allow),
    };
    match decision {
        ThrottleDecision::Allow => {}
        ThrottleDecision::Slowed { retry_after_ms } => {
            metrics::counter!(SIGN_INS, "outcome" => "throttled").increment(1);
            return Err(Problem::too_many_requests(
                retry_after_ms,
                "too many failed sign-ins from this address: wait and try again",
            ));
        }
        ThrottleDecision::Blocked { retry_after_ms } => {
            metrics::counter!(SIGN_INS, "outcome" => "blocked").increment(1);
            return Err(Problem::too_many_requests(
                retry_after_ms,
                "this address is blocked after too many failed sign-ins",
            ));
        }
    }
    // Extensions are digits (agents.toml); anything else is simply not an agent.
    let extension: String = req.extension.trim().chars().take(32).collect();
    let ok = agent_password_matches(&st.inner.agents, &extension, &req.password);
    let now = st.now();
    pending.open = false;
    let outcome = lock(&st.inner.throttle).finish(source, now, ok);
    let user = agent_user(&extension);
    if !ok {
        metrics::counter!(SIGN_INS, "outcome" => "failed").increment(1);
        let detail = match outcome {
            FailureOutcome::Blocked { until } => {
                Some(format!("source blocked until {}", rfc3339(until)))
            }
            FailureOutcome::Counted { failures } => Some(format!("{failures} failure(s) in a row")),
        };
        let shown: String = user.chars().filter(|c| !c.is_control()).take(40).collect();
        let _ = st
            .audit(
                &shown,
                source,
                "session.sign_in_failed",
                None,
                detail.as_deref(),
            )
            .await;
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            types::SIGN_IN_FAILED,
            "Sign-in failed",
        )
        .detail("wrong extension or password"));
    }
    metrics::counter!(SIGN_INS, "outcome" => "ok").increment(1);
    open_session(&st, &user, Role::Agent, source, now).await
}

/// Sign out: ends the session (needs X-CSRF-Token).
#[utoipa::path(
    delete,
    path = "/api/v1/session",
    operation_id = "signOut",
    tag = "session",
    responses(
        (status = 204, description = "Signed out; the cookie is cleared"),
        (status = 400, description = "An API token has no session", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "CSRF token missing or wrong", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "The session cannot be deleted from the store (database unavailable); it stays", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []))
)]
pub async fn sign_out(
    State(st): State<AuthState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    if caller.via == Via::Token {
        return Err(Problem::bad_request(
            "an API token has no session to end: revoke it with `ccswitch user revoke NAME`",
        ));
    }
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        // The row goes first: a row left behind would sign the browser in again after a
        // restart, so when it cannot be deleted the session stays and the client may retry.
        if let Err(e) = st.inner.store.delete_web_session(&session_hash(id)).await {
            tracing::error!(error = %e, "could not delete a signed-out session from the store");
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                types::UNAVAILABLE,
                "Service unavailable",
            )
            .detail("the session cannot be ended in the store: try again later"));
        }
        lock(&st.inner.sessions).remove(id);
    }
    let _ = st
        .audit_caller(&caller, "session.sign_out", None, None)
        .await;
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0));
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; ccswitch_session=abc ; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("x=1"));
        h.append(
            header::COOKIE,
            HeaderValue::from_static("ccswitch_session=\"q\""),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("q"));
    }

    #[test]
    fn agent_passwords_are_checked_against_the_ha1() {
        let cfg =
            crate::config::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config"))
                .expect("the shipped config loads");
        let agents = &cfg.agents;
        assert!(agent_password_matches(agents, "1001", "demo1001"));
        assert!(agent_password_matches(agents, "1002", "demo1002"));
        assert!(!agent_password_matches(agents, "1001", "demo1002"));
        assert!(!agent_password_matches(agents, "1001", ""));
        assert!(!agent_password_matches(agents, "1999", "demo1999"));
        assert!(!agent_password_matches(agents, "", ""));
        assert_eq!(agent_of_user(&agent_user("1001")), Some("1001"));
        assert_eq!(agent_of_user("admin"), None);
        assert_eq!(agent_of_user("agent:"), None);
        assert_eq!(agent_of_user("agent:x1"), None);
    }

    #[test]
    fn the_session_cookie_is_httponly_strict_and_scoped_to_the_site() {
        let v = session_cookie("abc", 60);
        assert_eq!(
            v.to_str().unwrap(),
            "ccswitch_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60"
        );
    }
}
