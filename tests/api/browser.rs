//! Contract §12: the settings screen driven in headless Chromium (Debian's `chromium` and
//! `chromium-driver`) through WebDriver, against the real app and the simulator. Without a
//! browser these tests are skipped and counted; with `CI=true` or `REQUIRE_BROWSER=1` they fail.

use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::{json, Value};

use crate::connection::{app_against, valid, APP, REFRESH, SECRET};
use crate::helpers::{admin, captured_logs, poll_until, skip, Backend, TestApp};

const TAB: &str = "\u{e004}";
const ENTER: &str = "\u{e007}";

use crate::browser_driver::Browser;

/// A browser for one test, or `None` (the test skipped and counted) when this machine has none.
pub async fn browser(test: &str) -> Option<Browser> {
    match Browser::start().await {
        Ok(b) => Some(b),
        Err(missing) => {
            skip(test, "browser", &missing, "REQUIRE_BROWSER");
            None
        }
    }
}

/// The sign-in link for `company` as `ca-connector token --admin-url` prints it.
pub fn admin_link(app: &TestApp, company: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ca-connector"))
        .args([
            "token",
            "--company",
            company,
            "--jwt-secret",
            crate::helpers::JWT_SECRET,
        ])
        .args(["--data-dir", &app.data_dir.path().display().to_string()])
        .args(["--admin-url", &app.base])
        .output()
        .unwrap();
    let link = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        link.starts_with(&format!("{}/admin/#token=ey", app.base)),
        "{link} ({})",
        String::from_utf8_lossy(&out.stderr)
    );
    link
}

impl Browser {
    /// The form control a visible label names.
    pub async fn by_label(&self, label: &str) -> fantoccini::elements::Element {
        let label = self
            .client
            .find(Locator::XPath(&format!(
                "//label[normalize-space()='{label}']"
            )))
            .await
            .unwrap_or_else(|e| panic!("no label '{label}': {e}"));
        let id = label.attr("for").await.unwrap().expect("label has for");
        self.client.find(Locator::Id(&id)).await.unwrap()
    }

    pub async fn button(&self, text: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::XPath(&format!(
                "//button[normalize-space()='{text}']"
            )))
            .await
            .unwrap_or_else(|e| panic!("no button '{text}': {e}"))
    }

    /// Clicks the button with this text.
    pub async fn press(&self, text: &str) {
        self.button(text).await.click().await.unwrap();
    }

    pub async fn fill(&self, label: &str, value: &str) {
        let input = self.by_label(label).await;
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }

    pub async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(el) => el.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until the element's text contains `want`.
    pub async fn wait_text(&self, css: &str, want: &str) {
        let read = || self.text(css);
        let text = poll_until(Duration::from_secs(10), read, |t| t.contains(want)).await;
        assert!(
            text.contains(want),
            "{css} never said '{want}' (last: '{text}')"
        );
    }
}

async fn credentials(app: &TestApp, company: &str) -> Value {
    app.get_json(
        &format!("/api/v1/companies/{company}/credentials"),
        &admin(&[company]),
    )
    .await
    .1
}

// The screen's whole walk on each backend (the page only calls the API, but the API it calls
// stores on both).
crate::on_both_backends!(the_settings_screen_in_a_real_browser);

