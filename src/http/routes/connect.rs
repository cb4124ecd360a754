//! Connect to ChannelAdvisor (contract §10): start an attempt, finish it with a pasted code, and
//! the callback ChannelAdvisor sends the admin's browser back to. The flow itself is in
//! `connect::flow`; this file is its HTTP faces.

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use schema::connect::Refused;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::connect::flow::{refused_detail, Finished};
use crate::http::auth::{Caller, Scope};
use crate::http::body::JsonBody;
use crate::http::problem::ApiError;
use crate::http::routes::connect_page::{self, Outcome};
use crate::http::routes::input::{self, Field, Problems};
use crate::http::routes::rfc3339;
use crate::http::state::AppState;

/// Where the admin's browser goes to grant access.
#[derive(Serialize, ToSchema)]
pub struct ConnectStarted {
    /// ChannelAdvisor's authorize page for this attempt (valid 10 minutes, single use)
    authorize_url: String,
    /// The Redirect URI the application must have registered in the Developer Console
    redirect_uri: String,
    expires_at: String,
}

/// The optional body of `POST …/connect`.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    /// Where to send the browser back to; must be on an allowed origin (--connect-return-origins)
    #[serde(default)]
    #[schema(value_type = Option<String>, nullable, max_length = 2048)]
    return_to: Field<String>,
}

/// The body of `POST …/connect/code`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectCode {
    /// The code ChannelAdvisor showed (or put in the Redirect URI's `code` parameter)
    #[schema(value_type = String, min_length = 1, max_length = 2048, pattern = r"\S")]
    code: Field<String>,
}

/// A text member trimmed, with "" and null meaning absent.
fn trimmed(field: Field<String>, name: &str, problems: &mut Problems) -> Option<String> {
    match field {
        Field::Given(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Field::Wrong => {
            problems.add(name, "must be a string");
            None
        }
        _ => None,
    }
}

/// The longest `return_to` kept: it is stored with the attempt and sent back in `Location`.
const RETURN_TO_MAX: usize = 2048;

#[utoipa::path(post, path = "/api/v1/companies/{company}/connect", tag = "connect", security(("bearer" = [])),
    params(("company" = String, Path)),
    request_body(content = Option<ConnectRequest>, description = "optional"),
    responses((status = 201, body = ConnectStarted),
              (status = 409, description = "connection_not_ready or connect_not_configured"),
              (status = 422, description = "validation_failed: return_to outside the allowed origins")))]
pub async fn start(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let company = caller.authorize(Scope::CredentialsWrite, &path)?;
    // The body is optional: none at all means no return_to.
    let (request, mut problems) = match body.0 {
        None | Some(Value::Null) => (ConnectRequest::default(), Problems::default()),
        some => input::object::<ConnectRequest>(some)?,
    };
    let raw = trimmed(request.return_to, "return_to", &mut problems);
    problems.finish(())?;
    if raw
        .as_ref()
        .is_some_and(|r| r.chars().count() > RETURN_TO_MAX)
    {
        return Err(ApiError::validation(vec![(
            "return_to".into(),
            format!("must be at most {RETURN_TO_MAX} characters"),
        )]));
    }
    let return_to = match raw {
        None => None,
        Some(raw) => {
            let allowed = url::Url::parse(&raw)
                .ok()
                .filter(|u| state.config.connect.allows_return_to(u));
            match allowed {
                Some(url) => Some(url),
                None => {
                    let origins = &state.config.connect.return_origins;
                    return Err(ApiError::validation(vec![(
                        "return_to".into(),
                        if origins.is_empty() {
                            "no return origins are configured (--connect-return-origins)".into()
                        } else {
                            format!(
                                "must be a URL on one of: {} (the origins --connect-return-origins allows)",
                                origins.join(", ")
                            )
                        },
                    )]));
                }
            }
        }
    };
    let started = state.connect.start(&caller.sub, company, return_to).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(ConnectStarted {
            authorize_url: started.authorize_url.to_string(),
            redirect_uri: started.redirect_uri,
            expires_at: rfc3339(started.expires_at),
        }))
}

#[utoipa::path(post, path = "/api/v1/companies/{company}/connect/code", tag = "connect", security(("bearer" = [])),
    params(("company" = String, Path)),
    request_body = ConnectCode,
    responses((status = 200, description = "The code was exchanged; the Test Connection result", body = connector::TestResult),
              (status = 409, description = "invalid_state (no open attempt) or the §4 code of a refused exchange"),
              (status = 503, description = "the §4 code of a transient upstream failure")))]
