//! Headless Chromium through its WebDriver (Debian's `chromium` and `chromium-driver`), shared by
//! the browser tests and `benches/settings_page.rs`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium session with a fresh profile (an empty cache); the driver is stopped on
/// drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts the driver and a session; `Err` names what is missing when this machine has no
    /// Chromium.
    pub async fn start() -> Result<Browser, String> {
        let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.into());
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
        if !std::path::Path::new(&driver).exists() || !std::path::Path::new(&binary).exists() {
            return Err(
                "CHROMEDRIVER and CHROMIUM (or apt-get install chromium chromium-driver)".into(),
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::TempDir::new().unwrap();
        // The flags keep Chromium off the network it cannot reach here (and anywhere in CI).
        let caps = json!({"goog:chromeOptions": {"binary": binary, "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-quic", "--window-size=1100,1300",
            format!("--user-data-dir={}", profile.path().display()),
        ]}});
        let mut builder = ClientBuilder::rustls().unwrap();
        builder.capabilities(caps.as_object().unwrap().clone());
        let started = Instant::now();
        let client = loop {
            match builder.connect(&format!("http://127.0.0.1:{port}")).await {
                Ok(client) => break client,
                Err(e) if started.elapsed() > Duration::from_secs(20) => {
                    panic!("chromedriver did not start a session: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Ok(Browser {
            client,
            driver: child,
            _profile: profile,
        })
    }
}
