//! JWT authentication (contract §2): who is calling, on which companies, with which scopes.
//! `Caller` is an extractor; every `/api/v1` handler takes one and asks it for permission.

use std::collections::HashSet;
use std::future::{ready, Ready};
use std::sync::Arc;

use actix_web::http::header::{self, WWW_AUTHENTICATE};
use actix_web::http::StatusCode;
use actix_web::{dev::Payload, web, FromRequest, HttpMessage, HttpRequest};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use schema::CompanyId;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::http::problem::ApiError;
use crate::http::state::AppState;
use crate::http::verified_tokens::VerifiedTokens;
use crate::service::settings::{JwtKey, JwtSettings};

/// A permission named in the token's `scope` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    CredentialsRead,
    CredentialsWrite,
    ConnectionRead,
    ConnectionTest,
    TokenIssue,
    WebhooksManage,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::CredentialsRead => "credentials:read",
            Scope::CredentialsWrite => "credentials:write",
            Scope::ConnectionRead => "connection:read",
            Scope::ConnectionTest => "connection:test",
            Scope::TokenIssue => "token:issue",
            Scope::WebhooksManage => "webhooks:manage",
        }
    }

    fn parse(s: &str) -> Option<Scope> {
        [
            Scope::CredentialsRead,
            Scope::CredentialsWrite,
            Scope::ConnectionRead,
            Scope::ConnectionTest,
            Scope::TokenIssue,
            Scope::WebhooksManage,
        ]
        .into_iter()
        .find(|scope| scope.as_str() == s)
    }
}

/// The longest subject accepted: it is echoed in events and audit records.
pub const SUB_MAX_CHARS: usize = 256;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    pub aud: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub iat: i64,
    pub companies: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The claims this service reads; `aud` may be a string or an array, so it is left to the validator.
#[derive(Deserialize)]
struct IncomingClaims {
    sub: String,
    companies: Vec<String>,
    #[serde(default)]
    scope: Option<String>,
    exp: i64,
}

/// The request's authenticated caller, kept for its access log line.
#[derive(Debug, Clone)]
pub struct Actor(pub Caller);

/// The authenticated caller of one request. Shared, not copied: the same verified token serves
/// every call of a job, and copying its claims on each was measurable.
#[derive(Debug, Clone)]
pub struct Caller(Arc<Identity>);

#[derive(Debug)]
pub struct Identity {
    pub sub: String,
    /// When the token expires (unix seconds): a live event stream ends then.
    pub exp: i64,
    all_companies: bool,
    companies: Vec<String>,
    scopes: HashSet<Scope>,
}

impl std::ops::Deref for Caller {
    type Target = Identity;

    fn deref(&self) -> &Identity {
        &self.0
    }
}

impl Caller {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("This token lacks the '{}' permission.", scope.as_str()),
            )
            .header(
                WWW_AUTHENTICATE,
                format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{}\"",
                    scope.as_str()
                ),
            ))
        }
    }

    /// The companies the token names (meaningless when it covers all).
    pub fn companies(&self) -> &[String] {
        &self.companies
    }

    pub fn may_access(&self, company: &str) -> bool {
        self.all_companies || self.companies.iter().any(|c| c == company)
    }

    /// Checks, in order: the company id's form (400), the scope (403) and the company (403).
    pub fn authorize(&self, scope: Scope, raw_company: &str) -> Result<CompanyId, ApiError> {
        let company = CompanyId::parse(raw_company)
            .map_err(|msg| ApiError::new(StatusCode::BAD_REQUEST, "invalid_company", msg))?;
        self.require(scope)?;
        if !self.may_access(company.as_str()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "company_forbidden",
                format!("This token does not cover company '{company}'."),
            ));
        }
        Ok(company)
    }

    /// `None` for a caller covering every company; else the companies its token names.
    pub fn company_list(&self) -> Option<Vec<CompanyId>> {
        (!self.all_companies).then(|| {
            self.companies
                .iter()
                .filter_map(|c| CompanyId::parse(c).ok())
                .collect()
        })
    }

    pub fn covers_all(&self) -> bool {
        self.all_companies
    }
}

/// Verifies tokens with the one configured algorithm.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
    verified: VerifiedTokens,
    algorithm: Algorithm,
    audience: String,
    issuer: Option<String>,
}

