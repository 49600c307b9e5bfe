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
        Browser::start_sized(1400, 900)
    }

    fn start_sized(width: u32, height: u32) -> Option<Browser> {
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
                         "--disable-sync", "--no-first-run", format!("--window-size={width},{height}"),
                         format!("--user-data-dir={}", profile.path().display())],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
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
                "timed out waiting for {what}; console: {:?}; url: {}; page: {}",
                self.console_errors(),
                self.js("return location.href"),
                self.js("return document.getElementById('tab-findings').innerText.slice(0, 1500)")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs an asynchronous script: it gets `arguments[0]` and calls the last argument with
    /// its answer.
    fn js_async(&self, script: &str, arg: Value) -> Value {
        self.call(
            "POST",
            "/execute/async",
            json!({"script": script, "args": [arg]}),
        )
    }

    /// What the page wrote to the console at level SEVERE (errors) since the last call.
    fn console_errors(&self) -> Vec<String> {
        let log = self.call("POST", "/se/log", json!({"type": "browser"}));
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    fn screenshot_b64(&self) -> String {
        self.call("GET", "/screenshot", Value::Null)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Clicks, trying again while a live page replaces the element under the pointer.
    fn click_settled(&self, css: &str) {
        let start = Instant::now();
        loop {
            let e = self.call(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            );
            if let Some(id) = e[ELEMENT].as_str() {
                let r = self.call("POST", &format!("/element/{id}/click"), json!({}));
                if r.is_null() {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "could not click {css}: {e}"
            );
            std::thread::sleep(Duration::from_millis(100));
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
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.screenshot_b64())
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

// ---- Issue 22: the dashboard as an operator's console, measured ----

/// Pairs of visible map labels whose boxes overlap, and nodes not wholly inside the map's
/// area (and the window).
const LAYOUT: &str = r#"
const mapR = document.getElementById('map').getBoundingClientRect();
const shown = (e) => { const r = e.getBoundingClientRect(); const cs = getComputedStyle(e);
  return r.width > 0 && r.height > 0 && cs.display !== 'none' && cs.visibility !== 'hidden' && e.closest('[class~="hidden"]') === null ? r : null; };
const labels = [...document.querySelectorAll('#map text')].map((e) => [e, shown(e)]).filter((x) => x[1]);
const overlaps = [];
for (let i = 0; i < labels.length; i++) for (let j = i + 1; j < labels.length; j++) {
  const a = labels[i][1], b = labels[j][1];
  const w = Math.min(a.right, b.right) - Math.max(a.left, b.left), h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
  if (w > 0.5 && h > 0.5) overlaps.push([labels[i][0].textContent, labels[j][0].textContent]);
}
const outside = [...document.querySelectorAll('#map .node')].filter((n) => { const r = n.getBoundingClientRect();
  return r.left < mapR.left - 0.5 || r.top < mapR.top - 0.5 || r.right > mapR.right + 0.5 || r.bottom > mapR.bottom + 0.5
    || r.right > innerWidth || r.bottom > innerHeight; }).map((n) => n.dataset.node);
return { labels: labels.length, overlaps: overlaps.slice(0, 10), overlap_count: overlaps.length, outside,
  nodes: document.querySelectorAll('#map .node').length, edge_labels: document.querySelectorAll('#map [data-edge]').length,
  map: [mapR.width, mapR.height], window: [innerWidth, innerHeight] };
"#;

/// The contrast of every visible text of the map and the findings, from the screenshot's
/// pixels: the background is the most common colour in the text's box, the text's colour
/// what the page paints it with.
const CONTRAST: &str = r#"
const done = arguments[arguments.length - 1];
const img = new Image();
img.onload = () => {
  const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const px = g.getImageData(0, 0, c.width, c.height).data;
  const k = img.width / innerWidth;
  const lum = (r, gg, b) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(gg) + 0.0722 * f(b); };
  const parse = (s) => { const m = /rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)/.exec(s); return m ? [+m[1], +m[2], +m[3]] : null; };
  const items = [];
  const add = (el, rect, colour) => {
    if (!rect || rect.width < 1 || rect.height < 1 || rect.right <= 0 || rect.bottom <= 0 || rect.left >= innerWidth || rect.top >= innerHeight) return;
    const cs = getComputedStyle(el);
    if (cs.display === 'none' || cs.visibility === 'hidden' || el.closest('.hidden') || +cs.opacity === 0) return;
    const fg = parse(colour); if (!fg) return;
    const counts = new Map();
    const x0 = Math.max(0, Math.floor(rect.left * k)), x1 = Math.min(c.width, Math.ceil(rect.right * k));
    const y0 = Math.max(0, Math.floor(rect.top * k)), y1 = Math.min(c.height, Math.ceil(rect.bottom * k));
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) {
      const i = (y * c.width + x) * 4, key = (px[i] << 16) | (px[i + 1] << 8) | px[i + 2];
      counts.set(key, (counts.get(key) || 0) + 1);
    }
    let bg = null, best = -1;
    for (const [key, n] of counts) if (n > best) { best = n; bg = key; }
    if (bg == null) return;
    const bgc = [(bg >> 16) & 255, (bg >> 8) & 255, bg & 255];
    const a = lum(...fg), b = lum(...bgc);
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    items.push({ text: (el.textContent || '').trim().slice(0, 40), ratio: Math.round(ratio * 100) / 100, fg: fg.join(','), bg: bgc.join(',') });
  };
  for (const t of document.querySelectorAll('#map text')) add(t, t.getBoundingClientRect(), getComputedStyle(t).fill);
  const walker = document.createTreeWalker(document.getElementById('tab-findings'), NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.textContent.trim()) continue;
    const r = document.createRange(); r.selectNodeContents(n);
    add(n.parentElement, r.getBoundingClientRect(), getComputedStyle(n.parentElement).color);
  }
  for (const t of document.querySelectorAll('#legend span')) {
    for (const n of t.childNodes) if (n.nodeType === 3 && n.textContent.trim()) { const r = document.createRange(); r.selectNodeContents(n); add(t, r.getBoundingClientRect(), getComputedStyle(t).color); }
  }
  items.sort((x, y) => x.ratio - y.ratio);
  done({ count: items.length, lowest: items.slice(0, 5) });
};
img.onerror = () => done({ error: 'screenshot did not decode' });
img.src = 'data:image/png;base64,' + arguments[0];
"#;

