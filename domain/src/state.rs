/// The connection state shown on the ERP screen (contract §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "diesel", derive(diesel::AsExpression, diesel::FromSqlRow))]
#[cfg_attr(feature = "diesel", diesel(sql_type = diesel::sql_types::Text))]
pub enum ConnectionState {
    NotConfigured,
    Incomplete,
    Untested,
    Connected,
    Failed,
}

/// A state name this build does not know (a newer build's, or a damaged row).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not a connection state (not_configured, incomplete, untested, connected, failed)"
)]
pub struct UnknownState(pub String);

impl ConnectionState {
    pub const ALL: [ConnectionState; 5] = [
        ConnectionState::NotConfigured,
        ConnectionState::Incomplete,
        ConnectionState::Untested,
        ConnectionState::Connected,
        ConnectionState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::NotConfigured => "not_configured",
            ConnectionState::Incomplete => "incomplete",
            ConnectionState::Untested => "untested",
            ConnectionState::Connected => "connected",
            ConnectionState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Result<ConnectionState, UnknownState> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_and_others_are_refused() {
        for state in ConnectionState::ALL {
            assert_eq!(ConnectionState::parse(state.as_str()), Ok(state));
        }
        assert!(ConnectionState::parse("paused").is_err());
        assert!(ConnectionState::parse("").is_err());
    }
}
