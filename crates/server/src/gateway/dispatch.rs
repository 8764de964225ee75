//! The ack and error convention of protocol §3, in one place.
//!
//! Every client event goes through [`on`]: the payload is parsed into its typed form and
//! validated against the limits before any service runs, the handler's result becomes
//! `{success: true, ...fields}` or `{success: false, error, code}`, and exactly one ack is
//! sent (none when the client asked for none). A malformed payload never reaches a service.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::{SendError, SocketError};
use switchboard_domain::limits::Limits;
use switchboard_protocol::conversation_calls::CallError;
use switchboard_protocol::events;
use tracing::Instrument;

use super::SocketSession;
use crate::app::SharedApp;
use crate::error::{AppError, AppResult};

/// Checks a parsed payload against the configured limits (protocol §11).
pub trait Validate {
    fn validate(&self, limits: &Limits) -> Result<(), AppError>;
}

/// What a handler gets: the app and the socket's session.
pub struct Ctx {
    pub app: SharedApp,
    pub session: Arc<SocketSession>,
}

/// Parses an event payload. A missing payload is read as `{}`, so events without fields
/// accept it and events with required fields refuse it as `INVALID_PAYLOAD`.
pub fn parse<P: DeserializeOwned + Validate>(
    raw: Option<serde_json::Value>,
    limits: &Limits,
) -> AppResult<P> {
    let value = match raw {
        None | Some(serde_json::Value::Null) => serde_json::Value::Object(Default::default()),
        Some(value) => value,
    };
    if !value.is_object() {
        return Err(AppError::invalid("the payload must be an object"));
    }
    let payload: P = serde_json::from_value(value)
        .map_err(|e| AppError::invalid(format!("invalid payload: {e}")))?;
    payload.validate(limits)?;
    Ok(payload)
}