/// The node panel's charts: time ticks on x, a unit on every value tick.
const CHARTS: &str = r#"
const charts = [...document.querySelectorAll('#tab-node svg.chart')];
return charts.map((c) => ({ id: c.dataset.chart, unit: c.dataset.unit,
  x: [...c.querySelectorAll('g[data-axis="x"] text')].map((t) => t.textContent),
  y: [...c.querySelectorAll('g[data-axis="y"] text')].map((t) => t.textContent) }));
"#;

const UNIT_RE: [(&str, &str); 5] = [
    ("/s", "/s"),
    ("ms", "ms"),
    ("%", "%"),
    ("share", "%"),
    ("count", ""),
];

fn set_theme(b: &Browser, url: &str, theme: &str) {
    b.open(url);
    b.js(&format!(
        "localStorage.setItem('chokepoint-theme', '{theme}'); return true;"
    ));
    b.open(url);
}

/// What every view must show, at one size and theme: no label collides, every node is in
/// the window, every text of the map and findings reads at 4.5:1 or better, measured from
/// the screenshot; nothing on the console.
fn check_console_view(b: &Browser, what: &str) -> Value {
    // Let the map settle (a live page redraws as data arrives).
    std::thread::sleep(Duration::from_millis(600));
    let layout = b.js(LAYOUT);
    assert_eq!(
        layout["overlap_count"], 0,
        "{what}: map labels overlap: {layout}"
    );
    assert_eq!(
        layout["outside"],
        json!([]),
        "{what}: nodes outside the window: {layout}"
    );
    let png = b.screenshot_b64();
    let contrast = b.js_async(CONTRAST, json!(png));
    let lowest = contrast["lowest"][0]["ratio"].as_f64().unwrap_or(0.0);
    assert!(
        contrast["count"].as_u64().unwrap_or(0) > 5 && lowest >= 4.5,
        "{what}: the lowest text contrast is {lowest}: {contrast}"
    );
    let errors = b.console_errors();
    assert!(errors.is_empty(), "{what}: console errors: {errors:?}");
    json!({"layout": layout, "lowest_contrast": lowest})
}

