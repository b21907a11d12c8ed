//! A headless Chromium page for e2e tests, behind tests/web/driver.mjs (playwright-core):
//! one JSON command per line in, one JSON answer per line out, so a test can interleave SIP
//! and browser steps. Needs `npm ci` in tests/web (done by .ci/run) and /usr/bin/chromium
//! (or CHROMIUM_PATH); CCSWITCH_E2E_SKIP_BROWSER=1 makes `Browser::start` return None.

use super::*;
use std::process::ChildStdin;

pub(crate) fn screenshot_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest().join("target"))
        .join("wallboard-screenshots")
}

/// One headless Chromium page behind tests/web/driver.mjs: a JSON command per line in, a
/// JSON answer per line out.
pub(crate) struct Browser {
    child: Child,
    stdin: ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    err: Arc<Mutex<Vec<String>>>,
}

impl Browser {
    pub(crate) fn start() -> Option<Browser> {
        Browser::start_with_args(&[])
    }

    /// With more Chromium flags (e.g. the fake microphone of the agent desk test).
    pub(crate) fn start_with_args(args: &[&str]) -> Option<Browser> {
        if std::env::var("CCSWITCH_E2E_SKIP_BROWSER").as_deref() == Ok("1") {
            eprintln!("CCSWITCH_E2E_SKIP_BROWSER=1: skipping a Chromium test");
            return None;
        }
        let dir = manifest().join("tests/web");
        assert!(
            dir.join("node_modules/playwright-core").is_dir(),
            "tests/web/node_modules missing: run (cd tests/web && npm ci) \
             (or set CCSWITCH_E2E_SKIP_BROWSER=1 to skip the browser tests)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("driver.mjs"))
            .env("DRIVER_LOCALE", "en-GB")
            .env("DRIVER_CHROMIUM_ARGS", args.join("\n"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node tests/web/driver.mjs (is Node.js installed?)");
        let stdin = child.stdin.take().expect("stdin");
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let err = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&err);
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        let mut b = Browser {
            child,
            stdin,
            lines: rx,
            err,
        };
        let ready = b.read_answer(Duration::from_secs(60));
        assert_eq!(ready["ok"], true, "driver did not start: {ready}");
        eprintln!("browser: {}", ready["value"]);
        Some(b)
    }

    fn read_answer(&mut self, within: Duration) -> Value {
        match self.lines.recv_timeout(within) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("driver answered non-JSON ({e}): {line}")),
            Err(_) => panic!(
                "driver gave no answer within {within:?}:\n{}",
                self.err.lock().map(|l| l.join("\n")).unwrap_or_default()
            ),
        }
    }

    /// Runs one command; Err(message) when the page step failed (e.g. a timeout).
    pub(crate) fn try_run(&mut self, cmd: Value) -> Result<Value, String> {
        let timeout_ms = cmd["timeout"].as_u64().unwrap_or(10_000);
        writeln!(self.stdin, "{cmd}").expect("write to driver");
        self.stdin.flush().expect("flush driver stdin");
        let answer = self.read_answer(Duration::from_millis(timeout_ms + 20_000));
        if answer["ok"] == true {
            Ok(answer["value"].clone())
        } else {
            Err(answer["error"].as_str().unwrap_or("?").to_string())
        }
    }

    /// Runs one command and panics (after a screenshot of the page) if it failed.
    pub(crate) fn run(&mut self, cmd: Value) -> Value {
        match self.try_run(cmd.clone()) {
            Ok(v) => v,
            Err(e) => {
                let shot = screenshot_dir().join("failure.png");
                let _ = self.try_run(serde_json::json!({
                    "cmd": "screenshot", "path": shot.display().to_string()
                }));
                let errors = self
                    .try_run(serde_json::json!({"cmd": "errors"}))
                    .unwrap_or_default();
                panic!(
                    "browser step {cmd} failed: {e}\npage errors: {errors}\nscreenshot: {}",
                    shot.display()
                );
            }
        }
    }

    pub(crate) fn goto(&mut self, url: &str) {
        self.run(serde_json::json!({"cmd": "goto", "url": url}));
    }

    pub(crate) fn fill(&mut self, selector: &str, value: &str) {
        self.run(serde_json::json!({"cmd": "fill", "selector": selector, "value": value}));
    }

    pub(crate) fn click(&mut self, selector: &str) {
        self.run(serde_json::json!({"cmd": "click", "selector": selector}));
    }

    pub(crate) fn wait_for(&mut self, selector: &str, timeout: Duration) {
        self.run(serde_json::json!({
            "cmd": "waitForSelector", "selector": selector,
            "timeout": timeout.as_millis() as u64
        }));
    }

    pub(crate) fn wait_for_text(&mut self, selector: &str, text: &str, timeout: Duration) {
        self.run(serde_json::json!({
            "cmd": "waitForText", "selector": selector, "text": text,
            "timeout": timeout.as_millis() as u64
        }));
    }

    pub(crate) fn text(&mut self, selector: &str) -> String {
        self.run(serde_json::json!({"cmd": "textContent", "selector": selector}))
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub(crate) fn evaluate(&mut self, expression: &str) -> Value {
        self.run(serde_json::json!({"cmd": "evaluate", "expression": expression}))
    }

    pub(crate) fn screenshot(&mut self, name: &str) -> PathBuf {
        let path = screenshot_dir().join(name);
        self.run(serde_json::json!({"cmd": "screenshot", "path": path.display().to_string()}));
        eprintln!("screenshot: {}", path.display());
        path
    }

    pub(crate) fn sign_in_as(&mut self, user: &str, password: &str) {
        self.wait_for("#sign-in-form", Duration::from_secs(10));
        self.fill("#sign-in-user", user);
        self.fill("#sign-in-password", password);
        self.click("#sign-in-submit");
        self.wait_for("#board", Duration::from_secs(10));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", serde_json::json!({"cmd": "close"}));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
