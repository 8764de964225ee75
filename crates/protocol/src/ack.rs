//! Acknowledgement envelope and error codes (protocol.md §3), plus the HTTP
//! error body of §10.
//!
//! Every client→server event that has a response answers through its
//! Socket.IO ack callback exactly once, with either
//!
//! * `{"success": true, ...fields}`, built by [`ack_ok`] from a response
//!   struct of the event's module, or
//! * `{"success": false, "error": "...", "code": "..."}`, an [`AckError`].
//!
//! [`ack_result`] turns a handler's `Result<T, AckError>` into the value to
//! pass to the callback, and [`decode_ack`] does the reverse for clients and
//! tests.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::wire_enum::wire_enum;

wire_enum! {
    /// The machine-readable `code` of a failed ack (§3), also used by
    /// `call:error` (§7) and by HTTP error bodies (§10).
    ///
    /// On the wire each code is a SCREAMING_SNAKE_CASE string.
    pub enum ErrorCode {
        /// The payload is missing, has the wrong type or shape, or carries an
        /// oversized string. Nothing was changed.
        InvalidPayload = "INVALID_PAYLOAD",
        /// The caller is not authenticated (or no longer is).
        Unauthorized = "UNAUTHORIZED",
        /// The caller is authenticated but not allowed to do this.
        Forbidden = "FORBIDDEN",
        /// The call, room, conversation, message or user does not exist.
        NotFound = "NOT_FOUND",
        /// The state changed under the caller, e.g. a compare-and-set race
        /// was lost or an id was reused.
        Conflict = "CONFLICT",
        /// The other side (or the caller) is already in a call or ringing.
        Busy = "BUSY",
        /// The target has no device session at all.
        Offline = "OFFLINE",
        /// Too many requests; the ack carries `retryAfterMs`.
        RateLimited = "RATE_LIMITED",
        /// A payload or field exceeds a size limit.
        TooLarge = "TOO_LARGE",
        /// A backend (state store, database, media) is down; try again.
        Unavailable = "UNAVAILABLE",
        /// A bug or unexpected failure on the server.
        Internal = "INTERNAL",
        /// `call:initiate` in a conversation that already has a live call (§7).
        CallAlreadyActive = "CALL_ALREADY_ACTIVE",
        /// `call:join` of a peer-to-peer call that already has two participants, while
        /// the move to the SFU (§7, `call:mode-changed`) is not available.
        CallFull = "CALL_FULL",
    }
}

impl ErrorCode {
    /// The HTTP status the HTTP API (§10) answers with for this code.
    pub const fn http_status(&self) -> u16 {
        match self {
            Self::InvalidPayload => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::Conflict
            | Self::Busy
            | Self::Offline
            | Self::CallAlreadyActive
            | Self::CallFull => 409,
            Self::TooLarge => 413,
            Self::RateLimited => 429,
            Self::Internal => 500,
            Self::Unavailable => 503,
        }
    }

    /// A generic human-readable message, for when the caller has nothing
    /// more specific to say.
    pub const fn default_message(&self) -> &'static str {
        match self {
            Self::InvalidPayload => "invalid payload",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not found",
            Self::Conflict => "the state changed, try again",
            Self::Busy => "busy",
            Self::Offline => "user is offline",
            Self::RateLimited => "rate limited",
            Self::TooLarge => "too large",
            Self::Unavailable => "service unavailable, try again",
            Self::Internal => "internal error",
            Self::CallAlreadyActive => "a call is already active in this conversation",
            Self::CallFull => "this call already has two participants",
        }
    }

    /// Whether a client may sensibly retry the same request later.
    pub const fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Busy | Self::Offline | Self::RateLimited | Self::Unavailable
        )
    }
}

/// A failed acknowledgement (§3):
/// `{"success": false, "error": "<message>", "code": "<CODE>"}`, plus
/// `retryAfterMs` and `canRetry` when set.
///
/// `success` is not a field: it is always written as `false`, and
/// deserializing an object whose `success` is not `false` fails.
///
/// Also a `std::error::Error`, so handlers can return
/// `Result<T, AckError>` and use `?`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {error}")]
pub struct AckError {
    /// Human-readable message.
    pub error: String,
    /// Machine-readable code.
    pub code: ErrorCode,
    /// For [`ErrorCode::RateLimited`]: how long to wait before retrying.
    pub retry_after_ms: Option<u64>,
    /// Whether retrying later may succeed (`callUser`'s `OFFLINE` and `BUSY`
    /// answers set it, §5).
    pub can_retry: Option<bool>,
}