/// Selects a node by clicking it on the map; the panel shows it with charts whose axes have
/// time ticks and units. Returns how long the click took to update the panel (ms).
fn select_and_check_charts(b: &Browser, name: &str, what: &str) -> f64 {
    let ms = b.js_async(
        r#"const [name, done] = [arguments[0], arguments[arguments.length - 1]];
           const node = [...document.querySelectorAll('#map .node')].find((n) => n.dataset.node === name);
           if (!node) { done(-1); return; }
           const t0 = performance.now();
           node.dispatchEvent(new MouseEvent('click', { bubbles: true }));
           const poll = () => {
             const t = document.getElementById('node-title');
             if (t && t.textContent.includes(name) && document.querySelectorAll('#tab-node svg.chart').length >= 4) done(performance.now() - t0);
             else if (performance.now() - t0 > 20000) done(-2);
             else requestAnimationFrame(poll);
           };
           poll();"#,
        json!(name),
    );
    let ms = ms.as_f64().unwrap_or(-3.0);
    assert!(
        ms >= 0.0,
        "{what}: clicking {name} never showed its panel ({ms})"
    );
    let charts = b.js(CHARTS);
    let list = charts.as_array().expect("charts");
    assert!(list.len() >= 4, "{what}: {charts}");
    for c in list {
        let unit = c["unit"].as_str().unwrap_or("");
        let want = UNIT_RE
            .iter()
            .find(|u| u.0 == unit)
            .unwrap_or_else(|| panic!("{what}: a chart without a known unit: {c}"))
            .1;
        let x = c["x"].as_array().map_or(0, Vec::len);
        assert!(
            x >= 2,
            "{what}: a chart with fewer than two time ticks: {c}"
        );
        assert!(
            c["x"].as_array().unwrap().iter().all(|t| t
                .as_str()
                .is_some_and(|t| t.len() >= 5 && t.as_bytes()[2] == b':')),
            "{what}: time ticks are not times: {c}"
        );
        assert!(
            c["y"].as_array().is_some_and(|y| y.len() >= 2
                && y.iter().all(|t| t
                    .as_str()
                    .is_some_and(|t| t.contains(want) || (want == "ms" && t.ends_with(" s"))))),
            "{what}: value ticks without the unit {want:?}: {c}"
        );
    }
    ms
}

fn wait_for_map(b: &Browser, nodes: usize) {
    b.wait_for(
        "the map drawn with every node",
        &format!("return document.querySelectorAll('#map .node').length >= {nodes} && !!document.querySelector('#tab-findings .finding, #tab-findings p');"),
    );
}

