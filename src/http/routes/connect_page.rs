//! The small HTML pages the Connect callback shows a browser when it has nowhere to send it back
//! to: the outcome, a code to paste, or why a link is not valid. No script, no outside resource.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use connector::{TestError, TestResult};
use html_escape::encode_text as text;

/// How a callback ended, as the browser is told.
pub enum Outcome {
    /// The refresh token was stored and Test Connection ran: its result.
    Tested(TestResult),
    /// Nothing stored: the exchange failed.
    Failed(TestError),
    /// Nothing stored: the admin did not grant access.
    Denied,
    /// Nothing stored: the attempt could not be finished (its detail, in an admin's words).
    Problem(String),
}

impl Outcome {
    /// `ca_connect=` on the way back to the ERP.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Tested(result) if result.connected() => "connected",
            Outcome::Denied => "denied",
            _ => "failed",
        }
    }

    /// The §4 code of a failure.
    pub fn code(&self) -> Option<&str> {
        match self {
            Outcome::Tested(result) => result.error.as_ref().map(|e| e.code.as_str()),
            Outcome::Failed(e) => Some(e.code.as_str()),
            Outcome::Problem(_) => Some("invalid_state"),
            Outcome::Denied => None,
        }
    }
}

fn html(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    let mut page = HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // The callback URL carries the code: no page reached from here may learn it.
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ))
        .body(format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{t}</title></head>\n<body><main><h1>{t}</h1>\n{body}\n</main></body></html>\n",
            t = text(title)
        ));
    page.extensions_mut()
        .insert(crate::http::problem::BrowserPage);
    page
}

/// The page after a callback without a `return_to`.
pub fn outcome(outcome: &Outcome, company: Option<&str>) -> HttpResponse {
    let company = company
        .map(|c| format!(" for company <b>{}</b>", text(c)))
        .unwrap_or_default();
    let error_text =
        |message: &str, hint: &str| format!("<p>{}</p><p>{}</p>", text(message), text(hint));
    let (title, body) = match outcome {
        Outcome::Tested(result) if result.connected() => (
            "Connected to ChannelAdvisor",
            format!("<p>ChannelAdvisor granted access{company}, and Test Connection passed. You can close this page and return to the settings screen.</p>"),
        ),
        Outcome::Tested(result) => (
            "Connected, but the test failed",
            format!(
                "<p>ChannelAdvisor granted access{company} and the new Refresh Token was saved, but Test Connection failed:</p>{}",
                result.error.as_ref().map(|e| error_text(&e.message, &e.hint)).unwrap_or_default()
            ),
        ),
        Outcome::Failed(e) => (
            "Connect to ChannelAdvisor failed",
            format!("<p>Nothing was saved{company}.</p>{}", error_text(&e.message, &e.hint)),
        ),
        Outcome::Denied => (
            "Access was not granted",
            format!("<p>ChannelAdvisor reports that access was not granted{company}; nothing was saved. To connect, return to the settings screen, press Connect to ChannelAdvisor again and choose Grant Access.</p>"),
        ),
        Outcome::Problem(detail) => ("Connect to ChannelAdvisor failed", format!("<p>{}</p>", text(detail))),
    };
    html(StatusCode::OK, title, &body)
}

/// A callback with a code but no `state`: the admin pastes the code into the settings screen.
pub fn paste_code(code: &str) -> HttpResponse {
    html(
        StatusCode::OK,
        "Copy this code",
        &format!(
            "<p><strong>Paste this code only if you pressed Connect to ChannelAdvisor yourself, just now, and came here from ChannelAdvisor's own page.</strong> A code from a link someone sent you, or from an e-mail, would connect your company to someone else's ChannelAdvisor account: close this page instead.</p>\n<p>ChannelAdvisor granted access but did not say which Connect it belongs to. If you did start it yourself, copy this code and paste it into the settings screen's Connect to ChannelAdvisor box within five minutes:</p>\n<p><output><code>{}</code></output></p>",
            text(code)
        ),
    )
}

/// 400: the link's `state` is missing, unknown, expired or used.
pub fn invalid_state(detail: &str) -> HttpResponse {
    html(
        StatusCode::BAD_REQUEST,
        "This link is not valid",
        &format!("<p>{}</p>", text(detail)),
    )
}
