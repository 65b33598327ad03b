//! The node-heat page in a real headless Chromium (Debian `chromium` and `chromium-driver`,
//! driven over WebDriver): the extender serves the bundled example cluster in snapshot mode; the
//! page must show every node, mark the zero-reading node suspect and the stale and missing ones
//! too, rank the nodes for a pasted pod, name what is wrong with a bad manifest, and log no
//! console error. A screenshot is kept at `target/screenshots/status-page.png`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use realload_test_support::{KillOnDrop, free_port, require_program, temp_dir};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_realload-extender");

/// One HTTP/1.1 exchange; the JSON body of the answer. The body is read by its Content-Length:
/// chromedriver says `Connection: close` but keeps the connection open.
async fn call(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let exchange = async {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            response.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&response);
            if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                let length = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                });
                if length.is_some_and(|len| rest.len() >= len) || n == 0 {
                    return rest.to_string();
                }
            }
            assert!(n > 0, "{method} {path}: connection closed mid-answer");
        }
    };
    let text = tokio::time::timeout(Duration::from_secs(90), exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within 90 s"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
}

struct Browser {
    port: u16,
    session: String,
    _driver: KillOnDrop,
}

impl Drop for Browser {
    /// chromedriver and every Chromium process it started, also when the test failed before
    /// closing its session.
    fn drop(&mut self) {
        let group = i32::try_from(self._driver.0.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(group) = group {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

impl Browser {
    async fn start(profile: &Path) -> Browser {
        let chromium = require_program("chromium", "chromium");
        let chromedriver = require_program("chromedriver", "chromium-driver");
        let port = free_port();
        // In its own process group, with the Chromium it starts: a failed test kills both.
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let driver = KillOnDrop(driver);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver never listened"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Headless, and nothing but loopback: background networking off, every host name
        // unresolvable except the one the page is served from.
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--window-size=1280,1400",
        ]
        .into_iter()
        .map(String::from)
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let created = call(
            port,
            "POST",
            "/session",
            Some(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": chromium, "args": args},
                "goog:loggingPrefs": {"browser": "ALL"},
            }}})),
        )
        .await;
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_string();
        Browser {
            port,
            session,
            _driver: driver,
        }
    }

    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let answer = call(self.port, method, &path, body.as_ref()).await;
        assert!(
            answer["value"]["error"].is_null(),
            "{method} {path}: {answer}"
        );
        answer["value"].clone()
    }

    async fn script(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Polls a script until it returns something other than null.
    async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.script(script).await;
            if !v.is_null() {
                return v;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}: timed out");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        let found = self
            .command(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        let id = found["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap()
            .to_string();
        self.command("POST", &format!("/element/{id}/click"), Some(json!({})))
            .await;
    }

    async fn console_errors(&self) -> Vec<Value> {
        let entries = self
            .command("POST", "/se/log", Some(json!({"type": "browser"})))
            .await;
        entries
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING")
            .collect()
    }

    async fn screenshot(&self, to: &Path) {
        let encoded = self.command("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, png).unwrap();
    }

    async fn close(self) {
        let path = format!("/session/{}", self.session);
        call(self.port, "DELETE", &path, None).await;
    }
}

fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("screenshots/status-page.png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_heat_page_shows_every_node_and_its_reading_quality_in_chromium() {
    let dir = temp_dir("status-page", "chromium");
    let admin = free_port();
    let api = free_port();
    let snapshot = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/example/cluster.json");
    let log = dir.join("extender.log");
    let _extender = KillOnDrop(
        Command::new(BIN)
            .args([
                "serve",
                "--snapshot",
                snapshot,
                "--now",
                "2026-11-22T01:05:00Z",
            ])
            .arg(format!("--listen=127.0.0.1:{api}"))
            .arg(format!("--admin-listen=127.0.0.1:{admin}"))
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", admin))
        .await
        .is_err()
    {
        assert!(tokio::time::Instant::now() < deadline, "no admin listener");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // one decision for the page to list: kube-scheduler asking to rank three nodes
    let ask = json!({"Pod": {"metadata": {"name": "checkout-1", "namespace": "shop", "uid": "u1"},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}},
        "NodeNames": ["node-a", "node-b", "node-g"]});
    let ranked = call(api, "POST", "/prioritize", Some(&ask)).await;
    assert_eq!(ranked.as_array().map(Vec::len), Some(3), "{ranked}");

    let browser = Browser::start(&dir.join("profile")).await;
    browser
        .command(
            "POST",
            "/url",
            Some(json!({"url": format!("http://127.0.0.1:{admin}/")})),
        )
        .await;
    browser
        .wait_for(
            "the page drew /debug/nodes",
            "return document.body.dataset.loaded === 'true' ? true : null",
        )
        .await;
    let tiles = browser
        .script(
            "return [...document.querySelectorAll('#nodes .tile')].map(t => ({
                node: t.dataset.node, quality: t.dataset.quality, known: t.dataset.known,
                verdict: t.dataset.verdict, unknown: t.classList.contains('unknown'),
                background: t.style.background, text: t.textContent }))",
        )
        .await;
    let tiles = tiles.as_array().unwrap();
    let tile = |name: &str| {
        tiles
            .iter()
            .find(|t| t["node"] == name)
            .unwrap_or_else(|| panic!("{name} has no tile: {tiles:?}"))
    };
    let names: Vec<&str> = tiles.iter().map(|t| t["node"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "node-a", "node-b", "node-c", "node-d", "node-e", "node-f", "node-g", "node-h"
        ]
    );
    // the zero node is marked suspect and drawn as unknown, not as a cool node
    let zero = tile("node-c");
    assert_eq!(zero["quality"], "suspect-zero");
    assert_eq!(zero["unknown"], true);
    assert!(
        zero["text"].as_str().unwrap().contains("suspect zero"),
        "{zero}"
    );
    assert_eq!(tile("node-d")["quality"], "stale");
    assert!(tile("node-d")["text"].as_str().unwrap().contains("stale"));
    assert_eq!(tile("node-f")["quality"], "missing");
    // a valid node is coloured by its load; the hot ones are filtered out, with the reason
    let cool = tile("node-a");
    assert_eq!(
        (&cool["unknown"], &cool["verdict"]),
        (&json!(false), &json!("pass"))
    );
    assert!(
        cool["background"].as_str().unwrap().contains("rgb"),
        "{cool}"
    );
    let hot = tile("node-b");
    assert_eq!(hot["verdict"], "reject");
    assert!(
        hot["text"]
            .as_str()
            .unwrap()
            .contains("cpu-avg-5m above 0.85"),
        "{hot}"
    );
    // the burst node shows its hot-spot addition
    assert!(
        tile("node-e")["text"].as_str().unwrap().contains("+43%"),
        "{}",
        tile("node-e")
    );
    assert!(
        tile("node-g")["text"]
            .as_str()
            .unwrap()
            .contains("cordoned")
    );
    let summary = browser
        .script("return document.getElementById('summary').textContent")
        .await;
    assert!(
        summary.as_str().unwrap().contains("breaker: closed"),
        "{summary}"
    );

    let decisions = browser
        .script("return document.querySelector('#decisions tbody').textContent")
        .await;
    assert!(
        decisions.as_str().unwrap().contains("shop/checkout-1"),
        "{decisions}"
    );

    // what-if: the default pod in the box, ranked as explain ranks it
    browser.click("#rank").await;
    let ranked = browser
        .wait_for(
            "the what-if ranking",
            "const rows = document.querySelectorAll('#whatif-table tbody tr');
             return rows.length ? [...rows].map(r => r.dataset.node) : null",
        )
        .await;
    assert_eq!(ranked.as_array().unwrap().len(), 8, "{ranked}");
    assert_eq!(ranked[0], "node-a", "{ranked}");
    // how the pod is counted: the what-if pod has no controller, so the factors
    let usage = browser
        .script("return document.getElementById('whatif-usage').textContent")
        .await;
    assert_eq!(
        usage.as_str().unwrap(),
        "counted at 0.85 of its CPU request (hotspot.cpuFactor) and 0.70 of its memory request (hotspot.memoryFactor); no controller, so no workload to learn from",
        "{usage}"
    );
    // a manifest that is not a Pod: the page says what is wrong
    browser
        .script("document.getElementById('pod').value = 'kind: Deployment\\nmetadata: {name: x}'; return null")
        .await;
    browser.click("#rank").await;
    let error = browser
        .wait_for(
            "the what-if error",
            "const e = document.getElementById('whatif-error'); return e ? e.textContent : null",
        )
        .await;
    assert!(
        error
            .as_str()
            .unwrap()
            .contains("not a Pod manifest: kind is Deployment"),
        "{error}"
    );

    let shot = screenshot_path();
    browser.screenshot(&shot).await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    let errors = browser.console_errors().await;
    // a manifest the server refuses is a 400, which the browser logs; nothing else may be there
    let unexpected: Vec<&Value> = errors
        .iter()
        .filter(|e| !e["message"].as_str().unwrap_or("").contains("debug/explain - Failed to load resource: the server responded with a status of 400"))
        .collect();
    assert!(unexpected.is_empty(), "console errors: {unexpected:?}");
    browser.close().await;
}