/// Issue 22 on the live demo: at 1440×900 and 1920×1080, light and dark.
#[test]
fn the_console_on_the_demo_reads_at_two_sizes_and_two_themes() {
    if chromedriver().is_none() {
        return;
    }
    let d = Daemon::start(&["--demo", "--demo-schedule", "healthy:5s,single-db"]);
    let url = format!("{}/", d.api);
    for (w, h) in [(1440, 900), (1920, 1080)] {
        let b = Browser::start_sized(w, h).expect("a browser");
        for theme in ["light", "dark"] {
            let what = format!("demo {w}×{h} {theme}");
            set_theme(&b, &url, theme);
            wait_for_map(&b, SHOP.len());
            b.wait_for(
                "the database SPOF",
                "return !!document.querySelector('[data-finding=\"spof/orders (postgresql)\"]');",
            );
            check_console_view(&b, &what);
            b.screenshot(&format!("dashboard-demo-{w}x{h}-{theme}.png"));
            select_and_check_charts(&b, "orders (postgresql)", &what);
            b.screenshot(&format!("dashboard-demo-{w}x{h}-{theme}-node.png"));
            // The other tabs, for the record.
            b.click_settled("aside nav button[data-tab=\"operations\"]");
            b.wait_for(
                "the entry operations with a legend",
                "return document.querySelectorAll('#tab-operations .legend-node').length > 3;",
            );
            b.screenshot(&format!("dashboard-demo-{w}x{h}-{theme}-operations.png"));
            b.click_settled("aside nav button[data-tab=\"health\"]");
            b.wait_for(
                "the ingest board",
                "return document.querySelectorAll('#tab-health .tile').length >= 6 && !!document.querySelector('#tab-health .meter');",
            );
            b.screenshot(&format!("dashboard-demo-{w}x{h}-{theme}-ingest.png"));
            let errors = b.console_errors();
            assert!(errors.is_empty(), "{what}: console errors: {errors:?}");
        }
    }
}

/// Issue 22: a link to a node and a finding, opened in a fresh browser, shows that view;
/// the back button returns to the view before.
#[test]
fn a_deep_link_reproduces_the_view_and_back_restores_the_one_before() {
    if chromedriver().is_none() {
        return;
    }
    let d = Daemon::start(&["--demo", "--demo-schedule", "healthy:5s,single-db"]);
    let url = format!("{}/", d.api);
    let first = Browser::start_sized(1440, 900).expect("a browser");
    first.open(&url);
    wait_for_map(&first, SHOP.len());
    first.wait_for(
        "the database SPOF",
        "return !!document.querySelector('[data-finding=\"spof/orders (postgresql)\"]');",
    );
    select_and_check_charts(&first, "payment-service", "deep link");
    select_and_check_charts(&first, "orders (postgresql)", "deep link");
    // Open the finding's evidence from the node panel.
    first.click_settled("#tab-node [data-finding=\"spof/orders (postgresql)\"] .evidence-toggle");
    first.wait_for(
        "the finding open in the URL",
        "return location.search.includes('finding=') && location.search.includes('node=');",
    );
    let link = first
        .js("return location.href")
        .as_str()
        .unwrap()
        .to_owned();
    first.wait_for(
        "the failures drawn",
        "return !!document.querySelector('[data-finding=\"spof/orders (postgresql)\"].open [data-chart=\"failures\"] g[data-axis=\"x\"] text');",
    );
    let fresh = Browser::start_sized(1440, 900).expect("a second browser");
    fresh.open(&link);
    fresh.wait_for(
        "the linked node and finding",
        "const t = document.getElementById('node-title');
         const card = document.querySelector('[data-finding=\"spof/orders (postgresql)\"].open');
         return !!t && t.textContent.includes('orders (postgresql)') && !!card
           && !!card.querySelector('[data-chart=\"failures\"]')
           && !document.getElementById('tab-findings').classList.contains('hidden');",
    );
    fresh.screenshot("dashboard-deep-link.png");
    // Back: the finding closes, then the node before is selected again.
    first.js("history.back(); return true;");
    first.wait_for(
        "back to the node without the finding",
        "return !location.search.includes('finding=') && location.search.includes('node=database-orders');",
    );
    first.js("history.back(); return true;");
    first.wait_for(
        "back to the node before",
        "const t = document.getElementById('node-title');
         return !!t && t.textContent.includes('payment-service') && location.search.includes('node=service-payment');",
    );
    assert!(first.console_errors().is_empty());
    assert!(fresh.console_errors().is_empty());
}