impl AckError {
    /// An error with the given code and message, no retry hints.
    pub fn new(code: ErrorCode, error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            code,
            retry_after_ms: None,
            can_retry: None,
        }
    }

    /// An error with the code's [`ErrorCode::default_message`].
    pub fn from_code(code: ErrorCode) -> Self {
        Self::new(code, code.default_message())
    }

    /// `INVALID_PAYLOAD` with the given message.
    pub fn invalid_payload(error: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidPayload, error)
    }

    /// `RATE_LIMITED` with `retryAfterMs` set.
    pub fn rate_limited(retry_after_ms: u64) -> Self {
        Self::from_code(ErrorCode::RateLimited).with_retry_after_ms(retry_after_ms)
    }

    /// `INTERNAL` with the given message.
    pub fn internal(error: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, error)
    }

    /// Sets `retryAfterMs`.
    pub fn with_retry_after_ms(mut self, retry_after_ms: u64) -> Self {
        self.retry_after_ms = Some(retry_after_ms);
        self
    }

    /// Sets `canRetry`.
    pub fn with_can_retry(mut self, can_retry: bool) -> Self {
        self.can_retry = Some(can_retry);
        self
    }

    /// The JSON value to hand to the ack callback.
    ///
    /// Built by hand rather than through serde so that it cannot fail; the
    /// tests check that both give the same JSON.
    pub fn to_value(&self) -> Value {
        let mut map = serde_json::Map::new();
        map.insert("success".to_owned(), Value::Bool(false));
        map.insert("error".to_owned(), Value::String(self.error.clone()));
        map.insert(
            "code".to_owned(),
            Value::String(self.code.as_str().to_owned()),
        );
        if let Some(ms) = self.retry_after_ms {
            map.insert("retryAfterMs".to_owned(), Value::from(ms));
        }
        if let Some(can_retry) = self.can_retry {
            map.insert("canRetry".to_owned(), Value::Bool(can_retry));
        }
        Value::Object(map)
    }
}

impl From<ErrorCode> for AckError {
    fn from(code: ErrorCode) -> Self {
        Self::from_code(code)
    }
}

impl From<AckError> for Value {
    fn from(err: AckError) -> Self {
        err.to_value()
    }
}

/// Borrowed wire form of [`AckError`] used for serializing.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AckErrorOut<'a> {
    success: bool,
    error: &'a str,
    code: ErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    can_retry: Option<bool>,
}

impl Serialize for AckError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        AckErrorOut {
            success: false,
            error: &self.error,
            code: self.code,
            retry_after_ms: self.retry_after_ms,
            can_retry: self.can_retry,
        }
        .serialize(serializer)
    }
}

/// Owned wire form of [`AckError`] used for deserializing.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AckErrorIn {
    success: bool,
    error: String,
    code: ErrorCode,
    #[serde(default)]
    retry_after_ms: Option<u64>,
    #[serde(default)]
    can_retry: Option<bool>,
}

impl<'de> Deserialize<'de> for AckError {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = AckErrorIn::deserialize(deserializer)?;
        if wire.success {
            return Err(de::Error::custom("an ack error must have success: false"));
        }
        Ok(Self {
            error: wire.error,
            code: wire.code,
            retry_after_ms: wire.retry_after_ms,
            can_retry: wire.can_retry,
        })
    }
}

/// A handler's outcome: the success fields, or the failure.
pub type AckResult<T> = Result<T, AckError>;

/// Builds a successful ack: serializes `fields` and adds `"success": true`.
///
/// `fields` must serialize to a JSON object (any response struct of this
/// crate, or [`Empty`]) or to `null` (`()`), which gives
/// `{"success": true}`. A `success` key in `fields` is overwritten.
///
/// This never panics. If `fields` fails to serialize or is not an object
/// (a bug in the caller), the result is an `INTERNAL` [`AckError`] value, so
/// the client still gets exactly one well-formed answer.
pub fn ack_ok<T: Serialize + ?Sized>(fields: &T) -> Value {
    match serde_json::to_value(fields) {
        Ok(Value::Object(mut map)) => {
            map.insert("success".to_owned(), Value::Bool(true));
            Value::Object(map)
        }
        Ok(Value::Null) => {
            let mut map = serde_json::Map::new();
            map.insert("success".to_owned(), Value::Bool(true));
            Value::Object(map)
        }
        Ok(_) => AckError::internal("ack fields are not an object").to_value(),
        Err(err) => AckError::internal(format!("ack fields failed to serialize: {err}")).to_value(),
    }
}