async fn the_settings_screen_in_a_real_browser(backend: Backend) {
    let Some(browser) = browser("the_settings_screen_in_a_real_browser").await else {
        return;
    };
    let sim = crate::connection::sim(0);
    let app = app_against(&backend, &sim.url(), &[]).await;
    let jwt = admin(&["acme", "globex"]);

    // Sign in with the box.
    browser.client.goto(&app.url("/admin/")).await.unwrap();
    browser.fill("Access token", &jwt).await;
    browser.press("Sign in").await;
    browser.wait_text("[role=status]", "Not set up").await;
    assert_eq!(browser.text("#signed-in").await, "Signed in as admin@test");

    // The company, then the values, by their labels; Save.
    browser
        .by_label("Company")
        .await
        .select_by_value("acme")
        .await
        .unwrap();
    browser.fill("Application ID", APP).await;
    browser.fill("Shared Secret", SECRET).await;
    browser.fill("Refresh Token", REFRESH).await;
    browser.press("Save").await;
    browser.wait_text("#notice", "Saved.").await;
    browser.wait_text("[role=status]", "Not tested yet").await;
    let stored = credentials(&app, "acme").await;
    assert_eq!(stored["complete"], true, "{stored}");
    assert_eq!(stored["updated_by"], "admin@test");
    // Secrets come back only as "set, ends in …", never in a field.
    assert!(browser
        .text("#shared_secret-set")
        .await
        .contains("ends in 0001"));
    let secret_value = browser
        .by_label("Shared Secret")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(secret_value.as_deref(), Some(""));

    // Test Connection: green against the simulator.
    browser.press("Test Connection").await;
    browser.wait_text("[role=status]", "Connected").await;
    browser.wait_text("#result-message", "Connected.").await;

    // A wrong Shared Secret: the message, and the fields at fault marked and described by it.
    browser
        .fill("Shared Secret", "wrong-shared-secret-0001")
        .await;
    browser.press("Save").await;
    browser.wait_text("#notice", "Saved.").await;
    browser.press("Test Connection").await;
    browser
        .wait_text(
            "#result-message",
            "did not accept the Application ID and Shared Secret",
        )
        .await;
    browser.wait_text("[role=status]", "Failed").await;
    for label in ["Shared Secret", "Application ID"] {
        let input = browser.by_label(label).await;
        assert_eq!(
            input.attr("aria-invalid").await.unwrap().as_deref(),
            Some("true"),
            "{label}"
        );
        let described = input
            .attr("aria-describedby")
            .await
            .unwrap()
            .unwrap_or_default();
        assert!(described.contains("result-message"), "{label}: {described}");
    }
    let refresh = browser.by_label("Refresh Token").await;
    assert_eq!(refresh.attr("aria-invalid").await.unwrap(), None);

    // Another client repairs the secret through the API: the badge follows without a reload.
    let res = app
        .patch_credentials("acme", &json!({"shared_secret": SECRET}))
        .await;
    assert_eq!(res.status(), 200);
    browser.wait_text("[role=status]", "Not tested yet").await;

    // A save on a stale version: the page says someone else saved and offers to reload.
    browser.fill("Profile ID", "5").await;
    browser.press("Save").await;
    browser.wait_text("#notice", "Someone else saved").await;
    browser.press("Reload").await;
    browser.wait_text("[role=status]", "Not tested yet").await;
    assert_eq!(
        browser
            .by_label("Profile ID")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("")
    );

    // Keyboard alone: Tab to Test Connection, press Enter.
    browser.by_label("Profile ID").await.click().await.unwrap();
    let mut reached = false;
    for _ in 0..10 {
        let focused = browser.client.active_element().await.unwrap();
        if focused.text().await.unwrap_or_default() == "Test Connection" {
            focused.send_keys(ENTER).await.unwrap();
            reached = true;
            break;
        }
        focused.send_keys(TAB).await.unwrap();
    }
    assert!(reached, "Test Connection is reachable by Tab");
    browser.wait_text("[role=status]", "Connected").await;
    browser.wait_text("#test", "Test Connection").await;
    browser.wait_text("#result-message", "Connected.").await;

    // A picture of it for the README, from the same session.
    let png = browser.client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    if matches!(backend, Backend::Sqlite)
        && std::env::var("UPDATE_SCREENSHOT").is_ok_and(|v| v == "1")
    {
        std::fs::write(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/settings-screen.png"),
            png,
        )
        .unwrap();
    }

    // The token reached no server in a URL: no log line carries it.
    assert!(!captured_logs().contains(&jwt));
    browser.client.clone().close().await.unwrap();
}

/// A link from `token --admin-url` signs in from its fragment, which then leaves the address bar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_with_the_token_in_its_fragment_signs_in() {
    let Some(browser) = browser("a_link_with_the_token_in_its_fragment_signs_in").await else {
        return;
    };
    let sim = crate::connection::sim(0);
    let app = app_against(&Backend::Sqlite, &sim.url(), &[]).await;
    app.put_credentials("acme", &json!({"application_id": APP}))
        .await;
    let link = admin_link(&app, "acme");
    browser.client.goto(&link).await.unwrap();
    browser.wait_text("[role=status]", "Incomplete").await;
    let url = browser.client.current_url().await.unwrap();
    assert!(
        url.fragment().is_none(),
        "the token left the address bar: {url}"
    );
    assert_eq!(
        browser
            .by_label("Application ID")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some(APP)
    );
    browser.client.clone().close().await.unwrap();
}

