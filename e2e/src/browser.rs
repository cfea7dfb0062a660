//! A real headless Chromium over WebDriver (Debian's `chromium` and `chromium-driver`,
//! installed by `scripts/setup`), driven with fantoccini: for the dashboard's browser tests.
//!
//! [`Browser::start`] runs a chromedriver of its own on a free port and opens a session
//! (JavaScript on or off, optional `--host-resolver-rules` to play DNS rebinding), with the
//! browser's console and network logs enabled, so that a test can ask for the console errors
//! and the failed requests of what it loaded ([`Browser::problems`]).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

use crate::{Error, Result};

/// How to start the browser.
#[derive(Clone, Debug)]
pub struct Options {
    /// Run JavaScript.
    pub javascript: bool,
    /// Chromium's `--host-resolver-rules` (e.g. `MAP rebind.test 127.0.0.1`).
    pub host_rules: Option<String>,
    /// Window size.
    pub size: (u32, u32),
}

impl Default for Options {
    fn default() -> Self {
        Self {
            javascript: true,
            host_rules: None,
            size: (1400, 1000),
        }
    }
}

/// A browser session and its chromedriver (killed on drop).
#[derive(Debug)]
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
}

/// chromedriver's `POST /session/{id}/se/log`: the entries of a log since the last call.
#[derive(Debug)]
struct GetLog(&'static str);

impl WebDriverCompatibleCommand for GetLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": self.0}).to_string()),
        )
    }
}

fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::Io(format!("finding a free port: {e}")))
}

/// The chromedriver binary: `$TULLE_CHROMEDRIVER`, else `chromedriver` on the PATH.
pub fn chromedriver() -> String {
    std::env::var("TULLE_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into())
}

/// The Chromium binary: `$TULLE_CHROMIUM`, else Debian's `/usr/bin/chromium`.
pub fn chromium() -> String {
    std::env::var("TULLE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start(opts: Options) -> Result<Browser> {
        let port = free_port()?;
        let driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::Io(format!(
                    "cannot run {} ({e}): run scripts/setup, which installs Debian's chromium and chromium-driver",
                    chromedriver()
                ))
            })?;
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-extensions".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            format!("--window-size={},{}", opts.size.0, opts.size.1),
        ];
        if let Some(rules) = &opts.host_rules {
            args.push(format!("--host-resolver-rules={rules}"));
        }
        let mut chrome = json!({"binary": chromium(), "args": args});
        if !opts.javascript {
            chrome["prefs"] = json!({"profile.managed_default_content_settings.javascript": 2});
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": chrome,
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"},
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!("a JSON object"),
        };
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps);
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut driver = driver;
        loop {
            match builder.connect(&url).await {
                Ok(client) => return Ok(Browser { client, driver }),
                Err(e) if Instant::now() >= deadline => {
                    let _ = driver.kill();
                    return Err(Error::Io(format!(
                        "cannot open a Chromium session through {url}: {e}"
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Loads `url` (waits for the load event).
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client
            .goto(url)
            .await
            .map_err(|e| Error::Io(format!("loading {url}: {e}")))
    }

    /// Runs a script (JavaScript must be on) and returns its value.
    pub async fn eval(&self, script: &str) -> Result<Value> {
        self.client
            .execute(script, Vec::new())
            .await
            .map_err(|e| Error::Io(format!("running a script: {e}")))
    }

    async fn log(&self, kind: &'static str) -> Result<Vec<Value>> {
        let v = self
            .client
            .issue_cmd(GetLog(kind))
            .await
            .map_err(|e| Error::Io(format!("reading the {kind} log: {e}")))?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Console errors and failed requests to `origin` since the last call: console
    /// messages of level SEVERE, and requests answered with 4xx/5xx or failed (not those
    /// cancelled, as an event stream is when its page goes away).
    pub async fn problems(&self, origin: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for e in self.log("browser").await? {
            if e["level"] == "SEVERE" {
                out.push(format!(
                    "console: {}",
                    e["message"].as_str().unwrap_or_default()
                ));
            }
        }
        for e in self.log("performance").await? {
            let Some(m) = e["message"]
                .as_str()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
            else {
                continue;
            };
            let m = &m["message"];
            let params = &m["params"];
            match m["method"].as_str().unwrap_or_default() {
                "Network.responseReceived" => {
                    let r = &params["response"];
                    let url = r["url"].as_str().unwrap_or_default();
                    let status = r["status"].as_u64().unwrap_or(0);
                    if url.starts_with(origin) && status >= 400 {
                        out.push(format!("request: {url} answered {status}"));
                    }
                }
                "Network.loadingFailed" if params["canceled"] != true => {
                    out.push(format!(
                        "request {} failed: {}",
                        params["requestId"],
                        params["errorText"].as_str().unwrap_or_default()
                    ));
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Saves a PNG screenshot of the viewport.
    pub async fn screenshot(&self, path: &std::path::Path) -> Result<()> {
        let png = self
            .client
            .screenshot()
            .await
            .map_err(|e| Error::Io(format!("screenshot: {e}")))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
        }
        std::fs::write(path, png).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
    }

    /// Saves a PNG screenshot of the whole page (the window is made as tall as the page,
    /// up to `max_height`). Needs JavaScript.
    pub async fn full_screenshot(&self, path: &std::path::Path, max_height: u32) -> Result<()> {
        let h = self
            .eval("return Math.ceil(document.documentElement.scrollHeight);")
            .await?
            .as_u64()
            .unwrap_or(1000) as u32;
        let (w, _) = self
            .client
            .get_window_size()
            .await
            .map_err(|e| Error::Io(format!("window size: {e}")))?;
        self.client
            .set_window_size(w as u32, h.clamp(600, max_height) + 120)
            .await
            .map_err(|e| Error::Io(format!("window size: {e}")))?;
        self.screenshot(path).await
    }

    /// Ends the session and chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
