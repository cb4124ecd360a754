//! The ChannelAdvisor client: the OAuth 2.0 refresh-token grant and the profiles probe, each with
//! a whole-request deadline, a cap on the answer's size, and at most N calls in flight on this
//! instance, all companies and Application IDs together (`--upstream-concurrency`).
//!
//! ChannelAdvisor limits each integration (one application on one account: one company here) and
//! each profile, never an Application ID, so the client adds no per-application queue: a fleet of
//! companies on one application refreshes side by side. A company's own token calls are one at a
//! time anyway (the token broker's single flight).

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::credentials::{ApplicationId, RefreshToken, SharedSecret};
use crate::taxonomy::TestError;
pub use domain::test_result::Profile;

/// Answers larger than this are not ChannelAdvisor's and are not read further.
const MAX_BODY: usize = 1024 * 1024;

/// What a successful refresh-token grant gives. `Debug` is redacted by `SecretString`.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub access_token: SecretString,
    pub expires_in: u64,
    /// Present when ChannelAdvisor rotated the refresh token; it replaces the stored one.
    pub refresh_token: Option<SecretString>,
}

#[derive(Clone)]
pub struct ChannelAdvisorClient {
    http: reqwest::Client,
    base: url::Url,
    deadline: Duration,
    /// Upstream calls this instance may have in flight, all companies together.
    slots: Arc<Semaphore>,
    /// Scopes the SOAP grant and the authorize URL ask for (`--oauth-scope`).
    scope: String,
}

/// One upstream answer, read in full (within the cap) before classification.
pub(crate) struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Vec<u8>,
}

/// RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined for Basic auth.
pub fn basic_auth(app: &ApplicationId, secret: &SharedSecret) -> SecretString {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!(
        "{}:{}",
        enc(app.as_str()),
        enc(secret.secret().expose_secret())
    );
    SecretString::from(format!("Basic {}", STANDARD.encode(pair)))
}

impl ChannelAdvisorClient {
    pub fn new(base: url::Url, deadline: Duration, in_flight: usize) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(deadline)
            .pool_max_idle_per_host(64)
            .user_agent(concat!("ca-connector/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ChannelAdvisorClient {
            http,
            base,
            deadline,
            slots: Arc::new(Semaphore::new(in_flight.max(1))),
            scope: "orders inventory".to_string(),
        })
    }

    /// The scopes asked for by the SOAP grant and the authorize URL.
    pub fn with_scope(mut self, scope: &str) -> Self {
        self.scope = scope.to_string();
        self
    }

    pub fn scope(&self) -> &str {
        &self.scope
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    pub(crate) fn endpoint(&self, path: &str) -> url::Url {
        let mut url = self.base.clone();
        let base_path = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base_path}{path}"));
        url
    }

    /// Sends one request in one of the instance's upstream slots and reads the answer, all within
    /// the deadline: the wait for a slot counts, so a refresh lease sized by the deadline always
    /// outlives its call. A call that found no free slot in time is `upstream_unavailable` (this
    /// instance is saturated; try again), one that ChannelAdvisor did not answer in time is
    /// `upstream_timeout`.
    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Answer, TestError> {
        let started = tokio::time::Instant::now();
        let permit = tokio::time::timeout(self.deadline, self.slots.clone().acquire_owned()).await;
        let _permit = match permit {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(TestError::unavailable("client closed")),
            Err(_) => {
                return Err(TestError::unavailable(
                    "no free upstream slot on this instance within the deadline",
                ))
            }
        };
        let left = self.deadline.saturating_sub(started.elapsed());
        let exchange = async {
            let mut res = request.send().await.map_err(|e| self.transport_error(&e))?;
            let status = res.status().as_u16();
            let retry_after = res
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let mut body = Vec::new();
            while let Some(chunk) = res.chunk().await.map_err(|e| self.transport_error(&e))? {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(
                        TestError::protocol("answer larger than 1 MiB").status(Some(status))
                    );
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Answer {
                status,
                retry_after,
                body,
            })
        };
        match tokio::time::timeout(left, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(TestError::timeout(self.deadline.as_secs())),
        }
    }

    /// The refresh-token grant at `{base}/oauth2/token`.
    pub async fn refresh_grant(
        &self,
        app: &ApplicationId,
        secret: &SharedSecret,
        refresh_token: &RefreshToken,
    ) -> Result<TokenGrant, TestError> {
        let form = form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.secret().expose_secret()),
        ]);
        let answer = self.token_call(app, secret, form).await?;
        classify_grant(answer)
    }

    /// POSTs a grant to `{base}/oauth2/token` with Basic client authentication (§8).
    pub(crate) async fn token_call(
        &self,
        app: &ApplicationId,
        secret: &SharedSecret,
        form: SecretString,
    ) -> Result<Answer, TestError> {
        let request = self
            .http
            .post(self.endpoint("/oauth2/token"))
            .header(
                reqwest::header::AUTHORIZATION,
                basic_auth(app, secret).expose_secret(),
            )
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(form.expose_secret().to_string());
        self.call(request).await
    }

    /// `GET {base}/v1/Profiles` with a fresh access token.
    pub async fn profiles(&self, access_token: &SecretString) -> Result<Vec<Profile>, TestError> {
        let request = self
            .http
            .get(self.endpoint("/v1/Profiles"))
            .bearer_auth(access_token.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json");
        let answer = self.call(request).await?;
        classify_profiles(answer)
    }
}

