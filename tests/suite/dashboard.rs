//! The web dashboard in real headless Chromium, driven over WebDriver (chromedriver, spoken
//! to with plain HTTP): against `serve --demo` and against `replay FILE --serve`. Each saves
//! a screenshot under `target/`. Chromium and chromedriver come from Debian
//! (`scripts/test` installs them); when they are missing the tests say they did not run,
//! and fail if `CI` is set.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::daemon::Daemon;
use super::root;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The shop's nodes as the dashboard names them.
const SHOP: [&str; 11] = [
    "api-gateway",
    "order-service",
    "saga-orchestrator",
    "payment-service",
    "shipping-service",
    "email-service",
    "orders (postgresql)",
    "saga (postgresql)",
    "kafka",
    "api.bank.example",
    "smtp.mail.example",
];

struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
}

fn chromedriver() -> Option<String> {
    for p in ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"] {
        if std::path::Path::new(p).exists() && std::path::Path::new("/usr/bin/chromium").exists() {
            return Some(p.to_owned());
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "chromium and chromedriver are missing and CI is set: a test that did not run is not \
         green (scripts/test installs them)"
    );
    eprintln!("NOT RUN: chromium or chromedriver is missing (scripts/test installs them)");
    None
}

impl Browser {
    fn start() -> Option<Browser> {
        let exe = chromedriver()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(exe)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while http.get(format!("{base}/status")).send().is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--no-first-run", "--window-size=1400,900",
                         format!("--user-data-dir={}", profile.path().display())],
            },
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .and_then(|r| r.json())
            .expect("a WebDriver session");
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_owned();
        std::mem::forget(profile);
        Some(Browser {
            driver,
            base,
            session,
            http,
        })
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body),
        };
        let r: Value = req.send().and_then(|r| r.json()).expect("WebDriver call");
        r["value"].clone()
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    /// Polls a script until it returns true (60 s at most); `what` names the wait.
    fn wait_for(&self, what: &str, script: &str) {
        let start = Instant::now();
        while self.js(script) != Value::Bool(true) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}; page: {}",
                self.js("return document.body.innerText.slice(0, 2000)")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn click(&self, css: &str) {
        let e = self.call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        let id = e[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {e}"))
            .to_owned();
        let r = self.call("POST", &format!("/element/{id}/click"), json!({}));
        if !r.is_null() {
            eprintln!("click on {css}: {r}");
        }
    }

    fn screenshot(&self, name: &str) -> std::path::PathBuf {
        use base64::Engine as _;
        let png = self.call("GET", "/screenshot", Value::Null);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or(""))
            .expect("a PNG");
        let path = root().join("target").join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// What both tests check: every shop node on the map; the database SPOF in the findings
/// list with its cure, its node coloured; a click opens the node panel with charts.
fn check_single_database(b: &Browser, api: &str, screenshot: &str) {
    b.open(&format!("{api}/"));
    let names = serde_json::to_string(&SHOP).unwrap();
    b.wait_for(
        "every shop node on the map",
        &format!(
            "const on = [...document.querySelectorAll('#map .node')].map(n => n.dataset.name);
             return {names}.every(n => on.includes(n));"
        ),
    );
    b.wait_for(
        "the database SPOF in the findings list with its cure, its node coloured",
        "const card = document.querySelector('[data-finding=\"spof/orders (postgresql)\"]');
         const node = [...document.querySelectorAll('#map .node')]
           .find(n => n.dataset.name === 'orders (postgresql)');
         return !!card && /replica/i.test(card.textContent) && /Cure/.test(card.textContent)
           && !!node && ['high', 'critical'].includes(node.dataset.severity)
           && getComputedStyle(node.querySelector('.node-shape')).fill !== getComputedStyle(
                [...document.querySelectorAll('#map .node')]
                  .find(n => n.dataset.severity === 'none').querySelector('.node-shape')).fill;",
    );
    let panel = "const t = document.getElementById('node-title');
         return !!t && t.textContent.includes('orders (postgresql)')
           && !document.getElementById('tab-node').classList.contains('hidden')
           && document.querySelectorAll('#tab-node svg.chart path').length >= 4;";
    // A live page may redraw between finding the node and clicking it: try again.
    let start = Instant::now();
    loop {
        b.click("#map .node[data-name=\"orders (postgresql)\"]");
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(3) && b.js(panel) != Value::Bool(true) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if b.js(panel) == Value::Bool(true) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "a click on the node never opened its panel: {}",
            b.js("const t = document.getElementById('node-title');
                  return [t && t.textContent,
                          document.getElementById('tab-node').className,
                          document.querySelectorAll('#tab-node svg.chart path').length,
                          document.getElementById('tab-node').innerText.slice(0, 300)]")
        );
    }
    let shot = b.screenshot(screenshot);
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "{}",
        shot.display()
    );
}

/// Issue 9: the dashboard on the live demo, through its single-database phase.
#[test]
fn dashboard_on_the_demo_shows_the_single_database_spof() {
    let Some(b) = Browser::start() else { return };
    let d = Daemon::start(&["--demo", "--demo-schedule", "healthy:5s,single-db"]);
    check_single_database(&b, &d.api, "dashboard-demo.png");
}

/// Issue 9: the same dashboard on a replayed file, without a daemon.
#[test]
fn dashboard_on_a_replayed_file() {
    let Some(b) = Browser::start() else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args([
            "replay",
            "testdata/shop-single-db.otlp.jsonl.gz",
            "--serve",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start replay --serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let api = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("api="))
        .unwrap_or_else(|| panic!("no api= in {line:?}"))
        .to_owned();
    check_single_database(&b, &api, "dashboard-replay.png");
    let _ = child.kill();
    let _ = child.wait();
}
