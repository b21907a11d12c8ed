//! The wallboard / supervisor page: `GET /` (web/index.html) and `GET /assets/*path` (the
//! rest of `web/`), embedded in the binary so the page works with no network but the switch.
//!
//! Every answer carries an ETag (from the embedded file's SHA-256) and `Cache-Control:
//! no-cache`: asset names carry no version, so a browser revalidates each load and gets a cheap
//! 304 until the binary is upgraded. Security headers: a Content-Security-Policy that allows
//! only this origin (scripts, styles, the API and the same-origin WebSocket), no framing, no
//! MIME sniffing. Unknown assets get a 404 problem document.

use super::problem::Problem;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "web/"]
#[exclude = "node_modules/*"]
#[exclude = "package.json"]
#[exclude = "package-lock.json"]
struct WebAssets;

/// `connect-src 'self'` covers same-origin `ws:`/`wss:` in CSP Level 3 browsers.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/agent", get(agent_desk))
        .route("/assets/{*path}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// The agent desk (web/agent.html).
async fn agent_desk(headers: HeaderMap) -> Response {
    serve("agent.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, request: &HeaderMap) -> Response {
    // rust-embed looks names up in its table (release) or under web/ (debug builds, which
    // refuse paths leaving the folder); refusing odd names here keeps both the same.
    let plausible = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    let file = if plausible {
        WebAssets::get(path)
    } else {
        None
    };
    let Some(file) = file else {
        let mut response = Problem::not_found(format!("no asset {path:?}"))
            .instance(format!("/assets/{path}"))
            .into_response();
        add_security_headers(response.headers_mut());
        return response;
    };
    let etag = etag(&file.metadata.sha256_hash());
    let mut response = if if_none_match(request, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        // Release builds borrow the embedded bytes: no copy per request.
        let body = match file.data {
            std::borrow::Cow::Borrowed(bytes) => axum::body::Body::from(bytes),
            std::borrow::Cow::Owned(bytes) => axum::body::Body::from(bytes),
        };
        let mut r = body.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(path)),
        );
        r
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    add_security_headers(headers);
    response
}

fn add_security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// A strong validator: the first 16 bytes of the content's SHA-256, quoted.
fn etag(sha256: &[u8; 32]) -> String {
    format!("\"{}\"", hex::encode(&sha256[..16]))
}

/// `If-None-Match` lists ETags (or `*`); weak ones match too (RFC 9110 13.1.2).
fn if_none_match(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// The types `web/` holds; with `nosniff` a wrong type would break the page.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("js/main.js"), "text/javascript; charset=utf-8");
        assert_eq!(
            content_type("vendor/uPlot.min.css"),
            "text/css; charset=utf-8"
        );
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let mut h = HeaderMap::new();
        assert!(!if_none_match(&h, "\"ab\""));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"ab\""),
        );
        assert!(if_none_match(&h, "\"ab\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match(&h, "\"zz\""));
    }

    #[test]
    fn package_files_and_odd_paths_are_not_served() {
        let h = HeaderMap::new();
        for p in [
            "package.json",
            "package-lock.json",
            "node_modules/uplot/package.json",
            "../Cargo.toml",
            "js/../../Cargo.toml",
            "/etc/passwd",
            "",
        ] {
            assert_eq!(serve(p, &h).status(), StatusCode::NOT_FOUND, "{p}");
        }
        assert_eq!(serve("js/main.js", &h).status(), StatusCode::OK);
        assert_eq!(serve("vendor/uPlot.esm.js", &h).status(), StatusCode::OK);
    }
}