/// An `application/x-www-form-urlencoded` body; secret, since grants carry secrets.
pub(crate) fn form(pairs: &[(&str, &str)]) -> SecretString {
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        body.append_pair(name, value);
    }
    SecretString::from(body.finish())
}

impl ChannelAdvisorClient {
    /// A call that could not be made. One that could not even connect is most often a wrong
    /// `--channeladvisor-url` (a wrong port, `https://` on a plain-http address) rather than an
    /// outage, so its message names the setting and its value; the code stays the same.
    fn transport_error(&self, e: &reqwest::Error) -> TestError {
        if !e.is_connect() {
            return transport_error(e);
        }
        let refused = std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |err| {
            err.source()
        })
        .filter_map(|err| err.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
        let what = if refused {
            "the connection was refused"
        } else {
            "no connection could be made (name lookup, TLS handshake or network failed)"
        };
        // The setting's value without any user or password it may hold.
        let mut shown = self.base.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        TestError::unreachable_at(shown.as_str(), what)
    }
}

fn transport_error(e: &reqwest::Error) -> TestError {
    // reqwest's messages carry only the URL (no credentials): the base URL is configuration.
    let what = if e.is_connect() {
        "connection refused or failed"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "connection broken while reading the answer"
    } else {
        "network error"
    };
    TestError::unavailable(what)
}

/// Answers every endpoint shares: rate limits and server errors.
fn common(answer: &Answer) -> Option<TestError> {
    match answer.status {
        429 => Some(TestError::rate_limited(answer.retry_after).status(Some(429))),
        s if s >= 500 => Some(TestError::unavailable(&format!("HTTP {s}")).status(Some(s))),
        _ => None,
    }
}

#[derive(Deserialize)]
struct GrantBody {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: Option<String>,
}

/// The longest life an access token may claim: ChannelAdvisor's live an hour, and a token cached
/// for longer than a day on the word of a broken answer would be served long after it died.
const MAX_EXPIRES_IN: u64 = 86_400;

