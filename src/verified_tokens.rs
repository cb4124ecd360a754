//! Bearer tokens already verified, kept until they expire: connector jobs send the same JWT on
//! every call, and checking its signature and claims again each time was a tenth of a cached
//! token request. A token is the key, so a changed token is verified afresh; its claims cannot
//! change, so the only thing left to check on a hit is the expiry.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::auth::Caller;

/// More distinct tokens than any deployment's jobs use at once; past it the map starts over.
const CAPACITY: usize = 10_000;

pub struct VerifiedTokens {
    leeway_secs: i64,
    entries: Mutex<HashMap<String, Verified>>,
}

struct Verified {
    caller: Caller,
    /// `exp` of the token, seconds since the epoch.
    expires: i64,
}

impl VerifiedTokens {
    pub fn new(leeway_secs: u64) -> Self {
        VerifiedTokens {
            leeway_secs: leeway_secs as i64,
            entries: Mutex::default(),
        }
    }

    /// The caller of a token verified before and not yet expired (with the same leeway as the
    /// verification itself).
    pub fn get(&self, token: &str, now: i64) -> Option<Caller> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(token) {
            Some(v) if now <= v.expires + self.leeway_secs => Some(v.caller.clone()),
            Some(_) => {
                entries.remove(token);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, token: &str, caller: Caller, expires: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(token.to_string(), Verified { caller, expires });
    }
}
