//! Contract §12's promises about the screen that the walkthrough in `browser.rs` does not
//! assert: where the token is kept, the busy state, each check and the hint, the test history
//! and the audit trail, the SOAP fields, and no request to any other host (by the browser's own
//! record of what it fetched, not only by the CSP header).

use serde_json::{json, Value};

use crate::browser::{admin_link, browser};
use crate::connection::{app_against, valid};
use crate::helpers::Backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_screen_keeps_its_promises() {
    let Some(browser) = browser("the_screen_keeps_its_promises").await else {
        return;
    };
    let sim = crate::connection::sim(0);
    let app = app_against(&Backend::Sqlite, &sim.url(), &[]).await;
    app.put_credentials("acme", &valid()).await;
    browser
        .client
        .goto(&admin_link(&app, "acme"))
        .await
        .unwrap();
    browser.wait_text("[role=status]", "Not tested yet").await;

    // The token: in sessionStorage only, out of the address bar, in no cookie.
    let kept = browser
        .client
        .execute(
            "return [sessionStorage.getItem('ca-token') || '', localStorage.length, document.cookie, location.href];",
            vec![],
        )
        .await
        .unwrap();
    assert!(kept[0].as_str().unwrap().starts_with("ey"), "{kept}");
    assert_eq!(kept[1], 0, "nothing in localStorage");
    assert_eq!(kept[2], "", "no cookie");
    assert!(!kept[3].as_str().unwrap().contains("ey"), "{kept}");

    // Busy while the test runs: read in the same turn as the click, before any answer.
    let busy = browser
        .client
        .execute(
            "const b = document.getElementById('test'); b.click(); return [b.getAttribute('aria-busy'), b.disabled, b.textContent];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(busy, json!(["true", true, "Testing…"]));
    browser.wait_text("[role=status]", "Connected").await;
    browser.wait_text("#test", "Test Connection").await;
    let checks = browser.text("#result-checks").await;
    for check in [
        "credentials complete: passed",
        "token exchange: passed",
        "api probe: passed",
    ] {
        assert!(checks.contains(check), "{check} in {checks}");
    }

    // A failing test: each check, the message and the hint.
    browser
        .fill("Shared Secret", "wrong-shared-secret-0001")
        .await;
    browser.press("Test Connection").await;
    browser.wait_text("#result-hint", "Developer Console").await;
    let checks = browser.text("#result-checks").await;
    assert!(
        checks.contains("token exchange: failed") && checks.contains("api probe: skipped"),
        "{checks}"
    );

    // The test history and the audit trail, on the page.
    // (The sign-in link is `ca-connector token`'s, whose subject is local-admin; the values were
    // saved through the API as admin@test.)
    browser.wait_text("#history tbody", "local-admin").await;
    let history = browser.text("#history tbody").await;
    assert!(
        history.contains("Connected") && history.contains("did not accept"),
        "{history}"
    );
    browser.wait_text("#audit tbody", "admin@test").await;

    // The SOAP fields, by their labels, when that method is chosen.
    browser
        .by_label("Sign-in method")
        .await
        .select_by_value("soap")
        .await
        .unwrap();
    for label in ["Developer Key", "SOAP Password", "Account GUID"] {
        let input = browser.by_label(label).await;
        assert!(input.is_displayed().await.unwrap(), "{label} is shown");
    }
    assert!(!browser
        .by_label("Refresh Token")
        .await
        .is_displayed()
        .await
        .unwrap());

    // Everything the browser fetched came from the service itself.
    let fetched: Value = browser
        .client
        .execute(
            "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource')).map((e) => e.name);",
            vec![],
        )
        .await
        .unwrap();
    let fetched: Vec<String> = serde_json::from_value(fetched).unwrap();
    assert!(fetched.len() >= 4, "{fetched:?}");
    for url in &fetched {
        assert!(url.starts_with(&format!("{}/", app.base)), "{url}");
    }
    browser.client.clone().close().await.unwrap();
}