/// The ack value for a handler's result: [`ack_ok`] for `Ok`,
/// [`AckError::to_value`] for `Err`.
pub fn ack_result<T: Serialize>(result: &AckResult<T>) -> Value {
    match result {
        Ok(fields) => ack_ok(fields),
        Err(err) => err.to_value(),
    }
}

/// Client side of [`ack_result`]: reads an ack value back.
///
/// Looks at `success`: `true` decodes the rest as `T` (the `success` key is
/// ignored by `T` since response structs accept extra fields), anything
/// else decodes an [`AckError`]. The outer `Err` means the value matched
/// neither shape.
pub fn decode_ack<T: DeserializeOwned>(value: Value) -> Result<AckResult<T>, serde_json::Error> {
    match value.get("success") {
        Some(Value::Bool(true)) => serde_json::from_value(value).map(Ok),
        _ => serde_json::from_value(value).map(Err),
    }
}

/// The empty object `{}`: the payload of events that take no fields and
/// the fields of `{success}`-only responses.
///
/// It serializes as `{}`. It deserializes from any object (extra fields are
/// ignored) and also from `null` or a missing payload, since clients often
/// emit such events with only an ack callback. Any other JSON type fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Empty {}

impl<'de> Deserialize<'de> for Empty {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EmptyVisitor;

        impl<'de> Visitor<'de> for EmptyVisitor {
            type Value = Empty;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object or null")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Empty, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Empty {})
            }

            fn visit_unit<E: de::Error>(self) -> Result<Empty, E> {
                Ok(Empty {})
            }

            fn visit_none<E: de::Error>(self) -> Result<Empty, E> {
                Ok(Empty {})
            }
        }

        deserializer.deserialize_any(EmptyVisitor)
    }
}

/// `{message}`: the fields of the many responses that only carry a
/// human-readable confirmation (`leaveRoom`, `rejectCallNew`,
/// `cancelCall`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusMessage {
    /// The confirmation text.
    pub message: String,
}

impl StatusMessage {
    /// Wraps a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// The JSON body of an HTTP API error (§10): `{error, code}`, sent with
/// [`ErrorCode::http_status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpErrorBody {
    /// Human-readable message.
    pub error: String,
    /// Machine-readable code.
    pub code: ErrorCode,
}

impl From<AckError> for HttpErrorBody {
    fn from(err: AckError) -> Self {
        Self {
            error: err.error,
            code: err.code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_codes_are_screaming_snake_case() {
        assert_eq!(
            serde_json::to_value(ErrorCode::RateLimited).unwrap(),
            json!("RATE_LIMITED")
        );
        assert_eq!(
            serde_json::to_value(ErrorCode::CallAlreadyActive).unwrap(),
            json!("CALL_ALREADY_ACTIVE")
        );
        for code in ErrorCode::ALL {
            let wire = serde_json::to_value(code).unwrap();
            assert_eq!(wire, json!(code.as_str()));
            let back: ErrorCode = serde_json::from_value(wire).unwrap();
            assert_eq!(back, *code);
            assert_eq!(code.as_str().parse::<ErrorCode>().unwrap(), *code);
            assert_eq!(code.to_string(), code.as_str());
        }
        assert!(serde_json::from_value::<ErrorCode>(json!("rate_limited")).is_err());
        assert!("NOPE".parse::<ErrorCode>().is_err());
    }

    #[test]
    fn http_statuses() {
        use ErrorCode::*;
        let expected = [
            (InvalidPayload, 400),
            (Unauthorized, 401),
            (Forbidden, 403),
            (NotFound, 404),
            (Conflict, 409),
            (Busy, 409),
            (Offline, 409),
            (RateLimited, 429),
            (TooLarge, 413),
            (Unavailable, 503),
            (Internal, 500),
            (CallAlreadyActive, 409),
            (CallFull, 409),
        ];
        assert_eq!(expected.len(), ErrorCode::ALL.len());
        for (code, status) in expected {
            assert_eq!(code.http_status(), status, "{code}");
        }
    }

    #[test]
    fn ack_error_shape() {
        let err = AckError::new(ErrorCode::NotFound, "no such call");
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"success": false, "error": "no such call", "code": "NOT_FOUND"})
        );
        assert_eq!(
            AckError::rate_limited(1500).to_value(),
            json!({
                "success": false,
                "error": "rate limited",
                "code": "RATE_LIMITED",
                "retryAfterMs": 1500
            })
        );
        let busy = AckError::new(ErrorCode::Busy, "user is busy").with_can_retry(true);
        assert_eq!(
            busy.to_value(),
            json!({"success": false, "error": "user is busy", "code": "BUSY", "canRetry": true})
        );
        assert_eq!(busy.to_string(), "BUSY: user is busy");

