use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use thiserror::Error;

const NONCE_LEN: usize = 12;

/// Why a key ring could not be built or a value could not be opened. Never carries plaintext or
/// key material.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SealError {
    #[error("encryption keys: {0}")]
    BadKeys(String),
    #[error("secrets are sealed with key id '{0}', which is not configured in CA_CONNECTOR_ENCRYPTION_KEYS")]
    UnknownKey(String),
    #[error("the configured encryption key for id '{0}' is not the one the database was sealed with (the key was replaced under the same id); configure the original key for '{0}', or give the new key another id and keep the old one listed until `ca-connector rotate-keys` has run")]
    WrongKey(String),
    #[error("the sealed {field} of company '{company}' does not open (tampered, copied from another row, or truncated)")]
    Open { company: String, field: String },
}

/// A sealed value: AES-256-GCM nonce followed by ciphertext and tag, plus the id of the key that
/// sealed it (stored beside it in the row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

/// The configured encryption keys. The first one seals; all of them open, so old keys keep
/// working until `ca-connector rotate-keys` has re-sealed everything under the first.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<(String, Aes256Gcm)>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).finish()
    }
}

impl KeyRing {
    /// Parses `ID:BASE64KEY[,ID:BASE64KEY…]`; every key is 32 bytes.
    pub fn parse(spec: &SecretString) -> Result<Self, SealError> {
        let mut keys = Vec::new();
        for entry in spec.expose_secret().split(',').map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            let (id, b64) = entry
                .split_once(':')
                .ok_or_else(|| SealError::BadKeys("each entry must be ID:BASE64KEY".into()))?;
            let id = id.trim();
            if id.is_empty()
                || id.len() > 32
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(SealError::BadKeys(format!(
                    "key id '{}' must be 1-32 characters of A-Z a-z 0-9 - _",
                    id.chars().take(32).collect::<String>()
                )));
            }
            let raw = STANDARD
                .decode(b64.trim())
                .map_err(|_| SealError::BadKeys(format!("key '{id}' is not valid base64")))?;
            if raw.len() != 32 {
                return Err(SealError::BadKeys(format!(
                    "key '{id}' must be 32 bytes, got {}",
                    raw.len()
                )));
            }
            if keys.iter().any(|(k, _): &(String, Aes256Gcm)| k == id) {
                return Err(SealError::BadKeys(format!("key id '{id}' appears twice")));
            }
            let cipher = Aes256Gcm::new_from_slice(&raw)
                .map_err(|_| SealError::BadKeys(format!("key '{id}' is unusable")))?;
            keys.push((id.to_string(), cipher));
        }
        if keys.is_empty() {
            return Err(SealError::BadKeys("no key given".into()));
        }
        Ok(KeyRing { keys })
    }

    /// A new random key in the `ID:BASE64KEY` form, for generated dev secrets and tests.
    pub fn generate_spec(id: &str) -> SecretString {
        let key = Aes256Gcm::generate_key(&mut OsRng);
        SecretString::from(format!("{id}:{}", STANDARD.encode(key)))
    }

    pub fn primary_id(&self) -> &str {
        &self.keys[0].0
    }

    pub fn has_key(&self, id: &str) -> bool {
        self.keys.iter().any(|(k, _)| k == id)
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(k, _)| k.as_str())
    }

    /// Seals under the first key. The company and field are bound as associated data, so the
    /// ciphertext opens only in the place it was written for.
    pub fn seal(&self, company: &str, field: &str, plaintext: &SecretString) -> Sealed {
        let (id, cipher) = &self.keys[0];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = associated_data(company, field);
        #[allow(clippy::expect_used)] // see the message: no input here can make it fail
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.expose_secret().as_bytes(),
                    aad: &aad,
                },
            )
            // AES-GCM encryption only fails for messages beyond 64 GiB.
            .expect("AES-GCM sealing of a short value cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        Sealed {
            key_id: id.clone(),
            bytes,
        }
    }

    pub fn open(
        &self,
        company: &str,
        field: &str,
        key_id: &str,
        bytes: &[u8],
    ) -> Result<SecretString, SealError> {
        let cipher = self
            .keys
            .iter()
            .find(|(k, _)| k == key_id)
            .map(|(_, c)| c)
            .ok_or_else(|| SealError::UnknownKey(key_id.to_string()))?;
        let fail = || SealError::Open {
            company: company.to_string(),
            field: field.to_string(),
        };
        if bytes.len() < NONCE_LEN + 16 {
            return Err(fail());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let aad = associated_data(company, field);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| fail())?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| fail())
    }
}

/// What a key check value seals: a known text under one key id, so a start-up can tell whether
/// the key configured for that id is the one the database was written with.
const KEY_CHECK_TEXT: &[u8] = b"ca-connector key check";