/// `expires_in` as a number or a numeric string (absent: ChannelAdvisor's hour). Zero, negative,
/// fractional nonsense or more than a day is a protocol error, never a panic or a pinned token.
fn expires_in(raw: Option<serde_json::Value>) -> Result<u64, TestError> {
    let seconds = match &raw {
        None | Some(serde_json::Value::Null) => return Ok(3600),
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match seconds {
        Some(s) if (1.0..=MAX_EXPIRES_IN as f64).contains(&s) => Ok(s as u64),
        _ => Err(TestError::protocol(&format!(
            "token answer has an expires_in of {} (expected 1 to {MAX_EXPIRES_IN} seconds)",
            raw.map(|v| v.to_string()).unwrap_or_default()
        ))),
    }
}

pub(crate) fn classify_grant(answer: Answer) -> Result<TokenGrant, TestError> {
    if let Some(e) = common(&answer) {
        return Err(e);
    }
    let status = Some(answer.status);
    match answer.status {
        200..=299 => {
            let body: GrantBody = serde_json::from_slice(&answer.body)
                .map_err(|_| TestError::protocol("token answer is not JSON").status(status))?;
            let access_token = body.access_token.filter(|t| !t.is_empty()).ok_or_else(|| {
                TestError::protocol("token answer has no access_token").status(status)
            })?;
            let expires_in = expires_in(body.expires_in).map_err(|e| e.status(status))?;
            Ok(TokenGrant {
                access_token: SecretString::from(access_token),
                expires_in,
                refresh_token: body
                    .refresh_token
                    .filter(|t| !t.is_empty())
                    .map(SecretString::from),
            })
        }
        400 | 401 => {
            let error = serde_json::from_slice::<OAuthError>(&answer.body)
                .ok()
                .and_then(|b| b.error);
            Err(match (error.as_deref(), answer.status) {
                (Some("invalid_client" | "unauthorized_client"), _) => TestError::invalid_client(),
                (Some("invalid_grant"), _) => TestError::invalid_refresh_token(),
                (_, 401) => TestError::invalid_client(),
                _ => TestError::credentials_rejected(),
            }
            .status(status))
        }
        s => Err(TestError::protocol(&format!("token endpoint answered HTTP {s}")).status(status)),
    }
}

#[derive(Deserialize)]
struct ProfilesBody {
    value: Vec<ProfileBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProfileBody {
    #[serde(rename = "ID")]
    id: i64,
    account_name: Option<String>,
    company_name: Option<String>,
}

fn classify_profiles(answer: Answer) -> Result<Vec<Profile>, TestError> {
    if let Some(e) = common(&answer) {
        return Err(e);
    }
    let status = Some(answer.status);
    match answer.status {
        200..=299 => serde_json::from_slice::<ProfilesBody>(&answer.body)
            .map(|b| {
                b.value
                    .into_iter()
                    .map(|p| Profile {
                        id: p.id,
                        account_name: p.account_name,
                        company_name: p.company_name,
                    })
                    .collect()
            })
            .map_err(|_| {
                TestError::protocol("profiles answer is not the expected JSON").status(status)
            }),
        401 | 403 => Err(TestError::access_denied().status(status)),
        s => {
            Err(TestError::protocol(&format!("profiles endpoint answered HTTP {s}")).status(status))
        }
    }
}

#[cfg(test)]
mod expiry_tests {
    use super::expires_in;
    use serde_json::json;

    #[test]
    fn absurd_lives_are_protocol_errors() {
        assert_eq!(expires_in(None).unwrap(), 3600);
        assert_eq!(expires_in(Some(json!(3600))).unwrap(), 3600);
        assert_eq!(expires_in(Some(json!("1800"))).unwrap(), 1800);
        for bad in [
            json!(0),
            json!(-5),
            json!(86_401),
            json!(1e12),
            json!("soon"),
            json!([1]),
        ] {
            let e = expires_in(Some(bad.clone())).unwrap_err();
            assert_eq!(e.code.as_str(), "upstream_protocol_error", "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_form_urlencodes_id_and_secret() {
        let app = ApplicationId::parse("app:1").unwrap().unwrap();
        let secret = SharedSecret::parse("s&c+r=t").unwrap().unwrap();
        let header = basic_auth(&app, &secret);
        let decoded = STANDARD
            .decode(header.expose_secret().trim_start_matches("Basic "))
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), "app%3A1:s%26c%2Br%3Dt");
        let plain = basic_auth(
            &ApplicationId::parse("abc123").unwrap().unwrap(),
            &SharedSecret::parse("XyZ789").unwrap().unwrap(),
        );
        assert_eq!(
            plain.expose_secret(),
            &format!("Basic {}", STANDARD.encode("abc123:XyZ789"))
        );
    }

    #[test]
    fn grant_debug_is_redacted() {
        let g = TokenGrant {
            access_token: SecretString::from("tok-abc".to_string()),
            expires_in: 1,
            refresh_token: None,
        };
        assert!(!format!("{g:?}").contains("tok-abc"));
    }

    /// Every slot held past a caller's deadline: the caller is told `upstream_unavailable` when
    /// its deadline runs out, and nothing is sent (the address would refuse the connection).
    #[tokio::test]
    async fn a_call_that_finds_no_slot_in_time_is_unavailable() {
        let deadline = Duration::from_millis(300);
        let client =
            ChannelAdvisorClient::new("http://127.0.0.1:9/".parse().unwrap(), deadline, 1).unwrap();
        let _held = client.slots.clone().acquire_owned().await.unwrap();
        let started = std::time::Instant::now();
        let err = client
            .refresh_grant(
                &ApplicationId::parse("app").unwrap().unwrap(),
                &SharedSecret::parse("secret").unwrap().unwrap(),
                &RefreshToken::parse("refresh").unwrap().unwrap(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code, crate::taxonomy::ErrorCode::UpstreamUnavailable);
        let waited = started.elapsed();
        assert!(waited >= deadline && waited < deadline * 2, "{waited:?}");
    }
}