        // The hand-built value and the serde form agree.
        let full = AckError::rate_limited(10).with_can_retry(false);
        for err in [&err, &busy, &full] {
            assert_eq!(err.to_value(), serde_json::to_value(err).unwrap());
        }
    }

    #[test]
    fn ack_error_round_trip_requires_success_false() {
        let value = json!({"success": false, "error": "slow down", "code": "RATE_LIMITED", "retryAfterMs": 20});
        let err: AckError = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(
            err,
            AckError::new(ErrorCode::RateLimited, "slow down").with_retry_after_ms(20)
        );
        assert_eq!(err.to_value(), value);
        assert!(
            serde_json::from_value::<AckError>(
                json!({"success": true, "error": "x", "code": "BUSY"})
            )
            .is_err()
        );
        assert!(
            serde_json::from_value::<AckError>(
                json!({"success": false, "error": "x", "code": "WHATEVER"})
            )
            .is_err()
        );
    }

    #[test]
    fn ack_ok_adds_success() {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Fields {
            room_id: String,
        }
        assert_eq!(
            ack_ok(&Fields {
                room_id: "r1".into()
            }),
            json!({"success": true, "roomId": "r1"})
        );
        assert_eq!(ack_ok(&()), json!({"success": true}));
        assert_eq!(ack_ok(&Empty {}), json!({"success": true}));
        assert_eq!(
            ack_ok(&StatusMessage::new("left")),
            json!({"success": true, "message": "left"})
        );
        // A stray `success` cannot turn a success into a failure.
        assert_eq!(
            ack_ok(&json!({"success": false, "x": 1})),
            json!({"success": true, "x": 1})
        );
    }

    #[test]
    fn ack_ok_with_a_non_object_is_an_internal_error() {
        let value = ack_ok(&5);
        assert_eq!(value["success"], json!(false));
        assert_eq!(value["code"], json!("INTERNAL"));
    }

    #[test]
    fn ack_result_and_decode_ack() {
        let ok: AckResult<StatusMessage> = Ok(StatusMessage::new("done"));
        let value = ack_result(&ok);
        assert_eq!(value, json!({"success": true, "message": "done"}));
        assert_eq!(decode_ack::<StatusMessage>(value).unwrap(), ok);

        let failed: AckResult<StatusMessage> = Err(AckError::from(ErrorCode::Forbidden));
        let value = ack_result(&failed);
        assert_eq!(value["code"], json!("FORBIDDEN"));
        assert_eq!(decode_ack::<StatusMessage>(value).unwrap(), failed);

        assert!(decode_ack::<StatusMessage>(json!({"success": true})).is_err());
        assert!(decode_ack::<StatusMessage>(json!(42)).is_err());
    }

    #[test]
    fn empty_accepts_objects_and_null_only() {
        assert_eq!(serde_json::to_value(Empty {}).unwrap(), json!({}));
        assert_eq!(
            serde_json::from_value::<Empty>(json!({})).unwrap(),
            Empty {}
        );
        assert_eq!(
            serde_json::from_value::<Empty>(json!({"extra": [1, 2]})).unwrap(),
            Empty {}
        );
        assert_eq!(
            serde_json::from_value::<Empty>(json!(null)).unwrap(),
            Empty {}
        );
        assert_eq!(serde_json::from_str::<Empty>("{}").unwrap(), Empty {});
        assert!(serde_json::from_value::<Empty>(json!(5)).is_err());
        assert!(serde_json::from_value::<Empty>(json!("x")).is_err());
        assert!(serde_json::from_value::<Empty>(json!([])).is_err());
    }

    #[test]
    fn http_error_body() {
        let body = HttpErrorBody::from(AckError::new(ErrorCode::NotFound, "no such room"));
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"error": "no such room", "code": "NOT_FOUND"})
        );
    }
}