impl Authenticator {
    pub fn new(jwt: &JwtSettings) -> Result<Self, String> {
        let (key, algorithm) = match &jwt.key {
            JwtKey::Hs256(secret) => (
                DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                Algorithm::HS256,
            ),
            JwtKey::PublicKey(pem) => {
                if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
                    (key, Algorithm::RS256)
                } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
                    (key, Algorithm::ES256)
                } else {
                    return Err("--jwt-public-key: not a PEM RSA or EC (P-256) public key".into());
                }
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = 60;
        validation.validate_nbf = true;
        validation.set_audience(&[&jwt.audience]);
        let mut required = vec!["sub", "exp", "aud"];
        if let Some(iss) = &jwt.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let verified = VerifiedTokens::new(validation.leeway);
        Ok(Authenticator {
            key,
            validation,
            verified,
            algorithm,
            audience: jwt.audience.clone(),
            issuer: jwt.issuer.clone(),
        })
    }

    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, ApiError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                unauthorized("A bearer token is required (Authorization: Bearer <JWT>).")
            })?;
        let now = jsonwebtoken::get_current_timestamp() as i64;
        if let Some(caller) = self.verified.get(token, now) {
            return Ok(caller);
        }
        let data = decode::<IncomingClaims>(token, &self.key, &self.validation).map_err(|e| {
            tracing::info!(reason = %e, "token refused");
            unauthorized(&self.refusal(token, &e))
        })?;
        let claims = data.claims;
        // The subject is written into audit records and events, and sent on every live stream.
        if claims.sub.chars().count() > SUB_MAX_CHARS {
            return Err(unauthorized(&format!(
                "The bearer token's subject (sub) is longer than {SUB_MAX_CHARS} characters; issue it with a shorter one (a user or service id)."
            )));
        }
        let caller = Caller(Arc::new(Identity {
            sub: claims.sub,
            exp: claims.exp,
            all_companies: claims.companies.iter().any(|c| c == "*"),
            companies: claims.companies,
            scopes: claims
                .scope
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(Scope::parse)
                .collect(),
        }));
        self.verified.insert(token, caller.clone(), claims.exp);
        Ok(caller)
    }
}

impl Authenticator {
    /// Why a token was refused, in words that name the cure where the caller can fix it. Only
    /// settings the caller must match are named (audience, issuer, algorithm), never the key.
    fn refusal(&self, token: &str, e: &jsonwebtoken::errors::Error) -> String {
        use jsonwebtoken::errors::ErrorKind;
        let claim_time = |name: &str| {
            unverified_claims(token)
                .and_then(|c| c.get(name).and_then(serde_json::Value::as_i64))
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| "an unreadable time".into())
        };
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match e.kind() {
            ErrorKind::ExpiredSignature => format!(
                "The bearer token expired at {} (it is now {now}); get a new one from the ERP, or with `ca-connector token`.",
                claim_time("exp")
            ),
            ErrorKind::ImmatureSignature => format!(
                "The bearer token is not valid before {} (nbf; it is now {now}, 60 s leeway): the clocks of the token's issuer and this server disagree, fix the clock that is wrong.",
                claim_time("nbf")
            ),
            ErrorKind::InvalidAudience => format!(
                "The bearer token's audience (aud) is not '{}', which this service requires (--jwt-audience); issue the token with aud '{}'.",
                self.audience, self.audience
            ),
            ErrorKind::InvalidIssuer => format!(
                "The bearer token's issuer (iss) is not '{}', which this service requires (--jwt-issuer).",
                self.issuer.as_deref().unwrap_or_default()
            ),
            ErrorKind::InvalidSignature => "The bearer token's signature does not match the key this service is configured with (--jwt-secret or --jwt-public-key): it was signed with another key, for example one generated in another data dir. Sign it with the configured key (`ca-connector token` run with the same --data-dir does).".into(),
            ErrorKind::InvalidAlgorithm => format!(
                "The bearer token is signed with another algorithm; this service accepts {:?} only.",
                self.algorithm
            ),
            ErrorKind::MissingRequiredClaim(claim) => {
                format!("The bearer token lacks the required '{claim}' claim.")
            }
            ErrorKind::Json(err) => match missing_field(&err.to_string()) {
                Some("companies") => "The bearer token lacks the required 'companies' claim (an array of company ids, [\"*\"] for all).".into(),
                Some(claim) => format!("The bearer token lacks the required '{claim}' claim."),
                None => "The bearer token's claims are not of the expected types (sub a string, exp a number, companies an array of strings).".into(),
            },
            _ => "The bearer token is not a valid JWT.".into(),
        }
    }
}

/// The claim serde found missing, from its message "missing field `exp` at line …".
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.split_once("missing field `")?.1;
    rest.split_once('`').map(|(field, _)| field)
}

/// The payload of a token whose signature was already checked, read only to quote its times.
fn unverified_claims(token: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn unauthorized(detail: &str) -> ApiError {
    // RFC 6750 §3: error_description is a quoted string, so it may not hold a double quote.
    let description: String = detail
        .chars()
        .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
        .filter(|c| (' '..='~').contains(c))
        .collect();
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", detail).header(
        WWW_AUTHENTICATE,
        format!("Bearer error=\"invalid_token\", error_description=\"{description}\""),
    )
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = match req.app_data::<web::Data<AppState>>() {
            Some(state) => {
                let header = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                state.auth.authenticate(header)
            }
            None => Err(ApiError::internal("application state missing")),
        };
        if let Ok(caller) = &result {
            // For the request's access log line (recording it into the span re-formatted the
            // span's fields on every request).
            req.extensions_mut().insert(Actor(caller.clone()));
        }
        ready(result)
    }
}

/// Signs an HS256 token, as `ca-connector token` does for local use.
pub fn mint_hs256(secret: &SecretString, claims: &Claims) -> Result<String, String> {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )
    .map_err(|e| e.to_string())
}
