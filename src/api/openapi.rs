//! The OpenAPI 3.1 document of the supervisor API, generated from the handlers' types
//! (`utoipa`), served without authentication at `GET /api/v1/openapi.json`.

use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// An RFC 9457 problem document (`application/problem+json`), as `api::problem::Problem`
/// serialises it. Clients branch on `type`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ProblemSchema {
    /// `https://ccswitch.dev/problems/<slug>`, stable.
    #[serde(rename = "type")]
    #[schema(example = "https://ccswitch.dev/problems/forbidden")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: Option<String>,
    pub instance: Option<String>,
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                super::auth_routes::SESSION_COOKIE,
                "Browser session from POST /api/v1/session; state-changing requests also \
                 need the header X-CSRF-Token",
            ))),
        );
        components.add_security_scheme(
            "bearer_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("API token from `ccswitch user token NAME`"))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "ccswitch supervisor API", description = "Reports, calls, recordings, agent commands and the live feed of the ccswitch call-centre switch. Errors are RFC 9457 problem documents."),
    paths(
        super::auth_routes::who_am_i,
        super::auth_routes::sign_in,
        super::auth_routes::sign_out,
        super::auth_routes::agent_sign_in,
        super::agents::set_state,
        super::agent_desk::desk,
        super::agent_desk::history,
        super::agent_desk::set_disposition,
        super::reports::queues,
        super::reports::agents,
        super::reports::system,
        super::reports::surveys,
        super::calls::search,
        super::calls::timeline,
        super::calls::unmask,
        super::monitor::request_monitor,
        super::recordings::download,
        super::audit_routes::list,
        serve,
    ),
    components(schemas(
        ProblemSchema,
        super::params::OutputFormat,
        super::reports::IntervalParam,
        super::reports::SurveyBy,
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "session", description = "Sign-in, sign-out, who am I"),
        (name = "agents", description = "Agent state commands and the agent desk"),
        (name = "reports", description = "Queue, agent, system and survey reports (JSON or CSV)"),
        (name = "calls", description = "Calls search, timelines, unmasking, recordings, monitoring"),
        (name = "admin", description = "The audit log"),
        (name = "meta", description = "This document"),
    )
)]
pub struct RestApiDoc;

/// The whole document: the REST routes, the session routes and the live feed.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = RestApiDoc::openapi();
    doc.merge(crate::api::live_routes::LiveApiDoc::openapi());
    doc
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "getOpenApi",
    tag = "meta",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json"))
)]
pub async fn serve() -> Response {
    axum::Json(openapi()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_schema_and_scheme() {
        let v = serde_json::to_value(openapi()).unwrap();
        assert!(v["openapi"].as_str().unwrap().starts_with("3.1"));
        for s in [
            "ProblemSchema",
            "AgentStateRequest",
            "Accepted",
            "CallPage",
            "CallSummary",
            "CallDetail",
            "Unmasked",
            "AuditPage",
            "SessionInfo",
            "IceServerInfo",
            "SignInRequest",
            "AgentSignInRequest",
            "Desk",
            "ScreenPop",
            "DispositionRequest",
            "DispositionAccepted",
            "MonitorBody",
            "MonitorRinging",
        ] {
            assert!(v["components"]["schemas"][s].is_object(), "schema {s}");
        }
        for s in ["session_cookie", "bearer_token"] {
            assert!(v["components"]["securitySchemes"][s].is_object(), "{s}");
        }
        let text = v.to_string();
        for r in text.split("#/components/schemas/").skip(1) {
            let name: String = r.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(
                v["components"]["schemas"][&name].is_object(),
                "dangling $ref {name}"
            );
        }
        if std::env::var_os("CCSWITCH_PRINT_OPENAPI").is_some() {
            println!("{}", serde_json::to_string_pretty(&v).unwrap());
        }
    }
}
