//! A tiny W3C WebDriver client over `std::net::TcpStream` and serde_json, enough to drive
//! Debian's headless chromium through `chromedriver`: start the driver on a free port, open a
//! session, navigate, find elements by CSS selector, click, type, read text and attributes,
//! take a screenshot, end the session. Every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Finds `chromedriver` and `chromium` (Debian's paths first). `None` when either is missing.
pub fn tools() -> Option<(String, String)> {
    let find = |names: &[&str]| {
        names
            .iter()
            .find(|p| std::path::Path::new(p).exists())
            .map(|p| p.to_string())
    };
    let driver = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])?;
    let browser = find(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"])?;
    Some((driver, browser))
}

/// A running chromedriver (killed on drop).
pub struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Driver {
    /// Starts `driver` on a free loopback port and waits (bounded) until it answers.
    pub fn start(driver: &str) -> Driver {
        let port = super::free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let d = Driver { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, v)) = d.call("GET", "/status", None) {
                if v["value"]["ready"].as_bool() == Some(true) {
                    return d;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One HTTP/1.1 request to the driver; returns status and JSON body.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> std::io::Result<(u16, Value)> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{payload}",
            self.addr,
            payload.len()
        );
        s.write_all(req.as_bytes())?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut len: Option<usize> = None;
        let mut chunked = false;
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().ok();
                }
                if k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked") {
                    chunked = true;
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
                if n == 0 {
                    break;
                }
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk)?;
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = len {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        } else {
            r.read_to_end(&mut body)?;
        }
        let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok((status, v))
    }

    /// A new headless browser session.
    pub fn session(&self, browser: &str) -> Session<'_> {
        self.session_with(browser, &[])
    }

    /// A new headless browser session with extra chromium arguments.
    pub fn session_with(&self, browser: &str, extra: &[&str]) -> Session<'_> {
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
        ];
        args.extend_from_slice(extra);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser,
                "args": args
            },
            "timeouts": {"implicit": 0, "pageLoad": 30000, "script": 30000}
        }}});
        let (status, v) = self
            .call("POST", "/session", Some(&caps))
            .expect("new session");
        assert_eq!(status, 200, "new session: {v}");
        let id = v["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        Session { driver: self, id }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session (deleted on drop).
pub struct Session<'d> {
    driver: &'d Driver,
    id: String,
}

impl Session<'_> {
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let full = format!("/session/{}{path}", self.id);
        let (status, v) = self
            .driver
            .call(method, &full, body.as_ref())
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if status != 200 {
            return Err(format!("{method} {path}: {status} {v}"));
        }
        Ok(v["value"].clone())
    }

    /// Opens `url` (waits for the page load).
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The current page's title.
    pub fn title(&self) -> String {
        self.cmd("GET", "/title", None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The page's HTML as the browser has it now (for failure messages).
    pub fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The first element matching `css`, if there is one now.
    pub fn find_now(&self, css: &str) -> Option<String> {
        let v = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .ok()?;
        v[ELEMENT].as_str().map(str::to_string)
    }

    /// Waits (at most `timeout`) for an element matching `css`.
    pub fn find(&self, css: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.find_now(css) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no element {css:?} within {timeout:?} on {:?}; page:\n{}",
                self.title(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The element that has the keyboard focus.
    pub fn active(&self) -> String {
        let v = self
            .cmd("GET", "/element/active", None)
            .unwrap_or_else(|e| panic!("{e}"));
        v[ELEMENT].as_str().unwrap_or_default().to_string()
    }

    /// Presses keys (W3C key codes, e.g. `"\u{E004}"` Tab, `"\u{E007}"` Enter) on whatever
    /// has the focus, like a keyboard user.
    pub fn press(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                let k = c.to_string();
                [
                    json!({"type": "keyDown", "value": k}),
                    json!({"type": "keyUp", "value": k}),
                ]
            })
            .collect();
        let body = json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]});
        self.cmd("POST", "/actions", Some(body))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// An element attribute (`None` when absent).
    pub fn attribute(&self, el: &str, name: &str) -> Option<String> {
        self.cmd("GET", &format!("/element/{el}/attribute/{name}"), None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
    }

    /// Whether the element is rendered visibly.
    pub fn displayed(&self, el: &str) -> bool {
        // An error must fail the test, not read as "hidden".
        self.cmd("GET", &format!("/element/{el}/displayed"), None)
            .unwrap_or_else(|e| panic!("{e}"))
            .as_bool()
            .expect("displayed is a boolean")
    }

    pub fn click(&self, el: &str) {
        self.cmd("POST", &format!("/element/{el}/click"), Some(json!({})))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn clear(&self, el: &str) {
        self.cmd("POST", &format!("/element/{el}/clear"), Some(json!({})))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn send_keys(&self, el: &str, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The element's rendered text.
    pub fn text(&self, el: &str) -> String {
        self.cmd("GET", &format!("/element/{el}/text"), None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// A DOM property (e.g. `value` of an input).
    pub fn property(&self, el: &str, name: &str) -> String {
        self.cmd("GET", &format!("/element/{el}/property/{name}"), None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Waits (at most `timeout`) until the text of the element matching `css` satisfies
    /// `cond`; returns that text.
    pub fn wait_text(&self, css: &str, timeout: Duration, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if let Some(el) = self.find_now(css) {
                last = self.text(&el);
                if cond(&last) {
                    return last;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{css:?} never matched within {timeout:?}; last text {last:?}; page:\n{}",
                self.source()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A PNG screenshot of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self
            .cmd("GET", "/screenshot", None)
            .unwrap_or_else(|e| panic!("{e}"));
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("screenshot base64")
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .call("DELETE", &format!("/session/{}", self.id), None);
    }
}