/// The page's own answers: its Content-Security-Policy, and no inline script or handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_allows_only_its_own_origin() {
    let app = crate::helpers::spawn_app_with(
        &Backend::Sqlite,
        crate::helpers::AppOptions {
            extra_args: vec![
                "--admin-frame-ancestors".into(),
                "'self' https://erp.example".into(),
            ],
            ..Default::default()
        },
    )
    .await;
    for path in ["/admin/", "/admin/admin.js", "/admin/admin.css"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(
            csp,
            "default-src 'self'; frame-ancestors 'self' https://erp.example"
        );
        let body = res.text().await.unwrap();
        if path == "/admin/" {
            assert!(
                !body.contains("<script>")
                    && !body.contains(" onclick")
                    && !body.contains(" style=")
            );
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "no other host"
            );
        }
    }
    let res = app
        .client
        .get(app.url("/admin/nothing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = plain.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(res.headers()["location"], "/admin/");
}

/// Connect to ChannelAdvisor from the screen: the simulator's Grant Access page, back to the
/// screen, which says what happened; and the screen fits a narrow window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_from_the_screen_and_back() {
    let Some(browser) = browser("connect_from_the_screen_and_back").await else {
        return;
    };
    let sim = crate::connection::sim(0);
    let port = crate::helpers::free_port();
    let (listen, public) = (
        format!("127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}"),
    );
    sim.register_redirect_uri(crate::connection::APP, &format!("{public}/oauth/callback"));
    let app = app_against(
        &Backend::Sqlite,
        &sim.url(),
        &["--listen", &listen, "--public-url", &public],
    )
    .await;
    app.put_credentials(
        "acme",
        &json!({"application_id": APP, "shared_secret": SECRET}),
    )
    .await;
    let link = admin_link(&app, "acme");
    browser.client.goto(&link).await.unwrap();
    browser.wait_text("[role=status]", "Incomplete").await;

    browser.press("Connect to ChannelAdvisor").await;
    // ChannelAdvisor's page (the simulator's): the account's profile, Grant Access.
    let grant = browser
        .client
        .wait()
        .for_element(Locator::XPath("//button[normalize-space()='Grant Access']"))
        .await
        .unwrap();
    assert!(browser.text("body").await.contains("12345678"));
    grant.click().await.unwrap();
    // Back on the screen, signed in still, with the outcome.
    browser
        .wait_text("#notice", "Connected to ChannelAdvisor")
        .await;
    browser.wait_text("[role=status]", "Connected").await;
    let url = browser.client.current_url().await.unwrap();
    assert!(
        url.as_str().starts_with(&format!("{}/admin/", app.base)),
        "{url}"
    );
    assert!(
        url.query().is_none(),
        "the outcome left the address bar: {url}"
    );
    assert_eq!(
        credentials(&app, "acme").await["refresh_token"]["set"],
        true
    );

    // A narrow window (a phone, or 200% zoom on a small laptop): nothing wider than the window.
    browser.client.set_window_size(400, 900).await.unwrap();
    let fits = browser
        .client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fits, json!(true), "the screen scrolls sideways at 400 px");
    browser.client.clone().close().await.unwrap();
}

/// Contract §12 at fleet scale: 10,000 companies, the screen lists them a page at a time, finds
/// one by part of its id, shows the broken ones a click away, and its first load stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_screen_with_ten_thousand_companies() {
    let Some(browser) = browser("the_screen_with_ten_thousand_companies").await else {
        return;
    };
    let sim = crate::connection::sim(0);
    let app = app_against(&Backend::Sqlite, &sim.url(), &[]).await;
    let companies = crate::fleet::seed(&app, "store", 10_000, 1);
    {
        use diesel::prelude::*;
        let mut conn = app.database().get().unwrap();
        diesel::sql_query(
            "UPDATE credentials SET state = 'failed' WHERE company IN ('store0042', 'store4242', 'store9999')",
        )
        .execute(&mut *conn)
        .unwrap();
    }
    let link = admin_link(&app, "*");
    browser.client.goto("about:blank").await.unwrap();
    browser.client.goto(&link).await.unwrap();
    browser.wait_text("[role=status]", "Not tested yet").await;
    const FIRST_LOAD: &str = r#"
        const nav = performance.getEntriesByType('navigation')[0];
        const resources = performance.getEntriesByType('resource');
        return nav.transferSize + resources.reduce((n, r) => n + r.transferSize, 0);"#;
    let bytes = browser.client.execute(FIRST_LOAD, vec![]).await.unwrap();
    let bytes = bytes.as_f64().unwrap();
    assert!(
        bytes > 0.0 && bytes < 100.0 * 1024.0,
        "first load transferred {bytes} bytes"
    );
    let options = |browser: &Browser| {
        let client = browser.client.clone();
        async move {
            let v = client
                .execute(
                    "return [...document.getElementById('company').options].map((o) => o.value);",
                    vec![],
                )
                .await
                .unwrap();
            serde_json::from_value::<Vec<String>>(v).unwrap()
        }
    };
    let page = options(&browser).await;
    assert_eq!(page, companies[..50], "the first page, in id order");
    assert!(browser
        .text("#company-counts")
        .await
        .contains("10000 in all"));

    // The next page on request.
    browser.press("More companies").await;
    wait_until(|| async { options(&browser).await.len() == 100 }).await;

    // Found by typing part of its id.
    browser.fill("Find company", "7777").await;
    wait_until(|| async { options(&browser).await.contains(&"store7777".to_string()) }).await;
    assert!(
        options(&browser).await.len() <= 2,
        "the search narrows the list"
    );
    browser
        .by_label("Company")
        .await
        .select_by_value("store7777")
        .await
        .unwrap();
    browser.wait_text("[role=status]", "Not tested yet").await;
    let shown = browser
        .by_label("Application ID")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(
        shown.as_deref(),
        Some("fleet-app-0"),
        "the chosen company's values"
    );

    // The broken ones a click away.
    browser.fill("Find company", "").await;
    browser.wait_text("#only-failed-label", "(3)").await;
    browser
        .by_label("Only failed connections (3)")
        .await
        .click()
        .await
        .unwrap();
    wait_until(|| async {
        let listed = options(&browser).await;
        ["store0042", "store4242", "store9999"]
            .iter()
            .all(|c| listed.contains(&c.to_string()))
            && listed.len() <= 4
    })
    .await;
    browser.client.clone().close().await.unwrap();
}

