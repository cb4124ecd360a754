//! Standard Webhooks signatures: `v1,` + base64(HMAC-SHA256(secret bytes, "{id}.{timestamp}.{body}")).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

pub const PREFIX: &str = "whsec_";

/// A new subscription secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    SecretString::from(format!("{PREFIX}{}", STANDARD.encode(bytes)))
}

fn key_bytes(secret: &SecretString) -> Vec<u8> {
    let text = secret.expose_secret();
    let encoded = text.strip_prefix(PREFIX).unwrap_or(text);
    STANDARD
        .decode(encoded)
        .unwrap_or_else(|_| encoded.as_bytes().to_vec())
}

/// The `webhook-signature` header value for one attempt.
pub fn sign(secret: &SecretString, id: &str, timestamp: i64, body: &str) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&key_bytes(secret)).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked by the independent `standardwebhooks` implementation, not by our own code.
    #[test]
    fn signatures_verify_with_the_reference_library() {
        let secret = new_secret();
        assert!(secret.expose_secret().starts_with("whsec_"));
        let body = r#"{"type":"webhook.ping","timestamp":"2026-11-25T00:00:00.000Z","data":{}}"#;
        let ts = chrono::Utc::now().timestamp();
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", "msg_1".parse().unwrap());
        headers.insert("webhook-timestamp", ts.to_string().parse().unwrap());
        headers.insert(
            "webhook-signature",
            sign(&secret, "msg_1", ts, body).parse().unwrap(),
        );
        let verifier = standardwebhooks::Webhook::new(secret.expose_secret()).unwrap();
        verifier.verify(body.as_bytes(), &headers).unwrap();
        headers.insert(
            "webhook-signature",
            sign(&new_secret(), "msg_1", ts, body).parse().unwrap(),
        );
        assert!(verifier.verify(body.as_bytes(), &headers).is_err());
    }
}