impl KeyRing {
    /// A fresh key check value for key `id` (nonce, ciphertext and tag); `None` for an id the ring
    /// does not have.
    pub fn key_check(&self, id: &str) -> Option<Vec<u8>> {
        let (_, cipher) = self.keys.iter().find(|(k, _)| k == id)?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = associated_data("", &format!("key-check:{id}"));
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: KEY_CHECK_TEXT,
                    aad: &aad,
                },
            )
            .ok()?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Some(bytes)
    }

    /// Whether the configured key for `id` opens a key check value written earlier.
    pub fn verifies_key_check(&self, id: &str, bytes: &[u8]) -> bool {
        let Some((_, cipher)) = self.keys.iter().find(|(k, _)| k == id) else {
            return false;
        };
        if bytes.len() < NONCE_LEN + 16 {
            return false;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let aad = associated_data("", &format!("key-check:{id}"));
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .is_ok_and(|plain| plain == KEY_CHECK_TEXT)
    }
}

fn associated_data(company: &str, field: &str) -> Vec<u8> {
    // The unit separator cannot occur in a company id or a field name, so the pair is unambiguous.
    format!("ca-connector\u{1f}{company}\u{1f}{field}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(spec: &str) -> KeyRing {
        KeyRing::parse(&SecretString::from(spec.to_string())).unwrap()
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_string())
    }

    #[test]
    fn key_check_tells_the_same_id_with_another_key() {
        let keys = KeyRing::parse(&KeyRing::generate_spec("k1")).unwrap();
        let check = keys.key_check("k1").unwrap();
        assert!(keys.verifies_key_check("k1", &check));
        let replaced = KeyRing::parse(&KeyRing::generate_spec("k1")).unwrap();
        assert!(!replaced.verifies_key_check("k1", &check));
        assert!(keys.key_check("k2").is_none());
        assert!(!keys.verifies_key_check("k1", &check[..20]));
    }

    #[test]
    fn round_trip_and_fresh_nonce() {
        let keys = KeyRing::parse(&KeyRing::generate_spec("k1")).unwrap();
        let a = keys.seal("acme", "refresh_token", &secret("tok-123"));
        let b = keys.seal("acme", "refresh_token", &secret("tok-123"));
        assert_ne!(a.bytes, b.bytes, "every sealing uses a fresh nonce");
        let opened = keys
            .open("acme", "refresh_token", &a.key_id, &a.bytes)
            .unwrap();
        assert_eq!(opened.expose_secret(), "tok-123");
    }

    #[test]
    fn wrong_company_field_or_key_does_not_open() {
        let keys = KeyRing::parse(&KeyRing::generate_spec("k1")).unwrap();
        let s = keys.seal("acme", "shared_secret", &secret("s3cret"));
        assert!(matches!(
            keys.open("other", "shared_secret", "k1", &s.bytes),
            Err(SealError::Open { .. })
        ));
        assert!(matches!(
            keys.open("acme", "refresh_token", "k1", &s.bytes),
            Err(SealError::Open { .. })
        ));
        let other = KeyRing::parse(&KeyRing::generate_spec("k1")).unwrap();
        assert!(matches!(
            other.open("acme", "shared_secret", "k1", &s.bytes),
            Err(SealError::Open { .. })
        ));
        assert!(matches!(
            keys.open("acme", "shared_secret", "k9", &s.bytes),
            Err(SealError::UnknownKey(id)) if id == "k9"
        ));
    }

    #[test]
    fn truncated_or_flipped_input_does_not_open() {
        let keys = KeyRing::parse(&KeyRing::generate_spec("k1")).unwrap();
        let s = keys.seal("acme", "shared_secret", &secret("s3cret"));
        for len in [0, 5, 12, 27, s.bytes.len() - 1] {
            assert!(keys
                .open("acme", "shared_secret", "k1", &s.bytes[..len])
                .is_err());
        }
        let mut flipped = s.bytes.clone();
        flipped[14] ^= 1;
        assert!(keys.open("acme", "shared_secret", "k1", &flipped).is_err());
    }

    #[test]
    fn old_keys_open_new_key_seals() {
        let old = KeyRing::generate_spec("old");
        let new = KeyRing::generate_spec("new");
        let before = KeyRing::parse(&old).unwrap();
        let sealed = before.seal("acme", "shared_secret", &secret("x"));
        let both = format!("{},{}", new.expose_secret(), old.expose_secret());
        let after = KeyRing::parse(&SecretString::from(both)).unwrap();
        assert_eq!(after.primary_id(), "new");
        assert_eq!(
            after
                .open("acme", "shared_secret", "old", &sealed.bytes)
                .unwrap()
                .expose_secret(),
            "x"
        );
        assert_eq!(
            after.seal("acme", "shared_secret", &secret("x")).key_id,
            "new"
        );
    }

    #[test]
    fn bad_specs_are_refused_without_echoing_keys() {
        for bad in ["", "nocolon", "k1:!!!", "k1:c2hvcnQ=", "k 1:AAAA"] {
            let err = KeyRing::parse(&secret(bad)).unwrap_err();
            assert!(!err.to_string().contains("c2hvcnQ"), "{err}");
        }
        let dup = format!(
            "{},{}",
            KeyRing::generate_spec("a").expose_secret(),
            KeyRing::generate_spec("a").expose_secret()
        );
        assert!(KeyRing::parse(&SecretString::from(dup)).is_err());
        let _ = ring(KeyRing::generate_spec("ok").expose_secret());
    }
}
