//! The embedded wallboard over real HTTP on 127.0.0.1: the page and its assets with the right
//! Content-Type, caching (ETag, 304) and security headers; unknown assets and the npm package
//! files are 404 problem documents. (tests/e2e/wallboard.rs drives the page in Chromium.)

use ccswitch::api::{self, web};
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

async fn start() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(api::serve_router(listener, web::router(), async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("answer within 10 s")
        .expect("read");
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a full response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

fn assert_security_headers(r: &Resp) {
    let csp = r.header("content-security-policy");
    for part in [
        "default-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "CSP {csp:?} lacks {part:?}");
    }
    assert_eq!(r.header("x-content-type-options"), "nosniff");
    assert_eq!(r.header("x-frame-options"), "DENY");
}

#[tokio::test]
async fn page_and_assets_are_served_with_types_caching_and_security_headers() {
    let (addr, _stop) = start().await;

    let page = get(addr, "/", &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(page.header("cache-control"), "no-cache");
    assert!(page.body.contains("/assets/js/main.js"), "{}", page.body);
    assert_security_headers(&page);
    let etag = page.header("etag").to_string();
    assert!(etag.starts_with('"') && etag.len() == 34, "{etag:?}");

    // The agent desk, embedded like the wallboard.
    let desk = get(addr, "/agent", &[]).await;
    assert_eq!(desk.status, 200);
    assert_eq!(desk.header("content-type"), "text/html; charset=utf-8");
    assert!(
        desk.body.contains("/assets/js/agent/main.js"),
        "{}",
        desk.body
    );
    assert_security_headers(&desk);
    assert_ne!(desk.header("etag"), etag);

    let again = get(addr, "/", &[("If-None-Match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert_eq!(again.header("etag"), etag);
    assert!(again.body.is_empty());

    for (path, ty) in [
        ("/assets/js/main.js", "text/javascript; charset=utf-8"),
        ("/assets/css/style.css", "text/css; charset=utf-8"),
        (
            "/assets/vendor/uPlot.esm.js",
            "text/javascript; charset=utf-8",
        ),
        ("/assets/vendor/uPlot.min.css", "text/css; charset=utf-8"),
        ("/assets/js/agent/main.js", "text/javascript; charset=utf-8"),
        (
            "/assets/js/agent/phone.js",
            "text/javascript; charset=utf-8",
        ),
        ("/assets/css/agent.css", "text/css; charset=utf-8"),
        (
            "/assets/vendor/jssip.esm.js",
            "text/javascript; charset=utf-8",
        ),
    ] {
        let r = get(addr, path, &[]).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), ty, "{path}");
        assert_eq!(r.header("cache-control"), "no-cache", "{path}");
        assert!(!r.header("etag").is_empty(), "{path}");
        assert_ne!(r.header("etag"), etag, "{path}: ETags differ by content");
        assert_security_headers(&r);
    }
}

#[tokio::test]
async fn unknown_assets_and_package_files_are_404_problems() {
    let (addr, _stop) = start().await;
    for path in [
        "/assets/nope.js",
        "/assets/package.json",
        "/assets/package-lock.json",
        "/assets/node_modules/uplot/package.json",
        "/assets/..%2FCargo.toml",
    ] {
        let r = get(addr, path, &[]).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(
            r.header("content-type"),
            "application/problem+json",
            "{path}"
        );
        let doc: serde_json::Value = serde_json::from_str(&r.body).expect("problem JSON");
        assert!(
            doc["type"].as_str().unwrap_or("").ends_with("not-found"),
            "{path}: {doc}"
        );
        assert_security_headers(&r);
    }
}
