//! A small WebDriver client for browser tests of the server-rendered workbench: drives
//! Debian's headless Chromium (`/usr/bin/chromium`) through chromedriver, over the W3C
//! WebDriver HTTP protocol, with the few commands the tests use, screenshots, the
//! browser console and axe-core accessibility checks.
//!
//! Hand-written on reqwest rather than a WebDriver crate: the subset is small, and it
//! keeps the dependency tree as it is. `scripts/services` installs Chromium and
//! chromedriver; without them [`Browser::start`] fails (tests never skip).

use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use base64::Engine as _;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

/// The key under which WebDriver returns an element reference (W3C, fixed).
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long chromedriver may take to answer `GET /status` with `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);
/// Chromium switches for every session; an extra argument with the same switch name
/// replaces the default (`--window-size=375,667`, `--lang=zh-CN`).
const DEFAULT_ARGS: [&str; 6] = [
    "--headless=new",
    "--window-size=1366,768",
    // Tests run as root in containers, where Chromium's sandbox cannot start.
    "--no-sandbox",
    // /dev/shm is tiny in containers; Chromium crashes on big pages otherwise.
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--lang=en-US",
];
/// axe-core, vendored (see `assets/axe/README.md`), injected into pages by [`Browser::axe`].
const AXE_SOURCE: &str = include_str!("../assets/axe/axe.min.js");
/// Runs axe on the whole document and hands back what the tests need of each violation
/// (the full result is large and mostly not serialisable).
const AXE_RUN: &str = r#"
const done = arguments[arguments.length - 1];
axe.run(document, { resultTypes: ['violations'] }).then(
  (r) => done({ violations: r.violations.map((v) => ({
    id: v.id, impact: v.impact || '', help: v.help, helpUrl: v.helpUrl,
    targets: v.nodes.map((n) => n.target.flat(Infinity).join(' ')),
  })) }),
  (e) => done({ error: String(e && e.stack || e) }),
);
"#;

/// WebDriver key codes for [`Browser::send_keys_to_active`] and [`Element::send_keys`].
pub mod keys {
    pub const BACKSPACE: &str = "\u{E003}";
    pub const TAB: &str = "\u{E004}";
    pub const ENTER: &str = "\u{E007}";
    /// Held until the end of the keys sent with it: `[SHIFT, TAB].concat()` is Shift+Tab.
    pub const SHIFT: &str = "\u{E008}";
    pub const CONTROL: &str = "\u{E009}";
    pub const ALT: &str = "\u{E00A}";
    pub const ESCAPE: &str = "\u{E00C}";
    pub const SPACE: &str = "\u{E00D}";
    pub const ARROW_LEFT: &str = "\u{E012}";
    pub const ARROW_UP: &str = "\u{E013}";
    pub const ARROW_RIGHT: &str = "\u{E014}";
    pub const ARROW_DOWN: &str = "\u{E015}";
}

/// Modifier keys, which WebDriver's "send keys" keeps pressed until the end of the text.
const MODIFIERS: [char; 4] = ['\u{E008}', '\u{E009}', '\u{E00A}', '\u{E03D}'];

/// chromedriver, in its own process group so that dropping it also ends the Chromium
/// processes it started, even when a test panics half-way.
#[derive(Debug)]
struct Driver {
    child: Child,
    port: u16,
    binary: PathBuf,
}

impl Driver {
    /// Starts chromedriver on a free port and waits until it is ready; retries on a new
    /// port when another process took the port between finding and binding it.
    async fn start(http: &reqwest::Client) -> Result<Driver> {
        let binary = chromedriver_path()?;
        let mut last = anyhow!("chromedriver did not start");
        for _ in 0..3 {
            let port = free_port()?;
            let child = Command::new(&binary)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .with_context(|| format!("spawn {}", binary.display()))?;
            let mut driver = Driver {
                child,
                port,
                binary: binary.clone(),
            };
            match driver.wait_ready(http).await {
                Ok(()) => return Ok(driver),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Polls `GET /status` until chromedriver says it accepts sessions.
    async fn wait_ready(&mut self, http: &reqwest::Client) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("http://127.0.0.1:{}/status", self.port);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before it was ready on port {}",
                    self.binary.display(),
                    self.port
                );
            }
            if let Ok(response) = http.get(&url).send().await {
                let status: Value = response.json().await.unwrap_or_default();
                if status["value"]["ready"] == Value::Bool(true) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} was not ready on port {} after {READY_TIMEOUT:?}",
                    self.binary.display(),
                    self.port
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Driver {
    /// SIGTERM to the whole group (chromedriver and Chromium), then SIGKILL to whatever
    /// is left after a grace period.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// `chromedriver` from `PATH`, else Debian's.
fn chromedriver_path() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromedriver"))
        .chain([PathBuf::from(CHROMEDRIVER)])
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| anyhow!("chromedriver not found: run scripts/services"))
}

/// A port nobody listens on now (the kernel's pick); racy, hence the retries above.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The session's capabilities: headless Chromium with the default switches, overridden
/// or extended by `extra_args`, and the browser console log enabled.
fn capabilities(extra_args: &[&str]) -> Value {
    let name = |arg: &str| arg.split('=').next().unwrap_or_default().to_string();
    let overridden: Vec<String> = extra_args.iter().map(|a| name(a)).collect();
    let args: Vec<&str> = DEFAULT_ARGS
        .iter()
        .filter(|a| !overridden.contains(&name(a)))
        .chain(extra_args)
        .copied()
        .collect();
    let lang = args
        .iter()
        .rev()
        .find_map(|a| a.strip_prefix("--lang="))
        .unwrap_or("en-US");
    // With --headless=new, --lang sets neither Accept-Language nor navigator.languages;
    // the profile preference sets both.
    let mut options = json!({ "args": args, "prefs": { "intl.accept_languages": lang } });
    if Path::new(CHROMIUM).exists() {
        options["binary"] = json!(CHROMIUM);
    }
    json!({ "capabilities": { "alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": options,
        "goog:loggingPrefs": { "browser": "ALL" },
    } } })
}

/// Sends one WebDriver command; a WebDriver error (`{"value":{"error","message"}}` with a
/// non-2xx status) becomes an error naming the command, so failures read on their own.
async fn command(
    http: &reqwest::Client,
    method: Method,
    base: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    let what = format!(
        "WebDriver {method} {}",
        if path.is_empty() { base } else { path }
    );
    let mut request = http.request(method, format!("{base}{path}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.with_context(|| what.clone())?;
    let status = response.status();
    let mut reply: Value = response
        .json()
        .await
        .with_context(|| format!("{what}: HTTP {status}, reply is not JSON"))?;
    let value = reply["value"].take();
    if !status.is_success() {
        let error = value["error"].as_str().unwrap_or("unknown error");
        let message = value["message"].as_str().unwrap_or_default();
        bail!("{what}: {error}: {message}");
    }
    Ok(value)
}

/// The workbench screenshot directory: `<target>/workbench`, where `<target>` is
/// `CARGO_TARGET_DIR` (relative to the workspace) or the workspace's `target`.
pub fn screenshot_dir() -> PathBuf {
    let workspace = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| workspace.join(dir))
        .unwrap_or_else(|| workspace.join("target"));
    target.join("workbench")
}

/// One accessibility violation reported by axe-core.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AxeViolation {
    /// The axe rule, e.g. `image-alt`, `label`, `color-contrast`.
    pub id: String,
    /// `minor`, `moderate`, `serious` or `critical`.
    pub impact: String,
    pub help: String,
    pub help_url: String,
    /// One CSS selector per offending node (frames and shadow roots joined by spaces).
    pub targets: Vec<String>,
}

impl AxeViolation {
    /// Whether the violation blocks or seriously hinders users: what the tests fail on.
    pub fn is_serious(&self) -> bool {
        matches!(self.impact.as_str(), "serious" | "critical")
    }
}

impl fmt::Display for AxeViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (id, impact, help) = (&self.id, &self.impact, &self.help);
        write!(f, "{id} ({impact}): {help} at {}", self.targets.join(", "))
    }
}

/// The serious and critical violations, for `assert!(serious(&v).is_empty(), ...)`.
pub fn serious(violations: &[AxeViolation]) -> Vec<&AxeViolation> {
    violations.iter().filter(|v| v.is_serious()).collect()
}

/// A headless Chromium session. Dropping it ends the session and kills chromedriver
/// and Chromium.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    /// Whether Drop must still delete the session.
    open: bool,
    driver: Driver,
}

impl Browser {
    /// Headless Chromium, 1366×768, `en-US`.
    pub async fn start() -> Result<Browser> {
        Browser::start_with(&[]).await
    }

    /// Headless Chromium with extra switches; one with the name of a default switch
    /// replaces it. `--lang=zh-CN` also makes `zh-CN` the browser's Accept-Language
    /// and `navigator.languages` (through the `intl.accept_languages` preference).
    pub async fn start_with(extra_args: &[&str]) -> Result<Browser> {
        // Local connections only: a proxy from the environment must not see them.
        let http = reqwest::Client::builder().no_proxy().build()?;
        let driver = Driver::start(&http).await?;
        let url = format!("http://127.0.0.1:{}", driver.port);
        let caps = Some(capabilities(extra_args));
        let created = command(&http, Method::POST, &url, "/session", caps)
            .await
            .with_context(|| format!("start Chromium through {}", driver.binary.display()))?;
        let id = created["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("new session without sessionId: {created}"))?;
        let session = format!("{url}/session/{id}");
        Ok(Browser {
            http,
            session,
            open: true,
            driver,
        })
    }

    /// Ends the session (Chromium quits cleanly); dropping does the same, best-effort.
    pub async fn close(mut self) -> Result<()> {
        self.open = false;
        self.delete("").await
    }

    async fn get(&self, path: &str) -> Result<Value> {
        command(&self.http, Method::GET, &self.session, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        command(&self.http, Method::POST, &self.session, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        command(&self.http, Method::DELETE, &self.session, path, None).await?;
        Ok(())
    }

    /// Navigates and waits for the page to load.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.post("/url", json!({ "url": url })).await?;
        Ok(())
    }

    /// The current page's URL, after redirects and form submissions.
    pub async fn url(&self) -> Result<String> {
        string(self.get("/url").await?)
    }

    /// The current page's `<title>`.
    pub async fn title(&self) -> Result<String> {
        string(self.get("/title").await?)
    }

    /// The first element matching `css`; an error when there is none.
    pub async fn find(&self, css: &str) -> Result<Element<'_>> {
        let found = self.post("/element", by_css(css)).await;
        let found = found.with_context(|| format!("find {css:?}"))?;
        self.element(&found)
    }

    /// Every element matching `css`, in document order.
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element<'_>>> {
        let found = self.post("/elements", by_css(css)).await;
        let found = found.with_context(|| format!("find all {css:?}"))?;
        let found = found.as_array().cloned().unwrap_or_default();
        found.iter().map(|e| self.element(e)).collect()
    }

    /// The first element matching `css`, if any: for asserting absence.
    pub async fn try_find(&self, css: &str) -> Result<Option<Element<'_>>> {
        Ok(self.find_all(css).await?.into_iter().next())
    }

    /// Waits until an element matches `css`: for pages that change after loading.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element<'_>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(element) = self.try_find(css).await? {
                return Ok(element);
            }
            if Instant::now() > deadline {
                let url = self.url().await.unwrap_or_default();
                bail!("no element matched {css:?} on {url} within {timeout:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The focused element (`document.activeElement`): for keyboard-navigation tests.
    pub async fn active_element(&self) -> Result<Element<'_>> {
        let active = self.get("/element/active").await?;
        self.element(&active)
    }

    /// Types `keys` into whatever has focus, as a keyboard would ([`keys`]: `TAB`,
    /// `ENTER`, ...); modifiers stay pressed until the end of `keys`.
    pub async fn send_keys_to_active(&self, keys: &str) -> Result<()> {
        let mut actions = Vec::new();
        for key in keys.chars() {
            actions.push(json!({ "type": "keyDown", "value": key.to_string() }));
            if !MODIFIERS.contains(&key) {
                actions.push(json!({ "type": "keyUp", "value": key.to_string() }));
            }
        }
        let keyboard = json!({ "type": "key", "id": "keyboard", "actions": actions });
        self.post("/actions", json!({ "actions": [keyboard] }))
            .await?;
        // Releases the modifiers still held.
        self.delete("/actions").await
    }

    /// Runs `script` as a function body (`return ...` gives the result); `args` are its
    /// `arguments` ([`Element::as_arg`] passes an element).
    pub async fn execute(&self, script: &str, args: &[Value]) -> Result<Value> {
        let body = json!({ "script": script, "args": args });
        self.post("/execute/sync", body).await
    }

    /// Like [`Browser::execute`], but the result is what the script passes to the
    /// callback given as its last argument, for promises.
    pub async fn execute_async(&self, script: &str, args: &[Value]) -> Result<Value> {
        let body = json!({ "script": script, "args": args });
        self.post("/execute/async", body).await
    }

    /// The viewport as PNG.
    pub async fn screenshot_png(&self) -> Result<Vec<u8>> {
        let encoded = string(self.get("/screenshot").await?)?;
        let png = base64::engine::general_purpose::STANDARD.decode(encoded)?;
        Ok(png)
    }

    /// Saves the viewport as `<target>/workbench/<name>.png` (see [`screenshot_dir`]),
    /// for looking at what a test saw; returns the path.
    pub async fn save_screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self.screenshot_png().await?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// The browser console's errors (level SEVERE: `console.error`, uncaught exceptions,
    /// failed loads) since the last call: reading drains chromedriver's log.
    pub async fn console_errors(&self) -> Result<Vec<String>> {
        let entries = self.post("/se/log", json!({ "type": "browser" })).await?;
        let entries = entries.as_array().cloned().unwrap_or_default();
        let errors = entries
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect();
        Ok(errors)
    }

    /// Runs axe-core on the current page (injecting it first if the page has none) and
    /// returns its violations; see [`serious`].
    pub async fn axe(&self) -> Result<Vec<AxeViolation>> {
        let present = self.execute("return typeof window.axe === 'object';", &[]);
        if present.await? != Value::Bool(true) {
            let inject = [AXE_SOURCE, "\nreturn true;"].concat();
            self.execute(&inject, &[])
                .await
                .context("inject axe-core")?;
        }
        let mut result = self.execute_async(AXE_RUN, &[]).await?;
        if let Some(error) = result.get("error") {
            bail!("axe.run failed: {error}");
        }
        let violations = serde_json::from_value(result["violations"].take())?;
        Ok(violations)
    }

    fn element(&self, reference: &Value) -> Result<Element<'_>> {
        let id = reference[ELEMENT_KEY]
            .as_str()
            .ok_or_else(|| anyhow!("not an element reference: {reference}"))?;
        Ok(Element {
            browser: self,
            id: id.to_string(),
        })
    }
}

impl Drop for Browser {
    /// Deletes the session so Chromium quits cleanly; the driver's own drop then ends
    /// the process group whatever happened here.
    fn drop(&mut self) {
        if self.open {
            delete_session_blocking(self.driver.port, &self.session);
        }
    }
}

/// `DELETE /session/<id>` over a plain socket: Drop cannot await, and may run inside
/// (or outside) a Tokio runtime. Waits for the reply's first bytes, i.e. until
/// chromedriver has quit Chromium, at most 10 s.
fn delete_session_blocking(port: u16, session_url: &str) {
    let Some((_, path)) = session_url.split_once(&format!("127.0.0.1:{port}")) else {
        return;
    };
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let timeout = Some(Duration::from_secs(10));
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    let request = format!(
        "DELETE {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let _ = stream.read(&mut [0; 512]);
    }
}

fn by_css(css: &str) -> Value {
    json!({ "using": "css selector", "value": css })
}

fn string(value: Value) -> Result<String> {
    match value {
        Value::String(s) => Ok(s),
        other => bail!("expected a string from WebDriver, got {other}"),
    }
}

/// An element of the current page; stale once the page changes.
#[derive(Clone, Debug)]
pub struct Element<'b> {
    browser: &'b Browser,
    id: String,
}

impl Element<'_> {
    fn path(&self, command: &str) -> String {
        format!("/element/{}/{command}", self.id)
    }

    /// The rendered text (what a user sees, not `textContent`).
    pub async fn text(&self) -> Result<String> {
        string(self.browser.get(&self.path("text")).await?)
    }

    /// Clicks it (after scrolling it into view); waits for a navigation it starts.
    pub async fn click(&self) -> Result<()> {
        self.browser.post(&self.path("click"), json!({})).await?;
        Ok(())
    }

    /// An attribute (or, as WebDriver does, the property of that name), if set.
    pub async fn attr(&self, name: &str) -> Result<Option<String>> {
        let value = self
            .browser
            .get(&self.path(&format!("attribute/{name}")))
            .await?;
        Ok(value.as_str().map(str::to_string))
    }

    /// Empties an input or textarea.
    pub async fn clear(&self) -> Result<()> {
        self.browser.post(&self.path("clear"), json!({})).await?;
        Ok(())
    }

    /// Focuses it and types `text` ([`keys`] for special keys).
    pub async fn send_keys(&self, text: &str) -> Result<()> {
        let body = json!({ "text": text });
        self.browser.post(&self.path("value"), body).await?;
        Ok(())
    }

    /// The first element inside this one matching `css`; an error when there is none.
    pub async fn find_css(&self, css: &str) -> Result<Element<'_>> {
        let found = self.browser.post(&self.path("element"), by_css(css)).await;
        let found = found.with_context(|| format!("find {css:?} inside an element"))?;
        self.browser.element(&found)
    }

    /// The element as an argument of [`Browser::execute`].
    pub fn as_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }
}
