//! Bearer tokens already verified, kept until they expire: connector jobs send the same JWT on
//! every call, and checking its signature and claims again each time was a tenth of a cached
//! token request. The key is the token's SHA-256, so the cache never holds a bearer credential;
//! a changed token is verified afresh, and since its claims cannot change, the only thing left to
//! check on a hit is the expiry.

use sha2::{Digest, Sha256};

use crate::http::auth::Caller;

/// More distinct tokens than any deployment's jobs use at once; past it the least used go.
const CAPACITY: u64 = 10_000;

pub struct VerifiedTokens {
    leeway_secs: i64,
    entries: moka::sync::Cache<[u8; 32], Verified>,
}

#[derive(Clone)]
struct Verified {
    caller: Caller,
    /// `exp` of the token, seconds since the epoch.
    expires: i64,
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl VerifiedTokens {
    pub fn new(leeway_secs: u64) -> Self {
        VerifiedTokens {
            leeway_secs: leeway_secs as i64,
            entries: moka::sync::Cache::new(CAPACITY),
        }
    }

    /// The caller of a token verified before and not yet expired (with the same leeway as the
    /// verification itself).
    pub fn get(&self, token: &str, now: i64) -> Option<Caller> {
        let key = key(token);
        let verified = self.entries.get(&key)?;
        if now <= verified.expires + self.leeway_secs {
            return Some(verified.caller);
        }
        self.entries.invalidate(&key);
        None
    }

    pub fn insert(&self, token: &str, caller: Caller, expires: i64) {
        self.entries
            .insert(key(token), Verified { caller, expires });
    }
}