pub async fn code(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let company = caller.authorize(Scope::CredentialsWrite, &path)?;
    let (request, mut problems) = input::object::<ConnectCode>(body.0)?;
    let code = trimmed(request.code, "code", &mut problems);
    problems.finish(())?;
    let Some(code) = code else {
        return Err(ApiError::validation(vec![(
            "code".into(),
            "is required: the code ChannelAdvisor showed after you granted access".into(),
        )]));
    };
    let sub = caller.sub.clone();
    let id = company.clone();
    let taken = state
        .db
        .run(move |conn| schema::connect::take_newest_open(conn, &id, &sub))
        .await?;
    let attempt = taken.map_err(|why| {
        let detail = match why {
            Refused::Unknown => "There is no open Connect to ChannelAdvisor for this company started by you. Press Connect to ChannelAdvisor first, then paste the code it shows.",
            other => refused_detail(other),
        };
        ApiError::new(StatusCode::CONFLICT, "invalid_state", detail)
    })?;
    match state
        .connect
        .finish(attempt, SecretString::from(code))
        .await?
    {
        Finished::Tested(tested) => Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(tested.result)),
        // A refused exchange answers as a refused refresh does (§6): 409 permanent, 503 transient.
        Finished::ExchangeFailed(e) => Err(crate::http::service_errors::refresh_error(&e)),
    }
}

fn wants_html(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// Where ChannelAdvisor sends the admin's browser back (no JWT: the `state` authenticates).
#[utoipa::path(get, path = "/oauth/callback", tag = "connect",
    params(("code" = Option<String>, Query), ("state" = Option<String>, Query), ("error" = Option<String>, Query)),
    responses((status = 303, description = "Back to return_to with ca_connect, company and code"),
              (status = 200, description = "An HTML page with the outcome (no return_to), or the code to paste (no state)", content_type = "text/html"),
              (status = 400, description = "invalid_state: missing, unknown, expired or used")))]
pub async fn callback(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| {
        query
            .iter()
            .find(|(n, v)| n == k && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let (code, secret_state, error) = (get("code"), get("state"), get("error"));
    let Some(secret_state) = secret_state else {
        return Ok(match (code, error) {
            (Some(code), _) => connect_page::paste_code(&code),
            (None, Some(_)) => connect_page::outcome(&Outcome::Denied, None),
            (None, None) => refuse(&req, "The link has no state: it did not come from Connect to ChannelAdvisor. Nothing was stored."),
        });
    };
    let attempt = match state.connect.take(&secret_state).await? {
        Ok(attempt) => attempt,
        Err(why) => return Ok(refuse(&req, refused_detail(why))),
    };
    let company = attempt.company.clone();
    let return_to = attempt.return_to.clone();
    let outcome = match (error, code) {
        (Some(_), _) => {
            state.connect.end(attempt, "connect_denied").await?;
            Outcome::Denied
        }
        (None, None) => {
            state.connect.end(attempt, "connect_failed").await?;
            Outcome::Failed(connector::TestError::protocol(
                "ChannelAdvisor sent the browser back without a code",
            ))
        }
        (None, Some(code)) => {
            match state
                .connect
                .finish(attempt, SecretString::from(code))
                .await
            {
                Ok(Finished::Tested(tested)) => Outcome::Tested(tested.result),
                Ok(Finished::ExchangeFailed(e)) => Outcome::Failed(e),
                Err(e) => {
                    let problem = ApiError::from(e);
                    if return_to.is_some() && !wants_html(&req) {
                        return Err(problem);
                    }
                    Outcome::Problem(problem.detail.clone())
                }
            }
        }
    };
    Ok(
        match return_to.as_deref().and_then(|r| url::Url::parse(r).ok()) {
            Some(back) => see_other(back, &company, &outcome),
            None => connect_page::outcome(&outcome, Some(&company)),
        },
    )
}

/// 400 `invalid_state`, as problem+json.
pub fn invalid_state(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_state", detail)
}

/// 400 `invalid_state`: an HTML page for a browser, problem+json otherwise.
fn refuse(req: &HttpRequest, detail: &str) -> HttpResponse {
    if wants_html(req) {
        connect_page::invalid_state(detail)
    } else {
        actix_web::ResponseError::error_response(&invalid_state(detail))
    }
}

/// 303 to `return_to` with `ca_connect`, `company` and, on failure, `code` added to its query.
fn see_other(mut back: url::Url, company: &str, outcome: &Outcome) -> HttpResponse {
    back.query_pairs_mut()
        .append_pair("ca_connect", outcome.word())
        .append_pair("company", company);
    if let Some(code) = outcome.code() {
        back.query_pairs_mut().append_pair("code", code);
    }
    HttpResponse::build(StatusCode::SEE_OTHER)
        .insert_header((header::LOCATION, back.to_string()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .content_type(ContentType::plaintext())
        .finish()
}