/// Registers a client event with the convention above.
pub fn on<A, P, R, F, Fut>(app: &SharedApp, socket: &SocketRef<A>, event: &'static str, handler: F)
where
    A: Adapter,
    P: DeserializeOwned + Validate + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(Ctx, P) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = AppResult<R>> + Send + 'static,
{
    register(app, socket, event, handler, false)
}

/// [`on`] for the `call:*` events of protocol §7: a failure is also emitted to the sender
/// as `call:error {code, message, callId?}` (seed 004), `callId` taken from the payload.
pub fn on_call<A, P, R, F, Fut>(
    app: &SharedApp,
    socket: &SocketRef<A>,
    event: &'static str,
    handler: F,
) where
    A: Adapter,
    P: DeserializeOwned + Validate + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(Ctx, P) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = AppResult<R>> + Send + 'static,
{
    register(app, socket, event, handler, true)
}

fn register<A, P, R, F, Fut>(
    app: &SharedApp,
    socket: &SocketRef<A>,
    event: &'static str,
    handler: F,
    call_errors: bool,
) where
    A: Adapter,
    P: DeserializeOwned + Validate + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(Ctx, P) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = AppResult<R>> + Send + 'static,
{
    let app = app.clone();
    socket.on(event, move |socket: SocketRef<A>, TryData(raw): TryData<serde_json::Value>, ack: AckSender<A>| {
        let app = app.clone();
        let handler = handler.clone();
        async move {
            let Some(session) = socket.extensions.get::<Arc<SocketSession>>() else { return };
            let span = tracing::info_span!("event", event, user_id = %session.identity.user_id, socket_id = %socket.id);
            async move {
                let started = Instant::now();
                let raw = raw.ok();
                let call_id = call_errors.then(|| call_id_of(raw.as_ref(), &app.settings.limits)).flatten();
                let result = match parse::<P>(raw, &app.settings.limits) {
                    Ok(payload) => handler(Ctx { app: app.clone(), session }, payload).await,
                    Err(error) => Err(error),
                };
                let (reply, outcome) = match result {
                    Ok(fields) => (switchboard_protocol::ack_ok(&fields), "ok"),
                    Err(error) => {
                        if error.is_server_side() {
                            tracing::warn!(%error, "event failed");
                        } else {
                            tracing::debug!(%error, "event refused");
                        }
                        let code = error.code().as_str();
                        let ack = error.to_ack();
                        if call_errors {
                            let report = CallError::from_ack(&ack, call_id);
                            emit(&app, &socket, events::CALL_ERROR, &report);
                        }
                        (serde_json::to_value(ack).unwrap_or_default(), code)
                    }
                };
                app.metrics.count_event(event, outcome, started.elapsed().as_secs_f64());
                if let Err(error) = ack.send(&reply) {
                    on_send_error(&app, &socket, error);
                }
            }
            .instrument(span)
            .await
        }
    });
}

/// The `callId` of a `call:*` payload, when it has a valid one (for `call:error`).
fn call_id_of(raw: Option<&serde_json::Value>, limits: &Limits) -> Option<String> {
    let id = raw?.get("callId")?.as_str()?;
    limits.check_id("callId", id).ok()?;
    Some(id.to_string())
}

/// Emits to one socket; a socket whose buffer is full is a slow consumer and is dropped.
pub fn emit<A: Adapter, T: Serialize + ?Sized>(
    app: &SharedApp,
    socket: &SocketRef<A>,
    event: &str,
    data: &T,
) {
    if let Err(error) = socket.emit(event, data) {
        on_send_error(app, socket, error);
    }
}

fn on_send_error<A: Adapter>(app: &SharedApp, socket: &SocketRef<A>, error: SendError) {
    match error {
        SendError::Socket(SocketError::InternalChannelFull) => {
            tracing::warn!(socket_id = %socket.id, "slow consumer: send buffer full, disconnecting");
            app.metrics.slow_consumers.inc();
            let _ = socket.clone().disconnect();
        }
        other => tracing::debug!(socket_id = %socket.id, error = %other, "send failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Lookup {
        user_ids: Vec<String>,
    }

    impl Validate for Lookup {
        fn validate(&self, limits: &Limits) -> Result<(), AppError> {
            limits
                .check_id_list("userIds", &self.user_ids)
                .map_err(AppError::from)
        }
    }

    #[derive(Debug, Deserialize)]
    struct Nothing {}

    impl Validate for Nothing {
        fn validate(&self, _: &Limits) -> Result<(), AppError> {
            Ok(())
        }
    }

    fn code<T: std::fmt::Debug>(r: AppResult<T>) -> &'static str {
        r.unwrap_err().code().as_str()
    }

    #[test]
    fn malformed_payloads_are_invalid() {
        let limits = Limits::default();
        assert_eq!(code(parse::<Lookup>(None, &limits)), "INVALID_PAYLOAD");
        assert_eq!(
            code(parse::<Lookup>(Some(json!({ "userIds": 5 })), &limits)),
            "INVALID_PAYLOAD"
        );
        assert_eq!(
            code(parse::<Lookup>(Some(json!("userIds")), &limits)),
            "INVALID_PAYLOAD"
        );
        assert_eq!(
            code(parse::<Lookup>(Some(json!([1, 2])), &limits)),
            "INVALID_PAYLOAD"
        );
        assert_eq!(
            code(parse::<Lookup>(
                Some(json!({ "userIds": ["x".repeat(129)] })),
                &limits
            )),
            "INVALID_PAYLOAD"
        );
        let many: Vec<String> = (0..501).map(|i| i.to_string()).collect();
        assert_eq!(
            code(parse::<Lookup>(Some(json!({ "userIds": many })), &limits)),
            "INVALID_PAYLOAD"
        );
    }

    #[test]
    fn well_formed_payloads_parse() {
        let limits = Limits::default();
        let p = parse::<Lookup>(
            Some(json!({ "userIds": ["a", "b"], "extra": true })),
            &limits,
        )
        .unwrap();
        assert_eq!(p.user_ids, vec!["a", "b"]);
        assert!(
            parse::<Nothing>(None, &limits).is_ok(),
            "a missing payload reads as {{}}"
        );
    }
}