/// Polls `check` until it holds, for at most 10 s.
async fn wait_until<F, Fut>(check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let held = poll_until(Duration::from_secs(10), check, |held| *held).await;
    assert!(held, "the screen never got there");
}

/// Issue 27's rough edges of the screen, each as an admin meets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_screen_says_why_and_asks_first() {
    let Some(browser) = browser("the_screen_says_why_and_asks_first").await else {
        return;
    };
    let sim = crate::connection::sim(0);
    let app = app_against(&Backend::Sqlite, &sim.url(), &[]).await;
    let valid = valid();
    for company in ["acme", "globex", "initech"] {
        app.put_credentials(company, &valid).await;
    }
    let companies = ["acme", "globex", "initech"];
    let link = |jwt: &str| format!("{}/admin/#token={jwt}", app.base);

    // An expired link: the sign-in box itself says why.
    let expired = crate::helpers::token_expiring_in(&companies, crate::helpers::ALL_SCOPES, -300);
    browser.client.goto(&link(&expired)).await.unwrap();
    browser.wait_text("#sign-in-reason", "expired").await;

    // Signed in as one admin, a link for another asks before it replaces the session.
    let ann = crate::helpers::token_for("ann@acme", &companies, crate::helpers::ALL_SCOPES);
    let bob = crate::helpers::token_for("bob@acme", &companies, crate::helpers::ALL_SCOPES);
    browser.client.goto(&link(&ann)).await.unwrap();
    browser.wait_text("#signed-in", "ann@acme").await;
    browser.client.goto(&app.url("/admin/")).await.unwrap();
    browser.client.goto(&link(&bob)).await.unwrap();
    browser
        .wait_text("#switch-text", "signs in as bob@acme")
        .await;
    browser.press("Stay signed in as before").await;
    browser.wait_text("#signed-in", "ann@acme").await;

    // A Connect outcome's code is shown only when it is one of ours.
    let forged = "Call+0800+now+to+restore+access";
    browser
        .client
        .goto(&app.url(&format!(
            "/admin/?ca_connect=failed&company=acme&code={forged}"
        )))
        .await
        .unwrap();
    browser.wait_text("#notice", "did not finish").await;
    assert!(!browser.text("#notice").await.contains("0800"));
    browser
        .client
        .goto(&app.url("/admin/?ca_connect=failed&company=acme&code=access_denied"))
        .await
        .unwrap();
    browser.wait_text("#notice", "(access_denied)").await;

    // Switching companies several times, then Test Connection by keyboard: it is answered.
    for company in ["globex", "initech", "acme", "globex", "acme"] {
        browser
            .by_label("Company")
            .await
            .select_by_value(company)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.wait_text("#state", "Not tested yet").await;
    let pressed = Instant::now();
    browser
        .button("Test Connection")
        .await
        .send_keys(ENTER)
        .await
        .unwrap();
    browser.wait_text("#result-message", "Connected.").await;
    assert!(
        pressed.elapsed() < Duration::from_secs(5),
        "answered in {:?}",
        pressed.elapsed()
    );

    // A value typed and not saved is what gets tested, and the result says so; nothing is stored.
    browser.fill("Shared Secret", "typed-not-saved-9999").await;
    browser.press("Test Connection").await;
    browser
        .wait_text(
            "#result-message",
            "Tested the values on the form, which are not saved yet",
        )
        .await;
    browser
        .wait_text(
            "#result-message",
            "did not accept the Application ID and Shared Secret",
        )
        .await;
    let stored = credentials(&app, "acme").await;
    assert_eq!(
        stored["shared_secret"]["last4"], "0001",
        "nothing saved: {stored}"
    );
    let (_, status) = app
        .get_json("/api/v1/companies/acme/connection", &admin(&["acme"]))
        .await;
    assert_eq!(
        status["state"], "connected",
        "a candidate test changes no state"
    );
    browser.client.clone().close().await.unwrap();
}