/// Issue 22 on 300 services: every node drawn (time recorded), no collisions, every node in
/// the window, legible, a click updating the panel (time recorded), groups that collapse.
#[test]
fn three_hundred_services_lay_out_legibly_and_collapse_by_group() {
    if chromedriver().is_none() {
        return;
    }
    let file = root().join("target/many-services.otlp.jsonl.gz");
    if !file.exists() {
        let ok = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
            .args(["simulate", "--scenario", "many-services", "--out"])
            .arg(&file)
            .status()
            .expect("simulate");
        assert!(ok.success());
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(["replay"])
        .arg(&file)
        .args(["--serve", "--api-listen", "127.0.0.1:0"])
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
    let url = format!("{api}/");
    let nodes = reqwest::blocking::get(format!("{api}/graph"))
        .and_then(|r| r.json::<Value>())
        .expect("the graph")["nodes"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(nodes >= 300, "{nodes} nodes");
    let mut timings = Vec::new();
    for (w, h) in [(1440, 900), (1920, 1080)] {
        let b = Browser::start_sized(w, h).expect("a browser");
        for theme in ["light", "dark"] {
            let what = format!("300 services {w}×{h} {theme}");
            set_theme(&b, &url, theme);
            wait_for_map(&b, nodes);
            b.wait_for(
                "the map's drawing recorded",
                "return performance.getEntriesByName('chokepoint-map-drawn').length > 0;",
            );
            let drawn = b.js(
                "const e = performance.getEntriesByName('chokepoint-map-drawn');
                 return [e[e.length - 1].startTime, e[e.length - 1].detail.nodes, e[e.length - 1].detail.layout_ms];",
            );
            check_console_view(&b, &what);
            b.screenshot(&format!("dashboard-300-{w}x{h}-{theme}.png"));
            let click_ms = select_and_check_charts(&b, "checkout-core-2", &what);
            // Zoomed in, names are legible and still do not collide.
            for _ in 0..10 {
                if b.js("return !document.getElementById('map').classList.contains('lod-names');")
                    == Value::Bool(true)
                {
                    break;
                }
                b.click_settled("#zoom-in");
            }
            let layout = b.js(LAYOUT);
            assert_eq!(layout["overlap_count"], 0, "{what} zoomed: {layout}");
            assert!(
                layout["labels"].as_u64().unwrap_or(0) > 0,
                "{what} zoomed in shows no names: {layout}"
            );
            b.screenshot(&format!("dashboard-300-{w}x{h}-{theme}-zoomed.png"));
            timings.push(json!({"size": format!("{w}x{h}"), "theme": theme,
                "map_drawn_ms_after_navigation": drawn[0], "nodes": drawn[1], "layout_ms": drawn[2], "click_to_panel_ms": click_ms}));
        }
        // Groups: collapse every domain, one node each; a click on one opens it again.
        b.click_settled("#zoom-fit");
        b.js("document.getElementById('groups').open = true; return true;");
        b.click_settled("#groups-list button");
        b.wait_for(
            "the domains collapsed",
            "return document.querySelectorAll('#map .node[data-type=\"group\"]').length >= 12
               && document.querySelectorAll('#map .node').length < 40 && location.search.includes('collapse=');",
        );
        let layout = b.js(LAYOUT);
        assert_eq!(layout["overlap_count"], 0, "collapsed: {layout}");
        assert_eq!(layout["outside"], json!([]), "collapsed: {layout}");
        b.screenshot(&format!("dashboard-300-{w}x{h}-collapsed.png"));
        b.click_settled("#map .node[data-node^=\"checkout-\"]");
        b.wait_for(
            "checkout expanded",
            "return !!document.querySelector('#map .node[data-node=\"checkout-api\"]');",
        );
        b.click_settled("#groups-list button:nth-of-type(2)");
        b.wait_for(
            "every group expanded again",
            &format!("return document.querySelectorAll('#map .node').length >= {nodes};"),
        );
        let errors = b.console_errors();
        assert!(errors.is_empty(), "console errors: {errors:?}");
    }
    let out = root().join("target/dashboard-timings.json");
    std::fs::write(&out, serde_json::to_string_pretty(&timings).unwrap()).unwrap();
    eprintln!("dashboard timings (also in {}): {timings:?}", out.display());
    let _ = child.kill();
    let _ = child.wait();
}
