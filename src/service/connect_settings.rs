//! The settings of Connect to ChannelAdvisor (contract §1, §10): where ChannelAdvisor sends the
//! admin's browser back, which scopes are asked for, and where the browser may be sent after.

use clap::Args;

use crate::service::settings::{is_loopback, ConfigError};

#[derive(Clone, Args)]
pub struct ConnectArgs {
    /// The service's external base URL (https://…; http:// only on loopback); Connect to
    /// ChannelAdvisor needs it, or --oauth-redirect-uri
    #[arg(long, env = "CA_CONNECTOR_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The Redirect URI registered on the application in the Developer Console
    /// [default: {public-url}/oauth/callback]
    #[arg(long, env = "CA_CONNECTOR_OAUTH_REDIRECT_URI")]
    pub oauth_redirect_uri: Option<String>,
    /// Scopes asked for by Connect to ChannelAdvisor (space-separated)
    #[arg(
        long,
        env = "CA_CONNECTOR_OAUTH_SCOPE",
        default_value = "orders inventory"
    )]
    pub oauth_scope: String,
    /// Origins (scheme://host[:port], comma-separated) a Connect may send the browser back to
    /// [default: the public URL's origin]
    #[arg(
        long,
        env = "CA_CONNECTOR_CONNECT_RETURN_ORIGINS",
        value_delimiter = ','
    )]
    pub connect_return_origins: Vec<String>,
}

/// Resolved Connect settings. `redirect_uri` is `None` when Connect is not configured.
#[derive(Clone, Debug)]
pub struct ConnectSettings {
    pub redirect_uri: Option<url::Url>,
    pub scope: String,
    /// ASCII serializations of the allowed origins (`https://erp.example`).
    pub return_origins: Vec<String>,
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        message: message.into(),
    }
}

/// An https URL, or http on loopback (a local stand-in): a code or a redirect over plain http
/// elsewhere would cross the network in the clear.
fn web_url(setting: &'static str, raw: &str) -> Result<url::Url, ConfigError> {
    let url = url::Url::parse(raw.trim())
        .map_err(|e| invalid(setting, format!("'{raw}' is not a URL ({e})")))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(invalid(
            setting,
            format!("'{raw}' is plain http outside this machine; use https"),
        )),
        _ => Err(invalid(setting, format!("'{raw}' must be an https URL"))),
    }
}

impl ConnectArgs {
    pub fn resolve(&self) -> Result<ConnectSettings, ConfigError> {
        let public = self
            .public_url
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|raw| web_url("--public-url", raw))
            .transpose()?;
        let redirect_uri = match self
            .oauth_redirect_uri
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            Some(raw) => Some(web_url("--oauth-redirect-uri", raw)?),
            None => public
                .as_ref()
                .map(|p| {
                    let base = p.as_str().trim_end_matches('/');
                    url::Url::parse(&format!("{base}/oauth/callback"))
                })
                .transpose()
                .map_err(|e| invalid("--public-url", e.to_string()))?,
        };
        let scope = self
            .oauth_scope
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if scope.is_empty() {
            return Err(invalid("--oauth-scope", "must name at least one scope"));
        }
        let mut return_origins = Vec::new();
        for raw in self
            .connect_return_origins
            .iter()
            .filter(|s| !s.trim().is_empty())
        {
            let url = web_url("--connect-return-origins", raw)?;
            if url.path() != "/" || url.query().is_some() {
                return Err(invalid(
                    "--connect-return-origins",
                    format!("'{raw}' is not an origin (scheme://host[:port], no path)"),
                ));
            }
            return_origins.push(url.origin().ascii_serialization());
        }
        if return_origins.is_empty() {
            return_origins.extend(public.iter().map(|p| p.origin().ascii_serialization()));
        }
        Ok(ConnectSettings {
            redirect_uri,
            scope,
            return_origins,
        })
    }
}

impl ConnectSettings {
    /// What `check-config` prints about Connect: how it is set up, or what it is missing.
    pub fn describe(&self) -> String {
        match &self.redirect_uri {
            Some(uri) => format!(
                "connect: redirect URI {uri} (register it on the application in the Developer Console), scope '{}', return origins: {}",
                self.scope,
                if self.return_origins.is_empty() {
                    "none".to_string()
                } else {
                    self.return_origins.join(", ")
                }
            ),
            None => "connect: off — Connect to ChannelAdvisor needs --public-url (CA_CONNECTOR_PUBLIC_URL) or --oauth-redirect-uri (CA_CONNECTOR_OAUTH_REDIRECT_URI)".to_string(),
        }
    }

    /// Whether `return_to` may be sent the browser back to: an allowed origin, nothing else.
    pub fn allows_return_to(&self, return_to: &url::Url) -> bool {
        self.return_origins
            .contains(&return_to.origin().ascii_serialization())
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectArgs;

    fn args(public: Option<&str>, redirect: Option<&str>, origins: &[&str]) -> ConnectArgs {
        ConnectArgs {
            public_url: public.map(String::from),
            oauth_redirect_uri: redirect.map(String::from),
            oauth_scope: "orders  inventory".into(),
            connect_return_origins: origins.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_redirect_uri_and_origins_follow_the_public_url() {
        let s = args(Some("https://ca.example/base/"), None, &[])
            .resolve()
            .unwrap();
        assert_eq!(
            s.redirect_uri.unwrap().as_str(),
            "https://ca.example/base/oauth/callback"
        );
        assert_eq!(s.return_origins, vec!["https://ca.example"]);
        assert_eq!(s.scope, "orders inventory");
        let off = args(None, None, &[]).resolve().unwrap();
        assert!(off.redirect_uri.is_none());
        assert!(off.describe().contains("--public-url"));
    }

    #[test]
    fn plain_http_elsewhere_and_paths_in_origins_are_refused() {
        for bad in [
            args(Some("http://ca.example"), None, &[]),
            args(None, Some("ftp://ca.example/cb"), &[]),
            args(
                Some("https://ca.example"),
                None,
                &["https://erp.example/path"],
            ),
        ] {
            assert!(bad.resolve().is_err());
        }
        let local = args(
            Some("http://127.0.0.1:8080"),
            None,
            &["https://erp.example"],
        );
        let s = local.resolve().unwrap();
        assert!(s.allows_return_to(&url::Url::parse("https://erp.example/screen?x=1").unwrap()));
        assert!(!s.allows_return_to(&url::Url::parse("https://evil.example/").unwrap()));
    }
}
