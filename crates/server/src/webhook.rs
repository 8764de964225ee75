//! Signed outgoing webhooks (protocol §10).
//!
//! Every delivery is an HTTP POST of a JSON body with these headers:
//!
//! | header | value |
//! |---|---|
//! | `Content-Type` | `application/json` |
//! | `X-Switchboard-Event` | what the body is (`notification`) |
//! | `X-Switchboard-Delivery` | the id receivers deduplicate on (delivery is at-least-once) |
//! | `X-Switchboard-Attempt` | 1 for the first attempt, then 2, 3, ... |
//! | `X-Switchboard-Timestamp` | when this attempt was signed, Unix milliseconds |
//! | `X-Switchboard-Signature` | `sha256=` + lowercase hex HMAC-SHA256 of `"{timestamp}.{body}"` |
//!
//! The timestamp is part of the signed string, so a receiver that also rejects old
//! timestamps is safe from replays. [`verify`] is the receiver's side of the check.
//!
//! A 2xx answer is a delivery; any other status, a redirect, a connection error or a timeout
//! is a failure the caller retries.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use switchboard_domain::Millis;

pub const SIGNATURE_HEADER: &str = "x-switchboard-signature";
pub const TIMESTAMP_HEADER: &str = "x-switchboard-timestamp";
pub const DELIVERY_HEADER: &str = "x-switchboard-delivery";
pub const EVENT_HEADER: &str = "x-switchboard-event";
pub const ATTEMPT_HEADER: &str = "x-switchboard-attempt";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: Millis, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header's value: `sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
pub fn sign(secret: &[u8], timestamp: Millis, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Checks a signature header in constant time. `timestamp` is the header's value as sent.
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
    let (Ok(timestamp), Some(hex_sig)) = (
        timestamp.trim().parse::<Millis>(),
        signature.trim().strip_prefix("sha256="),
    ) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&expected).is_ok()
}

/// One signed POST to send.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    pub url: &'a str,
    pub secret: &'a [u8],
    /// `X-Switchboard-Event`.
    pub event: &'a str,
    /// `X-Switchboard-Delivery`: the same on every attempt of one delivery.
    pub delivery_id: &'a str,
    pub attempt: u32,
    /// The exact bytes that are signed and sent.
    pub body: String,
    /// Unix milliseconds, signed with the body.
    pub timestamp: Millis,
}

/// A shared HTTP client (one connection pool) for webhook deliveries.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
}

impl WebhookClient {
    /// A client whose requests give up after `timeout` (connecting included). Redirects are
    /// not followed: a 3xx counts as a failure, so a body is never re-sent elsewhere.
    pub fn new(timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchboard-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "webhook client options refused; using defaults");
                reqwest::Client::new()
            });
        Self { http }
    }

    /// Sends one attempt. `Ok` is a 2xx answer; `Err` says why it failed, without the URL
    /// (which may carry credentials).
    pub async fn post(&self, delivery: Delivery<'_>) -> Result<u16, String> {
        let signature = sign(
            delivery.secret,
            delivery.timestamp,
            delivery.body.as_bytes(),
        );
        let response = self
            .http
            .post(delivery.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_HEADER, delivery.event)
            .header(DELIVERY_HEADER, delivery.delivery_id)
            .header(ATTEMPT_HEADER, delivery.attempt.to_string())
            .header(TIMESTAMP_HEADER, delivery.timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(delivery.body)
            .send()
            .await
            .map_err(describe)?;
        let status = response.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    }
}

fn describe(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_builder() {
        "invalid request"
    } else {
        "request failed"
    };
    format!("{kind}: {}", error.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_with_its_secret_timestamp_and_body() {
        let sig = sign(b"k", 1_700_000_000_000, b"{\"a\":1}");
        assert!(sig.starts_with("sha256="));
        assert_eq!(sig.len(), "sha256=".len() + 64);
        assert!(verify(b"k", "1700000000000", b"{\"a\":1}", &sig));
        assert!(!verify(b"other", "1700000000000", b"{\"a\":1}", &sig));
        assert!(!verify(b"k", "1700000000001", b"{\"a\":1}", &sig));
        assert!(!verify(b"k", "1700000000000", b"{\"a\":2}", &sig));
        assert!(!verify(b"k", "1700000000000", b"{\"a\":1}", "sha256=zz"));
        assert!(!verify(b"k", "nope", b"{\"a\":1}", &sig));
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231-style cross-check computed independently of `sign`.
        let mut m = HmacSha256::new_from_slice(b"secret").unwrap();
        m.update(b"5.body");
        let expected = format!("sha256={}", hex::encode(m.finalize().into_bytes()));
        assert_eq!(sign(b"secret", 5, b"body"), expected);
    }
}
