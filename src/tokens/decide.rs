//! The token decision: given what the store holds for a company and what a caller needs, what
//! happens next. Pure, so every case is a row of the table test below.

use chrono::{DateTime, Duration, Utc};
use connector::TestError;
use schema::tokens::{CachedToken, TokenRow};
use schema::ConnectionState;

/// A permanent rejection of the same values is repeated to jobs for this long without asking
/// ChannelAdvisor again: jobs retrying in a loop must not hammer it.
pub const REMEMBER_PERMANENT: Duration = Duration::seconds(60);

/// What a caller asks for.
#[derive(Debug, Clone)]
pub struct Ask {
    /// The least remaining life a cached token must have; `None` for a Test Connection, which
    /// needs an exchange made after it asked.
    pub life: Option<Duration>,
    /// When the caller asked: a token obtained since will do whatever its life (nothing fresher
    /// exists), and an error recorded since is the answer.
    pub since: DateTime<Utc>,
}

impl Ask {
    pub fn accepts(&self, token: &CachedToken, now: DateTime<Utc>) -> bool {
        token.obtained_at >= self.since
            || self.life.is_some_and(|life| token.expires_at - now > life)
    }
}

#[derive(Debug, Clone)]
pub enum Refusal {
    /// No credentials, or not all the values the method needs.
    NotReady {
        state: ConnectionState,
        missing: Vec<&'static str>,
    },
    /// ChannelAdvisor refused or failed, now or (permanently) a moment ago.
    Upstream(TestError),
}

#[derive(Debug, Clone)]
pub enum Decision {
    Serve(CachedToken),
    /// Another refresh holds the lease: its token or error will be in the store shortly.
    Wait,
    /// Take the lease and ask ChannelAdvisor.
    Refresh,
    Refuse(Refusal),
}

pub fn decide(
    cached: Option<&CachedToken>,
    row: Option<&TokenRow>,
    ask: &Ask,
    now: DateTime<Utc>,
) -> Decision {
    let Some(row) = row else {
        return Decision::Refuse(Refusal::NotReady {
            state: ConnectionState::NotConfigured,
            missing: vec!["application_id", "shared_secret", "refresh_token"],
        });
    };
    if let Some(token) = cached.filter(|t| ask.accepts(t, now)) {
        return Decision::Serve(token.clone());
    }
    if let Some(last) = &row.remembered {
        let permanent = last.error.code.is_permanent()
            && row.state == ConnectionState::Failed
            && ask.life.is_some()
            && now - last.at < REMEMBER_PERMANENT;
        if last.at >= ask.since || permanent {
            return Decision::Refuse(Refusal::Upstream(last.error.clone()));
        }
    }
    if row.lease.as_ref().is_some_and(|l| l.until > now) {
        return Decision::Wait;
    }
    if !row.missing.is_empty() {
        return Decision::Refuse(Refusal::NotReady {
            state: row.state,
            missing: row.missing.clone(),
        });
    }
    Decision::Refresh
}

#[cfg(test)]
mod tests {
    use schema::tokens::{Lease, Remembered};
    use secrecy::SecretString;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn token(obtained: i64, expires: i64) -> CachedToken {
        CachedToken {
            access_token: SecretString::from("t"),
            expires_at: at(expires),
            obtained_at: at(obtained),
        }
    }

    fn row(state: ConnectionState) -> TokenRow {
        TokenRow {
            state,
            missing: vec![],
            lease: None,
            remembered: None,
        }
    }

    fn leased(until: i64) -> TokenRow {
        TokenRow {
            lease: Some(Lease {
                holder: "other".into(),
                until: at(until),
            }),
            ..row(ConnectionState::Connected)
        }
    }

    fn remembered(state: ConnectionState, error: TestError, when: i64) -> TokenRow {
        TokenRow {
            remembered: Some(Remembered {
                error,
                at: at(when),
            }),
            ..row(state)
        }
    }

    fn job(life: i64, since: i64) -> Ask {
        Ask {
            life: Some(Duration::seconds(life)),
            since: at(since),
        }
    }

    fn test_press(since: i64) -> Ask {
        Ask {
            life: None,
            since: at(since),
        }
    }

    fn name(d: &Decision) -> &'static str {
        match d {
            Decision::Serve(_) => "serve",
            Decision::Wait => "wait",
            Decision::Refresh => "refresh",
            Decision::Refuse(Refusal::NotReady { .. }) => "not ready",
            Decision::Refuse(Refusal::Upstream(_)) => "upstream error",
        }
    }

    #[test]
    fn every_case_of_the_decision() {
        use ConnectionState::*;
        let rejected = || TestError::invalid_refresh_token().status(Some(400));
        let transient = || TestError::timeout(15);
        let incomplete = TokenRow {
            missing: vec!["refresh_token"],
            ..row(Incomplete)
        };
        let now = at(1000);
        type Case = (
            &'static str,
            Option<CachedToken>,
            Option<TokenRow>,
            Ask,
            &'static str,
        );
        #[rustfmt::skip]
        let table: Vec<Case> = vec![
            ("no credentials", None, None, job(300, 1000), "not ready"),
            ("not all values", None, Some(incomplete), job(300, 1000), "not ready"),
            ("a token with life to spare", Some(token(900, 4000)), Some(row(Connected)), job(300, 1000), "serve"),
            ("a token inside the margin", Some(token(900, 1200)), Some(row(Connected)), job(300, 1000), "refresh"),
            ("a short token obtained after the ask", Some(token(1000, 1200)), Some(row(Connected)), job(300, 999), "serve"),
            ("a test never takes a token from before it", Some(token(900, 4000)), Some(row(Connected)), test_press(950), "refresh"),
            ("a test takes one exchanged after it asked", Some(token(960, 4000)), Some(row(Connected)), test_press(950), "serve"),
            ("no token yet", None, Some(row(Untested)), job(300, 1000), "refresh"),
            ("another refresh holds the lease", None, Some(leased(1010)), job(300, 1000), "wait"),
            ("a lease that ran out", None, Some(leased(990)), job(300, 1000), "refresh"),
            ("the refresh waited on failed", None, Some(remembered(Connected, transient(), 1001)), job(300, 1000), "upstream error"),
            ("a transient failure before the ask", None, Some(remembered(Connected, transient(), 990)), job(300, 1000), "refresh"),
            ("a permanent rejection a moment ago", None, Some(remembered(Failed, rejected(), 990)), job(300, 1000), "upstream error"),
            ("a permanent rejection long ago", None, Some(remembered(Failed, rejected(), 900)), job(300, 1000), "refresh"),
            ("a test asks again after a rejection", None, Some(remembered(Failed, rejected(), 990)), test_press(1000), "refresh"),
        ];
        for (case, cached, row, ask, expected) in table {
            let decision = decide(cached.as_ref(), row.as_ref(), &ask, now);
            assert_eq!(name(&decision), expected, "{case}");
        }
    }
}
